//! Helpers for labs with VRRP: wait for a state, see who holds the VIP,
//! and time how long until the VIP answers again.
use crate::topology::{DsrLab, VIP};
pub use lbd::vrrp::State;
use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

pub fn vrrp_state(lab: &DsrLab, node: usize, lbd: &Path) -> Option<State> {
    let report = lab.status_of(node, lbd).ok()?;
    if report.pid != lab.lbd_pid_of(node) {
        return None; // not (yet) this daemon's state file
    }
    report.vrrp.first().map(|v| v.state)
}

pub fn wait_state(lab: &DsrLab, node: usize, lbd: &Path, want: State, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while vrrp_state(lab, node, lbd) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "node {node} never became {want:?} (is {:?}); log:\n{}",
            vrrp_state(lab, node, lbd),
            lab.lbd_log_of(node)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn holds_vip(lab: &DsrLab, node: usize) -> bool {
    lab.lbs[node]
        .ns
        .ip(&["-4", "addr", "show", "dev", "eth0"])
        .unwrap()
        .contains(&format!("{VIP}/32"))
}

/// One short connection through the VIP: the backend's name, or an error.
pub fn ask_once(timeout: Duration) -> anyhow::Result<String> {
    let mut stream = BufReader::new(TcpStream::connect_timeout(
        &SocketAddr::from((VIP, 80)),
        timeout,
    )?);
    stream.get_ref().set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    anyhow::ensure!(!line.is_empty(), "closed");
    Ok(line.trim().to_owned())
}

/// Time from now until a connection through the VIP succeeds.
pub fn time_to_service(lab: &DsrLab, limit: Duration) -> Duration {
    let start = Instant::now();
    lab.client
        .run_in(|| loop {
            if ask_once(Duration::from_millis(50)).is_ok() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "no service through the VIP within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        })
        .unwrap()
}

/// keepalived 2.2.7 (VRRP only, in the foreground) on node `node` with the
/// configuration file `conf`; its pid files and log go to `dir`.
pub fn start_keepalived(
    lab: &DsrLab,
    node: usize,
    conf: &Path,
    dir: &Path,
) -> anyhow::Result<crate::process::ChildGuard> {
    let mut command = lab.lbs[node].ns.command(
        "keepalived",
        &[
            "--vrrp",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "-f",
            &conf.display().to_string(),
            "-p",
            &dir.join("ka.pid").display().to_string(),
            "-r",
            &dir.join("ka-vrrp.pid").display().to_string(),
        ],
    );
    command.stdout(std::fs::File::create(dir.join("keepalived.log"))?);
    command.stderr(std::process::Stdio::null());
    crate::process::ChildGuard::spawn(command, "keepalived")
}
