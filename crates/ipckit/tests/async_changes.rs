//! The async change streams across real processes: `map::tokio::Changes`,
//! `clipboard::tokio::BoardChanges` and `dde::tokio::Updates`, fed by a blocking
//! peer process, consumed by the async side in the test.
//!
//! Children are this test binary re-executed in a role (`child_role`);
//! every wait is bounded by [`DEADLINE`].
#![cfg(feature = "tokio")]

mod support;

use futures_util::StreamExt as _;

use ipckit::clipboard::{BoardOptions, Format};
use ipckit::dde::{ConversationOptions, DdeServerOptions, Link};
use ipckit::map::SharedMapOptions;
use ipckit::{ErrorKind, Namespace};
use support::{say, TestNs, DEADLINE};

#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Write `1`..=ARG1 into map ARG0, then say `DONE`.
        "map-writer" => {
            let mut m = SharedMapOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .unwrap();
            let n: u32 = args[1].parse().unwrap();
            for i in 1..=n {
                m.write_text(&i.to_string()).unwrap();
            }
            say("DONE");
        }
        // Set board ARG0's text to `1`..=ARG1, then say `DONE`.
        "clip-setter" => {
            let b = BoardOptions::new().namespace(&ns).open(&args[0]).unwrap();
            let n: u32 = args[1].parse().unwrap();
            for i in 1..=n {
                b.set_text(&i.to_string()).unwrap();
            }
            say("DONE");
        }
        // A stream over map ARG0 polled once (its thread waiting), then
        // dropped: `GONE` once no stream thread is left in this process.
        "map-stream-dropped" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let m = SharedMapOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .unwrap();
            let mut changes = ipckit::map::tokio::Changes::new(m).unwrap();
            rt.block_on(async {
                let next =
                    tokio::time::timeout(std::time::Duration::from_millis(50), changes.next())
                        .await;
                assert!(next.is_err(), "no change was written");
            });
            let threads = || stream_threads("ipckit-map-stre");
            say(&format!("THREADS {}", threads()));
            drop(changes);
            support::wait_until(DEADLINE, "the stream's thread ended", || threads() == 0);
            say("GONE");
        }
        // DDE server ARG0 with topic `t`, item `x`; stdin: `set V` sets
        // `x` to V (says `SET`); exits (and the server goes) on `quit`.
        "dde-server" => {
            let s = DdeServerOptions::new()
                .namespace(&ns)
                .topic("t")
                .create(&args[0])
                .unwrap();
            s.set_item("t", "x", Format::TEXT, b"0").unwrap();
            say("READY");
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                if let Some(v) = line.strip_prefix("set ") {
                    s.set_item("t", "x", Format::TEXT, v.as_bytes()).unwrap();
                    say("SET");
                } else if line == "quit" {
                    break;
                }
            }
            drop(s);
            say("QUIT");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Threads of this process whose name starts with `prefix`.
fn stream_threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with(prefix))
        .count()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn next<S: futures_util::Stream + Unpin>(what: &str, s: &mut S) -> Option<S::Item> {
    tokio::time::timeout(DEADLINE, s.next())
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

// ------------------------------------------------------------------ map

#[test]
fn map_stream_gets_every_version_delivered_or_counted_and_ends_on_the_latest() {
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let opts = SharedMapOptions::new().namespace(&t.ns);
    let m = opts.create("m").unwrap();
    let mut changes = ipckit::map::tokio::Changes::new(m).unwrap();
    let mut writer = t.start("map-writer", &["m", "300"]);
    runtime().block_on(async {
        let (mut delivered, mut skipped, mut last_version) = (0u64, 0u64, 0u64);
        loop {
            let c = next("a change of the map", &mut changes)
                .await
                .unwrap()
                .unwrap();
            assert!(c.version > last_version, "versions only go up");
            assert_eq!(
                c.version - last_version - 1,
                c.skipped,
                "skipped counts the gap"
            );
            last_version = c.version;
            delivered += 1;
            skipped += c.skipped;
            if c.content == b"300" {
                assert_eq!(c.version, 300);
                break;
            }
        }
        assert_eq!(delivered + skipped, 300);
    });
    writer.stdout_line("DONE");
}

#[test]
fn map_stream_thread_stops_when_the_stream_is_dropped() {
    let t = TestNs::new().remove_shm_on_drop(&["m"]);
    let _m = SharedMapOptions::new()
        .namespace(&t.ns)
        .create("m")
        .unwrap();
    let mut p = t.start("map-stream-dropped", &["m"]);
    assert_eq!(p.stdout_line("THREADS"), "THREADS 1");
    p.stdout_line("GONE");
    p.wait_success(DEADLINE);
}

// ------------------------------------------------------------ clipboard

#[test]
fn clipboard_stream_sees_the_latest_item_set_by_another_process() {
    let t = TestNs::new();
    let board = BoardOptions::new().namespace(&t.ns).open("b").unwrap();
    let mut changes = ipckit::clipboard::tokio::BoardChanges::new(&board).unwrap();
    let mut setter = t.start("clip-setter", &["b", "50"]);
    runtime().block_on(async {
        let mut last = 0;
        while last < 50 {
            let c = next("a change of the board", &mut changes)
                .await
                .unwrap()
                .unwrap();
            assert!(c.sequence > last, "sequences only go up");
            assert_eq!(c.owner, Some(setter.pid()));
            assert!(c.formats.contains(&Format::UNICODE_TEXT), "{:?}", c.formats);
            last = c.sequence;
        }
        assert_eq!(last, 50);
    });
    setter.stdout_line("DONE");
    assert_eq!(board.get_text().unwrap(), "50");
    drop(changes);
    BoardOptions::new().namespace(&t.ns).remove("b").unwrap();
}

// ------------------------------------------------------------------ DDE

#[test]
fn dde_update_stream_follows_a_hot_link_then_ends_with_peer_gone() {
    let t = TestNs::new();
    let mut server = t.talk("dde-server", &["svc"]);
    server.stdout_line("READY");
    let c = ConversationOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect("svc", "t")
        .unwrap();
    let mut a = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    assert!(a.try_recv().unwrap().is_none(), "nothing changed yet");
    let mut updates = ipckit::dde::tokio::Updates::new(a).unwrap();
    runtime().block_on(async {
        for v in ["1", "2", "3"] {
            server.tell(&format!("set {v}"));
            server.stdout_line("SET");
            let u = next("an update", &mut updates).await.unwrap().unwrap();
            assert_eq!((u.item.as_str(), u.format), ("x", Format::TEXT));
            assert_eq!(u.data.as_deref(), Some(v.as_bytes()));
        }
        server.tell("quit");
        server.stdout_line("QUIT");
        let end = next("the end of the link", &mut updates)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(end.kind(), ErrorKind::PeerGone);
        assert!(next("the end of the stream", &mut updates).await.is_none());
    });
}

#[test]
fn dde_update_stream_on_a_warm_link_and_after_unadvise_just_ends() {
    let t = TestNs::new();
    let mut server = t.talk("dde-server", &["svc"]);
    server.stdout_line("READY");
    let c = ConversationOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect("svc", "t")
        .unwrap();
    let mut updates =
        ipckit::dde::tokio::Updates::new(c.advise("x", Format::TEXT, Link::Warm).unwrap()).unwrap();
    runtime().block_on(async {
        server.tell("set 7");
        server.stdout_line("SET");
        let u = next("a warm notice", &mut updates).await.unwrap().unwrap();
        assert_eq!(u.data, None);
        assert_eq!(c.request("x", Format::TEXT).unwrap(), b"7");
        c.unadvise("x").unwrap();
        assert!(next("the end after unadvise", &mut updates).await.is_none());
    });
    // The conversation stays usable.
    assert_eq!(c.request("x", Format::TEXT).unwrap(), b"7");
}
