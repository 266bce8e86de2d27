//! Hidden helpers started by `ipckit demo` as child processes.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::InternalCommand;
use crate::util::{percentile, us};

/// The structured message the demo's pipe step sends (postcard-encoded).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Greeting {
    pub seq: u32,
    pub from_pid: u32,
    pub text: String,
    pub values: Vec<f64>,
}

pub fn run(cmd: InternalCommand) -> Result<(), ipckit::Error> {
    match cmd {
        InternalCommand::RawEcho { path } => raw_echo(&path),
        InternalCommand::BenchPeer { kind, arg } => super::bench::peer(&kind, &arg),
        InternalCommand::DemoPipeClient { name, raw, rounds } => {
            demo_pipe_client(&name, &raw, rounds)
        }
    }
}

fn io(e: std::io::Error, what: &str) -> ipckit::Error {
    ipckit::Error::new(ipckit::ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}

/// A bare Unix-socket echo server: the baseline a pipe is compared with.
fn raw_echo(path: &std::path::Path) -> Result<(), ipckit::Error> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| io(e, "raw echo: cannot bind"))?;
    let (mut s, _) = l.accept().map_err(|e| io(e, "raw echo: accept"))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).map_err(|e| io(e, "raw echo: read"))?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])
            .map_err(|e| io(e, "raw echo: write"))?;
    }
}

fn demo_pipe_client(name: &str, raw: &std::path::Path, rounds: usize) -> Result<(), ipckit::Error> {
    let mut pipe = ipckit::pipe::NamedPipe::connect(name, Duration::from_secs(10))?;
    let msg = Greeting {
        seq: 1,
        from_pid: std::process::id(),
        text: "hello from the client process".into(),
        values: vec![3333.0, 20.01],
    };
    let bytes = postcard::to_stdvec(&msg).expect("greeting encodes");
    let t = Instant::now();
    let reply = pipe.transact(&bytes)?;
    let first = t.elapsed();
    let back: Greeting = postcard::from_bytes(&reply).map_err(|e| {
        ipckit::Error::new(
            ipckit::ErrorKind::Decode,
            "the echo did not decode as a Greeting",
        )
        .with_source(e)
    })?;
    println!(
        "  client pid {} connected over {} and sent {:?}\n  echo server replied {:?} (intact: {}), first round trip {}",
        std::process::id(),
        super::pipe::transport_name(pipe.transport()),
        msg,
        back,
        back == msg,
        us(first.as_nanos() as u64)
    );
    // Same payload size, many rounds: ipckit pipe vs a raw Unix socket.
    let mut pipe_ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        pipe.transact(&bytes)?;
        pipe_ns.push(t.elapsed().as_nanos() as u64);
    }
    let mut raw_sock = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw_sock.is_none() {
        match UnixStream::connect(raw) {
            Ok(s) => raw_sock = Some(s),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(io(e, "cannot reach the raw echo baseline")),
        }
    }
    let mut raw_sock = raw_sock.expect("connected");
    let mut buf = vec![0u8; bytes.len()];
    let mut raw_ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        raw_sock.write_all(&bytes).map_err(|e| io(e, "raw write"))?;
        raw_sock
            .read_exact(&mut buf)
            .map_err(|e| io(e, "raw read"))?;
        raw_ns.push(t.elapsed().as_nanos() as u64);
    }
    pipe_ns.sort_unstable();
    raw_ns.sort_unstable();
    let (p, r) = (percentile(&pipe_ns, 50.0), percentile(&raw_ns, 50.0));
    println!(
        "  {rounds} round trips of {} bytes: ipckit pipe ({}) p50 {} p99 {} | raw Unix socket p50 {} p99 {} | ratio {:.2}x",
        bytes.len(),
        super::pipe::transport_name(pipe.transport()),
        us(p),
        us(percentile(&pipe_ns, 99.0)),
        us(r),
        us(percentile(&raw_ns, 99.0)),
        p as f64 / r.max(1) as f64
    );
    Ok(())
}
