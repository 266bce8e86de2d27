//! Mailslots (`CreateMailslot`) on Windows: the system's own mailslots.
//! One reader (the creator), any number of writers, one-way messages kept
//! in order until read.
//!
//! Process A (the reader):
//!
//! ```no_run
//! use ipckit::mailslot::MailslotOptions;
//! let slot = MailslotOptions::new().max_message_size(4096).create("jobs")?;
//! loop {
//!     let msg = slot.recv()?;
//!     println!("{}", String::from_utf8_lossy(&msg));
//! }
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! Process B (a writer):
//!
//! ```no_run
//! ipckit::mailslot::MailslotWriter::open("jobs")?.send(b"rebuild index")?;
//! # Ok::<(), ipckit::Error>(())
//! ```
//!
//! # Names
//!
//! The mailslot `NAME` of the namespace directory `DIR` is
//! `\\.\mailslot\ipckit.<H>.<NAME with '/' → '\'>`, where `<H>` is the
//! hash of `DIR` that named mappings use (see [`crate::shm`]); the
//! mailslot's `/` segments become the mailslot file system's own
//! pseudo-directories. A name already in the system's form,
//! `\\.\mailslot\X`, is used as is, so a program that does not use ipckit
//! can write to an ipckit mailslot (`CreateFile` + `WriteFile`) and ipckit
//! can write to a mailslot such a program created.
//!
//! Beside a mailslot with an ipckit name, the reader keeps a 16-byte
//! section `Local\ipckit.<H>.<NAME with '/' → ':'>!slot` holding its
//! `max_message_size`, so that a writer refuses a message that is too
//! large before sending it (see `docs/PROTOCOL.md`).
//!
//! # What differs from Linux
//!
//! - A write goes straight into the system's queue, which has no bound
//!   but memory: [`MailslotWriter::send`] never waits and never reports
//!   `Full`, so the writer's timeout is accepted but unused, and
//!   `queue_bound` and `limits` do not exist here. As in Win32, a write
//!   does not tell whether the reader is still there.
//! - Reads of one [`Mailslot`] from several threads take turns (the read
//!   timeout belongs to the handle): a `try_recv` waits for a `recv`
//!   already waiting on another thread.
//! - A message above the mailslot's `max_message_size` is refused with
//!   [`ErrorKind::TooLarge`] by the writer, nothing sent (for a mailslot
//!   with a name in the system's form, whose size ipckit cannot know, the
//!   system's own refusal is reported).
//! - Broadcast groups (`join_group`, `send_to_group`) are Linux-only for
//!   now, as are the server-uid checks of [`WriterOptions`] (the mailslot's security descriptor grants
//!   only its creator's user). The cross-machine path is as on Linux: a
//!   reader may also listen on UDP ([`MailslotOptions::udp`]; a thread
//!   writes each datagram for it into the mailslot) and [`send_datagram`]
//!   sends one, in the same datagram format.
//! - The async forms ([`tokio`], feature `tokio`) have the same types, less
//!   the group calls; a pending read runs on a helper thread (a mailslot
//!   has no readiness to wait on).
//! - Under Wine (not Windows): [`Mailslot::pending`]'s count may be lower
//!   than the messages queued; the queue is a socket buffer (about 200 KiB),
//!   so a write blocks while it is full; and a message larger than 64 KiB
//!   written to an unlimited mailslot while [`Mailslot::recv`] already
//!   waits may be cut short (Wine's `ReadFile` truncates where Windows fails
//!   with `ERROR_INSUFFICIENT_BUFFER`, which ipckit handles by reading
//!   again with a buffer of the right size).

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[path = "tokio_windows.rs"]
pub mod tokio;

use std::net::{SocketAddr, UdpSocket};
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Context as _, Error, ErrorKind, Result};
use crate::name::{fnv1a64, validate_name, Namespace};
use crate::shm::{Mapping, MappingOptions};
use crate::sys::mailslot::{self as os, Read};

/// The largest message a mailslot with `max_message_size` 0 ("unlimited")
/// accepts: 1 GiB.
pub const UNLIMITED_CAP: usize = 1 << 30;
/// Largest payload of a UDP (cross-machine) mailslot message, as in Win32.
pub const UDP_MAX_MESSAGE: usize = 424;
/// The default writer timeout (5 s); unused on Windows, where a write never
/// waits (kept for code shared with Linux).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The system's prefix of mailslot names.
const OS_PREFIX: &str = r"\\.\mailslot\";
/// Suffix of the section holding an ipckit mailslot's size.
const INFO_SUFFIX: &str = "!slot";
/// Magic of the size section ("SLOT" little-endian), published last.
const INFO_MAGIC: u32 = u32::from_le_bytes(*b"SLOT");
/// Bytes of the size section: magic u32, reserved u32, max u64.
const INFO_LEN: u64 = 16;
/// Magic of a UDP datagram (as on Linux): magic, name length (u16 LE),
/// name, payload.
const UDP_MAGIC: &[u8; 8] = b"IPCKMSD1";
/// How often the UDP thread checks whether its mailslot is closing.
const UDP_POLL: Duration = Duration::from_millis(100);
/// How long a writer waits for a new mailslot's size section.
const INFO_WAIT: Duration = Duration::from_secs(2);
/// The read buffer of a mailslot without a size limit.
const DEFAULT_READ_BUF: usize = 64 * 1024;
/// The largest next size Wine reports (it peeks at most this much).
const WINE_NEXT_CAP: usize = 64 * 1024;
/// The read buffer for a message whose size Wine did not tell: more than
/// Wine can queue (its mailslot is a socket pair, with a socket's buffer).
const WINE_READ_BUF: usize = 1 << 20;

/// The system's name of the mailslot `name` in `ns`, and the name of its
/// size section (`None` for a name in the system's form).
fn os_names(ns: Option<&Namespace>, name: &str) -> Result<(String, Option<String>)> {
    if name.len() >= OS_PREFIX.len() && name[..OS_PREFIX.len()].eq_ignore_ascii_case(OS_PREFIX) {
        let rest = &name[OS_PREFIX.len()..];
        if rest.is_empty() || rest.contains('\0') || name.len() > 260 {
            return Err(Error::new(
                ErrorKind::InvalidName,
                r"invalid name: after \\.\mailslot\ give 1 or more characters other than NUL (260 in all at most)",
            )
            .with_name(name));
        }
        return Ok((name.to_string(), None));
    }
    validate_name(name)?;
    let ns = match ns {
        Some(ns) => ns.clone(),
        None => Namespace::from_env()?,
    };
    let h = fnv1a64(ns.dir().as_os_str().as_encoded_bytes());
    let slot = format!("{OS_PREFIX}ipckit.{h:016x}.{}", name.replace('/', "\\"));
    let info = MappingOptions::new().namespace(&ns).os_name(name)? + INFO_SUFFIX;
    Ok((slot, Some(info)))
}

/// A timeout as the milliseconds of a mailslot read: `None` waits forever;
/// rounded up (a non-zero wait never becomes a poll), capped below forever.
fn timeout_ms(t: Option<Duration>) -> u32 {
    match t {
        None => os::WAIT_FOREVER,
        Some(t) => u32::try_from(t.as_nanos().div_ceil(1_000_000))
            .unwrap_or(os::WAIT_FOREVER - 1)
            .min(os::WAIT_FOREVER - 1),
    }
}

/// Settings for creating a mailslot (`CreateMailslot`).
///
/// ```
/// use std::time::Duration;
/// use ipckit::mailslot::MailslotOptions;
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = MailslotOptions::new()
///     .max_message_size(512)
///     .read_timeout(Some(Duration::from_millis(10)))
///     .namespace(&ns)
///     .create("inbox")
///     .unwrap();
/// assert_eq!(slot.recv().unwrap_err().kind(), ipckit::ErrorKind::Timeout);
/// ```
#[doc(alias = "CreateMailslot")]
#[derive(Debug, Clone, Default)]
pub struct MailslotOptions {
    max_message_size: usize,
    read_timeout: Option<Duration>,
    udp: Option<String>,
    namespace: Option<Namespace>,
}

impl MailslotOptions {
    /// Defaults: unlimited message size (up to [`UNLIMITED_CAP`]), reads
    /// wait forever, the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest message in bytes (`nMaxMessageSize`); 0 means unlimited
    /// (capped at [`UNLIMITED_CAP`]). Larger writes fail with
    /// [`ErrorKind::TooLarge`]. Default 0.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().max_message_size(424);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long [`Mailslot::recv`] waits (`lReadTimeout`); `None` waits
    /// forever (`MAILSLOT_WAIT_FOREVER`), zero returns at once. Default
    /// `None`.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().read_timeout(Some(std::time::Duration::ZERO));
    /// ```
    #[must_use]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Also receive UDP datagrams at `addr` (`HOST:PORT`; port 0 picks one,
    /// see [`Mailslot::udp_addr`]; an IPv4 multicast address joins that
    /// group): a thread writes each datagram for this mailslot's name into
    /// it. Datagrams for another name, over [`UDP_MAX_MESSAGE`] bytes (or
    /// the mailslot's `max_message_size`) or malformed are dropped and
    /// counted ([`Mailslot::udp_dropped`]): UDP is lossy. There is no
    /// authentication on UDP: bind to loopback unless the network is
    /// trusted.
    ///
    /// ```
    /// let _ = ipckit::mailslot::MailslotOptions::new().udp("127.0.0.1:0");
    /// ```
    #[must_use]
    pub fn udp(mut self, addr: impl Into<String>) -> Self {
        self.udp = Some(addr.into());
        self
    }

    /// Create the mailslot in `ns` instead of the namespace from the
    /// environment.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::mailslot::MailslotOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Create the mailslot `name` (`CreateMailslotW`, with a security
    /// descriptor that grants only the calling user); this process is its
    /// reader. [`ErrorKind::AlreadyExists`] if a mailslot of that name
    /// exists.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let a = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let b = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m");
    /// assert_eq!(b.unwrap_err().kind(), ipckit::ErrorKind::AlreadyExists);
    /// # drop(a);
    /// ```
    #[doc(alias = "CreateMailslot")]
    pub fn create(&self, name: &str) -> Result<Mailslot> {
        if self.max_message_size > UNLIMITED_CAP {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_message_size {} is above the cap of {UNLIMITED_CAP} bytes; use 0 for the cap or a smaller size",
                    self.max_message_size
                ),
            )
            .with_name(name));
        }
        let (os_name, info_name) = os_names(self.namespace.as_ref(), name)?;
        let current = timeout_ms(self.read_timeout);
        let h = os::create(&os_name, self.max_message_size as u32, current).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    ErrorKind::AlreadyExists,
                    format!("mailslot {os_name} exists (its reader, or a writer, still has it open); pick another name"),
                )
                .with_name(name)
            } else {
                Error::os(e, "cannot create the mailslot").with_name(name)
            }
        })?;
        let info = match info_name {
            Some(n) => Some(publish_size(&n, self.max_message_size).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("cannot publish the mailslot's size in {n}: {}", e.message()),
                )
                .with_name(name)
            })?),
            None => None,
        };
        let udp = match &self.udp {
            Some(a) => Some(self.listen_udp(name, &os_name, a)?),
            None => None,
        };
        Ok(Mailslot {
            name: name.to_string(),
            h,
            max: self.max_message_size,
            read_timeout: self.read_timeout,
            reader: Mutex::new(Reader {
                current,
                buf: Vec::new(),
            }),
            udp,
            _info: info,
        })
    }

    /// Bind the UDP socket at `addr` and start the thread that writes the
    /// datagrams for `name` into the mailslot `os_name`.
    fn listen_udp(&self, name: &str, os_name: &str, addr: &str) -> Result<Udp> {
        let at = os::udp_resolve(addr).ctx(name, "cannot resolve the UDP address")?;
        let sock = os::udp_bind(at, UDP_POLL).ctx(name, "cannot bind the UDP socket")?;
        let local = sock.local_addr().ctx(name, "cannot read the UDP address")?;
        let writer = os::open_writer(os_name).ctx(name, "cannot open the mailslot for UDP")?;
        let limit = match self.max_message_size {
            0 => UDP_MAX_MESSAGE,
            m => m.min(UDP_MAX_MESSAGE),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (stop2, dropped2, want) = (stop.clone(), dropped.clone(), name.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("ipckit-slot-udp-{name}"))
            .spawn(move || udp_loop(&sock, &writer, &want, limit, &stop2, &dropped2))
            .ctx(name, "cannot start the mailslot's UDP thread")?;
        Ok(Udp {
            addr: local,
            stop,
            dropped,
            thread: Some(thread),
        })
    }
}

/// The UDP side of a mailslot: its address, its thread and what it dropped.
#[derive(Debug)]
struct Udp {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Until `stop`: receive datagrams on `sock` and write those for `name`
/// (payload at most `limit` bytes) into the mailslot through `writer`;
/// count the others in `dropped`.
fn udp_loop(
    sock: &UdpSocket,
    writer: &OwnedHandle,
    name: &str,
    limit: usize,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match os::udp_recv(sock, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(_) => return,
        };
        let ok = match parse_datagram(&buf[..n]) {
            Some((to, payload)) if to == name && payload.len() <= limit => {
                os::write(writer.as_handle(), payload).is_ok()
            }
            _ => false,
        };
        if !ok {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A UDP datagram for the mailslot `name`: magic, name length (u16),
/// name, payload (the format of Linux's).
fn datagram(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(10 + name.len() + payload.len());
    d.extend_from_slice(UDP_MAGIC);
    d.extend_from_slice(&(name.len() as u16).to_le_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(payload);
    d
}

/// `(name, payload)` of a datagram; `None` if malformed.
fn parse_datagram(d: &[u8]) -> Option<(&str, &[u8])> {
    let rest = d.strip_prefix(UDP_MAGIC.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return None;
    }
    let (name, payload) = rest.split_at(len);
    Some((std::str::from_utf8(name).ok()?, payload))
}

/// Send `msg` to the mailslot `name` as one UDP datagram to `target`
/// (`HOST:PORT`: a host, a broadcast address or an IPv4 multicast group) —
/// the cross-machine mailslot write. Lossy: no acknowledgement, no
/// retransmission. At most [`UDP_MAX_MESSAGE`] bytes, else
/// [`ErrorKind::TooLarge`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = ipckit::mailslot::MailslotOptions::new()
///     .namespace(&ns).udp("127.0.0.1:0").create("far").unwrap();
/// let to = slot.udp_addr().unwrap().to_string();
/// ipckit::mailslot::send_datagram(&to, "far", b"ping").unwrap();
/// // Lossy in general; on loopback it arrives.
/// assert_eq!(slot.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), b"ping");
/// ```
pub fn send_datagram(target: &str, name: &str, msg: &[u8]) -> Result<()> {
    validate_name(name)?;
    if msg.len() > UDP_MAX_MESSAGE {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {} bytes exceeds the UDP mailslot limit of {UDP_MAX_MESSAGE} bytes; send it locally or split it",
                msg.len()
            ),
        )
        .with_name(name)
        .with_needed(msg.len()));
    }
    let to = os::udp_resolve(target).ctx(name, "cannot resolve the UDP target")?;
    os::udp_send(to, &datagram(name, msg)).ctx(name, "cannot send the datagram")
}

/// Create (or take over) the size section `os` and publish `max` in it:
/// the size first, then the magic (release).
fn publish_size(os: &str, max: usize) -> Result<Mapping> {
    let m = MappingOptions::new().open_or_create(os, INFO_LEN)?;
    m.atomic_u32(0)?.store(0, Ordering::Release);
    m.atomic_u64(8)?.store(max as u64, Ordering::Relaxed);
    m.atomic_u32(0)?.store(INFO_MAGIC, Ordering::Release);
    Ok(m)
}

/// The size a mailslot's reader published in the section `os`, waiting up
/// to [`INFO_WAIT`] for a reader that is still starting; `None` if there is
/// none.
fn read_size(os: &str) -> Option<usize> {
    let deadline = Instant::now() + INFO_WAIT;
    loop {
        if let Ok(m) = MappingOptions::new().open(os) {
            let magic = m.atomic_u32(0).ok()?.load(Ordering::Acquire);
            if magic == INFO_MAGIC {
                let max = m.atomic_u64(8).ok()?.load(Ordering::Relaxed);
                return usize::try_from(max).ok();
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What [`Mailslot::pending`] reports (`GetMailslotInfo`).
///
/// ```
/// let info = ipckit::mailslot::MailslotInfo { count: 0, next_size: None };
/// assert!(info.next_size.is_none());
/// ```
#[doc(alias = "GetMailslotInfo")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailslotInfo {
    /// Messages waiting to be read (`lpMessageCount`).
    pub count: usize,
    /// Size of the next message, `None` if there is none
    /// (`lpNextSize`, `MAILSLOT_NO_MESSAGE`).
    pub next_size: Option<usize>,
}

/// The reading state: the read timeout set on the handle now, and the
/// buffer reads go into.
#[derive(Debug)]
struct Reader {
    current: u32,
    buf: Vec<u8>,
}

/// A mailslot's reading end, held by its creator: the handle
/// `CreateMailslotW` returned. Dropping it closes the handle.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
/// let mut w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
/// w.send(b"one").unwrap();
/// w.send(b"two").unwrap();
/// assert_eq!(slot.pending().next_size, Some(3));
/// assert_eq!(slot.recv().unwrap(), b"one");
/// assert_eq!(slot.recv().unwrap(), b"two");
/// ```
#[derive(Debug)]
pub struct Mailslot {
    name: String,
    h: OwnedHandle,
    max: usize,
    read_timeout: Option<Duration>,
    reader: Mutex<Reader>,
    /// The UDP socket's thread, stopped (its writer handle closed) first.
    udp: Option<Udp>,
    /// The size section, alive as long as the mailslot.
    _info: Option<Mapping>,
}

impl Mailslot {
    /// Create a mailslot with default options (see [`MailslotOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let slot = ipckit::mailslot::Mailslot::create("box").unwrap();
    /// assert_eq!(slot.name(), "box");
    /// ```
    #[doc(alias = "CreateMailslot")]
    pub fn create(name: &str) -> Result<Mailslot> {
        MailslotOptions::new().create(name)
    }

    /// The read timeout set at creation (for the async form).
    #[cfg(feature = "tokio")]
    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The mailslot's name, as given to create.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.name(), "n");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UDP address actually bound, if the mailslot listens on UDP.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).udp("127.0.0.1:0").create("n").unwrap();
    /// assert_ne!(s.udp_addr().unwrap().port(), 0);
    /// ```
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(|u| u.addr)
    }

    /// UDP datagrams dropped so far (malformed, for another name, or too
    /// large).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.udp_dropped(), 0);
    /// ```
    pub fn udp_dropped(&self) -> u64 {
        self.udp
            .as_ref()
            .map_or(0, |u| u.dropped.load(Ordering::Relaxed))
    }

    /// Read the next message, waiting up to the read timeout set at creation
    /// (`ReadFile`); [`ErrorKind::Timeout`] if none came.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// ipckit::mailslot::WriterOptions::new().namespace(&ns).open("n").unwrap().send(b"").unwrap();
    /// assert_eq!(s.recv().unwrap(), b""); // empty messages are messages too
    /// ```
    #[doc(alias = "ReadFile")]
    pub fn recv(&self) -> Result<Vec<u8>> {
        self.next(self.read_timeout)
    }

    /// Read the next message, waiting at most `timeout` whatever the read
    /// timeout set at creation.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// let e = s.recv_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.next(Some(timeout))
    }

    /// Read the next message if one is queued, without waiting; `Ok(None)`
    /// if none is.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.try_recv().unwrap(), None);
    /// ipckit::mailslot::WriterOptions::new().namespace(&ns).open("n").unwrap().send(b"x").unwrap();
    /// assert_eq!(s.try_recv().unwrap().as_deref(), Some(&b"x"[..]));
    /// ```
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>> {
        self.read(Some(Duration::ZERO))
    }

    fn next(&self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.read(timeout)?.ok_or_else(|| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "no message arrived within {:?}; wait longer or check the writers",
                    timeout.unwrap_or_default()
                ),
            )
            .with_name(&self.name)
        })
    }

    /// One `ReadFile` with the read timeout `timeout`, into a buffer sized
    /// for the next message when one is queued (so that no message is cut
    /// short), else for the largest message; `None` on timeout.
    fn read(&self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let ms = timeout_ms(timeout);
        if r.current != ms {
            os::set_read_timeout(self.h.as_handle(), ms)
                .ctx(&self.name, "cannot set the mailslot's read timeout")?;
            r.current = ms;
        }
        let base = if self.max == 0 {
            DEFAULT_READ_BUF
        } else {
            self.max
        };
        // A message too large for the buffer stays queued (Windows): size
        // the buffer to it and read again; a few rounds at most.
        for _ in 0..8 {
            let next = os::info(self.h.as_handle())
                .ctx(&self.name, "cannot query the mailslot")?
                .next
                .map_or(0, |n| n as usize);
            // Wine reports at most 64 KiB as the next size (Windows, the
            // exact size): past that, read into room for any message Wine
            // can queue.
            let want = if next >= WINE_NEXT_CAP {
                base.max(next).max(WINE_READ_BUF)
            } else {
                base.max(next)
            };
            if r.buf.len() < want {
                r.buf.resize(want, 0);
            }
            match os::read(self.h.as_handle(), &mut r.buf[..want])
                .ctx(&self.name, "cannot read the mailslot")?
            {
                Read::Message(n) => return Ok(Some(r.buf[..n].to_vec())),
                Read::TimedOut => return Ok(None),
                Read::TooSmall => {}
            }
        }
        Err(Error::new(
            ErrorKind::Busy,
            "the next message kept growing past the read buffer; retry",
        )
        .with_name(&self.name))
    }

    /// How many messages wait, and the size of the next one
    /// (`GetMailslotInfo`). Under Wine the count may be too low (never 0
    /// while a message waits).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("n").unwrap();
    /// assert_eq!(s.pending(), ipckit::mailslot::MailslotInfo { count: 0, next_size: None });
    /// ```
    #[doc(alias = "GetMailslotInfo")]
    pub fn pending(&self) -> MailslotInfo {
        match os::info(self.h.as_handle()) {
            Ok(i) => {
                let next_size = i.next.map(|n| n as usize);
                let count = i.count as usize;
                MailslotInfo {
                    // Wine counts an empty message at the head as none.
                    count: if next_size.is_some() {
                        count.max(1)
                    } else {
                        count
                    },
                    next_size,
                }
            }
            // Fails only for a handle that is not a mailslot's, which ours is.
            Err(_) => MailslotInfo {
                count: 0,
                next_size: None,
            },
        }
    }
}

impl Drop for Mailslot {
    fn drop(&mut self) {
        // Stop the UDP thread (closing its writer handle) before the
        // reader's handle closes.
        self.udp.take();
    }
}

/// Settings for writing to mailslots: the namespace names are looked up in.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let e = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("absent").unwrap_err();
/// assert_eq!(e.kind(), ipckit::ErrorKind::NotFound);
/// ```
#[derive(Debug, Clone)]
pub struct WriterOptions {
    timeout: Option<Duration>,
    namespace: Option<Namespace>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            timeout: Some(DEFAULT_WRITE_TIMEOUT),
            namespace: None,
        }
    }
}

impl WriterOptions {
    /// Defaults: the namespace from the environment.
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepted for code shared with Linux, where a write waits this long
    /// for queue space; on Windows a write never waits.
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new().timeout(std::time::Duration::ZERO);
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Accepted for code shared with Linux (see
    /// [`timeout`](WriterOptions::timeout)).
    ///
    /// ```
    /// let _ = ipckit::mailslot::WriterOptions::new().wait_forever();
    /// ```
    #[must_use]
    pub fn wait_forever(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Look names up in `ns` instead of the namespace from the environment.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let _ = ipckit::mailslot::WriterOptions::new().namespace(&ns);
    /// ```
    #[must_use]
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.namespace = Some(ns.clone());
        self
    }

    /// Open the mailslot `name` for writing (`CreateFileW` on
    /// `\\.\mailslot\...`). [`ErrorKind::NotFound`] if no reader has
    /// created it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// assert_eq!(w.name(), "m");
    /// # drop(slot);
    /// ```
    pub fn open(&self, name: &str) -> Result<MailslotWriter> {
        let (os_name, info_name) = os_names(self.namespace.as_ref(), name)?;
        let h = os::open_writer(&os_name).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no mailslot {os_name}; its reader must create it first (check the name and the namespace)"),
                )
                .with_name(name)
            } else {
                Error::os(e, "cannot open the mailslot").with_name(name)
            }
        })?;
        let max = info_name.as_deref().and_then(read_size);
        Ok(MailslotWriter {
            name: name.to_string(),
            h,
            max_message: match max {
                Some(0) | None => UNLIMITED_CAP,
                Some(m) => m,
            },
            known: max.is_some(),
        })
    }
}

/// A writer to one mailslot (`CreateFile` + `WriteFile`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let slot = ipckit::mailslot::MailslotOptions::new()
///     .namespace(&ns).max_message_size(4).create("m").unwrap();
/// let mut w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
/// assert_eq!(w.send(b"too long").unwrap_err().kind(), ipckit::ErrorKind::TooLarge);
/// w.send(b"ok").unwrap();
/// assert_eq!(slot.recv().unwrap(), b"ok");
/// ```
#[derive(Debug)]
pub struct MailslotWriter {
    name: String,
    h: OwnedHandle,
    max_message: usize,
    /// Whether `max_message` is the reader's (else the system decides).
    known: bool,
}

impl MailslotWriter {
    /// Open `name` in the namespace from the environment (see
    /// [`WriterOptions`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// let slot = ipckit::mailslot::Mailslot::create("box").unwrap();
    /// ipckit::mailslot::MailslotWriter::open("box").unwrap().send(b"hi").unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"hi");
    /// ```
    pub fn open(name: &str) -> Result<MailslotWriter> {
        WriterOptions::new().open(name)
    }

    /// The mailslot's name, as given to open.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// assert_eq!(w.name(), "m");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message the mailslot accepts ([`UNLIMITED_CAP`] for an
    /// unlimited one, and for a mailslot named in the system's form, whose
    /// size only the system knows).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # let _s = ipckit::mailslot::MailslotOptions::new().namespace(&ns).max_message_size(9).create("m").unwrap();
    /// let w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// assert_eq!(w.max_message_size(), 9);
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.max_message
    }

    /// Write one message (`WriteFile`); it is queued whole at once.
    /// Errors: [`ErrorKind::TooLarge`] above the mailslot's
    /// `max_message_size` (nothing sent).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let slot = ipckit::mailslot::MailslotOptions::new().namespace(&ns).create("m").unwrap();
    /// let mut w = ipckit::mailslot::WriterOptions::new().namespace(&ns).open("m").unwrap();
    /// w.send(b"1").unwrap();
    /// assert_eq!(slot.recv().unwrap(), b"1");
    /// ```
    #[doc(alias = "WriteFile")]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        let too_large = |max: String| {
            Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message of {} bytes exceeds the mailslot's max_message_size{max}; split it",
                    msg.len()
                ),
            )
            .with_name(&self.name)
            .with_needed(msg.len())
        };
        if msg.len() > self.max_message {
            return Err(too_large(format!(" of {} bytes", self.max_message)));
        }
        match os::write(self.h.as_handle(), msg) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(n) => Err(Error::new(
                ErrorKind::Io,
                format!("the system took {n} of {} bytes", msg.len()),
            )
            .with_name(&self.name)),
            // The system's refusal of an oversized message (a mailslot
            // whose size the writer does not know).
            Err(e) if !self.known && e.kind() == std::io::ErrorKind::InvalidInput => {
                Err(too_large(String::new()))
            }
            Err(e) => Err(Error::os(e, "cannot write to the mailslot").with_name(&self.name)),
        }
    }
}
