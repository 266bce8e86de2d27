//! Command-line definitions (parsing only; the work is in `command/`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::util::parse_duration;

/// ipckit: named pipes, shared memory, services and more between processes.
#[derive(Parser, Debug)]
#[command(name = "ipckit", version, about)]
pub struct Cli {
    /// Namespace directory holding the named objects (default: per-user).
    #[arg(long, global = true, env = "IPCKIT_NAMESPACE", value_name = "DIR")]
    pub namespace: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Named pipes: serve and send.
    #[command(subcommand)]
    Pipe(PipeCommand),
    /// Shared maps (named text/bytes with change notification).
    #[command(subcommand)]
    Map(MapCommand),
    /// List the endpoints in the namespace.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A tour: real processes talking through each mechanism, with latencies.
    Demo,
    /// Helpers the demo starts as child processes.
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
    /// Shared-memory helpers for the demo, tests and measurements.
    #[command(subcommand, hide = true)]
    ShmInternal(ShmInternalCommand),
}

#[derive(Subcommand, Debug)]
pub enum MapCommand {
    /// Write TEXT into the shared map NAME (created if absent).
    Set {
        /// Map name.
        name: String,
        /// The new content.
        text: String,
        /// Largest content, used when creating the map.
        #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
        max_size: usize,
    },
    /// Print the content of the shared map NAME.
    Get {
        /// Map name.
        name: String,
        /// Print {"name", "content", "version", "size"} instead.
        #[arg(long)]
        json: bool,
    },
    /// Print each new content of NAME on its own line as it changes.
    Watch {
        /// Map name.
        name: String,
        /// Exit after this many changes.
        #[arg(long)]
        count: Option<u64>,
        /// Give up (non-zero status) if the changes do not come within this time.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print one JSON object per change (content, version, skipped).
        #[arg(long)]
        json: bool,
    },
    /// Remove the shared map NAME.
    Rm {
        /// Map name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ShmInternalCommand {
    /// Demo: wait for the watcher, then write COUNT timestamped contents.
    DemoWrite { name: String, count: u64 },
    /// Demo: open NAME, signal readiness, print COUNT changes with wake-up latency.
    DemoWatch { name: String, count: u64 },
    /// Hold the named mutex NAME, print "locked", then sleep until killed.
    HoldMutex { name: String },
    /// Measurements: lock cost and write->watch latency beside raw futexes.
    Bench {
        #[arg(long, default_value_t = 2000)]
        rounds: u64,
    },
    /// Measurement peer: echo map pings and raw futex pings (PREFIX/...).
    BenchEcho { prefix: String, rounds: u64 },
}

#[derive(Subcommand, Debug)]
pub enum PipeCommand {
    /// Serve a named pipe until killed.
    Serve(PipeServeArgs),
    /// Connect, send one message, print the reply.
    Send {
        /// Pipe name, or tcp://HOST:PORT.
        name: String,
        /// The message (sent as UTF-8 bytes).
        message: String,
        /// How long to wait for the server or a free instance.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print {"reply": ..., "rtt_us": ...} instead of the bare reply.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct PipeServeArgs {
    /// Pipe name.
    pub name: String,
    /// Send each message back unchanged (else print it on its own line).
    #[arg(long)]
    pub echo: bool,
    /// Message or byte mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Message)]
    pub mode: ModeArg,
    /// Most clients at once.
    #[arg(long)]
    pub max_instances: Option<usize>,
    /// Largest message in bytes.
    #[arg(long)]
    pub max_message: Option<usize>,
    /// Also listen on TCP at HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    Message,
    Byte,
}

#[derive(Subcommand, Debug)]
pub enum InternalCommand {
    /// Echo every byte received on a raw Unix socket at PATH (a baseline).
    RawEcho { path: PathBuf },
    /// The client side of the demo's pipe step.
    DemoPipeClient {
        name: String,
        raw: PathBuf,
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
    },
}
