//! Shared memory, sync objects and shared maps across real processes.
//!
//! Children are this test binary re-executed (`child_role`, picked by
//! `SHM_ROLE`) or the `ipckit` binary. Every wait is bounded; every child
//! is killed and reaped by `Kid`'s Drop; every test removes its /dev/shm
//! objects through `Cleanup`.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipckit::map::SharedMapOptions;
use ipckit::pipe::CommandExt as _;
use ipckit::shm::{Mapping, MappingOptions};
use ipckit::sync::{EventOptions, Lock, Mutex, MutexOptions, SemaphoreOptions};
use ipckit::{ErrorKind, Namespace};

const ROLE: &str = "SHM_ROLE";
const DEADLINE: Duration = Duration::from_secs(30);

struct Kid {
    child: Child,
    out: Option<BufReader<ChildStdout>>,
}

impl Kid {
    /// Next stdout line starting with `prefix` (others are the harness's).
    fn line(&mut self, prefix: &str) -> String {
        let out = self.out.as_mut().expect("stdout piped");
        let mut l = String::new();
        loop {
            l.clear();
            let n = out.read_line(&mut l).expect("read child stdout");
            assert!(n > 0, "child ended before printing {prefix:?}");
            if l.starts_with(prefix) {
                return l.trim_end().to_string();
            }
        }
    }

    fn wait_success(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "child failed: {st}");
                return;
            }
            assert!(Instant::now() < deadline, "child did not finish in time");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut c: Command) -> Kid {
    c.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = c.spawn().expect("spawn child");
    let out = child.stdout.take().map(BufReader::new);
    Kid { child, out }
}

fn role(ns: &Path, role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_role", "--nocapture", "--ignored"])
        .env(ROLE, role)
        .env(ipckit::name::NAMESPACE_ENV, ns);
    c
}

fn ipckit_bin(ns: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipckit"));
    c.env(ipckit::name::NAMESPACE_ENV, ns);
    c
}

/// Removes the named shm objects of a test namespace when dropped.
struct Cleanup(Namespace, Vec<&'static str>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let o = MappingOptions::new().namespace(&self.0);
        for n in &self.1 {
            let _ = o.remove(n);
        }
    }
}

fn setup(names: Vec<&'static str>) -> (tempfile::TempDir, Namespace, Cleanup) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let c = Cleanup(ns.clone(), names);
    (dir, ns, c)
}

fn say(s: &str) {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{s}").unwrap();
    o.flush().unwrap();
}

fn wait_for_file(p: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while !p.exists() {
        assert!(Instant::now() < deadline, "no {}", p.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The child side of every test, chosen by `SHM_ROLE`.
#[test]
#[ignore]
fn child_role() {
    let Ok(r) = std::env::var(ROLE) else { return };
    let ns = Namespace::from_env().unwrap();
    match r.as_str() {
        "race" => {
            wait_for_file(&ns.dir().join("go"));
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
        "stall_writer" => {
            let mut m = SharedMapOptions::new().namespace(&ns).open("torn").unwrap();
            let b = vec![b'B'; m.max_size()];
            m.__write_interrupted(&b, || {
                say("MID");
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            })
            .unwrap();
        }
        "reader" => {
            let m = SharedMapOptions::new().namespace(&ns).open("torn").unwrap();
            let s = m.snapshot().unwrap();
            let uniform = s.content.iter().all(|b| *b == s.content[0]);
            say(&format!(
                "SNAP {} {} {uniform}",
                s.version, s.content[0] as char
            ));
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
        "memfd" => {
            let fd: i32 = std::env::var("SHM_FD").unwrap().parse().unwrap();
            let m = Mapping::from_inherited_fd(fd).unwrap();
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
    let (_d, ns, _c) = setup(vec![]);
    let o = MappingOptions::new().namespace(&ns);
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
    let _m = MutexOptions::new().namespace(&ns).create("kind").unwrap();
    let e = SharedMapOptions::new()
        .namespace(&ns)
        .open("kind")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    o.remove("kind").unwrap();
}

#[test]
fn open_or_create_race_between_8_processes_has_exactly_one_creator() {
    let (_d, ns, _c) = setup(vec!["race"]);
    let mut kids: Vec<Kid> = (0..8).map(|_| spawn(role(ns.dir(), "race"))).collect();
    std::fs::write(ns.dir().join("go"), b"").unwrap();
    let results: Vec<String> = kids.iter_mut().map(|k| k.line("RESULT")).collect();
    for k in &mut kids {
        k.wait_success();
    }
    let created = results.iter().filter(|r| r.ends_with("created")).count();
    assert_eq!(created, 1, "{results:?}");
    assert_eq!(results.len(), 8);
}

#[test]
fn holder_killed_while_holding_mutex_is_reported_abandoned() {
    let (_d, ns, _c) = setup(vec!["held"]);
    let mut c = ipckit_bin(ns.dir());
    c.args(["shm-internal", "hold-mutex", "held"]);
    let mut holder = spawn(c);
    assert_eq!(holder.line("locked"), "locked clean");
    let m = MutexOptions::new().namespace(&ns).open("held").unwrap();
    // Alive and holding: we time out.
    let e = m
        .lock_timeout(Duration::from_millis(100))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // SIGKILL, not yet reaped (a zombie counts as dead).
    holder.child.kill().unwrap();
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
    let (_d, ns, _c) = setup(vec!["counter"]);
    let map = MappingOptions::new()
        .namespace(&ns)
        .create("counter", 64)
        .unwrap();
    let mut kids: Vec<Kid> = (0..4).map(|_| spawn(role(ns.dir(), "inc"))).collect();
    for k in &mut kids {
        k.wait_success();
    }
    assert_eq!(map.atomic_u64(8).unwrap().load(Ordering::SeqCst), 40_000);
}

#[test]
fn writer_killed_mid_write_never_exposes_a_torn_content() {
    let (_d, ns, _c) = setup(vec!["torn"]);
    let size = 1 << 20;
    let mut m = SharedMapOptions::new()
        .namespace(&ns)
        .max_size(size)
        .create("torn")
        .unwrap();
    m.write(&vec![b'A'; size]).unwrap();
    let mut writer = spawn(role(ns.dir(), "stall_writer"));
    writer.line("MID");
    // Half of the B's are in memory now.
    let mut reader = spawn(role(ns.dir(), "reader"));
    assert_eq!(reader.line("SNAP"), "SNAP 1 A true");
    writer.child.kill().unwrap();
    writer.child.wait().unwrap();
    let mut reader = spawn(role(ns.dir(), "reader"));
    assert_eq!(reader.line("SNAP"), "SNAP 1 A true");
    let s = m.snapshot().unwrap();
    assert_eq!((s.version, s.content.len()), (1, size));
    assert!(s.content.iter().all(|b| *b == b'A'));
    // The next writer takes over the abandoned lock and publishes cleanly.
    assert_eq!(m.write(&vec![b'C'; size]).unwrap(), 2);
    let mut reader = spawn(role(ns.dir(), "reader"));
    assert_eq!(reader.line("SNAP"), "SNAP 2 C true");
}

#[test]
fn watcher_in_another_process_gets_the_final_content_of_a_burst_of_1000_writes() {
    let (_d, ns, _c) = setup(vec!["burst"]);
    let mut m = SharedMapOptions::new()
        .namespace(&ns)
        .create("burst")
        .unwrap();
    let mut w = spawn(role(ns.dir(), "watcher"));
    w.line("READY");
    for i in 0..1000 {
        m.write_text(&format!("w{i}")).unwrap();
    }
    let done = w.line("DONE");
    let parts: Vec<&str> = done.split(' ').collect();
    let delivered: u64 = parts[1].parse().unwrap();
    let skipped: u64 = parts[2].parse().unwrap();
    assert_eq!(delivered + skipped, 1000, "{done}");
    assert!(delivered >= 1);
    assert_eq!(parts[3], "w999", "{done}");
    w.wait_success();
}

#[test]
fn oversized_write_is_too_large_and_leaves_the_content() {
    let (_d, ns, _c) = setup(vec!["small"]);
    let run = |args: &[&str]| ipckit_bin(ns.dir()).args(args).output().unwrap();
    assert!(run(&["map", "set", "small", "abc", "--max-size", "4"])
        .status
        .success());
    let out = run(&["map", "set", "small", "abcdef"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds max_size 4"), "{err}");
    let out = run(&["map", "get", "small", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["content"], "abc");
    assert_eq!(v["version"], 1);
    assert_eq!(v["size"], 3);
    // And the library reports the kind.
    let mut m = SharedMapOptions::new()
        .namespace(&ns)
        .open("small")
        .unwrap();
    assert_eq!(m.write(b"12345").unwrap_err().kind(), ErrorKind::TooLarge);
    assert_eq!(m.snapshot().unwrap().content, b"abc");
}

#[test]
fn event_and_semaphore_time_out_then_release_waiters_in_other_processes() {
    let (_d, ns, _c) = setup(vec!["gate", "slots"]);
    let gate = EventOptions::new()
        .namespace(&ns)
        .manual_reset(true)
        .create("gate")
        .unwrap();
    let slots = SemaphoreOptions::new()
        .namespace(&ns)
        .initial(0)
        .max(3)
        .create("slots")
        .unwrap();
    let mut kids: Vec<Kid> = (0..3)
        .map(|_| spawn(role(ns.dir(), "sync_waiter")))
        .collect();
    for k in &mut kids {
        assert_eq!(k.line("WAITING"), "WAITING Timeout Timeout");
    }
    gate.set(); // one set of a manual event releases all three
    for k in &mut kids {
        k.line("GATE");
    }
    assert_eq!(slots.release(3).unwrap(), 0);
    for k in &mut kids {
        k.line("SEM");
        k.wait_success();
    }
    assert_eq!(slots.count(), 0);
    assert_eq!(slots.release(4).unwrap_err().kind(), ErrorKind::Full);
}

#[test]
fn anonymous_mapping_is_inherited_by_a_child() {
    let (_d, ns, _c) = setup(vec![]);
    let m = Mapping::anonymous(4096).unwrap();
    m.write_at(0, b"secret").unwrap();
    let mut c = role(ns.dir(), "memfd");
    c.env("SHM_FD", "10").pass_fd(m.try_clone_fd().unwrap(), 10);
    let mut kid = spawn(c);
    kid.wait_success();
    let mut b = [0u8; 14];
    m.read_at(100, &mut b).unwrap();
    assert_eq!(&b, b"child was here");
}

#[test]
fn anonymous_mapping_is_passed_to_another_process_over_a_named_pipe() {
    let (_d, ns, _c) = setup(vec![]);
    let m = Mapping::anonymous(4096).unwrap();
    m.write_at(0, b"secret").unwrap();
    let server = ipckit::pipe::ServerOptions::new()
        .namespace(&ns)
        .create("fdpass")
        .unwrap();
    let mut kid = spawn(role(ns.dir(), "memfd-over-pipe"));
    let mut conn = server.accept_timeout(DEADLINE).unwrap();
    assert_eq!(conn.peer().pid, Some(kid.child.id()));
    conn.send_fd(m.as_fd()).unwrap();
    assert_eq!(conn.recv_timeout(DEADLINE).unwrap(), b"done");
    kid.wait_success();
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
    let (_d, ns, _c) = setup(vec!["py/data"]);
    let o = MappingOptions::new().namespace(&ns);
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
    let out = Command::new("python3")
        .args(["-c", script, &os])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from rust");
    // Python did not unlink it.
    o.open("py/data").unwrap();
}
