//! Async forms of the sync objects on Windows, for tokio applications: a
//! [`Mutex`] whose [`lock`](Mutex::lock) is a future, an [`Event`] with
//! [`wait().await`](Event::wait) and a [`Semaphore`] with
//! [`acquire().await`](Semaphore::acquire) — the same types as on Linux.
//! Each wraps the blocking object of [`crate::sync`] (the system's named
//! object) and interoperates with it and with programs that use the object
//! directly.
//!
//! # How waiting works
//!
//! A wait that cannot finish at once runs on a helper thread of its own
//! (one per pending wait; a `try_*` that succeeds spawns nothing), in
//! `WaitForMultipleObjects` on the object and a cancel event.
//!
//! # Cancellation
//!
//! Dropping a pending future (through [`tokio::time::timeout`] or
//! `select!`) signals the cancel event: the helper stops at once without
//! taking anything. If it had already taken the object when the future
//! went away, it gives it back: the mutex is released, the semaphore unit
//! released, an auto-reset event set again. A dropped future never leaves
//! a mutex locked or loses a unit or a signal.
//!
//! # Mutex ownership
//!
//! A Win32 mutex belongs to the thread that locked it, and only that thread
//! can release it. An async lock belongs to a task that may move between
//! threads, so each async lock is held by a helper thread of its own, which
//! releases it when the guard (which is `Send`) is dropped. Another process
//! sees the lock abandoned when this process dies holding it. Two tasks of
//! one process contend like any two owners (unlike the blocking form, which
//! is recursive per thread).
//!
//! ```
//! use ipckit::sync::{tokio::Mutex, MutexOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let m = Mutex::new(MutexOptions::new().namespace(&ns).open_or_create("jobs").unwrap());
//! {
//!     let lock = m.lock().await.unwrap();
//!     if lock.is_abandoned() { /* previous owner died inside: repair */ }
//! } // released
//! let b = MutexOptions::new().namespace(&ns).open("jobs").unwrap();
//! drop(b.lock().unwrap());
//! # }
//! ```

use std::os::windows::io::{AsHandle, OwnedHandle};
use std::sync::{mpsc, Arc};

use ::tokio::sync::oneshot;

use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::sync as blocking;
use crate::sys::sync::{self as os, Wait};

/// Signals a helper's cancel event when the future waiting for it goes.
struct CancelOnDrop(Arc<OwnedHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = os::set_event(self.0.as_handle());
    }
}

/// Run `wait` on a helper thread named `name`; `wait` gets the cancel
/// event, and its result is sent to the returned receiver. A result that
/// cannot be delivered (the future is gone) is dropped, which is what gives
/// an acquisition back (see the token types below).
fn helper<T: Send + 'static>(
    name: &str,
    object: &str,
    wait: impl FnOnce(&OwnedHandle) -> Option<Result<T>> + Send + 'static,
) -> Result<(oneshot::Receiver<Result<T>>, CancelOnDrop)> {
    let cancel = Arc::new(os::cancel_event().ctx(object, "cannot create a cancel event")?);
    let (tx, rx) = oneshot::channel();
    let c = Arc::clone(&cancel);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(r) = wait(&c) {
                let _ = tx.send(r);
            }
        })
        .map_err(|e| {
            Error::os(e, "cannot start a helper thread for an async wait").with_name(object)
        })?;
    Ok((rx, CancelOnDrop(cancel)))
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

// ---------------------------------------------------------------- Mutex

/// An async mutex shared between processes: the same Win32 mutex as a
/// blocking [`crate::sync::Mutex`], locked with
/// [`lock().await`](Mutex::lock). See the [module docs](self) for
/// cancellation and ownership.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
/// let m = ipckit::sync::tokio::Mutex::new(m);
/// let guard = m.lock().await.unwrap().into_guard();
/// assert!(m.try_lock().unwrap().is_none());
/// drop(guard);
/// # }
/// ```
#[derive(Debug)]
pub struct Mutex {
    inner: Arc<blocking::Mutex>,
}

/// The outcome of a successful async lock (as [`crate::sync::Lock`]).
#[doc(alias = "WAIT_ABANDONED")]
#[must_use = "an abandoned lock means the protected data may be half-updated; look at it"]
#[derive(Debug)]
pub enum Lock<'a> {
    /// Taken normally.
    Acquired(MutexGuard<'a>),
    /// Taken over from an owner that ended holding it.
    Abandoned(MutexGuard<'a>),
}

impl<'a> Lock<'a> {
    fn new(mutex: &'a Mutex, held: Held) -> Lock<'a> {
        let abandoned = held.abandoned;
        let g = MutexGuard {
            _mutex: mutex,
            _held: held,
        };
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
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let m = ipckit::sync::tokio::Mutex::new(m);
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
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let m = ipckit::sync::tokio::Mutex::new(m);
    /// drop(m.lock().await.unwrap().into_guard());
    /// # }
    /// ```
    pub fn into_guard(self) -> MutexGuard<'a> {
        match self {
            Lock::Acquired(g) | Lock::Abandoned(g) => g,
        }
    }
}

/// Holds an async [`Mutex`] locked; releases it when dropped (from any
/// thread: it is `Send`).
#[derive(Debug)]
pub struct MutexGuard<'a> {
    _mutex: &'a Mutex,
    _held: Held,
}

/// The mutex as held by its owner thread: dropping it tells that thread to
/// release the mutex.
#[derive(Debug)]
struct Held {
    _release: mpsc::Sender<()>,
    abandoned: bool,
}

/// A mutex taken by its owner thread: what the lock's holder keeps, and
/// what the owner thread waits on before releasing.
type Taken = (Held, mpsc::Receiver<()>);

/// The owner thread of one async lock: wait for the mutex (or the cancel
/// event, or no wait at all when `try_only`), hand over a [`Held`], and
/// release the mutex once the `Held` is dropped or could not be handed
/// over.
fn own(mutex: Arc<blocking::Mutex>, cancel: Option<&OwnedHandle>) -> Option<Result<Option<Taken>>> {
    let (h, name) = mutex.parts();
    let w = match cancel {
        Some(c) => match os::wait_or_cancel(h, c.as_handle()) {
            Ok(Some(w)) => w,
            Ok(None) => return None,
            Err(e) => {
                return Some(Err(
                    Error::os(e, "cannot wait for the mutex").with_name(name)
                ))
            }
        },
        None => match os::wait(h, Some(std::time::Duration::ZERO)) {
            Ok(w) => w,
            Err(e) => {
                return Some(Err(
                    Error::os(e, "cannot wait for the mutex").with_name(name)
                ))
            }
        },
    };
    let abandoned = match w {
        Wait::Signalled => false,
        Wait::Abandoned => true,
        Wait::TimedOut => return Some(Ok(None)),
    };
    let (tx, rx) = mpsc::channel();
    Some(Ok(Some((
        Held {
            _release: tx,
            abandoned,
        },
        rx,
    ))))
}

/// Run [`own`] on a new owner thread: it sends its outcome on `out`, then
/// (holding the mutex) waits until the `Held` goes and releases.
fn start_owner(
    mutex: Arc<blocking::Mutex>,
    cancel: Option<Arc<OwnedHandle>>,
    out: impl FnOnce(Result<Option<Held>>) -> bool + Send + 'static,
) -> Result<()> {
    let name = mutex.parts().1.to_string();
    std::thread::Builder::new()
        .name("ipckit-async-lock".into())
        .spawn(move || {
            let Some(r) = own(Arc::clone(&mutex), cancel.as_deref()) else {
                return;
            };
            match r {
                Ok(Some((held, released))) => {
                    // Not delivered: give the mutex back at once.
                    if out(Ok(Some(held))) {
                        // Returns once the Held (its sender) is dropped.
                        let _ = released.recv();
                    }
                    let _ = os::release_mutex(mutex.parts().0);
                }
                other => {
                    out(other.map(|o| o.map(|(h, _)| h)));
                }
            }
        })
        .map_err(|e| Error::os(e, "cannot start the async lock's owner thread").with_name(&name))?;
    Ok(())
}

impl Mutex {
    /// Wrap a blocking mutex (see [`crate::sync::MutexOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let _m = ipckit::sync::tokio::Mutex::new(m);
    /// ```
    pub fn new(mutex: blocking::Mutex) -> Mutex {
        Mutex {
            inner: Arc::new(mutex),
        }
    }

    /// The blocking mutex inside.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let m = ipckit::sync::tokio::Mutex::new(m);
    /// assert!(!m.get_ref().existed());
    /// ```
    pub fn get_ref(&self) -> &blocking::Mutex {
        &self.inner
    }

    /// Lock, waiting as long as it takes without blocking the runtime (and
    /// never for a dead owner: that lock is [`Lock::Abandoned`]).
    /// Cancel-safe: see the [module docs](self).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let m = ipckit::sync::tokio::Mutex::new(m);
    /// let _lock = m.lock().await.unwrap();
    /// # }
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub async fn lock(&self) -> Result<Lock<'_>> {
        let name = self.inner.parts().1.to_string();
        let cancel = Arc::new(os::cancel_event().ctx(&name, "cannot create a cancel event")?);
        let guard = CancelOnDrop(Arc::clone(&cancel));
        let (tx, rx) = oneshot::channel();
        start_owner(Arc::clone(&self.inner), Some(cancel), move |r| {
            tx.send(r).is_ok()
        })?;
        let r = outcome(rx, &name).await;
        drop(guard);
        match r? {
            Some(held) => Ok(Lock::new(self, held)),
            None => Err(
                Error::new(ErrorKind::Io, "the async lock ended without the mutex")
                    .with_name(&name),
            ),
        }
    }

    /// Lock if free now: `None` if another owner holds it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::sync::MutexOptions::new().namespace(&ns).create("m").unwrap();
    /// let m = ipckit::sync::tokio::Mutex::new(m);
    /// let held = m.try_lock().unwrap();
    /// assert!(held.is_some());
    /// assert!(m.try_lock().unwrap().is_none());
    /// # }
    /// ```
    pub fn try_lock(&self) -> Result<Option<Lock<'_>>> {
        let name = self.inner.parts().1.to_string();
        let (tx, rx) = mpsc::channel();
        start_owner(Arc::clone(&self.inner), None, move |r| tx.send(r).is_ok())?;
        // The owner thread answers after one zero-timeout wait.
        let r = rx.recv().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Io,
                "the async lock's owner thread ended without an answer",
            )
            .with_name(&name))
        })?;
        Ok(r.map(|held| Lock::new(self, held)))
    }
}

impl From<blocking::Mutex> for Mutex {
    fn from(m: blocking::Mutex) -> Mutex {
        Mutex::new(m)
    }
}

// ---------------------------------------------------------------- Event

/// An async event shared between processes: the same Win32 event as a
/// blocking [`crate::sync::Event`], waited for with
/// [`wait().await`](Event::wait).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
/// let e = ipckit::sync::tokio::Event::new(e);
/// e.set();
/// e.wait().await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Event {
    inner: Arc<blocking::Event>,
}

/// A signal taken by a helper; dropping it undelivered sets an auto-reset
/// event again.
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
    /// Wrap a blocking event (see [`crate::sync::EventOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// let _e = ipckit::sync::tokio::Event::new(e);
    /// ```
    pub fn new(event: blocking::Event) -> Event {
        Event {
            inner: Arc::new(event),
        }
    }

    /// The blocking event inside.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// let e = ipckit::sync::tokio::Event::new(e);
    /// assert!(!e.get_ref().is_manual_reset());
    /// ```
    pub fn get_ref(&self) -> &blocking::Event {
        &self.inner
    }

    /// Wait until the event is set, without blocking the runtime (an
    /// auto-reset event is reset by the wait that takes it). Cancel-safe:
    /// a signal taken for a dropped future is given back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// let e = ipckit::sync::tokio::Event::new(e);
    /// e.set();
    /// e.wait().await.unwrap();
    /// assert!(!e.is_set());
    /// # }
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub async fn wait(&self) -> Result<()> {
        if self.inner.try_wait() {
            return Ok(());
        }
        let event = Arc::clone(&self.inner);
        let name = self.inner.parts().1.to_string();
        let (rx, _cancel) = helper("ipckit-async-event", &name, move |cancel| {
            let (h, name) = event.parts();
            match os::wait_or_cancel(h, cancel.as_handle()) {
                Ok(Some(_)) => Some(Ok(Signal {
                    event: Arc::clone(&event),
                })),
                Ok(None) => None,
                Err(e) => Some(Err(
                    Error::os(e, "cannot wait for the event").with_name(name)
                )),
            }
        })?;
        outcome(rx, &name).await?.deliver();
        Ok(())
    }

    /// Take the event if it is set now (as the blocking `try_wait`).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// let e = ipckit::sync::tokio::Event::new(e);
    /// assert!(!e.try_wait());
    /// ```
    pub fn try_wait(&self) -> bool {
        self.inner.try_wait()
    }

    /// Whether the event is set (a snapshot).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// let e = ipckit::sync::tokio::Event::new(e);
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Set the event, waking waiters here and in other processes.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// ipckit::sync::tokio::Event::new(e).set();
    /// ```
    #[doc(alias = "SetEvent")]
    pub fn set(&self) {
        self.inner.set();
    }

    /// Reset the event.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::sync::EventOptions::new().namespace(&ns).create("go").unwrap();
    /// let e = ipckit::sync::tokio::Event::new(e);
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
    fn from(e: blocking::Event) -> Event {
        Event::new(e)
    }
}

// ------------------------------------------------------------ Semaphore

/// An async counting semaphore shared between processes: the same Win32
/// semaphore as a blocking [`crate::sync::Semaphore`], taken with
/// [`acquire().await`](Semaphore::acquire).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(1).create("s").unwrap();
/// let s = ipckit::sync::tokio::Semaphore::new(s);
/// s.acquire().await.unwrap();
/// assert_eq!(s.count(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct Semaphore {
    inner: Arc<blocking::Semaphore>,
}

/// A unit taken by a helper; dropping it undelivered releases it again.
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
    /// Wrap a blocking semaphore (see [`crate::sync::SemaphoreOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// let _s = ipckit::sync::tokio::Semaphore::new(s);
    /// ```
    pub fn new(sem: blocking::Semaphore) -> Semaphore {
        Semaphore {
            inner: Arc::new(sem),
        }
    }

    /// The blocking semaphore inside.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(s);
    /// assert_eq!(s.get_ref().count(), 0);
    /// ```
    pub fn get_ref(&self) -> &blocking::Semaphore {
        &self.inner
    }

    /// Take one unit, waiting without blocking the runtime. Cancel-safe: a
    /// unit taken for a dropped future is released again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(s);
    /// s.release(1).unwrap();
    /// s.acquire().await.unwrap();
    /// # }
    /// ```
    #[doc(alias = "WaitForSingleObject")]
    pub async fn acquire(&self) -> Result<()> {
        if self.inner.try_acquire() {
            return Ok(());
        }
        let sem = Arc::clone(&self.inner);
        let name = self.inner.parts().1.to_string();
        let (rx, _cancel) = helper("ipckit-async-sem", &name, move |cancel| {
            let (h, name) = sem.parts();
            match os::wait_or_cancel(h, cancel.as_handle()) {
                Ok(Some(_)) => Some(Ok(Unit {
                    sem: Arc::clone(&sem),
                })),
                Ok(None) => None,
                Err(e) => Some(Err(
                    Error::os(e, "cannot wait for the semaphore").with_name(name)
                )),
            }
        })?;
        outcome(rx, &name).await?.deliver();
        Ok(())
    }

    /// Take one unit if there is one now.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(s);
    /// assert!(!s.try_acquire());
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Release `n` units; the count before.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).create("s").unwrap();
    /// let s = ipckit::sync::tokio::Semaphore::new(s);
    /// assert_eq!(s.release(2).unwrap(), 0);
    /// ```
    #[doc(alias = "ReleaseSemaphore")]
    pub fn release(&self, n: u32) -> Result<u32> {
        self.inner.release(n)
    }

    /// The current count (a snapshot).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::sync::SemaphoreOptions::new().namespace(&ns).initial(3).create("s").unwrap();
    /// assert_eq!(ipckit::sync::tokio::Semaphore::new(s).count(), 3);
    /// ```
    pub fn count(&self) -> u32 {
        self.inner.count()
    }
}

impl From<blocking::Semaphore> for Semaphore {
    fn from(s: blocking::Semaphore) -> Semaphore {
        Semaphore::new(s)
    }
}
