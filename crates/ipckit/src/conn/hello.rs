//! The 16-byte hello every ipckit server writes first on a connection
//! (`docs/PROTOCOL.md`, "Hellos"): magic (8 bytes naming the mechanism),
//! version, status, a flags byte, one mechanism byte, and a little-endian
//! `u32` size limit. One type encodes, decodes and reads it, bounded by the
//! caller's deadline.

use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::net::SocketRef;

use super::io;

/// Length of every hello.
pub(crate) const HELLO_LEN: usize = 16;

/// Status: the connection is accepted.
pub(crate) const STATUS_OK: u8 = 0;
/// Status: the server is at a limit (instances, connections); retry later.
pub(crate) const STATUS_BUSY: u8 = 1;
/// Status: this peer is not allowed (uid).
pub(crate) const STATUS_DENIED: u8 = 2;

/// A hello: what a server announces on connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Names the mechanism (`IPCKPIPE`, `IPCKSERV`, `IPCKSLOT`, `IPCKWMSG`).
    pub magic: [u8; 8],
    /// Protocol version of that mechanism.
    pub version: u8,
    /// [`STATUS_OK`], [`STATUS_BUSY`] or [`STATUS_DENIED`].
    pub status: u8,
    /// Byte 10: mechanism flags (pipe mode and shared-memory offer, service
    /// feature bits).
    pub flags: u8,
    /// Byte 11: one more mechanism byte (pipe direction), else 0.
    pub extra: u8,
    /// Bytes 12..16: the size limit the server announces.
    pub max: u32,
}

impl Hello {
    /// An accepting hello of `magic`/`version` announcing `max`.
    pub(crate) fn ok(magic: &[u8; 8], version: u8, max: u32) -> Hello {
        Hello {
            magic: *magic,
            version,
            status: STATUS_OK,
            flags: 0,
            extra: 0,
            max,
        }
    }

    /// The same hello with another status (a refusal).
    pub(crate) fn with_status(mut self, status: u8) -> Hello {
        self.status = status;
        self
    }

    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(&self.magic);
        b[8] = self.version;
        b[9] = self.status;
        b[10] = self.flags;
        b[11] = self.extra;
        b[12..16].copy_from_slice(&self.max.to_le_bytes());
        b
    }

    /// Decode `b`, requiring `magic` and `version`; `what` names the
    /// mechanism in errors ("pipe", "service"...). The status is not
    /// checked here (see [`Hello::refusal`]).
    pub(crate) fn decode(
        b: &[u8; HELLO_LEN],
        magic: &[u8; 8],
        version: u8,
        what: &str,
        name: &str,
    ) -> Result<Hello> {
        if &b[..8] != magic {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("the endpoint did not answer with an ipckit {what} hello; is it an ipckit {what}?"),
            )
            .with_name(name));
        }
        if b[8] != version {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "the server speaks {what} protocol version {}, this client version {version}; upgrade the older side",
                    b[8]
                ),
            )
            .with_name(name));
        }
        Ok(Hello {
            magic: *magic,
            version,
            status: b[9],
            flags: b[10],
            extra: b[11],
            max: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// The error a refusing hello means, `None` if it accepts.
    pub(crate) fn refusal(&self, what: &str, name: &str) -> Option<Error> {
        let e = match self.status {
            STATUS_OK => return None,
            STATUS_BUSY => Error::new(
                ErrorKind::Busy,
                format!("the {what} is at its connection limit (or every instance is busy); retry later or connect with a timeout"),
            ),
            STATUS_DENIED => Error::new(
                ErrorKind::PermissionDenied,
                format!("the {what} does not allow this user; ask its owner to allow your uid"),
            ),
            s => Error::new(
                ErrorKind::Decode,
                format!("unknown hello status {s} from the {what}; upgrade this client"),
            ),
        };
        Some(e.with_name(name))
    }
}

/// Read a whole hello from `fd`, giving up at `deadline`: a server that
/// sends part of it and stalls is a [`ErrorKind::Timeout`], never a hang.
pub(crate) fn read(
    fd: SocketRef<'_>,
    deadline: Instant,
    what: &str,
    name: &str,
) -> Result<[u8; HELLO_LEN]> {
    let mut b = [0u8; HELLO_LEN];
    match io::recv_exact_until(fd, &mut b, deadline) {
        Ok(true) => Ok(b),
        Ok(false) => Err(Error::new(
            ErrorKind::PeerGone,
            format!("the {what} closed the connection during the handshake; it may be shutting down or refusing clients"),
        )
        .with_name(name)),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Error::new(
            ErrorKind::Timeout,
            format!("the {what} accepted the connection but sent no complete hello in time; it may be hung"),
        )
        .with_name(name)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::new(
            ErrorKind::PeerGone,
            format!("the {what} closed the connection in the middle of its hello"),
        )
        .with_name(name)),
        Err(e) => Err(Error::os(e, "handshake failed").with_name(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_magic_version_status() {
        let mut h = Hello::ok(b"IPCKTEST", 1, 4096);
        h.flags = 0x81;
        h.extra = 3;
        let b = h.encode();
        let d = Hello::decode(&b, b"IPCKTEST", 1, "test", "n").unwrap();
        assert_eq!(d, h);
        assert!(d.refusal("test", "n").is_none());
        let e = Hello::decode(&b, b"IPCKOTHR", 1, "test", "n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        let e = Hello::decode(&b, b"IPCKTEST", 2, "test", "n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        let busy = h.with_status(STATUS_BUSY);
        let e = Hello::decode(&busy.encode(), b"IPCKTEST", 1, "t", "n")
            .unwrap()
            .refusal("t", "n")
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Busy);
        let e = h.with_status(STATUS_DENIED).refusal("t", "n").unwrap();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let e = h.with_status(9).refusal("t", "n").unwrap();
        assert_eq!(e.kind(), ErrorKind::Decode);
    }
}
