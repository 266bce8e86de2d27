//! Hostile peers against named pipes, across real processes.
//!
//! The server (or a fake one) runs in a child process: this test binary
//! re-exec'd in a role (`IPCKIT_TEST_ROLE`, see [`child_role`]). The test
//! process is the hostile peer, or a good client checking that the server
//! still serves. Every wait is bounded; children are killed on drop.
//!
//! - a fake server that sends half its hello and stalls: `connect` ends
//!   with `Timeout`, never hangs;
//! - 2000 connections that never answer the shared-memory offer: dropped
//!   after the handshake deadline, no thread each, good clients served;
//! - descriptor exhaustion: the server does not spin, and serves again
//!   once the flood is gone;
//! - per-process limit: one process at its limit does not lock out
//!   another; refused peers see `Busy`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::pipe::{ClientOptions, NamedPipe, ServerOptions};
use ipckit::{ErrorKind, Limits, Namespace};

/// Generous bound for every wait: a hang fails instead of stalling CI.
const DEADLINE: Duration = Duration::from_secs(30);
/// Selects the role of a re-exec'd child.
const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";
/// The pipe a child serves or connects to.
const PIPE_ENV: &str = "IPCKIT_TEST_PIPE";
/// Settings passed to a server child (see [`child_role`]).
const HANDSHAKE_ENV: &str = "IPCKIT_TEST_HANDSHAKE_MS";
const PER_PROCESS_ENV: &str = "IPCKIT_TEST_PER_PROCESS";
const PER_USER_ENV: &str = "IPCKIT_TEST_PER_USER";
const TOTAL_ENV: &str = "IPCKIT_TEST_MAX_CONNECTIONS";
const INSTANCES_ENV: &str = "IPCKIT_TEST_INSTANCES";
const NOFILE_ENV: &str = "IPCKIT_TEST_NOFILE";
const COUNT_ENV: &str = "IPCKIT_TEST_COUNT";
/// What children print before a line meant for the parent (the test
/// harness writes its own lines on the same stdout).
const MARK: &str = "@@";

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A child process, killed and reaped on drop; its stdout lines that carry
/// [`MARK`] are forwarded to [`Proc::line`].
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// This test binary re-exec'd to run [`child_role`] as `role` in `ns`,
    /// with `env` set (and the shared-memory opt-out cleared).
    fn spawn(role: &str, ns: &Namespace, env: &[(&str, String)]) -> Proc {
        let exe = std::env::current_exe().expect("find the test binary");
        let mut c = Command::new(exe);
        c.args([
            "--exact",
            "child_role",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(ipckit::name::NAMESPACE_ENV, ns.dir())
        .env_remove(ipckit::transport::TRANSPORT_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("start the child");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Some(i) = line.find(MARK) {
                    if tx.send(line[i + MARK.len()..].to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Proc { child, lines }
    }

    /// The next marked line, waiting at most [`DEADLINE`].
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(l) => l,
            Err(e) => {
                let status = self.child.try_wait();
                panic!(
                    "no line from child {} ({e}); status {status:?}",
                    self.child.id()
                )
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh namespace in a temporary directory.
fn namespace() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let ns = Namespace::at(dir.path().join("ns")).expect("create the namespace");
    (dir, ns)
}

/// An echo server child named `name`, started and confirmed serving.
fn serve(ns: &Namespace, name: &str, env: &[(&str, String)]) -> Proc {
    let mut env = env.to_vec();
    env.push((PIPE_ENV, name.to_string()));
    let mut p = Proc::spawn("server", ns, &env);
    assert_eq!(p.line(), "ready");
    p
}

/// Poll `cond` until it holds, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Run `f` on a thread; panic (instead of hanging) if it takes over `limit`.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}: it hung"))
}

/// A good client: connects (waiting up to [`DEADLINE`]) and gets an echo.
fn good_client(ns: &Namespace, name: &str) {
    let ns = ns.clone();
    let name = name.to_string();
    bounded(DEADLINE * 2, move || {
        let mut c = ClientOptions::new()
            .namespace(&ns)
            .timeout(DEADLINE)
            .connect(&name)
            .unwrap_or_else(|e| panic!("a good client cannot connect: {e}"));
        assert_eq!(c.transact(b"still serving").unwrap(), b"still serving");
    });
}

// ---------------------------------------------------------------------------
// /proc and limits
// ---------------------------------------------------------------------------

fn threads_of(pid: u32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line")
}

/// CPU time (user + system) the process used so far.
fn cpu_of(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest: Vec<&str> = s[s.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of /proc CPU times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// How many of the descriptor numbers below `limit` the process has open.
fn fds_below(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&n| n < limit)
            .count()
    })
}

/// Share of one core the process used over `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_of(pid), Instant::now());
    // Measuring over a window, not synchronising: nothing waits on this.
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu_of(pid).saturating_sub(c0);
    used.as_secs_f64() / t0.elapsed().as_secs_f64()
}

/// Raise this process's descriptor limit to at least `want` (if the hard
/// limit allows); returns the soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    let cur = l.current.unwrap_or(u64::MAX);
    if cur >= want {
        return cur;
    }
    l.current = Some(l.maximum.map_or(want, |m| m.min(want)));
    let _ = setrlimit(Resource::Nofile, l);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Connect a raw socket and read the server's hello.
fn raw_connect(path: &Path) -> (UnixStream, [u8; 16]) {
    let mut s = UnixStream::connect(path).expect("raw connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).expect("read the hello");
    (s, hello)
}

/// Wait (bounded by the socket's read timeout) for the server to close
/// `s`; `true` if it did (end-of-stream or reset), `false` if bytes came.
fn closed_by_server(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// (a) A fake server sends 8 of its 16 hello bytes and goes silent: the
/// client gives up with `Timeout` (within its timeout plus the hello grace)
/// instead of waiting forever.
#[test]
fn half_a_hello_then_silence_is_a_timeout_not_a_hang() {
    let (_d, ns) = namespace();
    let mut fake = Proc::spawn("half-hello", &ns, &[(PIPE_ENV, "fake".to_string())]);
    assert_eq!(fake.line(), "ready");
    let ns2 = ns.clone();
    let (r, took) = bounded(DEADLINE, move || {
        let t = Instant::now();
        let r = ClientOptions::new()
            .namespace(&ns2)
            .timeout(Duration::from_secs(1))
            .connect("fake");
        (r.map(|_| ()), t.elapsed())
    });
    let e = r.expect_err("half a hello must not make a connection");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    eprintln!("half a hello: connect gave up after {took:?}: {e}");
}

/// (b) 2000 connections that take the hello and never answer the
/// shared-memory offer cost the server no thread each, are all dropped
/// after the handshake deadline, and a good client is served meanwhile.
#[test]
fn unanswered_shared_memory_offers_are_dropped_without_a_thread_each() {
    let (_d, ns) = namespace();
    let have = raise_nofile(2500);
    let n = 2000.min(have.saturating_sub(400) as usize);
    assert!(
        n >= 500,
        "this test needs about 2400 descriptors; the limit is {have}"
    );
    let server = serve(
        &ns,
        "flood",
        &[
            (HANDSHAKE_ENV, "2000".into()),
            (TOTAL_ENV, "4096".into()),
            (PER_PROCESS_ENV, "4096".into()),
            (PER_USER_ENV, "4096".into()),
            (NOFILE_ENV, "4400".into()),
        ],
    );
    let path = ns.socket_path("flood");
    let threads_before = threads_of(server.pid());
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, hello) = raw_connect(&path);
        assert_eq!(&hello[..8], b"IPCKPIPE");
        assert_eq!(hello[9], 0, "status ok");
        assert_ne!(hello[10] & 0x80, 0, "the server offers shared memory");
        flood.push(s);
    }
    let flooded_at = Instant::now();
    let threads_flooded = threads_of(server.pid());
    good_client(&ns, "flood");
    let mut dropped = 0;
    for s in &mut flood {
        if closed_by_server(s) {
            dropped += 1;
        }
    }
    let took = flooded_at.elapsed();
    let threads_after = threads_of(server.pid());
    eprintln!(
        "{n} unanswered offers: server threads {threads_before} before, {threads_flooded} flooded, \
         {threads_after} after; all {dropped} dropped within {took:?} of the last connect"
    );
    assert_eq!(dropped, n, "every unanswered connection is dropped");
    assert!(
        threads_flooded <= threads_before + 4,
        "{threads_flooded} threads with {n} pending handshakes (from {threads_before})"
    );
    good_client(&ns, "flood");
}

/// (c) A server out of descriptors does not spin on its listener, and
/// serves again once the flood is gone.
#[test]
fn out_of_descriptors_the_server_waits_instead_of_spinning() {
    const NOFILE: usize = 64;
    let (_d, ns) = namespace();
    let server = serve(
        &ns,
        "fds",
        &[
            (HANDSHAKE_ENV, "60000".into()),
            (NOFILE_ENV, NOFILE.to_string()),
        ],
    );
    let pid = server.pid();
    let idle = cpu_share(pid, Duration::from_secs(1));
    let path = ns.socket_path("fds");
    // More connections than the server has descriptors: the rest wait in
    // the listen backlog, keeping the listener readable.
    let flood: Vec<UnixStream> = (0..3 * NOFILE)
        .map(|_| UnixStream::connect(&path).expect("connect (the backlog holds it)"))
        .collect();
    wait_until(DEADLINE, "the server has used all its descriptors", || {
        fds_below(pid, NOFILE) == NOFILE
    });
    let exhausted = cpu_share(pid, Duration::from_secs(2));
    eprintln!(
        "out of descriptors ({} of {NOFILE} open): server CPU {:.1}% idle, {:.1}% exhausted",
        fds_below(pid, NOFILE),
        idle * 100.0,
        exhausted * 100.0
    );
    assert!(
        exhausted < 0.3,
        "the server used {:.0}% of a core while out of descriptors: it spins",
        exhausted * 100.0
    );
    drop(flood);
    let t = Instant::now();
    good_client(&ns, "fds");
    eprintln!(
        "after the flood: a good client served within {:?}",
        t.elapsed()
    );
}

/// (d, e) A process at `max_connections_per_process` is refused with
/// `Busy`, and another process still connects; a raw refused peer gets a
/// hello with status 1 (busy) and then end-of-stream.
#[test]
fn one_process_at_its_limit_does_not_lock_out_another() {
    let (_d, ns) = namespace();
    let _server = serve(&ns, "per", &[(PER_PROCESS_ENV, "4".into())]);
    let mut holder = Proc::spawn(
        "holder",
        &ns,
        &[(PIPE_ENV, "per".into()), (COUNT_ENV, "4".into())],
    );
    assert_eq!(holder.line(), "held 4; next: Busy");
    // This process is another pid: not locked out.
    let mut c = ClientOptions::new()
        .namespace(&ns)
        .timeout(Duration::ZERO)
        .connect("per")
        .unwrap_or_else(|e| panic!("another process is locked out: {e}"));
    assert_eq!(c.transact(b"mine").unwrap(), b"mine");
    // At this process's limit too, a raw peer sees the busy hello and the end.
    let more: Vec<NamedPipe> = (0..3)
        .map(|_| ClientOptions::new().namespace(&ns).connect("per").unwrap())
        .collect();
    let (mut raw, hello) = raw_connect(&ns.socket_path("per"));
    assert_eq!(&hello[..8], b"IPCKPIPE");
    assert_eq!(hello[9], 1, "status busy");
    assert!(closed_by_server(&mut raw));
    let e = ClientOptions::new()
        .namespace(&ns)
        .connect("per")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    // Connections given back free their places.
    drop(more);
    drop(c);
    good_client(&ns, "per");
}

/// (e) Every instance in use: the next client gets `Busy` at once, and a
/// place frees up when a connection ends.
#[test]
fn instances_exhausted_is_busy_until_one_ends() {
    let (_d, ns) = namespace();
    let _server = serve(&ns, "one", &[(INSTANCES_ENV, "1".into())]);
    let mut first = ClientOptions::new()
        .namespace(&ns)
        .timeout(DEADLINE)
        .connect("one")
        .unwrap();
    assert_eq!(first.transact(b"1").unwrap(), b"1");
    let e = ClientOptions::new()
        .namespace(&ns)
        .connect("one")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    let (mut raw, hello) = raw_connect(&ns.socket_path("one"));
    assert_eq!(hello[9], 1, "status busy");
    assert!(closed_by_server(&mut raw));
    drop(first);
    good_client(&ns, "one");
}

/// A client that declines the shared-memory offer and sends its first
/// message in the same write (the server's loop reads both at once) loses
/// nothing; neither does one that ignores the offer and sends a message
/// first.
#[test]
fn a_message_arriving_with_the_answer_to_the_offer_is_not_lost() {
    let (_d, ns) = namespace();
    let _server = serve(&ns, "eager", &[]);
    let frame = |kind: u8, body: &[u8]| {
        let mut f = vec![kind, 0, 0, 0];
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(body);
        f
    };
    let echo = |s: &mut UnixStream| {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).expect("an echo");
        let mut body = vec![0u8; u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize];
        s.read_exact(&mut body).unwrap();
        body
    };
    let path = ns.socket_path("eager");
    let (mut s, hello) = raw_connect(&path);
    assert_ne!(hello[10] & 0x80, 0, "the server offers shared memory");
    let mut bytes = frame(3, b"");
    bytes.extend(frame(1, b"declined"));
    s.write_all(&bytes).unwrap();
    assert_eq!(echo(&mut s), b"declined");
    let (mut s, _) = raw_connect(&path);
    let mut bytes = frame(1, b"ignored the offer");
    bytes.extend(frame(1, b"and sent more"));
    s.write_all(&bytes).unwrap();
    assert_eq!(echo(&mut s), b"ignored the offer");
    assert_eq!(echo(&mut s), b"and sent more");
}

// ---------------------------------------------------------------------------
// The re-exec'd child
// ---------------------------------------------------------------------------

fn env_num(key: &str) -> Option<u64> {
    std::env::var(key)
        .ok()
        .map(|v| v.parse().expect("a number"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// Set this process's soft descriptor limit to `n` (within the hard one).
fn set_nofile(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = Some(l.maximum.map_or(n, |m| m.min(n)));
    setrlimit(Resource::Nofile, l).expect("setrlimit");
}

/// Block until the parent closes our stdin (or kills us).
fn wait_for_parent() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

/// Runs only when re-exec'd by a test above; a plain
/// `cargo test -- --ignored` finds no role and returns.
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let name = std::env::var(PIPE_ENV).expect("the pipe's name");
    match role.as_str() {
        // An echo server with the limits the parent asked for.
        "server" => {
            if let Some(n) = env_num(NOFILE_ENV) {
                set_nofile(n);
            }
            let mut limits = Limits::new();
            if let Some(ms) = env_num(HANDSHAKE_ENV) {
                limits = limits.handshake_timeout(Duration::from_millis(ms));
            }
            if let Some(n) = env_num(PER_PROCESS_ENV) {
                limits = limits.max_connections_per_process(n as usize);
            }
            if let Some(n) = env_num(PER_USER_ENV) {
                limits = limits.max_connections_per_user(n as usize);
            }
            if let Some(n) = env_num(TOTAL_ENV) {
                limits = limits.max_connections(n as usize);
            }
            let mut opts = ServerOptions::new();
            opts.limits(limits);
            if let Some(n) = env_num(INSTANCES_ENV) {
                opts.max_instances(n as usize);
            }
            let server = opts.create(&name).expect("create the server");
            say("ready");
            while let Ok(mut conn) = server.accept() {
                std::thread::spawn(move || {
                    while let Ok(m) = conn.recv() {
                        if conn.send(&m).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        // A fake server: sends the first 8 bytes of a hello to everyone
        // who connects, then nothing.
        "half-hello" => {
            let ns = Namespace::from_env().unwrap();
            let l = std::os::unix::net::UnixListener::bind(ns.socket_path(&name)).unwrap();
            say("ready");
            let mut held = Vec::new();
            for s in l.incoming() {
                let mut s = s.unwrap();
                s.write_all(b"IPCKPIPE").unwrap();
                held.push(s);
            }
        }
        // Hold COUNT connections, try one more, report, wait.
        "holder" => {
            let n = env_num(COUNT_ENV).unwrap() as usize;
            let held: Vec<NamedPipe> = (0..n)
                .map(|_| {
                    ClientOptions::new()
                        .timeout(DEADLINE)
                        .connect(&name)
                        .expect("connect within the limit")
                })
                .collect();
            let next = match ClientOptions::new().connect(&name) {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("{:?}", e.kind()),
            };
            say(&format!("held {}; next: {next}", held.len()));
            wait_for_parent();
        }
        other => panic!("unknown child role {other}"),
    }
}
