//! Claiming a name and opening its listening sockets.
//!
//! On Linux an endpoint is a claimed record plus a Unix socket (and a TCP
//! one if asked); on Windows it is the byte-mode named pipe
//! `\\.\pipe\ipckit.<H>.<name>` (see `sys::net::pipe_listen`),
//! whose first instance is the claim: a second server of the name fails
//! there with `AlreadyExists`.

use std::net::SocketAddr;
#[cfg(unix)]
use std::path::PathBuf;

#[cfg(unix)]
use crate::error::Context;
use crate::error::Result;
#[cfg(unix)]
use crate::name::Claim;
use crate::name::Namespace;
use crate::sys;
use crate::sys::net::Socket;

/// A claimed name with its listening sockets (not yet served).
#[derive(Debug)]
pub(crate) struct Bound {
    #[cfg(unix)]
    pub claim: Claim,
    /// The Unix socket's path (removed by [`Bound::socket_path`]'s owner on
    /// drop of the server).
    #[cfg(unix)]
    pub socket_path: PathBuf,
    /// The named pipe's system name (`\\.\pipe\ipckit.<H>.<name>`).
    #[cfg(windows)]
    pub os_name: String,
    /// What the server's connection loop takes over.
    pub listening: Listening,
    /// The TCP address bound, if any.
    pub tcp_addr: Option<SocketAddr>,
}

/// A claimed endpoint's listening sockets, each with whether it is TCP,
/// and where its counters are published for `ipckit ls` (Linux only).
#[derive(Debug)]
pub(crate) struct Listening {
    pub listeners: Vec<(Socket, bool)>,
    #[cfg(unix)]
    pub stats_path: PathBuf,
}

/// Claim `name` as an endpoint of `kind` in `ns` and listen on its Unix
/// socket, and on `tcp` (`HOST:PORT`) if given.
#[cfg(unix)]
pub(crate) fn bind(ns: &Namespace, name: &str, kind: &str, tcp: Option<&str>) -> Result<Bound> {
    let mut claim = ns.claim(name, kind)?;
    let socket_path = ns.socket_path(name);
    let unix =
        sys::net::unix_listen(&socket_path).ctx(name, "cannot listen on the endpoint's socket")?;
    let mut listeners = vec![(unix, false)];
    let mut tcp_addr = None;
    if let Some(a) = tcp {
        let (fd, addr) = sys::net::tcp_listen(a).ctx(name, "cannot listen on TCP")?;
        listeners.push((fd, true));
        tcp_addr = Some(addr);
    }
    // Listed as live only now that it can be reached.
    claim.publish()?;
    Ok(Bound {
        claim,
        socket_path,
        listening: Listening {
            listeners,
            stats_path: ns.stats_path(name),
        },
        tcp_addr,
    })
}

/// Listen on the named pipe of `name` in `ns` (or on `\\.\pipe\X` given as
/// is). A name already served (by a service or a pipe) is
/// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists); TCP is
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) on Windows.
#[cfg(windows)]
pub(crate) fn bind(ns: &Namespace, name: &str, kind: &str, tcp: Option<&str>) -> Result<Bound> {
    use crate::error::{Error, ErrorKind};
    if tcp.is_some() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("a {kind} listens on TCP only on Linux for now; serve it by name on Windows"),
        )
        .with_name(name));
    }
    let os_name = crate::name::pipe_os_name(Some(ns), name, false)?;
    let listener = sys::net::pipe_listen(&os_name).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::PermissionDenied => Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "a live {kind} or pipe server already serves this name ({os_name}); stop it or pick another name"
            ),
        )
        .with_name(name)
        .with_source(e),
        _ => Error::os(e, format!("cannot create the {kind}'s named pipe {os_name}")).with_name(name),
    })?;
    Ok(Bound {
        os_name,
        listening: Listening {
            listeners: vec![(listener, false)],
        },
        tcp_addr: None,
    })
}

/// The namespace `explicit`, else the environment's.
pub(crate) fn namespace(explicit: Option<&Namespace>) -> Result<Namespace> {
    match explicit {
        Some(ns) => Ok(ns.clone()),
        None => Namespace::from_env(),
    }
}

/// Listen on a Unix socket at `path` that no name records (an endpoint
/// whose path is published some other way, such as a clipboard owner's
/// render endpoint, whose path is in the board). The caller removes the
/// socket file when done; the reactor publishes its counters at
/// `stats_path` and removes them when it stops.
#[cfg(unix)]
pub(crate) fn listen_unrecorded(
    name: &str,
    path: &std::path::Path,
    stats_path: PathBuf,
) -> Result<Listening> {
    let unix = sys::net::unix_listen(path).ctx(name, "cannot listen on the endpoint's socket")?;
    Ok(Listening {
        listeners: vec![(unix, false)],
        stats_path,
    })
}
