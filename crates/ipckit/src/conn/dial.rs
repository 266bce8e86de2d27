//! Connecting: a namespace name (Unix socket; on Windows the named pipe
//! `\\.\pipe\ipckit.<H>.<name>`) or `tcp://HOST:PORT` (Linux only), within
//! the caller's timeout, with back-off, retrying only what a later attempt
//! can fix (no server yet, every instance busy, a TCP peer unreachable).

#[cfg(unix)]
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::sys;
use crate::sys::net::{AsSocket, Socket, SocketRef};

/// Prefix of a TCP address given where a name is expected.
pub(crate) const TCP_PREFIX: &str = "tcp://";

/// Least time a server gets to send its hello, whatever the caller's
/// timeout (a live server answers at once; a hung one is still bounded).
pub(crate) const HELLO_GRACE: Duration = Duration::from_secs(5);

/// Which servers a client trusts besides those of its own uid and of the
/// namespace directory's owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Trust {
    /// Further uids a server may run as.
    pub uids: Vec<u32>,
    /// Any server (the explicit opt-out of the check).
    pub any: bool,
}

/// Where a dial goes.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The endpoint's Unix socket in a namespace, and the uid the
    /// namespace directory belongs to (a server of that uid, or of the
    /// caller's, is trusted).
    #[cfg(unix)]
    Unix(PathBuf, u32),
    /// The endpoint's named pipe (its system name).
    #[cfg(windows)]
    Pipe(String),
    /// `HOST:PORT`.
    Tcp(String),
}

/// One connection attempt's socket.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub fd: Socket,
    pub tcp: bool,
    /// When the server's hello must have arrived.
    pub hello_deadline: Instant,
}

/// A dial: what to reach and how long to keep trying.
pub(crate) struct Dialer<'a> {
    /// The name as the caller gave it (used in errors).
    pub name: &'a str,
    /// What the endpoint is, for errors ("pipe server", "service").
    pub what: &'static str,
    /// The namespace (else the environment's).
    pub namespace: Option<&'a Namespace>,
    /// How long to keep retrying; zero: one attempt.
    pub timeout: Duration,
    /// Whether `tcp://` names are allowed.
    pub tcp: bool,
    /// Servers trusted beyond the default.
    pub trust: &'a Trust,
}

/// Connect to the Unix socket at `path` once (a second connection to an
/// endpoint already reached, such as a service lane), checking that the
/// server is still of uid `server_uid`.
#[cfg(unix)]
pub(crate) fn connect_path(path: &std::path::Path, server_uid: u32) -> std::io::Result<Socket> {
    let fd = sys::net::unix_connect(path)?;
    check_server(fd.as_socket(), &[server_uid])
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why))?;
    Ok(fd)
}

/// Connect once to an endpoint that no name records (see
/// `listen::unrecorded_endpoint`), by `deadline`. On Linux a refused or
/// missing socket is `NotFound` or `ConnectionRefused`; on Windows a
/// missing pipe is `NotFound` and one whose instances stayed busy
/// `TimedOut`. The caller checks who serves it ([`server_uid`]).
pub(crate) fn connect_unrecorded(
    endpoint: &std::path::Path,
    deadline: Instant,
) -> std::io::Result<Socket> {
    #[cfg(unix)]
    {
        let _ = deadline;
        sys::net::unix_connect(endpoint)
    }
    #[cfg(windows)]
    sys::net::pipe_connect(
        &endpoint.to_string_lossy(),
        deadline.saturating_duration_since(Instant::now()),
    )
}

/// The uid of the server at the other end of a Unix socket.
pub(crate) fn server_uid(fd: SocketRef<'_>) -> std::io::Result<u32> {
    sys::net::peer_cred(fd).map(|(_, uid, _)| uid)
}

/// Check that the process listening at the other end of `fd` runs as one
/// of `trusted` (its credentials as of `listen`, from the kernel).
fn check_server(fd: SocketRef<'_>, trusted: &[u32]) -> Result<(), String> {
    match sys::net::peer_cred(fd) {
        #[cfg(unix)]
        Ok((pid, uid, _)) if !trusted.contains(&uid) => Err(format!(
            "its server (pid {pid}) runs as uid {uid}, not as this user or the namespace's owner"
        )),
        #[cfg(windows)]
        Ok((pid, uid, _)) if !trusted.contains(&uid) => {
            Err(format!("its server (pid {pid}) runs as another user"))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot read its server's credentials: {e}")),
    }
}

impl Dialer<'_> {
    /// Resolve the name (checking it) into a target.
    pub(crate) fn target(&self) -> Result<Target> {
        if let Some(addr) = self.name.strip_prefix(TCP_PREFIX) {
            if cfg!(windows) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "a {} is reached over TCP only on Linux for now; reach it by name on Windows",
                        self.what
                    ),
                )
                .with_name(self.name));
            }
            if !self.tcp {
                return Err(Error::new(
                    ErrorKind::InvalidName,
                    format!(
                        "a {} is reached by name on this machine, not over TCP",
                        self.what
                    ),
                )
                .with_name(self.name));
            }
            return Ok(Target::Tcp(addr.to_string()));
        }
        self.local_target()
    }

    /// The endpoint's Unix socket.
    #[cfg(unix)]
    fn local_target(&self) -> Result<Target> {
        crate::name::validate_name(self.name)?;
        let ns = match self.namespace {
            Some(ns) => ns.clone(),
            None => Namespace::from_env()?,
        };
        Ok(Target::Unix(ns.socket_path(self.name), ns.owner_uid()))
    }

    /// The endpoint's named pipe (a `\\.\pipe\X` name as is).
    #[cfg(windows)]
    fn local_target(&self) -> Result<Target> {
        Ok(Target::Pipe(crate::name::pipe_os_name(
            self.namespace,
            self.name,
            true,
        )?))
    }

    /// Connect and run `handshake` on each new socket until it succeeds,
    /// retrying while the error is `NotFound`, `Busy`, or (TCP) `Io`, with
    /// back-off from 0.5 ms to 20 ms, until the timeout. Other errors
    /// return at once.
    pub(crate) fn run<T>(&self, mut handshake: impl FnMut(Dialed) -> Result<T>) -> Result<T> {
        let target = self.target()?;
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_micros(500);
        loop {
            let result = self.attempt(&target, deadline).and_then(|fd| {
                let hello_deadline = deadline.max(Instant::now() + HELLO_GRACE);
                handshake(Dialed {
                    fd,
                    tcp: matches!(target, Target::Tcp(_)),
                    hello_deadline,
                })
            });
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retry = matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Busy)
                || (matches!(target, Target::Tcp(_)) && e.kind() == ErrorKind::Io);
            if !retry {
                return Err(e);
            }
            let now = Instant::now();
            if now >= deadline {
                if self.timeout.is_zero() {
                    return Err(e);
                }
                let why = match e.kind() {
                    ErrorKind::Busy => "it stayed busy",
                    ErrorKind::NotFound => "none appeared",
                    _ => "it could not be reached",
                };
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "waited {:?} for the {}: {why}; start it or wait longer",
                        self.timeout, self.what
                    ),
                )
                .with_name(self.name)
                .with_source(e));
            }
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
    }

    fn attempt(&self, target: &Target, deadline: Instant) -> Result<Socket> {
        match target {
            Target::Tcp(addr) => {
                let left = deadline.saturating_duration_since(Instant::now());
                sys::net::tcp_connect(addr, left.max(Duration::from_millis(200))).map_err(|e| {
                    Error::os(e, format!("cannot connect to the {} over TCP", self.what))
                        .with_name(self.name)
                })
            }
            #[cfg(unix)]
            Target::Unix(path, owner) => sys::net::unix_connect(path)
                .map_err(|e| {
                    use std::io::ErrorKind as K;
                    match e.kind() {
                        K::NotFound | K::ConnectionRefused => self.not_found(e),
                        _ => Error::os(e, format!("cannot connect to the {}", self.what))
                            .with_name(self.name),
                    }
                })
                .and_then(|fd| self.trusted(fd, Some(*owner))),
            #[cfg(windows)]
            Target::Pipe(os_name) => {
                let left = deadline.saturating_duration_since(Instant::now());
                sys::net::pipe_connect(os_name, left)
                    .map_err(|e| {
                        use std::io::ErrorKind as K;
                        match e.kind() {
                            K::NotFound => self.not_found(e),
                            K::TimedOut => Error::new(
                                ErrorKind::Busy,
                                format!(
                                    "every instance of the {}'s pipe is busy; retry later or connect with a timeout",
                                    self.what
                                ),
                            )
                            .with_name(self.name)
                            .with_source(e),
                            K::PermissionDenied => Error::new(
                                ErrorKind::PermissionDenied,
                                format!(
                                    "the {}'s pipe refused this user; its server may run as another user",
                                    self.what
                                ),
                            )
                            .with_name(self.name)
                            .with_source(e),
                            _ => Error::os(e, format!("cannot connect to the {}", self.what))
                                .with_name(self.name),
                        }
                    })
                    .and_then(|fd| self.trusted(fd, None))
            }
        }
    }

    /// No endpoint of this name answers.
    fn not_found(&self, e: std::io::Error) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no {} has this name; start it or check the namespace",
                self.what
            ),
        )
        .with_name(self.name)
        .with_source(e)
    }

    /// `fd` if its server runs as this user, the namespace's `owner` or an
    /// allowed uid (unless any server is allowed); else the impostor error.
    fn trusted(&self, fd: Socket, owner: Option<u32>) -> Result<Socket> {
        if !self.trust.any {
            let mut trusted = vec![sys::uid()];
            trusted.extend(owner);
            trusted.extend_from_slice(&self.trust.uids);
            check_server(fd.as_socket(), &trusted).map_err(|why| self.impostor(&why))?;
        }
        Ok(fd)
    }

    fn impostor(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "refused the {}: {why}; another user may have put an impostor in the namespace",
                self.what
            ),
        )
        .with_name(self.name)
    }
}
