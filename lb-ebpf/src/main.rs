//! The XDP data plane. It only parses and looks up: Maglev tables, weights
//! and health are computed by `lbd` and swapped into the maps atomically.
#![no_std]
#![no_main]
// Map keys are passed by reference on purpose: a by-value key is copied
// onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

mod checksum;
mod lookup;
mod maps;
mod parse;
mod rewrite;
mod route;
mod stats;
mod verdict;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, macros::xdp, programs::XdpContext,
};
use lb_common::{LbSettings, Outcome, ServiceInfo, FAMILY_IPV4, MODE_DSR, MODE_FULLNAT};
use lookup::BackendChoice;
use parse::Packet;
use rewrite::{Endpoint, Rewrite};
use verdict::Verdict;

/// Entry point attached to the load-balancer interface.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    // Non-IP frames (ARP above all) leave before anything else is looked
    // up: every host-bound frame pays this path.
    if let Err(outcome) = parse::ip_ether_type(&ctx) {
        stats::count_outcome(outcome);
        return xdp_action::XDP_PASS;
    }
    let (action, outcome) = match try_lb_xdp(&ctx) {
        Ok(done) => done,
        Err(outcome) => (verdict::action_for(outcome), outcome),
    };
    stats::count_outcome(outcome);
    action
}

/// An XDP program that passes every packet. veth delivers `XDP_TX` frames
/// only to a peer that runs an XDP program, so labs attach this one to the
/// far end of the load balancer's veth; benchmarks use it as the cost of
/// "XDP attached, doing nothing".
#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// One packet's context, passed by reference: BPF functions take at most
/// five arguments.
pub struct Job<'a> {
    pub ctx: &'a XdpContext,
    pub packet: &'a Packet,
    pub settings: &'a LbSettings,
    pub now: u64,
}

fn try_lb_xdp(ctx: &XdpContext) -> Result<(u32, Outcome), Outcome> {
    let scratch = maps::scratch().ok_or(Outcome::DropInternal)?;
    let maps::Scratch { packet, choice, .. } = scratch;
    parse::parse(ctx, packet)?;
    let settings = maps::SETTINGS.get(0).ok_or(Outcome::DropInternal)?;
    if let Some(service) = lookup::service(packet, settings) {
        if settings.forwarding == 0 {
            return Err(Outcome::PassStandby);
        }
        if packet.flow.family == FAMILY_IPV4
            && !checksum::ipv4_header_is_valid(ctx, packet.l3_offset, packet.l3_header_len)
        {
            return Err(Outcome::DropBadIpChecksum);
        }
        if service.mode == MODE_DSR {
            return dsr_to_backend(ctx, packet, service, settings);
        }
        return nat_to_backend_path(ctx, packet, service, settings, choice);
    }
    if settings.reply_lookup == 0 {
        return Err(Outcome::PassNotService);
    }
    Ok(to_client(ctx, packet, settings).into_finished())
}

/// The reverse direction of `nat`/`fullnat`: a reply from a backend (or
/// an ICMP error travelling towards a client).
// Inlined in `lb_xdp`: its temporaries share the frame with the forward
// paths' (LLVM overlaps them), and the call is saved.
#[inline(always)]
fn to_client(ctx: &XdpContext, packet: &Packet, settings: &LbSettings) -> Verdict {
    Verdict::finished(try_to_client(ctx, packet, settings))
}

#[inline(always)]
fn try_to_client(
    ctx: &XdpContext,
    packet: &Packet,
    settings: &LbSettings,
) -> Result<(u32, Outcome), Outcome> {
    let now = clock();
    let Some((reverse, entry)) = lookup::reply_flow(packet, settings, now) else {
        return Err(Outcome::PassNotService);
    };
    if settings.forwarding == 0 {
        return Err(Outcome::PassStandby);
    }
    // Back to the client, from the VIP (and, for `fullnat`, to the client
    // in place of our source address).
    let mut rewrite = Rewrite::new(ctx, packet);
    let vip = Endpoint {
        addr: reverse.forward.dst,
        port: reverse.forward.dst_port,
    };
    // An error a router sends about a forwarded packet keeps its source;
    // one the backend itself sends appears to come from the VIP.
    let outer_too = packet.icmp().is_none() || rewrite.outer_source_is(&packet.flow.src);
    rewrite.source(&vip, outer_too)?;
    if entry.snat_port != 0 {
        let client = Endpoint {
            addr: reverse.forward.src,
            port: reverse.forward.src_port,
        };
        rewrite.destination(&client)?;
    }
    rewrite.finish()?;
    let sent = if packet.icmp().is_some() {
        Outcome::TxIcmpError
    } else {
        Outcome::TxNatReply
    };
    send(ctx, packet, sent)
}

/// The forward direction of `nat`/`fullnat`: a packet (or ICMP error) for
/// a service. Inlined in `lb_xdp`, so that each stage it calls is one
/// level deep (the backend choice, the port allocation and the rewrite
/// each need a frame of their own, which together would not fit on one
/// call chain); the choice is kept in the scratch map.
#[inline(always)]
fn nat_to_backend_path(
    ctx: &XdpContext,
    packet: &Packet,
    service: &ServiceInfo,
    settings: &LbSettings,
    choice: &mut BackendChoice,
) -> Result<(u32, Outcome), Outcome> {
    let now = clock();
    lookup::backend(packet, service, settings, now, choice).into_step()?;
    if choice.backend.port == 0 {
        // An all-ports service: each flow keeps its own port.
        choice.backend.port = packet.flow.dst_port;
    }
    stats::count_traffic(
        service.id,
        choice.backend_id,
        packet.frame_len,
        choice.new_flow,
    );
    let sent = if packet.icmp().is_some() {
        Outcome::TxIcmpError
    } else {
        Outcome::TxNat
    };
    let job = Job {
        ctx,
        packet,
        settings,
        now,
    };
    if service.mode == MODE_FULLNAT && choice.snat_port == 0 {
        fullnat_port(&job, choice).into_step()?;
    }
    nat_to_backend(&job, choice, service.mode).into_step()?;
    send(ctx, packet, sent)
}

/// The `dsr` path, inlined (see [`lookup::backend_inline`]).
#[inline(always)]
fn dsr_to_backend(
    ctx: &XdpContext,
    packet: &Packet,
    service: &ServiceInfo,
    settings: &LbSettings,
) -> Result<(u32, Outcome), Outcome> {
    let mut choice = BackendChoice::default();
    lookup::backend_inline(packet, service, settings, clock(), &mut choice)?;
    if choice.backend.port == 0 {
        choice.backend.port = packet.flow.dst_port;
    }
    stats::count_traffic(
        service.id,
        choice.backend_id,
        packet.frame_len,
        choice.new_flow,
    );
    let sent = if packet.icmp().is_some() {
        Outcome::TxIcmpError
    } else {
        Outcome::TxDsr
    };
    rewrite::l2_dsr(ctx, &choice.backend, settings.if_mac)?;
    Ok((xdp_action::XDP_TX, sent))
}

/// Now, for flow expiry: `CLOCK_MONOTONIC_COARSE` (the last timer tick,
/// 1-4 ms resolution), half the cost of the exact clock; `lbd` compares
/// expiries with `CLOCK_MONOTONIC`, which it trails by at most one tick.
#[inline(always)]
fn clock() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The `fullnat` source address of the packet's family.
#[inline(always)]
fn snat_address(packet: &Packet, settings: &LbSettings) -> [u8; 16] {
    if packet.flow.family == FAMILY_IPV4 {
        settings.snat_v4
    } else {
        settings.snat_v6
    }
}

/// A source port for a `fullnat` flow that has none yet, remembered in its
/// connection-table entry. ICMP errors never allocate.
#[inline(never)]
fn fullnat_port(job: &Job, choice: &mut BackendChoice) -> Verdict {
    Verdict::step(try_fullnat_port(job, choice))
}

#[inline(always)]
fn try_fullnat_port(job: &Job, choice: &mut BackendChoice) -> Result<(), Outcome> {
    if job.packet.icmp().is_some() {
        return Err(Outcome::PassNotService);
    }
    let addr = snat_address(job.packet, job.settings);
    if addr == [0; 16] {
        return Err(Outcome::PassSnatExhausted);
    }
    let port = lookup::allocate_snat_port(job, choice, &addr);
    if port == 0 {
        return Err(Outcome::PassSnatExhausted);
    }
    lookup::set_snat_port(&job.packet.flow, port);
    choice.snat_port = port;
    Ok(())
}

/// `nat`: destination becomes the backend. `fullnat`: and the source
/// becomes our address with the flow's allocated port.
#[inline(never)]
fn nat_to_backend(job: &Job, choice: &BackendChoice, mode: u8) -> Verdict {
    Verdict::step(try_nat_to_backend(job, choice, mode))
}

#[inline(always)]
fn try_nat_to_backend(job: &Job, choice: &BackendChoice, mode: u8) -> Result<(), Outcome> {
    let (ctx, packet, settings) = (job.ctx, job.packet, job.settings);
    // Plain values, not an `Option<Endpoint>`: LLVM leaves a `None`'s
    // payload undefined and may spill it, which the verifier rejects as a
    // read of an uninitialised register.
    let mut snat = Endpoint {
        addr: [0; 16],
        port: 0,
    };
    if mode == MODE_FULLNAT {
        snat.addr = snat_address(packet, settings);
        if snat.addr == [0; 16] {
            return Err(Outcome::PassSnatExhausted);
        }
        snat.port = choice.snat_port;
    } else if choice.new_flow {
        lookup::remember_reply(packet, choice);
    }
    let mut rewrite = Rewrite::new(ctx, packet);
    rewrite.destination(&Endpoint {
        addr: choice.backend.addr,
        port: choice.backend.port,
    })?;
    if mode == MODE_FULLNAT {
        rewrite.source(&snat, true)?;
    }
    rewrite.finish()
}

/// Sends a rewritten packet towards its new destination, or passes it to
/// the kernel (counted) when the FIB cannot say how.
#[inline(always)]
fn send(ctx: &XdpContext, packet: &Packet, sent: Outcome) -> Result<(u32, Outcome), Outcome> {
    let hop = route::next_hop(ctx, packet);
    match hop.outcome() {
        Outcome::Redirect => Ok((hop.action(), Outcome::Redirect)),
        Outcome::TxNat => Ok((hop.action(), sent)),
        failed => Err(failed),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
