//! `ipckit map set|get|watch|rm`, and the demo's shared-map step.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use ipckit::map::SharedMapOptions;
use ipckit::{Error, ErrorKind};

use super::demo;
use crate::cli::MapCommand;
use crate::util::{percentile, us};

pub fn run(cmd: MapCommand) -> Result<(), Error> {
    match cmd {
        MapCommand::Set {
            name,
            text,
            max_size,
            timeout,
        } => {
            let mut m = SharedMapOptions::new()
                .max_size(max_size)
                .lock_timeout(timeout)
                .open_or_create(&name)?;
            let r = m.write_text(&text).map(|_| ());
            // On Windows the map vanishes with its last handle anyway.
            #[cfg(unix)]
            if r.is_err() && !m.existed() {
                // A map this command created for a write that failed (too
                // large, say) is not left behind.
                drop(m);
                let _ = ipckit::shm::MappingOptions::new().remove_unused(&name);
            }
            r
        }
        MapCommand::Get { name, json } => {
            let mut m = SharedMapOptions::new().open(&name)?;
            let s = m.read()?;
            let text = String::from_utf8_lossy(&s.content);
            if json {
                let v = serde_json::json!({
                    "name": name,
                    "content": text,
                    "version": s.version,
                    "size": s.content.len(),
                    "max_size": m.max_size(),
                });
                println!("{v}");
            } else {
                println!("{text}");
            }
            Ok(())
        }
        MapCommand::Watch {
            name,
            count,
            timeout,
            json,
        } => watch(&name, count, timeout, json),
        MapCommand::Rm { name } => ipckit::shm::MappingOptions::new().remove(&name),
    }
}

fn watch(
    name: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), Error> {
    #[cfg(unix)]
    let mut m = SharedMapOptions::new().open(name)?;
    // On Windows a map lives only while some process has it open: a
    // watcher started first creates it (empty, the default 64 KiB) and so
    // keeps it alive for the `map set` and `map get` that follow. It says
    // on stderr when it holds the map.
    #[cfg(windows)]
    let mut m = {
        let m = SharedMapOptions::new().open_or_create(name)?;
        eprintln!("watching map '{name}'");
        m
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut seen = 0;
    let mut out = std::io::stdout().lock();
    while count.is_none_or(|c| seen < c) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let c = m.wait_change(left).map_err(|e| {
            if e.kind() == ErrorKind::Timeout {
                Error::new(
                    ErrorKind::Timeout,
                    format!("saw {seen} change(s) before the timeout"),
                )
                .with_name(name)
            } else {
                e
            }
        })?;
        let text = String::from_utf8_lossy(&c.content);
        let line = if json {
            serde_json::json!({"content": text, "version": c.version, "skipped": c.skipped})
                .to_string()
        } else {
            text.replace('\\', "\\\\").replace('\n', "\\n")
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        seen += 1;
    }
    Ok(())
}

/// `tick <i> @<ns since the epoch>`: what the demo writes.
fn tick(i: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("tick {i} @{now}")
}

/// The time a `tick` was written, and how long ago that was.
fn age(text: &str) -> Option<u64> {
    let sent: u128 = text.rsplit('@').next()?.parse().ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(now.saturating_sub(sent) as u64)
}

/// The demo step: a `map set` process creates the map, a `map watch`
/// process prints each change, and this process writes. (On Windows the
/// watcher starts first: it creates the map and keeps it alive.)
pub fn demo_step(ns: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    println!(
        "\n[map] shared map: writer -> watcher process (seqlock double buffer, futex broadcast)"
    );
    #[cfg(windows)]
    println!("\n[map] shared map: writer -> watcher process (section, named mutex, an event per watcher)");
    let name = "demo/board";
    #[cfg(unix)]
    demo::run_child(demo::child(ns, &["map", "set", name, "hello"])?)?;
    let mut watch = demo::child(ns, &["map", "watch", name, "--json"])?;
    watch.stdout(Stdio::piped());
    // On Windows the map lives while a process has it open: the watcher
    // creates and holds it (saying so on stderr), then `map set` writes.
    #[cfg(windows)]
    watch.stderr(Stdio::piped());
    let mut watcher = demo::spawn(watch)?;
    let watcher_pid = watcher.0.id();
    #[cfg(windows)]
    {
        let said = demo::lines(watcher.0.stderr.take().expect("piped above"));
        said.recv_timeout(demo::CHILD_LIMIT).map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                "demo: the map watch process did not say it holds the map",
            )
        })?;
        demo::run_child(demo::child(ns, &["map", "set", name, "hello"])?)?;
    }
    let changes = demo::lines(watcher.stdout().expect("piped above"));
    let nsp = ipckit::Namespace::at(ns)?;
    let r = (|| {
        let mut m = SharedMapOptions::new().namespace(&nsp).open(name)?;
        println!(
            "  writer: this process (pid {}) opened '{name}': content '{}', written by a `map set` process",
            std::process::id(),
            m.text()
        );
        // The watcher reports the changes after it opened the map: write
        // until it reports one, so no tick is written before it watches.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            m.write_text("ready?")?;
            match changes.recv_timeout(Duration::from_millis(100)) {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => continue,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "demo: the watcher process reported no change",
                    ))
                }
            }
        }
        let mut lat = Vec::new();
        for i in 1..=5 {
            let v = m.write_text(&tick(i))?;
            // The watcher's line for this tick (a late "ready?" may come
            // first).
            let want = format!("tick {i} @");
            let c = loop {
                let line = changes
                    .recv_timeout(Duration::from_secs(10))
                    .map_err(|_| Error::new(ErrorKind::Timeout, "demo: the watcher went quiet"))?;
                let c: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| demo::bad_json(e, &line))?;
                if c["content"].as_str().is_some_and(|t| t.starts_with(&want)) {
                    break c;
                }
            };
            let text = c["content"].as_str().unwrap_or_default();
            let l = age(text).unwrap_or_default();
            lat.push(l);
            println!(
                "  wrote 'tick {i}' (version {v}); watcher process pid {watcher_pid} printed version {} ({} skipped) {} after the write",
                c["version"],
                c["skipped"],
                us(l)
            );
        }
        lat.sort_unstable();
        println!(
            "  write -> the watcher process printed it (wake-up plus its stdout): median {}",
            us(percentile(&lat, 50.0))
        );
        Ok(())
    })();
    drop(watcher);
    let _ = ipckit::shm::MappingOptions::new()
        .namespace(&nsp)
        .remove(name);
    r
}
