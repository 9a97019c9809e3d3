//! Active-active scale-out over BGP (issue 15): lbd nodes announce the VIP
//! through gobgpd to a router running BIRD 2 with ECMP (merge paths, L4
//! multipath hash); a client subnet sits behind the router.
//!
//! ```text
//!   client 198.19.0.2 ── router (BIRD 2, AS 65000) 198.19.0.1 | 198.18.0.254
//!                                   │ br0 (switch ns)
//!   lb0..lb3 198.18.0.1,.3,.4,.5 (lbd + gobgpd, AS 65001) ─┤
//!   b1..b3 198.18.0.11-13 (VIP on lo, DSR replies via the router)
//! ```
//!
//! Run under the machine-wide lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test bgp_netns`.
use lb_tests::{
    lbd_status::{status_of, wait_until_ready},
    netns::{self, Netns},
    process::ChildGuard,
    topology::{lbd_binary, DsrLab, TempDir, TCP_PORT, VIP},
    traffic::{self, HeldConnection},
};
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const HOLD_TIME: u64 = 3;

struct Router {
    // Drop order: BIRD, then the namespaces.
    bird: Option<ChildGuard>,
    dir: TempDir,
    client: Netns,
    ns: Netns,
}

impl Router {
    /// The router namespace on the lab's bridge, the client behind it,
    /// and BIRD peering with `nodes` load balancers.
    fn build(lab: &DsrLab, nodes: &[Ipv4Addr]) -> anyhow::Result<Self> {
        let ns = Netns::create("rt")?;
        let client = Netns::create("cl2")?;
        lab.plug(&ns, "p-rt", ROUTER_ADDR)?;
        ns.ip(&[
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            client.name(),
        ])?;
        ns.ip(&["addr", "add", "198.19.0.1/24", "dev", "eth1"])?;
        ns.ip(&["link", "set", "eth1", "up"])?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        client.ip(&["link", "set", "eth0", "up"])?;
        client.ip(&["route", "add", "default", "via", "198.19.0.1"])?;
        // Full checksums: XDP on the path loses CHECKSUM_PARTIAL.
        ns.exec("ethtool", &["-K", "eth1", "tx", "off"])?;
        client.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        // DSR: the backends answer the client through the router.
        for backend in &lab.backends {
            backend.ns.ip(&[
                "route",
                "add",
                "198.19.0.0/24",
                "via",
                &ROUTER_ADDR.to_string(),
            ])?;
        }
        let dir = TempDir::create(&netns::unique_name("bird"))?;
        let mut conf = format!(
            "router id {ROUTER_ADDR};\nlog \"{}/bird.log\" all;\nprotocol device {{ scan time 1; }}\n\
             protocol kernel {{ scan time 1; merge paths on; ipv4 {{ import none; export all; }}; }}\n\
             template bgp lbd {{ local {ROUTER_ADDR} as 65000; hold time {HOLD_TIME}; keepalive time 1;\n\
             connect delay time 1; connect retry time 1; error wait time 1, 2;\n\
             ipv4 {{ import all; export none; }}; }}\n",
            dir.path.display()
        );
        for (i, node) in nodes.iter().enumerate() {
            conf.push_str(&format!(
                "protocol bgp lb{i} from lbd {{ neighbor {node} as 65001; }}\n"
            ));
        }
        std::fs::write(dir.path.join("bird.conf"), conf)?;
        let conf_path = dir.path.join("bird.conf");
        let socket = dir.path.join("bird.ctl");
        let command = ns.command(
            "bird",
            &[
                "-f",
                "-c",
                &conf_path.to_string_lossy(),
                "-s",
                &socket.to_string_lossy(),
            ],
        );
        let bird = ChildGuard::spawn(command, "bird")?;
        Ok(Router {
            bird: Some(bird),
            dir,
            client,
            ns,
        })
    }

    /// The next hops of the kernel route to the VIP (sorted).
    fn next_hops(&self) -> Vec<Ipv4Addr> {
        let out = self
            .ns
            .ip(&["route", "show", &format!("{VIP}/32")])
            .unwrap_or_default();
        let words: Vec<&str> = out.split_whitespace().collect();
        let mut hops: Vec<Ipv4Addr> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// Waits until the route's next hops are `wanted`; the time it took.
    fn wait_for_hops(&self, wanted: &[Ipv4Addr], timeout: Duration) -> Duration {
        let start = Instant::now();
        let mut wanted = wanted.to_vec();
        wanted.sort();
        loop {
            let hops = self.next_hops();
            if hops == wanted {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "the router's next hops for {VIP} are {hops:?}, not {wanted:?}; BIRD log:\n{}",
                std::fs::read_to_string(self.dir.path.join("bird.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        drop(self.bird.take());
    }
}

fn bgp_section(node: Ipv4Addr) -> String {
    format!(
        "\n[bgp]\nasn = 65001\nrouter_id = \"{node}\"\nhold_time = {HOLD_TIME}\ndrain_time = 2\n\
         [[bgp.neighbor]]\naddress = \"{ROUTER_ADDR}\"\nremote_as = 65000\n"
    )
}

/// Starts lbd on `node` and waits until it programmed its 3 backends.
fn start_node(lab: &mut DsrLab, lbd: &Path, node: usize) {
    let config = lab.config_for(node, 3) + &bgp_section(lab.lbs[node].addr);
    lab.write_config_of(node, &config).unwrap();
    lab.spawn_lbd(node, lbd).unwrap();
    let instance = lab.lbs[node].instance.clone();
    let ready = wait_until_ready(lbd, &instance, Duration::from_secs(20), None, |r| {
        r.xdp_mode.is_some()
            && r.services.iter().all(|s| {
                s.backends.len() == 3 && s.backends.iter().all(|b| b.slots.unwrap_or(0) > 0)
            })
    });
    if let Err(why) = ready {
        panic!("{}", why.into_error(&lab.lbd_log_of(node)));
    }
}

/// Packets node `node` forwarded for the web service so far.
fn web_packets(lab: &DsrLab, lbd: &Path, node: usize) -> u64 {
    status_of(lbd, &lab.lbs[node].instance)
        .map(|r| {
            r.services
                .iter()
                .filter(|s| s.port == TCP_PORT)
                .map(|s| s.packets)
                .sum()
        })
        .unwrap_or(0)
}

fn target() -> SocketAddrV4 {
    SocketAddrV4::new(VIP, TCP_PORT)
}

/// One short connection per source port from the client; all must work.
fn requests(router: &Router, ports: std::ops::Range<u16>) {
    let count = ports.len();
    let names = router
        .client
        .run_in(|| traffic::tcp_names(CLIENT, ports, target()))
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
fn still_working(router: &Router, held: &mut [HeldConnection]) {
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
                if traffic::tcp_names(CLIENT, [port], target()).is_err() {
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
    let addrs: Vec<Ipv4Addr> = lab.lbs.iter().map(|n| n.addr).collect();
    let router = Router::build(&lab, &addrs).unwrap();
    for node in 0..3 {
        start_node(&mut lab, &lbd, node);
    }
    router.wait_for_hops(&addrs[..3], Duration::from_secs(30));
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

    // Many client ports reach all three nodes.
    let reached = nodes_reached(&lab, &lbd, &[0, 1, 2], || requests(&router, 20000..20300));
    assert_eq!(reached, [0, 1, 2], "flows spread over every node");

    // 50 established connections, some through node 0.
    let mut held = Vec::new();
    let reached = nodes_reached(&lab, &lbd, &[0, 1, 2], || {
        held = router
            .client
            .run_in(|| {
                (30000..30050)
                    .map(|p| HeldConnection::open(CLIENT, p, target()))
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
    let withdrawn = router.wait_for_hops(&addrs[1..3], Duration::from_secs(HOLD_TIME + 2));
    eprintln!("kill -9 to withdrawal at the router: {withdrawn:?}");
    still_working(&router, &mut held);
    let reached = nodes_reached(&lab, &lbd, &[1, 2], || requests(&router, 21000..21200));
    assert_eq!(reached, [1, 2], "new flows spread over the remaining two");

    // A fourth node joins: nothing established breaks, it gets flows.
    start_node(&mut lab, &lbd, 3);
    router.wait_for_hops(&[addrs[1], addrs[2], addrs[3]], Duration::from_secs(30));
    still_working(&router, &mut held);
    let reached = nodes_reached(&lab, &lbd, &[1, 2, 3], || requests(&router, 22000..22300));
    assert_eq!(reached, [1, 2, 3]);

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
    let withdrawn = router.wait_for_hops(&[addrs[2], addrs[3]], Duration::from_secs(5));
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

    // gobgpd dies on node 2: lbd starts it again and announces again.
    let before = status_of(&lbd, &lab.lbs[2].instance).unwrap().bgp.unwrap();
    let pid = before.speaker_pid.expect("gobgpd runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    router.wait_for_hops(&[addrs[3]], Duration::from_secs(HOLD_TIME + 2));
    router.wait_for_hops(&[addrs[2], addrs[3]], Duration::from_secs(30));
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
    router.wait_for_hops(&[], Duration::from_secs(5));
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
    let router = Router::build(&lab, &addrs).unwrap();
    for (node, priority) in [(0, 200), (1, 100)] {
        let config = lab.config_for(node, 3)
            + &format!(
                "\n[[vrrp]]\nname = \"VI_1\"\nversion = 3\nvrid = 51\npriority = {priority}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}\"]\n"
            )
            + &bgp_section(addrs[node])
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
    router.wait_for_hops(&addrs[..1], Duration::from_secs(20));
    requests(&router, 20000..20050);

    // The master stops: the backup takes over and announces med 10.
    assert!(lab.stop_lbd_of(0));
    router.wait_for_hops(&addrs[1..2], Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while meds(1) != [Some(10)] {
        assert!(Instant::now() < deadline, "new master: {:?}", meds(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    requests(&router, 21000..21050);
}
