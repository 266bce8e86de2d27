//! Helpers shared by the cross-process tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Env var telling a re-executed test binary which role to play.
pub const ROLE: &str = "IPCKIT_TEST_ROLE";

/// A child killed and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// Wait (bounded) for the child to exit; its exit status.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "child did not exit in time");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `ipckit <args>` in namespace `ns`.
pub fn ipckit(ns: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipckit"));
    c.args(args)
        .env("IPCKIT_NAMESPACE", ns)
        .stdin(Stdio::null());
    c
}

/// This test binary re-executed to run the ignored test `test` as `role`.
pub fn role(ns: &Path, test: &str, role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture", "--ignored"])
        .env("IPCKIT_NAMESPACE", ns)
        .env(ROLE, role)
        .stdin(Stdio::null());
    c
}

pub fn spawn(mut c: Command) -> Guard {
    Guard(c.spawn().expect("spawn child"))
}

/// Poll `cond` until true, failing the test after 20 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until endpoint `name` is live in `ns`.
pub fn wait_live(ns: &ipckit::Namespace, name: &str) {
    wait_until(name, || {
        ns.info(name)
            .unwrap()
            .is_some_and(|i| i.state == ipckit::name::EndpointState::Live)
    });
}

/// Read lines from a child's stdout on a thread, so reads can be bounded.
pub fn lines(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line within 30 s.
pub fn next_line(rx: &std::sync::mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a line from the child in time")
}
