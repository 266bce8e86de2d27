//! The server side of every mechanism: one readiness loop per server.
//!
//! A [`Reactor`] owns the server's listening sockets and every connection
//! it accepted, all watched by one `epoll` ([`crate::sys::poll`]). Its one
//! thread accepts (checking [`Limits`] per process, per user, per TCP
//! address and in total), sends the mechanism's hello, reads what peers
//! send without ever blocking, cuts it into frames, and hands each whole
//! frame to the mechanism's [`Protocol`]. Idle connections cost a
//! descriptor and no thread; slow work goes to a [`super::pool::Pool`].
//!
//! Memory is allocated as bytes arrive, never as announced; a peer that
//! stalls inside a frame or owes a handshake past its deadline is dropped;
//! out of descriptors, accepting backs off instead of spinning.
//!
//! On Windows the same loop serves named-pipe connections: the poller
//! watches the read-ahead buffer each connection's reader thread fills
//! (`sys::net`), so there an idle connection costs one parked thread. The
//! stats file is not published, and a refused connection is kept open until
//! its peer has read the refusal (closing a pipe instance would discard it).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::listen::Listening;
use crate::limits::Limits;
use crate::sys;
use crate::sys::net::{AsSocket, PassedFd, Socket, SocketRef};
use crate::sys::poll::{Poller, Ready, Waker};

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub addr: Option<SocketAddr>,
}

impl Peer {
    /// The peer of `fd`: credentials for a Unix socket, the address for TCP.
    pub(crate) fn of(fd: SocketRef<'_>, tcp: bool) -> Peer {
        if tcp {
            return Peer {
                addr: sys::net::tcp_peer_addr(fd),
                ..Peer::default()
            };
        }
        match sys::net::peer_cred(fd) {
            Ok((pid, uid, gid)) => Peer {
                pid: Some(pid),
                uid: Some(uid),
                gid: Some(gid),
                addr: None,
            },
            Err(_) => Peer::default(),
        }
    }

    /// "pid 12 (uid 1000)" or "tcp 10.0.0.1:4000", for logs.
    pub(crate) fn describe(&self) -> String {
        match (self.pid, self.uid, self.addr) {
            (_, _, Some(a)) => format!("tcp {a}"),
            (Some(p), Some(u), _) => format!("pid {p} (uid {u})"),
            _ => "a peer of unknown identity".into(),
        }
    }
}

/// Why a peer was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_process` reached for this pid.
    Process,
    /// `max_connections_per_user` reached for this uid.
    User,
    /// `max_connections_per_address` reached for this TCP address.
    Address,
    /// The mechanism's own instance limit (a pipe's `max_instances`).
    Instances,
    /// The mechanism does not allow this peer (a pipe's uid allow-list).
    Denied,
}

impl Refusal {
    /// The hello status that tells a refused peer why: denied (2) for a
    /// peer that is not allowed, busy (1) for every limit.
    pub(crate) fn status(self) -> u8 {
        match self {
            Refusal::Denied => super::hello::STATUS_DENIED,
            _ => super::hello::STATUS_BUSY,
        }
    }
}

/// What a server refused or dropped, and why (shown by
/// `ipckit.describe` and `ipckit ls --json`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub refused_total: AtomicU64,
    pub refused_process: AtomicU64,
    pub refused_user: AtomicU64,
    pub refused_address: AtomicU64,
    pub refused_instances: AtomicU64,
    pub refused_denied: AtomicU64,
    pub dropped_handshake: AtomicU64,
    pub dropped_stalled: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub busy: AtomicU64,
    pub accept_backoffs: AtomicU64,
}

/// What a server accepted, refused and dropped so far, and why (its
/// [`crate::Limits`] at work). Services show it in `ipckit.describe`.
///
/// ```
/// let s = ipckit::ConnStats::default();
/// assert_eq!(s.refused_per_process, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStats {
    /// Connections accepted since the server started.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Refused: `max_connections` reached.
    pub refused_total: u64,
    /// Refused: `max_connections_per_process` reached.
    pub refused_per_process: u64,
    /// Refused: `max_connections_per_user` reached.
    pub refused_per_user: u64,
    /// Refused: `max_connections_per_address` reached.
    pub refused_per_address: u64,
    /// Refused: every instance in use (a pipe's `max_instances`).
    #[serde(default)]
    pub refused_instances: u64,
    /// Refused: the peer's uid is not allowed (a pipe's allow-list).
    #[serde(default)]
    pub refused_denied: u64,
    /// Dropped: no handshake within `handshake_timeout`.
    pub dropped_handshake: u64,
    /// Dropped: stalled inside a frame past `stall_timeout`, or not reading
    /// replies.
    pub dropped_stalled: u64,
    /// Dropped: broke the protocol.
    pub dropped_malformed: u64,
    /// Requests answered `Busy` (calls in flight over the limit).
    pub busy: u64,
    /// Times accepting paused because descriptors ran out.
    pub accept_backoffs: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ConnStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnStats {
            accepted: g(&self.accepted),
            open: g(&self.open),
            refused_total: g(&self.refused_total),
            refused_per_process: g(&self.refused_process),
            refused_per_user: g(&self.refused_user),
            refused_per_address: g(&self.refused_address),
            refused_instances: g(&self.refused_instances),
            refused_denied: g(&self.refused_denied),
            dropped_handshake: g(&self.dropped_handshake),
            dropped_stalled: g(&self.dropped_stalled),
            dropped_malformed: g(&self.dropped_malformed),
            busy: g(&self.busy),
            accept_backoffs: g(&self.accept_backoffs),
        }
    }
}

/// How long the frame starting with a header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameLen {
    /// A frame of this many bytes, header included: deliver it whole.
    Whole(usize),
    /// Over the limit: read and drop this many bytes (header included),
    /// then deliver the header alone with [`Frame::skipped`] set.
    Skip(usize),
}

/// One frame as a protocol receives it.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Header and body (only the header when `skipped`).
    pub bytes: Vec<u8>,
    /// Descriptors passed (`SCM_RIGHTS`) since the previous frame.
    pub fds: Vec<PassedFd>,
    /// The body was over the limit and was dropped.
    pub skipped: bool,
}

/// What the reactor does with a connection after a protocol callback.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Go on reading.
    Continue,
    /// Stop reading until [`Conn::resume`] (the protocol is busy with what
    /// it got; frames already received wait).
    Pause,
    /// Forget the connection without closing it: the protocol owns it now.
    Detach,
    /// Close it (with why, for the log).
    Close(Option<String>),
}

/// A mechanism's side of the readiness loop. Callbacks run on the
/// reactor's thread and must not block: slow work goes to a pool.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// Length of the fixed frame header.
    fn header_len(&self) -> usize;
    /// The length of the frame this header opens, or why it is malformed
    /// (the connection is then closed).
    fn frame_len(&self, header: &[u8]) -> Result<FrameLen, String>;
    /// Whether the mechanism takes this connection (the connection
    /// limits already passed); a refused one gets [`refusal`](Self::refusal)
    /// and is closed, counted under its reason.
    fn admit(&self, _conn: &Conn) -> Result<(), Refusal> {
        Ok(())
    }
    /// The bytes an admitted connection gets first (its hello).
    fn hello(&self, conn: &Conn) -> Vec<u8>;
    /// The bytes a refused connection gets before it is closed.
    fn refusal(&self, why: Refusal) -> Vec<u8>;
    /// Whether this connection's first frame is due within the handshake
    /// deadline.
    fn owes_handshake(&self, _conn: &Conn) -> bool {
        false
    }
    /// A connection was admitted and greeted; `Detach` hands it over
    /// without reading from it.
    fn on_open(&self, _conn: &Arc<Conn>) -> Flow {
        Flow::Continue
    }
    /// A whole frame arrived.
    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow;
    /// The peer shut down its sending side between frames: it may still
    /// read (half-close). `Continue` keeps the connection open (unwatched)
    /// until the protocol closes it with [`Conn::close`]. By default the
    /// connection closes at once if no request is in flight
    /// ([`Conn::begin`]), else when the last one ends.
    fn on_eof(&self, conn: &Arc<Conn>) -> Flow {
        if conn.mark_eof() {
            Flow::Continue
        } else {
            Flow::Close(None)
        }
    }
    /// The connection was closed; `why` is set when it misbehaved.
    fn on_close(&self, _conn: &Arc<Conn>, _why: Option<&str>) {}
    /// `on_frame` detached the connection with bytes (and descriptors)
    /// already read from it past that frame: they come first in what its
    /// new owner reads, ahead of anything still in the socket.
    fn on_detach(&self, _conn: &Arc<Conn>, _unread: Vec<u8>, _fds: Vec<PassedFd>) {}
}

/// Connection counts by peer, shared with live connections so a
/// connection handed over to its user ([`Flow::Detach`]) still counts
/// until it is dropped.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_pid: HashMap<u32, usize>,
    by_uid: HashMap<u32, usize>,
    by_ip: HashMap<IpAddr, usize>,
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K) {
    if let Some(n) = m.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            m.remove(&k);
        }
    }
}

/// One admitted connection's place in the counts; released on drop.
#[derive(Debug)]
pub(crate) struct Admission {
    counts: Arc<Mutex<Counts>>,
    counters: Arc<Counters>,
    peer: Peer,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total -= 1;
        if let Some(p) = self.peer.pid {
            dec(&mut c.by_pid, p);
        }
        if let Some(u) = self.peer.uid {
            dec(&mut c.by_uid, u);
        }
        if let Some(a) = self.peer.addr {
            dec(&mut c.by_ip, a.ip());
        }
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Cmd {
    Resume(u64),
    Close(u64, Option<String>),
    /// Stop; `true`: hand the open connections back instead of closing.
    Stop(bool),
}

/// What the reactor's thread shares with its handles and connections.
struct Ctl {
    cmds: Mutex<VecDeque<Cmd>>,
    wake: Waker,
    /// Connections handed back by a keeping stop.
    kept: Mutex<Vec<Arc<Conn>>>,
    /// Signalled (under `idle_lock`) when a connection's last request in
    /// flight ends: what [`Reactor::drain`] waits for.
    idle_lock: Mutex<()>,
    idle: Condvar,
}

impl Ctl {
    fn push(&self, c: Cmd) {
        lock(&self.cmds).push_back(c);
        self.wake.wake();
    }
}

/// One connection of a server.
pub(crate) struct Conn {
    id: u64,
    fd: Socket,
    peer: Peer,
    tcp: bool,
    write: Mutex<()>,
    in_flight: AtomicUsize,
    slots: AtomicUsize,
    frames: AtomicU64,
    eof: AtomicBool,
    closed: AtomicBool,
    admission: Mutex<Option<Admission>>,
    ctl: Weak<Ctl>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Conn {
    /// The connection's number (unique in its server).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn fd(&self) -> SocketRef<'_> {
        self.fd.as_socket()
    }

    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    pub(crate) fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// Write all of `bytes` (whole, never interleaved with another
    /// writer's). A peer that does not read for the stall timeout makes
    /// this fail, and the connection is closed.
    pub(crate) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let _g = lock(&self.write);
        let r = sys::net::send_all(self.fd.as_socket(), bytes);
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut {
                self.close(Some("it stopped reading its replies".into()));
            }
        }
        r
    }

    /// Frames received so far, the one being delivered included.
    pub(crate) fn frames_seen(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    /// Read again after [`Flow::Pause`].
    pub(crate) fn resume(&self) {
        if let Some(ctl) = self.ctl.upgrade() {
            ctl.push(Cmd::Resume(self.id));
        }
    }

    /// Close the connection (the peer sees end-of-stream).
    pub(crate) fn close(&self, why: Option<String>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        sys::net::shutdown(self.fd.as_socket());
        if let Some(ctl) = self.ctl.upgrade() {
            ctl.push(Cmd::Close(self.id, why));
        }
    }

    /// Stop receiving (the peer's further bytes are dropped); replies can
    /// still be sent.
    pub(crate) fn shutdown_read(&self) {
        sys::net::shutdown_read(self.fd.as_socket());
    }

    /// Take one of `max` request slots (calls being worked on); `false`
    /// if all are taken. A slot is given back with
    /// [`free_slot`](Self::free_slot) before the reply is written, so a
    /// peer that waits for each reply never finds the slots full.
    pub(crate) fn try_slot(&self, max: usize) -> bool {
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give back a slot taken with [`try_slot`](Self::try_slot).
    pub(crate) fn free_slot(&self) {
        self.slots.fetch_sub(1, Ordering::AcqRel);
    }

    /// Count a request in flight; returns how many are now.
    pub(crate) fn begin(&self) -> usize {
        self.in_flight.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A request finished; after the peer's end of stream, the last one
    /// closes the connection.
    pub(crate) fn end(&self) {
        let left = self.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        if left > 0 {
            return;
        }
        if self.eof.load(Ordering::Acquire) {
            self.close(None);
        }
        if let Some(ctl) = self.ctl.upgrade() {
            let _g = lock(&ctl.idle_lock);
            ctl.idle.notify_all();
        }
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Mark that the peer has sent everything; returns whether requests
    /// are still in flight (then the last [`end`](Self::end) closes).
    pub(crate) fn mark_eof(&self) -> bool {
        self.eof.store(true, Ordering::Release);
        self.in_flight() > 0
    }

    /// Take this connection's place in the counts (a protocol that detaches
    /// a connection keeps it alive for as long as the connection lives).
    pub(crate) fn take_admission(&self) -> Option<Admission> {
        lock(&self.admission).take()
    }
}

struct Entry {
    conn: Arc<Conn>,
    pending: Vec<u8>,
    fds: Vec<PassedFd>,
    /// Bytes still to drop of an oversized frame, and its header.
    skip: usize,
    skipped_header: Vec<u8>,
    /// When the frame being read started, and when its last byte came.
    frame_started: Option<Instant>,
    last_progress: Instant,
    handshake_by: Option<Instant>,
    watched: bool,
}

impl Entry {
    fn in_frame(&self) -> bool {
        !self.pending.is_empty() || self.skip > 0
    }
}

/// Tokens below this are the wake pipe (0) and listeners (1..).
const FIRST_CONN: u64 = 16;
/// Bytes read from one connection per readiness event (fairness).
const READ_BUDGET: usize = 1 << 20;
/// Chunk read at once.
const CHUNK: usize = 64 * 1024;
/// Most descriptors a peer may pass ahead of one frame.
const MAX_FDS: usize = 4;
/// How often deadlines are checked while some connection has one.
const SWEEP: Duration = Duration::from_millis(100);
/// Least time between two writes of the published counters.
const PUBLISH: Duration = Duration::from_millis(250);
/// How long a refused connection is kept open for its peer to read the
/// refusal (Windows).
#[cfg(windows)]
const LINGER: Duration = Duration::from_secs(2);
/// Most refused connections kept open at once (Windows).
#[cfg(windows)]
const MAX_LINGERING: usize = 64;

/// A refused connection kept open (Windows; see `Loop::lingering`).
#[cfg(windows)]
enum Refused {
    Socket(Socket),
    Conn(Arc<Conn>),
}

#[cfg(windows)]
impl Refused {
    fn socket(&self) -> SocketRef<'_> {
        match self {
            Refused::Socket(s) => s.as_socket(),
            Refused::Conn(c) => c.fd(),
        }
    }
}

/// First pause of accepting when descriptors ran out (doubles to 1 s).
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// A running readiness loop; dropping it stops the loop and closes every
/// connection it still owns.
pub(crate) struct Reactor {
    ctl: Arc<Ctl>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").finish_non_exhaustive()
    }
}

impl Reactor {
    /// Start serving `listeners` (each with whether it is TCP) with
    /// `protocol` under `limits`; the thread is named `ipckit-<label>`.
    pub(crate) fn start<P: Protocol>(
        label: &str,
        protocol: Arc<P>,
        listening: Listening,
        limits: Limits,
    ) -> io::Result<Reactor> {
        #[cfg(unix)]
        let Listening {
            listeners,
            stats_path,
        } = listening;
        #[cfg(windows)]
        let Listening { listeners } = listening;
        let poller = Poller::new()?;
        let wake = poller.waker(0)?;
        for (i, (l, _)) in listeners.iter().enumerate() {
            sys::net::set_nonblocking(l.as_socket())?;
            poller.add(l.as_socket(), 1 + i as u64)?;
        }
        let ctl = Arc::new(Ctl {
            cmds: Mutex::new(VecDeque::new()),
            wake: wake.clone(),
            kept: Mutex::new(Vec::new()),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        });
        let counters = Arc::new(Counters::default());
        let mut lp = Loop {
            protocol,
            poller,
            wake,
            listeners,
            limits,
            own_uid: sys::uid(),
            ctl: Arc::downgrade(&ctl),
            ctl_strong: ctl.clone(),
            counters: counters.clone(),
            counts: Arc::new(Mutex::new(Counts::default())),
            entries: HashMap::new(),
            #[cfg(windows)]
            lingering: Vec::new(),
            next_id: FIRST_CONN,
            paused_until: None,
            backoff: BACKOFF_MIN,
            scratch: vec![0u8; CHUNK],
            #[cfg(unix)]
            stats_path,
            published: None,
            publish_at: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("ipckit-{label}"))
            .spawn(move || lp.run())?;
        Ok(Reactor {
            ctl,
            thread: Some(thread),
            counters,
        })
    }

    /// The server's counters.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Stop: stop accepting and reading, close every connection still
    /// owned, and wait for the loop's thread.
    pub(crate) fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.ctl.push(Cmd::Stop(false));
            let _ = t.join();
        }
    }

    /// Stop gracefully: stop accepting and reading, wait at most `grace`
    /// until no connection has a request in flight ([`Conn::begin`] /
    /// [`Conn::end`]: its reply is written), then close every connection.
    /// Returns whether every request finished.
    pub(crate) fn drain(&mut self, grace: Duration) -> bool {
        let conns = self.stop_keep();
        self.finish(conns, grace)
    }

    /// The second half of [`drain`](Self::drain), for connections taken
    /// with [`stop_keep`](Self::stop_keep): stop reading them, wait at most
    /// `grace` for their requests in flight, close them.
    pub(crate) fn finish(&self, conns: Vec<Arc<Conn>>, grace: Duration) -> bool {
        for c in &conns {
            c.shutdown_read();
        }
        let deadline = Instant::now() + grace;
        let mut g = lock(&self.ctl.idle_lock);
        let finished = loop {
            if conns.iter().all(|c| c.in_flight() == 0) {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            g = self
                .ctl
                .idle
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        drop(g);
        for c in &conns {
            c.close(None);
        }
        finished
    }

    /// Stop accepting and reading, and hand back the connections still
    /// open, unclosed (a graceful shutdown answers what is in flight on
    /// them first).
    pub(crate) fn stop_keep(&mut self) -> Vec<Arc<Conn>> {
        if let Some(t) = self.thread.take() {
            self.ctl.push(Cmd::Stop(true));
            let _ = t.join();
        }
        std::mem::take(&mut *lock(&self.ctl.kept))
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Loop<P: Protocol> {
    protocol: Arc<P>,
    poller: Poller,
    wake: Waker,
    listeners: Vec<(Socket, bool)>,
    limits: Limits,
    /// The server's uid: local peers of another uid are refused unless
    /// the limits allow them.
    own_uid: u32,
    ctl: Weak<Ctl>,
    /// Keeps the command queue alive while the loop runs.
    ctl_strong: Arc<Ctl>,
    counters: Arc<Counters>,
    counts: Arc<Mutex<Counts>>,
    entries: HashMap<u64, Entry>,
    /// Refused connections kept open until their peer has read the
    /// refusal and closed, or [`LINGER`] passed (Windows: closing a pipe
    /// instance discards what its client has not read yet).
    #[cfg(windows)]
    lingering: Vec<(Refused, Instant)>,
    next_id: u64,
    paused_until: Option<Instant>,
    backoff: Duration,
    scratch: Vec<u8>,
    /// Where the counters are published for `ipckit ls`, what was last
    /// written there, and when the next write may happen (Linux only:
    /// Windows has no endpoint records to list).
    #[cfg(unix)]
    stats_path: PathBuf,
    published: Option<ConnStats>,
    publish_at: Instant,
}

impl<P: Protocol> Loop<P> {
    fn run(&mut self) {
        let mut ready: Vec<Ready> = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            let timeout = self.timeout();
            if self.poller.wait(&mut ready, timeout).is_err() {
                // epoll itself failed: nothing sensible is left to do but
                // wait for the stop command.
                std::thread::sleep(SWEEP);
            }
            for r in ready.drain(..) {
                match r.token {
                    0 => {
                        if let Some(keep) = self.commands() {
                            self.shutdown(keep);
                            return;
                        }
                    }
                    t if t < FIRST_CONN => self.accept((t - 1) as usize),
                    id => self.readable(id),
                }
            }
            let now = Instant::now();
            if self.paused_until.is_some_and(|t| now >= t) {
                self.paused_until = None;
                for (i, (l, _)) in self.listeners.iter().enumerate() {
                    let _ = self.poller.add(l.as_socket(), 1 + i as u64);
                }
            }
            if now.duration_since(last_sweep) >= SWEEP {
                last_sweep = now;
                self.sweep(now);
            }
            self.publish(now);
            #[cfg(windows)]
            self.lingering
                .retain(|(r, by)| now < *by && !sys::net::peer_closed(r.socket()));
        }
    }

    /// Write the counters to the stats file if they changed, at most every
    /// [`PUBLISH`] (written aside, then renamed: readers never see half).
    #[cfg(unix)]
    fn publish(&mut self, now: Instant) {
        if now < self.publish_at {
            return;
        }
        let snap = self.counters.snapshot();
        if self.published.as_ref() == Some(&snap) {
            return;
        }
        let tmp = self.stats_path.with_extension("stats.part");
        let text = serde_json::to_vec(&snap).expect("counters serialise");
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &self.stats_path).is_ok() {
            self.published = Some(snap);
        }
        self.publish_at = now + PUBLISH;
    }

    /// Windows publishes no counters (no endpoint records to list).
    #[cfg(windows)]
    fn publish(&mut self, _now: Instant) {}

    fn timeout(&self) -> Option<Duration> {
        // Counters changed since the last write: come back to write them.
        if cfg!(unix) && self.published.as_ref() != Some(&self.counters.snapshot()) {
            return Some(PUBLISH);
        }
        #[cfg(windows)]
        if !self.lingering.is_empty() {
            return Some(SWEEP);
        }
        let timed = self.paused_until.is_some()
            || self
                .entries
                .values()
                .any(|e| e.handshake_by.is_some() || (e.watched && e.in_frame()));
        timed.then_some(SWEEP)
    }

    /// Run queued commands; `Some(keep)` on stop.
    fn commands(&mut self) -> Option<bool> {
        self.wake.drain();
        let Some(ctl) = self.ctl.upgrade() else {
            return Some(false);
        };
        let cmds: Vec<Cmd> = lock(&ctl.cmds).drain(..).collect();
        for c in cmds {
            match c {
                Cmd::Stop(keep) => return Some(keep),
                Cmd::Close(id, why) => self.close(id, why),
                Cmd::Resume(id) => {
                    if let Some(e) = self.entries.get_mut(&id) {
                        if !e.watched && !e.conn.eof.load(Ordering::Acquire) {
                            e.watched = self.poller.add(e.conn.fd.as_socket(), id).is_ok();
                            e.last_progress = Instant::now();
                        }
                    }
                    // Frames that arrived before the pause wait in the
                    // buffer: deliver them now.
                    self.frames(id);
                }
            }
        }
        None
    }

    fn shutdown(&mut self, keep: bool) {
        for (l, _) in std::mem::take(&mut self.listeners) {
            self.poller.delete(l.as_socket());
        }
        // The endpoint's record goes after this; its counters go now.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.stats_path);
        if keep {
            let conns = self.entries.drain().map(|(_, e)| e.conn);
            lock(&self.ctl_strong.kept).extend(conns);
            return;
        }
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            self.close(id, None);
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            let Some((l, tcp)) = self.listeners.get(index) else {
                return;
            };
            let tcp = *tcp;
            match sys::net::accept_nowait(l.as_socket()) {
                Ok(Some(fd)) => {
                    self.backoff = BACKOFF_MIN;
                    self.admit(fd, tcp);
                }
                Ok(None) => return,
                Err(e) if sys::net::is_resource_exhaustion(&e) => {
                    // Out of descriptors: stop watching the listeners for a
                    // while instead of spinning on a readiness we cannot
                    // act on; connections wait in the backlog.
                    self.counters
                        .accept_backoffs
                        .fetch_add(1, Ordering::Relaxed);
                    for (l, _) in &self.listeners {
                        self.poller.delete(l.as_socket());
                    }
                    self.paused_until = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                    return;
                }
                Err(_) => return,
            }
        }
    }

    fn admit(&mut self, fd: Socket, tcp: bool) {
        let peer = Peer::of(fd.as_socket(), tcp);
        let refusal = {
            let mut c = lock(&self.counts);
            let l = &self.limits;
            let refusal = if c.total >= l.get_max_connections() {
                Some(Refusal::Total)
            } else if peer.pid.is_some_and(|p| {
                c.by_pid.get(&p).copied().unwrap_or(0) >= l.get_max_connections_per_process()
            }) {
                Some(Refusal::Process)
            } else if peer.uid.is_some_and(|u| {
                c.by_uid.get(&u).copied().unwrap_or(0) >= l.get_max_connections_per_user()
            }) {
                Some(Refusal::User)
            } else if peer.uid.is_some_and(|u| !l.admits_uid(u, self.own_uid))
                || (!tcp && peer.uid.is_none())
            {
                Some(Refusal::Denied)
            } else if peer.addr.is_some_and(|a| {
                c.by_ip.get(&a.ip()).copied().unwrap_or(0) >= l.get_max_connections_per_address()
            }) {
                Some(Refusal::Address)
            } else {
                None
            };
            if refusal.is_none() {
                c.total += 1;
                if let Some(p) = peer.pid {
                    *c.by_pid.entry(p).or_default() += 1;
                }
                if let Some(u) = peer.uid {
                    *c.by_uid.entry(u).or_default() += 1;
                }
                if let Some(a) = peer.addr {
                    *c.by_ip.entry(a.ip()).or_default() += 1;
                }
            }
            refusal
        };
        if let Some(why) = refusal {
            self.refuse(fd.as_socket(), why);
            #[cfg(windows)]
            self.linger(Refused::Socket(fd));
            return;
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        let admission = Admission {
            counts: self.counts.clone(),
            counters: self.counters.clone(),
            peer: peer.clone(),
        };
        if tcp {
            sys::net::set_nodelay(fd.as_socket());
        }
        let _ = sys::net::set_send_timeout(fd.as_socket(), Some(self.limits.get_stall_timeout()));
        let id = self.next_id;
        self.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            fd,
            peer,
            tcp,
            write: Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            eof: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            admission: Mutex::new(Some(admission)),
            ctl: self.ctl.clone(),
        });
        if let Err(why) = self.protocol.admit(&conn) {
            self.refuse(conn.fd.as_socket(), why);
            #[cfg(windows)]
            {
                drop(conn.take_admission());
                self.linger(Refused::Conn(conn));
            }
            return;
        }
        if conn.send(&self.protocol.hello(&conn)).is_err() {
            return;
        }
        let now = Instant::now();
        let handshake_by = self
            .protocol
            .owes_handshake(&conn)
            .then(|| now + self.limits.get_handshake_timeout());
        match self.protocol.on_open(&conn) {
            Flow::Continue | Flow::Pause => {}
            Flow::Detach => return,
            Flow::Close(_) => return,
        }
        let watched = self.poller.add(conn.fd.as_socket(), id).is_ok();
        self.entries.insert(
            id,
            Entry {
                conn,
                pending: Vec::new(),
                fds: Vec::new(),
                skip: 0,
                skipped_header: Vec::new(),
                frame_started: None,
                last_progress: now,
                handshake_by,
                watched,
            },
        );
    }

    /// Keep a refused connection open until its peer has read the refusal
    /// (see `lingering`); past [`MAX_LINGERING`] it is closed at once.
    #[cfg(windows)]
    fn linger(&mut self, r: Refused) {
        if self.lingering.len() < MAX_LINGERING {
            self.lingering.push((r, Instant::now() + LINGER));
        }
    }

    /// Count a refusal and tell the peer (it is closed when its socket
    /// drops).
    fn refuse(&self, fd: SocketRef<'_>, why: Refusal) {
        let c = &self.counters;
        let counter = match why {
            Refusal::Total => &c.refused_total,
            Refusal::Process => &c.refused_process,
            Refusal::User => &c.refused_user,
            Refusal::Address => &c.refused_address,
            Refusal::Instances => &c.refused_instances,
            Refusal::Denied => &c.refused_denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        sys::net::send_nowait(fd, &self.protocol.refusal(why));
    }

    /// Read what connection `id` sent, then deliver the whole frames.
    fn readable(&mut self, id: u64) {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(e) = self.entries.get_mut(&id) else {
                return;
            };
            if !e.watched {
                return;
            }
            match sys::net::recv_nowait_with_fds(
                e.conn.fd.as_socket(),
                &mut self.scratch,
                &mut e.fds,
            ) {
                Ok(None) => break,
                Ok(Some(0)) => {
                    self.frames(id);
                    self.eof(id);
                    return;
                }
                Ok(Some(_)) if e.fds.len() > MAX_FDS => {
                    let why = format!("it passed more than {MAX_FDS} descriptors at once");
                    self.counters
                        .dropped_malformed
                        .fetch_add(1, Ordering::Relaxed);
                    self.close(id, Some(why));
                    return;
                }
                Ok(Some(n)) => {
                    budget = budget.saturating_sub(n);
                    let now = Instant::now();
                    if !e.in_frame() {
                        e.frame_started = Some(now);
                    }
                    e.last_progress = now;
                    // Bytes of an oversized frame are dropped as they come.
                    let mut data = &self.scratch[..n];
                    if e.skip > 0 {
                        let d = e.skip.min(data.len());
                        e.skip -= d;
                        data = &data[d..];
                    }
                    e.pending.extend_from_slice(data);
                    if !self.frames(id) {
                        return;
                    }
                }
                Err(err) => {
                    let why = (err.kind() != io::ErrorKind::ConnectionReset)
                        .then(|| format!("socket error: {err}"));
                    self.close(id, why);
                    return;
                }
            }
        }
    }

    /// Deliver every whole frame buffered for `id`; `false` if the
    /// connection is no longer being read (paused, detached, closed).
    fn frames(&mut self, id: u64) -> bool {
        let hlen = self.protocol.header_len();
        loop {
            let Some(e) = self.entries.get_mut(&id) else {
                return false;
            };
            if !e.watched {
                return false;
            }
            let frame = if !e.skipped_header.is_empty() {
                if e.skip > 0 {
                    return true;
                }
                Frame {
                    bytes: std::mem::take(&mut e.skipped_header),
                    fds: std::mem::take(&mut e.fds),
                    skipped: true,
                }
            } else {
                if e.pending.len() < hlen {
                    if e.pending.is_empty() {
                        e.frame_started = None;
                    }
                    return e.watched;
                }
                match self.protocol.frame_len(&e.pending[..hlen]) {
                    Err(why) => {
                        self.counters
                            .dropped_malformed
                            .fetch_add(1, Ordering::Relaxed);
                        self.close(id, Some(why));
                        return false;
                    }
                    Ok(FrameLen::Whole(total)) => {
                        if e.pending.len() < total {
                            return e.watched;
                        }
                        let rest = e.pending.split_off(total);
                        let bytes = std::mem::replace(&mut e.pending, rest);
                        Frame {
                            bytes,
                            fds: std::mem::take(&mut e.fds),
                            skipped: false,
                        }
                    }
                    Ok(FrameLen::Skip(total)) => {
                        e.skipped_header = e.pending[..hlen].to_vec();
                        let d = total.min(e.pending.len());
                        e.pending.drain(..d);
                        e.skip = total - d;
                        continue;
                    }
                }
            };
            e.handshake_by = None;
            if e.pending.is_empty() && e.skip == 0 {
                e.frame_started = None;
            } else {
                e.frame_started = Some(Instant::now());
            }
            let conn = e.conn.clone();
            conn.frames.fetch_add(1, Ordering::AcqRel);
            match self.protocol.on_frame(&conn, frame) {
                Flow::Continue => {}
                Flow::Pause => {
                    if let Some(e) = self.entries.get_mut(&id) {
                        if e.watched {
                            self.poller.delete(e.conn.fd.as_socket());
                            e.watched = false;
                        }
                    }
                    return false;
                }
                Flow::Detach => {
                    if let Some(mut e) = self.entries.remove(&id) {
                        self.poller.delete(e.conn.fd.as_socket());
                        let unread = std::mem::take(&mut e.pending);
                        let fds = std::mem::take(&mut e.fds);
                        self.protocol.on_detach(&e.conn, unread, fds);
                    }
                    return false;
                }
                Flow::Close(why) => {
                    self.close(id, why);
                    return false;
                }
            }
        }
    }

    fn eof(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.in_frame() || !e.skipped_header.is_empty() {
            let why = format!(
                "truncated frame: the connection ended inside a frame ({} bytes of it had arrived)",
                e.pending.len()
            );
            self.close(id, Some(why));
            return;
        }
        if e.watched {
            self.poller.delete(e.conn.fd.as_socket());
            e.watched = false;
        }
        e.conn.eof.store(true, Ordering::Release);
        let conn = e.conn.clone();
        match self.protocol.on_eof(&conn) {
            Flow::Close(why) => self.close(id, why),
            Flow::Detach => {
                self.entries.remove(&id);
            }
            Flow::Continue | Flow::Pause => {}
        }
    }

    fn close(&mut self, id: u64, why: Option<String>) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        if e.watched {
            self.poller.delete(e.conn.fd.as_socket());
        }
        e.conn.closed.store(true, Ordering::Release);
        sys::net::shutdown(e.conn.fd.as_socket());
        drop(e.conn.take_admission());
        self.protocol.on_close(&e.conn, why.as_deref());
    }

    /// Drop connections past their handshake or stall deadline.
    fn sweep(&mut self, now: Instant) {
        let stall = self.limits.get_stall_timeout();
        let hlen = self.protocol.header_len();
        let mut late: Vec<(u64, String, bool)> = Vec::new();
        for (id, e) in &self.entries {
            if let Some(by) = e.handshake_by {
                if now >= by {
                    late.push((
                        *id,
                        "it did not complete its handshake in time".into(),
                        true,
                    ));
                    continue;
                }
            }
            if !e.watched || !e.in_frame() {
                continue;
            }
            let header_late = e.skip == 0
                && e.pending.len() < hlen
                && e.frame_started
                    .is_some_and(|t| now.duration_since(t) >= stall);
            let stalled = now.duration_since(e.last_progress) >= stall;
            if header_late || stalled {
                late.push((
                    *id,
                    format!("it stalled inside a frame for {stall:?}"),
                    false,
                ));
            }
        }
        for (id, why, handshake) in late {
            let c = if handshake {
                &self.counters.dropped_handshake
            } else {
                &self.counters.dropped_stalled
            };
            c.fetch_add(1, Ordering::Relaxed);
            self.close(id, Some(why));
        }
    }
}
