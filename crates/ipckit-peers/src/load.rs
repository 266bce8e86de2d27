//! `service-load`: a checked load client for any service with the demo's
//! `add` method (`ipckit service demo NAME`).

use std::sync::Arc;
use std::time::Duration;

use ipckit::service::{Client, Encoding};
use ipckit::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// `add`'s argument, as `ipckit service demo` takes it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct AddArgs {
    a: i64,
    b: i64,
}

fn fail(msg: String) -> Error {
    Error::new(ErrorKind::Io, msg)
}

/// `calls` calls of `add` with arguments unique to (client, call), spread
/// over `threads` threads sharing one connection; every answer checked,
/// and each call answered exactly once.
pub fn run(name: &str, client: u64, calls: u64, threads: u64, json: bool) -> ipckit::Result<()> {
    let mut opts = Client::options();
    opts = opts.timeout(Duration::from_secs(20));
    if json {
        opts = opts.encoding(Encoding::Json);
    }
    let c = Arc::new(opts.connect(name)?);
    let threads = threads.max(1);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || -> ipckit::Result<Vec<u64>> {
                let mut done = Vec::new();
                for i in (t..calls).step_by(threads as usize) {
                    let args = AddArgs {
                        a: (client * 1_000_000 + i) as i64,
                        b: (i * 7 + 1) as i64,
                    };
                    let got: i64 = c.call("add", &args)?;
                    if got != args.a + args.b {
                        return Err(fail(format!(
                            "client {client} call {i}: add({}, {}) answered {got}",
                            args.a, args.b
                        )));
                    }
                    done.push(i);
                }
                Ok(done)
            })
        })
        .collect();
    let mut seen = vec![false; calls as usize];
    for h in handles {
        for i in h
            .join()
            .map_err(|_| fail("a load thread panicked".into()))??
        {
            if std::mem::replace(&mut seen[i as usize], true) {
                return Err(fail(format!("client {client}: call {i} answered twice")));
            }
        }
    }
    let ok = seen.iter().filter(|s| **s).count();
    println!("{}", serde_json::json!({ "client": client, "ok": ok }));
    if ok as u64 != calls {
        return Err(fail(format!(
            "client {client}: {ok} of {calls} calls answered"
        )));
    }
    Ok(())
}
