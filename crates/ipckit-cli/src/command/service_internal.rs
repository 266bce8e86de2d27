//! Hidden helpers for the service tests, the demo and measurements.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipckit::service::{Client, Encoding};

use super::service::{AddArgs, MyInfo};
use crate::cli::ServiceInternalCommand;
use crate::util::{percentile, us};

pub fn run(cmd: ServiceInternalCommand) -> Result<(), ipckit::Error> {
    match cmd {
        ServiceInternalCommand::Load {
            name,
            client,
            calls,
            threads,
            json_bodies,
        } => load(&name, client, calls, threads, json_bodies),
        ServiceInternalCommand::DemoClient { name, rounds } => demo_client(&name, rounds),
        ServiceInternalCommand::RawPong { unix } => raw_pong(&unix),
        ServiceInternalCommand::Bench { rounds } => bench(rounds),
    }
}

fn io(e: std::io::Error, what: &str) -> ipckit::Error {
    ipckit::Error::new(ipckit::ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}

fn fail(msg: String) -> ipckit::Error {
    ipckit::Error::new(ipckit::ErrorKind::Io, msg)
}

/// `calls` calls of `add` with arguments unique to (client, call), spread
/// over `threads` threads sharing one connection; every answer checked.
fn load(
    name: &str,
    client: u64,
    calls: u64,
    threads: u64,
    json: bool,
) -> Result<(), ipckit::Error> {
    let mut opts = Client::options();
    opts.timeout(Duration::from_secs(20));
    if json {
        opts.encoding(Encoding::Json);
    }
    let c = Arc::new(opts.connect(name)?);
    let threads = threads.max(1);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || -> Result<Vec<u64>, ipckit::Error> {
                let mut done = Vec::new();
                for i in (t..calls).step_by(threads as usize) {
                    let args = AddArgs {
                        a: (client * 1_000_000 + i) as i64,
                        b: (i * 7 + 1) as i64,
                    };
                    let got: i64 = c.call("add", &args)?;
                    if got != args.a + args.b {
                        return Err(fail(format!(
                            "client {client} call {i}: add({}, {}) answered {got}",
                            args.a, args.b
                        )));
                    }
                    done.push(i);
                }
                Ok(done)
            })
        })
        .collect();
    let mut seen = vec![false; calls as usize];
    for h in handles {
        for i in h
            .join()
            .map_err(|_| fail("a load thread panicked".into()))??
        {
            if std::mem::replace(&mut seen[i as usize], true) {
                return Err(fail(format!("client {client}: call {i} answered twice")));
            }
        }
    }
    let ok = seen.iter().filter(|s| **s).count();
    println!("{}", serde_json::json!({ "client": client, "ok": ok }));
    if ok as u64 != calls {
        return Err(fail(format!(
            "client {client}: {ok} of {calls} calls answered"
        )));
    }
    Ok(())
}

fn demo_client(name: &str, rounds: usize) -> Result<(), ipckit::Error> {
    let c = Client::connect(name, Duration::from_secs(10))?;
    let sent = MyInfo {
        red: 3333.0,
        blue: 20.01,
    };
    let t = Instant::now();
    let back: MyInfo = c.call("compare", &sent)?;
    let first = t.elapsed();
    println!(
        "  client pid {} ({}) called compare(red={:.2}, blue={:.2}); server returned red={:.2}, blue={:.2} in {}",
        std::process::id(),
        match c.transport() {
            ipckit::Transport::SharedMemory => "shared memory",
            _ => "socket",
        },
        sent.red,
        sent.blue,
        back.red,
        back.blue,
        us(first.as_nanos() as u64)
    );
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let _: MyInfo = c.call("compare", &sent)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    let d = c.describe()?;
    println!(
        "  {rounds} more calls: round trip p50 {} p99 {}; server counters: calls {} errors {} in flight {}",
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
        d.calls,
        d.errors,
        d.in_flight
    );
    Ok(())
}

fn pong<S: Read + Write>(mut s: S) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Raw echo servers (Unix socket at `path`, TCP on a free loopback port).
fn raw_pong(path: &Path) -> Result<(), ipckit::Error> {
    let _ = std::fs::remove_file(path);
    let ul = UnixListener::bind(path).map_err(|e| io(e, "raw pong: cannot bind"))?;
    let tl = TcpListener::bind("127.0.0.1:0").map_err(|e| io(e, "raw pong: cannot bind TCP"))?;
    let addr = tl.local_addr().map_err(|e| io(e, "raw pong"))?;
    println!("tcp://{addr}");
    let _ = std::io::stdout().flush();
    std::thread::spawn(move || {
        for s in tl.incoming().flatten() {
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || pong(s));
        }
    });
    for s in ul.incoming().flatten() {
        std::thread::spawn(move || pong(s));
    }
    Ok(())
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Read lines from a child's stdout until it says it serves.
fn tcp_line_or_serving(out: ChildStdout) -> Result<(), ipckit::Error> {
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| io(e, "cannot read a child's output"))?;
        if line.starts_with("serving") {
            return Ok(());
        }
    }
    Err(fail("a child exited before serving".into()))
}

/// Read lines from a child's stdout until one starts with `tcp://`.
fn tcp_line(out: ChildStdout) -> Result<String, ipckit::Error> {
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| io(e, "cannot read a child's output"))?;
        if let Some(a) = line.strip_prefix("tcp://") {
            return Ok(a.to_string());
        }
    }
    Err(fail(
        "a child exited without printing its TCP address".into(),
    ))
}

fn measure(
    rounds: usize,
    mut f: impl FnMut() -> Result<(), ipckit::Error>,
) -> Result<Vec<u64>, ipckit::Error> {
    for _ in 0..rounds / 10 {
        f()?;
    }
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_nanos() as u64);
    }
    v.sort_unstable();
    Ok(v)
}

/// p50 round trip of a 64-byte call, local and TCP, beside raw ping-pongs
/// of 64 bytes over the same transports, all in one run.
fn bench(rounds: usize) -> Result<(), ipckit::Error> {
    let dir = std::env::temp_dir().join(format!("ipckit-bench-{}", std::process::id()));
    let ns = ipckit::Namespace::at(&dir)?;
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let spawn = |args: &[&str]| {
        Command::new(&exe)
            .args(args)
            .env(ipckit::name::NAMESPACE_ENV, ns.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map(Reaped)
            .map_err(|e| io(e, "cannot start a child"))
    };
    let mut server = spawn(&["service", "demo", "bench", "--tcp", "127.0.0.1:0"])?;
    let svc_tcp = tcp_line(server.0.stdout.take().expect("piped"))?;
    let raw_path = ns.dir().join("raw-pong.sock");
    let mut raw = spawn(&["service-internal", "raw-pong", &raw_path.to_string_lossy()])?;
    let raw_tcp = tcp_line(raw.0.stdout.take().expect("piped"))?;

    let payload = vec![7u8; 63]; // postcard: 1 length byte + 63 = a 64-byte body
    let body_len = postcard::to_stdvec(&payload).expect("encodes").len();
    let mut parked = spawn(&["service", "demo", "bench-parked", "--wait", "park"])?;
    let _ = tcp_line_or_serving(parked.0.stdout.take().expect("piped"));
    let connect = |name: &str, t: ipckit::Transport| {
        Client::options()
            .namespace(&ns)
            .timeout(Duration::from_secs(10))
            .transport(t)
            .connect(name)
    };
    let local = connect("bench", ipckit::Transport::Auto)?;
    let sock = connect("bench", ipckit::Transport::Socket)?;
    let park = connect("bench-parked", ipckit::Transport::Auto)?;
    let tcp = Client::connect(&format!("tcp://{svc_tcp}"), Duration::from_secs(10))?;
    let call = |c: &Client| -> Result<(), ipckit::Error> {
        let r: Vec<u8> = c.call("echo", &payload)?;
        if r.len() == 63 {
            Ok(())
        } else {
            Err(fail("echo returned something else".into()))
        }
    };
    let svc_local = measure(rounds, || call(&local))?;
    let svc_sock = measure(rounds, || call(&sock))?;
    let svc_park = measure(rounds, || call(&park))?;
    let svc_tcp_v = measure(rounds, || call(&tcp))?;
    let mib = 1usize << 20;
    let loan = |c: &Client| -> Result<(), ipckit::Error> {
        let mut l = c.loan(mib)?;
        l.fill(1);
        let out = c.call_loan("sum", l)?;
        if out.len() == 8 && u64::from_le_bytes(out[..8].try_into().expect("8")) == mib as u64 {
            Ok(())
        } else {
            Err(fail("sum returned something else".into()))
        }
    };
    let big = vec![3u8; mib];
    let big_rounds = (rounds / 20).max(50);
    let loan_shm = measure(big_rounds, || loan(&local))?;
    let loan_sock = measure(big_rounds, || loan(&sock))?;
    let mut memcpy_dst = vec![0u8; mib];
    let memcpy = measure(big_rounds, || {
        memcpy_dst.copy_from_slice(std::hint::black_box(&big));
        Ok(())
    })?;

    let ping = |s: &mut dyn ReadWrite| -> Result<(), ipckit::Error> {
        let mut buf = [0u8; 64];
        s.write_all(&[7u8; 64]).map_err(|e| io(e, "raw write"))?;
        s.read_exact(&mut buf).map_err(|e| io(e, "raw read"))
    };
    let mut us_sock = UnixStream::connect(&raw_path).map_err(|e| io(e, "raw connect"))?;
    let raw_local = measure(rounds, || ping(&mut us_sock))?;
    let mut tcp_sock = TcpStream::connect(&raw_tcp).map_err(|e| io(e, "raw TCP connect"))?;
    tcp_sock.set_nodelay(true).map_err(|e| io(e, "nodelay"))?;
    let raw_tcp_v = measure(rounds, || ping(&mut tcp_sock))?;

    println!("{rounds} round trips each, request body {body_len} bytes (reply the same):");
    println!("  (the local client is on {:?})", local.transport());
    for (what, v) in [
        ("service call, shared memory      ", &svc_local),
        ("service call, shm, server parks  ", &svc_park),
        ("service call, local Unix socket  ", &svc_sock),
        ("raw Unix-socket ping-pong, 64 B   ", &raw_local),
        ("service call, TCP loopback       ", &svc_tcp_v),
        ("raw TCP ping-pong, 64 B          ", &raw_tcp_v),
        ("loan 1 MiB -> sum, shared memory ", &loan_shm),
        ("loan 1 MiB -> sum, Unix socket   ", &loan_sock),
        ("memcpy of 1 MiB (floor)          ", &memcpy),
    ] {
        println!(
            "  {what}  p50 {:>9}  p99 {:>9}",
            us(percentile(v, 50.0)),
            us(percentile(v, 99.0))
        );
    }
    drop((local, sock, park, tcp));
    drop((server, raw, parked));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
