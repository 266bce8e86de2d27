//! Dynamic Data Exchange: `DdeInitialize`, `DdeNameService`, `DdeConnect`,
//! `DdeClientTransaction` (request, poke, execute, advise), `DdePostAdvise`.
//!
//! A DDE *server* registers a **service** name and answers **topics**,
//! each holding **items**; an item's value is bytes in a clipboard
//! [`Format`]. A client opens a [`Conversation`] on (service, topic) and
//! can [`request`](Conversation::request) an item once (a cold link),
//! [`advise`](Conversation::advise) on it — [`Link::Hot`]: each new value
//! is pushed; [`Link::Warm`]: a notice says it changed and the client
//! requests it — [`unadvise`](Conversation::unadvise),
//! [`poke`](Conversation::poke) a value into an item, or
//! [`execute`](Conversation::execute) a command string, which the server's
//! handler acknowledges or refuses with a reason. [`DdeServer::set_item`]
//! changes an item and serves every advise loop on it in one call.
//!
//! Process A (the server):
//!
//! ```no_run
//! use ipckit::clipboard::Format;
//! use ipckit::dde::DdeServerOptions;
//! let server = DdeServerOptions::new()
//!     .topic("prices")
//!     .on_execute(|e| match e.command.split_once(' ') {
//!         Some(("reset", item)) => e.server.set_item(e.topic, item, Format::TEXT, b"0")
//!             .map_err(|err| err.to_string()),
//!         _ => Err(format!("unknown command '{}'", e.command)),
//!     })
//!     .create("quotes")?;
//! let mut price = 100.0_f64;
//! loop {
//!     price *= 1.001;
//!     server.set_item("prices", "ACME", Format::TEXT, format!("{price:.2}").as_bytes())?;
//!     std::thread::sleep(std::time::Duration::from_millis(100));
//! }
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (a client with a hot link):
//!
//! ```no_run
//! use ipckit::clipboard::Format;
//! use ipckit::dde::{ConversationOptions, Link};
//! let conv = ConversationOptions::new().connect("quotes", "prices")?;
//! println!("now {}", String::from_utf8_lossy(&conv.request("ACME", Format::TEXT)?));
//! for update in conv.advise("ACME", Format::TEXT, Link::Hot)? {
//!     let update = update?; // PeerGone when the server dies
//!     println!("{} (skipped {})", String::from_utf8_lossy(&update.data.unwrap()), update.skipped);
//! }
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! A slow client never holds up [`DdeServer::set_item`] or the other clients:
//! each advise link has a bounded queue on the server
//! ([`DdeServerOptions::queue_per_link`]); when it overflows the oldest queued
//! updates are dropped and the next one delivered says how many
//! ([`Update::skipped`]) — the latest value always arrives. A client that
//! stops reading altogether is dropped after the stall timeout. When
//! either process dies the other side sees [`ErrorKind::PeerGone`](crate::ErrorKind::PeerGone): every
//! pending call and advise iterator of the client, and a
//! [`DdeServerEvent::Disconnected`] on the server.
//!
//! [`services_in`] lists the live services of a namespace with their topics
//! (`XTYP_WILDCONNECT`). With [`DdeServerOptions::tcp`] a server also listens
//! on TCP and clients connect to `tcp://HOST:PORT` with the same API
//! (NetDDE's role). The wire format is in `docs/PROTOCOL.md`, "DDE".
//!
//! # On Windows
//!
//! The same API and frames over the connection layer's Windows flavor: a
//! server `S` serves the byte-mode named pipe `\\.\pipe\ipckit.<H>.<S>`
//! (as services and window-message receivers do, so one name is one of
//! them), whose first instance is its claim, and keeps an endpoint record
//! that [`services_in`] lists. A conversation talks only to a server
//! running as the same user (process tokens compared), and the server only
//! to clients of its user. TCP (`tcp://`) and the Zenoh fabric are
//! Linux-only: asking for them is [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).

mod client;
mod server;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
pub(crate) mod wire;

use crate::clipboard::Format;
use crate::error::Result;
use crate::name::Namespace;

pub use client::{
    Advise, Conversation, ConversationOptions, CLIENT_QUEUE_PER_LINK, DEFAULT_TIMEOUT,
};
pub use server::{
    DdeServer, DdeServerEvent, DdeServerHandle, DdeServerOptions, Execute, Poke, DEFAULT_MAX_LINKS,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_POKED_ITEMS, DEFAULT_QUEUE_PER_LINK,
};

/// Endpoint kind of a DDE server in the namespace.
pub(crate) const KIND: &str = "dde";
/// What a server is called in errors.
pub(crate) const WHAT: &str = "DDE server";

/// How an advise loop delivers changes.
///
/// ```
/// assert_ne!(ipckit::dde::Link::Hot, ipckit::dde::Link::Warm);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// The new value is pushed with each change.
    Hot,
    /// A notice says the item changed; the client requests the value
    /// (`XTYPF_NODATA`).
    #[doc(alias = "XTYPF_NODATA")]
    Warm,
}

/// One change delivered by an advise loop (`XTYP_ADVDATA`).
///
/// ```
/// let u = ipckit::dde::Update { item: "x".into(), format: ipckit::clipboard::Format::TEXT, data: None, skipped: 0 };
/// assert!(u.data.is_none()); // a warm link's notice
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The item that changed.
    pub item: String,
    /// The format advised on.
    pub format: Format,
    /// The new value on a hot link; `None` on a warm link (request it).
    pub data: Option<Vec<u8>>,
    /// Updates of this link dropped just before this one because the
    /// client read slower than the item changed (the server's bounded
    /// per-link queue, or the client's own, overflowed). 0 normally.
    pub skipped: u64,
}

/// A live service and the topics it serves.
///
/// ```
/// let s = ipckit::dde::ServiceInfo { service: "quotes".into(), topics: vec!["prices".into()] };
/// assert_eq!(s.topics.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceInfo {
    /// The service name.
    pub service: String,
    /// Its topics, sorted.
    pub topics: Vec<String>,
}

/// Every live DDE service of `ns` with its topics, sorted by name
/// (`XTYP_WILDCONNECT`); see [`ConversationOptions::services`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let _a = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("a").unwrap();
/// let all = ipckit::dde::services_in(&ns).unwrap();
/// assert_eq!(all, [ipckit::dde::ServiceInfo { service: "a".into(), topics: vec!["t".into()] }]);
/// ```
#[doc(alias = "XTYP_WILDCONNECT")]
pub fn services_in(ns: &Namespace) -> Result<Vec<ServiceInfo>> {
    ConversationOptions::new().namespace(ns).services()
}

/// [`services_in`] for the namespace from the environment.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
/// assert!(ipckit::dde::services().unwrap().is_empty());
/// ```
#[doc(alias = "XTYP_WILDCONNECT")]
pub fn services() -> Result<Vec<ServiceInfo>> {
    services_in(&Namespace::from_env()?)
}
