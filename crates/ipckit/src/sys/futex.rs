//! Futexes on shared memory (never `FUTEX_PRIVATE_FLAG`: waiters live in
//! several processes) and thread identity / liveness for lock owners.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Sleep while `*word == expected`, at most `timeout` (forever if `None`).
/// Returns on a wake-up, a changed value, a signal or the timeout; the
/// caller re-checks its condition either way.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(())
        | Err(rustix::io::Errno::AGAIN)
        | Err(rustix::io::Errno::INTR)
        | Err(rustix::io::Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Wake up to `n` waiters sleeping on `word`, in any process.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

/// The calling thread's kernel id (what goes into a mutex's owner field).
/// Cached per thread (a `gettid` syscall would cost more than the whole
/// uncontended lock); a process forked without exec must not lock ipckit
/// mutexes from the forking thread's copy.
pub(crate) fn tid() -> u32 {
    thread_local! {
        static TID: u32 = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    }
    TID.with(|t| *t)
}

/// Whether the thread `tid` still runs. A thread that exited, or whose
/// process is a zombie waiting to be reaped, is dead.
pub(crate) fn thread_alive(tid: u32) -> bool {
    if !super::process_exists(tid) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        // The state follows the last ')' (the command name may hold one).
        Ok(s) => !matches!(
            s.rfind(')')
                .and_then(|i| s[i + 1..].trim_start().chars().next()),
            Some('Z' | 'X' | 'x')
        ),
        Err(_) => false,
    }
}
