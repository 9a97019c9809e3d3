//! Checksum verification and incremental updates (RFC 1624).
use crate::parse::{ptr_at, read, write};
use aya_ebpf::programs::XdpContext;
pub use lb_common::checksum::Delta;

const IPV4_MIN_HEADER_LEN: usize = 20;
/// Longest IPv4 header, in 16-bit words (IHL 15 * 4 bytes / 2).
const MAX_IPV4_HEADER_WORDS: usize = 30;

/// True when the IPv4 header checksum (options included) is correct. A
/// packet with a bad one is never forwarded: the backend would drop it, and
/// we must not "fix" it either.
#[inline(always)]
pub fn ipv4_header_is_valid(ctx: &XdpContext, offset: usize, header_len: usize) -> bool {
    if header_len == IPV4_MIN_HEADER_LEN {
        // The usual header, without options: one bounds check, ten adds.
        let Some(header) = read::<IPV4_MIN_HEADER_LEN>(ctx, offset) else {
            return false;
        };
        let mut sum: u32 = 0;
        for i in 0..IPV4_MIN_HEADER_LEN / 2 {
            sum += u32::from(u16::from_be_bytes([header[2 * i], header[2 * i + 1]]));
        }
        return lb_common::checksum::fold(sum) == 0xffff;
    }
    let words = header_len / 2;
    let mut sum: u32 = 0;
    for i in 0..MAX_IPV4_HEADER_WORDS {
        if i >= words {
            break;
        }
        let Some(word) = ptr_at::<[u8; 2]>(ctx, offset + i * 2) else {
            return false;
        };
        // SAFETY: bounds checked by `ptr_at`.
        sum += u32::from(u16::from_be_bytes(unsafe { *word }));
    }
    lb_common::checksum::fold(sum) == 0xffff
}

/// Rewrites the checksum stored at `offset` with everything `delta`
/// recorded; returns `old << 16 | new`, or -1 if `offset` is outside the
/// packet. `zero_means_none`: a UDP-over-IPv4 checksum of 0 means "no
/// checksum" and stays 0, and a computed 0 is sent as 0xffff (RFC 768).
// Inlined (a BPF-to-BPF call costs ~11 ns, and its frame is small); a
// plain integer result all the same.
#[inline(always)]
pub fn update_at(delta: u32, ctx: &XdpContext, offset: usize, zero_means_none: bool) -> i64 {
    let Some(old) = read::<2>(ctx, offset) else {
        return -1;
    };
    let old_value = u16::from_be_bytes(old);
    if zero_means_none && old_value == 0 {
        return 0;
    }
    let mut new_value = Delta::from_raw(delta).apply(old_value);
    if zero_means_none && new_value == 0 {
        new_value = 0xffff;
    }
    if !write(ctx, offset, &new_value.to_be_bytes()) {
        return -1;
    }
    (i64::from(old_value) << 16) | i64::from(new_value)
}
