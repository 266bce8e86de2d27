//! Hostile datagrams on a real mailslot's UDP port (the cross-machine
//! write; `docs/PROTOCOL.md`, "Mailslots": magic `IPCKMSD1`, name length,
//! name, payload). Each datagram must be queued (whole, for this name, at
//! most 424 bytes) or counted as dropped: never a panic, never a stuck
//! reader.
#![no_main]

mod common;

use std::net::UdpSocket;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ipckit::mailslot::{Mailslot, MailslotOptions, UDP_MAX_MESSAGE};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "far";

struct Fixture {
    slot: Mailslot,
    sock: UdpSocket,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let slot = MailslotOptions::new()
            .namespace(&ns)
            .udp("127.0.0.1:0")
            .create(NAME)
            .expect("create the mailslot under test");
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(slot.udp_addr().unwrap()).unwrap();
        Fixture { slot, sock }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let dropped = f.slot.udp_dropped();
    if f.sock.send(data).is_err() {
        return; // over the datagram size limit: nothing was sent
    }
    // Loopback does not lose a lone datagram: it is queued or dropped.
    let start = Instant::now();
    loop {
        if let Ok(m) = f.slot.recv_timeout(Duration::from_millis(1)) {
            assert!(m.len() <= UDP_MAX_MESSAGE, "{} bytes queued", m.len());
            assert!(
                data.ends_with(&m),
                "the queued message is not the datagram's payload"
            );
            break;
        }
        if f.slot.udp_dropped() != dropped {
            break;
        }
        assert!(
            start.elapsed() < common::HANG,
            "hang: a datagram was neither queued nor dropped"
        );
    }
});
