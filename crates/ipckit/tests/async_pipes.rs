//! The async named pipes (`ipckit::pipe::tokio`) across real processes: a
//! blocking peer process (this test binary re-executed in a role, see
//! `child_role`) and the async side in the test, on both flavors (the
//! socket, and shared-memory rings; each test names its transport
//! explicitly, so one binary runs both), plus the blocking pipe's split
//! halves and clones.
//!
//! Cancellation: a pending future is made pending, then dropped, with a
//! short `tokio::time::timeout`; its length only decides how long the
//! future was pending, never what is asserted. Every other wait is bounded
//! by [`DEADLINE`].
#![cfg(feature = "tokio")]

mod support;

use std::io::Write as _;
use std::time::Duration;

use ipckit::pipe::tokio::{NamedPipe, PipeServer};
use ipckit::pipe::{self as blocking, ClientOptions, PipeMode, ServerOptions};
use ipckit::{ErrorKind, Namespace, Transport};
use support::{pattern, raw, say, Proc, TestNs, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// How long a future is left pending before it is dropped.
const PENDING: Duration = Duration::from_millis(150);

/// Sizes the echo roles send, in turn: empty, small, a ring record's
/// worth, and over one record (fragmented on a ring, several socket reads).
const SIZES: [usize; 5] = [0, 1, 64, 70_000, 600_000];

fn transport_arg(t: Transport) -> &'static str {
    match t {
        Transport::Socket => "socket",
        _ => "shm",
    }
}

fn transport_of(arg: &str) -> Transport {
    match arg {
        "socket" => Transport::Socket,
        _ => Transport::SharedMemory,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Run `f` on a runtime; fail (instead of hanging) past [`DEADLINE`].
fn run<F: std::future::Future<Output = ()>>(f: F) {
    rt().block_on(async {
        timeout(DEADLINE, f)
            .await
            .expect("the test did not finish within the deadline");
    });
}

fn async_server(t: &TestNs, name: &str, tr: Transport) -> PipeServer {
    PipeServer::from(
        ServerOptions::new()
            .namespace(&t.ns)
            .transport(tr)
            .create(name)
            .unwrap(),
    )
}

async fn async_client(t: &TestNs, name: &str, tr: Transport) -> NamedPipe {
    let opts = ClientOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .transport(tr);
    let c = NamedPipe::connect_with(&opts, name)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to '{name}': {e}"));
    assert_eq!(c.transport(), tr);
    c
}

/// A blocking echo server process on `name` (one thread per client).
fn echo_server(t: &TestNs, name: &str, tr: Transport) -> Proc {
    let mut p = t.start("echo-server", &[name, transport_arg(tr)]);
    p.stdout_line("READY");
    p
}

// ---------------------------------------------------------------------------
// async server, blocking clients
// ---------------------------------------------------------------------------

fn async_server_echoes_blocking_clients(tr: Transport) {
    let t = TestNs::new();
    let server = async_server(&t, "echo", tr);
    run(async {
        let clients: Vec<Proc> = (0..3)
            .map(|i| t.start("echo-client", &["echo", transport_arg(tr), &i.to_string()]))
            .collect();
        let mut tasks = Vec::new();
        for _ in 0..clients.len() {
            let mut conn = server.accept().await.unwrap();
            assert_eq!(conn.transport(), tr);
            assert!(conn.peer().pid.is_some());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                loop {
                    match conn.recv().await {
                        Ok(m) => {
                            conn.send(&m).await.unwrap();
                            n += 1;
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
                            return n;
                        }
                    }
                }
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), SIZES.len());
        }
        for c in clients {
            let out = c.finish(DEADLINE);
            out.assert_success();
            assert_eq!(out.line("ECHOED "), Some(SIZES.len().to_string().as_str()));
        }
    });
}

#[test]
fn async_server_echoes_blocking_clients_socket() {
    async_server_echoes_blocking_clients(Transport::Socket);
}

#[test]
fn async_server_echoes_blocking_clients_shm() {
    async_server_echoes_blocking_clients(Transport::SharedMemory);
}

// ---------------------------------------------------------------------------
// async client, blocking server
// ---------------------------------------------------------------------------

fn async_client_transacts_with_a_blocking_server(tr: Transport) {
    let t = TestNs::new();
    let _server = echo_server(&t, "echo", tr);
    run(async {
        let mut c = async_client(&t, "echo", tr).await;
        for (i, len) in SIZES.iter().enumerate() {
            let msg = pattern(*len, i as u64);
            assert_eq!(c.transact(&msg).await.unwrap(), msg, "message {i}");
        }
        // Over the limit: refused before anything is written.
        let big = vec![0u8; c.max_message_size() + 1];
        let e = c.send(&big).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(e.needed(), Some(big.len()));
        assert_eq!(c.transact(b"still usable").await.unwrap(), b"still usable");
    });
}

#[test]
fn async_client_transacts_with_a_blocking_server_socket() {
    async_client_transacts_with_a_blocking_server(Transport::Socket);
}

#[test]
fn async_client_transacts_with_a_blocking_server_shm() {
    async_client_transacts_with_a_blocking_server(Transport::SharedMemory);
}

/// Over TCP (the socket flavor's other kind of socket).
#[test]
fn async_client_over_tcp_with_a_blocking_server() {
    let t = TestNs::new();
    let mut server = t.start("echo-server", &["echo", "socket", "tcp"]);
    server.stdout_line("READY");
    let port = server.stdout_line("PORT ");
    let addr = format!("tcp://127.0.0.1:{}", port.trim_start_matches("PORT "));
    run(async {
        let mut c = NamedPipe::connect(&addr, DEADLINE).await.unwrap();
        assert!(c.peer().addr.is_some());
        for (i, len) in SIZES.iter().enumerate() {
            let msg = pattern(*len, i as u64);
            assert_eq!(c.transact(&msg).await.unwrap(), msg, "message {i}");
        }
        let (mut rx, mut tx) = c.split();
        let echo = tokio::spawn(async move { rx.recv().await.unwrap() });
        tx.send(b"split").await.unwrap();
        assert_eq!(echo.await.unwrap(), b"split");
    });
}

// ---------------------------------------------------------------------------
// split halves, used at once
// ---------------------------------------------------------------------------

fn split_halves_work_concurrently(tr: Transport) {
    let t = TestNs::new();
    let _server = echo_server(&t, "echo", tr);
    run(async {
        let c = async_client(&t, "echo", tr).await;
        let (mut rx, mut tx) = c.split();
        const N: u64 = 300;
        // The receiver runs while the sender is still sending (the peer
        // echoes as it reads, so a sender alone would fill both ways).
        let receiver = tokio::spawn(async move {
            for i in 0..N {
                let len = SIZES[(i % 4) as usize];
                assert_eq!(rx.recv().await.unwrap(), pattern(len, i), "echo {i}");
            }
            rx
        });
        for i in 0..N {
            let len = SIZES[(i % 4) as usize];
            tx.send(&pattern(len, i)).await.unwrap();
        }
        let mut rx = receiver.await.unwrap();
        tx.send(b"last").await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"last");
    });
}

#[test]
fn split_halves_work_concurrently_socket() {
    split_halves_work_concurrently(Transport::Socket);
}

#[test]
fn split_halves_work_concurrently_shm() {
    split_halves_work_concurrently(Transport::SharedMemory);
}

/// The blocking pipe's halves, on two threads at once, and a clone.
fn blocking_split_and_clone(tr: Transport) {
    let t = TestNs::new();
    let _server = echo_server(&t, "echo", tr);
    let c = ClientOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .transport(tr)
        .connect("echo")
        .unwrap();
    assert_eq!(c.transport(), tr);
    use std::os::fd::AsRawFd;
    assert!(c.as_raw_fd() >= 0);
    let mut clone = c.try_clone().unwrap();
    let (mut rx, mut tx) = c.split();
    assert_eq!(rx.as_raw_fd(), tx.as_raw_fd());
    const N: u64 = 300;
    let receiver = std::thread::spawn(move || {
        for i in 0..N {
            let len = SIZES[(i % 4) as usize];
            assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), pattern(len, i));
        }
        rx
    });
    for i in 0..N {
        let len = SIZES[(i % 4) as usize];
        tx.send(&pattern(len, i)).unwrap();
    }
    let rx = receiver.join().unwrap();
    // The clone shares the connection: its request's echo comes back to
    // it (nobody else receives now).
    drop(rx);
    assert_eq!(clone.transact(b"via the clone").unwrap(), b"via the clone");
    drop(tx);
    // Still one handle: the connection lives.
    assert_eq!(clone.transact(b"again").unwrap(), b"again");
}

#[test]
fn blocking_split_halves_and_clone_socket() {
    blocking_split_and_clone(Transport::Socket);
}

#[test]
fn blocking_split_halves_and_clone_shm() {
    blocking_split_and_clone(Transport::SharedMemory);
}

// ---------------------------------------------------------------------------
// byte mode
// ---------------------------------------------------------------------------

#[test]
fn byte_mode_async_read_and_write_with_a_blocking_peer() {
    let t = TestNs::new();
    let mut server = t.start("byte-echo-server", &["bytes"]);
    server.stdout_line("READY");
    run(async {
        let c = async_client(&t, "bytes", Transport::Socket).await;
        assert_eq!(c.mode(), PipeMode::Byte);
        let (mut rx, mut tx) = c.split();
        let data = pattern(3 << 20, 7);
        let expect = data.clone();
        let reader = tokio::spawn(async move {
            let mut back = vec![0u8; expect.len()];
            rx.read_exact(&mut back).await.unwrap();
            assert!(back == expect, "the bytes came back changed");
            // The peer closes after our shutdown: end of stream.
            let mut more = [0u8; 1];
            assert_eq!(rx.read(&mut more).await.unwrap(), 0);
        });
        tx.write_all(&data).await.unwrap();
        tx.flush().await.unwrap();
        tx.shutdown().await.unwrap();
        reader.await.unwrap();
    });
    let line = server.stdout_line("COPIED ");
    assert_eq!(line, format!("COPIED {}", 3 << 20));
}

// ---------------------------------------------------------------------------
// peer death
// ---------------------------------------------------------------------------

fn peer_death_is_peer_gone(tr: Transport) {
    let t = TestNs::new();
    let server = async_server(&t, "p", tr);
    let mut client = t.talk("idle-client", &["p", transport_arg(tr)]);
    run(async {
        let mut conn = server.accept().await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), b"hello");
        // A receive is pending (parked on shared memory) when the peer dies.
        let pending = tokio::spawn(async move {
            let r = conn.recv().await;
            (conn, r)
        });
        client.kill();
        let (mut conn, r) = pending.await.unwrap();
        assert_eq!(r.unwrap_err().kind(), ErrorKind::PeerGone);
        // And it stays so, with a clear error.
        let e = conn.recv().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone);
        let e = conn.send(b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    });
}

#[test]
fn peer_death_is_peer_gone_socket() {
    peer_death_is_peer_gone(Transport::Socket);
}

#[test]
fn peer_death_is_peer_gone_shm() {
    peer_death_is_peer_gone(Transport::SharedMemory);
}

// ---------------------------------------------------------------------------
// cancellation
// ---------------------------------------------------------------------------

/// A dropped pending receive loses nothing, and a dropped accept takes no
/// client; on shared memory too (the parked helper is left behind).
fn dropped_recv_and_accept_lose_nothing(tr: Transport) {
    let t = TestNs::new();
    let server = async_server(&t, "p", tr);
    run(async {
        // Nobody connects: the accept is dropped.
        assert!(timeout(PENDING, server.accept()).await.is_err());
        let mut client = t.talk("talk-client", &["p", transport_arg(tr)]);
        let mut conn = server.accept().await.unwrap();
        for round in 0..3 {
            // Pending (nothing sent yet), then dropped.
            assert!(timeout(PENDING, conn.recv()).await.is_err());
            client.tell(&format!("send {round}"));
            let m = conn.recv().await.unwrap();
            assert_eq!(m, format!("message {round}").as_bytes());
        }
        // Many cancellations while a stream of large messages (fragments
        // on the ring, several reads on the socket) is in flight: each
        // arrives whole and in order.
        client.tell("stream 20");
        let mut got = 0u64;
        while got < 20 {
            match timeout(Duration::from_micros(200), conn.recv()).await {
                Err(_) => continue, // dropped, maybe in the middle of one
                Ok(r) => {
                    assert_eq!(r.unwrap(), pattern(600_000, got), "message {got}");
                    got += 1;
                }
            }
        }
    });
}

#[test]
fn dropped_recv_and_accept_lose_nothing_socket() {
    dropped_recv_and_accept_lose_nothing(Transport::Socket);
}

#[test]
fn dropped_recv_and_accept_lose_nothing_shm() {
    dropped_recv_and_accept_lose_nothing(Transport::SharedMemory);
}

/// A receive dropped in the middle of a frame (the peer sent half of it
/// and stopped) keeps what it read: the next receive completes the message.
#[test]
fn recv_dropped_mid_frame_resumes_and_oversized_is_too_large_socket() {
    let t = TestNs::new();
    let server = PipeServer::from(
        ServerOptions::new()
            .namespace(&t.ns)
            .transport(Transport::Socket)
            .max_message_size(1000)
            .create("p")
            .unwrap(),
    );
    let socket = t.ns.socket_path("p");
    let mut peer = t.talk("raw-peer", &[socket.to_str().unwrap()]);
    run(async {
        let mut conn = server.accept().await.unwrap();
        peer.stdout_line("HALF");
        // Half a frame is there: the receive reads it, then waits; dropped.
        assert!(timeout(PENDING, conn.recv()).await.is_err());
        peer.tell("rest");
        assert_eq!(conn.recv().await.unwrap(), pattern(600, 1));
        // The peer then sends 5000 bytes (over this side's 1000), then "ok".
        let e = conn.recv().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
        assert_eq!(e.needed(), Some(5000));
        assert_eq!(conn.recv().await.unwrap(), b"ok");
    });
}

/// A send dropped after it started writing still delivers its message
/// whole, before the next one.
#[test]
fn send_dropped_mid_frame_is_completed_by_the_next_send_socket() {
    let t = TestNs::new();
    let server = PipeServer::from(
        ServerOptions::new()
            .namespace(&t.ns)
            .transport(Transport::Socket)
            .max_message_size(8 << 20)
            .create("p")
            .unwrap(),
    );
    let mut reader = t.talk("lazy-reader", &["p"]);
    run(async {
        let mut conn = server.accept().await.unwrap();
        reader.stdout_line("CONNECTED");
        let big = pattern(4 << 20, 3);
        // The peer does not read yet: the socket fills, the send is
        // pending in the middle of the frame, and is dropped.
        assert!(timeout(PENDING, conn.send(&big)).await.is_err());
        reader.tell("read");
        conn.send(b"after").await.unwrap();
        // (The peer checks both messages and says so.)
        assert_eq!(
            reader.stdout_line("GOT "),
            format!("GOT {} {}", big.len(), 5)
        );
        assert_eq!(reader.stdout_line("SAME "), "SAME true");
    });
}

// ---------------------------------------------------------------------------
// the roles
// ---------------------------------------------------------------------------

#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    let connect = |name: &str, tr: Transport| {
        ClientOptions::new()
            .namespace(&ns)
            .timeout(DEADLINE)
            .transport(tr)
            .connect(name)
            .unwrap()
    };
    match role.as_str() {
        // Echo server ARG0 on transport ARG1 (and on TCP, port said, if
        // ARG2 is `tcp`), a thread per client.
        "echo-server" => {
            let mut opts = ServerOptions::new()
                .namespace(&ns)
                .transport(transport_of(&args[1]));
            if args.get(2).is_some_and(|a| a == "tcp") {
                opts = opts.tcp("127.0.0.1:0");
            }
            let server = opts.create(&args[0]).unwrap();
            say("READY");
            if let Some(addr) = server.tcp_addr() {
                say(&format!("PORT {}", addr.port()));
            }
            loop {
                let mut conn = server.accept().unwrap();
                std::thread::spawn(move || {
                    while let Ok(m) = conn.recv() {
                        if conn.send(&m).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        // Byte-mode server ARG0: copy one client's bytes back until it
        // shuts down its side, say how many, then close.
        "byte-echo-server" => {
            use std::io::Read as _;
            let server = ServerOptions::new()
                .namespace(&ns)
                .mode(PipeMode::Byte)
                .create(&args[0])
                .unwrap();
            say("READY");
            let conn = server.accept().unwrap();
            let (mut rx, mut tx) = conn.split();
            let mut buf = vec![0u8; 100_000];
            let mut total = 0;
            loop {
                match rx.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tx.write_all(&buf[..n]).unwrap();
                        total += n;
                    }
                }
            }
            say(&format!("COPIED {total}"));
        }
        // Connect to ARG0 on transport ARG1, send SIZES with seed ARG2,
        // check each echo, say how many, exit.
        "echo-client" => {
            let mut c = connect(&args[0], transport_of(&args[1]));
            assert_eq!(c.transport(), transport_of(&args[1]));
            let seed: u64 = args[2].parse().unwrap();
            for (i, len) in SIZES.iter().enumerate() {
                let msg = pattern(*len, seed * 100 + i as u64);
                assert_eq!(c.transact(&msg).unwrap(), msg);
            }
            say(&format!("ECHOED {}", SIZES.len()));
        }
        // Connect to ARG0 on transport ARG1, send "hello", then wait for
        // stdin to close (the test kills it).
        "idle-client" => {
            let mut c = connect(&args[0], transport_of(&args[1]));
            c.send(b"hello").unwrap();
            let _ = std::io::stdin().lines().count();
        }
        // Connect to ARG0 on transport ARG1; on `send N` send "message N";
        // on `stream N` send N messages of 600000 bytes (seeds 0..N).
        "talk-client" => {
            let mut c = connect(&args[0], transport_of(&args[1]));
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                let (cmd, n) = line.split_once(' ').unwrap();
                let n: u64 = n.parse().unwrap();
                match cmd {
                    "send" => c.send(format!("message {n}").as_bytes()).unwrap(),
                    "stream" => {
                        for i in 0..n {
                            c.send(&pattern(600_000, i)).unwrap();
                        }
                    }
                    _ => panic!("unknown command {line}"),
                }
            }
        }
        // A raw client of the socket at ARG0 (the server offers no shared
        // memory): half of a 600-byte frame, `HALF`; on `rest` the rest,
        // a 5000-byte frame, and "ok".
        "raw-peer" => {
            let (mut s, _hello) = raw::connect(std::path::Path::new(&args[0]));
            let f = raw::pipe::frame(1, &pattern(600, 1));
            s.write_all(&f[..300]).unwrap();
            say("HALF");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            s.write_all(&f[300..]).unwrap();
            s.write_all(&raw::pipe::frame(1, &[9u8; 5000])).unwrap();
            s.write_all(&raw::pipe::frame(1, b"ok")).unwrap();
            let _ = std::io::stdin().lines().count();
        }
        // Connect to ARG0 on the socket, say `CONNECTED`, read nothing
        // until `read`; then receive two messages and report them.
        "lazy-reader" => {
            let mut c = connect(&args[0], Transport::Socket);
            say("CONNECTED");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let a = c.recv_timeout(DEADLINE).unwrap();
            let b = c.recv_timeout(DEADLINE).unwrap();
            say(&format!("GOT {} {}", a.len(), b.len()));
            say(&format!(
                "SAME {}",
                a == pattern(4 << 20, 3) && b == b"after"
            ));
            let _ = std::io::stdin().lines().count();
        }
        other => panic!("unknown role {other}"),
    }
}

/// The sync flavor of a blocking pipe stays what it was (no async state
/// leaks in): a plain check that the re-exports are the documented types.
#[test]
fn halves_are_public_types() {
    fn takes(_: Option<blocking::RecvHalf>, _: Option<blocking::SendHalf>) {}
    takes(None, None);
    fn send_sync<T: Send + Sync>() {}
    send_sync::<blocking::NamedPipe>();
    send_sync::<blocking::RecvHalf>();
    send_sync::<blocking::SendHalf>();
    send_sync::<ipckit::pipe::tokio::RecvHalf>();
    send_sync::<ipckit::pipe::tokio::SendHalf>();
}
