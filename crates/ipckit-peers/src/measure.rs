//! Measurement tools outside `ipckit bench`'s table: each prints ipckit's
//! figure beside a raw baseline measured in the same run, against another
//! process (this program again, in a peer role).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipckit::map::SharedMapOptions;
use ipckit::message::{Messenger, ReceiverOptions, Reply};
use ipckit::shm::{Mapping, MappingOptions};
use ipckit::sync::Mutex;
use ipckit::{Error, ErrorKind, Namespace};

use crate::io;

/// How long any single wait for the peer may take.
const WAIT: Duration = Duration::from_secs(10);

/// Percentile (0..=100) of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Nanoseconds as µs with one decimal.
fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

/// A child process killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This program in another role, in namespace `ns`.
fn peer(ns: &Namespace, args: &[&str]) -> ipckit::Result<Reaped> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find ipckit-peer"))?;
    Command::new(exe)
        .args(args)
        .env(ipckit::name::NAMESPACE_ENV, ns.dir())
        .stdin(Stdio::null())
        .spawn()
        .map(Reaped)
        .map_err(|e| io(e, "cannot start the peer process"))
}

/// A private namespace in the temporary directory, removed by the guard.
struct TempNs {
    ns: Namespace,
    dir: PathBuf,
}

impl TempNs {
    fn new(what: &str) -> ipckit::Result<TempNs> {
        let dir = std::env::temp_dir().join(format!("ipckit-{what}-{}", std::process::id()));
        Ok(TempNs {
            ns: Namespace::at(&dir)?,
            dir,
        })
    }
}

impl Drop for TempNs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- shm

/// Lock word baseline: CAS 0 -> 1 to lock, swap to 0 (+ wake if 2) to unlock.
fn raw_lock(w: &AtomicU32) {
    while w
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn raw_unlock(w: &AtomicU32) {
    if w.swap(0, Ordering::Release) == 2 {
        crate::futex::wake(w, 1);
    }
}

/// `measure-shm`: the uncontended lock cost, then write -> watch wake-up
/// across processes beside a raw futex ping.
pub fn shm(rounds: u64) -> ipckit::Result<()> {
    // 1. uncontended lock/unlock
    let map = Arc::new(Mapping::anonymous(64)?);
    let m = Mutex::at(map.clone(), 0)?;
    let raw = map.atomic_u32(8)?;
    let n = 2_000_000u32;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            let g = std::hint::black_box(m.lock()?);
            drop(g);
        }
        let ours = t.elapsed().as_nanos() as f64 / f64::from(n);
        let t = Instant::now();
        for _ in 0..n {
            raw_lock(std::hint::black_box(raw));
            raw_unlock(raw);
        }
        let base = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("uncontended lock+unlock: ipckit Mutex {ours:.1} ns, raw CAS+swap futex lock {base:.1} ns  ({n} iterations)");
    }

    // 2. write -> watch wake-up across processes, beside a raw futex ping
    let tmp = TempNs::new("measure-shm")?;
    let prefix = "measure";
    let mo = SharedMapOptions::new().namespace(&tmp.ns).max_size(64);
    let shm = MappingOptions::new().namespace(&tmp.ns);
    let result = (|| {
        let mut ping = mo.open_or_create(&format!("{prefix}/ping"))?;
        let mut pong = mo.open_or_create(&format!("{prefix}/pong"))?;
        let rawmap = shm.open_or_create(&format!("{prefix}/raw"), 16)?;
        let _peer = peer(&tmp.ns, &["map-echo", prefix, &rounds.to_string()])?;
        pong.wait_change(Some(WAIT))?; // the peer is ready
        let mut map_rtt = Vec::new();
        for r in 0..rounds {
            let t = Instant::now();
            ping.write(&r.to_le_bytes())?;
            let c = pong.wait_change(Some(WAIT))?;
            map_rtt.push(t.elapsed().as_nanos() as u64);
            if c.content != r.to_le_bytes() {
                return Err(Error::new(ErrorKind::Decode, "echo mismatch"));
            }
        }
        let (a, b) = (rawmap.atomic_u32(0)?, rawmap.atomic_u32(4)?);
        let mut raw_rtt = Vec::new();
        for r in 1..=rounds as u32 {
            let t = Instant::now();
            a.store(r, Ordering::Release);
            crate::futex::wake(a, 1);
            loop {
                let v = b.load(Ordering::Acquire);
                if v == r {
                    break;
                }
                crate::futex::wait(b, v, Some(WAIT))?;
            }
            raw_rtt.push(t.elapsed().as_nanos() as u64);
        }
        map_rtt.sort_unstable();
        raw_rtt.sort_unstable();
        let half = |v: &[u64], p| percentile(v, p) / 2;
        println!(
            "write->watch wake-up (one way = round trip / 2, {rounds} rounds): SharedMap median {} p99 {}; raw futex ping median {} p99 {}",
            us(half(&map_rtt, 50.0)),
            us(half(&map_rtt, 99.0)),
            us(half(&raw_rtt, 50.0)),
            us(half(&raw_rtt, 99.0)),
        );
        Ok(())
    })();
    for n in ["ping", "pong", "raw"] {
        let _ = shm.remove(&format!("{prefix}/{n}"));
    }
    result
}

/// `map-echo`: the other process of [`shm`].
pub fn map_echo(prefix: &str, rounds: u64) -> ipckit::Result<()> {
    let mo = SharedMapOptions::new();
    let mut ping = mo.open(&format!("{prefix}/ping"))?;
    let mut pong = mo.open(&format!("{prefix}/pong"))?;
    let rawmap = MappingOptions::new().open(&format!("{prefix}/raw"))?;
    pong.write(b"ready")?;
    for _ in 0..rounds {
        let c = ping.wait_change(Some(WAIT))?;
        pong.write(&c.content)?;
    }
    let (a, b) = (rawmap.atomic_u32(0)?, rawmap.atomic_u32(4)?);
    for r in 1..=rounds as u32 {
        loop {
            let v = a.load(Ordering::Acquire);
            if v == r {
                break;
            }
            crate::futex::wait(a, v, Some(WAIT))?;
        }
        b.store(r, Ordering::Release);
        crate::futex::wake(b, 1);
    }
    Ok(())
}

// ---------------------------------------------------------------- messages

/// Connect to the raw echo socket at `path` once its peer listens.
fn connect_raw(path: &Path) -> ipckit::Result<UnixStream> {
    let deadline = Instant::now() + WAIT;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(io(e, "cannot reach the raw echo baseline"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// `measure-msg`: `send` round trips over a kept connection to a receiver
/// process, beside a raw Unix-socket ping-pong of the same payload.
pub fn msg(rounds: usize) -> ipckit::Result<()> {
    let tmp = TempNs::new("measure-msg")?;
    let _receiver = peer(&tmp.ns, &["msg-receiver", "measure"])?;
    let raw = tmp.dir.join("raw-echo.sock");
    let _raw = peer(&tmp.ns, &["raw-echo", &raw.to_string_lossy()])?;
    let m = Messenger::new().namespace(&tmp.ns).clone();
    let deadline = Instant::now() + WAIT;
    let mut w = loop {
        match m.connect("measure") {
            Ok(w) => break w,
            Err(e) if e.kind() == ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(e),
        }
    };
    let payload = [7u8; 64];
    for _ in 0..100 {
        w.send(1, &payload, WAIT)?;
    }
    let mut send_ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        w.send(1, &payload, WAIT)?;
        send_ns.push(t.elapsed().as_nanos() as u64);
    }
    let mut sock = connect_raw(&raw)?;
    let mut buf = [0u8; 64];
    let mut raw_ns = Vec::with_capacity(rounds);
    for i in 0..rounds + 100 {
        let t = Instant::now();
        sock.write_all(&payload).map_err(|e| io(e, "raw write"))?;
        sock.read_exact(&mut buf).map_err(|e| io(e, "raw read"))?;
        if i >= 100 {
            raw_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    send_ns.sort_unstable();
    raw_ns.sort_unstable();
    let (s, r) = (percentile(&send_ns, 50.0), percentile(&raw_ns, 50.0));
    println!(
        "{rounds} round trips of 64 bytes: message send p50 {} p99 {} | raw Unix socket ping-pong p50 {} p99 {} | ratio {:.2}x",
        us(s),
        us(percentile(&send_ns, 99.0)),
        us(r),
        us(percentile(&raw_ns, 99.0)),
        s as f64 / r.max(1) as f64
    );
    Ok(())
}

/// `msg-receiver`: the other process of [`msg`]; serves until killed.
pub fn msg_receiver(name: &str) -> ipckit::Result<()> {
    let _rx = ReceiverOptions::new().register(name, |m| Reply::new(m.data.len() as i64))?;
    loop {
        std::thread::park();
    }
}
