//! Mailslots across real processes: readers and writers are this test
//! binary re-executed in a role (`child_role`), the test process the other
//! side. Every wait is bounded; every child is killed and reaped on drop.

mod support;

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ipckit::mailslot::{Mailslot, MailslotOptions, MailslotWriter, WriterOptions};
use ipckit::{ErrorKind, Namespace};
use support::{poll_until, say, wait_live, wait_until, Proc, TestNs, DEADLINE};

const WRITERS: usize = 8;
const PER_WRITER: usize = 1000;

fn expected(writer: usize, seq: usize) -> String {
    // Variable length, content derived from (writer, seq): a torn or mixed
    // message cannot match.
    let pad: String = std::iter::repeat_n((b'a' + (seq % 26) as u8) as char, seq % 97).collect();
    format!("w{writer} s{seq} {pad}")
}

/// A writer to `name` once its reader listens: the endpoint record is live
/// a moment before the reader accepts writers, so a `NotFound` in between
/// is retried (bounded).
fn writer_when_ready(ns: &Namespace, name: &str, timeout: Duration) -> MailslotWriter {
    wait_live(ns, name);
    let mut w = None;
    wait_until(DEADLINE, &format!("a writer can open '{name}'"), || {
        match WriterOptions::new()
            .namespace(ns)
            .timeout(timeout)
            .open(name)
        {
            Ok(x) => w = Some(x),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => panic!("cannot open '{name}': {e}"),
        }
        w.is_some()
    });
    w.expect("opened above")
}

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Writer number ARG0 sends PER_WRITER messages to "m".
        "writer" => {
            let id: usize = args[0].parse().unwrap();
            let mut w = writer_when_ready(&ns, "m", Duration::from_secs(30));
            for s in 0..PER_WRITER {
                w.send(expected(id, s).as_bytes()).unwrap();
            }
        }
        // Send ARG1 to the mailslot ARG0 once; `ERROR <error>` on stderr
        // and exit 1 on failure.
        "send" => {
            let r = WriterOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .and_then(|mut w| w.send(args[1].as_bytes()));
            if let Err(e) = r {
                eprintln!("ERROR {e}");
                std::process::exit(1);
            }
        }
        // A reader with a queue of 3 on "f" that reads only after "go" on
        // stdin, then until the queue stays empty for 2 s.
        "slow-reader" => {
            let slot = MailslotOptions::new()
                .namespace(&ns)
                .queue_bound(3)
                .create("f")
                .unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "go");
            let mut out = std::io::stdout().lock();
            loop {
                match slot.recv_timeout(Duration::from_secs(2)) {
                    Ok(m) => writeln!(out, "MSG {}", String::from_utf8(m).unwrap()).unwrap(),
                    Err(e) if e.kind() == ErrorKind::Timeout => break,
                    Err(e) => panic!("{e}"),
                }
                out.flush().unwrap();
            }
            writeln!(out, "END").unwrap();
        }
        "slot-reader" => slot_reader(&ns, &args),
        other => panic!("unknown role {other}"),
    }
}

/// Role `slot-reader NAME [--group] [--count N] [--timeout DURATION]
/// [--max-message-size N] [--queue-bound N] [--udp ADDR]`: create the
/// mailslot (or join the group) NAME and print `MSG <message>` per
/// message; with `--udp`, says `udp ADDR` on stderr first. `ERROR
/// <error>` on stderr and exit 1 on failure.
fn slot_reader(ns: &Namespace, args: &[String]) {
    let mut opts = MailslotOptions::new();
    opts = opts
        .namespace(ns)
        .read_timeout(support::flag(args, "--timeout").map(support::duration));
    if let Some(n) = support::flag(args, "--max-message-size") {
        opts = opts.max_message_size(n.parse().unwrap());
    }
    if let Some(n) = support::flag(args, "--queue-bound") {
        opts = opts.queue_bound(n.parse().unwrap());
    }
    if let Some(a) = support::flag(args, "--udp") {
        opts = opts.udp(a);
    }
    let slot: ipckit::Result<Mailslot> = if support::switch(args, "--group") {
        opts.join_group(&args[0])
    } else {
        opts.create(&args[0])
    };
    let fail = |e: ipckit::Error| -> ! {
        eprintln!("ERROR {e}");
        std::process::exit(1)
    };
    let slot = slot.unwrap_or_else(|e| fail(e));
    if let Some(a) = slot.udp_addr() {
        eprintln!("udp {a}");
    }
    let count: Option<usize> = support::flag(args, "--count").map(|n| n.parse().unwrap());
    let mut seen = 0;
    while count.is_none_or(|k| seen < k) {
        let msg = slot.recv().unwrap_or_else(|e| fail(e));
        seen += 1;
        say(&format!("MSG {}", String::from_utf8_lossy(&msg)));
    }
}

#[test]
fn eight_writer_processes_each_deliver_a_thousand_whole_messages_in_order() {
    let t = TestNs::new();
    let total = (WRITERS * PER_WRITER).to_string();
    let mut reader = t.start(
        "slot-reader",
        &[
            "m",
            "--count",
            &total,
            "--timeout",
            "30s",
            "--queue-bound",
            "64",
        ],
    );
    let mut writers: Vec<Proc> = (0..WRITERS)
        .map(|i| t.start("writer", &[&i.to_string()]))
        .collect();
    let mut next = [0usize; WRITERS];
    for _ in 0..WRITERS * PER_WRITER {
        let line = reader.stdout_line("MSG ");
        let line = &line["MSG ".len()..];
        let w: usize = line[1..line.find(' ').unwrap()].parse().unwrap();
        assert_eq!(
            line,
            expected(w, next[w]),
            "writer {w} out of order or torn"
        );
        next[w] += 1;
    }
    assert_eq!(next, [PER_WRITER; WRITERS]);
    for w in &mut writers {
        w.wait_success(DEADLINE);
    }
    reader.wait_success(DEADLINE);
}

#[test]
fn full_queue_blocks_the_writer_then_fails_with_full_and_nothing_is_lost() {
    let t = TestNs::new();
    let ns = &t.ns;
    let mut c = t.role("slow-reader", &[]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut reader = Proc::spawn_raw(&mut c);
    let mut stdin = reader.child().stdin.take().unwrap();

    let mut w = writer_when_ready(ns, "f", Duration::from_millis(300));
    for i in 0..3 {
        w.send(format!("m{i}").as_bytes()).unwrap();
    }
    let e = w.send(b"m3").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full, "{e}");
    // The writer stays usable; a patient write blocks until the reader makes room.
    let ns2 = ns.clone();
    let patient = std::thread::spawn(move || {
        WriterOptions::new()
            .namespace(&ns2)
            .timeout(Duration::from_secs(30))
            .open("f")
            .unwrap()
            .send(b"m4")
    });
    writeln!(stdin, "go").unwrap();
    patient.join().unwrap().unwrap();
    w.send(b"m5").unwrap();

    let mut got = Vec::new();
    loop {
        let l = reader.stdout_line("");
        if l == "END" {
            break;
        }
        if let Some(m) = l.strip_prefix("MSG ") {
            got.push(m.to_string());
        }
    }
    assert_eq!(got, ["m0", "m1", "m2", "m4", "m5"]);
    reader.wait_success(DEADLINE);
}

#[test]
fn oversized_messages_fail_with_too_large_and_the_slot_stays_usable() {
    let t = TestNs::new();
    let mut reader = t.start(
        "slot-reader",
        &[
            "big",
            "--max-message-size",
            "8",
            "--count",
            "1",
            "--timeout",
            "30s",
        ],
    );
    let mut w = writer_when_ready(&t.ns, "big", DEADLINE);
    // Another process is refused, with a message naming the slot.
    let out = t.run("send", &["big", "123456789"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("exceeds") && out.stderr.contains("'big'"),
        "{out:#?}"
    );
    let e = w.send(&[b'x'; 9]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(e.needed(), Some(9));
    w.send(b"12345678").unwrap();
    assert_eq!(reader.stdout_line("MSG "), "MSG 12345678");
    reader.wait_success(DEADLINE);
}

#[test]
fn bad_names_and_missing_slots_are_clear_errors() {
    let t = TestNs::new();
    let e = WriterOptions::new()
        .namespace(&t.ns)
        .open("../x")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    assert!(e.to_string().contains("invalid name"), "{e}");
    let out = t.run("send", &["nobody", "hi"]);
    out.assert_failure();
    assert!(out.stderr.contains("no mailslot has this name"), "{out:#?}");
    let e = WriterOptions::new()
        .namespace(&t.ns)
        .open("nobody")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // A second reader of one name is refused, in another process and here.
    let _a = t.start("slot-reader", &["one"]);
    wait_live(&t.ns, "one");
    let out = t.run("slot-reader", &["one"]);
    out.assert_failure();
    assert!(out.stderr.contains("held by a live mailslot"), "{out:#?}");
    let e = MailslotOptions::new()
        .namespace(&t.ns)
        .create("one")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
}

fn members(ns: &Namespace, group: &str) -> Vec<ipckit::name::EndpointInfo> {
    let prefix = format!("{group}.group/");
    ns.list()
        .unwrap()
        .into_iter()
        .filter(|e| e.name.starts_with(&prefix))
        .collect()
}

#[test]
fn group_send_reaches_every_member_process_and_skips_dead_ones() {
    let t = TestNs::new();
    let mut readers: Vec<Proc> = (0..3)
        .map(|_| {
            t.start(
                "slot-reader",
                &["g", "--group", "--count", "1", "--timeout", "30s"],
            )
        })
        .collect();
    // A fourth member that dies without leaving.
    let mut doomed = t.start("slot-reader", &["g", "--group"]);
    wait_until(DEADLINE, "4 live members", || {
        let m = members(&t.ns, "g");
        m.len() == 4
            && m.iter()
                .all(|e| e.state == ipckit::name::EndpointState::Live)
    });
    doomed.kill();
    let d = WriterOptions::new()
        .namespace(&t.ns)
        .send_to_group("g", b"to all")
        .unwrap();
    assert_eq!(d.delivered, 3, "{d:?}");
    assert_eq!(d.stale_removed, 1, "{d:?}");
    assert!(d.failed.is_empty(), "{d:?}");
    for r in &mut readers {
        assert_eq!(r.stdout_line("MSG "), "MSG to all");
    }
    for r in &mut readers {
        r.wait_success(DEADLINE);
    }
    wait_until(DEADLINE, "members gone", || members(&t.ns, "g").is_empty());
}

#[test]
fn a_group_send_is_bounded_by_one_timeout_however_many_members_are_full() {
    let t = TestNs::new();
    // Two members whose queues hold one message and who never read.
    let opts = MailslotOptions::new().namespace(&t.ns).queue_bound(1);
    let _a = opts.clone().join_group("busy").unwrap();
    let _b = opts.join_group("busy").unwrap();
    let w = WriterOptions::new()
        .namespace(&t.ns)
        .timeout(Duration::from_millis(300));
    let d = w.send_to_group("busy", b"fills both").unwrap();
    assert_eq!(d.delivered, 2, "{d:?}");
    // Now the first member tried blocks for what is left of the timeout
    // and is `Full`; the second gets only what the first left (it is not
    // tried at all once nothing is left), rather than a timeout of its
    // own: the time the members were waited on adds up to one timeout
    // (plus how late each wait noticed its deadline), where a timeout per
    // member would make it at least two. Each `Full` says how long it
    // waited.
    let d = w.send_to_group("busy", b"no room").unwrap();
    assert_eq!(d.delivered, 0, "{d:?}");
    assert_eq!(d.failed.len(), 2, "{d:?}");
    let mut waited = Duration::ZERO;
    for e in &d.failed {
        match e.kind() {
            ErrorKind::Full => waited += full_for(&e.to_string()),
            ErrorKind::Timeout => assert!(e.to_string().contains("not tried"), "{e}"),
            k => panic!("unexpected {k:?}: {e}"),
        }
    }
    assert_eq!(d.failed[0].kind(), ErrorKind::Full, "{d:?}");
    assert!(
        waited < Duration::from_millis(600),
        "waited {waited:?}: {d:?}"
    );
}

/// The duration in a `Full` error's "stayed full for {:?}".
fn full_for(msg: &str) -> Duration {
    let text = msg
        .split("stayed full for ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no duration in {msg:?}"));
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap();
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().unwrap();
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" => n / 1e6,
        "ns" => n / 1e9,
        u => panic!("unit {u:?} in {msg:?}"),
    };
    Duration::from_secs_f64(secs)
}

#[test]
fn udp_datagrams_reach_a_reader_on_loopback_and_the_424_byte_limit_holds() {
    let t = TestNs::new();
    let mut reader = t.start(
        "slot-reader",
        &[
            "u",
            "--udp",
            "127.0.0.1:0",
            "--count",
            "1",
            "--timeout",
            "30s",
        ],
    );
    let addr = reader.stderr_line("udp ")["udp ".len()..].to_string();

    let big = "x".repeat(425);
    let e = ipckit::mailslot::send_datagram(&addr, "u", big.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("424"), "{e}");
    // A datagram for another mailslot name is not delivered here.
    ipckit::mailslot::send_datagram(&addr, "other", b"wrong").unwrap();
    // UDP is lossy by contract: resend until the reader reports one.
    let msg = "y".repeat(424);
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = format!("MSG {msg}\n");
    loop {
        assert!(Instant::now() < deadline, "no datagram arrived on loopback");
        ipckit::mailslot::send_datagram(&addr, "u", msg.as_bytes()).unwrap();
        if poll_until(Duration::from_millis(500), || {
            reader.stdout_so_far().contains(&want)
        }) {
            break;
        }
    }
    let out = reader.finish(DEADLINE);
    out.assert_success();
    assert!(!out.stdout.contains("wrong"), "{out:#?}");
    assert_eq!(out.line("MSG "), Some(msg.as_str()));
}
