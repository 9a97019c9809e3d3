//! Packet rewrites for each forwarding mode. The kernel program only ever
//! moves addresses and ports it was told about; which ones is decided by
//! the lookups.
use crate::{
    checksum::{self, Delta},
    parse::{ptr_at, read, write, Packet},
};
use aya_ebpf::programs::XdpContext;
use lb_common::{BackendInfo, Outcome, FAMILY_IPV4, PROTO_UDP};
use network_types::eth::EthHdr;

/// L2 DSR: the IP packet is untouched; the frame is re-addressed to the
/// backend's MAC from our own, and sent back out of the same interface.
#[inline(always)]
pub fn l2_dsr(ctx: &XdpContext, backend: &BackendInfo, if_mac: [u8; 6]) -> Result<(), Outcome> {
    if backend.mac == [0; 6] {
        return Err(Outcome::DropNoBackendMac);
    }
    set_macs(ctx, backend.mac, if_mac)
}

#[inline(always)]
pub fn set_macs(ctx: &XdpContext, dst: [u8; 6], src: [u8; 6]) -> Result<(), Outcome> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Outcome::DropInternal)?;
    // SAFETY: bounds checked by `ptr_at`; XDP owns the frame.
    unsafe {
        (*eth).dst_addr = dst;
        (*eth).src_addr = src;
    }
    Ok(())
}

/// An address and port (host order) that a rewrite puts into a packet.
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
}

/// Offsets of the address fields in an IPv4 / IPv6 header.
const IPV4_SRC: usize = 12;
const IPV4_DST: usize = 16;
const IPV4_CHECKSUM: usize = 10;
const IPV6_SRC: usize = 8;
const IPV6_DST: usize = 24;
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;
const ICMP_CHECKSUM: usize = 2;

/// Replaces the IPv4 (first 4 bytes of `new`) or IPv6 address at
/// `offset`; returns the checksum delta, or -1 outside the packet.
// Not inlined, with a plain integer result: the 16-byte copies stay out of
// the callers' stack frames (a BPF call chain shares 512 bytes).
#[inline(never)]
fn replace_addr(ctx: &XdpContext, offset: usize, ipv4: bool, new: &[u8; 16]) -> i64 {
    let mut delta = Delta::default();
    if ipv4 {
        let Some(old) = read::<4>(ctx, offset) else {
            return -1;
        };
        let new = [new[0], new[1], new[2], new[3]];
        if !write(ctx, offset, &new) {
            return -1;
        }
        delta.replace(&old, &new);
    } else {
        let Some(old) = read::<16>(ctx, offset) else {
            return -1;
        };
        if !write(ctx, offset, new) {
            return -1;
        }
        delta.replace(&old, new);
    }
    i64::from(delta.raw())
}

/// Replaces the port at `offset`; returns the checksum delta, or -1.
/// Inlined: its frame is small, and a BPF-to-BPF call costs ~11 ns.
#[inline(always)]
fn replace_port(ctx: &XdpContext, offset: usize, port: u16) -> i64 {
    let Some(old) = read::<2>(ctx, offset) else {
        return -1;
    };
    let new = port.to_be_bytes();
    if !write(ctx, offset, &new) {
        return -1;
    }
    let mut delta = Delta::default();
    delta.replace(&old, &new);
    i64::from(delta.raw())
}

/// Address rewrites on one packet, with the checksum changes they imply
/// applied once at the end (RFC 1624), so each checksum is written once.
///
/// For a TCP/UDP packet, `destination`/`source` move its own header fields.
/// For an ICMP error they move the outer header and, mirrored, the quoted
/// packet inside it (whose source is where the error is going).
pub struct Rewrite<'a> {
    ctx: &'a XdpContext,
    packet: &'a Packet,
    outer_ip: Delta,
    l4: Delta,
    inner_ip: Delta,
    /// The quoted TCP/UDP checksum's change (addresses and ports).
    inner_l4: Delta,
}

impl<'a> Rewrite<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a XdpContext, packet: &'a Packet) -> Self {
        Rewrite {
            ctx,
            packet,
            outer_ip: Delta::default(),
            l4: Delta::default(),
            inner_ip: Delta::default(),
            inner_l4: Delta::default(),
        }
    }

    #[inline(always)]
    fn is_ipv4(&self) -> bool {
        self.packet.flow.family == FAMILY_IPV4
    }

    #[inline(always)]
    fn addr_offset(&self, l3: usize, source: bool) -> usize {
        match (self.is_ipv4(), source) {
            (true, true) => l3 + IPV4_SRC,
            (true, false) => l3 + IPV4_DST,
            (false, true) => l3 + IPV6_SRC,
            (false, false) => l3 + IPV6_DST,
        }
    }

    /// Replaces the address at `offset`; returns the checksum change.
    #[inline(always)]
    fn replace_addr(&self, offset: usize, new: &[u8; 16]) -> Result<Delta, Outcome> {
        let raw = replace_addr(self.ctx, offset, self.is_ipv4(), new);
        if raw < 0 {
            return Err(Outcome::DropInternal);
        }
        Ok(Delta::from_raw(raw as u32))
    }

    #[inline(always)]
    fn replace_port(&self, offset: usize, port: u16) -> Result<Delta, Outcome> {
        let raw = replace_port(self.ctx, offset, port);
        if raw < 0 {
            return Err(Outcome::DropInternal);
        }
        Ok(Delta::from_raw(raw as u32))
    }

    /// Records an outer address change: IPv4 header checksum, and the L4 /
    /// ICMPv6 checksum through the pseudo-header (ICMPv4 has none).
    #[inline(always)]
    fn outer_addr(&mut self, source: bool, new: &[u8; 16]) -> Result<(), Outcome> {
        let offset = self.addr_offset(self.packet.l3_offset, source);
        let delta = self.replace_addr(offset, new)?;
        if self.is_ipv4() {
            self.outer_ip.add(delta);
            if self.packet.icmp().is_none() {
                self.l4.add(delta);
            }
        } else {
            self.l4.add(delta);
        }
        Ok(())
    }

    /// Makes `to` the packet's destination (or, for an ICMP error, the
    /// host it is delivered to, as the source of the quoted packet).
    #[inline(always)]
    pub fn destination(&mut self, to: &Endpoint) -> Result<(), Outcome> {
        self.outer_addr(false, &to.addr)?;
        match self.packet.icmp() {
            None => {
                let delta = self.replace_port(self.packet.l4_offset + 2, to.port)?;
                self.l4.add(delta);
            }
            Some(icmp) => {
                let offset = self.addr_offset(icmp.inner_l3_offset, true);
                let delta = self.replace_addr(offset, &to.addr)?;
                self.inner_ip.add(delta);
                self.inner_l4.add(delta);
                self.l4.add(delta);
                let delta = self.replace_port(icmp.inner_l4_offset, to.port)?;
                self.inner_l4.add(delta);
                self.l4.add(delta);
            }
        }
        Ok(())
    }

    /// Makes `from` the packet's source. For an ICMP error the quoted
    /// packet's destination becomes `from`, and the outer source changes
    /// only if `outer_too` (an error from a router keeps its source).
    #[inline(always)]
    pub fn source(&mut self, from: &Endpoint, outer_too: bool) -> Result<(), Outcome> {
        match self.packet.icmp() {
            None => {
                self.outer_addr(true, &from.addr)?;
                let delta = self.replace_port(self.packet.l4_offset, from.port)?;
                self.l4.add(delta);
            }
            Some(icmp) => {
                if outer_too {
                    self.outer_addr(true, &from.addr)?;
                }
                let offset = self.addr_offset(icmp.inner_l3_offset, false);
                let delta = self.replace_addr(offset, &from.addr)?;
                self.inner_ip.add(delta);
                self.inner_l4.add(delta);
                self.l4.add(delta);
                let delta = self.replace_port(icmp.inner_l4_offset + 2, from.port)?;
                self.inner_l4.add(delta);
                self.l4.add(delta);
            }
        }
        Ok(())
    }

    /// True when the outer source address equals `addr`.
    #[inline(always)]
    pub fn outer_source_is(&self, addr: &[u8; 16]) -> bool {
        let offset = self.addr_offset(self.packet.l3_offset, true);
        if self.is_ipv4() {
            read::<4>(self.ctx, offset).is_some_and(|a| a == [addr[0], addr[1], addr[2], addr[3]])
        } else {
            read::<16>(self.ctx, offset).is_some_and(|a| a == *addr)
        }
    }

    /// Writes every checksum the rewrites touched.
    #[inline(always)]
    pub fn finish(mut self) -> Result<(), Outcome> {
        let ctx = self.ctx;
        let packet = self.packet;
        let l4_checksum = match packet.icmp() {
            None if packet.flow.proto == PROTO_UDP => packet.l4_offset + UDP_CHECKSUM,
            None => packet.l4_offset + TCP_CHECKSUM,
            Some(icmp) => {
                if self.is_ipv4() {
                    // The quoted header's checksum is part of the ICMP
                    // payload: its change moves the ICMP checksum too.
                    let words = checksum::update_at(
                        self.inner_ip.raw(),
                        ctx,
                        icmp.inner_l3_offset + IPV4_CHECKSUM,
                        false,
                    );
                    if words < 0 {
                        return Err(Outcome::PassMalformedL4);
                    }
                    let old = ((words >> 16) as u16).to_be_bytes();
                    let new = (words as u16).to_be_bytes();
                    self.l4.replace(&old, &new);
                }
                // The quoted TCP/UDP checksum, when the quote holds it
                // (always for UDP's 8 bytes; for TCP only if the sender
                // quoted more): the client's stack may check it.
                let (offset, zero_means_none) = if packet.flow.proto == PROTO_UDP {
                    (icmp.inner_l4_offset + UDP_CHECKSUM, self.is_ipv4())
                } else {
                    (icmp.inner_l4_offset + TCP_CHECKSUM, false)
                };
                let quoted = offset + 2 <= packet.ip_end;
                let words = if quoted {
                    checksum::update_at(self.inner_l4.raw(), ctx, offset, zero_means_none)
                } else {
                    -1
                };
                if words >= 0 {
                    let old = ((words >> 16) as u16).to_be_bytes();
                    let new = (words as u16).to_be_bytes();
                    self.l4.replace(&old, &new);
                }
                packet.l4_offset + ICMP_CHECKSUM
            }
        };
        let udp_over_ipv4 =
            packet.icmp().is_none() && packet.flow.proto == PROTO_UDP && self.is_ipv4();
        if checksum::update_at(self.l4.raw(), ctx, l4_checksum, udp_over_ipv4) < 0 {
            return Err(Outcome::PassMalformedL4);
        }
        if self.is_ipv4()
            && checksum::update_at(
                self.outer_ip.raw(),
                ctx,
                packet.l3_offset + IPV4_CHECKSUM,
                false,
            ) < 0
        {
            return Err(Outcome::DropInternal);
        }
        Ok(())
    }
}
