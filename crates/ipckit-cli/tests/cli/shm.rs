//! `ipckit shm create|write|read|info|rm`.

use std::process::Stdio;

use crate::common::{TestNs, DEADLINE};

/// `ipckit <args>` with `input` on its stdin (from a file, so the child
/// never waits on us), to completion (bounded).
fn run_with_stdin(t: &TestNs, args: &[&str], input: &[u8]) -> crate::common::Output {
    let path = t.outside("stdin.bin");
    std::fs::write(&path, input).unwrap();
    let mut cmd = t.ipckit(args);
    cmd.stdin(Stdio::from(std::fs::File::open(&path).unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    crate::common::Output {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn shm_create_write_read_info_rm_round_trip_through_separate_processes() {
    let t = TestNs::new().remove_shm_on_drop(&["frame"]);
    let o = t.run(&["shm", "create", "frame", "--size", "64", "--json"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (&v["name"], &v["kind"], &v["size"]),
        (&"frame".into(), &"mapping".into(), &64.into()),
        "{v}"
    );
    assert!(v["os_name"].as_str().unwrap().ends_with(".frame"), "{v}");
    // Bytes from stdin at an offset; from a file at another.
    let o = run_with_stdin(&t, &["shm", "write", "frame", "--offset", "8"], b"hello");
    assert!(o.status.success(), "{o:#?}");
    let file = t.outside("in.bin");
    std::fs::write(&file, [1u8, 2, 3]).unwrap();
    t.run(&[
        "shm",
        "write",
        "frame",
        "--offset",
        "61",
        "--file",
        file.to_str().unwrap(),
    ])
    .assert_success();
    let o = t.run(&["shm", "read", "frame", "--offset", "8", "--len", "5"]);
    o.assert_success();
    assert_eq!(o.stdout, "hello");
    let out = t.outside("out.bin");
    t.run(&["shm", "read", "frame", "--out", out.to_str().unwrap()])
        .assert_success();
    let all = std::fs::read(&out).unwrap();
    assert_eq!(all.len(), 64);
    assert_eq!(&all[8..13], b"hello");
    assert_eq!(&all[61..], [1, 2, 3]);
    assert!(all[..8].iter().all(|b| *b == 0));
    // The library sees the same bytes.
    let m = ipckit::shm::MappingOptions::new()
        .namespace(&t.ns)
        .open("frame")
        .unwrap();
    let mut buf = [0u8; 5];
    m.read_at(8, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    drop(m);
    let o = t.run(&["shm", "info", "frame", "--json"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["state"], "unused", "{v}");
    // Out of bounds: one line naming the mapping's size; nothing written.
    let o = run_with_stdin(&t, &["shm", "write", "frame", "--offset", "62"], b"abc");
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("outside the mapping's 64 bytes"),
        "{o:#?}"
    );
    let o = t.run(&["shm", "read", "frame", "--offset", "60", "--len", "5"]);
    o.assert_one_line_failure();
    // `rm` removes the name, after which reading it is NotFound.
    t.run(&["shm", "rm", "frame"]).assert_success();
    let o = t.run(&["shm", "read", "frame"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("no mapping named 'frame'"), "{o:#?}");
    // --create-size makes it on first write.
    let o = run_with_stdin(&t, &["shm", "write", "frame", "--create-size", "16"], b"x");
    assert!(o.status.success(), "{o:#?}");
    let o = t.run(&["shm", "read", "frame", "--len", "1"]);
    assert_eq!(o.stdout, "x");
    t.run(&["shm", "rm", "frame"]).assert_success();
}
