//! Window-style messages across real processes.

#[path = "slotutil/mod.rs"]
mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ipckit::message::{Messenger, ReceiverOptions, Reply};
use ipckit::{ErrorKind, Namespace};

/// Child role: receiver "slow" whose handler announces itself and then
/// takes 60 s (id 1) or answers at once (other ids).
#[test]
#[ignore]
fn slow_receiver_child() {
    if std::env::var(ROLE).as_deref() != Ok("slow-receiver") {
        return;
    }
    let name = std::env::var("RECEIVER").unwrap();
    let _rx = ReceiverOptions::new()
        .register(&name, |m| {
            if m.id == 1 {
                let mut out = std::io::stdout().lock();
                writeln!(out, "IN-HANDLER").unwrap();
                out.flush().unwrap();
                std::thread::sleep(Duration::from_secs(60));
            }
            Reply::new(-1)
        })
        .unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

fn slow_receiver(dir: &std::path::Path, name: &str) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let mut c = role(dir, "slow_receiver_child", "slow-receiver");
    c.env("RECEIVER", name).stdout(Stdio::piped());
    let mut g = spawn(c);
    let out = lines(g.0.stdout.take().unwrap());
    (g, out)
}

#[test]
fn send_to_a_receiver_killed_mid_handler_is_peer_gone() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let (mut rx, out) = slow_receiver(dir.path(), "k");
    wait_live(&ns, "k");
    let ns2 = ns.clone();
    let sender = std::thread::spawn(move || {
        Messenger::new()
            .namespace(&ns2)
            .send("k", 1, b"work", Duration::from_secs(30))
    });
    while next_line(&out) != "IN-HANDLER" {}
    rx.0.kill().unwrap();
    rx.0.wait().unwrap();
    let e = sender.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(e.name(), Some("k"));
    // And the dead receiver is no longer found.
    assert!(!Messenger::new().namespace(&ns).find("k").unwrap());
}

#[test]
fn send_to_a_slow_receiver_times_out_and_a_missing_one_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let (_rx, _out) = slow_receiver(dir.path(), "slow");
    wait_live(&ns, "slow");
    let o = ipckit(
        dir.path(),
        &["msg", "send", "slow", "1", "x", "--timeout", "200ms"],
    )
    .output()
    .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'slow'") && err.contains("in time"), "{err}");
    let e = Messenger::new()
        .namespace(&ns)
        .send("slow", 1, b"", Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let e = Messenger::new()
        .namespace(&ns)
        .send("absent", 1, b"", Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let o = ipckit(dir.path(), &["msg", "send", "bad//name", "1", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid name"));
    let o = ipckit(dir.path(), &["msg", "send", "slow", "0xZZ", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a message id"));
}

#[test]
fn posts_are_handled_in_order_and_send_returns_the_handler_result() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    const POSTS: usize = 300;
    let total = (POSTS + 3).to_string();
    let mut c = ipckit(dir.path(), &["msg", "listen", "p", "--count", &total]);
    c.stdout(Stdio::piped());
    let mut listener = spawn(c);
    let out = lines(listener.0.stdout.take().unwrap());
    wait_live(&ns, "p");
    let mut w = Messenger::new().namespace(&ns).connect("p").unwrap();
    for i in 0..POSTS {
        w.post(0x400 + i as u32, format!("post {i}").as_bytes())
            .unwrap();
    }
    for i in 0..2 {
        let o = ipckit(
            dir.path(),
            &["msg", "post", "p", "0x401", &format!("cli {i}")],
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for i in 0..POSTS {
        assert_eq!(next_line(&out), format!("{} post {i}", 0x400 + i));
    }
    assert_eq!(next_line(&out), format!("{} cli 0", 0x401));
    assert_eq!(next_line(&out), format!("{} cli 1", 0x401));
    // A sent message may overtake queued posts (as in Win32), so it comes
    // after the posts were seen.
    let o = ipckit(dir.path(), &["msg", "send", "p", "74", "hello"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "5");
    assert_eq!(next_line(&out), "74 hello");
    assert!(listener.wait(Duration::from_secs(30)).success());
}

/// Child role: register 40 texts, in an order that depends on $RANK, and
/// print `text id` for each.
#[test]
#[ignore]
fn register_child() {
    if std::env::var(ROLE).as_deref() != Ok("register") {
        return;
    }
    let rank: usize = std::env::var("RANK").unwrap().parse().unwrap();
    let mut out = std::io::stdout().lock();
    for k in 0..40 {
        let t = format!("Shared.Text.{}", (k * 7 + rank * 13) % 40);
        let id = ipckit::message::register_message(&t).unwrap();
        writeln!(out, "REG {t} {id}").unwrap();
    }
}

#[test]
fn the_same_text_registered_from_four_processes_at_once_gets_one_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut kids: Vec<(Guard, _)> = (0..4)
        .map(|r| {
            let mut c = role(dir.path(), "register_child", "register");
            c.env("RANK", r.to_string()).stdout(Stdio::piped());
            let mut g = spawn(c);
            let o = lines(g.0.stdout.take().unwrap());
            (g, o)
        })
        .collect();
    let mut maps = Vec::new();
    for (g, out) in &mut kids {
        let mut m = std::collections::BTreeMap::new();
        while m.len() < 40 {
            let l = next_line(out);
            if let Some(rest) = l.strip_prefix("REG ") {
                let (t, id) = rest.rsplit_once(' ').unwrap();
                m.insert(t.to_string(), id.parse::<u32>().unwrap());
            }
        }
        assert!(g.wait(Duration::from_secs(30)).success());
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
    // The CLI agrees, case-insensitively, and a new text gets a new id.
    let o = ipckit(dir.path(), &["msg", "register", "shared.text.3"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        maps[0]["Shared.Text.3"].to_string()
    );
    let o = ipckit(dir.path(), &["msg", "register", "Brand.New", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["id"], 0xC000 + 40);
    let o = ipckit(dir.path(), &["msg", "register", ""])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn broadcast_collects_every_receivers_result_or_error() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let mut listeners = Vec::new();
    for n in ["b1", "b2", "b3"] {
        let mut c = ipckit(dir.path(), &["msg", "listen", n, "--count", "1"]);
        c.stdout(Stdio::piped());
        let mut g = spawn(c);
        let out = lines(g.0.stdout.take().unwrap());
        listeners.push((g, out));
    }
    let (_slow, _o) = slow_receiver(dir.path(), "b4-slow");
    for n in ["b1", "b2", "b3", "b4-slow"] {
        wait_live(&ns, n);
    }
    let o = ipckit(
        dir.path(),
        &[
            "msg",
            "broadcast",
            "1",
            "hello!",
            "--timeout",
            "2s",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 4, "{v}");
    for (i, n) in ["b1", "b2", "b3"].iter().enumerate() {
        assert_eq!(arr[i]["name"], *n);
        assert_eq!(arr[i]["result"], 6, "{v}");
    }
    assert_eq!(arr[3]["name"], "b4-slow");
    assert_eq!(arr[3]["kind"], "timeout", "{v}");
    for (g, out) in &mut listeners {
        assert_eq!(next_line(out), "1 hello!");
        assert!(g.wait(Duration::from_secs(30)).success());
    }
}
