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
    /// List the endpoints in the namespace.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A tour: real processes talking through each mechanism, with latencies.
    Demo,
    /// Measure ipckit's paths beside raw floors (pipe, Unix socket, TCP, memcpy).
    Bench {
        /// Fewer samples: finishes in seconds.
        #[arg(long)]
        quick: bool,
        /// Print {"results":[...]} instead of a table.
        #[arg(long)]
        json: bool,
        /// Only cases whose name contains TEXT.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
    },
    /// Helpers the demo starts as child processes.
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
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
    /// The peer process of a bench floor (pipe-echo IN,OUT | tcp-echo ADDR).
    BenchPeer { kind: String, arg: String },
    /// The client side of the demo's pipe step.
    DemoPipeClient {
        name: String,
        raw: PathBuf,
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
    },
}
