//! JSON Schemas in `ipckit.describe` across real processes: a server
//! process registers methods with `handler_with_schema` (and, with the
//! `tokio` feature, `handler_async_with_schema`), plain `handler`,
//! `raw_handler` and `loan_handler`; this process reads its describe both
//! ways a client can — postcard (`Client::describe`: the schema as JSON
//! text) and JSON (`Client::call_json`: the schema embedded as a JSON
//! value) — and checks each schema's properties and types, and that only
//! the `_with_schema` methods publish one. One more test pins the postcard
//! layout of a method entry that `docs/PROTOCOL.md` documents.
#![cfg(feature = "schema")]

mod support;

use ipckit::service::{Client, Describe, MethodInfo, RemoteError, Server, DESCRIBE};
use ipckit::Namespace;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::{say, TestNs, DEADLINE};

/// `add`'s argument.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

/// `stats`' result: a struct with an optional field and a nested list.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Stats {
    count: u32,
    label: Option<String>,
    values: Vec<f64>,
}

/// The child side of every test, chosen by the role (see `support::role`).
#[test]
#[ignore = "child process of the other tests"]
fn child_role() {
    let Some((role, _args)) = support::role() else {
        return;
    };
    let ns = Namespace::from_env().unwrap();
    match role.as_str() {
        // Serve `svc` until stdin closes; say `READY`.
        "schema-server" => {
            let b = Server::builder("svc")
                .namespace(&ns)
                .handler_with_schema("add", |p: AddArgs| {
                    p.a.checked_add(p.b).ok_or(RemoteError::new(7, "overflow"))
                })
                .handler_with_schema("stats", |values: Vec<f64>| {
                    Ok::<_, RemoteError>(Stats {
                        count: values.len() as u32,
                        label: None,
                        values,
                    })
                })
                .handler("plain", |p: AddArgs| Ok::<_, RemoteError>(p.a - p.b))
                .raw_handler("echo", |_enc, body| Ok::<_, RemoteError>(body.to_vec()))
                .loan_handler("len", |req, reply| {
                    reply.write(&(req.len() as u64).to_le_bytes())
                });
            #[cfg(feature = "tokio")]
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            #[cfg(feature = "tokio")]
            let b = {
                let _in_rt = rt.enter();
                b.handler_async_with_schema("later", |ms: u16| async move {
                    Ok::<_, RemoteError>(vec![ms])
                })
                .handler_async(
                    "later_plain",
                    |ms: u16| async move { Ok::<_, RemoteError>(ms) },
                )
            };
            let server = b.bind().unwrap();
            say("READY");
            support::wait_for_parent();
            drop(server);
        }
        other => panic!("unknown role {other}"),
    }
}

/// The server process, started and ready, and a client of it.
fn serve(t: &TestNs) -> (support::Proc, Client) {
    let mut srv = t.talk("schema-server", &[]);
    srv.stdout_line("READY");
    let c = Client::options()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect("svc")
        .unwrap();
    (srv, c)
}

fn method<'a>(d: &'a Describe, name: &str) -> &'a MethodInfo {
    d.methods
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no method {name} in {d:?}"))
}

/// A schema's text, parsed.
fn parsed(text: &Option<String>) -> Value {
    let text = text.as_deref().expect("a schema");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Checks `add`'s request schema: an object of two required integers.
fn check_add_request(s: &Value) {
    assert_eq!(s["type"], "object", "{s}");
    assert_eq!(s["properties"]["a"]["type"], "integer", "{s}");
    assert_eq!(s["properties"]["b"]["type"], "integer", "{s}");
    assert_eq!(s["properties"]["a"]["format"], "int64", "{s}");
    let mut req: Vec<&str> = s["required"]
        .as_array()
        .unwrap_or_else(|| panic!("no required list: {s}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    req.sort_unstable();
    assert_eq!(req, ["a", "b"], "{s}");
    assert!(s["$schema"].as_str().unwrap().contains("2020-12"), "{s}");
}

#[test]
fn postcard_describe_carries_the_schemas_of_handler_with_schema_only() {
    let t = TestNs::new();
    let (_srv, c) = serve(&t);
    let d = c.describe().unwrap();
    let add = method(&d, "add");
    // The type names stay beside the schemas.
    assert!(add.request.ends_with("AddArgs"), "{add:?}");
    assert_eq!(add.response, "i64");
    check_add_request(&parsed(&add.request_schema));
    let r = parsed(&add.response_schema);
    assert_eq!(
        (&r["type"], &r["format"]),
        (&json!("integer"), &json!("int64")),
        "{r}"
    );

    let stats = method(&d, "stats");
    let s = parsed(&stats.request_schema);
    assert_eq!(s["type"], "array", "{s}");
    assert_eq!(s["items"]["type"], "number", "{s}");
    let s = parsed(&stats.response_schema);
    assert_eq!(s["title"], "Stats", "{s}");
    assert_eq!(s["properties"]["count"]["type"], "integer", "{s}");
    assert_eq!(s["properties"]["count"]["minimum"], 0, "{s}");
    // An Option is a field that may be null; a Vec an array of numbers.
    assert_eq!(
        s["properties"]["label"]["type"],
        json!(["string", "null"]),
        "{s}"
    );
    assert_eq!(s["properties"]["values"]["items"]["type"], "number", "{s}");

    // `handler`, raw and loan methods and the built-in one publish none.
    for name in ["plain", "echo", "len", DESCRIBE] {
        let m = method(&d, name);
        assert_eq!(
            (&m.request_schema, &m.response_schema),
            (&None, &None),
            "{m:?}"
        );
    }
    // The methods still answer as before.
    assert_eq!(c.call::<_, i64>("add", &AddArgs { a: 2, b: 3 }).unwrap(), 5);
    assert_eq!(
        c.call::<_, i64>("plain", &AddArgs { a: 2, b: 3 }).unwrap(),
        -1
    );
}

#[cfg(feature = "tokio")]
#[test]
fn async_handlers_publish_schemas_only_with_handler_async_with_schema() {
    let t = TestNs::new();
    let (_srv, c) = serve(&t);
    let d = c.describe().unwrap();
    let later = method(&d, "later");
    let s = parsed(&later.request_schema);
    assert_eq!(
        (&s["type"], &s["format"]),
        (&json!("integer"), &json!("uint16")),
        "{s}"
    );
    let s = parsed(&later.response_schema);
    assert_eq!(s["type"], "array", "{s}");
    assert_eq!(s["items"]["format"], "uint16", "{s}");
    assert_eq!(method(&d, "later_plain").request_schema, None);
    assert_eq!(c.call::<_, Vec<u16>>("later", &9u16).unwrap(), [9]);
}

#[test]
fn json_describe_embeds_each_schema_as_a_json_value() {
    let t = TestNs::new();
    let (_srv, c) = serve(&t);
    let d = c.call_json(DESCRIBE, json!({}), Some(DEADLINE)).unwrap();
    let methods = d["methods"].as_array().expect("methods");
    let get = |name: &str| {
        methods
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {d}"))
    };
    let add = get("add");
    // An object, not a string holding one.
    assert!(add["request_schema"].is_object(), "{add}");
    check_add_request(&add["request_schema"]);
    assert_eq!(add["response_schema"]["type"], "integer", "{add}");
    let plain = get("plain");
    assert!(plain["request_schema"].is_null(), "{plain}");
    assert!(plain["response_schema"].is_null(), "{plain}");
    // The JSON form reads back into the same `Describe` as postcard gives.
    let from_json: Describe = serde_json::from_value(d.clone()).unwrap();
    let from_postcard = c.describe().unwrap();
    assert_eq!(
        method(&from_json, "add")
            .request_schema
            .as_deref()
            .map(parsed_str),
        method(&from_postcard, "add")
            .request_schema
            .as_deref()
            .map(parsed_str)
    );
    assert_eq!(method(&from_json, "plain").request_schema, None);
    // A JSON caller that follows the schema gets its answer.
    assert_eq!(
        c.call_json("add", json!({"a": 40, "b": 2}), Some(DEADLINE))
            .unwrap(),
        42
    );
}

fn parsed_str(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The postcard layout `docs/PROTOCOL.md` gives for a describe's method
/// entry: the three strings, then each schema as an optional string
/// (`0` absent; `1`, a varint length and the UTF-8 JSON text).
#[test]
fn postcard_method_entry_appends_the_schemas_as_optional_strings() {
    let m = MethodInfo {
        name: "f".into(),
        request: "u8".into(),
        response: "()".into(),
        request_schema: Some("{}".into()),
        response_schema: None,
    };
    let bytes = postcard::to_stdvec(&m).unwrap();
    assert_eq!(
        bytes,
        [
            &[1, b'f', 2, b'u', b'8', 2, b'(', b')'][..],
            &[1, 2, b'{', b'}', 0]
        ]
        .concat()
    );
    let back: MethodInfo = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    // In JSON the schema is the value itself, and absence is `null`.
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["request_schema"], json!({}));
    assert!(v["response_schema"].is_null());
    assert_eq!(serde_json::from_value::<MethodInfo>(v).unwrap(), m);
    // A JSON entry without the fields (an older server) reads as `None`,
    // and one holding a schema as a string keeps that text.
    let old: MethodInfo =
        serde_json::from_value(json!({"name": "f", "request": "u8", "response": "()"})).unwrap();
    assert_eq!((old.request_schema, old.response_schema), (None, None));
    let text: MethodInfo = serde_json::from_value(
        json!({"name": "f", "request": "u8", "response": "()", "request_schema": "{\"type\":\"integer\"}"}),
    )
    .unwrap();
    assert_eq!(
        text.request_schema.as_deref(),
        Some("{\"type\":\"integer\"}")
    );
}
