//! Hostile senders to a real window-message receiver: a raw sender reads
//! the hello, writes the fuzzer's bytes as requests (16-byte header, then
//! the data; `docs/PROTOCOL.md`, "Window messages") and closes its sending
//! side. The receiver must answer or drop the sender, close the connection
//! within `common::HANG`, never panic, never hand its handler more than
//! `max_data` bytes, and keep serving honest senders.
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ipckit::message::{Messenger, Receiver, ReceiverOptions, Reply};
use ipckit::Namespace;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "win";
const MAX_DATA: usize = 4096;

struct Fixture {
    ns: Namespace,
    path: PathBuf,
    _rx: Receiver,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let rx = ReceiverOptions::new()
            .namespace(&ns)
            .max_message_size(MAX_DATA)
            .register(NAME, |m| {
                assert!(
                    m.data.len() <= MAX_DATA,
                    "{} bytes handed over",
                    m.data.len()
                );
                Reply::new(m.data.len() as i64).with_data(m.data.to_vec())
            })
            .expect("register the receiver under test");
        let path = ns.socket_path(NAME);
        Fixture { ns, path, _rx: rx }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (s, hello) = common::connect(&f.path);
    assert_eq!(&hello[..8], b"IPCKWMSG");
    common::write_and_drain(s, data, "message receiver");
    // The receiver still answers an honest sender.
    let reply = Messenger::new()
        .namespace(&f.ns)
        .send(NAME, 0x4A, b"abc", Duration::from_secs(5))
        .expect("the receiver stopped answering after a hostile sender");
    assert_eq!(
        (reply.result, reply.data.as_slice()),
        (3, b"abc".as_slice())
    );
});
