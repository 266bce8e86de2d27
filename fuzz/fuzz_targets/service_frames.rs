//! Hostile clients of a real service server: a raw client reads the
//! hello, writes the fuzzer's bytes as call frames (24-byte header, method
//! name, body; `docs/PROTOCOL.md`, "Services") and closes its sending
//! side. The server must answer or drop the connection, close it within
//! `common::HANG`, never panic, never allocate more than its `max_frame`
//! for a body, and keep serving honest clients (checked after each case).
//!
//! The handlers decode bodies of several types (postcard and JSON), so the
//! body decoders see the hostile bytes too.
#![no_main]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ipckit::service::{Client, RemoteError, Server};
use ipckit::{Namespace, Transport};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "svc";
const MAX_FRAME: usize = 4096;

type Mixed = (String, Vec<u64>, Option<i32>, HashMap<String, f64>, bool);

struct Fixture {
    ns: Namespace,
    path: PathBuf,
    _server: Server,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let server = Server::builder(NAME)
            .namespace(&ns)
            .max_message_size(MAX_FRAME)
            .raw_handler("echo", |_enc, body| Ok::<_, RemoteError>(body.to_vec()))
            .handler("add", |(a, b): (u32, u32)| {
                Ok::<_, String>(a.wrapping_add(b))
            })
            .handler("mixed", |m: Mixed| Ok::<_, String>(m))
            .handler("fail", |s: String| Err::<u8, _>(s))
            .loan_handler("sum", |req, reply| {
                let sum: u64 = req.iter().map(|b| u64::from(*b)).sum();
                reply.write(&sum.to_le_bytes())
            })
            .log(|_| {})
            .bind()
            .expect("bind the service under test");
        let path = ns.socket_path(NAME);
        Fixture {
            ns,
            path,
            _server: server,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (s, hello) = common::connect(&f.path);
    assert_eq!(&hello[..8], b"IPCKSERV");
    common::write_and_drain(s, data, "service server");
    // The server still serves an honest client.
    let c = Client::options()
        .namespace(&f.ns)
        .transport(Transport::Socket)
        .timeout(Duration::from_secs(5))
        .connect(NAME)
        .expect("the server stopped accepting after a hostile client");
    let got: u32 = c
        .call_timeout("add", &(2u32, 3u32), common::HANG)
        .expect("the server stopped answering after a hostile client");
    assert_eq!(got, 5);
});
