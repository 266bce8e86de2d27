//! Shared memory, sync objects and shared maps across real processes.
//!
//! Children are this test binary re-executed in a role (`child_role`).
//! Every wait is bounded; every child is killed and reaped on drop; every
//! test removes its /dev/shm objects (`TestNs::remove_shm_on_drop`).

mod support;

use std::os::fd::AsFd as _;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ipckit::map::SharedMapOptions;
use ipckit::pipe::CommandExt as _;
use ipckit::shm::{Mapping, MappingOptions};
use ipckit::sync::{EventOptions, Lock, Mutex, MutexOptions, SemaphoreOptions};
use ipckit::{ErrorKind, Namespace};
use support::{say, wait_until, Proc, TestNs, DEADLINE};

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        "race" => {
            let go = ns.dir().join("go");
            wait_until(DEADLINE, "the go file exists", || go.exists());
            let m = MappingOptions::new()
                .namespace(&ns)
                .open_or_create("race", 4096)
                .unwrap();
            say(if m.existed() {
                "RESULT existed"
            } else {
                "RESULT created"
            });
            assert_eq!(m.len(), 4096);
        }
        "inc" => {
            let map = Arc::new(
                MappingOptions::new()
                    .namespace(&ns)
                    .open("counter")
                    .unwrap(),
            );
            let m = Mutex::at(map.clone(), 0).unwrap();
            let c = map.atomic_u64(8).unwrap();
            for _ in 0..10_000 {
                let _g = m.lock().unwrap().into_guard();
                // Deliberately not atomic as a whole: only the mutex makes it exact.
                let v = c.load(Ordering::Relaxed);
                c.store(v + 1, Ordering::Relaxed);
            }
        }
        // Lock the named mutex ARG0, say so, then hold it until killed.
        "hold-mutex" => {
            let m = MutexOptions::new()
                .namespace(&ns)
                .open_or_create(&args[0])
                .unwrap();
            let lock = m.lock().unwrap();
            say(if lock.is_abandoned() {
                "locked abandoned"
            } else {
                "locked clean"
            });
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        // Write TEXT (ARG1) into the shared map ARG0, creating it with
        // `--max-size` if absent; `ERROR <kind> <error>` on stderr and
        // exit 1 on failure.
        "map-set" => {
            let mut o = SharedMapOptions::new().namespace(&ns);
            if let Some(n) = support::flag(&args, "--max-size") {
                o = o.max_size(n.parse().unwrap());
            }
            let r = o
                .open_or_create(&args[0])
                .and_then(|mut m| m.write_text(&args[1]));
            match r {
                Ok(v) => say(&format!("VERSION {v}")),
                Err(e) => {
                    eprintln!("ERROR {:?} {e}", e.kind());
                    std::process::exit(1);
                }
            }
        }
        "watcher" => {
            let mut m = SharedMapOptions::new()
                .namespace(&ns)
                .open("burst")
                .unwrap();
            let base = m.version().unwrap();
            say("READY");
            let (mut delivered, mut skipped, mut last) = (0u64, 0u64, Vec::new());
            while m.version().unwrap() < base + 1000 || delivered + skipped < 1000 {
                let c = m.wait_change(Some(Duration::from_secs(20))).unwrap();
                delivered += 1;
                skipped += c.skipped;
                last = c.content;
            }
            say(&format!(
                "DONE {delivered} {skipped} {}",
                String::from_utf8_lossy(&last)
            ));
        }
        "sync_waiter" => {
            let ev = EventOptions::new().namespace(&ns).open("gate").unwrap();
            let sem = SemaphoreOptions::new()
                .namespace(&ns)
                .open("slots")
                .unwrap();
            let e1 = ev
                .wait_timeout(Duration::from_millis(30))
                .unwrap_err()
                .kind();
            let e2 = sem
                .acquire_timeout(Duration::from_millis(30))
                .unwrap_err()
                .kind();
            say(&format!("WAITING {e1:?} {e2:?}"));
            ev.wait_timeout(Duration::from_secs(20)).unwrap();
            say("GATE");
            sem.acquire_timeout(Duration::from_secs(20)).unwrap();
            say("SEM");
        }
        // Map the memfd inherited at fd ARG0.
        "memfd" => {
            let m = Mapping::from_inherited_fd(support::inherited_fd(&args[0])).unwrap();
            let mut b = [0u8; 6];
            m.read_at(0, &mut b).unwrap();
            assert_eq!(&b, b"secret");
            m.write_at(100, b"child was here").unwrap();
        }
        "memfd-over-pipe" => {
            let mut pipe = ipckit::pipe::ClientOptions::new()
                .namespace(&ns)
                .timeout(DEADLINE)
                .connect("fdpass")
                .unwrap();
            let m = Mapping::from_fd(pipe.recv_fd().unwrap()).unwrap();
            let mut b = [0u8; 6];
            m.read_at(0, &mut b).unwrap();
            assert_eq!(&b, b"secret");
            m.write_at(100, b"got it by pipe").unwrap();
            pipe.send(b"done").unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn bad_sizes_and_names_are_clear_errors() {
    let t = TestNs::new();
    let ns = &t.ns;
    let o = MappingOptions::new().namespace(ns);
    let e = o.create("zero", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("size 0"), "{e}");
    let e = o.create("huge", 1 << 50).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(
        e.to_string().contains("more than the memory available"),
        "{e}"
    );
    assert_eq!(
        Mapping::anonymous(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        Mapping::anonymous(1 << 50).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    assert_eq!(
        o.create("../x", 10).unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    assert_eq!(o.open("absent").unwrap_err().kind(), ErrorKind::NotFound);
    // A mutex is not a shared map.
    let _m = MutexOptions::new().namespace(ns).create("kind").unwrap();
    let e = SharedMapOptions::new()
        .namespace(ns)
        .open("kind")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    o.remove("kind").unwrap();
}

#[test]
fn open_or_create_race_between_8_processes_has_exactly_one_creator() {
    let t = TestNs::new().remove_shm_on_drop(&["race"]);
    let mut kids: Vec<Proc> = (0..8).map(|_| t.start("race", &[])).collect();
    std::fs::write(t.path().join("go"), b"").unwrap();
    let results: Vec<String> = kids.iter_mut().map(|k| k.stdout_line("RESULT")).collect();
    for k in &mut kids {
        k.wait_success(DEADLINE);
    }
    let created = results.iter().filter(|r| r.ends_with("created")).count();
    assert_eq!(created, 1, "{results:?}");
    assert_eq!(results.len(), 8);
}

#[test]
fn holder_killed_while_holding_mutex_is_reported_abandoned() {
    let t = TestNs::new().remove_shm_on_drop(&["held"]);
    let mut holder = t.start("hold-mutex", &["held"]);
    assert_eq!(holder.stdout_line("locked"), "locked clean");
    let m = MutexOptions::new().namespace(&t.ns).open("held").unwrap();
    // Alive and holding: we time out.
    let e = m
        .lock_timeout(Duration::from_millis(100))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // SIGKILL, not yet reaped (a zombie counts as dead).
    holder.child().kill().unwrap();
    let lock = m.lock_timeout(DEADLINE).unwrap();
    assert!(
        matches!(lock, Lock::Abandoned(_)),
        "expected an abandoned report"
    );
    drop(lock);
    assert!(!m.lock_timeout(DEADLINE).unwrap().is_abandoned());
}

#[test]
fn four_processes_times_10000_increments_under_the_mutex_are_exact() {
    let t = TestNs::new().remove_shm_on_drop(&["counter"]);
    let map = MappingOptions::new()
        .namespace(&t.ns)
        .create("counter", 64)
        .unwrap();
    let mut kids: Vec<Proc> = (0..4).map(|_| t.start("inc", &[])).collect();
    for k in &mut kids {
        k.wait_success(DEADLINE);
    }
    assert_eq!(map.atomic_u64(8).unwrap().load(Ordering::SeqCst), 40_000);
}

#[test]
fn watcher_in_another_process_gets_the_final_content_of_a_burst_of_1000_writes() {
    let t = TestNs::new().remove_shm_on_drop(&["burst"]);
    let mut m = SharedMapOptions::new()
        .namespace(&t.ns)
        .create("burst")
        .unwrap();
    let mut w = t.start("watcher", &[]);
    w.stdout_line("READY");
    for i in 0..1000 {
        m.write_text(&format!("w{i}")).unwrap();
    }
    let done = w.stdout_line("DONE");
    let parts: Vec<&str> = done.split(' ').collect();
    let delivered: u64 = parts[1].parse().unwrap();
    let skipped: u64 = parts[2].parse().unwrap();
    assert_eq!(delivered + skipped, 1000, "{done}");
    assert!(delivered >= 1);
    assert_eq!(parts[3], "w999", "{done}");
    w.wait_success(DEADLINE);
}

#[test]
fn oversized_write_is_too_large_and_leaves_the_content() {
    let t = TestNs::new().remove_shm_on_drop(&["small"]);
    // One process creates the map (at most 4 bytes) and writes; another
    // writes too much.
    let out = t.run("map-set", &["small", "abc", "--max-size", "4"]);
    out.assert_success();
    assert_eq!(out.line("VERSION "), Some("1"), "{out:#?}");
    let out = t.run("map-set", &["small", "abcdef"]);
    out.assert_failure();
    assert!(out.stderr.contains("ERROR TooLarge"), "{out:#?}");
    assert!(out.stderr.contains("exceeds max_size 4"), "{out:#?}");
    // The content is the first write's.
    let mut m = SharedMapOptions::new()
        .namespace(&t.ns)
        .open("small")
        .unwrap();
    let s = m.snapshot().unwrap();
    assert_eq!((s.content.as_slice(), s.version), (&b"abc"[..], 1));
    assert_eq!(m.max_size(), 4);
    // And this process gets the same kind.
    assert_eq!(m.write(b"12345").unwrap_err().kind(), ErrorKind::TooLarge);
    assert_eq!(m.snapshot().unwrap().content, b"abc");
}

#[test]
fn event_and_semaphore_time_out_then_release_waiters_in_other_processes() {
    let t = TestNs::new().remove_shm_on_drop(&["gate", "slots"]);
    let gate = EventOptions::new()
        .namespace(&t.ns)
        .manual_reset(true)
        .create("gate")
        .unwrap();
    let slots = SemaphoreOptions::new()
        .namespace(&t.ns)
        .initial(0)
        .max(3)
        .create("slots")
        .unwrap();
    let mut kids: Vec<Proc> = (0..3).map(|_| t.start("sync_waiter", &[])).collect();
    for k in &mut kids {
        assert_eq!(k.stdout_line("WAITING"), "WAITING Timeout Timeout");
    }
    gate.set(); // one set of a manual event releases all three
    for k in &mut kids {
        k.stdout_line("GATE");
    }
    assert_eq!(slots.release(3).unwrap(), 0);
    for k in &mut kids {
        k.stdout_line("SEM");
        k.wait_success(DEADLINE);
    }
    assert_eq!(slots.count(), 0);
    assert_eq!(slots.release(4).unwrap_err().kind(), ErrorKind::Full);
}

#[test]
fn anonymous_mapping_is_inherited_by_a_child() {
    let t = TestNs::new();
    let m = Mapping::anonymous(4096).unwrap();
    m.write_at(0, b"secret").unwrap();
    let mut c = t.role("memfd", &["10"]);
    c.pass_fd(m.try_clone_fd().unwrap(), 10);
    let mut kid = Proc::spawn(&mut c);
    drop(c);
    kid.wait_success(DEADLINE);
    let mut b = [0u8; 14];
    m.read_at(100, &mut b).unwrap();
    assert_eq!(&b, b"child was here");
}

#[test]
fn anonymous_mapping_is_passed_to_another_process_over_a_named_pipe() {
    let t = TestNs::new();
    let m = Mapping::anonymous(4096).unwrap();
    m.write_at(0, b"secret").unwrap();
    let server = ipckit::pipe::ServerOptions::new()
        .namespace(&t.ns)
        .create("fdpass")
        .unwrap();
    let mut kid = t.start("memfd-over-pipe", &[]);
    let mut conn = server.accept_timeout(DEADLINE).unwrap();
    assert_eq!(conn.peer().pid, Some(kid.pid()));
    conn.send_fd(m.as_fd()).unwrap();
    assert_eq!(conn.recv_timeout(DEADLINE).unwrap(), b"done");
    kid.wait_success(DEADLINE);
    let mut b = [0u8; 14];
    m.read_at(100, &mut b).unwrap();
    assert_eq!(&b, b"got it by pipe");
}

#[test]
fn python_shared_memory_reads_a_named_mapping_by_its_documented_name() {
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_err()
    {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let t = TestNs::new().remove_shm_on_drop(&["py/data"]);
    let o = MappingOptions::new().namespace(&t.ns);
    let m = o.create("py/data", 32).unwrap();
    m.write_at(0, b"hello from rust").unwrap();
    let os = o.os_name("py/data").unwrap();
    assert_eq!(Some(os.as_str()), m.os_name());
    let script = r#"
import sys
from multiprocessing import shared_memory
try:
    shm = shared_memory.SharedMemory(name=sys.argv[1], track=False)
except TypeError:
    from multiprocessing import resource_tracker
    shm = shared_memory.SharedMemory(name=sys.argv[1])
    resource_tracker.unregister(shm._name, "shared_memory")
sys.stdout.write(bytes(shm.buf[64:64 + 15]).decode())
shm.close()
"#;
    let out = Proc::spawn(Command::new("python3").args(["-c", script, &os])).finish(DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, "hello from rust");
    // Python did not unlink it.
    o.open("py/data").unwrap();
}
