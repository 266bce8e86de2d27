//! Clipboard boards on Windows: `ipckit::clipboard` across real processes
//! (the board is a shared map, an owner's render endpoint a byte-mode
//! named pipe `\\.\pipe\ipckit.<H>..clip-<token>`). Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! Setters, readers, owners and watchers are this test executable re-run
//! as the ignored test [`child_role`] (see `windows_support::kids`): they
//! print what they did on stdout, one line each, and exit when their stdin
//! closes; the parent kills and reaps them on drop. Nothing sleeps to
//! synchronise: a stalled renderer blocks on a stdin line. Every wait is
//! bounded by [`LIMIT`].
//!
//! The item bytes written by the hostile test follow `docs/PROTOCOL.md`,
//! "Clipboard boards".
#![cfg(all(windows, feature = "clipboard"))]

// Only its `kids` part is used here.
#[allow(dead_code)]
mod windows_support;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::clipboard::{Board, BoardOptions, Format};
use ipckit::map::SharedMapOptions;
use ipckit::{ErrorKind, Limits, Namespace};
use windows_support::kids::{
    bounded, flag, new_ns, pipe_name, poll_until, read_to_end, role, say, stdin_lines, Kid, LIMIT,
};

// ---------------------------------------------------------------- helpers

fn board(ns: &Namespace, name: &str) -> Board {
    BoardOptions::new().namespace(ns).open(name).unwrap()
}

/// `len` bytes of a pattern that shows a lost, doubled or moved chunk.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// FNV-1a of `b`, as a child reports what it read.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How a child reports data it read: `<len> <fnv>`.
fn digest(b: &[u8]) -> String {
    format!("{} {:016x}", b.len(), fnv(b))
}

/// Item `k` of the mixer: every format says `k`.
fn mixed(k: u64) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{k}\0").into_bytes(),
        vec![(k % 251) as u8; 1000 + k as usize],
    )
}

/// Format ids as a child prints them: `1,8,49152`.
fn ids(formats: &[Format]) -> String {
    formats
        .iter()
        .map(|f| f.id().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

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

// Render endpoint wire constants, from docs/PROTOCOL.md, "Clipboard
// boards".
const RENDER_MAGIC: &[u8; 8] = b"IPCKCLPR";

/// The render endpoint of board `board`'s current owner: the token at
/// offset 40 of the item names the pipe `\\.\pipe\ipckit.<H>..clip-<token
/// as 16 hex digits>`.
fn render_pipe(ns: &Namespace, board: &str) -> String {
    let c = SharedMapOptions::new()
        .namespace(ns)
        .open(&format!("clip/{board}"))
        .unwrap()
        .snapshot()
        .unwrap()
        .content;
    let token = u64::from_le_bytes(c[40..48].try_into().unwrap());
    assert_ne!(token, 0, "the item has no owner endpoint");
    let probe = pipe_name(ns, "x");
    format!("{}.clip-{token:016x}", &probe[..probe.len() - 1])
}

/// A render request: format `format` of the item `seq`.
fn render_request(format: u32, seq: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 1;
    b[4..8].copy_from_slice(&format.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b
}

/// A render response header.
fn render_response(kind: u8, code: u8, format: u32, len: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = kind;
    b[1] = code;
    b[4..8].copy_from_slice(&format.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

// -------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    let b = board(&ns, &args[0]);
    match role.as_str() {
        // Set CF_UNICODETEXT "from child" and the registered format
        // "ipckit/test"; print `ID <id>` and `SEQ <n>`.
        "setter" => {
            let reg = Format::register_in(&ns, "ipckit/test").unwrap();
            let mut t = b.begin();
            t.empty();
            t.set(
                Format::UNICODE_TEXT,
                ipckit::clipboard::text_to_unicode("from child"),
            )
            .unwrap();
            t.set(reg, b"registered bytes".to_vec()).unwrap();
            let seq = t.close().unwrap();
            say(&format!("ID {}", reg.id()));
            say(&format!("SEQ {seq}"));
        }
        // Print `CURRENT <seq> <owner pid or 0> <format ids>` (or `ERROR
        // <kind>`), then for each format id ARG1.. `GET <id> <len> <fnv>`
        // or `GET <id> ERROR <kind>`, and `NAME <id> <name>` for a
        // registered one.
        "reader" => {
            match b.current() {
                Ok(c) => say(&format!(
                    "CURRENT {} {} {}",
                    c.sequence,
                    c.owner.unwrap_or(0),
                    ids(&c.formats)
                )),
                Err(e) => say(&format!("ERROR {}", e.kind())),
            }
            for id in &args[1..] {
                let f = Format::from_id(id.parse().unwrap());
                match b.get(f) {
                    Ok(d) => say(&format!("GET {id} {}", digest(&d))),
                    Err(e) => say(&format!("GET {id} ERROR {}", e.kind())),
                }
                if f.is_registered() {
                    let name = f.name_in(&ns).unwrap().unwrap_or_default();
                    say(&format!("NAME {id} {name}"));
                }
            }
        }
        // Set `--count` items, item k with CF_TEXT "k" and CF_DIB of
        // 1000 + k bytes; print `DONE`.
        "mixer" => {
            let n: u64 = flag(&args, "--count").unwrap().parse().unwrap();
            for k in 1..=n {
                let (text, dib) = mixed(k);
                let mut t = b.begin();
                t.empty();
                t.set(Format::TEXT, text).unwrap();
                t.set(Format::DIB, dib).unwrap();
                t.close().unwrap();
            }
            say("DONE");
        }
        // Own an item: CF_TEXT set, CF_DIB and "ipckit/png" promised; the
        // renderer prints `RENDER <id>`. Prints `READY <seq>`. `release`
        // on stdin drops the owner (rendering the rest into the board) and
        // prints `RELEASED`; exits when stdin closes.
        "owner" => {
            let png = Format::register_in(&ns, "ipckit/png").unwrap();
            let mut t = b.begin();
            t.empty();
            t.set(Format::TEXT, b"plain\0".to_vec()).unwrap();
            t.promise(Format::DIB).unwrap();
            t.promise(png).unwrap();
            let owner = t
                .close_with_renderer(|f| {
                    say(&format!("RENDER {}", f.id()));
                    Some(format!("rendered-{}", f.id()).into_bytes())
                })
                .unwrap();
            say(&format!("READY {}", owner.sequence()));
            let mut owner = Some(owner);
            for line in stdin_lines() {
                if line == "release" {
                    drop(owner.take());
                    say("RELEASED");
                }
            }
        }
        // Own an item with CF_DIB promised; the renderer prints
        // `IN-RENDER` and blocks until a stdin line (at most LIMIT), then
        // renders `late`. Prints `READY`; exits when stdin closes.
        "stalled-owner" => {
            let (gate_tx, gate) = mpsc::channel::<()>();
            let mut t = b.begin();
            t.empty();
            t.promise(Format::DIB).unwrap();
            let owner = t
                .close_with_renderer(move |_| {
                    say("IN-RENDER");
                    let _ = gate.recv_timeout(LIMIT);
                    Some(b"late".to_vec())
                })
                .unwrap();
            say("READY");
            for _ in stdin_lines() {
                let _ = gate_tx.send(());
            }
            // Free a renderer still waiting before the owner renders
            // what is left on drop.
            drop(gate_tx);
            drop(owner);
        }
        // Print `WATCHING`, then `CHANGE <seq> <format ids>` per change
        // until sequence `--until`, then `LAST <seq>`.
        "watcher" => {
            let until: u64 = flag(&args, "--until").unwrap().parse().unwrap();
            let mut w = b.watch().unwrap();
            say("WATCHING");
            loop {
                let c = w.next_timeout(Some(LIMIT)).unwrap();
                say(&format!("CHANGE {} {}", c.sequence, ids(&c.formats)));
                if c.sequence >= until {
                    say(&format!("LAST {}", c.sequence));
                    return;
                }
            }
        }
        // Set CF_DIB to `--size` bytes of `pattern(size, 7)`; print `SEQ
        // <n>` or `ERROR <kind>`.
        "big" => {
            let size: usize = flag(&args, "--size").unwrap().parse().unwrap();
            match b.set(Format::DIB, pattern(size, 7)) {
                Ok(seq) => say(&format!("SEQ {seq}")),
                Err(e) => say(&format!("ERROR {}", e.kind())),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

// ------------------------------------------------------------------ tests

/// An item set in another process is read here whole, with its formats
/// (standard and registered: the same id in both processes), sequence
/// number and owner; and an item set here is read there.
#[test]
fn an_item_set_in_one_process_is_read_in_another_with_formats_owner_and_sequence() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "cb");
    assert_eq!(b.sequence().unwrap(), 0);
    assert_eq!(b.owner().unwrap(), None);
    b.set_text("first").unwrap();

    let mut setter = Kid::start(&ns, "setter", &["cb"]);
    let id: u32 = setter.value("ID ").parse().unwrap();
    let seq: u64 = setter.value("SEQ ").parse().unwrap();
    let pid = setter.pid();
    setter.finish();
    let reg = Format::register_in(&ns, "ipckit/test").unwrap();
    assert_eq!(reg.id(), id, "registered there, the same id here");
    assert!(reg.is_registered());
    assert_eq!(seq, 2, "one set here, one in the child");
    assert_eq!(b.sequence().unwrap(), 2);
    assert_eq!(b.owner().unwrap(), Some(pid));
    assert_eq!(b.formats().unwrap(), [Format::UNICODE_TEXT, reg]);
    assert!(
        !b.is_available(Format::TEXT).unwrap(),
        "the old item is gone whole"
    );
    assert_eq!(b.get(reg).unwrap(), b"registered bytes");
    assert_eq!(b.get_text().unwrap(), "from child");
    let e = b.get(Format::TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("cb"), "{e}");
    let listed = ipckit::clipboard::list_in(&ns).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].sequence, listed[0].owner),
        ("cb", 2, Some(pid))
    );

    // The other way round, with data larger than a pipe's buffers.
    let here = Format::register_in(&ns, "ipckit/here").unwrap();
    let dib = pattern(300_000, 3);
    let mut t = b.begin();
    t.empty();
    t.set(Format::DIB, dib.clone()).unwrap();
    t.set(here, b"here bytes".to_vec()).unwrap();
    assert_eq!(t.close().unwrap(), 3);
    let out = Kid::start(&ns, "reader", &["cb", "8", &here.id().to_string(), "1"]).finish();
    let me = std::process::id();
    for want in [
        format!("CURRENT 3 {me} 8,{}", here.id()),
        format!("GET 8 {}", digest(&dib)),
        format!("GET {} {}", here.id(), digest(b"here bytes")),
        format!("NAME {} ipckit/here", here.id()),
        "GET 1 ERROR not-found".to_string(),
    ] {
        assert!(out.contains(&want), "no {want:?} in:\n{out}");
    }
}

/// An item outlives the process that set it, with nobody else holding
/// the board (on Windows its section is made over a file of the
/// namespace); so do the formats an owner process rendered into the board
/// as it let go. Once nobody has it open, `remove` makes the next open a
/// fresh board.
#[test]
fn an_item_outlives_the_processes_that_set_it() {
    let (_dir, ns) = new_ns();
    let mut setter = Kid::start(&ns, "setter", &["keep"]);
    setter.next("SEQ ");
    let pid = setter.pid();
    setter.finish();
    let b = board(&ns, "keep");
    assert!(b.existed());
    assert_eq!(b.sequence().unwrap(), 1);
    assert_eq!(b.owner().unwrap(), Some(pid));
    assert_eq!(b.get_text().unwrap(), "from child");
    drop(b);

    let mut owner = Kid::start(&ns, "owner", &["keep"]);
    assert_eq!(owner.next("READY "), "READY 2");
    let owner_pid = owner.pid();
    owner.tell("release");
    owner.next("RELEASED");
    owner.finish();
    let png = Format::register_in(&ns, "ipckit/png").unwrap();
    let out = Kid::start(&ns, "reader", &["keep", "8", &png.id().to_string()]).finish();
    for want in [
        format!("CURRENT 2 {owner_pid} 1,8,{}", png.id()),
        format!("GET 8 {}", digest(b"rendered-8")),
        format!(
            "GET {} {}",
            png.id(),
            digest(format!("rendered-{}", png.id()).as_bytes())
        ),
    ] {
        assert!(out.contains(&want), "no {want:?} in:\n{out}");
    }

    let opts = BoardOptions::new().namespace(&ns);
    opts.remove("keep").unwrap();
    let b = opts.open("keep").unwrap();
    assert!(!b.existed());
    assert_eq!(b.sequence().unwrap(), 0);
    drop(b);
    opts.remove("keep").unwrap();
    let e = opts.remove("keep").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

/// `remove` of a board another process has open is `Busy` (its file
/// cannot go while a section is made over it) and changes nothing: the
/// item is still there for that process and for the next open.
#[test]
fn removing_a_board_another_process_has_open_is_busy() {
    let (_dir, ns) = new_ns();
    let mut owner = Kid::start(&ns, "owner", &["held"]);
    owner.next("READY ");
    let opts = BoardOptions::new().namespace(&ns);
    let e = opts.remove("held").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert_eq!(e.name(), Some("held"));
    owner.tell("release");
    owner.next("RELEASED");
    owner.finish();
    let b = opts.open("held").unwrap();
    assert!(b.existed(), "a refused remove lost the board");
    assert_eq!(b.sequence().unwrap(), 1);
    assert_eq!(b.get(Format::DIB).unwrap(), b"rendered-8");
}

/// A reader here never sees a mix of two items while another process
/// replaces the item as fast as it can.
#[test]
fn readers_never_see_a_mix_of_two_items() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "mix");
    let mut mixer = Kid::start(&ns, "mixer", &["mix", "--count", "150"]);
    let mut last = 0;
    let mut reads = 0u64;
    let done = poll_until(LIMIT, || {
        let c = b.contents().unwrap();
        if c.sequence > 0 {
            let (text, dib) = mixed(c.sequence);
            assert_eq!(
                c.data,
                [(Format::TEXT, text), (Format::DIB, dib)],
                "item {}",
                c.sequence
            );
        }
        assert!(c.sequence >= last, "the sequence went back");
        last = c.sequence;
        reads += 1;
        c.sequence == 150
    });
    assert!(done, "the mixer's last item was not seen (last {last})");
    mixer.next("DONE");
    mixer.finish();
    assert!(reads > 0);
}

/// A watcher in another process is woken by every change made here and
/// never misses the latest; a callback here is called for a change made
/// there.
#[test]
fn watchers_are_woken_by_changes_of_another_process() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "w");
    let mut watcher = Kid::start(&ns, "watcher", &["w", "--until", "30"]);
    watcher.next("WATCHING");
    for i in 0..30 {
        b.set_text(&format!("item {i}")).unwrap();
    }
    assert_eq!(watcher.next("LAST "), "LAST 30");
    let out = watcher.finish();
    let seqs: Vec<u64> = out
        .lines()
        .filter_map(|l| Some(&l[l.find("CHANGE ")? + 7..]))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(!seqs.is_empty(), "{out}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.contains("CHANGE 30 13,1"), "{out}");

    let (tx, rx) = mpsc::channel();
    let sub = b.on_change(move |c| tx.send(c).unwrap()).unwrap();
    let mut setter = Kid::start(&ns, "setter", &["w"]);
    setter.next("SEQ ");
    let pid = setter.pid();
    setter.finish();
    let c = rx.recv_timeout(LIMIT).expect("a change within the limit");
    assert_eq!((c.sequence, c.owner), (31, Some(pid)));
    assert_eq!(c.formats.len(), 2);
    drop(sub);
}

/// Delayed rendering: an owner process renders a promised format when a
/// reader here asks (once: the bytes are stored in the board), and renders
/// what is left into the board when it lets go.
#[test]
fn a_promised_format_is_rendered_by_its_owner_on_demand_and_all_on_release() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "lazy");
    let mut owner = Kid::start(&ns, "owner", &["lazy"]);
    let seq: u64 = owner.value("READY ").parse().unwrap();
    let png = Format::register_in(&ns, "ipckit/png").unwrap();
    assert_eq!(b.sequence().unwrap(), seq);
    assert_eq!(b.owner().unwrap(), Some(owner.pid()));
    assert_eq!(b.formats().unwrap(), [Format::TEXT, Format::DIB, png]);
    assert_eq!(b.contents().unwrap().promised, [Format::DIB, png]);
    // Rendered on demand, by the owner process.
    assert_eq!(b.get(Format::DIB).unwrap(), b"rendered-8");
    assert_eq!(owner.next("RENDER "), "RENDER 8");
    // Stored in the board: read again without a render, same sequence.
    assert_eq!(
        b.contents().unwrap().data[1],
        (Format::DIB, b"rendered-8".to_vec())
    );
    assert_eq!(b.get(Format::DIB).unwrap(), b"rendered-8");
    assert_eq!(b.sequence().unwrap(), seq);
    // Released: the owner renders the rest into the board.
    owner.tell("release");
    assert_eq!(owner.next("RENDER "), format!("RENDER {}", png.id()));
    owner.next("RELEASED");
    let out = owner.finish();
    assert_eq!(
        out.matches("RENDER 8").count(),
        1,
        "CF_DIB rendered twice:\n{out}"
    );
    assert_eq!(
        b.get(png).unwrap(),
        format!("rendered-{}", png.id()).as_bytes()
    );
    assert_eq!(b.formats().unwrap(), [Format::TEXT, Format::DIB, png]);
    assert!(b.contents().unwrap().promised.is_empty());
    assert_eq!(b.sequence().unwrap(), seq);
}

/// An owner here renders for a reader in another process.
#[test]
fn an_owner_here_renders_for_a_reader_in_another_process() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "here");
    let mut t = b.begin();
    t.empty();
    t.set(Format::TEXT, b"plain\0".to_vec()).unwrap();
    t.promise(Format::DIB).unwrap();
    let (tx, calls) = mpsc::channel();
    let owner = t
        .close_with_renderer(move |f| {
            let _ = tx.send(f);
            Some(pattern(200_000, 9))
        })
        .unwrap();
    let out = Kid::start(&ns, "reader", &["here", "8", "8"]).finish();
    let want = format!("GET 8 {}", digest(&pattern(200_000, 9)));
    assert_eq!(out.matches(&want).count(), 2, "{out}");
    assert_eq!(calls.recv_timeout(LIMIT).unwrap(), Format::DIB);
    assert!(calls.try_recv().is_err(), "rendered more than once");
    assert!(owner.is_current().unwrap());
    drop(owner);
    assert_eq!(b.get(Format::DIB).unwrap(), pattern(200_000, 9));
}

/// An owner killed (`TerminateProcess`) while its renderer runs: the
/// reader waiting on it gets `NotFound` long before its render timeout,
/// and the dead owner's promises are no longer listed.
#[test]
fn an_owner_killed_while_rendering_makes_the_format_unavailable_never_a_hang() {
    let (_dir, ns) = new_ns();
    // Held from the start: on Windows a board (its section) lives as long
    // as a process has it open.
    let b = board(&ns, "dead");
    let mut owner = Kid::start(&ns, "stalled-owner", &["dead"]);
    owner.next("READY");
    assert_eq!(b.sequence().unwrap(), 1);
    assert_eq!(b.owner().unwrap(), Some(owner.pid()));
    let (tx, rx) = mpsc::channel();
    {
        let ns = ns.clone();
        std::thread::spawn(move || {
            let b = BoardOptions::new()
                .namespace(&ns)
                .render_timeout(LIMIT * 4)
                .open("dead")
                .unwrap();
            let _ = tx.send(b.get(Format::DIB));
        });
    }
    owner.next("IN-RENDER");
    owner.kill();
    let got = rx
        .recv_timeout(LIMIT)
        .expect("the reader returned within the limit");
    let e = got.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("exited"), "{e}");
    assert_eq!(b.sequence().unwrap(), 1, "the dead owner's item is current");
    assert!(b.formats().unwrap().is_empty());
    assert!(!b.is_available(Format::DIB).unwrap());
    assert_eq!(b.get(Format::DIB).unwrap_err().kind(), ErrorKind::NotFound);
    // The board goes on.
    assert_eq!(b.set_text("after").unwrap(), 2);
    assert_eq!(b.get_text().unwrap(), "after");
}

/// An owner killed before anyone asked: its promised formats are gone
/// (not listed, `NotFound`), the data it set is still there.
#[test]
fn an_owner_killed_before_any_request_leaves_its_promises_unavailable() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "gone");
    let mut owner = Kid::start(&ns, "owner", &["gone"]);
    owner.next("READY ");
    assert!(b.is_available(Format::DIB).unwrap());
    owner.kill();
    let got = bounded("a get of a dead owner's promise", {
        let ns = ns.clone();
        move || board(&ns, "gone").get(Format::DIB)
    });
    assert_eq!(got.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(b.formats().unwrap(), [Format::TEXT]);
    assert_eq!(b.get_text().unwrap(), "plain");
    assert!(b.contents().unwrap().promised.is_empty());
    // A reader in another process agrees.
    let out = Kid::start(&ns, "reader", &["gone", "8"]).finish();
    assert!(out.contains("CURRENT 1 "), "{out}");
    assert!(out.contains("GET 8 ERROR not-found"), "{out}");
}

/// A renderer that stalls makes `get` a `Timeout` within the board's
/// render timeout; once it finishes, what it rendered is served.
#[test]
fn a_stalled_renderer_is_a_timeout_within_the_render_timeout() {
    let (_dir, ns) = new_ns();
    let mut owner = Kid::start(&ns, "stalled-owner", &["hung"]);
    owner.next("READY");
    let e = bounded("a get from a stalled owner", {
        let ns = ns.clone();
        move || {
            BoardOptions::new()
                .namespace(&ns)
                .render_timeout(Duration::from_millis(500))
                .open("hung")
                .unwrap()
                .get(Format::DIB)
        }
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("render"), "{e}");
    owner.next("IN-RENDER");
    // Released, the render ends and is stored: a patient reader gets it.
    owner.tell("go");
    let b = BoardOptions::new()
        .namespace(&ns)
        .render_timeout(LIMIT)
        .open("hung")
        .unwrap();
    let got = bounded("a get after the renderer was released", move || {
        b.get(Format::DIB)
    });
    assert_eq!(got.unwrap(), b"late");
    owner.finish();
}

/// An item larger than a pipe's buffers crosses processes whole; one byte
/// over the board's limit is `TooLarge` and leaves the item as it was.
#[test]
fn a_large_item_crosses_processes_and_a_larger_one_is_too_large() {
    let (_dir, ns) = new_ns();
    let size = 4usize << 20;
    let b = BoardOptions::new()
        .namespace(&ns)
        .max_size(size)
        .open("big")
        .unwrap();
    let mut big = Kid::start(&ns, "big", &["big", "--size", &size.to_string()]);
    assert_eq!(big.next("SEQ "), "SEQ 1");
    big.finish();
    assert!(b.get(Format::DIB).unwrap() == pattern(size, 7));
    let mut over = Kid::start(&ns, "big", &["big", "--size", &(size + 1).to_string()]);
    assert_eq!(over.next("ERROR "), "ERROR too-large");
    over.finish();
    assert_eq!(b.sequence().unwrap(), 1);
    assert_eq!(b.get(Format::DIB).unwrap().len(), size);
}

/// An owner whose item another process replaces stops serving (its
/// renderer is dropped) and leaves the new item alone.
#[test]
fn an_owner_whose_item_another_process_replaces_stops_serving() {
    let (_dir, ns) = new_ns();
    let b = board(&ns, "rep");
    let mut t = b.begin();
    t.empty();
    t.promise(Format::DIB).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    // The renderer (its sender with it) is dropped once the item is
    // replaced: the receiver sees the channel close.
    let owner = t
        .close_with_renderer(move |_| {
            let _ = &tx;
            Some(vec![1])
        })
        .unwrap();
    let mut setter = Kid::start(&ns, "setter", &["rep"]);
    setter.next("SEQ ");
    setter.finish();
    assert_eq!(
        rx.recv_timeout(LIMIT),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    assert!(!owner.is_current().unwrap());
    drop(owner);
    assert_eq!(b.sequence().unwrap(), 2);
    assert_eq!(b.get_text().unwrap(), "from child");
    assert!(!b.is_available(Format::DIB).unwrap());
}

/// Garbage written into the board's shared memory (through the shared
/// map that holds it) is `Decode` naming the board, here and in another
/// process, never a panic or a hang; a promise naming a live process
/// without a render endpoint is `NotFound`; removing the board is the way
/// out.
#[test]
fn garbage_in_the_boards_shared_memory_is_a_decode_error_never_a_panic() {
    let (_dir, ns) = new_ns();
    let opts = BoardOptions::new().namespace(&ns).max_size(4096);
    let b = opts.open("junk").unwrap();
    b.set_text("fine").unwrap();
    let mut raw = SharedMapOptions::new()
        .namespace(&ns)
        .open("clip/junk")
        .unwrap();
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
    let out = Kid::start(&ns, "reader", &["junk", "1"]).finish();
    assert!(out.contains("ERROR decode"), "{out}");
    assert!(out.contains("GET 1 ERROR decode"), "{out}");

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
    c[48..52].copy_from_slice(&8u32.to_le_bytes()); // a format twice
    cases.push(c);
    cases.push(good[..good.len() - 1].to_vec()); // truncated
    cases.push(item(1, 0, 0, &[(8, false, &[0; 5000])])); // over max_size
    for (i, c) in cases.iter().enumerate() {
        raw.write(c).unwrap();
        let e = b.formats().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "case {i}: {e}");
        assert!(e.to_string().contains("junk"), "case {i}: {e}");
    }
    // The well-formed item reads back (the layout is the documented one).
    raw.write(&good).unwrap();
    assert_eq!(b.sequence().unwrap(), 5);
    assert_eq!(b.get(Format::DIB).unwrap(), [1, 2, 3]);
    // Random bytes over a real item: errors or values, never a panic or
    // a hang.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..100 {
        let mut c = good.clone();
        for _ in 0..1 + round % 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % c.len();
            c[at] = (x >> 32) as u8;
        }
        raw.write(&c).unwrap();
        let ns = ns.clone();
        bounded("a reader of a corrupt board", move || {
            let b = BoardOptions::new().namespace(&ns).open("junk").unwrap();
            let _ = b.formats();
            let _ = b.contents();
            for f in [1, 8, 13] {
                let _ = b.get(Format::from_id(f));
            }
        });
    }
    // A promise of this (live) process, whose render endpoint does not
    // exist: not available, at once.
    raw.write(&item(6, std::process::id(), 0x1234, &[(8, true, &[])]))
        .unwrap();
    let e = bounded("a get of a promise without an endpoint", {
        let ns = ns.clone();
        move || board(&ns, "junk").get(Format::DIB)
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // The way out, once no process has it open: remove it and open it
    // again.
    drop((b, raw));
    opts.remove("junk").unwrap();
    let b = opts.open("junk").unwrap();
    assert!(!b.existed());
    assert_eq!(b.set_text("again").unwrap(), 1);
}

/// Hostile peers on an owner's render pipe (idle after the hello, half a
/// request, garbage, bad flags) are dropped after the owner's deadlines
/// while a reader in another process is served; a well-formed peer asking
/// wrong things gets error answers and stays.
#[test]
fn hostile_peers_on_the_render_pipe_are_dropped_and_readers_are_served() {
    let (_dir, ns) = new_ns();
    let limits = Limits::new()
        .handshake_timeout(Duration::from_millis(300))
        .stall_timeout(Duration::from_millis(300));
    let b = BoardOptions::new()
        .namespace(&ns)
        .max_size(1 << 20)
        .limits(limits)
        .open("h")
        .unwrap();
    let mut t = b.begin();
    t.empty();
    t.promise(Format::DIB).unwrap();
    let owner = t
        .close_with_renderer(|f| Some(format!("good {}", f.id()).into_bytes()))
        .unwrap();
    let seq = owner.sequence();
    let pipe = render_pipe(&ns, "h");
    let out = bounded("the hostile peers", move || {
        let connect = || {
            let mut s = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&pipe)
                .unwrap();
            let mut h = [0u8; 16];
            s.read_exact(&mut h).unwrap();
            assert_eq!(&h[..8], RENDER_MAGIC);
            assert_eq!((h[8], h[9]), (1, 0), "version 1, status ok");
            assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 1 << 20);
            s
        };
        let idle = connect();
        let mut half = connect();
        half.write_all(&render_request(8, seq)[..7]).unwrap();
        let mut garbage = connect();
        garbage.write_all(&[0xff; 16]).unwrap();
        let mut flags = connect();
        let mut bad = render_request(8, seq);
        bad[2] = 1;
        flags.write_all(&bad).unwrap();
        // While they are open, a reader in another process is served.
        let out = Kid::start(&ns, "reader", &["h", "8"]).finish();
        for (what, mut s) in [
            ("garbage", garbage),
            ("bad flags", flags),
            ("idle", idle),
            ("half a request", half),
        ] {
            assert!(read_to_end(&mut s), "the {what} peer's pipe failed");
        }
        // A well-formed peer asking wrong things.
        let mut s: File = connect();
        let mut r = [0u8; 16];
        s.write_all(&render_request(0xC123, seq)).unwrap();
        s.read_exact(&mut r).unwrap();
        assert_eq!(r, render_response(2, 2, 0xC123, 0), "not promised");
        s.write_all(&render_request(8, seq + 7)).unwrap();
        s.read_exact(&mut r).unwrap();
        assert_eq!(r, render_response(2, 1, 8, 0), "stale sequence");
        s.write_all(&render_request(8, seq)).unwrap();
        s.read_exact(&mut r).unwrap();
        assert_eq!(r, render_response(1, 0, 8, 6));
        let mut body = [0u8; 6];
        s.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"good 8");
        out
    });
    assert!(
        out.contains(&format!("GET 8 {}", digest(b"good 8"))),
        "{out}"
    );
    drop(owner);
    assert_eq!(b.get(Format::DIB).unwrap(), b"good 8");
}

/// The async listener (`clipboard::tokio::BoardChanges`) is woken by a
/// change another process makes.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn an_async_listener_is_woken_by_another_process() {
    use futures_util::StreamExt as _;
    let (_dir, ns) = new_ns();
    let b = board(&ns, "async");
    let mut changes = ipckit::clipboard::tokio::BoardChanges::new(&b).unwrap();
    let mut setter = Kid::start(&ns, "setter", &["async"]);
    setter.next("SEQ ");
    let pid = setter.pid();
    setter.finish();
    let c = tokio::time::timeout(LIMIT, changes.next())
        .await
        .expect("a change within the limit")
        .expect("the stream goes on")
        .unwrap();
    let reg = Format::register_in(&ns, "ipckit/test").unwrap();
    assert_eq!((c.sequence, c.owner), (1, Some(pid)));
    assert_eq!(c.formats, [Format::UNICODE_TEXT, reg]);
}
