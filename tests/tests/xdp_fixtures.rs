//! The XDP program on crafted packets (BPF_PROG_TEST_RUN), fixture-table
//! style: description, input, expected action, expected output bytes and
//! the counter that must move. Needs root.
use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use lb_common::{ipv4_addr_bytes, FlowKey, Outcome, FAMILY_IPV4};
use lb_tests::{fixture::*, predict::maglev_choice};
use lbd::dataplane::Tunables;
use std::net::Ipv4Addr;

const BACKENDS: usize = 3;

/// What a fixture expects.
enum Expect {
    /// XDP_TX to backend `n`: output = input re-addressed at L2.
    Dsr(usize),
    Pass,
    Drop,
}

struct Fixture {
    description: &'static str,
    input: Vec<u8>,
    expect: Expect,
    outcome: Outcome,
}

fn tcp(src_port: u16, dst: Ipv4Addr, dst_port: u16, syn: bool) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT.octets(), dst.octets(), 64)
        .tcp(src_port, dst_port, 1000, 64240);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut packet = Vec::new();
    builder.write(&mut packet, b"hello").expect("valid packet");
    packet
}

fn udp(src_port: u16, dst: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT.octets(), dst.octets(), 64)
        .udp(src_port, dst_port)
        .write(&mut packet, b"query")
        .expect("valid packet");
    packet
}

/// The backend index Maglev picks for a flow to VIP, computed in userspace
/// with the same hash and table the kernel uses.
fn expected_backend(src_port: u16, dst_port: u16, proto: u8, backends: usize) -> usize {
    let addresses: Vec<_> = (0..backends).map(backend_ip).collect();
    maglev_choice(CLIENT, src_port, VIP, dst_port, proto, &addresses, RING)
}

fn readdressed(input: &[u8], backend: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    out[..6].copy_from_slice(&backend_mac(backend));
    out[6..12].copy_from_slice(&LB_MAC);
    out
}

/// Rewrites the IPv4 header of an Ethernet frame through `edit`, then
/// recomputes its checksum unless `keep_checksum`.
fn edit_ipv4(
    mut packet: Vec<u8>,
    keep_checksum: bool,
    edit: impl FnOnce(&mut Ipv4Header),
) -> Vec<u8> {
    let (mut header, _) = Ipv4Header::from_slice(&packet[14..]).expect("ipv4");
    let old_len = header.header_len();
    let old_checksum = header.header_checksum;
    edit(&mut header);
    header.header_checksum = if keep_checksum {
        old_checksum
    } else {
        header.calc_header_checksum()
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.truncate(header.header_len());
    packet.splice(14..14 + old_len, bytes);
    packet
}

fn fixtures() -> Vec<Fixture> {
    let tcp_syn = tcp(40000, VIP, 80, true);
    let arp = arp_request_for_vip();
    let ipv6 = {
        let mut packet = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100],
                64,
            )
            .tcp(40000, 80, 1, 1000)
            .syn()
            .write(&mut packet, &[])
            .expect("valid packet");
        packet
    };
    let with_options = edit_ipv4(tcp(40001, VIP, 80, true), false, |h| {
        h.options = [1, 1, 1, 0]
            .as_slice()
            .try_into()
            .expect("4 bytes of options");
        h.total_len += 4;
    });
    let mut bad_tcp_checksum = tcp(40002, VIP, 80, false);
    let tcp_checksum_at = 14 + 20 + 16;
    bad_tcp_checksum[tcp_checksum_at] ^= 0xff;
    let mut padded = udp(40003, VIP, 53);
    padded.resize(60 + 14, 0); // Ethernet padding after the IP packet
    let truncated_tcp = {
        let mut p = tcp(40004, VIP, 80, true);
        p.truncate(14 + 20 + 10);
        edit_ipv4(p, false, |h| h.total_len = 30)
    };
    let bad_doff = {
        let mut p = tcp(40005, VIP, 80, true);
        p[14 + 20 + 12] = 0x40; // data offset 4 words < 5
        p
    };
    let bad_udp_len = {
        let mut p = udp(40006, VIP, 53);
        p[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&500u16.to_be_bytes());
        p
    };
    vec![
        Fixture {
            description: "TCP SYN to a service: DSR to the Maglev backend",
            expect: Expect::Dsr(expected_backend(40000, 80, 6, BACKENDS)),
            input: tcp_syn.clone(),
            outcome: Outcome::TxDsr,
        },
        Fixture {
            description: "a later packet of the same flow: same backend",
            expect: Expect::Dsr(expected_backend(40000, 80, 6, BACKENDS)),
            input: tcp(40000, VIP, 80, false),
            outcome: Outcome::TxDsr,
        },
        Fixture {
            description: "UDP to a service",
            expect: Expect::Dsr(expected_backend(41000, 53, 17, BACKENDS)),
            input: udp(41000, VIP, 53),
            outcome: Outcome::TxDsr,
        },
        Fixture {
            description: "UDP with Ethernet padding after the IP packet",
            expect: Expect::Dsr(expected_backend(40003, 53, 17, BACKENDS)),
            input: padded,
            outcome: Outcome::TxDsr,
        },
        Fixture {
            description: "IPv4 options: forwarded untouched",
            expect: Expect::Dsr(expected_backend(40001, 80, 6, BACKENDS)),
            input: with_options,
            outcome: Outcome::TxDsr,
        },
        Fixture {
            description: "bad TCP checksum: forwarded, not fixed (the backend judges it)",
            expect: Expect::Dsr(expected_backend(40002, 80, 6, BACKENDS)),
            input: bad_tcp_checksum,
            outcome: Outcome::TxDsr,
        },
        Fixture {
            description: "TCP to another address: passed",
            expect: Expect::Pass,
            input: tcp(40000, Ipv4Addr::new(198, 18, 0, 50), 80, true),
            outcome: Outcome::PassNotService,
        },
        Fixture {
            description: "TCP to the VIP on a port with no service: passed",
            expect: Expect::Pass,
            input: tcp(40000, VIP, 443, true),
            outcome: Outcome::PassNotService,
        },
        Fixture {
            description: "UDP to the TCP service's port: passed",
            expect: Expect::Pass,
            input: udp(40000, VIP, 80),
            outcome: Outcome::PassNotService,
        },
        Fixture {
            description: "ARP: passed",
            expect: Expect::Pass,
            input: arp,
            outcome: Outcome::PassNotIp,
        },
        Fixture {
            description: "IPv6 to an address with no service: passed",
            expect: Expect::Pass,
            input: ipv6,
            outcome: Outcome::PassNotService,
        },
        Fixture {
            description: "truncated IPv4 header",
            expect: Expect::Pass,
            input: tcp_syn[..14 + 12].to_vec(),
            outcome: Outcome::PassMalformedIp,
        },
        Fixture {
            description: "IHL below 5",
            expect: Expect::Pass,
            input: {
                let mut p = tcp_syn.clone();
                p[14] = 0x44;
                p
            },
            outcome: Outcome::PassMalformedIp,
        },
        Fixture {
            description: "IP version 6 inside an IPv4 ethertype",
            expect: Expect::Pass,
            input: {
                let mut p = tcp_syn.clone();
                p[14] = 0x65;
                p
            },
            outcome: Outcome::PassMalformedIp,
        },
        Fixture {
            description: "IPv4 total length beyond the frame",
            expect: Expect::Pass,
            input: edit_ipv4(tcp_syn.clone(), false, |h| h.total_len += 100),
            outcome: Outcome::PassMalformedIp,
        },
        Fixture {
            description: "truncated TCP header",
            expect: Expect::Pass,
            input: truncated_tcp,
            outcome: Outcome::PassMalformedL4,
        },
        Fixture {
            description: "TCP data offset below 5",
            expect: Expect::Pass,
            input: bad_doff,
            outcome: Outcome::PassMalformedL4,
        },
        Fixture {
            description: "UDP length beyond the IP payload",
            expect: Expect::Pass,
            input: bad_udp_len,
            outcome: Outcome::PassMalformedL4,
        },
        Fixture {
            description: "first fragment (MF set) to the VIP: passed",
            expect: Expect::Pass,
            input: edit_ipv4(tcp_syn.clone(), false, |h| h.more_fragments = true),
            outcome: Outcome::PassFragment,
        },
        Fixture {
            description: "later fragment (offset > 0) to the VIP: passed",
            expect: Expect::Pass,
            input: edit_ipv4(tcp_syn.clone(), false, |h| {
                h.fragment_offset = 8u16.try_into().expect("fits");
            }),
            outcome: Outcome::PassFragment,
        },
        Fixture {
            description: "bad IPv4 header checksum to a service: dropped, not fixed",
            expect: Expect::Drop,
            input: edit_ipv4(tcp_syn.clone(), true, |h| h.time_to_live = 63),
            outcome: Outcome::DropBadIpChecksum,
        },
    ]
}

#[test]
fn fixture_table() {
    let mut harness = Harness::new(BACKENDS).expect("load the XDP program (run as root)");
    for fixture in fixtures() {
        let before = harness.outcome_count(fixture.outcome).unwrap();
        let (action, output) = harness.run(&fixture.input).unwrap();
        let (want_action, want_output) = match fixture.expect {
            Expect::Dsr(backend) => (XDP_TX, readdressed(&fixture.input, backend)),
            Expect::Pass => (XDP_PASS, fixture.input.clone()),
            Expect::Drop => (XDP_DROP, fixture.input.clone()),
        };
        assert_eq!(action, want_action, "{}: action", fixture.description);
        assert_eq!(output, want_output, "{}: output bytes", fixture.description);
        let after = harness.outcome_count(fixture.outcome).unwrap();
        assert_eq!(
            after,
            before + 1,
            "{}: counter {:?}",
            fixture.description,
            fixture.outcome
        );
    }
}

#[test]
fn truncated_ethernet_is_passed_and_counted() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    // The kernel hands XDP no frame shorter than an Ethernet header (its
    // test runner refuses one too); `pass_truncated_eth` is the program's
    // defence should a driver ever do so. The shortest frame it accepts is
    // one with nothing after that header.
    assert!(harness.run(&[0u8; 10][..]).is_err());
    let (action, _) = harness.run(&[0u8; 14][..]).unwrap();
    assert_eq!(action, XDP_PASS);
    assert_eq!(harness.outcome_count(Outcome::PassNotIp).unwrap(), 1);
    // A frame with an IPv4 ethertype and no IP header at all.
    let mut frame = tcp(40000, VIP, 80, true);
    frame.truncate(14);
    let (action, _) = harness.run(&frame).unwrap();
    assert_eq!(action, XDP_PASS);
    assert_eq!(harness.outcome_count(Outcome::PassMalformedIp).unwrap(), 1);
}

#[test]
fn counters_per_service_and_backend() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    let syn = tcp(42000, VIP, 80, true);
    let ack = tcp(42000, VIP, 80, false);
    harness.run(&syn).unwrap();
    harness.run(&ack).unwrap();
    harness.run(&ack).unwrap();
    let chosen = expected_backend(42000, 80, 6, BACKENDS);
    let snapshot = harness.programmer.snapshot().clone();
    let web = snapshot.services.iter().find(|s| s.port == 80).unwrap();
    let backend_id = web.backends[chosen].id;
    let bytes = (syn.len() + 2 * ack.len()) as u64;
    let service = harness.service_counters(web.id).unwrap();
    assert_eq!(
        (service.packets, service.bytes, service.new_flows),
        (3, bytes, 1)
    );
    let backend = harness.backend_counters(backend_id).unwrap();
    assert_eq!(
        (backend.packets, backend.bytes, backend.new_flows),
        (3, bytes, 1)
    );
    for other in web.backends.iter().filter(|b| b.id != backend_id) {
        assert_eq!(harness.backend_counters(other.id).unwrap().packets, 0);
    }
}

/// A source port whose Maglev choice differs between `before` and `after`
/// backends.
fn port_that_moves(before: usize, after: usize) -> (u16, usize, usize) {
    (43000..44000)
        .map(|p| {
            (
                p,
                expected_backend(p, 80, 6, before),
                expected_backend(p, 80, 6, after),
            )
        })
        .find(|(_, a, b)| a != b)
        .expect("some flow moves when the backend set changes")
}

#[test]
fn a_flow_keeps_its_backend_when_a_backend_is_added() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    let (port, original, rehashed) = port_that_moves(BACKENDS, BACKENDS + 1);
    let (action, out) = harness.run(&tcp(port, VIP, 80, true)).unwrap();
    assert_eq!((action, &out[..6]), (XDP_TX, &backend_mac(original)[..]));
    for service in &mut harness.services {
        let mut backend = service.backends[0].clone();
        backend.address.set_ip(backend_ip(BACKENDS).into());
        backend.mac = Some(backend_mac(BACKENDS));
        service.backends.push(backend);
    }
    harness.apply().unwrap();
    // An established flow stays put (connection table)...
    let (_, out) = harness.run(&tcp(port, VIP, 80, false)).unwrap();
    assert_eq!(&out[..6], &backend_mac(original)[..]);
    // ...while the same tuple, had it been new, would now go elsewhere.
    harness.maps.conntrack.remove(&flow(port)).unwrap();
    let (_, out) = harness.run(&tcp(port, VIP, 80, true)).unwrap();
    assert_eq!(&out[..6], &backend_mac(rehashed)[..]);
}

fn flow(src_port: u16) -> FlowKey {
    FlowKey {
        src: ipv4_addr_bytes(CLIENT.octets()),
        dst: ipv4_addr_bytes(VIP.octets()),
        src_port,
        dst_port: 80,
        proto: IpNumber::TCP.0,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    }
}

#[test]
fn a_flow_whose_backend_is_removed_is_rehashed() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    let port = 45000;
    let first = expected_backend(port, 80, 6, BACKENDS);
    harness.run(&tcp(port, VIP, 80, true)).unwrap();
    for service in &mut harness.services {
        service.backends.remove(first);
    }
    harness.apply().unwrap();
    let new_flows_before = harness.global().unwrap().tx_dsr;
    let (action, out) = harness.run(&tcp(port, VIP, 80, false)).unwrap();
    assert_eq!(action, XDP_TX);
    assert_ne!(
        &out[..6],
        &backend_mac(first)[..],
        "must not go to the removed backend"
    );
    assert_eq!(harness.global().unwrap().tx_dsr, new_flows_before + 1);
    // It was re-placed by Maglev and remembered again.
    let entry = harness.maps.conntrack.get(&flow(port), 0).unwrap();
    let snapshot = harness.programmer.snapshot();
    let web = snapshot.services.iter().find(|s| s.port == 80).unwrap();
    assert!(web.backends.iter().any(|b| b.id == entry.backend_id));
}

#[test]
fn a_service_without_usable_backends_drops_and_counts() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    for service in &mut harness.services {
        for backend in &mut service.backends {
            backend.mac = None;
        }
    }
    harness.apply().unwrap();
    let (action, _) = harness.run(&tcp(46000, VIP, 80, true)).unwrap();
    assert_eq!(action, XDP_DROP);
    assert_eq!(harness.outcome_count(Outcome::DropNoBackend).unwrap(), 1);
}

#[test]
fn an_all_ports_service_catches_other_ports_and_an_exact_port_wins() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    // VIP:0/tcp with its own single backend, beside VIP:80/tcp.
    let mut all_ports = harness.services[0].clone();
    all_ports.name = "all".into();
    all_ports.port = 0;
    all_ports.backends.truncate(1);
    all_ports.backends[0].address.set_ip(backend_ip(9).into());
    all_ports.backends[0].mac = Some(backend_mac(9));
    harness.services.push(all_ports);
    harness.apply().unwrap();

    let to_8443 = tcp(47000, VIP, 8443, true);
    let (action, out) = harness.run(&to_8443).unwrap();
    assert_eq!(action, XDP_TX);
    assert_eq!(
        out,
        readdressed(&to_8443, 9),
        "any port goes to the all-ports service"
    );

    let to_80 = tcp(47001, VIP, 80, true);
    let (_, out) = harness.run(&to_80).unwrap();
    let exact = expected_backend(47001, 80, 6, BACKENDS);
    assert_eq!(
        out,
        readdressed(&to_80, exact),
        "the exact-port service wins"
    );

    // UDP has no all-ports service: passed.
    let (action, _) = harness.run(&udp(47002, VIP, 8443)).unwrap();
    assert_eq!(action, XDP_PASS);
}

#[test]
fn a_standby_node_passes_service_traffic_and_counts_it() {
    let mut harness = Harness::new(BACKENDS).unwrap();
    harness
        .programmer
        .set_settings(&mut harness.maps, LB_MAC, false, &Tunables::default())
        .unwrap();
    let syn = tcp(48000, VIP, 80, true);
    let (action, out) = harness.run(&syn).unwrap();
    assert_eq!((action, out), (XDP_PASS, syn.clone()));
    assert_eq!(harness.outcome_count(Outcome::PassStandby).unwrap(), 1);
    assert!(
        harness.maps.conntrack.get(&flow(48000), 0).is_err(),
        "no flow state on a standby"
    );
    harness
        .programmer
        .set_settings(&mut harness.maps, LB_MAC, true, &Tunables::default())
        .unwrap();
    let (action, _) = harness.run(&syn).unwrap();
    assert_eq!(action, XDP_TX);
}
