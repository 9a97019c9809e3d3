use super::*;
use crate::config::{
    tests::{error, FakeHost, GOOD},
    Config,
};
use std::path::Path;

fn parse(bgp: &str) -> Config {
    Config::parse(&format!("{GOOD}\n{bgp}"), Path::new("lb.toml"), &FakeHost)
        .unwrap_or_else(|e| panic!("{e}"))
}

const MINIMAL: &str = r#"[bgp]
asn = 65001
router_id = "198.18.0.1"
[[bgp.neighbor]]
address = "198.18.0.254"
remote_as = 65000
"#;

#[test]
fn a_minimal_section_gets_the_defaults_and_covers_every_service_vip() {
    let bgp = parse(MINIMAL).bgp.expect("a [bgp] section");
    assert_eq!(bgp.asn, 65001);
    assert_eq!(bgp.listen_port, Some(179));
    assert_eq!(bgp.api, DEFAULT_API.parse().unwrap());
    assert_eq!(bgp.drain_time, Duration::from_secs(5));
    assert_eq!(
        bgp.neighbors,
        vec![Neighbor {
            address: "198.18.0.254".parse().unwrap(),
            remote_as: 65000,
            hold_time: 90,
            password: None,
        }]
    );
    assert_eq!(bgp.vips.len(), 1);
    let vip = &bgp.vips[0];
    assert_eq!(vip.vip, "198.18.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(vip.announce, Announce::MasterOnly);
    assert_eq!(vip.attributes.med, None);
    assert_eq!(vip.attributes.local_pref, 100);
    assert_eq!(vip.backup.med, Some(100));
    assert_eq!(vip.backup.local_pref, 50);
}

#[test]
fn vip_entries_override_the_section_defaults() {
    let text = r#"[bgp]
asn = 65001
router_id = "198.18.0.1"
listen_port = 0
hold_time = 3
drain_time = 0.5
announce = "always"
med = 10
communities = ["65001:7", "no-export"]
[[bgp.neighbor]]
address = "198.18.0.254"
remote_as = 65000
password = "s3cret"
[[bgp.vip]]
address = "198.18.0.100"
med = 20
backup_local_pref = 10
"#;
    let bgp = parse(text).bgp.unwrap();
    assert_eq!(bgp.listen_port, None);
    assert_eq!(bgp.drain_time, Duration::from_millis(500));
    assert_eq!(bgp.neighbors[0].hold_time, 3);
    assert_eq!(bgp.neighbors[0].password.as_deref(), Some("s3cret"));
    let vip = &bgp.vips[0];
    assert_eq!(vip.announce, Announce::Always);
    assert_eq!(vip.attributes.med, Some(20));
    assert_eq!(
        vip.attributes.communities,
        vec![(65001 << 16) | 7, 0xFFFF_FF01]
    );
    assert_eq!(vip.backup.med, Some(120));
    assert_eq!(vip.backup.local_pref, 10);
}

#[test]
fn bad_values_are_reported_with_their_line() {
    let cases = [
        ("asn = 0", "lb.toml:18: bgp.asn: AS 0 is reserved"),
        (
            "router_id = \"::1\"",
            "lb.toml:18: bgp.router_id: \"::1\" is not a non-zero IPv4",
        ),
        (
            "hold_time = 2",
            "lb.toml:18: bgp.hold_time: 2 s: a hold time is 0 or 3..=65535",
        ),
        (
            "api = \"localhost\"",
            "lb.toml:18: bgp.api: \"localhost\" is not an address:port",
        ),
        (
            "drain_time = -1",
            "lb.toml:18: bgp.drain_time: -1 seconds is outside",
        ),
        (
            "communities = [\"70000:1\"]",
            "lb.toml:18: bgp.communities: \"70000:1\": 70000 is not",
        ),
        (
            "announce = \"sometimes\"",
            "lb.toml:18: syntax: unknown variant `sometimes`",
        ),
        (
            "listen_port = 70000",
            "lb.toml:18: bgp.listen_port: 70000 is not a port",
        ),
    ];
    for (line, expected) in cases {
        // The line under test replaces the base's own line for its key.
        let key = line.split(' ').next().unwrap();
        let base: Vec<&str> = ["asn = 65001", "router_id = \"198.18.0.1\""]
            .into_iter()
            .filter(|l| !l.starts_with(key))
            .collect();
        let text = format!(
            "{GOOD}\n[bgp]\n{line}\n{}\n[[bgp.neighbor]]\naddress = \"198.18.0.254\"\nremote_as = 65000\n",
            base.join("\n")
        );
        let got = error(&text);
        assert!(
            got.starts_with(expected),
            "{line}: got {got}, want {expected}"
        );
    }
}

#[test]
fn neighbours_and_vips_are_checked() {
    let base = "[bgp]\nasn = 65001\nrouter_id = \"198.18.0.1\"\n";
    let neighbour = "[[bgp.neighbor]]\naddress = \"198.18.0.254\"\nremote_as = 65000\n";
    let cases = [
        (String::new(), "bgp.neighbor: at least one [[bgp.neighbor]] is needed"),
        (format!("{neighbour}{neighbour}"), "bgp.neighbor.address: neighbor 198.18.0.254 is listed twice"),
        (format!("{neighbour}bfd = true\n"), "bgp.neighbor.bfd: gobgpd (the speaker lbd drives) has no BFD"),
        (format!("{neighbour}hold_time = 1\n"), "bgp.neighbor.hold_time: 1 s"),
        (format!("{neighbour}[[bgp.vip]]\naddress = \"198.18.0.200\"\n"), "bgp.vip.address: 198.18.0.200 is not the vip of any [[service]]"),
        (
            format!("{neighbour}[[bgp.vip]]\naddress = \"198.18.0.100\"\n[[bgp.vip]]\naddress = \"198.18.0.100\"\n"),
            "bgp.vip.address: 198.18.0.100 has a [[bgp.vip]] entry already",
        ),
    ];
    for (tail, expected) in cases {
        let got = error(&format!("{GOOD}\n{base}{tail}"));
        assert!(got.contains(expected), "got {got}, want {expected}");
    }
}

#[test]
fn communities_parse_as_asn_value_or_well_known_names() {
    assert_eq!(parse_community("65000:100"), Ok((65000 << 16) | 100));
    assert_eq!(parse_community("NO-EXPORT"), Ok(0xFFFF_FF01));
    assert!(parse_community("65000").is_err());
    assert!(parse_community("a:b").is_err());
}
