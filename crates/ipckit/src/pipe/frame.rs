//! The named-pipe wire format (see `docs/PROTOCOL.md`, "Named pipes").
//!
//! On connect the server writes a 16-byte hello; after it, both directions
//! carry frames: an 8-byte header (`kind: u8`, three zero bytes,
//! `len: u32` little-endian) followed by `len` bytes of payload.

use crate::error::{Error, ErrorKind, Result};

/// Magic bytes opening the server hello.
pub(crate) const HELLO_MAGIC: &[u8; 8] = b"IPCKPIPE";
/// Protocol version this build speaks.
pub(crate) const VERSION: u8 = 1;
/// Size of the server hello.
pub(crate) const HELLO_LEN: usize = 16;
/// Size of a frame header.
pub(crate) const HEADER_LEN: usize = 8;

/// Hello status: the connection is accepted.
pub(crate) const STATUS_OK: u8 = 0;
/// Hello status: every instance is in use.
pub(crate) const STATUS_BUSY: u8 = 1;
/// Hello status: this client's uid is not allowed.
pub(crate) const STATUS_DENIED: u8 = 2;

/// A message (message mode) or a chunk of the stream (byte mode).
pub(crate) const KIND_DATA: u8 = 1;
/// A file descriptor, passed with `SCM_RIGHTS` on the header's bytes;
/// `len` is 0. Local connections only. Other kinds are reserved and refused.
pub(crate) const KIND_FD: u8 = 2;

/// The client's answer to a shared-memory offer (sent only when the hello
/// offered it, as the client's first frame, `len` 0): with a `memfd`
/// attached (`SCM_RIGHTS`) it accepts, without one it declines. Never valid
/// later in the stream.
pub(crate) const KIND_SHM: u8 = 3;

/// Bit of the hello's mode byte: the server offers the shared-memory
/// transport (Unix socket, message mode, not opted out).
pub(crate) const HELLO_SHM_OFFER: u8 = 0x80;

/// Record tags on the shared-memory rings: a message.
pub(crate) const TAG_DATA: u8 = 1;
/// Record tag: a file descriptor follows on the socket (a kind-2 frame).
pub(crate) const TAG_FD: u8 = 2;

/// What the server tells a client on connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub status: u8,
    pub mode: u8,
    /// The server offers shared memory (bit 7 of the mode byte).
    pub shm: bool,
    pub direction: u8,
    pub max_message: u32,
}

impl Hello {
    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8] = VERSION;
        b[9] = self.status;
        b[10] = self.mode | if self.shm { HELLO_SHM_OFFER } else { 0 };
        b[11] = self.direction;
        b[12..16].copy_from_slice(&self.max_message.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; HELLO_LEN], name: &str) -> Result<Hello> {
        if &b[..8] != HELLO_MAGIC {
            return Err(Error::new(
                ErrorKind::Decode,
                "the endpoint did not answer with an ipckit pipe hello; is it an ipckit pipe server?",
            )
            .with_name(name));
        }
        if b[8] != VERSION {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "the server speaks pipe protocol version {}, this client version {VERSION}; upgrade the older side",
                    b[8]
                ),
            )
            .with_name(name));
        }
        Ok(Hello {
            status: b[9],
            mode: b[10] & !HELLO_SHM_OFFER,
            shm: b[10] & HELLO_SHM_OFFER != 0,
            direction: b[11],
            max_message: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// Encode a frame header.
pub(crate) fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind;
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h
}

/// Decode and check a frame header: `(kind, len)`.
pub(crate) fn parse_header(h: &[u8; HEADER_LEN], name: &str) -> Result<(u8, u32)> {
    let kind = h[0];
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if !(kind == KIND_DATA || (kind == KIND_FD && len == 0)) || h[1..4] != [0, 0, 0] {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "malformed frame header {h:02x?} from the peer; the connection is closed, reconnect"
            ),
        )
        .with_name(name));
    }
    Ok((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let h = Hello {
            status: STATUS_BUSY,
            mode: 1,
            shm: true,
            direction: 2,
            max_message: 64 << 20,
        };
        assert_eq!(Hello::decode(&h.encode(), "x").unwrap(), h);
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(
            Hello::decode(&bad, "x").unwrap_err().kind(),
            ErrorKind::Decode
        );
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(parse_header(&header(KIND_DATA, 5), "x").unwrap(), (1, 5));
        assert!(parse_header(&header(9, 0), "x").is_err());
        let mut h = header(KIND_DATA, 1);
        h[2] = 1;
        assert!(parse_header(&h, "x").is_err());
    }
}
