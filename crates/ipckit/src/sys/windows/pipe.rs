//! Pipe calls on Windows: named pipe instances (`CreateNamedPipeW`),
//! clients (`CreateFileW` / `WaitNamedPipeW`), overlapped reads, writes,
//! connects and transactions bounded by a timeout (`CancelIoEx` when it
//! passes, without losing what already arrived), the peer's pid, and
//! anonymous pipes (`CreatePipe`) with inheritance switched on only for
//! the duration of one spawn.
//!
//! Every handle here is opened for overlapped I/O (`FILE_FLAG_OVERLAPPED`);
//! each operation carries its own manual-reset event and is complete (or
//! cancelled and complete) before the call returns, except a listening
//! instance's `ConnectNamedPipe` ([`Listening`]), whose `OVERLAPPED` is
//! boxed and kept until the connect completes or is cancelled.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, SetHandleInformation, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_OPERATION_ABORTED,
    ERROR_PIPE_CONNECTED, FALSE, GENERIC_READ, GENERIC_WRITE, HANDLE, HANDLE_FLAG_INHERIT,
    INVALID_HANDLE_VALUE, TRUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, TokenUser, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FlushFileBuffers, GetFileType, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE,
    FILE_FLAG_OVERLAPPED, FILE_READ_ATTRIBUTES, FILE_TYPE_PIPE, FILE_WRITE_ATTRIBUTES,
    OPEN_EXISTING, PIPE_ACCESS_DUPLEX, PIPE_ACCESS_INBOUND, PIPE_ACCESS_OUTBOUND,
    SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, CreatePipe, DisconnectNamedPipe,
    GetNamedPipeClientProcessId, GetNamedPipeHandleStateW, GetNamedPipeInfo,
    GetNamedPipeServerProcessId, SetNamedPipeHandleState, TransactNamedPipe, WaitNamedPipeW,
    PIPE_ACCEPT_REMOTE_CLIENTS, PIPE_READMODE_BYTE, PIPE_READMODE_MESSAGE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES,
    PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, OpenProcess, OpenProcessToken, ResetEvent, SetEvent,
    WaitForMultipleObjects, WaitForSingleObject, INFINITE, PROCESS_QUERY_LIMITED_INFORMATION,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::shm::Security;
use super::{check_bool, wide};

/// Take ownership of a handle a call returned; NULL or
/// `INVALID_HANDLE_VALUE` is its failure.
pub(crate) fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `h` is a valid handle the call just returned to us; nothing
    // else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// A timeout as whole milliseconds for a wait: rounded up (a non-zero wait
/// never becomes a poll), capped just below `INFINITE`; `None` is `INFINITE`.
fn millis(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => INFINITE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
        }
    }
}

/// A manual-reset event, not signalled (`CreateEventW`), for overlapped
/// operations and for waking a server's accept loop.
pub(crate) fn event() -> io::Result<OwnedHandle> {
    // SAFETY: no name, no security attributes: plain arguments.
    owned(unsafe { CreateEventW(std::ptr::null(), TRUE, FALSE, std::ptr::null()) })
}

/// `SetEvent`.
pub(crate) fn set_event(h: BorrowedHandle<'_>) {
    // SAFETY: `h` is a valid event handle. A failure leaves it unset, which
    // the waiter's own timeout or retry covers.
    unsafe { SetEvent(h.as_raw_handle()) };
}

/// `ResetEvent`.
pub(crate) fn reset_event(h: BorrowedHandle<'_>) {
    // SAFETY: `h` is a valid event handle.
    unsafe { ResetEvent(h.as_raw_handle()) };
}

/// `WaitForMultipleObjects(handles, any)`: the index of a signalled handle,
/// or `None` when `timeout` passed first.
pub(crate) fn wait_any(
    handles: &[BorrowedHandle<'_>],
    timeout: Option<Duration>,
) -> io::Result<Option<usize>> {
    let raw: Vec<HANDLE> = handles.iter().map(|h| h.as_raw_handle()).collect();
    // SAFETY: `raw` holds `raw.len()` valid handles for the whole call.
    let r =
        unsafe { WaitForMultipleObjects(raw.len() as u32, raw.as_ptr(), FALSE, millis(timeout)) };
    if r == WAIT_TIMEOUT {
        return Ok(None);
    }
    let i = r.wrapping_sub(WAIT_OBJECT_0) as usize;
    if i < raw.len() {
        Ok(Some(i))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which way a named pipe carries data, as `PIPE_ACCESS_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `PIPE_ACCESS_DUPLEX`.
    Duplex,
    /// `PIPE_ACCESS_INBOUND`: client to server.
    Inbound,
    /// `PIPE_ACCESS_OUTBOUND`: server to client.
    Outbound,
}

/// What a new named pipe instance is like (`CreateNamedPipeW`'s arguments).
#[derive(Debug, Clone)]
pub(crate) struct InstanceSpec {
    /// `\\.\pipe\…`.
    pub(crate) os_name: String,
    pub(crate) access: Access,
    /// `PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE`, else byte type and mode.
    pub(crate) message: bool,
    /// `PIPE_REJECT_REMOTE_CLIENTS` unless false.
    pub(crate) reject_remote: bool,
    /// `nMaxInstances`: 1 to 254, or `None` for `PIPE_UNLIMITED_INSTANCES`.
    pub(crate) max_instances: Option<u32>,
    /// `nOutBufferSize` and `nInBufferSize`.
    pub(crate) buffer: u32,
}

/// `CreateNamedPipeW(os_name, access | FILE_FLAG_OVERLAPPED [|
/// FILE_FLAG_FIRST_PIPE_INSTANCE], type | readmode | PIPE_WAIT |
/// remote-clients flag, max, buffer, buffer, 0, <user-only descriptor>)`.
/// `first`: fails (`ERROR_ACCESS_DENIED`) if the pipe exists already.
pub(crate) fn create_instance(spec: &InstanceSpec, first: bool) -> io::Result<OwnedHandle> {
    let w = wide(&spec.os_name)?;
    let sec = Security::for_mode_sync(0o600)?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sec.0,
        bInheritHandle: 0,
    };
    let mut open_mode = FILE_FLAG_OVERLAPPED
        | match spec.access {
            Access::Duplex => PIPE_ACCESS_DUPLEX,
            Access::Inbound => PIPE_ACCESS_INBOUND,
            Access::Outbound => PIPE_ACCESS_OUTBOUND,
        };
    if first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    let pipe_mode = PIPE_WAIT
        | if spec.message {
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE
        } else {
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE
        }
        | if spec.reject_remote {
            PIPE_REJECT_REMOTE_CLIENTS
        } else {
            PIPE_ACCEPT_REMOTE_CLIENTS
        };
    let max = spec.max_instances.unwrap_or(PIPE_UNLIMITED_INSTANCES);
    // SAFETY: `w` is NUL-terminated; `sa` and its descriptor live across the
    // call.
    owned(unsafe {
        CreateNamedPipeW(
            w.as_ptr(),
            open_mode,
            pipe_mode,
            max,
            spec.buffer,
            spec.buffer,
            0,
            &sa,
        )
    })
}

/// Open the client end of the pipe `os_name` (`CreateFileW(OPEN_EXISTING,
/// FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION)`:
/// the server may identify the client but not impersonate it). Tries read
/// and write first, then write only (an inbound pipe), then read only (an
/// outbound one), each with the attribute right the other way so the pipe's
/// state can still be read and set; returns the access that worked.
pub(crate) fn open_client(os_name: &str) -> io::Result<(OwnedHandle, Access)> {
    let w = wide(os_name)?;
    let tries = [
        (GENERIC_READ | GENERIC_WRITE, Access::Duplex),
        (GENERIC_WRITE | FILE_READ_ATTRIBUTES, Access::Inbound),
        (GENERIC_READ | FILE_WRITE_ATTRIBUTES, Access::Outbound),
    ];
    let mut last = None;
    for (rights, access) in tries {
        // SAFETY: `w` is NUL-terminated; no security attributes or template.
        let h = unsafe {
            CreateFileW(
                w.as_ptr(),
                rights,
                0,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        match owned(h) {
            Ok(h) => return Ok((h, access)),
            Err(e) if e.raw_os_error() == Some(5) => last = Some(e), // ERROR_ACCESS_DENIED
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(5)))
}

/// `WaitNamedPipeW(os_name, timeout)`: `Ok(true)` once an instance is free,
/// `Ok(false)` when the timeout passed (`ERROR_SEM_TIMEOUT`); other errors
/// (such as no pipe of that name) as they are.
pub(crate) fn wait_named(os_name: &str, timeout: Duration) -> io::Result<bool> {
    let w = wide(os_name)?;
    // At least 1 ms: 0 would mean the pipe's default wait.
    let ms = millis(Some(timeout)).max(1);
    // SAFETY: `w` is NUL-terminated.
    if unsafe { WaitNamedPipeW(w.as_ptr(), ms) } != 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(121) {
        // ERROR_SEM_TIMEOUT
        return Ok(false);
    }
    Err(e)
}

/// What [`GetNamedPipeInfo`] says of a pipe: its type (message or byte),
/// and its buffer sizes (the largest of output and input).
pub(crate) fn info(h: BorrowedHandle<'_>) -> io::Result<(bool, u32)> {
    let (mut flags, mut out, mut inb, mut max) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: `h` is a valid pipe handle; the outputs are plain u32s.
    check_bool(unsafe {
        GetNamedPipeInfo(h.as_raw_handle(), &mut flags, &mut out, &mut inb, &mut max)
    })?;
    Ok((flags & PIPE_TYPE_MESSAGE != 0, out.max(inb)))
}

/// How many instances the pipe of `h` has now (`GetNamedPipeHandleStateW`).
pub(crate) fn instances(h: BorrowedHandle<'_>) -> io::Result<u32> {
    let mut n = 0u32;
    // SAFETY: `h` is a valid pipe handle; `n` receives the count; the other
    // outputs are not asked for (NULL, and no user name buffer).
    check_bool(unsafe {
        GetNamedPipeHandleStateW(
            h.as_raw_handle(),
            std::ptr::null_mut(),
            &mut n,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    })?;
    Ok(n)
}

/// `SetNamedPipeHandleState(PIPE_READMODE_MESSAGE | PIPE_WAIT)`: read one
/// whole message per read (a message-type pipe's client end starts in byte
/// read mode).
pub(crate) fn set_message_read_mode(h: BorrowedHandle<'_>) -> io::Result<()> {
    let mode = PIPE_READMODE_MESSAGE | PIPE_WAIT;
    // SAFETY: `h` is a valid pipe handle; `mode` lives across the call; the
    // collection arguments are unused (NULL).
    check_bool(unsafe {
        SetNamedPipeHandleState(h.as_raw_handle(), &mode, std::ptr::null(), std::ptr::null())
    })
}

/// The pid at the other end: `GetNamedPipeClientProcessId` on a server
/// instance, `GetNamedPipeServerProcessId` on a client end.
pub(crate) fn peer_pid(h: BorrowedHandle<'_>, server_side: bool) -> Option<u32> {
    let mut pid = 0u32;
    // SAFETY: `h` is a valid pipe handle; `pid` receives the id.
    let ok = unsafe {
        if server_side {
            GetNamedPipeClientProcessId(h.as_raw_handle(), &mut pid)
        } else {
            GetNamedPipeServerProcessId(h.as_raw_handle(), &mut pid)
        }
    };
    (ok != 0 && pid != 0).then_some(pid)
}

/// The `TOKEN_USER` of `process`'s token, in a buffer of u64s (it holds
/// pointers into itself, so it must be 8-aligned).
fn token_user(process: HANDLE) -> io::Result<Vec<u64>> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is a valid process handle; `token` receives a new
    // handle on success.
    check_bool(unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) })?;
    let token = owned(token)?;
    let mut len = 0u32;
    // SAFETY: a size query: no buffer; `len` receives the size needed. Its
    // expected failure (ERROR_INSUFFICIENT_BUFFER) is not an error here.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            std::ptr::null_mut(),
            0,
            &mut len,
        )
    };
    if len == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` bytes.
    check_bool(unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast(),
            len,
            &mut len,
        )
    })?;
    Ok(buf)
}

/// Whether the process `pid` runs as the calling user (`OpenProcess` with
/// `PROCESS_QUERY_LIMITED_INFORMATION`, the token users' SIDs compared with
/// `EqualSid`). A process this user may not query is another user's.
pub(crate) fn runs_as_me(pid: u32) -> io::Result<bool> {
    // SAFETY: the pseudo-handle of the current process needs no closing.
    let me = token_user(unsafe { GetCurrentProcess() })?;
    // SAFETY: plain arguments; the result is checked by `owned`.
    let process = match owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid) })
    {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(5) => return Ok(false), // ERROR_ACCESS_DENIED
        Err(e) => return Err(e),
    };
    let them = match token_user(process.as_raw_handle()) {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(5) => return Ok(false),
        Err(e) => return Err(e),
    };
    // SAFETY: both buffers were filled with a TOKEN_USER (aligned, in
    // bounds) whose SID pointer points into the buffer, alive here.
    Ok(unsafe {
        let a = (*me.as_ptr().cast::<TOKEN_USER>()).User.Sid;
        let b = (*them.as_ptr().cast::<TOKEN_USER>()).User.Sid;
        EqualSid(a, b) != 0
    })
}

/// `DisconnectNamedPipe`: end the client's session on this instance (what
/// it has not read is discarded; it sees the pipe broken).
pub(crate) fn disconnect(h: BorrowedHandle<'_>) -> io::Result<()> {
    // SAFETY: `h` is a valid server-end pipe handle.
    check_bool(unsafe { DisconnectNamedPipe(h.as_raw_handle()) })
}

/// `FlushFileBuffers`: returns once the peer has read everything written.
pub(crate) fn flush(h: BorrowedHandle<'_>) -> io::Result<()> {
    // SAFETY: `h` is a valid pipe handle.
    check_bool(unsafe { FlushFileBuffers(h.as_raw_handle()) })
}

/// `CancelIoEx(h, NULL)`: cancel every operation in flight on `h`, from any
/// thread (they complete with `ERROR_OPERATION_ABORTED`).
pub(crate) fn cancel_all(h: BorrowedHandle<'_>) {
    // SAFETY: `h` is a valid handle; NULL cancels all its operations. A
    // failure means nothing was in flight.
    unsafe { CancelIoEx(h.as_raw_handle(), std::ptr::null()) };
}

/// How an overlapped transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// Complete: this many bytes (a whole message in message read mode).
    All(usize),
    /// `ERROR_MORE_DATA`: this many bytes of a message that goes on.
    More(usize),
    /// The timeout passed and the operation was cancelled before anything
    /// was transferred.
    TimedOut,
}

/// Run one overlapped operation on `h` with the event `ev`: `start` issues
/// it with the `OVERLAPPED` it is given. Waits up to `timeout` (`None`:
/// forever); when it passes, cancels the operation (`CancelIoEx`) and waits
/// for it to end, so nothing it transferred is lost: an operation that
/// completed anyway is reported as completed.
///
/// # Safety
///
/// `start` must issue exactly one overlapped operation on `h` with the
/// `OVERLAPPED` pointer it receives, whose buffers stay valid until this
/// function returns (it returns only once the operation is over), and
/// return that call's `BOOL`.
unsafe fn overlapped(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    timeout: Option<Duration>,
    start: impl FnOnce(*mut OVERLAPPED) -> i32,
) -> io::Result<Done> {
    // SAFETY: passed on from the caller, who meets the same conditions.
    unsafe { overlapped_until(h, ev, None, timeout, start) }
}

/// [`overlapped`], also ended early (cancelled, reported as
/// [`Done::TimedOut`] if nothing was transferred) once the event `stop` is
/// signalled.
///
/// # Safety
///
/// As for [`overlapped`].
unsafe fn overlapped_until(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    stop: Option<BorrowedHandle<'_>>,
    timeout: Option<Duration>,
    start: impl FnOnce(*mut OVERLAPPED) -> i32,
) -> io::Result<Done> {
    // SAFETY: OVERLAPPED is plain data; all zeroes is its initial state.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = ev.as_raw_handle();
    reset_event(ev);
    if start(&mut ov) == 0 {
        // SAFETY: reading the calling thread's last error, right after the call.
        let err = unsafe { GetLastError() };
        if err != ERROR_IO_PENDING && err != ERROR_MORE_DATA {
            return Err(io::Error::from_raw_os_error(err as i32));
        }
    }
    let mut timed_out = false;
    let done = match stop {
        None => {
            // SAFETY: `ev` is a valid event handle.
            let r = unsafe { WaitForSingleObject(ev.as_raw_handle(), millis(timeout)) };
            r == WAIT_OBJECT_0
        }
        Some(stop) => matches!(wait_any(&[ev, stop], timeout), Ok(Some(0))),
    };
    if !done {
        // Timed out (or the wait failed): cancel, then wait below for the
        // operation to end either way before `ov` and the buffers go.
        timed_out = true;
        // SAFETY: `ov` is the OVERLAPPED of an operation issued on `h`.
        unsafe { CancelIoEx(h.as_raw_handle(), &ov) };
    }
    let mut n = 0u32;
    // SAFETY: `ov` belongs to the operation on `h`; waiting (TRUE) returns
    // only once it is over.
    let ok = unsafe { GetOverlappedResult(h.as_raw_handle(), &ov, &mut n, TRUE) };
    if ok != 0 {
        return Ok(Done::All(n as usize));
    }
    // SAFETY: reading the calling thread's last error, right after the call.
    match unsafe { GetLastError() } {
        ERROR_MORE_DATA => Ok(Done::More(n as usize)),
        ERROR_OPERATION_ABORTED if timed_out => Ok(Done::TimedOut),
        e => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// `ReadFile` into `buf`, overlapped, bounded by `timeout`.
pub(crate) fn read(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<Done> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let ptr = buf.as_mut_ptr();
    // SAFETY: one ReadFile on `h` with the OVERLAPPED given; `buf` (at least
    // `len` bytes) is borrowed until `overlapped` returns, after the read.
    unsafe {
        overlapped(h, ev, timeout, |ov| {
            ReadFile(h.as_raw_handle(), ptr, len, std::ptr::null_mut(), ov)
        })
    }
}

/// `WriteFile` of `buf`, overlapped, waiting as long as it takes (a full
/// pipe waits for the reader); the number of bytes written.
pub(crate) fn write(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    buf: &[u8],
) -> io::Result<usize> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let ptr = buf.as_ptr();
    // SAFETY: one WriteFile on `h` with the OVERLAPPED given; `buf` is
    // borrowed until `overlapped` returns, after the write.
    let done = unsafe {
        overlapped(h, ev, None, |ov| {
            WriteFile(h.as_raw_handle(), ptr, len, std::ptr::null_mut(), ov)
        })
    }?;
    match done {
        Done::All(n) | Done::More(n) => Ok(n),
        Done::TimedOut => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// `ReadFile` into `buf`, overlapped, waiting until something arrives or
/// the event `stop` is signalled ([`Done::TimedOut`] then, with nothing
/// read).
pub(crate) fn read_until(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    stop: BorrowedHandle<'_>,
    buf: &mut [u8],
) -> io::Result<Done> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let ptr = buf.as_mut_ptr();
    // SAFETY: one ReadFile on `h` with the OVERLAPPED given; `buf` (at least
    // `len` bytes) is borrowed until `overlapped_until` returns, after the
    // read.
    unsafe {
        overlapped_until(h, ev, Some(stop), None, |ov| {
            ReadFile(h.as_raw_handle(), ptr, len, std::ptr::null_mut(), ov)
        })
    }
}

/// `WriteFile` of `buf`, overlapped, for at most `timeout` (`None`: as long
/// as it takes) and no longer than until `stop` is signalled: the bytes
/// written, or [`Done::TimedOut`] if the wait ended first (a byte-mode
/// write cancelled then may have passed part of `buf`).
pub(crate) fn write_until(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    stop: BorrowedHandle<'_>,
    buf: &[u8],
    timeout: Option<Duration>,
) -> io::Result<Done> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let ptr = buf.as_ptr();
    // SAFETY: one WriteFile on `h` with the OVERLAPPED given; `buf` is
    // borrowed until `overlapped_until` returns, after the write.
    unsafe {
        overlapped_until(h, ev, Some(stop), timeout, |ov| {
            WriteFile(h.as_raw_handle(), ptr, len, std::ptr::null_mut(), ov)
        })
    }
}

/// `TransactNamedPipe`: write `request` as one message and read the reply
/// into `reply`, overlapped. `ERROR_PIPE_BUSY` (unread data in the pipe)
/// and the errors of a pipe not in message read mode are returned as they
/// are.
pub(crate) fn transact(
    h: BorrowedHandle<'_>,
    ev: BorrowedHandle<'_>,
    request: &[u8],
    reply: &mut [u8],
) -> io::Result<Done> {
    let in_len = u32::try_from(request.len()).unwrap_or(u32::MAX);
    let out_len = u32::try_from(reply.len()).unwrap_or(u32::MAX);
    let (inp, outp) = (request.as_ptr(), reply.as_mut_ptr());
    // SAFETY: one TransactNamedPipe on `h` with the OVERLAPPED given; both
    // buffers are borrowed until `overlapped` returns, after the call.
    unsafe {
        overlapped(h, ev, None, |ov| {
            TransactNamedPipe(
                h.as_raw_handle(),
                inp.cast(),
                in_len,
                outp.cast(),
                out_len,
                std::ptr::null_mut(),
                ov,
            )
        })
    }
}

/// A server instance waiting for its client: `ConnectNamedPipe` in flight
/// (its `OVERLAPPED` boxed, so it stays put while this value moves).
pub(crate) struct Listening {
    h: Option<OwnedHandle>,
    ev: OwnedHandle,
    ov: Box<OVERLAPPED>,
    /// An operation is in flight (else the client is already there, or the
    /// connect failed at once).
    pending: bool,
}

// SAFETY: the OVERLAPPED is owned by this value and touched only through
// it; the handles are process-wide.
unsafe impl Send for Listening {}

impl Listening {
    /// Issue `ConnectNamedPipe` on the new instance `h`. A client that
    /// connected already (`ERROR_PIPE_CONNECTED`) makes the event signalled
    /// at once.
    pub(crate) fn start(h: OwnedHandle) -> io::Result<Listening> {
        let ev = event()?;
        // SAFETY: OVERLAPPED is plain data; all zeroes is its initial state.
        let mut ov: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        ov.hEvent = ev.as_raw_handle();
        // SAFETY: `h` is a server instance; `ov` is boxed and lives in the
        // returned value until the connect is over (see `Drop`).
        let ok = unsafe { ConnectNamedPipe(h.as_raw_handle(), &mut *ov) };
        // SAFETY: reading the calling thread's last error, right after the call.
        let err = unsafe { GetLastError() };
        let pending = if ok != 0 {
            false
        } else if err == ERROR_IO_PENDING {
            true
        } else if err == ERROR_PIPE_CONNECTED {
            false
        } else {
            return Err(io::Error::from_raw_os_error(err as i32));
        };
        if !pending {
            set_event(ev.as_handle());
        }
        Ok(Listening {
            h: Some(h),
            ev,
            ov,
            pending,
        })
    }

    /// Signalled once a client connected (or the connect failed).
    pub(crate) fn event(&self) -> BorrowedHandle<'_> {
        self.ev.as_handle()
    }

    /// After [`event`](Self::event) was signalled: the connected instance,
    /// or the connect's failure (the instance is then closed).
    pub(crate) fn finish(mut self) -> io::Result<OwnedHandle> {
        let h = self.h.take().expect("finished once");
        if self.pending {
            self.pending = false;
            let mut n = 0u32;
            // SAFETY: `ov` belongs to the connect on `h`; waiting (TRUE)
            // returns only once it is over.
            let ok = unsafe { GetOverlappedResult(h.as_raw_handle(), &*self.ov, &mut n, TRUE) };
            if ok == 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(ERROR_PIPE_CONNECTED as i32) {
                    return Err(e);
                }
            }
        }
        Ok(h)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let (true, Some(h)) = (self.pending, &self.h) {
            let mut n = 0u32;
            // SAFETY: `ov` belongs to the connect in flight on `h`: cancel
            // it and wait until it is over before the box is freed.
            unsafe {
                CancelIoEx(h.as_raw_handle(), &*self.ov);
                GetOverlappedResult(h.as_raw_handle(), &*self.ov, &mut n, TRUE);
            }
        }
    }
}

/// `CreatePipe`: an anonymous pipe (read end, write end), neither handle
/// inheritable.
pub(crate) fn anonymous() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let (mut r, mut w): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: `r` and `w` receive new handles; no security attributes (so
    // not inheritable); default buffer size.
    check_bool(unsafe { CreatePipe(&mut r, &mut w, std::ptr::null(), 0) })?;
    Ok((owned(r)?, owned(w)?))
}

/// Whether `h` is a pipe (`GetFileType` is `FILE_TYPE_PIPE`).
pub(crate) fn is_pipe(h: BorrowedHandle<'_>) -> bool {
    // SAFETY: `h` is a valid handle.
    unsafe { GetFileType(h.as_raw_handle()) == FILE_TYPE_PIPE }
}

/// Set or clear `HANDLE_FLAG_INHERIT` on `h`.
pub(crate) fn set_inheritable(h: BorrowedHandle<'_>, yes: bool) -> io::Result<()> {
    // SAFETY: `h` is a valid handle; only the inherit flag changes.
    check_bool(unsafe {
        SetHandleInformation(
            h.as_raw_handle(),
            HANDLE_FLAG_INHERIT,
            if yes { HANDLE_FLAG_INHERIT } else { 0 },
        )
    })
}

/// Serialises [`spawn_inheriting`]: while one spawn has its handles
/// inheritable, no other spawn through it runs.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Spawn `cmd` with `handles` inheritable for the duration of the spawn
/// only (`CreateProcessW` with inheritance on, which std always uses): set
/// `HANDLE_FLAG_INHERIT`, spawn, clear it, under one process-wide lock.
pub(crate) fn spawn_inheriting(
    cmd: &mut Command,
    handles: &[BorrowedHandle<'_>],
) -> io::Result<Child> {
    let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut set = 0;
    let mut r = Ok(());
    for h in handles {
        r = set_inheritable(*h, true);
        if r.is_err() {
            break;
        }
        set += 1;
    }
    let child = r.and_then(|()| cmd.spawn());
    for h in &handles[..set] {
        let _ = set_inheritable(*h, false);
    }
    child
}
