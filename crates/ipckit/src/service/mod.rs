//! Services: request/response RPC to a compute server (the seed's
//! `SendMessage` + `ReadProcessMemory` round trip, done properly).
//!
//! A [`Server`] offers methods by name; each is a typed function
//! `Fn(Req) -> Result<Resp, E>` whose request and response are serde types.
//! A [`Client`] calls one and gets the structured result back as soon as it
//! is computed — blocking ([`Client::call`], [`Client::call_timeout`]) or,
//! with the `tokio` feature, as a future (`Client::call_async`). Locally
//! the transport is a Unix socket in the namespace (a named pipe on
//! Windows, see below); `tcp://HOST:PORT` reaches a server that also
//! listens on TCP, with the same API.
//!
//! Many calls can be in flight on one connection (each carries a call id)
//! and a client may be shared by many threads. Rust clients send postcard
//! bodies; the CLI and other languages send JSON ([`Client::call_json`]);
//! the server answers in the encoding the call used. Every server also
//! answers `ipckit.describe` ([`Describe`]).
//!
//! # On Windows
//!
//! Services build and run on Windows too, with the same API and the same
//! frames: a service named `name` in namespace `ns` listens on the
//! byte-mode duplex named pipe `\\.\pipe\ipckit.<H>.<name>` (`<H>`: a
//! hash of the namespace directory's path; `/` in the name written `:`),
//! one pipe instance per connection, carrying exactly the bytes a Unix
//! socket carries on Linux (the hello, then call and reply frames; see
//! `docs/PROTOCOL.md`). A name given in the system's form, `\\.\pipe\X`,
//! is used as is. A service and a pipe server of the same name collide: the
//! second gets [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists).
//! The server admits only clients running as the calling user (its pipe
//! is user-only, and each client's process is checked), and a client talks
//! only to a server running as its own user unless
//! [`ClientBuilder::allow_any_server`] (Windows has no numeric user ids:
//! [`ClientBuilder::allow_server_uids`] changes nothing there).
//!
//! What differs from Linux:
//!
//! - no shared-memory lanes: every call goes over the pipe,
//!   [`Client::transport`] reports [`Transport::Socket`](crate::Transport::Socket), and
//!   asking for [`Transport::SharedMemory`](crate::Transport::SharedMemory) explicitly
//!   fails with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported). Loans
//!   ([`Client::loan`]) are heap buffers;
//! - no TCP: [`ServerBuilder::tcp`] makes `bind` fail, and a `tcp://` name
//!   makes `connect` fail, both with
//!   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported);
//! - no endpoint records: a server vanishes with its pipe, so there is no
//!   stale server to replace, `Namespace::list` does not show
//!   services, and their counters are not published for `ipckit ls`
//!   (`ipckit.describe` still reports them);
//! - no Zenoh fabric (`Server::publish`).
//!
//! Process A (the compute server):
//!
//! ```no_run
//! use ipckit::service::{RemoteError, Server};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct MyInfo { red: f64, blue: f64 }
//!
//! let server = Server::builder("compare")
//!     .handler("compare", |mut m: MyInfo| {
//!         m.red = 2.0;
//!         m.blue = 1.0;
//!         Ok::<_, RemoteError>(m)
//!     })
//!     .bind()?;
//! server.wait();
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (the client):
//!
//! ```no_run
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct MyInfo { red: f64, blue: f64 }
//! use std::time::Duration;
//! let client = ipckit::service::Client::connect("compare", Duration::from_secs(5))?;
//! let out: MyInfo = client.call("compare", &MyInfo { red: 3333.0, blue: 20.01 })?;
//! assert_eq!((out.red, out.blue), (2.0, 1.0));
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Both in one process, as a runnable example:
//!
//! ```
//! use std::time::Duration;
//! use ipckit::service::{Client, RemoteError, Server};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let _server = Server::builder("calc")
//!     .namespace(&ns)
//!     .handler("add", |(a, b): (i64, i64)| {
//!         a.checked_add(b).ok_or(RemoteError::new(7, "overflow"))
//!     })
//!     .bind()
//!     .unwrap();
//! let client = Client::options().namespace(&ns).connect("calc").unwrap();
//! assert_eq!(client.call::<_, i64>("add", &(1, 2)).unwrap(), 3);
//! let e = client.call::<_, i64>("add", &(i64::MAX, 1)).unwrap_err();
//! assert_eq!(e.kind(), ipckit::ErrorKind::Remote);
//! assert_eq!(e.remote_code(), Some(7));
//! ```

mod client;
// Shared-memory lanes: Linux only (Windows connections stay on the pipe).
#[cfg(unix)]
mod lane;
mod loan;
mod server;
mod wire;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use client::{Client, ClientBuilder};
pub use loan::{Loan, LoanReply, LoanWriter};
pub use server::{Server, ServerBuilder};

/// The `schemars` crate `ipckit` derives its schemas with (the `schema`
/// feature): derive `JsonSchema` through it with
/// `#[schemars(crate = "ipckit::service::schemars")]`, or depend on
/// `schemars` 1.x yourself.
///
/// ```
/// use ipckit::service::schemars::{self, JsonSchema};
/// #[derive(serde::Deserialize, JsonSchema)]
/// #[schemars(crate = "ipckit::service::schemars")]
/// struct Args { a: i64 }
/// let text = schemars::schema_for!(Args).as_value().to_string();
/// assert!(text.contains("\"a\""));
/// ```
#[cfg(feature = "schema")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema")))]
pub use schemars;

/// Prefix of names that address a service over TCP.
pub const TCP_PREFIX: &str = "tcp://";

/// Default limit on one frame's body, either way: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Name of the built-in method every server answers (see [`Describe`]).
pub const DESCRIBE: &str = "ipckit.describe";

/// Remote error code: the handler returned an error that carried no code
/// of its own (a `String`, an [`Error`](crate::Error) without one).
pub const CODE_HANDLER: i64 = 1;
/// Remote error code: no method of that name.
pub const CODE_UNKNOWN_METHOD: i64 = -32601;
/// Remote error code: the request body did not decode as the method's
/// request type.
pub const CODE_BAD_REQUEST: i64 = -32602;
/// Remote error code: the handler panicked, or its result could not be
/// encoded.
pub const CODE_INTERNAL: i64 = -32603;
/// Remote error code: the server is shutting down and took no new call.
pub const CODE_SHUTTING_DOWN: i64 = -32000;
/// Remote error code: the connection has as many calls in flight as the
/// server allows ([`crate::Limits::max_in_flight`]); the caller sees
/// [`crate::ErrorKind::Busy`].
pub const CODE_BUSY: i64 = -32001;

/// How a call's body is encoded. The server answers in the same encoding.
///
/// ```
/// assert_eq!(ipckit::service::Encoding::default(), ipckit::service::Encoding::Postcard);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Encoding {
    /// postcard (compact, not self-describing): Rust clients. Wire code 0.
    #[default]
    Postcard,
    /// UTF-8 JSON: the CLI and other languages. Wire code 1.
    Json,
}

impl Encoding {
    pub(crate) fn code(self) -> u8 {
        match self {
            Encoding::Postcard => 0,
            Encoding::Json => 1,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Encoding::Postcard),
            1 => Some(Encoding::Json),
            _ => None,
        }
    }

    /// `"postcard"` or `"json"`.
    ///
    /// ```
    /// assert_eq!(ipckit::service::Encoding::Json.as_str(), "json");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Postcard => "postcard",
            Encoding::Json => "json",
        }
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(self, v: &T) -> Result<Vec<u8>, String> {
        match self {
            Encoding::Postcard => postcard::to_stdvec(v).map_err(|e| e.to_string()),
            Encoding::Json => serde_json::to_vec(v).map_err(|e| e.to_string()),
        }
    }

    /// Encode `v` straight into `buf` (e.g. shared memory); the bytes
    /// written.
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        v: &T,
        buf: &mut [u8],
    ) -> Result<usize, EncodeIntoError> {
        match self {
            Encoding::Postcard => match postcard::to_slice(v, buf) {
                Ok(out) => Ok(out.len()),
                Err(postcard::Error::SerializeBufferFull) => Err(EncodeIntoError::Full),
                Err(e) => Err(EncodeIntoError::Other(e.to_string())),
            },
            Encoding::Json => {
                let cap = buf.len();
                let mut w: &mut [u8] = buf;
                match serde_json::to_writer(&mut w, v) {
                    Ok(()) => Ok(cap - w.len()),
                    // The only writer error of a slice: it is full.
                    Err(e) if e.is_io() => Err(EncodeIntoError::Full),
                    Err(e) => Err(EncodeIntoError::Other(e.to_string())),
                }
            }
        }
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(self, b: &[u8]) -> Result<T, String> {
        match self {
            Encoding::Postcard => postcard::from_bytes(b).map_err(|e| e.to_string()),
            Encoding::Json => serde_json::from_slice(b).map_err(|e| e.to_string()),
        }
    }
}

/// Why [`Encoding::encode_into`] failed.
#[derive(Debug)]
pub(crate) enum EncodeIntoError {
    /// The value needs more room than the buffer has.
    Full,
    /// The value cannot be encoded at all.
    Other(String),
}

/// An error a handler returns, sent to the caller as code + message; the
/// caller gets it as an [`ErrorKind::Remote`](crate::ErrorKind::Remote)
/// error with [`remote_code`](crate::Error::remote_code).
///
/// Handlers may return any `E: Into<RemoteError>`: `RemoteError` itself,
/// `String` / `&str` (code [`CODE_HANDLER`]), [`crate::Error`] (its remote
/// code, else [`CODE_HANDLER`]) or `Infallible`.
///
/// ```
/// use ipckit::service::RemoteError;
/// let e = RemoteError::new(42, "no such account");
/// assert_eq!((e.code, e.message.as_str()), (42, "no such account"));
/// let s: RemoteError = "plain text".into();
/// assert_eq!(s.code, ipckit::service::CODE_HANDLER);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// An application-chosen code (negative codes from -32768 to -32000 are
    /// ipckit's own, see the `CODE_*` constants).
    pub code: i64,
    /// What went wrong, for a human.
    pub message: String,
}

impl RemoteError {
    /// A remote error with `code` and `message`.
    ///
    /// ```
    /// let e = ipckit::service::RemoteError::new(3, "bad input");
    /// assert_eq!(e.to_string(), "bad input (code 3)");
    /// ```
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RemoteError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RemoteError {}

impl From<String> for RemoteError {
    fn from(message: String) -> Self {
        RemoteError::new(CODE_HANDLER, message)
    }
}

impl From<&str> for RemoteError {
    fn from(message: &str) -> Self {
        RemoteError::new(CODE_HANDLER, message)
    }
}

impl From<crate::Error> for RemoteError {
    fn from(e: crate::Error) -> Self {
        RemoteError::new(e.remote_code().unwrap_or(CODE_HANDLER), e.to_string())
    }
}

impl From<std::convert::Infallible> for RemoteError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// One method, as `ipckit.describe` lists it.
///
/// ```
/// let m = ipckit::service::MethodInfo {
///     name: "add".into(),
///     request: "i64".into(),
///     response: "i64".into(),
///     request_schema: None,
///     response_schema: None,
/// };
/// assert_eq!(m.name, "add");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodInfo {
    /// The method's name.
    pub name: String,
    /// The request type (`std::any::type_name`), or `bytes` for raw handlers.
    pub request: String,
    /// The response type, likewise.
    pub response: String,
    /// The JSON Schema of the request, as JSON text, when the method was
    /// registered with `ServerBuilder::handler_with_schema` (the `schema`
    /// feature); `None` for [`handler`](ServerBuilder::handler), raw and
    /// loan methods. In a JSON `ipckit.describe` it travels as an embedded
    /// JSON value (or `null`), in postcard as an optional string (see
    /// `docs/PROTOCOL.md`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::service::{Client, Server};
    /// let _s = Server::builder("d").namespace(&ns)
    ///     .handler("neg", |x: i32| Ok::<_, String>(-x)).bind().unwrap();
    /// let c = Client::options().namespace(&ns).connect("d").unwrap();
    /// let d = c.describe().unwrap();
    /// assert_eq!(d.methods[1].request_schema, None); // `handler` publishes none
    /// ```
    #[serde(default, with = "schema_text")]
    pub request_schema: Option<String>,
    /// The JSON Schema of the response, likewise.
    #[serde(default, with = "schema_text")]
    pub response_schema: Option<String>,
}

/// A schema field of [`MethodInfo`]: an optional string in postcard (and
/// every format that is not human-readable); in JSON the schema itself,
/// embedded as a JSON value (`null` when absent). Reading JSON takes
/// either form back to text.
mod schema_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return v.serialize(s);
        }
        match v {
            None => s.serialize_none(),
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(schema) => s.serialize_some(&schema),
                // Not JSON after all (it always is from ipckit): as a string.
                Err(_) => s.serialize_some(text),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        if !d.is_human_readable() {
            return Option::<String>::deserialize(d);
        }
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => None,
            // A schema is an object or a boolean, never a string: a string
            // is the schema's text.
            Some(serde_json::Value::String(text)) => Some(text),
            Some(schema) => Some(schema.to_string()),
        })
    }
}

/// The answer to the built-in `ipckit.describe` call.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::service::{Client, Describe, Server};
/// let _s = Server::builder("d").namespace(&ns)
///     .handler("neg", |x: i32| Ok::<_, String>(-x)).bind().unwrap();
/// let c = Client::options().namespace(&ns).connect("d").unwrap();
/// let d: Describe = c.describe().unwrap();
/// assert_eq!(d.methods.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["ipckit.describe", "neg"]);
/// assert_eq!(d.methods[1].request, "i32");
/// assert_eq!(d.calls, 1); // this describe call
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Describe {
    /// The service's name.
    pub name: String,
    /// The server's process id.
    pub pid: u32,
    /// Every method, sorted by name (the built-in one included).
    pub methods: Vec<MethodInfo>,
    /// Calls received so far, this one included.
    pub calls: u64,
    /// Calls that ended in an error (handler error, panic, unknown method,
    /// undecodable request).
    pub errors: u64,
    /// Calls being handled now, this one included.
    pub in_flight: u64,
    /// Clients connected now (each counted once, whatever its transport).
    pub connections: u64,
    /// Shared-memory lanes open now (a client opens one or more beside its
    /// connection; see `docs/PROTOCOL.md`).
    #[serde(default)]
    pub lanes: u64,
    /// What the server accepted, refused and dropped, and why (see
    /// [`crate::Limits`]).
    #[serde(default)]
    pub limits: crate::ConnStats,
}
