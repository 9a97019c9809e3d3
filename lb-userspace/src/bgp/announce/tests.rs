use super::*;
use crate::config::bgp::VipPolicy;

fn attributes(med: u32) -> Attributes {
    Attributes {
        med: Some(med),
        local_pref: 100,
        communities: vec![],
    }
}

fn config(announce: Announce) -> BgpConfig {
    BgpConfig {
        asn: 65001,
        router_id: "198.18.0.1".parse().unwrap(),
        listen_port: None,
        api: "127.0.0.1:50051".parse().unwrap(),
        gobgpd: "/usr/bin/gobgpd".into(),
        drain_time: std::time::Duration::from_secs(1),
        neighbors: vec![],
        vips: vec![VipPolicy {
            vip: VIP.parse().unwrap(),
            announce,
            attributes: attributes(10),
            backup: attributes(110),
        }],
    }
}

const VIP: &str = "198.18.0.100";
const UP: NodeFacts = NodeFacts {
    attached: true,
    stopping: false,
};

/// Name, node, usable, VRRP role, policy: the MED announced (None: none).
type Case = (
    &'static str,
    NodeFacts,
    bool,
    Option<Role>,
    Announce,
    Option<u32>,
);

#[test]
fn the_rule_table() {
    use Announce::*;
    let cases: [Case; 13] = [
        ("serving, no VRRP", UP, true, None, MasterOnly, Some(10)),
        ("serving, no VRRP, always", UP, true, None, Always, Some(10)),
        ("never announced", UP, true, None, Never, None),
        ("no usable backend", UP, false, None, MasterOnly, None),
        (
            "no usable backend as master",
            UP,
            false,
            Some(Role::Master),
            Always,
            None,
        ),
        (
            "not attached",
            NodeFacts {
                attached: false,
                stopping: false,
            },
            true,
            None,
            Always,
            None,
        ),
        (
            "stopping",
            NodeFacts {
                attached: true,
                stopping: true,
            },
            true,
            Some(Role::Master),
            Always,
            None,
        ),
        (
            "master, master-only",
            UP,
            true,
            Some(Role::Master),
            MasterOnly,
            Some(10),
        ),
        (
            "master, always",
            UP,
            true,
            Some(Role::Master),
            Always,
            Some(10),
        ),
        (
            "backup, master-only",
            UP,
            true,
            Some(Role::Backup),
            MasterOnly,
            None,
        ),
        (
            "backup, always: the worse MED",
            UP,
            true,
            Some(Role::Backup),
            Always,
            Some(110),
        ),
        ("fault, always", UP, true, Some(Role::Unable), Always, None),
        (
            "fault, master-only",
            UP,
            true,
            Some(Role::Unable),
            MasterOnly,
            None,
        ),
    ];
    for (name, node, usable, vrrp, announce, med) in cases {
        let facts = HashMap::from([(VIP.parse().unwrap(), VipFacts { usable, vrrp })]);
        let got = desired(&config(announce), node, &facts);
        let got_med = got
            .get(&VIP.parse::<IpAddr>().unwrap())
            .map(|a| a.med.unwrap());
        assert_eq!(got_med, med, "{name}");
        assert!(got.len() <= 1, "{name}");
    }
}

#[test]
fn a_vip_without_facts_is_not_announced() {
    assert!(desired(&config(Announce::Always), UP, &HashMap::new()).is_empty());
}

#[test]
fn changes_are_the_difference() {
    let a: IpAddr = "198.18.0.100".parse().unwrap();
    let b: IpAddr = "198.18.0.101".parse().unwrap();
    let c: IpAddr = "2001:db8::1".parse().unwrap();
    let current = Announcements::from([(a, attributes(10)), (b, attributes(10))]);
    let wanted = Announcements::from([
        (a, attributes(10)),
        (b, attributes(110)),
        (c, attributes(5)),
    ]);
    assert_eq!(
        difference(&current, &wanted),
        Changes {
            announce: vec![(b, attributes(110)), (c, attributes(5))],
            withdraw: vec![],
        }
    );
    assert_eq!(
        difference(&wanted, &Announcements::from([(c, attributes(5))])),
        Changes {
            announce: vec![],
            withdraw: vec![a, b],
        }
    );
    assert_eq!(difference(&wanted, &wanted), Changes::default());
}

fn planned(vip: &str, mode: u8, backends: &[(BackendState, u32, bool)]) -> DesiredService {
    DesiredService {
        name: "s".into(),
        vip: vip.parse().unwrap(),
        port: 80,
        proto: 6,
        mode,
        backends: backends
            .iter()
            .enumerate()
            .map(
                |(i, (state, weight, mac))| crate::dataplane::programmer::DesiredBackend {
                    address: format!("198.18.0.{}:80", 11 + i).parse().unwrap(),
                    weight: *weight,
                    mac: mac.then_some([2, 0, 0, 0, 0, i as u8]),
                    state: *state,
                },
            )
            .collect(),
    }
}

#[test]
fn a_vip_is_usable_while_some_service_on_it_has_a_backend_for_new_flows() {
    use BackendState::*;
    let cases = [
        (
            "serving",
            lb_common::MODE_DSR,
            vec![(Serving, 1, true)],
            true,
        ),
        (
            "all draining",
            lb_common::MODE_DSR,
            vec![(Draining, 1, true), (Draining, 1, true)],
            false,
        ),
        (
            "one of two drained",
            lb_common::MODE_DSR,
            vec![(Draining, 1, true), (Serving, 1, true)],
            true,
        ),
        ("down", lb_common::MODE_DSR, vec![(Down, 1, true)], false),
        (
            "weight 0 (slow start begins)",
            lb_common::MODE_DSR,
            vec![(Serving, 0, true)],
            false,
        ),
        (
            "dsr without a MAC",
            lb_common::MODE_DSR,
            vec![(Serving, 1, false)],
            false,
        ),
        (
            "nat without a MAC",
            lb_common::MODE_NAT,
            vec![(Serving, 1, false)],
            true,
        ),
        ("no backends", lb_common::MODE_DSR, vec![], false),
    ];
    for (name, mode, backends, usable) in cases {
        let facts = usable_vips(&[planned(VIP, mode, &backends)]);
        assert_eq!(facts[&VIP.parse::<IpAddr>().unwrap()], usable, "{name}");
    }
    // Two services on one VIP: usable if either is.
    let both = usable_vips(&[
        planned(VIP, lb_common::MODE_DSR, &[(Down, 1, true)]),
        planned(VIP, lb_common::MODE_DSR, &[(Serving, 1, true)]),
    ]);
    assert!(both[&VIP.parse::<IpAddr>().unwrap()]);
}

#[test]
fn the_vrrp_instance_covering_a_vip_gives_its_role() {
    let text = format!(
        "{}\n[[vrrp]]\nname = \"VI_1\"\nvrid = 51\nvirtual_ipaddress = [\"{VIP}\"]\n",
        crate::config::tests::GOOD
    );
    let config = crate::config::Config::parse(
        &text,
        std::path::Path::new("lb.toml"),
        &crate::config::tests::FakeHost,
    )
    .unwrap();
    let vip: IpAddr = VIP.parse().unwrap();
    let other: IpAddr = "198.18.0.200".parse().unwrap();
    let usable = HashMap::from([(vip, true), (other, true)]);
    let status = |state| crate::vrrp::VrrpStatus {
        name: "VI_1".into(),
        vrid: 51,
        version: crate::config::vrrp::Version::V3,
        state,
        priority: 100,
        effective_priority: 100,
        master: None,
        local_address: "198.18.0.1".parse().unwrap(),
        seconds_in_state: 0.0,
        last_transition: String::new(),
        counters: Default::default(),
    };
    for (state, role) in [
        (State::Master, Role::Master),
        (State::Backup, Role::Backup),
        (State::Fault, Role::Unable),
        (State::Initialize, Role::Unable),
    ] {
        let facts = vip_facts(&config, &usable, &[status(state)]);
        assert_eq!(facts[&vip].vrrp, Some(role), "{state:?}");
        assert_eq!(facts[&other].vrrp, None);
    }
    // Not started yet: no status at all.
    assert_eq!(
        vip_facts(&config, &usable, &[])[&vip].vrrp,
        Some(Role::Unable)
    );
}
