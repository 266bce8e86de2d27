//! The socket flavor's read side: one buffered reader for every connected
//! socket a mechanism reads frames from (named-pipe connections, service
//! clients). One receive usually brings several small frames; a frame's
//! body beyond the buffer is read straight into its destination.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use crate::sys;
use crate::sys::net::{PassedFd, SocketRef};

/// Bytes read at once.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// Bytes read from a socket and not consumed yet, and (when kept) the
/// descriptors passed with them (`SCM_RIGHTS`), in arrival order.
#[derive(Debug)]
pub(crate) struct SocketReader {
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    keep_fds: bool,
    fds: VecDeque<PassedFd>,
}

impl SocketReader {
    /// A reader that keeps passed descriptors (`keep_fds`) or closes them
    /// (a protocol that never passes any).
    pub(crate) fn new(keep_fds: bool) -> SocketReader {
        SocketReader {
            buf: Vec::new(),
            pos: 0,
            len: 0,
            keep_fds,
            fds: VecDeque::new(),
        }
    }

    /// What is buffered.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// Drop the first `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len - self.pos);
        self.pos += n;
    }

    /// The oldest passed descriptor not taken yet.
    pub(crate) fn take_fd(&mut self) -> Option<PassedFd> {
        self.fds.pop_front()
    }

    /// Put bytes and descriptors already read from the socket (by someone
    /// else) after what is buffered.
    pub(crate) fn unread(&mut self, bytes: &[u8], fds: Vec<PassedFd>) {
        if self.keep_fds {
            self.fds.extend(fds);
        }
        if bytes.is_empty() {
            return;
        }
        let mut buf = self.buffered().to_vec();
        buf.extend_from_slice(bytes);
        self.len = buf.len();
        self.pos = 0;
        if buf.len() < READ_BUF {
            buf.resize(READ_BUF, 0);
        }
        self.buf = buf;
    }

    /// Make at least `n` bytes (`n <= READ_BUF`) available. `Ok(false)`:
    /// the stream ended cleanly with nothing buffered; ending with part of
    /// them is `UnexpectedEof`. Past `deadline`: `TimedOut`, with what
    /// arrived kept buffered.
    pub(crate) fn fill(
        &mut self,
        fd: SocketRef<'_>,
        n: usize,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        debug_assert!(n <= READ_BUF);
        if self.len - self.pos >= n {
            return Ok(true);
        }
        if self.buf.len() < READ_BUF {
            self.buf.resize(READ_BUF, 0);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        while self.len < n {
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if sys::net::wait_readable(&[fd], Some(left))?.is_empty() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            let mut fds = Vec::new();
            let got = sys::net::recv_some_with_fds(fd, &mut self.buf[self.len..], &mut fds)?;
            if self.keep_fds {
                self.fds.extend(fds);
            }
            if got == 0 {
                if self.len == 0 {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection in the middle of a frame",
                ));
            }
            self.len += got;
        }
        Ok(true)
    }

    /// Fill `out` from the buffer, then straight from the socket (waiting
    /// as long as it takes); the stream ending first is `UnexpectedEof`.
    pub(crate) fn read_exact(&mut self, fd: SocketRef<'_>, out: &mut [u8]) -> io::Result<()> {
        let from_buf = out.len().min(self.len - self.pos);
        out[..from_buf].copy_from_slice(&self.buf[self.pos..self.pos + from_buf]);
        self.pos += from_buf;
        if from_buf < out.len() && !sys::net::recv_exact(fd, &mut out[from_buf..])? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Read a body of `len` bytes into a new buffer that grows as the bytes
    /// arrive: a peer announcing a huge body and stopping pins only what it
    /// sent.
    pub(crate) fn read_body(&mut self, fd: SocketRef<'_>, len: usize) -> io::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(len.min(READ_BUF));
        while body.len() < len {
            let start = body.len();
            let step = (len - start).min(start.max(READ_BUF));
            body.resize(start + step, 0);
            self.read_exact(fd, &mut body[start..])?;
        }
        Ok(body)
    }
}

// ---------------------------------------------------------------------------
// Without waiting (the async forms wait for readiness themselves)
// ---------------------------------------------------------------------------

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
impl SocketReader {
    /// One receive into the buffer's free room without waiting (after
    /// moving what is buffered to its start): `Ok(None)` if nothing is
    /// readable yet, `Ok(Some(0))` at end of stream, else the bytes added.
    /// The buffer must not be full.
    pub(crate) fn fill_nowait(&mut self, fd: SocketRef<'_>) -> io::Result<Option<usize>> {
        if self.buf.len() < READ_BUF {
            self.buf.resize(READ_BUF, 0);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        debug_assert!(self.len < self.buf.len(), "fill_nowait on a full buffer");
        let mut fds = Vec::new();
        let got = sys::net::recv_nowait_with_fds(fd, &mut self.buf[self.len..], &mut fds)?;
        if self.keep_fds {
            self.fds.extend(fds);
        }
        if let Some(n) = got {
            self.len += n;
        }
        Ok(got)
    }

    /// Move up to `max` buffered bytes to the end of `out`; how many.
    pub(crate) fn take_into(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let n = max.min(self.len - self.pos);
        out.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        n
    }
}

#[cfg(unix)]
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
/// Send what fits of `buf` without waiting (never raising `SIGPIPE`):
/// `Ok(None)` if the socket's buffer is full.
pub(crate) fn send_nowait(fd: SocketRef<'_>, buf: &[u8]) -> io::Result<Option<usize>> {
    match sys::net::send_some_nowait(fd, buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Shut the sending direction down: the peer reads the end of the stream;
/// receiving still works.
#[cfg(unix)]
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn shutdown_write(fd: SocketRef<'_>) {
    sys::net::shutdown_write(fd);
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn frames_split_across_receives_and_fds_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut r = SocketReader::new(true);
        let (p, _q) = UnixStream::pair().unwrap();
        sys::net::send_with_fd(a.as_fd(), b"hel", p.as_fd()).unwrap();
        sys::net::send_all(a.as_fd(), b"lo world").unwrap();
        assert!(r.fill(b.as_fd(), 5, None).unwrap());
        assert_eq!(&r.buffered()[..5], b"hello");
        r.consume(5);
        assert!(r.take_fd().is_some());
        let body = r.read_body(b.as_fd(), 6).unwrap();
        assert_eq!(body, b" world");
        drop(a);
        assert!(!r.fill(b.as_fd(), 1, None).unwrap());
    }

    #[test]
    fn a_partial_frame_then_the_end_is_unexpected_eof_and_a_deadline_times_out() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut r = SocketReader::new(false);
        sys::net::send_all(a.as_fd(), b"ab").unwrap();
        let e = r
            .fill(
                b.as_fd(),
                4,
                Some(Instant::now() + std::time::Duration::from_millis(20)),
            )
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(r.buffered(), b"ab");
        drop(a);
        let e = r.fill(b.as_fd(), 4, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
