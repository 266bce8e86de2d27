//! `ipckit pipe serve|send`.

use std::io::{Read, Write};
use std::time::Instant;

use ipckit::pipe::{ClientOptions, NamedPipe, PipeMode, ServerOptions};

use crate::cli::{ModeArg, PipeCommand, PipeServeArgs};

pub fn run(cmd: PipeCommand) -> Result<(), ipckit::Error> {
    match cmd {
        PipeCommand::Serve(args) => serve(args),
        PipeCommand::Send {
            name,
            message,
            timeout,
            json,
            #[cfg(unix)]
            transport,
            #[cfg(unix)]
            wait,
        } => {
            // `--timeout` bounds the whole command: connecting, then the reply.
            crate::util::fail_if_stale(&name, "pipe server")?;
            let deadline = Instant::now() + timeout;
            #[cfg(unix)]
            let opts = ClientOptions::new()
                .allow_server_uids(crate::util::allowed_uids())
                .timeout(timeout)
                .transport(transport.into())
                .wait_strategy(wait.into());
            // On Windows the pipe is the system's named pipe: no transport
            // choice, and the server must be the same user.
            #[cfg(windows)]
            let opts = ClientOptions::new().timeout(timeout);
            let mut pipe = opts.connect(&name)?;
            let t = Instant::now();
            pipe.send(message.as_bytes())?;
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = pipe.recv_timeout(left).map_err(|e| {
                if e.kind() == ipckit::ErrorKind::Timeout {
                    ipckit::Error::new(
                        ipckit::ErrorKind::Timeout,
                        format!("no reply within --timeout {timeout:?}; is the server reading its pipe?"),
                    )
                    .with_name(&name)
                } else {
                    e
                }
            })?;
            let rtt = t.elapsed();
            let text = String::from_utf8_lossy(&reply);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "reply": text,
                        "rtt_ns": crate::util::nanos(rtt),
                        "transport": pipe_transport(&pipe),
                    })
                );
            } else {
                println!("{text}");
            }
            Ok(())
        }
    }
}

/// How the CLI names a transport (`shm` or `socket`).
#[cfg(unix)]
pub fn transport_name(t: ipckit::Transport) -> &'static str {
    match t {
        ipckit::Transport::SharedMemory => "shm",
        _ => "socket",
    }
}

/// How the CLI names a transport on Windows: always the system's named
/// pipe (`pipe`, as `pipe send --json` says).
#[cfg(windows)]
pub fn transport_name(_t: ipckit::Transport) -> &'static str {
    "pipe"
}

/// How `pipe send --json` names the pipe's transport.
#[cfg(unix)]
pub(super) fn pipe_transport(pipe: &NamedPipe) -> &'static str {
    transport_name(pipe.transport())
}

/// On Windows a pipe is always the system's named pipe (`pipe`).
#[cfg(windows)]
pub(super) fn pipe_transport(_pipe: &NamedPipe) -> &'static str {
    "pipe"
}

fn serve(args: PipeServeArgs) -> Result<(), ipckit::Error> {
    let mut opts = ServerOptions::new();
    #[cfg(unix)]
    {
        opts = opts
            .transport(args.transport.into())
            .wait_strategy(args.wait.into());
    }
    opts = opts.mode(match args.mode {
        ModeArg::Message => PipeMode::Message,
        ModeArg::Byte => PipeMode::Byte,
    });
    if let Some(n) = args.max_instances {
        opts = opts.max_instances(n);
    }
    if let Some(n) = args.max_message {
        opts = opts.max_message_size(n);
    }
    #[cfg(unix)]
    if let Some(a) = &args.tcp {
        opts = opts.tcp(a.clone());
    }
    opts = opts.limits(crate::util::limits());
    // Before the record exists: a stop signal from then on removes it.
    crate::util::catch_stop_signals()?;
    let server = opts.create(&args.name)?;
    #[cfg(unix)]
    match server.tcp_addr() {
        Some(a) => eprintln!("serving pipe '{}' (and tcp://{a})", args.name),
        None => eprintln!("serving pipe '{}'", args.name),
    }
    #[cfg(windows)]
    eprintln!("serving pipe '{}' ({})", args.name, server.os_name());
    // Ctrl-C or SIGTERM ends the loop, so the server is dropped and its
    // record removed; so do `--count` clients served and `--timeout`.
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut clients = Vec::new();
    while !crate::util::stop_requested() && args.count.is_none_or(|n| clients.len() < n) {
        let wait = match deadline {
            Some(d) if Instant::now() >= d => {
                if let Some(n) = args.count {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Timeout,
                        format!(
                            "{} of {n} clients came within --timeout {:?}",
                            clients.len(),
                            args.timeout.unwrap_or_default()
                        ),
                    )
                    .with_name(&args.name));
                }
                break;
            }
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(crate::util::STOP_POLL),
            None => crate::util::STOP_POLL,
        };
        let conn = match server.accept_timeout(wait) {
            Ok(c) => c,
            Err(e) if e.kind() == ipckit::ErrorKind::Timeout => continue,
            Err(e) => return Err(e),
        };
        let echo = args.echo;
        let mode = args.mode;
        clients.push(std::thread::spawn(move || {
            let r = match mode {
                ModeArg::Message => serve_messages(conn, echo),
                ModeArg::Byte => serve_bytes(conn, echo),
            };
            if let Err(e) = r {
                if e.kind() != ipckit::ErrorKind::PeerGone {
                    eprintln!("ipckit: client dropped: {e}");
                }
            }
        }));
    }
    // With --count, the last clients are served to their end.
    if args.count.is_some() {
        for c in clients {
            let _ = c.join();
        }
    }
    Ok(())
}

fn serve_messages(mut conn: NamedPipe, echo: bool) -> Result<(), ipckit::Error> {
    loop {
        let msg = match conn.recv() {
            Ok(m) => m,
            // The library discarded the oversized message and the stream is
            // still in step: report it and keep serving this client.
            Err(e) if e.kind() == ipckit::ErrorKind::TooLarge => {
                eprintln!("ipckit: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        if echo {
            conn.send(&msg)?;
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&msg);
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            drop(out);
            // Acknowledge with an empty reply so `pipe send` (a transact)
            // returns.
            conn.send(b"")?;
        }
    }
}

fn serve_bytes(mut conn: NamedPipe, echo: bool) -> Result<(), ipckit::Error> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = conn.read(&mut buf).map_err(|e| {
            ipckit::Error::new(ipckit::ErrorKind::PeerGone, "read failed").with_source(e)
        })?;
        if n == 0 {
            return Ok(());
        }
        let r = if echo {
            conn.write_all(&buf[..n])
        } else {
            // Flush each chunk: stdout is line-buffered, and a stream's tail
            // after its last newline must not wait for more input.
            let mut out = std::io::stdout().lock();
            out.write_all(&buf[..n]).and_then(|()| out.flush())
        };
        r.map_err(|e| {
            ipckit::Error::new(ipckit::ErrorKind::PeerGone, "write failed").with_source(e)
        })?;
    }
}
