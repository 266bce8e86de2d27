//! `ipckit bench`: latencies of ipckit's paths beside raw floors measured
//! in the same run, with one harness (warm-up, hdrhistogram percentiles).
//!
//! Every case talks to a real peer process: `ipckit-peer` (crate
//! `crates/ipckit-peers`) for the raw floors and the stream sink, found
//! beside this executable or where `IPCKIT_PEER` points ([`peer`]), or this
//! binary's own `pipe serve` and `service demo`. Figures are only
//! meaningful as ratios to their floor: the machines are shared.
//!
//! Rows come in two shapes:
//! - latency rows (`floor/*`, `pipe/*`, `service/*`): `samples` timed
//!   round trips; p50/p99/p99.9 are of single round trips; `msgs_per_s` is
//!   null; `ratio` = p50 / the floor's p50 (lower is better). The async
//!   rows (`service/*-async`, `Client::call_async`, and `pipe/*-async`, an
//!   `ipckit::pipe::tokio::NamedPipe`'s `transact`, awaited by a tokio
//!   current-thread runtime on this thread) take the sync row of the same transport
//!   and payload as their floor, so their ratio is async / sync.
//! - throughput rows (`stream/*`): one-way 64-byte messages sent in batches
//!   of [`STREAM_BATCH`], the peer acknowledging each batch. `msgs_per_s` =
//!   all messages / total time; `samples` = messages; p50/p99/p99.9 are
//!   percentiles of the *mean ns per message of each batch* (not of single
//!   messages, which are not timed one by one); `ratio` = msgs_per_s /
//!   the floor's msgs_per_s (higher is better).
//!
//! Transports: each ipckit case takes a [`Transport`], so a new one (e.g.
//! shared memory) is one constant plus one line per case in [`cases`].
//!
//! Built with the `zenoh` feature, the run also has the fabric rows
//! (`service/zenoh` 64 B and 1 MiB, `service/zenoh-async` 64 B: an
//! `ipckit service demo zenoh://NAME` peer on a loopback port, multicast
//! scouting off), compared with `service/tcp` of the same payload (a
//! 1 MiB `service/tcp` row joins them), and `service/zenoh-async` with the
//! sync row.
//!
//! The loan rows (`service/shm-loan`) are compared with
//! `floor/handoff-1MiB` (1 MiB written into shared memory, read in full by
//! another process, spin hand-offs both ways): a local memcpy moves no data
//! to another core, so it is no floor for a zero-copy call.
//!
//! `--sweep` ([`run_sweep`]) measures latency for payloads of 64 B to 64 MiB
//! (powers of 4) per transport beside the floors of moving that many bytes,
//! and service throughput with 1, 4, 16 and 64 concurrent clients (threads
//! of this process, and `ipckit-peer service-load` processes); `--plot`
//! draws it as SVG ([`plot`]). `IPCKIT_BENCH_SWEEP_MAX` (bytes) and
//! `IPCKIT_BENCH_SWEEP_CLIENTS` (e.g. `1,4`) shrink it for tests.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ipckit::pipe::CommandExt as _;
use ipckit::shm::Mapping;
use ipckit::{Error, ErrorKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::util::Reaped;

/// How long any single wait for a peer may take before the case fails.
const WAIT: Duration = Duration::from_secs(10);
/// Messages per acknowledged batch in the stream cases.
const STREAM_BATCH: usize = 5_000;
/// The environment variable a peer process reads to pick its transport.
const TRANSPORT_ENV: &str = "IPCKIT_TRANSPORT";
/// The environment variable naming the `ipckit-peer` program, when it is
/// not beside this executable.
const PEER_ENV: &str = "IPCKIT_PEER";
/// The peer program's file name.
const PEER_PROGRAM: &str = "ipckit-peer";

/// One row of the report.
#[derive(Serialize, Debug, Clone)]
pub struct Row {
    pub case: String,
    pub payload: usize,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub msgs_per_s: Option<f64>,
    pub samples: u64,
    /// The floor this row is compared with (null for floors).
    pub floor: Option<&'static str>,
    /// p50 / floor p50 for latency rows, msgs_per_s / floor msgs_per_s
    /// for stream rows; null when the floor was not run (see `--filter`).
    pub ratio: Option<f64>,
}

#[derive(Clone, Copy)]
struct Settings {
    warmup: usize,
    samples: usize,
    /// Messages per stream case (after one warm-up batch).
    stream_msgs: usize,
}

impl Settings {
    /// Fewer rounds for big payloads, so every case takes similar time.
    fn for_payload(self, payload: usize) -> Settings {
        let div = match payload {
            p if p >= 1 << 20 => 20,
            p if p >= 64 << 10 => 4,
            _ => 1,
        };
        Settings {
            warmup: (self.warmup / div).max(10),
            samples: (self.samples / div).max(100),
            ..self
        }
    }
}

/// How an ipckit case reaches its peer. Adding a transport (e.g. shared
/// memory) is one more constant and one more line per case in [`cases`].
#[derive(Clone, Copy)]
pub struct Transport {
    /// `IPCKIT_TRANSPORT` for the peer process; `None` passes on whatever
    /// value this process was given (children inherit the environment).
    env: Option<&'static str>,
    /// Reach the service over `tcp://` instead of the local socket
    /// (service cases only).
    tcp: bool,
    /// Applied to this process's pipe client / server options.
    pipe_client: fn(ipckit::pipe::ClientOptions) -> ipckit::pipe::ClientOptions,
    pipe_server: fn(ipckit::pipe::ServerOptions) -> ipckit::pipe::ServerOptions,
    /// Applied to this process's service client options.
    service_client: fn(ipckit::service::ClientBuilder) -> ipckit::service::ClientBuilder,
    /// Extra arguments for a service peer (`ipckit service demo`).
    peer_args: &'static [&'static str],
}

/// The local socket transport: a Unix socket in the namespace, with the
/// shared-memory path turned off on both sides.
const UNIX: Transport = Transport {
    env: Some("socket"),
    tcp: false,
    pipe_client: |o| o.transport(ipckit::Transport::Socket),
    pipe_server: |o| o.transport(ipckit::Transport::Socket),
    service_client: |o| o.transport(ipckit::Transport::Socket),
    peer_args: &["--transport", "socket"],
};

/// The shared-memory transport (what local connections get by default).
const SHM: Transport = Transport {
    env: Some("auto"),
    tcp: false,
    pipe_client: |o| o.transport(ipckit::Transport::SharedMemory),
    pipe_server: |o| o.transport(ipckit::Transport::SharedMemory),
    service_client: |o| o.transport(ipckit::Transport::SharedMemory),
    peer_args: &[],
};

/// Shared memory with the server's lane threads parking at once.
const SHM_PARKED: Transport = Transport {
    peer_args: &["--wait", "park"],
    ..SHM
};

/// Loopback TCP (services).
const TCP: Transport = Transport { tcp: true, ..UNIX };

impl Transport {
    fn peer_env(&self, cmd: &mut Command) {
        if let Some(v) = self.env {
            cmd.env(TRANSPORT_ENV, v);
        }
    }

    fn local_only(&self, case: &str) -> Result<(), Error> {
        if self.tcp {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("bench case {case} has no TCP variant; use a local transport"),
            ));
        }
        Ok(())
    }
}

fn io(e: std::io::Error, what: &str) -> Error {
    Error::new(ErrorKind::Io, format!("bench: {what}: {e}")).with_source(e)
}

fn timeout(what: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("bench: {what} within {WAIT:?}; the peer process is stuck or gone, rerun the case"),
    )
}

/// This binary (for the `pipe serve` and `service demo` peers).
fn me() -> Result<Command, Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    Ok(Command::new(exe))
}

/// Where `ipckit-peer` is: `$IPCKIT_PEER` when set (an explicit choice
/// wins), else beside this executable. One line saying how to build it
/// when it is in neither place.
fn peer_program() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(PEER_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "bench: {PEER_ENV}={} is not a file; build the peer with `cargo build --release -p ipckit-peers`",
                    p.display()
                ),
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let beside = exe.with_file_name(PEER_PROGRAM);
    if beside.is_file() {
        return Ok(beside);
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "bench: the peer program {PEER_PROGRAM} is not beside {} and {PEER_ENV} is not set; build it with `cargo build --release -p ipckit-peers`",
            exe.display()
        ),
    ))
}

/// `ipckit-peer` (the raw floors' and the stream sink's peer).
fn peer() -> Result<Command, Error> {
    Ok(Command::new(peer_program()?))
}

fn spawn(cmd: &mut Command) -> Result<Reaped, Error> {
    Ok(Reaped(
        cmd.spawn().map_err(|e| io(e, "cannot start the peer"))?,
    ))
}

fn progress(case: &str, len: u64) -> ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>24} {bar:30} {pos}/{len}").expect("valid template"),
    );
    pb.set_prefix(case.to_string());
    pb
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds are valid")
}

/// Time `samples` round trips after `warmup` unmeasured ones.
fn measure(
    case: &str,
    payload: usize,
    floor: Option<&'static str>,
    s: &Settings,
    mut round_trip: impl FnMut() -> Result<(), Error>,
) -> Result<Row, Error> {
    let pb = progress(case, (s.warmup + s.samples) as u64);
    for _ in 0..s.warmup {
        round_trip()?;
        pb.inc(1);
    }
    let mut h = histogram();
    for i in 0..s.samples {
        let t = Instant::now();
        round_trip()?;
        h.saturating_record(t.elapsed().as_nanos() as u64);
        if i % 64 == 0 {
            pb.inc(64);
        }
    }
    pb.finish_and_clear();
    Ok(Row {
        case: case.into(),
        payload,
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        msgs_per_s: None,
        samples: h.len(),
        floor,
        ratio: None,
    })
}

fn wait_for(path: &Path) -> Result<UnixStream, Error> {
    let deadline = Instant::now() + WAIT;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(io(e, "peer did not come up")),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Read the peer's stdout until a line starting with `prefix`.
fn read_line_starting(
    out: &mut impl std::io::BufRead,
    prefix: &str,
    what: &str,
) -> Result<String, Error> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).map_err(|e| io(e, what))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::PeerGone,
                format!("bench: {what}: the peer exited; run it by hand to see why"),
            ));
        }
        if line.starts_with(prefix) {
            return Ok(line.trim().to_string());
        }
    }
}

// ---------------------------------------------------------------- floors

/// Parent side of the shared-memory word floors: the word at offset 0 of
/// a 4 KiB anonymous mapping, handed to the peer as fd 3.
fn shm_peer(kind: &str) -> Result<(Mapping, Reaped), Error> {
    let map = Mapping::anonymous(4096)?;
    let mut cmd = peer()?;
    cmd.args([kind, "3"]).pass_fd(map.try_clone_fd()?, 3);
    let peer = spawn(&mut cmd)?;
    Ok((map, peer))
}

/// The value that tells a word peer to exit (odd, so checked first); the
/// wire of `crates/ipckit-peers/src/floors.rs`.
const STOP_U64: u64 = u64::MAX;
const STOP_U32: u32 = u32::MAX;

fn floor_shm_spin(s: &Settings) -> Result<Row, Error> {
    let (map, _peer) = shm_peer("shm-spin")?;
    let w = map.atomic_u64(0)?;
    let mut seq = 1u64;
    let row = measure("floor/shm-spin", 8, None, s, || {
        w.store(seq, Ordering::Release);
        spin_until(w, seq + 1)?;
        seq += 2;
        Ok(())
    });
    w.store(STOP_U64, Ordering::Release);
    row
}

/// Busy-poll `w` until it holds `target`, failing after [`WAIT`].
fn spin_until(w: &AtomicU64, target: u64) -> Result<(), Error> {
    let mut spins = 0u32;
    let mut deadline = None;
    while w.load(Ordering::Acquire) != target {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 14) == 0 {
            // Long past a normal round trip (~100 ns): the peer is likely
            // descheduled, so give up the CPU rather than starve it.
            std::thread::yield_now();
        }
        if spins % (1 << 16) == 0 {
            let d = *deadline.get_or_insert_with(|| Instant::now() + WAIT);
            if Instant::now() > d {
                return Err(timeout("the shm-spin peer did not answer"));
            }
        }
    }
    Ok(())
}

fn floor_futex(s: &Settings) -> Result<Row, Error> {
    let (map, _peer) = shm_peer("futex")?;
    let w = map.atomic_u32(0)?;
    let mut seq = 1u32;
    let row = measure("floor/futex", 4, None, s, || {
        w.store(seq, Ordering::Release);
        futex_wake(w);
        futex_until(w, seq + 1)?;
        seq += 2;
        Ok(())
    });
    w.store(STOP_U32, Ordering::Release);
    futex_wake(w);
    row
}

/// Wake the peer sleeping on `w` (a bare shared futex: the raw floor).
fn futex_wake(w: &AtomicU32) {
    let _ = rustix::thread::futex::wake(w, rustix::thread::futex::Flags::empty(), 1);
}

/// Sleep on `w` until it holds `target` (no spinning), failing after [`WAIT`].
fn futex_until(w: &AtomicU32, target: u32) -> Result<(), Error> {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = w.load(Ordering::Acquire);
        if v == target {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(timeout("the futex peer did not answer"));
        }
        let ts = rustix::time::Timespec {
            tv_sec: WAIT.as_secs() as i64,
            tv_nsec: i64::from(WAIT.subsec_nanos()),
        };
        // A changed value, a spurious wake-up or the timeout: look again.
        let _ = rustix::thread::futex::wait(w, rustix::thread::futex::Flags::empty(), v, Some(&ts));
    }
}

fn floor_pipe(s: &Settings) -> Result<Row, Error> {
    let (to_child_r, mut to_child_w) = ipckit::pipe::pipe()?;
    let (mut from_child_r, from_child_w) = ipckit::pipe::pipe()?;
    let mut cmd = peer()?;
    cmd.args(["pipe-echo", "3", "4"])
        .pass_fd(to_child_r, 3)
        .pass_fd(from_child_w, 4);
    let _peer = spawn(&mut cmd)?;
    drop(cmd);
    let mut buf = [0u8; 64];
    measure("floor/pipe", 64, None, s, || {
        to_child_w.write_all(&buf).map_err(|e| io(e, "write"))?;
        from_child_r.read_exact(&mut buf).map_err(|e| io(e, "read"))
    })
}

fn floor_unix(s: &Settings, dir: &Path) -> Result<Row, Error> {
    let path = dir.join("floor-unix.sock");
    let mut cmd = peer()?;
    cmd.arg("raw-echo").arg(&path);
    let _peer = spawn(&mut cmd)?;
    let mut sock = wait_for(&path)?;
    let mut buf = [0u8; 64];
    measure("floor/unix-stream", 64, None, s, || {
        sock.write_all(&buf).map_err(|e| io(e, "write"))?;
        sock.read_exact(&mut buf).map_err(|e| io(e, "read"))
    })
}

fn floor_tcp(s: &Settings) -> Result<Row, Error> {
    let mut cmd = peer()?;
    cmd.args(["tcp-echo", "127.0.0.1:0"]).stdout(Stdio::piped());
    let mut child = spawn(&mut cmd)?;
    let out = child.0.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| io(e, "peer did not report its port"))?;
    let mut sock = TcpStream::connect(line.trim()).map_err(|e| io(e, "connect"))?;
    sock.set_nodelay(true).map_err(|e| io(e, "nodelay"))?;
    let mut buf = [0u8; 64];
    measure("floor/tcp", 64, None, s, || {
        sock.write_all(&buf).map_err(|e| io(e, "write"))?;
        sock.read_exact(&mut buf).map_err(|e| io(e, "read"))
    })
}

fn floor_memcpy(s: &Settings) -> Result<Row, Error> {
    let settings = Settings {
        warmup: s.warmup.min(200),
        samples: s.samples.min(2000),
        ..*s
    };
    floor_memcpy_n(MEMCPY, 1 << 20, &settings)
}

/// One local copy of `len` bytes between two buffers touched before.
fn floor_memcpy_n(case: &str, len: usize, settings: &Settings) -> Result<Row, Error> {
    let src = vec![7u8; len];
    let mut dst = vec![0u8; len];
    measure(case, len, None, settings, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        Ok(())
    })
}

/// The hand-off floor: this process writes `len` bytes into shared memory
/// (one memcpy), hands them to an `ipckit-peer handoff` process by a
/// spinning word, the peer reads every byte (their sum) and hands back.
/// What a zero-copy loan call cannot beat: the data crosses to another
/// core and back once.
fn floor_handoff(case: &'static str, len: usize, s: &Settings) -> Result<Row, Error> {
    const DATA: usize = 4096; // HANDOFF_DATA of crates/ipckit-peers/src/floors.rs
    let map = Mapping::anonymous((DATA + len) as u64)?;
    let mut cmd = peer()?;
    cmd.args(["handoff", "3", &len.to_string()])
        .pass_fd(map.try_clone_fd()?, 3);
    let _peer = spawn(&mut cmd)?;
    let w = map.atomic_u64(0)?;
    let sum = map.atomic_u64(8)?;
    let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let want: u64 = src.iter().map(|b| u64::from(*b)).sum();
    let mut seq = 1u64;
    let row = measure(case, len, None, s, || {
        map.write_at(DATA, std::hint::black_box(&src))?;
        w.store(seq, Ordering::Release);
        spin_until(w, seq + 1)?;
        seq += 2;
        let got = sum.load(Ordering::Relaxed);
        if got != want {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("bench: {case}: the peer summed {got}, not {want}"),
            ));
        }
        Ok(())
    });
    w.store(STOP_U64, Ordering::Release);
    row
}

// ---------------------------------------------------------------- pipes

/// Named-pipe message round trip (64 B) to a `pipe serve --echo` peer.
fn pipe_case(case: &'static str, t: Transport, s: &Settings, ns: &Path) -> Result<Row, Error> {
    let floor = if case.ends_with("/shm") {
        "floor/shm-spin"
    } else {
        "floor/unix-stream"
    };
    pipe_case_n(case, 64, floor, t, s, ns)
}

/// A named-pipe message round trip of `payload` bytes to a `pipe serve
/// --echo` peer (whose message limit is raised to fit it).
fn pipe_case_n(
    case: &'static str,
    payload: usize,
    floor: &'static str,
    t: Transport,
    s: &Settings,
    ns: &Path,
) -> Result<Row, Error> {
    let (mut pipe, _peer) = pipe_peer_n(case, payload, t, ns)?;
    let msg: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    measure(case, payload, Some(floor), s, || {
        let r = pipe.transact(&msg)?;
        check_echo(case, &r, &msg)
    })
}

/// The async form of [`pipe_case`]: the same echo peer, this process's end
/// an `ipckit::pipe::tokio::NamedPipe` on a current-thread tokio runtime,
/// compared with the sync row `sync` of the same run.
fn pipe_async_case(
    case: &'static str,
    sync: &'static str,
    t: Transport,
    s: &Settings,
    ns: &Path,
) -> Result<Row, Error> {
    let (pipe, _peer) = pipe_peer(case, t, ns)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io(e, "cannot start a tokio runtime"))?;
    let mut pipe = {
        let _in_rt = rt.enter();
        ipckit::pipe::tokio::NamedPipe::from_blocking(pipe)?
    };
    let msg = [0u8; 64];
    measure(case, 64, Some(sync), s, || {
        let r = rt.block_on(pipe.transact(&msg))?;
        check_echo(case, &r, &msg)
    })
}

/// Start an `ipckit pipe serve --echo` peer for `case` and connect to it.
fn pipe_peer(
    case: &'static str,
    t: Transport,
    ns: &Path,
) -> Result<(ipckit::pipe::NamedPipe, Reaped), Error> {
    pipe_peer_n(case, 64, t, ns)
}

/// [`pipe_peer`] for messages of `payload` bytes: over the pipes' default
/// limit (1 MiB) the peer's limit is raised to fit.
fn pipe_peer_n(
    case: &'static str,
    payload: usize,
    t: Transport,
    ns: &Path,
) -> Result<(ipckit::pipe::NamedPipe, Reaped), Error> {
    t.local_only(case)?;
    let name = format!("bench/{}-{payload}", case.replace('/', "-"));
    let mut cmd = me()?;
    cmd.args(["pipe", "serve", &name, "--echo"]);
    if payload > ipckit::pipe::DEFAULT_MAX_MESSAGE_SIZE {
        cmd.args(["--max-message", &payload.to_string()]);
    }
    cmd.env(ipckit::name::NAMESPACE_ENV, ns)
        .stderr(Stdio::null());
    t.peer_env(&mut cmd);
    let peer = spawn(&mut cmd)?;
    let nsp = ipckit::Namespace::at(ns)?;
    let mut opts = ipckit::pipe::ClientOptions::new();
    opts = opts.namespace(&nsp).timeout(WAIT);
    opts = (t.pipe_client)(opts);
    Ok((opts.connect(&name)?, peer))
}

/// An echo that came back changed is an error, not a figure.
fn check_echo(case: &str, got: &[u8], sent: &[u8]) -> Result<(), Error> {
    if got != sent {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "bench: {case}: the echo has {} bytes, not the {} sent",
                got.len(),
                sent.len()
            ),
        ));
    }
    Ok(())
}

/// One-way 64-byte messages through a named pipe (message mode) to an
/// `ipckit-peer stream-sink` that counts them and acknowledges each batch
/// of [`STREAM_BATCH`] with the count so far. This process is the server
/// (so `Transport::pipe_server` applies here); the sink is the client.
fn stream_case(
    case: &'static str,
    floor: Option<&'static str>,
    t: Transport,
    s: &Settings,
    ns: &Path,
) -> Result<Row, Error> {
    t.local_only(case)?;
    let name = format!("bench/{}", case.replace('/', "-"));
    let nsp = ipckit::Namespace::at(ns)?;
    let mut opts = ipckit::pipe::ServerOptions::new();
    opts = opts.namespace(&nsp);
    opts = (t.pipe_server)(opts);
    let server = opts.create(&name)?;
    let mut cmd = peer()?;
    cmd.args(["stream-sink", &name])
        .env(ipckit::name::NAMESPACE_ENV, ns);
    t.peer_env(&mut cmd);
    let _peer = spawn(&mut cmd)?;
    let mut pipe = server.accept_timeout(WAIT)?;
    let msg = [0x5au8; 64];
    let batches = s.stream_msgs.div_ceil(STREAM_BATCH).max(1);
    let pb = progress(case, (batches + 1) as u64);
    let mut sent = 0u64;
    let mut batch = |pipe: &mut ipckit::pipe::NamedPipe| -> Result<(), Error> {
        for _ in 0..STREAM_BATCH {
            pipe.send(&msg)?;
        }
        pipe.send(b"?")?;
        sent += STREAM_BATCH as u64;
        let ack = pipe.recv_timeout(WAIT)?;
        let got = <[u8; 8]>::try_from(ack.as_slice())
            .ok()
            .map(u64::from_le_bytes);
        if got != Some(sent) {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("bench: {case}: the sink acknowledged {got:?} messages, expected {sent}"),
            ));
        }
        Ok(())
    };
    batch(&mut pipe)?; // warm-up
    pb.inc(1);
    let mut h = histogram();
    let start = Instant::now();
    for _ in 0..batches {
        let t = Instant::now();
        batch(&mut pipe)?;
        h.saturating_record(t.elapsed().as_nanos() as u64 / STREAM_BATCH as u64);
        pb.inc(1);
    }
    let total = start.elapsed();
    pb.finish_and_clear();
    let msgs = (batches * STREAM_BATCH) as u64;
    Ok(Row {
        case: case.into(),
        payload: msg.len(),
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        msgs_per_s: Some(msgs as f64 / total.as_secs_f64()),
        samples: msgs,
        floor,
        ratio: None,
    })
}

// ---------------------------------------------------------------- services

/// A byte buffer postcard carries as one length-prefixed block (serde's
/// `bytes`), not element by element.
struct Bytes(Vec<u8>);

struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// How a service case calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `Client::call` (blocking).
    Sync,
    /// `Client::call_loan` (zero-copy, blocking).
    Loan,
    /// `Client::call_async`, each call awaited on a current-thread tokio
    /// runtime on this thread.
    Async,
}

/// A call of the demo service's `echo` with `payload` bytes (copied both
/// ways), the server in an `ipckit service demo` process.
#[allow(clippy::too_many_arguments)]
fn service_case(
    case: &'static str,
    payload: usize,
    floor: &'static str,
    t: Transport,
    how: Call,
    s: &Settings,
    ns: &Path,
) -> Result<Row, Error> {
    let name = format!("bench/{}-{payload}", case.replace('/', "-"));
    let mut cmd = me()?;
    cmd.args(["service", "demo", &name])
        .env(ipckit::name::NAMESPACE_ENV, ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if t.tcp {
        cmd.args(["--tcp", "127.0.0.1:0"]);
    }
    cmd.args(t.peer_args);
    t.peer_env(&mut cmd);
    let mut peer = spawn(&mut cmd)?;
    let mut out = BufReader::new(peer.0.stdout.take().expect("stdout is piped"));
    read_line_starting(&mut out, "serving", "the service did not start")?;
    let target = if t.tcp {
        read_line_starting(
            &mut out,
            "tcp://",
            "the service did not report its TCP port",
        )?
    } else {
        name.clone()
    };
    let nsp = ipckit::Namespace::at(ns)?;
    let mut opts = ipckit::service::ClientBuilder::new();
    opts = opts.namespace(&nsp).timeout(WAIT);
    opts = (t.service_client)(opts);
    let client = opts.connect(&target)?;
    let req: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let s = s.for_payload(payload);
    if how == Call::Loan {
        // The client fills a loan in place, the server reads every byte
        // (`sum`) and answers 8 bytes in place.
        let want: u64 = req.iter().map(|b| u64::from(*b)).sum();
        return measure(case, payload, Some(floor), &s, || {
            let mut l = client.loan(payload)?;
            l.copy_from_slice(&req);
            let r = client.call_loan("sum", l)?;
            let got = u64::from_le_bytes(r[..8].try_into().map_err(|_| {
                Error::new(ErrorKind::Decode, format!("bench: {case}: short sum reply"))
            })?);
            if got != want {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("bench: {case}: the server summed {got}, not {want}"),
                ));
            }
            Ok(())
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| io(e, "cannot start a tokio runtime"))?;
    measure(case, payload, Some(floor), &s, || {
        let r: Bytes = match how {
            Call::Async => rt.block_on(client.call_async("echo", &BytesRef(&req)))?,
            _ => client.call("echo", &BytesRef(&req))?,
        };
        if r.0.len() != payload {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "bench: {case}: the echo has {} bytes, not {payload}",
                    r.0.len()
                ),
            ));
        }
        Ok(())
    })
}

/// A call of the demo service's `echo` with `payload` bytes over the
/// Zenoh fabric: the server an `ipckit service demo zenoh://NAME` process
/// listening on a loopback port, this process's own fabric session
/// connecting to it (multicast scouting off on both: nothing leaves the
/// machine), a fabric namespace of the run's own.
#[cfg(feature = "zenoh")]
fn zenoh_case(
    case: &'static str,
    payload: usize,
    floor: &'static str,
    how: Call,
    s: &Settings,
) -> Result<Row, Error> {
    // A free loopback port for the server (the peer binds it a moment
    // later; nothing else in a bench run takes ports).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| io(e, "cannot pick a loopback port"))?
        .port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let fabric_ns = format!("ipckit-bench-{}", std::process::id());
    let name = format!("bench/{}-{payload}", case.replace('/', "-"));
    let mut cmd = me()?;
    cmd.args(["service", "demo", &format!("zenoh://{name}")])
        .args(["--listen", &endpoint, "--no-scouting"])
        .env("IPCKIT_ZENOH_NAMESPACE", &fabric_ns)
        .env_remove("IPCKIT_ZENOH_CONNECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut peer = spawn(&mut cmd)?;
    let mut out = BufReader::new(peer.0.stdout.take().expect("stdout is piped"));
    read_line_starting(&mut out, "serving", "the fabric service did not start")?;
    let fabric = ipckit::fabric::Fabric::builder()
        .namespace(&fabric_ns)
        .multicast_scouting(false)
        .listen("tcp/127.0.0.1:0")
        .connect(endpoint)
        .open()?;
    let client = fabric.connect_service(&name, WAIT)?;
    let req: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let s = s.for_payload(payload);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| io(e, "cannot start a tokio runtime"))?;
    let row = measure(case, payload, Some(floor), &s, || {
        let r: Bytes = match how {
            Call::Async => rt.block_on(client.call_async("echo", &BytesRef(&req)))?,
            _ => client.call_timeout("echo", &BytesRef(&req), WAIT)?,
        };
        if r.0.len() != payload {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "bench: {case}: the echo has {} bytes, not {payload}",
                    r.0.len()
                ),
            ));
        }
        Ok(())
    });
    drop(client);
    drop(fabric);
    row
}

// ---------------------------------------------------------------- cases

type CaseFn = Box<dyn Fn(&Settings, &Path) -> Result<Row, Error>>;

struct Case {
    name: &'static str,
    run: CaseFn,
    /// Whether its peer is `ipckit-peer` (the raw floors and the streams;
    /// the others talk to this binary's own commands, memcpy to nobody).
    needs_peer: bool,
}

fn case(
    name: &'static str,
    run: impl Fn(&Settings, &Path) -> Result<Row, Error> + 'static,
) -> Case {
    Case {
        name,
        run: Box::new(run),
        needs_peer: (name.starts_with("floor/") && name != MEMCPY) || name.starts_with("stream/"),
    }
}

const MEMCPY: &str = "floor/memcpy-1MiB";
/// Write 1 MiB into shared memory, another process reads it all, spin
/// hand-offs both ways: the floor of a 1 MiB loan call.
const HANDOFF: &str = "floor/handoff-1MiB";

fn cases() -> Vec<Case> {
    vec![
        case("floor/shm-spin", |s, _| floor_shm_spin(s)),
        case("floor/futex", |s, _| floor_futex(s)),
        case("floor/pipe", |s, _| floor_pipe(s)),
        case("floor/unix-stream", floor_unix),
        case("floor/tcp", |s, _| floor_tcp(s)),
        case(MEMCPY, |s, _| floor_memcpy(s)),
        case(HANDOFF, |s, _| {
            floor_handoff(HANDOFF, 1 << 20, &s.for_payload(1 << 20))
        }),
        case("pipe/unix", |s, ns| pipe_case("pipe/unix", UNIX, s, ns)),
        case("pipe/shm", |s, ns| pipe_case("pipe/shm", SHM, s, ns)),
        case("pipe/unix-async", |s, ns| {
            pipe_async_case("pipe/unix-async", "pipe/unix", UNIX, s, ns)
        }),
        case("pipe/shm-async", |s, ns| {
            pipe_async_case("pipe/shm-async", "pipe/shm", SHM, s, ns)
        }),
        case("service/unix", |s, ns| {
            service_case(
                "service/unix",
                64,
                "floor/unix-stream",
                UNIX,
                Call::Sync,
                s,
                ns,
            )
        }),
        // Async calls, compared with the sync row of the same transport
        // in the same run (not with a raw floor).
        case("service/unix-async", |s, ns| {
            service_case(
                "service/unix-async",
                64,
                "service/unix",
                UNIX,
                Call::Async,
                s,
                ns,
            )
        }),
        case("service/shm", |s, ns| {
            service_case("service/shm", 64, "floor/shm-spin", SHM, Call::Sync, s, ns)
        }),
        case("service/shm-async", |s, ns| {
            service_case(
                "service/shm-async",
                64,
                "service/shm",
                SHM,
                Call::Async,
                s,
                ns,
            )
        }),
        case("service/shm-parked", |s, ns| {
            service_case(
                "service/shm-parked",
                64,
                "floor/futex",
                SHM_PARKED,
                Call::Sync,
                s,
                ns,
            )
        }),
        case("service/tcp", |s, ns| {
            service_case("service/tcp", 64, "floor/tcp", TCP, Call::Sync, s, ns)
        }),
        // The fabric beside plain TCP: both cross the loopback over TCP;
        // the ratio is to service/tcp of the same payload.
        #[cfg(feature = "zenoh")]
        case("service/tcp", |s, ns| {
            service_case("service/tcp", 1 << 20, MEMCPY, TCP, Call::Sync, s, ns)
        }),
        #[cfg(feature = "zenoh")]
        case("service/zenoh", |s, _| {
            zenoh_case("service/zenoh", 64, "service/tcp", Call::Sync, s)
        }),
        #[cfg(feature = "zenoh")]
        case("service/zenoh", |s, _| {
            zenoh_case("service/zenoh", 1 << 20, "service/tcp", Call::Sync, s)
        }),
        #[cfg(feature = "zenoh")]
        case("service/zenoh-async", |s, _| {
            zenoh_case("service/zenoh-async", 64, "service/zenoh", Call::Async, s)
        }),
        case("service/unix", |s, ns| {
            service_case("service/unix", 64 << 10, MEMCPY, UNIX, Call::Sync, s, ns)
        }),
        case("service/unix", |s, ns| {
            service_case("service/unix", 1 << 20, MEMCPY, UNIX, Call::Sync, s, ns)
        }),
        case("service/shm", |s, ns| {
            service_case("service/shm", 64 << 10, MEMCPY, SHM, Call::Sync, s, ns)
        }),
        case("service/shm", |s, ns| {
            service_case("service/shm", 1 << 20, MEMCPY, SHM, Call::Sync, s, ns)
        }),
        case("service/shm-loan", |s, ns| {
            service_case(
                "service/shm-loan",
                64 << 10,
                HANDOFF,
                SHM,
                Call::Loan,
                s,
                ns,
            )
        }),
        case("service/shm-loan", |s, ns| {
            service_case("service/shm-loan", 1 << 20, HANDOFF, SHM, Call::Loan, s, ns)
        }),
        case("stream/unix", |s, ns| {
            stream_case("stream/unix", None, UNIX, s, ns)
        }),
        case("stream/shm", |s, ns| {
            stream_case("stream/shm", Some("stream/unix"), SHM, s, ns)
        }),
    ]
}

/// Fill in each row's ratio to its floor (when the floor ran): the floor
/// row of the same payload if there is one (a sync service row is the
/// floor of its async twin), else the floor's first row.
fn add_ratios(rows: &mut [Row]) {
    for i in 0..rows.len() {
        let Some(f) = rows[i].floor else { continue };
        let payload = rows[i].payload;
        let Some(base) = rows
            .iter()
            .find(|r| r.case == f && r.payload == payload)
            .or_else(|| rows.iter().find(|r| r.case == f))
        else {
            continue;
        };
        let ratio = match (rows[i].msgs_per_s, base.msgs_per_s) {
            (Some(m), Some(b)) if b > 0.0 => m / b,
            (None, None) => rows[i].p50_ns as f64 / base.p50_ns.max(1) as f64,
            _ => continue,
        };
        rows[i].ratio = Some(ratio);
    }
}

// ---------------------------------------------------------------- sweep

/// Environment knobs of `--sweep`, for tests and short runs: the largest
/// payload (default 64 MiB) and the client counts (default `1,4,16,64`).
const SWEEP_MAX_ENV: &str = "IPCKIT_BENCH_SWEEP_MAX";
const SWEEP_CLIENTS_ENV: &str = "IPCKIT_BENCH_SWEEP_CLIENTS";

/// Measures one payload of a sweep series.
type SeriesFn = Box<dyn Fn(usize, &Settings, &Path) -> Result<Row, Error>>;

/// One latency series of the sweep: a name and how to measure one payload.
struct Series {
    name: &'static str,
    run: SeriesFn,
    needs_peer: bool,
}

fn series(
    name: &'static str,
    needs_peer: bool,
    run: impl Fn(usize, &Settings, &Path) -> Result<Row, Error> + 'static,
) -> Series {
    Series {
        name,
        run: Box::new(run),
        needs_peer,
    }
}

/// The latency series: the floors of moving `n` bytes (a local copy, a
/// hand-off to another process, an echo through a Unix socket) and each
/// transport's pipe message and service call of `n` bytes.
fn sweep_series() -> Vec<Series> {
    vec![
        series("floor/memcpy", false, |n, s, _| {
            floor_memcpy_n("floor/memcpy", n, s)
        }),
        series("floor/handoff", true, |n, s, _| {
            floor_handoff("floor/handoff", n, s)
        }),
        series("floor/unix-stream", true, floor_unix_n),
        series("pipe/unix", false, |n, s, ns| {
            pipe_case_n("pipe/unix", n, "floor/unix-stream", UNIX, s, ns)
        }),
        series("pipe/shm", false, |n, s, ns| {
            pipe_case_n("pipe/shm", n, "floor/handoff", SHM, s, ns)
        }),
        series("service/unix", false, |n, s, ns| {
            service_case(
                "service/unix",
                n,
                "floor/unix-stream",
                UNIX,
                Call::Sync,
                s,
                ns,
            )
        }),
        series("service/tcp", false, |n, s, ns| {
            service_case(
                "service/tcp",
                n,
                "floor/unix-stream",
                TCP,
                Call::Sync,
                s,
                ns,
            )
        }),
        series("service/shm", false, |n, s, ns| {
            service_case("service/shm", n, "floor/handoff", SHM, Call::Sync, s, ns)
        }),
        series("service/shm-loan", false, |n, s, ns| {
            service_case(
                "service/shm-loan",
                n,
                "floor/handoff",
                SHM,
                Call::Loan,
                s,
                ns,
            )
        }),
    ]
}

/// An echo of `n` bytes through a Unix socket to `ipckit-peer raw-echo`:
/// written and read back at once (non-blocking, so a payload bigger than
/// the socket buffers cannot deadlock).
fn floor_unix_n(n: usize, s: &Settings, dir: &Path) -> Result<Row, Error> {
    use rustix::event::{poll, PollFd, PollFlags};
    let path = dir.join(format!("floor-unix-{n}.sock"));
    let mut cmd = peer()?;
    cmd.arg("raw-echo").arg(&path);
    let _peer = spawn(&mut cmd)?;
    let mut sock = wait_for(&path)?;
    sock.set_nonblocking(true)
        .map_err(|e| io(e, "non-blocking"))?;
    let out: Vec<u8> = (0..n).map(|i| i as u8).collect();
    let mut back = vec![0u8; n];
    let limit = rustix::time::Timespec {
        tv_sec: WAIT.as_secs() as i64,
        tv_nsec: 0,
    };
    measure("floor/unix-stream", n, None, s, || {
        let (mut w, mut r) = (0usize, 0usize);
        while r < n {
            let mut progress = false;
            if w < n {
                match sock.write(&out[w..]) {
                    Ok(k) => {
                        w += k;
                        progress = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io(e, "write")),
                }
            }
            match sock.read(&mut back[r..]) {
                Ok(0) => return Err(timeout_gone()),
                Ok(k) => {
                    r += k;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io(e, "read")),
            }
            if !progress {
                let mut flags = PollFlags::IN;
                if w < n {
                    flags |= PollFlags::OUT;
                }
                let mut fds = [PollFd::new(&sock, flags)];
                let k = poll(&mut fds, Some(&limit)).map_err(|e| io(e.into(), "poll"))?;
                if k == 0 {
                    return Err(timeout("the raw-echo peer did not answer"));
                }
            }
        }
        Ok(())
    })
}

fn timeout_gone() -> Error {
    Error::new(
        ErrorKind::PeerGone,
        "bench: the raw-echo peer closed the socket; run it by hand to see why",
    )
}

/// Payloads of the latency sweep: 64 B to `max` in powers of 4.
fn sweep_payloads(max: usize) -> Vec<usize> {
    std::iter::successors(Some(64usize), |p| p.checked_mul(4))
        .take_while(|p| *p <= max)
        .collect()
}

/// Rounds for one payload of the sweep: about `bytes` moved per point,
/// between `lo` and `hi` samples.
fn sweep_settings(quick: bool, payload: usize) -> Settings {
    let (bytes, lo, hi) = if quick {
        (64usize << 20, 10, 2_000)
    } else {
        (2usize << 30, 30, 20_000)
    };
    let samples = (bytes / payload.max(1)).clamp(lo, hi);
    Settings {
        warmup: (samples / 10).max(3),
        samples,
        stream_msgs: 0,
    }
}

/// One point of the throughput sweep.
#[derive(Serialize, Debug, Clone)]
pub struct Throughput {
    /// The transport (`service/unix`, `service/shm`).
    pub case: String,
    /// `threads` (one connection per thread of this process) or
    /// `processes` (one `ipckit-peer service-load` each).
    pub mode: &'static str,
    pub clients: usize,
    /// Calls answered, all clients together.
    pub calls: u64,
    /// Calls per second, all clients together, from the moment all were
    /// connected and told to start until the last finished.
    pub msgs_per_s: f64,
}

/// `add`'s argument, as `ipckit service demo` takes it.
#[derive(Serialize, Clone, Copy)]
struct AddArgs {
    a: i64,
    b: i64,
}

/// Start an `ipckit service demo` for a throughput point.
fn demo_server(name: &str, t: Transport, ns: &Path) -> Result<Reaped, Error> {
    let mut cmd = me()?;
    cmd.args(["service", "demo", name])
        .env(ipckit::name::NAMESPACE_ENV, ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd.args(t.peer_args);
    t.peer_env(&mut cmd);
    let mut peer = spawn(&mut cmd)?;
    let mut out = BufReader::new(peer.0.stdout.take().expect("stdout is piped"));
    read_line_starting(&mut out, "serving", "the service did not start")?;
    Ok(peer)
}

/// `clients` threads of this process, each with its own connection, make
/// `per` checked `add` calls each, all starting together.
fn throughput_threads(
    case: &'static str,
    t: Transport,
    clients: usize,
    per: u64,
    ns: &Path,
) -> Result<Throughput, Error> {
    let name = format!("bench/tp-{}-threads-{clients}", case.replace('/', "-"));
    let _server = demo_server(&name, t, ns)?;
    let nsp = ipckit::Namespace::at(ns)?;
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let opts = ipckit::service::ClientBuilder::new()
            .namespace(&nsp)
            .timeout(WAIT);
        conns.push((t.service_client)(opts).connect(&name)?);
    }
    let go = std::sync::Barrier::new(clients + 1);
    let (took, results) = std::thread::scope(|sc| {
        let handles: Vec<_> = conns
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let go = &go;
                sc.spawn(move || -> Result<u64, Error> {
                    go.wait();
                    for i in 0..per {
                        let args = AddArgs {
                            a: (k as i64) << 32 | i as i64,
                            b: 7,
                        };
                        let got: i64 = c.call("add", &args)?;
                        if got != args.a + args.b {
                            return Err(Error::new(
                                ErrorKind::Decode,
                                format!("bench: {case}: add answered {got}"),
                            ));
                        }
                    }
                    Ok(per)
                })
            })
            .collect();
        go.wait();
        let start = Instant::now();
        let results: Vec<Result<u64, Error>> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::new(ErrorKind::Io, "bench: a client thread panicked"))
                })
            })
            .collect();
        (start.elapsed(), results)
    });
    let mut calls = 0;
    for r in results {
        calls += r?;
    }
    Ok(Throughput {
        case: case.into(),
        mode: "threads",
        clients,
        calls,
        msgs_per_s: calls as f64 / took.as_secs_f64(),
    })
}

/// `clients` `ipckit-peer service-load` processes, one connection each,
/// make `per` checked `add` calls each, told to start once all connected.
fn throughput_processes(
    case: &'static str,
    t: Transport,
    clients: usize,
    per: u64,
    ns: &Path,
) -> Result<Throughput, Error> {
    let name = format!("bench/tp-{}-procs-{clients}", case.replace('/', "-"));
    let _server = demo_server(&name, t, ns)?;
    let mut procs = Vec::with_capacity(clients);
    for k in 0..clients {
        let mut cmd = peer()?;
        cmd.args(["service-load", &name, "--wait-go", "--threads", "1"])
            .args(["--client", &k.to_string(), "--calls", &per.to_string()])
            .env(ipckit::name::NAMESPACE_ENV, ns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        t.peer_env(&mut cmd);
        let mut p = spawn(&mut cmd)?;
        let out = BufReader::new(p.0.stdout.take().expect("stdout is piped"));
        procs.push((p, out));
    }
    for (_, out) in &mut procs {
        read_line_starting(out, "ready", "a load client did not connect")?;
    }
    let start = Instant::now();
    for (p, _) in &mut procs {
        let stdin = p.0.stdin.as_mut().expect("stdin is piped");
        stdin
            .write_all(b"go\n")
            .map_err(|e| io(e, "cannot start a load client"))?;
    }
    let mut calls = 0u64;
    for (_, out) in &mut procs {
        let line = read_line_starting(out, "{", "a load client did not finish")?;
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("bench: {case}: a load client printed '{line}': {e}"),
            )
        })?;
        calls += v["ok"].as_u64().unwrap_or(0);
    }
    let took = start.elapsed();
    if calls != per * clients as u64 {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "bench: {case}: {calls} of {} calls were answered",
                per * clients as u64
            ),
        ));
    }
    Ok(Throughput {
        case: case.into(),
        mode: "processes",
        clients,
        calls,
        msgs_per_s: calls as f64 / took.as_secs_f64(),
    })
}

/// The machine, for the plot's title and the JSON: CPU model, cores,
/// kernel.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

/// What `--sweep` measured.
#[derive(Serialize, Debug)]
pub struct Sweep {
    pub machine: String,
    /// Latency rows: p50 etc. of single round trips of `payload` bytes;
    /// `ratio` = p50 / the p50 of the floor named, at the same payload.
    pub latency: Vec<Row>,
    pub throughput: Vec<Throughput>,
    /// Points not measured, and why (e.g. over a message limit).
    pub skipped: Vec<String>,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Run the sweep (cases whose name contains `filter`, when given).
fn run_sweep(quick: bool, filter: Option<&str>, dir: &Path) -> Result<Sweep, Error> {
    let max = env_usize(SWEEP_MAX_ENV).unwrap_or(64 << 20);
    let clients: Vec<usize> = match std::env::var(SWEEP_CLIENTS_ENV) {
        Ok(v) => v
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .filter(|c| *c > 0)
            .collect(),
        Err(_) => vec![1, 4, 16, 64],
    };
    let selected = |name: &str| filter.is_none_or(|t| name.contains(t));
    let mut sweep = Sweep {
        machine: machine(),
        latency: Vec::new(),
        throughput: Vec::new(),
        skipped: Vec::new(),
    };
    for ser in sweep_series() {
        if !selected(ser.name) {
            continue;
        }
        for &n in &sweep_payloads(max) {
            match (ser.run)(n, &sweep_settings(quick, n), dir) {
                Ok(row) => sweep.latency.push(row),
                // Over a message limit: a point the transport cannot carry.
                Err(e) if e.kind() == ErrorKind::TooLarge => {
                    sweep.skipped.push(format!("{} {n} B: {e}", ser.name))
                }
                Err(e) => return Err(e),
            }
        }
    }
    add_ratios(&mut sweep.latency);
    let total: u64 = if quick { 20_000 } else { 200_000 };
    for case in ["service/unix", "service/shm"] {
        if !selected(case) {
            continue;
        }
        let t = if case == "service/shm" { SHM } else { UNIX };
        for &c in &clients {
            let per = (total / c as u64).max(200);
            sweep
                .throughput
                .push(throughput_threads(case, t, c, per, dir)?);
            sweep
                .throughput
                .push(throughput_processes(case, t, c, per, dir)?);
        }
    }
    Ok(sweep)
}

fn print_sweep(sw: &Sweep) {
    println!("machine: {}", sw.machine);
    println!(
        "{:<18} {:>9} {:>11} {:>11} {:>11} {:>7}  vs floor",
        "case", "payload", "p50 ns", "p99 ns", "p99.9 ns", "samples"
    );
    for r in &sw.latency {
        let vs = match (r.ratio, r.floor) {
            (Some(x), Some(f)) => format!("{x:.2}x {f}"),
            (None, Some(f)) => format!("({f} not run)"),
            _ => String::new(),
        };
        println!(
            "{:<18} {:>9} {:>11} {:>11} {:>11} {:>7}  {}",
            r.case, r.payload, r.p50_ns, r.p99_ns, r.p999_ns, r.samples, vs
        );
    }
    if !sw.throughput.is_empty() {
        println!();
        println!(
            "{:<14} {:<10} {:>7} {:>9} {:>12}",
            "case", "mode", "clients", "calls", "calls/s"
        );
        for t in &sw.throughput {
            println!(
                "{:<14} {:<10} {:>7} {:>9} {:>12.0}",
                t.case, t.mode, t.clients, t.calls, t.msgs_per_s
            );
        }
    }
    for s in &sw.skipped {
        println!("skipped: {s}");
    }
}

// ---------------------------------------------------------------- plot

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A log-scale axis over [lo, hi] (both > 0), mapped to [a, b] pixels.
struct LogAxis {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl LogAxis {
    /// Whole decades (or powers of `base`) around the values.
    fn around(values: impl Iterator<Item = f64>, base: f64, a: f64, b: f64) -> LogAxis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            (lo, hi) = (1.0, base);
        }
        let lo = base.powf(lo.log(base).floor());
        let mut hi = base.powf(hi.log(base).ceil());
        if hi <= lo {
            hi = lo * base;
        }
        LogAxis { lo, hi, a, b }
    }

    fn at(&self, v: f64) -> f64 {
        let f = (v.max(self.lo).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        self.a + f * (self.b - self.a)
    }

    /// The axis' ticks: every power of `base` from lo to hi.
    fn ticks(&self, base: f64) -> Vec<f64> {
        let mut v = Vec::new();
        let mut t = self.lo;
        while t <= self.hi * 1.0001 {
            v.push(t);
            t *= base;
        }
        v
    }
}

fn human_bytes(b: f64) -> String {
    match b {
        b if b >= (1u64 << 30) as f64 => format!("{}G", b / (1u64 << 30) as f64),
        b if b >= (1u64 << 20) as f64 => format!("{}M", b / (1u64 << 20) as f64),
        b if b >= 1024.0 => format!("{}K", b / 1024.0),
        b => format!("{b}"),
    }
}

fn human_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{}s", n / 1e9),
        n if n >= 1e6 => format!("{}ms", n / 1e6),
        n if n >= 1e3 => format!("{}us", n / 1e3),
        n => format!("{n}ns"),
    }
}

fn human_rate(r: f64) -> String {
    match r {
        r if r >= 1e6 => format!("{}M", r / 1e6),
        r if r >= 1e3 => format!("{}k", r / 1e3),
        r => format!("{r}"),
    }
}

/// Draw one panel's frame, ticks and labels.
#[allow(clippy::too_many_arguments)]
fn panel(
    svg: &mut String,
    x: &LogAxis,
    y: &LogAxis,
    xticks: &[(f64, String)],
    ybase: f64,
    ylabel: fn(f64) -> String,
    title: &str,
    xtitle: &str,
) {
    use std::fmt::Write as _;
    let (x0, x1, y0, y1) = (x.a, x.b, y.b, y.a);
    let _ = writeln!(
        svg,
        r##"<rect x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##,
        x1 - x0,
        y1 - y0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="14">{}</text>"#,
        (x0 + x1) / 2.0,
        y0 - 10.0,
        xml_escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"#,
        (x0 + x1) / 2.0,
        y1 + 36.0,
        xml_escape(xtitle)
    );
    for (v, label) in xticks {
        let px = x.at(*v);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{y0:.1}" x2="{px:.1}" y2="{y1:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
            y1 + 16.0,
            xml_escape(label)
        );
    }
    for v in y.ticks(ybase) {
        let py = y.at(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0:.1}" y1="{py:.1}" x2="{x1:.1}" y2="{py:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
            x0 - 4.0,
            py + 4.0,
            xml_escape(&ylabel(v))
        );
    }
}

/// One line of a panel, with its legend entry at `legend_y`.
fn line(
    svg: &mut String,
    name: &str,
    color: &str,
    dashed: bool,
    points: &[(f64, f64)],
    legend: (f64, f64),
) {
    use std::fmt::Write as _;
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let dash = if dashed {
        r#" stroke-dasharray="5,3""#
    } else {
        ""
    };
    let _ = writeln!(
        svg,
        r#"<polyline data-series="{}" points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
        xml_escape(name),
        pts.join(" ")
    );
    for (x, y) in points {
        let _ = writeln!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
        );
    }
    let (lx, ly) = legend;
    let _ = writeln!(
        svg,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/>"#,
        lx + 20.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
        lx + 24.0,
        ly + 4.0,
        xml_escape(name)
    );
}

/// The sweep as an SVG picture: p50 latency against payload (log-log) on
/// the left, calls per second against clients on the right; one line per
/// series (floors dashed), the machine in the title.
pub fn plot(sw: &Sweep) -> String {
    use std::fmt::Write as _;
    let (w, h) = (1280.0, 620.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="16">ipckit bench --sweep: {}</text>"#,
        w / 2.0,
        xml_escape(&sw.machine)
    );
    // Left: latency.
    let mut names: Vec<&str> = Vec::new();
    for r in &sw.latency {
        if !names.contains(&r.case.as_str()) {
            names.push(&r.case);
        }
    }
    let x = LogAxis::around(
        sw.latency.iter().map(|r| r.payload as f64),
        4.0,
        90.0,
        560.0,
    );
    let y = LogAxis::around(
        sw.latency.iter().map(|r| r.p50_ns as f64),
        10.0,
        440.0,
        70.0,
    );
    let xt: Vec<(f64, String)> = x
        .ticks(4.0)
        .into_iter()
        .map(|v| (v, human_bytes(v)))
        .collect();
    panel(
        &mut svg,
        &x,
        &y,
        &xt,
        10.0,
        human_ns,
        "round-trip latency (p50) vs payload",
        "payload (bytes, log)",
    );
    for (i, name) in names.iter().enumerate() {
        let pts: Vec<(f64, f64)> = sw
            .latency
            .iter()
            .filter(|r| r.case == *name)
            .map(|r| (x.at(r.payload as f64), y.at(r.p50_ns as f64)))
            .collect();
        let legend = (90.0 + (i % 3) as f64 * 160.0, 505.0 + (i / 3) as f64 * 18.0);
        line(
            &mut svg,
            name,
            PALETTE[i % PALETTE.len()],
            name.starts_with("floor/"),
            &pts,
            legend,
        );
    }
    // Right: throughput.
    let mut tnames: Vec<String> = Vec::new();
    for t in &sw.throughput {
        let n = format!("{} {}", t.case, t.mode);
        if !tnames.contains(&n) {
            tnames.push(n);
        }
    }
    let x = LogAxis::around(
        sw.throughput.iter().map(|t| t.clients as f64),
        2.0,
        740.0,
        1210.0,
    );
    let y = LogAxis::around(
        sw.throughput.iter().map(|t| t.msgs_per_s),
        10.0,
        440.0,
        70.0,
    );
    let mut counts: Vec<usize> = sw.throughput.iter().map(|t| t.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    let xt: Vec<(f64, String)> = counts.iter().map(|c| (*c as f64, c.to_string())).collect();
    panel(
        &mut svg,
        &x,
        &y,
        &xt,
        10.0,
        human_rate,
        "throughput (add calls/s, all clients) vs concurrent clients",
        "concurrent clients (log)",
    );
    for (i, name) in tnames.iter().enumerate() {
        let pts: Vec<(f64, f64)> = sw
            .throughput
            .iter()
            .filter(|t| format!("{} {}", t.case, t.mode) == *name)
            .map(|t| (x.at(t.clients as f64), y.at(t.msgs_per_s)))
            .collect();
        let legend = (
            740.0 + (i % 2) as f64 * 230.0,
            505.0 + (i / 2) as f64 * 18.0,
        );
        line(
            &mut svg,
            name,
            PALETTE[(i + 5) % PALETTE.len()],
            name.ends_with("processes"),
            &pts,
            legend,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `ipckit bench`: the table of cases, or with `sweep` (or `plot`, which
/// implies it) the latency and throughput sweep, drawn into `plot`.
pub fn run(
    quick: bool,
    json: bool,
    filter: Option<String>,
    sweep: bool,
    plot_to: Option<PathBuf>,
) -> Result<(), Error> {
    if sweep || plot_to.is_some() {
        return run_sweep_command(quick, json, filter, plot_to);
    }
    let settings = if quick {
        Settings {
            warmup: 500,
            samples: 5_000,
            stream_msgs: 100_000,
        }
    } else {
        Settings {
            warmup: 5_000,
            samples: 50_000,
            stream_msgs: 1_000_000,
        }
    };
    let all = cases();
    if let Some(t) = filter.as_deref() {
        if !all.iter().any(|c| c.name.contains(t)) {
            let mut names: Vec<&str> = Vec::new();
            for c in &all {
                if !names.contains(&c.name) {
                    names.push(c.name);
                }
            }
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "no bench case matches '{t}'; cases are: {}",
                    names.join(", ")
                ),
            ));
        }
    }
    let selected = |c: &Case| filter.as_deref().is_none_or(|t| c.name.contains(t));
    if all.iter().any(|c| selected(c) && c.needs_peer) {
        peer_program()?; // fail at once, in one line, rather than mid-run
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("ipckit-bench-{}", std::process::id()));
    ipckit::Namespace::at(&dir)?;
    let mut rows: Vec<Row> = Vec::new();
    let result = (|| {
        for c in &all {
            if !selected(c) {
                continue;
            }
            rows.push((c.run)(&settings, &dir)?);
        }
        Ok::<(), Error>(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    add_ratios(&mut rows);
    if json {
        println!("{}", serde_json::json!({ "results": rows }));
        return Ok(());
    }
    println!(
        "{:<18} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8}  vs floor",
        "case", "payload", "p50 ns", "p99 ns", "p99.9 ns", "msgs/s", "samples"
    );
    for r in &rows {
        let vs = match (r.ratio, r.floor) {
            (Some(x), Some(f)) if r.msgs_per_s.is_some() => format!("{x:.2}x {f} (msgs/s)"),
            (Some(x), Some(f)) => format!("{x:.2}x {f}"),
            (None, Some(f)) => format!("({f} not run)"),
            _ => String::new(),
        };
        let rate = r.msgs_per_s.map(|m| format!("{m:.0}")).unwrap_or_default();
        println!(
            "{:<18} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8}  {}",
            r.case, r.payload, r.p50_ns, r.p99_ns, r.p999_ns, rate, r.samples, vs
        );
    }
    if rows.iter().any(|r| r.msgs_per_s.is_some()) {
        println!("(stream rows: p50/p99/p99.9 are of the mean ns per message of each {STREAM_BATCH}-message batch)");
    }
    Ok(())
}

fn run_sweep_command(
    quick: bool,
    json: bool,
    filter: Option<String>,
    plot_to: Option<PathBuf>,
) -> Result<(), Error> {
    let all = sweep_series();
    let tp = ["service/unix", "service/shm"];
    if let Some(t) = filter.as_deref() {
        if !all.iter().any(|c| c.name.contains(t)) && !tp.iter().any(|c| c.contains(t)) {
            let names: Vec<&str> = all.iter().map(|c| c.name).collect();
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "no sweep series matches '{t}'; series are: {}",
                    names.join(", ")
                ),
            ));
        }
    }
    let selected = |n: &str| filter.as_deref().is_none_or(|t| n.contains(t));
    if all.iter().any(|c| selected(c.name) && c.needs_peer) || tp.iter().any(|c| selected(c)) {
        peer_program()?;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("ipckit-bench-{}", std::process::id()));
    ipckit::Namespace::at(&dir)?;
    let result = run_sweep(quick, filter.as_deref(), &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let sw = result?;
    if let Some(path) = &plot_to {
        std::fs::write(path, plot(&sw))
            .map_err(|e| io(e, &format!("cannot write {}", path.display())))?;
    }
    if json {
        println!("{}", serde_json::json!({ "sweep": sw }));
    } else {
        print_sweep(&sw);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, p50: u64, rate: Option<f64>, floor: Option<&'static str>) -> Row {
        Row {
            case: case.into(),
            payload: 64,
            p50_ns: p50,
            p99_ns: p50,
            p999_ns: p50,
            msgs_per_s: rate,
            samples: 1,
            floor,
            ratio: None,
        }
    }

    #[test]
    fn ratios_divide_by_the_floor_that_ran() {
        let mut rows = vec![
            row("floor/unix-stream", 100, None, None),
            row("pipe/unix", 250, None, Some("floor/unix-stream")),
            row("service/tcp", 250, None, Some("floor/tcp")),
            row("stream/unix", 10, Some(1000.0), None),
            row("stream/x", 1, Some(5000.0), Some("stream/unix")),
        ];
        add_ratios(&mut rows);
        let got: Vec<Option<f64>> = rows.iter().map(|r| r.ratio).collect();
        assert_eq!(got, [None, Some(2.5), None, None, Some(5.0)]);
    }

    #[test]
    fn an_async_row_is_divided_by_the_sync_row_of_its_payload() {
        let mut big = row("service/shm", 900, None, Some("floor/shm-spin"));
        big.payload = 1 << 20;
        let mut rows = vec![
            big,
            row("service/shm", 300, None, Some("floor/shm-spin")),
            row("service/shm-async", 450, None, Some("service/shm")),
        ];
        add_ratios(&mut rows);
        assert_eq!(rows[2].ratio, Some(1.5));
    }

    #[test]
    fn big_payloads_get_fewer_rounds() {
        let s = Settings {
            warmup: 500,
            samples: 5000,
            stream_msgs: 0,
        };
        assert_eq!(s.for_payload(64).samples, 5000);
        assert_eq!(s.for_payload(64 << 10).samples, 1250);
        assert_eq!(s.for_payload(1 << 20).samples, 250);
    }
}
