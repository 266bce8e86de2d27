//! The named-pipe wire format (see `docs/PROTOCOL.md`, "Named pipes").
//!
//! On connect the server writes the 16-byte hello of
//! [`crate::conn::hello`] (magic [`HELLO_MAGIC`], version [`VERSION`], the
//! mode and shared-memory offer in the flags byte, the direction in the
//! extra byte, `max_message` as the size limit); after it, both directions
//! carry frames: an 8-byte header (`kind: u8`, three zero bytes, `len: u32`
//! little-endian) followed by `len` bytes of payload.

use crate::error::{Error, ErrorKind, Result};

/// Magic bytes opening the server hello.
pub(crate) const HELLO_MAGIC: &[u8; 8] = b"IPCKPIPE";
/// Protocol version this build speaks.
pub(crate) const VERSION: u8 = 1;
/// Size of a frame header.
pub(crate) const HEADER_LEN: usize = 8;

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

/// Bit of the hello's flags byte (the mode byte): the server offers the
/// shared-memory transport (Unix socket, message mode, not opted out).
pub(crate) const HELLO_SHM_OFFER: u8 = 0x80;

/// Record tags on the shared-memory rings: a message.
pub(crate) const TAG_DATA: u8 = 1;
/// Record tag: a file descriptor follows on the socket (a kind-2 frame).
pub(crate) const TAG_FD: u8 = 2;

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
    fn headers_are_checked() {
        assert_eq!(parse_header(&header(KIND_DATA, 5), "x").unwrap(), (1, 5));
        assert!(parse_header(&header(9, 0), "x").is_err());
        let mut h = header(KIND_DATA, 1);
        h[2] = 1;
        assert!(parse_header(&h, "x").is_err());
        // The shared-memory answer is never a valid frame in the stream.
        assert!(parse_header(&header(KIND_SHM, 0), "x").is_err());
    }
}
