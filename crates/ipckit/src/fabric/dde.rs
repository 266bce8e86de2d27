//! DDE over the fabric: a [`DdeServer`](crate::dde::DdeServer) published
//! with [`DdeServerOptions::fabric`](crate::dde::DdeServerOptions::fabric),
//! reached by a [`Conversation`](crate::dde::Conversation) on a
//! `zenoh://SERVICE` name.
//!
//! Keys (`P` = `ipckit/<namespace>`, `S`, `T`, `I` = service, topic and item
//! names, each one key chunk: bytes outside `[A-Za-z0-9._-]` written
//! `%XX`, so `~` never starts an encoded name):
//!
//! - `P/alive/dde/<service>/.<zid>`: the server's liveliness token (the
//!   service name as is; `<zid>` its session's Zenoh id).
//! - `P/dde/S/T/I`: query = request (cold link); put by the server on each
//!   change = hot link data.
//! - `P/dde/S/~notice/T/I`: put by the server on each change, no data =
//!   warm link notice.
//! - `P/dde/S/~advise/T/I`: query = check before subscribing (the item
//!   exists in that format).
//! - `P/dde/S/~poke/T/I`: query with the data = poke.
//! - `P/dde/S/~execute/T`: query with the command = execute.
//! - `P/dde/S/~topics`: query = the topics, a JSON list of strings.
//!
//! A query's attachment is the clipboard format (`u32` LE) where one
//! applies. A successful reply carries the data (and the format as a `u32`
//! LE attachment); a refusal is an error reply with JSON
//! `{"code": <DDE wire error code>, "message": "..."}`. Puts carry a 12-byte
//! attachment: format (`u32` LE) and the item's change number (`u64` LE;
//! a gap is [`Update::skipped`](crate::dde::Update::skipped)).

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use zenoh::Wait as _;

use super::broadcast::{chunk, unchunk};
use super::{server::token_alive, zerr, Fabric};
use crate::clipboard::Format;
use crate::dde::wire;
use crate::dde::{DdeServerHandle, Link};
use crate::error::{Error, ErrorKind, Result};

/// How long publishing asks the fabric whether the service is taken.
const TAKEN_CHECK: Duration = Duration::from_secs(1);
/// Extra time given to Zenoh's own query timeout beyond ours.
const ZENOH_MARGIN: Duration = Duration::from_secs(1);

/// `P/dde/S`.
fn base(fabric: &Fabric, service: &str) -> String {
    format!("{}/dde/{}", fabric.key_prefix(), chunk(service))
}

fn format_of(attachment: Option<&zenoh::bytes::ZBytes>) -> Option<u32> {
    let b = attachment?.to_bytes();
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

// ------------------------------------------------------------------ server

/// A server's presence on the fabric; dropping it withdraws the token
/// first, then the queryable.
pub(crate) struct Publication {
    _token: zenoh::liveliness::LivelinessToken,
    _queryable: zenoh::query::Queryable<()>,
}

impl std::fmt::Debug for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publication")
    }
}

/// Publish `server` on `fabric`: its queryable, the hook that puts each
/// new item value, then its liveliness token.
pub(crate) fn publish(fabric: &Fabric, server: &DdeServerHandle) -> Result<Publication> {
    let service = server.service().to_string();
    if token_alive(fabric, &fabric.alive_pattern("dde", &service), TAKEN_CHECK)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "a DDE server of this name is already live on the fabric (namespace '{}'); stop it or choose another name",
                fabric.namespace()
            ),
        )
        .with_name(&service));
    }
    let base = base(fabric, &service);
    let session = fabric.session();
    let queryable = {
        let server = server.clone();
        let prefix = format!("{base}/");
        session
            .declare_queryable(format!("{base}/**"))
            .callback(move |query| {
                let server2 = server.clone();
                let prefix = prefix.clone();
                // Handlers may block: never on Zenoh's threads.
                server.run(Box::new(move || answer(&server2, &prefix, &query)));
            })
            .wait()
            .map_err(|e| zerr("cannot declare the DDE queryable", e).with_name(&service))?
    };
    // Change numbers per (topic, item); the hook runs under the server's
    // state lock, so they go out in order.
    let seqs: Mutex<HashMap<(String, String), u64>> = Mutex::new(HashMap::new());
    let put_session = session.clone();
    server.on_set(Box::new(move |topic, item, format, data| {
        let seq = {
            let mut m = seqs.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry((topic.to_string(), item.to_string())).or_insert(0);
            *n += 1;
            *n
        };
        let mut att = Vec::with_capacity(12);
        att.extend_from_slice(&format.id().to_le_bytes());
        att.extend_from_slice(&seq.to_le_bytes());
        let (t, i) = (chunk(topic), chunk(item));
        // A put with no subscriber does not leave this process. Dropped
        // under congestion rather than holding up `set_item`; the change
        // number tells the client how many it missed.
        let _ = put_session
            .put(format!("{base}/{t}/{i}"), data.to_vec())
            .attachment(att.clone())
            .congestion_control(zenoh::qos::CongestionControl::Drop)
            .wait();
        let _ = put_session
            .put(format!("{base}/~notice/{t}/{i}"), Vec::<u8>::new())
            .attachment(att)
            .congestion_control(zenoh::qos::CongestionControl::Drop)
            .wait();
    }));
    let token = session
        .liveliness()
        .declare_token(fabric.alive_key("dde", &service))
        .wait()
        .map_err(|e| zerr("cannot declare the liveliness token", e).with_name(&service))?;
    Ok(Publication {
        _token: token,
        _queryable: queryable,
    })
}

/// Answer one query on `P/dde/S/**`.
fn answer(server: &DdeServerHandle, prefix: &str, query: &zenoh::query::Query) {
    let key = query.key_expr().as_str();
    let rest = key.strip_prefix(prefix).unwrap_or("");
    let parts: Vec<&str> = rest.split('/').collect();
    let names = |cs: &[&str]| cs.iter().map(|c| unchunk(c)).collect::<Option<Vec<_>>>();
    let format = format_of(query.attachment()).map(Format::from_id);
    let data = || {
        query
            .payload()
            .map(|p| p.to_bytes().into_owned())
            .unwrap_or_default()
    };
    let invalid = |why: &str| Err((wire::ERR_INVALID, why.to_string()));
    let no_format = "the query has no format attachment (u32 LE)";
    let result: std::result::Result<(Vec<u8>, u32), (u8, String)> = match (parts.as_slice(), format)
    {
        (["~topics"], _) => Ok((
            serde_json::to_vec(&server.topic_list()).expect("strings serialise"),
            0,
        )),
        (["~execute", t], _) => match (names(&[t]), String::from_utf8(data())) {
            (Some(n), Ok(cmd)) => server.fabric_execute(&n[0], &cmd).map(|()| (Vec::new(), 0)),
            (None, _) => invalid("malformed topic in the key"),
            (_, Err(_)) => invalid("the command is not UTF-8 text"),
        },
        (["~poke", t, i], Some(f)) => match names(&[t, i]) {
            Some(n) => server
                .fabric_poke(&n[0], &n[1], f, data())
                .map(|()| (Vec::new(), 0)),
            None => invalid("malformed topic or item in the key"),
        },
        (["~advise", t, i], Some(f)) => match names(&[t, i]) {
            Some(n) => server
                .fabric_request(&n[0], &n[1], f, false)
                .map(|d| (d, f.id())),
            None => invalid("malformed topic or item in the key"),
        },
        ([t, i], Some(f)) if !t.starts_with('~') => match names(&[t, i]) {
            Some(n) => server
                .fabric_request(&n[0], &n[1], f, true)
                .map(|d| (d, f.id())),
            None => invalid("malformed topic or item in the key"),
        },
        ([_, _] | ["~poke" | "~advise", _, _], None) => invalid(no_format),
        _ => invalid("unknown DDE key on the fabric; see PROTOCOL.md, DDE over the fabric"),
    };
    let sent = match result {
        Ok((bytes, format)) => query
            .reply(query.key_expr().clone(), bytes)
            .attachment(format.to_le_bytes().to_vec())
            .wait(),
        Err((code, message)) => {
            let body = serde_json::json!({"code": code, "message": message});
            query.reply_err(body.to_string().into_bytes()).wait()
        }
    };
    // A failed reply means the client's session is gone; nothing to tell.
    drop(sent);
}

// ------------------------------------------------------------------ client

/// One DDE operation over the fabric.
pub(crate) enum Op<'a> {
    Request(&'a str, Format),
    AdviseCheck(&'a str, Format),
    Poke(&'a str, Format, &'a [u8]),
    Execute(&'a str),
    Topics,
}

/// What a call gives: the server's answer (`Ok((format, data))` or its
/// refusal `Err((wire code, text))`), or an ipckit error for the call
/// itself (`PeerGone`, `Timeout`, `Io`).
pub(crate) type Answer = std::result::Result<(u32, Vec<u8>), (u8, String)>;

enum Event {
    Reply(std::result::Result<(u32, Vec<u8>), Vec<u8>>),
    Done,
    Gone,
}

/// Sends [`Event::Done`] when Zenoh drops the query's reply callback.
struct DoneGuard(mpsc::Sender<Event>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(Event::Done);
    }
}

#[derive(Default)]
struct WatchState {
    alive: bool,
    /// The call waiting now (one at a time per conversation).
    waiting: Option<mpsc::Sender<Event>>,
}

#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
    /// Told once when the server's token goes.
    on_gone: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// Called with each update of an advise link: the data (hot) or `None`
/// (warm), and how many changes were missed just before it.
pub(crate) type Deliver = Box<dyn Fn(Option<Vec<u8>>, u64) + Send + Sync>;

/// A conversation's link to a DDE server on the fabric.
pub(crate) struct DdeLink {
    fabric: Fabric,
    service: String,
    topic: String,
    base: String,
    watch: Arc<Watch>,
    token_sub: Mutex<Option<zenoh::pubsub::Subscriber<()>>>,
    subs: Mutex<HashMap<(String, u32), zenoh::pubsub::Subscriber<()>>>,
}

impl DdeLink {
    /// Wait up to `timeout` for the server's token, then check that it
    /// serves `topic`.
    pub(crate) fn connect(
        fabric: &Fabric,
        service: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<DdeLink> {
        let link = Self::find(fabric, service, topic, timeout)?;
        let topics = link.topics(timeout)?;
        if !topics.iter().any(|t| t == topic) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the service has no topic '{topic}'; its topics: {}",
                    if topics.is_empty() {
                        "none".to_string()
                    } else {
                        topics.join(", ")
                    }
                ),
            )
            .with_name(service));
        }
        Ok(link)
    }

    /// Wait up to `timeout` for the server's token.
    pub(crate) fn find(
        fabric: &Fabric,
        service: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<DdeLink> {
        crate::name::validate_name(service)?;
        let watch = Arc::new(Watch::default());
        let w = watch.clone();
        let sub = fabric
            .session()
            .liveliness()
            .declare_subscriber(fabric.alive_pattern("dde", service))
            .history(true)
            .callback(move |sample| {
                let mut s = w.state.lock().unwrap_or_else(|e| e.into_inner());
                match sample.kind() {
                    zenoh::sample::SampleKind::Put => s.alive = true,
                    zenoh::sample::SampleKind::Delete => {
                        let was = std::mem::take(&mut s.alive);
                        if let Some(tx) = &s.waiting {
                            let _ = tx.send(Event::Gone);
                        }
                        drop(s);
                        if was {
                            if let Some(f) = w.on_gone.get() {
                                f();
                            }
                        }
                        w.changed.notify_all();
                        return;
                    }
                }
                w.changed.notify_all();
            })
            .wait()
            .map_err(|e| {
                zerr("cannot watch the DDE server's liveliness token", e).with_name(service)
            })?;
        let deadline = Instant::now() + timeout;
        let mut s = watch.state.lock().unwrap_or_else(|e| e.into_inner());
        while !s.alive {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no DDE server of this name on the fabric (namespace '{}') within {timeout:?}; start it with DdeServerOptions::fabric, or check the namespace and the connect/listen endpoints",
                        fabric.namespace()
                    ),
                )
                .with_name(service));
            }
            s = watch
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(s);
        Ok(DdeLink {
            fabric: fabric.clone(),
            service: service.to_string(),
            topic: topic.to_string(),
            base: base(fabric, service),
            watch,
            token_sub: Mutex::new(Some(sub)),
            subs: Mutex::new(HashMap::new()),
        })
    }

    /// Call `f` once when the server leaves (at once if it already has).
    pub(crate) fn on_gone(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.watch.on_gone.set(f);
        let alive = self
            .watch
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alive;
        if !alive {
            if let Some(f) = self.watch.on_gone.get() {
                f();
            }
        }
    }

    /// The topics the server serves, sorted.
    pub(crate) fn topics(&self, timeout: Duration) -> Result<Vec<String>> {
        match self.call(Op::Topics, timeout)? {
            Ok((_, body)) => serde_json::from_slice(&body).map_err(|e| {
                Error::new(
                    ErrorKind::Decode,
                    format!("the server sent a malformed topic list: {e}"),
                )
                .with_name(&self.service)
            }),
            Err((_, text)) => Err(Error::new(ErrorKind::Remote, text).with_name(&self.service)),
        }
    }

    fn gone(&self) -> Error {
        Error::new(
            ErrorKind::PeerGone,
            "the DDE server left the fabric (it died or was dropped); reconnect when it is back",
        )
        .with_name(&self.service)
    }

    /// One query; the server's answer.
    pub(crate) fn call(&self, op: Op<'_>, timeout: Duration) -> Result<Answer> {
        let t = chunk(&self.topic);
        let (key, format, body) = match op {
            Op::Request(i, f) => (format!("{}/{t}/{}", self.base, chunk(i)), Some(f), None),
            Op::AdviseCheck(i, f) => (
                format!("{}/~advise/{t}/{}", self.base, chunk(i)),
                Some(f),
                None,
            ),
            Op::Poke(i, f, d) => (
                format!("{}/~poke/{t}/{}", self.base, chunk(i)),
                Some(f),
                Some(d.to_vec()),
            ),
            Op::Execute(c) => (
                format!("{}/~execute/{t}", self.base),
                None,
                Some(c.as_bytes().to_vec()),
            ),
            Op::Topics => (format!("{}/~topics", self.base), None, None),
        };
        let (tx, rx) = mpsc::channel();
        {
            let mut s = self.watch.state.lock().unwrap_or_else(|e| e.into_inner());
            if !s.alive {
                return Err(self.gone());
            }
            s.waiting = Some(tx.clone());
        }
        let _waiting = ClearWaiting(&self.watch);
        let deadline = Instant::now() + timeout;
        let guard = DoneGuard(tx);
        let mut get = self
            .fabric
            .session()
            .get(key)
            .target(zenoh::query::QueryTarget::BestMatching)
            .consolidation(zenoh::query::ConsolidationMode::None)
            .timeout(timeout + ZENOH_MARGIN);
        if let Some(f) = format {
            get = get.attachment(f.id().to_le_bytes().to_vec());
        }
        if let Some(b) = body {
            get = get.payload(b);
        }
        get.callback(move |reply| {
            let r = match reply.result() {
                Ok(sample) => Ok((
                    format_of(sample.attachment()).unwrap_or(0),
                    sample.payload().to_bytes().into_owned(),
                )),
                Err(err) => Err(err.payload().to_bytes().into_owned()),
            };
            let _ = guard.0.send(Event::Reply(r));
        })
        .wait()
        .map_err(|e| zerr("cannot send the DDE query", e).with_name(&self.service))?;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Reply(Ok(r))) => Ok(Ok(r)),
            Ok(Event::Reply(Err(bytes))) => Ok(Err(refusal(&bytes))),
            // No reply at all: the server's queryable is gone (its token's
            // withdrawal may not have reached us yet).
            Ok(Event::Done) | Ok(Event::Gone) => Err(self.gone()),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("the DDE server did not answer within {timeout:?}; it may still act on it"),
            )
            .with_name(&self.service)),
        }
    }

    /// Start delivering the changes of `item` in `format`: data on a hot
    /// link, notices on a warm one. Replaces a subscription on the same
    /// item and format.
    pub(crate) fn subscribe(
        &self,
        item: &str,
        format: Format,
        link: Link,
        deliver: Deliver,
    ) -> Result<()> {
        let (t, i) = (chunk(&self.topic), chunk(item));
        let key = match link {
            Link::Hot => format!("{}/{t}/{i}", self.base),
            Link::Warm => format!("{}/~notice/{t}/{i}", self.base),
        };
        let want = format.id();
        let last: Mutex<Option<u64>> = Mutex::new(None);
        let sub = self
            .fabric
            .session()
            .declare_subscriber(key)
            .callback(move |sample| {
                let Some(att) = sample.attachment().map(|a| a.to_bytes()) else {
                    return;
                };
                if att.len() < 12 || att[..4] != want.to_le_bytes() {
                    return;
                }
                let seq = u64::from_le_bytes(att[4..12].try_into().expect("8 bytes"));
                let skipped = {
                    let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                    let s = l.map_or(0, |prev| seq.saturating_sub(prev).saturating_sub(1));
                    *l = Some(seq);
                    s
                };
                let data = match link {
                    Link::Hot => Some(sample.payload().to_bytes().into_owned()),
                    Link::Warm => None,
                };
                deliver(data, skipped);
            })
            .wait()
            .map_err(|e| zerr("cannot subscribe to the item", e).with_name(&self.service))?;
        self.subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((item.to_string(), want), sub);
        Ok(())
    }

    /// Stop every subscription on `item`; whether there was one.
    pub(crate) fn unsubscribe(&self, item: &str) -> bool {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        let before = subs.len();
        subs.retain(|(i, _), _| i != item);
        subs.len() != before
    }

    /// Drop every subscription (the conversation ends).
    pub(crate) fn close(&self) {
        self.subs.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.token_sub
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// Clears the waiting call when it ends.
struct ClearWaiting<'a>(&'a Watch);

impl Drop for ClearWaiting<'_> {
    fn drop(&mut self) {
        self.0
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting = None;
    }
}

/// An error reply's `(code, message)`.
fn refusal(bytes: &[u8]) -> (u8, String) {
    #[derive(serde::Deserialize)]
    struct R {
        code: u8,
        message: String,
    }
    match serde_json::from_slice::<R>(bytes) {
        Ok(r) => (r.code, r.message),
        Err(_) => (
            wire::ERR_REFUSED,
            format!(
                "the query failed on the fabric: {}",
                String::from_utf8_lossy(bytes)
            ),
        ),
    }
}
