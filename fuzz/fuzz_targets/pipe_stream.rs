//! Hostile bytes on a named-pipe connection: whatever a client writes, the
//! server side must return messages or errors — never panic, never hang,
//! never allocate more than its `max_message`.
//!
//! Run with `cargo +nightly fuzz run pipe_stream` from this directory.
#![no_main]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::Duration;

use ipckit::pipe::{PipeServer, ServerOptions};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    server: PipeServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ns = ipckit::Namespace::at(dir.path()).unwrap();
        let server = ServerOptions::new()
            .namespace(&ns)
            .max_message(4096)
            .create("fuzz")
            .unwrap();
        let path = ns.socket_path("fuzz");
        Fixture {
            _dir: dir,
            path,
            server,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut raw = UnixStream::connect(&f.path).unwrap();
    let mut hello = [0u8; 16];
    std::io::Read::read_exact(&mut raw, &mut hello).unwrap();
    let _ = raw.write_all(data);
    drop(raw);
    let mut conn = f.server.accept_timeout(Duration::from_secs(5)).unwrap();
    // Drain until the connection reports the end or an error that closes it.
    for _ in 0..data.len() + 2 {
        match conn.recv() {
            Ok(m) => assert!(m.len() <= 4096),
            Err(e) if e.kind() == ipckit::ErrorKind::TooLarge => {}
            Err(_) => break,
        }
    }
});
