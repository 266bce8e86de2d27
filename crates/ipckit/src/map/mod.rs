//! A named shared value with change broadcast — the Delphi `TFileMap`.
//!
//! A [`SharedMap`] holds one content (bytes or text) of at most `max_size`
//! bytes. Every process that opens the name sees it; a write replaces it
//! under the map's own mutex, bumps a version and wakes every process
//! waiting for a change ([`SharedMap::wait_change`], [`SharedMap::watch`],
//! [`SharedMap::on_change`]). A reader never sees a half-written content,
//! even if a writer is killed in the middle of a write.
//!
//! ```
//! use ipckit::map::SharedMapOptions;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = SharedMapOptions::new().namespace(&ns).max_size(1024);
//!
//! // process A
//! let mut a = opts.open_or_create("settings").unwrap();
//! assert!(!a.existed());
//! // process B opens it and sees the current content
//! let mut b = opts.open_or_create("settings").unwrap();
//! assert!(b.existed());
//!
//! a.write_text("volume=3").unwrap();
//! let change = b.wait_change(Some(std::time::Duration::from_secs(5))).unwrap();
//! assert_eq!(change.content, b"volume=3");
//! assert_eq!((change.version, change.skipped), (1, 0));
//! # ipckit::shm::MappingOptions::new().namespace(&ns).remove("settings").unwrap();
//! ```
//!
//! # How it is laid out and why it never tears
//!
//! The content is double-buffered: version `v` lives in buffer `v % 2`. A
//! writer (holding the mutex) announces "writing version `v+1`" by making a
//! sequence word odd, fills the *other* buffer, then publishes by making the
//! sequence even again. A reader copies the buffer of the last published
//! version and accepts the copy unless a writer has meanwhile started on the
//! version after next (the only one that would reuse that buffer). A writer
//! killed mid-copy leaves the sequence odd: readers keep getting the last
//! published content, and the next writer (who gets the mutex as abandoned)
//! simply rewrites the half-filled buffer. The byte layout is in
//! `docs/PROTOCOL.md`.
//!
//! A write waits at most [`SharedMapOptions::lock_timeout`] (default
//! [`DEFAULT_LOCK_TIMEOUT`], 30 s) for the map's mutex, then fails with
//! [`ErrorKind::Timeout`]; reads and watches never take the mutex. A
//! writer that died holding it, or garbage in its lock word, is recovered
//! in well under a second (see [`crate::sync`]).

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::shm::{Kind, Mapping, MappingOptions};
use crate::sync::Mutex;
use crate::sys::futex;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

/// Default `max_size`: 64 KiB.
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;

/// Default [`SharedMapOptions::lock_timeout`]: how long a write waits for
/// the map's mutex before failing with [`ErrorKind::Timeout`] (30 s).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

// Layout of a shared map's data region (offsets from the data start).
const OFF_MUTEX: usize = 0; // u32 lock word (see sync::Mutex)
const OFF_NOTIFY: usize = 4; // u32 futex word, +1 per published version
const OFF_SEQ: usize = 8; // u64 seqlock: 2v = v published, 2v+1 = writing v+1
const OFF_MAX: usize = 16; // u64 max_size
const OFF_LEN: usize = 24; // u64 x 2: content length in buffer 0 / 1
const OFF_WRITER: usize = 40; // u64 (pid << 32 | handle id) of the last writer
const OFF_MUTEX_OWNER: usize = 48; // u32 owner word of the mutex (see sync::Mutex)
const OFF_BUF: usize = 64; // buffer 0, then buffer 1 at OFF_BUF + stride

fn stride(max_size: usize) -> usize {
    max_size.div_ceil(8) * 8
}

/// Bytes of the data region for a given `max_size`.
fn region_len(max_size: usize) -> Option<usize> {
    // Checked all the way: `max_size` may come from shared memory.
    max_size
        .div_ceil(8)
        .checked_mul(8)?
        .checked_mul(2)?
        .checked_add(OFF_BUF)
}

/// Validate the `max_size` read from shared memory (untrusted) against the
/// mapping that holds it; every buffer offset used later derives from it.
fn checked_max(map: &Mapping) -> Result<usize> {
    let max = map.atomic_u64(OFF_MAX)?.load(Ordering::Relaxed);
    match usize::try_from(max).ok().filter(|m| region_len(*m).is_some_and(|r| r <= map.len())) {
        Some(m) => Ok(m),
        None => Err(Error::new(
            ErrorKind::Decode,
            format!("shared map header says max_size {max}, which does not fit its {} bytes; remove it and create it again", map.len()),
        )
        .with_name(map.name().unwrap_or("(unnamed)"))),
    }
}

/// The shared maps of namespace `ns` (kind `map`; clipboard boards are
/// among them, named `clip/<board>`), with their size, owner and who has
/// them open; see [`crate::shm::list_in`] for every kind of named shared
/// memory.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let opts = ipckit::map::SharedMapOptions::new().namespace(&ns);
/// let mut m = opts.create("settings").unwrap();
/// m.write_text("volume=3").unwrap();
/// let all = ipckit::map::list_in(&ns).unwrap();
/// assert_eq!((all[0].name.as_str(), all[0].kind.as_str()), ("settings", "map"));
/// assert_eq!(all[0].open_by, [std::process::id()]);
/// # drop(m);
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("settings").unwrap();
/// ```
pub fn list_in(ns: &Namespace) -> Result<Vec<crate::shm::ObjectInfo>> {
    let mut all = crate::shm::list_in(ns)?;
    all.retain(|o| o.kind == "map");
    Ok(all)
}

static HANDLE_IDS: AtomicU32 = AtomicU32::new(1);

/// Options for shared maps.
///
/// ```
/// let _ = ipckit::map::SharedMapOptions::new().max_size(4096);
/// ```
#[derive(Debug, Clone)]
pub struct SharedMapOptions {
    shm: MappingOptions,
    max_size: usize,
    lock_timeout: Duration,
}

impl Default for SharedMapOptions {
    fn default() -> Self {
        SharedMapOptions {
            shm: MappingOptions::new(),
            max_size: DEFAULT_MAX_SIZE,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl SharedMapOptions {
    /// Who besides the creator may open the object: its mode, as
    /// [`MappingOptions::mode`] (read/write bits, `0o600` at least; default
    /// `0o600`). An opener accepts an object no wider than its own mode.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::map::SharedMapOptions;
    /// let team = SharedMapOptions::new().namespace(&ns).mode(0o660);
    /// let m = team.create("team").unwrap();
    /// // An opener with the default (0600) refuses an object others can write.
    /// let e = SharedMapOptions::new().namespace(&ns).open("team").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::PermissionDenied);
    /// assert!(team.open("team").is_ok());
    /// # drop(m);
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("team").unwrap();
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.shm = self.shm.mode(mode);
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
    /// [`DEFAULT_LOCK_TIMEOUT`] (30 s). A writer that died holding it, or
    /// a garbage lock word, is recovered well within that (see
    /// [`crate::sync`]); only a live writer stuck inside a write makes
    /// others time out. Change it later with [`SharedMap::set_lock_timeout`].
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
            Ok(())
        }
    }

    fn size(&self, name: &str) -> Result<u64> {
        match region_len(self.max_size) {
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

    /// Create the shared map `name`, empty at version 0.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::map::SharedMapOptions::new().namespace(&ns);
    /// let m = o.create("m").unwrap();
    /// assert_eq!(m.version().unwrap(), 0);
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn create(&self, name: &str) -> Result<SharedMap> {
        let m = self
            .shm
            .create_kind(name, self.size(name)?, Kind::Map, self.init(), true)?;
        SharedMap::new(m, self.lock_timeout)
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
        SharedMap::new(self.shm.open_kind(name, Kind::Map)?, self.lock_timeout)
    }

    /// Open `name`, creating it if absent; [`SharedMap::existed`] says which
    /// (`TFileMap.ExistsAlready`).
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<SharedMap> {
        let m = self
            .shm
            .open_or_create_kind(name, self.size(name)?, Kind::Map, self.init())?;
        SharedMap::new(m, self.lock_timeout)
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

/// A handle on a named shared map (see the [module docs](self)).
#[derive(Debug)]
pub struct SharedMap {
    map: Arc<Mapping>,
    mutex: Mutex,
    max_size: usize,
    seen: u64,
    local: Vec<u8>,
    auto_sync: bool,
    id: u64,
    lock_timeout: Duration,
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

    fn new(map: Mapping, lock_timeout: Duration) -> Result<SharedMap> {
        let map = Arc::new(map);
        let max_size = checked_max(&map)?;
        let mutex = Mutex::at_parts(map.clone(), OFF_MUTEX, OFF_MUTEX_OWNER)?;
        let id = (u64::from(std::process::id()) << 32)
            | u64::from(HANDLE_IDS.fetch_add(1, Ordering::Relaxed));
        let mut m = SharedMap {
            map,
            mutex,
            max_size,
            seen: 0,
            local: Vec::new(),
            auto_sync: true,
            id,
            lock_timeout,
        };
        m.read()?;
        Ok(m)
    }

    /// A second handle on the same memory (own local copy, own `seen`).
    fn twin(&self) -> Result<SharedMap> {
        Ok(SharedMap {
            map: self.map.clone(),
            mutex: Mutex::at_parts(self.map.clone(), OFF_MUTEX, OFF_MUTEX_OWNER)?,
            max_size: self.max_size,
            seen: self.seen,
            local: self.local.clone(),
            auto_sync: self.auto_sync,
            id: self.id,
            lock_timeout: self.lock_timeout,
        })
    }

    /// Whether the map existed before this handle opened it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert!(!m.existed());
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// assert_eq!(m.lock_timeout(), ipckit::map::DEFAULT_LOCK_TIMEOUT);
    /// m.set_lock_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(m.lock_timeout(), std::time::Duration::from_secs(1));
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// m.write(b"x").unwrap();
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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

    fn notify(&self) -> &AtomicU32 {
        self.map
            .atomic_u32(OFF_NOTIFY)
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

    /// The latest published version number.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.write(b"a").unwrap();
    /// assert_eq!(m.version().unwrap(), 1);
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn version(&self) -> Result<u64> {
        Ok(self.seq().load(Ordering::Acquire) / 2)
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
                    None => Err(self.err(ErrorKind::Decode, format!("published length {len} exceeds max_size {}; the map is corrupt, remove it", self.max_size))),
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn content(&self) -> &[u8] {
        &self.local
    }

    /// Replace the content, under the map's mutex, and wake every process
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64> {
        self.write_inner(bytes, || {})
    }

    /// [`write`](SharedMap::write) a text as UTF-8.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let mut m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// m.write_text("héllo").unwrap();
    /// assert_eq!(m.text(), "héllo");
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.local).into_owned()
    }

    /// Test support: a write that calls `mid` after copying half of the
    /// bytes (to kill the writer there).
    #[cfg(test)]
    pub(crate) fn write_interrupted(&mut self, bytes: &[u8], mid: impl FnOnce()) -> Result<u64> {
        self.write_inner(bytes, mid)
    }

    fn too_large(&self, len: usize) -> Option<Error> {
        (len > self.max_size).then(|| {
            self.err(ErrorKind::TooLarge, format!("content of {len} bytes exceeds max_size {}; write less or recreate the map larger", self.max_size))
                .with_needed(len)
        })
    }

    /// Take the map's mutex for a write, within the lock timeout.
    fn lock_for_write(&self) -> Result<crate::sync::MutexGuard<'_>> {
        // An abandoned lock needs no repair here: the seqlock left the
        // published version intact, and we rewrite the half-filled buffer.
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
    /// written. Over `max_size` is [`ErrorKind::TooLarge`] and nothing
    /// changes.
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
                return Err(self.err(
                    ErrorKind::Decode,
                    format!(
                        "published length {len} exceeds max_size {}; the map is corrupt, remove it",
                        self.max_size
                    ),
                ));
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
            (self.publish_locked(&bytes, || {})?, bytes, out)
        };
        self.seen = v;
        self.local = bytes;
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
            if s2 < 2 * v + 3 {
                return match out {
                    Some(r) => r.map(|t| (t, v)),
                    None => Err(self.err(ErrorKind::Decode, format!("published length {len} exceeds max_size {}; the map is corrupt, remove it", self.max_size))),
                };
            }
            std::hint::spin_loop();
        }
        Err(self.err(
            ErrorKind::Busy,
            "writers kept overtaking this reader; retry".into(),
        ))
    }

    /// [`wait_change`](Self::wait_change) without reading the content:
    /// wait for a version newer than this handle last saw, mark it seen
    /// and return it.
    pub(crate) fn wait_newer(&mut self, timeout: Option<Duration>) -> Result<u64> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let n = self.notify().load(Ordering::Acquire);
            let v = self.version()?;
            if v > self.seen {
                self.seen = v;
                return Ok(v);
            }
            let wait = match deadline {
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
            futex::wait(self.notify(), n, wait)
                .map_err(|e| Error::os(e, "futex wait failed").with_name(self.name()))?;
        }
    }

    /// A second handle on the same memory, for a watcher thread.
    pub(crate) fn twin_handle(&self) -> Result<SharedMap> {
        self.twin()
    }

    fn write_inner(&mut self, bytes: &[u8], mid: impl FnOnce()) -> Result<u64> {
        if let Some(e) = self.too_large(bytes.len()) {
            return Err(e);
        }
        let v = {
            let _guard = self.lock_for_write()?;
            self.publish_locked(bytes, mid)?
        };
        self.seen = v;
        self.local.clear();
        self.local.extend_from_slice(bytes);
        Ok(v)
    }

    /// Publish `bytes` as the next version; the caller holds the mutex.
    fn publish_locked(&self, bytes: &[u8], mid: impl FnOnce()) -> Result<u64> {
        let seq = self.seq();
        let v = seq.load(Ordering::Relaxed) / 2;
        let target = ((v + 1) % 2) as usize;
        seq.swap(2 * v + 1, Ordering::Acquire);
        fence(Ordering::Release);
        self.len_word(target)
            .store(bytes.len() as u64, Ordering::Relaxed);
        let off = self.buf_off(target);
        let half = bytes.len() / 2;
        self.map.write_at(off, &bytes[..half])?;
        mid();
        self.map.write_at(off + half, &bytes[half..])?;
        self.map
            .atomic_u64(OFF_WRITER)?
            .store(self.id, Ordering::Relaxed);
        seq.store(2 * v + 2, Ordering::Release);
        self.notify().fetch_add(1, Ordering::Release);
        futex::wake(self.notify(), i32::MAX as u32);
        Ok(v + 1)
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn on_change(
        &self,
        mut callback: impl FnMut(Change) + Send + 'static,
    ) -> Result<Subscription> {
        let mut twin = self.twin()?;
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
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
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn set_content(&mut self, bytes: &[u8]) -> Result<Option<u64>> {
        if self.auto_sync {
            return self.write(bytes).map(Some);
        }
        if bytes.len() > self.max_size {
            return Err(self
                .err(
                    ErrorKind::TooLarge,
                    format!(
                        "content of {} bytes exceeds max_size {}",
                        bytes.len(),
                        self.max_size
                    ),
                )
                .with_needed(bytes.len()));
        }
        self.local.clear();
        self.local.extend_from_slice(bytes);
        Ok(None)
    }
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

/// Keeps an `on_change` callback running ([`SharedMap::on_change`],
/// [`crate::clipboard::Board::on_change`]); stops it when dropped.
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
