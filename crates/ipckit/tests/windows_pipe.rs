//! Named and anonymous pipes on Windows: the system's own
//! (`CreateNamedPipeW`, `CreateFileW`, `WaitNamedPipeW`, `TransactNamedPipe`,
//! `CreatePipe`). Run for `x86_64-pc-windows-gnu` under Wine by
//! `scripts/test-windows.sh`.
//!
//! The two-process tests re-run this test executable as their child (the
//! environment variable [`CHILD_ENV`] names the child's role); the interop
//! tests run plain Win32 C programs beside ipckit (see [`c_peer`]).
#![cfg(all(windows, feature = "pipe"))]

mod windows_support;

use windows_support::c_peer;

use std::io::{BufRead as _, BufReader, Read, Write};
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::pipe::{
    ClientOptions, CommandExt as _, Direction, NamedPipe, PipeMode, PipeReader, PipeWriter,
    ServerOptions, DEFAULT_MAX_MESSAGE_SIZE,
};
use ipckit::shm::MappingOptions;
use ipckit::{ErrorKind, Namespace};

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_PIPE_CHILD";
/// How long any wait in these tests may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn new_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

fn server(ns: &Namespace) -> ServerOptions {
    ServerOptions::new().namespace(ns)
}

fn client(ns: &Namespace) -> ClientOptions {
    ClientOptions::new().namespace(ns).timeout(LIMIT)
}

/// Run `f` on a thread and wait for its result at most [`LIMIT`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// Wait for `child` to exit (at most [`LIMIT`]) and return its output
/// (stdout, stderr); panics if it fails or does not finish.
fn finish(child: Child, what: &str) -> (String, String) {
    let out = bounded(what, move || child.wait_with_output()).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Read the first line of a child's stdout (bounded); the rest is read on
/// by the returned thread.
fn first_line(stdout: ChildStdout, what: &str) -> (String, std::thread::JoinHandle<String>) {
    let mut stdout = BufReader::new(stdout);
    let (tx, rx) = mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        rest
    });
    let line = rx
        .recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} printed nothing within {LIMIT:?}"));
    (line, rest)
}

/// A system pipe name unique to this process and `tag`.
fn native(tag: &str) -> String {
    format!(r"\\.\pipe\ipckit-test-{}-{tag}", std::process::id())
}

#[test]
fn names_follow_the_windows_rule() {
    let (_dir, ns) = new_ns();
    let os = server(&ns).os_name("a/b").unwrap();
    assert!(os.starts_with(r"\\.\pipe\ipckit."), "{os}");
    assert!(os.ends_with(".a:b"), "{os}");
    // The same <H> as the namespace's sections.
    let section = MappingOptions::new().namespace(&ns).os_name("a/b").unwrap();
    assert_eq!(
        os.strip_prefix(r"\\.\pipe\").unwrap(),
        section.strip_prefix(r"Local\").unwrap()
    );
    let (_d2, other) = new_ns();
    assert_ne!(server(&other).os_name("a/b").unwrap(), os);

    // The server is reachable by its system name, and a server created
    // under a system name is used as is.
    let s = server(&ns).create("a/b").unwrap();
    assert_eq!(s.os_name(), os);
    let mut c = client(&ns).connect(&os).unwrap();
    c.send(b"by system name").unwrap();
    assert_eq!(s.accept().unwrap().recv().unwrap(), b"by system name");
    let raw = native("raw");
    let r = server(&ns).create(&raw).unwrap();
    assert_eq!(r.os_name(), raw);
    let _c = ClientOptions::new().timeout(LIMIT).connect(&raw).unwrap();
    assert!(r.accept_timeout(LIMIT).is_ok());
    let _any = ClientOptions::new()
        .timeout(LIMIT)
        .allow_any_server()
        .connect(&raw)
        .unwrap();
    assert!(r.accept_timeout(LIMIT).is_ok());

    for bad in [r"\\.\pipe\", r"\\.\pipe\a\b", r"\\x", "../x", r"a\b"] {
        assert_eq!(
            server(&ns).create(bad).unwrap_err().kind(),
            ErrorKind::InvalidName,
            "{bad}"
        );
    }
    // A server makes only local pipes.
    assert_eq!(
        server(&ns).create(r"\\host\pipe\x").unwrap_err().kind(),
        ErrorKind::InvalidName
    );
}

#[test]
fn pipe_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ipckit::pipe::PipeServer>();
    check::<NamedPipe>();
    check::<ipckit::pipe::RecvHalf>();
    check::<ipckit::pipe::SendHalf>();
    check::<PipeReader>();
    check::<PipeWriter>();
}

#[test]
fn create_connect_already_exists_not_found() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("svc").unwrap();
    assert!(!s.replaced_stale());
    assert_eq!(s.name(), "svc");
    // FILE_FLAG_FIRST_PIPE_INSTANCE: a second server is refused.
    let e = server(&ns).create("svc").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // No server: NotFound at once, Timeout after waiting.
    let quick = ClientOptions::new().namespace(&ns);
    assert_eq!(
        quick.connect("absent").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let e = quick
        .clone()
        .timeout(Duration::from_millis(50))
        .connect("absent")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // Options are checked.
    assert_eq!(
        server(&ns).max_instances(0).create("z").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        server(&ns)
            .max_message_size(0)
            .create("z")
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // Gone with the server: the name is free again.
    let c = quick.connect("svc").unwrap();
    assert_eq!(c.name(), "svc");
    drop((c, s));
    assert_eq!(
        quick.connect("svc").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let again = server(&ns).create("svc").unwrap();
    drop(again);
}

#[test]
fn message_mode_keeps_boundaries_both_ways() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("m").unwrap();
    let mut c = client(&ns).connect("m").unwrap();
    assert_eq!(c.mode(), PipeMode::Message);
    assert_eq!(c.max_message_size(), DEFAULT_MAX_MESSAGE_SIZE);
    let mut conn = s.accept().unwrap();
    assert_eq!(conn.peer().pid, Some(std::process::id()));
    assert_eq!(c.peer().pid, Some(std::process::id()));
    assert_eq!(s.instances(), 1);

    // Bigger than one read step (ERROR_MORE_DATA, continued).
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sender = {
        let mut c2 = c.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || {
            c2.send(b"one").unwrap();
            c2.send(&big).unwrap();
            c2.send(b"three").unwrap();
        })
    };
    assert_eq!(conn.recv().unwrap(), b"one");
    assert_eq!(conn.recv().unwrap(), big);
    assert_eq!(conn.recv().unwrap(), b"three");
    sender.join().unwrap();

    // Server to client, with recv_into: a small buffer keeps the message.
    conn.send(b"hello").unwrap();
    let mut small = [0u8; 2];
    let e = c.recv_into(&mut small).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BufferTooSmall);
    assert_eq!(e.needed(), Some(5));
    let mut buf = [0u8; 8];
    assert_eq!(c.recv_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");

    // Split halves on two threads.
    let (mut rx, mut tx) = c.split();
    let reader = std::thread::spawn(move || rx.recv().unwrap());
    tx.send(b"ping").unwrap();
    assert_eq!(conn.recv().unwrap(), b"ping");
    conn.send(b"pong").unwrap();
    assert_eq!(
        bounded("the split reader", move || reader.join().unwrap()),
        b"pong"
    );
}

#[test]
fn empty_messages_are_messages() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("e").unwrap();
    let mut c = client(&ns).connect("e").unwrap();
    let mut conn = s.accept().unwrap();
    c.send(b"").unwrap();
    c.send(b"after").unwrap();
    assert_eq!(conn.recv().unwrap(), b"");
    assert_eq!(conn.recv().unwrap(), b"after");
}

#[test]
fn byte_mode_is_a_stream() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).mode(PipeMode::Byte).create("b").unwrap();
    let mut c = client(&ns).connect("b").unwrap();
    assert_eq!(c.mode(), PipeMode::Byte);
    let mut conn = s.accept().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            for part in data.chunks(7000) {
                c.write_all(part).unwrap();
            }
            // Dropping the client ends the stream.
        })
    };
    let got = bounded("reading the stream", move || {
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got
    });
    writer.join().unwrap();
    assert_eq!(got, data);
}

#[test]
fn direction_is_enforced() {
    let (_dir, ns) = new_ns();
    // Inbound: client to server only.
    let s = server(&ns)
        .direction(Direction::Inbound)
        .create("in")
        .unwrap();
    let mut c = client(&ns).connect("in").unwrap();
    let mut conn = s.accept().unwrap();
    c.send(b"up").unwrap();
    assert_eq!(conn.recv().unwrap(), b"up");
    assert_eq!(
        conn.send(b"x").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::PermissionDenied);
    // Outbound: server to client only.
    let s = server(&ns)
        .direction(Direction::Outbound)
        .create("out")
        .unwrap();
    let mut c = client(&ns).connect("out").unwrap();
    let mut conn = s.accept().unwrap();
    conn.send(b"down").unwrap();
    assert_eq!(c.recv().unwrap(), b"down");
    assert_eq!(
        c.send(b"x").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(conn.recv().unwrap_err().kind(), ErrorKind::PermissionDenied);
}

#[test]
fn instances_busy_and_a_waiting_client_gets_in() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).max_instances(1).create("one").unwrap();
    let first = client(&ns).connect("one").unwrap();
    let conn = s.accept_timeout(LIMIT).unwrap();
    assert_eq!(s.instances(), 1);
    // Every instance taken: Busy at once, Timeout after a short wait.
    let quick = ClientOptions::new().namespace(&ns);
    let e = quick.connect("one").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    let e = quick
        .clone()
        .timeout(Duration::from_millis(100))
        .connect("one")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // A client waiting (WaitNamedPipeW) gets in once the instance frees.
    let waiting = {
        let ns = ns.clone();
        std::thread::spawn(move || {
            let mut c = client(&ns).connect("one").unwrap();
            c.transact(b"waited").unwrap()
        })
    };
    drop(conn);
    drop(first);
    let mut next = s.accept_timeout(LIMIT).unwrap();
    assert_eq!(next.recv().unwrap(), b"waited");
    next.send(b"welcome").unwrap();
    assert_eq!(
        bounded("the waiting client", move || waiting.join().unwrap()),
        b"welcome"
    );
    // Limits::max_connections bounds the instances too; remote clients
    // may be let in (PIPE_ACCEPT_REMOTE_CLIENTS) without changing that.
    let s2 = server(&ns)
        .limits(ipckit::Limits::new().max_connections(1))
        .accept_remote_clients(true)
        .create("limited")
        .unwrap();
    let _one = quick.connect("limited").unwrap();
    assert_eq!(
        quick.connect("limited").unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert_eq!(
        s2.accept_timeout(LIMIT).unwrap().peer().pid,
        Some(std::process::id())
    );
}

#[test]
fn recv_timeout_loses_nothing() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("t").unwrap();
    let mut c = client(&ns).connect("t").unwrap();
    let mut conn = s.accept().unwrap();
    for _ in 0..3 {
        let e = c.recv_timeout(Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
    conn.send(b"late").unwrap();
    conn.send(b"later").unwrap();
    assert_eq!(c.recv_timeout(LIMIT).unwrap(), b"late");
    assert_eq!(c.recv().unwrap(), b"later");
    // No accept for a while either.
    let e = s.accept_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[test]
fn too_large_is_refused_and_the_pipe_stays_usable() {
    let (_dir, ns) = new_ns();
    // A client by system name allows at least the default size, so the
    // server's own limit is what refuses.
    let name = native("big");
    let s = server(&ns).max_message_size(100).create(&name).unwrap();
    let mut c = ClientOptions::new().timeout(LIMIT).connect(&name).unwrap();
    assert!(c.max_message_size() >= DEFAULT_MAX_MESSAGE_SIZE);
    let mut conn = s.accept().unwrap();
    assert_eq!(conn.max_message_size(), 100);
    // The pipe's buffers are 100 bytes: the writes wait for the reader.
    let sender = std::thread::spawn(move || {
        c.send(&[7u8; 1000]).unwrap();
        c.send(b"ok").unwrap();
        c
    });
    let e = conn.recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(e.needed(), Some(1000));
    assert_eq!(conn.recv().unwrap(), b"ok");
    let mut c = bounded("the sender", move || sender.join().unwrap());
    // Sending over the limit is refused before anything is written.
    let e = conn.send(&[1u8; 101]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    let reader = std::thread::spawn(move || c.recv().unwrap());
    conn.send(&[1u8; 100]).unwrap();
    assert_eq!(
        bounded("the reader", move || reader.join().unwrap()),
        vec![1u8; 100]
    );
    // An ipckit client learns the server's limit (at least it).
    let limited = server(&ns).max_message_size(100).create("small").unwrap();
    let c2 = client(&ns).connect("small").unwrap();
    assert!(c2.max_message_size() >= 100, "{}", c2.max_message_size());
    drop(limited);
}

#[test]
fn transact_flush_and_disconnect() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("x").unwrap();
    let mut c = client(&ns).connect("x").unwrap();
    let mut conn = s.accept().unwrap();
    let echo = std::thread::spawn(move || {
        for _ in 0..3 {
            let m = conn.recv().unwrap();
            conn.send(&m.to_ascii_uppercase()).unwrap();
        }
        // A reply bigger than one read step.
        let m = conn.recv().unwrap();
        conn.send(&vec![b'z'; 100_000 + m.len()]).unwrap();
        // Unsolicited, then the reply: transact returns the next message.
        conn.send(b"unsolicited").unwrap();
        let m = conn.recv().unwrap();
        conn.send(&m).unwrap();
        conn
    });
    assert_eq!(c.transact(b"abc").unwrap(), b"ABC");
    assert_eq!(c.transact(b"").unwrap(), b"");
    assert_eq!(c.transact(b"x").unwrap(), b"X");
    assert_eq!(c.transact(b"big").unwrap(), vec![b'z'; 100_003]);
    // The server sends one message unasked before answering: the reply to
    // a transaction is the next message, whatever it is (as on Linux).
    assert_eq!(c.transact(b"q").unwrap(), b"unsolicited");
    assert_eq!(c.recv().unwrap(), b"q");
    drop(bounded("the echo thread", move || echo.join().unwrap()));

    // flush returns once the peer read everything.
    let s = server(&ns).create("f").unwrap();
    let mut c = client(&ns).connect("f").unwrap();
    let mut conn = s.accept().unwrap();
    c.send(b"flushed").unwrap();
    let flusher = std::thread::spawn(move || {
        c.flush().unwrap();
        c
    });
    assert_eq!(conn.recv().unwrap(), b"flushed");
    let mut c = bounded("flush", move || flusher.join().unwrap());
    // disconnect: the client sees the end; the server serves on.
    conn.disconnect();
    assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::PeerGone);
    assert_eq!(c.send(b"x").unwrap_err().kind(), ErrorKind::PeerGone);
    let _c2 = client(&ns).connect("f").unwrap();
    assert!(s.accept_timeout(LIMIT).is_ok());
    // A connection dropped right after sending: the client still reads
    // what was sent, then sees the end.
    let mut c3 = client(&ns).connect("f").unwrap();
    s.accept_timeout(LIMIT).unwrap().send(b"parting").unwrap();
    assert_eq!(c3.recv().unwrap(), b"parting");
    assert_eq!(c3.recv().unwrap_err().kind(), ErrorKind::PeerGone);
}

/// The child's side of [`two_processes_and_peer_gone`].
fn child_client() {
    let mut c = NamedPipe::connect("duo", LIMIT).expect("child: connect");
    let parent: u32 = std::env::var("IPCKIT_TEST_PARENT_PID")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(c.peer().pid, Some(parent));
    assert_eq!(c.transact(b"from the child").unwrap(), b"from the parent");
    c.send(b"last words").unwrap();
    // Exit without disconnecting: the process's end closes the pipe.
    std::mem::forget(c);
}

#[test]
fn two_processes_and_peer_gone() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "client" {
            child_client();
        }
        return;
    }
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("duo").unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "two_processes_and_peer_gone",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "client")
        .env("IPCKIT_NAMESPACE", ns.dir())
        .env("IPCKIT_TEST_PARENT_PID", std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let mut conn = s.accept_timeout(LIMIT).unwrap();
    assert_eq!(conn.peer().pid, Some(child_pid));
    assert_eq!(conn.recv_timeout(LIMIT).unwrap(), b"from the child");
    conn.send(b"from the parent").unwrap();
    assert_eq!(conn.recv_timeout(LIMIT).unwrap(), b"last words");
    let (stdout, _) = finish(child, "the child process");
    assert!(
        stdout.contains("1 passed"),
        "the child ran its role:\n{stdout}"
    );
    // The child is gone: so is its end.
    let e = conn.recv_timeout(LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(conn.send(b"x").unwrap_err().kind(), ErrorKind::PeerGone);
}

/// The child's side of [`anonymous_pipe_to_a_child`]: write to the handle
/// it was given, then wait for a line on stdin.
fn child_anon_writer() {
    let v: usize = std::env::var("IPCKIT_TEST_HANDLE")
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: the parent passed this handle to this process alone, and
    // nothing else here owns it.
    let h = unsafe { OwnedHandle::from_raw_handle(v as RawHandle) };
    let mut w = PipeWriter::from_inherited_handle(h).expect("child: adopt");
    write!(w, "from the child {}", std::process::id()).unwrap();
    drop(w);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

#[test]
fn anonymous_pipe_to_a_child() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "anon" {
            child_anon_writer();
        }
        return;
    }
    let (mut r, w) = ipckit::pipe::pipe().unwrap();
    // Another pipe, not passed: the child must not inherit its writer.
    let (mut r2, w2) = ipckit::pipe::pipe().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "anonymous_pipe_to_a_child",
        "--exact",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(CHILD_ENV, "anon")
    .env(
        "IPCKIT_TEST_HANDLE",
        (w.as_raw_handle() as usize).to_string(),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn_with_handles(&[w.as_handle()]).unwrap();
    let child_pid = child.id();
    drop((w, w2));
    // The parent's copies are closed and the child's is closed after
    // writing: end-of-file while the child still runs.
    let got = bounded("reading the child's pipe", move || {
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    });
    assert_eq!(got, format!("from the child {child_pid}"));
    // The other pipe's writer went nowhere: end-of-file at once, while the
    // child (waiting on stdin) is alive.
    let n = bounded("reading the pipe not passed", move || {
        let mut v = Vec::new();
        r2.read_to_end(&mut v).unwrap()
    });
    assert_eq!(n, 0);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    finish(child, "the child process");
    // A handle that is no pipe is refused.
    let file: OwnedHandle = tempfile::tempfile().unwrap().into();
    assert_eq!(
        PipeReader::from_inherited_handle(file).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn a_plain_win32_server_serves_an_ipckit_client() {
    let Some(peer) = c_peer("pipe_server") else {
        return;
    };
    let name = native("cserver");
    let mut child = Command::new(&peer)
        .arg(&name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ready, rest) = first_line(child.stdout.take().unwrap(), "the C server");
    assert_eq!(ready.trim(), "ready");
    // The C server runs as this user: the default check lets it through
    // (the opt-out connects too, below).
    let mut c = ClientOptions::new().timeout(LIMIT).connect(&name).unwrap();
    assert_eq!(c.mode(), PipeMode::Message);
    assert_eq!(c.peer().pid, Some(child.id()));
    assert!(c.max_message_size() >= DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(c.transact(b"hello").unwrap(), b"hello");
    // Bigger than the C server's 4096-byte buffers, both ways.
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 249) as u8).collect();
    c.send(&big).unwrap();
    assert_eq!(c.recv().unwrap(), big);
    c.send(b"quit").unwrap();
    assert_eq!(c.recv().unwrap(), b"bye");
    let (_, stderr) = finish(child, "the C server");
    let rest = rest.join().unwrap();
    assert_eq!(rest.trim(), "served 3", "{stderr}");
    // The C server disconnected: the client sees the end.
    assert_eq!(c.recv().unwrap_err().kind(), ErrorKind::PeerGone);
}

#[test]
fn an_ipckit_server_serves_a_plain_win32_client() {
    let Some(peer) = c_peer("pipe_client") else {
        return;
    };
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("interop/svc").unwrap();
    let child = Command::new(&peer)
        .arg(s.os_name())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let mut conn = s.accept_timeout(LIMIT).unwrap();
    assert_eq!(conn.peer().pid, Some(child_pid));
    assert_eq!(conn.recv_timeout(LIMIT).unwrap(), b"ping from C");
    conn.send(b"pong from ipckit").unwrap();
    assert_eq!(conn.recv_timeout(LIMIT).unwrap(), b"bye");
    conn.send(b"ciao").unwrap();
    let (stdout, stderr) = finish(child, "the C client");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["reply=pong from ipckit", "reply=ciao"], "{stderr}");
    let e = conn.recv_timeout(LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone);
}
