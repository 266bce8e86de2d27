//! UDP datagrams, for the cross-machine mailslot transport.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// Resolve `addr` (`HOST:PORT`) to its first socket address.
pub(crate) fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing"))
}

/// Bind a UDP socket at `addr` (close-on-exec, `SO_REUSEADDR` so that
/// several readers on one host can share a multicast port). When the IP is
/// an IPv4 multicast group the socket binds the wildcard address on that
/// port and joins the group on every interface.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() {
        rustix::net::AddressFamily::INET
    } else {
        rustix::net::AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    let sock = UdpSocket::from(fd);
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_multicast() => {
            let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            rustix::net::bind(&sock, &any)?;
            sock.join_multicast_v4(&ip, &Ipv4Addr::UNSPECIFIED)?;
        }
        _ => rustix::net::bind(&sock, &addr)?,
    }
    Ok(sock)
}

/// Send one datagram to `target` from a fresh socket, with broadcast
/// allowed and a multicast TTL of 1 (the local link) and loopback on.
pub(crate) fn send_to(target: SocketAddr, datagram: &[u8]) -> io::Result<()> {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)?;
    sock.set_broadcast(true)?;
    if target.is_ipv4() {
        sock.set_multicast_ttl_v4(1)?;
        sock.set_multicast_loop_v4(true)?;
    }
    let n = sock.send_to(datagram, target)?;
    if n != datagram.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the datagram was truncated by the kernel",
        ));
    }
    Ok(())
}

/// Receive one datagram into `buf`, waiting at most `timeout`; `Ok(None)`
/// when nothing came. Returns the datagram's length (truncated to `buf`).
pub(crate) fn recv_timeout(
    sock: &UdpSocket,
    buf: &mut [u8],
    timeout: Duration,
) -> io::Result<Option<usize>> {
    sock.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
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
        Err(e) => Err(e),
    }
}
