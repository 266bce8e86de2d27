//! The DDE client: one connection per conversation, one reader thread that
//! hands each answer to the caller waiting for it and each advise frame to
//! its link's queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::server::check_name;
use super::wire::{self, Header};
use super::{Link, ServiceInfo, Update, KIND, WHAT};
use crate::clipboard::Format;
use crate::conn::dial::{Dialer, Trust};
use crate::conn::hello::{self, Hello};
use crate::conn::io as conn_io;
use crate::error::{Error, ErrorKind, Result};
use crate::name::{EndpointState, Namespace};
use crate::sys::net::{AsSocket as _, Socket};

/// Default time a client waits for the server to appear and for each
/// transaction's answer: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Updates a client keeps per advise link that its program has not taken
/// yet; beyond, the oldest are dropped and counted in the next one's
/// [`Update::skipped`].
pub const CLIENT_QUEUE_PER_LINK: usize = 1024;
/// Largest error text or topic list a client accepts from a server.
const MAX_TEXT: usize = 1 << 20;
/// The prefix of a service reached over the Zenoh fabric.
const ZENOH_PREFIX: &str = "zenoh://";

/// Settings for opening conversations (`DdeConnect`).
///
/// ```
/// use ipckit::dde::{ConversationOptions, DdeServerOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let _s = DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
/// let c = ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
/// assert_eq!((c.service(), c.topic()), ("svc", "t"));
/// ```
#[derive(Debug, Clone)]
pub struct ConversationOptions {
    namespace: Option<Namespace>,
    timeout: Duration,
    trust: Trust,
    #[cfg(all(feature = "zenoh", unix))]
    fabric: Option<crate::fabric::Fabric>,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        ConversationOptions {
            namespace: None,
            timeout: DEFAULT_TIMEOUT,
            trust: Trust::default(),
            #[cfg(all(feature = "zenoh", unix))]
            fabric: None,
        }
    }
}

impl ConversationOptions {
    /// Defaults: the namespace from the environment, [`DEFAULT_TIMEOUT`],
    /// servers of this user (or of the namespace's owner) only.
    ///
    /// ```
    /// let _ = ipckit::dde::ConversationOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Work in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::dde::ConversationOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// How long [`connect`](Self::connect) waits for the server to appear
    /// (or stop being busy), and each transaction for its answer. Default
    /// [`DEFAULT_TIMEOUT`].
    ///
    /// ```
    /// let _ = ipckit::dde::ConversationOptions::new().timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trust servers running as these uids (checked on the socket's
    /// peer credentials; TCP servers are not identified).
    ///
    /// ```
    /// let _ = ipckit::dde::ConversationOptions::new().allow_server_uids(&[1001]);
    /// ```
    pub fn allow_server_uids(mut self, uids: &[u32]) -> Self {
        self.trust.uids = uids.to_vec();
        self
    }

    /// Talk to a server of any uid (the explicit opt-out of the check).
    ///
    /// ```
    /// let _ = ipckit::dde::ConversationOptions::new().allow_any_server();
    /// ```
    pub fn allow_any_server(mut self) -> Self {
        self.trust.any = true;
        self
    }

    /// Reach `zenoh://SERVICE` names over this fabric (feature `zenoh`)
    /// rather than the process-wide one ([`Fabric::global`](crate::fabric::Fabric::global)).
    /// Plain names stay in the local namespace.
    ///
    /// ```
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-dde-conv")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let e = ipckit::dde::ConversationOptions::new().fabric(&fabric)
    ///     .timeout(std::time::Duration::from_millis(50))
    ///     .connect("zenoh://nobody", "t").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[cfg(all(feature = "zenoh", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    pub fn fabric(mut self, fabric: &crate::fabric::Fabric) -> Self {
        self.fabric = Some(fabric.clone());
        self
    }

    /// Open a conversation with `service` (a name in the namespace,
    /// `tcp://HOST:PORT`, or with the `zenoh` feature `zenoh://SERVICE`: a
    /// server published with [`DdeServerOptions::fabric`](super::DdeServerOptions::fabric)
    /// on any machine of the fabric) on `topic` (`DdeConnect`). Over the
    /// fabric, no such server within the timeout is [`ErrorKind::NotFound`]
    /// and every call and advise loop ends with [`ErrorKind::PeerGone`] as
    /// soon as its liveliness token goes. Errors:
    /// [`ErrorKind::NotFound`] if the service does not serve the topic (or,
    /// after the timeout, if no such service exists: [`ErrorKind::Timeout`]
    /// wrapping it; with a zero timeout, `NotFound` at once),
    /// [`ErrorKind::Busy`] at its connection limits,
    /// [`ErrorKind::PermissionDenied`] for a server of another user.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::dde::{ConversationOptions, DdeServerOptions};
    /// let _s = DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// let e = ConversationOptions::new().namespace(&ns).connect("svc", "other").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "DdeConnect")]
    pub fn connect(&self, service: &str, topic: &str) -> Result<Conversation> {
        check_name(topic, "topic").map_err(|e| e.with_name(service))?;
        if let Some(name) = service.strip_prefix(ZENOH_PREFIX) {
            return self.connect_fabric(service, name, topic);
        }
        let (fd, max) = self.dial(service)?;
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(1));
        let (h, _, body) = exchange(
            &fd,
            service,
            Header::new(wire::CONNECT, 0, 0, 1),
            topic,
            &[],
            deadline,
        )?;
        if h.kind == wire::ERROR {
            return Err(remote_error(service, h.code, &body));
        }
        let inner = Arc::new(Inner {
            service: service.to_string(),
            topic: topic.to_string(),
            transport: Transport::Socket(fd),
            max,
            timeout: self.timeout,
            calls: Mutex::new(()),
            next_id: AtomicU64::new(2),
            st: Mutex::new(ClientState::default()),
            cv: Condvar::new(),
        });
        let reader = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("ipckit-dde-{service}"))
                .spawn(move || {
                    if let Some(fd) = inner.socket() {
                        read_loop(&inner, fd);
                    }
                })
                .map_err(|e| {
                    Error::os(e, "cannot start the conversation's reader thread").with_name(service)
                })?
        };
        Ok(Conversation {
            inner,
            reader: Some(reader),
        })
    }

    /// The topics `service` (a name or `tcp://HOST:PORT`) serves, sorted
    /// (`XTYP_WILDCONNECT` for one service).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::dde::{ConversationOptions, DdeServerOptions};
    /// let _s = DdeServerOptions::new().namespace(&ns).topic("b").topic("a").create("svc").unwrap();
    /// assert_eq!(ConversationOptions::new().namespace(&ns).topics("svc").unwrap(), ["a", "b"]);
    /// ```
    #[doc(alias = "XTYP_WILDCONNECT")]
    pub fn topics(&self, service: &str) -> Result<Vec<String>> {
        if let Some(name) = service.strip_prefix(ZENOH_PREFIX) {
            #[cfg(all(feature = "zenoh", unix))]
            {
                let fabric = self.fabric_for(service)?;
                return crate::fabric::dde::DdeLink::find(&fabric, name, "", self.timeout)
                    .map_err(|e| e.with_name(service))?
                    .topics(self.timeout);
            }
            #[cfg(not(all(feature = "zenoh", unix)))]
            return Err(no_zenoh(service, name));
        }
        let (fd, _) = self.dial(service)?;
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(1));
        let (h, _, body) = exchange(
            &fd,
            service,
            Header::new(wire::LIST, 0, 0, 1),
            "",
            &[],
            deadline,
        )?;
        if h.kind == wire::ERROR {
            return Err(remote_error(service, h.code, &body));
        }
        wire::decode_list(&body).ok_or_else(|| {
            Error::new(ErrorKind::Decode, "the server sent a malformed topic list")
                .with_name(service)
        })
    }

    /// Every live DDE service of the namespace with its topics, sorted by
    /// name (`XTYP_WILDCONNECT`): one connection attempt each; services
    /// that do not answer (dead, hung, of an untrusted user) are skipped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::dde::{ConversationOptions, DdeServerOptions};
    /// let _b = DdeServerOptions::new().namespace(&ns).topic("t2").create("b").unwrap();
    /// let _a = DdeServerOptions::new().namespace(&ns).topic("t1").create("a").unwrap();
    /// let names: Vec<String> = ConversationOptions::new().namespace(&ns).services().unwrap()
    ///     .into_iter().map(|s| s.service).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// ```
    #[doc(alias = "XTYP_WILDCONNECT")]
    pub fn services(&self) -> Result<Vec<ServiceInfo>> {
        let ns = match &self.namespace {
            Some(ns) => ns.clone(),
            None => Namespace::from_env()?,
        };
        let once = self.clone().timeout(Duration::ZERO);
        let mut out = Vec::new();
        for e in ns.list()? {
            if e.kind != KIND || e.state != EndpointState::Live {
                continue;
            }
            if let Ok(topics) = once.topics(&e.name) {
                out.push(ServiceInfo {
                    service: e.name,
                    topics,
                });
            }
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    #[cfg(all(feature = "zenoh", unix))]
    fn fabric_for(&self, service: &str) -> Result<crate::fabric::Fabric> {
        match &self.fabric {
            Some(f) => Ok(f.clone()),
            None => crate::fabric::Fabric::global().map_err(|e| e.with_name(service)),
        }
    }

    /// A conversation with `name` on the fabric (`service` is the name as
    /// given, `zenoh://` included).
    #[cfg(all(feature = "zenoh", unix))]
    fn connect_fabric(&self, service: &str, name: &str, topic: &str) -> Result<Conversation> {
        let fabric = self.fabric_for(service)?;
        let link = crate::fabric::dde::DdeLink::connect(&fabric, name, topic, self.timeout)
            .map_err(|e| e.with_name(service))?;
        let inner = Arc::new(Inner {
            service: service.to_string(),
            topic: topic.to_string(),
            transport: Transport::Fabric(Box::new(link)),
            max: usize::MAX,
            timeout: self.timeout,
            calls: Mutex::new(()),
            next_id: AtomicU64::new(2),
            st: Mutex::new(ClientState::default()),
            cv: Condvar::new(),
        });
        if let Transport::Fabric(link) = &inner.transport {
            let weak = Arc::downgrade(&inner);
            link.on_gone(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.end((
                        ErrorKind::PeerGone,
                        "the DDE server left the fabric (it died or was dropped); reconnect when it is back"
                            .to_string(),
                    ));
                }
            }));
        }
        Ok(Conversation {
            inner,
            reader: None,
        })
    }

    #[cfg(not(all(feature = "zenoh", unix)))]
    fn connect_fabric(&self, service: &str, name: &str, _topic: &str) -> Result<Conversation> {
        Err(no_zenoh(service, name))
    }

    /// Connect and read the hello: the socket and the server's data limit.
    fn dial(&self, service: &str) -> Result<(Socket, usize)> {
        let dialer = Dialer {
            name: service,
            what: WHAT,
            namespace: self.namespace.as_ref(),
            timeout: self.timeout,
            tcp: true,
            trust: &self.trust,
        };
        dialer.run(|d| {
            let b = hello::read(d.fd.as_socket(), d.hello_deadline, WHAT, service)?;
            let h = Hello::decode(&b, wire::MAGIC, wire::VERSION, WHAT, service)?;
            if let Some(e) = h.refusal(WHAT, service) {
                return Err(e);
            }
            Ok((d.fd, h.max as usize))
        })
    }
}

/// Send one frame and read one answer synchronously (before the reader
/// thread runs).
fn exchange(
    fd: &Socket,
    service: &str,
    h: Header,
    name: &str,
    body: &[u8],
    deadline: Instant,
) -> Result<(Header, String, Vec<u8>)> {
    let left = deadline.saturating_duration_since(Instant::now());
    conn_io::set_send_timeout(fd.as_socket(), Some(left.max(Duration::from_millis(1))))
        .map_err(|e| Error::os(e, "cannot set the send timeout").with_name(service))?;
    conn_io::send_all(fd.as_socket(), &wire::frame(h, name, body)).map_err(|_| gone(service))?;
    match read_frame(fd, MAX_TEXT, Some(deadline)) {
        Ok(Some(f)) if f.0.kind == wire::REPLY || f.0.kind == wire::ERROR => Ok(f),
        Ok(Some(_)) => Err(Error::new(
            ErrorKind::Decode,
            "the server answered with an unexpected frame",
        )
        .with_name(service)),
        Ok(None) => Err(gone(service)),
        Err(e) => Err(e.with_name(service)),
    }
}

/// Read one frame (header, name, body); `Ok(None)` at a clean end of
/// stream. A body over `max` or a malformed header is a `Decode` error.
fn read_frame(
    fd: &Socket,
    max: usize,
    deadline: Option<Instant>,
) -> Result<Option<(Header, String, Vec<u8>)>> {
    let io_err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Error::new(
                ErrorKind::Timeout,
                "the DDE server did not answer in time; it may be hung",
            )
        } else {
            Error::new(
                ErrorKind::PeerGone,
                "the DDE server went away (it died or was dropped); reconnect when it is back",
            )
        }
    };
    let mut hb = [0u8; wire::LEN];
    if !conn_io::recv_exact_by(fd.as_socket(), &mut hb, deadline).map_err(io_err)? {
        return Ok(None);
    }
    let h = Header::decode(&hb).map_err(|why| {
        Error::new(
            ErrorKind::Decode,
            format!("malformed frame from the server: {why}"),
        )
    })?;
    if !matches!(
        h.kind,
        wire::REPLY | wire::ERROR | wire::DATA | wire::NOTICE
    ) {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("the server sent a frame of unknown kind {}", h.kind),
        ));
    }
    if h.body_len > max {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "the server announced {} bytes, over the limit of {max} it announced",
                h.body_len
            ),
        ));
    }
    let rest = conn_io::recv_body(fd.as_socket(), h.rest(), deadline).map_err(io_err)?;
    let name = String::from_utf8(rest[..h.name_len].to_vec()).map_err(|_| {
        Error::new(
            ErrorKind::Decode,
            "the server sent a name that is not UTF-8",
        )
    })?;
    Ok(Some((h, name, rest[h.name_len..].to_vec())))
}

/// The error for a `zenoh://` name in a build without the `zenoh` feature.
#[cfg(not(all(feature = "zenoh", unix)))]
fn no_zenoh(service: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        if cfg!(windows) {
            format!("'{name}' is a name on the Zenoh fabric, which is Linux-only for now; use a local service name")
        } else {
            format!("'{name}' is a name on the Zenoh fabric, and this ipckit was built without the `zenoh` feature; rebuild with it")
        },
    )
    .with_name(service)
}

fn gone(service: &str) -> Error {
    Error::new(
        ErrorKind::PeerGone,
        "the DDE server went away (it died or was dropped); reconnect when it is back",
    )
    .with_name(service)
}

/// The error an ERROR frame means.
fn remote_error(service: &str, code: u8, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    let kind = match code {
        wire::ERR_NOT_FOUND => ErrorKind::NotFound,
        wire::ERR_TOO_LARGE => ErrorKind::TooLarge,
        wire::ERR_REFUSED => ErrorKind::Remote,
        wire::ERR_LIMIT => ErrorKind::Full,
        wire::ERR_INVALID => ErrorKind::InvalidInput,
        _ => ErrorKind::Remote,
    };
    let what = if code == wire::ERR_REFUSED {
        "the server refused"
    } else {
        "the server answered"
    };
    Error::new(kind, format!("{what}: {text}")).with_name(service)
}

/// One advise link's updates waiting for the program.
#[derive(Default)]
struct LinkBuf {
    updates: VecDeque<Update>,
    /// Why the link ended (unadvised; the conversation ended).
    end: Option<(ErrorKind, String)>,
    /// Which [`Advise`] owns it (a new advise on the same item replaces it).
    generation: u64,
}

#[derive(Default)]
struct ClientState {
    /// The request waiting for its answer.
    waiting: Option<u64>,
    answer: Option<(Header, Vec<u8>)>,
    /// The conversation ended: why.
    gone: Option<(ErrorKind, String)>,
    links: HashMap<(String, u32), LinkBuf>,
}

/// How a conversation reaches its server.
enum Transport {
    /// A connection in the namespace or over TCP, read by the reader thread.
    Socket(Socket),
    /// The Zenoh fabric (`zenoh://SERVICE`).
    #[cfg(all(feature = "zenoh", unix))]
    Fabric(Box<crate::fabric::dde::DdeLink>),
}

struct Inner {
    service: String,
    topic: String,
    transport: Transport,
    /// The server's data limit.
    max: usize,
    timeout: Duration,
    /// One transaction at a time.
    calls: Mutex<()>,
    next_id: AtomicU64,
    st: Mutex<ClientState>,
    cv: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One transaction: send the frame, wait for its answer.
    fn call(
        &self,
        kind: u8,
        code: u8,
        name: &str,
        format: u32,
        body: &[u8],
    ) -> Result<(u32, Vec<u8>)> {
        if body.len() > self.max {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} bytes of data are over the server's limit of {} bytes",
                    body.len(),
                    self.max
                ),
            )
            .with_name(&self.service)
            .with_needed(body.len()));
        }
        let _call = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        #[cfg(all(feature = "zenoh", unix))]
        if let Transport::Fabric(link) = &self.transport {
            return self.call_fabric(link, kind, name, format, body);
        }
        let Some(fd) = self.socket() else {
            unreachable!("a conversation off the fabric has a connection")
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.timeout;
        {
            let mut st = self.lock();
            if let Some((k, why)) = &st.gone {
                return Err(Error::new(*k, why.clone()).with_name(&self.service));
            }
            st.waiting = Some(id);
            st.answer = None;
        }
        let frame = wire::frame(Header::new(kind, code, format, id), name, body);
        let sent = conn_io::set_send_timeout(
            fd.as_socket(),
            Some(self.timeout.max(Duration::from_millis(1))),
        )
        .and_then(|()| conn_io::send_all(fd.as_socket(), &frame));
        if let Err(e) = sent {
            self.lock().waiting = None;
            return Err(match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::new(
                    ErrorKind::Timeout,
                    "the DDE server did not take the transaction in time; is its process stopped?",
                )
                .with_name(&self.service),
                _ => gone(&self.service),
            });
        }
        let mut st = self.lock();
        loop {
            if let Some((h, body)) = st.answer.take() {
                st.waiting = None;
                if h.kind == wire::ERROR {
                    return Err(remote_error(&self.service, h.code, &body));
                }
                return Ok((h.format, body));
            }
            if let Some((k, why)) = st.gone.clone() {
                st.waiting = None;
                return Err(Error::new(k, why).with_name(&self.service));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.waiting = None;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the DDE server did not answer within {:?}; it may still act on it",
                        self.timeout
                    ),
                )
                .with_name(&self.service));
            }
            st = self
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The reader thread: answers to the waiting caller, advise frames to
/// their links, until the connection ends.
fn read_loop(inner: &Inner, fd: &Socket) {
    let limit = inner.max.max(MAX_TEXT);
    let why =
        loop {
            match read_frame(fd, limit, None) {
                Ok(None) => break (
                    ErrorKind::PeerGone,
                    "the DDE server went away (it died or was dropped); reconnect when it is back"
                        .to_string(),
                ),
                Err(e) => break (e.kind(), e.message().to_string()),
                Ok(Some((h, name, body))) => {
                    let mut st = inner.lock();
                    match h.kind {
                        wire::REPLY | wire::ERROR => {
                            if st.waiting == Some(h.value) {
                                st.answer = Some((h, body));
                                inner.cv.notify_all();
                            }
                        }
                        _ => {
                            let data = (h.kind == wire::DATA).then_some(body);
                            inner.deliver(&mut st, name, h.format, data, h.value);
                        }
                    }
                }
            }
        };
    inner.end(why);
}

impl Inner {
    /// The connection, if the conversation has one (not on the fabric).
    fn socket(&self) -> Option<&Socket> {
        match &self.transport {
            Transport::Socket(fd) => Some(fd),
            #[cfg(all(feature = "zenoh", unix))]
            Transport::Fabric(_) => None,
        }
    }

    /// Queue an update for its link, if the link is there.
    fn deliver(
        &self,
        st: &mut ClientState,
        item: String,
        format: u32,
        data: Option<Vec<u8>>,
        skipped: u64,
    ) {
        let Some(l) = st.links.get_mut(&(item.clone(), format)) else {
            return;
        };
        let mut u = Update {
            item,
            format: Format::from_id(format),
            data,
            skipped,
        };
        if l.updates.len() >= CLIENT_QUEUE_PER_LINK {
            // Drop the oldest; the next one carries its count.
            if let Some(old) = l.updates.pop_front() {
                let extra = old.skipped.saturating_add(1);
                match l.updates.front_mut() {
                    Some(next) => next.skipped = next.skipped.saturating_add(extra),
                    None => u.skipped = u.skipped.saturating_add(extra),
                }
            }
        }
        l.updates.push_back(u);
        self.cv.notify_all();
    }

    /// The conversation ended: why, for every call and link.
    fn end(&self, why: (ErrorKind, String)) {
        let mut st = self.lock();
        for l in st.links.values_mut() {
            l.end.get_or_insert_with(|| why.clone());
        }
        st.gone.get_or_insert(why);
        self.cv.notify_all();
    }

    /// One transaction over the fabric.
    #[cfg(all(feature = "zenoh", unix))]
    fn call_fabric(
        &self,
        link: &crate::fabric::dde::DdeLink,
        kind: u8,
        name: &str,
        format: u32,
        body: &[u8],
    ) -> Result<(u32, Vec<u8>)> {
        use crate::fabric::dde::Op;
        if let Some((k, why)) = &self.lock().gone {
            return Err(Error::new(*k, why.clone()).with_name(&self.service));
        }
        let f = Format::from_id(format);
        let command;
        let op = match kind {
            wire::REQUEST => Op::Request(name, f),
            wire::ADVISE => Op::AdviseCheck(name, f),
            wire::POKE => Op::Poke(name, f, body),
            wire::EXECUTE => {
                command = String::from_utf8_lossy(body).into_owned();
                Op::Execute(&command)
            }
            wire::UNADVISE => {
                return if link.unsubscribe(name) {
                    Ok((0, Vec::new()))
                } else {
                    Err(Error::new(
                        ErrorKind::NotFound,
                        format!("the server answered: the conversation has no advise link on item '{name}'"),
                    )
                    .with_name(&self.service))
                };
            }
            k => unreachable!("no fabric transaction of kind {k}"),
        };
        match link.call(op, self.timeout) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err((code, text))) => Err(remote_error(&self.service, code, text.as_bytes())),
            Err(e) => Err(e.with_name(&self.service)),
        }
    }
}

/// An open conversation with a service on one topic (the `HCONV`). Its
/// calls take `&self` and may come from several threads (one transaction
/// runs at a time); advise links deliver through [`Advise`] values.
/// Dropping it ends the conversation.
///
/// ```
/// use ipckit::dde::{ConversationOptions, DdeServerOptions};
/// use ipckit::clipboard::Format;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
/// let c = ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
/// c.poke("x", Format::TEXT, b"5").unwrap();
/// assert_eq!(c.request("x", Format::TEXT).unwrap(), b"5");
/// assert_eq!(s.item("t", "x").unwrap().1, b"5");
/// ```
#[doc(alias = "HCONV")]
pub struct Conversation {
    inner: Arc<Inner>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("service", &self.inner.service)
            .field("topic", &self.inner.topic)
            .finish()
    }
}

impl Conversation {
    /// The service as given to `connect` (`tcp://…` included).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// assert_eq!(c.service(), "svc");
    /// ```
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The conversation's topic.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// assert_eq!(c.topic(), "t");
    /// ```
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Request an item's value once (`XTYP_REQUEST`, a cold link).
    /// [`ErrorKind::NotFound`] if the topic has no such item or holds it in
    /// another format (the message names it), [`ErrorKind::PeerGone`] if
    /// the server went away, [`ErrorKind::Timeout`] past the timeout.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"1").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// assert_eq!(c.request("x", Format::TEXT).unwrap(), b"1");
    /// assert_eq!(c.request("x", Format::UNICODE_TEXT).unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "XTYP_REQUEST")]
    pub fn request(&self, item: &str, format: Format) -> Result<Vec<u8>> {
        check_name(item, "item").map_err(|e| e.with_name(&self.inner.service))?;
        self.inner
            .call(wire::REQUEST, 0, item, format.id(), &[])
            .map(|(_, b)| b)
    }

    /// Poke a value into an item (`XTYP_POKE`); the server's poke handler
    /// decides (by default it stores the value and serves the item's
    /// advise loops). A refusal is [`ErrorKind::Remote`] with its reason.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let _s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t")
    ///     .on_poke(|p| if p.item == "ro" { Err("read-only".into()) } else { Ok(()) })
    ///     .create("svc").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// c.poke("x", Format::TEXT, b"1").unwrap();
    /// let e = c.poke("ro", Format::TEXT, b"1").unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Remote);
    /// assert!(e.to_string().contains("read-only"));
    /// ```
    #[doc(alias = "XTYP_POKE")]
    pub fn poke(&self, item: &str, format: Format, data: &[u8]) -> Result<()> {
        check_name(item, "item").map_err(|e| e.with_name(&self.inner.service))?;
        self.inner
            .call(wire::POKE, 0, item, format.id(), data)
            .map(|_| ())
    }

    /// Run a command on the server (`XTYP_EXECUTE`). Its handler
    /// acknowledges, or refuses: [`ErrorKind::Remote`] with the reason.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t")
    ///     .on_execute(|e| if e.command == "ping" { Ok(()) } else { Err("unknown command".into()) })
    ///     .create("svc").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// c.execute("ping").unwrap();
    /// assert_eq!(c.execute("format c:").unwrap_err().kind(), ipckit::ErrorKind::Remote);
    /// ```
    #[doc(alias = "XTYP_EXECUTE")]
    pub fn execute(&self, command: &str) -> Result<()> {
        self.inner
            .call(wire::EXECUTE, 0, "", 0, command.as_bytes())
            .map(|_| ())
    }

    /// Start an advise loop on an item in `format` (`XTYP_ADVSTART`): with
    /// [`Link::Hot`] each new value is pushed; with [`Link::Warm`] a notice
    /// says it changed (fetch it with [`request`](Self::request)). The
    /// current value is not sent: request it first if you need it. The
    /// item must exist in that format ([`ErrorKind::NotFound`]); an item
    /// already advised on in this conversation in that format is
    /// [`ErrorKind::AlreadyExists`]. Dropping the [`Advise`] stops local
    /// delivery only; [`unadvise`](Self::unadvise) stops the server.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// use ipckit::dde::Link;
    /// use std::time::Duration;
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"1").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let mut warm = c.advise("x", Format::TEXT, Link::Warm).unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"2").unwrap();
    /// let u = warm.recv_timeout(Duration::from_secs(10)).unwrap();
    /// assert_eq!((u.item.as_str(), u.data), ("x", None));
    /// assert_eq!(c.request("x", Format::TEXT).unwrap(), b"2");
    /// ```
    #[doc(alias = "XTYP_ADVSTART")]
    #[doc(alias = "XTYPF_NODATA")]
    pub fn advise(&self, item: &str, format: Format, link: Link) -> Result<Advise> {
        check_name(item, "item").map_err(|e| e.with_name(&self.inner.service))?;
        let key = (item.to_string(), format.id());
        let generation = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.inner.lock();
            if st.links.get(&key).is_some_and(|l| l.end.is_none()) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("this conversation already advises on item '{item}' in format {format}; unadvise first"),
                )
                .with_name(&self.inner.service));
            }
            st.links.insert(
                key.clone(),
                LinkBuf {
                    generation,
                    ..LinkBuf::default()
                },
            );
        }
        let code = match link {
            Link::Hot => wire::LINK_HOT,
            Link::Warm => wire::LINK_WARM,
        };
        #[cfg_attr(not(all(feature = "zenoh", unix)), allow(unused_mut))]
        let mut started = self.inner.call(wire::ADVISE, code, item, format.id(), &[]);
        #[cfg(all(feature = "zenoh", unix))]
        if let (Ok(_), Transport::Fabric(fl)) = (&started, &self.inner.transport) {
            let weak = Arc::downgrade(&self.inner);
            let name = item.to_string();
            let fid = format.id();
            let deliver = move |data: Option<Vec<u8>>, skipped: u64| {
                if let Some(inner) = weak.upgrade() {
                    let mut st = inner.lock();
                    inner.deliver(&mut st, name.clone(), fid, data, skipped);
                }
            };
            if let Err(e) = fl.subscribe(item, format, link, Box::new(deliver)) {
                started = Err(e.with_name(&self.inner.service));
            }
        }
        if let Err(e) = started {
            let mut st = self.inner.lock();
            if st
                .links
                .get(&key)
                .is_some_and(|l| l.generation == generation)
            {
                st.links.remove(&key);
            }
            return Err(e);
        }
        Ok(Advise {
            inner: self.inner.clone(),
            key,
            generation,
            done: false,
        })
    }

    /// [`advise`](Self::advise) with a callback: `f` runs on a thread of
    /// its own for each update, until the link ends; the thread's result
    /// is why it ended ([`ErrorKind::PeerGone`] when the server went away,
    /// [`ErrorKind::NotFound`] after [`unadvise`](Self::unadvise)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// use ipckit::dde::Link;
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"0").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let t = c.advise_with("x", Format::TEXT, Link::Hot, move |u| { let _ = tx.send(u.data); }).unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"1").unwrap();
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap().unwrap(), b"1");
    /// drop(s);
    /// assert_eq!(t.join().unwrap().kind(), ipckit::ErrorKind::PeerGone);
    /// ```
    pub fn advise_with<F>(
        &self,
        item: &str,
        format: Format,
        link: Link,
        mut f: F,
    ) -> Result<JoinHandle<Error>>
    where
        F: FnMut(Update) + Send + 'static,
    {
        let mut a = self.advise(item, format, link)?;
        std::thread::Builder::new()
            .name(format!("ipckit-dde-advise-{item}"))
            .spawn(move || loop {
                match a.recv() {
                    Ok(u) => f(u),
                    Err(e) => return e,
                }
            })
            .map_err(|e| {
                Error::os(e, "cannot start the advise thread").with_name(&self.inner.service)
            })
    }

    /// End every advise loop on `item` in this conversation
    /// (`XTYP_ADVSTOP`); their [`Advise`] values end.
    /// [`ErrorKind::NotFound`] if there is none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"1").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let mut a = c.advise("x", Format::TEXT, ipckit::dde::Link::Hot).unwrap();
    /// c.unadvise("x").unwrap();
    /// assert!(a.next().is_none());
    /// assert_eq!(c.unadvise("x").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "XTYP_ADVSTOP")]
    pub fn unadvise(&self, item: &str) -> Result<()> {
        check_name(item, "item").map_err(|e| e.with_name(&self.inner.service))?;
        self.inner.call(wire::UNADVISE, 0, item, 0, &[])?;
        let mut st = self.inner.lock();
        for ((i, _), l) in st.links.iter_mut() {
            if i == item {
                l.end.get_or_insert((
                    ErrorKind::NotFound,
                    format!("the advise link on item '{item}' was ended by unadvise"),
                ));
            }
        }
        self.inner.cv.notify_all();
        Ok(())
    }

    /// Whether the server is still there (no end of the conversation seen).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// assert!(c.is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        self.inner.lock().gone.is_none()
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        match &self.inner.transport {
            Transport::Socket(fd) => conn_io::shutdown(fd.as_socket()),
            #[cfg(all(feature = "zenoh", unix))]
            Transport::Fabric(link) => {
                link.close();
                self.inner.end((
                    ErrorKind::PeerGone,
                    "the conversation was closed".to_string(),
                ));
            }
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The updates of one advise link, in order: an iterator (blocking; one
/// `Err` when the conversation ends, then `None`; `None` after
/// [`Conversation::unadvise`]) or [`recv_timeout`](Self::recv_timeout).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::clipboard::Format;
/// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
/// s.set_item("t", "x", Format::TEXT, b"0").unwrap();
/// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
/// let a = c.advise("x", Format::TEXT, ipckit::dde::Link::Hot).unwrap();
/// for v in [b"1", b"2"] { s.set_item("t", "x", Format::TEXT, v).unwrap(); }
/// let got: Vec<Vec<u8>> = a.take(2).map(|u| u.unwrap().data.unwrap()).collect();
/// assert_eq!(got, [b"1", b"2"]);
/// ```
pub struct Advise {
    inner: Arc<Inner>,
    key: (String, u32),
    generation: u64,
    done: bool,
}

impl std::fmt::Debug for Advise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advise")
            .field("service", &self.inner.service)
            .field("item", &self.key.0)
            .field("format", &self.key.1)
            .finish()
    }
}

impl Advise {
    /// The item advised on.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// # s.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"0").unwrap();
    /// # let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let a = c.advise("x", ipckit::clipboard::Format::TEXT, ipckit::dde::Link::Hot).unwrap();
    /// assert_eq!(a.item(), "x");
    /// ```
    pub fn item(&self) -> &str {
        &self.key.0
    }

    /// The next update, waiting as long as it takes; `Err` once the link
    /// ended ([`ErrorKind::PeerGone`]: the server went away;
    /// [`ErrorKind::NotFound`]: unadvised).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// # s.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"0").unwrap();
    /// # let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let mut a = c.advise("x", ipckit::clipboard::Format::TEXT, ipckit::dde::Link::Hot).unwrap();
    /// s.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"1").unwrap();
    /// assert_eq!(a.recv().unwrap().data.unwrap(), b"1");
    /// ```
    pub fn recv(&mut self) -> Result<Update> {
        self.wait(None)
    }

    /// The next update, waiting at most `timeout` ([`ErrorKind::Timeout`]
    /// if none came); `Err` once the link ended, as [`recv`](Self::recv).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// # s.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"0").unwrap();
    /// # let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let mut a = c.advise("x", ipckit::clipboard::Format::TEXT, ipckit::dde::Link::Hot).unwrap();
    /// let e = a.recv_timeout(std::time::Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Update> {
        self.wait(Some(Instant::now() + timeout))
    }

    /// The next update if one is queued, without waiting: `Ok(None)` if
    /// none is; `Err` once the link ended, as [`recv`](Self::recv).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// # s.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"0").unwrap();
    /// # let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let mut a = c.advise("x", ipckit::clipboard::Format::TEXT, ipckit::dde::Link::Hot).unwrap();
    /// assert!(a.try_recv().unwrap().is_none());
    /// ```
    pub fn try_recv(&mut self) -> Result<Option<Update>> {
        match self.wait(Some(Instant::now())) {
            Ok(u) => Ok(Some(u)),
            Err(e) if e.kind() == ErrorKind::Timeout => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Result<Update> {
        let inner = &self.inner;
        let mut st = inner.lock();
        loop {
            let l = st
                .links
                .get_mut(&self.key)
                .filter(|l| l.generation == self.generation);
            let Some(l) = l else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "the advise link was replaced or ended",
                )
                .with_name(&inner.service));
            };
            if let Some(u) = l.updates.pop_front() {
                return Ok(u);
            }
            if let Some((k, why)) = &l.end {
                return Err(Error::new(*k, why.clone()).with_name(&inner.service));
            }
            st = match deadline {
                None => inner.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("no update of item '{}' came in time", self.key.0),
                        )
                        .with_name(&inner.service));
                    }
                    inner
                        .cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Iterator for Advise {
    type Item = Result<Update>;

    fn next(&mut self) -> Option<Result<Update>> {
        if self.done {
            return None;
        }
        match self.recv() {
            Ok(u) => Some(Ok(u)),
            Err(e) => {
                self.done = true;
                (e.kind() != ErrorKind::NotFound).then_some(Err(e))
            }
        }
    }
}

impl Drop for Advise {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        if st
            .links
            .get(&self.key)
            .is_some_and(|l| l.generation == self.generation)
        {
            st.links.remove(&self.key);
        }
    }
}
