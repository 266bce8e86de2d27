//! `ipckit map set|get|watch|rm`, and the demo's shared-map step.

use crate::util::Reaped;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipckit::map::SharedMapOptions;
use ipckit::{Error, ErrorKind};

use crate::cli::MapCommand;

pub fn run(cmd: MapCommand) -> Result<(), Error> {
    match cmd {
        MapCommand::Set {
            name,
            text,
            max_size,
        } => {
            let mut m = SharedMapOptions::new()
                .max_size(max_size)
                .open_or_create(&name)?;
            m.write_text(&text)?;
            Ok(())
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
    let mut m = SharedMapOptions::new().open(name)?;
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

fn io(e: std::io::Error, what: &str) -> Error {
    Error::new(ErrorKind::Io, format!("demo: {what}: {e}")).with_source(e)
}

fn ipckit(ns: &Path, args: &[&str]) -> Result<Command, Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let mut c = Command::new(exe);
    c.args(args)
        .env(ipckit::name::NAMESPACE_ENV, ns)
        .stdin(Stdio::null());
    Ok(c)
}

fn wait_ok(child: &mut Reaped, what: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.0.try_wait().map_err(|e| io(e, what))? {
            return if st.success() {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::Io,
                    format!("demo: {what} failed ({st})"),
                ))
            };
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("demo: {what} did not finish within 30 s"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The demo step: a writer process and a watcher process share a map.
pub fn demo_step(ns: &Path) -> Result<(), Error> {
    println!("\n[2] shared map: writer process -> watcher process (seqlock double buffer, futex broadcast)");
    let name = "demo/board";
    let mut set = Reaped(
        ipckit(ns, &["map", "set", name, "hello"])?
            .spawn()
            .map_err(|e| io(e, "cannot start a child"))?,
    );
    wait_ok(&mut set, "map set")?;
    let mut watcher = Reaped(
        ipckit(ns, &["shm-internal", "demo-watch", name, "5"])?
            .spawn()
            .map_err(|e| io(e, "cannot start the watcher"))?,
    );
    let mut writer = Reaped(
        ipckit(ns, &["shm-internal", "demo-write", name, "5"])?
            .spawn()
            .map_err(|e| io(e, "cannot start the writer"))?,
    );
    let r = wait_ok(&mut writer, "writer").and_then(|_| wait_ok(&mut watcher, "watcher"));
    let opts = ipckit::shm::MappingOptions::new().namespace(&ipckit::Namespace::at(ns)?);
    let _ = opts.remove(name);
    let _ = opts.remove(&format!("{name}.ready"));
    r
}
