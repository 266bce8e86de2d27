//! `ipckit map set|get|watch|rm`.

use crate::common::{wait_until, TestNs, DEADLINE};
use ipckit::map::SharedMapOptions;

#[test]
fn set_over_max_size_fails_with_one_line_and_leaves_the_content() {
    let t = TestNs::new().remove_shm_on_drop(&["small"]);
    t.run(&["map", "set", "small", "abc", "--max-size", "4"])
        .assert_success();
    let out = t.run(&["map", "set", "small", "abcdef"]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("exceeds max_size 4"), "{out:#?}");
    let out = t.run(&["map", "get", "small", "--json"]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["content"], "abc");
    assert_eq!(v["version"], 1);
    assert_eq!(v["size"], 3);
    assert_eq!(v["max_size"], 4);
    let out = t.run(&["map", "get", "small"]);
    assert_eq!(out.stdout, "abc\n");
    // rm removes it: get fails after.
    t.run(&["map", "rm", "small"]).assert_success();
    t.run(&["map", "get", "small"]).assert_one_line_failure();
}

#[test]
fn watch_prints_each_new_content_of_a_map_another_process_writes() {
    let t = TestNs::new().remove_shm_on_drop(&["board"]);
    let mut m = SharedMapOptions::new()
        .namespace(&t.ns)
        .create("board")
        .unwrap();
    m.write_text("before").unwrap();
    let watcher = t.start(&["map", "watch", "board", "--json", "--timeout", "30s"]);
    // The watcher prints changes after it opened the map: write until it
    // prints one (bounded), then one change at a time.
    let mut n = 0;
    wait_until(DEADLINE, "the watcher printed a change", || {
        n += 1;
        m.write_text(&format!("ready {n}")).unwrap();
        watcher.stdout_so_far().contains("ready")
    });
    let v = m.write_text("line one\nline two").unwrap();
    let want = format!(r#""version":{v}"#);
    wait_until(DEADLINE, "the watcher printed the last change", || {
        watcher.stdout_so_far().contains(&want)
    });
    let out = watcher.stdout_so_far();
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["content"], "line one\nline two", "{out}");
    assert_eq!(last["version"], v, "{out}");
    // Without --json, one line per content (newlines escaped), and
    // --count ends the watch.
    let mut plain = t.start(&["map", "watch", "board", "--count", "1", "--timeout", "30s"]);
    wait_until(DEADLINE, "the plain watcher printed a change", || {
        m.write_text("a\\b\nc").unwrap();
        !plain.stdout_so_far().is_empty()
    });
    plain.wait_success(DEADLINE);
    assert_eq!(plain.stdout_line(""), r"a\\b\nc");
    // --timeout without changes: a one-line failure saying so.
    let out = t.run(&[
        "map",
        "watch",
        "board",
        "--count",
        "1",
        "--timeout",
        "100ms",
    ]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("0 change(s)"), "{out:#?}");
}
