//! `ipckit bench` runs its cases against real peer processes and reports
//! them in the documented JSON shape (timings are not asserted).

use std::process::Command;

#[test]
fn bench_json_reports_each_selected_case() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipckit"))
        .args(["bench", "--quick", "--json", "--filter", "unix"])
        .output()
        .expect("run ipckit bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let results = v["results"].as_array().expect("results array");
    let cases: Vec<&str> = results
        .iter()
        .map(|r| r["case"].as_str().unwrap())
        .collect();
    assert_eq!(cases, ["floor/unix-stream", "pipe/unix"]);
    for r in results {
        assert_eq!(r["payload"], 64);
        assert!(r["samples"].as_u64().unwrap() >= 1000, "{r}");
        let (p50, p99) = (r["p50_ns"].as_u64().unwrap(), r["p99_ns"].as_u64().unwrap());
        assert!(p50 > 0 && p50 <= p99, "{r}");
    }
}

#[test]
fn bench_rejects_nothing_selected_gracefully() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipckit"))
        .args(["bench", "--quick", "--json", "--filter", "no-such-case"])
        .output()
        .expect("run ipckit bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-case"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
