//! Mailslots (`CreateMailslot`): one reader, any number of writers,
//! one-way datagrams kept in order until read.
//!
//! The creator of a mailslot is its only reader. Any process of the same
//! user that knows the name can write to it. Each message arrives whole, in
//! the order each writer sent it. Locally nothing is dropped silently: the
//! reader acknowledges every write, so [`MailslotWriter::send`] returns only
//! once the message is queued, or with an error ([`ErrorKind::Full`] when
//! the queue stayed full until the writer's timeout, [`ErrorKind::TooLarge`]
//! above the mailslot's `max_message_size`) — never both, never neither.
//!
//! Process A (the reader):
//!
//! ```no_run
//! use ipckit::mailslot::MailslotOptions;
//! let slot = MailslotOptions::new().max_message_size(4096).create("jobs")?;
//! loop {
//!     let msg = slot.recv()?;
//!     println!("{}", String::from_utf8_lossy(&msg));
//! }
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (a writer):
//!
//! ```no_run
//! ipckit::mailslot::MailslotWriter::open("jobs")?.send(b"rebuild index")?;
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! **Broadcast.** Several processes may each join a *group* of the same name
//! ([`MailslotOptions::join_group`]); [`send_to_group`] writes the message to
//! every live member on this machine (the Win32 `\\*\mailslot\name` write).
//! **Across machines** a reader may also listen on UDP
//! ([`MailslotOptions::udp`]) and writers send datagrams with
//! [`send_datagram`]: that transport is lossy, as it was in Win32, and
//! limited to [`UDP_MAX_MESSAGE`] (424) bytes.
//!
//! **Async.** With the `tokio` feature, [`tokio::Mailslot`] reads with
//! `recv().await` and [`tokio::MailslotWriter`] writes with `send().await`.
//!
//! Transport: a Unix stream socket per mailslot in the namespace; the wire
//! format is in `docs/PROTOCOL.md`, "Mailslots".

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod wire;

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conn::dial::{Dialer, Trust};
use crate::conn::pool::Pool;
use crate::conn::reactor::{Conn, Flow, Frame, FrameLen, Protocol, Reactor, Refusal};
use crate::conn::{hello, io, listen};
use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::name::{validate_name, Claim, EndpointState, Namespace};

/// Default queue bound: 4096 messages.
pub const DEFAULT_QUEUE_BOUND: usize = 4096;
/// The largest message a mailslot with `max_message_size` 0 ("unlimited")
/// accepts: 1 GiB.
pub const UNLIMITED_CAP: usize = 1 << 30;
/// Largest payload of a UDP (cross-machine) mailslot message, as in Win32.
pub const UDP_MAX_MESSAGE: usize = 424;
/// How long a writer waits for queue space by default: 5 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Extra time a writer waits for the acknowledgement beyond its own timeout
/// (the reader decides within the writer's timeout; this covers scheduling).
const ACK_GRACE: Duration = Duration::from_secs(10);
/// Longest a fabric group send asks who the members are.
#[cfg(feature = "zenoh")]
const FABRIC_ASK: Duration = Duration::from_secs(2);
/// How long a writer waits for the mailslot's hello.
const HELLO_WAIT: Duration = Duration::from_secs(10);

/// Endpoint kind of a mailslot in the namespace.
const KIND: &str = "mailslot";
/// Endpoint kind of a group member.
const MEMBER_KIND: &str = "mailslot-member";
/// Suffix of the directory holding a group's members.
const GROUP_SUFFIX: &str = ".group";

/// Settings for creating a mailslot (`CreateMailslot`).
///
/// ```
/// use std::time::Duration;
/// use ipckit::mailslot::MailslotOptions;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = MailslotOptions::new()
///     .max_message_size(512)
///     .read_timeout(Some(Duration::from_millis(10)))
///     .queue_bound(64)
///     .namespace(&ns)
///     .create("inbox")
///     .unwrap();
/// assert_eq!(slot.recv().unwrap_err().kind(), ipckit::ErrorKind::Timeout);
/// ```
#[doc(alias = "CreateMailslot")]
#[derive(Debug, Clone)]
pub struct MailslotOptions {
    max_message_size: usize,
    read_timeout: Option<Duration>,
    queue_bound: usize,
    limits: Limits,
    udp: Option<String>,
    namespace: Option<Namespace>,
    #[cfg(feature = "zenoh")]
    fabric: Option<crate::fabric::Fabric>,
}

impl Default for MailslotOptions {
    fn default() -> Self {
        MailslotOptions {
            max_message_size: 0,
            read_timeout: None,
            queue_bound: DEFAULT_QUEUE_BOUND,
            limits: Limits::default(),
            udp: None,
            namespace: None,
            #[cfg(feature = "zenoh")]
            fabric: None,
        }
    }
}

impl MailslotOptions {
    /// Defaults: unlimited message size (up to [`UNLIMITED_CAP`]), reads
    /// wait forever, [`DEFAULT_QUEUE_BOUND`] messages, no UDP, the
    /// namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest message in bytes (`nMaxMessageSize`); 0 means unlimited
    /// (capped at [`UNLIMITED_CAP`]). Larger writes fail with
    /// [`ErrorKind::TooLarge`]. Default 0.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().max_message_size(424);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long [`Mailslot::recv`] waits (`lReadTimeout`); `None` waits
    /// forever (`MAILSLOT_WAIT_FOREVER`), zero returns at once. Default
    /// `None`.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().read_timeout(Some(std::time::Duration::ZERO));
    /// ```
    #[must_use]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Most messages queued unread; a writer finding the queue full waits
    /// up to its timeout, then gets [`ErrorKind::Full`]. Default
    /// [`DEFAULT_QUEUE_BOUND`].
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().queue_bound(16);
    /// ```
    #[must_use]
    pub fn queue_bound(mut self, messages: usize) -> Self {
        self.queue_bound = messages;
        self
    }

    /// What the mailslot accepts from writers (see [`Limits`]): writer
    /// connections in total, per process and per user, how long a writer
    /// may stall inside a message, and `max_queued_bytes` (default 64 MiB):
    /// a write that would queue more than that waits for the reader like a
    /// write to a full queue. Default [`Limits::default`].
    ///
    /// ```
    /// let l = ipckit::Limits::new().max_queued_bytes(1 << 20);
    /// let _ = ipckit::mailslot::MailslotOptions::new().limits(l);
    /// ```
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also receive UDP datagrams at `addr` (`HOST:PORT`; port 0 picks one,
    /// see [`Mailslot::udp_addr`]; an IPv4 multicast address joins that
    /// group). Datagrams for another mailslot name, over
    /// [`UDP_MAX_MESSAGE`] bytes, or arriving while the queue is full are
    /// dropped and counted ([`Mailslot::udp_dropped`]): UDP is lossy. There
    /// is no authentication on UDP: bind to loopback unless the network is
    /// trusted.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().udp("127.0.0.1:0");
    /// ```
    #[must_use]
    pub fn udp(mut self, addr: impl Into<String>) -> Self {
        self.udp = Some(addr.into());
        self
    }

    /// Create the mailslot in `ns` instead of the namespace from the
    /// environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::mailslot::MailslotOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    fn ns(&self) -> Result<Namespace> {
        match &self.namespace {
            Some(ns) => Ok(ns.clone()),
            None => Namespace::from_env(),
        }
    }

    /// Create the mailslot `name`; this process is its reader. A live
    /// mailslot of that name gives [`ErrorKind::AlreadyExists`]; a stale
    /// one is replaced.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let a = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let b = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m");
    /// assert_eq!(b.unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// # drop(a);
    /// ```
    pub fn create(&self, name: &str) -> Result<Mailslot> {
        let ns = self.ns()?;
        self.create_in(&ns, name, KIND)
    }

    /// Members made by [`join_group`](Self::join_group) also receive the
    /// group's messages from every machine of this Zenoh fabric (feature
    /// `zenoh`): they subscribe to `ipckit/<namespace>/group/<group>`, where
    /// a [`WriterOptions::fabric`] sender publishes, reliably and up to
    /// [`MAX_BROADCAST`](crate::fabric::MAX_BROADCAST) bytes (no 424-byte
    /// cap). A message over this mailslot's `max_message_size`, or arriving
    /// while its queue is full, is dropped and counted
    /// ([`Mailslot::fabric_dropped`]). Plain [`create`](Self::create)
    /// ignores the fabric. Default: none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-slot-fabric")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let member = ipckit::mailslot::MailslotOptions::new().namespace(&ns)
    ///     .fabric(&fabric).join_group("news").unwrap();
    /// let sent = ipckit::mailslot::WriterOptions::new().namespace(&ns)
    ///     .fabric(&fabric).send_to_group("news", b"hi").unwrap();
    /// assert_eq!((sent.delivered, sent.fabric_members), (1, 1));
    /// // Once: the member is in the sender's own namespace, so it skips the fabric copy.
    /// assert_eq!(member.recv().unwrap(), b"hi");
    /// assert!(member.recv_timeout(std::time::Duration::from_millis(100)).is_err());
    /// ```
    #[cfg(feature = "zenoh")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    #[must_use]
    pub fn fabric(mut self, fabric: &crate::fabric::Fabric) -> Self {
        self.fabric = Some(fabric.clone());
        self
    }

    /// Join the broadcast group `group`: create a mailslot that receives
    /// every [`send_to_group`] to that group name, beside the other members
    /// (each in its own process, or several in one). The member leaves the
    /// group when dropped; a member whose process died is skipped and
    /// cleaned up by the next group send.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let a = ipckit::mailslot::MailslotOptions::new().namespace(&ns).join_group("news").unwrap();
    /// let b = ipckit::mailslot::MailslotOptions::new().namespace(&ns).join_group("news").unwrap();
    /// let sent = ipckit::mailslot::WriterOptions::new().namespace(&ns).send_to_group("news", b"hi").unwrap();
    /// assert_eq!(sent.delivered, 2);
    /// assert_eq!(a.recv().unwrap(), b"hi");
    /// assert_eq!(b.recv().unwrap(), b"hi");
    /// ```
    pub fn join_group(&self, group: &str) -> Result<Mailslot> {
        validate_name(group)?;
        let ns = self.ns()?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let member = format!("{group}{GROUP_SUFFIX}/{}-{n}", std::process::id());
            match self.create_in(&ns, &member, MEMBER_KIND) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                #[cfg(feature = "zenoh")]
                Ok(mut slot) => {
                    if let Some(fabric) = &self.fabric {
                        slot.member = Some(join_fabric(fabric, &ns, group, &slot.shared)?);
                    }
                    return Ok(slot);
                }
                r => return r,
            }
        }
    }

    fn create_in(&self, ns: &Namespace, name: &str, kind: &str) -> Result<Mailslot> {
        if self.max_message_size > UNLIMITED_CAP {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_message_size {} is above the cap of {UNLIMITED_CAP} bytes; use 0 for the cap or a smaller size",
                    self.max_message_size
                ),
            )
            .with_name(name));
        }
        if self.queue_bound == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a queue bound of 0 would refuse every message; use at least 1",
            )
            .with_name(name));
        }
        let bound = listen::bind(ns, name, kind, None)?;
        let udp = match &self.udp {
            Some(a) => {
                let addr = crate::conn::datagram::resolve(a)
                    .ctx(name, "cannot resolve the UDP address")?;
                Some(crate::conn::datagram::bind(addr).ctx(name, "cannot bind the UDP socket")?)
            }
            None => None,
        };
        let udp_addr = match &udp {
            Some(s) => Some(s.local_addr().ctx(name, "cannot read the UDP address")?),
            None => None,
        };
        let limit = if self.max_message_size == 0 {
            UNLIMITED_CAP
        } else {
            self.max_message_size
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            queue: Mutex::new(Queue::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            bound: self.queue_bound,
            max_bytes: self.limits.get_max_queued_bytes(),
            limit,
            advertised: self.max_message_size as u32,
            stop: AtomicBool::new(false),
            udp_dropped: AtomicU64::new(0),
            #[cfg(feature = "zenoh")]
            fabric_dropped: AtomicU64::new(0),
            #[cfg(feature = "tokio")]
            arrived: ::tokio::sync::Notify::new(),
        });
        let mut threads = Vec::new();
        if let Some(sock) = udp {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ipckit-slot-udp-{name}"))
                    .spawn(move || udp_loop(shared, sock))
                    .ctx(name, "cannot start the mailslot's UDP thread")?,
            );
        }
        let protocol = Arc::new(Writers {
            shared: shared.clone(),
            pool: Pool::new(MAX_WORKERS, format!("slot-{name}")),
        });
        let reactor = Reactor::start(
            &format!("slot-{name}"),
            protocol.clone(),
            bound.listening,
            self.limits.clone(),
        )
        .ctx(name, "cannot start the mailslot's connection loop")?;
        Ok(Mailslot {
            shared,
            threads,
            reactor,
            pool: protocol.pool.clone(),
            socket_path: bound.socket_path,
            read_timeout: self.read_timeout,
            udp_addr,
            _claim: bound.claim,
            #[cfg(feature = "zenoh")]
            member: None,
        })
    }
}

/// Subscribe a group member to the group's fabric broadcasts.
#[cfg(feature = "zenoh")]
fn join_fabric(
    fabric: &crate::fabric::Fabric,
    ns: &Namespace,
    group: &str,
    shared: &Arc<Shared>,
) -> Result<crate::fabric::broadcast::Member> {
    use crate::fabric::broadcast;
    let mine = broadcast::origin(ns.dir()).into_bytes();
    let shared = shared.clone();
    broadcast::join(
        fabric,
        "group",
        group,
        broadcast::group_key(fabric, group),
        broadcast::group_ack(fabric, group),
        move |_key, payload, origin| {
            if origin == mine.as_slice() {
                return; // the sender delivered it directly
            }
            let queued = payload.len() <= shared.limit && {
                let mut q = shared.lock();
                let fits = q.msgs.is_empty()
                    || (q.msgs.len() < shared.bound && q.bytes + payload.len() <= shared.max_bytes);
                if fits && !shared.stopping() {
                    q.push(payload.to_vec());
                }
                fits
            };
            if queued {
                shared.wake_readers();
            } else {
                shared.fabric_dropped.fetch_add(1, Ordering::Relaxed);
            }
        },
    )
}

/// How long closing a mailslot waits for acknowledgements being written.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Workers that queue messages (a writer facing a full queue waits on one
/// of them, never on the connection loop).
const MAX_WORKERS: usize = 64;

/// The queued messages and their total size.
#[derive(Default)]
struct Queue {
    msgs: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Queue {
    fn push(&mut self, m: Vec<u8>) {
        self.bytes += m.len();
        self.msgs.push_back(m);
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let m = self.msgs.pop_front()?;
        self.bytes -= m.len();
        Some(m)
    }
}

struct Shared {
    name: String,
    queue: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
    /// Most messages queued.
    bound: usize,
    /// Most bytes queued (a single message always fits an empty queue).
    max_bytes: usize,
    limit: usize,
    advertised: u32,
    stop: AtomicBool,
    udp_dropped: AtomicU64,
    /// Fabric broadcasts dropped (too large, queue full).
    #[cfg(feature = "zenoh")]
    fabric_dropped: AtomicU64,
    /// Wakes async readers ([`tokio::Mailslot`]) when a message is queued.
    #[cfg(feature = "tokio")]
    arrived: ::tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// A message was queued: wake a blocking reader and every async one.
    fn wake_readers(&self) {
        self.not_empty.notify_one();
        #[cfg(feature = "tokio")]
        self.arrived.notify_waiters();
    }

    /// Take the next message, if any, making room for a waiting writer.
    fn take(&self) -> Option<Vec<u8>> {
        let m = self.lock().pop()?;
        self.not_full.notify_all();
        Some(m)
    }

    /// The error of a read that found nothing within `timeout`.
    fn timed_out(&self, timeout: Duration) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!("no message arrived within {timeout:?}; wait longer or check the writers"),
        )
        .with_name(&self.name)
    }
}

/// What [`Mailslot::pending`] reports (`GetMailslotInfo`).
///
/// ```
/// let info = ipckit::mailslot::MailslotInfo { count: 0, next_size: None };
/// assert!(info.next_size.is_none());
/// ```
#[doc(alias = "GetMailslotInfo")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailslotInfo {
    /// Messages waiting to be read (`lpMessageCount`).
    pub count: usize,
    /// Size of the next message, `None` if there is none
    /// (`lpNextSize`, `MAILSLOT_NO_MESSAGE`).
    pub next_size: Option<usize>,
}

/// A mailslot's reading end, held by its creator. Dropping it removes the
/// name; writers still connected get [`ErrorKind::PeerGone`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
/// let mut w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
/// w.send(b"one").unwrap();
/// w.send(b"two").unwrap();
/// assert_eq!(slot.pending().count, 2);
/// assert_eq!(slot.pending().next_size, Some(3));
/// assert_eq!(slot.recv().unwrap(), b"one");
/// assert_eq!(slot.recv().unwrap(), b"two");
/// ```
pub struct Mailslot {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    reactor: Reactor,
    pool: Arc<Pool>,
    socket_path: std::path::PathBuf,
    read_timeout: Option<Duration>,
    udp_addr: Option<SocketAddr>,
    _claim: Claim,
    /// The fabric subscription of a group member ([`MailslotOptions::fabric`]).
    #[cfg(feature = "zenoh")]
    member: Option<crate::fabric::broadcast::Member>,
}

impl std::fmt::Debug for Mailslot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailslot")
            .field("name", &self.shared.name)
            .field("socket", &self.socket_path)
            .field("udp", &self.udp_addr)
            .finish()
    }
}

impl Mailslot {
    /// Create a mailslot with default options (see [`MailslotOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let slot = ipckit::mailslot::Mailslot::create("box").unwrap();
    /// assert_eq!(slot.name(), "box");
    /// ```
    #[doc(alias = "CreateMailslot")]
    pub fn create(name: &str) -> Result<Mailslot> {
        MailslotOptions::new().create(name)
    }

    /// The mailslot's endpoint name (for a group member,
    /// `GROUP.group/PID-N`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The UDP address actually bound, if the mailslot listens on UDP.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).udp("127.0.0.1:0").create("n").unwrap();
    /// assert_ne!(s.udp_addr().unwrap().port(), 0);
    /// ```
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// UDP datagrams dropped so far (malformed, for another name, too large,
    /// or arriving while the queue was full).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.udp_dropped(), 0);
    /// ```
    pub fn udp_dropped(&self) -> u64 {
        self.shared.udp_dropped.load(Ordering::Relaxed)
    }

    /// Group messages from the fabric dropped so far: over this mailslot's
    /// `max_message_size`, or arriving while its queue was full (see
    /// [`MailslotOptions::fabric`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).join_group("g").unwrap();
    /// assert_eq!(s.fabric_dropped(), 0);
    /// ```
    #[cfg(feature = "zenoh")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    pub fn fabric_dropped(&self) -> u64 {
        self.shared.fabric_dropped.load(Ordering::Relaxed)
    }

    /// Read the next message, waiting up to the read timeout set at creation
    /// (`ReadFile`); [`ErrorKind::Timeout`] if none came.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// ipckit::mailslot::WriterOptions::new().namespace(&ns).open("n").unwrap().send(b"").unwrap();
    /// assert_eq!(s.recv().unwrap(), b""); // empty messages are messages too
    /// ```
    #[doc(alias = "ReadFile")]
    pub fn recv(&self) -> Result<Vec<u8>> {
        self.next(self.read_timeout)
    }

    /// Read the next message, waiting at most `timeout` whatever the read
    /// timeout set at creation.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// let e = s.recv_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.next(Some(timeout))
    }

    fn next(&self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = self.shared.lock();
        loop {
            if let Some(m) = q.pop() {
                drop(q);
                self.shared.not_full.notify_all();
                return Ok(m);
            }
            q = match deadline {
                None => self
                    .shared
                    .not_empty
                    .wait(q)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.shared.timed_out(timeout.unwrap_or_default()));
                    }
                    self.shared
                        .not_empty
                        .wait_timeout(q, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Read the next message if one is queued, without waiting; `Ok(None)`
    /// if none is.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.try_recv().unwrap(), None);
    /// ipckit::mailslot::WriterOptions::new().namespace(&ns).open("n").unwrap().send(b"x").unwrap();
    /// assert_eq!(s.try_recv().unwrap().as_deref(), Some(&b"x"[..]));
    /// ```
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.shared.take())
    }

    /// How many messages wait, and the size of the next one
    /// (`GetMailslotInfo`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.pending(), ipckit::mailslot::MailslotInfo { count: 0, next_size: None });
    /// ```
    #[doc(alias = "GetMailslotInfo")]
    pub fn pending(&self) -> MailslotInfo {
        let q = self.shared.lock();
        MailslotInfo {
            count: q.msgs.len(),
            next_size: q.msgs.front().map(Vec::len),
        }
    }
}

impl Drop for Mailslot {
    fn drop(&mut self) {
        #[cfg(feature = "zenoh")]
        drop(self.member.take());
        self.shared.stop.store(true, Ordering::Release);
        self.shared.not_full.notify_all();
        // A writer whose message was just taken by `recv` still gets its
        // acknowledgement before the connections close.
        self.reactor.drain(DRAIN_GRACE);
        self.pool.stop();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// The mailslot's side of the connection loop: writers' messages.
struct Writers {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
}

impl Protocol for Writers {
    fn header_len(&self) -> usize {
        wire::WRITE_LEN
    }

    fn frame_len(&self, header: &[u8]) -> std::result::Result<FrameLen, String> {
        let h: &[u8; wire::WRITE_LEN] = header.try_into().map_err(|_| "short header")?;
        let Some((len, _)) = wire::parse_write(h) else {
            return Err(format!("malformed write header {h:02x?}"));
        };
        let total = wire::WRITE_LEN + len as usize;
        Ok(if len as usize > self.shared.limit {
            FrameLen::Skip(total)
        } else {
            FrameLen::Whole(total)
        })
    }

    fn hello(&self, _conn: &Conn) -> Vec<u8> {
        wire::hello(self.shared.advertised).to_vec()
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        wire::hello_refused(self.shared.advertised, why.status()).to_vec()
    }

    /// One write at a time per writer: the connection pauses until the
    /// message is queued (or refused) and acknowledged.
    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow {
        let (shared, conn) = (self.shared.clone(), conn.clone());
        conn.begin();
        self.pool.submit(Box::new(move || {
            let status = if frame.skipped {
                wire::ACK_TOO_LARGE
            } else {
                let mut bytes = frame.bytes;
                let h: [u8; wire::WRITE_LEN] = bytes[..wire::WRITE_LEN].try_into().expect("header");
                let (_, timeout_ms) = wire::parse_write(&h).expect("checked by frame_len");
                bytes.drain(..wire::WRITE_LEN);
                enqueue(&shared, bytes, timeout_ms)
            };
            let count = if status == wire::ACK_TOO_LARGE {
                shared.advertised
            } else {
                0
            };
            if conn.send(&wire::ack(status, count)).is_err() || status == wire::ACK_CLOSING {
                conn.close(None);
            } else {
                conn.resume();
            }
            conn.end();
        }));
        Flow::Pause
    }
}

fn enqueue(shared: &Shared, body: Vec<u8>, timeout_ms: u32) -> u8 {
    let deadline = (timeout_ms != wire::FOREVER)
        .then(|| Instant::now() + Duration::from_millis(timeout_ms.into()));
    let mut q = shared.lock();
    let fits = |q: &Queue| {
        q.msgs.is_empty()
            || (q.msgs.len() < shared.bound && q.bytes + body.len() <= shared.max_bytes)
    };
    while !fits(&q) {
        if shared.stopping() {
            return wire::ACK_CLOSING;
        }
        // Wake up now and then to notice the mailslot closing.
        let mut wait = Duration::from_millis(200);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return wire::ACK_FULL;
            }
            wait = wait.min(left);
        }
        q = shared
            .not_full
            .wait_timeout(q, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    if shared.stopping() {
        return wire::ACK_CLOSING;
    }
    q.push(body);
    drop(q);
    shared.wake_readers();
    wire::ACK_QUEUED
}

fn udp_loop(shared: Arc<Shared>, sock: UdpSocket) {
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stopping() {
        let n = match crate::conn::datagram::recv_timeout(
            &sock,
            &mut buf,
            Duration::from_millis(100),
        ) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(_) => return,
        };
        let ok = match wire::parse_datagram(&buf[..n]) {
            Some((name, payload))
                if name == shared.name && payload.len() <= UDP_MAX_MESSAGE.min(shared.limit) =>
            {
                let mut q = shared.lock();
                if q.msgs.len() < shared.bound && q.bytes + payload.len() <= shared.max_bytes {
                    q.push(payload.to_vec());
                    drop(q);
                    shared.wake_readers();
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if !ok {
            shared.udp_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Settings for writing to mailslots: namespace and how long a write waits
/// for queue space.
///
/// ```
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::mailslot::WriterOptions::new()
///     .namespace(&ns)
///     .timeout(Duration::from_millis(100))
///     .open("absent")
///     .unwrap_err();
/// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
/// ```
#[derive(Debug, Clone)]
pub struct WriterOptions {
    timeout: Option<Duration>,
    namespace: Option<Namespace>,
    trust: Trust,
    #[cfg(feature = "zenoh")]
    fabric: Option<crate::fabric::Fabric>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            timeout: Some(DEFAULT_WRITE_TIMEOUT),
            namespace: None,
            trust: Trust::default(),
            #[cfg(feature = "zenoh")]
            fabric: None,
        }
    }
}

impl WriterOptions {
    /// Also trust servers running as these uids. By default a client talks
    /// only to a server running as its own uid or as the owner of the
    /// namespace directory (checked on the socket's peer credentials), and
    /// refuses any other with [`ErrorKind::PermissionDenied`]: another user
    /// may have put an impostor in the namespace.
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new().allow_server_uids(&[1001]);
    /// ```
    #[must_use]
    pub fn allow_server_uids(mut self, uids: &[u32]) -> Self {
        self.trust.uids = uids.to_vec();
        self
    }

    /// Talk to a server of any uid (the explicit opt-out of the check).
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new().allow_any_server();
    /// ```
    #[must_use]
    pub fn allow_any_server(mut self) -> Self {
        self.trust.any = true;
        self
    }

    /// Defaults: writes wait up to [`DEFAULT_WRITE_TIMEOUT`] for queue
    /// space; the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a write waits for room in a full queue before failing with
    /// [`ErrorKind::Full`]; zero fails at once.
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new().timeout(std::time::Duration::ZERO);
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait for room as long as it takes (the reader closing still ends the
    /// wait).
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new().wait_forever();
    /// ```
    #[must_use]
    pub fn wait_forever(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Look names up in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::mailslot::WriterOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Also publish [`send_to_group`](Self::send_to_group) messages on this
    /// Zenoh fabric (feature `zenoh`), so that members on every machine get
    /// them ([`MailslotOptions::fabric`]): reliably, up to
    /// [`MAX_BROADCAST`](crate::fabric::MAX_BROADCAST) bytes
    /// ([`ErrorKind::TooLarge`] above, nothing sent). Members in this
    /// writer's own namespace still get it directly, once. Default: none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-writer-fabric")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).fabric(&fabric);
    /// let big = vec![0u8; ipckit::fabric::MAX_BROADCAST + 1];
    /// assert_eq!(w.send_to_group("news", &big).unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
    /// ```
    #[cfg(feature = "zenoh")]
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

    /// Open the mailslot `name` for writing (`CreateFile` on
    /// `\\.\mailslot\name`). [`ErrorKind::NotFound`] if no reader has
    /// created it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// assert_eq!(w.name(), "m");
    /// # drop(slot);
    /// ```
    pub fn open(&self, name: &str) -> Result<MailslotWriter> {
        validate_name(name)?;
        let ns = self.ns()?;
        self.open_in(&ns, name)
    }

    fn open_in(&self, ns: &Namespace, name: &str) -> Result<MailslotWriter> {
        let dialer = Dialer {
            name,
            what: "mailslot",
            namespace: Some(ns),
            timeout: Duration::ZERO,
            tcp: false,
            trust: &self.trust,
        };
        let (fd, h) = dialer.run(|d| {
            let h = hello::read(d.fd.as_fd(), Instant::now() + HELLO_WAIT, "mailslot", name)?;
            Ok((d.fd, h))
        })?;
        let max = wire::parse_hello(&h, name)?;
        Ok(MailslotWriter {
            name: name.to_string(),
            fd,
            max_message: if max == 0 {
                UNLIMITED_CAP
            } else {
                max as usize
            },
            timeout: self.timeout,
            broken: false,
        })
    }

    /// Write `msg` to every live member of the broadcast group `group` on
    /// this machine. Members whose process died are skipped and their
    /// records removed. Each member's outcome is reported: a full member
    /// queue is an error for that member, not a silent drop. The writer's
    /// [`timeout`](Self::timeout) bounds the whole call: members not tried
    /// once it is used up fail with `Timeout`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let sent = ipckit::mailslot::WriterOptions::new().namespace(&ns).send_to_group("none", b"x").unwrap();
    /// assert_eq!(sent.delivered, 0);
    /// ```
    pub fn send_to_group(&self, group: &str, msg: &[u8]) -> Result<GroupDelivery> {
        validate_name(group)?;
        let ns = self.ns()?;
        let mut out = GroupDelivery::default();
        #[cfg(feature = "zenoh")]
        if self.fabric.is_some() {
            crate::fabric::broadcast::check_size(group, msg.len())?;
        }
        // The timeout bounds the whole group send, not each member: a
        // member whose queue stays full uses up what is left, and the
        // members after it are not tried (each gets `Timeout`).
        let deadline = self.timeout.map(|t| Instant::now() + t);
        for member in group_members(&ns, group, &mut out)? {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                out.count(Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "not tried: the group send's timeout ({:?}) was used up by the members before it; give the send a longer timeout",
                        self.timeout.unwrap_or_default()
                    ),
                )
                .with_name(&member)));
                continue;
            }
            let r = self.open_in(&ns, &member).and_then(|mut w| {
                w.timeout = left;
                w.send(msg)
            });
            out.count(r);
        }
        #[cfg(feature = "zenoh")]
        if let Some(fabric) = &self.fabric {
            use crate::fabric::broadcast;
            let ask = self
                .timeout
                .unwrap_or(DEFAULT_WRITE_TIMEOUT)
                .min(FABRIC_ASK);
            out.fabric_members = broadcast::send(
                fabric,
                group,
                fabric.alive_pattern("group", group),
                broadcast::group_key(fabric, group),
                &broadcast::group_ack(fabric, group),
                msg,
                broadcast::origin(ns.dir()).into_bytes(),
                ask,
            )?;
        }
        Ok(out)
    }
}

/// The live members of `group` in `ns`, removing (and counting in `out`)
/// the records of dead ones.
fn group_members(ns: &Namespace, group: &str, out: &mut GroupDelivery) -> Result<Vec<String>> {
    let prefix = format!("{group}{GROUP_SUFFIX}/");
    let mut live = Vec::new();
    for ep in ns.list()? {
        if !ep.name.starts_with(&prefix) || ep.name[prefix.len()..].contains('/') {
            continue;
        }
        if ep.state == EndpointState::Stale {
            let _ = ns.remove_stale(&ep.name);
            out.stale_removed += 1;
            continue;
        }
        if ep.kind == MEMBER_KIND {
            live.push(ep.name);
        }
    }
    Ok(live)
}

impl GroupDelivery {
    /// Count one member's outcome.
    fn count(&mut self, r: Result<()>) {
        match r {
            Ok(()) => self.delivered += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => self.stale_removed += 1,
            Err(e) => self.failed.push(e),
        }
    }
}

/// The outcome of [`send_to_group`].
///
/// ```
/// let d = ipckit::mailslot::GroupDelivery::default();
/// assert_eq!(d.delivered, 0);
/// assert!(d.failed.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct GroupDelivery {
    /// Members that queued the message.
    pub delivered: usize,
    /// Members that refused it (full, too large, gone mid-write), one error
    /// each, naming the member.
    pub failed: Vec<Error>,
    /// Dead members skipped (and cleaned up).
    pub stale_removed: usize,
    /// Members on the fabric, on any machine (this one's included, which
    /// skip the fabric copy), the message was published to
    /// ([`WriterOptions::fabric`]): those that had joined when the send
    /// began and answered it. The send returns once the message reached
    /// them (or they left). 0 without a fabric. (A member whose queue was full drops the
    /// message and counts it in [`Mailslot::fabric_dropped`].)
    pub fabric_members: usize,
}

/// A writer to one mailslot (`CreateFile` + `WriteFile`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = ipckit::mailslot::MailslotOptions::new()
///     .namespace(&ns).max_message_size(4).create("m").unwrap();
/// let mut w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
/// assert_eq!(w.send(b"too long").unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
/// w.send(b"ok").unwrap();
/// assert_eq!(slot.recv().unwrap(), b"ok");
/// ```
#[derive(Debug)]
pub struct MailslotWriter {
    name: String,
    fd: OwnedFd,
    max_message: usize,
    timeout: Option<Duration>,
    broken: bool,
}

impl MailslotWriter {
    /// Open `name` in the namespace from the environment, with the default
    /// write timeout (see [`WriterOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let slot = ipckit::mailslot::Mailslot::create("box").unwrap();
    /// ipckit::mailslot::MailslotWriter::open("box").unwrap().send(b"hi").unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"hi");
    /// ```
    pub fn open(name: &str) -> Result<MailslotWriter> {
        WriterOptions::new().open(name)
    }

    /// The mailslot's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// assert_eq!(w.name(), "m");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message the mailslot accepts.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).max_message_size(9).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// assert_eq!(w.max_message_size(), 9);
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.max_message
    }

    /// Write one message (`WriteFile`), waiting for queue space up to the
    /// writer's timeout. Returns once the reader has queued the message
    /// whole. Errors: [`ErrorKind::TooLarge`] (nothing sent),
    /// [`ErrorKind::Full`] (the queue stayed full; the message was not
    /// queued), [`ErrorKind::PeerGone`] (the reader went away).
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).queue_bound(1).create("m").unwrap();
    /// let mut w = ipckit::mailslot::WriterOptions::new()
    ///     .namespace(&ns).timeout(Duration::from_millis(20)).open("m").unwrap();
    /// w.send(b"1").unwrap();
    /// assert_eq!(w.send(b"2").unwrap_err().kind(), ipckit::ErrorKind::Full);
    /// assert_eq!(slot.recv().unwrap(), b"1");
    /// w.send(b"3").unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"3");
    /// ```
    #[doc(alias = "WriteFile")]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        check_writable(&self.name, self.broken, msg.len(), self.max_message)?;
        let r = self.exchange(msg, self.timeout);
        if r.is_err() {
            self.broken = true;
        }
        let (r, broken) = ack_outcome(&self.name, r?, msg.len(), self.timeout);
        self.broken |= broken;
        r
    }

    fn exchange(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<u8> {
        let fd = self.fd.as_fd();
        let gone = |name: &str| {
            Error::new(
                ErrorKind::PeerGone,
                "the mailslot's reader went away; the message was not queued",
            )
            .with_name(name)
        };
        let frame = write_frame(msg, timeout);
        io::send_all(fd, &frame).map_err(|_| gone(&self.name))?;
        let deadline = self.timeout.map(|t| Instant::now() + t + ACK_GRACE);
        let mut ack = [0u8; wire::ACK_LEN];
        match io::recv_exact_by(fd, &mut ack, deadline) {
            Ok(true) => Ok(ack[0]),
            Ok(false) => Err(gone(&self.name)),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Error::new(
                ErrorKind::Timeout,
                "the mailslot's reader did not acknowledge the write in time (is it stopped?); whether the message was queued is unknown",
            )
            .with_name(&self.name)),
            Err(_) => Err(gone(&self.name)),
        }
    }
}

/// Refuse a write before sending anything: on a writer broken by an
/// earlier write, or above the mailslot's `max_message_size`.
fn check_writable(name: &str, broken: bool, len: usize, max: usize) -> Result<()> {
    if broken {
        return Err(Error::new(
            ErrorKind::PeerGone,
            "an earlier write on this writer failed midway; open the mailslot again",
        )
        .with_name(name));
    }
    if len > max {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {len} bytes exceeds the mailslot's max_message_size of {max} bytes; split it"
            ),
        )
        .with_name(name)
        .with_needed(len));
    }
    Ok(())
}

/// The whole write request for `msg`, carrying the writer's timeout.
fn write_frame(msg: &[u8], timeout: Option<Duration>) -> Vec<u8> {
    let timeout_ms = match timeout {
        None => wire::FOREVER,
        Some(t) => u32::try_from(t.as_millis()).unwrap_or(wire::FOREVER - 1),
    };
    let mut frame = Vec::with_capacity(wire::WRITE_LEN + msg.len());
    frame.extend_from_slice(&wire::write_header(msg.len() as u32, timeout_ms));
    frame.extend_from_slice(msg);
    frame
}

/// What an acknowledgement `status` means for a write of `len` bytes, and
/// whether the writer is unusable after it.
fn ack_outcome(
    name: &str,
    status: u8,
    len: usize,
    timeout: Option<Duration>,
) -> (Result<()>, bool) {
    match status {
        wire::ACK_QUEUED => (Ok(()), false),
        wire::ACK_FULL => (
            Err(Error::new(
                ErrorKind::Full,
                format!(
                    "the mailslot's queue stayed full for {:?}; the message was not queued, retry later or raise the reader's queue bound",
                    timeout.unwrap_or_default()
                ),
            )
            .with_name(name)),
            false,
        ),
        wire::ACK_TOO_LARGE => (
            Err(Error::new(
                ErrorKind::TooLarge,
                format!("message of {len} bytes exceeds the mailslot's max_message_size"),
            )
            .with_name(name)
            .with_needed(len)),
            false,
        ),
        wire::ACK_CLOSING => (
            Err(Error::new(
                ErrorKind::PeerGone,
                "the mailslot's reader closed it before the message could be queued",
            )
            .with_name(name)),
            true,
        ),
        other => (
            Err(Error::new(
                ErrorKind::Decode,
                format!("unknown acknowledgement status {other} from the mailslot"),
            )
            .with_name(name)),
            true,
        ),
    }
}

/// Write `msg` to every live member of the broadcast group `group` on this
/// machine (namespace from the environment, default timeout); see
/// [`WriterOptions::send_to_group`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// let m = ipckit::mailslot::MailslotOptions::new().join_group("all").unwrap();
/// assert_eq!(ipckit::mailslot::send_to_group("all", b"hey").unwrap().delivered, 1);
/// assert_eq!(m.recv().unwrap(), b"hey");
/// ```
pub fn send_to_group(group: &str, msg: &[u8]) -> Result<GroupDelivery> {
    WriterOptions::new().send_to_group(group, msg)
}

/// Send `msg` to the mailslot `name` as one UDP datagram to `target`
/// (`HOST:PORT`: a host, a broadcast address or an IPv4 multicast group) —
/// the cross-machine mailslot write. Lossy: no acknowledgement, no
/// retransmission. At most [`UDP_MAX_MESSAGE`] bytes, else
/// [`ErrorKind::TooLarge`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = ipckit::mailslot::MailslotOptions::new()
///     .namespace(&ns).udp("127.0.0.1:0").create("far").unwrap();
/// let to = slot.udp_addr().unwrap().to_string();
/// ipckit::mailslot::send_datagram(&to, "far", b"ping").unwrap();
/// // Lossy in general; on loopback it arrives.
/// assert_eq!(slot.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), b"ping");
/// ```
pub fn send_datagram(target: &str, name: &str, msg: &[u8]) -> Result<()> {
    validate_name(name)?;
    if msg.len() > UDP_MAX_MESSAGE {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {} bytes exceeds the UDP mailslot limit of {UDP_MAX_MESSAGE} bytes; send it locally or split it",
                msg.len()
            ),
        )
        .with_name(name)
        .with_needed(msg.len()));
    }
    let addr = crate::conn::datagram::resolve(target).ctx(name, "cannot resolve the UDP target")?;
    crate::conn::datagram::send_to(addr, &wire::datagram(name, msg))
        .ctx(name, "cannot send the datagram")
}
