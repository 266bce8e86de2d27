//! Async mailslots on Windows, for tokio applications: a reader
//! [`Mailslot`] with [`recv().await`](Mailslot::recv) and a writer
//! [`MailslotWriter`] with [`send().await`](MailslotWriter::send), over the
//! system's mailslots — the same types as on Linux, without broadcast
//! groups. They interoperate with the blocking types and with programs that
//! use the mailslot directly.
//!
//! # How waiting works
//!
//! A mailslot has no readiness to wait on, so while any
//! [`recv`](Mailslot::recv) is pending, a reading thread (one per async
//! mailslot) reads with short timeouts, puts each message in the async
//! mailslot's queue and wakes the reads; it stops when no read is pending.
//! A write to a mailslot never waits for the reader (the system queues
//! it), so [`send`](MailslotWriter::send) completes at once.
//!
//! # Cancellation
//!
//! A dropped [`Mailslot::recv`] future loses no message: the reading
//! thread never hands a message to a future, only to the queue, from which
//! a read takes it in the same step that returns it. Messages stay in the
//! order the mailslot delivered them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use ipckit::mailslot::{tokio::Mailslot, MailslotOptions, WriterOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let slot = Mailslot::new(MailslotOptions::new().namespace(&ns).create("jobs").unwrap());
//! let mut w = WriterOptions::new().namespace(&ns).open_async("jobs").await.unwrap();
//! w.send(b"rebuild index").await.unwrap();
//! assert_eq!(slot.recv().await.unwrap(), b"rebuild index");
//! # }
//! ```

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::tokio::sync::Notify;

use super::WriterOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::mailslot as blocking;

/// How long one read of the reading thread waits before it looks whether
/// any read is still pending.
const SLICE: Duration = Duration::from_millis(50);

/// A mailslot's reading end, read with [`recv().await`](Mailslot::recv):
/// the async form of [`crate::mailslot::Mailslot`], which it wraps.
/// Dropping it closes the mailslot as dropping the blocking one does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::mailslot::{tokio::Mailslot, MailslotOptions, WriterOptions};
/// let slot: Mailslot = MailslotOptions::new().namespace(&ns).create("m").unwrap().into();
/// WriterOptions::new().namespace(&ns).open("m").unwrap().send(b"hi").unwrap();
/// assert_eq!(slot.recv().await.unwrap(), b"hi");
/// # }
/// ```
#[derive(Debug)]
pub struct Mailslot {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    slot: blocking::Mailslot,
    state: Mutex<State>,
    /// Told when a message (or a failure) is put in `state`.
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Messages the reading thread took, oldest first.
    kept: VecDeque<Vec<u8>>,
    /// A failure of the reading thread, for the next reader.
    failed: Option<Error>,
    /// Pending reads.
    waiters: usize,
    /// The reading thread runs.
    reading: bool,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One pending read, counted while it exists.
struct Waiting<'a>(&'a Arc<Shared>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state().waiters -= 1;
    }
}

/// The reading thread: read in slices while any read is pending, putting
/// each message in `kept`; stop when none is (decided under the lock a new
/// reader takes to start it).
fn read_loop(shared: &Shared) {
    loop {
        {
            let mut st = shared.state();
            if st.waiters == 0 {
                st.reading = false;
                return;
            }
        }
        match shared.slot.recv_timeout(SLICE) {
            Ok(m) => shared.state().kept.push_back(m),
            Err(e) if e.kind() == ErrorKind::Timeout => continue,
            Err(e) => {
                let mut st = shared.state();
                st.failed = Some(e);
                st.reading = false;
                drop(st);
                shared.arrived.notify_waiters();
                return;
            }
        }
        shared.arrived.notify_waiters();
    }
}

impl From<blocking::Mailslot> for Mailslot {
    fn from(slot: blocking::Mailslot) -> Mailslot {
        Mailslot::new(slot)
    }
}

impl Mailslot {
    /// Wrap a blocking mailslot (see [`crate::mailslot::MailslotOptions`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let _s = ipckit::mailslot::tokio::Mailslot::new(s);
    /// ```
    pub fn new(slot: blocking::Mailslot) -> Mailslot {
        Mailslot {
            inner: Arc::new(Shared {
                slot,
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
            }),
        }
    }

    /// Create a mailslot with default options.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let s = ipckit::mailslot::tokio::Mailslot::create("box").unwrap();
    /// assert_eq!(s.get_ref().name(), "box");
    /// ```
    #[doc(alias = "CreateMailslot")]
    pub fn create(name: &str) -> Result<Mailslot> {
        blocking::Mailslot::create(name).map(Mailslot::new)
    }

    /// The blocking mailslot inside.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let s = ipckit::mailslot::tokio::Mailslot::new(s);
    /// assert_eq!(s.get_ref().name(), "m");
    /// ```
    pub fn get_ref(&self) -> &blocking::Mailslot {
        &self.inner.slot
    }

    /// Read the next message, waiting up to the read timeout set at
    /// creation ([`ErrorKind::Timeout`] then), without blocking the
    /// runtime. Cancel-safe (see the [module docs](self)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::mailslot::{tokio::Mailslot, MailslotOptions, WriterOptions};
    /// let s = Mailslot::new(MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// WriterOptions::new().namespace(&ns).open("m").unwrap().send(b"x").unwrap();
    /// assert_eq!(s.recv().await.unwrap(), b"x");
    /// # }
    /// ```
    #[doc(alias = "ReadFile")]
    pub async fn recv(&self) -> Result<Vec<u8>> {
        match self.inner.slot.read_timeout() {
            None => self.next().await,
            Some(t) => self.recv_timeout(t).await,
        }
    }

    /// Read the next message, waiting at most `timeout` whatever the read
    /// timeout set at creation ([`ErrorKind::Timeout`] then).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::mailslot::{tokio::Mailslot, MailslotOptions};
    /// let s = Mailslot::new(MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// let e = s.recv_timeout(std::time::Duration::from_millis(5)).await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// # }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        ::tokio::time::timeout(timeout, self.next())
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no message arrived within {timeout:?}; wait longer or check the writers"
                    ),
                )
                .with_name(self.inner.slot.name()))
            })
    }

    /// Read the next message if one is queued, without waiting; `Ok(None)`
    /// if none is. While an async read is pending, its reading thread takes
    /// the messages, and this returns those it has taken.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let s = ipckit::mailslot::tokio::Mailslot::new(s);
    /// assert_eq!(s.try_recv().unwrap(), None);
    /// ```
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>> {
        let mut st = self.inner.state();
        Self::take(&mut st, &self.inner.slot)
    }

    /// What `st` holds, else (no reading thread running, so no message
    /// can overtake) what the mailslot holds now.
    fn take(st: &mut State, slot: &blocking::Mailslot) -> Result<Option<Vec<u8>>> {
        if let Some(m) = st.kept.pop_front() {
            return Ok(Some(m));
        }
        if let Some(e) = st.failed.take() {
            return Err(e);
        }
        if st.reading {
            return Ok(None);
        }
        slot.try_recv()
    }

    /// Take a message, starting the reading thread and waiting for it when
    /// none is there. Dropping this future leaves every message the thread
    /// took for the next read.
    async fn next(&self) -> Result<Vec<u8>> {
        let shared = &self.inner;
        let _waiting = {
            let mut st = shared.state();
            if let Some(m) = Self::take(&mut st, &shared.slot)? {
                return Ok(m);
            }
            st.waiters += 1;
            let w = Waiting(shared);
            if !st.reading {
                st.reading = true;
                let s = Arc::clone(shared);
                let started = std::thread::Builder::new()
                    .name("ipckit-async-slot".into())
                    .spawn(move || read_loop(&s));
                if let Err(e) = started {
                    st.reading = false;
                    // Uncounted here: `w`'s drop would take the lock held.
                    st.waiters -= 1;
                    std::mem::forget(w);
                    return Err(Error::os(e, "cannot start the async reading thread")
                        .with_name(shared.slot.name()));
                }
            }
            w
        };
        loop {
            // Registered before looking, so a message put in between still
            // wakes this read.
            let mut arrived = pin!(shared.arrived.notified());
            arrived.as_mut().enable();
            {
                let mut st = shared.state();
                if let Some(m) = st.kept.pop_front() {
                    return Ok(m);
                }
                if let Some(e) = st.failed.take() {
                    return Err(e);
                }
            }
            arrived.await;
        }
    }
}

/// The writing end of a mailslot, from async code: the async form of
/// [`crate::mailslot::MailslotWriter`]. A mailslot write never waits for
/// the reader, so [`send`](MailslotWriter::send) completes at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::mailslot::{MailslotOptions, WriterOptions};
/// let slot = MailslotOptions::new().namespace(&ns).create("m").unwrap();
/// let mut w = WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
/// w.send(b"hi").await.unwrap();
/// assert_eq!(slot.recv().unwrap(), b"hi");
/// # }
/// ```
#[derive(Debug)]
pub struct MailslotWriter {
    inner: blocking::MailslotWriter,
}

impl WriterOptions {
    /// Open the mailslot `name` for writing from async code (opening does
    /// not wait: the mailslot exists or not).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::mailslot::WriterOptions::new().namespace(&ns)
    ///     .open_async("absent").await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn open_async(&self, name: &str) -> Result<MailslotWriter> {
        self.open(name).map(|inner| MailslotWriter { inner })
    }
}

impl MailslotWriter {
    /// Open the mailslot `name` in the default namespace.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let _slot = ipckit::mailslot::Mailslot::create("box").unwrap();
    /// let w = ipckit::mailslot::tokio::MailslotWriter::open("box").await.unwrap();
    /// assert_eq!(w.name(), "box");
    /// # }
    /// ```
    pub async fn open(name: &str) -> Result<MailslotWriter> {
        WriterOptions::new().open_async(name).await
    }

    /// The mailslot's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
    /// assert_eq!(w.name(), "m");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The largest message this mailslot takes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns)
    ///     .max_message_size(100).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
    /// assert_eq!(w.max_message_size(), 100);
    /// # }
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size()
    }

    /// Write one message (as [`crate::mailslot::MailslotWriter::send`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let mut w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
    /// w.send(b"x").await.unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"x");
    /// # }
    /// ```
    #[doc(alias = "WriteFile")]
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.inner.send(msg)
    }
}
