//! The peer of `ipckit bench`'s `stream/*` cases.
//!
//! The wire, shared with `crates/ipckit-cli/src/command/bench.rs`: the
//! bench serves a message-mode pipe and sends one-way messages; a message
//! that is exactly `?` asks for the number of other messages received so
//! far, answered as a u64 little-endian.

use std::time::Duration;

use ipckit::ErrorKind;

/// How long to wait for the bench's pipe server.
const WAIT: Duration = Duration::from_secs(10);

/// Count messages on pipe `name`; answer each `?` with the count so far.
/// Ends when the bench closes the pipe.
pub fn sink(name: &str) -> ipckit::Result<()> {
    let mut pipe = ipckit::pipe::ClientOptions::new()
        .timeout(WAIT)
        .connect(name)?;
    let mut buf = [0u8; 256];
    let mut count = 0u64;
    loop {
        let n = match pipe.recv_into(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(()),
            Err(e) => return Err(e),
        };
        if n == 1 && buf[0] == b'?' {
            pipe.send(&count.to_le_bytes())?;
        } else {
            count += 1;
        }
    }
}
