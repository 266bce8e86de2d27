//! One file per subcommand; `run` dispatches.
//!
//! On Windows only the commands whose library parts exist there are built:
//! pipe, slot (no groups), map, shm, mutex, event, sem. The others (and
//! their modules) are `#[cfg(unix)]`.

#[cfg(unix)]
mod bench;
#[cfg(unix)]
mod call;
#[cfg(unix)]
pub mod clip;
#[cfg(unix)]
pub mod dde;
#[cfg(unix)]
mod demo;
#[cfg(unix)]
mod ls;
mod map;
#[cfg(unix)]
mod msg;
mod pipe;
#[cfg(unix)]
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
        #[cfg(unix)]
        Command::Msg(c) => msg::run(c),
        #[cfg(unix)]
        Command::Ls {
            json,
            prune,
            unused,
            remote: false,
            ..
        } => ls::run(json, prune, unused),
        #[cfg(unix)]
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
        #[cfg(unix)]
        Command::Service(c) => service::run(c),
        #[cfg(unix)]
        Command::Call(a) => call::run(a),
        #[cfg(unix)]
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
        #[cfg(unix)]
        Command::Clip(c) => clip::run(c),
        #[cfg(unix)]
        Command::Dde(c) => dde::run(c),
    }
}
