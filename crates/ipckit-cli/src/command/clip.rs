//! `ipckit clip set|get|formats|watch|register`: the clipboard board.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use clap::Subcommand;
use ipckit::clipboard::{self, Board, Format};
use ipckit::{Error, ErrorKind, Namespace};

use crate::util::parse_duration;

/// The board the commands use unless `--board` says otherwise.
const DEFAULT_BOARD: &str = "clipboard";

/// `ipckit clip` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClipCommand {
    /// Replace the board's item with DATA: as text in `unicode-text` and
    /// `text` (default), or in the one format --format names.
    Set {
        /// Board name.
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
        /// Format: a standard name (text, unicode-text, dib, files ...),
        /// a number (13, 0xC001) or a registered name (registered if new).
        /// `text` stores UTF-8 + NUL, `unicode-text` UTF-16LE + NUL, any
        /// other format the bytes of DATA as they are.
        #[arg(long, value_name = "F")]
        format: Option<String>,
        /// The data; `-` reads it from stdin.
        data: String,
        /// Give up after this long (the board's lock held by a stuck writer).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print the board's text (unicode-text, else text), or the bytes of
    /// the format --format names (text formats as text).
    Get {
        /// Board name.
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
        /// Format to read (as for `set`; not registered if unknown).
        #[arg(long, value_name = "F")]
        format: Option<String>,
        /// How long to wait for the owner to render a promised format.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List the formats available, one `ID NAME` line each.
    Formats {
        /// Board name.
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
        /// Print {"board","sequence","owner","formats":[{"id","name"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Print one line per change of the board: its sequence number and its
    /// formats (`SEQ NAME,NAME...`, `-` for none).
    #[cfg_attr(
        windows,
        doc = "",
        doc = "On Windows a board lives only while a process has it open: a watcher keeps it alive (created empty if absent); it prints `watching board 'NAME'` on stderr once it holds it."
    )]
    Watch {
        /// Board name.
        #[arg(long, default_value = DEFAULT_BOARD)]
        board: String,
        /// Exit after this many changes.
        #[arg(long)]
        count: Option<u64>,
        /// Give up (non-zero status) if the changes do not come within this time.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print one JSON object per change (sequence, owner, formats).
        #[arg(long)]
        json: bool,
    },
    /// Register a clipboard format name and print its id
    /// (`RegisterClipboardFormat`): the same name gives the same id in
    /// every process of the namespace.
    Register {
        /// The format's name.
        name: String,
    },
}

pub fn run(cmd: ClipCommand) -> Result<(), Error> {
    match cmd {
        ClipCommand::Set {
            board,
            format,
            data,
            timeout,
        } => {
            let bytes = if data == "-" {
                let mut b = Vec::new();
                std::io::stdin()
                    .lock()
                    .read_to_end(&mut b)
                    .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read stdin: {e}")))?;
                b
            } else {
                data.into_bytes()
            };
            let name = board.clone();
            crate::util::bounded(&name, timeout, move || {
                set(&board, format.as_deref(), bytes)
            })
        }
        ClipCommand::Get {
            board,
            format,
            timeout,
        } => get(&board, format.as_deref(), timeout),
        ClipCommand::Formats { board, json } => formats(&board, json),
        ClipCommand::Watch {
            board,
            count,
            timeout,
            json,
        } => watch(&board, count, timeout, json),
        ClipCommand::Register { name } => {
            let ns = Namespace::from_env()?;
            println!("{}", Format::register_in(&ns, &name)?.id());
            Ok(())
        }
    }
}

fn set(board: &str, format: Option<&str>, bytes: Vec<u8>) -> Result<(), Error> {
    let ns = Namespace::from_env()?;
    let b = Board::open(board)?;
    let Some(name) = format else {
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "the data is not UTF-8 text; give a --format to store bytes",
            )
            .with_name(board)
        })?;
        b.set_text(&text)?;
        return Ok(());
    };
    let f = Format::parse_in(&ns, name, true)?;
    let bytes = if f == Format::TEXT || f == Format::UNICODE_TEXT {
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the data is not UTF-8 text, which format {f} holds"),
            )
            .with_name(board)
        })?;
        if f == Format::TEXT {
            clipboard::text_to_bytes(&text)
        } else {
            clipboard::text_to_unicode(&text)
        }
    } else {
        bytes
    };
    b.set(f, bytes)?;
    Ok(())
}

fn get(board: &str, format: Option<&str>, timeout: Duration) -> Result<(), Error> {
    let ns = Namespace::from_env()?;
    let b = clipboard::BoardOptions::new()
        .render_timeout(timeout)
        .open(board)?;
    let mut out = std::io::stdout().lock();
    let r = match format {
        None => writeln!(out, "{}", b.get_text()?),
        Some(name) => {
            let f = Format::parse_in(&ns, name, false)?;
            let data = b.get(f)?;
            if f == Format::TEXT {
                writeln!(out, "{}", clipboard::text_from_bytes(&data))
            } else if f == Format::UNICODE_TEXT {
                writeln!(out, "{}", clipboard::text_from_unicode(&data))
            } else {
                out.write_all(&data)
            }
        }
    };
    r.and_then(|()| out.flush())
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write stdout: {e}")))
}

/// The name of `f` for people: standard, registered, else its number.
fn name_of(ns: &Namespace, f: Format) -> String {
    match f.name_in(ns) {
        Ok(Some(n)) => n,
        _ => f.to_string(),
    }
}

fn formats(board: &str, json: bool) -> Result<(), Error> {
    let ns = Namespace::from_env()?;
    let b = Board::open(board)?;
    let c = b.current()?;
    if json {
        let list: Vec<_> = c
            .formats
            .iter()
            .map(|f| serde_json::json!({"id": f.id(), "name": name_of(&ns, *f)}))
            .collect();
        let v = serde_json::json!({
            "board": board,
            "sequence": c.sequence,
            "owner": c.owner,
            "formats": list,
        });
        println!("{v}");
    } else {
        for f in &c.formats {
            println!("{} {}", f.id(), name_of(&ns, *f));
        }
    }
    Ok(())
}

fn watch(
    board: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), Error> {
    let ns = Namespace::from_env()?;
    let b = Board::open(board)?;
    let mut w = b.watch()?;
    // On Windows a board lives only while some process has it open: a
    // watcher started first keeps it alive for the `clip set` and `clip
    // get` that follow. It says on stderr when it holds the board.
    #[cfg(windows)]
    eprintln!("watching board '{board}'");
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut seen = 0;
    let mut out = std::io::stdout().lock();
    while count.is_none_or(|c| seen < c) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let c = w.next_timeout(left).map_err(|e| {
            if e.kind() == ErrorKind::Timeout {
                Error::new(
                    ErrorKind::Timeout,
                    format!("saw {seen} change(s) before the timeout"),
                )
                .with_name(board)
            } else {
                e
            }
        })?;
        let names: Vec<String> = c.formats.iter().map(|f| name_of(&ns, *f)).collect();
        let line = if json {
            serde_json::json!({"sequence": c.sequence, "owner": c.owner, "formats": names})
                .to_string()
        } else if names.is_empty() {
            format!("{} -", c.sequence)
        } else {
            format!("{} {}", c.sequence, names.join(","))
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        seen += 1;
    }
    Ok(())
}
