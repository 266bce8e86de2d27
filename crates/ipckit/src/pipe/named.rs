//! Named pipes: servers, clients and the connection between them.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::frame::{self, HEADER_LEN, HELLO_MAGIC, HELLO_SHM_OFFER, VERSION};
use crate::conn::dial::Trust;
use crate::conn::dial::{Dialed, Dialer};
use crate::conn::hello::{self, Hello};
use crate::conn::listen;
use crate::conn::reactor::{
    Admission, Conn, Flow, Frame, FrameLen, Peer, Protocol, Reactor, Refusal,
};
use crate::conn::ring::{Chan, RingError, Rings, Rx, Tx};
use crate::conn::stream::{SocketReader, READ_BUF};
use crate::conn::ConnStats;
use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::name::{Claim, Namespace};
use crate::transport::{Transport, WaitStrategy};

/// Default limit on one message: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Largest `max_message_size` a pipe accepts: 1 GiB.
pub const MAX_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// Prefix of names that address a pipe server over TCP.
pub const TCP_PREFIX: &str = "tcp://";

/// How data is delimited (`PIPE_TYPE_MESSAGE` / `PIPE_TYPE_BYTE`).
///
/// ```
/// assert_eq!(ipckit::pipe::PipeMode::default(), ipckit::pipe::PipeMode::Message);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PipeMode {
    /// Each `send` is one message, received whole by one `recv` (default).
    #[default]
    Message,
    /// A byte stream, used through `Read` and `Write`.
    Byte,
}

/// Which way data flows (`PIPE_ACCESS_DUPLEX` / `_INBOUND` / `_OUTBOUND`).
///
/// ```
/// assert_eq!(ipckit::pipe::Direction::default(), ipckit::pipe::Direction::Duplex);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways (default).
    #[default]
    Duplex,
    /// Client to server only.
    Inbound,
    /// Server to client only.
    Outbound,
}

impl PipeMode {
    fn code(self) -> u8 {
        match self {
            PipeMode::Message => 0,
            PipeMode::Byte => 1,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(PipeMode::Message),
            1 => Some(PipeMode::Byte),
            _ => None,
        }
    }
}

impl Direction {
    fn code(self) -> u8 {
        match self {
            Direction::Duplex => 0,
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Direction::Duplex),
            1 => Some(Direction::Inbound),
            2 => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// Who is at the other end of a connection.
///
/// Local peers have `pid`, `uid` and `gid` (from `SO_PEERCRED`); TCP peers
/// have `addr` instead.
///
/// ```
/// let p = ipckit::pipe::PeerInfo::default();
/// assert!(p.pid.is_none() && p.addr.is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's process id (local peers).
    pub pid: Option<u32>,
    /// The peer's user id (local peers).
    pub uid: Option<u32>,
    /// The peer's group id (local peers).
    pub gid: Option<u32>,
    /// The peer's address (TCP peers).
    pub addr: Option<SocketAddr>,
}

/// Settings for creating a named pipe server (`CreateNamedPipe`).
///
/// ```
/// use ipckit::pipe::{PipeMode, ServerOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let server = ServerOptions::new()
///     .mode(PipeMode::Message)
///     .max_instances(4)
///     .max_message_size(16 << 20)
///     .namespace(&ns)
///     .create("calc")
///     .unwrap();
/// assert_eq!(server.name(), "calc");
/// ```
#[doc(alias = "CreateNamedPipe")]
#[derive(Debug, Clone)]
pub struct ServerOptions {
    mode: PipeMode,
    direction: Direction,
    max_instances: Option<usize>,
    max_message: usize,
    allowed_uids: Option<Vec<u32>>,
    tcp: Option<String>,
    namespace: Option<Namespace>,
    transport: Transport,
    wait: WaitStrategy,
    limits: Limits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            mode: PipeMode::Message,
            direction: Direction::Duplex,
            max_instances: None,
            max_message: DEFAULT_MAX_MESSAGE_SIZE,
            allowed_uids: None,
            tcp: None,
            namespace: None,
            transport: Transport::Auto,
            wait: WaitStrategy::default(),
            limits: Limits::default(),
        }
    }
}

impl ServerOptions {
    /// Defaults: message mode, duplex, unlimited instances, 1 MiB messages,
    /// any client of this user, no TCP, the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Message or byte mode (`PIPE_TYPE_*`). Default: message.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().mode(ipckit::pipe::PipeMode::Byte);
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: PipeMode) -> Self {
        self.mode = mode;
        self
    }

    /// Duplex, inbound or outbound (`PIPE_ACCESS_*`). Default: duplex.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().direction(ipckit::pipe::Direction::Inbound);
    /// ```
    #[must_use]
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Most clients connected at once (`nMaxInstances`); the next one gets
    /// [`ErrorKind::Busy`]. Default: unlimited.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().max_instances(1);
    /// ```
    #[must_use]
    pub fn max_instances(mut self, n: usize) -> Self {
        self.max_instances = Some(n);
        self
    }

    /// Largest message, either way, in bytes (`nOutBufferSize` /
    /// `nInBufferSize` played this role). Default 1 MiB, at most 1 GiB.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().max_message_size(64 << 20);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Refuse local clients whose uid is not in `uids` (and every TCP
    /// client, whose uid cannot be known). Default: any client that can
    /// reach the socket (mode 0600: the same user).
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().allow_uids(&[1000]);
    /// ```
    #[must_use]
    pub fn allow_uids(mut self, uids: &[u32]) -> Self {
        self.allowed_uids = Some(uids.to_vec());
        self
    }

    /// What the server accepts from its clients ([`Limits`]): connections
    /// open at once in total, per client process, per user and per TCP
    /// address (a client over one of them gets [`ErrorKind::Busy`]), and
    /// how long a local message-mode client may take to answer the
    /// shared-memory offer (`handshake_timeout`; it is then dropped).
    /// Default [`Limits::default`]. `max_instances` and
    /// [`allow_uids`](Self::allow_uids) apply on top.
    ///
    /// ```
    /// use ipckit::pipe::{ClientOptions, ServerOptions};
    /// use ipckit::{ErrorKind, Limits};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let server = ServerOptions::new()
    ///     .namespace(&ns)
    ///     .limits(Limits::new().max_connections_per_process(1))
    ///     .create("p")
    ///     .unwrap();
    /// let _first = ClientOptions::new().namespace(&ns).connect("p").unwrap();
    /// // A second connection from this process is over its limit.
    /// let e = ClientOptions::new().namespace(&ns).connect("p").unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Busy);
    /// assert_eq!(server.stats().refused_per_process, 1);
    /// ```
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also listen on TCP at `addr` (`HOST:PORT`, port 0 picks one; see
    /// [`PipeServer::tcp_addr`]). Clients connect with `tcp://HOST:PORT`.
    /// There is no authentication on TCP: bind to loopback unless the
    /// network is trusted.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().tcp("127.0.0.1:0");
    /// ```
    #[must_use]
    pub fn tcp(mut self, addr: impl Into<String>) -> Self {
        self.tcp = Some(addr.into().trim_start_matches(TCP_PREFIX).to_string());
        self
    }

    /// Create the pipe in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::pipe::ServerOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Whether message-mode connections from local clients may move to
    /// shared memory ([`Transport::Auto`], the default) or stay on the
    /// socket ([`Transport::Socket`]). Byte mode and TCP always use the
    /// socket. See [`crate::transport`].
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().transport(ipckit::Transport::Socket);
    /// ```
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// How this side's connections wait for their peer on shared memory
    /// (spin, park, or spin then park; the default). No effect on the
    /// socket path.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().wait_strategy(ipckit::WaitStrategy::Park);
    /// ```
    #[must_use]
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Create the server and start accepting clients. A live server holding
    /// the name gives [`ErrorKind::AlreadyExists`]; a stale one (its owner
    /// died) is replaced.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let a = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// let b = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p");
    /// assert_eq!(b.unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// # drop(a);
    /// ```
    pub fn create(&self, name: &str) -> Result<PipeServer> {
        if self.max_message == 0 || self.max_message > MAX_MAX_MESSAGE_SIZE {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_message {} is out of range; use 1 to {MAX_MAX_MESSAGE_SIZE} bytes",
                    self.max_message
                ),
            )
            .with_name(name));
        }
        if self.max_instances == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "max_instances of 0 would refuse every client; use at least 1",
            )
            .with_name(name));
        }
        let ns = listen::namespace(self.namespace.as_ref())?;
        let bound = listen::bind(&ns, name, "pipe", self.tcp.as_deref())?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            active: AtomicUsize::new(0),
            accepting: Mutex::new(Vec::new()),
        });
        let protocol = Arc::new(Pipes {
            shared: shared.clone(),
            hello: Hello {
                flags: self.mode.code(),
                extra: self.direction.code(),
                ..Hello::ok(HELLO_MAGIC, VERSION, self.max_message as u32)
            },
            offer_shm: self.mode == PipeMode::Message && self.transport.allows_shm(),
            wait: self.wait,
            max_instances: self.max_instances,
            allowed_uids: self.allowed_uids.clone(),
            answering: Mutex::new(HashMap::new()),
            detaching: Mutex::new(None),
            incoming: tx,
        });
        let reactor = match Reactor::start(
            &format!("pipe-{name}"),
            protocol,
            bound.listening,
            // The reactor admits the allow-listed uids; `Pipes::admit` then
            // keeps only them.
            match &self.allowed_uids {
                Some(a) => {
                    let mut uids = self.limits.get_allow_uids().to_vec();
                    uids.extend_from_slice(a);
                    self.limits.clone().allow_uids(&uids)
                }
                None => self.limits.clone(),
            },
        ) {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&bound.socket_path);
                return Err(Error::os(e, "cannot start the pipe's connection loop").with_name(name));
            }
        };
        Ok(PipeServer {
            shared,
            incoming: rx,
            reactor,
            tcp_addr: bound.tcp_addr,
            socket_path: bound.socket_path,
            replaced_stale: bound.claim.replaced_stale(),
            _claim: bound.claim,
        })
    }
}

/// What the server and its connections share.
struct Shared {
    name: String,
    /// Instances in use: clients answering the offer, waiting in the
    /// accept queue, or accepted and not yet dropped.
    active: AtomicUsize,
    /// Async accepts waiting for the next client (woken at each hand-over).
    accepting: Mutex<Vec<Waker>>,
}

impl Shared {
    /// A client was queued: wake the async accepts.
    fn queued(&self) {
        for w in lock(&self.accepting).drain(..) {
            w.wake();
        }
    }
}

/// One occupied instance; frees its slot when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The named-pipe side of the server's connection loop
/// ([`crate::conn::reactor`]): greets each connection with the pipe hello,
/// enforces the uid allow-list and `max_instances` on top of the loop's
/// [`Limits`], reads the client's answer to a shared-memory offer, and
/// hands each ready connection to [`PipeServer::accept`] as a
/// [`NamedPipe`]. Runs on the loop's thread: nothing here blocks.
struct Pipes {
    shared: Arc<Shared>,
    /// The accepting hello (shared-memory bit clear).
    hello: Hello,
    /// Offer shared memory to local clients.
    offer_shm: bool,
    wait: WaitStrategy,
    max_instances: Option<usize>,
    allowed_uids: Option<Vec<u32>>,
    /// Connections whose answer to the offer is due, with their instance.
    answering: Mutex<HashMap<u64, Slot>>,
    /// The connection `on_frame` just detached, waiting in `on_detach` for
    /// the bytes the loop read past the answer.
    detaching: Mutex<Option<(u64, Parts)>>,
    incoming: Sender<NamedPipe>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lock `m` before `deadline` (a clone of the connection may hold it for
/// a receive of its own), else [`ErrorKind::Timeout`].
fn lock_until<'a, T>(m: &'a Mutex<T>, deadline: Instant, link: &Link) -> Result<MutexGuard<'a, T>> {
    let mut pause = Duration::from_micros(50);
    loop {
        match m.try_lock() {
            Ok(g) => return Ok(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(
                ErrorKind::Timeout,
                "another handle of this connection was receiving until the deadline; the connection stays usable",
            )
            .with_name(&link.name));
        }
        // Only with clones receiving at once (uncontended, `try_lock` wins).
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

impl Pipes {
    /// Whether shared memory is offered to `conn` (local, message mode,
    /// not opted out): then its answer is due before it is handed over.
    fn offers_shm(&self, conn: &Conn) -> bool {
        self.offer_shm && !conn.is_tcp()
    }

    /// The server's [`NamedPipe`] on a duplicate of `conn`'s socket (the
    /// loop closes its own when it lets go), holding the instance and the
    /// connection's place in the limits for as long as it lives.
    fn wrap(&self, conn: &Conn, slot: Slot) -> io::Result<Parts> {
        let fd = conn.fd().try_clone_to_owned()?;
        // The loop bounds its own writes by the stall timeout; the
        // connection's user writes like `WriteFile`, waiting for the reader.
        crate::conn::io::set_send_timeout(fd.as_fd(), None)?;
        let mut pipe = Parts::new(
            self.shared.name.clone(),
            fd,
            Role::Server,
            self.hello.flags,
            self.hello.extra,
            self.hello.max,
            peer_info(conn.peer()),
        );
        pipe.link._slot = Some(slot);
        pipe.link._admission = conn.take_admission();
        Ok(pipe)
    }

    /// Queue `pipe` for `accept` and let the loop forget the connection.
    fn hand_over(&self, pipe: Parts) -> Flow {
        match self.incoming.send(pipe.into_pipe()) {
            Ok(()) => {
                self.shared.queued();
                Flow::Detach
            }
            Err(_) => Flow::Close(None), // the server is being dropped
        }
    }
}

impl Protocol for Pipes {
    fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The loop reads only the first header after an offer (the
    /// connection is handed over right after it): the kind-3 answer, or
    /// the header of a data or descriptor frame from a client that ignores
    /// the offer (a decline; the frame stays in the stream). Anything else
    /// is malformed.
    fn frame_len(&self, header: &[u8]) -> std::result::Result<FrameLen, String> {
        let h: &[u8; HEADER_LEN] = header.try_into().map_err(|_| "short header".to_string())?;
        if *h == frame::header(frame::KIND_SHM, 0) || frame::parse_header(h, "").is_ok() {
            Ok(FrameLen::Whole(HEADER_LEN))
        } else {
            Err(format!(
                "its first frame {header:02x?} is neither the answer to the shared-memory offer (kind 3, length 0) nor a data or descriptor frame"
            ))
        }
    }

    /// The uid allow-list and `max_instances`, on top of the loop's limits.
    fn admit(&self, conn: &Conn) -> std::result::Result<(), Refusal> {
        if let Some(allowed) = &self.allowed_uids {
            if !conn.peer().uid.is_some_and(|u| allowed.contains(&u)) {
                return Err(Refusal::Denied);
            }
        }
        // Only this thread takes instances; others only give them back, so
        // the count can only fall before `on_open` takes this one.
        let active = self.shared.active.load(Ordering::Acquire);
        if self.max_instances.is_some_and(|m| active >= m) {
            return Err(Refusal::Instances);
        }
        Ok(())
    }

    fn hello(&self, conn: &Conn) -> Vec<u8> {
        let mut hello = self.hello;
        if self.offers_shm(conn) {
            hello.flags |= HELLO_SHM_OFFER;
        }
        hello.encode().to_vec()
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        self.hello.with_status(why.status()).encode().to_vec()
    }

    fn owes_handshake(&self, conn: &Conn) -> bool {
        self.offers_shm(conn)
    }

    fn on_open(&self, conn: &Arc<Conn>) -> Flow {
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.shared.clone());
        if self.offers_shm(conn) {
            lock(&self.answering).insert(conn.id(), slot);
            return Flow::Continue;
        }
        match self.wrap(conn, slot) {
            Ok(pipe) => self.hand_over(pipe),
            Err(e) => Flow::Close(Some(format!("cannot take the connection over: {e}"))),
        }
    }

    /// The answer to the offer: with a `memfd`, move to shared memory;
    /// without (or another frame: a decline), stay on the socket. Either
    /// way the connection is ready, handed over in `on_detach`.
    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow {
        let Some(slot) = lock(&self.answering).remove(&conn.id()) else {
            return Flow::Close(Some("it sent a frame the server did not expect".into()));
        };
        let mut fds = frame.fds;
        if frame.bytes[0] != frame::KIND_SHM {
            // A client that ignores the offer: this frame is its first.
            return match self.wrap(conn, slot) {
                Ok(mut pipe) => {
                    pipe.unread(frame.bytes, fds);
                    *lock(&self.detaching) = Some((conn.id(), pipe));
                    Flow::Detach
                }
                Err(e) => Flow::Close(Some(format!("cannot take the connection over: {e}"))),
            };
        }
        if fds.len() > 1 {
            return Flow::Close(Some(format!(
                "it passed {} descriptors with its answer; one at most",
                fds.len()
            )));
        }
        let mut pipe = match self.wrap(conn, slot) {
            Ok(p) => p,
            Err(e) => return Flow::Close(Some(format!("cannot take the connection over: {e}"))),
        };
        if let Some(memfd) = fds.pop() {
            // Checking and mapping a sealed memfd and duplicating a
            // descriptor involve no I/O and no waiting for the peer, so
            // this stays on the loop's thread.
            match Rings::accept(memfd, pipe.link.fd.as_fd(), 0, self.wait) {
                Ok(rings) => pipe.rings = Some(rings),
                Err(why) => {
                    return Flow::Close(Some(format!("its shared memory was refused: {why}")))
                }
            }
        }
        *lock(&self.detaching) = Some((conn.id(), pipe));
        Flow::Detach
    }

    /// Hand the connection `on_frame` detached to `accept`, with the bytes
    /// the loop read past its first frame.
    fn on_detach(&self, conn: &Arc<Conn>, unread: Vec<u8>, fds: Vec<OwnedFd>) {
        let Some((id, mut pipe)) = lock(&self.detaching).take() else {
            return;
        };
        if id == conn.id() {
            pipe.unread(unread, fds);
            // A server being dropped no longer takes it: it closes.
            if self.incoming.send(pipe.into_pipe()).is_ok() {
                self.shared.queued();
            }
        }
    }

    fn on_close(&self, conn: &Arc<Conn>, _why: Option<&str>) {
        lock(&self.answering).remove(&conn.id());
    }
}

/// A named pipe server: accepts clients, each as a [`NamedPipe`].
///
/// One thread per server watches every connection (a readiness loop, see
/// [`ServerOptions::limits`]): clients are admitted in the background as
/// they arrive (up to `max_instances` at once, counting those not yet taken
/// by `accept`, and within the server's [`Limits`]); [`accept`](Self::accept)
/// hands them out in order. A client that does not answer the shared-memory
/// offer within the handshake deadline is dropped. Dropping the server
/// removes the name and disconnects clients not yet accepted; accepted
/// connections live on.
///
/// The complete accept loop, one thread per client:
///
/// ```no_run
/// use ipckit::pipe::ServerOptions;
///
/// let server = ServerOptions::new().create("echo")?;
/// loop {
///     let mut conn = server.accept()?;
///     std::thread::spawn(move || {
///         while let Ok(msg) = conn.recv() {
///             if conn.send(&msg).is_err() {
///                 break;
///             }
///         }
///     });
/// }
/// # Ok::<(), ipckit::Error>(())
/// ```
#[doc(alias = "ConnectNamedPipe")]
pub struct PipeServer {
    shared: Arc<Shared>,
    incoming: Receiver<NamedPipe>,
    reactor: Reactor,
    tcp_addr: Option<SocketAddr>,
    socket_path: std::path::PathBuf,
    replaced_stale: bool,
    _claim: Claim,
}

impl std::fmt::Debug for PipeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeServer")
            .field("name", &self.shared.name)
            .field("socket", &self.socket_path)
            .field("tcp", &self.tcp_addr)
            .finish()
    }
}

impl PipeServer {
    /// Create a server with default options (see [`ServerOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let server = ipckit::pipe::PipeServer::create("svc").unwrap();
    /// assert_eq!(server.name(), "svc");
    /// ```
    pub fn create(name: &str) -> Result<PipeServer> {
        ServerOptions::new().create(name)
    }

    /// The pipe's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The TCP address actually bound, if the server listens on TCP.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).tcp("127.0.0.1:0").create("t").unwrap();
    /// assert_ne!(s.tcp_addr().unwrap().port(), 0);
    /// ```
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Whether creating this server took over a stale name left by a dead
    /// owner.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// assert!(!s.replaced_stale());
    /// ```
    pub fn replaced_stale(&self) -> bool {
        self.replaced_stale
    }

    /// Number of clients connected now (accepted or waiting to be).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.instances(), 0);
    /// ```
    pub fn instances(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Wait for the next client.
    ///
    /// ```no_run
    /// let server = ipckit::pipe::PipeServer::create("svc")?;
    /// let mut conn = server.accept()?;
    /// println!("client pid {:?}", conn.peer().pid);
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    pub fn accept(&self) -> Result<NamedPipe> {
        self.incoming.recv().map_err(|_| self.acceptor_gone())
    }

    /// Wait for the next client at most `timeout`; [`ErrorKind::Timeout`]
    /// if none came.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let e = s.accept_timeout(std::time::Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn accept_timeout(&self, timeout: Duration) -> Result<NamedPipe> {
        match self.incoming.recv_timeout(timeout) {
            Ok(c) => Ok(c),
            Err(RecvTimeoutError::Timeout) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no client connected within {timeout:?}"),
            )
            .with_name(self.name())),
            Err(RecvTimeoutError::Disconnected) => Err(self.acceptor_gone()),
        }
    }

    /// The next client if one is queued, else register `cx` to be woken
    /// when one is (the async accept).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<NamedPipe>> {
        use crossbeam_channel::TryRecvError;
        let take = || match self.incoming.try_recv() {
            Ok(c) => Some(Ok(c)),
            Err(TryRecvError::Disconnected) => Some(Err(self.acceptor_gone())),
            Err(TryRecvError::Empty) => None,
        };
        if let Some(r) = take() {
            return Poll::Ready(r);
        }
        {
            let mut waiting = lock(&self.shared.accepting);
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
        }
        // A client queued between the first look and the registration.
        match take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    fn acceptor_gone(&self) -> Error {
        Error::new(
            ErrorKind::Io,
            "the server's connection loop stopped; create the server again",
        )
        .with_name(self.name())
    }

    /// What the server admitted, refused and dropped so far, and why (see
    /// [`Limits`]). Refusals by `max_instances` and the uid allow-list are
    /// not counted here: those peers were admitted, then told no.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let _c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert_eq!(s.stats().accepted, 1);
    /// assert_eq!(s.stats().dropped_handshake, 0);
    /// ```
    pub fn stats(&self) -> ConnStats {
        self.reactor.counters().snapshot()
    }
}

impl Drop for PipeServer {
    fn drop(&mut self) {
        // Stop the loop first (closing the clients still answering the
        // offer), then remove the socket; queued clients go with `incoming`.
        self.reactor.stop();
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

fn peer_info(p: &Peer) -> PeerInfo {
    PeerInfo {
        pid: p.pid,
        uid: p.uid,
        gid: p.gid,
        addr: p.addr,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// Settings for connecting to a named pipe (`CreateFile` + `WaitNamedPipe`).
///
/// ```
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::pipe::ClientOptions::new()
///     .namespace(&ns)
///     .timeout(Duration::ZERO)
///     .connect("absent")
///     .unwrap_err();
/// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    timeout: Duration,
    namespace: Option<Namespace>,
    transport: Transport,
    wait: WaitStrategy,
    trust: Trust,
}

impl ClientOptions {
    /// Also trust servers running as these uids. By default a client talks
    /// only to a server running as its own uid or as the owner of the
    /// namespace directory (checked on the socket's peer credentials), and
    /// refuses any other with [`ErrorKind::PermissionDenied`]: another user
    /// may have put an impostor in the namespace.
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new().allow_server_uids(&[1001]);
    /// ```
    #[must_use]
    pub fn allow_server_uids(mut self, uids: &[u32]) -> Self {
        self.trust.uids = uids.to_vec();
        self
    }

    /// Talk to a server of any uid (the explicit opt-out of the check).
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new().allow_any_server();
    /// ```
    #[must_use]
    pub fn allow_any_server(mut self) -> Self {
        self.trust.any = true;
        self
    }

    /// Defaults: no waiting, the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for the server to appear or for a free instance
    /// (`WaitNamedPipe`'s `nTimeOut`). Zero: fail at once with
    /// [`ErrorKind::NotFound`] or [`ErrorKind::Busy`].
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new().timeout(std::time::Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Look the name up in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Whether this connection may move to shared memory when the server
    /// offers it ([`Transport::Auto`], the default) or stays on the socket
    /// ([`Transport::Socket`]). See [`NamedPipe::transport`].
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new().transport(ipckit::Transport::Socket);
    /// ```
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// How this connection waits for its peer on shared memory. No effect
    /// on the socket path.
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new().wait_strategy(ipckit::WaitStrategy::Spin);
    /// ```
    #[must_use]
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Connect to the pipe `name`, or to `tcp://HOST:PORT`.
    ///
    /// Waits (up to the timeout) for the server to appear or an instance to
    /// free up. Errors: [`ErrorKind::NotFound`] (no server, no waiting),
    /// [`ErrorKind::Busy`] (all instances in use, or the server at one of
    /// its connection [`Limits`], no waiting), [`ErrorKind::Timeout`]
    /// (waited in vain, or the server accepted but sent no complete hello
    /// within the timeout, at least 5 s), [`ErrorKind::PermissionDenied`]
    /// (refused by the server's uid allow-list).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let server = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// let mut client = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("p").unwrap();
    /// let mut conn = server.accept().unwrap();
    /// client.send(b"hi").unwrap();
    /// assert_eq!(conn.recv().unwrap(), b"hi");
    /// ```
    pub fn connect(&self, name: &str) -> Result<NamedPipe> {
        let dialer = Dialer {
            name,
            what: WHAT,
            namespace: self.namespace.as_ref(),
            timeout: self.timeout,
            tcp: true,
            trust: &self.trust,
        };
        dialer.run(|dialed| handshake(name, dialed, self.transport, self.wait))
    }
}

/// What a pipe endpoint is called in errors.
const WHAT: &str = "pipe server";

/// Read and check the server's hello on a new connection, and answer its
/// shared-memory offer.
fn handshake(
    name: &str,
    dialed: Dialed,
    transport: Transport,
    wait: WaitStrategy,
) -> Result<NamedPipe> {
    let Dialed {
        fd,
        tcp,
        hello_deadline,
    } = dialed;
    let b = hello::read(fd.as_fd(), hello_deadline, WHAT, name)?;
    let hello = Hello::decode(&b, HELLO_MAGIC, VERSION, WHAT, name)?;
    if let Some(e) = hello.refusal(WHAT, name) {
        return Err(e);
    }
    let mode = hello.flags & !HELLO_SHM_OFFER;
    if PipeMode::from_code(mode).is_none() || Direction::from_code(hello.extra).is_none() {
        return Err(Error::new(
            ErrorKind::Decode,
            "the server announced an unknown mode or direction",
        )
        .with_name(name));
    }
    let peer = peer_info(&Peer::of(fd.as_fd(), tcp));
    let mut conn = Parts::new(
        name.to_string(),
        fd,
        Role::Client,
        mode,
        hello.extra,
        hello.max,
        peer,
    );
    if hello.flags & HELLO_SHM_OFFER != 0 && !tcp {
        conn.answer_offer(transport, wait)?;
    }
    Ok(conn.into_pipe())
}

/// Bytes per ring for a pipe whose messages are at most `max_message`:
/// room for four of them, 64 KiB to 1 MiB (bigger messages are split into
/// fragments by the ring).
fn ring_size(max_message: usize) -> usize {
    max_message
        .saturating_add(64)
        .saturating_mul(4)
        .next_power_of_two()
        .clamp(64 << 10, 1 << 20)
}

/// How long a receiver waits for the descriptor announced by a ring record
/// to arrive on the socket (the sender writes it first, so it is there).
const FD_GRACE: Duration = Duration::from_secs(5);

/// One end of a named-pipe connection: what a client gets from
/// [`NamedPipe::connect`] and a server from [`PipeServer::accept`].
///
/// Message mode: [`send`](Self::send) / [`recv`](Self::recv) /
/// [`recv_into`](Self::recv_into) / [`transact`](Self::transact), message
/// boundaries kept for every size up to the pipe's `max_message`. Byte
/// mode: `std::io::Read` and `Write`.
///
/// A local message-mode connection carries its messages through
/// shared-memory rings unless either side opted out (see
/// [`transport`](Self::transport) and [`crate::transport`]); the API and
/// its errors are the same either way, except that a message over this
/// side's `max_message` from a hostile peer is [`ErrorKind::TooLarge`]
/// (discarded, connection usable) on the socket but [`ErrorKind::Decode`]
/// (connection closed) on shared memory, like any other garbage there.
///
/// # Sharing a connection between threads
///
/// [`split`](Self::split) gives a [`RecvHalf`] and a [`SendHalf`] that two
/// threads use at once (one receiving while the other sends), on the
/// socket and on shared memory alike. [`try_clone`](Self::try_clone) gives
/// another handle to the same connection: each message is received by
/// exactly one of the handles, each send is written whole (the handles
/// take turns per direction, as threads calling `ReadFile` on one handle
/// do). The connection ends when every handle and half is dropped, or at
/// [`disconnect`](Self::disconnect).
///
/// [`AsFd`] gives the connection's socket (to watch it for the peer's end,
/// or to read its credentials); reading or writing it directly would break
/// the framing. There is no `Into<OwnedFd>`: on shared memory the
/// connection is more than its socket (two rings in a mapping the socket
/// only watches over), and on the socket bytes already read and buffered
/// would be lost.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// // process A
/// let server = ipckit::pipe::ServerOptions::new().namespace(&ns).create("calc").unwrap();
/// // process B
/// let mut client = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("calc").unwrap();
/// client.send(b"2+2").unwrap();
/// // process A
/// let mut conn = server.accept().unwrap();
/// assert_eq!(conn.recv().unwrap(), b"2+2");
/// conn.send(b"4").unwrap();
/// // process B
/// assert_eq!(client.recv().unwrap(), b"4");
/// ```
pub struct NamedPipe {
    link: Arc<Link>,
    rd: Arc<Mutex<Reader>>,
    wr: Arc<Mutex<Writer>>,
}

impl std::fmt::Debug for NamedPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.link.fmt(f)
    }
}

/// What every handle and half of one connection shares: the socket, the
/// settings both sides agreed on, whether the stream broke, and (on
/// shared memory) the channel.
pub(crate) struct Link {
    name: String,
    fd: OwnedFd,
    role: Role,
    mode: PipeMode,
    direction: Direction,
    max_message: usize,
    peer: PeerInfo,
    /// Set once the stream is out of sync or closed; every call then fails.
    broken: Mutex<Option<ErrorKind>>,
    /// `broken` is set: the hot path reads this flag, not the mutex.
    is_broken: AtomicBool,
    /// Shared memory: the channel and its object, kept open (it shows in
    /// `/proc/PID/fd`).
    chan: Option<(Arc<Chan>, OwnedFd)>,
    /// The ring sender of a writer dropped while a reader lives: the ring
    /// closes (the peer sees the end) when the whole connection goes.
    spare_tx: Mutex<Option<Tx>>,
    /// Server side: the instance this connection occupies.
    _slot: Option<Slot>,
    /// Server side: its place in the server's connection limits.
    _admission: Option<Admission>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedPipe")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("mode", &self.mode)
            .field("direction", &self.direction)
            .field("max_message", &self.max_message)
            .field("peer", &self.peer)
            .field("transport", &self.transport())
            .finish()
    }
}

/// The receiving state of a connection: what was read and not handed out
/// yet, and the ring it receives on.
pub(crate) struct Reader {
    pub(crate) link: Arc<Link>,
    /// Items put back (a descriptor asked for as a message, or the
    /// reverse, or a message too big for `recv_into`'s buffer).
    inbox: VecDeque<Item>,
    /// Byte mode: the unread rest of the last chunk.
    pub(crate) chunk: Vec<u8>,
    pub(crate) chunk_pos: usize,
    /// Shared memory: the spare buffer `recv_into` hands back, so a
    /// stream of small messages allocates nothing.
    scratch: Vec<u8>,
    /// The socket flavor's read side: bytes and descriptors (`SCM_RIGHTS`)
    /// read and not consumed yet.
    pub(crate) rd: SocketReader,
    /// Shared memory: the ring this side receives on.
    pub(crate) rx: Option<Rx>,
}

/// The sending state of a connection.
pub(crate) struct Writer {
    pub(crate) link: Arc<Link>,
    /// A small frame is built here and written in one system call.
    scratch: Vec<u8>,
    /// Shared memory: the ring this side sends on.
    pub(crate) tx: Option<Tx>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Keep the ring open while other halves of the connection live.
        if let Some(tx) = self.tx.take() {
            *lock(&self.link.spare_tx) = Some(tx);
        }
    }
}

/// A connection being set up, before its state is split into the shared
/// link, the reader and the writer.
struct Parts {
    link: Link,
    rd: SocketReader,
    rings: Option<Rings>,
}

/// What the reader hands out, in arrival order.
#[derive(Debug)]
pub(crate) enum Item {
    Msg(Vec<u8>),
    Fd(OwnedFd),
}

/// Frames larger than this are sent as header + body, smaller ones in one
/// system call.
const COALESCE_LIMIT: usize = 64 * 1024;

impl Parts {
    fn new(
        name: String,
        fd: OwnedFd,
        role: Role,
        mode: u8,
        direction: u8,
        max_message: u32,
        peer: PeerInfo,
    ) -> Self {
        Parts {
            link: Link {
                name,
                fd,
                role,
                mode: PipeMode::from_code(mode).unwrap_or_default(),
                direction: Direction::from_code(direction).unwrap_or_default(),
                max_message: max_message as usize,
                peer,
                broken: Mutex::new(None),
                is_broken: AtomicBool::new(false),
                chan: None,
                spare_tx: Mutex::new(None),
                _slot: None,
                _admission: None,
            },
            rd: SocketReader::new(true),
            rings: None,
        }
    }

    /// Client side: answer the server's shared-memory offer (the first
    /// frame the client sends): accept with a fresh channel object, or
    /// decline when opted out, in byte mode, or if the object cannot be
    /// made. The server must have the answer within its handshake deadline;
    /// frames may follow at once.
    fn answer_offer(&mut self, transport: Transport, wait: WaitStrategy) -> Result<()> {
        let h = frame::header(frame::KIND_SHM, 0);
        let link = &self.link;
        if transport.allows_shm() && link.mode == PipeMode::Message {
            // The descriptor ends the server's read of the answer: it reads
            // nothing we send after it.
            let rings = Rings::offer(link.fd.as_fd(), &h, ring_size(link.max_message), 0, wait)
                .ctx(&link.name, "cannot hand shared memory to the server")?;
            self.rings = Some(rings);
            return Ok(());
        }
        crate::conn::io::send_all(link.fd.as_fd(), &h).ctx(&link.name, "cannot answer the server")
    }

    /// Server side: bytes and descriptors already read from the socket
    /// (by the server's connection loop) come before what is still in it.
    fn unread(&mut self, bytes: Vec<u8>, fds: Vec<OwnedFd>) {
        self.rd.unread(&bytes, fds);
    }

    /// The shared link, the reader and the writer.
    fn finish(self) -> (Arc<Link>, Reader, Writer) {
        let Parts {
            mut link,
            rd,
            rings,
        } = self;
        let (tx, rx) = match rings {
            Some(rings) => {
                let (chan, tx, rx, object) = rings.into_parts();
                link.chan = Some((chan, object));
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let link = Arc::new(link);
        let reader = Reader {
            link: link.clone(),
            inbox: VecDeque::new(),
            chunk: Vec::new(),
            chunk_pos: 0,
            scratch: Vec::new(),
            rd,
            rx,
        };
        let writer = Writer {
            link: link.clone(),
            scratch: Vec::new(),
            tx,
        };
        (link, reader, writer)
    }

    fn into_pipe(self) -> NamedPipe {
        let (link, rd, wr) = self.finish();
        NamedPipe {
            link,
            rd: Arc::new(Mutex::new(rd)),
            wr: Arc::new(Mutex::new(wr)),
        }
    }
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
impl Link {
    /// The pipe's name (as the client gave it).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The connection's socket.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn mode(&self) -> PipeMode {
        self.mode
    }

    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }

    pub(crate) fn peer(&self) -> PeerInfo {
        self.peer
    }

    pub(crate) fn transport(&self) -> Transport {
        if self.chan.is_some() {
            Transport::SharedMemory
        } else {
            Transport::Socket
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if !self.is_broken.load(Ordering::Acquire) {
            return Ok(());
        }
        match *lock(&self.broken) {
            None => Ok(()),
            Some(kind) => Err(Error::new(
                kind,
                "the connection is closed (peer gone or stream broken); connect again",
            )
            .with_name(&self.name)),
        }
    }

    pub(crate) fn may_write(&self) -> Result<()> {
        let forbidden = match (self.direction, self.role) {
            (Direction::Inbound, Role::Server) => Some("inbound: only the client writes"),
            (Direction::Outbound, Role::Client) => Some("outbound: only the server writes"),
            _ => None,
        };
        match forbidden {
            Some(why) => Err(
                Error::new(ErrorKind::PermissionDenied, format!("the pipe is {why}"))
                    .with_name(&self.name),
            ),
            None => Ok(()),
        }
    }

    pub(crate) fn may_read(&self) -> Result<()> {
        let forbidden = match (self.direction, self.role) {
            (Direction::Inbound, Role::Client) => Some("inbound: only the server reads"),
            (Direction::Outbound, Role::Server) => Some("outbound: only the client reads"),
            _ => None,
        };
        match forbidden {
            Some(why) => Err(
                Error::new(ErrorKind::PermissionDenied, format!("the pipe is {why}"))
                    .with_name(&self.name),
            ),
            None => Ok(()),
        }
    }

    /// Mark the connection broken with `e`'s kind and return `e`.
    pub(crate) fn fail(&self, e: Error) -> Error {
        if matches!(
            e.kind(),
            ErrorKind::PeerGone | ErrorKind::Decode | ErrorKind::Io
        ) {
            *lock(&self.broken) = Some(if e.kind() == ErrorKind::Decode {
                ErrorKind::PeerGone
            } else {
                e.kind()
            });
            self.is_broken.store(true, Ordering::Release);
            crate::conn::io::shutdown(&self.fd);
        }
        e
    }

    pub(crate) fn io_err(&self, e: io::Error, what: &str) -> Error {
        let e = Error::os(e, what).with_name(&self.name);
        if e.kind() == ErrorKind::PeerGone {
            Error::new(
                ErrorKind::PeerGone,
                "the other end of the pipe is gone (closed or its process died)",
            )
            .with_name(&self.name)
        } else {
            e
        }
    }

    /// Turn a ring failure into the pipe's error; anything but a timeout
    /// closes the connection.
    pub(crate) fn ring_err(&self, e: RingError) -> Error {
        let e = match e {
            RingError::Timeout => {
                return Error::new(
                    ErrorKind::Timeout,
                    "no message arrived before the deadline; the connection stays usable",
                )
                .with_name(&self.name)
            }
            RingError::PeerGone | RingError::Interrupted => Error::new(
                ErrorKind::PeerGone,
                "the other end of the pipe is gone (closed or its process died)",
            ),
            RingError::Corrupt(why) => Error::new(
                ErrorKind::Decode,
                format!(
                    "the peer broke the shared-memory protocol ({why}); the connection was closed, reconnect"
                ),
            ),
        };
        let e = e.with_name(&self.name);
        self.fail(e)
    }

    /// The clean end of the stream, as a `recv` reports it (marking the
    /// connection closed).
    pub(crate) fn ended(&self) -> Error {
        let e = Error::new(
            ErrorKind::PeerGone,
            "the other end closed the pipe (disconnected, or its process exited)",
        )
        .with_name(&self.name);
        self.fail(e)
    }

    /// A message over this side's limit, discarded.
    pub(crate) fn too_large(&self, len: usize) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "the peer sent a message of {len} bytes, over this pipe's limit of {} bytes; it was discarded and the connection stays usable",
                self.max_message
            ),
        )
        .with_name(&self.name)
        .with_needed(len)
    }

    /// A message of `len` bytes to send is over the limit.
    pub(crate) fn check_send_size(&self, len: usize) -> Result<()> {
        if len > self.max_message {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message of {len} bytes exceeds the pipe's limit of {} bytes; split it or raise max_message on the server",
                    self.max_message
                ),
            )
            .with_name(&self.name)
            .with_needed(len));
        }
        Ok(())
    }

    pub(crate) fn fd_not_msg(&self) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            "the next item on the pipe is a file descriptor; take it with recv_fd",
        )
        .with_name(&self.name)
    }

    pub(crate) fn too_small(&self, n: usize, have: usize) -> Error {
        Error::new(
            ErrorKind::BufferTooSmall,
            format!(
                "the next message is {n} bytes but the buffer holds {have}; call again with a larger buffer"
            ),
        )
        .with_name(&self.name)
        .with_needed(n)
    }

    /// End the connection for every handle: the peer sees the end.
    fn disconnect(&self, writer: &Writer) {
        if let Some(tx) = &writer.tx {
            tx.close();
        }
        crate::conn::io::shutdown(&self.fd);
    }
}

impl Reader {
    /// Shared memory: read the next item from the ring (a descriptor
    /// announced there is taken from the socket). With `nowait`, an empty
    /// ring is [`ErrorKind::Timeout`] at once (the connection stays usable).
    pub(crate) fn shm_read_item(
        &mut self,
        deadline: Option<Instant>,
        nowait: bool,
    ) -> Result<Option<Item>> {
        let limit = self.link.max_message;
        let mut out = std::mem::take(&mut self.scratch);
        let rx = self.rx.as_mut().expect("shared-memory flavor");
        let r = if nowait {
            rx.try_recv(&mut out, limit)
        } else {
            rx.recv(&mut out, limit, deadline)
        };
        let r = match r {
            // The peer may have sent its last message just before leaving:
            // take what is already there.
            Err(RingError::PeerGone) => match rx.recv(&mut out, limit, Some(Instant::now())) {
                Err(RingError::Timeout) => Err(RingError::PeerGone),
                other => other,
            },
            other => other,
        };
        match r {
            Ok(None) => Ok(None),
            Ok(Some(got)) if got.tag == frame::TAG_DATA => Ok(Some(Item::Msg(out))),
            Ok(Some(got)) if got.tag == frame::TAG_FD && out.is_empty() => {
                self.scratch = out;
                let grace = Instant::now() + FD_GRACE;
                let by = deadline.map_or(grace, |d| d.min(grace));
                match self.read_socket_item(Some(by)) {
                    Ok(Some(fd @ Item::Fd(_))) => Ok(Some(fd)),
                    Err(e) if e.kind() == ErrorKind::PeerGone => Err(e),
                    _ => {
                        let e = Error::new(
                            ErrorKind::Decode,
                            "the peer announced a file descriptor on the ring but none arrived on the socket; the connection was closed, reconnect",
                        )
                        .with_name(&self.link.name);
                        Err(self.link.fail(e))
                    }
                }
            }
            Ok(Some(got)) => Err(self.link.ring_err(RingError::Corrupt(format!(
                "a record with unknown tag {} and {} bytes",
                got.tag,
                out.len()
            )))),
            Err(e) => {
                self.scratch = out;
                Err(self.link.ring_err(e))
            }
        }
    }

    /// Make at least `n` bytes (`n <= READ_BUF`) available in the read
    /// buffer (see [`SocketReader::fill`]).
    fn fill(&mut self, n: usize, deadline: Option<Instant>) -> io::Result<bool> {
        self.rd.fill(self.link.fd.as_fd(), n, deadline)
    }

    /// Read the next item. `Ok(None)`: clean end of stream.
    fn read_item(&mut self, deadline: Option<Instant>) -> Result<Option<Item>> {
        if self.rx.is_some() {
            return self.shm_read_item(deadline, false);
        }
        self.read_socket_item(deadline)
    }

    /// Read the next frame from the socket. `Ok(None)`: clean end of stream.
    fn read_socket_item(&mut self, deadline: Option<Instant>) -> Result<Option<Item>> {
        let link = self.link.clone();
        let timed_out = || {
            Error::new(
                ErrorKind::Timeout,
                "no message arrived before the deadline; the connection stays usable",
            )
            .with_name(&link.name)
        };
        match self.fill(HEADER_LEN, deadline) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out()),
            Err(e) => {
                let e = link.io_err(e, "cannot read from the pipe");
                return Err(link.fail(e));
            }
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.rd.buffered()[..HEADER_LEN]);
        // With a deadline, wait for a whole frame that fits the buffer
        // before consuming its header, so a timeout leaves it in step.
        // (A larger frame's body is read without a deadline.)
        if deadline.is_some() {
            let whole = HEADER_LEN + u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if whole <= READ_BUF {
                match self.fill(whole, deadline) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out()),
                    Err(e) => {
                        let e = link.io_err(e, "cannot read from the pipe");
                        return Err(link.fail(e));
                    }
                }
            }
        }
        self.rd.consume(HEADER_LEN);
        let len = match frame::parse_header(&h, &link.name) {
            Ok((frame::KIND_FD, _)) => {
                return match self.rd.take_fd() {
                    Some(fd) => Ok(Some(Item::Fd(fd))),
                    None => {
                        let e = Error::new(
                            ErrorKind::Decode,
                            "the peer announced a file descriptor but none arrived; the connection is closed",
                        )
                        .with_name(&link.name);
                        Err(link.fail(e))
                    }
                };
            }
            Ok((_, len)) => len as usize,
            Err(e) => return Err(link.fail(e)),
        };
        if len > link.max_message {
            self.discard(len)?;
            return Err(link.too_large(len));
        }
        // The body grows as its bytes arrive: a peer announcing a huge
        // message and stopping pins only what it sent.
        match self.rd.read_body(link.fd.as_fd(), len) {
            Ok(body) => Ok(Some(Item::Msg(body))),
            Err(e) => {
                let e = link.io_err(e, "cannot read from the pipe");
                Err(link.fail(e))
            }
        }
    }

    /// Read and drop `len` bytes of an oversized message, keeping the
    /// stream in step.
    fn discard(&mut self, len: usize) -> Result<()> {
        let mut left = len;
        let mut buf = vec![0u8; len.min(64 * 1024)];
        while left > 0 {
            let n = left.min(buf.len());
            if let Err(e) = self.rd.read_exact(self.link.fd.as_fd(), &mut buf[..n]) {
                let e = self.link.io_err(e, "cannot read from the pipe");
                return Err(self.link.fail(e));
            }
            left -= n;
        }
        Ok(())
    }

    /// An item put back by an earlier call, if any.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn pop_inbox(&mut self) -> Option<Item> {
        self.inbox.pop_front()
    }

    /// Put `item` back: the next call takes it first.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn push_back(&mut self, item: Item) {
        self.inbox.push_front(item);
    }

    fn next_item(&mut self, deadline: Option<Instant>) -> Result<Item> {
        self.link.check_usable()?;
        self.link.may_read()?;
        if let Some(m) = self.inbox.pop_front() {
            return Ok(m);
        }
        match self.read_item(deadline)? {
            Some(m) => Ok(m),
            None => Err(self.link.ended()),
        }
    }

    fn next_message(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>> {
        match self.next_item(deadline)? {
            Item::Msg(m) => Ok(m),
            fd @ Item::Fd(_) => {
                self.inbox.push_front(fd);
                Err(self.link.fd_not_msg())
            }
        }
    }

    fn recv_fd(&mut self) -> Result<OwnedFd> {
        match self.next_item(None)? {
            Item::Fd(fd) => Ok(fd),
            m @ Item::Msg(_) => {
                self.inbox.push_front(m);
                Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the next item on the pipe is a message, not a file descriptor; take it with recv",
                )
                .with_name(&self.link.name))
            }
        }
    }

    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        let link = self.link.clone();
        if self.inbox.is_empty() && link.check_usable().is_ok() && link.may_read().is_ok() {
            if let Some(rx) = self.rx.as_mut() {
                // Look at the next message's size without taking it.
                match rx.peek(None) {
                    Ok(Some((frame::TAG_DATA, total)))
                        if total > buf.len() as u64 && total <= link.max_message as u64 =>
                    {
                        return Err(link.too_small(total as usize, buf.len()));
                    }
                    Ok(_) => {}
                    Err(RingError::PeerGone) => {} // the read below tells
                    Err(e) => return Err(link.ring_err(e)),
                }
            }
        }
        let msg = self.next_message(None)?;
        if msg.len() > buf.len() {
            let n = msg.len();
            self.inbox.push_front(Item::Msg(msg));
            return Err(link.too_small(n, buf.len()));
        }
        buf[..msg.len()].copy_from_slice(&msg);
        let n = msg.len();
        if self.rx.is_some() && msg.capacity() <= READ_BUF {
            self.scratch = msg;
        }
        Ok(n)
    }

    /// Byte mode: copy from the current chunk, reading the next when it is
    /// used up.
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk_pos >= self.chunk.len() {
            self.link.check_usable()?;
            self.link.may_read()?;
            let next = match self.inbox.pop_front() {
                Some(m) => Some(m),
                None => self.read_item(None)?,
            };
            match next {
                Some(fd @ Item::Fd(_)) => {
                    self.inbox.push_front(fd);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the next item on the pipe is a file descriptor; take it with recv_fd",
                    ));
                }
                Some(Item::Msg(c)) => {
                    self.chunk = c;
                    self.chunk_pos = 0;
                }
                None => return Ok(0),
            }
        }
        Ok(self.take_chunk(buf))
    }

    /// Byte mode: copy what `buf` holds of the current chunk.
    pub(crate) fn take_chunk(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.chunk.len() - self.chunk_pos);
        buf[..n].copy_from_slice(&self.chunk[self.chunk_pos..self.chunk_pos + n]);
        self.chunk_pos += n;
        n
    }
}

impl Writer {
    fn write_frame(&mut self, kind: u8, body: &[u8]) -> Result<()> {
        let link = self.link.clone();
        if let Some(tx) = self.tx.as_mut() {
            let tag = if kind == frame::KIND_FD {
                frame::TAG_FD
            } else {
                frame::TAG_DATA
            };
            return match tx.send(tag, &[body]) {
                Ok(()) => Ok(()),
                Err(e) => Err(link.ring_err(e)),
            };
        }
        let h = frame::header(kind, body.len() as u32);
        let r = if body.len() <= COALESCE_LIMIT {
            self.scratch.clear();
            self.scratch.extend_from_slice(&h);
            self.scratch.extend_from_slice(body);
            crate::conn::io::send_all(link.fd.as_fd(), &self.scratch)
        } else {
            crate::conn::io::send_all(link.fd.as_fd(), &h)
                .and_then(|()| crate::conn::io::send_all(link.fd.as_fd(), body))
        };
        r.map_err(|e| {
            let e = link.io_err(e, "cannot write to the pipe");
            link.fail(e)
        })
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.link.check_usable()?;
        self.link.may_write()?;
        self.link.check_send_size(msg.len())?;
        self.write_frame(frame::KIND_DATA, msg)
    }

    fn send_fd(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        let link = self.link.clone();
        link.check_usable()?;
        link.may_write()?;
        if link.peer.addr.is_some() || link.name.starts_with(TCP_PREFIX) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "file descriptors cannot cross TCP; pass it over a local pipe",
            )
            .with_name(&link.name));
        }
        let h = frame::header(frame::KIND_FD, 0);
        crate::conn::io::send_with_fd(link.fd.as_fd(), &h, fd).map_err(|e| {
            let e = link.io_err(e, "cannot pass the file descriptor");
            link.fail(e)
        })?;
        if self.tx.is_some() {
            // The descriptor went first, so it is there when the peer reads
            // this record; the record keeps it in order with the messages.
            self.write_frame(frame::KIND_FD, &[])?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let link = self.link.clone();
        link.check_usable()?;
        if let Some(tx) = self.tx.as_mut() {
            return match tx.wait_drained(None) {
                Ok(()) => Ok(()),
                Err(e) => Err(link.ring_err(e)),
            };
        }
        let mut pause = Duration::from_micros(20);
        loop {
            let unread = crate::conn::io::unread_outgoing(link.fd.as_fd())
                .map_err(|e| link.io_err(e, "cannot query the pipe"))?;
            if unread == 0 {
                // A peer that closes with our bytes unread in its queue also
                // empties the queue; the kernel then leaves ECONNRESET on ours.
                if crate::conn::io::take_error(link.fd.as_fd()) {
                    let e = Error::new(
                        ErrorKind::PeerGone,
                        "the peer closed the pipe without reading everything written; reconnect and send again",
                    )
                    .with_name(&link.name);
                    return Err(link.fail(e));
                }
                return Ok(());
            }
            // The peer's end closing shows as readable end-of-stream or an
            // error on ours; check before waiting again.
            if crate::conn::io::peer_closed(link.fd.as_fd()) {
                let e = Error::new(
                    ErrorKind::PeerGone,
                    "the peer closed the pipe before reading everything written",
                )
                .with_name(&link.name);
                return Err(link.fail(e));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Byte mode: write one chunk (at most `max_message` bytes of `buf`).
    fn write_bytes(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.link.check_usable()?;
        self.link.may_write()?;
        let n = buf.len().min(self.link.max_message);
        self.write_frame(frame::KIND_DATA, &buf[..n])?;
        Ok(n)
    }
}

impl NamedPipe {
    /// Connect to `name` (or `tcp://HOST:PORT`), waiting up to `timeout`
    /// for the server to appear or an instance to free up. Uses the
    /// namespace from the environment; see [`ClientOptions`] for more.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mut pipe = ipckit::pipe::NamedPipe::connect("calc", Duration::from_secs(5))?;
    /// let reply = pipe.transact(b"2+2")?;
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    #[doc(alias = "WaitNamedPipe")]
    pub fn connect(name: &str, timeout: Duration) -> Result<NamedPipe> {
        ClientOptions::new().timeout(timeout).connect(name)
    }

    /// The reader and the writer, if this is the only handle (the async
    /// form takes a connection over this way).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_reader_writer(self) -> std::result::Result<(Reader, Writer), NamedPipe> {
        if Arc::strong_count(&self.rd) != 1 || Arc::strong_count(&self.wr) != 1 {
            return Err(self);
        }
        let NamedPipe { rd, wr, .. } = self;
        fn sole<T>(m: Arc<Mutex<T>>) -> T {
            match Arc::try_unwrap(m) {
                Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
                Err(_) => unreachable!("checked to be the only handle"),
            }
        }
        Ok((sole(rd), sole(wr)))
    }

    /// Which path this connection's messages take:
    /// [`Transport::SharedMemory`] when both sides agreed on shared-memory
    /// rings (local, message mode, neither opted out), else
    /// [`Transport::Socket`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::Transport;
    /// let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new()
    ///     .namespace(&ns)
    ///     .transport(Transport::Socket)
    ///     .connect("n")
    ///     .unwrap();
    /// assert_eq!(c.transport(), Transport::Socket);
    /// ```
    pub fn transport(&self) -> Transport {
        self.link.transport()
    }

    /// The pipe's name (as the client gave it, `tcp://…` included).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert_eq!(c.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.link.name
    }

    /// The pipe's mode, as the server set it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert_eq!(c.mode(), ipckit::pipe::PipeMode::Message);
    /// ```
    pub fn mode(&self) -> PipeMode {
        self.link.mode
    }

    /// The largest message either side may send.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(100).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert_eq!(c.max_message_size(), 100);
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.link.max_message
    }

    /// Who is at the other end (`GetNamedPipeClientProcessId` and friends).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let _c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let conn = s.accept().unwrap();
    /// assert_eq!(conn.peer().pid, Some(std::process::id()));
    /// ```
    #[doc(alias = "GetNamedPipeClientProcessId")]
    pub fn peer(&self) -> PeerInfo {
        self.link.peer
    }

    /// Pass a file descriptor to the peer (Win32 `DuplicateHandle` into the
    /// peer; `SCM_RIGHTS` here). It arrives in order with the messages; the
    /// peer takes it with [`recv_fd`](Self::recv_fd). Local pipes only:
    /// over TCP this is [`ErrorKind::Unsupported`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::io::{Read, Write};
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let mut conn = s.accept().unwrap();
    /// let (r, mut w) = ipckit::pipe::pipe().unwrap();
    /// c.send_fd(std::os::fd::AsFd::as_fd(&r)).unwrap();
    /// let got = conn.recv_fd().unwrap();
    /// w.write_all(b"via fd").unwrap();
    /// drop(w);
    /// let mut text = String::new();
    /// std::fs::File::from(got).read_to_string(&mut text).unwrap();
    /// assert_eq!(text, "via fd");
    /// ```
    #[doc(alias = "DuplicateHandle")]
    pub fn send_fd(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        lock(&self.wr).send_fd(fd)
    }

    /// Receive a file descriptor the peer passed with
    /// [`send_fd`](Self::send_fd). If the next item is a message instead,
    /// the error is [`ErrorKind::InvalidInput`] and the message stays
    /// readable.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let mut conn = s.accept().unwrap();
    /// c.send(b"not an fd").unwrap();
    /// assert_eq!(conn.recv_fd().unwrap_err().kind(), ipckit::ErrorKind::InvalidInput);
    /// assert_eq!(conn.recv().unwrap(), b"not an fd");
    /// ```
    pub fn recv_fd(&mut self) -> Result<OwnedFd> {
        lock(&self.rd).recv_fd()
    }

    /// Send one message (`WriteFile`). A message over
    /// [`max_message_size`](Self::max_message_size) is refused with
    /// [`ErrorKind::TooLarge`] before anything is written, so the connection
    /// stays usable.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(4).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert_eq!(c.send(b"too long").unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
    /// c.send(b"ok").unwrap();
    /// assert_eq!(s.accept().unwrap().recv().unwrap(), b"ok");
    /// ```
    #[doc(alias = "WriteFile")]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        lock(&self.wr).send(msg)
    }

    /// Receive the next message, whole (`ReadFile`). [`ErrorKind::PeerGone`]
    /// once the other end is gone.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// s.accept().unwrap().send(b"").unwrap();
    /// assert_eq!(c.recv().unwrap(), b""); // empty messages are messages too
    /// ```
    #[doc(alias = "ReadFile")]
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        lock(&self.rd).next_message(None)
    }

    /// Like [`recv`](Self::recv), giving up with [`ErrorKind::Timeout`]
    /// after `timeout`; the connection stays usable.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let e = c.recv_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        lock_until(&self.rd, deadline, &self.link)?.next_message(Some(deadline))
    }

    /// Receive the next message into `buf`, returning its length. If `buf`
    /// is too small the error ([`ErrorKind::BufferTooSmall`]) carries the
    /// size needed ([`Error::needed`]) and the message stays readable
    /// (`ERROR_MORE_DATA`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// s.accept().unwrap().send(b"hello").unwrap();
    /// let mut small = [0u8; 2];
    /// let e = c.recv_into(&mut small).unwrap_err();
    /// assert_eq!(e.needed(), Some(5));
    /// let mut big = [0u8; 8];
    /// assert_eq!(c.recv_into(&mut big).unwrap(), 5);
    /// assert_eq!(&big[..5], b"hello");
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        lock(&self.rd).recv_into(buf)
    }

    /// Send a request and receive the reply (`TransactNamedPipe`). (With
    /// several handles from [`try_clone`](Self::try_clone) receiving at
    /// once, the reply goes to whichever receives first.)
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let t = std::thread::spawn(move || {
    ///     let mut conn = s.accept().unwrap();
    ///     let m = conn.recv().unwrap();
    ///     conn.send(&m.to_ascii_uppercase()).unwrap();
    /// });
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert_eq!(c.transact(b"abc").unwrap(), b"ABC");
    /// t.join().unwrap();
    /// ```
    #[doc(alias = "TransactNamedPipe")]
    pub fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        self.send(request)?;
        self.recv()
    }

    /// Return once the peer has read everything written so far
    /// (`FlushFileBuffers`). On shared memory this waits until the peer
    /// has taken every message out of the ring; on a local socket, until
    /// the kernel holds no unread byte of ours; over TCP, until the peer's
    /// host acknowledged every byte. [`ErrorKind::PeerGone`] if the peer
    /// goes away first.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let t = std::thread::spawn(move || s.accept().unwrap().recv().unwrap());
    /// c.send(b"x").unwrap();
    /// c.flush().unwrap(); // returns only after the server's recv
    /// assert_eq!(t.join().unwrap(), b"x");
    /// ```
    #[doc(alias = "FlushFileBuffers")]
    pub fn flush(&mut self) -> Result<()> {
        lock(&self.wr).flush()
    }

    /// End this connection (`DisconnectNamedPipe`), for every handle and
    /// half of it; the peer sees [`ErrorKind::PeerGone`]. On the server
    /// side the instance is freed (once every handle is dropped) for the
    /// next client; the server keeps serving.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// s.accept().unwrap().disconnect();
    /// assert_eq!(c.recv().unwrap_err().kind(), ipckit::ErrorKind::PeerGone);
    /// ```
    #[doc(alias = "DisconnectNamedPipe")]
    pub fn disconnect(self) {
        self.link.disconnect(&lock(&self.wr));
    }

    /// Another handle to this connection (`DuplicateHandle` on a pipe
    /// handle), for another thread. Messages are shared out: each is
    /// received by one handle, whole; each send is written whole (the
    /// handles take turns per direction). Works on the socket and on
    /// shared memory. Never fails on Linux (the `Result` is std's
    /// `try_clone` convention).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let mut conn = s.accept().unwrap();
    /// let mut other = conn.try_clone().unwrap();
    /// let t = std::thread::spawn(move || other.recv().unwrap());
    /// c.send(b"to whichever handle").unwrap();
    /// assert_eq!(t.join().unwrap(), b"to whichever handle");
    /// conn.send(b"from the first").unwrap();
    /// assert_eq!(c.recv().unwrap(), b"from the first");
    /// ```
    #[doc(alias = "DuplicateHandle")]
    pub fn try_clone(&self) -> Result<NamedPipe> {
        Ok(NamedPipe {
            link: self.link.clone(),
            rd: self.rd.clone(),
            wr: self.wr.clone(),
        })
    }

    /// Split into a receiving and a sending half, for two threads (one
    /// reads while the other writes, on the socket and on shared memory
    /// alike). The connection ends when both halves (and every clone) are
    /// dropped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let mut conn = s.accept().unwrap();
    /// let (mut rx, mut tx) = c.split();
    /// let reader = std::thread::spawn(move || rx.recv().unwrap());
    /// tx.send(b"ping").unwrap();
    /// assert_eq!(conn.recv().unwrap(), b"ping");
    /// conn.send(b"pong").unwrap();
    /// assert_eq!(reader.join().unwrap(), b"pong");
    /// ```
    pub fn split(self) -> (RecvHalf, SendHalf) {
        (
            RecvHalf {
                link: self.link.clone(),
                rd: self.rd,
            },
            SendHalf {
                link: self.link,
                wr: self.wr,
            },
        )
    }
}

impl AsFd for NamedPipe {
    /// The connection's socket.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::os::fd::AsFd;
    /// let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let _socket = c.as_fd();
    /// ```
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.link.fd.as_fd()
    }
}

impl AsRawFd for NamedPipe {
    /// The connection's socket.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::os::fd::AsRawFd;
    /// let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert!(c.as_raw_fd() >= 0);
    /// ```
    fn as_raw_fd(&self) -> RawFd {
        self.link.fd.as_raw_fd()
    }
}

impl Read for NamedPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        lock(&self.rd).read_bytes(buf)
    }
}

impl Write for NamedPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.wr).write_bytes(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        NamedPipe::flush(self).map_err(Into::into)
    }
}

/// The receiving half of a [`NamedPipe`], from [`NamedPipe::split`]:
/// `recv`, `recv_timeout`, `recv_into`, `recv_fd`, and `Read` in byte mode.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
/// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
/// let (mut rx, _tx) = s.accept().unwrap().split();
/// c.send(b"in").unwrap();
/// assert_eq!(rx.recv().unwrap(), b"in");
/// ```
pub struct RecvHalf {
    link: Arc<Link>,
    rd: Arc<Mutex<Reader>>,
}

/// The sending half of a [`NamedPipe`], from [`NamedPipe::split`]:
/// `send`, `send_fd`, `flush`, and `Write` in byte mode.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
/// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
/// let (_rx, mut tx) = s.accept().unwrap().split();
/// tx.send(b"out").unwrap();
/// assert_eq!(c.recv().unwrap(), b"out");
/// ```
pub struct SendHalf {
    link: Arc<Link>,
    wr: Arc<Mutex<Writer>>,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecvHalf").field(&self.link).finish()
    }
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SendHalf").field(&self.link).finish()
    }
}

impl RecvHalf {
    /// Receive the next message, whole; see [`NamedPipe::recv`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (mut rx, _tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// s.accept().unwrap().send(b"m").unwrap();
    /// assert_eq!(rx.recv().unwrap(), b"m");
    /// ```
    #[doc(alias = "ReadFile")]
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        lock(&self.rd).next_message(None)
    }

    /// Like [`recv`](Self::recv), giving up with [`ErrorKind::Timeout`]
    /// after `timeout`; see [`NamedPipe::recv_timeout`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (mut rx, _tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// let e = rx.recv_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        lock_until(&self.rd, deadline, &self.link)?.next_message(Some(deadline))
    }

    /// Receive the next message into `buf`; see [`NamedPipe::recv_into`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (mut rx, _tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// s.accept().unwrap().send(b"abc").unwrap();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(rx.recv_into(&mut buf).unwrap(), 3);
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        lock(&self.rd).recv_into(buf)
    }

    /// Receive a file descriptor; see [`NamedPipe::recv_fd`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (mut rx, _tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// let (r, _w) = ipckit::pipe::pipe().unwrap();
    /// s.accept().unwrap().send_fd(std::os::fd::AsFd::as_fd(&r)).unwrap();
    /// let _fd = rx.recv_fd().unwrap();
    /// ```
    pub fn recv_fd(&mut self) -> Result<OwnedFd> {
        lock(&self.rd).recv_fd()
    }

    /// The pipe's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (rx, _tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// assert_eq!(rx.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.link.name
    }

    /// Who is at the other end; see [`NamedPipe::peer`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (rx, _tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// assert!(rx.peer().pid.is_some());
    /// ```
    pub fn peer(&self) -> PeerInfo {
        self.link.peer
    }
}

impl SendHalf {
    /// Send one message; see [`NamedPipe::send`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (_rx, mut tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// tx.send(b"m").unwrap();
    /// assert_eq!(s.accept().unwrap().recv().unwrap(), b"m");
    /// ```
    #[doc(alias = "WriteFile")]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        lock(&self.wr).send(msg)
    }

    /// Pass a file descriptor; see [`NamedPipe::send_fd`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (_rx, mut tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// let (r, _w) = ipckit::pipe::pipe().unwrap();
    /// tx.send_fd(std::os::fd::AsFd::as_fd(&r)).unwrap();
    /// let _fd = s.accept().unwrap().recv_fd().unwrap();
    /// ```
    pub fn send_fd(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        lock(&self.wr).send_fd(fd)
    }

    /// Wait until the peer read everything sent; see [`NamedPipe::flush`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (_rx, mut tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// let t = std::thread::spawn(move || s.accept().unwrap().recv().unwrap());
    /// tx.send(b"x").unwrap();
    /// tx.flush().unwrap();
    /// assert_eq!(t.join().unwrap(), b"x");
    /// ```
    #[doc(alias = "FlushFileBuffers")]
    pub fn flush(&mut self) -> Result<()> {
        lock(&self.wr).flush()
    }

    /// The pipe's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let (_rx, tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// assert_eq!(tx.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.link.name
    }

    /// The largest message either side may send.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(10).create("n").unwrap();
    /// let (_rx, tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// assert_eq!(tx.max_message_size(), 10);
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.link.max_message
    }
}

impl Read for RecvHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        lock(&self.rd).read_bytes(buf)
    }
}

impl Write for SendHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.wr).write_bytes(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        SendHalf::flush(self).map_err(Into::into)
    }
}

macro_rules! socket_of {
    ($t:ty) => {
        impl AsFd for $t {
            /// The connection's socket (see [`NamedPipe`]'s `AsFd`).
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.link.fd.as_fd()
            }
        }

        impl AsRawFd for $t {
            /// The connection's socket.
            fn as_raw_fd(&self) -> RawFd {
                self.link.fd.as_raw_fd()
            }
        }
    };
}

socket_of!(RecvHalf);
socket_of!(SendHalf);

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> (tempfile::TempDir, Namespace) {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        (d, ns)
    }

    #[test]
    fn thread_safety() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<PipeServer>();
        send::<NamedPipe>();
        // Clones and halves are used from several threads at once.
        send_sync::<NamedPipe>();
        send_sync::<RecvHalf>();
        send_sync::<SendHalf>();
        send_sync::<ServerOptions>();
        send_sync::<ClientOptions>();
    }

    #[test]
    fn oversized_from_a_hostile_peer_is_discarded_and_stream_stays_in_step() {
        let (_d, ns) = ns();
        let s = ServerOptions::new()
            .namespace(&ns)
            .max_message_size(16)
            .create("p")
            .unwrap();
        let mut c = ClientOptions::new()
            .namespace(&ns)
            .transport(Transport::Socket)
            .connect("p")
            .unwrap();
        let mut conn = s.accept().unwrap();
        // Bypass the client's own check, as a hostile peer would.
        lock(&c.wr)
            .write_frame(frame::KIND_DATA, &[7u8; 100])
            .unwrap();
        c.send(b"next").unwrap();
        let e = conn.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(e.needed(), Some(100));
        assert_eq!(conn.recv().unwrap(), b"next");
    }

    #[test]
    fn garbage_header_breaks_only_that_connection() {
        let (_d, ns) = ns();
        let s = ServerOptions::new().namespace(&ns).create("p").unwrap();
        let c = ClientOptions::new()
            .namespace(&ns)
            .transport(Transport::Socket)
            .connect("p")
            .unwrap();
        let mut conn = s.accept().unwrap();
        crate::conn::io::send_all(c.link.fd.as_fd(), b"GARBAGE!").unwrap();
        assert_eq!(conn.recv().unwrap_err().kind(), ErrorKind::Decode);
        assert_eq!(conn.recv().unwrap_err().kind(), ErrorKind::PeerGone);
        let mut c2 = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let mut conn2 = s.accept().unwrap();
        c2.send(b"fine").unwrap();
        assert_eq!(conn2.recv().unwrap(), b"fine");
    }

    /// Both sides on shared memory (unless the environment opts out).
    fn shm_pair(ns: &Namespace, max: usize) -> (NamedPipe, NamedPipe, PipeServer) {
        let s = ServerOptions::new()
            .namespace(ns)
            .max_message_size(max)
            .transport(Transport::SharedMemory)
            .create("p")
            .unwrap();
        let c = ClientOptions::new()
            .namespace(ns)
            .transport(Transport::SharedMemory)
            .connect("p")
            .unwrap();
        let conn = s.accept().unwrap();
        assert_eq!(c.transport(), Transport::SharedMemory);
        assert_eq!(conn.transport(), Transport::SharedMemory);
        (c, conn, s)
    }

    #[test]
    fn shm_messages_fds_recv_into_and_flush() {
        let (_d, ns) = ns();
        let (mut c, mut conn, _s) = shm_pair(&ns, 1 << 20);
        c.send(b"one").unwrap();
        let (r, mut w) = crate::pipe::pipe().unwrap();
        c.send_fd(r.as_fd()).unwrap();
        c.send(&[5u8; 300_000]).unwrap();
        let mut small = [0u8; 2];
        let e = conn.recv_into(&mut small).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BufferTooSmall);
        assert_eq!(e.needed(), Some(3));
        assert_eq!(conn.recv_fd().unwrap_err().kind(), ErrorKind::InvalidInput);
        let mut big = [0u8; 8];
        assert_eq!(conn.recv_into(&mut big).unwrap(), 3);
        assert_eq!(conn.recv().unwrap_err().kind(), ErrorKind::InvalidInput);
        let got = conn.recv_fd().unwrap();
        w.write_all(b"z").unwrap();
        let mut b = [0u8; 1];
        std::fs::File::from(got).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"z");
        let t = std::thread::spawn(move || {
            let m = conn.recv().unwrap();
            (conn, m)
        });
        c.flush().unwrap();
        let (conn, m) = t.join().unwrap();
        assert_eq!(m, vec![5u8; 300_000]);
        conn.disconnect();
        assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::PeerGone);
    }

    #[test]
    fn shm_oversized_from_a_hostile_peer_is_decode_and_closes() {
        let (_d, ns) = ns();
        let (mut c, mut conn, _s) = shm_pair(&ns, 16);
        // Bypass the client's own check, as a hostile peer would.
        lock(&c.wr)
            .write_frame(frame::KIND_DATA, &[7u8; 100])
            .unwrap();
        let e = conn.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        assert!(e.to_string().contains("closed"), "{e}");
        assert_eq!(conn.recv().unwrap_err().kind(), ErrorKind::PeerGone);
        assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::PeerGone);
    }

    #[test]
    fn direction_is_enforced() {
        let (_d, ns) = ns();
        let s = ServerOptions::new()
            .namespace(&ns)
            .direction(Direction::Inbound)
            .create("p")
            .unwrap();
        let mut c = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let mut conn = s.accept().unwrap();
        assert_eq!(
            conn.send(b"x").unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::PermissionDenied);
        c.send(b"up").unwrap();
        assert_eq!(conn.recv().unwrap(), b"up");
    }

    #[test]
    fn uid_allow_list_refuses_others() {
        let (_d, ns) = ns();
        let me = crate::sys::uid();
        let _s = ServerOptions::new()
            .namespace(&ns)
            .allow_uids(&[me.wrapping_add(1)])
            .create("p")
            .unwrap();
        let e = ClientOptions::new()
            .namespace(&ns)
            .connect("p")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(_s.stats().refused_denied, 1);
        let (_d2, ns2) = self::ns();
        let s2 = ServerOptions::new()
            .namespace(&ns2)
            .allow_uids(&[me])
            .create("p")
            .unwrap();
        ClientOptions::new().namespace(&ns2).connect("p").unwrap();
        assert_eq!(s2.accept().unwrap().peer().uid, Some(me));
    }

    #[test]
    fn a_client_over_max_instances_is_busy_and_counted() {
        let (_d, ns) = ns();
        let s = ServerOptions::new()
            .namespace(&ns)
            .max_instances(1)
            .create("p")
            .unwrap();
        let _first = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let e = ClientOptions::new()
            .namespace(&ns)
            .timeout(Duration::ZERO)
            .connect("p")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert_eq!(s.stats().refused_instances, 1);
        // Published for `ipckit ls --json` within a moment (bounded wait).
        let until = Instant::now() + Duration::from_secs(30);
        let published = loop {
            let l = ns.info("p").unwrap().and_then(|i| i.limits);
            if l.as_ref().is_some_and(|l| l.refused_instances == 1) || Instant::now() > until {
                break l;
            }
            std::thread::yield_now();
        };
        assert_eq!(published.map(|l| l.refused_instances), Some(1));
        drop(s);
        assert!(ns.info("p").unwrap().is_none());
        assert!(!ns.stats_path("p").exists());
    }

    #[test]
    fn recv_timeout_is_bounded_while_a_clone_receives() {
        let (_d, ns) = ns();
        let s = ServerOptions::new().namespace(&ns).create("p").unwrap();
        let mut c = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let mut conn = s.accept().unwrap();
        let mut clone = conn.try_clone().unwrap();
        let t = std::thread::spawn(move || clone.recv_timeout(Duration::from_secs(30)));
        // Wait (bounded) until the clone is inside its receive.
        let until = Instant::now() + Duration::from_secs(30);
        while conn.rd.try_lock().is_ok() {
            assert!(Instant::now() < until, "the clone never started receiving");
            std::thread::yield_now();
        }
        // Its deadline holds although the clone holds the receiving side.
        let e = conn.recv_timeout(Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        c.send(b"one").unwrap();
        assert_eq!(t.join().unwrap().unwrap(), b"one");
    }

    #[test]
    fn byte_mode_flush_waits_for_the_reader() {
        let (_d, ns) = ns();
        let s = ServerOptions::new()
            .namespace(&ns)
            .mode(PipeMode::Byte)
            .create("p")
            .unwrap();
        let mut c = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let mut conn = s.accept().unwrap();
        c.write_all(b"abc").unwrap();
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 3];
            conn.read_exact(&mut b).unwrap();
            b
        });
        Write::flush(&mut c).unwrap();
        assert_eq!(&reader.join().unwrap(), b"abc");
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    #[test]
    fn flush_reports_peer_gone_when_peer_closed_without_reading() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        let s = ServerOptions::new().namespace(&ns).create("p").unwrap();
        let mut c = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let conn = s.accept().unwrap();
        c.send(b"never read").unwrap();
        drop(conn); // the server side goes away without reading
        let e = c.flush().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    }
}

#[cfg(test)]
mod review_timeout_tests {
    use super::*;

    /// Run `f` on a thread; fail (instead of hanging) if it takes over 10 s.
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("recv_timeout did not return: it hung past its deadline")
    }

    #[test]
    fn recv_timeout_honours_the_deadline_after_a_partial_frame() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        let s = ServerOptions::new()
            .namespace(&ns)
            .transport(Transport::Socket)
            .create("p")
            .unwrap();
        let c = ClientOptions::new().namespace(&ns).connect("p").unwrap();
        let mut conn = s.accept().unwrap();
        assert_eq!(conn.transport(), Transport::Socket);
        let h = frame::header(frame::KIND_DATA, 3);
        // Half a header, then (later) the rest with a partial body.
        crate::conn::io::send_all(c.link.fd.as_fd(), &h[..4]).unwrap();
        let (mut conn, r) = bounded(move || {
            let r = conn.recv_timeout(Duration::from_millis(50));
            (conn, r)
        });
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Timeout);
        crate::conn::io::send_all(c.link.fd.as_fd(), &h[4..]).unwrap();
        crate::conn::io::send_all(c.link.fd.as_fd(), b"a").unwrap();
        let (mut conn, r) = bounded(move || {
            let r = conn.recv_timeout(Duration::from_millis(50));
            (conn, r)
        });
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Timeout);
        // The connection stayed in step: the rest completes the message.
        crate::conn::io::send_all(c.link.fd.as_fd(), b"bc").unwrap();
        assert_eq!(conn.recv().unwrap(), b"abc");
    }
}
