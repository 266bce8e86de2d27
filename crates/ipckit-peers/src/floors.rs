//! The peers of `ipckit bench`'s floors: what ipckit is compared with.
//!
//! The wire, shared with `crates/ipckit-cli/src/command/bench.rs` (keep
//! them in step):
//! - `raw-echo`, `tcp-echo`, `pipe-echo`: the bench writes 64 bytes and
//!   reads them back; `tcp-echo` first prints its address on a line.
//! - `shm-spin`, `futex`: the bench stores an odd value n in the shared
//!   word, the peer answers n + 1; the all-ones value ([`STOP_U64`],
//!   [`STOP_U32`]) tells the peer to exit.
//! - `handoff`: the mapping is [`HANDOFF_DATA`] bytes of words, then LEN
//!   data bytes. The bench writes the data, then stores an odd n in the
//!   u64 at 0; the peer reads every data byte, stores their sum (u64) at
//!   offset 8, then n + 1 at 0 (spinning both ways, as `shm-spin`).

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipckit::pipe::{PipeReader, PipeWriter};
use ipckit::shm::Mapping;

use crate::io;

/// The descriptor `ipckit bench` passed to this process as fd number `fd`.
fn inherited(fd: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    // SAFETY: the parent (`ipckit bench`) passed this fd number on the
    // command line for this one use; nothing else in this process owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The value that tells a `shm-spin` peer to exit (odd, so checked first).
pub const STOP_U64: u64 = u64::MAX;
/// The value that tells a `futex` peer to exit.
pub const STOP_U32: u32 = u32::MAX;

/// A bare Unix-socket echo server for one connection.
pub fn raw_echo(path: &Path) -> ipckit::Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| io(e, "raw echo: cannot bind"))?;
    let (mut s, _) = l.accept().map_err(|e| io(e, "raw echo: accept"))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).map_err(|e| io(e, "raw echo: read"))?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])
            .map_err(|e| io(e, "raw echo: write"))?;
    }
}

/// Echo 64-byte blocks between two inherited pipe ends.
pub fn pipe_echo(in_fd: i32, out_fd: i32) -> ipckit::Result<()> {
    let mut input = PipeReader::from_inherited_fd(inherited(in_fd))?;
    let mut output = PipeWriter::from_inherited_fd(inherited(out_fd))?;
    let mut buf = [0u8; 64];
    while input.read_exact(&mut buf).is_ok() {
        if output.write_all(&buf).is_err() {
            break;
        }
    }
    Ok(())
}

/// Echo 64-byte blocks on one TCP connection; the bound address is printed
/// first.
pub fn tcp_echo(addr: &str) -> ipckit::Result<()> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| io(e, "bind"))?;
    println!("{}", l.local_addr().map_err(|e| io(e, "addr"))?);
    std::io::stdout().flush().map_err(|e| io(e, "stdout"))?;
    let (mut s, _) = l.accept().map_err(|e| io(e, "accept"))?;
    s.set_nodelay(true).map_err(|e| io(e, "nodelay"))?;
    let mut buf = [0u8; 64];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
    Ok(())
}

/// True once the process that started this one is gone (we were
/// re-parented), so a busy-polling peer never outlives its bench.
fn orphaned(ppid: u32) -> bool {
    std::os::unix::process::parent_id() != ppid
}

/// Answer each odd value n in the shared word with n + 1, busy-polling.
pub fn shm_spin(fd: i32) -> ipckit::Result<()> {
    let ppid = std::os::unix::process::parent_id();
    let map = Mapping::from_inherited_fd(inherited(fd))?;
    let w = map.atomic_u64(0)?;
    let mut spins = 0u32;
    loop {
        let v = w.load(Ordering::Acquire);
        if v == STOP_U64 {
            return Ok(());
        }
        if v % 2 == 1 {
            w.store(v + 1, Ordering::Release);
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 14) == 0 {
            // Long past a normal round trip (~100 ns): the bench is likely
            // descheduled, so give up the CPU rather than starve it.
            std::thread::yield_now();
        }
        if spins % (1 << 20) == 0 && orphaned(ppid) {
            return Ok(());
        }
    }
}

/// Where the data of a `handoff` mapping starts (the words before it: the
/// hand-off word at 0, the sum at 8).
pub const HANDOFF_DATA: usize = 4096;

/// The sum of `data`'s bytes, computed as `ipckit service demo`'s `sum`
/// loan method does (`crates/ipckit-cli/src/command/service.rs`): u32 sums
/// of 64 KiB blocks, which vectorise. The floor does the same work as the
/// loan call it is the floor of.
fn byte_sum(data: &[u8]) -> u64 {
    data.chunks(1 << 16)
        .map(|c| u64::from(c.iter().map(|b| u32::from(*b)).sum::<u32>()))
        .sum()
}

/// The `handoff` floor's peer: on each odd value n, read every byte of the
/// LEN data bytes (their sum goes to offset 8), then answer n + 1.
pub fn handoff(fd: i32, len: usize) -> ipckit::Result<()> {
    let ppid = std::os::unix::process::parent_id();
    let map = Mapping::from_inherited_fd(inherited(fd))?;
    let w = map.atomic_u64(0)?;
    let sum = map.atomic_u64(8)?;
    if map.len() < HANDOFF_DATA + len {
        return Err(ipckit::Error::new(
            ipckit::ErrorKind::InvalidInput,
            format!(
                "handoff: the mapping has {} bytes, not {HANDOFF_DATA} + {len}",
                map.len()
            ),
        ));
    }
    let mut spins = 0u32;
    loop {
        let v = w.load(Ordering::Acquire);
        if v == STOP_U64 {
            return Ok(());
        }
        if v % 2 == 1 {
            // SAFETY: `HANDOFF_DATA + len` bytes are mapped (checked
            // above); they are plain bytes, and the bench does not write
            // them again until it sees n + 1.
            let data = unsafe {
                std::slice::from_raw_parts(map.as_ptr().add(HANDOFF_DATA).cast_const(), len)
            };
            let s = byte_sum(data);
            sum.store(s, Ordering::Relaxed);
            w.store(v + 1, Ordering::Release);
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 14) == 0 {
            std::thread::yield_now();
        }
        if spins % (1 << 20) == 0 && orphaned(ppid) {
            return Ok(());
        }
    }
}

/// The same, parking on the futex between values (no spinning).
pub fn futex(fd: i32) -> ipckit::Result<()> {
    let ppid = std::os::unix::process::parent_id();
    let map = Mapping::from_inherited_fd(inherited(fd))?;
    let w = map.atomic_u32(0)?;
    loop {
        let v = w.load(Ordering::Acquire);
        if v == STOP_U32 {
            return Ok(());
        }
        if v % 2 == 1 {
            w.store(v + 1, Ordering::Release);
            crate::futex::wake(w, 1);
            continue;
        }
        crate::futex::wait(w, v, Some(Duration::from_secs(1)))?;
        if w.load(Ordering::Acquire) == v && orphaned(ppid) {
            return Ok(());
        }
    }
}
