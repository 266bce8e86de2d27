//! Window-message receivers against hostile senders, across real processes.
//!
//! Each test runs the receiver (or a fake one, or a flood of raw
//! connections) in a child process: this test binary re-exec'd to run the
//! ignored test [`child_role`] in a role (see `support::role`). Children
//! print what they did on stdout, one line each, and exit when their stdin
//! closes; the parent kills and reaps them on drop. Every wait is bounded
//! by [`DEADLINE`]; nothing sleeps to synchronise.
//!
//! Wire constants are taken from `docs/PROTOCOL.md`, "Window messages".

mod support;

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::message::{Messenger, ReceiverOptions, Reply};
use ipckit::{ErrorKind, Namespace};
use support::proc_stats::{rss_kib, threads};
use support::raw::message::{
    request, response, ERR_TOO_LARGE, MAGIC, REQ_SEND, RESP_ERROR, RESP_REPLY, STATUS_BUSY,
};
use support::raw::{self, closed_by_peer};
use support::{flag, flag_num, say, wait_for_parent, Proc, TestNs, DEADLINE};

/// Message ids the child receiver treats specially.
const ID_PANIC: u32 = 0xDEAD;
const ID_BLOCK: u32 = 0xB10C;

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "receiver" => receiver_role(&args),
        "half-hello" => raw::half_hello_role(Path::new(flag(&args, "--socket").unwrap()), MAGIC),
        "hold" => hold_role(&args),
        other => panic!("unknown role {other}"),
    }
}

/// A real receiver named `--name` with limits from its arguments. Its
/// handler panics on [`ID_PANIC`], blocks on [`ID_BLOCK`] until the parent
/// writes a line, and otherwise answers the data's length. Exits when
/// stdin closes.
fn receiver_role(args: &[String]) {
    support::limits::raise_nofile(8192);
    let name = flag(args, "--name").unwrap();
    let limits = raw::limits_from(args);
    let mut opts = ReceiverOptions::new();
    opts = opts.limits(limits);
    if let Some(n) = flag_num(args, "--max-data") {
        opts = opts.max_message_size(n as usize);
    }
    let (gate_tx, gate) = mpsc::channel::<()>();
    let _rx = opts
        .register(name, move |m| {
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

/// Open `--count` raw connections to `--socket` and keep them, idle;
/// report how many were accepted and refused. With `--try-send NAME`,
/// then send a message to that receiver through the library and report
/// the outcome, and open one more raw connection and report its hello
/// status.
fn hold_role(args: &[String]) {
    let held = raw::hold(args, MAGIC, |status| status == STATUS_BUSY);
    if let Some(name) = flag(args, "--try-send") {
        let r = Messenger::new().send(name, 1, b"", Duration::from_secs(5));
        match r {
            Ok(r) => say(&format!("SEND ok {}", r.result)),
            Err(e) => say(&format!("SEND {} {e}", e.kind())),
        }
        let path = Path::new(flag(args, "--socket").unwrap());
        let (mut s, hello) = raw::connect_to(path, MAGIC);
        let closed = matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_));
        say(&format!("EXTRA status={} closed={closed}", hello[9]));
    }
    wait_for_parent();
    drop(held);
}

// ----------------------------------------------------------------- parent

/// A receiver child named `name` (with more role arguments `args`),
/// registered and ready. (Its expected handler panic prints one line, no
/// trace.)
fn receiver(t: &TestNs, name: &str, args: &[&str]) -> Proc {
    raw::endpoint(t, "receiver", name, args)
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
    let t = TestNs::new();
    let ns = &t.ns;
    let socket = ns.socket_path("half");
    let _kid = raw::half_hello(&t, &socket);
    let ns2 = ns.clone();
    let r = support::within(DEADLINE, move || {
        Messenger::new()
            .namespace(&ns2)
            .send("half", 1, b"x", Duration::from_secs(1))
    })
    .expect("send hung on a half hello");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("half"));
}

/// (b) 2000 idle connections cost the receiver no threads, and a sender
/// from another process is still answered.
#[test]
fn two_thousand_idle_connections_cost_no_threads() {
    let t = TestNs::new();
    let ns = &t.ns;
    let rx = receiver(&t, "idle", &["--max-conn", "4096", "--per-process", "4096"]);
    let flood = raw::idle_flood(&t, rx.pid(), &ns.socket_path("idle"), &[]);
    let (n, threads_before, threads_idle) = (flood.held, flood.threads_before, flood.threads_idle);
    assert_eq!(good_send(ns, "idle"), 5);
    let threads_after = threads(rx.pid());
    eprintln!(
        "receiver threads: {threads_before} at start, {threads_idle} with {n} idle connections, {threads_after} after a send"
    );
    flood.assert_few_threads(threads_after, 8);
}

/// (c) A sender that announces 16 MiB, sends one byte and stalls is
/// dropped after the stall timeout, pins no memory, and others are served.
#[test]
fn a_sender_stalled_inside_a_big_message_is_dropped() {
    let t = TestNs::new();
    let ns = &t.ns;
    let rx = receiver(&t, "stall", &["--stall-ms", "500"]);
    assert_eq!(good_send(ns, "stall"), 5);
    let rss_before = rss_kib(rx.pid());
    let path = ns.socket_path("stall");
    let mut stalled: Vec<UnixStream> = (0..8)
        .map(|_| {
            let (mut s, _) = raw::connect_to(&path, MAGIC);
            s.write_all(&request(REQ_SEND, 1, 16 << 20)).unwrap();
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    for s in &mut stalled {
        assert!(closed_by_peer(s, "receiver"));
    }
    let rss_after = rss_kib(rx.pid());
    eprintln!(
        "receiver VmRSS: {rss_before} KiB before, {rss_after} KiB after 8 senders announced 16 MiB each and stalled"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(good_send(ns, "stall"), 5);
}

/// (d) Posts over the receiver's queued-bytes limit get `Full`; the queue
/// (and the receiver's memory) stays bounded; it drains once the handler
/// moves on.
#[test]
fn a_post_flood_over_the_queued_bytes_is_full() {
    let t = TestNs::new();
    let ns = &t.ns;
    let mut rx = receiver(&t, "flood", &["--queued-bytes", &(1 << 20).to_string()]);
    let rss_before = rss_kib(rx.pid());
    let mut w = Messenger::new().namespace(ns).connect("flood").unwrap();
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
    let rss_flooded = rss_kib(rx.pid());
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
    assert_eq!(good_send(ns, "flood"), 5);
}

/// (e) A handler that panics is answered as an error naming the panic,
/// and the receiver goes on.
#[test]
fn a_handler_panic_comes_back_as_an_error() {
    let t = TestNs::new();
    let ns = &t.ns;
    let _rx = receiver(&t, "panic", &[]);
    let mut w = Messenger::new().namespace(ns).connect("panic").unwrap();
    let e = w.send(ID_PANIC, b"", Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.to_string().contains("boom from the handler"), "{e}");
    assert_eq!(
        w.send(1, b"abc", Duration::from_secs(10)).unwrap().result,
        3
    );
    assert_eq!(good_send(ns, "panic"), 5);
}

/// (f) One process holding its per-process share of connections is
/// refused (a busy hello, `Busy`), and does not lock out another process.
#[test]
fn one_process_at_its_connection_limit_does_not_lock_out_others() {
    let t = TestNs::new();
    let ns = &t.ns;
    let _rx = receiver(&t, "share", &["--per-process", "4"]);
    let socket = ns.socket_path("share").display().to_string();
    let mut hog = t.talk(
        "hold",
        &["--socket", &socket, "--count", "4", "--try-send", "share"],
    );
    assert_eq!(hog.stdout_line("HELD "), "HELD 4 busy=0");
    let sent = hog.stdout_line("SEND ");
    assert!(sent.starts_with("SEND busy "), "{sent}");
    assert_eq!(hog.stdout_line("EXTRA "), "EXTRA status=1 closed=true");
    assert_eq!(good_send(ns, "share"), 5);
    let mut w = Messenger::new().namespace(ns).connect("share").unwrap();
    assert_eq!(w.send(1, b"ab", Duration::from_secs(10)).unwrap().result, 2);
}

/// Data over `max_data` is read and dropped as it arrives, answered
/// "too large", and the connection goes on; a malformed header closes it.
#[test]
fn oversized_data_is_refused_and_a_bad_header_closes() {
    let t = TestNs::new();
    let ns = &t.ns;
    let _rx = receiver(&t, "big", &["--max-data", "1024"]);
    let path = ns.socket_path("big");
    let (mut s, hello) = raw::connect_to(&path, MAGIC);
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
    assert!(closed_by_peer(&mut s, "receiver"));
    assert_eq!(good_send(ns, "big"), 5);
}
