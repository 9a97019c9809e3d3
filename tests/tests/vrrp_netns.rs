//! VRRP end to end: two load-balancer nodes (or one lbd and one
//! keepalived) on a bridge with a client and backends, in namespaces.
//! Needs root.
use lb_tests::{
    ha::{holds_vip, time_to_service, vrrp_state, wait_state},
    process::ChildGuard,
    topology::{lbd_binary, DsrLab, VIP},
};
use lbd::vrrp::State;
use std::{
    path::Path,
    time::{Duration, Instant},
};

/// A `[[vrrp]]` section: VRRPv3, 100 ms adverts.
fn vrrp_section(priority: u8, extra: &str) -> String {
    format!(
        "\n[[vrrp]]\nname = \"VI_1\"\nversion = 3\nvrid = 51\npriority = {priority}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}\"]\ngarp_master_delay = 1\n{extra}\n"
    )
}

fn configure(lab: &DsrLab, node: usize, vrrp: &str) {
    let text = format!("{}{vrrp}", lab.config_for(node, lab.backends.len()));
    lab.write_config_of(node, &text).unwrap();
}

/// Starts lbd on node 0 and waits until it is master, then node 1 as
/// backup. Starting them one after the other keeps the first election
/// deterministic: their start-up times differ by more than their skew.
fn start_master_then_backup(lab: &mut DsrLab, lbd: &Path) {
    lab.spawn_lbd(0, lbd).unwrap();
    wait_state(lab, 0, lbd, State::Master, Duration::from_secs(10));
    lab.spawn_lbd(1, lbd).unwrap();
    wait_state(lab, 1, lbd, State::Backup, Duration::from_secs(10));
}

/// Master-down interval for 100 ms adverts and priority 100:
/// 3 × 100 ms + (256 − 100) × 100 ms / 256.
const MASTER_DOWN_100: Duration = Duration::from_micros(360_937);

#[test]
fn kill_9_of_the_master_fails_over_within_master_down_plus_200ms_and_preemption_returns_it() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 2).unwrap();
    configure(&lab, 0, &vrrp_section(200, ""));
    configure(&lab, 1, &vrrp_section(100, ""));
    start_master_then_backup(&mut lab, &lbd);
    assert!(holds_vip(&lab, 0) && !holds_vip(&lab, 1));
    time_to_service(&lab, Duration::from_secs(5));

    lab.kill_lbd_of(0);
    let took = time_to_service(&lab, Duration::from_secs(5));
    assert!(
        took <= MASTER_DOWN_100 + Duration::from_millis(200),
        "failover took {took:?}; log of node 1:\n{}",
        lab.lbd_log_of(1)
    );
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(1));
    assert!(holds_vip(&lab, 1));

    // The old master comes back: it removes the VIP its crash left, starts
    // as backup, then preempts (priority 200 > 100).
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(10));
    wait_state(&lab, 1, &lbd, State::Backup, Duration::from_secs(5));
    assert!(holds_vip(&lab, 0));
    assert!(!holds_vip(&lab, 1), "the backup gave the VIP up");
    time_to_service(&lab, Duration::from_secs(5));
    let report = lab.status_of(1, &lbd).unwrap();
    let v = &report.vrrp[0];
    assert!(v.counters.adverts_received > 0 && v.counters.adverts_sent > 0);
    assert!(
        v.last_transition.contains("higher-priority master"),
        "{}",
        v.last_transition
    );
}

#[test]
fn nopreempt_keeps_the_new_master() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    configure(&lab, 0, &vrrp_section(200, "nopreempt = true"));
    configure(&lab, 1, &vrrp_section(100, ""));
    // With nopreempt whoever is master first stays master: node 0 is.
    start_master_then_backup(&mut lab, &lbd);
    assert!(
        lab.stop_lbd_of(0),
        "clean stop: priority 0 advert, VIP removed"
    );
    assert!(!holds_vip(&lab, 0));
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(2));
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Backup, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        vrrp_state(&lab, 0, &lbd),
        Some(State::Backup),
        "did not preempt"
    );
    assert_eq!(vrrp_state(&lab, 1, &lbd), Some(State::Master));
}

#[test]
fn a_failing_tracked_script_moves_the_master_and_notify_reports_it() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    let dir = lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("trk")).unwrap();
    let flag = dir.path.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let notify_log = dir.path.join("notify.log");
    let notify = dir.path.join("notify.sh");
    std::fs::write(
        &notify,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", notify_log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = format!(
        "\n[[vrrp_script]]\nname = \"chk\"\nscript = \"test -e {}\"\ninterval = 0.1\nfall = 2\nrise = 2\n",
        flag.display()
    );
    let tracked = format!(
        "track_script = [{{ name = \"chk\", weight = -150 }}]\nnotify = \"{}\"",
        notify.display()
    );
    configure(&lab, 0, &format!("{script}{}", vrrp_section(200, &tracked)));
    configure(&lab, 1, &vrrp_section(100, ""));
    start_master_then_backup(&mut lab, &lbd);

    std::fs::remove_file(&flag).unwrap();
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(5));
    wait_state(&lab, 0, &lbd, State::Backup, Duration::from_secs(2));
    let report = lab.status_of(0, &lbd).unwrap();
    assert_eq!(report.vrrp[0].effective_priority, 50, "200 - 150");
    time_to_service(&lab, Duration::from_secs(5));

    std::fs::write(&flag, "").unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(5));
    assert!(lab.stop_lbd_of(0));
    let log = std::fs::read_to_string(&notify_log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "INSTANCE VI_1 BACKUP 200",
            "INSTANCE VI_1 MASTER 200",
            "INSTANCE VI_1 BACKUP 50",
            "INSTANCE VI_1 MASTER 200",
            "INSTANCE VI_1 STOP 200",
        ],
        "notify hooks in order of transitions"
    );
}

#[test]
fn link_down_on_the_master_moves_it() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    configure(
        &lab,
        0,
        &vrrp_section(200, "track_interface = [{ name = \"eth0\" }]"),
    );
    configure(&lab, 1, &vrrp_section(100, ""));
    start_master_then_backup(&mut lab, &lbd);
    lab.switch.ip(&["link", "set", "p-lb0", "down"]).unwrap();
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(3));
    wait_state(&lab, 0, &lbd, State::Fault, Duration::from_secs(3));
    assert!(!holds_vip(&lab, 0), "a node in FAULT gives the VIP up");
    time_to_service(&lab, Duration::from_secs(5));
    lab.switch.ip(&["link", "set", "p-lb0", "up"]).unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(5));
    wait_state(&lab, 1, &lbd, State::Backup, Duration::from_secs(3));
}

#[test]
fn an_established_dsr_connection_survives_a_failover() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 3).unwrap();
    configure(&lab, 0, &vrrp_section(200, ""));
    configure(&lab, 1, &vrrp_section(100, ""));
    start_master_then_backup(&mut lab, &lbd);
    let mut held = lab.hold_connections(26_000..26_030).unwrap();
    lab.kill_lbd_of(0);
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(3));
    // Node 1 has no connection-table entry for these flows; its Maglev
    // table is identical (same configuration), so it picks the same
    // backend and the connections carry on.
    for connection in &mut held {
        assert_eq!(connection.ask().unwrap(), connection.first_backend);
    }
    let report = lab.status_of(1, &lbd).unwrap();
    let web = report.services.iter().find(|s| s.port == 80).unwrap();
    assert!(
        web.new_flows >= 30,
        "node 1 placed the flows anew: {}",
        web.new_flows
    );
}

/// keepalived 2.2.7 in `node`'s namespace, configured with `body`.
fn start_keepalived(lab: &DsrLab, node: usize, body: &str, dir: &Path) -> ChildGuard {
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, body).unwrap();
    lb_tests::ha::start_keepalived(lab, node, &conf, dir).unwrap()
}

fn keepalived_instance(version: u8, priority: u8, vip: &str) -> String {
    let auth = if version == 2 {
        "  authentication {\n    auth_type PASS\n    auth_pass 1111\n  }\n"
    } else {
        ""
    };
    format!(
        "global_defs {{\n  router_id ka\n  vrrp_version {version}\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 1\n{auth}  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
    )
}

fn lbd_instance(version: u8, priority: u8, vip: &str) -> String {
    let auth = if version == 2 {
        "auth_pass = \"1111\""
    } else {
        ""
    };
    format!(
        "\n[[vrrp]]\nname = \"VI_1\"\nversion = {version}\nvrid = 51\npriority = {priority}\nadvert_int = 1\nvirtual_ipaddress = [\"{vip}\"]\n{auth}\n"
    )
}

/// Does `node` hold `vip` (as /32 or /128)?
fn holds(lab: &DsrLab, node: usize, vip: &str) -> bool {
    let family = if vip.contains(':') { "-6" } else { "-4" };
    let prefix = if vip.contains(':') { 128 } else { 32 };
    lab.lbs[node]
        .ns
        .ip(&[family, "addr", "show", "dev", "eth0"])
        .unwrap()
        .contains(&format!("{vip}/{prefix}"))
}

fn interop(version: u8, vip: &str) {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    let ipv4 = !vip.contains(':');
    if !ipv4 {
        for node in 0..2 {
            lab.lbs[node].ns.enable_ipv6().unwrap();
        }
    }
    let holds_vip = |lab: &DsrLab, node: usize| holds(lab, node, vip);
    let time_to_service = |lab: &DsrLab, limit: Duration| {
        if ipv4 {
            time_to_service(lab, limit);
        }
    };
    let dir = lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("ka")).unwrap();

    // lbd wins by priority; keepalived is backup.
    configure(&lab, 0, &lbd_instance(version, 200, vip));
    let mut keepalived =
        start_keepalived(&lab, 1, &keepalived_instance(version, 100, vip), &dir.path);
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert!(holds_vip(&lab, 0) && !holds_vip(&lab, 1), "one master: lbd");
    let report = lab.status_of(0, &lbd).unwrap();
    assert!(
        report.vrrp[0].counters.rejected.is_empty(),
        "{:?}",
        report.vrrp[0].counters
    );

    // lbd stops: keepalived takes over (priority 0 advert) and serves.
    assert!(lab.stop_lbd_of(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !holds_vip(&lab, 1) {
        assert!(Instant::now() < deadline, "keepalived did not take the VIP");
        std::thread::sleep(Duration::from_millis(20));
    }
    // lbd comes back with the higher priority: keepalived yields.
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while holds_vip(&lab, 1) {
        assert!(Instant::now() < deadline, "keepalived kept the VIP");
        std::thread::sleep(Duration::from_millis(20));
    }
    time_to_service(&lab, Duration::from_secs(5));
    assert!(lab.stop_lbd_of(0));
    drop(keepalived);

    // keepalived wins by priority; lbd is backup, then takes over.
    configure(&lab, 0, &lbd_instance(version, 100, vip));
    keepalived = start_keepalived(&lab, 1, &keepalived_instance(version, 200, vip), &dir.path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holds_vip(&lab, 1) {
        assert!(
            Instant::now() < deadline,
            "keepalived did not become master"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Backup, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        vrrp_state(&lab, 0, &lbd),
        Some(State::Backup),
        "lbd respects the higher keepalived"
    );
    let report = lab.status_of(0, &lbd).unwrap();
    if ipv4 {
        assert_eq!(report.vrrp[0].master, Some(lab.lbs[1].addr.into()));
    } else {
        assert!(matches!(
            report.vrrp[0].master,
            Some(std::net::IpAddr::V6(_))
        ));
    }
    assert!(report.vrrp[0].counters.adverts_received >= 3);
    keepalived.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(5));
    assert!(holds_vip(&lab, 0));
    time_to_service(&lab, Duration::from_secs(5));
}

#[test]
fn interop_with_keepalived_vrrpv2_pass() {
    interop(2, "198.18.0.100");
}

#[test]
fn interop_with_keepalived_vrrpv3() {
    interop(3, "198.18.0.100");
}

#[test]
fn interop_with_keepalived_vrrpv3_over_ipv6() {
    interop(3, "fd00::100");
}

#[test]
fn tracked_file_and_process_weights_move_the_master() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    let dir = lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("tf")).unwrap();
    let file = dir.path.join("vrrp-weight");
    std::fs::write(&file, "0\n").unwrap();
    // A process with a name no other test uses: a copy of sleep.
    let name = format!("lbtp{}", std::process::id() % 100_000);
    let program = dir.path.join(&name);
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut process = ChildGuard::spawn(
        {
            let mut c = std::process::Command::new(&program);
            c.arg("600");
            c
        },
        "tracked process",
    )
    .unwrap();
    let tracked = format!(
        "track_file = [{{ path = \"{}\", weight = -10 }}]\ntrack_process = [{{ name = \"{name}\", weight = -150 }}]",
        file.display()
    );
    configure(&lab, 0, &vrrp_section(200, &tracked));
    configure(&lab, 1, &vrrp_section(100, ""));
    start_master_then_backup(&mut lab, &lbd);

    // File value 12 × weight -10 = -120: priority 80 < 100.
    std::fs::write(&file, "12\n").unwrap();
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(5));
    assert_eq!(
        lab.status_of(0, &lbd).unwrap().vrrp[0].effective_priority,
        80
    );
    std::fs::write(&file, "0\n").unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(5));

    // The tracked process dies: 200 - 150 = 50 < 100.
    process.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(5));
    assert_eq!(
        lab.status_of(0, &lbd).unwrap().vrrp[0].effective_priority,
        50
    );
}

#[test]
fn unicast_peers_elect_without_multicast() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    let peer_of = |node: usize| lab.lbs[1 - node].addr;
    let unicast0 = format!("unicast_peer = [\"{}\"]", peer_of(0));
    let unicast1 = format!("unicast_peer = [\"{}\"]", peer_of(1));
    configure(&lab, 0, &vrrp_section(200, &unicast0));
    configure(&lab, 1, &vrrp_section(100, &unicast1));
    // Count multicast VRRP on the client's link: there must be none.
    let multicast = lb_tests::nft::NftCounters::install(
        &lab.client,
        "prerouting",
        &["ip daddr 224.0.0.18".to_owned()],
    )
    .unwrap();
    start_master_then_backup(&mut lab, &lbd);
    std::thread::sleep(Duration::from_secs(1));
    let report = lab.status_of(1, &lbd).unwrap();
    assert!(
        report.vrrp[0].counters.adverts_received >= 5,
        "{:?}",
        report.vrrp[0].counters
    );
    assert_eq!(
        multicast.read().unwrap()[0].0,
        0,
        "no advert went to 224.0.0.18"
    );
    lab.kill_lbd_of(0);
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(3));
    time_to_service(&lab, Duration::from_secs(5));
}

#[test]
fn vrrpv3_over_ipv6_moves_the_vip_and_updates_neighbours() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    for node in 0..2 {
        lab.lbs[node].ns.enable_ipv6().unwrap();
    }
    lab.client.enable_ipv6().unwrap();
    lab.client
        .ip(&["-6", "addr", "add", "fd00::2/64", "dev", "eth0"])
        .unwrap();
    let section = |priority: u8| {
        format!(
            "\n[[vrrp]]\nname = \"VI_6\"\nversion = 3\nvrid = 52\npriority = {priority}\nadvert_int = 0.1\nvirtual_ipaddress = [\"fd00::100\"]\n"
        )
    };
    configure(&lab, 0, &section(200));
    configure(&lab, 1, &section(100));
    start_master_then_backup(&mut lab, &lbd);
    assert!(has_vip6(&lab, 0) && !has_vip6(&lab, 1));
    // The backup learns the master's link-local source (status refreshes
    // every second).
    let deadline = Instant::now() + Duration::from_secs(3);
    let master = loop {
        if let Some(master) = lab.status_of(1, &lbd).unwrap().vrrp[0].master {
            break master;
        }
        assert!(Instant::now() < deadline, "the backup never named a master");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        matches!(master, std::net::IpAddr::V6(a) if a.segments()[0] == 0xfe80),
        "{master}"
    );

    // The client resolves the VIP (neighbour discovery) to node 0 ...
    resolve_vip6(&lab);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !neighbour6(&lab).contains(&mac_of(&lab, 0)) {
        assert!(
            Instant::now() < deadline,
            "client never resolved the VIP: {}",
            neighbour6(&lab)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and node 1's unsolicited NA moves it there after the failover.
    lab.kill_lbd_of(0);
    wait_state(&lab, 1, &lbd, State::Master, Duration::from_secs(3));
    assert!(has_vip6(&lab, 1));
    let deadline = Instant::now() + Duration::from_secs(3);
    while !neighbour6(&lab).contains(&mac_of(&lab, 1)) {
        assert!(
            Instant::now() < deadline,
            "the NA did not update the client: {}",
            neighbour6(&lab)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_vip6(lab: &DsrLab, node: usize) -> bool {
    lab.lbs[node]
        .ns
        .ip(&["-6", "addr", "show", "dev", "eth0"])
        .unwrap()
        .contains("fd00::100/128")
}

fn mac_of(lab: &DsrLab, node: usize) -> String {
    let link = lab.lbs[node].ns.ip(&["link", "show", "eth0"]).unwrap();
    link.split("link/ether ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Makes the client resolve fd00::100 (one datagram triggers ND).
fn resolve_vip6(lab: &DsrLab) {
    lab.client
        .run_in(|| {
            let socket = std::net::UdpSocket::bind("[fd00::2]:0").unwrap();
            let _ = socket.send_to(b"x", "[fd00::100]:9");
        })
        .unwrap();
}

fn neighbour6(lab: &DsrLab) -> String {
    lab.client
        .ip(&["-6", "neigh", "show", "fd00::100"])
        .unwrap()
}
