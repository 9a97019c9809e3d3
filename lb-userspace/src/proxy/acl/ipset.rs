//! CIDR lists (`src 10.0.0.0/8 198.18.0.0/15 ...`) compiled into sorted,
//! merged address ranges: a lookup is a binary search, whatever the
//! length of the list. IPv4 samples also match IPv4-mapped IPv6 networks
//! and the other way round, as HAProxy's `src` does.
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// The IPv4-mapped block, `::ffff:0:0/96`.
const MAPPED_LOW: u128 = 0xffff_0000_0000;
const MAPPED_HIGH: u128 = 0xffff_ffff_ffff;

impl IpSet {
    pub fn new(nets: &[IpNet]) -> IpSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    let (low, high) = (u128::from(n.network()), u128::from(n.broadcast()));
                    v6.push((low, high));
                    // The part inside ::ffff:0:0/96 also matches IPv4 samples.
                    let (low, high) = (low.max(MAPPED_LOW), high.min(MAPPED_HIGH));
                    if low <= high {
                        v4.push((low as u32, high as u32));
                    }
                }
            }
        }
        IpSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => within(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u32::from(v4)),
                None => within(&self.v6, u128::from(v6)),
            },
        }
    }
}

/// Sorted, with overlapping and adjacent ranges joined.
fn merge<T: Ord + Copy + num_like::Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match out.last_mut() {
            Some(last) if low <= last.1.successor() => last.1 = last.1.max(high),
            _ => out.push((low, high)),
        }
    }
    out
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], value: T) -> bool {
    let after = ranges.partition_point(|&(low, _)| low <= value);
    after > 0 && ranges[after - 1].1 >= value
}

mod num_like {
    /// `x + 1`, saturating: adjacent ranges merge, the top one stays put.
    pub trait Successor {
        fn successor(self) -> Self;
    }
    impl Successor for u32 {
        fn successor(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Successor for u128 {
        fn successor(self) -> Self {
            self.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> u128 {
        u128::from(text.parse::<std::net::Ipv6Addr>().unwrap())
    }

    fn set(nets: &[&str]) -> IpSet {
        IpSet::new(
            &nets
                .iter()
                .map(|n| n.parse().unwrap())
                .collect::<Vec<IpNet>>(),
        )
    }

    #[test]
    fn lookups_match_a_linear_scan() {
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "198.18.0.0/15",
            "198.18.5.7/32",
            "0.0.0.0/32",
            "255.255.255.255/32",
            "fd00::/8",
            "2001:db8::/32",
            "::ffff:192.0.2.0/120",
            "::1/128",
        ];
        let compiled = set(&nets);
        let parsed: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        let linear = |ip: IpAddr| {
            let mapped = match ip {
                IpAddr::V4(a) => Some(IpAddr::V6(a.to_ipv6_mapped())),
                IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4),
            };
            parsed
                .iter()
                .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m)))
        };
        let samples = [
            "10.255.255.255",
            "11.0.0.0",
            "9.255.255.255",
            "198.17.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.20.0.0",
            "0.0.0.0",
            "0.0.0.1",
            "255.255.255.255",
            "255.255.255.254",
            "192.0.2.1",
            "192.0.3.1",
            "fd12::1",
            "fe00::1",
            "2001:db8:1::",
            "2001:db9::",
            "::1",
            "::2",
            "::ffff:10.2.3.4",
            "::ffff:11.0.0.1",
            "::ffff:192.0.2.9",
        ];
        for sample in samples {
            let ip: IpAddr = sample.parse().unwrap();
            assert_eq!(compiled.contains(ip), linear(ip), "{sample}");
        }
        assert!(!set(&[]).contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge() {
        let s = set(&[
            "10.0.0.0/9",
            "10.128.0.0/9",
            "10.0.0.0/16",
            "192.168.0.0/24",
        ]);
        assert_eq!(
            s.v4,
            [(0x0a00_0000, 0x0aff_ffff), (0xc0a8_0000, 0xc0a8_00ff)]
        );
        assert_eq!(set(&["::/0"]).v6, [(0, u128::MAX)]);
        assert_eq!(v6("::1"), 1);
    }
}
