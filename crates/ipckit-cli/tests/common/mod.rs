//! Helpers of the tests that run the `ipckit` command (the library's own
//! cross-process tests, with their helper roles, are in
//! `crates/ipckit/tests`).
//!
//! - [`TestNs`]: a fresh temporary namespace per test, and `ipckit`
//!   commands pointed at it.
//! - [`Proc`]: a child process whose stdout/stderr are collected in the
//!   background and which is killed and reaped when dropped.
//! - [`wait_until`]: poll a condition with a bounded deadline (never a bare
//!   sleep as synchronisation).
#![allow(dead_code)] // each test binary uses its own subset

/// The library's two-network-namespace harness (feature `zenoh`).
#[cfg(feature = "zenoh")]
#[path = "../../../ipckit/tests/support/netns.rs"]
pub mod netns;

/// `ipckit` run inside a network namespace on a fabric namespace of its own.
#[cfg(feature = "zenoh")]
pub mod fabric;

/// The library harness's role launcher (`netns::Net::role`), unused here:
/// the CLI tests run the `ipckit` binary itself in the namespaces
/// ([`fabric::ipckit_in`]).
#[cfg(feature = "zenoh")]
fn role_command(role: &str, _args: &[&str]) -> std::process::Command {
    panic!("the CLI tests run ipckit, not the library's role {role}")
}

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipckit::shm::MappingOptions;
use ipckit::Namespace;

/// The generous bound every wait in these tests uses: long enough for a
/// loaded CI machine, short enough that a hang fails instead of stalling.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A fresh namespace in a temporary directory, removed on drop (with the
/// named shared-memory objects registered by [`TestNs::remove_shm_on_drop`],
/// which live in /dev/shm).
pub struct TestNs {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The namespace inside it (`<tmp>/ns`).
    pub ns: Namespace,
    shm: Vec<String>,
}

impl TestNs {
    pub fn new() -> TestNs {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let ns = Namespace::at(dir.path().join("ns")).expect("create the namespace");
        TestNs {
            dir,
            ns,
            shm: Vec::new(),
        }
    }

    /// Remove these named shared-memory objects when dropped.
    pub fn remove_shm_on_drop(mut self, names: &[&str]) -> TestNs {
        self.shm.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// The namespace directory (what `IPCKIT_NAMESPACE` is set to).
    pub fn path(&self) -> &Path {
        self.ns.dir()
    }

    /// A path in the temporary directory but outside the namespace.
    pub fn outside(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `ipckit <args>` with `IPCKIT_NAMESPACE` pointing at this namespace
    /// (and on the default transport, whatever this process was given).
    pub fn ipckit(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ipckit"));
        c.args(args)
            .env(ipckit::name::NAMESPACE_ENV, self.path())
            .env_remove(ipckit::transport::TRANSPORT_ENV);
        c
    }

    /// Run `ipckit <args>` to completion (bounded), collecting its output.
    pub fn run(&self, args: &[&str]) -> Output {
        Proc::spawn(&mut self.ipckit(args)).finish(DEADLINE)
    }

    /// Start `ipckit <args>` as a long-running child (e.g. a server).
    pub fn start(&self, args: &[&str]) -> Proc {
        Proc::spawn(&mut self.ipckit(args))
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let o = MappingOptions::new().namespace(&self.ns);
        for n in &self.shm {
            let _ = o.remove(n);
        }
    }
}

/// Wait (bounded) until endpoint `name` has a live owner in `ns`.
pub fn wait_live(ns: &Namespace, name: &str) {
    wait_until(DEADLINE, &format!("'{name}' is live"), || {
        ns.info(name)
            .unwrap()
            .is_some_and(|i| i.state == ipckit::name::EndpointState::Live)
    });
}

/// What a finished child printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panic with everything the child said unless it succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "child failed: {self:#?}");
        self
    }

    /// Panic unless the child failed with exactly one line on stderr (how
    /// every `ipckit` failure ends).
    pub fn assert_one_line_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "child should have failed: {self:#?}"
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "expected one stderr line: {self:#?}"
        );
        self
    }
}

type Buf = Arc<Mutex<Vec<u8>>>;

/// A child process, killed (SIGKILL) and reaped on drop. Its stdout and
/// stderr, unless redirected by the caller, are collected by background
/// threads so it can never block on a full pipe.
pub struct Proc {
    child: Option<Child>,
    stdout: Buf,
    stderr: Buf,
    readers: Vec<JoinHandle<()>>,
    /// How far [`Proc::stdout_line`] / [`Proc::stderr_line`] have read.
    cursor: [usize; 2],
}

fn collect(mut from: impl Read + Send + 'static, into: Buf) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Proc {
    /// Spawn `cmd` with stdin from /dev/null and stdout/stderr collected.
    pub fn spawn(cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Self::start(cmd);
        if let Some(o) = p.child().stdout.take() {
            p.readers.push(collect(o, p.stdout.clone()));
        }
        p
    }

    /// Like [`Proc::spawn`], but the caller gets the child's stdout to read
    /// itself (stderr is still collected).
    pub fn spawn_with_stdout(cmd: &mut Command) -> (Proc, ChildStdout) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Self::start(cmd);
        let out = p.child().stdout.take().expect("piped stdout");
        (p, out)
    }

    /// Spawn, collecting stderr.
    fn start(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stderr = Buf::default();
        let mut readers = Vec::new();
        if let Some(e) = child.stderr.take() {
            readers.push(collect(e, stderr.clone()));
        }
        Proc {
            child: Some(child),
            stdout: Buf::default(),
            stderr,
            readers,
            cursor: [0, 0],
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child already reaped").id()
    }

    /// Whether the child has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }

    /// Send SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the child wrote on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next complete stdout line (after those already returned or
    /// skipped) that starts with `prefix`, waiting for it (bounded).
    /// Panics if the child ends without printing one.
    pub fn stdout_line(&mut self, prefix: &str) -> String {
        self.line(0, prefix)
    }

    /// [`Proc::stdout_line`] on stderr.
    pub fn stderr_line(&mut self, prefix: &str) -> String {
        self.line(1, prefix)
    }

    fn line(&mut self, which: usize, prefix: &str) -> String {
        let buf = [&self.stdout, &self.stderr][which].clone();
        let mut found = None;
        let mut ended = false;
        wait_until(
            DEADLINE,
            &format!("a line starting with {prefix:?}"),
            || {
                let was_ended = ended;
                let b = buf.lock().unwrap();
                let mut at = self.cursor[which];
                while let Some(n) = b[at..].iter().position(|c| *c == b'\n') {
                    let line = String::from_utf8_lossy(&b[at..at + n]).into_owned();
                    at += n + 1;
                    if line.starts_with(prefix) {
                        found = Some(line);
                        break;
                    }
                }
                self.cursor[which] = at;
                drop(b);
                if found.is_some() || was_ended {
                    return true;
                }
                ended = self
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some())
                    && self.readers.iter().all(|r| r.is_finished());
                false
            },
        );
        found.unwrap_or_else(|| {
            panic!(
                "the child ended without printing a line starting with {prefix:?}; stdout: {} stderr: {}",
                self.stdout_so_far(),
                self.stderr_so_far()
            )
        })
    }

    /// Wait for the child to exit, at most `limit` (then kill it and
    /// panic).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "child did not exit within {limit:?}; stderr so far: {}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait (bounded) for a successful exit.
    pub fn wait_success(&mut self, limit: Duration) {
        let st = self.wait_exit(limit);
        assert!(
            st.success(),
            "child failed ({st}); stderr: {}",
            self.stderr_so_far()
        );
    }

    /// Wait for the child to exit (bounded) and return its output.
    pub fn finish(mut self, limit: Duration) -> Output {
        let status = self.wait_exit(limit);
        self.child = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output {
            status,
            stdout: self.stdout_so_far(),
            stderr: self.stderr_so_far(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `cond` until it holds, at most `limit`; panic naming `what` if it
/// never does.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    ByteStream::new(seed).fill(&mut out);
    out
}

/// An endless deterministic byte stream: the same seed gives the same
/// bytes however they are cut into chunks, so a reader can check a stream
/// against its own copy of the generator.
pub struct ByteStream {
    x: u64,
    word: [u8; 8],
    used: usize,
}

impl ByteStream {
    pub fn new(seed: u64) -> ByteStream {
        ByteStream {
            x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            word: [0; 8],
            used: 8,
        }
    }

    /// Fill `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                let mut x = self.x;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                self.x = x;
                self.word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}
