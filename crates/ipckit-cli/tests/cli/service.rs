//! `ipckit service demo` and `ipckit call`.

use crate::common::{Output, Proc, TestNs};

/// `ipckit service demo svc [extra]`, started and announced.
fn demo_server(t: &TestNs, extra: &[&str]) -> Proc {
    let mut args = vec!["service", "demo", "svc"];
    args.extend_from_slice(extra);
    let mut p = t.start(&args);
    assert_eq!(p.stdout_line("serving"), "serving service 'svc'");
    p
}

fn call(t: &TestNs, target: &str, method: &str, arg: &str, extra: &[&str]) -> Output {
    let mut args = vec!["call", target, method, arg];
    args.extend_from_slice(extra);
    t.run(&args)
}

#[test]
fn call_prints_the_json_results_of_the_demo_service() {
    let t = TestNs::new();
    let _srv = demo_server(&t, &[]);
    // The seed's scenario: compare returns the modified struct.
    let o = call(&t, "svc", "compare", r#"{"red":3333.0,"blue":20.01}"#, &[]);
    o.assert_success();
    assert_eq!(o.stdout.trim(), r#"{"red":2.0,"blue":1.0}"#);
    let o = call(&t, "svc", "add", r#"{"a":1,"b":2}"#, &[]);
    assert_eq!(o.stdout.trim(), "3");
    let o = call(&t, "svc", "echo", r#"{"x":[1,"two"]}"#, &[]);
    assert_eq!(o.stdout.trim(), r#"{"x":[1,"two"]}"#);
    let o = call(&t, "svc", "ipckit.describe", "{}", &[]);
    o.assert_success();
    let d: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let names: Vec<&str> = d["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in ["add", "compare", "echo", "ipckit.describe", "sleep"] {
        assert!(names.contains(&m), "{names:?}");
    }
    assert!(d["methods"].to_string().contains("MyInfo"), "{d}");
    // --json wraps the result with the round trip and the transport.
    let o = call(&t, "svc", "add", r#"{"a":1,"b":2}"#, &["--json"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["result"], 3, "{v}");
    assert_eq!(v["transport"], "shm", "{v}");
    let o = call(
        &t,
        "svc",
        "add",
        r#"{"a":1,"b":2}"#,
        &["--json", "--transport", "socket"],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["transport"], "socket", "{v}");
    let o = t.run(&["ls"]);
    assert!(o.stdout.contains("service"), "{o:#?}");
}

#[test]
fn failed_calls_exit_non_zero_with_one_line_naming_the_cause() {
    let t = TestNs::new();
    let _srv = demo_server(&t, &[]);
    // No reply within --timeout.
    let o = call(
        &t,
        "svc",
        "sleep",
        r#"{"ms":3000}"#,
        &["--timeout", "100ms"],
    );
    o.assert_one_line_failure();
    assert!(o.stderr.contains("no reply to 'sleep'"), "{o:#?}");
    // The handler's error, with its code.
    let o = call(&t, "svc", "add", r#"{"a":9223372036854775807,"b":1}"#, &[]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("code 1") && o.stderr.contains("overflows"),
        "{o:#?}"
    );
    // An unknown method is named.
    let o = call(&t, "svc", "multiply", "{}", &[]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("'multiply'"), "{o:#?}");
    // A request of the wrong type: the server names the type it wanted.
    let o = call(&t, "svc", "add", r#"{"a":"one"}"#, &[]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("AddArgs") && o.stderr.contains("-32602"),
        "{o:#?}"
    );
    // The argument is not JSON at all.
    let o = call(&t, "svc", "add", "{a:1", &[]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("not JSON"), "{o:#?}");
    // No such service.
    let o = call(&t, "nobody", "add", "{}", &["--timeout", "0s"]);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("nobody"), "{o:#?}");
}

#[test]
fn call_reaches_a_service_over_tcp() {
    let t = TestNs::new();
    let mut srv = demo_server(&t, &["--tcp", "127.0.0.1:0"]);
    let addr = srv.stdout_line("tcp://");
    let o = call(&t, &addr, "add", r#"{"a":1,"b":2}"#, &[]);
    o.assert_success();
    assert_eq!(o.stdout.trim(), "3");
    let o = call(&t, &addr, "compare", r#"{"red":3333.0,"blue":20.01}"#, &[]);
    assert_eq!(o.stdout.trim(), r#"{"red":2.0,"blue":1.0}"#);
}

#[test]
fn call_loan_file_calls_the_loan_methods_with_the_bytes_of_a_file() {
    let t = TestNs::new();
    let _srv = demo_server(&t, &[]);
    let input = crate::common::pattern(100_000, 7);
    let file = t.outside("in.bin");
    std::fs::write(&file, &input).unwrap();
    let f = file.to_str().unwrap();
    // reverse: the reply's bytes, to a file.
    let out = t.outside("out.bin");
    t.run(&[
        "call",
        "svc",
        "reverse",
        "--loan-file",
        f,
        "--out",
        out.to_str().unwrap(),
    ])
    .assert_success();
    let mut want = input.clone();
    want.reverse();
    assert!(std::fs::read(&out).unwrap() == want, "reverse differs");
    // sum: 8 bytes little-endian, here through --json (as hex).
    let o = t.run(&["call", "svc", "sum", "--loan-file", f, "--json"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let sum: u64 = input.iter().map(|b| u64::from(*b)).sum();
    let hex: String = sum
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["reply_hex"], hex, "{v}");
    assert_eq!(v["reply_len"], 8, "{v}");
    assert!(v["rtt_ns"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["transport"], "shm", "{v}");
    // Called with JSON instead: one line saying to use --loan-file.
    let o = call(&t, "svc", "sum", r#""abc""#, &[]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("loan method") && o.stderr.contains("--loan-file"),
        "{o:#?}"
    );
    // Over the socket too.
    let o = t.run(&[
        "call",
        "svc",
        "sum",
        "--loan-file",
        f,
        "--json",
        "--transport",
        "socket",
    ]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (&v["reply_hex"], &v["transport"]),
        (&hex.clone().into(), &"socket".into()),
        "{v}"
    );
}

#[test]
fn call_reaches_a_service_by_host_name_and_service_demo_stops_after_its_timeout() {
    let t = TestNs::new();
    let mut srv = demo_server(&t, &["--tcp", "127.0.0.1:0", "--timeout", "30s"]);
    let addr = srv.stdout_line("tcp://");
    let port = addr.rsplit(':').next().unwrap();
    let o = call(
        &t,
        &format!("tcp://localhost:{port}"),
        "add",
        r#"{"a":1,"b":2}"#,
        &[],
    );
    o.assert_success();
    assert_eq!(o.stdout.trim(), "3");
    // --timeout ends serving cleanly, record removed.
    let t2 = TestNs::new();
    let mut short = demo_server(&t2, &["--timeout", "200ms"]);
    short.wait_success(crate::common::DEADLINE);
    assert!(t2.ns.list().unwrap().is_empty());
    // --count: exits after answering that many calls; short of it by
    // --timeout is a failure.
    let mut counted = demo_server(&t2, &["--count", "2", "--timeout", "30s"]);
    for _ in 0..2 {
        let o = call(&t2, "svc", "add", r#"{"a":1,"b":2}"#, &[]);
        o.assert_success();
    }
    counted.wait_success(crate::common::DEADLINE);
    assert!(t2.ns.list().unwrap().is_empty());
    let o = t2.run(&[
        "service",
        "demo",
        "svc",
        "--count",
        "1",
        "--timeout",
        "100ms",
    ]);
    assert!(!o.status.success(), "{o:#?}");
    assert!(
        o.stderr.contains("0 of 1 calls answered within --timeout"),
        "{o:#?}"
    );
}

#[test]
fn call_schema_prints_the_json_schemas_a_method_published() {
    let t = TestNs::new();
    let _srv = demo_server(&t, &[]);
    // add: {a, b} integers in, an integer out.
    let o = t.run(&["call", "svc", "add", "--schema"]);
    o.assert_success();
    assert_eq!(o.stdout.lines().count(), 1, "{o:#?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["method"], "add", "{v}");
    let req = &v["request"];
    assert_eq!(req["type"], "object", "{v}");
    assert_eq!(req["properties"]["a"]["type"], "integer", "{v}");
    assert_eq!(req["properties"]["b"]["type"], "integer", "{v}");
    assert_eq!(req["required"], serde_json::json!(["a", "b"]), "{v}");
    assert_eq!(v["response"]["type"], "integer", "{v}");
    // sleep: a struct out, described field by field.
    let o = t.run(&["call", "svc", "sleep", "--schema"]);
    o.assert_success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["request"]["properties"]["ms"]["type"], "integer", "{v}");
    assert_eq!(v["response"]["title"], "Slept", "{v}");
    assert_eq!(
        v["response"]["properties"]["slept_ms"]["type"], "integer",
        "{v}"
    );
    // A JSON describe carries the same schemas, embedded as JSON values;
    // raw methods have none (null).
    let o = call(&t, "svc", "ipckit.describe", "{}", &[]);
    let d: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let m = |name: &str| {
        d["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {d}"))
            .clone()
    };
    assert_eq!(
        m("add")["request_schema"]["properties"]["a"]["type"],
        "integer",
        "{d}"
    );
    assert!(m("echo")["request_schema"].is_null(), "{d}");
    // The raw `echo` published none: one line naming handler_with_schema.
    let o = t.run(&["call", "svc", "echo", "--schema"]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("'echo' published no JSON Schema")
            && o.stderr.contains("raw method")
            && o.stderr.contains("handler_with_schema"),
        "{o:#?}"
    );
    // Nor does a loan method.
    let o = t.run(&["call", "svc", "sum", "--schema"]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("loan method") && o.stderr.contains("--loan-file"),
        "{o:#?}"
    );
    // An unknown method is named, with the ones there are.
    let o = t.run(&["call", "svc", "multiply", "--schema"]);
    o.assert_one_line_failure();
    assert!(
        o.stderr.contains("no method 'multiply'") && o.stderr.contains("add, compare"),
        "{o:#?}"
    );
    // --schema calls nothing, so it takes no argument.
    let o = t.run(&["call", "svc", "add", r#"{"a":1,"b":2}"#, "--schema"]);
    assert!(!o.status.success(), "{o:#?}");
    assert!(o.stderr.contains("--schema"), "{o:#?}");
    // --schema calls nothing but ipckit.describe: the server counted five
    // of them (add, sleep, echo, sum, multiply), the describe above and
    // this one, and no error.
    let o = call(&t, "svc", "ipckit.describe", "{}", &[]);
    let d: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!((&d["calls"], &d["errors"]), (&7.into(), &0.into()), "{d}");
}
