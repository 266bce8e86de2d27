//! The `ipckit` command across machines over the Zenoh fabric: two network
//! namespaces joined by a veth pair stand for two machines (the library's
//! harness, `crates/ipckit/tests/support/netns.rs`); `ipckit service demo`
//! publishes in one, `ipckit call zenoh://…` and `ipckit ls --remote` run
//! in the other.
//!
//! Needs root (network namespaces); without it the tests print why and
//! pass, unless `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI). Multicast scouting is
//! off (`--no-scouting`): the only link is the veth pair, with private
//! addresses. Without the `zenoh` feature only the test that `zenoh://`
//! names and `--remote` then fail in one clear line runs.

mod common;

#[cfg(feature = "zenoh")]
mod across {
    use super::common::fabric::{fabric_namespace, ipckit_in};
    use super::common::netns::{can_run, Net, CLIENT_ADDR, PORT, SERVER_ADDR};
    use super::common::{Output, Proc, TestNs, DEADLINE};

    /// The server side: `ipckit service demo <name> [extra]`, listening on
    /// the server's veth address; its Zenoh id once it serves.
    fn start_demo(t: &TestNs, net: &Net, fns: &str, name: &str, extra: &[&str]) -> (Proc, String) {
        let listen = format!("tcp/{SERVER_ADDR}:{PORT}");
        let mut args = vec!["--listen", &listen, "service", "demo", name];
        args.extend_from_slice(extra);
        let mut p = Proc::spawn(&mut ipckit_in(t, &net.server_ns, fns, &args));
        // `fabric zenoh://NAME namespace NS id ZID`
        let line = p.stdout_line("fabric zenoh://");
        let id = line.rsplit(' ').next().unwrap_or_default().to_string();
        p.stdout_line("serving");
        (p, id)
    }

    /// `ipckit <args>` on the client side, connecting to the server's
    /// address, to completion.
    fn client(t: &TestNs, net: &Net, fns: &str, args: &[&str]) -> Output {
        let connect = format!("tcp/{SERVER_ADDR}:{PORT}");
        let listen = format!("tcp/{CLIENT_ADDR}:0");
        let mut all = vec!["--connect", &connect, "--listen", &listen];
        all.extend_from_slice(args);
        Proc::spawn(&mut ipckit_in(t, &net.client_ns, fns, &all)).finish(DEADLINE)
    }

    fn json(out: &Output) -> serde_json::Value {
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {out:#?}"))
    }

    #[test]
    fn service_demo_published_and_called_by_name_from_another_namespace() {
        if !can_run("service_demo_published_and_called_by_name_from_another_namespace") {
            return;
        }
        let net = Net::new();
        let fns = fabric_namespace("cli");
        let (ts, tc) = (TestNs::new(), TestNs::new());
        let (_server, server_id) = start_demo(&ts, &net, &fns, "calc", &["--fabric"]);

        let out = client(
            &tc,
            &net,
            &fns,
            &["call", "zenoh://calc", "add", r#"{"a":40,"b":2}"#, "--json"],
        );
        out.assert_success();
        let v = json(&out);
        assert_eq!(v["result"], 42, "{out:#?}");
        assert_eq!(v["transport"], "zenoh", "{out:#?}");

        // `--fabric` publishes the local server itself: its JSON Schemas
        // come along in the fabric's `ipckit.describe`.
        let out = client(
            &tc,
            &net,
            &fns,
            &["call", "zenoh://calc", "add", "--schema"],
        );
        out.assert_success();
        let v = json(&out);
        assert_eq!(v["method"], "add", "{out:#?}");
        assert!(v["request"]["properties"]["a"].is_object(), "{out:#?}");

        // A handler's error: one line, with its message.
        let big = format!(r#"{{"a":{},"b":1}}"#, i64::MAX);
        let out = client(&tc, &net, &fns, &["call", "zenoh://calc", "add", &big]);
        out.assert_one_line_failure();
        assert!(out.stderr.contains("overflows"), "{out:#?}");

        // No such service on the fabric: not found, in one line.
        let out = client(
            &tc,
            &net,
            &fns,
            &["call", "zenoh://nobody", "add", "{}", "--timeout", "1s"],
        );
        out.assert_one_line_failure();
        assert!(out.stderr.contains("no service of this name"), "{out:#?}");

        // Discovery from the other namespace: the service and its owner.
        let out = client(&tc, &net, &fns, &["ls", "--remote", "--json"]);
        out.assert_success();
        let v = json(&out);
        assert_eq!(v["namespace"], fns.as_str());
        let endpoints = v["endpoints"].as_array().expect("an endpoints array");
        assert_eq!(
            endpoints,
            &[serde_json::json!({"kind": "svc", "name": "calc", "owner": server_id})],
            "{out:#?}"
        );
        assert_eq!(v["peers"], serde_json::json!([server_id]), "{out:#?}");
        // The table form names it too.
        let out = client(&tc, &net, &fns, &["ls", "--remote"]);
        out.assert_success();
        assert!(
            out.stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["calc", "svc", &server_id]),
            "{out:#?}"
        );
    }

    #[test]
    fn ls_remote_watch_sees_a_service_appear_and_go() {
        if !can_run("ls_remote_watch_sees_a_service_appear_and_go") {
            return;
        }
        let net = Net::new();
        let fns = fabric_namespace("cli");
        let (ts, tc) = (TestNs::new(), TestNs::new());
        let connect = format!("tcp/{SERVER_ADDR}:{PORT}");
        let listen = format!("tcp/{CLIENT_ADDR}:0");
        // The watcher first (it connects, retrying, until the server
        // listens): it must report the server's arrival, then its death.
        let mut watch = Proc::spawn(&mut ipckit_in(
            &tc,
            &net.client_ns,
            &fns,
            &[
                "--connect",
                &connect,
                "--listen",
                &listen,
                "ls",
                "--remote",
                "--watch",
                "--json",
                "--timeout",
                "120s",
            ],
        ));
        let (mut server, server_id) = start_demo(&ts, &net, &fns, "zenoh://calc", &[]);
        let want = |event: &str| {
            serde_json::json!({"event": event, "kind": "svc", "name": "calc", "owner": server_id})
                .to_string()
        };
        let line = watch.stdout_line(r#"{"event":"appeared""#);
        assert_eq!(line, want("appeared"));
        // Killed, not stopped: the token goes with the process's session.
        server.kill();
        let line = watch.stdout_line(r#"{"event":"gone""#);
        assert_eq!(line, want("gone"));
    }
}

/// Built without the fabric: a `zenoh://` name, `--fabric` and `--remote`
/// each fail in one line that names the missing feature.
#[cfg(not(feature = "zenoh"))]
#[test]
fn fabric_names_without_the_feature_fail_in_one_line() {
    let t = common::TestNs::new();
    for args in [
        &["call", "zenoh://calc", "add", "{}"][..],
        &["service", "demo", "zenoh://calc"],
        &["service", "demo", "calc", "--fabric"],
        &["ls", "--remote"],
    ] {
        let out = t.run(args);
        out.assert_one_line_failure();
        assert!(out.stderr.contains("`zenoh` feature"), "{args:?}: {out:#?}");
    }
}
