//! Mailslots on Windows: the system's own (`CreateMailslotW`, then
//! `CreateFileW` and `WriteFile`, `GetMailslotInfo`). Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! The two-process test re-runs this test executable as its children (the
//! environment variable [`CHILD_ENV`] names a child's role); the interop
//! test runs the plain Win32 C program `scripts/windows/slot_writer.c`.
#![cfg(all(windows, feature = "mailslot"))]

mod windows_support;

use windows_support::c_peer;

use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::mailslot::{
    send_datagram, MailslotInfo, MailslotOptions, WriterOptions, UDP_MAX_MESSAGE, UNLIMITED_CAP,
};
use ipckit::{ErrorKind, Namespace};

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_SLOT_CHILD";
/// How long any child, or any wait for a message, may take before the
/// test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn fresh_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

/// Wait for `child` to exit (at most [`LIMIT`]) and return its output;
/// panics if it does not finish.
fn output(child: Child, what: &str) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
        .unwrap()
}

/// Wait for `child` to exit (at most [`LIMIT`]) and return its stdout;
/// panics if it fails or does not finish.
fn finish(child: Child, what: &str) -> String {
    let out = output(child, what);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn create_open_already_exists_not_found() {
    let (_dir, ns) = fresh_ns();
    let o = MailslotOptions::new().namespace(&ns);
    let w = WriterOptions::new().namespace(&ns);
    assert_eq!(w.open("box").unwrap_err().kind(), ErrorKind::NotFound);
    let slot = o.create("box").unwrap();
    assert_eq!(slot.name(), "box");
    assert_eq!(
        o.create("box").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let writer = w.open("box").unwrap();
    assert_eq!(writer.name(), "box");
    // Another namespace is another mailslot of the same name.
    let (_d2, other) = fresh_ns();
    let there = MailslotOptions::new()
        .namespace(&other)
        .create("box")
        .unwrap();
    WriterOptions::new()
        .namespace(&other)
        .open("box")
        .unwrap()
        .send(b"there")
        .unwrap();
    assert_eq!(there.recv_timeout(LIMIT).unwrap(), b"there");
    assert_eq!(slot.try_recv().unwrap(), None);
    // Names with segments are pseudo-directories of the mailslot.
    let deep = o.create("a/b/c").unwrap();
    w.open("a/b/c").unwrap().send(b"deep").unwrap();
    assert_eq!(deep.recv_timeout(LIMIT).unwrap(), b"deep");
    assert_eq!(w.open("a/b").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn names_follow_the_rules() {
    let (_dir, ns) = fresh_ns();
    let o = MailslotOptions::new().namespace(&ns);
    for bad in ["", "a\\b", "../x", "a//b", r"\\.\mailslot\"] {
        assert_eq!(
            o.create(bad).unwrap_err().kind(),
            ErrorKind::InvalidName,
            "{bad:?}"
        );
        assert_eq!(
            WriterOptions::new()
                .namespace(&ns)
                .open(bad)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidName,
            "{bad:?}"
        );
    }
    // A name in the system's form is used as is, whatever the namespace.
    let raw = format!(r"\\.\mailslot\ipckit-test-raw-{}", std::process::id());
    let slot = o.create(&raw).unwrap();
    assert_eq!(slot.name(), raw);
    let (_d2, other) = fresh_ns();
    let mut w = WriterOptions::new().namespace(&other).open(&raw).unwrap();
    // No size section beside a system-form name: the writer cannot know.
    assert_eq!(w.max_message_size(), UNLIMITED_CAP);
    w.send(b"raw").unwrap();
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"raw");
    assert_eq!(o.create(&raw).unwrap_err().kind(), ErrorKind::AlreadyExists);
}

#[test]
fn messages_arrive_whole_and_in_order() {
    let (_dir, ns) = fresh_ns();
    let slot = MailslotOptions::new()
        .namespace(&ns)
        .create("order")
        .unwrap();
    let mut w = WriterOptions::new().namespace(&ns).open("order").unwrap();
    let msgs: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        Vec::new(),
        vec![7u8; 1],
        (0..40_000u32).map(|i| (i % 251) as u8).collect(),
        // Larger than the read buffer of an unlimited mailslot (64 KiB).
        (0..100_000u32).map(|i| (i % 241) as u8).collect(),
        b"last".to_vec(),
    ];
    for m in &msgs {
        w.send(m).unwrap();
    }
    for m in &msgs {
        assert_eq!(&slot.recv_timeout(LIMIT).unwrap(), m);
    }
    assert_eq!(slot.try_recv().unwrap(), None);
    // A second writer interleaves whole messages.
    let mut w2 = WriterOptions::new().namespace(&ns).open("order").unwrap();
    w.send(b"a1").unwrap();
    w2.send(b"b1").unwrap();
    w.send(b"a2").unwrap();
    let got: Vec<Vec<u8>> = (0..3).map(|_| slot.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, [b"a1".to_vec(), b"b1".to_vec(), b"a2".to_vec()]);
}

#[test]
fn a_message_over_the_limit_is_too_large() {
    let (_dir, ns) = fresh_ns();
    let slot = MailslotOptions::new()
        .namespace(&ns)
        .max_message_size(16)
        .create("small")
        .unwrap();
    let mut w = WriterOptions::new().namespace(&ns).open("small").unwrap();
    assert_eq!(w.max_message_size(), 16);
    let e = w.send(&[1u8; 17]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(e.needed(), Some(17));
    // Nothing was sent; the largest allowed message goes through.
    w.send(&[2u8; 16]).unwrap();
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), [2u8; 16]);
    assert_eq!(slot.try_recv().unwrap(), None);
    // Above the cap is refused at creation.
    assert_eq!(
        MailslotOptions::new()
            .namespace(&ns)
            .max_message_size(UNLIMITED_CAP + 1)
            .create("huge")
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let unlimited = MailslotOptions::new().namespace(&ns).create("big").unwrap();
    let w = WriterOptions::new().namespace(&ns).open("big").unwrap();
    assert_eq!(w.max_message_size(), UNLIMITED_CAP);
    drop(unlimited);
}

#[test]
fn reads_time_out() {
    let (_dir, ns) = fresh_ns();
    let slot = MailslotOptions::new()
        .namespace(&ns)
        .read_timeout(Some(Duration::from_millis(20)))
        .create("quiet")
        .unwrap();
    assert_eq!(slot.recv().unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(
        slot.recv_timeout(Duration::from_millis(30))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    assert_eq!(slot.try_recv().unwrap(), None);
    // A message waiting is returned whatever the timeout.
    let mut w = WriterOptions::new().namespace(&ns).open("quiet").unwrap();
    w.send(b"x").unwrap();
    assert_eq!(slot.recv().unwrap(), b"x");
    w.send(b"y").unwrap();
    assert_eq!(slot.recv_timeout(Duration::ZERO).unwrap(), b"y");
    // A reader already waiting gets a message written by another thread.
    let t = std::thread::spawn(move || w.send(b"later").unwrap());
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"later");
    t.join().unwrap();
}

#[test]
fn pending_reports_the_next_message() {
    let (_dir, ns) = fresh_ns();
    let slot = MailslotOptions::new().namespace(&ns).create("p").unwrap();
    assert_eq!(
        slot.pending(),
        MailslotInfo {
            count: 0,
            next_size: None
        }
    );
    let mut w = WriterOptions::new().namespace(&ns).open("p").unwrap();
    w.send(b"four").unwrap();
    w.send(b"sixsix").unwrap();
    let p = slot.pending();
    assert_eq!(p.next_size, Some(4));
    // Windows counts 2; Wine is known to count fewer, never 0.
    assert!((1..=2).contains(&p.count), "{p:?}");
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"four");
    assert_eq!(slot.pending().next_size, Some(6));
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"sixsix");
    assert_eq!(
        slot.pending(),
        MailslotInfo {
            count: 0,
            next_size: None
        }
    );
}

/// A child's role in [`two_processes_write_to_the_parents_slot`]: send
/// `N` numbered messages tagged with its tag.
fn child_writes(tag: &str) {
    let mut w = WriterOptions::new().open("inbox").expect("child: open");
    for i in 0..N {
        w.send(format!("{tag}:{i}").as_bytes())
            .expect("child: send");
    }
}

const N: usize = 50;

#[test]
fn two_processes_write_to_the_parents_slot() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        child_writes(&role);
        return;
    }
    let (_dir, ns) = fresh_ns();
    let slot = MailslotOptions::new()
        .namespace(&ns)
        .max_message_size(64)
        .create("inbox")
        .unwrap();
    let spawn = |tag: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "two_processes_write_to_the_parents_slot",
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_ENV, tag)
            .env("IPCKIT_NAMESPACE", ns.dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A writer of our own stays open throughout: the children's writers
    // share the mailslot with it (and with each other).
    let mut ours = WriterOptions::new().namespace(&ns).open("inbox").unwrap();
    let (a, b) = (spawn("a"), spawn("b"));
    let mut next = [0usize; 2];
    for _ in 0..2 * N {
        let m = slot.recv_timeout(LIMIT).unwrap();
        let m = String::from_utf8(m).unwrap();
        let (tag, i) = m.split_once(':').unwrap();
        let k = match tag {
            "a" => 0,
            "b" => 1,
            other => panic!("unexpected tag {other:?} in {m:?}"),
        };
        // Each writer's messages arrive in the order it sent them.
        assert_eq!(i.parse::<usize>().unwrap(), next[k], "{m}");
        next[k] += 1;
    }
    assert_eq!(next, [N, N]);
    ours.send(b"parent").unwrap();
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"parent");
    for (c, what) in [(a, "child a"), (b, "child b")] {
        let out = finish(c, what);
        assert!(out.contains("1 passed"), "{what} ran its role:\n{out}");
    }
    assert_eq!(slot.try_recv().unwrap(), None);
}

#[test]
fn a_plain_win32_program_writes_to_an_ipckit_mailslot() {
    let Some(peer) = c_peer("slot_writer") else {
        return;
    };
    let (_dir, ns) = fresh_ns();
    let raw = format!(r"\\.\mailslot\ipckit-test-c-{}", std::process::id());
    let slot = MailslotOptions::new().namespace(&ns).create(&raw).unwrap();
    let child = Command::new(&peer)
        .args([raw.as_str(), "one", "", "three"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, "the C writer");
    assert_eq!(out.trim(), "wrote 3");
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"one");
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"");
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"three");
    assert_eq!(slot.try_recv().unwrap(), None);
    // Its open of a mailslot nobody created fails as Win32 says.
    let child = Command::new(&peer)
        .args([&format!("{raw}-absent"), "x"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output(child, "the C writer (absent mailslot)");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CreateFileA: 2"),
        "{out:?}"
    );
}

#[test]
fn udp_datagrams_reach_the_mailslot() {
    let (_dir, ns) = fresh_ns();
    let slot = MailslotOptions::new()
        .namespace(&ns)
        .udp("127.0.0.1:0")
        .create("far")
        .unwrap();
    let to = slot.udp_addr().unwrap().to_string();
    assert_eq!(slot.udp_dropped(), 0);
    // Bad datagrams first: malformed, for another name, too large for UDP.
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"not a mailslot datagram", &to).unwrap();
    let mut long = b"IPCKMSD1".to_vec();
    long.extend_from_slice(&3u16.to_le_bytes());
    long.extend_from_slice(b"far");
    long.extend_from_slice(&[0u8; UDP_MAX_MESSAGE + 1]);
    raw.send_to(&long, &to).unwrap();
    send_datagram(&to, "near", b"elsewhere").unwrap();
    // Then good ones, which arrive whole and in order (loopback).
    send_datagram(&to, "far", b"ping").unwrap();
    send_datagram(&to, "far", &[9u8; UDP_MAX_MESSAGE]).unwrap();
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"ping");
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), [9u8; UDP_MAX_MESSAGE]);
    assert_eq!(slot.udp_dropped(), 3);
    // Local writers still work beside UDP.
    WriterOptions::new()
        .namespace(&ns)
        .open("far")
        .unwrap()
        .send(b"local")
        .unwrap();
    assert_eq!(slot.recv_timeout(LIMIT).unwrap(), b"local");
    // Too large for UDP: refused before sending.
    let e = send_datagram(&to, "far", &[0u8; UDP_MAX_MESSAGE + 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(
        send_datagram(&to, "bad//name", b"x").unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    // Dropping the mailslot stops its UDP thread (bounded by the poll).
    drop(slot);
    assert_eq!(
        WriterOptions::new()
            .namespace(&ns)
            .open("far")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// The async reader (`mailslot::tokio`) takes messages written by another
/// process, in order; a read cancelled while its helper waits loses
/// nothing: every message is read afterwards exactly once, in order.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_reader_takes_another_process_messages_and_a_cancelled_read_loses_none() {
    use ipckit::mailslot::tokio::Mailslot as AsyncSlot;
    if let Ok(role) = std::env::var(CHILD_ENV) {
        child_writes(&role);
        return;
    }
    let test = "the_async_reader_takes_another_process_messages_and_a_cancelled_read_loses_none";
    let (_dir, ns) = fresh_ns();
    let slot = AsyncSlot::new(
        MailslotOptions::new()
            .namespace(&ns)
            .max_message_size(64)
            .create("inbox")
            .unwrap(),
    );
    // Nothing written yet: a read that is given up on takes nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), slot.recv())
            .await
            .is_err()
    );
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "a")
        .env("IPCKIT_NAMESPACE", ns.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    while got.len() < N {
        // Alternate whole reads with reads cancelled at once: a message a
        // cancelled read's helper took is kept for the next read.
        // (A read may also finish in its first poll: then it counts.)
        if got.len() % 2 == 0 {
            if let Ok(m) = tokio::time::timeout(Duration::ZERO, slot.recv()).await {
                got.push(String::from_utf8(m.unwrap()).unwrap());
                continue;
            }
        }
        let m = tokio::time::timeout(LIMIT, slot.recv())
            .await
            .expect("a message did not arrive in time")
            .unwrap();
        got.push(String::from_utf8(m).unwrap());
    }
    let want: Vec<String> = (0..N).map(|i| format!("a:{i}")).collect();
    assert_eq!(got, want);
    assert!(finish(child, "child a").contains("1 passed"));
    // The async writer reaches the same mailslot.
    let mut w = WriterOptions::new()
        .namespace(&ns)
        .open_async("inbox")
        .await
        .unwrap();
    w.send(b"async").await.unwrap();
    assert_eq!(slot.recv_timeout(LIMIT).await.unwrap(), b"async");
    assert_eq!(slot.try_recv().unwrap(), None);
    let e = w.send(&[0u8; 65]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
}
