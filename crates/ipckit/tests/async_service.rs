//! Async services across real processes: a server whose handlers are
//! futures (`ServerBuilder::handler_async`, running on the server's tokio
//! runtime) in a child process, called by blocking clients in other
//! processes and by `Client::call_async` in the test, on shared memory and
//! on the socket: results, many calls in flight from one client, handler
//! errors and panics, the server's death, and cancellation (a dropped call
//! future; the client stays usable and a late reply is never taken for
//! another call's).
//!
//! Every wait is bounded by [`DEADLINE`]; a pending future is made pending
//! (and then dropped) with a short `tokio::time::timeout`, whose length only
//! decides how long the future was pending, never what the test asserts.
#![cfg(feature = "tokio")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use ipckit::service::{Client, RemoteError, Server, CODE_INTERNAL};
use ipckit::{ErrorKind, Namespace, Transport};
use support::{say, TestNs, DEADLINE};

/// How long a future is left pending before it is dropped.
const PENDING: Duration = Duration::from_millis(150);
/// Calls the `meet` method holds until this many are in flight at once.
const MEET: usize = 12;

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Serve `svc` with async handlers (and one sync one) until stdin
        // closes; say `READY` (and `tcp://…`).
        "async-server" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let meet = Arc::new(tokio::sync::Barrier::new(MEET));
            let server = rt.block_on(async {
                Server::builder("svc")
                    .namespace(&ns)
                    .tcp("127.0.0.1:0")
                    .handler_async("echo", |v: Vec<u8>| async move {
                        tokio::task::yield_now().await;
                        Ok::<_, RemoteError>(v)
                    })
                    .handler_async("later", |ms: u64| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok::<_, RemoteError>(ms)
                    })
                    .handler_async("meet", move |i: u64| {
                        let meet = meet.clone();
                        async move {
                            meet.wait().await;
                            Ok::<_, RemoteError>(i * 10)
                        }
                    })
                    .handler_async("fail", |code: i64| async move {
                        tokio::task::yield_now().await;
                        Err::<(), _>(RemoteError::new(code, "refused on purpose"))
                    })
                    .handler_async("boom", |_: ()| async move {
                        tokio::task::yield_now().await;
                        if true {
                            panic!("async handler blew up");
                        }
                        Ok::<(), RemoteError>(())
                    })
                    .handler("sync_add", |(a, b): (i64, i64)| Ok::<_, RemoteError>(a + b))
                    .bind()
                    .unwrap()
            });
            say(&format!("tcp://{}", server.tcp_addr().unwrap()));
            say("READY");
            support::wait_for_parent();
            drop(server);
        }
        // Blocking client: call the async handlers on ARG0 (`shm`,
        // `socket` or a tcp:// address), say `OK <transport>`.
        "sync-client" => {
            let (target, transport) = match args[0].as_str() {
                "shm" => ("svc", Transport::Auto),
                "socket" => ("svc", Transport::Socket),
                tcp => (tcp, Transport::Socket),
            };
            let c = Client::options()
                .namespace(&ns)
                .timeout(DEADLINE)
                .transport(transport)
                .connect(target)
                .unwrap();
            assert_eq!(
                c.call::<_, Vec<u8>>("echo", &vec![1u8, 2, 3]).unwrap(),
                [1, 2, 3]
            );
            assert_eq!(c.call::<_, u64>("later", &5u64).unwrap(), 5);
            let e = c.call::<_, ()>("fail", &9).unwrap_err();
            assert_eq!(e.remote_code(), Some(9));
            assert_eq!(c.call::<_, i64>("sync_add", &(2, 3)).unwrap(), 5);
            say(&format!("OK {:?}", c.transport()));
        }
        other => panic!("unknown role {other}"),
    }
}

/// The async server in a child process, with the test's namespace.
struct AsyncServer {
    proc: support::Proc,
    tcp: String,
    t: TestNs,
}

impl AsyncServer {
    fn start() -> AsyncServer {
        let t = TestNs::new();
        let mut proc = t.talk("async-server", &[]);
        let tcp = proc.stdout_line("tcp://");
        proc.stdout_line("READY");
        AsyncServer { proc, tcp, t }
    }

    fn client(&self, transport: Transport) -> Client {
        Client::options()
            .namespace(&self.t.ns)
            .timeout(DEADLINE)
            .transport(transport)
            .connect("svc")
            .unwrap()
    }

    /// Clients on every transport: shared memory, the Unix socket, TCP.
    fn clients(&self) -> Vec<Client> {
        let shm = self.client(Transport::Auto);
        assert_eq!(shm.transport(), Transport::SharedMemory);
        let unix = self.client(Transport::Socket);
        assert_eq!(unix.transport(), Transport::Socket);
        let tcp = Client::options()
            .namespace(&self.t.ns)
            .timeout(DEADLINE)
            .connect(&self.tcp)
            .unwrap();
        vec![shm, unix, tcp]
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Await `f`, failing the test (not hanging it) after [`DEADLINE`].
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("a call future did not complete within the deadline")
}

#[test]
fn async_handlers_answer_blocking_clients_in_other_processes() {
    let srv = AsyncServer::start();
    for (arg, want) in [
        ("shm", "OK SharedMemory"),
        ("socket", "OK Socket"),
        (srv.tcp.as_str(), "OK Socket"),
    ] {
        let out = srv.t.run("sync-client", &[arg]);
        out.assert_success();
        assert_eq!(
            out.line("OK").map(|l| format!("OK{l}")).as_deref(),
            Some(want)
        );
    }
}

#[test]
fn call_async_on_every_transport_gets_results() {
    let srv = AsyncServer::start();
    let rt = runtime();
    for c in srv.clients() {
        rt.block_on(async {
            let v: Vec<u8> = bounded(c.call_async("echo", &vec![7u8; 64])).await.unwrap();
            assert_eq!(v, vec![7u8; 64]);
            // A reply that takes longer than any spin: the future parks.
            assert_eq!(
                bounded(c.call_async::<_, u64>("later", &40u64))
                    .await
                    .unwrap(),
                40
            );
            let j = bounded(c.call_json_async("sync_add", serde_json::json!([20, 22])))
                .await
                .unwrap();
            assert_eq!(j, serde_json::json!(42));
            // A request too big for one ring record still works.
            let big = vec![3u8; 200 * 1024];
            let v: Vec<u8> = bounded(c.call_async("echo", &big)).await.unwrap();
            assert_eq!(v, big);
        });
        // Sync calls on the same client still work after async ones.
        assert_eq!(c.call::<_, i64>("sync_add", &(1, 2)).unwrap(), 3);
    }
    // Outside any runtime, the future still completes (a helper thread
    // parks for it on shared memory).
    let c = srv.client(Transport::Auto);
    let f = c.call_async::<_, u64>("later", &30u64);
    let got = futures_block_on(f);
    assert_eq!(got.unwrap(), 30);
}

/// Run a future to completion on a one-off current-thread runtime that
/// is created only after the future was (so it was made outside any).
fn futures_block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { bounded(f).await })
}

#[test]
fn many_calls_in_flight_from_one_client() {
    let srv = AsyncServer::start();
    let rt = runtime();
    for c in srv.clients() {
        let c = Arc::new(c);
        rt.block_on(async {
            // `meet` answers only once MEET calls wait in it at once: the
            // calls must all be in flight together, or this never ends.
            let calls: Vec<_> = (0..MEET as u64)
                .map(|i| tokio::spawn(c.call_async::<_, u64>("meet", &i)))
                .collect();
            for (i, h) in calls.into_iter().enumerate() {
                assert_eq!(bounded(h).await.unwrap().unwrap(), i as u64 * 10);
            }
            // And many ordinary calls at once, each getting its own reply.
            let calls: Vec<_> = (0..64u64)
                .map(|i| c.call_async::<_, Vec<u8>>("echo", &i.to_le_bytes().to_vec()))
                .collect();
            for (i, f) in calls.into_iter().enumerate() {
                assert_eq!(bounded(f).await.unwrap(), (i as u64).to_le_bytes());
            }
        });
    }
}

#[test]
fn handler_errors_and_panics_reach_the_async_caller_as_remote_errors() {
    let srv = AsyncServer::start();
    let rt = runtime();
    for c in srv.clients() {
        rt.block_on(async {
            let e = bounded(c.call_async::<_, ()>("fail", &42i64))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote);
            assert_eq!(e.remote_code(), Some(42));
            assert!(e.to_string().contains("refused on purpose"), "{e}");
            let e = bounded(c.call_async::<_, ()>("boom", &()))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote);
            assert_eq!(e.remote_code(), Some(CODE_INTERNAL));
            assert!(e.to_string().contains("async handler blew up"), "{e}");
            let e = bounded(c.call_async::<_, u64>("later", &()))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Remote);
            let e = bounded(c.call_async::<_, u64>("absent", &1))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("unknown method 'absent'"), "{e}");
            // The server survived its handler's panic.
            assert_eq!(
                bounded(c.call_async::<_, u64>("later", &1u64))
                    .await
                    .unwrap(),
                1
            );
        });
    }
    // So did its process (a blocking client too).
    srv.t.run("sync-client", &["shm"]).assert_success();
}

#[test]
fn the_servers_death_fails_pending_async_calls_with_peer_gone() {
    let mut srv = AsyncServer::start();
    let rt = runtime();
    let clients = srv.clients();
    let pending: Vec<_> = clients
        .iter()
        .map(|c| rt.spawn(c.call_async::<_, u64>("later", &600_000u64)))
        .collect();
    // Each call is in the server (its `later` counts as in flight).
    let probe = srv.client(Transport::Socket);
    support::wait_until(DEADLINE, "the three calls are in flight", || {
        probe.describe().unwrap().in_flight >= 4 // the describe call included
    });
    srv.proc.kill();
    rt.block_on(async {
        for (i, h) in pending.into_iter().enumerate() {
            let e = bounded(h).await.unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PeerGone, "client {i}: {e}");
        }
        for c in &clients {
            let e = bounded(c.call_async::<_, u64>("later", &0u64))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
        }
    });
}

#[test]
fn a_dropped_call_future_leaves_the_client_usable() {
    let srv = AsyncServer::start();
    let rt = runtime();
    for c in srv.clients() {
        rt.block_on(async {
            for round in 0..3u64 {
                // Pending past the spin (parked), then dropped.
                let f = c.call_async::<_, u64>("later", &(300 + round));
                assert!(tokio::time::timeout(PENDING, f).await.is_err());
                // A dropped future that was never polled.
                drop(c.call_async::<_, u64>("later", &(200 + round)));
                // The next calls get their own replies, never the late ones
                // (which arrive while this one is in flight).
                let got = bounded(c.call_async::<_, u64>("later", &(400 + round)))
                    .await
                    .unwrap();
                assert_eq!(got, 400 + round);
                for i in 0..20u64 {
                    let v: Vec<u8> = bounded(c.call_async("echo", &vec![i as u8; 8]))
                        .await
                        .unwrap();
                    assert_eq!(v, vec![i as u8; 8]);
                }
            }
        });
        assert_eq!(c.call::<_, i64>("sync_add", &(4, 5)).unwrap(), 9);
    }
}

#[test]
fn handler_async_outside_a_runtime_fails_bind() {
    let t = TestNs::new();
    let e = Server::builder("x")
        .namespace(&t.ns)
        .handler_async("a", |x: u8| async move { Ok::<_, RemoteError>(x) })
        .bind()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("outside a tokio runtime"), "{e}");
}
