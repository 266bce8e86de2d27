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
            "floor/memcpy-1MiB",
            "floor/handoff-1MiB"
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

/// `bench --sweep` in a tiny configuration (payloads up to 1 KiB, 1 and 2
/// clients), the series selected by `filter`; the JSON and, with a path,
/// the plot it wrote.
fn sweep(filter: &str, plot: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipckit"));
    cmd.args(["bench", "--sweep", "--quick", "--json", "--filter", filter])
        .env("IPCKIT_PEER", peer())
        .env("IPCKIT_BENCH_SWEEP_MAX", "1024")
        .env("IPCKIT_BENCH_SWEEP_CLIENTS", "1,2");
    if let Some(p) = plot {
        cmd.arg("--plot").arg(p);
    }
    Proc::spawn(&mut cmd).finish(LIMIT)
}

fn sweep_json(out: &Output) -> serde_json::Value {
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    v["sweep"].clone()
}

#[test]
fn sweep_measures_each_series_at_each_payload_and_throughput_per_client_count() {
    let sw = sweep_json(&sweep("unix", None));
    assert!(
        sw["machine"].as_str().unwrap().contains("cores"),
        "{}",
        sw["machine"]
    );
    let lat = sw["latency"].as_array().unwrap();
    let got: Vec<(String, u64)> = lat
        .iter()
        .map(|r| {
            (
                r["case"].as_str().unwrap().to_string(),
                r["payload"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for case in ["floor/unix-stream", "pipe/unix", "service/unix"] {
        for p in [64u64, 256, 1024] {
            want.push((case.to_string(), p));
        }
    }
    assert_eq!(got, want);
    for r in lat {
        let (p50, p99) = (r["p50_ns"].as_u64().unwrap(), r["p99_ns"].as_u64().unwrap());
        assert!(p50 > 0 && p50 <= p99, "{r}");
        assert!(r["samples"].as_u64().unwrap() >= 10, "{r}");
    }
    // Each transport row is compared with the floor at its own payload.
    for r in lat.iter().filter(|r| r["case"] != "floor/unix-stream") {
        assert_eq!(r["floor"], "floor/unix-stream", "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    let tp = sw["throughput"].as_array().unwrap();
    let got: Vec<(String, String, u64)> = tp
        .iter()
        .map(|t| {
            (
                t["case"].as_str().unwrap().to_string(),
                t["mode"].as_str().unwrap().to_string(),
                t["clients"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64)> = [1u64, 2]
        .iter()
        .flat_map(|c| {
            [
                ("service/unix".to_string(), "threads".to_string(), *c),
                ("service/unix".into(), "processes".into(), *c),
            ]
        })
        .collect();
    assert_eq!(got, want);
    for t in tp {
        assert!(t["msgs_per_s"].as_f64().unwrap() > 0.0, "{t}");
        assert!(
            t["calls"].as_u64().unwrap() >= 200 * t["clients"].as_u64().unwrap(),
            "{t}"
        );
    }
}

/// Tags of an XML document, each opening matched by its closing in order
/// (self-closing ones count as both); panics at the first mismatch.
fn assert_well_formed(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("every tag is closed") + i;
        let tag = &rest[i + 1..j];
        assert!(!tag.contains('<'), "a tag inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap();
            stack.push(name.to_string());
        }
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(
        !xml.replace("&amp;", "")
            .replace("&lt;", "")
            .replace("&gt;", "")
            .replace("&quot;", "")
            .contains('&'),
        "an unescaped &"
    );
}

#[test]
fn plot_draws_a_well_formed_svg_with_a_line_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("sweep.svg");
    let sw = sweep_json(&sweep("memcpy", Some(&svg_path)));
    let svg = std::fs::read_to_string(&svg_path).expect("the plot was written");
    assert!(svg.starts_with("<svg "), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_well_formed(&svg);
    // The title names the machine as the JSON does.
    let machine = sw["machine"].as_str().unwrap();
    assert!(svg.contains(machine), "title lacks {machine}");
    let series: Vec<&str> = svg
        .split("data-series=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(series, ["floor/memcpy"], "one line per series");
    // Its points: one per payload.
    let line = svg
        .lines()
        .find(|l| l.contains("data-series=\"floor/memcpy\""))
        .unwrap();
    let points = line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split_whitespace().count(), 3, "{line}");

    // With the throughput series too: both panels get their lines.
    let svg_path = dir.path().join("shm.svg");
    sweep_json(&sweep("service/shm", Some(&svg_path)));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert_well_formed(&svg);
    let series: Vec<&str> = svg
        .split("data-series=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(
        series,
        [
            "service/shm",
            "service/shm-loan",
            "service/shm threads",
            "service/shm processes"
        ]
    );
}

#[test]
fn sweep_rejects_an_unknown_series_in_one_line() {
    let out = sweep("no-such-series", None);
    out.assert_one_line_failure();
    assert!(
        out.stderr.contains("floor/handoff"),
        "lists the series: {out:#?}"
    );
}
