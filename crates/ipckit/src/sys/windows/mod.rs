//! The Windows backend: every call goes through `windows-sys`. It provides
//! shared memory ([`shm`]), the system's named sync objects ([`sync`]),
//! pipes ([`pipe`]) and mailslots ([`mailslot`]), and the connection
//! layer's sockets over named pipes ([`net`], with readiness in [`poll`]);
//! see the contract in [`super`]. Records are file locks (`fs`:
//! `LockFileEx`); futexes have no Windows form here. The async pipes run their overlapped I/O through `aio`
//! (feature `tokio`).

#[cfg(all(feature = "pipe", feature = "tokio"))]
pub(crate) mod aio;
mod fs;
pub(crate) mod mailslot;
pub(crate) mod net;
pub(crate) mod pipe;
pub(crate) mod poll;
pub(crate) mod shm;
pub(crate) mod sync;

use std::io;

pub(crate) use fs::{
    is_locked, lock_exclusive, process_exists, process_start_time, same_file, try_lock_exclusive,
};

/// Give the CPU to another runnable thread, if any.
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// `CreateFileW` flag for std's `custom_flags`: open a symbolic link (a
/// reparse point) itself instead of following it, so a link planted at a
/// record's path is never followed to another file.
pub(crate) fn no_follow_flag() -> u32 {
    windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT
}

/// The calling user, where the connection layer compares user ids. Windows
/// has no numeric user ids: [`net::peer_cred`] reports this value for a
/// peer process that runs as the calling user (token SIDs compared) and
/// `u32::MAX` for any other.
pub(crate) fn uid() -> u32 {
    0
}

/// Turn a `BOOL`-returning call's failure into the thread's last error.
pub(crate) fn check_bool(ok: windows_sys::core::BOOL) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `s` as a NUL-terminated UTF-16 string, for the `W` calls. A NUL inside
/// `s` is refused (it would silently cut the name short).
pub(crate) fn wide(s: &str) -> io::Result<Vec<u16>> {
    if s.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a name passed to Windows cannot contain NUL",
        ));
    }
    Ok(s.encode_utf16().chain(std::iter::once(0)).collect())
}
