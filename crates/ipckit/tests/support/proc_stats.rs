//! What `/proc` says about another process: threads, resident memory,
//! CPU time, open descriptors.

use std::process::Command;
use std::time::{Duration, Instant};

/// A numeric field of `/proc/<pid>/status` (`name` with its colon, e.g.
/// `"Threads:"`), without its ` kB` unit; `pid` may be `"self"`.
pub fn status_field(pid: impl std::fmt::Display, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// How many threads process `pid` runs.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

/// The resident memory (VmRSS) of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// CPU time (user + system) the process used so far.
pub fn cpu(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest: Vec<&str> = s[s.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of /proc CPU times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Share of one core the process used over `window`.
pub fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu(pid), Instant::now());
    // Measuring over a window, not synchronising: nothing waits on this.
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu(pid).saturating_sub(c0);
    used.as_secs_f64() / t0.elapsed().as_secs_f64()
}

/// How many of the descriptor numbers below `limit` the process has open.
pub fn fds_below(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&n| n < limit)
            .count()
    })
}
