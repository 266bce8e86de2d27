//! The one helper module of the library's cross-process tests.
//!
//! - [`TestNs`]: a fresh temporary namespace per test (removed on drop,
//!   with the named shared-memory objects the test registered).
//! - [`Proc`]: a child process whose stdout/stderr are collected in the
//!   background and which is killed and reaped when dropped, so a failing
//!   test never leaks a process.
//! - [`wait_until`]: poll a condition with a bounded deadline (never a bare
//!   sleep as synchronisation).
//! - Roles: a test binary re-execs itself to play a helper process
//!   ([`role_command`]): it runs only its one ignored test whose name
//!   contains `child_role`, with [`ROLE_ENV`] naming the role and its
//!   arguments; that test reads them with [`role`].
//! - [`rings`] / [`ring_of`]: the shared-memory ring objects another
//!   process holds, found through `/proc/<pid>/fd`, to corrupt them.
//! - [`pattern`], [`Gen`], [`Checksum`]: deterministic data and a
//!   streaming hash of it.
//! - [`proc_stats`]: threads, memory, CPU and descriptors of another
//!   process; [`limits`]: resource limits a helper sets on itself;
//! - [`netns`] (feature `zenoh`): two network namespaces joined by a
//!   veth pair, for tests across machines;
//! - [`raw`]: hostile peers' raw sockets and wire formats, and the roles
//!   the hostile-peer tests share.
#![allow(dead_code)] // each test binary uses its own subset

pub mod limits;
#[cfg(feature = "zenoh")]
pub mod netns;
pub mod proc_stats;
pub mod raw;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipckit::shm::{Mapping, MappingOptions};
use ipckit::Namespace;

/// The generous bound every wait in these tests uses: long enough for a
/// loaded CI machine, short enough that a hang fails instead of stalling.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Environment variable naming the role of a re-exec'd test binary, then
/// its arguments, each after an [`ARG_SEP`].
pub const ROLE_ENV: &str = "IPCKIT_TEST_ROLE";
/// Separates a role's arguments in [`ROLE_ENV`] (the ASCII unit separator,
/// which no argument contains).
const ARG_SEP: char = '\u{1f}';

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

/// A fresh namespace in a temporary directory, removed on drop.
pub struct TestNs {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The namespace inside it (`<tmp>/ns`).
    pub ns: Namespace,
    /// Named shared-memory objects (which live in /dev/shm, outside the
    /// directory) to remove on drop.
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

    /// Remove these named mappings (and maps, mutexes...) when dropped.
    pub fn remove_shm_on_drop(mut self, names: &[&str]) -> TestNs {
        self.shm.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// The namespace directory (what `IPCKIT_NAMESPACE` is set to).
    pub fn path(&self) -> &Path {
        self.ns.dir()
    }

    /// This test binary in `role` with `args`, in this namespace.
    pub fn role(&self, role: &str, args: &[&str]) -> Command {
        let mut c = role_command(role, args);
        c.env(ipckit::name::NAMESPACE_ENV, self.path());
        c
    }

    /// Start a role as a long-running child (e.g. a server).
    pub fn start(&self, role: &str, args: &[&str]) -> Proc {
        Proc::spawn(&mut self.role(role, args))
    }

    /// Start a role that takes commands on stdin ([`Proc::talking`]),
    /// with `RUST_BACKTRACE=0` (a panic it is meant to survive prints one
    /// line).
    pub fn talk(&self, role: &str, args: &[&str]) -> Proc {
        Proc::talking(self.role(role, args).env("RUST_BACKTRACE", "0"))
    }

    /// Run a role to completion (bounded), collecting its output.
    pub fn run(&self, role: &str, args: &[&str]) -> Output {
        self.start(role, args).finish(DEADLINE)
    }

    /// A path in the temporary directory but outside the namespace (where
    /// a bad name must not have escaped to).
    pub fn outside(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
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

// ---------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------

/// This test binary, re-exec'd to run only its ignored `child_role` test
/// (the one test of the binary whose name contains `child_role`) as
/// `role` with `args`.
pub fn role_command(role: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("find the test binary");
    let mut c = Command::new(exe);
    // Two test threads, although one test runs: the harness then prints
    // `test child_role ... ok` on a line of its own at the end, never a
    // partial line before the role's own output.
    let mut value = role.to_string();
    for a in args {
        assert!(!a.contains(ARG_SEP), "a role argument holds the separator");
        value.push(ARG_SEP);
        value.push_str(a);
    }
    c.args(["child_role", "--nocapture", "--ignored", "--test-threads=2"])
        .env(ROLE_ENV, value);
    c
}

/// [`role_command`] run as another user (`uid`, with the same gid). The
/// test binary must be reachable by that user: if any directory above it
/// (or the file) is closed to others, as a checkout under `/root` is, the
/// binary is copied once to a world-readable temporary directory first.
pub fn role_command_as(uid: u32, role: &str, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut c = role_command(role, args);
    let exe = exe_for_others();
    let mut with_exe = Command::new(exe);
    with_exe.args(c.get_args());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            with_exe.env(k, v);
        }
    }
    c = with_exe;
    c.uid(uid).gid(uid);
    c
}

/// This test binary, or a copy of it that every user can run.
fn exe_for_others() -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::env::current_exe().expect("find the test binary");
        let open =
            |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
        if exe.ancestors().all(open) {
            return exe;
        }
        let dir = std::env::temp_dir().join(format!("ipckit-test-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a directory for the copy");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join(exe.file_name().expect("a file name"));
        std::fs::copy(&exe, &copy).expect("copy the test binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
    .clone()
}

/// The descriptor a parent passed to this role as fd number `n` (a
/// decimal argument).
pub fn inherited_fd(n: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    let fd: i32 = n.parse().expect("an fd number argument");
    // SAFETY: the parent test passed this fd number for this one use;
    // nothing else in this child process owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The role and arguments this process was started with, if it is a
/// re-exec'd child; `None` when a person runs the ignored tests.
pub fn role() -> Option<(String, Vec<String>)> {
    let value = std::env::var(ROLE_ENV).ok()?;
    let mut parts = value.split(ARG_SEP).map(str::to_string);
    let role = parts.next()?;
    Some((role, parts.collect()))
}

/// The value of `--flag VALUE` in a role's arguments.
pub fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .map(|i| args.get(i + 1).expect("a value after the flag").as_str())
}

/// The number after `--flag` in a role's arguments.
pub fn flag_num(args: &[String], flag: &str) -> Option<u64> {
    self::flag(args, flag).map(|v| v.parse().unwrap_or_else(|_| panic!("{flag} {v}")))
}

/// Whether a role's arguments hold the switch `flag`.
pub fn switch(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag)
}

/// `5s`, `250ms` or a bare number of seconds.
pub fn duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().expect("milliseconds"))
    } else {
        Duration::from_secs(s.trim_end_matches('s').parse().expect("seconds"))
    }
}

/// Print one line on stdout and flush it (a role's report to the test).
pub fn say(line: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}").unwrap();
    o.flush().unwrap();
}

/// Block until the parent closes this process's stdin (or kills it).
pub fn wait_for_parent() {
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

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

    /// Panic with everything the child said unless it failed.
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "child should have failed: {self:#?}"
        );
        self
    }

    /// The rest of the first stdout line that starts with `prefix` (a
    /// role's report, among the test harness's own lines).
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| l.strip_prefix(prefix))
    }
}

type Buf = Arc<Mutex<Vec<u8>>>;

/// A child process, killed (SIGKILL) and reaped on drop. Its stdout and
/// stderr, unless redirected by the caller, are collected by background
/// threads so it can never block on a full pipe; [`Proc::stdout_line`]
/// reads the collected lines in order.
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
    /// Use [`Proc::spawn_raw`] to keep the caller's stdio choices.
    pub fn spawn(cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self::spawn_raw(cmd)
    }

    /// Spawn `cmd` with whatever stdio the caller configured; piped
    /// stdout/stderr are collected.
    pub fn spawn_raw(cmd: &mut Command) -> Proc {
        let mut p = Self::start(cmd);
        if let Some(o) = p.child().stdout.take() {
            p.readers.push(collect(o, p.stdout.clone()));
        }
        p
    }

    /// Like [`Proc::spawn_raw`] with stdout piped, but the caller gets the
    /// child's stdout to read itself (stderr is still collected if piped).
    pub fn spawn_with_stdout(cmd: &mut Command) -> (Proc, ChildStdout) {
        cmd.stdout(Stdio::piped());
        let mut p = Self::start(cmd);
        let out = p.child().stdout.take().expect("piped stdout");
        (p, out)
    }

    /// Spawn `cmd` to talk to: its stdin piped (see [`Proc::tell`]; it
    /// closes when the `Proc` drops), stdout collected, stderr passed
    /// through to the test's own.
    pub fn talking(cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Self::spawn_raw(cmd)
    }

    /// Write `line` to the child's stdin (started by [`Proc::talking`]).
    pub fn tell(&mut self, line: &str) {
        use std::io::Write as _;
        let s = self.child().stdin.as_mut().expect("piped stdin");
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    /// Spawn, collecting stderr if piped.
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

    /// The underlying child (e.g. to take its stdin, or to kill it
    /// without reaping).
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

    /// What the child wrote on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next complete stdout line (after those already returned or
    /// skipped) that starts with `prefix`, waiting for it (bounded); lines
    /// in between are skipped (e.g. the test harness's own). Panics if the
    /// child ends without printing one.
    pub fn stdout_line(&mut self, prefix: &str) -> String {
        self.line(0, prefix)
    }

    /// [`Proc::stdout_line`], but `None` if the child's output ends first
    /// (it exited or died).
    pub fn try_stdout_line(&mut self, prefix: &str) -> Option<String> {
        self.next_line(0, prefix)
    }

    /// [`Proc::stdout_line`] on stderr.
    pub fn stderr_line(&mut self, prefix: &str) -> String {
        self.line(1, prefix)
    }

    fn line(&mut self, which: usize, prefix: &str) -> String {
        self.next_line(which, prefix).unwrap_or_else(|| {
            panic!(
                "the child ended without printing a line starting with {prefix:?}; stdout: {} stderr: {}",
                self.stdout_so_far(),
                self.stderr_so_far()
            )
        })
    }

    fn next_line(&mut self, which: usize, prefix: &str) -> Option<String> {
        let buf = [&self.stdout, &self.stderr][which].clone();
        let mut found = None;
        let mut ended = false;
        wait_until(
            DEADLINE,
            &format!("a line starting with {prefix:?}"),
            || {
                // Whether all output is in, checked before scanning it.
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
        found
    }

    /// Wait for the child to exit, at most `limit` (then kill it and
    /// panic), without collecting its output.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        let ok = poll_until(limit, || {
            status = self.exited();
            status.is_some()
        });
        if !ok {
            self.kill();
            panic!(
                "child did not exit within {limit:?}; stderr so far: {}",
                self.stderr_so_far()
            );
        }
        status.expect("exited")
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

    /// Wait for the child to exit, at most `limit` (then kill it and
    /// panic), and return its output.
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

// ---------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------

/// Poll `cond` until it holds, at most `limit`; whether it did.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Run `f` on a thread and wait at most `limit` for its result (the
/// thread is left behind if it hangs).
pub fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, mpsc::RecvTimeoutError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
}

/// Poll `cond` until it holds, at most `limit`; panic naming `what` if it
/// never does.
pub fn wait_until(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(limit, cond),
        "timed out after {limit:?} waiting until {what}"
    );
}

// ---------------------------------------------------------------------------
// Shared-memory rings of another process
// ---------------------------------------------------------------------------

/// The shared-memory ring objects process `pid` holds now (its fds that
/// name `memfd:ipckit-ring`): fd number → `/proc/<pid>/fd/<n>`.
pub fn rings(pid: u32) -> BTreeMap<u32, PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy().contains("memfd:ipckit-ring"))
                .unwrap_or(false)
        })
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect()
}

/// Map a ring object found by [`rings`] read-write, as a hostile process
/// would.
pub fn map_ring(path: &Path) -> Mapping {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    Mapping::from_fd(OwnedFd::from(file)).expect("map the ring object")
}

/// The ring object `pid` holds, mapped once it is there (bounded wait).
pub fn ring_of(pid: u32) -> Mapping {
    let mut found = None;
    wait_until(DEADLINE, "the peer holds a ring's memfd", || {
        found = rings(pid).into_values().next();
        found.is_some()
    });
    map_ring(&found.expect("found above"))
}

// ---------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Gen::new(seed).fill(&mut out);
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

    /// Fill `buf` with the next bytes (one word per 8 bytes; a short tail
    /// takes the first bytes of one more word).
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

/// The line of `out` starting with `prefix` (the rest of it), or a panic
/// showing the whole output.
pub fn expect_line<'a>(out: &'a Output, prefix: &str) -> &'a str {
    out.line(prefix)
        .unwrap_or_else(|| panic!("no line {prefix:?}: {out:#?}"))
}
