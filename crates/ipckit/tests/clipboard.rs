//! The clipboard board across real processes: setters, owners (delayed
//! rendering), watchers are this test binary re-executed in a role
//! (`child_role`), the test process the other side. Every wait is
//! bounded; every child is killed and reaped on drop.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use ipckit::clipboard::{Board, BoardOptions, Format};
use ipckit::{ErrorKind, Namespace};
use support::{say, wait_until, within, TestNs, DEADLINE};

fn board(ns: &Namespace, name: &str) -> Board {
    BoardOptions::new().namespace(ns).open(name).unwrap()
}

fn test_ns(board: &str) -> TestNs {
    TestNs::new().remove_shm_on_drop(&[&format!("clip/{board}")])
}

/// Item `k` of the mixer: every format says `k`.
fn mixed(k: u64) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{k}\0").into_bytes(),
        vec![(k % 251) as u8; 1000 + k as usize],
    )
}

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    let b = board(&ns, &args[0]);
    match role.as_str() {
        // Set text and a registered format "ipckit/test"; print `SEQ n` and
        // `ID id`.
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
        // Set `--count` items, item k with TEXT "k" and DIB of k-bytes.
        "mixer" => {
            let n = support::flag_num(&args, "--count").unwrap();
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
        // Own an item: TEXT set, DIB and "ipckit/png" promised. The
        // renderer prints `RENDER <id>`. `release` on stdin drops the
        // owner (rendering the rest into the board); then exit.
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
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap() > 0 {
                if line.trim() == "release" {
                    drop(owner);
                    say("RELEASED");
                    return;
                }
                line.clear();
            }
        }
        // Own an item with DIB promised; the renderer announces itself and
        // never returns (a hung owner).
        "hung-owner" => {
            let mut t = b.begin();
            t.empty();
            t.promise(Format::DIB).unwrap();
            let _owner = t
                .close_with_renderer(|_| {
                    say("IN-RENDER");
                    std::thread::sleep(Duration::from_secs(120));
                    None
                })
                .unwrap();
            say("READY");
            std::thread::sleep(Duration::from_secs(120));
        }
        // Print `CHANGE <seq> <formats>` per change until sequence
        // `--until`, then `LAST <seq>`.
        "watcher" => {
            let until = support::flag_num(&args, "--until").unwrap();
            let mut w = b.watch().unwrap();
            say("WATCHING");
            loop {
                let c = w.next_timeout(Some(DEADLINE)).unwrap();
                let f: Vec<String> = c.formats.iter().map(|f| f.id().to_string()).collect();
                say(&format!("CHANGE {} {}", c.sequence, f.join(",")));
                if c.sequence >= until {
                    say(&format!("LAST {}", c.sequence));
                    return;
                }
            }
        }
        // Set DIB to `--size` bytes of a pattern; print `SEQ n`, or
        // `ERROR <kind>`.
        "big" => {
            let size = support::flag_num(&args, "--size").unwrap() as usize;
            let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            match b.set(Format::DIB, data) {
                Ok(seq) => say(&format!("SEQ {seq}")),
                Err(e) => say(&format!("ERROR {}", e.kind().as_str())),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn an_item_set_in_one_process_is_read_in_another_with_its_formats_owner_and_sequence() {
    let t = test_ns("cb");
    let b = board(&t.ns, "cb");
    assert_eq!(b.sequence().unwrap(), 0);
    assert_eq!(b.owner().unwrap(), None);
    b.set_text("first").unwrap();
    let mut child = t.start("setter", &["cb"]);
    let id: u32 = child.stdout_line("ID ")[3..].parse().unwrap();
    let seq: u64 = child.stdout_line("SEQ ")[4..].parse().unwrap();
    let pid = child.pid();
    child.wait_success(DEADLINE);
    // Registered in the child, the same id here.
    let reg = Format::register_in(&t.ns, "ipckit/test").unwrap();
    assert_eq!(reg.id(), id);
    assert_eq!(seq, 2, "one set here, one in the child");
    assert_eq!(b.sequence().unwrap(), 2);
    assert_eq!(b.owner().unwrap(), Some(pid));
    assert_eq!(b.formats().unwrap(), [Format::UNICODE_TEXT, reg]);
    assert!(b.is_available(reg).unwrap());
    assert!(
        !b.is_available(Format::TEXT).unwrap(),
        "the old item is gone whole"
    );
    assert_eq!(b.get(reg).unwrap(), b"registered bytes");
    assert_eq!(b.get_text().unwrap(), "from child");
    let e = b.get(Format::TEXT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("cb"), "{e}");
    // Another handle, opened after, sees the same.
    let again = board(&t.ns, "cb");
    assert!(again.existed());
    assert_eq!(again.contents().unwrap().data.len(), 2);
    let listed = ipckit::clipboard::list_in(&t.ns).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].sequence, listed[0].owner), (2, Some(pid)));
}

#[test]
fn readers_never_see_a_mix_of_two_items() {
    let t = test_ns("mix");
    let b = board(&t.ns, "mix");
    let mut child = t.start("mixer", &["mix", "--count", "300"]);
    let mut reads = 0;
    let mut last = 0;
    wait_until(DEADLINE, "the mixer set its last item", || {
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
        c.sequence == 300
    });
    child.stdout_line("DONE");
    child.wait_success(DEADLINE);
    assert!(reads > 0);
}

#[test]
fn a_promised_format_is_rendered_by_its_owner_on_demand_and_all_on_release() {
    let t = test_ns("lazy");
    let b = board(&t.ns, "lazy");
    let mut owner = t.talk("owner", &["lazy"]);
    let seq: u64 = owner.stdout_line("READY ")[6..].parse().unwrap();
    let png = Format::register_in(&t.ns, "ipckit/png").unwrap();
    assert_eq!(b.sequence().unwrap(), seq);
    assert_eq!(b.formats().unwrap(), [Format::TEXT, Format::DIB, png]);
    assert_eq!(b.contents().unwrap().promised, [Format::DIB, png]);
    // Rendered on demand, by the owner process.
    assert_eq!(b.get(Format::DIB).unwrap(), b"rendered-8");
    assert_eq!(owner.stdout_line("RENDER "), "RENDER 8");
    // Stored in the board: read again without the owner rendering again,
    // and the sequence number did not move.
    assert_eq!(
        b.contents().unwrap().data[1],
        (Format::DIB, b"rendered-8".to_vec())
    );
    assert_eq!(b.get(Format::DIB).unwrap(), b"rendered-8");
    assert_eq!(b.sequence().unwrap(), seq);
    // Released: the owner renders what is left into the board, then exits.
    owner.tell("release");
    let render = owner.stdout_line("RENDER ");
    assert_eq!(render, format!("RENDER {}", png.id()));
    owner.stdout_line("RELEASED");
    owner.wait_success(DEADLINE);
    assert_eq!(
        b.get(png).unwrap(),
        format!("rendered-{}", png.id()).as_bytes()
    );
    assert_eq!(b.formats().unwrap(), [Format::TEXT, Format::DIB, png]);
    assert!(b.contents().unwrap().promised.is_empty());
    assert_eq!(b.sequence().unwrap(), seq);
}

#[test]
fn an_owner_killed_while_rendering_makes_the_format_unavailable_never_a_hang() {
    let t = test_ns("dead");
    let ns = t.ns.clone();
    let mut owner = t.start("hung-owner", &["dead"]);
    owner.stdout_line("READY");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let b = BoardOptions::new()
            .namespace(&ns)
            .render_timeout(DEADLINE * 4)
            .open("dead")
            .unwrap();
        let _ = tx.send(b.get(Format::DIB));
    });
    owner.stdout_line("IN-RENDER");
    owner.kill();
    // Well before the render timeout: the reader saw the owner go.
    let got = rx.recv_timeout(DEADLINE).expect("the reader returned");
    reader.join().unwrap();
    let e = got.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("exited"), "{e}");
    // And a dead owner's promises are not listed.
    let b = board(&t.ns, "dead");
    assert!(b.formats().unwrap().is_empty());
    assert!(!b.is_available(Format::DIB).unwrap());
    assert_eq!(b.get(Format::DIB).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn an_owner_killed_before_any_request_leaves_its_promises_unavailable() {
    let t = test_ns("gone");
    let b = board(&t.ns, "gone");
    let mut owner = t.talk("owner", &["gone"]);
    owner.stdout_line("READY ");
    assert!(b.is_available(Format::DIB).unwrap());
    owner.kill();
    let got = within(DEADLINE, {
        let ns = t.ns.clone();
        move || board(&ns, "gone").get(Format::DIB)
    })
    .expect("get returned");
    assert_eq!(got.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(b.formats().unwrap(), [Format::TEXT]);
    assert_eq!(b.get_text().unwrap(), "plain");
    // The killed owner's render socket stays until its item is replaced.
    let sockets = || {
        std::fs::read_dir(t.ns.dir())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with(".clip-") && n.ends_with(".sock")
            })
            .count()
    };
    assert_eq!(sockets(), 1);
    b.set_text("next").unwrap();
    assert_eq!(sockets(), 0);
}

#[test]
fn a_hung_owner_is_a_timeout_within_the_render_timeout() {
    let t = test_ns("hung");
    let mut owner = t.start("hung-owner", &["hung"]);
    owner.stdout_line("READY");
    let b = BoardOptions::new()
        .namespace(&t.ns)
        .render_timeout(Duration::from_millis(300))
        .open("hung")
        .unwrap();
    let e = b.get(Format::DIB).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("render"), "{e}");
}

#[test]
fn a_watcher_in_another_process_is_told_of_changes_and_never_misses_the_latest() {
    let t = test_ns("w");
    let b = board(&t.ns, "w");
    let mut watcher = t.start("watcher", &["w", "--until", "50"]);
    watcher.stdout_line("WATCHING");
    for i in 0..50 {
        b.set_text(&format!("item {i}")).unwrap();
    }
    assert_eq!(watcher.stdout_line("LAST "), "LAST 50");
    watcher.wait_success(DEADLINE);
    let out = watcher.stdout_so_far();
    let seqs: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("CHANGE "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.contains("CHANGE 50 13,1"), "{out}");
}

#[test]
fn an_on_change_callback_is_called_for_sets_of_another_process() {
    let t = test_ns("cb2");
    let b = board(&t.ns, "cb2");
    let (tx, rx) = mpsc::channel();
    let sub = b.on_change(move |c| tx.send(c).unwrap()).unwrap();
    let mut child = t.start("setter", &["cb2"]);
    child.stdout_line("SEQ ");
    let pid = child.pid();
    child.wait_success(DEADLINE);
    let c = rx.recv_timeout(DEADLINE).expect("a change");
    assert_eq!((c.sequence, c.owner), (1, Some(pid)));
    assert_eq!(c.formats.len(), 2);
    drop(sub);
}

#[test]
fn items_of_64_mib_cross_processes_and_a_larger_one_is_too_large_and_changes_nothing() {
    let t = test_ns("big");
    let b = board(&t.ns, "big");
    assert_eq!(b.max_size(), ipckit::clipboard::DEFAULT_MAX_SIZE);
    let size = 64usize << 20;
    let out = t.run("big", &["big", "--size", &size.to_string()]);
    out.assert_success();
    assert_eq!(out.line("SEQ "), Some("1"));
    let data = b.get(Format::DIB).unwrap();
    assert_eq!(data.len(), size);
    assert!(data.iter().enumerate().all(|(i, v)| *v == (i % 253) as u8));
    drop(data);
    let out = t.run("big", &["big", "--size", &(size + 1).to_string()]);
    out.assert_success();
    assert_eq!(out.line("ERROR "), Some("too-large"));
    assert_eq!(b.sequence().unwrap(), 1);
    assert_eq!(b.get(Format::DIB).unwrap().len(), size);
}

#[test]
fn an_owner_whose_item_is_replaced_stops_serving_and_leaves_the_new_item_alone() {
    let t = test_ns("rep");
    let b = board(&t.ns, "rep");
    let mut tr = b.begin();
    tr.empty();
    tr.promise(Format::DIB).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    // The renderer is dropped (its sender with it) once the item is
    // replaced: the receiver sees the channel close.
    let owner = tr
        .close_with_renderer(move |_| {
            let _ = &tx;
            Some(vec![1])
        })
        .unwrap();
    let mut child = t.start("setter", &["rep"]);
    child.stdout_line("SEQ ");
    child.wait_success(DEADLINE);
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    assert!(!owner.is_current().unwrap());
    drop(owner);
    assert_eq!(b.sequence().unwrap(), 2);
    assert_eq!(b.get_text().unwrap(), "from child");
    assert!(!b.is_available(Format::DIB).unwrap());
}

#[test]
fn handles_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Board>();
    send_sync::<ipckit::clipboard::Owner>();
    send::<ipckit::clipboard::BoardWatch>();
    send::<ipckit::clipboard::Subscription>();
    send_sync::<BoardOptions>();
}
