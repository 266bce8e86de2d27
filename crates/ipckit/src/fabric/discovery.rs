//! Discovery: the live endpoints of a namespace on every machine of the
//! fabric, read from the liveliness tokens under
//! `ipckit/<namespace>/alive/**`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use zenoh::Wait as _;

use super::{zerr, Fabric};
use crate::error::{Error, ErrorKind, Result};

/// One live endpoint of the fabric's namespace, on any machine: what
/// [`Fabric::endpoints`] lists and a [`Watcher`] reports.
///
/// Read from its liveliness token `ipckit/<namespace>/alive/<kind>/<name>/.<owner>`
/// (the `.<owner>` chunk is absent from tokens of other ipckit versions;
/// [`owner`](Self::owner) is `None` then).
///
/// ```
/// # use std::time::Duration;
/// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
/// #     .listen("tcp/127.0.0.1:0").namespace("doc-endpoint").open().unwrap();
/// let _s = fabric.server("calc").bind().unwrap();
/// let all = fabric.endpoints(Duration::from_secs(1)).unwrap();
/// let e = all.iter().find(|e| e.name == "calc").unwrap();
/// assert_eq!(e.kind, "svc");
/// assert_eq!(e.owner.as_deref(), Some(fabric.id().as_str()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// What it is: `svc` (a service, [`Fabric::server`]), `dde` (a DDE
    /// server), or another kind a later version publishes.
    pub kind: String,
    /// Its name (may contain `/`).
    pub name: String,
    /// The Zenoh id of the session that owns it (one per process), as
    /// [`Fabric::id`] prints it.
    pub owner: Option<String>,
}

impl Endpoint {
    /// The endpoint a token's key expression names, if it is one of
    /// `prefix/alive/...`.
    fn from_key(prefix: &str, key: &str) -> Option<Endpoint> {
        let rest = key.strip_prefix(prefix)?.strip_prefix("/alive/")?;
        let (kind, rest) = rest.split_once('/')?;
        let (name, owner) = match rest.rsplit_once('/') {
            Some((name, last)) if last.starts_with('.') && last.len() > 1 => {
                (name, Some(last[1..].to_string()))
            }
            _ => (rest, None),
        };
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Endpoint {
            kind: kind.to_string(),
            name: name.to_string(),
            owner,
        })
    }
}

impl std::fmt::Display for Endpoint {
    /// `kind name` (and `@owner` when known).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-endpoint-display").open().unwrap();
    /// let _s = fabric.server("calc").bind().unwrap();
    /// let e = &fabric.endpoints(Duration::from_secs(1)).unwrap()[0];
    /// assert_eq!(e.to_string(), format!("svc calc @{}", fabric.id()));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)?;
        if let Some(o) = &self.owner {
            write!(f, " @{o}")?;
        }
        Ok(())
    }
}

/// What a [`Watcher`] reports.
///
/// ```
/// # use std::time::Duration;
/// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
/// #     .listen("tcp/127.0.0.1:0").namespace("doc-change").open().unwrap();
/// let w = fabric.watch().unwrap();
/// let s = fabric.server("calc").bind().unwrap();
/// match w.next_timeout(Duration::from_secs(5)).unwrap() {
///     Some(ipckit::fabric::Change::Appeared(e)) => assert_eq!(e.name, "calc"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The endpoint's token is there: it was live when the watch began,
    /// or it appeared since.
    Appeared(Endpoint),
    /// Its token is gone: the owner closed it or died, or the link to its
    /// machine broke for longer than the Zenoh lease.
    Gone(Endpoint),
}

impl Change {
    /// The endpoint that appeared or went.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-change-ep").open().unwrap();
    /// # let w = fabric.watch().unwrap();
    /// # let _s = fabric.server("calc").bind().unwrap();
    /// let c = w.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    /// assert_eq!(c.endpoint().kind, "svc");
    /// ```
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Change::Appeared(e) | Change::Gone(e) => e,
        }
    }
}

/// Appearances and disappearances of the namespace's endpoints on the
/// whole fabric, made by [`Fabric::watch`]. It first reports every
/// endpoint live at that moment as [`Change::Appeared`], then each change
/// as it comes. Stops when dropped.
///
/// ```
/// # use std::time::Duration;
/// # use ipckit::fabric::Change;
/// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
/// #     .listen("tcp/127.0.0.1:0").namespace("doc-watcher").open().unwrap();
/// let w = fabric.watch().unwrap();
/// let s = fabric.server("calc").bind().unwrap();
/// assert!(matches!(w.next_timeout(Duration::from_secs(5)).unwrap(), Some(Change::Appeared(_))));
/// drop(s);
/// assert!(matches!(w.next_timeout(Duration::from_secs(5)).unwrap(), Some(Change::Gone(_))));
/// assert_eq!(w.next_timeout(Duration::from_millis(10)).unwrap(), None);
/// ```
pub struct Watcher {
    rx: mpsc::Receiver<Change>,
    _subscriber: zenoh::pubsub::Subscriber<()>,
}

impl Watcher {
    /// The next change, waiting up to `timeout`; `None` if none came.
    ///
    /// Errors: [`ErrorKind::PeerGone`] if the fabric's session closed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-next").open().unwrap();
    /// let w = fabric.watch().unwrap();
    /// assert_eq!(w.next_timeout(Duration::from_millis(10)).unwrap(), None);
    /// ```
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Change>> {
        match self.rx.recv_timeout(timeout) {
            Ok(c) => Ok(Some(c)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::new(
                ErrorKind::PeerGone,
                "the fabric session closed; open a new one to watch again",
            )),
        }
    }

    /// The next change if one is waiting, without blocking.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-try-next").open().unwrap();
    /// let w = fabric.watch().unwrap();
    /// assert_eq!(w.try_next(), None);
    /// ```
    pub fn try_next(&self) -> Option<Change> {
        self.rx.try_recv().ok()
    }
}

impl Iterator for Watcher {
    type Item = Change;

    /// The next change, waiting as long as it takes (`None` once the
    /// session has closed).
    fn next(&mut self) -> Option<Change> {
        self.rx.recv().ok()
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fabric::Watcher").finish_non_exhaustive()
    }
}

impl Fabric {
    /// The live endpoints of this fabric's namespace on every machine the
    /// session reaches (services, DDE servers, …; this process's own
    /// included), sorted by kind, name and owner. Asks the fabric and
    /// gathers the answers for at most `timeout` (they normally all come
    /// within milliseconds; a freshly opened session may need a moment to
    /// meet its peers first).
    ///
    /// Errors: [`ErrorKind::Io`] (Zenoh refused the query).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-endpoints").open().unwrap();
    /// assert!(fabric.endpoints(Duration::from_secs(1)).unwrap().is_empty());
    /// let _a = fabric.server("a").bind().unwrap();
    /// let _b = fabric.server("b/c").bind().unwrap();
    /// let names: Vec<_> = fabric.endpoints(Duration::from_secs(1)).unwrap()
    ///     .into_iter().map(|e| e.name).collect();
    /// assert_eq!(names, ["a", "b/c"]);
    /// ```
    pub fn endpoints(&self, timeout: Duration) -> Result<Vec<Endpoint>> {
        let prefix = self.key_prefix().to_string();
        let replies = self
            .session()
            .liveliness()
            .get(format!("{prefix}/alive/**"))
            .timeout(timeout)
            .wait()
            .map_err(|e| zerr("cannot query the fabric's liveliness tokens", e))?;
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Ok(Some(r)) = replies.recv_deadline(deadline) {
            if let Ok(sample) = r.result() {
                if let Some(e) = Endpoint::from_key(&prefix, sample.key_expr().as_str()) {
                    out.push(e);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The Zenoh ids of the peers this session is connected to now (not
    /// routers; not itself), sorted. Empty while it has met nobody.
    ///
    /// ```
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-peers").open().unwrap();
    /// assert!(fabric.peers().is_empty());
    /// ```
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .session()
            .info()
            .peers_zid()
            .wait()
            .map(|z| z.to_string())
            .collect();
        v.sort();
        v
    }

    /// Watch the namespace's endpoints on the whole fabric: a [`Watcher`]
    /// that first reports those live now, then each appearance and
    /// disappearance.
    ///
    /// Errors: [`ErrorKind::Io`] (Zenoh refused the subscription).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let fabric = ipckit::fabric::Fabric::builder().multicast_scouting(false)
    /// #     .listen("tcp/127.0.0.1:0").namespace("doc-watch").open().unwrap();
    /// let _s = fabric.server("early").bind().unwrap();
    /// let w = fabric.watch().unwrap();
    /// let c = w.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    /// assert_eq!(c, ipckit::fabric::Change::Appeared(c.endpoint().clone()));
    /// assert_eq!(c.endpoint().name, "early");
    /// ```
    pub fn watch(&self) -> Result<Watcher> {
        let prefix = self.key_prefix().to_string();
        let (tx, rx) = mpsc::channel();
        let p = prefix.clone();
        let subscriber = self
            .session()
            .liveliness()
            .declare_subscriber(format!("{prefix}/alive/**"))
            .history(true)
            .callback(move |sample| {
                let Some(e) = Endpoint::from_key(&p, sample.key_expr().as_str()) else {
                    return;
                };
                let c = match sample.kind() {
                    zenoh::sample::SampleKind::Put => Change::Appeared(e),
                    zenoh::sample::SampleKind::Delete => Change::Gone(e),
                };
                let _ = tx.send(c);
            })
            .wait()
            .map_err(|e| zerr("cannot watch the fabric's liveliness tokens", e))?;
        Ok(Watcher {
            rx,
            _subscriber: subscriber,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn keys_parse() {
        let e = Endpoint::from_key("ipckit/n", "ipckit/n/alive/svc/a/b/.0f1e").unwrap();
        assert_eq!(
            (e.kind.as_str(), e.name.as_str(), e.owner.as_deref()),
            ("svc", "a/b", Some("0f1e"))
        );
        let e = Endpoint::from_key("ipckit/n", "ipckit/n/alive/dde/x").unwrap();
        assert_eq!(
            (e.kind.as_str(), e.name.as_str(), e.owner),
            ("dde", "x", None)
        );
        assert_eq!(Endpoint::from_key("ipckit/n", "ipckit/n/alive/svc"), None);
        assert_eq!(Endpoint::from_key("ipckit/n", "ipckit/m/alive/svc/a"), None);
    }
}
