//! Datagrams (UDP): the lossy cross-machine path of mailslots.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::sys;

/// Resolve `HOST:PORT` to one address.
pub(crate) fn resolve(addr: &str) -> io::Result<SocketAddr> {
    sys::udp::resolve(addr)
}

/// A UDP socket bound to `addr` (joining it if it is a multicast group).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    sys::udp::bind(addr)
}

/// Send one datagram to `target` (broadcast allowed, multicast on the
/// local link).
pub(crate) fn send_to(target: SocketAddr, datagram: &[u8]) -> io::Result<()> {
    sys::udp::send_to(target, datagram)
}

/// Receive one datagram into `buf`, waiting at most `timeout`; `None` if
/// none came.
pub(crate) fn recv_timeout(
    sock: &UdpSocket,
    buf: &mut [u8],
    timeout: Duration,
) -> io::Result<Option<usize>> {
    sys::udp::recv_timeout(sock, buf, timeout)
}
