//! Packet rewrites for each forwarding mode.
use crate::parse::ptr_at;
use aya_ebpf::programs::XdpContext;
use lb_common::{BackendInfo, Outcome};
use network_types::eth::EthHdr;

/// L2 DSR: the IP packet is untouched; the frame is re-addressed to the
/// backend's MAC from our own, and sent back out of the same interface.
#[inline(always)]
pub fn l2_dsr(ctx: &XdpContext, backend: &BackendInfo, if_mac: [u8; 6]) -> Result<(), Outcome> {
    if backend.mac == [0; 6] {
        return Err(Outcome::DropNoBackendMac);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Outcome::DropInternal)?;
    // SAFETY: bounds checked by `ptr_at`; XDP owns the frame.
    unsafe {
        (*eth).dst_addr = backend.mac;
        (*eth).src_addr = if_mac;
    }
    Ok(())
}
