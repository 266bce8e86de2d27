//! Tests only the shared-memory transport has: a peer process that writes
//! garbage into the shared pages, and a peer killed while the other side
//! waits on the ring.
//!
//! The ring layout used to aim the garbage (docs/PROTOCOL.md, "Shared-memory
//! transport"): the control block of ring 0 (client → server) at 256, its
//! `tail` u64 at offset 0 of it; ring 1's control block at 512; ring 0's
//! bytes at 4096, ring 1's at `4096 + ring_cap`. A record header (ring
//! version 2) is `stamp` u32 (`position / 16 + 1`, stored last: what the
//! consumer polls), `len` u32, `flags` u8, `tag` u8, `total` u48.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::pipes_suite::{serve, setup};
use crate::support::{self, pattern, wait_until, TestNs, DEADLINE};
use ipckit::pipe::{ClientOptions, NamedPipe};
use ipckit::shm::Mapping;
use ipckit::{ErrorKind, Transport};

const RING0_TAIL: usize = 256;
const RING1_TAIL: usize = 512;
const RING0: usize = 4096;

/// Connect on shared memory (whatever the environment says), bounded.
fn connect_shm(t: &TestNs, name: &str) -> NamedPipe {
    let c = ClientOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .transport(Transport::SharedMemory)
        .connect(name)
        .unwrap_or_else(|e| panic!("cannot connect to '{name}': {e}"));
    assert_eq!(c.transport(), Transport::SharedMemory);
    c
}

/// Publish a forged record header at ring 0's first position (nothing was
/// sent on it yet), as a producer does: all but the stamp, then the stamp,
/// then `tail` (the record's end).
fn publish_first_record(m: &Mapping, len: u32, flags: u8, tag: u8, total: u64) {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4] = flags;
    h[5] = tag;
    h[6..].copy_from_slice(&total.to_le_bytes()[..6]);
    m.write_at(RING0 + 4, &h).unwrap();
    // The stamp of position 0.
    m.atomic_u32(RING0).unwrap().store(1, Ordering::Release);
    let size = 16 + u64::from(len).next_multiple_of(16);
    m.atomic_u64(RING0_TAIL)
        .unwrap()
        .store(size.min(1 << 20), Ordering::Release);
}

/// One way to corrupt ring 0 (what the server reads), given the mapping.
type Corruption = fn(&Mapping);

const CORRUPTIONS: [(&str, Corruption); 4] = [
    ("a write index far past the ring", |m| {
        m.atomic_u64(RING0_TAIL)
            .unwrap()
            .store(1 << 40, Ordering::SeqCst);
    }),
    (
        "a write index past a record that was never published",
        |m| {
            m.atomic_u64(RING0_TAIL)
                .unwrap()
                .store(32, Ordering::SeqCst);
        },
    ),
    ("a record running past the ring's end", |m| {
        publish_first_record(m, 0xffff_fff0, 3, 1, 0xffff_fff0);
    }),
    ("a record with unknown flags", |m| {
        publish_first_record(m, 0, 0x40, 1, 0);
    }),
];

#[test]
fn garbage_written_into_the_servers_ring_closes_that_connection_and_the_server_keeps_serving() {
    for (what, corrupt) in CORRUPTIONS {
        let t = setup();
        let server = serve(&t, "victim", &["--echo"]);
        // The server is up and serves on shared memory.
        assert_eq!(connect_shm(&t, "victim").transact(b"up").unwrap(), b"up");
        wait_until(DEADLINE, "the server dropped the first client", || {
            support::rings(server.pid()).is_empty()
        });

        let mut c = connect_shm(&t, "victim");
        let ring = support::ring_of(server.pid());
        corrupt(&ring);
        // The server's reader fails with Decode and closes the connection:
        // this side sees the end, within the bounded wait.
        let e = c.recv_timeout(DEADLINE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeerGone, "{what}: {e}");
        wait_until(DEADLINE, "the server reported the corrupt ring", || {
            server.stderr_so_far().contains("shared-memory protocol")
        });
        let errs = server.stderr_so_far();
        assert!(errs.contains("victim"), "{what}: {errs}");
        assert!(errs.contains("closed"), "{what}: {errs}");
        assert!(!errs.contains("panicked"), "{what}: {errs}");
        // The same server process serves the next client correctly.
        let mut next = connect_shm(&t, "victim");
        let big = pattern(200_000, 3);
        assert_eq!(next.transact(&big).unwrap(), big, "{what}");
        assert_eq!(next.transact(b"fine").unwrap(), b"fine", "{what}");
    }
}

#[test]
fn garbage_in_the_ring_this_process_reads_is_decode_naming_the_pipe_then_peer_gone() {
    let t = setup();
    let server = serve(&t, "victim2", &["--echo"]);
    let mut c = connect_shm(&t, "victim2");
    assert_eq!(c.transact(b"up").unwrap(), b"up");
    let ring = support::ring_of(server.pid());
    // Ring 1 (server → client): a write index far past the ring.
    ring.atomic_u64(RING1_TAIL)
        .unwrap()
        .store(u64::MAX - 7, Ordering::SeqCst);
    let t0 = Instant::now();
    let e = c.recv_timeout(DEADLINE).unwrap_err();
    assert!(
        t0.elapsed() < DEADLINE,
        "the failure took the whole deadline"
    );
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert_eq!(e.name(), Some("victim2"), "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    // The connection is closed for good, and the server noticed.
    assert_eq!(c.send(b"more").unwrap_err().kind(), ErrorKind::PeerGone);
    drop(c);
    let mut next = connect_shm(&t, "victim2");
    assert_eq!(next.transact(b"again").unwrap(), b"again");
    assert!(!server.stderr_so_far().contains("panicked"));
}

#[test]
fn a_client_process_killed_while_the_server_waits_on_the_ring_is_peer_gone() {
    let t = setup();
    let server = ipckit::pipe::ServerOptions::new()
        .namespace(&t.ns)
        .transport(Transport::SharedMemory)
        .create("k")
        .unwrap();
    let mut client = t.start("pipe-client", &["k", "hold", "--timeout", "20s"]);
    let mut conn = server.accept_timeout(DEADLINE).unwrap();
    assert_eq!(conn.transport(), Transport::SharedMemory);
    assert_eq!(conn.recv_timeout(DEADLINE).unwrap(), b"hold");
    // The client now waits for a reply that never comes; the server waits
    // for a next message. Kill the client.
    let waiting = std::thread::spawn(move || conn.recv_timeout(DEADLINE));
    client.kill();
    let e = waiting.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerGone, "{e}");
}
