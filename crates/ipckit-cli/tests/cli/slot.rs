//! `ipckit slot read|send|group-read|group-send`.

use std::time::{Duration, Instant};

use crate::common::{wait_live, wait_until, Proc, TestNs, DEADLINE};
use ipckit::mailslot::{MailslotWriter, WriterOptions};
use ipckit::ErrorKind;

const WRITERS: usize = 8;
const PER_WRITER: usize = 1000;

fn expected(writer: usize, seq: usize) -> String {
    // Variable length, content derived from (writer, seq): a torn or mixed
    // message cannot match.
    let pad: String = std::iter::repeat_n((b'a' + (seq % 26) as u8) as char, seq % 97).collect();
    format!("w{writer} s{seq} {pad}")
}

/// A writer to `name` once its reader listens (the endpoint record is live
/// a moment before; a `NotFound` in between is retried, bounded).
fn writer_when_ready(t: &TestNs, name: &str) -> MailslotWriter {
    wait_live(&t.ns, name);
    let mut w = None;
    wait_until(DEADLINE, &format!("a writer can open '{name}'"), || {
        match WriterOptions::new()
            .namespace(&t.ns)
            .timeout(DEADLINE)
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

#[test]
fn read_prints_eight_writers_thousand_messages_each_whole_and_in_order() {
    let t = TestNs::new();
    let total = (WRITERS * PER_WRITER).to_string();
    let mut reader = t.start(&[
        "slot",
        "read",
        "m",
        "--count",
        &total,
        "--timeout",
        "30s",
        "--queue-bound",
        "64",
    ]);
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let mut w = writer_when_ready(&t, "m");
            std::thread::spawn(move || {
                for s in 0..PER_WRITER {
                    w.send(expected(i, s).as_bytes()).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0usize; WRITERS];
    for _ in 0..WRITERS * PER_WRITER {
        let line = reader.stdout_line("");
        let w: usize = line[1..line.find(' ').unwrap()].parse().unwrap();
        assert_eq!(
            line,
            expected(w, next[w]),
            "writer {w} out of order or torn"
        );
        next[w] += 1;
    }
    assert_eq!(next, [PER_WRITER; WRITERS]);
    for w in writers {
        w.join().unwrap();
    }
    reader.wait_success(DEADLINE);
}

#[test]
fn send_over_the_readers_limit_fails_with_one_line_and_the_slot_stays_usable() {
    let t = TestNs::new();
    let mut reader = t.start(&[
        "slot",
        "read",
        "big",
        "--max-message-size",
        "8",
        "--count",
        "1",
        "--timeout",
        "30s",
    ]);
    drop(writer_when_ready(&t, "big"));
    let o = t.run(&["slot", "send", "big", "123456789"]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("exceeds") && o.stderr.contains("'big'"),
        "{o:#?}"
    );
    t.run(&["slot", "send", "big", "12345678"]).assert_success();
    assert_eq!(reader.stdout_line(""), "12345678");
    reader.wait_success(DEADLINE);
}

#[test]
fn bad_names_missing_slots_and_a_second_reader_are_one_line_failures() {
    let t = TestNs::new();
    let o = t.run(&["slot", "send", "../x", "hi"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("invalid name"), "{o:#?}");
    let o = t.run(&["slot", "send", "nobody", "hi"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("no mailslot has this name"), "{o:#?}");
    let _a = t.start(&["slot", "read", "one"]);
    wait_live(&t.ns, "one");
    let o = t.run(&["slot", "read", "one"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("held by a live mailslot"), "{o:#?}");
}

fn members(t: &TestNs, group: &str) -> Vec<ipckit::name::EndpointInfo> {
    let prefix = format!("{group}.group/");
    t.ns.list()
        .unwrap()
        .into_iter()
        .filter(|e| e.name.starts_with(&prefix))
        .collect()
}

#[test]
fn group_send_reaches_every_group_read_process_and_skips_dead_ones() {
    let t = TestNs::new();
    let mut readers: Vec<Proc> = (0..3)
        .map(|_| {
            t.start(&[
                "slot",
                "group-read",
                "g",
                "--count",
                "1",
                "--timeout",
                "30s",
            ])
        })
        .collect();
    // A fourth member that dies without leaving.
    let mut doomed = t.start(&["slot", "group-read", "g"]);
    wait_until(DEADLINE, "4 live members", || {
        let m = members(&t, "g");
        m.len() == 4
            && m.iter()
                .all(|e| e.state == ipckit::name::EndpointState::Live)
    });
    doomed.kill();
    let o = t.run(&["slot", "group-send", "g", "to all", "--json"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["delivered"], 3, "{v}");
    assert_eq!(v["stale_removed"], 1, "{v}");
    for r in &mut readers {
        assert_eq!(r.stdout_line(""), "to all");
    }
    for r in &mut readers {
        r.wait_success(DEADLINE);
    }
    wait_until(DEADLINE, "members gone", || members(&t, "g").is_empty());
}

#[test]
fn udp_send_reaches_a_udp_reader_on_loopback_and_the_424_byte_limit_holds() {
    let t = TestNs::new();
    let mut reader = t.start(&[
        "slot",
        "read",
        "u",
        "--udp",
        "127.0.0.1:0",
        "--count",
        "1",
        "--timeout",
        "30s",
    ]);
    let addr = reader.stderr_line("udp ")["udp ".len()..].to_string();
    let big = "x".repeat(425);
    let o = t.run(&["slot", "send", "u", &big, "--udp", &addr]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("424"), "{o:#?}");
    // A datagram for another mailslot name is not delivered here.
    t.run(&["slot", "send", "other", "wrong", "--udp", &addr])
        .assert_success();
    // UDP is lossy by contract: resend until the reader prints one.
    let msg = "y".repeat(424);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no datagram arrived on loopback");
        t.run(&["slot", "send", "u", &msg, "--udp", &addr])
            .assert_success();
        let mut got = false;
        let until = Instant::now() + Duration::from_millis(500);
        while !got && Instant::now() < until {
            got = reader.stdout_so_far().contains(&msg);
            std::thread::sleep(Duration::from_millis(5));
        }
        if got {
            break;
        }
    }
    let out = reader.finish(DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, format!("{msg}\n"));
}

#[test]
fn read_and_group_read_stop_after_their_timeout_and_fail_short_of_count() {
    let t = TestNs::new();
    for verb in ["read", "group-read"] {
        t.run(&["slot", verb, "s", "--timeout", "100ms"])
            .assert_success();
        let o = t.run(&["slot", verb, "s", "--count", "1", "--timeout", "100ms"]);
        o.assert_one_line_failure();
        assert!(
            o.stderr.contains("0 of 1 messages came within --timeout"),
            "{o:#?}"
        );
    }
    assert!(t.ns.list().unwrap().is_empty());
}
