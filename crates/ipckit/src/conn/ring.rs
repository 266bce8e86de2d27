//! The shared-memory transport: two single-producer / single-consumer byte
//! rings (one per direction) and two loan segments in one sealed `memfd`.
//!
//! The peer that maps the same object is **untrusted**: it can write any
//! bytes anywhere in it at any time. So every index, length and offset read
//! from the shared pages is checked here, next to the layout, before it is
//! used; each side keeps its own copy of the index it owns (the consumer's
//! `head`, the producer's `tail`) and never reads it back. A check that
//! fails gives [`RingError::Corrupt`] and the caller closes the connection.
//! The object's size is sealed by its creator and the seal is verified by
//! the side that receives it, so the peer cannot shrink it under a mapping.
//!
//! Layout (see `docs/PROTOCOL.md`, "Shared-memory transport"), all integers
//! little-endian, the object's size exactly
//! `4096 + 2 * ring_cap + 2 * loan_cap`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `IPCKRING` |
//! | 8 | 4 | version (2) |
//! | 16 | 8 | `ring_cap`: bytes per ring, a power of two, 4 KiB–64 MiB |
//! | 24 | 8 | `loan_cap`: bytes per loan segment, a multiple of 4096 |
//! | 256 | 256 | control block of ring 0 (connecting side → accepting side) |
//! | 512 | 256 | control block of ring 1 (accepting side → connecting side) |
//! | 4096 | `ring_cap` | ring 0 bytes, then ring 1 bytes |
//! | … | `loan_cap` | loan segment 0 (written by the connecting side), then 1 |
//!
//! A control block: `tail` u64 at 0 and `closed` u32 at 8 (producer's
//! line), `head` u64 at 64 (consumer's line), `data_seq` u32 at 128 and
//! `data_sleep` u32 at 132 (consumer parks on `data_seq`), `space_seq` u32
//! at 192 and `space_sleep` u32 at 196 (producer parks on `space_seq`).
//! `tail`/`head` count bytes ever written / consumed; the ring position is
//! the count modulo `ring_cap`.
//!
//! A ring holds records, each 16-byte aligned: a 16-byte header (`stamp`
//! u32, `len` u32, `flags` u8, `tag` u8, `total` u48) and `len` payload
//! bytes, padded to 16. Flags: 1 first fragment, 2 last fragment, 4 padding
//! (skip to the ring's start). A message is one or more fragments carrying
//! the same `tag` and `total` (its length), whose lengths add up to `total`.
//!
//! Version 2: **the consumer polls the record, not the producer's index.**
//! A record at position `p` is published by storing its stamp
//! `S(p) = (p / 16 + 1) mod 2^32` last; the consumer waits for `S(head)` in
//! the stamp word at `head`. A stale header of an earlier lap carries
//! another stamp; stale *payload* bytes that happen to look like `S(q)` for
//! a later record position `q` are overwritten first: before publishing a
//! record ending at `q`, the producer writes `!S(q)` into the stamp word at
//! `q` (so it keeps 16 bytes free beyond every record). `tail` is still
//! stored after the stamp but read by the consumer only on its slow path
//! (the periodic liveness check), to catch a peer that moved it wrongly.
#![allow(unsafe_code)]
// Users (pipes, services) arrive in the following commits.
#![allow(dead_code)]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys;
use crate::transport::WaitStrategy;

const MAGIC: &[u8; 8] = b"IPCKRING";
const VERSION: u32 = 2;
/// Bytes before the first ring.
const HEADER: usize = 4096;
const CTL_OFFSET: usize = 256;
const CTL_SIZE: usize = 256;
/// Smallest and largest ring accepted from a peer.
pub(crate) const MIN_RING: usize = 4096;
pub(crate) const MAX_RING: usize = 64 << 20;
/// Largest loan segment accepted from a peer.
pub(crate) const MAX_LOAN: usize = 1 << 30;
/// Record header size (and alignment).
const REC: usize = 16;
const F_FIRST: u8 = 1;
const F_LAST: u8 = 2;
const F_PAD: u8 = 4;
/// How long a parked waiter sleeps before it checks that its peer lives.
const PARK_SLICE: Duration = Duration::from_millis(50);
/// How long a waiter spins without yielding the CPU.
const PURE_SPIN: Duration = Duration::from_micros(2);
/// How often a spinning waiter checks that its peer lives.
const SPIN_CHECK: Duration = Duration::from_millis(1);

/// Why a ring operation failed.
#[derive(Debug)]
pub(crate) enum RingError {
    /// The deadline passed first; nothing was consumed.
    Timeout,
    /// The peer died or its socket closed.
    PeerGone,
    /// [`Chan::interrupt`] was called (local shutdown).
    Interrupted,
    /// The shared pages hold something impossible: the peer is broken or
    /// hostile. The connection must be closed.
    Corrupt(String),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Timeout => f.write_str("timed out"),
            RingError::PeerGone => f.write_str("the peer is gone"),
            RingError::Interrupted => f.write_str("interrupted by shutdown"),
            RingError::Corrupt(why) => write!(f, "corrupt shared memory: {why}"),
        }
    }
}

/// One ring's control block, as it lies in shared memory.
#[repr(C, align(64))]
struct Ctl {
    tail: AtomicU64,
    closed: AtomicU32,
    _p0: [u8; 52],
    head: AtomicU64,
    _p1: [u8; 56],
    data_seq: AtomicU32,
    data_sleep: AtomicU32,
    _p2: [u8; 56],
    space_seq: AtomicU32,
    space_sleep: AtomicU32,
    _p3: [u8; 56],
}

const _: () = assert!(std::mem::size_of::<Ctl>() == CTL_SIZE);

/// A mapped channel object. Shared by the [`Tx`] and [`Rx`] halves.
pub(crate) struct Chan {
    map: sys::shm::Map,
    ring_cap: usize,
    loan_cap: usize,
    /// The socket whose end-of-stream means the peer is gone.
    watch: Option<OwnedFd>,
    dead: AtomicBool,
    stop: AtomicBool,
    /// The two [`LoanKey`]s were handed out.
    keys_taken: AtomicBool,
}

/// The right to view loan segment `dir` of one channel from this process.
/// Each channel hands out its two keys once ([`Chan::take_loan_keys`]), so
/// the borrow checker sees every view of a segment: a mutable one needs the
/// key mutably, so it can never alias another view in this process. (The
/// peer process may still write the pages meanwhile; see
/// [`Chan::loan`].)
#[derive(Debug)]
pub(crate) struct LoanKey {
    dir: usize,
    /// The channel's mapping address: a key opens only its own channel.
    chan: usize,
}

impl std::fmt::Debug for Chan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chan")
            .field("ring_cap", &self.ring_cap)
            .field("loan_cap", &self.loan_cap)
            .finish()
    }
}

/// Total object size for these capacities, or `None` if it overflows.
fn object_size(ring_cap: usize, loan_cap: usize) -> Option<usize> {
    ring_cap
        .checked_mul(2)?
        .checked_add(loan_cap.checked_mul(2)?)?
        .checked_add(HEADER)
}

impl Chan {
    /// Create a channel object: `ring_cap` bytes per ring (rounded up to a
    /// power of two, at least 4 KiB) and `loan_cap` bytes per loan segment
    /// (rounded up to pages). Returns the mapped channel and the sealed fd
    /// to send to the peer. Untouched pages cost no memory.
    pub(crate) fn create(ring_cap: usize, loan_cap: usize) -> std::io::Result<(Chan, OwnedFd)> {
        let ring_cap = ring_cap.clamp(MIN_RING, MAX_RING).next_power_of_two();
        let loan_cap = loan_cap.min(MAX_LOAN).next_multiple_of(4096);
        let size = object_size(ring_cap, loan_cap).expect("bounded sizes");
        let fd = sys::shm::memfd_sealed(size as u64)?;
        let map = sys::shm::Map::new(fd.as_fd(), size)?;
        // SAFETY: the mapping is `size` ≥ 4096 bytes and nobody else has it
        // yet; the header fields lie in its first 32 bytes.
        unsafe {
            let p = map.ptr();
            std::ptr::copy_nonoverlapping(MAGIC.as_ptr(), p, 8);
            p.add(8).cast::<u32>().write_unaligned(VERSION.to_le());
            p.add(16)
                .cast::<u64>()
                .write_unaligned((ring_cap as u64).to_le());
            p.add(24)
                .cast::<u64>()
                .write_unaligned((loan_cap as u64).to_le());
        }
        let chan = Chan {
            map,
            ring_cap,
            loan_cap,
            watch: None,
            dead: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            keys_taken: AtomicBool::new(false),
        };
        Ok((chan, fd))
    }

    /// Map a channel object received from a peer, checking everything: the
    /// seal, the magic, the version, both capacities against the limits
    /// (`max_loan` at most) and the object's size against them.
    pub(crate) fn open(fd: BorrowedFd<'_>, max_loan: usize) -> Result<Chan, String> {
        match sys::shm::size_sealed(fd) {
            Ok(true) => {}
            Ok(false) => return Err("the shared-memory object's size is not sealed".into()),
            Err(e) => return Err(format!("cannot read the object's seals: {e}")),
        }
        let size = sys::shm::size_of(fd).map_err(|e| format!("cannot stat the object: {e}"))?;
        if size < HEADER as u64 || size > (MAX_RING * 2 + MAX_LOAN * 2 + HEADER) as u64 {
            return Err(format!("the object's size {size} is out of range"));
        }
        let map = sys::shm::Map::new(fd, size as usize)
            .map_err(|e| format!("cannot map the object: {e}"))?;
        let mut head = [0u8; 32];
        // SAFETY: the mapping is at least HEADER (4096) bytes; we copy the
        // first 32 as plain bytes (any value is acceptable, checked below).
        unsafe { std::ptr::copy_nonoverlapping(map.ptr(), head.as_mut_ptr(), 32) };
        if &head[..8] != MAGIC {
            return Err("the object does not start with the ring magic".into());
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!(
                "the peer speaks ring version {version}, this side {VERSION}: run the same ipckit release on both sides"
            ));
        }
        let ring_cap = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
        let loan_cap = u64::from_le_bytes(head[24..32].try_into().expect("8 bytes"));
        if !ring_cap.is_power_of_two() || ring_cap < MIN_RING as u64 || ring_cap > MAX_RING as u64 {
            return Err(format!(
                "ring capacity {ring_cap} is not a power of two in 4 KiB–64 MiB"
            ));
        }
        // The creator rounds its segment up to whole pages; so do we.
        let max_loan = max_loan.min(MAX_LOAN).next_multiple_of(4096);
        if loan_cap % 4096 != 0 || loan_cap > max_loan as u64 {
            return Err(format!(
                "loan segment of {loan_cap} bytes is over the limit of {max_loan} or not whole pages"
            ));
        }
        let (ring_cap, loan_cap) = (ring_cap as usize, loan_cap as usize);
        if object_size(ring_cap, loan_cap) != Some(size as usize) {
            return Err(format!(
                "the object is {size} bytes, not what its header describes"
            ));
        }
        Ok(Chan {
            map,
            ring_cap,
            loan_cap,
            watch: None,
            dead: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            keys_taken: AtomicBool::new(false),
        })
    }

    /// Watch `socket`: once it reports end-of-stream, waits end with
    /// [`RingError::PeerGone`].
    pub(crate) fn watch(mut self, socket: OwnedFd) -> Chan {
        self.watch = Some(socket);
        self
    }

    /// The watched socket, if any.
    pub(crate) fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.watch.as_ref().map(|s| s.as_fd())
    }

    /// Shut the watched socket down: the peer sees the connection end.
    pub(crate) fn shutdown_socket(&self) {
        if let Some(s) = &self.watch {
            sys::net::shutdown(s);
        }
    }

    /// Bytes per ring.
    pub(crate) fn ring_cap(&self) -> usize {
        self.ring_cap
    }

    /// Bytes per loan segment.
    pub(crate) fn loan_cap(&self) -> usize {
        self.loan_cap
    }

    /// Largest payload of one record (bigger messages are fragmented).
    fn max_record(&self) -> usize {
        self.ring_cap / 4 - REC
    }

    fn ctl(&self, dir: usize) -> &Ctl {
        debug_assert!(dir < 2);
        // SAFETY: CTL_OFFSET + 2 * CTL_SIZE ≤ HEADER ≤ the mapping's length;
        // the offset is 64-byte aligned inside a page-aligned mapping; `Ctl`
        // is only atomics (any bit pattern is valid, and concurrent access
        // from the peer is what atomics are for); the mapping lives as long
        // as `self`.
        unsafe {
            &*self
                .map
                .ptr()
                .add(CTL_OFFSET + dir * CTL_SIZE)
                .cast::<Ctl>()
        }
    }

    fn ring_ptr(&self, dir: usize) -> *mut u8 {
        // SAFETY: HEADER + 2 * ring_cap ≤ the mapping's length (checked in
        // `open`, by construction in `create`).
        unsafe { self.map.ptr().add(HEADER + dir * self.ring_cap) }
    }

    /// The keys to loan segments 0 and 1; `None` once taken.
    pub(crate) fn take_loan_keys(&self) -> Option<[LoanKey; 2]> {
        if self.keys_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let chan = self.map.ptr() as usize;
        Some([LoanKey { dir: 0, chan }, LoanKey { dir: 1, chan }])
    }

    fn key_start(&self, key: &LoanKey, off: usize, len: usize) -> *mut u8 {
        assert_eq!(
            key.chan,
            self.map.ptr() as usize,
            "a loan key of another channel"
        );
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.loan_cap),
            "loan range {off}+{len} outside the {}-byte segment",
            self.loan_cap
        );
        // SAFETY: `off + len ≤ loan_cap` (asserted), so `off` lies inside
        // segment `key.dir`, itself inside the mapping.
        unsafe { self.loan_ptr(key.dir).add(off) }
    }

    /// View `off..off + len` of the key's loan segment (the range must lie
    /// inside it; callers check ranges read from the peer with
    /// [`check_loan`](Self::check_loan) first).
    ///
    /// The peer process may write these pages while the view lives: an
    /// honest peer does not (the protocol gives the segment to one side at a
    /// time), a hostile one can make two reads disagree but never reach
    /// outside the segment; the loan-handler docs tell handlers to copy what
    /// they validate.
    pub(crate) fn loan<'a>(&'a self, key: &'a LoanKey, off: usize, len: usize) -> &'a [u8] {
        let p = self.key_start(key, off, len);
        // SAFETY: (1) the range lies inside the segment, which stays mapped
        // while `self` lives; (2) no `&mut` view of this segment exists in
        // this process while `key` is borrowed shared here (a mutable view
        // borrows the one key mutably); (3) plain bytes: any value is valid.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// Like [`loan`](Self::loan), mutable: the segment this side writes.
    pub(crate) fn loan_mut<'a>(
        &'a self,
        key: &'a mut LoanKey,
        off: usize,
        len: usize,
    ) -> &'a mut [u8] {
        let p = self.key_start(key, off, len);
        // SAFETY: as in `loan`, and the key is borrowed mutably for the
        // view's life, so it is the only view of this segment in this
        // process.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }

    /// Start of loan segment `dir` (0: written by the connecting side).
    fn loan_ptr(&self, dir: usize) -> *mut u8 {
        debug_assert!(dir < 2);
        // SAFETY: HEADER + 2 * ring_cap + 2 * loan_cap is the mapping's
        // length, so segment `dir` lies inside it.
        unsafe {
            self.map
                .ptr()
                .add(HEADER + 2 * self.ring_cap + dir * self.loan_cap)
        }
    }

    /// Copy `len` bytes at `offset` of loan segment `dir` into `out`
    /// (replacing its contents), after checking the range.
    pub(crate) fn loan_copy(
        &self,
        dir: usize,
        offset: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), RingError> {
        let (off, len) = self.check_loan(offset, len)?;
        out.clear();
        out.reserve(len);
        // SAFETY: the range was checked to lie inside segment `dir`; the
        // bytes are copied as plain bytes (the peer may change them while we
        // copy; any value is a valid u8) into `out`'s spare capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(self.loan_ptr(dir).add(off), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Ok(())
    }

    /// Check a loan range `offset..offset+len` read from the peer.
    pub(crate) fn check_loan(&self, offset: u64, len: u64) -> Result<(usize, usize), RingError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.loan_cap as u64 => Ok((offset as usize, len as usize)),
            _ => Err(RingError::Corrupt(format!(
                "loan range {offset}+{len} is outside the {}-byte segment",
                self.loan_cap
            ))),
        }
    }

    /// Mark the peer dead (e.g. a thread reading its socket saw the end)
    /// and wake every waiter of this side.
    pub(crate) fn set_dead(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Make every wait on this channel end with [`RingError::Interrupted`].
    pub(crate) fn interrupt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for dir in 0..2 {
            let c = self.ctl(dir);
            c.data_seq.fetch_add(1, Ordering::SeqCst);
            sys::futex::wake(&c.data_seq, u32::MAX);
            c.space_seq.fetch_add(1, Ordering::SeqCst);
            sys::futex::wake(&c.space_seq, u32::MAX);
        }
    }

    /// Whether the peer is still there (its socket open, not marked dead).
    fn check_alive(&self) -> Result<(), RingError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(RingError::Interrupted);
        }
        if self.dead.load(Ordering::Relaxed) {
            return Err(RingError::PeerGone);
        }
        if let Some(s) = &self.watch {
            if sys::net::peer_closed(s.as_fd()) {
                self.dead.store(true, Ordering::Relaxed);
                return Err(RingError::PeerGone);
            }
        }
        Ok(())
    }

    /// Wait until `ready(..)` says yes: spin per `strategy`, then park on
    /// `seq` with `sleep` raised. `ready` returns `Err` to stop waiting;
    /// its argument says how much it should look at (see [`Look`]).
    fn wait(
        &self,
        seq: &AtomicU32,
        sleep: &AtomicU32,
        spin: &mut Spin,
        deadline: Option<Instant>,
        mut ready: impl FnMut(Look) -> Result<bool, RingError>,
    ) -> Result<(), RingError> {
        // A shutdown must be seen even by a waiter whose peer keeps it busy.
        if self.stop.load(Ordering::Relaxed) {
            return Err(RingError::Interrupted);
        }
        // Only the record's line at first: in a ping-pong the reply is
        // usually not there yet, and reading `closed` would pull the
        // producer's line (with `tail`) over just before it writes it.
        if ready(Look::Fast)? {
            return Ok(());
        }
        let start = Instant::now();
        let budget = spin.budget();
        let mut last_check = start;
        let mut n: u32 = 0;
        // Spin phase (none at all for `WaitStrategy::Park`).
        while budget != Some(Duration::ZERO) {
            std::hint::spin_loop();
            n = n.wrapping_add(1);
            let look = if n % 64 == 0 { Look::Full } else { Look::Fast };
            if ready(look)? {
                spin.record(start.elapsed());
                return Ok(());
            }
            if look == Look::Fast {
                continue;
            }
            let now = Instant::now();
            // Past a short pure spin, let the peer have the core if it is
            // waiting for one (two processes on one overcommitted core
            // would otherwise take turns spinning for a whole time slice).
            if now.duration_since(start) >= PURE_SPIN {
                sys::yield_now();
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(RingError::Timeout);
            }
            if now.duration_since(last_check) >= SPIN_CHECK {
                last_check = now;
                self.check_alive()?;
                if ready(Look::Slow)? {
                    spin.record(start.elapsed());
                    return Ok(());
                }
            }
            if budget.is_some_and(|b| now.duration_since(start) >= b) {
                break;
            }
        }
        // Park phase.
        loop {
            let s = seq.load(Ordering::Acquire);
            sleep.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready(Look::Full)? {
                sleep.store(0, Ordering::Relaxed);
                spin.record(start.elapsed());
                return Ok(());
            }
            let mut slice = PARK_SLICE;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    sleep.store(0, Ordering::Relaxed);
                    return Err(RingError::Timeout);
                }
                slice = slice.min(left);
            }
            let _ = sys::futex::wait(seq, s, Some(slice));
            sleep.store(0, Ordering::Relaxed);
            if ready(Look::Full)? {
                spin.record(start.elapsed());
                return Ok(());
            }
            self.check_alive()?;
            if ready(Look::Slow)? {
                spin.record(start.elapsed());
                return Ok(());
            }
        }
    }

    /// The stamp word of the record slot at ring position `pos` of ring
    /// `dir` (`pos` a multiple of 16).
    fn stamp_word(&self, dir: usize, pos: u64) -> &AtomicU32 {
        debug_assert!(pos % REC as u64 == 0);
        let off = (pos as usize) & (self.ring_cap - 1);
        // SAFETY: `off` < ring_cap and 16-aligned, so its 4 bytes lie inside
        // ring `dir` (inside the mapping, which lives as long as `self`) and
        // are 4-aligned (the ring starts on a page); an atomic may sit on
        // any bytes (any bit pattern is a valid u32) and the peer's
        // concurrent writes are what atomics are for.
        unsafe { &*self.ring_ptr(dir).add(off).cast::<AtomicU32>() }
    }

    /// Whether the record at position `pos` of ring `dir` is published
    /// (its stamp word holds [`stamp`]`(pos)`; acquire, so its other bytes
    /// can be read after this says yes).
    fn published(&self, dir: usize, pos: u64) -> bool {
        self.stamp_word(dir, pos).load(Ordering::Acquire) == stamp(pos)
    }

    /// The consumer's slow-path check of ring `dir`'s `tail`, read from
    /// position `head`: a multiple of 16, at most one ring ahead, and not
    /// ahead of a record that is not published (an honest producer stores
    /// the stamp before the tail). It may lag behind `head`: the producer
    /// stores a record's stamp, then its tail, and the consumer may take
    /// the record in between — by less than a ring.
    fn check_tail(&self, dir: usize, head: u64) -> Result<(), RingError> {
        let cap = self.ring_cap as u64;
        let tail = self.ctl(dir).tail.load(Ordering::Acquire);
        let bad = || {
            Err(RingError::Corrupt(format!(
                "the peer's write index {tail} is impossible (read {head}, ring {cap} bytes)"
            )))
        };
        if tail % REC as u64 != 0 {
            return bad();
        }
        if tail <= head {
            return if head - tail > cap { bad() } else { Ok(()) };
        }
        if tail - head > cap {
            return bad();
        }
        if !self.published(dir, head) {
            return Err(RingError::Corrupt(format!(
                "the peer's write index {tail} is past a record it never published at {head}"
            )));
        }
        Ok(())
    }

    /// Whether ring `dir` has a record at `head` or is closed (what a data
    /// waiter waits for), looking as far as `look` says.
    fn data_ready(&self, dir: usize, head: u64, look: Look) -> Result<bool, RingError> {
        if self.published(dir, head) {
            return Ok(true);
        }
        if look == Look::Fast {
            return Ok(false);
        }
        if look == Look::Slow {
            self.check_tail(dir, head)?;
        }
        Ok(self.ctl(dir).closed.load(Ordering::Acquire) != 0)
    }
}

/// How much a waiter's readiness check looks at. A data waiter polls only
/// the stamp of the record it waits for while spinning ([`Look::Fast`]),
/// so no other cache line crosses per message; every 64 spins and when it
/// parks it also reads `closed` ([`Look::Full`], which shares the
/// producer's line with `tail`), and on its slow path (each liveness
/// check) it checks the producer's `tail` too ([`Look::Slow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Fast,
    Full,
    Slow,
}

/// The stamp of a record at ring position `pos`: `(pos / 16 + 1) mod 2^32`
/// (never 0 for the first lap, whose bytes start zeroed).
fn stamp(pos: u64) -> u32 {
    ((pos / REC as u64) + 1) as u32
}

/// Notify a parked peer: called right after publishing an index with a
/// `SeqCst` store, cheap when nobody sleeps. The publishing store and this
/// load are both `SeqCst`, and the waiter raises its flag with a `SeqCst`
/// store followed by a `SeqCst` fence before re-reading the index, so one
/// of the two always sees the other (no lost wake-up). On x86 this costs
/// an `xchg` instead of a store plus `mfence`.
fn notify(seq: &AtomicU32, sleep: &AtomicU32) {
    if sleep.load(Ordering::SeqCst) != 0 {
        seq.fetch_add(1, Ordering::Release);
        sys::futex::wake(seq, 1);
    }
}

/// The adaptive spin budget of one waiter.
#[derive(Debug, Clone)]
pub(crate) struct Spin {
    max: Option<Duration>,
    current: Option<Duration>,
}

impl Spin {
    pub(crate) fn new(strategy: WaitStrategy) -> Spin {
        let max = match strategy {
            WaitStrategy::Spin => None,
            WaitStrategy::SpinThenPark(d) => Some(d),
            WaitStrategy::Park => Some(Duration::ZERO),
        };
        Spin { max, current: max }
    }

    fn budget(&self) -> Option<Duration> {
        self.current
    }

    /// A wait that lasted `took` ended: keep spinning long if it was
    /// short, else shrink the budget (the peer is idle).
    fn record(&mut self, took: Duration) {
        if let (Some(max), Some(cur)) = (self.max, self.current) {
            self.current = Some(if took <= max * 2 {
                max
            } else {
                (cur / 2).max(max / 16)
            });
        }
    }
}

/// Sending half of one ring.
#[derive(Debug)]
pub(crate) struct Tx {
    chan: Arc<Chan>,
    dir: usize,
    tail: u64,
    /// Last `head` read from the peer (it may only grow).
    head: u64,
    spin: Spin,
}

/// Receiving half of one ring.
#[derive(Debug)]
pub(crate) struct Rx {
    chan: Arc<Chan>,
    dir: usize,
    head: u64,
    /// Fragments of a message received so far: (tag, total, bytes).
    partial: Option<(u8, u64, Vec<u8>)>,
    spin: Spin,
    eof: bool,
}

/// The ring flavor of a connection: both rings of one channel, the
/// object kept open (one descriptor per connection, so it shows in
/// `/proc/PID/fd`), watching the connection's socket for the peer's death.
///
/// Every mechanism upgrades a socket connection to rings the same way: the
/// connecting side creates a sealed object and passes it over the socket
/// attached to the mechanism's upgrade frame ([`Rings::offer`]); the
/// accepting side checks the object it received and maps it
/// ([`Rings::accept`]).
pub(crate) struct Rings {
    pub chan: Arc<Chan>,
    pub tx: Tx,
    pub rx: Rx,
    _object: OwnedFd,
}

impl std::fmt::Debug for Rings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rings").field("chan", &self.chan).finish()
    }
}

impl Rings {
    /// Connecting side: create a channel of `ring_cap`-byte rings and
    /// `loan_cap`-byte loan segments, send `frame` on `socket` with the
    /// object attached (`SCM_RIGHTS`), and take the connecting ends.
    pub(crate) fn offer(
        socket: BorrowedFd<'_>,
        frame: &[u8],
        ring_cap: usize,
        loan_cap: usize,
        wait: WaitStrategy,
    ) -> std::io::Result<Rings> {
        let (chan, object) = Chan::create(ring_cap, loan_cap)?;
        sys::net::send_with_fd(socket, frame, object.as_fd())?;
        Rings::start(chan, object, socket, true, wait)
    }

    /// Accepting side: check the object a peer passed (sealed size, layout,
    /// loan segments at most `max_loan`), map it and take the accepting
    /// ends. `Err` says why it was refused.
    pub(crate) fn accept(
        object: OwnedFd,
        socket: BorrowedFd<'_>,
        max_loan: usize,
        wait: WaitStrategy,
    ) -> Result<Rings, String> {
        let chan = Chan::open(object.as_fd(), max_loan)?;
        Rings::start(chan, object, socket, false, wait)
            .map_err(|e| format!("cannot watch the connection: {e}"))
    }

    fn start(
        chan: Chan,
        object: OwnedFd,
        socket: BorrowedFd<'_>,
        connector: bool,
        wait: WaitStrategy,
    ) -> std::io::Result<Rings> {
        let chan = Arc::new(chan.watch(socket.try_clone_to_owned()?));
        let (tx, rx) = split(chan.clone(), connector, wait);
        Ok(Rings {
            chan,
            tx,
            rx,
            _object: object,
        })
    }
}

/// The two halves for one side: `connector` is the side that created the
/// object and connected (it sends on ring 0).
pub(crate) fn split(chan: Arc<Chan>, connector: bool, strategy: WaitStrategy) -> (Tx, Rx) {
    let (out, inn) = if connector { (0, 1) } else { (1, 0) };
    (
        Tx {
            chan: chan.clone(),
            dir: out,
            tail: 0,
            head: 0,
            spin: Spin::new(strategy),
        },
        Rx {
            chan,
            dir: inn,
            head: 0,
            partial: None,
            spin: Spin::new(strategy),
            eof: false,
        },
    )
}

impl Tx {
    /// The channel this half belongs to.
    pub(crate) fn chan(&self) -> &Arc<Chan> {
        &self.chan
    }

    /// Read and check the consumer's head; returns free bytes.
    fn free(&mut self) -> Result<usize, RingError> {
        let cap = self.chan.ring_cap as u64;
        let head = self.chan.ctl(self.dir).head.load(Ordering::Acquire);
        if head < self.head || head > self.tail || self.tail - head > cap || head % REC as u64 != 0
        {
            return Err(RingError::Corrupt(format!(
                "the peer's read index {head} is impossible (written {}, ring {cap} bytes)",
                self.tail
            )));
        }
        self.head = head;
        Ok((cap - (self.tail - head)) as usize)
    }

    /// Wait until `need` bytes are free (callers count the 16 bytes the
    /// next header's slot needs beyond a record: see [`put`](Self::put)).
    fn reserve(&mut self, need: usize, deadline: Option<Instant>) -> Result<(), RingError> {
        // The cached head only lags the real one: if it shows room, there
        // is room (and the peer's cache line is not touched).
        let cap = self.chan.ring_cap as u64;
        if cap - (self.tail - self.head) >= need as u64 {
            return Ok(());
        }
        if self.free()? >= need {
            return Ok(());
        }
        let chan = self.chan.clone();
        let ctl = chan.ctl(self.dir);
        let mut spin = self.spin.clone();
        let r = chan.wait(
            &ctl.space_seq,
            &ctl.space_sleep,
            &mut spin,
            deadline,
            |_| Ok(self.free()? >= need),
        );
        self.spin = spin;
        r
    }

    /// Write one record at the tail and publish it. The caller reserved
    /// its REC + round16(len) bytes, contiguous, *plus 16*: before the
    /// record's stamp is stored, the stamp word of the slot right after it
    /// (where the next header will go) is overwritten with a value that is
    /// never a valid stamp there, so whatever was left in that slot (an
    /// old payload that could look like a header) is never taken for one.
    fn put(&mut self, flags: u8, tag: u8, total: u64, parts: &[&[u8]], len: usize) {
        debug_assert!(total < 1 << 48);
        let cap = self.chan.ring_cap;
        let base = self.chan.ring_ptr(self.dir);
        let off = (self.tail as usize) & (cap - 1);
        let mut hdr = [0u8; REC - 4];
        hdr[..4].copy_from_slice(&(len as u32).to_le_bytes());
        hdr[4] = flags;
        hdr[5] = tag;
        hdr[6..12].copy_from_slice(&total.to_le_bytes()[..6]);
        // SAFETY: `off` is 16-aligned and the caller reserved
        // REC + round16(len) ≤ cap - off bytes from it, all inside ring
        // `dir` and not in use by the consumer (it reads them only once the
        // stamp below is stored). Header bytes 4..16 and the payload are
        // written as plain bytes; the stamp word (bytes 0..4) only
        // atomically, through `stamp_word`.
        unsafe {
            std::ptr::copy_nonoverlapping(hdr.as_ptr(), base.add(off + 4), REC - 4);
            let mut at = off + REC;
            for p in parts {
                std::ptr::copy_nonoverlapping(p.as_ptr(), base.add(at), p.len());
                at += p.len();
            }
        }
        let at = self.tail;
        let next = at + (REC + len.next_multiple_of(REC)) as u64;
        // Invalidate the next slot (reserved: within `head + cap`), then
        // publish: the release in the stamp's store orders both this and
        // the bytes above before it. SeqCst: `notify` then reads the
        // sleep flag (no lost wake-up, see there).
        self.chan
            .stamp_word(self.dir, next)
            .store(!stamp(next), Ordering::Relaxed);
        self.chan
            .stamp_word(self.dir, at)
            .store(stamp(at), Ordering::SeqCst);
        self.tail = next;
        // Read by the consumer only on its slow path.
        self.chan.ctl(self.dir).tail.store(next, Ordering::Release);
    }

    /// Make room for a record of `size` bytes that must not wrap: pad to
    /// the ring's end first if needed. Returns once `size` contiguous
    /// bytes are free at the tail (and the 16 after them).
    fn reserve_contiguous(
        &mut self,
        size: usize,
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        let cap = self.chan.ring_cap;
        let off = (self.tail as usize) & (cap - 1);
        let to_end = cap - off;
        if to_end < size {
            self.reserve(to_end + REC, deadline)?;
            self.put(F_PAD, 0, 0, &[], to_end - REC);
        }
        self.reserve(size + REC, deadline)
    }

    /// Send one message made of `parts` (concatenated), fragmenting it if
    /// it is bigger than a record. Blocks while the ring is full; fails
    /// only if the peer dies, misbehaves, or the channel is interrupted.
    pub(crate) fn send(&mut self, tag: u8, parts: &[&[u8]]) -> Result<(), RingError> {
        self.send_until(tag, parts, None)
    }

    /// Like [`send`](Self::send), giving up with [`RingError::Timeout`] at
    /// `deadline` while waiting for room. A message given up on halfway
    /// leaves the ring mid-message: the caller must then drop the channel.
    pub(crate) fn send_until(
        &mut self,
        tag: u8,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let max = self.chan.max_record();
        if self.chan.ctl(self.dir).closed.load(Ordering::Relaxed) != 0 {
            // We closed it ourselves; nothing can be sent any more.
            return Err(RingError::PeerGone);
        }
        if total <= max {
            self.reserve_contiguous(REC + total.next_multiple_of(REC), deadline)?;
            self.put(F_FIRST | F_LAST, tag, total as u64, parts, total);
            self.notify_data();
            return Ok(());
        }
        // Fragment: walk the parts in chunks of at most `max` bytes.
        let mut sent = 0usize;
        let (mut pi, mut po) = (0usize, 0usize);
        while sent < total {
            let n = (total - sent).min(max);
            self.reserve_contiguous(REC + n.next_multiple_of(REC), deadline)?;
            let mut chunk: Vec<&[u8]> = Vec::new();
            let mut need = n;
            while need > 0 {
                let p = parts[pi];
                let take = (p.len() - po).min(need);
                chunk.push(&p[po..po + take]);
                po += take;
                need -= take;
                if po == p.len() {
                    pi += 1;
                    po = 0;
                }
            }
            let mut flags = 0;
            if sent == 0 {
                flags |= F_FIRST;
            }
            if sent + n == total {
                flags |= F_LAST;
            }
            self.put(flags, tag, total as u64, &chunk, n);
            self.notify_data();
            sent += n;
        }
        Ok(())
    }

    /// Wake the consumer if it is parked (after a record was published).
    fn notify_data(&self) {
        let ctl = self.chan.ctl(self.dir);
        notify(&ctl.data_seq, &ctl.data_sleep);
    }

    /// Tell the peer nothing more will come (it sees end-of-stream after
    /// the messages already sent).
    pub(crate) fn close(&self) {
        let ctl = self.chan.ctl(self.dir);
        ctl.closed.store(1, Ordering::Release);
        ctl.data_seq.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake(&ctl.data_seq, u32::MAX);
    }

    /// Whether the peer has consumed everything sent so far.
    pub(crate) fn drained(&mut self) -> Result<bool, RingError> {
        let cap = self.chan.ring_cap;
        Ok(self.free()? == cap)
    }

    /// Wait until the peer has consumed everything sent so far.
    pub(crate) fn wait_drained(&mut self, deadline: Option<Instant>) -> Result<(), RingError> {
        let chan = self.chan.clone();
        let ctl = chan.ctl(self.dir);
        let mut spin = self.spin.clone();
        let r = chan.wait(
            &ctl.space_seq,
            &ctl.space_sleep,
            &mut spin,
            deadline,
            |_| self.drained(),
        );
        self.spin = spin;
        r
    }
}

/// A checked record header: (flags, tag, payload length, message total,
/// bytes the record takes in the ring).
type RecordHead = (u8, u8, usize, u64, usize);

/// A message taken out of a ring.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Got {
    pub tag: u8,
}

impl Rx {
    /// The channel this half belongs to.
    pub(crate) fn chan(&self) -> &Arc<Chan> {
        &self.chan
    }

    /// Whether a record (or end-of-stream) is ready without waiting.
    fn ready(&mut self) -> Result<bool, RingError> {
        self.chan.data_ready(self.dir, self.head, Look::Full)
    }

    /// Wait until a record or the end is there.
    fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<(), RingError> {
        let chan = &*self.chan;
        let ctl = chan.ctl(self.dir);
        let (dir, head) = (self.dir, self.head);
        chan.wait(
            &ctl.data_seq,
            &ctl.data_sleep,
            &mut self.spin,
            deadline,
            |look| chan.data_ready(dir, head, look),
        )
    }

    /// The next record's checked header (see [`RecordHead`]); it is
    /// published (its stamp was acquired).
    fn header(&self) -> Result<RecordHead, RingError> {
        let cap = self.chan.ring_cap;
        let off = (self.head as usize) & (cap - 1);
        let mut h = [0u8; REC];
        // SAFETY: `off` is 16-aligned (head only grows by multiples of 16)
        // and < cap, so the 16 bytes lie inside ring `dir`; bytes 4..16
        // (after the stamp word, which is only accessed atomically) are
        // copied as plain bytes and checked below.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.chan.ring_ptr(self.dir).add(off + 4),
                h.as_mut_ptr().add(4),
                REC - 4,
            )
        };
        let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let (flags, tag) = (h[8], h[9]);
        let mut t = [0u8; 8];
        t[..6].copy_from_slice(&h[10..16]);
        let total = u64::from_le_bytes(t);
        // In u64: `len` is the peer's and could overflow a 32-bit usize.
        let size64 = REC as u64 + (len as u64).next_multiple_of(REC as u64);
        let size = size64.min(cap as u64 + 1) as usize;
        let bad = |why: &str| {
            Err(RingError::Corrupt(format!(
                "record at {} ({why}: len {len}, flags {flags:#x}, total {total})",
                self.head
            )))
        };
        if flags & !(F_FIRST | F_LAST | F_PAD) != 0 {
            return bad("unknown flags");
        }
        if size64 > (cap - off) as u64 {
            return bad("past the ring's end");
        }
        if flags & F_PAD != 0 {
            // An honest producer pads only when the next record (at most
            // cap/4 bytes) does not fit before the end.
            if flags != F_PAD || size != cap - off || size >= cap / 4 {
                return bad("bad padding");
            }
        } else if len > self.chan.max_record() {
            return bad("fragment over the record limit");
        } else if len == 0 && flags & F_LAST == 0 {
            return bad("an empty fragment that does not end its message");
        }
        Ok((flags, tag, len, total, size))
    }

    fn advance(&mut self, size: usize) {
        self.head += size as u64;
        let ctl = self.chan.ctl(self.dir);
        ctl.head.store(self.head, Ordering::SeqCst);
        notify(&ctl.space_seq, &ctl.space_sleep);
    }

    /// Peek the next message without taking it: its tag and total length
    /// (`None` at end-of-stream). Waits until `deadline`.
    pub(crate) fn peek(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<(u8, u64)>, RingError> {
        if let Some((tag, total, _)) = &self.partial {
            return Ok(Some((*tag, *total)));
        }
        let mut first_round = true;
        let Some((flags, tag, _, total, _)) = self.next_record(deadline, &mut first_round)? else {
            return Ok(None);
        };
        if flags & F_FIRST == 0 {
            return Err(RingError::Corrupt(format!(
                "record at {} continues a message that never started",
                self.head
            )));
        }
        Ok(Some((tag, total)))
    }

    /// The next record that is not padding (padding is skipped), waiting
    /// until `deadline`; `None` at end-of-stream. Only the first wait of a
    /// call may find a record although the deadline has passed: a peer
    /// that keeps sending padding or fragments cannot hold us past it.
    fn next_record(
        &mut self,
        deadline: Option<Instant>,
        first_round: &mut bool,
    ) -> Result<Option<RecordHead>, RingError> {
        loop {
            if self.eof {
                return Ok(None);
            }
            if !*first_round && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RingError::Timeout);
            }
            *first_round = false;
            self.wait_ready(deadline)?;
            // Ready: published, or closed (seen with acquire) — then a
            // record published before the close is seen now.
            if !self.chan.published(self.dir, self.head) {
                self.eof = true;
                return Ok(None);
            }
            let h = self.header()?;
            if h.0 & F_PAD != 0 {
                self.advance(h.4);
                continue;
            }
            return Ok(Some(h));
        }
    }

    /// Take the next whole message into `out` (replacing its contents).
    /// `limit` bounds its total length: a longer one is corrupt. Returns
    /// `None` at end-of-stream. On timeout, fragments already taken are
    /// kept for the next call.
    pub(crate) fn recv(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Instant>,
    ) -> Result<Option<Got>, RingError> {
        let mut first_round = true;
        loop {
            // Fragments already taken stay in `partial` on a timeout.
            let Some((flags, tag, len, total, size)) =
                self.next_record(deadline, &mut first_round)?
            else {
                if self.partial.is_some() {
                    return Err(RingError::Corrupt(
                        "the peer closed the ring in the middle of a message".into(),
                    ));
                }
                return Ok(None);
            };
            if total > limit as u64 {
                return Err(RingError::Corrupt(format!(
                    "a message of {total} bytes is over the limit of {limit}"
                )));
            }
            let first = flags & F_FIRST != 0;
            let last = flags & F_LAST != 0;
            let mut buf = match self.partial.take() {
                None if first => {
                    let mut v = std::mem::take(out);
                    v.clear();
                    // Bounded by `limit` above; still, never abort on a
                    // size the peer chose.
                    if v.try_reserve(total as usize).is_err() {
                        return Err(RingError::Corrupt(format!(
                            "cannot allocate {total} bytes for a message"
                        )));
                    }
                    v
                }
                Some((t, tot, v)) if !first && t == tag && tot == total => v,
                _ => {
                    return Err(RingError::Corrupt(format!(
                        "record at {} does not continue the message in progress",
                        self.head
                    )))
                }
            };
            if buf.len() as u64 + len as u64 > total || (last && buf.len() + len != total as usize)
            {
                return Err(RingError::Corrupt(format!(
                    "fragments of a {total}-byte message do not add up"
                )));
            }
            let off = (self.head as usize) & (self.chan.ring_cap - 1);
            let at = buf.len();
            buf.reserve(len);
            // SAFETY: `header` checked that REC + len lies inside ring `dir`
            // from `off`; `buf` has `len` spare bytes reserved; bytes are
            // copied as plain bytes (any value is valid).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.chan.ring_ptr(self.dir).add(off + REC),
                    buf.as_mut_ptr().add(at),
                    len,
                );
                buf.set_len(at + len);
            }
            self.advance(size);
            if last {
                *out = buf;
                return Ok(Some(Got { tag }));
            }
            self.partial = Some((tag, total, buf));
        }
    }
}

// ---------------------------------------------------------------------------
// Non-blocking calls and waiting elsewhere (for the async forms)
// ---------------------------------------------------------------------------

impl Rings {
    /// The parts, for a connection that keeps its two directions apart
    /// (split halves): the channel, both halves and the object.
    pub(crate) fn into_parts(self) -> (Arc<Chan>, Tx, Rx, OwnedFd) {
        (self.chan, self.tx, self.rx, self._object)
    }
}

/// Waits, on a thread that may block, for what one half needs (data for a
/// receiver, room for a sender), without touching the half itself: an
/// async task keeps its half and hands a `Waiter` to a helper thread,
/// which parks on the futex word as a blocking waiter would (raising the
/// sleep flag, so the peer's next publish wakes it).
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    chan: Arc<Chan>,
    dir: usize,
    /// Waiting for data (`index` is the receiver's head) or for room
    /// (`index` is the sender's tail, `need` bytes wanted).
    data: bool,
    index: u64,
    need: u64,
}

impl Waiter {
    /// Park until the half may proceed, the peer is gone, or `slice`
    /// passes ([`RingError::Timeout`]: call again, or give up).
    pub(crate) fn wait(&self, slice: Duration) -> Result<(), RingError> {
        let ctl = self.chan.ctl(self.dir);
        let mut spin = Spin::new(WaitStrategy::Park);
        let deadline = Some(Instant::now() + slice);
        if self.data {
            self.chan.wait(
                &ctl.data_seq,
                &ctl.data_sleep,
                &mut spin,
                deadline,
                |look| self.chan.data_ready(self.dir, self.index, look),
            )
        } else {
            let cap = self.chan.ring_cap as u64;
            self.chan.wait(
                &ctl.space_seq,
                &ctl.space_sleep,
                &mut spin,
                deadline,
                |_| {
                    // A hostile head only makes this say yes; the sender
                    // checks it properly when it tries again.
                    let head = ctl.head.load(Ordering::Acquire);
                    Ok(cap.saturating_sub(self.index.saturating_sub(head)) >= self.need)
                },
            )
        }
    }
}

impl Tx {
    /// Largest message [`try_send`](Self::try_send) takes (one record).
    pub(crate) fn max_unfragmented(&self) -> usize {
        self.chan.max_record()
    }

    /// Send one message of at most [`max_unfragmented`](Self::max_unfragmented)
    /// bytes if the ring has room for it now; `Ok(false)` (nothing written)
    /// if not. Never waits.
    pub(crate) fn try_send(&mut self, tag: u8, parts: &[&[u8]]) -> Result<bool, RingError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            total <= self.chan.max_record(),
            "a message that needs fragments"
        );
        if self.chan.ctl(self.dir).closed.load(Ordering::Relaxed) != 0 {
            return Err(RingError::PeerGone);
        }
        let need = self.room_needed(total) as u64;
        let cap = self.chan.ring_cap as u64;
        if cap - (self.tail - self.head) < need && (self.free()? as u64) < need {
            return Ok(false);
        }
        // There is room for the padding and the record: nothing waits.
        self.reserve_contiguous(REC + total.next_multiple_of(REC), None)?;
        self.put(F_FIRST | F_LAST, tag, total as u64, parts, total);
        self.notify_data();
        Ok(true)
    }

    /// Free bytes a one-record message of `len` bytes needs now (its
    /// record, plus the padding to the ring's end if it would wrap, plus
    /// the next header's slot).
    fn room_needed(&self, len: usize) -> usize {
        let size = REC + len.next_multiple_of(REC);
        let off = (self.tail as usize) & (self.chan.ring_cap - 1);
        let to_end = self.chan.ring_cap - off;
        if to_end < size {
            to_end + size + REC
        } else {
            size + REC
        }
    }

    /// A [`Waiter`] for room for a one-record message of `len` bytes.
    pub(crate) fn waiter(&self, len: usize) -> Waiter {
        Waiter {
            chan: self.chan.clone(),
            dir: self.dir,
            data: false,
            index: self.tail,
            need: self.room_needed(len) as u64,
        }
    }
}

impl Rx {
    /// Take the next whole message if it is there now; [`RingError::Timeout`]
    /// if not (fragments already taken are kept for the next call, as with
    /// a timeout of [`recv`](Self::recv)). Never parks.
    pub(crate) fn try_recv(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<Option<Got>, RingError> {
        if !self.ready()? {
            return Err(RingError::Timeout);
        }
        // Ready: the first wait returns at once; a later one (the next
        // fragment) finds its deadline passed.
        self.recv(out, limit, Some(Instant::now()))
    }

    /// A [`Waiter`] for the next record (or the end).
    pub(crate) fn waiter(&self) -> Waiter {
        Waiter {
            chan: self.chan.clone(),
            dir: self.dir,
            data: true,
            index: self.head,
            need: 0,
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        self.close();
    }
}

// ------------------------------------------------------------ async waits
//
// For the service client's `call_async` on a shared-memory lane (beside
// `Rx::try_recv` above): the receiver's adaptive spin budget, and a
// [`Parker`], a data [`Waiter`] that can be cancelled at once (a dropped
// call future must not leave a helper parked on a lane that is reused).

impl Rx {
    /// Whether a record (or the end) is there now.
    pub(crate) fn is_ready(&mut self) -> Result<bool, RingError> {
        self.ready()
    }

    /// [`is_ready`](Self::is_ready) for round `n` (from 0) of a spin loop:
    /// only the record's stamp, and the end (`closed`, on the producer's
    /// cache line) every 64th round, as a blocking waiter does.
    pub(crate) fn is_ready_spin(&mut self, n: u32) -> Result<bool, RingError> {
        let look = if n % 64 == 63 { Look::Full } else { Look::Fast };
        self.chan.data_ready(self.dir, self.head, look)
    }

    /// How long a waiter of this half spins before parking (`None`: spin
    /// for ever; adaptive, see [`Spin`]).
    pub(crate) fn spin_budget(&self) -> Option<Duration> {
        self.spin.budget()
    }

    /// A wait of this half that lasted `took` ended (adapts the budget).
    pub(crate) fn record_wait(&mut self, took: Duration) {
        self.spin.record(took);
    }

    /// A parker for the next data of this half, from its current position.
    pub(crate) fn parker(&self) -> Parker {
        Parker {
            chan: self.chan.clone(),
            dir: self.dir,
            head: self.head,
        }
    }
}

impl Chan {
    /// Whether the peer is still there (its socket open, not marked dead,
    /// no local interrupt).
    pub(crate) fn alive(&self) -> Result<(), RingError> {
        self.check_alive()
    }
}

/// Blocks a helper thread until the receiving half it was made from
/// ([`Rx::parker`]) has data beyond the position it had then, its ring is
/// closed, the peer goes, or it is cancelled. It parks at once (no spin)
/// the way a receiver does, raising the ring's "sleeping" flag, so the
/// sender's publish wakes it with one `futex_wake`; while the flag is down
/// (the future still spinning) the sender makes no system call.
#[derive(Debug)]
pub(crate) struct Parker {
    chan: Arc<Chan>,
    dir: usize,
    head: u64,
}

impl Parker {
    /// Park until data, the end, or `cancel` (see [`Parker`]). `Err`: the
    /// peer is gone ([`RingError::PeerGone`]) or the channel was
    /// interrupted.
    pub(crate) fn park(&self, cancel: &AtomicBool) -> Result<(), RingError> {
        let ctl = self.chan.ctl(self.dir);
        let mut spin = Spin::new(WaitStrategy::Park);
        self.chan
            .wait(&ctl.data_seq, &ctl.data_sleep, &mut spin, None, |look| {
                Ok(cancel.load(Ordering::Acquire)
                    || self.chan.data_ready(self.dir, self.head, look)?)
            })
    }

    /// End a [`park`](Self::park) early (after setting its `cancel`): it
    /// re-reads its condition at once. Costs a `futex_wake`.
    pub(crate) fn unpark(&self) {
        let ctl = self.chan.ctl(self.dir);
        ctl.data_seq.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake(&ctl.data_seq, u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ring: usize) -> ((Tx, Rx), (Tx, Rx)) {
        let (a, fd) = Chan::create(ring, 8192).unwrap();
        let b = Chan::open(fd.as_fd(), 1 << 20).unwrap();
        (
            split(Arc::new(a), true, WaitStrategy::default()),
            split(Arc::new(b), false, WaitStrategy::default()),
        )
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(10))
    }

    #[test]
    fn small_and_fragmented_messages_arrive_whole_and_in_order() {
        let ((mut tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        let t = std::thread::spawn(move || {
            for i in 0..2000u32 {
                let len = (i as usize * 37) % 5000;
                let body: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                tx.send((i % 7) as u8, &[&i.to_le_bytes(), &body]).unwrap();
            }
        });
        let mut out = Vec::new();
        for i in 0..2000u32 {
            let got = rx.recv(&mut out, 1 << 20, soon()).unwrap().unwrap();
            assert_eq!(got.tag, (i % 7) as u8);
            assert_eq!(&out[..4], &i.to_le_bytes());
            let len = (i as usize * 37) % 5000;
            assert_eq!(out.len(), 4 + len);
            assert!(out[4..]
                .iter()
                .enumerate()
                .all(|(j, b)| *b == (i as usize + j) as u8));
        }
        t.join().unwrap();
        // The sender's drop closes the ring: end-of-stream.
        assert!(rx.recv(&mut out, 1 << 20, soon()).unwrap().is_none());
    }

    #[test]
    fn recv_times_out_and_keeps_nothing_half_taken() {
        let ((_tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        let mut out = Vec::new();
        let e = rx
            .recv(
                &mut out,
                1024,
                Some(Instant::now() + Duration::from_millis(20)),
            )
            .unwrap_err();
        assert!(matches!(e, RingError::Timeout), "{e}");
    }

    #[test]
    fn garbage_indices_and_headers_are_corrupt_not_a_crash() {
        let ((mut tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        let chan = tx.chan().clone();
        let mut out = Vec::new();
        // A tail far beyond the ring (seen on the waiter's slow path).
        chan.ctl(0).tail.store(1 << 40, Ordering::SeqCst);
        assert!(matches!(
            rx.recv(&mut out, 1 << 20, soon()),
            Err(RingError::Corrupt(_))
        ));
        // A tail that lags one record behind what was taken is fine (the
        // producer stores it after the stamp): no error, just nothing there.
        tx.send(1, &[b"first"]).unwrap();
        rx.recv(&mut out, 1 << 20, soon()).unwrap().unwrap();
        chan.ctl(0).tail.store(0, Ordering::SeqCst);
        rx.chan().check_tail(0, 32).unwrap();
        let e = rx
            .recv(
                &mut out,
                1 << 20,
                Some(Instant::now() + Duration::from_millis(20)),
            )
            .unwrap_err();
        assert!(matches!(e, RingError::Timeout), "{e}");
        // A tail ahead of a record that was never published.
        chan.ctl(0).tail.store(48, Ordering::SeqCst);
        let e = rx.recv(&mut out, 1 << 20, soon()).unwrap_err();
        assert!(e.to_string().contains("never published"), "{e}");
        // A published record whose length runs past the ring's end.
        chan.ctl(0).tail.store(32, Ordering::SeqCst);
        tx.send(1, &[b"hello"]).unwrap();
        // SAFETY: test-only write of the `len` field (bytes 4..8) of the
        // record header at ring 0's position 32.
        unsafe {
            chan.ring_ptr(0)
                .add(32 + 4)
                .cast::<u32>()
                .write_unaligned(60_000u32.to_le())
        };
        assert!(matches!(
            rx.recv(&mut out, 1 << 20, soon()),
            Err(RingError::Corrupt(_))
        ));
        // A head that goes backwards or past the tail breaks the sender.
        chan.ctl(0).head.store(1 << 33, Ordering::SeqCst);
        // (The sender reads it once its cached copy shows no room.)
        let mut result = Ok(());
        for _ in 0..16 {
            result = tx.send(1, &[&[0u8; 1000]]);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(RingError::Corrupt(_))), "{result:?}");
    }

    /// A raw record header for ring position `at` (stamped for it).
    fn header_bytes(at: u64, len: u32, flags: u8, tag: u8, total: u64) -> [u8; REC] {
        let mut h = [0u8; REC];
        h[..4].copy_from_slice(&stamp(at).to_le_bytes());
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h[8] = flags;
        h[9] = tag;
        h[10..].copy_from_slice(&total.to_le_bytes()[..6]);
        h
    }

    /// Write one raw, stamped record header at ring 0's position `at`
    /// (first lap) and publish `tail`, as a hostile producer would.
    fn forge(chan: &Chan, at: usize, len: u32, flags: u8, total: u64, tail: u64) {
        let h = header_bytes(at as u64, len, flags, 0, total);
        // SAFETY: test-only write of 16 bytes inside ring 0 (at + 16 ≤ cap).
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), chan.ring_ptr(0).add(at), REC) };
        chan.ctl(0).tail.store(tail, Ordering::SeqCst);
    }

    #[test]
    fn old_payload_that_looks_like_a_later_header_is_never_taken() {
        let ((mut tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        let mut out = Vec::new();
        // Message A (record at 0, payload at 16..1040): every 16-byte slot
        // of its payload holds the header an honest producer would write
        // there one lap later.
        let mut a = Vec::new();
        for k in 0..64u64 {
            a.extend_from_slice(&header_bytes(4096 + 16 + 16 * k, 0, F_FIRST | F_LAST, 9, 0));
        }
        tx.send(1, &[&a]).unwrap();
        assert_eq!(rx.recv(&mut out, 1 << 20, soon()).unwrap().unwrap().tag, 1);
        assert_eq!(out, a);
        // Two laps of 48-byte messages, one at a time: after each, nothing
        // more is there (no stale slot is taken for the next header).
        for i in 0..160u32 {
            let m = [i as u8; 48];
            tx.send(2, &[&m]).unwrap();
            assert_eq!(rx.recv(&mut out, 1 << 20, soon()).unwrap().unwrap().tag, 2);
            assert_eq!(out, m, "message {i}");
            let e = rx.try_recv(&mut out, 1 << 20).unwrap_err();
            assert!(matches!(e, RingError::Timeout), "after message {i}: {e}");
        }
    }

    #[test]
    fn endless_empty_fragments_and_huge_padding_are_corrupt_not_a_hang() {
        let ((tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        let chan = tx.chan().clone();
        let mut out = Vec::new();
        // A first fragment, then empty middle fragments: would never end.
        forge(&chan, 0, 0, F_FIRST, 5, 16);
        let soon = Some(Instant::now() + Duration::from_millis(200));
        forge(&chan, 16, 0, 0, 5, 32);
        assert!(matches!(
            rx.recv(&mut out, 64, soon),
            Err(RingError::Corrupt(_))
        ));
        // Padding is only ever shorter than the largest record.
        let ((tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        forge(tx.chan(), 0, 4096 - 16, F_PAD, 0, 4096);
        assert!(matches!(
            rx.recv(&mut out, 64, soon),
            Err(RingError::Corrupt(_))
        ));
    }

    /// The ring fuzz target's property without libFuzzer: random writes
    /// anywhere in the shared object (raw bytes, stamped headers with
    /// random fields, control words) between honest sends and receives
    /// never panic and never wait past a deadline of "now"; every error is
    /// one of the ring's.
    #[test]
    fn random_scribbles_are_errors_never_a_panic_or_a_hang() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        for _ in 0..300 {
            let ((mut tx_a, mut rx_a), (mut tx_b, mut rx_b)) = pair(4096);
            let chan = tx_a.chan().clone();
            let size = HEADER + 2 * chan.ring_cap + 2 * chan.loan_cap;
            for _ in 0..48 {
                let r = next();
                let now = Some(Instant::now());
                let limit = (r >> 8) as usize % 3000;
                let len = (r >> 20) as usize % 1500;
                let got = match r % 8 {
                    0 => {
                        let at = (r >> 8) as usize % size;
                        let n = ((r >> 40) as usize % 24).min(size - at);
                        let bytes = next().to_le_bytes().repeat(3);
                        // SAFETY: test-only write of n ≤ 24 bytes inside
                        // the mapping (at + n ≤ size), as a hostile peer.
                        unsafe {
                            std::ptr::copy_nonoverlapping(bytes.as_ptr(), chan.map.ptr().add(at), n)
                        };
                        Ok(None)
                    }
                    1 => {
                        let dir = (r >> 8) as usize & 1;
                        let pos = ((r >> 9) % 256) * 16;
                        let lap = (r >> 17) % 3;
                        let w = next();
                        let h = header_bytes(
                            lap * 4096 + pos,
                            (w % 5000) as u32,
                            (w >> 16) as u8 & 7,
                            (w >> 24) as u8,
                            (w >> 32) % 6000,
                        );
                        // SAFETY: test-only write of one 16-byte header
                        // inside ring `dir` (pos + 16 ≤ 4096).
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                h.as_ptr(),
                                chan.ring_ptr(dir).add(pos as usize),
                                REC,
                            )
                        };
                        Ok(None)
                    }
                    2 => {
                        let c = chan.ctl((r >> 8) as usize & 1);
                        let v = next() % 20_000;
                        match (r >> 9) % 3 {
                            0 => c.tail.store(v, Ordering::SeqCst),
                            1 => c.head.store(v, Ordering::SeqCst),
                            _ => c.closed.store(v as u32 & 1, Ordering::SeqCst),
                        }
                        Ok(None)
                    }
                    3 => tx_a.send_until(1, &[&vec![7u8; len]], now).map(|_| None),
                    4 => tx_b.send_until(2, &[&vec![9u8; len]], now).map(|_| None),
                    5 => rx_b
                        .recv(&mut out, limit, now)
                        .map(|g| g.map(|_| out.len())),
                    6 => rx_a
                        .recv(&mut out, limit, now)
                        .map(|g| g.map(|_| out.len())),
                    _ => rx_a.try_recv(&mut out, limit).map(|g| g.map(|_| out.len())),
                };
                if let Ok(Some(n)) = got {
                    assert!(n <= limit, "a message of {n} bytes over the limit {limit}");
                }
            }
        }
    }

    #[test]
    fn a_send_into_a_full_ring_gives_up_at_its_deadline() {
        let ((mut tx, _rx_a), (_tx_b, _rx)) = pair(4096);
        let soon = Some(Instant::now() + Duration::from_millis(50));
        let mut r = Ok(());
        for _ in 0..16 {
            r = tx.send_until(1, &[&[1u8; 900]], soon);
            if r.is_err() {
                break;
            }
        }
        assert!(matches!(r, Err(RingError::Timeout)), "{r:?}");
    }

    #[test]
    fn open_rejects_unsealed_and_mislabelled_objects() {
        let plain = sys::shm::memfd(8192 + 4096).unwrap();
        assert!(Chan::open(plain.as_fd(), 1 << 20)
            .unwrap_err()
            .contains("sealed"));
        let (a, fd) = Chan::create(4096, 0).unwrap();
        // SAFETY: test-only write of a wrong magic byte into the header.
        unsafe { a.map.ptr().write(b'X') };
        assert!(Chan::open(fd.as_fd(), 1 << 20)
            .unwrap_err()
            .contains("magic"));
        // A version-1 peer (it polls `tail`, not the records) is refused.
        let (a, fd) = Chan::create(4096, 0).unwrap();
        // SAFETY: test-only write of the version field (bytes 8..12).
        unsafe {
            a.map
                .ptr()
                .add(8)
                .cast::<u32>()
                .write_unaligned(1u32.to_le())
        };
        let e = Chan::open(fd.as_fd(), 1 << 20).unwrap_err();
        assert!(e.contains("version 1"), "{e}");
        let (_b, fd) = Chan::create(4096, 1 << 20).unwrap();
        assert!(Chan::open(fd.as_fd(), 4096).unwrap_err().contains("loan"));
    }

    #[test]
    fn a_parked_waiter_is_woken_and_spin_adapts() {
        let ((mut tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        rx.spin = Spin::new(WaitStrategy::Park);
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            rx.recv(&mut out, 64, soon()).unwrap().unwrap();
            out
        });
        // Whether or not the receiver parked yet, it must get the message.
        tx.send(3, &[b"wake"]).unwrap();
        assert_eq!(t.join().unwrap(), b"wake");
        let mut s = Spin::new(WaitStrategy::SpinThenPark(Duration::from_micros(64)));
        s.record(Duration::from_secs(1));
        assert_eq!(s.budget(), Some(Duration::from_micros(32)));
        s.record(Duration::from_micros(10));
        assert_eq!(s.budget(), Some(Duration::from_micros(64)));
    }

    #[test]
    fn interrupt_ends_a_wait() {
        let ((_tx, _rx_a), (_tx_b, mut rx)) = pair(4096);
        let chan = rx.chan().clone();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            rx.recv(&mut out, 64, soon())
        });
        chan.interrupt();
        assert!(matches!(t.join().unwrap(), Err(RingError::Interrupted)));
    }

    /// Not a test of speed (nothing is asserted): prints a thread-to-thread
    /// round trip for development. `cargo test --release -p ipckit --lib
    /// ring::tests::round_trip_figure -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn round_trip_figure() {
        let ((mut tx_a, mut rx_a), (mut tx_b, mut rx_b)) = pair(1 << 18);
        let n = 200_000;
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            while rx_b.recv(&mut out, 1 << 20, soon()).unwrap().is_some() {
                tx_b.send(1, &[&out]).unwrap();
            }
        });
        let msg = [7u8; 64];
        let mut out = Vec::new();
        let start = Instant::now();
        for _ in 0..n {
            tx_a.send(1, &[&msg]).unwrap();
            rx_a.recv(&mut out, 1 << 20, soon()).unwrap().unwrap();
        }
        let per = start.elapsed() / n;
        drop(tx_a);
        t.join().unwrap();
        println!("64-byte round trip between threads: {per:?}");
    }
}
