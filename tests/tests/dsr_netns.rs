//! L2 DSR end to end: client, load balancer and backends in network
//! namespaces, real TCP and UDP through the VIP, `lbd` as users run it.
//! Needs root.
use lb_common::{PROTO_TCP, PROTO_UDP};
use lb_tests::{
    nft::NftCounters,
    predict::maglev_choice,
    topology::{
        backend_addr, backend_name, lbd_binary, DsrLab, CLIENT_ADDR, TCP_PORT, UDP_PORT, VIP,
    },
    traffic::{self},
};
use lbd::cli::StatusReport;
use std::{collections::BTreeMap, process::Command, time::Duration};

const RING: u32 = 65_537;

/// The backend name Maglev picks for a client source port, computed from
/// the configuration exactly as both lbd and the kernel do.
fn predicted(source_port: u16, port: u16, proto: u8, backends: usize) -> String {
    let addresses: Vec<_> = (0..backends).map(backend_addr).collect();
    backend_name(maglev_choice(
        CLIENT_ADDR,
        source_port,
        VIP,
        port,
        proto,
        &addresses,
        RING,
    ))
}

fn service(report: &StatusReport, port: u16) -> &lbd::cli::ServiceStatus {
    report
        .services
        .iter()
        .find(|s| s.port == port)
        .expect("service in status")
}

/// Whether an XDP program is attached to the balancer's eth0.
fn xdp_attached(lab: &DsrLab) -> bool {
    lab.lb()
        .ip(&["link", "show", "eth0"])
        .unwrap()
        .contains("prog/xdp")
}

/// `lbd stop --instance`, which must succeed.
fn lbd_stop(lbd: &std::path::Path, lab: &DsrLab) -> std::process::Output {
    let stop = Command::new(lbd)
        .args(["stop", "--instance", &lab.instance])
        .output()
        .unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    stop
}

fn tally(answers: &[(u16, String)]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, name) in answers {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn dsr_balances_real_tcp_and_udp_by_maglev_and_counts_exactly() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(3).unwrap();
    lab.write_config(&lab.config(3)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let sent = NftCounters::install(
        &lab.client,
        "output",
        &[
            format!("ip daddr {VIP} tcp dport {TCP_PORT}"),
            format!("ip daddr {VIP} udp dport {UDP_PORT}"),
        ],
    )
    .unwrap();
    // Replies come from the VIP; in DSR none may reach the load balancer.
    let replies_at_lb =
        NftCounters::install(lab.lb(), "prerouting", &[format!("ip saddr {VIP}")]).unwrap();
    let lb_rx_before = DsrLab::rx_packets(lab.lb()).unwrap();

    let tcp_ports = 20_000..21_200u16;
    let udp_ports = 30_000..31_200u16;
    let (tcp_target, udp_target) = (lab.tcp_target(), lab.udp_target());
    let tcp = lab
        .client
        .run_in(|| traffic::tcp_names(CLIENT_ADDR, tcp_ports.clone(), tcp_target))
        .unwrap()
        .unwrap();
    let udp = lab
        .client
        .run_in(|| traffic::udp_names(CLIENT_ADDR, udp_ports.clone(), udp_target, b"query"))
        .unwrap()
        .unwrap();
    // Let the last FIN/ACK exchanges finish before reading counters.
    std::thread::sleep(Duration::from_millis(500));

    // Every flow landed exactly where Maglev says.
    for (port, name) in &tcp {
        assert_eq!(
            *name,
            predicted(*port, TCP_PORT, PROTO_TCP, 3),
            "TCP from port {port}"
        );
    }
    for (port, name) in &udp {
        assert_eq!(
            *name,
            predicted(*port, UDP_PORT, PROTO_UDP, 3),
            "UDP from port {port}"
        );
    }
    // And each backend got its share (1/3 each) within 10%.
    for counts in [tally(&tcp), tally(&udp)] {
        assert_eq!(counts.len(), 3, "{counts:?}");
        for (name, count) in &counts {
            let share = *count as f64 / 1200.0;
            assert!(
                (share - 1.0 / 3.0).abs() < 0.1 / 3.0,
                "{name}: {count} of 1200"
            );
        }
    }

    // The counters equal what the client sent.
    let sent = sent.read().unwrap();
    let [(tcp_packets, tcp_bytes), (udp_packets, udp_bytes)] = [sent[0], sent[1]];
    assert_eq!(udp_packets, 1200);
    let report = lab.status(&lbd).unwrap();
    let web = service(&report, TCP_PORT);
    let dns = service(&report, UDP_PORT);
    assert_eq!(web.packets, tcp_packets);
    assert_eq!(
        web.bytes,
        tcp_bytes + 14 * tcp_packets,
        "frame bytes = IP bytes + Ethernet headers"
    );
    assert_eq!(web.new_flows, 1200);
    assert_eq!(dns.packets, udp_packets);
    assert_eq!(dns.bytes, udp_bytes + 14 * udp_packets);
    assert_eq!(dns.new_flows, 1200);
    for (svc, answers) in [(web, &tcp), (dns, &udp)] {
        let expected = tally(answers);
        let mut packets = 0;
        for backend in &svc.backends {
            let name = backend_name((last_octet(backend.address) - 11) as usize);
            assert_eq!(
                backend.new_flows, expected[&name],
                "{}: new flows of {name}",
                svc.port
            );
            packets += backend.packets;
        }
        assert_eq!(
            packets, svc.packets,
            "backend packets add up to the service's"
        );
    }
    let tx: u64 = report.global.iter().find(|(n, _)| n == "tx_dsr").unwrap().1;
    assert_eq!(tx, tcp_packets + udp_packets);

    // DSR: replies went backend -> client; the LB received only the
    // client's packets (plus a little ARP and multicast such as IGMP
    // reports), never one of the thousands of replies.
    let lb_received = DsrLab::rx_packets(lab.lb()).unwrap() - lb_rx_before;
    assert!(
        lb_received >= tx && lb_received < tx + 20,
        "LB received {lb_received}, forwarded {tx}"
    );
    assert_eq!(
        replies_at_lb.read().unwrap()[0].0,
        0,
        "a reply (source: the VIP) reached the load balancer"
    );
    assert!(lab.stop_lbd(), "lbd exits cleanly on SIGTERM");
}

#[test]
fn established_flows_keep_their_backend_when_a_backend_is_added() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(4).unwrap();
    lab.write_config(&lab.config(3)).unwrap();
    lab.start_lbd(&lbd).unwrap();

    let held_ports = 22_000..22_150u16;
    let mut held = lab.hold_connections(held_ports.clone()).unwrap();
    for connection in &held {
        assert_eq!(
            connection.first_backend,
            predicted(connection.source_port, TCP_PORT, PROTO_TCP, 3)
        );
    }
    // The test means something only if the new table moves some of them.
    let would_move = held
        .iter()
        .filter(|c| predicted(c.source_port, TCP_PORT, PROTO_TCP, 4) != c.first_backend)
        .count();
    assert!(would_move > 10, "only {would_move} flows would move");

    lab.write_config(&lab.config(4)).unwrap();
    lab.reload_lbd().unwrap();
    lab.wait_for_backends(&lbd, 8, Duration::from_secs(15))
        .unwrap();
    let report = lab.status(&lbd).unwrap();
    assert_eq!(service(&report, TCP_PORT).backends.len(), 4);

    for connection in &mut held {
        assert_eq!(
            connection.ask().unwrap(),
            connection.first_backend,
            "flow from port {} moved",
            connection.source_port
        );
    }
    // New flows use the new table, the new backend included.
    let fresh = lab.tcp_names(23_000..23_300).unwrap();
    for (port, name) in &fresh {
        assert_eq!(*name, predicted(*port, TCP_PORT, PROTO_TCP, 4));
    }
    assert!(fresh.iter().any(|(_, name)| name == "b4"));
    drop(held);
    assert!(lab.stop_lbd());
}

#[test]
fn a_second_lbd_for_the_same_instance_refuses_and_lbd_stop_tears_down() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(1).unwrap();
    let config = lab.write_config(&lab.config(1)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let first_pid = lab.lbd_pid().unwrap();

    let second = Command::new(&lbd)
        .args(["run", "-c"])
        .arg(&config)
        .args(["--netns", lab.lb().name()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "instance \"{}\" is already running (pid {first_pid}",
            lab.instance
        )),
        "{stderr}"
    );
    // The first one is unharmed.
    lab.status(&lbd).unwrap();

    let pins = std::path::Path::new("/sys/fs/bpf").join(&lab.instance);
    assert!(pins.join("lb_services").exists());
    assert!(xdp_attached(&lab));
    lbd_stop(&lbd, &lab);
    assert!(lab.stop_lbd(), "lbd exited cleanly after lbd stop");
    assert!(!pins.exists(), "pins removed on exit");
    assert!(!xdp_attached(&lab), "program detached");
    let status = Command::new(&lbd)
        .args(["status", "--instance", &lab.instance])
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("is not running"));
}

#[test]
fn lbd_check_names_file_line_and_field() {
    let lbd = lbd_binary();
    let dir = lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("check")).unwrap();
    let bad = dir.path.join("bad.toml");
    std::fs::write(
        &bad,
        "[instance]\nname = \"lb1\"\ninterface = \"nosuchif0\"\n\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"198.18.0.11\"\nweight = 0\n",
    )
    .unwrap();
    let out = Command::new(&lbd)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bad_name = bad.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{bad_name}:3: instance.interface: unknown interface \"nosuchif0\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{bad_name}:6: service[0].backend: every backend has weight 0"
        )),
        "{stderr}"
    );

    let good = dir.path.join("good.toml");
    std::fs::write(
        &good,
        std::fs::read_to_string(&bad)
            .unwrap()
            .replace("nosuchif0", "lo")
            .replace("weight = 0", "weight = 1"),
    )
    .unwrap();
    let out = Command::new(&lbd)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration valid (1 services)"));
}

#[test]
fn sigkill_detaches_and_a_restart_recovers_stale_pins() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&lab.config(2)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let pid = lab.lbd_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The XDP attachment is a bpf_link owned by the process: it goes with it.
    while xdp_attached(&lab) {
        assert!(
            std::time::Instant::now() < deadline,
            "program still attached after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pins = std::path::Path::new("/sys/fs/bpf").join(&lab.instance);
    assert!(pins.exists(), "SIGKILL leaves the pins behind");
    lab.stop_lbd();
    // A new lbd takes the lock, replaces the stale pins and forwards.
    lab.start_lbd(&lbd).unwrap();
    let answers = lab.tcp_names(24_000..24_050).unwrap();
    for (port, name) in &answers {
        assert_eq!(*name, predicted(*port, TCP_PORT, PROTO_TCP, 2));
    }
    assert!(lab.lbd_log().contains("re-adopting the pinned maps"));
    // SIGTERM keeps the data plane; `lbd stop` on the stopped instance
    // removes what it left, which detaches the program.
    assert!(lab.stop_lbd());
    assert!(pins.join("lb_link").exists());
    let stop = lbd_stop(&lbd, &lab);
    assert!(String::from_utf8_lossy(&stop.stdout)
        .contains("removed the data plane a previous lbd left"));
    assert!(!pins.exists());
    assert!(!xdp_attached(&lab));
}

#[test]
fn two_instances_on_one_host_do_not_collide() {
    let lbd = lbd_binary();
    let mut first = DsrLab::build(1).unwrap();
    let mut second = DsrLab::build(1).unwrap();
    for lab in [&mut first, &mut second] {
        lab.write_config(&lab.config(1)).unwrap();
        lab.start_lbd(&lbd).unwrap();
    }
    assert_ne!(first.instance, second.instance);
    let target = first.tcp_target();
    first
        .client
        .run_in(|| traffic::tcp_names(CLIENT_ADDR, 25_000..25_020, target))
        .unwrap()
        .unwrap();
    let a = first.status(&lbd).unwrap();
    let b = second.status(&lbd).unwrap();
    assert_eq!(service(&a, TCP_PORT).new_flows, 20);
    assert_eq!(
        service(&b, TCP_PORT).new_flows,
        0,
        "the other instance's maps are its own"
    );
    assert!(first.stop_lbd());
    // Stopping one leaves the other's pins and program in place.
    second.status(&lbd).unwrap();
    assert!(xdp_attached(&second));
    assert!(second.stop_lbd());
}

#[test]
fn a_daemon_restart_keeps_forwarding_and_keeps_connections() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(3).unwrap();
    lab.write_config(&lab.config(3)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let mut held = lab.hold_connections(30_000..30_040).unwrap();
    let flows_before = service(&lab.status(&lbd).unwrap(), TCP_PORT).new_flows;

    // SIGTERM: lbd exits, the program stays attached and keeps forwarding.
    assert!(lab.stop_lbd());
    assert!(xdp_attached(&lab));
    for connection in &mut held {
        assert_eq!(
            connection.ask().unwrap(),
            connection.first_backend,
            "no daemon, still forwarding"
        );
    }
    // A new lbd adopts maps and program: the same flows, the same backends,
    // and the counters go on from where they were.
    lab.start_lbd(&lbd).unwrap();
    assert!(
        lab.lbd_log().contains("re-adopting the pinned maps"),
        "{}",
        lab.lbd_log()
    );
    for connection in &mut held {
        assert_eq!(connection.ask().unwrap(), connection.first_backend);
    }
    let report = lab.status(&lbd).unwrap();
    assert_eq!(report.xdp_mode.as_deref(), Some("adopted"));
    assert!(
        service(&report, TCP_PORT).new_flows >= flows_before,
        "counters survived"
    );
    let fresh = lab.tcp_names(31_000..31_100).unwrap();
    for (port, name) in &fresh {
        assert_eq!(*name, predicted(*port, TCP_PORT, PROTO_TCP, 3));
    }
    // A changed layout is not adopted: a different table size re-creates.
    assert!(lab.stop_lbd());
    lab.write_config(
        &lab.config(3)
            .replace("maglev_table_size = 65537", "maglev_table_size = 251"),
    )
    .unwrap();
    lab.start_lbd(&lbd).unwrap();
    assert!(
        lab.lbd_log()
            .contains("do not fit this build or configuration"),
        "{}",
        lab.lbd_log()
    );
}

fn last_octet(address: std::net::IpAddr) -> u8 {
    match address {
        std::net::IpAddr::V4(v4) => v4.octets()[3],
        std::net::IpAddr::V6(v6) => v6.octets()[15],
    }
}
