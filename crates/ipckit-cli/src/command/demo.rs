//! `ipckit demo`: a tour in which real processes talk through each
//! mechanism. Every step starts its child processes — this same binary,
//! through its public subcommands (`pipe serve`/`send`, `slot read`/`send`,
//! `msg listen`, `service demo`, `call`, `map set`/`watch`) — in a private
//! temporary namespace, talks to them from this process too, and prints
//! what they exchanged and how fast.
//!
//! The helpers for those children (used by the steps in `slot`, `msg`,
//! `service` and `map`) are here.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::pipe::ClientOptions;
use ipckit::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

use super::{map, msg, service, slot};
use crate::util::{percentile, us, Reaped};

/// How long any child of the demo may take.
const CHILD_LIMIT: Duration = Duration::from_secs(20);

pub(super) fn io(e: std::io::Error, what: &str) -> Error {
    Error::new(ErrorKind::Io, format!("demo: {what}: {e}")).with_source(e)
}

/// `ipckit <args>` (this binary) in the demo namespace, stdin from
/// /dev/null.
pub(super) fn child(ns: &Path, args: &[&str]) -> Result<Command, Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let mut c = Command::new(exe);
    c.args(args)
        .env(ipckit::name::NAMESPACE_ENV, ns)
        .stdin(Stdio::null());
    Ok(c)
}

/// Start a child, killed and reaped when the guard drops.
pub(super) fn spawn(mut c: Command) -> Result<Reaped, Error> {
    c.spawn()
        .map(Reaped)
        .map_err(|e| io(e, "cannot start a child"))
}

/// Run a child to a successful end (bounded).
pub(super) fn run_child(c: Command) -> Result<(), Error> {
    spawn(c)?.wait(CHILD_LIMIT)
}

/// Run a child to a successful end (bounded) and return its stdout.
pub(super) fn child_output(mut c: Command) -> Result<String, Error> {
    c.stdout(Stdio::piped());
    let mut p = spawn(c)?;
    let mut out = p.stdout().expect("piped above");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    p.wait(CHILD_LIMIT)?;
    Ok(reader.join().unwrap_or_default())
}

/// A child's stdout, line by line, on a channel (so reads can be bounded).
pub(super) fn lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait (bounded) until `name` has a live owner.
pub(super) fn wait_live(ns: &ipckit::Namespace, name: &str) -> Result<(), Error> {
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        if ns
            .info(name)?
            .is_some_and(|i| i.state == ipckit::name::EndpointState::Live)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                "demo: the endpoint did not appear in time",
            )
            .with_name(name));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child's `--json` output that does not parse.
pub(super) fn bad_json(e: serde_json::Error, out: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("demo: a child printed something other than JSON ({e}): {out}"),
    )
    .with_source(e)
}

pub fn run() -> Result<(), Error> {
    let root: PathBuf = std::env::temp_dir().join(format!("ipckit-demo-{}", std::process::id()));
    let ns = ipckit::Namespace::at(&root)?;
    println!("ipckit demo — namespace {}", ns.dir().display());
    let result = steps(ns.dir());
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn steps(ns: &Path) -> Result<(), Error> {
    step_pipe(ns)?;
    slot::demo_step(ns)?;
    msg::demo_step(ns)?;
    service::demo_step(ns)?;
    map::demo_step(ns)?;
    println!("\ndemo finished: every step ran between separate processes.");
    Ok(())
}

/// The structured message the pipe step sends (postcard-encoded).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Greeting {
    seq: u32,
    from_pid: u32,
    text: String,
    values: Vec<f64>,
}

fn step_pipe(ns: &Path) -> Result<(), Error> {
    println!("\n[pipe] named pipe: echo server process <-> client processes (message mode)");
    let mut server = child(ns, &["pipe", "serve", "demo/echo", "--echo"])?;
    server.stderr(Stdio::null());
    let _server = spawn(server)?;
    // Client processes: `ipckit pipe send`, each one a process of its own.
    for i in 1..=3 {
        let text = format!("hello from client process {i}");
        let args = [
            "pipe",
            "send",
            "demo/echo",
            &text,
            "--json",
            "--timeout",
            "10s",
        ];
        let out = child_output(child(ns, &args)?)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| bad_json(e, &out))?;
        println!(
            "  client process {i} sent {text:?}; the echo server replied {} over {} in {}",
            v["reply"],
            v["transport"].as_str().unwrap_or("?"),
            us((v["rtt_us"].as_f64().unwrap_or(0.0) * 1000.0) as u64)
        );
    }
    // This process as a client too: a postcard-encoded struct, then many
    // round trips of it.
    let nsp = ipckit::Namespace::at(ns)?;
    let mut pipe = ClientOptions::new()
        .namespace(&nsp)
        .timeout(Duration::from_secs(10))
        .connect("demo/echo")?;
    let msg = Greeting {
        seq: 1,
        from_pid: std::process::id(),
        text: "hello from the demo process".into(),
        values: vec![3333.0, 20.01],
    };
    let bytes = postcard::to_stdvec(&msg).expect("greeting encodes");
    let t = Instant::now();
    let reply = pipe.transact(&bytes)?;
    let first = t.elapsed();
    let back: Greeting = postcard::from_bytes(&reply).map_err(|e| {
        Error::new(ErrorKind::Decode, "the echo did not decode as a Greeting").with_source(e)
    })?;
    let transport = super::pipe::transport_name(pipe.transport());
    println!(
        "  demo process pid {} sent {msg:?}\n  the echo server replied {back:?} (intact: {}), first round trip {}",
        std::process::id(),
        back == msg,
        us(first.as_nanos() as u64)
    );
    let rounds = 2000;
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        pipe.transact(&bytes)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    println!(
        "  {rounds} more round trips of {} bytes over {transport}: p50 {} p99 {} (`ipckit bench` compares with raw floors)",
        bytes.len(),
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
    );
    Ok(())
}
