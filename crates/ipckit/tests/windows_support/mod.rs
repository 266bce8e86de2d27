//! What the Windows suites (`windows_*.rs`, run under Wine by
//! `scripts/test-windows.sh`) share.

use std::path::PathBuf;

/// A plain Win32 C program from `scripts/windows/` (it does not use
/// ipckit), compiled by `scripts/test-windows.sh` into `$IPCKIT_C_PEERS`
/// (a Unix path: Wine shows it on drive `Z:`). `None` (and a message) if it
/// is not there; a failure instead when `IPCKIT_REQUIRE_C_PEER=1` (CI).
pub fn c_peer(name: &str) -> Option<PathBuf> {
    let required = std::env::var_os("IPCKIT_REQUIRE_C_PEER").is_some_and(|v| v == "1");
    let Some(dir) = std::env::var_os("IPCKIT_C_PEERS") else {
        assert!(
            !required,
            "IPCKIT_C_PEERS is not set but IPCKIT_REQUIRE_C_PEER=1"
        );
        eprintln!("SKIPPED: IPCKIT_C_PEERS is not set: run scripts/test-windows.sh, which compiles scripts/windows/{name}.c");
        return None;
    };
    let dir = dir.to_string_lossy().into_owned();
    let exe = if dir.starts_with('/') {
        PathBuf::from(format!("Z:{}\\{name}.exe", dir.replace('/', "\\")))
    } else {
        PathBuf::from(dir).join(format!("{name}.exe"))
    };
    if !exe.exists() {
        assert!(
            !required,
            "{exe:?} does not exist but IPCKIT_REQUIRE_C_PEER=1"
        );
        eprintln!("SKIPPED: {exe:?} does not exist");
        return None;
    }
    Some(exe)
}

/// Child processes for the Windows suites that re-run their own test
/// executable in a role (`windows_clipboard.rs`, `windows_dde.rs`): the
/// child runs the ignored test `child_role`, whose role is [`ROLE_ENV`]
/// and arguments [`ARGS_ENV`], in the namespace `IPCKIT_NAMESPACE`. A
/// child prints what it did on stdout, one line each ([`say`]), and exits
/// when its stdin closes; the parent kills and reaps it on drop. Every
/// wait here is bounded by [`LIMIT`]; nothing sleeps to synchronise.
pub mod kids {
    #![allow(dead_code)]

    use std::fs::File;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
    use std::sync::{mpsc, Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use ipckit::shm::MappingOptions;
    use ipckit::Namespace;

    /// Set in a child started by a test: its role.
    pub const ROLE_ENV: &str = "IPCKIT_WINDOWS_CHILD_ROLE";
    /// Set in a child started by a test: its arguments, separated by `|`.
    pub const ARGS_ENV: &str = "IPCKIT_WINDOWS_CHILD_ARGS";
    /// How long any wait may take before the test fails.
    pub const LIMIT: Duration = Duration::from_secs(60);

    /// A fresh namespace in a new temporary directory (removed on drop).
    pub fn new_ns() -> (tempfile::TempDir, Namespace) {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::at(dir.path()).unwrap();
        (dir, ns)
    }

    /// Poll `cond` until it holds or `limit` passes; whether it did.
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

    /// Run `f` on a thread and wait for its result at most [`LIMIT`].
    pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{what} did not finish within {LIMIT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked (see above)"),
        }
    }

    /// The system name of endpoint `name` in `ns`:
    /// `\\.\pipe\ipckit.<H>.<name>` with the `<H>` of the namespace's
    /// sections (docs/PROTOCOL.md).
    pub fn pipe_name(ns: &Namespace, name: &str) -> String {
        let section = MappingOptions::new().namespace(ns).os_name(name).unwrap();
        let tail = section
            .strip_prefix(r"Local\")
            .unwrap_or_else(|| panic!("unexpected section name {section}"));
        format!(r"\\.\pipe\{tail}")
    }

    /// Read `s` to its end (the other side closed it): whether it ended
    /// with no error other than the pipe's end (reads block: call it
    /// bounded).
    pub fn read_to_end(s: &mut File) -> bool {
        let mut b = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                // ERROR_BROKEN_PIPE / ERROR_PIPE_NOT_CONNECTED: the end.
                Err(e) => return matches!(e.raw_os_error(), Some(109 | 233)),
            }
        }
    }

    /// Print one line for the parent, flushed at once.
    pub fn say(line: &str) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }

    /// In `child_role`: the role and arguments of this child, or `None`
    /// in a normal test run.
    pub fn role() -> Option<(String, Vec<String>)> {
        let role = std::env::var(ROLE_ENV).ok()?;
        let args = std::env::var(ARGS_ENV)
            .unwrap_or_default()
            .split('|')
            .map(String::from)
            .collect();
        Some((role, args))
    }

    /// The value after `--name` in `args`.
    pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1).map(String::as_str)
    }

    /// Whether `--name` is in `args`.
    pub fn switch(args: &[String], name: &str) -> bool {
        args.iter().any(|a| a == name)
    }

    /// Stdin's lines, one at a time, on a channel (it disconnects when
    /// stdin closes: the parent is done or gone).
    pub fn stdin_lines() -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Lines a child printed on stdout so far, and whether it ended.
    #[derive(Default)]
    struct Lines {
        seen: Mutex<(Vec<String>, bool)>,
        cv: Condvar,
    }

    /// A child process (this executable in a role), killed and reaped on
    /// drop.
    pub struct Kid {
        child: Child,
        stdin: Option<ChildStdin>,
        out: Arc<Lines>,
        /// Lines already returned by [`Kid::next`].
        taken: usize,
        err: Arc<Mutex<String>>,
        what: String,
    }

    impl Kid {
        /// Start this executable in `role` with `args`, in namespace `ns`.
        pub fn start(ns: &Namespace, role: &str, args: &[&str]) -> Kid {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args([
                    "child_role",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ROLE_ENV, role)
                .env(ARGS_ENV, args.join("|"))
                .env("IPCKIT_NAMESPACE", ns.dir())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // Wine's CreateProcess now and then fails with
            // ERROR_INTERNAL_ERROR (1359) while other processes start and
            // end (about one suite run in ten); no process was made, so
            // try again, a few times at most.
            let mut tries = 0;
            let mut child = loop {
                match command.spawn() {
                    Ok(c) => break c,
                    Err(e) if e.raw_os_error() == Some(1359) && tries < 3 => {
                        tries += 1;
                        eprintln!("spawning child '{role}': {e}; trying again");
                    }
                    Err(e) => panic!("cannot start child '{role}': {e}"),
                }
            };
            let out = Arc::new(Lines::default());
            {
                let out = out.clone();
                let stdout = BufReader::new(child.stdout.take().unwrap());
                std::thread::spawn(move || {
                    for line in stdout.lines() {
                        let Ok(line) = line else { break };
                        out.seen.lock().unwrap().0.push(line);
                        out.cv.notify_all();
                    }
                    out.seen.lock().unwrap().1 = true;
                    out.cv.notify_all();
                });
            }
            let err = Arc::new(Mutex::new(String::new()));
            {
                let err = err.clone();
                let mut stderr = child.stderr.take().unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        err.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                });
            }
            Kid {
                stdin: child.stdin.take(),
                child,
                out,
                taken: 0,
                err,
                what: format!("child '{role}' {args:?}"),
            }
        }

        /// The child's process id.
        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// What the child printed so far, for failure messages.
        pub fn output(&self) -> String {
            let stdout = self.out.seen.lock().unwrap().0.join("\n");
            let stderr = self.err.lock().unwrap().clone();
            format!("stdout:\n{stdout}\nstderr:\n{stderr}")
        }

        /// Wait (bounded) for the next line (after those already taken)
        /// that holds `prefix`, and return it from the prefix on (the test
        /// harness may have printed `test child_role ... ` before it).
        pub fn next(&mut self, prefix: &str) -> String {
            let deadline = Instant::now() + LIMIT;
            let mut seen = self.out.seen.lock().unwrap();
            loop {
                while self.taken < seen.0.len() {
                    let l = &seen.0[self.taken];
                    self.taken += 1;
                    if let Some(i) = l.find(prefix) {
                        return l[i..].to_string();
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if seen.1 || left.is_zero() {
                    drop(seen);
                    panic!(
                        "{}: no line with {prefix:?} ({}):\n{}",
                        self.what,
                        if left.is_zero() {
                            "timed out"
                        } else {
                            "it ended"
                        },
                        self.output()
                    );
                }
                seen = self.out.cv.wait_timeout(seen, left).unwrap().0;
            }
        }

        /// [`next`](Self::next) without the prefix itself.
        pub fn value(&mut self, prefix: &str) -> String {
            self.next(prefix)[prefix.len()..].to_string()
        }

        /// Send `line` to the child's stdin.
        pub fn tell(&mut self, line: &str) {
            let stdin = self.stdin.as_mut().expect("stdin still open");
            writeln!(stdin, "{line}").unwrap();
            stdin.flush().unwrap();
        }

        /// Wait (bounded) for the child to exit.
        pub fn wait_exit(&mut self) -> ExitStatus {
            let mut status = None;
            let child = &mut self.child;
            assert!(
                poll_until(LIMIT, || {
                    status = child.try_wait().unwrap();
                    status.is_some()
                }),
                "{} did not exit within {LIMIT:?}",
                self.what
            );
            status.unwrap()
        }

        /// Kill the child (`TerminateProcess`) and wait until it is gone.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            self.wait_exit();
        }

        /// Close its stdin and wait (bounded) for it to exit; panics unless
        /// it succeeded. Its whole stdout.
        pub fn finish(mut self) -> String {
            self.stdin = None;
            let status = self.wait_exit();
            assert!(
                status.success(),
                "{} failed ({status}):\n{}",
                self.what,
                self.output()
            );
            // The reader thread sees the end once the process is gone.
            let seen = self.out.seen.lock().unwrap();
            let (seen, _) = self
                .out
                .cv
                .wait_timeout_while(seen, LIMIT, |s| !s.1)
                .unwrap();
            seen.0.join("\n")
        }
    }

    impl Drop for Kid {
        fn drop(&mut self) {
            self.stdin = None;
            if self.child.try_wait().ok().flatten().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
