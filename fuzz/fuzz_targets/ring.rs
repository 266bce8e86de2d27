//! The shared-memory ring channel against a hostile peer (through the
//! `ipckit::fuzzing` hook: the ring is internal). Two sides map one object;
//! the fuzzer interleaves honest sends and receives with raw writes
//! anywhere in the shared pages (indices, control words, record headers,
//! payload). Garbage must give an error (`RingError::Corrupt`, a timeout,
//! end-of-stream), never a panic, an out-of-bounds access or a hang; and
//! as long as nothing was scribbled, every message arrives whole and in
//! order (a differential check against a plain queue).
//!
//! Also: the checks a server runs on a ring object a client hands it
//! (`Chan::open`: seals, magic, version, capacities, size), on a sealed
//! object of the fuzzer's size and header.
#![no_main]

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;

use ipckit::fuzzing::{open_ring, sealed_object, RingPeer};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

// The documented layout (`docs/PROTOCOL.md`, "Shared-memory transport").
const HEADER: u64 = 4096;
const CTL: u64 = 256;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Field {
    Tail,
    Closed,
    Head,
    DataSeq,
    DataSleep,
    SpaceSeq,
    SpaceSleep,
}

impl Field {
    /// Offset in a control block, and width.
    fn place(self) -> (u64, usize) {
        match self {
            Field::Tail => (0, 8),
            Field::Closed => (8, 4),
            Field::Head => (64, 8),
            Field::DataSeq => (128, 4),
            Field::DataSleep => (132, 4),
            Field::SpaceSeq => (192, 4),
            Field::SpaceSleep => (196, 4),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes anywhere in the object.
    Poke { at: u32, bytes: Vec<u8> },
    /// A value into a control-block field of ring `dir`.
    Ctl { dir: bool, field: Field, value: u64 },
    /// A record header (ring version 2: `stamp`, `len`, `flags`, `tag`,
    /// `total` u48) at a ring position; `stamp` `None` is the right stamp
    /// for that position in lap `lap` (what the consumer waits for there).
    Record {
        dir: bool,
        at: u16,
        lap: u8,
        stamp: Option<u32>,
        len: u32,
        flags: u8,
        tag: u8,
        total: u64,
    },
    /// Side A (connecting) sends `len` bytes; side B receives with `limit`.
    AToB { tag: u8, len: u16, limit: u16 },
    /// Side B sends; side A receives.
    BToA { tag: u8, len: u16, limit: u16 },
    /// A receives without B sending (what is there).
    ARecv { limit: u16 },
    /// B closes its ring (A then sees end-of-stream).
    BClose,
    /// Copy a loan range out of a segment.
    Loan {
        segment: bool,
        offset: u64,
        len: u64,
    },
    /// A checks whether B drained ring 0.
    ADrained,
}

#[derive(Arbitrary, Debug)]
struct OpenCase {
    pages: u16,
    header: [u8; 32],
    max_loan: u32,
}

#[derive(Arbitrary, Debug)]
struct Input {
    ring_log: u8,
    loan_pages: u8,
    open: Option<OpenCase>,
    ops: Vec<Op>,
}

fn message(tag: u8, len: usize, n: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(n) as u8 ^ tag)
        .collect()
}

/// One direction's expectations while nothing was scribbled.
#[derive(Default)]
struct Expect {
    queue: VecDeque<(u8, Vec<u8>)>,
    closed: bool,
    /// Raw writes or an abandoned send: no more exact expectations.
    tainted: bool,
}

impl Expect {
    fn check(&mut self, got: Result<Option<(u8, &[u8])>, String>, limit: usize) {
        if self.tainted {
            return;
        }
        match got {
            Ok(Some((tag, m))) => {
                let want = self.queue.pop_front().expect("a message nobody sent");
                assert_eq!((tag, m), (want.0, want.1.as_slice()), "message mangled");
            }
            Ok(None) => assert!(
                self.closed && self.queue.is_empty(),
                "end-of-stream with {} messages unread",
                self.queue.len()
            ),
            // A receive that does not wait takes one record at most: a
            // fragmented message (or one after padding) takes several.
            Err(e) if e.starts_with("timed out") => {}
            Err(e) => {
                // Honest bytes are corrupt only when over the limit.
                let front = self.queue.front().map(|m| m.1.len());
                assert!(front.is_some_and(|n| n > limit), "honest ring corrupt: {e}");
                self.tainted = true;
            }
        }
    }
}

fn open_case(c: &OpenCase) {
    let size = u64::from(c.pages % 64) * 4096 + u64::from(c.pages >> 15) * 8;
    let Ok(fd) = sealed_object(size) else { return };
    let file = File::from(fd);
    let _ = file.write_all_at(&c.header[..(size.min(32) as usize)], 0);
    let fd = std::os::fd::AsFd::as_fd(&file);
    if let Ok((ring, loan)) = open_ring(fd, c.max_loan as usize) {
        assert!(ring.is_power_of_two() && ring >= 4096);
        assert_eq!(4096 + 2 * ring as u64 + 2 * loan as u64, size);
        // A checked object is usable from both sides without a crash.
        if let Ok(mut b) = RingPeer::attach(fd, c.max_loan as usize, false) {
            let _ = b.recv(1 << 16);
            let _ = b.send(1, b"x");
            let _ = b.loan(1, 0, loan as u64);
        }
    }
}

fuzz_target!(|input: Input| {
    if let Some(c) = &input.open {
        open_case(c);
    }
    let ring = 4096usize << (input.ring_log % 3);
    let loan = usize::from(input.loan_pages % 4) * 4096;
    let mut a = RingPeer::new(ring, loan, true).expect("create a ring");
    let mut b = RingPeer::attach(a.object(), loan, false).expect("attach to a fresh ring");
    let ring = a.ring_cap() as u64;
    let (mut a_to_b, mut b_to_a) = (Expect::default(), Expect::default());
    let mut n = 0u64;
    for op in input.ops.iter().take(64) {
        n += 1;
        match op {
            Op::Poke { at, bytes } => {
                a.poke(u64::from(*at) % a.size(), bytes);
                a_to_b.tainted = true;
                b_to_a.tainted = true;
            }
            Op::Ctl { dir, field, value } => {
                let (off, width) = field.place();
                let at = CTL + u64::from(*dir) * CTL + off;
                b.poke(at, &value.to_le_bytes()[..width]);
                a_to_b.tainted = true;
                b_to_a.tainted = true;
            }
            Op::Record {
                dir,
                at,
                lap,
                stamp,
                len,
                flags,
                tag,
                total,
            } => {
                let pos = (u64::from(*at) * 16) % ring;
                let stamp = stamp.unwrap_or(((u64::from(*lap) * ring + pos) / 16 + 1) as u32);
                let mut h = [0u8; 16];
                h[..4].copy_from_slice(&stamp.to_le_bytes());
                h[4..8].copy_from_slice(&len.to_le_bytes());
                h[8] = *flags;
                h[9] = *tag;
                h[10..].copy_from_slice(&total.to_le_bytes()[..6]);
                a.poke(HEADER + u64::from(*dir) * ring + pos, &h);
                a_to_b.tainted = true;
                b_to_a.tainted = true;
            }
            Op::AToB { tag, len, limit } => {
                let m = message(*tag, usize::from(*len), n);
                match a.send(*tag, &m) {
                    Ok(()) => a_to_b.queue.push_back((*tag, m)),
                    Err(_) => a_to_b.tainted = true,
                }
                let limit = usize::from(*limit);
                let got = b.recv(limit);
                a_to_b.check(got, limit);
            }
            Op::BToA { tag, len, limit } => {
                let m = message(*tag, usize::from(*len), n);
                match b.send(*tag, &m) {
                    Ok(()) => b_to_a.queue.push_back((*tag, m)),
                    Err(_) => b_to_a.tainted = true,
                }
                let limit = usize::from(*limit);
                let got = a.recv(limit);
                b_to_a.check(got, limit);
            }
            Op::ARecv { limit } => {
                let limit = usize::from(*limit);
                let got = a.recv(limit);
                b_to_a.check(got, limit);
            }
            Op::BClose => {
                b.close();
                b_to_a.closed = true;
            }
            Op::Loan {
                segment,
                offset,
                len,
            } => {
                let r = a.loan(usize::from(*segment), *offset, *len);
                let inside = offset
                    .checked_add(*len)
                    .is_some_and(|e| e <= a.loan_cap() as u64);
                assert_eq!(r.is_ok(), inside, "loan {offset}+{len}: {r:?}");
                if let Ok(v) = r {
                    assert_eq!(v.len() as u64, *len);
                }
            }
            Op::ADrained => {
                let _ = a.drained();
            }
        }
    }
    // Unless something was scribbled, everything sent arrives.
    for (rx, expect) in [(&mut b, &mut a_to_b), (&mut a, &mut b_to_a)] {
        for _ in 0..256 {
            if expect.tainted || expect.queue.is_empty() {
                break;
            }
            let got = rx.recv(usize::MAX);
            expect.check(got, usize::MAX);
        }
        assert!(
            expect.tainted || expect.queue.is_empty(),
            "{} sent messages never arrived",
            expect.queue.len()
        );
    }
});
