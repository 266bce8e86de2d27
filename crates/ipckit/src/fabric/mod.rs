//! Services found by name across machines, over a Zenoh fabric (feature
//! `zenoh`).
//!
//! ipckit's own `tcp://HOST:PORT` reaches a server whose address you know.
//! The fabric adds what plain TCP does not give: a service is found by
//! *name* on any machine of the fabric, and a client knows at once when it
//! goes away. Underneath is one [Eclipse Zenoh](https://zenoh.io) session
//! per process (a [`Fabric`]); no Zenoh type appears in this API.
//!
//! - A [`Server`] publishes named methods: one Zenoh queryable per method
//!   under `ipckit/<namespace>/svc/<name>/<method>` (the built-in
//!   `ipckit.describe` included) and a liveliness token
//!   `ipckit/<namespace>/alive/svc/<name>/.<owner>` (the owner: its
//!   session's Zenoh id) that vanishes when the process ends, however it
//!   ends. A local service joins with
//!   [`service::Server::publish`](crate::service::Server::publish).
//! - A [`Client`] ([`Fabric::connect_service`]) waits for that token, then
//!   calls methods with the local services' API and errors (`call`,
//!   `call_timeout`, `call_async`): no token within the timeout →
//!   [`NotFound`](crate::ErrorKind::NotFound); token gone during a call →
//!   [`PeerGone`](crate::ErrorKind::PeerGone) at once; a handler error →
//!   [`Remote`](crate::ErrorKind::Remote) with its code; deadline passed →
//!   [`Timeout`](crate::ErrorKind::Timeout).
//! - Discovery: [`Fabric::endpoints`] lists the live endpoints of the
//!   namespace on every machine (every kind: services, DDE servers, group
//!   members, message receivers), [`Fabric::watch`] reports them as they
//!   come and go.
//!
//! Bodies are postcard (or JSON, [`Client::call_json`]) exactly as on a
//! local service, so a handler written for
//! [`service::ServerBuilder::handler`](crate::service::ServerBuilder::handler)
//! works here unchanged.
//!
//! Other mechanisms join the fabric through their own options, with the
//! same API as locally: a DDE server with `DdeServerOptions::fabric`
//! (clients connect to `zenoh://SERVICE`), mailslot broadcast groups with
//! `MailslotOptions::fabric` / `WriterOptions::fabric`, and window-message
//! broadcast with `ReceiverOptions::fabric` / `Messenger::fabric` (reliable,
//! up to [`MAX_BROADCAST`] bytes).
//!
//! Process A, on one machine (listens on TCP port 7447, and finds peers by
//! multicast scouting on the LAN, Zenoh's default):
//!
//! ```no_run
//! use ipckit::fabric::Fabric;
//! use ipckit::service::RemoteError;
//!
//! let fabric = Fabric::builder().listen("tcp/0.0.0.0:7447").open()?;
//! let server = fabric
//!     .server("calc")
//!     .handler("add", |(a, b): (i64, i64)| {
//!         a.checked_add(b).ok_or(RemoteError::new(7, "overflow"))
//!     })
//!     .bind()?;
//! server.wait();
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B, on another machine (or the same one):
//!
//! ```no_run
//! use std::time::Duration;
//! use ipckit::fabric::Fabric;
//!
//! let fabric = Fabric::builder().connect("tcp/10.0.0.1:7447").open()?;
//! let calc = fabric.connect_service("calc", Duration::from_secs(5))?;
//! assert_eq!(calc.call::<_, i64>("add", &(1, 2))?, 3);
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Both in one process, as a runnable example (no network: multicast
//! scouting off, listening on loopback only):
//!
//! ```
//! use std::time::Duration;
//! use ipckit::fabric::Fabric;
//! use ipckit::service::RemoteError;
//!
//! let fabric = Fabric::builder()
//!     .namespace("doc-fabric-mod")
//!     .multicast_scouting(false)
//!     .listen("tcp/127.0.0.1:0")
//!     .open()
//!     .unwrap();
//! let _server = fabric
//!     .server("calc")
//!     .handler("add", |(a, b): (i64, i64)| {
//!         a.checked_add(b).ok_or(RemoteError::new(7, "overflow"))
//!     })
//!     .bind()
//!     .unwrap();
//! let calc = fabric.connect_service("calc", Duration::from_secs(5)).unwrap();
//! assert_eq!(calc.call::<_, i64>("add", &(1, 2)).unwrap(), 3);
//! let e = calc.call::<_, i64>("add", &(i64::MAX, 1)).unwrap_err();
//! assert_eq!((e.kind(), e.remote_code()), (ipckit::ErrorKind::Remote, Some(7)));
//! ```

pub(crate) mod broadcast;
mod client;
#[cfg(feature = "dde")]
pub(crate) mod dde;
mod discovery;
mod server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use zenoh::Wait as _;

use crate::error::{Error, ErrorKind, Result};

pub use broadcast::MAX_BROADCAST;
pub use client::Client;
pub use discovery::{Change, Endpoint, Watcher};
pub use server::{Server, ServerBuilder};

/// Environment variable naming a Zenoh configuration file (JSON5) that
/// [`FabricBuilder::open`] starts from when no
/// [`config_file`](FabricBuilder::config_file) is given.
pub const CONFIG_ENV: &str = "IPCKIT_ZENOH_CONFIG";

/// The namespace a [`Fabric`] uses unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How the session joins the fabric.
///
/// ```
/// assert_eq!(ipckit::fabric::Mode::default(), ipckit::fabric::Mode::Peer);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Mode {
    /// Talk directly to other peers (found by scouting or `connect`), and
    /// accept their connections on the `listen` endpoints. Zenoh's
    /// default.
    #[default]
    Peer,
    /// Talk only through the router(s) given with `connect`.
    Client,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Peer => "peer",
            Mode::Client => "client",
        }
    }
}

/// Settings of a [`Fabric`], made by [`Fabric::builder`].
///
/// Starting point: the Zenoh configuration file given by
/// [`config_file`](Self::config_file), else the one named by
/// `IPCKIT_ZENOH_CONFIG`, else Zenoh's defaults (peer mode, multicast
/// scouting on, listening on an ephemeral TCP port of every interface).
/// Each setting made here then overrides that.
///
/// ```
/// let b = ipckit::fabric::Fabric::builder()
///     .mode(ipckit::fabric::Mode::Peer)
///     .multicast_scouting(false)
///     .listen("tcp/127.0.0.1:0")
///     .namespace("lab");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `open`"]
pub struct FabricBuilder {
    mode: Option<Mode>,
    listen: Vec<String>,
    connect: Vec<String>,
    multicast: Option<bool>,
    config_file: Option<PathBuf>,
    namespace: Option<String>,
}

impl FabricBuilder {
    /// Peer or client mode (Zenoh's `mode`). Default: the configuration
    /// file's, else peer.
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder().mode(ipckit::fabric::Mode::Client);
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Accept connections on `endpoint`, a Zenoh locator such as
    /// `tcp/0.0.0.0:7447` or `tcp/[::]:0` (Zenoh's `listen/endpoints`;
    /// `tls/…` and `quic/…` need the `zenoh-tls` / `zenoh-quic` features).
    /// May be given several times; replaces the configuration's list.
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder().listen("tcp/127.0.0.1:0");
    /// ```
    pub fn listen(mut self, endpoint: impl Into<String>) -> Self {
        self.listen.push(endpoint.into());
        self
    }

    /// Connect to the peer or router at `endpoint`, e.g.
    /// `tcp/10.0.0.1:7447` (Zenoh's `connect/endpoints`). May be given
    /// several times; replaces the configuration's list.
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder().connect("tcp/10.0.0.1:7447");
    /// ```
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.connect.push(endpoint.into());
        self
    }

    /// Find peers on the local network by UDP multicast scouting, or not
    /// (Zenoh's `scouting/multicast/enabled`; on by default).
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder().multicast_scouting(false);
    /// ```
    pub fn multicast_scouting(mut self, on: bool) -> Self {
        self.multicast = Some(on);
        self
    }

    /// Start from this Zenoh configuration file (JSON5) rather than from
    /// `IPCKIT_ZENOH_CONFIG` or the defaults.
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder().config_file("/etc/ipckit/zenoh.json5");
    /// ```
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// The namespace: services are visible only to fabrics of the same
    /// namespace (it is the key prefix `ipckit/<namespace>`), as local ones
    /// are only to processes of the same namespace directory. 1–200
    /// characters of `[A-Za-z0-9._-]`; default [`DEFAULT_NAMESPACE`].
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder().namespace("lab-3");
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Open the Zenoh session. Clones of the [`Fabric`] share it; it closes
    /// when the last clone (and every server and client made from it) is
    /// dropped.
    ///
    /// Errors: [`ErrorKind::InvalidName`] (namespace),
    /// [`ErrorKind::InvalidInput`] (an endpoint or the configuration file
    /// is not valid), [`ErrorKind::Io`] (the session could not start, e.g.
    /// the listen port is taken).
    ///
    /// ```
    /// let fabric = ipckit::fabric::Fabric::builder()
    ///     .multicast_scouting(false)
    ///     .listen("tcp/127.0.0.1:0")
    ///     .open()
    ///     .unwrap();
    /// assert_eq!(fabric.namespace(), "default");
    /// ```
    pub fn open(self) -> Result<Fabric> {
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        validate_chunk(&namespace, "namespace")?;
        let config = self.config()?;
        let session = zenoh::open(config).wait().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot open the Zenoh session: {e}; check the listen/connect endpoints and the configuration"),
            )
        })?;
        Ok(Fabric {
            inner: Arc::new(Inner {
                prefix: format!("ipckit/{namespace}"),
                namespace,
                session,
            }),
        })
    }

    /// [`open`](Self::open) the session and make it the process-wide one
    /// that [`Fabric::global`] returns.
    ///
    /// Errors: those of `open`, and [`ErrorKind::AlreadyExists`] if this
    /// process already has one (nothing is opened then).
    ///
    /// ```no_run
    /// let fabric = ipckit::fabric::Fabric::builder().connect("tcp/10.0.0.1:7447").install()?;
    /// assert_eq!(ipckit::fabric::Fabric::global()?.key_prefix(), fabric.key_prefix());
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    pub fn install(self) -> Result<Fabric> {
        let mut g = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "this process already has its fabric session; use Fabric::global()",
            ));
        }
        let f = self.open()?;
        *g = Some(f.clone());
        Ok(f)
    }

    /// The Zenoh configuration these settings make.
    fn config(&self) -> Result<zenoh::Config> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::InvalidInput, format!("{what}: {e}"))
        };
        let file = self
            .config_file
            .clone()
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
        let mut config = match &file {
            Some(path) => zenoh::Config::from_file(path).map_err(|e| {
                bad(
                    &format!("cannot read the Zenoh configuration {}", path.display()),
                    &e,
                )
            })?,
            None => zenoh::Config::default(),
        };
        let mut set = |key: &str, value: String| {
            config
                .insert_json5(key, &value)
                .map_err(|e| bad(&format!("invalid Zenoh setting {key} = {value}"), &e))
        };
        if let Some(m) = self.mode {
            set("mode", json_str(m.as_str()))?;
        }
        if !self.listen.is_empty() {
            set("listen/endpoints", json_list(&self.listen))?;
        }
        if !self.connect.is_empty() {
            set("connect/endpoints", json_list(&self.connect))?;
        }
        if let Some(on) = self.multicast {
            set("scouting/multicast/enabled", on.to_string())?;
        }
        Ok(config)
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// A handle on this process's Zenoh session: the fabric that services are
/// published on and found by name across machines.
///
/// Cheap to clone; clones share the one session. Make it with
/// [`Fabric::builder`], or take the process-wide one with
/// [`Fabric::global`].
///
/// ```
/// let fabric = ipckit::fabric::Fabric::builder()
///     .namespace("doc-fabric")
///     .multicast_scouting(false)
///     .listen("tcp/127.0.0.1:0")
///     .open()
///     .unwrap();
/// assert_eq!(fabric.key_prefix(), "ipckit/doc-fabric");
/// let same = fabric.clone();
/// assert_eq!(same.id(), fabric.id());
/// ```
#[derive(Clone)]
pub struct Fabric {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    /// `ipckit/<namespace>`.
    prefix: String,
    session: zenoh::Session,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close now (peers see our tokens go at once), not whenever the
        // runtime gets to it.
        let _ = self.session.close().wait();
    }
}

/// The process-wide fabric ([`Fabric::global`], [`FabricBuilder::install`]).
static GLOBAL: Mutex<Option<Fabric>> = Mutex::new(None);

impl Fabric {
    /// Settings for a new session.
    ///
    /// ```
    /// let b = ipckit::fabric::Fabric::builder();
    /// ```
    pub fn builder() -> FabricBuilder {
        FabricBuilder::default()
    }

    /// The process-wide fabric: the one [`FabricBuilder::install`] made,
    /// else one opened now with the defaults (and `IPCKIT_ZENOH_CONFIG`)
    /// and kept for the life of the process.
    ///
    /// ```no_run
    /// let a = ipckit::fabric::Fabric::global()?;
    /// let b = ipckit::fabric::Fabric::global()?;
    /// assert_eq!(a.id(), b.id());
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    pub fn global() -> Result<Fabric> {
        let mut g = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &*g {
            return Ok(f.clone());
        }
        let f = Fabric::builder().open()?;
        *g = Some(f.clone());
        Ok(f)
    }

    /// The namespace (see [`FabricBuilder::namespace`]).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("n1").open().unwrap();
    /// assert_eq!(fabric.namespace(), "n1");
    /// ```
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The key prefix of everything this fabric publishes:
    /// `ipckit/<namespace>`.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").open().unwrap();
    /// assert_eq!(fabric.key_prefix(), "ipckit/default");
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// This session's Zenoh id, as text.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").open().unwrap();
    /// assert!(!fabric.id().is_empty());
    /// ```
    pub fn id(&self) -> String {
        self.inner.session.zid().to_string()
    }

    /// A server named `name` to publish on this fabric (see
    /// [`ServerBuilder`]).
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-server").open().unwrap();
    /// let server = fabric.server("echo")
    ///     .handler("echo", |s: String| Ok::<_, String>(s))
    ///     .bind()
    ///     .unwrap();
    /// assert_eq!(server.name(), "echo");
    /// ```
    pub fn server(&self, name: &str) -> ServerBuilder {
        ServerBuilder::new(self.clone(), name)
    }

    /// Find the service `name` on the fabric, waiting up to `timeout` for
    /// it to appear (its liveliness token; discovery of a new peer takes a
    /// few milliseconds).
    ///
    /// Errors: [`ErrorKind::NotFound`] (no such service within `timeout`),
    /// [`ErrorKind::InvalidName`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-connect").open().unwrap();
    /// let e = fabric.connect_service("nobody", Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// ```
    pub fn connect_service(&self, name: &str, timeout: std::time::Duration) -> Result<Client> {
        Client::connect(self.clone(), name, timeout)
    }

    fn session(&self) -> &zenoh::Session {
        &self.inner.session
    }

    /// `<prefix>/alive/svc/<name>/.<zid>`: this session's liveliness token
    /// for the service `name` (see [`alive_key`](Self::alive_key)).
    fn token_key(&self, name: &str) -> String {
        self.alive_key("svc", name)
    }

    /// `<prefix>/alive/<kind>/<name>/.<zid>`: the liveliness token this
    /// session declares for its endpoint `name` of `kind` (`svc`, `dde`,
    /// …). The last chunk is the owner's Zenoh id after a dot (a name
    /// segment never starts with one), which discovery reports.
    pub(crate) fn alive_key(&self, kind: &str, name: &str) -> String {
        format!(
            "{}/alive/{kind}/{name}/.{}",
            self.inner.prefix,
            self.inner.session.zid()
        )
    }

    /// `<prefix>/alive/<kind>/<name>/*`: the tokens of endpoint `name` of
    /// `kind`, whoever owns them.
    pub(crate) fn alive_pattern(&self, kind: &str, name: &str) -> String {
        format!("{}/alive/{kind}/{name}/*", self.inner.prefix)
    }

    /// `<prefix>/svc/<name>/<method>`: a method's queryable.
    fn method_key(&self, name: &str, method: &str) -> String {
        format!("{}/svc/{name}/{method}", self.inner.prefix)
    }
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric")
            .field("namespace", &self.inner.namespace)
            .field("id", &self.id())
            .finish()
    }
}

/// Check a namespace or method name: one Zenoh key chunk of
/// `[A-Za-z0-9._-]` (no `/`, no wildcard), 1–200 characters.
fn validate_chunk(s: &str, what: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= crate::name::MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!("invalid {what}: use 1 to 200 characters of [A-Za-z0-9._-]"),
        )
        .with_name(s))
    }
}

/// A Zenoh failure as an ipckit error.
fn zerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}
