//! Header parsing with bounds checks the verifier can follow.
use aya_ebpf::programs::XdpContext;
use core::mem::size_of;
use lb_common::{ipv4_addr_bytes, FlowKey, Outcome, FAMILY_IPV4, PROTO_TCP, PROTO_UDP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

/// A pointer to a `T` at `offset` bytes into the packet, if the whole `T`
/// lies inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// What the lookup and rewrite stages need to know about a packet.
pub struct Packet {
    pub flow: FlowKey,
    pub l3_offset: usize,
    pub l3_header_len: usize,
    pub frame_len: u64,
}

// Host byte order. (network-types' `EtherType` values are already swapped
// to network order, so they must not be compared after `from_be`.)
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// "More fragments" flag and fragment offset bits of the IPv4 `frags` field.
const IPV4_MF_AND_OFFSET: u16 = 0x3fff;

/// Parses Ethernet, IPv4 and TCP/UDP. `Err` carries the reason the packet is
/// not a candidate for balancing; every such packet is passed to the kernel.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Outcome> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Outcome::PassTruncatedEth)?;
    // SAFETY: `ptr_at` checked that the header is inside the packet.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    match ether_type {
        ETHERTYPE_IPV4 => parse_ipv4(ctx, EthHdr::LEN),
        ETHERTYPE_IPV6 => Err(Outcome::PassIpv6),
        _ => Err(Outcome::PassNotIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_offset: usize) -> Result<Packet, Outcome> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_offset).ok_or(Outcome::PassMalformedIp)?;
    // SAFETY: bounds checked by `ptr_at`.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Outcome::PassMalformedIp);
    }
    let frame_len = ctx.data_end() - ctx.data();
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    // The IP packet must fit in the frame (Ethernet padding may follow it).
    if total_len < header_len || l3_offset + total_len > frame_len {
        return Err(Outcome::PassMalformedIp);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Err(Outcome::PassFragment);
    }
    let proto = ip.proto;
    let l4_offset = l3_offset + header_len;
    let l4_len = total_len - header_len;
    let (src_port, dst_port) = match proto {
        PROTO_TCP => tcp_ports(ctx, l4_offset, l4_len)?,
        PROTO_UDP => udp_ports(ctx, l4_offset, l4_len)?,
        _ => return Err(Outcome::PassNotService),
    };
    Ok(Packet {
        flow: FlowKey {
            src: ipv4_addr_bytes(ip.src_addr),
            dst: ipv4_addr_bytes(ip.dst_addr),
            src_port,
            dst_port,
            proto,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        },
        l3_offset,
        l3_header_len: header_len,
        frame_len: frame_len as u64,
    })
}

#[inline(always)]
fn tcp_ports(ctx: &XdpContext, offset: usize, l4_len: usize) -> Result<(u16, u16), Outcome> {
    let tcp: *const TcpHdr = ptr_at(ctx, offset).ok_or(Outcome::PassMalformedL4)?;
    // SAFETY: bounds checked by `ptr_at`.
    let tcp = unsafe { &*tcp };
    let data_offset = usize::from(tcp.doff()) * 4;
    if data_offset < TcpHdr::LEN || data_offset > l4_len {
        return Err(Outcome::PassMalformedL4);
    }
    Ok((u16::from_be_bytes(tcp.source), u16::from_be_bytes(tcp.dest)))
}

#[inline(always)]
fn udp_ports(ctx: &XdpContext, offset: usize, l4_len: usize) -> Result<(u16, u16), Outcome> {
    let udp: *const UdpHdr = ptr_at(ctx, offset).ok_or(Outcome::PassMalformedL4)?;
    // SAFETY: bounds checked by `ptr_at`.
    let udp = unsafe { &*udp };
    let udp_len = usize::from(u16::from_be_bytes(udp.len));
    if udp_len < UdpHdr::LEN || udp_len > l4_len {
        return Err(Outcome::PassMalformedL4);
    }
    Ok((u16::from_be_bytes(udp.src), u16::from_be_bytes(udp.dst)))
}
