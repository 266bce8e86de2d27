//! Mailslots across real processes.

#[path = "slotutil/mod.rs"]
mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ipckit::mailslot::{MailslotOptions, WriterOptions};
use ipckit::{ErrorKind, Namespace};

const WRITERS: usize = 8;
const PER_WRITER: usize = 1000;

fn expected(writer: usize, seq: usize) -> String {
    // Variable length, content derived from (writer, seq): a torn or mixed
    // message cannot match.
    let pad: String = std::iter::repeat_n((b'a' + (seq % 26) as u8) as char, seq % 97).collect();
    format!("w{writer} s{seq} {pad}")
}

/// Child role: writer number $WRITER sends PER_WRITER messages to "m".
#[test]
#[ignore]
fn writer_child() {
    if std::env::var(ROLE).as_deref() != Ok("writer") {
        return;
    }
    let id: usize = std::env::var("WRITER").unwrap().parse().unwrap();
    let mut w = WriterOptions::new()
        .timeout(Duration::from_secs(30))
        .open("m")
        .unwrap();
    for s in 0..PER_WRITER {
        w.send(expected(id, s).as_bytes()).unwrap();
    }
}

#[test]
fn eight_writer_processes_each_deliver_a_thousand_whole_messages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let total = (WRITERS * PER_WRITER).to_string();
    let mut reader = ipckit(
        dir.path(),
        &[
            "slot",
            "read",
            "m",
            "--count",
            &total,
            "--timeout",
            "30s",
            "--queue-bound",
            "64",
        ],
    );
    reader.stdout(Stdio::piped());
    let mut reader = spawn(reader);
    let out = lines(reader.0.stdout.take().unwrap());
    wait_live(&ns, "m");
    let mut writers: Vec<Guard> = (0..WRITERS)
        .map(|i| {
            let mut c = role(dir.path(), "writer_child", "writer");
            c.env("WRITER", i.to_string()).stdout(Stdio::null());
            spawn(c)
        })
        .collect();
    let mut next = [0usize; WRITERS];
    for _ in 0..WRITERS * PER_WRITER {
        let line = next_line(&out);
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
        assert!(w.wait(Duration::from_secs(30)).success());
    }
    assert!(reader.wait(Duration::from_secs(30)).success());
}

/// Child role: a reader with a queue of 3 that reads only after "go" on stdin.
#[test]
#[ignore]
fn slow_reader_child() {
    if std::env::var(ROLE).as_deref() != Ok("slow-reader") {
        return;
    }
    let slot = MailslotOptions::new().queue_bound(3).create("f").unwrap();
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

#[test]
fn full_queue_blocks_the_writer_then_fails_with_full_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let mut c = role(dir.path(), "slow_reader_child", "slow-reader");
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut reader = spawn(c);
    let out = lines(reader.0.stdout.take().unwrap());
    let mut stdin = reader.0.stdin.take().unwrap();
    wait_live(&ns, "f");

    let mut w = WriterOptions::new()
        .namespace(&ns)
        .timeout(Duration::from_millis(300))
        .open("f")
        .unwrap();
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
        let l = next_line(&out);
        if l == "END" {
            break;
        }
        if let Some(m) = l.strip_prefix("MSG ") {
            got.push(m.to_string());
        }
    }
    assert_eq!(got, ["m0", "m1", "m2", "m4", "m5"]);
    assert!(reader.wait(Duration::from_secs(30)).success());
}

#[test]
fn oversized_messages_fail_with_too_large_and_the_slot_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let mut reader = ipckit(
        dir.path(),
        &[
            "slot",
            "read",
            "big",
            "--max-message-size",
            "8",
            "--count",
            "1",
            "--timeout",
            "30s",
        ],
    );
    reader.stdout(Stdio::piped());
    let mut reader = spawn(reader);
    let out = lines(reader.0.stdout.take().unwrap());
    wait_live(&ns, "big");
    let o = ipckit(dir.path(), &["slot", "send", "big", "123456789"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exceeds") && err.contains("'big'"), "{err}");
    let mut w = WriterOptions::new().namespace(&ns).open("big").unwrap();
    let e = w.send(&[b'x'; 9]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(e.needed(), Some(9));
    w.send(b"12345678").unwrap();
    assert_eq!(next_line(&out), "12345678");
    assert!(reader.wait(Duration::from_secs(30)).success());
}

#[test]
fn bad_names_and_missing_slots_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = ipckit(dir.path(), &["slot", "send", "../x", "hi"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid name"));
    let o = ipckit(dir.path(), &["slot", "send", "nobody", "hi"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no mailslot has this name"));
    // A second reader of one name is refused.
    let ns = Namespace::at(dir.path()).unwrap();
    let _a = spawn(ipckit(dir.path(), &["slot", "read", "one"]));
    wait_live(&ns, "one");
    let o = ipckit(dir.path(), &["slot", "read", "one"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("held by a live mailslot"));
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
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let mut readers = Vec::new();
    let mut outs = Vec::new();
    for _ in 0..3 {
        let mut c = ipckit(
            dir.path(),
            &[
                "slot",
                "group-read",
                "g",
                "--count",
                "1",
                "--timeout",
                "30s",
            ],
        );
        c.stdout(Stdio::piped());
        let mut g = spawn(c);
        outs.push(lines(g.0.stdout.take().unwrap()));
        readers.push(g);
    }
    // A fourth member that dies without leaving.
    let mut doomed = spawn(ipckit(dir.path(), &["slot", "group-read", "g"]));
    wait_until("4 live members", || {
        let m = members(&ns, "g");
        m.len() == 4
            && m.iter()
                .all(|e| e.state == ipckit::name::EndpointState::Live)
    });
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let o = ipckit(dir.path(), &["slot", "group-send", "g", "to all", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["delivered"], 3, "{v}");
    assert_eq!(v["stale_removed"], 1, "{v}");
    for out in &outs {
        assert_eq!(next_line(out), "to all");
    }
    for r in &mut readers {
        assert!(r.wait(Duration::from_secs(30)).success());
    }
    wait_until("members gone", || members(&ns, "g").is_empty());
}

#[test]
fn udp_datagrams_reach_a_reader_on_loopback_and_the_424_byte_limit_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ipckit(
        dir.path(),
        &[
            "slot",
            "read",
            "u",
            "--udp",
            "127.0.0.1:0",
            "--count",
            "1",
            "--timeout",
            "30s",
        ],
    );
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut reader = spawn(c);
    let out = lines(reader.0.stdout.take().unwrap());
    let err = lines(reader.0.stderr.take().unwrap());
    let addr = next_line(&err).strip_prefix("udp ").unwrap().to_string();

    let big = "x".repeat(425);
    let o = ipckit(dir.path(), &["slot", "send", "u", &big, "--udp", &addr])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("424"));
    // A datagram for another mailslot name is not delivered here.
    let o = ipckit(
        dir.path(),
        &["slot", "send", "other", "wrong", "--udp", &addr],
    )
    .output()
    .unwrap();
    assert!(o.status.success());
    // UDP is lossy by contract: resend until the reader reports one.
    let msg = "y".repeat(424);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no datagram arrived on loopback"
        );
        let o = ipckit(dir.path(), &["slot", "send", "u", &msg, "--udp", &addr])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if let Ok(l) = out.recv_timeout(Duration::from_millis(500)) {
            break l;
        }
    };
    assert_eq!(got, msg);
    assert!(reader.wait(Duration::from_secs(30)).success());
}
