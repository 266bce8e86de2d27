//! DDE links and broadcasts across machines over the Zenoh fabric: two
//! network namespaces joined by a veth pair stand for two machines; real
//! processes run in each.
//!
//! Needs root (to make network namespaces). Without it the tests print why
//! and pass, unless `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI) makes that a failure.
//! Traffic stays inside the two namespaces: the only link is the veth
//! pair, with private addresses, and multicast scouting is off.
#![cfg(feature = "zenoh")]

mod support;

use std::time::Duration;

use ipckit::clipboard::Format;
use ipckit::dde::{ConversationOptions, DdeServerOptions, Link};
use ipckit::fabric::Fabric;
use ipckit::mailslot::{MailslotOptions, WriterOptions};
use ipckit::message::{Messenger, ReceiverOptions, Reply};
use ipckit::{ErrorKind, Namespace};
use support::netns::{can_run, fabric_namespace, Net, CLIENT_ADDR, PORT, SERVER_ADDR};
use support::{expect_line, Proc, DEADLINE};

/// Start `role` in the server namespace and wait for its `ready`.
fn start_in_server_ns(net: &Net, role: &str, args: &[&str]) -> Proc {
    let mut p = Proc::talking(&mut net.role(&net.server_ns, role, args));
    p.stdout_line("ready");
    p
}

// ---------------------------------------------------------------------------
// DDE
// ---------------------------------------------------------------------------

#[test]
fn dde_hot_and_warm_links_across_namespaces() {
    if !can_run("dde_hot_and_warm_links_across_namespaces") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("links");
    let _server = start_in_server_ns(&net, "dde-server", &[&ns]);
    let out = Proc::spawn(&mut net.role(&net.client_ns, "dde-client", &[&ns, "links"]))
        .finish(DEADLINE * 2);
    out.assert_success();
    assert_eq!(expect_line(&out, "cold="), "100");
    // Each change the server made, in order, none skipped.
    assert_eq!(expect_line(&out, "hot="), "1:0,2:0,3:0,4:0,5:0");
    assert_eq!(expect_line(&out, "warm="), "notice");
    assert_eq!(expect_line(&out, "warm-request="), "5");
    assert_eq!(expect_line(&out, "unadvised="), "end not-found");
}

#[test]
fn dde_poke_and_execute_across_namespaces() {
    if !can_run("dde_poke_and_execute_across_namespaces") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("links");
    let _server = start_in_server_ns(&net, "dde-server", &[&ns]);
    let out = Proc::spawn(&mut net.role(&net.client_ns, "dde-client", &[&ns, "transactions"]))
        .finish(DEADLINE * 2);
    out.assert_success();
    assert_eq!(expect_line(&out, "poked="), "7");
    assert_eq!(expect_line(&out, "poke-refused="), "remote read-only item");
    assert_eq!(expect_line(&out, "executed="), "42");
    assert_eq!(expect_line(&out, "execute-refused="), "remote");
    assert_eq!(expect_line(&out, "missing-item="), "not-found");
    assert_eq!(expect_line(&out, "wrong-format="), "not-found");
    assert_eq!(expect_line(&out, "missing-topic="), "not-found");
    assert_eq!(expect_line(&out, "topics="), "prices,system");
    assert_eq!(expect_line(&out, "missing-service="), "not-found");
}

#[test]
fn dde_server_killed_while_advised_gives_peer_gone() {
    if !can_run("dde_server_killed_while_advised_gives_peer_gone") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("links");
    let mut server = start_in_server_ns(&net, "dde-server", &[&ns]);
    let mut client = Proc::spawn(&mut net.role(&net.client_ns, "dde-client", &[&ns, "killed"]));
    client.stdout_line("advised");
    server.kill();
    let out = client.finish(DEADLINE * 2);
    out.assert_success();
    // Not `timeout`: the server's token went, and so did the link.
    assert_eq!(expect_line(&out, "advise-end="), "peer-gone");
    assert_eq!(expect_line(&out, "request-after="), "peer-gone");
}

// ---------------------------------------------------------------------------
// Broadcasts
// ---------------------------------------------------------------------------

/// Size of the large group message: far over UDP's 424 bytes.
const BIG: usize = 100_000;

#[test]
fn group_broadcast_reaches_members_in_both_namespaces() {
    if !can_run("group_broadcast_reaches_members_in_both_namespaces") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("links");
    // The sender and one member share a local namespace (same "machine"
    // and directory): that member gets each message directly, once.
    let shared_dir = tempfile::tempdir().expect("temporary directory");
    let dir = shared_dir.path().to_str().expect("UTF-8 path");
    let mut far = Proc::spawn(&mut net.role(&net.server_ns, "member", &[&ns, "listen", "-"]));
    // Its Zenoh id: the sender waits until it sees this member.
    let far_id = far.stdout_line("ready ")["ready ".len()..].to_string();
    let mut near = Proc::spawn(&mut net.role(&net.client_ns, "member", &[&ns, "connect", dir]));
    near.stdout_line("ready");
    let out = Proc::spawn(&mut net.role(&net.client_ns, "group-sender", &[&ns, dir, &far_id]))
        .finish(DEADLINE * 2);
    out.assert_success();
    assert_eq!(expect_line(&out, "delivered="), "1");
    assert_eq!(expect_line(&out, "too-large="), "too-large");
    let want = format!("hello,big:{BIG},end");
    for (who, p) in [("far", far), ("near", near)] {
        let o = p.finish(DEADLINE * 2);
        o.assert_success();
        assert_eq!(expect_line(&o, "got="), want, "member {who}: {o:#?}");
    }
}

#[test]
fn message_broadcast_reaches_a_receiver_in_the_other_namespace() {
    if !can_run("message_broadcast_reaches_a_receiver_in_the_other_namespace") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("links");
    let mut rx = Proc::spawn(&mut net.role(&net.server_ns, "msg-receiver", &[&ns]));
    let rx_id = rx.stdout_line("ready ")["ready ".len()..].to_string();
    let out = Proc::spawn(&mut net.role(&net.client_ns, "msg-sender", &[&ns, &rx_id]))
        .finish(DEADLINE * 2);
    out.assert_success();
    // No local receiver on the sender's side: its own result is empty.
    assert_eq!(expect_line(&out, "local-replies="), "0");
    assert_eq!(expect_line(&out, "too-large="), "too-large");
    let o = rx.finish(DEADLINE * 2);
    o.assert_success();
    assert_eq!(expect_line(&o, "got="), "32769 ping posted");
}

// ---------------------------------------------------------------------------
// Roles (the processes in the namespaces)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "a helper process re-exec'd by the tests above"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "dde-server" => dde_server_role(&args[0]),
        "dde-client" => dde_client_role(&args[0], &args[1]),
        "member" => member_role(&args[0], &args[1], &args[2]),
        "group-sender" => group_sender_role(&args[0], &args[1], &args[2]),
        "msg-receiver" => msg_receiver_role(&args[0]),
        "msg-sender" => msg_sender_role(&args[0], &args[1]),
        other => panic!("unknown role {other}"),
    }
}

fn server_fabric(ns: &str) -> Fabric {
    Fabric::builder()
        .namespace(ns)
        .multicast_scouting(false)
        .listen(format!("tcp/{SERVER_ADDR}:{PORT}"))
        .open()
        .expect("open the fabric")
}

fn client_fabric(ns: &str) -> Fabric {
    Fabric::builder()
        .namespace(ns)
        .multicast_scouting(false)
        .listen(format!("tcp/{CLIENT_ADDR}:0"))
        .connect(format!("tcp/{SERVER_ADDR}:{PORT}"))
        .open()
        .expect("open the fabric")
}

/// A local namespace of this process's own (the two "machines" share a
/// file system here; real ones would not).
fn local_namespace() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ns = Namespace::at(dir.path()).expect("namespace");
    (dir, ns)
}

fn dde_server_role(fabric_ns: &str) {
    let fabric = server_fabric(fabric_ns);
    let (_dir, ns) = local_namespace();
    let server = DdeServerOptions::new()
        .namespace(&ns)
        .fabric(&fabric)
        .topic("prices")
        .topic("system")
        .on_poke(|p| {
            if p.item.starts_with("ro.") {
                Err("read-only item".into())
            } else {
                Ok(())
            }
        })
        .on_execute(|e| {
            let words: Vec<&str> = e.command.split(' ').collect();
            match words.as_slice() {
                // Change ITEM to 1..=N, one change at a time.
                ["count", item, n] => {
                    let n: u32 = n.parse().map_err(|_| "count N".to_string())?;
                    for v in 1..=n {
                        e.server
                            .set_item(e.topic, item, Format::TEXT, v.to_string().as_bytes())
                            .map_err(|err| err.to_string())?;
                    }
                    Ok(())
                }
                ["set", item, v] => e
                    .server
                    .set_item(e.topic, item, Format::TEXT, v.as_bytes())
                    .map_err(|err| err.to_string()),
                _ => Err(format!("unknown command '{}'", e.command)),
            }
        })
        .create("quotes")
        .expect("create and publish the DDE server");
    for item in ["ACME", "other", "ro.x"] {
        server
            .set_item("prices", item, Format::TEXT, b"100")
            .expect("set an item");
    }
    support::say("ready");
    // Until killed, or the parent closes stdin.
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
    drop(server);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dde_client_role(fabric_ns: &str, scenario: &str) {
    let fabric = client_fabric(fabric_ns);
    let opts = ConversationOptions::new().fabric(&fabric).timeout(DEADLINE);
    let conv = opts
        .connect("zenoh://quotes", "prices")
        .expect("connect to zenoh://quotes");
    match scenario {
        "links" => {
            let cold = conv.request("ACME", Format::TEXT).expect("request");
            support::say(&format!("cold={}", text(&cold)));
            let mut hot = conv
                .advise("ACME", Format::TEXT, Link::Hot)
                .expect("hot link");
            conv.execute("count ACME 5").expect("execute count");
            let mut got = Vec::new();
            for _ in 0..5 {
                let u = hot.recv_timeout(DEADLINE).expect("a hot update");
                got.push(format!("{}:{}", text(&u.data.expect("data")), u.skipped));
            }
            support::say(&format!("hot={}", got.join(",")));
            let mut warm = conv
                .advise("other", Format::TEXT, Link::Warm)
                .expect("warm link");
            conv.execute("count other 5").expect("execute count");
            let u = warm.recv_timeout(DEADLINE).expect("a warm notice");
            assert_eq!(u.item, "other");
            support::say(if u.data.is_none() {
                "warm=notice"
            } else {
                "warm=data"
            });
            // The notice came with the first change; the value read after
            // the command finished is the last.
            let v = conv.request("other", Format::TEXT).expect("request");
            support::say(&format!("warm-request={}", text(&v)));
            conv.unadvise("ACME").expect("unadvise");
            let end = hot.next();
            let again = conv.unadvise("ACME").unwrap_err();
            support::say(&format!(
                "unadvised={} {}",
                if end.is_none() { "end" } else { "more" },
                again.kind()
            ));
        }
        "transactions" => {
            conv.poke("x", Format::TEXT, b"7").expect("poke");
            let v = conv.request("x", Format::TEXT).expect("request");
            support::say(&format!("poked={}", text(&v)));
            let e = conv.poke("ro.x", Format::TEXT, b"1").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote, "{e:?}");
            let why = if e.to_string().contains("read-only item") {
                "read-only item"
            } else {
                "other"
            };
            support::say(&format!("poke-refused={} {why}", e.kind()));
            conv.execute("set y 42").expect("execute");
            let v = conv.request("y", Format::TEXT).expect("request");
            support::say(&format!("executed={}", text(&v)));
            let e = conv.execute("format c:").unwrap_err();
            support::say(&format!("execute-refused={}", e.kind()));
            let e = conv.request("nothing", Format::TEXT).unwrap_err();
            support::say(&format!("missing-item={}", e.kind()));
            let e = conv.request("x", Format::UNICODE_TEXT).unwrap_err();
            support::say(&format!("wrong-format={}", e.kind()));
            let e = opts.connect("zenoh://quotes", "nope").unwrap_err();
            support::say(&format!("missing-topic={}", e.kind()));
            let topics = opts.topics("zenoh://quotes").expect("topics");
            support::say(&format!("topics={}", topics.join(",")));
            let e = opts
                .clone()
                .timeout(Duration::from_millis(500))
                .connect("zenoh://nobody", "prices")
                .unwrap_err();
            support::say(&format!("missing-service={}", e.kind()));
        }
        "killed" => {
            let mut hot = conv
                .advise("ACME", Format::TEXT, Link::Hot)
                .expect("hot link");
            support::say("advised");
            // Nothing changes the item: only the server's departure can
            // end this wait before its deadline.
            let e = hot.recv_timeout(DEADLINE * 2).unwrap_err();
            support::say(&format!("advise-end={}", e.kind()));
            let e = conv.request("ACME", Format::TEXT).unwrap_err();
            support::say(&format!("request-after={}", e.kind()));
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Wait until the fabric shows the endpoint `name` of `kind` owned by the
/// session `owner` (another process's Zenoh id).
fn wait_for_endpoint(fabric: &Fabric, kind: &str, name: &str, owner: &str) {
    support::wait_until(
        DEADLINE,
        &format!("{kind} {name} of {owner} on the fabric"),
        || {
            fabric
                .endpoints(Duration::from_millis(500))
                .is_ok_and(|all| {
                    all.iter().any(|e| {
                        e.kind == kind && e.name == name && e.owner.as_deref() == Some(owner)
                    })
                })
        },
    );
}

/// A group member: in the server namespace (`listen`, its own local
/// namespace) or the client one (`connect`, in local namespace `dir`).
/// Prints what it received, up to the message `end`.
fn member_role(fabric_ns: &str, side: &str, dir: &str) {
    let fabric = if side == "listen" {
        server_fabric(fabric_ns)
    } else {
        client_fabric(fabric_ns)
    };
    let (_own, ns) = local_namespace();
    let ns = if dir == "-" {
        ns
    } else {
        Namespace::at(dir).expect("namespace")
    };
    let slot = MailslotOptions::new()
        .namespace(&ns)
        .fabric(&fabric)
        .join_group("news")
        .expect("join the group");
    support::say(&format!("ready {}", fabric.id()));
    let mut got = Vec::new();
    loop {
        let m = slot.recv_timeout(DEADLINE).expect("a group message");
        let m = if m.len() == BIG {
            format!("big:{}", m.len())
        } else {
            text(&m)
        };
        let end = m == "end";
        got.push(m);
        if end {
            break;
        }
    }
    support::say(&format!("got={}", got.join(",")));
}

fn group_sender_role(fabric_ns: &str, dir: &str, far_id: &str) {
    let fabric = client_fabric(fabric_ns);
    let ns = Namespace::at(dir).expect("namespace");
    // Send once the member of the other namespace is visible.
    wait_for_endpoint(&fabric, "group", "news", far_id);
    let w = WriterOptions::new().namespace(&ns).fabric(&fabric);
    let d = w
        .send_to_group("news", b"hello")
        .expect("send to the group");
    support::say(&format!("delivered={}", d.delivered));
    eprintln!("fabric members seen: {}", d.fabric_members);
    let big = vec![7u8; BIG];
    w.send_to_group("news", &big).expect("send a big message");
    let huge = vec![0u8; ipckit::fabric::MAX_BROADCAST + 1];
    let e = w.send_to_group("news", &huge).unwrap_err();
    support::say(&format!("too-large={}", e.kind()));
    w.send_to_group("news", b"end").expect("send the end");
}

fn msg_receiver_role(fabric_ns: &str) {
    let fabric = server_fabric(fabric_ns);
    let (_dir, ns) = local_namespace();
    let (tx, rx) = std::sync::mpsc::channel();
    let _rx = ReceiverOptions::new()
        .namespace(&ns)
        .fabric(&fabric)
        .register("viewer", move |m| {
            let _ = tx.send(format!(
                "{} {} {}",
                m.id,
                text(m.data),
                if m.posted { "posted" } else { "sent" }
            ));
            Reply::new(0)
        })
        .expect("register the receiver");
    support::say(&format!("ready {}", fabric.id()));
    let got = rx.recv_timeout(DEADLINE).expect("a broadcast");
    support::say(&format!("got={got}"));
}

fn msg_sender_role(fabric_ns: &str, rx_id: &str) {
    let fabric = client_fabric(fabric_ns);
    let (_dir, ns) = local_namespace();
    wait_for_endpoint(&fabric, "msg", "viewer", rx_id);
    let m = Messenger::new().namespace(&ns).fabric(&fabric);
    let huge = vec![0u8; ipckit::fabric::MAX_BROADCAST + 1];
    let e = m.broadcast(0x8001, &huge, DEADLINE).unwrap_err();
    support::say(&format!("too-large={}", e.kind()));
    let local = m.broadcast(0x8001, b"ping", DEADLINE).expect("broadcast");
    support::say(&format!("local-replies={}", local.len()));
}
