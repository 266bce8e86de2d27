//! Named shared memory against another local user (issue 11, item 1):
//! a squatted object is refused, another user cannot read, write, truncate
//! or remove a default object, and a creator can widen access on purpose.
//!
//! The other user is uid/gid 65534 ("nobody"): the test process, which
//! must be root for that, re-executes itself as that user in a role
//! (`child_role`). The child needs no namespace: it works on the object in
//! `/dev/shm` by its OS name, as another language would. A test that is
//! not root prints why on stderr and returns, or fails when
//! `IPCKIT_REQUIRE_ROOT_TESTS=1` (CI). Every wait is bounded; children are
//! killed and reaped on drop.

mod support;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use ipckit::map::SharedMapOptions;
use ipckit::shm::{MappingOptions, HEADER_LEN};
use ipckit::sync::MutexOptions;
use ipckit::ErrorKind;
use support::{say, Output, Proc, TestNs, DEADLINE};

/// The other user (and group).
const OTHER: u32 = 65534;

/// Whether this process can act as another user; if not, say so on stderr
/// and return false, or panic when `IPCKIT_REQUIRE_ROOT_TESTS=1`.
fn can_switch_uid() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let required = std::env::var("IPCKIT_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "security_shm: not root, cannot switch uid, and IPCKIT_REQUIRE_ROOT_TESTS=1"
    );
    // Straight to the stderr descriptor: `eprintln!` would be captured by
    // the test harness and shown only on failure.
    let _ = writeln!(
        std::io::stderr(),
        "security_shm: not root, cannot switch uid; skipped"
    );
    false
}

/// This test binary in `role`, run as the other user, to completion.
fn as_other(role: &str, args: &[&str]) -> Output {
    let mut cmd = support::role_command_as(OTHER, role, args);
    Proc::spawn(&mut cmd).finish(DEADLINE)
}

/// `/dev/shm/<os>`, removed on drop (the squatter's object is not in any
/// namespace, so `TestNs` would not remove it; as root we can).
struct ShmFile(PathBuf);

impl ShmFile {
    fn new(os: &str) -> ShmFile {
        ShmFile(PathBuf::from(format!("/dev/shm/{os}")))
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A header an ipckit opener would accept (see `shm::Header`): kind, then
/// `data` as the content.
fn fake_object(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN];
    v[0..8].copy_from_slice(b"IPCKSHM1");
    v[8..12].copy_from_slice(&kind.to_ne_bytes());
    v[12..16].copy_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
    v[16..24].copy_from_slice(&(data.len() as u64).to_ne_bytes());
    v.extend_from_slice(data);
    v
}

/// The outcome of a file operation, as the child reports it: `ok` or the
/// errno.
fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("errno{}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, args)) = support::role() else {
        return;
    };
    say(&format!("UID {}", rustix::process::getuid().as_raw()));
    let path = format!("/dev/shm/{}", args[0]);
    match role.as_str() {
        // Pre-create the object, world-writable, with a valid-looking
        // header of kind args[1] and our own content.
        "squat" => {
            let kind: u32 = args[1].parse().unwrap();
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
                .unwrap();
            f.set_permissions(std::fs::Permissions::from_mode(0o666))
                .unwrap();
            f.write_all(&fake_object(kind, b"squatter's bytes"))
                .unwrap();
            say("SQUATTED");
        }
        // Try everything another user could do to a default object.
        "attack" => {
            let rw = OpenOptions::new().read(true).write(true).open(&path);
            say(&format!("RW {}", outcome(rw)));
            let ro = OpenOptions::new().read(true).open(&path);
            say(&format!("RO {}", outcome(ro)));
            // `open(O_WRONLY | O_TRUNC)`: there is no truncating by path
            // without write permission either.
            let trunc = OpenOptions::new().write(true).truncate(true).open(&path);
            say(&format!("TRUNCATE {}", outcome(trunc)));
            say(&format!("UNLINK {}", outcome(std::fs::remove_file(&path))));
        }
        // Open a widened object directly, read the creator's bytes, write
        // ours after them.
        "widened" => {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let mut all = Vec::new();
            f.read_to_end(&mut all).unwrap();
            let text = String::from_utf8_lossy(&all[HEADER_LEN..HEADER_LEN + 5]).into_owned();
            say(&format!("READ {text}"));
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"other", (HEADER_LEN + 8) as u64).unwrap();
            say("WROTE");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn squatted_object_is_refused() {
    if !can_switch_uid() {
        return;
    }
    let t = TestNs::new();
    let opts = MappingOptions::new().namespace(&t.ns);

    // Kinds as in the header: 1 mapping, 2 mutex, 5 shared map.
    for (name, kind) in [("frame", 1u32), ("lock", 2), ("settings", 5)] {
        let os = opts.os_name(name).unwrap();
        let file = ShmFile::new(&os);
        let out = as_other("squat", &[&os, &kind.to_string()]);
        out.assert_success();
        assert_eq!(out.line("UID "), Some("65534"), "{out:#?}");
        let meta = std::fs::metadata(&file.0).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (OTHER, 0o666));

        let refused = |r: ipckit::Result<()>, what: &str| {
            let e = r.expect_err(what);
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{what}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&os) && msg.contains("uid 65534") && msg.contains("0o666"),
                "{what}: the message names the object, its owner and mode: {msg}"
            );
        };
        match kind {
            1 => {
                refused(opts.open(name).map(drop), "open");
                refused(opts.open_or_create(name, 64).map(drop), "open_or_create");
                // The replace-an-orphan path: nobody holds it open, but it
                // is not ours to replace.
                refused(opts.create(name, 64).map(drop), "create");
            }
            2 => {
                let m = MutexOptions::new().namespace(&t.ns);
                refused(m.open(name).map(drop), "mutex open");
                refused(m.open_or_create(name).map(drop), "mutex open_or_create");
                refused(m.create(name).map(drop), "mutex create");
            }
            _ => {
                let m = SharedMapOptions::new().namespace(&t.ns);
                refused(m.open(name).map(drop), "map open");
                refused(m.open_or_create(name).map(drop), "map open_or_create");
                refused(m.create(name).map(drop), "map create");
            }
        }
        // Left as it was: not removed, replaced, or written.
        let after = std::fs::metadata(&file.0).unwrap();
        assert_eq!((after.ino(), after.uid()), (meta.ino(), OTHER));
        assert_eq!(
            std::fs::read(&file.0).unwrap(),
            fake_object(kind, b"squatter's bytes")
        );
    }
}

#[test]
fn other_user_cannot_touch_a_default_object() {
    if !can_switch_uid() {
        return;
    }
    let t = TestNs::new().remove_shm_on_drop(&["secret"]);
    let opts = MappingOptions::new().namespace(&t.ns);
    let m = opts.create("secret", 4096).unwrap();
    m.write_at(0, b"owner's secret").unwrap();
    let os = m.os_name().unwrap().to_string();
    let meta = std::fs::metadata(format!("/dev/shm/{os}")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);

    let out = as_other("attack", &[&os]);
    out.assert_success();
    assert_eq!(out.line("UID "), Some("65534"), "{out:#?}");
    assert_eq!(out.line("RW "), Some("errno13"), "{out:#?}"); // EACCES
    assert_eq!(out.line("RO "), Some("errno13"), "{out:#?}");
    assert_eq!(out.line("TRUNCATE "), Some("errno13"), "{out:#?}");
    // /dev/shm is sticky: only the owner (or root) removes a name.
    assert_eq!(out.line("UNLINK "), Some("errno1"), "{out:#?}"); // EPERM

    // Still whole and readable (a truncation would have made this SIGBUS).
    let after = std::fs::metadata(format!("/dev/shm/{os}")).unwrap();
    assert_eq!(after.len(), meta.len());
    let mut buf = [0u8; 14];
    m.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"owner's secret");
    let mut last = [1u8; 1];
    m.read_at(4095, &mut last).unwrap();
    assert_eq!(last, [0]);
}

#[test]
fn widened_object_is_shared_on_purpose() {
    if !can_switch_uid() {
        return;
    }
    let t = TestNs::new().remove_shm_on_drop(&["team"]);
    let shared = MappingOptions::new().namespace(&t.ns).mode(0o666);
    let m = shared.create("team", 64).unwrap();
    m.write_at(0, b"hello").unwrap();
    let os = m.os_name().unwrap().to_string();
    let meta = std::fs::metadata(format!("/dev/shm/{os}")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o666);

    let out = as_other("widened", &[&os]);
    out.assert_success();
    assert_eq!(out.line("UID "), Some("65534"), "{out:#?}");
    assert_eq!(out.line("READ "), Some("hello"), "{out:#?}");
    let mut buf = [0u8; 5];
    m.read_at(8, &mut buf).unwrap();
    assert_eq!(&buf, b"other");

    // The owner's openers accept it only when they accept that mode.
    let strict = MappingOptions::new().namespace(&t.ns);
    let e = strict.open("team").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let again = shared.open("team").unwrap();
    again.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}
