//! DDE on Windows: `ipckit::dde` across real processes, over byte-mode
//! named pipes (`\\.\pipe\ipckit.<H>.<service>`), with the services'
//! endpoint records (`Namespace::list`, `info`) for discovery. Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! Servers and clients in other processes are this test executable re-run
//! as the ignored test [`child_role`] (see `windows_support::kids`): they
//! print what they did on stdout, one line each, and exit when their stdin
//! closes; the parent kills and reaps them on drop. Nothing sleeps to
//! synchronise: a server's `block` command waits for a stdin line. Every
//! wait is bounded by [`LIMIT`].
//!
//! The raw client speaks the frames of `docs/PROTOCOL.md`, "DDE": on
//! Windows they are exactly the pipe's bytes.
#![cfg(all(windows, feature = "dde"))]

// Only its `kids` part is used here.
#[allow(dead_code)]
mod windows_support;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use ipckit::clipboard::Format;
use ipckit::dde::{self, ConversationOptions, DdeServerEvent, DdeServerOptions, Link};
use ipckit::name::EndpointState;
use ipckit::{ErrorKind, Limits, Namespace};
use windows_support::kids::{
    bounded, flag, new_ns, pipe_name, poll_until, read_to_end, role, say, stdin_lines, switch, Kid,
    LIMIT,
};

// Wire constants, from docs/PROTOCOL.md, "DDE".
const MAGIC: &[u8; 8] = b"IPCKDDE1";
const HEADER: usize = 24;
const CONNECT: u8 = 1;
const REQUEST: u8 = 2;
const POKE: u8 = 3;
const ADVISE: u8 = 5;
const REPLY: u8 = 0x81;
const ERROR: u8 = 0x82;
const ERR_TOO_LARGE: u8 = 2;
const LINK_HOT: u8 = 1;
const CF_TEXT: u32 = 1;

// ---------------------------------------------------------------- helpers

fn conv(ns: &Namespace, service: &str, topic: &str) -> dde::Conversation {
    ConversationOptions::new()
        .namespace(ns)
        .timeout(LIMIT)
        .connect(service, topic)
        .unwrap()
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

/// `len` bytes of a pattern that shows a lost, doubled or moved chunk.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A server child named `name` (more role arguments in `extra`), ready.
fn server(ns: &Namespace, name: &str, extra: &[&str]) -> Kid {
    let mut args = vec!["--name", name];
    args.extend_from_slice(extra);
    let mut k = Kid::start(ns, "server", &args);
    k.next("READY");
    k
}

/// The names of the live services `services_in` finds.
fn service_names(ns: &Namespace) -> Vec<String> {
    dde::services_in(ns)
        .unwrap()
        .into_iter()
        .map(|s| s.service)
        .collect()
}

/// A frame: header (kind, code, name length, format, value, body length,
/// 4 reserved bytes), name, body.
fn frame(kind: u8, code: u8, format: u32, value: u64, name: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = vec![kind, code];
    f.extend_from_slice(&(name.len() as u16).to_le_bytes());
    f.extend_from_slice(&format.to_le_bytes());
    f.extend_from_slice(&value.to_le_bytes());
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(name);
    f.extend_from_slice(body);
    f
}

/// Open `service`'s pipe as a raw client, read the hello (checking magic
/// and status) and open a conversation on `topic`; the hello's data limit.
fn raw_conversation(ns: &Namespace, service: &str, topic: &str) -> (File, u32) {
    let mut s = OpenOptions::new()
        .read(true)
        .write(true)
        .open(pipe_name(ns, service))
        .unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], MAGIC);
    assert_eq!(hello[9], 0, "hello status");
    let max = u32::from_le_bytes(hello[12..16].try_into().unwrap());
    s.write_all(&frame(CONNECT, 0, 0, 1, topic.as_bytes(), b""))
        .unwrap();
    let (kind, _, value, _) = read_frame(&mut s);
    assert_eq!((kind, value), (REPLY, 1));
    (s, max)
}

/// One frame read: `(kind, code, value, body)`.
fn read_frame(s: &mut File) -> (u8, u8, u64, Vec<u8>) {
    let mut h = [0u8; HEADER];
    s.read_exact(&mut h).expect("a frame header");
    let name_len = u16::from_le_bytes([h[2], h[3]]) as usize;
    let body_len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; name_len + body_len];
    s.read_exact(&mut rest).expect("a frame's name and body");
    let value = u64::from_le_bytes(h[8..16].try_into().unwrap());
    (h[0], h[1], value, rest.split_off(name_len))
}

// -------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = role() else {
        return;
    };
    match role.as_str() {
        "server" => server_role(&args),
        "advise" => advise_role(&args),
        "client" => client_role(&args),
        other => panic!("unknown role {other}"),
    }
}

/// A DDE server `--name` with topic `--topic` (default `t`; item `x` =
/// `0`), `--max-data N`, `--queue N` (per link), `--max-conn N`,
/// `--stall-ms MS`. Pokes to `ro` are refused. Execute: `set ITEM VALUE`
/// sets an item, `panic` panics, `block` prints `IN-EXECUTE` and waits
/// for a stdin line, anything else is refused. Stdin: `set ITEM VALUE`
/// (prints `SET`), `burst ITEM N SIZE` (N changes of SIZE bytes starting
/// `<i>:`; prints `BURST` once every call returned), `stats` (prints
/// `STATS stalled=<n> open=<n>`), `event` (prints the next server event),
/// any other line frees a blocked execute. Exits when stdin closes.
fn server_role(args: &[String]) {
    let name = flag(args, "--name").unwrap();
    let topic = flag(args, "--topic").unwrap_or("t").to_string();
    let num = |f: &str| flag(args, f).map(|n| n.parse::<usize>().unwrap());
    let mut limits = Limits::new();
    if let Some(n) = num("--max-conn") {
        limits = limits
            .max_connections(n)
            .max_connections_per_user(n)
            .max_connections_per_process(n);
    }
    if let Some(ms) = num("--stall-ms") {
        limits = limits.stall_timeout(Duration::from_millis(ms as u64));
    }
    let mut opts = DdeServerOptions::new().topic(&topic).limits(limits);
    if let Some(n) = num("--max-data") {
        opts = opts.max_message_size(n);
    }
    if let Some(n) = num("--queue") {
        opts = opts.queue_per_link(n);
    }
    let (gate_tx, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let server = opts
        .on_poke(|p| {
            if p.item == "ro" {
                Err("item 'ro' is read-only".into())
            } else {
                Ok(())
            }
        })
        .on_execute(move |e| {
            let mut w = e.command.splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("set"), Some(item), Some(value)) => e
                    .server
                    .set_item(e.topic, item, Format::TEXT, value.as_bytes())
                    .map_err(|err| err.to_string()),
                (Some("panic"), _, _) => panic!("asked to panic"),
                (Some("block"), _, _) => {
                    say("IN-EXECUTE");
                    let _ = gate.lock().unwrap().recv_timeout(LIMIT);
                    Ok(())
                }
                _ => Err(format!("unknown command '{}'", e.command)),
            }
        })
        .create(name)
        .unwrap();
    server.set_item(&topic, "x", Format::TEXT, b"0").unwrap();
    say("READY");
    for line in stdin_lines() {
        let w: Vec<&str> = line.splitn(3, ' ').collect();
        match w.as_slice() {
            ["set", item, value] => {
                server
                    .set_item(&topic, item, Format::TEXT, value.as_bytes())
                    .unwrap();
                say("SET");
            }
            ["burst", item, rest] => {
                let (n, size) = rest.split_once(' ').unwrap();
                let (n, size): (usize, usize) = (n.parse().unwrap(), size.parse().unwrap());
                for i in 0..n {
                    let mut v = format!("{i}:").into_bytes();
                    v.resize(size.max(v.len()), b'.');
                    server.set_item(&topic, item, Format::TEXT, &v).unwrap();
                }
                say("BURST");
            }
            ["stats"] => {
                let s = server.stats();
                say(&format!(
                    "STATS stalled={} open={}",
                    s.dropped_stalled, s.open
                ));
            }
            ["event"] => match server.next_event(LIMIT) {
                Some(DdeServerEvent::Connected { topic, .. }) => {
                    say(&format!("EVENT connected {topic}"))
                }
                Some(DdeServerEvent::Disconnected { topic, error, .. }) => {
                    say(&format!("EVENT disconnected {topic} {}", error.kind()))
                }
                Some(other) => say(&format!("EVENT other {other:?}")),
                None => say("EVENT none"),
            },
            _ => {
                let _ = gate_tx.send(());
            }
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
    let count: u64 = flag(args, "--count").map_or(u64::MAX, |n| n.parse().unwrap());
    let link = if switch(args, "--warm") {
        Link::Warm
    } else {
        Link::Hot
    };
    let c = ConversationOptions::new()
        .timeout(LIMIT)
        .connect(service, topic)
        .unwrap();
    let mut a = c.advise(item, Format::TEXT, link).unwrap();
    say("READY");
    let mut seen = 0;
    while seen < count {
        match a.recv_timeout(LIMIT) {
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
        .timeout(LIMIT)
        .connect(
            flag(args, "--service").unwrap(),
            flag(args, "--topic").unwrap(),
        )
        .unwrap();
    say("READY");
    for _ in stdin_lines() {}
    drop(c);
}

// ------------------------------------------------------------------ tests

/// Request, poke and execute reach a server in another process; refusals
/// and a panicking handler come back as `Remote` with the reason, unknown
/// items as `NotFound`; data larger than a pipe's buffers crosses whole.
#[test]
fn request_poke_and_execute_reach_a_server_process() {
    let (_dir, ns) = new_ns();
    let _s = server(&ns, "svc", &[]);
    let c = conv(&ns, "svc", "t");
    assert_eq!((c.service(), c.topic()), ("svc", "t"));
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "0");
    let e = c.request("nope", Format::TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
    let e = c.request("x", Format::UNICODE_TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // Poke stores (creating the item); the read-only item is refused.
    c.poke("y", Format::TEXT, b"poked").unwrap();
    assert_eq!(text(c.request("y", Format::TEXT).unwrap()), "poked");
    let e = c.poke("ro", Format::TEXT, b"1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.to_string().contains("read-only"), "{e}");
    // Execute: acted on, refused with a reason, a panic survived.
    c.execute("set x 42").unwrap();
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "42");
    let e = c.execute("rm -rf").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.to_string().contains("unknown command 'rm -rf'"), "{e}");
    let e = c.execute("panic").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.to_string().contains("asked to panic"), "{e}");
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "42");
    // Megabytes each way, in a registered-range format.
    let big = pattern((2 << 20) + 3, 5);
    let f = Format::from_id(0xC100);
    c.poke("big", f, &big).unwrap();
    assert!(c.request("big", f).unwrap() == big, "the big item differs");
}

/// An unknown topic or service is `NotFound`; the topics of a server
/// process are listed.
#[test]
fn an_unknown_topic_or_service_is_not_found() {
    let (_dir, ns) = new_ns();
    let _s = server(&ns, "svc", &["--topic", "prices"]);
    let o = ConversationOptions::new().namespace(&ns).timeout(LIMIT);
    assert_eq!(o.topics("svc").unwrap(), ["prices"]);
    let e = o.connect("svc", "nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no topic 'nope'"), "{e}");
    let e = o
        .clone()
        .timeout(Duration::ZERO)
        .connect("absent", "t")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = o.connect("bad//name", "t").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
}

/// Hot and warm links of this process follow each change a server process
/// makes, and a poke from another conversation; unadvise ends the link.
#[test]
fn hot_and_warm_links_follow_each_change_of_a_server_process() {
    let (_dir, ns) = new_ns();
    let mut s = server(&ns, "svc", &[]);
    let c = conv(&ns, "svc", "t");
    let mut hot = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    let c2 = conv(&ns, "svc", "t");
    let mut warm = c2.advise("x", Format::TEXT, Link::Warm).unwrap();
    for v in ["a", "b", "c"] {
        s.tell(&format!("set x {v}"));
        s.next("SET");
        let u = hot.recv_timeout(LIMIT).unwrap();
        assert_eq!((u.item.as_str(), u.skipped), ("x", 0));
        assert_eq!(text(u.data.unwrap()), v);
        let n = warm.recv_timeout(LIMIT).unwrap();
        assert_eq!(n.data, None);
        assert_eq!(text(c2.request("x", Format::TEXT).unwrap()), v);
    }
    c2.poke("x", Format::TEXT, b"poked").unwrap();
    assert_eq!(
        text(hot.recv_timeout(LIMIT).unwrap().data.unwrap()),
        "poked"
    );
    c.unadvise("x").unwrap();
    assert!(
        bounded("the end of an unadvised link", move || hot.next()).is_none(),
        "an unadvised link went on"
    );
    assert_eq!(
        c.advise("nope", Format::TEXT, Link::Hot)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// One `set_item` here serves the hot and warm links of several client
/// processes, each change before the next.
#[test]
fn one_set_item_serves_many_client_processes() {
    let (_dir, ns) = new_ns();
    let server = DdeServerOptions::new()
        .namespace(&ns)
        .topic("t")
        .create("svc")
        .unwrap();
    server.set_item("t", "x", Format::TEXT, b"start").unwrap();
    let mut kids: Vec<Kid> = ["--hot", "--warm", "--hot"]
        .into_iter()
        .map(|link| {
            let mut k = Kid::start(
                &ns,
                "advise",
                &[
                    "--service",
                    "svc",
                    "--topic",
                    "t",
                    "--item",
                    "x",
                    "--count",
                    "4",
                    link,
                ],
            );
            k.next("READY");
            k
        })
        .collect();
    for i in 1..=4 {
        server
            .set_item("t", "x", Format::TEXT, format!("v{i}").as_bytes())
            .unwrap();
        for k in kids.iter_mut() {
            assert_eq!(k.next("UPDATE "), format!("UPDATE v{i}"));
        }
    }
    for k in kids {
        k.finish();
    }
}

/// A server killed (`TerminateProcess`) mid-conversation, while it runs
/// an execute of ours: the execute, the advise loops (here, in a blocked
/// thread, in another process) and every later call end with `PeerGone`
/// within the limit, and discovery no longer lists it.
#[test]
fn a_server_killed_mid_conversation_is_peer_gone() {
    let (_dir, ns) = new_ns();
    let mut s = server(&ns, "svc", &[]);
    let c = conv(&ns, "svc", "t");
    let mut hot = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    let mut kid = Kid::start(
        &ns,
        "advise",
        &["--service", "svc", "--topic", "t", "--item", "x"],
    );
    kid.next("READY");
    let c2 = conv(&ns, "svc", "t");
    let blocked = c2.advise("x", Format::TEXT, Link::Warm).unwrap();
    let waiter = std::thread::spawn(move || blocked.into_iter().collect::<Vec<_>>());
    let c3 = conv(&ns, "svc", "t");
    let executing = std::thread::spawn(move || c3.execute("block"));
    s.next("IN-EXECUTE");
    s.kill();
    let e = bounded("an execute whose server was killed", move || {
        executing.join().unwrap()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    let e = hot.recv_timeout(LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(kid.next("END "), "END peer-gone");
    let got = bounded("a blocked advise iterator", move || waiter.join().unwrap());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap_err().kind(), ErrorKind::PeerGone);
    let e = c.request("x", Format::TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert!(!c.is_alive());
    assert!(
        poll_until(LIMIT, || service_names(&ns).is_empty()),
        "a killed server is still listed"
    );
}

/// A client process that dies is a `Disconnected` event (`PeerGone`) on
/// the server here, which goes on serving.
#[test]
fn a_client_that_dies_is_seen_by_the_server_as_peer_gone() {
    let (_dir, ns) = new_ns();
    let server = DdeServerOptions::new()
        .namespace(&ns)
        .topic("t")
        .create("svc")
        .unwrap();
    let mut kid = Kid::start(&ns, "client", &["--service", "svc", "--topic", "t"]);
    kid.next("READY");
    match server.next_event(LIMIT) {
        Some(DdeServerEvent::Connected { topic, peer, .. }) => {
            assert_eq!(topic, "t");
            assert!(peer.contains(&format!("pid {}", kid.pid())), "{peer}");
        }
        other => panic!("{other:?}"),
    }
    kid.kill();
    match server.next_event(LIMIT) {
        Some(DdeServerEvent::Disconnected { topic, error, .. }) => {
            assert_eq!(topic, "t");
            assert_eq!(error.kind(), ErrorKind::PeerGone, "{error}");
        }
        other => panic!("{other:?}"),
    }
    let c = conv(&ns, "svc", "t");
    c.poke("x", Format::TEXT, b"1").unwrap();
    assert_eq!(server.item("t", "x").unwrap().1, b"1");
}

/// Discovery (`XTYP_WILDCONNECT`) lists the live services of other
/// processes with their topics, through their endpoint records (kind
/// `dde`, the server's pid; a name with `/` is a record in a
/// subdirectory and the pipe `...desk:beta`); a killed one is left out and
/// its record is stale.
#[test]
fn discovery_lists_live_services_of_other_processes() {
    let (_dir, ns) = new_ns();
    let a = server(&ns, "alpha", &["--topic", "prices"]);
    let mut b = server(&ns, "desk/beta", &["--topic", "system"]);
    let all = dde::services_in(&ns).unwrap();
    let got: Vec<(String, Vec<String>)> = all.into_iter().map(|s| (s.service, s.topics)).collect();
    assert_eq!(
        got,
        [
            ("alpha".to_string(), vec!["prices".to_string()]),
            ("desk/beta".to_string(), vec!["system".to_string()]),
        ]
    );
    let rec = ns.info("alpha").unwrap().expect("alpha's record");
    assert_eq!(
        (rec.kind.as_str(), rec.pid, rec.state),
        ("dde", a.pid(), EndpointState::Live)
    );
    let listed: Vec<String> = ns.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(listed, ["alpha", "desk/beta"]);
    let c = conv(&ns, "desk/beta", "system");
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "0");
    drop(c);
    b.kill();
    assert!(
        poll_until(LIMIT, || service_names(&ns) == ["alpha"]),
        "a killed service is still listed: {:?}",
        service_names(&ns)
    );
    let rec = ns.info("desk/beta").unwrap().expect("its stale record");
    assert_eq!(rec.state, EndpointState::Stale);
}

/// A second server of a live service name is `AlreadyExists`; once the
/// first one's process is killed, its stale record is replaced.
#[test]
fn a_second_server_of_the_same_name_is_refused_and_a_stale_one_replaced() {
    let (_dir, ns) = new_ns();
    let mut s = server(&ns, "svc", &[]);
    let e = DdeServerOptions::new()
        .namespace(&ns)
        .topic("t")
        .create("svc")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(e.name(), Some("svc"));
    // The first one still serves.
    assert_eq!(
        text(conv(&ns, "svc", "t").request("x", Format::TEXT).unwrap()),
        "0"
    );
    s.kill();
    let mut again = None;
    assert!(
        poll_until(LIMIT, || {
            match DdeServerOptions::new()
                .namespace(&ns)
                .topic("t")
                .create("svc")
            {
                Ok(server) => {
                    again = Some(server);
                    true
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                Err(e) => panic!("{e}"),
            }
        }),
        "the killed server's name stayed taken"
    );
    let again = again.unwrap();
    again.set_item("t", "x", Format::TEXT, b"new").unwrap();
    assert_eq!(
        text(conv(&ns, "svc", "t").request("x", Format::TEXT).unwrap()),
        "new"
    );
    assert_eq!(ns.info("svc").unwrap().unwrap().pid, std::process::id());
}

/// A poke over the server's data limit is `TooLarge` (the client knows
/// the limit from the hello) and the conversation goes on; on the wire, an
/// oversized frame is read, dropped and answered "too large", and the same
/// connection is served after it.
#[test]
fn an_oversized_poke_is_too_large_and_the_conversation_goes_on() {
    let (_dir, ns) = new_ns();
    let _s = server(&ns, "svc", &["--max-data", "1024"]);
    let c = conv(&ns, "svc", "t");
    let e = c.poke("x", Format::TEXT, &[7u8; 2000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(text(c.request("x", Format::TEXT).unwrap()), "0");
    c.poke("x", Format::TEXT, &[b'a'; 1000]).unwrap();
    assert_eq!(c.request("x", Format::TEXT).unwrap(), [b'a'; 1000]);

    let (code, body, after) = bounded("the raw client", move || {
        let (mut s, max) = raw_conversation(&ns, "svc", "t");
        assert_eq!(max, 1024);
        s.write_all(&frame(POKE, 0, CF_TEXT, 2, b"x", &[7u8; 4096]))
            .unwrap();
        let (kind, code, value, body) = read_frame(&mut s);
        assert_eq!((kind, value), (ERROR, 2));
        s.write_all(&frame(REQUEST, 0, CF_TEXT, 3, b"x", b""))
            .unwrap();
        let (kind, _, value, after) = read_frame(&mut s);
        assert_eq!((kind, value), (REPLY, 3));
        (code, String::from_utf8_lossy(&body).into_owned(), after)
    });
    assert_eq!(code, ERR_TOO_LARGE, "{body}");
    assert!(body.contains("1024"), "{body}");
    assert_eq!(after, [b'a'; 1000]);
    assert_eq!(c.request("x", Format::TEXT).unwrap(), [b'a'; 1000]);
}

/// A client that opens a hot link and never reads stalls neither
/// `set_item` (a burst of 300 changes of 64 KiB returns) nor another
/// client's link on the same item, which sees every change or counts it as
/// skipped and ends on the latest value; the silent client is dropped
/// after the stall timeout.
#[test]
fn a_hot_link_that_is_never_read_stalls_neither_set_item_nor_other_clients() {
    let (_dir, ns) = new_ns();
    let mut s = server(&ns, "svc", &["--stall-ms", "1000", "--queue", "8"]);
    let (mut silent, _) = raw_conversation(&ns, "svc", "t");
    silent
        .write_all(&frame(ADVISE, LINK_HOT, CF_TEXT, 2, b"x", b""))
        .unwrap();
    let c = conv(&ns, "svc", "t");
    let mut good = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    s.tell("burst x 300 65536");
    s.next("BURST");
    let (mut seen, mut skipped) = (0u64, 0u64);
    loop {
        let u = good.recv_timeout(LIMIT).unwrap();
        seen += 1;
        skipped += u.skipped;
        if u.data.unwrap().starts_with(b"299:") {
            break;
        }
    }
    assert_eq!(seen + skipped, 300);
    assert!(
        poll_until(LIMIT, || {
            s.tell("stats");
            s.next("STATS ").contains("stalled=1 ")
        }),
        "the silent client was not dropped"
    );
    assert!(bounded("the silent client's reads", move || read_to_end(
        &mut silent
    )));
    // The server goes on.
    assert!(c.request("x", Format::TEXT).unwrap().starts_with(b"299:"));
}

/// A server process at its connection limit answers a further client with
/// a busy hello: `Busy` at once with a zero timeout, a `Timeout` saying so
/// with one; once the first conversation closes, a waiting client gets in.
#[test]
fn a_server_at_its_connection_limit_is_busy() {
    let (_dir, ns) = new_ns();
    let _s = server(&ns, "svc", &["--max-conn", "1"]);
    let first = conv(&ns, "svc", "t");
    assert_eq!(text(first.request("x", Format::TEXT).unwrap()), "0");
    let o = ConversationOptions::new().namespace(&ns);
    let e = o
        .clone()
        .timeout(Duration::ZERO)
        .connect("svc", "t")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert_eq!(e.name(), Some("svc"));
    let e = o
        .clone()
        .timeout(Duration::from_millis(300))
        .connect("svc", "t")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("busy"), "{e}");
    // A client waiting (the library retries a busy server) gets in once
    // the first conversation closes.
    let waiting = {
        let o = o.clone().timeout(LIMIT);
        std::thread::spawn(move || o.connect("svc", "t"))
    };
    drop(first);
    let second = bounded("a client waiting for a busy server", move || {
        waiting.join().unwrap()
    })
    .unwrap();
    assert_eq!(text(second.request("x", Format::TEXT).unwrap()), "0");
}

/// The async form of a hot link (`dde::tokio::Updates`) follows the
/// changes of a server process and ends with one `PeerGone` when that
/// process is killed.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn an_async_hot_link_follows_a_server_process_until_it_dies() {
    use futures_util::StreamExt as _;
    let (_dir, ns) = new_ns();
    let mut s = server(&ns, "svc", &[]);
    let c = conv(&ns, "svc", "t");
    let mut updates =
        dde::tokio::Updates::new(c.advise("x", Format::TEXT, Link::Hot).unwrap()).unwrap();
    for v in ["a", "b"] {
        s.tell(&format!("set x {v}"));
        let u = tokio::time::timeout(LIMIT, updates.next())
            .await
            .expect("an update within the limit")
            .expect("the stream goes on")
            .unwrap();
        assert_eq!(text(u.data.unwrap()), v);
    }
    s.kill();
    let e = tokio::time::timeout(LIMIT, updates.next())
        .await
        .expect("the end within the limit")
        .expect("one error before the end")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    let end = tokio::time::timeout(LIMIT, updates.next()).await.unwrap();
    assert!(end.is_none());
}
