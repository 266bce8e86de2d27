//! `ipckit dde serve|request|poke|execute|advise|ls`: DDE links.

use std::io::Write as _;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use ipckit::clipboard::Format;
use ipckit::dde::{ConversationOptions, DdeServerOptions, Link};
use ipckit::{Error, ErrorKind, Namespace};

use crate::util::parse_duration;

/// `ipckit dde` subcommands. Values are text: in the `text` and
/// `oem-text` formats (the default is `text`) they travel as UTF-8 plus a
/// NUL, in `unicode-text` as UTF-16LE plus a NUL, in any other format as
/// the bytes given; they are printed the same way back.
#[derive(Subcommand, Debug)]
pub enum DdeCommand {
    /// Serve SERVICE until killed (Ctrl-C or SIGTERM unregisters it):
    /// its topics start with the --item values, take pokes, and
    /// `execute "set NAME VALUE"` changes an item.
    Serve {
        /// Service name; zenoh://NAME serves NAME here and also publishes
        /// it on the fabric (needs the `zenoh` feature).
        service: String,
        /// A topic to serve (repeatable).
        #[arg(long = "topic", value_name = "T", required = true)]
        topics: Vec<String>,
        /// An item of every topic and its starting value (repeatable).
        #[arg(long = "item", value_name = "NAME=VALUE")]
        items: Vec<String>,
        #[cfg_attr(
            unix,
            doc = "Also listen on TCP at HOST:PORT (port 0 picks one; the address is printed as `tcp://HOST:PORT`)."
        )]
        #[cfg_attr(
            windows,
            doc = "Also listen on TCP at HOST:PORT: Linux only (on Windows a DDE service is served by name only)."
        )]
        #[arg(long, value_name = "HOST:PORT")]
        tcp: Option<String>,
        /// Exit after this many conversations (clients that connected and
        /// left).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop serving (cleanly) after this long; a failure if --count
        /// conversations had not ended.
        #[arg(long, value_parser = parse_duration, value_name = "T")]
        timeout: Option<Duration>,
    },
    /// Print an item's value once (a cold link).
    Request {
        /// Service name, tcp://HOST:PORT, or zenoh://NAME (a server
        /// published on the fabric; needs the `zenoh` feature).
        service: String,
        /// Topic.
        topic: String,
        /// Item.
        item: String,
        /// Clipboard format: a standard name (text, unicode-text ...), a
        /// number or a registered name. Default text.
        #[arg(long, value_name = "F")]
        format: Option<String>,
        /// Give up after this long (the whole command).
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        timeout: Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Poke VALUE into an item.
    Poke {
        /// Service name, tcp://HOST:PORT, or zenoh://NAME (a server
        /// published on the fabric; needs the `zenoh` feature).
        service: String,
        /// Topic.
        topic: String,
        /// Item.
        item: String,
        /// The value.
        value: String,
        /// Clipboard format (as for `request`). Default text.
        #[arg(long, value_name = "F")]
        format: Option<String>,
        /// Give up after this long (the whole command).
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        timeout: Duration,
    },
    /// Run COMMAND on the server; fails with the server's reason if it
    /// refuses.
    Execute {
        /// Service name, tcp://HOST:PORT, or zenoh://NAME (a server
        /// published on the fabric; needs the `zenoh` feature).
        service: String,
        /// Topic.
        topic: String,
        /// The command string.
        command: String,
        /// Give up after this long (the whole command).
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        timeout: Duration,
    },
    /// Follow an item: a hot link prints each new value on its own line; a
    /// warm link (--warm) prints `changed`, then the value it requested.
    Advise {
        /// Service name, tcp://HOST:PORT, or zenoh://NAME (a server
        /// published on the fabric; needs the `zenoh` feature).
        service: String,
        /// Topic.
        topic: String,
        /// Item.
        item: String,
        /// A warm link (notices) instead of a hot one (values).
        #[arg(long)]
        warm: bool,
        /// Stop after N changes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this long: a failure if --count changes did not all
        /// come, else a clean end. Default: follow until the server goes.
        #[arg(long, value_parser = parse_duration, value_name = "T")]
        timeout: Option<Duration>,
        /// Clipboard format (as for `request`). Default text.
        #[arg(long, value_name = "F")]
        format: Option<String>,
    },
    /// List the live DDE services and their topics (one `SERVICE TOPIC`
    /// line per topic).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DdeCommand) -> Result<(), Error> {
    match cmd {
        DdeCommand::Serve {
            service,
            topics,
            items,
            tcp,
            count,
            timeout,
        } => serve(&service, &topics, &items, tcp.as_deref(), count, timeout),
        DdeCommand::Request {
            service,
            topic,
            item,
            format,
            timeout,
            json,
        } => {
            let f = format_of(format.as_deref())?;
            stale_check(&service)?;
            let opts = options_for(&service, timeout)?;
            let data = bounded(&service.clone(), timeout, move || {
                opts.connect(&service, &topic)?
                    .request(&item, f)
                    .map(|d| (item, d))
            })?;
            let (item, data) = data;
            let value = decode(f, &data);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "item": item, "format": f.id(), "value": value })
                );
            } else {
                println!("{value}");
            }
            Ok(())
        }
        DdeCommand::Poke {
            service,
            topic,
            item,
            value,
            format,
            timeout,
        } => {
            let f = format_of(format.as_deref())?;
            stale_check(&service)?;
            let opts = options_for(&service, timeout)?;
            bounded(&service.clone(), timeout, move || {
                opts.connect(&service, &topic)?
                    .poke(&item, f, &encode(f, &value))
            })
        }
        DdeCommand::Execute {
            service,
            topic,
            command,
            timeout,
        } => {
            stale_check(&service)?;
            let opts = options_for(&service, timeout)?;
            bounded(&service.clone(), timeout, move || {
                opts.connect(&service, &topic)?.execute(&command)
            })
        }
        DdeCommand::Advise {
            service,
            topic,
            item,
            warm,
            count,
            timeout,
            format,
        } => advise(
            &service,
            &topic,
            &item,
            warm,
            count,
            timeout,
            format.as_deref(),
        ),
        DdeCommand::Ls { json } => {
            let all = ConversationOptions::new()
                .allow_server_uids(crate::util::allowed_uids())
                .services()?;
            if json {
                println!("{}", serde_json::to_string(&all).expect("serialisable"));
            } else {
                for s in &all {
                    if s.topics.is_empty() {
                        println!("{}", s.service);
                    }
                    for t in &s.topics {
                        println!("{} {t}", s.service);
                    }
                }
            }
            Ok(())
        }
    }
}

/// Client settings: the namespace from the environment, the servers
/// `--allow-uid` trusts, and `timeout`.
fn options(timeout: Duration) -> ConversationOptions {
    ConversationOptions::new()
        .allow_server_uids(crate::util::allowed_uids())
        .timeout(timeout)
}

/// [`options`], with the fabric session for a `zenoh://` service.
fn options_for(service: &str, timeout: Duration) -> Result<ConversationOptions, Error> {
    let opts = options(timeout);
    if crate::util::remote_name(service).is_none() {
        return Ok(opts);
    }
    #[cfg(feature = "zenoh")]
    return Ok(opts.fabric(&crate::util::fabric()?));
    #[cfg(not(feature = "zenoh"))]
    return Err(crate::util::no_fabric("a zenoh:// DDE service"));
}

/// Fail at once on a stale local record (see `util::fail_if_stale`); names
/// on the fabric have none.
fn stale_check(service: &str) -> Result<(), Error> {
    if crate::util::remote_name(service).is_some() {
        return Ok(());
    }
    crate::util::fail_if_stale(service, "DDE server")
}

/// A little longer than the library's own timeouts, so that their more
/// precise errors win when they apply.
const GRACE: Duration = Duration::from_millis(250);

/// Run `f` on a thread and give up after `timeout` (the whole command's
/// bound, connecting included: connecting and the transaction each have
/// the timeout in the library, so this is the bound of both together).
fn bounded<T: Send + 'static>(
    service: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout + GRACE) {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("the DDE transaction did not finish within {timeout:?}; is the server hung? try a longer --timeout"),
        )
        .with_name(service)),
    }
}

/// The format `--format` names (default text).
fn format_of(text: Option<&str>) -> Result<Format, Error> {
    match text {
        None => Ok(Format::TEXT),
        Some(t) => Format::parse_in(&Namespace::from_env()?, t, false),
    }
}

/// A command-line value as bytes in `f`.
fn encode(f: Format, value: &str) -> Vec<u8> {
    if f == Format::TEXT || f == Format::OEM_TEXT {
        let mut b = value.as_bytes().to_vec();
        b.push(0);
        b
    } else if f == Format::UNICODE_TEXT {
        value
            .encode_utf16()
            .chain(std::iter::once(0))
            .flat_map(|u| u.to_le_bytes())
            .collect()
    } else {
        value.as_bytes().to_vec()
    }
}

/// Bytes in `f` as text to print (up to a NUL for the text formats).
fn decode(f: Format, data: &[u8]) -> String {
    if f == Format::UNICODE_TEXT {
        let units: Vec<u16> = data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        return String::from_utf16_lossy(&units);
    }
    let end = if f == Format::TEXT || f == Format::OEM_TEXT {
        data.iter().position(|b| *b == 0).unwrap_or(data.len())
    } else {
        data.len()
    };
    String::from_utf8_lossy(&data[..end]).into_owned()
}

fn serve(
    service: &str,
    topics: &[String],
    items: &[String],
    tcp: Option<&str>,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<(), Error> {
    let mut start = Vec::new();
    for i in items {
        let Some((name, value)) = i.split_once('=') else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("--item '{i}' is not NAME=VALUE"),
            ));
        };
        start.push((name.to_string(), value.to_string()));
    }
    let mut opts = DdeServerOptions::new()
        .limits(crate::util::limits())
        .on_execute(|e| {
            let mut w = e.command.splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("set"), Some(name), Some(value)) => e
                    .server
                    .set_item(e.topic, name, Format::TEXT, &encode(Format::TEXT, value))
                    .map_err(|err| err.to_string()),
                _ => Err(format!(
                    "unknown command '{}'; this server runs `set NAME VALUE`",
                    e.command
                )),
            }
        });
    for t in topics {
        opts = opts.topic(t);
    }
    if let Some(a) = tcp {
        opts = opts.tcp(a);
    }
    // `zenoh://NAME`: serve NAME here, and publish it on the fabric.
    let service = match crate::util::remote_name(service) {
        #[cfg(feature = "zenoh")]
        Some(name) => {
            opts = opts.fabric(&crate::util::fabric()?);
            name
        }
        #[cfg(not(feature = "zenoh"))]
        Some(_) => return Err(crate::util::no_fabric("serving a zenoh:// DDE service")),
        None => service,
    };
    // Before the record exists: a stop signal from then on removes it.
    crate::util::catch_stop_signals()?;
    let server = opts.create(service)?;
    for t in topics {
        for (name, value) in &start {
            server.set_item(t, name, Format::TEXT, &encode(Format::TEXT, value))?;
        }
    }
    if let Some(a) = server.local_addr() {
        println!("tcp://{a}");
        let _ = std::io::stdout().flush();
    }
    eprintln!(
        "serving DDE service '{service}' (topics: {}); Ctrl-C stops",
        topics.join(", ")
    );
    let r = crate::util::serve_until(service, count, timeout, "conversations ended", || {
        let s = server.stats();
        s.accepted.saturating_sub(s.open)
    });
    drop(server);
    r
}

fn advise(
    service: &str,
    topic: &str,
    item: &str,
    warm: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
    format: Option<&str>,
) -> Result<(), Error> {
    let f = format_of(format)?;
    stale_check(service)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(Instant::now()));
    let connect_timeout = left(deadline).unwrap_or(Duration::from_secs(10));
    let conv = {
        let (service, topic) = (service.to_string(), topic.to_string());
        let opts = options_for(&service, connect_timeout)?;
        bounded(&service.clone(), connect_timeout, move || {
            opts.connect(&service, &topic)
        })?
    };
    let link = if warm { Link::Warm } else { Link::Hot };
    let mut a = conv.advise(item, f, link)?;
    eprintln!(
        "advising on '{item}' of '{service}' topic '{topic}' ({} link)",
        if warm { "warm" } else { "hot" }
    );
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        let next = match left(deadline) {
            None => a.recv(),
            Some(l) => a.recv_timeout(l),
        };
        let u = match next {
            Ok(u) => u,
            Err(e) if e.kind() == ErrorKind::Timeout => {
                return match count {
                    Some(n) => Err(Error::new(
                        ErrorKind::Timeout,
                        format!("{seen} of {n} changes of '{item}' came within the timeout"),
                    )
                    .with_name(service)),
                    None => Ok(()),
                };
            }
            Err(e) => return Err(e),
        };
        let mut out = std::io::stdout().lock();
        match u.data {
            Some(d) => {
                let _ = writeln!(out, "{}", decode(f, &d));
            }
            None => {
                let _ = writeln!(out, "changed");
                let _ = out.flush();
                let d = conv.request(item, f)?;
                let _ = writeln!(out, "{}", decode(f, &d));
            }
        }
        let _ = out.flush();
        seen += 1;
    }
    Ok(())
}
