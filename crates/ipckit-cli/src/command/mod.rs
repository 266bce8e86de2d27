//! One file per subcommand; `run` dispatches.

mod bench;
mod demo;
mod internal;
mod ls;
mod pipe;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), ipckit::Error> {
    match cli.command {
        Command::Pipe(c) => pipe::run(c),
        Command::Ls { json } => ls::run(json),
        Command::Demo => demo::run(),
        Command::Bench {
            quick,
            json,
            filter,
        } => bench::run(quick, json, filter),
        Command::Internal(c) => internal::run(c),
    }
}
