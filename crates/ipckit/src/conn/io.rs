//! Socket reads and writes with deadlines: the helpers every connection
//! uses so that no read of a peer's bytes can block past the caller's
//! deadline.

use std::io;
use std::time::{Duration, Instant};

use crate::sys;
use crate::sys::net::{AsSocket, SocketRef};

/// Fill `buf` completely before `deadline`. `Ok(false)`: the stream ended
/// cleanly before the first byte; ending inside `buf` is `UnexpectedEof`;
/// the deadline passing (even in the middle) is `TimedOut`.
pub(crate) fn recv_exact_until(
    fd: SocketRef<'_>,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sys::net::wait_readable(&[fd], Some(left))?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{got} of {} bytes arrived before the deadline", buf.len()),
            ));
        }
        match sys::net::recv_some(fd, &mut buf[got..])? {
            0 if got == 0 => return Ok(false),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok(true)
}

/// Read a body of `len` bytes, allocating as the bytes arrive (never the
/// announced length up front: a peer that announces a huge body and stops
/// pins only what it sent), before `deadline` if one is given.
pub(crate) fn recv_body(
    fd: SocketRef<'_>,
    len: usize,
    deadline: Option<Instant>,
) -> io::Result<Vec<u8>> {
    const STEP: usize = 256 * 1024;
    let mut body = Vec::with_capacity(len.min(STEP));
    while body.len() < len {
        let start = body.len();
        let n = (len - start).min(start.max(STEP));
        body.resize(start + n, 0);
        let whole = match deadline {
            Some(d) => recv_exact_until(fd, &mut body[start..], d)?,
            None => sys::net::recv_exact(fd, &mut body[start..])?,
        };
        if !whole {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

/// Write all of `buf` (never raising `SIGPIPE`).
pub(crate) fn send_all(fd: SocketRef<'_>, buf: &[u8]) -> io::Result<()> {
    sys::net::send_all(fd, buf)
}

/// Fill `buf`; before `deadline` if one is given (`None`: wait as long as
/// it takes). `Ok(false)`: clean end of stream before the first byte.
pub(crate) fn recv_exact_by(
    fd: SocketRef<'_>,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<bool> {
    match deadline {
        Some(d) => recv_exact_until(fd, buf, d),
        None => sys::net::recv_exact(fd, buf),
    }
}

// The rest of a connected socket's operations, as mechanisms use them once
// connected: here so that no mechanism calls the OS itself (the contract of
// each is in `crate::sys::net`).

/// Write `buf` with the descriptor `passed` attached (`SCM_RIGHTS`).
#[cfg(unix)]
pub(crate) fn send_with_fd(
    fd: SocketRef<'_>,
    buf: &[u8],
    passed: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    sys::net::send_with_fd(fd, buf, passed)
}

/// Fill `buf`, waiting as long as it takes; `Ok(false)`: clean end of
/// stream before the first byte.
pub(crate) fn recv_exact(fd: SocketRef<'_>, buf: &mut [u8]) -> io::Result<bool> {
    sys::net::recv_exact(fd, buf)
}

/// Wait until one of `fds` is readable, at most `timeout`; the ready ones.
pub(crate) fn wait_readable(
    fds: &[SocketRef<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    sys::net::wait_readable(fds, timeout)
}

/// Shut both directions down: the peer sees the end.
pub(crate) fn shutdown(fd: impl AsSocket) {
    sys::net::shutdown(fd)
}

/// Whether the peer closed its end, without consuming anything.
pub(crate) fn peer_closed(fd: SocketRef<'_>) -> bool {
    sys::net::peer_closed(fd)
}

/// Whether the socket has a pending error (taking it).
pub(crate) fn take_error(fd: SocketRef<'_>) -> bool {
    sys::net::take_error(fd)
}

/// Bytes written that the peer has not consumed yet.
pub(crate) fn unread_outgoing(fd: SocketRef<'_>) -> io::Result<usize> {
    sys::net::unread_outgoing(fd)
}

/// Bound blocking receives (`None`: unbounded).
pub(crate) fn set_recv_timeout(fd: SocketRef<'_>, timeout: Option<Duration>) -> io::Result<()> {
    sys::net::set_recv_timeout(fd, timeout)
}

/// Bound blocking sends (`None`: unbounded).
pub(crate) fn set_send_timeout(fd: SocketRef<'_>, timeout: Option<Duration>) -> io::Result<()> {
    sys::net::set_send_timeout(fd, timeout)
}
