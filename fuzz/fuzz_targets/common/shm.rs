//! What a hostile shared-memory peer does to a ring object it shares with
//! a real client or server (`shm_peer`, `shm_client`): honest ring
//! messages carrying hostile frames, and raw writes anywhere in the
//! shared pages.

use ipckit::fuzzing::RingPeer;
use libfuzzer_sys::arbitrary::{self, Arbitrary};

// The documented layout (`docs/PROTOCOL.md`, "Shared-memory transport").
pub const HEADER: u64 = 4096;
pub const CTL: u64 = 256;

/// Service frame kinds (`docs/PROTOCOL.md`, "Services").
pub const KIND_LANE: u8 = 4;
pub const KIND_LOAN_CALL: u8 = 5;
pub const KIND_LOAN_REPLY: u8 = 6;

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Method {
    Echo,
    Add,
    Sum,
    Describe,
    Unknown,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Echo => "echo",
            Method::Add => "add",
            Method::Sum => "sum",
            Method::Describe => "ipckit.describe",
            Method::Unknown => "nope",
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Raw bytes anywhere in the object.
    Poke { at: u32, bytes: Vec<u8> },
    /// A value into a control-block word (`field`: byte offset in it).
    Ctl { dir: bool, field: u8, value: u64 },
    /// A record header (ring version 2) at a ring position; `stamp`
    /// `None` is the right stamp for that position in lap `lap`.
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
    /// An honest ring message carrying these bytes.
    Msg { tag: u8, bytes: Vec<u8> },
    /// A service frame built from these fields, as one ring message.
    Frame {
        kind: u8,
        enc: u8,
        id: u64,
        method: Method,
        body: Vec<u8>,
    },
    /// A loan frame for this range: a call (with `method`) from a client,
    /// a reply from a server.
    Loan {
        id: u64,
        method: Method,
        offset: u64,
        len: u64,
    },
    /// Bytes in a loan segment.
    LoanBytes {
        segment: bool,
        at: u16,
        bytes: Vec<u8>,
    },
}

/// A service frame: kind, encoding, method length, 4 zero bytes, call id,
/// body length, method, body.
pub fn frame(kind: u8, enc: u8, id: u64, method: &str, body: &[u8]) -> Vec<u8> {
    let mut f = vec![kind, enc];
    f.extend_from_slice(&(method.len() as u16).to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(&(body.len() as u64).to_le_bytes());
    f.extend_from_slice(method.as_bytes());
    f.extend_from_slice(body);
    f
}

/// Do `ops` (at most 32) to the object shared through `peer`, playing the
/// client (`as_client`) or the server. Sends that find the ring full are
/// dropped: nothing waits.
pub fn apply(peer: &mut RingPeer, ops: &[Op], as_client: bool) {
    let ring = peer.ring_cap() as u64;
    let loans = HEADER + 2 * ring;
    for op in ops.iter().take(32) {
        match op {
            Op::Poke { at, bytes } => peer.poke(u64::from(*at) % peer.size(), bytes),
            Op::Ctl { dir, field, value } => {
                let at = CTL + u64::from(*dir) * CTL + u64::from(*field % 200);
                peer.poke(at, &value.to_le_bytes());
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
                peer.poke(HEADER + u64::from(*dir) * ring + pos, &h);
            }
            Op::Msg { tag, bytes } => {
                let _ = peer.send(*tag, bytes);
            }
            Op::Frame {
                kind,
                enc,
                id,
                method,
                body,
            } => {
                let _ = peer.send(0, &frame(*kind, *enc, *id, method.name(), body));
            }
            Op::Loan {
                id,
                method,
                offset,
                len,
            } => {
                let mut range = offset.to_le_bytes().to_vec();
                range.extend_from_slice(&len.to_le_bytes());
                let f = if as_client {
                    frame(KIND_LOAN_CALL, 0, *id, method.name(), &range)
                } else {
                    frame(KIND_LOAN_REPLY, 0, *id, "", &range)
                };
                let _ = peer.send(0, &f);
            }
            Op::LoanBytes { segment, at, bytes } => {
                let cap = peer.loan_cap() as u64;
                if cap > 0 {
                    let base = loans + u64::from(*segment) * cap;
                    peer.poke(base + u64::from(*at) % cap, bytes);
                }
            }
        }
    }
}
