//! Regression tests for what fuzzing the connection layer (`fuzz/`) found,
//! each the minimal reproducer of one finding, across real processes.
//! (They came up while writing the targets, by reading each decoder the
//! target drives; the targets reproduce them, failing on `run.sh`'s
//! `-malloc_limit_mb`, with these inputs.)
//!
//! All three findings are the same mistake in three places: a length the
//! peer announces was trusted for an allocation made before the bytes
//! arrived. A peer that announces a body of a GiB or more and then stops
//! (or closes) made the victim ask for all of it at once; where the system
//! refuses that much (strict overcommit, a memory ulimit, less RAM + swap
//! than asked for) the allocation fails and the whole process aborts. The
//! victim runs in a child process (this test binary re-exec'd to run the
//! ignored test [`child`] in the role named by `IPCKIT_TEST_ROLE`) under an
//! address-space limit of what it already uses plus [`HEADROOM`], so an
//! up-front allocation aborts it there and then; reading as the bytes
//! arrive costs a few KiB and the child reports an error, as it should.
//!
//! The hostile peer is this test process, speaking the wire formats of
//! `docs/PROTOCOL.md` with raw sockets. Every wait is bounded by
//! [`DEADLINE`]; nothing sleeps to synchronise.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::Namespace;

/// Bound on every wait: long for a loaded CI machine, short enough that a
/// hang fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// Selects a re-exec'd child's role.
const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";
/// Address space a child may add to what it uses when it starts: plenty
/// for its threads and buffers, less than any of the hostile lengths.
const HEADROOM: u64 = 512 << 20;
/// The endpoint name every test uses (each in its own namespace).
const NAME: &str = "victim";

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    limit_address_space();
    match role.as_str() {
        "pipe-client" => pipe_client_role(),
        "message-sender" => message_sender_role(),
        "mailslot-reader" => mailslot_reader_role(),
        other => panic!("unknown role {other}"),
    }
}

/// Cap this process's address space at its current size plus [`HEADROOM`].
fn limit_address_space() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status");
    let max = getrlimit(Resource::As).maximum;
    let want = kib * 1024 + HEADROOM;
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(max.map_or(want, |m| m.min(want))),
            maximum: max,
        },
    )
    .unwrap();
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn outcome<T>(r: ipckit::Result<T>) -> String {
    match r {
        Ok(_) => "RESULT ok".into(),
        Err(e) => format!("RESULT error {:?}", e.kind()),
    }
}

/// Connect to the (fake) pipe server and read one message.
fn pipe_client_role() {
    let ns = Namespace::from_env().unwrap();
    let mut pipe = ipckit::pipe::ClientOptions::new()
        .namespace(&ns)
        .timeout(DEADLINE)
        .connect(NAME)
        .unwrap();
    say(&outcome(pipe.recv_timeout(DEADLINE)));
}

/// Send one window message to the (fake) receiver.
fn message_sender_role() {
    let ns = Namespace::from_env().unwrap();
    let r = ipckit::message::Messenger::new()
        .namespace(&ns)
        .send(NAME, 0x4A, b"x", DEADLINE);
    say(&outcome(r));
}

/// Read one message from an unlimited mailslot.
fn mailslot_reader_role() {
    let ns = Namespace::from_env().unwrap();
    let slot = ipckit::mailslot::MailslotOptions::new()
        .namespace(&ns)
        .max_message_size(0)
        .create(NAME)
        .unwrap();
    say("READY");
    match slot.recv_timeout(DEADLINE) {
        Ok(m) => say(&format!("GOT {}", String::from_utf8_lossy(&m))),
        Err(e) => say(&format!("RESULT error {:?}", e.kind())),
    }
}

// ------------------------------------------------------------------ parent

/// A running child, its stdout lines arriving on a channel.
struct Kid {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Kid {
    fn start(ns: &Namespace, role: &str) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child",
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, role)
            .env(ipckit::name::NAMESPACE_ENV, ns.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Kid { child, lines }
    }

    /// The next line holding `prefix`, from `prefix` on; `None` if the
    /// child's output ended first (it exited or died).
    fn line(&self, prefix: &str) -> Option<String> {
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                // The harness prints "test child ... " without a newline
                // before the child's first line.
                Ok(l) => {
                    if let Some(i) = l.find(prefix) {
                        return Some(l[i..].to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no {prefix:?} line from the child within {DEADLINE:?}")
                }
            }
        }
    }

    /// How the child ended (its output has ended, so it is ending).
    fn status(mut self) -> std::process::ExitStatus {
        let _ = self.line("\u{0}never");
        self.child.wait().unwrap()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path().join("ns")).unwrap();
    (dir, ns)
}

/// Play a hostile server: accept one connection on `NAME`'s socket, write
/// `bytes`, close the sending side, and read whatever the client sends
/// until it closes (on a helper thread, bounded by [`DEADLINE`]).
fn fake_server(ns: &Namespace, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(ns.socket_path(NAME)).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(&bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    })
}

fn hello(magic: &[u8; 8], flags: u8, max: u32) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&[1, 0, flags, 0]);
    b.extend_from_slice(&max.to_le_bytes());
    b
}

/// What the child reported, checking it did not die on the way.
fn finish(kid: Kid, what: &str) -> String {
    let line = kid.line("RESULT");
    let status = kid.status();
    assert!(
        status.success() && line.is_some(),
        "{what}: the child died ({status}) instead of reporting an error; \
         it allocated the announced length up front (see its stderr above)"
    );
    line.unwrap()
}

// ------------------------------------------------------------------- tests

/// `client_hello`, pipe: a pipe server's hello announces a `max_message`
/// of 4 GiB − 1 and then a 3 GiB message header; the client allocated the
/// 3 GiB before reading (`pipe/named.rs`, `read_socket_item`:
/// `vec![0u8; len]` for any `len` up to the *server's* `max_message`).
#[test]
fn a_pipe_client_does_not_allocate_the_message_length_a_server_announces() {
    let (_d, ns) = test_ns();
    let mut bytes = hello(b"IPCKPIPE", 0, u32::MAX);
    bytes.extend_from_slice(&[1, 0, 0, 0]); // a data frame...
    bytes.extend_from_slice(&(3u32 << 30).to_le_bytes()); // ...of 3 GiB
    let server = fake_server(&ns, bytes);
    let kid = Kid::start(&ns, "pipe-client");
    let got = finish(kid, "pipe client");
    assert!(got.starts_with("RESULT error"), "{got}");
    server.join().unwrap();
}

/// `client_hello`, window message: a receiver answers a send with
/// a reply header announcing 1 GiB − 1 bytes of reply data; the sender
/// allocated it before reading (`message.rs`, `Window::call`:
/// `vec![0u8; len]` for any `len` up to 1 GiB, at commit 9aa9cde).
#[test]
fn a_message_sender_does_not_allocate_the_reply_length_a_receiver_announces() {
    let (_d, ns) = test_ns();
    let mut bytes = hello(b"IPCKWMSG", 0, 4096);
    bytes.extend_from_slice(&[1, 0, 0, 0]); // RESP_REPLY, code 0
    bytes.extend_from_slice(&((1u32 << 30) - 1).to_le_bytes()); // reply length
    bytes.extend_from_slice(&7i64.to_le_bytes()); // result
    let server = fake_server(&ns, bytes);
    let kid = Kid::start(&ns, "message-sender");
    let got = finish(kid, "message sender");
    assert!(got.starts_with("RESULT error"), "{got}");
    server.join().unwrap();
}

/// `mailslot_writes`: a writer to a mailslot without a size limit
/// (`max_message_size` 0: up to 1 GiB) announces a 1 GiB message, sends
/// four bytes of it and closes; the reader allocated the whole GiB first
/// (`mailslot/mod.rs`, `serve_writer`: `vec![0u8; len]`, at commit
/// 9aa9cde), so one writer
/// could abort the reader's process. The reader must drop the torn write
/// and go on taking honest ones.
#[test]
fn a_mailslot_reader_does_not_allocate_the_length_a_writer_announces() {
    let (_d, ns) = test_ns();
    let kid = Kid::start(&ns, "mailslot-reader");
    kid.line("READY").expect("the mailslot child did not start");
    let mut s = UnixStream::connect(ns.socket_path(NAME)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], b"IPCKSLOT");
    let mut w = vec![1, 0, 0, 0]; // KIND_WRITE
    w.extend_from_slice(&(1u32 << 30).to_le_bytes()); // len: 1 GiB
    w.extend_from_slice(&1000u32.to_le_bytes()); // timeout_ms
    w.extend_from_slice(&[0; 4]);
    w.extend_from_slice(b"torn");
    s.write_all(&w).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // The reader drops the torn write and closes this connection...
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // ...and still takes an honest one, if it is still alive.
    let sent = ipckit::mailslot::WriterOptions::new()
        .namespace(&ns)
        .timeout(DEADLINE)
        .open(NAME)
        .and_then(|mut w| w.send(b"honest"));
    let got = kid.line("GOT");
    let status = kid.status();
    assert!(
        status.success() && sent.is_ok(),
        "the mailslot reader died ({status}; the honest write: {sent:?}) after a writer \
         announced 1 GiB; it allocated the announced length up front (see its stderr above)"
    );
    assert_eq!(got.as_deref(), Some("GOT honest"));
}
