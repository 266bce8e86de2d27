//! Peer identity both ways, across real processes of two users: a server
//! refuses local peers of another uid (unless its `Limits` allow them),
//! and a client refuses a server of another uid (an impostor put into a
//! shared namespace). The second user is `nobody` (65534): the test must
//! run as root to switch to it. Not root: it says so on stderr and
//! returns, or fails when `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI sets it).

mod support;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use ipckit::service::{Client, Server};
use ipckit::{ErrorKind, Limits};
use support::{flag, role, say, wait_for_parent, TestNs};

const NOBODY: u32 = 65534;

/// Whether this process can switch users; else why not (or a failure).
fn as_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let msg = "security_peers: not running as root, cannot act as a second user; skipped";
    if std::env::var("IPCKIT_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{msg} (IPCKIT_REQUIRE_ROOT_TESTS=1)");
    }
    eprintln!("{msg}");
    false
}

/// A namespace the second user can also use (a shared, world-writable
/// directory: the setting in which impostors matter).
fn shared_ns() -> TestNs {
    let t = TestNs::new();
    for p in [t.dir.path(), t.path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    t
}

/// This test binary in `role`, as `nobody`, in the namespace of `t`.
fn nobody(t: &TestNs, role: &str, args: &[&str]) -> std::process::Command {
    let mut c = support::role_command_as(NOBODY, role, args);
    c.env(ipckit::name::NAMESPACE_ENV, t.path());
    c
}

#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = role() else {
        return;
    };
    // The other user cannot use the owner's namespace through ipckit (it
    // is not theirs); it goes at the socket path directly, as an attacker
    // would.
    let path = flag(&args, "--path").expect("--path").to_string();
    match role.as_str() {
        // An impostor: replaces the owner's socket with its own listener,
        // which greets like a service.
        "impostor" => {
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            say("READY");
            std::thread::spawn(move || {
                for c in l.incoming() {
                    let mut c = c.unwrap();
                    let mut hello = b"IPCKSERV".to_vec();
                    hello.extend_from_slice(&[1, 0, 0, 0]);
                    hello.extend_from_slice(&(1u32 << 20).to_le_bytes());
                    let _ = c.write_all(&hello);
                    std::mem::forget(c);
                }
            });
            wait_for_parent();
        }
        // A client of another user: prints the status byte of the hello.
        "knock" => {
            let mut c = UnixStream::connect(&path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut h = [0u8; 16];
            match c.read_exact(&mut h) {
                Ok(()) => say(&format!("RESULT status {}", h[9])),
                Err(e) => say(&format!("RESULT error {e}")),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Make the owner's socket connectable by anyone, as a careless or
/// widened deployment might: only the uid check is left to refuse.
fn open_socket(t: &TestNs, name: &str) {
    let p = t.ns.socket_path(name);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
}

#[test]
fn a_server_refuses_a_peer_of_another_uid_and_counts_it() {
    if !as_root() {
        return;
    }
    let t = shared_ns();
    let s = Server::builder("svc")
        .namespace(&t.ns)
        .handler("who", |_: ()| Ok::<_, String>("owner".to_string()))
        .bind()
        .unwrap();
    open_socket(&t, "svc");
    let path = t.ns.socket_path("svc");
    let mut c = support::Proc::spawn(&mut nobody(
        &t,
        "knock",
        &["--path", path.to_str().unwrap()],
    ));
    // Status 2: denied (the client would report PermissionDenied).
    let line = c.stdout_line("RESULT ");
    assert!(line.contains("RESULT status 2"), "{line}");
    assert!(s.describe().limits.refused_denied >= 1);
    // The owner's own clients are served.
    let me = Client::options().namespace(&t.ns).connect("svc").unwrap();
    assert_eq!(me.call::<_, String>("who", &()).unwrap(), "owner");
}

#[test]
fn limits_may_allow_another_uid() {
    if !as_root() {
        return;
    }
    let t = shared_ns();
    let _s = Server::builder("svc")
        .namespace(&t.ns)
        .limits(Limits::new().allow_uids(&[NOBODY]))
        .handler("who", |_: ()| Ok::<_, String>("owner".to_string()))
        .bind()
        .unwrap();
    open_socket(&t, "svc");
    let path = t.ns.socket_path("svc");
    let mut c = support::Proc::spawn(&mut nobody(
        &t,
        "knock",
        &["--path", path.to_str().unwrap()],
    ));
    let line = c.stdout_line("RESULT ");
    assert!(line.contains("RESULT status 0"), "{line}");
}

#[test]
fn a_client_refuses_an_impostor_server_of_another_uid() {
    if !as_root() {
        return;
    }
    let t = shared_ns();
    // The owner's service is live; the impostor replaces its socket.
    let _s = Server::builder("svc").namespace(&t.ns).bind().unwrap();
    let path = t.ns.socket_path("svc");
    let mut imp = support::Proc::talking(&mut nobody(
        &t,
        "impostor",
        &["--path", path.to_str().unwrap()],
    ));
    imp.stdout_line("READY");
    let e = Client::options()
        .namespace(&t.ns)
        .timeout(Duration::ZERO)
        .connect("svc")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("impostor"), "{e}");
    // Named pipes, mailslots and window messages dial the same way.
    let e = ipckit::pipe::ClientOptions::new()
        .namespace(&t.ns)
        .timeout(Duration::ZERO)
        .connect("svc")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // A client told to trust that uid (or any) goes through the check.
    Client::options()
        .namespace(&t.ns)
        .allow_server_uids(&[NOBODY])
        .connect("svc")
        .unwrap();
    let e = ipckit::pipe::ClientOptions::new()
        .namespace(&t.ns)
        .allow_any_server()
        .connect("svc")
        .unwrap_err();
    // Past the identity check, the impostor's service hello is not a pipe's.
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
}
