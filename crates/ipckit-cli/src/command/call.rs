//! `ipckit call NAME METHOD JSON`: one call, JSON in, JSON out.

use std::time::Instant;

use ipckit::service::Client;

use crate::cli::CallArgs;

pub fn run(args: CallArgs) -> Result<(), ipckit::Error> {
    let arg: serde_json::Value = serde_json::from_str(&args.arg).map_err(|e| {
        ipckit::Error::new(
            ipckit::ErrorKind::InvalidInput,
            format!(
                "the argument is not JSON ({e}); quote it for the shell, e.g. '{{\"a\":1,\"b\":2}}'"
            ),
        )
        .with_name(&args.name)
    })?;
    let client = Client::options()
        .allow_server_uids(crate::util::allowed_uids())
        .timeout(args.timeout)
        .transport(args.transport.get())
        .connect(&args.name)?;
    let t = Instant::now();
    let result = client.call_json(&args.method, arg, Some(args.timeout))?;
    let rtt = t.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "result": result,
                "rtt_us": crate::util::micros(rtt),
                "transport": super::pipe::transport_name(client.transport()),
            })
        );
    } else {
        println!("{result}");
    }
    Ok(())
}
