//! Names and namespaces another user cannot subvert: a namespace path
//! that is a symbolic link (planted by another user) or a directory others
//! can write is refused; a record path that is a link is never followed
//! to a file of ours; no valid name collides with ipckit's own files.
//! The second user is `nobody` (65534): as in `security_peers.rs`, not
//! root means skipped, or a failure with `IPCKIT_REQUIRE_ROOT_TESTS=1`.

mod support;

use std::os::unix::fs::PermissionsExt;

use ipckit::name::validate_name;
use ipckit::{ErrorKind, Namespace};
use support::{flag, role, say};

fn as_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let msg = "security_names: not running as root, cannot act as a second user; skipped";
    if std::env::var("IPCKIT_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{msg} (IPCKIT_REQUIRE_ROOT_TESTS=1)");
    }
    eprintln!("{msg}");
    false
}

#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, args)) = role() else {
        return;
    };
    match role.as_str() {
        // Another user plants a link where the owner's namespace will be
        // looked for, pointing at a directory of the owner's.
        "plant" => {
            let at = flag(&args, "--at").unwrap();
            let to = flag(&args, "--to").unwrap();
            std::os::unix::fs::symlink(to, at).unwrap();
            say("PLANTED");
        }
        // Another user serving in a shared namespace, open to root.
        "shared-serve" => {
            let ns = Namespace::at_shared(flag(&args, "--dir").unwrap()).unwrap();
            let _s = ipckit::service::Server::builder("theirs")
                .namespace(&ns)
                .limits(ipckit::Limits::new().allow_uids(&[0]))
                .handler("who", |_: ()| Ok::<_, String>("nobody".to_string()))
                .bind()
                .unwrap();
            say("READY");
            support::wait_for_parent();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_namespace_link_planted_by_another_user_is_refused() {
    if !as_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A world-writable place, like /tmp, and a private directory of ours.
    let public = tmp.path().join("public");
    std::fs::create_dir(&public).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o700)).unwrap();
    let at = public.join("ipckit-0");
    let mut c = support::role_command_as(
        65534,
        "plant",
        &["--at", at.to_str().unwrap(), "--to", mine.to_str().unwrap()],
    );
    let mut p = support::Proc::spawn(&mut c);
    p.stdout_line("PLANTED");
    let e = Namespace::at(&at).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
}

#[test]
fn a_namespace_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ns");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Namespace::at(&d).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    Namespace::at(&d).unwrap();
}

#[test]
fn a_link_at_a_record_path_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let ns = Namespace::at(tmp.path().join("ns")).unwrap();
    let victim = tmp.path().join("precious.txt");
    std::fs::write(&victim, b"keep me").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, ns.dir().join("p.ep")).unwrap();
    let e = ipckit::pipe::ServerOptions::new()
        .namespace(&ns)
        .create("p")
        .unwrap_err();
    assert_ne!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn no_valid_name_collides_with_ipckit_files() {
    // The hashed socket directory and the counters files start with a dot.
    for bad in [".s/0123456789abcdef", "a/.b", ".hidden"] {
        let e = validate_name(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad}: {e}");
    }
    assert!(validate_name("a.b/c.d").is_ok());
}

#[test]
fn a_shared_namespace_holds_two_users_and_trust_stays_explicit() {
    if !as_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("team");
    let ns = Namespace::at_shared(&dir).unwrap();
    let mut c = support::role_command_as(65534, "shared-serve", &["--dir", dir.to_str().unwrap()]);
    let mut theirs = support::Proc::talking(&mut c);
    theirs.stdout_line("READY");
    // Not trusted by default: another user's server.
    let e = ipckit::service::Client::options()
        .namespace(&ns)
        .connect("theirs")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // Trusted explicitly, and the server admits root explicitly.
    let c = ipckit::service::Client::options()
        .namespace(&ns)
        .allow_server_uids(&[65534])
        .connect("theirs")
        .unwrap();
    assert_eq!(c.call::<_, String>("who", &()).unwrap(), "nobody");
    // Root's own endpoint in the same namespace is root's alone.
    let _mine = ipckit::pipe::ServerOptions::new()
        .namespace(&ns)
        .create("mine")
        .unwrap();
    assert!(ns.info("mine").unwrap().is_some());
}
