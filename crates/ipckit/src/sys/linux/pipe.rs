//! Anonymous pipes and handing an fd to a child process.
//!
//! This file holds `unsafe` for exactly two reasons, each argued at its block:
//! running code between `fork` and `exec` (placing an fd at a chosen number),
//! and taking ownership of an fd number a parent handed to us.
#![allow(unsafe_code)]

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use rustix::io::FdFlags;
use rustix::pipe::PipeFlags;

/// A pipe whose two ends are close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?)
}

/// Arrange for `fd` to appear at number `target` in the child `cmd` starts,
/// without close-on-exec there. `fd` stays open (close-on-exec) in the parent
/// until `cmd` is dropped.
pub(crate) fn place_in_child(cmd: &mut Command, fd: OwnedFd, target: RawFd) {
    // Move the source above every allowed target first, so that no earlier
    // placement (a `dup2` onto its target) can overwrite a later source.
    let moved = rustix::io::fcntl_dupfd_cloexec(&fd, PASS_FD_LIMIT);
    drop(fd);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe work is allowed. It only issues the raw `dup2` /
    // `fcntl` system calls (rustix makes them directly, without allocating or
    // taking locks) or returns a prepared error. The source stays open until
    // then because the closure owns it. `target` is checked to be in
    // `0..PASS_FD_LIMIT` first (`from_raw_fd` would panic on -1, in a forked
    // child), and every source is at or above `PASS_FD_LIMIT`, so sources and
    // targets never collide. The `OwnedFd` built from `target` is wrapped in
    // `ManuallyDrop`, so it is never closed by us: it only names the slot
    // `dup2` writes into.
    unsafe {
        cmd.pre_exec(move || {
            let fd = match &moved {
                Ok(fd) => fd,
                Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
            };
            if !(0..PASS_FD_LIMIT).contains(&target) {
                // Not an allowed fd number: fail the spawn (no allocation here).
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::BADF.raw_os_error(),
                ));
            }
            let mut slot = ManuallyDrop::new(OwnedFd::from_raw_fd(target));
            rustix::io::dup2(fd, &mut slot)?;
            Ok(())
        });
    }
}

/// Child fd numbers must be below this; sources are moved to or above it.
pub(crate) const PASS_FD_LIMIT: RawFd = 256;

/// Adopt a descriptor this process inherited: make it close-on-exec again
/// (so it does not leak into this process's own children) and, if `fifo`,
/// check that it is a pipe.
pub(crate) fn adopt_inherited(fd: &OwnedFd, fifo: bool) -> io::Result<()> {
    if fifo
        && rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode)
            != rustix::fs::FileType::Fifo
    {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a pipe"));
    }
    rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)?;
    Ok(())
}
