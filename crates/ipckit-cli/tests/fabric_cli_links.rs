//! `ipckit dde` and mailslot groups across machines over the Zenoh fabric:
//! two network namespaces joined by a veth pair stand for two machines
//! (the library's harness, `crates/ipckit/tests/support/netns.rs`);
//! `ipckit dde serve zenoh://NAME` runs in one, `ipckit dde request|advise|
//! poke|execute zenoh://NAME` in the other.
//!
//! Needs root (network namespaces); without it the tests print why and
//! pass, unless `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI). Multicast scouting is
//! off (`--no-scouting`): the only link is the veth pair, with private
//! addresses.
#![cfg(feature = "zenoh")]

mod common;

use std::process::Command;

use common::fabric::{fabric_namespace, ipckit_in};
use common::netns::{can_run, Net, CLIENT_ADDR, PORT, SERVER_ADDR};
use common::{Output, Proc, TestNs, DEADLINE};

/// The server side: `ipckit --listen … <args>` in the server namespace.
fn server(t: &TestNs, net: &Net, fns: &str, args: &[&str]) -> Proc {
    let listen = format!("tcp/{SERVER_ADDR}:{PORT}");
    let mut all = vec!["--listen", &listen];
    all.extend_from_slice(args);
    Proc::spawn(&mut ipckit_in(t, &net.server_ns, fns, &all))
}

/// `ipckit --connect … <args>` on the client side.
fn client_cmd(t: &TestNs, net: &Net, fns: &str, args: &[&str]) -> Command {
    let connect = format!("tcp/{SERVER_ADDR}:{PORT}");
    let listen = format!("tcp/{CLIENT_ADDR}:0");
    let mut all = vec!["--connect", &connect, "--listen", &listen];
    all.extend_from_slice(args);
    ipckit_in(t, &net.client_ns, fns, &all)
}

/// [`client_cmd`], run to completion.
fn client(t: &TestNs, net: &Net, fns: &str, args: &[&str]) -> Output {
    Proc::spawn(&mut client_cmd(t, net, fns, args)).finish(DEADLINE)
}

#[test]
fn dde_over_the_fabric_from_another_namespace() {
    if !can_run("dde_over_the_fabric_from_another_namespace") {
        return;
    }
    let net = Net::new();
    let fns = fabric_namespace("cli-links");
    let (ts, tc) = (TestNs::new(), TestNs::new());
    let mut srv = server(
        &ts,
        &net,
        &fns,
        &[
            "dde",
            "serve",
            "zenoh://quotes",
            "--topic",
            "prices",
            "--item",
            "ACME=100",
        ],
    );
    srv.stderr_line("serving DDE service");

    let out = client(
        &tc,
        &net,
        &fns,
        &["dde", "request", "zenoh://quotes", "prices", "ACME"],
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "100", "{out:#?}");

    // A hot link across: each change the server makes is printed.
    let mut advise = Proc::spawn(&mut client_cmd(
        &tc,
        &net,
        &fns,
        &[
            "dde",
            "advise",
            "zenoh://quotes",
            "prices",
            "ACME",
            "--count",
            "2",
            "--timeout",
            "60s",
        ],
    ));
    advise.stderr_line("advising on");
    for v in ["101", "102"] {
        let cmd = format!("set ACME {v}");
        let out = client(
            &tc,
            &net,
            &fns,
            &["dde", "execute", "zenoh://quotes", "prices", &cmd],
        );
        out.assert_success();
    }
    let out = advise.finish(DEADLINE);
    out.assert_success();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["101", "102"],
        "{out:#?}"
    );

    // Poke, then read it back; a refused execute fails in one line.
    let out = client(
        &tc,
        &net,
        &fns,
        &["dde", "poke", "zenoh://quotes", "prices", "x", "7"],
    );
    out.assert_success();
    let out = client(
        &tc,
        &net,
        &fns,
        &["dde", "request", "zenoh://quotes", "prices", "x"],
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "7", "{out:#?}");
    let out = client(
        &tc,
        &net,
        &fns,
        &["dde", "execute", "zenoh://quotes", "prices", "nonsense"],
    );
    out.assert_one_line_failure();
    assert!(out.stderr.contains("unknown command"), "{out:#?}");

    // No such service on the fabric: one line.
    let out = client(
        &tc,
        &net,
        &fns,
        &[
            "dde",
            "request",
            "zenoh://nobody",
            "prices",
            "ACME",
            "--timeout",
            "1s",
        ],
    );
    out.assert_one_line_failure();
    assert!(
        out.stderr.contains("no DDE server of this name"),
        "{out:#?}"
    );
}

#[test]
fn group_send_reaches_a_member_in_another_namespace() {
    if !can_run("group_send_reaches_a_member_in_another_namespace") {
        return;
    }
    let net = Net::new();
    let fns = fabric_namespace("cli-links");
    let (ts, tc) = (TestNs::new(), TestNs::new());
    let mut member = server(
        &ts,
        &net,
        &fns,
        &[
            "slot",
            "group-read",
            "zenoh://news",
            "--count",
            "1",
            "--timeout",
            "60s",
        ],
    );
    member.stderr_line("joined group 'news'");
    let out = client(
        &tc,
        &net,
        &fns,
        &[
            "slot",
            "group-send",
            "zenoh://news",
            "hello across",
            "--json",
        ],
    );
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out:#?}"));
    assert_eq!(v["delivered"], 0, "{out:#?}");
    assert_eq!(v["fabric"], true, "{out:#?}");
    assert_eq!(v["fabric_members"], 1, "{out:#?}");
    let out = member.finish(DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout.trim(), "hello across", "{out:#?}");
}
