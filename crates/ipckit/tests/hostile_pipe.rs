//! Hostile peers against named pipes, across real processes.
//!
//! The server (or a fake one) runs in a child process: this test binary
//! re-exec'd in a role (see `support::role` and [`child_role`]). The test
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

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ipckit::pipe::{ClientOptions, NamedPipe, ServerOptions};
use ipckit::{ErrorKind, Limits, Namespace};
use support::limits::{raise_nofile, set_nofile};
use support::proc_stats::{cpu_share, fds_below, threads};
use support::raw::{self, pipe::MAGIC};
use support::{flag, flag_num, wait_for_parent, wait_until, Proc, TestNs, DEADLINE};

/// What children print before a line meant for the parent (the test
/// harness writes its own lines on the same stdout).
const MARK: &str = "@@";

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// This test binary re-exec'd to run [`child_role`] as `role` with `args`
/// in `t`'s namespace (with the shared-memory opt-out cleared).
fn spawn(t: &TestNs, role: &str, args: &[&str]) -> Proc {
    Proc::talking(
        t.role(role, args)
            .env_remove(ipckit::transport::TRANSPORT_ENV),
    )
}

/// The next line the child marked with [`MARK`], without the mark,
/// waiting at most [`DEADLINE`].
fn line(p: &mut Proc) -> String {
    p.stdout_line(MARK)[MARK.len()..].to_string()
}

/// An echo server child named `name` (with the settings `args`), started
/// and confirmed serving.
fn serve(t: &TestNs, name: &str, args: &[&str]) -> Proc {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--pipe", name]);
    let mut p = spawn(t, "server", &all);
    assert_eq!(line(&mut p), "ready");
    p
}

/// Run `f` on a thread; panic (instead of hanging) if it takes over `limit`.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    support::within(limit, f).unwrap_or_else(|_| panic!("did not return within {limit:?}: it hung"))
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
    let t = TestNs::new();
    let ns = &t.ns;
    let _fake = raw::half_hello(&t, &ns.socket_path("fake"));
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
    let t = TestNs::new();
    let ns = &t.ns;
    let have = raise_nofile(2500);
    let n = 2000.min(have.saturating_sub(400) as usize);
    assert!(
        n >= 500,
        "this test needs about 2400 descriptors; the limit is {have}"
    );
    let server = serve(
        &t,
        "flood",
        &[
            "--handshake-ms",
            "2000",
            "--max-connections",
            "4096",
            "--per-process",
            "4096",
            "--per-user",
            "4096",
            "--nofile",
            "4400",
        ],
    );
    let path = ns.socket_path("flood");
    let threads_before = threads(server.pid());
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, hello) = raw::connect(&path);
        assert_eq!(&hello[..8], MAGIC);
        assert_eq!(hello[9], 0, "status ok");
        assert_ne!(hello[10] & 0x80, 0, "the server offers shared memory");
        flood.push(s);
    }
    let flooded_at = Instant::now();
    let threads_flooded = threads(server.pid());
    good_client(ns, "flood");
    let mut dropped = 0;
    for s in &mut flood {
        if closed_by_server(s) {
            dropped += 1;
        }
    }
    let took = flooded_at.elapsed();
    let threads_after = threads(server.pid());
    eprintln!(
        "{n} unanswered offers: server threads {threads_before} before, {threads_flooded} flooded, \
         {threads_after} after; all {dropped} dropped within {took:?} of the last connect"
    );
    assert_eq!(dropped, n, "every unanswered connection is dropped");
    assert!(
        threads_flooded <= threads_before + 4,
        "{threads_flooded} threads with {n} pending handshakes (from {threads_before})"
    );
    good_client(ns, "flood");
}

/// (c) A server out of descriptors does not spin on its listener, and
/// serves again once the flood is gone.
#[test]
fn out_of_descriptors_the_server_waits_instead_of_spinning() {
    const NOFILE: usize = 64;
    let t = TestNs::new();
    let ns = &t.ns;
    let server = serve(
        &t,
        "fds",
        &["--handshake-ms", "60000", "--nofile", &NOFILE.to_string()],
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
    good_client(ns, "fds");
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
    let t = TestNs::new();
    let ns = &t.ns;
    let _server = serve(&t, "per", &["--per-process", "4"]);
    let mut holder = spawn(&t, "holder", &["--pipe", "per", "--count", "4"]);
    assert_eq!(line(&mut holder), "held 4; next: Busy");
    // This process is another pid: not locked out.
    let mut c = ClientOptions::new()
        .namespace(ns)
        .timeout(Duration::ZERO)
        .connect("per")
        .unwrap_or_else(|e| panic!("another process is locked out: {e}"));
    assert_eq!(c.transact(b"mine").unwrap(), b"mine");
    // At this process's limit too, a raw peer sees the busy hello and the end.
    let more: Vec<NamedPipe> = (0..3)
        .map(|_| ClientOptions::new().namespace(ns).connect("per").unwrap())
        .collect();
    let (mut raw, hello) = raw::connect(&ns.socket_path("per"));
    assert_eq!(&hello[..8], MAGIC);
    assert_eq!(hello[9], 1, "status busy");
    assert!(closed_by_server(&mut raw));
    let e = ClientOptions::new()
        .namespace(ns)
        .connect("per")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    // Connections given back free their places.
    drop(more);
    drop(c);
    good_client(ns, "per");
}

/// (e) Every instance in use: the next client gets `Busy` at once, and a
/// place frees up when a connection ends.
#[test]
fn instances_exhausted_is_busy_until_one_ends() {
    let t = TestNs::new();
    let ns = &t.ns;
    let _server = serve(&t, "one", &["--instances", "1"]);
    let mut first = ClientOptions::new()
        .namespace(ns)
        .timeout(DEADLINE)
        .connect("one")
        .unwrap();
    assert_eq!(first.transact(b"1").unwrap(), b"1");
    let e = ClientOptions::new()
        .namespace(ns)
        .connect("one")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    let (mut raw, hello) = raw::connect(&ns.socket_path("one"));
    assert_eq!(hello[9], 1, "status busy");
    assert!(closed_by_server(&mut raw));
    drop(first);
    good_client(ns, "one");
}

/// A client that declines the shared-memory offer and sends its first
/// message in the same write (the server's loop reads both at once) loses
/// nothing; neither does one that ignores the offer and sends a message
/// first.
#[test]
fn a_message_arriving_with_the_answer_to_the_offer_is_not_lost() {
    let t = TestNs::new();
    let ns = &t.ns;
    let _server = serve(&t, "eager", &[]);
    let frame = raw::pipe::frame;
    let echo = |s: &mut UnixStream| {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).expect("an echo");
        let mut body = vec![0u8; u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize];
        s.read_exact(&mut body).unwrap();
        body
    };
    let path = ns.socket_path("eager");
    let (mut s, hello) = raw::connect(&path);
    assert_ne!(hello[10] & 0x80, 0, "the server offers shared memory");
    let mut bytes = frame(3, b"");
    bytes.extend(frame(1, b"declined"));
    s.write_all(&bytes).unwrap();
    assert_eq!(echo(&mut s), b"declined");
    let (mut s, _) = raw::connect(&path);
    let mut bytes = frame(1, b"ignored the offer");
    bytes.extend(frame(1, b"and sent more"));
    s.write_all(&bytes).unwrap();
    assert_eq!(echo(&mut s), b"ignored the offer");
    assert_eq!(echo(&mut s), b"and sent more");
}

// ---------------------------------------------------------------------------
// The re-exec'd child
// ---------------------------------------------------------------------------

fn say(line: &str) {
    support::say(&format!("{MARK}{line}"));
}

/// Runs only when re-exec'd by a test above; a plain
/// `cargo test -- --ignored` finds no role and returns.
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        // An echo server with the limits the parent asked for.
        "server" => {
            let name = flag(&args, "--pipe").expect("the pipe's name");
            if let Some(n) = flag_num(&args, "--nofile") {
                set_nofile(n);
            }
            let mut limits = Limits::new();
            if let Some(ms) = flag_num(&args, "--handshake-ms") {
                limits = limits.handshake_timeout(Duration::from_millis(ms));
            }
            if let Some(n) = flag_num(&args, "--per-process") {
                limits = limits.max_connections_per_process(n as usize);
            }
            if let Some(n) = flag_num(&args, "--per-user") {
                limits = limits.max_connections_per_user(n as usize);
            }
            if let Some(n) = flag_num(&args, "--max-connections") {
                limits = limits.max_connections(n as usize);
            }
            let mut opts = ServerOptions::new();
            opts = opts.limits(limits);
            if let Some(n) = flag_num(&args, "--instances") {
                opts = opts.max_instances(n as usize);
            }
            let server = opts.create(name).expect("create the server");
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
        "half-hello" => raw::half_hello_role(
            std::path::Path::new(flag(&args, "--socket").unwrap()),
            MAGIC,
        ),
        // Hold --count connections, try one more, report, wait.
        "holder" => {
            let name = flag(&args, "--pipe").expect("the pipe's name");
            let n = flag_num(&args, "--count").unwrap() as usize;
            let held: Vec<NamedPipe> = (0..n)
                .map(|_| {
                    ClientOptions::new()
                        .timeout(DEADLINE)
                        .connect(name)
                        .expect("connect within the limit")
                })
                .collect();
            let next = match ClientOptions::new().connect(name) {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("{:?}", e.kind()),
            };
            say(&format!("held {}; next: {next}", held.len()));
            wait_for_parent();
        }
        other => panic!("unknown child role {other}"),
    }
}
