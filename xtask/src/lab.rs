//! `cargo xtask lab`: the demo. Builds the DSR topology in namespaces,
//! starts lbd, sends real TCP and UDP traffic through the VIP and prints
//! where it went. Everything is torn down on exit, Ctrl-C included.
use anyhow::Context;
use lb_tests::{
    topology::{DsrLab, CLIENT_ADDR},
    traffic,
};
use std::{collections::BTreeMap, path::Path, process::Command};

pub fn run(lbd: &Path, connections: u32) -> anyhow::Result<()> {
    // Ctrl-C must unwind through the guards rather than kill us outright.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    install_sigint(interrupted.clone())?;

    println!("lab: building client, load balancer and 3 backends in network namespaces");
    let mut lab = DsrLab::build(3)?;
    lab.write_config(&lab.config(3))?;
    println!("lab: starting lbd (instance {})", lab.instance);
    lab.start_lbd(lbd)?;

    let first_port = 20_000u16;
    let ports = first_port..first_port + connections.min(40_000) as u16;
    let target = lab.tcp_target();
    println!("lab: {} TCP connections to {target}", ports.len());
    let tcp = match lab
        .client
        .run_in(|| traffic::tcp_names(CLIENT_ADDR, ports.clone(), target))?
    {
        Ok(tcp) => tcp,
        Err(e) => {
            eprintln!(
                "lab: TCP through the VIP failed; lbd log:\n{}",
                lab.lbd_log()
            );
            if let Ok(secs) = std::env::var("LAB_HOLD_SECS") {
                std::thread::sleep(std::time::Duration::from_secs(secs.parse().unwrap_or(0)));
            }
            return Err(e);
        }
    };
    check_interrupt(&interrupted)?;
    let udp_target = lab.udp_target();
    println!("lab: {} UDP datagrams to {udp_target}", ports.len());
    let udp = lab
        .client
        .run_in(|| traffic::udp_names(CLIENT_ADDR, ports.clone(), udp_target, b"lab"))??;
    check_interrupt(&interrupted)?;

    println!("\nper-backend distribution (answers as seen by the client):");
    println!("{:<8} {:>8} {:>8}", "BACKEND", "TCP", "UDP");
    let mut tcp_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, name) in &tcp {
        *tcp_counts.entry(name.clone()).or_default() += 1;
    }
    let mut udp_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, name) in &udp {
        *udp_counts.entry(name.clone()).or_default() += 1;
    }
    for backend in &lab.backends {
        println!(
            "{:<8} {:>8} {:>8}",
            backend.name,
            tcp_counts.get(&backend.name).copied().unwrap_or(0),
            udp_counts.get(&backend.name).copied().unwrap_or(0)
        );
    }

    println!("\nlbd status:");
    let status = Command::new(lbd)
        .args(["status", "--instance", &lab.instance])
        .output()
        .context("lbd status")?;
    print!("{}", String::from_utf8_lossy(&status.stdout));
    println!(
        "\npinned maps (bpftool map dump pinned /sys/fs/bpf/{}/lb_services):",
        lab.instance
    );
    let dump = Command::new("bpftool")
        .args([
            "map",
            "dump",
            "pinned",
            &format!("/sys/fs/bpf/{}/lb_services", lab.instance),
        ])
        .output();
    if let Ok(dump) = dump {
        print!("{}", String::from_utf8_lossy(&dump.stdout));
    }
    if let Ok(secs) = std::env::var("LAB_HOLD_SECS") {
        // Keep the topology up for manual inspection (bpftool, tcpdump).
        println!("lab: holding for {secs} s");
        std::thread::sleep(std::time::Duration::from_secs(secs.parse().unwrap_or(0)));
    }
    let clean = lab.stop_lbd();
    println!(
        "\nlab: lbd stopped ({}), tearing down",
        if clean { "clean exit" } else { "forced" }
    );
    Ok(())
}

fn check_interrupt(flag: &std::sync::atomic::AtomicBool) -> anyhow::Result<()> {
    if flag.load(std::sync::atomic::Ordering::Relaxed) {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

fn install_sigint(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    static FLAG: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    let _ = FLAG.set(flag);
    extern "C" fn on_sigint(_: i32) {
        if let Some(flag) = FLAG.get() {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
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
