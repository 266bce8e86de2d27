//! Readiness: one `epoll` instance watching many sockets, so that a server
//! with thousands of idle connections spends no thread on them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::Timespec;

/// What a readiness event says about its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The token the source was registered with.
    pub token: u64,
    /// Hang-up or error: the peer is gone (data may still be readable).
    pub hup: bool,
}

/// An `epoll` instance (close-on-exec). Sources are level-triggered and
/// watched for readability, peer hang-up and errors.
#[derive(Debug)]
pub(crate) struct Poller {
    fd: OwnedFd,
}

fn flags() -> EventFlags {
    EventFlags::IN | EventFlags::RDHUP
}

impl Poller {
    /// A new, empty poller.
    pub(crate) fn new() -> io::Result<Poller> {
        Ok(Poller {
            fd: epoll::create(CreateFlags::CLOEXEC)?,
        })
    }

    /// Watch `fd` under `token`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        epoll::add(&self.fd, fd, EventData::new_u64(token), flags())?;
        Ok(())
    }

    /// Stop watching `fd` (also done by the kernel when its last
    /// descriptor closes).
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.fd, fd);
    }

    /// Wait at most `timeout` (`None`: forever) and append what is ready to
    /// `out` (cleared first). An interrupted wait returns no events.
    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        let ts = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut events),
            ts.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        out.extend(events.iter().map(|e| {
            let flags = e.flags;
            Ready {
                token: e.data.u64(),
                hup: flags.intersects(EventFlags::HUP | EventFlags::ERR),
            }
        }));
        Ok(())
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
