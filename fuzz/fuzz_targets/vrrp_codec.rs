//! The VRRP codec on arbitrary packets: parsing never panics, and what it
//! accepts is emitted and parsed back to the same advertisement.
#![no_main]
use lbd::vrrp::packet::{parse, Version};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let Some((&family, packet)) = data.split_first() else {
        return;
    };
    let (source, destination): (IpAddr, IpAddr) = if family & 1 == 0 {
        (
            Ipv4Addr::new(198, 18, 0, 2).into(),
            Ipv4Addr::new(224, 0, 0, 18).into(),
        )
    } else {
        (
            "fe80::2".parse::<Ipv6Addr>().unwrap().into(),
            "ff02::12".parse::<Ipv6Addr>().unwrap().into(),
        )
    };
    if let Ok(advert) = parse(packet, source, destination) {
        let bytes = advert.emit(source, destination);
        let again = parse(&bytes, source, destination).expect("our own advert parses");
        assert_eq!(again, advert);
        assert!(matches!(again.version, Version::V2 | Version::V3));
    }
});
