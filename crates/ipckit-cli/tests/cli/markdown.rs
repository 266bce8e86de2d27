//! `scripts/check-markdown.sh`: it fails on an unclosed code fence and on
//! a relative link that does not resolve, and the project's own markdown
//! passes it.

use std::path::{Path, PathBuf};

use crate::common::{Proc, TestNs, DEADLINE};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-markdown.sh")
}

fn check(files: &[&Path]) -> crate::common::Output {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(script()).args(files);
    Proc::spawn(&mut cmd).finish(DEADLINE)
}

#[test]
fn check_markdown_catches_unclosed_fences_and_dead_relative_links() {
    let t = TestNs::new();
    let dir = t.outside("md");
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/there.md"), "# there\n").unwrap();
    let good = dir.join("good.md");
    std::fs::write(
        &good,
        "# ok\n\n[there](docs/there.md#part) [web](https://example.com) [here](#ok)\n\n````md\n```sh\nnot closed inside a longer fence\n````\n\n`[code](nowhere.md)`\n",
    )
    .unwrap();
    let o = check(&[&good]);
    assert!(o.status.success(), "{o:#?}");

    let fence = dir.join("fence.md");
    std::fs::write(&fence, "# x\n\n```sh\nipckit ls\n\n## never closed\n").unwrap();
    let o = check(&[&fence]);
    assert!(!o.status.success(), "{o:#?}");
    assert!(o.stderr.contains("fence.md:3: code fence"), "{o:#?}");

    let link = dir.join("link.md");
    std::fs::write(
        &link,
        "see [the contract](../SEMANTICS.md) and\n\n[ref]: docs/gone.md\n",
    )
    .unwrap();
    let o = check(&[&link]);
    assert!(!o.status.success(), "{o:#?}");
    assert!(
        o.stderr.contains("link.md:1: link to ../SEMANTICS.md"),
        "{o:#?}"
    );
    assert!(
        o.stderr.contains("link.md:3: link to docs/gone.md"),
        "{o:#?}"
    );
}

#[test]
fn the_projects_markdown_passes_the_check() {
    let o = check(&[]);
    assert!(o.status.success(), "{o:#?}");
}
