//! Every forwarding mode end to end, over IPv4 and IPv6, in namespaces:
//! real TCP connections and UDP queries through the VIPs, with the
//! backends reporting the source address they saw. Needs root.
use lb_tests::{
    modes_lab::{
        backend4, backend6, Mode, ModesLab, CLIENT4, CLIENT6, GATEWAY4, LB4, LB6, SNAT_PORTS, VIP4,
        VIP6,
    },
    predict::maglev_choice_for,
    topology::lbd_binary,
};
use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

const BACKENDS: usize = 3;
const FLOWS: u16 = 12;

/// The backend name Maglev puts the flow on (table size as configured).
fn predicted(mode: Mode, vip: IpAddr, source_port: u16, port: u16, proto: u8) -> String {
    let (tcp, udp) = mode.backend_ports();
    let backend_port = if proto == lb_common::PROTO_TCP {
        tcp
    } else {
        udp
    };
    let backends: Vec<SocketAddr> = (0..BACKENDS)
        .map(|i| {
            let ip: IpAddr = if vip.is_ipv4() {
                backend4(i).into()
            } else {
                backend6(i).into()
            };
            SocketAddr::new(ip, backend_port)
        })
        .collect();
    let client: IpAddr = if vip.is_ipv4() {
        CLIENT4.into()
    } else {
        CLIENT6.into()
    };
    let index = maglev_choice_for(client, source_port, vip, port, proto, &backends, 251);
    format!("b{}", index + 1)
}

/// TCP and UDP over both families: every answer from the predicted
/// backend, which saw the source `expect_source` says it must.
fn exercise(lab: &ModesLab, expect_source: impl Fn(IpAddr, u16, &SocketAddr) -> bool) {
    for vip in [IpAddr::from(VIP4), IpAddr::from(VIP6)] {
        for source_port in 40000..40000 + FLOWS {
            let (name, peer) = lab.tcp_ask(vip, source_port).unwrap_or_else(|e| {
                panic!(
                    "{:?} TCP {vip} from {source_port}: {e:#}\n{}",
                    lab.mode,
                    lab.lbd_log()
                )
            });
            // The predicted backend answered, and saw the expected source.
            let check = |transport: &str, port: u16, proto: u8, name: String, peer: SocketAddr| {
                assert_eq!(
                    name,
                    predicted(lab.mode, vip, source_port, port, proto),
                    "{:?} {transport} {vip} from port {source_port}",
                    lab.mode
                );
                assert!(
                    expect_source(vip, source_port, &peer),
                    "{:?} {transport} {vip} from port {source_port}: backend saw {peer}",
                    lab.mode
                );
            };
            check("TCP", 80, lb_common::PROTO_TCP, name, peer);
            let (name, peer) = lab
                .udp_ask(vip, source_port)
                .unwrap_or_else(|e| panic!("{:?} UDP {vip} from {source_port}: {e:#}", lab.mode));
            check("UDP", 53, lb_common::PROTO_UDP, name, peer);
        }
    }
}

fn client_of(vip: IpAddr) -> IpAddr {
    if vip.is_ipv4() {
        CLIENT4.into()
    } else {
        CLIENT6.into()
    }
}

fn counter(lab: &ModesLab, name: &str) -> u64 {
    let report = lab.status(&lbd_binary()).unwrap();
    report
        .global
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

#[test]
fn dsr_over_ipv4_and_ipv6_keeps_client_addresses() {
    let mut lab = ModesLab::build(Mode::Dsr, BACKENDS).unwrap();
    lab.start_lbd(&lbd_binary(), &lab.config("")).unwrap();
    exercise(&lab, |vip, port, peer| {
        *peer == SocketAddr::new(client_of(vip), port)
    });
    assert!(counter(&lab, "tx_dsr") > 0);
    // IPv6 dsr backends were resolved by neighbour solicitation.
    let report = lab.status(&lbd_binary()).unwrap();
    for service in report.services.iter().filter(|s| s.vip.is_ipv6()) {
        assert!(service.backends.iter().all(|b| b.mac != "unresolved"));
    }
}

#[test]
fn nat_keeps_client_addresses_with_backends_routing_via_the_lb() {
    let mut lab = ModesLab::build(Mode::Nat, BACKENDS).unwrap();
    lab.start_lbd(&lbd_binary(), &lab.config("")).unwrap();
    exercise(&lab, |vip, port, peer| {
        *peer == SocketAddr::new(client_of(vip), port)
    });
    // Replies were translated by XDP, not by the kernel: every packet
    // past each flow's first went out with XDP_TX.
    assert!(counter(&lab, "tx_nat") > 0);
    assert!(counter(&lab, "tx_nat_reply") > 0);
}

#[test]
fn fullnat_backends_without_a_route_to_the_client_still_answer() {
    let mut lab = ModesLab::build(Mode::Fullnat, BACKENDS).unwrap();
    for backend in &lab.backends {
        assert!(
            backend.ip(&["route", "get", &CLIENT4.to_string()]).is_err(),
            "the backend must not be able to reach the client"
        );
    }
    lab.start_lbd(&lbd_binary(), &lab.config("")).unwrap();
    exercise(&lab, |vip, _, peer| {
        let ours: IpAddr = if vip.is_ipv4() {
            LB4.into()
        } else {
            LB6.into()
        };
        peer.ip() == ours && (SNAT_PORTS.0..=SNAT_PORTS.1).contains(&peer.port())
    });
    assert!(counter(&lab, "tx_nat_reply") > 0);
    // `lbd flows` lists them: client, VIP, backend, fullnat source port.
    let out = lb_tests::netns::run(std::process::Command::new(lbd_binary()).args([
        "flows",
        "--json",
        "--instance",
        &lab.instance,
    ]))
    .unwrap();
    let flows: Vec<lbd::cli::FlowStatus> = serde_json::from_str(&out).unwrap();
    let flow = flows
        .iter()
        .find(|f| f.client == SocketAddr::new(CLIENT4.into(), 40000) && f.protocol == "tcp")
        .expect("the first TCP flow is listed");
    assert_eq!(flow.vip, SocketAddr::new(VIP4.into(), 80));
    let name = predicted(Mode::Fullnat, VIP4.into(), 40000, 80, lb_common::PROTO_TCP);
    let index: usize = name.trim_start_matches('b').parse::<usize>().unwrap() - 1;
    assert_eq!(
        flow.backend,
        Some(SocketAddr::new(backend4(index).into(), 8080))
    );
    assert!(flow
        .snat_port
        .is_some_and(|p| (SNAT_PORTS.0..=SNAT_PORTS.1).contains(&p)));
    assert!(flow.expires_in > 0.0);
    // One reply entry per flow (each of these flows has one backend).
    let report = lab.status(&lbd_binary()).unwrap();
    assert_eq!(report.nat_replies, report.flows);
}

#[test]
fn idle_udp_flows_expire_and_are_collected() {
    let mut lab = ModesLab::build(Mode::Fullnat, 1).unwrap();
    lab.start_lbd(&lbd_binary(), &lab.config("udp_timeout = 1"))
        .unwrap();
    let lbd = lbd_binary();
    let idle = lab.status(&lbd).unwrap().flows;
    for source_port in 41000..41005 {
        lab.udp_ask(VIP4.into(), source_port).unwrap();
    }
    let busy = lab.status(&lbd).unwrap().flows;
    assert!(
        busy >= idle + 5,
        "five UDP flows in the table ({idle} -> {busy})"
    );
    // udp_timeout 1 s, collected every second: gone within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let now = lab.status(&lbd).unwrap().flows;
        if now <= idle {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "idle UDP flows still in the table: {now}\n{}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A new query after expiry works (and gets a fresh source port).
    let (_, peer) = lab.udp_ask(VIP4.into(), 41000).unwrap();
    assert_eq!(peer.ip(), IpAddr::from(LB4));
}

#[test]
fn health_checks_take_a_dead_backend_out_over_both_families() {
    let mut lab = ModesLab::build(Mode::Nat, BACKENDS).unwrap();
    let check = "health_check = { kind = \"tcp\", port = 8080, interval = 0.2, timeout = 0.2, rise = 1, fall = 1 }";
    lab.start_lbd(&lbd_binary(), &lab.config_with("", check))
        .unwrap();
    // b2 loses its link: its checks over IPv4 and IPv6 fail.
    lab.backends[1]
        .ip(&["link", "set", "eth0", "down"])
        .unwrap();
    let lbd = lbd_binary();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = lab.status(&lbd).unwrap();
        let b2: Vec<_> = report
            .services
            .iter()
            .flat_map(|s| &s.backends)
            .filter(|b| {
                b.address == IpAddr::from(backend4(1)) || b.address == IpAddr::from(backend6(1))
            })
            .collect();
        assert_eq!(b2.len(), 4, "b2 in four services");
        if b2
            .iter()
            .all(|b| b.health.as_deref() == Some("down") && b.slots == Some(0))
        {
            break;
        }
        assert!(Instant::now() < deadline, "b2 still in the tables: {b2:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for vip in [IpAddr::from(VIP4), IpAddr::from(VIP6)] {
        for source_port in 42000..42000 + FLOWS {
            let (name, _) = lab.tcp_ask(vip, source_port).unwrap();
            assert_ne!(name, "b2", "{vip} from port {source_port}");
        }
    }
}

/// The `[[vrrp]]` section of the HA lab: the VIP and the client's gateway.
fn vrrp(priority: u8) -> String {
    format!(
        "\n[[vrrp]]\nname = \"VI_1\"\nversion = 3\nvrid = 51\npriority = {priority}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP4}\", \"{GATEWAY4}\"]\n"
    )
}

fn vrrp_state(instance: &str) -> Option<lb_tests::ha::State> {
    let out = std::process::Command::new(lbd_binary())
        .args(["status", "--json", "--instance", instance])
        .output()
        .ok()?;
    let report: lbd::cli::StatusReport = serde_json::from_slice(&out.stdout).ok()?;
    report.vrrp.first().map(|v| v.state)
}

fn wait_master(lab: &ModesLab, instance: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while vrrp_state(instance) != Some(lb_tests::ha::State::Master) {
        assert!(
            Instant::now() < deadline,
            "{instance} never became master:\n{}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fullnat_behind_vrrp_serves_new_flows_after_a_failover() {
    let mut lab = ModesLab::build_ha(Mode::Fullnat, BACKENDS).unwrap();
    let lbd = lbd_binary();
    let primary = lab.config("") + &vrrp(200);
    lab.start_lbd(&lbd, &primary).unwrap();
    wait_master(&lab, &lab.instance.clone());
    let standby_instance = lab.standby.as_ref().unwrap().instance.clone();
    let standby = lab.config_of(&standby_instance, "", "") + &vrrp(100);
    lab.start_standby(&lbd, &standby).unwrap();
    let via_vip = |peer: &SocketAddr| {
        peer.ip() == IpAddr::from(VIP4) && (SNAT_PORTS.0..=SNAT_PORTS.1).contains(&peer.port())
    };
    for source_port in 43000..43000 + FLOWS {
        let (_, peer) = lab.tcp_ask(VIP4.into(), source_port).unwrap();
        assert!(via_vip(&peer), "backend saw {peer}");
    }
    // The master loses its link: the standby takes the VIP and the
    // gateway, and new flows (TCP and UDP) work through it.
    lab.switch.ip(&["link", "set", "p-lb", "down"]).unwrap();
    wait_master(&lab, &standby_instance);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.tcp_ask(VIP4.into(), 44999).is_err() {
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            Instant::now() < deadline,
            "no service after the failover:\n{}",
            lab.lbd_log()
        );
    }
    for source_port in 45000..45000 + FLOWS {
        let (name, peer) = lab.tcp_ask(VIP4.into(), source_port).unwrap();
        assert_eq!(
            name,
            predicted(
                Mode::Fullnat,
                VIP4.into(),
                source_port,
                80,
                lb_common::PROTO_TCP
            )
        );
        assert!(via_vip(&peer), "backend saw {peer}");
        let (_, peer) = lab.udp_ask(VIP4.into(), source_port).unwrap();
        assert!(via_vip(&peer), "backend saw {peer}");
    }
}
