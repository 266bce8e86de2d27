//! Small helpers shared by the commands.

use std::process::{Child, ChildStdout};
use std::time::{Duration, Instant};

static ALLOWED_UIDS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Remember `--allow-uid` for every server and client this command makes.
pub fn set_allowed_uids(uids: Vec<u32>) {
    let _ = ALLOWED_UIDS.set(uids);
}

/// The uids `--allow-uid` named (none by default).
pub fn allowed_uids() -> &'static [u32] {
    ALLOWED_UIDS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// The limits a server this command runs applies: the defaults, plus the
/// `--allow-uid` users.
pub fn limits() -> ipckit::Limits {
    ipckit::Limits::default().allow_uids(allowed_uids())
}

/// How often a serving command looks whether it was asked to stop.
pub const STOP_POLL: Duration = Duration::from_millis(100);

static STOP: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// From now on, Ctrl-C (SIGINT) and SIGTERM only ask this command to stop
/// ([`stop_requested`]): a serving command then returns normally, so its
/// server is dropped and its endpoint record removed.
pub fn catch_stop_signals() -> Result<(), ipckit::Error> {
    let flag = STOP.get_or_init(Default::default).clone();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| {
            ipckit::Error::new(
                ipckit::ErrorKind::Io,
                format!("cannot handle Ctrl-C and SIGTERM: {e}"),
            )
            .with_source(e)
        })?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`catch_stop_signals`].
pub fn stop_requested() -> bool {
    STOP.get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

/// Block until SIGINT or SIGTERM (after [`catch_stop_signals`]).
pub fn wait_for_stop() {
    while !stop_requested() {
        std::thread::sleep(STOP_POLL);
    }
}

/// A child process killed and reaped when dropped, so no command leaks one.
pub struct Reaped(pub Child);

impl Reaped {
    /// The child's stdout, if piped and not taken yet.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.0.stdout.take()
    }

    /// Wait for a clean exit within `limit`; an error if it failed or
    /// took longer (it is then killed on drop).
    pub fn wait(&mut self, limit: Duration) -> Result<(), ipckit::Error> {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.0.try_wait().map_err(|e| {
                ipckit::Error::new(
                    ipckit::ErrorKind::Io,
                    format!("cannot wait for a child: {e}"),
                )
                .with_source(e)
            })?;
            match st {
                Some(st) if st.success() => return Ok(()),
                Some(st) => {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Io,
                        format!("a child process failed ({st})"),
                    ))
                }
                None if Instant::now() >= deadline => {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Timeout,
                        format!("a child process did not finish within {limit:?}"),
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Parse `5s`, `250ms`, `1m` (humantime syntax); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 5s or 250ms: {e}"))
}

/// Percentile (0..=100) of sorted samples in nanoseconds.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A duration in microseconds with at most three decimals (for JSON).
pub fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// Format nanoseconds as µs with one decimal (as ns below 100 ns).
pub fn us(ns: u64) -> String {
    if ns < 100 {
        return format!("{ns} ns");
    }
    format!("{:.1} µs", ns as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
