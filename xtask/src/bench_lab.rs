//! What every bench with the namespace lab starts with (bench-l7,
//! bench-tls, bench-stats): the lab with three backend namespaces and the
//! VIPs on the balancer's eth0, one nginx per backend namespace, and the
//! date line of the results.
use lb_tests::{
    nginx::{Nginx, NginxOptions},
    topology::DsrLab,
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
};

/// The bench lab (three backends) with `vips` on the balancer's eth0.
pub fn lab_with_vips(vips: &[Ipv4Addr]) -> anyhow::Result<DsrLab> {
    let lab = DsrLab::build(3)?;
    for vip in vips {
        lab.lb()
            .ip(&["addr", "add", &format!("{vip}/32"), "dev", "eth0"])?;
    }
    Ok(lab)
}

/// One nginx per backend namespace (`b1`, `b2`, ...; one worker, no
/// access log: logging would be measured too), listening on `listen(i)`.
pub fn nginx_per_backend(
    lab: &DsrLab,
    listen: impl Fn(usize) -> Vec<SocketAddr>,
) -> anyhow::Result<Vec<Nginx>> {
    lab.backends
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            let mut options = NginxOptions::new(&format!("b{}", i + 1), &listen(i));
            options.access_log = false;
            Nginx::start_with(&backend.ns, options)
        })
        .collect()
}

/// Stops the lab's lbd with `lbd stop` (it detaches XDP and unpins, so
/// what runs next gets a clean interface), then by its PID.
pub fn stop_lbd(lab: &mut DsrLab, lbd: &Path) -> anyhow::Result<()> {
    let stop = Command::new(lbd)
        .args(["stop", "--instance", &lab.instance])
        .output()?;
    if !stop.status.success() {
        anyhow::bail!("lbd stop: {}", String::from_utf8_lossy(&stop.stderr));
    }
    lab.stop_lbd();
    Ok(())
}

/// "2026-12-02 17:45 UTC" (empty if `date` cannot run).
pub fn utc_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
