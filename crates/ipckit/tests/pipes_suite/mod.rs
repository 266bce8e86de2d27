//! Cross-process tests of named pipes, anonymous pipes and namespaces: the
//! suite, instantiated once per transport (`tests/pipes.rs`: shared memory,
//! the default; `tests/pipes_socket.rs`: `IPCKIT_TRANSPORT=socket`).
//!
//! Servers and clients run as real processes: this test binary re-exec'd
//! in a role (`child_role` at the bottom: a pipe server, a pipe client, and
//! a few special ones). The test process itself is the other side. Every
//! wait is bounded; every child is killed and reaped on drop.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::support::{self, pattern, wait_until, Checksum, Gen, Proc, TestNs, DEADLINE};
use ipckit::name::EndpointState;
use ipckit::pipe::{
    ClientOptions, CommandExt as _, NamedPipe, PipeMode, PipeReader, PipeWriter, ServerOptions,
};
use ipckit::{ErrorKind, Transport};

/// The transport this instantiation of the suite runs on: set for the whole
/// process (children inherit it) before its first connection.
pub fn setup() -> TestNs {
    static FLAVOR: std::sync::Once = std::sync::Once::new();
    FLAVOR.call_once(|| {
        if crate::SOCKET_FLAVOR {
            std::env::set_var(ipckit::transport::TRANSPORT_ENV, "socket");
        } else {
            std::env::remove_var(ipckit::transport::TRANSPORT_ENV);
        }
    });
    TestNs::new()
}

/// What a local message-mode connection reports in this flavor.
fn local_message_transport() -> Transport {
    if crate::SOCKET_FLAVOR {
        Transport::Socket
    } else {
        Transport::SharedMemory
    }
}

/// Connect from the test process, waiting (bounded) for the server.
fn connect(t: &TestNs, name: &str) -> NamedPipe {
    ClientOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect(name)
        .unwrap_or_else(|e| panic!("cannot connect to '{name}': {e}"))
}

fn connect_now(t: &TestNs, name: &str) -> ipckit::Result<NamedPipe> {
    ClientOptions::new()
        .namespace(&t.ns)
        .timeout(Duration::ZERO)
        .connect(name)
}

/// A pipe server process (role `pipe-server`, see [`pipe_server`]).
pub fn serve(t: &TestNs, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec![name];
    args.extend_from_slice(extra);
    t.start("pipe-server", &args)
}

/// A pipe client process (role `pipe-client`, see [`pipe_client`]) run to
/// its end.
fn client(t: &TestNs, args: &[&str]) -> support::Output {
    t.run("pipe-client", args)
}

/// The endpoint `name` as the namespace lists it.
fn listed(t: &TestNs, name: &str) -> ipckit::name::EndpointInfo {
    let all = t.ns.list().unwrap();
    all.iter()
        .find(|e| e.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint '{name}' in {all:?}"))
}

// ---------------------------------------------------------------------------
// 1. many clients at once
// ---------------------------------------------------------------------------

#[test]
fn sixteen_client_processes_in_parallel_each_get_their_own_echo() {
    let t = setup();
    let server = serve(&t, "echo", &["--echo"]);
    // Prove the server serves before the burst (bounded).
    assert_eq!(
        connect(&t, "echo").transact(b"warm-up").unwrap(),
        b"warm-up"
    );

    let clients: Vec<(String, Proc)> = (0..16)
        .map(|i| {
            let msg = format!("client {i} says {}", "x".repeat(i * 7));
            let p = t.start("pipe-client", &["echo", &msg, "--timeout", "20s"]);
            (msg, p)
        })
        .collect();
    for (msg, p) in clients {
        let out = p.finish(DEADLINE);
        out.assert_success();
        assert_eq!(out.line("REPLY "), Some(msg.as_str()), "{out:#?}");
    }
    let errs = server.stderr_so_far();
    assert!(
        !errs.contains("client dropped"),
        "server complained: {errs}"
    );
}

// ---------------------------------------------------------------------------
// 2. max instances
// ---------------------------------------------------------------------------

#[test]
fn max_instances_one_refuses_a_second_client_with_busy_until_the_first_leaves() {
    let t = setup();
    let _server = serve(&t, "one", &["--echo", "--max-instances", "1"]);
    let mut first = connect(&t, "one");
    assert_eq!(first.transact(b"held").unwrap(), b"held");

    let e = connect_now(&t, "one").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");

    // Another process is refused the same way.
    let out = client(&t, &["one", "hi", "--timeout", "0s"]);
    out.assert_failure();
    assert!(out.stderr.to_lowercase().contains("busy"), "{out:#?}");

    // A bounded wait is refused with Timeout while the instance stays held.
    let e = ClientOptions::new()
        .namespace(&t.ns)
        .timeout(Duration::from_millis(200))
        .connect("one")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");

    drop(first);
    // The slot frees once the server notices; a waiting connect gets it.
    let mut again = connect(&t, "one");
    assert_eq!(again.transact(b"my turn").unwrap(), b"my turn");
    // And the client process too, once that one is gone.
    drop(again);
    let out = client(&t, &["one", "process turn", "--timeout", "20s"]);
    out.assert_success();
    assert_eq!(out.line("REPLY "), Some("process turn"), "{out:#?}");
}

// ---------------------------------------------------------------------------
// 3. connect before the server exists (WaitNamedPipe)
// ---------------------------------------------------------------------------

#[test]
fn clients_started_before_the_server_wait_for_it() {
    let t = setup();
    let ns = t.ns.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let lib_client = std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        let mut c = ClientOptions::new()
            .namespace(&ns)
            .timeout(Duration::from_secs(20))
            .connect("late")?;
        c.transact(b"from this process")
    });
    let mut other = t.start(
        "pipe-client",
        &["late", "from another process", "--timeout", "20s"],
    );
    started_rx.recv_timeout(DEADLINE).unwrap();
    // Neither has given up although there is no server yet.
    assert!(t.ns.info("late").unwrap().is_none());
    assert!(
        other.exited().is_none(),
        "the client process gave up at once"
    );
    assert!(
        !lib_client.is_finished(),
        "the client thread gave up at once"
    );

    let _server = serve(&t, "late", &["--echo"]);
    let reply = lib_client.join().unwrap().expect("client thread");
    assert_eq!(reply, b"from this process");
    let out = other.finish(DEADLINE);
    out.assert_success();
    assert_eq!(out.line("REPLY "), Some("from another process"));
}

// ---------------------------------------------------------------------------
// 4. connect timeout / not found
// ---------------------------------------------------------------------------

#[test]
fn connect_without_a_server_times_out_or_is_not_found() {
    let t = setup();
    let e = ClientOptions::new()
        .namespace(&t.ns)
        .timeout(Duration::from_millis(200))
        .connect("nobody")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("nobody"));

    let e = connect_now(&t, "nobody").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // The messages another process gets name the pipe and the cause.
    let out = client(&t, &["nobody", "x", "--timeout", "200ms"]);
    out.assert_failure();
    assert!(out.stderr.contains("nobody"), "{out:#?}");
    let out = client(&t, &["nobody", "x", "--timeout", "0s"]);
    out.assert_failure();
    assert!(out.stderr.contains("no pipe server"), "{out:#?}");
}

// ---------------------------------------------------------------------------
// 5. server killed mid-conversation
// ---------------------------------------------------------------------------

#[test]
fn server_killed_mid_conversation_gives_the_waiting_client_peer_gone() {
    let t = setup();
    // Without --echo the server prints each message and acknowledges it
    // with an empty reply; it never sends anything unasked, so a second
    // recv waits until the server goes away.
    let mut server = serve(&t, "victim", &[]);
    let mut c = connect(&t, "victim");
    assert_eq!(c.transact(b"first").unwrap(), b"");
    wait_until(DEADLINE, "the server printed the message", || {
        server.stdout_so_far().contains("MSG first")
    });

    let waiting = std::thread::spawn(move || c.recv_timeout(DEADLINE));
    server.kill();
    let e = waiting.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
}

// ---------------------------------------------------------------------------
// 6. oversized messages
// ---------------------------------------------------------------------------

#[test]
fn oversized_message_is_too_large_and_the_connection_stays_usable() {
    let t = setup();
    let _server = serve(&t, "small", &["--echo", "--max-message", "1024"]);
    let mut c = connect(&t, "small");
    assert_eq!(c.max_message_size(), 1024);

    let e = c.send(&[b'x'; 1025]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(e.needed(), Some(1025));
    let full = pattern(1024, 6);
    assert_eq!(c.transact(&full).unwrap(), full);
    assert_eq!(c.transact(b"next").unwrap(), b"next");
}

/// A client written from docs/PROTOCOL.md that ignores the limit, as a
/// buggy or hostile peer would: the server process must report the
/// oversized message and stay in step on that connection.
#[test]
fn server_process_discards_an_oversized_frame_from_a_raw_client_and_stays_in_step() {
    let t = setup();
    let server = serve(&t, "raw", &["--echo", "--max-message", "1024"]);
    drop(connect(&t, "raw")); // the server is up

    let path = t.ns.socket_path("raw");
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"IPCKPIPE");
    assert_eq!(hello[9], 0, "status ok");
    assert_eq!(u32::from_le_bytes(hello[12..16].try_into().unwrap()), 1024);

    let frame = |body: &[u8]| {
        let mut f = vec![1u8, 0, 0, 0];
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(body);
        f
    };
    s.write_all(&frame(&[7u8; 5000])).unwrap();
    s.write_all(&frame(b"after the big one")).unwrap();
    let mut h = [0u8; 8];
    s.read_exact(&mut h).unwrap_or_else(|e| {
        panic!(
            "no echo after the oversized frame ({e}); server said: {}",
            server.stderr_so_far()
        )
    });
    assert_eq!(h[0], 1);
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body, b"after the big one");
    wait_until(
        DEADLINE,
        "the server reported the oversized message",
        || server.stderr_so_far().contains("TOO LARGE"),
    );
}

// ---------------------------------------------------------------------------
// 7. message sizes
// ---------------------------------------------------------------------------

#[test]
fn messages_of_0_1_64k_and_16m_bytes_round_trip_intact() {
    let t = setup();
    let _server = serve(&t, "sizes", &["--echo", "--max-message", "33554432"]);
    let mut c = connect(&t, "sizes");
    assert_eq!(c.max_message_size(), 32 << 20);
    let sizes = [0usize, 1, 64 * 1024, 16 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        let msg = pattern(n, i as u64 + 1);
        let reply = c.transact(&msg).unwrap();
        assert_eq!(reply.len(), n, "size {n}");
        assert!(reply == msg, "message of {n} bytes came back changed");
    }
    // Boundaries are kept when messages are queued back to back, empty ones
    // included.
    let batch: Vec<Vec<u8>> = [0usize, 1, 0, 64 * 1024, 3]
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, 100 + i as u64))
        .collect();
    for m in &batch {
        c.send(m).unwrap();
    }
    for m in &batch {
        assert_eq!(&c.recv_timeout(DEADLINE).unwrap(), m);
    }
}

// ---------------------------------------------------------------------------
// 8. stale endpoints and name ownership
// ---------------------------------------------------------------------------

#[test]
fn endpoint_of_a_killed_server_is_stale_and_the_next_server_replaces_it() {
    let t = setup();
    let mut first = serve(&t, "svc", &["--echo"]);
    assert_eq!(connect(&t, "svc").transact(b"a").unwrap(), b"a");
    let e = listed(&t, "svc");
    assert_eq!(e.state, EndpointState::Live, "{e:?}");
    assert_eq!(e.kind, "pipe", "{e:?}");
    assert_eq!(e.pid, first.pid(), "{e:?}");

    first.kill();
    // The dead server left its record and socket behind.
    assert!(t.ns.socket_path("svc").exists());
    let e = listed(&t, "svc");
    assert_eq!(e.state, EndpointState::Stale, "{e:?}");
    let e = connect_now(&t, "svc").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    let second = serve(&t, "svc", &["--echo"]);
    assert_eq!(connect(&t, "svc").transact(b"b").unwrap(), b"b");
    let e = listed(&t, "svc");
    assert_eq!(e.state, EndpointState::Live, "{e:?}");
    assert_eq!(e.pid, second.pid(), "{e:?}");
}

#[test]
fn a_second_live_server_of_one_name_is_refused_and_the_first_keeps_serving() {
    let t = setup();
    let first = serve(&t, "taken", &["--echo"]);
    assert_eq!(connect(&t, "taken").transact(b"1").unwrap(), b"1");

    // Another process is refused, with a message naming the pipe and why.
    let out = t.run("pipe-server", &["taken", "--echo"]);
    out.assert_failure();
    assert!(out.stderr.contains("ERROR "), "{out:#?}");
    assert!(out.stderr.contains("taken"), "{out:#?}");
    assert!(out.stderr.contains("live"), "{out:#?}");

    let e = ServerOptions::new()
        .namespace(&t.ns)
        .create("taken")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains(&first.pid().to_string()), "{e}");

    // The refused attempts did not disturb the owner.
    assert_eq!(connect(&t, "taken").transact(b"2").unwrap(), b"2");
    assert_eq!(listed(&t, "taken").pid, first.pid());
}

// ---------------------------------------------------------------------------
// 9. bad names
// ---------------------------------------------------------------------------

#[test]
fn bad_names_are_rejected_in_this_process_and_in_others() {
    let t = setup();
    let long = "a".repeat(300);
    for bad in ["../x", "", long.as_str()] {
        let e = ServerOptions::new()
            .namespace(&t.ns)
            .create(bad)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "server {bad:?}: {e}");
        let e = connect_now(&t, bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "client {bad:?}: {e}");
        let e = ClientOptions::new()
            .namespace(&t.ns)
            .timeout(Duration::from_secs(5))
            .connect(bad)
            .unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidName,
            "waiting client {bad:?}: {e}"
        );

        let out = t.run("pipe-server", &[bad, "--echo"]);
        out.assert_failure();
        assert!(
            out.stderr.contains("invalid name"),
            "serve {bad:?}: {out:#?}"
        );
        let out = client(&t, &[bad, "hi", "--timeout", "5s"]);
        out.assert_failure();
        assert!(
            out.stderr.contains("invalid name"),
            "send {bad:?}: {out:#?}"
        );
    }
    // Nothing escaped the namespace, nothing was left in it.
    for leaked in ["x.ep", "x.sock", "x"] {
        assert!(!t.outside(leaked).exists(), "{leaked} escaped");
    }
    assert!(t.ns.list().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// 10. byte mode streaming
// ---------------------------------------------------------------------------

const STREAM_BYTES: usize = 100 << 20;

/// Chunk sizes that cross frame and buffer boundaries in odd places.
const CHUNKS: [usize; 5] = [65536, 1, 7, 40000, 131072 + 5];

#[test]
fn byte_mode_streams_100_mib_intact_through_an_echo_server_process() {
    let t = setup();
    let _server = serve(&t, "stream", &["--mode", "byte", "--echo"]);
    let mut c = connect(&t, "stream");
    assert_eq!(c.mode(), PipeMode::Byte);

    // One connection cannot be split between threads, so the writer runs
    // ahead of the reader by at most one chunk: write a chunk, read back as
    // many bytes (in differently sized reads), and checksum both streams.
    let mut gen = Gen::new(10);
    let (mut sent, mut got) = (Checksum::default(), Checksum::default());
    let mut out = vec![0u8; 131072 + 8];
    let mut back = vec![0u8; 131072 + 8];
    let mut total = 0usize;
    let mut i = 0;
    while total < STREAM_BYTES {
        let n = CHUNKS[i % CHUNKS.len()].min(STREAM_BYTES - total);
        i += 1;
        gen.fill(&mut out[..n.div_ceil(8) * 8]);
        c.write_all(&out[..n]).unwrap();
        sent.update(&out[..n]);
        let mut have = 0;
        while have < n {
            // Read in pieces unrelated to the write sizes.
            let want = (n - have).min(3000 + (i * 131) % 70000);
            let k = c.read(&mut back[have..have + want]).unwrap();
            assert!(k > 0, "stream ended early after {} bytes", total + have);
            have += k;
        }
        got.update(&back[..n]);
        total += n;
    }
    Write::flush(&mut c).unwrap();
    assert_eq!(sent.value().1, STREAM_BYTES as u64);
    assert_eq!(got.value(), sent.value(), "the echoed stream differs");
}

#[test]
fn byte_mode_streams_100_mib_from_a_writer_thread_to_a_server_process() {
    let t = setup();
    // Without --echo a byte-mode server copies the stream to the pipe it
    // was handed at fd 3, which the test reads concurrently with the
    // writer thread.
    let (mut server_out, out_w) = ipckit::pipe::pipe().unwrap();
    let mut cmd = t.role("pipe-server", &["sink", "--mode", "byte", "--out-fd", "3"]);
    cmd.pass_fd(out_w, 3);
    let mut server = Proc::spawn(&mut cmd);
    drop(cmd); // our copy of the write end
    let mut c = connect(&t, "sink");

    let writer = std::thread::spawn(move || {
        let mut gen = Gen::new(11);
        let mut sum = Checksum::default();
        let mut buf = vec![0u8; 131072 + 8];
        let (mut total, mut i) = (0usize, 0usize);
        while total < STREAM_BYTES {
            let n = CHUNKS[i % CHUNKS.len()].min(STREAM_BYTES - total);
            i += 1;
            gen.fill(&mut buf[..n.div_ceil(8) * 8]);
            c.write_all(&buf[..n]).unwrap();
            sum.update(&buf[..n]);
            total += n;
        }
        Write::flush(&mut c).unwrap();
        sum.value()
    });
    let reader = std::thread::spawn(move || {
        let mut sum = Checksum::default();
        let mut buf = vec![0u8; 100_000];
        let mut total = 0usize;
        while total < STREAM_BYTES {
            let n = server_out.read(&mut buf).unwrap();
            assert!(n > 0, "the server's output ended after {total} bytes");
            sum.update(&buf[..n]);
            total += n;
        }
        sum.value()
    });
    // Both threads finish on their own unless the pipe loses bytes; if the
    // bounded wait fails, dropping `server` kills it and unblocks both.
    wait_until(DEADLINE * 4, "the stream was written and read", || {
        writer.is_finished() && reader.is_finished()
    });
    let sent = writer.join().unwrap();
    let got = reader.join().unwrap();
    server.kill();
    assert_eq!(sent.1, STREAM_BYTES as u64);
    assert_eq!(got, sent, "the stream arrived changed");
}

// ---------------------------------------------------------------------------
// 11. TCP
// ---------------------------------------------------------------------------

#[test]
fn tcp_client_process_reaches_a_server_in_this_process() {
    let t = setup();
    let server = ServerOptions::new()
        .namespace(&t.ns)
        .tcp("127.0.0.1:0")
        .create("net")
        .unwrap();
    let addr = server.tcp_addr().unwrap();
    let handler = std::thread::spawn(move || {
        let mut conn = server.accept_timeout(DEADLINE)?;
        let peer = conn.peer();
        let msg = conn.recv_timeout(DEADLINE)?;
        conn.send(&msg.to_ascii_uppercase())?;
        Ok::<_, ipckit::Error>(peer)
    });
    let target = format!("tcp://{addr}");
    let out = client(&t, &[&target, "over tcp", "--timeout", "20s"]);
    out.assert_success();
    assert_eq!(out.line("REPLY "), Some("OVER TCP"), "{out:#?}");
    let peer = handler.join().unwrap().unwrap();
    assert_eq!(peer.addr.map(|a| a.ip()), Some(addr.ip()));
    assert_eq!(peer.pid, None, "TCP peers have no pid");
}

#[test]
fn tcp_client_in_this_process_reaches_a_server_process() {
    let t = setup();
    let mut server = serve(&t, "net", &["--echo", "--tcp", "127.0.0.1:0"]);
    let line = server.stderr_line("serving");
    let target = line
        .split("(and ")
        .nth(1)
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no TCP address in {line:?}"))
        .to_string();
    assert!(target.starts_with("tcp://127.0.0.1:"), "{target}");
    let mut c = NamedPipe::connect(&target, DEADLINE).unwrap();
    assert_eq!(c.name(), target);
    assert_eq!(c.transact(b"hello").unwrap(), b"hello");
    let big = pattern(300_000, 11);
    assert_eq!(c.transact(&big).unwrap(), big);
    // The local name reaches the same server.
    assert_eq!(connect(&t, "net").transact(b"local").unwrap(), b"local");
}

// ---------------------------------------------------------------------------
// 12. anonymous pipes
// ---------------------------------------------------------------------------

enum Chunk {
    Data(Vec<u8>),
    Eof,
}

/// Read `r` in a thread, forwarding each chunk and finally `Eof`.
fn chunks_of(mut r: PipeReader) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Chunk::Eof);
                    return;
                }
                Ok(n) => {
                    if tx.send(Chunk::Data(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Append chunks to `got` until EOF, each wait bounded.
fn read_to_eof(rx: &mpsc::Receiver<Chunk>, got: &mut Vec<u8>, what: &str) {
    while let Chunk::Data(d) = rx.recv_timeout(DEADLINE).expect(what) {
        got.extend_from_slice(&d);
    }
}

#[test]
fn anon_pipe_end_handed_to_a_child_at_a_chosen_fd_and_eof_once_it_closes() {
    let (r, w) = ipckit::pipe::pipe().unwrap();
    let mut cmd = support::role_command("inherited-writer", &["7"]);
    cmd.pass_fd(w, 7)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Proc::spawn_raw(&mut cmd);
    drop(cmd); // closes our copy of the write end
    let rx = chunks_of(r);

    let mut got = Vec::new();
    let first = format!("part 1 from pid {}\n", child.pid());
    while got.len() < first.len() {
        match rx.recv_timeout(DEADLINE).expect("child wrote nothing") {
            Chunk::Data(d) => got.extend_from_slice(&d),
            Chunk::Eof => panic!(
                "EOF while the child still holds the write end; child said: {}",
                child.stderr_so_far()
            ),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), first);
    // The child is alive and holds the only writer: no EOF may arrive.
    assert!(child.exited().is_none());
    match rx.recv_timeout(Duration::from_millis(200)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        Ok(Chunk::Eof) => panic!("EOF although the child still holds the write end"),
        Ok(Chunk::Data(d)) => panic!("unexpected data {d:?}"),
        Err(e) => panic!("{e}"),
    }
    // Let it finish; once it exits (the last writer), EOF follows.
    child
        .child()
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    read_to_eof(&rx, &mut got, "no EOF after the child exited");
    assert_eq!(String::from_utf8_lossy(&got), format!("{first}part 2\n"));
    let out = child.finish(DEADLINE);
    out.assert_success();
}

#[test]
fn anon_pipes_redirect_a_childs_stdin_and_stdout() {
    let (in_r, mut in_w) = ipckit::pipe::pipe().unwrap();
    let (out_r, out_w) = ipckit::pipe::pipe().unwrap();
    let mut cmd = std::process::Command::new("cat");
    cmd.stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::null());
    let child = Proc::spawn_raw(&mut cmd);
    drop(cmd); // our copies of cat's ends

    let data = pattern(3 << 20, 12);
    let expected = data.clone();
    let writer = std::thread::spawn(move || {
        in_w.write_all(&data).unwrap();
        // Dropping the only writer ends cat's input.
    });
    let rx = chunks_of(out_r);
    let mut got = Vec::new();
    read_to_eof(&rx, &mut got, "cat's output stalled");
    writer.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "cat's output differs from its input");
    child.finish(DEADLINE).assert_success();
}

/// `pipe:[inode]`, as /proc shows the pipe behind an fd.
fn proc_fd_target(pid: u32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

#[test]
fn anon_pipe_ends_not_handed_over_are_not_inherited() {
    let (r, w) = ipckit::pipe::pipe().unwrap();
    let me = std::process::id();
    let pipe_id = proc_fd_target(me, r.as_fd().as_raw_fd()).expect("our read end in /proc");
    assert!(pipe_id.starts_with("pipe:"), "{pipe_id}");
    assert_eq!(
        proc_fd_target(me, w.as_fd().as_raw_fd()).as_deref(),
        Some(&*pipe_id)
    );

    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60").stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = Proc::spawn_raw(&mut cmd);
    // spawn() returns after exec, so /proc shows the child's final fd table.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(!fds.is_empty(), "could not read the child's fds");
    assert!(
        !fds.contains(&pipe_id),
        "the child inherited an end of {pipe_id}: {fds:?}"
    );

    // Behaviourally: with our write end closed, EOF arrives although the
    // child still runs.
    drop(w);
    let rx = chunks_of(r);
    match rx.recv_timeout(DEADLINE) {
        Ok(Chunk::Eof) => {}
        Ok(Chunk::Data(d)) => panic!("unexpected data {d:?}"),
        Err(e) => panic!("no EOF while the child runs: it holds the write end ({e})"),
    }
    assert!(child.exited().is_none(), "sleep ended early");
    child.kill();
}

// ---------------------------------------------------------------------------
// 13. flush
// ---------------------------------------------------------------------------

#[test]
fn flush_returns_only_after_the_server_process_has_read_the_data() {
    let t = setup();
    // The server process reads only after we tell it to, through a second
    // channel (an anonymous pipe it inherits at fd 5).
    let (go_r, mut go_w) = ipckit::pipe::pipe().unwrap();
    let mut cmd = t.role("flush-server", &["flushed", "5"]);
    cmd.pass_fd(go_r, 5)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let server = Proc::spawn_raw(&mut cmd);
    drop(cmd);

    let mut c = connect(&t, "flushed");
    let msg = pattern(4096, 13);
    c.send(&msg).unwrap();

    let go_sent = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let flusher = {
        let go_sent = go_sent.clone();
        std::thread::spawn(move || {
            let r = c.flush();
            let after_go = go_sent.load(Ordering::SeqCst);
            done_tx.send(()).unwrap();
            (c, r, after_go)
        })
    };
    // The server has not read: flush must still be waiting. (A flush that
    // returned at once would be seen here.)
    match done_rx.recv_timeout(Duration::from_millis(300)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!(
            "flush returned before the server read anything ({other:?}); server said: {}",
            server.stderr_so_far()
        ),
    }
    go_sent.store(true, Ordering::SeqCst);
    go_w.write_all(b"g").unwrap();
    done_rx
        .recv_timeout(DEADLINE)
        .expect("flush did not return after the server read");
    let (mut c, r, after_go) = flusher.join().unwrap();
    r.unwrap();
    assert!(
        after_go,
        "flush returned before the server was told to read"
    );
    assert_eq!(c.recv_timeout(DEADLINE).unwrap(), b"read 4096 bytes");
}

// ---------------------------------------------------------------------------
// 14. disconnect
// ---------------------------------------------------------------------------

#[test]
fn server_disconnect_ends_one_client_and_the_others_keep_working() {
    let t = setup();
    let server = t.start("disconnect-server", &["dc"]);
    let mut a = connect(&t, "dc");
    let mut b = connect(&t, "dc");
    assert_eq!(a.transact(b"a1").unwrap(), b"a1");
    assert_eq!(b.transact(b"b1").unwrap(), b"b1");

    a.send(b"bye").unwrap();
    let e = a.recv_timeout(DEADLINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(a.send(b"more").unwrap_err().kind(), ErrorKind::PeerGone);

    assert_eq!(b.transact(b"b2").unwrap(), b"b2");
    // The freed instance (the server allows two) takes a new client.
    let mut c = connect(&t, "dc");
    assert_eq!(c.transact(b"c1").unwrap(), b"c1");
    assert_eq!(b.transact(b"b3").unwrap(), b"b3");
    let errs = server.stderr_so_far();
    assert!(!errs.contains("panicked"), "{errs}");
}

// ---------------------------------------------------------------------------
// 15. transport
// ---------------------------------------------------------------------------

#[test]
fn local_message_pipes_report_their_transport_and_byte_mode_and_tcp_stay_on_the_socket() {
    let t = setup();
    let want = local_message_transport();
    let want_name = if want == Transport::SharedMemory {
        "shm"
    } else {
        "socket"
    };
    let _m = serve(&t, "m", &["--echo"]);
    let mut c = connect(&t, "m");
    assert_eq!(c.transport(), want);
    assert_eq!(c.transact(b"lib").unwrap(), b"lib");
    // Two processes: the client process reports what it agreed on with
    // the server.
    let json = |args: &[&str]| {
        let out = client(&t, args);
        out.assert_success();
        let line = out.line("JSON ").unwrap_or_else(|| panic!("{out:#?}"));
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {out:#?}"));
        v
    };
    let v = json(&["m", "hi", "--json", "--timeout", "20s"]);
    assert_eq!(v["transport"], want_name, "{v}");
    assert_eq!(v["reply"], "hi", "{v}");
    // The explicit opt-out, by the client and by the server.
    let v = json(&[
        "m",
        "out",
        "--json",
        "--transport",
        "socket",
        "--timeout",
        "20s",
    ]);
    assert_eq!(v["transport"], "socket", "{v}");
    assert_eq!(v["reply"], "out", "{v}");
    let mut c = ClientOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .transport(Transport::Socket)
        .connect("m")
        .unwrap();
    assert_eq!(c.transport(), Transport::Socket);
    assert_eq!(c.transact(b"opted out").unwrap(), b"opted out");
    let _ms = serve(&t, "m-sock", &["--echo", "--transport", "socket"]);
    let mut c = connect(&t, "m-sock");
    assert_eq!(c.transport(), Transport::Socket);
    assert_eq!(
        c.transact(b"server opted out").unwrap(),
        b"server opted out"
    );
    // Byte mode stays on the socket.
    let _b = serve(&t, "b", &["--echo", "--mode", "byte"]);
    let mut c = connect(&t, "b");
    assert_eq!(c.transport(), Transport::Socket);
    c.write_all(b"bytes").unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"bytes");
    // TCP stays on the socket, both ends.
    let server = ServerOptions::new()
        .namespace(&t.ns)
        .tcp("127.0.0.1:0")
        .create("net")
        .unwrap();
    let target = format!("tcp://{}", server.tcp_addr().unwrap());
    let mut c = NamedPipe::connect(&target, DEADLINE).unwrap();
    let mut conn = server.accept_timeout(DEADLINE).unwrap();
    assert_eq!(c.transport(), Transport::Socket);
    assert_eq!(conn.transport(), Transport::Socket);
    c.send(b"tcp").unwrap();
    assert_eq!(conn.recv_timeout(DEADLINE).unwrap(), b"tcp");
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
        "pipe-server" => pipe_server(&args),
        "pipe-client" => pipe_client(&args),
        // Take the write end handed over at fd ARG0, write a line, wait for
        // a line on stdin, write another, exit.
        "inherited-writer" => {
            let mut w = PipeWriter::from_inherited_fd(support::inherited_fd(&args[0])).unwrap();
            writeln!(w, "part 1 from pid {}", std::process::id()).unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            w.write_all(b"part 2\n").unwrap();
        }
        // Serve one client on pipe ARG0, but read its message only after a
        // byte arrives on the inherited pipe at fd ARG1; reply with what
        // was read.
        "flush-server" => {
            let mut go = PipeReader::from_inherited_fd(support::inherited_fd(&args[1])).unwrap();
            let server = ipckit::pipe::PipeServer::create(&args[0]).unwrap();
            let mut conn = server.accept_timeout(DEADLINE).unwrap();
            let mut b = [0u8; 1];
            let _ = go.read(&mut b);
            let msg = conn.recv_timeout(DEADLINE).unwrap();
            conn.send(format!("read {} bytes", msg.len()).as_bytes())
                .unwrap();
            let _ = conn.recv_timeout(DEADLINE);
        }
        // Echo server ARG0 (two instances) that disconnects a client
        // saying "bye".
        "disconnect-server" => {
            let server = ServerOptions::new()
                .max_instances(2)
                .create(&args[0])
                .unwrap();
            loop {
                let mut conn = server.accept().unwrap();
                std::thread::spawn(move || loop {
                    let Ok(msg) = conn.recv() else { return };
                    if msg == b"bye" {
                        conn.disconnect();
                        return;
                    }
                    if conn.send(&msg).is_err() {
                        return;
                    }
                });
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Report a failure on stderr (`ERROR <error>`) and exit 1.
fn fail(e: ipckit::Error) -> ! {
    eprintln!("ERROR {e}");
    std::process::exit(1)
}

/// Role `pipe-server NAME [--echo] [--mode byte] [--max-instances N]
/// [--max-message N] [--tcp ADDR] [--transport socket] [--out-fd FD]`:
/// serve until killed. Says `serving pipe 'NAME'` (and `(and
/// tcp://ADDR)`) on stderr. With `--echo` every message (or byte) comes
/// back; without, a message is printed as `MSG <text>` and acknowledged
/// with an empty reply, and a byte stream is copied to the inherited pipe
/// at `--out-fd`. A connection's error is reported as `client dropped:
/// <error>` (a peer hanging up is not an error), an oversized message as
/// `TOO LARGE <error>` (and that connection goes on).
fn pipe_server(args: &[String]) {
    let name = &args[0];
    let echo = support::switch(args, "--echo");
    let byte = support::flag(args, "--mode") == Some("byte");
    let mut opts = ServerOptions::new();
    opts = opts.mode(if byte {
        PipeMode::Byte
    } else {
        PipeMode::Message
    });
    if let Some(n) = support::flag(args, "--max-instances") {
        opts = opts.max_instances(n.parse().unwrap());
    }
    if let Some(n) = support::flag(args, "--max-message") {
        opts = opts.max_message_size(n.parse().unwrap());
    }
    if let Some(a) = support::flag(args, "--tcp") {
        opts = opts.tcp(a);
    }
    if support::flag(args, "--transport") == Some("socket") {
        opts = opts.transport(Transport::Socket);
    }
    let sink = support::flag(args, "--out-fd").map(|fd| {
        Arc::new(std::sync::Mutex::new(
            PipeWriter::from_inherited_fd(support::inherited_fd(fd)).unwrap(),
        ))
    });
    let server = opts.create(name).unwrap_or_else(|e| fail(e));
    match server.tcp_addr() {
        Some(a) => eprintln!("serving pipe '{name}' (and tcp://{a})"),
        None => eprintln!("serving pipe '{name}'"),
    }
    loop {
        let mut conn = server.accept().unwrap_or_else(|e| fail(e));
        let sink = sink.clone();
        std::thread::spawn(move || {
            let r = if byte {
                serve_bytes(&mut conn, echo, sink)
            } else {
                serve_messages(&mut conn, echo)
            };
            if let Err(e) = r {
                if e.kind() != ErrorKind::PeerGone {
                    eprintln!("client dropped: {e}");
                }
            }
        });
    }
}

fn serve_messages(conn: &mut NamedPipe, echo: bool) -> ipckit::Result<()> {
    loop {
        let msg = match conn.recv() {
            Ok(m) => m,
            // The library discarded the oversized message and the stream
            // is still in step: report it and keep serving this client.
            Err(e) if e.kind() == ErrorKind::TooLarge => {
                eprintln!("TOO LARGE {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        if echo {
            conn.send(&msg)?;
        } else {
            support::say(&format!("MSG {}", String::from_utf8_lossy(&msg)));
            conn.send(b"")?;
        }
    }
}

fn serve_bytes(
    conn: &mut NamedPipe,
    echo: bool,
    sink: Option<Arc<std::sync::Mutex<PipeWriter>>>,
) -> ipckit::Result<()> {
    let gone = |e: std::io::Error| {
        ipckit::Error::new(ErrorKind::PeerGone, "the stream broke").with_source(e)
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = conn.read(&mut buf).map_err(gone)?;
        if n == 0 {
            return Ok(());
        }
        if echo {
            conn.write_all(&buf[..n]).map_err(gone)?;
        } else {
            let sink = sink.as_ref().expect("a byte sink needs --out-fd");
            sink.lock().unwrap().write_all(&buf[..n]).map_err(gone)?;
        }
    }
}

/// Role `pipe-client NAME MESSAGE [--timeout DURATION] [--json]
/// [--transport socket]`: connect, transact once, print `REPLY <reply>`
/// (or `JSON {"reply", "transport"}`); on failure `ERROR <error>` on
/// stderr and exit 1.
fn pipe_client(args: &[String]) {
    let mut opts = ClientOptions::new();
    opts = opts.timeout(support::duration(
        support::flag(args, "--timeout").unwrap_or("5s"),
    ));
    if support::flag(args, "--transport") == Some("socket") {
        opts = opts.transport(Transport::Socket);
    }
    let mut pipe = opts.connect(&args[0]).unwrap_or_else(|e| fail(e));
    let reply = pipe
        .transact(args[1].as_bytes())
        .unwrap_or_else(|e| fail(e));
    let text = String::from_utf8_lossy(&reply);
    if support::switch(args, "--json") {
        let transport = match pipe.transport() {
            Transport::SharedMemory => "shm",
            _ => "socket",
        };
        let v = serde_json::json!({ "reply": text, "transport": transport });
        support::say(&format!("JSON {v}"));
    } else {
        support::say(&format!("REPLY {text}"));
    }
}
