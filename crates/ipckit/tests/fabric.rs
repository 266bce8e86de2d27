//! Services by name across machines over the Zenoh fabric: two network
//! namespaces joined by a veth pair stand for two machines; a real server
//! process runs in one and a real client process in the other.
//!
//! Needs root (to make network namespaces). Without it the tests print why
//! and pass, unless `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI) makes that a failure.
//! Traffic stays inside the two namespaces: the only link is the veth
//! pair, with private addresses, and multicast scouting is off.
#![cfg(feature = "zenoh")]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipckit::fabric::Fabric;
use ipckit::service::RemoteError;
use support::netns::{can_run, Net, CLIENT_ADDR, PORT, SERVER_ADDR};
use support::{Output, Proc, DEADLINE};

/// A Zenoh namespace of its own for each test.
fn fabric_namespace() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Start the server role in the server namespace and wait until it is
/// published.
fn start_server(net: &Net, ns: &str) -> Proc {
    start_server_scouting(net, ns, "no-scouting")
}

/// [`start_server`] with multicast scouting `scouting` or `no-scouting`.
fn start_server_scouting(net: &Net, ns: &str, scouting: &str) -> Proc {
    let mut p = Proc::spawn(&mut net.role(&net.server_ns, "server", &[ns, scouting]));
    p.stdout_line("ready");
    p
}

fn run_client(net: &Net, ns: &str, scenario: &str) -> Output {
    Proc::spawn(&mut net.role(&net.client_ns, "client", &[ns, scenario])).finish(DEADLINE * 2)
}

fn expect_line<'a>(out: &'a Output, prefix: &str) -> &'a str {
    out.line(prefix)
        .unwrap_or_else(|| panic!("no line {prefix:?} from the client: {out:#?}"))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn service_called_by_name_from_another_namespace() {
    if !can_run("service_called_by_name_from_another_namespace") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace();
    let _server = start_server(&net, &ns);
    let out = run_client(&net, &ns, "calls");
    out.assert_success();
    assert_eq!(expect_line(&out, "sum="), "42");
    assert_eq!(expect_line(&out, "json="), "7");
    assert_eq!(expect_line(&out, "overflow="), "remote 7 overflow");
    assert_eq!(
        expect_line(&out, "unknown-method="),
        format!("remote {}", ipckit::service::CODE_UNKNOWN_METHOD)
    );
    assert_eq!(expect_line(&out, "methods="), "add,ipckit.describe,nap,neg");
    // The server runs in the other namespace: a process of its own.
    assert_ne!(
        expect_line(&out, "server-pid="),
        std::process::id().to_string()
    );
    assert_eq!(expect_line(&out, "unknown-name="), "not-found");
}

#[test]
fn server_killed_mid_call_gives_peer_gone() {
    if !can_run("server_killed_mid_call_gives_peer_gone") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace();
    let mut server = start_server(&net, &ns);
    let client = Proc::spawn(&mut net.role(&net.client_ns, "client", &[&ns, "mid-call"]));
    // The handler has the call (and will sleep far past the client's
    // deadline): kill the server process under it.
    server.stdout_line("napping");
    server.kill();
    let out = client.finish(DEADLINE * 2);
    out.assert_success();
    // Not `timeout`: the token's disappearance ended the call.
    assert_eq!(expect_line(&out, "mid-call="), "peer-gone", "{out:#?}");
    // For the record only (no timing assertion): how long after the call
    // began the client saw the server go.
    eprintln!(
        "PeerGone {} ms after the call began (the kill came once the handler ran)",
        expect_line(&out, "mid-call-ms=")
    );
    assert_eq!(expect_line(&out, "after="), "peer-gone");
}

#[test]
fn no_server_means_not_found() {
    if !can_run("no_server_means_not_found") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace();
    // The client's fabric is up, but nobody serves this namespace.
    let out = run_client(&net, &ns, "not-found");
    out.assert_success();
    assert_eq!(expect_line(&out, "connect="), "not-found");
}

#[test]
fn service_found_by_multicast_scouting() {
    if !can_run("service_found_by_multicast_scouting") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace();
    let _server = start_server_scouting(&net, &ns, "scouting");
    let out = run_client(&net, &ns, "scouting");
    out.assert_success();
    assert_eq!(expect_line(&out, "sum="), "3");
}

// ---------------------------------------------------------------------------
// Roles (the processes in the namespaces)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "a helper process re-exec'd by the tests above"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "server" => server_role(&args[0], &args[1] == "scouting"),
        "client" => client_role(&args[0], &args[1]),
        other => panic!("unknown role {other}"),
    }
}

fn server_role(ns: &str, scouting: bool) {
    let fabric = Fabric::builder()
        .namespace(ns)
        .multicast_scouting(scouting)
        .listen(format!("tcp/{SERVER_ADDR}:{PORT}"))
        .open()
        .expect("open the fabric");
    let server = fabric
        .server("calc")
        .handler("add", |(a, b): (i64, i64)| {
            a.checked_add(b).ok_or(RemoteError::new(7, "overflow"))
        })
        .handler("neg", |x: i64| Ok::<_, RemoteError>(-x))
        .handler("nap", |ms: u64| {
            support::say("napping");
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, RemoteError>(ms)
        })
        .bind()
        .expect("publish the server");
    support::say("ready");
    server.wait();
}

fn client_fabric(ns: &str) -> Fabric {
    Fabric::builder()
        .namespace(ns)
        .multicast_scouting(false)
        .listen(format!("tcp/{CLIENT_ADDR}:0"))
        .connect(format!("tcp/{SERVER_ADDR}:{PORT}"))
        .open()
        .expect("open the fabric")
}

fn client_role(ns: &str, scenario: &str) {
    if scenario == "scouting" {
        // No endpoint to connect to: the server is found by multicast
        // scouting over the veth link (the only interface besides lo).
        let fabric = Fabric::builder()
            .namespace(ns)
            .multicast_scouting(true)
            .listen(format!("tcp/{CLIENT_ADDR}:0"))
            .open()
            .expect("open the fabric");
        let calc = fabric
            .connect_service("calc", DEADLINE)
            .expect("find calc by multicast scouting");
        let sum: i64 = calc.call("add", &(1i64, 2i64)).expect("add");
        support::say(&format!("sum={sum}"));
        return;
    }
    let fabric = client_fabric(ns);
    match scenario {
        "calls" => {
            let calc = fabric
                .connect_service("calc", DEADLINE)
                .expect("find calc by name");
            let sum: i64 = calc.call("add", &(40i64, 2i64)).expect("add");
            support::say(&format!("sum={sum}"));
            let v = calc
                .call_json("neg", serde_json::json!(-7), Some(DEADLINE))
                .expect("neg as JSON");
            support::say(&format!("json={v}"));
            let e = calc
                .call_timeout::<_, i64>("add", &(i64::MAX, 1i64), DEADLINE)
                .unwrap_err();
            assert_eq!(e.kind(), ipckit::ErrorKind::Remote, "{e:?}");
            support::say(&format!(
                "overflow=remote {} {}",
                e.remote_code().unwrap(),
                e.message()
            ));
            let e = calc.call::<_, i64>("nope", &()).unwrap_err();
            assert_eq!(e.kind(), ipckit::ErrorKind::Remote, "{e:?}");
            support::say(&format!(
                "unknown-method=remote {}",
                e.remote_code().unwrap()
            ));
            let d = calc.describe().expect("describe");
            let names: Vec<_> = d.methods.iter().map(|m| m.name.as_str()).collect();
            support::say(&format!("methods={}", names.join(",")));
            support::say(&format!("server-pid={}", d.pid));
            let e = fabric
                .connect_service("nobody", Duration::from_millis(500))
                .unwrap_err();
            support::say(&format!("unknown-name={}", e.kind()));
        }
        "not-found" => {
            let e = fabric
                .connect_service("calc", Duration::from_secs(1))
                .unwrap_err();
            support::say(&format!("connect={}", e.kind()));
        }
        "mid-call" => {
            let calc = fabric
                .connect_service("calc", DEADLINE)
                .expect("find calc by name");
            let t = Instant::now();
            // The handler sleeps far longer than this call's deadline: only
            // the server's departure can end it before the deadline.
            let e = calc
                .call_timeout::<_, u64>("nap", &((DEADLINE * 4).as_millis() as u64), DEADLINE)
                .unwrap_err();
            support::say(&format!("mid-call={}", e.kind()));
            support::say(&format!("mid-call-ms={}", t.elapsed().as_millis()));
            eprintln!("mid-call error: {e}");
            let e = calc.call::<_, u64>("nap", &0u64).unwrap_err();
            support::say(&format!("after={}", e.kind()));
        }
        other => panic!("unknown scenario {other}"),
    }
}
