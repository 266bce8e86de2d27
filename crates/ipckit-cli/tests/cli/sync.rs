//! `ipckit mutex|event|sem`: named sync objects between processes.

use crate::common::{TestNs, DEADLINE};

#[test]
fn mutex_run_holds_the_lock_around_the_command_and_exits_with_its_status() {
    let t = TestNs::new().remove_shm_on_drop(&["lock"]);
    // The command's status comes back; the lock is free afterwards.
    let o = t.run(&[
        "mutex",
        "run",
        "lock",
        "--",
        "sh",
        "-c",
        "echo inside; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{o:#?}");
    assert_eq!(o.stdout, "inside\n");
    t.run(&["mutex", "run", "lock", "--", "true"])
        .assert_success();
    // Held by another process: a bounded run gives up without running.
    let mut holder = t.start(&["mutex", "lock", "lock"]);
    assert_eq!(holder.stdout_line("locked"), "locked");
    let marker = t.outside("ran");
    let o = t.run(&[
        "mutex",
        "run",
        "lock",
        "--timeout",
        "200ms",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("not locked within --timeout"), "{o:#?}");
    assert!(!marker.exists());
    // SIGTERM makes the holder release it and exit cleanly; then it runs.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &holder.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    holder.wait_success(DEADLINE);
    t.run(&[
        "mutex",
        "run",
        "lock",
        "--timeout",
        "20s",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ])
    .assert_success();
    assert!(marker.exists());
    // A holder killed outright: the next locker is told it was abandoned.
    let mut holder = t.start(&["mutex", "lock", "lock"]);
    assert_eq!(holder.stdout_line("locked"), "locked");
    holder.kill();
    let o = t.run(&["mutex", "lock", "lock", "--timeout", "20s", "--hold", "0s"]);
    o.assert_success();
    assert_eq!(o.stdout, "locked abandoned\n");
    t.run(&["mutex", "rm", "lock"]).assert_success();
    let o = t.run(&["mutex", "rm", "lock"]);
    o.assert_one_line_failure();
}

#[test]
fn event_wait_returns_when_another_process_sets_it_and_times_out_otherwise() {
    let t = TestNs::new().remove_shm_on_drop(&["ev"]);
    t.run(&["event", "create", "ev", "--manual-reset"])
        .assert_success();
    let o = t.run(&["event", "wait", "ev", "--timeout", "100ms"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("not set within --timeout"), "{o:#?}");
    let mut waiter = t.start(&["event", "wait", "ev", "--timeout", "30s"]);
    t.run(&["event", "set", "ev"]).assert_success();
    waiter.wait_success(DEADLINE);
    // Manual reset: it stays set until reset.
    t.run(&["event", "wait", "ev", "--timeout", "20s"])
        .assert_success();
    t.run(&["event", "reset", "ev"]).assert_success();
    t.run(&["event", "wait", "ev", "--timeout", "50ms"])
        .assert_one_line_failure();
    // Not an event: refused, and left in place.
    t.run(&["sem", "create", "ev2"]).assert_success();
    let o = t.run(&["event", "set", "ev2"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("is a semaphore"), "{o:#?}");
    t.run(&["sem", "rm", "ev2"]).assert_success();
    t.run(&["event", "rm", "ev"]).assert_success();
}

#[test]
fn sem_counts_across_processes() {
    let t = TestNs::new().remove_shm_on_drop(&["s"]);
    t.run(&["sem", "create", "s", "--initial", "1", "--max", "2"])
        .assert_success();
    t.run(&["sem", "wait", "s", "--timeout", "20s"])
        .assert_success();
    let o = t.run(&["sem", "wait", "s", "--timeout", "100ms"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("count stayed 0"), "{o:#?}");
    let mut waiter = t.start(&["sem", "wait", "s", "--timeout", "30s"]);
    let o = t.run(&["sem", "release", "s"]);
    o.assert_success();
    assert_eq!(o.stdout, "0\n");
    waiter.wait_success(DEADLINE);
    let o = t.run(&["sem", "release", "s", "--count", "3"]);
    o.assert_one_line_failure();
    t.run(&["sem", "rm", "s"]).assert_success();
}
