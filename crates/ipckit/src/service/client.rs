//! The service client: one connection, one reader thread that hands each
//! reply to the caller waiting for its call id.

use std::any::type_name;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(unix)]
use super::lane::{self, LaneConfig, LanePool};
use super::loan::{Loan, LoanReply};
use super::wire::{self, FrameReader, Hello, KIND_CALL, KIND_ERROR, KIND_LOAN_CALL, KIND_REPLY};
use super::{Describe, Encoding, RemoteError, DEFAULT_MAX_MESSAGE_SIZE, DESCRIBE};
use crate::conn::dial::{Dialer, Target, Trust};
use crate::conn::hello;
use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::sys::net::{AsSocket, Socket};
use crate::transport::{Transport, WaitStrategy};

/// What the reader thread hands a waiting caller.
struct Reply {
    kind: u8,
    encoding: Encoding,
    body: Vec<u8>,
}

type Outcome = Result<Reply>;

enum Waiter {
    Blocking(SyncSender<Outcome>),
    #[cfg(feature = "tokio")]
    Async(tokio::sync::oneshot::Sender<Outcome>),
}

impl Waiter {
    fn complete(self, o: Outcome) {
        match self {
            Waiter::Blocking(tx) => {
                let _ = tx.try_send(o);
            }
            #[cfg(feature = "tokio")]
            Waiter::Async(tx) => {
                let _ = tx.send(o);
            }
        }
    }
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// Set once the connection is gone: why.
    gone: Option<String>,
}

struct Inner {
    name: String,
    fd: Socket,
    write: Mutex<Vec<u8>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    server_max: usize,
    encoding: Encoding,
}

impl Inner {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peer_gone(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::PeerGone,
            format!("{why}; the call's outcome is unknown, connect again"),
        )
        .with_name(&self.name)
    }
}

/// Removes a call's waiter when the caller stops waiting (reply, timeout,
/// or a dropped future), so a late reply is discarded.
struct Registered {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.inner.pending().waiters.remove(&self.id);
    }
}

/// Settings for connecting to a service.
///
/// ```
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::service::Client::options()
///     .namespace(&ns)
///     .timeout(Duration::ZERO)
///     .connect("absent")
///     .unwrap_err();
/// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    timeout: Duration,
    namespace: Option<Namespace>,
    max_frame: usize,
    encoding: Encoding,
    transport: Transport,
    wait: WaitStrategy,
    trust: Trust,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            timeout: Duration::ZERO,
            namespace: None,
            max_frame: DEFAULT_MAX_MESSAGE_SIZE,
            encoding: Encoding::Postcard,
            transport: Transport::Auto,
            wait: WaitStrategy::default(),
            trust: Trust::default(),
        }
    }
}

impl ClientBuilder {
    /// Also trust servers running as these uids. By default a client talks
    /// only to a server running as its own uid or as the owner of the
    /// namespace directory (checked on the socket's peer credentials), and
    /// refuses any other with [`ErrorKind::PermissionDenied`]: another user
    /// may have put an impostor in the namespace.
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().allow_server_uids(&[1001]);
    /// ```
    #[must_use]
    pub fn allow_server_uids(mut self, uids: &[u32]) -> Self {
        self.trust.uids = uids.to_vec();
        self
    }

    /// Talk to a server of any uid (the explicit opt-out of the check).
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().allow_any_server();
    /// ```
    #[must_use]
    pub fn allow_any_server(mut self) -> Self {
        self.trust.any = true;
        self
    }

    /// Defaults: no waiting for the server, the namespace from the
    /// environment, 64 MiB replies, postcard bodies.
    ///
    /// ```
    /// let _ = ipckit::service::ClientBuilder::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for the server to appear (`WaitNamedPipe`'s
    /// timeout). Zero (the default): fail at once with
    /// [`ErrorKind::NotFound`].
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().timeout(std::time::Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Look the name up in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::service::Client::options().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Largest reply body accepted (default 64 MiB). A larger one breaks
    /// the connection: every call waiting on it gets [`ErrorKind::PeerGone`].
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().max_message_size(1 << 20);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Encoding of typed calls' bodies (default postcard; JSON lets a Rust
    /// client exercise what other languages send).
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().encoding(ipckit::service::Encoding::Json);
    /// ```
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Which transport to use (default [`Transport::Auto`]: shared memory
    /// when the server offers it and `IPCKIT_TRANSPORT` is not `socket`;
    /// [`Transport::Socket`] opts out). TCP always uses its socket. See
    /// [`Client::transport`] for what was chosen. On Windows every
    /// connection uses its named pipe, and [`Transport::SharedMemory`]
    /// makes `connect` fail with [`ErrorKind::Unsupported`].
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().transport(ipckit::Transport::Socket);
    /// ```
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// How a caller waits for its reply on shared memory (default: spin
    /// briefly, then park; see [`WaitStrategy`]).
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().wait_strategy(ipckit::WaitStrategy::Spin);
    /// ```
    #[must_use]
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Connect to the service `name`, or to `tcp://HOST:PORT`, waiting up
    /// to the timeout for it to appear. Errors: [`ErrorKind::NotFound`]
    /// (no such service, no waiting), [`ErrorKind::Timeout`] (waited in
    /// vain), [`ErrorKind::Decode`] (not an ipckit service). On Windows
    /// `name` may also be the pipe's system name (`\\.\pipe\X`), and a
    /// `tcp://` name or an explicit [`Transport::SharedMemory`] is
    /// [`ErrorKind::Unsupported`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _s = ipckit::service::Server::builder("s").namespace(&ns).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// assert_eq!(c.name(), "s");
    /// ```
    pub fn connect(&self, name: &str) -> Result<Client> {
        let dialer = Dialer {
            name,
            what: "service",
            namespace: self.namespace.as_ref(),
            timeout: self.timeout,
            tcp: true,
            trust: &self.trust,
        };
        let target = dialer.target()?;
        #[cfg(windows)]
        if self.transport == Transport::SharedMemory {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "shared-memory lanes are Linux-only: on Windows a service connection always uses its named pipe; ask for Transport::Auto or Transport::Socket",
            )
            .with_name(name));
        }
        let (fd, hello) = dialer.run(|d| {
            let hello = read_hello(name, &d.fd, d.hello_deadline)?;
            Ok((d.fd, hello))
        })?;
        let server_max = hello.max_frame;
        #[cfg(windows)]
        let _ = (target, hello.shm, self.wait);
        #[cfg(unix)]
        let path = match target {
            Target::Unix(p, _) => Some(p),
            Target::Tcp(_) => None,
        };
        #[cfg(unix)]
        let lanes = match &path {
            Some(p) if hello.shm && self.transport.allows_shm() => LanePool::start(LaneConfig {
                name: name.to_string(),
                path: p.clone(),
                server_uid: crate::conn::dial::server_uid(fd.as_socket())
                    .map_err(|e| Error::os(e, "cannot read the server's credentials"))?,
                server_max,
                client_max: self.max_frame,
                wait: self.wait,
            })
            .ok(),
            _ => None,
        };
        let inner = Arc::new(Inner {
            name: name.to_string(),
            fd,
            write: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            server_max,
            encoding: self.encoding,
        });
        let reader = {
            let inner = inner.clone();
            let frames = FrameReader::new(self.max_frame, &[KIND_REPLY, KIND_ERROR]);
            std::thread::Builder::new()
                .name("ipckit-svc-client".into())
                .stack_size(256 * 1024)
                .spawn(move || read_loop(inner, frames))
                .map_err(|e| Error::os(e, "cannot start the client's reader thread"))?
        };
        Ok(Client {
            inner,
            reader: Mutex::new(Some(reader)),
            #[cfg(unix)]
            lanes,
        })
    }
}

/// Read and check the server's hello before `deadline` (a server that
/// stalls halfway is a `Timeout`, never a hang); a refusing hello is
/// `Busy` or `PermissionDenied`.
pub(super) fn read_hello(name: &str, fd: &Socket, deadline: Instant) -> Result<Hello> {
    let b = hello::read(fd.as_socket(), deadline, "service", name)?;
    wire::parse_hello(&b, name)
}

fn read_loop(inner: Arc<Inner>, mut frames: FrameReader) {
    let why = loop {
        match frames.next(inner.fd.as_socket()) {
            Ok(Some(f)) => {
                let waiter = inner.pending().waiters.remove(&f.call_id);
                // No waiter: the caller timed out or gave up; drop the reply.
                if let Some(w) = waiter {
                    w.complete(Ok(Reply {
                        kind: f.kind,
                        encoding: f.encoding,
                        body: f.body,
                    }));
                }
            }
            Ok(None) => {
                break "the server closed the connection (it exited, was killed, or shut down)"
                    .to_string()
            }
            Err(e) => break format!("the connection to the server broke ({e})"),
        }
    };
    crate::conn::io::shutdown(&inner.fd);
    let waiters: Vec<Waiter> = {
        let mut p = inner.pending();
        p.gone = Some(why.clone());
        p.waiters.drain().map(|(_, w)| w).collect()
    };
    for w in waiters {
        w.complete(Err(inner.peer_gone(&why)));
    }
}

/// A connection to a service; [`Send`] + [`Sync`], so many threads may call
/// through one client at once (each call carries its own id).
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::service::{Client, Server};
/// // process A
/// let _server = Server::builder("calc").namespace(&ns)
///     .handler("square", |x: u64| Ok::<_, String>(x * x))
///     .bind().unwrap();
/// // process B
/// let client = Client::options().namespace(&ns).timeout(Duration::from_secs(5)).connect("calc").unwrap();
/// let client = std::sync::Arc::new(client);
/// let handles: Vec<_> = (0..4u64).map(|i| {
///     let c = client.clone();
///     std::thread::spawn(move || c.call::<_, u64>("square", &i).unwrap())
/// }).collect();
/// let got: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(got, [0, 1, 4, 9]);
/// ```
pub struct Client {
    inner: Arc<Inner>,
    reader: Mutex<Option<JoinHandle<()>>>,
    /// Shared-memory lanes, when the server offers them (Linux).
    #[cfg(unix)]
    lanes: Option<Arc<LanePool>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        crate::conn::io::shutdown(&self.inner.fd);
        if let Some(h) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Client {
    /// Connect to `name` (or `tcp://HOST:PORT`), waiting up to `timeout`
    /// for the server to appear; the namespace comes from the environment.
    /// See [`ClientBuilder`] for more.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let client = ipckit::service::Client::connect("calc", Duration::from_secs(5))?;
    /// let sum: i64 = client.call("add", &(1i64, 2i64))?;
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    #[doc(alias = "RpcBindingFromStringBinding")]
    pub fn connect(name: &str, timeout: Duration) -> Result<Client> {
        ClientBuilder::new().timeout(timeout).connect(name)
    }

    /// Settings for connecting (see [`ClientBuilder`]).
    ///
    /// ```
    /// let _ = ipckit::service::Client::options().timeout(std::time::Duration::from_secs(1));
    /// ```
    pub fn options() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The name connected to (as given, `tcp://…` included).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// assert_eq!(c.name(), "s");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Register a waiter and send one call frame.
    fn send(&self, method: &str, enc: Encoding, body: &[u8], waiter: Waiter) -> Result<Registered> {
        let inner = &self.inner;
        if method.is_empty() || method.len() > wire::MAX_METHOD {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "method name '{method}' must be 1 to {} bytes",
                    wire::MAX_METHOD
                ),
            )
            .with_name(&inner.name));
        }
        if body.len() > inner.server_max {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the request to '{method}' is {} bytes, over the server's limit of {} bytes; send less or raise max_frame on the server",
                    body.len(),
                    inner.server_max
                ),
            )
            .with_name(&inner.name)
            .with_needed(body.len()));
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut p = inner.pending();
            if let Some(why) = &p.gone {
                return Err(inner.peer_gone(why));
            }
            p.waiters.insert(id, waiter);
        }
        let reg = Registered {
            inner: inner.clone(),
            id,
        };
        let mut out = inner.write.lock().unwrap_or_else(|p| p.into_inner());
        out.clear();
        wire::encode_frame(&mut out, KIND_CALL, enc, id, method, body);
        let sent = crate::conn::io::send_all(inner.fd.as_socket(), &out);
        if out.capacity() > 1 << 20 {
            *out = Vec::new();
        }
        drop(out);
        match sent {
            Ok(()) => Ok(reg),
            Err(e) => Err(inner.peer_gone(&format!("cannot send the call to '{method}' ({e})"))),
        }
    }

    fn encode<Req: Serialize + ?Sized>(&self, method: &str, req: &Req) -> Result<Vec<u8>> {
        self.inner.encoding.encode(req).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the request to '{method}' cannot be encoded as {} ({}): {e}",
                    type_name::<Req>(),
                    self.inner.encoding.as_str()
                ),
            )
            .with_name(&self.inner.name)
        })
    }

    /// Make one call and turn its reply into `T` with `done`: on an idle
    /// shared-memory lane if there is one, else on the socket.
    fn wait<T>(
        &self,
        method: &str,
        enc: Encoding,
        body: &[u8],
        timeout: Option<Duration>,
        done: impl FnOnce(u8, Encoding, &[u8]) -> Result<T>,
    ) -> Result<T> {
        #[cfg(unix)]
        if let Some(pool) = &self.lanes {
            if body.len() <= self.inner.server_max
                && !method.is_empty()
                && method.len() <= wire::MAX_METHOD
            {
                if let Some(mut lane) = pool.take() {
                    // Any error drops the lane: after a timeout its late
                    // reply must never be taken for another call's.
                    let r = lane
                        .call(&self.inner.name, KIND_CALL, method, enc, body, timeout)
                        .map(|r| done(r.kind, r.encoding, r.body));
                    if let Ok(out) = r {
                        pool.put(lane);
                        return out;
                    }
                    return r.and_then(|x| x);
                }
            }
        }
        let reply = self.wait_socket(method, enc, body, timeout)?;
        done(reply.kind, reply.encoding, &reply.body)
    }

    fn wait_socket(
        &self,
        method: &str,
        enc: Encoding,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Reply> {
        let (tx, rx) = mpsc::sync_channel(1);
        let reg = self.send(method, enc, body, Waiter::Blocking(tx))?;
        let got = match timeout {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(t) => rx.recv_timeout(t),
        };
        drop(reg);
        match got {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "no reply to '{method}' within {:?}; the call may still run on the server, and the connection stays usable",
                    timeout.unwrap_or_default()
                ),
            )
            .with_name(&self.inner.name)),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.inner.peer_gone("the connection's reader stopped"))
            }
        }
    }

    /// Call `method` with `req` and wait for its result (the seed's
    /// `SendMessage`, then reading the result back).
    ///
    /// Errors: [`ErrorKind::Remote`] (the handler failed; see
    /// [`Error::remote_code`]), [`ErrorKind::PeerGone`] (the server died or
    /// closed the connection before answering), [`ErrorKind::Decode`] (the
    /// result is not a `Resp`), [`ErrorKind::TooLarge`] (request over the
    /// server's limit; nothing was sent).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns)
    /// #     .handler("len", |s: String| Ok::<_, String>(s.len())).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// assert_eq!(c.call::<_, usize>("len", "four").unwrap(), 4);
    /// let e = c.call::<_, usize>("nope", "x").unwrap_err();
    /// assert!(e.to_string().contains("unknown method 'nope'"));
    /// ```
    pub fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp> {
        self.call_value(method, req, None)
    }

    /// Make one typed call: on an idle shared-memory lane if there is one,
    /// the request encoded straight into its shared segment (see
    /// [`LaneState::call_value`](lane::LaneState::call_value)); else on the socket.
    fn call_value<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp> {
        let inner = &self.inner;
        #[cfg(unix)]
        if let Some(pool) = &self.lanes {
            if !method.is_empty() && method.len() <= wire::MAX_METHOD {
                if let Some(mut lane) = pool.take() {
                    let r = lane
                        .call_value(
                            &inner.name,
                            method,
                            inner.encoding,
                            req,
                            inner.server_max,
                            timeout,
                        )
                        .map(|r| finish(&inner.name, method, r.kind, r.encoding, r.body));
                    return match r {
                        Ok(out) => {
                            pool.put(lane);
                            out
                        }
                        Err(lane::LaneFail::Unsent(e)) => {
                            pool.put(lane);
                            Err(e)
                        }
                        // After a timeout its late reply must never be
                        // taken for another call's: the lane is dropped.
                        Err(lane::LaneFail::Broken(e)) => Err(e),
                    };
                }
            }
        }
        let body = self.encode(method, req)?;
        let reply = self.wait_socket(method, inner.encoding, &body, timeout)?;
        finish(&inner.name, method, reply.kind, reply.encoding, &reply.body)
    }

    /// Like [`call`](Self::call), giving up with [`ErrorKind::Timeout`]
    /// after `timeout`. The connection stays usable; a reply that arrives
    /// later is discarded.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns)
    /// #     .handler("nap", |ms: u64| { std::thread::sleep(Duration::from_millis(ms)); Ok::<_, String>(ms) })
    /// #     .bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// let e = c.call_timeout::<_, u64>("nap", &500, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// assert_eq!(c.call::<_, u64>("nap", &0).unwrap(), 0);
    /// ```
    pub fn call_timeout<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        self.call_value(method, req, Some(timeout))
    }

    /// Call with a JSON argument and get the JSON result, as the CLI and
    /// other languages do (the body travels as JSON). `timeout: None`
    /// waits for ever.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns)
    /// #     .handler("add", |p: std::collections::HashMap<String, i64>| Ok::<_, String>(p.values().sum::<i64>()))
    /// #     .bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// let v = c.call_json("add", serde_json::json!({"a": 1, "b": 2}), None).unwrap();
    /// assert_eq!(v, serde_json::json!(3));
    /// ```
    pub fn call_json(
        &self,
        method: &str,
        req: serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value> {
        let body = serde_json::to_vec(&req).expect("a JSON value serialises");
        self.wait(method, Encoding::Json, &body, timeout, |k, e, b| {
            finish(&self.inner.name, method, k, e, b)
        })
    }

    /// The server's methods and counters (the built-in `ipckit.describe`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// assert_eq!(c.describe().unwrap().name, "s");
    /// ```
    pub fn describe(&self) -> Result<Describe> {
        self.call(DESCRIBE, &())
    }

    /// Which path this client's calls take: [`Transport::SharedMemory`]
    /// (rings in shared memory; the socket only detects the server's
    /// death) or [`Transport::Socket`] (TCP, opted out, or a server that
    /// does not offer shared memory; always on Windows, where it is the
    /// named pipe).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns).bind().unwrap();
    /// use ipckit::Transport;
    /// let c = ipckit::service::Client::options().namespace(&ns)
    ///     .transport(Transport::Socket).connect("s").unwrap();
    /// assert_eq!(c.transport(), Transport::Socket);
    /// ```
    pub fn transport(&self) -> Transport {
        #[cfg(unix)]
        if self.lanes.as_ref().is_some_and(|p| p.enabled()) {
            return Transport::SharedMemory;
        }
        Transport::Socket
    }

    /// Borrow a request buffer of `len` bytes to fill in place and send
    /// with [`call_loan`](Self::call_loan). On shared memory it lies in the
    /// connection's loan segment (nothing is copied when the call is made)
    /// and reserves one connection until sent or dropped; on a socket it is
    /// a heap buffer. [`ErrorKind::TooLarge`] over the server's
    /// `max_message_size`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns).max_message_size(4096).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// let loan = c.loan(100).unwrap();
    /// assert_eq!(loan.len(), 100);
    /// drop(loan); // unsent: the connection is given back
    /// assert_eq!(c.loan(1 << 20).unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
    /// ```
    pub fn loan(&self, len: usize) -> Result<Loan> {
        #[cfg(unix)]
        let cap = match &self.lanes {
            Some(p) => p.loan_cap().min(self.inner.server_max),
            None => self.inner.server_max,
        };
        #[cfg(windows)]
        let cap = self.inner.server_max;
        if len > cap {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "a loan of {len} bytes is over the server's limit of {cap} bytes; send less or raise max_frame on the server"
                ),
            )
            .with_name(&self.inner.name)
            .with_needed(len));
        }
        #[cfg(unix)]
        if let Some(pool) = &self.lanes {
            if let Some(lane) = pool.take() {
                return Ok(Loan::shared(lane, pool.clone(), len));
            }
        }
        Ok(Loan::heap(len))
    }

    /// Call `method` with the bytes of `loan` and get its result, read in
    /// place (see [`LoanReply`]). Meant for methods offered with
    /// [`loan_handler`](super::ServerBuilder::loan_handler); a raw handler
    /// gets the bytes too. On shared memory the request and the result
    /// stay in shared memory: neither is copied.
    ///
    /// The loan frames (see `docs/PROTOCOL.md`): on a lane, a
    /// `KIND_LOAN_CALL` whose 16-byte body is the request's offset and
    /// length in loan segment 0, answered by `KIND_LOAN_REPLY` (offset and
    /// length in segment 1) or an error; on a socket, an ordinary call
    /// frame carrying the bytes.
    ///
    /// Errors as for [`call`](Self::call); a reply whose range lies outside
    /// the segment is [`ErrorKind::Decode`] (the connection is closed).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::service::{Client, Server};
    /// let _s = Server::builder("s").namespace(&ns)
    ///     .loan_handler("rev", |req, reply| {
    ///         let out = reply.alloc(req.len())?;
    ///         out.copy_from_slice(req);
    ///         out.reverse();
    ///         Ok::<_, ipckit::Error>(())
    ///     })
    ///     .bind().unwrap();
    /// let c = Client::options().namespace(&ns).connect("s").unwrap();
    /// let mut loan = c.loan(3).unwrap();
    /// loan.copy_from_slice(b"abc");
    /// assert_eq!(&c.call_loan("rev", loan).unwrap()[..], b"cba");
    /// ```
    pub fn call_loan(&self, method: &str, loan: Loan) -> Result<LoanReply> {
        let name = &self.inner.name;
        if method.is_empty() || method.len() > wire::MAX_METHOD {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "method name '{method}' must be 1 to {} bytes",
                    wire::MAX_METHOD
                ),
            )
            .with_name(name));
        }
        let _ = KIND_LOAN_CALL;
        #[cfg(windows)]
        let parts: std::result::Result<std::convert::Infallible, Vec<u8>> = Err(loan.into_bytes());
        #[cfg(unix)]
        let parts = loan.into_parts();
        match parts {
            #[cfg(windows)]
            Ok(never) => match never {},
            #[cfg(unix)]
            Ok((lane, pool, len)) => match lane::call_on_lane(lane, pool, len, method)? {
                Ok(r) => Ok(r),
                Err((kind, body, _enc)) if kind == KIND_ERROR => {
                    Err(remote_error(name, method, &body))
                }
                Err((kind, _, _)) => Err(Error::new(
                    ErrorKind::Decode,
                    format!("the server answered '{method}' with frame kind {kind}, not a reply; the call's outcome is unknown"),
                )
                .with_name(name)),
            },
            Err(body) => {
                let reply = self.wait_socket(method, Encoding::Postcard, &body, None)?;
                if reply.kind == KIND_ERROR {
                    return Err(remote_error(name, method, &reply.body));
                }
                Ok(LoanReply::heap(reply.body))
            }
        }
    }
}

fn remote_error(name: &str, method: &str, body: &[u8]) -> Error {
    let e: RemoteError = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return Error::new(
                ErrorKind::Decode,
                format!("the error reply to '{method}' is not {{\"code\",\"message\"}} JSON: {e}"),
            )
            .with_name(name)
        }
    };
    if e.code == super::CODE_BUSY {
        return Error::new(
            ErrorKind::Busy,
            format!("'{method}' was refused by the server: {}", e.message),
        )
        .with_name(name);
    }
    Error::remote(
        e.code,
        format!(
            "'{method}' failed on the server (code {}): {}",
            e.code, e.message
        ),
    )
    .with_name(name)
}

fn finish<Resp: DeserializeOwned>(
    name: &str,
    method: &str,
    kind: u8,
    encoding: Encoding,
    body: &[u8],
) -> Result<Resp> {
    if kind == KIND_ERROR {
        return Err(remote_error(name, method, body));
    }
    if kind != KIND_REPLY {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("the server answered '{method}' with frame kind {kind}, not a reply; the call's outcome is unknown"),
        )
        .with_name(name));
    }
    encoding.decode(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "the reply to '{method}' did not decode as {} ({}): {e}; do client and server agree on the types?",
                type_name::<Resp>(),
                encoding.as_str()
            ),
        )
        .with_name(name)
    })
}

/// Turns a reply (kind, encoding, body) into a call's output.
#[cfg(feature = "tokio")]
type Done<T> = Box<dyn FnOnce(u8, Encoding, &[u8]) -> Result<T> + Send>;

/// The future of [`Client::call_async`]: on a lane, on the socket, or an
/// error found before anything was sent.
// The lane call is held by value: boxing it would cost an allocation per
// call on the hot path.
#[cfg(feature = "tokio")]
#[allow(clippy::large_enum_variant)]
enum AsyncCall<T> {
    #[cfg(unix)]
    Lane(lane::LaneCall<Done<T>>),
    Socket(std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>),
    Failed(Option<Error>),
}

#[cfg(feature = "tokio")]
impl<T> std::future::Future for AsyncCall<T> {
    type Output = Result<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        match self.get_mut() {
            #[cfg(unix)]
            AsyncCall::Lane(l) => std::pin::Pin::new(l).poll(cx),
            AsyncCall::Socket(f) => f.as_mut().poll(cx),
            AsyncCall::Failed(e) => std::task::Poll::Ready(Err(e
                .take()
                .expect("a failed call future polled after it completed"))),
        }
    }
}

#[cfg(feature = "tokio")]
impl Client {
    /// Call `method` without blocking: the call is sent now, and the
    /// returned future resolves with its result. The future is
    /// `Send + 'static`, so it can be spawned; many can be in flight on one
    /// client. Errors as for [`call`](Self::call).
    ///
    /// On shared memory the call takes an idle lane (see
    /// [`transport`](Self::transport)); the future first spins on the
    /// reply ring for the client's [`WaitStrategy`] budget (no system call,
    /// no wake-up while the server answers quickly), then parks: a helper
    /// thread (tokio's blocking pool, or a thread of its own outside a
    /// runtime) blocks on the ring and wakes the task. Calls that find no
    /// idle lane, and requests over 64 KiB, go over the socket, where the
    /// client's reader thread wakes the task.
    ///
    /// Dropping the future abandons the call cleanly: on the socket its
    /// late reply is discarded; on shared memory its lane is closed (so
    /// its late reply can never be taken for another call's). The client
    /// stays usable either way.
    ///
    /// Needs the `tokio` feature; any executor can await the future.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns)
    /// #     .handler("twice", |x: i32| Ok::<_, String>(2 * x)).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// let (a, b) = (c.call_async::<_, i32>("twice", &1), c.call_async::<_, i32>("twice", &2));
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(async { (a.await.unwrap(), b.await.unwrap()) }), (2, 4));
    /// ```
    pub fn call_async<Req: Serialize + ?Sized, Resp: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        req: &Req,
    ) -> impl std::future::Future<Output = Result<Resp>> + Send + 'static {
        let body = match self.encode(method, req) {
            Ok(b) => b,
            Err(e) => return AsyncCall::Failed(Some(e)),
        };
        self.start_async(method, self.inner.encoding, &body)
    }

    /// [`call_json`](Self::call_json) as a future (see
    /// [`call_async`](Self::call_async)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns)
    /// #     .handler("neg", |x: i64| Ok::<_, String>(-x)).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// let f = c.call_json_async("neg", serde_json::json!(5));
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(f).unwrap(), serde_json::json!(-5));
    /// ```
    pub fn call_json_async(
        &self,
        method: &str,
        req: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<serde_json::Value>> + Send + 'static {
        let body = serde_json::to_vec(&req).expect("a JSON value serialises");
        self.start_async(method, Encoding::Json, &body)
    }

    /// Send a call and return its future: on an idle lane when there is
    /// one and the request goes out as one ring record, else on the socket.
    fn start_async<Resp: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        enc: Encoding,
        body: &[u8],
    ) -> AsyncCall<Resp> {
        let name = self.inner.name.clone();
        let m = method.to_string();
        #[cfg(unix)]
        if let Some(pool) = &self.lanes {
            if body.len() <= self.inner.server_max
                && !method.is_empty()
                && method.len() <= wire::MAX_METHOD
            {
                if let Some(mut lane) = pool.take_idle() {
                    if lane.fits_unfragmented(method, body.len()) {
                        return match lane.start(&name, KIND_CALL, method, enc, body) {
                            // The lane is dropped with the error.
                            Err(e) => AsyncCall::Failed(Some(e)),
                            Ok(id) => {
                                let done: Done<Resp> =
                                    Box::new(move |k, e, b| finish(&name, &m, k, e, b));
                                AsyncCall::Lane(lane::LaneCall::new(
                                    lane,
                                    pool.clone(),
                                    id,
                                    method,
                                    done,
                                ))
                            }
                        };
                    }
                    pool.put(lane);
                }
            }
        }
        match self.send_async(method, enc, body) {
            Ok(f) => AsyncCall::Socket(Box::pin(async move {
                let reply = f.await?;
                finish(&name, &m, reply.kind, reply.encoding, &reply.body)
            })),
            Err(e) => AsyncCall::Failed(Some(e)),
        }
    }

    fn send_async(
        &self,
        method: &str,
        enc: Encoding,
        body: &[u8],
    ) -> Result<impl std::future::Future<Output = Result<Reply>> + Send + 'static> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reg = self.send(method, enc, body, Waiter::Async(tx))?;
        Ok(async move {
            let got = rx.await;
            let inner = reg.inner.clone();
            drop(reg);
            match got {
                Ok(outcome) => outcome,
                Err(_) => Err(inner.peer_gone("the connection's reader stopped")),
            }
        })
    }
}
