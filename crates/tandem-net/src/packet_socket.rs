//! `AF_PACKET` sockets bound to one interface, shared by the announcer and the ARP probe.

use std::io;
use std::mem::size_of;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

pub(crate) const ETH_P_ARP: u16 = 0x0806;

/// A `sockaddr_ll` naming interface `ifindex` and EtherType `protocol` (0: none).
fn link_address(ifindex: u32, protocol: u16) -> io::Result<SockAddr> {
    let ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types, as view_as requires, and
    // it is smaller than sockaddr_storage (view_as asserts that too).
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex;
    // SAFETY: the storage holds an initialised sockaddr_ll (zeroed, then filled above), and
    // the length given is exactly that of a sockaddr_ll.
    Ok(unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t) })
}

/// An `AF_PACKET`/`SOCK_RAW` socket bound to `ifindex`, non-blocking. With `protocol` 0 it
/// receives nothing (a pure sender: no queue of every frame on the link builds up); with an
/// EtherType it receives the frames of that type arriving on the interface.
pub(crate) fn open(ifindex: u32, protocol: u16) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(protocol.to_be()))),
    )?;
    socket.bind(&link_address(ifindex, protocol)?)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
