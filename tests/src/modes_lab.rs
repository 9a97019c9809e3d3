//! A dual-stack topology for every forwarding mode. The client sits on a
//! subnet of its own, so that whatever answers it must be routed:
//!
//! ```text
//!   client 198.18.1.2 fd00:1::2 ─┐            (default route via the LB)
//!   lb     198.18.0.1 fd00::1    ─┤ br0       also 198.18.1.1 fd00:1::1;
//!          198.18.1.1 fd00:1::1   │ (switch)  VIPs 198.18.0.100 fd00::100
//!   b1..bN 198.18.0.11+ fd00::11+┘
//! ```
//! Backends by mode: `dsr` holds the VIPs on lo and reaches the client's
//! subnet on-link; `nat` routes everything via the LB; `fullnat` has no
//! route off its own subnet at all. Backends answer "NAME PEER" on TCP
//! 80 / 8080 and UDP 53 (dsr, bound to the VIPs) or 5353, PEER being the
//! source address and port they saw.
use crate::{
    lbd_status::{status_of, wait_until_ready},
    netns::{self, Netns},
    process::ChildGuard,
    topology::{PassProgram, TempDir},
};
use anyhow::Context;
use lbd::cli::StatusReport;
use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
pub const LB4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const SNAT_PORTS: (u16, u16) = (20000, 29999);

pub fn backend4(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + index as u8)
}

pub fn backend6(index: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x11 + index as u16)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Dsr,
    Nat,
    Fullnat,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dsr => "dsr",
            Mode::Nat => "nat",
            Mode::Fullnat => "fullnat",
        }
    }

    /// Backend (TCP, UDP) ports: the service's own in dsr (the packet is
    /// not rewritten), translated ones otherwise.
    pub fn backend_ports(self) -> (u16, u16) {
        match self {
            Mode::Dsr => (80, 53),
            _ => (8080, 5353),
        }
    }
}

pub struct ModesLab {
    // Drop order: lbd, servers, the pass program, then the namespaces.
    lbd: Option<ChildGuard>,
    _servers: Vec<PeerServer>,
    _pass: PassProgram,
    pub mode: Mode,
    pub instance: String,
    pub lb: Netns,
    pub client: Netns,
    pub backends: Vec<Netns>,
    pub switch: Netns,
    workdir: TempDir,
    /// `fullnat`'s IPv4 source: the LB's address, or (with VRRP) the VIP.
    snat4: Ipv4Addr,
    /// A second load balancer for VRRP (see [`ModesLab::build_ha`]).
    pub standby: Option<Standby>,
}

/// The second load balancer of an HA lab.
pub struct Standby {
    lbd: Option<ChildGuard>,
    _pass: PassProgram,
    pub ns: Netns,
    pub instance: String,
    workdir: TempDir,
}

impl Drop for Standby {
    fn drop(&mut self) {
        drop(self.lbd.take());
        crate::topology::remove_instance_files(&self.instance);
    }
}

impl Drop for ModesLab {
    fn drop(&mut self) {
        // The standby first: its lbd, then its namespace, while the switch
        // it is plugged into still exists.
        drop(self.standby.take());
        drop(self.lbd.take());
        crate::topology::remove_instance_files(&self.instance);
    }
}

/// The HA lab's addresses that VRRP moves: the VIP and the client's gateway.
pub const GATEWAY4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);

impl ModesLab {
    pub fn build(mode: Mode, backend_count: usize) -> anyhow::Result<Self> {
        Self::build_with(mode, backend_count, false)
    }

    /// Two load balancers (198.18.0.1 and .3) whose VRRP decides who holds
    /// the VIP and the client's gateway 198.18.1.254 (IPv4 only); fullnat's
    /// source is the VIP, so backends answer whoever holds it.
    pub fn build_ha(mode: Mode, backend_count: usize) -> anyhow::Result<Self> {
        let mut lab = Self::build_with(mode, backend_count, true)?;
        let ns = Netns::create("mlb2")?;
        plug(
            &lab.switch,
            &ns,
            "p-lb2",
            &["198.18.0.3/24", "198.18.1.3/24"],
            &["fd00::3/64", "fd00:1::3/64"],
        )?;
        for key in ["all", "eth0"] {
            ns.sysctl(&format!("net.ipv4.conf.{key}.send_redirects"), "0")?;
        }
        let pass = PassProgram::attach(&lab.switch, "p-lb2")?;
        let instance = netns::unique_name("m");
        let workdir = TempDir::create(&instance)?;
        lab.standby = Some(Standby {
            lbd: None,
            _pass: pass,
            ns,
            instance,
            workdir,
        });
        Ok(lab)
    }

    fn build_with(mode: Mode, backend_count: usize, ha: bool) -> anyhow::Result<Self> {
        let switch = Netns::create("msw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let lb = Netns::create("mlb")?;
        plug(
            &switch,
            &lb,
            "p-lb",
            &["198.18.0.1/24", "198.18.1.1/24"],
            &["fd00::1/64", "fd00:1::1/64"],
        )?;
        if !ha {
            lb.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "eth0"])?;
            lb.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{VIP6}/128"),
                "dev",
                "eth0",
                "nodad",
            ])?;
        }
        // The LB forwards (lbd turns it on for the NAT modes) but must not
        // tell the client to go around it.
        for key in ["all", "eth0"] {
            lb.sysctl(&format!("net.ipv4.conf.{key}.send_redirects"), "0")?;
        }
        let pass = PassProgram::attach(&switch, "p-lb")?;
        let client = Netns::create("mcl")?;
        plug(
            &switch,
            &client,
            "p-cl",
            &["198.18.1.2/24"],
            &["fd00:1::2/64"],
        )?;
        let gateway = if ha {
            GATEWAY4.to_string()
        } else {
            "198.18.1.1".to_owned()
        };
        client.ip(&["route", "add", "default", "via", &gateway])?;
        client.ip(&["-6", "route", "add", "default", "via", "fd00:1::1"])?;
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for index in 0..backend_count {
            let ns = Netns::create(&format!("mb{}", index + 1))?;
            let v4 = format!("{}/24", backend4(index));
            let v6 = format!("{}/64", backend6(index));
            plug(&switch, &ns, &format!("p-b{}", index + 1), &[&v4], &[&v6])?;
            match mode {
                Mode::Dsr => {
                    ns.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])?;
                    ns.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"])?;
                    for key in ["all", "eth0"] {
                        ns.sysctl(&format!("net.ipv4.conf.{key}.arp_ignore"), "1")?;
                        ns.sysctl(&format!("net.ipv4.conf.{key}.arp_announce"), "2")?;
                    }
                    ns.ip(&["route", "add", "198.18.1.0/24", "dev", "eth0"])?;
                    ns.ip(&["-6", "route", "add", "fd00:1::/64", "dev", "eth0"])?;
                }
                Mode::Nat => {
                    ns.ip(&["route", "add", "default", "via", "198.18.0.1"])?;
                    ns.ip(&["-6", "route", "add", "default", "via", "fd00::1"])?;
                }
                // No route off the backends' own subnet: only the LB's
                // address can be answered.
                Mode::Fullnat => {}
            }
            servers.push(PeerServer::start(&ns, &format!("b{}", index + 1), mode)?);
            backends.push(ns);
        }
        let instance = netns::unique_name("m");
        let workdir = TempDir::create(&instance)?;
        Ok(ModesLab {
            lbd: None,
            _servers: servers,
            _pass: pass,
            mode,
            instance,
            lb,
            client,
            backends,
            switch,
            workdir,
            snat4: if ha { VIP4 } else { LB4 },
            standby: None,
        })
    }

    /// Four services (TCP 80 and UDP 53 on each VIP), every backend in
    /// each, in the lab's mode; `extra` goes into `[instance]`.
    pub fn config(&self, extra: &str) -> String {
        self.config_with(extra, "")
    }

    /// As [`ModesLab::config`], with `service_extra` in every service.
    pub fn config_with(&self, extra: &str, service_extra: &str) -> String {
        self.config_of(&self.instance, extra, service_extra)
    }

    /// As [`ModesLab::config_with`], for the instance named `instance`.
    pub fn config_of(&self, instance: &str, extra: &str, service_extra: &str) -> String {
        let mut text = format!(
            "[instance]\nname = \"{instance}\"\ninterface = \"eth0\"\nmaglev_table_size = 251\nmax_services = 8\nmax_backends = 64\nconntrack_entries = 4096\nsnat_ipv4 = \"{}\"\nsnat_ipv6 = \"{LB6}\"\nsnat_port_range = [{}, {}]\n{extra}\n",
            self.snat4, SNAT_PORTS.0, SNAT_PORTS.1
        );
        let (tcp_port, udp_port) = self.mode.backend_ports();
        for (family, vip) in [("4", IpAddr::from(VIP4)), ("6", IpAddr::from(VIP6))] {
            for (name, port, backend_port, protocol) in
                [("web", 80, tcp_port, "tcp"), ("dns", 53, udp_port, "udp")]
            {
                text.push_str(&format!(
                    "\n[[service]]\nname = \"{name}{family}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"{protocol}\"\nmode = \"{}\"\n{service_extra}\n",
                    self.mode.name()
                ));
                for index in 0..self.backends.len() {
                    let address: IpAddr = if family == "4" {
                        backend4(index).into()
                    } else {
                        backend6(index).into()
                    };
                    text.push_str(&format!(
                        "[[service.backend]]\naddress = \"{address}\"\nport = {backend_port}\n"
                    ));
                }
            }
        }
        text
    }

    /// Starts lbd with `config` and waits until every backend is in its
    /// service's table (and, in dsr, resolved).
    pub fn start_lbd(&mut self, lbd: &Path, config: &str) -> anyhow::Result<()> {
        self.lbd = Some(spawn_lbd(lbd, config, &self.workdir, &self.lb)?);
        let instance = self.instance.clone();
        self.wait_programmed(lbd, &instance, false)
    }

    /// Starts the standby's lbd with `config` (see [`ModesLab::config_of`]).
    pub fn start_standby(&mut self, lbd: &Path, config: &str) -> anyhow::Result<()> {
        let standby = self.standby.as_mut().context("not an HA lab")?;
        standby.lbd = Some(spawn_lbd(lbd, config, &standby.workdir, &standby.ns)?);
        let instance = standby.instance.clone();
        self.wait_programmed(lbd, &instance, true)
    }

    fn wait_programmed(&mut self, lbd: &Path, instance: &str, standby: bool) -> anyhow::Result<()> {
        let expected = 4 * self.backends.len();
        let guard = if standby {
            self.standby.as_mut().and_then(|s| s.lbd.as_mut())
        } else {
            self.lbd.as_mut()
        };
        let result = wait_until_ready(lbd, instance, Duration::from_secs(20), guard, |report| {
            let backends: Vec<_> = report.services.iter().flat_map(|s| &s.backends).collect();
            report.xdp_mode.is_some()
                && backends.len() == expected
                && backends.iter().all(|b| b.slots.unwrap_or(0) > 0)
        });
        result.map_err(|why| why.into_error(&self.lbd_log()))
    }

    pub fn status(&self, lbd: &Path) -> anyhow::Result<StatusReport> {
        status_of(lbd, &self.instance)
    }

    /// Both nodes' logs (the standby's, if any, after the first).
    pub fn lbd_log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.workdir.path.join("lbd.log")).unwrap_or_default();
        if let Some(standby) = &self.standby {
            log.push_str("\n--- standby ---\n");
            log.push_str(
                &std::fs::read_to_string(standby.workdir.path.join("lbd.log")).unwrap_or_default(),
            );
        }
        log
    }

    /// One TCP connection from the client's `source_port` to `vip`:80;
    /// returns the backend's "NAME PEER" greeting.
    pub fn tcp_ask(&self, vip: IpAddr, source_port: u16) -> anyhow::Result<(String, SocketAddr)> {
        let client: IpAddr = if vip.is_ipv4() {
            CLIENT4.into()
        } else {
            CLIENT6.into()
        };
        self.client.run_in(|| -> anyhow::Result<_> {
            let stream = crate::traffic::bound_tcp_any(
                SocketAddr::new(client, source_port),
                SocketAddr::new(vip, 80),
            )?;
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .context("reading the greeting")?;
            parse_answer(&line)
        })?
    }

    /// One UDP query from the client's `source_port` to `vip`:53.
    pub fn udp_ask(&self, vip: IpAddr, source_port: u16) -> anyhow::Result<(String, SocketAddr)> {
        let client: IpAddr = if vip.is_ipv4() {
            CLIENT4.into()
        } else {
            CLIENT6.into()
        };
        self.client.run_in(|| -> anyhow::Result<_> {
            let socket = UdpSocket::bind(SocketAddr::new(client, source_port))?;
            socket.set_read_timeout(Some(Duration::from_secs(3)))?;
            socket.connect(SocketAddr::new(vip, 53))?;
            socket.send(b"query")?;
            let mut buffer = [0u8; 256];
            let n = socket
                .recv(&mut buffer)
                .with_context(|| format!("no UDP answer to {client}:{source_port}"))?;
            parse_answer(&String::from_utf8_lossy(&buffer[..n]))
        })?
    }
}

/// `lbd run` in `ns` with `config` (written to `workdir`), logging there.
fn spawn_lbd(
    lbd: &Path,
    config: &str,
    workdir: &TempDir,
    ns: &Netns,
) -> anyhow::Result<ChildGuard> {
    let path = workdir.path.join("lb.toml");
    std::fs::write(&path, config)?;
    let mut command = Command::new(lbd);
    command
        .args(["run", "-c"])
        .arg(&path)
        .args(["--netns", ns.name()]);
    command.stderr(std::fs::File::create(workdir.path.join("lbd.log"))?);
    ChildGuard::spawn(command, "lbd")
}

fn parse_answer(text: &str) -> anyhow::Result<(String, SocketAddr)> {
    let mut parts = text.split_whitespace();
    let name = parts.next().context("empty answer")?.to_owned();
    let peer = parts
        .next()
        .context("answer without a peer")?
        .parse()
        .context("peer address")?;
    Ok((name, peer))
}

/// Connects `ns` to the bridge as eth0 with the given addresses.
fn plug(switch: &Netns, ns: &Netns, port: &str, v4: &[&str], v6: &[&str]) -> anyhow::Result<()> {
    switch.plug_into_bridge(ns, port)?;
    for scope in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
        // No router advertisements or solicitations: routes stay ours.
        ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_ra"), "0")?;
    }
    for address in v4 {
        ns.ip(&["addr", "add", address, "dev", "eth0"])?;
    }
    for address in v6 {
        ns.ip(&["-6", "addr", "add", address, "dev", "eth0", "nodad"])?;
    }
    ns.ip(&["link", "set", "eth0", "up"])?;
    // Native XDP on the path loses CHECKSUM_PARTIAL: senders compute full
    // checksums.
    ns.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
    Ok(())
}

/// TCP and UDP servers that answer "NAME PEER" (dual-stack sockets).
struct PeerServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl PeerServer {
    fn start(ns: &Netns, name: &str, mode: Mode) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (tcp_port, udp_port) = mode.backend_ports();
        let listener = ns.run_in(|| TcpListener::bind(("::", tcp_port)))??;
        listener.set_nonblocking(true)?;
        let (s, n) = (stop.clone(), name.to_owned());
        threads.push(std::thread::spawn(move || serve_tcp(listener, &n, &s)));
        // dsr replies must come from the VIP: bind to it. Elsewhere the
        // wildcard answers from the address the query was sent to.
        let udp_addresses: Vec<SocketAddr> = match mode {
            Mode::Dsr => vec![
                SocketAddr::new(VIP4.into(), udp_port),
                SocketAddr::new(VIP6.into(), udp_port),
            ],
            _ => vec![SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), udp_port)],
        };
        for address in udp_addresses {
            let socket = ns.run_in(|| UdpSocket::bind(address))??;
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
            let (s, n) = (stop.clone(), name.to_owned());
            threads.push(std::thread::spawn(move || {
                let mut buffer = [0u8; 2048];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = socket.recv_from(&mut buffer) {
                        let answer = format!("{n} {}", canonical(peer));
                        let _ = socket.send_to(answer.as_bytes(), peer);
                    }
                }
            }));
        }
        Ok(PeerServer { stop, threads })
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
fn canonical(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => peer,
        },
        v4 => v4,
    }
}

fn serve_tcp(listener: TcpListener, name: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.write_all(format!("{name} {}\n", canonical(peer)).as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Write);
                drain(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads until the client closes (briefly), so the close is orderly.
fn drain(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
}
