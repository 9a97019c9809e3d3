//! The BGP ECMP lab (issue 15), shared by `tests/bgp_netns.rs` and
//! `cargo xtask bench-bgp`: the DSR lab's nodes and backends, plus a router
//! namespace running BIRD 2 with ECMP (`merge paths`, the L4 multipath
//! hash) and a client subnet behind it. The backends run nginx.
//!
//! ```text
//!   client 198.19.0.2 fd00:19::2 ── router (BIRD 2, AS 65000) 198.18.0.254 fd00:18::fe
//!                                    │ br0 (switch ns)
//!   lb0..lbN 198.18.0.1,.3,.4,.. fd00:18::1,3,4,.. (lbd + gobgpd, AS 65001) ─┤
//!   b1..b3 198.18.0.11-13 fd00:18::11-13 (nginx; VIPs on lo, DSR replies via the router)
//! ```
use crate::{
    lbd_status::{status_of, wait_until_ready},
    netns::{self, Netns},
    nginx::{Nginx, NginxOptions},
    process::ChildGuard,
    topology::{DsrLab, TempDir, TCP_PORT},
    traffic::bound_tcp_any,
};
use anyhow::Context;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

pub const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const ROUTER_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0xfe);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, 2);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x100);
pub const ROUTER_AS: u32 = 65000;
pub const NODE_AS: u32 = 65001;

/// The IPv6 address of a lab address on the bridge: 198.18.0.N is
/// fd00:18::N (N in hex digits read as decimal: .11 is ::11).
pub fn v6_of(addr: Ipv4Addr) -> Ipv6Addr {
    let n = addr.octets()[3];
    let digits = u16::from_str_radix(&n.to_string(), 16).unwrap_or(u16::from(n));
    Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, digits)
}

/// Gives every node and backend of `lab` its IPv6 address on the bridge,
/// and the backends VIP6 on lo and the route back to the client subnet.
pub fn add_ipv6(lab: &DsrLab) -> anyhow::Result<()> {
    let nodes = lab.lbs.iter().map(|n| (&n.ns, n.addr));
    let backends = lab.backends.iter().map(|b| (&b.ns, b.addr));
    for (ns, addr) in nodes.chain(backends) {
        ns.enable_ipv6()?;
        ns.sysctl("net.ipv6.conf.all.accept_ra", "0")?;
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", v6_of(addr)),
            "dev",
            "eth0",
            "nodad",
        ])?;
    }
    for backend in &lab.backends {
        backend
            .ns
            .ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"])?;
        backend.ns.ip(&[
            "-6",
            "route",
            "add",
            "fd00:19::/64",
            "via",
            &ROUTER_ADDR6.to_string(),
        ])?;
    }
    Ok(())
}

pub struct Router {
    // Drop order: BIRD, then the namespaces.
    bird: Option<ChildGuard>,
    pub dir: TempDir,
    pub client: Netns,
    pub ns: Netns,
}

impl Router {
    /// The router namespace on the lab's bridge, the client behind it, and
    /// BIRD peering over IPv4 with `nodes` (and, with `ipv6`, over IPv6 with
    /// their fd00:18:: addresses, for the IPv6 unicast family).
    pub fn build(
        lab: &DsrLab,
        nodes: &[Ipv4Addr],
        hold_time: u64,
        ipv6: bool,
    ) -> anyhow::Result<Self> {
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
        if ipv6 {
            ns.enable_ipv6()?;
            for scope in ["all", "default", "eth1"] {
                ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
                ns.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
            }
            ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            ns.sysctl("net.ipv6.fib_multipath_hash_policy", "1")?;
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{ROUTER_ADDR6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            ns.ip(&["-6", "addr", "add", "fd00:19::1/64", "dev", "eth1", "nodad"])?;
            client.enable_ipv6()?;
            client.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{CLIENT6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            client.ip(&["-6", "route", "add", "default", "via", "fd00:19::1"])?;
        }
        let dir = TempDir::create(&netns::unique_name("bird"))?;
        std::fs::write(
            dir.path.join("bird.conf"),
            bird_config(&dir, nodes, hold_time, ipv6),
        )?;
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

    pub fn bird_log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("bird.log")).unwrap_or_default()
    }

    /// The next hops of the kernel route to `vip` (sorted; empty without a
    /// route).
    pub fn next_hops(&self, vip: IpAddr) -> Vec<IpAddr> {
        let family = if vip.is_ipv4() { "-4" } else { "-6" };
        let length = if vip.is_ipv4() { 32 } else { 128 };
        let out = self
            .ns
            .ip(&[family, "route", "show", &format!("{vip}/{length}")])
            .unwrap_or_default();
        let words: Vec<&str> = out.split_whitespace().collect();
        let mut hops: Vec<IpAddr> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// Waits until the next hops to `vip` are `wanted`, polling every
    /// `poll`: the time it took, or why not.
    pub fn try_wait_for_hops(
        &self,
        vip: IpAddr,
        wanted: &[IpAddr],
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut wanted = wanted.to_vec();
        wanted.sort();
        loop {
            let hops = self.next_hops(vip);
            if hops == wanted {
                return Ok(start.elapsed());
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "the router's next hops for {vip} are {hops:?}, not {wanted:?}; BIRD log:\n{}",
                self.bird_log()
            );
            std::thread::sleep(poll);
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        drop(self.bird.take());
    }
}

fn bird_config(dir: &TempDir, nodes: &[Ipv4Addr], hold_time: u64, ipv6: bool) -> String {
    let kernel6 = if ipv6 {
        "protocol kernel { scan time 1; merge paths on; ipv6 { import none; export all; }; }\n"
    } else {
        ""
    };
    let mut conf = format!(
        "router id {ROUTER_ADDR};\nlog \"{}/bird.log\" all;\nprotocol device {{ scan time 1; }}\n\
         protocol kernel {{ scan time 1; merge paths on; ipv4 {{ import none; export all; }}; }}\n{kernel6}\
         template bgp lbd {{ local as {ROUTER_AS}; hold time {hold_time}; keepalive time 1;\n\
         connect delay time 1; connect retry time 1; error wait time 1, 2; }}\n",
        dir.path.display()
    );
    for (i, node) in nodes.iter().enumerate() {
        conf.push_str(&format!(
            "protocol bgp lb{i} from lbd {{ local {ROUTER_ADDR}; neighbor {node} as {NODE_AS}; ipv4 {{ import all; export none; }}; }}\n"
        ));
        if ipv6 {
            conf.push_str(&format!(
                "protocol bgp lb{i}v6 from lbd {{ local {ROUTER_ADDR6}; neighbor {} as {NODE_AS}; ipv6 {{ import all; export none; }}; }}\n",
                v6_of(*node)
            ));
        }
    }
    conf
}

/// The `[bgp]` section of node `node` peering with the router (over IPv6
/// too with `ipv6`).
pub fn bgp_section(node: Ipv4Addr, hold_time: u64, drain_time: f64, ipv6: bool) -> String {
    let mut text = format!(
        "\n[bgp]\nasn = {NODE_AS}\nrouter_id = \"{node}\"\nhold_time = {hold_time}\ndrain_time = {drain_time}\n\
         [[bgp.neighbor]]\naddress = \"{ROUTER_ADDR}\"\nremote_as = {ROUTER_AS}\n"
    );
    if ipv6 {
        text.push_str(&format!(
            "[[bgp.neighbor]]\naddress = \"{ROUTER_ADDR6}\"\nremote_as = {ROUTER_AS}\n"
        ));
    }
    text
}

/// Replaces every backend's built-in name server on port 80 with nginx
/// on port 80 of every IPv4 address (the VIP for DSR, the backend's own
/// address for direct requests) and, with `ipv6`, of VIP6; `workers`
/// worker processes each; its page is the backend's name.
pub fn start_nginx(
    lab: &mut DsrLab,
    ipv6: bool,
    workers: usize,
    access_log: bool,
) -> anyhow::Result<Vec<Nginx>> {
    let mut servers = Vec::new();
    for backend in &mut lab.backends {
        backend.stop_server();
        let mut listen = vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, TCP_PORT))];
        if ipv6 {
            listen.push(SocketAddr::from((VIP6, TCP_PORT)));
        }
        let mut options = NginxOptions::new(&backend.name, &listen);
        options.workers = workers;
        options.access_log = access_log;
        servers.push(Nginx::start_with(&backend.ns, options)?);
    }
    Ok(servers)
}

/// Starts lbd on `node` with `config` and waits until it is attached and
/// has programmed three backends (MAC known, slots) in every service.
pub fn start_node(lab: &mut DsrLab, lbd: &Path, node: usize, config: &str) -> anyhow::Result<()> {
    lab.write_config_of(node, config)?;
    lab.spawn_lbd(node, lbd)?;
    let instance = lab.lbs[node].instance.clone();
    wait_until_ready(lbd, &instance, Duration::from_secs(30), None, |r| {
        r.xdp_mode.is_some()
            && r.services.iter().all(|s| {
                s.backends.len() == 3
                    && s.backends
                        .iter()
                        .all(|b| b.mac != "unresolved" && b.slots.unwrap_or(0) > 0)
            })
    })
    .map_err(|why| why.into_error(&lab.lbd_log_of(node)))
}

/// Packets node `node` forwarded on port 80 (every service there) so far.
pub fn web_packets(lab: &DsrLab, lbd: &Path, node: usize) -> u64 {
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

/// A keep-alive HTTP connection from a chosen client port through the
/// VIP, which can ask at any time which nginx backend it is on.
pub struct HttpConnection {
    pub source_port: u16,
    reader: BufReader<TcpStream>,
    /// The backend that answered the first request.
    pub first_backend: String,
}

impl HttpConnection {
    /// Call inside the client's namespace.
    pub fn open(client: IpAddr, source_port: u16, target: SocketAddr) -> anyhow::Result<Self> {
        let stream = bound_tcp_any(SocketAddr::new(client, source_port), target)?;
        let mut connection = HttpConnection {
            source_port,
            reader: BufReader::new(stream),
            first_backend: String::new(),
        };
        connection.first_backend = connection.ask()?;
        Ok(connection)
    }

    /// GET / on this connection: the backend's name.
    pub fn ask(&mut self) -> anyhow::Result<String> {
        self.reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")?;
        let mut length = None;
        let mut status = String::new();
        self.reader
            .read_line(&mut status)
            .context("reading the status line")?;
        anyhow::ensure!(status.starts_with("HTTP/1.1 200"), "status line {status:?}");
        loop {
            let mut line = String::new();
            self.reader
                .read_line(&mut line)
                .context("reading a header")?;
            anyhow::ensure!(!line.is_empty(), "connection closed in the head");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
            }
        }
        let mut body = vec![0; length.context("no Content-Length")?];
        self.reader
            .read_exact(&mut body)
            .context("reading the body")?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }
}

/// One short HTTP request per client source port; the backends' names.
/// Call inside the client's namespace.
pub fn http_names(
    client: IpAddr,
    ports: impl IntoIterator<Item = u16>,
    target: SocketAddr,
) -> anyhow::Result<Vec<String>> {
    ports
        .into_iter()
        .map(|port| {
            HttpConnection::open(client, port, target)
                .map(|c| c.first_backend)
                .with_context(|| format!("a request from port {port} to {target}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_addresses_map_to_ipv6() {
        assert_eq!(
            v6_of(Ipv4Addr::new(198, 18, 0, 11)),
            "fd00:18::11".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            v6_of(Ipv4Addr::new(198, 18, 0, 3)),
            "fd00:18::3".parse::<Ipv6Addr>().unwrap()
        );
    }
}
