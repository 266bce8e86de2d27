//! Pipes: named (`CreateNamedPipe`) and anonymous (`CreatePipe`) — on
//! Windows, the system's own.
//!
//! A **named pipe** is a server endpoint that clients connect to by name.
//! Here it is a Win32 named pipe: [`ServerOptions::create`] is
//! `CreateNamedPipeW`, [`PipeServer::accept`] takes the instances that
//! `ConnectNamedPipe` connected, [`ClientOptions::connect`] is `CreateFileW`
//! (with `WaitNamedPipeW` while every instance is busy), and the bytes on
//! the pipe are exactly the user's: a message is one `WriteFile`, received
//! by one `ReadFile`. So a plain Win32 program (`CreateNamedPipe` /
//! `ConnectNamedPipe` / `ReadFile` / `WriteFile`, or `WaitNamedPipe` /
//! `CreateFile` / `SetNamedPipeHandleState` / `TransactNamedPipe`) talks
//! to ipckit's pipes as to its own.
//!
//! Process A (server):
//!
//! ```no_run
//! use ipckit::pipe::ServerOptions;
//! let server = ServerOptions::new().max_instances(8).create("calc")?;
//! let mut conn = server.accept()?;
//! let request = conn.recv()?;
//! conn.send(&request)?;
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (client):
//!
//! ```no_run
//! use std::time::Duration;
//! let mut pipe = ipckit::pipe::NamedPipe::connect("calc", Duration::from_secs(5))?;
//! let reply = pipe.transact(b"2+2")?;
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! # Names
//!
//! The pipe `NAME` of the namespace directory `DIR` is
//! `\\.\pipe\ipckit.<H>.<NAME with '/' → ':'>`, where `<H>` is the hash of
//! `DIR` that mappings use too (see [`crate::shm`]; [`PipeServer::os_name`]
//! and [`ServerOptions::os_name`] give it). A name already in the system's
//! form, `\\.\pipe\X`, is used as is (and a client may also give
//! `\\HOST\pipe\X`, a pipe on another machine). Pipe names are
//! case-insensitive on Windows.
//!
//! # What differs from Linux
//!
//! - Security: every instance is created with a security descriptor that
//!   grants only the creating user (`D:P(A;;GA;;;<your SID>)`) and with
//!   `PIPE_REJECT_REMOTE_CLIENTS` unless
//!   [`ServerOptions::accept_remote_clients`] is set. The first instance is
//!   created with `FILE_FLAG_FIRST_PIPE_INSTANCE` (and, as Wine ignores
//!   that flag, checked to be the pipe's only instance), so a second
//!   server on the name is [`ErrorKind::AlreadyExists`]. There are no stale servers
//!   (a pipe goes with its last instance): [`PipeServer::replaced_stale`]
//!   is always false. A pipe lives while any of its instances does, so
//!   the name stays taken (a new server on it is `AlreadyExists`) while a
//!   dropped server's accepted connections are still open.
//! - Instances: one thread per server keeps one instance listening
//!   (`ConnectNamedPipe` in flight) while fewer than `max_instances` are
//!   connected; a connected client occupies its instance until the server
//!   drops the connection (accepted or not). With every instance
//!   connected, a client gets `ERROR_PIPE_BUSY` ([`ErrorKind::Busy`]) or
//!   waits in `WaitNamedPipeW`. Of [`Limits`] only `max_connections` is
//!   applied (as a bound on instances); Windows allows 254 instances or
//!   unlimited, so a bound over 254 means unlimited for the system and is
//!   kept by ipckit. Two short windows come from the system's model: a
//!   client arriving just after another connected, before the next
//!   instance listens, finds every instance busy; and with
//!   `max_instances(1)` the name is free between the connection's drop and
//!   the next instance's creation, so a client meanwhile sees no server.
//!   A client with a timeout retries through both; with none it gets
//!   `Busy` or `NotFound`.
//! - The client learns the mode from the pipe (`GetNamedPipeInfo`), the
//!   direction from the access it obtained, and `max_message_size` from
//!   the pipe's buffer sizes, which an ipckit server sets to its
//!   `max_message_size` (Windows may round them up); for a name in the
//!   system's form the client allows at least
//!   [`DEFAULT_MAX_MESSAGE_SIZE`]. Whatever the sender allows, the
//!   receiver refuses a message over its own limit with
//!   [`ErrorKind::TooLarge`] (discarded, connection usable).
//! - [`NamedPipe::peer`] has the pid only (`GetNamedPipeClientProcessId`
//!   / `GetNamedPipeServerProcessId`); uid, gid and address are `None`.
//! - Linux-only, left out here: TCP (`ServerOptions::tcp`, `tcp://`
//!   names, `PipeServer::tcp_addr`), descriptor passing (`send_fd` /
//!   `recv_fd`), the shared-memory transport (`transport`,
//!   `wait_strategy`, `NamedPipe::transport`: a Windows pipe is always the
//!   system's pipe), uid allow-lists (`allow_uids`, `allow_server_uids`:
//!   the security descriptor keeps other users' clients out, and a client
//!   checks that the server runs as its user unless
//!   [`ClientOptions::allow_any_server`]) and
//!   `PipeServer::stats`.
//!
//! The async form, for tokio applications, is `pipe::tokio` (feature
//! `tokio`): the same pipes, with overlapped I/O as futures.
//!
//! An **anonymous pipe** ([`pipe()`]) is a one-way stream for a parent and
//! the child it starts; see [`CommandExt::spawn_with_handles`].
//!
//! [`Limits`]: crate::Limits

// The async form: tokio_windows.rs beside this file (pipe/tokio.rs is
// Linux's).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[path = "tokio_windows.rs"]
pub mod tokio;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::name::{Namespace, PIPE_PREFIX as LOCAL_PREFIX};
use crate::sys::pipe::{self as os, Access, Done, InstanceSpec, Listening};

/// Default limit on one message: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Largest `max_message_size` a pipe accepts: 1 GiB.
pub const MAX_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// Reads grow their buffer in steps of at most this much.
const READ_STEP: usize = 64 * 1024;

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

impl Direction {
    fn access(self) -> Access {
        match self {
            Direction::Duplex => Access::Duplex,
            Direction::Inbound => Access::Inbound,
            Direction::Outbound => Access::Outbound,
        }
    }

    fn of(access: Access) -> Self {
        match access {
            Access::Duplex => Direction::Duplex,
            Access::Inbound => Direction::Inbound,
            Access::Outbound => Direction::Outbound,
        }
    }
}

/// Who is at the other end of a connection. On Windows only `pid` is
/// known (`GetNamedPipeClientProcessId` / `GetNamedPipeServerProcessId`);
/// `uid`, `gid` and `addr` are always `None`.
///
/// ```
/// let p = ipckit::pipe::PeerInfo::default();
/// assert!(p.pid.is_none() && p.addr.is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's process id.
    pub pid: Option<u32>,
    /// Always `None` on Windows.
    pub uid: Option<u32>,
    /// Always `None` on Windows.
    pub gid: Option<u32>,
    /// Always `None` on Windows.
    pub addr: Option<SocketAddr>,
}

/// The system's name of the pipe `name`: `\\.\pipe\X` as is (a client may
/// also name `\\HOST\pipe\X`), else `\\.\pipe\ipckit.<H>.<name>` in the
/// namespace `ns` (or the one from the environment).
fn os_name(ns: Option<&Namespace>, name: &str, client: bool) -> Result<String> {
    crate::name::pipe_os_name(ns, name, client)
}

/// Settings for creating a named pipe server (`CreateNamedPipeW`).
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
    namespace: Option<Namespace>,
    limits: Limits,
    remote: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            mode: PipeMode::Message,
            direction: Direction::Duplex,
            max_instances: None,
            max_message: DEFAULT_MAX_MESSAGE_SIZE,
            namespace: None,
            limits: Limits::default(),
            remote: false,
        }
    }
}

impl ServerOptions {
    /// Defaults: message mode, duplex, unlimited instances, 1 MiB messages,
    /// local clients of this user only, the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Message or byte mode (`PIPE_TYPE_*` with the same `PIPE_READMODE_*`).
    /// Default: message.
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
    /// [`ErrorKind::Busy`] (`ERROR_PIPE_BUSY`) or waits. Default:
    /// unlimited (`PIPE_UNLIMITED_INSTANCES`).
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().max_instances(1);
    /// ```
    #[must_use]
    pub fn max_instances(mut self, n: usize) -> Self {
        self.max_instances = Some(n);
        self
    }

    /// Largest message, either way, in bytes; also the pipe's
    /// `nOutBufferSize` / `nInBufferSize`. Default 1 MiB, at most 1 GiB.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().max_message_size(64 << 20);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// What the server accepts from its clients. On Windows only
    /// [`Limits::max_connections`] applies, as a bound on instances (with
    /// `max_instances` on top). Default [`Limits::default`].
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().limits(ipckit::Limits::new().max_connections(4));
    /// ```
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
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

    /// Windows only: let clients on other machines connect
    /// (`PIPE_ACCEPT_REMOTE_CLIENTS` instead of the default
    /// `PIPE_REJECT_REMOTE_CLIENTS`). The security descriptor still admits
    /// only the creating user's account.
    ///
    /// ```
    /// let _ = ipckit::pipe::ServerOptions::new().accept_remote_clients(true);
    /// ```
    #[must_use]
    pub fn accept_remote_clients(mut self, yes: bool) -> Self {
        self.remote = yes;
        self
    }

    /// Windows only: the system's name of the pipe `name` in these options'
    /// namespace (`\\.\pipe\ipckit.<H>.<name>`, or `name` as is when it is
    /// already `\\.\pipe\X`): what a program that does not use ipckit opens.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let os = ipckit::pipe::ServerOptions::new().namespace(&ns).os_name("a/b").unwrap();
    /// assert!(os.starts_with(r"\\.\pipe\ipckit.") && os.ends_with(".a:b"));
    /// ```
    pub fn os_name(&self, name: &str) -> Result<String> {
        os_name(self.namespace.as_ref(), name, false)
    }

    /// Create the server and start accepting clients (its first instance
    /// with `FILE_FLAG_FIRST_PIPE_INSTANCE`). A server holding the name
    /// gives [`ErrorKind::AlreadyExists`].
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
        let os = self.os_name(name)?;
        let max = self
            .max_instances
            .unwrap_or(usize::MAX)
            .min(self.limits.get_max_connections())
            .max(1);
        let spec = InstanceSpec {
            os_name: os.clone(),
            access: self.direction.access(),
            message: self.mode == PipeMode::Message,
            reject_remote: !self.remote,
            max_instances: (max <= 254).then_some(max as u32),
            buffer: self.max_message as u32,
        };
        let taken = || {
            Error::new(
                ErrorKind::AlreadyExists,
                "a server already holds this pipe name (or another user's pipe has it); stop it or pick another name",
            )
            .with_name(name)
        };
        let first = os::create_instance(&spec, true).map_err(|e| match e.raw_os_error() {
            // ERROR_ACCESS_DENIED (the pipe exists), ERROR_PIPE_BUSY (it
            // exists with every instance taken).
            Some(5) | Some(231) => taken().with_source(e),
            _ => Error::os(e, "cannot create the pipe").with_name(name),
        })?;
        // Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE: our instance joined an
        // existing pipe if it is not the only one.
        if os::instances(first.as_handle()).is_ok_and(|n| n > 1) {
            return Err(taken());
        }
        let wake = os::event().ctx(name, "cannot create an event")?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            os_name: os,
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            wake,
            accept_wakers: Mutex::new(Vec::new()),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let looper = Looper {
            shared: shared.clone(),
            spec,
            next: Some(first),
            max,
            mode: self.mode,
            direction: self.direction,
            max_message: self.max_message,
            incoming: tx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("pipe-{name}"))
            .spawn(move || looper.run())
            .map_err(|e| Error::os(e, "cannot start the pipe's accept thread").with_name(name))?;
        Ok(PipeServer {
            shared,
            incoming: rx,
            thread: Some(thread),
        })
    }
}

/// What a server, its accept thread and its connections share.
struct Shared {
    name: String,
    os_name: String,
    /// Instances connected: waiting in the accept queue, or accepted and
    /// not yet dropped.
    active: AtomicUsize,
    /// The server is being dropped.
    stop: AtomicBool,
    /// Wakes the accept thread: a connection ended (an instance is free)
    /// or the server stops.
    wake: OwnedHandle,
    /// Tasks waiting in an async accept ([`PipeServer::poll_accept`]),
    /// woken when a client is queued or the accept thread stops.
    accept_wakers: Mutex<Vec<Waker>>,
}

impl Shared {
    fn wake_acceptors(&self) {
        let wakers = std::mem::take(&mut *lock(&self.accept_wakers));
        for w in wakers {
            w.wake();
        }
    }
}

/// The accept thread: keeps one instance listening while fewer than `max`
/// are connected and queues each connected one for [`PipeServer::accept`].
struct Looper {
    shared: Arc<Shared>,
    spec: InstanceSpec,
    /// An instance created and not listening yet (the first one).
    next: Option<OwnedHandle>,
    max: usize,
    mode: PipeMode,
    direction: Direction,
    max_message: usize,
    incoming: Sender<NamedPipe>,
}

impl Looper {
    fn run(self) {
        let shared = self.shared.clone();
        self.serve();
        // Async accepts see the thread gone.
        shared.wake_acceptors();
    }

    fn serve(mut self) {
        let mut idle: Option<Listening> = None;
        let mut backoff = Duration::from_millis(1);
        loop {
            os::reset_event(self.shared.wake.as_handle());
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let retry = self.listen(&mut idle, &mut backoff);
            let woke = {
                let mut handles = vec![self.shared.wake.as_handle()];
                if let Some(l) = &idle {
                    handles.push(l.event());
                }
                os::wait_any(&handles, retry)
            };
            match woke {
                Ok(Some(1)) => {
                    let Some(l) = idle.take() else { continue };
                    let Ok(h) = l.finish() else { continue };
                    // Without its events the connection cannot work: it is
                    // dropped (the client sees the pipe broken).
                    let conn = self.connection(h);
                    // The next instance listens before this one is handed
                    // over, so the next client rarely finds them all busy.
                    let _ = self.listen(&mut idle, &mut backoff);
                    if let Ok(conn) = conn {
                        if self.incoming.send(conn).is_err() {
                            return;
                        }
                        self.shared.wake_acceptors();
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Make an instance listen if none does and fewer than `max` are
    /// connected. On failure (the client came and went before the connect,
    /// or the system is short of something) returns how long to wait before
    /// trying again.
    fn listen(&mut self, idle: &mut Option<Listening>, backoff: &mut Duration) -> Option<Duration> {
        if idle.is_some() || self.shared.active.load(Ordering::Acquire) >= self.max {
            return None;
        }
        let h = match self.next.take() {
            Some(h) => Ok(h),
            None => os::create_instance(&self.spec, false),
        };
        match h.and_then(Listening::start) {
            Ok(l) => {
                *idle = Some(l);
                *backoff = Duration::from_millis(1);
                None
            }
            Err(_) => {
                let wait = *backoff;
                *backoff = (*backoff * 2).min(Duration::from_millis(100));
                Some(wait)
            }
        }
    }

    /// The server's end of a connected instance.
    fn connection(&self, h: OwnedHandle) -> Result<NamedPipe> {
        let peer = PeerInfo {
            pid: os::peer_pid(h.as_handle(), true),
            ..PeerInfo::default()
        };
        // Counted here; the slot uncounts it when the connection goes.
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        NamedPipe::new(Link {
            name: self.shared.name.clone(),
            h,
            role: Role::Server,
            mode: self.mode,
            direction: self.direction,
            max_message: self.max_message,
            peer,
            broken: Mutex::new(None),
            _slot: Some(Slot(self.shared.clone())),
        })
    }
}

/// A connected server instance's place in the count; freeing it wakes the
/// accept thread (which then makes another instance listen).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        os::set_event(self.0.wake.as_handle());
    }
}

/// A named pipe server: its instances, and the clients connected to them.
///
/// A server serving each client on its own thread:
///
/// ```no_run
/// let server = ipckit::pipe::ServerOptions::new().create("echo")?;
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
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PipeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeServer")
            .field("name", &self.shared.name)
            .field("os_name", &self.shared.os_name)
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

    /// Windows only: the system's name of the pipe (`\\.\pipe\…`), for a
    /// program that does not use ipckit.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// assert!(s.os_name().starts_with(r"\\.\pipe\ipckit."));
    /// ```
    pub fn os_name(&self) -> &str {
        &self.shared.os_name
    }

    /// Always false on Windows: a pipe vanishes with its last instance, so
    /// no stale server can hold a name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// assert!(!s.replaced_stale());
    /// ```
    pub fn replaced_stale(&self) -> bool {
        false
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

    /// The next client if one is queued, else register `cx`'s waker
    /// (woken when one is) and return `Pending`: the async accept.
    pub(crate) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<NamedPipe>> {
        let take = || match self.incoming.try_recv() {
            Ok(c) => Some(Ok(c)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(self.acceptor_gone())),
        };
        if let Some(r) = take() {
            return Poll::Ready(r);
        }
        {
            let mut wakers = lock(&self.shared.accept_wakers);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // A client queued before the waker was there.
        match take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    fn acceptor_gone(&self) -> Error {
        Error::new(
            ErrorKind::Io,
            "the server's accept thread stopped; create the server again",
        )
        .with_name(self.name())
    }
}

impl Drop for PipeServer {
    fn drop(&mut self) {
        // Stop the accept thread (it cancels the listening instance);
        // clients queued and not accepted go with `incoming`.
        self.shared.stop.store(true, Ordering::Release);
        os::set_event(self.shared.wake.as_handle());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// Settings for connecting to a named pipe (`CreateFileW` +
/// `WaitNamedPipeW`).
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
    any_server: bool,
}

impl ClientOptions {
    /// Defaults: no waiting, the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Talk to a server run by any user. By default a client checks that
    /// the server's process (`GetNamedPipeServerProcessId`) runs as its own
    /// user and refuses any other with [`ErrorKind::PermissionDenied`]:
    /// another user may have created the pipe name first (an impostor).
    /// Pipes on other machines (`\\HOST\pipe\X`) are not checked.
    ///
    /// ```
    /// let _ = ipckit::pipe::ClientOptions::new().allow_any_server();
    /// ```
    #[must_use]
    pub fn allow_any_server(mut self) -> Self {
        self.any_server = true;
        self
    }

    /// How long to wait for the server to appear or for a free instance
    /// (`WaitNamedPipeW`'s `nTimeOut`). Zero: fail at once with
    /// [`ErrorKind::NotFound`] or [`ErrorKind::Busy`]; after waiting in
    /// vain, [`ErrorKind::Timeout`].
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

    /// Connect to the pipe `name` (or `\\.\pipe\X`, `\\HOST\pipe\X`).
    ///
    /// Waits (up to the timeout) for the server to appear or an instance to
    /// free up. Errors: [`ErrorKind::NotFound`] (no server, no waiting),
    /// [`ErrorKind::Busy`] (all instances in use, no waiting),
    /// [`ErrorKind::Timeout`] (waited in vain),
    /// [`ErrorKind::PermissionDenied`] (the pipe's security descriptor
    /// refuses this user, or the server runs as another user; see
    /// [`allow_any_server`](Self::allow_any_server)).
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
        let os = os_name(self.namespace.as_ref(), name, true)?;
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_micros(500);
        loop {
            let e = match os::open_client(&os) {
                Ok((h, access)) => {
                    let local = os.starts_with(LOCAL_PREFIX);
                    return client_end(name, h, access, local && !self.any_server);
                }
                Err(e) => e,
            };
            let e = match e.raw_os_error() {
                // ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND
                Some(2) | Some(3) => Error::new(
                    ErrorKind::NotFound,
                    "no pipe server has this name; start it or check the namespace",
                )
                .with_name(name)
                .with_source(e),
                // ERROR_PIPE_BUSY
                Some(231) => Error::new(
                    ErrorKind::Busy,
                    "every instance of the pipe is in use; retry or connect with a timeout",
                )
                .with_name(name)
                .with_source(e),
                Some(5) => Error::new(
                    ErrorKind::PermissionDenied,
                    "the pipe's security descriptor refuses this user",
                )
                .with_name(name)
                .with_source(e),
                _ => Error::os(e, "cannot connect to the pipe server").with_name(name),
            };
            if !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Busy) {
                return Err(e);
            }
            let now = Instant::now();
            if now >= deadline {
                if self.timeout.is_zero() {
                    return Err(e);
                }
                let why = if e.kind() == ErrorKind::Busy {
                    "it stayed busy"
                } else {
                    "none appeared"
                };
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "waited {:?} for the pipe server: {why}; start it or wait longer",
                        self.timeout
                    ),
                )
                .with_name(name)
                .with_source(e));
            }
            if e.kind() == ErrorKind::Busy {
                // Returns when an instance listens again (or at the deadline,
                // or at once if the pipe is gone); then try again.
                let _ = os::wait_named(&os, deadline - now);
            } else {
                std::thread::sleep(backoff.min(deadline - now));
                backoff = (backoff * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// Set up the client end `h` of the pipe `name`, opened with `access`.
fn client_end(name: &str, h: OwnedHandle, access: Access, check: bool) -> Result<NamedPipe> {
    let pid = os::peer_pid(h.as_handle(), false);
    if check {
        let mine = match pid {
            Some(pid) => os::runs_as_me(pid).ctx(name, "cannot check the pipe server's user")?,
            None => false,
        };
        if !mine {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "refused the pipe server: it does not run as this user; another user may have put an impostor on the name (allow_any_server to talk to it anyway)",
            )
            .with_name(name));
        }
    }
    let (message, buffer) = os::info(h.as_handle()).ctx(name, "cannot query the pipe")?;
    if message {
        os::set_message_read_mode(h.as_handle()).ctx(name, "cannot set message read mode")?;
    }
    let buffer = buffer as usize;
    let max_message = if name.starts_with(r"\\") {
        buffer.max(DEFAULT_MAX_MESSAGE_SIZE)
    } else if buffer == 0 {
        DEFAULT_MAX_MESSAGE_SIZE
    } else {
        buffer
    }
    .min(MAX_MAX_MESSAGE_SIZE);
    let peer = PeerInfo {
        pid,
        ..PeerInfo::default()
    };
    NamedPipe::new(Link {
        name: name.to_string(),
        h,
        role: Role::Client,
        mode: if message {
            PipeMode::Message
        } else {
            PipeMode::Byte
        },
        direction: Direction::of(access),
        max_message,
        peer,
        broken: Mutex::new(None),
        _slot: None,
    })
}

/// One end of a named-pipe connection: what a client gets from
/// [`NamedPipe::connect`] and a server from [`PipeServer::accept`].
///
/// Message mode: [`send`](Self::send) / [`recv`](Self::recv) /
/// [`recv_into`](Self::recv_into) / [`transact`](Self::transact), one
/// `WriteFile` and one whole message per `recv` (`ERROR_MORE_DATA` is
/// handled inside). Byte mode: `std::io::Read` and `Write` (and `recv`
/// gives what one `ReadFile` returns).
///
/// [`split`](Self::split) and [`try_clone`](Self::try_clone) work as on
/// Linux. `AsHandle` gives the pipe handle (opened for overlapped I/O);
/// reading or writing it directly would race with this value's calls.
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

/// What every handle and half of one connection shares.
struct Link {
    name: String,
    /// The pipe handle (closed before `_slot` frees the instance's place).
    h: OwnedHandle,
    role: Role,
    mode: PipeMode,
    direction: Direction,
    max_message: usize,
    peer: PeerInfo,
    /// Set once the pipe broke or was disconnected; every call then fails.
    broken: Mutex<Option<ErrorKind>>,
    /// Server side: the instance this connection occupies.
    _slot: Option<Slot>,
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
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AsHandle for Link {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.h.as_handle()
    }
}

impl Link {
    fn handle(&self) -> BorrowedHandle<'_> {
        self.h.as_handle()
    }

    fn check_usable(&self) -> Result<()> {
        match *lock(&self.broken) {
            None => Ok(()),
            Some(kind) => Err(Error::new(
                kind,
                "the connection is closed (peer gone or disconnected); connect again",
            )
            .with_name(&self.name)),
        }
    }

    fn may_write(&self) -> Result<()> {
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

    fn may_read(&self) -> Result<()> {
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

    /// Turn a failed call into the pipe's error; the pipe's end
    /// (`ERROR_BROKEN_PIPE`, `ERROR_NO_DATA`, `ERROR_PIPE_NOT_CONNECTED`)
    /// is [`ErrorKind::PeerGone`] and marks the connection closed.
    fn os_err(&self, e: io::Error, what: &str) -> Error {
        let e = match e.raw_os_error() {
            Some(109) | Some(232) | Some(233) => Error::new(
                ErrorKind::PeerGone,
                "the other end of the pipe is gone (closed, disconnected or its process died)",
            )
            .with_name(&self.name)
            .with_source(e),
            Some(5) => Error::new(
                ErrorKind::PermissionDenied,
                format!("{what}: this end of the pipe may not do that (its direction)"),
            )
            .with_name(&self.name)
            .with_source(e),
            _ => Error::os(e, what).with_name(&self.name),
        };
        if matches!(e.kind(), ErrorKind::PeerGone | ErrorKind::Io) {
            *lock(&self.broken) = Some(e.kind());
        }
        e
    }

    fn timed_out(&self) -> Error {
        Error::new(
            ErrorKind::Timeout,
            "no message arrived before the deadline; the connection stays usable",
        )
        .with_name(&self.name)
    }

    /// A message over this side's limit, discarded.
    fn too_large(&self, len: usize) -> Error {
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

    fn check_send_size(&self, len: usize) -> Result<()> {
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

    fn too_small(&self, n: usize, have: usize) -> Error {
        Error::new(
            ErrorKind::BufferTooSmall,
            format!(
                "the next message is {n} bytes but the buffer holds {have}; call again with a larger buffer"
            ),
        )
        .with_name(&self.name)
        .with_needed(n)
    }

    /// End the connection for every handle (`DisconnectNamedPipe` on the
    /// server's side; the client's side closes when its last handle goes).
    fn disconnect(&self) {
        *lock(&self.broken) = Some(ErrorKind::PeerGone);
        if self.role == Role::Server {
            let _ = os::disconnect(self.handle());
        }
        os::cancel_all(self.handle());
    }
}

/// The receiving side: its event, and messages put back.
struct Reader {
    link: Arc<Link>,
    ev: OwnedHandle,
    /// Messages put back (too big for `recv_into`'s buffer).
    inbox: VecDeque<Vec<u8>>,
    /// `Read`: the unread rest of a message put back.
    chunk: Vec<u8>,
    chunk_pos: usize,
}

/// The sending side: its event.
struct Writer {
    link: Arc<Link>,
    ev: OwnedHandle,
}

impl Reader {
    /// The next message (byte mode: what one read returns), whole;
    /// `timeout` bounds the wait for its first bytes.
    fn next_message(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let link = self.link.clone();
        link.check_usable()?;
        link.may_read()?;
        if let Some(m) = self.inbox.pop_front() {
            return Ok(m);
        }
        let mut buf = vec![0u8; link.max_message.clamp(1, READ_STEP)];
        match os::read(link.handle(), self.ev.as_handle(), &mut buf, timeout) {
            Ok(Done::All(n)) => {
                buf.truncate(n);
                Ok(buf)
            }
            Ok(Done::More(n)) => self.rest_of_message(buf, n),
            Ok(Done::TimedOut) => Err(link.timed_out()),
            Err(e) => Err(link.os_err(e, "cannot read from the pipe")),
        }
    }

    /// After `ERROR_MORE_DATA` left `len` bytes of a message in `buf`: read
    /// the rest (the message is there), growing `buf` up to the limit; a
    /// message over it is read to its end and dropped
    /// ([`ErrorKind::TooLarge`]).
    fn rest_of_message(&mut self, mut buf: Vec<u8>, mut len: usize) -> Result<Vec<u8>> {
        let link = self.link.clone();
        let max = link.max_message;
        loop {
            if len > max {
                // Over the limit: read the message to its end and drop it.
                let mut total = len;
                loop {
                    match os::read(link.handle(), self.ev.as_handle(), &mut buf, None) {
                        Ok(Done::All(k)) => return Err(link.too_large(total + k)),
                        Ok(Done::More(k)) => total += k,
                        Ok(Done::TimedOut) => return Err(link.timed_out()),
                        Err(e) => return Err(link.os_err(e, "cannot read from the pipe")),
                    }
                }
            }
            if len == buf.len() {
                // At most one byte over the limit: enough to tell.
                let grown = (len * 2).max(len + READ_STEP).min(max + 1);
                buf.resize(grown, 0);
            }
            match os::read(link.handle(), self.ev.as_handle(), &mut buf[len..], None) {
                Ok(Done::All(k)) => {
                    len += k;
                    if len > max {
                        return Err(link.too_large(len));
                    }
                    buf.truncate(len);
                    return Ok(buf);
                }
                Ok(Done::More(k)) => len += k,
                Ok(Done::TimedOut) => return Err(link.timed_out()),
                Err(e) => return Err(link.os_err(e, "cannot read from the pipe")),
            }
        }
    }

    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.next_message(None)?;
        if msg.len() > buf.len() {
            let n = msg.len();
            self.inbox.push_front(msg);
            return Err(self.link.too_small(n, buf.len()));
        }
        buf[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    /// `Read`: copy from a message put back, else read straight into `buf`
    /// (message mode: the rest of a longer message comes with the next
    /// reads). The end of the pipe is the end of the stream.
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk_pos >= self.chunk.len() {
            if let Some(m) = self.inbox.pop_front() {
                self.chunk = m;
                self.chunk_pos = 0;
            }
        }
        if self.chunk_pos < self.chunk.len() {
            let n = buf.len().min(self.chunk.len() - self.chunk_pos);
            buf[..n].copy_from_slice(&self.chunk[self.chunk_pos..self.chunk_pos + n]);
            self.chunk_pos += n;
            return Ok(n);
        }
        let link = self.link.clone();
        match link.check_usable() {
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(0),
            r => r?,
        }
        link.may_read()?;
        loop {
            match os::read(link.handle(), self.ev.as_handle(), buf, None) {
                // A zero-length message is no end of stream: read on.
                Ok(Done::All(0)) if link.mode == PipeMode::Message => continue,
                Ok(Done::All(n)) | Ok(Done::More(n)) => return Ok(n),
                Ok(Done::TimedOut) => return Err(io::ErrorKind::TimedOut.into()),
                Err(e) => {
                    let e = link.os_err(e, "cannot read from the pipe");
                    if e.kind() == ErrorKind::PeerGone {
                        return Ok(0);
                    }
                    return Err(e.into());
                }
            }
        }
    }
}

impl Writer {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let link = self.link.clone();
        link.check_usable()?;
        link.may_write()?;
        link.check_send_size(msg.len())?;
        self.write_all(msg)
    }

    /// Write all of `msg`: one `WriteFile` (one message in message mode).
    fn write_all(&mut self, msg: &[u8]) -> Result<()> {
        let link = self.link.clone();
        let mut done = 0;
        loop {
            let n = os::write(link.handle(), self.ev.as_handle(), &msg[done..])
                .map_err(|e| link.os_err(e, "cannot write to the pipe"))?;
            done += n;
            if done >= msg.len() {
                return Ok(());
            }
            if link.mode == PipeMode::Message || n == 0 {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the pipe took {done} of {} bytes", msg.len()),
                )
                .with_name(&link.name));
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        let link = self.link.clone();
        link.check_usable()?;
        os::flush(link.handle()).map_err(|e| link.os_err(e, "cannot flush the pipe"))
    }

    /// `Write`: message mode, one message of at most `max_message` bytes of
    /// `buf`; byte mode, all of `buf`.
    fn write_bytes(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.link.check_usable()?;
        self.link.may_write()?;
        let n = match self.link.mode {
            PipeMode::Message => buf.len().min(self.link.max_message),
            PipeMode::Byte => buf.len(),
        };
        self.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl NamedPipe {
    /// A connection over `link`, with an event per direction: a read and
    /// a write may be in flight at once (split halves).
    fn new(link: Link) -> Result<NamedPipe> {
        let ev = || os::event().ctx(&link.name, "cannot create an event for the pipe");
        let (rd_ev, wr_ev) = (ev()?, ev()?);
        let link = Arc::new(link);
        Ok(NamedPipe {
            rd: Arc::new(Mutex::new(Reader {
                link: link.clone(),
                ev: rd_ev,
                inbox: VecDeque::new(),
                chunk: Vec::new(),
                chunk_pos: 0,
            })),
            wr: Arc::new(Mutex::new(Writer {
                link: link.clone(),
                ev: wr_ev,
            })),
            link,
        })
    }

    /// Connect to `name` (or `\\.\pipe\X`), waiting up to `timeout` for
    /// the server to appear or an instance to free up. Uses the namespace
    /// from the environment; see [`ClientOptions`] for more.
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

    /// The pipe's name (as the client gave it).
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

    /// The pipe's mode, as the server set it (`GetNamedPipeInfo`).
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

    /// The largest message this side sends or accepts (see the
    /// [module docs](crate::pipe#what-differs-from-linux) for the client's).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(100).create("n").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// assert!(c.max_message_size() >= 100);
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.link.max_message
    }

    /// Who is at the other end (`GetNamedPipeClientProcessId` on the
    /// server's side, `GetNamedPipeServerProcessId` on the client's).
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

    /// Send one message (`WriteFile`). A message over
    /// [`max_message_size`](Self::max_message_size) is refused with
    /// [`ErrorKind::TooLarge`] before anything is written.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// c.send(b"ok").unwrap();
    /// assert_eq!(s.accept().unwrap().recv().unwrap(), b"ok");
    /// ```
    #[doc(alias = "WriteFile")]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        lock(&self.wr).send(msg)
    }

    /// Receive the next message, whole (`ReadFile`, continued while it
    /// says `ERROR_MORE_DATA`). A message over this side's limit is
    /// [`ErrorKind::TooLarge`] (read and dropped; the connection stays
    /// usable). [`ErrorKind::PeerGone`] once the other end is gone.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// s.accept().unwrap().send(b"hi").unwrap();
    /// assert_eq!(c.recv().unwrap(), b"hi");
    /// ```
    #[doc(alias = "ReadFile")]
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        lock(&self.rd).next_message(None)
    }

    /// Like [`recv`](Self::recv), giving up with [`ErrorKind::Timeout`]
    /// after `timeout` (the read is cancelled with `CancelIoEx`; a message
    /// that arrived meanwhile is returned, never lost); the connection
    /// stays usable.
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
        lock(&self.rd).next_message(Some(timeout))
    }

    /// Receive the next message into `buf`, returning its length. If `buf`
    /// is too small the error ([`ErrorKind::BufferTooSmall`]) carries the
    /// size needed ([`Error::needed`]) and the message stays readable.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// s.accept().unwrap().send(b"hello").unwrap();
    /// let mut small = [0u8; 2];
    /// assert_eq!(c.recv_into(&mut small).unwrap_err().needed(), Some(5));
    /// let mut big = [0u8; 8];
    /// assert_eq!(c.recv_into(&mut big).unwrap(), 5);
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        lock(&self.rd).recv_into(buf)
    }

    /// Send a request and receive the reply: in message mode one
    /// `TransactNamedPipe` (when nothing unread is waiting; otherwise, as
    /// in byte mode, a send and a receive, so the reply is the next
    /// message either way).
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
        let mut wr = lock(&self.wr);
        let mut rd = lock(&self.rd);
        let link = self.link.clone();
        link.check_usable()?;
        link.may_write()?;
        link.may_read()?;
        link.check_send_size(request.len())?;
        if link.mode == PipeMode::Message && rd.inbox.is_empty() {
            let mut buf = vec![0u8; link.max_message.clamp(1, READ_STEP)];
            match os::transact(link.handle(), wr.ev.as_handle(), request, &mut buf) {
                Ok(Done::All(n)) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Ok(Done::More(n)) => return rd.rest_of_message(buf, n),
                Ok(Done::TimedOut) => return Err(link.timed_out()),
                // ERROR_PIPE_BUSY: unread data waits in the pipe; the reply
                // comes after it, as on Linux.
                Err(e) if e.raw_os_error() == Some(231) => {}
                Err(e) => return Err(link.os_err(e, "cannot transact on the pipe")),
            }
        }
        wr.send(request)?;
        rd.next_message(None)
    }

    /// Return once the peer has read everything written so far
    /// (`FlushFileBuffers`). [`ErrorKind::PeerGone`] if the peer goes away
    /// first.
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

    /// End this connection, for every handle and half of it; the peer
    /// sees [`ErrorKind::PeerGone`]. On the server's side this is
    /// `DisconnectNamedPipe` (what the client did not read yet is
    /// discarded) and the instance is freed for the next client once every
    /// handle is dropped; the server keeps serving. On the client's side
    /// the pipe closes when the last handle goes.
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
        self.link.disconnect();
    }

    /// Another handle to this connection, for another thread: each message
    /// is received by one handle, whole; each send is written whole.
    /// Never fails (the `Result` is std's `try_clone` convention).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("n").unwrap();
    /// let mut c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap();
    /// let conn = s.accept().unwrap();
    /// let mut other = conn.try_clone().unwrap();
    /// c.send(b"to the clone").unwrap();
    /// assert_eq!(other.recv().unwrap(), b"to the clone");
    /// ```
    #[doc(alias = "DuplicateHandle")]
    pub fn try_clone(&self) -> Result<NamedPipe> {
        Ok(NamedPipe {
            link: self.link.clone(),
            rd: self.rd.clone(),
            wr: self.wr.clone(),
        })
    }

    /// Split into a receiving and a sending half, for two threads (a read
    /// and a write may be in flight at once).
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
/// `recv`, `recv_timeout`, `recv_into`, and `Read`.
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
/// `send`, `flush`, and `Write`.
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
        lock(&self.rd).next_message(Some(timeout))
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

    /// The largest message this side sends; see
    /// [`NamedPipe::max_message_size`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(10).create("n").unwrap();
    /// let (_rx, tx) = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("n").unwrap().split();
    /// assert!(tx.max_message_size() >= 10);
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

macro_rules! pipe_handle_of {
    ($t:ty) => {
        impl AsHandle for $t {
            /// The pipe handle (opened for overlapped I/O).
            fn as_handle(&self) -> BorrowedHandle<'_> {
                self.link.handle()
            }
        }

        impl AsRawHandle for $t {
            /// The pipe handle.
            fn as_raw_handle(&self) -> RawHandle {
                self.link.handle().as_raw_handle()
            }
        }
    };
}
pipe_handle_of!(NamedPipe);
pipe_handle_of!(RecvHalf);
pipe_handle_of!(SendHalf);

// ---------------------------------------------------------------- anonymous

/// Create an anonymous pipe (`CreatePipe`): a one-way byte stream. Neither
/// handle is inheritable, so no child gets one unless handed it with
/// [`CommandExt::spawn_with_handles`] or as its stdin/stdout through
/// [`Stdio::from`]. The reader sees end-of-file once every writer is
/// closed.
///
/// ```
/// use std::io::{Read, Write};
/// let (mut r, mut w) = ipckit::pipe::pipe().unwrap();
/// w.write_all(b"hello").unwrap();
/// drop(w);
/// let mut s = String::new();
/// r.read_to_string(&mut s).unwrap();
/// assert_eq!(s, "hello");
/// ```
#[doc(alias = "CreatePipe")]
pub fn pipe() -> Result<(PipeReader, PipeWriter)> {
    let (r, w) = os::anonymous().ctx("anonymous pipe", "cannot create a pipe")?;
    Ok((PipeReader(File::from(r)), PipeWriter(File::from(w))))
}

/// The read end of an anonymous pipe.
///
/// ```
/// let (r, _w) = ipckit::pipe::pipe().unwrap();
/// let _stdin: std::process::Stdio = r.into();
/// ```
#[derive(Debug)]
pub struct PipeReader(File);

/// The write end of an anonymous pipe.
///
/// ```
/// let (_r, w) = ipckit::pipe::pipe().unwrap();
/// let _stdout: std::process::Stdio = w.into();
/// ```
#[derive(Debug)]
pub struct PipeWriter(File);

/// Check that `h` is a pipe and make it non-inheritable again.
fn adopt(h: OwnedHandle) -> Result<File> {
    let shown = format!("handle {:?}", h.as_raw_handle());
    if !os::is_pipe(h.as_handle()) {
        return Err(
            Error::new(ErrorKind::InvalidInput, "the handle is not a pipe").with_name(shown),
        );
    }
    os::set_inheritable(h.as_handle(), false).ctx(&shown, "cannot adopt the inherited pipe end")?;
    Ok(File::from(h))
}

impl PipeReader {
    /// Windows only: adopt the read end a parent handed to this process
    /// (see [`CommandExt::spawn_with_handles`]): checks that `h` is a pipe
    /// and makes it non-inheritable again. The child turns the handle value
    /// it was told into an `OwnedHandle` itself (`unsafe {
    /// OwnedHandle::from_raw_handle(v as RawHandle) }`, asserting that
    /// nothing else in the process owns it).
    ///
    /// ```
    /// let (r, _w) = ipckit::pipe::pipe().unwrap();
    /// let h: std::os::windows::io::OwnedHandle = r.into();
    /// let _r = ipckit::pipe::PipeReader::from_inherited_handle(h).unwrap();
    /// let file: std::os::windows::io::OwnedHandle = tempfile::tempfile().unwrap().into();
    /// let e = ipckit::pipe::PipeReader::from_inherited_handle(file).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::InvalidInput);
    /// ```
    pub fn from_inherited_handle(h: OwnedHandle) -> Result<PipeReader> {
        adopt(h).map(PipeReader)
    }
}

impl PipeWriter {
    /// Windows only: adopt the write end a parent handed to this process;
    /// see [`PipeReader::from_inherited_handle`].
    ///
    /// ```
    /// let (_r, w) = ipckit::pipe::pipe().unwrap();
    /// let h: std::os::windows::io::OwnedHandle = w.into();
    /// assert!(ipckit::pipe::PipeWriter::from_inherited_handle(h).is_ok());
    /// ```
    pub fn from_inherited_handle(h: OwnedHandle) -> Result<PipeWriter> {
        adopt(h).map(PipeWriter)
    }
}

impl Read for PipeReader {
    /// `ReadFile`; the pipe's end (every writer closed) is end-of-file.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! handle_conversions {
    ($t:ty) => {
        impl AsHandle for $t {
            fn as_handle(&self) -> BorrowedHandle<'_> {
                self.0.as_handle()
            }
        }
        impl AsRawHandle for $t {
            fn as_raw_handle(&self) -> RawHandle {
                self.0.as_raw_handle()
            }
        }
        impl From<$t> for OwnedHandle {
            fn from(p: $t) -> OwnedHandle {
                OwnedHandle::from(p.0)
            }
        }
        impl From<$t> for Stdio {
            fn from(p: $t) -> Stdio {
                Stdio::from(p.0)
            }
        }
    };
}
handle_conversions!(PipeReader);
handle_conversions!(PipeWriter);

/// Hand pipe ends (or any handles) to one child process started with
/// [`std::process::Command`].
///
/// ```
/// use ipckit::pipe::CommandExt as _;
/// use std::io::Read;
/// use std::os::windows::io::{AsHandle, AsRawHandle};
/// let (mut r, w) = ipckit::pipe::pipe().unwrap();
/// let mut cmd = std::process::Command::new("cmd");
/// // The child learns the handle's value from its arguments.
/// cmd.args(["/c", "echo", &format!("{}", w.as_raw_handle() as usize)]);
/// let mut child = cmd.spawn_with_handles(&[w.as_handle()]).unwrap();
/// drop(w); // the parent's copy: the reader sees end-of-file once the child's goes
/// child.wait().unwrap();
/// let mut s = String::new();
/// r.read_to_string(&mut s).unwrap();
/// ```
pub trait CommandExt {
    /// Windows only: spawn the command with `handles` inherited by this
    /// child. Each handle keeps its value in the child, which is told it
    /// (typically in an argument) and adopts it with
    /// [`PipeReader::from_inherited_handle`] /
    /// [`PipeWriter::from_inherited_handle`]. Drop the parent's copy of a
    /// pipe end after the spawn so the reader can see end-of-file.
    ///
    /// The guarantee: the handles are inheritable (`HANDLE_FLAG_INHERIT`)
    /// only during this call's `spawn`, and calls of `spawn_with_handles`
    /// are serialised by one process-wide lock, so a child spawned this way
    /// inherits no handle passed to another. A process that this program
    /// starts by other means (std's `Command::spawn` on another thread at
    /// the same moment, which also lets children inherit) could inherit
    /// them too: std offers no hook for a handle list
    /// (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`) on stable Rust.
    fn spawn_with_handles(&mut self, handles: &[BorrowedHandle<'_>]) -> Result<Child>;
}

impl CommandExt for Command {
    fn spawn_with_handles(&mut self, handles: &[BorrowedHandle<'_>]) -> Result<Child> {
        let shown = format!("{:?}", self.get_program());
        os::spawn_inheriting(self, handles).ctx(&shown, "cannot start the child")
    }
}
