//! `ipckit msg listen|send|post|register|broadcast`: window-style messages.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::message::{self, Messenger, Reply, WM_COPYDATA};

use crate::cli::MsgCommand;
use crate::util::{percentile, us};

pub fn run(cmd: MsgCommand) -> Result<(), ipckit::Error> {
    match cmd {
        MsgCommand::Listen {
            name,
            count,
            json,
            quiet,
        } => listen(&name, count, json, quiet),
        MsgCommand::Send {
            name,
            id,
            data,
            timeout,
            json,
        } => {
            let t = Instant::now();
            let r = message::send(&name, id, data.as_bytes(), timeout)?;
            let rtt = t.elapsed();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "result": r.result,
                        "reply": String::from_utf8_lossy(&r.data),
                        "rtt_us": rtt.as_secs_f64() * 1e6,
                    })
                );
            } else {
                println!("{}", r.result);
            }
            Ok(())
        }
        MsgCommand::Post { name, id, data } => message::post(&name, id, data.as_bytes()),
        MsgCommand::Register { text, json } => {
            let id = message::register_message(&text)?;
            if json {
                println!("{}", serde_json::json!({ "text": text, "id": id }));
            } else {
                println!("{id}");
            }
            Ok(())
        }
        MsgCommand::Broadcast {
            id,
            data,
            timeout,
            json,
        } => {
            let all = message::broadcast(id, data.as_bytes(), timeout)?;
            if json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|b| match &b.reply {
                        Ok(r) => serde_json::json!({ "name": b.name, "result": r.result }),
                        Err(e) => serde_json::json!({
                            "name": b.name, "error": e.to_string(), "kind": e.kind().as_str()
                        }),
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for b in &all {
                    match &b.reply {
                        Ok(r) => println!("{} {}", b.name, r.result),
                        Err(e) => println!("{} error: {e}", b.name),
                    }
                }
            }
            Ok(())
        }
        MsgCommand::Bench { name, raw, rounds } => bench(&name, &raw, rounds),
    }
}

fn listen(name: &str, count: Option<usize>, json: bool, quiet: bool) -> Result<(), ipckit::Error> {
    let (tx, rx) = mpsc::channel::<()>();
    let _rx = message::Receiver::register(name, move |m| {
        if !quiet {
            let text = String::from_utf8_lossy(m.data);
            let line = if json {
                serde_json::json!({
                    "id": m.id, "data": text, "sender_pid": m.sender_pid, "posted": m.posted
                })
                .to_string()
            } else {
                format!("{} {}", m.id, text.replace('\n', "\\n"))
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let _ = tx.send(());
        Reply::new(m.data.len() as i64)
    })?;
    eprintln!("listening as '{name}'");
    let mut seen = 0;
    while count.is_none_or(|k| seen < k) {
        if rx.recv().is_err() {
            break;
        }
        seen += 1;
    }
    Ok(())
}

fn io(e: std::io::Error, what: &str) -> ipckit::Error {
    ipckit::Error::new(ipckit::ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}

/// p50 of `send` round trips over a kept connection, beside a raw
/// Unix-socket ping-pong of the same payload, measured in the same run.
fn bench(name: &str, raw: &Path, rounds: usize) -> Result<(), ipckit::Error> {
    let payload = [7u8; 64];
    let mut w = Messenger::new().connect(name)?;
    for _ in 0..100 {
        w.send(1, &payload, Duration::from_secs(5))?;
    }
    let mut send_ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        w.send(1, &payload, Duration::from_secs(5))?;
        send_ns.push(t.elapsed().as_nanos() as u64);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sock = loop {
        match UnixStream::connect(raw) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(io(e, "cannot reach the raw echo baseline"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let mut buf = [0u8; 64];
    let mut raw_ns = Vec::with_capacity(rounds);
    for i in 0..rounds + 100 {
        let t = Instant::now();
        sock.write_all(&payload).map_err(|e| io(e, "raw write"))?;
        sock.read_exact(&mut buf).map_err(|e| io(e, "raw read"))?;
        if i >= 100 {
            raw_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    send_ns.sort_unstable();
    raw_ns.sort_unstable();
    let (s, r) = (percentile(&send_ns, 50.0), percentile(&raw_ns, 50.0));
    println!(
        "  {rounds} round trips of 64 bytes: message send p50 {} p99 {} | raw Unix socket ping-pong p50 {} p99 {} | ratio {:.2}x",
        us(s),
        us(percentile(&send_ns, 99.0)),
        us(r),
        us(percentile(&raw_ns, 99.0)),
        s as f64 / r.max(1) as f64
    );
    Ok(())
}

/// A child process killed and reaped when dropped.
pub(super) struct Reaped(Child);

impl Reaped {
    pub(super) fn spawn(mut c: Command) -> Result<Reaped, ipckit::Error> {
        c.stdin(Stdio::null());
        c.spawn()
            .map(Reaped)
            .map_err(|e| io(e, "demo: cannot start a child"))
    }

    pub(super) fn stdout(&mut self) -> Option<ChildStdout> {
        self.0.stdout.take()
    }

    /// Wait for a clean exit within `limit`.
    pub(super) fn wait(&mut self, limit: Duration) -> Result<(), ipckit::Error> {
        let deadline = Instant::now() + limit;
        loop {
            match self.0.try_wait().map_err(|e| io(e, "demo: wait"))? {
                Some(st) if st.success() => return Ok(()),
                Some(st) => {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Io,
                        format!("demo: a child process failed ({st})"),
                    ))
                }
                None if Instant::now() >= deadline => {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Timeout,
                        "demo: a child process did not finish in time",
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ipckit <args>` in the demo namespace.
pub(super) fn demo_child(ns: &Path, args: &[&str]) -> Result<Command, ipckit::Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let mut c = Command::new(exe);
    c.args(args).env(ipckit::name::NAMESPACE_ENV, ns);
    Ok(c)
}

/// Run a child to completion; an error if it failed.
pub(super) fn run_child(c: Command) -> Result<(), ipckit::Error> {
    Reaped::spawn(c)?.wait(Duration::from_secs(20))
}

/// Wait (bounded) until `name` has a live owner.
pub(super) fn wait_live(ns: &ipckit::Namespace, name: &str) -> Result<(), ipckit::Error> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ns
            .info(name)?
            .is_some_and(|i| i.state == ipckit::name::EndpointState::Live)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ipckit::Error::new(
                ipckit::ErrorKind::Timeout,
                "demo: the endpoint did not appear in time",
            )
            .with_name(name));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The demo's message step: the seed's WM_COPYDATA (a JSON string shown by
/// another process), posts handled in order, then send latency beside a raw
/// Unix-socket ping-pong.
pub fn demo_step(ns: &Path) -> Result<(), ipckit::Error> {
    println!("\n[messages] a receiver process; send (WM_COPYDATA), post, register_message");
    let nsp = ipckit::Namespace::at(ns)?;
    let mut listener = Reaped::spawn(demo_child(
        ns,
        &["msg", "listen", "demo/win", "--count", "3"],
    )?)?;
    wait_live(&nsp, "demo/win")?;
    let m = Messenger::new().namespace(&nsp).clone();
    let json = r#"{"userCode":"dba","wardCode":123,"mrn":456}"#;
    let t = Instant::now();
    let r = m.send(
        "demo/win",
        WM_COPYDATA,
        json.as_bytes(),
        Duration::from_secs(5),
    )?;
    println!(
        "  sent WM_COPYDATA {json} -> result {} (the data length) in {}",
        r.result,
        us(t.elapsed().as_nanos() as u64)
    );
    let refresh = m.register_message("Demo.Refresh")?;
    println!("  register_message(\"Demo.Refresh\") = {refresh:#x}");
    m.post("demo/win", refresh, b"first post")?;
    m.post("demo/win", refresh, b"second post")?;
    listener.wait(Duration::from_secs(20))?;
    println!("\n[messages] send round trip vs raw Unix-socket ping-pong (64 bytes)");
    let _quiet = Reaped::spawn(demo_child(ns, &["msg", "listen", "demo/bench", "--quiet"])?)?;
    let raw = ns.join("raw-msg.sock");
    let raw_s = raw.to_string_lossy().into_owned();
    let _raw = Reaped::spawn(demo_child(ns, &["internal", "raw-echo", &raw_s])?)?;
    wait_live(&nsp, "demo/bench")?;
    run_child(demo_child(
        ns,
        &["msg", "bench", "demo/bench", &raw_s, "--rounds", "5000"],
    )?)
}
