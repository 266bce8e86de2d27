//! `ipckit ls`: the endpoints of the namespace.

use ipckit::Namespace;

pub fn run(json: bool) -> Result<(), ipckit::Error> {
    let ns = Namespace::from_env()?;
    let list = ns.list()?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "namespace": ns.dir(), "endpoints": list })
        );
        return Ok(());
    }
    if list.is_empty() {
        println!("no endpoints in {}", ns.dir().display());
        return Ok(());
    }
    let w = list.iter().map(|e| e.name.len()).max().unwrap_or(4).max(4);
    println!("{:<w$}  {:<10}  {:>8}  STATE", "NAME", "KIND", "PID");
    for e in list {
        println!(
            "{:<w$}  {:<10}  {:>8}  {}",
            e.name,
            e.kind,
            e.pid,
            e.state.as_str()
        );
    }
    Ok(())
}
