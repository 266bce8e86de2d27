//! Window-style messages across real processes: receivers, senders and
//! posters are this test binary re-executed in a role (`child_role`), the
//! test process the other side. Every wait is bounded; every child is
//! killed and reaped on drop.

mod support;

use std::time::Duration;

use ipckit::message::{Messenger, ReceiverOptions, Reply, Window};
use ipckit::{ErrorKind, Namespace};
use support::{say, wait_live, wait_until, Proc, TestNs, DEADLINE};

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Receiver ARG0 whose handler announces itself and then takes 60 s
        // (id 1) or answers at once (other ids).
        "slow-receiver" => {
            let _rx = ReceiverOptions::new()
                .namespace(&ns)
                .register(&args[0], |m| {
                    if m.id == 1 {
                        say("IN-HANDLER");
                        std::thread::sleep(Duration::from_secs(60));
                    }
                    Reply::new(-1)
                })
                .unwrap();
            std::thread::sleep(Duration::from_secs(120));
        }
        // Receiver ARG0: print `MSG <id> <data>` per message and reply with
        // the data's length; exit after `--count` messages.
        "listener" => {
            let count: usize =
                support::flag(&args, "--count").map_or(usize::MAX, |n| n.parse().unwrap());
            let (tx, rx) = std::sync::mpsc::channel();
            let _rx = ReceiverOptions::new()
                .namespace(&ns)
                .register(&args[0], move |m| {
                    say(&format!("MSG {} {}", m.id, String::from_utf8_lossy(m.data)));
                    let _ = tx.send(());
                    Reply::new(m.data.len() as i64)
                })
                .unwrap();
            for _ in 0..count {
                rx.recv_timeout(DEADLINE).expect("a message in time");
            }
        }
        // Send (ARG1 = id, ARG2 = data) to ARG0 and print `RESULT <n>`;
        // `ERROR <error>` on stderr and exit 1 on failure.
        "sender" => {
            let timeout = support::duration(support::flag(&args, "--timeout").unwrap_or("5s"));
            let id: u32 = args[1].parse().unwrap();
            match Messenger::new()
                .namespace(&ns)
                .send(&args[0], id, args[2].as_bytes(), timeout)
            {
                Ok(r) => say(&format!("RESULT {}", r.result)),
                Err(e) => {
                    eprintln!("ERROR {e}");
                    std::process::exit(1);
                }
            }
        }
        // Post (ARG1 = id, ARG2 = data) to ARG0.
        "poster" => {
            let id: u32 = args[1].parse().unwrap();
            Messenger::new()
                .namespace(&ns)
                .post(&args[0], id, args[2].as_bytes())
                .unwrap();
        }
        // Register 40 texts, in an order that depends on the rank ARG0,
        // and print `REG <text> <id>` for each.
        "register" => {
            let rank: usize = args[0].parse().unwrap();
            for k in 0..40 {
                let t = format!("Shared.Text.{}", (k * 7 + rank * 13) % 40);
                let id = Messenger::new()
                    .namespace(&ns)
                    .register_message(&t)
                    .unwrap();
                say(&format!("REG {t} {id}"));
            }
        }
        other => panic!("unknown role {other}"),
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

fn slow_receiver(t: &TestNs, name: &str) -> Proc {
    let p = t.start("slow-receiver", &[name]);
    drop(connect_when_ready(t, name));
    p
}

#[test]
fn send_to_a_receiver_killed_mid_handler_is_peer_gone() {
    let t = TestNs::new();
    let mut rx = slow_receiver(&t, "k");
    let ns2 = t.ns.clone();
    let sender = std::thread::spawn(move || {
        Messenger::new()
            .namespace(&ns2)
            .send("k", 1, b"work", Duration::from_secs(30))
    });
    rx.stdout_line("IN-HANDLER");
    rx.kill();
    let e = sender.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(e.name(), Some("k"));
    // And the dead receiver is no longer found.
    assert!(!Messenger::new().namespace(&t.ns).find("k").unwrap());
}

#[test]
fn send_to_a_slow_receiver_times_out_and_a_missing_one_is_not_found() {
    let t = TestNs::new();
    let _rx = slow_receiver(&t, "slow");
    // A sender process gives up in time, naming the receiver.
    let out = t.run("sender", &["slow", "1", "x", "--timeout", "200ms"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("'slow'") && out.stderr.contains("in time"),
        "{out:#?}"
    );
    let m = Messenger::new().namespace(&t.ns).clone();
    let e = m
        .send("slow", 1, b"", Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let e = m
        .send("absent", 1, b"", Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = m
        .send("bad//name", 1, b"x", Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    assert!(e.to_string().contains("invalid name"), "{e}");
}

#[test]
fn posts_are_handled_in_order_and_send_returns_the_handler_result() {
    let t = TestNs::new();
    const POSTS: usize = 300;
    let total = (POSTS + 3).to_string();
    let mut listener = t.start("listener", &["p", "--count", &total]);
    let mut w = connect_when_ready(&t, "p");
    for i in 0..POSTS {
        w.post(0x400 + i as u32, format!("post {i}").as_bytes())
            .unwrap();
    }
    for i in 0..2 {
        t.run("poster", &["p", "1025", &format!("other {i}")])
            .assert_success();
    }
    for i in 0..POSTS {
        assert_eq!(
            listener.stdout_line("MSG "),
            format!("MSG {} post {i}", 0x400 + i)
        );
    }
    assert_eq!(listener.stdout_line("MSG "), "MSG 1025 other 0");
    assert_eq!(listener.stdout_line("MSG "), "MSG 1025 other 1");
    // A sent message may overtake queued posts (as in Win32), so it comes
    // after the posts were seen.
    let out = t.run("sender", &["p", "74", "hello"]);
    out.assert_success();
    assert_eq!(out.line("RESULT "), Some("5"), "{out:#?}");
    assert_eq!(listener.stdout_line("MSG "), "MSG 74 hello");
    listener.wait_success(DEADLINE);
}

#[test]
fn the_same_text_registered_from_four_processes_at_once_gets_one_id() {
    let t = TestNs::new();
    let kids: Vec<Proc> = (0..4)
        .map(|r| t.start("register", &[&r.to_string()]))
        .collect();
    let mut maps = Vec::new();
    for g in kids {
        let out = g.finish(DEADLINE);
        out.assert_success();
        let m: std::collections::BTreeMap<String, u32> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("REG "))
            .map(|rest| {
                let (t, id) = rest.rsplit_once(' ').unwrap();
                (t.to_string(), id.parse::<u32>().unwrap())
            })
            .collect();
        assert_eq!(m.len(), 40, "{out:#?}");
        maps.push(m);
    }
    for m in &maps[1..] {
        assert_eq!(m, &maps[0]);
    }
    let mut ids: Vec<u32> = maps[0].values().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "distinct texts got distinct ids");
    assert!(ids.iter().all(|id| (0xC000..=0xFFFF).contains(id)));
    // This process agrees, case-insensitively, and a new text gets a new id.
    let m = Messenger::new().namespace(&t.ns).clone();
    assert_eq!(
        m.register_message("shared.text.3").unwrap(),
        maps[0]["Shared.Text.3"]
    );
    assert_eq!(m.register_message("Brand.New").unwrap(), 0xC000 + 40);
    assert!(m.register_message("").is_err());
}

#[test]
fn broadcast_collects_every_receivers_result_or_error() {
    let t = TestNs::new();
    let mut listeners: Vec<Proc> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| t.start("listener", &[n, "--count", "1"]))
        .collect();
    let _slow = slow_receiver(&t, "b4-slow");
    for n in ["b1", "b2", "b3"] {
        drop(connect_when_ready(&t, n));
    }
    let all = Messenger::new()
        .namespace(&t.ns)
        .broadcast(1, b"hello!", Duration::from_secs(2))
        .unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    for (i, n) in ["b1", "b2", "b3"].iter().enumerate() {
        assert_eq!(all[i].name, *n);
        assert_eq!(all[i].reply.as_ref().unwrap().result, 6, "{all:?}");
    }
    assert_eq!(all[3].name, "b4-slow");
    let e = all[3].reply.as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{all:?}");
    for g in &mut listeners {
        assert_eq!(g.stdout_line("MSG "), "MSG 1 hello!");
        g.wait_success(DEADLINE);
    }
}
