//! `ipckit mutex|event|sem`: named sync objects from the shell.

use std::process::Command;
use std::time::{Duration, Instant};

use ipckit::shm::MappingOptions;
use ipckit::sync::{EventOptions, Lock, MutexOptions, SemaphoreOptions};
use ipckit::{Error, ErrorKind};

use crate::cli::{EventCommand, MutexCommand, SemCommand};

/// A wait's timeout error, naming the option that bounded it.
fn timed_out(e: Error, name: &str, what: &str, timeout: Option<Duration>) -> Error {
    if e.kind() != ErrorKind::Timeout {
        return e;
    }
    Error::new(
        ErrorKind::Timeout,
        format!("{what} within --timeout {:?}", timeout.unwrap_or_default()),
    )
    .with_name(name)
}

pub fn mutex(cmd: MutexCommand) -> Result<(), Error> {
    let opts = MutexOptions::new();
    match cmd {
        MutexCommand::Create { name } => opts.open_or_create(&name).map(drop),
        MutexCommand::Lock {
            name,
            timeout,
            hold,
        } => {
            // Before the lock is taken: a stop signal then releases it
            // (instead of killing this process, which would abandon it).
            crate::util::catch_stop_signals()?;
            let m = opts.open_or_create(&name)?;
            let lock = lock(&m, timeout).map_err(|e| timed_out(e, &name, "not locked", timeout))?;
            println!(
                "{}",
                if lock.is_abandoned() {
                    "locked abandoned"
                } else {
                    "locked"
                }
            );
            let until = hold.map(|h| Instant::now() + h);
            while !crate::util::stop_requested() && until.is_none_or(|u| Instant::now() < u) {
                let left = until.map_or(crate::util::STOP_POLL, |u| {
                    u.saturating_duration_since(Instant::now())
                        .min(crate::util::STOP_POLL)
                });
                std::thread::sleep(left);
            }
            drop(lock);
            Ok(())
        }
        MutexCommand::Run {
            name,
            timeout,
            command,
        } => {
            crate::util::catch_stop_signals()?;
            let m = opts.open_or_create(&name)?;
            let lock = lock(&m, timeout).map_err(|e| timed_out(e, &name, "not locked", timeout))?;
            if lock.is_abandoned() {
                eprintln!("ipckit: '{name}': its previous owner died holding it");
            }
            let code = run_holding(&command);
            drop(lock);
            match code {
                Ok(0) => Ok(()),
                // The command's own status, after releasing the lock.
                Ok(c) => std::process::exit(c),
                Err(e) => Err(e.with_name(&name)),
            }
        }
        MutexCommand::Rm { name } => {
            opts.open(&name).map(drop)?; // a mutex, not some other object
            MappingOptions::new().remove(&name)
        }
    }
}

fn lock(m: &ipckit::sync::Mutex, timeout: Option<Duration>) -> Result<Lock<'_>, Error> {
    match timeout {
        Some(t) => m.lock_timeout(t),
        None => m.lock(),
    }
}

/// Run `command` (inheriting stdio) to its end; its exit code (128 + the
/// signal if a signal ended it). Ctrl-C reaches it directly (same process
/// group); SIGTERM sent to this process is passed on to it. On Windows
/// Ctrl-C reaches it directly too (same console), and there is no SIGTERM.
fn run_holding(command: &[String]) -> Result<i32, Error> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .spawn()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot run {:?}: {e}", command[0])))?;
    #[cfg(unix)]
    let mut passed_on = false;
    loop {
        match child.try_wait() {
            #[cfg(unix)]
            Ok(Some(st)) => {
                use std::os::unix::process::ExitStatusExt as _;
                return Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            // A Windows exit status always has a code.
            #[cfg(windows)]
            Ok(Some(st)) => return Ok(st.code().unwrap_or(1)),
            Ok(None) => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("cannot wait for the command: {e}"),
                ))
            }
        }
        #[cfg(unix)]
        if crate::util::stop_requested() && !passed_on {
            passed_on = true;
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn event(cmd: EventCommand) -> Result<(), Error> {
    let opts = EventOptions::new();
    match cmd {
        EventCommand::Create {
            name,
            manual_reset,
            set,
        } => opts
            .manual_reset(manual_reset)
            .initially_set(set)
            .open_or_create(&name)
            .map(drop),
        EventCommand::Set { name } => {
            opts.open(&name)?.set();
            Ok(())
        }
        EventCommand::Reset { name } => {
            opts.open(&name)?.reset();
            Ok(())
        }
        EventCommand::Wait { name, timeout } => {
            let e = opts.open(&name)?;
            match timeout {
                Some(t) => e.wait_timeout(t),
                None => e.wait(),
            }
            .map_err(|e| timed_out(e, &name, "not set", timeout))
        }
        EventCommand::Rm { name } => {
            opts.open(&name).map(drop)?; // an event, not some other object
            MappingOptions::new().remove(&name)
        }
    }
}

pub fn sem(cmd: SemCommand) -> Result<(), Error> {
    let opts = SemaphoreOptions::new();
    match cmd {
        SemCommand::Create { name, initial, max } => opts
            .initial(initial)
            .max(max)
            .open_or_create(&name)
            .map(drop),
        SemCommand::Release { name, count } => {
            let before = opts.open(&name)?.release(count)?;
            println!("{before}");
            Ok(())
        }
        SemCommand::Wait { name, timeout } => {
            let s = opts.open(&name)?;
            match timeout {
                Some(t) => s.acquire_timeout(t),
                None => s.acquire(),
            }
            .map_err(|e| timed_out(e, &name, "count stayed 0", timeout))
        }
        SemCommand::Rm { name } => {
            opts.open(&name).map(drop)?; // a semaphore, not some other object
            MappingOptions::new().remove(&name)
        }
    }
}
