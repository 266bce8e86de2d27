//! Async window messages, for tokio applications: a [`Receiver`] whose
//! messages are taken with [`recv().await`](Receiver::recv) and answered
//! with [`Incoming::reply`], and a [`Window`] (the sender's `HWND`) with
//! [`send().await`](Window::send) and [`post().await`](Window::post). Both
//! speak the protocol of the blocking [`crate::message`] types: an async
//! receiver serves blocking senders and the other way round.
//!
//! Win32 semantics are kept: [`Receiver::recv`] hands out sent messages
//! ahead of posted ones still queued, posted ones in queue order; the
//! reply to a sent message goes back to its sender's pending `send`. A
//! receiver may take several messages before answering them (each answer
//! goes to its own sender); to handle them one at a time as a window
//! procedure does, answer each before the next `recv`.
//!
//! # Cancellation
//!
//! - A dropped [`Receiver::recv`] future loses no message: a message is
//!   taken off the queue only in the step that returns it.
//! - An [`Incoming`] sent message dropped without a reply answers its
//!   sender with [`ErrorKind::Remote`] ("dropped without a reply"): the
//!   sender never waits for an answer that cannot come.
//! - A dropped [`Window::send`] or [`Window::post`] future drops the
//!   connection it was using: the receiver's late reply goes nowhere (it is
//!   discarded) and the next call on the same [`Window`] connects again.
//!   As with a blocking send that timed out, the receiver may still handle
//!   the message.
//!
//! Process A (the receiver, the "window", async):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use ipckit::message::{Messenger, ReceiverOptions, Reply};
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let rx = ReceiverOptions::new().namespace(&ns).register_async("viewer").unwrap();
//! tokio::spawn(async move {
//!     loop {
//!         let m = rx.recv().await.unwrap();
//!         let n = m.data().len() as i64;
//!         m.reply(Reply::new(n)); // a posted message's reply is discarded
//!     }
//! });
//! // process B (a sender, async here; a blocking one works the same)
//! let mut w = Messenger::new().namespace(&ns).connect_async("viewer").await.unwrap();
//! let reply = w.send(ipckit::message::WM_COPYDATA, b"hello", Duration::from_secs(5)).await.unwrap();
//! assert_eq!(reply.result, 5);
//! # }
//! ```

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::time::Instant;

use super::{
    answer, reply_bytes, respond, too_large, wire, Job, Listening, Message, Messenger,
    ReceiverOptions, Reply, Shared, DRAIN_GRACE, MAX_REPLY, WHAT,
};
use crate::conn::async_io::AsyncSocket;
use crate::conn::dial::{Dialer, Trust};
use crate::conn::hello::{Hello, HELLO_LEN};
use crate::conn::listen;
use crate::conn::reactor::{Conn, Reactor};
use crate::conn::ConnStats;
use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;

/// How long connecting waits for the receiver's hello (as
/// [`Messenger::connect`]).
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long a post waits for the receiver to queue it (as
/// [`crate::message::Window::post`]).
const POST_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- receiving

/// A registered receiver (a "window") whose messages are taken with
/// [`recv().await`](Receiver::recv) instead of a handler thread. Register
/// it with [`ReceiverOptions::register_async`] (or [`Receiver::register`]).
/// Dropping it unregisters the name; messages not yet taken are discarded
/// and their senders get [`ErrorKind::PeerGone`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::message::{Messenger, ReceiverOptions};
/// let rx = ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
/// Messenger::new().namespace(&ns).post("w", 7, b"later").unwrap();
/// let m = rx.recv().await.unwrap();
/// assert_eq!((m.id(), m.data(), m.is_posted()), (7, &b"later"[..], true));
/// # }
/// ```
#[doc(alias = "GetMessage")]
pub struct Receiver {
    name: String,
    shared: Arc<Shared>,
    reactor: Option<Reactor>,
    /// The Unix socket serving it.
    #[cfg(unix)]
    socket_path: std::path::PathBuf,
    /// The named pipe serving it (`\\.\pipe\ipckit.<H>.<name>`).
    #[cfg(windows)]
    os_name: String,
    _claim: listen::BoundClaim,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("socket", {
                #[cfg(unix)]
                let endpoint = &self.socket_path;
                #[cfg(windows)]
                let endpoint = &self.os_name;
                endpoint
            })
            .finish()
    }
}

impl ReceiverOptions {
    /// Register an async receiver under `name`: instead of a handler
    /// called on a thread, messages are taken with
    /// [`Receiver::recv`](super::tokio::Receiver::recv) and sent ones
    /// answered with [`Incoming::reply`]. The options apply as for
    /// [`register`](ReceiverOptions::register). A live receiver of that
    /// name gives [`ErrorKind::AlreadyExists`]; a stale one is replaced.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns)
    ///     .max_message_size(1024).register_async("w").unwrap();
    /// assert_eq!(rx.name(), "w");
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn register_async(&self, name: &str) -> Result<Receiver> {
        let Listening {
            shared,
            reactor,
            #[cfg(unix)]
            socket_path,
            #[cfg(windows)]
            os_name,
            claim,
        } = self.listen(name)?;
        Ok(Receiver {
            name: name.to_string(),
            shared,
            reactor: Some(reactor),
            #[cfg(unix)]
            socket_path,
            #[cfg(windows)]
            os_name,
            _claim: claim,
        })
    }
}

impl Receiver {
    /// Register an async receiver under `name` in the namespace from the
    /// environment (see [`ReceiverOptions::register_async`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let rx = ipckit::message::tokio::Receiver::register("w").unwrap();
    /// assert!(ipckit::message::find("w").unwrap());
    /// # drop(rx);
    /// ```
    pub fn register(name: &str) -> Result<Receiver> {
        ReceiverOptions::new().register_async(name)
    }

    /// The name the receiver is registered under.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// assert_eq!(rx.name(), "w");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the receiver accepted, refused and dropped so far (see
    /// [`crate::message::Receiver::stats`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"").unwrap();
    /// assert_eq!(rx.stats().accepted, 1);
    /// ```
    pub fn stats(&self) -> ConnStats {
        self.reactor
            .as_ref()
            .map(|r| r.counters().snapshot())
            .unwrap_or_default()
    }

    /// The next message: a sent one if any is waiting, else the oldest
    /// posted one; waits until one comes. Several tasks may wait at once;
    /// each message goes to one of them.
    ///
    /// Cancel safe: dropping the future loses no message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// // Nothing yet: give up after a while (the future is dropped).
    /// assert!(tokio::time::timeout(Duration::from_millis(10), rx.recv()).await.is_err());
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 3, b"").unwrap();
    /// assert_eq!(rx.recv().await.unwrap().id(), 3);
    /// # }
    /// ```
    #[doc(alias = "GetMessage")]
    pub async fn recv(&self) -> Result<Incoming> {
        loop {
            // Registered before looking, so a message queued between the
            // look and the wait still wakes us.
            let mut arrived = pin!(self.shared.arrived.notified());
            arrived.as_mut().enable();
            if let Some(m) = self.take() {
                return Ok(m);
            }
            arrived.await;
        }
    }

    /// The next message if one is waiting, without waiting (`PeekMessage`
    /// with `PM_REMOVE`); `Ok(None)` if none is.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// assert!(rx.try_recv().unwrap().is_none());
    /// ```
    #[doc(alias = "PeekMessage")]
    pub fn try_recv(&self) -> Result<Option<Incoming>> {
        Ok(self.take())
    }

    /// How many sent and posted messages wait to be taken
    /// (`GetQueueStatus`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::message::tokio::QueueStatus;
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"").unwrap();
    /// assert_eq!(rx.queued(), QueueStatus { sent: 0, posted: 1 });
    /// ```
    #[doc(alias = "GetQueueStatus")]
    pub fn queued(&self) -> QueueStatus {
        let q = self.shared.lock();
        QueueStatus {
            sent: q.sends.len(),
            posted: q.posts.len(),
        }
    }

    fn take(&self) -> Option<Incoming> {
        let job = self.shared.lock().take()?;
        Some(Incoming::new(job, &self.shared))
    }
}

/// What [`Receiver::queued`] reports (`GetQueueStatus`'s
/// `QS_SENDMESSAGE` and `QS_POSTMESSAGE`, as counts).
///
/// ```
/// let s = ipckit::message::tokio::QueueStatus { sent: 0, posted: 2 };
/// assert_eq!(s.sent + s.posted, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Sent messages waiting (their senders are blocked in `send`).
    pub sent: usize,
    /// Posted messages waiting.
    pub posted: usize,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.socket_path);
        {
            let mut q = self.shared.lock();
            q.closing = true;
            q.sends.clear();
            q.posts.clear();
            q.post_bytes = 0;
        }
        // Replies already handed to the pool go out before the connections
        // close.
        if let Some(mut r) = self.reactor.take() {
            r.drain(DRAIN_GRACE);
        }
        self.shared.pool.stop();
    }
}

/// One message taken from a [`Receiver`]: its id, data and sender, and, for
/// a sent message, the way back to its sender ([`reply`](Incoming::reply)).
/// A sent message dropped without a reply answers its sender with
/// [`ErrorKind::Remote`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use std::time::Duration;
/// use ipckit::message::{Messenger, ReceiverOptions, Reply};
/// let rx = ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
/// let ns2 = ns.clone();
/// let sender = std::thread::spawn(move || {
///     Messenger::new().namespace(&ns2).send("w", 9, b"abc", Duration::from_secs(5))
/// });
/// let m = rx.recv().await.unwrap();
/// assert_eq!((m.id(), m.data(), m.sender_pid()), (9, &b"abc"[..], std::process::id()));
/// m.reply(Reply::new(3).with_data(b"ok".to_vec()));
/// let r = sender.join().unwrap().unwrap();
/// assert_eq!((r.result, r.data.as_slice()), (3, &b"ok"[..]));
/// # }
/// ```
pub struct Incoming {
    job: Job,
    /// Where the response is written (for a sent message).
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.job.id)
            .field("len", &self.job.data().len())
            .field("sender_pid", &self.job.pid)
            .field("posted", &self.is_posted())
            .finish()
    }
}

impl Incoming {
    fn new(job: Job, shared: &Arc<Shared>) -> Incoming {
        Incoming {
            job,
            shared: shared.clone(),
        }
    }

    /// The message id (`uMsg`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 0x4A, b"").unwrap();
    /// assert_eq!(rx.try_recv().unwrap().unwrap().id(), 0x4A);
    /// ```
    pub fn id(&self) -> u32 {
        self.job.id
    }

    /// The sender's bytes (the `COPYDATASTRUCT` payload).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"data").unwrap();
    /// assert_eq!(rx.try_recv().unwrap().unwrap().data(), b"data");
    /// ```
    pub fn data(&self) -> &[u8] {
        self.job.data()
    }

    /// The sender's process id (from the socket's peer credentials).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"").unwrap();
    /// assert_eq!(rx.try_recv().unwrap().unwrap().sender_pid(), std::process::id());
    /// ```
    pub fn sender_pid(&self) -> u32 {
        self.job.pid
    }

    /// Whether it was posted (no one waits for its reply) rather than sent.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"").unwrap();
    /// assert!(rx.try_recv().unwrap().unwrap().is_posted());
    /// ```
    pub fn is_posted(&self) -> bool {
        self.job.reply_to.is_none()
    }

    /// The message as a blocking handler sees it (to share a window
    /// procedure between the blocking and the async receiver).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// fn wndproc(m: &ipckit::message::Message<'_>) -> ipckit::message::Reply {
    ///     ipckit::message::Reply::new(m.data.len() as i64)
    /// }
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"abc").unwrap();
    /// let m = rx.try_recv().unwrap().unwrap();
    /// assert_eq!(wndproc(&m.message()).result, 3);
    /// ```
    pub fn message(&self) -> Message<'_> {
        Message {
            id: self.job.id,
            data: self.job.data(),
            sender_pid: self.job.pid,
            posted: self.is_posted(),
        }
    }

    /// Answer the message (`ReplyMessage` / the window procedure's return
    /// value): the sender's pending `send` returns `reply`. For a posted
    /// message the reply is discarded. A reply over 1 GiB of data is
    /// refused: the sender gets [`ErrorKind::Remote`] saying so. If the
    /// sender has gone meanwhile, the reply is dropped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// ipckit::message::Messenger::new().namespace(&ns).post("w", 1, b"").unwrap();
    /// rx.try_recv().unwrap().unwrap().reply(ipckit::message::Reply::new(0)); // discarded
    /// ```
    #[doc(alias = "ReplyMessage")]
    pub fn reply(mut self, reply: Reply) {
        self.answer(Ok(reply));
    }

    fn answer(&mut self, outcome: std::result::Result<Reply, String>) {
        let Some(conn) = self.job.reply_to.take() else {
            return;
        };
        reply_to(&self.shared, conn, reply_bytes(outcome));
    }
}

/// Write a response unless the receiver is closing (its connections are
/// then closed, and its senders told it went away).
fn reply_to(shared: &Arc<Shared>, conn: Arc<Conn>, bytes: Vec<u8>) {
    if shared.lock().closing {
        conn.close(None);
        return;
    }
    respond(shared, conn, bytes);
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.answer(Err(
            "it dropped the message without a reply (a receiver that took it went away or did not answer)".into(),
        ));
    }
}

// ---------------------------------------------------------------- sending

/// The receiver's connection, as the sender holds it.
#[derive(Debug)]
struct Link {
    sock: AsyncSocket,
    /// The receiver's data limit, from its hello.
    max: usize,
}

/// A connection to one receiver (the `HWND` a sender holds) for async
/// code: the async form of [`crate::message::Window`], reused across
/// [`send`](Window::send)s and [`post`](Window::post)s; after a call that
/// broke the connection (a timeout, the receiver gone, a dropped future)
/// the next call connects again. Get one with [`Messenger::connect_async`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use std::time::Duration;
/// use ipckit::message::{Messenger, ReceiverOptions, Reply};
/// let _rx = ReceiverOptions::new().namespace(&ns)
///     .register("w", |m| Reply::new(m.id.into()).with_data(m.data.to_vec())).unwrap();
/// let mut w = Messenger::new().namespace(&ns).connect_async("w").await.unwrap();
/// let r = w.send(7, b"hi", Duration::from_secs(5)).await.unwrap();
/// assert_eq!((r.result, r.data.as_slice()), (7, &b"hi"[..]));
/// w.post(8, b"later").await.unwrap();
/// # }
/// ```
#[doc(alias = "HWND")]
#[derive(Debug)]
pub struct Window {
    name: String,
    ns: Namespace,
    trust: Trust,
    link: Option<Link>,
}

impl Messenger {
    /// Connect to the receiver `name` from async code (see
    /// [`Messenger::connect`]); waiting for the receiver's hello does not
    /// block the runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::message::Messenger::new().namespace(&ns).connect_async("none").await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn connect_async(&self, name: &str) -> Result<Window> {
        let ns = self.ns()?;
        let link = connect(&ns, name, &self.trust, Instant::now() + CONNECT_WAIT).await?;
        Ok(Window {
            name: name.to_string(),
            ns,
            trust: self.trust.clone(),
            link: Some(link),
        })
    }

    /// Send one message to `name` from async code and wait for its
    /// handler's reply (see [`Window::send`]); `timeout` covers connecting
    /// too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let m = ipckit::message::Messenger::new().namespace(&ns);
    /// let _rx = ipckit::message::ReceiverOptions::new().namespace(&ns)
    ///     .register("w", |m| ipckit::message::Reply::new(m.id.into())).unwrap();
    /// assert_eq!(m.send_async("w", 4, b"", Duration::from_secs(5)).await.unwrap().result, 4);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn send_async(
        &self,
        name: &str,
        id: u32,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Reply> {
        let deadline = Instant::now() + timeout;
        let ns = self.ns()?;
        let link = connect(&ns, name, &self.trust, deadline).await?;
        let mut w = Window {
            name: name.to_string(),
            ns,
            trust: self.trust.clone(),
            link: Some(link),
        };
        w.call(wire::REQ_SEND, id, data, deadline).await
    }

    /// Post one message to `name` from async code (see [`Window::post`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::message::Messenger::new().namespace(&ns).post_async("none", 1, b"").await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn post_async(&self, name: &str, id: u32, data: &[u8]) -> Result<()> {
        self.connect_async(name).await?.post(id, data).await
    }
}

/// [`Messenger::send_async`] in the namespace from the environment.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let _rx = ipckit::message::Receiver::register("w", |m| ipckit::message::Reply::new(m.id.into())).unwrap();
/// let r = ipckit::message::tokio::send("w", 5, b"", std::time::Duration::from_secs(5)).await.unwrap();
/// assert_eq!(r.result, 5);
/// # }
/// ```
#[doc(alias = "SendMessage")]
pub async fn send(name: &str, id: u32, data: &[u8], timeout: Duration) -> Result<Reply> {
    Messenger::new().send_async(name, id, data, timeout).await
}

/// [`Messenger::post_async`] in the namespace from the environment.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let rx = ipckit::message::tokio::Receiver::register("w").unwrap();
/// ipckit::message::tokio::post("w", 5, b"queued").await.unwrap();
/// assert_eq!(rx.recv().await.unwrap().data(), b"queued");
/// # }
/// ```
#[doc(alias = "PostMessage")]
pub async fn post(name: &str, id: u32, data: &[u8]) -> Result<()> {
    Messenger::new().post_async(name, id, data).await
}

/// How far a call got when its deadline passed (for the error).
#[derive(Clone, Copy)]
enum Phase {
    Connecting,
    Sending,
    Waiting,
    Reading,
}

impl Window {
    /// The receiver's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// let w = ipckit::message::Messenger::new().namespace(&ns).connect_async("w").await.unwrap();
    /// assert_eq!(w.name(), "w");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Send a message and wait until the receiver handled it
    /// (`SendMessageTimeout`), as [`crate::message::Window::send`], with
    /// the same errors. Dropping the future drops the connection: the late
    /// reply is discarded and the next call connects again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let _rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register("slow", |m| {
    ///     if m.id == 1 { std::thread::sleep(Duration::from_millis(200)); }
    ///     ipckit::message::Reply::new(m.id.into())
    /// }).unwrap();
    /// let mut w = ipckit::message::Messenger::new().namespace(&ns).connect_async("slow").await.unwrap();
    /// let e = w.send(1, b"", Duration::from_millis(10)).await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// // Usable again; the late reply to message 1 is not taken for this one.
    /// assert_eq!(w.send(2, b"", Duration::from_secs(5)).await.unwrap().result, 2);
    /// # }
    /// ```
    #[doc(alias = "SendMessage")]
    #[doc(alias = "SendMessageTimeout")]
    pub async fn send(&mut self, id: u32, data: &[u8], timeout: Duration) -> Result<Reply> {
        self.call(wire::REQ_SEND, id, data, Instant::now() + timeout)
            .await
    }

    /// Queue a message and return once the receiver queued it
    /// (`PostMessage`), as [`crate::message::Window::post`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register_async("w").unwrap();
    /// let mut w = ipckit::message::Messenger::new().namespace(&ns).connect_async("w").await.unwrap();
    /// for id in 1..=3 { w.post(id, b"").await.unwrap(); }
    /// for id in 1..=3 { assert_eq!(rx.recv().await.unwrap().id(), id); }
    /// # }
    /// ```
    #[doc(alias = "PostMessage")]
    pub async fn post(&mut self, id: u32, data: &[u8]) -> Result<()> {
        self.call(wire::REQ_POST, id, data, Instant::now() + POST_WAIT)
            .await
            .map(|_| ())
    }

    /// One request and its response, by `deadline`. The connection is
    /// taken out of the window for the call and put back only when the
    /// call ends with the two sides in step: an error, a timeout or a
    /// dropped future drops it (and the reply that may still come).
    async fn call(&mut self, kind: u8, id: u32, data: &[u8], deadline: Instant) -> Result<Reply> {
        let mut phase = Phase::Connecting;
        let link = match self.link.take() {
            Some(l) => l,
            None => connect(&self.ns, &self.name, &self.trust, deadline).await?,
        };
        let r = ::tokio::time::timeout_at(
            deadline,
            exchange(&link, &self.name, kind, id, data, &mut phase),
        )
        .await;
        match r {
            Ok(Ok(answer)) => {
                self.link = Some(link);
                answer
            }
            Ok(Err(broken)) => Err(broken),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                match phase {
                    Phase::Connecting | Phase::Sending => {
                        "the receiver did not take the message in time; is its process stopped?"
                    }
                    Phase::Waiting => "the receiver did not handle the message in time; it may still do so, so do not assume it was dropped",
                    Phase::Reading => "the receiver's reply did not arrive whole in time",
                },
            )
            .with_name(&self.name)),
        }
    }
}

/// `Err`: the connection is broken; `Ok(Err)`: the receiver refused.
async fn exchange(
    link: &Link,
    name: &str,
    kind: u8,
    id: u32,
    data: &[u8],
    phase: &mut Phase,
) -> Result<Result<Reply>> {
    if data.len() > link.max {
        return Ok(Err(too_large(name, data.len(), link.max)));
    }
    let gone = |what: &str| {
        Error::new(
            ErrorKind::PeerGone,
            format!("the receiver went away {what}; it died or unregistered"),
        )
        .with_name(name)
    };
    *phase = Phase::Sending;
    let mut frame = wire::request(kind, id, data.len() as u32).to_vec();
    frame.extend_from_slice(data);
    link.sock
        .send_all(&frame)
        .await
        .map_err(|_| gone("before the message was delivered"))?;
    *phase = Phase::Waiting;
    let mut h = [0u8; wire::LEN];
    match link.sock.recv_exact(&mut h).await {
        Ok(true) => {}
        Ok(false) | Err(_) => return Err(gone("before handling the message")),
    }
    let Some((rkind, code, len, result)) = wire::parse_response(&h) else {
        return Err(
            Error::new(ErrorKind::Decode, "malformed response from the receiver").with_name(name),
        );
    };
    if len as usize > MAX_REPLY {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("the receiver announced a reply of {len} bytes, over the limit of {MAX_REPLY}"),
        )
        .with_name(name));
    }
    *phase = Phase::Reading;
    let body = link
        .sock
        .recv_body(len as usize)
        .await
        .map_err(|_| gone("in the middle of its reply"))?;
    Ok(answer(name, rkind, code, result, body))
}

/// Connect to the receiver `name` (one attempt) and read its hello by
/// `deadline`, without blocking the runtime.
async fn connect(ns: &Namespace, name: &str, trust: &Trust, deadline: Instant) -> Result<Link> {
    let dialer = Dialer {
        name,
        what: WHAT,
        namespace: Some(ns),
        timeout: Duration::ZERO,
        tcp: false,
        trust,
    };
    // One attempt (a zero timeout never sleeps); the hello is read below.
    let fd = dialer.run(|d| Ok(d.fd))?;
    let sock = AsyncSocket::new(fd).map_err(|e| {
        Error::os(e, "cannot register the connection with the tokio runtime").with_name(name)
    })?;
    let mut b = [0u8; HELLO_LEN];
    let got = ::tokio::time::timeout_at(deadline, sock.recv_exact(&mut b)).await;
    match got {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return Err(Error::new(
                ErrorKind::PeerGone,
                format!("the {WHAT} closed the connection during the handshake; it may be shutting down or refusing clients"),
            )
            .with_name(name))
        }
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("the {WHAT} accepted the connection but sent no complete hello in time; it may be hung"),
            )
            .with_name(name))
        }
        Ok(Err(e)) => return Err(Error::os(e, "handshake failed").with_name(name)),
    }
    let h = Hello::decode(&b, wire::MAGIC, wire::VERSION, WHAT, name)?;
    if let Some(e) = h.refusal(WHAT, name) {
        return Err(e);
    }
    Ok(Link {
        sock,
        max: h.max as usize,
    })
}
