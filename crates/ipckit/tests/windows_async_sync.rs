//! Async sync objects on Windows (`ipckit::sync::tokio`): futures waiting
//! on the system's named mutex, event and semaphore, against blocking users
//! in other processes. Run for `x86_64-pc-windows-gnu` under Wine by
//! `scripts/test-windows.sh` (with the `tokio` feature).
//!
//! The two-process tests re-run this test executable as their child (the
//! environment variable [`CHILD_ENV`] names the child's role).
#![cfg(all(windows, feature = "tokio"))]

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::sync::tokio::{Event as AsyncEvent, Mutex as AsyncMutex, Semaphore as AsyncSemaphore};
use ipckit::sync::{EventOptions, MutexOptions, SemaphoreOptions};
use ipckit::Namespace;

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_ASYNC_SYNC_CHILD";
/// How long any child, or any wait, may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);
/// How long a wait that must not finish is given before it is cancelled
/// (the test asserts what the cancellation leaves, not the time).
const CANCEL_AFTER: Duration = Duration::from_millis(100);

fn fresh_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

/// Start this executable running only `test` as the child `role`, in the
/// namespace `ns`, with its stdin and stdout piped.
fn spawn(test: &str, role: &str, ns: &Namespace) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture", "-q"])
        .env(CHILD_ENV, role)
        .env("IPCKIT_NAMESPACE", ns.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Read lines from the child's stdout until one equals `want` (at most
/// [`LIMIT`]).
fn expect_line(out: ChildStdout, want: &str) -> ChildStdout {
    let (tx, rx) = mpsc::channel();
    let want = want.to_string();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = tx.send(None);
                return;
            }
            if line.trim_end() == want {
                let _ = tx.send(Some(r.into_inner()));
                return;
            }
        }
    });
    rx.recv_timeout(LIMIT)
        .expect("the child said nothing in time")
        .expect("the child ended before saying it")
}

/// Wait for `child` to exit (at most [`LIMIT`]); panics if it fails.
fn finish(mut child: Child, what: &str) {
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
        .unwrap();
    let mut err = String::new();
    if let Some(mut e) = stderr {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{what} failed ({status}):\n{err}");
}

/// Block until stdin ends (the parent closed it).
fn wait_for_stdin_end() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_lock_sees_a_dead_owner_and_its_guard_releases_from_another_thread() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let m = MutexOptions::new().open("held").expect("child: open");
        match role.as_str() {
            "locker" => {
                std::mem::forget(m.lock().expect("child: lock"));
                std::process::exit(0);
            }
            "prober" => {
                let lock = m.try_lock().expect("child: try_lock");
                let lock = lock.expect("the async guard was dropped: the mutex must be free");
                assert!(!lock.is_abandoned());
                return;
            }
            r => panic!("unknown role {r}"),
        }
    }
    let test = "an_async_lock_sees_a_dead_owner_and_its_guard_releases_from_another_thread";
    let (_dir, ns) = fresh_ns();
    let m = AsyncMutex::new(MutexOptions::new().namespace(&ns).create("held").unwrap());
    finish(spawn(test, "locker", &ns), "locker child");
    let lock = tokio::time::timeout(LIMIT, m.lock())
        .await
        .expect("the lock of an abandoned mutex did not finish")
        .unwrap();
    assert!(lock.is_abandoned(), "{lock:?}");
    // Locked here, so another process cannot take it.
    let guard = lock.into_guard();
    assert!(m.try_lock().unwrap().is_none());
    // Dropped on another thread: the owner thread releases it.
    std::thread::scope(|sc| sc.spawn(move || drop(guard)).join().unwrap());
    finish(spawn(test, "prober", &ns), "prober child");
    let again = tokio::time::timeout(LIMIT, m.lock())
        .await
        .unwrap()
        .unwrap();
    assert!(!again.is_abandoned());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_takes_nothing() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let m = MutexOptions::new().open("busy").expect("child: open");
        match role.as_str() {
            "holder" => {
                let lock = m.lock().expect("child: lock");
                println!("locked");
                wait_for_stdin_end();
                drop(lock);
            }
            "prober" => {
                let lock = m.try_lock().expect("child: try_lock");
                let lock = lock.expect("a cancelled async lock must leave the mutex free");
                assert!(!lock.is_abandoned());
            }
            r => panic!("unknown role {r}"),
        }
        return;
    }
    let test = "a_cancelled_lock_takes_nothing";
    let (_dir, ns) = fresh_ns();
    let m = AsyncMutex::new(MutexOptions::new().namespace(&ns).create("busy").unwrap());
    let mut holder = spawn(test, "holder", &ns);
    let out = expect_line(holder.stdout.take().unwrap(), "locked");
    // Pending while the other process holds it; cancelled.
    assert!(tokio::time::timeout(CANCEL_AFTER, m.lock()).await.is_err());
    drop(holder.stdin.take());
    // Read to the end, so the child's last lines have somewhere to go.
    let drain = std::thread::spawn(move || std::io::copy(&mut { out }, &mut std::io::sink()));
    finish(holder, "holder child");
    drain.join().unwrap().unwrap();
    finish(spawn(test, "prober", &ns), "prober child");
    let lock = m.try_lock().unwrap().expect("free after the holder left");
    assert!(!lock.is_abandoned());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_set_by_another_process_wakes_an_async_wait_and_a_cancelled_wait_eats_no_signal() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "setter");
        EventOptions::new().open("go").expect("child: open").set();
        return;
    }
    let test =
        "an_event_set_by_another_process_wakes_an_async_wait_and_a_cancelled_wait_eats_no_signal";
    let (_dir, ns) = fresh_ns();
    let e = AsyncEvent::new(EventOptions::new().namespace(&ns).create("go").unwrap());
    // Woken by another process.
    let child = spawn(test, "setter", &ns);
    tokio::time::timeout(LIMIT, e.wait())
        .await
        .expect("the event was not seen set")
        .unwrap();
    finish(child, "setter child");
    assert!(!e.is_set(), "an auto-reset event is reset by the wait");
    // A cancelled wait leaves the next signal for the next waiter.
    assert!(tokio::time::timeout(CANCEL_AFTER, e.wait()).await.is_err());
    finish(spawn(test, "setter", &ns), "setter child");
    assert!(
        e.try_wait(),
        "the signal set after the cancelled wait was eaten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_unit_released_elsewhere_wakes_an_acquire_and_a_cancelled_acquire_loses_none() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "releaser");
        let s = SemaphoreOptions::new().open("units").expect("child: open");
        s.release(1).expect("child: release");
        return;
    }
    let test =
        "a_semaphore_unit_released_elsewhere_wakes_an_acquire_and_a_cancelled_acquire_loses_none";
    let (_dir, ns) = fresh_ns();
    let s = AsyncSemaphore::new(
        SemaphoreOptions::new()
            .namespace(&ns)
            .max(4)
            .create("units")
            .unwrap(),
    );
    let child = spawn(test, "releaser", &ns);
    tokio::time::timeout(LIMIT, s.acquire())
        .await
        .expect("the released unit was not taken")
        .unwrap();
    finish(child, "releaser child");
    assert_eq!(s.count(), 0);
    assert!(tokio::time::timeout(CANCEL_AFTER, s.acquire())
        .await
        .is_err());
    finish(spawn(test, "releaser", &ns), "releaser child");
    assert_eq!(s.count(), 1, "a cancelled acquire took the unit");
}
