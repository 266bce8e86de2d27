//! Delayed rendering: the owner's render endpoint (a Unix socket served by
//! a readiness loop) and the reader's side of a render request. Wire
//! format in `docs/PROTOCOL.md`, "Clipboard boards".

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::conn::hello::{self, Hello};
use crate::conn::pool::Pool;
use crate::conn::reactor::{Conn, Flow, Frame, FrameLen, Protocol, Refusal};
use crate::conn::{dial, io as conn_io};
use crate::error::{Error, ErrorKind};
use crate::map::SharedMap;
use crate::name::Namespace;
use crate::sys::{self, net::AsSocket as _};

use super::item::Item;
use super::Format;

pub(crate) const MAGIC: &[u8; 8] = b"IPCKCLPR";
pub(crate) const VERSION: u8 = 1;
/// Length of a request and of a response header.
pub(crate) const LEN: usize = 16;
pub(crate) const REQ_RENDER: u8 = 1;
pub(crate) const RESP_DATA: u8 = 1;
pub(crate) const RESP_ERROR: u8 = 2;
/// The item was replaced (or the sequence asked for is not the owner's).
pub(crate) const ERR_STALE: u8 = 1;
/// The format was not promised.
pub(crate) const ERR_NOT_PROMISED: u8 = 2;
/// The renderer gave nothing (it returned `None`).
pub(crate) const ERR_DECLINED: u8 = 3;
/// The rendered data is over the board's limit.
pub(crate) const ERR_TOO_LARGE: u8 = 4;
/// The renderer panicked.
pub(crate) const ERR_FAILED: u8 = 5;

pub(crate) const WHAT: &str = "clipboard owner";

/// The render callback an owner runs.
pub(crate) type Renderer = Box<dyn FnMut(Format) -> Option<Vec<u8>> + Send + 'static>;

pub(crate) fn request(format: Format, sequence: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0] = REQ_RENDER;
    b[4..8].copy_from_slice(&format.id().to_le_bytes());
    b[8..16].copy_from_slice(&sequence.to_le_bytes());
    b
}

/// `(format, sequence)`, or `None` if malformed.
pub(crate) fn parse_request(b: &[u8]) -> Option<(Format, u64)> {
    let b: &[u8; LEN] = b.try_into().ok()?;
    if b[0] != REQ_RENDER || b[1..4] != [0; 3] {
        return None;
    }
    let id = u32::from_le_bytes(b[4..8].try_into().ok()?);
    Some((
        Format::from_id(id),
        u64::from_le_bytes(b[8..16].try_into().ok()?),
    ))
}

pub(crate) fn response(kind: u8, code: u8, format: Format, len: u32) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0] = kind;
    b[1] = code;
    b[4..8].copy_from_slice(&format.id().to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

/// `(kind, code, format, len)`, or `None` if malformed.
pub(crate) fn parse_response(b: &[u8; LEN]) -> Option<(u8, u8, Format, u32)> {
    if !matches!(b[0], RESP_DATA | RESP_ERROR) || b[2..4] != [0; 2] || b[12..16] != [0; 4] {
        return None;
    }
    Some((
        b[0],
        b[1],
        Format::from_id(u32::from_le_bytes(b[4..8].try_into().ok()?)),
        u32::from_le_bytes(b[8..12].try_into().ok()?),
    ))
}

/// The render endpoint of the owner holding `token` in `ns`: on Linux
/// `DIR/.clip-<token as 16 hex digits>.sock`, or `DIR/.s/clip-<token>.sock`
/// when that is too long for a socket address; on Windows the named pipe
/// `\\.\pipe\ipckit.<H>..clip-<token>` (see `conn::listen`).
pub(crate) fn socket_path(ns: &Namespace, token: u64) -> PathBuf {
    crate::conn::listen::unrecorded_endpoint(ns, &format!("clip-{token:016x}"))
}

/// Where the owner's render endpoint publishes its counters.
pub(crate) fn stats_path(ns: &Namespace, token: u64) -> PathBuf {
    ns.dir().join(format!(".clip-{token:016x}.stats"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the owner's endpoint, its workers, its watcher and the `Owner`
/// value share.
pub(crate) struct Served {
    /// The item's sequence number, once published (0 before: requests
    /// are answered "stale" until then).
    pub sequence: AtomicU64,
    pub max: usize,
    pub promised: Vec<Format>,
    /// Dropped (`None`) once the item is replaced or the owner released.
    pub renderer: Mutex<Option<Renderer>>,
    /// What was rendered so far: `Some(data)`, or `None` if declined.
    pub rendered: Mutex<HashMap<Format, Option<Arc<Vec<u8>>>>>,
    /// A handle on the board's map, to store what was rendered.
    pub map: Mutex<SharedMap>,
    /// The item is still ours.
    pub current: AtomicBool,
    pub pool: Arc<Pool>,
}

/// The outcome of one render.
pub(crate) enum Rendered {
    Data(Arc<Vec<u8>>),
    Error(u8),
}

impl Served {
    /// Render `f` (once: later requests get the same bytes) for the item
    /// of `sequence`, and store it in the board if the item is still ours.
    pub(crate) fn render(&self, f: Format, sequence: u64) -> Rendered {
        if sequence != self.sequence.load(Ordering::Acquire)
            || !self.current.load(Ordering::Acquire)
        {
            return Rendered::Error(ERR_STALE);
        }
        if !self.promised.contains(&f) {
            return Rendered::Error(ERR_NOT_PROMISED);
        }
        // One render at a time (as the owner's window thread in Win32).
        let mut renderer = lock(&self.renderer);
        if let Some(done) = lock(&self.rendered).get(&f) {
            return match done {
                Some(d) => Rendered::Data(d.clone()),
                None => Rendered::Error(ERR_DECLINED),
            };
        }
        let Some(r) = renderer.as_mut() else {
            return Rendered::Error(ERR_STALE);
        };
        let out = match catch_unwind(AssertUnwindSafe(|| r(f))) {
            Ok(out) => out,
            Err(_) => return Rendered::Error(ERR_FAILED),
        };
        drop(renderer);
        let out = match out {
            Some(d) if d.len() > self.max => return Rendered::Error(ERR_TOO_LARGE),
            Some(d) => Some(Arc::new(d)),
            None => None,
        };
        lock(&self.rendered).insert(f, out.clone());
        match out {
            Some(d) => {
                self.store(&[(f, Some(d.clone()))], false);
                Rendered::Data(d)
            }
            None => Rendered::Error(ERR_DECLINED),
        }
    }

    /// Put rendered formats into the board's item if it is still ours
    /// (`None` drops a promise the renderer declined); `last` also clears
    /// the render endpoint (the owner stops serving). Best effort: an item
    /// that no longer fits, or a board that cannot be written, keeps its
    /// promises (readers then find the owner gone: not available).
    pub(crate) fn store(&self, formats: &[(Format, Option<Arc<Vec<u8>>>)], last: bool) {
        let mut map = lock(&self.map);
        let max = self.max;
        let _ = map.update(usize::MAX, |content| {
            let Ok(mut item) = Item::decode(content, max) else {
                return Ok((None, ()));
            };
            if item.sequence != self.sequence.load(Ordering::Acquire)
                || item.owner_pid != std::process::id()
            {
                return Ok((None, ()));
            }
            for (f, data) in formats {
                match data {
                    Some(d) => {
                        if let Some(e) = item
                            .entries
                            .iter_mut()
                            .find(|e| e.format == *f && e.data.is_none())
                        {
                            e.data = Some(d.to_vec());
                        }
                    }
                    None => item
                        .entries
                        .retain(|e| !(e.format == *f && e.data.is_none())),
                }
            }
            if last {
                item.token = 0;
                // Promises no renderer can keep any more are dropped.
                item.entries.retain(|e| e.data.is_some());
            }
            if item.data_len() > max {
                return Ok((None, ()));
            }
            Ok((Some(item.encode()), ()))
        });
    }
}

/// The owner's side of the readiness loop: one request in flight per
/// connection, rendered on the pool (never on the loop's thread).
pub(crate) struct Wire(pub Arc<Served>);

impl Protocol for Wire {
    fn header_len(&self) -> usize {
        LEN
    }

    fn frame_len(&self, header: &[u8]) -> std::result::Result<FrameLen, String> {
        match parse_request(header) {
            Some(_) => Ok(FrameLen::Whole(LEN)),
            None => Err("it sent a malformed render request".into()),
        }
    }

    fn hello(&self, _conn: &Conn) -> Vec<u8> {
        Hello::ok(MAGIC, VERSION, self.0.max.min(u32::MAX as usize) as u32)
            .encode()
            .to_vec()
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        Hello::ok(MAGIC, VERSION, self.0.max.min(u32::MAX as usize) as u32)
            .with_status(why.status())
            .encode()
            .to_vec()
    }

    fn owes_handshake(&self, _conn: &Conn) -> bool {
        true
    }

    fn on_frame(&self, conn: &Arc<Conn>, frame: Frame) -> Flow {
        let Some((f, sequence)) = parse_request(&frame.bytes) else {
            return Flow::Close(Some("it sent a malformed render request".into()));
        };
        let served = self.0.clone();
        let conn = conn.clone();
        conn.begin();
        self.0.pool.submit(Box::new(move || {
            let ok = match served.render(f, sequence) {
                Rendered::Data(d) => {
                    let h = response(RESP_DATA, 0, f, d.len() as u32);
                    conn.send(&h).is_ok() && conn.send(&d).is_ok()
                }
                Rendered::Error(code) => conn.send(&response(RESP_ERROR, code, f, 0)).is_ok(),
            };
            if ok {
                conn.resume();
            } else {
                conn.close(None);
            }
            conn.end();
        }));
        Flow::Pause
    }
}

/// Why a render request got no data.
pub(crate) enum Failed {
    /// The owner is gone (no endpoint, or it closed without answering).
    Gone,
    /// The owner answered with an error code.
    Refused(u8),
    /// Anything else (timeout, impostor, garbage): reported as is.
    Error(Error),
}

/// Ask the owner of `item` (whose endpoint is `path`) to render `f`, by
/// `deadline`; the reply is at most `max` bytes.
pub(crate) fn request_render(
    ns: &Namespace,
    board: &str,
    path: &Path,
    f: Format,
    sequence: u64,
    max: usize,
    deadline: Instant,
) -> std::result::Result<Vec<u8>, Failed> {
    use std::io::ErrorKind as K;
    let late = || {
        Failed::Error(
            Error::new(
                ErrorKind::Timeout,
                format!("the board's owner did not render format {f} within the render timeout; it may be hung (raise BoardOptions::render_timeout to wait longer)"),
            )
            .with_name(board),
        )
    };
    let fd = match dial::connect_unrecorded(path, deadline) {
        Ok(fd) => fd,
        Err(e) if matches!(e.kind(), K::NotFound | K::ConnectionRefused) => {
            return Err(Failed::Gone)
        }
        Err(e) if e.kind() == K::TimedOut => return Err(late()),
        Err(e) => {
            return Err(Failed::Error(
                Error::os(e, "cannot reach the board's owner to render a format").with_name(board),
            ))
        }
    };
    match dial::server_uid(fd.as_socket()) {
        Ok(uid) if uid == sys::uid() || uid == ns.owner_uid() => {}
        Ok(uid) => {
            return Err(Failed::Error(
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("refused the board's render endpoint: it runs as uid {uid}, not as this user or the namespace's owner; another user may have put an impostor in the namespace"),
                )
                .with_name(board),
            ))
        }
        Err(e) => {
            return Err(Failed::Error(
                Error::os(e, "cannot read the render endpoint's credentials").with_name(board),
            ))
        }
    }
    let h = match hello::read(fd.as_socket(), deadline, WHAT, board) {
        Ok(h) => h,
        Err(e) if e.kind() == ErrorKind::PeerGone => return Err(Failed::Gone),
        Err(e) if e.kind() == ErrorKind::Timeout => return Err(late()),
        Err(e) => return Err(Failed::Error(e)),
    };
    let h = Hello::decode(&h, MAGIC, VERSION, WHAT, board).map_err(Failed::Error)?;
    if let Some(e) = h.refusal(WHAT, board) {
        return Err(Failed::Error(e));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(late());
    }
    let _ = conn_io::set_send_timeout(fd.as_socket(), Some(left));
    if conn_io::send_all(fd.as_socket(), &request(f, sequence)).is_err() {
        return Err(Failed::Gone);
    }
    let mut rh = [0u8; LEN];
    match conn_io::recv_exact_until(fd.as_socket(), &mut rh, deadline) {
        Ok(true) => {}
        Err(e) if e.kind() == K::TimedOut => return Err(late()),
        Ok(false) | Err(_) => return Err(Failed::Gone),
    }
    let bad = |why: String| {
        Failed::Error(
            Error::new(
                ErrorKind::Decode,
                format!("the board's owner answered a render request with {why}"),
            )
            .with_name(board),
        )
    };
    let Some((kind, code, rf, len)) = parse_response(&rh) else {
        return Err(bad("a malformed response".into()));
    };
    if rf != f {
        return Err(bad(format!("format {rf} instead of {f}")));
    }
    if kind == RESP_ERROR {
        return Err(Failed::Refused(code));
    }
    if len as usize > max {
        return Err(bad(format!("{len} bytes, over the board's limit of {max}")));
    }
    match conn_io::recv_body(fd.as_socket(), len as usize, Some(deadline)) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == K::TimedOut => Err(late()),
        Err(_) => Err(Failed::Gone),
    }
}
