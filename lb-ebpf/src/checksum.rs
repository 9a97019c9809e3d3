//! Checksum verification (and, for the NAT modes, incremental updates).
use crate::parse::ptr_at;
use aya_ebpf::programs::XdpContext;

/// Longest IPv4 header, in 16-bit words (IHL 15 * 4 bytes / 2).
const MAX_IPV4_HEADER_WORDS: usize = 30;

/// True when the IPv4 header checksum (options included) is correct. A
/// packet with a bad one is never forwarded: the backend would drop it, and
/// we must not "fix" it either.
#[inline(always)]
pub fn ipv4_header_is_valid(ctx: &XdpContext, offset: usize, header_len: usize) -> bool {
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
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}
