//! `ipckit bench`: latencies of ipckit's paths beside raw floors measured
//! in the same run, with one harness (warm-up, hdrhistogram percentiles).
//!
//! Every case talks to a real peer process (this binary, started through a
//! hidden `internal bench-peer` subcommand or `pipe serve`). Figures are
//! only meaningful as ratios to their floor: the machines are shared.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::Reaped;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ipckit::pipe::{CommandExt as _, PipeReader, PipeWriter};
use ipckit::{Error, ErrorKind};
use serde::Serialize;

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
    #[serde(skip)]
    pub floor: Option<&'static str>,
}

struct Settings {
    warmup: usize,
    samples: usize,
}

fn io(e: std::io::Error, what: &str) -> Error {
    Error::new(ErrorKind::Io, format!("bench: {what}: {e}")).with_source(e)
}

fn me() -> Result<Command, Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    Ok(Command::new(exe))
}

/// Time `samples` round trips after `warmup` unmeasured ones.
fn measure(
    case: &str,
    payload: usize,
    floor: Option<&'static str>,
    s: &Settings,
    mut round_trip: impl FnMut() -> Result<(), Error>,
) -> Result<Row, Error> {
    let pb = ProgressBar::new((s.warmup + s.samples) as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>24} {bar:30} {pos}/{len}").expect("valid template"),
    );
    pb.set_prefix(case.to_string());
    for _ in 0..s.warmup {
        round_trip()?;
        pb.inc(1);
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
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
    })
}

fn wait_for(path: &Path) -> Result<UnixStream, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(io(e, "peer did not come up")),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn floor_pipe(s: &Settings) -> Result<Row, Error> {
    let (to_child_r, mut to_child_w) = ipckit::pipe::pipe()?;
    let (mut from_child_r, from_child_w) = ipckit::pipe::pipe()?;
    let mut cmd = me()?;
    cmd.args(["internal", "bench-peer", "pipe-echo", "3,4"])
        .pass_fd(to_child_r, 3)
        .pass_fd(from_child_w, 4);
    let _peer = Reaped(cmd.spawn().map_err(|e| io(e, "cannot start peer"))?);
    drop(cmd);
    let mut buf = [0u8; 64];
    measure("floor/pipe", 64, None, s, || {
        to_child_w.write_all(&buf).map_err(|e| io(e, "write"))?;
        from_child_r.read_exact(&mut buf).map_err(|e| io(e, "read"))
    })
}

fn floor_unix(s: &Settings, dir: &Path) -> Result<Row, Error> {
    let path = dir.join("floor-unix.sock");
    let mut cmd = me()?;
    cmd.args(["internal", "raw-echo"]).arg(&path);
    let _peer = Reaped(cmd.spawn().map_err(|e| io(e, "cannot start peer"))?);
    let mut sock = wait_for(&path)?;
    let mut buf = [0u8; 64];
    measure("floor/unix-stream", 64, None, s, || {
        sock.write_all(&buf).map_err(|e| io(e, "write"))?;
        sock.read_exact(&mut buf).map_err(|e| io(e, "read"))
    })
}

fn floor_tcp(s: &Settings) -> Result<Row, Error> {
    let mut cmd = me()?;
    cmd.args(["internal", "bench-peer", "tcp-echo", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    let mut child = Reaped(cmd.spawn().map_err(|e| io(e, "cannot start peer"))?);
    let mut line = String::new();
    let out = child.0.stdout.take().expect("piped");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
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
    let src = vec![7u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let settings = Settings {
        warmup: s.warmup.min(200),
        samples: s.samples.min(2000),
    };
    measure("floor/memcpy-1MiB", 1 << 20, None, &settings, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        Ok(())
    })
}

fn pipe_unix(s: &Settings, ns: &Path) -> Result<Row, Error> {
    let mut cmd = me()?;
    cmd.args(["pipe", "serve", "bench/echo", "--echo"])
        .env(ipckit::name::NAMESPACE_ENV, ns)
        .stderr(Stdio::null());
    let _peer = Reaped(cmd.spawn().map_err(|e| io(e, "cannot start peer"))?);
    let nsp = ipckit::Namespace::at(ns)?;
    let mut pipe = ipckit::pipe::ClientOptions::new()
        .namespace(&nsp)
        .timeout(Duration::from_secs(10))
        .connect("bench/echo")?;
    let msg = [0u8; 64];
    measure("pipe/unix", 64, Some("floor/unix-stream"), s, || {
        let r = pipe.transact(&msg)?;
        debug_assert_eq!(r.len(), 64);
        Ok(())
    })
}

type CaseFn = Box<dyn Fn(&Settings, &Path) -> Result<Row, Error>>;

fn cases() -> Vec<(&'static str, CaseFn)> {
    vec![
        ("floor/pipe", Box::new(|s, _| floor_pipe(s))),
        ("floor/unix-stream", Box::new(floor_unix)),
        ("floor/tcp", Box::new(|s, _| floor_tcp(s))),
        ("floor/memcpy-1MiB", Box::new(|s, _| floor_memcpy(s))),
        ("pipe/unix", Box::new(pipe_unix)),
    ]
}

pub fn run(quick: bool, json: bool, filter: Option<String>) -> Result<(), Error> {
    let settings = if quick {
        Settings {
            warmup: 500,
            samples: 5_000,
        }
    } else {
        Settings {
            warmup: 5_000,
            samples: 50_000,
        }
    };
    if let Some(t) = filter.as_deref() {
        if !cases().iter().any(|(name, _)| name.contains(t)) {
            let names: Vec<&str> = cases().iter().map(|(n, _)| *n).collect();
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "no bench case matches '{t}'; cases are: {}",
                    names.join(", ")
                ),
            ));
        }
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("ipckit-bench-{}", std::process::id()));
    ipckit::Namespace::at(&dir)?;
    let mut rows: Vec<Row> = Vec::new();
    let result = (|| {
        for (name, f) in cases() {
            if filter.as_deref().is_some_and(|t| !name.contains(t)) {
                continue;
            }
            rows.push(f(&settings, &dir)?);
        }
        Ok::<(), Error>(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if json {
        println!("{}", serde_json::json!({ "results": rows }));
        return Ok(());
    }
    println!(
        "{:<22} {:>8} {:>10} {:>10} {:>10} {:>8}  vs floor",
        "case", "payload", "p50 ns", "p99 ns", "p99.9 ns", "samples"
    );
    for r in &rows {
        let ratio = r
            .floor
            .and_then(|f| rows.iter().find(|x| x.case == f))
            .map(|f| {
                format!(
                    "{:.2}x {}",
                    r.p50_ns as f64 / f.p50_ns.max(1) as f64,
                    f.case
                )
            })
            .unwrap_or_default();
        println!(
            "{:<22} {:>8} {:>10} {:>10} {:>10} {:>8}  {}",
            r.case, r.payload, r.p50_ns, r.p99_ns, r.p999_ns, r.samples, ratio
        );
    }
    Ok(())
}

/// The peer side of the floors: echo fixed 64-byte messages.
pub fn peer(kind: &str, arg: &str) -> Result<(), Error> {
    match kind {
        "pipe-echo" => {
            let (r, w) = arg.split_once(',').ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, "pipe-echo wants IN_FD,OUT_FD")
            })?;
            let parse = |s: &str| {
                s.parse::<i32>()
                    .map_err(|_| Error::new(ErrorKind::InvalidInput, "fd must be a number"))
            };
            let mut input = PipeReader::from_inherited_fd(parse(r)?)?;
            let mut output = PipeWriter::from_inherited_fd(parse(w)?)?;
            let mut buf = [0u8; 64];
            while input.read_exact(&mut buf).is_ok() {
                if output.write_all(&buf).is_err() {
                    break;
                }
            }
            Ok(())
        }
        "tcp-echo" => {
            let l = std::net::TcpListener::bind(arg).map_err(|e| io(e, "bind"))?;
            println!("{}", l.local_addr().map_err(|e| io(e, "addr"))?);
            std::io::stdout().flush().map_err(|e| io(e, "stdout"))?;
            let (mut s, _) = l.accept().map_err(|e| io(e, "accept"))?;
            s.set_nodelay(true).map_err(|e| io(e, "nodelay"))?;
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
            Ok(())
        }
        other => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("unknown bench peer '{other}'"),
        )),
    }
}
