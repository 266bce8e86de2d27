//! Small helpers shared by the commands.

use std::process::{Child, ChildStdout};
use std::time::{Duration, Instant};

#[cfg(unix)]
static ALLOWED_UIDS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Remember `--allow-uid` for every server and client this command makes.
#[cfg(unix)]
pub fn set_allowed_uids(uids: Vec<u32>) {
    let _ = ALLOWED_UIDS.set(uids);
}

/// The uids `--allow-uid` named (none by default).
#[cfg(unix)]
pub fn allowed_uids() -> &'static [u32] {
    ALLOWED_UIDS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// None: Windows has no `--allow-uid` (a client trusts servers of its own
/// user only, the library's default).
#[cfg(windows)]
pub fn allowed_uids() -> &'static [u32] {
    &[]
}

/// The limits a server this command runs applies: the defaults, plus the
/// `--allow-uid` users.
#[cfg(unix)]
pub fn limits() -> ipckit::Limits {
    ipckit::Limits::default().allow_uids(allowed_uids())
}

/// The limits a server this command runs applies: the defaults (Windows
/// objects admit their creating user only; there is no `--allow-uid`).
#[cfg(windows)]
pub fn limits() -> ipckit::Limits {
    ipckit::Limits::default()
}

/// How often a serving command looks whether it was asked to stop.
pub const STOP_POLL: Duration = Duration::from_millis(100);

static STOP: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// From now on, Ctrl-C (SIGINT) and SIGTERM only ask this command to stop
/// ([`stop_requested`]): a serving command then returns normally, so its
/// server is dropped and its endpoint record removed.
#[cfg(unix)]
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

/// From now on, Ctrl-C, Ctrl-Break and the console's closing only ask this
/// command to stop ([`stop_requested`]), as SIGINT and SIGTERM do on Linux:
/// a serving command then returns normally, so its server is dropped and
/// its record removed. Through `SetConsoleCtrlHandler` (the `ctrlc` crate), not signal-hook:
/// on Windows signal-hook goes through the C runtime's `signal`, which
/// crashes the process under Wine when Ctrl-C comes (signal-hook's
/// `SIG_GET` query installs the value 2 as the handler there, and it then
/// calls that "previous handler").
#[cfg(windows)]
pub fn catch_stop_signals() -> Result<(), ipckit::Error> {
    let first = STOP.get().is_none();
    let flag = STOP.get_or_init(Default::default).clone();
    if !first {
        return Ok(());
    }
    ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed)).map_err(
        |e| ipckit::Error::new(ipckit::ErrorKind::Io, format!("cannot handle Ctrl-C: {e}")),
    )
}

/// Whether SIGINT or SIGTERM arrived since [`catch_stop_signals`].
pub fn stop_requested() -> bool {
    STOP.get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

/// Serve until SIGINT or SIGTERM, until `timeout` has passed, or until
/// `done()` (units of work finished, `unit`s) reaches `count`. Not reaching
/// `count` within `timeout` is a failure naming `name`.
pub fn serve_until(
    name: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
    unit: &str,
    done: impl Fn() -> u64,
) -> Result<(), ipckit::Error> {
    let until = timeout.map(|t| Instant::now() + t);
    while !stop_requested() {
        if count.is_some_and(|n| done() >= n) {
            return Ok(());
        }
        let left = until.map(|u| u.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return match count {
                Some(n) => Err(ipckit::Error::new(
                    ipckit::ErrorKind::Timeout,
                    format!(
                        "{} of {n} {unit} within --timeout {:?}",
                        done().min(n),
                        timeout.unwrap_or_default()
                    ),
                )
                .with_name(name)),
                None => Ok(()),
            };
        }
        std::thread::sleep(left.unwrap_or(STOP_POLL).min(STOP_POLL));
    }
    Ok(())
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

/// A namespace directory as people write it: on Windows without the
/// `\\?\` prefix of the resolved (verbatim) path.
pub fn shown_dir(dir: &std::path::Path) -> String {
    let s = dir.display().to_string();
    #[cfg(windows)]
    if let Some(rest) = s.strip_prefix(r"\\?\") {
        return rest.to_string();
    }
    s
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

/// A duration in whole nanoseconds (what every `--json` prints, as
/// `*_ns` integers).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Fail at once if `name`'s endpoint record is stale: its server died
/// (killed, say) without removing it. Waiting for the name to appear would
/// only time out. A name with no record at all is waited for as usual (a
/// server about to start). `what` names the server in the error. On
/// Windows only services, message receivers and DDE servers keep records
/// (a native pipe or mailslot vanishes with its server: nothing stale).
pub fn fail_if_stale(name: &str, what: &str) -> Result<(), ipckit::Error> {
    if name.starts_with("tcp://") {
        return Ok(());
    }
    let ns = ipckit::Namespace::from_env()?;
    let Some(i) = ns.info(name)? else {
        return Ok(());
    };
    // pid 0: an empty record, which a server starting right now has created
    // but not yet locked; not a dead one.
    if i.state != ipckit::name::EndpointState::Stale || i.pid == 0 {
        return Ok(());
    }
    Err(ipckit::Error::new(
        ipckit::ErrorKind::PeerGone,
        format!(
            "its {what} is gone: pid {} died without closing it (the record is stale); start it again, or remove the record with `ipckit ls --prune`",
            i.pid
        ),
    )
    .with_name(name))
}

/// Run `f` on a thread and give up after `limit` with a one-line timeout
/// error about `name` (for library calls that take no timeout of their own).
pub fn bounded<T: Send + 'static>(
    name: &str,
    limit: Duration,
    f: impl FnOnce() -> Result<T, ipckit::Error> + Send + 'static,
) -> Result<T, ipckit::Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        Err(ipckit::Error::new(
            ipckit::ErrorKind::Timeout,
            format!("did not finish within --timeout {limit:?}; is the peer hung? try a longer --timeout"),
        )
        .with_name(name))
    })
}

/// Format nanoseconds as µs with one decimal (as ns below 100 ns).
pub fn us(ns: u64) -> String {
    if ns < 100 {
        return format!("{ns} ns");
    }
    format!("{:.1} µs", ns as f64 / 1000.0)
}

/// The prefix of a name on the fabric: `zenoh://NAME`.
pub const ZENOH_PREFIX: &str = "zenoh://";

/// The name a `zenoh://NAME` argument names on the fabric, if it is one.
pub fn remote_name(name: &str) -> Option<&str> {
    name.strip_prefix(ZENOH_PREFIX)
}

/// The one-line error for a `zenoh://` name or `--remote` in an ipckit
/// built without the fabric; `what` says what asked for it.
#[cfg(not(feature = "zenoh"))]
pub fn no_fabric(what: &str) -> ipckit::Error {
    #[cfg(unix)]
    let how = "this ipckit was built without it; rebuild with the `zenoh` feature: cargo install ipckit-cli --features zenoh";
    #[cfg(windows)]
    let how = "the fabric is Linux only for now";
    ipckit::Error::new(
        ipckit::ErrorKind::Unsupported,
        format!("{what} needs the fabric (Zenoh), and {how}"),
    )
}

/// `--listen`, `--connect` and `--no-scouting`, for [`fabric`].
#[cfg(feature = "zenoh")]
struct FabricArgs {
    listen: Vec<String>,
    connect: Vec<String>,
    no_scouting: bool,
}

#[cfg(feature = "zenoh")]
static FABRIC_ARGS: std::sync::OnceLock<FabricArgs> = std::sync::OnceLock::new();

/// Remember `--listen` / `--connect` / `--no-scouting` for the fabric
/// session [`fabric`] opens.
#[cfg(feature = "zenoh")]
pub fn set_fabric_endpoints(listen: Vec<String>, connect: Vec<String>, no_scouting: bool) {
    let _ = FABRIC_ARGS.set(FabricArgs {
        listen,
        connect,
        no_scouting,
    });
}

/// This command's fabric session: opened on first use with `--listen`,
/// `--connect`, `--no-scouting` and `IPCKIT_ZENOH_CONFIG`, then shared by
/// everything the command does (it is the process-wide one,
/// `Fabric::global`).
#[cfg(feature = "zenoh")]
pub fn fabric() -> Result<ipckit::fabric::Fabric, ipckit::Error> {
    static OPENED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = FABRIC.get() {
        return Ok(f.clone());
    }
    let mut b = ipckit::fabric::Fabric::builder().namespace(fabric_namespace());
    if let Some(a) = FABRIC_ARGS.get() {
        for l in &a.listen {
            b = b.listen(l.clone());
        }
        for c in &a.connect {
            b = b.connect(c.clone());
        }
        if a.no_scouting {
            b = b.multicast_scouting(false);
        }
    }
    let f = b.install()?;
    let _ = FABRIC.set(f.clone());
    Ok(f)
}

#[cfg(feature = "zenoh")]
static FABRIC: std::sync::OnceLock<ipckit::fabric::Fabric> = std::sync::OnceLock::new();

/// The fabric namespace: `IPCKIT_ZENOH_NAMESPACE`, else `default`. (The
/// local `--namespace` is a directory, which differs between machines.)
#[cfg(feature = "zenoh")]
fn fabric_namespace() -> String {
    std::env::var("IPCKIT_ZENOH_NAMESPACE").unwrap_or_else(|_| "default".to_string())
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

    #[cfg(unix)]
    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
