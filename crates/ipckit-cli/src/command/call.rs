//! `ipckit call NAME METHOD JSON`: one call, JSON in, JSON out; or, with
//! `--loan-file`, a loan method: bytes in, bytes out.

use std::io::Write as _;
use std::time::Instant;

use ipckit::service::Client;
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
