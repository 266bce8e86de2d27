//! Shared-memory lanes of a service client, and zero-copy loans.
//!
//! A lane is one extra Unix-socket connection to the server plus one ring
//! channel (`crate::conn::ring`): the client creates the channel, passes its
//! memfd in a `KIND_LANE` frame, and from then on every call on the lane is
//! one ring message each way (the same bytes as a socket frame). The socket
//! only tells each side that the other died. A lane carries one call at a
//! time; the client keeps a pool of idle lanes so concurrent callers run
//! concurrently.
//!
//! The server is untrusted: every frame and loan range read from the shared
//! pages is checked, and anything impossible fails the call with
//! [`ErrorKind::Decode`] and closes the lane.
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
#[cfg(feature = "tokio")]
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::loan::LoanReply;
use super::wire::{
    self, FrameRef, WireError, HEADER_LEN, KIND_CALL, KIND_ERROR, KIND_LANE, KIND_LOAN_CALL,
    KIND_LOAN_REPLY, KIND_REPLY,
};
use super::{Encoding, RemoteError};
use crate::conn::ring::{self, Chan, LoanKey, RingError, Rings};
use crate::conn::slots::Slots;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::WaitStrategy;

/// Bytes per ring of a lane (one each way). Larger messages are fragmented.
pub(crate) const LANE_RING: usize = 256 * 1024;
/// Most lanes one client opens; further concurrent calls use the socket.
pub(crate) const MAX_LANES: usize = 16;
/// How long opening a lane waits for each handshake step.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);

/// What a client needs to open lanes.
#[derive(Debug)]
pub(crate) struct LaneConfig {
    pub name: String,
    pub path: PathBuf,
    /// The server's uid, as the first connection found it: a lane must
    /// reach the same server.
    pub server_uid: u32,
    /// The server's `max_frame`: size of each loan segment.
    pub server_max: usize,
    /// This client's reply limit.
    pub client_max: usize,
    pub wait: WaitStrategy,
}

/// One shared-memory lane (client side), boxed: idle lanes are parked in
/// the pool's lock-free slots by pointer, so a call moves no lane bytes and
/// allocates nothing.
pub(crate) type Lane = Box<LaneState>;

/// The state of one lane (see [`Lane`]).
pub(crate) struct LaneState {
    pub(super) rings: Rings,
    /// Views of loan segment 0 (the request, written here) and 1 (the
    /// reply, written by the server).
    pub(super) keys: [LoanKey; 2],
    head: Vec<u8>,
    buf: Vec<u8>,
    next_id: u64,
    /// Longest reply message accepted (header + this client's max_frame).
    limit: usize,
    open: Arc<AtomicUsize>,
}

impl Drop for LaneState {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.rings.chan.shutdown_socket();
    }
}

/// The client's lanes: idle ones, and how many exist.
///
/// Taking and giving back a lane is lock-free (one swap and one
/// compare-and-swap on the idle slots): at most [`MAX_LANES`] lanes exist
/// (`open` counts them), so giving one back always finds a free slot.
pub(crate) struct LanePool {
    cfg: LaneConfig,
    idle: Slots<LaneState, MAX_LANES>,
    open: Arc<AtomicUsize>,
    /// A lane could not be opened: use the socket from now on.
    disabled: AtomicBool,
    /// A background thread is opening a lane (async calls never block on
    /// a handshake).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    growing: AtomicBool,
}

impl std::fmt::Debug for LanePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanePool")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish()
    }
}

impl LanePool {
    /// A pool with one lane opened now; `Err` if that lane cannot be had
    /// (the caller then stays on the socket).
    pub(crate) fn start(cfg: LaneConfig) -> Result<Arc<LanePool>> {
        let pool = Arc::new(LanePool {
            cfg,
            idle: Slots::new(),
            open: Arc::new(AtomicUsize::new(0)),
            disabled: AtomicBool::new(false),
            growing: AtomicBool::new(false),
        });
        pool.open.fetch_add(1, Ordering::Relaxed);
        let lane = open_lane(&pool.cfg, pool.open.clone())?;
        pool.put(lane);
        Ok(pool)
    }

    /// Whether lanes are still in use (none failed to open).
    pub(crate) fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// An idle lane, or a new one if under the cap; `None`: use the socket.
    pub(crate) fn take(&self) -> Option<Lane> {
        if let Some(l) = self.idle.take() {
            return Some(l);
        }
        if self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.open.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_LANES {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match open_lane(&self.cfg, self.open.clone()) {
            Ok(l) => Some(l),
            Err(_) => {
                // `open_lane` gave the count back; stay on the socket.
                self.disabled.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Give a lane back after a call that ended cleanly.
    pub(crate) fn put(&self, lane: Lane) {
        // No free slot cannot happen (see `LanePool`); if it did, the lane
        // would just be closed.
        drop(self.idle.put(lane));
    }

    /// The service's name.
    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Largest loan (the loan segment's size).
    pub(crate) fn loan_cap(&self) -> usize {
        self.cfg.server_max.min(ring::MAX_LOAN)
    }
}

/// Open one lane. `open` was already incremented for it; on failure it is
/// decremented again.
fn open_lane(cfg: &LaneConfig, open: Arc<AtomicUsize>) -> Result<Lane> {
    let r = open_lane_inner(cfg);
    match r {
        Ok(rings) => {
            let keys = rings
                .chan
                .take_loan_keys()
                .expect("a new channel has its keys");
            Ok(Box::new(LaneState {
                rings,
                keys,
                head: Vec::with_capacity(HEADER_LEN + wire::MAX_METHOD),
                buf: Vec::new(),
                next_id: 1,
                limit: HEADER_LEN.saturating_add(cfg.client_max.max(16)),
                open,
            }))
        }
        Err(e) => {
            open.fetch_sub(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

fn open_lane_inner(cfg: &LaneConfig) -> Result<Rings> {
    let name = cfg.name.as_str();
    let fd = crate::conn::dial::connect_path(&cfg.path, cfg.server_uid)
        .map_err(|e| Error::os(e, "cannot open a shared-memory lane").with_name(name))?;
    // A server that stops halfway through the handshake must not hang the
    // call that opens the lane: every receive below is bounded.
    crate::conn::io::set_recv_timeout(fd.as_fd(), Some(HANDSHAKE_WAIT))
        .map_err(|e| Error::os(e, "cannot bound the lane handshake").with_name(name))?;
    let hello = super::client::read_hello(name, &fd, Instant::now() + HANDSHAKE_WAIT)?;
    if !hello.shm {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "the server no longer offers shared memory; the socket is used",
        )
        .with_name(name));
    }
    let loan_cap = cfg.server_max.min(ring::MAX_LOAN);
    let mut frame = Vec::with_capacity(HEADER_LEN);
    wire::encode_head(&mut frame, KIND_LANE, Encoding::Postcard, 0, "", 0);
    let rings = Rings::offer(fd.as_fd(), &frame, LANE_RING, loan_cap, cfg.wait)
        .map_err(|e| Error::os(e, "cannot hand the lane's shared memory over").with_name(name))?;
    let ready = crate::conn::io::wait_readable(&[fd.as_fd()], Some(HANDSHAKE_WAIT))
        .map_err(|e| Error::os(e, "cannot wait for the lane's answer").with_name(name))?;
    let gone = || {
        Error::new(
            ErrorKind::PeerGone,
            "the server did not accept the shared-memory lane; the socket is used",
        )
        .with_name(name)
    };
    if ready.is_empty() {
        return Err(gone());
    }
    let mut h = [0u8; HEADER_LEN];
    if !matches!(crate::conn::io::recv_exact(fd.as_fd(), &mut h), Ok(true)) {
        return Err(gone());
    }
    let hdr = wire::parse_header(&h, &[KIND_LANE, KIND_ERROR], 64 * 1024).map_err(|e| {
        Error::new(ErrorKind::Decode, format!("bad lane answer: {e}")).with_name(name)
    })?;
    if hdr.kind == KIND_ERROR {
        let mut body = vec![0u8; hdr.body_len as usize];
        let _ = crate::conn::io::recv_exact(fd.as_fd(), &mut body);
        let why = serde_json::from_slice::<RemoteError>(&body)
            .map(|r| r.message)
            .unwrap_or_else(|_| "no reason given".into());
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("the server refused a shared-memory lane ({why}); the socket is used"),
        )
        .with_name(name));
    }
    crate::conn::io::set_recv_timeout(fd.as_fd(), None)
        .map_err(|e| Error::os(e, "cannot finish the lane handshake").with_name(name))?;
    Ok(rings)
}

/// Turn a ring failure during a call into the caller's error.
fn ring_error(name: &str, method: &str, e: RingError, timeout: Option<Duration>) -> Error {
    match e {
        RingError::Timeout => Error::new(
            ErrorKind::Timeout,
            format!(
                "no reply to '{method}' within {:?}; the call may still run on the server, and the connection stays usable",
                timeout.unwrap_or_default()
            ),
        )
        .with_name(name),
        RingError::PeerGone | RingError::Interrupted => Error::new(
            ErrorKind::PeerGone,
            "the server closed the connection (it exited, was killed, or shut down); the call's outcome is unknown, connect again",
        )
        .with_name(name),
        RingError::Corrupt(why) => corrupt(name, method, &why),
    }
}

fn corrupt(name: &str, method: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!(
            "the reply to '{method}' came through corrupt shared memory ({why}); that connection was closed, the call's outcome is unknown; call again"
        ),
    )
    .with_name(name)
}

/// A reply read from a lane, borrowed from the lane's buffer.
pub(crate) struct LaneReply<'a> {
    pub kind: u8,
    pub encoding: Encoding,
    pub body: &'a [u8],
}

/// Requests and results up to this size travel inside the ring record (one
/// copy each way, a few cache lines); bigger ones stay where they were
/// encoded, in the lane's loan segments, and only their range travels
/// (`KIND_LOAN_CALL` / `KIND_LOAN_REPLY`, see `docs/PROTOCOL.md`).
pub(crate) const INLINE_MAX: usize = 16 * 1024;

/// Why a call on a lane failed.
pub(crate) enum LaneFail {
    /// Nothing was sent (the request could not be encoded): the lane is
    /// clean and goes back to the pool.
    Unsent(Error),
    /// The lane is in an unknown state and must be dropped.
    Broken(Error),
}

/// Receive the reply to call `id` into `buf` and check it. With `chan`
/// and `key` (segment 1), an in-place reply (`KIND_LOAN_REPLY`) is turned
/// into a plain reply whose body is the checked range of the segment.
#[allow(clippy::too_many_arguments)]
fn wait_reply<'a>(
    rx: &mut ring::Rx,
    buf: &'a mut Vec<u8>,
    limit: usize,
    resolve: Option<(&'a Chan, &'a LoanKey)>,
    name: &str,
    method: &str,
    id: u64,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> Result<LaneReply<'a>> {
    match rx.recv(buf, limit, deadline) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(ring_error(name, method, RingError::PeerGone, timeout)),
        Err(e) => return Err(ring_error(name, method, e, timeout)),
    }
    parse_reply(buf, resolve, name, method, id)
}

/// Check the reply frame in `buf` (see [`wait_reply`]).
fn parse_reply<'a>(
    buf: &'a [u8],
    resolve: Option<(&'a Chan, &'a LoanKey)>,
    name: &str,
    method: &str,
    id: u64,
) -> Result<LaneReply<'a>> {
    let f: FrameRef<'a> =
        wire::parse_frame(buf, &[KIND_REPLY, KIND_ERROR, KIND_LOAN_REPLY], usize::MAX)
            .map_err(|e: WireError| corrupt(name, method, &e.to_string()))?;
    if f.call_id != id {
        return Err(corrupt(
            name,
            method,
            &format!("reply for call {} while waiting for {id}", f.call_id),
        ));
    }
    if let (KIND_LOAN_REPLY, Some((chan, key))) = (f.kind, resolve) {
        let (off, len) = wire::parse_loan_range(f.body)
            .ok_or_else(|| corrupt(name, method, "a loan reply whose body is not 16 bytes"))
            .and_then(|(o, l)| {
                chan.check_loan(o, l)
                    .map_err(|e| corrupt(name, method, &e.to_string()))
            })?;
        return Ok(LaneReply {
            kind: KIND_REPLY,
            encoding: f.encoding,
            body: chan.loan(key, off, len),
        });
    }
    Ok(LaneReply {
        kind: f.kind,
        encoding: f.encoding,
        body: f.body,
    })
}

/// The error of a request that could not be encoded into segment 0: over
/// the server's limit ([`ErrorKind::TooLarge`], with its exact size), or
/// not encodable at all.
fn encode_failure<Req: serde::Serialize + ?Sized>(
    name: &str,
    method: &str,
    enc: Encoding,
    req: &Req,
    e: super::EncodeIntoError,
    max: usize,
) -> Error {
    let why = match e {
        // Only the size is wanted now (a rare, failing path).
        super::EncodeIntoError::Full => match enc.encode(req) {
            Ok(v) => {
                return Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "the request to '{method}' is {} bytes, over the server's limit of {max} bytes; send less or raise max_frame on the server",
                        v.len()
                    ),
                )
                .with_name(name)
                .with_needed(v.len())
            }
            Err(e) => e,
        },
        super::EncodeIntoError::Other(e) => e,
    };
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "the request to '{method}' cannot be encoded as {} ({}): {why}",
            std::any::type_name::<Req>(),
            enc.as_str()
        ),
    )
    .with_name(name)
}

impl LaneState {
    /// Start call frame number `id`: its header (announcing `body_len`
    /// bytes of body) in `self.head`.
    fn begin(&mut self, kind: u8, method: &str, enc: Encoding, body_len: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        self.head.clear();
        wire::encode_head(&mut self.head, kind, enc, id, method, body_len as u64);
        id
    }

    /// Send one call frame (`body` after the header) and wait for its reply
    /// (until `deadline`). Any error means the lane must be dropped. A
    /// result the server left in place (segment 1) is handed back as a
    /// plain reply borrowing the segment, except for a loan call
    /// (`KIND_LOAN_CALL`), whose caller reads the range itself.
    pub(crate) fn call(
        &mut self,
        name: &str,
        kind: u8,
        method: &str,
        enc: Encoding,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<LaneReply<'_>> {
        let id = self.begin(kind, method, enc, body.len());
        let deadline = timeout.map(|t| Instant::now() + t);
        self.rings
            .tx
            .send_until(0, &[&self.head, body], deadline)
            .map_err(|e| ring_error(name, method, e, timeout))?;
        let resolve = (kind != KIND_LOAN_CALL).then_some((&*self.rings.chan, &self.keys[1]));
        wait_reply(
            &mut self.rings.rx,
            &mut self.buf,
            self.limit,
            resolve,
            name,
            method,
            id,
            timeout,
            deadline,
        )
    }

    /// Call `method` with `req` encoded straight into loan segment 0 (no
    /// intermediate buffer): a request of up to [`INLINE_MAX`] bytes is
    /// then copied into the ring record, a bigger one stays in the segment
    /// and the server decodes it from there (`KIND_LOAN_CALL` with the
    /// call's encoding). `max`: the server's limit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call_value<Req: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        method: &str,
        enc: Encoding,
        req: &Req,
        max: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<LaneReply<'_>, LaneFail> {
        let cap = self.rings.chan.loan_cap().min(max);
        let seg = self.rings.chan.loan_mut(&mut self.keys[0], 0, cap);
        let n = match enc.encode_into(req, seg) {
            Ok(n) => n,
            Err(e) => {
                return Err(LaneFail::Unsent(encode_failure::<Req>(
                    name, method, enc, req, e, max,
                )))
            }
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let broken = |e| LaneFail::Broken(ring_error(name, method, e, timeout));
        let id = if n <= INLINE_MAX {
            let id = self.begin(KIND_CALL, method, enc, n);
            self.head
                .extend_from_slice(self.rings.chan.loan(&self.keys[0], 0, n));
            self.rings
                .tx
                .send_until(0, &[&self.head], deadline)
                .map_err(broken)?;
            id
        } else {
            let range = wire::loan_range(0, n as u64);
            let id = self.begin(KIND_LOAN_CALL, method, enc, range.len());
            self.rings
                .tx
                .send_until(0, &[&self.head, &range], deadline)
                .map_err(broken)?;
            id
        };
        wait_reply(
            &mut self.rings.rx,
            &mut self.buf,
            self.limit,
            Some((&*self.rings.chan, &self.keys[1])),
            name,
            method,
            id,
            timeout,
            deadline,
        )
        .map_err(LaneFail::Broken)
    }

    /// Check a loan range the server sent for segment 1.
    fn reply_range(&self, name: &str, method: &str, body: &[u8]) -> Result<(usize, usize)> {
        let (off, len) = wire::parse_loan_range(body)
            .ok_or_else(|| corrupt(name, method, "a loan reply whose body is not 16 bytes"))?;
        self.rings
            .chan
            .check_loan(off, len)
            .map_err(|e| corrupt(name, method, &e.to_string()))
    }
}

/// A loan call's reply, or an error frame (kind, body, encoding).
pub(crate) type LaneOutcome = std::result::Result<LoanReply, (u8, Vec<u8>, Encoding)>;

/// Send a loan on its lane and wait for the reply.
pub(crate) fn call_on_lane(
    mut lane: Lane,
    pool: Arc<LanePool>,
    len: usize,
    method: &str,
) -> Result<LaneOutcome> {
    let name = pool.name().to_string();
    let range = wire::loan_range(0, len as u64);
    let reply = lane.call(
        &name,
        KIND_LOAN_CALL,
        method,
        Encoding::Postcard,
        &range,
        None,
    )?;
    match reply.kind {
        KIND_LOAN_REPLY => {
            let body = reply.body.to_vec();
            let (off, len) = lane.reply_range(&name, method, &body)?;
            Ok(Ok(LoanReply::lane(lane, pool, off, len)))
        }
        KIND_REPLY => {
            let r = Ok(Ok(LoanReply::heap(reply.body.to_vec())));
            pool.put(lane);
            r
        }
        _ => {
            let out = (reply.kind, reply.body.to_vec(), reply.encoding);
            pool.put(lane);
            Ok(Err(out))
        }
    }
}

/// The server's view of a lane's loan segments for one loan call: the
/// request (`off..off + len` of segment 0, already checked with
/// `Chan::check_loan`) and all of segment 1 to write the result in. `keys`
/// are the lane's (taken once by the one thread serving it).
///
/// A hostile client may change segment 0 under the handler's `&[u8]`:
/// that cannot reach outside the segment, but a handler must not assume
/// two reads agree; `loan_handler`'s doc says to copy what it validates.
pub(crate) fn server_segments<'a>(
    chan: &'a Chan,
    keys: &'a mut [LoanKey; 2],
    off: usize,
    len: usize,
) -> (&'a [u8], &'a mut [u8]) {
    let [req_key, place_key] = keys;
    (
        chan.loan(req_key, off, len),
        chan.loan_mut(place_key, 0, chan.loan_cap()),
    )
}

// ------------------------------------------------------------ async calls

/// How long one poll of a lane call spins at most before it yields or
/// parks, whatever the wait strategy (a poll must not hold its executor's
/// thread long).
#[cfg(feature = "tokio")]
const MAX_POLL_SPIN: Duration = Duration::from_micros(200);

impl LanePool {
    /// An idle lane, never opening one (opening blocks on a handshake);
    /// `None`: use the socket. When none is idle and the pool may grow, a
    /// background thread opens one for later calls.
    #[cfg(feature = "tokio")]
    pub(crate) fn take_idle(self: &Arc<Self>) -> Option<Lane> {
        if let Some(l) = self.idle.take() {
            return Some(l);
        }
        if self.disabled.load(Ordering::Relaxed) || self.growing.swap(true, Ordering::AcqRel) {
            return None;
        }
        let pool = self.clone();
        let grow = move || {
            if let Some(l) = pool.take() {
                pool.put(l);
            }
            pool.growing.store(false, Ordering::Release);
        };
        if std::thread::Builder::new()
            .name("ipckit-svc-lane-open".into())
            .stack_size(256 * 1024)
            .spawn(grow)
            .is_err()
        {
            self.growing.store(false, Ordering::Release);
        }
        None
    }
}

impl LaneState {
    /// Send one call frame without waiting (`body` must fit in one ring
    /// record, see [`fits_unfragmented`](Self::fits_unfragmented); the
    /// lane's ring is empty between calls). Returns the call id. Any
    /// error means the lane must be dropped.
    #[cfg(feature = "tokio")]
    pub(crate) fn start(
        &mut self,
        name: &str,
        kind: u8,
        method: &str,
        enc: Encoding,
        body: &[u8],
    ) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        self.head.clear();
        wire::encode_head(&mut self.head, kind, enc, id, method, body.len() as u64);
        self.rings
            .tx
            .send_until(0, &[&self.head, body], Some(Instant::now()))
            .map_err(|e| ring_error(name, method, e, None))?;
        Ok(id)
    }

    /// Whether a call of `method` with `body` goes out as one ring record.
    #[cfg(feature = "tokio")]
    pub(crate) fn fits_unfragmented(&self, method: &str, body: usize) -> bool {
        HEADER_LEN + method.len() + body <= self.rings.tx.max_unfragmented()
    }

    /// The reply to call `id` if it is whole now (`Ok(None)`: not yet).
    /// Any error means the lane must be dropped.
    #[cfg(feature = "tokio")]
    fn try_reply(&mut self, name: &str, method: &str, id: u64) -> Result<Option<LaneReply<'_>>> {
        match self.rings.rx.try_recv(&mut self.buf, self.limit) {
            // Not whole yet (fragments taken are kept).
            Err(RingError::Timeout) => return Ok(None),
            Ok(Some(_)) => {}
            Ok(None) => return Err(ring_error(name, method, RingError::PeerGone, None)),
            Err(e) => return Err(ring_error(name, method, e, None)),
        }
        let resolve = Some((&*self.rings.chan, &self.keys[1]));
        parse_reply(&self.buf, resolve, name, method, id).map(Some)
    }
}

/// What a lane call's future and its parking helper share.
#[cfg(feature = "tokio")]
struct ParkSlot {
    parker: ring::Parker,
    cancel: AtomicBool,
    /// The helper returned (data, the end, cancelled, or an error).
    done: AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
    error: Mutex<Option<RingError>>,
}

#[cfg(feature = "tokio")]
impl ParkSlot {
    fn run(&self) {
        if let Err(e) = self.parker.park(&self.cancel) {
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        self.done.store(true, Ordering::Release);
        let w = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Stop the helper if it still waits (it then exits at once).
    fn cancel(&self) {
        if !self.done.load(Ordering::Acquire) {
            self.cancel.store(true, Ordering::Release);
            self.parker.unpark();
        }
    }
}

/// The future of one call on a shared-memory lane (the request already
/// sent): spins on the reply ring for the lane's spin budget (no system
/// call, no wake-up: the server's publish is seen directly), then parks on
/// a helper thread that blocks on the ring's futex and wakes the task.
/// `done` turns the reply (kind, encoding, body borrowed from the lane's
/// buffer) into the output. Dropped before the reply, it drops the lane
/// (its late reply can never be mistaken for another call's) and stops the
/// helper; the client stays usable.
#[cfg(feature = "tokio")]
pub(crate) struct LaneCall<F> {
    lane: Option<Lane>,
    pool: Arc<LanePool>,
    id: u64,
    method: String,
    done: Option<F>,
    park: Option<Arc<ParkSlot>>,
    /// When this call started waiting (adapts the spin budget).
    since: Option<Instant>,
}

// `LaneCall` never pins its fields (`done` is moved out by value).
#[cfg(feature = "tokio")]
impl<F> Unpin for LaneCall<F> {}

#[cfg(feature = "tokio")]
impl<F> LaneCall<F> {
    pub(crate) fn new(lane: Lane, pool: Arc<LanePool>, id: u64, method: &str, done: F) -> Self {
        LaneCall {
            lane: Some(lane),
            pool,
            id,
            method: method.to_string(),
            done: Some(done),
            park: None,
            since: None,
        }
    }
}

/// Stop a lane call's parking helper, if any.
#[cfg(feature = "tokio")]
fn stop_helper(park: &mut Option<Arc<ParkSlot>>) {
    if let Some(p) = park.take() {
        p.cancel();
    }
}

#[cfg(feature = "tokio")]
impl<F> Drop for LaneCall<F> {
    fn drop(&mut self) {
        stop_helper(&mut self.park);
        // An unfinished call's lane is dropped with it (closing it).
    }
}

#[cfg(feature = "tokio")]
impl<T, F> std::future::Future for LaneCall<F>
where
    F: FnOnce(u8, Encoding, &[u8]) -> Result<T>,
{
    type Output = Result<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        use std::task::Poll;
        let this = self.get_mut();
        let name = this.pool.name();
        let entered = Instant::now();
        let since = *this.since.get_or_insert(entered);
        loop {
            let Some(lane) = this.lane.as_mut() else {
                panic!("a lane call polled after it completed");
            };
            match lane.try_reply(name, &this.method, this.id) {
                Ok(Some(r)) => {
                    let done = this.done.take().expect("a call completes once");
                    let out = done(r.kind, r.encoding, r.body);
                    stop_helper(&mut this.park);
                    let mut lane = this.lane.take().expect("checked above");
                    lane.rings.rx.record_wait(since.elapsed());
                    this.pool.put(lane);
                    return Poll::Ready(out);
                }
                Ok(None) => {}
                Err(e) => {
                    stop_helper(&mut this.park);
                    this.lane = None;
                    return Poll::Ready(Err(e));
                }
            }
            if let Some(slot) = &this.park {
                if !slot.done.load(Ordering::Acquire) {
                    {
                        let mut w = slot.waker.lock().unwrap_or_else(|p| p.into_inner());
                        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            *w = Some(cx.waker().clone());
                        }
                    }
                    // The helper may have finished (and taken the old
                    // waker) meanwhile: then look again.
                    if !slot.done.load(Ordering::Acquire) {
                        return Poll::Pending;
                    }
                }
                let slot = this.park.take().expect("checked above");
                let err = slot.error.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(e) = err {
                    this.lane = None;
                    return Poll::Ready(Err(ring_error(name, &this.method, e, None)));
                }
                continue;
            }
            // Spin (no system call) for the lane's budget, at most
            // MAX_POLL_SPIN in this poll.
            let budget = lane.rings.rx.spin_budget();
            let cap = budget.unwrap_or(MAX_POLL_SPIN).min(MAX_POLL_SPIN);
            let mut n: u32 = 0;
            let ready = loop {
                std::hint::spin_loop();
                match lane.rings.rx.is_ready_spin(n) {
                    Ok(true) => break true,
                    Ok(false) => {}
                    Err(_) => break true, // try_reply reports it
                }
                n = n.wrapping_add(1);
                if n % 64 == 0 && entered.elapsed() >= cap {
                    break false;
                }
            };
            if ready {
                continue;
            }
            if budget.is_none() {
                // WaitStrategy::Spin: never park; let other tasks run and
                // come back, noticing a dead server on the way.
                if let Err(e) = lane.rings.chan.alive() {
                    this.lane = None;
                    return Poll::Ready(Err(ring_error(name, &this.method, e, None)));
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if budget.is_some_and(|b| since.elapsed() < b) {
                // Budget left, but this poll spun its share: yield.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Park: a helper thread blocks on the ring for us.
            let slot = Arc::new(ParkSlot {
                parker: lane.rings.rx.parker(),
                cancel: AtomicBool::new(false),
                done: AtomicBool::new(false),
                waker: Mutex::new(Some(cx.waker().clone())),
                error: Mutex::new(None),
            });
            let helper = slot.clone();
            let spawned = match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    drop(h.spawn_blocking(move || helper.run()));
                    true
                }
                Err(_) => std::thread::Builder::new()
                    .name("ipckit-svc-park".into())
                    .stack_size(128 * 1024)
                    .spawn(move || helper.run())
                    .is_ok(),
            };
            if !spawned {
                this.lane = None;
                return Poll::Ready(Err(Error::new(
                    ErrorKind::Io,
                    "cannot start a thread to wait for the reply; the call's outcome is unknown",
                )
                .with_name(name)));
            }
            this.park = Some(slot);
            return Poll::Pending;
        }
    }
}
