//! The shared map on Windows: a section, the named mutex `S!mutex` and one
//! event per watcher (see `ipckit::map`). Run for `x86_64-pc-windows-gnu`
//! under Wine by `scripts/test-windows.sh`.
//!
//! Two-process tests re-run this test executable as their children (the
//! environment variable [`CHILD_ENV`] names a child's role); the interop
//! test runs the plain Win32 C program `scripts/windows/map_peer.c`, which
//! makes a mapping and a mutex that ipckit opens through `shm` and `sync`.
#![cfg(windows)]

mod windows_support;

use windows_support::c_peer;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::map::{SharedMapOptions, Snapshot};
use ipckit::shm::{Mapping, MappingOptions, HEADER_LEN};
use ipckit::sync::{Event, EventOptions, MutexOptions, SemaphoreOptions};
use ipckit::{ErrorKind, Namespace};

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_MAP_CHILD";
/// How long any child, or any wait, may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn fresh_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

/// Start this test executable as a child running `test` in `role`, in the
/// namespace `ns`, with its stdout piped.
fn spawn(test: &str, role: &str, ns: &Namespace) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, role)
        .env("IPCKIT_NAMESPACE", ns.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for `child` to exit (at most [`LIMIT`]); panics if it does not.
fn output(child: Child, what: &str) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
        .unwrap()
}

/// Wait for `child` to exit successfully (at most [`LIMIT`]) and return its
/// stdout.
fn finish(child: Child, what: &str) -> String {
    let out = output(child, what);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The lines `child` prints, as they come, on a channel (the child keeps
/// its other pipes).
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait (at most [`LIMIT`]) for a line starting with `prefix`; return it.
fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let l = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("no line {prefix:?} within {LIMIT:?} ({e})"));
        if l.starts_with(prefix) {
            return l;
        }
    }
}

#[test]
fn create_open_read_write() {
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns).max_size(8);
    assert_eq!(o.open("m").unwrap_err().kind(), ErrorKind::NotFound);
    let mut a = o.create("m").unwrap();
    assert!(!a.existed());
    assert_eq!(a.name(), "m");
    assert_eq!(a.max_size(), 8);
    assert_eq!(a.version().unwrap(), 0);
    assert!(a.content().is_empty());
    assert_eq!(o.create("m").unwrap_err().kind(), ErrorKind::AlreadyExists);
    // An opener gets the creator's max_size and content.
    assert_eq!(a.write_text("hello").unwrap(), 1);
    let mut b = SharedMapOptions::new()
        .namespace(&ns)
        .max_size(1000)
        .open_or_create("m")
        .unwrap();
    assert!(b.existed());
    assert_eq!(b.max_size(), 8);
    assert_eq!(b.text(), "hello");
    // Over max_size: refused, nothing changes.
    let e = b.write(b"123456789").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(e.needed(), Some(9));
    assert_eq!(
        a.snapshot().unwrap(),
        Snapshot {
            content: b"hello".to_vec(),
            version: 1
        }
    );
    assert_eq!(b.write(b"12345678").unwrap(), 2);
    // `a`'s local copy moves only when it reads.
    assert_eq!(a.content(), b"hello");
    assert_eq!(a.read().unwrap().content, b"12345678");
    assert_eq!(a.text(), "12345678");
    // Auto-synchronise off: local changes stay local until turned on.
    a.set_auto_sync(false).unwrap();
    assert!(!a.auto_sync());
    assert_eq!(a.set_content(b"local").unwrap(), None);
    assert_eq!(a.version().unwrap(), 2);
    assert_eq!(
        a.set_content(b"far too long").unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    a.set_auto_sync(true).unwrap();
    assert_eq!(b.snapshot().unwrap().content, b"local");
    assert_eq!(b.version().unwrap(), 3);
    assert_eq!(a.set_content(b"auto").unwrap(), Some(4));
    // Bad sizes are refused.
    assert_eq!(
        SharedMapOptions::new()
            .namespace(&ns)
            .max_size(0)
            .create("zero")
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // A section of another kind is not a map.
    let _raw = MappingOptions::new()
        .namespace(&ns)
        .create("plain", 64)
        .unwrap();
    assert_eq!(o.open("plain").unwrap_err().kind(), ErrorKind::InvalidInput);
    // The map vanishes with its last handle.
    drop((a, b));
    assert_eq!(o.open("m").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn two_watchers_in_one_process_are_both_woken() {
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns);
    let mut w = o.create("m").unwrap();
    let watchers: Vec<_> = (0..2)
        .map(|_| {
            let mut h = o.open("m").unwrap();
            std::thread::spawn(move || h.wait_change(Some(LIMIT)).unwrap())
        })
        .collect();
    w.write(b"to all").unwrap();
    for t in watchers {
        let c = t.join().unwrap();
        assert_eq!(
            (c.content.as_slice(), c.version, c.skipped),
            (&b"to all"[..], 1, 0)
        );
    }
    // Writes while nobody waits are reported once, as skipped versions.
    let mut late = o.open("m").unwrap();
    w.write(b"2").unwrap();
    w.write(b"3").unwrap();
    let c = late.wait_change(Some(LIMIT)).unwrap();
    assert_eq!(
        (c.content.as_slice(), c.version, c.skipped),
        (&b"3"[..], 3, 1)
    );
    assert_eq!(
        late.wait_change(Some(Duration::from_millis(20)))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    // A writer is not woken by its own write.
    assert_eq!(
        w.wait_change(Some(Duration::from_millis(20)))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    // watch() yields the same changes.
    w.write(b"4").unwrap();
    assert_eq!(late.watch().next().unwrap().unwrap().content, b"4");
}

#[test]
fn on_change_reports_other_handles_writes() {
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns);
    let mut a = o.create("m").unwrap();
    let (tx, rx) = mpsc::channel();
    let sub = a
        .on_change(move |c| {
            let _ = tx.send(c.content);
        })
        .unwrap();
    // Its own writes are not reported back to it...
    a.write(b"mine").unwrap();
    // ...another handle's are.
    o.open("m").unwrap().write(b"theirs").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"theirs");
    drop(sub);
    assert!(rx.recv_timeout(Duration::from_millis(20)).is_err());
}

/// Roles of the children of the tests below.
fn child(role: &str) {
    let o = SharedMapOptions::new();
    match role {
        "writer" => {
            let mut m = o.open("m").expect("child: open");
            assert!(m.existed());
            m.write_text("set by the child").unwrap();
        }
        "watcher" => {
            let mut m = o.open("m").expect("child: open");
            let ready = SemaphoreOptions::new().open("ready").expect("child: ready");
            ready.release(1).unwrap();
            let c = m.wait_change(Some(LIMIT)).expect("child: wait");
            println!("got {} v{}", String::from_utf8_lossy(&c.content), c.version);
        }
        "dies-watching" => {
            let mut m = o.open("m").expect("child: open");
            let e = m.wait_change(Some(Duration::from_millis(1))).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout);
            // Exit without dropping the handle: its slot stays taken.
            std::process::exit(0);
        }
        "dies-writing" => {
            // Take the map's mutex, start a write the way a writer does
            // (odd sequence, scribble in the unused buffer), and die.
            let os = MappingOptions::new().os_name("m").unwrap();
            let raw = MappingOptions::new().open(&os).unwrap();
            let mutex = MutexOptions::new().open(&format!("{os}!mutex")).unwrap();
            let lock = mutex.lock_timeout(LIMIT).unwrap();
            let seq = raw.atomic_u64(HEADER_LEN + 8).unwrap();
            let v = seq.load(std::sync::atomic::Ordering::Acquire) / 2;
            seq.store(2 * v + 1, std::sync::atomic::Ordering::Release);
            let target = ((v + 1) % 2) as usize;
            raw.atomic_u64(HEADER_LEN + 24 + 8 * target)
                .unwrap()
                .store(64, std::sync::atomic::Ordering::Relaxed);
            let stride = 64; // max_size 64
            raw.write_at(HEADER_LEN + 64 + target * stride, &[0xee; 30])
                .unwrap();
            std::mem::forget(lock);
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// The async stream of changes (`map::tokio::Changes`) sees a write made
/// by another process, and the newest content after several.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_change_stream_sees_another_process_write() {
    use futures_util::StreamExt as _;
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child(&role);
    }
    let (_dir, ns) = fresh_ns();
    let m = SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    let mut changes = ipckit::map::tokio::Changes::new(m).unwrap();
    let c = spawn(
        "the_async_change_stream_sees_another_process_write",
        "writer",
        &ns,
    );
    let change = tokio::time::timeout(LIMIT, changes.next())
        .await
        .expect("no change within the limit")
        .expect("the stream ended")
        .unwrap();
    assert_eq!(change.content, b"set by the child");
    assert_eq!(change.version, 1);
    assert!(finish(c, "the writer child").contains("1 passed"));
}

#[test]
fn a_change_in_a_child_wakes_the_parent() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child(&role);
    }
    let (_dir, ns) = fresh_ns();
    let mut m = SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    let c = spawn("a_change_in_a_child_wakes_the_parent", "writer", &ns);
    let change = m.wait_change(Some(LIMIT)).unwrap();
    assert_eq!(change.content, b"set by the child");
    assert_eq!(change.version, 1);
    assert!(finish(c, "the writer child").contains("1 passed"));
}

#[test]
fn watchers_in_two_processes_are_both_woken() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child(&role);
    }
    let (_dir, ns) = fresh_ns();
    let mut m = SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    let test = "watchers_in_two_processes_are_both_woken";
    // Each child says it has the map open on this semaphore.
    let ready = SemaphoreOptions::new()
        .namespace(&ns)
        .create("ready")
        .unwrap();
    let kids: Vec<Child> = (0..2).map(|_| spawn(test, "watcher", &ns)).collect();
    for _ in &kids {
        ready.acquire_timeout(LIMIT).unwrap();
    }
    m.write_text("broadcast").unwrap();
    for c in kids {
        let out = finish(c, "a watcher child");
        assert!(out.contains("got broadcast v1\n"), "{out}");
    }
}

/// The tokens in the watcher table's slots in use, read through the raw
/// section.
fn slot_tokens(ns: &Namespace, max_size: usize) -> Vec<u64> {
    let os = MappingOptions::new().namespace(ns).os_name("m").unwrap();
    let raw: Mapping = MappingOptions::new().open(&os).unwrap();
    let table = HEADER_LEN + 64 + 2 * max_size.div_ceil(8) * 8;
    (0..64)
        .map(|i| {
            raw.atomic_u64(table + 8 * i)
                .unwrap()
                .load(std::sync::atomic::Ordering::Acquire)
        })
        .filter(|t| *t != 0)
        .collect()
}

/// How many of the watcher table's slots are in use.
fn slots_in_use(ns: &Namespace, max_size: usize) -> usize {
    slot_tokens(ns, max_size).len()
}

#[test]
fn a_write_signals_every_registered_watcher() {
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns).max_size(8);
    let mut w = o.create("m").unwrap();
    let mut a = o.open("m").unwrap();
    let mut b = o.open("m").unwrap();
    for h in [&mut a, &mut b] {
        let e = h.wait_change(Some(Duration::from_millis(1))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
    // Each registered handle has its event `S!w.<token>`, not set yet.
    let tokens = slot_tokens(&ns, 8);
    assert_eq!(tokens.len(), 2);
    let os = MappingOptions::new().namespace(&ns).os_name("m").unwrap();
    let events: Vec<Event> = tokens
        .iter()
        .map(|t| {
            EventOptions::new()
                .open(&format!("{os}!w.{t:016x}"))
                .unwrap()
        })
        .collect();
    assert!(events.iter().all(|e| !e.is_set()));
    // One write sets every one of them (a waiter would wake)...
    w.write(b"x").unwrap();
    assert!(events.iter().all(|e| e.is_set()));
    // ...and each handle gets the change.
    assert_eq!(a.wait_change(Some(LIMIT)).unwrap().content, b"x");
    assert_eq!(b.wait_change(Some(LIMIT)).unwrap().content, b"x");
}

#[test]
fn a_dead_watchers_slot_is_reclaimed() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child(&role);
    }
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns).max_size(8);
    let mut m = o.create("m").unwrap();
    assert_eq!(slots_in_use(&ns, 8), 0);
    // A handle that waited holds a slot until dropped.
    let mut h = o.open("m").unwrap();
    assert!(h.wait_change(Some(Duration::from_millis(1))).is_err());
    assert_eq!(slots_in_use(&ns, 8), 1);
    drop(h);
    assert_eq!(slots_in_use(&ns, 8), 0);
    // A child that dies waiting leaves its slot taken...
    let c = spawn("a_dead_watchers_slot_is_reclaimed", "dies-watching", &ns);
    finish(c, "the watcher child");
    assert_eq!(slots_in_use(&ns, 8), 1);
    // ...until the next write finds its event gone.
    m.write(b"x").unwrap();
    assert_eq!(slots_in_use(&ns, 8), 0);
}

#[test]
fn watchers_beyond_the_table_still_see_every_change() {
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns).max_size(8);
    let mut w = o.create("m").unwrap();
    // 66 watching handles: 64 take the table's slots, 2 find it full.
    let mut handles: Vec<_> = (0..66).map(|_| o.open("m").unwrap()).collect();
    for h in &mut handles {
        let e = h.wait_change(Some(Duration::from_millis(1))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
    assert_eq!(slots_in_use(&ns, 8), 64);
    // One with a slot and the two without wait in threads; all see it.
    let waiting: Vec<_> = [0, 64, 65]
        .into_iter()
        .rev()
        .map(|i| {
            let mut h = handles.remove(i);
            std::thread::spawn(move || h.wait_change(Some(LIMIT)).unwrap())
        })
        .collect();
    w.write(b"all").unwrap();
    for t in waiting {
        let c = t.join().unwrap();
        assert_eq!((c.content.as_slice(), c.version), (&b"all"[..], 1));
    }
    // Those left behind see it too, without waiting.
    for h in &mut handles {
        assert_eq!(h.wait_change(Some(LIMIT)).unwrap().version, 1);
    }
    // Dropped handles give their slots back; a new watcher gets one.
    drop(handles);
    assert_eq!(slots_in_use(&ns, 8), 0);
}

#[test]
fn a_writer_that_dies_mid_write_leaves_the_content_intact() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child(&role);
    }
    let (_dir, ns) = fresh_ns();
    let o = SharedMapOptions::new().namespace(&ns).max_size(64);
    let mut m = o.create("m").unwrap();
    m.set_lock_timeout(LIMIT);
    m.write(b"stable").unwrap();
    let mut watcher = o.open("m").unwrap();
    let c = spawn(
        "a_writer_that_dies_mid_write_leaves_the_content_intact",
        "dies-writing",
        &ns,
    );
    finish(c, "the dying writer");
    // Readers still get the last published content, whole.
    assert_eq!(
        m.snapshot().unwrap(),
        Snapshot {
            content: b"stable".to_vec(),
            version: 1
        }
    );
    // The next writer gets the abandoned mutex and publishes normally.
    assert_eq!(m.write(b"repaired").unwrap(), 2);
    assert_eq!(
        m.snapshot().unwrap(),
        Snapshot {
            content: b"repaired".to_vec(),
            version: 2
        }
    );
    let c = watcher.wait_change(Some(LIMIT)).unwrap();
    assert_eq!((c.content.as_slice(), c.version), (&b"repaired"[..], 2));
    assert_eq!(m.write(b"again").unwrap(), 3);
}

#[test]
fn a_mapping_and_mutex_made_by_a_plain_win32_program() {
    let Some(peer) = c_peer("map_peer") else {
        return;
    };
    let name = format!("Local\\ipckit-test-map-{}", std::process::id());
    let mutex_name = format!("{name}-mutex");
    let mut child = Command::new(&peer)
        .args([&name, &mutex_name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    // The C program made both objects and holds the mutex.
    expect_line(&rx, "locked");
    let (_dir, ns) = fresh_ns();
    let map = MappingOptions::new().namespace(&ns).open(&name).unwrap();
    let mutex = MutexOptions::new()
        .namespace(&ns)
        .open(&mutex_name)
        .unwrap();
    assert!(mutex.try_lock().unwrap().is_none(), "C holds the mutex");
    writeln!(stdin, "release").unwrap();
    expect_line(&rx, "released");
    {
        let lock = mutex.lock_timeout(LIMIT).unwrap();
        assert!(!lock.is_abandoned());
        let mut b = [0u8; 6];
        map.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"from C");
        // While ipckit holds the mutex, the C program cannot take it.
        writeln!(stdin, "take").unwrap();
        expect_line(&rx, "busy");
        map.write_at(64, b"from Rust").unwrap();
    }
    // Released: the C program takes it, sees what was written under it,
    // and exits holding it.
    assert_eq!(expect_line(&rx, "got "), "got from Rust");
    let out = output(child, "the C peer");
    assert!(out.status.success(), "{out:?}");
    // The system abandons the mutex of a thread that ended holding it.
    let lock = mutex.lock_timeout(LIMIT).unwrap();
    assert!(lock.is_abandoned());
}
