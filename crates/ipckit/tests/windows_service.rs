//! Services on Windows: `ipckit::service` over byte-mode named pipes
//! (`\\.\pipe\ipckit.<H>.<name>`), across real processes. Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! The server runs in a child process: this test executable re-run as the
//! ignored test [`child_role`], its role named by the environment variable
//! [`CHILD_ENV`] (`server`, `load`, `blocker`, and `fake-server`: a plain
//! byte-mode pipe playing a broken service). A child prints what it did
//! on stdout, one line each (`READY <pid>`, `LOG <line>` for every line
//! the server logs, `RESULT …`), and exits when its stdin closes; the
//! parent kills and reaps it on drop. Nothing sleeps to synchronise: the
//! server's `block` method waits for the parent's `release` line, and the
//! parent polls `blocked` (bounded). Every wait is bounded by [`LIMIT`].
//!
//! The hand-written clients open the server's pipe with `std::fs` and
//! speak the frames of `docs/PROTOCOL.md`, "Services (RPC)": on Windows
//! they are exactly the socket's bytes.
#![cfg(all(windows, feature = "service"))]

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ipckit::service::{
    Client, Describe, Encoding, RemoteError, Server, CODE_BAD_REQUEST, CODE_BUSY, CODE_HANDLER,
    CODE_INTERNAL, CODE_UNKNOWN_METHOD, DESCRIBE,
};
use ipckit::shm::MappingOptions;
use ipckit::{ErrorKind, Limits, Namespace, Transport};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_SERVICE_CHILD";
/// How long any wait in these tests may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

/// `ERROR_BROKEN_PIPE`: the other end closed.
const ERROR_BROKEN_PIPE: i32 = 109;
/// `ERROR_PIPE_BUSY`: every instance of the pipe is in use.
const ERROR_PIPE_BUSY: i32 = 231;
/// `ERROR_NO_DATA`: the pipe is being closed.
const ERROR_NO_DATA: i32 = 232;
/// `ERROR_PIPE_NOT_CONNECTED`: the server disconnected this instance.
const ERROR_PIPE_NOT_CONNECTED: i32 = 233;

// Wire constants, from docs/PROTOCOL.md, "Services (RPC)".
const MAGIC: &[u8; 8] = b"IPCKSERV";
const KIND_CALL: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_ERROR: u8 = 3;
const ENC_POSTCARD: u8 = 0;
const ENC_JSON: u8 = 1;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
struct MyInfo {
    red: f64,
    blue: f64,
}

/// The request of `add` (the one of docs/PROTOCOL.md's example).
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct AddArgs {
    a: i64,
    b: i64,
}

// ---------------------------------------------------------------- helpers

/// Poll `cond` until it holds or `limit` passes; whether it did.
fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
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

/// Run `f` on a thread and wait for its result at most [`LIMIT`] (the
/// thread is left behind if it hangs; the test fails).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

fn new_ns() -> (tempfile::TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    (dir, ns)
}

/// A client of `name` in `ns` that waits for the server at most [`LIMIT`].
fn client_of(ns: &Namespace, name: &str) -> Client {
    Client::options()
        .namespace(ns)
        .timeout(LIMIT)
        .connect(name)
        .unwrap_or_else(|e| panic!("connect to '{name}': {e}"))
}

/// The server's `ipckit.describe`, bounded (`Client::describe` waits for
/// ever).
fn describe(c: &Client) -> Describe {
    c.call_timeout(DESCRIBE, &(), LIMIT).unwrap()
}

/// `a + b` through `c`, bounded.
fn add(c: &Client, a: i64, b: i64) -> i64 {
    c.call_timeout("add", &AddArgs { a, b }, LIMIT).unwrap()
}

/// Poll (bounded) until `n` handlers wait in the server's `block`.
fn wait_blocked(c: &Client, n: u64) {
    let mut got = 0;
    let reached = poll_until(LIMIT, || {
        got = c.call_timeout("blocked", &(), LIMIT).unwrap();
        got >= n
    });
    assert!(reached, "only {got} of {n} calls reached the handler");
    assert_eq!(got, n, "more handlers blocked than calls made");
}

/// The system name of endpoint `name` in `ns`: `\\.\pipe\ipckit.<H>.<name>`
/// with the `<H>` of the namespace's sections (docs/PROTOCOL.md, "Named
/// pipes", "Windows"; the service endpoint is the same pipe name).
fn pipe_name(ns: &Namespace, name: &str) -> String {
    let section = MappingOptions::new().namespace(ns).os_name(name).unwrap();
    let tail = section
        .strip_prefix(r"Local\")
        .unwrap_or_else(|| panic!("unexpected section name {section}"));
    format!(r"\\.\pipe\{tail}")
}

// -------------------------------------------------------------- children

/// Lines a child printed on stdout so far, and whether it ended.
#[derive(Default)]
struct Lines {
    seen: Mutex<(Vec<String>, bool)>,
    cv: Condvar,
}

/// A child process (this executable in a role), killed and reaped on drop.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Lines>,
    err: Arc<Mutex<String>>,
    what: String,
}

impl Kid {
    /// Start this executable in `role` with the extra environment `env`.
    fn start(role: &str, env: &[(&str, String)]) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_role",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, role)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
            err,
            what: format!("child '{role}'"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child printed so far, for failure messages.
    fn output(&self) -> String {
        let stdout = self.out.seen.lock().unwrap().0.join("\n");
        let stderr = self.err.lock().unwrap().clone();
        format!("stdout:\n{stdout}\nstderr:\n{stderr}")
    }

    /// Wait (bounded) for a stdout line holding a line of the child's,
    /// found by `find` (which returns it; the test harness may have
    /// printed `test child_role ... ` before it on the same line).
    fn line_where(&self, what: &str, find: impl Fn(&str) -> Option<&str>) -> String {
        let deadline = Instant::now() + LIMIT;
        let mut seen = self.out.seen.lock().unwrap();
        loop {
            if let Some(l) = seen.0.iter().find_map(|l| find(l)) {
                return l.to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if seen.1 || left.is_zero() {
                drop(seen);
                panic!(
                    "{}: no line {what} ({}):\n{}",
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

    /// Wait (bounded) for a line starting with `prefix` (from the prefix
    /// on).
    fn line(&self, prefix: &str) -> String {
        self.line_where(&format!("starting with {prefix:?}"), |l| {
            l.find(prefix).map(|i| &l[i..])
        })
    }

    /// Wait (bounded) for a line the server logged that contains `text`.
    fn logged(&self, text: &str) -> String {
        self.line_where(&format!("LOG containing {text:?}"), |l| {
            let log = &l[l.find("LOG ")?..];
            log.contains(text).then_some(log)
        })
    }

    /// Send `line` to the child's stdin.
    fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Wait (bounded) for the child to exit.
    fn wait_exit(&mut self) -> ExitStatus {
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
    fn kill(&mut self) {
        let _ = self.child.kill();
        self.wait_exit();
    }

    /// Close its stdin and wait (bounded) for it to exit; panics unless it
    /// succeeded.
    fn finish(mut self) {
        self.stdin = None;
        let status = self.wait_exit();
        assert!(
            status.success(),
            "{} failed ({status}):\n{}",
            self.what,
            self.output()
        );
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

/// A `server` child serving `name` in a fresh namespace.
struct Svc {
    kid: Kid,
    ns: Namespace,
    name: String,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Svc {
    /// Start the server child with the extra environment `env` (the
    /// limits [`server_role`] reads) and wait until it serves.
    fn start(name: &str, env: &[(&str, String)]) -> Svc {
        let (dir, ns) = new_ns();
        let mut all = vec![
            ("IPCKIT_TEST_NS", ns.dir().display().to_string()),
            ("IPCKIT_TEST_NAME", name.to_string()),
        ];
        all.extend(env.iter().cloned());
        let kid = Kid::start("server", &all);
        let ready = kid.line("READY ");
        let pid: u32 = ready["READY ".len()..].parse().unwrap();
        assert_eq!(pid, kid.pid(), "the server is the child itself");
        Svc {
            kid,
            ns,
            name: name.to_string(),
            pid,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        client_of(&self.ns, &self.name)
    }

    /// A client child in `role` (`load`, `blocker`) of this server, with the
    /// extra environment `env`.
    fn client_process(&self, role: &str, env: &[(&str, String)]) -> Kid {
        let mut all = vec![
            ("IPCKIT_TEST_NS", self.ns.dir().display().to_string()),
            ("IPCKIT_TEST_NAME", self.name.clone()),
        ];
        all.extend(env.iter().cloned());
        Kid::start(role, &all)
    }

    /// Open the server's pipe by hand and read its hello.
    fn raw(&self) -> (File, [u8; 16]) {
        raw_connect(&pipe_name(&self.ns, &self.name))
    }
}

/// Open the pipe `path` by hand (`CreateFileW` through `std::fs`), retrying
/// (bounded) while every instance is busy.
fn raw_open(path: &str) -> File {
    let mut last = None;
    let opened = poll_until(LIMIT, || {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => {
                last = Some(Ok(f));
                true
            }
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => false,
            Err(e) => {
                last = Some(Err(e));
                true
            }
        }
    });
    assert!(opened, "{path}: every instance stayed busy for {LIMIT:?}");
    last.unwrap()
        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"))
}

/// Read exactly `n` bytes from `f` (bounded); `None` if the server closed
/// the pipe first.
fn read_n(f: File, n: usize) -> (File, Option<Vec<u8>>) {
    bounded("a read from the server's pipe", move || {
        let mut f = f;
        let mut buf = vec![0u8; n];
        let got = match f.read_exact(&mut buf) {
            Ok(()) => Some(buf),
            Err(e) if closed(&e) || e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => panic!("reading the server's pipe: {e}"),
        };
        (f, got)
    })
}

/// Whether `e` says the pipe's other end is closed.
fn closed(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
        || matches!(
            e.raw_os_error(),
            Some(ERROR_BROKEN_PIPE | ERROR_NO_DATA | ERROR_PIPE_NOT_CONNECTED)
        )
}

/// Open the pipe `path` by hand and read the server's 16-byte hello.
fn raw_connect(path: &str) -> (File, [u8; 16]) {
    let (f, hello) = read_n(raw_open(path), 16);
    let hello: [u8; 16] = hello
        .expect("the server closed the pipe before its hello")
        .try_into()
        .unwrap();
    assert_eq!(&hello[..8], MAGIC, "{hello:02x?}");
    assert_eq!(hello[8], 1, "version: {hello:02x?}");
    (f, hello)
}

/// Read from `f` until the server closes the pipe (bounded); panics if it
/// does not. Bytes that arrive first are returned.
fn until_closed(f: File, what: &str) -> Vec<u8> {
    let what = what.to_string();
    bounded(
        &format!("{what}: waiting for the server to close"),
        move || {
            let mut f = f;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if closed(&e) => return got,
                    Err(e) => panic!("{what}: reading the server's pipe: {e}"),
                }
            }
        },
    )
}

/// Write `bytes` to the server's pipe; an error only if the server had
/// already closed it (it may hang up in the middle of a bad frame).
fn write_or_closed(f: &mut File, bytes: &[u8]) {
    if let Err(e) = f.write_all(bytes) {
        assert!(closed(&e), "writing the server's pipe: {e}");
    }
}

/// A frame header (docs/PROTOCOL.md, "Services (RPC)", step 2).
fn header(kind: u8, enc: u8, method_len: u16, id: u64, body_len: u64) -> Vec<u8> {
    let mut h = vec![kind, enc];
    h.extend_from_slice(&method_len.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&body_len.to_le_bytes());
    h
}

/// A whole call frame.
fn call_frame(enc: u8, method: &str, id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = header(KIND_CALL, enc, method.len() as u16, id, body.len() as u64);
    f.extend_from_slice(method.as_bytes());
    f.extend_from_slice(body);
    f
}

/// Read one reply or error frame: (header, body); panics if the server
/// closes the pipe instead.
fn read_frame(f: File) -> (File, [u8; 24], Vec<u8>) {
    let (f, h) = read_n(f, 24);
    let h: [u8; 24] = h
        .expect("the server closed the pipe instead of answering")
        .try_into()
        .unwrap();
    assert_eq!(&h[2..8], &[0; 6], "method_len and reserved: {h:02x?}");
    let len = u64::from_le_bytes(h[16..24].try_into().unwrap());
    assert!(len < 1 << 20, "a reply of {len} bytes? {h:02x?}");
    let (f, body) = read_n(f, len as usize);
    (
        f,
        h,
        body.expect("the server closed the pipe inside a reply"),
    )
}

fn frame_id(h: &[u8; 24]) -> u64 {
    u64::from_le_bytes(h[8..16].try_into().unwrap())
}

// ------------------------------------------------------------------ tests

#[test]
fn typed_calls_round_trip_across_processes_from_several_clients() {
    let srv = Svc::start("svc", &[]);
    let c = srv.client();
    // Served by the child, not by this process.
    assert_eq!(
        c.call_timeout::<_, u32>("pid", &(), LIMIT).unwrap(),
        srv.pid
    );
    assert_eq!(add(&c, 2, 3), 5);
    let out: MyInfo = c
        .call_timeout(
            "compare",
            &MyInfo {
                red: 3333.0,
                blue: 20.01,
            },
            LIMIT,
        )
        .unwrap();
    assert_eq!(
        out,
        MyInfo {
            red: 2.0,
            blue: 1.0
        }
    );
    // Larger than the pipe's buffers: read in many steps, both ways.
    let big: String = (0..300_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let back: String = c.call_timeout("echo", &big, LIMIT).unwrap();
    assert_eq!(back, big);
    // JSON bodies, as the CLI and other languages send them.
    let v = c
        .call_json("add", json!({"a": 5, "b": 6}), Some(LIMIT))
        .unwrap();
    assert_eq!(v, json!(11));
    let j = Client::options()
        .namespace(&srv.ns)
        .timeout(LIMIT)
        .encoding(Encoding::Json)
        .connect("svc")
        .unwrap();
    assert_eq!(add(&j, 40, 2), 42);

    // Two client processes and four clients of this process at once, one
    // of them shared by two threads; every answer checked.
    let loads: Vec<Kid> = (0..2u64)
        .map(|k| {
            srv.client_process(
                "load",
                &[
                    ("IPCKIT_TEST_CLIENT", k.to_string()),
                    ("IPCKIT_TEST_CALLS", "300".into()),
                ],
            )
        })
        .collect();
    let shared = Arc::new(srv.client());
    let threads: Vec<_> = (0..5i64)
        .map(|t| {
            let c = if t >= 3 {
                shared.clone()
            } else {
                Arc::new(srv.client())
            };
            std::thread::spawn(move || {
                for i in 0..200i64 {
                    let a = t * 1_000_000 + i;
                    assert_eq!(add(&c, a, i * 7), a + i * 7, "thread {t} call {i}");
                }
            })
        })
        .collect();
    for (k, h) in threads.into_iter().enumerate() {
        bounded("a calling thread", move || h.join())
            .unwrap_or_else(|_| panic!("calling thread {k} failed"));
    }
    for (k, kid) in loads.into_iter().enumerate() {
        let line = kid.line("RESULT ");
        assert_eq!(line, format!("RESULT {k} 300"), "{}", kid.output());
        kid.finish();
    }
    let d = describe(&c);
    assert_eq!(d.name, "svc");
    assert_eq!(d.pid, srv.pid);
    // Every call reached the server exactly once: 6 above, 5 x 200 from
    // the threads, 2 x 300 from the processes, and this describe.
    assert_eq!(d.calls, 6 + 1000 + 600 + 1, "{d:?}");
    assert_eq!(d.errors, 0, "{d:?}");
}

#[test]
fn remote_errors_have_the_linux_kinds_and_the_server_goes_on() {
    let srv = Svc::start("svc", &[]);
    let c = srv.client();
    let e = c
        .call_timeout::<_, i64>("multiply", &AddArgs { a: 1, b: 2 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert_eq!(e.remote_code(), Some(CODE_UNKNOWN_METHOD), "{e}");
    assert!(e.to_string().contains("unknown method 'multiply'"), "{e}");

    let e = c
        .call_timeout::<_, i64>("add", &AddArgs { a: i64::MAX, b: 1 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert_eq!(e.remote_code(), Some(CODE_HANDLER), "{e}");
    assert!(e.to_string().contains("overflows"), "{e}");

    let e = c
        .call_timeout::<_, ()>("panic", &"boom 17".to_string(), LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert_eq!(e.remote_code(), Some(CODE_INTERNAL), "{e}");
    assert!(e.to_string().contains("panicked: boom 17"), "{e}");

    // The request is not an AddArgs: the server says so.
    let e = c
        .call_json("add", json!({"a": "one"}), Some(LIMIT))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert_eq!(e.remote_code(), Some(CODE_BAD_REQUEST), "{e}");
    assert!(e.to_string().contains("AddArgs"), "{e}");

    // The reply (an i64) is not a String: Decode, on this side.
    let e = c
        .call_timeout::<_, String>("add", &AddArgs { a: 1, b: 2 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("'add'"), "{e}");

    // Same connection, same server process: still serving.
    assert_eq!(add(&c, 1, 1), 2);
    assert_eq!(add(&srv.client(), 2, 2), 4);
    let d = describe(&c);
    assert_eq!(d.pid, srv.pid);
    // Unknown method, handler error, panic, bad request.
    assert_eq!(d.errors, 4, "{d:?}");
}

#[test]
fn server_killed_mid_call_releases_every_caller_with_peer_gone() {
    let mut srv = Svc::start("svc", &[]);
    let shared = Arc::new(srv.client());
    let (tx, rx) = mpsc::channel();
    // Three callers share one connection, two have their own.
    for i in 0..5 {
        let c = if i < 3 {
            shared.clone()
        } else {
            Arc::new(srv.client())
        };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(c.call_timeout::<_, u64>("block", &(), LIMIT * 2));
        });
    }
    drop(tx);
    let probe = srv.client();
    wait_blocked(&probe, 5);
    srv.kid.kill();
    for _ in 0..5 {
        // Far less than the calls' own timeout: nobody waits for it.
        let r = rx
            .recv_timeout(LIMIT)
            .expect("a caller was not released after the server died");
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    }
    // Later calls fail at once too, on every connection.
    let e = shared
        .call_timeout::<_, i64>("add", &AddArgs { a: 1, b: 1 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    let e = probe
        .call_timeout::<_, i64>("add", &AddArgs { a: 1, b: 1 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    // The name went with the process: nobody serves it, and it is free.
    let ns = srv.ns.clone();
    let e = bounded("connecting to a dead server", move || {
        Client::options().namespace(&ns).connect("svc").map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let again = Server::builder("svc")
        .namespace(&srv.ns)
        .handler("add", |p: AddArgs| Ok::<_, String>(p.a + p.b))
        .bind()
        .unwrap();
    assert_eq!(add(&srv.client(), 20, 22), 42);
    drop(again);
}

#[test]
fn a_second_server_is_already_exists_and_an_absent_name_is_not_found() {
    let srv = Svc::start("svc", &[]);
    let e = Server::builder("svc")
        .namespace(&srv.ns)
        .handler("add", |p: AddArgs| Ok::<_, String>(p.a + p.b))
        .bind()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("svc"), "names the service: {e}");
    // The first server is undisturbed.
    let c = srv.client();
    assert_eq!(
        c.call_timeout::<_, u32>("pid", &(), LIMIT).unwrap(),
        srv.pid
    );

    // One name, one endpoint: a named pipe cannot take a service's name,
    // nor a service a pipe's.
    #[cfg(feature = "pipe")]
    {
        let e = ipckit::pipe::ServerOptions::new()
            .namespace(&srv.ns)
            .create("svc")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let _pipe = ipckit::pipe::ServerOptions::new()
            .namespace(&srv.ns)
            .create("p")
            .unwrap();
        let e = Server::builder("p").namespace(&srv.ns).bind().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert_eq!(add(&c, 1, 2), 3);
    }

    // Nobody serves "absent": NotFound at once by default, Timeout after
    // waiting for it; both bounded.
    let ns = srv.ns.clone();
    let e = bounded("connect without waiting", move || {
        Client::options()
            .namespace(&ns)
            .connect("absent")
            .map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("absent"), "names the service: {e}");
    let ns = srv.ns.clone();
    let e = bounded("connect waiting 300 ms", move || {
        Client::options()
            .namespace(&ns)
            .timeout(Duration::from_millis(300))
            .connect("absent")
            .map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // The same name in another namespace is another endpoint.
    let (_d, other) = new_ns();
    let e = bounded("connect in another namespace", move || {
        Client::options()
            .namespace(&other)
            .connect("svc")
            .map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn an_oversized_request_is_too_large_and_the_server_serves_on() {
    let srv = Svc::start("small", &[("IPCKIT_TEST_MAX_MSG", "4096".into())]);
    let c = srv.client();
    let big = "x".repeat(5000);
    let e = c
        .call_timeout::<_, String>("echo", &big, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(e.needed().is_some_and(|n| n > 4096), "{e} {:?}", e.needed());
    // Refused before anything was sent: the connection goes on.
    let small = "y".repeat(1000);
    assert_eq!(
        c.call_timeout::<_, String>("echo", &small, LIMIT).unwrap(),
        small
    );

    // A hand-written client announcing a body over the limit is hung up on
    // without the body being read; the others are served.
    let (mut raw, hello) = srv.raw();
    assert_eq!(u32::from_le_bytes(hello[12..16].try_into().unwrap()), 4096);
    let mut f = header(KIND_CALL, ENC_JSON, 4, 1, 1 << 20);
    f.extend_from_slice(b"echo");
    write_or_closed(&mut raw, &f);
    let got = until_closed(raw, "a body over the limit");
    assert!(got.is_empty(), "the server answered {got:02x?}");
    srv.kid.logged("over the limit of 4096");
    assert_eq!(
        c.call_timeout::<_, String>("echo", &small, LIMIT).unwrap(),
        small
    );
    assert_eq!(add(&srv.client(), 3, 4), 7);

    // A reply over the client's own limit ends that client's connection
    // (PeerGone), not the server.
    let tight = Client::options()
        .namespace(&srv.ns)
        .timeout(LIMIT)
        .max_message_size(100)
        .connect("small")
        .unwrap();
    let e = tight
        .call_timeout::<_, String>("echo", &small, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
    assert_eq!(add(&c, 5, 6), 11);
}

#[test]
fn garbage_on_the_raw_pipe_drops_only_that_connection() {
    let srv = Svc::start("svc", &[]);
    let good = srv.client();
    assert_eq!(add(&good, 1, 1), 2);

    // An unknown kind, in one write (the server may hang up right after
    // the header).
    let (mut bad, _) = srv.raw();
    write_or_closed(
        &mut bad,
        &[header(9, 0, 4, 1, 0), b"echo".to_vec()].concat(),
    );
    assert!(until_closed(bad, "unknown kind").is_empty());
    srv.kid.logged("malformed frame");

    // Non-zero reserved bytes.
    let (mut bad, _) = srv.raw();
    let mut h = header(KIND_CALL, ENC_JSON, 4, 1, 2);
    h[6] = 0xff;
    write_or_closed(&mut bad, &h);
    assert!(until_closed(bad, "reserved bytes").is_empty());

    // Plain noise: 4 KiB of pseudo-random bytes.
    let (mut bad, _) = srv.raw();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 | 0x80
        })
        .collect();
    write_or_closed(&mut bad, &noise);
    assert!(until_closed(bad, "noise").is_empty());

    // A bad encoding byte.
    let (mut bad, _) = srv.raw();
    write_or_closed(&mut bad, &call_frame(7, "add", 3, b"{}"));
    assert!(until_closed(bad, "encoding 7").is_empty());

    // Truncated: a header announcing 100 bytes, 10 sent, then the client
    // closes its end.
    let (mut trunc, _) = srv.raw();
    let mut f = header(KIND_CALL, ENC_JSON, 4, 7, 100);
    f.extend_from_slice(b"echo");
    f.extend_from_slice(&[b' '; 10]);
    trunc.write_all(&f).unwrap();
    drop(trunc);
    srv.kid.logged("truncated frame");

    // The well-behaved client, connected all along, is still served, and so
    // is a new one.
    assert_eq!(add(&good, 2, 2), 4);
    let fresh = srv.client();
    assert_eq!(add(&fresh, 3, 3), 6);
    // Every bad connection is gone from the count (the server may finish
    // forgetting one just after closing it).
    let mut last = None;
    assert!(
        poll_until(LIMIT, || {
            let d = describe(&fresh);
            let done = d.connections == 2;
            last = Some(d);
            done
        }),
        "{last:?}"
    );
    let d = describe(&fresh);
    assert!(d.limits.dropped_malformed >= 4, "{:?}", d.limits);
}

#[test]
fn a_hand_written_client_gets_the_documented_frames() {
    let srv = Svc::start("svc", &[]);
    let (raw, hello) = srv.raw();
    assert_eq!(hello[9], 0, "status ok: {hello:02x?}");
    assert_eq!(
        hello[10], 0,
        "no shared-memory lanes on Windows (feature bit 0): {hello:02x?}"
    );
    assert_eq!(hello[11], 0, "{hello:02x?}");
    assert_eq!(
        u32::from_le_bytes(hello[12..16].try_into().unwrap()),
        64 << 20,
        "max_message_size: {hello:02x?}"
    );

    // docs/PROTOCOL.md's example, byte for byte: `add` with id 7 in JSON,
    // written in pieces (a byte stream: any split is fine).
    let mut request = vec![1, 1, 3, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
    request.extend_from_slice(&[0x0d, 0, 0, 0, 0, 0, 0, 0]);
    request.extend_from_slice(b"add");
    request.extend_from_slice(br#"{"a":5,"b":6}"#);
    let mut raw = raw;
    for piece in [&request[..5], &request[5..26], &request[26..]] {
        raw.write_all(piece).unwrap();
    }
    let (raw, h, body) = read_frame(raw);
    let mut want = vec![2, 1, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(h.to_vec(), want);
    assert_eq!(body, b"11");

    // The same call in postcard: AddArgs { a: 5, b: 6 } is two zigzag
    // varints (0x0a 0x0c); the reply 11 is 0x16.
    let mut raw = raw;
    raw.write_all(&call_frame(ENC_POSTCARD, "add", 8, &[0x0a, 0x0c]))
        .unwrap();
    let (raw, h, body) = read_frame(raw);
    assert_eq!((h[0], h[1], frame_id(&h)), (KIND_REPLY, ENC_POSTCARD, 8));
    assert_eq!(body, [0x16]);

    // Pipelined calls in one write; the replies matched by id.
    let mut raw = raw;
    let two = [
        call_frame(ENC_JSON, "echo", 20, br#""hi""#),
        call_frame(ENC_JSON, "pid", 21, b"null"),
    ]
    .concat();
    raw.write_all(&two).unwrap();
    let (raw, h1, b1) = read_frame(raw);
    let (raw, h2, b2) = read_frame(raw);
    let mut got = [(frame_id(&h1), h1[0], b1), (frame_id(&h2), h2[0], b2)];
    got.sort();
    assert_eq!(got[0], (20, KIND_REPLY, br#""hi""#.to_vec()));
    assert_eq!(got[1], (21, KIND_REPLY, srv.pid.to_string().into_bytes()));

    // An error frame: kind 3, always JSON {"code", "message"}.
    let mut raw = raw;
    raw.write_all(&call_frame(ENC_POSTCARD, "nope", 30, &[]))
        .unwrap();
    let (raw, h, body) = read_frame(raw);
    assert_eq!((h[0], h[1], frame_id(&h)), (KIND_ERROR, ENC_JSON, 30));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], json!(CODE_UNKNOWN_METHOD), "{v}");
    assert!(v["message"].as_str().unwrap().contains("'nope'"), "{v}");

    // The built-in describe, in JSON.
    let mut raw = raw;
    raw.write_all(&call_frame(ENC_JSON, DESCRIBE, 31, b"{}"))
        .unwrap();
    let (raw, h, body) = read_frame(raw);
    assert_eq!((h[0], frame_id(&h)), (KIND_REPLY, 31));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["name"], json!("svc"), "{v}");
    assert_eq!(v["pid"], json!(srv.pid), "{v}");
    assert_eq!(v["lanes"], json!(0), "{v}");
    assert!(v["methods"].to_string().contains("\"add\""), "{v}");

    // Closing our end is the end of the connection (the server forgets it).
    drop(raw);
    let c = srv.client();
    assert!(
        poll_until(LIMIT, || describe(&c).connections == 1),
        "{:?}",
        describe(&c)
    );
}

#[test]
fn transport_is_the_pipe_flavor_and_shared_memory_is_refused() {
    let srv = Svc::start("svc", &[]);
    let c = srv.client();
    assert_eq!(c.transport(), Transport::Socket);
    let s = Client::options()
        .namespace(&srv.ns)
        .timeout(LIMIT)
        .transport(Transport::Socket)
        .connect("svc")
        .unwrap();
    assert_eq!(s.transport(), Transport::Socket);
    assert_eq!(add(&s, 2, 2), 4);
    let ns = srv.ns.clone();
    let e = bounded("connect asking for shared memory", move || {
        Client::options()
            .namespace(&ns)
            .timeout(LIMIT)
            .transport(Transport::SharedMemory)
            .connect("svc")
            .map(|c| c.transport())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let text = e.to_string().to_lowercase();
    assert!(text.contains("shared"), "says what is unsupported: {e}");
    // No lane was opened anywhere; the server serves on.
    let d = describe(&c);
    assert_eq!(d.lanes, 0, "{d:?}");
    assert_eq!(add(&c, 1, 2), 3);
}

#[test]
fn system_names_reach_the_service() {
    let srv = Svc::start("a/b", &[]);
    let os = pipe_name(&srv.ns, "a/b");
    assert!(os.ends_with(".a:b"), "{os}");
    // The pipe mechanism's name for it: one name, one pipe.
    #[cfg(feature = "pipe")]
    assert_eq!(
        ipckit::pipe::ServerOptions::new()
            .namespace(&srv.ns)
            .os_name("a/b")
            .unwrap(),
        os
    );
    // The namespaced server by its system name (no namespace needed).
    let c = Client::options().timeout(LIMIT).connect(&os).unwrap();
    assert_eq!(
        c.call_timeout::<_, u32>("pid", &(), LIMIT).unwrap(),
        srv.pid
    );
    // A server created under a system name is used as is.
    let raw = format!(r"\\.\pipe\ipckit-test-{}-svc", std::process::id());
    let _s = Server::builder(&raw)
        .handler("add", |p: AddArgs| Ok::<_, String>(p.a + p.b))
        .bind()
        .unwrap();
    let c = Client::options().timeout(LIMIT).connect(&raw).unwrap();
    assert_eq!(add(&c, 5, 5), 10);
}

#[test]
fn max_connections_refuses_with_busy() {
    let srv = Svc::start("svc", &[("IPCKIT_TEST_MAX_CONN", "2".into())]);
    let a = srv.client();
    let b = srv.client();
    assert_eq!(add(&a, 1, 1), 2);
    assert_eq!(add(&b, 1, 2), 3);
    // A third, here: refused with Busy (not waiting), or Timeout after
    // waiting in vain (it stayed busy), as on Linux.
    let ns = srv.ns.clone();
    let e = bounded("a third connect", move || {
        Client::options().namespace(&ns).connect("svc").map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    let ns = srv.ns.clone();
    let e = bounded("a third connect, waiting 300 ms", move || {
        Client::options()
            .namespace(&ns)
            .timeout(Duration::from_millis(300))
            .connect("svc")
            .map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // From another process too.
    let kid = srv.client_process(
        "load",
        &[
            ("IPCKIT_TEST_CLIENT", "9".into()),
            ("IPCKIT_TEST_CALLS", "1".into()),
            ("IPCKIT_TEST_CONNECT_MS", "0".into()),
        ],
    );
    let line = kid.line("CONNECT ");
    assert!(line.starts_with("CONNECT busy"), "{line}");
    kid.finish();
    // By hand: the hello says busy (status 1), then the server hangs up.
    let (raw, hello) = srv.raw();
    assert_eq!(hello[9], 1, "status busy: {hello:02x?}");
    assert!(until_closed(raw, "a refused connection").is_empty());

    let d = describe(&a);
    assert_eq!(d.connections, 2, "{d:?}");
    assert!(d.limits.refused_total >= 3, "{:?}", d.limits);
    // The held clients are served; one gone, a newcomer gets in.
    assert_eq!(add(&b, 2, 2), 4);
    drop(b);
    let mut last = None;
    assert!(
        poll_until(LIMIT, || {
            let r = Client::options().namespace(&srv.ns).connect("svc");
            let ok = r.is_ok();
            last = Some(r.map(|_| ()));
            ok
        }),
        "no room after a client left: {last:?}"
    );
    assert_eq!(add(&a, 3, 3), 6);
}

#[test]
fn a_killed_client_frees_its_connection_and_others_are_served() {
    let mut srv = Svc::start("svc", &[]);
    let probe = srv.client();
    let mut kid = srv.client_process("blocker", &[]);
    kid.line("CALLING ");
    wait_blocked(&probe, 1);
    assert_eq!(describe(&probe).connections, 2);
    kid.kill();
    // Its call is still running in the server: others are served meanwhile.
    assert_eq!(add(&probe, 5, 5), 10);
    assert_eq!(add(&srv.client(), 6, 6), 12);
    // Its call finishes into the void, and its connection goes.
    srv.kid.tell("release");
    let mut last = None;
    assert!(
        poll_until(LIMIT, || {
            let d = describe(&probe);
            let done = d.connections == 1 && d.in_flight == 1;
            last = Some(d);
            done
        }),
        "the killed client's connection stayed: {last:?}"
    );
    assert_eq!(add(&probe, 7, 7), 14);
}

#[test]
fn calls_in_flight_complete_independently_and_a_timed_out_call_keeps_the_connection() {
    let mut srv = Svc::start("svc", &[]);
    let c = Arc::new(srv.client());
    let blocked = {
        let c = c.clone();
        std::thread::spawn(move || c.call_timeout::<_, u64>("block", &(), LIMIT))
    };
    wait_blocked(&c, 1);
    // The blocked call is still running, yet calls on the same connection
    // are answered.
    assert_eq!(add(&c, 2, 3), 5);
    assert!(!blocked.is_finished());
    // A call that gives up is a Timeout; the connection goes on, and the
    // late reply is not taken for another call's.
    let e = c
        .call_timeout::<_, u64>("block", &(), Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("'block'"), "{e}");
    wait_blocked(&c, 2);
    srv.kid.tell("release");
    assert_eq!(
        bounded("the blocked call", move || blocked.join().unwrap()).unwrap(),
        1
    );
    assert_eq!(add(&c, 40, 2), 42);
    // Both handlers return (the abandoned one's reply is dropped).
    let mut last = None;
    assert!(
        poll_until(LIMIT, || {
            let d = describe(&c);
            let done = d.in_flight == 1;
            last = Some(d);
            done
        }),
        "calls still in flight: {last:?}"
    );
    assert_eq!(add(&c, 1, 1), 2);
}

#[test]
fn a_connection_over_max_in_flight_is_answered_busy() {
    let mut srv = Svc::start("svc", &[("IPCKIT_TEST_IN_FLIGHT", "2".into())]);
    let watch = srv.client();
    // A client with two calls running: a third is Busy.
    let a = Arc::new(srv.client());
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || a.call_timeout::<_, u64>("block", &(), LIMIT))
        })
        .collect();
    wait_blocked(&watch, 2);
    let e = a
        .call_timeout::<_, i64>("add", &AddArgs { a: 1, b: 2 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    // By hand: five calls in one write; two run, three are answered at
    // once with error -32001.
    let (mut raw, _) = srv.raw();
    let five: Vec<u8> = (1..=5u64)
        .flat_map(|id| call_frame(ENC_JSON, "block", id, b"null"))
        .collect();
    raw.write_all(&five).unwrap();
    let mut answered = Vec::new();
    for _ in 0..3 {
        let (r, h, body) = read_frame(raw);
        raw = r;
        assert_eq!(h[0], KIND_ERROR, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], json!(CODE_BUSY), "{v}");
        answered.push(frame_id(&h));
    }
    // Other connections are not limited by these.
    assert_eq!(add(&watch, 1, 2), 3);
    wait_blocked(&watch, 4);
    srv.kid.tell("release");
    for _ in 0..2 {
        let (r, h, body) = read_frame(raw);
        raw = r;
        assert_eq!((h[0], body.as_slice()), (KIND_REPLY, &b"1"[..]));
        answered.push(frame_id(&h));
    }
    answered.sort();
    assert_eq!(answered, [1, 2, 3, 4, 5]);
    for h in calls {
        assert_eq!(
            bounded("a blocked call", move || h.join().unwrap()).unwrap(),
            1
        );
    }
    assert_eq!(add(&a, 1, 2), 3);
    let d = describe(&watch);
    assert!(d.limits.busy >= 4, "{:?}", d.limits);
    drop(raw);
}

#[test]
fn a_client_stalled_inside_a_header_is_dropped() {
    let srv = Svc::start("svc", &[("IPCKIT_TEST_STALL_MS", "300".into())]);
    let good = srv.client();
    let (mut raw, _) = srv.raw();
    raw.write_all(&call_frame(ENC_JSON, "add", 1, b"[1,2]")[..3])
        .unwrap();
    assert_eq!(add(&good, 2, 3), 5);
    assert!(until_closed(raw, "a stalled header").is_empty());
    let d = describe(&good);
    assert!(d.limits.dropped_stalled >= 1, "{:?}", d.limits);
    assert_eq!(add(&srv.client(), 4, 5), 9);
}

#[test]
fn graceful_shutdown_answers_calls_in_flight_then_frees_the_name() {
    let (_dir, ns) = new_ns();
    let server = Arc::new(
        Server::builder("g")
            .namespace(&ns)
            .handler("nap", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                Ok::<_, String>(ms)
            })
            .bind()
            .unwrap(),
    );
    // The client in another process would do the same; here the caller is
    // a thread, the server's side is what is checked.
    let c = Arc::new(client_of(&ns, "g"));
    let call = {
        let c = c.clone();
        std::thread::spawn(move || c.call_timeout::<_, u64>("nap", &600u64, LIMIT))
    };
    assert!(poll_until(LIMIT, || server.describe().in_flight == 1));
    let s = server.clone();
    assert!(bounded("shutdown", move || s.shutdown_timeout(LIMIT)));
    // The call in flight was answered before the connection closed.
    assert_eq!(
        bounded("the call", move || call.join().unwrap()).unwrap(),
        600
    );
    let ns2 = ns.clone();
    let e = bounded("connect after shutdown", move || {
        Client::options().namespace(&ns2).connect("g").map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let mut last = None;
    assert!(
        poll_until(LIMIT, || {
            let r = c.call_timeout::<_, u64>("nap", &0u64, LIMIT);
            let done = r.as_ref().is_err_and(|e| e.kind() == ErrorKind::PeerGone);
            last = Some(r);
            done
        }),
        "{last:?}"
    );
    // The name is free again.
    let again = Server::builder("g").namespace(&ns).bind().unwrap();
    drop(again);
}

#[test]
fn a_hundred_connections_are_served_at_once() {
    let srv = Svc::start("svc", &[]);
    let clients: Arc<Vec<Client>> = Arc::new((0..100).map(|_| srv.client()).collect());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cs = clients.clone();
            std::thread::spawn(move || {
                for (i, c) in cs.iter().enumerate().skip(t).step_by(4) {
                    assert_eq!(add(c, i as i64, 1), i as i64 + 1);
                }
            })
        })
        .collect();
    for h in threads {
        bounded("a calling thread", move || h.join()).expect("a calling thread failed");
    }
    let d = describe(&clients[0]);
    assert_eq!(d.connections, 100, "{d:?}");
    assert_eq!(d.calls, 101, "{d:?}");
}

/// A fake server (a plain byte-mode pipe, `fake-server` child) that
/// misbehaves as `mode` says; a client of it fails as on Linux, bounded.
#[cfg(feature = "pipe")]
fn fake_server(mode: &str) -> (Kid, tempfile::TempDir, Namespace) {
    let (dir, ns) = new_ns();
    let kid = Kid::start(
        "fake-server",
        &[
            ("IPCKIT_TEST_NS", ns.dir().display().to_string()),
            ("IPCKIT_TEST_NAME", "fake".into()),
            ("IPCKIT_TEST_FAKE", mode.into()),
        ],
    );
    kid.line("READY ");
    (kid, dir, ns)
}

#[cfg(feature = "pipe")]
#[test]
fn a_hostile_fake_server_fails_the_client_without_a_hang() {
    // Half a hello, then silence: Timeout, not a hang.
    let (_kid, _d, ns) = fake_server("half-hello");
    let e = bounded("connect to a half hello", move || {
        Client::options()
            .namespace(&ns)
            .timeout(Duration::from_secs(1))
            .connect("fake")
            .map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.name(), Some("fake"), "{e}");

    // Not an ipckit service: Decode.
    let (_kid, _d, ns) = fake_server("bad-magic");
    let e = bounded("connect to a wrong hello", move || {
        Client::options()
            .namespace(&ns)
            .timeout(LIMIT)
            .connect("fake")
            .map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");

    // A good hello, then a malformed reply: the call fails at once (not
    // after its timeout).
    let (_kid, _d, ns) = fake_server("bad-reply");
    let c = client_of(&ns, "fake");
    let e = c
        .call_timeout::<_, i64>("add", &AddArgs { a: 1, b: 2 }, LIMIT)
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::PeerGone | ErrorKind::Decode),
        "{e}"
    );
    let e = c
        .call_timeout::<_, i64>("add", &AddArgs { a: 1, b: 2 }, LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "the connection is over: {e}");
}

// ------------------------------------------------------------ the roles

/// Runs only when re-run by a test above as a child ([`CHILD_ENV`] names
/// the role); a plain `--ignored` run finds no role and returns.
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    match role.as_str() {
        "server" => server_role(),
        "load" => load_role(),
        "blocker" => blocker_role(),
        #[cfg(feature = "pipe")]
        "fake-server" => fake_server_role(),
        other => panic!("unknown child role {other}"),
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

fn env_num(key: &str) -> Option<usize> {
    std::env::var(key).ok().map(|v| v.parse().unwrap())
}

fn role_ns() -> Namespace {
    Namespace::at(env("IPCKIT_TEST_NS")).unwrap()
}

/// Print one line on stdout at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// A gate the `block` method waits on until the parent says "release"
/// (at most [`LIMIT`]).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    blocked: AtomicU64,
}

impl Gate {
    fn wait(&self) {
        let until = Instant::now() + LIMIT;
        let mut open = self.open.lock().unwrap();
        while !*open {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            open = self.cv.wait_timeout(open, left).unwrap().0;
        }
    }
}

/// Role `server`: serve `IPCKIT_TEST_NAME` in `IPCKIT_TEST_NS` (limits:
/// `IPCKIT_TEST_MAX_CONN`, `IPCKIT_TEST_IN_FLIGHT`, `IPCKIT_TEST_STALL_MS`,
/// `IPCKIT_TEST_MAX_MSG`) with `add`, `compare`,
/// `echo`, `pid`, `panic`, `block` (waits for "release" on stdin) and
/// `blocked`; log lines go to stdout as `LOG …`. Exits when stdin closes.
fn server_role() {
    let name = env("IPCKIT_TEST_NAME");
    let mut limits = Limits::new();
    if let Some(n) = env_num("IPCKIT_TEST_MAX_CONN") {
        limits = limits.max_connections(n);
    }
    if let Some(n) = env_num("IPCKIT_TEST_IN_FLIGHT") {
        limits = limits.max_in_flight(n);
    }
    if let Some(ms) = env_num("IPCKIT_TEST_STALL_MS") {
        limits = limits.stall_timeout(Duration::from_millis(ms as u64));
    }
    let gate = Arc::new(Gate::default());
    let (g1, g2) = (gate.clone(), gate.clone());
    let mut b = Server::builder(&name)
        .namespace(&role_ns())
        .limits(limits)
        .log(|line| say(&format!("LOG {line}")))
        .handler("add", |p: AddArgs| {
            p.a.checked_add(p.b)
                .ok_or_else(|| format!("{} + {} overflows a 64-bit integer", p.a, p.b))
        })
        .handler("compare", |mut m: MyInfo| {
            m.red = 2.0;
            m.blue = 1.0;
            Ok::<_, RemoteError>(m)
        })
        .handler("echo", |s: String| Ok::<_, String>(s))
        .handler("pid", |(): ()| Ok::<_, String>(std::process::id()))
        .handler("panic", |m: String| -> Result<(), String> { panic!("{m}") })
        .handler("block", move |(): ()| {
            g1.blocked.fetch_add(1, Ordering::SeqCst);
            g1.wait();
            g1.blocked.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>(1u64)
        })
        .handler("blocked", move |(): ()| {
            Ok::<_, String>(g2.blocked.load(Ordering::SeqCst))
        });
    if let Some(n) = env_num("IPCKIT_TEST_MAX_MSG") {
        b = b.max_message_size(n);
    }
    let server = b.bind().unwrap();
    say(&format!("READY {}", std::process::id()));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "release" {
            *gate.open.lock().unwrap() = true;
            gate.cv.notify_all();
        }
    }
    drop(server);
}

/// Role `load`: connect to `IPCKIT_TEST_NAME`, waiting
/// `IPCKIT_TEST_CONNECT_MS` (default [`LIMIT`]) (`CONNECT ok`, or `CONNECT
/// <kind> <error>` and exit), make `IPCKIT_TEST_CALLS` calls of `add`
/// unique to client `IPCKIT_TEST_CLIENT` on two threads sharing the
/// connection, check each answer, print `RESULT <client> <answered>`.
fn load_role() {
    let k = env_num("IPCKIT_TEST_CLIENT").unwrap() as i64;
    let calls = env_num("IPCKIT_TEST_CALLS").unwrap() as i64;
    let wait =
        env_num("IPCKIT_TEST_CONNECT_MS").map_or(LIMIT, |ms| Duration::from_millis(ms as u64));
    let c = match Client::options()
        .namespace(&role_ns())
        .timeout(wait)
        .connect(&env("IPCKIT_TEST_NAME"))
    {
        Ok(c) => Arc::new(c),
        Err(e) => {
            say(&format!("CONNECT {} {e}", e.kind()));
            return;
        }
    };
    say("CONNECT ok");
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                for i in (t..calls).step_by(2) {
                    let a = 1_000_000_000 * (k + 1) + i;
                    assert_eq!(add(&c, a, i), a + i, "client {k} call {i}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let n: i64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    say(&format!("RESULT {k} {n}"));
}

/// Role `blocker`: connect, print `CALLING <pid>`, and call `block` (the
/// parent kills this process while the call is in the server).
fn blocker_role() {
    let c = client_of(&role_ns(), &env("IPCKIT_TEST_NAME"));
    say(&format!("CALLING {}", std::process::id()));
    let _ = c.call_timeout::<_, u64>("block", &(), LIMIT);
}

/// Role `fake-server`: a plain byte-mode pipe named `IPCKIT_TEST_NAME`
/// that plays a broken service (`IPCKIT_TEST_FAKE`): `half-hello` (8 bytes
/// of hello, then silence), `bad-magic` (a whole hello of another magic),
/// `bad-reply` (a good hello; the answer to the first call is a frame of
/// kind 9). Stays until stdin closes.
#[cfg(feature = "pipe")]
fn fake_server_role() {
    use ipckit::pipe::{PipeMode, ServerOptions};
    let mode = env("IPCKIT_TEST_FAKE");
    let server = ServerOptions::new()
        .namespace(&role_ns())
        .mode(PipeMode::Byte)
        .create(&env("IPCKIT_TEST_NAME"))
        .unwrap();
    say(&format!("READY {}", std::process::id()));
    let mut conn = server.accept_timeout(LIMIT).unwrap();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&[1, 0, 0, 0]);
    hello.extend_from_slice(&(1u32 << 20).to_le_bytes());
    match mode.as_str() {
        "half-hello" => conn.write_all(&hello[..8]).unwrap(),
        "bad-magic" => {
            hello[..8].copy_from_slice(b"NOTASERV");
            conn.write_all(&hello).unwrap();
        }
        "bad-reply" => {
            conn.write_all(&hello).unwrap();
            let mut call = [0u8; 24];
            conn.read_exact(&mut call).unwrap();
            let id = u64::from_le_bytes(call[8..16].try_into().unwrap());
            conn.write_all(&header(9, ENC_JSON, 0, id, 2)).unwrap();
            conn.write_all(b"{}").unwrap();
        }
        other => panic!("unknown fake {other}"),
    }
    conn.flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}
