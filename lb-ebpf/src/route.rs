//! Egress for rewritten packets: the kernel's FIB picks the next hop
//! (`bpf_fib_lookup`), then the frame goes back out of the interface it
//! came in on (`XDP_TX`) or out of another one (`bpf_redirect`).
use crate::{
    parse::{read, Packet},
    rewrite::set_macs,
    verdict::Verdict,
};
use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
    EbpfContext,
};
use core::mem::{size_of, zeroed};
use lb_common::{Outcome, FAMILY_IPV4};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where the frame leaves: `Ok(action)` with its MACs set, or
/// `Err(PassFibFailed)` when the FIB has no complete answer (no neighbour
/// entry yet, no route, forwarding disabled). The caller then passes the
/// already rewritten packet, which the kernel forwards itself, resolving
/// the neighbour for the packets that follow.
///
/// Returns `XDP_TX` with `TxNat`, a redirect with `Redirect`, or the
/// failure.
#[inline(never)]
pub fn next_hop(ctx: &XdpContext, packet: &Packet) -> Verdict {
    match try_next_hop(ctx, packet) {
        Ok(action) if action == xdp_action::XDP_TX => Verdict::new(action, Outcome::TxNat),
        Ok(action) => Verdict::new(action, Outcome::Redirect),
        Err(outcome) => Verdict::step(Err(outcome)),
    }
}

#[inline(always)]
fn try_next_hop(ctx: &XdpContext, packet: &Packet) -> Result<u32, Outcome> {
    let params = &mut crate::maps::scratch().ok_or(Outcome::DropInternal)?.fib;
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid input.
    *params = unsafe { zeroed() };
    let ingress = ctx.ingress_ifindex() as u32;
    params.ifindex = ingress;
    let l3 = packet.l3_offset;
    if packet.flow.family == FAMILY_IPV4 {
        let header: [u8; 20] = read(ctx, l3).ok_or(Outcome::DropInternal)?;
        params.family = AF_INET;
        params.l4_protocol = header[9];
        params.__bindgen_anon_1.tot_len = u16::from_be_bytes([header[2], header[3]]);
        params.__bindgen_anon_3.ipv4_src =
            u32::from_ne_bytes([header[12], header[13], header[14], header[15]]);
        params.__bindgen_anon_4.ipv4_dst =
            u32::from_ne_bytes([header[16], header[17], header[18], header[19]]);
    } else {
        let header: [u8; 40] = read(ctx, l3).ok_or(Outcome::DropInternal)?;
        params.family = AF_INET6;
        params.l4_protocol = header[6];
        params.__bindgen_anon_1.tot_len = u16::from_be_bytes([header[4], header[5]]) + 40;
        let mut src = [0u32; 4];
        let mut dst = [0u32; 4];
        for i in 0..4 {
            let s = 8 + i * 4;
            let d = 24 + i * 4;
            src[i] = u32::from_ne_bytes([header[s], header[s + 1], header[s + 2], header[s + 3]]);
            dst[i] = u32::from_ne_bytes([header[d], header[d + 1], header[d + 2], header[d + 3]]);
        }
        params.__bindgen_anon_3.ipv6_src = src;
        params.__bindgen_anon_4.ipv6_dst = dst;
    }
    // SAFETY: `params` is a valid, writable `bpf_fib_lookup`.
    let result = unsafe { bpf_fib_lookup(ctx.as_ptr(), params, size_of::<FibParams>() as i32, 0) };
    if result != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return Err(Outcome::PassFibFailed);
    }
    set_macs(ctx, params.dmac, params.smac)?;
    if params.ifindex == ingress {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: plain helper call; it returns the XDP action to use.
        Ok(unsafe { bpf_redirect(params.ifindex, 0) } as u32)
    }
}
