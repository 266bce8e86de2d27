//! Namespaces, names and endpoint records.
//!
//! Every named ipckit object lives in a *namespace*: a per-user directory,
//! by default `$XDG_RUNTIME_DIR/ipckit` (else `/tmp/ipckit-<uid>`), created
//! with mode 0700. The environment variable `IPCKIT_NAMESPACE` points it
//! elsewhere; tests use a fresh temporary directory each.
//!
//! Inside it, each live endpoint has a *record* `<name>.ep` (kind, owner
//! pid, creation time) that its owner keeps locked (`flock`) for as long as
//! it lives. The kernel drops that lock when the owner dies, however it dies,
//! so a record nobody holds is *stale*: [`Namespace::list`] reports it as
//! such and the next create of that name takes it over. Two live owners can
//! never hold one name: the second create gets [`ErrorKind::AlreadyExists`].
//!
//! On Windows (first step of the Win32 backend) the name rules and
//! [`Namespace`] exist (the directory's path is what the Win32 object names
//! are derived from, see [`crate::shm`]); it defaults to
//! `%LOCALAPPDATA%\ipckit`. Pipes, services and window-message receivers of name `N` are the named
//! pipe `\\.\pipe\ipckit.<H>.<N>` (`<H>`: the namespace path's hash, `/`
//! written `:`), whose first instance is the claim: a second server of the
//! name gets [`ErrorKind::AlreadyExists`], and a dead server's name is free
//! at once. Services, DDE servers and window-message receivers also keep
//! an endpoint record there (the lock is `LockFileEx` on one byte far past
//! the content, which the system releases when the owner dies), so
//! [`Namespace::list`] shows them; pipes and mailslots are not recorded on
//! Windows, and shared namespaces are Linux-only for now.
//!
//! ```
//! use ipckit::name::{validate_name, Namespace};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = Namespace::at(dir.path()).unwrap();
//! assert!(ns.list().unwrap().is_empty());
//! assert!(validate_name("calc/v1").is_ok());
//! assert_eq!(validate_name("../x").unwrap_err().kind(), ipckit::ErrorKind::InvalidName);
//! ```

use std::fs;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
#[cfg(windows)]
use std::os::windows::fs::OpenOptionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::conn::ConnStats;
use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::sys;

/// Environment variable naming the namespace directory.
pub const NAMESPACE_ENV: &str = "IPCKIT_NAMESPACE";

/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Suffix of endpoint record files.
const RECORD_SUFFIX: &str = ".ep";
/// Suffix of the file a live server publishes its counters in.
const STATS_SUFFIX: &str = ".stats";

/// Check a name against the naming rules: 1–200 characters of
/// `[A-Za-z0-9._-]`, with `/` separating non-empty segments that are not
/// `.` or `..`.
///
/// The error ([`ErrorKind::InvalidName`]) says which rule broke.
///
/// ```
/// use ipckit::name::validate_name;
/// assert!(validate_name("jobs/queue-1").is_ok());
/// let err = validate_name("").unwrap_err();
/// assert!(err.to_string().contains("empty"));
/// assert!(validate_name(&"a".repeat(300)).is_err());
/// assert!(validate_name("a//b").is_err());
/// assert!(validate_name(".s/0123456789abcdef").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::new(ErrorKind::InvalidName, format!("invalid name: {why}")).with_name(name))
    };
    if name.is_empty() {
        return bad("the name is empty; use 1 to 200 characters of [A-Za-z0-9._-] and '/'".into());
    }
    if name.len() > MAX_NAME_LEN {
        return bad(format!(
            "{} characters is longer than the limit of {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return bad(format!(
            "character {c:?} is not allowed; use [A-Za-z0-9._-] and '/' as a separator"
        ));
    }
    for seg in name.split('/') {
        match seg {
            "" => return bad("empty segment (leading, trailing or doubled '/')".into()),
            "." | ".." => return bad(format!("segment '{seg}' is not allowed")),
            // ipckit's own files (hashed socket paths, counters) start
            // with a dot; a name cannot, so it can never collide with them
            // (and `ipckit ls` shows every name).
            s if s.starts_with('.') => {
                return bad(format!("segment '{seg}' starts with a dot; names may not"))
            }
            _ => {}
        }
        if seg.ends_with(RECORD_SUFFIX) || seg.ends_with(".sock") {
            return bad(format!(
                "segment '{seg}' ends with a suffix ipckit reserves ('.ep', '.sock')"
            ));
        }
    }
    Ok(())
}

/// A directory holding named endpoints.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path().join("ns")).unwrap();
/// assert!(ns.dir().ends_with("ns"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    dir: PathBuf,
}

/// Whether an endpoint's owner is still alive.
///
/// ```
/// assert_eq!(ipckit::name::EndpointState::Live.as_str(), "live");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// The owner process holds the record.
    Live,
    /// The owner is gone; the next create of the name replaces it.
    Stale,
}

impl EndpointState {
    /// `"live"` or `"stale"`.
    ///
    /// ```
    /// assert_eq!(ipckit::name::EndpointState::Stale.as_str(), "stale");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Live => "live",
            EndpointState::Stale => "stale",
        }
    }
}

/// What a record says about an endpoint (see [`Namespace::list`]).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// # #[cfg(unix)] { // a pipe server is recorded on Linux only
/// let server = ipckit::pipe::ServerOptions::new().namespace(&ns).create("svc").unwrap();
/// let eps = ns.list().unwrap();
/// assert_eq!(eps[0].name, "svc");
/// assert_eq!(eps[0].kind, "pipe");
/// assert_eq!(eps[0].pid, std::process::id());
/// drop(server);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// The endpoint's name.
    pub name: String,
    /// Its kind: `pipe`, `mapping`, `service`, ...
    pub kind: String,
    /// The owner's process id (0 while the owner is still writing the record).
    pub pid: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Live or stale.
    pub state: EndpointState,
    /// What a live server accepted, refused and dropped, and why (its
    /// [`crate::Limits`] at work), as it last published them; `None` for
    /// objects without connections and for stale endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ConnStats>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    kind: String,
    pid: u32,
    created_ms: u64,
}

impl Namespace {
    /// The namespace named by `IPCKIT_NAMESPACE`, else the per-user default
    /// (`$XDG_RUNTIME_DIR/ipckit`, else `/tmp/ipckit-<uid>`); created with
    /// mode 0700 if absent.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let ns = ipckit::Namespace::from_env().unwrap();
    /// // The directory as resolved (`canonicalize`).
    /// assert_eq!(ns.dir(), dir.path().canonicalize().unwrap());
    /// ```
    pub fn from_env() -> Result<Namespace> {
        match std::env::var_os(NAMESPACE_ENV) {
            Some(d) if !d.is_empty() => Namespace::at(d),
            _ => Namespace::at(Self::default_dir()),
        }
    }

    /// The per-user default directory (not created by this call). On
    /// Windows: `%LOCALAPPDATA%\ipckit`, else `ipckit` in the temporary
    /// directory.
    ///
    /// ```
    /// assert!(ipckit::Namespace::default_dir().ends_with("ipckit")
    ///     || ipckit::Namespace::default_dir().to_string_lossy().contains("ipckit-"));
    /// ```
    pub fn default_dir() -> PathBuf {
        #[cfg(unix)]
        let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("ipckit"),
            _ => PathBuf::from(format!("/tmp/ipckit-{}", sys::uid())),
        };
        #[cfg(windows)]
        let dir = match std::env::var_os("LOCALAPPDATA") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("ipckit"),
            _ => std::env::temp_dir().join("ipckit"),
        };
        dir
    }

    /// Use `dir` as a namespace, creating it (mode 0700) if needed. It
    /// must be a real directory (not a symbolic link) owned by the caller
    /// and not writable by group or others; anything else is refused with
    /// [`ErrorKind::PermissionDenied`] (another user could otherwise plant
    /// links or impostor sockets in it). On Windows only "a real directory"
    /// is checked (no mode or owner check yet). A path that is a file is
    /// [`ErrorKind::InvalidInput`], saying so.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path().join("a/b")).unwrap();
    /// assert!(ns.dir().is_dir());
    /// std::fs::write(dir.path().join("f"), b"").unwrap();
    /// let e = ipckit::Namespace::at(dir.path().join("f")).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::InvalidInput);
    /// assert!(e.to_string().contains("is a file"), "{e}");
    /// ```
    pub fn at(dir: impl Into<PathBuf>) -> Result<Namespace> {
        let dir: PathBuf = dir.into();
        let shown = dir.display().to_string();
        if fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the namespace path is a file, not a directory; point IPCKIT_NAMESPACE or --namespace at a directory (it is created if missing)",
            )
            .with_name(shown));
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder
            .create(&dir)
            .ctx(&shown, "cannot create the namespace directory")?;
        let meta = fs::symlink_metadata(&dir).ctx(&shown, "cannot read the namespace directory")?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the namespace path is a symbolic link or not a directory; use a real directory of your own",
            )
            .with_name(shown));
        }
        #[cfg(unix)]
        Self::check_private(&meta, &shown)?;
        let dir = dir
            .canonicalize()
            .ctx(&shown, "cannot resolve the namespace directory")?;
        Ok(Namespace { dir })
    }

    /// Refuse a namespace directory others can write or that is not ours.
    #[cfg(unix)]
    fn check_private(meta: &fs::Metadata, shown: &str) -> Result<()> {
        if meta.mode() & 0o022 != 0 {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the namespace directory has mode {:o}: others could plant links or impostor sockets in it; make it 0700 (chmod go-w) or choose another",
                    meta.mode() & 0o777
                ),
            )
            .with_name(shown));
        }
        if meta.uid() != sys::uid() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "namespace directory is owned by uid {}, not by you (uid {}); choose another with IPCKIT_NAMESPACE or --namespace",
                    meta.uid(),
                    sys::uid()
                ),
            )
            .with_name(shown));
        }
        Ok(())
    }

    /// Use `dir` as a namespace **shared with other users** (the explicit
    /// shared mode): a real directory (not a symbolic link) with the sticky
    /// bit, as `/tmp` has, so that nobody can remove or replace a record,
    /// socket or directory another user made in it; created with mode
    /// `01777` if absent. Everything else stays per user: a server still
    /// serves only its own uid unless its [`crate::Limits`] allow more,
    /// and a client still trusts only servers of its own uid or of the
    /// directory's owner unless told otherwise.
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at_shared(dir.path().join("team")).unwrap();
    /// let mode = std::fs::metadata(ns.dir()).unwrap().permissions().mode();
    /// assert_eq!(mode & 0o7777, 0o1777);
    /// // A directory others can write without the sticky bit is refused.
    /// let open = dir.path().join("open");
    /// std::fs::create_dir(&open).unwrap();
    /// std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    /// assert!(ipckit::Namespace::at_shared(&open).is_err());
    /// ```
    #[cfg(unix)]
    pub fn at_shared(dir: impl Into<PathBuf>) -> Result<Namespace> {
        let dir: PathBuf = dir.into();
        let shown = dir.display().to_string();
        if fs::symlink_metadata(&dir).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .create(&dir)
                .ctx(&shown, "cannot create the namespace directory")?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777))
                .ctx(&shown, "cannot make the namespace directory shared")?;
        }
        let meta = fs::symlink_metadata(&dir).ctx(&shown, "cannot read the namespace directory")?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the namespace path is a symbolic link or not a directory; use a real directory",
            )
            .with_name(shown));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the shared namespace directory has mode {:o} without the sticky bit: others could replace what you make in it; chmod +t it",
                    meta.mode() & 0o7777
                ),
            )
            .with_name(shown));
        }
        let dir = dir
            .canonicalize()
            .ctx(&shown, "cannot resolve the namespace directory")?;
        Ok(Namespace { dir })
    }

    /// The namespace directory.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(ns.dir().is_absolute());
    /// ```
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// Endpoint records.
impl Namespace {
    /// The uid the namespace directory belongs to (on Windows, which has no
    /// numeric user ids, the caller's: see `sys::uid`).
    pub(crate) fn owner_uid(&self) -> u32 {
        #[cfg(unix)]
        return fs::metadata(&self.dir)
            .map(|m| m.uid())
            .unwrap_or_else(|_| sys::uid());
        #[cfg(windows)]
        return sys::uid();
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{RECORD_SUFFIX}"))
    }

    /// Where a live server publishes its connection counters
    /// (`<dir>/<name>.stats`, JSON [`ConnStats`]); removed with its record.
    pub(crate) fn stats_path(&self, name: &str) -> PathBuf {
        // `a/b` → `a/.b.stats`: a leading dot, which no name can have.
        let (dir, last) = match name.rsplit_once('/') {
            Some((d, l)) => (self.dir.join(d), l),
            None => (self.dir.clone(), name),
        };
        dir.join(format!(".{last}{STATS_SUFFIX}"))
    }

    /// The path of the Unix socket for `name`: `<dir>/<name>.sock`, or, when
    /// that is longer than a socket address allows (107 bytes), the hashed
    /// `<dir>/.s/<fnv1a64(name) in hex>.sock`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(ns.socket_path("calc").ends_with("calc.sock"));
    /// let long = "x".repeat(150);
    /// assert!(ns.socket_path(&long).to_string_lossy().len() <= 107);
    /// ```
    #[cfg(unix)]
    pub fn socket_path(&self, name: &str) -> PathBuf {
        let direct = self.dir.join(format!("{name}.sock"));
        if direct.as_os_str().len() <= sys::MAX_UNIX_PATH {
            direct
        } else {
            self.dir
                .join(".s")
                .join(format!("{:016x}.sock", fnv1a64(name.as_bytes())))
        }
    }

    /// Every endpoint recorded in the namespace, live or stale, sorted by name.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert_eq!(ns.list().unwrap().len(), 0);
    /// ```
    pub fn list(&self) -> Result<Vec<EndpointInfo>> {
        let mut out = Vec::new();
        self.walk(&self.dir, "", &mut out)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn walk(&self, dir: &Path, prefix: &str, out: &mut Vec<EndpointInfo>) -> Result<()> {
        let shown = dir.display().to_string();
        let entries = fs::read_dir(dir).ctx(&shown, "cannot list the namespace")?;
        for entry in entries {
            let entry = entry.ctx(&shown, "cannot list the namespace")?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                continue;
            }
            let ft = entry.file_type().ctx(&shown, "cannot list the namespace")?;
            if ft.is_dir() {
                self.walk(&entry.path(), &format!("{prefix}{fname}/"), out)?;
            } else if let Some(stem) = fname.strip_suffix(RECORD_SUFFIX) {
                let name = format!("{prefix}{stem}");
                if let Some(info) = self.info(&name)? {
                    out.push(info);
                }
            }
        }
        Ok(())
    }

    /// The record of one endpoint, if there is one.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert!(ns.info("nothing").unwrap().is_none());
    /// ```
    pub fn info(&self, name: &str) -> Result<Option<EndpointInfo>> {
        validate_name(name)?;
        let path = self.record_path(name);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(sys::no_follow_flag() as _)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::os(e, "cannot read the endpoint record").with_name(name)),
        };
        let live = sys::is_locked(&file).ctx(name, "cannot probe the endpoint record")?;
        let mut text = String::new();
        let _ = (&file).read_to_string(&mut text);
        if live && text.is_empty() {
            // Being created: not reachable yet (see `Claim::publish`).
            return Ok(None);
        }
        let rec: Option<Record> = serde_json::from_str(&text).ok();
        let (kind, pid, created_ms) = match rec {
            Some(r) => (r.kind, r.pid, r.created_ms),
            None => ("?".to_string(), 0, 0),
        };
        let limits = live
            .then(|| fs::read(self.stats_path(name)).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Some(EndpointInfo {
            name: name.to_string(),
            kind,
            pid,
            created_ms,
            limits,
            state: if live {
                EndpointState::Live
            } else {
                EndpointState::Stale
            },
        }))
    }

    /// Claim `name` for a new endpoint of `kind`. Fails with
    /// [`ErrorKind::AlreadyExists`] if a live owner holds it; takes over a
    /// stale record (the returned claim says so, so the caller can clean up
    /// what the dead owner left).
    pub(crate) fn claim(&self, name: &str, kind: &str) -> Result<Claim> {
        validate_name(name)?;
        let path = self.record_path(name);
        if let Some(parent) = path.parent() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            builder.mode(0o700);
            builder
                .create(parent)
                .ctx(name, "cannot create the endpoint's directory")?;
        }
        let mut contended = 0;
        loop {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            options.mode(0o600);
            // A link planted at the record's path is refused, never
            // followed to a file of ours.
            let file = options
                .custom_flags(sys::no_follow_flag() as _)
                .open(&path)
                .ctx(name, "cannot create the endpoint record")?;
            if !sys::try_lock_exclusive(&file).ctx(name, "cannot lock the endpoint record")? {
                // A concurrent `list` holds a shared lock for a moment while
                // probing; a live owner holds it for good. Look twice more.
                if contended < 3 && !self.owner_alive(&path) {
                    contended += 1;
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let who = self
                    .info(name)?
                    .map(|i| format!("live {} (pid {})", i.kind, i.pid))
                    .unwrap_or_else(|| "process that is still creating it".into());
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "the name is held by a {who} in {}; pick another name or stop that process",
                        self.dir.display()
                    ),
                )
                .with_name(name));
            }
            // The record may have been unlinked by its previous owner between
            // our open and our lock: then we locked an orphan inode. Retry.
            if !sys::same_file(&file, &path) {
                continue;
            }
            let previous_len = file.metadata().map(|m| m.len()).unwrap_or(0);
            // Empty until `Claim::publish`: a locked, empty record is an
            // endpoint being created, which `info` and `list` do not show,
            // so nobody is told it is live before it can be reached.
            file.set_len(0)
                .ctx(name, "cannot write the endpoint record")?;
            #[cfg(unix)]
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
            return Ok(Claim {
                name: name.to_string(),
                kind: kind.to_string(),
                stats: Some(self.stats_path(name)),
                path,
                file: Some(file),
                replaced_stale: previous_len > 0,
            });
        }
    }

    /// Whether the pid in the record at `path` names a running process.
    fn owner_alive(&self, path: &Path) -> bool {
        let mut text = String::new();
        OpenOptions::new()
            .read(true)
            .custom_flags(sys::no_follow_flag() as _)
            .open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .ok()
            .and_then(|_| serde_json::from_str::<Record>(&text).ok())
            .is_some_and(|r| sys::process_exists(r.pid))
    }

    /// Remove a stale record of `name` and its socket. A live one is left
    /// alone and reported as [`ErrorKind::Busy`].
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// ns.remove_stale("gone").unwrap(); // nothing there: fine
    /// ```
    pub fn remove_stale(&self, name: &str) -> Result<()> {
        match self.info(name)? {
            None => Ok(()),
            Some(i) if i.state == EndpointState::Live => Err(Error::new(
                ErrorKind::Busy,
                format!("endpoint is live (pid {}); stop its owner first", i.pid),
            )
            .with_name(name)),
            Some(_) => {
                let claim = self.claim(name, "removing")?;
                #[cfg(unix)]
                let _ = fs::remove_file(self.socket_path(name));
                drop(claim);
                Ok(())
            }
        }
    }
}

/// Who owns endpoint records (Linux-only for now).
#[cfg(unix)]
impl Namespace {
    /// The uid owning the record of endpoint `name` (the user whose
    /// process created it), or `None` if there is no record.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert_eq!(ns.record_owner("svc").unwrap(), None);
    /// let server = ipckit::pipe::ServerOptions::new().namespace(&ns).create("svc").unwrap();
    /// let me = std::fs::metadata(ns.dir()).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    /// assert_eq!(ns.record_owner("svc").unwrap(), Some(me));
    /// drop(server);
    /// ```
    pub fn record_owner(&self, name: &str) -> Result<Option<u32>> {
        validate_name(name)?;
        match fs::symlink_metadata(self.record_path(name)) {
            Ok(m) => Ok(Some(m.uid())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::os(e, "cannot read the endpoint record").with_name(name)),
        }
    }
}

/// Exclusive ownership of a name, held until dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    name: String,
    kind: String,
    /// The counters file a server of this name publishes.
    stats: Option<PathBuf>,
    path: PathBuf,
    file: Option<File>,
    replaced_stale: bool,
}

impl Claim {
    /// Write the record (kind, pid, creation time): from now on the
    /// endpoint is listed as live. Call it once the endpoint can be reached.
    pub(crate) fn publish(&mut self) -> Result<()> {
        let rec = Record {
            kind: self.kind.clone(),
            pid: std::process::id(),
            created_ms: now_ms(),
        };
        let text = serde_json::to_string(&rec).expect("record serialises");
        let file = self.file.as_mut().expect("a claim holds its record");
        file.write_all(text.as_bytes())
            .ctx(&self.name, "cannot write the endpoint record")
    }

    /// Whether a stale record of a dead owner was taken over.
    pub(crate) fn replaced_stale(&self) -> bool {
        self.replaced_stale
    }

    /// The claimed name.
    #[allow(dead_code)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then release it by closing.
        if let Some(stats) = self.stats.take() {
            let _ = fs::remove_file(stats);
        }
        let _ = fs::remove_file(&self.path);
        self.file.take();
    }
}

/// Take an exclusive lock on a small shared file of the namespace (a
/// registry), waiting for the holder; released when `file` closes.
#[cfg(unix)]
pub(crate) fn lock_file(file: &File) -> std::io::Result<()> {
    sys::lock_exclusive(file)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// FNV-1a, 64 bits: a stable hash for deriving short OS names from long ones.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Prefix of a local named pipe's system name.
#[cfg(windows)]
pub(crate) const PIPE_PREFIX: &str = r"\\.\pipe\";

/// The system name of the named pipe that serves endpoint `name` on
/// Windows (pipes and services alike): a name in the system's own form,
/// `\\.\pipe\X` (a `client` may also name `\\HOST\pipe\X`), is used as is;
/// any other is checked ([`validate_name`]) and becomes
/// `\\.\pipe\ipckit.<H>.<name>` with `/` written `:`, where `<H>` is the
/// FNV-1a hash of the namespace directory's path (`ns`, else the one from
/// the environment) as 16 hex digits.
#[cfg(windows)]
pub(crate) fn pipe_os_name(ns: Option<&Namespace>, name: &str, client: bool) -> Result<String> {
    if let Some(rest) = name.strip_prefix(r"\\") {
        let bad = |why: &str| {
            Err(
                Error::new(ErrorKind::InvalidName, format!("invalid pipe name: {why}"))
                    .with_name(name),
            )
        };
        let Some((host, pipe)) = rest.split_once(r"\pipe\") else {
            return bad(r"a name starting with \\ must be \\.\pipe\NAME");
        };
        if host != "." && !client {
            return bad(r"a server creates only local pipes: use \\.\pipe\NAME");
        }
        if host.is_empty() || host.contains(['\\', '\0']) {
            return bad(r"give a host before \pipe\ (. for this machine)");
        }
        if pipe.is_empty() || pipe.contains(['\\', '\0']) || name.len() > 256 {
            return bad(
                r"after \pipe\ give 1 or more characters other than '\' and NUL (256 in all at most)",
            );
        }
        return Ok(name.to_string());
    }
    validate_name(name)?;
    let ns = match ns {
        Some(ns) => ns.clone(),
        None => Namespace::from_env()?,
    };
    let h = fnv1a64(ns.dir().as_os_str().as_encoded_bytes());
    Ok(format!(
        "{PIPE_PREFIX}ipckit.{h:016x}.{}",
        name.replace('/', ":")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for good in ["a", "calc", "jobs/q-1", "A.b_c-d", &"x".repeat(200)] {
            validate_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("../x", "'..'"),
            ("a/./b", "'.'"),
            ("/abs", "empty segment"),
            ("a/", "empty segment"),
            ("sp ace", "' '"),
            ("x.ep", "reserves"),
        ] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let e = validate_name(&"a".repeat(300)).unwrap_err();
        assert!(e.to_string().contains("300 characters"), "{e}");
    }

    #[test]
    fn second_claim_is_refused_and_release_frees_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::at(dir.path()).unwrap();
        let mut c = ns.claim("n/x", "test").unwrap();
        assert!(!c.replaced_stale());
        // Not listed until it is published (reachable).
        assert!(ns.list().unwrap().is_empty());
        c.publish().unwrap();
        let e = ns.claim("n/x", "test").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("pid"), "{e}");
        let l = ns.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "n/x");
        assert_eq!(l[0].state, EndpointState::Live);
        drop(c);
        assert!(ns.list().unwrap().is_empty());
        ns.claim("n/x", "test").unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn namespace_dir_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::at(dir.path().join("fresh")).unwrap();
        let mode = fs::metadata(ns.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
