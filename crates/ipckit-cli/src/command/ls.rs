//! `ipckit ls [--prune [--unused]]`: everything in the namespace — endpoints, named
//! shared memory (mappings, maps, sync objects) and clipboard boards.
//!
//! On Windows: the endpoints (services, message receivers, DDE servers:
//! the ones with records) and the boards; named mappings, maps and sync
//! objects are kernel objects there, which cannot be listed by namespace.

use ipckit::name::{EndpointInfo, EndpointState};
#[cfg(unix)]
use ipckit::shm::ObjectInfo;
use ipckit::{Error, Namespace};

/// Board maps are named `clip/<board>`; `ls` shows them as boards.
#[cfg(unix)]
const BOARD_PREFIX: &str = "clip/";

/// The namespace directory `ls` looks at (`--namespace`,
/// `IPCKIT_NAMESPACE`, else the default), without creating it.
fn namespace_dir() -> std::path::PathBuf {
    std::env::var_os(ipckit::name::NAMESPACE_ENV)
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(Namespace::default_dir)
}

#[cfg(unix)]
pub fn run(json: bool, prune: bool, unused: bool) -> Result<(), Error> {
    // Listing creates nothing: a namespace directory that does not exist
    // yet simply holds nothing.
    let dir = namespace_dir();
    if !dir.exists() {
        // Objects in /dev/shm outlive a deleted namespace directory.
        let leaked = ipckit::shm::list_at(&dir)?;
        if prune && !leaked.is_empty() {
            // Recreated so they can be pruned under it (same path, same
            // names). Nothing can use them any more: they all go.
            return self::prune(&Namespace::from_env()?, json, true);
        }
        if json {
            let objects: Vec<serde_json::Value> =
                leaked.iter().map(super::shm::info_json).collect();
            let v = if prune {
                serde_json::json!({ "namespace": dir, "removed": [], "errors": [] })
            } else {
                serde_json::json!({
                    "namespace": dir, "endpoints": [], "objects": objects, "boards": []
                })
            };
            println!("{v}");
        } else if leaked.is_empty() {
            println!("nothing in {} (it does not exist yet)", dir.display());
        } else {
            println!(
                "{} does not exist, but {} shared-memory object(s) of it are still in /dev/shm; `ipckit ls --prune` removes those nobody has open:",
                dir.display(),
                leaked.len()
            );
            for o in &leaked {
                println!(
                    "  {} {} {} bytes, {} (/dev/shm/{})",
                    o.name,
                    o.kind,
                    o.size,
                    super::shm::open_text(o),
                    o.os_name
                );
            }
        }
        return Ok(());
    }
    let ns = Namespace::from_env()?;
    if prune {
        return self::prune(&ns, json, unused);
    }
    let endpoints = ns.list()?;
    let objects = ipckit::shm::list_in(&ns)?;
    let boards = ipckit::clipboard::list_in(&ns)?;
    if json {
        let endpoints: Vec<serde_json::Value> = endpoints
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).expect("serialisable");
                v["owner_uid"] = ns.record_owner(&e.name).ok().flatten().into();
                v
            })
            .collect();
        let objects: Vec<serde_json::Value> = objects.iter().map(super::shm::info_json).collect();
        println!(
            "{}",
            serde_json::json!({
                "namespace": ns.dir(),
                "endpoints": endpoints,
                "objects": objects,
                "boards": boards,
            })
        );
        return Ok(());
    }
    if endpoints.is_empty() && objects.is_empty() && boards.is_empty() {
        println!("nothing in {}", ns.dir().display());
        return Ok(());
    }
    // NAME KIND PID OWNER SIZE STATE. Endpoints: PID the owner process,
    // STATE live/stale. Shared memory: PID its creator, STATE who has it
    // open (or `unused`). Boards: PID the owner of the item ('-' if none),
    // STATE the sequence number.
    let mut rows: Vec<[String; 6]> = Vec::new();
    for e in &endpoints {
        rows.push([
            e.name.clone(),
            e.kind.clone(),
            e.pid.to_string(),
            uid_text(ns.record_owner(&e.name).ok().flatten()),
            "-".into(),
            e.state.as_str().into(),
        ]);
    }
    for o in objects
        .iter()
        .filter(|o| !(o.kind == "map" && o.name.starts_with(BOARD_PREFIX)))
    {
        rows.push([
            o.name.clone(),
            o.kind.clone(),
            if o.creator_pid == 0 {
                "-".into()
            } else {
                o.creator_pid.to_string()
            },
            uid_text(Some(o.owner_uid)),
            o.size.to_string(),
            super::shm::open_text(o),
        ]);
    }
    for b in &boards {
        let o = objects
            .iter()
            .find(|o| o.name == format!("{BOARD_PREFIX}{}", b.name));
        rows.push([
            b.name.clone(),
            "clipboard".into(),
            b.owner.map_or("-".to_string(), |p| p.to_string()),
            uid_text(o.map(|o| o.owner_uid)),
            b.max_size.to_string(),
            format!("sequence {}", b.sequence),
        ]);
    }
    print_table(rows);
    Ok(())
}

/// `ls` on Windows: the endpoints with records and the boards, as on
/// Linux (OWNER is `-`: Windows objects admit their creating user only).
/// `--prune` removes stale endpoint records; `--unused` has nothing to do
/// there (an object vanishes with its last handle) and is refused.
#[cfg(windows)]
pub fn run(json: bool, prune: bool, unused: bool) -> Result<(), Error> {
    if unused {
        return Err(Error::new(
            ipckit::ErrorKind::Unsupported,
            "--unused removes shared memory nobody has open, which Windows removes by itself (an object vanishes with its last handle); use `ls --prune`",
        ));
    }
    // Listing creates nothing: a namespace directory that does not exist
    // yet simply holds nothing.
    let dir = namespace_dir();
    if !dir.exists() {
        if json {
            let v = if prune {
                serde_json::json!({ "namespace": dir, "removed": [], "errors": [] })
            } else {
                serde_json::json!({
                    "namespace": dir, "endpoints": [], "objects": [], "boards": []
                })
            };
            println!("{v}");
        } else {
            println!("nothing in {} (it does not exist yet)", dir.display());
        }
        return Ok(());
    }
    let ns = Namespace::from_env()?;
    if prune {
        return self::prune(&ns, json, false);
    }
    let endpoints = ns.list()?;
    let boards = ipckit::clipboard::list_in(&ns)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "namespace": crate::util::shown_dir(ns.dir()),
                "endpoints": endpoints,
                "objects": [],
                "boards": boards,
            })
        );
        return Ok(());
    }
    if endpoints.is_empty() && boards.is_empty() {
        println!("nothing in {}", crate::util::shown_dir(ns.dir()));
        return Ok(());
    }
    let mut rows: Vec<[String; 6]> = Vec::new();
    for e in &endpoints {
        rows.push([
            e.name.clone(),
            e.kind.clone(),
            e.pid.to_string(),
            "-".into(),
            "-".into(),
            e.state.as_str().into(),
        ]);
    }
    for b in &boards {
        rows.push([
            b.name.clone(),
            "clipboard".into(),
            b.owner.map_or("-".to_string(), |p| p.to_string()),
            "-".into(),
            b.max_size.to_string(),
            format!("sequence {}", b.sequence),
        ]);
    }
    print_table(rows);
    Ok(())
}

/// The `NAME KIND PID OWNER SIZE STATE` table of `rows`, sorted.
fn print_table(mut rows: Vec<[String; 6]>) {
    rows.sort();
    let head = ["NAME", "KIND", "PID", "OWNER", "SIZE", "STATE"];
    let w: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: [&str; 6]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {:>w4$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
    };
    println!("{}", line(head));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
}

/// A uid as the user's name when `/etc/passwd` has it, else the number.
#[cfg(unix)]
fn uid_text(uid: Option<u32>) -> String {
    let Some(uid) = uid else {
        return "-".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Remove stale endpoint records (with their sockets) and, with `unused`,
/// shared memory nobody has open; never a live endpoint or an open object.
/// Without `unused`, unused objects are named as kept: a map or mapping
/// keeps its content with nobody attached, by design.
fn prune(ns: &Namespace, json: bool, unused: bool) -> Result<(), Error> {
    let mut removed: Vec<serde_json::Value> = Vec::new();
    // Windows: nothing is kept unused (no shared memory looked at).
    #[cfg_attr(windows, allow(unused_mut))]
    let mut kept_unused: Vec<String> = Vec::new();
    #[cfg(windows)]
    let _ = unused;
    let mut kept_errors = Vec::new();
    for e in ns.list()? {
        let EndpointInfo {
            name,
            kind,
            pid,
            state,
            ..
        } = e;
        // pid 0: an empty record a server starting right now has created
        // but not locked yet; never pulled from under it.
        if state != EndpointState::Stale || pid == 0 {
            continue;
        }
        match ns.remove_stale(&name) {
            Ok(()) => removed.push(serde_json::json!({
                "name": name, "kind": kind, "pid": pid, "what": "endpoint",
            })),
            // Taken over by a new live owner meanwhile: not stale any more.
            Err(e)
                if matches!(
                    e.kind(),
                    ipckit::ErrorKind::Busy | ipckit::ErrorKind::AlreadyExists
                ) => {}
            Err(e) => kept_errors.push(e),
        }
    }
    // Windows: no shared memory to look at (it vanishes with its last
    // handle, and cannot be listed).
    #[cfg(unix)]
    let opts = ipckit::shm::MappingOptions::new().namespace(ns);
    #[cfg(unix)]
    for o in ipckit::shm::list_in(ns)? {
        let ObjectInfo {
            name,
            kind,
            size,
            owner_uid,
            ..
        } = &o;
        if o.is_open() {
            continue;
        }
        if !unused {
            kept_unused.push(name.clone());
            continue;
        }
        match opts.remove_unused(name) {
            Ok(true) => removed.push(serde_json::json!({
                "name": name, "kind": kind, "size": size, "owner_uid": owner_uid,
                "what": "shm", "os_name": o.os_name,
            })),
            Ok(false) => {}
            Err(e) if e.kind() == ipckit::ErrorKind::NotFound => {}
            Err(e) => kept_errors.push(e),
        }
    }
    if json {
        let errors: Vec<String> = kept_errors.iter().map(|e| e.to_string()).collect();
        println!(
            "{}",
            serde_json::json!({
                "namespace": crate::util::shown_dir(ns.dir()), "removed": removed, "kept_unused": kept_unused,
                "errors": errors,
            })
        );
    } else if removed.is_empty() {
        println!("nothing stale in {}", crate::util::shown_dir(ns.dir()));
    } else {
        for r in &removed {
            let what = match r["what"].as_str() {
                Some("endpoint") => format!(
                    "stale {} (pid {} is gone)",
                    r["kind"].as_str().unwrap_or("?"),
                    r["pid"]
                ),
                _ => format!(
                    "unused {} of {} bytes (/dev/shm/{})",
                    r["kind"].as_str().unwrap_or("?"),
                    r["size"],
                    r["os_name"].as_str().unwrap_or("?")
                ),
            };
            println!("removed {} {what}", r["name"].as_str().unwrap_or("?"));
        }
    }
    if !json && !kept_unused.is_empty() {
        println!(
            "kept {} shared-memory object(s) nobody has open ({}): they keep their content; `ipckit ls --prune --unused` removes them",
            kept_unused.len(),
            kept_unused.join(", ")
        );
    }
    match kept_errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `ls --remote` without the fabric built in.
#[cfg(not(feature = "zenoh"))]
pub fn run_remote(
    _json: bool,
    _watch: bool,
    _timeout: Option<std::time::Duration>,
) -> Result<(), Error> {
    Err(crate::util::no_fabric("ls --remote"))
}

/// How long `ls --remote` gathers answers unless `--timeout` says.
#[cfg(feature = "zenoh")]
const REMOTE_GATHER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long `ls --remote` waits for a first peer before asking (a session
/// found by multicast scouting meets its peers a few milliseconds after it
/// opens).
#[cfg(feature = "zenoh")]
const FIRST_PEER: std::time::Duration = std::time::Duration::from_millis(500);

/// `ls --remote [--watch]`: the fabric's live endpoints, or their changes.
#[cfg(feature = "zenoh")]
pub fn run_remote(
    json: bool,
    watch: bool,
    timeout: Option<std::time::Duration>,
) -> Result<(), Error> {
    use std::io::Write as _;
    use std::time::Instant;

    use ipckit::fabric::Change;

    let fabric = crate::util::fabric()?;
    if watch {
        crate::util::catch_stop_signals()?;
        let w = fabric.watch()?;
        let until = timeout.map(|t| Instant::now() + t);
        let mut out = std::io::stdout().lock();
        while !crate::util::stop_requested() {
            let left = until.map(|u| u.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                break;
            }
            let wait = left.map_or(crate::util::STOP_POLL, |l| l.min(crate::util::STOP_POLL));
            let Some(c) = w.next_timeout(wait)? else {
                continue;
            };
            let (sign, event, e) = match &c {
                Change::Appeared(e) => ('+', "appeared", e),
                Change::Gone(e) => ('-', "gone", e),
            };
            let line = if json {
                serde_json::json!({
                    "event": event, "kind": e.kind, "name": e.name, "owner": e.owner,
                })
                .to_string()
            } else {
                format!(
                    "{sign} {} {} {}",
                    e.kind,
                    e.name,
                    e.owner.as_deref().unwrap_or("-")
                )
            };
            // A closed stdout (`| head`) ends the watch.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        return Ok(());
    }
    let gather = timeout.unwrap_or(REMOTE_GATHER);
    // Give scouting a moment to find the first peer (bounded; a fabric
    // with no other peer simply lists this process's own endpoints).
    let t = Instant::now();
    while fabric.peers().is_empty() && t.elapsed() < FIRST_PEER.min(gather) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let endpoints = fabric.endpoints(gather)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "namespace": fabric.namespace(),
                "id": fabric.id(),
                "peers": fabric.peers(),
                "endpoints": endpoints,
            })
        );
        return Ok(());
    }
    if endpoints.is_empty() {
        println!(
            "nothing live on the fabric (namespace '{}', {} peer(s) reached)",
            fabric.namespace(),
            fabric.peers().len()
        );
        return Ok(());
    }
    let head = ["NAME", "KIND", "OWNER"];
    let w0 = endpoints
        .iter()
        .map(|e| e.name.chars().count())
        .chain([head[0].len()])
        .max()
        .unwrap_or(0);
    let w1 = endpoints
        .iter()
        .map(|e| e.kind.chars().count())
        .chain([head[1].len()])
        .max()
        .unwrap_or(0);
    println!("{:<w0$}  {:<w1$}  {}", head[0], head[1], head[2]);
    for e in &endpoints {
        println!(
            "{:<w0$}  {:<w1$}  {}",
            e.name,
            e.kind,
            e.owner.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
