//! One file per subcommand; `run` dispatches.

mod bench;
mod call;
mod demo;
mod internal;
mod ls;
mod map;
mod msg;
mod pipe;
pub mod service;
mod service_internal;
mod shm_internal;
mod slot;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), ipckit::Error> {
    match cli.command {
        Command::Pipe(c) => pipe::run(c),
        Command::Slot(c) => slot::run(c),
        Command::Msg(c) => msg::run(c),
        Command::Ls { json } => ls::run(json),
        Command::Service(c) => service::run(c),
        Command::Call(a) => call::run(a),
        Command::Demo => demo::run(),
        Command::Bench {
            quick,
            json,
            filter,
        } => bench::run(quick, json, filter),
        Command::Internal(c) => internal::run(c),
        Command::ServiceInternal(c) => service_internal::run(c),
        Command::Map(c) => map::run(c),
        Command::ShmInternal(c) => shm_internal::run(c),
    }
}
