//! The service wire format (see `docs/PROTOCOL.md`, "Services").
//!
//! On connect the server writes a 16-byte hello. After it, both directions
//! carry frames: a 24-byte header, then the method name (calls only), then
//! the body. Every length is checked against its limit *before* anything is
//! allocated for it.

use std::io;

use super::Encoding;
use crate::conn::stream::SocketReader;
use crate::sys::net::SocketRef;

/// Magic bytes opening the server hello.
pub(crate) const HELLO_MAGIC: &[u8; 8] = b"IPCKSERV";
/// Protocol version this build speaks.
pub(crate) const VERSION: u8 = 1;
/// Size of the server hello.
pub(crate) const HELLO_LEN: usize = 16;
/// Size of a frame header.
pub(crate) const HEADER_LEN: usize = 24;
/// Longest method name, in bytes.
pub(crate) const MAX_METHOD: usize = 255;

/// Client to server: invoke a method.
pub(crate) const KIND_CALL: u8 = 1;
/// Server to client: the call succeeded; the body is the result.
pub(crate) const KIND_REPLY: u8 = 2;
/// Server to client: the call failed; the body is JSON `{"code","message"}`.
pub(crate) const KIND_ERROR: u8 = 3;
/// Client to server, first frame of a fresh connection, with a ring memfd
/// attached (`SCM_RIGHTS`): make this connection a shared-memory lane.
/// Server to client: the lane is accepted. No method, no body.
pub(crate) const KIND_LANE: u8 = 4;
/// Client to server on a lane: invoke a method whose request lies in loan
/// segment 0; the body is 16 bytes, `offset` u64 and `len` u64.
pub(crate) const KIND_LOAN_CALL: u8 = 5;
/// Server to client on a lane: the result lies in loan segment 1; the body
/// is 16 bytes, `offset` u64 and `len` u64.
pub(crate) const KIND_LOAN_REPLY: u8 = 6;

/// Hello byte 10, bit 0: the server accepts shared-memory lanes.
pub(crate) const HELLO_SHM: u8 = 1;

/// What the server announces in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub max_frame: usize,
    pub shm: bool,
}

/// Encode the server hello announcing `max_frame`.
pub(crate) fn hello(max_frame: usize, shm: bool) -> [u8; HELLO_LEN] {
    let mut b = [0u8; HELLO_LEN];
    b[..8].copy_from_slice(HELLO_MAGIC);
    b[8] = VERSION;
    // b[9] status 0 = ok; b[10] feature bits; b[11] reserved zero.
    if shm {
        b[10] = HELLO_SHM;
    }
    let max = u32::try_from(max_frame).unwrap_or(u32::MAX);
    b[12..16].copy_from_slice(&max.to_le_bytes());
    b
}

/// The hello a client over the server's connection limits gets (status
/// busy), before the connection closes.
pub(crate) fn hello_refused(max_frame: usize, status: u8) -> [u8; HELLO_LEN] {
    let mut b = hello(max_frame, false);
    b[9] = status;
    b
}

/// Check a server hello; returns what it announces, or the error a bad
/// or refusing hello means. Unknown feature bits are ignored.
pub(crate) fn parse_hello(b: &[u8; HELLO_LEN], name: &str) -> crate::Result<Hello> {
    let h = crate::conn::hello::Hello::decode(b, HELLO_MAGIC, VERSION, "service", name)?;
    if let Some(e) = h.refusal("service", name) {
        return Err(e);
    }
    Ok(Hello {
        max_frame: h.max as usize,
        shm: h.flags & HELLO_SHM != 0,
    })
}

/// One decoded frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub kind: u8,
    pub encoding: Encoding,
    pub call_id: u64,
    pub body: Vec<u8>,
}

/// Append a whole frame (header, method, body) to `out`.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    kind: u8,
    encoding: Encoding,
    call_id: u64,
    method: &str,
    body: &[u8],
) {
    out.reserve(HEADER_LEN + method.len() + body.len());
    encode_head(out, kind, encoding, call_id, method, body.len() as u64);
    out.extend_from_slice(body);
}

/// Append a frame's header and method name, announcing `body_len` bytes of
/// body (which the caller sends separately).
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    kind: u8,
    encoding: Encoding,
    call_id: u64,
    method: &str,
    body_len: u64,
) {
    debug_assert!(method.len() <= MAX_METHOD);
    out.push(kind);
    out.push(encoding.code());
    out.extend_from_slice(&(method.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&call_id.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(method.as_bytes());
}

/// A frame parsed in place (one ring message is exactly one frame).
#[derive(Debug)]
pub(crate) struct FrameRef<'a> {
    pub kind: u8,
    pub encoding: Encoding,
    pub call_id: u64,
    pub method: &'a str,
    pub body: &'a [u8],
}

/// Parse a whole frame held in `msg`, checking the header as
/// [`parse_header`] does and that the lengths add up to the message's.
pub(crate) fn parse_frame<'a>(
    msg: &'a [u8],
    allowed: &[u8],
    limit: usize,
) -> Result<FrameRef<'a>, WireError> {
    let Some(h) = msg.get(..HEADER_LEN) else {
        return Err(WireError::Truncated(format!(
            "a message of {} bytes is shorter than a frame header",
            msg.len()
        )));
    };
    let hdr = parse_header(h.try_into().expect("24 bytes"), allowed, limit)?;
    let rest = &msg[HEADER_LEN..];
    if hdr.method_len as u64 + hdr.body_len != rest.len() as u64 {
        return Err(WireError::Malformed(format!(
            "the frame announces {} + {} bytes but the message holds {}",
            hdr.method_len,
            hdr.body_len,
            rest.len()
        )));
    }
    let (method, body) = rest.split_at(hdr.method_len);
    let method = std::str::from_utf8(method)
        .map_err(|_| WireError::Malformed("the method name is not UTF-8".into()))?;
    Ok(FrameRef {
        kind: hdr.kind,
        encoding: hdr.encoding,
        call_id: hdr.call_id,
        method,
        body,
    })
}

/// Encode a loan range (the body of loan calls and replies).
pub(crate) fn loan_range(offset: u64, len: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&offset.to_le_bytes());
    b[8..].copy_from_slice(&len.to_le_bytes());
    b
}

/// Decode a loan range; `None` if the body is not 16 bytes.
pub(crate) fn parse_loan_range(body: &[u8]) -> Option<(u64, u64)> {
    let b: &[u8; 16] = body.try_into().ok()?;
    Some((
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
    ))
}

/// A decoded, checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: u8,
    pub encoding: Encoding,
    pub method_len: usize,
    pub call_id: u64,
    pub body_len: u64,
}

/// Why a frame could not be read. Every variant but `Io` means the peer
/// broke the protocol; all of them end the connection.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The stream ended inside a frame.
    Truncated(String),
    /// A header field is invalid.
    Malformed(String),
    /// The body is longer than the receiver's limit; it was not read.
    TooLarge { len: u64, limit: usize },
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated(s) => write!(f, "truncated frame: {s}"),
            WireError::Malformed(s) => write!(f, "malformed frame: {s}"),
            WireError::TooLarge { len, limit } => write!(
                f,
                "frame announces a body of {len} bytes, over the limit of {limit} bytes (max_frame); the body was not read"
            ),
            WireError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// Decode and check a header: kinds in `allowed`, a known encoding, zero
/// reserved bytes, a method name only on calls and at most
/// [`MAX_METHOD`] bytes, a body of at most `limit` bytes.
pub(crate) fn parse_header(
    h: &[u8; HEADER_LEN],
    allowed: &[u8],
    limit: usize,
) -> Result<Header, WireError> {
    let kind = h[0];
    if !allowed.contains(&kind) {
        return Err(WireError::Malformed(format!(
            "frame kind {kind} is not expected here (expected one of {allowed:?})"
        )));
    }
    let encoding = Encoding::from_code(h[1])
        .ok_or_else(|| WireError::Malformed(format!("unknown body encoding {}", h[1])))?;
    let method_len = u16::from_le_bytes([h[2], h[3]]) as usize;
    if h[4..8] != [0, 0, 0, 0] {
        return Err(WireError::Malformed(format!(
            "reserved header bytes are {:02x?}, not zero",
            &h[4..8]
        )));
    }
    let is_call = kind == KIND_CALL || kind == KIND_LOAN_CALL;
    if is_call && (method_len == 0 || method_len > MAX_METHOD) {
        return Err(WireError::Malformed(format!(
            "method name of {method_len} bytes; a call names a method of 1 to {MAX_METHOD} bytes"
        )));
    }
    if !is_call && method_len != 0 {
        return Err(WireError::Malformed(
            "a reply or error frame carries a method name".into(),
        ));
    }
    let call_id = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let body_len = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if body_len > limit as u64 {
        return Err(WireError::TooLarge {
            len: body_len,
            limit,
        });
    }
    Ok(Header {
        kind,
        encoding,
        method_len,
        call_id,
        body_len,
    })
}

/// Reads reply frames from a socket (the service client's side).
pub(crate) struct FrameReader {
    rd: SocketReader,
    limit: usize,
    allowed: &'static [u8],
}

/// A read error while inside `what`.
fn truncated(e: io::Error, what: &str) -> WireError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        WireError::Truncated(format!("the connection ended inside {what}"))
    } else {
        WireError::Io(e)
    }
}

impl FrameReader {
    /// A reader accepting frames of the kinds in `allowed` with bodies of at
    /// most `limit` bytes.
    pub(crate) fn new(limit: usize, allowed: &'static [u8]) -> Self {
        FrameReader {
            // A service never passes descriptors: any that come are closed.
            rd: SocketReader::new(false),
            limit,
            allowed,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream (between frames).
    pub(crate) fn next(&mut self, fd: SocketRef<'_>) -> Result<Option<Frame>, WireError> {
        if !self
            .rd
            .fill(fd, HEADER_LEN, None)
            .map_err(|e| truncated(e, "a header"))?
        {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.rd.buffered()[..HEADER_LEN]);
        self.rd.consume(HEADER_LEN);
        // Checked before any allocation.
        let hdr = parse_header(&h, self.allowed, self.limit)?;
        // Replies name no method; whatever is there is read and dropped.
        let mut method = [0u8; MAX_METHOD];
        self.rd
            .read_exact(fd, &mut method[..hdr.method_len])
            .map_err(|e| truncated(e, "a method name"))?;
        let body = self
            .rd
            .read_body(fd, hdr.body_len as usize)
            .map_err(|e| truncated(e, "a body"))?;
        Ok(Some(Frame {
            kind: hdr.kind,
            encoding: hdr.encoding,
            call_id: hdr.call_id,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(kind: u8, enc: u8, mlen: u16, id: u64, blen: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = kind;
        h[1] = enc;
        h[2..4].copy_from_slice(&mlen.to_le_bytes());
        h[8..16].copy_from_slice(&id.to_le_bytes());
        h[16..24].copy_from_slice(&blen.to_le_bytes());
        h
    }

    #[test]
    fn frames_round_trip_through_the_header_parser() {
        let mut out = Vec::new();
        encode_frame(&mut out, KIND_CALL, Encoding::Json, 42, "add", b"{}");
        assert_eq!(out.len(), HEADER_LEN + 3 + 2);
        let h: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        let hdr = parse_header(&h, &[KIND_CALL], 100).unwrap();
        assert_eq!(
            hdr,
            Header {
                kind: KIND_CALL,
                encoding: Encoding::Json,
                method_len: 3,
                call_id: 42,
                body_len: 2
            }
        );
    }

    #[test]
    fn a_four_gib_body_is_refused_by_the_header_check() {
        let h = header_bytes(KIND_CALL, 0, 4, 1, 4 << 30);
        match parse_header(&h, &[KIND_CALL], 64 << 20) {
            Err(WireError::TooLarge { len, limit }) => {
                assert_eq!(len, 4 << 30);
                assert_eq!(limit, 64 << 20);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_headers_are_malformed() {
        let cases = [
            header_bytes(9, 0, 3, 1, 0),           // unknown kind
            header_bytes(KIND_REPLY, 0, 0, 1, 0),  // not allowed from a client
            header_bytes(KIND_CALL, 7, 3, 1, 0),   // unknown encoding
            header_bytes(KIND_CALL, 0, 0, 1, 0),   // empty method
            header_bytes(KIND_CALL, 0, 300, 1, 0), // method too long
        ];
        for h in cases {
            assert!(
                matches!(
                    parse_header(&h, &[KIND_CALL], 100),
                    Err(WireError::Malformed(_))
                ),
                "{h:?}"
            );
        }
        let mut h = header_bytes(KIND_CALL, 0, 3, 1, 0);
        h[5] = 1;
        assert!(matches!(
            parse_header(&h, &[KIND_CALL], 100),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let h = parse_hello(&hello(1234, true), "n").unwrap();
        assert_eq!((h.max_frame, h.shm), (1234, true));
        assert!(!parse_hello(&hello(1, false), "n").unwrap().shm);
        let mut bad = hello(1, false);
        bad[0] = b'X';
        assert!(parse_hello(&bad, "n").is_err());
        let mut v2 = hello(1, false);
        v2[8] = 2;
        assert!(parse_hello(&v2, "n")
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }
}
