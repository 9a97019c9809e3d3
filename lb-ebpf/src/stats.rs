//! Per-CPU counters: global outcomes, per service, per backend.
use crate::maps;
use lb_common::Outcome;

#[inline(always)]
pub fn count_outcome(outcome: Outcome) {
    // `GlobalCounters` is `#[repr(C)]`, one u64 per outcome in declaration
    // order: index it, rather than match over every field (BPF has no
    // jump tables, so a match is a chain of compares).
    let index = outcome as usize;
    if index >= Outcome::COUNT {
        return;
    }
    if let Some(counters) = maps::GLOBAL_STATS.get_ptr_mut(0) {
        // SAFETY: per-CPU value, only this CPU writes it; `index` is below
        // the number of u64 fields.
        unsafe { *(counters as *mut u64).add(index) += 1 };
    }
}

#[inline(always)]
pub fn count_traffic(service_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    let new_flows = u64::from(new_flow);
    if let Some(counters) = maps::SERVICE_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU value, only this CPU writes it.
        unsafe {
            (*counters).packets += 1;
            (*counters).bytes += bytes;
            (*counters).new_flows += new_flows;
        }
    }
    if let Some(counters) = maps::BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: as above.
        unsafe {
            (*counters).packets += 1;
            (*counters).bytes += bytes;
            (*counters).new_flows += new_flows;
        }
    }
}
