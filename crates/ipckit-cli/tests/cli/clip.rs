//! `ipckit clip set|get|formats|watch|register`.

use std::io::Write as _;
use std::process::Stdio;

use crate::common::{wait_until, TestNs, DEADLINE};
use ipckit::clipboard::{BoardOptions, Format};

#[test]
fn set_then_get_text_formats_and_registered_formats_from_separate_commands() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/clipboard", "clip/other"]);
    t.run(&["clip", "set", "héllo world"]).assert_success();
    let out = t.run(&["clip", "get"]);
    out.assert_success();
    assert_eq!(out.stdout, "héllo world\n");
    // The library sees the same board, with both text formats.
    let b = BoardOptions::new()
        .namespace(&t.ns)
        .open("clipboard")
        .unwrap();
    assert_eq!(b.formats().unwrap(), [Format::UNICODE_TEXT, Format::TEXT]);
    assert_eq!(b.get_text().unwrap(), "héllo world");
    let out = t.run(&["clip", "formats"]);
    out.assert_success();
    assert_eq!(out.stdout, "13 unicode-text\n1 text\n");
    // Register prints the id, the same each time.
    let out = t.run(&["clip", "register", "PNG"]);
    out.assert_success();
    assert_eq!(out.stdout, "49152\n");
    assert_eq!(t.run(&["clip", "register", "png"]).stdout, "49152\n");
    // A registered format on another board, bytes as they are.
    t.run(&[
        "clip",
        "set",
        "--board",
        "other",
        "--format",
        "PNG",
        "\u{1}bytes",
    ])
    .assert_success();
    let out = t.run(&["clip", "get", "--board", "other", "--format", "PNG"]);
    out.assert_success();
    assert_eq!(out.stdout, "\u{1}bytes");
    let out = t.run(&["clip", "formats", "--board", "other", "--json"]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["board"], "other");
    assert_eq!(v["sequence"], 1);
    assert_eq!(v["formats"][0]["id"], 49152);
    assert_eq!(v["formats"][0]["name"], "PNG");
    // A format the board lacks: a one-line failure naming the board.
    let out = t.run(&["clip", "get", "--board", "other", "--format", "dib"]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("other"), "{out:#?}");
    // An unknown format name is not registered by get.
    t.run(&["clip", "get", "--format", "never-registered"])
        .assert_one_line_failure();
}

#[test]
fn set_reads_stdin_for_dash() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/clipboard"]);
    let mut cmd = t.ipckit(&["clip", "set", "--format", "dib", "-"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&[0, 1, 2, 255]).unwrap();
    }
    let mut status = None;
    wait_until(DEADLINE, "`clip set -` finished", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
    let b = BoardOptions::new()
        .namespace(&t.ns)
        .open("clipboard")
        .unwrap();
    assert_eq!(b.get(Format::DIB).unwrap(), [0, 1, 2, 255]);
}

#[test]
fn watch_prints_one_line_per_change_with_sequence_and_formats() {
    let t = TestNs::new().remove_shm_on_drop(&["clip/clipboard"]);
    let b = BoardOptions::new()
        .namespace(&t.ns)
        .open("clipboard")
        .unwrap();
    let mut watcher = t.start(&["clip", "watch", "--timeout", "30s"]);
    // The watcher reports changes after it opened the board: set until it
    // prints one (bounded), then one more.
    wait_until(DEADLINE, "the watcher printed a change", || {
        b.set_text("ready").unwrap();
        !watcher.stdout_so_far().is_empty()
    });
    let seq = b.set(Format::DIB, vec![1, 2]).unwrap();
    let want = format!("{seq} dib\n");
    wait_until(DEADLINE, "the watcher printed the last change", || {
        watcher.stdout_so_far().ends_with(&want)
    });
    watcher.kill();
    let out = watcher.stdout_so_far();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 2, "{out}");
    for (i, l) in lines[..lines.len() - 1].iter().enumerate() {
        let (n, formats) = l.split_once(' ').unwrap();
        assert!(n.parse::<u64>().unwrap() < seq, "{out}");
        assert_eq!(formats, "unicode-text,text", "line {i}: {out}");
    }
    // --count ends the watch.
    let mut one = t.start(&["clip", "watch", "--count", "1", "--timeout", "30s"]);
    wait_until(DEADLINE, "the counted watcher printed a change", || {
        b.begin().close().unwrap(); // not emptied: no change
        let mut tr = b.begin();
        tr.empty();
        tr.close().unwrap();
        !one.stdout_so_far().is_empty()
    });
    one.wait_success(DEADLINE);
    assert!(
        one.stdout_so_far().trim_end().ends_with(" -"),
        "{}",
        one.stdout_so_far()
    );
    // --timeout without changes: a one-line failure saying so.
    let out = t.run(&["clip", "watch", "--count", "1", "--timeout", "100ms"]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("0 change(s)"), "{out:#?}");
}
