//! `ipckit demo`: a tour in which real processes talk through each
//! mechanism. Every step starts its own child processes (this same binary,
//! through hidden `internal` subcommands or the public ones) in a private
//! temporary namespace and prints what they exchanged and how fast.

use crate::util::Reaped;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{msg, slot};

fn io(e: std::io::Error, what: &str) -> ipckit::Error {
    ipckit::Error::new(ipckit::ErrorKind::Io, format!("demo: {what}: {e}")).with_source(e)
}

/// Start `ipckit <args>` in the demo namespace.
fn ipckit(ns: &Path, args: &[&str]) -> Result<Command, ipckit::Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let mut c = Command::new(exe);
    c.args(args).env(ipckit::name::NAMESPACE_ENV, ns);
    Ok(c)
}

fn spawn(mut c: Command) -> Result<Reaped, ipckit::Error> {
    c.stdin(Stdio::null());
    c.spawn()
        .map(Reaped)
        .map_err(|e| io(e, "cannot start a child"))
}

fn run_to_end(mut c: Command) -> Result<(), ipckit::Error> {
    let st = c.status().map_err(|e| io(e, "cannot run a child"))?;
    if st.success() {
        Ok(())
    } else {
        Err(ipckit::Error::new(
            ipckit::ErrorKind::Io,
            format!("demo: a child process failed ({st})"),
        ))
    }
}

pub fn run() -> Result<(), ipckit::Error> {
    let root: PathBuf = std::env::temp_dir().join(format!("ipckit-demo-{}", std::process::id()));
    let ns = ipckit::Namespace::at(&root)?;
    println!("ipckit demo — namespace {}", ns.dir().display());
    let result = steps(ns.dir());
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn steps(ns: &Path) -> Result<(), ipckit::Error> {
    step_pipe(ns)?;
    slot::demo_step(ns)?;
    msg::demo_step(ns)?;
    super::service::demo_step(ns)?;
    super::map::demo_step(ns)?;
    println!("\ndemo finished: every step ran between separate processes.");
    Ok(())
}

fn step_pipe(ns: &Path) -> Result<(), ipckit::Error> {
    println!(
        "\n[1] named pipe: echo server process <-> client process (message mode, postcard payload)"
    );
    let _server = spawn(ipckit(ns, &["pipe", "serve", "demo/echo", "--echo"])?)?;
    let raw = ns.join("raw-echo.sock");
    let raw_s = raw.to_string_lossy().into_owned();
    let _raw = spawn(ipckit(ns, &["internal", "raw-echo", &raw_s])?)?;
    run_to_end(ipckit(
        ns,
        &["internal", "demo-pipe-client", "demo/echo", &raw_s],
    )?)
}
