//! Async mailslots, for tokio applications: a reader [`Mailslot`] with
//! [`recv().await`](Mailslot::recv) and a writer [`MailslotWriter`] with
//! [`send().await`](MailslotWriter::send). They speak the same protocol as
//! the blocking [`crate::mailslot`] types: an async reader takes messages
//! from blocking writers and the other way round. Broadcast groups and UDP
//! readers work the same way: wrap the mailslot returned by
//! [`MailslotOptions::join_group`](super::MailslotOptions::join_group) or by
//! a [`MailslotOptions::udp`](super::MailslotOptions::udp) creation, and
//! write to a group with [`send_to_group`].
//!
//! # Cancellation
//!
//! - A dropped [`Mailslot::recv`] future loses no message: a message is
//!   taken off the queue only in the same step that returns it, so it is
//!   either returned or still queued for the next read.
//! - A dropped [`MailslotWriter::send`] future keeps its progress in the
//!   writer: the part of the message already written stays counted, and the
//!   next `send` first completes that message and reads its
//!   acknowledgement (discarding it) before writing its own. A cancelled
//!   send may therefore still deliver its message (as a blocking send that
//!   timed out may have), but the writer never writes half a message and
//!   never confuses one message's acknowledgement with another's.
//!
//! Process A (the reader, async):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use ipckit::mailslot::{tokio::Mailslot, MailslotOptions, WriterOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let slot = Mailslot::new(MailslotOptions::new().namespace(&ns).create("jobs").unwrap());
//! // process B (a writer, async here; a blocking one works the same)
//! let mut w = WriterOptions::new().namespace(&ns).open_async("jobs").await.unwrap();
//! w.send(b"rebuild index").await.unwrap();
//! assert_eq!(slot.recv().await.unwrap(), b"rebuild index");
//! # }
//! ```

use std::pin::pin;
use std::time::Duration;

use ::tokio::time::Instant;

use super::{
    ack_outcome, check_writable, group_members, wire, write_frame, GroupDelivery, WriterOptions,
    ACK_GRACE, HELLO_WAIT,
};
use crate::conn::async_io::{within, AsyncSocket};
use crate::conn::dial::Dialer;
use crate::error::{Error, ErrorKind, Result};
use crate::mailslot as blocking;
use crate::name::{validate_name, Namespace};

/// A mailslot's reading end, read with [`recv().await`](Mailslot::recv):
/// the async form of [`crate::mailslot::Mailslot`], which it wraps (create
/// that with its options, then convert it with [`Mailslot::new`] or
/// `From`). Dropping it removes the mailslot as dropping the blocking one
/// does.
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
    inner: blocking::Mailslot,
}

impl From<blocking::Mailslot> for Mailslot {
    fn from(slot: blocking::Mailslot) -> Mailslot {
        Mailslot::new(slot)
    }
}

impl Mailslot {
    /// Read `slot` asynchronously (a plain mailslot, a group member or one
    /// that also listens on UDP).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let member = ipckit::mailslot::MailslotOptions::new().namespace(&ns).join_group("news").unwrap();
    /// let slot = ipckit::mailslot::tokio::Mailslot::new(member);
    /// assert!(slot.get_ref().name().starts_with("news.group/"));
    /// ```
    pub fn new(slot: blocking::Mailslot) -> Mailslot {
        Mailslot { inner: slot }
    }

    /// Create the mailslot `name` with default options in the namespace
    /// from the environment (see [`crate::mailslot::Mailslot::create`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let slot = ipckit::mailslot::tokio::Mailslot::create("box").unwrap();
    /// assert_eq!(slot.get_ref().name(), "box");
    /// ```
    #[doc(alias = "CreateMailslot")]
    pub fn create(name: &str) -> Result<Mailslot> {
        blocking::Mailslot::create(name).map(Mailslot::new)
    }

    /// The blocking mailslot (its name, [`pending`](blocking::Mailslot::pending)
    /// count, UDP address...).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::tokio::Mailslot::new(
    ///     ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// assert_eq!(slot.get_ref().pending().count, 0);
    /// ```
    pub fn get_ref(&self) -> &blocking::Mailslot {
        &self.inner
    }

    /// The blocking mailslot back.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::tokio::Mailslot::new(
    ///     ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// let blocking: ipckit::mailslot::Mailslot = slot.into_inner();
    /// assert_eq!(blocking.name(), "m");
    /// ```
    pub fn into_inner(self) -> blocking::Mailslot {
        self.inner
    }

    /// Read the next message (`ReadFile`), waiting up to the read timeout
    /// set at creation ([`MailslotOptions::read_timeout`](super::MailslotOptions::read_timeout);
    /// by default as long as it takes); [`ErrorKind::Timeout`] if none came.
    /// Several tasks may wait at once; each message goes to one of them.
    ///
    /// Cancel safe: dropping the future loses no message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let slot = ipckit::mailslot::tokio::Mailslot::new(
    ///     ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// // Nothing yet: give up after a while (the future is dropped).
    /// assert!(tokio::time::timeout(Duration::from_millis(10), slot.recv()).await.is_err());
    /// ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap().send(b"x").unwrap();
    /// assert_eq!(slot.recv().await.unwrap(), b"x");
    /// # }
    /// ```
    #[doc(alias = "ReadFile")]
    pub async fn recv(&self) -> Result<Vec<u8>> {
        match self.inner.read_timeout {
            None => Ok(self.next().await),
            Some(t) => self.recv_timeout(t).await,
        }
    }

    /// Read the next message, waiting at most `timeout` whatever the read
    /// timeout set at creation; [`ErrorKind::Timeout`] if none came. A
    /// queued message is returned even with a zero timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::tokio::Mailslot::new(
    ///     ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// let e = slot.recv_timeout(std::time::Duration::from_millis(5)).await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// # }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        ::tokio::time::timeout(timeout, self.next())
            .await
            .map_err(|_| self.inner.shared.timed_out(timeout))
    }

    /// Read the next message if one is queued, without waiting; `Ok(None)`
    /// if none is.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::tokio::Mailslot::new(
    ///     ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap());
    /// assert_eq!(slot.try_recv().unwrap(), None);
    /// ```
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>> {
        self.inner.try_recv()
    }

    /// Wait for the next message. The only step that changes the queue
    /// is `take`, which returns what it took: a dropped future took
    /// nothing.
    async fn next(&self) -> Vec<u8> {
        let shared = &self.inner.shared;
        loop {
            // Registered before looking, so a message queued between the
            // look and the wait still wakes us.
            let mut arrived = pin!(shared.arrived.notified());
            arrived.as_mut().enable();
            if let Some(m) = shared.take() {
                return m;
            }
            arrived.await;
        }
    }
}

/// A message being written by a [`MailslotWriter`]: its progress survives a
/// dropped `send` future (see the [module docs](self#cancellation)).
#[derive(Debug)]
struct InFlight {
    /// The whole write request.
    frame: Vec<u8>,
    /// Bytes of `frame` written.
    sent: usize,
    ack: [u8; wire::ACK_LEN],
    /// Bytes of `ack` read.
    got: usize,
    /// When the acknowledgement must have arrived (set once `frame` is
    /// written; `None` for a writer that waits for ever).
    deadline: Option<Instant>,
}

/// A writer to one mailslot, writing with [`send().await`](MailslotWriter::send):
/// the async form of [`crate::mailslot::MailslotWriter`]. Open it with
/// [`WriterOptions::open_async`] (or [`MailslotWriter::open`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::mailslot::{MailslotOptions, WriterOptions};
/// let slot = MailslotOptions::new().namespace(&ns).max_message_size(4).create("m").unwrap();
/// let mut w = WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
/// assert_eq!(w.send(b"too long").await.unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
/// w.send(b"ok").await.unwrap();
/// assert_eq!(slot.recv().unwrap(), b"ok");
/// # }
/// ```
#[derive(Debug)]
pub struct MailslotWriter {
    name: String,
    sock: AsyncSocket,
    max_message: usize,
    timeout: Option<Duration>,
    broken: bool,
    in_flight: Option<InFlight>,
}

impl WriterOptions {
    /// Open the mailslot `name` for writing from async code (see
    /// [`WriterOptions::open`]): the connection is registered with the
    /// calling task's tokio runtime, and waiting for the mailslot's hello
    /// does not block the runtime.
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
        validate_name(name)?;
        let ns = self.ns()?;
        open_in(self, &ns, name).await
    }

    /// Write `msg` to every live member of the broadcast group `group` on
    /// this machine from async code; see [`WriterOptions::send_to_group`].
    /// The members are written one after the other.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::mailslot::{tokio::Mailslot, MailslotOptions, WriterOptions};
    /// let a = Mailslot::new(MailslotOptions::new().namespace(&ns).join_group("news").unwrap());
    /// let b = Mailslot::new(MailslotOptions::new().namespace(&ns).join_group("news").unwrap());
    /// let sent = WriterOptions::new().namespace(&ns).send_to_group_async("news", b"hi").await.unwrap();
    /// assert_eq!(sent.delivered, 2);
    /// assert_eq!(a.recv().await.unwrap(), b"hi");
    /// assert_eq!(b.recv().await.unwrap(), b"hi");
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn send_to_group_async(&self, group: &str, msg: &[u8]) -> Result<GroupDelivery> {
        validate_name(group)?;
        let ns = self.ns()?;
        let mut out = GroupDelivery::default();
        for member in group_members(&ns, group, &mut out)? {
            let r = match open_in(self, &ns, &member).await {
                Ok(mut w) => w.send(msg).await,
                Err(e) => Err(e),
            };
            out.count(r);
        }
        Ok(out)
    }
}

/// [`WriterOptions::send_to_group_async`] in the namespace from the
/// environment, with the default timeout.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let m = ipckit::mailslot::MailslotOptions::new().join_group("all").unwrap();
/// assert_eq!(ipckit::mailslot::tokio::send_to_group("all", b"hey").await.unwrap().delivered, 1);
/// assert_eq!(m.recv().unwrap(), b"hey");
/// # }
/// ```
pub async fn send_to_group(group: &str, msg: &[u8]) -> Result<GroupDelivery> {
    WriterOptions::new().send_to_group_async(group, msg).await
}

/// Connect to the mailslot `name` of `ns` and read its hello without
/// blocking the runtime.
async fn open_in(opts: &WriterOptions, ns: &Namespace, name: &str) -> Result<MailslotWriter> {
    let dialer = Dialer {
        name,
        what: "mailslot",
        namespace: Some(ns),
        timeout: Duration::ZERO,
        tcp: false,
        trust: &opts.trust,
    };
    // One attempt (a zero timeout never sleeps); the hello is read below.
    let fd = dialer.run(|d| Ok(d.fd))?;
    let sock = AsyncSocket::new(fd).map_err(|e| {
        Error::os(e, "cannot register the connection with the tokio runtime").with_name(name)
    })?;
    let mut h = [0u8; wire::HELLO_LEN];
    match within(Some(HELLO_WAIT), sock.recv_exact(&mut h)).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::new(
                ErrorKind::PeerGone,
                "the mailslot closed the connection during the handshake; it may be shutting down or refusing writers",
            )
            .with_name(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(Error::new(
                ErrorKind::Timeout,
                "the mailslot accepted the connection but sent no complete hello in time; it may be hung",
            )
            .with_name(name))
        }
        Err(e) => return Err(Error::os(e, "handshake failed").with_name(name)),
    }
    let max = wire::parse_hello(&h, name)?;
    Ok(MailslotWriter {
        name: name.to_string(),
        sock,
        max_message: if max == 0 {
            super::UNLIMITED_CAP
        } else {
            max as usize
        },
        timeout: opts.timeout,
        broken: false,
        in_flight: None,
    })
}

impl MailslotWriter {
    /// Open `name` in the namespace from the environment, with the default
    /// write timeout (see [`WriterOptions::open_async`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let slot = ipckit::mailslot::Mailslot::create("box").unwrap();
    /// let mut w = ipckit::mailslot::tokio::MailslotWriter::open("box").await.unwrap();
    /// w.send(b"hi").await.unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"hi");
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
    /// # let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
    /// assert_eq!(w.name(), "m");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message the mailslot accepts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).max_message_size(9).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open_async("m").await.unwrap();
    /// assert_eq!(w.max_message_size(), 9);
    /// # }
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.max_message
    }

    /// Write one message (`WriteFile`), waiting for queue space up to the
    /// writer's timeout, as [`crate::mailslot::MailslotWriter::send`]:
    /// returns once the reader has queued the message whole. Errors:
    /// [`ErrorKind::TooLarge`] (nothing sent), [`ErrorKind::Full`] (the
    /// queue stayed full; the message was not queued),
    /// [`ErrorKind::PeerGone`] (the reader went away), [`ErrorKind::Timeout`]
    /// (no acknowledgement in time; the writer is then unusable).
    ///
    /// Dropping the future keeps the writer usable; the next `send` first
    /// completes the dropped one (see the [module docs](self#cancellation)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).queue_bound(1).create("m").unwrap();
    /// let mut w = ipckit::mailslot::WriterOptions::new()
    ///     .namespace(&ns).timeout(Duration::from_millis(20)).open_async("m").await.unwrap();
    /// w.send(b"1").await.unwrap();
    /// assert_eq!(w.send(b"2").await.unwrap_err().kind(), ipckit::ErrorKind::Full);
    /// assert_eq!(slot.recv().unwrap(), b"1");
    /// w.send(b"3").await.unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"3");
    /// # }
    /// ```
    #[doc(alias = "WriteFile")]
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.in_flight.is_some() && !self.broken {
            // A send whose future was dropped: finish it first (its
            // outcome had no one to tell).
            self.finish().await?;
        }
        check_writable(&self.name, self.broken, msg.len(), self.max_message)?;
        self.in_flight = Some(InFlight {
            frame: write_frame(msg, self.timeout),
            sent: 0,
            ack: [0; wire::ACK_LEN],
            got: 0,
            deadline: None,
        });
        let status = self.finish().await?;
        let (r, broken) = ack_outcome(&self.name, status, msg.len(), self.timeout);
        self.broken |= broken;
        r
    }

    /// Drive the message in flight to its acknowledgement's status. An
    /// error leaves the writer broken; a dropped future leaves the
    /// progress in `in_flight`.
    async fn finish(&mut self) -> Result<u8> {
        let r = self.drive().await;
        if r.is_err() {
            self.broken = true;
            self.in_flight = None;
        }
        r
    }

    async fn drive(&mut self) -> Result<u8> {
        let MailslotWriter {
            name,
            sock,
            timeout,
            in_flight,
            ..
        } = self;
        let p = in_flight.as_mut().expect("a message in flight");
        let gone = || {
            Error::new(
                ErrorKind::PeerGone,
                "the mailslot's reader went away; the message was not queued",
            )
            .with_name(name.as_str())
        };
        while p.sent < p.frame.len() {
            p.sent += sock
                .send_some(&p.frame[p.sent..])
                .await
                .map_err(|_| gone())?;
        }
        if p.deadline.is_none() {
            p.deadline = timeout.map(|t| Instant::now() + t + ACK_GRACE);
        }
        while p.got < wire::ACK_LEN {
            let left = p
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            match within(left, sock.recv_some(&mut p.ack[p.got..])).await {
                Ok(0) => return Err(gone()),
                Ok(n) => p.got += n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "the mailslot's reader did not acknowledge the write in time (is it stopped?); whether the message was queued is unknown",
                    )
                    .with_name(name.as_str()))
                }
                Err(_) => return Err(gone()),
            }
        }
        let status = p.ack[0];
        *in_flight = None;
        Ok(status)
    }
}
