//! Async named pipes, for tokio applications — on Windows, the system's
//! named pipes with overlapped I/O as futures: a [`PipeServer`] whose
//! [`accept`](PipeServer::accept) is a future, a client
//! ([`NamedPipe::connect`], [`NamedPipe::connect_with`]), message-mode
//! [`send`](NamedPipe::send) / [`recv`](NamedPipe::recv) /
//! [`transact`](NamedPipe::transact) as futures, byte mode through
//! tokio's [`AsyncRead`] and [`AsyncWrite`], and [`split`](NamedPipe::split)
//! halves. The pipes are the blocking ones' ([`crate::pipe`]): the same
//! names (`\\.\pipe\ipckit.<H>.<name>`, `\\.\pipe\X` as is), the same
//! user-only security descriptor, remote clients rejected unless
//! [`ServerOptions::accept_remote_clients`](crate::pipe::ServerOptions::accept_remote_clients),
//! the same instances and [`ErrorKind::Busy`], and nothing on the wire but
//! the user's bytes: an async process talks to a blocking one, or to a
//! program that does not use ipckit.
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
//! - **Accept**: the server's accept thread (the blocking server's: it
//!   keeps an instance listening in `ConnectNamedPipe`) queues each
//!   connected instance and wakes the tasks in
//!   [`accept`](PipeServer::accept).
//! - **Connect**: `CreateFileW` and `WaitNamedPipeW` run on tokio's
//!   blocking pool, as the blocking client's code.
//! - **Reads and writes**: each half has one overlapped `ReadFile` or
//!   `WriteFile` in flight at a time, on its own event; while it is in
//!   flight, a wait registered with the system's thread pool
//!   (`RegisterWaitForSingleObject`) wakes the task when it completes. No
//!   thread of ipckit's waits, and a message longer than one read is put
//!   together from `ERROR_MORE_DATA`, so message boundaries hold for every
//!   size. (tokio's own `named_pipe` types hand out a message that does not
//!   fit their read buffer, 4 to 64 KiB, as plain bytes, losing the
//!   boundary: they are not used.)
//!
//! # Cancellation
//!
//! Dropping a pending future cancels it cleanly; nothing is lost:
//!
//! - `recv`: the read in flight and what was read of a message stay in
//!   the half, and the next `recv` goes on from there. A message is taken
//!   out only when the future completes.
//! - `send` before it wrote anything: nothing is sent. After it started
//!   (its `WriteFile` issued), the message is delivered whole: the next
//!   `send`, `flush` or `shutdown` first waits for that write and reports
//!   its failure.
//! - `accept`: a client is taken from the queue only by a future that
//!   completes; a dropped one leaves it for the next `accept`.
//! - `connect`: a connection made after the future was dropped is closed.
//!
//! Dropping a half with an operation in flight cancels the operation
//! (`CancelIoEx`): a write still waiting for the reader then is not
//! delivered.
//!
//! # What differs from Linux
//!
//! Linux-only, left out here: `NamedPipe::transport` and `recv_fd` (no
//! shared-memory transport or descriptor passing on Windows), `AsFd`
//! (the types give their pipe handle through `AsHandle` instead), TCP
//! names. `shutdown` (`AsyncWrite::poll_shutdown`) only waits for the
//! writes in flight: a Windows pipe has no half-close (drop the pipe to
//! end it). [`NamedPipe::from_blocking`] needs no runtime.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, RawHandle};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::sync::oneshot;

use super::{ClientOptions, Link, PeerInfo, PipeMode, READ_STEP};
use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::sys::aio::AsyncOp;
use crate::sys::pipe::Done;

/// The largest single read of `AsyncRead` (a larger buffer is filled by
/// several).
const MAX_READ: usize = 1 << 20;

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

    /// Windows only: the system's name of the pipe (`\\.\pipe\…`), for a
    /// program that does not use ipckit.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::pipe::tokio::PipeServer::from(
    ///     ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap(),
    /// );
    /// assert!(s.os_name().starts_with(r"\\.\pipe\ipckit."));
    /// ```
    pub fn os_name(&self) -> &str {
        self.inner.os_name()
    }
}

// ------------------------------------------------------------ connection

/// One end of an async named-pipe connection: from
/// [`PipeServer::accept`], [`NamedPipe::connect`] or a blocking pipe
/// ([`NamedPipe::from_blocking`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::pipe::tokio::NamedPipe;
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
    /// Connect to `name` (or `\\.\pipe\X`), waiting up to `timeout` for
    /// the server or a free instance; see
    /// [`crate::pipe::NamedPipe::connect`].
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
    /// too: [`ErrorKind::NotFound`], [`ErrorKind::Busy`],
    /// [`ErrorKind::Timeout`], [`ErrorKind::PermissionDenied`]). The
    /// blocking part (`CreateFileW`, `WaitNamedPipeW`, the server's user
    /// check) runs on the runtime's blocking pool; a connection made after
    /// the future was dropped is closed.
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
    /// cloned, not split, else [`ErrorKind::InvalidInput`]). Messages it
    /// had put back are received first. Needs no runtime.
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
        let super::NamedPipe { link, rd, wr } = pipe;
        let only = || {
            Error::new(
                ErrorKind::InvalidInput,
                "the pipe has other handles (try_clone or split); an async pipe must be the only one",
            )
            .with_name(&link.name)
        };
        let rd = Arc::try_unwrap(rd).map_err(|_| only())?;
        let wr = Arc::try_unwrap(wr).map_err(|_| only())?;
        let rd = rd.into_inner().unwrap_or_else(|p| p.into_inner());
        drop(wr);
        let op =
            || AsyncOp::new(link.clone()).ctx(&link.name, "cannot create an event for the pipe");
        let mut chunk = rd.chunk;
        chunk.drain(..rd.chunk_pos.min(chunk.len()));
        Ok(NamedPipe {
            rx: RecvHalf {
                link: link.clone(),
                op: op()?,
                inbox: rd.inbox,
                chunk,
                acc: Vec::new(),
                over: None,
            },
            tx: SendHalf {
                link: link.clone(),
                op: op()?,
                len: 0,
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

    /// Send a request and receive the reply (what `TransactNamedPipe`
    /// does, as a send and a receive: the same bytes on the pipe).
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
        self.rx.link.may_read()?;
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
        &self.rx.link.name
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
        self.rx.link.mode
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
    /// assert!(c.max_message_size() >= 9);
    /// # }
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.rx.link.max_message
    }

    /// Who is at the other end (its pid; see
    /// [`crate::pipe::NamedPipe::peer`]).
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
        self.rx.link.peer
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

// ------------------------------------------------------------------ halves

/// The receiving half of an async [`NamedPipe`]: [`recv`](Self::recv) and
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
    op: AsyncOp,
    /// Messages the blocking pipe had put back.
    inbox: VecDeque<Vec<u8>>,
    /// `AsyncRead`: bytes read and not handed out yet.
    chunk: Vec<u8>,
    /// The message being put together (its parts so far).
    acc: Vec<u8>,
    /// A message over the limit being read to its end: its bytes so far.
    over: Option<usize>,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecvHalf").field(&self.link).finish()
    }
}

impl RecvHalf {
    /// Receive the next message, whole (`ReadFile`, continued while it
    /// says `ERROR_MORE_DATA`). Errors as the blocking
    /// [`recv`](crate::pipe::NamedPipe::recv): [`ErrorKind::PeerGone`] once
    /// the other end is gone, [`ErrorKind::TooLarge`] for a message over
    /// this side's limit (read and discarded; the connection stays usable).
    /// Byte mode: what one read returns. Cancel-safe: a dropped future
    /// loses nothing (see the [module docs](self)).
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
        poll_fn(|cx| self.poll_recv(cx)).await
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
        &self.link.name
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
    /// let (rx, _tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// assert_eq!(rx.peer().pid, Some(std::process::id()));
    /// # }
    /// ```
    pub fn peer(&self) -> PeerInfo {
        self.link.peer
    }

    /// Forget a message in progress (after a failure).
    fn reset(&mut self) {
        self.acc.clear();
        self.over = None;
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<u8>>> {
        let link = self.link.clone();
        if !self.op.is_pending() && self.acc.is_empty() && self.over.is_none() {
            if let Some(m) = self.inbox.pop_front() {
                return Poll::Ready(Ok(m));
            }
            if !self.chunk.is_empty() {
                // Bytes an `AsyncRead` left: the rest of a message.
                return Poll::Ready(Ok(std::mem::take(&mut self.chunk)));
            }
            link.check_usable()?;
            link.may_read()?;
        }
        let max = link.max_message;
        loop {
            if !self.op.is_pending() {
                let len = if self.over.is_some() {
                    READ_STEP
                } else if self.acc.is_empty() {
                    max.clamp(1, READ_STEP)
                } else {
                    // The rest of a message: grow, up to one byte over the
                    // limit (enough to tell).
                    self.acc
                        .len()
                        .max(READ_STEP)
                        .min((max + 1).saturating_sub(self.acc.len()))
                };
                if let Err(e) = self.op.start_read(len) {
                    self.reset();
                    return Poll::Ready(Err(link.os_err(e, "cannot read from the pipe")));
                }
            }
            let (n, more) = match ready!(self.op.poll(cx)) {
                Ok(Done::All(n)) => (n, false),
                Ok(Done::More(n)) => (n, true),
                Ok(Done::TimedOut) => (0, false),
                Err(e) => {
                    self.reset();
                    return Poll::Ready(Err(link.os_err(e, "cannot read from the pipe")));
                }
            };
            match &mut self.over {
                Some(total) => *total += n,
                None => {
                    self.acc.extend_from_slice(&self.op.data()[..n]);
                    if self.acc.len() > max {
                        self.over = Some(self.acc.len());
                        self.acc = Vec::new();
                    }
                }
            }
            if more {
                continue;
            }
            if let Some(total) = self.over.take() {
                return Poll::Ready(Err(link.too_large(total)));
            }
            return Poll::Ready(Ok(std::mem::take(&mut self.acc)));
        }
    }
}

impl AsyncRead for RecvHalf {
    /// Byte mode reads the stream; message mode reads messages' bytes one
    /// after the other (a message longer than `buf` comes with the next
    /// reads; an empty message is skipped). The end of the pipe is the end
    /// of the stream.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if me.chunk.is_empty() && !me.op.is_pending() {
            if let Some(m) = me.inbox.pop_front() {
                me.chunk = m;
            } else if !me.acc.is_empty() {
                // A message `recv` had begun: its bytes come first.
                me.chunk = std::mem::take(&mut me.acc);
            }
            me.over = None;
        }
        if !me.chunk.is_empty() {
            let n = buf.remaining().min(me.chunk.len());
            buf.put_slice(&me.chunk[..n]);
            me.chunk.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let link = me.link.clone();
        if !me.op.is_pending() {
            match link.check_usable() {
                Err(e) if e.kind() == ErrorKind::PeerGone => return Poll::Ready(Ok(())),
                r => r?,
            }
            link.may_read()?;
        }
        loop {
            if !me.op.is_pending() {
                if let Err(e) = me.op.start_read(buf.remaining().min(MAX_READ)) {
                    let e = link.os_err(e, "cannot read from the pipe");
                    return Poll::Ready(eof_or(e));
                }
            }
            let n = match ready!(me.op.poll(cx)) {
                // A zero-length message is no end of stream: read on.
                Ok(Done::All(0)) if link.mode == PipeMode::Message => continue,
                Ok(Done::All(n)) | Ok(Done::More(n)) => n,
                Ok(Done::TimedOut) => continue,
                Err(e) => {
                    let e = link.os_err(e, "cannot read from the pipe");
                    return Poll::Ready(eof_or(e));
                }
            };
            // The read may have been sized by an earlier, larger buffer.
            let data = &me.op.data()[..n];
            let k = buf.remaining().min(n);
            buf.put_slice(&data[..k]);
            me.chunk.extend_from_slice(&data[k..]);
            return Poll::Ready(Ok(()));
        }
    }
}

/// `AsyncRead`'s view of a failure: the pipe's end is the stream's end.
fn eof_or(e: Error) -> io::Result<()> {
    if e.kind() == ErrorKind::PeerGone {
        Ok(())
    } else {
        Err(e.into())
    }
}

/// The sending half of an async [`NamedPipe`]: [`send`](Self::send) and
/// `AsyncWrite`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).create("p").unwrap();
/// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
/// let (_rx, mut tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
/// tx.send(b"out").await.unwrap();
/// assert_eq!(s.accept().unwrap().recv().unwrap(), b"out");
/// # }
/// ```
pub struct SendHalf {
    link: Arc<Link>,
    op: AsyncOp,
    /// The length of the write in flight.
    len: usize,
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SendHalf").field(&self.link).finish()
    }
}

impl SendHalf {
    /// Send one message (one `WriteFile`). A message over
    /// [`max_message_size`](NamedPipe::max_message_size) is refused with
    /// [`ErrorKind::TooLarge`] before anything is written;
    /// [`ErrorKind::PeerGone`] once the other end is gone. Waits while the
    /// pipe is full (the reader is behind). Cancel-safe: see the
    /// [module docs](self).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let s = ipckit::pipe::ServerOptions::new().namespace(&ns).max_message_size(4).create("p").unwrap();
    /// # let opts = ipckit::pipe::ClientOptions::new().namespace(&ns);
    /// let (_rx, mut tx) = ipckit::pipe::tokio::NamedPipe::connect_with(&opts, "p").await.unwrap().split();
    /// let e = tx.send(&[0u8; 1 << 20]).await.unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::TooLarge);
    /// tx.send(b"ok").await.unwrap();
    /// assert_eq!(s.accept().unwrap().recv().unwrap(), b"ok");
    /// # }
    /// ```
    #[doc(alias = "WriteFile")]
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        poll_fn(|cx| self.poll_idle(cx)).await?;
        let link = self.link.clone();
        link.check_usable()?;
        link.may_write()?;
        link.check_send_size(msg.len())?;
        self.start(msg)?;
        poll_fn(|cx| self.poll_idle(cx)).await
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
        &self.link.name
    }

    fn start(&mut self, msg: &[u8]) -> Result<()> {
        self.op
            .start_write(msg)
            .map_err(|e| self.link.os_err(e, "cannot write to the pipe"))?;
        self.len = msg.len();
        Ok(())
    }

    /// Wait for the write in flight, if any, and report its failure.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.op.is_pending() {
            return Poll::Ready(Ok(()));
        }
        let link = &self.link;
        Poll::Ready(match ready!(self.op.poll(cx)) {
            Ok(Done::All(n)) | Ok(Done::More(n)) if n >= self.len => Ok(()),
            Ok(Done::All(n)) | Ok(Done::More(n)) => Err(Error::new(
                ErrorKind::Io,
                format!("the pipe took {n} of {} bytes", self.len),
            )
            .with_name(&link.name)),
            Ok(Done::TimedOut) => {
                Err(Error::new(ErrorKind::Io, "the write was cancelled").with_name(&link.name))
            }
            Err(e) => Err(link.os_err(e, "cannot write to the pipe")),
        })
    }
}

impl AsyncWrite for SendHalf {
    /// Message mode: one message of at most `max_message_size` bytes of
    /// `buf`; byte mode: all of `buf`. The write is in flight when this
    /// returns; the next write, `flush` or `shutdown` waits for it and
    /// reports its failure.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        ready!(me.poll_idle(cx))?;
        me.link.check_usable()?;
        me.link.may_write()?;
        let n = match me.link.mode {
            PipeMode::Message => buf.len().min(me.link.max_message),
            PipeMode::Byte => buf.len(),
        };
        me.start(&buf[..n])?;
        Poll::Ready(Ok(n))
    }

    /// Waits for the write in flight (not for the reader: that is the
    /// blocking [`flush`](crate::pipe::NamedPipe::flush),
    /// `FlushFileBuffers`).
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_idle(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Waits for the write in flight; a Windows pipe has no half-close.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_idle(cx))?;
        Poll::Ready(Ok(()))
    }
}

macro_rules! as_handle {
    ($($t:ty => $link:ident),*) => {$(
        impl AsHandle for $t {
            /// The pipe handle (opened for overlapped I/O); reading or
            /// writing it directly would race with this value's calls.
            fn as_handle(&self) -> BorrowedHandle<'_> {
                self.$link().as_handle()
            }
        }

        impl AsRawHandle for $t {
            /// The pipe handle.
            fn as_raw_handle(&self) -> RawHandle {
                self.$link().as_handle().as_raw_handle()
            }
        }
    )*};
}

impl NamedPipe {
    fn link(&self) -> &Link {
        &self.rx.link
    }
}

impl RecvHalf {
    fn link(&self) -> &Link {
        &self.link
    }
}

impl SendHalf {
    fn link(&self) -> &Link {
        &self.link
    }
}

as_handle!(NamedPipe => link, RecvHalf => link, SendHalf => link);
