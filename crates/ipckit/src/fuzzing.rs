//! Hooks for the fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing` (which `cargo fuzz` passes). Not part of the API.
//!
//! The targets reach every decoder they can through real servers and
//! clients on real sockets; this module only exposes what no peer can
//! reach from outside the crate: a shared-memory ring channel whose shared
//! pages the fuzzer scribbles on as a hostile peer would
//! ([`RingPeer`]), the checks on a ring object a peer hands over
//! ([`open_ring`]), and the means for a fake peer to hand one over or take
//! one ([`sealed_object`], [`send_with_fd`], [`recv_with_fds`]). Each
//! wrapper calls the real code and nothing else.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use crate::conn::ring::{self, Chan, Rx, Tx};
use crate::sys;
use crate::transport::WaitStrategy;

/// One side of a ring channel (`crate::conn::ring`) plus write access to the
/// whole shared object, as the *other* side has: [`poke`](Self::poke)
/// writes any bytes anywhere in it, [`send`](Self::send) and
/// [`recv`](Self::recv) run this side's real `Tx`/`Rx` against whatever
/// is there. Nothing waits: every call uses a deadline of "now" (one
/// record may still be taken, as `Rx::recv` allows on its first round).
pub struct RingPeer {
    tx: Tx,
    rx: Rx,
    object: File,
    size: u64,
    out: Vec<u8>,
}

impl std::fmt::Debug for RingPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPeer")
            .field("size", &self.size)
            .finish()
    }
}

impl RingPeer {
    /// A fresh channel object (`Chan::create`: `ring_cap` rounded to a
    /// power of two of 4 KiB–64 MiB, `loan_cap` to pages). `connector`:
    /// this side is the connecting one (sends on ring 0, lends segment 0).
    pub fn new(ring_cap: usize, loan_cap: usize, connector: bool) -> io::Result<RingPeer> {
        let (chan, fd) = Chan::create(ring_cap, loan_cap)?;
        let object = File::from(fd);
        let size = object.metadata()?.len();
        let (tx, rx) = ring::split(Arc::new(chan), connector, WaitStrategy::Park);
        Ok(RingPeer {
            tx,
            rx,
            object,
            size,
            out: Vec::new(),
        })
    }

    /// The other side of an existing object, mapped and checked as a
    /// server maps one it receives (`Chan::open` with `max_loan`).
    pub fn attach(
        object: BorrowedFd<'_>,
        max_loan: usize,
        connector: bool,
    ) -> Result<RingPeer, String> {
        let chan = Chan::open(object, max_loan)?;
        let object = File::from(object.try_clone_to_owned().map_err(|e| e.to_string())?);
        let size = object.metadata().map_err(|e| e.to_string())?.len();
        let (tx, rx) = ring::split(Arc::new(chan), connector, WaitStrategy::Park);
        Ok(RingPeer {
            tx,
            rx,
            object,
            size,
            out: Vec::new(),
        })
    }

    /// The object's fd, to pass to a server.
    pub fn object(&self) -> BorrowedFd<'_> {
        self.object.as_fd()
    }

    /// Size of the object in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per ring.
    pub fn ring_cap(&self) -> usize {
        self.tx.chan().ring_cap()
    }

    /// Bytes per loan segment.
    pub fn loan_cap(&self) -> usize {
        self.tx.chan().loan_cap()
    }

    /// Write `bytes` at `offset` of the shared object (clipped to it), as
    /// a hostile peer may at any time.
    pub fn poke(&self, offset: u64, bytes: &[u8]) {
        if offset >= self.size {
            return;
        }
        let n = bytes.len().min((self.size - offset) as usize);
        let _ = self.object.write_all_at(&bytes[..n], offset);
    }

    /// Send `msg` with `tag` through this side's ring (`Tx::send_until`).
    pub fn send(&mut self, tag: u8, msg: &[u8]) -> Result<(), String> {
        self.tx
            .send_until(tag, &[msg], Some(Instant::now()))
            .map_err(|e| e.to_string())
    }

    /// Take the next message of at most `limit` bytes from this side's
    /// ring (`Rx::recv`): its tag and bytes, `None` at end-of-stream.
    pub fn recv(&mut self, limit: usize) -> Result<Option<(u8, &[u8])>, String> {
        match self.rx.recv(&mut self.out, limit, Some(Instant::now())) {
            Ok(Some(got)) => Ok(Some((got.tag, &self.out))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether the peer consumed all this side sent (`Tx::drained`).
    pub fn drained(&mut self) -> Result<bool, String> {
        self.tx.drained().map_err(|e| e.to_string())
    }

    /// Close this side's sending ring (`Tx::close`).
    pub fn close(&self) {
        self.tx.close();
    }

    /// Copy the loan range `offset`+`len` of segment `segment & 1`
    /// (`Chan::loan_copy`, which checks the range first).
    pub fn loan(&self, segment: usize, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.tx
            .chan()
            .loan_copy(segment & 1, offset, len, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Check and map a ring object received from a peer (`Chan::open`), as
/// a pipe or service server does; its ring and loan capacities if it
/// passes.
pub fn open_ring(object: BorrowedFd<'_>, max_loan: usize) -> Result<(usize, usize), String> {
    Chan::open(object, max_loan).map(|c| (c.ring_cap(), c.loan_cap()))
}

/// A `memfd` of `size` bytes whose size is sealed (`sys::shm::memfd_sealed`),
/// for a fake peer to fill with a ring header of its choosing.
pub fn sealed_object(size: u64) -> io::Result<OwnedFd> {
    sys::shm::memfd_sealed(size)
}

/// Send `bytes` on `socket` with `fd` attached (`SCM_RIGHTS`), as a client
/// handing a ring object to a server does.
pub fn send_with_fd(socket: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::net::send_with_fd(socket, bytes, fd)
}

/// Receive what is there on `socket` (at least one byte, blocking) into
/// `buf`, with any file descriptors passed along (`SCM_RIGHTS`), as a
/// server reading a client's hand-over does. `0`: end of stream.
pub fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut fds = Vec::new();
    let n = sys::net::recv_some_with_fds(socket, buf, &mut fds)?;
    Ok((n, fds))
}
