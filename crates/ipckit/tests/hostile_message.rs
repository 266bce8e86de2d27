//! Window-message receivers against hostile senders, across real processes.
//!
//! Each test runs the receiver (or a fake one, or a flood of raw
//! connections) in a child process: this test binary re-exec'd to run the
//! ignored test [`child`] in the role named by `IPCKIT_TEST_ROLE`. Children
//! print what they did on stdout, one line each, and exit when their stdin
//! closes; the parent kills and reaps them on drop. Every wait is bounded
//! by [`DEADLINE`]; nothing sleeps to synchronise.
//!
//! Wire constants are taken from `docs/PROTOCOL.md`, "Window messages".

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::message::{Messenger, ReceiverOptions, Reply};
use ipckit::{ErrorKind, Limits, Namespace};

/// Bound on every wait: long for a loaded CI machine, short enough that a
/// hang fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// Selects a re-exec'd child's role.
const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";

/// Request kinds, response kinds and error codes of the wire.
const REQ_SEND: u8 = 1;
const RESP_REPLY: u8 = 1;
const RESP_ERROR: u8 = 3;
const ERR_TOO_LARGE: u8 = 2;
/// Hello status byte (offset 9): 1 = busy.
const STATUS_BUSY: u8 = 1;

/// Message ids the child receiver treats specially.
const ID_PANIC: u32 = 0xDEAD;
const ID_BLOCK: u32 = 0xB10C;

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    match role.as_str() {
        "receiver" => receiver_role(),
        "half-hello" => half_hello_role(),
        "hold" => hold_role(),
        other => panic!("unknown role {other}"),
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn env_num(key: &str) -> Option<u64> {
    env(key).map(|v| v.parse().unwrap_or_else(|_| panic!("{key}={v}")))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Raise this process's soft descriptor limit as far as `want` (or the
/// hard limit); returns the new soft limit.
fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let soft = l.current.unwrap_or(u64::MAX);
    let target = want.min(l.maximum.unwrap_or(u64::MAX));
    if soft >= target {
        return soft;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: l.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
    target
}

/// A real receiver named `$NAME` with limits from the environment. Its
/// handler panics on [`ID_PANIC`], blocks on [`ID_BLOCK`] until the parent
/// writes a line, and otherwise answers the data's length. Exits when
/// stdin closes.
fn receiver_role() {
    raise_nofile(8192);
    let name = env("NAME").unwrap();
    let mut limits = Limits::new();
    if let Some(n) = env_num("MAX_CONN") {
        limits = limits
            .max_connections(n as usize)
            .max_connections_per_user(n as usize);
    }
    if let Some(n) = env_num("PER_PROCESS") {
        limits = limits.max_connections_per_process(n as usize);
    }
    if let Some(ms) = env_num("STALL_MS") {
        limits = limits.stall_timeout(Duration::from_millis(ms));
    }
    if let Some(n) = env_num("QUEUED_BYTES") {
        limits = limits.max_queued_bytes(n as usize);
    }
    let mut opts = ReceiverOptions::new();
    opts.limits(limits);
    if let Some(n) = env_num("MAX_DATA") {
        opts.max_data(n as usize);
    }
    let (gate_tx, gate) = mpsc::channel::<()>();
    let _rx = opts
        .register(&name, move |m| {
            match m.id {
                ID_PANIC => panic!("boom from the handler"),
                ID_BLOCK => {
                    let _ = gate.recv_timeout(DEADLINE);
                }
                _ => {}
            }
            Reply::new(m.data.len() as i64)
        })
        .unwrap();
    say("READY");
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let _ = gate_tx.send(());
    }
}

/// A fake receiver at `$SOCKET` that sends 8 of its 16 hello bytes to each
/// sender and then says nothing more.
fn half_hello_role() {
    let path = PathBuf::from(env("SOCKET").unwrap());
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(b"IPCKWMSG");
            held.push(s);
        }
    });
    say("READY");
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// Open `$COUNT` raw connections to `$SOCKET` and keep them, idle; report
/// how many were accepted and refused. With `$TRY_SEND`, then send a
/// message to that receiver through the library and report the outcome,
/// and open one more raw connection and report its hello status.
fn hold_role() {
    let count = env_num("COUNT").unwrap();
    let limit = raise_nofile(count + 256);
    let count = count.min(limit.saturating_sub(128)) as usize;
    let path = PathBuf::from(env("SOCKET").unwrap());
    let mut held = Vec::with_capacity(count);
    let mut busy = 0;
    for _ in 0..count {
        let (s, hello) = raw_connect(&path);
        if hello[9] == STATUS_BUSY {
            busy += 1;
        }
        held.push(s);
    }
    say(&format!("HELD {count} busy={busy}"));
    if let Some(name) = env("TRY_SEND") {
        let r = Messenger::new().send(&name, 1, b"", Duration::from_secs(5));
        match r {
            Ok(r) => say(&format!("SEND ok {}", r.result)),
            Err(e) => say(&format!("SEND {} {e}", e.kind())),
        }
        let (mut s, hello) = raw_connect(&path);
        let closed = matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_));
        say(&format!("EXTRA status={} closed={closed}", hello[9]));
    }
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
    drop(held);
}

// ----------------------------------------------------------------- parent

/// A child process: stdout lines arrive on a channel; killed and reaped
/// on drop.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Kid {
    fn start(ns: &Namespace, role: &str, vars: &[(&str, String)]) -> Kid {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new(exe);
        c.args([
            "--exact",
            "child",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        // (The receiver's expected handler panic prints one line, no trace.)
        .env("RUST_BACKTRACE", "0")
        .env(ipckit::name::NAMESPACE_ENV, ns.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in vars {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stdin = child.stdin.take();
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
        Kid {
            child,
            stdin,
            lines,
        }
    }

    /// The rest of the next line holding `prefix`, from `prefix` on
    /// (other lines, like the test harness's, are skipped).
    fn expect(&self, prefix: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // The harness prints "test child ... " without a newline
                // before the child's first line.
                Ok(l) => {
                    if let Some(i) = l.find(prefix) {
                        return l[i..].to_string();
                    }
                }
                Err(e) => panic!("no line starting with {prefix:?} from the child: {e}"),
            }
        }
    }

    fn tell(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh namespace for one test.
fn test_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path().join("ns")).unwrap();
    (dir, ns)
}

/// A receiver child named `name`, registered and ready.
fn receiver(ns: &Namespace, name: &str, vars: &[(&str, String)]) -> Kid {
    let mut all = vec![("NAME", name.to_string())];
    all.extend(vars.iter().map(|(k, v)| (*k, v.clone())));
    let kid = Kid::start(ns, "receiver", &all);
    kid.expect("READY");
    kid
}

/// Connect to the socket at `path` and read the 16-byte hello.
fn raw_connect(path: &Path) -> (UnixStream, [u8; 16]) {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"IPCKWMSG");
    (s, hello)
}

fn request(kind: u8, id: u32, len: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = kind;
    b[4..8].copy_from_slice(&id.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

/// Read one response: `(kind, code, result, body)`.
fn response(s: &mut UnixStream) -> (u8, u8, i64, Vec<u8>) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let result = i64::from_le_bytes(h[8..16].try_into().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (h[0], h[1], result, body)
}

/// Whether the receiver closed `s` (end of stream or reset) before the
/// deadline.
fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("the receiver did not close the connection: {e}"),
        }
    }
}

/// `(threads, VmRSS in KiB)` of process `pid`.
fn proc_status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("Threads:"), field("VmRSS:"))
}

/// A well-behaved sender in this process: one `send`, its result.
fn good_send(ns: &Namespace, name: &str) -> i64 {
    Messenger::new()
        .namespace(ns)
        .send(name, 7, b"hello", Duration::from_secs(10))
        .unwrap()
        .result
}

// ------------------------------------------------------------------ tests

/// (a) A receiver that sends half its hello and stalls makes `send` time
/// out at its deadline instead of hanging.
#[test]
fn a_half_hello_then_silence_is_a_timeout_not_a_hang() {
    let (_d, ns) = test_ns();
    let socket = ns.socket_path("half");
    let kid = Kid::start(
        &ns,
        "half-hello",
        &[("SOCKET", socket.display().to_string())],
    );
    kid.expect("READY");
    let ns2 = ns.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = Messenger::new()
            .namespace(&ns2)
            .send("half", 1, b"x", Duration::from_secs(1));
        let _ = tx.send(r);
    });
    let r = rx
        .recv_timeout(DEADLINE)
        .expect("send hung on a half hello");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("half"));
}

/// (b) 2000 idle connections cost the receiver no threads, and a sender
/// from another process is still answered.
#[test]
fn two_thousand_idle_connections_cost_no_threads() {
    let (_d, ns) = test_ns();
    let rx = receiver(
        &ns,
        "idle",
        &[("MAX_CONN", "4096".into()), ("PER_PROCESS", "4096".into())],
    );
    let (threads_before, _) = proc_status(rx.pid());
    let flood = Kid::start(
        &ns,
        "hold",
        &[
            ("SOCKET", ns.socket_path("idle").display().to_string()),
            ("COUNT", "2000".into()),
        ],
    );
    let held = flood.expect("HELD ");
    let n: usize = held.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        n >= 900,
        "the flooder could open only {n} descriptors: {held}"
    );
    assert!(held.ends_with("busy=0"), "{held}");
    let (threads_idle, _) = proc_status(rx.pid());
    assert_eq!(good_send(&ns, "idle"), 5);
    let (threads_after, _) = proc_status(rx.pid());
    eprintln!(
        "receiver threads: {threads_before} at start, {threads_idle} with {n} idle connections, {threads_after} after a send"
    );
    assert!(
        threads_idle <= 8,
        "{threads_idle} threads for {n} idle connections"
    );
    assert!(threads_after <= 8, "{threads_after} threads");
}

/// (c) A sender that announces 16 MiB, sends one byte and stalls is
/// dropped after the stall timeout, pins no memory, and others are served.
#[test]
fn a_sender_stalled_inside_a_big_message_is_dropped() {
    let (_d, ns) = test_ns();
    let rx = receiver(&ns, "stall", &[("STALL_MS", "500".into())]);
    assert_eq!(good_send(&ns, "stall"), 5);
    let (_, rss_before) = proc_status(rx.pid());
    let path = ns.socket_path("stall");
    let mut stalled: Vec<UnixStream> = (0..8)
        .map(|_| {
            let (mut s, _) = raw_connect(&path);
            s.write_all(&request(REQ_SEND, 1, 16 << 20)).unwrap();
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    for s in &mut stalled {
        assert!(closed_by_peer(s));
    }
    let (_, rss_after) = proc_status(rx.pid());
    eprintln!(
        "receiver VmRSS: {rss_before} KiB before, {rss_after} KiB after 8 senders announced 16 MiB each and stalled"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(good_send(&ns, "stall"), 5);
}

/// (d) Posts over the receiver's queued-bytes limit get `Full`; the queue
/// (and the receiver's memory) stays bounded; it drains once the handler
/// moves on.
#[test]
fn a_post_flood_over_the_queued_bytes_is_full() {
    let (_d, ns) = test_ns();
    let mut rx = receiver(&ns, "flood", &[("QUEUED_BYTES", (1 << 20).to_string())]);
    let (_, rss_before) = proc_status(rx.pid());
    let mut w = Messenger::new().namespace(&ns).connect("flood").unwrap();
    // The handler takes this (empty) post and blocks until told.
    w.post(ID_BLOCK, b"").unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut queued = 0;
    let mut full = 0;
    for _ in 0..200 {
        match w.post(1, &chunk) {
            Ok(()) => queued += 1,
            Err(e) if e.kind() == ErrorKind::Full => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let (_, rss_flooded) = proc_status(rx.pid());
    eprintln!(
        "post flood: {queued} queued, {full} full; receiver VmRSS {rss_before} KiB before, {rss_flooded} KiB with the queue full"
    );
    assert_eq!(queued, 16, "1 MiB holds 16 posts of 64 KiB");
    assert_eq!(full, 200 - 16);
    assert!(
        rss_flooded < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_flooded} KiB"
    );
    rx.tell("release");
    let until = Instant::now() + DEADLINE;
    loop {
        match w.post(2, &chunk) {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::Full && Instant::now() < until => {
                // The handler is still draining the queue: poll.
                std::thread::yield_now();
            }
            Err(e) => panic!("the queue did not drain: {e}"),
        }
    }
    assert_eq!(good_send(&ns, "flood"), 5);
}

/// (e) A handler that panics is answered as an error naming the panic,
/// and the receiver goes on.
#[test]
fn a_handler_panic_comes_back_as_an_error() {
    let (_d, ns) = test_ns();
    let _rx = receiver(&ns, "panic", &[]);
    let mut w = Messenger::new().namespace(&ns).connect("panic").unwrap();
    let e = w.send(ID_PANIC, b"", Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.to_string().contains("boom from the handler"), "{e}");
    assert_eq!(
        w.send(1, b"abc", Duration::from_secs(10)).unwrap().result,
        3
    );
    assert_eq!(good_send(&ns, "panic"), 5);
}

/// (f) One process holding its per-process share of connections is
/// refused (a busy hello, `Busy`), and does not lock out another process.
#[test]
fn one_process_at_its_connection_limit_does_not_lock_out_others() {
    let (_d, ns) = test_ns();
    let _rx = receiver(&ns, "share", &[("PER_PROCESS", "4".into())]);
    let hog = Kid::start(
        &ns,
        "hold",
        &[
            ("SOCKET", ns.socket_path("share").display().to_string()),
            ("COUNT", "4".into()),
            ("TRY_SEND", "share".into()),
        ],
    );
    assert_eq!(hog.expect("HELD "), "HELD 4 busy=0");
    let sent = hog.expect("SEND ");
    assert!(sent.starts_with("SEND busy "), "{sent}");
    assert_eq!(hog.expect("EXTRA "), "EXTRA status=1 closed=true");
    assert_eq!(good_send(&ns, "share"), 5);
    let mut w = Messenger::new().namespace(&ns).connect("share").unwrap();
    assert_eq!(w.send(1, b"ab", Duration::from_secs(10)).unwrap().result, 2);
}

/// Data over `max_data` is read and dropped as it arrives, answered
/// "too large", and the connection goes on; a malformed header closes it.
#[test]
fn oversized_data_is_refused_and_a_bad_header_closes() {
    let (_d, ns) = test_ns();
    let _rx = receiver(&ns, "big", &[("MAX_DATA", "1024".into())]);
    let path = ns.socket_path("big");
    let (mut s, hello) = raw_connect(&path);
    assert_eq!(hello[9], 0, "status ok");
    assert_eq!(u32::from_le_bytes(hello[12..16].try_into().unwrap()), 1024);
    s.write_all(&request(REQ_SEND, 1, 4096)).unwrap();
    s.write_all(&[0u8; 4096]).unwrap();
    let (kind, code, _, text) = response(&mut s);
    assert_eq!(
        (kind, code),
        (RESP_ERROR, ERR_TOO_LARGE),
        "{}",
        String::from_utf8_lossy(&text)
    );
    s.write_all(&request(REQ_SEND, 9, 3)).unwrap();
    s.write_all(b"abc").unwrap();
    let (kind, _, result, _) = response(&mut s);
    assert_eq!((kind, result), (RESP_REPLY, 3));
    s.write_all(&[0xFF; 16]).unwrap();
    assert!(closed_by_peer(&mut s));
    assert_eq!(good_send(&ns, "big"), 5);
}
