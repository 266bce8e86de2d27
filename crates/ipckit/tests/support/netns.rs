//! Two network namespaces ("machines") joined by a veth pair, for tests
//! across machines (the Zenoh fabric). Needs root; see [`can_run`].

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::DEADLINE;

/// Server side of the veth pair.
pub const SERVER_ADDR: &str = "10.77.0.1";
/// Client side.
pub const CLIENT_ADDR: &str = "10.77.0.2";
/// The server's Zenoh port (in its own network namespace, so never taken).
pub const PORT: u16 = 7447;

/// Whether the tests can run: root (else skipped with a message, or failed
/// when `IPCKIT_REQUIRE_ROOT_TESTS=1`).
pub fn can_run(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if root {
        return true;
    }
    if std::env::var("IPCKIT_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test} needs root (network namespaces) and IPCKIT_REQUIRE_ROOT_TESTS=1 is set");
    }
    eprintln!("skipping {test}: it needs root to create network namespaces (set IPCKIT_REQUIRE_ROOT_TESTS=1 to make this a failure)");
    false
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces ("machines") joined by a veth pair; both are
/// deleted on drop, also when the test fails.
pub struct Net {
    pub server_ns: String,
    pub client_ns: String,
}

impl Net {
    pub fn new() -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net {
            server_ns: format!("ipckit-fab-{tag}-s"),
            client_ns: format!("ipckit-fab-{tag}-c"),
        };
        // Interface names: at most 15 bytes.
        let (vs, vc) = (format!("vf{tag}s"), format!("vf{tag}c"));
        assert!(vs.len() <= 15, "interface name {vs} too long");
        ip(&["netns", "add", &net.server_ns]);
        ip(&["netns", "add", &net.client_ns]);
        ip(&[
            "link",
            "add",
            &vs,
            "netns",
            &net.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &vc,
            "netns",
            &net.client_ns,
        ]);
        for (ns, dev, addr) in [
            (&net.server_ns, &vs, SERVER_ADDR),
            (&net.client_ns, &vc, CLIENT_ADDR),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Carrier comes up a moment after `link set up`; Zenoh picks only
        // running interfaces for multicast scouting.
        for (ns, dev) in [(&net.server_ns, &vs), (&net.client_ns, &vc)] {
            super::wait_until(DEADLINE, &format!("{dev} is running"), || {
                let out = Command::new("ip")
                    .args(["-n", ns, "-o", "link", "show", "dev", dev])
                    .output()
                    .expect("run ip link show");
                String::from_utf8_lossy(&out.stdout).contains("LOWER_UP")
            });
        }
        net
    }

    /// This test binary in `role`, run inside network namespace `ns`.
    pub fn role(&self, ns: &str, role: &str, args: &[&str]) -> Command {
        let inner = super::role_command(role, args);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so
        // the pair.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A Zenoh (fabric) namespace of its own for each test: `<prefix>-<pid>-<n>`.
pub fn fabric_namespace(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
