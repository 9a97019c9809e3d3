//! Active-active scale-out over BGP (issue 15): lbd nodes announce the VIP
//! through gobgpd to a router running BIRD 2 with ECMP (merge paths, L4
//! multipath hash); a client subnet sits behind the router and three nginx
//! backends answer in DSR. The lab is `lb_tests::bgp_lab`.
//!
//! Run under the machine-wide lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test bgp_netns`.
use lb_tests::{
    bgp_lab::{
        self, add_ipv6, bgp_section, http_names, start_nginx, v6_of, web_packets, HttpConnection,
        Router, CLIENT, CLIENT6, ROUTER_ADDR, ROUTER_ADDR6, VIP6,
    },
    browser::http,
    lbd_status::{status_of, wait_until_ready},
    netns::{self, Netns},
    process::ChildGuard,
    topology::{lbd_binary, DsrLab, TCP_PORT, VIP},
};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const HOLD_TIME: u64 = 3;
/// Node 0's stats page and /metrics (inside its namespace).
const STATS: &str = "127.0.0.1:8404";
const POLL: Duration = Duration::from_millis(50);

fn hops(addrs: &[Ipv4Addr]) -> Vec<IpAddr> {
    addrs.iter().map(|a| IpAddr::V4(*a)).collect()
}

/// Waits until the router's next hops to the IPv4 VIP are `wanted`.
fn wait_for_hops(router: &Router, wanted: &[Ipv4Addr], timeout: Duration) -> Duration {
    router
        .try_wait_for_hops(IpAddr::V4(VIP), &hops(wanted), timeout, POLL)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Starts lbd on `node` (node 0 with the stats page) and waits until it
/// programmed its 3 backends.
fn start_node(lab: &mut DsrLab, lbd: &Path, node: usize) {
    let mut config =
        lab.config_for(node, 3) + &bgp_section(lab.lbs[node].addr, HOLD_TIME, 2.0, false);
    if node == 0 {
        config.push_str(&format!(
            "\n[stats]\nbind = \"{STATS}\"\nuri = \"/stats\"\n"
        ));
    }
    bgp_lab::start_node(lab, lbd, node, &config).unwrap_or_else(|e| panic!("{e:#}"));
}

fn target() -> SocketAddr {
    SocketAddr::from((VIP, TCP_PORT))
}

/// One short connection per source port from the client; all must work.
fn requests(router: &Router, ports: std::ops::Range<u16>) {
    let count = ports.len();
    let names = router
        .client
        .run_in(|| http_names(IpAddr::V4(CLIENT), ports, target()))
        .unwrap()
        .unwrap_or_else(|e| panic!("a request through the router failed: {e:#}"));
    assert_eq!(names.len(), count);
}

/// Which nodes' counters grew while `f` ran.
fn nodes_reached(lab: &DsrLab, lbd: &Path, nodes: &[usize], f: impl FnOnce()) -> Vec<usize> {
    let before: Vec<u64> = nodes.iter().map(|&n| web_packets(lab, lbd, n)).collect();
    f();
    nodes
        .iter()
        .zip(before)
        .filter(|(&n, b)| web_packets(lab, lbd, n) > *b)
        .map(|(&n, _)| n)
        .collect()
}

/// Every held connection still answers, from the backend it started on.
fn still_working(router: &Router, held: &mut [HttpConnection]) {
    router
        .client
        .run_in(|| {
            for connection in held.iter_mut() {
                let name = connection.ask().unwrap_or_else(|e| {
                    panic!(
                        "held connection from port {} broke: {e:#}",
                        connection.source_port
                    )
                });
                assert_eq!(
                    name, connection.first_backend,
                    "port {}",
                    connection.source_port
                );
            }
        })
        .unwrap();
}

/// Short requests in a loop on a thread of the client until stopped:
/// (requests, failures).
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Load {
    fn start(client: &Netns, first_port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let path = format!("/run/netns/{}", client.name());
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut failures = 0;
            let mut port = first_port;
            while !s.load(Ordering::SeqCst) && port < first_port + 3000 {
                if http_names(IpAddr::V4(CLIENT), [port], target()).is_err() {
                    failures += 1;
                }
                d.fetch_add(1, Ordering::SeqCst);
                port += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        });
        Load {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// (requests, failures)
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.thread.take().unwrap().join().unwrap();
        (self.done.load(Ordering::SeqCst), failures)
    }
}

/// Node 0's stats page and /metrics show its session with the router and
/// the announced VIP, as `lbd status` does (the stats thread samples the
/// state file: retried for a few seconds).
fn stats_show_bgp(lab: &DsrLab) {
    let address: SocketAddr = STATS.parse().unwrap();
    let get = |path: &str| {
        lab.lbs[0]
            .ns
            .run_in(|| http(address, "GET", path, &[], b""))
            .unwrap()
    };
    let peer = format!("peer=\"{ROUTER_ADDR}\"");
    let prefix = format!("lbd_bgp_announced{{prefix=\"{VIP}/32\"}} 1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get("/metrics").map(|r| r.body).unwrap_or_default();
        let page = get("/stats").map(|r| r.body).unwrap_or_default();
        let metrics_ok = metrics.lines().any(|l| l == "lbd_bgp_speaker_up 1")
            && metrics.lines().any(|l| {
                l.starts_with("lbd_bgp_session_established{")
                    && l.contains(&peer)
                    && l.ends_with(" 1")
            })
            && metrics.lines().any(|l| {
                l.starts_with("lbd_bgp_prefixes_sent{") && l.contains(&peer) && l.ends_with(" 1")
            })
            && metrics.lines().any(|l| l == prefix);
        let page_ok = page.contains(&format!("data-peer=\"{ROUTER_ADDR}\""))
            && page.contains("<td data-col=\"state\">established</td>")
            && page.contains(&format!("data-prefix=\"{VIP}/32\""));
        if metrics_ok && page_ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "BGP missing from the stats page or /metrics:\n{metrics}\n{page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn xdp_attached(ns: &Netns) -> bool {
    ns.ip(&["link", "show", "dev", "eth0"])
        .is_ok_and(|out| out.contains("xdp"))
}

fn lbd_command(lbd: &Path, args: &[&str]) -> String {
    netns::run(Command::new(lbd).args(args)).unwrap()
}

#[test]
fn ecmp_over_bgp_spreads_flows_and_survives_node_changes() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(4, 3).unwrap();
    // Dropped before the lab: nginx, then the router.
    let addrs: Vec<Ipv4Addr> = lab.lbs.iter().map(|n| n.addr).collect();
    let router = Router::build(&lab, &addrs, HOLD_TIME, false).unwrap();
    let nginx = start_nginx(&mut lab, false, 1, true).unwrap();
    for node in 0..3 {
        start_node(&mut lab, &lbd, node);
    }
    wait_for_hops(&router, &addrs[..3], Duration::from_secs(30));
    assert!(
        xdp_attached(&lab.lbs[1].ns),
        "{:?}",
        lab.lbs[1].ns.ip(&["link", "show", "dev", "eth0"])
    );

    // lbd status shows the session and the announced prefix (the state
    // file follows within a tick).
    let instance = lab.lbs[0].instance.clone();
    let established = wait_until_ready(&lbd, &instance, Duration::from_secs(5), None, |r| {
        r.bgp.as_ref().is_some_and(|b| {
            b.peers
                .first()
                .is_some_and(|p| p.state == "established" && p.sent == 1)
        })
    });
    assert!(
        established.is_ok(),
        "lbd status shows no established session"
    );
    let report = status_of(&lbd, &instance).unwrap();
    let bgp = report.bgp.expect("a bgp part in lbd status");
    assert_eq!(bgp.peers.len(), 1, "{bgp:?}");
    assert_eq!(bgp.peers[0].state, "established", "{bgp:?}");
    assert_eq!(bgp.peers[0].sent, 1, "{bgp:?}");
    assert_eq!(bgp.announced[0].prefix, format!("{VIP}/32"));
    let table = lbd_command(&lbd, &["status", "--instance", &lab.lbs[0].instance]);
    assert!(
        table.contains(&format!("peer {ROUTER_ADDR} AS 65000: established")),
        "{table}"
    );

    // The stats page and /metrics carry the same session and prefix.
    stats_show_bgp(&lab);

    // Many client ports reach all three nodes, and each node forwards to
    // all three nginx backends, which see the client's own address (DSR).
    let reached = nodes_reached(&lab, &lbd, &[0, 1, 2], || requests(&router, 20000..20300));
    assert_eq!(reached, [0, 1, 2], "flows spread over every node");
    for node in 0..3 {
        let report = status_of(&lbd, &lab.lbs[node].instance).unwrap();
        let web = report.services.iter().find(|s| s.port == TCP_PORT).unwrap();
        let fed: Vec<_> = web.backends.iter().filter(|b| b.packets > 0).collect();
        assert_eq!(fed.len(), 3, "node {node} feeds every backend: {web:?}");
    }
    for server in &nginx {
        let entries = server.wait_for_requests(1, Duration::from_secs(5)).unwrap();
        assert!(
            entries
                .iter()
                .all(|e| e.remote_addr == IpAddr::V4(CLIENT) && e.status == 200),
            "nginx {} saw: {entries:?}",
            server.name()
        );
    }

    // 50 established connections, some through node 0.
    let mut held = Vec::new();
    let reached = nodes_reached(&lab, &lbd, &[0, 1, 2], || {
        held = router
            .client
            .run_in(|| {
                (30000..30050)
                    .map(|p| HttpConnection::open(IpAddr::V4(CLIENT), p, target()))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .unwrap()
            .unwrap();
    });
    assert!(
        reached.contains(&0),
        "some held connections use node 0: {reached:?}"
    );

    // kill -9 on node 0: gobgpd dies with lbd, the router withdraws.
    lab.kill_lbd_of(0);
    let withdrawn = wait_for_hops(&router, &addrs[1..3], Duration::from_secs(HOLD_TIME + 2));
    eprintln!("kill -9 to withdrawal at the router: {withdrawn:?}");
    still_working(&router, &mut held);
    let reached = nodes_reached(&lab, &lbd, &[1, 2], || requests(&router, 21000..21200));
    assert_eq!(reached, [1, 2], "new flows spread over the remaining two");

    // A fourth node joins: nothing established breaks, it gets flows.
    start_node(&mut lab, &lbd, 3);
    wait_for_hops(
        &router,
        &[addrs[1], addrs[2], addrs[3]],
        Duration::from_secs(30),
    );
    still_working(&router, &mut held);
    let reached = nodes_reached(&lab, &lbd, &[1, 2, 3], || requests(&router, 22000..22300));
    assert_eq!(reached, [1, 2, 3]);

    // Some held connections go through node 1 now.
    let reached = nodes_reached(&lab, &lbd, &[1, 2, 3], || still_working(&router, &mut held));
    assert!(
        reached.contains(&1),
        "some held connections use node 1: {reached:?}"
    );

    // lbd stop on node 1: withdrawn while its program still forwards,
    // detached only after the drain time; no request fails meanwhile.
    let load = Load::start(&router.client, 40000);
    std::thread::sleep(Duration::from_millis(300));
    // `lbd stop` returns once the daemon is gone: run it beside us.
    let mut stop = ChildGuard::spawn(
        {
            let mut c = Command::new(&lbd);
            c.args(["stop", "--instance", &lab.lbs[1].instance]);
            c
        },
        "lbd stop",
    )
    .unwrap();
    let withdrawn = wait_for_hops(&router, &[addrs[2], addrs[3]], Duration::from_secs(5));
    eprintln!("lbd stop to withdrawal at the router: {withdrawn:?}");
    assert!(
        xdp_attached(&lab.lbs[1].ns),
        "node 1 withdrew before detaching its program: {:?}",
        lab.lbs[1].ns.ip(&["link", "show", "dev", "eth0"])
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while xdp_attached(&lab.lbs[1].ns) {
        assert!(Instant::now() < deadline, "node 1 never detached");
        std::thread::sleep(Duration::from_millis(50));
    }
    while stop.try_wait().is_none() {
        assert!(Instant::now() < deadline, "lbd stop did not return");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (done, failed) = load.finish();
    assert!(done > 20, "the load ran ({done} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {done} requests failed during lbd stop"
    );
    still_working(&router, &mut held);
    let reached = nodes_reached(&lab, &lbd, &[2, 3], || requests(&router, 23000..23200));
    assert_eq!(reached, [2, 3], "new flows spread over the remaining two");

    // gobgpd dies on node 2: lbd starts it again and announces again.
    let before = status_of(&lbd, &lab.lbs[2].instance).unwrap().bgp.unwrap();
    let pid = before.speaker_pid.expect("gobgpd runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for_hops(&router, &[addrs[3]], Duration::from_secs(HOLD_TIME + 2));
    wait_for_hops(&router, &[addrs[2], addrs[3]], Duration::from_secs(30));
    // lbd status shows the new gobgpd (the state file follows within a tick).
    let instance = lab.lbs[2].instance.clone();
    let restarted = wait_until_ready(&lbd, &instance, Duration::from_secs(5), None, |r| {
        r.bgp.as_ref().is_some_and(|b| {
            b.speaker_starts == before.speaker_starts + 1
                && b.speaker_pid.is_some_and(|p| p != pid)
                && b.peers.first().is_some_and(|p| p.state == "established")
        })
    });
    assert!(
        restarted.is_ok(),
        "lbd status does not show gobgpd restarted"
    );
    still_working(&router, &mut held);

    // Every backend drained on the remaining nodes: nothing can take new
    // flows, every node withdraws.
    for node in [2, 3] {
        let instance = lab.lbs[node].instance.clone();
        for service in ["web", "dns"] {
            for backend in &lab.backends {
                lbd_command(
                    &lbd,
                    &[
                        "backend",
                        "--instance",
                        &instance,
                        service,
                        &backend.addr.to_string(),
                        "drain",
                    ],
                );
            }
        }
    }
    wait_for_hops(&router, &[], Duration::from_secs(5));
    // lbd status says so too (the state file follows within a tick).
    let instance = lab.lbs[2].instance.clone();
    let shown = wait_until_ready(&lbd, &instance, Duration::from_secs(5), None, |r| {
        r.bgp.as_ref().is_some_and(|b| b.announced.is_empty())
    });
    assert!(shown.is_ok(), "lbd status still shows announcements");
}

/// `announce = "always"` with VRRP: the backup announces too, with the
/// worse MED, so the router uses only the master's path; when the master
/// stops, the new master's path (now with the better MED) takes over.
#[test]
fn always_policy_announces_the_backup_with_a_worse_med() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 3).unwrap();
    let addrs: Vec<Ipv4Addr> = lab.lbs.iter().map(|n| n.addr).collect();
    let router = Router::build(&lab, &addrs, HOLD_TIME, false).unwrap();
    let _nginx = start_nginx(&mut lab, false, 1, false).unwrap();
    for (node, priority) in [(0, 200), (1, 100)] {
        let config = lab.config_for(node, 3)
            + &format!(
                "\n[[vrrp]]\nname = \"VI_1\"\nversion = 3\nvrid = 51\npriority = {priority}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}\"]\n"
            )
            + &bgp_section(addrs[node], HOLD_TIME, 2.0, false)
            + "[[bgp.vip]]\naddress = \"198.18.0.100\"\nannounce = \"always\"\nmed = 10\n";
        lab.write_config_of(node, &config).unwrap();
        lab.spawn_lbd(node, &lbd).unwrap();
        // Node 0 is master before node 1 starts.
        std::thread::sleep(Duration::from_secs(1));
    }
    let instances: Vec<String> = lab.lbs.iter().map(|n| n.instance.clone()).collect();
    let meds = |node: usize| -> Vec<Option<u32>> {
        status_of(&lbd, &instances[node])
            .ok()
            .and_then(|r| r.bgp)
            .map(|b| b.announced.iter().map(|a| a.med).collect())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(meds(0) == [Some(10)] && meds(1) == [Some(110)]) {
        assert!(
            Instant::now() < deadline,
            "master med 10, backup med 110; got {:?} and {:?}",
            meds(0),
            meds(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both announce; the router keeps only the better (master's) path.
    wait_for_hops(&router, &addrs[..1], Duration::from_secs(20));
    requests(&router, 20000..20050);

    // The master stops: the backup takes over and announces med 10.
    assert!(lab.stop_lbd_of(0));
    wait_for_hops(&router, &addrs[1..2], Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while meds(1) != [Some(10)] {
        assert!(Instant::now() < deadline, "new master: {:?}", meds(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    requests(&router, 21000..21050);
}

/// The IPv6 service config of node `node`: the web service on VIP6 in DSR
/// to the three backends' IPv6 addresses.
fn ipv6_config(lab: &DsrLab, node: usize) -> String {
    let mut text = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\nmaglev_table_size = 65537\nmax_services = 4\nmax_backends = 64\nconntrack_entries = 65536\n\n[[service]]\nname = \"web6\"\nvip = \"{VIP6}\"\nport = {TCP_PORT}\nprotocol = \"tcp\"\nmode = \"dsr\"\n",
        lab.lbs[node].instance
    );
    for backend in &lab.backends {
        text.push_str(&format!(
            "[[service.backend]]\naddress = \"{}\"\nweight = 1\n",
            v6_of(backend.addr)
        ));
    }
    text + &bgp_section(lab.lbs[node].addr, HOLD_TIME, 1.0, true)
}

/// An IPv6 VIP: every node announces VIP6/128 over its IPv6 session, the
/// router installs one ECMP route (L4 hash) over the nodes, flows from
/// many client ports reach both and all three nginx backends; `kill -9`
/// and `lbd stop` each withdraw their node's path, held connections keep
/// working through the other node, and the last stop removes the route.
#[test]
fn ipv6_vip_is_announced_spread_and_withdrawn() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 3).unwrap();
    add_ipv6(&lab).unwrap();
    let addrs: Vec<Ipv4Addr> = lab.lbs.iter().map(|n| n.addr).collect();
    let router = Router::build(&lab, &addrs, HOLD_TIME, true).unwrap();
    let nginx = start_nginx(&mut lab, true, 1, true).unwrap();
    let vip = IpAddr::V6(VIP6);
    let v6_hops = |nodes: &[usize]| -> Vec<IpAddr> {
        nodes.iter().map(|&n| IpAddr::V6(v6_of(addrs[n]))).collect()
    };
    for node in 0..2 {
        let config = ipv6_config(&lab, node);
        bgp_lab::start_node(&mut lab, &lbd, node, &config).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let wait = |nodes: &[usize], timeout: Duration| -> Duration {
        router
            .try_wait_for_hops(vip, &v6_hops(nodes), timeout, POLL)
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    wait(&[0, 1], Duration::from_secs(30));
    // lbd status: a /128 only, sent over the IPv6 session only (the
    // state file follows within a tick); nothing IPv4 is routed.
    let instance = lab.lbs[0].instance.clone();
    let shown = |b: &lbd::bgp::BgpStatus| {
        let peer = |address: String| {
            b.peers
                .iter()
                .find(|p| p.address == address)
                .map(|p| (p.state.clone(), p.sent))
        };
        b.announced.len() == 1
            && b.announced[0].prefix == format!("{VIP6}/128")
            && peer(ROUTER_ADDR6.to_string()) == Some(("established".into(), 1))
            && peer(ROUTER_ADDR.to_string()) == Some(("established".into(), 0))
    };
    let ready = wait_until_ready(&lbd, &instance, Duration::from_secs(10), None, |r| {
        r.bgp.as_ref().is_some_and(shown)
    });
    assert!(
        ready.is_ok(),
        "lbd status: {:?}",
        status_of(&lbd, &instance).map(|r| r.bgp)
    );
    assert!(router.next_hops(IpAddr::V4(VIP)).is_empty());
    let route = router
        .ns
        .ip(&["-6", "route", "show", &format!("{VIP6}/128")])
        .unwrap();
    assert!(route.contains("proto bird"), "{route}");

    let target = SocketAddr::from((VIP6, TCP_PORT));
    let client = IpAddr::V6(CLIENT6);
    let names = |ports: std::ops::Range<u16>| -> Vec<String> {
        router
            .client
            .run_in(|| http_names(client, ports, target))
            .unwrap()
            .unwrap_or_else(|e| panic!("an IPv6 request through the router failed: {e:#}"))
    };
    // Many client ports reach both nodes and every backend.
    let reached = nodes_reached(&lab, &lbd, &[0, 1], || {
        let mut seen = names(20000..20200);
        seen.sort();
        seen.dedup();
        assert_eq!(seen, ["b1", "b2", "b3"], "every nginx backend answers");
    });
    assert_eq!(reached, [0, 1], "IPv6 flows spread over both nodes");
    for server in &nginx {
        let entries = server.wait_for_requests(1, Duration::from_secs(5)).unwrap();
        assert!(
            entries.iter().all(|e| e.remote_addr == client),
            "{entries:?}"
        );
    }

    // Held connections, then node 0 killed: its path goes within the hold
    // time, the held connections go on through node 1.
    let mut held = router
        .client
        .run_in(|| {
            (30000..30030)
                .map(|p| HttpConnection::open(client, p, target))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .unwrap()
        .unwrap();
    lab.kill_lbd_of(0);
    let withdrawn = wait(&[1], Duration::from_secs(HOLD_TIME + 2));
    eprintln!("IPv6: kill -9 to withdrawal at the router: {withdrawn:?}");
    still_working(&router, &mut held);
    names(21000..21050);

    // lbd stop on the last node: the /128 is withdrawn while its program
    // still forwards, and the route is gone.
    let mut stop = ChildGuard::spawn(
        {
            let mut c = Command::new(&lbd);
            c.args(["stop", "--instance", &lab.lbs[1].instance]);
            c
        },
        "lbd stop",
    )
    .unwrap();
    wait(&[], Duration::from_secs(5));
    assert!(
        xdp_attached(&lab.lbs[1].ns),
        "node 1 withdrew before detaching its program"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while stop.try_wait().is_none() {
        assert!(Instant::now() < deadline, "lbd stop did not return");
        std::thread::sleep(POLL);
    }
}
