//! The L2 DSR topology: a "switch" namespace holding a bridge, and client,
//! load balancer and backends each in their own namespace, linked to the
//! bridge by veth pairs created directly inside the namespaces (the host
//! namespace gets no interface, address or route).
//!
//! ```text
//!   client 198.18.0.2 ─┐
//!   lb     198.18.0.1 ─┤ br0 (switch ns)
//!   b1..bN 198.18.0.11+┘   VIP 198.18.0.100: on the LB's eth0, on the backends' lo
//! ```
use crate::{
    lbd_status::{status_of, wait_until_ready},
    netns::{self, Netns},
    process::ChildGuard,
    servers::{HttpServer, NameServer},
    traffic::{self, HeldConnection},
};
use anyhow::Context;
use lbd::cli::StatusReport;
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 53;
const PREFIX: u8 = 24;

pub fn backend_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + index as u8)
}

pub fn backend_name(index: usize) -> String {
    format!("b{}", index + 1)
}

pub struct Backend {
    /// Servers first: they drop before the namespace.
    server: Option<NameServer>,
    /// HTTP on port 8080 (health checks, wrk).
    pub http: HttpServer,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub name: String,
}

/// Port of the backends' HTTP server.
pub const HTTP_PORT: u16 = 8080;

impl Backend {
    /// Stops the TCP/UDP name server (as a crashed service would).
    pub fn stop_server(&mut self) {
        self.server = None;
    }

    pub fn start_server(&mut self) -> anyhow::Result<()> {
        if self.server.is_none() {
            self.server = Some(name_server(&self.ns, &self.name)?);
        }
        Ok(())
    }
}

fn name_server(ns: &Netns, name: &str) -> anyhow::Result<NameServer> {
    NameServer::start(
        ns,
        name,
        Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, TCP_PORT))),
        Some(SocketAddr::from((VIP, UDP_PORT))),
    )
}

/// One load-balancer node: its namespace, lbd instance and files.
pub struct LbNode {
    // Drop order: lbd, the pass program, then the namespace.
    lbd: Option<ChildGuard>,
    _pass_program: PassProgram,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub instance: String,
    workdir: TempDir,
}

pub struct DsrLab {
    // Field order is drop order: processes and servers first, then the
    // namespaces they live in.
    pub lbs: Vec<LbNode>,
    pub backends: Vec<Backend>,
    pub client: Netns,
    pub switch: Netns,
    /// Instance name of node 0.
    pub instance: String,
}

impl Drop for LbNode {
    /// Stops lbd, then removes whatever its instance left (a test may have
    /// SIGKILLed it): pins, state and lock files.
    fn drop(&mut self) {
        drop(self.lbd.take());
        remove_instance_files(&self.instance);
    }
}

/// Removes what an lbd instance leaves when it is killed: its pins and its
/// state, lock and control-socket files.
pub fn remove_instance_files(instance: &str) {
    let pins = Path::new("/sys/fs/bpf").join(instance);
    if let Ok(entries) = std::fs::read_dir(&pins) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let _ = std::fs::remove_dir(&pins);
    }
    for suffix in ["json", "lock", "sock", "server-state.json"] {
        let _ = std::fs::remove_file(format!("/run/lbd/{instance}.{suffix}"));
    }
}

/// Address of load-balancer node `index` (198.18.0.1, then .3, .4, ...).
pub fn lb_addr(index: usize) -> Ipv4Addr {
    if index == 0 {
        LB_ADDR
    } else {
        Ipv4Addr::new(198, 18, 0, 2 + index as u8)
    }
}

impl DsrLab {
    /// Builds the topology with `backend_count` backends, each serving TCP
    /// on VIP:80 and UDP on VIP:53.
    pub fn build(backend_count: usize) -> anyhow::Result<Self> {
        let lab = Self::build_ha(1, backend_count)?;
        // Without VRRP, node 0 holds the VIP statically.
        lab.lb()
            .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
        Ok(lab)
    }

    /// `lb_count` load balancers (no VIP assigned: VRRP decides) and
    /// `backend_count` backends.
    pub fn build_ha(lb_count: usize, backend_count: usize) -> anyhow::Result<Self> {
        let switch = Netns::create("sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let client = Netns::create("cl")?;
        let mut lab = DsrLab {
            lbs: Vec::new(),
            backends: Vec::new(),
            client,
            switch,
            instance: String::new(),
        };
        lab.plug(&lab.client, "p-cl", CLIENT_ADDR)?;
        for index in 0..lb_count {
            let ns = Netns::create(&format!("lb{index}"))?;
            let port = format!("p-lb{index}");
            lab.plug(&ns, &port, lb_addr(index))?;
            // veth delivers XDP_TX frames only to a peer that runs XDP.
            let pass = PassProgram::attach(&lab.switch, &port)?;
            let instance = netns::unique_name("i");
            let workdir = TempDir::create(&instance)?;
            lab.lbs.push(LbNode {
                lbd: None,
                _pass_program: pass,
                ns,
                addr: lb_addr(index),
                instance,
                workdir,
            });
        }
        lab.instance = lab.lbs[0].instance.clone();
        for _ in 0..backend_count {
            lab.add_backend()?;
        }
        Ok(lab)
    }

    /// Node 0's namespace.
    pub fn lb(&self) -> &Netns {
        &self.lbs[0].ns
    }

    /// Connects `ns` to the bridge as eth0 with `addr`.
    pub fn plug(&self, ns: &Netns, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        self.switch.plug_into_bridge(ns, port)?;
        ns.ip(&["addr", "add", &format!("{addr}/{PREFIX}"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        // Native XDP on the path loses CHECKSUM_PARTIAL: senders compute
        // full checksums.
        ns.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        Ok(())
    }

    /// Adds one more backend (VIP on lo, ARP-silent for it, servers up).
    pub fn add_backend(&mut self) -> anyhow::Result<&Backend> {
        let index = self.backends.len();
        let ns = Netns::create(&format!("b{}", index + 1))?;
        let addr = backend_addr(index);
        self.plug(&ns, &format!("p-b{}", index + 1), addr)?;
        ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        for key in ["all", "eth0"] {
            ns.sysctl(&format!("net.ipv4.conf.{key}.arp_ignore"), "1")?;
            ns.sysctl(&format!("net.ipv4.conf.{key}.arp_announce"), "2")?;
        }
        let name = backend_name(index);
        let server = name_server(&ns, &name)?;
        let http = HttpServer::start(
            &ns,
            &name,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, HTTP_PORT)),
        )?;
        self.backends.push(Backend {
            server: Some(server),
            http,
            ns,
            addr,
            name,
        });
        Ok(&self.backends[index])
    }

    /// The configuration of node 0 for the first `backends` backends: TCP
    /// on port 80 and UDP on port 53.
    pub fn config(&self, backends: usize) -> String {
        self.config_for(0, backends)
    }

    pub fn config_for(&self, node: usize, backends: usize) -> String {
        let mut text = format!(
            "[instance]\nname = \"{}\"\ninterface = \"eth0\"\nmaglev_table_size = 65537\nmax_services = 4\nmax_backends = 64\nconntrack_entries = 65536\n",
            self.lbs[node].instance
        );
        for (name, port, protocol) in [("web", TCP_PORT, "tcp"), ("dns", UDP_PORT, "udp")] {
            text.push_str(&format!(
                "\n[[service]]\nname = \"{name}\"\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"{protocol}\"\nmode = \"dsr\"\n"
            ));
            for backend in &self.backends[..backends] {
                text.push_str(&format!(
                    "[[service.backend]]\naddress = \"{}\"\nweight = 1\n",
                    backend.addr
                ));
            }
        }
        text
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_path_of(0)
    }

    pub fn config_path_of(&self, node: usize) -> PathBuf {
        self.lbs[node].workdir.path.join("lb.toml")
    }

    pub fn write_config(&self, text: &str) -> anyhow::Result<PathBuf> {
        self.write_config_of(0, text)
    }

    pub fn write_config_of(&self, node: usize, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.config_path_of(node);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Starts `lbd run` on node 0 and waits until every backend is
    /// resolved and in the tables.
    pub fn start_lbd(&mut self, lbd: &Path) -> anyhow::Result<()> {
        self.spawn_lbd(0, lbd)?;
        let expected = self.configured_backends(0)?;
        self.wait_for_backends(lbd, expected, Duration::from_secs(15))
    }

    /// Starts `lbd run` on `node` without waiting.
    pub fn spawn_lbd(&mut self, node: usize, lbd: &Path) -> anyhow::Result<()> {
        self.spawn_lbd_via(node, lbd, &[])
    }

    /// Starts `lbd run` on `node` through `wrapper` (a command that execs
    /// its arguments, such as `prlimit --nofile=64:256 --`), so the
    /// process keeps the PID the guard stops.
    pub fn spawn_lbd_via(
        &mut self,
        node: usize,
        lbd: &Path,
        wrapper: &[&str],
    ) -> anyhow::Result<()> {
        let lb = &self.lbs[node];
        let mut command = match wrapper.split_first() {
            None => Command::new(lbd),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(lbd);
                command
            }
        };
        command
            .args(["run", "-c"])
            .arg(self.config_path_of(node))
            .args(["--netns", lb.ns.name()]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(lb.workdir.path.join("lbd.log"))?;
        command.stderr(log);
        self.lbs[node].lbd = Some(ChildGuard::spawn(command, "lbd")?);
        Ok(())
    }

    /// Backends in node `node`'s config file, over all services.
    fn configured_backends(&self, node: usize) -> anyhow::Result<usize> {
        let text = std::fs::read_to_string(self.config_path_of(node))?;
        Ok(text.matches("[[service.backend]]").count())
    }

    /// Polls `lbd status` until the services have `backends` backends in
    /// all, each with a MAC and a share of its service's table.
    pub fn wait_for_backends(
        &mut self,
        lbd: &Path,
        backends: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let instance = self.lbs[0].instance.clone();
        let pid = self.lbd_pid();
        let guard = self.lbs[0].lbd.as_mut();
        let result = wait_until_ready(lbd, &instance, timeout, guard, |report| {
            // From this daemon (not stale pins of a killed one), attached.
            let ours = report.pid.is_some() && report.pid == pid;
            let total: usize = report.services.iter().map(|s| s.backends.len()).sum();
            ours && report.xdp_mode.is_some()
                && total == backends
                && report.services.iter().all(|s| {
                    s.backends
                        .iter()
                        .all(|b| b.mac != "unresolved" && b.slots.unwrap_or(0) > 0)
                })
        });
        result.map_err(|why| why.into_error(&self.lbd_log()))
    }

    pub fn status(&self, lbd: &Path) -> anyhow::Result<StatusReport> {
        self.status_of(0, lbd)
    }

    pub fn status_of(&self, node: usize, lbd: &Path) -> anyhow::Result<StatusReport> {
        status_of(lbd, &self.lbs[node].instance)
    }

    pub fn lbd_pid(&self) -> Option<u32> {
        self.lbd_pid_of(0)
    }

    pub fn lbd_pid_of(&self, node: usize) -> Option<u32> {
        self.lbs[node].lbd.as_ref().map(ChildGuard::pid)
    }

    /// Stops node 0's lbd with SIGTERM; true if it exited cleanly.
    pub fn stop_lbd(&mut self) -> bool {
        self.stop_lbd_of(0)
    }

    pub fn stop_lbd_of(&mut self, node: usize) -> bool {
        match self.lbs[node].lbd.take() {
            Some(mut guard) => {
                guard.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10))
            }
            None => true,
        }
    }

    /// SIGKILL, as a crash: lbd cleans nothing up.
    pub fn kill_lbd_of(&mut self, node: usize) {
        if let Some(mut guard) = self.lbs[node].lbd.take() {
            guard.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Sends SIGHUP to lbd (reload).
    pub fn reload_lbd(&self) -> anyhow::Result<()> {
        let pid = self.lbd_pid().context("lbd is not running")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )?;
        Ok(())
    }

    pub fn lbd_log(&self) -> String {
        self.lbd_log_of(0)
    }

    pub fn lbd_log_of(&self, node: usize) -> String {
        std::fs::read_to_string(self.lbs[node].workdir.path.join("lbd.log")).unwrap_or_default()
    }

    /// One held TCP connection through the VIP per client source port.
    pub fn hold_connections(
        &self,
        ports: std::ops::Range<u16>,
    ) -> anyhow::Result<Vec<HeldConnection>> {
        let target = self.tcp_target();
        self.client.run_in(|| {
            ports
                .map(|p| HeldConnection::open(CLIENT_ADDR, p, target))
                .collect()
        })?
    }

    /// One short TCP connection through the VIP per client source port:
    /// (port, backend name).
    pub fn tcp_names(&self, ports: std::ops::Range<u16>) -> anyhow::Result<Vec<(u16, String)>> {
        let target = self.tcp_target();
        self.client
            .run_in(|| traffic::tcp_names(CLIENT_ADDR, ports, target))?
    }

    pub fn tcp_target(&self) -> SocketAddrV4 {
        SocketAddrV4::new(VIP, TCP_PORT)
    }

    pub fn udp_target(&self) -> SocketAddrV4 {
        SocketAddrV4::new(VIP, UDP_PORT)
    }

    /// Packets the interface `eth0` of `ns` has received so far.
    pub fn rx_packets(ns: &Netns) -> anyhow::Result<u64> {
        let text = ns.exec("cat", &["/sys/class/net/eth0/statistics/rx_packets"])?;
        Ok(text.trim().parse()?)
    }
}

/// The do-nothing XDP program attached to a bridge port, for as long as
/// this value lives.
pub struct PassProgram {
    _link: aya::programs::links::FdLink,
    _dataplane: lbd::dataplane::Dataplane,
}

impl PassProgram {
    pub fn attach(ns: &Netns, interface: &str) -> anyhow::Result<Self> {
        let sizes = lbd::dataplane::MapSizes {
            max_services: 1,
            max_backends: 1,
            ring_size: 7,
            conntrack_entries: 16,
        };
        let mut dataplane =
            lbd::dataplane::Dataplane::load(lbd::dataplane::embedded_object()?, &sizes)?;
        let link = ns.run_in(|| -> anyhow::Result<_> {
            let program = dataplane.program(lbd::dataplane::PASS_PROGRAM)?;
            let id = program.attach(interface, aya::programs::XdpMode::Driver)?;
            let link = program.take_link(id)?;
            Ok(aya::programs::links::FdLink::try_from(link)?)
        })??;
        Ok(PassProgram {
            _link: link,
            _dataplane: dataplane,
        })
    }
}

/// A scratch directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The `lbd` binary built in this workspace (`LBD_BIN` overrides).
pub fn lbd_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LBD_BIN") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let path = root.join("target/debug/lbd");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p lb-userspace` (cargo xtask test does)",
        path.display()
    );
    path
}

/// Runs `lbd ARGS` (a command-line client of a running instance): whether
/// it succeeded, and its stdout then stderr.
pub fn lbd_cli(lbd: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(lbd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", lbd.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
