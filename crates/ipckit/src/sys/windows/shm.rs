//! Shared-memory objects on Windows: section objects backed by the paging
//! file (named with `CreateFileMappingW` / `OpenFileMappingW`, or unnamed)
//! or by a file, and views of them (`MapViewOfFile`). A section vanishes
//! with its last handle: there is no unlink and no orphan.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::path::Path;
use std::ptr::NonNull;

use windows_sys::Win32::Foundation::{
    GetLastError, LocalFree, ERROR_ALREADY_EXISTS, ERROR_INSUFFICIENT_BUFFER, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::{check_bool, wide};

/// What keeps a shared-memory object alive: a section handle.
pub(crate) type Object = OwnedHandle;

/// Take ownership of a handle a call returned; NULL is its failure.
fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `h` is a valid handle the call just returned to us; nothing
    // else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// The calling user's SID in string form (`S-1-5-21-…`), from the process
/// token (`OpenProcessToken` + `GetTokenInformation(TokenUser)` +
/// `ConvertSidToStringSidW`).
fn user_sid() -> io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing;
    // `token` receives a new handle on success.
    check_bool(unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) })?;
    let token = owned(token)?;
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, `len` receives the size needed.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            std::ptr::null_mut(),
            0,
            &mut len,
        )
    };
    // SAFETY: reading the calling thread's last error.
    if ok != 0 || unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
        return Err(io::Error::last_os_error());
    }
    // u64s: TOKEN_USER holds pointers, so the buffer must be 8-aligned.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` bytes.
    check_bool(unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast::<c_void>(),
            len,
            &mut len,
        )
    })?;
    // SAFETY: the call filled `buf` with a TOKEN_USER (aligned, in bounds);
    // its SID pointer points into `buf`, which outlives the use below.
    let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid (above); `text` receives a LocalAlloc'd string.
    check_bool(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    // SAFETY: `text` is a NUL-terminated UTF-16 string from the call above;
    // it is read up to its NUL, then freed exactly once.
    let s = unsafe {
        let n = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
        LocalFree(text.cast::<c_void>());
        s
    };
    Ok(s)
}

/// A security descriptor for a new named object, freed on drop.
pub(crate) struct Security(pub(crate) PSECURITY_DESCRIPTOR);

impl Security {
    /// Grant the calling user everything and nobody else anything
    /// (`D:P(A;;GA;;;<user SID>)`, protected from inheritance); when `mode`
    /// has any group or other bit (`0o066`), also grant Everyone read and
    /// write (`(A;;GRGW;;;WD)`): Windows has no owning group for a section,
    /// so the group bits widen as far as the other bits.
    fn for_mode(mode: u32) -> io::Result<Security> {
        Self::with_everyone(mode, "GRGW")
    }

    /// As [`for_mode`](Security::for_mode) for a sync object (mutex, event,
    /// semaphore): widening grants Everyone `GRGWGX`, since waiting needs
    /// `SYNCHRONIZE` (the execute right of those objects).
    pub(crate) fn for_mode_sync(mode: u32) -> io::Result<Security> {
        Self::with_everyone(mode, "GRGWGX")
    }

    fn with_everyone(mode: u32, rights: &str) -> io::Result<Security> {
        let mut sddl = format!("D:P(A;;GA;;;{})", user_sid()?);
        if mode & 0o066 != 0 {
            sddl.push_str(&format!("(A;;{rights};;;WD)"));
        }
        let w = wide(&sddl)?;
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `w` is NUL-terminated; `sd` receives a LocalAlloc'd
        // descriptor that `Drop` frees.
        check_bool(unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                w.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(Security(sd))
    }
}

impl Drop for Security {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW
        // and freed only here.
        unsafe { LocalFree(self.0) };
    }
}

/// `CreateFileMappingW(INVALID_HANDLE_VALUE, <user-only descriptor>,
/// PAGE_READWRITE, len, os_name)`: a section of `len` bytes backed by the
/// paging file, or the existing one of that name (then `true`: the call
/// reported `ERROR_ALREADY_EXISTS`, and the section keeps its own size).
pub(crate) fn create_named(os_name: &str, len: u64, mode: u32) -> io::Result<(OwnedHandle, bool)> {
    let w = wide(os_name)?;
    let sec = Security::for_mode(mode)?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sec.0,
        bInheritHandle: 0,
    };
    // SAFETY: `w` is NUL-terminated, `sa` and its descriptor live across
    // the call; the last error is read right after it, on this thread.
    let (h, err) = unsafe {
        let h = CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            &sa,
            PAGE_READWRITE,
            (len >> 32) as u32,
            len as u32,
            w.as_ptr(),
        );
        (h, GetLastError())
    };
    let h = owned(h)?;
    Ok((h, err == ERROR_ALREADY_EXISTS))
}

/// `OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, FALSE, os_name)`;
/// `NotFound` if no section has that name.
pub(crate) fn open_named(os_name: &str) -> io::Result<OwnedHandle> {
    let w = wide(os_name)?;
    // SAFETY: `w` is NUL-terminated.
    owned(unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, w.as_ptr()) })
}

/// An unnamed section of `len` bytes backed by the paging file (not
/// inheritable; the default security of the process).
pub(crate) fn anonymous(len: u64) -> io::Result<OwnedHandle> {
    // SAFETY: no name and no security attributes: plain arguments.
    owned(unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (len >> 32) as u32,
            len as u32,
            std::ptr::null(),
        )
    })
}

/// Open (creating if absent) the file at `path`; if it is empty, size it to
/// `len`; return a section over the whole file and the file's size. The
/// section keeps the file open.
pub(crate) fn open_file(path: &Path, len: u64) -> io::Result<(OwnedHandle, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut size = file.metadata()?.len();
    if size == 0 {
        file.set_len(len)?;
        size = len;
    }
    // SAFETY: `file` is an open file handle for the duration of the call.
    let h = owned(unsafe {
        CreateFileMappingW(
            file.as_raw_handle(),
            std::ptr::null(),
            PAGE_READWRITE,
            0,
            0,
            std::ptr::null(),
        )
    })?;
    Ok((h, size))
}

/// Bytes still free: with no path, the commit memory the paging file can
/// still back (`GlobalMemoryStatusEx`); with a path, the disk space free to
/// the caller there (`GetDiskFreeSpaceExW`).
pub(crate) fn free_bytes(path: Option<&Path>) -> io::Result<u64> {
    match path {
        None => {
            // SAFETY: MEMORYSTATUSEX is plain data; all zeroes is valid.
            let mut st: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
            st.dwLength = size_of::<MEMORYSTATUSEX>() as u32;
            // SAFETY: `st` is a valid, sized MEMORYSTATUSEX.
            check_bool(unsafe { GlobalMemoryStatusEx(&mut st) })?;
            // Wine has been seen to report 0 now and then while sections
            // could still be created: a 0 counts as "unknown" (the caller
            // then does not refuse), and a real shortage still fails in
            // `CreateFileMappingW` with its own error.
            if st.ullAvailPageFile == 0 {
                return Err(io::Error::other("the commit limit reported no free memory"));
            }
            Ok(st.ullAvailPageFile)
        }
        Some(p) => {
            let w = wide(&p.to_string_lossy())?;
            let mut free = 0u64;
            // SAFETY: `w` is NUL-terminated; unused outputs may be NULL.
            check_bool(unsafe {
                GetDiskFreeSpaceExW(
                    w.as_ptr(),
                    &mut free,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            })?;
            Ok(free)
        }
    }
}

/// A read-write view of a section (`MapViewOfFile`); unmapped on drop.
#[derive(Debug)]
pub(crate) struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the view is plain memory owned by this value; every access goes
// through raw pointers with bounds checks in `shm.rs`, and other processes
// share it anyway.
unsafe impl Send for Map {}
// SAFETY: as for `Send`.
unsafe impl Sync for Map {}

impl Map {
    /// `MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, len)`.
    pub(crate) fn new(h: BorrowedHandle<'_>, len: usize) -> io::Result<Map> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        Self::view(h, len)
    }

    /// A view of the whole section, whose size is then the view's
    /// (`VirtualQuery`: the section's size rounded up to whole pages; the
    /// bytes past the section's end in its last page read as zero).
    pub(crate) fn whole(h: BorrowedHandle<'_>) -> io::Result<Map> {
        let mut m = Self::view(h, 0)?;
        // SAFETY: MEMORY_BASIC_INFORMATION is plain data.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `m.ptr` is the base of our view; `info` is sized.
        let n = unsafe {
            VirtualQuery(
                m.ptr.as_ptr().cast::<c_void>(),
                &mut info,
                size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        m.len = info.RegionSize;
        Ok(m)
    }

    fn view(h: BorrowedHandle<'_>, len: usize) -> io::Result<Map> {
        // SAFETY: `h` is a valid section handle; the system picks the
        // address, so the view overlaps nothing of ours.
        let a =
            unsafe { MapViewOfFile(h.as_raw_handle(), FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, len) };
        let ptr = NonNull::new(a.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Map { ptr, len })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the address MapViewOfFile returned; nothing uses the view
        // after its owner is dropped.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast::<c_void>(),
            })
        };
    }
}
