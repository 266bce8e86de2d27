//! The async socket on Windows: a connection of the connection layer's
//! Windows flavor (one instance of a byte-mode named pipe, see
//! `sys::net`) whose blocking calls run on tokio's blocking pool, for the
//! async window-message sender.
//!
//! A call runs to its end on the pool even when its future is dropped, so
//! a caller cannot know how much a dropped call sent or took: the async
//! sender treats a dropped call as a broken connection and drops it, and
//! dropping the [`AsyncSocket`] closes the connection, which ends a call
//! still waiting on the pool at once.

use std::io;
use std::sync::Arc;

use crate::conn::io as conn_io;
use crate::sys::net::Socket;

/// A connection whose reads and writes are futures.
#[derive(Debug)]
pub(crate) struct AsyncSocket(Arc<Socket>);

impl AsyncSocket {
    /// Take over a connected socket (it must be used from a tokio runtime).
    pub(crate) fn new(s: Socket) -> io::Result<AsyncSocket> {
        Ok(AsyncSocket(Arc::new(s)))
    }

    /// Run `f` on the socket on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Socket) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let s = Arc::clone(&self.0);
        ::tokio::task::spawn_blocking(move || f(&s))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("a pipe call failed: {e}"))))
    }

    /// Send all of `buf`.
    pub(crate) async fn send_all(&self, buf: &[u8]) -> io::Result<()> {
        let buf = buf.to_vec();
        self.run(move |s| conn_io::send_all(s, &buf)).await
    }

    /// Fill `buf`. `Ok(false)`: the stream ended before the first byte;
    /// ending inside `buf` is `UnexpectedEof`.
    pub(crate) async fn recv_exact(&self, buf: &mut [u8]) -> io::Result<bool> {
        let len = buf.len();
        let (whole, got) = self
            .run(move |s| {
                let mut got = vec![0u8; len];
                conn_io::recv_exact(s, &mut got).map(|w| (w, got))
            })
            .await?;
        if whole {
            buf.copy_from_slice(&got);
        }
        Ok(whole)
    }

    /// Read a body of `len` bytes, allocating as the bytes arrive (never
    /// the announced length up front), as `conn::io::recv_body`.
    pub(crate) async fn recv_body(&self, len: usize) -> io::Result<Vec<u8>> {
        self.run(move |s| conn_io::recv_body(s, len, None)).await
    }
}

impl Drop for AsyncSocket {
    fn drop(&mut self) {
        // Ends a call still running on the pool (it holds the other `Arc`).
        conn_io::shutdown(&*self.0);
    }
}
