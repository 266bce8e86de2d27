//! Anonymous pipes (`CreatePipe` + handle inheritance).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};

use crate::error::{Context as _, Result};
use crate::sys;

/// Create an anonymous pipe: a one-way byte stream. Both ends are
/// close-on-exec, so no child inherits them unless handed one with
/// [`CommandExt::pass_fd`] or as its stdin/stdout through
/// [`Stdio::from`]. The reader sees end-of-file once every writer is
/// closed.
///
/// ```
/// use std::io::{Read, Write};
/// let (mut r, mut w) = ipckit::pipe::pipe().unwrap();
/// w.write_all(b"hello").unwrap();
/// drop(w);
/// let mut s = String::new();
/// r.read_to_string(&mut s).unwrap();
/// assert_eq!(s, "hello");
/// ```
#[doc(alias = "CreatePipe")]
pub fn pipe() -> Result<(PipeReader, PipeWriter)> {
    let (r, w) = sys::pipe::pipe().ctx("anonymous pipe", "cannot create a pipe")?;
    Ok((PipeReader(r), PipeWriter(w)))
}

/// The read end of an anonymous pipe.
///
/// ```
/// let (r, _w) = ipckit::pipe::pipe().unwrap();
/// let _stdin: std::process::Stdio = r.into();
/// ```
#[derive(Debug)]
pub struct PipeReader(OwnedFd);

/// The write end of an anonymous pipe.
///
/// ```
/// let (_r, w) = ipckit::pipe::pipe().unwrap();
/// let _stdout: std::process::Stdio = w.into();
/// ```
#[derive(Debug)]
pub struct PipeWriter(OwnedFd);

impl PipeReader {
    /// Adopt the read end a parent handed to this process (see
    /// [`CommandExt::pass_fd`]): checks that `fd` is a pipe and makes it
    /// close-on-exec again. The child turns the fd number it was told into
    /// an `OwnedFd` itself (`unsafe { OwnedFd::from_raw_fd(n) }`, asserting
    /// that nothing else in the process owns it, as std's I/O safety asks).
    ///
    /// ```
    /// let (r, _w) = ipckit::pipe::pipe().unwrap();
    /// let fd: std::os::fd::OwnedFd = r.into();
    /// let _r = ipckit::pipe::PipeReader::from_inherited_fd(fd).unwrap();
    /// let file: std::os::fd::OwnedFd = tempfile::tempfile().unwrap().into();
    /// let e = ipckit::pipe::PipeReader::from_inherited_fd(file).unwrap_err();
    /// assert_eq!(e.kind(), ipckit::ErrorKind::InvalidInput);
    /// ```
    pub fn from_inherited_fd(fd: OwnedFd) -> Result<PipeReader> {
        let shown = format!("fd {}", fd.as_raw_fd());
        sys::pipe::adopt_inherited(&fd, true).ctx(&shown, "cannot adopt the inherited pipe end")?;
        Ok(PipeReader(fd))
    }
}

impl PipeWriter {
    /// Adopt the write end a parent handed to this process; see
    /// [`PipeReader::from_inherited_fd`].
    ///
    /// ```
    /// let (_r, w) = ipckit::pipe::pipe().unwrap();
    /// let fd: std::os::fd::OwnedFd = w.into();
    /// assert!(ipckit::pipe::PipeWriter::from_inherited_fd(fd).is_ok());
    /// ```
    pub fn from_inherited_fd(fd: OwnedFd) -> Result<PipeWriter> {
        let shown = format!("fd {}", fd.as_raw_fd());
        sys::pipe::adopt_inherited(&fd, true).ctx(&shown, "cannot adopt the inherited pipe end")?;
        Ok(PipeWriter(fd))
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::io::read(&self.0, &mut *buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(Into::into),
            }
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(&self.0, buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(Into::into),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! fd_conversions {
    ($t:ty) => {
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }
        impl From<$t> for OwnedFd {
            fn from(p: $t) -> OwnedFd {
                p.0
            }
        }
        impl From<$t> for Stdio {
            fn from(p: $t) -> Stdio {
                Stdio::from(p.0)
            }
        }
    };
}
fd_conversions!(PipeReader);
fd_conversions!(PipeWriter);

/// Hand an fd to a child process started with [`std::process::Command`].
///
/// ```
/// use ipckit::pipe::CommandExt as _;
/// use std::io::Read;
/// let (mut r, w) = ipckit::pipe::pipe().unwrap();
/// let mut cmd = std::process::Command::new("sh");
/// cmd.args(["-c", "echo hi >&5"]).pass_fd(w, 5);
/// cmd.status().unwrap();
/// drop(cmd); // closes the parent's copy of the write end
/// let mut s = String::new();
/// r.read_to_string(&mut s).unwrap();
/// assert_eq!(s, "hi\n");
/// ```
pub trait CommandExt {
    /// Make `fd` appear as fd number `child_fd` (0 to 255) in the child
    /// (inheritable there; a number out of range makes the spawn fail), typically followed by telling the child the number in an
    /// argument. The parent's copy stays close-on-exec and is closed when
    /// the `Command` is dropped: drop it once the child is spawned so the
    /// reader can see end-of-file.
    fn pass_fd(&mut self, fd: impl Into<OwnedFd>, child_fd: RawFd) -> &mut Self;
}

impl CommandExt for Command {
    fn pass_fd(&mut self, fd: impl Into<OwnedFd>, child_fd: RawFd) -> &mut Self {
        sys::pipe::place_in_child(self, fd.into(), child_fd);
        self
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    #[test]
    fn negative_child_fd_is_a_spawn_error_not_a_panic_in_the_child() {
        let (_r, w) = pipe().unwrap();
        let mut cmd = Command::new("true");
        cmd.pass_fd(w, -1);
        let e = cmd.status().unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error())
        );
    }

    #[test]
    fn two_passed_fds_do_not_clobber_each_other() {
        let (mut r1, w1) = pipe().unwrap();
        let (mut r2, w2) = pipe().unwrap();
        // Place w1 exactly where w2 lives in the parent (so where the child
        // finds w2's source), and w2 somewhere else.
        let clash = w2.as_fd().as_raw_fd();
        let other = clash + 10;
        // bash, not sh: dash accepts only one-digit fd redirections.
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("echo one >&{clash}; echo two >&{other}")]);
        cmd.pass_fd(w1, clash).pass_fd(w2, other);
        assert!(cmd.status().unwrap().success());
        drop(cmd);
        let (mut a, mut b) = (String::new(), String::new());
        r1.read_to_string(&mut a).unwrap();
        r2.read_to_string(&mut b).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("one\n", "two\n"));
    }
}
