//! Helpers shared by the cross-process integration tests.
//!
//! - [`TestNs`]: a fresh temporary namespace per test.
//! - [`Proc`]: a child process whose stdout/stderr are collected in the
//!   background and which is killed and reaped when dropped, so a failing
//!   test never leaks a process.
//! - [`wait_until`]: poll a condition with a bounded deadline (never a bare
//!   sleep as synchronisation).
//! - [`child_command`]: re-exec this test binary to run one `#[ignore]`d
//!   child test in a given role (for library code the CLI does not offer).
#![allow(dead_code)] // each test file uses its own subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipckit::Namespace;

/// The generous bound every wait in these tests uses: long enough for a
/// loaded CI machine, short enough that a hang fails instead of stalling.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Environment variable that selects the role of a re-exec'd child test.
pub const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";

/// A fresh namespace in a temporary directory, removed on drop.
pub struct TestNs {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The namespace inside it (`<tmp>/ns`).
    pub ns: Namespace,
}

impl TestNs {
    pub fn new() -> TestNs {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let ns = Namespace::at(dir.path().join("ns")).expect("create the namespace");
        TestNs { dir, ns }
    }

    /// The namespace directory (what `IPCKIT_NAMESPACE` is set to).
    pub fn path(&self) -> &Path {
        self.ns.dir()
    }

    /// `ipckit <args>` with `IPCKIT_NAMESPACE` pointing at this namespace.
    pub fn ipckit(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ipckit"));
        c.args(args).env(ipckit::name::NAMESPACE_ENV, self.path());
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

    /// A child running this test binary's `#[ignore]`d test `test_name` in
    /// `role`, in this namespace.
    pub fn child(&self, test_name: &str, role: &str) -> Command {
        let mut c = child_command(test_name, role);
        c.env(ipckit::name::NAMESPACE_ENV, self.path());
        c
    }
}

/// This test binary, re-exec'd to run only the ignored test `test_name`,
/// with [`ROLE_ENV`] set to `role`.
pub fn child_command(test_name: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("find the test binary");
    let mut c = Command::new(exe);
    c.args([
        "--exact",
        test_name,
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role);
    c
}

/// The role this process was started in, if it is a re-exec'd child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
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

    /// Panic unless the child failed with exactly one line on stderr.
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
    /// Spawn `cmd` with stdin from /dev/null (unless the caller set it)
    /// and stdout/stderr collected. Use [`Proc::spawn_raw`] to keep the
    /// caller's stdio choices for all three.
    pub fn spawn(cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self::spawn_raw(cmd)
    }

    /// Spawn `cmd` with whatever stdio the caller configured; piped
    /// stdout/stderr are collected.
    pub fn spawn_raw(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = Buf::default();
        let stderr = Buf::default();
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(collect(o, stdout.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(collect(e, stderr.clone()));
        }
        Proc {
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    /// Like [`Proc::spawn_raw`] with stdout piped, but the caller gets the
    /// child's stdout to read itself (stderr is still collected if piped).
    pub fn spawn_with_stdout(cmd: &mut Command) -> (Proc, std::process::ChildStdout) {
        cmd.stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let stderr = Buf::default();
        let mut readers = Vec::new();
        if let Some(e) = child.stderr.take() {
            readers.push(collect(e, stderr.clone()));
        }
        let p = Proc {
            child: Some(child),
            stdout: Buf::default(),
            stderr,
            readers,
        };
        (p, out)
    }

    /// The underlying child (e.g. to take its stdin).
    pub fn child(&mut self) -> &mut Child {
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

    /// What the child wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// What the child wrote on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Wait for the child to exit, at most `limit` (then kill it and
    /// panic), and return its output.
    pub fn finish(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.exited() {
                break st;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "child did not exit within {limit:?}; stderr so far: {}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
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
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut g = Gen::new(seed);
    while out.len() < len {
        let w = g.next_u64().to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&w[..take]);
    }
    out
}

/// The generator behind [`pattern`], for streaming large amounts.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fill `buf` (length a multiple of 8) with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            c.copy_from_slice(&w[..c.len()]);
        }
    }
}

/// A streaming checksum (FNV-1a over 64-bit words plus the length), cheap
/// enough for 100 MiB in a debug build; any change of a byte, its position
/// or the length changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    h: u64,
    len: u64,
    /// Bytes of an incomplete trailing word, so chunk boundaries don't matter.
    tail: [u8; 8],
    tail_len: usize,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
            tail: [0; 8],
            tail_len: 0,
        }
    }
}

impl Checksum {
    fn word(&mut self, w: u64) {
        self.h ^= w;
        self.h = self.h.wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let n = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(&data[..n]);
            self.tail_len += n;
            data = &data[n..];
            if self.tail_len < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail);
            self.word(w);
            self.tail_len = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The final value (length and trailing bytes folded in).
    pub fn value(&self) -> (u64, u64) {
        let mut c = *self;
        for i in 0..c.tail_len {
            c.word(u64::from(c.tail[i]) | 0x100);
        }
        (c.h, c.len)
    }
}

/// A path that must not exist after a bad name was rejected.
pub fn outside(ns: &TestNs, rel: &str) -> PathBuf {
    ns.dir.path().join(rel)
}
