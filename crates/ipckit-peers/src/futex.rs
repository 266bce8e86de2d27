//! The bare shared futex the `floor/futex` measurements are made of (no
//! ipckit in between: this is the raw baseline).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleep while `word` holds `expected` (at most `timeout`); spurious
/// wake-ups, a changed value and the timeout all return `Ok`.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> ipckit::Result<()> {
    use rustix::thread::futex;
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(())
        | Err(rustix::io::Errno::AGAIN)
        | Err(rustix::io::Errno::INTR)
        | Err(rustix::io::Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(std::io::Error::from(e).into()),
    }
}

/// Wake up to `n` sleepers on `word`, in any process.
pub fn wake(word: &AtomicU32, n: u32) {
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n);
}
