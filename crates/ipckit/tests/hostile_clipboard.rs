//! Clipboard boards against hostile input: garbage in the board's shared
//! memory, hostile peers on an owner's render endpoint, and a hostile
//! (fake) owner answering a reader. Readers in another process are this
//! test binary re-exec'd in a role (`child_role`). Every wait is bounded by
//! [`DEADLINE`]; nothing sleeps to synchronise.
//!
//! Byte layouts are written out here from `docs/PROTOCOL.md`, "Clipboard
//! boards" (the item encoding, the render endpoint's hello and frames).

mod support;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use ipckit::clipboard::{BoardOptions, Format};
use ipckit::map::SharedMapOptions;
use ipckit::shm::MappingOptions;
use ipckit::{ErrorKind, Limits, Namespace};
use support::raw::closed_by_peer;
use support::{say, within, TestNs, DEADLINE};

const RENDER_MAGIC: &[u8; 8] = b"IPCKCLPR";

/// An item as `docs/PROTOCOL.md` lays it out: `entries` of (format id,
/// promised, data).
fn item(seq: u64, pid: u32, token: u64, entries: &[(u32, bool, &[u8])]) -> Vec<u8> {
    let mut b = b"IPCKCLIP".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&pid.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // start time unknown
    b.extend_from_slice(&token.to_le_bytes());
    for (id, promised, data) in entries {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&u32::from(*promised).to_le_bytes());
        b.extend_from_slice(&(data.len() as u64).to_le_bytes());
    }
    for (_, _, data) in entries {
        b.extend_from_slice(data);
    }
    b
}

/// The token of the board's current item (offset 40 of the item).
fn token_of(ns: &Namespace, board: &str) -> u64 {
    let m = SharedMapOptions::new()
        .namespace(ns)
        .open(&format!("clip/{board}"))
        .unwrap();
    let c = m.snapshot().unwrap().content;
    u64::from_le_bytes(c[40..48].try_into().unwrap())
}

fn render_socket(ns: &Namespace, token: u64) -> PathBuf {
    ns.dir().join(format!(".clip-{token:016x}.sock"))
}

fn request(format: u32, seq: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 1;
    b[4..8].copy_from_slice(&format.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b
}

fn response(kind: u8, code: u8, format: u32, len: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = kind;
    b[1] = code;
    b[4..8].copy_from_slice(&format.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

fn hello(max: u32) -> Vec<u8> {
    let mut b = RENDER_MAGIC.to_vec();
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&max.to_le_bytes());
    b
}

#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Read format ARG1 from board ARG0; print `DATA <utf8>` or
        // `ERROR <kind>`.
        "reader" => {
            let b = BoardOptions::new().namespace(&ns).open(&args[0]).unwrap();
            let f = Format::from_id(args[1].parse().unwrap());
            match b.get(f) {
                Ok(d) => say(&format!("DATA {}", String::from_utf8_lossy(&d))),
                Err(e) => say(&format!("ERROR {}", e.kind().as_str())),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn garbage_in_the_boards_item_is_a_decode_error_naming_the_board_never_a_panic() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/junk"]);
    let opts = BoardOptions::new().namespace(&t.ns).max_size(4096);
    let b = opts.open("junk").unwrap();
    b.set_text("fine").unwrap();
    let mut raw = SharedMapOptions::new()
        .namespace(&t.ns)
        .open("clip/junk")
        .unwrap();
    // A well-formed map whose content is not an item.
    raw.write(b"not an item at all, just text that is long enough")
        .unwrap();
    for e in [
        b.formats().unwrap_err(),
        b.get(Format::TEXT).unwrap_err(),
        b.set_text("x").unwrap_err(),
        b.sequence().unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        assert!(
            e.to_string().contains("junk") && e.to_string().contains("remove"),
            "{e}"
        );
    }
    // Items lying about their counts and lengths.
    let good = item(5, 0, 0, &[(1, false, b"a\0"), (8, false, &[1, 2, 3])]);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut c = good.clone();
    c[12..16].copy_from_slice(&u32::MAX.to_le_bytes()); // count
    cases.push(c);
    let mut c = good.clone();
    c[56..64].copy_from_slice(&u64::MAX.to_le_bytes()); // a length
    cases.push(c);
    let mut c = good.clone();
    c[56..64].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(c);
    let mut c = good.clone();
    c[48..52].copy_from_slice(&8u32.to_le_bytes()); // a format twice
    cases.push(c);
    let mut c = good.clone();
    c[52..56].copy_from_slice(&1u32.to_le_bytes()); // promised with data
    cases.push(c);
    cases.push(good[..good.len() - 1].to_vec()); // truncated
    cases.push(item(1, 0, 0, &[(8, false, &[0; 5000])])); // over max_size
    for (i, c) in cases.iter().enumerate() {
        raw.write(c).unwrap();
        let e = b.formats().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "case {i}: {e}");
        assert!(e.to_string().contains("junk"), "case {i}: {e}");
    }
    // Random bytes over a real item: errors or values, never a panic or
    // a hang.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..300 {
        let mut c = good.clone();
        for _ in 0..1 + round % 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % c.len();
            c[at] = (x >> 32) as u8;
        }
        raw.write(&c).unwrap();
        let ns = t.ns.clone();
        within(DEADLINE, move || {
            let b = BoardOptions::new().namespace(&ns).open("junk").unwrap();
            let _ = b.formats();
            let _ = b.contents();
            for f in [1, 8, 13] {
                let _ = b.get(Format::from_id(f));
            }
        })
        .expect("a reader of a corrupt board returned");
    }
    // The way out: remove it and open it again.
    drop((b, raw));
    opts.remove("junk").unwrap();
    let b = opts.open("junk").unwrap();
    assert!(!b.existed());
    assert_eq!(b.set_text("again").unwrap(), 1);
}

#[test]
fn garbage_in_the_boards_shared_memory_header_is_an_error_never_a_panic() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/hdr"]);
    let opts = BoardOptions::new().namespace(&t.ns).max_size(4096);
    let b = opts.open("hdr").unwrap();
    b.set_text("fine").unwrap();
    drop(b);
    let os = MappingOptions::new()
        .namespace(&t.ns)
        .os_name("clip/hdr")
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{os}"))
        .unwrap();
    let mut original = Vec::new();
    (&file).read_to_end(&mut original).unwrap();
    // The map's data region starts at 64: its max_size word is at +16, the
    // lengths of its two buffers at +24 and +32.
    for (at, value) in [
        (64 + 16, u64::MAX),
        (64 + 16, 0),
        (64 + 24, u64::MAX),
        (64 + 32, u64::MAX),
        (64 + 24, 1 << 40),
    ] {
        file.write_all_at(&original, 0).unwrap();
        file.write_all_at(&value.to_le_bytes(), at).unwrap();
        let ns = t.ns.clone();
        let r = within(DEADLINE, move || {
            let b = BoardOptions::new().namespace(&ns).open("hdr")?;
            b.formats()?;
            b.get_text()
        })
        .expect("a reader of a corrupt board returned");
        if let Err(e) = r {
            assert!(
                matches!(e.kind(), ErrorKind::Decode | ErrorKind::Busy),
                "offset {at}: {e}"
            );
            assert!(e.to_string().contains("hdr"), "offset {at}: {e}");
        }
    }
}

#[test]
fn a_promise_of_a_live_pid_without_an_endpoint_is_not_available_never_a_hang() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/liar"]);
    let b = BoardOptions::new().namespace(&t.ns).open("liar").unwrap();
    let mut raw = SharedMapOptions::new()
        .namespace(&t.ns)
        .open("clip/liar")
        .unwrap();
    // Our own (live) pid, a token whose socket does not exist.
    raw.write(&item(1, std::process::id(), 0x1234, &[(8, true, &[])]))
        .unwrap();
    let e = b.get(Format::DIB).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn hostile_peers_on_the_render_endpoint_are_dropped_and_readers_are_served() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/h"]);
    let limits = Limits::new()
        .handshake_timeout(Duration::from_millis(300))
        .stall_timeout(Duration::from_millis(300));
    let b = BoardOptions::new()
        .namespace(&t.ns)
        .max_size(1 << 20)
        .limits(limits)
        .open("h")
        .unwrap();
    let mut tr = b.begin();
    tr.empty();
    tr.promise(Format::DIB).unwrap();
    let owner = tr
        .close_with_renderer(|f| Some(format!("good {}", f.id()).into_bytes()))
        .unwrap();
    let seq = owner.sequence();
    let path = render_socket(&t.ns, token_of(&t.ns, "h"));
    let connect = || {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        assert_eq!(&h[..8], RENDER_MAGIC);
        assert_eq!((h[8], h[9]), (1, 0), "version 1, status ok");
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 1 << 20);
        s
    };
    // Idle after the hello, half a request, garbage: all dropped.
    let mut idle = connect();
    let mut half = connect();
    half.write_all(&request(8, seq)[..7]).unwrap();
    let mut garbage = connect();
    garbage.write_all(&[0xff; 16]).unwrap();
    let mut flags = connect();
    let mut bad = request(8, seq);
    bad[2] = 1;
    flags.write_all(&bad).unwrap();
    // While they are open, a reader in another process is served.
    let out = t.run("reader", &["h", "8"]);
    out.assert_success();
    assert_eq!(out.line("DATA "), Some("good 8"));
    assert!(closed_by_peer(&mut garbage, "owner"));
    assert!(closed_by_peer(&mut flags, "owner"));
    assert!(closed_by_peer(&mut idle, "owner"));
    assert!(closed_by_peer(&mut half, "owner"));
    // A well-formed peer asking wrong things gets errors and stays.
    let mut s = connect();
    let mut r = [0u8; 16];
    s.write_all(&request(0xC123, seq)).unwrap();
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, response(2, 2, 0xC123, 0), "not promised");
    s.write_all(&request(8, seq + 7)).unwrap();
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, response(2, 1, 8, 0), "stale sequence");
    s.write_all(&request(8, seq)).unwrap();
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, response(1, 0, 8, 6));
    let mut body = [0u8; 6];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"good 8");
    drop(owner);
}

/// A fake owner at the board's render endpoint: for each connection, run
/// the next behaviour.
fn fake_owner(t: &TestNs, board: &str, token: u64) -> UnixListener {
    let mut raw = SharedMapOptions::new()
        .namespace(&t.ns)
        .open(&format!("clip/{board}"))
        .unwrap();
    raw.write(&item(1, std::process::id(), token, &[(8, true, &[])]))
        .unwrap();
    UnixListener::bind(render_socket(&t.ns, token)).unwrap()
}

#[test]
fn a_hostile_owner_cannot_make_a_reader_hang_or_allocate_what_it_announces() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/fake"]);
    let b = BoardOptions::new()
        .namespace(&t.ns)
        .max_size(1 << 20)
        .render_timeout(Duration::from_millis(500))
        .open("fake")
        .unwrap();
    let listener = fake_owner(&t, "fake", 0xfeed);
    type Behave = fn(&mut UnixStream);
    let cases: Vec<(Behave, ErrorKind)> = vec![
        // A huge announced body: refused before any allocation.
        (
            |s| {
                s.write_all(&hello(1 << 20)).unwrap();
                let mut r = [0u8; 16];
                s.read_exact(&mut r).unwrap();
                s.write_all(&response(1, 0, 8, u32::MAX)).unwrap();
            },
            ErrorKind::Decode,
        ),
        // Not a clipboard owner's hello.
        (|s| s.write_all(&[b'X'; 16]).unwrap(), ErrorKind::Decode),
        // Hello, then silence: the render timeout.
        (
            |s| {
                s.write_all(&hello(1 << 20)).unwrap();
                let mut r = [0u8; 16];
                s.read_exact(&mut r).unwrap();
            },
            ErrorKind::Timeout,
        ),
        // Half a hello, then silence.
        (
            |s| s.write_all(&RENDER_MAGIC[..]).unwrap(),
            ErrorKind::Timeout,
        ),
        // Another format than asked.
        (
            |s| {
                s.write_all(&hello(1 << 20)).unwrap();
                let mut r = [0u8; 16];
                s.read_exact(&mut r).unwrap();
                s.write_all(&response(1, 0, 9, 1)).unwrap();
                s.write_all(b"x").unwrap();
            },
            ErrorKind::Decode,
        ),
        // A garbage response header.
        (
            |s| {
                s.write_all(&hello(1 << 20)).unwrap();
                let mut r = [0u8; 16];
                s.read_exact(&mut r).unwrap();
                s.write_all(&[0xee; 16]).unwrap();
            },
            ErrorKind::Decode,
        ),
        // Closes at once (the owner died): not available.
        (
            |s| s.shutdown(std::net::Shutdown::Both).unwrap(),
            ErrorKind::NotFound,
        ),
    ];
    for (i, (behave, want)) in cases.into_iter().enumerate() {
        let ns = t.ns.clone();
        let reader = std::thread::spawn(move || {
            BoardOptions::new()
                .namespace(&ns)
                .render_timeout(Duration::from_millis(500))
                .open("fake")
                .unwrap()
                .get(Format::DIB)
        });
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        behave(&mut s);
        let got = within(DEADLINE, move || reader.join().unwrap())
            .unwrap_or_else(|_| panic!("case {i}: the reader hung"));
        drop(s);
        let e = got.unwrap_err();
        assert_eq!(e.kind(), want, "case {i}: {e}");
        assert!(e.to_string().contains("fake"), "case {i}: {e}");
    }
    drop(b);
}
