//! Claiming a name and opening its listening sockets.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::error::{Context, Result};
use crate::name::{Claim, Namespace};
use crate::sys;

/// A claimed name with its listening sockets (not yet served).
#[derive(Debug)]
pub(crate) struct Bound {
    pub claim: Claim,
    /// The Unix socket's path (removed by [`Bound::socket_path`]'s owner on
    /// drop of the server).
    pub socket_path: PathBuf,
    /// What the server's connection loop takes over.
    pub listening: Listening,
    /// The TCP address bound, if any.
    pub tcp_addr: Option<SocketAddr>,
}

/// A claimed endpoint's listening sockets, each with whether it is TCP,
/// and where its counters are published for `ipckit ls`.
#[derive(Debug)]
pub(crate) struct Listening {
    pub listeners: Vec<(OwnedFd, bool)>,
    pub stats_path: PathBuf,
}

/// Claim `name` as an endpoint of `kind` in `ns` and listen on its Unix
/// socket, and on `tcp` (`HOST:PORT`) if given.
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
