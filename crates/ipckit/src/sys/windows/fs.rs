//! Records on Windows: advisory-style locks on an open file that the system
//! releases when the holding handle closes, however its process ends
//! (`LockFileEx` / `UnlockFileEx`), and whether a process still exists.
//!
//! Windows byte-range locks are mandatory for the range they cover, so the
//! lock taken here covers one byte far past any real content
//! ([`LOCK_OFFSET`]): reading and writing the file stays free for
//! everyone, and only the lock itself is contended, as with `flock`. Like
//! `flock` on Linux (per open file description), the lock belongs to the
//! handle: two handles of one process contend with each other.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::Foundation::{ERROR_IO_PENDING, ERROR_LOCK_VIOLATION, WAIT_TIMEOUT};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, LockFileEx, UnlockFileEx, BY_HANDLE_FILE_INFORMATION,
    LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SYNCHRONIZE,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

use super::pipe::owned as owned_handle;

/// Where the one locked byte lies: far past any file's content.
const LOCK_OFFSET: u64 = u64::MAX - 1;

fn overlapped_at(offset: u64) -> OVERLAPPED {
    // SAFETY: OVERLAPPED is plain data; all zeroes is its initial state.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.Anonymous.Anonymous.Offset = offset as u32;
    ov.Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
    ov
}

/// `LockFileEx(flags)` on the lock byte: `Ok(false)` when another handle
/// holds a conflicting lock and `FAIL_IMMEDIATELY` was asked.
fn lock(file: &File, flags: u32) -> io::Result<bool> {
    let mut ov = overlapped_at(LOCK_OFFSET);
    // SAFETY: `file` is an open handle; `ov` lives across the call. A file
    // opened without FILE_FLAG_OVERLAPPED (std's default) completes the
    // call before it returns, so `ov` is not used after.
    let ok = unsafe { LockFileEx(file.as_raw_handle(), flags, 0, 1, 0, &mut ov) };
    if ok != 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(c) if c == ERROR_LOCK_VIOLATION as i32 || c == ERROR_IO_PENDING as i32 => Ok(false),
        _ => Err(e),
    }
}

fn unlock(file: &File) -> io::Result<()> {
    let mut ov = overlapped_at(LOCK_OFFSET);
    // SAFETY: as in `lock`.
    super::check_bool(unsafe { UnlockFileEx(file.as_raw_handle(), 0, 1, 0, &mut ov) })
}

/// Take an exclusive lock on `file` without waiting; `Ok(false)` if another
/// handle holds it.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    lock(file, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY)
}

/// Take an exclusive lock on `file`, waiting as long as another holder has
/// it.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    lock(file, LOCKFILE_EXCLUSIVE_LOCK).map(|_| ())
}

/// Whether some handle holds a lock on `file` (a shared lock is tried and
/// given back at once).
pub(crate) fn is_locked(file: &File) -> io::Result<bool> {
    if lock(file, LOCKFILE_FAIL_IMMEDIATELY)? {
        unlock(file)?;
        Ok(false)
    } else {
        Ok(true)
    }
}

/// The volume serial number and file index of an open file: which file it
/// is, whatever its path.
fn identity(file: &File) -> io::Result<(u32, u32, u32)> {
    // SAFETY: plain data; all zeroes is a valid value to be overwritten.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open handle; `info` is writable for the call.
    super::check_bool(unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) })?;
    Ok((
        info.dwVolumeSerialNumber,
        info.nFileIndexHigh,
        info.nFileIndexLow,
    ))
}

/// Whether `file` is the file `path` names now: a record deleted between
/// someone's open and their lock is not.
pub(crate) fn same_file(file: &File, path: &std::path::Path) -> bool {
    match (File::open(path).and_then(|f| identity(&f)), identity(file)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Whether a process with this pid exists and has not ended
/// (`OpenProcess(SYNCHRONIZE)`, then a zero wait on it). A process this
/// user may not open is counted as existing.
pub(crate) fn process_exists(pid: u32) -> bool {
    // SAFETY: no handle is inherited; `pid` is any number.
    let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    let Ok(h) = owned_handle(h) else {
        // ERROR_ACCESS_DENIED: it exists; ERROR_INVALID_PARAMETER: no such
        // process.
        return io::Error::last_os_error().raw_os_error() == Some(5);
    };
    // SAFETY: `h` is a valid process handle.
    unsafe { WaitForSingleObject(h.as_raw_handle(), 0) == WAIT_TIMEOUT }
}

/// When process `pid` was created (`GetProcessTimes`: 100 ns units since
/// 1601), which tells it from a later process given the same pid; `None` if
/// it cannot be opened.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    // SAFETY: no handle is inherited; `pid` is any number.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    let h = owned_handle(h).ok()?;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: `h` is a valid process handle; the four out-pointers are
    // writable for the call.
    let ok = unsafe {
        GetProcessTimes(
            h.as_raw_handle(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    let t = u64::from(created.dwHighDateTime) << 32 | u64::from(created.dwLowDateTime);
    (ok != 0 && t != 0).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_contend_between_handles_and_leave_the_content_free() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec");
        std::fs::write(&p, b"content").unwrap();
        let a = File::options().read(true).write(true).open(&p).unwrap();
        let b = File::options().read(true).write(true).open(&p).unwrap();
        assert!(!is_locked(&b).unwrap());
        assert!(try_lock_exclusive(&a).unwrap());
        assert!(is_locked(&b).unwrap());
        assert!(!try_lock_exclusive(&b).unwrap());
        // The content stays readable and writable by others.
        assert_eq!(std::fs::read(&p).unwrap(), b"content");
        std::fs::write(&p, b"changed").unwrap();
        drop(a);
        assert!(!is_locked(&b).unwrap());
        lock_exclusive(&b).unwrap();
        assert!(process_exists(std::process::id()));
        assert!(!process_exists(0x7fff_fff0));
    }
}
