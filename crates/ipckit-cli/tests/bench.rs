//! `ipckit bench` runs its cases against real peer processes (`ipckit-peer`
//! for the floors and streams) and reports them in the documented JSON
//! shape (timings are not asserted).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Output, Proc};

/// How long one filtered `bench --quick` may take on a loaded machine.
const LIMIT: Duration = Duration::from_secs(300);

/// The `ipckit-peer` program. `cargo test --workspace` builds it beside
/// `ipckit`; when only this package was built (`cargo test -p ipckit-cli`)
/// it is built here, once.
fn peer() -> &'static Path {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| {
        let beside = Path::new(env!("CARGO_BIN_EXE_ipckit")).with_file_name("ipckit-peer");
        if beside.is_file() {
            return beside;
        }
        let out = Command::new(env!("CARGO"))
            .args(["build", "-p", "ipckit-peers", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build -p ipckit-peers");
        assert!(out.status.success(), "cargo build -p ipckit-peers failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"]["name"] == "ipckit-peer")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the ipckit-peer executable")
    })
}

fn bench(filter: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipckit"));
    cmd.args(["bench", "--quick", "--json", "--filter", filter])
        .env("IPCKIT_PEER", peer());
    Proc::spawn(&mut cmd).finish(LIMIT)
}

/// The rows of a successful `bench --json` run, each checked for the
/// documented keys and sane values.
fn rows(out: &Output) -> Vec<serde_json::Value> {
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    let results = v["results"].as_array().expect("results array").clone();
    for r in &results {
        for key in [
            "case",
            "payload",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "msgs_per_s",
            "samples",
        ] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert!(r["payload"].as_u64().unwrap() > 0, "{r}");
        assert!(r["samples"].as_u64().unwrap() >= 100, "{r}");
        let (p50, p99, p999) = (
            r["p50_ns"].as_u64().unwrap(),
            r["p99_ns"].as_u64().unwrap(),
            r["p999_ns"].as_u64().unwrap(),
        );
        assert!(p50 > 0 && p50 <= p99 && p99 <= p999, "{r}");
    }
    results
}

fn case_names(rows: &[serde_json::Value]) -> Vec<(String, u64)> {
    rows.iter()
        .map(|r| {
            (
                r["case"].as_str().unwrap().to_string(),
                r["payload"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn bench_floors_are_all_measured() {
    let rows = rows(&bench("floor/"));
    let names: Vec<String> = case_names(&rows).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        names,
        [
            "floor/shm-spin",
            "floor/futex",
            "floor/pipe",
            "floor/unix-stream",
            "floor/tcp",
            "floor/memcpy-1MiB"
        ]
    );
    for r in &rows {
        assert!(r["floor"].is_null() && r["ratio"].is_null(), "{r}");
        assert!(r["msgs_per_s"].is_null(), "{r}");
    }
}

#[test]
fn bench_local_cases_report_ratios_to_their_floors() {
    let rows = rows(&bench("/unix"));
    assert_eq!(
        case_names(&rows),
        [
            ("floor/unix-stream".to_string(), 64),
            ("pipe/unix".into(), 64),
            ("pipe/unix-async".into(), 64),
            ("service/unix".into(), 64),
            ("service/unix-async".into(), 64),
            ("service/unix".into(), 64 << 10),
            ("service/unix".into(), 1 << 20),
            ("stream/unix".into(), 64),
        ]
    );
    for r in [&rows[1], &rows[3]] {
        assert_eq!(r["floor"], "floor/unix-stream", "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The async rows are compared with the sync row of the same run.
    for (r, sync) in [(&rows[2], "pipe/unix"), (&rows[4], "service/unix")] {
        assert_eq!(r["floor"], sync, "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    // memcpy did not run: the big rows name it but have no ratio.
    for r in &rows[5..7] {
        assert_eq!(r["floor"], "floor/memcpy-1MiB", "{r}");
        assert!(r["ratio"].is_null(), "{r}");
    }
    let stream = &rows[7];
    assert!(stream["msgs_per_s"].as_f64().unwrap() > 0.0, "{stream}");
    assert!(stream["samples"].as_u64().unwrap() >= 10_000, "{stream}");
}

#[test]
fn bench_tcp_service_compares_with_the_tcp_floor() {
    let rows = rows(&bench("tcp"));
    let names: Vec<String> = case_names(&rows).into_iter().map(|(c, _)| c).collect();
    assert_eq!(names, ["floor/tcp", "service/tcp"]);
    assert_eq!(rows[1]["floor"], "floor/tcp");
    assert!(rows[1]["ratio"].as_f64().unwrap() > 0.0, "{}", rows[1]);
}

#[test]
fn bench_rejects_nothing_selected_gracefully() {
    let out = bench("no-such-case");
    assert!(!out.status.success());
    let err = &out.stderr;
    assert!(err.contains("no-such-case"), "{err}");
    assert!(err.contains("floor/shm-spin"), "lists the cases: {err}");
    assert_eq!(
        err.split([' ', ',', '\n'])
            .filter(|w| *w == "service/unix")
            .count(),
        1,
        "each name once: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bench_without_the_peer_program_fails_with_one_line_saying_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ipckit-peer");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipckit"));
    cmd.args(["bench", "--quick", "--filter", "floor/pipe"])
        .env("IPCKIT_PEER", &missing);
    let out = Proc::spawn(&mut cmd).finish(LIMIT);
    out.assert_one_line_failure();
    assert!(
        out.stderr.contains("cargo build --release -p ipckit-peers"),
        "{out:#?}"
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
    // Cases that need no peer still run.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipckit"));
    cmd.args(["bench", "--quick", "--json", "--filter", "memcpy"])
        .env("IPCKIT_PEER", &missing);
    let rows = rows(&Proc::spawn(&mut cmd).finish(LIMIT));
    assert_eq!(rows.len(), 1);
}
