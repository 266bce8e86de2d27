//! The README's shell examples, pasted top to bottom into a fresh shell on
//! a terminal (a pty, through `script` from util-linux), as a newcomer
//! would: every `sh` block that runs `ipckit` (blocks that run `cargo`
//! are install and build steps, not the quick start), in order, then
//! `wait` for what they left in the background.
//!
//! Checked: the session ends (bounded) having run to its last line;
//! every comment `# ... prints: TEXT` is borne out by the transcript;
//! exactly the commands the README says exit non-zero (`# exits 1`)
//! print an `ipckit:` error; and no server is left running or recorded.

use std::path::Path;

use crate::common::{TestNs, DEADLINE};

/// The README's quick-start lines: the `sh` blocks that run `ipckit`.
fn quick_start(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<Vec<String>> = None;
    for line in readme.lines() {
        match &mut block {
            None if line.trim_start().starts_with("```sh") => block = Some(Vec::new()),
            None => {}
            Some(b) if line.trim_start().starts_with("```") => {
                let runs_ipckit = b.iter().any(|l| l.trim_start().starts_with("ipckit "));
                let builds = b.iter().any(|l| l.trim_start().starts_with("cargo "));
                if runs_ipckit && !builds {
                    out.append(b);
                }
                block = None;
            }
            Some(b) => b.push(line.to_string()),
        }
    }
    assert!(block.is_none(), "the README has an unclosed ```sh block");
    out
}

/// The comment of a shell line (after an unquoted `#`), if any.
fn comment(line: &str) -> Option<&str> {
    let (mut single, mut double) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (i == 0 || line[..i].ends_with(' ')) => {
                return Some(line[i + 1..].trim())
            }
            _ => {}
        }
    }
    None
}

#[test]
fn the_readme_quick_start_runs_pasted_into_a_terminal() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let lines = quick_start(&readme);
    assert!(lines.len() > 10, "no quick start found in the README");
    let t = TestNs::new().remove_shm_on_drop(&["clip/clipboard", "settings"]);
    let script = t.outside("quick-start.sh");
    // The README pauses a second where a watcher must start before the
    // change it should see; on a test machine running other tests at once
    // that can be too short, so each pause is made 3 s here.
    let lines: Vec<String> = lines
        .into_iter()
        .map(|l| match l.strip_prefix("sleep 1 ") {
            Some(rest) => format!("sleep 3 {rest}"),
            None => l,
        })
        .collect();
    let mut text = lines.join("\n");
    text.push_str("\nwait\necho QUICK-START-DONE\n");
    std::fs::write(&script, text).unwrap();

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ipckit")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("sh {}", script.display()), "/dev/null"])
        .current_dir(t.outside(""))
        .env("PATH", path)
        .env(ipckit::name::NAMESPACE_ENV, t.path())
        .env_remove(ipckit::transport::TRANSPORT_ENV);
    let o = crate::common::Proc::spawn(&mut cmd).finish(DEADLINE);
    let transcript = o.stdout.replace('\r', "");
    assert!(o.status.success(), "{o:#?}");
    assert!(
        transcript.contains("QUICK-START-DONE"),
        "the session did not reach its end: {transcript}"
    );

    let comments: Vec<&str> = lines.iter().filter_map(|l| comment(l)).collect();
    for c in &comments {
        if let Some((_, want)) = c.split_once("prints: ") {
            assert!(
                transcript.contains(want.trim()),
                "the README says {c:?}, but the session printed:\n{transcript}"
            );
        }
    }
    let expected_failures = comments.iter().filter(|c| c.contains("exits 1")).count();
    let failures: Vec<&str> = transcript
        .lines()
        .filter(|l| l.starts_with("ipckit: "))
        .collect();
    assert_eq!(
        failures.len(),
        expected_failures,
        "errors in the session: {failures:#?}\n{transcript}"
    );
    // Everything it started has stopped and removed its record.
    let left = t.ns.list().unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn comments_are_found_outside_quotes_only() {
    assert_eq!(
        comment("ipckit x 'a # b'  # prints: a # b"),
        Some("prints: a # b")
    );
    assert_eq!(comment("ipckit clip register \"HTML #\""), None);
    assert_eq!(comment("a#b"), None);
}
