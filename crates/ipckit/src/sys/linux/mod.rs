//! The Linux backend: every call goes through `rustix`. It provides the
//! items listed in the contract of [`super`].

pub(crate) mod futex;
pub(crate) mod net;
pub(crate) mod pipe;
pub(crate) mod poll;
pub(crate) mod shm;
pub(crate) mod udp;

use std::fs::File;
use std::io;

use rustix::fs::FlockOperation;

/// Longest path a Unix socket address can hold (sun_path minus the NUL).
pub(crate) const MAX_UNIX_PATH: usize = 107;

/// `open` flag: fail (`ELOOP`) instead of following a symbolic link in the
/// last component of the path.
pub(crate) fn no_follow_flag() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Whether `file` is the file `path` names now (same device and inode): a
/// record unlinked between someone's open and their lock is not.
pub(crate) fn same_file(file: &File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// When process `pid` started (`/proc/PID/stat` field 22, clock ticks
/// after boot), which tells it from a later process given the same pid;
/// `None` if it does not exist.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and ')': skip past the last.
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The caller's real user id.
pub(crate) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Take an exclusive lock on `file` without waiting; `Ok(false)` if another
/// open file description holds it.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Take an exclusive lock on `file`, waiting as long as another holder has it.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// Whether some open file description holds a lock on `file`'s inode.
pub(crate) fn is_locked(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            rustix::fs::flock(file, FlockOperation::Unlock)?;
            Ok(false)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Give the CPU to another runnable thread, if any (`sched_yield`): a
/// spinning waiter calls it so that, on an overcommitted machine, it does
/// not keep the peer it waits for off the core.
pub(crate) fn yield_now() {
    rustix::thread::sched_yield();
}

/// Whether a process with this pid exists (it may be a zombie).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}
