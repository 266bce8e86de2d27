//! `ipckit`: the command-line face of the ipckit library.

mod cli;
mod command;
mod util;

use clap::Parser as _;

fn main() {
    let cli = cli::Cli::parse();
    if let Some(ns) = &cli.namespace {
        // Children started by commands (demo) inherit it too.
        std::env::set_var(ipckit::name::NAMESPACE_ENV, ns);
    }
    #[cfg(unix)]
    util::set_allowed_uids(cli.allow_uid.clone());
    #[cfg(feature = "zenoh")]
    util::set_fabric_endpoints(cli.listen.clone(), cli.connect.clone(), cli.no_scouting);
    if let Err(e) = command::run(cli) {
        eprintln!("ipckit: {e}");
        std::process::exit(1);
    }
}
