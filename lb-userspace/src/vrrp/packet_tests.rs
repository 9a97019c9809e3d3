//! Byte-exact vectors, computed independently of this code field by field
//! from RFC 3768 / RFC 5798. The two IPv4 ones are also exactly what
//! keepalived 2.2.7 sent, captured with tcpdump in a namespace: v2 for
//! `virtual_router_id 51`, `priority 210`, `advert_int 1`, `auth_type PASS`,
//! `auth_pass 1111`, VIP 198.18.0.100; v3 for vrid 51, priority 200,
//! `advert_int 1`, VIPs 198.18.0.100 and .101, from 198.18.0.1 (so
//! keepalived includes the IPv4 pseudo-header in the v3 checksum, as we do).
use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const LB1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const GROUP4: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
const LINK6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
const GROUP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12));

fn v2_pass() -> (Advertisement, Vec<u8>) {
    (
        Advertisement {
            version: Version::V2,
            vrid: 51,
            priority: 210,
            interval_cs: 100,
            password: Some(password_bytes("1111")),
            addresses: vec!["198.18.0.100".parse().unwrap()],
        },
        hex("2133d2010101e2f0c61200643131313100000000"),
    )
}

fn v3_ipv4() -> (Advertisement, Vec<u8>) {
    (
        Advertisement {
            version: Version::V3,
            vrid: 51,
            priority: 200,
            interval_cs: 100,
            password: None,
            addresses: vec![
                "198.18.0.100".parse().unwrap(),
                "198.18.0.101".parse().unwrap(),
            ],
        },
        hex("3133c8020064d2d0c6120064c6120065"),
    )
}

fn v3_ipv6() -> (Advertisement, Vec<u8>) {
    (
        Advertisement {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            interval_cs: 1,
            password: None,
            addresses: vec!["fd00::100".parse().unwrap()],
        },
        hex("3107640100016ed6fd000000000000000000000000000100"),
    )
}

#[test]
fn v2_with_simple_password_is_byte_exact() {
    let (ad, bytes) = v2_pass();
    assert_eq!(ad.emit(LB1, GROUP4), bytes);
    assert_eq!(parse(&bytes, LB1, GROUP4).unwrap(), ad);
}

#[test]
fn v3_over_ipv4_is_byte_exact_with_pseudo_header() {
    let (ad, bytes) = v3_ipv4();
    assert_eq!(ad.emit(LB1, GROUP4), bytes);
    assert_eq!(parse(&bytes, LB1, GROUP4).unwrap(), ad);
    // The same bytes from another source fail: the checksum covers it.
    let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9));
    assert_eq!(parse(&bytes, other, GROUP4), Err(RejectReason::Checksum));
}

#[test]
fn v3_over_ipv6_is_byte_exact_with_pseudo_header() {
    let (ad, bytes) = v3_ipv6();
    assert_eq!(ad.emit(LINK6, GROUP6), bytes);
    assert_eq!(parse(&bytes, LINK6, GROUP6).unwrap(), ad);
}

#[test]
fn v3_interval_uses_twelve_bits_of_centiseconds() {
    let mut ad = v3_ipv4().0;
    ad.interval_cs = 4095;
    let bytes = ad.emit(LB1, GROUP4);
    assert_eq!(&bytes[4..6], &[0x0f, 0xff]);
    assert_eq!(parse(&bytes, LB1, GROUP4).unwrap().interval_cs, 4095);
}

#[test]
fn trailing_bytes_after_the_message_are_ignored() {
    let (ad, mut bytes) = v2_pass();
    bytes.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(parse(&bytes, LB1, GROUP4).unwrap(), ad);
}

#[test]
fn every_truncation_is_rejected_without_panic() {
    for (_, bytes) in [v2_pass(), v3_ipv4(), v3_ipv6()] {
        for len in 0..bytes.len() {
            let (source, destination) = if bytes.len() == 24 {
                (LINK6, GROUP6)
            } else {
                (LB1, GROUP4)
            };
            assert_eq!(
                parse(&bytes[..len], source, destination),
                Err(RejectReason::Truncated),
                "length {len}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_fails_the_checksum() {
    let (_, bytes) = v3_ipv4();
    for i in 0..bytes.len() {
        // Bits that change the parsed length or version fail earlier.
        if i == 0 || i == 3 {
            continue;
        }
        let mut corrupt = bytes.clone();
        corrupt[i] ^= 0x10;
        assert_eq!(
            parse(&corrupt, LB1, GROUP4),
            Err(RejectReason::Checksum),
            "byte {i}"
        );
    }
}

#[test]
fn wrong_version_and_type_are_rejected() {
    let (_, mut bytes) = v3_ipv4();
    bytes[0] = 0x41;
    assert_eq!(parse(&bytes, LB1, GROUP4), Err(RejectReason::Version));
    let (_, mut bytes) = v3_ipv4();
    bytes[0] = 0x32;
    assert_eq!(parse(&bytes, LB1, GROUP4), Err(RejectReason::Type));
    // VRRPv2 does not exist over IPv6.
    let (_, bytes) = v2_pass();
    assert_eq!(parse(&bytes, LINK6, GROUP6), Err(RejectReason::Version));
}

#[test]
fn unknown_v2_auth_type_is_rejected() {
    let (ad, _) = v2_pass();
    let mut bytes = ad.emit(LB1, GROUP4);
    bytes[4] = 2; // IP authentication header: obsolete, unsupported
    bytes[6..8].copy_from_slice(&[0, 0]);
    let fixed = internet_checksum(&[&bytes]);
    bytes[6..8].copy_from_slice(&fixed.to_be_bytes());
    assert_eq!(parse(&bytes, LB1, GROUP4), Err(RejectReason::Auth));
}

#[test]
fn zero_addresses_are_rejected() {
    let mut ad = v3_ipv4().0;
    ad.addresses.clear();
    let bytes = ad.emit(LB1, GROUP4);
    assert_eq!(parse(&bytes, LB1, GROUP4), Err(RejectReason::AddressList));
}

#[test]
fn password_is_truncated_and_padded_to_eight_bytes() {
    assert_eq!(&password_bytes("1111"), b"1111\0\0\0\0");
    assert_eq!(&password_bytes("0123456789"), b"01234567");
}
