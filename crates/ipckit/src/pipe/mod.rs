//! Pipes: named (`CreateNamedPipe`) and anonymous (`CreatePipe`).
//!
//! A **named pipe** is a server endpoint in the namespace that clients
//! connect to by name, locally through a Unix socket (`<name>.sock` in the
//! namespace directory, mode 0600) or across machines with
//! `tcp://HOST:PORT`. In message mode each `send` arrives as one `recv`;
//! in byte mode the connection is a `Read + Write` stream.
//!
//! Process A (server):
//!
//! ```no_run
//! use ipckit::pipe::ServerOptions;
//! let server = ServerOptions::new().max_instances(8).create("calc")?;
//! let mut conn = server.accept()?;
//! let request = conn.recv()?;
//! conn.send(&request)?;
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (client):
//!
//! ```no_run
//! use std::time::Duration;
//! let mut pipe = ipckit::pipe::NamedPipe::connect("calc", Duration::from_secs(5))?;
//! let reply = pipe.transact(b"2+2")?;
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! One thread per server watches all its clients until they are accepted;
//! the server admits them under its [`Limits`](crate::Limits) (connections
//! in total, per process, per user, per TCP address, and a deadline for the
//! shared-memory handshake; see [`ServerOptions::limits`]). A refused
//! client gets [`ErrorKind::Busy`](crate::ErrorKind::Busy).
//!
//! [`NamedPipe::split`] gives a receiving and a sending half for two
//! threads, and [`NamedPipe::try_clone`] another handle. The async form,
//! for tokio applications, is [`tokio`](mod@tokio) (feature `tokio`).
//!
//! An **anonymous pipe** ([`pipe()`]) is a one-way stream for a parent and
//! the child it starts; see [`CommandExt::pass_fd`].

mod anon;
pub(crate) mod frame;
mod named;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

pub use anon::{pipe, CommandExt, PipeReader, PipeWriter};
pub use named::{
    ClientOptions, Direction, NamedPipe, PeerInfo, PipeMode, PipeServer, RecvHalf, SendHalf,
    ServerOptions, DEFAULT_MAX_MESSAGE_SIZE, MAX_MAX_MESSAGE_SIZE, TCP_PREFIX,
};
