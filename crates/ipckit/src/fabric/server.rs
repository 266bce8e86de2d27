//! The server side: methods published as Zenoh queryables, presence as a
//! liveliness token.

use std::any::type_name;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zenoh::Wait as _;

use super::{validate_chunk, zerr, Fabric};
use crate::error::{Error, ErrorKind, Result};
use crate::service::{
    Describe, Encoding, RemoteError, CODE_BAD_REQUEST, CODE_INTERNAL, CODE_SHUTTING_DOWN, DESCRIBE,
};

/// A method's body: the call's encoding and request bytes in, the
/// result's bytes (same encoding) or a remote error out.
type RawFn = dyn Fn(Encoding, &[u8]) -> std::result::Result<Vec<u8>, RemoteError> + Send + Sync;

/// One published method.
struct Method {
    /// Request and response type names, for `ipckit.describe`.
    request: String,
    response: String,
    /// Their JSON Schemas (as text), when the method has them (a local
    /// service's, published with `service::Server::publish`).
    schemas: Option<(String, String)>,
    f: Arc<RawFn>,
}

/// How long [`ServerBuilder::bind`] asks the fabric whether the name is
/// taken.
const TAKEN_CHECK: Duration = Duration::from_secs(1);

/// A server to publish on a [`Fabric`], made by [`Fabric::server`]: add
/// methods, then [`bind`](Self::bind).
///
/// Handlers have the shapes of
/// [`service::ServerBuilder`](crate::service::ServerBuilder)'s: a typed
/// `Fn(Req) -> Result<Resp, E>` ([`handler`](Self::handler)) or raw bytes
/// ([`raw_handler`](Self::raw_handler)). They run on worker threads, several
/// at once.
///
/// ```
/// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
/// #     .listen("tcp/127.0.0.1:0").namespace("doc-sb").open().unwrap();
/// use ipckit::service::RemoteError;
/// let server = fabric.server("calc")
///     .handler("div", |(a, b): (i64, i64)| a.checked_div(b).ok_or(RemoteError::new(2, "division by zero")))
///     .max_workers(2)
///     .bind()
///     .unwrap();
/// assert_eq!(server.describe().methods.len(), 2); // div and ipckit.describe
/// ```
#[must_use = "a builder does nothing until `bind`"]
pub struct ServerBuilder {
    fabric: Fabric,
    name: String,
    methods: BTreeMap<String, Method>,
    workers: usize,
    /// The first bad method name, reported by `bind`.
    problem: Option<Error>,
}

impl ServerBuilder {
    pub(super) fn new(fabric: Fabric, name: &str) -> Self {
        ServerBuilder {
            fabric,
            name: name.to_string(),
            methods: BTreeMap::new(),
            workers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
            problem: None,
        }
    }

    /// Offer a local service's method as it describes itself (`info`),
    /// run by `f` (for `service::Server::publish`).
    pub(crate) fn method_info(mut self, info: &crate::service::MethodInfo, f: Arc<RawFn>) -> Self {
        let schemas = info
            .request_schema
            .clone()
            .zip(info.response_schema.clone());
        self.add(&info.name, info.request.clone(), info.response.clone(), f);
        if let Some(m) = self.methods.get_mut(&info.name) {
            m.schemas = schemas;
        }
        self
    }

    fn add(&mut self, method: &str, request: String, response: String, f: Arc<RawFn>) {
        let why = if let Err(e) = validate_chunk(method, "method name") {
            Some(e.message().to_string())
        } else if method.starts_with("ipckit.") {
            Some("names starting with 'ipckit.' are built in".to_string())
        } else if self.methods.contains_key(method) {
            Some("it is registered twice".to_string())
        } else {
            None
        };
        match why {
            Some(why) => {
                self.problem.get_or_insert_with(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("method '{method}': {why}; rename it"),
                    )
                    .with_name(&self.name)
                });
            }
            None => {
                self.methods.insert(
                    method.to_string(),
                    Method {
                        request,
                        response,
                        schemas: None,
                        f,
                    },
                );
            }
        }
    }

    /// Offer `method`: requests decode as `Req`, the handler's `Ok` goes
    /// back as the result and its `Err` as a remote error (see
    /// [`RemoteError`]); a panic fails only that call
    /// ([`CODE_INTERNAL`]). As
    /// [`service::ServerBuilder::handler`](crate::service::ServerBuilder::handler).
    ///
    /// Method names are one Zenoh key chunk: 1–200 characters of
    /// `[A-Za-z0-9._-]`, not starting with `ipckit.`; a bad or duplicate one
    /// makes [`bind`](Self::bind) fail.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-h").open().unwrap();
    /// let b = fabric.server("s").handler("len", |s: String| Ok::<_, String>(s.len()));
    /// ```
    pub fn handler<Req, Resp, E>(
        mut self,
        method: &str,
        f: impl Fn(Req) -> std::result::Result<Resp, E> + Send + Sync + 'static,
    ) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
        E: Into<RemoteError>,
    {
        let m = method.to_string();
        let raw = move |enc: Encoding, body: &[u8]| {
            let req: Req = enc.decode(body).map_err(|e| {
                RemoteError::new(
                    CODE_BAD_REQUEST,
                    format!(
                        "the {} request of '{m}' is not a {}: {e}",
                        enc.as_str(),
                        type_name::<Req>()
                    ),
                )
            })?;
            let resp = f(req).map_err(Into::into)?;
            enc.encode(&resp).map_err(|e| {
                RemoteError::new(
                    CODE_INTERNAL,
                    format!("the result of '{m}' cannot be encoded: {e}"),
                )
            })
        };
        self.add(
            method,
            type_name::<Req>().to_string(),
            type_name::<Resp>().to_string(),
            Arc::new(raw),
        );
        self
    }

    /// Offer `method` on raw bodies: the handler gets the call's encoding
    /// and body and returns the result's bytes in the same encoding. As
    /// [`service::ServerBuilder::raw_handler`](crate::service::ServerBuilder::raw_handler).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-rh").open().unwrap();
    /// use ipckit::service::RemoteError;
    /// let b = fabric.server("e").raw_handler("echo", |_enc, body| Ok::<_, RemoteError>(body.to_vec()));
    /// ```
    pub fn raw_handler<E: Into<RemoteError>>(
        mut self,
        method: &str,
        f: impl Fn(Encoding, &[u8]) -> std::result::Result<Vec<u8>, E> + Send + Sync + 'static,
    ) -> Self {
        let raw = move |enc: Encoding, body: &[u8]| f(enc, body).map_err(Into::into);
        self.add(method, "bytes".into(), "bytes".into(), Arc::new(raw));
        self
    }

    /// How many handlers may run at once (worker threads). Default: the
    /// number of CPUs, between 2 and 8.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-mw").open().unwrap();
    /// let b = fabric.server("s").max_workers(4);
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Publish the server: declare one queryable per method (and
    /// `ipckit.describe`), start the workers, then declare the liveliness
    /// token that makes the name visible (so a client that sees it finds
    /// every method ready).
    ///
    /// Errors: [`ErrorKind::InvalidName`], [`ErrorKind::InvalidInput`] (a bad
    /// method name), [`ErrorKind::AlreadyExists`] (a live server of that
    /// name is already on the fabric in this namespace, as far as this
    /// session can see now), [`ErrorKind::Io`] (Zenoh refused a
    /// declaration).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-bind").open().unwrap();
    /// let _a = fabric.server("one").bind().unwrap();
    /// let e = fabric.server("one").bind().unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::AlreadyExists);
    /// ```
    pub fn bind(self) -> Result<Server> {
        crate::name::validate_name(&self.name)?;
        if let Some(e) = self.problem {
            return Err(e);
        }
        let fabric = self.fabric;
        let name = self.name;
        let session = fabric.session();
        let token_key = fabric.token_key(&name);
        if token_alive(&fabric, &fabric.alive_pattern("svc", &name), TAKEN_CHECK)? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "a server of this name is already live on the fabric (namespace '{}'); stop it or choose another name",
                    fabric.namespace()
                ),
            )
            .with_name(&name));
        }

        let mut methods = self.methods;
        let describe_f: Arc<RawFn> = Arc::new(|_, _| Ok(Vec::new())); // never called
        methods.insert(
            DESCRIBE.to_string(),
            Method {
                request: "()".into(),
                response: type_name::<Describe>().to_string(),
                schemas: None,
                f: describe_f,
            },
        );
        let shared = Arc::new(Shared {
            name: name.clone(),
            methods,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        });

        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut queryables = Vec::new();
        for method in shared.methods.keys() {
            let tx = Mutex::new(tx.clone());
            let m = method.clone();
            let q = session
                .declare_queryable(fabric.method_key(&name, method))
                .complete(true)
                .callback(move |query| {
                    let _ = tx
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .send(Job::Call(m.clone(), query));
                })
                .wait()
                .map_err(|e| zerr("cannot declare the method's queryable", e).with_name(&name))?;
            queryables.push(q);
        }
        let workers = (0..self.workers)
            .map(|_| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name("ipckit-fabric".into())
                    .spawn(move || worker(&shared, &rx))
                    .map_err(|e| Error::os(e, "cannot start a worker thread"))
            })
            .collect::<Result<Vec<_>>>()?;
        let token = session
            .liveliness()
            .declare_token(token_key)
            .wait()
            .map_err(|e| zerr("cannot declare the liveliness token", e).with_name(&name))?;
        Ok(Server {
            fabric,
            shared,
            state: Mutex::new(Some(Running {
                token,
                queryables,
                tx,
                workers,
            })),
            stopped: Condvar::new(),
        })
    }
}

/// Whether a liveliness token `key` is live, asking the fabric for at most
/// `limit`.
pub(super) fn token_alive(fabric: &Fabric, key: &str, limit: Duration) -> Result<bool> {
    let replies = fabric
        .session()
        .liveliness()
        .get(key)
        .timeout(limit)
        .wait()
        .map_err(|e| zerr("cannot query liveliness", e))?;
    let deadline = std::time::Instant::now() + limit;
    while let Ok(Some(r)) = replies.recv_deadline(deadline) {
        if r.result().is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What workers and the describe method share.
struct Shared {
    name: String,
    methods: BTreeMap<String, Method>,
    calls: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
}

impl Shared {
    fn describe(&self) -> Describe {
        // Built through serde so that fields `Describe` and `MethodInfo`
        // gain later (all `#[serde(default)]`) need no change here.
        let methods: Vec<_> = self
            .methods
            .iter()
            .map(|(name, m)| {
                let mut v =
                    serde_json::json!({"name": name, "request": m.request, "response": m.response});
                if let Some((req, resp)) = &m.schemas {
                    // Embedded as JSON values, as a JSON describe carries them.
                    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
                    v["request_schema"] = parse(req).into();
                    v["response_schema"] = parse(resp).into();
                }
                v
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": self.name,
            "pid": std::process::id(),
            "methods": methods,
            "calls": self.calls.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "connections": 0,
        }))
        .expect("a Describe built from its own fields")
    }
}

enum Job {
    Call(String, zenoh::query::Query),
    Stop,
}

fn worker(shared: &Shared, rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            Ok(Job::Call(method, query)) => serve(shared, &method, &query),
            Ok(Job::Stop) | Err(_) => return,
        }
    }
}

/// Answer one query: run the method, reply with its bytes or with a
/// remote error (JSON `{"code":…,"message":…}` in a Zenoh error reply).
fn serve(shared: &Shared, method: &str, query: &zenoh::query::Query) {
    shared.calls.fetch_add(1, Ordering::Relaxed);
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let enc = query
        .attachment()
        .and_then(|a| a.to_bytes().first().copied())
        .map_or(Some(Encoding::Postcard), Encoding::from_code);
    let body = query.payload().map(|p| p.to_bytes()).unwrap_or_default();
    let result = match (enc, shared.methods.get(method)) {
        (None, _) => Err(RemoteError::new(
            CODE_BAD_REQUEST,
            "unknown body encoding (attachment byte); use 0 (postcard) or 1 (JSON)",
        )),
        (Some(enc), _) if method == DESCRIBE => enc
            .encode(&shared.describe())
            .map_err(|e| RemoteError::new(CODE_INTERNAL, e)),
        (Some(enc), Some(m)) => catch_unwind(AssertUnwindSafe(|| (m.f)(enc, &body)))
            .unwrap_or_else(|_| {
                Err(RemoteError::new(
                    CODE_INTERNAL,
                    format!("the handler of '{method}' panicked"),
                ))
            }),
        (Some(_), None) => Err(RemoteError::new(CODE_SHUTTING_DOWN, "the method is gone")),
    };
    let sent = match result {
        Ok(bytes) => query.reply(query.key_expr().clone(), bytes).wait(),
        Err(e) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            let payload = serde_json::to_vec(&e).expect("a RemoteError serialises");
            query.reply_err(payload).wait()
        }
    };
    // A failed reply means the caller's session is gone; nothing to tell.
    drop(sent);
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// Everything that stops with the server.
struct Running {
    token: zenoh::liveliness::LivelinessToken,
    queryables: Vec<zenoh::query::Queryable<()>>,
    tx: mpsc::Sender<Job>,
    workers: Vec<JoinHandle<()>>,
}

/// A service published on a [`Fabric`]: clients anywhere on the fabric find
/// it by name ([`Fabric::connect_service`]). Made by
/// [`ServerBuilder::bind`]; stops when dropped or
/// [`shutdown`](Self::shutdown).
///
/// ```
/// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
/// #     .listen("tcp/127.0.0.1:0").namespace("doc-server2").open().unwrap();
/// let server = fabric.server("s").handler("neg", |x: i32| Ok::<_, String>(-x)).bind().unwrap();
/// assert!(server.shutdown());
/// assert!(!server.shutdown());
/// ```
pub struct Server {
    fabric: Fabric,
    shared: Arc<Shared>,
    state: Mutex<Option<Running>>,
    stopped: Condvar,
}

impl Server {
    /// The service's name.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-name").open().unwrap();
    /// assert_eq!(fabric.server("x").bind().unwrap().name(), "x");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The fabric the server is published on.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-fab").open().unwrap();
    /// let s = fabric.server("x").bind().unwrap();
    /// assert_eq!(s.fabric().id(), fabric.id());
    /// ```
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// The methods and counters, as `ipckit.describe` answers them
    /// (`connections` and `lanes` are always 0 on the fabric).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-desc").open().unwrap();
    /// let s = fabric.server("x").bind().unwrap();
    /// assert_eq!(s.describe().methods[0].name, "ipckit.describe");
    /// ```
    pub fn describe(&self) -> Describe {
        self.shared.describe()
    }

    /// Block until the server is shut down (by another thread).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-wait").open().unwrap();
    /// let s = std::sync::Arc::new(fabric.server("x").bind().unwrap());
    /// let s2 = s.clone();
    /// let t = std::thread::spawn(move || s2.shutdown());
    /// s.wait();
    /// assert!(t.join().unwrap());
    /// ```
    pub fn wait(&self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while g.is_some() {
            g = self.stopped.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Leave the fabric: withdraw the liveliness token (callers waiting
    /// on this server get `PeerGone`), undeclare the methods, finish the
    /// calls already taken and stop the workers. Whether this call did it
    /// (false if it was already done).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-shut").open().unwrap();
    /// let s = fabric.server("x").bind().unwrap();
    /// assert!(s.shutdown());
    /// ```
    pub fn shutdown(&self) -> bool {
        let running = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(r) = running else {
            return false;
        };
        let _ = r.token.undeclare().wait();
        for q in r.queryables {
            let _ = q.undeclare().wait();
        }
        for _ in &r.workers {
            let _ = r.tx.send(Job::Stop);
        }
        for w in r.workers {
            let _ = w.join();
        }
        self.stopped.notify_all();
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fabric::Server")
            .field("name", &self.shared.name)
            .field("namespace", &self.fabric.namespace())
            .finish()
    }
}
