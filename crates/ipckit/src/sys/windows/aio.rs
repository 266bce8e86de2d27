//! Overlapped I/O as futures, for the async pipes (`pipe::tokio` on
//! Windows).
//!
//! An [`AsyncOp`] is one overlapped `ReadFile` or `WriteFile` at a time on
//! a handle opened with `FILE_FLAG_OVERLAPPED`, with its own manual-reset
//! event and buffer (boxed: the system writes to them until the operation
//! is over, wherever the `AsyncOp` moves). Polling it asks
//! `GetOverlappedResult` without waiting; while the operation is in flight
//! a registered wait (`RegisterWaitForSingleObject` on the event, run by the
//! system's thread pool: no thread of ours, nothing per call but the
//! registration) wakes the task once it completes. The handle is not
//! associated with an I/O completion port, so the blocking calls of
//! [`super::pipe`] may use it too (never at the same time as an `AsyncOp`).
//!
//! Why not tokio's `named_pipe` types: mio, under them, keeps a read of at
//! most 64 KiB (4 KiB at first) always in flight into its own buffer and
//! hands a message that did not fit (`ERROR_MORE_DATA`) out as plain
//! bytes, so message boundaries are lost for longer messages; here each
//! `ReadFile` result says whether the message goes on.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, OwnedHandle};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_MORE_DATA, HANDLE,
    INVALID_HANDLE_VALUE, TRUE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Threading::{
    RegisterWaitForSingleObject, UnregisterWaitEx, INFINITE, WT_EXECUTEONLYONCE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::pipe::{event, reset_event, Done};

/// What an [`AsyncOp`] keeps at a fixed address: the `OVERLAPPED` and
/// the buffer the system uses while the operation is in flight, and the
/// waker the registered wait's callback wakes.
struct State {
    ov: OVERLAPPED,
    ev: OwnedHandle,
    buf: Vec<u8>,
    waker: Mutex<Option<Waker>>,
}

/// One overlapped operation at a time on a handle (see the module's
/// documentation). Dropping it with an operation in flight cancels the
/// operation (`CancelIoEx`) and waits for it to end.
pub(crate) struct AsyncOp {
    /// Keeps the handle open while an operation may use it.
    owner: Arc<dyn AsHandle + Send + Sync>,
    st: Box<State>,
    pending: bool,
    /// The registered wait, or null.
    wait: HANDLE,
}

// SAFETY: the OVERLAPPED and the wait handle are only touched through
// `&mut self` (or by the system, which is what they are for); the callback
// only reads `State::waker`, a Mutex. Handles are process-wide.
unsafe impl Send for AsyncOp {}
// SAFETY: `&AsyncOp` gives access to nothing (every method takes `&mut`
// except `is_pending` and `data`, plain reads of owned memory).
unsafe impl Sync for AsyncOp {}

/// The registered wait's callback: wake the task waiting for the
/// operation.
unsafe extern "system" fn wake(ctx: *mut core::ffi::c_void, _timed_out: bool) {
    // SAFETY: `ctx` is the `State` of the `AsyncOp` that registered this
    // wait; it unregisters the wait (waiting for a running callback)
    // before the `State` can go.
    let st = unsafe { &*(ctx as *const State) };
    let w = st.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(w) = w {
        w.wake();
    }
}

impl AsyncOp {
    /// An idle operation on `owner`'s handle (which must be opened for
    /// overlapped I/O).
    pub(crate) fn new(owner: Arc<dyn AsHandle + Send + Sync>) -> io::Result<AsyncOp> {
        Ok(AsyncOp {
            owner,
            st: Box::new(State {
                // SAFETY: OVERLAPPED is plain data; all zeroes is its initial state.
                ov: unsafe { std::mem::zeroed() },
                ev: event()?,
                buf: Vec::new(),
                waker: Mutex::new(None),
            }),
            pending: false,
            wait: std::ptr::null_mut(),
        })
    }

    /// An operation is in flight (started, its result not taken yet).
    pub(crate) fn is_pending(&self) -> bool {
        self.pending
    }

    /// The buffer of the last operation: after a read, its first `n` bytes
    /// are what [`poll`](Self::poll) said was read.
    pub(crate) fn data(&self) -> &[u8] {
        &self.st.buf
    }

    /// Issue `ReadFile` of up to `len` bytes (at least 1). Only when idle.
    pub(crate) fn start_read(&mut self, len: usize) -> io::Result<()> {
        let len = len.clamp(1, u32::MAX as usize);
        self.st.buf.clear();
        self.st.buf.resize(len, 0);
        let h = self.owner.as_handle().as_raw_handle();
        let ptr = self.st.buf.as_mut_ptr();
        // SAFETY: one ReadFile on `h` into the boxed buffer of `len`
        // bytes, with the boxed OVERLAPPED; both stay put and alive until
        // the operation is over (`poll` saw it end, or `cancel`).
        self.start(|ov| unsafe { ReadFile(h, ptr, len as u32, std::ptr::null_mut(), ov) })
    }

    /// Issue `WriteFile` of `data` (copied into the operation's buffer).
    /// Only when idle.
    pub(crate) fn start_write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a write is at most 4 GiB",
            ));
        }
        self.st.buf.clear();
        self.st.buf.extend_from_slice(data);
        let h = self.owner.as_handle().as_raw_handle();
        let (ptr, len) = (self.st.buf.as_ptr(), data.len() as u32);
        // SAFETY: as in `start_read`: the boxed buffer and OVERLAPPED stay
        // alive and unmoved until the write is over.
        self.start(|ov| unsafe { WriteFile(h, ptr, len, std::ptr::null_mut(), ov) })
    }

    fn start(&mut self, call: impl FnOnce(*mut OVERLAPPED) -> i32) -> io::Result<()> {
        assert!(
            !self.pending,
            "an overlapped operation is already in flight"
        );
        // SAFETY: OVERLAPPED is plain data; all zeroes is its initial state.
        self.st.ov = unsafe { std::mem::zeroed() };
        self.st.ov.hEvent = self.st.ev.as_raw_handle();
        reset_event(self.st.ev.as_handle());
        if call(&mut self.st.ov) == 0 {
            // SAFETY: reading the calling thread's last error, right after the call.
            let err = unsafe { GetLastError() };
            if err != ERROR_IO_PENDING && err != ERROR_MORE_DATA {
                return Err(io::Error::from_raw_os_error(err as i32));
            }
        }
        // Complete at once or not: the result is taken by `poll`.
        self.pending = true;
        Ok(())
    }

    /// The operation's result without waiting: `None` while in flight.
    fn result(&mut self) -> Option<io::Result<Done>> {
        let h = self.owner.as_handle().as_raw_handle();
        let mut n = 0u32;
        // SAFETY: `ov` belongs to the operation in flight on `h`; FALSE:
        // no waiting.
        let ok = unsafe { GetOverlappedResult(h, &self.st.ov, &mut n, 0) };
        if ok != 0 {
            return Some(Ok(Done::All(n as usize)));
        }
        // SAFETY: reading the calling thread's last error, right after the call.
        match unsafe { GetLastError() } {
            ERROR_IO_INCOMPLETE => None,
            ERROR_MORE_DATA => Some(Ok(Done::More(n as usize))),
            e => Some(Err(io::Error::from_raw_os_error(e as i32))),
        }
    }

    /// The result of the operation in flight (`Done::All(n)`, or
    /// `Done::More(n)` for a part of a longer message): `n` bytes, at the
    /// start of [`data`](Self::data) for a read. Pending while it is in
    /// flight (the task is woken when it ends). Only when one is in flight.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Done>> {
        assert!(self.pending, "no overlapped operation in flight");
        if let Some(r) = self.result() {
            return Poll::Ready(self.finish(r));
        }
        *self.st.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        if self.wait.is_null() {
            let mut wait: HANDLE = std::ptr::null_mut();
            let ctx: *const State = &*self.st;
            // SAFETY: the event is valid; `ctx` (the boxed State) outlives
            // the registration: `unregister` waits for it to end before
            // the State is dropped or reused.
            let ok = unsafe {
                RegisterWaitForSingleObject(
                    &mut wait,
                    self.st.ev.as_raw_handle(),
                    Some(wake),
                    ctx.cast(),
                    INFINITE,
                    WT_EXECUTEONLYONCE,
                )
            };
            if ok == 0 {
                let e = io::Error::last_os_error();
                self.cancel();
                return Poll::Ready(Err(e));
            }
            self.wait = wait;
        }
        // The operation may have ended before the waker was stored.
        match self.result() {
            Some(r) => Poll::Ready(self.finish(r)),
            None => Poll::Pending,
        }
    }

    fn finish(&mut self, r: io::Result<Done>) -> io::Result<Done> {
        self.pending = false;
        self.unregister();
        r
    }

    /// Remove the registered wait, waiting for its callback if it runs now.
    fn unregister(&mut self) {
        if !self.wait.is_null() {
            // SAFETY: `wait` is our registration; INVALID_HANDLE_VALUE:
            // return only once no callback of it runs.
            unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) };
            self.wait = std::ptr::null_mut();
        }
        *self.st.waker.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Cancel the operation in flight, if any, and wait for it to end
    /// (what it transferred meanwhile is dropped).
    pub(crate) fn cancel(&mut self) {
        if self.pending {
            let h = self.owner.as_handle().as_raw_handle();
            let mut n = 0u32;
            // SAFETY: `ov` belongs to the operation in flight on `h`:
            // cancel it and wait (TRUE) until it is over.
            unsafe {
                CancelIoEx(h, &self.st.ov);
                GetOverlappedResult(h, &self.st.ov, &mut n, TRUE);
            }
            self.pending = false;
        }
        self.unregister();
    }
}

impl Drop for AsyncOp {
    fn drop(&mut self) {
        self.cancel();
    }
}
