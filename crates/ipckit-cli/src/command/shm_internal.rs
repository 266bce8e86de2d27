//! Hidden shared-memory helpers: the demo's writer and watcher, a mutex
//! holder for tests, and the measurements (`ipckit shm-internal bench`).

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipckit::map::SharedMapOptions;
use ipckit::shm::{Mapping, MappingOptions};
use ipckit::sync::{EventOptions, Mutex, MutexOptions};
use ipckit::{Error, ErrorKind};

use crate::cli::ShmInternalCommand;
use crate::util::{percentile, us};

const WAIT: Duration = Duration::from_secs(10);

pub fn run(cmd: ShmInternalCommand) -> Result<(), Error> {
    match cmd {
        ShmInternalCommand::DemoWrite { name, count } => demo_write(&name, count),
        ShmInternalCommand::DemoWatch { name, count } => demo_watch(&name, count),
        ShmInternalCommand::HoldMutex { name } => hold_mutex(&name),
        ShmInternalCommand::Bench { rounds } => bench(rounds),
        ShmInternalCommand::BenchEcho { prefix, rounds } => bench_echo(&prefix, rounds),
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn ready_event(name: &str) -> EventOptions {
    let _ = name;
    EventOptions::new().manual_reset(true)
}

fn demo_write(name: &str, count: u64) -> Result<(), Error> {
    let mut m = SharedMapOptions::new().open(name)?;
    ready_event(name)
        .open_or_create(&format!("{name}.ready"))?
        .wait_timeout(WAIT)?;
    for i in 1..=count {
        let v = m.write_text(&format!("tick {i} @{}", now_ns()))?;
        println!(
            "  writer  pid {:>7}: wrote 'tick {i}' (version {v})",
            std::process::id()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    Ok(())
}

fn demo_watch(name: &str, count: u64) -> Result<(), Error> {
    let mut m = SharedMapOptions::new().open(name)?;
    println!(
        "  watcher pid {:>7}: opened '{name}', content '{}' (existed: {})",
        std::process::id(),
        m.text(),
        m.existed()
    );
    ready_event(name)
        .open_or_create(&format!("{name}.ready"))?
        .set();
    let mut lat = Vec::new();
    for _ in 0..count {
        let c = m.wait_change(Some(WAIT))?;
        let now = now_ns();
        let text = String::from_utf8_lossy(&c.content).into_owned();
        let sent: u128 = text
            .rsplit('@')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        let l = now.saturating_sub(sent) as u64;
        lat.push(l);
        let shown = text.split(" @").next().unwrap_or("");
        println!(
            "  watcher pid {:>7}: change v{} '{shown}' ({} skipped), write->wake-up {}",
            std::process::id(),
            c.version,
            c.skipped,
            us(l)
        );
    }
    lat.sort_unstable();
    println!(
        "  write->watch wake-up across processes: median {}",
        us(percentile(&lat, 50.0))
    );
    Ok(())
}

fn hold_mutex(name: &str) -> Result<(), Error> {
    let m = MutexOptions::new().open_or_create(name)?;
    let lock = m.lock()?;
    println!(
        "locked {}",
        if lock.is_abandoned() {
            "abandoned"
        } else {
            "clean"
        }
    );
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

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
        ipckit::sync::__futex_wake(w, 1);
    }
}

fn bench(rounds: u64) -> Result<(), Error> {
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
    let dir = std::env::temp_dir().join(format!("ipckit-bench-{}", std::process::id()));
    let ns = ipckit::Namespace::at(&dir)?;
    let prefix = "bench";
    let mo = SharedMapOptions::new().namespace(&ns).max_size(64);
    let shm = MappingOptions::new().namespace(&ns);
    let result = (|| {
        let mut ping = mo.open_or_create(&format!("{prefix}/ping"))?;
        let mut pong = mo.open_or_create(&format!("{prefix}/pong"))?;
        let rawmap = shm.open_or_create(&format!("{prefix}/raw"), 16)?;
        let exe = std::env::current_exe()
            .map_err(|e| Error::new(ErrorKind::Io, format!("no exe: {e}")))?;
        let mut child = std::process::Command::new(exe)
            .args(["shm-internal", "bench-echo", prefix, &rounds.to_string()])
            .env(ipckit::name::NAMESPACE_ENV, ns.dir())
            .spawn()
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot start the echo process: {e}"))
            })?;
        let r = (|| {
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
                ipckit::sync::__futex_wake(a, 1);
                loop {
                    let v = b.load(Ordering::Acquire);
                    if v == r {
                        break;
                    }
                    ipckit::sync::__futex_wait(b, v, Some(WAIT))?;
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
        let _ = child.kill();
        let _ = child.wait();
        r
    })();
    for n in ["ping", "pong", "raw"] {
        let _ = shm.remove(&format!("{prefix}/{n}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench_echo(prefix: &str, rounds: u64) -> Result<(), Error> {
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
            ipckit::sync::__futex_wait(a, v, Some(WAIT))?;
        }
        b.store(r, Ordering::Release);
        ipckit::sync::__futex_wake(b, 1);
    }
    Ok(())
}
