//! Shared-memory objects: named (`/dev/shm`, the directory `shm_open` uses
//! on Linux), anonymous (`memfd_create`) and file-backed; mapping them; and
//! the `flock`s that tell whether anyone still has one open.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Directory where Linux keeps `shm_open` objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// What keeps a shared-memory object alive: its descriptor.
pub(crate) type Object = OwnedFd;

fn shm_path(os_name: &str) -> String {
    format!("{SHM_DIR}/{os_name}")
}

/// Create an unnamed object in `/dev/shm` of `len` bytes (`O_TMPFILE`,
/// mode 0600). Nobody can open it by name until [`link`] publishes it, so a
/// creator that dies while initialising it leaves nothing behind.
pub(crate) fn create_unnamed(len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        SHM_DIR,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}

/// Give the unnamed object `fd` the name `os_name`; fails with
/// `AlreadyExists` if the name is taken (atomically: exactly one of several
/// racing creators wins). `linkat` never replaces or follows what is
/// already at the name, whoever owns it.
pub(crate) fn link(fd: BorrowedFd<'_>, os_name: &str) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        rustix::fs::CWD,
        shm_path(os_name).as_str(),
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(())
}

/// `shm_open(os_name, O_RDWR)`, except that a symbolic link is not
/// followed (`O_NOFOLLOW`: `/dev/shm` is world-writable, so a link there
/// may be anyone's).
pub(crate) fn open(os_name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        shm_path(os_name).as_str(),
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Who owns an open object and what it lets others do (`fstat`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    /// The owner's user id.
    pub(crate) uid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub(crate) mode: u32,
    /// Whether it is a regular file (a shared-memory object is one; a FIFO
    /// or device someone put in `/dev/shm` is not).
    pub(crate) regular: bool,
}

/// `fstat(fd)`: the owner and permission bits of the object behind `fd`
/// (checked on the descriptor, so the name cannot be swapped in between).
pub(crate) fn owner(fd: BorrowedFd<'_>) -> io::Result<Owner> {
    let st = rustix::fs::fstat(fd)?;
    Ok(Owner {
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        regular: rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::RegularFile,
    })
}

/// `fchmod(fd, mode)`: set the permission bits exactly (the umask does not
/// apply).
pub(crate) fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// `shm_unlink(os_name)`.
pub(crate) fn unlink(os_name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(os_name)?)
}

/// Whether `fd` is still the object the name `os_name` refers to.
pub(crate) fn is_named(fd: BorrowedFd<'_>, os_name: &str) -> io::Result<bool> {
    let a = rustix::fs::fstat(fd)?;
    match rustix::fs::stat(shm_path(os_name).as_str()) {
        Ok(b) => Ok(a.st_ino == b.st_ino && a.st_dev == b.st_dev),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An anonymous shared-memory object of `len` bytes (`memfd_create`,
/// close-on-exec).
pub(crate) fn memfd(len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("ipckit", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}

/// An anonymous shared-memory object of `len` bytes whose size can never
/// change again (`memfd_create` with sealing, then `F_SEAL_SHRINK |
/// F_SEAL_GROW | F_SEAL_SEAL`): a peer it is passed to cannot shrink it under
/// our mapping (which would turn our next access into `SIGBUS`).
pub(crate) fn memfd_sealed(len: u64) -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "ipckit-ring",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    rustix::fs::ftruncate(&fd, len)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// Whether `fd`'s size is sealed (it can neither shrink nor grow), so that
/// mapping it is safe from a peer truncating it.
pub(crate) fn size_sealed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::fs::SealFlags;
    let seals = rustix::fs::fcntl_get_seals(fd)?;
    Ok(seals.contains(SealFlags::SHRINK | SealFlags::GROW))
}

/// Open (creating if absent, mode 0600) a regular file for mapping; if it
/// is empty, size it to `len`. Returns the fd and the file's size.
pub(crate) fn open_file(path: &Path, len: u64) -> io::Result<(OwnedFd, u64)> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut size = size_of(fd.as_fd())?;
    if size == 0 {
        rustix::fs::ftruncate(&fd, len)?;
        size = len;
    }
    Ok((fd, size))
}

/// The size in bytes of the object behind `fd`.
pub(crate) fn size_of(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Bytes still free in the filesystem holding `path`; with no path, in
/// `/dev/shm` (the shared memory the kernel will give).
pub(crate) fn free_bytes(path: Option<&Path>) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path.unwrap_or(Path::new(SHM_DIR)))?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Take a shared `flock` on `fd` without waiting; `Ok(false)` if someone
/// holds it exclusively.
pub(crate) fn try_lock_shared(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Take an exclusive `flock` on `fd` without waiting; `Ok(false)` if
/// anyone else holds any lock on it.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A shared, read-write mapping of a whole object.
#[derive(Debug)]
pub(crate) struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; every access
// through it goes through raw pointers with bounds checks in `shm.rs`, and
// the memory is shared with other processes anyway, so sharing it between
// threads adds nothing new.
unsafe impl Send for Map {}
// SAFETY: as for `Send`.
unsafe impl Sync for Map {}

impl Map {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Map> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint) overlaps
        // nothing of ours; `fd` is a valid open descriptor.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
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
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing can
        // use the mapping after its owner is dropped.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
    }
}
