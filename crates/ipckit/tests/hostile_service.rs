//! Services against hostile clients (and a hostile fake server), across
//! real processes.
//!
//! Each test runs the server (or a fake one, or a flood of raw
//! connections) in a child process: this test binary re-exec'd to run the
//! ignored test [`child_role`] in a role (see `support::role`). Children
//! print what they did on stdout, one line each, and exit when their stdin
//! closes; the parent kills and reaps them on drop. Every wait is bounded
//! by [`DEADLINE`]; nothing sleeps to synchronise (the server's `block`
//! method waits for the parent's word instead).
//!
//! Wire constants are taken from `docs/PROTOCOL.md`, "Services (RPC)".

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ipckit::service::{Client, Describe, Server, DESCRIBE};
use ipckit::{ErrorKind, Namespace, Transport};
use support::proc_stats::threads;
use support::raw::service::{
    call_frame, error_code, read_frame, CODE_BUSY, KIND_ERROR, KIND_REPLY, MAGIC,
};
use support::raw::{self, closed_by_peer};
use support::{flag, flag_num, say, wait_for_parent, Proc, TestNs, DEADLINE};

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "server" => server_role(&args),
        "half-hello" => raw::half_hello_role(Path::new(socket(&args)), MAGIC),
        "hold" => raw::hold_role(&args, MAGIC),
        "hold-clients" => hold_clients_role(&args),
        other => panic!("unknown role {other}"),
    }
}

/// The `--socket` a role is given.
fn socket(args: &[String]) -> &str {
    flag(args, "--socket").unwrap()
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

/// A real server named `--name` with limits from its arguments and the
/// methods `echo`, `add`, `sleep` (ms), `block` (waits for the parent's
/// "release" line, answers 1) and `blocked` (how many wait in `block`).
/// Exits when stdin closes.
fn server_role(args: &[String]) {
    support::limits::raise_nofile(8192);
    let name = flag(args, "--name").unwrap();
    let limits = raw::limits_from(args);
    let gate = Arc::new(Gate {
        open: Mutex::new(false),
        cv: Condvar::new(),
        blocked: AtomicU64::new(0),
    });
    let (g1, g2) = (gate.clone(), gate.clone());
    let _server = Server::builder(name)
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

/// Connect `--count` clients (socket transport) to `--name` and keep them;
/// then try one more connection and report how it went, and whether the
/// held clients still answer.
fn hold_clients_role(args: &[String]) {
    let count = flag_num(args, "--count").unwrap() as usize;
    let name = flag(args, "--name").unwrap();
    let connect = || Client::options().transport(Transport::Socket).connect(name);
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
    wait_for_parent();
    drop(held);
}

// ----------------------------------------------------------------- parent

/// A server child named `name` (with more role arguments `args`), bound
/// and ready.
fn server(t: &TestNs, name: &str, args: &[&str]) -> Proc {
    raw::endpoint(t, "server", name, args)
}

/// Connect to the server's socket at `path` and read its hello.
fn raw_connect(path: &Path) -> (UnixStream, [u8; 16]) {
    raw::connect_to(path, MAGIC)
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
    let t = TestNs::new();
    let ns = &t.ns;
    let socket = ns.socket_path("half");
    let _kid = raw::half_hello(&t, &socket);
    let ns2 = ns.clone();
    let start = Instant::now();
    let r = support::within(DEADLINE, move || {
        Client::options()
            .namespace(&ns2)
            .timeout(Duration::from_secs(1))
            .connect("half")
            .map(|_| ())
    })
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
    let t = TestNs::new();
    let ns = &t.ns;
    let srv = server(&t, "slow", &["--stall-ms", "500"]);
    let path = ns.socket_path("slow");
    let start = Instant::now();
    let mut stalled: Vec<UnixStream> = (0..50)
        .map(|i| {
            let (mut s, _) = raw_connect(&path);
            s.write_all(&call_frame(i, "add", b"[1,2]")[..3]).unwrap();
            s
        })
        .collect();
    assert_eq!(good_add(ns, "slow"), 5);
    for s in &mut stalled {
        assert!(closed_by_peer(s, "server"));
    }
    eprintln!(
        "slow header: 50 stalled clients all dropped {:?} after the first connected",
        start.elapsed()
    );
    let c = good_client(ns, "slow");
    let d = describe(&c);
    eprintln!("slow header: server counters {:?}", d.limits);
    assert!(d.limits.dropped_stalled >= 50, "{:?}", d.limits);
    assert_eq!(
        c.call_timeout::<_, i64>("add", &(4, 5), DEADLINE).unwrap(),
        9
    );
    let threads = threads(srv.pid());
    eprintln!("slow header: server threads {threads}");
}

/// (c) 2000 idle connections cost the server no threads, and a client
/// from another process is still answered.
#[test]
fn c_two_thousand_idle_connections_cost_no_threads() {
    let t = TestNs::new();
    let ns = &t.ns;
    let srv = server(&t, "idle", &["--max-conn", "4096"]);
    let flood = raw::idle_flood(&t, srv.pid(), &ns.socket_path("idle"), &[]);
    let (n, threads_before, threads_idle) = (flood.held, flood.threads_before, flood.threads_idle);
    assert_eq!(good_add(ns, "idle"), 5);
    let threads_after = threads(srv.pid());
    eprintln!(
        "idle: server threads {threads_before} at start, {threads_idle} with {n} idle connections, {threads_after} after a call"
    );
    flood.assert_few_threads(threads_after, 10);
}

/// (d) One connection pipelining 600 slow calls gets `max_in_flight` of
/// them run and a busy error (-32001) for each of the rest, at once;
/// another client is answered meanwhile.
#[test]
fn d_a_pipelining_flood_gets_busy_and_others_are_served() {
    let t = TestNs::new();
    let ns = &t.ns;
    let mut srv = server(&t, "pipe", &["--in-flight", "8"]);
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
    let c = good_client(ns, "pipe");
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
    let t = TestNs::new();
    let ns = &t.ns;
    let mut srv = server(&t, "sat", &["--in-flight", "2"]);
    let a = Arc::new(good_client(ns, "sat"));
    let watch = good_client(ns, "sat");
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
    let t = TestNs::new();
    let ns = &t.ns;
    let mut srv = server(&t, "half", &[]);
    let (mut s, _) = raw_connect(&ns.socket_path("half"));
    for id in 1..=3u64 {
        s.write_all(&call_frame(id, "block", b"null")).unwrap();
    }
    s.shutdown(Shutdown::Write).unwrap();
    let watch = good_client(ns, "half");
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
    let t = TestNs::new();
    let ns = &t.ns;
    let _srv = server(&t, "share", &["--per-process", "4"]);
    let mut hog = t.talk("hold-clients", &["--name", "share", "--count", "4"]);
    assert_eq!(hog.stdout_line("HELD "), "HELD 4");
    let extra = hog.stdout_line("EXTRA ");
    eprintln!("per-process limit: the 5th connect got: {extra}");
    assert!(extra.starts_with("EXTRA busy "), "{extra}");
    assert_eq!(hog.stdout_line("SUM "), "SUM 8");
    let c = good_client(ns, "share");
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
    let t = TestNs::new();
    let ns = &t.ns;
    let _srv = server(&t, "seq", &["--in-flight", "1"]);
    let c = good_client(ns, "seq");
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
