//! Hostile servers: a fake server on the endpoint's socket writes the
//! fuzzer's bytes (a 16-byte hello, then whatever follows) on every
//! connection and closes its sending side; each mechanism's real client
//! (pipe `IPCKPIPE`, service `IPCKSERV`, mailslot `IPCKSLOT`, window
//! message `IPCKWMSG`) connects and makes a call or two. Every step must
//! end with a value or an error: never a panic, never a hang (each client
//! step is bounded by `common::HANG`), never an allocation the size the
//! hostile bytes announce.
//!
//! A service client offered shared memory opens a second connection (a
//! lane): it gets `later` instead of `first`.
#![no_main]

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipckit::{Namespace, Transport};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fake";

#[derive(Debug, Clone, Copy)]
enum Mech {
    Pipe,
    Service,
    Mailslot,
    Message,
}

/// The case, from the fuzzer's bytes: byte 0 picks the client (bits 0-1)
/// and whether it may take shared memory (bit 2); bytes 1-2 (u16 LE) are
/// the length of `first`; then `first`; the rest is `later`. (A plain
/// layout so that seeds are easy to write by hand.)
#[derive(Debug)]
struct Input<'a> {
    mech: Mech,
    shm: bool,
    /// Bytes on the first connection (the hello, then replies).
    first: &'a [u8],
    /// Bytes on every later connection (lanes, reconnections).
    later: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&pick, rest) = data.split_first()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let (first, later) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
        let mech =
            [Mech::Pipe, Mech::Service, Mech::Mailslot, Mech::Message][usize::from(pick & 3)];
        Some(Input {
            mech,
            shm: pick & 4 != 0,
            first,
            later,
        })
    }
}

#[derive(Default)]
struct Script {
    first: Vec<u8>,
    later: Vec<u8>,
    accepted: usize,
    /// Accepted connections, kept open (receive side) until the case ends
    /// so that the client's writes do not fail before it reads.
    held: Vec<UnixStream>,
}

struct Fixture {
    ns: Namespace,
    script: Arc<Mutex<Script>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let listener = UnixListener::bind(ns.socket_path(NAME)).expect("bind the fake server");
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut s = s.lock().unwrap();
                let bytes = if s.accepted == 0 { &s.first } else { &s.later };
                // Inputs are far smaller than a socket buffer: no blocking.
                let _ = conn.write_all(bytes);
                let _ = conn.shutdown(Shutdown::Write);
                s.accepted += 1;
                s.held.push(conn);
            }
        });
        Fixture { ns, script }
    })
}

fn transport(shm: bool) -> Transport {
    if shm {
        Transport::Auto
    } else {
        Transport::Socket
    }
}

fn pipe(ns: Namespace, shm: bool) {
    use ipckit::pipe::ClientOptions;
    let Ok(mut p) = ClientOptions::new()
        .namespace(&ns)
        .timeout(Duration::ZERO)
        .transport(transport(shm))
        .connect(NAME)
    else {
        return;
    };
    for _ in 0..8 {
        if p.recv_timeout(Duration::from_millis(500)).is_err() {
            break;
        }
    }
    let _ = p.send(b"ping");
}

fn service(ns: Namespace, shm: bool) {
    use ipckit::service::Client;
    let Ok(c) = Client::options()
        .namespace(&ns)
        .timeout(Duration::ZERO)
        .max_message_size(1 << 16)
        .transport(transport(shm))
        .connect(NAME)
    else {
        return;
    };
    let _ = c.call_timeout::<_, Vec<u8>>("m", &[1u8, 2, 3][..], Duration::from_millis(500));
    let _ = c.call_json(
        "m",
        serde_json::Value::Null,
        Some(Duration::from_millis(500)),
    );
    // (No `call_loan`: it has no timeout, and this fake server stays
    // connected; `shm_client` covers loans against a server that leaves.)
}

fn mailslot(ns: Namespace) {
    use ipckit::mailslot::WriterOptions;
    let Ok(mut w) = WriterOptions::new()
        .namespace(&ns)
        .timeout(Duration::from_millis(500))
        .open(NAME)
    else {
        return;
    };
    let _ = w.max_message_size();
    for _ in 0..3 {
        if w.send(b"hi").is_err() {
            break;
        }
    }
}

fn message(ns: Namespace) {
    use ipckit::message::Messenger;
    let m = {
        let mut m = Messenger::new();
        m = m.namespace(&ns);
        m
    };
    let Ok(mut w) = m.connect(NAME) else { return };
    let _ = w.send(0x4A, b"{}", Duration::from_millis(500));
    // After a failure the window reconnects: that one reads `later`.
    let _ = w.post(0x400, b"x");
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let f = fixture();
    {
        let mut s = f.script.lock().unwrap();
        s.first = input.first.to_vec();
        s.later = input.later.to_vec();
        s.accepted = 0;
        s.held.clear();
    }
    let (ns, shm) = (f.ns.clone(), input.shm);
    let what = format!("the {:?} client against a hostile server", input.mech);
    match input.mech {
        Mech::Pipe => common::bounded(&what, move || pipe(ns, shm)),
        Mech::Service => common::bounded(&what, move || service(ns, shm)),
        Mech::Mailslot => common::bounded(&what, move || mailslot(ns)),
        Mech::Message => common::bounded(&what, move || message(ns)),
    }
    f.script.lock().unwrap().held.clear();
});
