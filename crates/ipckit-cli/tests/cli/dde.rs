//! `ipckit dde serve|request|poke|execute|advise|ls`.

use std::time::Duration;

use crate::common::{wait_live, wait_until, Proc, TestNs, DEADLINE};
use ipckit::clipboard::Format;
use ipckit::dde::{ConversationOptions, DdeServerOptions, Link};

/// `ipckit dde serve svc --topic t --item x=1`, accepting conversations.
fn serve(t: &TestNs, extra: &[&str]) -> Proc {
    let mut args = vec!["dde", "serve", "svc", "--topic", "t", "--item", "x=1"];
    args.extend_from_slice(extra);
    let p = t.start(&args);
    wait_live(&t.ns, "svc");
    // Accepting once a conversation opens (the record is live a moment
    // before the socket listens).
    ConversationOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect("svc", "t")
        .unwrap();
    p
}

fn out(t: &TestNs, args: &[&str]) -> String {
    let o = t.run(args);
    o.assert_success();
    o.stdout
}

#[test]
fn serve_answers_request_poke_execute_and_ls() {
    let t = TestNs::new();
    let _s = serve(&t, &[]);
    assert_eq!(out(&t, &["dde", "request", "svc", "t", "x"]), "1\n");
    t.run(&["dde", "poke", "svc", "t", "x", "two"])
        .assert_success();
    assert_eq!(out(&t, &["dde", "request", "svc", "t", "x"]), "two\n");
    t.run(&["dde", "execute", "svc", "t", "set x three words"])
        .assert_success();
    assert_eq!(
        out(&t, &["dde", "request", "svc", "t", "x"]),
        "three words\n"
    );
    let json = out(&t, &["dde", "request", "svc", "t", "x", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["value"], "three words");
    assert_eq!(v["format"], 1);
    // The value is CF_TEXT: UTF-8 and a NUL, as a library client sees it.
    let c = ConversationOptions::new()
        .namespace(&t.ns)
        .connect("svc", "t")
        .unwrap();
    assert_eq!(c.request("x", Format::TEXT).unwrap(), b"three words\0");
    // A refused command fails with the server's reason on one line.
    let o = t.run(&["dde", "execute", "svc", "t", "reboot"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("unknown command 'reboot'"), "{o:#?}");
    // Unknown items and topics are named.
    let o = t.run(&["dde", "request", "svc", "t", "nope"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("'nope'"), "{o:#?}");
    let o = t.run(&["dde", "request", "svc", "other", "x"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("no topic 'other'"), "{o:#?}");
    // ls lists the service and its topic; `ipckit ls` shows the record.
    assert_eq!(out(&t, &["dde", "ls"]), "svc t\n");
    let v: serde_json::Value = serde_json::from_str(&out(&t, &["dde", "ls", "--json"])).unwrap();
    assert_eq!(v[0]["service"], "svc");
    assert_eq!(v[0]["topics"][0], "t");
    assert!(out(&t, &["ls"]).contains("dde"));
}

#[test]
fn advise_prints_each_change_hot_and_warm() {
    let t = TestNs::new();
    let server = DdeServerOptions::new()
        .namespace(&t.ns)
        .topic("t")
        .create("svc")
        .unwrap();
    server.set_item("t", "x", Format::TEXT, b"0\0").unwrap();
    let mut hot = t.start(&["dde", "advise", "svc", "t", "x", "--count", "2"]);
    let mut warm = t.start(&["dde", "advise", "svc", "t", "x", "--warm", "--count", "2"]);
    hot.stderr_line("advising on");
    warm.stderr_line("advising on");
    for v in ["a", "b"] {
        server
            .set_item("t", "x", Format::TEXT, format!("{v}\0").as_bytes())
            .unwrap();
        assert_eq!(hot.stdout_line(""), v);
        assert_eq!(warm.stdout_line(""), "changed");
        assert_eq!(warm.stdout_line(""), v);
    }
    hot.wait_success(DEADLINE);
    warm.wait_success(DEADLINE);
}

#[test]
fn advise_fails_when_the_server_dies_and_times_out_when_asked() {
    let t = TestNs::new();
    let mut s = serve(&t, &[]);
    let mut a = t.start(&["dde", "advise", "svc", "t", "x"]);
    a.stderr_line("advising on");
    // (Its first stderr line says the link is up; the error is the last.)
    let o = t.run(&[
        "dde",
        "advise",
        "svc",
        "t",
        "x",
        "--count",
        "1",
        "--timeout",
        "200ms",
    ]);
    assert!(!o.status.success());
    let last = o.stderr.trim_end().lines().last().unwrap();
    assert!(last.contains("0 of 1 changes of 'x'"), "{o:#?}");
    let o = t.run(&["dde", "advise", "svc", "t", "x", "--timeout", "200ms"]);
    o.assert_success();
    s.kill();
    let o = a.finish(DEADLINE);
    assert!(!o.status.success());
    let last = o.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("ipckit: 'svc':") && last.contains("went away"),
        "{o:#?}"
    );
}

#[test]
fn serve_unregisters_on_sigterm_and_serves_tcp() {
    let t = TestNs::new();
    let mut s = serve(&t, &["--tcp", "127.0.0.1:0"]);
    let addr = s.stdout_line("tcp://");
    assert_eq!(out(&t, &["dde", "request", &addr, "t", "x"]), "1\n");
    let c = ConversationOptions::new()
        .timeout(DEADLINE)
        .connect(&addr, "t")
        .unwrap();
    let mut hot = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    t.run(&["dde", "poke", &addr, "t", "x", "9"])
        .assert_success();
    assert_eq!(hot.recv_timeout(DEADLINE).unwrap().data.unwrap(), b"9\0");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    s.wait_success(DEADLINE);
    wait_until(DEADLINE, "the record is gone", || {
        t.ns.info("svc").unwrap().is_none()
    });
    let e = hot.recv_timeout(Duration::from_secs(30)).unwrap_err();
    assert_eq!(e.kind(), ipckit::ErrorKind::PeerGone);
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let t = TestNs::new();
    let o = t.run(&["dde", "request", "absent", "t", "x", "--timeout", "300ms"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("absent"), "{o:#?}");
    let o = t.run(&["dde", "serve", "svc", "--topic", "t", "--item", "novalue"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("NAME=VALUE"), "{o:#?}");
}

#[test]
fn dde_serve_stops_cleanly_after_its_timeout() {
    let t = crate::common::TestNs::new();
    let o = t.run(&["dde", "serve", "svc", "--topic", "t", "--timeout", "100ms"]);
    o.assert_success();
    assert!(t.ns.list().unwrap().is_empty());
    // --count conversations: two requests, then it exits.
    let mut srv = t.start(&[
        "dde",
        "serve",
        "svc",
        "--topic",
        "t",
        "--item",
        "x=1",
        "--count",
        "2",
        "--timeout",
        "30s",
    ]);
    crate::common::wait_live(&t.ns, "svc");
    for _ in 0..2 {
        let o = t.run(&["dde", "request", "svc", "t", "x"]);
        o.assert_success();
        assert_eq!(o.stdout, "1\n");
    }
    srv.wait_success(crate::common::DEADLINE);
    assert!(t.ns.list().unwrap().is_empty());
    let o = t.run(&[
        "dde",
        "serve",
        "svc",
        "--topic",
        "t",
        "--count",
        "1",
        "--timeout",
        "100ms",
    ]);
    assert!(!o.status.success(), "{o:#?}");
    assert!(
        o.stderr
            .contains("0 of 1 conversations ended within --timeout"),
        "{o:#?}"
    );
}
