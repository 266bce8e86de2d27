//! DDE servers against hostile clients (and a client against a hostile
//! server), across real processes: malformed and oversized frames,
//! floods, silent connections, and clients that never read their hot
//! links.
//!
//! The server runs in a child process (this test binary re-exec'd to run
//! the ignored test [`child_role`]); the hostile peer is this process,
//! speaking the wire format of `docs/PROTOCOL.md`, "DDE", on a raw
//! socket. Every wait is bounded by [`DEADLINE`]; nothing sleeps to
//! synchronise.

mod support;

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use ipckit::clipboard::Format;
use ipckit::dde::{ConversationOptions, DdeServerOptions, Link};
use ipckit::ErrorKind;
use support::raw::{self, closed_by_peer};
use support::{flag, flag_num, say, wait_until, Proc, TestNs, DEADLINE};

// ------------------------------------------------------------------- wire

/// The constants of `docs/PROTOCOL.md`, "DDE".
const MAGIC: &[u8; 8] = b"IPCKDDE1";
const HEADER: usize = 24;
const CONNECT: u8 = 1;
const REQUEST: u8 = 2;
const POKE: u8 = 3;
const ADVISE: u8 = 5;
const REPLY: u8 = 0x81;
const ERROR: u8 = 0x82;
const DATA: u8 = 0x83;
const LINK_HOT: u8 = 1;
const ERR_TOO_LARGE: u8 = 2;
const CF_TEXT: u32 = 1;

/// A header with explicit lengths (a hostile one may lie).
fn header(kind: u8, code: u8, name_len: u16, format: u32, value: u64, body_len: u32) -> Vec<u8> {
    let mut h = vec![kind, code];
    h.extend_from_slice(&name_len.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&value.to_le_bytes());
    h.extend_from_slice(&body_len.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

fn frame(kind: u8, code: u8, format: u32, value: u64, name: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = header(
        kind,
        code,
        name.len() as u16,
        format,
        value,
        body.len() as u32,
    );
    f.extend_from_slice(name);
    f.extend_from_slice(body);
    f
}

/// One frame read: `(kind, code, value, name, body)`.
struct Got {
    kind: u8,
    code: u8,
    value: u64,
    body: Vec<u8>,
}

fn read_frame(s: &mut UnixStream) -> Got {
    let mut h = [0u8; HEADER];
    s.read_exact(&mut h).expect("a frame header");
    let name_len = u16::from_le_bytes([h[2], h[3]]) as usize;
    let body_len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; name_len + body_len];
    s.read_exact(&mut rest).expect("a frame's name and body");
    Got {
        kind: h[0],
        code: h[1],
        value: u64::from_le_bytes(h[8..16].try_into().unwrap()),
        body: rest.split_off(name_len),
    }
}

/// A raw conversation: connected, hello read, CONNECT answered.
fn raw_conversation(t: &TestNs, service: &str, topic: &str) -> UnixStream {
    let (mut s, hello) = raw::connect_to(&t.ns.socket_path(service), MAGIC);
    assert_eq!(hello[9], 0, "hello status");
    s.write_all(&frame(CONNECT, 0, 0, 1, topic.as_bytes(), b""))
        .unwrap();
    let g = read_frame(&mut s);
    assert_eq!((g.kind, g.value), (REPLY, 1));
    s
}

// ---------------------------------------------------------------- children

#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "server" => server_role(&args),
        "half-hello" => raw::half_hello_role(Path::new(flag(&args, "--socket").unwrap()), MAGIC),
        "garbage-server" => garbage_server_role(Path::new(flag(&args, "--socket").unwrap())),
        other => panic!("unknown role {other}"),
    }
}

/// A DDE server `--name` with topic `t` (item `x` = `0`), limits from the
/// arguments (`--stall-ms`, `--max-conn`...), `--max-data N`, `--queue N`,
/// `--handshake-ms MS`. Stdin commands: `set ITEM VALUE` (prints `SET`),
/// `burst ITEM N SIZE`: N changes of SIZE bytes each starting `<i>:`
/// (prints `BURST` once every call returned), `stats` (prints `STATS
/// stalled=<n> malformed=<n> handshake=<n> open=<n>`).
fn server_role(args: &[String]) {
    let name = flag(args, "--name").unwrap();
    let mut limits = raw::limits_from(args);
    if let Some(ms) = flag_num(args, "--handshake-ms") {
        limits = limits.handshake_timeout(Duration::from_millis(ms));
    }
    let mut opts = DdeServerOptions::new().topic("t").limits(limits);
    if let Some(n) = flag_num(args, "--max-data") {
        opts = opts.max_message_size(n as usize);
    }
    if let Some(n) = flag_num(args, "--queue") {
        opts = opts.queue_per_link(n as usize);
    }
    let server = opts.create(name).unwrap();
    server.set_item("t", "x", Format::TEXT, b"0").unwrap();
    say("READY");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split(' ').collect();
        match w.as_slice() {
            ["set", item, value] => {
                server
                    .set_item("t", item, Format::TEXT, value.as_bytes())
                    .unwrap();
                say("SET");
            }
            ["burst", item, n, size] => {
                let (n, size): (usize, usize) = (n.parse().unwrap(), size.parse().unwrap());
                for i in 0..n {
                    let mut v = format!("{i}:").into_bytes();
                    v.resize(size.max(v.len()), b'.');
                    server.set_item("t", item, Format::TEXT, &v).unwrap();
                }
                say("BURST");
            }
            ["stats"] => {
                let s = server.stats();
                say(&format!(
                    "STATS stalled={} malformed={} handshake={} open={}",
                    s.dropped_stalled, s.dropped_malformed, s.dropped_handshake, s.open
                ));
            }
            _ => panic!("unknown command {line}"),
        }
    }
}

/// A fake DDE server at `path`: a valid hello, then, for whatever the
/// client sends, a header of unknown kind announcing 4 GiB. Prints
/// `READY`; exits when stdin closes.
fn garbage_server_role(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut hello = MAGIC.to_vec();
                hello.extend_from_slice(&[1, 0, 0, 0]);
                hello.extend_from_slice(&1024u32.to_le_bytes());
                let _ = s.write_all(&hello);
                let mut b = [0u8; 64];
                let _ = s.read(&mut b);
                let _ = s.write_all(&header(0x99, 0, 0, 0, 1, u32::MAX));
                let _ = s.read(&mut b);
            });
        }
    });
    say("READY");
    support::wait_for_parent();
    std::process::exit(0);
}

// ----------------------------------------------------------------- parent

fn server(t: &TestNs, args: &[&str]) -> Proc {
    raw::endpoint(t, "server", "svc", args)
}

/// The server's counters, from its `stats` command.
fn stats(s: &mut Proc) -> String {
    s.tell("stats");
    s.stdout_line("STATS ")
}

fn stat(line: &str, key: &str) -> u64 {
    line.split(' ')
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap()
        .parse()
        .unwrap()
}

/// A good client still gets answers.
fn good_request(t: &TestNs) -> Vec<u8> {
    ConversationOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect("svc", "t")
        .unwrap()
        .request("x", Format::TEXT)
        .unwrap()
}

// ------------------------------------------------------------------ tests

#[test]
fn malformed_frames_close_only_that_connection() {
    let t = TestNs::new();
    let mut s = server(&t, &[]);
    let path = t.ns.socket_path("svc");
    let mut bad_reserved = frame(CONNECT, 0, 0, 1, b"t", b"");
    bad_reserved[21] = 7;
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("non-zero reserved bytes", bad_reserved),
        ("a 300-byte name", header(CONNECT, 0, 300, 0, 1, 0)),
        ("an unknown kind", frame(9, 0, 0, 1, b"t", b"")),
        (
            "a request before connecting",
            frame(REQUEST, 0, CF_TEXT, 1, b"x", b""),
        ),
        (
            "a topic that is not UTF-8",
            frame(CONNECT, 0, 0, 1, &[0xff, 0xfe], b""),
        ),
    ];
    for (what, bytes) in &hostile {
        let (mut c, _) = raw::connect_to(&path, MAGIC);
        c.write_all(bytes).unwrap();
        assert!(closed_by_peer(&mut c, "server"), "{what}");
        assert_eq!(good_request(&t), b"0", "after {what}");
    }
    // An unknown link type after connecting closes too.
    let mut c = raw_conversation(&t, "svc", "t");
    c.write_all(&frame(ADVISE, 9, CF_TEXT, 2, b"x", b""))
        .unwrap();
    assert!(closed_by_peer(&mut c, "server"));
    assert!(stat(&stats(&mut s), "malformed") >= 6);
}

#[test]
fn an_oversized_frame_is_refused_and_the_conversation_goes_on() {
    let t = TestNs::new();
    let _s = server(&t, &["--max-data", "1024"]);
    let mut c = raw_conversation(&t, "svc", "t");
    c.write_all(&frame(POKE, 0, CF_TEXT, 2, b"x", &[7u8; 4096]))
        .unwrap();
    let g = read_frame(&mut c);
    assert_eq!((g.kind, g.code, g.value), (ERROR, ERR_TOO_LARGE, 2));
    assert!(String::from_utf8_lossy(&g.body).contains("1024"));
    c.write_all(&frame(REQUEST, 0, CF_TEXT, 3, b"x", b""))
        .unwrap();
    let g = read_frame(&mut c);
    assert_eq!((g.kind, g.value, g.body.as_slice()), (REPLY, 3, &b"0"[..]));
    // The library refuses before sending, naming the limit.
    let conv = ConversationOptions::new()
        .namespace(&t.ns)
        .connect("svc", "t")
        .unwrap();
    let e = conv.poke("x", Format::TEXT, &[0u8; 2000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
}

#[test]
fn a_request_flood_that_never_reads_is_held_back_and_others_are_served() {
    let t = TestNs::new();
    let s = server(&t, &[]);
    let mut c = raw_conversation(&t, "svc", "t");
    c.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // 200 000 requests (5 MB) and never a read: the server answers one at
    // a time and stops reading until its answer is read, so the writes
    // block once the socket buffers are full.
    let one = frame(REQUEST, 0, CF_TEXT, 9, b"x", b"");
    let flood: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 200_000)
        .collect();
    let blocked = c.write_all(&flood).is_err();
    assert!(
        blocked,
        "the server read 5 MB of requests without their answers being read"
    );
    assert_eq!(good_request(&t), b"0");
    assert!(support::proc_stats::rss_kib(s.pid()) < 200 * 1024);
}

#[test]
fn a_hot_link_that_is_never_read_stalls_neither_set_item_nor_other_clients() {
    let t = TestNs::new();
    let mut s = server(&t, &["--stall-ms", "1000", "--queue", "8"]);
    // The hostile client: a hot link on x, then never a read.
    let mut c = raw_conversation(&t, "svc", "t");
    c.write_all(&frame(ADVISE, LINK_HOT, CF_TEXT, 2, b"x", b""))
        .unwrap();
    // A good client on the same item.
    let conv = ConversationOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect("svc", "t")
        .unwrap();
    let mut good = conv.advise("x", Format::TEXT, Link::Hot).unwrap();
    // 2000 changes of 64 KiB (128 MB for the hostile link): every call
    // returns although one client reads nothing.
    s.tell("burst x 2000 65536");
    s.stdout_line("BURST");
    // The good client sees every change or counts it as skipped, and ends
    // on the latest value.
    let (mut seen, mut skipped) = (0u64, 0u64);
    loop {
        let u = good.recv_timeout(DEADLINE).unwrap();
        seen += 1;
        skipped += u.skipped;
        if u.data.unwrap().starts_with(b"1999:") {
            break;
        }
    }
    assert_eq!(seen + skipped, 2000);
    // The hostile client is dropped after the stall timeout.
    wait_until(DEADLINE, "the silent client is dropped", || {
        stat(&stats(&mut s), "stalled") >= 1
    });
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    assert!(closed_by_peer(&mut c, "server"));
    assert!(support::proc_stats::rss_kib(s.pid()) < 400 * 1024);
}

#[test]
fn a_slow_reader_gets_skipped_counts_and_always_the_latest_value() {
    let t = TestNs::new();
    let mut s = server(&t, &["--queue", "4"]);
    let mut c = raw_conversation(&t, "svc", "t");
    c.write_all(&frame(ADVISE, LINK_HOT, CF_TEXT, 2, b"x", b""))
        .unwrap();
    let g = read_frame(&mut c);
    assert_eq!((g.kind, g.value), (REPLY, 2));
    // 500 changes of 16 KiB (8 MB) while the client reads nothing.
    s.tell("burst x 500 16384");
    s.stdout_line("BURST");
    let (mut seen, mut skipped, mut any_skip) = (0u64, 0u64, false);
    loop {
        let g = read_frame(&mut c);
        assert_eq!(g.kind, DATA);
        seen += 1;
        skipped += g.value;
        any_skip |= g.value > 0;
        if g.body.starts_with(b"499:") {
            break;
        }
    }
    assert!(any_skip, "8 MB fit in the socket and a 4-update queue");
    assert_eq!(seen + skipped, 500);
}

#[test]
fn a_silent_connection_is_dropped_after_the_handshake_deadline() {
    let t = TestNs::new();
    let mut s = server(&t, &["--handshake-ms", "300"]);
    let (mut c, _) = raw::connect_to(&t.ns.socket_path("svc"), MAGIC);
    assert!(closed_by_peer(&mut c, "server"));
    assert_eq!(stat(&stats(&mut s), "handshake"), 1);
}

#[test]
fn a_half_hello_or_garbage_from_a_server_is_an_error_not_a_hang() {
    let t = TestNs::new();
    let _half = raw::half_hello(&t, &t.ns.socket_path("half"));
    let ns = t.ns.clone();
    let e = support::within(DEADLINE, move || {
        ConversationOptions::new()
            .namespace(&ns)
            .timeout(Duration::from_secs(1))
            .connect("half", "t")
    })
    .unwrap()
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let socket = t.ns.socket_path("junk").display().to_string();
    let mut g = t.talk("garbage-server", &["--socket", &socket]);
    g.stdout_line("READY");
    let ns = t.ns.clone();
    let e = support::within(DEADLINE, move || {
        ConversationOptions::new()
            .namespace(&ns)
            .timeout(Duration::from_secs(5))
            .connect("junk", "t")
    })
    .unwrap()
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
}
