//! Stream sockets: Unix domain and TCP, as plain owned fds.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::Mode;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// One end of a connected stream socket, or a listener: on Linux a plain
/// owned fd (closing it closes the socket; the peer sees end of stream).
pub(crate) type Socket = OwnedFd;

/// A borrowed [`Socket`] (`Copy`).
pub(crate) type SocketRef<'a> = BorrowedFd<'a>;

/// A descriptor passed along a socket (`SCM_RIGHTS`). Windows passes none
/// (there it is uninhabited).
pub(crate) type PassedFd = OwnedFd;

/// What the socket calls take: anything that lends a socket.
pub(crate) trait AsSocket {
    /// Borrow the socket.
    fn as_socket(&self) -> SocketRef<'_>;
}

impl<T: AsFd + ?Sized> AsSocket for T {
    fn as_socket(&self) -> SocketRef<'_> {
        self.as_fd()
    }
}

/// Bind and listen on a Unix socket at `path` (replacing a file left there),
/// mode 0600.
pub(crate) fn unix_listen(path: &Path) -> io::Result<OwnedFd> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::fs::chmod(path, Mode::from_raw_mode(0o600))?;
    rustix::net::listen(&fd, 1024)?;
    Ok(fd)
}

/// Connect to the Unix socket at `path`.
pub(crate) fn unix_connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    rustix::net::connect(&fd, &addr)?;
    Ok(fd)
}

/// Bind and listen on TCP; returns the fd and the address actually bound.
pub(crate) fn tcp_listen(addr: &str) -> io::Result<(OwnedFd, SocketAddr)> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?;
    Ok((OwnedFd::from(l), local))
}

/// Connect over TCP within `timeout` (each resolved address in turn), with
/// `TCP_NODELAY` set.
pub(crate) fn tcp_connect(addr: &str, timeout: Duration) -> io::Result<OwnedFd> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout.max(Duration::from_millis(1))) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(OwnedFd::from(s));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Set `TCP_NODELAY` (ignored for non-TCP sockets).
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) {
    let _ = rustix::net::sockopt::set_tcp_nodelay(fd, true);
}

/// The address of the peer of a TCP socket, if it is one.
pub(crate) fn tcp_peer_addr(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let any = rustix::net::getpeername(fd).ok()??;
    SocketAddr::try_from(any).ok()
}

/// Send all of `buf`; never raises `SIGPIPE` (a closed peer is `BrokenPipe`).
pub(crate) fn send_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Fill `buf` completely. `Ok(false)` if the stream ended cleanly before the
/// first byte; a stream ending inside `buf` is `UnexpectedEof`.
pub(crate) fn recv_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::net::recv(fd, &mut buf[got..], RecvFlags::WAITALL) {
            Ok((0, _)) if got == 0 => return Ok(false),
            Ok((0, _)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection in the middle of a frame",
                ))
            }
            Ok((n, _)) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Receive what is available (at least one byte, blocking); 0 means the
/// stream ended.
pub(crate) fn recv_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::empty()) {
            Ok((n, _)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Like [`recv_some`], also collecting file descriptors passed with
/// `SCM_RIGHTS` (received close-on-exec) into `fds`. Fails with
/// `InvalidData` if the kernel had to drop descriptors for lack of room.
pub(crate) fn recv_some_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    recvmsg_fds(fd, buf, fds, RecvFlags::empty()).map(|n| n.unwrap_or(0))
}

/// One `recvmsg` with `flags` (plus `CMSG_CLOEXEC`), retried on `EINTR`,
/// collecting passed descriptors into `fds`; `Ok(None)` on `EAGAIN`.
fn recvmsg_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<Option<usize>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, ReturnFlags};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_RECV))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut *buf)];
        match rustix::net::recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC | flags) {
            Ok(msg) => {
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = m {
                        fds.extend(rights);
                    }
                }
                if msg.flags.contains(ReturnFlags::CTRUNC) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the peer passed more file descriptors than fit; they were dropped",
                    ));
                }
                return Ok(Some(msg.bytes));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) if flags.contains(RecvFlags::DONTWAIT) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Most descriptors accepted by one receive.
const MAX_FDS_PER_RECV: usize = 8;

/// Send all of `bytes` with `passed` attached (`SCM_RIGHTS`) to the first
/// byte.
pub(crate) fn send_with_fd(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    passed: BorrowedFd<'_>,
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let list = [passed];
    control.push(SendAncillaryMessage::ScmRights(&list));
    let sent = loop {
        match rustix::net::sendmsg(
            fd,
            &[io::IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    send_all(fd, &bytes[sent..])
}

/// Wait until one of `fds` is readable (or hung up), for at most `timeout`
/// (`None`: forever). Returns the indices that are ready; empty on timeout.
pub(crate) fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
            .collect();
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(0) => return Ok(Vec::new()),
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Credentials of the process at the other end of a Unix socket:
/// (pid, uid, gid).
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let c = rustix::net::sockopt::socket_peercred(fd)?;
    Ok((
        c.pid.as_raw_nonzero().get() as u32,
        c.uid.as_raw(),
        c.gid.as_raw(),
    ))
}

/// Shut both directions down; the peer sees end-of-stream.
pub(crate) fn shutdown(fd: impl AsSocket) {
    let _ = rustix::net::shutdown(fd.as_socket(), rustix::net::Shutdown::Both);
}

/// Shut the receiving direction down: a thread blocked reading this socket
/// sees end-of-stream; writing still works.
pub(crate) fn shutdown_read(fd: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Read);
}

/// Whether the peer has closed its end (end-of-stream or error pending),
/// without consuming anything.
pub(crate) fn peer_closed(fd: BorrowedFd<'_>) -> bool {
    let mut p = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut p, Some(&ts)) {
        Ok(0) => false,
        Ok(_) => {
            let r = p[0].revents();
            if r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP) {
                return true;
            }
            // Readable: data or end-of-stream. Peek one byte to tell.
            let mut b = [0u8; 1];
            matches!(
                rustix::net::recv(fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
                Ok((0, _))
            )
        }
        Err(_) => true,
    }
}

/// Whether the socket has a pending error, as the kernel sets when the peer
/// closed its end with our data still unread in it (`ECONNRESET`). Takes
/// the error (`SO_ERROR`).
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> bool {
    !matches!(rustix::net::sockopt::socket_error(fd), Ok(Ok(())))
}

/// Bytes written on `fd` that the peer has not consumed yet (`SIOCOUTQ`):
/// for a Unix socket, bytes the peer process has not read; for TCP, bytes
/// the peer host has not acknowledged.
pub(crate) fn unread_outgoing(fd: BorrowedFd<'_>) -> io::Result<usize> {
    outq::siocoutq(fd)
}

#[allow(unsafe_code)]
mod outq {
    use std::io;
    use std::os::fd::BorrowedFd;

    use rustix::ioctl::{Getter, Opcode};

    /// `SIOCOUTQ` (= `TIOCOUTQ`) on the generic Linux ioctl numbering.
    const SIOCOUTQ: Opcode = 0x5411;

    pub(super) fn siocoutq(fd: BorrowedFd<'_>) -> io::Result<usize> {
        // SAFETY: SIOCOUTQ on a socket takes a pointer to one `int` and
        // writes the queue length there; `Getter<_, c_int>` provides exactly
        // that out-parameter, and `fd` is a live borrowed socket.
        let n = unsafe { rustix::ioctl::ioctl(fd, Getter::<SIOCOUTQ, std::ffi::c_int>::new()) }?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Make blocking receives on `fd` fail (`WouldBlock`) after `timeout`
/// without data (`SO_RCVTIMEO`); `None` clears it. Bounds a handshake
/// whose peer stops halfway.
pub(crate) fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(fd, rustix::net::sockopt::Timeout::Recv, timeout)?;
    Ok(())
}

/// Make `fd` non-blocking (listeners watched by a readiness loop).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true)?;
    Ok(())
}

/// Accept one connection (close-on-exec) from a non-blocking listener;
/// `Ok(None)` when none is waiting.
pub(crate) fn accept_nowait(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(fd) => return Ok(Some(fd)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Ok(None),
            // The connection was reset before we took it: try the next.
            Err(rustix::io::Errno::CONNABORTED) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `e` means the process or system ran out of descriptors or
/// kernel memory (accept cannot succeed until some are freed).
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::MFILE.raw_os_error()
            || c == rustix::io::Errno::NFILE.raw_os_error()
            || c == rustix::io::Errno::NOBUFS.raw_os_error()
            || c == rustix::io::Errno::NOMEM.raw_os_error()
    )
}

/// Receive what is there without waiting, taking passed descriptors into
/// `fds`: `Ok(None)` if nothing is readable yet, `Ok(Some(0))` at end of
/// stream.
pub(crate) fn recv_nowait_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    recvmsg_fds(fd, buf, fds, RecvFlags::DONTWAIT)
}

/// Send without waiting (a refusal to a peer we are about to close);
/// whatever does not fit is dropped.
pub(crate) fn send_nowait(fd: BorrowedFd<'_>, buf: &[u8]) {
    let _ = rustix::net::send(fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT);
}

/// Shut the sending direction of `fd` down (the peer reads the end of the
/// stream; receiving still works).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Write);
}

/// Send what the socket takes now (at least one byte, else `WouldBlock`),
/// never raising `SIGPIPE`; retried on `EINTR`.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn send_some_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Receive what the socket holds now (`WouldBlock` if nothing; `Ok(0)` at
/// the end of the stream); retried on `EINTR`.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn recv_some_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map(|(n, _)| n).map_err(io::Error::from),
        }
    }
}

/// Make blocking sends on `fd` fail after `timeout` without progress
/// (`SO_SNDTIMEO`): a peer that never reads cannot hold a writer forever.
pub(crate) fn set_send_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(fd, rustix::net::sockopt::Timeout::Send, timeout)?;
    Ok(())
}
