//! The client side: a service found by its liveliness token, called with
//! Zenoh queries, its token watched while a call waits.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
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
    /// (Async calls) why a query that got no reply failed.
    Failed(Error),
}

/// Where a waiting call hears its [`Event`]s: a channel (blocking calls)
/// or a slot that wakes a task (async calls).
#[derive(Clone)]
enum Sink {
    Sync(mpsc::Sender<Event>),
    Async(Arc<Slot>),
}

impl Sink {
    fn send(&self, e: Event) {
        match self {
            Sink::Sync(tx) => {
                let _ = tx.send(e);
            }
            Sink::Async(slot) => slot.put(e),
        }
    }
}

/// An async call's first event, and the task to wake when it comes.
#[derive(Default)]
struct Slot {
    state: Mutex<(Option<Event>, Option<Waker>)>,
}

impl Slot {
    /// Keep `e` if nothing came before it (the first event decides, as the
    /// first a blocking call receives does), and wake the task.
    fn put(&self, e: Event) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.is_none() {
            s.0 = Some(e);
            if let Some(w) = s.1.take() {
                w.wake();
            }
        }
    }
}

/// The watched token, shared with the liveliness subscriber's callback.
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    /// The service's live tokens (one per server session; normally one).
    alive: HashSet<String>,
    /// Calls waiting now, told [`Event::Gone`] when the last token goes.
    waiting: HashMap<u64, Sink>,
    next_id: u64,
}

/// Sends [`Event::Done`] when Zenoh drops the query's reply callback.
struct DoneGuard(Sink);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.send(Event::Done);
    }
}

/// What a client and its async calls share.
struct Shared {
    fabric: Fabric,
    name: String,
    watch: Arc<Watch>,
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
    shared: Arc<Shared>,
    _subscriber: zenoh::pubsub::Subscriber<()>,
}

impl Client {
    pub(super) fn connect(fabric: Fabric, name: &str, timeout: Duration) -> Result<Client> {
        crate::name::validate_name(name)?;
        let pattern = fabric.alive_pattern("svc", name);
        let watch = Arc::new(Watch::default());
        let w = watch.clone();
        let subscriber = fabric
            .session()
            .liveliness()
            .declare_subscriber(&pattern)
            .history(true)
            .callback(move |sample| {
                let key = sample.key_expr().as_str().to_string();
                let mut s = w.state.lock().unwrap_or_else(|e| e.into_inner());
                match sample.kind() {
                    zenoh::sample::SampleKind::Put => {
                        s.alive.insert(key);
                    }
                    zenoh::sample::SampleKind::Delete => {
                        s.alive.remove(&key);
                        if s.alive.is_empty() {
                            for sink in s.waiting.values() {
                                sink.send(Event::Gone);
                            }
                        }
                    }
                }
                w.changed.notify_all();
            })
            .wait()
            .map_err(|e| zerr("cannot watch the service's liveliness token", e).with_name(name))?;
        let shared = Arc::new(Shared {
            fabric,
            name: name.to_string(),
            watch,
        });
        if !shared.wait_alive(timeout) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no service of this name on the fabric (namespace '{}') within {timeout:?}; start its server, or check the namespace and the connect/listen endpoints",
                    shared.fabric.namespace()
                ),
            )
            .with_name(name));
        }
        Ok(Client {
            shared,
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
        &self.shared.name
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
        self.shared.is_alive()
    }

    /// Wait up to `timeout` for the server's liveliness token to be there
    /// (at once if it is): after the server restarted, or a broken link
    /// came back and the sessions met again. Whether it is there.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-wait-alive").open().unwrap();
    /// let first = fabric.server("s").bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// drop(first);
    /// assert!(!c.wait_alive(Duration::ZERO));
    /// let _second = fabric.server("s").bind().unwrap();
    /// assert!(c.wait_alive(Duration::from_secs(5)));
    /// ```
    pub fn wait_alive(&self, timeout: Duration) -> bool {
        self.shared.wait_alive(timeout)
    }

    /// Call `method` with `req` and wait for its result.
    ///
    /// Errors, as for a local [`service::Client`](crate::service::Client):
    /// [`ErrorKind::Remote`] (the handler failed; see
    /// [`Error::remote_code`]; an unknown method is code
    /// [`CODE_UNKNOWN_METHOD`]), [`ErrorKind::PeerGone`] (the server left
    /// or died before answering, or the link to it broke for longer than
    /// the Zenoh lease), [`ErrorKind::Decode`] (the result is not a
    /// `Resp`).
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
        self.shared.call_value(method, req, None)
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
        self.shared.call_value(method, req, Some(timeout))
    }

    /// Send a call of `method` with `req` now; the returned future
    /// resolves with its result. The future is `Send + 'static`, so it can
    /// be spawned; many can be in flight on one client. Errors as for
    /// [`call`](Self::call) (no deadline of its own: wrap it in your
    /// runtime's timeout; it still ends at once with
    /// [`ErrorKind::PeerGone`] if the server goes).
    ///
    /// It needs no runtime of ipckit's: Zenoh's reply callback wakes the
    /// task, so any executor can await it. Dropping the future abandons
    /// the call (a late reply is dropped).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-async").open().unwrap();
    /// # let _s = fabric.server("s").handler("twice", |x: i32| Ok::<_, String>(2 * x)).bind().unwrap();
    /// let c = fabric.connect_service("s", Duration::from_secs(5)).unwrap();
    /// let (a, b) = (c.call_async::<_, i32>("twice", &1), c.call_async::<_, i32>("twice", &2));
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(async { (a.await.unwrap(), b.await.unwrap()) }), (2, 4));
    /// ```
    pub fn call_async<Req: Serialize + ?Sized, Resp: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        req: &Req,
    ) -> impl Future<Output = Result<Resp>> + Send + 'static {
        let enc = Encoding::Postcard;
        let mut call = AsyncCall {
            shared: self.shared.clone(),
            method: method.to_string(),
            enc,
            slot: Arc::new(Slot::default()),
            id: None,
            failed: None,
            _resp: PhantomData,
        };
        match self.shared.encode(method, req) {
            Ok(body) => {
                let sink = Sink::Async(call.slot.clone());
                match self.shared.start(method, enc, body, NO_DEADLINE, sink) {
                    Ok(id) => call.id = Some(id),
                    Err(e) => call.failed = Some(e),
                }
            }
            Err(e) => call.failed = Some(e),
        }
        call
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
        let out = self
            .shared
            .call_bytes(method, Encoding::Json, body, timeout)?;
        self.shared.decode(method, Encoding::Json, &out)
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
}

impl Shared {
    fn is_alive(&self) -> bool {
        !self
            .watch
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alive
            .is_empty()
    }

    fn wait_alive(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.watch.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.alive.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .watch
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn encode<Req: Serialize + ?Sized>(&self, method: &str, req: &Req) -> Result<Vec<u8>> {
        Encoding::Postcard.encode(req).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the request of '{method}' cannot be encoded: {e}"),
            )
            .with_name(&self.name)
        })
    }

    fn call_value<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp> {
        let enc = Encoding::Postcard;
        let body = self.encode(method, req)?;
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
            format!(
                "the server left the fabric {when} (it stopped or died, or the link to it broke)"
            ),
        )
        .with_name(&self.name)
    }

    /// Register a waiting call and send its query; its id in the watch
    /// list (unregister it when the call ends).
    fn start(
        &self,
        method: &str,
        enc: Encoding,
        body: Vec<u8>,
        limit: Duration,
        sink: Sink,
    ) -> Result<u64> {
        let id = {
            let mut s = self.watch.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.alive.is_empty() {
                return Err(self.gone("before the call"));
            }
            s.next_id += 1;
            let id = s.next_id;
            s.waiting.insert(id, sink.clone());
            id
        };
        let guard = DoneGuard(sink);
        let sent = self
            .fabric
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
                guard.0.send(Event::Reply(r));
            })
            .wait();
        if let Err(e) = sent {
            self.unregister(id);
            return Err(zerr("cannot send the query", e).with_name(&self.name));
        }
        Ok(id)
    }

    fn unregister(&self, id: u64) {
        self.watch
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&id);
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
        let limit = timeout.unwrap_or(NO_DEADLINE);
        let deadline = Instant::now() + limit;
        let id = self.start(method, enc, body, limit, Sink::Sync(tx))?;
        let _registered = Unregister(self, id);
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Reply(Ok(bytes))) => Ok(bytes),
            Ok(Event::Reply(Err(bytes))) => Err(self.remote(method, &bytes)),
            Ok(Event::Gone) => Err(self.gone("during the call")),
            // No reply at all: no queryable of that method, or the server
            // died (its queries end before its token's withdrawal reaches
            // us). Ask the server itself which it is.
            Ok(Event::Done) => Err(self.unanswered(method)),
            Ok(Event::Failed(e)) => Err(e),
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
        match self.call_value::<_, Describe>(DESCRIBE, &(), Some(GONE_CHECK)) {
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
struct Unregister<'a>(&'a Shared, u64);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.unregister(self.1);
    }
}

/// The future of [`Client::call_async`].
struct AsyncCall<Resp> {
    shared: Arc<Shared>,
    method: String,
    enc: Encoding,
    slot: Arc<Slot>,
    /// In the watch list while the call waits.
    id: Option<u64>,
    /// Failed before it was sent.
    failed: Option<Error>,
    _resp: PhantomData<fn() -> Resp>,
}

impl<Resp: DeserializeOwned> Future for AsyncCall<Resp> {
    type Output = Result<Resp>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Resp>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Err(e));
        }
        let event = {
            let mut s = this.slot.state.lock().unwrap_or_else(|e| e.into_inner());
            match s.0.take() {
                Some(e) => e,
                None => {
                    s.1 = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        let sh = &this.shared;
        let out = match event {
            Event::Reply(Ok(bytes)) => sh.decode(&this.method, this.enc, &bytes),
            Event::Reply(Err(bytes)) => Err(sh.remote(&this.method, &bytes)),
            Event::Gone => Err(sh.gone("during the call")),
            Event::Failed(e) => Err(e),
            Event::Done => {
                // No reply: asking the server why blocks (a describe call),
                // so a thread does it and wakes the task.
                this.slot.state.lock().unwrap_or_else(|e| e.into_inner()).1 =
                    Some(cx.waker().clone());
                let (sh, slot, method) = (sh.clone(), this.slot.clone(), this.method.clone());
                let spawned = std::thread::Builder::new()
                    .name("ipckit-fabric-why".into())
                    .spawn(move || slot.put(Event::Failed(sh.unanswered(&method))));
                return match spawned {
                    Ok(_) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(Error::os(e, "cannot start a thread"))),
                };
            }
        };
        if let Some(id) = this.id.take() {
            sh.unregister(id);
        }
        Poll::Ready(out)
    }
}

impl<Resp> Drop for AsyncCall<Resp> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.unregister(id);
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fabric::Client")
            .field("name", &self.shared.name)
            .field("namespace", &self.shared.fabric.namespace())
            .field("alive", &self.is_alive())
            .finish()
    }
}
