//! Mailslot readers against hostile writers (and writers against a
//! hostile fake reader), across real processes.
//!
//! Each test runs the reader (or a fake one, or a flood of raw
//! connections) in a child process: this test binary re-exec'd to run the
//! ignored test [`child_role`] in a role (see `support::role`). Children
//! print what they did on stdout, one line each, take commands on stdin and
//! exit when it closes; the parent kills and reaps them on drop. Every wait
//! is bounded by [`DEADLINE`]; nothing sleeps to synchronise.
//!
//! Wire constants are taken from `docs/PROTOCOL.md`, "Mailslots".

mod support;

use std::io::{BufRead as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ipckit::mailslot::{MailslotOptions, WriterOptions};
use ipckit::{ErrorKind, Namespace};
use support::proc_stats::{rss_kib, threads};
use support::raw::mailslot::{write_header, MAGIC};
use support::raw::{self, closed_by_peer};
use support::{flag, say, Proc, TestNs, DEADLINE};

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "reader" => reader_role(&args),
        "half-hello" => raw::half_hello_role(Path::new(flag(&args, "--socket").unwrap()), MAGIC),
        "hold" => raw::hold_role(&args, MAGIC),
        other => panic!("unknown role {other}"),
    }
}

/// A real mailslot `--name` with limits from its arguments. It reads only
/// when told: each "recv" line reads one message and prints
/// `GOT <len> <first byte>`; "pending" prints `PENDING <count>`. Exits
/// when stdin closes.
fn reader_role(args: &[String]) {
    support::limits::raise_nofile(8192);
    let name = flag(args, "--name").unwrap();
    let limits = raw::limits_from(args);
    let slot = MailslotOptions::new()
        .max_message_size(0)
        .limits(limits)
        .create(name)
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

// ----------------------------------------------------------------- parent

/// What the parent asks a reader child.
trait Reader {
    /// Ask the reader for one message: `GOT <len> <first byte>`.
    fn recv(&mut self) -> String;
    /// Ask the reader how many messages wait.
    fn pending(&mut self) -> usize;
}

impl Reader for Proc {
    fn recv(&mut self) -> String {
        self.tell("recv");
        self.stdout_line("GOT ")
    }

    fn pending(&mut self) -> usize {
        self.tell("pending");
        let l = self.stdout_line("PENDING ");
        l["PENDING ".len()..].parse().unwrap()
    }
}

/// A reader child for the mailslot `name` (with more role arguments
/// `args`), created and ready.
fn reader(t: &TestNs, name: &str, args: &[&str]) -> Proc {
    raw::endpoint(t, "reader", name, args)
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
    let t = TestNs::new();
    let ns = &t.ns;
    let mut rx = reader(&t, "stall", &["--stall-ms", "500"]);
    good_send(ns, "stall", b"warm");
    assert_eq!(rx.recv(), format!("GOT 4 {}", b'w'));
    let rss_before = rss_kib(rx.pid());
    let path = ns.socket_path("stall");
    let start = Instant::now();
    let mut stalled: Vec<UnixStream> = (0..2)
        .map(|_| {
            let (mut s, _) = raw::connect_to(&path, MAGIC);
            s.write_all(&write_header(1 << 30, 1000)).unwrap();
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    good_send(ns, "stall", b"good");
    for s in &mut stalled {
        assert!(closed_by_peer(s, "reader"));
    }
    let dropped_after = start.elapsed();
    let rss_after = rss_kib(rx.pid());
    eprintln!(
        "stalled writers: dropped {dropped_after:?} after connecting; reader VmRSS {rss_before} KiB before, {rss_after} KiB after 2 writers announced 1 GiB each"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(rx.recv(), format!("GOT 4 {}", b'g'));
    assert_eq!(rx.pending(), 0, "a stalled writer's message was queued");
    good_send(ns, "stall", b"after");
    assert_eq!(rx.recv(), format!("GOT 5 {}", b'a'));
}

/// (h) 2000 idle writer connections cost the reader no threads, and a
/// writer from another process still gets through.
#[test]
fn h_two_thousand_idle_writers_cost_no_threads() {
    let t = TestNs::new();
    let ns = &t.ns;
    let mut rx = reader(&t, "idle", &["--max-conn", "4096"]);
    let flood = raw::idle_flood(&t, rx.pid(), &ns.socket_path("idle"), &[]);
    let (n, threads_before, threads_idle) = (flood.held, flood.threads_before, flood.threads_idle);
    good_send(ns, "idle", b"through");
    assert_eq!(rx.recv(), format!("GOT 7 {}", b't'));
    let threads_after = threads(rx.pid());
    eprintln!(
        "idle writers: reader threads {threads_before} at start, {threads_idle} with {n} idle connections, {threads_after} after a write"
    );
    flood.assert_few_threads(threads_after, 10);
}

/// (i) With nobody reading, writes stop being queued at
/// `max_queued_bytes` (`Full` after the writer's timeout); the reader then
/// reads every queued one, and writing works again.
#[test]
fn i_writes_over_the_queued_bytes_are_full() {
    const LIMIT: usize = 1 << 20;
    const CHUNK: usize = 256 << 10;
    let t = TestNs::new();
    let ns = &t.ns;
    let mut rx = reader(&t, "queue", &["--queued-bytes", &LIMIT.to_string()]);
    let rss_before = rss_kib(rx.pid());
    let mut w = WriterOptions::new()
        .namespace(ns)
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
    let rss_full = rss_kib(rx.pid());
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
    let t = TestNs::new();
    let ns = &t.ns;
    let socket = ns.socket_path("half");
    let _kid = raw::half_hello(&t, &socket);
    let ns2 = ns.clone();
    let start = Instant::now();
    let r = support::within(DEADLINE, move || {
        WriterOptions::new()
            .namespace(&ns2)
            .timeout(Duration::from_secs(1))
            .open("half")
            .map(|_| ())
    })
    .expect("open hung on a half hello");
    let e = r.unwrap_err();
    eprintln!("half hello: open failed after {:?}: {e}", start.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("half"));
}
