//! Hostile bytes on a named-pipe connection: whatever a client writes
//! after the hello (frames: 8-byte header, payload; first perhaps its
//! answer to the shared-memory offer), the server side must return
//! messages or errors — never panic, never hang, never allocate more than
//! its `max_message` — hand the connection over or drop it, and keep
//! serving honest clients.
//!
//! Run with `cargo +nightly fuzz run pipe_stream` from this directory.
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ipckit::pipe::{ClientOptions, PipeServer, ServerOptions};
use ipckit::{ErrorKind, Namespace};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

struct Fixture {
    ns: Namespace,
    path: PathBuf,
    server: PipeServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let server = ServerOptions::new()
            .namespace(&ns)
            .max_message_size(MAX)
            .create("fuzz")
            .unwrap();
        let path = ns.socket_path("fuzz");
        Fixture { ns, path, server }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (s, hello) = common::connect(&f.path);
    assert_eq!(&hello[..8], b"IPCKPIPE");
    let s = {
        use std::io::Write;
        let mut s = s;
        let _ = s.write_all(data);
        let _ = s.shutdown(std::net::Shutdown::Write);
        s
    };
    if let Some(mut conn) = common::accept_or_dropped(&f.server, &s) {
        // Drain until the connection reports the end or an error that
        // closes it.
        for _ in 0..data.len() + 2 {
            match conn.recv_timeout(common::HANG) {
                Ok(m) => assert!(m.len() <= MAX),
                Err(e) if e.kind() == ErrorKind::TooLarge => {}
                Err(e) if e.kind() == ErrorKind::InvalidInput => {
                    let _ = conn.recv_fd();
                }
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    panic!("hang: the pipe waited on a client that had finished: {e}")
                }
                Err(_) => break,
            }
        }
    }
    common::drain(s, "pipe server");
    // The server still serves an honest client.
    let mut c = ClientOptions::new()
        .namespace(&f.ns)
        .timeout(Duration::from_secs(5))
        .connect("fuzz")
        .expect("the pipe server stopped accepting after a hostile client");
    let mut conn = f
        .server
        .accept_timeout(common::HANG)
        .expect("no honest accept");
    c.send(b"honest").unwrap();
    assert_eq!(conn.recv_timeout(common::HANG).unwrap(), b"honest");
});
