//! `cargo xtask lab`: the demo. Builds, in network namespaces, a client, two
//! load balancers running lbd with VRRP, and three backends on a bridge;
//! sends real TCP and UDP traffic through the VIP and shows where it went;
//! then crashes the master (SIGKILL), measures the failover, and brings it
//! back (preemption). Everything is torn down on exit, Ctrl-C included.
use lb_tests::{
    ha::{holds_vip, time_to_service, wait_state, State},
    topology::{DsrLab, CLIENT_ADDR, VIP},
    traffic,
};
use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// VRRPv3 with 100 ms adverts: master-down 300 ms + skew.
fn vrrp_section(priority: u8) -> String {
    format!(
        "\n[[vrrp]]\nname = \"VI_1\"\nversion = 3\nvrid = 51\npriority = {priority}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}\"]\n"
    )
}

pub fn run(lbd: &Path, connections: u32) -> anyhow::Result<()> {
    // Ctrl-C must unwind through the guards rather than kill us outright.
    install_sigint()?;

    println!("lab: building a client, 2 load balancers and 3 backends in network namespaces");
    let mut lab = DsrLab::build_ha(2, 3)?;
    for (node, priority) in [(0, 200), (1, 100)] {
        let text = format!("{}{}", lab.config_for(node, 3), vrrp_section(priority));
        lab.write_config_of(node, &text)?;
    }
    println!("lab: starting lbd on lb0 (VRRP priority 200) and lb1 (priority 100)");
    lab.start_lbd(lbd)?;
    lab.spawn_lbd(1, lbd)?;
    wait_state(&lab, 0, lbd, State::Master, Duration::from_secs(10));
    wait_state(&lab, 1, lbd, State::Backup, Duration::from_secs(10));
    println!("lab: lb0 is MASTER and holds {VIP}; lb1 is BACKUP");
    check_interrupt()?;

    let first_port = 20_000u16;
    let ports = first_port..first_port + connections.min(40_000) as u16;
    let target = lab.tcp_target();
    println!("lab: {} TCP connections to {target}", ports.len());
    let tcp = lab
        .client
        .run_in(|| traffic::tcp_names(CLIENT_ADDR, ports.clone(), target))??;
    check_interrupt()?;
    let udp_target = lab.udp_target();
    println!("lab: {} UDP datagrams to {udp_target}", ports.len());
    let udp = lab
        .client
        .run_in(|| traffic::udp_names(CLIENT_ADDR, ports.clone(), udp_target, b"lab"))??;
    check_interrupt()?;

    println!("\nper-backend distribution (answers as seen by the client):");
    println!("{:<8} {:>8} {:>8}", "BACKEND", "TCP", "UDP");
    let tally = |answers: &[(u16, String)]| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, name) in answers {
            *counts.entry(name.clone()).or_default() += 1;
        }
        counts
    };
    let (tcp_counts, udp_counts) = (tally(&tcp), tally(&udp));
    for backend in &lab.backends {
        println!(
            "{:<8} {:>8} {:>8}",
            backend.name,
            tcp_counts.get(&backend.name).copied().unwrap_or(0),
            udp_counts.get(&backend.name).copied().unwrap_or(0)
        );
    }
    show_status(lbd, &lab, 0);
    show_status(lbd, &lab, 1);
    println!(
        "pinned maps: bpftool map dump pinned /sys/fs/bpf/{}/lb_services (and lb_backends, lb_conntrack, ...)",
        lab.instance
    );

    println!("\nlab: crashing the master (SIGKILL lbd on lb0)");
    let crashed = std::time::Instant::now();
    lab.kill_lbd_of(0);
    // lb0's program stays attached (its link is pinned): the VIP keeps
    // answering while lb1 waits out the master-down interval.
    let took = time_to_service(&lab, Duration::from_secs(10));
    wait_state(&lab, 1, lbd, State::Master, Duration::from_secs(2));
    println!(
        "lab: the VIP answered {} ms after the crash (lb0's data plane keeps forwarding); lb1 reported MASTER {} ms after it (master-down interval: 361 ms)",
        took.as_millis(),
        crashed.elapsed().as_millis()
    );
    println!("lab: VIP on lb1: {}", holds_vip(&lab, 1));
    check_interrupt()?;

    println!("\nlab: restarting lbd on lb0: it starts as backup, then preempts (200 > 100)");
    lab.spawn_lbd(0, lbd)?;
    wait_state(&lab, 0, lbd, State::Master, Duration::from_secs(10));
    wait_state(&lab, 1, lbd, State::Backup, Duration::from_secs(5));
    time_to_service(&lab, Duration::from_secs(10));
    println!(
        "lab: lb0 is MASTER again; VIP on lb0: {}, on lb1: {}",
        holds_vip(&lab, 0),
        holds_vip(&lab, 1)
    );
    show_status(lbd, &lab, 1);

    let clean = lab.stop_lbd_of(0) & lab.stop_lbd_of(1);
    println!(
        "\nlab: lbd stopped ({}), tearing down",
        if clean { "clean exits" } else { "forced" }
    );
    Ok(())
}

/// `cargo xtask lab --mode nat|fullnat`: one load balancer, a client on
/// its own subnet, three backends that report the source they see; TCP and
/// UDP over IPv4 and IPv6.
pub fn run_nat(lbd: &Path, mode: lb_tests::modes_lab::Mode) -> anyhow::Result<()> {
    use lb_tests::modes_lab::{ModesLab, VIP4, VIP6};
    install_sigint()?;
    println!(
        "lab: building a client (198.18.1.2, fd00:1::2), a load balancer and 3 backends; mode {}",
        mode.name()
    );
    let mut lab = ModesLab::build(mode, 3)?;
    let config = lab.config("");
    lab.start_lbd(lbd, &config)?;
    check_interrupt()?;
    println!(
        "\n{:<22} {:<8} {:<28} {:<28}",
        "VIP", "TCP TO", "TCP: SOURCE SEEN", "UDP: SOURCE SEEN"
    );
    for vip in [std::net::IpAddr::from(VIP4), std::net::IpAddr::from(VIP6)] {
        for source_port in 30_000..30_006 {
            let (name, tcp_peer) = lab.tcp_ask(vip, source_port)?;
            let (_, udp_peer) = lab.udp_ask(vip, source_port)?;
            println!("{vip:<22} {name:<8} {tcp_peer:<28} {udp_peer:<28}");
        }
        check_interrupt()?;
    }
    for (title, command) in [("lbd status", "status"), ("lbd flows", "flows")] {
        println!("\n{title}:");
        if let Ok(out) = Command::new(lbd)
            .args([command, "--instance", &lab.instance])
            .output()
        {
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    println!("\nlab: tearing down");
    Ok(())
}

fn show_status(lbd: &Path, lab: &DsrLab, node: usize) {
    println!("\nlbd status on lb{node}:");
    if let Ok(out) = Command::new(lbd)
        .args(["status", "--instance", &lab.lbs[node].instance])
        .output()
    {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

fn install_sigint() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn on_sigint(_: i32) {
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGINT, &action) }?;
    Ok(())
}
