//! Regression tests for what fuzzing the connection layer (`fuzz/`) found,
//! each the minimal reproducer of one finding, across real processes.
//! (They came up while writing the targets, by reading each decoder the
//! target drives; the targets reproduce them, failing on `run.sh`'s
//! `-malloc_limit_mb`, with these inputs.)
//!
//! All three findings are the same mistake in three places: a length the
//! peer announces was trusted for an allocation made before the bytes
//! arrived. A peer that announces a body of a GiB or more and then stops
//! (or closes) made the victim ask for all of it at once; where the system
//! refuses that much (strict overcommit, a memory ulimit, less RAM + swap
//! than asked for) the allocation fails and the whole process aborts. The
//! victim runs in a child process (this test binary re-exec'd to run the
//! ignored test [`child_role`] in a role, see `support::role`) under an
//! address-space limit of what it already uses plus [`HEADROOM`], so an
//! up-front allocation aborts it there and then; reading as the bytes
//! arrive costs a few KiB and the child reports an error, as it should.
//!
//! The hostile peer is this test process, speaking the wire formats of
//! `docs/PROTOCOL.md` with raw sockets. Every wait is bounded by
//! [`DEADLINE`]; nothing sleeps to synchronise.

mod support;

use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use ipckit::Namespace;
use support::raw::{self, mailslot, message, pipe};
use support::{say, Proc, TestNs, DEADLINE};

/// Address space a child may add to what it uses when it starts: plenty
/// for its threads and buffers, less than any of the hostile lengths.
const HEADROOM: u64 = 512 << 20;
/// The endpoint name every test uses (each in its own namespace).
const NAME: &str = "victim";

// ---------------------------------------------------------------- children

/// The entry point of every child process; does nothing in a normal run.
#[test]
#[ignore = "a child role, started by the other tests"]
fn child_role() {
    let Some((role, _)) = support::role() else {
        return;
    };
    support::limits::limit_address_space(HEADROOM);
    match role.as_str() {
        "pipe-client" => pipe_client_role(),
        "message-sender" => message_sender_role(),
        "mailslot-reader" => mailslot_reader_role(),
        other => panic!("unknown role {other}"),
    }
}

fn outcome<T>(r: ipckit::Result<T>) -> String {
    match r {
        Ok(_) => "RESULT ok".into(),
        Err(e) => format!("RESULT error {:?}", e.kind()),
    }
}

/// Connect to the (fake) pipe server and read one message.
fn pipe_client_role() {
    let ns = Namespace::from_env().unwrap();
    let mut pipe = ipckit::pipe::ClientOptions::new()
        .namespace(&ns)
        .timeout(DEADLINE)
        .connect(NAME)
        .unwrap();
    say(&outcome(pipe.recv_timeout(DEADLINE)));
}

/// Send one window message to the (fake) receiver.
fn message_sender_role() {
    let ns = Namespace::from_env().unwrap();
    let r = ipckit::message::Messenger::new()
        .namespace(&ns)
        .send(NAME, 0x4A, b"x", DEADLINE);
    say(&outcome(r));
}

/// Read one message from an unlimited mailslot.
fn mailslot_reader_role() {
    let ns = Namespace::from_env().unwrap();
    let slot = ipckit::mailslot::MailslotOptions::new()
        .namespace(&ns)
        .max_message_size(0)
        .create(NAME)
        .unwrap();
    say("READY");
    match slot.recv_timeout(DEADLINE) {
        Ok(m) => say(&format!("GOT {}", String::from_utf8_lossy(&m))),
        Err(e) => say(&format!("RESULT error {:?}", e.kind())),
    }
}

// ------------------------------------------------------------------ parent

/// Start `role` in `t`'s namespace: no stdin, its stderr passed through
/// (where an abort shows).
fn start(t: &TestNs, role: &str) -> Proc {
    Proc::spawn_raw(
        t.role(role, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
}

/// Play a hostile server: accept one connection on `NAME`'s socket, write
/// `bytes`, close the sending side, and read whatever the client sends
/// until it closes (on a helper thread, bounded by [`DEADLINE`]).
fn fake_server(ns: &Namespace, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(ns.socket_path(NAME)).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(&bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    })
}

/// What the child reported, checking it did not die on the way.
fn finish(mut kid: Proc, what: &str) -> String {
    let line = kid.try_stdout_line("RESULT");
    let status = kid.wait_exit(DEADLINE);
    assert!(
        status.success() && line.is_some(),
        "{what}: the child died ({status}) instead of reporting an error; \
         it allocated the announced length up front (see its stderr above)"
    );
    line.unwrap()
}

/// Play a hostile server sending `bytes` to the child `role`, which must
/// report an error (`what` names it), not die.
fn assert_reports_an_error(bytes: Vec<u8>, role: &str, what: &str) {
    let t = TestNs::new();
    let server = fake_server(&t.ns, bytes);
    let kid = start(&t, role);
    let got = finish(kid, what);
    assert!(got.starts_with("RESULT error"), "{got}");
    server.join().unwrap();
}

// ------------------------------------------------------------------- tests

/// `client_hello`, pipe: a pipe server's hello announces a `max_message`
/// of 4 GiB − 1 and then a 3 GiB message header; the client allocated the
/// 3 GiB before reading (`pipe/named.rs`, `read_socket_item`:
/// `vec![0u8; len]` for any `len` up to the *server's* `max_message`).
#[test]
fn a_pipe_client_does_not_allocate_the_message_length_a_server_announces() {
    let mut bytes = raw::hello(pipe::MAGIC, 0, u32::MAX);
    bytes.extend_from_slice(&pipe::frame_header(1, 3 << 30)); // a data frame of 3 GiB
    assert_reports_an_error(bytes, "pipe-client", "pipe client");
}

/// `client_hello`, window message: a receiver answers a send with
/// a reply header announcing 1 GiB − 1 bytes of reply data; the sender
/// allocated it before reading (`message.rs`, `Window::call`:
/// `vec![0u8; len]` for any `len` up to 1 GiB, at commit 9aa9cde).
#[test]
fn a_message_sender_does_not_allocate_the_reply_length_a_receiver_announces() {
    let mut bytes = raw::hello(message::MAGIC, 0, 4096);
    // A reply (code 0) of 1 GiB - 1 bytes, result 7.
    bytes.extend_from_slice(&message::response_header(
        message::RESP_REPLY,
        0,
        (1 << 30) - 1,
        7,
    ));
    assert_reports_an_error(bytes, "message-sender", "message sender");
}

/// `mailslot_writes`: a writer to a mailslot without a size limit
/// (`max_message_size` 0: up to 1 GiB) announces a 1 GiB message, sends
/// four bytes of it and closes; the reader allocated the whole GiB first
/// (`mailslot/mod.rs`, `serve_writer`: `vec![0u8; len]`, at commit
/// 9aa9cde), so one writer
/// could abort the reader's process. The reader must drop the torn write
/// and go on taking honest ones.
#[test]
fn a_mailslot_reader_does_not_allocate_the_length_a_writer_announces() {
    let t = TestNs::new();
    let ns = &t.ns;
    let mut kid = start(&t, "mailslot-reader");
    kid.try_stdout_line("READY")
        .expect("the mailslot child did not start");
    let (mut s, _) = raw::connect_to(&ns.socket_path(NAME), mailslot::MAGIC);
    let mut w = mailslot::write_header(1 << 30, 1000).to_vec(); // len: 1 GiB
    w.extend_from_slice(b"torn");
    s.write_all(&w).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // The reader drops the torn write and closes this connection...
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // ...and still takes an honest one, if it is still alive.
    let sent = ipckit::mailslot::WriterOptions::new()
        .namespace(ns)
        .timeout(DEADLINE)
        .open(NAME)
        .and_then(|mut w| w.send(b"honest"));
    let got = kid.try_stdout_line("GOT");
    let status = kid.wait_exit(DEADLINE);
    assert!(
        status.success() && sent.is_ok(),
        "the mailslot reader died ({status}; the honest write: {sent:?}) after a writer \
         announced 1 GiB; it allocated the announced length up front (see its stderr above)"
    );
    assert_eq!(got.as_deref(), Some("GOT honest"));
}
