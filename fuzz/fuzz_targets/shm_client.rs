//! Hostile shared-memory servers: a fake server on the endpoint's socket
//! offers shared memory, takes the ring object the real client creates
//! (a pipe client's `KIND_SHM` answer, a service client's `KIND_LANE`
//! lane), maps it through the `ipckit::fuzzing` hook and fills it with
//! the fuzzer's mix of honest ring messages carrying hostile replies and
//! raw writes anywhere in the shared pages (indices, control words, record
//! headers, loan ranges and bytes); then it leaves. The client must read
//! records (`Rx::recv`), reply frames (`parse_frame`, call ids) and loan
//! ranges (`parse_loan_range`, `check_loan`) without a panic, an
//! out-of-bounds access or a hang, and report the server's departure.
#![no_main]

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipckit::fuzzing::{recv_with_fds, RingPeer};
use ipckit::{ErrorKind, Namespace, Transport};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

use common::shm;

const NAME: &str = "fake";

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Pipe,
    Service,
}

#[derive(Arbitrary, Debug)]
struct Input {
    which: Which,
    /// The hello's size limit (pipe `max_message`, service `max_frame`,
    /// which sizes the client's loan segments), up to 16 MiB.
    max: u32,
    ops: Vec<shm::Op>,
    /// Bytes written on the socket once the ring is filled (pipe: frames,
    /// such as the fd frame a ring record may announce).
    socket: Vec<u8>,
}

impl Input {
    fn max(&self) -> u32 {
        self.max % (16 << 20)
    }
}

struct Fixture {
    ns: Namespace,
    script: Arc<Mutex<Option<Arc<Input>>>>,
    /// Connections of the case, kept open until it ends.
    held: Arc<Mutex<Vec<UnixStream>>>,
}

fn hello(magic: &[u8; 8], flags: u8, max: u32) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&[1, 0, flags, 0]);
    b.extend_from_slice(&max.to_le_bytes());
    b
}

/// Read exactly `n` bytes and the descriptors passed with them.
fn read_handover(s: &UnixStream, n: usize) -> Option<(Vec<u8>, Vec<std::os::fd::OwnedFd>)> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < n {
        match recv_with_fds(s.as_fd(), &mut buf[got..]) {
            Ok((0, _)) | Err(_) => return None,
            Ok((k, more)) => {
                got += k;
                fds.extend(more);
            }
        }
    }
    Some((buf, fds))
}

/// Serve one connection of the case `input`; `nth`: how many came before.
fn serve(mut s: UnixStream, nth: usize, input: &Input, held: &Mutex<Vec<UnixStream>>) {
    s.set_read_timeout(Some(common::HANG)).unwrap();
    let max = input.max();
    match input.which {
        Which::Service if nth == 0 => {
            // The main connection: shared memory offered, then whatever;
            // the client's socket calls see the end of it.
            let _ = s.write_all(&hello(b"IPCKSERV", 1, max));
            let _ = s.write_all(&input.socket);
            let _ = s.shutdown(Shutdown::Write);
            held.lock().unwrap().push(s);
        }
        Which::Service => {
            // A lane: take the ring, fill it, accept the lane, leave.
            let _ = s.write_all(&hello(b"IPCKSERV", 1, max));
            let Some((_, mut fds)) = read_handover(&s, 24) else {
                return;
            };
            let Some(fd) = fds.pop() else { return };
            let Ok(mut peer) = RingPeer::attach(fd.as_fd(), usize::MAX, false) else {
                return;
            };
            shm::apply(&mut peer, &input.ops, false);
            let _ = s.write_all(&shm::frame(shm::KIND_LANE, 0, 0, "", &[]));
        }
        Which::Pipe => {
            // Message mode, duplex, shared memory offered.
            let _ = s.write_all(&hello(b"IPCKPIPE", 0x80, max));
            let Some((_, mut fds)) = read_handover(&s, 8) else {
                return;
            };
            if let Some(fd) = fds.pop() {
                if let Ok(mut peer) = RingPeer::attach(fd.as_fd(), 0, false) {
                    shm::apply(&mut peer, &input.ops, false);
                }
            }
            let _ = s.write_all(&input.socket);
        }
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ns = common::namespace();
        let listener = UnixListener::bind(ns.socket_path(NAME)).expect("bind the fake server");
        let script: Arc<Mutex<Option<Arc<Input>>>> = Arc::default();
        let held: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (sc, h) = (script.clone(), held.clone());
        std::thread::spawn(move || {
            let mut nth = 0;
            let mut case: Option<Arc<Input>> = None;
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let now = sc.lock().unwrap().clone();
                let Some(input) = now else { continue };
                if !case.as_ref().is_some_and(|c| Arc::ptr_eq(c, &input)) {
                    case = Some(input.clone());
                    nth = 0;
                }
                serve(conn, nth, &input, &h);
                nth += 1;
            }
        });
        Fixture { ns, script, held }
    })
}

fn pipe(ns: Namespace, ops: usize) {
    let Ok(mut p) = ipckit::pipe::ClientOptions::new()
        .namespace(&ns)
        .timeout(Duration::ZERO)
        .connect(NAME)
    else {
        return;
    };
    if p.transport() != Transport::SharedMemory {
        return;
    }
    for _ in 0..ops + 2 {
        match p.recv_timeout(common::HANG) {
            Ok(m) => assert!(m.len() <= p.max_message_size()),
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                let _ = p.recv_fd();
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                panic!("hang: the pipe client waited on a ring whose server left: {e}")
            }
            Err(_) => break,
        }
    }
}

fn service(ns: Namespace) {
    let Ok(c) = ipckit::service::Client::options()
        .namespace(&ns)
        .timeout(Duration::ZERO)
        .max_message_size(1 << 16)
        .connect(NAME)
    else {
        return;
    };
    if c.transport() != Transport::SharedMemory {
        return;
    }
    match c.call_timeout::<_, Vec<u8>>("echo", &[1u8, 2, 3][..], common::HANG) {
        Err(e) if e.kind() == ErrorKind::Timeout => {
            panic!("hang: a lane call waited on a ring whose server left: {e}")
        }
        _ => {}
    }
    // Without a timeout: only the server's departure ends it.
    if let Ok(mut loan) = c.loan(8) {
        loan.fill(1);
        if let Ok(out) = c.call_loan("sum", loan) {
            let _: u64 = out.iter().map(|b| u64::from(*b)).sum();
        }
    }
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let which = input.which;
    let ops = input.ops.len();
    *f.script.lock().unwrap() = Some(Arc::new(input));
    let ns = f.ns.clone();
    match which {
        Which::Pipe => common::bounded("the pipe client against a hostile ring", move || {
            pipe(ns, ops)
        }),
        Which::Service => common::bounded("the service client against a hostile lane", move || {
            service(ns)
        }),
    }
    f.held.lock().unwrap().clear();
});
