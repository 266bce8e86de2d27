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

    /// Also let this uid connect to servers this command runs, and trust
    /// servers of this uid when connecting (repeatable, or comma
    /// separated). By default both sides accept only your own uid (and a
    /// server of the namespace's owner).
    // Windows objects admit only their creating user (no uid list there).
    #[cfg(unix)]
    #[arg(
        long = "allow-uid",
        global = true,
        env = "IPCKIT_ALLOW_UIDS",
        value_name = "UID",
        value_delimiter = ','
    )]
    pub allow_uid: Vec<u32>,

    /// Fabric (Zenoh) endpoint to listen on for `zenoh://` names, e.g.
    /// `tcp/0.0.0.0:7447` (repeatable).
    #[cfg(feature = "zenoh")]
    #[arg(
        long,
        global = true,
        env = "IPCKIT_ZENOH_LISTEN",
        value_name = "ENDPOINT",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// Fabric (Zenoh) peer or router to connect to for `zenoh://` names,
    /// e.g. `tcp/10.0.0.1:7447` (repeatable). The session's other settings
    /// come from the Zenoh configuration file in IPCKIT_ZENOH_CONFIG.
    #[cfg(feature = "zenoh")]
    #[arg(
        long,
        global = true,
        env = "IPCKIT_ZENOH_CONNECT",
        value_name = "ENDPOINT",
        value_delimiter = ','
    )]
    pub connect: Vec<String>,

    /// Do not look for fabric peers by UDP multicast scouting (Zenoh's
    /// default is to); find them only through --connect (or the Zenoh
    /// configuration file).
    #[cfg(feature = "zenoh")]
    #[arg(long, global = true, env = "IPCKIT_ZENOH_NO_SCOUTING")]
    pub no_scouting: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Named pipes: serve and send.
    #[command(subcommand)]
    Pipe(PipeCommand),
    #[cfg_attr(unix, doc = "Mailslots: read, send, broadcast groups, UDP.")]
    #[cfg_attr(windows, doc = "Mailslots: read, send, UDP.")]
    #[command(subcommand)]
    Slot(SlotCommand),
    /// Window-style messages: listen, send, post, register ids, broadcast.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// Shared maps (named text/bytes with change notification).
    #[command(subcommand)]
    Map(MapCommand),
    /// The clipboard board: set, get, formats, watch, register formats.
    #[command(subcommand)]
    Clip(crate::command::clip::ClipCommand),
    /// DDE links: serve topics and items, request, poke, execute, advise.
    #[command(subcommand)]
    Dde(crate::command::dde::DdeCommand),
    /// List everything in the namespace, with owner and state.
    ///
    /// Endpoints (pipes, services, mailslots, group members, message
    /// receivers, DDE services), named shared memory (mappings, maps,
    /// mutexes, events, semaphores) and clipboard boards.
    #[cfg_attr(
        windows,
        doc = "",
        doc = "On Windows: the endpoints that keep records (services, message receivers, DDE services) and the boards; named shared memory vanishes with its last handle there and is not listed."
    )]
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Remove what is stale: endpoint records whose owner died (with
        /// their sockets), and the shared memory of a namespace directory
        /// that was deleted. Never touches a live endpoint or an object
        /// some process has open. Prints what it removed.
        #[arg(long)]
        prune: bool,
        /// With --prune: also remove shared memory (maps, mappings, sync
        /// objects, boards) in the namespace that no process has open.
        /// Their content is lost: a map set by `map set` and not read yet
        /// is such an object.
        #[arg(long, requires = "prune")]
        unused: bool,
        /// List the live endpoints of the fabric instead (every machine of
        /// the Zenoh fabric, namespace IPCKIT_ZENOH_NAMESPACE): kind, name,
        /// owner's Zenoh id. Needs the `zenoh` feature.
        #[arg(long, conflicts_with = "prune")]
        remote: bool,
        /// With --remote: print each appearance (`+`) and disappearance
        /// (`-`) as it comes, starting with those live now, until Ctrl-C
        /// or --timeout.
        #[arg(long, requires = "remote")]
        watch: bool,
        /// With --remote: how long to gather the fabric's answers (default
        /// 2s); with --watch: how long to watch (default: until Ctrl-C).
        #[arg(long, requires = "remote", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    #[cfg_attr(
        unix,
        doc = "Named shared memory (plain mappings): create, write, read, info, rm."
    )]
    #[cfg_attr(
        windows,
        doc = "Named shared memory (plain mappings): create, write, read, rm."
    )]
    #[command(subcommand)]
    Shm(ShmCommand),
    /// Named mutexes: create, lock (and hold), run a command holding the lock, rm.
    #[command(subcommand)]
    Mutex(MutexCommand),
    /// Named events: create, set, reset, wait, rm.
    #[command(subcommand)]
    Event(EventCommand),
    /// Named semaphores: create, release, wait, rm.
    #[command(subcommand)]
    Sem(SemCommand),
    /// Services (RPC): run a compute server.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Call a method of a service and print its JSON result (or, with
    /// --loan-file, a loan method's bytes).
    Call(CallArgs),
    /// A tour: real processes talking through each mechanism, with latencies.
    Demo,
    #[cfg(unix)]
    /// Measure ipckit's paths beside raw floors (pipe, Unix socket, TCP, memcpy);
    /// needs the peer program `ipckit-peer` beside this one or in IPCKIT_PEER
    /// (cargo build --release -p ipckit-peers).
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
        /// Measure how cost grows instead: latency for payloads of 64 B
        /// to 64 MiB (powers of 4) per transport beside the floors, and
        /// throughput with 1, 4, 16 and 64 concurrent clients.
        #[arg(long)]
        sweep: bool,
        /// Run the sweep and draw it into FILE (SVG).
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Serve the demo service until killed: echo, add, compare, sleep,
    /// panic, and the loan methods sum and reverse.
    Demo {
        /// Service name.
        name: String,
        #[cfg_attr(
            unix,
            doc = "Also listen on TCP at HOST:PORT (port 0 picks one; printed as tcp://...)."
        )]
        #[cfg_attr(
            windows,
            doc = "Also listen on TCP at HOST:PORT: Linux only (on Windows a service is served by name only)."
        )]
        #[arg(long, value_name = "ADDR")]
        tcp: Option<String>,
        /// Offer shared memory to local clients (auto) or not (socket).
        #[cfg_attr(
            windows,
            doc = "On Windows there is none to offer: both serve the pipe."
        )]
        #[arg(long, value_enum, default_value = "auto")]
        transport: TransportArg,
        /// How lane threads wait for calls: spin briefly then park
        /// (spin-then-park, alias auto), spin, or park at once.
        #[cfg_attr(windows, doc = "No effect on Windows (no lanes there).")]
        #[arg(long, value_enum, default_value_t = WaitArg::SpinThenPark)]
        wait: WaitArg,
        /// Exit after answering this many calls.
        #[arg(long)]
        count: Option<u64>,
        /// Stop serving (cleanly) after this long; a failure if --count
        /// calls had not come.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Also publish it on the fabric under the same name (callers
        /// anywhere use `zenoh://NAME`); a `zenoh://NAME` name publishes
        /// it on the fabric only. Needs the `zenoh` feature.
        #[cfg_attr(windows, doc = "Linux only (the fabric is not built on Windows).")]
        #[arg(long)]
        fabric: bool,
    },
}

#[derive(Args, Debug)]
pub struct CallArgs {
    #[cfg_attr(
        unix,
        doc = "Service name, tcp://HOST:PORT, or zenoh://NAME (a service on the fabric, found by name on any machine; needs the `zenoh` feature)."
    )]
    #[cfg_attr(
        windows,
        doc = "Service name (tcp:// and zenoh:// names are Linux only)."
    )]
    pub name: String,
    /// Method name (ipckit.describe lists them).
    pub method: String,
    /// The argument, as JSON.
    #[arg(value_name = "JSON", default_value = "null")]
    pub arg: String,
    /// How long to wait for the server to appear, and then for the reply.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print {"result": ..., "rtt_ns": ..., "transport": ...} instead of the bare result.
    #[arg(long)]
    pub json: bool,
    /// Use shared memory when the server offers it (auto) or not (socket).
    #[cfg_attr(windows, doc = "On Windows no server offers it: both use the pipe.")]
    #[arg(long, value_enum, default_value = "auto")]
    pub transport: TransportArg,
    /// Call a loan method (`sum`, `reverse` of `service demo`) with the
    /// bytes of FILE (`-`: stdin) instead of a JSON argument; the reply's
    /// bytes go to stdout (or --out), or into --json as hex.
    #[arg(long, value_name = "FILE", conflicts_with = "arg")]
    pub loan_file: Option<PathBuf>,
    /// With --loan-file: write the reply's bytes to FILE.
    #[arg(long, value_name = "FILE", requires = "loan_file")]
    pub out: Option<PathBuf>,
    /// Call nothing: print the JSON Schemas METHOD's server published for
    /// its argument and result, as {"method": ..., "request": <schema>,
    /// "response": <schema>} (from ipckit.describe; the server registered
    /// METHOD with handler_with_schema).
    #[arg(long, conflicts_with_all = ["arg", "loan_file"])]
    pub schema: bool,
}

#[derive(Subcommand, Debug)]
pub enum ShmCommand {
    /// Create the mapping NAME of --size bytes (zeroed); fails if a live
    /// process has one of that name open.
    Create {
        /// Mapping name.
        name: String,
        /// Usable size in bytes.
        #[arg(long, value_name = "BYTES")]
        size: u64,
        /// Print {"name","kind","size","os_name",...} after creating it
        /// (on Windows: {"name","size","os_name"}).
        #[arg(long)]
        json: bool,
    },
    /// Write bytes (from stdin, or --file) into NAME at --offset.
    Write {
        /// Mapping name.
        name: String,
        /// Where the bytes go (from the start of the mapping's data).
        #[arg(long, default_value_t = 0, value_name = "BYTES")]
        offset: u64,
        /// Read the bytes from FILE instead of stdin.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Create the mapping with this size if it does not exist.
        #[arg(long, value_name = "BYTES")]
        create_size: Option<u64>,
    },
    /// Copy bytes of NAME to stdout (or --out).
    Read {
        /// Mapping name.
        name: String,
        /// Where to start.
        #[arg(long, default_value_t = 0, value_name = "BYTES")]
        offset: u64,
        /// How many bytes (default: to the end).
        #[arg(long, value_name = "BYTES")]
        len: Option<u64>,
        /// Write them to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print what NAME is: kind, size, owner, who has it open.
    #[cfg(unix)]
    Info {
        /// Mapping name (any kind of named shared memory).
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the name NAME (processes that have it open keep the memory).
    Rm {
        /// Name of any kind of named shared memory.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MutexCommand {
    /// Create the mutex NAME (unlocked) if it does not exist.
    Create {
        /// Mutex name.
        name: String,
    },
    /// Lock NAME, print `locked` (or `locked abandoned`), and hold it
    /// until Ctrl-C/SIGTERM or --hold has passed; then release it.
    Lock {
        /// Mutex name (created if absent).
        name: String,
        /// Give up (non-zero status) if the lock is not taken within this time.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Release after holding it this long (default: until stopped).
        #[arg(long, value_parser = parse_duration)]
        hold: Option<Duration>,
    },
    /// Run CMD holding the lock NAME; exit with its status.
    Run {
        /// Mutex name (created if absent).
        name: String,
        /// Give up (non-zero status, CMD not run) if the lock is not taken
        /// within this time.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Remove the mutex NAME.
    Rm {
        /// Mutex name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EventCommand {
    /// Create the event NAME if it does not exist.
    Create {
        /// Event name.
        name: String,
        /// Stay set until reset (default: auto-reset, one waiter per set).
        #[arg(long)]
        manual_reset: bool,
        /// Start set.
        #[arg(long)]
        set: bool,
    },
    /// Set NAME (wakes its waiters).
    Set {
        /// Event name.
        name: String,
    },
    /// Reset NAME.
    Reset {
        /// Event name.
        name: String,
    },
    /// Wait until NAME is set.
    Wait {
        /// Event name.
        name: String,
        /// Give up (non-zero status) after this long.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Remove the event NAME.
    Rm {
        /// Event name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SemCommand {
    /// Create the semaphore NAME if it does not exist.
    Create {
        /// Semaphore name.
        name: String,
        /// Starting count.
        #[arg(long, default_value_t = 0)]
        initial: u32,
        /// Largest count.
        #[arg(long, default_value_t = u32::MAX)]
        max: u32,
    },
    /// Add --count to NAME's count; print the count before.
    Release {
        /// Semaphore name.
        name: String,
        /// How much to add.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Take one from NAME's count, waiting while it is 0.
    Wait {
        /// Semaphore name.
        name: String,
        /// Give up (non-zero status) after this long.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Remove the semaphore NAME.
    Rm {
        /// Semaphore name.
        name: String,
    },
}

/// `--transport` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportArg {
    /// Shared memory when both sides allow it, else the socket.
    Auto,
    /// Always the socket.
    Socket,
}

impl TransportArg {
    pub fn get(self) -> ipckit::Transport {
        match self {
            TransportArg::Auto => ipckit::Transport::Auto,
            TransportArg::Socket => ipckit::Transport::Socket,
        }
    }
}

/// `--wait` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitArg {
    /// Spin briefly, then park (the default).
    #[value(alias = "auto")]
    SpinThenPark,
    /// Spin until the peer answers (lowest latency, a core stays busy).
    Spin,
    /// Park at once (sleep in the kernel).
    Park,
}

impl WaitArg {
    pub fn get(self) -> ipckit::WaitStrategy {
        match self {
            WaitArg::SpinThenPark => ipckit::WaitStrategy::default(),
            WaitArg::Spin => ipckit::WaitStrategy::Spin,
            WaitArg::Park => ipckit::WaitStrategy::Park,
        }
    }
}

impl From<WaitArg> for ipckit::WaitStrategy {
    fn from(w: WaitArg) -> Self {
        w.get()
    }
}

impl From<TransportArg> for ipckit::Transport {
    fn from(t: TransportArg) -> Self {
        t.get()
    }
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
        /// How long to wait for the map's lock (a writer stuck inside a
        /// write holds it).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
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
    #[cfg_attr(
        windows,
        doc = "",
        doc = "On Windows a map lives only while a process has it open: a watcher of an absent map creates it (empty) and keeps it alive; it prints `watching map 'NAME'` on stderr once it holds it."
    )]
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
pub enum PipeCommand {
    /// Serve a named pipe until killed.
    Serve(PipeServeArgs),
    /// Connect, send one message, print the reply.
    Send {
        #[cfg_attr(unix, doc = "Pipe name, or tcp://HOST:PORT.")]
        #[cfg_attr(windows, doc = "Pipe name.")]
        name: String,
        /// The message (sent as UTF-8 bytes).
        message: String,
        /// How long the whole command may take: waiting for the server or a
        /// free instance, then for the reply.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print {"reply": ..., "rtt_ns": ..., "transport": ...} instead of the bare reply.
        #[arg(long)]
        json: bool,
        /// `auto`: shared memory when the server offers it; `socket`: opt out.
        #[cfg(unix)]
        #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
        transport: TransportArg,
        /// How to wait for the reply on shared memory.
        #[cfg(unix)]
        #[arg(long, value_enum, default_value_t = WaitArg::SpinThenPark)]
        wait: WaitArg,
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
    #[cfg(unix)]
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
    /// `auto`: offer shared memory to local message-mode clients; `socket`: opt out.
    #[cfg(unix)]
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
    /// How connections wait for their client on shared memory.
    #[cfg(unix)]
    #[arg(long, value_enum, default_value_t = WaitArg::SpinThenPark)]
    pub wait: WaitArg,
    /// Exit after serving this many clients (each to its end).
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop serving after this long (a failure if --count clients had not come).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    Message,
    Byte,
}

#[derive(Subcommand, Debug)]
pub enum SlotCommand {
    /// Create a mailslot and print each message on one line.
    Read(SlotReadArgs),
    /// Write one message to a mailslot (or, with --udp, one datagram).
    Send {
        /// Mailslot name.
        name: String,
        /// The message (sent as UTF-8 bytes).
        message: String,
        /// How long to wait for the mailslot to appear, then for room in a
        /// full queue.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Send a UDP datagram to HOST:PORT instead (lossy, at most 424 bytes).
        #[arg(long, value_name = "ADDR")]
        udp: Option<String>,
    },
    /// Join the broadcast group NAME and print each message on one line.
    #[cfg(unix)]
    GroupRead(SlotReadArgs),
    /// Write one message to every member of the group NAME on this machine.
    #[cfg(unix)]
    GroupSend {
        /// Group name.
        name: String,
        /// The message (sent as UTF-8 bytes).
        message: String,
        /// How long to wait for room in a full member queue.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Also send a UDP datagram to HOST:PORT (other machines; lossy).
        #[arg(long, value_name = "ADDR")]
        udp: Option<String>,
        /// Print {"delivered":..,"failed":[..],"stale_removed":..}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct SlotReadArgs {
    /// Mailslot (or group) name.
    pub name: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop reading after this long (a failure if --count messages had
    /// not come), as `pipe serve` and `msg listen` do.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Largest message in bytes (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub max_message_size: usize,
    /// Most messages queued unread.
    #[cfg(unix)]
    #[arg(long)]
    pub queue_bound: Option<usize>,
    /// Also receive UDP datagrams at HOST:PORT (prints `udp ADDR` on stderr).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<String>,
    /// Print {"data":..,"size":..} per message.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum MsgCommand {
    /// Register a receiver; print `id data` per message; reply with the data length.
    Listen {
        /// Receiver name.
        name: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Stop listening after this long (a failure if --count messages
        /// had not come).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print {"id":..,"data":..,"sender_pid":..,"posted":..} per message.
        #[arg(long)]
        json: bool,
    },
    /// Send a message, wait for the handler, print its result.
    Send {
        /// Receiver name.
        name: String,
        /// Message id (decimal or 0x hex).
        #[arg(value_parser = parse_id)]
        id: u32,
        /// The data (sent as UTF-8 bytes).
        data: String,
        /// How long the whole command may take: waiting for the receiver
        /// to appear, then for its reply.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print {"result":..,"reply":..,"rtt_ns":..}.
        #[arg(long)]
        json: bool,
    },
    /// Post a message: return once it is queued.
    Post {
        /// Receiver name.
        name: String,
        /// Message id (decimal or 0x hex).
        #[arg(value_parser = parse_id)]
        id: u32,
        /// The data (sent as UTF-8 bytes).
        data: String,
        /// How long to wait for the receiver to appear and take the message.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print the id registered for TEXT in this namespace.
    Register {
        /// The message text.
        text: String,
        /// Print {"text":..,"id":..}.
        #[arg(long)]
        json: bool,
    },
    /// Send a message to every receiver; print `name result` (or error) each.
    Broadcast {
        /// Message id (decimal or 0x hex).
        #[arg(value_parser = parse_id)]
        id: u32,
        /// The data (sent as UTF-8 bytes).
        data: String,
        /// Per-receiver timeout.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print a JSON array of {"name":..,"result":..} / {"name":..,"error":..}.
        #[arg(long)]
        json: bool,
        /// Also publish on the fabric: receivers of every machine listening
        /// as zenoh://NAME get it (as a posted message). Needs the `zenoh` feature.
        #[arg(long)]
        remote: bool,
    },
}

/// Parse a message id: decimal or `0x` hexadecimal.
fn parse_id(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("'{s}' is not a message id (decimal or 0x hex, up to 32 bits)"))
}
