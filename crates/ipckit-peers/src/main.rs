//! `ipckit-peer`: the other process of `ipckit bench`'s measurements, and a
//! few measurement tools of its own.
//!
//! `ipckit bench` starts this program for every case that needs a peer
//! which is not an ipckit command (the raw floors and the stream sink); it
//! looks for it beside its own executable, or where `IPCKIT_PEER` points.
//! Build it with `cargo build --release -p ipckit-peers`.
//!
//! The roles and their wire (one file each):
//! - [`floors`]: `raw-echo`, `pipe-echo`, `tcp-echo` (64-byte ping-pongs),
//!   `shm-spin`, `futex` (a shared word answered by busy-polling or futex),
//!   `handoff` (a shared block read in full, then a word answered).
//! - [`stream`]: `stream-sink` (counts one-way pipe messages).
//! - [`load`]: `service-load` (many checked `add` calls to a service),
//!   `service-sizes` (checked calls with small and big byte payloads).
//! - [`measure`]: `measure-shm`, `measure-msg` (latencies beside raw
//!   baselines, with their own peers `map-echo` and `msg-receiver`).

mod floors;
mod futex;
mod load;
mod measure;
mod stream;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The peer processes of `ipckit bench`, and measurement tools.
#[derive(Parser, Debug)]
#[command(name = "ipckit-peer", version, about)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Accept one connection on a Unix socket at PATH and echo every byte.
    RawEcho { path: PathBuf },
    /// Echo 64-byte blocks from the pipe inherited at IN_FD to OUT_FD.
    PipeEcho { in_fd: i32, out_fd: i32 },
    /// Listen on TCP ADDR (port 0 picks one), print the address, accept
    /// one connection and echo 64-byte blocks.
    TcpEcho { addr: String },
    /// Answer each odd value n of the u64 at offset 0 of the mapping
    /// inherited at FD with n + 1, busy-polling; exit on u64::MAX.
    ShmSpin { fd: i32 },
    /// The `floor/handoff-*` peer: on each odd value n of the u64 at offset
    /// 0 of the mapping inherited at FD, read every one of the LEN bytes at
    /// offset 4096, store their sum at offset 8 and answer n + 1
    /// (busy-polling); exit on u64::MAX.
    Handoff { fd: i32, len: usize },
    /// The same with the u32 at offset 0, parking on the futex between
    /// values; exit on u32::MAX.
    Futex { fd: i32 },
    /// Connect to pipe NAME, count its messages and answer each "?" with
    /// the count so far (u64 little-endian); exit when the pipe closes.
    StreamSink { name: String },
    /// Make CALLS `add` calls with arguments unique to (CLIENT, call) from
    /// THREADS threads over one connection to service NAME, checking every
    /// answer; print {"client": CLIENT, "ok": answered}.
    ServiceLoad {
        name: String,
        #[arg(long)]
        client: u64,
        #[arg(long, default_value_t = 1000)]
        calls: u64,
        #[arg(long, default_value_t = 4)]
        threads: u64,
        /// Send JSON bodies instead of postcard.
        #[arg(long)]
        json_bodies: bool,
        /// Once connected, print "ready" and wait for a line on stdin
        /// before calling; print the calling time too (`ipckit bench
        /// --sweep` starts many clients at once this way).
        #[arg(long)]
        wait_go: bool,
    },
    /// Call `echo`, `len` and `make` of service NAME with byte payloads of
    /// each of SIZES bytes (ROUNDS times), checking every answer (small
    /// and big payloads, both ways); print {"ok": calls}.
    ServiceSizes {
        name: String,
        #[arg(long, value_delimiter = ',', default_value = "64,16384,16385,1048576")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 2)]
        rounds: u64,
        /// Send JSON bodies instead of postcard.
        #[arg(long)]
        json_bodies: bool,
    },
    /// Measure a shared Mutex's uncontended lock cost beside a raw futex
    /// lock, and SharedMap write -> watch wake-up between two processes
    /// beside a raw futex ping.
    MeasureShm {
        #[arg(long, default_value_t = 2000)]
        rounds: u64,
    },
    /// The other process of measure-shm: echo the map PREFIX/ping into
    /// PREFIX/pong, then raw futex pings, ROUNDS times each.
    MapEcho { prefix: String, rounds: u64 },
    /// Measure window-message send round trips beside a raw Unix-socket
    /// ping-pong of the same 64 bytes, each against another process.
    MeasureMsg {
        #[arg(long, default_value_t = 5000)]
        rounds: usize,
    },
    /// The other process of measure-msg: a receiver NAME that replies with
    /// the data's length.
    MsgReceiver { name: String },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.role {
        Role::RawEcho { path } => floors::raw_echo(&path),
        Role::PipeEcho { in_fd, out_fd } => floors::pipe_echo(in_fd, out_fd),
        Role::TcpEcho { addr } => floors::tcp_echo(&addr),
        Role::ShmSpin { fd } => floors::shm_spin(fd),
        Role::Handoff { fd, len } => floors::handoff(fd, len),
        Role::Futex { fd } => floors::futex(fd),
        Role::StreamSink { name } => stream::sink(&name),
        Role::ServiceLoad {
            name,
            client,
            calls,
            threads,
            json_bodies,
            wait_go,
        } => load::run(&name, client, calls, threads, json_bodies, wait_go),
        Role::ServiceSizes {
            name,
            sizes,
            rounds,
            json_bodies,
        } => load::sizes(&name, &sizes, rounds, json_bodies),
        Role::MeasureShm { rounds } => measure::shm(rounds),
        Role::MapEcho { prefix, rounds } => measure::map_echo(&prefix, rounds),
        Role::MeasureMsg { rounds } => measure::msg(rounds),
        Role::MsgReceiver { name } => measure::msg_receiver(&name),
    };
    if let Err(e) = r {
        eprintln!("ipckit-peer: {e}");
        std::process::exit(1);
    }
}

/// An I/O failure as an ipckit error naming what was being done.
fn io(e: std::io::Error, what: &str) -> ipckit::Error {
    ipckit::Error::new(ipckit::ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}
