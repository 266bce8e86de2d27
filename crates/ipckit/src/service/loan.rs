//! Zero-copy loans: the request buffer a client fills in place
//! ([`Loan`]), the result read in place ([`LoanReply`]) and the place a
//! loan handler writes its result ([`LoanWriter`]). On a shared-memory lane
//! (Linux) they lie in the lane's loan segments; on a socket (and always
//! on Windows) they are heap buffers carried in ordinary frames.

use std::ops::{Deref, DerefMut};
#[cfg(unix)]
use std::sync::Arc;

#[cfg(unix)]
use super::lane::{Lane, LanePool};
use crate::error::{Error, ErrorKind, Result};

/// A buffer of `len` bytes to fill with a request and send with
/// [`Client::call_loan`](super::Client::call_loan): on a shared-memory
/// connection it lies in memory the server reads in place (no copy); on a
/// socket it is a heap buffer sent in the call frame. Dropping it unsent
/// gives its connection back.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::service::{Client, Server};
/// let _s = Server::builder("s").namespace(&ns)
///     .loan_handler("sum", |req, reply| {
///         let sum: u64 = req.iter().map(|b| *b as u64).sum();
///         reply.write(&sum.to_le_bytes())
///     })
///     .bind().unwrap();
/// let c = Client::options().namespace(&ns).connect("s").unwrap();
/// let mut loan = c.loan(1000).unwrap();
/// loan.fill(2);
/// let out = c.call_loan("sum", loan).unwrap();
/// assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 2000);
/// ```
pub struct Loan {
    buf: LoanBuf,
}

// A lane is held by value: loans are taken per call, boxing would cost an
// allocation each time.
#[allow(clippy::large_enum_variant)]
enum LoanBuf {
    #[cfg(unix)]
    Lane {
        lane: Option<Lane>,
        pool: Arc<LanePool>,
        len: usize,
    },
    Heap(Vec<u8>),
}

impl std::fmt::Debug for Loan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl Loan {
    #[cfg(unix)]
    pub(crate) fn shared(lane: Lane, pool: Arc<LanePool>, len: usize) -> Loan {
        debug_assert!(len <= lane.rings.chan.loan_cap());
        Loan {
            buf: LoanBuf::Lane {
                lane: Some(lane),
                pool,
                len,
            },
        }
    }

    pub(crate) fn heap(len: usize) -> Loan {
        Loan {
            buf: LoanBuf::Heap(vec![0u8; len]),
        }
    }

    /// Whether the buffer lies in shared memory (else on the heap, for a
    /// socket connection).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::service::Server::builder("s").namespace(&ns).bind().unwrap();
    /// let c = ipckit::service::Client::options().namespace(&ns).connect("s").unwrap();
    /// let loan = c.loan(10).unwrap();
    /// assert_eq!(loan.is_shared(), c.transport() == ipckit::Transport::SharedMemory);
    /// ```
    pub fn is_shared(&self) -> bool {
        self.on_lane()
    }

    #[cfg(unix)]
    fn on_lane(&self) -> bool {
        matches!(self.buf, LoanBuf::Lane { .. })
    }

    #[cfg(windows)]
    fn on_lane(&self) -> bool {
        false
    }

    /// The bytes (the loan is being sent; Windows has no lanes).
    #[cfg(windows)]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let LoanBuf::Heap(v) = self.buf;
        v
    }

    /// Take the lane out (the loan is being sent).
    #[cfg(unix)]
    pub(crate) fn into_parts(
        mut self,
    ) -> std::result::Result<(Lane, Arc<LanePool>, usize), Vec<u8>> {
        match &mut self.buf {
            LoanBuf::Lane { lane, pool, len } => Ok((
                lane.take().expect("a loan holds its lane"),
                pool.clone(),
                *len,
            )),
            LoanBuf::Heap(v) => Err(std::mem::take(v)),
        }
    }
}

impl Deref for Loan {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.buf {
            #[cfg(unix)]
            LoanBuf::Lane { lane, len, .. } => {
                // Segment 0 is written only by this side and read by the
                // server only while a call this loan makes is in flight,
                // which needs `self` by value.
                let lane = lane.as_ref().expect("a loan holds its lane");
                lane.rings.chan.loan(&lane.keys[0], 0, *len)
            }
            LoanBuf::Heap(v) => v,
        }
    }
}

impl DerefMut for Loan {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            #[cfg(unix)]
            LoanBuf::Lane { lane, len, .. } => {
                let lane = lane.as_mut().expect("a loan holds its lane");
                lane.rings.chan.loan_mut(&mut lane.keys[0], 0, *len)
            }
            LoanBuf::Heap(v) => v,
        }
    }
}

#[cfg(unix)]
impl Drop for Loan {
    fn drop(&mut self) {
        if let LoanBuf::Lane { lane, pool, .. } = &mut self.buf {
            if let Some(l) = lane.take() {
                pool.put(l);
            }
        }
    }
}

/// The result of [`Client::call_loan`](super::Client::call_loan), read in
/// place: on a shared-memory connection it lies in the reply segment the
/// server wrote (the connection stays reserved until this is dropped).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::service::{Client, Server};
/// let _s = Server::builder("s").namespace(&ns)
///     .loan_handler("upper", |req, reply| {
///         let out = reply.alloc(req.len())?;
///         for (o, i) in out.iter_mut().zip(req) { *o = i.to_ascii_uppercase(); }
///         Ok::<_, ipckit::Error>(())
///     })
///     .bind().unwrap();
/// let c = Client::options().namespace(&ns).connect("s").unwrap();
/// let mut loan = c.loan(5).unwrap();
/// loan.copy_from_slice(b"hello");
/// let out = c.call_loan("upper", loan).unwrap();
/// assert_eq!(&out[..], b"HELLO");
/// ```
pub struct LoanReply {
    buf: ReplyBuf,
}

#[allow(clippy::large_enum_variant)]
enum ReplyBuf {
    #[cfg(unix)]
    Lane {
        lane: Option<Lane>,
        pool: Arc<LanePool>,
        off: usize,
        len: usize,
    },
    Heap(Vec<u8>),
}

impl std::fmt::Debug for LoanReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoanReply")
            .field("len", &self.len())
            .finish()
    }
}

impl Deref for LoanReply {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.buf {
            #[cfg(unix)]
            ReplyBuf::Lane { lane, off, len, .. } => {
                // The range was checked with `Chan::check_loan`; the server
                // writes segment 1 only while handling a call, and none can
                // be sent on this lane while `self` holds it.
                let lane = lane.as_ref().expect("a reply holds its lane");
                lane.rings.chan.loan(&lane.keys[1], *off, *len)
            }
            ReplyBuf::Heap(v) => v,
        }
    }
}

#[cfg(unix)]
impl Drop for LoanReply {
    fn drop(&mut self) {
        if let ReplyBuf::Lane { lane, pool, .. } = &mut self.buf {
            if let Some(l) = lane.take() {
                pool.put(l);
            }
        }
    }
}

impl LoanReply {
    pub(crate) fn heap(v: Vec<u8>) -> LoanReply {
        LoanReply {
            buf: ReplyBuf::Heap(v),
        }
    }

    /// A reply read in place at `off..off + len` of the lane's segment 1
    /// (a range already checked).
    #[cfg(unix)]
    pub(crate) fn lane(lane: Lane, pool: Arc<LanePool>, off: usize, len: usize) -> LoanReply {
        LoanReply {
            buf: ReplyBuf::Lane {
                lane: Some(lane),
                pool,
                off,
                len,
            },
        }
    }
}

/// Where a [`loan_handler`](super::ServerBuilder::loan_handler) writes its
/// result: in place in the shared reply segment when the call came as a
/// loan on a shared-memory connection, else a heap buffer sent in the reply
/// frame. At most [`capacity`](Self::capacity) bytes.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::service::{Client, Server};
/// let _s = Server::builder("s").namespace(&ns)
///     .loan_handler("twice", |req, reply| {
///         reply.write(req)?;
///         reply.write(req)
///     })
///     .bind().unwrap();
/// let c = Client::options().namespace(&ns).connect("s").unwrap();
/// let mut loan = c.loan(2).unwrap();
/// loan.copy_from_slice(b"ab");
/// assert_eq!(&c.call_loan("twice", loan).unwrap()[..], b"abab");
/// ```
pub struct LoanWriter<'a> {
    out: WriterBuf<'a>,
    len: usize,
    cap: usize,
}

enum WriterBuf<'a> {
    Shared(&'a mut [u8]),
    Heap(Vec<u8>),
}

impl std::fmt::Debug for LoanWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoanWriter")
            .field("len", &self.len)
            .field("capacity", &self.cap)
            .finish()
    }
}

impl<'a> LoanWriter<'a> {
    pub(crate) fn shared(seg: &'a mut [u8]) -> Self {
        let cap = seg.len();
        LoanWriter {
            out: WriterBuf::Shared(seg),
            len: 0,
            cap,
        }
    }

    pub(crate) fn heap(cap: usize) -> Self {
        LoanWriter {
            out: WriterBuf::Heap(Vec::new()),
            len: 0,
            cap,
        }
    }

    /// The result written so far: `Ok(len)` in place, or the heap bytes.
    pub(crate) fn finish(self) -> std::result::Result<usize, Vec<u8>> {
        match self.out {
            WriterBuf::Shared(_) => Ok(self.len),
            WriterBuf::Heap(mut v) => {
                v.truncate(self.len);
                Err(v)
            }
        }
    }

    /// Most bytes the result may have.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # use ipckit::service::{Client, Server};
    /// let _s = Server::builder("s").namespace(&ns).max_message_size(1 << 20)
    ///     .loan_handler("cap", |_req, reply| {
    ///         let cap = reply.capacity() as u64;
    ///         reply.write(&cap.to_le_bytes())
    ///     })
    ///     .bind().unwrap();
    /// # let c = Client::options().namespace(&ns).connect("s").unwrap();
    /// # let out = c.call_loan("cap", c.loan(0).unwrap()).unwrap();
    /// # assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 1 << 20);
    /// ```
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes written so far.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # use ipckit::service::Server;
    /// let _ = Server::builder("s").loan_handler("n", |_req, reply| {
    ///     reply.write(b"abc")?;
    ///     assert_eq!(reply.len(), 3);
    ///     Ok::<_, ipckit::Error>(())
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    ///
    /// ```
    /// # use ipckit::service::Server;
    /// let _ = Server::builder("s").loan_handler("n", |_req, reply| {
    ///     assert!(reply.is_empty());
    ///     Ok::<_, ipckit::Error>(())
    /// });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn too_large(&self, n: usize) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "a loan result of {n} bytes is over the reply capacity of {} bytes; return less or raise the server's max_frame",
                self.cap
            ),
        )
        .with_needed(n)
    }

    /// Make the result exactly `n` bytes and return them to fill in place
    /// (their previous contents are unspecified). [`ErrorKind::TooLarge`]
    /// over the capacity.
    ///
    /// ```
    /// # use ipckit::service::Server;
    /// let _ = Server::builder("s").loan_handler("zeros", |req, reply| {
    ///     reply.alloc(req.len())?.fill(0);
    ///     Ok::<_, ipckit::Error>(())
    /// });
    /// ```
    pub fn alloc(&mut self, n: usize) -> Result<&mut [u8]> {
        if n > self.cap {
            return Err(self.too_large(n));
        }
        self.len = n;
        Ok(match &mut self.out {
            WriterBuf::Shared(s) => &mut s[..n],
            WriterBuf::Heap(v) => {
                v.resize(n, 0);
                &mut v[..n]
            }
        })
    }

    /// Append `bytes` to the result. [`ErrorKind::TooLarge`] over the
    /// capacity (nothing is appended then).
    ///
    /// ```
    /// # use ipckit::service::Server;
    /// let _ = Server::builder("s").loan_handler("hi", |_req, reply| reply.write(b"hi"));
    /// ```
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self
            .len
            .checked_add(bytes.len())
            .filter(|e| *e <= self.cap)
            .ok_or_else(|| self.too_large(self.len.saturating_add(bytes.len())))?;
        match &mut self.out {
            WriterBuf::Shared(s) => s[self.len..end].copy_from_slice(bytes),
            WriterBuf::Heap(v) => {
                v.truncate(self.len);
                v.extend_from_slice(bytes);
            }
        }
        self.len = end;
        Ok(())
    }
}
