//! One file per subcommand; `run` dispatches.
//!
//! On Windows only the commands whose library parts exist there are built:
//! pipe, slot (no groups), msg, map, clip, dde, shm, mutex, event, sem,
//! service, call, ls and demo. The others (bench; their modules) are
//! `#[cfg(unix)]`.

#[cfg(unix)]
mod bench;
mod call;
pub mod clip;
pub mod dde;
mod demo;
mod ls;
mod map;
mod msg;
mod pipe;
mod service;
mod shm;
mod slot;
mod sync;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), ipckit::Error> {
    match cli.command {
        Command::Pipe(c) => pipe::run(c),
        Command::Slot(c) => slot::run(c),
        Command::Msg(c) => msg::run(c),
        Command::Ls {
            json,
            prune,
            unused,
            remote: false,
            ..
        } => ls::run(json, prune, unused),
        Command::Ls {
            json,
            watch,
            timeout,
            ..
        } => ls::run_remote(json, watch, timeout),
        Command::Shm(c) => shm::run(c),
        Command::Mutex(c) => sync::mutex(c),
        Command::Event(c) => sync::event(c),
        Command::Sem(c) => sync::sem(c),
        Command::Service(c) => service::run(c),
        Command::Call(a) => call::run(a),
        Command::Demo => demo::run(),
        #[cfg(unix)]
        Command::Bench {
            quick,
            json,
            filter,
            sweep,
            plot,
        } => bench::run(quick, json, filter, sweep, plot),
        Command::Map(c) => map::run(c),
        Command::Clip(c) => clip::run(c),
        Command::Dde(c) => dde::run(c),
    }
}
