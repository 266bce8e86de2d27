//! Window messages on Windows: `ipckit::message` over byte-mode named
//! pipes (`\\.\pipe\ipckit.<H>.<name>`), across real processes. Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! Receivers, senders and registering processes are this test executable
//! re-run as the ignored test [`child_role`] (see `windows_support::kids`).
//! A child prints what it did on stdout, one line each (`READY`, `MSG …`
//! per message handled, `RESULT …`), and exits when its stdin closes; the
//! parent kills and reaps it on drop. Nothing sleeps to synchronise: a
//! receiver's handler blocks on [`ID_BLOCK`] until the parent writes a
//! line, and says `IN-HANDLER` first. Every wait is bounded by [`LIMIT`].
//!
//! The raw client opens the receiver's pipe with `std::fs` and speaks the
//! frames of `docs/PROTOCOL.md`, "Window messages": on Windows they are
//! exactly the pipe's bytes.
#![cfg(all(windows, feature = "message"))]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::message::{
    Messenger, ReceiverOptions, Reply, Window, REGISTERED_MAX, REGISTERED_MIN, WM_COPYDATA,
};
use ipckit::{ErrorKind, Limits, Namespace};

#[allow(dead_code)]
mod windows_support;
use windows_support::kids::{self, bounded, new_ns, pipe_name, poll_until, say, Kid, LIMIT};

/// Message ids a child receiver treats specially: it blocks on
/// [`ID_BLOCK`] until the parent writes a line, and panics on
/// [`ID_PANIC`].
const ID_BLOCK: u32 = 0xB10C;
const ID_PANIC: u32 = 0xDEAD;

// Wire constants, from docs/PROTOCOL.md, "Window messages".
const MAGIC: &[u8; 8] = b"IPCKWMSG";
const REQ_SEND: u8 = 1;
const RESP_REPLY: u8 = 1;
const RESP_ERROR: u8 = 3;
const ERR_TOO_LARGE: u8 = 2;

// ---------------------------------------------------------------- helpers

fn messenger(ns: &Namespace) -> Messenger {
    Messenger::new().namespace(ns)
}

/// `len` bytes of a pattern that shows a lost, doubled or moved chunk.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// FNV-1a of `b`, as a receiver reports what it got.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

// -------------------------------------------------------------- children

/// A receiver child named `name` (more role arguments in `args`),
/// registered and reachable.
fn receiver(ns: &Namespace, name: &str, args: &[&str]) -> Kid {
    let mut all = vec![name];
    all.extend_from_slice(args);
    let mut k = Kid::start(ns, "receiver", &all);
    k.next("READY");
    k
}

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = kids::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    let flag = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .map(|i| args[i + 1].clone())
    };
    match role.as_str() {
        // Receiver ARG0: per message print `MSG <id> <posted> <pid> <len>
        // <fnv>`; reply with the data's length and, for WM_COPYDATA, the
        // data itself. Blocks on ID_BLOCK (after `IN-HANDLER`) until a
        // stdin line, panics on ID_PANIC. Options: `--max-data N`,
        // `--queued-bytes N`, `--max-connections N`, `--stall-ms N`. Exits
        // when stdin closes.
        "receiver" => {
            let mut limits = Limits::new();
            if let Some(n) = flag("--queued-bytes") {
                limits = limits.max_queued_bytes(n.parse().unwrap());
            }
            if let Some(n) = flag("--max-connections") {
                limits = limits.max_connections(n.parse().unwrap());
            }
            if let Some(n) = flag("--stall-ms") {
                limits = limits.stall_timeout(Duration::from_millis(n.parse().unwrap()));
            }
            let mut opts = ReceiverOptions::new().namespace(&ns).limits(limits);
            if let Some(n) = flag("--max-data") {
                opts = opts.max_message_size(n.parse().unwrap());
            }
            let (gate_tx, gate) = mpsc::channel::<()>();
            let _rx = opts
                .register(&args[0], move |m| {
                    say(&format!(
                        "MSG {} {} {} {} {:016x}",
                        m.id,
                        m.posted,
                        m.sender_pid,
                        m.data.len(),
                        fnv(m.data)
                    ));
                    match m.id {
                        ID_BLOCK => {
                            say("IN-HANDLER");
                            let _ = gate.recv_timeout(LIMIT);
                        }
                        ID_PANIC => panic!("boom from the handler"),
                        _ => {}
                    }
                    let reply = Reply::new(m.data.len() as i64);
                    if m.id == WM_COPYDATA {
                        reply.with_data(m.data.to_vec())
                    } else {
                        reply
                    }
                })
                .unwrap();
            say("READY");
            for line in std::io::stdin().lock().lines() {
                if line.is_err() {
                    break;
                }
                let _ = gate_tx.send(());
            }
        }
        // An async receiver ARG0 (`message::tokio`): per message print
        // `MSG <id> <posted>` and reply with the data's length plus 1000.
        // Exits when stdin closes.
        #[cfg(feature = "tokio")]
        "async-receiver" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let rx = ReceiverOptions::new()
                .namespace(&ns)
                .register_async(&args[0])
                .unwrap();
            std::thread::spawn(|| {
                for line in std::io::stdin().lock().lines() {
                    if line.is_err() {
                        break;
                    }
                }
                std::process::exit(0);
            });
            say("READY");
            rt.block_on(async {
                loop {
                    let m = rx.recv().await.unwrap();
                    say(&format!("MSG {} {}", m.id(), m.is_posted()));
                    let n = m.data().len() as i64;
                    m.reply(Reply::new(1000 + n));
                }
            });
        }
        // Send (ARG1 = id, ARG2 = data) to ARG0 and print `RESULT <n>
        // <reply data>`, or `ERROR <kind> <error>`.
        "sender" => {
            let id: u32 = args[1].parse().unwrap();
            match Messenger::new().namespace(&ns).send(
                &args[0],
                id,
                args[2].as_bytes(),
                Duration::from_secs(30),
            ) {
                Ok(r) => say(&format!(
                    "RESULT {} {}",
                    r.result,
                    String::from_utf8_lossy(&r.data)
                )),
                Err(e) => say(&format!("ERROR {} {e}", e.kind())),
            }
        }
        // Post (ARG1 = id, ARG2 = data) to ARG0; print `POSTED`.
        "poster" => {
            let id: u32 = args[1].parse().unwrap();
            Messenger::new()
                .namespace(&ns)
                .post(&args[0], id, args[2].as_bytes())
                .unwrap();
            say("POSTED");
        }
        // Register 40 texts, in an order that depends on the rank ARG0,
        // and print `REG <text> <id>` for each.
        "register" => {
            let rank: usize = args[0].parse().unwrap();
            let m = Messenger::new().namespace(&ns);
            for k in 0..40 {
                let t = format!("Shared.Text.{}", (k * 7 + rank * 13) % 40);
                let id = m.register_message(&t).unwrap();
                say(&format!("REG {t} {id}"));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// `MSG <id> <posted> <pid> <len> <fnv>` as a receiver child prints it.
fn msg_line(id: u32, posted: bool, pid: u32, data: &[u8]) -> String {
    format!("MSG {id} {posted} {pid} {} {:016x}", data.len(), fnv(data))
}

/// A connection to `name`, bounded.
fn connect(ns: &Namespace, name: &str) -> Window {
    let m = messenger(ns);
    let name = name.to_string();
    bounded("connect", move || m.connect(&name)).unwrap()
}

// ------------------------------------------------------------------ tests

/// `send` waits for the handler in the other process and brings back its
/// result and reply bytes (`WM_COPYDATA`); posts are handled in the order
/// queued, from this process and from others, after `post` returned;
/// the handler sees each sender's pid.
#[test]
fn send_and_post_between_processes() {
    let (_dir, ns) = new_ns();
    let mut rx = receiver(&ns, "viewer", &[]);
    let me = std::process::id();
    assert!(messenger(&ns).find("viewer").unwrap());

    let mut w = connect(&ns, "viewer");
    assert_eq!(w.name(), "viewer");
    let json = br#"{"mrn":456}"#;
    let r = w.send(WM_COPYDATA, json, LIMIT).unwrap();
    assert_eq!((r.result, r.data.as_slice()), (11, json.as_slice()));
    assert_eq!(rx.next("MSG "), msg_line(WM_COPYDATA, false, me, json));

    const POSTS: u32 = 200;
    for i in 0..POSTS {
        w.post(0x400 + i, format!("post {i}").as_bytes()).unwrap();
    }
    let mut poster = Kid::start(&ns, "poster", &["viewer", "1025", "from another"]);
    poster.next("POSTED");
    let poster_pid = poster.pid();
    poster.finish();
    for i in 0..POSTS {
        assert_eq!(
            rx.next("MSG "),
            msg_line(0x400 + i, true, me, format!("post {i}").as_bytes())
        );
    }
    assert_eq!(
        rx.next("MSG "),
        msg_line(1025, true, poster_pid, b"from another")
    );

    // A sender in another process, through the free-standing send.
    let sender = Kid::start(&ns, "sender", &["viewer", "74", "hello"]);
    let sender_pid = sender.pid();
    let out = sender.finish();
    assert!(out.contains("RESULT 5 "), "{out}");
    assert_eq!(rx.next("MSG "), msg_line(74, false, sender_pid, b"hello"));

    // And the other way round: a receiver here, a sender there.
    let (tx, got) = mpsc::channel();
    let _here = ReceiverOptions::new()
        .namespace(&ns)
        .register("here", move |m| {
            let _ = tx.send((m.id, m.sender_pid, m.data.to_vec(), m.posted));
            Reply::new(-7).with_data(b"back".to_vec())
        })
        .unwrap();
    let sender = Kid::start(&ns, "sender", &["here", "9", "over"]);
    let sender_pid = sender.pid();
    let out = sender.finish();
    assert!(out.contains("RESULT -7 back"), "{out}");
    assert_eq!(
        got.recv_timeout(LIMIT).unwrap(),
        (9, sender_pid, b"over".to_vec(), false)
    );
}

/// `WM_COPYDATA` payloads of every size up to megabytes arrive whole and
/// come back whole (the pipe's buffers are far smaller), on one
/// connection kept across calls.
#[test]
fn copydata_payloads_arrive_whole_both_ways() {
    let (_dir, ns) = new_ns();
    let mut rx = receiver(&ns, "copy", &[]);
    let me = std::process::id();
    let mut w = connect(&ns, "copy");
    for (i, len) in [0usize, 1, 4095, 65_536, 65_537, 1 << 20, (3 << 20) + 5]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, i as u8);
        let r = w.send(WM_COPYDATA, &data, LIMIT).unwrap();
        assert_eq!(r.result, len as i64);
        assert!(r.data == data, "reply of {len} bytes differs");
        assert_eq!(rx.next("MSG "), msg_line(WM_COPYDATA, false, me, &data));
    }
    // A big post is queued whole too.
    let data = pattern(2 << 20, 0x5A);
    w.post(WM_COPYDATA, &data).unwrap();
    assert_eq!(rx.next("MSG "), msg_line(WM_COPYDATA, true, me, &data));
}

/// `RegisterWindowMessage`: four processes registering the same texts at
/// once, in different orders, get one id per text; this process agrees,
/// ignoring case, and a new text gets the next id.
#[test]
fn registered_message_ids_are_shared_between_processes() {
    let (_dir, ns) = new_ns();
    let kids: Vec<Kid> = (0..4)
        .map(|r| Kid::start(&ns, "register", &[&r.to_string()]))
        .collect();
    let mut maps = Vec::new();
    for k in kids {
        let out = k.finish();
        let m: BTreeMap<String, u32> = out
            .lines()
            .filter_map(|l| Some(&l[l.find("REG ")? + 4..]))
            .map(|rest| {
                let (t, id) = rest.rsplit_once(' ').unwrap();
                (t.to_string(), id.parse::<u32>().unwrap())
            })
            .collect();
        assert_eq!(m.len(), 40, "{out}");
        maps.push(m);
    }
    for m in &maps[1..] {
        assert_eq!(m, &maps[0]);
    }
    let mut ids: Vec<u32> = maps[0].values().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "distinct texts got distinct ids");
    assert_eq!(
        ids,
        (REGISTERED_MIN..REGISTERED_MIN + 40).collect::<Vec<_>>()
    );
    assert!(ids.iter().all(|id| *id <= REGISTERED_MAX));
    let m = messenger(&ns);
    assert_eq!(
        m.register_message("shared.text.3").unwrap(),
        maps[0]["Shared.Text.3"]
    );
    assert_eq!(
        m.message_name(maps[0]["Shared.Text.3"]).unwrap().as_deref(),
        Some("Shared.Text.3")
    );
    assert_eq!(
        m.register_message("Brand.New").unwrap(),
        REGISTERED_MIN + 40
    );
    assert_eq!(
        m.register_message("").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // Another namespace has its own ids.
    let (_d2, other) = new_ns();
    assert_eq!(
        messenger(&other).register_message("Brand.New").unwrap(),
        REGISTERED_MIN
    );
}

/// A receiver killed while its handler runs a sent message: the sender
/// gets `PeerGone` (not a hang), the dead receiver is no longer found, and
/// its name is free for a new receiver at once.
#[test]
fn a_receiver_killed_mid_send_is_peer_gone() {
    let (_dir, ns) = new_ns();
    let mut rx = receiver(&ns, "k", &[]);
    let m = messenger(&ns);
    let sending = {
        let m = m.clone();
        std::thread::spawn(move || m.send("k", ID_BLOCK, b"work", LIMIT))
    };
    rx.next("IN-HANDLER");
    rx.kill();
    let e = bounded("the send to a killed receiver", move || {
        sending.join().unwrap()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(e.name(), Some("k"));
    // The system closes the dead process's handles (its pipe and its
    // record's lock) as it reaps it.
    assert!(
        poll_until(LIMIT, || !m.find("k").unwrap()),
        "a killed receiver is still found"
    );
    let e = m.send("k", 1, b"", Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // Its stale record does not stand in the way of a new receiver.
    let again = ReceiverOptions::new()
        .namespace(&ns)
        .register("k", |m| Reply::new(m.id.into()))
        .unwrap();
    assert!(m.find("k").unwrap());
    assert_eq!(m.send("k", 3, b"", LIMIT).unwrap().result, 3);
    drop(again);
    assert!(!m.find("k").unwrap());
}

/// A missing receiver is `NotFound` for every call (as on Linux); a bad
/// name is `InvalidName` (system pipe names and `tcp://` included); a
/// slow handler makes `send` with a short timeout `Timeout`; a second
/// receiver of a live name is `AlreadyExists`.
#[test]
fn missing_bad_slow_and_taken_names() {
    let (_dir, ns) = new_ns();
    let m = messenger(&ns);
    assert!(!m.find("absent").unwrap());
    for e in [
        m.send("absent", 1, b"", Duration::from_secs(1))
            .unwrap_err(),
        m.post("absent", 1, b"").unwrap_err(),
        m.connect("absent").unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(e.name(), Some("absent"));
    }
    let raw = format!(r"\\.\pipe\ipckit-test-{}-msg", std::process::id());
    for bad in ["bad//name", raw.as_str(), "tcp://127.0.0.1:1", ""] {
        let e = m.send(bad, 1, b"x", Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad}: {e}");
        assert_eq!(m.find(bad).unwrap_err().kind(), ErrorKind::InvalidName);
        let e = ReceiverOptions::new()
            .namespace(&ns)
            .register(bad, |_| Reply::new(0))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad}: {e}");
    }

    // The handler is busy with a post: a sent message waits behind it.
    let mut rx = receiver(&ns, "slow", &[]);
    m.post("slow", ID_BLOCK, b"").unwrap();
    rx.next("IN-HANDLER");
    let e = m
        .send("slow", 1, b"", Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("slow"));
    rx.tell("release");
    // The name is taken while the receiver lives.
    let e = ReceiverOptions::new()
        .namespace(&ns)
        .register("slow", |_| Reply::new(0))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(m.send("slow", 2, b"ok", LIMIT).unwrap().result, 2);
}

/// Data over the receiver's limit is `TooLarge` and the connection goes
/// on; posts over its queued bytes are `Full` until the handler drains
/// them; a handler panic comes back as `Remote`.
#[test]
fn too_large_full_and_panics() {
    let (_dir, ns) = new_ns();
    let mut rx = receiver(&ns, "lim", &["--max-data", "1024", "--queued-bytes", "100"]);
    let mut w = connect(&ns, "lim");
    let e = w.send(1, &[0u8; 1025], LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(
        w.post(1, &[0u8; 4096]).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    assert_eq!(w.send(1, &[0u8; 1024], LIMIT).unwrap().result, 1024);

    // The handler takes this post and blocks; later posts queue.
    w.post(ID_BLOCK, b"").unwrap();
    rx.next("IN-HANDLER");
    w.post(2, &[0u8; 60]).unwrap();
    let e = w.post(3, &[0u8; 60]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full, "{e}");
    w.post(4, &[0u8; 40]).unwrap();
    assert_eq!(w.post(5, b"x").unwrap_err().kind(), ErrorKind::Full);
    rx.tell("release");
    let me = std::process::id();
    assert_eq!(rx.next("MSG 2 "), msg_line(2, true, me, &[0u8; 60]));
    assert_eq!(rx.next("MSG 4 "), msg_line(4, true, me, &[0u8; 40]));

    let e = w.send(ID_PANIC, b"", LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.to_string().contains("boom from the handler"), "{e}");
    assert_eq!(w.send(1, b"abc", LIMIT).unwrap().result, 3);
}

/// A receiver at its connection limit answers a further sender with a
/// busy hello (`Busy`), and takes it once a connection closes.
#[test]
fn a_receiver_at_its_connection_limit_is_busy() {
    let (_dir, ns) = new_ns();
    let _rx = receiver(&ns, "one", &["--max-connections", "1"]);
    let m = messenger(&ns);
    let mut first = connect(&ns, "one");
    assert_eq!(first.send(1, b"a", LIMIT).unwrap().result, 1);
    let e = m.send("one", 1, b"", Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    drop(first);
    let mut r = None;
    assert!(
        poll_until(LIMIT, || {
            r = Some(m.send("one", 1, b"xy", LIMIT));
            !matches!(&r, Some(Err(e)) if e.kind() == ErrorKind::Busy)
        }),
        "the receiver stayed busy after the first connection closed"
    );
    assert_eq!(r.unwrap().unwrap().result, 2);
}

/// `HWND_BROADCAST`: every live receiver of the namespace, in other
/// processes and this one, gets the message; the replies come back
/// sorted by name, a slow one as `Timeout`; a dead or dropped receiver is
/// not listed.
#[test]
fn broadcast_reaches_every_live_receiver() {
    let (_dir, ns) = new_ns();
    let mut b1 = receiver(&ns, "b1", &[]);
    let mut b2 = receiver(&ns, "b2/sub", &[]);
    let mut slow = receiver(&ns, "b4-slow", &[]);
    let mut dead = receiver(&ns, "b0-dead", &[]);
    dead.kill();
    let m = messenger(&ns);
    assert!(poll_until(LIMIT, || !m.find("b0-dead").unwrap()));
    let dropped = ReceiverOptions::new()
        .namespace(&ns)
        .register("b5-dropped", |_| Reply::new(0))
        .unwrap();
    drop(dropped);
    let _b3 = ReceiverOptions::new()
        .namespace(&ns)
        .register("b3", |m| Reply::new(100 + m.data.len() as i64))
        .unwrap();

    // Block the slow one first, so that the broadcast times out there.
    m.post("b4-slow", ID_BLOCK, b"").unwrap();
    slow.next("IN-HANDLER");
    let all = m.broadcast(7, b"hello!", Duration::from_secs(2)).unwrap();
    let names: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["b1", "b2/sub", "b3", "b4-slow"], "{all:?}");
    let results: Vec<i64> = all[..3]
        .iter()
        .map(|b| b.reply.as_ref().unwrap().result)
        .collect();
    assert_eq!(results, [6, 6, 106], "{all:?}");
    let e = all[3].reply.as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{all:?}");
    let me = std::process::id();
    for k in [&mut b1, &mut b2] {
        assert_eq!(k.next("MSG "), msg_line(7, false, me, b"hello!"));
    }
    slow.tell("release");
}

/// Open the receiver pipe `pipe` as a raw client and read its hello.
fn raw_connect(pipe: &str) -> (File, [u8; 16]) {
    let mut s = OpenOptions::new()
        .read(true)
        .write(true)
        .open(pipe)
        .unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], MAGIC);
    (s, hello)
}

/// A request header: `kind`, message `id`, data length `len`.
fn request(kind: u8, id: u32, len: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = kind;
    b[4..8].copy_from_slice(&id.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

/// Whether the receiver closed `s`: end of stream or a broken pipe, not
/// an answer (reads block: call it bounded).
fn closed(s: &mut File) -> bool {
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// A sender that announces 16 MiB, sends one byte and stalls is dropped
/// after the receiver's stall timeout; others are served meanwhile.
#[test]
fn a_sender_stalled_inside_a_message_is_dropped() {
    let (_dir, ns) = new_ns();
    let _rx = receiver(&ns, "stall", &["--stall-ms", "500"]);
    let pipe = pipe_name(&ns, "stall");
    let stalled: Vec<File> = (0..4)
        .map(|_| {
            let (mut s, _) = raw_connect(&pipe);
            s.write_all(&request(REQ_SEND, 1, 16 << 20)).unwrap();
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    assert_eq!(
        messenger(&ns)
            .send("stall", 1, b"hello", LIMIT)
            .unwrap()
            .result,
        5
    );
    let all_closed = bounded("the stalled senders' reads", move || {
        stalled.into_iter().all(|mut s| closed(&mut s))
    });
    assert!(all_closed);
    assert_eq!(
        messenger(&ns)
            .send("stall", 1, b"again", LIMIT)
            .unwrap()
            .result,
        5
    );
}

/// Raw frames on the receiver's pipe (docs/PROTOCOL.md): the hello names
/// the limit; data over it is read, dropped and answered "too large" with
/// the connection kept; a malformed header closes the connection.
#[test]
fn raw_frames_oversized_data_and_a_bad_header() {
    let (_dir, ns) = new_ns();
    let _rx = receiver(&ns, "big", &["--max-data", "1024"]);
    let pipe = pipe_name(&ns, "big");
    let outcome = bounded("the raw client", move || {
        let (mut s, hello) = raw_connect(&pipe);
        assert_eq!(hello[9], 0, "status ok");
        assert_eq!(u32::from_le_bytes(hello[12..16].try_into().unwrap()), 1024);
        let response = |s: &mut File| {
            let mut h = [0u8; 16];
            s.read_exact(&mut h).unwrap();
            let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
            let result = i64::from_le_bytes(h[8..16].try_into().unwrap());
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).unwrap();
            (h[0], h[1], result, body)
        };
        s.write_all(&request(REQ_SEND, 1, 4096)).unwrap();
        s.write_all(&[0u8; 4096]).unwrap();
        let (kind, code, _, text) = response(&mut s);
        assert_eq!(
            (kind, code),
            (RESP_ERROR, ERR_TOO_LARGE),
            "{}",
            String::from_utf8_lossy(&text)
        );
        s.write_all(&request(REQ_SEND, 9, 3)).unwrap();
        s.write_all(b"abc").unwrap();
        let (kind, _, result, _) = response(&mut s);
        assert_eq!((kind, result), (RESP_REPLY, 3));
        s.write_all(&[0xFF; 16]).unwrap();
        closed(&mut s)
    });
    assert!(outcome, "a malformed header was answered, not closed");
    assert_eq!(
        messenger(&ns)
            .send("big", 1, b"hello", LIMIT)
            .unwrap()
            .result,
        5
    );
}

// ------------------------------------------------------------ async forms

/// A current-thread tokio runtime for a test's async part.
#[cfg(feature = "tokio")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An async sender (`message::tokio`) to another process's receiver: a
/// send whose timeout passes while the handler is busy is `Timeout`, a
/// send whose future is dropped mid-call is abandoned, and the window
/// reconnects by itself for the next send, which gets its own reply (not
/// a late one of an abandoned send).
#[cfg(feature = "tokio")]
#[test]
fn async_sends_time_out_are_dropped_and_reconnect() {
    let (_dir, ns) = new_ns();
    let mut rx = receiver(&ns, "a", &[]);
    let m = messenger(&ns);
    let rt = runtime();
    let mut w = rt.block_on(m.connect_async("a")).unwrap();
    assert_eq!(w.name(), "a");
    let r = rt.block_on(w.send(5, b"hello", LIMIT)).unwrap();
    assert_eq!(r.result, 5);
    rx.next("MSG 5 ");
    // The handler blocks: the send's own timeout ends it.
    let e = rt
        .block_on(w.send(ID_BLOCK, b"slow", Duration::from_millis(300)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    rx.next("IN-HANDLER");
    rx.tell("go");
    // A send dropped by the caller before its reply (the handler blocks
    // again until told).
    let dropped = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), w.send(ID_BLOCK, b"drop", LIMIT)).await
    });
    assert!(dropped.is_err(), "the send should still be waiting");
    rx.next("IN-HANDLER");
    rx.tell("go");
    // The next send reconnects and gets its own answer.
    let r = rt.block_on(w.send(9, b"abcdefghi!", LIMIT)).unwrap();
    assert_eq!(r.result, 10);
    let r = rt.block_on(w.send(WM_COPYDATA, b"echo", LIMIT)).unwrap();
    assert_eq!((r.result, r.data.as_slice()), (4, &b"echo"[..]));
    rt.block_on(w.post(11, b"p")).unwrap();
    rx.next("MSG 11 true");
    drop(w);
    rx.finish();
}

/// An async receiver (`message::tokio::Receiver`) in another process
/// answers blocking senders and posters, is found while it lives, and once
/// it is killed a send is `NotFound` and it is no longer found.
#[cfg(feature = "tokio")]
#[test]
fn an_async_receiver_in_another_process_answers() {
    let (_dir, ns) = new_ns();
    let mut k = Kid::start(&ns, "async-receiver", &["ar"]);
    k.next("READY");
    let m = messenger(&ns);
    assert!(m.find("ar").unwrap());
    for i in 0..20u32 {
        let data = pattern(i as usize * 100, i as u8);
        let r = m.send("ar", i + 1, &data, LIMIT).unwrap();
        assert_eq!(r.result, 1000 + data.len() as i64);
    }
    m.post("ar", 77, b"x").unwrap();
    k.next("MSG 77 true");
    k.kill();
    assert!(
        poll_until(LIMIT, || !m.find("ar").unwrap()),
        "a killed async receiver is still found"
    );
    let e = m.send("ar", 1, b"", Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}
