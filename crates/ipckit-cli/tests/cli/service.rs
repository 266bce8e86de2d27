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
