//! The client side: a service found by its liveliness token, called with
//! Zenoh queries, its token watched while a call waits.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use zenoh::Wait as _;

use super::{zerr, Fabric};
use crate::error::{Error, ErrorKind, Result};
use crate::service::{Describe, Encoding, RemoteError, CODE_UNKNOWN_METHOD, DESCRIBE};

/// The bound Zenoh needs on a query that [`Client::call`] makes without a
/// deadline (the call still ends at once if the server goes away).
const NO_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Extra time Zenoh's own query timeout gets over the caller's, so that
/// ipckit's deadline, not Zenoh's, decides.
const ZENOH_MARGIN: Duration = Duration::from_secs(1);

/// How long a call that ended without any reply asks the server for its
/// methods (to tell an unknown method from a server that died).
const GONE_CHECK: Duration = Duration::from_secs(2);

/// What a waiting call hears.
enum Event {
    /// A reply: the result's bytes, or an error reply's bytes.
    Reply(std::result::Result<Vec<u8>, Vec<u8>>),
    /// The query is finished (all replies in, or none will come).
    Done,
    /// The server's liveliness token is gone.
    Gone,
}

/// The watched token, shared with the liveliness subscriber's callback.
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    alive: bool,
    /// Calls waiting now, told [`Event::Gone`] when the token goes.
    waiting: HashMap<u64, mpsc::Sender<Event>>,
    next_id: u64,
}

/// Sends [`Event::Done`] when Zenoh drops the query's reply callback.
struct DoneGuard(mpsc::Sender<Event>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(Event::Done);
    }
}

/// A client of a service on the fabric, made by
/// [`Fabric::connect_service`]. Calls are blocking; many threads may
/// share one client.
///
/// It watches the server's liveliness token for its whole life: a call
/// made or waiting while the token is gone fails with
/// [`ErrorKind::PeerGone`] at once. If a server of the same name comes
/// back, later calls reach it.
///
/// ```
/// # use std::time::Duration;
/// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
/// #     .listen("tcp/127.0.0.1:0").namespace("doc-client").open().unwrap();
/// let server = fabric.server("s").handler("len", |s: String| Ok::<_, String>(s.len())).bind().unwrap();
/// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
/// assert_eq!(c.call::<_, usize>("len", "four").unwrap(), 4);
/// let e = c.call::<_, usize>("nope", "x").unwrap_err();
/// assert_eq!(e.remote_code(), Some(ipckit::service::CODE_UNKNOWN_METHOD));
/// drop(server);
/// let e = c.call::<_, usize>("len", "four").unwrap_err();
/// assert_eq!(e.kind(), ipckit::ErrorKind::PeerGone);
/// ```
pub struct Client {
    fabric: Fabric,
    name: String,
    watch: Arc<Watch>,
    _subscriber: zenoh::pubsub::Subscriber<()>,
}

impl Client {
    pub(super) fn connect(fabric: Fabric, name: &str, timeout: Duration) -> Result<Client> {
        crate::name::validate_name(name)?;
        let token_key = fabric.token_key(name);
        let watch = Arc::new(Watch::default());
        let w = watch.clone();
        let subscriber = fabric
            .session()
            .liveliness()
            .declare_subscriber(&token_key)
            .history(true)
            .callback(move |sample| {
                let mut s = w.state.lock().unwrap_or_else(|e| e.into_inner());
                match sample.kind() {
                    zenoh::sample::SampleKind::Put => s.alive = true,
                    zenoh::sample::SampleKind::Delete => {
                        s.alive = false;
                        for tx in s.waiting.values() {
                            let _ = tx.send(Event::Gone);
                        }
                    }
                }
                w.changed.notify_all();
            })
            .wait()
            .map_err(|e| zerr("cannot watch the service's liveliness token", e).with_name(name))?;
        let deadline = Instant::now() + timeout;
        let mut s = watch.state.lock().unwrap_or_else(|e| e.into_inner());
        while !s.alive {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no service of this name on the fabric (namespace '{}') within {timeout:?}; start its server, or check the namespace and the connect/listen endpoints",
                        fabric.namespace()
                    ),
                )
                .with_name(name));
            }
            s = watch
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(s);
        Ok(Client {
            fabric,
            name: name.to_string(),
            watch,
            _subscriber: subscriber,
        })
    }

    /// The service's name.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-cname").open().unwrap();
    /// # let _s = fabric.server("s").bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// assert_eq!(c.name(), "s");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the server's liveliness token is there now.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-alive").open().unwrap();
    /// # let _s = fabric.server("s").bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// assert!(c.is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        self.watch
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alive
    }

    /// Call `method` with `req` and wait for its result.
    ///
    /// Errors, as for a local [`service::Client`](crate::service::Client):
    /// [`ErrorKind::Remote`] (the handler failed; see
    /// [`Error::remote_code`]; an unknown method is code
    /// [`CODE_UNKNOWN_METHOD`]), [`ErrorKind::PeerGone`] (the server left
    /// or died before answering), [`ErrorKind::Decode`] (the result is not
    /// a `Resp`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-call").open().unwrap();
    /// # let _s = fabric.server("s").handler("add", |(a, b): (i32, i32)| Ok::<_, String>(a + b)).bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// assert_eq!(c.call::<_, i32>("add", &(2, 3)).unwrap(), 5);
    /// ```
    pub fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp> {
        self.call_value(method, req, None)
    }

    /// Like [`call`](Self::call), giving up with [`ErrorKind::Timeout`]
    /// after `timeout` (a reply that arrives later is dropped).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-callt").open().unwrap();
    /// # let _s = fabric.server("s")
    /// #     .handler("nap", |ms: u64| { std::thread::sleep(Duration::from_millis(ms)); Ok::<_, String>(ms) })
    /// #     .bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// let e = c.call_timeout::<_, u64>("nap", &500, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// assert_eq!(c.call_timeout::<_, u64>("nap", &0, Duration::from_secs(5)).unwrap(), 0);
    /// ```
    pub fn call_timeout<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        self.call_value(method, req, Some(timeout))
    }

    /// Call with a JSON argument and get the JSON result (the body travels
    /// as JSON). `timeout: None` waits until the result or the server's
    /// departure.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-json").open().unwrap();
    /// # let _s = fabric.server("s").handler("add", |(a, b): (i32, i32)| Ok::<_, String>(a + b)).bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// let v = c.call_json("add", serde_json::json!([1, 2]), None).unwrap();
    /// assert_eq!(v, serde_json::json!(3));
    /// ```
    pub fn call_json(
        &self,
        method: &str,
        req: serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value> {
        let body = serde_json::to_vec(&req).expect("a JSON value serialises");
        let out = self.call_bytes(method, Encoding::Json, body, timeout)?;
        self.decode(method, Encoding::Json, &out)
    }

    /// The server's methods and counters (the built-in `ipckit.describe`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-cdesc").open().unwrap();
    /// # let _s = fabric.server("s").handler("neg", |x: i32| Ok::<_, String>(-x)).bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// let d = c.describe().unwrap();
    /// assert_eq!(d.name, "s");
    /// assert_eq!(d.methods.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["ipckit.describe", "neg"]);
    /// ```
    pub fn describe(&self) -> Result<Describe> {
        self.call(DESCRIBE, &())
    }

    fn call_value<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp> {
        let enc = Encoding::Postcard;
        let body = enc.encode(req).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the request of '{method}' cannot be encoded: {e}"),
            )
            .with_name(&self.name)
        })?;
        let out = self.call_bytes(method, enc, body, timeout)?;
        self.decode(method, enc, &out)
    }

    fn decode<T: DeserializeOwned>(&self, method: &str, enc: Encoding, b: &[u8]) -> Result<T> {
        enc.decode(b).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "the result of '{method}' is not a {}: {e}",
                    std::any::type_name::<T>()
                ),
            )
            .with_name(&self.name)
        })
    }

    fn gone(&self, when: &str) -> Error {
        Error::new(
            ErrorKind::PeerGone,
            format!("the server left the fabric {when}"),
        )
        .with_name(&self.name)
    }

    /// One query to the method's queryable; the result's bytes.
    fn call_bytes(
        &self,
        method: &str,
        enc: Encoding,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>> {
        let (tx, rx) = mpsc::channel();
        let id = {
            let mut s = self.watch.state.lock().unwrap_or_else(|e| e.into_inner());
            if !s.alive {
                return Err(self.gone("before the call"));
            }
            s.next_id += 1;
            let id = s.next_id;
            s.waiting.insert(id, tx.clone());
            id
        };
        let _registered = Unregister(&self.watch, id);
        let limit = timeout.unwrap_or(NO_DEADLINE);
        let deadline = Instant::now() + limit;
        let guard = DoneGuard(tx);
        self.fabric
            .session()
            .get(self.fabric.method_key(&self.name, method))
            .payload(body)
            .attachment(vec![enc.code()])
            .target(zenoh::query::QueryTarget::BestMatching)
            .consolidation(zenoh::query::ConsolidationMode::None)
            .timeout(limit + ZENOH_MARGIN)
            .callback(move |reply| {
                let r = match reply.result() {
                    Ok(sample) => Ok(sample.payload().to_bytes().into_owned()),
                    Err(err) => Err(err.payload().to_bytes().into_owned()),
                };
                let _ = guard.0.send(Event::Reply(r));
            })
            .wait()
            .map_err(|e| zerr("cannot send the query", e).with_name(&self.name))?;
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Reply(Ok(bytes))) => Ok(bytes),
            Ok(Event::Reply(Err(bytes))) => Err(self.remote(method, &bytes)),
            Ok(Event::Gone) => Err(self.gone("during the call")),
            // No reply at all: no queryable of that method, or the server
            // died (its queries end before its token's withdrawal reaches
            // us). Ask the server itself which it is.
            Ok(Event::Done) => Err(self.unanswered(method)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no result of '{method}' within {limit:?}"),
            )
            .with_name(&self.name)),
        }
    }

    /// Why a call to `method` ended without any reply: the server is
    /// there but has no such method (`Remote`, [`CODE_UNKNOWN_METHOD`]),
    /// else it is gone (`PeerGone`).
    fn unanswered(&self, method: &str) -> Error {
        if method == DESCRIBE {
            return self.gone("during the call");
        }
        let unknown = || {
            Error::remote(CODE_UNKNOWN_METHOD, format!("unknown method '{method}'"))
                .with_name(&self.name)
        };
        match self.call_timeout::<_, Describe>(DESCRIBE, &(), GONE_CHECK) {
            Ok(d) if !d.methods.iter().any(|m| m.name == method) => unknown(),
            Ok(_) => self.gone("during the call (a new server of that name is there now)"),
            // Busy, but there: the likelier cause is the method.
            Err(e) if e.kind() == ErrorKind::Timeout && self.is_alive() => unknown(),
            Err(e) if e.kind() == ErrorKind::Timeout => self.gone("during the call"),
            Err(e) => e,
        }
    }

    /// A Zenoh error reply as an ipckit error.
    fn remote(&self, method: &str, bytes: &[u8]) -> Error {
        match serde_json::from_slice::<RemoteError>(bytes) {
            Ok(e) => Error::remote(e.code, e.message).with_name(&self.name),
            Err(_) => Error::new(
                ErrorKind::Remote,
                format!(
                    "the call of '{method}' failed on the fabric: {}",
                    String::from_utf8_lossy(bytes)
                ),
            )
            .with_name(&self.name),
        }
    }
}

/// Removes a call from the watch list when it ends.
struct Unregister<'a>(&'a Watch, u64);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&self.1);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fabric::Client")
            .field("name", &self.name)
            .field("namespace", &self.fabric.namespace())
            .field("alive", &self.is_alive())
            .finish()
    }
}
