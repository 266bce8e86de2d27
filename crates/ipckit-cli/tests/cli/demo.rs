//! `ipckit demo`: the tour runs to its end.

use std::time::Duration;

use crate::common::TestNs;

#[test]
fn the_demo_runs_every_step_between_processes_with_public_commands_only() {
    let t = TestNs::new();
    let mut cmd = t.ipckit(&["demo"]);
    cmd.env("TMPDIR", t.dir.path());
    let out = crate::common::Proc::spawn(&mut cmd).finish(Duration::from_secs(120));
    out.assert_success();
    let o = &out.stdout;
    // The compute-server step: the seed's compare, answered by the server
    // process.
    assert!(o.contains("server returned red=2.00, blue=1.00"), "{o}");
    // The pipe step: the echo came back intact.
    assert!(o.contains("(intact: true)"), "{o}");
    // The mailslot step: every message whole and in order.
    assert!(
        o.contains("1003 messages read, timed ones whole and in order: true"),
        "{o}"
    );
    // The map step: five ticks seen by the watcher process.
    assert!(o.contains("wrote 'tick 5'"), "{o}");
    assert!(o.contains("demo finished"), "{o}");
}
