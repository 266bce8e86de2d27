//! The DDE server: topics with items, advise loops served through bounded
//! per-link queues, poke and execute handlers on a worker pool.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wire::{self, Header};
use super::{Link, KIND};
use crate::clipboard::Format;
use crate::conn::hello::Hello;
use crate::conn::pool::Pool;
use crate::conn::reactor::{Conn, Counters, Flow, Frame, FrameLen, Protocol, Reactor, Refusal};
use crate::conn::{io as conn_io, listen, ConnStats};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::name::Namespace;

/// Default limit on one item's data, a poke's data and an execute
/// command: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Default number of updates queued per advise link before the oldest
/// are dropped (and counted as skipped): 64.
pub const DEFAULT_QUEUE_PER_LINK: usize = 64;
/// Default number of advise links one conversation may hold: 256.
pub const DEFAULT_MAX_LINKS: usize = 256;
/// Default number of items pokes may add to one topic: 1024.
pub const DEFAULT_MAX_POKED_ITEMS: usize = 1024;

/// Most threads writing to clients at once.
const WRITERS: usize = 32;
/// Most threads running poke and execute handlers at once.
const HANDLERS: usize = 16;
/// A connection with more unread bytes than this is not written to until
/// its client has read some (its links' queues fill meanwhile).
const OUT_HIGH: usize = 128 << 10;
/// How often connections held back by [`OUT_HIGH`] are checked again.
const RECHECK: Duration = Duration::from_millis(10);
/// Events kept for [`DdeServer::next_event`] (the oldest are dropped).
const EVENTS_KEPT: usize = 4096;

/// A poke as its handler sees it (`XTYP_POKE`).
///
/// ```
/// use ipckit::dde::DdeServerOptions;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let _s = DdeServerOptions::new().namespace(&ns).topic("t")
///     .on_poke(|p| if p.data.is_empty() { Err("empty".into()) } else { Ok(()) })
///     .create("svc").unwrap();
/// ```
#[derive(Debug)]
pub struct Poke<'a> {
    /// The conversation's topic.
    pub topic: &'a str,
    /// The item poked.
    pub item: &'a str,
    /// The data's clipboard format.
    pub format: Format,
    /// The data.
    pub data: &'a [u8],
    /// The server, to change other items.
    pub server: &'a DdeServerHandle,
}

/// An execute as its handler sees it (`XTYP_EXECUTE`).
///
/// ```
/// use ipckit::dde::DdeServerOptions;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let _s = DdeServerOptions::new().namespace(&ns).topic("t")
///     .on_execute(|e| e.server.set_item(e.topic, "last", ipckit::clipboard::Format::TEXT,
///         e.command.as_bytes()).map_err(|e| e.to_string()))
///     .create("svc").unwrap();
/// ```
#[derive(Debug)]
pub struct Execute<'a> {
    /// The conversation's topic.
    pub topic: &'a str,
    /// The command string.
    pub command: &'a str,
    /// The server, to change items.
    pub server: &'a DdeServerHandle,
}

type PokeFn = Arc<dyn Fn(&Poke<'_>) -> std::result::Result<(), String> + Send + Sync>;
type ExecFn = Arc<dyn Fn(&Execute<'_>) -> std::result::Result<(), String> + Send + Sync>;

/// Settings for creating a DDE server (`DdeInitialize` +
/// `DdeNameService`). Builders take and return `self`.
///
/// ```
/// use ipckit::dde::DdeServerOptions;
/// use ipckit::clipboard::Format;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let server = DdeServerOptions::new().namespace(&ns).topic("prices").create("quotes").unwrap();
/// server.set_item("prices", "ACME", Format::TEXT, b"12.5").unwrap();
/// assert_eq!(server.topics(), ["prices"]);
/// ```
#[doc(alias = "DdeInitialize")]
#[doc(alias = "DdeNameService")]
#[derive(Clone)]
pub struct DdeServerOptions {
    namespace: Option<Namespace>,
    limits: Limits,
    tcp: Option<String>,
    max_data: usize,
    queue_per_link: usize,
    max_links: usize,
    max_poked_items: usize,
    topics: Vec<String>,
    on_poke: Option<PokeFn>,
    on_execute: Option<ExecFn>,
    #[cfg(all(feature = "zenoh", unix))]
    fabric: Option<crate::fabric::Fabric>,
}

impl std::fmt::Debug for DdeServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DdeServerOptions")
            .field("namespace", &self.namespace)
            .field("limits", &self.limits)
            .field("tcp", &self.tcp)
            .field("max_data", &self.max_data)
            .field("queue_per_link", &self.queue_per_link)
            .field("max_links", &self.max_links)
            .field("max_poked_items", &self.max_poked_items)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Default for DdeServerOptions {
    fn default() -> Self {
        DdeServerOptions {
            namespace: None,
            limits: Limits::default(),
            tcp: None,
            max_data: DEFAULT_MAX_MESSAGE_SIZE,
            queue_per_link: DEFAULT_QUEUE_PER_LINK,
            max_links: DEFAULT_MAX_LINKS,
            max_poked_items: DEFAULT_MAX_POKED_ITEMS,
            topics: Vec::new(),
            on_poke: None,
            on_execute: None,
            #[cfg(all(feature = "zenoh", unix))]
            fabric: None,
        }
    }
}

impl DdeServerOptions {
    /// The defaults: the namespace from the environment, [`Limits::default`],
    /// no TCP, [`DEFAULT_MAX_MESSAGE_SIZE`], [`DEFAULT_QUEUE_PER_LINK`],
    /// [`DEFAULT_MAX_LINKS`], [`DEFAULT_MAX_POKED_ITEMS`], no topics, pokes
    /// accepted and stored, executes refused.
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::dde::DdeServerOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// What the server accepts from its clients. Default
    /// [`Limits::default`]. One connection is one conversation. The
    /// fields that apply: the connection counts ([`Limits::max_connections`],
    /// per process, per user, per TCP address: a client over one gets
    /// [`ErrorKind::Busy`]); [`Limits::handshake_timeout`] (a connection
    /// must send its CONNECT or LIST frame within it); and
    /// [`Limits::stall_timeout`]: a client that stops inside a frame, or
    /// does not read what the server writes (replies, advise data) for
    /// this long, is dropped.
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().limits(ipckit::Limits::new().max_connections(8));
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also listen on TCP at `HOST:PORT` (`tcp://` prefix allowed; port 0
    /// picks one, see [`DdeServer::local_addr`]); clients then connect to
    /// `tcp://HOST:PORT` (NetDDE's role). TCP clients are not identified:
    /// listen on a trusted network only. Default: no TCP.
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().tcp("127.0.0.1:0");
    /// ```
    pub fn tcp(mut self, addr: &str) -> Self {
        self.tcp = Some(
            addr.trim_start_matches(crate::conn::dial::TCP_PREFIX)
                .to_string(),
        );
        self
    }

    /// Also publish the server on a Zenoh [`Fabric`](crate::fabric::Fabric)
    /// (feature `zenoh`): clients on any machine of the fabric then reach
    /// it as `zenoh://SERVICE` with the same [`ConversationOptions`](super::ConversationOptions)
    /// API. Items are served under
    /// `ipckit/<namespace>/dde/<service>/<topic>/<item>` (a request is a
    /// query, a hot link a subscription, a warm link a subscription to
    /// notices, a poke and an execute are queries) and the server's
    /// presence is the liveliness token `ipckit/<namespace>/alive/dde/<service>/.<zid>`.
    /// The local endpoint stays as it is. A live server of the same name
    /// already on the fabric makes [`create`](Self::create) fail with
    /// [`ErrorKind::AlreadyExists`]. Default: not published.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let fabric = ipckit::fabric::Fabric::builder().namespace("doc-dde-fabric")
    ///     .multicast_scouting(false).listen("tcp/127.0.0.1:0").open().unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).fabric(&fabric)
    ///     .topic("t").create("svc").unwrap();
    /// s.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"1").unwrap();
    /// let c = ipckit::dde::ConversationOptions::new().fabric(&fabric)
    ///     .connect("zenoh://svc", "t").unwrap();
    /// assert_eq!(c.request("x", ipckit::clipboard::Format::TEXT).unwrap(), b"1");
    /// ```
    #[cfg(all(feature = "zenoh", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
    pub fn fabric(mut self, fabric: &crate::fabric::Fabric) -> Self {
        self.fabric = Some(fabric.clone());
        self
    }

    /// Largest item value, poke data and execute command, in bytes (1 to
    /// 1 GiB). Larger ones are refused with [`ErrorKind::TooLarge`].
    /// Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().max_message_size(1 << 20);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_data = bytes;
        self
    }

    /// Updates queued per advise link for a client that reads slower than
    /// the item changes (at least 1). On overflow the oldest queued update
    /// of that link is dropped and counted; the next update delivered
    /// carries the count ([`Update::skipped`](super::Update::skipped)).
    /// The latest value is never dropped. Default [`DEFAULT_QUEUE_PER_LINK`].
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().queue_per_link(8);
    /// ```
    pub fn queue_per_link(mut self, n: usize) -> Self {
        self.queue_per_link = n.max(1);
        self
    }

    /// Advise links one conversation may hold; one more is refused with
    /// [`ErrorKind::Full`]. Default [`DEFAULT_MAX_LINKS`].
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().max_links(16);
    /// ```
    pub fn max_links(mut self, n: usize) -> Self {
        self.max_links = n;
        self
    }

    /// Items that pokes may add to one topic (pokes to existing items are
    /// not counted); one more is refused with [`ErrorKind::Full`]. Default
    /// [`DEFAULT_MAX_POKED_ITEMS`].
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().max_poked_items(10);
    /// ```
    pub fn max_poked_items(mut self, n: usize) -> Self {
        self.max_poked_items = n;
        self
    }

    /// Serve `topic` from the start (more with [`DdeServer::add_topic`]).
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().topic("system").topic("prices");
    /// ```
    pub fn topic(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_string());
        self
    }

    /// Decide on pokes (`XTYP_POKE`): `Ok(())` accepts, and the server
    /// stores the value and serves the item's advise loops; `Err(reason)`
    /// refuses, and the client gets [`ErrorKind::Remote`] with the reason.
    /// It runs on a worker thread, never on the thread reading clients; a
    /// panic is a refusal naming it. Default: accept every poke.
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().on_poke(|p| {
    ///     if p.item.starts_with("ro.") { Err("read-only item".into()) } else { Ok(()) }
    /// });
    /// ```
    pub fn on_poke<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Poke<'_>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.on_poke = Some(Arc::new(handler));
        self
    }

    /// Run execute commands (`XTYP_EXECUTE`): `Ok(())` acknowledges,
    /// `Err(reason)` refuses ([`ErrorKind::Remote`] with the reason on the
    /// client). Runs on a worker thread; a panic is a refusal naming it.
    /// Default: refuse every command.
    ///
    /// ```
    /// let _ = ipckit::dde::DdeServerOptions::new().on_execute(|e| match e.command {
    ///     "ping" => Ok(()),
    ///     other => Err(format!("unknown command '{other}'")),
    /// });
    /// ```
    pub fn on_execute<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Execute<'_>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.on_execute = Some(Arc::new(handler));
        self
    }

    /// Register `service` (endpoint kind `dde`, listed by `ipckit ls`) and
    /// serve it on a background readiness loop until the [`DdeServer`] is
    /// dropped. A live server of that name is [`ErrorKind::AlreadyExists`];
    /// a stale one is replaced.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).create("svc").unwrap();
    /// assert_eq!(s.name(), "svc");
    /// ```
    #[doc(alias = "DdeNameService")]
    pub fn create(self, service: &str) -> Result<DdeServer> {
        if self.max_data == 0 || self.max_data > 1 << 30 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_data {} is out of range; use 1 to {} bytes",
                    self.max_data,
                    1 << 30
                ),
            )
            .with_name(service));
        }
        let mut topics = BTreeMap::new();
        for t in &self.topics {
            check_name(t, "topic").map_err(|e| e.with_name(service))?;
            topics.insert(t.clone(), Topic::default());
        }
        let ns = listen::namespace(self.namespace.as_ref())?;
        let bound = listen::bind(&ns, service, KIND, self.tcp.as_deref())?;
        let shared = Arc::new(Shared {
            service: service.to_string(),
            max_data: self.max_data,
            queue_per_link: self.queue_per_link,
            max_links: self.max_links,
            max_poked_items: self.max_poked_items,
            stall: self.limits.get_stall_timeout(),
            state: Mutex::new(State {
                topics,
                convs: HashMap::new(),
                closing: false,
            }),
            sweep: Condvar::new(),
            writers: Pool::new(WRITERS, format!("dde-{service}")),
            handlers: Pool::new(HANDLERS, format!("dde-{service}-h")),
            on_poke: self.on_poke,
            on_execute: self.on_execute,
            events: Mutex::new(VecDeque::new()),
            events_cv: Condvar::new(),
            counters: OnceLock::new(),
            on_set: OnceLock::new(),
        });
        #[cfg(unix)]
        let socket_path = bound.socket_path;
        let reactor = Reactor::start(
            &format!("dde-{service}"),
            Arc::new(Wire(shared.clone())),
            bound.listening,
            self.limits,
        );
        let reactor = match reactor {
            Ok(r) => r,
            Err(e) => {
                #[cfg(unix)]
                let _ = std::fs::remove_file(&socket_path);
                return Err(
                    Error::os(e, "cannot start the server's readiness loop").with_name(service)
                );
            }
        };
        let _ = shared.counters.set(reactor.counters().clone());
        let sweeper = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("ipckit-dde-{service}-sweep"))
                .spawn(move || sweep(&shared))
        };
        let sweeper = match sweeper {
            Ok(s) => s,
            Err(e) => {
                #[cfg(unix)]
                let _ = std::fs::remove_file(&socket_path);
                return Err(Error::os(e, "cannot start the server's thread").with_name(service));
            }
        };
        #[allow(unused_mut)]
        let mut server = DdeServer {
            handle: DdeServerHandle(shared),
            reactor: Some(reactor),
            sweeper: Some(sweeper),
            #[cfg(unix)]
            socket_path,
            #[cfg(windows)]
            os_name: bound.os_name,
            tcp_addr: bound.tcp_addr,
            _claim: bound.claim,
            #[cfg(all(feature = "zenoh", unix))]
            publication: None,
        };
        #[cfg(all(feature = "zenoh", unix))]
        if let Some(fabric) = &self.fabric {
            // On failure `server` drops here: the local endpoint goes too.
            server.publication = Some(crate::fabric::dde::publish(fabric, &server.handle)?);
        }
        Ok(server)
    }
}

/// Check a topic or item name: 1 to 255 bytes of UTF-8.
pub(crate) fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name.len() > wire::MAX_NAME {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a {what} name is 1 to {} bytes; '{name}' has {}",
                wire::MAX_NAME,
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Something that happened to a server's conversations
/// ([`DdeServer::next_event`]).
///
/// ```
/// let e = ipckit::dde::DdeServerEvent::Connected { conversation: 16, topic: "t".into(), peer: "pid 1 (uid 0)".into() };
/// assert!(matches!(e, ipckit::dde::DdeServerEvent::Connected { .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DdeServerEvent {
    /// A client opened a conversation on `topic` (`XTYP_CONNECT_CONFIRM`).
    Connected {
        /// The conversation's number (unique in this server).
        conversation: u64,
        /// Its topic.
        topic: String,
        /// Who the client is ("pid 12 (uid 1000)" or "tcp ADDR").
        peer: String,
    },
    /// The conversation ended (`XTYP_DISCONNECT`): the client closed it or
    /// died, or was dropped for breaking a limit. `error` is a
    /// [`ErrorKind::PeerGone`] saying which.
    Disconnected {
        /// The conversation's number.
        conversation: u64,
        /// Its topic.
        topic: String,
        /// Why it ended ([`ErrorKind::PeerGone`]).
        error: Error,
    },
}

/// A cloneable handle to a running server's items, for handlers and other
/// threads ([`DdeServer::handle`]). It does not keep the server alive: once
/// the server is dropped, its calls fail with [`ErrorKind::PeerGone`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
/// let h = s.handle();
/// std::thread::spawn(move || h.set_item("t", "x", ipckit::clipboard::Format::TEXT, b"1").unwrap())
///     .join().unwrap();
/// assert_eq!(s.item("t", "x").unwrap().1, b"1");
/// ```
#[derive(Clone)]
pub struct DdeServerHandle(Arc<Shared>);

impl std::fmt::Debug for DdeServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DdeServerHandle")
            .field("service", &self.0.service)
            .finish()
    }
}

impl DdeServerHandle {
    /// See [`DdeServer::set_item`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// s.handle().set_item("t", "x", ipckit::clipboard::Format::TEXT, b"2").unwrap();
    /// ```
    #[doc(alias = "DdePostAdvise")]
    pub fn set_item(&self, topic: &str, item: &str, format: Format, data: &[u8]) -> Result<()> {
        self.0.set_item(topic, item, format, data.to_vec(), None)
    }

    /// See [`DdeServer::add_topic`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).create("svc").unwrap();
    /// s.handle().add_topic("t").unwrap();
    /// ```
    pub fn add_topic(&self, topic: &str) -> Result<()> {
        self.0.add_topic(topic)
    }

    /// See [`DdeServer::item`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// assert!(s.handle().item("t", "none").is_none());
    /// ```
    pub fn item(&self, topic: &str, item: &str) -> Option<(Format, Vec<u8>)> {
        self.0.item(topic, item)
    }
}

/// A running DDE server. Dropping it unregisters the service and ends
/// every conversation (clients get [`ErrorKind::PeerGone`]).
///
/// ```
/// use ipckit::dde::{ConversationOptions, Link, DdeServerOptions};
/// use ipckit::clipboard::Format;
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let server = DdeServerOptions::new().namespace(&ns).topic("prices").create("quotes").unwrap();
/// server.set_item("prices", "ACME", Format::TEXT, b"12.5").unwrap();
/// let conv = ConversationOptions::new().namespace(&ns).connect("quotes", "prices").unwrap();
/// let mut hot = conv.advise("ACME", Format::TEXT, Link::Hot).unwrap();
/// server.set_item("prices", "ACME", Format::TEXT, b"13.0").unwrap();
/// let u = hot.recv_timeout(Duration::from_secs(10)).unwrap();
/// assert_eq!(u.data.as_deref(), Some(&b"13.0"[..]));
/// drop(server);
/// let e = hot.recv_timeout(Duration::from_secs(10)).unwrap_err();
/// assert_eq!(e.kind(), ipckit::ErrorKind::PeerGone);
/// ```
pub struct DdeServer {
    handle: DdeServerHandle,
    reactor: Option<Reactor>,
    sweeper: Option<JoinHandle<()>>,
    #[cfg(unix)]
    socket_path: PathBuf,
    /// The named pipe serving it (`\\.\pipe\ipckit.<H>.<service>`).
    #[cfg(windows)]
    os_name: String,
    tcp_addr: Option<SocketAddr>,
    _claim: listen::BoundClaim,
    /// The fabric publication ([`DdeServerOptions::fabric`]).
    #[cfg(all(feature = "zenoh", unix))]
    publication: Option<crate::fabric::dde::Publication>,
}

impl std::fmt::Debug for DdeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DdeServer")
            .field("service", &self.handle.0.service)
            .field("socket", {
                #[cfg(unix)]
                let endpoint = &self.socket_path;
                #[cfg(windows)]
                let endpoint = &self.os_name;
                endpoint
            })
            .field("tcp", &self.tcp_addr)
            .finish()
    }
}

impl DdeServer {
    /// The service name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).create("svc").unwrap();
    /// assert_eq!(s.name(), "svc");
    /// ```
    pub fn name(&self) -> &str {
        &self.handle.0.service
    }

    /// A cloneable handle to the items, for other threads and handlers.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).create("svc").unwrap();
    /// let _h = s.handle();
    /// ```
    pub fn handle(&self) -> DdeServerHandle {
        self.handle.clone()
    }

    /// Serve one more topic (clients can then connect to it). Adding a
    /// topic that exists does nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).create("svc").unwrap();
    /// s.add_topic("system").unwrap();
    /// assert_eq!(s.topics(), ["system"]);
    /// ```
    pub fn add_topic(&self, topic: &str) -> Result<()> {
        self.handle.0.add_topic(topic)
    }

    /// The topics served, sorted.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("b").topic("a").create("svc").unwrap();
    /// assert_eq!(s.topics(), ["a", "b"]);
    /// ```
    pub fn topics(&self) -> Vec<String> {
        self.handle.0.lock().topics.keys().cloned().collect()
    }

    /// Set an item's value (creating the item) and serve every advise loop
    /// on it at once (`DdePostAdvise`): hot links get the data, warm links
    /// a notice, each through its bounded queue, so a slow client never
    /// holds up this call or the other clients. A link advised in another
    /// format than `format` is not served. Errors: [`ErrorKind::NotFound`]
    /// for an unknown topic, [`ErrorKind::TooLarge`] over
    /// [`DdeServerOptions::max_message_size`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::clipboard::Format;
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// s.set_item("t", "x", Format::TEXT, b"1").unwrap();
    /// assert_eq!(s.item("t", "x"), Some((Format::TEXT, b"1".to_vec())));
    /// assert_eq!(s.set_item("none", "x", Format::TEXT, b"").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    #[doc(alias = "DdePostAdvise")]
    pub fn set_item(&self, topic: &str, item: &str, format: Format, data: &[u8]) -> Result<()> {
        self.handle
            .0
            .set_item(topic, item, format, data.to_vec(), None)
    }

    /// An item's format and value, if it exists.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// assert_eq!(s.item("t", "x"), None);
    /// ```
    pub fn item(&self, topic: &str, item: &str) -> Option<(Format, Vec<u8>)> {
        self.handle.0.item(topic, item)
    }

    /// The next conversation event, waiting at most `timeout`; `None` if
    /// none came. The last 4096 events are kept.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::dde::{ConversationOptions, DdeServerEvent, DdeServerOptions};
    /// use std::time::Duration;
    /// let s = DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// let c = ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let e = s.next_event(Duration::from_secs(10)).unwrap();
    /// assert!(matches!(e, DdeServerEvent::Connected { ref topic, .. } if topic == "t"));
    /// drop(c);
    /// match s.next_event(Duration::from_secs(10)).unwrap() {
    ///     DdeServerEvent::Disconnected { error, .. } => assert_eq!(error.kind(), ipckit::ErrorKind::PeerGone),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn next_event(&self, timeout: Duration) -> Option<DdeServerEvent> {
        let s = &self.handle.0;
        let deadline = Instant::now() + timeout;
        let mut q = s.events.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            q = s
                .events_cv
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// What the server accepted, refused and dropped so far, and why.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// let _c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// assert_eq!(s.stats().accepted, 1);
    /// ```
    pub fn stats(&self) -> ConnStats {
        self.reactor
            .as_ref()
            .map(|r| r.counters().snapshot())
            .unwrap_or_default()
    }

    /// The TCP address listened on, if [`DdeServerOptions::tcp`] was set
    /// (Linux only: on Windows asking for TCP is
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let o = ipckit::dde::DdeServerOptions::new().namespace(&ns).tcp("127.0.0.1:0");
    /// # #[cfg(unix)] {
    /// let s = o.create("svc").unwrap();
    /// assert_ne!(s.local_addr().unwrap().port(), 0);
    /// # }
    /// # #[cfg(windows)]
    /// # assert_eq!(o.create("svc").unwrap_err().kind(), ipckit::ErrorKind::Unsupported);
    /// ```
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }
}

impl Drop for DdeServer {
    fn drop(&mut self) {
        // Leave the fabric first: remote clients see PeerGone at once.
        #[cfg(all(feature = "zenoh", unix))]
        drop(self.publication.take());
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.socket_path);
        let s = &self.handle.0;
        s.lock().closing = true;
        s.sweep.notify_all();
        if let Some(mut r) = self.reactor.take() {
            r.stop();
        }
        if let Some(t) = self.sweeper.take() {
            let _ = t.join();
        }
        s.lock().convs.clear();
        s.writers.stop();
        s.handlers.stop();
    }
}

// ------------------------------------------------------------------ state

#[derive(Default)]
struct Topic {
    items: BTreeMap<String, Value>,
    /// Items created by pokes.
    poked: usize,
}

#[derive(Clone)]
struct Value {
    format: Format,
    data: Arc<Vec<u8>>,
}

/// One advise link's queue: hot links queue data, warm ones notices.
struct LinkQ {
    link: Link,
    queue: VecDeque<Option<Arc<Vec<u8>>>>,
    /// Updates dropped since the last one delivered.
    skipped: u64,
}

type LinkKey = (String, u32);

/// One connection: one conversation.
struct Conv {
    conn: Arc<Conn>,
    topic: Option<String>,
    links: HashMap<LinkKey, LinkQ>,
    /// Links with queued updates, served round robin.
    ready: VecDeque<LinkKey>,
    /// Answers to write, ahead of advise frames.
    answers: VecDeque<Vec<u8>>,
    /// A writer is draining this connection.
    writing: bool,
    /// Held back (too much unread) since then.
    blocked_since: Option<Instant>,
}

impl Conv {
    fn has_output(&self) -> bool {
        !self.answers.is_empty() || !self.ready.is_empty()
    }

    /// The next frame to write, and whether it is an answer (reading
    /// resumes after it).
    fn next_frame(&mut self) -> Option<(Vec<u8>, bool)> {
        if let Some(a) = self.answers.pop_front() {
            return Some((a, true));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(l) = self.links.get_mut(&key) else {
                continue;
            };
            let Some(update) = l.queue.pop_front() else {
                continue;
            };
            let skipped = std::mem::take(&mut l.skipped);
            if !l.queue.is_empty() {
                self.ready.push_back(key.clone());
            }
            let (kind, body): (u8, &[u8]) = match &update {
                Some(d) => (wire::DATA, d),
                None => (wire::NOTICE, &[]),
            };
            let h = Header::new(kind, 0, key.1, skipped);
            return Some((wire::frame(h, &key.0, body), false));
        }
        None
    }
}

struct State {
    topics: BTreeMap<String, Topic>,
    convs: HashMap<u64, Conv>,
    closing: bool,
}

struct Shared {
    service: String,
    max_data: usize,
    queue_per_link: usize,
    max_links: usize,
    max_poked_items: usize,
    stall: Duration,
    state: Mutex<State>,
    /// Wakes the sweeper: a connection was held back, or closing.
    sweep: Condvar,
    writers: Arc<Pool>,
    handlers: Arc<Pool>,
    on_poke: Option<PokeFn>,
    on_execute: Option<ExecFn>,
    events: Mutex<VecDeque<DdeServerEvent>>,
    events_cv: Condvar,
    counters: OnceLock<Arc<Counters>>,
    /// Called (under the state lock, so in order) with each new value of
    /// an item: the fabric publication's hook.
    on_set: OnceLock<SetHook>,
}

/// See [`Shared::on_set`].
pub(crate) type SetHook = Box<dyn Fn(&str, &str, Format, &[u8]) + Send + Sync>;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, e: DdeServerEvent) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= EVENTS_KEPT {
            q.pop_front();
        }
        q.push_back(e);
        self.events_cv.notify_all();
    }

    fn add_topic(&self, topic: &str) -> Result<()> {
        check_name(topic, "topic").map_err(|e| e.with_name(&self.service))?;
        self.lock().topics.entry(topic.to_string()).or_default();
        Ok(())
    }

    fn item(&self, topic: &str, item: &str) -> Option<(Format, Vec<u8>)> {
        let st = self.lock();
        let v = st.topics.get(topic)?.items.get(item)?;
        Some((v.format, v.data.to_vec()))
    }

    /// Store a value and serve the item's links. `poked`: the limit on
    /// items pokes create applies.
    fn set_item(
        self: &Arc<Self>,
        topic: &str,
        item: &str,
        format: Format,
        data: Vec<u8>,
        poked: Option<()>,
    ) -> Result<()> {
        check_name(item, "item").map_err(|e| e.with_name(&self.service))?;
        if data.len() > self.max_data {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "item '{item}' of {} bytes is over the server's max_data of {} bytes",
                    data.len(),
                    self.max_data
                ),
            )
            .with_name(&self.service)
            .with_needed(data.len()));
        }
        let mut st = self.lock();
        if st.closing {
            return Err(
                Error::new(ErrorKind::PeerGone, "the DDE server was dropped")
                    .with_name(&self.service),
            );
        }
        let Some(t) = st.topics.get_mut(topic) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the server has no topic '{topic}'; add it with add_topic first"),
            )
            .with_name(&self.service));
        };
        if !t.items.contains_key(item) && poked.is_some() {
            if t.poked >= self.max_poked_items {
                return Err(Error::new(
                    ErrorKind::Full,
                    format!(
                        "topic '{topic}' already has {} items created by pokes, its limit; poke an existing item",
                        t.poked
                    ),
                )
                .with_name(&self.service));
            }
            t.poked += 1;
        }
        let data = Arc::new(data);
        t.items.insert(
            item.to_string(),
            Value {
                format,
                data: data.clone(),
            },
        );
        if let Some(hook) = self.on_set.get() {
            hook(topic, item, format, &data);
        }
        let key = (item.to_string(), format.id());
        let cap = self.queue_per_link;
        let st = &mut *st;
        for conv in st.convs.values_mut() {
            if conv.topic.as_deref() != Some(topic) {
                continue;
            }
            let Some(l) = conv.links.get_mut(&key) else {
                continue;
            };
            let update = match l.link {
                Link::Hot => Some(data.clone()),
                Link::Warm => None,
            };
            if l.queue.len() >= cap {
                l.queue.pop_front();
                l.skipped += 1;
            }
            l.queue.push_back(update);
            if l.queue.len() == 1 {
                conv.ready.push_back(key.clone());
            }
            kick(self, conv);
        }
        Ok(())
    }
}

/// Start a writer for `conv` if it has output, is not being written and is
/// not held back.
fn kick(shared: &Arc<Shared>, conv: &mut Conv) {
    if conv.writing || conv.blocked_since.is_some() || !conv.has_output() {
        return;
    }
    conv.writing = true;
    let id = conv.conn.id();
    let s = shared.clone();
    shared.writers.submit(Box::new(move || drain(&s, id)));
}

/// A writer: write connection `id`'s frames one by one, until none is left
/// or its client has too much unread (then the sweeper takes over).
fn drain(shared: &Arc<Shared>, id: u64) {
    loop {
        let (conn, bytes, answer) = {
            let mut st = shared.lock();
            let Some(c) = st.convs.get_mut(&id) else {
                return;
            };
            if conn_io::unread_outgoing(c.conn.fd()).is_ok_and(|n| n > OUT_HIGH) {
                c.writing = false;
                c.blocked_since = Some(Instant::now());
                shared.sweep.notify_all();
                return;
            }
            match c.next_frame() {
                Some((b, answer)) => (c.conn.clone(), b, answer),
                None => {
                    c.writing = false;
                    return;
                }
            }
        };
        if let Err(e) = conn.send(&bytes) {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                if let Some(c) = shared.counters.get() {
                    c.dropped_stalled.fetch_add(1, Ordering::Relaxed);
                }
            }
            conn.close(None);
            return;
        }
        if answer {
            conn.resume();
        }
    }
}

/// The sweeper: while connections are held back, check every
/// [`RECHECK`] whether their clients read (then write again) or stalled
/// past the stall timeout (then drop them).
fn sweep(shared: &Arc<Shared>) {
    let mut st = shared.lock();
    loop {
        if st.closing {
            return;
        }
        let now = Instant::now();
        let mut any = false;
        let mut resume = Vec::new();
        for (id, c) in st.convs.iter_mut() {
            let Some(since) = c.blocked_since else {
                continue;
            };
            let unread = conn_io::unread_outgoing(c.conn.fd()).unwrap_or(0);
            if unread <= OUT_HIGH / 2 {
                c.blocked_since = None;
                resume.push(*id);
            } else if now.duration_since(since) >= shared.stall {
                c.blocked_since = None;
                if let Some(k) = shared.counters.get() {
                    k.dropped_stalled.fetch_add(1, Ordering::Relaxed);
                }
                c.conn.close(Some(format!(
                    "it did not read what the server wrote for {:?}",
                    shared.stall
                )));
            } else {
                any = true;
            }
        }
        for id in resume {
            if let Some(c) = st.convs.get_mut(&id) {
                kick(shared, c);
            }
        }
        st = if any {
            shared
                .sweep
                .wait_timeout(st, RECHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0
        } else {
            // Either nothing is held back, or a writer just held one back
            // (it notifies under the lock).
            let again = st.convs.values().any(|c| c.blocked_since.is_some());
            if again {
                continue;
            }
            shared.sweep.wait(st).unwrap_or_else(|p| p.into_inner())
        };
    }
}

/// Queue `bytes` as the answer to the request in flight on `conn`.
fn answer(shared: &Arc<Shared>, st: &mut State, conn: &Conn, bytes: Vec<u8>) {
    if let Some(c) = st.convs.get_mut(&conn.id()) {
        c.answers.push_back(bytes);
        kick(shared, c);
    }
}

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".into())
}

// ------------------------------------------------------------------- wire

/// The server's side of the readiness loop: cuts frames, answers cheap
/// transactions at once, hands pokes and executes to the handler pool, and
/// pauses each connection until its answer is written (one transaction in
/// flight per conversation).
struct Wire(Arc<Shared>);

impl Wire {
    fn malformed(&self, why: String) -> Flow {
        if let Some(c) = self.0.counters.get() {
            c.dropped_malformed.fetch_add(1, Ordering::Relaxed);
        }
        Flow::Close(Some(why))
    }
}

impl Protocol for Wire {
    fn header_len(&self) -> usize {
        wire::LEN
    }

    fn frame_len(&self, header: &[u8]) -> std::result::Result<FrameLen, String> {
        let h = Header::decode(header)?;
        if !(wire::CONNECT..=wire::LIST).contains(&h.kind) {
            return Err(format!("it sent a frame of unknown kind {}", h.kind));
        }
        let total = wire::LEN + h.rest();
        Ok(if h.body_len > self.0.max_data {
            FrameLen::Skip(total)
        } else {
            FrameLen::Whole(total)
        })
    }

    fn hello(&self, _conn: &Conn) -> Vec<u8> {
        Hello::ok(wire::MAGIC, wire::VERSION, self.0.max_data as u32)
            .encode()
            .to_vec()
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        Hello::ok(wire::MAGIC, wire::VERSION, self.0.max_data as u32)
            .with_status(why.status())
            .encode()
            .to_vec()
    }

    fn owes_handshake(&self, _conn: &Conn) -> bool {
        true
    }

    fn on_open(&self, conn: &Arc<Conn>) -> Flow {
        let mut st = self.0.lock();
        if st.closing {
            return Flow::Close(None);
        }
        st.convs.insert(
            conn.id(),
            Conv {
                conn: conn.clone(),
                topic: None,
                links: HashMap::new(),
                ready: VecDeque::new(),
                answers: VecDeque::new(),
                writing: false,
                blocked_since: None,
            },
        );
        Flow::Continue
    }

    fn on_close(&self, conn: &Arc<Conn>, why: Option<&str>) {
        let conv = self.0.lock().convs.remove(&conn.id());
        if let Some(Conv {
            topic: Some(topic), ..
        }) = conv
        {
            let text = match why {
                Some(w) => format!(
                    "the server dropped the conversation of {}: {w}",
                    conn.peer().describe()
                ),
                None => format!(
                    "the client {} closed the conversation or died",
                    conn.peer().describe()
                ),
            };
            self.0.event(DdeServerEvent::Disconnected {
                conversation: conn.id(),
                topic,
                error: Error::new(ErrorKind::PeerGone, text).with_name(&self.0.service),
            });
        }
    }

    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow {
        let s = &self.0;
        let h = match Header::decode(&frame.bytes) {
            Ok(h) => h,
            Err(why) => return self.malformed(why),
        };
        let id = h.value;
        let mut st = s.lock();
        if st.closing {
            return Flow::Close(None);
        }
        if frame.skipped {
            let text = format!(
                "{} bytes of data are over the server's limit of {} bytes",
                h.body_len, s.max_data
            );
            answer(
                s,
                &mut st,
                conn,
                wire::error(id, wire::ERR_TOO_LARGE, &text),
            );
            return Flow::Pause;
        }
        let Ok(name) = std::str::from_utf8(&frame.bytes[wire::LEN..wire::LEN + h.name_len]) else {
            drop(st);
            return self.malformed("it sent a name that is not UTF-8".into());
        };
        let name = name.to_string();
        let body = &frame.bytes[wire::LEN + h.name_len..];
        let topic = st.convs.get(&conn.id()).and_then(|c| c.topic.clone());
        let Some(topic) = topic else {
            let reply = match h.kind {
                wire::CONNECT => {
                    if st.topics.contains_key(&name) {
                        if let Some(c) = st.convs.get_mut(&conn.id()) {
                            c.topic = Some(name.clone());
                        }
                        s.event(DdeServerEvent::Connected {
                            conversation: conn.id(),
                            topic: name,
                            peer: conn.peer().describe(),
                        });
                        wire::reply(id, 0, &[])
                    } else {
                        let known: Vec<&str> = st.topics.keys().map(String::as_str).collect();
                        wire::error(
                            id,
                            wire::ERR_NOT_FOUND,
                            &format!(
                                "the service has no topic '{name}'; its topics: {}",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        )
                    }
                }
                wire::LIST => {
                    let topics: Vec<String> = st.topics.keys().cloned().collect();
                    wire::reply(id, 0, &wire::encode_list(&topics))
                }
                k => {
                    drop(st);
                    return self.malformed(format!(
                        "it sent a transaction (kind {k}) before connecting to a topic"
                    ));
                }
            };
            answer(s, &mut st, conn, reply);
            return Flow::Pause;
        };
        let format = Format::from_id(h.format);
        let reply = match h.kind {
            wire::CONNECT | wire::LIST => wire::error(
                id,
                wire::ERR_INVALID,
                &format!(
                    "the conversation is already on topic '{topic}'; open another conversation"
                ),
            ),
            wire::REQUEST => match st.topics.get(&topic).and_then(|t| t.items.get(&name)) {
                None => not_found(id, &topic, &name),
                Some(v) if v.format != format => wrong_format(id, &name, v.format, format),
                Some(v) => wire::reply(id, v.format.id(), &v.data),
            },
            wire::ADVISE => {
                let link = match h.code {
                    wire::LINK_HOT => Link::Hot,
                    wire::LINK_WARM => Link::Warm,
                    c => {
                        drop(st);
                        return self.malformed(format!("it asked for an unknown link type {c}"));
                    }
                };
                let current = st
                    .topics
                    .get(&topic)
                    .and_then(|t| t.items.get(&name))
                    .map(|v| v.format);
                let max_links = s.max_links;
                let conv = st.convs.get_mut(&conn.id()).expect("open conversation");
                let key = (name.clone(), h.format);
                match current {
                    None => not_found(id, &topic, &name),
                    Some(f) if f != format => wrong_format(id, &name, f, format),
                    Some(_) if !conv.links.contains_key(&key) && conv.links.len() >= max_links => {
                        wire::error(
                            id,
                            wire::ERR_LIMIT,
                            &format!(
                                "the conversation already has {max_links} advise links, the server's limit; unadvise some first"
                            ),
                        )
                    }
                    Some(_) => {
                        let l = conv.links.entry(key).or_insert(LinkQ {
                            link,
                            queue: VecDeque::new(),
                            skipped: 0,
                        });
                        l.link = link;
                        wire::reply(id, 0, &[])
                    }
                }
            }
            wire::UNADVISE => {
                let conv = st.convs.get_mut(&conn.id()).expect("open conversation");
                let before = conv.links.len();
                conv.links.retain(|(item, _), _| *item != name);
                if conv.links.len() == before {
                    wire::error(
                        id,
                        wire::ERR_NOT_FOUND,
                        &format!("the conversation has no advise link on item '{name}'"),
                    )
                } else {
                    wire::reply(id, 0, &[])
                }
            }
            wire::POKE => {
                drop(st);
                let s2 = s.clone();
                let data = body.to_vec();
                let conn = conn.clone();
                s.handlers.submit(Box::new(move || {
                    let bytes = run_poke(&s2, id, &topic, &name, format, data);
                    let mut st = s2.lock();
                    answer(&s2, &mut st, &conn, bytes);
                }));
                return Flow::Pause;
            }
            wire::EXECUTE => {
                drop(st);
                let Ok(command) = String::from_utf8(body.to_vec()) else {
                    let mut st = s.lock();
                    let e = wire::error(id, wire::ERR_INVALID, "the command is not UTF-8 text");
                    answer(s, &mut st, conn, e);
                    return Flow::Pause;
                };
                let s2 = s.clone();
                let conn = conn.clone();
                s.handlers.submit(Box::new(move || {
                    let bytes = run_execute(&s2, id, &topic, &command);
                    let mut st = s2.lock();
                    answer(&s2, &mut st, &conn, bytes);
                }));
                return Flow::Pause;
            }
            k => {
                drop(st);
                return self.malformed(format!("it sent a frame of unknown kind {k}"));
            }
        };
        answer(s, &mut st, conn, reply);
        Flow::Pause
    }
}

fn not_found(id: u64, topic: &str, item: &str) -> Vec<u8> {
    wire::error(
        id,
        wire::ERR_NOT_FOUND,
        &format!("topic '{topic}' has no item '{item}'"),
    )
}

fn wrong_format(id: u64, item: &str, has: Format, asked: Format) -> Vec<u8> {
    wire::error(
        id,
        wire::ERR_NOT_FOUND,
        &format!("item '{item}' is in format {has}, not {asked}; ask for {has}"),
    )
}

fn run_poke(
    s: &Arc<Shared>,
    id: u64,
    topic: &str,
    item: &str,
    format: Format,
    data: Vec<u8>,
) -> Vec<u8> {
    match poke_verdict(s, topic, item, format, data) {
        Ok(()) => wire::reply(id, 0, &[]),
        Err((code, why)) => wire::error(id, code, &why),
    }
}

/// Run the poke handler and store the value: `Err((wire error code, text))`
/// if refused or failed.
fn poke_verdict(
    s: &Arc<Shared>,
    topic: &str,
    item: &str,
    format: Format,
    data: Vec<u8>,
) -> std::result::Result<(), (u8, String)> {
    if check_name(item, "item").is_err() {
        return Err((wire::ERR_INVALID, "an item name is 1 to 255 bytes".into()));
    }
    let handle = DdeServerHandle(s.clone());
    let verdict = match &s.on_poke {
        None => Ok(()),
        Some(f) => {
            let p = Poke {
                topic,
                item,
                format,
                data: &data,
                server: &handle,
            };
            catch_unwind(AssertUnwindSafe(|| f(&p)))
                .unwrap_or_else(|p| Err(format!("its poke handler panicked: {}", panic_text(&*p))))
        }
    };
    if let Err(why) = verdict {
        return Err((wire::ERR_REFUSED, why));
    }
    s.set_item(topic, item, format, data, Some(()))
        .map_err(|e| {
            let code = match e.kind() {
                ErrorKind::Full => wire::ERR_LIMIT,
                ErrorKind::TooLarge => wire::ERR_TOO_LARGE,
                ErrorKind::NotFound => wire::ERR_NOT_FOUND,
                _ => wire::ERR_REFUSED,
            };
            (code, e.message().to_string())
        })
}

fn run_execute(s: &Arc<Shared>, id: u64, topic: &str, command: &str) -> Vec<u8> {
    match execute_verdict(s, topic, command) {
        Ok(()) => wire::reply(id, 0, &[]),
        Err(why) => wire::error(id, wire::ERR_REFUSED, &why),
    }
}

/// Run the execute handler: `Err(reason)` if it refused.
fn execute_verdict(s: &Arc<Shared>, topic: &str, command: &str) -> std::result::Result<(), String> {
    let handle = DdeServerHandle(s.clone());
    let verdict = match &s.on_execute {
        None => Err(format!(
            "the server takes no commands (it has no execute handler); '{command}' was not run"
        )),
        Some(f) => {
            let e = Execute {
                topic,
                command,
                server: &handle,
            };
            catch_unwind(AssertUnwindSafe(|| f(&e))).unwrap_or_else(|p| {
                Err(format!("its execute handler panicked: {}", panic_text(&*p)))
            })
        }
    };
    verdict
}

// ----------------------------------------------------------------- fabric

/// What the fabric publication (`fabric::dde`) needs of a server. Each
/// `Err` is a wire error code and its text, as the local protocol sends.
#[cfg(all(feature = "zenoh", unix))]
impl DdeServerHandle {
    pub(crate) fn service(&self) -> &str {
        &self.0.service
    }

    pub(crate) fn topic_list(&self) -> Vec<String> {
        self.0.lock().topics.keys().cloned().collect()
    }

    /// Check that `topic` is served.
    fn served(st: &State, topic: &str) -> std::result::Result<(), (u8, String)> {
        if st.topics.contains_key(topic) {
            return Ok(());
        }
        let known: Vec<&str> = st.topics.keys().map(String::as_str).collect();
        Err((
            wire::ERR_NOT_FOUND,
            format!(
                "the service has no topic '{topic}'; its topics: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }

    /// A request (cold link), or with `data: false` only the check an
    /// advise makes: the item exists in `format`.
    pub(crate) fn fabric_request(
        &self,
        topic: &str,
        item: &str,
        format: Format,
        data: bool,
    ) -> std::result::Result<Vec<u8>, (u8, String)> {
        let st = self.0.lock();
        Self::served(&st, topic)?;
        match st.topics.get(topic).and_then(|t| t.items.get(item)) {
            None => Err((
                wire::ERR_NOT_FOUND,
                format!("topic '{topic}' has no item '{item}'"),
            )),
            Some(v) if v.format != format => Err((
                wire::ERR_NOT_FOUND,
                format!(
                    "item '{item}' is in format {}, not {format}; ask for {}",
                    v.format, v.format
                ),
            )),
            Some(v) if data => Ok(v.data.to_vec()),
            Some(_) => Ok(Vec::new()),
        }
    }

    pub(crate) fn fabric_poke(
        &self,
        topic: &str,
        item: &str,
        format: Format,
        data: Vec<u8>,
    ) -> std::result::Result<(), (u8, String)> {
        Self::served(&self.0.lock(), topic)?;
        if data.len() > self.0.max_data {
            return Err((
                wire::ERR_TOO_LARGE,
                format!(
                    "{} bytes of data are over the server's limit of {} bytes",
                    data.len(),
                    self.0.max_data
                ),
            ));
        }
        poke_verdict(&self.0, topic, item, format, data)
    }

    pub(crate) fn fabric_execute(
        &self,
        topic: &str,
        command: &str,
    ) -> std::result::Result<(), (u8, String)> {
        Self::served(&self.0.lock(), topic)?;
        if command.len() > self.0.max_data {
            return Err((
                wire::ERR_TOO_LARGE,
                format!(
                    "a command of {} bytes is over the server's limit of {} bytes",
                    command.len(),
                    self.0.max_data
                ),
            ));
        }
        execute_verdict(&self.0, topic, command).map_err(|why| (wire::ERR_REFUSED, why))
    }

    /// Run `job` on the server's handler pool (never on Zenoh's threads).
    pub(crate) fn run(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        self.0.handlers.submit(job);
    }

    /// Install the hook called with every new item value.
    pub(crate) fn on_set(&self, hook: SetHook) {
        let _ = self.0.on_set.set(hook);
    }
}
