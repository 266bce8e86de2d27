//! Hostile peers' tools: raw sockets speaking the wire formats of
//! `docs/PROTOCOL.md` (hellos, frames, headers, one submodule per
//! protocol), and the roles and checks the hostile-peer tests share.

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use super::{flag_num, limits, proc_stats, say, wait_for_parent, Proc, TestNs, DEADLINE};

/// Connect to the socket at `path` (reads and writes bounded by
/// [`DEADLINE`]) and read the 16-byte hello.
pub fn connect(path: &Path) -> (UnixStream, [u8; 16]) {
    let mut s = UnixStream::connect(path).expect("raw connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).expect("read the hello");
    (s, hello)
}

/// [`connect`], checking the hello starts with `magic`.
pub fn connect_to(path: &Path, magic: &[u8; 8]) -> (UnixStream, [u8; 16]) {
    let (s, hello) = connect(path);
    assert_eq!(&hello[..8], magic);
    (s, hello)
}

/// A hello: `magic`, version 1, status 0, `flags`, and the largest message
/// `max`.
pub fn hello(magic: &[u8; 8], flags: u8, max: u32) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&[1, 0, flags, 0]);
    b.extend_from_slice(&max.to_le_bytes());
    b
}

/// Whether the `who` (server, reader...) closed `s` (end of stream or
/// reset) before the socket's read deadline; panics on the deadline.
pub fn closed_by_peer(s: &mut UnixStream, who: &str) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("the {who} did not close the connection: {e}"),
        }
    }
}

/// The `half-hello` role: a fake endpoint at `path` that sends the 8
/// bytes of `magic` (half a hello) to everyone who connects and then says
/// nothing more; prints `READY` once listening and exits when stdin
/// closes.
pub fn half_hello_role(path: &Path, magic: &'static [u8; 8]) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(magic);
            held.push(s);
        }
    });
    say("READY");
    wait_for_parent();
    std::process::exit(0);
}

/// Start this binary's `half-hello` role (see [`half_hello_role`]) on
/// `socket`, listening.
pub fn half_hello(t: &TestNs, socket: &Path) -> Proc {
    let mut p = t.talk("half-hello", &["--socket", &socket.display().to_string()]);
    p.stdout_line("READY");
    p
}

/// Limits from a hostile-peer role's arguments: `--max-conn N` (in
/// all, per user and per process), `--per-process N`, `--stall-ms MS`,
/// `--queued-bytes N`, `--in-flight N`.
pub fn limits_from(args: &[String]) -> ipckit::Limits {
    let mut limits = ipckit::Limits::new();
    if let Some(n) = flag_num(args, "--max-conn") {
        limits = limits
            .max_connections(n as usize)
            .max_connections_per_user(n as usize)
            .max_connections_per_process(n as usize);
    }
    if let Some(n) = flag_num(args, "--per-process") {
        limits = limits.max_connections_per_process(n as usize);
    }
    if let Some(ms) = flag_num(args, "--stall-ms") {
        limits = limits.stall_timeout(std::time::Duration::from_millis(ms));
    }
    if let Some(n) = flag_num(args, "--queued-bytes") {
        limits = limits.max_queued_bytes(n as usize);
    }
    if let Some(n) = flag_num(args, "--in-flight") {
        limits = limits.max_in_flight(n as usize);
    }
    limits
}

/// Start this binary's endpoint `role` (server, reader...) for `name`
/// (`--name NAME` and the role arguments `args`) and wait until it says
/// `READY`.
pub fn endpoint(t: &TestNs, role: &str, name: &str, args: &[&str]) -> Proc {
    let mut all = vec!["--name", name];
    all.extend_from_slice(args);
    let mut p = t.talk(role, &all);
    p.stdout_line("READY");
    p
}

/// The `hold` role: [`hold`], counting a non-zero status as busy, then
/// keeping the connections until stdin closes.
pub fn hold_role(args: &[String], magic: &[u8; 8]) {
    let held = hold(args, magic, |status| status != 0);
    wait_for_parent();
    drop(held);
}

/// The `hold` role's first part: open `--count` raw connections to
/// `--socket` (as many as the descriptor limit allows, 128 spare), each
/// checked to greet with `magic`, and report `HELD <count> busy=<n>`, `n`
/// counting the hellos whose status byte `is_busy`. The caller keeps the
/// connections until its stdin closes.
pub fn hold(args: &[String], magic: &[u8; 8], is_busy: impl Fn(u8) -> bool) -> Vec<UnixStream> {
    let count: u64 = flag_num(args, "--count").unwrap();
    let limit = limits::raise_nofile(count + 256);
    let count = count.min(limit.saturating_sub(128)) as usize;
    let path = Path::new(super::flag(args, "--socket").unwrap());
    let mut held = Vec::with_capacity(count);
    let mut busy = 0;
    for _ in 0..count {
        let (s, hello) = connect_to(path, magic);
        if is_busy(hello[9]) {
            busy += 1;
        }
        held.push(s);
    }
    say(&format!("HELD {count} busy={busy}"));
    held
}

/// An endpoint's threads while another process holds 2000 idle raw
/// connections to it (see [`idle_flood`]).
pub struct IdleFlood {
    /// The process holding the connections (its `HELD` line read).
    pub holder: Proc,
    /// How many it holds.
    pub held: usize,
    /// The endpoint's threads before the flood, and with it.
    pub threads_before: u64,
    pub threads_idle: u64,
}

/// Start this binary's `hold` role on the socket at `socket` (2000
/// connections; `extra` role arguments) and measure the threads of the
/// endpoint process `pid` before and with them; checks the holder
/// opened at least 900 and none was refused.
pub fn idle_flood(t: &TestNs, pid: u32, socket: &Path, extra: &[&str]) -> IdleFlood {
    let threads_before = proc_stats::threads(pid);
    let socket = socket.display().to_string();
    let mut args = vec!["--socket", &socket, "--count", "2000"];
    args.extend_from_slice(extra);
    let mut holder = t.talk("hold", &args);
    let held = holder.stdout_line("HELD ");
    let n: usize = held.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        n >= 900,
        "the flooder could open only {n} descriptors: {held}"
    );
    assert!(held.ends_with("busy=0"), "{held}");
    IdleFlood {
        holder,
        held: n,
        threads_before,
        threads_idle: proc_stats::threads(pid),
    }
}

impl IdleFlood {
    /// Check the endpoint ran at most `max` threads with the idle
    /// connections, and `threads_after` after serving a good peer.
    pub fn assert_few_threads(&self, threads_after: u64, max: u64) {
        let (threads_idle, n) = (self.threads_idle, self.held);
        assert!(
            threads_idle <= max,
            "{threads_idle} threads for {n} idle connections"
        );
        assert!(threads_after <= max, "{threads_after} threads");
    }
}

/// Named pipes ("Named pipes").
pub mod pipe {
    /// Hello magic.
    pub const MAGIC: &[u8; 8] = b"IPCKPIPE";

    /// A frame header: `kind`, then the body's length.
    pub fn frame_header(kind: u8, len: u32) -> [u8; 8] {
        let mut h = [kind, 0, 0, 0, 0, 0, 0, 0];
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h
    }

    /// A whole frame: header and `body`.
    pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut f = frame_header(kind, body.len() as u32).to_vec();
        f.extend_from_slice(body);
        f
    }
}

/// Services ("Services (RPC)").
pub mod service {
    use std::io::Read as _;
    use std::os::unix::net::UnixStream;

    /// Hello magic, its status byte (offset 9) and the frame kinds.
    pub const MAGIC: &[u8; 8] = b"IPCKSERV";
    pub const HEADER_LEN: usize = 24;
    pub const KIND_CALL: u8 = 1;
    pub const KIND_REPLY: u8 = 2;
    pub const KIND_ERROR: u8 = 3;
    pub const ENC_JSON: u8 = 1;
    /// Error code: too many calls in flight on the connection.
    pub const CODE_BUSY: i64 = -32001;

    /// A call frame: 24-byte header, method, body (JSON).
    pub fn call_frame(call_id: u64, method: &str, body: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = KIND_CALL;
        b[1] = ENC_JSON;
        b[2..4].copy_from_slice(&(method.len() as u16).to_le_bytes());
        b[8..16].copy_from_slice(&call_id.to_le_bytes());
        b[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
        b.extend_from_slice(method.as_bytes());
        b.extend_from_slice(body);
        b
    }

    /// Read one frame: `(kind, call_id, body)`; `None` at end of stream.
    pub fn read_frame(s: &mut UnixStream) -> Option<(u8, u64, Vec<u8>)> {
        let mut h = [0u8; HEADER_LEN];
        match s.read(&mut h[..1]) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a frame: {e}"),
        }
        s.read_exact(&mut h[1..]).unwrap();
        let method_len = u16::from_le_bytes(h[2..4].try_into().unwrap()) as usize;
        let call_id = u64::from_le_bytes(h[8..16].try_into().unwrap());
        let body_len = u64::from_le_bytes(h[16..24].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; method_len + body_len];
        s.read_exact(&mut rest).unwrap();
        Some((h[0], call_id, rest.split_off(method_len)))
    }

    /// The `code` of an error frame's JSON body.
    pub fn error_code(body: &[u8]) -> i64 {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no code in {v}"))
    }
}

/// Window messages ("Window messages").
pub mod message {
    use std::io::Read as _;
    use std::os::unix::net::UnixStream;

    /// Hello magic.
    pub const MAGIC: &[u8; 8] = b"IPCKWMSG";
    /// Request kinds, response kinds and error codes of the wire.
    pub const REQ_SEND: u8 = 1;
    pub const RESP_REPLY: u8 = 1;
    pub const RESP_ERROR: u8 = 3;
    pub const ERR_TOO_LARGE: u8 = 2;
    /// Hello status byte (offset 9): 1 = busy.
    pub const STATUS_BUSY: u8 = 1;

    /// A request header: `kind`, message `id`, data length `len`.
    pub fn request(kind: u8, id: u32, len: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = kind;
        b[4..8].copy_from_slice(&id.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b
    }

    /// A response header: `kind`, `code`, data length `len`, `result`.
    pub fn response_header(kind: u8, code: u8, len: u32, result: i64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = kind;
        b[1] = code;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        b[8..16].copy_from_slice(&result.to_le_bytes());
        b
    }

    /// Read one response: `(kind, code, result, body)`.
    pub fn response(s: &mut UnixStream) -> (u8, u8, i64, Vec<u8>) {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let result = i64::from_le_bytes(h[8..16].try_into().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        (h[0], h[1], result, body)
    }
}

/// Mailslots ("Mailslots").
pub mod mailslot {
    /// Hello magic and the write header's kind.
    pub const MAGIC: &[u8; 8] = b"IPCKSLOT";
    pub const KIND_WRITE: u8 = 1;

    /// A write header announcing `len` payload bytes.
    pub fn write_header(len: u32, timeout_ms: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = KIND_WRITE;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        b[8..12].copy_from_slice(&timeout_ms.to_le_bytes());
        b
    }
}
