//! Named, anonymous and file-backed shared memory (Win32 `CreateFileMapping`
//! / `MapViewOfFile`).
//!
//! A [`Mapping`] is a region of memory that several processes see at once.
//! Three kinds:
//!
//! - **named**, memory-backed: [`Mapping::create`], [`Mapping::open`],
//!   [`Mapping::open_or_create`] (which reports whether it
//!   [existed](Mapping::existed)). The opener maps the size the creator
//!   chose, not one of its own.
//! - **anonymous** ([`Mapping::anonymous`], a `memfd`): no name; hand it to
//!   a child by inheritance ([`Mapping::as_fd`], `try_clone_fd` +
//!   [`crate::pipe::CommandExt::pass_fd`]) or over a connection, and rebuild
//!   it there with [`Mapping::from_fd`].
//! - **file-backed** ([`Mapping::from_file`]): the contents live in a file.
//!
//! Mutual exclusion is the caller's job, as in Win32; [`crate::sync`] has
//! the tools, and [`crate::map::SharedMap`] is a ready-made shared value.
//!
//! ```
//! use ipckit::shm::MappingOptions;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = MappingOptions::new().namespace(&ns);
//!
//! // process A
//! let a = opts.create("frame", 4096).unwrap();
//! a.write_at(0, b"hello").unwrap();
//!
//! // process B: sees A's size and bytes
//! let b = opts.open("frame").unwrap();
//! assert_eq!(b.len(), 4096);
//! let mut buf = [0u8; 5];
//! b.read_at(0, &mut buf).unwrap();
//! assert_eq!(&buf, b"hello");
//! opts.remove("frame").unwrap();
//! ```
//!
//! # The `/dev/shm` name
//!
//! A named mapping `NAME` in the namespace directory `DIR` is the POSIX
//! shared-memory object
//!
//! ```text
//! ipckit.<H>.<NAME with every '/' replaced by ':'>
//! ```
//!
//! where `<H>` is the FNV-1a 64-bit hash of the bytes of the canonical
//! namespace path `DIR`, as 16 lowercase hex digits. On Linux it is the file
//! `/dev/shm/ipckit.<H>.<...>`; `shm_open("/ipckit.<H>.<...>")` opens it,
//! as does Python's `multiprocessing.shared_memory.SharedMemory(name=
//! "ipckit.<H>.<...>")`. [`MappingOptions::os_name`] computes it. The object
//! starts with a 64-byte header (see `docs/PROTOCOL.md`); the user's bytes
//! follow at offset 64.
//!
//! # Lifetime and stale mappings
//!
//! A named mapping persists until [`MappingOptions::remove`] (like a POSIX
//! shm object and unlike Win32, where it vanishes with its last handle:
//! this is what lets `ipckit map set` and `ipckit map get` run as separate
//! commands). While a handle is open its process holds a shared `flock` on
//! the object, which the kernel drops when the process dies, however it
//! dies. So:
//!
//! - a creator that dies *while creating* leaves nothing: the object is
//!   built unnamed (`O_TMPFILE` in `/dev/shm`) and only gets its name, by an
//!   atomic `link`, once its header is complete. Exactly one of several
//!   racing creators wins the name.
//! - a mapping nobody has open any more is *orphaned*: [`Mapping::open`]
//!   and [`Mapping::open_or_create`] still open it (its content is kept),
//!   but an exclusive [`Mapping::create`] of the name replaces it, as a
//!   stale endpoint is replaced, and reports
//!   [`replaced_stale`](Mapping::replaced_stale). A mapping some live
//!   process has open is never replaced: `create` fails with
//!   [`ErrorKind::AlreadyExists`].
//!
//! # Who may open a named mapping
//!
//! `/dev/shm` is shared by every user and the name above is predictable,
//! so another user could create the object first ("squat" it) to read
//! what you write, feed you their bytes, or shrink it under your mapping
//! (your next access would die of `SIGBUS`). So:
//!
//! - ipckit creates every named object with mode **0600** (or the mode
//!   given to [`MappingOptions::mode`]), set before the object gets its
//!   name; nobody else can read, write or truncate it.
//! - before mapping an existing object (open, [`open_or_create`] finding
//!   it, or `create` looking at an orphan to replace), ipckit checks the
//!   open descriptor (`fstat`): it must be a regular file **owned by you
//!   or by the owner of the namespace directory**, and grant no permission
//!   beyond the options' mode (0600 unless you set [`MappingOptions::mode`]).
//!   Otherwise the call fails with [`ErrorKind::PermissionDenied`], naming
//!   the object, its owner and mode; the object is not mapped, not
//!   replaced and not removed.
//!
//! ```
//! # #[cfg(unix)] {
//! use std::os::unix::fs::PermissionsExt;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
//! let m = opts.create("private", 16).unwrap();
//! let path = format!("/dev/shm/{}", m.os_name().unwrap());
//! assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
//!
//! // Someone made it readable by all: default opens refuse it.
//! std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
//! let e = opts.open("private").unwrap_err();
//! assert_eq!(e.kind(), ipckit::ErrorKind::PermissionDenied);
//! // ...unless you accept that mode.
//! assert!(opts.clone().mode(0o644).open("private").is_ok());
//! opts.remove("private").unwrap();
//! # }
//! ```
//!
//! # On Windows
//!
//! A named mapping is a Win32 section backed by the paging file:
//! `CreateFileMappingW(INVALID_HANDLE_VALUE, …, PAGE_READWRITE, size,
//! name)` and `MapViewOfFile`; [`existed`](Mapping::existed) comes from
//! `ERROR_ALREADY_EXISTS`, and [`Mapping::open`] is `OpenFileMappingW`. The
//! object's name is `Local\ipckit.<H>.<NAME with '/' → ':'>`, with the same
//! `<H>` as on Linux (the hash of the namespace directory's canonical path,
//! which is therefore still created on Windows), and the same 64-byte
//! header, so the opener gets the creator's size and the kind is checked.
//! A name already in the system's form, `Local\X` or `Global\X`, is used as
//! is, and such a mapping has **no header**: it is what a program that does
//! not use ipckit creates, so an opener maps the whole section (its size
//! rounded up to whole pages).
//!
//! What differs from Linux:
//!
//! - a section vanishes with its last handle (Win32's rule), so there are
//!   no orphans: [`MappingOptions::remove`] is a no-op, `create` of a name
//!   that exists always fails with [`ErrorKind::AlreadyExists`] (some live
//!   process has it open) and [`Mapping::replaced_stale`] is always false.
//!   `ipckit map set` followed by a separate `ipckit map get` would not
//!   find the value.
//! - security: a named section is created with a security descriptor that
//!   grants only the calling user (`D:P(A;;GA;;;<your SID>)`); a
//!   [`MappingOptions::mode`] with any group or other bit also grants
//!   Everyone read and write. Before an existing section is mapped (open,
//!   or `open_or_create` finding it), its security is checked
//!   (`GetSecurityInfo`): its owner must be you (or the owner your token
//!   gives your objects, the Administrators group for an elevated
//!   process), and, unless [`MappingOptions::mode`] has a group or other
//!   bit, its DACL must grant nobody else (SYSTEM, Administrators and your
//!   logon session excepted); otherwise [`ErrorKind::PermissionDenied`].
//!   A `Local\X` / `Global\X` section a program that does not use ipckit
//!   made gets the owner check only (its DACL is that program's default).
//! - anonymous mappings are unnamed sections and file-backed ones are
//!   sections over the file; they expose their handle (`AsHandle`,
//!   `AsRawHandle`, `Into<OwnedHandle>`) instead of a descriptor. A
//!   mapping is handed to another process as a duplicated handle:
//!   `Mapping::duplicate_for` (`DuplicateHandle` into that process)
//!   gives the handle's value there, and that process maps it with
//!   `Mapping::from_handle`; a child may also inherit it
//!   (`Mapping::try_clone_handle` +
//!   `ipckit::pipe::CommandExt::spawn_with_handles`, which lets only that
//!   child inherit it). Either way the size seen there is the section's
//!   rounded up to whole pages.
//!
//! [`open_or_create`]: MappingOptions::open_or_create
#![allow(unsafe_code)]

#[cfg(unix)]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
#[cfg(windows)]
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::name::{fnv1a64, now_ms, validate_name, Namespace};
use crate::sys;

/// What the shared memory is called in errors about its free space.
#[cfg(unix)]
const SHM_SPACE: &str = sys::shm::SHM_DIR;
#[cfg(windows)]
const SHM_SPACE: &str = "the commit memory (RAM and paging file)";

/// Prefix of the operating system's names of named mappings.
#[cfg(unix)]
const OS_PREFIX: &str = "";
#[cfg(windows)]
const OS_PREFIX: &str = "Local\\";

/// Whether `name` is already in the operating system's own form (Windows:
/// `Local\X` or `Global\X`), to be used as is; such a name must have
/// something after the prefix, and no further `\\`. Always false on Linux.
fn native_name(name: &str) -> Result<bool> {
    if !cfg!(windows) {
        return Ok(false);
    }
    let Some(rest) = name
        .strip_prefix("Local\\")
        .or_else(|| name.strip_prefix("Global\\"))
    else {
        return Ok(false);
    };
    if rest.is_empty() || rest.contains(['\\', '\0']) || name.len() > 260 {
        return Err(Error::new(
            ErrorKind::InvalidName,
            "invalid name: after Local\\ or Global\\ give 1 or more characters other than '\\' and NUL (260 in all at most)",
        )
        .with_name(name));
    }
    Ok(true)
}

/// Size of the header at the start of every named mapping.
pub const HEADER_LEN: usize = 64;

/// Largest mapping accepted (1 TiB); beyond that is certainly a mistake.
const MAX_SIZE: u64 = 1 << 40;

const MAGIC: [u8; 8] = *b"IPCKSHM1";

/// What a named mapping holds; stored in its header so that opening a
/// mutex as a shared map (say) is a clear error rather than corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Raw = 1,
    Mutex = 2,
    Event = 3,
    Semaphore = 4,
    Map = 5,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Raw,
            2 => Kind::Mutex,
            3 => Kind::Event,
            4 => Kind::Semaphore,
            5 => Kind::Map,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "mapping",
            Kind::Mutex => "mutex",
            Kind::Event => "event",
            Kind::Semaphore => "semaphore",
            Kind::Map => "shared map",
        }
    }

    /// The one-word kind `ipckit ls` and [`ObjectInfo::kind`] use.
    #[cfg(unix)]
    fn word(self) -> &'static str {
        match self {
            Kind::Map => "map",
            k => k.as_str(),
        }
    }
}

/// The header of a named mapping, as laid out at offset 0 (native byte
/// order, little-endian on every supported target):
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | `[u8; 8]` | magic `IPCKSHM1` |
/// | 8 | u32 | kind (1 mapping, 2 mutex, 3 event, 4 semaphore, 5 shared map) |
/// | 12 | u32 | header length (64) |
/// | 16 | u64 | data length (the size the creator asked for) |
/// | 24 | u32 | creator pid |
/// | 28 | u32 | reserved (0) |
/// | 32 | u64 | creation time, ms since the Unix epoch |
/// | 40..64 | | reserved (0) |
#[derive(Debug, Clone, Copy)]
struct Header {
    kind: Kind,
    data_len: u64,
    creator_pid: u32,
    created_ms: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&(self.kind as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
        h[16..24].copy_from_slice(&self.data_len.to_ne_bytes());
        h[24..28].copy_from_slice(&self.creator_pid.to_ne_bytes());
        h[32..40].copy_from_slice(&self.created_ms.to_ne_bytes());
        h
    }

    /// Decode and check a header read from shared memory (untrusted): the
    /// data it announces must fit in the `object_len` bytes really there.
    fn decode(h: &[u8; HEADER_LEN], object_len: u64) -> std::result::Result<Header, String> {
        let u32_at = |o: usize| u32::from_ne_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_ne_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        if h[0..8] != MAGIC {
            return Err("it is not an ipckit mapping (bad magic)".into());
        }
        if u32_at(12) as usize != HEADER_LEN {
            return Err(format!("unsupported header length {}", u32_at(12)));
        }
        let kind =
            Kind::from_u32(u32_at(8)).ok_or_else(|| format!("unknown kind {}", u32_at(8)))?;
        let data_len = u64_at(16);
        if data_len == 0 || data_len > object_len.saturating_sub(HEADER_LEN as u64) {
            return Err(format!(
                "header announces {data_len} bytes but the object holds {object_len}"
            ));
        }
        Ok(Header {
            kind,
            data_len,
            creator_pid: u32_at(24),
            created_ms: u64_at(32),
        })
    }
}

/// Where and how to create or open named mappings (default: the namespace
/// from [`Namespace::from_env`]).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
/// let (m, existed) = (opts.open_or_create("x", 100).unwrap(), false);
/// assert_eq!(m.existed(), existed);
/// opts.remove("x").unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    ns: Option<Namespace>,
    mode: Option<u32>,
    /// On Windows: the file a named section is made over, so that its
    /// content outlives its last handle (clipboard boards).
    #[cfg(windows)]
    backing: Option<std::path::PathBuf>,
}

/// The mode named objects get, and the most an opened one may grant,
/// unless [`MappingOptions::mode`] says otherwise.
const DEFAULT_MODE: u32 = 0o600;

impl MappingOptions {
    /// Options with the default namespace.
    ///
    /// ```
    /// let _ = ipckit::shm::MappingOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Use namespace `ns` instead of the default.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.clone());
        self
    }

    /// Permission bits for the named objects these options create, and the
    /// most an existing object may grant for these options to open it.
    /// Default `0o600`: only its owner can read or write it. Only read and
    /// write bits are allowed, and the owner's (`0o600`) are required; an
    /// invalid mode fails the create or open with
    /// [`ErrorKind::InvalidInput`].
    ///
    /// Widening lets other users open the object directly (`shm_open`,
    /// another language; see the [module docs](self#who-may-open-a-named-mapping)):
    /// `0o660` for the object's group, `0o666` for everyone. It also lets
    /// them write and truncate it: map such an object only among users you
    /// trust. The mode is set with `fchmod` before the object gets its name
    /// (the umask does not apply). On the open side, an object granting
    /// more than `mode` is refused with [`ErrorKind::PermissionDenied`], so
    /// openers of a widened object set the same mode.
    ///
    /// On Windows the mode picks the new section's security descriptor:
    /// `0o600` grants only the calling user (its SID); any group or other
    /// bit also grants Everyone read and write. Existing sections are not
    /// checked against it there.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::os::unix::fs::PermissionsExt;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let shared = ipckit::shm::MappingOptions::new().namespace(&ns).mode(0o660);
    /// let m = shared.create("team", 16).unwrap();
    /// let path = format!("/dev/shm/{}", m.os_name().unwrap());
    /// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
    /// assert!(shared.open("team").is_ok());
    /// // Default options refuse an object others can write.
    /// let strict = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// assert_eq!(strict.open("team").unwrap_err().kind(), ipckit::ErrorKind::PermissionDenied);
    /// assert_eq!(strict.mode(0o700).create("x", 1).unwrap_err().kind(), ipckit::ErrorKind::InvalidInput);
    /// shared.remove("team").unwrap();
    /// # }
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The options' mode, checked.
    fn checked_mode(&self, name: &str) -> Result<u32> {
        let mode = self.mode.unwrap_or(DEFAULT_MODE);
        if mode & !0o666 != 0 || mode & 0o600 != 0o600 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("mode {mode:#o} is not allowed for shared memory: give read and write bits only (0o666 at most), including the owner's 0o600"),
            )
            .with_name(name));
        }
        Ok(mode)
    }

    /// Refuse to map the existing object `fd` (at `/dev/shm/{os}`) unless it
    /// is a regular file owned by the caller or by the namespace
    /// directory's owner, granting nothing beyond `mode`.
    #[cfg(unix)]
    fn check_owner(&self, name: &str, os: &str, fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
        let o = sys::shm::owner(fd).ctx(name, "cannot inspect the shared memory")?;
        let me = sys::uid();
        let ns_owner = self
            .ns()
            .ok()
            .and_then(|ns| std::fs::metadata(ns.dir()).ok())
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        let trusted_owner = o.uid == me || Some(o.uid) == ns_owner;
        if o.regular && trusted_owner && o.mode & !mode == 0 {
            return Ok(());
        }
        let whose = match ns_owner {
            Some(n) if n != me => format!("you (uid {me}) or the namespace's owner (uid {n})"),
            _ => format!("you (uid {me})"),
        };
        let why = if !o.regular {
            format!(
                "/dev/shm/{os} is not a regular file (owner uid {}, mode {:#o})",
                o.uid, o.mode
            )
        } else if !trusted_owner {
            format!(
                "/dev/shm/{os} belongs to uid {} (mode {:#o}), not to {whose}; another user may have created it to read or corrupt your data",
                o.uid, o.mode
            )
        } else {
            format!(
                "/dev/shm/{os} (owner uid {}) has mode {:#o}, which grants more than the {mode:#o} these options accept; other users may read or truncate it",
                o.uid, o.mode
            )
        };
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!("{why}. Not opened: remove it (as its owner or root) or use another namespace, or, if you made it so on purpose, open it with MappingOptions::mode({:#o})", o.mode & 0o666),
        )
        .with_name(name))
    }

    fn ns(&self) -> Result<Namespace> {
        match &self.ns {
            Some(ns) => Ok(ns.clone()),
            None => Namespace::from_env(),
        }
    }

    /// The operating system's name of the mapping `name`: on Linux the
    /// POSIX shared-memory name (without the leading `/`), on Windows the
    /// section's name `Local\ipckit.<H>.<…>` (a `Local\X` or `Global\X`
    /// name is returned as is); see the [module docs](self) for the rule.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let os = ipckit::shm::MappingOptions::new().namespace(&ns).os_name("a/b").unwrap();
    /// // `ipckit.<H>.a:b`; on Windows with the `Local\` prefix.
    /// assert!(os.contains("ipckit.") && os.ends_with(".a:b"));
    /// ```
    pub fn os_name(&self, name: &str) -> Result<String> {
        if native_name(name)? {
            return Ok(name.to_string());
        }
        validate_name(name)?;
        let ns = self.ns()?;
        let h = fnv1a64(ns.dir().as_os_str().as_encoded_bytes());
        Ok(format!(
            "{OS_PREFIX}ipckit.{h:016x}.{}",
            name.replace('/', ":")
        ))
    }

    /// Create the mapping `name` with `size` usable bytes (zeroed). Fails
    /// with [`ErrorKind::AlreadyExists`] if a mapping of that name is open
    /// in a live process; replaces an orphaned one, but only one of ours
    /// ([`ErrorKind::PermissionDenied`] for another user's object; see
    /// [who may open a named mapping](self#who-may-open-a-named-mapping)).
    /// The new object has mode 0600 unless [`MappingOptions::mode`] says
    /// otherwise.
    #[doc(alias = "CreateFileMapping")]
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// let m = opts.create("c", 10).unwrap();
    /// assert_eq!(opts.create("c", 10).unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// assert_eq!(opts.create("d", 0).unwrap_err().kind(), ipckit::ErrorKind::InvalidInput);
    /// drop(m);
    /// opts.remove("c").unwrap();
    /// ```
    pub fn create(&self, name: &str, size: u64) -> Result<Mapping> {
        self.create_kind(name, size, Kind::Raw, |_| Ok(()), true)
    }

    /// Open the existing mapping `name`, at the size its creator chose.
    /// Fails with [`ErrorKind::PermissionDenied`] if the object belongs to
    /// another user or grants more than the options' [mode](Self::mode)
    /// (see [who may open a named mapping](self#who-may-open-a-named-mapping)).
    #[doc(alias = "OpenFileMapping")]
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// assert_eq!(opts.open("none").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    pub fn open(&self, name: &str) -> Result<Mapping> {
        self.open_kind(name, Kind::Raw)
    }

    /// Open `name`, creating it with `size` bytes if absent;
    /// [`Mapping::existed`] tells which happened (Win32
    /// `ERROR_ALREADY_EXISTS`). An existing mapping keeps its own size,
    /// and is checked as [`open`](Self::open) checks it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// let a = opts.open_or_create("m", 100).unwrap();
    /// let b = opts.open_or_create("m", 5).unwrap();
    /// assert!(!a.existed() && b.existed());
    /// assert_eq!(b.len(), 100);
    /// opts.remove("m").unwrap();
    /// ```
    pub fn open_or_create(&self, name: &str, size: u64) -> Result<Mapping> {
        self.open_or_create_kind(name, size, Kind::Raw, |_| Ok(()))
    }

    /// Remove the name `name` (`shm_unlink`). Processes that have it open
    /// keep using the memory; later opens fail with
    /// [`ErrorKind::NotFound`].
    ///
    /// On Windows this is a no-op that only checks the name: a section
    /// vanishes by itself when its last handle closes, and cannot be
    /// removed while one is open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// # #[cfg(unix)]
    /// assert_eq!(opts.remove("none").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// # #[cfg(windows)] // a no-op there: a section goes with its last handle
    /// # assert!(opts.remove("none").is_ok());
    /// ```
    pub fn remove(&self, name: &str) -> Result<()> {
        let os = self.os_name(name)?;
        #[cfg(windows)]
        {
            match &self.backing {
                None => Ok(()),
                // A section of that name exists while a process has it
                // open: its file must stay (deleting it would lose the
                // content once that process closes it).
                Some(path) if sys::shm::open_named(&os).is_ok() => Err(Error::new(
                    ErrorKind::Busy,
                    format!("cannot remove the file of the shared memory ({}): a process still has it open; close it there first", path.display()),
                )
                .with_name(name)),
                Some(path) => match std::fs::remove_file(path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no shared memory named '{name}' ({}); check the name and the namespace", path.display()),
                    )
                    .with_name(name)),
                    Err(e) => Err(Error::new(
                        ErrorKind::Busy,
                        format!("cannot remove the file of the shared memory ({}): a process still has it open; close it there first", path.display()),
                    )
                    .with_name(name)
                    .with_source(e)),
                },
            }
        }
        #[cfg(unix)]
        sys::shm::unlink(&os).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no shared memory named '{name}' (/dev/shm/{os}); check the name and the namespace"),
                )
                .with_name(name)
            } else {
                Error::os(e, "cannot remove the shared memory").with_name(name)
            }
        })
    }

    #[cfg(unix)]
    pub(crate) fn open_or_create_kind(
        &self,
        name: &str,
        size: u64,
        kind: Kind,
        init: impl Fn(&Mapping) -> Result<()>,
    ) -> Result<Mapping> {
        // Open first (the common case); create if absent; if a racing
        // creator won the name in between, open theirs.
        for _ in 0..100 {
            match self.open_kind(name, kind) {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => return other,
            }
            match self.create_kind(name, size, kind, &init, false) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                other => return other,
            }
        }
        Err(Error::new(
            ErrorKind::Busy,
            "the name keeps appearing and disappearing; another process is creating and removing it in a loop",
        )
        .with_name(name))
    }

    /// Build the object unnamed, initialise it, then publish it by `link`.
    #[cfg(unix)]
    pub(crate) fn create_kind(
        &self,
        name: &str,
        size: u64,
        kind: Kind,
        init: impl FnOnce(&Mapping) -> Result<()>,
        exclusive: bool,
    ) -> Result<Mapping> {
        let os = self.os_name(name)?;
        let mode = self.checked_mode(name)?;
        let total = check_size(name, size, HEADER_LEN as u64, None)?;
        let fd =
            sys::shm::create_unnamed(total).ctx(name, "cannot create shared memory in /dev/shm")?;
        // Exactly the chosen mode, before anyone can open it by name.
        sys::shm::set_mode(fd.as_fd(), mode).ctx(name, "cannot set the shared memory's mode")?;
        let map = sys::shm::Map::new(fd.as_fd(), total as usize)
            .ctx(name, "cannot map the shared memory")?;
        let mut m = Mapping {
            map,
            obj: fd,
            data_off: HEADER_LEN,
            data_len: size as usize,
            name: Some(name.to_string()),
            os_name: Some(os.clone()),
            existed: false,
            replaced_stale: false,
            creator_pid: std::process::id(),
        };
        let header = Header {
            kind,
            data_len: size,
            creator_pid: std::process::id(),
            created_ms: now_ms(),
        };
        m.write_raw(0, &header.encode());
        init(&m)?;
        // Held for as long as this handle lives: "someone has it open".
        sys::shm::try_lock_shared(m.obj.as_fd()).ctx(name, "cannot lock the shared memory")?;
        loop {
            match sys::shm::link(m.obj.as_fd(), &os) {
                Ok(()) => return Ok(m),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(
                        Error::os(e, "cannot name the shared memory (is /proc mounted?)")
                            .with_name(name),
                    )
                }
            }
            if !exclusive {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    "shared memory of this name exists",
                )
                .with_name(name));
            }
            // Replace it only if nobody has it open (an orphan).
            let old = match sys::shm::open(&os) {
                Ok(fd) => fd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(
                        Error::os(e, "cannot inspect the existing shared memory").with_name(name)
                    )
                }
            };
            // Someone else's object is neither ours to judge nor to remove
            // (its mode does not matter: it is about to go).
            self.check_owner(name, &os, old.as_fd(), 0o7777)?;
            let orphan = sys::shm::try_lock_exclusive(old.as_fd())
                .ctx(name, "cannot lock the shared memory")?
                && sys::shm::is_named(old.as_fd(), &os)
                    .ctx(name, "cannot inspect the shared memory")?;
            if !orphan {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("shared memory /dev/shm/{os} is open in a live process; use open, or pick another name"),
                )
                .with_name(name));
            }
            let _ = sys::shm::unlink(&os);
            m.replaced_stale = true;
        }
    }

    #[cfg(unix)]
    pub(crate) fn open_kind(&self, name: &str, kind: Kind) -> Result<Mapping> {
        let os = self.os_name(name)?;
        let mode = self.checked_mode(name)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let fd = sys::shm::open(&os).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no {} named '{name}' (/dev/shm/{os}); create it first or check the namespace", kind.as_str()),
                    )
                    .with_name(name)
                } else {
                    Error::os(e, "cannot open the shared memory").with_name(name)
                }
            })?;
            // Before locking or mapping anything of it.
            self.check_owner(name, &os, fd.as_fd(), mode)?;
            // A replacer holds it exclusively for an instant; and the name
            // may have moved to a new object meanwhile: then start again.
            if !sys::shm::try_lock_shared(fd.as_fd()).ctx(name, "cannot lock the shared memory")?
                || !sys::shm::is_named(fd.as_fd(), &os)
                    .ctx(name, "cannot inspect the shared memory")?
            {
                if Instant::now() > deadline {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "the shared memory is being replaced and did not settle within 5 s; retry",
                    )
                    .with_name(name));
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let object_len =
                sys::shm::size_of(fd.as_fd()).ctx(name, "cannot read the shared memory's size")?;
            if object_len < HEADER_LEN as u64 {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("/dev/shm/{os} is too short to be an ipckit mapping; remove it"),
                )
                .with_name(name));
            }
            let map = sys::shm::Map::new(fd.as_fd(), object_len as usize)
                .ctx(name, "cannot map the shared memory")?;
            let mut m = Mapping {
                map,
                obj: fd,
                data_off: 0,
                data_len: object_len as usize,
                name: Some(name.to_string()),
                os_name: Some(os.clone()),
                existed: true,
                replaced_stale: false,
                creator_pid: 0,
            };
            m.apply_header(name, &format!("/dev/shm/{os}"), kind)?;
            return Ok(m);
        }
    }
}

/// A named shared-memory object of a namespace, as [`list_in`] finds it in
/// `/dev/shm`: a mapping, a shared map or a sync object (Linux).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let m = ipckit::shm::MappingOptions::new().namespace(&ns).create("frame", 100).unwrap();
/// let all = ipckit::shm::list_in(&ns).unwrap();
/// assert_eq!((all[0].name.as_str(), all[0].kind.as_str(), all[0].size), ("frame", "mapping", 100));
/// assert_eq!(all[0].open_by, [std::process::id()]);
/// # drop(m);
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("frame").unwrap();
/// ```
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectInfo {
    /// Its ipckit name.
    pub name: String,
    /// What it holds: `mapping`, `mutex`, `event`, `semaphore` or `map`;
    /// `unknown` when its header is not an ipckit one (or not readable).
    pub kind: String,
    /// Its usable size in bytes: the size its creator asked for (the whole
    /// object's for an `unknown` one).
    pub size: u64,
    /// Its file name in `/dev/shm`.
    pub os_name: String,
    /// The uid that owns it.
    pub owner_uid: u32,
    /// Its permission bits (`0o600` unless its creator widened them).
    pub mode: u32,
    /// The process that created it (0 if unknown); it may be gone.
    pub creator_pid: u32,
    /// Creation time, milliseconds since the Unix epoch (0 if unknown).
    pub created_ms: u64,
    /// The processes that have it open now (each handle holds a shared
    /// `flock`, which `/proc/locks` shows), sorted, without repeats. Empty:
    /// nobody has it open; it persists (so that `ipckit map set` and `map
    /// get` can be separate commands) until removed, and an exclusive
    /// create of its name replaces it.
    pub open_by: Vec<u32>,
}

#[cfg(unix)]
impl ObjectInfo {
    /// Whether some process has it open.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// drop(opts.create("left", 8).unwrap());
    /// assert!(!ipckit::shm::list_in(&ns).unwrap()[0].is_open());
    /// opts.remove("left").unwrap();
    /// ```
    pub fn is_open(&self) -> bool {
        !self.open_by.is_empty()
    }
}

/// Every named shared-memory object of namespace `ns` (mappings, shared
/// maps, mutexes, events, semaphores; clipboard boards are shared maps
/// named `clip/<board>`), sorted by name: what is in `/dev/shm` under the
/// namespace's prefix (see [the `/dev/shm` name](self#the-devshm-name)).
/// Reading it maps nothing and takes no lock, so it disturbs no user of
/// the objects. Objects of other users are listed too (their header is
/// read only if they let us).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// assert!(ipckit::shm::list_in(&ns).unwrap().is_empty());
/// let _e = ipckit::sync::EventOptions::new().namespace(&ns).create("jobs/ready").unwrap();
/// let all = ipckit::shm::list_in(&ns).unwrap();
/// assert_eq!((all[0].name.as_str(), all[0].kind.as_str()), ("jobs/ready", "event"));
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("jobs/ready").unwrap();
/// ```
#[cfg(unix)]
pub fn list_in(ns: &Namespace) -> Result<Vec<ObjectInfo>> {
    MappingOptions::new().namespace(ns).list()
}

/// The `flock`s held now, by inode: `(device, inode) -> pids`, from
/// `/proc/locks` (`None` if it cannot be read).
#[cfg(unix)]
fn flock_holders() -> Option<std::collections::HashMap<(u64, u64), Vec<u32>>> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let mut out: std::collections::HashMap<(u64, u64), Vec<u32>> = Default::default();
    for line in text.lines() {
        // `1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF`; a waiter's
        // line has `->` after the number and holds nothing yet.
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let (Ok(pid), Some(id)) = (f[4].parse::<u32>(), parse_lock_inode(f[5])) else {
            continue;
        };
        out.entry(id).or_default().push(pid);
    }
    Some(out)
}

/// `MAJ:MIN:INODE` (major and minor in hex, the inode in decimal, as
/// `/proc/locks` writes them) as `(st_dev, st_ino)`.
#[cfg(unix)]
fn parse_lock_inode(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split(':');
    let major = u64::from_str_radix(it.next()?, 16).ok()?;
    let minor = u64::from_str_radix(it.next()?, 16).ok()?;
    let ino = it.next()?.parse().ok()?;
    // Linux's `makedev`.
    let dev = ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff);
    Some((dev, ino))
}

/// The prefix of the `/dev/shm` names of the objects of the namespace
/// directory `dir` (its canonical path).
#[cfg(unix)]
fn os_prefix(dir: &Path) -> String {
    format!(
        "ipckit.{:016x}.",
        fnv1a64(dir.as_os_str().as_encoded_bytes())
    )
}

/// The named shared-memory objects of the namespace directory `dir`, even
/// if that directory no longer exists (deleting a namespace directory does
/// not delete its objects, which live in `/dev/shm`): as [`list_in`], for
/// the directory's canonical path, or, once it is gone, its absolute path.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path().join("ns")).unwrap();
/// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
/// drop(opts.create("left", 8).unwrap());
/// std::fs::remove_dir(ns.dir()).unwrap();
/// let leaked = ipckit::shm::list_at(&dir.path().canonicalize().unwrap().join("ns")).unwrap();
/// assert_eq!(leaked[0].name, "left");
/// # std::fs::create_dir(ns.dir()).unwrap();
/// # opts.remove("left").unwrap();
/// ```
#[cfg(unix)]
pub fn list_at(dir: &Path) -> Result<Vec<ObjectInfo>> {
    let shown = dir.display().to_string();
    let path = match dir.canonicalize() {
        Ok(p) => p,
        Err(_) => std::path::absolute(dir).ctx(&shown, "cannot resolve the namespace path")?,
    };
    list_prefix(&os_prefix(&path))
}

/// The objects whose `/dev/shm` name starts with `prefix`.
#[cfg(unix)]
fn list_prefix(prefix: &str) -> Result<Vec<ObjectInfo>> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let entries = std::fs::read_dir(sys::shm::SHM_DIR)
        .ctx(sys::shm::SHM_DIR, "cannot list the shared memory")?;
    let holders = flock_holders();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let os = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = os.strip_prefix(prefix) else {
            continue;
        };
        let name = rest.replace(':', "/");
        if validate_name(&name).is_err() {
            continue;
        }
        // Not followed if it is a link (anyone may plant one here).
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue; // removed meanwhile
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let mut info = ObjectInfo {
            name,
            kind: "unknown".into(),
            size: meta.len(),
            os_name: os.clone(),
            owner_uid: meta.uid(),
            mode: meta.mode() & 0o7777,
            creator_pid: 0,
            created_ms: 0,
            open_by: Vec::new(),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(sys::no_follow_flag())
            .open(entry.path());
        if let Ok(mut f) = file {
            let mut raw = [0u8; HEADER_LEN];
            if std::io::Read::read_exact(&mut f, &mut raw).is_ok() {
                if let Ok(h) = Header::decode(&raw, meta.len()) {
                    info.kind = h.kind.word().into();
                    info.size = h.data_len;
                    info.creator_pid = h.creator_pid;
                    info.created_ms = h.created_ms;
                }
            }
            info.open_by = match &holders {
                Some(h) => h
                    .get(&(meta.dev(), meta.ino()))
                    .cloned()
                    .unwrap_or_default(),
                // Without /proc/locks: probe (an exclusive lock we get
                // means nobody holds one; closing `f` drops it).
                None => match sys::try_lock_exclusive(&f) {
                    Ok(false) => vec![0],
                    _ => Vec::new(),
                },
            };
            info.open_by.sort_unstable();
            info.open_by.dedup();
        }
        out.push(info);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(unix)]
impl MappingOptions {
    /// Every named shared-memory object of these options' namespace; see
    /// [`list_in`].
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(ipckit::shm::MappingOptions::new().namespace(&ns).list().unwrap().is_empty());
    /// ```
    pub fn list(&self) -> Result<Vec<ObjectInfo>> {
        list_prefix(&os_prefix(self.ns()?.dir()))
    }
    /// Remove the object `name` if nobody has it open (an orphan, see
    /// [stale mappings](self#lifetime-and-stale-mappings)): `Ok(true)` if
    /// it was removed, `Ok(false)` if some process has it open (it is then
    /// left alone). Only an object of ours (or of the namespace's owner) is
    /// removed ([`ErrorKind::PermissionDenied`] otherwise);
    /// [`ErrorKind::NotFound`] if there is none.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// let m = opts.create("frame", 16).unwrap();
    /// assert!(!opts.remove_unused("frame").unwrap()); // `m` has it open
    /// drop(m);
    /// assert!(opts.remove_unused("frame").unwrap());
    /// assert_eq!(opts.open("frame").unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// ```
    pub fn remove_unused(&self, name: &str) -> Result<bool> {
        let os = self.os_name(name)?;
        let fd = sys::shm::open(&os).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no shared memory named '{name}' (/dev/shm/{os}); check the name and the namespace"),
                )
                .with_name(name)
            } else {
                Error::os(e, "cannot open the shared memory").with_name(name)
            }
        })?;
        // As an exclusive create replacing an orphan does: ours, nobody's
        // lock on it, and still the object of that name.
        self.check_owner(name, &os, fd.as_fd(), 0o7777)?;
        let unused = sys::shm::try_lock_exclusive(fd.as_fd())
            .ctx(name, "cannot lock the shared memory")?
            && sys::shm::is_named(fd.as_fd(), &os).ctx(name, "cannot inspect the shared memory")?;
        if !unused {
            return Ok(false);
        }
        sys::shm::unlink(&os).ctx(name, "cannot remove the shared memory")?;
        Ok(true)
    }
}

#[cfg(windows)]
impl MappingOptions {
    /// Make named sections over the file at `path` (created if absent)
    /// instead of the paging file: what they hold outlives their last
    /// handle, and the next create finds it there.
    pub(crate) fn backing_file(mut self, path: std::path::PathBuf) -> Self {
        self.backing = Some(path);
        self
    }

    /// Open `name`, or create it when absent (`exclusive`: fail with
    /// `AlreadyExists` instead of opening).
    pub(crate) fn create_kind(
        &self,
        name: &str,
        size: u64,
        kind: Kind,
        init: impl FnOnce(&Mapping) -> Result<()>,
        exclusive: bool,
    ) -> Result<Mapping> {
        let os = self.os_name(name)?;
        let mode = self.checked_mode(name)?;
        let raw = native_name(name)?;
        let header = if raw { 0 } else { HEADER_LEN };
        let total = check_size(name, size, header as u64, None)?;
        let (h, existed) = match &self.backing {
            None => sys::shm::create_named(&os, total, mode)
                .ctx(name, "cannot create the shared memory")?,
            Some(path) => {
                let (h, existed, head) =
                    sys::shm::create_named_over_file(&os, path, total, mode)
                        .ctx(name, "cannot create the shared memory over its file")?;
                // A previous section's content in the file is taken as is.
                (h, existed || (!raw && head == MAGIC))
            }
        };
        if existed {
            if exclusive {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("shared memory {os} exists (a live process has it open: a Windows section lives as long as a handle to it); use open, or pick another name"),
                )
                .with_name(name));
            }
            return self.adopt(name, &os, h, kind, raw, mode);
        }
        let map = sys::shm::Map::new(h.as_handle(), total as usize)
            .ctx(name, "cannot map the shared memory")?;
        let mut m = Mapping {
            map,
            obj: h,
            data_off: header,
            data_len: size as usize,
            name: Some(name.to_string()),
            os_name: Some(os),
            existed: false,
            replaced_stale: false,
            creator_pid: std::process::id(),
        };
        if !raw {
            // Everything but the magic, then the magic (release): an opener
            // that sees the magic sees the whole header.
            let h = Header {
                kind,
                data_len: size,
                creator_pid: std::process::id(),
                created_ms: now_ms(),
            };
            m.write_raw(8, &h.encode()[8..]);
            init(&m)?;
            m.header_magic().store(
                u64::from_ne_bytes(MAGIC),
                std::sync::atomic::Ordering::Release,
            );
        } else {
            init(&m)?;
        }
        Ok(m)
    }

    pub(crate) fn open_or_create_kind(
        &self,
        name: &str,
        size: u64,
        kind: Kind,
        init: impl Fn(&Mapping) -> Result<()>,
    ) -> Result<Mapping> {
        self.create_kind(name, size, kind, init, false)
    }

    pub(crate) fn open_kind(&self, name: &str, kind: Kind) -> Result<Mapping> {
        let os = self.os_name(name)?;
        let mode = self.checked_mode(name)?;
        let opened = match (sys::shm::open_named(&os), &self.backing) {
            // The section is gone but its file kept what it held.
            (Err(e), Some(path)) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::metadata(path) {
                    Ok(m) if m.len() >= HEADER_LEN as u64 => {
                        sys::shm::create_named_over_file(&os, path, m.len(), mode).and_then(
                            |(h, existed, head)| {
                                if existed || head == MAGIC {
                                    Ok(h)
                                } else {
                                    Err(e)
                                }
                            },
                        )
                    }
                    _ => Err(e),
                }
            }
            (r, _) => r,
        };
        let h = opened.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no {} named '{name}' ({os}); create it first or check the namespace (a Windows section vanishes with its last handle)", kind.as_str()),
                )
                .with_name(name)
            } else {
                Error::os(e, "cannot open the shared memory").with_name(name)
            }
        })?;
        self.adopt(name, &os, h, kind, native_name(name)?, mode)
    }

    /// Map the whole existing section `h`; unless it is `raw` (a name in
    /// the system's form), wait (5 s at most) for its creator to finish the
    /// header, then check it. First its security: it must be this user's
    /// and, unless `mode` widens or the name is `raw`, grant nobody else.
    fn adopt(
        &self,
        name: &str,
        os: &str,
        h: OwnedHandle,
        kind: Kind,
        raw: bool,
        mode: u32,
    ) -> Result<Mapping> {
        let others_ok = raw || mode & 0o066 != 0;
        match sys::shm::foreign_object(h.as_handle(), others_ok) {
            Ok(None) => {}
            Ok(Some(why)) => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("shared memory {os} is refused: {why}. Not opened: use another name or namespace, or, if it is widened on purpose, open it with MappingOptions::mode(0o666)"),
                )
                .with_name(name))
            }
            Err(e) => {
                return Err(
                    Error::os(e, format!("cannot read the security of {os}")).with_name(name)
                )
            }
        }
        let map = sys::shm::Map::whole(h.as_handle()).ctx(name, "cannot map the shared memory")?;
        let object_len = map.len();
        let mut m = Mapping {
            map,
            obj: h,
            data_off: 0,
            data_len: object_len,
            name: Some(name.to_string()),
            os_name: Some(os.to_string()),
            existed: true,
            replaced_stale: false,
            creator_pid: 0,
        };
        if raw {
            return Ok(m);
        }
        if object_len < HEADER_LEN {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("{os} is too short to be an ipckit mapping"),
            )
            .with_name(name));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while m.header_magic().load(std::sync::atomic::Ordering::Acquire) == 0 {
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{os} exists but its creator did not finish its header within 5 s (it may have died while creating it); retry"),
                )
                .with_name(name));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        m.apply_header(name, os, kind)?;
        Ok(m)
    }
}

/// Refuse a zero size and one the memory cannot hold: the shared memory
/// (`None`: `/dev/shm` on Linux, the commit memory on Windows) or the
/// filesystem holding the directory `fs`.
fn check_size(name: &str, size: u64, extra: u64, fs: Option<&Path>) -> Result<u64> {
    if size == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a mapping of size 0 is not allowed; give a size of at least 1 byte",
        )
        .with_name(name));
    }
    let total = size
        .checked_add(extra)
        .filter(|t| *t <= MAX_SIZE && usize::try_from(*t).is_ok());
    let free = sys::shm::free_bytes(fs).unwrap_or(u64::MAX);
    match total {
        Some(t) if t <= free => Ok(t),
        _ => Err(Error::new(
            ErrorKind::TooLarge,
            format!("a mapping of {size} bytes is more than the memory available ({free} bytes free in {}); ask for less", fs.map_or(SHM_SPACE.into(), |p| p.display().to_string())),
        )
        .with_name(name)
        .with_needed(size.min(usize::MAX as u64) as usize)),
    }
}

/// A view of shared memory (Win32 `MapViewOfFile`); unmapped on drop.
///
/// All accessors are bounds-checked against [`len`](Mapping::len); bytes are
/// copied in and out, since other processes may change them at any time.
#[doc(alias = "MapViewOfFile")]
#[derive(Debug)]
pub struct Mapping {
    map: sys::shm::Map,
    /// The object (a descriptor on Linux, a section handle on Windows);
    /// dropped after `map`.
    obj: sys::shm::Object,
    data_off: usize,
    data_len: usize,
    name: Option<String>,
    os_name: Option<String>,
    existed: bool,
    replaced_stale: bool,
    creator_pid: u32,
}

#[cfg(unix)]
/// The descriptor of the shared-memory object (to pass to a child with
/// [`crate::pipe::CommandExt::pass_fd`] after `try_clone`, or to `fstat`).
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd, OwnedFd};
/// let m = ipckit::shm::Mapping::anonymous(1).unwrap();
/// assert!(m.as_fd().as_raw_fd() >= 0 && m.as_raw_fd() >= 0);
/// let fd: OwnedFd = m.into(); // unmapped; the object lives on in `fd`
/// assert_eq!(ipckit::shm::Mapping::from_fd(fd).unwrap().len(), 1);
/// ```
impl AsFd for Mapping {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.obj.as_fd()
    }
}

/// See [`AsFd for Mapping`](#impl-AsFd-for-Mapping).
#[cfg(unix)]
impl std::os::fd::AsRawFd for Mapping {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.obj)
    }
}

/// Unmap and keep the object's descriptor (see [`AsFd for Mapping`](#impl-AsFd-for-Mapping)).
#[cfg(unix)]
impl From<Mapping> for OwnedFd {
    fn from(m: Mapping) -> OwnedFd {
        m.obj
    }
}

/// The section handle of the mapping (Windows), e.g. for
/// `DuplicateHandle` into another process.
#[cfg(windows)]
impl AsHandle for Mapping {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.obj.as_handle()
    }
}

/// See [`AsHandle for Mapping`](#impl-AsHandle-for-Mapping).
#[cfg(windows)]
impl AsRawHandle for Mapping {
    fn as_raw_handle(&self) -> RawHandle {
        self.obj.as_raw_handle()
    }
}

/// Unmap and keep the section handle (Windows).
#[cfg(windows)]
impl From<Mapping> for OwnedHandle {
    fn from(m: Mapping) -> OwnedHandle {
        m.obj
    }
}

impl Mapping {
    /// Create the named mapping `name` in the default namespace; see
    /// [`MappingOptions::create`].
    ///
    /// ```no_run
    /// let m = ipckit::shm::Mapping::create("frame", 4096)?;
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    #[doc(alias = "CreateFileMapping")]
    pub fn create(name: &str, size: u64) -> Result<Mapping> {
        MappingOptions::new().create(name, size)
    }

    /// Open the named mapping `name` in the default namespace; see
    /// [`MappingOptions::open`].
    ///
    /// ```no_run
    /// let m = ipckit::shm::Mapping::open("frame")?;
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    #[doc(alias = "OpenFileMapping")]
    pub fn open(name: &str) -> Result<Mapping> {
        MappingOptions::new().open(name)
    }

    /// Open or create `name` in the default namespace; see
    /// [`MappingOptions::open_or_create`].
    ///
    /// ```no_run
    /// let m = ipckit::shm::Mapping::open_or_create("frame", 4096)?;
    /// println!("existed already: {}", m.existed());
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    pub fn open_or_create(name: &str, size: u64) -> Result<Mapping> {
        MappingOptions::new().open_or_create(name, size)
    }

    /// Remove the name `name` from the default namespace; see
    /// [`MappingOptions::remove`].
    ///
    /// ```no_run
    /// ipckit::shm::Mapping::remove("frame")?;
    /// # Ok::<(), ipckit::Error>(())
    /// ```
    pub fn remove(name: &str) -> Result<()> {
        MappingOptions::new().remove(name)
    }

    /// An anonymous mapping of `size` zeroed bytes (`memfd_create`; on
    /// Windows an unnamed section), for a child to inherit or to send over a
    /// connection.
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(64).unwrap();
    /// m.write_at(0, b"x").unwrap();
    /// # #[cfg(unix)] {
    /// let fd = m.try_clone_fd().unwrap(); // e.g. for CommandExt::pass_fd
    /// let n = ipckit::shm::Mapping::from_fd(fd).unwrap();
    /// let mut b = [0u8; 1];
    /// n.read_at(0, &mut b).unwrap();
    /// assert_eq!(&b, b"x");
    /// # }
    /// ```
    pub fn anonymous(size: u64) -> Result<Mapping> {
        let total = check_size("(anonymous)", size, 0, None)?;
        #[cfg(unix)]
        let obj =
            sys::shm::memfd(total).ctx("(anonymous)", "cannot create anonymous shared memory")?;
        #[cfg(windows)]
        let obj = sys::shm::anonymous(total)
            .ctx("(anonymous)", "cannot create anonymous shared memory")?;
        Self::from_object(obj, total, "(anonymous)")
    }

    /// Map the whole object `obj` of `len` bytes, with no header.
    #[cfg(windows)]
    fn from_object(obj: sys::shm::Object, len: u64, shown: &str) -> Result<Mapping> {
        Self::map_whole(obj, len, shown)
    }

    /// Map all `len` bytes of `obj` (no header): `len` must be non-zero and
    /// addressable.
    fn map_whole(obj: sys::shm::Object, len: u64, shown: &str) -> Result<Mapping> {
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("the object has size {len}; it must be non-empty and addressable"),
                )
                .with_name(shown)
            })?;
        #[cfg(unix)]
        let borrowed = obj.as_fd();
        #[cfg(windows)]
        let borrowed = obj.as_handle();
        let map = sys::shm::Map::new(borrowed, len).ctx(shown, "cannot map the shared memory")?;
        Ok(Mapping {
            map,
            obj,
            data_off: 0,
            data_len: len,
            name: None,
            os_name: None,
            existed: true,
            replaced_stale: false,
            creator_pid: 0,
        })
    }

    /// Map the whole object `obj` (its own size).
    #[cfg(unix)]
    fn from_object(obj: sys::shm::Object, _len: u64, _shown: &str) -> Result<Mapping> {
        Self::from_fd(obj)
    }

    /// Map the whole of `fd` (an inherited or received `memfd`, a file):
    /// the size is the object's size.
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(10).unwrap();
    /// let n = ipckit::shm::Mapping::from_fd(m.try_clone_fd().unwrap()).unwrap();
    /// assert_eq!(n.len(), 10);
    /// ```
    #[cfg(unix)]
    pub fn from_fd(fd: OwnedFd) -> Result<Mapping> {
        let shown = "(fd)";
        let len = sys::shm::size_of(fd.as_fd())
            .ctx(shown, "cannot read the size of the shared memory")?;
        Self::map_whole(fd, len, shown)
    }

    /// Map the object a parent handed to this process (see
    /// [`crate::pipe::CommandExt::pass_fd`]), making its descriptor
    /// close-on-exec again. The child turns the fd number it was told into an
    /// `OwnedFd` itself (`unsafe { OwnedFd::from_raw_fd(n) }`, asserting that
    /// nothing else in the process owns it, as std's I/O safety asks).
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(64).unwrap();
    /// let fd = m.try_clone_fd().unwrap();
    /// assert_eq!(ipckit::shm::Mapping::from_inherited_fd(fd).unwrap().len(), 64);
    /// ```
    #[cfg(unix)]
    pub fn from_inherited_fd(fd: OwnedFd) -> Result<Mapping> {
        let shown = format!("fd {}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        sys::pipe::adopt_inherited(&fd, false)
            .ctx(&shown, "cannot adopt the inherited shared memory")?;
        Self::from_fd(fd)
    }

    /// Map the file at `path`, creating it with `size` zero bytes if it is
    /// absent or empty; an existing non-empty file is mapped at its own size.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = dir.path().join("data.bin");
    /// let m = ipckit::shm::Mapping::from_file(&p, 100).unwrap();
    /// m.write_at(0, b"saved").unwrap();
    /// drop(m);
    /// assert_eq!(&std::fs::read(&p).unwrap()[..5], b"saved");
    /// assert_eq!(ipckit::shm::Mapping::from_file(&p, 1).unwrap().len(), 100);
    /// ```
    pub fn from_file(path: impl AsRef<Path>, size: u64) -> Result<Mapping> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let existing = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if existing == 0 {
            check_size(&shown, size, 0, Some(dir))?;
        }
        let (obj, len) =
            sys::shm::open_file(path, size).ctx(&shown, "cannot open the file to map")?;
        let mut m = Self::from_object(obj, len, &shown)
            .map_err(|e| Error::new(e.kind(), e.message().to_string()).with_name(shown.clone()))?;
        m.name = Some(shown);
        m.existed = existing > 0;
        Ok(m)
    }

    /// Usable size in bytes (the creator's size for a named mapping).
    ///
    /// ```
    /// assert_eq!(ipckit::shm::Mapping::anonymous(7).unwrap().len(), 7);
    /// ```
    pub fn len(&self) -> usize {
        self.data_len
    }

    /// Always false: mappings are never empty.
    ///
    /// ```
    /// assert!(!ipckit::shm::Mapping::anonymous(7).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }

    /// Whether the object existed before this handle (`open`,
    /// `open_or_create` that found it, `from_fd`).
    ///
    /// ```
    /// assert!(!ipckit::shm::Mapping::anonymous(1).unwrap().existed() || true);
    /// ```
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// Whether `create` replaced an orphaned mapping of the same name.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let opts = ipckit::shm::MappingOptions::new().namespace(&ns);
    /// drop(opts.create("o", 8).unwrap()); // nobody has it open now
    /// # #[cfg(unix)] // on Windows the section went with its last handle
    /// assert!(opts.create("o", 8).unwrap().replaced_stale());
    /// opts.remove("o").unwrap();
    /// ```
    pub fn replaced_stale(&self) -> bool {
        self.replaced_stale
    }

    /// The ipckit name (the path for a file-backed mapping), if any.
    ///
    /// ```
    /// assert_eq!(ipckit::shm::Mapping::anonymous(1).unwrap().name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The operating system's name, for named mappings: the POSIX shm name
    /// without the leading `/` (Linux), the section's name (Windows).
    ///
    /// ```
    /// assert_eq!(ipckit::shm::Mapping::anonymous(1).unwrap().os_name(), None);
    /// ```
    pub fn os_name(&self) -> Option<&str> {
        self.os_name.as_deref()
    }

    /// The pid of the process that created a named mapping (0 otherwise).
    ///
    /// ```
    /// assert_eq!(ipckit::shm::Mapping::anonymous(1).unwrap().creator_pid(), 0);
    /// ```
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }

    /// A new close-on-exec descriptor for the same object (`dup`), e.g. to
    /// give to [`crate::pipe::CommandExt::pass_fd`].
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(1).unwrap();
    /// let _fd = m.try_clone_fd().unwrap();
    /// ```
    #[cfg(unix)]
    pub fn try_clone_fd(&self) -> Result<OwnedFd> {
        self.obj.try_clone().ctx(
            self.name.as_deref().unwrap_or("(anonymous)"),
            "cannot duplicate the descriptor",
        )
    }

    /// Windows only: hand this mapping's section to the process `pid` as a
    /// duplicated handle (`DuplicateHandle` into it, same access, not
    /// inheritable). Returns the handle's value in that process; tell it
    /// that value (an argument, a pipe message), and it maps the section
    /// with [`Mapping::from_handle`]. The handle belongs to that process
    /// from then on (it closes with the process if never mapped).
    /// [`ErrorKind::NotFound`] if no process has that id,
    /// [`ErrorKind::PermissionDenied`] if this user may not open it.
    ///
    /// ```
    /// use std::os::windows::io::{FromRawHandle, OwnedHandle, RawHandle};
    /// let m = ipckit::shm::Mapping::anonymous(64).unwrap();
    /// m.write_at(0, b"hi").unwrap();
    /// // Into this very process, for the example; usually a child's pid.
    /// let v = m.duplicate_for(std::process::id()).unwrap();
    /// // In the receiving process: the value it was told.
    /// // SAFETY: the handle was made for this process and nothing else owns it.
    /// let h = unsafe { OwnedHandle::from_raw_handle(v as RawHandle) };
    /// let n = ipckit::shm::Mapping::from_handle(h).unwrap();
    /// let mut b = [0u8; 2];
    /// n.read_at(0, &mut b).unwrap();
    /// assert_eq!(&b, b"hi");
    /// ```
    #[cfg(windows)]
    #[doc(alias = "DuplicateHandle")]
    pub fn duplicate_for(&self, pid: u32) -> Result<usize> {
        let shown = self.name.as_deref().unwrap_or("(anonymous)");
        sys::shm::duplicate_into(self.obj.as_handle(), pid).map_err(|e| match e.raw_os_error() {
            // ERROR_INVALID_PARAMETER: OpenProcess of an id no process has.
            Some(87) => Error::new(
                ErrorKind::NotFound,
                format!("no process has the id {pid}; check that it still runs"),
            )
            .with_name(shown)
            .with_source(e),
            Some(5) => Error::new(
                ErrorKind::PermissionDenied,
                format!("this user may not hand handles to process {pid} (another user's, or protected)"),
            )
            .with_name(shown)
            .with_source(e),
            _ => Error::os(e, format!("cannot duplicate the section into process {pid}"))
                .with_name(shown),
        })
    }

    /// Windows only: another handle of the section in this process
    /// (`DuplicateHandle`), e.g. for a child to inherit through
    /// `ipckit::pipe::CommandExt::spawn_with_handles`; the child maps it
    /// with [`Mapping::from_handle`].
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(1).unwrap();
    /// let n = ipckit::shm::Mapping::from_handle(m.try_clone_handle().unwrap()).unwrap();
    /// assert!(n.len() >= 1);
    /// ```
    #[cfg(windows)]
    #[doc(alias = "DuplicateHandle")]
    pub fn try_clone_handle(&self) -> Result<OwnedHandle> {
        self.obj.try_clone().ctx(
            self.name.as_deref().unwrap_or("(anonymous)"),
            "cannot duplicate the section handle",
        )
    }

    /// Windows only: map the whole section `h` — one handed over with
    /// [`duplicate_for`](Self::duplicate_for), inherited, or any section
    /// handle with read and write access — with no header (as
    /// `from_fd` on Linux). The size is the section's rounded up to whole
    /// pages (Windows does not tell a section's exact size; the bytes past
    /// its end read as zero). The handle is made non-inheritable. A handle
    /// that is no section (or lacks the access) is
    /// [`ErrorKind::InvalidInput`].
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(10).unwrap();
    /// let n = ipckit::shm::Mapping::from_handle(m.try_clone_handle().unwrap()).unwrap();
    /// assert_eq!(n.len(), 4096);
    /// let file: std::os::windows::io::OwnedHandle = tempfile::tempfile().unwrap().into();
    /// let e = ipckit::shm::Mapping::from_handle(file).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::InvalidInput);
    /// ```
    #[cfg(windows)]
    pub fn from_handle(h: OwnedHandle) -> Result<Mapping> {
        let shown = "(handle)";
        let _ = sys::pipe::set_inheritable(h.as_handle(), false);
        let map = sys::shm::Map::whole(h.as_handle()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                "the handle is not a section this process may map for reading and writing; pass a mapping's handle",
            )
            .with_name(shown)
            .with_source(e)
        })?;
        let len = map.len();
        Ok(Mapping {
            map,
            obj: h,
            data_off: 0,
            data_len: len,
            name: None,
            os_name: None,
            existed: true,
            replaced_stale: false,
            creator_pid: 0,
        })
    }

    /// Start of the usable bytes, for callers that need raw access. Other
    /// processes may write these bytes at any time: synchronise.
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(1).unwrap();
    /// assert!(!m.as_ptr().is_null());
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        // Always in bounds: data_off + data_len <= map.len() (checked when
        // the mapping was built).
        self.map.ptr().wrapping_add(self.data_off)
    }

    /// Check that `[offset, offset + len)` lies inside the usable bytes.
    /// Every access to the mapped memory passes through here.
    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.data_len && self.data_off + end <= self.map.len() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "bytes {offset}..{} are outside the mapping of {} bytes",
                    offset.saturating_add(len),
                    self.data_len
                ),
            )
            .with_name(self.name.clone().unwrap_or_else(|| "(anonymous)".into()))),
        }
    }

    /// Copy bytes out of the mapping, starting at `offset`.
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(4).unwrap();
    /// let mut b = [1u8; 4];
    /// m.read_at(0, &mut b).unwrap();
    /// assert_eq!(b, [0; 4]);
    /// assert!(m.read_at(2, &mut b).is_err());
    /// ```
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked above) and `buf`
        // is a distinct local buffer. Other processes may write the bytes
        // meanwhile; they are plain `u8`s, and callers that need a
        // consistent copy validate it (seqlock in `map.rs`).
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }

    /// Copy `bytes` into the mapping at `offset`.
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(4).unwrap();
    /// m.write_at(1, b"ab").unwrap();
    /// assert!(m.write_at(3, b"ab").is_err());
    /// ```
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.check(offset, bytes.len())?;
        // SAFETY: in bounds (checked above); the mapping is writable
        // (PROT_WRITE) and `bytes` cannot overlap it... unless the caller
        // passes a slice of the mapping itself, which `read_at`'s copies
        // never are; `copy` (memmove) would still be sound, so use it.
        unsafe {
            std::ptr::copy(bytes.as_ptr(), self.as_ptr().add(offset), bytes.len());
        }
        Ok(())
    }

    /// Write the header region of a mapping under construction.
    fn write_raw(&mut self, offset: usize, bytes: &[u8]) {
        assert!(
            offset + bytes.len() <= self.map.len(),
            "header write out of bounds"
        );
        // SAFETY: in bounds (asserted); nobody else can see the object yet.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.ptr().add(offset), bytes.len());
        }
    }

    /// Read and check the header of a named mapping mapped whole (data at
    /// offset 0, `data_len` the object's size), then point the data past it.
    /// `shown` names the object in errors.
    fn apply_header(&mut self, name: &str, shown: &str, kind: Kind) -> Result<()> {
        let object_len = self.data_len as u64;
        let mut raw = [0u8; HEADER_LEN];
        self.read_at(0, &mut raw)?;
        let h = Header::decode(&raw, object_len).map_err(|why| {
            Error::new(
                ErrorKind::Decode,
                format!("{shown}: {why}; remove it and create it again"),
            )
            .with_name(name)
        })?;
        if h.kind != kind {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "'{name}' is a {}, not a {}; open it as what it is or pick another name",
                    h.kind.as_str(),
                    kind.as_str()
                ),
            )
            .with_name(name));
        }
        self.data_off = HEADER_LEN;
        self.data_len = h.data_len as usize;
        self.creator_pid = h.creator_pid;
        let _ = h.created_ms;
        Ok(())
    }

    /// The header's magic, as an atomic word (Windows: the creator publishes
    /// the header by storing it last).
    #[cfg(windows)]
    fn header_magic(&self) -> &AtomicU64 {
        assert!(self.map.len() >= HEADER_LEN, "no header in this mapping");
        let p = self.map.ptr();
        assert!((p as usize) % 8 == 0, "a view starts on a page boundary");
        // SAFETY: in bounds and 8-aligned (asserted); the memory lives as
        // long as `self`; every bit pattern is a valid u64.
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }
    }

    /// The 4-byte-aligned word at `offset`, as an atomic (for futexes and
    /// lock words).
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let m = ipckit::shm::Mapping::anonymous(8).unwrap();
    /// m.atomic_u32(4).unwrap().store(7, Ordering::SeqCst);
    /// assert!(m.atomic_u32(2).is_err()); // misaligned
    /// assert!(m.atomic_u32(8).is_err()); // out of bounds
    /// ```
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.check(offset, 4)?;
        let p = self.as_ptr().wrapping_add(offset);
        if (p as usize) % 4 != 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("offset {offset} is not 4-byte aligned"),
            ));
        }
        // SAFETY: in bounds and aligned (checked above); the memory lives as
        // long as `self` (the returned borrow is tied to it); AtomicU32 has
        // the layout of u32 and every bit pattern is valid.
        Ok(unsafe { AtomicU32::from_ptr(p.cast::<u32>()) })
    }

    /// The 8-byte-aligned word at `offset`, as an atomic.
    ///
    /// ```
    /// let m = ipckit::shm::Mapping::anonymous(16).unwrap();
    /// assert!(m.atomic_u64(8).is_ok());
    /// assert!(m.atomic_u64(4).is_err());
    /// ```
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check(offset, 8)?;
        let p = self.as_ptr().wrapping_add(offset);
        if (p as usize) % 8 != 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("offset {offset} is not 8-byte aligned"),
            ));
        }
        // SAFETY: as in `atomic_u32`, with 8-byte alignment checked.
        Ok(unsafe { AtomicU64::from_ptr(p.cast::<u64>()) })
    }
}
