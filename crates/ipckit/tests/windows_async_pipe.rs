//! Async named pipes on Windows (`ipckit::pipe::tokio`): the system's
//! named pipes with overlapped I/O as futures. Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh` (with
//! the `tokio` feature).
//!
//! The two-process tests re-run this test executable as their child (the
//! environment variable [`CHILD_ENV`] names the child's role); the interop
//! test runs a plain Win32 C client (`scripts/windows/pipe_client.c`).
#![cfg(all(windows, feature = "pipe", feature = "tokio"))]

mod windows_support;

use windows_support::c_peer;

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::pipe::tokio::{NamedPipe as AsyncPipe, PipeServer as AsyncServer};
use ipckit::pipe::{ClientOptions, NamedPipe, PipeMode, ServerOptions};
use ipckit::{ErrorKind, Namespace};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_ASYNC_PIPE_CHILD";
/// How long any wait in these tests may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn new_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

fn server(ns: &Namespace) -> ServerOptions {
    ServerOptions::new().namespace(ns)
}

fn client(ns: &Namespace) -> ClientOptions {
    ClientOptions::new().namespace(ns).timeout(LIMIT)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `f`, failing the test if it takes longer than [`LIMIT`].
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// Run `f` on a thread and wait for its result at most [`LIMIT`].
fn bounded_thread<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// Wait for `child` to exit (at most [`LIMIT`]) and return its stdout;
/// panics if it fails or does not finish.
fn finish(child: Child, what: &str) -> String {
    let out = bounded_thread(what, move || child.wait_with_output()).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// This test executable as a child running `test` in `role`.
fn child(test: &str, role: &str, ns: &Namespace) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, role)
        .env("IPCKIT_NAMESPACE", ns.dir())
        .env("IPCKIT_TEST_PARENT_PID", std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn parent_pid() -> u32 {
    std::env::var("IPCKIT_TEST_PARENT_PID")
        .unwrap()
        .parse()
        .unwrap()
}

/// Bytes that tell their position, `len` of them.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

/// A system pipe name unique to this process and `tag`.
fn native(tag: &str) -> String {
    format!(r"\\.\pipe\ipckit-async-test-{}-{tag}", std::process::id())
}

#[test]
fn async_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AsyncServer>();
    check::<AsyncPipe>();
    check::<ipckit::pipe::tokio::RecvHalf>();
    check::<ipckit::pipe::tokio::SendHalf>();
}

/// Messages of every size keep their boundaries between an async end and
/// a blocking one, both ways, on both sides (larger than any one read,
/// and than tokio's own 64 KiB pipe reads).
#[test]
fn async_and_blocking_ends_keep_message_boundaries() {
    let (_dir, ns) = new_ns();
    let sizes = [0usize, 1, 4095, 4096, 4097, 65_536, 65_537, 300_000];
    runtime().block_on(async {
        // Async server, blocking client.
        let s = AsyncServer::from(
            server(&ns)
                .max_message_size(1 << 20)
                .create("bounds")
                .unwrap(),
        );
        let opts = client(&ns);
        let peer = std::thread::spawn(move || {
            let mut c = opts.connect("bounds").unwrap();
            for (i, &n) in sizes.iter().enumerate() {
                c.send(&pattern(n, i as u32)).unwrap();
            }
            for (i, &n) in sizes.iter().enumerate() {
                assert_eq!(c.recv().unwrap(), pattern(n, 100 + i as u32), "size {n}");
            }
            c.send(b"done").unwrap();
        });
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        assert_eq!(conn.mode(), PipeMode::Message);
        for (i, &n) in sizes.iter().enumerate() {
            let m = bounded("recv", conn.recv()).await.unwrap();
            assert_eq!(m.len(), n);
            assert_eq!(m, pattern(n, i as u32), "size {n}");
        }
        for (i, &n) in sizes.iter().enumerate() {
            bounded("send", conn.send(&pattern(n, 100 + i as u32)))
                .await
                .unwrap();
        }
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"done");
        peer.join().unwrap();

        // Blocking server, async client.
        let bs = server(&ns).create("bounds2").unwrap();
        let peer = std::thread::spawn(move || {
            let mut conn = bs.accept_timeout(LIMIT).unwrap();
            for _ in sizes {
                let m = conn.recv_timeout(LIMIT).unwrap();
                conn.send(&m).unwrap();
            }
        });
        let mut c = bounded("connect", AsyncPipe::connect_with(&client(&ns), "bounds2"))
            .await
            .unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let m = pattern(n, i as u32);
            assert_eq!(bounded("transact", c.transact(&m)).await.unwrap(), m);
        }
        peer.join().unwrap();
        // The server's thread is done and its connection dropped.
        let e = bounded("recv", c.recv()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
        assert_eq!(
            bounded("send", c.send(b"x")).await.unwrap_err().kind(),
            ErrorKind::PeerGone
        );
    });
}

#[test]
fn too_large_is_refused_and_the_pipe_stays_usable() {
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let s = AsyncServer::from(server(&ns).max_message_size(1000).create("tl").unwrap());
        // A client that allows more than the server (a name in the
        // system's form gets at least the default limit).
        let os = s.os_name().to_string();
        let peer = std::thread::spawn(move || {
            let mut c = ClientOptions::new().timeout(LIMIT).connect(&os).unwrap();
            assert!(c.max_message_size() >= 100_000);
            c.send(&pattern(100_000, 1)).unwrap();
            c.send(b"after").unwrap();
            c.recv().unwrap()
        });
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        let e = bounded("recv", conn.recv()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
        assert_eq!(e.needed(), Some(100_000));
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"after");
        // The sender's own check: nothing is written.
        let e = conn.send(&[0u8; 1001]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        conn.send(b"fine").await.unwrap();
        assert_eq!(peer.join().unwrap(), b"fine");
    });
}

/// A dropped `recv` (a timeout) loses nothing, even in the middle of a
/// message; a dropped `accept` takes no client.
#[test]
fn cancelled_futures_lose_nothing() {
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let s = AsyncServer::from(server(&ns).create("cancel").unwrap());
        assert!(tokio::time::timeout(Duration::from_millis(20), s.accept())
            .await
            .is_err());
        let mut c = client(&ns).connect("cancel").unwrap();
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        assert_eq!(conn.peer().pid, Some(std::process::id()));
        for _ in 0..3 {
            assert!(tokio::time::timeout(Duration::from_millis(10), conn.recv())
                .await
                .is_err());
        }
        c.send(b"late").unwrap();
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"late");
        // A message larger than one read: the first part is read, then
        // the future is dropped; the next recv gives the whole message.
        let big = pattern(200_000, 7);
        c.send(&big).unwrap();
        let mut polls = 0;
        let got = loop {
            polls += 1;
            match tokio::time::timeout(Duration::ZERO, conn.recv()).await {
                Ok(m) => break m.unwrap(),
                Err(_) if polls < 1000 => tokio::task::yield_now().await,
                Err(_) => break bounded("recv", conn.recv()).await.unwrap(),
            }
        };
        assert_eq!(got, big);
        // Blocking halves still see every message in order.
        for i in 0..5u8 {
            c.send(&[i]).unwrap();
        }
        for i in 0..5u8 {
            assert_eq!(bounded("recv", conn.recv()).await.unwrap(), [i]);
        }
    });
}

#[test]
fn busy_not_found_timeout_and_raw_names() {
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let now = ClientOptions::new().namespace(&ns);
        let e = AsyncPipe::connect_with(&now, "absent").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let briefly = ClientOptions::new()
            .namespace(&ns)
            .timeout(Duration::from_millis(50));
        let e = AsyncPipe::connect_with(&briefly, "absent")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);

        // One instance, taken: Busy at once, Timeout after waiting; once
        // the connection goes, a waiting client gets in.
        let s = AsyncServer::from(server(&ns).max_instances(1).create("one").unwrap());
        let first = bounded("connect", AsyncPipe::connect_with(&client(&ns), "one"))
            .await
            .unwrap();
        let conn = bounded("accept", s.accept()).await.unwrap();
        let e = AsyncPipe::connect_with(&now, "one").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
        let e = AsyncPipe::connect_with(&briefly, "one").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        let waiting = tokio::spawn({
            let opts = client(&ns);
            async move { AsyncPipe::connect_with(&opts, "one").await }
        });
        drop((first, conn));
        let mut second = bounded("the waiting client", waiting)
            .await
            .unwrap()
            .unwrap();
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        second.send(b"in").await.unwrap();
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"in");

        // A second server on the name is refused.
        let e = server(&ns).create("one").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);

        // A name in the system's form is used as is.
        let raw = native("raw");
        let r = AsyncServer::from(ServerOptions::new().create(&raw).unwrap());
        assert_eq!(r.os_name(), raw);
        let mut c = bounded("connect", AsyncPipe::connect(&raw, LIMIT))
            .await
            .unwrap();
        let mut conn = bounded("accept", r.accept()).await.unwrap();
        c.send(b"raw").await.unwrap();
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"raw");
    });
}

#[test]
fn byte_mode_split_halves_and_async_io_traits() {
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let s = AsyncServer::from(server(&ns).mode(PipeMode::Byte).create("bytes").unwrap());
        let mut c = bounded("connect", AsyncPipe::connect_with(&client(&ns), "bytes"))
            .await
            .unwrap();
        assert_eq!(c.mode(), PipeMode::Byte);
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        let data = pattern(150_000, 3);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                c.write_all(&data).await.unwrap();
                c.flush().await.unwrap();
                c
            })
        };
        let mut got = vec![0u8; data.len()];
        bounded("read", conn.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, data);
        let c = writer.await.unwrap();
        // Halves in two tasks at once.
        let (mut rx, mut tx) = c.split();
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 4];
            rx.read_exact(&mut b).await.unwrap();
            b
        });
        tx.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        bounded("read", conn.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"ping");
        conn.write_all(b"pong").await.unwrap();
        assert_eq!(&bounded("reader", reader).await.unwrap(), b"pong");
        // The end of the pipe is the end of the stream.
        drop(tx);
        let mut rest = Vec::new();
        assert_eq!(
            bounded("read", conn.read_to_end(&mut rest)).await.unwrap(),
            0
        );

        // Message mode through AsyncRead: the messages' bytes in order,
        // an empty message skipped.
        let s = AsyncServer::from(server(&ns).create("msgs").unwrap());
        let mut c = client(&ns).connect("msgs").unwrap();
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        c.send(b"abc").unwrap();
        c.send(b"").unwrap();
        c.send(b"defg").unwrap();
        drop(c);
        let mut all = Vec::new();
        bounded("read", conn.read_to_end(&mut all)).await.unwrap();
        assert_eq!(all, b"abcdefg");
    });
}

/// A blocking connection taken over keeps the messages it had put back;
/// a cloned one is refused.
#[test]
fn from_blocking() {
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("fb").unwrap();
    let mut c = client(&ns).connect("fb").unwrap();
    let mut conn = s.accept_timeout(LIMIT).unwrap();
    conn.send(b"0123456789").unwrap();
    conn.send(b"next").unwrap();
    // Too small: the message is put back.
    let mut small = [0u8; 2];
    assert_eq!(c.recv_into(&mut small).unwrap_err().needed(), Some(10));
    let other = c.try_clone().unwrap();
    let e = AsyncPipe::from_blocking(c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    drop(e);
    // `from_blocking` consumed that handle; the clone is now the only one.
    let mut a = AsyncPipe::from_blocking(other).unwrap();
    runtime().block_on(async {
        assert_eq!(bounded("recv", a.recv()).await.unwrap(), b"0123456789");
        assert_eq!(bounded("recv", a.recv()).await.unwrap(), b"next");
    });
}

// ------------------------------------------------------- two processes

/// The child's side of [`async_server_and_a_blocking_client_process`].
fn child_blocking_client() {
    let mut c = NamedPipe::connect("duo", LIMIT).expect("child: connect");
    assert_eq!(c.peer().pid, Some(parent_pid()));
    let big = pattern(100_000, 9);
    assert_eq!(c.transact(&big).unwrap(), big);
    assert_eq!(c.transact(b"from the child").unwrap(), b"from the parent");
    c.send(b"last words").unwrap();
    // Exit without disconnecting: the process's end closes the pipe.
    std::mem::forget(c);
}

#[test]
fn async_server_and_a_blocking_client_process() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "blocking-client" {
            child_blocking_client();
        }
        return;
    }
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let s = AsyncServer::from(server(&ns).create("duo").unwrap());
        let child = child(
            "async_server_and_a_blocking_client_process",
            "blocking-client",
            &ns,
        )
        .spawn()
        .unwrap();
        let child_pid = child.id();
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        assert_eq!(conn.peer().pid, Some(child_pid));
        let m = bounded("recv", conn.recv()).await.unwrap();
        assert_eq!(m, pattern(100_000, 9));
        conn.send(&m).await.unwrap();
        assert_eq!(
            bounded("recv", conn.recv()).await.unwrap(),
            b"from the child"
        );
        conn.send(b"from the parent").await.unwrap();
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"last words");
        let stdout = finish(child, "the child process");
        assert!(
            stdout.contains("1 passed"),
            "the child ran its role:\n{stdout}"
        );
        // The child is gone: so is its end.
        let e = bounded("recv", conn.recv()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    });
}

/// The child's side of [`blocking_server_and_an_async_client_process`].
fn child_async_client() {
    runtime().block_on(async {
        let mut c = bounded("child: connect", AsyncPipe::connect("duo2", LIMIT))
            .await
            .expect("child: connect");
        assert_eq!(c.peer().pid, Some(parent_pid()));
        let big = pattern(100_000, 5);
        assert_eq!(bounded("transact", c.transact(&big)).await.unwrap(), big);
        let (mut rx, mut tx) = c.split();
        tx.send(b"one").await.unwrap();
        tx.send(b"two").await.unwrap();
        assert_eq!(bounded("recv", rx.recv()).await.unwrap(), b"ONE");
        assert_eq!(bounded("recv", rx.recv()).await.unwrap(), b"TWO");
        // The parent disconnects.
        let e = bounded("recv", rx.recv()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    });
}

#[test]
fn blocking_server_and_an_async_client_process() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "async-client" {
            child_async_client();
        }
        return;
    }
    let (_dir, ns) = new_ns();
    let s = server(&ns).create("duo2").unwrap();
    let child = child(
        "blocking_server_and_an_async_client_process",
        "async-client",
        &ns,
    )
    .spawn()
    .unwrap();
    let child_pid = child.id();
    let mut conn = s.accept_timeout(LIMIT).unwrap();
    assert_eq!(conn.peer().pid, Some(child_pid));
    let m = conn.recv_timeout(LIMIT).unwrap();
    assert_eq!(m, pattern(100_000, 5));
    conn.send(&m).unwrap();
    for _ in 0..2 {
        let m = conn.recv_timeout(LIMIT).unwrap();
        conn.send(&m.to_ascii_uppercase()).unwrap();
    }
    conn.flush().unwrap();
    conn.disconnect();
    let stdout = finish(child, "the child process");
    assert!(
        stdout.contains("1 passed"),
        "the child ran its role:\n{stdout}"
    );
}

// ------------------------------------------------------------- interop

/// `pipe_client.c`: `WaitNamedPipe`, `CreateFile`,
/// `SetNamedPipeHandleState` to message mode, `TransactNamedPipe`, then
/// `WriteFile` / `ReadFile`, against an async ipckit server.
#[test]
fn an_async_server_serves_a_plain_win32_client() {
    let Some(peer) = c_peer("pipe_client") else {
        return;
    };
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let s = AsyncServer::from(server(&ns).create("interop/async").unwrap());
        let mut child = Command::new(&peer)
            .arg(s.os_name())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let child_pid = child.id();
        let mut conn = bounded("accept", s.accept()).await.unwrap();
        assert_eq!(conn.peer().pid, Some(child_pid));
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"ping from C");
        conn.send(b"pong from async ipckit").await.unwrap();
        assert_eq!(bounded("recv", conn.recv()).await.unwrap(), b"bye");
        conn.send(b"ciao").await.unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = bounded_thread("reading the C client's output", move || {
            BufReader::new(stdout)
                .lines()
                .map(|l| l.unwrap())
                .collect::<Vec<_>>()
        });
        finish(child, "the C client");
        assert_eq!(lines, ["reply=pong from async ipckit", "reply=ciao"]);
        let e = bounded("recv", conn.recv()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone);
    });
}

/// Many connections at once on one async server, each task in its own
/// exchange: every reply reaches its own client (no wake-up lost, nothing
/// crossed).
#[test]
fn an_async_echo_server_serves_many_clients_at_once() {
    let (_dir, ns) = new_ns();
    runtime().block_on(async {
        let s = AsyncServer::from(server(&ns).create("many").unwrap());
        let server = tokio::spawn(async move {
            let mut served = Vec::new();
            for _ in 0..8 {
                let mut conn = s.accept().await.unwrap();
                served.push(tokio::spawn(async move {
                    while let Ok(m) = conn.recv().await {
                        if conn.send(&m).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            for t in served {
                t.await.unwrap();
            }
        });
        let mut clients = Vec::new();
        for c in 0..8u32 {
            let opts = client(&ns);
            clients.push(tokio::spawn(async move {
                let mut p = AsyncPipe::connect_with(&opts, "many").await.unwrap();
                for i in 0..20u32 {
                    let m = pattern(1 + (i as usize * 997) % 20_000, c * 1000 + i);
                    assert_eq!(p.transact(&m).await.unwrap(), m, "client {c} message {i}");
                }
            }));
        }
        for t in clients {
            bounded("a client", t).await.unwrap();
        }
        // The clients are gone: every connection ends.
        bounded("the server", server).await.unwrap();
    });
}
