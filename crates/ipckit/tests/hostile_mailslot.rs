//! Mailslot readers against hostile writers (and writers against a
//! hostile fake reader), across real processes.
//!
//! Each test runs the reader (or a fake one, or a flood of raw
//! connections) in a child process: this test binary re-exec'd to run the
//! ignored test [`child`] in the role named by `IPCKIT_TEST_ROLE`. Children
//! print what they did on stdout, one line each, take commands on stdin and
//! exit when it closes; the parent kills and reaps them on drop. Every wait
//! is bounded by [`DEADLINE`]; nothing sleeps to synchronise.
//!
//! Wire constants are taken from `docs/PROTOCOL.md`, "Mailslots".

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::mailslot::{MailslotOptions, WriterOptions};
use ipckit::{ErrorKind, Limits, Namespace};

/// Bound on every wait: long for a loaded CI machine, short enough that a
/// hang fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// Selects a re-exec'd child's role.
const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";

/// Hello magic and the write header's kind.
const MAGIC: &[u8; 8] = b"IPCKSLOT";
const KIND_WRITE: u8 = 1;

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    match role.as_str() {
        "reader" => reader_role(),
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

/// A real mailslot `$NAME` with limits from the environment. It reads only
/// when told: each "recv" line reads one message and prints
/// `GOT <len> <first byte>`; "pending" prints `PENDING <count>`. Exits
/// when stdin closes.
fn reader_role() {
    raise_nofile(8192);
    let name = env("NAME").unwrap();
    let mut limits = Limits::new();
    if let Some(n) = env_num("MAX_CONN") {
        limits = limits
            .max_connections(n as usize)
            .max_connections_per_user(n as usize)
            .max_connections_per_process(n as usize);
    }
    if let Some(ms) = env_num("STALL_MS") {
        limits = limits.stall_timeout(Duration::from_millis(ms));
    }
    if let Some(n) = env_num("QUEUED_BYTES") {
        limits = limits.max_queued_bytes(n as usize);
    }
    let slot = MailslotOptions::new()
        .max_message_size(0)
        .limits(limits)
        .create(&name)
        .unwrap();
    say("READY");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.as_str() {
            "recv" => match slot.recv_timeout(DEADLINE) {
                Ok(m) => say(&format!(
                    "GOT {} {}",
                    m.len(),
                    m.first().map_or(-1, |b| i32::from(*b))
                )),
                Err(e) => say(&format!("GOT err {} {e}", e.kind())),
            },
            "pending" => say(&format!("PENDING {}", slot.pending().count)),
            other => panic!("unknown command {other}"),
        }
    }
}

/// A fake mailslot at `$SOCKET` that sends 8 of its 16 hello bytes to each
/// writer and then says nothing more.
fn half_hello_role() {
    let path = PathBuf::from(env("SOCKET").unwrap());
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(MAGIC);
            held.push(s);
        }
    });
    say("READY");
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// Open `$COUNT` raw connections to `$SOCKET` and keep them, idle; report
/// how many were accepted and refused.
fn hold_role() {
    let count = env_num("COUNT").unwrap();
    let limit = raise_nofile(count + 256);
    let count = count.min(limit.saturating_sub(128)) as usize;
    let path = PathBuf::from(env("SOCKET").unwrap());
    let mut held = Vec::with_capacity(count);
    let mut busy = 0;
    for _ in 0..count {
        let (s, hello) = raw_connect(&path);
        if hello[9] != 0 {
            busy += 1;
        }
        held.push(s);
    }
    say(&format!("HELD {count} busy={busy}"));
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

    /// Ask the reader for one message: `GOT <len> <first byte>`.
    fn recv(&mut self) -> String {
        self.tell("recv");
        self.expect("GOT ")
    }

    /// Ask the reader how many messages wait.
    fn pending(&mut self) -> usize {
        self.tell("pending");
        let l = self.expect("PENDING ");
        l["PENDING ".len()..].parse().unwrap()
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

/// A reader child for the mailslot `name`, created and ready.
fn reader(ns: &Namespace, name: &str, vars: &[(&str, String)]) -> Kid {
    let mut all = vec![("NAME", name.to_string())];
    all.extend(vars.iter().map(|(k, v)| (*k, v.clone())));
    let kid = Kid::start(ns, "reader", &all);
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
    assert_eq!(&hello[..8], MAGIC);
    (s, hello)
}

/// A write header announcing `len` payload bytes.
fn write_header(len: u32, timeout_ms: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = KIND_WRITE;
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[8..12].copy_from_slice(&timeout_ms.to_le_bytes());
    b
}

/// Whether the reader closed `s` (end of stream or reset) before the
/// deadline; panics on the deadline.
fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("the reader did not close the connection: {e}"),
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

/// One message from a well-behaved writer in this process.
fn good_send(ns: &Namespace, name: &str, msg: &[u8]) {
    WriterOptions::new()
        .namespace(ns)
        .timeout(Duration::from_secs(10))
        .open(name)
        .unwrap()
        .send(msg)
        .unwrap();
}

// ------------------------------------------------------------------ tests

/// (g) Writers that announce 1 GiB, send one byte and stall are dropped
/// after the stall timeout and pin no memory; a good writer gets through.
#[test]
fn g_writers_stalled_inside_a_huge_message_are_dropped() {
    let (_d, ns) = test_ns();
    let mut rx = reader(&ns, "stall", &[("STALL_MS", "500".into())]);
    good_send(&ns, "stall", b"warm");
    assert_eq!(rx.recv(), format!("GOT 4 {}", b'w'));
    let (_, rss_before) = proc_status(rx.pid());
    let path = ns.socket_path("stall");
    let start = Instant::now();
    let mut stalled: Vec<UnixStream> = (0..2)
        .map(|_| {
            let (mut s, _) = raw_connect(&path);
            s.write_all(&write_header(1 << 30, 1000)).unwrap();
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    good_send(&ns, "stall", b"good");
    for s in &mut stalled {
        assert!(closed_by_peer(s));
    }
    let dropped_after = start.elapsed();
    let (_, rss_after) = proc_status(rx.pid());
    eprintln!(
        "stalled writers: dropped {dropped_after:?} after connecting; reader VmRSS {rss_before} KiB before, {rss_after} KiB after 2 writers announced 1 GiB each"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(rx.recv(), format!("GOT 4 {}", b'g'));
    assert_eq!(rx.pending(), 0, "a stalled writer's message was queued");
    good_send(&ns, "stall", b"after");
    assert_eq!(rx.recv(), format!("GOT 5 {}", b'a'));
}

/// (h) 2000 idle writer connections cost the reader no threads, and a
/// writer from another process still gets through.
#[test]
fn h_two_thousand_idle_writers_cost_no_threads() {
    let (_d, ns) = test_ns();
    let mut rx = reader(&ns, "idle", &[("MAX_CONN", "4096".into())]);
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
    good_send(&ns, "idle", b"through");
    assert_eq!(rx.recv(), format!("GOT 7 {}", b't'));
    let (threads_after, _) = proc_status(rx.pid());
    eprintln!(
        "idle writers: reader threads {threads_before} at start, {threads_idle} with {n} idle connections, {threads_after} after a write"
    );
    assert!(
        threads_idle <= 10,
        "{threads_idle} threads for {n} idle connections"
    );
    assert!(threads_after <= 10, "{threads_after} threads");
}

/// (i) With nobody reading, writes stop being queued at
/// `max_queued_bytes` (`Full` after the writer's timeout); the reader then
/// reads every queued one, and writing works again.
#[test]
fn i_writes_over_the_queued_bytes_are_full() {
    const LIMIT: usize = 1 << 20;
    const CHUNK: usize = 256 << 10;
    let (_d, ns) = test_ns();
    let mut rx = reader(&ns, "queue", &[("QUEUED_BYTES", LIMIT.to_string())]);
    let (_, rss_before) = proc_status(rx.pid());
    let mut w = WriterOptions::new()
        .namespace(&ns)
        .timeout(Duration::from_millis(200))
        .open("queue")
        .unwrap();
    let mut queued = 0;
    let mut full = 0;
    for i in 0..8u8 {
        match w.send(&vec![i; CHUNK]) {
            Ok(()) => {
                assert_eq!(full, 0, "a write queued after one was refused");
                queued += 1;
            }
            Err(e) if e.kind() == ErrorKind::Full => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let (_, rss_full) = proc_status(rx.pid());
    eprintln!(
        "queued bytes: {queued} writes of {CHUNK} bytes queued, {full} full; reader VmRSS {rss_before} KiB before, {rss_full} KiB with the queue full"
    );
    assert_eq!(queued, LIMIT / CHUNK, "1 MiB holds 4 messages of 256 KiB");
    assert_eq!(full, 8 - LIMIT / CHUNK);
    assert_eq!(rx.pending(), queued);
    for i in 0..queued {
        assert_eq!(rx.recv(), format!("GOT {CHUNK} {i}"));
    }
    assert_eq!(rx.pending(), 0);
    w.send(&vec![9; CHUNK]).unwrap();
    assert_eq!(rx.recv(), format!("GOT {CHUNK} 9"));
}

/// (j) A fake mailslot that sends half its hello and stalls makes `open`
/// fail in bounded time instead of hanging.
#[test]
fn j_half_hello_then_silence_fails_open() {
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
    let start = Instant::now();
    std::thread::spawn(move || {
        let r = WriterOptions::new()
            .namespace(&ns2)
            .timeout(Duration::from_secs(1))
            .open("half");
        let _ = tx.send(r.map(|_| ()));
    });
    let r = rx
        .recv_timeout(DEADLINE)
        .expect("open hung on a half hello");
    let e = r.unwrap_err();
    eprintln!("half hello: open failed after {:?}: {e}", start.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("half"));
}
