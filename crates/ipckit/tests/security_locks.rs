//! Locks that garbage or a reused thread id cannot freeze (issue 11,
//! item 5): a lock word naming a live thread that does not hold it (init,
//! or a thread of an unrelated process) is recovered as abandoned, a
//! shared map's write lock is bounded by `lock_timeout`, a live owner in
//! another process is never taken over, and the cached thread id is right
//! in the child of a `fork`.
//!
//! The garbage is written through a second mapping of the object's file in
//! `/dev/shm`, at the offsets `docs/PROTOCOL.md` gives, as a foreign or
//! hostile process would. The recovery times are printed (`--nocapture`)
//! for the closing note; they are never asserted. Children are
//! this test binary re-executed in a role (`child_role`); every wait is
//! bounded; children are killed and reaped on drop.

mod support;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use ipckit::map::SharedMapOptions;
use ipckit::shm::{MappingOptions, HEADER_LEN};
use ipckit::sync::MutexOptions;
use ipckit::{ErrorKind, Namespace};
use support::{say, TestNs, DEADLINE};

/// The timeout given to the lock calls under test: recovery must happen
/// well within it, and a regression fails with `Timeout` instead of hanging.
const LOCK_LIMIT: Duration = Duration::from_secs(5);

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Exit at once (the program a forked child execs).
        "noop" => {}
        // Say "ready", then live (without touching any lock) until killed.
        "idle" => {
            say("ready");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        // Lock the named mutex ARG0, say so, then hold it until killed.
        "hold-mutex" => {
            let m = MutexOptions::new().namespace(&ns).open(&args[0]).unwrap();
            let _lock = m.lock_timeout(DEADLINE).unwrap();
            say("locked");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Write `value` into the u32 at `offset` of the data region of the named
/// object `name`, through a mapping of its own (the file in /dev/shm).
fn poke(t: &TestNs, name: &str, offset: u64, value: u32) {
    let os = MappingOptions::new()
        .namespace(&t.ns)
        .os_name(name)
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{os}"))
        .unwrap();
    f.write_all_at(&value.to_le_bytes(), HEADER_LEN as u64 + offset)
        .unwrap();
}

fn peek(t: &TestNs, name: &str, offset: u64) -> u32 {
    let os = MappingOptions::new()
        .namespace(&t.ns)
        .os_name(name)
        .unwrap();
    let f = std::fs::File::open(format!("/dev/shm/{os}")).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, HEADER_LEN as u64 + offset).unwrap();
    u32::from_le_bytes(b)
}

/// Lock `m` (bounded), expecting a takeover, and return how long it took.
fn expect_abandoned(m: &ipckit::sync::Mutex, what: &str) -> Duration {
    let t0 = Instant::now();
    let lock = m
        .lock_timeout(LOCK_LIMIT)
        .unwrap_or_else(|e| panic!("{what}: not recovered within {LOCK_LIMIT:?}: {e}"));
    let took = t0.elapsed();
    assert!(
        lock.is_abandoned(),
        "{what}: the lock was taken but not reported abandoned"
    );
    drop(lock);
    // Usable as normal afterwards.
    assert!(!m.lock_timeout(LOCK_LIMIT).unwrap().is_abandoned());
    took
}

#[test]
fn garbage_lock_word_naming_init_is_recovered_as_abandoned() {
    let t = TestNs::new().remove_shm_on_drop(&["g1", "g2"]);
    let o = MutexOptions::new().namespace(&t.ns);
    // tid 1 (init: always alive), no owner word; then with the waiters bit.
    for (name, word) in [("g1", 1u32), ("g2", 1 | 1 << 31)] {
        let m = o.create(name).unwrap();
        poke(&t, name, 0, word);
        let took = expect_abandoned(&m, &format!("lock word {word:#x}"));
        eprintln!(
            "FIGURE garbage lock word {word:#x} (init, no owner record) recovered in {took:?}"
        );
    }
}

#[test]
fn lock_word_naming_a_live_thread_that_never_locked_it_is_recovered() {
    // The reused-id case: the word names a live thread of an unrelated
    // process, and the owner word holds another thread's start stamp.
    let t = TestNs::new().remove_shm_on_drop(&["reused"]);
    let m = MutexOptions::new()
        .namespace(&t.ns)
        .create("reused")
        .unwrap();
    let mut bystander = t.start("idle", &[]);
    bystander.stdout_line("ready");
    poke(&t, "reused", 4, 12345);
    poke(&t, "reused", 0, bystander.pid());
    let took = expect_abandoned(&m, "lock word naming a live bystander");
    eprintln!("FIGURE lock word naming a live bystander thread recovered in {took:?}");
}

#[test]
fn lock_word_naming_a_killed_owner_with_its_record_is_recovered() {
    // A real owner in another process, killed: its word and owner record
    // stay behind. Also checks the record is written where PROTOCOL.md says.
    let t = TestNs::new().remove_shm_on_drop(&["killed"]);
    let m = MutexOptions::new()
        .namespace(&t.ns)
        .create("killed")
        .unwrap();
    let mut holder = t.start("hold-mutex", &["killed"]);
    holder.stdout_line("locked");
    let owner = peek(&t, "killed", 0) & 0x3fff_ffff;
    let task = format!("/proc/{}/task/{owner}", holder.pid());
    assert!(
        std::path::Path::new(&task).exists(),
        "lock word {owner} is not a thread of the holder"
    );
    assert_ne!(
        peek(&t, "killed", 4),
        0,
        "no owner record beside the lock word"
    );
    holder.kill();
    let took = expect_abandoned(&m, "killed owner");
    eprintln!("FIGURE lock of a killed owner recovered in {took:?}");
}

#[test]
fn live_owner_in_another_process_is_never_taken_over() {
    let t = TestNs::new().remove_shm_on_drop(&["live"]);
    let m = MutexOptions::new().namespace(&t.ns).create("live").unwrap();
    let mut holder = t.start("hold-mutex", &["live"]);
    holder.stdout_line("locked");
    // Several owner checks and well past the grace for unverified owners.
    let e = m
        .lock_timeout(Duration::from_millis(700))
        .map(|l| l.is_abandoned())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("live"), "{e}");
}

#[test]
fn shared_map_write_recovers_a_garbage_lock_word() {
    let t = TestNs::new().remove_shm_on_drop(&["gmap"]);
    let mut m = SharedMapOptions::new()
        .namespace(&t.ns)
        .lock_timeout(LOCK_LIMIT)
        .create("gmap")
        .unwrap();
    poke(&t, "gmap", 0, 1 | 1 << 31);
    let t0 = Instant::now();
    let v = m
        .write(b"after garbage")
        .unwrap_or_else(|e| panic!("write not recovered within {LOCK_LIMIT:?}: {e}"));
    let took = t0.elapsed();
    assert_eq!(v, 1);
    assert_eq!(m.snapshot().unwrap().content, b"after garbage");
    assert_eq!(m.write(b"again").unwrap(), 2);
    eprintln!("FIGURE shared map write over a garbage lock word took {took:?}");
}
