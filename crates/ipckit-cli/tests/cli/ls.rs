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

/// `ls --json`'s entry named `name` in its `key` list.
fn entry(v: &serde_json::Value, key: &str, name: &str) -> serde_json::Value {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} list: {v}"))
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {key} entry {name}: {v}"))
        .clone()
}

fn ls_json(t: &TestNs, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let o = t.run(&all);
    o.assert_success();
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {o:#?}"))
}

#[test]
fn ls_lists_shared_memory_and_sync_objects_with_size_owner_and_state() {
    let t = TestNs::new().remove_shm_on_drop(&["frame", "cfg", "jobs/lock", "ev", "sem", "held"]);
    for args in [
        &["shm", "create", "frame", "--size", "4096"][..],
        &["map", "set", "cfg", "hello"],
        &["mutex", "create", "jobs/lock"],
        &["event", "create", "ev"],
        &["sem", "create", "sem", "--initial", "1"],
    ] {
        t.run(args).assert_success();
    }
    // A mutex held by a live process: open, by that process.
    let mut holder = t.start(&["mutex", "lock", "held"]);
    assert_eq!(holder.stdout_line("locked"), "locked");
    let mut pipe = t.start(&["pipe", "serve", "p", "--echo"]);
    crate::common::wait_live(&t.ns, "p");

    let v = ls_json(&t, &[]);
    let me = std::fs::metadata(t.path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    for (name, kind) in [
        ("frame", "mapping"),
        ("cfg", "map"),
        ("jobs/lock", "mutex"),
        ("ev", "event"),
        ("sem", "semaphore"),
        ("held", "mutex"),
    ] {
        let o = entry(&v, "objects", name);
        assert_eq!(o["kind"], kind, "{v}");
        assert_eq!(o["owner_uid"], me, "{v}");
    }
    assert_eq!(entry(&v, "objects", "frame")["size"], 4096, "{v}");
    assert_eq!(entry(&v, "objects", "frame")["state"], "unused", "{v}");
    let held = entry(&v, "objects", "held");
    assert_eq!(held["state"], "open", "{v}");
    assert_eq!(held["open_by"], serde_json::json!([holder.pid()]), "{v}");
    let p = entry(&v, "endpoints", "p");
    assert_eq!((&p["kind"], &p["state"]), (&"pipe".into(), &"live".into()));
    assert_eq!(p["owner_uid"], me, "{v}");

    // The table: a header, columns as wide as their widest cell (so a long
    // kind does not shift the next column), one row each.
    let o = t.run(&["ls"]);
    o.assert_success();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{o:#?}");
    for w in ["PID", "OWNER", "SIZE", "STATE"] {
        assert!(lines[0].contains(w), "{o:#?}");
    }
    let state_col = lines[0].find("STATE").unwrap();
    for l in &lines[1..] {
        assert!(l.len() > state_col, "{o:#?}");
        assert_eq!(
            &l[state_col - 2..state_col],
            "  ",
            "misaligned row {l:?}: {o:#?}"
        );
    }
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {o:#?}"))
            .to_string()
    };
    assert!(
        row("held").ends_with(&format!("open by {}", holder.pid())),
        "{o:#?}"
    );
    assert!(
        row("frame").contains(" mapping ") && row("frame").ends_with("unused"),
        "{o:#?}"
    );
    assert!(row("p").ends_with("live"), "{o:#?}");
    pipe.kill();
    drop(holder);
}

#[test]
fn ls_prune_removes_stale_records_and_unused_shared_memory_but_nothing_live_or_open() {
    let t = TestNs::new().remove_shm_on_drop(&["frame", "kept", "held"]);
    t.run(&["shm", "create", "frame", "--size", "64"])
        .assert_success();
    t.run(&["mutex", "create", "kept"]).assert_success();
    let mut holder = t.start(&["mutex", "lock", "held"]);
    assert_eq!(holder.stdout_line("locked"), "locked");
    // This process has "kept" open.
    let kept = ipckit::sync::MutexOptions::new()
        .namespace(&t.ns)
        .open("kept")
        .unwrap();
    let mut dead = t.start(&["pipe", "serve", "dead", "--echo"]);
    let _live = t.start(&["pipe", "serve", "live", "--echo"]);
    crate::common::wait_live(&t.ns, "dead");
    crate::common::wait_live(&t.ns, "live");
    dead.kill();
    crate::common::wait_until(DEADLINE, "'dead' is stale", || {
        t.ns.info("dead").unwrap().unwrap().state == ipckit::name::EndpointState::Stale
    });

    let v = ls_json(&t, &["--prune"]);
    let mut removed: Vec<(String, String)> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    removed.sort();
    assert_eq!(removed, [("dead".into(), "pipe".into())], "{v}");
    // An unused mapping keeps its content: named as kept, not removed.
    assert_eq!(v["kept_unused"], serde_json::json!(["frame"]), "{v}");
    entry(&ls_json(&t, &[]), "objects", "frame");
    let v = ls_json(&t, &["--prune", "--unused"]);
    let removed: Vec<&str> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["frame"], "{v}");
    assert!(t.ns.info("dead").unwrap().is_none());
    assert!(!t.ns.socket_path("dead").exists());
    // What is alive or open stays.
    let v = ls_json(&t, &[]);
    entry(&v, "endpoints", "live");
    entry(&v, "objects", "kept");
    entry(&v, "objects", "held");
    assert!(
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["name"] != "frame"),
        "{v}"
    );
    // Nothing left to prune: says so.
    let o = t.run(&["ls", "--prune"]);
    o.assert_success();
    assert!(o.stdout.starts_with("nothing stale"), "{o:#?}");
    // Once nobody has them open, they go too (the table form names them).
    drop(kept);
    drop(holder);
    let o = t.run(&["ls", "--prune"]);
    o.assert_success();
    assert!(o.stdout.contains("--prune --unused"), "{o:#?}");
    let o = t.run(&["ls", "--prune", "--unused"]);
    o.assert_success();
    assert!(o.stdout.contains("removed kept unused mutex"), "{o:#?}");
    assert!(o.stdout.contains("removed held unused mutex"), "{o:#?}");
}

#[test]
fn a_send_to_a_server_that_was_killed_says_at_once_that_it_is_gone() {
    let t = TestNs::new();
    let servers: [(&[&str], &str); 5] = [
        (&["pipe", "serve", "p", "--echo"], "p"),
        (&["service", "demo", "s"], "s"),
        (&["msg", "listen", "w"], "w"),
        (&["slot", "read", "m"], "m"),
        (&["dde", "serve", "d", "--topic", "t"], "d"),
    ];
    for (args, name) in servers {
        let mut p = t.start(args);
        crate::common::wait_live(&t.ns, name);
        p.kill();
    }
    // Each sender would wait the whole minute for a server to appear; a
    // stale record makes it fail at once, saying why (a hang here fails
    // the test at DEADLINE, which is shorter than the timeout).
    for args in [
        &["pipe", "send", "p", "x"][..],
        &["call", "s", "echo", "1"],
        &["msg", "send", "w", "1", "x"],
        &["msg", "post", "w", "1", "x"],
        &["slot", "send", "m", "x"],
        &["dde", "request", "d", "t", "i"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--timeout", "60s"]);
        let o = t.run(&all);
        o.assert_one_line_failure();
        assert!(
            o.stderr.contains("is gone") && o.stderr.contains("ls --prune"),
            "{args:?}: {o:#?}"
        );
    }
}

#[test]
fn shared_memory_of_a_deleted_namespace_is_listed_and_pruned() {
    let t = TestNs::new();
    let gone = t.outside("gone");
    let ns = gone.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--namespace", ns];
        all.extend_from_slice(args);
        t.run(&all)
    };
    run(&["shm", "create", "frame", "--size", "16"]).assert_success();
    run(&["event", "create", "ev"]).assert_success();
    std::fs::remove_dir_all(&gone).unwrap();
    let o = run(&["ls"]);
    o.assert_success();
    assert!(
        o.stdout
            .contains("does not exist, but 2 shared-memory object(s)"),
        "{o:#?}"
    );
    assert!(
        o.stdout.contains("  frame mapping 16 bytes, unused"),
        "{o:#?}"
    );
    let o = run(&["ls", "--prune"]);
    o.assert_success();
    assert!(o.stdout.contains("removed frame unused mapping"), "{o:#?}");
    assert!(o.stdout.contains("removed ev unused event"), "{o:#?}");
    std::fs::remove_dir_all(&gone).unwrap();
    let o = run(&["ls"]);
    assert!(o.stdout.contains("does not exist yet"), "{o:#?}");
}

/// A reader that went away (`ipckit ls | head -0`) ends the command quietly
/// with the shell's SIGPIPE status, never a panic message.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let t = TestNs::new();
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    drop(reader); // closed before the command starts: its first write fails
    let out = t
        .ipckit(&["ls", "--json"])
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ipckit");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(out.wait_with_output());
    });
    let o = rx
        .recv_timeout(DEADLINE)
        .expect("ipckit ls did not end")
        .expect("wait for ipckit");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
    assert_eq!(o.status.code(), Some(141), "{:?}", o.status.signal());
}
