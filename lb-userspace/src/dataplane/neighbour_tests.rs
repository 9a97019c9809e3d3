use super::*;

#[test]
fn request_round_trips_through_the_parser_as_a_reply() {
    let mut frame = arp_request(
        [2, 0, 0, 0, 0, 1],
        Ipv4Addr::new(198, 18, 0, 1),
        Ipv4Addr::new(198, 18, 0, 11),
    );
    assert_eq!(frame.len(), 42);
    assert_eq!(&frame[..6], &[0xff; 6]);
    // A request is not a reply.
    assert_eq!(parse_arp_reply(&frame), None);
    frame[21] = 2; // operation = reply
    assert_eq!(
        parse_arp_reply(&frame),
        Some((Ipv4Addr::new(198, 18, 0, 1), [2, 0, 0, 0, 0, 1]))
    );
}

#[test]
fn unsolicited_na_layout() {
    let na = unsolicited_na([2, 0, 0, 0, 0, 1], "fd00::100".parse().unwrap());
    assert_eq!(na.len(), 32);
    assert_eq!(
        &na[..8],
        &[136, 0, 0, 0, 0x20, 0, 0, 0],
        "type NA, override flag"
    );
    assert_eq!(
        &na[8..24],
        &"fd00::100".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(
        &na[24..],
        &[2, 1, 2, 0, 0, 0, 0, 1],
        "target link-layer address option"
    );
}

#[test]
fn truncated_or_foreign_frames_are_ignored() {
    let frame = arp_request(
        [2, 0, 0, 0, 0, 1],
        Ipv4Addr::new(198, 18, 0, 1),
        Ipv4Addr::new(198, 18, 0, 11),
    );
    for len in 0..frame.len() {
        let mut short = frame[..len].to_vec();
        if len > 21 {
            short[21] = 2;
        }
        assert_eq!(parse_arp_reply(&short), None, "length {len}");
    }
    let mut ipv4 = frame.clone();
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    assert_eq!(parse_arp_reply(&ipv4), None);
}

#[test]
fn on_link_source_is_chosen_by_prefix() {
    let info = InterfaceInfo {
        name: "eth0".into(),
        index: 2,
        mac: [0; 6],
        ipv4: vec![
            (Ipv4Addr::new(198, 19, 0, 1), 24),
            (Ipv4Addr::new(198, 18, 0, 1), 24),
        ],
        ipv6: vec![
            ("fd00::1".parse().unwrap(), 64),
            ("fe80::1".parse().unwrap(), 64),
        ],
    };
    assert_eq!(info.link_local(), Some("fe80::1".parse().unwrap()));
    assert_eq!(
        info.source_for(Ipv4Addr::new(198, 18, 0, 11).into()),
        Some(Ipv4Addr::new(198, 18, 0, 1).into())
    );
    assert_eq!(info.source_for(Ipv4Addr::new(198, 20, 0, 11).into()), None);
    assert_eq!(
        info.source_for("fd00::11".parse().unwrap()),
        Some("fd00::1".parse().unwrap())
    );
    assert_eq!(info.source_for("fd01::11".parse().unwrap()), None);
    assert_eq!(
        info.primary_addresses(),
        (
            Some(Ipv4Addr::new(198, 19, 0, 1)),
            Some("fd00::1".parse().unwrap())
        )
    );
}

#[test]
fn solicitation_turned_into_an_advert_parses() {
    let source: Ipv6Addr = "fe80::1".parse().unwrap();
    let target: Ipv6Addr = "fd00::11".parse().unwrap();
    let ns = neighbour_solicitation([2, 0, 0, 0, 0, 1], source, target);
    assert_eq!(
        &ns[..6],
        &[0x33, 0x33, 0xff, 0, 0, 0x11],
        "solicited-node group"
    );
    assert_eq!(ns.len(), 14 + 40 + 32);
    // etherparse agrees on the checksum.
    let sliced = etherparse::SlicedPacket::from_ethernet(&ns).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sliced.transport else {
        panic!("not ICMPv6");
    };
    let ip = etherparse::Ipv6Header::from_slice(&ns[14..]).unwrap().0;
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type()
            .calc_checksum(ip.source, ip.destination, icmp.payload())
            .unwrap()
    );
    assert_eq!(
        parse_neighbour_advert(&ns),
        None,
        "a solicitation is not an advert"
    );
    let mut na = ns.clone();
    na[14 + 40] = NDP_ADVERT;
    na[14 + 40 + 24] = 2; // target link-layer address option
    assert_eq!(
        parse_neighbour_advert(&na),
        Some((target, [2, 0, 0, 0, 0, 1]))
    );
    for len in 0..na.len() {
        let _ = parse_neighbour_advert(&na[..len]);
    }
}
