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
    /// Services (RPC): run a compute server.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Call a method of a service and print its JSON result.
    Call(CallArgs),
    /// A tour: real processes talking through each mechanism, with latencies.
    Demo,
    /// Helpers the demo starts as child processes.
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
    /// Helpers for the service tests, demo and measurements.
    #[command(subcommand, hide = true)]
    ServiceInternal(ServiceInternalCommand),
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Serve the demo service until killed: echo, add, compare, sleep, panic.
    Demo {
        /// Service name.
        name: String,
        /// Also listen on TCP at HOST:PORT (port 0 picks one; printed as tcp://...).
        #[arg(long, value_name = "ADDR")]
        tcp: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Service name, or tcp://HOST:PORT.
    pub name: String,
    /// Method name (ipckit.describe lists them).
    pub method: String,
    /// The argument, as JSON.
    #[arg(value_name = "JSON", default_value = "null")]
    pub arg: String,
    /// How long to wait for the server to appear, and then for the reply.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print {"result": ..., "rtt_us": ...} instead of the bare result.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ServiceInternalCommand {
    /// Make CALLS `add` calls with distinct arguments from THREADS threads
    /// over one connection, checking every answer.
    Load {
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
    },
    /// The client side of the demo's service step.
    DemoClient {
        name: String,
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
    },
    /// Echo bytes on a raw Unix socket and a raw TCP socket (a baseline);
    /// prints tcp://ADDR.
    RawPong { unix: PathBuf },
    /// Measure p50 round trips: service call vs raw ping-pong, local and TCP.
    Bench {
        #[arg(long, default_value_t = 20000)]
        rounds: usize,
    },
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
