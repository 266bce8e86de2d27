//! What a server accepts from its peers: one [`Limits`] value on every
//! server builder (named pipes, services, mailslots, window-message
//! receivers), with defaults that keep a flooding, stalling or hostile
//! local peer from starving the others or pinning unbounded memory,
//! threads or CPU.
//!
//! A peer over a limit is refused with a clear error on its side (`Busy`
//! for connection counts and calls in flight, `Full` for queued bytes) and
//! the server counts what it refused and why.
//!
//! ```
//! use std::time::Duration;
//! use ipckit::Limits;
//!
//! let l = Limits::new()
//!     .max_connections(64)
//!     .max_connections_per_process(8)
//!     .stall_timeout(Duration::from_secs(2));
//! assert_eq!(l.get_max_connections(), 64);
//! assert_eq!(Limits::default().get_max_connections_per_process(), 512);
//! ```

use std::time::Duration;

/// Limits a server enforces on its peers. Every field has a documented
/// default; see the setters.
///
/// ```
/// let l = ipckit::Limits::default();
/// assert_eq!(l.get_max_connections(), 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limits {
    max_connections: usize,
    per_process: usize,
    per_user: usize,
    per_address: usize,
    handshake_timeout: Duration,
    stall_timeout: Duration,
    max_in_flight: usize,
    max_queued_bytes: usize,
    max_lanes: usize,
    allow_uids: Vec<u32>,
    allow_any_uid: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            per_process: 512,
            per_user: 1024,
            per_address: 128,
            handshake_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            max_queued_bytes: 64 << 20,
            max_lanes: 16,
            allow_uids: Vec::new(),
            allow_any_uid: false,
        }
    }
}

macro_rules! limit {
    ($(#[$doc:meta])* $set:ident, $get:ident, $field:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $set(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }

        #[doc = concat!("The value set by [`", stringify!($set), "`](Self::", stringify!($set), ").")]
        ///
        /// ```
        /// let _ = ipckit::Limits::default().
        #[doc = concat!(stringify!($get), "();")]
        /// ```
        pub fn $get(&self) -> $ty {
            self.$field
        }
    };
}

impl Limits {
    /// The defaults (same as [`Limits::default`]).
    ///
    /// ```
    /// assert_eq!(ipckit::Limits::new(), ipckit::Limits::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    limit!(
        /// Connections open at once, from everyone. Default 1024 (a
        /// process's default descriptor limit is 1024; each connection
        /// costs one descriptor and no thread). Over it, a new peer is
        /// refused with `Busy`.
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_connections(10);
        /// assert_eq!(l.get_max_connections(), 10);
        /// ```
        max_connections, get_max_connections, max_connections, usize
    );
    limit!(
        /// Connections open at once from one local process (by its pid).
        /// Default 512, half the total: a flood from one process cannot
        /// lock out the other processes of the same user.
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_connections_per_process(4);
        /// assert_eq!(l.get_max_connections_per_process(), 4);
        /// ```
        max_connections_per_process, get_max_connections_per_process, per_process, usize
    );
    limit!(
        /// Connections open at once from one local user (by uid). Default
        /// 1024 (the total): a server is normally used by its own user.
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_connections_per_user(100);
        /// assert_eq!(l.get_max_connections_per_user(), 100);
        /// ```
        max_connections_per_user, get_max_connections_per_user, per_user, usize
    );
    limit!(
        /// Connections open at once from one TCP peer address. Default 128.
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_connections_per_address(16);
        /// assert_eq!(l.get_max_connections_per_address(), 16);
        /// ```
        max_connections_per_address, get_max_connections_per_address, per_address, usize
    );
    limit!(
        /// How long a peer that owes a handshake (a named-pipe client
        /// answering the shared-memory offer) may take before it is dropped.
        /// Default 5 s.
        ///
        /// ```
        /// use std::time::Duration;
        /// let l = ipckit::Limits::new().handshake_timeout(Duration::from_secs(1));
        /// assert_eq!(l.get_handshake_timeout(), Duration::from_secs(1));
        /// ```
        handshake_timeout, get_handshake_timeout, handshake_timeout, Duration
    );
    limit!(
        /// How long a peer may stall in the middle of a frame (a header
        /// must arrive whole within this time of its first byte; a body may
        /// not pause longer than this), and how long a reply may wait for a
        /// peer that does not read. Over it, the connection is dropped.
        /// Default 10 s.
        ///
        /// ```
        /// use std::time::Duration;
        /// let l = ipckit::Limits::new().stall_timeout(Duration::from_millis(500));
        /// assert_eq!(l.get_stall_timeout(), Duration::from_millis(500));
        /// ```
        stall_timeout, get_stall_timeout, stall_timeout, Duration
    );
    limit!(
        /// Calls in flight on one service connection. Default 256; a call
        /// over it is answered at once with `Busy` (never queued without
        /// bound).
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_in_flight(8);
        /// assert_eq!(l.get_max_in_flight(), 8);
        /// ```
        max_in_flight, get_max_in_flight, max_in_flight, usize
    );
    limit!(
        /// Bytes queued in a mailslot or a window-message receiver and not
        /// yet read. Default 64 MiB; a mailslot writer over it waits up to
        /// its timeout, then gets `Full`; a window-message post over it gets
        /// `Full` at once.
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_queued_bytes(1 << 20);
        /// assert_eq!(l.get_max_queued_bytes(), 1 << 20);
        /// ```
        max_queued_bytes, get_max_queued_bytes, max_queued_bytes, usize
    );
    limit!(
        /// Shared-memory lanes (one thread each on the server) one client
        /// process may hold on a service. Default 16; over it, the client's
        /// extra callers use its socket.
        ///
        /// ```
        /// let l = ipckit::Limits::new().max_lanes(2);
        /// assert_eq!(l.get_max_lanes(), 2);
        /// ```
        max_lanes, get_max_lanes, max_lanes, usize
    );

    /// Local users (uids) accepted besides the server's own. By default a
    /// server accepts only peers of its own uid (checked on the socket's
    /// peer credentials); anyone else is refused with `PermissionDenied`
    /// and counted (`refused_denied`). TCP peers carry no uid: TCP has no
    /// authentication (bind it to loopback unless you mean otherwise).
    ///
    /// ```
    /// let l = ipckit::Limits::new().allow_uids(&[1001, 1002]);
    /// assert_eq!(l.get_allow_uids(), &[1001, 1002]);
    /// ```
    pub fn allow_uids(mut self, uids: &[u32]) -> Self {
        self.allow_uids = uids.to_vec();
        self
    }

    /// The uids set by [`allow_uids`](Self::allow_uids).
    ///
    /// ```
    /// assert!(ipckit::Limits::default().get_allow_uids().is_empty());
    /// ```
    pub fn get_allow_uids(&self) -> &[u32] {
        &self.allow_uids
    }

    /// Accept local peers of any uid (the explicit opt-out of the uid
    /// check). Default `false`.
    ///
    /// ```
    /// let l = ipckit::Limits::new().allow_any_uid(true);
    /// assert!(l.get_allow_any_uid());
    /// ```
    pub fn allow_any_uid(mut self, yes: bool) -> Self {
        self.allow_any_uid = yes;
        self
    }

    /// The value set by [`allow_any_uid`](Self::allow_any_uid).
    ///
    /// ```
    /// assert!(!ipckit::Limits::default().get_allow_any_uid());
    /// ```
    pub fn get_allow_any_uid(&self) -> bool {
        self.allow_any_uid
    }

    /// Whether a local peer of `uid` may connect to a server run by `own`.
    pub(crate) fn admits_uid(&self, uid: u32, own: u32) -> bool {
        uid == own || self.allow_any_uid || self.allow_uids.contains(&uid)
    }
}
