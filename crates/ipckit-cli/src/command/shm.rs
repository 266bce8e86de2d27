//! `ipckit shm create|write|read|info|rm`: plain named mappings.

use std::io::{Read as _, Write as _};
use std::path::Path;

#[cfg(unix)]
use ipckit::shm::ObjectInfo;
use ipckit::shm::{Mapping, MappingOptions};
use ipckit::{Error, ErrorKind};

use crate::cli::ShmCommand;

pub fn run(cmd: ShmCommand) -> Result<(), Error> {
    let opts = MappingOptions::new();
    match cmd {
        ShmCommand::Create { name, size, json } => {
            let m = opts.create(&name, size)?;
            #[cfg(unix)]
            if json {
                println!("{}", info_json(&info(&name)?));
            }
            // No namespace listing on Windows: what the mapping says itself.
            #[cfg(windows)]
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "name": name,
                        "size": m.len(),
                        "os_name": m.os_name(),
                    })
                );
            }
            drop(m);
            Ok(())
        }
        ShmCommand::Write {
            name,
            offset,
            file,
            create_size,
        } => {
            let data = read_input(file.as_deref())?;
            let m = match create_size {
                Some(size) => opts.open_or_create(&name, size)?,
                None => opts.open(&name)?,
            };
            let at = in_bounds(&m, &name, offset, data.len() as u64)?;
            m.write_at(at, &data)
        }
        ShmCommand::Read {
            name,
            offset,
            len,
            out,
        } => {
            let m = opts.open(&name)?;
            let len = match len {
                Some(l) => l,
                None => (m.len() as u64).saturating_sub(offset),
            };
            let at = in_bounds(&m, &name, offset, len)?;
            let mut buf = vec![0u8; len as usize];
            m.read_at(at, &mut buf)?;
            match out {
                Some(path) => std::fs::write(&path, &buf).map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!("cannot write {}: {e}", path.display()),
                    )
                }),
                None => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&buf)
                        .and_then(|()| o.flush())
                        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write stdout: {e}")))
                }
            }
        }
        #[cfg(unix)]
        ShmCommand::Info { name, json } => {
            let i = info(&name)?;
            if json {
                println!("{}", info_json(&i));
            } else {
                println!(
                    "{} {} {} bytes, owner uid {}, mode {:o}, {} (/dev/shm/{})",
                    i.name,
                    i.kind,
                    i.size,
                    i.owner_uid,
                    i.mode,
                    open_text(&i),
                    i.os_name
                );
            }
            Ok(())
        }
        ShmCommand::Rm { name } => opts.remove(&name),
    }
}

/// What `ls` and `info` say about who has an object open.
#[cfg(unix)]
pub fn open_text(i: &ObjectInfo) -> String {
    match i.open_by.as_slice() {
        [] => "unused".to_string(),
        [0] => "open".to_string(),
        pids => format!(
            "open by {}",
            pids.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// An object as JSON: its listing, plus `state` (`open` or `unused`).
#[cfg(unix)]
pub fn info_json(i: &ObjectInfo) -> serde_json::Value {
    let mut v = serde_json::to_value(i).expect("serialisable");
    v["state"] = if i.is_open() { "open" } else { "unused" }.into();
    v
}

/// The listing of the named object `name` (any kind).
#[cfg(unix)]
fn info(name: &str) -> Result<ObjectInfo, Error> {
    let ns = ipckit::Namespace::from_env()?;
    ipckit::shm::list_in(&ns)?
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "no shared memory of this name in the namespace; `ipckit ls` lists what there is",
            )
            .with_name(name)
        })
}

/// `offset..offset+len` checked against the mapping, as a usize offset.
fn in_bounds(m: &Mapping, name: &str, offset: u64, len: u64) -> Result<usize, Error> {
    match offset.checked_add(len) {
        Some(end) if end <= m.len() as u64 => Ok(offset as usize),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "bytes {offset}..{} are outside the mapping's {} bytes",
                offset.saturating_add(len),
                m.len()
            ),
        )
        .with_name(name)),
    }
}

/// The bytes of `file`, or of stdin (`None` or `-`).
pub fn read_input(file: Option<&Path>) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    match file {
        Some(p) if p != Path::new("-") => {
            data = std::fs::read(p).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot read {}: {e}", p.display()))
            })?;
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut data)
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(data)
}
