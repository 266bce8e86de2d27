//! `ipckit ls`: what it shows, and that it creates nothing.

use crate::common::{TestNs, DEADLINE};

#[test]
fn ls_creates_no_namespace_and_a_namespace_that_is_a_file_is_named_as_such() {
    let t = TestNs::new();
    let missing = t.outside("not-yet");
    let o = t
        .start(&["--namespace", missing.to_str().unwrap(), "ls"])
        .finish(DEADLINE);
    o.assert_success();
    assert!(o.stdout.contains("does not exist yet"), "{o:#?}");
    assert!(!missing.exists());
    let file = t.outside("a-file");
    std::fs::write(&file, b"").unwrap();
    let o = t
        .start(&["--namespace", file.to_str().unwrap(), "ls"])
        .finish(DEADLINE);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("is a file, not a directory"), "{o:#?}");
}
