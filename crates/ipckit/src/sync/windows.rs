//! Sync objects: [`Mutex`], [`Event`] and [`Semaphore`] — on Windows, the
//! system's own named objects (`CreateMutexW`, `CreateEventW`,
//! `CreateSemaphoreW`), so programs that do not use ipckit can share them.
//!
//! A named object's system name is the one its mapping would get:
//! `Local\ipckit.<H>.<NAME with '/' → ':'>` (see
//! [`MappingOptions::os_name`]); a name already in the system's form
//! (`Local\X`, `Global\X`) is used as is. Mutexes, events, semaphores and
//! sections share one system namespace, so one name cannot be two kinds of
//! object. An object lives while any process has a handle to it.
//!
//! Differences from Linux, where these objects are words in a mapping:
//!
//! - Only named objects exist here: the in-mapping constructors
//!   (`Mutex::at`, `Mutex::at_parts`, `Event::at`/`init`,
//!   `Semaphore::at`/`init`) and `Mutex::mapping` are Linux-only. The
//!   async forms ([`tokio`], feature `tokio`) wait on the system's objects.
//! - A Win32 mutex belongs to the thread that locked it: drop the
//!   [`MutexGuard`] on that thread (it is not `Send`). It is recursive: a
//!   thread that holds it locks it again at once (each lock needs its
//!   guard dropped). Owner death is the system's: a lock taken after the
//!   owning thread ended without unlocking is [`Lock::Abandoned`]
//!   (`WAIT_ABANDONED`), at once.
//! - A semaphore's maximum and counts are at most `i32::MAX` (larger values
//!   are clamped); [`Semaphore::count`] and [`Event::is_set`] read the state
//!   with `NtQuerySemaphore` / `NtQueryEvent`.
//! - The mode picks the object's security descriptor: the creating user
//!   only, or, with any group or other bit, everyone too.
//!
//! ```
//! use ipckit::sync::{Lock, MutexOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = MutexOptions::new().namespace(&ns);
//! let a = opts.open_or_create("jobs").unwrap();
//! match a.lock().unwrap() {
//!     Lock::Acquired(_guard) => { /* critical section */ }
//!     Lock::Abandoned(_guard) => { /* previous owner died inside: repair */ }
//! };
//! ```

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[path = "tokio_windows.rs"]
pub mod tokio;

use std::marker::PhantomData;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::time::Duration;

use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::shm::MappingOptions;
use crate::sys::sync::{self as os, Kind, Wait};

/// The default mode, as for mappings.
const DEFAULT_MODE: u32 = 0o600;

/// The names and mode shared by the three option types.
#[derive(Debug, Clone, Default)]
struct Common {
    shm: MappingOptions,
    mode: Option<u32>,
}

impl Common {
    fn mode(&self, name: &str) -> Result<u32> {
        let mode = self.mode.unwrap_or(DEFAULT_MODE);
        if mode & !0o666 != 0 || mode & 0o600 != 0o600 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("mode {mode:#o} is not allowed for a sync object: give read and write bits only (0o666 at most), including the owner's 0o600"),
            )
            .with_name(name));
        }
        Ok(mode)
    }

    /// Create (`exclusive`: fail with `AlreadyExists` if it exists) or open
    /// or create; the handle and whether the object existed.
    fn create(&self, name: &str, kind: Kind, exclusive: bool) -> Result<(OwnedHandle, bool)> {
        let mode = self.mode(name)?;
        let os_name = self.shm.os_name(name)?;
        let (h, existed) = os::create(&os_name, kind, mode).ctx(name, "cannot create")?;
        if exclusive && existed {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "a live process has this object open; open it or pick another name",
            )
            .with_name(name));
        }
        Ok((h, existed))
    }

    fn open(&self, name: &str, kind: Kind) -> Result<OwnedHandle> {
        let os_name = self.shm.os_name(name)?;
        os::open_checked(&os_name, kind, self.mode(name)?).ctx(name, "cannot open")
    }
}

fn timeout(name: &str) -> Error {
    Error::new(ErrorKind::Timeout, "timed out waiting; retry or give up").with_name(name)
}

// ---------------------------------------------------------------- Mutex

/// Options for named mutexes (default namespace unless
/// [`namespace`](MutexOptions::namespace) is given).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MutexOptions {
    c: Common,
}

impl MutexOptions {
    /// Who besides the creator may open the object (read/write bits,
    /// `0o600` at least; default `0o600`): any group or other bit lets
    /// everyone use it.
    ///
    /// ```
    /// let _ = ipckit::sync::MutexOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.c.mode = Some(mode);
        self
    }

    /// Default options.
    ///
    /// ```
    /// let _ = ipckit::sync::MutexOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Use namespace `ns`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.c.shm = self.c.shm.namespace(ns);
        self
    }

    /// Create the named mutex `name`, unlocked (`CreateMutexW`);
    /// [`ErrorKind::AlreadyExists`] if a live process has it open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// let _m = o.create("m").unwrap();
    /// assert_eq!(o.create("m").unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// ```
    #[doc(alias = "CreateMutex")]
    pub fn create(&self, name: &str) -> Result<Mutex> {
        let (h, existed) = self.c.create(name, Kind::Mutex, true)?;
        Ok(Mutex::new(h, name, existed))
    }

    /// Open the existing named mutex `name` (`OpenMutexW`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// assert_eq!(o.open("m").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "OpenMutex")]
    pub fn open(&self, name: &str) -> Result<Mutex> {
        let h = self.c.open(name, Kind::Mutex)?;
        Ok(Mutex::new(h, name, true))
    }

    /// Open `name`, creating it if absent; [`Mutex::existed`] says which
    /// (`ERROR_ALREADY_EXISTS`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// assert!(!o.open_or_create("m").unwrap().existed());
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Mutex> {
        let (h, existed) = self.c.create(name, Kind::Mutex, false)?;
        Ok(Mutex::new(h, name, existed))
    }
}

/// A mutex shared between processes, that reports an owner's death: a
/// Win32 mutex (see the [module docs](self)).
#[derive(Debug)]
pub struct Mutex {
    h: OwnedHandle,
    name: String,
    existed: bool,
}

/// The outcome of a successful lock: you hold the mutex either way, but an
/// [`Abandoned`](Lock::Abandoned) lock was taken over from an owner that
/// ended holding it, so the data it protects may be inconsistent.
#[doc(alias = "WAIT_ABANDONED")]
#[must_use = "an abandoned lock means the protected data may be half-updated; look at it"]
#[derive(Debug)]
pub enum Lock<'a> {
    /// Taken normally (`WAIT_OBJECT_0`).
    Acquired(MutexGuard<'a>),
    /// Taken over from a dead owner (`WAIT_ABANDONED`).
    Abandoned(MutexGuard<'a>),
}

impl<'a> Lock<'a> {
    /// Whether the previous owner died holding the lock.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// assert!(!m.lock().unwrap().is_abandoned());
    /// ```
    pub fn is_abandoned(&self) -> bool {
        matches!(self, Lock::Abandoned(_))
    }

    /// The guard, whichever way the lock was taken.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let g = m.lock().unwrap().into_guard();
    /// drop(g);
    /// ```
    pub fn into_guard(self) -> MutexGuard<'a> {
        match self {
            Lock::Acquired(g) | Lock::Abandoned(g) => g,
        }
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped (`ReleaseMutex`). Not
/// `Send`: a Win32 mutex is owned by the thread that locked it, and only
/// that thread can release it.
#[derive(Debug)]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
    _not_send: PhantomData<*const ()>,
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // Fails only if this thread does not own the mutex, which the
        // guard (not Send, made by a successful wait) rules out.
        let _ = os::release_mutex(self.mutex.h.as_handle());
    }
}

impl Mutex {
    /// The mutex's handle and name, for the async form.
    #[cfg(feature = "tokio")]
    pub(crate) fn parts(&self) -> (std::os::windows::io::BorrowedHandle<'_>, &str) {
        (self.h.as_handle(), &self.name)
    }

    fn new(h: OwnedHandle, name: &str, existed: bool) -> Mutex {
        Mutex {
            h,
            name: name.to_string(),
            existed,
        }
    }

    /// Whether a named mutex existed before this handle opened it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// let a = o.create("m").unwrap();
    /// assert!(!a.existed());
    /// assert!(o.open("m").unwrap().existed());
    /// ```
    pub fn existed(&self) -> bool {
        self.existed
    }

    fn guard(&self, w: Wait) -> Option<Lock<'_>> {
        let g = || MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        match w {
            Wait::Signalled => Some(Lock::Acquired(g())),
            Wait::Abandoned => Some(Lock::Abandoned(g())),
            Wait::TimedOut => None,
        }
    }

    fn wait(&self, t: Option<Duration>) -> Result<Option<Lock<'_>>> {
        let w = os::wait(self.h.as_handle(), t).ctx(&self.name, "cannot wait for the mutex")?;
        Ok(self.guard(w))
    }

    /// Lock, waiting as long as it takes (but never for a dead owner).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let lock = m.lock().unwrap();
    /// assert!(!lock.is_abandoned());
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub fn lock(&self) -> Result<Lock<'_>> {
        self.wait(None)?.ok_or_else(|| timeout(&self.name))
    }

    /// Lock, giving up with [`ErrorKind::Timeout`] after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// let m = o.create("m").unwrap();
    /// let _held = m.lock().unwrap();
    /// let other = std::thread::spawn(move || {
    ///     let m2 = o.open("m").unwrap();
    ///     m2.lock_timeout(Duration::from_millis(20)).map(|_| ()).unwrap_err().kind()
    /// });
    /// assert_eq!(other.join().unwrap(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn lock_timeout(&self, timeout_: Duration) -> Result<Lock<'_>> {
        self.wait(Some(timeout_))?
            .ok_or_else(|| timeout(&self.name))
    }

    /// Lock if free now: `None` if another thread holds it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// assert!(m.try_lock().unwrap().is_some());
    /// ```
    pub fn try_lock(&self) -> Result<Option<Lock<'_>>> {
        self.wait(Some(Duration::ZERO))
    }
}

// ---------------------------------------------------------------- Event

/// Options for named events: auto reset and not set unless told.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::sync::EventOptions::new().namespace(&ns).manual_reset(true).create("go").unwrap();
/// e.set();
/// e.wait().unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    c: Common,
    manual: bool,
    initially_set: bool,
}

impl EventOptions {
    /// Who besides the creator may open the object, as
    /// [`MutexOptions::mode`].
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.c.mode = Some(mode);
        self
    }

    /// Default options.
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Use namespace `ns`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::sync::EventOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.c.shm = self.c.shm.namespace(ns);
        self
    }

    /// Manual reset (stays set until [`Event::reset`]) instead of auto
    /// reset (one waiter consumes it).
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new().manual_reset(true);
    /// ```
    pub fn manual_reset(mut self, manual: bool) -> Self {
        self.manual = manual;
        self
    }

    /// Start in the set state.
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new().initially_set(true);
    /// ```
    pub fn initially_set(mut self, set: bool) -> Self {
        self.initially_set = set;
        self
    }

    fn kind(&self) -> Kind {
        Kind::Event {
            manual: self.manual,
            set: self.initially_set,
        }
    }

    /// Create the named event `name` (`CreateEventW`);
    /// [`ErrorKind::AlreadyExists`] if a live process has it open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::EventOptions::new().namespace(&ns).initially_set(true);
    /// let e = o.create("e").unwrap();
    /// assert!(e.is_set());
    /// ```
    #[doc(alias = "CreateEvent")]
    pub fn create(&self, name: &str) -> Result<Event> {
        let (h, _) = self.c.create(name, self.kind(), true)?;
        Ok(Event::new(h, name))
    }

    /// Open the existing named event `name` (`OpenEventW`); it keeps its
    /// own reset mode and state.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::EventOptions::new().namespace(&ns);
    /// assert_eq!(o.open("e").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "OpenEvent")]
    pub fn open(&self, name: &str) -> Result<Event> {
        let h = self.c.open(name, self.kind())?;
        Ok(Event::new(h, name))
    }

    /// Open `name`, creating it with these options if absent.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::EventOptions::new().namespace(&ns);
    /// let _e = o.open_or_create("e").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Event> {
        let (h, _) = self.c.create(name, self.kind(), false)?;
        Ok(Event::new(h, name))
    }
}

/// An event shared between processes: waiters sleep until it is set. A
/// Win32 event.
#[derive(Debug)]
pub struct Event {
    h: OwnedHandle,
    name: String,
}

impl Event {
    /// The event's handle and name, for the async form.
    #[cfg(feature = "tokio")]
    pub(crate) fn parts(&self) -> (std::os::windows::io::BorrowedHandle<'_>, &str) {
        (self.h.as_handle(), &self.name)
    }

    fn new(h: OwnedHandle, name: &str) -> Event {
        Event {
            h,
            name: name.to_string(),
        }
    }

    /// (manual reset, set), from `NtQueryEvent`.
    fn query(&self) -> (bool, bool) {
        os::query_event(self.h.as_handle())
            .expect("NtQueryEvent on an event handle with query access")
    }

    /// Whether this is a manual-reset event.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).manual_reset(true).create("e").unwrap();
    /// assert!(e.is_manual_reset());
    /// ```
    pub fn is_manual_reset(&self) -> bool {
        self.query().0
    }

    /// Whether the event is set now (does not consume an auto-reset event).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("e").unwrap();
    /// assert!(!e.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.query().1
    }

    /// Set the event (`SetEvent`): wakes all waiters of a manual-reset
    /// event, one of an auto-reset event.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("e").unwrap();
    /// e.set();
    /// assert!(e.try_wait());
    /// ```
    #[doc(alias = "SetEvent")]
    pub fn set(&self) {
        // Fails only for a handle without modify access, which ours has.
        let _ = os::set_event(self.h.as_handle());
    }

    /// Clear the event (`ResetEvent`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).initially_set(true).create("e").unwrap();
    /// e.reset();
    /// assert!(!e.is_set());
    /// ```
    #[doc(alias = "ResetEvent")]
    pub fn reset(&self) {
        let _ = os::reset_event(self.h.as_handle());
    }

    fn wait_for(&self, t: Option<Duration>) -> Result<bool> {
        let w = os::wait(self.h.as_handle(), t).ctx(&self.name, "cannot wait for the event")?;
        Ok(w != Wait::TimedOut)
    }

    /// Wait until the event is set (consuming it if auto reset).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).initially_set(true).create("e").unwrap();
    /// e.wait().unwrap();
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub fn wait(&self) -> Result<()> {
        if self.wait_for(None)? {
            Ok(())
        } else {
            Err(timeout(&self.name))
        }
    }

    /// Wait at most `timeout`; [`ErrorKind::Timeout`] if not set by then.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("e").unwrap();
    /// assert_eq!(e.wait_timeout(Duration::from_millis(10)).unwrap_err().kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn wait_timeout(&self, timeout_: Duration) -> Result<()> {
        if self.wait_for(Some(timeout_))? {
            Ok(())
        } else {
            Err(timeout(&self.name))
        }
    }

    /// Take the event if it is set now (consuming it if auto reset).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("e").unwrap();
    /// assert!(!e.try_wait());
    /// ```
    pub fn try_wait(&self) -> bool {
        self.wait_for(Some(Duration::ZERO)).unwrap_or(false)
    }
}

// ---------------------------------------------------------------- Semaphore

/// Options for named semaphores: initial count 0 and the largest maximum
/// unless told.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(1).max(4).create("slots").unwrap();
/// s.acquire().unwrap();
/// s.release(1).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SemaphoreOptions {
    c: Common,
    initial: u32,
    max: u32,
}

impl Default for SemaphoreOptions {
    fn default() -> Self {
        SemaphoreOptions {
            c: Common::default(),
            initial: 0,
            max: u32::MAX,
        }
    }
}

impl SemaphoreOptions {
    /// Who besides the creator may open the object, as
    /// [`MutexOptions::mode`].
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.c.mode = Some(mode);
        self
    }

    /// Default options.
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Use namespace `ns`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::sync::SemaphoreOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.c.shm = self.c.shm.namespace(ns);
        self
    }

    /// The initial count (default 0).
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new().initial(3);
    /// ```
    pub fn initial(mut self, n: u32) -> Self {
        self.initial = n;
        self
    }

    /// The maximum count (default, and at most, `i32::MAX` on Windows).
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new().max(8);
    /// ```
    pub fn max(mut self, n: u32) -> Self {
        self.max = n;
        self
    }

    fn kind(&self, name: &str) -> Result<Kind> {
        let cap = i32::MAX as u32;
        let (initial, max) = (self.initial, self.max.min(cap));
        if max == 0 || initial > max {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("initial count {initial} and maximum {max} are invalid; need 0 <= initial <= max and 1 <= max <= {cap}"),
            )
            .with_name(name));
        }
        Ok(Kind::Semaphore { initial, max })
    }

    /// Create the named semaphore `name` (`CreateSemaphoreW`);
    /// [`ErrorKind::AlreadyExists`] if a live process has it open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(2).max(5).create("s").unwrap();
    /// assert_eq!((s.count(), s.max()), (2, 5));
    /// ```
    #[doc(alias = "CreateSemaphore")]
    pub fn create(&self, name: &str) -> Result<Semaphore> {
        let (h, _) = self.c.create(name, self.kind(name)?, true)?;
        Ok(Semaphore::new(h, name))
    }

    /// Open the existing named semaphore `name` (`OpenSemaphoreW`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::SemaphoreOptions::new().namespace(&ns);
    /// assert_eq!(o.open("s").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "OpenSemaphore")]
    pub fn open(&self, name: &str) -> Result<Semaphore> {
        let h = self.c.open(name, Kind::Semaphore { initial: 0, max: 1 })?;
        Ok(Semaphore::new(h, name))
    }

    /// Open `name`, creating it with these counts if absent.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).open_or_create("s").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Semaphore> {
        let (h, _) = self.c.create(name, self.kind(name)?, false)?;
        Ok(Semaphore::new(h, name))
    }
}

/// A counting semaphore shared between processes: a Win32 semaphore.
#[derive(Debug)]
pub struct Semaphore {
    h: OwnedHandle,
    name: String,
}

impl Semaphore {
    /// The semaphore's handle and name, for the async form.
    #[cfg(feature = "tokio")]
    pub(crate) fn parts(&self) -> (std::os::windows::io::BorrowedHandle<'_>, &str) {
        (self.h.as_handle(), &self.name)
    }

    fn new(h: OwnedHandle, name: &str) -> Semaphore {
        Semaphore {
            h,
            name: name.to_string(),
        }
    }

    fn query(&self) -> (u32, u32) {
        os::query_semaphore(self.h.as_handle())
            .expect("NtQuerySemaphore on a semaphore handle with query access")
    }

    /// The current count (`NtQuerySemaphore`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// assert_eq!(s.count(), 0);
    /// ```
    pub fn count(&self) -> u32 {
        self.query().0
    }

    /// The maximum count.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).max(9).create("s").unwrap();
    /// assert_eq!(s.max(), 9);
    /// ```
    pub fn max(&self) -> u32 {
        self.query().1
    }

    /// Add `n` to the count and wake up to `n` waiters (`ReleaseSemaphore`);
    /// returns the previous count. Exceeding the maximum is
    /// [`ErrorKind::Full`] and changes nothing (`ERROR_TOO_MANY_POSTS`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).max(1).create("s").unwrap();
    /// assert_eq!(s.release(1).unwrap(), 0);
    /// assert_eq!(s.release(1).unwrap_err().kind(), ipckit::ErrorKind::Full);
    /// ```
    #[doc(alias = "ReleaseSemaphore")]
    pub fn release(&self, n: u32) -> Result<u32> {
        const ERROR_TOO_MANY_POSTS: i32 = 298;
        match os::release_semaphore(self.h.as_handle(), n) {
            Ok(prev) => Ok(prev),
            Err(e) if e.raw_os_error() == Some(ERROR_TOO_MANY_POSTS) => Err(Error::new(
                ErrorKind::Full,
                format!(
                    "releasing {n} would take the count past the maximum {}; release less",
                    self.max()
                ),
            )
            .with_name(&self.name)),
            Err(e) => Err(Error::os(e, "cannot release the semaphore").with_name(&self.name)),
        }
    }

    fn wait_for(&self, t: Option<Duration>) -> Result<bool> {
        let w = os::wait(self.h.as_handle(), t).ctx(&self.name, "cannot wait for the semaphore")?;
        Ok(w != Wait::TimedOut)
    }

    /// Take one unit, waiting as long as it takes.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(1).create("s").unwrap();
    /// s.acquire().unwrap();
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub fn acquire(&self) -> Result<()> {
        if self.wait_for(None)? {
            Ok(())
        } else {
            Err(timeout(&self.name))
        }
    }

    /// Take one unit, giving up with [`ErrorKind::Timeout`] after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// assert_eq!(s.acquire_timeout(Duration::from_millis(10)).unwrap_err().kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn acquire_timeout(&self, timeout_: Duration) -> Result<()> {
        if self.wait_for(Some(timeout_))? {
            Ok(())
        } else {
            Err(timeout(&self.name))
        }
    }

    /// Take one unit if the count is not zero now.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// assert!(!s.try_acquire());
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.wait_for(Some(Duration::ZERO)).unwrap_or(false)
    }
}
