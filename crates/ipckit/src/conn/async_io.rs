//! A connected Unix stream socket driven by the tokio reactor
//! ([`UnixStream`]'s readiness; its own reads and writes are not used):
//! the reads and writes of the async mailslot writer and the async
//! window-message sender.
//!
//! Each call sends or receives what the socket takes or holds now
//! (`MSG_DONTWAIT`) and waits for readiness otherwise, so a future dropped
//! between two calls loses no byte that was not already counted by its
//! caller. Sends never raise `SIGPIPE` (`MSG_NOSIGNAL`), as the blocking
//! paths (`sys::net::send_all`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ::tokio::io::Interest;
use ::tokio::net::UnixStream;

use crate::sys;

/// A socket registered with the current tokio runtime.
#[derive(Debug)]
pub(crate) struct AsyncSocket(UnixStream);

impl AsyncSocket {
    /// Register `fd` (a connected Unix stream socket) with the runtime of
    /// the calling task.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<AsyncSocket> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)?;
        UnixStream::from_std(std).map(AsyncSocket)
    }

    /// Send some of `buf` (at least one byte), waiting until the socket
    /// takes some.
    pub(crate) async fn send_some(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.0.writable().await?;
            let sent = self.0.try_io(Interest::WRITABLE, || {
                sys::net::send_some_nowait(self.0.as_fd(), buf)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
        }
    }

    /// Send all of `buf`. Cancelling it leaves an unknown part of `buf`
    /// sent: callers that must survive cancellation use [`send_some`]
    /// and count.
    pub(crate) async fn send_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.send_some(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Receive what is there (at least one byte), waiting until something
    /// is; `Ok(0)` at the end of the stream.
    pub(crate) async fn recv_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.0.readable().await?;
            let got = self.0.try_io(Interest::READABLE, || {
                sys::net::recv_some_nowait(self.0.as_fd(), &mut *buf)
            });
            match got {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
        }
    }

    /// Fill `buf`. `Ok(false)`: the stream ended before the first byte;
    /// ending inside `buf` is `UnexpectedEof`.
    pub(crate) async fn recv_exact(&self, buf: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.recv_some(&mut buf[got..]).await? {
                0 if got == 0 => return Ok(false),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(true)
    }

    /// Read a body of `len` bytes, allocating as the bytes arrive (never
    /// the announced length up front), as `conn::io::recv_body`.
    pub(crate) async fn recv_body(&self, len: usize) -> io::Result<Vec<u8>> {
        const STEP: usize = 256 * 1024;
        let mut body = Vec::with_capacity(len.min(STEP));
        while body.len() < len {
            let start = body.len();
            let n = (len - start).min(start.max(STEP));
            body.resize(start + n, 0);
            if !self.recv_exact(&mut body[start..]).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(body)
    }
}

/// `fut`, giving up after `limit` (`None`: no limit) with `TimedOut`.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        None => fut.await,
        Some(d) => ::tokio::time::timeout(d, fut)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
    }
}
