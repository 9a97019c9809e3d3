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
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::Outcome;

/// Entry point attached to the load-balancer interface.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let (action, outcome) = try_lb_xdp(&ctx);
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

fn try_lb_xdp(ctx: &XdpContext) -> (u32, Outcome) {
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(outcome) => return (xdp_action::XDP_PASS, outcome),
    };
    let Some(service) = lookup::service(&packet) else {
        return (xdp_action::XDP_PASS, Outcome::PassNotService);
    };
    let Some(settings) = maps::SETTINGS.get(0) else {
        return (xdp_action::XDP_PASS, Outcome::DropInternal);
    };
    if settings.forwarding == 0 {
        return (xdp_action::XDP_PASS, Outcome::PassStandby);
    }
    if !checksum::ipv4_header_is_valid(ctx, packet.l3_offset, packet.l3_header_len) {
        return (xdp_action::XDP_DROP, Outcome::DropBadIpChecksum);
    }
    let choice = match lookup::backend(&packet, &service) {
        Ok(choice) => choice,
        Err(outcome) => return (xdp_action::XDP_DROP, outcome),
    };
    stats::count_traffic(
        service.id,
        choice.backend_id,
        packet.frame_len,
        choice.new_flow,
    );
    match rewrite::l2_dsr(ctx, &choice.backend, settings.if_mac) {
        Ok(()) => (xdp_action::XDP_TX, Outcome::TxDsr),
        Err(outcome) => (xdp_action::XDP_DROP, outcome),
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
