//! Async named pipes, for tokio applications: a [`PipeServer`] whose
//! [`accept`](PipeServer::accept) is a future, a client
//! ([`NamedPipe::connect`], [`NamedPipe::connect_with`]), message-mode
//! [`send`](NamedPipe::send) / [`recv`](NamedPipe::recv) /
//! [`transact`](NamedPipe::transact) as futures, byte mode through
//! tokio's [`AsyncRead`] and [`AsyncWrite`], and [`split`](NamedPipe::split)
//! halves. The wire format is the blocking pipe's: an async process talks
//! to a blocking one, on the socket or on shared memory.
//!
//! Process A (async server):
//!
//! ```no_run
//! use ipckit::pipe::{tokio::PipeServer, ServerOptions};
//!
//! # async fn f() -> ipckit::Result<()> {
//! let server = PipeServer::from(ServerOptions::new().create("echo")?);
//! loop {
//!     let mut conn = server.accept().await?;
//!     tokio::spawn(async move {
//!         while let Ok(msg) = conn.recv().await {
//!             if conn.send(&msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! Process B (async client; a blocking [`crate::pipe::NamedPipe`] works
//! the same):
//!
//! ```no_run
//! # async fn f() -> ipckit::Result<()> {
//! use std::time::Duration;
//! let mut pipe = ipckit::pipe::tokio::NamedPipe::connect("echo", Duration::from_secs(5)).await?;
//! assert_eq!(pipe.transact(b"hi").await?, b"hi");
//! # Ok(()) }
//! ```
//!
//! # How waiting works
//!
//! Connecting (the dial, the hello and the shared-memory answer) runs the
//! blocking code on tokio's blocking pool; everything after is async.
//!
//! - **Socket**: the connection's socket is registered with the runtime
//!   (as a tokio `UnixStream` or `TcpStream`); reads and writes are
//!   non-blocking calls made when it is ready; no thread per call.
//! - **Shared memory**: a receive (or a send into a full ring) first
//!   checks the ring (no system call when the peer keeps it busy), then
//!   spins by yielding to the runtime for up to 50 µs (past 2 µs also
//!   yielding the CPU, as the blocking waiter does), then parks: a
//!   helper on the blocking pool sleeps on the ring's futex word (the
//!   blocking receiver's park: the peer's next publish wakes it) and wakes
//!   the task. A futex cannot be registered with epoll, so the park costs a
//!   helper thread while it lasts. A message too big for one ring record is
//!   sent by a helper of its own.
//!
//! # Cancellation
//!
//! Dropping a pending future cancels it cleanly; nothing is lost:
//!
//! - `recv`: what was read of a message (bytes of a frame, fragments of a
//!   ring message) stays in the connection, and the next `recv` goes on
//!   from there. A message is taken out only when the future completes.
//! - `send` before it wrote anything: nothing is sent. After it started
//!   writing, the message is still delivered whole: the rest stays in the
//!   connection and is written before anything else (by the next `send`,
//!   `flush` or `shutdown`); a failure then is reported by that call.
//! - `accept`: a client is taken from the queue only by a future that
//!   completes; a dropped one leaves it for the next `accept`.
//! - `connect`: a connection made after the future was dropped is closed.
//!
//! File descriptors ([`crate::pipe::NamedPipe::send_fd`]) are received
//! with [`NamedPipe::recv_fd`]; the async side does not send them.

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use ::tokio::net::{TcpStream, UnixStream};
use ::tokio::sync::oneshot;

use super::frame::{self, HEADER_LEN};
use super::named::{Item, Link, Reader, Writer};
use super::{ClientOptions, PeerInfo, PipeMode};
use crate::conn::ring::{RingError, Tx, Waiter};
use crate::conn::stream::{send_nowait, shutdown_write, READ_BUF};
use crate::error::{Error, ErrorKind, Result};
use crate::transport::Transport;

/// How long a waiter on shared memory spins (yielding to the runtime)
/// before it parks.
const SPIN: Duration = Duration::from_micros(50);
/// How long it spins without yielding the CPU.
const PURE_SPIN: Duration = Duration::from_micros(2);
/// How often a parked helper checks that its peer lives and that it is
/// still wanted.
const SLICE: Duration = Duration::from_millis(50);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f` where it may block: tokio's blocking pool inside a runtime, a
/// thread of its own outside one.
fn run_blocking(f: impl FnOnce() + Send + 'static) {
    match ::tokio::runtime::Handle::try_current() {
        Ok(h) => drop(h.spawn_blocking(f)),
        Err(_) => drop(std::thread::spawn(f)),
    }
}

// ---------------------------------------------------------------- server

/// An async named-pipe server: the blocking [`crate::pipe::PipeServer`]
/// (built with [`ServerOptions`](crate::pipe::ServerOptions), then
/// converted with [`From`]) with [`accept`](Self::accept) as a future.
///
/// ```
/// use ipckit::pipe::{tokio::PipeServer, ServerOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let server = PipeServer::from(ServerOptions::new().namespace(&ns).create("echo").unwrap());
/// let mut client = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("echo").unwrap();
/// let mut conn = server.accept().await.unwrap();
/// client.send(b"hi").unwrap();
/// assert_eq!(conn.recv().await.unwrap(), b"hi");
/// # }
/// ```
#[derive(Debug)]
pub struct PipeServer {
    inner: super::PipeServer,
}

impl From<super::PipeServer> for PipeServer {
    fn from(inner: super::PipeServer) -> Self {
        PipeServer { inner }
    }
}

impl PipeServer {
    /// Create a server with default options (see
    /// [`ServerOptions`](crate::pipe::ServerOptions)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let server = ipckit::pipe::tokio::PipeServer::create("svc").unwrap();
    /// assert_eq!(server.name(), "svc");
    /// ```
    pub fn create(name: &str) -> Result<PipeServer> {
        super::PipeServer::create(name).map(PipeServer::from)
    }

    /// Wait for the next client (`ConnectNamedPipe`). Cancel-safe: a
    /// dropped future takes no client.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use std::time::Duration;
    /// let server = ipckit::pipe::tokio::PipeServer::from(
    ///     ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap(),
    /// );
    /// // Nobody comes: the accept is dropped by the timeout.
    /// assert!(tokio::time::timeout(Duration::from_millis(10), server.accept()).await.is_err());
    /// let _c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("p").unwrap();
    /// let conn = server.accept().await.unwrap();
    /// assert_eq!(conn.peer().pid, Some(std::process::id()));
    /// # }
    /// ```
    #[doc(alias = "ConnectNamedPipe")]
    pub async fn accept(&self) -> Result<NamedPipe> {
        let pipe = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        NamedPipe::from_blocking(pipe)
    }

    /// The blocking server.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::tokio::PipeServer::from(
    ///     ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap(),
    /// );
    /// assert_eq!(s.get_ref().instances(), 0);
    /// ```
    pub fn get_ref(&self) -> &super::PipeServer {
        &self.inner
    }

    /// The pipe's name.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::tokio::PipeServer::from(
    ///     ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap(),
    /// );
    /// assert_eq!(s.name(), "p");
    /// ```
    pub fn name(&self) -> &str {
        self.inner.name()
    }
}

// ------------------------------------------------------------ connection

/// The socket of a connection (a duplicate of the link's), registered
/// with the runtime to learn when it is ready; the reads and writes are
/// ipckit's own non-blocking calls.
enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Sock {
    fn register(link: &Link) -> io::Result<Sock> {
        // (The duplicate shares the socket's flags: the link's descriptor
        // turns non-blocking too; every read of it waits for readiness.)
        let fd = link.fd().try_clone_to_owned()?;
        Ok(if link.peer().addr.is_some() {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            Sock::Tcp(TcpStream::from_std(s)?)
        } else {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Sock::Unix(UnixStream::from_std(s)?)
        })
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        match (self, interest == Interest::READABLE) {
            (Sock::Unix(s), true) => s.poll_read_ready(cx),
            (Sock::Unix(s), false) => s.poll_write_ready(cx),
            (Sock::Tcp(s), true) => s.poll_read_ready(cx),
            (Sock::Tcp(s), false) => s.poll_write_ready(cx),
        }
    }

    /// Run `f` (a non-blocking call), clearing the readiness if it finds
    /// nothing to do (`Ok(None)`).
    fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<Option<R>>,
    ) -> io::Result<Option<R>> {
        let f = || f().and_then(|r| r.ok_or(io::ErrorKind::WouldBlock.into()));
        let r = match self {
            Sock::Unix(s) => s.try_io(interest, f),
            Sock::Tcp(s) => s.try_io(interest, f),
        };
        match r {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One end of an async named-pipe connection: from
/// [`PipeServer::accept`], [`NamedPipe::connect`] or a blocking pipe
/// ([`NamedPipe::from_blocking`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::pipe::tokio::{NamedPipe, PipeServer};
/// use ipckit::pipe::{ClientOptions, ServerOptions};
/// // process A (blocking server)
/// let server = ServerOptions::new().namespace(&ns).create("calc").unwrap();
/// let t = std::thread::spawn(move || {
///     let mut conn = server.accept().unwrap();
///     let q = conn.recv().unwrap();
///     conn.send(if q == b"2+2" { b"4" } else { b"?" }).unwrap();
/// });
/// // process B (async client)
/// let mut pipe = NamedPipe::connect_with(&ClientOptions::new().namespace(&ns), "calc").await.unwrap();
/// assert_eq!(pipe.transact(b"2+2").await.unwrap(), b"4");
/// t.join().unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct NamedPipe {
    rx: RecvHalf,
    tx: SendHalf,
}

impl NamedPipe {
    /// Connect to `name` (or `tcp://HOST:PORT`), waiting up to `timeout`
    /// for the server; see [`crate::pipe::NamedPipe::connect`].
    ///
    /// ```no_run
    /// # async fn f() -> ipckit::Result<()> {
    /// use std::time::Duration;
    /// let mut pipe = ipckit::pipe::tokio::NamedPipe::connect("calc", Duration::from_secs(5)).await?;
    /// let reply = pipe.transact(b"2+2").await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "WaitNamedPipe")]
    pub async fn connect(name: &str, timeout: Duration) -> Result<NamedPipe> {
        Self::connect_with(&ClientOptions::new().timeout(timeout), name).await
    }

    /// Connect with `options`; see [`ClientOptions::connect`] (its errors
    /// too). The blocking part (dial, hello, shared-memory answer) runs on
    /// the runtime's blocking pool; a connection made after the future was
    /// dropped is closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// use ipckit::pipe::{tokio::NamedPipe, ClientOptions};
    /// let opts = ClientOptions::new().namespace(&ns);
    /// let e = NamedPipe::connect_with(&opts, "absent").await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
    /// # }
    /// ```
    pub async fn connect_with(options: &ClientOptions, name: &str) -> Result<NamedPipe> {
        let (options, owned) = (options.clone(), name.to_string());
        let (tx, rx) = oneshot::channel();
        run_blocking(move || {
            let _ = tx.send(options.connect(&owned));
        });
        let pipe = rx.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Io,
                "the connecting helper ended without an answer",
            )
            .with_name(name))
        })?;
        NamedPipe::from_blocking(pipe)
    }

    /// Take a blocking connection over (it must be the only handle: not
    /// cloned, not split, else [`ErrorKind::InvalidInput`]). Must be called
    /// inside a tokio runtime (the socket is registered with it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// let c = ipckit::pipe::ClientOptions::new().namespace(&ns).connect("p").unwrap();
    /// let mut c = ipckit::pipe::tokio::NamedPipe::from_blocking(c).unwrap();
    /// s.accept().unwrap().send(b"x").unwrap();
    /// assert_eq!(c.recv().await.unwrap(), b"x");
    /// # }
    /// ```
    pub fn from_blocking(pipe: super::NamedPipe) -> Result<NamedPipe> {
        let name = pipe.name().to_string();
        let (reader, writer) = pipe.into_reader_writer().map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "the pipe has other handles (try_clone or split); an async pipe must be the only one",
            )
            .with_name(&name)
        })?;
        let link = reader.link.clone();
        let io = if reader.rx.is_some() {
            None
        } else {
            let fd = Sock::register(&link).map_err(|e| {
                Error::os(
                    e,
                    "cannot register the pipe with the tokio runtime (is one running?)",
                )
                .with_name(&name)
            })?;
            Some(Arc::new(fd))
        };
        Ok(NamedPipe {
            rx: RecvHalf {
                link: link.clone(),
                io: io.clone(),
                r: reader,
                partial: Partial::Header,
                park: Park::default(),
            },
            tx: SendHalf {
                link,
                io,
                w: writer,
                out: Vec::new(),
                out_pos: 0,
                big: None,
                park: Park::default(),
            },
        })
    }

    /// Send one message; see [`SendHalf::send`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let mut c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// c.send(b"hello").await.unwrap();
    /// assert_eq!(s.accept().unwrap().recv().unwrap(), b"hello");
    /// # }
    /// ```
    #[doc(alias = "WriteFile")]
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg).await
    }

    /// Receive the next message; see [`RecvHalf::recv`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let mut c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// s.accept().unwrap().send(b"hi").unwrap();
    /// assert_eq!(c.recv().await.unwrap(), b"hi");
    /// # }
    /// ```
    #[doc(alias = "ReadFile")]
    pub async fn recv(&mut self) -> Result<Vec<u8>> {
        self.rx.recv().await
    }

    /// Receive a file descriptor the peer passed; see [`RecvHalf::recv_fd`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let mut c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// let (r, _w) = ipckit::pipe::pipe().unwrap();
    /// s.accept().unwrap().send_fd(std::os::fd::AsFd::as_fd(&r)).unwrap();
    /// let _fd = c.recv_fd().await.unwrap();
    /// # }
    /// ```
    pub async fn recv_fd(&mut self) -> Result<OwnedFd> {
        self.rx.recv_fd().await
    }

    /// Send a request and receive the reply (`TransactNamedPipe`).
    /// Dropped halfway, the request may have been sent: the reply then
    /// arrives for the next `recv`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// let t = std::thread::spawn(move || {
    ///     let mut conn = s.accept().unwrap();
    ///     let m = conn.recv().unwrap();
    ///     conn.send(&m.to_ascii_uppercase()).unwrap();
    /// });
    /// let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let mut c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// assert_eq!(c.transact(b"abc").await.unwrap(), b"ABC");
    /// t.join().unwrap();
    /// # }
    /// ```
    #[doc(alias = "TransactNamedPipe")]
    pub async fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        self.tx.send(request).await?;
        self.rx.recv().await
    }

    /// Split into halves that two tasks use at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// let (mut rx, mut tx) = c.split();
    /// let reader = tokio::spawn(async move { rx.recv().await.unwrap() });
    /// tx.send(b"ping").await.unwrap();
    /// let mut conn = s.accept().unwrap();
    /// assert_eq!(conn.recv().unwrap(), b"ping");
    /// conn.send(b"pong").unwrap();
    /// assert_eq!(reader.await.unwrap(), b"pong");
    /// # }
    /// ```
    pub fn split(self) -> (RecvHalf, SendHalf) {
        (self.rx, self.tx)
    }

    /// Which path this connection's messages take (see
    /// [`crate::pipe::NamedPipe::transport`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// let opts = ipckit::pipe::ClientOptions::new().namespace(&ns).transport(ipckit::Transport::Socket);
    /// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// assert_eq!(c.transport(), ipckit::Transport::Socket);
    /// # }
    /// ```
    pub fn transport(&self) -> Transport {
        self.rx.link.transport()
    }

    /// The pipe's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// assert_eq!(c.name(), "p");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        self.rx.link.name()
    }

    /// The pipe's mode, as the server set it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// assert_eq!(c.mode(), ipckit::pipe::PipeMode::Message);
    /// # }
    /// ```
    pub fn mode(&self) -> PipeMode {
        self.rx.link.mode()
    }

    /// The largest message either side may send.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(9).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// assert_eq!(c.max_message_size(), 9);
    /// # }
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.rx.link.max_message()
    }

    /// Who is at the other end.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
    /// assert_eq!(c.peer().pid, Some(std::process::id()));
    /// # }
    /// ```
    pub fn peer(&self) -> PeerInfo {
        self.rx.link.peer()
    }
}

impl AsFd for NamedPipe {
    /// The connection's socket (see [`crate::pipe::NamedPipe`]'s `AsFd`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.link.fd()
    }
}

impl AsRawFd for NamedPipe {
    /// The connection's socket.
    fn as_raw_fd(&self) -> RawFd {
        self.rx.link.fd().as_raw_fd()
    }
}

impl AsyncRead for NamedPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.rx).poll_read(cx, buf)
    }
}

impl AsyncWrite for NamedPipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tx).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tx).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tx).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------- parking

/// The state of one shared-memory wait: spinning since when, or parked on
/// a helper.
#[derive(Default)]
struct Park {
    since: Option<Instant>,
    helper: Option<Arc<Helper>>,
}

/// A helper parked on a ring's futex word for a task.
struct Helper {
    waker: Mutex<Waker>,
    done: AtomicBool,
    /// Set when nobody waits any more (the half was dropped).
    cancel: AtomicBool,
    /// Why the wait ended, if not because the half may go on.
    failed: Mutex<Option<RingError>>,
}

impl Park {
    /// Wait (spin, then park with `waiter`) until the half should try
    /// again; `Err` if the ring failed meanwhile (peer gone).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        waiter: impl FnOnce() -> Waiter,
    ) -> Poll<std::result::Result<(), RingError>> {
        if let Some(h) = &self.helper {
            if !h.done.load(Ordering::Acquire) {
                let mut w = lock(&h.waker);
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
                drop(w);
                // Done between the first look and the new waker: go on.
                if !h.done.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            let failed = lock(&h.failed).take();
            self.helper = None;
            self.since = None;
            return Poll::Ready(failed.map_or(Ok(()), Err));
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < SPIN {
            // Spin: let the runtime run other tasks, then look again. Past
            // a short pure spin, let the peer have the core if it waits
            // for one (as the blocking waiter does).
            if now.duration_since(since) >= PURE_SPIN {
                std::thread::yield_now();
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let h = Arc::new(Helper {
            waker: Mutex::new(cx.waker().clone()),
            done: AtomicBool::new(false),
            cancel: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        let (helper, waiter) = (h.clone(), waiter());
        run_blocking(move || {
            loop {
                if helper.cancel.load(Ordering::Relaxed) {
                    break;
                }
                match waiter.wait(SLICE) {
                    Ok(()) => break,
                    Err(RingError::Timeout) => continue,
                    Err(e) => {
                        *lock(&helper.failed) = Some(e);
                        break;
                    }
                }
            }
            helper.done.store(true, Ordering::Release);
            lock(&helper.waker).wake_by_ref();
        });
        self.helper = Some(h);
        Poll::Pending
    }

    /// The wait ended: spin afresh next time.
    fn reset(&mut self) {
        self.since = None;
    }
}

impl Drop for Park {
    fn drop(&mut self) {
        if let Some(h) = &self.helper {
            h.cancel.store(true, Ordering::Relaxed);
        }
    }
}

// ------------------------------------------------------------- receiving

/// Where the socket reader is inside a frame.
enum Partial {
    /// Between frames.
    Header,
    /// A message of `len` bytes, `buf` read so far.
    Body { len: usize, buf: Vec<u8> },
    /// An oversized message being read past: `left` of `len` bytes.
    Skip { len: usize, left: usize },
}

/// The receiving half of an async [`NamedPipe`]: `recv`, `recv_fd`, and
/// `AsyncRead`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
/// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
/// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
/// let (mut rx, _tx) = c.split();
/// s.accept().unwrap().send(b"in").unwrap();
/// assert_eq!(rx.recv().await.unwrap(), b"in");
/// # }
/// ```
pub struct RecvHalf {
    link: Arc<Link>,
    io: Option<Arc<Sock>>,
    r: Reader,
    partial: Partial,
    park: Park,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecvHalf").field(&self.link).finish()
    }
}

impl RecvHalf {
    /// Receive the next message, whole (`ReadFile`). Errors as the
    /// blocking [`recv`](crate::pipe::NamedPipe::recv):
    /// [`ErrorKind::PeerGone`] once the other end is gone,
    /// [`ErrorKind::TooLarge`] for a message over the limit on the socket
    /// (discarded; the connection stays usable). Cancel-safe: a dropped
    /// future loses nothing (see the [module docs](self)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let (mut rx, _tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// let mut conn = s.accept().unwrap();
    /// // Nothing yet: the receive is dropped by the timeout, and no message is lost.
    /// let t = std::time::Duration::from_millis(10);
    /// assert!(tokio::time::timeout(t, rx.recv()).await.is_err());
    /// conn.send(b"late").unwrap();
    /// assert_eq!(rx.recv().await.unwrap(), b"late");
    /// # }
    /// ```
    #[doc(alias = "ReadFile")]
    pub async fn recv(&mut self) -> Result<Vec<u8>> {
        match self.next_item().await? {
            Item::Msg(m) => Ok(m),
            fd @ Item::Fd(_) => {
                self.r.push_back(fd);
                Err(self.link.fd_not_msg())
            }
        }
    }

    /// Receive a file descriptor the peer passed with
    /// [`crate::pipe::NamedPipe::send_fd`]; a message instead is
    /// [`ErrorKind::InvalidInput`] (the message stays readable).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let (mut rx, _tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// s.accept().unwrap().send(b"not an fd").unwrap();
    /// assert_eq!(rx.recv_fd().await.unwrap_err().kind(), ipckit::ErrorKind::InvalidInput);
    /// assert_eq!(rx.recv().await.unwrap(), b"not an fd");
    /// # }
    /// ```
    pub async fn recv_fd(&mut self) -> Result<OwnedFd> {
        match self.next_item().await? {
            Item::Fd(fd) => Ok(fd),
            m @ Item::Msg(_) => {
                self.r.push_back(m);
                Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the next item on the pipe is a message, not a file descriptor; take it with recv",
                )
                .with_name(self.link.name()))
            }
        }
    }

    /// The pipe's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let (rx, _tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// assert_eq!(rx.name(), "p");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        self.link.name()
    }

    async fn next_item(&mut self) -> Result<Item> {
        self.link.check_usable()?;
        self.link.may_read()?;
        match poll_fn(|cx| self.poll_item(cx)).await? {
            Some(item) => Ok(item),
            None => Err(self.link.ended()),
        }
    }

    /// The next item (`None`: clean end of stream). Everything read stays
    /// in `self` until a whole item is handed out.
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Item>>> {
        if let Some(item) = self.r.pop_inbox() {
            return Poll::Ready(Ok(Some(item)));
        }
        if self.r.rx.is_some() {
            return self.poll_ring_item(cx);
        }
        let link = self.link.clone();
        loop {
            let buffered = self.r.rd.buffered().len();
            match &mut self.partial {
                Partial::Header if buffered >= HEADER_LEN => {
                    let mut h = [0u8; HEADER_LEN];
                    h.copy_from_slice(&self.r.rd.buffered()[..HEADER_LEN]);
                    self.r.rd.consume(HEADER_LEN);
                    match frame::parse_header(&h, link.name()) {
                        Ok((frame::KIND_FD, _)) => {
                            return Poll::Ready(match self.r.rd.take_fd() {
                                Some(fd) => Ok(Some(Item::Fd(fd))),
                                None => Err(link.fail(
                                    Error::new(
                                        ErrorKind::Decode,
                                        "the peer announced a file descriptor but none arrived; the connection is closed",
                                    )
                                    .with_name(link.name()),
                                )),
                            })
                        }
                        Ok((_, len)) => {
                            let len = len as usize;
                            self.partial = if len > link.max_message() {
                                Partial::Skip { len, left: len }
                            } else {
                                // Grows as the bytes arrive (a peer that
                                // announces a huge body pins only what it sent).
                                Partial::Body {
                                    len,
                                    buf: Vec::with_capacity(len.min(READ_BUF)),
                                }
                            };
                            continue;
                        }
                        Err(e) => return Poll::Ready(Err(link.fail(e))),
                    }
                }
                Partial::Header => {}
                Partial::Body { len, buf } => {
                    let want = *len - buf.len();
                    self.r.rd.take_into(buf, want);
                    if buf.len() == *len {
                        let body = std::mem::take(buf);
                        self.partial = Partial::Header;
                        return Poll::Ready(Ok(Some(Item::Msg(body))));
                    }
                }
                Partial::Skip { len, left } => {
                    let n = (*left).min(buffered);
                    self.r.rd.consume(n);
                    *left -= n;
                    if *left == 0 {
                        let len = *len;
                        self.partial = Partial::Header;
                        return Poll::Ready(Err(link.too_large(len)));
                    }
                }
            }
            // More bytes needed.
            let io = self.io.as_ref().expect("socket flavor");
            let got = loop {
                match io.poll_ready(cx, Interest::READABLE) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        let e = link.io_err(e, "cannot wait for the pipe");
                        return Poll::Ready(Err(link.fail(e)));
                    }
                    Poll::Pending => return Poll::Pending,
                }
                let rd = &mut self.r.rd;
                match io.try_io(Interest::READABLE, || rd.fill_nowait(link.fd())) {
                    Ok(None) => {}
                    Ok(Some(n)) => break Ok(n),
                    Err(e) => break Err(e),
                }
            };
            match got {
                Ok(0) => {
                    let clean =
                        matches!(self.partial, Partial::Header) && self.r.rd.buffered().is_empty();
                    if clean {
                        return Poll::Ready(Ok(None));
                    }
                    let e = Error::new(
                        ErrorKind::PeerGone,
                        "the peer closed the pipe in the middle of a message",
                    )
                    .with_name(link.name());
                    return Poll::Ready(Err(link.fail(e)));
                }
                Ok(_) => {}
                Err(e) => {
                    let e = link.io_err(e, "cannot read from the pipe");
                    return Poll::Ready(Err(link.fail(e)));
                }
            }
        }
    }

    /// Shared memory: take what the ring holds, else spin, then park.
    fn poll_ring_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Item>>> {
        loop {
            match self.r.shm_read_item(None, true) {
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                other => {
                    self.park.reset();
                    return Poll::Ready(other);
                }
            }
            let rx = self.r.rx.as_ref().expect("shared-memory flavor");
            match self.park.poll(cx, || rx.waiter()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    // Take a last message the peer sent before it left.
                    return Poll::Ready(match self.r.shm_read_item(None, true) {
                        Err(t) if t.kind() == ErrorKind::Timeout => Err(self.link.ring_err(e)),
                        other => other,
                    });
                }
            }
        }
    }
}

impl AsyncRead for RecvHalf {
    /// Byte mode (or the bytes of each message in turn); the end of the
    /// stream reads as 0 bytes.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        while this.r.chunk_pos >= this.r.chunk.len() {
            this.link.check_usable()?;
            this.link.may_read()?;
            match this.poll_item(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(Some(Item::Msg(c)))) => {
                    this.r.chunk = c;
                    this.r.chunk_pos = 0;
                }
                Poll::Ready(Ok(Some(fd @ Item::Fd(_)))) => {
                    this.r.push_back(fd);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the next item on the pipe is a file descriptor; take it with recv_fd",
                    )));
                }
            }
        }
        let (pos, chunk) = (this.r.chunk_pos, &this.r.chunk);
        let n = buf.remaining().min(chunk.len() - pos);
        buf.put_slice(&chunk[pos..pos + n]);
        this.r.chunk_pos += n;
        Poll::Ready(Ok(()))
    }
}

// --------------------------------------------------------------- sending

/// The sending half of an async [`NamedPipe`]: `send`, and `AsyncWrite`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
/// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
/// let c = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap();
/// let (_rx, mut tx) = c.split();
/// tx.send(b"out").await.unwrap();
/// assert_eq!(s.accept().unwrap().recv().unwrap(), b"out");
/// # }
/// ```
pub struct SendHalf {
    link: Arc<Link>,
    io: Option<Arc<Sock>>,
    w: Writer,
    /// Socket: a frame (or its rest) not written yet.
    out: Vec<u8>,
    out_pos: usize,
    /// Shared memory: a fragmented message being sent by a helper, which
    /// hands the ring back with the outcome.
    big: Option<oneshot::Receiver<(Tx, std::result::Result<(), RingError>)>>,
    park: Park,
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SendHalf").field(&self.link).finish()
    }
}

impl SendHalf {
    /// Send one message (`WriteFile`). A message over the limit is
    /// [`ErrorKind::TooLarge`] before anything is written (the connection
    /// stays usable). Returns once the message is handed to the socket or
    /// the ring (as the blocking `send`). Cancel-safe: dropped before it
    /// wrote anything, nothing is sent; after, the message is still
    /// delivered whole (see the [module docs](self)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(4).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let (_rx, mut tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// let e = tx.send(b"too long").await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::TooLarge);
    /// tx.send(b"ok").await.unwrap();
    /// # }
    /// ```
    #[doc(alias = "WriteFile")]
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.link.check_usable()?;
        self.link.may_write()?;
        self.link.check_send_size(msg.len())?;
        poll_fn(|cx| self.poll_pending(cx)).await?;
        if let Some(tx) = self.w.tx.as_ref() {
            if msg.len() > tx.max_unfragmented() {
                self.start_big(msg);
                return poll_fn(|cx| self.poll_pending(cx)).await;
            }
            return poll_fn(|cx| self.poll_ring_send(cx, msg)).await;
        }
        self.queue_frame(msg);
        poll_fn(|cx| self.poll_pending(cx)).await
    }

    /// The pipe's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let (_rx, tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// assert_eq!(tx.name(), "p");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        self.link.name()
    }

    /// Socket: put a data frame in the outgoing buffer (which is empty).
    fn queue_frame(&mut self, body: &[u8]) {
        debug_assert!(self.out_pos >= self.out.len());
        self.out.clear();
        self.out_pos = 0;
        self.out
            .extend_from_slice(&frame::header(frame::KIND_DATA, body.len() as u32));
        self.out.extend_from_slice(body);
    }

    /// Finish what an earlier (maybe dropped) call started: the rest of a
    /// frame on the socket, a fragmented message on the ring.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let link = self.link.clone();
        if let Some(big) = self.big.as_mut() {
            let r = match Pin::new(big).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            self.big = None;
            return Poll::Ready(match r {
                Ok((tx, r)) => {
                    self.w.tx = Some(tx);
                    r.map_err(|e| link.ring_err(e))
                }
                Err(_) => Err(link.fail(Error::new(
                    ErrorKind::Io,
                    "the helper sending a large message ended without an answer; the connection was closed",
                ).with_name(link.name()))),
            });
        }
        if self.out_pos >= self.out.len() {
            return Poll::Ready(Ok(()));
        }
        let Some(io) = self.io.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        while self.out_pos < self.out.len() {
            match io.poll_ready(cx, Interest::WRITABLE) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    let e = link.io_err(e, "cannot wait for the pipe");
                    return Poll::Ready(Err(link.fail(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
            let rest = &self.out[self.out_pos..];
            match io.try_io(Interest::WRITABLE, || send_nowait(link.fd(), rest)) {
                Ok(Some(n)) => self.out_pos += n,
                Ok(None) => {}
                Err(e) => {
                    let e = link.io_err(e, "cannot write to the pipe");
                    return Poll::Ready(Err(link.fail(e)));
                }
            }
        }
        if self.out.capacity() > 4 * READ_BUF {
            self.out = Vec::new();
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Shared memory: hand a message bigger than one ring record to a
    /// helper that sends it (blocking) and gives the ring back; the send
    /// completes in [`poll_pending`](Self::poll_pending), by this call or
    /// the next.
    fn start_big(&mut self, msg: &[u8]) {
        let mut tx = self.w.tx.take().expect("shared-memory flavor");
        let owned = msg.to_vec();
        let (done, rx) = oneshot::channel();
        run_blocking(move || {
            let r = tx.send(frame::TAG_DATA, &[&owned]);
            let _ = done.send((tx, r));
        });
        self.big = Some(rx);
    }

    /// Shared memory: put `msg` (one record at most) in the ring, waiting
    /// for room.
    fn poll_ring_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<()>> {
        let link = self.link.clone();
        loop {
            let tx = self.w.tx.as_mut().expect("shared-memory flavor");
            match tx.try_send(frame::TAG_DATA, &[msg]) {
                Ok(true) => {
                    self.park.reset();
                    return Poll::Ready(Ok(()));
                }
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(link.ring_err(e))),
            }
            let tx = self.w.tx.as_ref().expect("shared-memory flavor");
            match self.park.poll(cx, || tx.waiter(msg.len())) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(link.ring_err(e))),
            }
        }
    }
}

impl AsyncWrite for SendHalf {
    /// Write one chunk of `buf` (at most the pipe's `max_message_size`) as
    /// one frame (byte mode), or as one message (message mode).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.link.check_usable()?;
        this.link.may_write()?;
        match this.poll_pending(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r?,
        }
        let mut n = buf.len().min(this.link.max_message());
        if let Some(tx) = this.w.tx.as_ref() {
            n = n.min(tx.max_unfragmented());
            return this
                .poll_ring_send(cx, &buf[..n])
                .map(|r| r.map(|()| n).map_err(Into::into));
        }
        this.queue_frame(&buf[..n]);
        // The frame is ours now; it goes out here or at the next call.
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e.into()));
        }
        Poll::Ready(Ok(n))
    }

    /// Write out a frame still in this half (to the kernel's socket buffer
    /// or the ring; it does not wait for the peer to read it, unlike the
    /// blocking [`flush`](crate::pipe::NamedPipe::flush)).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_pending(cx).map_err(Into::into)
    }

    /// Flush, then tell the peer nothing more comes: it reads the end of
    /// the stream (and a `recv` there reports [`ErrorKind::PeerGone`]).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r?,
        }
        match this.w.tx.as_ref() {
            Some(tx) => tx.close(),
            None => shutdown_write(this.link.fd()),
        }
        Poll::Ready(Ok(()))
    }
}

macro_rules! socket_of {
    ($t:ty) => {
        impl AsFd for $t {
            /// The connection's socket (see [`crate::pipe::NamedPipe`]'s `AsFd`).
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.link.fd()
            }
        }

        impl AsRawFd for $t {
            /// The connection's socket.
            fn as_raw_fd(&self) -> RawFd {
                self.link.fd().as_raw_fd()
            }
        }
    };
}

socket_of!(RecvHalf);
socket_of!(SendHalf);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_safety() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<PipeServer>();
        send_sync::<NamedPipe>();
        send_sync::<RecvHalf>();
        send_sync::<SendHalf>();
    }
}
