//! Helpers shared by the fuzz targets: a private namespace per process and
//! a raw client that plays the hostile peer on a real socket.
#![allow(dead_code)]

pub mod shm;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a server may take to close a connection after the hostile
/// client is done with it. Far above any honest figure: hitting it means
/// the server hangs on that input (the target panics, libFuzzer saves it).
pub const HANG: Duration = Duration::from_secs(10);

/// A fresh namespace for this fuzzing process (kept for its lifetime).
pub fn namespace() -> ipckit::Namespace {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    ipckit::Namespace::at(dir.path()).expect("namespace")
}

/// Connect to the Unix socket at `path` and read the server's 16-byte
/// hello (bounded by [`HANG`]).
pub fn connect(path: &Path) -> (UnixStream, [u8; 16]) {
    let mut s = UnixStream::connect(path).expect("connect to the server under test");
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello)
        .expect("the server under test sent no hello");
    (s, hello)
}

/// Write `bytes` (ignoring a server that already closed), end our side,
/// and read whatever the server answers until it closes the connection.
/// Panics if it has not closed within [`HANG`]: a hang on this input.
pub fn write_and_drain(mut s: UnixStream, bytes: &[u8], what: &str) -> Vec<u8> {
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    drain(s, what)
}

/// Read until the server closes the connection (or resets it); panics if
/// it stays open for [`HANG`].
pub fn drain(mut s: UnixStream, what: &str) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = HANG.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "hang: the {what} kept the connection open {HANG:?} after the client finished"
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "hang: the {what} kept the connection open {HANG:?} after the client finished"
                )
            }
            // Reset (it closed with our bytes unread): closed all the same.
            Err(_) => return out,
        }
    }
}

/// Run `f` on a helper thread and wait at most [`HANG`] for it; panics on
/// a hang (with `what` in the message) and passes a panic of `f` on.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("hang: {what} did not return within {HANG:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the helper sends before it ends"),
        },
    }
}

/// Wait for a pipe server to hand over the connection `s` is the client
/// end of, or for it to drop it (it refused what the client sent): `None`
/// then. The server must send nothing after its hello. Panics after
/// [`HANG`].
pub fn accept_or_dropped(
    server: &ipckit::pipe::PipeServer,
    s: &UnixStream,
) -> Option<ipckit::pipe::NamedPipe> {
    let start = Instant::now();
    s.set_nonblocking(true).unwrap();
    loop {
        match server.accept_timeout(Duration::from_millis(1)) {
            Ok(c) => {
                s.set_nonblocking(false).unwrap();
                return Some(c);
            }
            Err(e) if e.kind() == ipckit::ErrorKind::Timeout => {}
            Err(e) => panic!("the pipe server broke: {e}"),
        }
        let mut b = [0u8; 1];
        match (&*s).read(&mut b) {
            Ok(0) => {
                s.set_nonblocking(false).unwrap();
                return None;
            }
            Ok(_) => panic!("the pipe server sent bytes after its hello"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                s.set_nonblocking(false).unwrap();
                return None;
            }
        }
        assert!(
            start.elapsed() < HANG,
            "hang: the pipe server neither handed over nor dropped a connection"
        );
    }
}
