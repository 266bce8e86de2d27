//! Readiness on Windows: one poller watching many connections of
//! [`super::net`], so that a server's loop waits for all of them at once.
//!
//! A connection's reader thread (or a listener's thread) tells every
//! poller watching it when something changed; [`Poller::wait`] then asks
//! each watched socket whether it is ready. Readiness is level-triggered,
//! as with `epoll` on Linux: a socket with unread data, an unseen end of
//! stream, or (a listener) a waiting client is reported by every wait.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::net::{Inner as SockInner, SocketRef};

/// What a readiness event says about its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The token the source was registered with.
    pub token: u64,
    /// Hang-up or error: the peer is gone (data may still be readable).
    pub hup: bool,
}

/// What the sockets a poller watches share with it.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<PollState>,
    cond: Condvar,
}

#[derive(Default)]
struct PollState {
    /// The watched sockets and their tokens.
    sources: Vec<(u64, Weak<SockInner>)>,
    /// Bumped by every notification.
    seq: u64,
    /// Wakers: (token, woken).
    wakers: Vec<(u64, Arc<AtomicBool>)>,
}

fn lock(m: &Mutex<PollState>) -> MutexGuard<'_, PollState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Something a watcher may care about changed.
    pub(crate) fn notify(&self) {
        lock(&self.state).seq += 1;
        self.cond.notify_all();
    }
}

/// A set of watched sockets (see the module docs).
pub(crate) struct Poller {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Poller({} sources)",
            lock(&self.shared.state).sources.len()
        )
    }
}

impl Poller {
    /// A new, empty poller.
    pub(crate) fn new() -> io::Result<Poller> {
        Ok(Poller {
            shared: Arc::new(Shared::default()),
        })
    }

    /// Watch `s` under `token`.
    pub(crate) fn add(&self, s: SocketRef<'_>, token: u64) -> io::Result<()> {
        let inner = s.inner();
        lock(&self.shared.state)
            .sources
            .push((token, Arc::downgrade(inner)));
        inner.watch(Arc::downgrade(&self.shared));
        // It may be ready already.
        self.shared.notify();
        Ok(())
    }

    /// Stop watching `s`.
    pub(crate) fn delete(&self, s: SocketRef<'_>) {
        let inner = s.inner();
        let me = Arc::downgrade(inner);
        lock(&self.shared.state)
            .sources
            .retain(|(_, w)| !w.ptr_eq(&me) && w.strong_count() > 0);
        inner.unwatch(&Arc::downgrade(&self.shared));
    }

    /// A waker: after [`Waker::wake`], `wait` reports `token` until
    /// [`Waker::drain`].
    pub(crate) fn waker(&self, token: u64) -> io::Result<Waker> {
        let flag = Arc::new(AtomicBool::new(false));
        lock(&self.shared.state)
            .wakers
            .push((token, Arc::clone(&flag)));
        Ok(Waker {
            flag,
            shared: Arc::downgrade(&self.shared),
        })
    }

    /// Wait at most `timeout` (`None`: forever) and append what is ready to
    /// `out` (cleared first).
    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = lock(&self.shared.state);
        loop {
            let seen = st.seq;
            st.sources.retain(|(_, w)| w.strong_count() > 0);
            for (token, w) in &st.sources {
                if let Some(hup) = w.upgrade().and_then(|s| s.readiness()) {
                    out.push(Ready { token: *token, hup });
                }
            }
            for (token, flag) in &st.wakers {
                if flag.load(Ordering::Acquire) {
                    out.push(Ready {
                        token: *token,
                        hup: false,
                    });
                }
            }
            if !out.is_empty() {
                return Ok(());
            }
            // Sleep until a notification newer than this scan.
            while st.seq == seen {
                st = match deadline {
                    None => self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Ok(());
                        }
                        self.shared
                            .cond
                            .wait_timeout(st, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                };
            }
        }
    }
}

/// Wakes a [`Poller`] from any thread (see [`Poller::waker`]).
#[derive(Clone, Debug)]
pub(crate) struct Waker {
    flag: Arc<AtomicBool>,
    shared: Weak<Shared>,
}

impl Waker {
    /// Make the poller's current or next `wait` report this waker's token.
    pub(crate) fn wake(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(s) = self.shared.upgrade() {
            s.notify();
        }
    }

    /// The loop saw the token: stop reporting it until the next wake.
    pub(crate) fn drain(&self) {
        self.flag.store(false, Ordering::Release);
    }
}
