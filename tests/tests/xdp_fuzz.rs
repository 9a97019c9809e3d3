//! A bounded packet fuzz of the XDP program (BPF_PROG_TEST_RUN): valid
//! frames of every kind the program handles, mutated (bytes flipped or
//! set, lengths changed, frames cut or extended; half of them with their
//! checksums repaired so that the mutation reaches past the checks), run
//! through dsr, nat and fullnat over IPv4 and IPv6. Every run must count
//! exactly one outcome; a passed frame must leave unmodified; a frame that
//! is sent on with valid checksums must still have valid ones. Seeded, so
//! a failure repeats. Needs root.
use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, PacketBuilder, PacketBuilderStep,
};
use lb_common::{GlobalCounters, MODE_DSR, MODE_FULLNAT, MODE_NAT, PROTO_TCP};
use lb_tests::{fixture::*, predict::maglev_choice_for};
use std::net::{IpAddr, SocketAddr};

/// Frames per (mode, family): 6 x 3,500 = 21,000.
const FRAMES_PER_CASE: usize = 3_500;
const BACKENDS: usize = 3;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn ip_builder(
    macs: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
) -> PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    }
}

fn tcp(macs: ([u8; 6], [u8; 6]), src: SocketAddr, dst: SocketAddr, syn: bool) -> Vec<u8> {
    let b = ip_builder(macs, src.ip(), dst.ip()).tcp(src.port(), dst.port(), 1000, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, b"payload").expect("valid frame");
    out
}

fn udp(macs: ([u8; 6], [u8; 6]), src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    ip_builder(macs, src.ip(), dst.ip())
        .udp(src.port(), dst.port())
        .write(&mut out, b"query")
        .expect("valid frame");
    out
}

/// An ICMP error from `src` to `dst` quoting the IP part of `about`.
fn icmp_error(src: IpAddr, dst: IpAddr, about: &[u8]) -> Vec<u8> {
    let quoted = &about[14..about.len().min(14 + 60)];
    let b = ip_builder((CLIENT_MAC, LB_MAC), src, dst);
    let mut out = Vec::new();
    if src.is_ipv4() {
        b.icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut out, quoted)
    } else {
        b.icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
            .write(&mut out, quoted)
    }
    .expect("valid frame");
    out
}

/// Valid frames for a harness of `mode` over `v6`: requests, replies,
/// ICMP errors both ways, traffic for others, ARP.
fn corpus(harness: &mut Harness, mode: u8, v6: bool) -> Vec<Vec<u8>> {
    let to_lb = (CLIENT_MAC, LB_MAC);
    let client_at = SocketAddr::new(client(v6), 40000);
    let vip_tcp = SocketAddr::new(vip(v6), 80);
    let vip_udp = SocketAddr::new(vip(v6), 53);
    let tcp_port = if mode == MODE_DSR { 80 } else { NAT_TCP_PORT };
    let syn = tcp(to_lb, client_at, vip_tcp, true);
    harness.run(&syn).expect("prime the flow");
    let query = udp(to_lb, SocketAddr::new(client(v6), 41000), vip_udp);
    harness.run(&query).expect("prime the flow");
    let backends: Vec<SocketAddr> = (0..BACKENDS)
        .map(|i| SocketAddr::new(backend(v6, i), tcp_port))
        .collect();
    let b = maglev_choice_for(client(v6), 40000, vip(v6), 80, PROTO_TCP, &backends, RING);
    let seen_source = if mode == MODE_FULLNAT {
        let key = lb_tests::predict::flow_key(client(v6), 40000, vip(v6), 80, PROTO_TCP);
        let port = harness
            .maps
            .conntrack
            .get(&key, 0)
            .expect("entry")
            .snat_port;
        SocketAddr::new(lb_addr(v6), port)
    } else {
        client_at
    };
    let reply = tcp((backend_mac(b), LB_MAC), backends[b], seen_source, false);
    let reply_as_sent = tcp((LB_MAC, CLIENT_MAC), vip_tcp, client_at, false);
    let forwarded = tcp((LB_MAC, backend_mac(b)), seen_source, backends[b], false);
    let router: IpAddr = if v6 {
        "fd00::fe".parse().expect("address")
    } else {
        "198.18.0.254".parse().expect("address")
    };
    let other: IpAddr = if v6 {
        "fd00::50".parse().expect("address")
    } else {
        "198.18.0.50".parse().expect("address")
    };
    vec![
        syn,
        tcp(to_lb, client_at, vip_tcp, false),
        query,
        reply,
        icmp_error(router, vip(v6), &reply_as_sent),
        icmp_error(backends[b].ip(), seen_source.ip(), &forwarded),
        tcp(to_lb, client_at, SocketAddr::new(other, 80), true),
        udp(to_lb, client_at, SocketAddr::new(vip(v6), 443)),
        arp_request_for_vip(),
    ]
}

/// Fields worth hitting: version/IHL, lengths, protocol, flags, ports,
/// addresses, ICMP type and the quoted header.
const INTERESTING: [u8; 12] = [0, 1, 2, 5, 6, 17, 58, 0x45, 0x60, 0x7f, 0x80, 0xff];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut frame = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 | 1 => {
                let i = rng.below(frame.len());
                frame[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = 12 + rng.below(frame.len() - 12);
                frame[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(frame.len());
                frame[i] = rng.next() as u8;
            }
            4 => {
                let len = 14 + rng.below(frame.len() - 13);
                frame.truncate(len);
            }
            _ => {
                for _ in 0..1 + rng.below(40) {
                    frame.push(rng.next() as u8);
                }
            }
        }
    }
    frame
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn sum_words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Where a frame's checksums are: (IPv4 header range, L4 range, offset of
/// the L4 checksum, pseudo-header sum, UDP over IPv4), if its lengths are
/// consistent and its protocol has one.
struct Layout {
    ip_header: Option<(usize, usize)>,
    l4: (usize, usize),
    l4_checksum: usize,
    pseudo: u32,
    udp_v4: bool,
}

fn layout(frame: &[u8]) -> Option<Layout> {
    if frame.len() < 14 {
        return None;
    }
    let (proto, l4_start, l4_end, pseudo, ip_header) = match [frame[12], frame[13]] {
        [0x08, 0x00] => {
            let ihl = usize::from(*frame.get(14)? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]));
            if *frame.get(14)? >> 4 != 4 || ihl < 20 || total < ihl || 14 + total > frame.len() {
                return None;
            }
            if u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0 {
                return None;
            }
            let proto = frame[23];
            let l4_len = total - ihl;
            let pseudo = if proto == 1 {
                0
            } else {
                sum_words(&frame[26..34]) + u32::from(proto) + l4_len as u32
            };
            (proto, 14 + ihl, 14 + total, pseudo, Some((14, 14 + ihl)))
        }
        [0x86, 0xdd] => {
            if frame.len() < 54 || frame[14] >> 4 != 6 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
            if 54 + len > frame.len() {
                return None;
            }
            let proto = frame[20];
            let pseudo = sum_words(&frame[22..54]) + u32::from(proto) + len as u32;
            (proto, 54, 54 + len, pseudo, None)
        }
        _ => return None,
    };
    let offset = match proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return None,
    };
    if l4_start + offset + 2 > l4_end {
        return None;
    }
    Some(Layout {
        ip_header,
        l4: (l4_start, l4_end),
        l4_checksum: l4_start + offset,
        pseudo,
        udp_v4: proto == 17 && ip_header.is_some(),
    })
}

/// True when the IPv4 header checksum (if any) and the TCP/UDP/ICMP
/// checksum are right.
fn checksums_valid(frame: &[u8]) -> bool {
    let Some(l) = layout(frame) else {
        return false;
    };
    if let Some((start, end)) = l.ip_header {
        if fold(sum_words(&frame[start..end])) != 0xffff {
            return false;
        }
    }
    if l.udp_v4 && frame[l.l4_checksum..l.l4_checksum + 2] == [0, 0] {
        return true;
    }
    fold(l.pseudo + sum_words(&frame[l.l4.0..l.l4.1])) == 0xffff
}

/// Recomputes the IPv4 header and L4 checksums where the layout allows.
fn repair(frame: &mut [u8]) {
    let Some(l) = layout(frame) else {
        return;
    };
    if let Some((start, end)) = l.ip_header {
        frame[start + 10..start + 12].copy_from_slice(&[0, 0]);
        let sum = !fold(sum_words(&frame[start..end]));
        frame[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
    }
    frame[l.l4_checksum..l.l4_checksum + 2].copy_from_slice(&[0, 0]);
    let mut sum = !fold(l.pseudo + sum_words(&frame[l.l4.0..l.l4.1]));
    if sum == 0 && l.udp_v4 {
        sum = 0xffff;
    }
    frame[l.l4_checksum..l.l4_checksum + 2].copy_from_slice(&sum.to_be_bytes());
}

fn total(counters: &GlobalCounters) -> u64 {
    counters.fields().iter().map(|(_, n)| n).sum()
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn mutated_frames_are_counted_once_passed_untouched_and_sent_with_valid_checksums() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0;
    let mut runs = 0;
    for (mode, v6) in [
        (MODE_DSR, false),
        (MODE_NAT, false),
        (MODE_FULLNAT, false),
        (MODE_DSR, true),
        (MODE_NAT, true),
        (MODE_FULLNAT, true),
    ] {
        let mut harness = Harness::with_mode(mode, v6, BACKENDS).expect("load (run as root)");
        let corpus = corpus(&mut harness, mode, v6);
        for i in 0..FRAMES_PER_CASE {
            let base = &corpus[i % corpus.len()];
            let mut frame = mutate(&mut rng, base);
            if rng.below(2) == 0 {
                repair(&mut frame);
            }
            let what = format!("mode {mode} v6 {v6} frame {i}: {}", hex(&frame));
            let before = harness.global().unwrap();
            let (action, out) = harness.run(&frame).unwrap();
            let after = harness.global().unwrap();
            assert_eq!(
                total(&after) - total(&before),
                1,
                "{what}: one outcome per frame"
            );
            // A translated packet the FIB cannot route is handed to the
            // kernel translated, by design (`pass_fib_failed`).
            let translated_pass = after.pass_fib_failed != before.pass_fib_failed;
            match action {
                XDP_PASS if translated_pass => {
                    if checksums_valid(&frame) {
                        assert!(checksums_valid(&out), "{what}: passed {}", hex(&out));
                    }
                }
                XDP_PASS => assert_eq!(out, frame, "{what}: passed frames are untouched"),
                XDP_DROP => {}
                XDP_TX | XDP_REDIRECT => {
                    if checksums_valid(&frame) {
                        assert!(checksums_valid(&out), "{what}: sent {}", hex(&out));
                    }
                    sent += 1;
                }
                other => panic!("{what}: action {other}"),
            }
            runs += 1;
        }
    }
    assert!(runs >= 20_000);
    // The mutations must not all be rejected early: some reach the
    // rewriting paths.
    assert!(
        sent > runs / 20,
        "only {sent} of {runs} frames were sent on"
    );
}
