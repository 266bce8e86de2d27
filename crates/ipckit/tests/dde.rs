//! DDE across real processes: request, poke, execute, hot and warm advise
//! loops, many clients, discovery, TCP, and the end of a conversation when
//! either process dies.
//!
//! Helper processes are this test binary re-exec'd to run the ignored test
//! [`child_role`] in a role (see `support::role`); they print what they did
//! on stdout, one line each, and exit when their stdin closes (the parent
//! kills and reaps them on drop). Every wait is bounded by [`DEADLINE`].

mod support;

use std::io::BufRead as _;
use std::time::Duration;

use ipckit::clipboard::Format;
use ipckit::dde::{self, ConversationOptions, DdeServerEvent, DdeServerOptions, Link};
use ipckit::ErrorKind;
use support::{flag, flag_num, say, Proc, TestNs, DEADLINE};

// ---------------------------------------------------------------- children

#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "server" => server_role(&args),
        "advise" => advise_role(&args),
        "client" => client_role(&args),
        other => panic!("unknown role {other}"),
    }
}

/// A DDE server `--name` with topic `--topic` (item `x` = `0`), TCP with
/// `--tcp ADDR` (prints `ADDR <addr>`). Execute: `set ITEM VALUE` sets an
/// item, `panic` panics, anything else is refused. Pokes to `ro` are
/// refused. Stdin commands: `set ITEM VALUE` (prints `SET`), `event`
/// (prints the next server event).
fn server_role(args: &[String]) {
    let name = flag(args, "--name").unwrap();
    let topic = flag(args, "--topic").unwrap_or("t").to_string();
    let mut opts = DdeServerOptions::new().topic(&topic);
    if let Some(a) = flag(args, "--tcp") {
        opts = opts.tcp(a);
    }
    if let Some(n) = flag_num(args, "--queue") {
        opts = opts.queue_per_link(n as usize);
    }
    let server = opts
        .on_poke(|p| {
            if p.item == "ro" {
                Err("item 'ro' is read-only".into())
            } else {
                Ok(())
            }
        })
        .on_execute(|e| {
            let mut w = e.command.splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("set"), Some(item), Some(value)) => e
                    .server
                    .set_item(e.topic, item, Format::TEXT, value.as_bytes())
                    .map_err(|err| err.to_string()),
                (Some("panic"), _, _) => panic!("asked to panic"),
                _ => Err(format!("unknown command '{}'", e.command)),
            }
        })
        .create(name)
        .unwrap();
    server.set_item(&topic, "x", Format::TEXT, b"0").unwrap();
    if let Some(a) = server.local_addr() {
        say(&format!("ADDR {a}"));
    }
    say("READY");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.splitn(3, ' ').collect();
        match w.as_slice() {
            ["set", item, value] => {
                server
                    .set_item(&topic, item, Format::TEXT, value.as_bytes())
                    .unwrap();
                say("SET");
            }
            ["event"] => match server.next_event(DEADLINE) {
                Some(DdeServerEvent::Connected { topic, .. }) => {
                    say(&format!("EVENT connected {topic}"))
                }
                Some(DdeServerEvent::Disconnected { topic, error, .. }) => {
                    say(&format!("EVENT disconnected {topic} {}", error.kind()))
                }
                Some(other) => say(&format!("EVENT other {other:?}")),
                None => say("EVENT none"),
            },
            _ => panic!("unknown command {line}"),
        }
    }
}

/// Advise on `--item` of `--service`/`--topic` (`--warm` for a warm link,
/// requesting each value), print `READY`, then `UPDATE <value>` per update
/// until `--count` arrived (then `DONE`) or the link ends (`END <kind>`).
fn advise_role(args: &[String]) {
    let service = flag(args, "--service").unwrap();
    let topic = flag(args, "--topic").unwrap();
    let item = flag(args, "--item").unwrap();
    let count = flag_num(args, "--count").unwrap_or(u64::MAX);
    let warm = support::switch(args, "--warm");
    let c = ConversationOptions::new()
        .timeout(DEADLINE)
        .connect(service, topic)
        .unwrap();
    let link = if warm { Link::Warm } else { Link::Hot };
    let mut a = c.advise(item, Format::TEXT, link).unwrap();
    say("READY");
    let mut seen = 0;
    while seen < count {
        match a.recv_timeout(DEADLINE) {
            Ok(u) => {
                let data = match u.data {
                    Some(d) => d,
                    None => c.request(item, Format::TEXT).unwrap(),
                };
                say(&format!("UPDATE {}", String::from_utf8_lossy(&data)));
                seen += 1;
            }
            Err(e) => {
                say(&format!("END {}", e.kind()));
                return;
            }
        }
    }
    say("DONE");
}

/// Open a conversation with `--service`/`--topic`, print `READY`, and keep
/// it until stdin closes (or the process is killed).
fn client_role(args: &[String]) {
    let c = ConversationOptions::new()
        .timeout(DEADLINE)
        .connect(
            flag(args, "--service").unwrap(),
            flag(args, "--topic").unwrap(),
        )
        .unwrap();
    say("READY");
    support::wait_for_parent();
    drop(c);
}

// ----------------------------------------------------------------- parent

/// A server child `name` on topic `t`, ready.
fn server(t: &TestNs, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--name", name];
    args.extend_from_slice(extra);
    let mut p = t.talk("server", &args);
    p.stdout_line("READY");
    p
}

fn conv(t: &TestNs, service: &str, topic: &str) -> dde::Conversation {
    ConversationOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect(service, topic)
        .unwrap()
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

// ------------------------------------------------------------------ tests

#[test]
fn request_poke_and_execute_reach_a_server_process() {
    let t = TestNs::new();
    let _s = server(&t, "svc", &[]);
    let c = conv(&t, "svc", "t");
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "0");
    // Unknown items and other formats are NotFound, naming the item.
    let e = c.request("nope", Format::TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("nope"), "{e}");
    let e = c.request("x", Format::UNICODE_TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // Poke stores (creating the item); the read-only item is refused with
    // the handler's reason.
    c.poke("y", Format::TEXT, b"poked").unwrap();
    assert_eq!(text(c.request("y", Format::TEXT).unwrap()), "poked");
    let e = c.poke("ro", Format::TEXT, b"1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert!(e.to_string().contains("read-only"), "{e}");
    // Execute: acknowledged and acted on, refused with a reason, and a
    // panicking handler is a refusal the server survives.
    c.execute("set x 42").unwrap();
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "42");
    let e = c.execute("rm -rf").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert!(e.to_string().contains("unknown command 'rm -rf'"), "{e}");
    let e = c.execute("panic").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert!(e.to_string().contains("panicked: asked to panic"), "{e}");
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "42");
}

#[test]
fn an_unknown_topic_or_service_is_not_found() {
    let t = TestNs::new();
    let _s = server(&t, "svc", &[]);
    let o = ConversationOptions::new().namespace(&t.ns);
    let e = o.connect("svc", "nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("no topic 'nope'"), "{e}");
    let e = o
        .clone()
        .timeout(Duration::ZERO)
        .connect("absent", "t")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn hot_and_warm_links_follow_each_change_of_a_server_process() {
    let t = TestNs::new();
    let mut s = server(&t, "svc", &[]);
    let c = conv(&t, "svc", "t");
    let mut hot = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    let c2 = conv(&t, "svc", "t");
    let mut warm = c2.advise("x", Format::TEXT, Link::Warm).unwrap();
    for v in ["a", "b", "c"] {
        s.tell(&format!("set x {v}"));
        s.stdout_line("SET");
        let u = hot.recv_timeout(DEADLINE).unwrap();
        assert_eq!((u.item.as_str(), u.skipped), ("x", 0));
        assert_eq!(text(u.data.unwrap()), v);
        let n = warm.recv_timeout(DEADLINE).unwrap();
        assert_eq!(n.data, None);
        assert_eq!(text(c2.request("x", Format::TEXT).unwrap()), v);
    }
    // A poke from a client serves the links too.
    c2.poke("x", Format::TEXT, b"poked").unwrap();
    assert_eq!(
        text(hot.recv_timeout(DEADLINE).unwrap().data.unwrap()),
        "poked"
    );
    // Unadvise ends the iterator; another item's changes never arrive.
    c.unadvise("x").unwrap();
    assert!(hot.next().is_none());
    assert_eq!(
        c.advise("nope", Format::TEXT, Link::Hot)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn one_set_item_serves_many_client_processes() {
    let t = TestNs::new();
    let server = DdeServerOptions::new()
        .namespace(&t.ns)
        .topic("t")
        .create("svc")
        .unwrap();
    server.set_item("t", "x", Format::TEXT, b"start").unwrap();
    let mut kids: Vec<Proc> = (0..4)
        .map(|i| {
            let warm = if i % 2 == 0 { "--hot" } else { "--warm" };
            let mut p = t.talk(
                "advise",
                &[
                    "--service",
                    "svc",
                    "--topic",
                    "t",
                    "--item",
                    "x",
                    "--count",
                    "5",
                    warm,
                ],
            );
            p.stdout_line("READY");
            p
        })
        .collect();
    for i in 1..=5 {
        server
            .set_item("t", "x", Format::TEXT, format!("v{i}").as_bytes())
            .unwrap();
        for k in kids.iter_mut() {
            // Each change reaches every client before the next one.
            let line = k.stdout_line("UPDATE ");
            assert_eq!(line, format!("UPDATE v{i}"));
        }
    }
    for k in kids.iter_mut() {
        k.stdout_line("DONE");
    }
}

#[test]
fn a_server_that_dies_ends_calls_and_advise_loops_with_peer_gone() {
    let t = TestNs::new();
    let mut s = server(&t, "svc", &[]);
    let c = conv(&t, "svc", "t");
    let mut hot = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    let mut kid = t.talk(
        "advise",
        &["--service", "svc", "--topic", "t", "--item", "x"],
    );
    kid.stdout_line("READY");
    // An advise iterator blocked in another thread ends too.
    let c2 = conv(&t, "svc", "t");
    let blocked = c2.advise("x", Format::TEXT, Link::Warm).unwrap();
    let waiter = std::thread::spawn(move || blocked.into_iter().collect::<Vec<_>>());
    s.kill();
    let e = hot.recv_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(kid.stdout_line("END "), "END peer-gone");
    let got = support::within(DEADLINE, move || waiter.join().unwrap()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap_err().kind(), ErrorKind::PeerGone);
    let e = c.request("x", Format::TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone);
    assert!(!c.is_alive());
}

#[test]
fn a_client_that_dies_is_seen_by_the_server_as_peer_gone() {
    let t = TestNs::new();
    let server = DdeServerOptions::new()
        .namespace(&t.ns)
        .topic("t")
        .create("svc")
        .unwrap();
    let mut kid = t.talk("client", &["--service", "svc", "--topic", "t"]);
    kid.stdout_line("READY");
    match server.next_event(DEADLINE) {
        Some(DdeServerEvent::Connected { topic, peer, .. }) => {
            assert_eq!(topic, "t");
            assert!(peer.contains(&format!("pid {}", kid.pid())), "{peer}");
        }
        other => panic!("{other:?}"),
    }
    kid.kill();
    match server.next_event(DEADLINE) {
        Some(DdeServerEvent::Disconnected { topic, error, .. }) => {
            assert_eq!(topic, "t");
            assert_eq!(error.kind(), ErrorKind::PeerGone);
        }
        other => panic!("{other:?}"),
    }
    // The server goes on serving.
    let c = conv(&t, "svc", "t");
    c.poke("x", Format::TEXT, b"1").unwrap();
}

#[test]
fn discovery_lists_live_services_with_their_topics() {
    let t = TestNs::new();
    let _a = server(&t, "alpha", &["--topic", "prices"]);
    let mut b = server(&t, "beta", &["--topic", "system"]);
    let all = dde::services_in(&t.ns).unwrap();
    let got: Vec<(String, Vec<String>)> = all.into_iter().map(|s| (s.service, s.topics)).collect();
    assert_eq!(
        got,
        [
            ("alpha".to_string(), vec!["prices".to_string()]),
            ("beta".to_string(), vec!["system".to_string()]),
        ]
    );
    // A dead service is skipped.
    b.kill();
    let names: Vec<String> = dde::services_in(&t.ns)
        .unwrap()
        .into_iter()
        .map(|s| s.service)
        .collect();
    assert_eq!(names, ["alpha"]);
    // Its endpoint record is of kind "dde" (what `ipckit ls` shows).
    let rec = t.ns.info("alpha").unwrap().unwrap();
    assert_eq!(rec.kind, "dde");
}

#[test]
fn the_same_api_works_over_tcp() {
    let t = TestNs::new();
    let mut s = server(&t, "svc", &["--tcp", "127.0.0.1:0"]);
    // (ADDR is printed before READY.)
    let out = s.stdout_so_far();
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("ADDR "))
        .unwrap()
        .to_string();
    let name = format!("tcp://{addr}");
    let o = ConversationOptions::new().timeout(DEADLINE);
    assert_eq!(o.topics(&name).unwrap(), ["t"]);
    let c = o.connect(&name, "t").unwrap();
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "0");
    let mut hot = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    s.tell("set x over-tcp");
    assert_eq!(
        text(hot.recv_timeout(DEADLINE).unwrap().data.unwrap()),
        "over-tcp"
    );
    c.execute("set x 7").unwrap();
    assert_eq!(text(hot.recv_timeout(DEADLINE).unwrap().data.unwrap()), "7");
    s.kill();
    assert_eq!(
        hot.recv_timeout(DEADLINE).unwrap_err().kind(),
        ErrorKind::PeerGone
    );
}

#[test]
fn a_second_server_of_the_same_name_is_refused_and_a_stale_one_replaced() {
    let t = TestNs::new();
    let mut s = server(&t, "svc", &[]);
    let e = DdeServerOptions::new()
        .namespace(&t.ns)
        .create("svc")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    s.kill();
    let again = DdeServerOptions::new()
        .namespace(&t.ns)
        .topic("t")
        .create("svc")
        .unwrap();
    again.set_item("t", "x", Format::TEXT, b"new").unwrap();
    assert_eq!(
        text(conv(&t, "svc", "t").request("x", Format::TEXT).unwrap()),
        "new"
    );
}
