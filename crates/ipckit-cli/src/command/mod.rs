//! One file per subcommand; `run` dispatches.

mod call;
mod demo;
mod internal;
mod ls;
mod pipe;
pub mod service;
mod service_internal;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), ipckit::Error> {
    match cli.command {
        Command::Pipe(c) => pipe::run(c),
        Command::Ls { json } => ls::run(json),
        Command::Service(c) => service::run(c),
        Command::Call(a) => call::run(a),
        Command::Demo => demo::run(),
        Command::Internal(c) => internal::run(c),
        Command::ServiceInternal(c) => service_internal::run(c),
    }
}
