//! `ipckit msg listen|send|post|register|broadcast`: window-style messages.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::message::{self, Messenger, Reply, WM_COPYDATA};

use super::demo;
use crate::cli::MsgCommand;
use crate::util::{percentile, us};

pub fn run(cmd: MsgCommand) -> Result<(), ipckit::Error> {
    match cmd {
        MsgCommand::Listen {
            name,
            count,
            timeout,
            json,
        } => listen(&name, count, timeout, json),
        MsgCommand::Send {
            name,
            id,
            data,
            timeout,
            json,
        } => {
            let deadline = Instant::now() + timeout;
            let mut w = window_within(&name, deadline)?;
            let t = Instant::now();
            let left = deadline.saturating_duration_since(t);
            let r = w.send(id, data.as_bytes(), left)?;
            let rtt = t.elapsed();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "result": r.result,
                        "reply": String::from_utf8_lossy(&r.data),
                        "rtt_ns": crate::util::nanos(rtt),
                    })
                );
            } else {
                println!("{}", r.result);
            }
            Ok(())
        }
        MsgCommand::Post {
            name,
            id,
            data,
            timeout,
        } => window_within(&name, Instant::now() + timeout)?.post(id, data.as_bytes()),
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
            remote,
        } => {
            let all = broadcaster(remote)?.broadcast(id, data.as_bytes(), timeout)?;
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
    }
}

/// A messenger for this command: the namespace from the environment, and
/// the servers `--allow-uid` trusts.
fn messenger() -> message::Messenger {
    message::Messenger::new()
        .allow_server_uids(crate::util::allowed_uids())
        .clone()
}

/// [`messenger`], also publishing broadcasts on the command's fabric
/// session when `remote` (receivers of every machine that listen as
/// `zenoh://NAME` get them, as posted messages).
fn broadcaster(remote: bool) -> Result<message::Messenger, ipckit::Error> {
    if !remote {
        return Ok(messenger());
    }
    #[cfg(feature = "zenoh")]
    return Ok(messenger().fabric(&crate::util::fabric()?));
    #[cfg(not(feature = "zenoh"))]
    return Err(crate::util::no_fabric("a broadcast across the fabric"));
}

fn listen(
    name: &str,
    count: Option<usize>,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), ipckit::Error> {
    // Before the record exists: a stop signal from then on removes it.
    crate::util::catch_stop_signals()?;
    let (tx, rx) = mpsc::channel::<()>();
    #[cfg_attr(not(feature = "zenoh"), allow(unused_mut))]
    let mut opts = message::ReceiverOptions::new().limits(crate::util::limits());
    // `zenoh://NAME`: listen as NAME, and also take the broadcasts of
    // every machine of the fabric.
    let name = match crate::util::remote_name(name) {
        #[cfg(feature = "zenoh")]
        Some(n) => {
            opts = opts.fabric(&crate::util::fabric()?);
            n
        }
        #[cfg(not(feature = "zenoh"))]
        Some(_) => return Err(crate::util::no_fabric("listening as zenoh://NAME")),
        None => name,
    };
    let _rx = opts.register(name, move |m| {
        let text = String::from_utf8_lossy(m.data);
        let line = if json {
            serde_json::json!({
                "id": m.id, "data": text, "sender_pid": m.sender_pid, "posted": m.posted
            })
            .to_string()
        } else {
            format!("{:#06x} {}", m.id, text.replace('\n', "\\n"))
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        drop(out);
        let _ = tx.send(());
        Reply::new(m.data.len() as i64)
    })?;
    eprintln!("listening as '{name}'");
    let mut seen = 0;
    let deadline = timeout.map(|t| Instant::now() + t);
    // Ctrl-C or SIGTERM ends the wait, so the receiver is unregistered;
    // so do `--count` messages and `--timeout`.
    while count.is_none_or(|k| seen < k) && !crate::util::stop_requested() {
        let wait = match deadline {
            Some(d) if Instant::now() >= d => {
                if let Some(k) = count {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Timeout,
                        format!(
                            "{seen} of {k} messages came within --timeout {:?}",
                            timeout.unwrap_or_default()
                        ),
                    )
                    .with_name(name));
                }
                break;
            }
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(crate::util::STOP_POLL),
            None => crate::util::STOP_POLL,
        };
        match rx.recv_timeout(wait) {
            Ok(()) => seen += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

/// A window to receiver `name`, waiting until `deadline` for it to appear
/// (a sender started just before its receiver, as `pipe send` waits).
fn window_within(name: &str, deadline: Instant) -> Result<message::Window, ipckit::Error> {
    crate::util::fail_if_stale(name, "receiver")?;
    let m = messenger();
    loop {
        match m.connect(name) {
            Err(e) if e.kind() == ipckit::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            r => return r,
        }
    }
}

/// A window to receiver `name` once it accepts: its endpoint record is
/// live a moment before it listens, so `NotFound` in between is retried
/// (bounded).
fn connect_when_ready(
    m: &Messenger,
    ns: &ipckit::Namespace,
    name: &str,
) -> Result<message::Window, ipckit::Error> {
    demo::wait_live(ns, name)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match m.connect(name) {
            Err(e) if e.kind() == ipckit::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => return r,
        }
    }
}

/// The demo's message step: the seed's WM_COPYDATA (a JSON string shown by
/// another process), posts handled in order, then send round trips.
pub fn demo_step(ns: &Path) -> Result<(), ipckit::Error> {
    println!("\n[messages] a receiver process; send (WM_COPYDATA), post, register_message");
    let nsp = ipckit::Namespace::at(ns)?;
    let mut listener = demo::spawn(demo::child(
        ns,
        &["msg", "listen", "demo/win", "--count", "3"],
    )?)?;
    let m = Messenger::new().namespace(&nsp).clone();
    let mut win = connect_when_ready(&m, &nsp, "demo/win")?;
    let json = r#"{"userCode":"dba","wardCode":123,"mrn":456}"#;
    let t = Instant::now();
    let r = win.send(WM_COPYDATA, json.as_bytes(), Duration::from_secs(5))?;
    println!(
        "  sent WM_COPYDATA {json} -> result {} (the data length) in {}",
        r.result,
        us(t.elapsed().as_nanos() as u64)
    );
    let refresh = m.register_message("Demo.Refresh")?;
    println!("  register_message(\"Demo.Refresh\") = {refresh:#x}");
    win.post(refresh, b"first post")?;
    win.post(refresh, b"second post")?;
    listener.wait(Duration::from_secs(20))?;

    println!("\n[messages] send round trips to a receiver process (64 bytes)");
    let mut quiet = demo::child(ns, &["msg", "listen", "demo/bench"])?;
    quiet.stdout(Stdio::null()).stderr(Stdio::null());
    let _quiet = demo::spawn(quiet)?;
    let mut w = connect_when_ready(&m, &nsp, "demo/bench")?;
    let payload = [7u8; 64];
    for _ in 0..100 {
        w.send(1, &payload, Duration::from_secs(5))?;
    }
    let rounds = 2000;
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        w.send(1, &payload, Duration::from_secs(5))?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    println!(
        "  {rounds} sends, each waiting for the handler's result: p50 {} p99 {}",
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0))
    );
    Ok(())
}
