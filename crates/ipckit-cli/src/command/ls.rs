//! `ipckit ls`: the endpoints of the namespace, and its clipboard boards.

use ipckit::Namespace;

pub fn run(json: bool) -> Result<(), ipckit::Error> {
    // Listing creates nothing: a namespace directory that does not exist
    // yet simply holds nothing.
    let dir = std::env::var_os(ipckit::name::NAMESPACE_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(Namespace::default_dir);
    if !dir.exists() {
        if json {
            println!(
                "{}",
                serde_json::json!({ "namespace": dir, "endpoints": [], "boards": [] })
            );
        } else {
            println!("no endpoints in {} (it does not exist yet)", dir.display());
        }
        return Ok(());
    }
    let ns = Namespace::from_env()?;
    let list = ns.list()?;
    let boards = ipckit::clipboard::list_in(&ns)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "namespace": ns.dir(), "endpoints": list, "boards": boards })
        );
        return Ok(());
    }
    if list.is_empty() && boards.is_empty() {
        println!("no endpoints in {}", ns.dir().display());
        return Ok(());
    }
    // One row per endpoint (STATE live/stale) and per board (STATE its
    // sequence number; PID the owner of its item, '-' if none).
    let mut rows: Vec<[String; 4]> = list
        .into_iter()
        .map(|e| {
            [
                e.name,
                e.kind,
                e.pid.to_string(),
                e.state.as_str().to_string(),
            ]
        })
        .collect();
    rows.extend(boards.into_iter().map(|b| {
        [
            b.name,
            "clipboard".to_string(),
            b.owner.map_or("-".to_string(), |p| p.to_string()),
            format!("sequence {}", b.sequence),
        ]
    }));
    rows.sort();
    let w = rows.iter().map(|r| r[0].len()).max().unwrap_or(4).max(4);
    let k = rows.iter().map(|r| r[1].len()).max().unwrap_or(4).max(4);
    println!("{:<w$}  {:<k$}  {:>8}  STATE", "NAME", "KIND", "PID");
    for [name, kind, pid, state] in rows {
        println!("{name:<w$}  {kind:<k$}  {pid:>8}  {state}");
    }
    Ok(())
}
