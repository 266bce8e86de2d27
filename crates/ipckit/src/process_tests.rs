//! Cross-process tests that need the crate's internals (a writer stopped
//! in the middle of a write, the cached thread id), so they live here, as
//! unit tests, instead of in `tests/` with only the public API. They use
//! the same helpers as the integration tests (`tests/support`): each child
//! is this unit-test binary re-run as the ignored `child_role` test.

#[path = "../tests/support/mod.rs"]
#[allow(unsafe_code)] // `inherited_fd`, for roles of other test binaries
mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{say, wait_until, TestNs, DEADLINE};

use crate::map::SharedMapOptions;
use crate::{ErrorKind, Namespace};

/// Linux `EDOM`: the errno a forked child reports a stale cached tid with.
const EDOM: i32 = 33;

/// The child side of every test here, chosen by the role.
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
        // Fill the map ARG0 with 'B's but stop half-way through the copy
        // (holding its lock, the sequence word odd), say MID, wait to be
        // killed.
        "stall-writer" => {
            let mut m = SharedMapOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .unwrap();
            let b = vec![b'B'; m.max_size()];
            let _ = m.write_interrupted(&b, || {
                say("MID");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            });
        }
        // Print the version, first byte and uniformity of a snapshot of
        // the map ARG0.
        "reader" => {
            let m = SharedMapOptions::new()
                .namespace(&ns)
                .open(&args[0])
                .unwrap();
            let s = m.snapshot().unwrap();
            let uniform = s.content.iter().all(|b| *b == s.content[0]);
            say(&format!(
                "SNAP {} {} {uniform}",
                s.version, s.content[0] as char
            ));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn writer_killed_mid_write_never_exposes_a_torn_content() {
    let t = TestNs::new().remove_shm_on_drop(&["torn"]);
    let size = 1 << 20;
    let mut m = SharedMapOptions::new()
        .namespace(&t.ns)
        .max_size(size)
        .create("torn")
        .unwrap();
    m.write(&vec![b'A'; size]).unwrap();
    let mut writer = t.start("stall-writer", &["torn"]);
    writer.stdout_line("MID");
    // Half of the B's are in memory now.
    let mut reader = t.start("reader", &["torn"]);
    assert_eq!(reader.stdout_line("SNAP"), "SNAP 1 A true");
    writer.kill();
    let mut reader = t.start("reader", &["torn"]);
    assert_eq!(reader.stdout_line("SNAP"), "SNAP 1 A true");
    let s = m.snapshot().unwrap();
    assert_eq!((s.version, s.content.len()), (1, size));
    assert!(s.content.iter().all(|b| *b == b'A'));
    // The next writer takes over the abandoned lock and publishes cleanly.
    assert_eq!(m.write(&vec![b'C'; size]).unwrap(), 2);
    let mut reader = t.start("reader", &["torn"]);
    assert_eq!(reader.stdout_line("SNAP"), "SNAP 2 C true");
}

#[test]
fn shared_map_write_times_out_naming_the_map_while_a_live_writer_stalls() {
    let t = TestNs::new().remove_shm_on_drop(&["stall"]);
    let o = SharedMapOptions::new().namespace(&t.ns);
    let mut m = o.create("stall").unwrap();
    m.write(b"v1").unwrap();
    let mut writer = t.start("stall-writer", &["stall"]);
    writer.stdout_line("MID");
    m.set_lock_timeout(Duration::from_millis(400));
    let e = m.write(b"blocked").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("stall"), "{e}");
    assert_eq!(m.snapshot().unwrap().content, b"v1");
    // The stalled writer dies: the next write gets the lock back.
    writer.kill();
    m.set_lock_timeout(Duration::from_secs(5));
    assert_eq!(m.write(b"v2").unwrap(), 2);
    assert_eq!(m.snapshot().unwrap().content, b"v2");
}

#[test]
fn cached_thread_id_is_right_in_a_forked_child() {
    use crate::sys::futex::{gettid_uncached, tid};
    use std::os::unix::process::CommandExt as _;
    // Fill this thread's cache first, so the child inherits a stale copy.
    assert_eq!(tid(), gettid_uncached());
    let mut cmd = support::role_command("noop", &[]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec. It only
    // reads thread-locals and atomics already initialised in the parent and
    // makes the gettid system call: no allocation, no lock.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if tid() == gettid_uncached() {
                Ok(())
            } else {
                // Reported to the parent as the spawn error.
                Err(std::io::Error::from_raw_os_error(EDOM))
            }
        });
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("in the forked child the cached tid differed from gettid ({e})")
    });
    wait_until(DEADLINE, "the exec'd child exits", || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success());
}
