//! Sync objects on Windows: the system's named mutexes, events and
//! semaphores (`CreateMutexW`, `CreateEventW`, `CreateSemaphoreW`). Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! The two-process tests re-run this test executable as their child (the
//! environment variable [`CHILD_ENV`] names the child's role).
#![cfg(windows)]

mod windows_support;

use windows_support::c_peer;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::sync::{EventOptions, MutexOptions, SemaphoreOptions};
use ipckit::{ErrorKind, Namespace};

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_SYNC_CHILD";
/// How long any child, or any wait for what a child does, may take before
/// the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn fresh_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

/// Start this executable running only `test` as the child `role`, in the
/// namespace `ns`.
fn spawn(test: &str, role: &str, ns: &Namespace) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, role)
        .env("IPCKIT_NAMESPACE", ns.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for `child` to exit (at most [`CHILD_LIMIT`]); panics if it fails
/// or does not finish.
fn finish(child: Child, what: &str) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(CHILD_LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {CHILD_LIMIT:?}"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mutex_create_open_existed() {
    let (_dir, ns) = fresh_ns();
    let o = MutexOptions::new().namespace(&ns);
    assert_eq!(o.open("m").unwrap_err().kind(), ErrorKind::NotFound);
    let a = o.create("m").unwrap();
    assert!(!a.existed());
    assert_eq!(o.create("m").unwrap_err().kind(), ErrorKind::AlreadyExists);
    let b = o.open("m").unwrap();
    assert!(b.existed());
    assert!(o.open_or_create("m").unwrap().existed());
    assert!(!o.open_or_create("fresh").unwrap().existed());
    // Another namespace is another name.
    let (_d2, other) = fresh_ns();
    assert_eq!(
        MutexOptions::new()
            .namespace(&other)
            .open("m")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // Bad modes are refused.
    assert_eq!(
        o.clone().mode(0o700).create("x").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    // One object: held through `a`, another thread's handle cannot take it.
    let held = a.lock().unwrap();
    assert!(!held.is_abandoned());
    let t = std::thread::spawn(move || {
        let r = b.try_lock().unwrap().is_some();
        let timed_out = b
            .lock_timeout(Duration::from_millis(20))
            .map(|_| ())
            .unwrap_err()
            .kind();
        (r, timed_out)
    });
    assert_eq!(t.join().unwrap(), (false, ErrorKind::Timeout));
    drop(held);
    let c = o.open("m").unwrap();
    let t = std::thread::spawn(move || c.try_lock().unwrap().is_some());
    assert!(t.join().unwrap());
}

#[test]
fn native_names_are_used_as_is() {
    let (_dir, ns) = fresh_ns();
    let name = format!("Local\\ipckit-sync-test-{}", std::process::id());
    let a = MutexOptions::new().namespace(&ns).create(&name).unwrap();
    // Any namespace reaches the same system object.
    let (_d2, other) = fresh_ns();
    let b = MutexOptions::new().namespace(&other).open(&name).unwrap();
    let held = a.lock().unwrap();
    let t = std::thread::spawn(move || b.try_lock().unwrap().is_some());
    assert!(!t.join().unwrap());
    drop(held);
}

#[test]
fn child_dies_holding_the_mutex_parent_gets_abandoned() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "locker");
        let m = MutexOptions::new().open("held").expect("child: open");
        let lock = m.lock().expect("child: lock");
        assert!(!lock.is_abandoned());
        // Exit without unlocking: the owning thread ends, the system
        // abandons the mutex.
        std::mem::forget(lock);
        std::process::exit(0);
    }
    let (_dir, ns) = fresh_ns();
    let m = MutexOptions::new().namespace(&ns).create("held").unwrap();
    finish(
        spawn(
            "child_dies_holding_the_mutex_parent_gets_abandoned",
            "locker",
            &ns,
        ),
        "locker child",
    );
    let lock = m.lock_timeout(CHILD_LIMIT).unwrap();
    assert!(lock.is_abandoned(), "{lock:?}");
    drop(lock);
    // Usable as normal afterwards.
    let again = m.lock_timeout(CHILD_LIMIT).unwrap();
    assert!(!again.is_abandoned());
}

#[test]
fn event_create_open_and_state() {
    let (_dir, ns) = fresh_ns();
    let o = EventOptions::new().namespace(&ns);
    assert_eq!(o.open("e").unwrap_err().kind(), ErrorKind::NotFound);
    let auto = o.create("e").unwrap();
    assert_eq!(o.create("e").unwrap_err().kind(), ErrorKind::AlreadyExists);
    // An opener gets the creator's mode and state, not its own options'.
    let other = o.clone().manual_reset(true).open("e").unwrap();
    assert!(!other.is_manual_reset());
    assert!(!auto.is_set());
    assert_eq!(
        auto.wait_timeout(Duration::from_millis(10))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    // Auto reset: one wait consumes it; is_set does not.
    other.set();
    assert!(auto.is_set());
    assert!(auto.is_set());
    assert!(auto.try_wait());
    assert!(!other.try_wait());
    assert!(!auto.is_set());

    // Manual reset, initially set: stays set until reset.
    let manual = o
        .clone()
        .manual_reset(true)
        .initially_set(true)
        .open_or_create("m")
        .unwrap();
    assert!(manual.is_manual_reset());
    assert!(manual.is_set());
    manual.wait().unwrap();
    assert!(manual.try_wait());
    manual.reset();
    assert!(!manual.try_wait());
    // open_or_create of an existing one keeps its mode.
    assert!(o.open_or_create("m").unwrap().is_manual_reset());
}

#[test]
fn event_set_in_child_releases_parent() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "setter");
        let e = EventOptions::new().open("go").expect("child: open");
        e.set();
        return;
    }
    let (_dir, ns) = fresh_ns();
    let e = EventOptions::new().namespace(&ns).create("go").unwrap();
    assert!(!e.is_set());
    let child = spawn("event_set_in_child_releases_parent", "setter", &ns);
    e.wait_timeout(CHILD_LIMIT).unwrap();
    finish(child, "setter child");
    // Auto reset: the wait consumed it.
    assert!(!e.is_set());
}

#[test]
fn semaphore_counts_and_max() {
    let (_dir, ns) = fresh_ns();
    let o = SemaphoreOptions::new().namespace(&ns);
    assert_eq!(o.open("s").unwrap_err().kind(), ErrorKind::NotFound);
    for bad in [o.clone().max(0), o.clone().initial(3).max(2)] {
        assert_eq!(
            bad.create("bad").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    let s = o.clone().initial(2).max(3).create("s").unwrap();
    assert_eq!(
        o.clone().initial(2).max(3).create("s").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let t = o.open("s").unwrap();
    assert_eq!((s.count(), s.max()), (2, 3));
    assert_eq!((t.count(), t.max()), (2, 3));
    assert!(s.try_acquire());
    assert!(t.try_acquire());
    assert!(!s.try_acquire());
    assert_eq!(t.count(), 0);
    assert_eq!(
        s.acquire_timeout(Duration::from_millis(10))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    assert_eq!(t.release(1).unwrap(), 0);
    // Past the maximum: Full, nothing changes.
    assert_eq!(s.release(3).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(s.count(), 1);
    assert_eq!(s.release(2).unwrap(), 1);
    assert_eq!(t.count(), 3);
    s.acquire().unwrap();
    assert_eq!(t.count(), 2);
    // open_or_create of an existing one keeps its counts; the default
    // maximum is the largest Windows allows.
    assert_eq!(o.open_or_create("s").unwrap().max(), 3);
    assert_eq!(o.create("big").unwrap().max(), i32::MAX as u32);
}

// ------------------------------------------- whose objects are opened

/// An object widened on purpose (a mode with group or other bits: its
/// DACL grants Everyone) is refused by an open or `open_or_create` with
/// the default mode, and taken when the opener widens too.
#[test]
fn a_widened_object_is_refused_unless_the_opener_widens() {
    let (_dir, ns) = fresh_ns();
    let wide = MutexOptions::new().namespace(&ns).mode(0o666);
    let _m = wide.create("wide").unwrap();
    let strict = MutexOptions::new().namespace(&ns);
    let e = strict.open_or_create("wide").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("S-1-1-0"), "names the grant: {e}");
    assert!(wide.open_or_create("wide").unwrap().existed());
    assert!(strict.clone().mode(0o660).open_or_create("wide").is_ok());
    let e = strict.open("wide").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(wide.open("wide").is_ok());
    // An object of this user granting nobody else is taken as before.
    let _own = strict.create("own").unwrap();
    assert!(strict.open_or_create("own").unwrap().existed());

    let ev = EventOptions::new().namespace(&ns);
    let _e = ev.clone().mode(0o606).create("ev").unwrap();
    assert_eq!(
        ev.open_or_create("ev").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert!(ev.mode(0o666).open_or_create("ev").is_ok());
}

/// A section and a mutex whose owner is not this user (what another
/// user's objects look like; `scripts/windows/foreign_owner.c` makes them
/// with the Users group as owner and a DACL that lets everyone in) are
/// refused, whatever mode the opener accepts.
#[test]
fn objects_another_owner_made_are_refused() {
    use std::io::{BufRead as _, Write as _};
    let Some(peer) = c_peer("foreign_owner") else {
        return;
    };
    let section = format!("Local\\ipckit-foreign-section-{}", std::process::id());
    let mutex = format!("Local\\ipckit-foreign-mutex-{}", std::process::id());
    let mut child = Command::new(&peer)
        .args([&section, &mutex])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx
        .recv_timeout(CHILD_LIMIT)
        .expect("the C peer said nothing");
    assert_eq!(ready.trim(), "ready", "the C peer made its objects");

    let (_dir, ns) = fresh_ns();
    for mode in [0o600, 0o666] {
        let opts = ipckit::shm::MappingOptions::new().namespace(&ns).mode(mode);
        let e = opts.open(&section).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("owner"), "{e}");
        let e = opts.open_or_create(&section, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        let m = MutexOptions::new().namespace(&ns).mode(mode);
        let e = m.open_or_create(&mutex).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        let e = m.open(&mutex).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    finish(child, "the C peer");
}
