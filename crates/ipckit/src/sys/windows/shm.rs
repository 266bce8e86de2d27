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
    DuplicateHandle, GetLastError, LocalFree, DUPLICATE_SAME_ACCESS, ERROR_ALREADY_EXISTS,
    ERROR_INSUFFICIENT_BUFFER, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo,
    SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    AclSizeInformation, GetAce, GetAclInformation, GetTokenInformation, TokenOwner, TokenUser,
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    TOKEN_INFORMATION_CLASS, TOKEN_QUERY,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetDiskFreeSpaceExW, FILE_SHARE_READ, FILE_SHARE_WRITE, READ_CONTROL,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_DUP_HANDLE,
};

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
    token_sid(TokenUser)
}

/// The SID the token of this process gives as owner of what it creates
/// without naming one (`TokenOwner`): the user, or for an elevated
/// administrator the Administrators group.
fn default_owner_sid() -> io::Result<String> {
    token_sid(TokenOwner)
}

/// A SID of this process's token: `class` is `TokenUser` or `TokenOwner`,
/// whose structures both start with the SID pointer.
fn token_sid(class: TOKEN_INFORMATION_CLASS) -> io::Result<String> {
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
            class,
            std::ptr::null_mut(),
            0,
            &mut len,
        )
    };
    // SAFETY: reading the calling thread's last error.
    if ok != 0 || unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
        return Err(io::Error::last_os_error());
    }
    // u64s: the structure holds pointers, so the buffer must be 8-aligned.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` bytes.
    check_bool(unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            class,
            buf.as_mut_ptr().cast::<c_void>(),
            len,
            &mut len,
        )
    })?;
    // SAFETY: the call filled `buf` with a TOKEN_USER or TOKEN_OWNER
    // (aligned, in bounds), both starting with a SID pointer that points
    // into `buf`, which outlives the use below.
    let sid = unsafe { *buf.as_ptr().cast::<PSID>() };
    sid_string(sid)
}

/// `sid` in string form (`ConvertSidToStringSidW`).
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID (the callers' contract); `text`
    // receives a LocalAlloc'd string.
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

/// Well-known SIDs that may hold rights on a user's objects without
/// widening them (they can reach everything anyway, or are the user's
/// own session): SYSTEM, Administrators, OWNER RIGHTS, and logon sessions
/// (`S-1-5-5-X-Y`, in the default DACL of a user's processes).
fn trusted_sid(sid: &str) -> bool {
    matches!(sid, "S-1-5-18" | "S-1-5-32-544" | "S-1-3-4") || sid.starts_with("S-1-5-5-")
}

/// Whether the existing named object `h` (a section or a sync object,
/// opened with `READ_CONTROL`) may be used: `Some(why)` if not. Its owner
/// must be the calling user or the owner this process's token gives its
/// own objects (an object without owner, which only Wine makes, passes);
/// unless `others_ok`, its DACL must grant nobody else
/// (`ACCESS_ALLOWED` entries for other SIDs than those and
/// [`trusted_sid`]; no DACL at all grants everyone). Denying entries are
/// no concern.
pub(crate) fn foreign_object(h: BorrowedHandle<'_>, others_ok: bool) -> io::Result<Option<String>> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `h` is a valid handle; the outputs receive pointers into
    // `sd`, a LocalAlloc'd descriptor freed by `_sd` below.
    let err = unsafe {
        GetSecurityInfo(
            h.as_raw_handle(),
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err as i32));
    }
    let _sd = Security(sd);
    let me = user_sid()?;
    let default_owner = default_owner_sid()?;
    // Windows gives every named object an owner; Wine gives none to an
    // object created without a security descriptor: nothing to check then.
    let owner = if owner.is_null() {
        None
    } else {
        Some(sid_string(owner)?)
    };
    if let Some(owner) = owner.filter(|o| *o != me && *o != default_owner) {
        return Ok(Some(format!(
            "its owner is {owner}, not you ({me}); another user may have created it to read or corrupt your data"
        )));
    }
    if others_ok {
        return Ok(None);
    }
    if dacl.is_null() {
        return Ok(Some("it has no DACL, which lets everyone use it".into()));
    }
    // SAFETY: ACL_SIZE_INFORMATION is plain data.
    let mut info: ACL_SIZE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `dacl` points into the live descriptor; `info` is sized.
    check_bool(unsafe {
        GetAclInformation(
            dacl,
            (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
            size_of::<ACL_SIZE_INFORMATION>() as u32,
            AclSizeInformation,
        )
    })?;
    for i in 0..info.AceCount {
        let mut ace: *mut c_void = std::ptr::null_mut();
        // SAFETY: `i` is below the ACL's entry count; `ace` receives a
        // pointer into the live descriptor.
        check_bool(unsafe { GetAce(dacl, i, &mut ace) })?;
        // SAFETY: every entry starts with an ACE_HEADER.
        let kind = unsafe { (*ace.cast::<ACE_HEADER>()).AceType };
        match kind {
            // ACCESS_ALLOWED_ACE_TYPE: the SID starts at `SidStart`.
            0 => {
                // SAFETY: an allowing entry is an ACCESS_ALLOWED_ACE, whose
                // SID follows in place (inside the descriptor).
                let sid =
                    unsafe { std::ptr::addr_of_mut!((*ace.cast::<ACCESS_ALLOWED_ACE>()).SidStart) };
                let sid = sid_string(sid.cast())?;
                if sid != me && sid != default_owner && !trusted_sid(&sid) {
                    return Ok(Some(format!("its DACL grants {sid} access")));
                }
            }
            // ACCESS_DENIED_ACE_TYPE.
            1 => {}
            other => {
                return Ok(Some(format!(
                    "its DACL has an entry of type {other} that may grant others access"
                )))
            }
        }
    }
    Ok(None)
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
        // The owner is the user itself (not the token's default owner,
        // which for an elevated process is the Administrators group).
        let me = user_sid()?;
        let mut sddl = format!("O:{me}D:P(A;;GA;;;{me})");
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

/// [`create_named`] with the section backed by the file at `path` instead
/// of the paging file, so what it holds outlives its last handle: the file
/// is opened (created if absent, grown to `len` if shorter) and the named
/// section made over it, or the existing section of that name opened (then
/// the file is not used). Returns the section, whether it existed, and the
/// file's first 8 bytes as they were before this call (zeroes for a new or
/// shorter file): a previous section's magic there means its content is
/// kept.
pub(crate) fn create_named_over_file(
    os_name: &str,
    path: &Path,
    len: u64,
    mode: u32,
) -> io::Result<(OwnedHandle, bool, [u8; 8])> {
    use std::io::Read as _;
    use std::os::windows::fs::OpenOptionsExt as _;
    let w = wide(os_name)?;
    // Not FILE_SHARE_DELETE: the file cannot be deleted while a section
    // (which keeps this handle) has it open.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .open(path)?;
    let mut head = [0u8; 8];
    if file.read_exact(&mut head).is_err() {
        head = [0; 8];
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    let sec = Security::for_mode(mode)?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sec.0,
        bInheritHandle: 0,
    };
    // SAFETY: `file` is an open file handle, `w` is NUL-terminated, `sa`
    // and its descriptor live across the call; the last error is read
    // right after it, on this thread. The section keeps the file open.
    let (h, err) = unsafe {
        let h = CreateFileMappingW(
            file.as_raw_handle(),
            &sa,
            PAGE_READWRITE,
            (len >> 32) as u32,
            len as u32,
            w.as_ptr(),
        );
        (h, GetLastError())
    };
    let h = owned(h)?;
    Ok((h, err == ERROR_ALREADY_EXISTS, head))
}

/// `OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE | READ_CONTROL, FALSE,
/// os_name)` (`READ_CONTROL`: for [`foreign_object`]); `NotFound` if no
/// section has that name.
pub(crate) fn open_named(os_name: &str) -> io::Result<OwnedHandle> {
    let w = wide(os_name)?;
    // SAFETY: `w` is NUL-terminated.
    owned(unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE | READ_CONTROL, 0, w.as_ptr()) })
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

/// `DuplicateHandle` of `h` (same access, not inheritable) into the
/// process `pid` (opened with `PROCESS_DUP_HANDLE`): the new handle's value
/// in that process, which owns it from then on.
pub(crate) fn duplicate_into(h: BorrowedHandle<'_>, pid: u32) -> io::Result<usize> {
    // SAFETY: plain arguments; the result is checked by `owned`.
    let target = owned(unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) })?;
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: `h` is a valid handle of this process (the pseudo-handle of
    // the current process needs no closing); `target` is a process handle
    // with PROCESS_DUP_HANDLE; `out` receives the value in `target`.
    check_bool(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h.as_raw_handle(),
            target.as_raw_handle(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    })?;
    Ok(out as usize)
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
