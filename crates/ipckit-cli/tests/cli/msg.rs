//! `ipckit msg listen|send|post|register|broadcast`.

use std::sync::mpsc;
use std::sync::Mutex;

use crate::common::{wait_live, wait_until, Proc, TestNs, DEADLINE};
use ipckit::message::{Messenger, Receiver, ReceiverOptions, Reply, Window};
use ipckit::ErrorKind;

/// A receiver in this process whose handler holds message id 1 until the
/// guard drops (other ids are answered at once with -1, once no id 1 is
/// held: a receiver handles one message at a time).
struct SlowReceiver {
    // Dropped first: every held handler returns, then the receiver goes.
    release: Option<mpsc::Sender<()>>,
    _rx: Receiver,
}

impl SlowReceiver {
    fn register(t: &TestNs, name: &str) -> SlowReceiver {
        let (release, held) = mpsc::channel::<()>();
        let held = Mutex::new(held);
        let rx = ReceiverOptions::new()
            .namespace(&t.ns)
            .register(name, move |m| {
                if m.id == 1 {
                    let _ = held.lock().unwrap().recv_timeout(DEADLINE);
                }
                Reply::new(-1)
            })
            .unwrap();
        SlowReceiver {
            release: Some(release),
            _rx: rx,
        }
    }
}

impl Drop for SlowReceiver {
    fn drop(&mut self) {
        self.release.take();
    }
}

/// A connection to receiver `name` once it accepts: its endpoint record is
/// live a moment before it listens, so `NotFound` in between is retried
/// (bounded).
fn connect_when_ready(t: &TestNs, name: &str) -> Window {
    wait_live(&t.ns, name);
    let m = Messenger::new().namespace(&t.ns).clone();
    let mut w = None;
    wait_until(DEADLINE, &format!("'{name}' accepts"), || {
        match m.connect(name) {
            Ok(x) => w = Some(x),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => panic!("cannot connect to '{name}': {e}"),
        }
        w.is_some()
    });
    w.expect("connected above")
}

#[test]
fn send_to_a_slow_receiver_times_out_and_bad_arguments_are_named() {
    let t = TestNs::new();
    let _slow = SlowReceiver::register(&t, "slow");
    let o = t.run(&["msg", "send", "slow", "1", "x", "--timeout", "200ms"]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("'slow'") && o.stderr.contains("in time"),
        "{o:#?}"
    );
    let o = t.run(&["msg", "send", "absent", "1", "x", "--timeout", "1s"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("absent"), "{o:#?}");
    let o = t.run(&["msg", "send", "bad//name", "1", "x"]);
    assert!(o.stderr.contains("invalid name"), "{o:#?}");
    let o = t.run(&["msg", "send", "slow", "0xZZ", "x"]);
    assert!(!o.status.success());
    assert!(o.stderr.contains("not a message id"), "{o:#?}");
}

#[test]
fn listen_prints_posts_in_order_and_send_prints_the_handler_result() {
    let t = TestNs::new();
    const POSTS: usize = 300;
    let total = (POSTS + 3).to_string();
    let mut listener = t.start(&["msg", "listen", "p", "--count", &total]);
    let mut w = connect_when_ready(&t, "p");
    for i in 0..POSTS {
        w.post(0x400 + i as u32, format!("post {i}").as_bytes())
            .unwrap();
    }
    for i in 0..2 {
        t.run(&["msg", "post", "p", "0x401", &format!("cli {i}")])
            .assert_success();
    }
    for i in 0..POSTS {
        assert_eq!(
            listener.stdout_line(""),
            format!("{:#06x} post {i}", 0x400 + i)
        );
    }
    assert_eq!(listener.stdout_line(""), format!("{:#06x} cli 0", 0x401));
    assert_eq!(listener.stdout_line(""), format!("{:#06x} cli 1", 0x401));
    // A sent message may overtake queued posts (as in Win32), so it comes
    // after the posts were seen.
    let o = t.run(&["msg", "send", "p", "74", "hello"]);
    o.assert_success();
    assert_eq!(o.stdout.trim(), "5");
    assert_eq!(listener.stdout_line(""), "0x004a hello");
    listener.wait_success(DEADLINE);
}

#[test]
fn register_prints_the_id_other_processes_registered() {
    let t = TestNs::new();
    let m = Messenger::new().namespace(&t.ns).clone();
    let ids: Vec<u32> = (0..40)
        .map(|k| m.register_message(&format!("Shared.Text.{k}")).unwrap())
        .collect();
    // Case-insensitive, as RegisterWindowMessage.
    let o = t.run(&["msg", "register", "shared.text.3"]);
    o.assert_success();
    assert_eq!(o.stdout.trim(), ids[3].to_string());
    let o = t.run(&["msg", "register", "Brand.New", "--json"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["id"], 0xC000 + 40, "{v}");
    assert_eq!(v["text"], "Brand.New", "{v}");
    assert_eq!(m.register_message("BRAND.NEW").unwrap(), 0xC000 + 40);
    t.run(&["msg", "register", ""]).assert_one_line_failure();
}

#[test]
fn broadcast_prints_every_receivers_result_or_error() {
    let t = TestNs::new();
    let mut listeners: Vec<Proc> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| t.start(&["msg", "listen", n, "--count", "1"]))
        .collect();
    let _slow = SlowReceiver::register(&t, "b4-slow");
    for n in ["b1", "b2", "b3"] {
        drop(connect_when_ready(&t, n));
    }
    let o = t.run(&[
        "msg",
        "broadcast",
        "1",
        "hello!",
        "--timeout",
        "2s",
        "--json",
    ]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 4, "{v}");
    for (i, n) in ["b1", "b2", "b3"].iter().enumerate() {
        assert_eq!(arr[i]["name"], *n);
        assert_eq!(arr[i]["result"], 6, "{v}");
    }
    assert_eq!(arr[3]["name"], "b4-slow");
    assert_eq!(arr[3]["kind"], "timeout", "{v}");
    for g in &mut listeners {
        assert_eq!(g.stdout_line(""), "0x0001 hello!");
        g.wait_success(DEADLINE);
    }
}

#[test]
fn send_and_post_started_before_the_receiver_wait_for_it_within_their_timeout() {
    let t = TestNs::new();
    let send = t.start(&["msg", "send", "late", "0x4A", "hi", "--timeout", "20s"]);
    let post = t.start(&["msg", "post", "late", "0x401", "later", "--timeout", "20s"]);
    let mut listener = t.start(&["msg", "listen", "late", "--count", "2"]);
    let o = send.finish(DEADLINE);
    o.assert_success();
    assert_eq!(o.stdout, "2\n");
    post.finish(DEADLINE).assert_success();
    let mut lines = [listener.stdout_line("0x"), listener.stdout_line("0x")];
    lines.sort();
    assert_eq!(lines, ["0x004a hi", "0x0401 later"]);
    listener.wait_success(DEADLINE);
    // Nobody there: a one-line failure once the timeout is up.
    let o = t
        .start(&["msg", "post", "nobody", "1", "x", "--timeout", "300ms"])
        .finish(DEADLINE);
    o.assert_one_line_failure();
}

#[test]
fn msg_listen_stops_after_its_timeout_and_fails_if_count_messages_did_not_come() {
    let t = crate::common::TestNs::new();
    let o = t.run(&["msg", "listen", "w", "--timeout", "100ms"]);
    o.assert_success();
    let o = t.run(&["msg", "listen", "w", "--count", "2", "--timeout", "100ms"]);
    assert!(!o.status.success(), "{o:#?}");
    // After the `listening as 'w'` notice, one line saying why.
    assert_eq!(o.stderr.lines().count(), 2, "{o:#?}");
    assert!(
        o.stderr.contains("0 of 2 messages came within --timeout"),
        "{o:#?}"
    );
    assert!(t.ns.list().unwrap().is_empty());
}
