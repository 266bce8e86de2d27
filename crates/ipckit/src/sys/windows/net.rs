//! Stream connections on Windows: the connection layer's sockets, carried
//! by named pipes (issue: "named pipes instead of Unix sockets").
//!
//! A [`Socket`] is one end of a connection — one instance of a byte-mode,
//! duplex named pipe `\\.\pipe\…` — or a listener on such a name. The
//! connection layer asks of a socket what a Unix socket gives: blocking and
//! non-blocking receives, a wait on several at once, readiness for one
//! [`Poller`](super::poll::Poller) per server, sends bounded by a timeout,
//! shutting the receiving side down to wake a blocked reader. A named pipe
//! has none of that readiness, so each connection has a reader thread: it
//! keeps one overlapped `ReadFile` in flight and moves what arrives into a
//! bounded buffer ([`READ_AHEAD`]; past it the thread stops reading, so a
//! flooding peer is held by the pipe's own flow control). Every receive,
//! wait and readiness query is answered from that buffer. Sends go straight
//! to `WriteFile`, one at a time per connection, bounded by the send
//! timeout.
//!
//! A listener keeps one instance waiting in `ConnectNamedPipe` from a
//! thread of its own. The first instance is made with
//! `FILE_FLAG_FIRST_PIPE_INSTANCE` when the listener is, so a name someone
//! serves already is refused at once; the next instance is always made
//! before a connected one is handed over, so the name never disappears
//! while served (Wine ignores that flag, so the new pipe's instance count
//! is checked as well). Instances carry the user-only security descriptor
//! and refuse remote clients.
//!
//! No descriptors travel over these connections ([`PassedFd`] has no
//! values), and there is no TCP here: the shared-memory ring and TCP
//! endpoints are Linux-only.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::windows::io::{AsHandle, BorrowedHandle, OwnedHandle};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use super::pipe::{self as wpipe, Access, Done, InstanceSpec, Listening};
use super::poll::Shared as PollShared;

/// How many received bytes a connection holds before its reader thread
/// stops reading until some are taken.
pub(crate) const READ_AHEAD: usize = 256 * 1024;
/// Bytes asked of one `ReadFile`.
const READ_CHUNK: usize = 64 * 1024;
/// Each instance's in and out buffer (`CreateNamedPipeW`'s sizes).
const PIPE_BUFFER: u32 = 64 * 1024;
/// Connected instances a listener holds for its server before it stops
/// connecting more (clients then wait in `WaitNamedPipeW`, like a full
/// listen backlog).
const BACKLOG: usize = 64;
/// `ERROR_PIPE_BUSY`.
const ERROR_PIPE_BUSY: i32 = 231;
/// `ERROR_ACCESS_DENIED`.
const ERROR_ACCESS_DENIED: i32 = 5;

/// One end of a connection, or a listener (see the module docs). Dropping
/// it closes it: the peer sees the end of the stream.
pub(crate) struct Socket {
    inner: Arc<Inner>,
}

/// A borrowed [`Socket`] (what `BorrowedFd` is on Linux).
pub(crate) type SocketRef<'a> = &'a Socket;

/// Something that lends a [`Socket`] (what `AsFd` is on Linux).
pub(crate) trait AsSocket {
    /// The socket, borrowed.
    fn as_socket(&self) -> SocketRef<'_>;
}

impl AsSocket for Socket {
    fn as_socket(&self) -> SocketRef<'_> {
        self
    }
}

impl<T: AsSocket + ?Sized> AsSocket for &T {
    fn as_socket(&self) -> SocketRef<'_> {
        (**self).as_socket()
    }
}

/// A descriptor passed along a connection: none on Windows.
#[derive(Debug)]
pub(crate) enum PassedFd {}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.kind {
            Kind::Stream(s) => write!(f, "Socket(pipe, server side: {})", s.server_side),
            Kind::Listener(l) => write!(f, "Socket(listening on {})", l.spec.os_name),
        }
    }
}

pub(super) struct Inner {
    kind: Kind,
    state: Mutex<State>,
    /// Signalled on every change of `state` a waiter may care about.
    cond: Condvar,
    /// Set (and left set) when the socket is closed: ends the thread's
    /// wait and any send in flight.
    stop: OwnedHandle,
}

enum Kind {
    Stream(Stream),
    Listener(Listener),
}

struct Stream {
    /// The instance or client end; taken (closed) by `close`, after the
    /// I/O in flight has ended.
    handle: RwLock<Option<OwnedHandle>>,
    /// This end is a server instance (else a client's).
    server_side: bool,
    /// The peer's pid and whether it runs as the calling user, found once.
    peer: Option<(u32, bool)>,
    /// One `WriteFile` at a time: bytes of two sends never interleave.
    write: Mutex<OwnedHandle>,
}

impl Stream {
    /// Run `f` on the handle while it is open (holding it open meanwhile);
    /// `BrokenPipe` once closed.
    fn with_handle<R>(&self, f: impl FnOnce(BorrowedHandle<'_>) -> io::Result<R>) -> io::Result<R> {
        let h = self.handle.read().unwrap_or_else(|p| p.into_inner());
        match h.as_ref() {
            Some(h) => f(h.as_handle()),
            None => Err(closed_error()),
        }
    }
}

struct Listener {
    spec: InstanceSpec,
}

#[derive(Default)]
struct State {
    /// Received, not yet taken.
    buf: VecDeque<u8>,
    /// The peer ended the stream (or reading failed: `error`).
    eof: bool,
    /// Why reading ended, if it failed rather than ended cleanly.
    error: Option<io::ErrorKind>,
    /// `shutdown_read`: receives see the end of the stream.
    read_shut: bool,
    /// `shutdown` or drop: nothing more in or out.
    closed: bool,
    recv_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    /// A listener's connected instances, waiting for `accept_nowait`.
    pending: VecDeque<Socket>,
    /// A listener that could not make its next instance.
    listen_error: Option<io::ErrorKind>,
    /// Pollers watching this socket.
    watchers: Vec<Weak<PollShared>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn new(kind: Kind) -> io::Result<Arc<Inner>> {
        Ok(Arc::new(Inner {
            kind,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            stop: wpipe::event()?,
        }))
    }

    /// Wake every thread waiting on this socket, and its pollers. Called
    /// with the state unlocked.
    fn changed(&self) {
        self.cond.notify_all();
        let watchers: Vec<Arc<PollShared>> = {
            let mut st = lock(&self.state);
            st.watchers.retain(|w| w.strong_count() > 0);
            st.watchers.iter().filter_map(Weak::upgrade).collect()
        };
        for w in watchers {
            w.notify();
        }
    }

    /// Whether a poller should report this socket now, and with hang-up.
    pub(super) fn readiness(&self) -> Option<bool> {
        let st = lock(&self.state);
        match self.kind {
            Kind::Stream(_) => {
                let hup = st.eof || st.closed;
                (hup || st.read_shut || !st.buf.is_empty()).then_some(hup)
            }
            Kind::Listener(_) => {
                (!st.pending.is_empty() || st.listen_error.is_some() || st.closed).then_some(false)
            }
        }
    }

    pub(super) fn watch(&self, poller: Weak<PollShared>) {
        let mut st = lock(&self.state);
        st.watchers.retain(|w| w.strong_count() > 0);
        st.watchers.push(poller);
    }

    pub(super) fn unwatch(&self, poller: &Weak<PollShared>) {
        lock(&self.state)
            .watchers
            .retain(|w| w.strong_count() > 0 && !w.ptr_eq(poller));
    }

    /// Close: stop the reader thread and any send in flight, fail later
    /// calls, and close the handle at once. Closing (not
    /// `DisconnectNamedPipe`, which discards what the peer has not read)
    /// lets the peer read everything written before, then see the end of
    /// the stream, as after a socket's shutdown.
    fn close(&self) {
        let pending = {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            st.closed = true;
            std::mem::take(&mut st.pending)
        };
        drop(pending);
        wpipe::set_event(self.stop.as_handle());
        if let Kind::Stream(s) = &self.kind {
            // The reads and writes in flight end at the stop event; then
            // nobody holds the handle.
            drop(s.handle.write().unwrap_or_else(|p| p.into_inner()).take());
        }
        self.changed();
    }
}

impl Socket {
    pub(super) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    fn stream(&self) -> io::Result<&Stream> {
        match &self.inner.kind {
            Kind::Stream(s) => Ok(s),
            Kind::Listener(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a listening pipe carries no data",
            )),
        }
    }

    /// A connected instance or client end `h`, with its reader thread.
    fn connected(h: OwnedHandle, server_side: bool) -> io::Result<Socket> {
        let peer = wpipe::peer_pid(h.as_handle(), server_side)
            .map(|pid| (pid, wpipe::runs_as_me(pid).unwrap_or(false)));
        let inner = Inner::new(Kind::Stream(Stream {
            handle: RwLock::new(Some(h)),
            server_side,
            peer,
            write: Mutex::new(wpipe::event()?),
        }))?;
        let ev = wpipe::event()?;
        let weak = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("ipckit-pipe-read".into())
            .stack_size(64 * 1024)
            .spawn(move || read_loop(&weak, ev))?;
        Ok(Socket { inner })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.inner.close();
    }
}

/// The reader thread of a connection: keep one read in flight, move what
/// arrives into the buffer, stop at [`READ_AHEAD`] until some is taken,
/// and end at the end of the stream, a failure, or close.
fn read_loop(inner: &Arc<Inner>, ev: OwnedHandle) {
    let Kind::Stream(s) = &inner.kind else {
        return;
    };
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        {
            let mut st = lock(&inner.state);
            while st.buf.len() >= READ_AHEAD && !st.closed {
                st = inner.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closed {
                return;
            }
        }
        let r = s.with_handle(|h| {
            wpipe::read_until(h, ev.as_handle(), inner.stop.as_handle(), &mut chunk)
        });
        let mut st = lock(&inner.state);
        match r {
            Ok(Done::All(0)) if !st.closed => {
                // A zero-byte message (not sent by ipckit; a foreign
                // client may): nothing to deliver.
                continue;
            }
            Ok(Done::All(n)) | Ok(Done::More(n)) => st.buf.extend(&chunk[..n]),
            Ok(Done::TimedOut) => {}
            Err(e) => {
                // ERROR_BROKEN_PIPE / ERROR_PIPE_NOT_CONNECTED: the peer
                // closed; anything else is a failure the reader reports.
                if !matches!(e.raw_os_error(), Some(109) | Some(233)) {
                    st.error = Some(e.kind());
                }
                st.eof = true;
            }
        }
        let end = st.eof || st.closed;
        drop(st);
        inner.changed();
        if end {
            return;
        }
    }
}

/// The thread of a listener: keep an instance waiting for a client; make
/// the next instance, then hand the connected one over.
fn listen_loop(inner: &Arc<Inner>, first: OwnedHandle) {
    let Kind::Listener(l) = &inner.kind else {
        return;
    };
    let mut next = Some(first);
    loop {
        let h = match next.take() {
            Some(h) => h,
            None => match wpipe::create_instance(&l.spec, false) {
                Ok(h) => h,
                Err(e) => {
                    lock(&inner.state).listen_error = Some(e.kind());
                    inner.changed();
                    return;
                }
            },
        };
        let waiting = match Listening::start(h) {
            Ok(w) => w,
            // The client came and went before the connect: a new instance.
            Err(_) => continue,
        };
        match wpipe::wait_any(&[waiting.event(), inner.stop.as_handle()], None) {
            Ok(Some(0)) => {}
            _ => return,
        }
        let Ok(h) = waiting.finish() else { continue };
        match wpipe::create_instance(&l.spec, false) {
            Ok(n) => next = Some(n),
            Err(e) => {
                lock(&inner.state).listen_error = Some(e.kind());
                inner.changed();
            }
        }
        let Ok(sock) = Socket::connected(h, true) else {
            continue;
        };
        {
            let mut st = lock(&inner.state);
            while st.pending.len() >= BACKLOG && !st.closed {
                st = inner.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closed {
                return;
            }
            st.pending.push_back(sock);
        }
        inner.changed();
        if next.is_none() {
            return;
        }
    }
}

fn spec(os_name: &str) -> InstanceSpec {
    InstanceSpec {
        os_name: os_name.to_owned(),
        access: Access::Duplex,
        message: false,
        reject_remote: true,
        max_instances: None,
        buffer: PIPE_BUFFER,
    }
}

/// Listen on the named pipe `os_name` (see the module docs):
/// `AlreadyExists` if someone serves that name already.
pub(crate) fn pipe_listen(os_name: &str) -> io::Result<Socket> {
    let spec = spec(os_name);
    let taken = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{os_name} is served already"),
        )
    };
    let first = wpipe::create_instance(&spec, true).map_err(|e| {
        if e.raw_os_error() == Some(ERROR_ACCESS_DENIED)
            || e.raw_os_error() == Some(ERROR_PIPE_BUSY)
        {
            taken()
        } else {
            e
        }
    })?;
    // Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE: the instance joined an
    // existing pipe if it is not the only one.
    if wpipe::instances(first.as_handle()).is_ok_and(|n| n > 1) {
        return Err(taken());
    }
    let inner = Inner::new(Kind::Listener(Listener { spec }))?;
    let thread = Arc::clone(&inner);
    std::thread::Builder::new()
        .name("ipckit-pipe-listen".into())
        .stack_size(64 * 1024)
        .spawn(move || listen_loop(&thread, first))?;
    Ok(Socket { inner })
}

/// Connect to the named pipe `os_name` within `timeout`: `NotFound` when
/// no such pipe exists, `TimedOut` when every instance stayed busy.
pub(crate) fn pipe_connect(os_name: &str, timeout: Duration) -> io::Result<Socket> {
    let deadline = Instant::now() + timeout;
    loop {
        match wpipe::open_client(os_name) {
            Ok((h, Access::Duplex)) => return Socket::connected(h, false),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{os_name} is a one-way pipe, not a connection endpoint"),
                ))
            }
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !wpipe::wait_named(os_name, left)? {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("every instance of {os_name} stayed busy"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn unsupported_tcp() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP endpoints are Linux-only for now",
    )
}

/// TCP endpoints are Linux-only for now: `Unsupported`.
pub(crate) fn tcp_listen(_addr: &str) -> io::Result<(Socket, SocketAddr)> {
    Err(unsupported_tcp())
}

/// TCP endpoints are Linux-only for now: `Unsupported`.
pub(crate) fn tcp_connect(_addr: &str, _timeout: Duration) -> io::Result<Socket> {
    Err(unsupported_tcp())
}

/// Nothing to do: no TCP here.
pub(crate) fn set_nodelay(_s: SocketRef<'_>) {}

/// No TCP here: `None`.
pub(crate) fn tcp_peer_addr(_s: SocketRef<'_>) -> Option<SocketAddr> {
    None
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed")
}

/// Send all of `buf`, waiting at most the send timeout for the peer to make
/// room (`TimedOut` then: the connection is no longer usable). A closed
/// peer is `BrokenPipe`.
pub(crate) fn send_all(s: SocketRef<'_>, mut buf: &[u8]) -> io::Result<()> {
    let st = s.stream()?;
    let timeout = {
        let state = lock(&s.inner.state);
        if state.closed {
            return Err(closed_error());
        }
        state.send_timeout
    };
    let ev = st.write.lock().unwrap_or_else(|p| p.into_inner());
    while !buf.is_empty() {
        match st.with_handle(|h| {
            wpipe::write_until(h, ev.as_handle(), s.inner.stop.as_handle(), buf, timeout)
        }) {
            Ok(Done::All(n)) | Ok(Done::More(n)) => buf = &buf[n..],
            Ok(Done::TimedOut) => {
                if lock(&s.inner.state).closed {
                    return Err(closed_error());
                }
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer read nothing for the whole send timeout",
                ));
            }
            // ERROR_NO_DATA (232) / ERROR_BROKEN_PIPE (109) / not connected (233).
            Err(e) if matches!(e.raw_os_error(), Some(232) | Some(109) | Some(233)) => {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, e))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Take up to `out.len()` buffered bytes: `Some(0)` at the end of the
/// stream, `None` when nothing is there yet.
fn take(st: &mut State, out: &mut [u8]) -> io::Result<Option<usize>> {
    if !st.buf.is_empty() && !st.read_shut && !st.closed {
        let n = out.len().min(st.buf.len());
        for (o, b) in out.iter_mut().zip(st.buf.drain(..n)) {
            *o = b;
        }
        return Ok(Some(n));
    }
    if st.read_shut || st.closed {
        return Ok(Some(0));
    }
    if st.eof {
        return match st.error {
            Some(kind) => Err(io::Error::new(kind, "reading the pipe failed")),
            None => Ok(Some(0)),
        };
    }
    Ok(None)
}

/// Receive what is there, waiting for at least one byte (at most the
/// receive timeout: `WouldBlock` then); 0 means the stream ended.
pub(crate) fn recv_some(s: SocketRef<'_>, buf: &mut [u8]) -> io::Result<usize> {
    s.stream()?;
    if buf.is_empty() {
        return Ok(0);
    }
    let inner = &s.inner;
    let mut st = lock(&inner.state);
    let deadline = st.recv_timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(n) = take(&mut st, buf)? {
            drop(st);
            if n > 0 {
                // Room again for the reader thread.
                inner.cond.notify_all();
            }
            return Ok(n);
        }
        st = match deadline {
            None => inner.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "nothing arrived within the receive timeout",
                    ));
                }
                inner
                    .cond
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
}

/// Fill `buf` completely. `Ok(false)` if the stream ended cleanly before the
/// first byte; a stream ending inside `buf` is `UnexpectedEof`.
pub(crate) fn recv_exact(s: SocketRef<'_>, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match recv_some(s, &mut buf[got..])? {
            0 if got == 0 => return Ok(false),
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection in the middle of a frame",
                ))
            }
            n => got += n,
        }
    }
    Ok(true)
}

/// [`recv_some`]; no descriptors travel on Windows, `fds` stays empty.
pub(crate) fn recv_some_with_fds(
    s: SocketRef<'_>,
    buf: &mut [u8],
    _fds: &mut Vec<PassedFd>,
) -> io::Result<usize> {
    recv_some(s, buf)
}

/// Receive what is buffered without waiting: `Ok(None)` if nothing is there
/// yet, `Ok(Some(0))` at the end of the stream. `fds` stays empty.
pub(crate) fn recv_nowait_with_fds(
    s: SocketRef<'_>,
    buf: &mut [u8],
    _fds: &mut Vec<PassedFd>,
) -> io::Result<Option<usize>> {
    s.stream()?;
    let r = take(&mut lock(&s.inner.state), buf);
    if matches!(r, Ok(Some(n)) if n > 0) {
        s.inner.cond.notify_all();
    }
    r
}

/// Wait until one of `socks` is readable (data, end of stream, or a
/// waiting connection for a listener), for at most `timeout` (`None`:
/// forever). Returns the indices that are ready; empty on timeout.
pub(crate) fn wait_readable(
    socks: &[SocketRef<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    let poller = super::poll::Poller::new()?;
    for (i, s) in socks.iter().enumerate() {
        poller.add(s, i as u64)?;
    }
    let mut ready = Vec::new();
    let r = poller.wait(&mut ready, timeout);
    for s in socks {
        poller.delete(s);
    }
    r?;
    let mut out: Vec<usize> = ready.iter().map(|r| r.token as usize).collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The peer's (pid, uid, gid): uid is [`super::uid`] when the peer process
/// runs as the calling user, else `u32::MAX`; gid is 0.
pub(crate) fn peer_cred(s: SocketRef<'_>) -> io::Result<(u32, u32, u32)> {
    match s.stream()?.peer {
        Some((pid, mine)) => Ok((pid, if mine { super::uid() } else { u32::MAX }, 0)),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the pipe's peer process is not known",
        )),
    }
}

/// Close both directions: the peer sees the end of the stream, local
/// receives see it too, and sends fail.
pub(crate) fn shutdown(s: impl AsSocket) {
    s.as_socket().inner.close();
}

/// Shut the receiving direction down: a thread blocked receiving sees the
/// end of the stream; sending still works.
pub(crate) fn shutdown_read(s: SocketRef<'_>) {
    lock(&s.inner.state).read_shut = true;
    s.inner.changed();
}

/// Whether the peer ended the stream (or reading failed), without taking
/// anything.
pub(crate) fn peer_closed(s: SocketRef<'_>) -> bool {
    let st = lock(&s.inner.state);
    st.eof || st.closed
}

/// No pending-error state on a pipe: always false.
pub(crate) fn take_error(_s: SocketRef<'_>) -> bool {
    false
}

/// Windows cannot tell how much of what was written the peer has read:
/// always 0.
pub(crate) fn unread_outgoing(_s: SocketRef<'_>) -> io::Result<usize> {
    Ok(0)
}

/// Bound blocking receives (`WouldBlock` after `timeout` without data);
/// `None` clears it.
pub(crate) fn set_recv_timeout(s: SocketRef<'_>, timeout: Option<Duration>) -> io::Result<()> {
    lock(&s.inner.state).recv_timeout = timeout;
    Ok(())
}

/// Bound sends (`TimedOut` after `timeout` without the peer reading);
/// `None` clears it.
pub(crate) fn set_send_timeout(s: SocketRef<'_>, timeout: Option<Duration>) -> io::Result<()> {
    lock(&s.inner.state).send_timeout = timeout;
    Ok(())
}

/// Nothing to do: the non-blocking calls here never block anyway.
pub(crate) fn set_nonblocking(_s: SocketRef<'_>) -> io::Result<()> {
    Ok(())
}

/// Take one connected client from a listener; `Ok(None)` when none is
/// waiting. A listener that could not make its next instance reports that
/// failure once its waiting clients are taken.
pub(crate) fn accept_nowait(listener: SocketRef<'_>) -> io::Result<Option<Socket>> {
    let inner = &listener.inner;
    let mut st = lock(&inner.state);
    if let Some(s) = st.pending.pop_front() {
        drop(st);
        inner.cond.notify_all();
        return Ok(Some(s));
    }
    match st.listen_error.take() {
        Some(kind) => Err(io::Error::new(
            kind,
            "the listener could not make a new pipe instance",
        )),
        None => Ok(None),
    }
}

/// Whether `e` means the system ran out of handles or memory
/// (`ERROR_NO_SYSTEM_RESOURCES`, `ERROR_NOT_ENOUGH_MEMORY`,
/// `ERROR_OUTOFMEMORY`, `ERROR_TOO_MANY_OPEN_FILES`).
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(1450) | Some(8) | Some(14) | Some(4))
        || e.kind() == io::ErrorKind::OutOfMemory
}

/// Send without waiting long (a refusal to a peer about to be closed): the
/// write is given a moment and dropped if the peer does not take it.
pub(crate) fn send_nowait(s: SocketRef<'_>, buf: &[u8]) {
    let Ok(st) = s.stream() else { return };
    let Ok(ev) = st.write.try_lock() else { return };
    let _ = st.with_handle(|h| {
        wpipe::write_until(
            h,
            ev.as_handle(),
            s.inner.stop.as_handle(),
            buf,
            Some(Duration::from_millis(50)),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        format!(
            r"\\.\pipe\ipckit-net-test.{}.{tag}.{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        )
    }

    const LIMIT: Duration = Duration::from_secs(20);

    fn accept(l: &Socket) -> Socket {
        let r = wait_readable(&[l], Some(LIMIT)).unwrap();
        assert_eq!(r, vec![0], "no client arrived within {LIMIT:?}");
        accept_nowait(l).unwrap().expect("a client is waiting")
    }

    #[test]
    fn bytes_flow_both_ways_and_the_end_is_seen() {
        let n = name("flow");
        let l = pipe_listen(&n).unwrap();
        let c = pipe_connect(&n, LIMIT).unwrap();
        let s = accept(&l);
        set_recv_timeout(&c, Some(LIMIT)).unwrap();
        set_recv_timeout(&s, Some(LIMIT)).unwrap();
        send_all(&c, b"hello world").unwrap();
        let mut buf = [0u8; 11];
        assert!(recv_exact(&s, &mut buf).unwrap());
        assert_eq!(&buf, b"hello world");
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let t = {
            let big = big.clone();
            std::thread::spawn(move || {
                send_all(&s, &big).unwrap();
                s
            })
        };
        let mut got = vec![0u8; big.len()];
        assert!(recv_exact(&c, &mut got).unwrap());
        assert_eq!(got, big);
        let s = t.join().unwrap();
        let (pid, uid, _) = peer_cred(&s).unwrap();
        assert_eq!((pid, uid), (std::process::id(), super::super::uid()));
        drop(c);
        let mut one = [0u8; 1];
        assert!(!recv_exact(&s, &mut one).unwrap(), "end of stream expected");
        assert!(peer_closed(&s));
    }

    #[test]
    fn a_served_name_is_refused_and_a_missing_one_is_not_found() {
        let n = name("claim");
        let _l = pipe_listen(&n).unwrap();
        assert_eq!(
            pipe_listen(&n).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            pipe_connect(&name("absent"), LIMIT).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn nowait_receives_readiness_and_shutdowns() {
        let n = name("nowait");
        let l = pipe_listen(&n).unwrap();
        let c = pipe_connect(&n, LIMIT).unwrap();
        let s = accept(&l);
        let mut buf = [0u8; 8];
        assert_eq!(
            recv_nowait_with_fds(&s, &mut buf, &mut Vec::new()).unwrap(),
            None
        );
        set_recv_timeout(&s, Some(Duration::from_millis(1))).unwrap();
        assert_eq!(
            recv_some(&s, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let poller = super::super::poll::Poller::new().unwrap();
        poller.add(&s, 7).unwrap();
        send_all(&c, b"abc").unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, Some(LIMIT)).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].token, ready[0].hup), (7, false));
        assert_eq!(
            recv_nowait_with_fds(&s, &mut buf, &mut Vec::new()).unwrap(),
            Some(3)
        );
        // shutdown_read wakes a blocked receiver with the end of the stream.
        set_recv_timeout(&s, None).unwrap();
        std::thread::scope(|sc| {
            let h = sc.spawn(|| recv_some(&s, &mut [0u8; 4]).unwrap());
            shutdown_read(&s);
            assert_eq!(h.join().unwrap(), 0);
        });
        // Sending still works after shutdown_read; shutdown ends it for the
        // peer.
        send_all(&s, b"xy").unwrap();
        shutdown(&s);
        set_recv_timeout(&c, Some(LIMIT)).unwrap();
        let mut two = [0u8; 2];
        assert!(recv_exact(&c, &mut two).unwrap());
        assert_eq!(&two, b"xy");
        assert!(!recv_exact(&c, &mut two).unwrap());
        assert_eq!(
            send_all(&s, b"z").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        poller.delete(&s);
    }

    #[test]
    fn many_clients_are_accepted_and_a_reader_holds_back_past_its_read_ahead() {
        let n = name("many");
        let l = pipe_listen(&n).unwrap();
        let clients: Vec<Socket> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..20)
                .map(|_| sc.spawn(|| pipe_connect(&n, LIMIT).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut accepted = Vec::new();
        while accepted.len() < clients.len() {
            accepted.push(accept(&l));
        }
        // Flood one server-side connection: its reader stops at READ_AHEAD,
        // then the pipe's own buffer fills and the writer's send times out.
        let c = &clients[0];
        set_send_timeout(c, Some(Duration::from_millis(300))).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        let err = loop {
            match send_all(c, &chunk) {
                Ok(()) => sent += chunk.len(),
                Err(e) => break e,
            }
            assert!(sent < 64 * 1024 * 1024, "the reader never held back");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Everything sent arrives once the reader takes it (which server
        // end is `c`'s is found by the byte).
        let s = accepted
            .iter()
            .find(|s| wait_readable(&[*s], Some(Duration::ZERO)).unwrap() == vec![0])
            .expect("one server end has the flood");
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        set_recv_timeout(s, Some(LIMIT)).unwrap();
        while got < sent {
            got += recv_some(s, &mut buf).unwrap();
        }
        assert!(got >= sent);
    }

    #[test]
    fn a_waker_wakes_a_waiting_poller() {
        let poller = super::super::poll::Poller::new().unwrap();
        let w = poller.waker(99).unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, Some(Duration::ZERO)).unwrap();
        assert!(ready.is_empty());
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wake());
        poller.wait(&mut ready, Some(LIMIT)).unwrap();
        t.join().unwrap();
        assert_eq!(ready.iter().map(|r| r.token).collect::<Vec<_>>(), vec![99]);
        w.drain();
        poller.wait(&mut ready, Some(Duration::ZERO)).unwrap();
        assert!(ready.is_empty());
    }

    #[test]
    fn what_was_sent_before_a_close_is_still_read() {
        let n = name("linger");
        let l = pipe_listen(&n).unwrap();
        let c = pipe_connect(&n, LIMIT).unwrap();
        let s = accept(&l);
        set_recv_timeout(&c, Some(LIMIT)).unwrap();
        set_recv_timeout(&s, Some(LIMIT)).unwrap();
        // Fill the client's read-ahead and part of the pipe's own buffer,
        // and close the server end before the client reads any of it; then
        // the same with shutdown, the other way.
        let len = READ_AHEAD + PIPE_BUFFER as usize / 2;
        send_all(&s, &vec![5u8; len]).unwrap();
        drop(s);
        let mut got = vec![0u8; len];
        assert!(recv_exact(&c, &mut got).unwrap());
        assert!(got.iter().all(|b| *b == 5));
        assert!(!recv_exact(&c, &mut [0u8; 1]).unwrap(), "then the end");
        let c2 = pipe_connect(&n, LIMIT).unwrap();
        let s2 = accept(&l);
        set_recv_timeout(&s2, Some(LIMIT)).unwrap();
        send_all(&c2, b"last words").unwrap();
        shutdown(&c2);
        let mut w = [0u8; 10];
        assert!(recv_exact(&s2, &mut w).unwrap());
        assert_eq!(&w, b"last words");
        assert!(!recv_exact(&s2, &mut [0u8; 1]).unwrap());
    }
}
