//! The clipboard board (`OpenClipboard` / `SetClipboardData` /
//! `GetClipboardData`): a named board holding one item in several formats
//! at once.
//!
//! A [`Board`] is opened by name (created on first use; the CLI's default
//! board is `clipboard`). Setting is a transaction ([`Board::begin`]):
//! empty, set one or more formats, close; the new item replaces the old one
//! atomically (a reader never sees a mix of two items), the board's
//! [sequence number](Board::sequence) goes up by one and every
//! [listener](Board::watch) is woken. Readers list the
//! [formats](Board::formats) available and [read](Board::get) one.
//! Formats are the standard ones (`CF_TEXT` …) or registered by name
//! ([`Format::register_in`]).
//!
//! Process A (sets the clipboard):
//!
//! ```
//! use ipckit::clipboard::{BoardOptions, Format};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let board = BoardOptions::new().namespace(&ns).open("clipboard").unwrap();
//! let html = Format::register_in(&ns, "HTML Format").unwrap();
//!
//! let mut t = board.begin();          // OpenClipboard
//! t.empty();                          // EmptyClipboard
//! t.set(Format::TEXT, b"hi\0".to_vec()).unwrap();
//! t.set(html, b"<b>hi</b>".to_vec()).unwrap();
//! let seq = t.close().unwrap();       // CloseClipboard: published
//!
//! // Process B (reads it):
//! let b = BoardOptions::new().namespace(&ns).open("clipboard").unwrap();
//! assert_eq!(b.sequence().unwrap(), seq);
//! assert_eq!(b.formats().unwrap(), [Format::TEXT, html]);
//! assert_eq!(b.get(html).unwrap(), b"<b>hi</b>");
//! assert_eq!(b.owner().unwrap(), Some(std::process::id()));
//! # BoardOptions::new().namespace(&ns).remove("clipboard").unwrap();
//! ```
//!
//! # Delayed rendering
//!
//! The owner may [promise](Transaction::promise) a format without its
//! data (`SetClipboardData(fmt, NULL)`) and close with a renderer
//! ([`Transaction::close_with_renderer`]); a reader asking for the format
//! makes the owner's renderer produce it (`WM_RENDERFORMAT`) within the
//! board's [render timeout](BoardOptions::render_timeout). The rendered
//! bytes are then stored in the board (later readers read them directly).
//! When the [`Owner`] is dropped while its item is still current, every
//! promised format is rendered into the board (`WM_RENDERALLFORMATS`). If
//! the owner process dies, its promised formats are no longer listed and
//! reading one is [`ErrorKind::NotFound`] — never a hang.
//!
//! ```
//! use ipckit::clipboard::{BoardOptions, Format};
//! # let dir = tempfile::tempdir().unwrap();
//! # let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let board = BoardOptions::new().namespace(&ns).open("clipboard").unwrap();
//! let mut t = board.begin();
//! t.empty();
//! t.promise(Format::DIB).unwrap();
//! let owner = t.close_with_renderer(|f| Some(format!("rendered {f}").into_bytes())).unwrap();
//! assert!(board.is_available(Format::DIB).unwrap());
//! assert_eq!(board.get(Format::DIB).unwrap(), b"rendered dib");
//! drop(owner);
//! # BoardOptions::new().namespace(&ns).remove("clipboard").unwrap();
//! ```
//!
//! # Where a board lives
//!
//! Board `B` is the shared map (see [`crate::map`]) named `clip/B`: a
//! `/dev/shm` object any process of the namespace can open, holding the
//! item's encoding; the layout, the owner's render endpoint and its wire
//! format are in `docs/PROTOCOL.md`, "Clipboard boards". The board's memory
//! is untrusted input: garbage in it is [`ErrorKind::Decode`] naming the
//! board, never a panic or a read out of bounds.
//!
//! Unlike Win32, [`Board::begin`] does not lock the board against other
//! writers while the transaction is open: the transaction is built locally
//! and published at [`close`](Transaction::close) under the board's
//! mutex, so the last close wins and no process can keep the clipboard
//! locked.
//!
//! # On Windows
//!
//! The same API and layout: the board is the Windows form of the shared
//! map (a section, a named mutex and an event per watcher, see
//! [`crate::map`]), its section made over the file `.board.<B>` of the
//! namespace directory (`/` written `~`) so that an item outlives the
//! processes that set it, as on Linux and as with the system clipboard
//! ([`BoardOptions::remove`] deletes that file once no process has the
//! board open). An owner with promised formats serves its render
//! endpoint on the byte-mode named pipe `\\.\pipe\ipckit.<H>..clip-<token>`
//! (the bytes of `docs/PROTOCOL.md`, "Clipboard boards"), checked to run as
//! the reader's user. The owner's start time recorded in the item is the
//! process's creation time there, so a recycled pid is not taken for a
//! live owner.
//!
//! ```
//! use ipckit::clipboard::BoardOptions;
//! # let dir = tempfile::tempdir().unwrap();
//! # let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let o = BoardOptions::new().namespace(&ns);
//! let b = o.open("kept").unwrap();
//! b.set_text("still here").unwrap();
//! drop(b); // the last handle: on Windows the section goes, its file stays
//! let b = o.open("kept").unwrap();
//! assert!(b.existed());
//! assert_eq!(b.get_text().unwrap(), "still here");
//! drop(b);
//! o.remove("kept").unwrap();
//! let fresh = o.open("kept").unwrap();
//! assert!(!fresh.existed());
//! # drop(fresh);
//! # o.remove("kept").unwrap();
//! ```

mod format;
mod item;
mod render;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::map::Subscription;
pub use format::Format;

use crate::conn::listen;
use crate::conn::pool::Pool;
use crate::conn::reactor::Reactor;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::map::{SharedMap, SharedMapOptions};
use crate::name::{validate_name, Namespace};
use crate::shm::MappingOptions;

use item::{Entry, Item, Table};
use render::{Failed, Served};

/// Default limit on an item's format data: 64 MiB (the creator fixes it).
pub const DEFAULT_MAX_SIZE: usize = 64 << 20;

/// Default [`BoardOptions::render_timeout`]: 5 s.
pub const DEFAULT_RENDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Most formats one item holds.
pub const MAX_FORMATS: usize = item::MAX_FORMATS;

/// Longest board name: the board `B` is the shared map `clip/B`, and a
/// name is at most 200 characters.
pub const MAX_BOARD_NAME: usize = 200 - PREFIX.len();

/// The shared map of board `B` is `clip/B`.
const PREFIX: &str = "clip/";

/// Index of the boards created in a namespace (one name per line).
const INDEX: &str = ".boards";

/// Render workers per owner.
const RENDERERS: usize = 4;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The file a board's section is made over on Windows, so that the item
/// outlives the processes that set it: `DIR\.board.<B>` with each `/`
/// written `~`.
#[cfg(windows)]
fn board_file(ns: &Namespace, board: &str) -> PathBuf {
    ns.dir().join(format!(".board.{}", board.replace('/', "~")))
}

fn map_name(board: &str) -> Result<String> {
    validate_name(board)?;
    if board.len() > MAX_BOARD_NAME {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "invalid name: a board name is at most {MAX_BOARD_NAME} characters, this one {}",
                board.len()
            ),
        )
        .with_name(board));
    }
    Ok(format!("{PREFIX}{board}"))
}

/// Options for opening a board (default namespace, [`DEFAULT_MAX_SIZE`],
/// [`DEFAULT_RENDER_TIMEOUT`]).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use std::time::Duration;
/// let board = ipckit::clipboard::BoardOptions::new()
///     .namespace(&ns)
///     .max_size(1 << 20)
///     .render_timeout(Duration::from_secs(2))
///     .open("clipboard")
///     .unwrap();
/// assert!(!board.existed());
/// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("clipboard").unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct BoardOptions {
    ns: Option<Namespace>,
    max_size: usize,
    render_timeout: Duration,
    mode: u32,
    limits: Limits,
}

impl Default for BoardOptions {
    fn default() -> Self {
        BoardOptions {
            ns: None,
            max_size: DEFAULT_MAX_SIZE,
            render_timeout: DEFAULT_RENDER_TIMEOUT,
            mode: 0o600,
            limits: Limits::default(),
        }
    }
}

impl BoardOptions {
    /// The defaults.
    ///
    /// ```
    /// let _ = ipckit::clipboard::BoardOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Use namespace `ns` (default: [`Namespace::from_env`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::clipboard::BoardOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.clone());
        self
    }

    /// Largest item, in bytes of format data (all formats together), used
    /// when creating the board (an opener gets the creator's); default
    /// [`DEFAULT_MAX_SIZE`] (64 MiB). A bigger item is
    /// [`ErrorKind::TooLarge`] and leaves the board as it was. The board's
    /// shared memory is twice this (double-buffered) plus 32 KiB, taken
    /// from `/dev/shm` only as items fill it.
    ///
    /// ```
    /// let _ = ipckit::clipboard::BoardOptions::new().max_size(1 << 20);
    /// ```
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// How long [`Board::get`] waits for an owner to render a promised
    /// format before [`ErrorKind::Timeout`]; default
    /// [`DEFAULT_RENDER_TIMEOUT`] (5 s). An owner that died is
    /// noticed at once ([`ErrorKind::NotFound`]), whatever this is.
    ///
    /// ```
    /// let _ = ipckit::clipboard::BoardOptions::new().render_timeout(std::time::Duration::from_secs(1));
    /// ```
    pub fn render_timeout(mut self, timeout: Duration) -> Self {
        self.render_timeout = timeout;
        self
    }

    /// Who besides the creator may open the board: its mode, as
    /// [`MappingOptions::mode`] (default `0o600`).
    ///
    /// ```
    /// let _ = ipckit::clipboard::BoardOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Limits of the render endpoint an [`Owner`] serves (connections,
    /// handshake and stall deadlines; see [`Limits`]).
    ///
    /// ```
    /// let _ = ipckit::clipboard::BoardOptions::new().limits(ipckit::Limits::default());
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn ns(&self) -> Result<Namespace> {
        listen::namespace(self.ns.as_ref())
    }

    fn map_options(&self, ns: &Namespace, name: &str) -> SharedMapOptions {
        let o = SharedMapOptions::new()
            .namespace(ns)
            .mode(self.mode)
            .max_size(self.max_size.saturating_add(item::OVERHEAD));
        #[cfg(windows)]
        let o = o.backing_file(board_file(ns, name));
        #[cfg(unix)]
        let _ = name;
        o
    }

    /// Open the board `name`, creating it (empty, sequence 0) if absent;
    /// [`Board::existed`] says which.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::BoardOptions;
    /// let a = BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let b = BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert!(!a.existed() && b.existed());
    /// assert_eq!(b.sequence().unwrap(), 0);
    /// # BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn open(&self, name: &str) -> Result<Board> {
        let mname = map_name(name)?;
        if self.max_size == 0 || self.max_size > (1 << 40) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_size {} is not usable; give 1 byte to 1 TiB",
                    self.max_size
                ),
            )
            .with_name(name));
        }
        let ns = self.ns()?;
        let map = self
            .map_options(&ns, name)
            .open_or_create(&mname)
            .map_err(|e| rename(e, name))?;
        let max = map.max_size().checked_sub(item::OVERHEAD).ok_or_else(|| {
            corrupt(
                name,
                &format!(
                    "its shared map holds {} bytes, less than an item's header",
                    map.max_size()
                ),
            )
        })?;
        if !map.existed() {
            // Best effort: only `list_in` reads it, and it re-checks.
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(ns.dir().join(INDEX))
            {
                let _ = f.write_all(format!("{name}\n").as_bytes());
            }
        }
        Ok(Board {
            name: name.to_string(),
            ns,
            existed: map.existed(),
            max,
            render_timeout: self.render_timeout,
            limits: self.limits.clone(),
            map: Mutex::new(map),
        })
    }

    /// Remove the board `name` (its shared memory): processes that have it
    /// open keep theirs; the next open creates a fresh, empty board. The
    /// way out of a corrupt board. On Windows this deletes the board's file
    /// (see "On Windows" in the [module docs](self)), which only works once
    /// no process has the board open ([`ErrorKind::Busy`] before).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::BoardOptions;
    /// let o = BoardOptions::new().namespace(&ns);
    /// drop(o.open("b").unwrap());
    /// o.remove("b").unwrap();
    /// assert_eq!(o.remove("b").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    pub fn remove(&self, name: &str) -> Result<()> {
        let ns = self.ns()?;
        let o = MappingOptions::new().namespace(&ns);
        #[cfg(windows)]
        let o = o.backing_file(board_file(&ns, name));
        o.remove(&map_name(name)?).map_err(|e| rename(e, name))
    }
}

/// An error about the board's map, reworded to name the board.
fn rename(e: Error, board: &str) -> Error {
    if e.kind() == ErrorKind::Decode {
        return corrupt(board, e.message());
    }
    let msg = format!("board '{board}': {}", e.message());
    Error::new(e.kind(), msg).with_name(board).with_source(e)
}

fn corrupt(board: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        if cfg!(windows) {
            format!("the board's shared memory is corrupt ({why}); close it in every process, remove it (BoardOptions::remove) and open it again")
        } else {
            format!("the board's shared memory is corrupt ({why}); remove it (BoardOptions::remove, or `ipckit map rm {PREFIX}{board}`) and open it again")
        },
    )
    .with_name(board)
}

/// A named clipboard board (see the [module docs](self)).
#[derive(Debug)]
pub struct Board {
    name: String,
    ns: Namespace,
    existed: bool,
    max: usize,
    render_timeout: Duration,
    limits: Limits,
    map: Mutex<SharedMap>,
}

/// One change of a board seen by a listener (`WM_CLIPBOARDUPDATE`): the
/// newest item's sequence number, owner and available formats.
///
/// ```
/// let c = ipckit::clipboard::BoardChange { sequence: 3, owner: Some(42), formats: vec![] };
/// assert_eq!(c.sequence, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardChange {
    /// The item's sequence number.
    pub sequence: u64,
    /// Pid of the process that set it.
    pub owner: Option<u32>,
    /// Its formats available now, in the order they were set.
    pub formats: Vec<Format>,
}

/// One whole item as [`Board::contents`] reads it.
///
/// ```
/// let c = ipckit::clipboard::Contents { sequence: 1, owner: None, data: vec![], promised: vec![] };
/// assert!(c.data.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The item's sequence number.
    pub sequence: u64,
    /// Pid of the process that set it.
    pub owner: Option<u32>,
    /// Each format that has data, with it, in the order they were set.
    pub data: Vec<(Format, Vec<u8>)>,
    /// Formats promised by an owner that is still running.
    pub promised: Vec<Format>,
}

/// What [`list_in`] reports about a board.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
/// b.set_text("x").unwrap();
/// let info = &ipckit::clipboard::list_in(&ns).unwrap()[0];
/// assert_eq!((info.name.as_str(), info.sequence), ("b", 1));
/// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardInfo {
    /// The board's name.
    pub name: String,
    /// Its current sequence number.
    pub sequence: u64,
    /// Pid of the process that set the current item.
    pub owner: Option<u32>,
    /// The formats available.
    pub formats: Vec<Format>,
    /// Its limit on an item's format data.
    pub max_size: usize,
}

/// Every board of the namespace `ns` that still exists, sorted by name.
/// Boards are found through the index `DIR/.boards` (each creator appends
/// its board's name) and re-checked: a board that was removed is left
/// out, a corrupt one is an error naming it.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// assert!(ipckit::clipboard::list_in(&ns).unwrap().is_empty());
/// ```
pub fn list_in(ns: &Namespace) -> Result<Vec<BoardInfo>> {
    let text = match std::fs::read_to_string(ns.dir().join(INDEX)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Error::os(e, "cannot read the namespace's board index").with_name(INDEX))
        }
    };
    let mut names: Vec<&str> = text.lines().filter(|l| map_name(l).is_ok()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let map = match SharedMapOptions::new()
            .namespace(ns)
            .open(&format!("{PREFIX}{name}"))
        {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(rename(e, name)),
        };
        let Some(max) = map.max_size().checked_sub(item::OVERHEAD) else {
            return Err(corrupt(name, "its shared map is too small for a board"));
        };
        let board = Board {
            name: name.to_string(),
            ns: ns.clone(),
            existed: true,
            max,
            render_timeout: DEFAULT_RENDER_TIMEOUT,
            limits: Limits::default(),
            map: Mutex::new(map),
        };
        let item = board.table()?;
        out.push(BoardInfo {
            name: name.to_string(),
            sequence: item.sequence,
            owner: (item.owner_pid != 0).then_some(item.owner_pid),
            formats: available(&item),
            max_size: max,
        });
    }
    Ok(out)
}

/// The formats of `item` a reader can get: those with data, and promises
/// of an owner that is still running.
fn available(t: &Table) -> Vec<Format> {
    let alive =
        !t.has_promises() || (t.token != 0 && item::owner_alive(t.owner_pid, t.owner_start));
    t.slots
        .iter()
        .filter(|s| !s.promised || alive)
        .map(|s| s.format)
        .collect()
}

/// Read the checked table of the item in `map` (a board of limit `max`),
/// and with it what `then` reads of the item's bytes, in one consistent
/// read (retried if a writer overtakes it).
fn read_item<T>(
    map: &SharedMap,
    board: &str,
    max: usize,
    mut then: impl FnMut(&Table, &dyn Fn(usize, &mut [u8]) -> Result<()>) -> Result<T>,
) -> Result<(Table, T)> {
    map.read_with(|read, len| {
        let t = Table::read(
            &|o, b| read(o, b).map_err(|e| e.message().to_string()),
            len,
            max,
        )
        .map_err(|why| corrupt(board, &why))?;
        let out = then(&t, read)?;
        Ok((t, out))
    })
    .map(|(r, _)| r)
    .map_err(|e| match e.kind() {
        ErrorKind::Decode if e.name() == Some(board) => e,
        _ => rename(e, board),
    })
}

/// `CF_UNICODETEXT` bytes of `text`: UTF-16LE and a NUL `u16`.
fn utf16z(text: &str) -> Vec<u8> {
    let mut b: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    b.extend_from_slice(&[0, 0]);
    b
}

/// `CF_TEXT` bytes of `text`: UTF-8 and a NUL.
fn utf8z(text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    b.push(0);
    b
}

/// The text of `CF_UNICODETEXT` bytes: up to the first NUL (lossy).
///
/// ```
/// use ipckit::clipboard::{text_from_unicode, text_to_unicode};
/// assert_eq!(text_from_unicode(&text_to_unicode("héllo")), "héllo");
/// ```
pub fn text_from_unicode(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// The `CF_UNICODETEXT` bytes of `text`: UTF-16LE, then a NUL `u16`.
///
/// ```
/// assert_eq!(ipckit::clipboard::text_to_unicode("A"), [0x41, 0, 0, 0]);
/// ```
pub fn text_to_unicode(text: &str) -> Vec<u8> {
    utf16z(text)
}

/// The text of `CF_TEXT` bytes: up to the first NUL (invalid UTF-8
/// replaced by U+FFFD).
///
/// ```
/// assert_eq!(ipckit::clipboard::text_from_bytes(b"hi\0junk"), "hi");
/// ```
pub fn text_from_bytes(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The `CF_TEXT` bytes of `text`: its UTF-8, then a NUL.
///
/// ```
/// assert_eq!(ipckit::clipboard::text_to_bytes("hi"), b"hi\0");
/// ```
pub fn text_to_bytes(text: &str) -> Vec<u8> {
    utf8z(text)
}

impl Board {
    /// Open (or create) the board `name` in the namespace from the
    /// environment, with the default options (see [`BoardOptions::open`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let board = ipckit::clipboard::Board::open("clipboard").unwrap();
    /// assert_eq!(board.name(), "clipboard");
    /// # ipckit::clipboard::BoardOptions::new().remove("clipboard").unwrap();
    /// ```
    pub fn open(name: &str) -> Result<Board> {
        BoardOptions::new().open(name)
    }

    /// The board's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert_eq!(b.name(), "b");
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the board existed before this handle opened it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert!(!b.existed());
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The largest item accepted, in bytes of format data (fixed by the
    /// board's creator).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).max_size(10).open("b").unwrap();
    /// assert_eq!(b.max_size(), 10);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// How long [`get`](Board::get) waits for an owner's rendering.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert_eq!(b.render_timeout(), ipckit::clipboard::DEFAULT_RENDER_TIMEOUT);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn render_timeout(&self) -> Duration {
        self.render_timeout
    }

    /// The current item's header and table (no data copied).
    fn table(&self) -> Result<Table> {
        read_item(&lock(&self.map), &self.name, self.max, |_, _| Ok(())).map(|(t, ())| t)
    }

    /// The whole current item.
    fn item(&self) -> Result<Item> {
        let (t, data) = read_item(&lock(&self.map), &self.name, self.max, |t, read| {
            t.slots
                .iter()
                .filter(|s| !s.promised)
                .map(|s| {
                    let mut d = vec![0u8; s.len];
                    read(s.offset, &mut d)?;
                    Ok(d)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let mut data = data.into_iter();
        Ok(t.into_item(|_| data.next().unwrap_or_default()))
    }

    /// The sequence number: 0 for a new board, +1 on every set
    /// (`GetClipboardSequenceNumber`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert_eq!(b.sequence().unwrap(), 0);
    /// b.set_text("x").unwrap();
    /// assert_eq!(b.sequence().unwrap(), 1);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "GetClipboardSequenceNumber")]
    pub fn sequence(&self) -> Result<u64> {
        Ok(self.table()?.sequence)
    }

    /// The pid of the process that set the current item, `None` for a new
    /// board (`GetClipboardOwner`). It may have exited since.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert_eq!(b.owner().unwrap(), None);
    /// b.set_text("x").unwrap();
    /// assert_eq!(b.owner().unwrap(), Some(std::process::id()));
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "GetClipboardOwner")]
    pub fn owner(&self) -> Result<Option<u32>> {
        let i = self.table()?;
        Ok((i.owner_pid != 0).then_some(i.owner_pid))
    }

    /// The formats available, in the order they were set
    /// (`EnumClipboardFormats`): those with data, and those promised by an
    /// owner that is still running.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// b.set_text("x").unwrap();
    /// assert_eq!(b.formats().unwrap(), [Format::UNICODE_TEXT, Format::TEXT]);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "EnumClipboardFormats")]
    #[doc(alias = "CountClipboardFormats")]
    pub fn formats(&self) -> Result<Vec<Format>> {
        Ok(available(&self.table()?))
    }

    /// The current item's sequence number, owner and available formats,
    /// read at once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let seq = b.set_text("x").unwrap();
    /// assert_eq!(b.current().unwrap().sequence, seq);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn current(&self) -> Result<BoardChange> {
        Ok(change(&self.table()?))
    }

    /// The whole current item, read at once: every format's data, and the
    /// formats promised by a live owner (not rendered here). Separate
    /// [`get`](Board::get)s may see different items if the board changes
    /// in between (Win32 readers keep the clipboard open for that); this
    /// never mixes two items.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// b.set_text("x").unwrap();
    /// let c = b.contents().unwrap();
    /// assert_eq!(c.sequence, 1);
    /// assert_eq!(c.data[1], (Format::TEXT, b"x\0".to_vec()));
    /// assert!(c.promised.is_empty());
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn contents(&self) -> Result<Contents> {
        let item = self.item()?;
        let live = available(&self.table()?);
        Ok(Contents {
            sequence: item.sequence,
            owner: (item.owner_pid != 0).then_some(item.owner_pid),
            promised: item
                .entries
                .iter()
                .filter(|e| e.data.is_none() && live.contains(&e.format))
                .map(|e| e.format)
                .collect(),
            data: item
                .entries
                .into_iter()
                .filter_map(|e| Some((e.format, e.data?)))
                .collect(),
        })
    }

    /// Whether format `f` is available (`IsClipboardFormatAvailable`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// b.set_text("x").unwrap();
    /// assert!(b.is_available(Format::TEXT).unwrap());
    /// assert!(!b.is_available(Format::DIB).unwrap());
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "IsClipboardFormatAvailable")]
    pub fn is_available(&self, f: Format) -> Result<bool> {
        Ok(self.formats()?.contains(&f))
    }

    /// The data of format `f` (`GetClipboardData`). A promised format is
    /// rendered by its owner on demand, within the
    /// [render timeout](BoardOptions::render_timeout)
    /// ([`ErrorKind::Timeout`] past it). [`ErrorKind::NotFound`] if the
    /// item has no such format, its owner has died, or its renderer gave
    /// nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// b.set(Format::DIB, vec![1, 2, 3]).unwrap();
    /// assert_eq!(b.get(Format::DIB).unwrap(), [1, 2, 3]);
    /// assert_eq!(b.get(Format::TEXT).unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "GetClipboardData")]
    pub fn get(&self, f: Format) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.render_timeout;
        let mut last_seq = None;
        loop {
            // The table and, if it has data, that one format's bytes.
            let (item, data) =
                read_item(&lock(&self.map), &self.name, self.max, |t, read| {
                    match t.slot(f) {
                        Some(s) if !s.promised => {
                            let mut d = vec![0u8; s.len];
                            read(s.offset, &mut d)?;
                            Ok(Some(d))
                        }
                        _ => Ok(None),
                    }
                })?;
            if let Some(d) = data {
                return Ok(d);
            }
            let not_found =
                |why: String| Error::new(ErrorKind::NotFound, why).with_name(&self.name);
            if item.slot(f).is_none() {
                return Err(not_found(format!(
                    "the board has no format {f} (it has {}); check its formats",
                    list(&available(&item))
                )));
            }
            let gone = || {
                not_found(format!(
                    "format {f} was promised by the board's owner (pid {}), which has exited; it is not available",
                    item.owner_pid
                ))
            };
            if item.token == 0 || !item::owner_alive(item.owner_pid, item.owner_start) {
                return Err(gone());
            }
            // The same item twice without data: the owner is gone (it
            // would have stored what it rendered on exit).
            if last_seq == Some(item.sequence) {
                return Err(gone());
            }
            last_seq = Some(item.sequence);
            let path = render::socket_path(&self.ns, item.token);
            match render::request_render(
                &self.ns,
                &self.name,
                &path,
                f,
                item.sequence,
                self.max,
                deadline,
            ) {
                Ok(d) => return Ok(d),
                // Gone or replaced: read the board again (the owner may
                // have stored it on its way out, or a new item came).
                Err(Failed::Gone) | Err(Failed::Refused(render::ERR_STALE)) => {}
                Err(Failed::Refused(code)) => {
                    return Err(match code {
                        render::ERR_TOO_LARGE => Error::new(
                            ErrorKind::TooLarge,
                            format!("the owner rendered format {f} larger than the board's limit of {} bytes", self.max),
                        )
                        .with_name(&self.name),
                        render::ERR_FAILED => Error::new(
                            ErrorKind::Remote,
                            format!("the owner's renderer failed (panicked) rendering format {f}"),
                        )
                        .with_name(&self.name),
                        render::ERR_DECLINED => not_found(format!(
                            "the owner (pid {}) could not render format {f} (its renderer gave nothing)",
                            item.owner_pid
                        )),
                        c => not_found(format!(
                            "the owner (pid {}) refused to render format {f} (code {c})",
                            item.owner_pid
                        )),
                    })
                }
                Err(Failed::Error(e)) => return Err(e),
            }
        }
    }

    /// The item's text: `CF_UNICODETEXT` if present, else `CF_TEXT`
    /// (each up to its first NUL); [`ErrorKind::NotFound`] if it has
    /// neither.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// b.set_text("héllo").unwrap();
    /// assert_eq!(b.get_text().unwrap(), "héllo");
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn get_text(&self) -> Result<String> {
        let formats = self.formats()?;
        if formats.contains(&Format::UNICODE_TEXT) {
            match self.get(Format::UNICODE_TEXT) {
                Ok(b) => return Ok(text_from_unicode(&b)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if formats.contains(&Format::TEXT) {
            return self.get(Format::TEXT).map(|b| text_from_bytes(&b));
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!("the board holds no text (its formats: {})", list(&formats)),
        )
        .with_name(&self.name))
    }

    /// Replace the item with `text`, as `CF_UNICODETEXT` (UTF-16LE + NUL)
    /// and `CF_TEXT` (UTF-8 + NUL); returns the new sequence number.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// b.set_text("hi").unwrap();
    /// assert_eq!(b.get(Format::TEXT).unwrap(), b"hi\0");
    /// assert_eq!(b.get(Format::UNICODE_TEXT).unwrap(), [b'h', 0, b'i', 0, 0, 0]);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn set_text(&self, text: &str) -> Result<u64> {
        let mut t = self.begin();
        t.empty();
        t.set(Format::UNICODE_TEXT, utf16z(text))?;
        t.set(Format::TEXT, utf8z(text))?;
        t.close()
    }

    /// Replace the item with one format: a whole transaction (empty, set,
    /// close); returns the new sequence number.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert_eq!(b.set(Format::DIB, vec![0; 4]).unwrap(), 1);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn set(&self, f: Format, data: Vec<u8>) -> Result<u64> {
        let mut t = self.begin();
        t.empty();
        t.set(f, data)?;
        t.close()
    }

    /// Start a transaction (`OpenClipboard`): [`empty`](Transaction::empty)
    /// it, [`set`](Transaction::set) or [`promise`](Transaction::promise)
    /// formats, then [`close`](Transaction::close) to publish. Dropping it
    /// unclosed changes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut t = b.begin();
    /// t.empty();
    /// t.set(Format::TEXT, b"a\0".to_vec()).unwrap();
    /// drop(t); // not closed: discarded
    /// assert_eq!(b.sequence().unwrap(), 0);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "OpenClipboard")]
    pub fn begin(&self) -> Transaction<'_> {
        Transaction {
            board: self,
            emptied: false,
            entries: Vec::new(),
        }
    }

    /// Listen for changes (`AddClipboardFormatListener`): an iterator
    /// that blocks until the board's item is replaced and yields the
    /// newest item's [`BoardChange`]. BoardChanges that come faster than they are
    /// read are coalesced: the latest item is never missed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut w = b.watch().unwrap();
    /// b.set_text("1").unwrap();
    /// b.set_text("2").unwrap();
    /// let c = w.next().unwrap().unwrap();
    /// assert_eq!(c.sequence, 2); // the latest item
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "AddClipboardFormatListener")]
    #[doc(alias = "WM_CLIPBOARDUPDATE")]
    pub fn watch(&self) -> Result<BoardWatch> {
        let map = lock(&self.map)
            .twin_handle()
            .map_err(|e| rename(e, &self.name))?;
        let last = self.table()?.sequence;
        Ok(BoardWatch {
            map,
            name: self.name.clone(),
            max: self.max,
            last,
        })
    }

    /// Call `callback` on a background thread with every change of the
    /// board (by any process, this one included), until the returned
    /// [`Subscription`] is dropped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let sub = b.on_change(move |c| { let _ = tx.send(c.sequence); }).unwrap();
    /// b.set_text("x").unwrap();
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(), 1);
    /// drop(sub);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn on_change(
        &self,
        mut callback: impl FnMut(BoardChange) + Send + 'static,
    ) -> Result<Subscription> {
        let mut w = self.watch()?;
        Subscription::spawn("ipckit-clip-watch", &self.name, move |wait| {
            callback(w.next_timeout(Some(wait))?);
            Ok(())
        })
    }

    /// Publish `entries` as the next item (under the map's mutex); returns
    /// the new sequence number.
    fn publish(&self, entries: Vec<Entry>, token: u64) -> Result<u64> {
        self.publish_then(entries, token, |_| {})
    }

    /// [`publish`](Self::publish), calling `known` with the new sequence
    /// number under the map's mutex, before the item is visible.
    fn publish_then(
        &self,
        entries: Vec<Entry>,
        token: u64,
        known: impl FnOnce(u64),
    ) -> Result<u64> {
        let pid = std::process::id();
        let new = Item {
            sequence: 0,
            owner_pid: pid,
            owner_start: item::own_start_time(),
            token,
            entries,
        };
        if new.data_len() > self.max {
            return Err(self.too_large(new.data_len()));
        }
        let name = &self.name;
        let mut map = lock(&self.map);
        let (_, (seq, old)) = map
            .update(item::HEADER, |head| {
                let old = item::header_of(head).map_err(|why| corrupt(name, &why))?;
                let seq = old
                    .0
                    .checked_add(1)
                    .ok_or_else(|| corrupt(name, "its sequence number is at the largest value"))?;
                let mut new = new;
                new.sequence = seq;
                let bytes = new.encode();
                known(seq);
                Ok((Some(bytes), (seq, old)))
            })
            .map_err(|e| match e.kind() {
                ErrorKind::Decode | ErrorKind::TooLarge => e,
                _ => rename(e, name),
            })?;
        drop(map);
        // A killed owner left its render socket (and counters) behind:
        // the item that named them is gone now, so are they.
        let (_, old_pid, old_start, old_token) = old;
        if old_token != 0 && old_token != token && !item::owner_alive(old_pid, old_start) {
            listen::remove_unrecorded(&render::socket_path(&self.ns, old_token));
            let _ = std::fs::remove_file(render::stats_path(&self.ns, old_token));
        }
        Ok(seq)
    }

    fn too_large(&self, len: usize) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "an item of {len} bytes of format data is over the board's limit of {} bytes; the board keeps its current item (create the board with a larger BoardOptions::max_size)",
                self.max
            ),
        )
        .with_name(&self.name)
        .with_needed(len)
    }
}

fn change(item: &Table) -> BoardChange {
    BoardChange {
        sequence: item.sequence,
        owner: (item.owner_pid != 0).then_some(item.owner_pid),
        formats: available(item),
    }
}

fn list(formats: &[Format]) -> String {
    if formats.is_empty() {
        return "none".into();
    }
    formats
        .iter()
        .map(Format::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An open clipboard transaction (see [`Board::begin`]).
#[doc(alias = "OpenClipboard")]
#[derive(Debug)]
pub struct Transaction<'a> {
    board: &'a Board,
    emptied: bool,
    entries: Vec<Entry>,
}

impl Transaction<'_> {
    /// Start a new item with no formats (`EmptyClipboard`); required
    /// before [`set`](Self::set) and [`promise`](Self::promise). This
    /// process becomes the owner at [`close`](Self::close).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut t = b.begin();
    /// t.empty();
    /// assert_eq!(t.close().unwrap(), 1); // an empty item
    /// assert!(b.formats().unwrap().is_empty());
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "EmptyClipboard")]
    pub fn empty(&mut self) {
        self.emptied = true;
        self.entries.clear();
    }

    fn check(&self, f: Format, what: &str) -> Result<()> {
        if !self.emptied {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("cannot {what} format {f}: this transaction is not the clipboard's owner; call empty() first (EmptyClipboard)"),
            )
            .with_name(&self.board.name));
        }
        if f.id() == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "format 0 does not exist; formats are numbered from 1",
            )
            .with_name(&self.board.name));
        }
        if self.entries.len() >= MAX_FORMATS && !self.entries.iter().any(|e| e.format == f) {
            return Err(Error::new(
                ErrorKind::Full,
                format!("an item holds at most {MAX_FORMATS} formats"),
            )
            .with_name(&self.board.name));
        }
        Ok(())
    }

    fn put(&mut self, f: Format, data: Option<Vec<u8>>) -> Result<()> {
        let others: usize = self
            .entries
            .iter()
            .filter(|e| e.format != f)
            .map(|e| e.data.as_ref().map_or(0, Vec::len))
            .sum();
        let total = others + data.as_ref().map_or(0, Vec::len);
        if total > self.board.max {
            return Err(self.board.too_large(total));
        }
        match self.entries.iter_mut().find(|e| e.format == f) {
            Some(e) => e.data = data,
            None => self.entries.push(Entry { format: f, data }),
        }
        Ok(())
    }

    /// Set format `f` to `data` (`SetClipboardData`), replacing what this
    /// transaction had for it. [`ErrorKind::TooLarge`] if the item's data
    /// would pass the board's limit (the transaction keeps what it had);
    /// [`ErrorKind::InvalidInput`] before [`empty`](Self::empty).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::{clipboard::Format, ErrorKind};
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).max_size(4).open("b").unwrap();
    /// let mut t = b.begin();
    /// assert_eq!(t.set(Format::TEXT, b"a\0".to_vec()).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// t.empty();
    /// t.set(Format::TEXT, b"a\0".to_vec()).unwrap();
    /// assert_eq!(t.set(Format::DIB, vec![0; 3]).unwrap_err().kind(), ErrorKind::TooLarge);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "SetClipboardData")]
    pub fn set(&mut self, f: Format, data: Vec<u8>) -> Result<()> {
        self.check(f, "set")?;
        self.put(f, Some(data))
    }

    /// Promise format `f` without its data (`SetClipboardData(f, NULL)`):
    /// a reader asking for it makes the renderer given to
    /// [`close_with_renderer`](Self::close_with_renderer) produce it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut t = b.begin();
    /// t.empty();
    /// t.promise(Format::DIB).unwrap();
    /// // A promise needs a renderer:
    /// assert_eq!(t.close().unwrap_err().kind(), ipckit::ErrorKind::InvalidInput);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn promise(&mut self, f: Format) -> Result<()> {
        self.check(f, "promise")?;
        self.put(f, None)
    }

    /// Publish the item (`CloseClipboard`) and return its sequence number.
    /// Without [`empty`](Self::empty) nothing changes (the current
    /// sequence number is returned). [`ErrorKind::InvalidInput`] if a
    /// format is promised (use
    /// [`close_with_renderer`](Self::close_with_renderer));
    /// [`ErrorKind::TooLarge`] and the board keeps its item if it does not
    /// fit.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// assert_eq!(b.begin().close().unwrap(), 0); // not emptied: no change
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "CloseClipboard")]
    pub fn close(self) -> Result<u64> {
        if !self.emptied {
            return self.board.sequence();
        }
        if let Some(e) = self.entries.iter().find(|e| e.data.is_none()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("format {} is promised, so the item needs a renderer: close it with close_with_renderer", e.format),
            )
            .with_name(&self.board.name));
        }
        self.board.publish(self.entries, 0)
    }

    /// Publish the item, serving its promised formats with `renderer`
    /// (`WM_RENDERFORMAT`: called with the format a reader asks for, one
    /// call at a time, on a worker thread; `None` means it cannot be
    /// rendered). The returned [`Owner`] serves render requests until it
    /// is dropped or the item is replaced.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut t = b.begin();
    /// t.empty();
    /// t.set(Format::TEXT, b"x\0".to_vec()).unwrap();
    /// t.promise(Format::DIB).unwrap();
    /// let owner = t.close_with_renderer(|_| Some(vec![7; 10])).unwrap();
    /// assert_eq!(b.get(Format::DIB).unwrap(), [7; 10]);
    /// drop(owner);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "WM_RENDERFORMAT")]
    pub fn close_with_renderer(
        self,
        renderer: impl FnMut(Format) -> Option<Vec<u8>> + Send + 'static,
    ) -> Result<Owner> {
        let board = self.board;
        if !self.emptied {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "nothing to serve: this transaction was not emptied (call empty() and promise formats first)",
            )
            .with_name(&board.name));
        }
        let promised: Vec<Format> = self
            .entries
            .iter()
            .filter(|e| e.data.is_none())
            .map(|e| e.format)
            .collect();
        let data_len: usize = self
            .entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, Vec::len))
            .sum();
        if data_len > board.max {
            return Err(board.too_large(data_len));
        }
        if promised.is_empty() {
            let seq = board.publish(self.entries, 0)?;
            return Ok(Owner::idle(board, seq));
        }
        let token = new_token();
        let path = render::socket_path(&board.ns, token);
        let listening =
            listen::listen_unrecorded(&board.name, &path, render::stats_path(&board.ns, token))?;
        let map = lock(&board.map)
            .twin_handle()
            .map_err(|e| rename(e, &board.name))?;
        let pool = Pool::new(RENDERERS, format!("clip-{}", board.name));
        // Readers may ask as soon as the item is published, so the
        // endpoint starts first; it answers "stale" until the sequence
        // number is known.
        let served = Arc::new(Served {
            sequence: AtomicU64::new(0),
            max: board.max,
            promised,
            renderer: Mutex::new(Some(Box::new(renderer))),
            rendered: Mutex::new(HashMap::new()),
            map: Mutex::new(map),
            current: AtomicBool::new(false),
            pool: pool.clone(),
        });
        let reactor = Reactor::start(
            &format!("clip-{}", board.name),
            Arc::new(render::Wire(served.clone())),
            listening,
            board.limits.clone(),
        )
        .map_err(|e| {
            listen::remove_unrecorded(&path);
            Error::os(e, "cannot start the owner's render endpoint").with_name(&board.name)
        })?;
        // The endpoint knows its sequence number before readers can see
        // the item (set under the board's mutex, ahead of the write).
        let published = board.publish_then(self.entries, token, |seq| {
            served.sequence.store(seq, Ordering::Release);
            served.current.store(true, Ordering::Release);
        });
        let seq = match published {
            Ok(s) => s,
            Err(e) => {
                served.current.store(false, Ordering::Release);
                drop(reactor);
                listen::remove_unrecorded(&path);
                pool.stop();
                return Err(e);
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let served = served.clone();
            let stop = stop.clone();
            let mut map = lock(&board.map)
                .twin_handle()
                .map_err(|e| rename(e, &board.name))?;
            std::thread::Builder::new()
                .name(format!("ipckit-clip-owner-{}", board.name))
                .spawn(move || watch_replacement(&mut map, &served, &stop))
                .ok()
        };
        Ok(Owner {
            board: board.name.clone(),
            sequence: seq,
            served: Some(served),
            reactor: Some(reactor),
            pool: Some(pool),
            socket: Some(path),
            stop,
            watcher,
        })
    }
}

/// A token naming an owner's render endpoint: unique per owner.
fn new_token() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let seed = (u64::from(std::process::id()) << 32) ^ t ^ n.rotate_left(48);
    crate::name::fnv1a64(&seed.to_le_bytes()).max(1)
}

/// The owner's watcher thread: when the item is replaced, stop rendering
/// and drop the renderer (`WM_DESTROYCLIPBOARD`).
fn watch_replacement(map: &mut SharedMap, served: &Served, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match map.wait_newer(Some(Duration::from_millis(100))) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Timeout => continue,
            Err(_) => return,
        }
        let replaced = match read_item(map, "", served.max, |_, _| Ok(())) {
            Ok((t, ())) => t.sequence != served.sequence.load(Ordering::Acquire),
            Err(_) => true,
        };
        if replaced {
            served.current.store(false, Ordering::Release);
            drop(lock(&served.renderer).take());
            return;
        }
    }
}

/// The owner of an item with promised formats: serves its render requests
/// (`WM_RENDERFORMAT`) until dropped or until the item is replaced. Dropped
/// while its item is still current, it first renders every promised format
/// into the board (`WM_RENDERALLFORMATS`); formats its renderer cannot
/// produce are then dropped from the item.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::clipboard::{BoardOptions, Format};
/// let b = BoardOptions::new().namespace(&ns).open("b").unwrap();
/// let mut t = b.begin();
/// t.empty();
/// t.promise(Format::TEXT).unwrap();
/// let owner = t.close_with_renderer(|_| Some(b"late\0".to_vec())).unwrap();
/// assert!(owner.is_current().unwrap());
/// drop(owner); // renders it into the board
/// assert_eq!(b.get_text().unwrap(), "late");
/// # BoardOptions::new().namespace(&ns).remove("b").unwrap();
/// ```
#[doc(alias = "WM_RENDERALLFORMATS")]
pub struct Owner {
    board: String,
    sequence: u64,
    served: Option<Arc<Served>>,
    reactor: Option<Reactor>,
    pool: Option<Arc<Pool>>,
    socket: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("board", &self.board)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl Owner {
    fn idle(board: &Board, sequence: u64) -> Owner {
        Owner {
            board: board.name.clone(),
            sequence,
            served: None,
            reactor: None,
            pool: None,
            socket: None,
            stop: Arc::new(AtomicBool::new(true)),
            watcher: None,
        }
    }

    /// The sequence number of the item this owner published.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut t = b.begin();
    /// t.empty();
    /// t.promise(ipckit::clipboard::Format::DIB).unwrap();
    /// let o = t.close_with_renderer(|_| None).unwrap();
    /// assert_eq!(o.sequence(), 1);
    /// # drop(o);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Whether this owner's item is still the board's current item (it is
    /// not once another set replaced it).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut t = b.begin();
    /// t.empty();
    /// t.promise(ipckit::clipboard::Format::DIB).unwrap();
    /// let o = t.close_with_renderer(|_| None).unwrap();
    /// b.set_text("replaced").unwrap();
    /// assert!(!o.is_current().unwrap());
    /// # drop(o);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn is_current(&self) -> Result<bool> {
        let Some(s) = &self.served else {
            return Ok(false);
        };
        let (t, ()) = read_item(&lock(&s.map), &self.board, s.max, |_, _| Ok(()))?;
        Ok(t.sequence == self.sequence && t.owner_pid == std::process::id())
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        if let Some(s) = &self.served {
            if s.current.load(Ordering::Acquire) && self.is_current().unwrap_or(false) {
                // WM_RENDERALLFORMATS: what readers have not asked for yet.
                let mut all = Vec::new();
                for f in s.promised.clone() {
                    let d = match s.render(f, self.sequence) {
                        render::Rendered::Data(d) => Some(d),
                        render::Rendered::Error(_) => None,
                    };
                    all.push((f, d));
                }
                s.store(&all, true);
            }
            s.current.store(false, Ordering::Release);
            drop(lock(&s.renderer).take());
        }
        if let Some(mut r) = self.reactor.take() {
            r.drain(Duration::from_secs(1));
        }
        if let Some(p) = self.socket.take() {
            listen::remove_unrecorded(&p);
        }
        if let Some(p) = self.pool.take() {
            p.stop();
        }
    }
}

/// The iterator of a board's changes (see [`Board::watch`]).
#[derive(Debug)]
pub struct BoardWatch {
    map: SharedMap,
    name: String,
    max: usize,
    last: u64,
}

impl BoardWatch {
    /// Wait for an item newer than the last one delivered (or than the
    /// current one when the watch started), at most `timeout` (`None`:
    /// for ever; [`ErrorKind::Timeout`] past it), and return the newest.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let mut w = b.watch().unwrap();
    /// let e = w.next_timeout(Some(Duration::from_millis(10))).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Result<BoardChange> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // The map's version also moves when an owner stores a rendered
            // format in its item (same sequence): not a change of item.
            match self.map.wait_newer(left) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "the board did not change within the timeout",
                    )
                    .with_name(&self.name))
                }
                Err(e) => return Err(rename(e, &self.name)),
            };
            let (item, ()) = read_item(&self.map, &self.name, self.max, |_, _| Ok(()))?;
            if item.sequence > self.last {
                self.last = item.sequence;
                return Ok(change(&item));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the board did not change within the timeout",
                )
                .with_name(&self.name));
            }
        }
    }
}

impl Iterator for BoardWatch {
    type Item = Result<BoardChange>;
    fn next(&mut self) -> Option<Result<BoardChange>> {
        Some(self.next_timeout(None))
    }
}
