//! Named-pipe message round trip and one-way rate, shared memory vs socket,
//! client and server on two threads of this process.
//!
//! `cargo run --release -p ipckit --example pipe_transport [ROUNDS]`

use std::time::{Duration, Instant};

use ipckit::pipe::{ClientOptions, ServerOptions};
use ipckit::{Namespace, Transport};

fn run(transport: Transport, rounds: usize) -> Result<(), ipckit::Error> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ns = Namespace::at(dir.path())?;
    let server = ServerOptions::new()
        .namespace(&ns)
        .transport(transport)
        .create("bench")?;
    let echo = std::thread::spawn(move || -> Result<(), ipckit::Error> {
        let mut conn = server.accept()?;
        // Phase 1: echo `rounds` messages. Phase 2: take `rounds` one-way
        // messages, then answer once.
        for _ in 0..rounds {
            let m = conn.recv()?;
            conn.send(&m)?;
        }
        for _ in 0..rounds {
            conn.recv()?;
        }
        conn.send(b"done")
    });
    let mut c = ClientOptions::new()
        .namespace(&ns)
        .timeout(Duration::from_secs(5))
        .transport(transport)
        .connect("bench")?;
    let msg = [7u8; 64];
    let mut rtt = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        c.transact(&msg)?;
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    let t = Instant::now();
    for _ in 0..rounds {
        c.send(&msg)?;
    }
    c.recv()?;
    let one_way = rounds as f64 / t.elapsed().as_secs_f64();
    echo.join().expect("echo thread")?;
    rtt.sort_unstable();
    let pct = |p: f64| rtt[((rtt.len() - 1) as f64 * p) as usize];
    println!(
        "{:<7} 64 B round trip p50 {:>7} ns  p99 {:>7} ns | one-way {:>10.0} msgs/s",
        if c.transport() == Transport::SharedMemory {
            "shm"
        } else {
            "socket"
        },
        pct(0.5),
        pct(0.99),
        one_way
    );
    Ok(())
}

fn main() -> Result<(), ipckit::Error> {
    let rounds = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    run(Transport::SharedMemory, rounds)?;
    run(Transport::Socket, rounds)?;
    Ok(())
}
