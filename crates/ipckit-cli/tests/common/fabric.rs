//! `ipckit` across network namespaces on the Zenoh fabric: each test its
//! own fabric namespace, scouting off, the session settings of the
//! environment removed.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::TestNs;

/// A fabric namespace of its own for each test: `<prefix>-<pid>-<n>`.
pub fn fabric_namespace(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `ipckit <args>` run inside network namespace `netns`, on fabric
/// namespace `fabric_ns`, scouting off, with the local namespace of `t`
/// (local names never cross: each side has its own).
pub fn ipckit_in(t: &TestNs, netns: &str, fabric_ns: &str, args: &[&str]) -> Command {
    let inner = t.ipckit(args);
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns])
        .arg(inner.get_program())
        .args(inner.get_args())
        .arg("--no-scouting");
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("IPCKIT_ZENOH_NAMESPACE", fabric_ns)
        .env_remove("IPCKIT_ZENOH_CONFIG")
        .env_remove("IPCKIT_ZENOH_LISTEN")
        .env_remove("IPCKIT_ZENOH_CONNECT");
    c
}
