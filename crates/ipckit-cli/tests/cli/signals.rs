//! Serving commands stopped by Ctrl-C (SIGINT) or SIGTERM exit cleanly and
//! leave no endpoint record behind (`ipckit ls` shows nothing stale).

use ipckit::name::EndpointState;

use crate::common::{wait_until, TestNs, DEADLINE};

/// Start `args` (which serves `name`), wait until its record is live,
/// send it `signal`, and check that it exits successfully with every
/// record of the namespace removed (`ls` lists nothing).
fn stops_cleanly(args: &[&str], name: &str, signal: &str) {
    let t = TestNs::new();
    let mut p = t.start(args);
    // A group member's record is named under the group (`g.group/...`).
    wait_until(DEADLINE, "the record is live", || {
        t.ns.list().unwrap().iter().any(|e| {
            (e.name == name || e.name.starts_with(&format!("{name}.group/")))
                && e.state == EndpointState::Live
        })
    });
    let st = std::process::Command::new("kill")
        .args([signal, &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    p.wait_success(DEADLINE);
    wait_until(DEADLINE, "every record is gone", || {
        t.ns.list().unwrap().is_empty()
    });
    let ls = t.run(&["ls"]);
    ls.assert_success();
    assert!(ls.stdout.starts_with("nothing in"), "{ls:#?}");
}

#[test]
fn pipe_serve_removes_its_record_on_sigterm_and_sigint() {
    stops_cleanly(&["pipe", "serve", "p", "--echo"], "p", "-TERM");
    stops_cleanly(&["pipe", "serve", "p", "--echo"], "p", "-INT");
}

#[test]
fn msg_listen_removes_its_record_on_sigterm() {
    stops_cleanly(&["msg", "listen", "w"], "w", "-TERM");
}

#[test]
fn slot_read_and_group_read_remove_their_records_on_sigterm() {
    stops_cleanly(&["slot", "read", "s"], "s", "-TERM");
    stops_cleanly(&["slot", "group-read", "g"], "g", "-INT");
}

#[test]
fn service_demo_removes_its_record_on_sigterm() {
    stops_cleanly(&["service", "demo", "calc"], "calc", "-TERM");
}
