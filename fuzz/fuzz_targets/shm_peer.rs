//! Hostile shared-memory peers of real servers. A fake client creates a
//! ring object (through the `ipckit::fuzzing` hook), fills it with the
//! fuzzer's mix of honest ring messages carrying hostile frames and raw
//! writes anywhere in the shared pages (indices, control words, record
//! headers, loan bytes), hands it over the socket as a real client does
//! (`KIND_SHM` to a pipe server, `KIND_LANE` to a service), and closes
//! its sending side. The server must check the object (`Chan::open`),
//! read records (`Rx::recv`), frames (`parse_frame`) and loan ranges
//! (`parse_loan_range`, `check_loan`), then drop the connection: never a
//! panic, an out-of-bounds access or a hang, and it keeps serving honest
//! clients (over shared memory too) afterwards.
//!
//! The servers use `WaitStrategy::Spin`: they notice a departed peer within
//! a millisecond instead of a 50 ms park slice, which keeps cases fast.
#![no_main]

mod common;

use std::io::Read;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ipckit::fuzzing::{send_with_fd, RingPeer};
use ipckit::pipe::{ClientOptions, PipeServer, ServerOptions};
use ipckit::service::{Client, RemoteError, Server};
use ipckit::{ErrorKind, Namespace, Transport, WaitStrategy};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

use common::shm;

const PIPE: &str = "pipe";
const SERVICE: &str = "svc";
const MAX: usize = 4096;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Which {
    Pipe,
    Service,
}

#[derive(Arbitrary, Debug)]
struct Input {
    which: Which,
    ring_log: u8,
    loan_pages: u8,
    /// Close the ring (end-of-stream) before handing it over.
    close: bool,
    ops: Vec<shm::Op>,
}

struct Fixture {
    ns: Namespace,
    pipe_path: PathBuf,
    svc_path: PathBuf,
    pipe: PipeServer,
    _svc: Server,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let pipe = ServerOptions::new()
            .namespace(&ns)
            .max_message_size(MAX)
            .wait_strategy(WaitStrategy::Spin)
            .create(PIPE)
            .expect("create the pipe under test");
        let svc = Server::builder(SERVICE)
            .namespace(&ns)
            .max_message_size(MAX)
            .wait_strategy(WaitStrategy::Spin)
            .raw_handler("echo", |_enc, body| Ok::<_, RemoteError>(body.to_vec()))
            .handler("add", |(a, b): (u32, u32)| {
                Ok::<_, String>(a.wrapping_add(b))
            })
            .loan_handler("sum", |req, reply| {
                let sum: u64 = req.iter().map(|b| u64::from(*b)).sum();
                reply.write(&sum.to_le_bytes())
            })
            .log(|_| {})
            .bind()
            .expect("bind the service under test");
        Fixture {
            pipe_path: ns.socket_path(PIPE),
            svc_path: ns.socket_path(SERVICE),
            ns,
            pipe,
            _svc: svc,
        }
    })
}

fn pipe_case(f: &Fixture, input: &Input) {
    let (s, hello) = common::connect(&f.pipe_path);
    assert_eq!(&hello[..8], b"IPCKPIPE");
    assert!(
        hello[10] & 0x80 != 0,
        "the pipe server offers no shared memory"
    );
    let ring = 4096usize << (input.ring_log % 3);
    let mut peer = RingPeer::new(ring, 0, true).expect("create a ring");
    shm::apply(&mut peer, &input.ops, true);
    if input.close {
        peer.close();
    }
    // Header of a kind-3 frame (`KIND_SHM`, len 0) with the object.
    send_with_fd(s.as_fd(), &[3, 0, 0, 0, 0, 0, 0, 0], peer.object()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    if let Some(mut conn) = common::accept_or_dropped(&f.pipe, &s) {
        for _ in 0..input.ops.len() + 2 {
            match conn.recv_timeout(common::HANG) {
                Ok(m) => assert!(m.len() <= MAX, "a {}-byte message", m.len()),
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    panic!("hang: the pipe kept waiting on a ring whose peer left: {e}")
                }
                Err(e) if e.kind() == ErrorKind::InvalidInput => {
                    let _ = conn.recv_fd();
                }
                Err(_) => break,
            }
        }
    }
    common::drain(s, "pipe server");
    // Still serving honest clients, over shared memory.
    let mut c = ClientOptions::new()
        .namespace(&f.ns)
        .timeout(Duration::from_secs(5))
        .connect(PIPE)
        .expect("the pipe server stopped accepting after a hostile ring");
    let mut conn = f
        .pipe
        .accept_timeout(common::HANG)
        .expect("no honest accept");
    c.send(b"honest").unwrap();
    assert_eq!(conn.recv_timeout(common::HANG).unwrap(), b"honest");
    assert_eq!(c.transport(), Transport::SharedMemory);
}

fn service_case(f: &Fixture, input: &Input) {
    let (s, hello) = common::connect(&f.svc_path);
    assert_eq!(&hello[..8], b"IPCKSERV");
    assert!(hello[10] & 1 != 0, "the service offers no shared memory");
    let ring = 4096usize << (input.ring_log % 3);
    let loan = usize::from(input.loan_pages % 3) * 4096;
    let mut peer = RingPeer::new(ring, loan, true).expect("create a ring");
    shm::apply(&mut peer, &input.ops, true);
    if input.close {
        peer.close();
    }
    // A `KIND_LANE` header (no method, no body) with the object.
    send_with_fd(
        s.as_fd(),
        &shm::frame(shm::KIND_LANE, 0, 0, "", &[]),
        peer.object(),
    )
    .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut s = s;
    let mut answer = [0u8; 24];
    let _ = s.read_exact(&mut answer);
    common::drain(s, "service");
    // Still serving honest clients, on a lane and with a loan.
    let c = Client::options()
        .namespace(&f.ns)
        .timeout(Duration::from_secs(5))
        .connect(SERVICE)
        .expect("the service stopped accepting after a hostile lane");
    assert_eq!(c.transport(), Transport::SharedMemory);
    let got: u32 = c
        .call_timeout("add", &(2u32, 3u32), common::HANG)
        .expect("the service stopped answering after a hostile lane");
    assert_eq!(got, 5);
    let mut l = c.loan(3).unwrap();
    l.fill(2);
    let out = c.call_loan("sum", l).expect("an honest loan call failed");
    assert_eq!(out[..], 6u64.to_le_bytes());
}

fuzz_target!(|input: Input| {
    let f = fixture();
    match input.which {
        Which::Pipe => pipe_case(f, &input),
        Which::Service => service_case(f, &input),
    }
});
