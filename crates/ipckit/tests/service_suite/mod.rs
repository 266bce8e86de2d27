//! The service suite, shared by `service.rs` (shared-memory transport, the
//! default) and `service_socket.rs` (`IPCKIT_TRANSPORT=socket`): services
//! across real processes — a demo server process and load-client processes
//! (this test binary re-exec'd in the roles `service-demo` and
//! `service-load`, see `child_role` at the bottom), and this test process
//! as a (sometimes hostile) client. The including file defines
//! `SOCKET: bool`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipckit::service::{Client, Describe, Encoding, RemoteError, Server};
use ipckit::{ErrorKind, Namespace, Transport};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::SOCKET;
use crate::support::{self, poll_until, Proc, TestNs};

/// Put this process (and its children, which inherit the environment) on
/// the flavor's transport. Called before any connection.
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if SOCKET {
            std::env::set_var(ipckit::transport::TRANSPORT_ENV, "socket");
        } else {
            std::env::remove_var(ipckit::transport::TRANSPORT_ENV);
        }
    });
}

/// The transport every local client of this flavor must get.
fn expected_transport() -> Transport {
    if SOCKET {
        Transport::Socket
    } else {
        Transport::SharedMemory
    }
}

/// A `service-demo` server process serving `svc` in a fresh namespace.
struct DemoServer {
    proc: Proc,
    tcp: Option<String>,
    t: TestNs,
}

impl DemoServer {
    /// Start the server and wait until it says it serves (and, with `tcp`,
    /// where).
    fn start(tcp: bool) -> DemoServer {
        setup();
        let t = TestNs::new();
        let mut args = vec!["svc"];
        if tcp {
            args.extend(["--tcp", "127.0.0.1:0"]);
        }
        let mut proc = t.start("service-demo", &args);
        proc.stdout_line("serving");
        let tcp = tcp.then(|| proc.stdout_line("tcp://"));
        DemoServer { proc, tcp, t }
    }

    fn ns(&self) -> &Namespace {
        &self.t.ns
    }

    fn client(&self) -> Client {
        Client::options()
            .namespace(self.ns())
            .timeout(Duration::from_secs(10))
            .connect("svc")
            .unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.ns().socket_path("svc")
    }

    /// What the server logged so far (its stderr).
    fn log(&self) -> String {
        self.proc.stderr_so_far()
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
struct MyInfo {
    red: f64,
    blue: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct SleepArgs {
    ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct Slept {
    slept_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
struct PanicArgs {
    message: Option<String>,
}

/// Poll `cond` until it holds or `within` passes; whether it did.
fn wait_until(within: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_until(within, cond)
}

/// Read from a raw socket until the server closes it; true if it did
/// within `within` (end-of-stream or reset).
fn closed_by_server(s: &mut UnixStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn raw_connect(srv: &DemoServer) -> UnixStream {
    let mut s = UnixStream::connect(srv.socket()).unwrap();
    let mut hello = [0u8; 16];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"IPCKSERV");
    s
}

fn header(kind: u8, enc: u8, method_len: u16, id: u64, body_len: u64) -> Vec<u8> {
    let mut h = vec![kind, enc];
    h.extend_from_slice(&method_len.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&body_len.to_le_bytes());
    h
}

#[test]
fn clients_use_the_flavors_transport() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    assert_eq!(c.transport(), expected_transport());
    let r: i64 = c.call("add", &AddArgs { a: 1, b: 2 }).unwrap();
    assert_eq!(r, 3);
    let d = c.describe().unwrap();
    // One connection whatever the transport; its lanes counted apart.
    assert_eq!(d.connections, 1, "{d:?}");
    assert_eq!(d.lanes > 0, !SOCKET, "{d:?}");
    // An explicit opt-out always gets the socket.
    let s = Client::options()
        .namespace(srv.ns())
        .transport(Transport::Socket)
        .connect("svc")
        .unwrap();
    assert_eq!(s.transport(), Transport::Socket);
    assert_eq!(s.call::<_, i64>("add", &AddArgs { a: 2, b: 2 }).unwrap(), 4);
}

#[test]
fn client_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Client>();
    check::<Server>();
}

#[test]
fn the_seed_scenario_compare_returns_the_modified_struct() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    let out: MyInfo = c
        .call(
            "compare",
            &MyInfo {
                red: 3333.0,
                blue: 20.01,
            },
        )
        .unwrap();
    assert_eq!(
        out,
        MyInfo {
            red: 2.0,
            blue: 1.0
        }
    );
    // The same calls with JSON bodies, as the CLI and other languages send.
    let v = c
        .call_json("compare", json!({"red": 3333.0, "blue": 20.01}), None)
        .unwrap();
    assert_eq!(v, json!({"red": 2.0, "blue": 1.0}));
    let v = c.call_json("add", json!({"a": 1, "b": 2}), None).unwrap();
    assert_eq!(v, json!(3));
    let v = c.call_json("echo", json!({"x": [1, "two"]}), None).unwrap();
    assert_eq!(v, json!({"x": [1, "two"]}));
    let d = c
        .call_json(ipckit::service::DESCRIBE, json!({}), None)
        .unwrap();
    let names: Vec<&str> = d["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in ["add", "compare", "echo", "ipckit.describe", "sleep"] {
        assert!(names.contains(&m), "{names:?}");
    }
    assert!(d["methods"].to_string().contains("MyInfo"), "{d}");
    let listed = srv.ns().list().unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.name == "svc" && e.kind == "service"),
        "{listed:?}"
    );
}

#[test]
fn sixty_four_client_processes_get_every_answer_once() {
    let srv = DemoServer::start(false);
    let procs: Vec<(u64, Proc)> = (0..64u64)
        .map(|k| {
            let client = k.to_string();
            let mut args = vec!["svc", "--calls", "1000", "--client", &client];
            args.extend(["--threads", "4"]);
            if k % 2 == 1 {
                args.push("--json-bodies");
            }
            (k, srv.t.start("service-load", &args))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    for (k, p) in procs {
        let out = p.finish(deadline.saturating_duration_since(Instant::now()));
        assert!(out.status.success(), "client {k}: {out:#?}");
        let v: serde_json::Value =
            serde_json::from_str(out.line("RESULT ").expect("a result line")).unwrap();
        assert_eq!(v, json!({ "client": k, "ok": 1000 }));
    }
    let d = srv.client().describe().unwrap();
    // Every call reached the server once: 64 000 adds plus this describe.
    assert_eq!(d.calls, 64_001, "{d:?}");
    assert_eq!(d.errors, 0, "{d:?}");
}

#[test]
fn three_hundred_connections_are_served_at_once() {
    let srv = DemoServer::start(false);
    let clients: Vec<Client> = (0..300).map(|_| srv.client()).collect();
    let clients = Arc::new(clients);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let cs = clients.clone();
            std::thread::spawn(move || {
                for (i, c) in cs.iter().enumerate().skip(t).step_by(4) {
                    let r: i64 = c.call("add", &AddArgs { a: i as i64, b: 1 }).unwrap();
                    assert_eq!(r, i as i64 + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let d = clients[0].describe().unwrap();
    assert_eq!(d.connections, 300, "{d:?}");
}

#[test]
fn several_calls_in_flight_on_one_connection_complete_independently() {
    let srv = DemoServer::start(false);
    let c = Arc::new(srv.client());
    let slow = {
        let c = c.clone();
        std::thread::spawn(move || c.call::<_, Slept>("sleep", &SleepArgs { ms: 1500 }))
    };
    assert!(wait_until(Duration::from_secs(10), || {
        c.describe().unwrap().in_flight >= 2
    }));
    // The sleep is still running, yet this call on the same connection
    // is answered.
    let r: i64 = c.call("add", &AddArgs { a: 2, b: 3 }).unwrap();
    assert_eq!(r, 5);
    assert!(!slow.is_finished());
    assert_eq!(slow.join().unwrap().unwrap(), Slept { slept_ms: 1500 });
}

#[test]
fn server_killed_mid_call_releases_every_caller_with_peer_gone() {
    let mut srv = DemoServer::start(false);
    let shared = Arc::new(srv.client());
    let (tx, rx) = mpsc::channel();
    for i in 0..10 {
        let tx = tx.clone();
        // Eight callers share one connection, two have their own.
        let c = if i < 8 { Some(shared.clone()) } else { None };
        let own = if c.is_none() {
            Some(srv.client())
        } else {
            None
        };
        std::thread::spawn(move || {
            let c: &Client = match (&c, &own) {
                (Some(c), _) => c,
                (_, Some(o)) => o,
                _ => unreachable!(),
            };
            let r = c.call::<_, Slept>("sleep", &SleepArgs { ms: 120_000 });
            let _ = tx.send(r);
        });
    }
    drop(tx);
    let probe = srv.client();
    assert!(
        wait_until(Duration::from_secs(20), || probe
            .describe()
            .is_ok_and(|d| d.in_flight >= 11)),
        "the ten calls never got in flight"
    );
    srv.proc.kill(); // SIGKILL
    for _ in 0..10 {
        // Far less than the 120 s the calls would take: nobody hangs.
        let r = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a caller was not released after the server died");
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    }
    // Later calls fail at once too.
    let e = shared
        .call::<_, i64>("add", &AddArgs { a: 1, b: 1 })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone);
}

#[test]
fn call_timeout_gives_timeout_and_the_connection_stays_usable() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    let e = c
        .call_timeout::<_, Slept>("sleep", &SleepArgs { ms: 400 }, Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let r: i64 = c.call("add", &AddArgs { a: 40, b: 2 }).unwrap();
    assert_eq!(r, 42);
    // Outlasts the abandoned call: its late reply is discarded, not taken
    // for this one.
    let r: Slept = c.call("sleep", &SleepArgs { ms: 700 }).unwrap();
    assert_eq!(r, Slept { slept_ms: 700 });
    // A JSON call's timeout does the same, and says which call it was.
    let e = c
        .call_json(
            "sleep",
            json!({"ms": 3000}),
            Some(Duration::from_millis(100)),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("no reply to 'sleep'"), "{e}");
}

#[test]
fn handler_error_and_panic_are_remote_errors_and_the_server_goes_on() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    let e = c
        .call::<_, i64>("add", &AddArgs { a: i64::MAX, b: 1 })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert_eq!(e.remote_code(), Some(ipckit::service::CODE_HANDLER));
    assert!(e.to_string().contains("overflows"), "{e}");

    let e = c
        .call::<_, ()>(
            "panic",
            &PanicArgs {
                message: Some("boom 17".into()),
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert_eq!(e.remote_code(), Some(ipckit::service::CODE_INTERNAL));
    assert!(e.to_string().contains("panicked: boom 17"), "{e}");
    // Same connection, same server: still serving.
    let r: i64 = c.call("add", &AddArgs { a: 1, b: 1 }).unwrap();
    assert_eq!(r, 2);

    // The handler's error reaches a JSON caller too, with its code.
    let e = c
        .call_json("add", json!({"a": i64::MAX, "b": 1}), None)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert_eq!(e.remote_code(), Some(ipckit::service::CODE_HANDLER));
    let s = e.to_string();
    assert!(s.contains("code 1") && s.contains("overflows"), "{s}");
    let d = c.describe().unwrap();
    assert_eq!(d.errors, 3, "{d:?}");
}

#[test]
fn unknown_method_is_a_remote_error_naming_it() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    let e = c
        .call::<_, i64>("multiply", &AddArgs { a: 1, b: 2 })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert_eq!(e.remote_code(), Some(ipckit::service::CODE_UNKNOWN_METHOD));
    assert!(e.to_string().contains("unknown method 'multiply'"), "{e}");
    let e = c.call_json("multiply", json!({}), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert!(e.to_string().contains("'multiply'"), "{e}");
}

#[test]
fn wrong_types_give_decode_or_bad_request_errors_naming_method_and_type() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    // The reply (an i64) is not a String: Decode on the client.
    let e = c
        .call::<_, String>("add", &AddArgs { a: 1, b: 2 })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    let s = e.to_string();
    assert!(s.contains("'add'") && s.contains("String"), "{s}");
    // The request is not an AddArgs: the server says so.
    let e = c.call_json("add", json!({"a": "one"}), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert_eq!(e.remote_code(), Some(ipckit::service::CODE_BAD_REQUEST));
    let s = e.to_string();
    assert!(s.contains("AddArgs") && s.contains("-32602"), "{s}");
}

#[test]
fn absent_service_is_not_found() {
    setup();
    let t = TestNs::new();
    let e = Client::options()
        .namespace(&t.ns)
        .connect("none")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = Client::options()
        .namespace(&t.ns)
        .timeout(Duration::from_millis(50))
        .connect("none")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[test]
fn malformed_and_truncated_frames_disconnect_only_that_client() {
    let srv = DemoServer::start(false);
    let good = srv.client();
    assert_eq!(
        good.call::<_, i64>("add", &AddArgs { a: 1, b: 1 }).unwrap(),
        2
    );

    // Garbage header: unknown kind.
    let mut bad = raw_connect(&srv);
    // One write: the server may hang up right after the header.
    bad.write_all(&[header(9, 0, 4, 1, 0), b"echo".to_vec()].concat())
        .unwrap();
    assert!(closed_by_server(&mut bad, Duration::from_secs(20)));
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .log()
            .contains("malformed frame")),
        "{}",
        srv.log()
    );

    // Non-zero reserved bytes.
    let mut bad = raw_connect(&srv);
    let mut h = header(1, 1, 4, 1, 2);
    h[6] = 0xff;
    bad.write_all(&h).unwrap();
    assert!(closed_by_server(&mut bad, Duration::from_secs(20)));

    // Truncated: a valid header announcing 100 bytes, 10 sent, then the
    // client hangs up.
    let mut trunc = raw_connect(&srv);
    trunc.write_all(&header(1, 1, 4, 7, 100)).unwrap();
    trunc.write_all(b"echo").unwrap();
    trunc.write_all(&[b' '; 10]).unwrap();
    trunc.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_server(&mut trunc, Duration::from_secs(20)));
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .log()
            .contains("truncated frame")),
        "{}",
        srv.log()
    );
    assert!(
        srv.log().contains("disconnected client pid"),
        "{}",
        srv.log()
    );

    // The well-behaved client, connected all along, is still served, and so
    // is a new one.
    assert_eq!(
        good.call::<_, i64>("add", &AddArgs { a: 2, b: 2 }).unwrap(),
        4
    );
    assert_eq!(
        srv.client()
            .call::<_, i64>("add", &AddArgs { a: 3, b: 3 })
            .unwrap(),
        6
    );
    // A raw but well-formed JSON call works on the same socket format.
    let mut raw = raw_connect(&srv);
    let body = br#"{"a":5,"b":6}"#;
    raw.write_all(&header(1, 1, 3, 99, body.len() as u64))
        .unwrap();
    raw.write_all(b"add").unwrap();
    raw.write_all(body).unwrap();
    let mut h = [0u8; 24];
    raw.read_exact(&mut h).unwrap();
    assert_eq!(h[0], 2, "a reply frame");
    assert_eq!(u64::from_le_bytes(h[8..16].try_into().unwrap()), 99);
    let n = u64::from_le_bytes(h[16..24].try_into().unwrap()) as usize;
    let mut b = vec![0u8; n];
    raw.read_exact(&mut b).unwrap();
    assert_eq!(b, b"11");
}

#[test]
fn a_frame_announcing_four_gib_is_refused_without_reading_it() {
    let srv = DemoServer::start(false);
    let mut s = raw_connect(&srv);
    // Only the header and method: if the server tried to read (or set
    // aside) the 4 GiB body it would wait for it instead of hanging up.
    s.write_all(&[header(1, 0, 4, 1, 4 << 30), b"echo".to_vec()].concat())
        .unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(20)));
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .log()
            .contains("body of 4294967296 bytes, over the limit of 67108864")),
        "{}",
        srv.log()
    );
    assert_eq!(
        srv.client()
            .call::<_, i64>("add", &AddArgs { a: 1, b: 2 })
            .unwrap(),
        3
    );
}

/// Needs the library's `tokio` feature, which `cargo test --workspace`
/// turns on (the CLI depends on it); `cargo test -p ipckit` shows this
/// test as ignored unless given `--features tokio`.
#[test]
#[cfg_attr(
    not(feature = "tokio"),
    ignore = "needs the tokio feature: cargo test --workspace, or -p ipckit --features tokio"
)]
fn async_calls_inside_a_tokio_runtime_do_not_block_it() {
    #[cfg(feature = "tokio")]
    {
        let srv = DemoServer::start(false);
        let c = Arc::new(srv.client());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // One thread runs both: if call_async blocked it, the slow call
            // (started first) would finish first.
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let slow = {
                let (c, order) = (c.clone(), order.clone());
                tokio::spawn(async move {
                    let r: Slept = c.call_async("sleep", &SleepArgs { ms: 800 }).await.unwrap();
                    order.lock().unwrap().push("slow");
                    r
                })
            };
            let fast = {
                let (c, order) = (c.clone(), order.clone());
                tokio::spawn(async move {
                    let v = c
                        .call_json_async("add", json!({"a": 20, "b": 22}))
                        .await
                        .unwrap();
                    order.lock().unwrap().push("fast");
                    v
                })
            };
            assert_eq!(fast.await.unwrap(), json!(42));
            assert_eq!(slow.await.unwrap(), Slept { slept_ms: 800 });
            assert_eq!(*order.lock().unwrap(), ["fast", "slow"]);

            // Many at once, all answered correctly.
            let tasks: Vec<_> = (0..200i64)
                .map(|i| {
                    let f = c.call_async::<_, i64>("add", &AddArgs { a: i, b: 1000 });
                    tokio::spawn(f)
                })
                .collect();
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await.unwrap().unwrap(), i as i64 + 1000);
            }
            let e = c.call_async::<_, i64>("nope", &()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote);
        });
    }
}

#[test]
fn tcp_transport_has_the_same_api() {
    let srv = DemoServer::start(true);
    let addr = srv.tcp.clone().expect("tcp address");
    let c = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let out: MyInfo = c
        .call(
            "compare",
            &MyInfo {
                red: 3333.0,
                blue: 20.01,
            },
        )
        .unwrap();
    assert_eq!((out.red, out.blue), (2.0, 1.0));
    let e = c
        .call::<_, i64>("add", &AddArgs { a: i64::MAX, b: 1 })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    let d: Describe = c.describe().unwrap();
    assert_eq!(d.name, "svc");
    // JSON bodies over TCP too.
    let v = c.call_json("add", json!({"a": 1, "b": 2}), None).unwrap();
    assert_eq!(v, json!(3));
    // Killing the server releases a TCP caller too.
    let c = Arc::new(c);
    let (tx, rx) = mpsc::channel();
    {
        let c = c.clone();
        std::thread::spawn(move || {
            let _ = tx.send(c.call::<_, Slept>("sleep", &SleepArgs { ms: 120_000 }));
        });
    }
    let probe = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    assert!(wait_until(Duration::from_secs(20), || probe
        .describe()
        .is_ok_and(|d| d.in_flight >= 2)));
    drop(srv); // kills the server process
    let r = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::PeerGone);
}

#[test]
fn graceful_shutdown_finishes_calls_in_flight() {
    setup();
    let t = TestNs::new();
    let ns = &t.ns;
    let server = Arc::new(
        Server::builder("g")
            .namespace(ns)
            .handler("nap", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                Ok::<_, String>(ms)
            })
            .bind()
            .unwrap(),
    );
    let c = Arc::new(Client::options().namespace(ns).connect("g").unwrap());
    let call = {
        let c = c.clone();
        std::thread::spawn(move || c.call::<_, u64>("nap", &600u64))
    };
    assert!(wait_until(Duration::from_secs(10), || server
        .describe()
        .in_flight
        == 1));
    assert!(server.shutdown_timeout(Duration::from_secs(20)));
    // The call in flight was answered before the connection closed.
    assert_eq!(call.join().unwrap().unwrap(), 600);
    // The name is gone; the connection is closed.
    assert!(ns.info("g").unwrap().is_none());
    let e = Client::options().namespace(ns).connect("g").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = c.call::<_, u64>("nap", &0u64);
            let done = r.as_ref().is_err_and(|e| e.kind() == ErrorKind::PeerGone);
            last = Some(r);
            done
        }),
        "{last:?}"
    );
}

/// The demo service's `sum`: wrapping sum of every byte.
fn byte_sum(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, x| a.wrapping_add(*x as u64))
}

#[test]
fn loans_of_64k_1m_and_64m_are_read_and_answered_in_place() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    for len in [64 << 10, 1 << 20, 64 << 20] {
        let mut loan = c.loan(len).unwrap();
        assert_eq!(loan.is_shared(), !SOCKET);
        assert_eq!(loan.len(), len);
        for (i, b) in loan.iter_mut().enumerate() {
            *b = (i * 31 + len) as u8;
        }
        let want = byte_sum(&loan);
        let out = c.call_loan("sum", loan).unwrap();
        assert_eq!(out.len(), 8);
        assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), want);
        drop(out);
        // A reply as large as the request, written in place.
        let mut loan = c.loan(len).unwrap();
        for (i, b) in loan.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let out = c.call_loan("reverse", loan).unwrap();
        assert_eq!(out.len(), len);
        assert!(out
            .iter()
            .rev()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8));
    }
    // Over the server's limit: refused before anything is sent.
    assert_eq!(
        c.loan((64 << 20) + 1).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    // A loan to a method that does not exist is a remote error.
    let e = c.call_loan("nope", c.loan(10).unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote);
    assert_eq!(c.call::<_, i64>("add", &AddArgs { a: 1, b: 1 }).unwrap(), 2);
}

#[test]
fn dropped_loans_give_their_lanes_back() {
    let srv = DemoServer::start(false);
    let c = srv.client();
    let before = c.describe().unwrap().lanes;
    for _ in 0..200 {
        let loan = c.loan(1000).unwrap();
        drop(loan);
    }
    // Three held at once need three connections; given back, they are reused.
    for _ in 0..50 {
        let held: Vec<_> = (0..3).map(|_| c.loan(10).unwrap()).collect();
        drop(held);
    }
    assert_eq!(c.call::<_, i64>("add", &AddArgs { a: 2, b: 2 }).unwrap(), 4);
    let mut loan = c.loan(4).unwrap();
    loan.copy_from_slice(&[1, 2, 3, 4]);
    let out = c.call_loan("sum", loan).unwrap();
    assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 10);
    drop(out);
    let after = c.describe().unwrap().lanes;
    assert!(
        after <= before.max(1) + 2,
        "lanes leaked: {before} -> {after}"
    );
}

#[test]
fn a_killed_client_frees_its_connection_and_others_are_served() {
    let srv = DemoServer::start(false);
    let probe = srv.client();
    let base = probe.describe().unwrap();
    let mut child = srv.t.start(
        "service-load",
        &[
            "svc",
            "--client",
            "1",
            "--calls",
            "100000000",
            "--threads",
            "2",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(20), || probe
            .describe()
            .is_ok_and(|d| d.connections == 2 && d.calls > base.calls + 100)),
        "the loaded client never got going"
    );
    child.kill();
    assert!(
        wait_until(Duration::from_secs(20), || probe
            .describe()
            .is_ok_and(|d| { d.connections == 1 && d.lanes == base.lanes })),
        "the killed client's connection stayed: {:?}",
        probe.describe()
    );
    assert_eq!(
        probe
            .call::<_, i64>("add", &AddArgs { a: 5, b: 5 })
            .unwrap(),
        10
    );
    assert_eq!(
        srv.client()
            .call::<_, i64>("add", &AddArgs { a: 6, b: 6 })
            .unwrap(),
        12
    );
}

/// Connect a client and map the ring object of its (only) lane through the
/// server's /proc entry, as a hostile process would.
fn victim(srv: &DemoServer) -> (Client, ipckit::shm::Mapping) {
    // Told apart by inode, not descriptor number: an earlier client's lane
    // may close on the server in between and its number be reused.
    fn inode(p: &PathBuf) -> Option<u64> {
        std::fs::metadata(p)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    }
    let before = support::rings(srv.proc.pid());
    let before_inodes: Vec<u64> = before.values().filter_map(inode).collect();
    let c = srv.client();
    assert_eq!(c.transport(), Transport::SharedMemory);
    assert_eq!(c.call::<_, i64>("add", &AddArgs { a: 1, b: 1 }).unwrap(), 2);
    let after = support::rings(srv.proc.pid());
    let new: Vec<&PathBuf> = after
        .values()
        .filter(|p| inode(p).is_some_and(|i| !before_inodes.contains(&i)))
        .collect();
    assert_eq!(new.len(), 1, "{before:?} {after:?}");
    (c, support::map_ring(new[0]))
}

/// A way to write garbage into a ring object.
type Corrupter = Box<dyn Fn(&ipckit::shm::Mapping)>;

// Layout (crates/ipckit/src/conn/ring.rs, version 2): control blocks at
// 256 (ring 0, client → server) and 512 (ring 1); tail at +0, head at +64;
// ring bytes from 4096, ring 1 after ring 0. A record header: `stamp` u32
// (`position / 16 + 1`, stored last: what the consumer polls), `len` u32,
// `flags` u8, `tag` u8, `total` u48.
const CTL0: usize = 256;
const CTL1: usize = 512;
const RING0: usize = 4096;

fn ring_cap(m: &ipckit::shm::Mapping) -> usize {
    let mut b = [0u8; 8];
    m.read_at(16, &mut b).unwrap();
    u64::from_le_bytes(b) as usize
}

/// Move the producer's tail of the ring whose control block is at `ctl`
/// far past anything written (the consumer checks it on its slow path).
fn tail_far_out(ctl: usize) -> Corrupter {
    Box::new(move |m| {
        m.atomic_u64(ctl)
            .unwrap()
            .store(1 << 40, std::sync::atomic::Ordering::Release)
    })
}

/// Write one record (16-byte header + payload) at the consumer's head of
/// the ring whose control block is at `ctl` and publish it as a producer
/// does: everything but the stamp, then the stamp, then `tail`.
fn inject(m: &ipckit::shm::Mapping, ctl: usize, ring: usize, len: u32, flags: u8, payload: &[u8]) {
    let cap = ring_cap(m);
    let head = m
        .atomic_u64(ctl + 64)
        .unwrap()
        .load(std::sync::atomic::Ordering::Acquire);
    let off = ring + (head as usize % cap);
    let mut rec = vec![0u8; 16];
    rec[4..8].copy_from_slice(&len.to_le_bytes());
    rec[8] = flags;
    rec[10..16].copy_from_slice(&(payload.len() as u64).to_le_bytes()[..6]);
    rec.extend_from_slice(payload);
    rec.resize(rec.len().next_multiple_of(16), 0);
    m.write_at(off + 4, &rec[4..]).unwrap();
    m.atomic_u32(off)
        .unwrap()
        .store((head / 16 + 1) as u32, std::sync::atomic::Ordering::Release);
    m.atomic_u64(ctl).unwrap().store(
        head + rec.len() as u64,
        std::sync::atomic::Ordering::Release,
    );
}

#[test]
fn garbage_in_the_clients_ring_closes_that_lane_and_the_server_goes_on() {
    if SOCKET {
        return; // nothing shared to corrupt on the socket transport
    }
    let srv = DemoServer::start(false);
    // A well-formed loan call naming a range far outside the segment.
    let mut loan_call = Vec::new();
    loan_call.push(5u8); // KIND_LOAN_CALL
    loan_call.push(0);
    loan_call.extend_from_slice(&3u16.to_le_bytes());
    loan_call.extend_from_slice(&[0; 4]);
    loan_call.extend_from_slice(&99u64.to_le_bytes());
    loan_call.extend_from_slice(&16u64.to_le_bytes());
    loan_call.extend_from_slice(b"sum");
    loan_call.extend_from_slice(&(1u64 << 40).to_le_bytes());
    loan_call.extend_from_slice(&8u64.to_le_bytes());
    let cases: Vec<(&str, Corrupter)> = vec![
        ("tail far out", tail_far_out(CTL0)),
        (
            "huge record length",
            Box::new(|m| inject(m, CTL0, RING0, 0xffff_fff0, 3, &[0; 16])),
        ),
        (
            "bad flags",
            Box::new(|m| inject(m, CTL0, RING0, 8, 0x80, &[0; 8])),
        ),
        (
            "loan range out of the segment",
            Box::new(move |m| inject(m, CTL0, RING0, loan_call.len() as u32, 3, &loan_call)),
        ),
    ];
    for (what, corrupt) in cases {
        let (c, m) = victim(&srv);
        let closed = || srv.log().matches("closed the shared-memory lane").count();
        let seen = closed();
        corrupt(&m);
        // The server notices on its own (its lane thread re-checks the ring
        // at least every 50 ms), logs it and closes that lane. (The victim
        // must not call before: its next message would overwrite the
        // garbage.)
        assert!(
            wait_until(Duration::from_secs(20), || closed() > seen),
            "{what}: the lane was not closed; log: {}",
            srv.log()
        );
        let e = c.describe().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::PeerGone | ErrorKind::Decode),
            "{what}: {e}"
        );
        // The server lives and serves a fresh client correctly.
        let fresh = srv.client();
        assert_eq!(
            fresh
                .call::<_, i64>("add", &AddArgs { a: 20, b: 22 })
                .unwrap(),
            42,
            "{what}"
        );
        let mut loan = fresh.loan(3).unwrap();
        loan.copy_from_slice(&[1, 2, 3]);
        assert_eq!(&fresh.call_loan("reverse", loan).unwrap()[..], &[3, 2, 1]);
    }
}

#[test]
fn garbage_in_the_servers_ring_fails_the_waiting_call_without_a_hang() {
    if SOCKET {
        return; // nothing shared to corrupt on the socket transport
    }
    let srv = DemoServer::start(false);
    let cases: Vec<(&str, Corrupter)> = vec![
        ("tail far out", tail_far_out(CTL1)),
        (
            "bad flags",
            Box::new(|m| {
                let cap = ring_cap(m);
                inject(m, CTL1, RING0 + cap, 8, 0x80, &[0; 8])
            }),
        ),
        (
            "reply frame with a wrong length",
            Box::new(|m| {
                let cap = ring_cap(m);
                let mut f = vec![2u8, 0, 0, 0, 0, 0, 0, 0];
                f.extend_from_slice(&2u64.to_le_bytes());
                f.extend_from_slice(&(1u64 << 30).to_le_bytes());
                inject(m, CTL1, RING0 + cap, f.len() as u32, 3, &f)
            }),
        ),
    ];
    for (what, corrupt) in cases {
        let (c, m) = victim(&srv);
        let c = Arc::new(c);
        let (tx, rx) = mpsc::channel();
        {
            let c = c.clone();
            std::thread::spawn(move || {
                let _ = tx.send(c.call::<_, Slept>("sleep", &SleepArgs { ms: 3000 }));
            });
        }
        let probe = srv.client();
        assert!(wait_until(Duration::from_secs(20), || probe
            .describe()
            .is_ok_and(|d| d.in_flight >= 2)));
        corrupt(&m);
        let r = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what}: the waiting call hung"));
        let e = r.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Decode | ErrorKind::PeerGone),
            "{what}: {e}"
        );
        assert!(e.to_string().contains("svc"), "{what}: {e}");
        // The client stays usable (on another lane), the server serves on.
        assert_eq!(c.call::<_, i64>("add", &AddArgs { a: 1, b: 2 }).unwrap(), 3);
        assert_eq!(
            probe
                .call::<_, i64>("add", &AddArgs { a: 2, b: 2 })
                .unwrap(),
            4
        );
    }
}

// ---------------------------------------------------------------------------
// The roles of this test binary (re-exec'd children).
// ---------------------------------------------------------------------------

/// Runs only when re-exec'd by a test above (see `support::role`); a plain
/// `cargo test -- --ignored` finds no role and returns.
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    match role.as_str() {
        "service-demo" => demo_server(&args),
        "service-load" => load(&args),
        other => panic!("unknown child role {other}"),
    }
}

/// Role `service-demo NAME [--tcp ADDR]`: serve the demo methods until
/// killed — `echo` (raw), `add`, `compare` (the seed's), `sleep`, `panic`,
/// and the loan methods `sum` and `reverse`. Prints `serving service
/// 'NAME'` (then `tcp://ADDR`) on stdout; the library logs on stderr.
fn demo_server(args: &[String]) {
    let name = &args[0];
    let mut b = Server::builder(name)
        .loan_handler("sum", |req, reply| {
            let sum = req.iter().fold(0u64, |a, x| a.wrapping_add(u64::from(*x)));
            reply.write(&sum.to_le_bytes())
        })
        .loan_handler("reverse", |req, reply| {
            let out = reply.alloc(req.len())?;
            for (o, i) in out.iter_mut().zip(req.iter().rev()) {
                *o = *i;
            }
            Ok::<_, ipckit::Error>(())
        })
        .raw_handler("echo", |_enc: Encoding, body: &[u8]| {
            Ok::<_, RemoteError>(body.to_vec())
        })
        .handler("add", |p: AddArgs| {
            p.a.checked_add(p.b)
                .ok_or_else(|| format!("{} + {} overflows a 64-bit integer", p.a, p.b))
        })
        .handler("compare", |mut m: MyInfo| {
            m.red = 2.0;
            m.blue = 1.0;
            Ok::<_, RemoteError>(m)
        })
        .handler("sleep", |p: SleepArgs| {
            std::thread::sleep(Duration::from_millis(p.ms));
            Ok::<_, RemoteError>(Slept { slept_ms: p.ms })
        })
        .handler("panic", |p: PanicArgs| -> Result<(), RemoteError> {
            panic!("{}", p.message.unwrap_or_else(|| "asked to panic".into()))
        });
    if let Some(a) = support::flag(args, "--tcp") {
        b = b.tcp(a);
    }
    let server = b.bind().unwrap();
    support::say(&format!("serving service '{name}'"));
    if let Some(a) = server.tcp_addr() {
        support::say(&format!("tcp://{a}"));
    }
    server.wait();
}

/// Role `service-load NAME --client K [--calls N] [--threads T]
/// [--json-bodies]`: N calls of `add` with arguments unique to (K, call),
/// spread over T threads sharing one connection, every answer checked;
/// prints `RESULT {"client": K, "ok": <answered>}` and fails unless all
/// N were answered exactly once.
fn load(args: &[String]) {
    let name = &args[0];
    let client: u64 = support::flag(args, "--client").unwrap().parse().unwrap();
    let calls: u64 = support::flag(args, "--calls").map_or(1000, |v| v.parse().unwrap());
    let threads: u64 = support::flag(args, "--threads").map_or(4, |v| v.parse().unwrap());
    let mut opts = Client::options();
    opts = opts.timeout(Duration::from_secs(20));
    if support::switch(args, "--json-bodies") {
        opts = opts.encoding(Encoding::Json);
    }
    let c = Arc::new(opts.connect(name).unwrap());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                for i in (t..calls).step_by(threads as usize) {
                    let args = AddArgs {
                        a: (client * 1_000_000 + i) as i64,
                        b: (i * 7 + 1) as i64,
                    };
                    let got: i64 = c.call("add", &args).unwrap();
                    assert_eq!(got, args.a + args.b, "client {client} call {i}");
                    done.push(i);
                }
                done
            })
        })
        .collect();
    let mut seen = vec![false; calls as usize];
    for h in handles {
        for i in h.join().expect("a load thread panicked") {
            assert!(
                !std::mem::replace(&mut seen[i as usize], true),
                "client {client}: call {i} answered twice"
            );
        }
    }
    let ok = seen.iter().filter(|s| **s).count();
    support::say(&format!("RESULT {}", json!({ "client": client, "ok": ok })));
    assert_eq!(ok as u64, calls, "client {client}: not every call answered");
}

/// The client's lane pool: at most 16 lanes; loans past them come from the
/// heap; lanes given back are taken again rather than new ones opened.
#[test]
fn loans_past_sixteen_lanes_go_to_the_heap_and_lanes_are_reused() {
    if SOCKET {
        return;
    }
    let srv = DemoServer::start(false);
    let c = srv.client();
    let held: Vec<_> = (0..20).map(|_| c.loan(10).unwrap()).collect();
    assert_eq!(held.iter().filter(|l| l.is_shared()).count(), 16);
    drop(held);
    let lanes = c.describe().unwrap().lanes;
    for _ in 0..5 {
        let held: Vec<_> = (0..16).map(|_| c.loan(10).unwrap()).collect();
        assert!(held.iter().all(|l| l.is_shared()));
    }
    assert_eq!(c.describe().unwrap().lanes, lanes);
    assert_eq!(c.call::<_, i64>("add", &AddArgs { a: 2, b: 2 }).unwrap(), 4);
}
