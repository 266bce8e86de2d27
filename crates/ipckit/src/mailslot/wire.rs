//! The mailslot wire formats (see `docs/PROTOCOL.md`, "Mailslots").

use crate::error::Result;

/// Magic bytes opening the reader's hello.
pub(crate) const HELLO_MAGIC: &[u8; 8] = b"IPCKSLOT";
/// Protocol version this build speaks.
pub(crate) const VERSION: u8 = 1;
use crate::conn::hello::Hello;
/// Size of the hello, a write header and an acknowledgement.
pub(crate) use crate::conn::hello::HELLO_LEN;
/// Size of a write header.
pub(crate) const WRITE_LEN: usize = 16;
/// Size of an acknowledgement.
pub(crate) const ACK_LEN: usize = 8;

/// Write header kind: one message follows.
pub(crate) const KIND_WRITE: u8 = 1;
/// `timeout_ms` meaning "wait as long as it takes".
pub(crate) const FOREVER: u32 = u32::MAX;

/// Ack status: the message is queued.
pub(crate) const ACK_QUEUED: u8 = 0;
/// Ack status: the queue stayed full until the writer's timeout.
pub(crate) const ACK_FULL: u8 = 1;
/// Ack status: the message exceeds the mailslot's `max_message_size`.
pub(crate) const ACK_TOO_LARGE: u8 = 2;
/// Ack status: the reader is closing.
pub(crate) const ACK_CLOSING: u8 = 3;

/// Magic opening a UDP datagram.
pub(crate) const UDP_MAGIC: &[u8; 8] = b"IPCKMSD1";

pub(crate) fn hello(max_message: u32) -> [u8; HELLO_LEN] {
    Hello::ok(HELLO_MAGIC, VERSION, max_message).encode()
}

/// The hello a writer over the server's connection limits gets.
pub(crate) fn hello_refused(max_message: u32, status: u8) -> [u8; HELLO_LEN] {
    Hello::ok(HELLO_MAGIC, VERSION, max_message)
        .with_status(status)
        .encode()
}

/// Decode a hello: the mailslot's `max_message_size` (0 = unlimited), or
/// the refusal it carries.
pub(crate) fn parse_hello(b: &[u8; HELLO_LEN], name: &str) -> Result<u32> {
    let h = Hello::decode(b, HELLO_MAGIC, VERSION, "mailslot", name)?;
    if let Some(e) = h.refusal("mailslot", name) {
        return Err(e);
    }
    Ok(h.max)
}

pub(crate) fn write_header(len: u32, timeout_ms: u32) -> [u8; WRITE_LEN] {
    let mut b = [0u8; WRITE_LEN];
    b[0] = KIND_WRITE;
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[8..12].copy_from_slice(&timeout_ms.to_le_bytes());
    b
}

/// Decode a write header: `(len, timeout_ms)`; `None` if malformed.
pub(crate) fn parse_write(b: &[u8; WRITE_LEN]) -> Option<(u32, u32)> {
    if b[0] != KIND_WRITE || b[1..4] != [0, 0, 0] || b[12..16] != [0, 0, 0, 0] {
        return None;
    }
    Some((
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
    ))
}

pub(crate) fn ack(status: u8, count: u32) -> [u8; ACK_LEN] {
    let mut b = [0u8; ACK_LEN];
    b[0] = status;
    b[4..8].copy_from_slice(&count.to_le_bytes());
    b
}

/// Encode a UDP datagram: magic, name length (u16), name, payload.
pub(crate) fn datagram(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(10 + name.len() + payload.len());
    d.extend_from_slice(UDP_MAGIC);
    d.extend_from_slice(&(name.len() as u16).to_le_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(payload);
    d
}

/// Decode a UDP datagram into `(name, payload)`; `None` if malformed.
pub(crate) fn parse_datagram(d: &[u8]) -> Option<(&str, &[u8])> {
    let rest = d.strip_prefix(UDP_MAGIC.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return None;
    }
    let (name, payload) = rest.split_at(len);
    Some((std::str::from_utf8(name).ok()?, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_hello(&hello(424), "x").unwrap(), 424);
        let mut h = hello(1);
        h[0] = b'X';
        assert_eq!(parse_hello(&h, "x").unwrap_err().kind(), ErrorKind::Decode);
        assert_eq!(parse_write(&write_header(5, 7)), Some((5, 7)));
        let mut w = write_header(5, 7);
        w[13] = 1;
        assert_eq!(parse_write(&w), None);
        let d = datagram("a/b", b"hi");
        assert_eq!(parse_datagram(&d), Some(("a/b", b"hi".as_slice())));
        assert_eq!(parse_datagram(&d[..11]), None);
        assert_eq!(parse_datagram(b"nonsense"), None);
    }
}
