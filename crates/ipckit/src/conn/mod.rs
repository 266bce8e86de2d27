//! The one connection layer every mechanism sits on.
//!
//! - [`dial`]: reaching an endpoint by namespace name or `tcp://`, within a
//!   timeout, with back-off and a fixed list of retried error kinds.
//! - [`hello`]: the 16-byte hello every server writes first, one type to
//!   encode, decode and read it within a deadline.
//! - [`io`]: reads with deadlines, and bodies allocated as their bytes
//!   arrive.
//! - [`reactor`]: the server side: claim-free listening sockets watched by
//!   one readiness loop per server, admission under [`crate::Limits`],
//!   frames cut from non-blocking reads, handshake and stall deadlines.
//! - [`pool`]: the bounded, elastic worker pool handlers run on.
//! - [`slots`]: a lock-free set of parked boxes (a client's idle lanes).
//! - [`listen`]: claiming a name and opening the Unix (and TCP) listening
//!   sockets a reactor serves.
//!
//! Mechanisms (`pipe`, `service`, `mailslot`, `message`) never open a
//! socket or call the OS themselves: they go through this module, which
//! goes through [`crate::sys`].
//!
//! On Windows (services, window messages, clipboard render requests and DDE) the same layer runs over
//! `crate::sys::net`'s emulated sockets: each connection is one instance
//! of a byte-mode named pipe, `\\.\pipe\ipckit.<H>.<name>`. The ring
//! (shared-memory lanes), descriptor passing, TCP and the published
//! counters are Linux-only; the async socket runs the blocking calls on
//! tokio's blocking pool there.

#[cfg(all(feature = "tokio", unix))]
pub(crate) mod async_io;
// On Windows the async socket runs the pipe's blocking calls on tokio's
// blocking pool.
#[cfg(all(feature = "tokio", windows))]
#[path = "async_io_windows.rs"]
pub(crate) mod async_io;
#[cfg(unix)]
pub(crate) mod datagram;
pub(crate) mod dial;
pub(crate) mod hello;
pub(crate) mod io;
pub(crate) mod listen;
pub(crate) mod pool;
pub(crate) mod reactor;
#[cfg(unix)]
pub(crate) mod ring;
// Only a service client parks lanes in it.
#[cfg(all(feature = "service", unix))]
pub(crate) mod slots;
pub(crate) mod stream;

pub use reactor::ConnStats;
