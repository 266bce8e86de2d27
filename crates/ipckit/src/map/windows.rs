//! A named shared value with change broadcast — the Delphi `TFileMap` — on
//! Windows, built as the original was: a section (`CreateFileMappingW`)
//! holding the content, a named mutex (`CreateMutexW`) that writers take,
//! and a change notification that wakes every process watching.
//!
//! A [`SharedMap`] holds one content (bytes or text) of at most `max_size`
//! bytes. Every process that opens the name sees it; a write replaces it
//! under the map's mutex, bumps a version and wakes every handle waiting
//! for a change ([`SharedMap::wait_change`], [`SharedMap::watch`],
//! [`SharedMap::on_change`]). A reader never sees a half-written content,
//! even if a writer dies in the middle of a write.
//!
//! ```
//! use ipckit::map::SharedMapOptions;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = SharedMapOptions::new().namespace(&ns).max_size(1024);
//!
//! let mut a = opts.open_or_create("settings").unwrap();
//! assert!(!a.existed());
//! let mut b = opts.open_or_create("settings").unwrap();
//! assert!(b.existed());
//!
//! a.write_text("volume=3").unwrap();
//! let change = b.wait_change(Some(std::time::Duration::from_secs(5))).unwrap();
//! assert_eq!(change.content, b"volume=3");
//! assert_eq!((change.version, change.skipped), (1, 0));
//! ```
//!
//! # The objects
//!
//! For the map `NAME` whose section is `S` = `Local\ipckit.<H>.<NAME with
//! '/' → ':'>` (see [`crate::shm`]; a name in the system's form, `Local\X`
//! or `Global\X`, is `S` itself, and its section has no ipckit header):
//!
//! - the section `S`: the content, double-buffered, with its version
//!   (the layout is in `docs/PROTOCOL.md`; the same as on Linux, plus a
//!   table of watchers);
//! - the mutex `S!mutex`, which a writer holds while it writes;
//! - one auto-reset event `S!w.<token>` per watching handle, whose token
//!   the handle puts in a free slot of the section's watcher table (64
//!   slots). A writer, after publishing, sets the event of every slot in
//!   use. A slot whose event no longer exists (its process died: a Win32
//!   object vanishes with its last handle) is freed by the next writer or
//!   registering watcher.
//!
//! A watcher compares versions, never counts wake-ups: it registers, then
//! reads the version, then waits, so a write published after its
//! registration sets its event, and one before is seen by the version.
//! Nothing is missed; several writes while it was away are reported once,
//! as [`Change::skipped`]. A handle that finds the table full waits in
//! slices of 10 ms, checking the version between them.
//!
//! All these objects live as long as some process has a handle to one of
//! them: the map vanishes with its last handle (Win32's rule; there is no
//! `remove`).
//!
//! # Writers that die
//!
//! A writer announces "writing version `v+1`" (an odd sequence word), fills
//! the buffer that version `v` does not use, then publishes. Readers take
//! the last published buffer and retry if a writer overtook them, so a
//! writer killed mid-copy leaves the last published content intact; the
//! next writer gets the mutex as abandoned (`WAIT_ABANDONED`), which needs
//! no repair: it rewrites the half-filled buffer and publishes the next
//! version. A write waits at most [`SharedMapOptions::lock_timeout`] for
//! the mutex; reads and watches never take it.
//!
//! The async form ([`tokio`], feature `tokio`) is the same as on Linux: a
//! stream of changes fed by a thread in [`SharedMap::wait_change`].

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[path = "tokio.rs"]
pub mod tokio;

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::shm::{Kind, Mapping, MappingOptions};
use crate::sync::{Event, EventOptions, Mutex, MutexOptions};

/// Default `max_size`: 64 KiB.
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;

/// Default [`SharedMapOptions::lock_timeout`]: how long a write waits for
/// the map's mutex before failing with [`ErrorKind::Timeout`] (30 s).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

// Layout of a shared map's data region (offsets from the data start).
// Offsets 0..8 hold Linux's lock and notify words; unused (0) here.
const OFF_SEQ: usize = 8; // u64 seqlock: 2v = v published, 2v+1 = writing v+1
const OFF_MAX: usize = 16; // u64 max_size
const OFF_LEN: usize = 24; // u64 x 2: content length in buffer 0 / 1
const OFF_WRITER: usize = 40; // u64 (pid << 32 | handle id) of the last writer
const OFF_SLOTS: usize = 48; // u32 number of watcher slots
const OFF_BUF: usize = 64; // buffer 0, buffer 1, then the watcher table

/// Watcher slots in a new map.
const WATCH_SLOTS: usize = 64;
/// Most watcher slots an opened map may announce.
const MAX_SLOTS: usize = 4096;
/// How often a watcher without a slot checks the version.
const POLL: Duration = Duration::from_millis(10);

fn stride(max_size: usize) -> usize {
    max_size.div_ceil(8) * 8
}

/// Bytes of the data region for `max_size` and `slots` watcher slots.
fn region_len(max_size: usize, slots: usize) -> Option<usize> {
    // Checked all the way: both may come from shared memory.
    max_size
        .div_ceil(8)
        .checked_mul(8)?
        .checked_mul(2)?
        .checked_add(OFF_BUF)?
        .checked_add(slots.checked_mul(8)?)
}

/// Validate the `max_size` and slot count read from shared memory
/// (untrusted) against the mapping that holds them.
fn checked_layout(map: &Mapping) -> Result<(usize, usize)> {
    let max = map.atomic_u64(OFF_MAX)?.load(Ordering::Relaxed);
    let slots = map.atomic_u32(OFF_SLOTS)?.load(Ordering::Relaxed);
    let fits = |m: usize, s: usize| region_len(m, s).is_some_and(|r| r <= map.len());
    match (usize::try_from(max), slots as usize) {
        (Ok(m), s) if s <= MAX_SLOTS && fits(m, s) => Ok((m, s)),
        _ => Err(Error::new(
            ErrorKind::Decode,
            format!("shared map header says max_size {max} and {slots} watcher slots, which do not fit its {} bytes; let every handle close and create it again", map.len()),
        )
        .with_name(map.name().unwrap_or("(unnamed)"))),
    }
}

static HANDLE_IDS: AtomicU32 = AtomicU32::new(1);
static WATCH_IDS: AtomicU32 = AtomicU32::new(1);

/// Options for shared maps.
///
/// ```
/// let _ = ipckit::map::SharedMapOptions::new().max_size(4096);
/// ```
#[derive(Debug, Clone)]
pub struct SharedMapOptions {
    shm: MappingOptions,
    mode: Option<u32>,
    max_size: usize,
    lock_timeout: Duration,
}

impl Default for SharedMapOptions {
    fn default() -> Self {
        SharedMapOptions {
            shm: MappingOptions::new(),
            mode: None,
            max_size: DEFAULT_MAX_SIZE,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl SharedMapOptions {
    /// Who besides the creator may open the map's objects (read/write
    /// bits, `0o600` at least; default `0o600`): any group or other bit
    /// lets everyone use the section, the mutex and the events (see
    /// [`MappingOptions::mode`]).
    ///
    /// ```
    /// let _ = ipckit::map::SharedMapOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.shm = self.shm.mode(mode);
        self.mode = Some(mode);
        self
    }

    /// Default namespace, `max_size` [`DEFAULT_MAX_SIZE`].
    ///
    /// ```
    /// let _ = ipckit::map::SharedMapOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Use namespace `ns`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.shm = self.shm.namespace(ns);
        self
    }

    /// Make the map's section over the file at `path` so that its content
    /// outlives its last handle (clipboard boards); see
    /// `MappingOptions::backing_file`.
    pub(crate) fn backing_file(mut self, path: std::path::PathBuf) -> Self {
        self.shm = self.shm.backing_file(path);
        self
    }

    /// Largest content in bytes, used when creating (an opener gets the
    /// creator's). Default 64 KiB.
    ///
    /// ```
    /// let _ = ipckit::map::SharedMapOptions::new().max_size(100);
    /// ```
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// How long a write waits for the map's mutex (held by another writer)
    /// before failing with [`ErrorKind::Timeout`]; default
    /// [`DEFAULT_LOCK_TIMEOUT`] (30 s). A writer that died holding it
    /// abandons it, and the next writer gets it at once.
    ///
    /// ```
    /// let _ = ipckit::map::SharedMapOptions::new().lock_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    fn init(&self) -> impl Fn(&Mapping) -> Result<()> + '_ {
        move |m| {
            m.atomic_u64(OFF_MAX)?
                .store(self.max_size as u64, Ordering::Relaxed);
            m.atomic_u32(OFF_SLOTS)?
                .store(WATCH_SLOTS as u32, Ordering::Relaxed);
            Ok(())
        }
    }

    fn size(&self, name: &str) -> Result<u64> {
        match region_len(self.max_size, WATCH_SLOTS) {
            Some(r) if self.max_size > 0 => Ok(r as u64),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_size {} is not usable; give 1 byte or more",
                    self.max_size
                ),
            )
            .with_name(name)),
        }
    }

    fn wrap(&self, m: Mapping) -> Result<SharedMap> {
        SharedMap::new(m, self.lock_timeout, self.mode)
    }

    /// Create the shared map `name`, empty at version 0;
    /// [`ErrorKind::AlreadyExists`] if some process has it open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// let m = o.create("m").unwrap();
    /// assert_eq!(m.version().unwrap(), 0);
    /// ```
    pub fn create(&self, name: &str) -> Result<SharedMap> {
        let m = self
            .shm
            .create_kind(name, self.size(name)?, Kind::Map, self.init(), true)?;
        self.wrap(m)
    }

    /// Open the existing shared map `name` and load its content.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::map::SharedMapOptions::new().namespace(&ns).open("m").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    pub fn open(&self, name: &str) -> Result<SharedMap> {
        self.wrap(self.shm.open_kind(name, Kind::Map)?)
    }

    /// Open `name`, creating it if absent; [`SharedMap::existed`] says which
    /// (`TFileMap.ExistsAlready`, from `ERROR_ALREADY_EXISTS`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// let mut a = o.open_or_create("m").unwrap();
    /// a.write_text("hi").unwrap();
    /// let b = o.open_or_create("m").unwrap();
    /// assert!(b.existed());
    /// assert_eq!(b.content(), b"hi");
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<SharedMap> {
        let m = self
            .shm
            .open_or_create_kind(name, self.size(name)?, Kind::Map, self.init())?;
        self.wrap(m)
    }
}

/// A consistent copy of a shared map's content.
///
/// ```
/// let s = ipckit::map::Snapshot { content: b"x".to_vec(), version: 3 };
/// assert_eq!(s.version, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The bytes.
    pub content: Vec<u8>,
    /// Its version: 0 for a fresh map, +1 per write.
    pub version: u64,
}

/// One change seen by a watcher: the newest content, its version, and how
/// many versions were published in between and not delivered.
///
/// ```
/// let c = ipckit::map::Change { content: vec![], version: 5, skipped: 2 };
/// assert_eq!(c.version - c.skipped, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The newest content.
    pub content: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// Versions published since the previous delivery that were overtaken
    /// before this watcher woke up.
    pub skipped: u64,
}

/// This handle's place among the map's watchers: its event, the token
/// that names it, and its slot (`None`: the table was full; poll).
#[derive(Debug)]
struct Watcher {
    event: Event,
    token: u64,
    slot: Option<usize>,
}

/// A handle on a named shared map (see the [module docs](self)).
#[derive(Debug)]
pub struct SharedMap {
    map: Arc<Mapping>,
    mutex: Mutex,
    max_size: usize,
    slots: usize,
    mode: Option<u32>,
    seen: u64,
    local: Vec<u8>,
    auto_sync: bool,
    id: u64,
    lock_timeout: Duration,
    watcher: Option<Watcher>,
}

impl SharedMap {
    /// Open or create `name` in the default namespace with the default
    /// `max_size`; see [`SharedMapOptions::open_or_create`].
    ///
    /// ```no_run
    /// let m = ipckit::map::SharedMap::open_or_create("settings")?;
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    pub fn open_or_create(name: &str) -> Result<SharedMap> {
        SharedMapOptions::new().open_or_create(name)
    }

    fn new(map: Mapping, lock_timeout: Duration, mode: Option<u32>) -> Result<SharedMap> {
        let map = Arc::new(map);
        let (max_size, slots) = checked_layout(&map)?;
        let mutex = open_mutex(&map, mode)?;
        let id = (u64::from(std::process::id()) << 32)
            | u64::from(HANDLE_IDS.fetch_add(1, Ordering::Relaxed));
        let mut m = SharedMap {
            map,
            mutex,
            max_size,
            slots,
            mode,
            seen: 0,
            local: Vec::new(),
            auto_sync: true,
            id,
            lock_timeout,
            watcher: None,
        };
        m.read()?;
        Ok(m)
    }

    /// A second handle on the same memory (own mutex handle, own local
    /// copy, own `seen`, own watcher slot).
    fn twin(&self) -> Result<SharedMap> {
        Ok(SharedMap {
            map: self.map.clone(),
            mutex: open_mutex(&self.map, self.mode)?,
            max_size: self.max_size,
            slots: self.slots,
            mode: self.mode,
            seen: self.seen,
            local: self.local.clone(),
            auto_sync: self.auto_sync,
            id: self.id,
            lock_timeout: self.lock_timeout,
            watcher: None,
        })
    }

    /// Whether the map existed before this handle opened it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert!(!m.existed());
    /// ```
    pub fn existed(&self) -> bool {
        self.map.existed()
    }

    /// The largest content accepted, in bytes.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).max_size(10).create("m").unwrap();
    /// assert_eq!(m.max_size(), 10);
    /// ```
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// How long a write waits for the map's mutex before
    /// [`ErrorKind::Timeout`] (see [`SharedMapOptions::lock_timeout`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert_eq!(m.lock_timeout(), ipckit::map::DEFAULT_LOCK_TIMEOUT);
    /// ```
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Set how long a write waits for the map's mutex (this handle only).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.set_lock_timeout(std::time::Duration::from_millis(500));
    /// assert_eq!(m.lock_timeout(), std::time::Duration::from_millis(500));
    /// ```
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    /// The map's name.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert_eq!(m.name(), "m");
    /// ```
    pub fn name(&self) -> &str {
        self.map.name().unwrap_or("(unnamed)")
    }

    fn err(&self, kind: ErrorKind, msg: String) -> Error {
        Error::new(kind, msg).with_name(self.name())
    }

    fn seq(&self) -> &AtomicU64 {
        self.map
            .atomic_u64(OFF_SEQ)
            .expect("layout checked at open")
    }

    fn len_word(&self, buf: usize) -> &AtomicU64 {
        self.map
            .atomic_u64(OFF_LEN + 8 * buf)
            .expect("layout checked at open")
    }

    fn buf_off(&self, buf: usize) -> usize {
        OFF_BUF + buf * stride(self.max_size)
    }

    /// Watcher slot `i`: the token of the handle that holds it, 0 if free.
    fn slot(&self, i: usize) -> &AtomicU64 {
        self.map
            .atomic_u64(OFF_BUF + 2 * stride(self.max_size) + 8 * i)
            .expect("layout checked at open")
    }

    /// The latest published version number.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.write(b"a").unwrap();
    /// assert_eq!(m.version().unwrap(), 1);
    /// ```
    pub fn version(&self) -> Result<u64> {
        Ok(self.seq().load(Ordering::SeqCst) / 2)
    }

    /// A consistent copy of the current content, without touching this
    /// handle's local copy.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.write(b"abc").unwrap();
    /// assert_eq!(m.snapshot().unwrap().content, b"abc");
    /// ```
    pub fn snapshot(&self) -> Result<Snapshot> {
        let seq = self.seq();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let s1 = seq.load(Ordering::Acquire);
            let v = s1 / 2;
            let buf = (v % 2) as usize;
            let len = self.len_word(buf).load(Ordering::Relaxed);
            let len_ok = usize::try_from(len).ok().filter(|l| *l <= self.max_size);
            if let Some(len) = len_ok {
                out.resize(len, 0);
                self.map.read_at(self.buf_off(buf), &mut out)?;
            }
            fence(Ordering::Acquire);
            let s2 = seq.load(Ordering::Relaxed);
            // Only the writer of version v+2 reuses buffer v % 2; it starts by
            // setting seq to 2(v+1)+1.
            if s2 < 2 * v + 3 {
                return match len_ok {
                    Some(_) => Ok(Snapshot { content: out, version: v }),
                    None => Err(self.err(ErrorKind::Decode, format!("published length {len} exceeds max_size {}; the map is corrupt, let every handle close and create it again", self.max_size))),
                };
            }
            std::hint::spin_loop();
        }
        Err(self.err(
            ErrorKind::Busy,
            "writers kept overtaking this reader; retry".into(),
        ))
    }

    /// Read the current content into this handle's local copy (`ReadMap`)
    /// and return it with its version.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// let mut a = o.create("m").unwrap();
    /// let mut b = o.open("m").unwrap();
    /// a.write_text("new").unwrap();
    /// assert_eq!(b.read().unwrap().content, b"new");
    /// assert_eq!(b.content(), b"new");
    /// ```
    pub fn read(&mut self) -> Result<Snapshot> {
        let s = self.snapshot()?;
        self.seen = s.version;
        self.local.clone_from(&s.content);
        Ok(s)
    }

    /// This handle's local copy of the content (as last read or written).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert!(m.content().is_empty());
    /// ```
    pub fn content(&self) -> &[u8] {
        &self.local
    }

    /// Replace the content, under the map's mutex, and wake every handle
    /// waiting for a change; returns the new version. Over `max_size` it is
    /// [`ErrorKind::TooLarge`] and nothing changes (`WriteMap`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).max_size(4).create("m").unwrap();
    /// assert_eq!(m.write(b"abcd").unwrap(), 1);
    /// assert_eq!(m.write(b"abcde").unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
    /// assert_eq!(m.snapshot().unwrap().content, b"abcd");
    /// ```
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64> {
        if let Some(e) = self.too_large(bytes.len()) {
            return Err(e);
        }
        let v = {
            let _guard = self.lock_for_write()?;
            self.publish_locked(bytes)?
        };
        self.seen = v;
        self.local.clear();
        self.local.extend_from_slice(bytes);
        self.notify_watchers();
        Ok(v)
    }

    /// [`write`](SharedMap::write) a text as UTF-8.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.write_text("héllo").unwrap();
    /// assert_eq!(m.text(), "héllo");
    /// ```
    pub fn write_text(&mut self, text: &str) -> Result<u64> {
        self.write(text.as_bytes())
    }

    /// The local copy as text (invalid UTF-8 replaced by U+FFFD).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert_eq!(m.text(), "");
    /// ```
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.local).into_owned()
    }

    fn too_large(&self, len: usize) -> Option<Error> {
        (len > self.max_size).then(|| {
            self.err(ErrorKind::TooLarge, format!("content of {len} bytes exceeds max_size {}; write less or recreate the map larger", self.max_size))
                .with_needed(len)
        })
    }

    /// Take the map's mutex for a write, within the lock timeout. An
    /// abandoned mutex needs no repair: the published version is intact,
    /// and the half-filled buffer is rewritten.
    fn lock_for_write(&self) -> Result<crate::sync::MutexGuard<'_>> {
        match self.mutex.lock_timeout(self.lock_timeout) {
            Ok(lock) => Ok(lock.into_guard()),
            Err(e) if e.kind() == ErrorKind::Timeout => Err(self.err(
                ErrorKind::Timeout,
                format!("another writer held the map's lock for longer than the lock timeout ({:?}); retry, or raise lock_timeout", self.lock_timeout),
            )),
            Err(e) => Err(e),
        }
    }

    /// Read-modify-write under the map's mutex: `f` gets the first `head`
    /// bytes of the current content (all of it if shorter; no other writer
    /// can publish until `f` returns) and gives the new content, or `None`
    /// to leave it as it is. Returns the new version if something was
    /// written, after waking the watchers. Over `max_size` is
    /// [`ErrorKind::TooLarge`] and nothing changes.
    pub(crate) fn update<T>(
        &mut self,
        head: usize,
        f: impl FnOnce(&[u8]) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<(Option<u64>, T)> {
        let (v, bytes, out) = {
            let _guard = self.lock_for_write()?;
            // No writer can run: the last published buffer is stable (a
            // writer that died mid-write left seq odd and wrote the other).
            let v = self.seq().load(Ordering::Acquire) / 2;
            let buf = (v % 2) as usize;
            let len = self.len_word(buf).load(Ordering::Relaxed);
            let Some(len) = usize::try_from(len).ok().filter(|l| *l <= self.max_size) else {
                return Err(self.corrupt(len));
            };
            let mut current = vec![0u8; len.min(head)];
            self.map.read_at(self.buf_off(buf), &mut current)?;
            let (new, out) = f(&current)?;
            let Some(bytes) = new else {
                return Ok((None, out));
            };
            if let Some(e) = self.too_large(bytes.len()) {
                return Err(e);
            }
            (self.publish_locked(&bytes)?, bytes, out)
        };
        self.seen = v;
        self.local = bytes;
        self.notify_watchers();
        Ok((Some(v), out))
    }

    /// A consistent read of parts of the published content without copying
    /// all of it: `f` gets a reader (`read(offset, buf)`, bounded to the
    /// content) and the content's length. If a writer overtook the read,
    /// `f`'s result (which may then come from torn bytes, so `f` must
    /// treat them as untrusted) is dropped and `f` runs again. Returns its
    /// result and the version read.
    pub(crate) fn read_with<T>(
        &self,
        mut f: impl FnMut(&dyn Fn(usize, &mut [u8]) -> Result<()>, usize) -> Result<T>,
    ) -> Result<(T, u64)> {
        let seq = self.seq();
        for _ in 0..10_000 {
            let s1 = seq.load(Ordering::Acquire);
            let v = s1 / 2;
            let buf = (v % 2) as usize;
            let len = self.len_word(buf).load(Ordering::Relaxed);
            let len_ok = usize::try_from(len).ok().filter(|l| *l <= self.max_size);
            let out = len_ok.map(|len| {
                let base = self.buf_off(buf);
                let read = |off: usize, out: &mut [u8]| -> Result<()> {
                    match off.checked_add(out.len()) {
                        Some(end) if end <= len => self.map.read_at(base + off, out),
                        _ => Err(self.err(
                            ErrorKind::Decode,
                            format!(
                                "a read of {} bytes at {off} passes the content's {len} bytes",
                                out.len()
                            ),
                        )),
                    }
                };
                f(&read, len)
            });
            fence(Ordering::Acquire);
            let s2 = seq.load(Ordering::Relaxed);
            // Only the writer of version v+2 reuses buffer v % 2.
            if s2 < 2 * v + 3 {
                return match out {
                    Some(r) => r.map(|t| (t, v)),
                    None => Err(self.corrupt(len)),
                };
            }
            std::hint::spin_loop();
        }
        Err(self.err(
            ErrorKind::Busy,
            "writers kept overtaking this reader; retry".into(),
        ))
    }

    /// A published length past `max_size`: the map's memory is corrupt.
    fn corrupt(&self, len: u64) -> Error {
        self.err(ErrorKind::Decode, format!("published length {len} exceeds max_size {}; the map is corrupt, let every handle close and create it again", self.max_size))
    }

    /// A second handle on the same memory, for a watcher thread.
    pub(crate) fn twin_handle(&self) -> Result<SharedMap> {
        self.twin()
    }

    /// Publish `bytes` as the next version; the caller holds the mutex.
    fn publish_locked(&self, bytes: &[u8]) -> Result<u64> {
        let seq = self.seq();
        let v = seq.load(Ordering::Relaxed) / 2;
        let target = ((v + 1) % 2) as usize;
        seq.swap(2 * v + 1, Ordering::Acquire);
        fence(Ordering::Release);
        self.len_word(target)
            .store(bytes.len() as u64, Ordering::Relaxed);
        self.map.write_at(self.buf_off(target), bytes)?;
        self.map
            .atomic_u64(OFF_WRITER)?
            .store(self.id, Ordering::Relaxed);
        seq.store(2 * v + 2, Ordering::Release);
        Ok(v + 1)
    }

    /// Set the event of every registered watcher; free the slots of
    /// watchers whose event is gone (their process died).
    fn notify_watchers(&self) {
        // Pairs with the registering watcher's: either it sees the new
        // version, or this sees its slot.
        fence(Ordering::SeqCst);
        for i in 0..self.slots {
            let token = self.slot(i).load(Ordering::Acquire);
            if token == 0 {
                continue;
            }
            match self.open_event(token) {
                Ok(e) => e.set(),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let _ = self.slot(i).compare_exchange(
                        token,
                        0,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                Err(_) => {}
            }
        }
    }

    fn event_name(&self, token: u64) -> String {
        format!(
            "{}!w.{token:016x}",
            self.map.os_name().unwrap_or("(unnamed)")
        )
    }

    fn open_event(&self, token: u64) -> Result<Event> {
        EventOptions::new().open(&self.event_name(token))
    }

    /// Register this handle as a watcher if it is not one yet: create its
    /// event, then take a free slot (or one whose event is gone).
    fn ensure_watcher(&mut self) -> Result<()> {
        if self.watcher.is_some() {
            return Ok(());
        }
        let (event, token) = loop {
            let token = (u64::from(std::process::id()) << 32)
                | u64::from(WATCH_IDS.fetch_add(1, Ordering::Relaxed));
            let mut o = EventOptions::new();
            if let Some(m) = self.mode {
                o = o.mode(m);
            }
            match o.create(&self.event_name(token)) {
                Ok(e) => break (e, token),
                // A token of a dead process with our pid, still open
                // somewhere: take the next one.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let mut slot = None;
        for i in 0..self.slots {
            if self
                .slot(i)
                .compare_exchange(0, token, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                slot = Some(i);
                break;
            }
        }
        if slot.is_none() {
            // Full: reclaim the slot of a watcher that died.
            for i in 0..self.slots {
                let old = self.slot(i).load(Ordering::Acquire);
                if old != 0
                    && self
                        .open_event(old)
                        .is_err_and(|e| e.kind() == ErrorKind::NotFound)
                    && self
                        .slot(i)
                        .compare_exchange(old, token, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                {
                    slot = Some(i);
                    break;
                }
            }
        }
        self.watcher = Some(Watcher { event, token, slot });
        Ok(())
    }

    /// Wait for a version newer than this handle last saw, mark it seen
    /// and return it.
    pub(crate) fn wait_newer(&mut self, timeout: Option<Duration>) -> Result<u64> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.ensure_watcher()?;
        loop {
            let v = self.version()?;
            if v > self.seen {
                self.seen = v;
                return Ok(v);
            }
            let mut wait = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.err(
                            ErrorKind::Timeout,
                            "no change within the timeout; wait longer or check the writer".into(),
                        ));
                    }
                    Some(left)
                }
            };
            let w = self.watcher.as_ref().expect("registered above");
            if w.slot.is_none() {
                wait = Some(wait.map_or(POLL, |t| t.min(POLL)));
            }
            let r = match wait {
                None => w.event.wait(),
                Some(t) => w.event.wait_timeout(t),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait for a version newer than this handle last read, wrote or was
    /// delivered, and return the newest content (`OnChange`). `None` waits
    /// for ever; otherwise [`ErrorKind::Timeout`] after `timeout`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// let e = m.wait_change(Some(std::time::Duration::from_millis(10))).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn wait_change(&mut self, timeout: Option<Duration>) -> Result<Change> {
        let before = self.seen;
        self.wait_newer(timeout)?;
        let s = self.read()?;
        Ok(Change {
            skipped: s.version - before - 1,
            version: s.version,
            content: s.content,
        })
    }

    /// An endless iterator of changes ([`wait_change`](SharedMap::wait_change)
    /// without a timeout).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// let mut a = o.create("m").unwrap();
    /// let mut b = o.open("m").unwrap();
    /// a.write(b"1").unwrap();
    /// let c = b.watch().next().unwrap().unwrap();
    /// assert_eq!(c.content, b"1");
    /// ```
    pub fn watch(&mut self) -> Watch<'_> {
        Watch { map: self }
    }

    /// Call `callback` on a background thread for each change written by
    /// any *other* handle (other processes, or other handles in this one),
    /// until the returned [`Subscription`] is dropped. Changes this handle
    /// writes itself are not reported back to it.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// let a = o.create("m").unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let sub = a.on_change(move |c| { let _ = tx.send(c.content); }).unwrap();
    /// o.open("m").unwrap().write(b"hey").unwrap();
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(), b"hey");
    /// drop(sub);
    /// ```
    pub fn on_change(
        &self,
        mut callback: impl FnMut(Change) + Send + 'static,
    ) -> Result<Subscription> {
        let mut twin = self.twin()?;
        // Registered before this returns: no change after it is missed.
        twin.ensure_watcher()?;
        let me = self.id;
        Subscription::spawn("ipckit-map-watch", self.name(), move |wait| {
            let c = twin.wait_change(Some(wait))?;
            let writer = twin
                .map
                .atomic_u64(OFF_WRITER)
                .map(|w| w.load(Ordering::Relaxed))
                .unwrap_or(0);
            if writer != me {
                callback(c);
            }
            Ok(())
        })
    }

    /// Auto-synchronise mode (`AutoSynchronize`, on by default): when on,
    /// [`set_content`](SharedMap::set_content) writes to the shared map at
    /// once; turning it on writes the local copy.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.set_auto_sync(false).unwrap();
    /// m.set_content(b"local only").unwrap();
    /// assert_eq!(m.version().unwrap(), 0);
    /// m.set_auto_sync(true).unwrap(); // writes it now
    /// assert_eq!(m.version().unwrap(), 1);
    /// ```
    pub fn set_auto_sync(&mut self, on: bool) -> Result<()> {
        let was = self.auto_sync;
        self.auto_sync = on;
        if on && !was {
            let local = std::mem::take(&mut self.local);
            let r = self.write(&local);
            if r.is_err() {
                self.local = local;
            }
            r?;
        }
        Ok(())
    }

    /// Whether auto-synchronise mode is on.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert!(m.auto_sync());
    /// ```
    pub fn auto_sync(&self) -> bool {
        self.auto_sync
    }

    /// Change the local copy; in auto-synchronise mode also write it (and
    /// return the new version).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert_eq!(m.set_content(b"x").unwrap(), Some(1));
    /// ```
    pub fn set_content(&mut self, bytes: &[u8]) -> Result<Option<u64>> {
        if self.auto_sync {
            return self.write(bytes).map(Some);
        }
        if let Some(e) = self.too_large(bytes.len()) {
            return Err(e);
        }
        self.local.clear();
        self.local.extend_from_slice(bytes);
        Ok(None)
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // Give the slot back; the event closes with the watcher.
        if let Some(Watcher {
            token,
            slot: Some(i),
            ..
        }) = self.watcher
        {
            let _ = self
                .slot(i)
                .compare_exchange(token, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// The map's mutex `S!mutex` (see the [module docs](self)).
fn open_mutex(map: &Mapping, mode: Option<u32>) -> Result<Mutex> {
    let os = map.os_name().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "a shared map needs a named section",
        )
    })?;
    let mut o = MutexOptions::new();
    if let Some(m) = mode {
        o = o.mode(m);
    }
    o.open_or_create(&format!("{os}!mutex"))
}

/// Iterator returned by [`SharedMap::watch`].
#[derive(Debug)]
pub struct Watch<'a> {
    map: &'a mut SharedMap,
}

impl Iterator for Watch<'_> {
    type Item = Result<Change>;
    fn next(&mut self) -> Option<Result<Change>> {
        Some(self.map.wait_change(None))
    }
}

/// Keeps an `on_change` callback running ([`SharedMap::on_change`]); stops
/// it when dropped.
#[derive(Debug)]
pub struct Subscription {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Call `step` on a new thread named `thread` until dropped: `step`
    /// waits at most the duration it is given for one change and hands it
    /// to the callback; its `Timeout` means "nothing yet", any other error
    /// ends the thread.
    pub(crate) fn spawn(
        thread: &str,
        object: &str,
        mut step: impl FnMut(Duration) -> Result<()> + Send + 'static,
    ) -> Result<Subscription> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match step(Duration::from_millis(100)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::Timeout => {}
                        Err(_) => break,
                    }
                }
            })
            .map_err(|e| Error::os(e, "cannot start the watcher thread").with_name(object))?;
        Ok(Subscription {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
