//! `ipckit slot read|send|group-read|group-send`: mailslots.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use ipckit::mailslot::{self, Mailslot, MailslotOptions, WriterOptions};

use super::demo;
use crate::cli::{SlotCommand, SlotReadArgs};
use crate::util::{percentile, us};

pub fn run(cmd: SlotCommand) -> Result<(), ipckit::Error> {
    match cmd {
        SlotCommand::Read(args) => read(&args, false),
        #[cfg(unix)]
        SlotCommand::GroupRead(args) => read(&args, true),
        SlotCommand::Send {
            name,
            message,
            timeout,
            udp,
        } => match udp {
            Some(addr) => mailslot::send_datagram(&addr, &name, message.as_bytes()),
            None => {
                #[cfg(unix)]
                let opts = WriterOptions::new()
                    .allow_server_uids(crate::util::allowed_uids())
                    .timeout(timeout);
                #[cfg(windows)]
                let opts = WriterOptions::new().timeout(timeout);
                // A writer started just before its reader waits for the
                // mailslot to appear, within --timeout (as `pipe send` does).
                crate::util::fail_if_stale(&name, "mailslot reader")?;
                let deadline = std::time::Instant::now() + timeout;
                let mut w = loop {
                    match opts.open(&name) {
                        Err(e)
                            if e.kind() == ipckit::ErrorKind::NotFound
                                && std::time::Instant::now() < deadline =>
                        {
                            std::thread::sleep(std::time::Duration::from_millis(20))
                        }
                        r => break r?,
                    }
                };
                w.send(message.as_bytes())
            }
        },
        #[cfg(unix)]
        SlotCommand::GroupSend {
            name,
            message,
            timeout,
            udp,
            json,
        } => {
            // `zenoh://GROUP`: also publish on the fabric, to the members
            // of every machine.
            let (name, fabric) = match crate::util::remote_name(&name) {
                Some(group) => (group.to_string(), true),
                None => (name, false),
            };
            if let Some(addr) = &udp {
                mailslot::send_datagram(addr, &name, message.as_bytes())?;
            }
            let writer = WriterOptions::new()
                .allow_server_uids(crate::util::allowed_uids())
                .timeout(timeout);
            let writer = with_fabric_writer(writer, fabric)?;
            let d = writer.send_to_group(&name, message.as_bytes())?;
            if json {
                let failed: Vec<String> = d.failed.iter().map(|e| e.to_string()).collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "delivered": d.delivered,
                        "failed": failed,
                        "stale_removed": d.stale_removed,
                        "udp": udp.is_some(),
                        "fabric": fabric,
                        "fabric_members": d.fabric_members,
                    })
                );
            } else if fabric {
                println!(
                    "delivered to {} member(s) here; published to {} member(s) on the fabric",
                    d.delivered, d.fabric_members
                );
            } else {
                println!("delivered to {} member(s)", d.delivered);
            }
            match d.failed.into_iter().next() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }
}

fn read(args: &SlotReadArgs, group: bool) -> Result<(), ipckit::Error> {
    let mut opts = MailslotOptions::new();
    #[cfg(unix)]
    {
        opts = opts.limits(crate::util::limits());
        if let Some(n) = args.queue_bound {
            opts = opts.queue_bound(n);
        }
    }
    opts = opts
        .max_message_size(args.max_message_size)
        .read_timeout(args.timeout);
    if let Some(a) = &args.udp {
        opts = opts.udp(a.clone());
    }
    // Before the record exists: a stop signal from then on removes it.
    crate::util::catch_stop_signals()?;
    #[cfg(unix)]
    let slot: Mailslot = if group {
        // `zenoh://GROUP`: also take the group's messages from the fabric.
        match crate::util::remote_name(&args.name) {
            Some(g) => {
                let slot = with_fabric_member(opts, true)?.join_group(g)?;
                eprintln!("joined group '{g}' here and on the fabric");
                slot
            }
            None => opts.join_group(&args.name)?,
        }
    } else {
        opts.create(&args.name)?
    };
    // No broadcast groups on Windows: `group` is always false there.
    #[cfg(windows)]
    let slot: Mailslot = {
        debug_assert!(!group);
        opts.create(&args.name)?
    };
    if let Some(a) = slot.udp_addr() {
        eprintln!("udp {a}");
    }
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut seen = 0usize;
    // Ctrl-C or SIGTERM ends the loop, so the mailslot is closed and its
    // record removed; so do `--count` messages and `--timeout`.
    while args.count.is_none_or(|k| seen < k) && !crate::util::stop_requested() {
        let wait = match deadline {
            Some(d) if Instant::now() >= d => {
                if let Some(k) = args.count {
                    return Err(ipckit::Error::new(
                        ipckit::ErrorKind::Timeout,
                        format!(
                            "{seen} of {k} messages came within --timeout {:?}",
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
        let msg = match slot.recv_timeout(wait) {
            Ok(m) => m,
            Err(e) if e.kind() == ipckit::ErrorKind::Timeout => continue,
            Err(e) => return Err(e),
        };
        seen += 1;
        let text = String::from_utf8_lossy(&msg);
        if args.json {
            println!("{}", serde_json::json!({ "data": text, "size": msg.len() }));
        } else {
            println!("{}", text.replace('\n', "\\n"));
        }
    }
    Ok(())
}

/// `opts` with the command's fabric session, if `on`.
#[cfg(unix)]
fn with_fabric_member(opts: MailslotOptions, on: bool) -> Result<MailslotOptions, ipckit::Error> {
    if !on {
        return Ok(opts);
    }
    #[cfg(feature = "zenoh")]
    return Ok(opts.fabric(&crate::util::fabric()?));
    #[cfg(not(feature = "zenoh"))]
    return Err(crate::util::no_fabric("a zenoh:// mailslot group"));
}

/// `w` with the command's fabric session, if `on`.
#[cfg(unix)]
fn with_fabric_writer(w: WriterOptions, on: bool) -> Result<WriterOptions, ipckit::Error> {
    if !on {
        return Ok(w);
    }
    #[cfg(feature = "zenoh")]
    return Ok(w.fabric(&crate::util::fabric()?));
    #[cfg(not(feature = "zenoh"))]
    return Err(crate::util::no_fabric("a zenoh:// mailslot group"));
}

/// The demo's mailslot step: a reader process, writer processes, and this
/// process writing 1 000 acknowledged messages.
pub fn demo_step(ns: &Path) -> Result<(), ipckit::Error> {
    println!("\n[mailslot] one reader process, three writer processes, then 1000 timed writes");
    const TIMED: usize = 1000;
    let total = 3 + TIMED;
    let count = total.to_string();
    let mut reader = demo::child(
        ns,
        &[
            "slot",
            "read",
            "demo/slot",
            "--count",
            &count,
            "--timeout",
            "20s",
        ],
    )?;
    reader.stdout(Stdio::piped());
    let mut reader = demo::spawn(reader)?;
    let nsp = ipckit::Namespace::at(ns)?;
    // On Windows a mailslot keeps no record: the writer's retries below
    // wait for it.
    #[cfg(unix)]
    demo::wait_live(&nsp, "demo/slot")?;
    // The record is live a moment before the reader listens: wait until a
    // writer really connects before starting the writer processes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut w = loop {
        match WriterOptions::new().namespace(&nsp).open("demo/slot") {
            Ok(w) => break w,
            Err(e) if e.kind() == ipckit::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e),
        }
    };
    for i in 1..=3 {
        let text = format!("hello from writer process {i}");
        demo::run_child(demo::child(ns, &["slot", "send", "demo/slot", &text])?)?;
    }
    let mut lat = Vec::with_capacity(TIMED);
    for i in 0..TIMED {
        let t = Instant::now();
        w.send(format!("timed {i}").as_bytes())?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let out = reader.stdout().expect("piped above");
    let mut lines = Vec::new();
    for line in BufReader::new(out).lines().take(total) {
        lines.push(line.unwrap_or_default());
    }
    for l in lines.iter().take(3) {
        println!("  reader printed: {l}");
    }
    let in_order = lines[3..]
        .iter()
        .enumerate()
        .all(|(i, l)| *l == format!("timed {i}"));
    lat.sort_unstable();
    println!(
        "  {} messages read, timed ones whole and in order: {in_order}; acknowledged write p50 {} p99 {}",
        lines.len(),
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0))
    );
    reader.wait(Duration::from_secs(20))
}
