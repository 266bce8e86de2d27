//! `ipckit`: the command-line face of the ipckit library.

mod cli;
mod command;
mod util;

use clap::Parser as _;

fn main() {
    quiet_on_closed_stdout();
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

/// A reader that went away (`ipckit ls | head -1`) makes `println!` panic
/// (Rust ignores SIGPIPE). End quietly instead, with the status a shell
/// gives a command SIGPIPE killed (128 + 13), as other Unix tools do.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        // EPIPE's text; on Windows ERROR_NO_DATA (232), "the pipe is being closed".
        let lower = msg.to_ascii_lowercase();
        if msg.starts_with("failed printing to stdout")
            && (lower.contains("broken pipe") || lower.contains("(os error 232)"))
        {
            std::process::exit(141);
        }
        default(info)
    }));
}
