//! Each `ipckit-peer` role keeps the wire `ipckit bench` expects of it
//! (see `src/floors.rs`, `src/stream.rs`): the test process plays the
//! bench. Every wait is bounded; every peer is killed and reaped on drop.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::pipe::CommandExt as _;
use ipckit::shm::Mapping;

const DEADLINE: Duration = Duration::from_secs(30);

/// A peer process, killed and reaped when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    fn start(cmd: &mut Command) -> Peer {
        Peer(cmd.stdin(Stdio::null()).spawn().expect("start ipckit-peer"))
    }

    /// Wait (bounded) for a successful exit.
    fn wait_success(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                assert!(st.success(), "the peer failed: {st}");
                return;
            }
            assert!(Instant::now() < deadline, "the peer did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The first line the peer prints on stdout (bounded).
    fn first_line(&mut self) -> String {
        let out = self.0.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut l = String::new();
            let _ = BufReader::new(out).read_line(&mut l);
            let _ = tx.send(l);
        });
        rx.recv_timeout(DEADLINE).expect("a line from the peer")
    }
}

fn peer(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipckit-peer"));
    c.args(args);
    c
}

/// Poll `cond` until it holds, at most [`DEADLINE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// 64 distinct bytes, echoed back unchanged three times.
fn ping_pong(s: &mut (impl std::io::Read + std::io::Write)) {
    for round in 0..3u8 {
        let msg: Vec<u8> = (0..64).map(|i| i ^ round).collect();
        s.write_all(&msg).unwrap();
        let mut back = [0u8; 64];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back.as_slice(), msg.as_slice());
    }
}

#[test]
fn raw_echo_and_tcp_echo_send_64_byte_blocks_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let mut raw = Peer::start(peer(&["raw-echo", path.to_str().unwrap()]).stdout(Stdio::null()));
    let mut s = None;
    wait_until("the raw echo listens", || {
        s = std::os::unix::net::UnixStream::connect(&path).ok();
        s.is_some()
    });
    let mut s = s.unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    ping_pong(&mut s);
    drop(s);
    raw.wait_success(); // one connection, then done

    let mut tcp = Peer::start(peer(&["tcp-echo", "127.0.0.1:0"]).stdout(Stdio::piped()));
    let addr = tcp.first_line();
    let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    ping_pong(&mut s);
    drop(s);
    tcp.wait_success();
}

#[test]
fn pipe_echo_answers_through_inherited_pipe_ends() {
    let (to_peer_r, mut to_peer_w) = ipckit::pipe::pipe().unwrap();
    let (from_peer_r, from_peer_w) = ipckit::pipe::pipe().unwrap();
    let mut cmd = peer(&["pipe-echo", "3", "4"]);
    cmd.pass_fd(to_peer_r, 3).pass_fd(from_peer_w, 4);
    let mut p = Peer::start(&mut cmd);
    drop(cmd);
    // Reads are bounded by the peer's exit: it holds the only writer.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = from_peer_r;
        let mut got = Vec::new();
        let _ = r.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    let msg: Vec<u8> = (0..128u8).collect();
    to_peer_w.write_all(&msg).unwrap();
    drop(to_peer_w); // the peer sees the end and exits
    assert_eq!(rx.recv_timeout(DEADLINE).expect("the echo"), msg);
    p.wait_success();
}

#[test]
fn shm_spin_and_futex_answer_odd_values_and_stop_on_all_ones() {
    let map = Mapping::anonymous(4096).unwrap();
    let mut cmd = peer(&["shm-spin", "3"]);
    cmd.pass_fd(map.try_clone_fd().unwrap(), 3);
    let mut p = Peer::start(&mut cmd);
    drop(cmd);
    let w = map.atomic_u64(0).unwrap();
    for n in [1u64, 3, 5] {
        w.store(n, Ordering::Release);
        wait_until("the shm-spin peer answered", || {
            w.load(Ordering::Acquire) == n + 1
        });
    }
    w.store(u64::MAX, Ordering::Release);
    p.wait_success();

    let map = Mapping::anonymous(4096).unwrap();
    let mut cmd = peer(&["futex", "3"]);
    cmd.pass_fd(map.try_clone_fd().unwrap(), 3);
    let mut p = Peer::start(&mut cmd);
    drop(cmd);
    let w = map.atomic_u32(0).unwrap();
    for n in [1u32, 3, 5] {
        w.store(n, Ordering::Release);
        let _ = rustix::thread::futex::wake(w, rustix::thread::futex::Flags::empty(), 1);
        wait_until("the futex peer answered", || {
            w.load(Ordering::Acquire) == n + 1
        });
    }
    w.store(u32::MAX, Ordering::Release);
    let _ = rustix::thread::futex::wake(w, rustix::thread::futex::Flags::empty(), 1);
    p.wait_success();
}

#[test]
fn stream_sink_counts_messages_and_service_load_checks_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ns = ipckit::Namespace::at(dir.path()).unwrap();
    let server = ipckit::pipe::ServerOptions::new()
        .namespace(&ns)
        .create("sink")
        .unwrap();
    let mut sink =
        Peer::start(peer(&["stream-sink", "sink"]).env(ipckit::name::NAMESPACE_ENV, ns.dir()));
    let mut pipe = server.accept_timeout(DEADLINE).unwrap();
    for _ in 0..10 {
        pipe.send(&[0x5a; 64]).unwrap();
    }
    pipe.send(b"?").unwrap();
    assert_eq!(pipe.recv_timeout(DEADLINE).unwrap(), 10u64.to_le_bytes());
    drop(pipe);
    sink.wait_success(); // the bench closing the pipe ends the sink

    #[derive(serde::Deserialize)]
    struct AddArgs {
        a: i64,
        b: i64,
    }
    let _svc = ipckit::service::Server::builder("svc")
        .namespace(&ns)
        .handler("add", |p: AddArgs| Ok::<_, String>(p.a + p.b))
        .bind()
        .unwrap();
    let mut load = Peer::start(
        peer(&["service-load", "svc", "--client", "3", "--calls", "50"])
            .env(ipckit::name::NAMESPACE_ENV, ns.dir())
            .stdout(Stdio::piped()),
    );
    let line = load.first_line();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v, serde_json::json!({ "client": 3, "ok": 50 }));
    load.wait_success();
}

#[test]
fn handoff_reads_every_byte_and_answers_with_their_sum() {
    let len = 100_000usize;
    let map = Mapping::anonymous((4096 + len) as u64).unwrap();
    let mut cmd = peer(&["handoff", "3", &len.to_string()]);
    cmd.pass_fd(map.try_clone_fd().unwrap(), 3);
    let mut p = Peer::start(&mut cmd);
    drop(cmd);
    let w = map.atomic_u64(0).unwrap();
    let sum = map.atomic_u64(8).unwrap();
    for (n, fill) in [(1u64, 1u8), (3, 7), (5, 255)] {
        map.write_at(4096, &vec![fill; len]).unwrap();
        w.store(n, Ordering::Release);
        wait_until("the handoff peer answered", || {
            w.load(Ordering::Acquire) == n + 1
        });
        assert_eq!(sum.load(Ordering::Relaxed), len as u64 * u64::from(fill));
    }
    w.store(u64::MAX, Ordering::Release);
    p.wait_success();
}

#[test]
fn service_load_waits_for_go_and_reports_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let ns = ipckit::Namespace::at(dir.path()).unwrap();
    #[derive(serde::Deserialize)]
    struct AddArgs {
        a: i64,
        b: i64,
    }
    let _svc = ipckit::service::Server::builder("svc")
        .namespace(&ns)
        .handler("add", |p: AddArgs| Ok::<_, String>(p.a + p.b))
        .bind()
        .unwrap();
    let mut child = peer(&[
        "service-load",
        "svc",
        "--client",
        "1",
        "--calls",
        "20",
        "--wait-go",
    ])
    .env(ipckit::name::NAMESPACE_ENV, ns.dir())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let mut load = Peer(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let _ = tx.send(l.unwrap_or_default());
        }
    });
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "ready");
    // Nothing is called before "go".
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    stdin.write_all(b"go\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(&rx.recv_timeout(DEADLINE).unwrap()).unwrap();
    assert_eq!(v["client"], 1);
    assert_eq!(v["ok"], 20);
    assert!(v["ns"].as_u64().unwrap() > 0, "{v}");
    load.wait_success();
}

/// Byte payloads as serde `bytes` (one block, as `ipckit bench` sends).
struct Bytes(Vec<u8>);

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Bytes, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Calls with small and big payloads each way (over and under the 16 KiB
/// a lane carries inside its ring record; big ones are encoded and decoded
/// in the shared segments) from another process: every byte arrives, with
/// postcard and JSON, on shared memory and on the socket.
#[test]
fn small_and_big_payloads_arrive_whole_both_ways() {
    for transport in ["auto", "socket"] {
        let dir = tempfile::tempdir().unwrap();
        let ns = ipckit::Namespace::at(dir.path()).unwrap();
        let _svc = ipckit::service::Server::builder("svc")
            .namespace(&ns)
            .handler("echo", |b: Bytes| Ok::<_, String>(b))
            .handler("len", |b: Bytes| {
                Ok::<_, String>((
                    b.0.len() as u64,
                    b.0.iter().map(|x| u64::from(*x)).sum::<u64>(),
                ))
            })
            .handler("make", |(len, k): (u64, u64)| {
                Ok::<_, String>(Bytes((0..len).map(|i| (i * 31 + k) as u8).collect()))
            })
            .bind()
            .unwrap();
        for json in [false, true] {
            let mut args = vec!["service-sizes", "svc"];
            if json {
                // JSON spells each byte out: keep it smaller.
                args.extend(["--sizes", "64,16384,16385,300000"]);
                args.push("--json-bodies");
            }
            let mut p = Peer::start(
                peer(&args)
                    .env(ipckit::name::NAMESPACE_ENV, ns.dir())
                    .env("IPCKIT_TRANSPORT", transport)
                    .stdout(Stdio::piped()),
            );
            let line = p.first_line();
            let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            assert_eq!(
                v,
                serde_json::json!({ "ok": 24 }),
                "{transport} json={json}"
            );
            p.wait_success();
        }
    }
}
