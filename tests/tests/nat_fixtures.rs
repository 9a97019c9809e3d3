//! `nat`, `fullnat` and IPv6 on crafted packets (BPF_PROG_TEST_RUN), both
//! directions, TCP and UDP, IPv4 and IPv6, and ICMP error translation.
//! Every expected frame is built independently by etherparse from the
//! translated addresses, so byte equality also proves every checksum the
//! program updated incrementally; `assert_checksums_valid` re-checks them
//! explicitly. Needs root.
use etherparse::{
    icmpv4::DestUnreachableHeader, icmpv6::DestUnreachableCode, Icmpv4Type, Icmpv6Type,
    PacketBuilder, SlicedPacket, TransportSlice,
};
use lb_common::{hash::flow_hash, Outcome, MODE_DSR, MODE_FULLNAT, MODE_NAT, PROTO_TCP, PROTO_UDP};
use lb_tests::{
    fixture::*,
    predict::{flow_key, maglev_choice_for},
};
use lbd::dataplane::Tunables;
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

const BACKENDS: usize = 3;
const ROUTER_V4: [u8; 4] = [198, 18, 0, 254];
const ROUTER_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];

#[derive(Clone, Copy)]
enum L4 {
    TcpSyn,
    TcpSynAck,
    TcpFin,
    Udp,
}

/// An Ethernet frame from `src` to `dst` built by etherparse.
fn frame(
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddr,
    dst: SocketAddr,
    l4: L4,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut out = Vec::new();
    match l4 {
        L4::Udp => ip.udp(src.port(), dst.port()).write(&mut out, payload),
        L4::TcpSyn => ip
            .tcp(src.port(), dst.port(), 1000, 64240)
            .syn()
            .write(&mut out, payload),
        L4::TcpSynAck => ip
            .tcp(src.port(), dst.port(), 5000, 64240)
            .syn()
            .ack(1001)
            .write(&mut out, payload),
        L4::TcpFin => ip
            .tcp(src.port(), dst.port(), 1001, 64240)
            .fin()
            .ack(5001)
            .write(&mut out, payload),
    }
    .expect("valid packet");
    out
}

/// The first bytes of `packet`'s IP part that an ICMP error quotes: the IP
/// header and the first 8 bytes of TCP/UDP (the minimum), or the whole
/// TCP header when `whole_tcp` (as Linux quotes), whose checksum must then
/// be translated too.
fn quote(packet: &[u8], v6: bool) -> Vec<u8> {
    quote_bytes(packet, v6, 8)
}

fn quote_bytes(packet: &[u8], v6: bool, l4_bytes: usize) -> Vec<u8> {
    let ip_header = if v6 { 40 } else { 20 };
    packet[14..14 + ip_header + l4_bytes].to_vec()
}

#[derive(Clone, Copy)]
enum IcmpKind {
    /// "Fragmentation needed" (IPv4) / "packet too big" (IPv6).
    TooBig,
    /// "Port unreachable".
    PortUnreachable,
}

/// An ICMP error of `kind` from `src` to `dst`, quoting `quoted`.
fn icmp_error(
    macs: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
    kind: IcmpKind,
    quoted: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let header = match kind {
                IcmpKind::TooBig => {
                    DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }
                }
                IcmpKind::PortUnreachable => DestUnreachableHeader::Port,
            };
            eth.ipv4(s.octets(), d.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(header))
                .write(&mut out, quoted)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let icmp = match kind {
                IcmpKind::TooBig => Icmpv6Type::PacketTooBig { mtu: 1280 },
                IcmpKind::PortUnreachable => {
                    Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port)
                }
            };
            eth.ipv6(s.octets(), d.octets(), 64)
                .icmpv6(icmp)
                .write(&mut out, quoted)
        }
        _ => panic!("mixed families"),
    }
    .expect("valid packet");
    out
}

fn too_big(macs: ([u8; 6], [u8; 6]), src: IpAddr, dst: IpAddr, quoted: &[u8]) -> Vec<u8> {
    icmp_error(macs, src, dst, IcmpKind::TooBig, quoted)
}

fn unreachable(macs: ([u8; 6], [u8; 6]), src: IpAddr, dst: IpAddr, quoted: &[u8]) -> Vec<u8> {
    icmp_error(macs, src, dst, IcmpKind::PortUnreachable, quoted)
}

/// Recomputes every checksum of `frame` with etherparse and compares.
fn assert_checksums_valid(frame: &[u8], what: &str) {
    let sliced = SlicedPacket::from_ethernet(frame).expect(what);
    let ip = sliced.net.as_ref().expect("an IP packet");
    let (source, destination) = match ip {
        etherparse::NetSlice::Ipv4(v4) => {
            let header = v4.header().to_header();
            assert_eq!(
                header.header_checksum,
                header.calc_header_checksum(),
                "{what}: IPv4 header checksum"
            );
            (
                IpAddr::from(v4.header().source()),
                IpAddr::from(v4.header().destination()),
            )
        }
        etherparse::NetSlice::Ipv6(v6) => (
            IpAddr::from(v6.header().source()),
            IpAddr::from(v6.header().destination()),
        ),
        _ => panic!("{what}: not IP"),
    };
    let pseudo = |payload: &[u8],
                  calc: &dyn Fn([u8; 4], [u8; 4]) -> u16,
                  calc6: &dyn Fn([u8; 16], [u8; 16]) -> u16| {
        let _ = payload;
        match (source, destination) {
            (IpAddr::V4(s), IpAddr::V4(d)) => calc(s.octets(), d.octets()),
            (IpAddr::V6(s), IpAddr::V6(d)) => calc6(s.octets(), d.octets()),
            _ => unreachable!(),
        }
    };
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let header = tcp.to_header();
            let want = pseudo(
                tcp.payload(),
                &|s, d| header.calc_checksum_ipv4_raw(s, d, tcp.payload()).unwrap(),
                &|s, d| header.calc_checksum_ipv6_raw(s, d, tcp.payload()).unwrap(),
            );
            assert_eq!(tcp.checksum(), want, "{what}: TCP checksum");
        }
        Some(TransportSlice::Udp(udp)) => {
            if udp.checksum() == 0 && source.is_ipv4() {
                return; // "no checksum", allowed over IPv4
            }
            let header = udp.to_header();
            let want = pseudo(
                udp.payload(),
                &|s, d| header.calc_checksum_ipv4_raw(s, d, udp.payload()).unwrap(),
                &|s, d| header.calc_checksum_ipv6_raw(s, d, udp.payload()).unwrap(),
            );
            assert_eq!(udp.checksum(), want, "{what}: UDP checksum");
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let want = icmp.icmp_type().calc_checksum(icmp.payload());
            assert_eq!(icmp.checksum(), want, "{what}: ICMP checksum");
            // The quoted IPv4 header's own checksum, too.
            let quoted = etherparse::Ipv4Header::from_slice(icmp.payload())
                .expect("quoted header")
                .0;
            assert_eq!(
                quoted.header_checksum,
                quoted.calc_header_checksum(),
                "{what}: quoted IPv4 header checksum"
            );
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (source, destination) else {
                unreachable!()
            };
            let want = icmp
                .icmp_type()
                .calc_checksum(s.octets(), d.octets(), icmp.payload())
                .unwrap();
            assert_eq!(icmp.checksum(), want, "{what}: ICMPv6 checksum");
        }
        _ => panic!("{what}: no transport header"),
    }
}

struct Case {
    v6: bool,
    mode: u8,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{} over IPv{}",
            if self.mode == MODE_NAT {
                "nat"
            } else {
                "fullnat"
            },
            if self.v6 { 6 } else { 4 }
        )
    }

    /// (backend index, backend address) Maglev picks for this flow.
    fn backend_for(&self, source_port: u16, port: u16, proto: u8, backend_port: u16) -> usize {
        let backends: Vec<SocketAddr> = (0..BACKENDS)
            .map(|i| SocketAddr::new(backend(self.v6, i), backend_port))
            .collect();
        maglev_choice_for(
            client(self.v6),
            source_port,
            vip(self.v6),
            port,
            proto,
            &backends,
            RING,
        )
    }
}

fn run_expect(
    harness: &mut Harness,
    what: &str,
    input: &[u8],
    action: u32,
    output: &[u8],
    outcome: Outcome,
) {
    let before = harness.outcome_count(outcome).unwrap();
    let (got_action, got) = harness.run(input).unwrap();
    assert_eq!(got_action, action, "{what}: action");
    assert_eq!(got, output, "{what}: output bytes");
    assert_eq!(
        harness.outcome_count(outcome).unwrap(),
        before + 1,
        "{what}: counter {outcome:?}"
    );
    if action == XDP_TX || action == XDP_REDIRECT {
        assert_checksums_valid(&got, what);
    }
}

/// The fullnat source port the program gave this flow (0 for nat).
fn snat_port(harness: &Harness, case: &Case, source_port: u16, port: u16, proto: u8) -> u16 {
    let key = flow_key(client(case.v6), source_port, vip(case.v6), port, proto);
    harness
        .maps
        .conntrack
        .get(&key, 0)
        .expect("flow entry")
        .snat_port
}

/// One flow through the VIP and back, then ICMP errors both ways.
fn translate_both_directions(case: &Case, l4_out: L4, l4_back: L4) {
    let name = case.name();
    let mut harness = Harness::with_mode(case.mode, case.v6, BACKENDS).unwrap();
    let (port, backend_port, proto, cport) = match l4_out {
        L4::Udp => (53, NAT_UDP_PORT, PROTO_UDP, 41000),
        _ => (80, NAT_TCP_PORT, PROTO_TCP, 40000),
    };
    let fullnat = case.mode == MODE_FULLNAT;
    let b = case.backend_for(cport, port, proto, backend_port);
    let client_at = SocketAddr::new(client(case.v6), cport);
    let vip_at = SocketAddr::new(vip(case.v6), port);
    let backend_at = SocketAddr::new(backend(case.v6, b), backend_port);
    let to_lb = (CLIENT_MAC, LB_MAC);
    let to_backend = (LB_MAC, backend_mac(b));
    let from_backend = (backend_mac(b), LB_MAC);
    let to_client = (LB_MAC, CLIENT_MAC);

    // 1. Client -> VIP: to the backend, source kept (nat) or ours (fullnat).
    let request = frame(to_lb, client_at, vip_at, l4_out, b"request");
    let (action, _) = harness.run(&request).unwrap();
    assert_eq!(action, XDP_TX, "{name}: first packet");
    let sport = snat_port(&harness, case, cport, port, proto);
    let seen_source = if fullnat {
        let (first, last) = harness.tunables.snat_ports;
        assert!((first..=last).contains(&sport), "{name}: port {sport}");
        SocketAddr::new(lb_addr(case.v6), sport)
    } else {
        assert_eq!(sport, 0);
        client_at
    };
    // The same packet again (same flow) shows the exact rewrite.
    run_expect(
        &mut harness,
        &format!("{name}: client -> VIP"),
        &request,
        XDP_TX,
        &frame(to_backend, seen_source, backend_at, l4_out, b"request"),
        Outcome::TxNat,
    );

    // 2. The backend's reply: back to the client, from the VIP.
    run_expect(
        &mut harness,
        &format!("{name}: backend -> client"),
        &frame(from_backend, backend_at, seen_source, l4_back, b"reply"),
        XDP_TX,
        &frame(to_client, vip_at, client_at, l4_back, b"reply"),
        Outcome::TxNatReply,
    );

    // 3. A router on the client's side cannot forward a (too big) reply:
    //    its error quotes VIP -> client and must reach the backend, quoting
    //    what the backend sent.
    let router: IpAddr = if case.v6 {
        ROUTER_V6.into()
    } else {
        ROUTER_V4.into()
    };
    let reply_as_sent = frame(to_client, vip_at, client_at, l4_back, b"reply");
    let reply_from_backend = frame(from_backend, backend_at, seen_source, l4_back, b"reply");
    let outer_source = if fullnat { lb_addr(case.v6) } else { router };
    // UDP: 8 quoted bytes hold its checksum. TCP: quote the whole header
    // so that its checksum is quoted (and translated) too.
    let l4_bytes = if matches!(l4_out, L4::Udp) { 8 } else { 20 };
    run_expect(
        &mut harness,
        &format!("{name}: too big about a reply -> backend"),
        &too_big(
            to_lb,
            router,
            vip(case.v6),
            &quote_bytes(&reply_as_sent, case.v6, l4_bytes),
        ),
        XDP_TX,
        &too_big(
            to_backend,
            outer_source,
            backend_at.ip(),
            &quote_bytes(&reply_from_backend, case.v6, l4_bytes),
        ),
        Outcome::TxIcmpError,
    );

    // 4. The backend refuses a forwarded packet: its error goes to the
    //    client, from the VIP, quoting what the client sent.
    let forwarded = frame(to_backend, seen_source, backend_at, l4_out, b"request");
    run_expect(
        &mut harness,
        &format!("{name}: unreachable from the backend -> client"),
        &unreachable(
            from_backend,
            backend_at.ip(),
            seen_source.ip(),
            &quote(&forwarded, case.v6),
        ),
        XDP_TX,
        &unreachable(
            to_client,
            vip(case.v6),
            client(case.v6),
            &quote(&request, case.v6),
        ),
        Outcome::TxIcmpError,
    );

    // 5. The same errors addressed to neither a VIP, nor the balancer, nor
    //    the flow's client (issue 10, defect 5): someone else's packets,
    //    passed untouched.
    let (stranger, other): (IpAddr, IpAddr) = if case.v6 {
        (
            "fd00::9:9".parse().expect("address"),
            "fd00::9:10".parse().expect("address"),
        )
    } else {
        (
            "198.18.9.9".parse().expect("address"),
            "198.18.9.10".parse().expect("address"),
        )
    };
    for (what, quoted) in [
        (
            "about a reply",
            quote_bytes(&reply_as_sent, case.v6, l4_bytes),
        ),
        ("about a forwarded packet", quote(&forwarded, case.v6)),
    ] {
        let input = too_big(to_lb, stranger, other, &quoted);
        run_expect(
            &mut harness,
            &format!("{name}: error {what} to a stranger"),
            &input,
            XDP_PASS,
            &input,
            Outcome::PassNotService,
        );
    }
}

#[test]
fn nat_and_fullnat_tcp_both_directions_and_icmp_errors() {
    for v6 in [false, true] {
        for mode in [MODE_NAT, MODE_FULLNAT] {
            translate_both_directions(&Case { v6, mode }, L4::TcpSyn, L4::TcpSynAck);
        }
    }
}

#[test]
fn nat_and_fullnat_udp_both_directions_and_icmp_errors() {
    for v6 in [false, true] {
        for mode in [MODE_NAT, MODE_FULLNAT] {
            translate_both_directions(&Case { v6, mode }, L4::Udp, L4::Udp);
        }
    }
}

#[test]
fn a_zero_udp_checksum_stays_zero_over_ipv4() {
    for mode in [MODE_NAT, MODE_FULLNAT] {
        let case = Case { v6: false, mode };
        let mut harness = Harness::with_mode(mode, false, BACKENDS).unwrap();
        let b = case.backend_for(42000, 53, PROTO_UDP, NAT_UDP_PORT);
        let client_at = SocketAddr::new(client(false), 42000);
        let mut input = frame(
            (CLIENT_MAC, LB_MAC),
            client_at,
            SocketAddr::new(vip(false), 53),
            L4::Udp,
            b"q",
        );
        input[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        let (action, out) = harness.run(&input).unwrap();
        assert_eq!(action, XDP_TX);
        assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0], "{}", case.name());
        let sport = snat_port(&harness, &case, 42000, 53, PROTO_UDP);
        let source = if sport == 0 {
            client_at
        } else {
            SocketAddr::new(lb_addr(false), sport)
        };
        let mut want = frame(
            (LB_MAC, backend_mac(b)),
            source,
            SocketAddr::new(backend(false, b), NAT_UDP_PORT),
            L4::Udp,
            b"q",
        );
        want[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        assert_eq!(out, want, "{}", case.name());
    }
}

/// A UDP frame from the client's `source_port` to the VIP's port 53.
fn query(v6: bool, source_port: u16) -> Vec<u8> {
    frame(
        (CLIENT_MAC, LB_MAC),
        SocketAddr::new(client(v6), source_port),
        SocketAddr::new(vip(v6), 53),
        L4::Udp,
        b"q",
    )
}

#[test]
fn fullnat_ports_are_never_shared_by_live_flows_and_exhaustion_is_counted() {
    let mut harness = Harness::with_mode(MODE_FULLNAT, false, 1).unwrap();
    let tunables = Tunables {
        snat_ports: (40000, 40003),
        udp_timeout: Duration::from_millis(300),
        ..harness.tunables.clone()
    };
    harness.set_tunables(tunables, true).unwrap();
    let case = Case {
        v6: false,
        mode: MODE_FULLNAT,
    };
    let mut ports = Vec::new();
    for source_port in 50000..50004 {
        let (action, _) = harness.run(&query(false, source_port)).unwrap();
        assert_eq!(action, XDP_TX);
        ports.push(snat_port(&harness, &case, source_port, 53, PROTO_UDP));
    }
    ports.sort();
    assert_eq!(
        ports,
        vec![40000, 40001, 40002, 40003],
        "four flows, four ports"
    );
    // A fifth live flow finds every port taken: passed untouched, counted.
    let fifth = query(false, 50004);
    let (action, out) = harness.run(&fifth).unwrap();
    assert_eq!((action, &out), (XDP_PASS, &fifth));
    assert_eq!(
        harness.outcome_count(Outcome::PassSnatExhausted).unwrap(),
        1
    );
    // Once the four are idle past udp_timeout their ports are free again,
    // even before lbd collects them...
    std::thread::sleep(Duration::from_millis(400));
    let (action, _) = harness.run(&fifth).unwrap();
    assert_eq!(action, XDP_TX);
    let port = snat_port(&harness, &case, 50004, 53, PROTO_UDP);
    assert!((40000..=40003).contains(&port));
    // ...and lbd's collector removes the dead flows and their reply
    // entries, leaving exactly the live one.
    let collected = lbd::dataplane::collect(
        &mut harness.maps.conntrack,
        &mut harness.maps.nat_reverse,
        lbd::dataplane::monotonic_now_ns(),
    )
    .unwrap();
    assert_eq!((collected.flows, collected.replies), (4, 3));
    assert_eq!(harness.maps.conntrack.keys().count(), 1);
    assert_eq!(harness.maps.nat_reverse.keys().count(), 1);
}

/// A flow whose first port (the one its hash names) is taken, and with it
/// the seven ports the allocator used to try next (`hash + i * 7919`),
/// still gets one of the 56 ports left free: the further tries follow no
/// fixed sequence that other flows can have filled. With that sequence
/// such a flow was refused (`pass_snat_exhausted`) at every try while a
/// backend's range was only 15% full (`cargo xtask bench-l7`'s fullnat
/// row). The tries after the first are random: this fails only if all
/// seven hit the eight taken ports, (8/64)^7 < 1e-6.
#[test]
fn fullnat_a_flow_whose_hashed_ports_are_taken_still_gets_a_free_one() {
    let mut harness = Harness::with_mode(MODE_FULLNAT, false, 1).unwrap();
    let (first, last) = (40000u16, 40063u16);
    let range = u32::from(last - first) + 1;
    let tunables = Tunables {
        snat_ports: (first, last),
        ..harness.tunables.clone()
    };
    harness.set_tunables(tunables, true).unwrap();
    let case = Case {
        v6: false,
        mode: MODE_FULLNAT,
    };
    let hash = |source_port: u16| {
        flow_hash(&flow_key(
            client(false),
            source_port,
            vip(false),
            53,
            PROTO_UDP,
        ))
    };
    let first_port = |source_port: u16| first + (hash(source_port) % range) as u16;
    let victim = 50000;
    let blocked: Vec<u16> = (0..8u32)
        .map(|i| first + (hash(victim).wrapping_add(i * 7919) % range) as u16)
        .collect();
    // Eight flows, each taking the blocked port its own hash names first.
    let mut source_port = 20000;
    for &port in &blocked {
        while first_port(source_port) != port {
            source_port += 1;
        }
        let (action, _) = harness.run(&query(false, source_port)).unwrap();
        assert_eq!(action, XDP_TX);
        assert_eq!(snat_port(&harness, &case, source_port, 53, PROTO_UDP), port);
        source_port += 1;
    }
    let (action, _) = harness.run(&query(false, victim)).unwrap();
    assert_eq!(
        harness.outcome_count(Outcome::PassSnatExhausted).unwrap(),
        0,
        "refused with 56 of 64 ports free"
    );
    assert_eq!(action, XDP_TX);
    let port = snat_port(&harness, &case, victim, 53, PROTO_UDP);
    assert!((first..=last).contains(&port) && !blocked.contains(&port));
}

#[test]
fn flows_expire_by_udp_idle_time_and_tcp_fin_shortens_them() {
    let mut harness = Harness::with_mode(MODE_NAT, false, BACKENDS).unwrap();
    let tunables = Tunables {
        udp_timeout: Duration::from_millis(200),
        tcp_fin_timeout: Duration::from_secs(3),
        ..harness.tunables.clone()
    };
    harness.set_tunables(tunables, true).unwrap();
    let service = harness
        .programmer
        .snapshot()
        .services
        .iter()
        .find(|s| s.port == 53)
        .unwrap()
        .id;
    harness.run(&query(false, 43000)).unwrap();
    harness.run(&query(false, 43000)).unwrap();
    assert_eq!(harness.service_counters(service).unwrap().new_flows, 1);
    std::thread::sleep(Duration::from_millis(300));
    harness.run(&query(false, 43000)).unwrap();
    assert_eq!(
        harness.service_counters(service).unwrap().new_flows,
        2,
        "idle past udp_timeout: placed as a new flow"
    );

    let client_at = SocketAddr::new(client(false), 44000);
    let vip_at = SocketAddr::new(vip(false), 80);
    harness
        .run(&frame(
            (CLIENT_MAC, LB_MAC),
            client_at,
            vip_at,
            L4::TcpSyn,
            b"",
        ))
        .unwrap();
    let key = flow_key(client(false), 44000, vip(false), 80, PROTO_TCP);
    let open = harness.maps.conntrack.get(&key, 0).unwrap();
    assert_eq!(open.tcp_state, lb_common::TCP_STATE_OPEN);
    harness
        .run(&frame(
            (CLIENT_MAC, LB_MAC),
            client_at,
            vip_at,
            L4::TcpFin,
            b"",
        ))
        .unwrap();
    let closing = harness.maps.conntrack.get(&key, 0).unwrap();
    assert_eq!(closing.tcp_state, lb_common::TCP_STATE_CLOSING);
    let left = closing
        .expires_ns
        .saturating_sub(lbd::dataplane::monotonic_now_ns());
    assert!(
        left <= 3_000_000_000 && open.expires_ns > closing.expires_ns + 800_000_000_000,
        "FIN: the 900 s lifetime became 3 s (left {left} ns)"
    );
}

#[test]
fn nat_without_a_neighbour_passes_the_rewritten_packet_to_the_kernel() {
    // Backend 9 has no neighbour entry in the fixture namespace: the FIB
    // answers "no neighbour"; the kernel forwards this packet (resolving
    // the neighbour for the next ones).
    let mut harness = Harness::with_mode(MODE_NAT, false, 1).unwrap();
    for service in &mut harness.services {
        service.backends[0].address.set_ip(backend_ip(9).into());
    }
    harness.apply().unwrap();
    let client_at = SocketAddr::new(client(false), 45000);
    let input = query(false, 45000);
    let (action, out) = harness.run(&input).unwrap();
    assert_eq!(action, XDP_PASS);
    let rewritten = frame(
        (CLIENT_MAC, LB_MAC),
        client_at,
        SocketAddr::new(backend_ip(9).into(), NAT_UDP_PORT),
        L4::Udp,
        b"q",
    );
    assert_eq!(out, rewritten);
    assert_eq!(harness.outcome_count(Outcome::PassFibFailed).unwrap(), 1);
}

#[test]
fn fullnat_without_a_source_address_passes_and_counts() {
    let mut harness = Harness::with_mode(MODE_FULLNAT, true, 1).unwrap();
    let tunables = Tunables {
        snat_v6: None,
        ..harness.tunables.clone()
    };
    harness.set_tunables(tunables, true).unwrap();
    let input = query(true, 46000);
    let (action, out) = harness.run(&input).unwrap();
    assert_eq!((action, out), (XDP_PASS, input));
    assert_eq!(
        harness.outcome_count(Outcome::PassSnatExhausted).unwrap(),
        1
    );
}

#[test]
fn dsr_over_ipv6_and_what_ipv6_passes() {
    let mut harness = Harness::with_mode(MODE_DSR, true, BACKENDS).unwrap();
    let case = Case {
        v6: true,
        mode: MODE_DSR,
    };
    let client_at = SocketAddr::new(client(true), 47000);
    let vip_at = SocketAddr::new(vip(true), 80);
    let syn = frame((CLIENT_MAC, LB_MAC), client_at, vip_at, L4::TcpSyn, b"");
    let b = case.backend_for(47000, 80, PROTO_TCP, 80);
    let mut want = syn.clone();
    want[..6].copy_from_slice(&backend_mac(b));
    want[6..12].copy_from_slice(&LB_MAC);
    run_expect(
        &mut harness,
        "dsr IPv6 SYN",
        &syn,
        XDP_TX,
        &want,
        Outcome::TxDsr,
    );

    // An ICMPv6 "packet too big" about the backend's direct reply (from
    // the VIP) goes to that backend, untouched but for the MACs.
    let reply = frame(
        (backend_mac(b), CLIENT_MAC),
        vip_at,
        client_at,
        L4::TcpSynAck,
        b"",
    );
    let error = too_big(
        (CLIENT_MAC, LB_MAC),
        ROUTER_V6.into(),
        vip(true),
        &quote(&reply, true),
    );
    let mut want = error.clone();
    want[..6].copy_from_slice(&backend_mac(b));
    want[6..12].copy_from_slice(&LB_MAC);
    run_expect(
        &mut harness,
        "dsr IPv6 too big",
        &error,
        XDP_TX,
        &want,
        Outcome::TxIcmpError,
    );

    // Neighbour discovery is the kernel's.
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, 0, 1, 0])
        .ipv6(
            CLIENT6.octets(),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 1, 0],
            255,
        )
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut ns, &VIP6.octets())
        .unwrap();
    run_expect(
        &mut harness,
        "neighbour solicitation",
        &ns,
        XDP_PASS,
        &ns,
        Outcome::PassNotService,
    );

    // A fragment header before TCP: ports unknown, passed.
    let mut fragment = syn.clone();
    fragment[14 + 6] = 44;
    run_expect(
        &mut harness,
        "IPv6 fragment",
        &fragment,
        XDP_PASS,
        &fragment,
        Outcome::PassFragment,
    );
    // Any other extension header: passed.
    let mut hop_by_hop = syn.clone();
    hop_by_hop[14 + 6] = 0;
    run_expect(
        &mut harness,
        "IPv6 hop-by-hop",
        &hop_by_hop,
        XDP_PASS,
        &hop_by_hop,
        Outcome::PassIpv6Ext,
    );
}

#[test]
fn a_backend_behind_another_link_is_reached_by_redirect() {
    for v6 in [false, true] {
        let mut harness = Harness::with_mode(MODE_NAT, v6, 1).unwrap();
        let far: IpAddr = if v6 {
            OTHER_LINK_BACKEND6.into()
        } else {
            OTHER_LINK_BACKEND.into()
        };
        for service in &mut harness.services {
            service.backends[0].address.set_ip(far);
        }
        harness.apply().unwrap();
        let client_at = SocketAddr::new(client(v6), 49000);
        let input = frame(
            (CLIENT_MAC, LB_MAC),
            client_at,
            SocketAddr::new(vip(v6), 80),
            L4::TcpSyn,
            b"",
        );
        run_expect(
            &mut harness,
            "nat to a backend behind fx2",
            &input,
            XDP_REDIRECT,
            &frame(
                (OTHER_LINK_MAC, OTHER_LINK_BACKEND_MAC),
                client_at,
                SocketAddr::new(far, NAT_TCP_PORT),
                L4::TcpSyn,
                b"",
            ),
            Outcome::Redirect,
        );
    }
}

#[test]
fn an_all_ports_nat_service_keeps_each_flows_port() {
    for mode in [MODE_NAT, MODE_FULLNAT] {
        let mut harness = Harness::with_mode(mode, false, 1).unwrap();
        let mut all_ports = harness.services[0].clone();
        all_ports.name = "all".into();
        all_ports.port = 0;
        all_ports.backends[0].address.set_port(0);
        harness.services = vec![all_ports];
        harness.apply().unwrap();
        let client_at = SocketAddr::new(client(false), 49500);
        let input = frame(
            (CLIENT_MAC, LB_MAC),
            client_at,
            SocketAddr::new(vip(false), 8443),
            L4::TcpSyn,
            b"",
        );
        harness.run(&input).unwrap();
        let sport = snat_port(&harness, &Case { v6: false, mode }, 49500, 8443, PROTO_TCP);
        let source = if mode == MODE_FULLNAT {
            SocketAddr::new(lb_addr(false), sport)
        } else {
            client_at
        };
        run_expect(
            &mut harness,
            "all-ports service, port 8443",
            &input,
            XDP_TX,
            &frame(
                (LB_MAC, backend_mac(0)),
                source,
                SocketAddr::new(backend(false, 0), 8443),
                L4::TcpSyn,
                b"",
            ),
            Outcome::TxNat,
        );
    }
}

#[test]
fn without_nat_services_replies_are_not_looked_up() {
    let mut harness = Harness::with_mode(MODE_NAT, false, 1).unwrap();
    let client_at = SocketAddr::new(client(false), 49700);
    let backend_at = SocketAddr::new(backend(false, 0), NAT_UDP_PORT);
    harness.run(&query(false, 49700)).unwrap();
    let reply = frame(
        (backend_mac(0), LB_MAC),
        backend_at,
        client_at,
        L4::Udp,
        b"r",
    );
    // What lbd writes when no service is nat or fullnat: the reply path is
    // off, the packet is the kernel's.
    let tunables = Tunables {
        reply_lookup: false,
        ..harness.tunables.clone()
    };
    harness.set_tunables(tunables, true).unwrap();
    let (action, out) = harness.run(&reply).unwrap();
    assert_eq!((action, &out), (XDP_PASS, &reply));
    let tunables = Tunables {
        reply_lookup: true,
        ..harness.tunables.clone()
    };
    harness.set_tunables(tunables, true).unwrap();
    let (action, _) = harness.run(&reply).unwrap();
    assert_eq!(action, XDP_TX);
}
