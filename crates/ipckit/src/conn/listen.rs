//! Claiming a name and opening its listening sockets.
//!
//! On Linux an endpoint is a claimed record plus a Unix socket (and a TCP
//! one if asked); on Windows it is the byte-mode named pipe
//! `\\.\pipe\ipckit.<H>.<name>` (see `sys::net::pipe_listen`),
//! whose first instance is the claim: a second server of the name fails
//! there with `AlreadyExists`. The endpoint record is then taken too (so
//! `Namespace::list` shows it), except for a name given in the system's
//! own form, which no record can hold.

use std::net::SocketAddr;
use std::path::PathBuf;

#[cfg(unix)]
use crate::error::Context;
use crate::error::Result;
use crate::name::Claim;
use crate::name::Namespace;
use crate::sys;
use crate::sys::net::Socket;

/// What holds an endpoint's record: on Windows none for a name given in
/// the system's form (`\\.\pipe\X`).
#[cfg(unix)]
pub(crate) type BoundClaim = Claim;
/// What holds an endpoint's record: on Windows none for a name given in
/// the system's form (`\\.\pipe\X`).
#[cfg(windows)]
pub(crate) type BoundClaim = Option<Claim>;

/// A claimed name with its listening sockets (not yet served).
#[derive(Debug)]
pub(crate) struct Bound {
    pub claim: BoundClaim,
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
    // The pipe's first instance made this server the name's only live
    // one; the record (taken over if a dead server left it) lists it.
    let claim = match crate::name::validate_name(name) {
        Ok(()) => {
            let mut claim = claim_after_pipe(ns, name, kind)?;
            claim.publish()?;
            Some(claim)
        }
        Err(_) => None,
    };
    Ok(Bound {
        claim,
        os_name,
        listening: Listening {
            listeners: vec![(listener, false)],
        },
        tcp_addr: None,
    })
}

/// Take the record of `name`, whose pipe this process now serves. A
/// record still held is a previous server's that gave up its pipe a moment
/// ago and is releasing the record (no live server can hold the record
/// without the pipe): wait for that, at most [`RELEASE_WAIT`].
#[cfg(windows)]
fn claim_after_pipe(ns: &Namespace, name: &str, kind: &str) -> Result<Claim> {
    let until = std::time::Instant::now() + RELEASE_WAIT;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match ns.claim(name, kind) {
            Err(e)
                if e.kind() == crate::ErrorKind::AlreadyExists
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// How long a new server waits for the previous one of its name to release
/// the name's record (Windows).
#[cfg(windows)]
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The namespace `explicit`, else the environment's.
pub(crate) fn namespace(explicit: Option<&Namespace>) -> Result<Namespace> {
    match explicit {
        Some(ns) => Ok(ns.clone()),
        None => Namespace::from_env(),
    }
}

/// Where an endpoint that no name records lives, `label` being what sets
/// it apart (a clipboard owner's render endpoint: `clip-<token>`): on Linux
/// the Unix socket `DIR/.<label>.sock`, or `DIR/.s/<label>.sock` when that
/// is too long for a socket address; on Windows the named pipe
/// `\\.\pipe\ipckit.<H>..<label>` (the double dot: no name of the
/// namespace gives it).
pub(crate) fn unrecorded_endpoint(ns: &Namespace, label: &str) -> PathBuf {
    #[cfg(unix)]
    {
        let direct = ns.dir().join(format!(".{label}.sock"));
        if direct.as_os_str().len() <= sys::MAX_UNIX_PATH {
            direct
        } else {
            ns.dir().join(".s").join(format!("{label}.sock"))
        }
    }
    #[cfg(windows)]
    {
        let h = crate::name::fnv1a64(ns.dir().as_os_str().as_encoded_bytes());
        PathBuf::from(format!(
            "{}ipckit.{h:016x}..{label}",
            crate::name::PIPE_PREFIX
        ))
    }
}

/// Remove what an unrecorded endpoint left behind once nobody serves it:
/// its socket file on Linux; nothing on Windows, where a pipe goes with
/// its last handle.
pub(crate) fn remove_unrecorded(endpoint: &std::path::Path) {
    #[cfg(unix)]
    let _ = std::fs::remove_file(endpoint);
    #[cfg(windows)]
    let _ = endpoint;
}

/// Listen on an endpoint that no name records (see
/// [`unrecorded_endpoint`]: its path is published some other way, such as
/// a clipboard owner's render endpoint, whose token is in the board). The
/// caller removes it when done ([`remove_unrecorded`]); on Linux the
/// reactor publishes its counters at `stats_path` and removes them when it
/// stops.
pub(crate) fn listen_unrecorded(
    name: &str,
    endpoint: &std::path::Path,
    stats_path: PathBuf,
) -> Result<Listening> {
    #[cfg(unix)]
    let listener =
        sys::net::unix_listen(endpoint).ctx(name, "cannot listen on the endpoint's socket")?;
    #[cfg(windows)]
    let listener = sys::net::pipe_listen(&endpoint.to_string_lossy()).map_err(|e| {
        crate::error::Error::os(e, "cannot create the endpoint's named pipe").with_name(name)
    })?;
    #[cfg(windows)]
    let _ = stats_path;
    Ok(Listening {
        listeners: vec![(listener, false)],
        #[cfg(unix)]
        stats_path,
    })
}
