//! The one error type of ipckit.
//!
//! Every fallible call returns [`Result<T>`]. An [`Error`] carries an
//! [`ErrorKind`] to match on, the name of the object it concerns (when there
//! is one), a sentence saying what went wrong and what to do, and the
//! underlying OS or decode error as its [`source`](std::error::Error::source).
//!
//! ```
//! use ipckit::{Error, ErrorKind};
//!
//! let err = Error::new(ErrorKind::NotFound, "no endpoint here")
//!     .with_name("calc");
//! assert_eq!(err.kind(), ErrorKind::NotFound);
//! assert_eq!(err.name(), Some("calc"));
//! let io: std::io::Error = err.into();
//! assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
//! ```

use std::fmt;

/// Result alias used across ipckit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in a form a caller can match on.
///
/// ```
/// use ipckit::ErrorKind;
/// let kind = ErrorKind::Busy;
/// assert!(matches!(kind, ErrorKind::Busy));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named object does not exist (Win32 `ERROR_FILE_NOT_FOUND`).
    NotFound,
    /// A live object already holds the name (Win32 `ERROR_ALREADY_EXISTS`).
    AlreadyExists,
    /// A deadline passed before the operation could complete.
    Timeout,
    /// The other side of a connection went away (Win32 `ERROR_BROKEN_PIPE`).
    PeerGone,
    /// A message or value is larger than the limit that applies to it.
    TooLarge,
    /// All instances are in use (Win32 `ERROR_PIPE_BUSY`).
    Busy,
    /// A queue is full and stayed full until the deadline.
    Full,
    /// The caller may not do this (file mode, uid allow-list, pipe direction).
    PermissionDenied,
    /// A name broke one of the naming rules; the message says which.
    InvalidName,
    /// An argument is out of range or the call does not apply to this object.
    InvalidInput,
    /// The caller's buffer is too small; [`Error::needed`] gives the size
    /// required and the data stays readable (Win32 `ERROR_MORE_DATA`).
    BufferTooSmall,
    /// Bytes from a peer or from shared memory could not be decoded.
    Decode,
    /// The remote side reported an error (RPC handler error).
    Remote,
    /// The operation is not supported on this object or platform.
    Unsupported,
    /// Any other operating-system error; see the source.
    Io,
}

impl ErrorKind {
    /// A short lowercase label, as used by the CLI's JSON output.
    ///
    /// ```
    /// assert_eq!(ipckit::ErrorKind::PeerGone.as_str(), "peer-gone");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::Timeout => "timeout",
            ErrorKind::PeerGone => "peer-gone",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::Busy => "busy",
            ErrorKind::Full => "full",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::InvalidName => "invalid-name",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::BufferTooSmall => "buffer-too-small",
            ErrorKind::Decode => "decode",
            ErrorKind::Remote => "remote",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "io",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of every ipckit call.
///
/// `Display` prints `'<name>': <message>` (or just the message when the error
/// concerns no named object); the message says what to do about it.
///
/// ```
/// use ipckit::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::TooLarge, "message of 10 bytes exceeds the limit of 4 bytes")
///     .with_name("calc");
/// assert_eq!(e.to_string(), "'calc': message of 10 bytes exceeds the limit of 4 bytes");
/// ```
pub struct Error {
    kind: ErrorKind,
    name: Option<String>,
    message: String,
    needed: Option<usize>,
    remote_code: Option<i64>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message saying what happened and what to do.
    ///
    /// ```
    /// let e = ipckit::Error::new(ipckit::ErrorKind::Busy, "all instances in use; retry later");
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Busy);
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            name: None,
            message: message.into(),
            needed: None,
            remote_code: None,
            source: None,
        }
    }

    /// Attach the name of the object the error concerns.
    ///
    /// ```
    /// let e = ipckit::Error::new(ipckit::ErrorKind::NotFound, "absent").with_name("x");
    /// assert_eq!(e.name(), Some("x"));
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Attach the underlying error.
    ///
    /// ```
    /// use std::error::Error as _;
    /// let io = std::io::Error::other("disk on fire");
    /// let e = ipckit::Error::new(ipckit::ErrorKind::Io, "write failed").with_source(io);
    /// assert!(e.source().is_some());
    /// ```
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_needed(mut self, needed: usize) -> Self {
        self.needed = Some(needed);
        self
    }

    /// A [`ErrorKind::Remote`] error with the code the remote side chose.
    ///
    /// ```
    /// let e = ipckit::Error::remote(7, "division by zero");
    /// assert_eq!(e.remote_code(), Some(7));
    /// ```
    pub fn remote(code: i64, message: impl Into<String>) -> Self {
        let mut e = Error::new(ErrorKind::Remote, message);
        e.remote_code = Some(code);
        e
    }

    /// What went wrong.
    ///
    /// ```
    /// let e = ipckit::Error::new(ipckit::ErrorKind::Timeout, "late");
    /// assert_eq!(e.kind(), ipckit::ErrorKind::Timeout);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The name of the object concerned, if any.
    ///
    /// ```
    /// assert_eq!(ipckit::Error::new(ipckit::ErrorKind::Io, "x").name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The message without the name.
    ///
    /// ```
    /// assert_eq!(ipckit::Error::new(ipckit::ErrorKind::Io, "x").message(), "x");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`ErrorKind::BufferTooSmall`] and [`ErrorKind::TooLarge`]: the
    /// size in bytes that would have been needed.
    ///
    /// ```
    /// let e = ipckit::Error::new(ipckit::ErrorKind::Io, "x");
    /// assert_eq!(e.needed(), None);
    /// ```
    pub fn needed(&self) -> Option<usize> {
        self.needed
    }

    /// For [`ErrorKind::Remote`]: the code the remote side reported.
    ///
    /// ```
    /// assert_eq!(ipckit::Error::remote(3, "no").remote_code(), Some(3));
    /// ```
    pub fn remote_code(&self) -> Option<i64> {
        self.remote_code
    }

    /// Map an OS error to an [`Error`], choosing the kind from the errno.
    pub(crate) fn os(err: std::io::Error, what: impl fmt::Display) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
            K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof => {
                ErrorKind::PeerGone
            }
            K::InvalidInput => ErrorKind::InvalidInput,
            K::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what}: {err}")).with_source(err)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(n) = &self.name {
            d.field("name", n);
        }
        d.field("message", &self.message);
        if let Some(n) = self.needed {
            d.field("needed", &n);
        }
        if let Some(c) = self.remote_code {
            d.field("remote_code", &c);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "'{n}': {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind {
            ErrorKind::NotFound => K::NotFound,
            ErrorKind::AlreadyExists => K::AlreadyExists,
            ErrorKind::Timeout => K::TimedOut,
            ErrorKind::PeerGone => K::BrokenPipe,
            ErrorKind::TooLarge => K::InvalidInput,
            ErrorKind::Busy => K::ResourceBusy,
            ErrorKind::Full => K::WouldBlock,
            ErrorKind::PermissionDenied => K::PermissionDenied,
            ErrorKind::InvalidName | ErrorKind::InvalidInput => K::InvalidInput,
            ErrorKind::BufferTooSmall => K::InvalidInput,
            ErrorKind::Decode => K::InvalidData,
            ErrorKind::Unsupported => K::Unsupported,
            ErrorKind::Remote | ErrorKind::Io => K::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// An I/O error from outside ipckit (a `?` on `File::open` in a function
/// returning [`Result`]): its kind is mapped as for OS errors inside ipckit
/// (`NotFound`, `PermissionDenied`, `Timeout`, `PeerGone` …, else `Io`), and
/// it stays the [`source`](std::error::Error::source).
///
/// ```
/// fn read_config() -> ipckit::Result<String> {
///     Ok(std::fs::read_to_string("/nonexistent/ipckit.conf")?)
/// }
/// assert_eq!(read_config().unwrap_err().kind(), ipckit::ErrorKind::NotFound);
///
/// // An ipckit error that went through std::io::Error comes back whole.
/// let e = ipckit::Error::new(ipckit::ErrorKind::Busy, "all instances busy").with_name("p");
/// let back = ipckit::Error::from(std::io::Error::from(e));
/// assert_eq!((back.kind(), back.name()), (ipckit::ErrorKind::Busy, Some("p")));
/// ```
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::os(e, "I/O failed")
    }
}

/// Extension to name the object and action on OS results.
pub(crate) trait Context<T> {
    /// Turn an OS error into an [`Error`] naming `name` and saying `what` failed.
    fn ctx(self, name: &str, what: &str) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, name: &str, what: &str) -> Result<T> {
        self.map_err(|e| Error::os(e.into(), what).with_name(name))
    }
}
