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
/// and each call answered exactly once. With `wait_go`, "ready" is printed
/// once connected and the calls start at the next line on stdin; the
/// result then has `ns`, the time the calls took.
pub fn run(
    name: &str,
    client: u64,
    calls: u64,
    threads: u64,
    json: bool,
    wait_go: bool,
) -> ipckit::Result<()> {
    let mut opts = Client::options();
    opts = opts.timeout(Duration::from_secs(20));
    if json {
        opts = opts.encoding(Encoding::Json);
    }
    let c = Arc::new(opts.connect(name)?);
    if wait_go {
        use std::io::{BufRead as _, Write as _};
        println!("ready");
        std::io::stdout()
            .flush()
            .map_err(|e| crate::io(e, "stdout"))?;
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| crate::io(e, "stdin"))?;
    }
    let start = std::time::Instant::now();
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
    let took = start.elapsed();
    let ok = seen.iter().filter(|s| **s).count();
    if wait_go {
        let ns = took.as_nanos() as u64;
        println!(
            "{}",
            serde_json::json!({ "client": client, "ok": ok, "ns": ns })
        );
    } else {
        println!("{}", serde_json::json!({ "client": client, "ok": ok }));
    }
    if ok as u64 != calls {
        return Err(fail(format!(
            "client {client}: {ok} of {calls} calls answered"
        )));
    }
    Ok(())
}

/// A byte buffer carried as one block (serde's `bytes`), not element by
/// element.
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            // JSON carries bytes as an array of numbers.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Bytes, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// The bytes of a call of `len` bytes number `k` (different per call, so
/// a stale buffer is noticed).
fn pattern(len: usize, k: u64) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 31 + k) as u8).collect()
}

/// For each size: `echo` (bytes in, the same bytes out), `len` (bytes in,
/// their length and byte sum out) and `make` ((len, k) in, `pattern(len,
/// k)` out), each answer checked, over one connection (both lanes and
/// the socket, as the client picks); print {"ok": calls}.
pub fn sizes(name: &str, sizes: &[usize], rounds: u64, json: bool) -> ipckit::Result<()> {
    let mut opts = Client::options();
    opts = opts.timeout(Duration::from_secs(20));
    if json {
        opts = opts.encoding(Encoding::Json);
    }
    let c = opts.connect(name)?;
    let mut ok = 0u64;
    for r in 0..rounds {
        for (i, &len) in sizes.iter().enumerate() {
            let k = r * 1000 + i as u64;
            let req = pattern(len, k);
            let back: Bytes = c.call("echo", &Bytes(req.clone()))?;
            if back.0 != req {
                return Err(fail(format!("echo of {len} bytes came back changed")));
            }
            let (n, sum): (u64, u64) = c.call("len", &Bytes(req.clone()))?;
            let want = req.iter().map(|b| u64::from(*b)).sum::<u64>();
            if (n, sum) != (len as u64, want) {
                return Err(fail(format!(
                    "len of {len} bytes answered ({n}, {sum}), not ({len}, {want})"
                )));
            }
            let made: Bytes = c.call("make", &(len as u64, k))?;
            if made.0 != req {
                return Err(fail(format!("make of {len} bytes came back wrong")));
            }
            ok += 3;
        }
    }
    println!("{}", serde_json::json!({ "ok": ok }));
    Ok(())
}
