//! Namespace-wide registries of texts to ids in `0xC000..=0xFFFF`, the same
//! in every process of a namespace (`RegisterWindowMessage`,
//! `RegisterClipboardFormat`). One JSON line per entry in a file of the
//! namespace directory, appended under an exclusive `flock` on a lock file
//! beside it (the format is in `docs/PROTOCOL.md`).
//!
//! On Windows the same files and format, locked with `LockFileEx` (see
//! `crate::sys`) instead of `flock`, and without Unix file modes (the
//! namespace directory's own access rights apply).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use crate::error::{Context as _, Error, ErrorKind, Result};
#[cfg(unix)]
use crate::name::lock_file;
use crate::name::Namespace;
#[cfg(windows)]
use crate::sys::lock_exclusive as lock_file;

/// Lowest id a registry hands out.
pub(crate) const MIN: u32 = 0xC000;
/// Highest id a registry hands out.
pub(crate) const MAX: u32 = 0xFFFF;
/// Longest text a registry accepts, in bytes.
pub(crate) const MAX_TEXT: usize = 255;

/// One registry: its file, its lock file and what it is called in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registry {
    /// File name in the namespace directory (starts with a dot).
    pub file: &'static str,
    pub lock: &'static str,
    /// "message", "clipboard format"
    pub what: &'static str,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: u32,
    text: String,
}

impl Registry {
    /// The id of `text` (ASCII case ignored), registering it if new.
    pub(crate) fn register(&self, ns: &Namespace, text: &str) -> Result<u32> {
        if text.is_empty() || text.len() > MAX_TEXT {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a {} name must be 1 to {MAX_TEXT} bytes, this one is {}",
                    self.what,
                    text.len()
                ),
            )
            .with_name(text));
        }
        let _lock = self.lock(ns)?;
        let mut options = OpenOptions::new();
        options.read(true).create(true);
        // Appending on Linux; on Windows a file opened to append may not be
        // cut (`set_len` below), so it is opened to write and every write
        // goes to the end as seeked.
        #[cfg(unix)]
        options.append(true).mode(0o600);
        #[cfg(windows)]
        options.write(true).truncate(false);
        let mut file = options
            .open(ns.dir().join(self.file))
            .ctx(text, &format!("cannot open the {} registry", self.what))?;
        let (entries, good) = self.read(&mut file, text)?;
        if let Some(e) = entries.iter().find(|e| e.text.eq_ignore_ascii_case(text)) {
            return Ok(e.id);
        }
        let id = MIN + entries.len() as u32;
        if id > MAX {
            return Err(Error::new(
                ErrorKind::Full,
                format!(
                    "all {} registered {} ids of this namespace are taken; clear the namespace",
                    MAX - MIN + 1,
                    self.what
                ),
            )
            .with_name(text));
        }
        // Drop a torn last line (a writer died mid-append) before appending.
        file.set_len(good)
            .ctx(text, &format!("cannot repair the {} registry", self.what))?;
        let mut line = serde_json::to_string(&Entry {
            id,
            text: text.to_string(),
        })
        .expect("registry entry serialises");
        line.push('\n');
        #[cfg(windows)]
        file.seek(std::io::SeekFrom::Start(good))
            .ctx(text, &format!("cannot write the {} registry", self.what))?;
        file.write_all(line.as_bytes())
            .ctx(text, &format!("cannot write the {} registry", self.what))?;
        Ok(id)
    }

    /// The text registered for `id`, if any.
    pub(crate) fn text(&self, ns: &Namespace, id: u32) -> Result<Option<String>> {
        Ok(self
            .entries(ns)?
            .into_iter()
            .find(|e| e.id == id)
            .map(|e| e.text))
    }

    /// The id registered for `text` (ASCII case ignored), if any; registers
    /// nothing.
    pub(crate) fn find(&self, ns: &Namespace, text: &str) -> Result<Option<u32>> {
        Ok(self
            .entries(ns)?
            .into_iter()
            .find(|e| e.text.eq_ignore_ascii_case(text))
            .map(|e| e.id))
    }

    fn entries(&self, ns: &Namespace) -> Result<Vec<Entry>> {
        let _lock = self.lock(ns)?;
        let mut file = match File::open(ns.dir().join(self.file)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::os(
                    e,
                    format!("cannot open the {} registry", self.what),
                ))
            }
        };
        Ok(self.read(&mut file, "registry")?.0)
    }

    fn lock(&self, ns: &Namespace) -> Result<File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        options.mode(0o600);
        let lock = options.open(ns.dir().join(self.lock)).ctx(
            self.lock,
            &format!("cannot open the {} registry lock", self.what),
        )?;
        lock_file(&lock).ctx(
            self.lock,
            &format!("cannot lock the {} registry", self.what),
        )?;
        Ok(lock)
    }

    /// Every entry, and the length of the file up to the last whole one; a
    /// torn last line (a writer died mid-append) is ignored, and ids are
    /// re-checked to be dense from [`MIN`].
    fn read(&self, file: &mut File, name: &str) -> Result<(Vec<Entry>, u64)> {
        let what = format!("cannot read the {} registry", self.what);
        let mut text = String::new();
        file.rewind().ctx(name, &what)?;
        file.read_to_string(&mut text).ctx(name, &what)?;
        let mut out: Vec<Entry> = Vec::new();
        let mut good = 0u64;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let torn_last = i + 1 == lines.len() && !line.ends_with('\n');
            match serde_json::from_str::<Entry>(line.trim_end()) {
                Ok(e) if e.id == MIN + out.len() as u32 && !torn_last => {
                    good += line.len() as u64;
                    out.push(e)
                }
                _ if torn_last => break,
                _ => {
                    return Err(Error::new(
                        ErrorKind::Decode,
                        format!(
                            "the {} registry ({} in the namespace) is corrupt; clear the namespace",
                            self.what, self.file
                        ),
                    )
                    .with_name(name))
                }
            }
        }
        Ok((out, good))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Registry = Registry {
        file: ".test-registry",
        lock: ".test-registry.lock",
        what: "test",
    };

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_middle_refused() {
        let d = tempfile::tempdir().unwrap();
        let ns = Namespace::at(d.path()).unwrap();
        assert_eq!(R.register(&ns, "a").unwrap(), MIN);
        // A writer died mid-append.
        let path = ns.dir().join(R.file);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":49153,"te"#).unwrap();
        assert_eq!(R.find(&ns, "b").unwrap(), None);
        assert_eq!(R.register(&ns, "b").unwrap(), MIN + 1);
        assert_eq!(R.text(&ns, MIN + 1).unwrap().as_deref(), Some("b"));
        assert_eq!(R.find(&ns, "A").unwrap(), Some(MIN));
        // Garbage before the last line is corruption, not a torn append.
        std::fs::write(&path, "garbage\n{\"id\":49152,\"text\":\"a\"}\n").unwrap();
        assert_eq!(R.register(&ns, "c").unwrap_err().kind(), ErrorKind::Decode);
    }
}
