//! `ipckit service demo`: the demo compute service, and the demo's
//! compute-server step.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ipckit::service::{Client, Encoding, RemoteError, Server};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::demo;
use crate::cli::{ServiceCommand, TransportArg, WaitArg};
use crate::util::{percentile, us};

/// The seed's `MyInfo`: two floats the compute server modifies.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, JsonSchema)]
pub struct MyInfo {
    pub red: f64,
    pub blue: f64,
}

/// `add`'s argument.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub struct AddArgs {
    /// The first addend.
    pub a: i64,
    /// The second addend.
    pub b: i64,
}

/// `sleep`'s argument.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, JsonSchema)]
pub struct SleepArgs {
    /// How long the handler sleeps, in milliseconds.
    pub ms: u64,
}

/// `sleep`'s result.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub struct Slept {
    /// How long it slept, in milliseconds.
    pub slept_ms: u64,
}

/// `panic`'s argument.
#[derive(Serialize, Deserialize, Debug, Clone, Default, JsonSchema)]
pub struct PanicArgs {
    /// The panic's message (default "asked to panic").
    pub message: Option<String>,
}

/// The seed's computation: the server overwrites the struct the client
/// sent with `red = 2.0, blue = 1.0` and hands it back.
pub fn compare(mut m: MyInfo) -> MyInfo {
    m.blue = 1.0;
    m.red = 2.0;
    m
}

pub fn run(cmd: ServiceCommand) -> Result<(), ipckit::Error> {
    match cmd {
        ServiceCommand::Demo {
            name,
            tcp,
            transport,
            wait,
            count,
            timeout,
            fabric,
        } => match crate::util::remote_name(&name) {
            Some(remote) => serve_demo_remote(remote, &name, tcp.is_some(), count, timeout),
            None => serve_demo(&name, tcp, transport, wait, count, timeout, fabric),
        },
    }
}

/// `sum`: the wrapping sum of every byte of the request, as 8 bytes LE.
pub fn byte_sum(req: &[u8]) -> u64 {
    // Blocks of 64 KiB cannot overflow a u32 (65536 * 255 < 2^32), and a
    // u32 sum over bytes vectorises well.
    req.chunks(1 << 16)
        .map(|c| u64::from(c.iter().map(|b| u32::from(*b)).sum::<u32>()))
        .sum()
}

/// The demo service on the fabric only (`service demo zenoh://NAME`).
#[cfg(feature = "zenoh")]
fn serve_demo_remote(
    remote: &str,
    full: &str,
    tcp: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<(), ipckit::Error> {
    if tcp {
        return Err(ipckit::Error::new(
            ipckit::ErrorKind::InvalidInput,
            "--tcp serves a local service over TCP; a zenoh:// name is published on the fabric only (use a plain name with --fabric for both)",
        )
        .with_name(full));
    }
    crate::util::catch_stop_signals()?;
    let server = publish_demo(remote)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "serving service '{full}'");
    let _ = out.flush();
    drop(out);
    let r = crate::util::serve_until(full, count, timeout, "calls answered", || {
        let d = server.describe();
        d.calls.saturating_sub(d.in_flight)
    });
    drop(server);
    r
}

/// Publish the demo's methods on the fabric as `name`, and say so on
/// stdout (`fabric zenoh://NAME namespace NS id ZID`). Loan methods
/// become raw ones there (the fabric lends no shared memory): the same
/// bytes in and out.
#[cfg(feature = "zenoh")]
fn publish_demo(name: &str) -> Result<ipckit::fabric::Server, ipckit::Error> {
    let fabric = crate::util::fabric()?;
    let server = fabric
        .server(name)
        .raw_handler("sum", |_enc: Encoding, req: &[u8]| {
            Ok::<_, RemoteError>(byte_sum(req).to_le_bytes().to_vec())
        })
        .raw_handler("reverse", |_enc: Encoding, req: &[u8]| {
            Ok::<_, RemoteError>(req.iter().rev().copied().collect::<Vec<u8>>())
        })
        .raw_handler("echo", |_enc: Encoding, body: &[u8]| {
            Ok::<_, RemoteError>(body.to_vec())
        })
        .handler("add", add)
        .handler("compare", compare_and_show)
        .handler("sleep", sleep)
        .handler("panic", panic_on_request)
        .bind()?;
    announce(&fabric, name);
    Ok(server)
}

/// `--fabric`: publish the bound local `server` on the fabric, and say so
/// as [`publish_demo`] does.
#[cfg(feature = "zenoh")]
fn publish_local(server: &Server, name: &str) -> Result<ipckit::fabric::Server, ipckit::Error> {
    let fabric = crate::util::fabric()?;
    let published = server.publish(&fabric)?;
    announce(&fabric, name);
    Ok(published)
}

/// `fabric zenoh://NAME namespace NS id ZID` on stdout.
#[cfg(feature = "zenoh")]
fn announce(fabric: &ipckit::fabric::Fabric, name: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "fabric zenoh://{name} namespace {} id {}",
        fabric.namespace(),
        fabric.id()
    );
    let _ = out.flush();
}

/// `service demo zenoh://NAME` without the fabric built in.
#[cfg(not(feature = "zenoh"))]
fn serve_demo_remote(
    _remote: &str,
    full: &str,
    _tcp: bool,
    _count: Option<u64>,
    _timeout: Option<Duration>,
) -> Result<(), ipckit::Error> {
    Err(crate::util::no_fabric(&format!("publishing {full}")))
}

/// `add`: the sum, or an error naming the overflow.
fn add(p: AddArgs) -> Result<i64, String> {
    p.a.checked_add(p.b)
        .ok_or_else(|| format!("{} + {} overflows a 64-bit integer", p.a, p.b))
}

/// `compare`: the seed's server shows what it got, and modifies it.
fn compare_and_show(m: MyInfo) -> Result<MyInfo, RemoteError> {
    // A closed stdout is no error.
    let _ = writeln!(
        std::io::stdout(),
        "client: red={:.2}, blue={:.2}",
        m.red,
        m.blue
    );
    Ok(compare(m))
}

/// `sleep`: sleep `ms`, then say how long.
fn sleep(p: SleepArgs) -> Result<Slept, RemoteError> {
    std::thread::sleep(Duration::from_millis(p.ms));
    Ok(Slept { slept_ms: p.ms })
}

/// `panic`: panic with the message asked for.
fn panic_on_request(p: PanicArgs) -> Result<(), RemoteError> {
    panic!("{}", p.message.unwrap_or_else(|| "asked to panic".into()))
}

fn serve_demo(
    name: &str,
    tcp: Option<String>,
    transport: TransportArg,
    wait: WaitArg,
    count: Option<u64>,
    timeout: Option<Duration>,
    fabric: bool,
) -> Result<(), ipckit::Error> {
    #[cfg(not(feature = "zenoh"))]
    if fabric {
        return Err(crate::util::no_fabric(&format!(
            "service demo {name} --fabric"
        )));
    }
    let mut b = Server::builder(name)
        .transport(transport.get())
        .wait_strategy(wait.get())
        .loan_handler("sum", |req, reply| {
            reply.write(&byte_sum(req).to_le_bytes())
        })
        .loan_handler("reverse", |req, reply| {
            let out = reply.alloc(req.len())?;
            for (o, i) in out.iter_mut().zip(req.iter().rev()) {
                *o = *i;
            }
            Ok::<_, ipckit::Error>(())
        })
        .raw_handler("echo", |_enc: Encoding, body: &[u8]| {
            Ok::<_, RemoteError>(body.to_vec())
        })
        .handler_with_schema("add", add)
        .handler_with_schema("compare", compare_and_show)
        .handler_with_schema("sleep", sleep)
        .handler_with_schema("panic", panic_on_request);
    if let Some(a) = tcp {
        b = b.tcp(a);
    }
    // Before the record exists: a stop signal from then on removes it.
    crate::util::catch_stop_signals()?;
    let server = b.limits(crate::util::limits()).bind()?;
    // `--fabric`: the same server published on the fabric too (before
    // `serving`, so that line means both are up).
    #[cfg(feature = "zenoh")]
    let published = match fabric {
        true => Some(publish_local(&server, name)?),
        false => None,
    };
    #[cfg(feature = "zenoh")]
    let remote_calls = || {
        published.as_ref().map_or(0, |p| {
            let d = p.describe();
            d.calls.saturating_sub(d.in_flight)
        })
    };
    #[cfg(not(feature = "zenoh"))]
    let remote_calls = || 0;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "serving service '{name}'");
    if let Some(a) = server.tcp_addr() {
        let _ = writeln!(out, "tcp://{a}");
    }
    let _ = out.flush();
    drop(out);
    // Until Ctrl-C or SIGTERM: then the server is dropped (calls in flight
    // finish) and its record removed.
    let r = crate::util::serve_until(name, count, timeout, "calls answered", || {
        let d = server.describe();
        d.calls.saturating_sub(d.in_flight) + remote_calls()
    });
    drop(server);
    r
}

/// The demo's compute-server step: a server process, a client process
/// (`ipckit call`, JSON), then this process as a typed client.
pub fn demo_step(ns: &Path) -> Result<(), ipckit::Error> {
    println!(
        "\n[service] compute server process <-> client processes (the seed's compare: MyInfo {{red, blue}} in, modified MyInfo out)"
    );
    let mut server = demo::child(ns, &["service", "demo", "demo/compute"])?;
    server.stdout(Stdio::null());
    let _server = demo::spawn(server)?;
    let sent = MyInfo {
        red: 3333.0,
        blue: 20.01,
    };
    let arg = serde_json::to_string(&sent).expect("MyInfo encodes");
    let args = [
        "call",
        "demo/compute",
        "compare",
        &arg,
        "--json",
        "--timeout",
        "10s",
    ];
    let out = demo::child_output(demo::child(ns, &args)?)?;
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| demo::bad_json(e, &out))?;
    let back: MyInfo =
        serde_json::from_value(v["result"].clone()).map_err(|e| demo::bad_json(e, &out))?;
    println!(
        "  client process `ipckit call` ({}) called compare(red={:.2}, blue={:.2}); server returned red={:.2}, blue={:.2} in {}",
        v["transport"].as_str().unwrap_or("?"),
        sent.red,
        sent.blue,
        back.red,
        back.blue,
        us(v["rtt_ns"].as_u64().unwrap_or(0))
    );
    // This process as a typed client (postcard bodies), many calls.
    let nsp = ipckit::Namespace::at(ns)?;
    let c = Client::options()
        .namespace(&nsp)
        .timeout(Duration::from_secs(10))
        .connect("demo/compute")?;
    let rounds = 2000;
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let _: MyInfo = c.call("compare", &sent)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    let d = c.describe()?;
    println!(
        "  demo process pid {} ({}): {rounds} more calls, round trip p50 {} p99 {}; server counters: calls {} errors {} in flight {}",
        std::process::id(),
        match c.transport() {
            ipckit::Transport::SharedMemory => "shared memory",
            _ if cfg!(windows) => "pipe",
            _ => "socket",
        },
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
        d.calls,
        d.errors,
        d.in_flight
    );
    Ok(())
}
