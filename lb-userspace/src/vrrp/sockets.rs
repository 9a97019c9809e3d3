//! The driver's raw sockets: VRRP adverts in and out (TTL 255,
//! keepalived's TOS, multicast groups) and unsolicited neighbour
//! advertisements.
use super::{
    driver::Event,
    packet::{IPPROTO_VRRP, VRRP_TTL},
};
use crate::{config::vrrp::VrrpConfig, dataplane::neighbour::InterfaceInfo};
use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::{
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

pub(super) const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub(super) const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
const ALL_NODES_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// DSCP CS6, as keepalived marks its adverts.
const TOS_NETWORK_CONTROL: u32 = 0xc0;

/// `address` with the interface as scope when it needs one (link-local
/// and link-scope multicast IPv6).
pub(super) fn scoped(address: IpAddr, ifindex: u32) -> SocketAddr {
    match address {
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.segments()[0] == 0xff02 => {
            SocketAddr::V6(SocketAddrV6::new(v6, 0, 0, ifindex))
        }
        other => SocketAddr::new(other, 0),
    }
}

fn raw_socket(interface: &InterfaceInfo, ipv4: bool, protocol: i32) -> anyhow::Result<Socket> {
    let domain = if ipv4 { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(protocol)))
        .context("raw socket (needs CAP_NET_RAW)")?;
    socket.set_nonblocking(true)?;
    socket.bind_device(Some(interface.name.as_bytes()))?;
    Ok(socket)
}

/// Receives every VRRP packet on the interface. Not bound to an address:
/// a raw socket bound to one only receives packets sent *to* it, which
/// multicast adverts are not.
pub(super) fn open_receiver(
    config: &VrrpConfig,
    interface: &InterfaceInfo,
    ipv4: bool,
) -> anyhow::Result<Socket> {
    let socket = raw_socket(interface, ipv4, i32::from(IPPROTO_VRRP))?;
    let multicast = config.unicast_peer.is_empty();
    if ipv4 {
        if multicast {
            socket
                .join_multicast_v4_n(
                    &GROUP_V4,
                    &socket2::InterfaceIndexOrAddress::Index(interface.index),
                )
                .context("joining 224.0.0.18")?;
        }
    } else {
        // IPv6 raw sockets deliver no header: ask for the hop limit and the
        // destination as control messages.
        use nix::sys::socket::{setsockopt, sockopt};
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        if multicast {
            socket
                .join_multicast_v6(&GROUP_V6, interface.index)
                .context("joining ff02::12")?;
        }
    }
    Ok(socket)
}

/// Sends adverts from `local` with TTL / hop limit 255 and keepalived's
/// TOS. It reads nothing: a socket filter drops all input.
pub(super) fn open_sender(interface: &InterfaceInfo, local: IpAddr) -> anyhow::Result<Socket> {
    let socket = raw_socket(interface, local.is_ipv4(), i32::from(IPPROTO_VRRP))?;
    match local {
        IpAddr::V4(v4) => {
            socket.set_ttl_v4(u32::from(VRRP_TTL))?;
            socket.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
            socket.set_multicast_loop_v4(false)?;
            socket.set_tos_v4(TOS_NETWORK_CONTROL)?;
            socket.set_multicast_if_v4(&v4)?;
        }
        IpAddr::V6(_) => {
            socket.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
            socket.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
            socket.set_multicast_loop_v6(false)?;
            socket.set_tclass_v6(TOS_NETWORK_CONTROL)?;
            socket
                .set_multicast_if_v6(interface.index)
                .context("IPV6_MULTICAST_IF")?;
            // The link-local address may still be tentative (duplicate
            // address detection) when lbd starts at boot.
            socket.set_freebind_v6(true)?;
        }
    }
    socket
        .bind(&SockAddr::from(scoped(local, interface.index)))
        .with_context(|| format!("binding the VRRP send socket to {local}"))?;
    // Classic BPF "ret #0": accept zero bytes of every packet.
    socket.attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])?;
    Ok(socket)
}

/// Unsolicited neighbour advertisements to all nodes, hop limit 255 (the
/// kernel fills in the ICMPv6 checksum).
pub(super) fn send_neighbour_advertisements(
    interface: &InterfaceInfo,
    messages: &[Vec<u8>],
) -> anyhow::Result<()> {
    let socket = raw_socket(interface, false, libc::IPPROTO_ICMPV6)?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_multicast_if_v6(interface.index)?;
    let target = SockAddr::from(scoped(IpAddr::V6(ALL_NODES_V6), interface.index));
    for message in messages {
        socket.send_to(message, &target)?;
    }
    Ok(())
}

/// Reads VRRP packets from the raw socket: IPv4 ones with their header,
/// IPv6 ones with hop limit and destination from control messages.
pub(super) async fn read_packets(
    instance: usize,
    socket: AsyncFd<Socket>,
    local: IpAddr,
    events: mpsc::Sender<Event>,
) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let Ok(mut guard) = socket.readable().await else {
            return;
        };
        let received = guard.try_io(|inner| {
            if local.is_ipv4() {
                receive_v4(inner.get_ref(), &mut buffer)
            } else {
                receive_v6(inner.get_ref(), &mut buffer)
            }
        });
        let Ok(Ok(Some((source, destination, ttl, range)))) = received else {
            continue;
        };
        if source == local {
            continue; // our own advert (unicast to ourselves or looped)
        }
        let bytes = buffer[range].to_vec();
        let event = Event::Packet {
            instance,
            source,
            destination,
            ttl,
            bytes,
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

type Received = Option<(IpAddr, IpAddr, u8, std::ops::Range<usize>)>;

fn receive_v4(socket: &Socket, buffer: &mut [u8]) -> std::io::Result<Received> {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout; recv only writes.
    let uninit = unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) };
    let (len, _) = socket.recv_from(uninit)?;
    let packet = &buffer[..len];
    Ok(split_ipv4(packet)
        .map(|(source, destination, ttl, header_len)| (source, destination, ttl, header_len..len)))
}

fn receive_v6(socket: &Socket, buffer: &mut [u8]) -> std::io::Result<Received> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buffer)];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let message = recvmsg::<SockaddrIn6>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let len = message.bytes;
    let Some(source) = message.address.map(|a| IpAddr::V6(a.ip())) else {
        return Ok(None);
    };
    let mut destination = None;
    let mut hop_limit = None;
    for cmsg in message.cmsgs().map_err(std::io::Error::from)? {
        match cmsg {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)))
            }
            ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(limit).ok(),
            _ => {}
        }
    }
    Ok(match (destination, hop_limit) {
        (Some(destination), Some(hop_limit)) => Some((source, destination, hop_limit, 0..len)),
        _ => None,
    })
}

/// (source, destination, TTL, header length) of an IPv4 packet.
fn split_ipv4(packet: &[u8]) -> Option<(IpAddr, IpAddr, u8, usize)> {
    let header_len = usize::from(*packet.first()? & 0x0f) * 4;
    if packet.len() < header_len || header_len < 20 || packet[9] != IPPROTO_VRRP {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((
        IpAddr::V4(source),
        IpAddr::V4(destination),
        packet[8],
        header_len,
    ))
}
