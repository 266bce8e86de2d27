//! Sync objects in shared memory: [`Mutex`], [`Event`] and [`Semaphore`]
//! (Win32 `CreateMutex`, `CreateEvent`, `CreateSemaphore`).
//!
//! Each is a few 32-bit words in a [`Mapping`]: either a named mapping of
//! its own (`MutexOptions::new().create("name")`) or a place you choose in
//! a mapping you already share ([`Mutex::at`]). Waiting spins briefly (an
//! adaptive budget per handle, grown when spinning pays off, shrunk when it
//! does not), then sleeps on a futex; every wait can be bounded and then
//! returns [`ErrorKind::Timeout`].
//!
//! # Owner death, garbage and reused ids
//!
//! A mutex is two 32-bit words: the lock word holds the kernel thread id
//! of its owner (the Linux robust-futex word format: bits 0–29 owner tid,
//! bit 31 "waiters"), and the owner word beside it holds a stamp of that
//! thread's start time (from `/proc/<tid>/task/<tid>/stat`), written by the
//! locker right after it takes the lock word. ipckit does not use the
//! kernel's robust-futex list (glibc owns the one list a thread may
//! register); instead a waiter that has slept 50 ms without the lock word
//! changing looks the owner tid up in `/proc`:
//!
//! - no such thread, or a zombie: the owner died holding the lock;
//! - a live thread whose start time matches the owner word: a real owner,
//!   keep waiting;
//! - a live thread whose start time does *not* match (the tid was reused
//!   by another thread, or the lock word is garbage such as `1`, init), or
//!   a thread `/proc` does not describe: the lock word is not trusted, and
//!   once it and the owner word have stayed so for a grace of 100 ms (a
//!   real new owner writes its owner word within nanoseconds of taking the
//!   lock) the owner counts as dead.
//!
//! A waiter that finds a dead owner takes the lock and gets
//! [`Lock::Abandoned`] (Win32 `WAIT_ABANDONED`, POSIX `EOWNERDEAD`): the
//! data the lock protected may be half-updated and the caller must look.
//! The mutex is then usable as normal. So a garbage lock word is recovered
//! in about 150–200 ms, and a lock held by a killed process in about 50 ms.
//! Limits: all users must share a pid namespace and see `/proc`; a thread
//! that stalls for more than the grace between taking the lock word and
//! writing the owner word (a stopped process, say) can have its lock taken
//! over. The owner identity of the calling thread is cached per thread and
//! is right in the child of a `fork`.
//!
//! ```
//! use ipckit::sync::{Lock, MutexOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = MutexOptions::new().namespace(&ns);
//!
//! // process A and process B
//! let a = opts.open_or_create("jobs").unwrap();
//! let b = opts.open_or_create("jobs").unwrap();
//! match a.lock().unwrap() {
//!     Lock::Acquired(_guard) => { /* critical section */ }
//!     Lock::Abandoned(_guard) => { /* previous owner died inside: repair */ }
//! }
//! let _g = b.lock().unwrap();
//! ipckit::shm::MappingOptions::new().namespace(&ns).remove("jobs").unwrap();
//! ```

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::shm::{Kind, Mapping, MappingOptions};
use crate::sys::futex;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

const TID_MASK: u32 = 0x3fff_ffff;
const WAITERS: u32 = 1 << 31;
/// How long a waiter sleeps before checking whether the owner died.
const OWNER_CHECK: Duration = Duration::from_millis(50);
/// How long a lock word whose owner cannot be verified (garbage, reused
/// tid, owner word not written yet) must stay unchanged before the owner
/// counts as dead.
const UNVERIFIED_GRACE: Duration = Duration::from_millis(100);
const SPIN_MIN: u32 = 16;
const SPIN_MAX: u32 = 2000;

/// `min(remaining, cap)`, or `Err(Timeout)` when the deadline passed.
fn slice(deadline: Option<Instant>, cap: Option<Duration>, name: &str) -> Result<Option<Duration>> {
    let remaining = match deadline {
        None => return Ok(cap),
        Some(d) => d.saturating_duration_since(Instant::now()),
    };
    if remaining.is_zero() {
        return Err(
            Error::new(ErrorKind::Timeout, "timed out waiting; retry or give up").with_name(name),
        );
    }
    Ok(Some(cap.map_or(remaining, |c| c.min(remaining))))
}

/// The named sync objects of namespace `ns` (kinds `mutex`, `event`,
/// `semaphore`), with their owner and who has them open; see
/// [`crate::shm::list_in`], which lists every kind of named shared memory.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let _m = ipckit::sync::MutexOptions::new().namespace(&ns).create("lock").unwrap();
/// let _map = ipckit::shm::MappingOptions::new().namespace(&ns).create("frame", 8).unwrap();
/// let all = ipckit::sync::list_in(&ns).unwrap();
/// assert_eq!(all.len(), 1);
/// assert_eq!((all[0].name.as_str(), all[0].kind.as_str()), ("lock", "mutex"));
/// assert!(all[0].is_open());
/// # let o = ipckit::shm::MappingOptions::new().namespace(&ns);
/// # o.remove("lock").unwrap(); o.remove("frame").unwrap();
/// ```
pub fn list_in(ns: &Namespace) -> Result<Vec<crate::shm::ObjectInfo>> {
    let mut all = crate::shm::list_in(ns)?;
    all.retain(|o| matches!(o.kind.as_str(), "mutex" | "event" | "semaphore"));
    Ok(all)
}

fn label(map: &Mapping) -> String {
    map.name().unwrap_or("(unnamed)").to_string()
}

// ---------------------------------------------------------------- Mutex

/// Options for named mutexes (default namespace unless
/// [`namespace`](MutexOptions::namespace) is given).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MutexOptions {
    shm: MappingOptions,
}

impl MutexOptions {
    /// Who besides the creator may open the object: its mode, as
    /// [`MappingOptions::mode`] (read/write bits, `0o600` at least; default
    /// `0o600`). An opener accepts an object no wider than its own mode.
    ///
    /// ```
    /// let _ = ipckit::sync::MutexOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.shm = self.shm.mode(mode);
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
        self.shm = self.shm.namespace(ns);
        self
    }

    /// Create the named mutex `name`, unlocked; [`ErrorKind::AlreadyExists`]
    /// if a live process has it open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// let _m = o.create("m").unwrap();
    /// assert_eq!(o.create("m").unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    #[doc(alias = "CreateMutex")]
    pub fn create(&self, name: &str) -> Result<Mutex> {
        let m = self
            .shm
            .create_kind(name, 8, Kind::Mutex, |_| Ok(()), true)?;
        Mutex::at(Arc::new(m), 0)
    }

    /// Open the existing named mutex `name`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// assert_eq!(o.open("m").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "OpenMutex")]
    pub fn open(&self, name: &str) -> Result<Mutex> {
        Mutex::at(Arc::new(self.shm.open_kind(name, Kind::Mutex)?), 0)
    }

    /// Open `name`, creating it if absent; [`Mutex::existed`] says which.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::MutexOptions::new().namespace(&ns);
    /// assert!(!o.open_or_create("m").unwrap().existed());
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Mutex> {
        let m = self
            .shm
            .open_or_create_kind(name, 8, Kind::Mutex, |_| Ok(()))?;
        Mutex::at(Arc::new(m), 0)
    }
}

/// A mutex shared between processes, that reports an owner's death.
///
/// See the [module docs](self) for how owner death is detected.
#[derive(Debug)]
pub struct Mutex {
    map: Arc<Mapping>,
    offset: usize,
    owner_offset: usize,
    spin: AtomicU32,
}

/// The outcome of a successful lock: you hold the mutex either way, but an
/// [`Abandoned`](Lock::Abandoned) lock was taken over from an owner that
/// died holding it, so the data it protects may be inconsistent.
#[doc(alias = "WAIT_ABANDONED")]
#[must_use = "an abandoned lock means the protected data may be half-updated; look at it"]
#[derive(Debug)]
pub enum Lock<'a> {
    /// Taken normally (Win32 `WAIT_OBJECT_0`).
    Acquired(MutexGuard<'a>),
    /// Taken over from a dead owner (Win32 `WAIT_ABANDONED`).
    Abandoned(MutexGuard<'a>),
}

impl<'a> Lock<'a> {
    /// Whether the previous owner died holding the lock.
    ///
    /// ```
    /// let m = ipckit::sync::Mutex::at(std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap()), 0).unwrap();
    /// assert!(!m.lock().unwrap().is_abandoned());
    /// ```
    pub fn is_abandoned(&self) -> bool {
        matches!(self, Lock::Abandoned(_))
    }

    /// The guard, whichever way the lock was taken.
    ///
    /// ```
    /// let m = ipckit::sync::Mutex::at(std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap()), 0).unwrap();
    /// let g = m.lock().unwrap().into_guard();
    /// drop(g);
    /// ```
    pub fn into_guard(self) -> MutexGuard<'a> {
        match self {
            Lock::Acquired(g) | Lock::Abandoned(g) => g,
        }
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped. Not `Send`: the owner
/// recorded in the lock word is the locking thread.
#[derive(Debug)]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
    _not_send: PhantomData<*const ()>,
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl Mutex {
    /// A mutex in the 8 bytes at `offset` (4-byte aligned) of `map`: the
    /// lock word at `offset`, the owner word at `offset + 4` (see the
    /// [module docs](self)). Zeroed memory is an unlocked mutex, so a fresh
    /// mapping needs no set-up.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let map = Arc::new(ipckit::shm::Mapping::anonymous(64).unwrap());
    /// let m = ipckit::sync::Mutex::at(map.clone(), 8).unwrap();
    /// let _g = m.lock().unwrap();
    /// assert!(ipckit::sync::Mutex::at(map.clone(), 3).is_err());
    /// assert!(ipckit::sync::Mutex::at(map, 60).is_err()); // needs 8 bytes
    /// ```
    pub fn at(map: Arc<Mapping>, offset: usize) -> Result<Mutex> {
        let owner = offset.checked_add(4).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("offset {offset} is out of range"),
            )
        })?;
        Mutex::at_parts(map, offset, owner)
    }

    /// A mutex whose lock word is at `lock_offset` and whose owner word is
    /// at `owner_offset` of `map` (both 4-byte aligned, distinct, and used
    /// for nothing else), for layouts where the word after the lock word is
    /// taken.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let map = Arc::new(ipckit::shm::Mapping::anonymous(64).unwrap());
    /// let m = ipckit::sync::Mutex::at_parts(map.clone(), 0, 48).unwrap();
    /// let _g = m.lock().unwrap();
    /// assert!(ipckit::sync::Mutex::at_parts(map, 0, 0).is_err());
    /// ```
    pub fn at_parts(map: Arc<Mapping>, lock_offset: usize, owner_offset: usize) -> Result<Mutex> {
        map.atomic_u32(lock_offset)?;
        map.atomic_u32(owner_offset)?;
        if lock_offset.abs_diff(owner_offset) < 4 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("the lock word at {lock_offset} and the owner word at {owner_offset} overlap; give them 4 bytes each"),
            ));
        }
        Ok(Mutex {
            map,
            offset: lock_offset,
            owner_offset,
            spin: AtomicU32::new(100),
        })
    }

    /// Whether a named mutex existed before this handle opened it.
    ///
    /// ```
    /// let m = ipckit::sync::Mutex::at(std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap()), 0).unwrap();
    /// assert!(m.existed());
    /// ```
    pub fn existed(&self) -> bool {
        self.map.existed()
    }

    /// The mapping holding the lock word.
    ///
    /// ```
    /// let m = ipckit::sync::Mutex::at(std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap()), 0).unwrap();
    /// assert_eq!(m.mapping().len(), 8);
    /// ```
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    fn word(&self) -> &AtomicU32 {
        self.map
            .atomic_u32(self.offset)
            .expect("offset checked in Mutex::at_parts")
    }

    fn owner_word(&self) -> &AtomicU32 {
        self.map
            .atomic_u32(self.owner_offset)
            .expect("offset checked in Mutex::at_parts")
    }

    /// Lock, waiting as long as it takes (but never for a dead owner).
    ///
    /// ```
    /// let m = ipckit::sync::Mutex::at(std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap()), 0).unwrap();
    /// let lock = m.lock().unwrap();
    /// assert!(!lock.is_abandoned());
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub fn lock(&self) -> Result<Lock<'_>> {
        self.lock_until(None)
    }

    /// Lock, giving up with [`ErrorKind::Timeout`] after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::Mutex::at(map.clone(), 0).unwrap();
    /// let _held = m.lock().unwrap();
    /// let other = std::thread::spawn(move || {
    ///     let m2 = ipckit::sync::Mutex::at(map, 0).unwrap();
    ///     m2.lock_timeout(Duration::from_millis(20)).map(|_| ()).unwrap_err().kind()
    /// });
    /// assert_eq!(other.join().unwrap(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Lock<'_>> {
        self.lock_until(Some(Instant::now() + timeout))
    }

    /// Record `me` in the owner word of a lock word just taken (see the
    /// [module docs](self)); returns `abandoned`.
    fn owned(&self, me: futex::Me, abandoned: bool) -> bool {
        self.owner_word().store(me.stamp, Ordering::Relaxed);
        abandoned
    }

    /// The guard for a lock just taken (and [`owned`](Self::owned)).
    fn guard(&self, abandoned: bool) -> Lock<'_> {
        let g = MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        if abandoned {
            Lock::Abandoned(g)
        } else {
            Lock::Acquired(g)
        }
    }

    fn lock_until(&self, deadline: Option<Instant>) -> Result<Lock<'_>> {
        let me = futex::me();
        match self.lock_with(me, deadline, true, &|| false)? {
            Some(abandoned) => Ok(self.guard(abandoned)),
            None => unreachable!("never cancelled"),
        }
    }

    /// The lock algorithm, for the thread identity `me`: take the lock
    /// word (the caller then writes `me.stamp` into the owner word, see
    /// [`guard`](Self::guard)) and return whether it was abandoned.
    /// `own_thread` says `me` is the calling thread (so finding `me` as the
    /// owner is a recursive lock, or garbage); the async form passes a
    /// per-process owner identity shared by its tasks instead (see
    /// `sync::tokio`), for which `me` as owner is just another holder.
    /// `cancelled` is polled at least every [`OWNER_CHECK`]; `Ok(None)`
    /// when it said so (the lock is then not taken).
    pub(crate) fn lock_with(
        &self,
        me: futex::Me,
        deadline: Option<Instant>,
        own_thread: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<bool>> {
        let w = self.word();
        if w.compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Some(self.owned(me, false)));
        }
        // Adaptive spin: the budget doubles when spinning won, halves when not.
        let budget = self.spin.load(Ordering::Relaxed).clamp(SPIN_MIN, SPIN_MAX);
        for _ in 0..budget {
            std::hint::spin_loop();
            if w.load(Ordering::Relaxed) == 0
                && w.compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                self.spin
                    .store((budget * 2).min(SPIN_MAX), Ordering::Relaxed);
                return Ok(Some(self.owned(me, false)));
            }
        }
        self.spin
            .store((budget / 2).max(SPIN_MIN), Ordering::Relaxed);
        let name = label(&self.map);
        let mut suspect = false;
        // (lock word, owner word) first seen unverifiable, and when.
        let mut unverified: Option<(u32, u32, Instant)> = None;
        loop {
            let v = w.load(Ordering::Relaxed);
            let owner = v & TID_MASK;
            if owner == 0 {
                // Free. Others may be asleep, so keep the waiters bit.
                if w.compare_exchange(v, me.tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Some(self.owned(me, false)));
                }
                continue;
            }
            let stamp = self.owner_word().load(Ordering::Relaxed);
            if cancelled() {
                // A wake meant for a waiter may have come to us: pass it on.
                if v & WAITERS != 0 && w.load(Ordering::Relaxed) & TID_MASK == 0 {
                    futex::wake(w, 1);
                }
                return Ok(None);
            }
            if own_thread && owner == me.tid {
                if stamp == me.stamp {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "this thread already holds the mutex (ipckit mutexes are not recursive); drop the guard first",
                    )
                    .with_name(name));
                }
                // Our tid, but not our owner word: garbage (or a dead
                // thread's word whose tid we reuse). Nobody else can be
                // taking it under our tid, so take it now.
                if w.compare_exchange(v, me.tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Some(self.owned(me, true)));
                }
                continue;
            }
            if suspect {
                let dead = match futex::owner(owner) {
                    futex::Owner::Dead => true,
                    futex::Owner::Alive(s) if s == stamp => {
                        unverified = None;
                        false
                    }
                    futex::Owner::Alive(_) | futex::Owner::Unknown => {
                        let now = Instant::now();
                        match unverified {
                            Some((uv, us, since)) if uv == v & !WAITERS && us == stamp => {
                                now.duration_since(since) >= UNVERIFIED_GRACE
                            }
                            _ => {
                                unverified = Some((v & !WAITERS, stamp, now));
                                false
                            }
                        }
                    }
                };
                if dead {
                    if w.compare_exchange(v, me.tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Ok(Some(self.owned(me, true)));
                    }
                    continue;
                }
            }
            if v & WAITERS == 0
                && w.compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // While an unverified owner's grace runs, look again when it ends.
            let cap = match unverified {
                Some((_, _, since)) => UNVERIFIED_GRACE
                    .saturating_sub(since.elapsed())
                    .max(Duration::from_millis(1))
                    .min(OWNER_CHECK),
                None => OWNER_CHECK,
            };
            let wait = slice(deadline, Some(cap), &name)?;
            futex::wait(w, v | WAITERS, wait)
                .map_err(|e| Error::os(e, "futex wait failed").with_name(name.clone()))?;
            // Unchanged after a full slice: the owner may be dead; check.
            suspect = w.load(Ordering::Relaxed) == v | WAITERS;
            if !suspect {
                unverified = None;
            }
        }
    }

    fn unlock(&self) {
        let w = self.word();
        if w.swap(0, Ordering::Release) & WAITERS != 0 {
            futex::wake(w, 1);
        }
    }

    /// Lock if that needs no waiting: `Ok(None)` when another live thread
    /// holds the mutex (Win32 `WaitForSingleObject(h, 0)` giving
    /// `WAIT_TIMEOUT`). A lock whose owner is found dead is taken over at
    /// once and reported [`Lock::Abandoned`]; one whose owner cannot be
    /// verified yet (see the [module docs](self)) counts as held.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::Mutex::at(map.clone(), 0).unwrap();
    /// let held = m.try_lock().unwrap().expect("free");
    /// let other = std::thread::spawn(move || {
    ///     let m2 = ipckit::sync::Mutex::at(map, 0).unwrap();
    ///     let free = m2.try_lock().unwrap().is_some();
    ///     free
    /// });
    /// assert!(!other.join().unwrap()); // held by this thread
    /// drop(held);
    /// assert!(m.try_lock().unwrap().is_some());
    /// ```
    pub fn try_lock(&self) -> Result<Option<Lock<'_>>> {
        let me = futex::me();
        Ok(self
            .try_lock_with(me, true)?
            .map(|abandoned| self.guard(abandoned)))
    }

    /// [`try_lock`](Self::try_lock) for the identity `me` (see
    /// [`lock_with`](Self::lock_with) for `own_thread`): `Some(abandoned)`
    /// when the lock word was taken (and the owner word written).
    pub(crate) fn try_lock_with(&self, me: futex::Me, own_thread: bool) -> Result<Option<bool>> {
        let w = self.word();
        loop {
            let v = w.load(Ordering::Relaxed);
            let owner = v & TID_MASK;
            // Taking a lock keeps the waiters bit: others may be asleep.
            let mine = me.tid | (v & WAITERS);
            if owner == 0 {
                if w.compare_exchange(v, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Some(self.owned(me, false)));
                }
                continue;
            }
            if own_thread && owner == me.tid {
                if self.owner_word().load(Ordering::Relaxed) == me.stamp {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "this thread already holds the mutex (ipckit mutexes are not recursive); drop the guard first",
                    )
                    .with_name(label(&self.map)));
                }
                // Our tid but not our owner word: garbage, as in `lock_with`.
                if w.compare_exchange(v, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Some(self.owned(me, true)));
                }
                continue;
            }
            if futex::owner(owner) == futex::Owner::Dead {
                if w.compare_exchange(v, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Some(self.owned(me, true)));
                }
                continue;
            }
            return Ok(None);
        }
    }

    /// Unlock a lock taken through [`lock_with`](Self::lock_with) or
    /// [`try_lock_with`](Self::try_lock_with) (the async guard's drop).
    #[cfg(feature = "tokio")]
    pub(crate) fn unlock_raw(&self) {
        self.unlock();
    }
}

// ---------------------------------------------------------------- Event

/// Options for named events: reset mode and initial state apply when
/// creating.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::sync::EventOptions::new().namespace(&ns).manual_reset(true).create("ready").unwrap();
/// e.set();
/// e.wait().unwrap();
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("ready").unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    shm: MappingOptions,
    manual: bool,
    initially_set: bool,
}

impl EventOptions {
    /// Who besides the creator may open the object: its mode, as
    /// [`MappingOptions::mode`] (read/write bits, `0o600` at least; default
    /// `0o600`). An opener accepts an object no wider than its own mode.
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.shm = self.shm.mode(mode);
        self
    }

    /// Auto-reset, initially not set, default namespace.
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
        self.shm = self.shm.namespace(ns);
        self
    }

    /// Manual reset (stays set and releases every waiter until
    /// [`Event::reset`]) instead of auto reset (releases one waiter and
    /// resets itself). Default: auto (`bManualReset = FALSE`).
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new().manual_reset(true);
    /// ```
    pub fn manual_reset(mut self, manual: bool) -> Self {
        self.manual = manual;
        self
    }

    /// Start set (`bInitialState`). Default: not set.
    ///
    /// ```
    /// let _ = ipckit::sync::EventOptions::new().initially_set(true);
    /// ```
    pub fn initially_set(mut self, set: bool) -> Self {
        self.initially_set = set;
        self
    }

    fn init(&self) -> impl Fn(&Mapping) -> Result<()> + '_ {
        move |m| Event::init(m, 0, self.manual, self.initially_set)
    }

    /// Create the named event `name`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _e = ipckit::sync::EventOptions::new().namespace(&ns).create("e").unwrap();
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("e").unwrap();
    /// ```
    #[doc(alias = "CreateEvent")]
    pub fn create(&self, name: &str) -> Result<Event> {
        let m = self
            .shm
            .create_kind(name, 8, Kind::Event, self.init(), true)?;
        Event::at(Arc::new(m), 0)
    }

    /// Open the existing named event `name` (its reset mode is the creator's).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(ipckit::sync::EventOptions::new().namespace(&ns).open("e").is_err());
    /// ```
    #[doc(alias = "OpenEvent")]
    pub fn open(&self, name: &str) -> Result<Event> {
        Event::at(Arc::new(self.shm.open_kind(name, Kind::Event)?), 0)
    }

    /// Open `name`, creating it with these options if absent.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _e = ipckit::sync::EventOptions::new().namespace(&ns).open_or_create("e").unwrap();
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("e").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Event> {
        let m = self
            .shm
            .open_or_create_kind(name, 8, Kind::Event, self.init())?;
        Event::at(Arc::new(m), 0)
    }
}

/// An event shared between processes: waiters sleep until it is set.
///
/// Layout: word 0 = state (0 not set, 1 set), word 1 = flags (bit 0 manual reset).
#[derive(Debug)]
pub struct Event {
    map: Arc<Mapping>,
    offset: usize,
}

impl Event {
    /// Initialise an event in the 8 bytes at `offset` (4-byte aligned) of
    /// `map`, before other processes use it.
    ///
    /// ```
    /// let map = ipckit::shm::Mapping::anonymous(8).unwrap();
    /// ipckit::sync::Event::init(&map, 0, true, false).unwrap();
    /// ```
    pub fn init(
        map: &Mapping,
        offset: usize,
        manual_reset: bool,
        initially_set: bool,
    ) -> Result<()> {
        map.atomic_u32(offset + 4)?
            .store(u32::from(manual_reset), Ordering::Relaxed);
        map.atomic_u32(offset)?
            .store(u32::from(initially_set), Ordering::Release);
        Ok(())
    }

    /// The event initialised (by [`Event::init`]) at `offset` of `map`.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Event::init(&map, 0, false, true).unwrap();
    /// let e = ipckit::sync::Event::at(map, 0).unwrap();
    /// assert!(e.is_set());
    /// ```
    pub fn at(map: Arc<Mapping>, offset: usize) -> Result<Event> {
        map.atomic_u32(offset)?;
        map.atomic_u32(offset + 4)?;
        Ok(Event { map, offset })
    }

    fn state(&self) -> &AtomicU32 {
        self.map
            .atomic_u32(self.offset)
            .expect("checked in Event::at")
    }

    /// Whether this is a manual-reset event.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Event::init(&map, 0, true, false).unwrap();
    /// assert!(ipckit::sync::Event::at(map, 0).unwrap().is_manual_reset());
    /// ```
    pub fn is_manual_reset(&self) -> bool {
        let flags = self
            .map
            .atomic_u32(self.offset + 4)
            .expect("checked in Event::at");
        flags.load(Ordering::Relaxed) & 1 != 0
    }

    /// Whether the event is set now.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::Event::at(map, 0).unwrap();
    /// assert!(!e.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.state().load(Ordering::Acquire) != 0
    }

    /// Set the event: a manual-reset event wakes every waiter (in every
    /// process) and stays set; an auto-reset one lets exactly one waiter
    /// through (now or the next to come) and resets itself.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::Event::at(map, 0).unwrap();
    /// e.set();
    /// e.wait().unwrap();
    /// assert!(!e.is_set()); // auto reset
    /// ```
    #[doc(alias = "SetEvent")]
    pub fn set(&self) {
        self.state().store(1, Ordering::Release);
        futex::wake(
            self.state(),
            if self.is_manual_reset() {
                i32::MAX as u32
            } else {
                1
            },
        );
    }

    /// Reset the event to not set.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Event::init(&map, 0, true, true).unwrap();
    /// let e = ipckit::sync::Event::at(map, 0).unwrap();
    /// e.reset();
    /// assert!(!e.is_set());
    /// ```
    #[doc(alias = "ResetEvent")]
    pub fn reset(&self) {
        self.state().store(0, Ordering::Release);
    }

    /// Wait until the event is set.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Event::init(&map, 0, false, true).unwrap();
    /// ipckit::sync::Event::at(map, 0).unwrap().wait().unwrap();
    /// ```
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None)
    }

    /// Wait at most `timeout`, then fail with [`ErrorKind::Timeout`].
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::Event::at(map, 0).unwrap();
    /// let err = e.wait_timeout(std::time::Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<()> {
        let s = self.state();
        let manual = self.is_manual_reset();
        let name = label(&self.map);
        loop {
            let got = if manual {
                s.load(Ordering::Acquire) != 0
            } else {
                s.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            };
            if got {
                return Ok(());
            }
            let wait = slice(deadline, None, &name)?;
            futex::wait(s, 0, wait)
                .map_err(|e| Error::os(e, "futex wait failed").with_name(name.clone()))?;
        }
    }

    /// Take the event if it is set, without waiting: `true` if it was
    /// (an auto-reset event is reset by this, as a successful
    /// [`wait`](Self::wait) would), `false` if not (Win32
    /// `WaitForSingleObject(h, 0)`). [`is_set`](Self::is_set) looks without
    /// taking.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::Event::at(map, 0).unwrap(); // auto reset
    /// assert!(!e.try_wait());
    /// e.set();
    /// assert!(e.try_wait());
    /// assert!(!e.try_wait()); // the one signal was taken
    /// ```
    pub fn try_wait(&self) -> bool {
        let s = self.state();
        if self.is_manual_reset() {
            s.load(Ordering::Acquire) != 0
        } else {
            s.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }
    }

    /// [`wait`](Self::wait) that polls `cancelled` at least every `slice`:
    /// `Ok(true)` once the event was taken, `Ok(false)` when cancelled
    /// (nothing taken).
    #[cfg(feature = "tokio")]
    pub(crate) fn wait_with(&self, slice: Duration, cancelled: &dyn Fn() -> bool) -> Result<bool> {
        let s = self.state();
        loop {
            if self.try_wait() {
                return Ok(true);
            }
            if cancelled() {
                return Ok(false);
            }
            futex::wait(s, 0, Some(slice))
                .map_err(|e| Error::os(e, "futex wait failed").with_name(label(&self.map)))?;
        }
    }
}

// ------------------------------------------------------------ Semaphore

/// Options for named semaphores: initial count and maximum apply when
/// creating.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(1).max(4).create("slots").unwrap();
/// s.acquire().unwrap();
/// s.release(1).unwrap();
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("slots").unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SemaphoreOptions {
    shm: MappingOptions,
    initial: u32,
    max: u32,
}

impl Default for SemaphoreOptions {
    fn default() -> Self {
        SemaphoreOptions {
            shm: MappingOptions::new(),
            initial: 0,
            max: u32::MAX,
        }
    }
}

impl SemaphoreOptions {
    /// Who besides the creator may open the object: its mode, as
    /// [`MappingOptions::mode`] (read/write bits, `0o600` at least; default
    /// `0o600`). An opener accepts an object no wider than its own mode.
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new().mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.shm = self.shm.mode(mode);
        self
    }

    /// Initial count 0, maximum `u32::MAX`, default namespace.
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
        self.shm = self.shm.namespace(ns);
        self
    }

    /// Initial count (`lInitialCount`; default 0).
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new().initial(3);
    /// ```
    pub fn initial(mut self, n: u32) -> Self {
        self.initial = n;
        self
    }

    /// Maximum count (`lMaximumCount`; default `u32::MAX`).
    ///
    /// ```
    /// let _ = ipckit::sync::SemaphoreOptions::new().max(3);
    /// ```
    pub fn max(mut self, n: u32) -> Self {
        self.max = n;
        self
    }

    fn init(&self) -> impl Fn(&Mapping) -> Result<()> + '_ {
        move |m| Semaphore::init(m, 0, self.initial, self.max)
    }

    /// Create the named semaphore `name`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(5).max(2);
    /// assert_eq!(o.create("s").unwrap_err().kind(), ipckit::ErrorKind::InvalidInput);
    /// ```
    #[doc(alias = "CreateSemaphore")]
    pub fn create(&self, name: &str) -> Result<Semaphore> {
        self.check(name)?;
        let m = self
            .shm
            .create_kind(name, 8, Kind::Semaphore, self.init(), true)?;
        Semaphore::at(Arc::new(m), 0)
    }

    /// Open the existing named semaphore `name`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(ipckit::sync::SemaphoreOptions::new().namespace(&ns).open("s").is_err());
    /// ```
    #[doc(alias = "OpenSemaphore")]
    pub fn open(&self, name: &str) -> Result<Semaphore> {
        Semaphore::at(Arc::new(self.shm.open_kind(name, Kind::Semaphore)?), 0)
    }

    /// Open `name`, creating it with these options if absent.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).open_or_create("s").unwrap();
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("s").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Semaphore> {
        self.check(name)?;
        let m = self
            .shm
            .open_or_create_kind(name, 8, Kind::Semaphore, self.init())?;
        Semaphore::at(Arc::new(m), 0)
    }

    fn check(&self, name: &str) -> Result<()> {
        if self.max == 0 || self.initial > self.max {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("initial count {} and maximum {} are invalid; need 0 <= initial <= max and max >= 1", self.initial, self.max),
            )
            .with_name(name));
        }
        Ok(())
    }
}

/// A counting semaphore shared between processes.
///
/// Layout: word 0 = count, word 1 = maximum.
#[derive(Debug)]
pub struct Semaphore {
    map: Arc<Mapping>,
    offset: usize,
}

impl Semaphore {
    /// Initialise a semaphore in the 8 bytes at `offset` (4-byte aligned) of `map`.
    ///
    /// ```
    /// let map = ipckit::shm::Mapping::anonymous(8).unwrap();
    /// ipckit::sync::Semaphore::init(&map, 0, 1, 1).unwrap();
    /// ```
    pub fn init(map: &Mapping, offset: usize, initial: u32, max: u32) -> Result<()> {
        map.atomic_u32(offset + 4)?.store(max, Ordering::Relaxed);
        map.atomic_u32(offset)?
            .store(initial.min(max), Ordering::Release);
        Ok(())
    }

    /// The semaphore initialised (by [`Semaphore::init`]) at `offset` of `map`.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Semaphore::init(&map, 0, 2, 5).unwrap();
    /// let s = ipckit::sync::Semaphore::at(map, 0).unwrap();
    /// assert_eq!((s.count(), s.max()), (2, 5));
    /// ```
    pub fn at(map: Arc<Mapping>, offset: usize) -> Result<Semaphore> {
        map.atomic_u32(offset)?;
        map.atomic_u32(offset + 4)?;
        Ok(Semaphore { map, offset })
    }

    fn count_word(&self) -> &AtomicU32 {
        self.map
            .atomic_u32(self.offset)
            .expect("checked in Semaphore::at")
    }

    /// The current count.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// assert_eq!(ipckit::sync::Semaphore::at(map, 0).unwrap().count(), 0);
    /// ```
    pub fn count(&self) -> u32 {
        self.count_word().load(Ordering::Acquire)
    }

    /// The maximum count.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Semaphore::init(&map, 0, 0, 9).unwrap();
    /// assert_eq!(ipckit::sync::Semaphore::at(map, 0).unwrap().max(), 9);
    /// ```
    pub fn max(&self) -> u32 {
        self.map
            .atomic_u32(self.offset + 4)
            .expect("checked in Semaphore::at")
            .load(Ordering::Relaxed)
    }

    /// Add `n` to the count and wake up to `n` waiters; returns the previous
    /// count. Exceeding the maximum is [`ErrorKind::Full`] and changes
    /// nothing (Win32 `ERROR_TOO_MANY_POSTS`).
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Semaphore::init(&map, 0, 0, 1).unwrap();
    /// let s = ipckit::sync::Semaphore::at(map, 0).unwrap();
    /// assert_eq!(s.release(1).unwrap(), 0);
    /// assert_eq!(s.release(1).unwrap_err().kind(), ipckit::ErrorKind::Full);
    /// ```
    #[doc(alias = "ReleaseSemaphore")]
    pub fn release(&self, n: u32) -> Result<u32> {
        let w = self.count_word();
        let max = self.max();
        let mut c = w.load(Ordering::Relaxed);
        loop {
            let next = c.checked_add(n).filter(|x| *x <= max).ok_or_else(|| {
                Error::new(ErrorKind::Full, format!("releasing {n} would take the count {c} past the maximum {max}; release less"))
                    .with_name(label(&self.map))
            })?;
            match w.compare_exchange_weak(c, next, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        futex::wake(w, n);
        Ok(c)
    }

    /// Take one unit, waiting as long as it takes.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Semaphore::init(&map, 0, 1, 1).unwrap();
    /// ipckit::sync::Semaphore::at(map, 0).unwrap().acquire().unwrap();
    /// ```
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(None)
    }

    /// Take one unit, giving up with [`ErrorKind::Timeout`] after `timeout`.
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let s = ipckit::sync::Semaphore::at(map, 0).unwrap();
    /// let e = s.acquire_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<()> {
        let w = self.count_word();
        let name = label(&self.map);
        loop {
            let c = w.load(Ordering::Relaxed);
            if c > 0 {
                if w.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            let wait = slice(deadline, None, &name)?;
            futex::wait(w, 0, wait)
                .map_err(|e| Error::os(e, "futex wait failed").with_name(name.clone()))?;
        }
    }

    /// Take one unit if the count is above zero, without waiting: whether
    /// one was taken (Win32 `WaitForSingleObject(h, 0)`).
    ///
    /// ```
    /// let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Semaphore::init(&map, 0, 1, 1).unwrap();
    /// let s = ipckit::sync::Semaphore::at(map, 0).unwrap();
    /// assert!(s.try_acquire());
    /// assert!(!s.try_acquire());
    /// ```
    pub fn try_acquire(&self) -> bool {
        let w = self.count_word();
        let mut c = w.load(Ordering::Relaxed);
        while c > 0 {
            match w.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// [`acquire`](Self::acquire) that polls `cancelled` at least every
    /// `slice`: `Ok(true)` once a unit was taken, `Ok(false)` when
    /// cancelled (nothing taken).
    #[cfg(feature = "tokio")]
    pub(crate) fn acquire_with(
        &self,
        slice: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool> {
        let w = self.count_word();
        loop {
            if self.try_acquire() {
                return Ok(true);
            }
            if cancelled() {
                return Ok(false);
            }
            futex::wait(w, 0, Some(slice))
                .map_err(|e| Error::os(e, "futex wait failed").with_name(label(&self.map)))?;
        }
    }
}
