//! Shared memory on Windows: named mappings are Win32 sections
//! (`CreateFileMappingW` / `OpenFileMappingW` / `MapViewOfFile`). Run for
//! `x86_64-pc-windows-gnu` under Wine by `scripts/test-windows.sh`.
//!
//! The two-process test re-runs this test executable as its child (the
//! environment variable [`CHILD_ENV`] names the child's role); the interop
//! tests run a plain Win32 C program beside ipckit (see [`peer`]).
#![cfg(windows)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipckit::shm::{Mapping, MappingOptions, HEADER_LEN};
use ipckit::{ErrorKind, Namespace};

/// Set in a child started by a test: its role.
const CHILD_ENV: &str = "IPCKIT_WINDOWS_SHM_CHILD";
/// How long any child may take before the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn ns() -> (tempfile::TempDir, MappingOptions) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let opts = MappingOptions::new().namespace(&ns);
    (dir, opts)
}

/// Wait for `child` to exit (at most [`CHILD_LIMIT`]) and return its output
/// (stdout, stderr); panics if it fails or does not finish.
fn finish(child: Child, what: &str) -> (String, String) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(CHILD_LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {CHILD_LIMIT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn names_follow_the_windows_rule() {
    let (dir, opts) = ns();
    let os = opts.os_name("a/b").unwrap();
    assert!(os.starts_with("Local\\ipckit."), "{os}");
    assert!(os.ends_with(".a:b"), "{os}");
    // The hash part is 16 hex digits, as on Linux.
    let h = &os["Local\\ipckit.".len()..os.len() - ".a:b".len()];
    assert_eq!(h.len(), 16, "{os}");
    assert!(h.bytes().all(|b| b.is_ascii_hexdigit()), "{os}");
    // Another namespace gives another name.
    let (_d2, other) = ns();
    assert_ne!(other.os_name("a/b").unwrap(), os);
    // Names in the system's form are used as is; broken ones are refused.
    assert_eq!(opts.os_name("Local\\Foo").unwrap(), "Local\\Foo");
    assert_eq!(opts.os_name("Global\\Foo").unwrap(), "Global\\Foo");
    for bad in ["Local\\", "Local\\a\\b", "../x", "a\\b"] {
        assert_eq!(
            opts.os_name(bad).unwrap_err().kind(),
            ErrorKind::InvalidName,
            "{bad}"
        );
    }
    drop(dir);
}

#[test]
fn create_open_and_open_or_create() {
    let (_dir, opts) = ns();
    let a = opts.create("frame", 1000).unwrap();
    assert!(!a.existed());
    assert!(!a.replaced_stale());
    assert_eq!(a.len(), 1000);
    assert_eq!(a.creator_pid(), std::process::id());
    assert_eq!(a.name(), Some("frame"));
    a.write_at(0, b"hello").unwrap();
    a.write_at(995, b"tail!").unwrap();

    // The opener gets the creator's size (not the page-rounded section).
    let b = opts.open("frame").unwrap();
    assert!(b.existed());
    assert_eq!(b.len(), 1000);
    assert_eq!(b.creator_pid(), std::process::id());
    let mut buf = [0u8; 5];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    b.read_at(995, &mut buf).unwrap();
    assert_eq!(&buf, b"tail!");
    // Same memory both ways.
    b.write_at(10, b"back").unwrap();
    let mut four = [0u8; 4];
    a.read_at(10, &mut four).unwrap();
    assert_eq!(&four, b"back");

    // Exclusive create of a live name fails; open_or_create opens it at
    // its own size and says it existed (ERROR_ALREADY_EXISTS).
    assert_eq!(
        opts.create("frame", 1000).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let c = opts.open_or_create("frame", 7).unwrap();
    assert!(c.existed());
    assert_eq!(c.len(), 1000);
    let d = opts.open_or_create("fresh", 7).unwrap();
    assert!(!d.existed());
    assert_eq!(d.len(), 7);

    // remove is a no-op on Windows: the section lives while a handle does...
    opts.remove("frame").unwrap();
    assert!(opts.open("frame").is_ok());
    // ...and vanishes with the last one.
    drop((a, b, c));
    assert_eq!(opts.open("frame").unwrap_err().kind(), ErrorKind::NotFound);
    let again = opts.create("frame", 8).unwrap();
    assert!(!again.replaced_stale());
    assert_eq!(again.len(), 8);
    let mut z = [1u8; 5];
    again.read_at(0, &mut z).unwrap();
    assert_eq!(z, [0; 5], "a new section starts zeroed");
}

#[test]
fn sizes_and_bounds_are_checked() {
    let (_dir, opts) = ns();
    assert_eq!(
        opts.create("zero", 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        opts.create("huge", 1 << 50).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    assert_eq!(
        Mapping::anonymous(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // A size across a page boundary (header + data > 4096).
    let m = opts.create("odd", 5000).unwrap();
    assert_eq!(m.len(), 5000);
    let mut b = [0u8; 8];
    assert!(m.read_at(4992, &mut b).is_ok());
    assert_eq!(
        m.read_at(4993, &mut b).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        m.write_at(5000, b"x").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(m.write_at(usize::MAX, b"x").is_err());
    assert!(m.atomic_u32(4996).is_ok());
    assert!(m.atomic_u32(4998).is_err()); // misaligned
    assert!(m.atomic_u64(4996).is_err()); // out of bounds
    let o = opts.open("odd").unwrap();
    assert_eq!(o.len(), 5000);
    assert!(o.read_at(4993, &mut b).is_err());
}

#[test]
fn a_name_of_another_kind_is_refused() {
    let (_dir, opts) = ns();
    let _m = opts.create("k", 16).unwrap();
    // A section someone made by hand under the same name, without the
    // header, is refused as not an ipckit mapping; the raw OS-form name
    // maps it as is.
    let os = opts.os_name("k").unwrap();
    let raw = opts.open(&os).unwrap();
    assert!(raw.len() >= HEADER_LEN + 16);
    let mut magic = [0u8; 8];
    raw.read_at(0, &mut magic).unwrap();
    assert_eq!(&magic, b"IPCKSHM1");
    // Mark it as another kind (2: a mutex): opening it as a mapping is
    // refused, naming both kinds.
    raw.write_at(8, &2u32.to_ne_bytes()).unwrap();
    let e = opts.open("k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("is a mutex, not a mapping"), "{e}");
    // An unknown kind is a decode error.
    raw.write_at(8, &9u32.to_ne_bytes()).unwrap();
    let e = opts.open("k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("unknown kind 9"), "{e}");
    // A section at an ipckit name that never gets a header (made by hand
    // through its system name): the opener waits for the header, bounded,
    // then says so.
    let plain = opts.create(&opts.os_name("plain").unwrap(), 64).unwrap();
    assert_eq!(plain.len(), 64);
    let e = opts.open("plain").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}

#[test]
fn anonymous_and_file_backed() {
    let m = Mapping::anonymous(100).unwrap();
    assert_eq!(m.len(), 100);
    assert_eq!(m.name(), None);
    assert_eq!(m.os_name(), None);
    m.write_at(96, b"abcd").unwrap();
    assert!(m.write_at(97, b"abcd").is_err());

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data.bin");
    let f = Mapping::from_file(&p, 100).unwrap();
    assert!(!f.existed());
    assert_eq!(f.len(), 100);
    f.write_at(0, b"saved").unwrap();
    drop(f);
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes.len(), 100);
    assert_eq!(&bytes[..5], b"saved");
    let g = Mapping::from_file(&p, 1).unwrap();
    assert!(g.existed());
    assert_eq!(g.len(), 100);
}

/// The child's side of [`two_processes_child_writes_parent_reads`].
fn child_writes(opts: &MappingOptions) {
    let m = opts.open("shared").expect("child: open");
    assert!(m.existed());
    assert_eq!(m.len(), 3000);
    let parent: u32 = std::env::var("IPCKIT_TEST_PARENT_PID")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(m.creator_pid(), parent, "the header names the creator");
    let mut greet = [0u8; 6];
    m.read_at(0, &mut greet).unwrap();
    assert_eq!(&greet, b"parent");
    m.write_at(100, b"written by the child").unwrap();
    m.write_at(2996, &std::process::id().to_ne_bytes()).unwrap();
    // A second mapping the child creates itself: gone with the child.
    let own = opts.create("child-own", 10).unwrap();
    own.write_at(0, b"x").unwrap();
}

#[test]
fn two_processes_child_writes_parent_reads() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "writer");
        let opts = MappingOptions::new(); // IPCKIT_NAMESPACE from the parent
        child_writes(&opts);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::at(dir.path()).unwrap();
    let opts = MappingOptions::new().namespace(&ns);
    let m = opts.create("shared", 3000).unwrap();
    m.write_at(0, b"parent").unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "two_processes_child_writes_parent_reads",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "writer")
        .env("IPCKIT_NAMESPACE", ns.dir())
        .env("IPCKIT_TEST_PARENT_PID", std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let (stdout, _) = finish(child, "the child process");
    assert!(
        stdout.contains("1 passed"),
        "the child ran its role:\n{stdout}"
    );
    let mut buf = [0u8; 20];
    m.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"written by the child");
    let mut pid = [0u8; 4];
    m.read_at(2996, &mut pid).unwrap();
    assert_eq!(u32::from_ne_bytes(pid), child_pid);
    // What the child created died with it (Win32: last handle closed).
    assert_eq!(
        opts.open("child-own").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// The Win32 C program `scripts/windows/shm_peer.c` (it does not use
/// ipckit), compiled by `scripts/test-windows.sh` with the mingw-w64
/// compiler, which names it in `IPCKIT_C_PEER` (a Unix path: Wine shows it
/// on drive `Z:`). A Unix compiler cannot be run from inside Wine (Wine
/// starts it but cannot wait for it), so the script builds it beforehand.
/// `None` (and a message) if it is not there; a failure instead when
/// `IPCKIT_REQUIRE_C_PEER=1` (CI).
fn peer() -> Option<PathBuf> {
    let required = std::env::var_os("IPCKIT_REQUIRE_C_PEER").is_some_and(|v| v == "1");
    let Some(unix) = std::env::var_os("IPCKIT_C_PEER") else {
        assert!(
            !required,
            "IPCKIT_C_PEER is not set but IPCKIT_REQUIRE_C_PEER=1"
        );
        eprintln!("SKIPPED: IPCKIT_C_PEER is not set: run scripts/test-windows.sh, which compiles scripts/windows/shm_peer.c with x86_64-w64-mingw32-gcc");
        return None;
    };
    let unix = unix.to_string_lossy().into_owned();
    let exe = if unix.starts_with('/') {
        PathBuf::from(format!("Z:{}", unix.replace('/', "\\")))
    } else {
        PathBuf::from(unix)
    };
    assert!(
        exe.exists(),
        "IPCKIT_C_PEER names {exe:?}, which does not exist"
    );
    Some(exe)
}

#[test]
fn a_plain_win32_program_opens_an_ipckit_mapping() {
    let Some(peer) = peer() else {
        return;
    };
    let (_dir, opts) = ns();
    let m = opts.create("interop/frame", 256).unwrap();
    m.write_at(0, b"0123456789abcdef").unwrap();
    let os = opts.os_name("interop/frame").unwrap();
    let child = Command::new(&peer)
        .args(["open", &os])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, _) = finish(child, "the C peer");
    assert_eq!(
        stdout.trim(),
        format!("len=256 creator={}", std::process::id())
    );
    let mut b = [0u8; 28];
    m.read_at(16, &mut b).unwrap();
    assert_eq!(&b[..16], b"0123456789abcdef");
    assert_eq!(&b[16..], b"hello from C");
}

#[test]
fn ipckit_opens_a_section_a_plain_win32_program_made() {
    let Some(peer) = peer() else {
        return;
    };
    let name = format!("Local\\ipckit-test-raw-{}", std::process::id());
    let mut child = Command::new(&peer)
        .args(["serve", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        rest
    });
    let ready = rx
        .recv_timeout(CHILD_LIMIT)
        .expect("the C peer did not say ready");
    assert_eq!(ready.trim(), "ready");
    let (_dir, opts) = ns();
    let m = opts.open(&name).unwrap();
    assert!(m.existed());
    assert_eq!(m.len(), 4096, "no header: the whole section");
    assert_eq!(m.creator_pid(), 0);
    let mut b = [0u8; 10];
    m.read_at(0, &mut b).unwrap();
    assert_eq!(&b, b"raw from C");
    m.write_at(16, b"raw from Rust").unwrap();
    // open_or_create of the same system name finds it too.
    assert!(opts.open_or_create(&name, 1).unwrap().existed());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let (_, stderr) = finish(child, "the C peer");
    let rest = reader.join().unwrap();
    assert_eq!(rest.trim(), "got reply", "{stderr}");
}

// ----------------------------------------- a mapping handed to a process

/// The child's side of [`a_mapping_is_handed_to_a_child_as_a_duplicated_handle`]
/// and [`a_child_inherits_the_mapping_it_is_given`]: the handle's value
/// comes on stdin (duplicated) or in `IPCKIT_TEST_HANDLE` (inherited).
fn child_maps_handle() {
    use std::os::windows::io::{FromRawHandle, OwnedHandle, RawHandle};
    let v: usize = match std::env::var("IPCKIT_TEST_HANDLE") {
        Ok(v) => v.parse().unwrap(),
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            line.trim().parse().expect("child: a handle value on stdin")
        }
    };
    // SAFETY: the parent made (or let this process inherit) this handle
    // for this process alone; nothing else here owns it.
    let h = unsafe { OwnedHandle::from_raw_handle(v as RawHandle) };
    let m = Mapping::from_handle(h).expect("child: map the handle");
    assert_eq!(m.len(), 8192, "5000 bytes, rounded up to whole pages");
    assert_eq!(m.name(), None);
    let mut greet = [0u8; 15];
    m.read_at(0, &mut greet).unwrap();
    assert_eq!(&greet, b"from the parent");
    m.write_at(100, b"from the child").unwrap();
    m.write_at(4996, &std::process::id().to_ne_bytes()).unwrap();
}

fn handle_child(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "handle")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What the child wrote into `m`.
fn check_child_wrote(m: &Mapping, child_pid: u32) {
    let mut b = [0u8; 14];
    m.read_at(100, &mut b).unwrap();
    assert_eq!(&b, b"from the child");
    let mut pid = [0u8; 4];
    m.read_at(4996, &mut pid).unwrap();
    assert_eq!(u32::from_ne_bytes(pid), child_pid);
}

#[test]
fn a_mapping_is_handed_to_a_child_as_a_duplicated_handle() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "handle");
        child_maps_handle();
        return;
    }
    let m = Mapping::anonymous(5000).unwrap();
    m.write_at(0, b"from the parent").unwrap();
    let mut child = handle_child("a_mapping_is_handed_to_a_child_as_a_duplicated_handle")
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let v = m.duplicate_for(child_pid).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{v}").unwrap();
    drop(stdin);
    let (stdout, _) = finish(child, "the child process");
    assert!(
        stdout.contains("1 passed"),
        "the child ran its role:\n{stdout}"
    );
    check_child_wrote(&m, child_pid);

    // No such process; a handle that is no section.
    let e = m.duplicate_for(0xFFFF_FFF0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let file: std::os::windows::io::OwnedHandle = tempfile::tempfile().unwrap().into();
    let e = Mapping::from_handle(file).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

/// The other way to hand a mapping to a child: inheritance, limited to
/// that child (`CommandExt::spawn_with_handles`).
#[cfg(feature = "pipe")]
#[test]
fn a_child_inherits_the_mapping_it_is_given() {
    use ipckit::pipe::CommandExt as _;
    use std::os::windows::io::{AsHandle, AsRawHandle};
    if let Ok(role) = std::env::var(CHILD_ENV) {
        assert_eq!(role, "handle");
        child_maps_handle();
        return;
    }
    let m = Mapping::anonymous(5000).unwrap();
    m.write_at(0, b"from the parent").unwrap();
    let h = m.try_clone_handle().unwrap();
    let mut cmd = handle_child("a_child_inherits_the_mapping_it_is_given");
    cmd.env(
        "IPCKIT_TEST_HANDLE",
        (h.as_raw_handle() as usize).to_string(),
    );
    let child = cmd.spawn_with_handles(&[h.as_handle()]).unwrap();
    drop(h);
    let child_pid = child.id();
    let (stdout, _) = finish(child, "the child process");
    assert!(
        stdout.contains("1 passed"),
        "the child ran its role:\n{stdout}"
    );
    check_child_wrote(&m, child_pid);
}

/// A section widened on purpose (a mode with group or other bits: its
/// DACL grants Everyone) is refused by an open with the default mode, and
/// mapped when the opener widens too.
#[test]
fn a_widened_section_is_refused_unless_the_opener_widens() {
    let (_dir, opts) = ns();
    let wide = opts.clone().mode(0o666);
    let m = wide.create("wide", 64).unwrap();
    m.write_at(0, b"w").unwrap();
    for e in [
        opts.open("wide").unwrap_err(),
        opts.open_or_create("wide", 64).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("S-1-1-0"), "names the grant: {e}");
    }
    let mut b = [0u8; 1];
    wide.open("wide").unwrap().read_at(0, &mut b).unwrap();
    assert_eq!(&b, b"w");
    assert!(opts.clone().mode(0o640).open("wide").is_ok());
    // This user's own, granting nobody else: opened as before.
    let _own = opts.create("own", 8).unwrap();
    assert!(opts.open("own").unwrap().existed());
}
