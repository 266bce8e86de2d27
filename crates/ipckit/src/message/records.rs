//! Which receivers are live, on Windows, where the namespace keeps no
//! endpoint records ([`Messenger::find`](super::Messenger::find),
//! [`broadcast`](super::broadcast)).
//!
//! The claim on a receiver's name is its named pipe's first instance (see
//! `conn::listen`). Besides, a live receiver `N` holds an exclusive lock
//! ([`sys::try_lock_exclusive`], released by the system when the holding
//! handle closes, however its process ends) on the file `.window.<N>` of
//! the namespace directory (`/` written `~`), which holds the name. A
//! record that exists but is not locked is a dead receiver's and counts
//! for nothing; the next receiver of that name takes it over. A receiver
//! removes its record before giving up its pipe, so a new receiver of the
//! name never finds it held.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::sys;

/// Prefix of a record's file name (a name cannot start with a dot, so no
/// endpoint collides with it).
const PREFIX: &str = ".window.";

/// How long taking a record waits for someone probing it (a probe holds a
/// shared lock for an instant) before giving up.
const TAKE_WAIT: Duration = Duration::from_secs(2);

fn path(ns: &Namespace, name: &str) -> PathBuf {
    ns.dir().join(format!("{PREFIX}{}", name.replace('/', "~")))
}

/// A live receiver's record: listed while this value lives.
#[derive(Debug)]
pub(super) struct Record {
    _file: File,
    path: PathBuf,
}

impl Record {
    /// Record the receiver `name` (whose pipe the caller already holds) as
    /// live.
    pub(super) fn create(ns: &Namespace, name: &str) -> Result<Record> {
        let path = path(ns, name);
        let what = "cannot record the message receiver in the namespace directory";
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(name, what)?;
        // Nobody else holds it for long: the pipe makes this receiver the
        // only live one of its name, and probes give their lock back at
        // once.
        let until = Instant::now() + TAKE_WAIT;
        let mut pause = Duration::from_millis(1);
        while !sys::try_lock_exclusive(&file).ctx(name, what)? {
            if Instant::now() >= until {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "another process holds this receiver's record ({}); stop the receiver that runs under this name",
                        path.display()
                    ),
                )
                .with_name(name));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        file.set_len(0).ctx(name, what)?;
        file.write_all(name.as_bytes()).ctx(name, what)?;
        Ok(Record { _file: file, path })
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Deleted once `self._file` closes, right after (std opens files
        // with FILE_SHARE_DELETE); until then it is still locked.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the record at `path` is held by a live receiver; its name if so
/// (a record being written, or removed, counts as not live).
fn holder(path: &std::path::Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    if !sys::is_locked(&file).ok()? {
        return None;
    }
    let mut name = String::new();
    file.read_to_string(&mut name).ok()?;
    crate::name::validate_name(&name).ok()?;
    Some(name)
}

/// Whether a live receiver is registered under `name` (names differing only
/// in ASCII case are one on Windows, as pipe names are).
pub(super) fn is_live(ns: &Namespace, name: &str) -> bool {
    holder(&path(ns, name)).is_some()
}

/// The names of every live receiver of `ns`, sorted.
pub(super) fn live(ns: &Namespace) -> Result<Vec<String>> {
    let dir = std::fs::read_dir(ns.dir())
        .map_err(|e| Error::os(e, "cannot list the namespace directory"))?;
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        .filter_map(|e| holder(&e.path()))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}
