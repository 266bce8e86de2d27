//! Window-style messages: `SendMessage`, `PostMessage`, `WM_COPYDATA`,
//! `RegisterWindowMessage`, `HWND_BROADCAST`, `FindWindow`.
//!
//! A process *registers* a receiver under a name ([`Receiver::register`]);
//! its handler is called, one message at a time, with the message id, a
//! copy of the sender's bytes and the sender's pid, and returns an `i64`
//! result plus optional reply bytes ([`Reply`]). Posted messages are handled
//! in the order they were queued; a sent message is handled as soon as the
//! handler is free, ahead of posted messages still queued (as in Win32,
//! where sent messages bypass the posted queue).
//! [`send`] blocks until the handler returned and gives back its reply;
//! [`post`] returns once the message is queued. [`register_message`] turns a
//! text into an id that every process of the namespace agrees on, and
//! [`broadcast`] delivers a message to every receiver.
//!
//! Process A (the receiver, the "window"):
//!
//! ```no_run
//! use ipckit::message::{Receiver, Reply};
//! let _rx = Receiver::register("viewer", |m| {
//!     println!("message {:#x} from pid {}: {}", m.id, m.sender_pid,
//!              String::from_utf8_lossy(m.data));
//!     Reply::new(m.data.len() as i64)
//! })?;
//! std::thread::park(); // the handler runs on a background thread
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (a sender):
//!
//! ```no_run
//! use std::time::Duration;
//! let copydata = ipckit::message::WM_COPYDATA;
//! let reply = ipckit::message::send("viewer", copydata, br#"{"mrn":456}"#, Duration::from_secs(5))?;
//! assert_eq!(reply.result, 11);
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! **Async**. With the `tokio` feature,
//! [`tokio::Receiver`] hands messages out with `recv().await` (each sent
//! one answered with [`tokio::Incoming::reply`]) and [`tokio::Window`]
//! sends and posts with `send().await` / `post().await`.
//!
//! Transport: a Unix stream socket per receiver in the namespace, served by
//! one readiness loop (idle senders cost a descriptor, no thread) under the
//! receiver's [`Limits`] (see [`ReceiverOptions::limits`]);
//! the wire format is in `docs/PROTOCOL.md`, "Window messages".
//!
//! # On Windows
//!
//! The same API, semantics and frames, over the Windows flavor of the
//! connection layer: a receiver `N` serves the byte-mode named pipe
//! `\\.\pipe\ipckit.<H>.<N>` (the name pipes and services of `N` use,
//! so they collide with [`ErrorKind::AlreadyExists`] as one record per
//! name does on Linux), whose first instance is the claim on the name; a
//! dead receiver's name is free at once. What differs:
//!
//! - Names: a receiver name follows [`crate::name::validate_name`] (a
//!   system pipe name `\\.\pipe\X` or `tcp://` is
//!   [`ErrorKind::InvalidName`], as on Linux), but names differing only in
//!   ASCII case are one name (pipe names ignore case).
//! - [`find`] and [`broadcast`] see the receivers that hold their
//!   endpoint record, as on Linux (see [`crate::name`]): there it is locked
//!   with `LockFileEx`, which the system releases when the process ends,
//!   however it ends.
//! - [`register_message`]: the same registry file and format, locked with
//!   `LockFileEx` instead of `flock`.
//! - [`Message::sender_pid`] is the pipe client's process id
//!   (`GetNamedPipeClientProcessId`). A sender talks only to a receiver
//!   running as the same user (the process token's user compared) unless
//!   [`Messenger::allow_any_server`]; [`Messenger::allow_server_uids`] has
//!   no uids to name there.
//! - An open connection costs a reader thread of the pipe's emulated
//!   socket there (not only a handle), so idle senders are not free; the
//!   readiness loop and [`Limits`] are the same.
//! - The async forms (`message::tokio`) work as on Linux; an async
//!   sender's calls run the pipe's blocking calls on tokio's blocking
//!   pool, and a dropped call closes its connection.
//! - Linux-only: Zenoh fabric
//!   broadcasts ([`ReceiverOptions`]`::fabric`, [`Messenger`]`::fabric`).
//!   [`Receiver::stats`] counts as on Linux but is not published for
//!   `ipckit ls`.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conn::dial::{Dialer, Trust};
use crate::conn::hello::{self, Hello};
use crate::conn::pool::Pool;
use crate::conn::reactor::{Conn, Flow, Frame, FrameLen, Protocol, Reactor, Refusal};
use crate::conn::{io as conn_io, listen, ConnStats};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::name::EndpointState;
use crate::name::Namespace;
use crate::registry::Registry;
use crate::sys::net::{AsSocket, Socket, SocketRef};

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

/// `WM_COPYDATA`, the id the original used to pass a copy of some bytes.
pub const WM_COPYDATA: u32 = 0x004A;
/// `WM_USER`: ids from here to `0x7FFF` are for a receiver's private use.
pub const WM_USER: u32 = 0x0400;
/// Lowest id [`register_message`] hands out.
pub const REGISTERED_MIN: u32 = crate::registry::MIN;
/// Highest id [`register_message`] hands out.
pub const REGISTERED_MAX: u32 = crate::registry::MAX;
/// Longest text [`register_message`] accepts, in bytes.
pub const MAX_MESSAGE_TEXT: usize = crate::registry::MAX_TEXT;
/// Default limit on the bytes of one message: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// Most posted messages waiting in a receiver's queue (as Win32's 10 000);
/// a post beyond gets [`ErrorKind::Full`]. The queue is also bounded in
/// bytes ([`Limits::max_queued_bytes`]).
pub const POST_QUEUE_LIMIT: usize = 10_000;

/// Endpoint kind of a receiver in the namespace.
const KIND: &str = "window";

/// What a receiver is called in errors.
const WHAT: &str = "message receiver";

/// Most threads writing a receiver's responses at once (a response to a
/// sender that does not read holds one for up to the stall timeout).
const RESPONDERS: usize = 8;

/// Largest reply body a handler may return and a sender accepts (it is
/// allocated as its bytes arrive, never as announced).
const MAX_REPLY: usize = 1 << 30;

/// Registry of message texts, and its lock, in the namespace directory.
const REGISTRY: Registry = Registry {
    file: ".messages",
    lock: ".messages.lock",
    what: "message",
};

mod wire {
    //! See `docs/PROTOCOL.md`, "Window messages". The hello is the common
    //! one (`crate::conn::hello`) with this magic and version.
    pub(super) const MAGIC: &[u8; 8] = b"IPCKWMSG";
    pub(super) const VERSION: u8 = 1;
    /// Length of a request or response header.
    pub(super) const LEN: usize = 16;

    pub(super) const REQ_SEND: u8 = 1;
    pub(super) const REQ_POST: u8 = 2;

    pub(super) const RESP_REPLY: u8 = 1;
    pub(super) const RESP_QUEUED: u8 = 2;
    pub(super) const RESP_ERROR: u8 = 3;

    pub(super) const ERR_FULL: u8 = 1;
    pub(super) const ERR_TOO_LARGE: u8 = 2;
    pub(super) const ERR_CLOSING: u8 = 3;
    /// The handler panicked (or returned a reply over the limit).
    pub(super) const ERR_HANDLER: u8 = 4;

    pub(super) fn request(kind: u8, id: u32, len: u32) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = kind;
        b[4..8].copy_from_slice(&id.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b
    }

    /// `(kind, id, len)`, or `None` if malformed.
    pub(super) fn parse_request(b: &[u8; LEN]) -> Option<(u8, u32, u32)> {
        if !matches!(b[0], REQ_SEND | REQ_POST) || b[1..4] != [0; 3] || b[12..16] != [0; 4] {
            return None;
        }
        Some((
            b[0],
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        ))
    }

    pub(super) fn response(kind: u8, code: u8, len: u32, result: i64) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = kind;
        b[1] = code;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        b[8..16].copy_from_slice(&result.to_le_bytes());
        b
    }

    /// A whole error response: header and UTF-8 explanation.
    pub(super) fn error(code: u8, text: &str) -> Vec<u8> {
        let mut b = response(RESP_ERROR, code, text.len() as u32, 0).to_vec();
        b.extend_from_slice(text.as_bytes());
        b
    }

    /// `(kind, code, len, result)`, or `None` if malformed.
    pub(super) fn parse_response(b: &[u8; LEN]) -> Option<(u8, u8, u32, i64)> {
        if !matches!(b[0], RESP_REPLY | RESP_QUEUED | RESP_ERROR) || b[2..4] != [0; 2] {
            return None;
        }
        let mut r = [0u8; 8];
        r.copy_from_slice(&b[8..16]);
        Some((
            b[0],
            b[1],
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            i64::from_le_bytes(r),
        ))
    }
}
/// One message as the handler sees it.
///
/// ```
/// let m = ipckit::message::Message { id: 0x4A, data: b"{}", sender_pid: 1, posted: false };
/// assert_eq!(m.data, b"{}");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message id (`uMsg`): [`WM_COPYDATA`], a `WM_USER`-based private
    /// id, or one from [`register_message`].
    pub id: u32,
    /// The sender's bytes (the `COPYDATASTRUCT` payload).
    pub data: &'a [u8],
    /// The sender's process id (from the socket's peer credentials).
    pub sender_pid: u32,
    /// Whether it was posted (its reply is discarded) rather than sent.
    pub posted: bool,
}

/// What a handler returns: the `LRESULT` and optional reply bytes.
///
/// ```
/// let r = ipckit::message::Reply::new(1).with_data(b"ok".to_vec());
/// assert_eq!((r.result, r.data.as_slice()), (1, b"ok".as_slice()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The result (`LRESULT`).
    pub result: i64,
    /// Bytes handed back to the sender (empty by default).
    pub data: Vec<u8>,
}

impl Reply {
    /// A reply with `result` and no bytes.
    ///
    /// ```
    /// assert!(ipckit::message::Reply::new(0).data.is_empty());
    /// ```
    pub fn new(result: i64) -> Reply {
        Reply {
            result,
            data: Vec::new(),
        }
    }

    /// Attach reply bytes.
    ///
    /// ```
    /// let r = ipckit::message::Reply::new(0).with_data(vec![1, 2]);
    /// assert_eq!(r.data, [1, 2]);
    /// ```
    pub fn with_data(mut self, data: Vec<u8>) -> Reply {
        self.data = data;
        self
    }
}

type Handler = Box<dyn FnMut(&Message<'_>) -> Reply + Send + 'static>;

/// Settings for registering a receiver.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let rx = ipckit::message::ReceiverOptions::new()
///     .namespace(&ns)
///     .max_message_size(1024)
///     .register("w", |m| ipckit::message::Reply::new(m.id.into()))
///     .unwrap();
/// assert_eq!(rx.name(), "w");
/// ```
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    max_data: usize,
    namespace: Option<Namespace>,
    limits: Limits,
    #[cfg(all(feature = "zenoh", unix))]
    fabric: Option<crate::fabric::Fabric>,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            max_data: DEFAULT_MAX_MESSAGE_SIZE,
            namespace: None,
            limits: Limits::default(),
            #[cfg(all(feature = "zenoh", unix))]
            fabric: None,
        }
    }
}

impl ReceiverOptions {
    /// Defaults: [`DEFAULT_MAX_MESSAGE_SIZE`], the namespace from the environment,
    /// [`Limits::default`].
    ///
    /// ```
    /// let _ = ipckit::message::ReceiverOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest message data accepted, in bytes (1 to 1 GiB); larger sends and
    /// posts fail with [`ErrorKind::TooLarge`]. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    ///
    /// ```
    /// let _ = ipckit::message::ReceiverOptions::new().max_message_size(4096);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_data = bytes;
        self
    }

    /// Register in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::message::ReceiverOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// What the receiver accepts from its senders. Default
    /// [`Limits::default`]. The fields that apply:
    ///
    /// - connections open at once: [`Limits::max_connections`] in total,
    ///   [`Limits::max_connections_per_process`],
    ///   [`Limits::max_connections_per_user`]. A sender over one gets a hello
    ///   with status busy and [`ErrorKind::Busy`]; its connection closes.
    ///   Idle connections cost a descriptor each and no thread.
    /// - [`Limits::stall_timeout`]: a sender that stops in the middle of a
    ///   request (header or data) for this long is dropped, and so is one
    ///   that does not read a response for this long.
    /// - [`Limits::max_queued_bytes`]: data bytes of posted messages waiting
    ///   for the handler (besides [`POST_QUEUE_LIMIT`] messages). A post
    ///   that would go over it gets [`ErrorKind::Full`] at once (as a post
    ///   to a full Win32 queue fails); so does any post larger than it.
    ///
    /// A sender has one request in flight per connection (it waits for the
    /// response), so the others do not apply.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// use ipckit::message::{Messenger, ReceiverOptions, Reply};
    /// use ipckit::{ErrorKind, Limits};
    ///
    /// let _rx = ReceiverOptions::new()
    ///     .namespace(&ns)
    ///     .limits(Limits::new().max_connections(1).stall_timeout(Duration::from_secs(2)))
    ///     .register("w", |_| Reply::new(1))
    ///     .unwrap();
    /// let m = Messenger::new().namespace(&ns).clone();
    /// let mut first = m.connect("w").unwrap();
    /// assert_eq!(first.send(1, b"", Duration::from_secs(5)).unwrap().result, 1);
    /// // A second connection is over the limit while the first is open.
    /// let e = m.send("w", 1, b"", Duration::from_secs(5)).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Busy);
    /// ```
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also take the window-message broadcasts of every machine of this
    /// Zenoh fabric (feature `zenoh`; see [`Messenger::fabric`]): the
    /// receiver subscribes to `ipckit/<namespace>/msg/broadcast/*` and its
    /// handler gets each one as a *posted* message (no reply goes back;
    /// [`Message::sender_pid`] is the sender's pid on its machine). One
    /// over this receiver's [`max_message_size`](Self::max_message_size)
    /// or its post-queue limits is dropped. Applies to
    /// [`register`](Self::register). Default: none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-rx-fabric")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let _rx = ipckit::message::ReceiverOptions::new().namespace(&ns).fabric(&fabric)
    ///     .register("w", |m| ipckit::message::Reply::new(m.id.into())).unwrap();
    /// ```
    #[cfg(all(feature = "zenoh", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    #[must_use]
    pub fn fabric(mut self, fabric: &crate::fabric::Fabric) -> Self {
        self.fabric = Some(fabric.clone());
        self
    }

    /// Register `handler` under `name`. The handler runs on a background
    /// thread, one message at a time: posted messages in queue order, sent
    /// ones as soon as it is free. A handler that panics is caught: the
    /// sender of a sent message gets [`ErrorKind::Remote`] naming the
    /// panic, and the receiver goes on with the next message. A live
    /// receiver of that name gives [`ErrorKind::AlreadyExists`]; a stale one
    /// is replaced.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::message::{Messenger, ReceiverOptions, Reply};
    /// let _rx = ReceiverOptions::new().namespace(&ns)
    ///     .register("w", |m| Reply::new(2 * m.data.len() as i64)).unwrap();
    /// let r = Messenger::new().namespace(&ns)
    ///     .send("w", 1, b"abc", std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!(r.result, 6);
    /// ```
    pub fn register<F>(&self, name: &str, handler: F) -> Result<Receiver>
    where
        F: FnMut(&Message<'_>) -> Reply + Send + 'static,
    {
        let Listening {
            shared,
            reactor,
            #[cfg(unix)]
            socket_path,
            claim,
            #[cfg(windows)]
            os_name,
        } = self.listen(name)?;
        let handler: Handler = Box::new(handler);
        let dispatcher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("ipckit-window-{name}"))
                .spawn(move || dispatch(&shared, handler))
        };
        let dispatcher = match dispatcher {
            Ok(d) => d,
            Err(e) => {
                drop(reactor);
                #[cfg(unix)]
                let _ = std::fs::remove_file(&socket_path);
                return Err(
                    Error::os(e, "cannot start the receiver's handler thread").with_name(name)
                );
            }
        };
        #[allow(unused_mut)]
        let mut rx = Receiver {
            name: name.to_string(),
            shared,
            reactor: Some(reactor),
            dispatcher: Some(dispatcher),
            #[cfg(unix)]
            socket_path,
            _claim: claim,
            #[cfg(windows)]
            os_name,
            #[cfg(all(feature = "zenoh", unix))]
            member: None,
        };
        #[cfg(all(feature = "zenoh", unix))]
        if let Some(fabric) = &self.fabric {
            let ns = listen::namespace(self.namespace.as_ref())?;
            rx.member = Some(join_fabric(fabric, &ns, name, &rx.shared)?);
        }
        Ok(rx)
    }

    /// Claim `name` and start serving its socket; messages queue in the
    /// returned `shared` for whoever handles them.
    fn listen(&self, name: &str) -> Result<Listening> {
        if self.max_data == 0 || self.max_data > 1 << 30 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_data {} is out of range; use 1 to {} bytes",
                    self.max_data,
                    1 << 30
                ),
            )
            .with_name(name));
        }
        let ns = listen::namespace(self.namespace.as_ref())?;
        // A receiver is named by ipckit's rules on Windows too (the
        // connection layer would also take a system pipe name there).
        #[cfg(windows)]
        crate::name::validate_name(name)?;
        let bound = listen::bind(&ns, name, KIND, None)?;
        let shared = Arc::new(Shared {
            max_data: self.max_data,
            max_queued_bytes: self.limits.get_max_queued_bytes(),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            #[cfg(feature = "tokio")]
            arrived: ::tokio::sync::Notify::new(),
            pool: Pool::new(RESPONDERS, format!("wmsg-{name}")),
        });
        #[cfg(unix)]
        let socket_path = bound.socket_path;
        let reactor = Reactor::start(
            &format!("wmsg-{name}"),
            Arc::new(Wire(shared.clone())),
            bound.listening,
            self.limits.clone(),
        );
        match reactor {
            Ok(reactor) => Ok(Listening {
                shared,
                reactor,
                #[cfg(unix)]
                socket_path,
                claim: bound.claim,
                #[cfg(windows)]
                os_name: bound.os_name,
            }),
            Err(e) => {
                #[cfg(unix)]
                let _ = std::fs::remove_file(&socket_path);
                Err(Error::os(e, "cannot start the receiver's readiness loop").with_name(name))
            }
        }
    }
}

/// A receiver's name claimed and its socket served.
struct Listening {
    shared: Arc<Shared>,
    reactor: Reactor,
    #[cfg(unix)]
    socket_path: PathBuf,
    claim: listen::BoundClaim,
    /// The named pipe that is the receiver's claim and endpoint.
    #[cfg(windows)]
    os_name: String,
}

/// Subscribe a receiver to the fabric's window-message broadcasts: each
/// one not from this receiver's own namespace is queued as a post.
#[cfg(all(feature = "zenoh", unix))]
fn join_fabric(
    fabric: &crate::fabric::Fabric,
    ns: &Namespace,
    name: &str,
    shared: &Arc<Shared>,
) -> Result<crate::fabric::broadcast::Member> {
    use crate::fabric::broadcast;
    let mine = broadcast::origin(ns.dir()).into_bytes();
    let shared = shared.clone();
    broadcast::join(
        fabric,
        "msg",
        name,
        broadcast::msg_pattern(fabric),
        broadcast::msg_ack(fabric),
        move |key, payload, att| {
            let Some(id) = key.rsplit('/').next().and_then(|i| i.parse::<u32>().ok()) else {
                return;
            };
            if att.len() < 4 || att[4..] == *mine.as_slice() {
                return; // malformed, or the sender reached us directly
            }
            let pid = u32::from_le_bytes(att[..4].try_into().expect("4 bytes"));
            let mut q = shared.lock();
            if q.closing
                || payload.len() > shared.max_data
                || q.posts.len() >= POST_QUEUE_LIMIT
                || q.post_bytes + payload.len() > shared.max_queued_bytes
            {
                return;
            }
            let mut frame = vec![0u8; wire::LEN];
            frame.extend_from_slice(payload);
            q.post_bytes += payload.len();
            q.posts.push_back(Job {
                id,
                frame,
                pid,
                reply_to: None,
            });
            drop(q);
            shared.wake();
        },
    )
}

/// A message waiting for the handler.
struct Job {
    id: u32,
    /// The whole request: header, then the data.
    frame: Vec<u8>,
    pid: u32,
    /// Where the reply goes (a sent message); `None` for a post.
    reply_to: Option<Arc<Conn>>,
}

impl Job {
    fn data(&self) -> &[u8] {
        &self.frame[wire::LEN..]
    }
}

/// What the readiness loop, the handler thread and the response writers
/// share, under [`Shared::queue`].
#[derive(Default)]
struct Queue {
    /// Sent messages, handled ahead of posts.
    sends: VecDeque<Job>,
    posts: VecDeque<Job>,
    /// Data bytes of `posts`.
    post_bytes: usize,
    /// The receiver is being dropped: no more requests are taken.
    closing: bool,
}

/// How long unregistering waits for replies being written.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

struct Shared {
    max_data: usize,
    max_queued_bytes: usize,
    queue: Mutex<Queue>,
    /// Wakes the handler thread: a message was queued, or closing.
    work: Condvar,
    /// Wakes async receivers ([`tokio::Receiver::recv`]): a message was
    /// queued.
    #[cfg(feature = "tokio")]
    arrived: ::tokio::sync::Notify,
    /// Writes responses, so that neither the readiness loop nor the handler
    /// thread ever waits for a slow sender.
    pool: Arc<Pool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message was queued: wake the handler thread or async receivers.
    fn wake(&self) {
        self.work.notify_one();
        #[cfg(feature = "tokio")]
        self.arrived.notify_waiters();
    }
}

impl Queue {
    /// The next message to handle: sent ones ahead of posted ones.
    fn take(&mut self) -> Option<Job> {
        if let Some(j) = self.sends.pop_front() {
            return Some(j);
        }
        let j = self.posts.pop_front()?;
        self.post_bytes -= j.data().len();
        Some(j)
    }
}

/// The response to a sent message: its handler's reply, or why there is
/// none (the text of a panic, a reply over the limit).
fn reply_bytes(outcome: std::result::Result<Reply, String>) -> Vec<u8> {
    match outcome {
        Ok(reply) if reply.data.len() > MAX_REPLY => wire::error(
            wire::ERR_HANDLER,
            &format!(
                "its handler returned {} reply bytes, over the limit of {MAX_REPLY}",
                reply.data.len()
            ),
        ),
        Ok(reply) => {
            let mut b =
                wire::response(wire::RESP_REPLY, 0, reply.data.len() as u32, reply.result).to_vec();
            b.extend_from_slice(&reply.data);
            b
        }
        Err(why) => wire::error(wire::ERR_HANDLER, &why),
    }
}

/// Write `bytes` to `conn` on a pool worker, then read the connection's
/// next request. Counted in flight until written (closing the receiver
/// waits for it: `Reactor::drain`).
fn respond(shared: &Arc<Shared>, conn: Arc<Conn>, bytes: Vec<u8>) {
    conn.begin();
    shared.pool.submit(Box::new(move || {
        if conn.send(&bytes).is_ok() {
            conn.resume();
        } else {
            conn.close(None);
        }
        conn.end();
    }));
}

/// The receiver's side of the readiness loop: cuts requests, queues them,
/// and pauses each connection until its response is written (one request
/// in flight per connection). Never blocks: the handler runs on the
/// dispatcher thread, responses are written by the pool.
struct Wire(Arc<Shared>);

impl Protocol for Wire {
    fn header_len(&self) -> usize {
        wire::LEN
    }

    fn frame_len(&self, header: &[u8]) -> std::result::Result<FrameLen, String> {
        let h: &[u8; wire::LEN] = header.try_into().map_err(|_| "short header".to_string())?;
        let Some((_, _, len)) = wire::parse_request(h) else {
            return Err("it sent a malformed request header".into());
        };
        let total = wire::LEN + len as usize;
        Ok(if len as usize > self.0.max_data {
            FrameLen::Skip(total)
        } else {
            FrameLen::Whole(total)
        })
    }

    fn hello(&self, _conn: &Conn) -> Vec<u8> {
        Hello::ok(wire::MAGIC, wire::VERSION, self.0.max_data as u32)
            .encode()
            .to_vec()
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        Hello::ok(wire::MAGIC, wire::VERSION, self.0.max_data as u32)
            .with_status(why.status())
            .encode()
            .to_vec()
    }

    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow {
        let s = &self.0;
        let request = frame
            .bytes
            .get(..wire::LEN)
            .and_then(|h| wire::parse_request(h.try_into().ok()?));
        let Some((kind, id, len)) = request else {
            return Flow::Close(Some("it sent a malformed request header".into()));
        };
        let len = len as usize;
        let pid = conn.peer().pid.unwrap_or(0);
        let mut q = s.lock();
        if q.closing {
            return Flow::Close(None);
        }
        let response = if frame.skipped {
            wire::error(
                wire::ERR_TOO_LARGE,
                &format!(
                    "message data of {len} bytes is over the receiver's limit of {} bytes",
                    s.max_data
                ),
            )
        } else if kind == wire::REQ_SEND {
            q.sends.push_back(Job {
                id,
                frame: frame.bytes,
                pid,
                reply_to: Some(conn.clone()),
            });
            s.wake();
            return Flow::Pause;
        } else if q.posts.len() >= POST_QUEUE_LIMIT {
            wire::error(
                wire::ERR_FULL,
                &format!("the receiver's post queue is full ({POST_QUEUE_LIMIT} messages waiting)"),
            )
        } else if q.post_bytes + len > s.max_queued_bytes {
            wire::error(
                wire::ERR_FULL,
                &format!(
                    "the receiver's post queue is full ({} bytes waiting, {len} more would pass its limit of {} bytes)",
                    q.post_bytes, s.max_queued_bytes
                ),
            )
        } else {
            q.post_bytes += len;
            q.posts.push_back(Job {
                id,
                frame: frame.bytes,
                pid,
                reply_to: None,
            });
            s.wake();
            wire::response(wire::RESP_QUEUED, 0, 0, 0).to_vec()
        };
        drop(q);
        respond(s, conn.clone(), response);
        Flow::Pause
    }
}

/// The handler thread: sent messages first, then posts in queue order, one
/// at a time, each under `catch_unwind`; until the receiver closes.
fn dispatch(shared: &Arc<Shared>, mut handler: Handler) {
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if q.closing {
                    return;
                }
                if let Some(j) = q.take() {
                    break j;
                }
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let msg = Message {
            id: job.id,
            data: job.data(),
            sender_pid: job.pid,
            posted: job.reply_to.is_none(),
        };
        // A panic in a posted message's handler has no one to tell but the
        // panic hook (stderr); the receiver goes on either way.
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(&msg)));
        let Some(conn) = job.reply_to else {
            continue;
        };
        let outcome = outcome.map_err(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".into());
            format!("its handler panicked: {what}")
        });
        respond(shared, conn, reply_bytes(outcome));
    }
}

/// A registered receiver (a "window"). Dropping it unregisters the name,
/// waits for the message being handled (and for its reply to be written),
/// and discards messages not yet handled; their senders get
/// [`ErrorKind::PeerGone`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let m = ipckit::message::Messenger::new().namespace(&ns).clone();
/// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns)
///     .register("w", |_| ipckit::message::Reply::new(0)).unwrap();
/// assert!(m.find("w").unwrap());
/// drop(rx);
/// assert!(!m.find("w").unwrap());
/// ```
#[doc(alias = "RegisterClass")]
#[doc(alias = "CreateWindow")]
pub struct Receiver {
    name: String,
    shared: Arc<Shared>,
    reactor: Option<Reactor>,
    dispatcher: Option<JoinHandle<()>>,
    #[cfg(unix)]
    socket_path: PathBuf,
    _claim: listen::BoundClaim,
    /// The named pipe serving it (`\\.\pipe\ipckit.<H>.<name>`).
    #[cfg(windows)]
    os_name: String,
    /// The fabric subscription ([`ReceiverOptions::fabric`]).
    #[cfg(all(feature = "zenoh", unix))]
    member: Option<crate::fabric::broadcast::Member>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Receiver");
        d.field("name", &self.name);
        #[cfg(unix)]
        d.field("socket", &self.socket_path);
        #[cfg(windows)]
        d.field("pipe", &self.os_name);
        d.finish()
    }
}

impl Receiver {
    /// Register `handler` under `name` in the namespace from the
    /// environment (see [`ReceiverOptions::register`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let rx = ipckit::message::Receiver::register("w", |m| {
    ///     ipckit::message::Reply::new(m.data.len() as i64)
    /// }).unwrap();
    /// assert_eq!(rx.name(), "w");
    /// ```
    pub fn register<F>(name: &str, handler: F) -> Result<Receiver>
    where
        F: FnMut(&Message<'_>) -> Reply + Send + 'static,
    {
        ReceiverOptions::new().register(name, handler)
    }

    /// The name the receiver is registered under.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rx = ipckit::message::ReceiverOptions::new().namespace(&ns)
    ///     .register("w", |_| ipckit::message::Reply::new(0)).unwrap();
    /// assert_eq!(rx.name(), "w");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the receiver accepted, refused and dropped so far, and why
    /// (see [`ReceiverOptions::limits`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::message::{Messenger, ReceiverOptions, Reply};
    /// let rx = ReceiverOptions::new().namespace(&ns).register("w", |_| Reply::new(0)).unwrap();
    /// Messenger::new().namespace(&ns).send("w", 1, b"", std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!(rx.stats().accepted, 1);
    /// ```
    pub fn stats(&self) -> ConnStats {
        self.reactor
            .as_ref()
            .map(|r| r.counters().snapshot())
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        #[cfg(all(feature = "zenoh", unix))]
        drop(self.member.take());
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.socket_path);
        {
            let mut q = self.shared.lock();
            q.closing = true;
            q.sends.clear();
            q.posts.clear();
            q.post_bytes = 0;
        }
        self.shared.work.notify_all();
        if let Some(h) = self.dispatcher.take() {
            // (Dropped from inside the handler, the thread cannot wait for
            // itself; it stops after this message.)
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        // The reply of the message just handled goes out before the
        // connections close.
        if let Some(mut r) = self.reactor.take() {
            r.drain(DRAIN_GRACE);
        }
        self.shared.pool.stop();
    }
}

/// A connection to one receiver (the `HWND` a sender holds), reused across
/// sends and posts; after a call that broke the connection (a timeout, the
/// receiver gone) the next call reconnects by itself.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use std::time::Duration;
/// use ipckit::message::{Messenger, ReceiverOptions, Reply};
/// let _rx = ReceiverOptions::new().namespace(&ns)
///     .register("w", |m| Reply::new(m.id.into()).with_data(m.data.to_vec())).unwrap();
/// let mut w = Messenger::new().namespace(&ns).connect("w").unwrap();
/// let r = w.send(7, b"hi", Duration::from_secs(5)).unwrap();
/// assert_eq!((r.result, r.data.as_slice()), (7, b"hi".as_slice()));
/// w.post(8, b"later").unwrap();
/// ```
#[doc(alias = "HWND")]
#[derive(Debug)]
pub struct Window {
    name: String,
    ns: Namespace,
    trust: Trust,
    conn: Option<(Socket, usize)>,
}

impl Window {
    /// The receiver's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _rx = ipckit::message::ReceiverOptions::new().namespace(&ns)
    /// #     .register("w", |_| ipckit::message::Reply::new(0)).unwrap();
    /// let w = ipckit::message::Messenger::new().namespace(&ns).connect("w").unwrap();
    /// assert_eq!(w.name(), "w");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ensure(&mut self, deadline: Instant) -> Result<(SocketRef<'_>, usize)> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.ns, &self.name, &self.trust, deadline)?);
        }
        let (fd, max) = self.conn.as_ref().expect("connected above");
        Ok((fd.as_socket(), *max))
    }

    /// Send a message and wait until the receiver's handler returned
    /// (`SendMessageTimeout`). Errors: [`ErrorKind::Timeout`] (the handler
    /// did not finish in time; it may still run), [`ErrorKind::PeerGone`]
    /// (the receiver died or closed first), [`ErrorKind::NotFound`] (no
    /// such receiver), [`ErrorKind::Busy`] (the receiver is at its
    /// connection limit), [`ErrorKind::TooLarge`], [`ErrorKind::Remote`]
    /// (the handler panicked; the message names the panic).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let _rx = ipckit::message::ReceiverOptions::new().namespace(&ns).register("slow", |_| {
    ///     std::thread::sleep(Duration::from_millis(200));
    ///     ipckit::message::Reply::new(0)
    /// }).unwrap();
    /// let mut w = ipckit::message::Messenger::new().namespace(&ns).connect("slow").unwrap();
    /// let e = w.send(1, b"", Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    #[doc(alias = "SendMessage")]
    #[doc(alias = "SendMessageTimeout")]
    pub fn send(&mut self, id: u32, data: &[u8], timeout: Duration) -> Result<Reply> {
        self.call(wire::REQ_SEND, id, data, Instant::now() + timeout)
    }

    /// Queue a message and return once the receiver queued it
    /// (`PostMessage`); its handler runs later, after the messages queued
    /// before. [`ErrorKind::Full`] if the receiver has
    /// [`POST_QUEUE_LIMIT`] messages, or its
    /// [`max_queued_bytes`](Limits::max_queued_bytes), waiting.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _r = ipckit::message::ReceiverOptions::new().namespace(&ns).register("w", move |m| {
    ///     tx.send(m.id).unwrap();
    ///     ipckit::message::Reply::new(0)
    /// }).unwrap();
    /// let mut w = ipckit::message::Messenger::new().namespace(&ns).connect("w").unwrap();
    /// for id in 1..=3 { w.post(id, b"").unwrap(); }
    /// let got: Vec<u32> = rx.iter().take(3).collect();
    /// assert_eq!(got, [1, 2, 3]);
    /// ```
    #[doc(alias = "PostMessage")]
    pub fn post(&mut self, id: u32, data: &[u8]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.call(wire::REQ_POST, id, data, deadline).map(|_| ())
    }

    /// One request and its response. An error the receiver answered with
    /// leaves the connection in step and kept; any other drops it.
    fn call(&mut self, kind: u8, id: u32, data: &[u8], deadline: Instant) -> Result<Reply> {
        match self.exchange(kind, id, data, deadline) {
            Ok(answer) => answer,
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// `Err`: the connection is broken; `Ok(Err)`: the receiver refused.
    fn exchange(
        &mut self,
        kind: u8,
        id: u32,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Result<Reply>> {
        let name = self.name.clone();
        let (fd, max) = self.ensure(deadline)?;
        if data.len() > max {
            return Ok(Err(too_large(&name, data.len(), max)));
        }
        let gone = |what: &str| {
            Error::new(
                ErrorKind::PeerGone,
                format!("the receiver went away {what}; it died or unregistered"),
            )
            .with_name(&name)
        };
        let late = |what: &str| Error::new(ErrorKind::Timeout, what.to_string()).with_name(&name);
        let mut frame = wire::request(kind, id, data.len() as u32).to_vec();
        frame.extend_from_slice(data);
        // A receiver that stopped reading (a stopped process) cannot hold
        // this write past the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late("the timeout passed before the message could be sent"));
        }
        crate::conn::io::set_send_timeout(fd, Some(left))
            .map_err(|e| Error::os(e, "cannot set the send timeout").with_name(&name))?;
        if let Err(e) = crate::conn::io::send_all(fd, &frame) {
            return Err(match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    late("the receiver did not take the message in time; is its process stopped?")
                }
                _ => gone("before the message was delivered"),
            });
        }
        let mut h = [0u8; wire::LEN];
        match conn_io::recv_exact_until(fd, &mut h, deadline) {
            Ok(true) => {}
            Ok(false) => return Err(gone("before handling the message")),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(late(
                    "the receiver did not handle the message in time; it may still do so, so do not assume it was dropped",
                ))
            }
            Err(_) => return Err(gone("before handling the message")),
        }
        let Some((rkind, code, len, result)) = wire::parse_response(&h) else {
            return Err(
                Error::new(ErrorKind::Decode, "malformed response from the receiver")
                    .with_name(&name),
            );
        };
        if len as usize > MAX_REPLY {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "the receiver announced a reply of {len} bytes, over the limit of {MAX_REPLY}"
                ),
            )
            .with_name(&name));
        }
        let body = match conn_io::recv_body(fd, len as usize, Some(deadline)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(late("the receiver's reply did not arrive whole in time"))
            }
            Err(_) => return Err(gone("in the middle of its reply")),
        };
        Ok(answer(&name, rkind, code, result, body))
    }
}

/// A request refused before sending: `len` data bytes over the
/// receiver's limit `max`.
fn too_large(name: &str, len: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("message data of {len} bytes exceeds the receiver's limit of {max} bytes"),
    )
    .with_name(name)
    .with_needed(len)
}

/// A whole response (`kind`, `code`, `result`, `body`) as the caller's
/// result.
fn answer(name: &str, kind: u8, code: u8, result: i64, body: Vec<u8>) -> Result<Reply> {
    match kind {
        wire::RESP_REPLY | wire::RESP_QUEUED => Ok(Reply { result, data: body }),
        _ => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let (kind, what) = match code {
                wire::ERR_FULL => (ErrorKind::Full, "the receiver refused the message"),
                wire::ERR_TOO_LARGE => (ErrorKind::TooLarge, "the receiver refused the message"),
                wire::ERR_CLOSING => (ErrorKind::PeerGone, "the receiver refused the message"),
                wire::ERR_HANDLER => (
                    ErrorKind::Remote,
                    "the receiver failed to handle the message",
                ),
                _ => (ErrorKind::Remote, "the receiver answered with an error"),
            };
            Err(Error::new(kind, format!("{what}: {text}")).with_name(name))
        }
    }
}

/// Connect to the receiver `name` (one attempt) and read its hello by
/// `deadline`: its data limit, or why it refused (busy).
fn connect(
    ns: &Namespace,
    name: &str,
    trust: &Trust,
    deadline: Instant,
) -> Result<(Socket, usize)> {
    // Only ipckit names on Windows too (the dialer there would also take a
    // system pipe name, or `tcp://` as unsupported rather than invalid).
    #[cfg(windows)]
    crate::name::validate_name(name)?;
    let dialer = Dialer {
        name,
        what: WHAT,
        namespace: Some(ns),
        timeout: Duration::ZERO,
        tcp: false,
        trust,
    };
    dialer.run(|d| {
        let b = hello::read(d.fd.as_socket(), deadline, WHAT, name)?;
        let h = Hello::decode(&b, wire::MAGIC, wire::VERSION, WHAT, name)?;
        if let Some(e) = h.refusal(WHAT, name) {
            return Err(e);
        }
        Ok((d.fd, h.max as usize))
    })
}

/// One receiver's answer to a [`broadcast`].
///
/// ```
/// let b = ipckit::message::BroadcastReply { name: "w".into(), reply: Ok(ipckit::message::Reply::new(1)) };
/// assert_eq!(b.reply.unwrap().result, 1);
/// ```
#[derive(Debug)]
pub struct BroadcastReply {
    /// The receiver's name.
    pub name: String,
    /// Its handler's reply, or why there is none.
    pub reply: Result<Reply>,
}

/// Sender-side calls in one namespace: connect, send, post, broadcast,
/// find, register message ids. The free functions ([`send`], [`post`], …)
/// are shortcuts using the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let m = ipckit::message::Messenger::new().namespace(&ns).clone();
/// assert!(!m.find("nobody").unwrap());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Messenger {
    namespace: Option<Namespace>,
    trust: Trust,
    #[cfg(all(feature = "zenoh", unix))]
    fabric: Option<crate::fabric::Fabric>,
}

impl Messenger {
    /// Also trust receivers running as these uids. By default a sender
    /// talks only to a receiver running as its own uid or as the owner of
    /// the namespace directory (checked on the socket's peer credentials),
    /// and refuses any other with [`ErrorKind::PermissionDenied`].
    ///
    /// ```
    /// let _ = ipckit::message::Messenger::new().allow_server_uids(&[1001]);
    /// ```
    #[must_use]
    pub fn allow_server_uids(mut self, uids: &[u32]) -> Self {
        self.trust.uids = uids.to_vec();
        self
    }

    /// Talk to a receiver of any uid (the explicit opt-out of the check).
    ///
    /// ```
    /// let _ = ipckit::message::Messenger::new().allow_any_server();
    /// ```
    #[must_use]
    pub fn allow_any_server(mut self) -> Self {
        self.trust.any = true;
        self
    }

    /// A messenger for the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::message::Messenger::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Work in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::message::Messenger::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Also publish [`broadcast`](Self::broadcast)s on this Zenoh fabric
    /// (feature `zenoh`), reliably, to the receivers of every machine
    /// registered with [`ReceiverOptions::fabric`]; they handle it as a
    /// posted message. The broadcast's result still lists the replies of
    /// this namespace's receivers only (those on the fabric do not answer).
    /// Data over [`MAX_BROADCAST`](crate::fabric::MAX_BROADCAST) bytes is
    /// [`ErrorKind::TooLarge`], nothing sent. Default: none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-msg-fabric")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let m = ipckit::message::Messenger::new().namespace(&ns).fabric(&fabric);
    /// let big = vec![0u8; ipckit::fabric::MAX_BROADCAST + 1];
    /// let e = m.broadcast(9, &big, std::time::Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::TooLarge);
    /// ```
    #[cfg(all(feature = "zenoh", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    #[must_use]
    pub fn fabric(mut self, fabric: &crate::fabric::Fabric) -> Self {
        self.fabric = Some(fabric.clone());
        self
    }

    fn ns(&self) -> Result<Namespace> {
        match &self.namespace {
            Some(ns) => Ok(ns.clone()),
            None => Namespace::from_env(),
        }
    }

    /// Connect to the receiver `name`, for several calls (`FindWindow`
    /// returning the `HWND`). [`ErrorKind::NotFound`] if none is registered,
    /// [`ErrorKind::Busy`] if it is at one of its connection limits
    /// ([`ReceiverOptions::limits`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::message::Messenger::new().namespace(&ns).connect("none").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    pub fn connect(&self, name: &str) -> Result<Window> {
        let ns = self.ns()?;
        let conn = connect(
            &ns,
            name,
            &self.trust,
            Instant::now() + Duration::from_secs(10),
        )?;
        Ok(Window {
            name: name.to_string(),
            ns,
            trust: self.trust.clone(),
            conn: Some(conn),
        })
    }

    /// Whether a live receiver is registered under `name` (`FindWindow`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(!ipckit::message::Messenger::new().namespace(&ns).find("none").unwrap());
    /// ```
    #[doc(alias = "FindWindow")]
    pub fn find(&self, name: &str) -> Result<bool> {
        let ns = self.ns()?;
        let live = ns
            .info(name)?
            .is_some_and(|i| i.state == EndpointState::Live && i.kind == KIND);
        Ok(live)
    }

    /// Send one message to `name` and wait for its handler's reply (see
    /// [`Window::send`]); `timeout` covers connecting too.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::message::Messenger::new().namespace(&ns)
    ///     .send("none", 1, b"", std::time::Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "SendMessageTimeout")]
    pub fn send(&self, name: &str, id: u32, data: &[u8], timeout: Duration) -> Result<Reply> {
        let ns = self.ns()?;
        let deadline = Instant::now() + timeout;
        let conn = connect(&ns, name, &self.trust, deadline)?;
        let mut w = Window {
            name: name.to_string(),
            ns,
            trust: self.trust.clone(),
            conn: Some(conn),
        };
        w.call(wire::REQ_SEND, id, data, deadline)
    }

    /// Post one message to `name` (see [`Window::post`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let e = ipckit::message::Messenger::new().namespace(&ns).post("none", 1, b"").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "PostMessage")]
    pub fn post(&self, name: &str, id: u32, data: &[u8]) -> Result<()> {
        let mut w = self.connect(name)?;
        w.post(id, data)
    }

    /// Send a message to every live receiver of the namespace at once
    /// (`HWND_BROADCAST` with `SendMessageTimeout`), each with `timeout`,
    /// and collect every reply or error, sorted by receiver name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::message::{Messenger, ReceiverOptions, Reply};
    /// let _a = ReceiverOptions::new().namespace(&ns).register("a", |_| Reply::new(1)).unwrap();
    /// let _b = ReceiverOptions::new().namespace(&ns).register("b", |_| Reply::new(2)).unwrap();
    /// let all = Messenger::new().namespace(&ns).broadcast(9, b"", std::time::Duration::from_secs(5)).unwrap();
    /// let results: Vec<i64> = all.into_iter().map(|b| b.reply.unwrap().result).collect();
    /// assert_eq!(results, [1, 2]);
    /// ```
    #[doc(alias = "HWND_BROADCAST")]
    #[doc(alias = "BroadcastSystemMessage")]
    pub fn broadcast(
        &self,
        id: u32,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Vec<BroadcastReply>> {
        let ns = self.ns()?;
        #[cfg(all(feature = "zenoh", unix))]
        if self.fabric.is_some() {
            crate::fabric::broadcast::check_size("broadcast", data.len())?;
        }
        let names: Vec<String> = ns
            .list()?
            .into_iter()
            .filter(|e| e.kind == KIND && e.state == EndpointState::Live)
            .map(|e| e.name)
            .collect();
        let data = Arc::new(data.to_vec());
        let handles: Vec<_> = names
            .into_iter()
            .map(|name| {
                let me = Messenger {
                    namespace: Some(ns.clone()),
                    trust: self.trust.clone(),
                    #[cfg(all(feature = "zenoh", unix))]
                    fabric: None,
                };
                let data = data.clone();
                let n = name.clone();
                (
                    name,
                    std::thread::spawn(move || me.send(&n, id, &data, timeout)),
                )
            })
            .collect();
        let replies = handles
            .into_iter()
            .map(|(name, h)| {
                let reply = h.join().unwrap_or_else(|_| {
                    Err(Error::new(ErrorKind::Io, "the broadcast thread panicked").with_name(&name))
                });
                BroadcastReply { name, reply }
            })
            .collect();
        #[cfg(all(feature = "zenoh", unix))]
        if let Some(fabric) = &self.fabric {
            use crate::fabric::broadcast;
            let mut att = std::process::id().to_le_bytes().to_vec();
            att.extend_from_slice(broadcast::origin(ns.dir()).as_bytes());
            broadcast::send(
                fabric,
                "broadcast",
                fabric.alive_pattern("msg", "*"),
                broadcast::msg_key(fabric, id),
                &broadcast::msg_ack(fabric),
                &data,
                att,
                timeout.min(Duration::from_secs(2)),
            )?;
        }
        Ok(replies)
    }

    /// The id registered for `text` in this namespace, registering it if it
    /// is new (`RegisterWindowMessage`). Every process of the namespace gets
    /// the same id for the same text (compared ignoring ASCII case, as
    /// Win32 does), in [`REGISTERED_MIN`]`..=`[`REGISTERED_MAX`], stable
    /// until the namespace directory is cleared. Text: 1 to
    /// [`MAX_MESSAGE_TEXT`] bytes. [`ErrorKind::Full`] once all 16 384 ids
    /// are taken.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::message::Messenger::new().namespace(&ns).clone();
    /// let a = m.register_message("MyApp.Refresh").unwrap();
    /// assert_eq!(a, 0xC000);
    /// assert_eq!(m.register_message("myapp.refresh").unwrap(), a);
    /// assert_ne!(m.register_message("MyApp.Quit").unwrap(), a);
    /// assert_eq!(m.message_name(a).unwrap().as_deref(), Some("MyApp.Refresh"));
    /// ```
    #[doc(alias = "RegisterWindowMessage")]
    pub fn register_message(&self, text: &str) -> Result<u32> {
        REGISTRY.register(&self.ns()?, text)
    }

    /// The text registered for `id`, if any (`GetClipboardFormatName`'s
    /// counterpart for messages).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert_eq!(ipckit::message::Messenger::new().namespace(&ns).message_name(0xC000).unwrap(), None);
    /// ```
    pub fn message_name(&self, id: u32) -> Result<Option<String>> {
        REGISTRY.text(&self.ns()?, id)
    }
}

/// [`Messenger::send`] in the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let _rx = ipckit::message::Receiver::register("w", |m| ipckit::message::Reply::new(m.id.into())).unwrap();
/// let r = ipckit::message::send("w", 5, b"", std::time::Duration::from_secs(5)).unwrap();
/// assert_eq!(r.result, 5);
/// ```
#[doc(alias = "SendMessage")]
pub fn send(name: &str, id: u32, data: &[u8], timeout: Duration) -> Result<Reply> {
    Messenger::new().send(name, id, data, timeout)
}

/// [`Messenger::post`] in the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let _rx = ipckit::message::Receiver::register("w", |_| ipckit::message::Reply::new(0)).unwrap();
/// ipckit::message::post("w", 5, b"queued").unwrap();
/// ```
#[doc(alias = "PostMessage")]
pub fn post(name: &str, id: u32, data: &[u8]) -> Result<()> {
    Messenger::new().post(name, id, data)
}

/// [`Messenger::broadcast`] in the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// assert!(ipckit::message::broadcast(1, b"", std::time::Duration::from_secs(1)).unwrap().is_empty());
/// ```
#[doc(alias = "HWND_BROADCAST")]
pub fn broadcast(id: u32, data: &[u8], timeout: Duration) -> Result<Vec<BroadcastReply>> {
    Messenger::new().broadcast(id, data, timeout)
}

/// [`Messenger::find`] in the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// assert!(!ipckit::message::find("nobody").unwrap());
/// ```
#[doc(alias = "FindWindow")]
pub fn find(name: &str) -> Result<bool> {
    Messenger::new().find(name)
}

/// [`Messenger::register_message`] in the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let id = ipckit::message::register_message("Demo.Ping").unwrap();
/// assert!((0xC000..=0xFFFF).contains(&id));
/// ```
#[doc(alias = "RegisterWindowMessage")]
pub fn register_message(text: &str) -> Result<u32> {
    Messenger::new().register_message(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let h = Hello::ok(wire::MAGIC, wire::VERSION, 7).encode();
        let back = Hello::decode(&h, wire::MAGIC, wire::VERSION, WHAT, "w").unwrap();
        assert_eq!(back.max, 7);
        assert!(Hello::decode(&[0u8; 16], wire::MAGIC, wire::VERSION, WHAT, "w").is_err());
        assert_eq!(
            wire::parse_request(&wire::request(wire::REQ_POST, 9, 3)),
            Some((wire::REQ_POST, 9, 3))
        );
        assert_eq!(wire::parse_request(&wire::request(7, 9, 3)), None);
        assert_eq!(
            wire::parse_response(&wire::response(wire::RESP_REPLY, 0, 2, -5)),
            Some((wire::RESP_REPLY, 0, 2, -5))
        );
        assert_eq!(wire::parse_response(&[9u8; 16]), None);
    }

    #[test]
    fn bad_texts_and_corrupt_registry_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        let m = Messenger::new().namespace(&ns).clone();
        assert_eq!(
            m.register_message("").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let long = "x".repeat(MAX_MESSAGE_TEXT + 1);
        assert_eq!(
            m.register_message(&long).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        std::fs::write(ns.dir().join(REGISTRY.file), "garbage\n").unwrap();
        assert_eq!(
            m.register_message("a").unwrap_err().kind(),
            ErrorKind::Decode
        );
    }

    #[test]
    fn oversized_data_is_refused_and_the_connection_survives() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        let _rx = ReceiverOptions::new()
            .namespace(&ns)
            .max_message_size(4)
            .register("w", |m| Reply::new(m.data.len() as i64))
            .unwrap();
        let mut w = Messenger::new().namespace(&ns).connect("w").unwrap();
        let e = w.send(1, b"12345", Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(
            w.send(1, b"1234", Duration::from_secs(5)).unwrap().result,
            4
        );
    }
    #[test]
    fn a_panicking_handler_is_answered_as_remote_and_the_receiver_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        let _rx = ReceiverOptions::new()
            .namespace(&ns)
            .register("w", |m| {
                if m.id == 13 {
                    panic!("unlucky {}", m.data.len());
                }
                Reply::new(m.id.into())
            })
            .unwrap();
        let mut w = Messenger::new().namespace(&ns).connect("w").unwrap();
        let e = w.send(13, b"ab", Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Remote);
        assert!(e.to_string().contains("panicked: unlucky 2"), "{e}");
        // A posted message that panics is dropped; the receiver goes on.
        w.post(13, b"").unwrap();
        assert_eq!(w.send(7, b"", Duration::from_secs(5)).unwrap().result, 7);
    }

    #[test]
    fn posts_over_the_queued_bytes_are_full() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        let (gate_tx, gate) = std::sync::mpsc::channel::<()>();
        let (busy_tx, busy) = std::sync::mpsc::channel::<()>();
        let _rx = ReceiverOptions::new()
            .namespace(&ns)
            .limits(Limits::new().max_queued_bytes(100))
            .register("w", move |m| {
                if m.id == 1 {
                    busy_tx.send(()).unwrap();
                    let _ = gate.recv_timeout(Duration::from_secs(30));
                }
                Reply::new(0)
            })
            .unwrap();
        let mut w = Messenger::new().namespace(&ns).connect("w").unwrap();
        w.post(1, b"").unwrap();
        busy.recv_timeout(Duration::from_secs(30)).unwrap();
        w.post(2, &[0u8; 60]).unwrap();
        let e = w.post(3, &[0u8; 60]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Full, "{e}");
        w.post(4, &[0u8; 40]).unwrap();
        assert_eq!(w.post(5, b"x").unwrap_err().kind(), ErrorKind::Full);
        gate_tx.send(()).unwrap();
    }
}
