//! The async mailslots (`ipckit::mailslot::tokio`) across real processes:
//! a blocking peer process plays one side, the async side runs in the
//! test. Includes cancellation (a dropped recv loses no message; a dropped
//! send leaves the writer usable and never writes half a message) and a
//! reader that dies under a writer (`PeerGone`).
//!
//! Children are this test binary re-executed in a role (`child_role`);
//! they take commands on stdin and report on stdout. Every wait is bounded
//! by [`DEADLINE`]; a pending future is made pending (and then dropped)
//! with a short `tokio::time::timeout`, whose length only decides how long
//! the future was pending, never what the test asserts.
#![cfg(all(feature = "tokio", feature = "mailslot"))]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ipckit::mailslot::tokio::Mailslot;
use ipckit::mailslot::{MailslotOptions, WriterOptions};
use ipckit::{ErrorKind, Namespace};
use support::{say, wait_until, TestNs, DEADLINE};

/// How long a future is left pending before it is dropped.
const PENDING: Duration = Duration::from_millis(150);

#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // On each `send TEXT` line, write TEXT to mailslot ARG0 (blocking)
        // and say `SENT TEXT`; on `group G TEXT`, send TEXT to group G and
        // say `GROUP <delivered>`.
        "writer" => {
            let opts = WriterOptions::new().namespace(&ns);
            let mut w = None;
            say("READY");
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                if let Some(text) = line.strip_prefix("send ") {
                    let w = w.get_or_insert_with(|| opts.open(&args[0]).unwrap());
                    w.send(text.as_bytes()).unwrap();
                    say(&format!("SENT {text}"));
                } else if let Some(rest) = line.strip_prefix("group ") {
                    let (group, text) = rest.split_once(' ').unwrap();
                    let d = opts.send_to_group(group, text.as_bytes()).unwrap();
                    say(&format!("GROUP {}", d.delivered));
                }
            }
        }
        // Create mailslot ARG0 with queue bound ARG1, say `READY`; on
        // `read N`, read N messages (blocking, bounded), saying `GOT TEXT`
        // for each.
        "reader" => {
            let slot = MailslotOptions::new()
                .namespace(&ns)
                .queue_bound(args[1].parse().unwrap())
                .create(&args[0])
                .unwrap();
            say("READY");
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                if let Some(n) = line.strip_prefix("read ") {
                    for _ in 0..n.parse::<usize>().unwrap() {
                        let m = slot.recv_timeout(DEADLINE).unwrap();
                        say(&format!("GOT {}", String::from_utf8(m).unwrap()));
                    }
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `fut`, bounded by [`DEADLINE`].
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// Poll `fut` once and check it is pending.
async fn started<F: Future>(fut: &mut Pin<Box<F>>) {
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "completed although nothing could");
}

fn reader(t: &TestNs, name: &str) -> Mailslot {
    Mailslot::new(
        MailslotOptions::new()
            .namespace(&t.ns)
            .create(name)
            .unwrap(),
    )
}

#[test]
fn async_reader_gets_a_blocking_writers_messages_in_order() {
    let t = TestNs::new();
    let slot = reader(&t, "m");
    let mut w = t.talk("writer", &["m"]);
    w.stdout_line("READY");
    runtime().block_on(async {
        // A recv waiting before the message exists is woken by it.
        let mut first = Box::pin(slot.recv());
        started(&mut first).await;
        w.tell("send one");
        assert_eq!(bounded("the first message", first).await.unwrap(), b"one");
        for i in 0..20 {
            w.tell(&format!("send m{i}"));
        }
        for i in 0..20 {
            let m = bounded("a message", slot.recv()).await.unwrap();
            assert_eq!(m, format!("m{i}").as_bytes());
        }
        assert_eq!(slot.try_recv().unwrap(), None);
    });
}

#[test]
fn dropped_recv_futures_lose_no_message() {
    let t = TestNs::new();
    let slot = reader(&t, "m");
    let mut w = t.talk("writer", &["m"]);
    w.stdout_line("READY");
    runtime().block_on(async {
        // A recv that was waiting, is woken by the message, and is dropped
        // before it is polled again: the message stays queued.
        let mut fut = Box::pin(slot.recv());
        started(&mut fut).await;
        w.tell("send kept");
        assert_eq!(w.stdout_line("SENT"), "SENT kept");
        drop(fut);
        assert_eq!(slot.get_ref().pending().count, 1);
        let m = bounded("the kept message", slot.recv()).await.unwrap();
        assert_eq!(m, b"kept");
    });
}

#[test]
fn a_recv_cancelled_while_pending_leaves_every_message_to_the_next() {
    let t = TestNs::new();
    let slot = reader(&t, "m");
    let mut w = t.talk("writer", &["m"]);
    w.stdout_line("READY");
    runtime().block_on(async {
        for i in 0..3 {
            // Pending (nothing queued), then dropped.
            assert!(tokio::time::timeout(PENDING, slot.recv()).await.is_err());
            w.tell(&format!("send x{i}"));
            w.stdout_line("SENT");
            let m = bounded("a message after a cancellation", slot.recv())
                .await
                .unwrap();
            assert_eq!(m, format!("x{i}").as_bytes());
        }
    });
}

#[test]
fn recv_timeout_and_read_timeout_report_timeout() {
    let t = TestNs::new();
    let slot = Mailslot::new(
        MailslotOptions::new()
            .namespace(&t.ns)
            .read_timeout(Some(Duration::from_millis(20)))
            .create("m")
            .unwrap(),
    );
    runtime().block_on(async {
        assert_eq!(slot.recv().await.unwrap_err().kind(), ErrorKind::Timeout);
        let e = slot.recv_timeout(Duration::ZERO).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    });
}

#[test]
fn async_writer_reaches_a_blocking_reader_in_another_process() {
    let t = TestNs::new();
    let mut r = t.talk("reader", &["m", "16"]);
    r.stdout_line("READY");
    runtime().block_on(async {
        let opts = WriterOptions::new().namespace(&t.ns);
        let mut w = bounded("open", opts.open_async("m")).await.unwrap();
        for i in 0..5 {
            bounded("send", w.send(format!("w{i}").as_bytes()))
                .await
                .unwrap();
        }
    });
    r.tell("read 5");
    for i in 0..5 {
        assert_eq!(r.stdout_line("GOT"), format!("GOT w{i}"));
    }
}

#[test]
fn a_dropped_send_is_completed_by_the_next_and_the_writer_stays_usable() {
    let t = TestNs::new();
    // Queue of one, read only on command: the second send waits for room.
    let mut r = t.talk("reader", &["m", "1"]);
    r.stdout_line("READY");
    let rt = runtime();
    rt.block_on(async {
        let opts = WriterOptions::new().namespace(&t.ns).wait_forever();
        let mut w = bounded("open", opts.open_async("m")).await.unwrap();
        bounded("the first send", w.send(b"first")).await.unwrap();
        // Written whole, waiting for room; dropped.
        assert!(
            tokio::time::timeout(PENDING, w.send(b"second"))
                .await
                .is_err(),
            "the queue is full: the send must wait"
        );
        r.tell("read 2");
        assert_eq!(r.stdout_line("GOT"), "GOT first");
        // The dropped send's message was written whole: it arrives.
        assert_eq!(r.stdout_line("GOT"), "GOT second");
        // The next send first reads the dropped one's acknowledgement, then
        // delivers its own.
        bounded("a send after a dropped one", w.send(b"third"))
            .await
            .unwrap();
        r.tell("read 1");
        assert_eq!(r.stdout_line("GOT"), "GOT third");
    });
}

#[test]
fn a_send_dropped_midway_through_a_large_message_never_leaves_half_a_message() {
    let t = TestNs::new();
    let mut r = t.talk("reader", &["m", "1"]);
    r.stdout_line("READY");
    let big = "b".repeat(8 << 20);
    runtime().block_on(async {
        let opts = WriterOptions::new().namespace(&t.ns).wait_forever();
        let mut w = bounded("open", opts.open_async("m")).await.unwrap();
        bounded("fill the queue", w.send(b"first")).await.unwrap();
        // 8 MiB cannot be queued while the queue is full; whether the
        // frame was written whole or in part when the future is dropped,
        // the next send completes it first.
        let mut fut = Box::pin(w.send(big.as_bytes()));
        let _ = tokio::time::timeout(PENDING, fut.as_mut()).await;
        drop(fut);
        r.tell("read 1");
        assert_eq!(r.stdout_line("GOT"), "GOT first");
        let mut next = Box::pin(w.send(b"after"));
        // The reader reads the big message while `next` completes it.
        r.tell("read 2");
        bounded("the send after the dropped one", next.as_mut())
            .await
            .unwrap();
    });
    let got = r.stdout_line("GOT");
    assert_eq!(got.len(), "GOT ".len() + big.len(), "the big message whole");
    assert_eq!(r.stdout_line("GOT"), "GOT after");
}

#[test]
fn async_send_gets_peer_gone_when_the_reader_dies() {
    let t = TestNs::new();
    let mut r = t.talk("reader", &["m", "1"]);
    r.stdout_line("READY");
    runtime().block_on(async {
        let opts = WriterOptions::new().namespace(&t.ns).wait_forever();
        let mut w = bounded("open", opts.open_async("m")).await.unwrap();
        bounded("the first send", w.send(b"first")).await.unwrap();
        // Waiting for room when the reader is killed.
        let mut pending = Box::pin(w.send(b"second"));
        assert!(tokio::time::timeout(PENDING, pending.as_mut())
            .await
            .is_err());
        r.kill();
        let e = bounded("a send whose reader died", pending)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
        // The writer says so from then on.
        let e = bounded("a send after", w.send(b"third")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    });
    let e = runtime()
        .block_on(WriterOptions::new().namespace(&t.ns).open_async("m"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn async_group_members_and_udp_readers_get_blocking_writes() {
    let t = TestNs::new();
    let opts = MailslotOptions::new().namespace(&t.ns);
    let a = Mailslot::new(opts.clone().join_group("news").unwrap());
    let b = Mailslot::new(opts.clone().join_group("news").unwrap());
    let udp = Mailslot::new(opts.udp("127.0.0.1:0").create("far").unwrap());
    let mut w = t.talk("writer", &["m"]);
    w.stdout_line("READY");
    w.tell("group news hello");
    assert_eq!(w.stdout_line("GROUP"), "GROUP 2");
    let to = udp.get_ref().udp_addr().unwrap().to_string();
    runtime().block_on(async {
        assert_eq!(bounded("member a", a.recv()).await.unwrap(), b"hello");
        assert_eq!(bounded("member b", b.recv()).await.unwrap(), b"hello");
        // The async side writes to the group too.
        let sent = WriterOptions::new()
            .namespace(&t.ns)
            .send_to_group_async("news", b"again")
            .await
            .unwrap();
        assert_eq!(sent.delivered, 2);
        assert_eq!(bounded("member a", a.recv()).await.unwrap(), b"again");
        assert_eq!(bounded("member b", b.recv()).await.unwrap(), b"again");
        // UDP is lossy: resend until one arrives (on loopback, the first).
        let mut got = None;
        wait_until(DEADLINE, "a UDP datagram", || {
            ipckit::mailslot::send_datagram(&to, "far", b"ping").unwrap();
            got = udp.try_recv().unwrap();
            got.is_some()
        });
        assert_eq!(got.unwrap(), b"ping");
    });
}
