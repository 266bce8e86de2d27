//! Mailslot calls: `CreateMailslotW` (the reader's handle),
//! `GetMailslotInfo` / `SetMailslotInfo`, `ReadFile` on the reader's
//! handle, and `CreateFileW` + `WriteFile` for writers; and the UDP
//! datagrams of the cross-machine path (std's `UdpSocket`).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_BROKEN_PIPE, ERROR_INSUFFICIENT_BUFFER, ERROR_SEM_TIMEOUT, GENERIC_WRITE,
    HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE,
    OPEN_EXISTING,
};
use windows_sys::Win32::System::Mailslots::{CreateMailslotW, GetMailslotInfo, SetMailslotInfo};

use super::shm::Security;
use super::{check_bool, wide};

/// `MAILSLOT_WAIT_FOREVER` (winbase.h): a read timeout of "forever".
pub(crate) const WAIT_FOREVER: u32 = u32::MAX;
/// `MAILSLOT_NO_MESSAGE` (winbase.h): the next size when none is queued.
const NO_MESSAGE: u32 = u32::MAX;

/// Take ownership of a handle a call returned; `INVALID_HANDLE_VALUE` is
/// the failure of both `CreateMailslotW` and `CreateFileW`.
fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `h` is a valid handle the call just returned to us; nothing
    // else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// `CreateMailslotW(os_name, max, read_timeout_ms, <user-only descriptor>)`:
/// the reader's handle. A mailslot of that name that exists fails with
/// `ERROR_ALREADY_EXISTS` (an `AlreadyExists` I/O error).
pub(crate) fn create(os_name: &str, max: u32, read_timeout_ms: u32) -> io::Result<OwnedHandle> {
    let w = wide(os_name)?;
    let sec = Security::for_mode_sync(0o600)?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sec.0,
        bInheritHandle: 0,
    };
    // SAFETY: `w` is NUL-terminated; `sa` and its descriptor live across
    // the call.
    owned(unsafe { CreateMailslotW(w.as_ptr(), max, read_timeout_ms, &sa) })
}

/// What `GetMailslotInfo` reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Info {
    /// Size of the next message, `None` when none is queued.
    pub(crate) next: Option<u32>,
    /// Messages queued.
    pub(crate) count: u32,
}

/// `GetMailslotInfo` on the reader's handle.
pub(crate) fn info(h: BorrowedHandle<'_>) -> io::Result<Info> {
    let (mut max, mut next, mut count, mut timeout) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: `h` is a valid mailslot handle; the four outputs are ours.
    check_bool(unsafe {
        GetMailslotInfo(
            h.as_raw_handle(),
            &mut max,
            &mut next,
            &mut count,
            &mut timeout,
        )
    })?;
    Ok(Info {
        next: (next != NO_MESSAGE).then_some(next),
        count,
    })
}

/// `SetMailslotInfo`: the read timeout of later reads, in milliseconds
/// ([`WAIT_FOREVER`] for none).
pub(crate) fn set_read_timeout(h: BorrowedHandle<'_>, ms: u32) -> io::Result<()> {
    // SAFETY: `h` is a valid mailslot handle.
    check_bool(unsafe { SetMailslotInfo(h.as_raw_handle(), ms) })
}

/// The outcome of [`read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// A whole message of this many bytes is at the start of the buffer.
    Message(usize),
    /// Nothing arrived within the read timeout (`ERROR_SEM_TIMEOUT`).
    TimedOut,
    /// The next message is larger than the buffer and is still queued
    /// (`ERROR_INSUFFICIENT_BUFFER`).
    TooSmall,
}

/// `ReadFile` on the reader's handle: one message, waiting up to the
/// handle's read timeout.
///
/// Wine returns an empty message as `ERROR_BROKEN_PIPE` (it has consumed
/// it); a mailslot's reading handle has no pipe to break on Windows, so
/// that error is read as the empty message it is.
pub(crate) fn read(h: BorrowedHandle<'_>, buf: &mut [u8]) -> io::Result<Read> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let mut got = 0u32;
    // SAFETY: `buf` is writable for `len` bytes; synchronous read (no
    // OVERLAPPED); `got` receives the count. The last error is read right
    // after the call, on this thread.
    let (ok, err) = unsafe {
        let ok = ReadFile(
            h.as_raw_handle(),
            buf.as_mut_ptr(),
            len,
            &mut got,
            std::ptr::null_mut(),
        );
        (ok, GetLastError())
    };
    if ok != 0 {
        return Ok(Read::Message(got as usize));
    }
    match err {
        ERROR_SEM_TIMEOUT => Ok(Read::TimedOut),
        ERROR_INSUFFICIENT_BUFFER => Ok(Read::TooSmall),
        ERROR_BROKEN_PIPE => Ok(Read::Message(0)),
        e => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// `CreateFileW(os_name, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
/// OPEN_EXISTING)`: a writer's handle (sharing write access, so that
/// several writers can have the mailslot open at once); `ERROR_FILE_NOT_FOUND` (a `NotFound` I/O error) if
/// no mailslot has that name.
pub(crate) fn open_writer(os_name: &str) -> io::Result<OwnedHandle> {
    let w = wide(os_name)?;
    // SAFETY: `w` is NUL-terminated; no security attributes or template.
    owned(unsafe {
        CreateFileW(
            w.as_ptr(),
            GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_ATTRIBUTE_NORMAL,
            std::ptr::null_mut(),
        )
    })
}

/// `WriteFile` of one whole message on a writer's handle; the bytes the
/// system took.
pub(crate) fn write(h: BorrowedHandle<'_>, msg: &[u8]) -> io::Result<usize> {
    let len = u32::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut put = 0u32;
    // SAFETY: `msg` is readable for `len` bytes; synchronous write; `put`
    // receives the count.
    check_bool(unsafe {
        WriteFile(
            h.as_raw_handle(),
            msg.as_ptr(),
            len,
            &mut put,
            std::ptr::null_mut(),
        )
    })?;
    Ok(put as usize)
}

// ------------------------------------------------------------------ UDP

/// Resolve `addr` (`HOST:PORT`) to its first socket address.
pub(crate) fn udp_resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing"))
}

/// Bind a UDP socket at `addr`; for an IPv4 multicast group, bind the
/// wildcard address on that port and join the group on every interface.
/// Reads on it time out after `poll` (so a reading thread can stop).
pub(crate) fn udp_bind(addr: SocketAddr, poll: Duration) -> io::Result<UdpSocket> {
    let sock = match addr.ip() {
        IpAddr::V4(ip) if ip.is_multicast() => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, addr.port()))?;
            s.join_multicast_v4(&ip, &Ipv4Addr::UNSPECIFIED)?;
            s
        }
        _ => UdpSocket::bind(addr)?,
    };
    sock.set_read_timeout(Some(poll))?;
    Ok(sock)
}

/// Send one datagram to `target` from a fresh socket, with broadcast
/// allowed and a multicast TTL of 1 (the local link) and loopback on.
pub(crate) fn udp_send(target: SocketAddr, datagram: &[u8]) -> io::Result<()> {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)?;
    sock.set_broadcast(true)?;
    if target.is_ipv4() {
        sock.set_multicast_ttl_v4(1)?;
        sock.set_multicast_loop_v4(true)?;
    }
    if sock.send_to(datagram, target)? != datagram.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the datagram was truncated",
        ));
    }
    Ok(())
}

/// Receive one datagram into `buf` within the socket's read timeout;
/// `Ok(None)` when nothing came.
pub(crate) fn udp_recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match sock.recv_from(buf) {
        Ok((n, _)) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        // A datagram larger than `buf` (WSAEMSGSIZE, 10040): its cut-off
        // bytes are not a datagram; reported as an empty (malformed) one.
        Err(e) if e.raw_os_error() == Some(10040) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}
