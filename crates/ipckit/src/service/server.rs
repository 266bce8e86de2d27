//! The service server: the connection layer's readiness loop reads calls
//! from every socket (no thread per idle connection), handlers run on an
//! elastic worker pool, replies go out under a per-connection write lock;
//! shared-memory lanes each have a thread of their own.

use std::any::type_name;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::loan::LoanWriter;
use super::wire::{
    self, HEADER_LEN, KIND_CALL, KIND_ERROR, KIND_LANE, KIND_LOAN_CALL, KIND_LOAN_REPLY, KIND_REPLY,
};
use super::{
    Describe, Encoding, MethodInfo, RemoteError, CODE_BAD_REQUEST, CODE_BUSY, CODE_INTERNAL,
    CODE_SHUTTING_DOWN, CODE_UNKNOWN_METHOD, DEFAULT_MAX_MESSAGE_SIZE, DESCRIBE, TCP_PREFIX,
};
use crate::conn::listen;
use crate::conn::pool::Pool;
use crate::conn::reactor::{Conn, Counters, Flow, Frame, FrameLen, Protocol, Reactor, Refusal};
#[cfg(unix)]
use crate::conn::ring::{Chan, RingError, Rings};
use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::name::Namespace;
use crate::transport::{Transport, WaitStrategy};

type RawHandler =
    dyn Fn(Encoding, &[u8]) -> std::result::Result<Vec<u8>, RemoteError> + Send + Sync;
type LoanHandler =
    dyn Fn(&[u8], &mut LoanWriter<'_>) -> std::result::Result<(), RemoteError> + Send + Sync;
/// An async handler's future: the result's bytes, or the remote error.
#[cfg(feature = "tokio")]
type BoxFut = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<Vec<u8>, RemoteError>> + Send>,
>;
#[cfg(feature = "tokio")]
type AsyncHandler = dyn Fn(Encoding, Vec<u8>) -> BoxFut + Send + Sync;

/// A typed handler: decodes the request, runs, and encodes the result into
/// the place given (loan segment 1 of a lane: `Done::InPlace`) or, with
/// none, onto the heap.
type TypedHandler = dyn Fn(Encoding, &[u8], Option<&mut [u8]>) -> std::result::Result<Done, RemoteError>
    + Send
    + Sync;

/// A method's handler: bytes in, bytes out; typed; or in place (loans).
#[derive(Clone)]
enum Handler {
    Raw(Arc<RawHandler>),
    Typed(Arc<TypedHandler>),
    Loan(Arc<LoanHandler>),
    /// Its futures run on this runtime (the registering thread's).
    #[cfg(feature = "tokio")]
    Async(Arc<AsyncHandler>, tokio::runtime::Handle),
}

/// A handler's result: a heap buffer, or `n` bytes written in place at the
/// start of loan segment 1.
enum Done {
    Heap(Vec<u8>),
    InPlace(usize),
}
type LogHook = dyn Fn(&str) + Send + Sync;

/// How long dropping a server waits for calls in flight.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Stack of a connection's thread (it parses frames, and on a
/// shared-memory lane runs the handlers itself).
const READER_STACK: usize = 1 << 20;
/// Most handler threads running at once; further calls queue.
const DEFAULT_MAX_WORKERS: usize = 512;

struct Method {
    info: MethodInfo,
    f: Handler,
}

/// Settings and methods of a service, before it is bound to its name.
///
/// ```
/// use ipckit::service::{RemoteError, Server};
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let server = Server::builder("calc")
///     .namespace(&ns)
///     .max_message_size(1 << 20)
///     .handler("square", |x: f64| Ok::<_, RemoteError>(x * x))
///     .bind()
///     .unwrap();
/// assert_eq!(server.name(), "calc");
/// ```
pub struct ServerBuilder {
    name: String,
    methods: BTreeMap<String, Method>,
    tcp: Option<String>,
    namespace: Option<Namespace>,
    max_frame: usize,
    max_workers: usize,
    log: Option<Arc<LogHook>>,
    problem: Option<Error>,
    transport: Transport,
    wait: WaitStrategy,
    limits: Limits,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("name", &self.name)
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .field("tcp", &self.tcp)
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

impl ServerBuilder {
    fn new(name: &str) -> Self {
        ServerBuilder {
            name: name.to_string(),
            methods: BTreeMap::new(),
            tcp: None,
            namespace: None,
            max_frame: DEFAULT_MAX_MESSAGE_SIZE,
            max_workers: DEFAULT_MAX_WORKERS,
            log: None,
            problem: None,
            transport: Transport::Auto,
            wait: WaitStrategy::default(),
            limits: Limits::default(),
        }
    }

    fn add(&mut self, method: &str, info: MethodInfo, f: Handler) {
        let why = if method.is_empty() || method.len() > wire::MAX_METHOD {
            Some(format!(
                "method name '{method}' must be 1 to {} bytes",
                wire::MAX_METHOD
            ))
        } else if method.starts_with("ipckit.") {
            Some(format!(
                "method name '{method}' is reserved: names starting with 'ipckit.' are built in"
            ))
        } else if self.methods.contains_key(method) {
            Some(format!("method '{method}' is registered twice"))
        } else {
            None
        };
        if let Some(why) = why {
            self.problem.get_or_insert_with(|| {
                Error::new(ErrorKind::InvalidInput, format!("{why}; rename it"))
                    .with_name(&self.name)
            });
            return;
        }
        self.methods.insert(method.to_string(), Method { info, f });
    }

    /// Offer `method`: requests decode as `Req`, the handler's `Ok` is sent
    /// back as the result and its `Err` as a remote error (code and
    /// message, see [`RemoteError`]). A handler that panics fails only that
    /// call (code [`CODE_INTERNAL`](super::CODE_INTERNAL)). Handlers run on
    /// worker threads, several at once.
    ///
    /// Method names are 1–255 bytes; `ipckit.` is reserved. A bad or
    /// duplicate name makes [`bind`](Self::bind) fail.
    ///
    /// ```
    /// use ipckit::service::{RemoteError, Server};
    /// let b = Server::builder("calc")
    ///     .handler::<(i64, i64), i64, RemoteError>("div", |(a, b)| {
    ///         a.checked_div(b).ok_or(RemoteError::new(2, "division by zero"))
    ///     });
    /// ```
    pub fn handler<Req, Resp, E>(
        self,
        method: &str,
        f: impl Fn(Req) -> std::result::Result<Resp, E> + Send + Sync + 'static,
    ) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
        E: Into<RemoteError>,
    {
        self.typed(method, f, None)
    }

    /// Offer `method` like [`handler`](Self::handler), and publish the JSON
    /// Schemas of its request and response types in `ipckit.describe`
    /// ([`MethodInfo::request_schema`], [`MethodInfo::response_schema`]),
    /// so that a caller in another language (or `ipckit call NAME METHOD
    /// --schema`) learns which fields to send and what comes back. Both
    /// types implement [`schemars::JsonSchema`] (derive it; schemars 1.x,
    /// re-exported as [`ipckit::service::schemars`](super::schemars)). The
    /// request's schema describes what deserializes, the response's what
    /// serializes; each is generated once, here (JSON Schema 2020-12).
    ///
    /// Needs the `schema` feature (on by default).
    ///
    /// ```
    /// use ipckit::service::{Client, RemoteError, Server};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// struct AddArgs { a: i64, b: i64 }
    ///
    /// let _server = Server::builder("calc").namespace(&ns)
    ///     .handler_with_schema("add", |p: AddArgs| {
    ///         p.a.checked_add(p.b).ok_or(RemoteError::new(7, "overflow"))
    ///     })
    ///     .bind()
    ///     .unwrap();
    /// let c = Client::options().namespace(&ns).connect("calc").unwrap();
    /// let add = c.describe().unwrap().methods.into_iter().find(|m| m.name == "add").unwrap();
    /// let req: serde_json::Value = serde_json::from_str(&add.request_schema.unwrap()).unwrap();
    /// assert_eq!(req["properties"]["a"]["type"], "integer");
    /// assert_eq!(req["required"], serde_json::json!(["a", "b"]));
    /// let resp: serde_json::Value = serde_json::from_str(&add.response_schema.unwrap()).unwrap();
    /// assert_eq!(resp["type"], "integer");
    /// ```
    #[cfg(feature = "schema")]
    #[cfg_attr(docsrs, doc(cfg(feature = "schema")))]
    pub fn handler_with_schema<Req, Resp, E>(
        self,
        method: &str,
        f: impl Fn(Req) -> std::result::Result<Resp, E> + Send + Sync + 'static,
    ) -> Self
    where
        Req: DeserializeOwned + schemars::JsonSchema + 'static,
        Resp: Serialize + schemars::JsonSchema + 'static,
        E: Into<RemoteError>,
    {
        let schemas = schemas_of::<Req, Resp>();
        self.typed(method, f, Some(schemas))
    }

    /// [`handler`](Self::handler), with the schemas to publish if any.
    fn typed<Req, Resp, E>(
        mut self,
        method: &str,
        f: impl Fn(Req) -> std::result::Result<Resp, E> + Send + Sync + 'static,
        schemas: Option<(String, String)>,
    ) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
        E: Into<RemoteError>,
    {
        let m = method.to_string();
        let typed = move |enc: Encoding, body: &[u8], place: Option<&mut [u8]>| {
            let req: Req = enc
                .decode(body)
                .map_err(|e| bad_request::<Req>(&m, enc, &e))?;
            let resp = f(req).map_err(Into::into)?;
            if let Some(seg) = place {
                // Straight into the shared segment: no buffer in between.
                match enc.encode_into(&resp, seg) {
                    Ok(n) => return Ok(Done::InPlace(n)),
                    // Over the segment: the heap path reports it as ever.
                    Err(super::EncodeIntoError::Full) => {}
                    Err(super::EncodeIntoError::Other(e)) => return Err(unencodable(&m, enc, &e)),
                }
            }
            enc.encode(&resp)
                .map(Done::Heap)
                .map_err(|e| unencodable(&m, enc, &e))
        };
        let info = typed_info::<Req, Resp>(method, schemas);
        self.add(method, info, Handler::Typed(Arc::new(typed)));
        self
    }

    /// Offer `method` with an async handler: like [`handler`](Self::handler),
    /// but `f` returns a future, which runs on the tokio runtime of the
    /// thread that calls `handler_async` (its `Handle` is kept). Call it
    /// inside a runtime (in `Runtime::block_on`, a task, or after
    /// `Runtime::enter`); outside one, [`bind`](Self::bind) fails with
    /// [`ErrorKind::InvalidInput`]. The runtime must keep running while the
    /// server serves: a multi-thread runtime, or a current-thread one whose
    /// `block_on` is still running (it runs spawned tasks only then).
    ///
    /// Everything else is as for sync handlers: errors become remote errors,
    /// a panic in the future fails only that call (code
    /// [`CODE_INTERNAL`](super::CODE_INTERNAL)), the per-connection limit
    /// of calls in flight applies, and shutting down waits for futures in
    /// flight. A call that arrives on a socket costs no thread while its
    /// future waits; one on a shared-memory lane keeps the lane's thread
    /// waiting for the future's result (a lane carries one call at a
    /// time). If the runtime shuts down before a future completes, the
    /// call fails with code `CODE_INTERNAL`. Shutting the server down (or
    /// dropping it) waits for the futures in flight, which need the
    /// runtime: do it from a thread the runtime does not need to make
    /// progress (not from inside a current-thread runtime's `block_on`
    /// while calls are pending), or bound it with
    /// [`Server::shutdown_timeout`].
    ///
    /// Needs the `tokio` feature.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipckit::service::{Client, RemoteError, Server};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// let _server = rt.block_on(async {
    ///     Server::builder("slow").namespace(&ns)
    ///         .handler_async("later", |ms: u64| async move {
    ///             tokio::time::sleep(Duration::from_millis(ms)).await;
    ///             Ok::<_, RemoteError>(ms * 2)
    ///         })
    ///         .bind()
    /// }).unwrap();
    /// let c = Client::options().namespace(&ns).connect("slow").unwrap();
    /// assert_eq!(c.call::<_, u64>("later", &5u64).unwrap(), 10);
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn handler_async<Req, Resp, E, Fut>(
        self,
        method: &str,
        f: impl Fn(Req) -> Fut + Send + Sync + 'static,
    ) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
        E: Into<RemoteError> + 'static,
        Fut: std::future::Future<Output = std::result::Result<Resp, E>> + Send + 'static,
    {
        self.typed_async(method, f, None)
    }

    /// [`handler_async`](Self::handler_async) that also publishes the JSON
    /// Schemas of its request and response types, as
    /// [`handler_with_schema`](Self::handler_with_schema) does.
    ///
    /// Needs the `tokio` and `schema` features.
    ///
    /// ```
    /// use ipckit::service::{Client, RemoteError, Server};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// let _server = rt.block_on(async {
    ///     Server::builder("twice").namespace(&ns)
    ///         .handler_async_with_schema("twice", |x: u32| async move {
    ///             Ok::<_, RemoteError>(u64::from(x) * 2)
    ///         })
    ///         .bind()
    /// }).unwrap();
    /// let c = Client::options().namespace(&ns).connect("twice").unwrap();
    /// assert_eq!(c.call::<_, u64>("twice", &21u32).unwrap(), 42);
    /// let m = c.describe().unwrap().methods.into_iter().find(|m| m.name == "twice").unwrap();
    /// assert!(m.request_schema.unwrap().contains("\"uint32\""));
    /// ```
    #[cfg(all(feature = "tokio", feature = "schema"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "tokio", feature = "schema"))))]
    pub fn handler_async_with_schema<Req, Resp, E, Fut>(
        self,
        method: &str,
        f: impl Fn(Req) -> Fut + Send + Sync + 'static,
    ) -> Self
    where
        Req: DeserializeOwned + schemars::JsonSchema + 'static,
        Resp: Serialize + schemars::JsonSchema + 'static,
        E: Into<RemoteError> + 'static,
        Fut: std::future::Future<Output = std::result::Result<Resp, E>> + Send + 'static,
    {
        let schemas = schemas_of::<Req, Resp>();
        self.typed_async(method, f, Some(schemas))
    }

    /// [`handler_async`](Self::handler_async), with the schemas to publish
    /// if any.
    #[cfg(feature = "tokio")]
    fn typed_async<Req, Resp, E, Fut>(
        mut self,
        method: &str,
        f: impl Fn(Req) -> Fut + Send + Sync + 'static,
        schemas: Option<(String, String)>,
    ) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
        E: Into<RemoteError> + 'static,
        Fut: std::future::Future<Output = std::result::Result<Resp, E>> + Send + 'static,
    {
        let rt = match tokio::runtime::Handle::try_current() {
            Ok(h) => h,
            Err(_) => {
                self.problem.get_or_insert_with(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "handler_async('{method}') was called outside a tokio runtime; its futures run on the runtime of the thread that registers them, so build the server inside Runtime::block_on or after Runtime::enter"
                        ),
                    )
                    .with_name(&self.name)
                });
                return self;
            }
        };
        let f = Arc::new(f);
        let m: Arc<str> = method.into();
        let raw = move |enc: Encoding, body: Vec<u8>| -> BoxFut {
            let (f, m) = (f.clone(), m.clone());
            Box::pin(async move {
                let req: Req = enc
                    .decode(&body)
                    .map_err(|e| bad_request::<Req>(&m, enc, &e))?;
                drop(body);
                let resp = f(req).await.map_err(Into::into)?;
                enc.encode(&resp).map_err(|e| unencodable(&m, enc, &e))
            })
        };
        let info = typed_info::<Req, Resp>(method, schemas);
        self.add(method, info, Handler::Async(Arc::new(raw), rt));
        self
    }

    /// Offer `method` on raw bodies: the handler gets the call's encoding
    /// and body bytes and returns the result's bytes, which must be in the
    /// same encoding. `ipckit.describe` lists its types as `bytes`.
    ///
    /// ```
    /// use ipckit::service::{RemoteError, Server};
    /// // An echo that works for every encoding: the body is returned as is.
    /// let b = Server::builder("e").raw_handler("echo", |_enc, body| Ok::<_, RemoteError>(body.to_vec()));
    /// ```
    pub fn raw_handler<E: Into<RemoteError>>(
        mut self,
        method: &str,
        f: impl Fn(Encoding, &[u8]) -> std::result::Result<Vec<u8>, E> + Send + Sync + 'static,
    ) -> Self {
        let info = MethodInfo {
            name: method.to_string(),
            request: "bytes".into(),
            response: "bytes".into(),
            request_schema: None,
            response_schema: None,
        };
        self.add(
            method,
            info,
            Handler::Raw(Arc::new(move |enc: Encoding, body: &[u8]| {
                f(enc, body).map_err(Into::into)
            })),
        );
        self
    }

    /// Offer `method` for zero-copy loans (see
    /// [`Client::call_loan`](super::Client::call_loan)): the handler reads
    /// the request bytes in place and writes its result in place through
    /// the [`LoanWriter`] (at most `max_message_size` bytes). On a shared-memory
    /// connection both lie in shared memory and nothing is copied; on a
    /// socket they are heap buffers carried in the frames. Ordinary calls
    /// to the method work too (the body is the request).
    ///
    /// The request lies in memory the client can still write: a hostile
    /// client can change bytes while the handler reads them. Treat it as
    /// plain bytes, and copy out (`to_vec`, a fixed array) anything you
    /// check before using it — do not rely on two reads of the same byte
    /// agreeing. Bounds are always ipckit's own; nothing outside the
    /// segment can be reached.
    ///
    /// ```
    /// use ipckit::service::Server;
    /// let _ = Server::builder("s").loan_handler("sum", |req, reply| {
    ///     let sum: u64 = req.iter().map(|b| *b as u64).sum();
    ///     reply.write(&sum.to_le_bytes())
    /// });
    /// ```
    pub fn loan_handler<E: Into<RemoteError>>(
        mut self,
        method: &str,
        f: impl Fn(&[u8], &mut LoanWriter<'_>) -> std::result::Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        let info = MethodInfo {
            name: method.to_string(),
            request: "loan bytes".into(),
            response: "loan bytes".into(),
            request_schema: None,
            response_schema: None,
        };
        self.add(
            method,
            info,
            Handler::Loan(Arc::new(move |req: &[u8], w: &mut LoanWriter<'_>| {
                f(req, w).map_err(Into::into)
            })),
        );
        self
    }

    /// Whether to offer shared memory to local clients (default
    /// [`Transport::Auto`]: yes, unless `IPCKIT_TRANSPORT=socket`;
    /// [`Transport::Socket`]: never). Calls on shared memory run their
    /// handler on the thread of the client's lane, with no hand-off. On
    /// Windows no lanes are offered, whatever this says.
    ///
    /// ```
    /// let _ = ipckit::service::Server::builder("s").transport(ipckit::Transport::Socket);
    /// ```
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// How a lane's thread waits for the next call (default: spin briefly,
    /// then park; [`WaitStrategy::Park`] uses the least CPU).
    ///
    /// ```
    /// let _ = ipckit::service::Server::builder("s").wait_strategy(ipckit::WaitStrategy::Park);
    /// ```
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Also listen on TCP at `addr` (`HOST:PORT`, port 0 picks one; see
    /// [`Server::tcp_addr`]). Clients connect with `tcp://HOST:PORT`. TCP
    /// has no authentication: bind to loopback unless the network is
    /// trusted. Default: local only. Linux only for now: on Windows `bind`
    /// then fails with [`ErrorKind::Unsupported`].
    ///
    /// ```
    /// let _ = ipckit::service::Server::builder("s").tcp("127.0.0.1:0");
    /// ```
    pub fn tcp(mut self, addr: impl Into<String>) -> Self {
        self.tcp = Some(addr.into().trim_start_matches(TCP_PREFIX).to_string());
        self
    }

    /// Bind in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::service::Server::builder("s").namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Largest request body accepted, in bytes (default 64 MiB, at most
    /// 4 GiB − 1). A client announcing a larger one is disconnected before
    /// its body is read or any memory is set aside for it.
    ///
    /// ```
    /// let _ = ipckit::service::Server::builder("s").max_message_size(1 << 20);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Most handlers running at once (default 512); further calls wait in
    /// a queue.
    ///
    /// ```
    /// let _ = ipckit::service::Server::builder("s").max_workers(8);
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n;
        self
    }

    /// What the server accepts from its clients (see [`Limits`]):
    /// connections in total, per process, per user and per TCP address;
    /// how long a client may stall inside a frame; calls in flight per
    /// connection (over it, a call is answered at once with an error of
    /// code [`CODE_BUSY`], which the caller sees as [`ErrorKind::Busy`]);
    /// shared-memory lanes per client process. Default
    /// [`Limits::default`].
    ///
    /// ```
    /// let l = ipckit::Limits::new().max_in_flight(16).max_lanes(4);
    /// let _ = ipckit::service::Server::builder("s").limits(l);
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where the server reports clients it disconnects for breaking the
    /// protocol (malformed or truncated frames, oversized bodies). Default:
    /// a line on stderr.
    ///
    /// ```
    /// let _ = ipckit::service::Server::builder("s").log(|line| eprintln!("[svc] {line}"));
    /// ```
    pub fn log(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.log = Some(Arc::new(hook));
        self
    }

    /// Claim the name, listen, and start serving in the background. A live
    /// server holding the name gives [`ErrorKind::AlreadyExists`]; a stale
    /// one is replaced.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let a = ipckit::service::Server::builder("s").namespace(&ns).bind().unwrap();
    /// let b = ipckit::service::Server::builder("s").namespace(&ns).bind();
    /// assert_eq!(b.unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// # drop(a);
    /// ```
    pub fn bind(self) -> Result<Server> {
        let name = self.name;
        if let Some(e) = self.problem {
            return Err(e);
        }
        if self.max_frame == 0 || self.max_frame > u32::MAX as usize {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_frame {} is out of range; use 1 to {} bytes",
                    self.max_frame,
                    u32::MAX
                ),
            )
            .with_name(name));
        }
        let ns = match self.namespace {
            Some(ns) => ns,
            None => Namespace::from_env()?,
        };
        let bound = listen::bind(&ns, &name, "service", self.tcp.as_deref())?;
        let log: Arc<LogHook> = match self.log {
            Some(l) => l,
            None => {
                let n = name.clone();
                Arc::new(move |line: &str| eprintln!("ipckit service '{n}': {line}"))
            }
        };
        let mut infos: Vec<MethodInfo> = self.methods.values().map(|m| m.info.clone()).collect();
        infos.push(MethodInfo {
            name: DESCRIBE.into(),
            request: "any (ignored)".into(),
            response: type_name::<Describe>().into(),
            request_schema: None,
            response_schema: None,
        });
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        let shared = Arc::new(Shared {
            pool: Pool::new(self.max_workers, format!("svc-{name}")),
            name: name.clone(),
            methods: self.methods.into_iter().map(|(k, m)| (k, m.f)).collect(),
            infos,
            max_frame: self.max_frame,
            log,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            stopping: AtomicBool::new(false),
            // Shared-memory lanes are Linux-only.
            offer_shm: cfg!(unix) && self.transport.allows_shm(),
            wait: self.wait,
            #[cfg(unix)]
            lanes: Mutex::new(HashMap::new()),
            lanes_by_pid: Mutex::new(HashMap::new()),
            limits: self.limits.clone(),
            counters: Mutex::new(None),
            next_lane: AtomicU64::new(1),
        });
        let reactor = Reactor::start(
            &format!("svc-{name}"),
            Arc::new(Calls(shared.clone())),
            bound.listening,
            self.limits,
        )
        .ctx(&name, "cannot start the service's connection loop")?;
        *shared.counters.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(reactor.counters().clone());
        Ok(Server {
            shared,
            control: Mutex::new(Control {
                reactor: Some(reactor),
                claim: Some(bound.claim),
                stopped: false,
            }),
            stopped_cv: Condvar::new(),
            tcp_addr: bound.tcp_addr,
            #[cfg(unix)]
            socket_path: bound.socket_path,
            #[cfg(windows)]
            os_name: bound.os_name,
        })
    }
}

struct Shared {
    name: String,
    methods: HashMap<String, Handler>,
    infos: Vec<MethodInfo>,
    max_frame: usize,
    log: Arc<LogHook>,
    pool: Arc<Pool>,
    calls: AtomicU64,
    errors: AtomicU64,
    /// Calls in flight (sockets and lanes). An atomic, not a mutex: every
    /// call changes it. `idle_lock` + `idle` wake a shutdown waiting for it
    /// to reach 0 (only then is the lock taken, see `call_done`).
    in_flight: AtomicU64,
    idle_lock: Mutex<()>,
    idle: Condvar,
    stopping: AtomicBool,
    /// Whether local clients are offered shared-memory lanes.
    offer_shm: bool,
    wait: WaitStrategy,
    /// Open lanes, to interrupt and close on shutdown.
    #[cfg(unix)]
    lanes: Mutex<HashMap<u64, Arc<Chan>>>,
    /// Lanes open per client process (`Limits::max_lanes`).
    lanes_by_pid: Mutex<HashMap<u32, usize>>,
    limits: Limits,
    /// The connection loop's counters (set once it runs).
    counters: Mutex<Option<Arc<Counters>>>,
    next_lane: AtomicU64,
}

impl Shared {
    /// A call started.
    fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn counters(&self) -> Option<Arc<Counters>> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A call stopped being in flight.
    fn call_done(&self) {
        // SeqCst with `stopping`'s store and the waiter's load (under
        // `idle_lock`): either the waiter sees 0, or this sees `stopping`
        // and notifies under the lock, after the waiter checked.
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.stopping.load(Ordering::SeqCst)
        {
            let _g = self.idle_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.idle.notify_all();
        }
    }

    #[cfg(unix)]
    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Chan>>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self) -> Describe {
        #[cfg(unix)]
        let lanes = self.lanes().len() as u64;
        #[cfg(windows)]
        let lanes = 0;
        let stats = self.counters().map(|c| c.snapshot()).unwrap_or_default();
        Describe {
            name: self.name.clone(),
            pid: std::process::id(),
            methods: self.infos.clone(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            // Lanes are connections too; they are counted apart.
            connections: stats.open.saturating_sub(lanes),
            lanes,
            limits: stats,
        }
    }

    fn unknown_method(&self, method: &str) -> RemoteError {
        let names: Vec<&str> = self.infos.iter().map(|m| m.name.as_str()).collect();
        RemoteError::new(
            CODE_UNKNOWN_METHOD,
            format!(
                "unknown method '{method}'; this service offers: {}",
                names.join(", ")
            ),
        )
    }
}

struct Control {
    reactor: Option<Reactor>,
    claim: Option<listen::BoundClaim>,
    stopped: bool,
}

/// A running service: serves in the background from
/// [`ServerBuilder::bind`] until [`shutdown`](Self::shutdown) or drop.
///
/// Shutting down is graceful: the name is released and no new call is
/// read, calls in flight run to the end and their replies are sent, then
/// every connection is closed.
///
/// The whole server side of a compute service:
///
/// ```no_run
/// use ipckit::service::{RemoteError, Server};
///
/// let server = Server::builder("calc")
///     .tcp("127.0.0.1:7100")
///     .handler("add", |(a, b): (i64, i64)| {
///         a.checked_add(b).ok_or(RemoteError::new(1, "overflow"))
///     })
///     .handler("mean", |v: Vec<f64>| {
///         if v.is_empty() {
///             return Err("mean of nothing".to_string());
///         }
///         Ok(v.iter().sum::<f64>() / v.len() as f64)
///     })
///     .bind()?;
/// server.wait(); // until another thread calls server.shutdown()
/// # Ok::<(), ipckit::Error>(())
/// ```
pub struct Server {
    shared: Arc<Shared>,
    control: Mutex<Control>,
    stopped_cv: Condvar,
    tcp_addr: Option<SocketAddr>,
    #[cfg(unix)]
    socket_path: PathBuf,
    /// The named pipe served (`\\.\pipe\ipckit.<H>.<name>`).
    #[cfg(windows)]
    os_name: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.shared.name)
            .field("endpoint", &self.endpoint())
            .field("tcp", &self.tcp_addr)
            .finish()
    }
}

impl Server {
    #[cfg(unix)]
    fn endpoint(&self) -> &std::path::Path {
        &self.socket_path
    }

    #[cfg(windows)]
    fn endpoint(&self) -> &str {
        &self.os_name
    }

    /// Start describing a service called `name` (see [`ServerBuilder`]).
    ///
    /// ```
    /// let b = ipckit::service::Server::builder("calc");
    /// ```
    #[doc(alias = "RpcServerListen")]
    pub fn builder(name: &str) -> ServerBuilder {
        ServerBuilder::new(name)
    }

    /// The service's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::service::Server::builder("n").namespace(&ns).bind().unwrap();
    /// assert_eq!(s.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The TCP address actually bound, if the server listens on TCP
    /// (always `None` on Windows, where [`ServerBuilder::tcp`] makes `bind`
    /// fail with [`ErrorKind::Unsupported`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # #[cfg(unix)] {
    /// let s = ipckit::service::Server::builder("t").namespace(&ns).tcp("127.0.0.1:0").bind().unwrap();
    /// assert_ne!(s.tcp_addr().unwrap().port(), 0);
    /// # }
    /// # #[cfg(windows)] {
    /// # let e = ipckit::service::Server::builder("t").namespace(&ns).tcp("127.0.0.1:0").bind().unwrap_err();
    /// # assert_eq!(e.kind(), ipckit::ErrorKind::Unsupported);
    /// # }
    /// ```
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Methods and counters, as `ipckit.describe` reports them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::service::Server::builder("n").namespace(&ns).bind().unwrap();
    /// assert_eq!(s.describe().calls, 0);
    /// ```
    pub fn describe(&self) -> Describe {
        self.shared.describe()
    }

    /// Also publish this service on a Zenoh fabric (feature `zenoh`), under
    /// its name: clients on any machine of the fabric find it with
    /// [`Fabric::connect_service`](crate::fabric::Fabric::connect_service)
    /// (or `ipckit call zenoh://NAME`). Every method runs the same handler
    /// as a local call (a loan method takes and returns its bytes as a raw
    /// one there); `ipckit.describe` on the fabric lists the same methods
    /// and schemas. The returned fabric server withdraws it when dropped;
    /// the local service keeps serving.
    ///
    /// Errors: those of [`fabric::ServerBuilder::bind`](crate::fabric::ServerBuilder::bind)
    /// (e.g. [`ErrorKind::AlreadyExists`]: a live server of that name is
    /// on the fabric).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-publish")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let local = ipckit::service::Server::builder("calc").namespace(&ns)
    ///     .handler("neg", |x: i64| Ok::<_, String>(-x)).bind().unwrap();
    /// let _published = local.publish(&fabric).unwrap();
    /// let c = fabric.connect_service("calc", std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!(c.call::<_, i64>("neg", &5).unwrap(), -5);
    /// ```
    #[cfg(all(feature = "zenoh", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    pub fn publish(&self, fabric: &crate::fabric::Fabric) -> Result<crate::fabric::Server> {
        let mut b = fabric.server(&self.shared.name);
        for info in self.shared.infos.iter().filter(|i| i.name != DESCRIBE) {
            let (shared, method) = (self.shared.clone(), info.name.clone());
            b = b.method_info(
                info,
                Arc::new(move |enc: Encoding, req: &[u8]| {
                    match execute(&shared, &method, enc, req, None)? {
                        Done::Heap(v) => Ok(v),
                        // Only a loan segment is written in place; none was given.
                        Done::InPlace(_) => Err(RemoteError::new(
                            CODE_INTERNAL,
                            format!("'{method}' answered in place without a loan"),
                        )),
                    }
                }),
            );
        }
        b.bind()
    }

    /// Block until the server has been shut down (from another thread).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = std::sync::Arc::new(ipckit::service::Server::builder("n").namespace(&ns).bind().unwrap());
    /// let s2 = s.clone();
    /// std::thread::spawn(move || s2.shutdown());
    /// s.wait();
    /// ```
    pub fn wait(&self) {
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        while !c.stopped {
            c = self.stopped_cv.wait(c).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stop gracefully, waiting up to 30 s for calls in flight (see
    /// [`shutdown_timeout`](Self::shutdown_timeout)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::service::Server::builder("n").namespace(&ns).bind().unwrap();
    /// s.shutdown();
    /// # #[cfg(unix)]
    /// assert!(ns.info("n").unwrap().is_none());
    /// // The name is free again.
    /// let _again = ipckit::service::Server::builder("n").namespace(&ns).bind().unwrap();
    /// ```
    pub fn shutdown(&self) -> bool {
        self.shutdown_timeout(DEFAULT_GRACE)
    }

    /// Stop: release the name and stop accepting, stop reading new calls,
    /// let calls in flight finish and send their replies (waiting at most
    /// `grace`), then close every connection. Returns whether every call
    /// in flight finished. Calling it again does nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::service::Server::builder("n").namespace(&ns).bind().unwrap();
    /// assert!(s.shutdown_timeout(std::time::Duration::from_secs(1)));
    /// ```
    pub fn shutdown_timeout(&self, grace: Duration) -> bool {
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        if c.stopped {
            return true;
        }
        let sh = &self.shared;
        sh.stopping.store(true, Ordering::SeqCst);
        // Stop accepting and reading; the connections stay open so that
        // calls in flight can still send their replies.
        let conns = c
            .reactor
            .as_mut()
            .map(|r| r.stop_keep())
            .unwrap_or_default();
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.socket_path);
        c.claim.take();
        let deadline = Instant::now() + grace;
        // Calls on sockets answer, then their connections close; then the
        // calls on lanes (counted with them in `in_flight`) get the rest.
        if let Some(r) = &c.reactor {
            r.finish(conns, grace);
        }
        let mut g = sh.idle_lock.lock().unwrap_or_else(|p| p.into_inner());
        while sh.in_flight.load(Ordering::SeqCst) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = sh
                .idle
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let finished = sh.in_flight.load(Ordering::SeqCst) == 0;
        drop(g);
        // Lanes answered every call that came in meanwhile with "shutting
        // down"; now end their waits and tell their clients.
        #[cfg(unix)]
        {
            let lanes: Vec<Arc<Chan>> = sh.lanes().drain().map(|(_, c)| c).collect();
            for chan in &lanes {
                chan.interrupt();
                chan.shutdown_socket();
            }
        }
        c.reactor.take();
        sh.pool.stop();
        c.stopped = true;
        self.stopped_cv.notify_all();
        finished
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The service's side of the connection loop: call frames, and the
/// one lane request a connection may open with.
struct Calls(Arc<Shared>);

impl Protocol for Calls {
    fn header_len(&self) -> usize {
        HEADER_LEN
    }

    fn frame_len(&self, header: &[u8]) -> std::result::Result<FrameLen, String> {
        let h: &[u8; HEADER_LEN] = header.try_into().map_err(|_| "short header")?;
        let hdr = wire::parse_header(h, &[KIND_CALL, KIND_LANE], self.0.max_frame)
            .map_err(|e| e.to_string())?;
        Ok(FrameLen::Whole(
            HEADER_LEN + hdr.method_len + hdr.body_len as usize,
        ))
    }

    fn hello(&self, conn: &Conn) -> Vec<u8> {
        wire::hello(self.0.max_frame, self.0.offer_shm && !conn.is_tcp()).to_vec()
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        wire::hello_refused(self.0.max_frame, why.status()).to_vec()
    }

    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow {
        let shared = &self.0;
        let f = match wire::parse_frame(&frame.bytes, &[KIND_CALL, KIND_LANE], shared.max_frame) {
            Ok(f) => f,
            Err(e) => return Flow::Close(Some(e.to_string())),
        };
        #[cfg(unix)]
        if f.kind == KIND_LANE {
            return self.lane_request(conn, frame.fds);
        }
        #[cfg(windows)]
        if f.kind == KIND_LANE {
            return Flow::Close(Some(
                "a lane request: shared-memory lanes are not offered on Windows".into(),
            ));
        }
        if !frame.fds.is_empty() {
            return Flow::Close(Some("a call frame carried file descriptors".into()));
        }
        let (call_id, encoding) = (f.call_id, f.encoding);
        let method = f.method.to_string();
        let body_at = frame.bytes.len() - f.body.len();
        shared.calls.fetch_add(1, Ordering::Relaxed);
        // Counted until its reply (or refusal) is written: the last one
        // closes a half-closed connection.
        conn.begin();
        if !conn.try_slot(shared.limits.get_max_in_flight()) {
            if let Some(c) = shared.counters() {
                c.busy.fetch_add(1, Ordering::Relaxed);
            }
            shared.errors.fetch_add(1, Ordering::Relaxed);
            let err = RemoteError::new(
                CODE_BUSY,
                format!(
                    "this connection already has {} calls in flight, the server's limit; wait for replies before sending more",
                    shared.limits.get_max_in_flight()
                ),
            );
            let conn = conn.clone();
            shared.pool.submit(Box::new(move || {
                send_error(&conn, call_id, &err);
                conn.end();
            }));
            return Flow::Continue;
        }
        shared.call_started();
        let (s, c) = (shared.clone(), conn.clone());
        let mut bytes = frame.bytes;
        #[cfg(feature = "tokio")]
        if let Some(Handler::Async(f, rt)) = shared.methods.get(&method) {
            let body = bytes.split_off(body_at);
            spawn_socket_call(s, c, f(encoding, body), rt, method, encoding, call_id);
            return Flow::Continue;
        }
        shared.pool.submit(Box::new(move || {
            let body = bytes.split_off(body_at);
            run_call(&s, &c, &method, encoding, call_id, &body);
            s.call_done();
            c.end();
        }));
        Flow::Continue
    }

    fn on_close(&self, conn: &Arc<Conn>, why: Option<&str>) {
        if let Some(why) = why {
            if !self.0.stopping.load(Ordering::Acquire) {
                (self.0.log)(&format!(
                    "disconnected client {}: {why}",
                    conn.peer().describe()
                ));
            }
        }
    }
}

#[cfg(unix)]
impl Calls {
    /// A connection's first frame asked to become a shared-memory lane.
    fn lane_request(&self, conn: &Arc<Conn>, mut fds: Vec<OwnedFd>) -> Flow {
        let shared = &self.0;
        if !shared.offer_shm || conn.is_tcp() || conn.frames_seen() != 1 {
            return Flow::Close(Some(
                "a lane request that was not offered or not the first frame".into(),
            ));
        }
        if fds.len() != 1 {
            return Flow::Close(Some(format!(
                "a lane request carries {} file descriptors, not one",
                fds.len()
            )));
        }
        let memfd = fds.pop().expect("one fd");
        let pid = conn.peer().pid.unwrap_or(0);
        let over = {
            let mut by = shared
                .lanes_by_pid
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let n = by.entry(pid).or_default();
            if *n >= shared.limits.get_max_lanes() {
                true
            } else {
                *n += 1;
                false
            }
        };
        let conn = conn.clone();
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ipckit-svc-lane-{}", shared.name))
            .stack_size(READER_STACK)
            .spawn(move || {
                if over {
                    let why = format!(
                        "this client process already holds {} lanes, the server's limit; it uses its socket instead",
                        s.limits.get_max_lanes()
                    );
                    let _ = answer_lane(&conn, Some(&why));
                    conn.close(None);
                    return;
                }
                become_lane(&s, &conn, memfd);
                let mut by = s.lanes_by_pid.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = by.get_mut(&pid) {
                    *n -= 1;
                    if *n == 0 {
                        by.remove(&pid);
                    }
                }
            });
        if spawned.is_err() {
            return Flow::Close(Some("cannot start a thread for its lane".into()));
        }
        Flow::Detach
    }
}

/// Write an error frame answering call `call_id`.
fn send_error(conn: &Conn, call_id: u64, err: &RemoteError) {
    let mut out = Vec::new();
    let body = serde_json::to_vec(err).expect("a RemoteError serialises");
    wire::encode_frame(&mut out, KIND_ERROR, Encoding::Json, call_id, "", &body);
    let _ = conn.send(&out);
}

/// Answer a lane request on `fd`: accepted, or refused with `why`.
#[cfg(unix)]
fn answer_lane(conn: &Conn, refused: Option<&str>) -> bool {
    let mut out = Vec::new();
    match refused {
        None => wire::encode_frame(&mut out, KIND_LANE, Encoding::Postcard, 0, "", &[]),
        Some(why) => {
            let body = serde_json::to_vec(&RemoteError::new(CODE_SHUTTING_DOWN, why))
                .expect("a RemoteError serialises");
            wire::encode_frame(&mut out, KIND_ERROR, Encoding::Json, 0, "", &body);
        }
    }
    conn.send(&out).is_ok()
}

/// Turn `conn` into a lane over the ring object `memfd`, serve it until
/// it ends, then close it. Runs on the lane's own thread.
#[cfg(unix)]
fn become_lane(shared: &Arc<Shared>, conn: &Arc<Conn>, memfd: OwnedFd) {
    let peer = conn.peer().describe();
    let refuse = |why: &str| {
        let _ = answer_lane(conn, Some(why));
        conn.close(None);
    };
    let rings = match Rings::accept(memfd, conn.fd(), shared.max_frame, shared.wait) {
        Ok(r) => r,
        Err(why) => {
            (shared.log)(&format!(
                "refused a shared-memory lane of client {peer}: {why}"
            ));
            refuse(&format!("{why}; the client uses its socket instead"));
            return;
        }
    };
    let id = shared.next_lane.fetch_add(1, Ordering::Relaxed);
    {
        let mut lanes = shared.lanes();
        if shared.stopping.load(Ordering::Acquire) {
            drop(lanes);
            refuse("the server is shutting down");
            return;
        }
        lanes.insert(id, rings.chan.clone());
    }
    let closed = if answer_lane(conn, None) {
        lane_loop(shared, rings)
    } else {
        None
    };
    shared.lanes().remove(&id);
    conn.close(None);
    // Logged once the lane is gone (its object closed with `rings`, its
    // socket closed): whoever reads the log finds no trace of it left.
    if let Some(why) = closed {
        if !shared.stopping.load(Ordering::Acquire) {
            (shared.log)(&format!(
                "closed the shared-memory lane of client {peer}: {why}"
            ));
        }
    }
}

/// Serve calls on a lane: each one is received from the ring, handled
/// right here (no hand-off to another thread), and answered on the ring.
/// Returns why the lane was closed when the client broke it (the caller
/// logs it), `None` when it simply ended.
#[cfg(unix)]
fn lane_loop(shared: &Shared, rings: Rings) -> Option<String> {
    let Rings {
        chan,
        mut tx,
        mut rx,
        ..
    } = rings;
    let chan = &chan;
    let mut keys = chan.take_loan_keys()?;
    let mut buf = Vec::new();
    let mut head = Vec::with_capacity(HEADER_LEN);
    let limit = HEADER_LEN + wire::MAX_METHOD + shared.max_frame;
    // The last method called on this lane and its handler: a client that
    // calls one method again and again costs one comparison per call.
    let mut last: Option<(String, Option<Handler>)> = None;
    let close = |why: &str| Some(why.to_string());
    loop {
        // One huge call must not pin its buffer for the lane's lifetime.
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
        match rx.recv(&mut buf, limit, None) {
            Ok(Some(_)) => {}
            Ok(None) | Err(RingError::PeerGone | RingError::Interrupted | RingError::Timeout) => {
                return None
            }
            Err(e @ RingError::Corrupt(_)) => return close(&e.to_string()),
        }
        let f = match wire::parse_frame(&buf, &[KIND_CALL, KIND_LOAN_CALL], shared.max_frame) {
            Ok(f) => f,
            Err(e) => return close(&e.to_string()),
        };
        head.clear();
        if shared.stopping.load(Ordering::Acquire) {
            let body = serde_json::to_vec(&RemoteError::new(
                CODE_SHUTTING_DOWN,
                "the server is shutting down and took no new call; call another server",
            ))
            .expect("a RemoteError serialises");
            wire::encode_head(
                &mut head,
                KIND_ERROR,
                Encoding::Json,
                f.call_id,
                "",
                body.len() as u64,
            );
            // Then close the lane: it takes no more calls. (Ending here
            // also covers a lane whose thread never parks because calls
            // keep arriving, so it would not see `Chan::interrupt`.)
            let _ = tx.send(0, &[&head, &body]);
            let _ = tx.wait_drained(Some(Instant::now() + Duration::from_secs(1)));
            return None;
        }
        shared.calls.fetch_add(1, Ordering::Relaxed);
        shared.call_started();
        if last.as_ref().is_none_or(|(m, _)| m != f.method) {
            last = Some((f.method.to_string(), shared.methods.get(f.method).cloned()));
        }
        let handler = last.as_ref().and_then(|(_, h)| h.as_ref());
        let result = if f.kind == KIND_LOAN_CALL {
            let range = wire::parse_loan_range(f.body)
                .ok_or_else(|| "a loan call whose body is not 16 bytes".to_string())
                .and_then(|(o, l)| chan.check_loan(o, l).map_err(|e| e.to_string()));
            let (off, len) = match range {
                Ok(r) => r,
                Err(why) => {
                    shared.call_done();
                    return close(&why);
                }
            };
            let (req, place) = super::lane::server_segments(chan, &mut keys, off, len);
            execute_on(shared, f.method, handler, f.encoding, req, Some(place))
        } else {
            // The result is encoded straight into segment 1; a small one
            // is then copied into the ring record below.
            let place = chan.loan_mut(&mut keys[1], 0, chan.loan_cap());
            execute_on(shared, f.method, handler, f.encoding, f.body, Some(place))
        };
        let range;
        let sent = match &result {
            // A small result of a plain call goes back inside the record.
            Ok(Done::InPlace(n)) if f.kind == KIND_CALL && *n <= super::lane::INLINE_MAX => {
                wire::encode_head(&mut head, KIND_REPLY, f.encoding, f.call_id, "", *n as u64);
                tx.send(0, &[&head, chan.loan(&keys[1], 0, *n)])
            }
            Ok(Done::Heap(body)) => {
                wire::encode_head(
                    &mut head,
                    KIND_REPLY,
                    f.encoding,
                    f.call_id,
                    "",
                    body.len() as u64,
                );
                tx.send(0, &[&head, body])
            }
            Ok(Done::InPlace(n)) => {
                range = wire::loan_range(0, *n as u64);
                wire::encode_head(&mut head, KIND_LOAN_REPLY, f.encoding, f.call_id, "", 16);
                tx.send(0, &[&head, &range])
            }
            Err(err) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::to_vec(err).expect("a RemoteError serialises");
                wire::encode_head(
                    &mut head,
                    KIND_ERROR,
                    Encoding::Json,
                    f.call_id,
                    "",
                    body.len() as u64,
                );
                tx.send(0, &[&head, &body])
            }
        };
        shared.call_done();
        match sent {
            Ok(()) => {}
            Err(e @ RingError::Corrupt(_)) => return close(&e.to_string()),
            Err(_) => return None,
        }
    }
}

/// Run a method (or the built-in describe) on `req`; a panic fails only
/// this call. `place`: loan segment 1, for a loan handler to write in.
fn execute(
    shared: &Shared,
    method: &str,
    enc: Encoding,
    req: &[u8],
    place: Option<&mut [u8]>,
) -> std::result::Result<Done, RemoteError> {
    execute_on(shared, method, shared.methods.get(method), enc, req, place)
}

/// [`execute`] with the method's handler already looked up (a lane keeps
/// the last one it used: no string is hashed per call).
fn execute_on(
    shared: &Shared,
    method: &str,
    handler: Option<&Handler>,
    enc: Encoding,
    req: &[u8],
    place: Option<&mut [u8]>,
) -> std::result::Result<Done, RemoteError> {
    let run = || -> std::result::Result<Done, RemoteError> {
        if method == DESCRIBE {
            return enc
                .encode(&shared.describe())
                .map(Done::Heap)
                .map_err(|e| RemoteError::new(CODE_INTERNAL, format!("cannot encode: {e}")));
        }
        match handler {
            Some(Handler::Raw(f)) => f(enc, req).map(Done::Heap),
            Some(Handler::Typed(f)) => f(enc, req, place),
            Some(Handler::Loan(f)) => {
                let mut w = match place {
                    Some(seg) => LoanWriter::shared(seg),
                    None => LoanWriter::heap(shared.max_frame),
                };
                f(req, &mut w)?;
                Ok(match w.finish() {
                    Ok(n) => Done::InPlace(n),
                    Err(v) => Done::Heap(v),
                })
            }
            #[cfg(feature = "tokio")]
            Some(Handler::Async(f, rt)) => {
                wait_on_runtime(rt, f(enc, req.to_vec()), method).map(Done::Heap)
            }
            None => Err(shared.unknown_method(method)),
        }
    };
    let result =
        catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| Err(panicked(method, &*panic)));
    match result {
        Ok(Done::Heap(body)) if body.len() > u32::MAX as usize => Err(RemoteError::new(
            CODE_INTERNAL,
            format!(
                "the result of '{method}' is {} bytes, more than a frame carries",
                body.len()
            ),
        )),
        r => r,
    }
}

/// A typed method's entry in `ipckit.describe`.
fn typed_info<Req, Resp>(method: &str, schemas: Option<(String, String)>) -> MethodInfo {
    let (request_schema, response_schema) = schemas.unzip();
    MethodInfo {
        name: method.to_string(),
        request: type_name::<Req>().to_string(),
        response: type_name::<Resp>().to_string(),
        request_schema,
        response_schema,
    }
}

/// The JSON Schemas (as JSON text) of what deserializes as `Req` and of
/// what `Resp` serializes to.
#[cfg(feature = "schema")]
fn schemas_of<Req: schemars::JsonSchema, Resp: schemars::JsonSchema>() -> (String, String) {
    use schemars::generate::SchemaSettings;
    let req = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<Req>();
    let resp = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Resp>();
    (req.as_value().to_string(), resp.as_value().to_string())
}

/// The error a handler's panic turns into.
fn panicked(method: &str, panic: &(dyn std::any::Any + Send)) -> RemoteError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    RemoteError::new(
        CODE_INTERNAL,
        format!("the handler of '{method}' panicked: {what}"),
    )
}

/// A request that did not decode as `Req`.
fn bad_request<Req>(method: &str, enc: Encoding, e: &str) -> RemoteError {
    RemoteError::new(
        CODE_BAD_REQUEST,
        format!(
            "the request to '{method}' did not decode as {} ({}): {e}",
            type_name::<Req>(),
            enc.as_str()
        ),
    )
}

/// A result that could not be encoded.
fn unencodable(method: &str, enc: Encoding, e: &str) -> RemoteError {
    RemoteError::new(
        CODE_INTERNAL,
        format!(
            "the result of '{method}' could not be encoded as {}: {e}",
            enc.as_str()
        ),
    )
}

/// An async handler's future, a panic in it turned into an error.
#[cfg(feature = "tokio")]
struct CatchUnwind {
    fut: BoxFut,
    method: String,
}

#[cfg(feature = "tokio")]
impl std::future::Future for CatchUnwind {
    type Output = std::result::Result<Vec<u8>, RemoteError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        let r = catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx)))
            .unwrap_or_else(|panic| std::task::Poll::Ready(Err(panicked(&this.method, &*panic))));
        r.map(|r| match r {
            Ok(body) if body.len() > u32::MAX as usize => Err(RemoteError::new(
                CODE_INTERNAL,
                format!(
                    "the result of '{}' is {} bytes, more than a frame carries",
                    this.method,
                    body.len()
                ),
            )),
            r => r,
        })
    }
}

/// The error of a call whose future the runtime dropped (it shut down).
#[cfg(feature = "tokio")]
fn runtime_gone(method: &str) -> RemoteError {
    RemoteError::new(
        CODE_INTERNAL,
        format!("the tokio runtime running the handler of '{method}' shut down before it finished"),
    )
}

/// Run an async handler's future on its runtime and wait for it here (a
/// lane's thread: never a runtime thread).
#[cfg(feature = "tokio")]
fn wait_on_runtime(
    rt: &tokio::runtime::Handle,
    fut: BoxFut,
    method: &str,
) -> std::result::Result<Vec<u8>, RemoteError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let fut = CatchUnwind {
        fut,
        method: method.to_string(),
    };
    drop(rt.spawn(async move {
        let _ = tx.send(fut.await);
    }));
    rx.recv().unwrap_or_else(|_| Err(runtime_gone(method)))
}

/// A socket call of an async handler, answered once: by its future, or
/// (dropped unanswered: the runtime shut down) with an error.
#[cfg(feature = "tokio")]
struct SocketCall {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    method: String,
    enc: Encoding,
    call_id: u64,
    answered: bool,
}

#[cfg(feature = "tokio")]
impl SocketCall {
    fn answer(&mut self, result: std::result::Result<Vec<u8>, RemoteError>) {
        self.answered = true;
        let out = reply_frame(&self.shared, self.enc, self.call_id, &result);
        self.conn.free_slot();
        let (s, c) = (self.shared.clone(), self.conn.clone());
        let send = move || {
            // A client that went away just loses its reply.
            let _ = c.send(&out);
            s.call_done();
            c.end();
        };
        // A big reply may not fit in the socket's buffer: write it from a
        // worker, never blocking a runtime thread.
        if result.as_ref().map_or(0, |b| b.len()) > 64 * 1024 {
            self.shared.pool.submit(Box::new(send));
        } else {
            send();
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for SocketCall {
    fn drop(&mut self) {
        if !self.answered {
            let e = runtime_gone(&self.method);
            self.answer(Err(e));
        }
    }
}

/// Start an async handler's future for a call that came on a socket; it
/// answers when it completes.
#[cfg(feature = "tokio")]
fn spawn_socket_call(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    fut: BoxFut,
    rt: &tokio::runtime::Handle,
    method: String,
    enc: Encoding,
    call_id: u64,
) {
    let fut = CatchUnwind {
        fut,
        method: method.clone(),
    };
    let mut call = SocketCall {
        shared,
        conn,
        method,
        enc,
        call_id,
        answered: false,
    };
    drop(rt.spawn(async move {
        let r = fut.await;
        call.answer(r);
    }));
}

/// The reply or error frame answering call `call_id` (counting errors).
fn reply_frame(
    shared: &Shared,
    enc: Encoding,
    call_id: u64,
    result: &std::result::Result<Vec<u8>, RemoteError>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match result {
        Ok(body) => wire::encode_frame(&mut out, KIND_REPLY, enc, call_id, "", body),
        Err(err) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            let body = serde_json::to_vec(err).expect("a RemoteError serialises");
            wire::encode_frame(&mut out, KIND_ERROR, Encoding::Json, call_id, "", &body);
        }
    }
    out
}

/// Run one call and write its reply or error frame.
fn run_call(shared: &Shared, conn: &Conn, method: &str, enc: Encoding, call_id: u64, body: &[u8]) {
    let result = execute(shared, method, enc, body, None).map(|d| match d {
        Done::Heap(v) => v,
        Done::InPlace(_) => Vec::new(),
    });
    let out = reply_frame(shared, enc, call_id, &result);
    // The slot is free before the reply goes out: a client that waits for
    // each reply never finds the connection busy.
    conn.free_slot();
    // A client that went away just loses its reply.
    let _ = conn.send(&out);
}
