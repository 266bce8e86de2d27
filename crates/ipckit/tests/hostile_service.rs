//! Services against hostile clients (and a hostile fake server), across
//! real processes.
//!
//! Each test runs the server (or a fake one, or a flood of raw
//! connections) in a child process: this test binary re-exec'd to run the
//! ignored test [`child`] in the role named by `IPCKIT_TEST_ROLE`. Children
//! print what they did on stdout, one line each, and exit when their stdin
//! closes; the parent kills and reaps them on drop. Every wait is bounded
//! by [`DEADLINE`]; nothing sleeps to synchronise (the server's `block`
//! method waits for the parent's word instead).
//!
//! Wire constants are taken from `docs/PROTOCOL.md`, "Services (RPC)".

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ipckit::service::{Client, Describe, Server, DESCRIBE};
use ipckit::{ErrorKind, Limits, Namespace, Transport};

/// Bound on every wait: long for a loaded CI machine, short enough that a
/// hang fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// Selects a re-exec'd child's role.
const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";

/// Hello magic, its status byte (offset 9) and the frame kinds.
const MAGIC: &[u8; 8] = b"IPCKSERV";
const HEADER_LEN: usize = 24;
const KIND_CALL: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_ERROR: u8 = 3;
const ENC_JSON: u8 = 1;
/// Error code: too many calls in flight on the connection.
const CODE_BUSY: i64 = -32001;

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    match role.as_str() {
        "server" => server_role(),
        "half-hello" => half_hello_role(),
        "hold" => hold_role(),
        "hold-clients" => hold_clients_role(),
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

/// A gate the `block` method waits on until the parent says "release".
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    /// Handlers waiting in `block` now.
    blocked: AtomicU64,
}

impl Gate {
    fn wait(&self) {
        let until = Instant::now() + DEADLINE;
        let mut open = self.open.lock().unwrap();
        while !*open {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            open = self.cv.wait_timeout(open, left).unwrap().0;
        }
    }
}

/// A real server named `$NAME` with limits from the environment and the
/// methods `echo`, `add`, `sleep` (ms), `block` (waits for the parent's
/// "release" line, answers 1) and `blocked` (how many wait in `block`).
/// Exits when stdin closes.
fn server_role() {
    raise_nofile(8192);
    let name = env("NAME").unwrap();
    let mut limits = Limits::new();
    if let Some(n) = env_num("MAX_CONN") {
        limits = limits
            .max_connections(n as usize)
            .max_connections_per_user(n as usize)
            .max_connections_per_process(n as usize);
    }
    if let Some(n) = env_num("PER_PROCESS") {
        limits = limits.max_connections_per_process(n as usize);
    }
    if let Some(ms) = env_num("STALL_MS") {
        limits = limits.stall_timeout(Duration::from_millis(ms));
    }
    if let Some(n) = env_num("IN_FLIGHT") {
        limits = limits.max_in_flight(n as usize);
    }
    let gate = Arc::new(Gate {
        open: Mutex::new(false),
        cv: Condvar::new(),
        blocked: AtomicU64::new(0),
    });
    let (g1, g2) = (gate.clone(), gate.clone());
    let _server = Server::builder(&name)
        .limits(limits)
        // The tests check the server's counters; its 50-line log of the
        // clients it dropped would only be noise.
        .log(|_| {})
        .handler("echo", |s: String| Ok::<_, String>(s))
        .handler("add", |(a, b): (i64, i64)| Ok::<_, String>(a + b))
        .handler("sleep", |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, String>(ms)
        })
        .handler("block", move |(): ()| {
            g1.blocked.fetch_add(1, Ordering::SeqCst);
            g1.wait();
            g1.blocked.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>(1u64)
        })
        .handler("blocked", move |(): ()| {
            Ok::<_, String>(g2.blocked.load(Ordering::SeqCst))
        })
        .bind()
        .unwrap();
    say(&format!("READY {}", std::process::id()));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "release" {
            *gate.open.lock().unwrap() = true;
            gate.cv.notify_all();
        }
    }
}

/// A fake server at `$SOCKET` that sends 8 of its 16 hello bytes to each
/// client and then says nothing more.
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

/// Connect `$COUNT` clients (socket transport) to `$NAME` and keep them;
/// then try one more connection and report how it went, and whether the
/// held clients still answer.
fn hold_clients_role() {
    let count = env_num("COUNT").unwrap() as usize;
    let name = env("NAME").unwrap();
    let connect = || {
        Client::options()
            .transport(Transport::Socket)
            .connect(&name)
    };
    let held: Vec<Client> = (0..count).map(|_| connect().unwrap()).collect();
    say(&format!("HELD {count}"));
    match connect() {
        Ok(_) => say("EXTRA ok"),
        Err(e) => say(&format!("EXTRA {} {e}", e.kind())),
    }
    let sum: i64 = held
        .iter()
        .map(|c| c.call_timeout::<_, i64>("add", &(1, 1), DEADLINE).unwrap())
        .sum();
    say(&format!("SUM {sum}"));
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

/// A server child named `name`, bound and ready.
fn server(ns: &Namespace, name: &str, vars: &[(&str, String)]) -> Kid {
    let mut all = vec![("NAME", name.to_string())];
    all.extend(vars.iter().map(|(k, v)| (*k, v.clone())));
    let kid = Kid::start(ns, "server", &all);
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

/// A call frame: 24-byte header, method, body (JSON).
fn call_frame(call_id: u64, method: &str, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0] = KIND_CALL;
    b[1] = ENC_JSON;
    b[2..4].copy_from_slice(&(method.len() as u16).to_le_bytes());
    b[8..16].copy_from_slice(&call_id.to_le_bytes());
    b[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    b.extend_from_slice(method.as_bytes());
    b.extend_from_slice(body);
    b
}

/// Read one frame: `(kind, call_id, body)`; `None` at end of stream.
fn read_frame(s: &mut UnixStream) -> Option<(u8, u64, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    match s.read(&mut h[..1]) {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading a frame: {e}"),
    }
    s.read_exact(&mut h[1..]).unwrap();
    let method_len = u16::from_le_bytes(h[2..4].try_into().unwrap()) as usize;
    let call_id = u64::from_le_bytes(h[8..16].try_into().unwrap());
    let body_len = u64::from_le_bytes(h[16..24].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; method_len + body_len];
    s.read_exact(&mut rest).unwrap();
    Some((h[0], call_id, rest.split_off(method_len)))
}

/// The `code` of an error frame's JSON body.
fn error_code(body: &[u8]) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no code in {v}"))
}

/// Whether the server closed `s` (end of stream or reset) before the
/// deadline; panics on the deadline.
fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("the server did not close the connection: {e}"),
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

/// A well-behaved client in this process, on the socket.
fn good_client(ns: &Namespace, name: &str) -> Client {
    Client::options()
        .namespace(ns)
        .timeout(Duration::from_secs(10))
        .transport(Transport::Socket)
        .connect(name)
        .unwrap()
}

/// One `add` call from a fresh well-behaved client.
fn good_add(ns: &Namespace, name: &str) -> i64 {
    good_client(ns, name)
        .call_timeout("add", &(2i64, 3i64), DEADLINE)
        .unwrap()
}

/// The server's `ipckit.describe`, bounded (`Client::describe` waits
/// for ever).
fn describe(c: &Client) -> Describe {
    c.call_timeout(DESCRIBE, &(), DEADLINE).unwrap()
}

/// Poll (bounded) until `n` handlers wait in the server's `block`.
fn wait_blocked(c: &Client, n: u64) {
    let until = Instant::now() + DEADLINE;
    loop {
        let got: u64 = c.call_timeout("blocked", &(), DEADLINE).unwrap();
        if got >= n {
            assert_eq!(got, n, "more handlers blocked than calls let in");
            return;
        }
        assert!(
            Instant::now() < until,
            "only {got} of {n} calls reached the handler"
        );
        std::thread::yield_now();
    }
}

// ------------------------------------------------------------------ tests

/// (a) A server that sends half its hello and stalls makes `connect`
/// fail (a timeout) instead of hanging.
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
    let start = Instant::now();
    std::thread::spawn(move || {
        let r = Client::options()
            .namespace(&ns2)
            .timeout(Duration::from_secs(1))
            .connect("half");
        let _ = tx.send(r.map(|_| ()));
    });
    let r = rx
        .recv_timeout(DEADLINE)
        .expect("connect hung on a half hello");
    eprintln!("half hello: connect failed after {:?}", start.elapsed());
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("half"));
}

/// (b) 50 clients that send 3 bytes of a header and stall are dropped
/// after the stall timeout; a good client is served meanwhile.
#[test]
fn b_clients_stalled_inside_a_header_are_dropped() {
    let (_d, ns) = test_ns();
    let srv = server(&ns, "slow", &[("STALL_MS", "500".into())]);
    let path = ns.socket_path("slow");
    let start = Instant::now();
    let mut stalled: Vec<UnixStream> = (0..50)
        .map(|i| {
            let (mut s, _) = raw_connect(&path);
            s.write_all(&call_frame(i, "add", b"[1,2]")[..3]).unwrap();
            s
        })
        .collect();
    assert_eq!(good_add(&ns, "slow"), 5);
    for s in &mut stalled {
        assert!(closed_by_peer(s));
    }
    eprintln!(
        "slow header: 50 stalled clients all dropped {:?} after the first connected",
        start.elapsed()
    );
    let c = good_client(&ns, "slow");
    let d = describe(&c);
    eprintln!("slow header: server counters {:?}", d.limits);
    assert!(d.limits.dropped_stalled >= 50, "{:?}", d.limits);
    assert_eq!(
        c.call_timeout::<_, i64>("add", &(4, 5), DEADLINE).unwrap(),
        9
    );
    let (threads, _) = proc_status(srv.pid());
    eprintln!("slow header: server threads {threads}");
}

/// (c) 2000 idle connections cost the server no threads, and a client
/// from another process is still answered.
#[test]
fn c_two_thousand_idle_connections_cost_no_threads() {
    let (_d, ns) = test_ns();
    let srv = server(&ns, "idle", &[("MAX_CONN", "4096".into())]);
    let (threads_before, _) = proc_status(srv.pid());
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
    let (threads_idle, _) = proc_status(srv.pid());
    assert_eq!(good_add(&ns, "idle"), 5);
    let (threads_after, _) = proc_status(srv.pid());
    eprintln!(
        "idle: server threads {threads_before} at start, {threads_idle} with {n} idle connections, {threads_after} after a call"
    );
    assert!(
        threads_idle <= 10,
        "{threads_idle} threads for {n} idle connections"
    );
    assert!(threads_after <= 10, "{threads_after} threads");
}

/// (d) One connection pipelining 600 slow calls gets `max_in_flight` of
/// them run and a busy error (-32001) for each of the rest, at once;
/// another client is answered meanwhile.
#[test]
fn d_a_pipelining_flood_gets_busy_and_others_are_served() {
    let (_d, ns) = test_ns();
    let mut srv = server(&ns, "pipe", &[("IN_FLIGHT", "8".into())]);
    let (mut s, _) = raw_connect(&ns.socket_path("pipe"));
    let mut flood = Vec::new();
    for id in 1..=600u64 {
        flood.extend(call_frame(id, "block", b"null"));
    }
    let mut r = s.try_clone().unwrap();
    let (tx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        // Exactly one answer per call; nothing after.
        for _ in 0..600 {
            let Some(f) = read_frame(&mut r) else { return };
            if tx.send(f).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    s.write_all(&flood).unwrap();
    let mut answered = BTreeSet::new();
    for _ in 0..(600 - 8) {
        let (kind, id, body) = frames
            .recv_timeout(DEADLINE)
            .expect("the flooder's busy errors did not come");
        assert_eq!(kind, KIND_ERROR, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_code(&body), CODE_BUSY);
        assert!(answered.insert(id), "call {id} answered twice");
    }
    let busy_after = start.elapsed();
    let c = good_client(&ns, "pipe");
    assert_eq!(
        c.call_timeout::<_, i64>("add", &(2, 3), DEADLINE).unwrap(),
        5
    );
    let blocked: u64 = c.call_timeout("blocked", &(), DEADLINE).unwrap();
    assert_eq!(blocked, 8, "calls running beside the busy ones");
    srv.tell("release");
    for _ in 0..8 {
        let (kind, id, body) = frames
            .recv_timeout(DEADLINE)
            .expect("the calls let in were not answered");
        assert_eq!(kind, KIND_REPLY, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, b"1");
        assert!(answered.insert(id), "call {id} answered twice");
    }
    assert_eq!(answered, (1..=600).collect::<BTreeSet<u64>>());
    let d = describe(&c);
    eprintln!(
        "pipelining: 592 busy errors within {busy_after:?}; all 600 answered within {:?}; counters {:?}",
        start.elapsed(),
        d.limits
    );
    assert!(d.limits.busy >= 592, "{:?}", d.limits);
}

/// (d) `Client::call` on a connection with `max_in_flight` calls running
/// gets `Busy`, and the connection goes on.
#[test]
fn d_a_call_over_max_in_flight_is_busy() {
    let (_d, ns) = test_ns();
    let mut srv = server(&ns, "sat", &[("IN_FLIGHT", "2".into())]);
    let a = Arc::new(good_client(&ns, "sat"));
    let watch = good_client(&ns, "sat");
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || a.call_timeout::<_, u64>("block", &(), DEADLINE))
        })
        .collect();
    wait_blocked(&watch, 2);
    let e = a
        .call_timeout::<_, i64>("add", &(1, 2), DEADLINE)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    eprintln!("saturated connection: {e}");
    // Another connection is not limited by this one's calls.
    assert_eq!(
        watch
            .call_timeout::<_, i64>("add", &(1, 2), DEADLINE)
            .unwrap(),
        3
    );
    srv.tell("release");
    for h in calls {
        assert_eq!(h.join().unwrap().unwrap(), 1);
    }
    assert_eq!(
        a.call_timeout::<_, i64>("add", &(1, 2), DEADLINE).unwrap(),
        3
    );
}

/// (e) A client that sends 3 calls then shuts its sending side down still
/// gets the 3 replies, then end of stream.
#[test]
fn e_half_close_still_gets_every_reply() {
    let (_d, ns) = test_ns();
    let mut srv = server(&ns, "half", &[]);
    let (mut s, _) = raw_connect(&ns.socket_path("half"));
    for id in 1..=3u64 {
        s.write_all(&call_frame(id, "block", b"null")).unwrap();
    }
    s.shutdown(Shutdown::Write).unwrap();
    let watch = good_client(&ns, "half");
    wait_blocked(&watch, 3);
    srv.tell("release");
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let (kind, id, body) = read_frame(&mut s).expect("a reply was lost on half-close");
        assert_eq!((kind, body.as_slice()), (KIND_REPLY, &b"1"[..]));
        ids.insert(id);
    }
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    assert!(read_frame(&mut s).is_none(), "more than 3 replies");
}

/// (f) One process holding its per-process share of connections is
/// refused (`Busy`) and does not lock out another process; describe
/// counts the refusal.
#[test]
fn f_one_process_at_its_connection_limit_does_not_lock_out_others() {
    let (_d, ns) = test_ns();
    let _srv = server(&ns, "share", &[("PER_PROCESS", "4".into())]);
    let hog = Kid::start(
        &ns,
        "hold-clients",
        &[("NAME", "share".into()), ("COUNT", "4".into())],
    );
    assert_eq!(hog.expect("HELD "), "HELD 4");
    let extra = hog.expect("EXTRA ");
    eprintln!("per-process limit: the 5th connect got: {extra}");
    assert!(extra.starts_with("EXTRA busy "), "{extra}");
    assert_eq!(hog.expect("SUM "), "SUM 8");
    let c = good_client(&ns, "share");
    assert_eq!(
        c.call_timeout::<_, i64>("add", &(2, 3), DEADLINE).unwrap(),
        5
    );
    let d = describe(&c);
    eprintln!("per-process limit: counters {:?}", d.limits);
    assert!(d.limits.refused_per_process >= 1, "{:?}", d.limits);
    assert_eq!(d.connections, 5, "4 held + this one");
}

/// (d) A caller that waits for each reply before sending the next call is
/// never told `Busy`, even at `max_in_flight(1)`: a call whose reply has
/// arrived is no longer in flight.
#[test]
fn d_sequential_calls_are_never_busy() {
    let (_d, ns) = test_ns();
    let _srv = server(&ns, "seq", &[("IN_FLIGHT", "1".into())]);
    let c = good_client(&ns, "seq");
    let mut busy = 0;
    for i in 0..5000i64 {
        match c.call_timeout::<_, i64>("add", &(i, 1), DEADLINE) {
            Ok(v) => assert_eq!(v, i + 1),
            Err(e) if e.kind() == ErrorKind::Busy => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("sequential calls: {busy} of 5000 answered busy");
    assert_eq!(
        busy, 0,
        "calls sent one after another's reply were refused as busy"
    );
}
