//! Async forms of the sync objects, for tokio applications: a
//! [`Mutex`] whose [`lock`](Mutex::lock) is a future, an [`Event`] with
//! [`wait().await`](Event::wait) and a [`Semaphore`] with
//! [`acquire().await`](Semaphore::acquire). Each wraps the blocking object
//! of [`crate::sync`] (built with its options, then converted with `new` or
//! `From`) and interoperates with it: a blocking process and an async one
//! share the same mutex, event or semaphore.
//!
//! # How waiting works
//!
//! A futex cannot be registered with epoll, so a wait that cannot finish at
//! once runs on a helper thread of its own (one per pending wait; a `try_*`
//! that succeeds, the common uncontended case, spawns nothing). The helper
//! sleeps on the futex in slices of at most 50 ms and hands the result to
//! the future.
//!
//! # Cancellation
//!
//! Dropping a pending future (for instance through
//! [`tokio::time::timeout`] or `select!`) cancels
//! the wait: the helper sees it within one slice and stops without taking
//! anything. If it had already taken the object when the future went away,
//! it gives it back: the mutex is unlocked, the semaphore unit released,
//! an auto-reset event set again. So a dropped future never leaves a mutex
//! locked or loses a unit or a signal: the next waiter, in this process or
//! another, gets it.
//!
//! # Mutex ownership
//!
//! A blocking [`crate::sync::Mutex`] records the locking *thread* as its
//! owner. An async lock belongs to a task that may move between threads, so
//! it records a per-process owner instead: a thread of this process that
//! does nothing but exist. Another process therefore sees an async lock
//! abandoned when this process dies (not when a worker thread exits), and
//! the guard is `Send`. Two tasks of one process contend like any two
//! owners; a task that locks a mutex it already holds waits for ever (as
//! with tokio's own mutex), where the blocking form reports the recursion.
//!
//! ```
//! use ipckit::sync::{tokio::Mutex, MutexOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! // process A (async)
//! let m = Mutex::new(MutexOptions::new().namespace(&ns).open_or_create("jobs").unwrap());
//! {
//!     let lock = m.lock().await.unwrap();
//!     if lock.is_abandoned() { /* previous owner died inside: repair */ }
//! } // unlocked
//! // process B (blocking) uses the same name
//! let b = MutexOptions::new().namespace(&ns).open("jobs").unwrap();
//! drop(b.lock().unwrap());
//! # ipckit::shm::MappingOptions::new().namespace(&ns).remove("jobs").unwrap();
//! # }
//! ```

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use ::tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};
use crate::sync as blocking;
use crate::sys::futex;

/// How often a helper thread looks whether its future was dropped.
const SLICE: Duration = Duration::from_millis(50);

/// Run `wait` on a helper thread named `name`; `wait` gets a closure
/// saying whether the future was dropped, and its result is sent to the
/// returned receiver. A result that cannot be delivered (the future is
/// gone) is dropped, which is what undoes an acquisition (see the token
/// types below).
fn helper<T: Send + 'static>(
    name: &str,
    object: &str,
    wait: impl FnOnce(&dyn Fn() -> bool) -> Option<Result<T>> + Send + 'static,
) -> Result<oneshot::Receiver<Result<T>>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let r = wait(&|| tx.is_closed());
            if let Some(r) = r {
                // Err(r): the future is gone; dropping `r` undoes.
                let _ = tx.send(r);
            }
        })
        .map_err(|e| {
            Error::os(e, "cannot start a helper thread for an async wait").with_name(object)
        })?;
    Ok(rx)
}

/// The result of a helper whose future is still there.
async fn outcome<T>(rx: oneshot::Receiver<Result<T>>, object: &str) -> Result<T> {
    rx.await.unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Io,
            "the helper thread of an async wait ended without an answer",
        )
        .with_name(object))
    })
}

fn label(map: &crate::shm::Mapping) -> String {
    map.name().unwrap_or("(unnamed)").to_string()
}

// ---------------------------------------------------------------- Mutex

/// The owner identity of every async lock taken by this process: a thread
/// that parks for ever (re-created in the child of a `fork`, which does
/// not inherit it).
fn process_owner() -> Result<futex::Me> {
    static OWNER: StdMutex<Option<(u32, futex::Me)>> = StdMutex::new(None);
    let mut o = OWNER.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some((p, me)) = *o {
        if p == pid {
            return Ok(me);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ipckit-lock-owner".into())
        .spawn(move || {
            let _ = tx.send(futex::me());
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| Error::os(e, "cannot start the async lock owner thread"))?;
    let me = rx
        .recv()
        .map_err(|_| Error::new(ErrorKind::Io, "the async lock owner thread ended at start"))?;
    *o = Some((pid, me));
    Ok(me)
}

/// An async mutex shared between processes: the same lock as a blocking
/// [`crate::sync::Mutex`] (and interoperable with it), locked with
/// [`lock().await`](Mutex::lock). See the [module docs](self) for
/// cancellation and ownership.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// let map = Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
/// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
/// let guard = m.lock().await.unwrap().into_guard();
/// assert!(m.try_lock().unwrap().is_none());
/// drop(guard);
/// # }
/// ```
#[derive(Debug)]
pub struct Mutex {
    inner: Arc<blocking::Mutex>,
}

/// The outcome of a successful async lock, as [`crate::sync::Lock`]: you
/// hold the mutex either way, but an [`Abandoned`](Lock::Abandoned) lock
/// was taken over from an owner that died holding it.
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
    fn new(mutex: &'a Mutex, abandoned: bool) -> Lock<'a> {
        let g = MutexGuard { mutex };
        if abandoned {
            Lock::Abandoned(g)
        } else {
            Lock::Acquired(g)
        }
    }

    /// Whether the previous owner died holding the lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
    /// assert!(!m.lock().await.unwrap().is_abandoned());
    /// # }
    /// ```
    pub fn is_abandoned(&self) -> bool {
        matches!(self, Lock::Abandoned(_))
    }

    /// The guard, whichever way the lock was taken.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
    /// let g = m.lock().await.unwrap().into_guard();
    /// drop(g); // unlocks
    /// # }
    /// ```
    pub fn into_guard(self) -> MutexGuard<'a> {
        match self {
            Lock::Acquired(g) | Lock::Abandoned(g) => g,
        }
    }
}

/// Holds an async [`Mutex`] locked; unlocks when dropped. `Send`: the lock
/// belongs to the process, not to a thread (see the [module docs](self)),
/// so it may be held across `.await` in a spawned task.
///
/// ```
/// fn is_send<T: Send>(_: &T) {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
/// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
/// let g = m.lock().await.unwrap().into_guard();
/// is_send(&g);
/// # }
/// ```
#[derive(Debug)]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        self.mutex.inner.unlock_raw();
    }
}

/// A lock taken by a helper thread and not yet handed to its future:
/// unlocks if dropped (the future went away).
struct Held {
    mutex: Arc<blocking::Mutex>,
    abandoned: bool,
}

impl Held {
    /// Hand the lock over to a guard: no unlock here any more.
    fn into_abandoned(self) -> bool {
        let abandoned = self.abandoned;
        std::mem::forget(self);
        abandoned
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.mutex.unlock_raw();
    }
}

impl Mutex {
    /// The async form of `mutex` (named, or placed in a mapping with
    /// [`crate::sync::Mutex::at`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let m = ipckit::sync::tokio::Mutex::new(m);
    /// drop(m.lock().await.unwrap());
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// # }
    /// ```
    pub fn new(mutex: blocking::Mutex) -> Mutex {
        Mutex {
            inner: Arc::new(mutex),
        }
    }

    /// The blocking mutex underneath (its mapping, whether it existed).
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
    /// assert_eq!(m.get_ref().mapping().len(), 8);
    /// ```
    pub fn get_ref(&self) -> &blocking::Mutex {
        &self.inner
    }

    /// Lock, waiting as long as it takes (but never for a dead owner: a
    /// lock held by a process that died is taken over and reported
    /// [`Lock::Abandoned`]). Bound the wait with
    /// [`tokio::time::timeout`]; dropping the future
    /// cancels cleanly (see the [module docs](self)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
    /// let held = m.lock().await.unwrap();
    /// // A second lock waits; the timeout drops (cancels) it.
    /// assert!(tokio::time::timeout(Duration::from_millis(20), m.lock()).await.is_err());
    /// drop(held);
    /// assert!(!m.lock().await.unwrap().is_abandoned());
    /// # }
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub async fn lock(&self) -> Result<Lock<'_>> {
        if let Some(lock) = self.try_lock()? {
            return Ok(lock);
        }
        let me = process_owner()?;
        let mutex = self.inner.clone();
        let name = label(self.inner.mapping());
        let rx = helper("ipckit-async-lock", &name, move |cancelled| {
            match mutex.lock_with(me, None, false, cancelled) {
                Ok(Some(abandoned)) => Some(Ok(Held { mutex, abandoned })),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        })?;
        let held = outcome(rx, &name).await?;
        Ok(Lock::new(self, held.into_abandoned()))
    }

    /// Lock if that needs no waiting: `Ok(None)` when another owner (in
    /// this process or another) holds it. A dead owner's lock is taken over
    /// at once ([`Lock::Abandoned`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m = ipckit::sync::tokio::Mutex::new(ipckit::sync::Mutex::at(map, 0).unwrap());
    /// let g = m.try_lock().unwrap().expect("free");
    /// assert!(m.try_lock().unwrap().is_none());
    /// drop(g);
    /// # }
    /// ```
    pub fn try_lock(&self) -> Result<Option<Lock<'_>>> {
        let me = process_owner()?;
        Ok(self
            .inner
            .try_lock_with(me, false)?
            .map(|abandoned| Lock::new(self, abandoned)))
    }
}

impl From<blocking::Mutex> for Mutex {
    /// [`Mutex::new`].
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let m: ipckit::sync::tokio::Mutex = ipckit::sync::Mutex::at(map, 0).unwrap().into();
    /// ```
    fn from(m: blocking::Mutex) -> Mutex {
        Mutex::new(m)
    }
}

// ---------------------------------------------------------------- Event

/// An async event shared between processes: the same event as a blocking
/// [`crate::sync::Event`], waited for with [`wait().await`](Event::wait).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let opts = ipckit::sync::EventOptions::new().namespace(&ns);
/// let ready = ipckit::sync::tokio::Event::new(opts.create("ready").unwrap());
/// // another process (blocking) sets it
/// opts.open("ready").unwrap().set();
/// ready.wait().await.unwrap();
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("ready").unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Event {
    inner: Arc<blocking::Event>,
}

/// A signal of an auto-reset event taken by a helper thread and not yet
/// handed to its future: sets the event again if dropped.
struct Signal {
    event: Arc<blocking::Event>,
}

impl Signal {
    fn deliver(self) {
        std::mem::forget(self);
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        if !self.event.is_manual_reset() {
            self.event.set();
        }
    }
}

impl Event {
    /// The async form of `event`.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// assert!(!e.is_set());
    /// ```
    pub fn new(event: blocking::Event) -> Event {
        Event {
            inner: Arc::new(event),
        }
    }

    /// The blocking event underneath.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// assert!(!e.get_ref().is_manual_reset());
    /// ```
    pub fn get_ref(&self) -> &blocking::Event {
        &self.inner
    }

    /// Wait until the event is set; an auto-reset event lets this one
    /// waiter through and resets. Dropping the future cancels without
    /// losing the signal (see the [module docs](self)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// assert!(tokio::time::timeout(Duration::from_millis(10), e.wait()).await.is_err());
    /// e.set();
    /// e.wait().await.unwrap();
    /// assert!(!e.is_set()); // auto reset
    /// # }
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub async fn wait(&self) -> Result<()> {
        if self.inner.try_wait() {
            return Ok(());
        }
        let event = self.inner.clone();
        let name = label(&self.inner.map);
        let rx = helper("ipckit-async-event", &name, move |cancelled| {
            match event.wait_with(SLICE, cancelled) {
                Ok(true) => Some(Ok(Signal { event })),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })?;
        outcome(rx, &name).await?.deliver();
        Ok(())
    }

    /// Take the event if it is set, without waiting (see
    /// [`crate::sync::Event::try_wait`]).
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// e.set();
    /// assert!(e.try_wait());
    /// assert!(!e.try_wait());
    /// ```
    pub fn try_wait(&self) -> bool {
        self.inner.try_wait()
    }

    /// Whether the event is set now (taking nothing).
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Set the event (see [`crate::sync::Event::set`]).
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    #[doc(alias = "SetEvent")]
    pub fn set(&self) {
        self.inner.set();
    }

    /// Reset the event (see [`crate::sync::Event::reset`]).
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e = ipckit::sync::tokio::Event::new(ipckit::sync::Event::at(map, 0).unwrap());
    /// e.set();
    /// e.reset();
    /// assert!(!e.is_set());
    /// ```
    #[doc(alias = "ResetEvent")]
    pub fn reset(&self) {
        self.inner.reset();
    }
}

impl From<blocking::Event> for Event {
    /// [`Event::new`].
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let e: ipckit::sync::tokio::Event = ipckit::sync::Event::at(map, 0).unwrap().into();
    /// ```
    fn from(e: blocking::Event) -> Event {
        Event::new(e)
    }
}

// ------------------------------------------------------------ Semaphore

/// An async counting semaphore shared between processes: the same
/// semaphore as a blocking [`crate::sync::Semaphore`], with
/// [`acquire().await`](Semaphore::acquire). As in Win32 (and unlike
/// tokio's permits), a unit taken is given back explicitly with
/// [`release`](Semaphore::release), by any process.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(1).create("slots").unwrap();
/// let s = ipckit::sync::tokio::Semaphore::new(s);
/// s.acquire().await.unwrap();
/// /* use the slot */
/// s.release(1).unwrap();
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("slots").unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Semaphore {
    inner: Arc<blocking::Semaphore>,
}

/// A unit taken by a helper thread and not yet handed to its future:
/// released again if dropped.
struct Unit {
    sem: Arc<blocking::Semaphore>,
}

impl Unit {
    fn deliver(self) {
        std::mem::forget(self);
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        // Full only if others released past the maximum meanwhile: the
        // count is then at its maximum and nothing is lost.
        let _ = self.sem.release(1);
    }
}

impl Semaphore {
    /// The async form of `sem`.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// ipckit::sync::Semaphore::init(&map, 0, 2, 2).unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(ipckit::sync::Semaphore::at(map, 0).unwrap());
    /// assert_eq!(s.count(), 2);
    /// ```
    pub fn new(sem: blocking::Semaphore) -> Semaphore {
        Semaphore {
            inner: Arc::new(sem),
        }
    }

    /// The blocking semaphore underneath.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// # ipckit::sync::Semaphore::init(&map, 0, 0, 3).unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(ipckit::sync::Semaphore::at(map, 0).unwrap());
    /// assert_eq!(s.get_ref().max(), 3);
    /// ```
    pub fn get_ref(&self) -> &blocking::Semaphore {
        &self.inner
    }

    /// Take one unit, waiting as long as it takes. Dropping the future
    /// cancels without losing a unit (see the [module docs](self)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// # ipckit::sync::Semaphore::init(&map, 0, 0, 1).unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(ipckit::sync::Semaphore::at(map, 0).unwrap());
    /// assert!(tokio::time::timeout(Duration::from_millis(10), s.acquire()).await.is_err());
    /// s.release(1).unwrap();
    /// s.acquire().await.unwrap();
    /// assert_eq!(s.count(), 0);
    /// # }
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub async fn acquire(&self) -> Result<()> {
        if self.inner.try_acquire() {
            return Ok(());
        }
        let sem = self.inner.clone();
        let name = label(&self.inner.map);
        let rx = helper("ipckit-async-sem", &name, move |cancelled| {
            match sem.acquire_with(SLICE, cancelled) {
                Ok(true) => Some(Ok(Unit { sem })),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })?;
        outcome(rx, &name).await?.deliver();
        Ok(())
    }

    /// Take one unit if there is one, without waiting; whether it did.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// # ipckit::sync::Semaphore::init(&map, 0, 1, 1).unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(ipckit::sync::Semaphore::at(map, 0).unwrap());
    /// assert!(s.try_acquire());
    /// assert!(!s.try_acquire());
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Give `n` units back (see [`crate::sync::Semaphore::release`]);
    /// returns the previous count.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// # ipckit::sync::Semaphore::init(&map, 0, 0, 2).unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(ipckit::sync::Semaphore::at(map, 0).unwrap());
    /// assert_eq!(s.release(2).unwrap(), 0);
    /// ```
    #[doc(alias = "ReleaseSemaphore")]
    pub fn release(&self, n: u32) -> Result<u32> {
        self.inner.release(n)
    }

    /// The current count.
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let s = ipckit::sync::tokio::Semaphore::new(ipckit::sync::Semaphore::at(map, 0).unwrap());
    /// assert_eq!(s.count(), 0);
    /// ```
    pub fn count(&self) -> u32 {
        self.inner.count()
    }
}

impl From<blocking::Semaphore> for Semaphore {
    /// [`Semaphore::new`].
    ///
    /// ```
    /// # let map = std::sync::Arc::new(ipckit::shm::Mapping::anonymous(8).unwrap());
    /// let s: ipckit::sync::tokio::Semaphore = ipckit::sync::Semaphore::at(map, 0).unwrap().into();
    /// ```
    fn from(s: blocking::Semaphore) -> Semaphore {
        Semaphore::new(s)
    }
}
