//! Readiness: one `epoll` instance watching many sockets, so that a server
//! with thousands of idle connections spends no thread on them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::Timespec;
use rustix::pipe::PipeFlags;

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

/// Wakes a [`Poller`]'s `wait` from any thread (see [`Poller::waker`]): a
/// non-blocking pipe whose read end is registered under the waker's token.
#[derive(Debug, Clone)]
pub(crate) struct Waker {
    ends: Arc<(OwnedFd, OwnedFd)>,
}

impl Poller {
    /// A waker of this poller: [`Waker::wake`] (from any thread) makes the
    /// next or current [`wait`](Self::wait) report `token`, until the loop
    /// calls [`Waker::drain`].
    pub(crate) fn waker(&self, token: u64) -> io::Result<Waker> {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        self.add(r.as_fd(), token)?;
        Ok(Waker {
            ends: Arc::new((r, w)),
        })
    }
}

impl Waker {
    /// Make the poller report the waker's token. A full pipe already
    /// holds a wake-up: nothing is lost.
    pub(crate) fn wake(&self) {
        loop {
            match rustix::io::write(&self.ends.1, b"x") {
                Err(rustix::io::Errno::INTR) => continue,
                _ => return,
            }
        }
    }

    /// Take every wake-up pending: the token is not reported again until
    /// the next [`wake`](Self::wake).
    pub(crate) fn drain(&self) {
        let mut sink = [0u8; 64];
        loop {
            match rustix::io::read(&self.ends.0, &mut sink) {
                Ok(n) if n > 0 => continue,
                Err(rustix::io::Errno::INTR) => continue,
                _ => return,
            }
        }
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
