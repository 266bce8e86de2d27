//! How a connection carries its messages, and how a waiter waits.
//!
//! A named pipe (message mode) or a service connection between two
//! processes on one machine starts on a Unix socket. Unless either side
//! opts out, the two then agree on a pair of single-producer /
//! single-consumer rings in one shared-memory object (a sealed `memfd`
//! passed over the socket) and carry every further message through them:
//! no system call on the hot path. The socket stays open only so that each
//! side notices when the other dies. TCP connections always stay on the
//! socket.
//!
//! The choice is invisible to the API: the same `NamedPipe` or service
//! `Client` works either way, and reports which it got.
//!
//! On Windows there are no shared-memory rings: a service connection
//! always carries its messages on its named pipe and reports
//! [`Transport::Socket`]; asking a service client for
//! [`Transport::SharedMemory`] explicitly is
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
//!
//! Setting the environment variable `IPCKIT_TRANSPORT` to `socket` makes
//! [`Transport::Auto`] mean [`Transport::Socket`] for every connection of
//! the process (for debugging, and to run a test suite on both paths);
//! `shm` or `auto` (or unset) keeps the default.
//!
//! ```
//! use ipckit::{Transport, WaitStrategy};
//! assert_eq!(Transport::default(), Transport::Auto);
//! assert!(matches!(WaitStrategy::default(), WaitStrategy::SpinThenPark(_)));
//! ```

use std::time::Duration;

/// Environment variable that can turn the shared-memory path off for a
/// whole process (`socket`).
pub const TRANSPORT_ENV: &str = "IPCKIT_TRANSPORT";

/// Which path a connection's messages take.
///
/// ```
/// use ipckit::Transport;
/// // Ask for the socket path explicitly (opt out of shared memory):
/// let t = Transport::Socket;
/// assert_ne!(t, Transport::SharedMemory);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// Shared-memory rings when both peers are on this machine and both
    /// allow it, otherwise the socket. The default.
    #[default]
    Auto,
    /// Always the socket (Unix or TCP): the explicit opt-out.
    Socket,
    /// Shared-memory rings (what a connection reports when it got them).
    /// Requested, it is `Auto` that `IPCKIT_TRANSPORT` cannot turn off; a
    /// TCP connection still uses its socket.
    SharedMemory,
}

impl Transport {
    /// What `self` means once `IPCKIT_TRANSPORT` is taken into account:
    /// `Auto` becomes `Socket` when the variable says `socket`; explicit
    /// choices stay.
    ///
    /// ```
    /// use ipckit::Transport;
    /// assert_eq!(Transport::Socket.resolve(), Transport::Socket);
    /// ```
    pub fn resolve(self) -> Transport {
        match self {
            Transport::Auto => match std::env::var(TRANSPORT_ENV) {
                Ok(v) if v.eq_ignore_ascii_case("socket") => Transport::Socket,
                _ => Transport::Auto,
            },
            other => other,
        }
    }

    /// Whether this setting lets a local connection use shared memory.
    #[allow(dead_code)] // used by pipes and services, arriving next
    pub(crate) fn allows_shm(self) -> bool {
        self.resolve() != Transport::Socket
    }
}

/// How a thread waits for its peer on a shared-memory connection.
///
/// Waiting first spins (re-reading the shared index, no system call), then
/// parks on a futex. Before parking the waiter raises a "sleeping" flag; a
/// sender makes the `futex_wake` system call only when it sees that flag,
/// so while both sides are busy no system call is made at all.
///
/// The spin budget adapts: after waits that ended soon after parking it
/// stays at its maximum; after long waits (an idle peer) it shrinks to a
/// sixteenth, so an idle server sleeps instead of burning a core.
///
/// ```
/// use std::time::Duration;
/// use ipckit::WaitStrategy;
/// let lowest_latency = WaitStrategy::Spin;
/// let polite = WaitStrategy::Park;
/// let balanced = WaitStrategy::SpinThenPark(Duration::from_micros(50));
/// assert_eq!(balanced, WaitStrategy::default());
/// # let _ = (lowest_latency, polite);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitStrategy {
    /// Spin until the peer answers (a core stays busy while waiting; the
    /// peer's death is still noticed within about a millisecond).
    Spin,
    /// Spin for at most this long, then park on a futex.
    SpinThenPark(Duration),
    /// Park at once (lowest CPU use; every wait costs a kernel wake-up).
    Park,
}

/// The default spin budget: about two kernel wake-ups on the machines this
/// was measured on.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenPark(DEFAULT_SPIN)
    }
}
