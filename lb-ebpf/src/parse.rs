//! Header parsing with bounds checks the verifier can follow.
use aya_ebpf::programs::XdpContext;
use core::mem::size_of;
use lb_common::{
    FlowKey, Outcome, FAMILY_IPV4, FAMILY_IPV6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

/// A pointer to a `T` at `offset` bytes into the packet, if the whole `T`
/// lies inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    // Offsets that travel through the stack (a `Packet` handed to another
    // BPF function) reach the verifier unbounded; this bound is what lets
    // it accept `data + offset`.
    if offset > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Length of the frame in bytes, opaque to the optimiser on purpose. If
/// LLVM could relate it to `data_end - data`, a length check made with it
/// (the IP total length fits in the frame) would let LLVM delete later
/// `ptr_at` bounds checks as redundant; the verifier, which tracks bounds
/// per packet pointer, would then reject the program.
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    core::hint::black_box(ctx.data_end() - ctx.data())
}

/// Reads `N` bytes at `offset`.
#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let p: *const [u8; N] = ptr_at(ctx, offset)?;
    // SAFETY: bounds checked by `ptr_at`.
    Some(unsafe { *p })
}

/// Writes `N` bytes at `offset`; false if they do not fit.
#[inline(always)]
pub fn write<const N: usize>(ctx: &XdpContext, offset: usize, bytes: &[u8; N]) -> bool {
    let Some(p) = ptr_at::<[u8; N]>(ctx, offset) else {
        return false;
    };
    // SAFETY: bounds checked by `ptr_at`; XDP owns the frame.
    unsafe { *p = *bytes };
    true
}

/// Larger than any header offset this program uses, below the verifier's
/// limit for variable packet offsets.
const MAX_OFFSET: usize = 0x3fff;

/// An ICMP error that quotes a TCP/UDP packet: where the quote is.
#[derive(Clone, Copy)]
pub struct IcmpError {
    pub inner_l3_offset: usize,
    pub inner_l4_offset: usize,
}

/// What the lookup and rewrite stages need to know about a packet.
#[derive(Clone, Copy)]
pub struct Packet {
    /// The TCP/UDP flow. For an ICMP error it is the quoted packet's flow
    /// turned around, i.e. the flow the error travels along: an error about
    /// a reply (VIP -> client) then looks like client -> VIP and takes the
    /// client's path to the backend, and vice versa.
    pub flow: FlowKey,
    pub l3_offset: usize,
    pub l3_header_len: usize,
    pub l4_offset: usize,
    /// End of the IP packet (Ethernet padding may follow).
    pub ip_end: usize,
    /// TCP flags byte (0 for UDP and ICMP).
    pub tcp_flags: u8,
    /// Where the quote of an ICMP error is (see [`Packet::icmp`]). Not an
    /// `Option`: Rust enums become BTF unions the kernel rejects, and this
    /// struct lives in a map.
    pub quote: IcmpError,
    pub is_icmp_error: bool,
    pub frame_len: u64,
}

/// Where an IP packet's headers are in the frame.
struct Layout {
    l3_offset: usize,
    l3_header_len: usize,
    l4_offset: usize,
    ip_end: usize,
    frame_len: usize,
}

impl Packet {
    /// An IP packet whose ports (or ICMP quote) are filled in next.
    #[inline(always)]
    fn new(src: [u8; 16], dst: [u8; 16], proto: u8, family: u8, layout: Layout) -> Packet {
        Packet {
            flow: FlowKey {
                src,
                dst,
                src_port: 0,
                dst_port: 0,
                proto,
                family,
                _pad: [0; 2],
            },
            l3_offset: layout.l3_offset,
            l3_header_len: layout.l3_header_len,
            l4_offset: layout.l4_offset,
            ip_end: layout.ip_end,
            tcp_flags: 0,
            quote: IcmpError {
                inner_l3_offset: 0,
                inner_l4_offset: 0,
            },
            is_icmp_error: false,
            frame_len: layout.frame_len as u64,
        }
    }

    /// The quote's location when this is an ICMP error.
    #[inline(always)]
    pub fn icmp(&self) -> Option<IcmpError> {
        if self.is_icmp_error {
            Some(self.quote)
        } else {
            None
        }
    }
}

// Host byte order. (network-types' `EtherType` values are already swapped
// to network order, so they must not be compared after `from_be`.)
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// "More fragments" flag and fragment offset bits of the IPv4 `frags` field.
const IPV4_MF_AND_OFFSET: u16 = 0x3fff;
const IPV6_FRAGMENT_HEADER: u8 = 44;
/// ICMP error types that quote the offending packet.
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// ICMP header length (type, code, checksum, 4 bytes of rest).
pub const ICMP_HEADER_LEN: usize = 8;
const TCP_FLAGS_OFFSET: usize = 13;

/// Parses Ethernet, IPv4/IPv6 and TCP/UDP, or an ICMP error quoting a
/// TCP/UDP packet. `Err` carries the reason the packet is not a candidate
/// for balancing; every such packet is passed to the kernel.
///
/// Fills `packet` in place (it lives in a per-CPU scratch map: the BPF
/// stack is too small to pass it around by value). Inlined in `lb_xdp`.
#[inline(always)]
pub fn parse(ctx: &XdpContext, packet: &mut Packet) -> Result<(), Outcome> {
    match ip_ether_type(ctx)? {
        ETHERTYPE_IPV4 => parse_ipv4(ctx, EthHdr::LEN, packet),
        _ => parse_ipv6(ctx, EthHdr::LEN, packet),
    }
}

/// The frame's ethertype when it is IPv4 or IPv6; checked first, before
/// any map lookup, so that ARP and other non-IP frames leave cheaply.
#[inline(always)]
pub fn ip_ether_type(ctx: &XdpContext) -> Result<u16, Outcome> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Outcome::PassTruncatedEth)?;
    // SAFETY: `ptr_at` checked that the header is inside the packet.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    match ether_type {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(ether_type),
        _ => Err(Outcome::PassNotIp),
    }
}

/// An IPv4 header's (header length, total length, protocol) after the
/// checks every IPv4 packet must pass.
#[inline(always)]
fn ipv4_header(
    ctx: &XdpContext,
    offset: usize,
    available: usize,
) -> Result<(&Ipv4Hdr, usize, usize), Outcome> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset).ok_or(Outcome::PassMalformedIp)?;
    // SAFETY: bounds checked by `ptr_at`.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || header_len > available {
        return Err(Outcome::PassMalformedIp);
    }
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    Ok((ip, header_len, total_len))
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_offset: usize, packet: &mut Packet) -> Result<(), Outcome> {
    let frame_len = frame_len(ctx);
    let (ip, header_len, total_len) = ipv4_header(ctx, l3_offset, frame_len - l3_offset)?;
    // The IP packet must fit in the frame (Ethernet padding may follow it).
    if total_len < header_len || l3_offset + total_len > frame_len {
        return Err(Outcome::PassMalformedIp);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Err(Outcome::PassFragment);
    }
    let l4_offset = l3_offset + header_len;
    let l4_len = total_len - header_len;
    *packet = Packet::new(
        widen(ip.src_addr),
        widen(ip.dst_addr),
        ip.proto,
        FAMILY_IPV4,
        Layout {
            l3_offset,
            l3_header_len: header_len,
            l4_offset,
            ip_end: l3_offset + total_len,
            frame_len,
        },
    );
    match ip.proto {
        PROTO_TCP | PROTO_UDP => transport(ctx, packet, l4_len),
        PROTO_ICMP => icmpv4_error(ctx, packet, l4_len),
        _ => Err(Outcome::PassNotService),
    }
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_offset: usize, packet: &mut Packet) -> Result<(), Outcome> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_offset).ok_or(Outcome::PassMalformedIp)?;
    // SAFETY: bounds checked by `ptr_at`.
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(Outcome::PassMalformedIp);
    }
    let frame_len = frame_len(ctx);
    let l4_offset = l3_offset + Ipv6Hdr::LEN;
    let l4_len = usize::from(u16::from_be_bytes(ip.payload_len));
    if l4_offset + l4_len > frame_len {
        return Err(Outcome::PassMalformedIp);
    }
    *packet = Packet::new(
        ip.src_addr,
        ip.dst_addr,
        ip.next_hdr,
        FAMILY_IPV6,
        Layout {
            l3_offset,
            l3_header_len: Ipv6Hdr::LEN,
            l4_offset,
            ip_end: l4_offset + l4_len,
            frame_len,
        },
    );
    match ip.next_hdr {
        PROTO_TCP | PROTO_UDP => transport(ctx, packet, l4_len),
        // NDP and echo are ICMPv6 too: everything but errors passes here.
        PROTO_ICMPV6 => icmpv6_error(ctx, packet, l4_len),
        IPV6_FRAGMENT_HEADER => Err(Outcome::PassFragment),
        _ => Err(Outcome::PassIpv6Ext),
    }
}

/// Fills in the ports (and TCP flags) of a TCP/UDP packet.
#[inline(always)]
fn transport(ctx: &XdpContext, packet: &mut Packet, l4_len: usize) -> Result<(), Outcome> {
    let (src_port, dst_port, tcp_flags) = match packet.flow.proto {
        PROTO_TCP => tcp_ports(ctx, packet.l4_offset, l4_len)?,
        _ => udp_ports(ctx, packet.l4_offset, l4_len)?,
    };
    packet.flow.src_port = src_port;
    packet.flow.dst_port = dst_port;
    packet.tcp_flags = tcp_flags;
    Ok(())
}

#[inline(always)]
fn tcp_ports(ctx: &XdpContext, offset: usize, l4_len: usize) -> Result<(u16, u16, u8), Outcome> {
    let header: *const TcpHdr = ptr_at(ctx, offset).ok_or(Outcome::PassMalformedL4)?;
    // SAFETY: bounds checked by `ptr_at`.
    let tcp = unsafe { &*header };
    let data_offset = usize::from(tcp.doff()) * 4;
    if data_offset < TcpHdr::LEN || data_offset > l4_len {
        return Err(Outcome::PassMalformedL4);
    }
    // Read through the same checked pointer: a separate `ptr_at` would be
    // dropped by LLVM as redundant, and the re-derived pointer would carry
    // no bounds for the verifier.
    // SAFETY: byte 13 lies inside the 20-byte header checked above.
    let flags = unsafe { *(header as *const u8).add(TCP_FLAGS_OFFSET) };
    Ok((
        u16::from_be_bytes(tcp.source),
        u16::from_be_bytes(tcp.dest),
        flags,
    ))
}

#[inline(always)]
fn udp_ports(ctx: &XdpContext, offset: usize, l4_len: usize) -> Result<(u16, u16, u8), Outcome> {
    let udp: *const UdpHdr = ptr_at(ctx, offset).ok_or(Outcome::PassMalformedL4)?;
    // SAFETY: bounds checked by `ptr_at`.
    let udp = unsafe { &*udp };
    let udp_len = usize::from(u16::from_be_bytes(udp.len));
    if udp_len < UdpHdr::LEN || udp_len > l4_len {
        return Err(Outcome::PassMalformedL4);
    }
    Ok((u16::from_be_bytes(udp.src), u16::from_be_bytes(udp.dst), 0))
}

/// The first 4 bytes of the quoted TCP/UDP header: its ports (RFC 792 and
/// RFC 4443 guarantee at least 8 bytes of the quoted payload).
#[inline(always)]
fn quoted_ports(ctx: &XdpContext, offset: usize) -> Result<(u16, u16), Outcome> {
    let ports: [u8; 4] = read(ctx, offset).ok_or(Outcome::PassMalformedL4)?;
    Ok((
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    ))
}

#[inline(always)]
fn icmpv4_error(ctx: &XdpContext, packet: &mut Packet, l4_len: usize) -> Result<(), Outcome> {
    // Type and code: two bytes, also because a one-byte check at a
    // variable offset compiles to `ptr >= end`, which gives the verifier
    // no range.
    let header: [u8; 2] = read(ctx, packet.l4_offset).ok_or(Outcome::PassMalformedL4)?;
    if header[0] != ICMP_DEST_UNREACHABLE && header[0] != ICMP_TIME_EXCEEDED {
        return Err(Outcome::PassNotService);
    }
    let inner_l3_offset = packet.l4_offset + ICMP_HEADER_LEN;
    let available = l4_len.saturating_sub(ICMP_HEADER_LEN);
    let (inner, inner_header_len, _) =
        ipv4_header(ctx, inner_l3_offset, available).map_err(|_| Outcome::PassMalformedL4)?;
    if inner.proto != PROTO_TCP && inner.proto != PROTO_UDP {
        return Err(Outcome::PassNotService);
    }
    if u16::from_be_bytes(inner.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Err(Outcome::PassFragment);
    }
    let inner_l4_offset = inner_l3_offset + inner_header_len;
    if available < inner_header_len + 8 {
        return Err(Outcome::PassMalformedL4);
    }
    let quoted = Quoted {
        src: widen(inner.src_addr),
        dst: widen(inner.dst_addr),
        proto: inner.proto,
        inner_l3_offset,
        inner_l4_offset,
    };
    quoted.into_packet(ctx, packet)
}

/// The packet an ICMP error quotes.
struct Quoted {
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    inner_l3_offset: usize,
    inner_l4_offset: usize,
}

impl Quoted {
    /// Makes `packet` the quoted flow turned around: the error travels
    /// towards the quoted packet's source. Only an error addressed to that
    /// source is one: a VIP (an error about a reply), a client or our
    /// `fullnat` address (an error about a forwarded packet). Anything else
    /// quoting a live flow is someone else's packet and passes untouched.
    #[inline(always)]
    fn into_packet(self, ctx: &XdpContext, packet: &mut Packet) -> Result<(), Outcome> {
        if packet.flow.dst != self.src {
            return Err(Outcome::PassNotService);
        }
        let (src_port, dst_port) = quoted_ports(ctx, self.inner_l4_offset)?;
        packet.flow.src = self.dst;
        packet.flow.dst = self.src;
        packet.flow.src_port = dst_port;
        packet.flow.dst_port = src_port;
        packet.flow.proto = self.proto;
        packet.quote = IcmpError {
            inner_l3_offset: self.inner_l3_offset,
            inner_l4_offset: self.inner_l4_offset,
        };
        packet.is_icmp_error = true;
        Ok(())
    }
}

#[inline(always)]
fn icmpv6_error(ctx: &XdpContext, packet: &mut Packet, l4_len: usize) -> Result<(), Outcome> {
    let header: [u8; 2] = read(ctx, packet.l4_offset).ok_or(Outcome::PassMalformedL4)?;
    let kind = header[0];
    if kind != ICMPV6_DEST_UNREACHABLE
        && kind != ICMPV6_PACKET_TOO_BIG
        && kind != ICMPV6_TIME_EXCEEDED
    {
        return Err(Outcome::PassNotService);
    }
    let inner_l3_offset = packet.l4_offset + ICMP_HEADER_LEN;
    if l4_len < ICMP_HEADER_LEN + Ipv6Hdr::LEN + 8 {
        return Err(Outcome::PassMalformedL4);
    }
    let inner: *const Ipv6Hdr = ptr_at(ctx, inner_l3_offset).ok_or(Outcome::PassMalformedL4)?;
    // SAFETY: bounds checked by `ptr_at`.
    let inner = unsafe { &*inner };
    if inner.next_hdr != PROTO_TCP && inner.next_hdr != PROTO_UDP {
        return Err(Outcome::PassNotService);
    }
    let inner_l4_offset = inner_l3_offset + Ipv6Hdr::LEN;
    let quoted = Quoted {
        src: inner.src_addr,
        dst: inner.dst_addr,
        proto: inner.next_hdr,
        inner_l3_offset,
        inner_l4_offset,
    };
    quoted.into_packet(ctx, packet)
}

/// The 16-byte key form of an IPv4 address.
#[inline(always)]
fn widen(octets: [u8; 4]) -> [u8; 16] {
    lb_common::ipv4_addr_bytes(octets)
}
