//! The async window messages (`ipckit::message::tokio`) across real
//! processes: a blocking peer process plays one side, the async side runs
//! in the test. Includes the Win32 order (sent messages ahead of posted
//! ones), cancellation (a dropped recv loses no message; a dropped send
//! leaves the window usable and its late reply is discarded) and peers that
//! die (`PeerGone`).
//!
//! Children are this test binary re-executed in a role (`child_role`);
//! they take commands on stdin and report on stdout. Every wait is bounded
//! by [`DEADLINE`]; a pending future is made pending (and then dropped)
//! with a short `tokio::time::timeout`, whose length only decides how long
//! the future was pending, never what the test asserts.
#![cfg(all(feature = "tokio", feature = "message"))]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Mutex};
use std::task::Poll;
use std::time::Duration;

use ipckit::message::tokio::QueueStatus;
use ipckit::message::{Messenger, ReceiverOptions, Reply};
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
    let m = Messenger::new().namespace(&ns);
    match role.as_str() {
        // Blocking sender to receiver ARG0: on `send ID TEXT` send and say
        // `REPLY <result> <data>` or `ERR <kind>`; on `post ID TEXT` post
        // and say `POSTED`.
        "sender" => {
            let mut w = m.connect(&args[0]).unwrap();
            say("READY");
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                let mut parts = line.splitn(3, ' ');
                let (cmd, id, text) = (
                    parts.next().unwrap(),
                    parts.next().unwrap().parse::<u32>().unwrap(),
                    parts.next().unwrap_or(""),
                );
                match cmd {
                    "send" => match w.send(id, text.as_bytes(), DEADLINE) {
                        Ok(r) => say(&format!(
                            "REPLY {} {}",
                            r.result,
                            String::from_utf8(r.data).unwrap()
                        )),
                        Err(e) => say(&format!("ERR {:?}", e.kind())),
                    },
                    "post" => {
                        w.post(id, text.as_bytes()).unwrap();
                        say("POSTED");
                    }
                    other => panic!("unknown command {other}"),
                }
            }
        }
        // Blocking receiver ARG0: replies `id` with the data reversed;
        // message id 2 says `HANDLING 2` and waits for `go` on stdin first,
        // then says `HANDLED 2`.
        "receiver" => {
            let (go_tx, go) = mpsc::channel::<()>();
            let go = Mutex::new(go);
            let _rx = ReceiverOptions::new()
                .namespace(&ns)
                .register(&args[0], move |msg| {
                    if msg.id == 2 {
                        say("HANDLING 2");
                        go.lock().unwrap().recv_timeout(DEADLINE).unwrap();
                        say("HANDLED 2");
                    }
                    let mut data = msg.data.to_vec();
                    data.reverse();
                    Reply::new(msg.id.into()).with_data(data)
                })
                .unwrap();
            say("READY");
            for line in std::io::stdin().lines() {
                if line.unwrap() == "go" {
                    go_tx.send(()).unwrap();
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

// ---------------------------------------------------------------- receiving

#[test]
fn async_receiver_answers_a_blocking_sender_in_another_process() {
    let t = TestNs::new();
    let rx = ReceiverOptions::new()
        .namespace(&t.ns)
        .register_async("w")
        .unwrap();
    let mut s = t.talk("sender", &["w"]);
    s.stdout_line("READY");
    s.tell("send 7 hello");
    runtime().block_on(async {
        let m = bounded("the sent message", rx.recv()).await.unwrap();
        assert_eq!((m.id(), m.data(), m.is_posted()), (7, &b"hello"[..], false));
        assert_eq!(m.sender_pid(), s.pid());
        m.reply(Reply::new(42).with_data(b"back".to_vec()));
    });
    assert_eq!(s.stdout_line("REPLY"), "REPLY 42 back");
}

#[test]
fn sent_messages_are_handed_out_ahead_of_posted_ones() {
    let t = TestNs::new();
    let rx = ReceiverOptions::new()
        .namespace(&t.ns)
        .register_async("w")
        .unwrap();
    let mut s = t.talk("sender", &["w"]);
    s.stdout_line("READY");
    for i in 1..=3 {
        s.tell(&format!("post {i} p{i}"));
        s.stdout_line("POSTED");
    }
    s.tell("send 9 urgent");
    wait_until(DEADLINE, "the sent message is queued", || {
        rx.queued() == QueueStatus { sent: 1, posted: 3 }
    });
    runtime().block_on(async {
        let m = bounded("the sent message", rx.recv()).await.unwrap();
        assert_eq!((m.id(), m.is_posted()), (9, false));
        m.reply(Reply::new(1));
        for i in 1..=3 {
            let p = bounded("a posted message", rx.recv()).await.unwrap();
            assert_eq!((p.id(), p.is_posted()), (i, true));
            assert_eq!(p.data(), format!("p{i}").as_bytes());
        }
    });
    assert_eq!(s.stdout_line("REPLY"), "REPLY 1 ");
}

#[test]
fn a_dropped_recv_loses_no_message() {
    let t = TestNs::new();
    let rx = ReceiverOptions::new()
        .namespace(&t.ns)
        .register_async("w")
        .unwrap();
    let mut s = t.talk("sender", &["w"]);
    s.stdout_line("READY");
    runtime().block_on(async {
        // Waiting, woken by the post, dropped before polled again.
        let mut fut = Box::pin(rx.recv());
        started(&mut fut).await;
        s.tell("post 5 kept");
        s.stdout_line("POSTED");
        drop(fut);
        // Pending on an empty queue, then dropped.
        let m = bounded("the kept message", rx.recv()).await.unwrap();
        assert_eq!((m.id(), m.data()), (5, &b"kept"[..]));
        assert!(tokio::time::timeout(PENDING, rx.recv()).await.is_err());
        s.tell("send 6 next");
        let m = bounded("the next message", rx.recv()).await.unwrap();
        assert_eq!(m.id(), 6);
        m.reply(Reply::new(6));
    });
    assert_eq!(s.stdout_line("REPLY"), "REPLY 6 ");
}

#[test]
fn a_sent_message_dropped_without_a_reply_answers_its_sender_with_remote() {
    let t = TestNs::new();
    let rx = ReceiverOptions::new()
        .namespace(&t.ns)
        .register_async("w")
        .unwrap();
    let mut s = t.talk("sender", &["w"]);
    s.stdout_line("READY");
    s.tell("send 1 ignored");
    runtime().block_on(async {
        drop(bounded("the sent message", rx.recv()).await.unwrap());
    });
    assert_eq!(s.stdout_line("ERR"), "ERR Remote");
    // The connection and the receiver go on.
    s.tell("send 2 answered");
    runtime().block_on(async {
        bounded("the next message", rx.recv())
            .await
            .unwrap()
            .reply(Reply::new(2));
    });
    assert_eq!(s.stdout_line("REPLY"), "REPLY 2 ");
}

#[test]
fn a_sender_that_dies_before_its_reply_does_not_stop_the_receiver() {
    let t = TestNs::new();
    let rx = ReceiverOptions::new()
        .namespace(&t.ns)
        .register_async("w")
        .unwrap();
    let mut s = t.talk("sender", &["w"]);
    s.stdout_line("READY");
    s.tell("send 1 doomed");
    let rt = runtime();
    let m = rt
        .block_on(bounded("the doomed message", rx.recv()))
        .unwrap();
    s.kill();
    m.reply(Reply::new(1)); // goes nowhere
    let mut other = t.talk("sender", &["w"]);
    other.stdout_line("READY");
    other.tell("send 3 fine");
    rt.block_on(async {
        let m = bounded("another sender's message", rx.recv())
            .await
            .unwrap();
        assert_eq!(m.data(), b"fine");
        m.reply(Reply::new(3));
    });
    assert_eq!(other.stdout_line("REPLY"), "REPLY 3 ");
}

// ---------------------------------------------------------------- sending

#[test]
fn async_window_sends_and_posts_to_a_blocking_receiver_in_another_process() {
    let t = TestNs::new();
    let mut r = t.talk("receiver", &["w"]);
    r.stdout_line("READY");
    runtime().block_on(async {
        let m = Messenger::new().namespace(&t.ns);
        let mut w = bounded("connect", m.connect_async("w")).await.unwrap();
        let reply = bounded("send", w.send(7, b"abc", DEADLINE)).await.unwrap();
        assert_eq!((reply.result, reply.data.as_slice()), (7, &b"cba"[..]));
        bounded("post", w.post(8, b"x")).await.unwrap();
        let reply = bounded("send_async", m.send_async("w", 9, b"", DEADLINE))
            .await
            .unwrap();
        assert_eq!(reply.result, 9);
    });
}

#[test]
fn a_dropped_send_leaves_the_window_usable_and_its_late_reply_is_discarded() {
    let t = TestNs::new();
    let mut r = t.talk("receiver", &["w"]);
    r.stdout_line("READY");
    runtime().block_on(async {
        let m = Messenger::new().namespace(&t.ns);
        let mut w = bounded("connect", m.connect_async("w")).await.unwrap();
        // Message 2 is held by the receiver's handler until `go`.
        assert!(tokio::time::timeout(PENDING, w.send(2, b"late", DEADLINE))
            .await
            .is_err());
        r.stdout_line("HANDLING 2");
        r.tell("go");
        r.stdout_line("HANDLED 2");
        // The window answers the next call with that call's own reply.
        let reply = bounded("a send after a dropped one", w.send(3, b"xy", DEADLINE))
            .await
            .unwrap();
        assert_eq!((reply.result, reply.data.as_slice()), (3, &b"yx"[..]));
        // And a send that times out behaves the same way.
        let e = w.send(2, b"", Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        r.stdout_line("HANDLING 2");
        r.tell("go");
        let reply = bounded("a send after a timeout", w.send(4, b"", DEADLINE))
            .await
            .unwrap();
        assert_eq!(reply.result, 4);
    });
}

#[test]
fn async_send_gets_peer_gone_when_the_receiver_dies_while_handling() {
    let t = TestNs::new();
    let mut r = t.talk("receiver", &["w"]);
    r.stdout_line("READY");
    runtime().block_on(async {
        let m = Messenger::new().namespace(&t.ns);
        let mut w = bounded("connect", m.connect_async("w")).await.unwrap();
        let mut pending = Box::pin(w.send(2, b"", DEADLINE));
        assert!(tokio::time::timeout(PENDING, pending.as_mut())
            .await
            .is_err());
        r.stdout_line("HANDLING 2");
        r.kill();
        let e = bounded("a send whose receiver died", pending)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
        // The next call reconnects, and there is no one any more.
        let e = bounded("a send after", w.send(1, b"", DEADLINE))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    });
}
