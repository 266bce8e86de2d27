//! Operating-system calls. Everything ipckit asks of the kernel goes through
//! this module, and every call here goes through `rustix`.
//!
//! # The contract a backend meets
//!
//! Linux is the backend that exists and is tested. A macOS or Windows backend
//! provides the same items with the same meaning:
//!
//! - **identity** ([`uid`]): the caller's user id; [`MAX_UNIX_PATH`], the
//!   longest socket path the platform accepts.
//! - **records** ([`try_lock_exclusive`], [`is_locked`]): an advisory lock
//!   on an open file that the kernel releases when its holder dies, however
//!   it dies, and a probe telling whether someone holds it.
//! - **sockets** ([`net`]): stream sockets (local and TCP) created
//!   close-on-exec, whole-buffer send that never raises `SIGPIPE`, exact
//!   receive that tells a clean end-of-stream from a torn one, waiting for
//!   readability with a timeout, peer credentials (pid, uid, gid), shutting
//!   down only the receiving direction so a blocked reader wakes with
//!   end-of-stream while replies can still be written (service shutdown).
//! - **readiness** ([`poll`], and in [`net`]): one poller watching many
//!   sockets for readability and hang-up (epoll; an I/O completion port or
//!   `WSAPoll` on Windows), listeners that accept without blocking, receives
//!   that return at once when nothing is there (passing descriptors along),
//!   sends bounded by a timeout, and telling "out of descriptors or kernel
//!   memory" from other accept failures (a server then backs off). On
//!   Windows, named pipes take the place of Unix sockets behind the same
//!   calls.
//! - **pipes** ([`pipe`]): an anonymous pipe with both ends close-on-exec,
//!   and placing one fd at a chosen number in a child about to be started.
//! - **registries** ([`lock_exclusive`]): a blocking exclusive advisory lock
//!   (released by the kernel when the holder dies), used to serialise
//!   read-modify-write of small shared files such as the message-id registry.
//! - **datagrams** ([`udp`]): a UDP socket bound close-on-exec (joining a
//!   multicast group when the address is one), sending with broadcast
//!   allowed and multicast kept to the local link, and receiving with a
//!   timeout.
//! - **shared memory** ([`shm`]): an unnamed memory object that gets its
//!   name atomically once initialised (exactly one racing creator wins),
//!   open/unlink by name (the `shm_open` namespace), anonymous objects
//!   (`memfd`), file-backed objects, shared read-write mappings, free-space
//!   query, and shared/exclusive `flock`s telling whether anyone has an
//!   object open; an anonymous object whose size is sealed, and a check
//!   that a received object is sealed (mapping an object a peer can shrink
//!   would let it crash us with `SIGBUS`).
//! - **futexes** ([`futex`]): wait on a 32-bit word in shared memory with a
//!   timeout and wake any number of waiters in any process; the calling
//!   thread's id and whether a thread id still names a live, non-zombie
//!   thread (lock-owner death detection).
//!
//! - **scheduling** ([`yield_now`]): let another runnable thread have the
//!   CPU (a spinning waiter on an overcommitted machine).
//!
//! Errors are `std::io::Error`; the layers above turn them into
//! [`crate::Error`] with the object's name.

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
