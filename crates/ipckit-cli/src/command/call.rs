//! `ipckit call NAME METHOD JSON`: one call, JSON in, JSON out; or, with
//! `--loan-file`, a loan method: bytes in, bytes out; or, with `--schema`,
//! no call: the JSON Schemas of METHOD's argument and result.

use std::io::Write as _;
use std::time::{Duration, Instant};

use ipckit::service::{Client, Describe, DESCRIBE};
use ipckit::{Error, ErrorKind};

use crate::cli::CallArgs;

pub fn run(args: CallArgs) -> Result<(), Error> {
    let arg: serde_json::Value = serde_json::from_str(&args.arg).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the argument is not JSON ({e}); quote it for the shell, e.g. '{{\"a\":1,\"b\":2}}'"
            ),
        )
        .with_name(&args.name)
    })?;
    if let Some(remote) = crate::util::remote_name(&args.name) {
        return call_remote(remote, &args, arg);
    }
    let loan = match &args.loan_file {
        Some(f) => Some(super::shm::read_input(Some(f))?),
        None => None,
    };
    crate::util::fail_if_stale(&args.name, "service")?;
    // `--timeout` bounds the whole command: connecting, then the reply.
    let deadline = Instant::now() + args.timeout;
    let client = Client::options()
        .allow_server_uids(crate::util::allowed_uids())
        .timeout(args.timeout)
        .transport(args.transport.get())
        .connect(&args.name)?;
    let left = deadline.saturating_duration_since(Instant::now());
    let transport = super::pipe::transport_name(client.transport());
    if args.schema {
        return print_local_schema(&client, &args.method, left);
    }
    if let Some(bytes) = loan {
        let t = Instant::now();
        let mut l = client.loan(bytes.len())?;
        l.copy_from_slice(&bytes);
        let reply = crate::util::bounded(&args.name, left, {
            let method = args.method.clone();
            move || client.call_loan(&method, l).map(|r| r.to_vec())
        })?;
        let rtt = t.elapsed();
        if args.json {
            let hex: String = reply.iter().map(|b| format!("{b:02x}")).collect();
            println!(
                "{}",
                serde_json::json!({
                    "reply_hex": hex,
                    "reply_len": reply.len(),
                    "rtt_ns": crate::util::nanos(rtt),
                    "transport": transport,
                })
            );
        }
        if let Some(path) = &args.out {
            std::fs::write(path, &reply).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot write {}: {e}", path.display()),
                )
            })?;
        } else if !args.json {
            let mut o = std::io::stdout().lock();
            o.write_all(&reply)
                .and_then(|()| o.flush())
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write stdout: {e}")))?;
        }
        return Ok(());
    }
    let t = Instant::now();
    let result = client
        .call_json(&args.method, arg, Some(left))
        .map_err(|e| loan_hint(&client, &args.method, e))?;
    let rtt = t.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "result": result,
                "rtt_ns": crate::util::nanos(rtt),
                "transport": transport,
            })
        );
    } else {
        println!("{result}");
    }
    Ok(())
}

/// `ipckit call zenoh://NAME ...`: the service found by name on the
/// fabric (JSON in, JSON out; `--schema` as for a local one).
#[cfg(feature = "zenoh")]
fn call_remote(name: &str, args: &CallArgs, arg: serde_json::Value) -> Result<(), Error> {
    if args.loan_file.is_some() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "--loan-file lends shared memory, which only a local service has; call a local name, or send the bytes as a JSON argument",
        )
        .with_name(&args.name));
    }
    let deadline = Instant::now() + args.timeout;
    let client = crate::util::fabric()?.connect_service(name, args.timeout)?;
    let left = deadline.saturating_duration_since(Instant::now());
    if args.schema {
        let raw = client.call_json(DESCRIBE, serde_json::json!(null), Some(left))?;
        return print_schema(raw, &args.method, &args.name);
    }
    let t = Instant::now();
    let result = client.call_json(&args.method, arg, Some(left))?;
    let rtt = t.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "result": result,
                "rtt_ns": crate::util::nanos(rtt),
                "transport": "zenoh",
            })
        );
    } else {
        println!("{result}");
    }
    Ok(())
}

/// `ipckit call zenoh://NAME` without the fabric built in.
#[cfg(not(feature = "zenoh"))]
fn call_remote(_name: &str, args: &CallArgs, _arg: serde_json::Value) -> Result<(), Error> {
    Err(crate::util::no_fabric(&format!("calling {}", args.name)))
}

/// `--schema`: the JSON Schemas `method` published (read from a JSON
/// `ipckit.describe`, which embeds them as JSON values; a schema sent as
/// text is parsed), printed as one line
/// `{"method": ..., "request": <schema>, "response": <schema>}`.
fn print_local_schema(client: &Client, method: &str, left: Duration) -> Result<(), Error> {
    let raw = client.call_json(DESCRIBE, serde_json::json!({}), Some(left))?;
    print_schema(raw, method, client.name())
}

/// [`print_local_schema`] from the describe's JSON `raw` of service `name`.
fn print_schema(raw: serde_json::Value, method: &str, name: &str) -> Result<(), Error> {
    let d: Describe = serde_json::from_value(raw).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("its {DESCRIBE} answer does not read as a describe: {e}"),
        )
        .with_name(name)
    })?;
    let Some(m) = d.methods.iter().find(|m| m.name == method) else {
        let names: Vec<&str> = d.methods.iter().map(|m| m.name.as_str()).collect();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no method '{method}'; it has: {}", names.join(", ")),
        )
        .with_name(name));
    };
    let (Some(req), Some(resp)) = (&m.request_schema, &m.response_schema) else {
        let why = match m.request.as_str() {
            "bytes" => {
                "it is a raw method (raw_handler: its bodies are whatever bytes its handler reads)"
                    .to_string()
            }
            "loan bytes" => {
                "it is a loan method (loan_handler: bytes in, bytes out; call it with --loan-file)"
                    .to_string()
            }
            t => format!("its server registered it (request type {t}) without one"),
        };
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "'{method}' published no JSON Schema: {why}; only methods registered with handler_with_schema publish one"
            ),
        )
        .with_name(name));
    };
    let parse = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("the schema of '{method}' is not JSON: {e}"),
            )
            .with_name(name)
        })
    };
    println!(
        "{}",
        serde_json::json!({
            "method": method,
            "request": parse(req)?,
            "response": parse(resp)?,
        })
    );
    Ok(())
}

/// A JSON call to a loan method fails to decode its reply (bytes, not
/// JSON): say to use `--loan-file` instead.
fn loan_hint(client: &Client, method: &str, e: Error) -> Error {
    if e.kind() != ErrorKind::Decode {
        return e;
    }
    let is_loan = client.describe().is_ok_and(|d| {
        d.methods
            .iter()
            .any(|m| m.name == method && m.request.contains("loan"))
    });
    if !is_loan {
        return e;
    }
    Error::new(
        ErrorKind::InvalidInput,
        format!("'{method}' is a loan method: it takes and returns bytes, not JSON; call it with --loan-file FILE"),
    )
    .with_name(client.name())
}
