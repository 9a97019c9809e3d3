//! The flow hash that picks a Maglev slot.
//!
//! It lives here, not in the XDP program, so that the daemon and the tests
//! compute exactly the value the kernel computes: two `lbd` nodes with the
//! same configuration pick the same backend for the same flow (what lets a
//! DSR flow survive a failover), and tests can predict every choice.
//! The hash is seedless on purpose for that reason.

use crate::FlowKey;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(state: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (state ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn word(bytes: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
}

/// MurmurHash3 (x86, 32-bit) over the flow's addresses, ports, protocol and
/// family, in a fixed order. Unrolled, bounded work: fine for the verifier.
#[inline(always)]
pub fn flow_hash(flow: &FlowKey) -> u32 {
    let mut h = 0u32;
    h = mix(h, word(&flow.src, 0));
    h = mix(h, word(&flow.src, 4));
    h = mix(h, word(&flow.src, 8));
    h = mix(h, word(&flow.src, 12));
    h = mix(h, word(&flow.dst, 0));
    h = mix(h, word(&flow.dst, 4));
    h = mix(h, word(&flow.dst, 8));
    h = mix(h, word(&flow.dst, 12));
    h = mix(h, ((flow.src_port as u32) << 16) | flow.dst_port as u32);
    h = mix(h, ((flow.proto as u32) << 8) | flow.family as u32);
    // Finalisation (fmix32) spreads the last words over all bits, which
    // matters because the result is taken modulo the table size.
    h ^= 40;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ipv4_addr_bytes, FAMILY_IPV4, PROTO_TCP};

    fn flow(src_port: u16) -> FlowKey {
        FlowKey {
            src: ipv4_addr_bytes([198, 18, 0, 2]),
            dst: ipv4_addr_bytes([198, 18, 0, 100]),
            src_port,
            dst_port: 80,
            proto: PROTO_TCP,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // A change here changes which backend every live flow maps to on a
        // node running the new build: it must be deliberate.
        assert_eq!(flow_hash(&flow(40000)), 0x4188_e21a);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = flow(40000);
        let h = flow_hash(&base);
        let mut f = base;
        f.src_port = 40001;
        assert_ne!(flow_hash(&f), h);
        let mut f = base;
        f.dst_port = 81;
        assert_ne!(flow_hash(&f), h);
        let mut f = base;
        f.src[3] = 3;
        assert_ne!(flow_hash(&f), h);
        let mut f = base;
        f.dst[3] = 101;
        assert_ne!(flow_hash(&f), h);
        let mut f = base;
        f.proto = crate::PROTO_UDP;
        assert_ne!(flow_hash(&f), h);
    }

    #[test]
    fn consecutive_source_ports_spread_evenly() {
        // 3 buckets, 30000 consecutive ports: each bucket within 3% of 1/3.
        let mut buckets = [0u32; 3];
        for p in 20000..50000u16 {
            buckets[(flow_hash(&flow(p)) % 3) as usize] += 1;
        }
        for b in buckets {
            assert!((9700..=10300).contains(&b), "{buckets:?}");
        }
    }
}
