//! `lb_restore`: the benchmark's restore wrapper, never loaded by `lbd`.
//!
//! BPF_PROG_TEST_RUN with `repeat` hands every run the same buffer, which
//! a rewriting path has already changed. This program copies a fresh frame
//! (from `lb_bench_frame`) over the buffer, optionally stamps a run counter
//! into it (so that every run of a SYN is a new flow), and tail-calls the
//! program under test (`lb_bench_jump[0]`). Timing it with `lb_pass` in the
//! slot gives the cost of the wrapper alone, which the benchmark subtracts.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, ProgramArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};

/// Longest frame the wrapper restores.
const MAX_FRAME: usize = 256;

/// `lb_bench_frame[0]`: the frame and how to stamp it. Layout shared with
/// xtask/src/bench.rs (a byte array there).
#[repr(C)]
pub struct BenchFrame {
    /// Bytes of `bytes` in use (the test run's frame has this length).
    len: u32,
    /// Offset of a big-endian u16 replaced by `counter` before every run;
    /// 0: none.
    stamp_offset: u32,
    counter: u32,
    _pad: u32,
    bytes: [u8; MAX_FRAME],
}

#[btf_map(name = "lb_bench_frame")]
static FRAME: Array<BenchFrame, 1> = Array::new();

#[btf_map(name = "lb_bench_jump")]
static JUMP: ProgramArray<1> = ProgramArray::new();

#[xdp]
pub fn lb_restore(ctx: XdpContext) -> u32 {
    let Some(frame) = FRAME.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a pointer from a map lookup; one run at a time on this CPU.
    let frame = unsafe { &mut *frame };
    let data = ctx.data();
    let end = ctx.data_end();
    for word in 0..MAX_FRAME / 8 {
        let offset = word * 8;
        if data + offset + 8 > end {
            break;
        }
        // SAFETY: 8 bytes inside the packet (checked) and inside `bytes`.
        unsafe { copy_word(frame, data, offset) };
    }
    // The last 8 bytes, overlapping the last whole word: frames are at
    // least 14 bytes long, and a byte loop would end in a `ptr >= end`
    // check, which gives the verifier no range.
    let tail = (frame.len.wrapping_sub(8) & 0xff) as usize;
    if tail > MAX_FRAME - 8 || data + tail + 8 > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: as above.
    unsafe { copy_word(frame, data, tail) };
    // Masked, not compared: the verifier needs the bound on the register
    // the pointer is built from.
    let stamp = (frame.stamp_offset & 0xff) as usize;
    if stamp != 0 && data + stamp + 2 <= end {
        frame.counter = frame.counter.wrapping_add(1);
        let value = (frame.counter as u16).to_be_bytes();
        // SAFETY: two bytes inside the packet (checked).
        unsafe { core::ptr::write_unaligned((data + stamp) as *mut [u8; 2], value) };
    }
    // SAFETY: on success the tail call does not return.
    unsafe { JUMP.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Copies the 8 bytes at `offset` of the saved frame into the packet.
///
/// # Safety
/// `data + offset + 8` must lie inside the packet and `offset + 8` inside
/// `frame.bytes`.
#[inline(always)]
unsafe fn copy_word(frame: &BenchFrame, data: usize, offset: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let value = core::ptr::read_unaligned(frame.bytes.as_ptr().add(offset) as *const u64);
        core::ptr::write_unaligned((data + offset) as *mut u64, value);
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
