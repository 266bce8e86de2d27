//! Hostile writers of a real mailslot: a raw writer reads the hello,
//! writes the fuzzer's bytes as write requests (16-byte header, then the
//! message; `docs/PROTOCOL.md`, "Mailslots") and closes its sending side.
//! The reader must acknowledge or drop the writer, close the connection
//! within `common::HANG`, never panic, never queue more than its
//! `max_message_size` per message, and keep taking honest writes.
//!
//! The first byte picks the mailslot: a limited one (`max_message_size`
//! 4096) or an unlimited one (0: up to `UNLIMITED_CAP`), whose reader must
//! not allocate what a header announces before the bytes arrive (the
//! fuzzer's `-malloc_limit_mb` catches that).
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ipckit::mailslot::{Mailslot, MailslotOptions, WriterOptions};
use ipckit::Namespace;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

struct Slot {
    name: &'static str,
    path: PathBuf,
    slot: Mailslot,
    limit: usize,
}

struct Fixture {
    ns: Namespace,
    slots: [Slot; 2],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let make = |name: &'static str, max: usize| Slot {
            name,
            path: ns.socket_path(name),
            slot: MailslotOptions::new()
                .namespace(&ns)
                .max_message_size(max)
                .create(name)
                .expect("create the mailslot under test"),
            limit: if max == 0 { usize::MAX } else { max },
        };
        let slots = [make("limited", LIMIT), make("unlimited", 0)];
        Fixture { ns, slots }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let slot = &f.slots[usize::from(pick & 1)];
    let (s, hello) = common::connect(&slot.path);
    assert_eq!(&hello[..8], b"IPCKSLOT");
    common::write_and_drain(s, data, "mailslot reader");
    // Whatever was queued is a whole message within the limit.
    while let Ok(m) = slot.slot.recv_timeout(Duration::ZERO) {
        assert!(
            m.len() <= slot.limit,
            "a {}-byte message was queued",
            m.len()
        );
    }
    // The reader still takes an honest write.
    let mut w = WriterOptions::new()
        .namespace(&f.ns)
        .timeout(Duration::from_secs(5))
        .open(slot.name)
        .expect("the mailslot stopped accepting writers after a hostile one");
    w.send(b"honest")
        .expect("the mailslot refused an honest write after a hostile writer");
    let m = slot
        .slot
        .recv_timeout(common::HANG)
        .expect("the honest write never arrived");
    assert_eq!(m, b"honest");
});
