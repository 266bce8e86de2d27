//! The DDE wire format (`docs/PROTOCOL.md`, "DDE"): the common hello with
//! magic `IPCKDDE1`, then frames in both directions, each a fixed 24-byte
//! little-endian header, a UTF-8 name and a body.
//!
//! ```text
//! offset size field
//!      0    1 kind
//!      1    1 code    (link type in ADVISE, error code in ERROR, else 0)
//!      2    2 name_len (u16; at most MAX_NAME)
//!      4    4 format   (u32; a clipboard format id, 0 when not used)
//!      8    8 value    (u64; request id, or skipped count in advise frames)
//!     16    4 body_len (u32)
//!     20    4 reserved (0)
//! ```

pub(crate) const MAGIC: &[u8; 8] = b"IPCKDDE1";
pub(crate) const VERSION: u8 = 1;
/// Length of every frame header.
pub(crate) const LEN: usize = 24;
/// Longest topic or item name, in bytes.
pub(crate) const MAX_NAME: usize = 255;

// Client to server.
pub(crate) const CONNECT: u8 = 1;
pub(crate) const REQUEST: u8 = 2;
pub(crate) const POKE: u8 = 3;
pub(crate) const EXECUTE: u8 = 4;
pub(crate) const ADVISE: u8 = 5;
pub(crate) const UNADVISE: u8 = 6;
pub(crate) const LIST: u8 = 7;

// Server to client.
pub(crate) const REPLY: u8 = 0x81;
pub(crate) const ERROR: u8 = 0x82;
pub(crate) const DATA: u8 = 0x83;
pub(crate) const NOTICE: u8 = 0x84;

// Link types (ADVISE code).
pub(crate) const LINK_HOT: u8 = 1;
pub(crate) const LINK_WARM: u8 = 2;

// Error codes (ERROR code).
pub(crate) const ERR_NOT_FOUND: u8 = 1;
pub(crate) const ERR_TOO_LARGE: u8 = 2;
pub(crate) const ERR_REFUSED: u8 = 3;
pub(crate) const ERR_LIMIT: u8 = 4;
pub(crate) const ERR_INVALID: u8 = 5;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: u8,
    pub code: u8,
    pub name_len: usize,
    pub format: u32,
    pub value: u64,
    pub body_len: usize,
}

impl Header {
    pub(crate) fn new(kind: u8, code: u8, format: u32, value: u64) -> Header {
        Header {
            kind,
            code,
            name_len: 0,
            format,
            value,
            body_len: 0,
        }
    }

    /// Name and body length after the header.
    pub(crate) fn rest(&self) -> usize {
        self.name_len + self.body_len
    }

    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.kind;
        b[1] = self.code;
        b[2..4].copy_from_slice(&(self.name_len as u16).to_le_bytes());
        b[4..8].copy_from_slice(&self.format.to_le_bytes());
        b[8..16].copy_from_slice(&self.value.to_le_bytes());
        b[16..20].copy_from_slice(&(self.body_len as u32).to_le_bytes());
        b
    }

    /// Decode, checking the reserved bytes and the name length; the kind
    /// is checked by the caller (each side accepts its own set).
    pub(crate) fn decode(b: &[u8]) -> Result<Header, String> {
        if b.len() < LEN {
            return Err("short frame header".into());
        }
        if b[20..24] != [0; 4] {
            return Err("it sent a frame header with non-zero reserved bytes".into());
        }
        let name_len = u16::from_le_bytes([b[2], b[3]]) as usize;
        if name_len > MAX_NAME {
            return Err(format!(
                "it sent a name of {name_len} bytes, over the limit of {MAX_NAME}"
            ));
        }
        Ok(Header {
            kind: b[0],
            code: b[1],
            name_len,
            format: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            value: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            body_len: u32::from_le_bytes([b[16], b[17], b[18], b[19]]) as usize,
        })
    }
}

/// A whole frame: header, `name`, `body`.
pub(crate) fn frame(mut h: Header, name: &str, body: &[u8]) -> Vec<u8> {
    h.name_len = name.len();
    h.body_len = body.len();
    let mut b = Vec::with_capacity(LEN + name.len() + body.len());
    b.extend_from_slice(&h.encode());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(body);
    b
}

/// An ERROR frame answering request `id`.
pub(crate) fn error(id: u64, code: u8, text: &str) -> Vec<u8> {
    frame(Header::new(ERROR, code, 0, id), "", text.as_bytes())
}

/// A REPLY frame answering request `id` with `body` in `format`.
pub(crate) fn reply(id: u64, format: u32, body: &[u8]) -> Vec<u8> {
    frame(Header::new(REPLY, 0, format, id), "", body)
}

/// The body of a LIST reply: each topic as a `u16` length and UTF-8.
pub(crate) fn encode_list(names: &[String]) -> Vec<u8> {
    let mut b = Vec::new();
    for n in names {
        b.extend_from_slice(&(n.len() as u16).to_le_bytes());
        b.extend_from_slice(n.as_bytes());
    }
    b
}

/// Decode a LIST reply body; `None` if malformed.
pub(crate) fn decode_list(mut b: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u16::from_le_bytes([*b.first()?, *b.get(1)?]) as usize;
        let s = b.get(2..2 + len)?;
        out.push(String::from_utf8(s.to_vec()).ok()?);
        b = &b[2 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        let f = frame(Header::new(DATA, 0, 13, 7), "price", b"42");
        let h = Header::decode(&f).unwrap();
        assert_eq!((h.kind, h.format, h.value), (DATA, 13, 7));
        assert_eq!((h.name_len, h.body_len), (5, 2));
        assert_eq!(&f[LEN..LEN + 5], b"price");
        let mut bad = f.clone();
        bad[21] = 1;
        assert!(Header::decode(&bad).is_err());
        let mut long = f;
        long[2..4].copy_from_slice(&300u16.to_le_bytes());
        assert!(Header::decode(&long).is_err());
        assert!(Header::decode(&[0u8; 3]).is_err());
    }

    #[test]
    fn lists_round_trip() {
        let l = vec!["a".to_string(), "prices".to_string()];
        assert_eq!(decode_list(&encode_list(&l)).unwrap(), l);
        assert_eq!(decode_list(&[5, 0, b'a']), None);
        assert_eq!(decode_list(&[]).unwrap(), Vec::<String>::new());
    }
}
