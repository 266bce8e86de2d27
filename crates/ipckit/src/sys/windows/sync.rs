//! Named sync objects on Windows: the system's mutexes (`CreateMutexW`),
//! events (`CreateEventW`) and semaphores (`CreateSemaphoreW`), opened by
//! name (`Open*W`) and waited on with `WaitForSingleObject`.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE, WAIT_ABANDONED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::READ_CONTROL;
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, CreateSemaphoreW, OpenEventW, OpenMutexW, OpenSemaphoreW,
    ReleaseMutex, ReleaseSemaphore, ResetEvent, SetEvent, WaitForSingleObject,
    CREATE_EVENT_MANUAL_RESET, EVENT_MODIFY_STATE, INFINITE, MUTEX_MODIFY_STATE,
    SEMAPHORE_MODIFY_STATE, SYNCHRONIZATION_SYNCHRONIZE,
};

use super::shm::{foreign_object, Security};
use super::{check_bool, wide};

/// `EVENT_QUERY_STATE` (winnt.h), needed by `NtQueryEvent`.
const EVENT_QUERY_STATE: u32 = 0x0001;
/// `SEMAPHORE_QUERY_STATE` (winnt.h), needed by `NtQuerySemaphore`.
const SEMAPHORE_QUERY_STATE: u32 = 0x0001;

/// What `NtQuerySemaphore(SemaphoreBasicInformation)` fills in.
#[repr(C)]
struct SemaphoreBasicInformation {
    current: i32,
    maximum: i32,
}

#[link(name = "ntdll")]
extern "system" {
    /// Documented in the WDK (`ntifs.h`); windows-sys does not declare it.
    fn NtQuerySemaphore(
        handle: HANDLE,
        class: u32,
        info: *mut SemaphoreBasicInformation,
        len: u32,
        ret_len: *mut u32,
    ) -> i32;
}

/// Which kind of object a create or open is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `CreateMutexW`, not owned initially.
    Mutex,
    /// `CreateEventW` with the manual-reset and initial-state flags.
    Event { manual: bool, set: bool },
    /// `CreateSemaphoreW` with the initial and maximum counts.
    Semaphore { initial: u32, max: u32 },
}

/// Take ownership of a handle a call returned; NULL is its failure.
fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `h` is a valid handle the call just returned to us; nothing
    // else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// Create the named object `os_name` of `kind` with a security descriptor
/// for `mode` (see [`Security::for_mode`]), or open the existing one of
/// that name (then `true`, from `ERROR_ALREADY_EXISTS`; it keeps its own
/// state and parameters).
pub(crate) fn create(os_name: &str, kind: Kind, mode: u32) -> io::Result<(OwnedHandle, bool)> {
    let w = wide(os_name)?;
    let sec = Security::for_mode_sync(mode)?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sec.0,
        bInheritHandle: 0,
    };
    // SAFETY: `w` is NUL-terminated, `sa` and its descriptor live across
    // the call; the last error is read right after it, on this thread.
    let (h, err) = unsafe {
        let h = match kind {
            Kind::Mutex => CreateMutexW(&sa, 0, w.as_ptr()),
            Kind::Event { manual, set } => {
                CreateEventW(&sa, i32::from(manual), i32::from(set), w.as_ptr())
            }
            Kind::Semaphore { initial, max } => {
                let clamp = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
                CreateSemaphoreW(&sa, clamp(initial), clamp(max), w.as_ptr())
            }
        };
        (h, GetLastError())
    };
    let h = owned(h)?;
    let existed = err == ERROR_ALREADY_EXISTS;
    if existed {
        refuse_foreign(h.as_handle(), mode & 0o066 != 0 || foreign_name(os_name))?;
    }
    Ok((h, existed))
}

/// Whether `os_name` is a name in the system's form (`Local\X`,
/// `Global\X`) rather than ipckit's (`Local\ipckit.<H>.<name>`): such an
/// object is a program's that does not use ipckit, with its default DACL,
/// so only its owner is checked.
fn foreign_name(os_name: &str) -> bool {
    !os_name.starts_with(r"Local\ipckit.")
}

/// Refuse (`PermissionDenied`) the existing object `h` unless it is this
/// user's and, unless `others_ok`, grants nobody else (see
/// [`foreign_object`]).
fn refuse_foreign(h: BorrowedHandle<'_>, others_ok: bool) -> io::Result<()> {
    match foreign_object(h, others_ok)? {
        None => Ok(()),
        Some(why) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the existing object is refused: {why}. Not opened: use another name or namespace, or, if it is widened on purpose, give the options' mode(0o666)"),
        )),
    }
}

/// Open the existing named object `os_name` of `kind` with the rights its
/// use needs (`SYNCHRONIZE` plus modify, and query for a semaphore);
/// `NotFound` if no such object exists. Its owner must be this user (see
/// [`foreign_object`]); its DACL is not checked (see [`open_checked`]).
pub(crate) fn open(os_name: &str, kind: Kind) -> io::Result<OwnedHandle> {
    open_checked(os_name, kind, 0o666)
}

/// [`open`], refusing (`PermissionDenied`) an object that is not this
/// user's or, unless `mode` has a group or other bit, that grants anybody
/// else (see [`foreign_object`]).
pub(crate) fn open_checked(os_name: &str, kind: Kind, mode: u32) -> io::Result<OwnedHandle> {
    let h = open_raw(os_name, kind)?;
    refuse_foreign(h.as_handle(), mode & 0o066 != 0 || foreign_name(os_name))?;
    Ok(h)
}

/// `Open{Mutex,Event,Semaphore}W` with the rights [`open`] needs, plus
/// `READ_CONTROL` (for [`foreign_object`]).
fn open_raw(os_name: &str, kind: Kind) -> io::Result<OwnedHandle> {
    let w = wide(os_name)?;
    // SAFETY: `w` is NUL-terminated.
    owned(unsafe {
        match kind {
            Kind::Mutex => OpenMutexW(
                SYNCHRONIZATION_SYNCHRONIZE | MUTEX_MODIFY_STATE | READ_CONTROL,
                0,
                w.as_ptr(),
            ),
            Kind::Event { .. } => OpenEventW(
                SYNCHRONIZATION_SYNCHRONIZE | EVENT_MODIFY_STATE | EVENT_QUERY_STATE | READ_CONTROL,
                0,
                w.as_ptr(),
            ),
            Kind::Semaphore { .. } => OpenSemaphoreW(
                SYNCHRONIZATION_SYNCHRONIZE
                    | SEMAPHORE_MODIFY_STATE
                    | SEMAPHORE_QUERY_STATE
                    | READ_CONTROL,
                0,
                w.as_ptr(),
            ),
        }
    })
}

/// The outcome of [`wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// `WAIT_OBJECT_0`.
    Signalled,
    /// `WAIT_ABANDONED` (mutexes only): signalled, previous owner gone.
    Abandoned,
    /// `WAIT_TIMEOUT`.
    TimedOut,
}

/// `WaitForSingleObject(h, timeout)`; `None` waits forever. A timeout is
/// rounded up to whole milliseconds (a non-zero wait never becomes a poll)
/// and capped just below `INFINITE`.
pub(crate) fn wait(h: BorrowedHandle<'_>, timeout: Option<Duration>) -> io::Result<Wait> {
    let ms = match timeout {
        None => INFINITE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
        }
    };
    // SAFETY: `h` is a valid handle for the duration of the call.
    let r = unsafe { WaitForSingleObject(h.as_raw_handle(), ms) };
    match r {
        WAIT_OBJECT_0 => Ok(Wait::Signalled),
        WAIT_ABANDONED => Ok(Wait::Abandoned),
        WAIT_TIMEOUT => Ok(Wait::TimedOut),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `WaitForMultipleObjects([h, cancel], any, INFINITE)`: the outcome of the
/// wait on `h`, or `None` once the event `cancel` is signalled first (an
/// async wait whose future went away).
#[cfg(feature = "tokio")]
pub(crate) fn wait_or_cancel(
    h: BorrowedHandle<'_>,
    cancel: BorrowedHandle<'_>,
) -> io::Result<Option<Wait>> {
    let raw = [h.as_raw_handle(), cancel.as_raw_handle()];
    // SAFETY: both handles are valid for the duration of the call.
    let r = unsafe {
        windows_sys::Win32::System::Threading::WaitForMultipleObjects(2, raw.as_ptr(), 0, INFINITE)
    };
    match r {
        WAIT_OBJECT_0 => Ok(Some(Wait::Signalled)),
        WAIT_ABANDONED => Ok(Some(Wait::Abandoned)),
        r if r == WAIT_OBJECT_0 + 1 || r == WAIT_ABANDONED + 1 => Ok(None),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A manual-reset event, not signalled: what cancels a
/// [`wait_or_cancel`].
#[cfg(feature = "tokio")]
pub(crate) fn cancel_event() -> io::Result<OwnedHandle> {
    super::pipe::event()
}

/// `ReleaseMutex`: fails unless the calling thread owns the mutex.
pub(crate) fn release_mutex(h: BorrowedHandle<'_>) -> io::Result<()> {
    // SAFETY: `h` is a valid mutex handle.
    check_bool(unsafe { ReleaseMutex(h.as_raw_handle()) })
}

/// `SetEvent`.
pub(crate) fn set_event(h: BorrowedHandle<'_>) -> io::Result<()> {
    // SAFETY: `h` is a valid event handle.
    check_bool(unsafe { SetEvent(h.as_raw_handle()) })
}

/// `ResetEvent`.
pub(crate) fn reset_event(h: BorrowedHandle<'_>) -> io::Result<()> {
    // SAFETY: `h` is a valid event handle.
    check_bool(unsafe { ResetEvent(h.as_raw_handle()) })
}

/// `ReleaseSemaphore(h, n)`: the previous count; `ERROR_TOO_MANY_POSTS`
/// (raw OS error 298) when it would pass the maximum.
pub(crate) fn release_semaphore(h: BorrowedHandle<'_>, n: u32) -> io::Result<u32> {
    let n = i32::try_from(n).map_err(|_| {
        io::Error::from_raw_os_error(windows_sys::Win32::Foundation::ERROR_TOO_MANY_POSTS as i32)
    })?;
    let mut prev = 0i32;
    // SAFETY: `h` is a valid semaphore handle; `prev` receives the count.
    check_bool(unsafe { ReleaseSemaphore(h.as_raw_handle(), n, &mut prev) })?;
    Ok(prev as u32)
}

/// The semaphore's current and maximum counts (`NtQuerySemaphore`).
pub(crate) fn query_semaphore(h: BorrowedHandle<'_>) -> io::Result<(u32, u32)> {
    let mut info = SemaphoreBasicInformation {
        current: 0,
        maximum: 0,
    };
    // SAFETY: `h` is a valid semaphore handle with query access; `info` is
    // the sized structure of information class 0 (basic).
    let status = unsafe {
        NtQuerySemaphore(
            h.as_raw_handle(),
            0,
            &mut info,
            size_of::<SemaphoreBasicInformation>() as u32,
            std::ptr::null_mut(),
        )
    };
    if status < 0 {
        return Err(io::Error::other(format!(
            "NtQuerySemaphore failed (NTSTATUS {status:#x})"
        )));
    }
    Ok((info.current as u32, info.maximum as u32))
}

/// What `NtQueryEvent(EventBasicInformation)` fills in.
#[repr(C)]
struct EventBasicInformation {
    /// 0: notification (manual reset); 1: synchronization (auto reset).
    kind: i32,
    state: i32,
}

#[link(name = "ntdll")]
extern "system" {
    /// Documented in the WDK (`ntifs.h`); windows-sys does not declare it.
    fn NtQueryEvent(
        handle: HANDLE,
        class: u32,
        info: *mut EventBasicInformation,
        len: u32,
        ret_len: *mut u32,
    ) -> i32;
}

/// The event's (manual reset, set) state (`NtQueryEvent`), without
/// consuming an auto-reset event.
pub(crate) fn query_event(h: BorrowedHandle<'_>) -> io::Result<(bool, bool)> {
    let mut info = EventBasicInformation { kind: 0, state: 0 };
    // SAFETY: `h` is a valid event handle with query access; `info` is the
    // sized structure of information class 0 (basic).
    let status = unsafe {
        NtQueryEvent(
            h.as_raw_handle(),
            0,
            &mut info,
            size_of::<EventBasicInformation>() as u32,
            std::ptr::null_mut(),
        )
    };
    if status < 0 {
        return Err(io::Error::other(format!(
            "NtQueryEvent failed (NTSTATUS {status:#x})"
        )));
    }
    Ok((info.kind == 0, info.state != 0))
}
