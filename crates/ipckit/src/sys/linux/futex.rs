//! Futexes on shared memory (never `FUTEX_PRIVATE_FLAG`: waiters live in
//! several processes) and thread identity / liveness for lock owners.
//!
//! A thread is identified by its kernel tid *and* its start time (field 22
//! of `/proc/<tid>/task/<tid>/stat`, clock ticks since boot): a tid can be
//! reused once its thread has exited, but the new thread has a different
//! start time. This module is the only place that reads `/proc` for that.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
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

/// Who the calling thread is, as a lock owner: its kernel tid and the
/// owner stamp of its start time (see [`stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    pub(crate) tid: u32,
    pub(crate) stamp: u32,
}

/// The 32-bit owner stamp of a start time: its low 32 bits, never 0 (0
/// means "no owner recorded"). 2^32 clock ticks is 497 days at 100 Hz, and
/// a tid is reused only after the kernel has cycled through `pid_max`
/// ids, so two incarnations of one tid with one stamp do not occur.
pub(crate) fn stamp(start_ticks: u64) -> u32 {
    (start_ticks as u32).max(1)
}

/// Fork detection: a page marked `MADV_WIPEONFORK` holding the current
/// "fork generation". A child of `fork` sees it zeroed, so its (single)
/// thread — whose thread-locals are a copy of the forking thread's — knows
/// its cached identity is the parent's. `None` if the kernel lacks
/// `MADV_WIPEONFORK` (before 4.14): then every call compares the pid.
fn fork_page() -> Option<&'static AtomicU64> {
    static PAGE: OnceLock<Option<&'static AtomicU64>> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: a fresh anonymous private mapping at an address the kernel
        // chooses; nothing else refers to that memory.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                4096,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .ok()?;
        // SAFETY: `p` is the 4096-byte mapping made just above.
        if unsafe { rustix::mm::madvise(p, 4096, rustix::mm::Advice::LinuxWipeOnFork) }.is_err() {
            // SAFETY: unmapping the mapping made above, never handed out.
            let _ = unsafe { rustix::mm::munmap(p, 4096) };
            return None;
        }
        // SAFETY: (1) the mapping is page-aligned, 4096 bytes, readable and
        // writable, and never unmapped, so a `'static` reference is valid;
        // (2) zeroed memory is a valid `AtomicU64`; (3) it is only ever
        // accessed through this atomic.
        Some(unsafe { AtomicU64::from_ptr(p.cast::<u64>()) })
    })
}

/// Generations handed out to fork pages; a child continues from its
/// parent's counter, so its new generation differs from every generation
/// its inherited thread-locals can hold.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The current fork generation (re-armed after a fork), or, without a fork
/// page, the pid.
fn generation() -> u64 {
    let Some(page) = fork_page() else {
        return u64::from(rustix::process::getpid().as_raw_nonzero().get() as u32) | 1 << 63;
    };
    match page.load(Ordering::Acquire) {
        0 => {
            let fresh = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
            match page.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => fresh,
                Err(other) => other,
            }
        }
        g => g,
    }
}

#[derive(Clone, Copy)]
struct Cached {
    generation: u64,
    tid: u32,
    /// 0 until first needed (reading `/proc` costs microseconds).
    stamp: u32,
}

thread_local! {
    static ME: Cell<Cached> = const { Cell::new(Cached { generation: 0, tid: 0, stamp: 0 }) };
}

fn cached() -> Cached {
    let g = generation();
    let c = ME.with(Cell::get);
    if c.generation == g && c.tid != 0 {
        return c;
    }
    let fresh = Cached {
        generation: g,
        tid: rustix::thread::gettid().as_raw_nonzero().get() as u32,
        stamp: 0,
    };
    ME.with(|m| m.set(fresh));
    fresh
}

/// The calling thread's kernel id (what goes into a mutex's owner field).
/// Cached per thread, and right in the child of a `fork`: the cache is
/// tagged with a fork generation kept in a `MADV_WIPEONFORK` page, so the
/// check is one memory load (a `getpid` per call on kernels before 4.14).
#[cfg(test)]
pub(crate) fn tid() -> u32 {
    cached().tid
}

/// The calling thread's tid and start-time stamp (read from `/proc` once
/// per thread; `stamp` is 1 if `/proc` cannot be read).
pub(crate) fn me() -> Me {
    let c = cached();
    if c.stamp != 0 {
        return Me {
            tid: c.tid,
            stamp: c.stamp,
        };
    }
    let s = start_time(c.tid).map_or(1, stamp);
    ME.with(|m| m.set(Cached { stamp: s, ..c }));
    Me {
        tid: c.tid,
        stamp: s,
    }
}

/// The uncached kernel tid of the calling thread (tests compare it with
/// [`tid`]).
#[cfg(test)]
pub(crate) fn gettid_uncached() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// The fields of `/proc/<tid>/task/<tid>/stat` after the command name
/// (which may hold spaces and parentheses): index 0 is the state (field 3),
/// index 19 the start time (field 22).
fn stat_fields(tid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn start_time(tid: u32) -> Option<u64> {
    stat_fields(tid)?.get(19)?.parse().ok()
}

/// What `/proc` says about a thread that a lock word names as its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// No such thread, or a zombie / dead task: it will never unlock.
    Dead,
    /// A running thread with this start-time stamp.
    Alive(u32),
    /// The thread exists but `/proc` does not say who it is.
    Unknown,
}

/// Look up the thread `tid` (see [`Owner`]).
pub(crate) fn owner(tid: u32) -> Owner {
    if !super::process_exists(tid) {
        return Owner::Dead;
    }
    let Some(f) = stat_fields(tid) else {
        // Exited between the two checks, or /proc is hidden from us.
        return if super::process_exists(tid) {
            Owner::Unknown
        } else {
            Owner::Dead
        };
    };
    match (
        f.first().map(String::as_str),
        f.get(19).and_then(|s| s.parse::<u64>().ok()),
    ) {
        (Some("Z" | "X" | "x"), _) => Owner::Dead,
        (_, Some(start)) => Owner::Alive(stamp(start)),
        _ => Owner::Unknown,
    }
}
