//! Services by name across machines over the Zenoh fabric: two network
//! namespaces joined by a veth pair stand for two machines; a real server
//! process runs in one and a real client process in the other.
//!
//! Needs root (to make network namespaces). Without it the tests print why
//! and pass, unless `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI) makes that a failure.
//! Traffic stays inside the two namespaces: the only link is the veth
//! pair, with private addresses, and multicast scouting is off (except in
//! the one test of it, where it too stays on the veth link).
#![cfg(feature = "zenoh")]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ipckit::fabric::{Change, Fabric};
use ipckit::service::RemoteError;
use support::netns::{can_run, fabric_namespace, ip, Net, CLIENT_ADDR, PORT, SERVER_ADDR};
use support::{expect_line, Output, Proc, DEADLINE};

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

/// A Zenoh configuration file with a short lease (`lease_ms`), so that a
/// broken link ends the sessions (and drops their tokens) within
/// seconds rather than Zenoh's default 10 s. The directory holding it is
/// removed on drop.
struct LeaseConfig {
    dir: tempfile::TempDir,
}

impl LeaseConfig {
    fn new(lease_ms: u64) -> LeaseConfig {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        std::fs::write(
            dir.path().join("zenoh.json5"),
            format!(
                "{{ transport: {{ link: {{ tx: {{ lease: {lease_ms}, keep_alive: 4 }} }} }} }}"
            ),
        )
        .expect("write the Zenoh configuration");
        LeaseConfig { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("zenoh.json5")
    }

    /// `cmd` with `IPCKIT_ZENOH_CONFIG` pointing at this file.
    fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env(ipckit::fabric::CONFIG_ENV, self.path())
    }
}

/// The veth end inside network namespace `ns` (the only veth there).
fn veth_in(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "type", "veth"])
        .output()
        .expect("run ip link show");
    let text = String::from_utf8_lossy(&out.stdout);
    // `7: vf123x0c@if6: <BROADCAST,...> ...`
    let name = text
        .split(':')
        .nth(1)
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(!name.is_empty(), "no veth in {ns}: {text}");
    name
}

/// Take the link `dev` in `ns` down, or bring it back up and wait until it
/// carries traffic again.
fn set_link(ns: &str, dev: &str, up: bool) {
    ip(&["-n", ns, "link", "set", dev, if up { "up" } else { "down" }]);
    if up {
        support::wait_until(DEADLINE, &format!("{dev} is running again"), || {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", "dev", dev])
                .output()
                .expect("run ip link show");
            String::from_utf8_lossy(&out.stdout).contains("LOWER_UP")
        });
    }
}

fn run_client(net: &Net, ns: &str, scenario: &str) -> Output {
    Proc::spawn(&mut net.role(&net.client_ns, "client", &[ns, scenario])).finish(DEADLINE * 2)
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
    let ns = fabric_namespace("test");
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
    // call_async across, awaited on a tokio runtime: two in flight at once,
    // and a handler's error.
    assert_eq!(expect_line(&out, "async="), "42,-7");
    assert_eq!(expect_line(&out, "async-overflow="), "remote 7");
}

#[test]
fn server_killed_mid_call_gives_peer_gone() {
    if !can_run("server_killed_mid_call_gives_peer_gone") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("test");
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
    // An async call in flight when the server died ends the same way.
    assert_eq!(expect_line(&out, "async-mid-call="), "peer-gone");
}

#[test]
fn link_down_then_up_the_same_client_calls_again() {
    if !can_run("link_down_then_up_the_same_client_calls_again") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("test");
    // A 1 s lease on both sides: the broken link ends the session (and
    // withdraws the server's token on the client's side) about 1 s after
    // it breaks.
    let lease = LeaseConfig::new(1000);
    let mut server =
        Proc::spawn(lease.apply(&mut net.role(&net.server_ns, "server", &[&ns, "no-scouting"])));
    server.stdout_line("ready");
    let mut client =
        Proc::talking(lease.apply(&mut net.role(&net.client_ns, "client", &[&ns, "link"])));
    client.stdout_line("connected");
    let dev = veth_in(&net.client_ns);
    set_link(&net.client_ns, &dev, false);
    client.tell("down");
    // The client saw the outage: a call then times out, or (once the
    // lease has run out) fails with PeerGone; a call waiting without a
    // near deadline ends with PeerGone.
    client.stdout_line("down-seen");
    set_link(&net.client_ns, &dev, true);
    client.tell("up");
    let out = client.finish(DEADLINE * 3);
    out.assert_success();
    // For the record only (no timing assertion).
    eprintln!(
        "link: PeerGone {} ms into the outage; calls again {} ms after the link came back",
        expect_line(&out, "gone-ms="),
        expect_line(&out, "back-ms=")
    );
    assert_eq!(expect_line(&out, "before="), "3");
    let outage = expect_line(&out, "outage=");
    assert!(
        outage == "timeout" || outage == "peer-gone",
        "a call during the outage gave {outage}: {out:#?}"
    );
    assert_eq!(expect_line(&out, "gone="), "peer-gone");
    assert_eq!(expect_line(&out, "alive-during-outage="), "false");
    // The same client, once the link is back and the sessions met again.
    assert_eq!(expect_line(&out, "after="), "3");
    assert_eq!(expect_line(&out, "after-async="), "5");
    drop(server);
}

#[test]
fn discovery_lists_and_watches_the_other_namespace() {
    if !can_run("discovery_lists_and_watches_the_other_namespace") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("test");
    // The watcher starts first, so it must see the server appear.
    let mut watcher = Proc::talking(&mut net.role(&net.client_ns, "client", &[&ns, "watch"]));
    watcher.stdout_line("watching");
    let mut server = Proc::spawn(&mut net.role(&net.server_ns, "server", &[&ns, "no-scouting"]));
    let server_id = server.stdout_line("id=")["id=".len()..].to_string();
    server.stdout_line("ready");
    watcher.stdout_line(&format!("+svc calc {server_id}"));
    let out = run_client(&net, &ns, "list");
    out.assert_success();
    assert_eq!(
        expect_line(&out, "endpoints="),
        format!("svc calc {server_id}")
    );
    // The server's session among the peers (the watcher's may be too:
    // Zenoh's gossip introduces the peers of a peer).
    assert!(
        expect_line(&out, "peers=")
            .split(';')
            .any(|p| p == server_id),
        "{out:#?}"
    );
    server.kill();
    watcher.stdout_line(&format!("-svc calc {server_id}"));
}

#[test]
fn no_server_means_not_found() {
    if !can_run("no_server_means_not_found") {
        return;
    }
    let net = Net::new();
    let ns = fabric_namespace("test");
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
    let ns = fabric_namespace("test");
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
    support::say(&format!("id={}", fabric.id()));
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
            let rt = runtime();
            let (a, b) = (
                calc.call_async::<_, i64>("add", &(40i64, 2i64)),
                calc.call_async::<_, i64>("neg", &7i64),
            );
            let (a, b) = rt.block_on(async { (a.await, b.await) });
            support::say(&format!("async={},{}", a.expect("add"), b.expect("neg")));
            let e = rt
                .block_on(calc.call_async::<_, i64>("add", &(i64::MAX, 1i64)))
                .unwrap_err();
            support::say(&format!(
                "async-overflow={} {}",
                e.kind(),
                e.remote_code().unwrap_or(0)
            ));
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
            // An async call in flight too (sent now, awaited later).
            let pending = calc.call_async::<_, u64>("nap", &((DEADLINE * 4).as_millis() as u64));
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
            let e = runtime().block_on(pending).unwrap_err();
            support::say(&format!("async-mid-call={}", e.kind()));
        }
        "link" => link_scenario(&fabric),
        "watch" => {
            let w = fabric.watch().expect("watch the fabric");
            support::say("watching");
            // Until the parent has seen what it waits for and kills us.
            loop {
                let c = w.next_timeout(DEADLINE * 4).expect("watch");
                let Some(c) = c else {
                    panic!("nothing changed on the fabric within {:?}", DEADLINE * 4)
                };
                let (sign, e) = match &c {
                    Change::Appeared(e) => ('+', e),
                    Change::Gone(e) => ('-', e),
                };
                support::say(&format!(
                    "{sign}{} {} {}",
                    e.kind,
                    e.name,
                    e.owner.as_deref().unwrap_or("-")
                ));
            }
        }
        "list" => {
            // Wait for the server's token (the session meets its peer a
            // moment after it opens), then list.
            let calc = fabric
                .connect_service("calc", DEADLINE)
                .expect("find calc by name");
            drop(calc);
            let all = fabric.endpoints(DEADLINE).expect("list the endpoints");
            let all: Vec<String> = all
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e.kind,
                        e.name,
                        e.owner.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            support::say(&format!("endpoints={}", all.join(";")));
            support::say(&format!("peers={}", fabric.peers().join(";")));
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

/// The client of [`link_down_then_up_the_same_client_calls_again`]: one
/// client across the outage, told by the parent (stdin) when the link is
/// down and when it is back.
fn link_scenario(fabric: &Fabric) {
    let calc = fabric
        .connect_service("calc", DEADLINE)
        .expect("find calc by name");
    let sum: i64 = calc.call("add", &(1i64, 2i64)).expect("add");
    support::say(&format!("before={sum}"));
    support::say("connected");
    let mut lines = std::io::stdin().lines();
    let mut expect = |what: &str| {
        let l = lines
            .next()
            .expect("a line from the parent")
            .expect("stdin");
        assert_eq!(l, what);
    };
    expect("down");
    let e = calc
        .call_timeout::<_, i64>("add", &(1i64, 2i64), Duration::from_millis(300))
        .unwrap_err();
    support::say(&format!("outage={}", e.kind()));
    let t = Instant::now();
    // Waits until the lease runs out and the token goes (the deadline is
    // only a bound).
    let e = calc
        .call_timeout::<_, i64>("add", &(1i64, 2i64), DEADLINE)
        .unwrap_err();
    support::say(&format!("gone={}", e.kind()));
    support::say(&format!("gone-ms={}", t.elapsed().as_millis()));
    // The token's withdrawal may trail the call's end by a moment (a query
    // the closed session ended is answered PeerGone at once).
    let gone = support::poll_until(DEADLINE, || !calc.is_alive());
    support::say(&format!("alive-during-outage={}", !gone));
    support::say("down-seen");
    expect("up");
    let t = Instant::now();
    // Zenoh reconnects to its connect endpoint by itself (retrying every
    // 1 to 4 s); the token comes back with the session.
    assert!(
        calc.wait_alive(DEADLINE),
        "the server did not come back within {DEADLINE:?} of the link"
    );
    let sum: i64 = calc
        .call_timeout("add", &(1i64, 2i64), DEADLINE)
        .expect("add after the link came back");
    support::say(&format!("after={sum}"));
    support::say(&format!("back-ms={}", t.elapsed().as_millis()));
    let neg: i64 = runtime()
        .block_on(calc.call_async("neg", &-5i64))
        .expect("neg (async) after the link came back");
    support::say(&format!("after-async={neg}"));
}
