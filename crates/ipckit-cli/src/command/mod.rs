//! One file per subcommand; `run` dispatches.

mod demo;
mod internal;
mod ls;
mod map;
mod pipe;
mod shm_internal;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), ipckit::Error> {
    match cli.command {
        Command::Pipe(c) => pipe::run(c),
        Command::Ls { json } => ls::run(json),
        Command::Demo => demo::run(),
        Command::Internal(c) => internal::run(c),
        Command::Map(c) => map::run(c),
        Command::ShmInternal(c) => shm_internal::run(c),
    }
}
