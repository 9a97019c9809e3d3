//! Runs the real XDP program on crafted packets with BPF_PROG_TEST_RUN,
//! with its maps filled by the same programmer `lbd` uses. The runs happen
//! inside a namespace of their own, on its interface `fx0`, so that the
//! NAT modes' `bpf_fib_lookup` sees a known, private routing table with
//! permanent neighbour entries for the client and the backends.
use crate::netns::Netns;
use aya::programs::{TestRun, TestRunOptions};
use lb_common::{GlobalCounters, Outcome, TrafficCounters};
use lbd::dataplane::{
    Dataplane, DesiredBackend, DesiredService, LbMaps, MapSizes, Programmer, Tunables, MAIN_PROGRAM,
};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

pub const LB_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const LB_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const RING: u32 = 251;

/// Backend ports of the NAT fixtures (the services listen on 80 and 53).
pub const NAT_TCP_PORT: u16 = 8080;
pub const NAT_UDP_PORT: u16 = 5353;

pub fn backend_mac(index: usize) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x00, 0x01, index as u8 + 1]
}

pub fn backend_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + index as u8)
}

pub fn backend_ip6(index: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x11 + index as u16)
}

/// The VIP, client and backend `index` of a family.
pub fn vip(v6: bool) -> IpAddr {
    if v6 {
        VIP6.into()
    } else {
        VIP.into()
    }
}

pub fn client(v6: bool) -> IpAddr {
    if v6 {
        CLIENT6.into()
    } else {
        CLIENT.into()
    }
}

pub fn lb_addr(v6: bool) -> IpAddr {
    if v6 {
        LB_ADDR6.into()
    } else {
        LB_ADDR.into()
    }
}

pub fn backend(v6: bool, index: usize) -> IpAddr {
    if v6 {
        backend_ip6(index).into()
    } else {
        backend_ip(index).into()
    }
}

/// A broadcast ARP request from the client for the VIP.
pub fn arp_request_for_vip() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&CLIENT.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&VIP.octets());
    frame
}

/// XDP return codes.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// A backend behind the fixture namespace's second link `fx2`, its MAC,
/// and `fx2`'s own MAC.
pub const OTHER_LINK_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
pub const OTHER_LINK_BACKEND6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0x11);
pub const OTHER_LINK_BACKEND_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x03, 0x11];
pub const OTHER_LINK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x03, 0x01];

/// The MAC the fixture namespace's neighbour table gives the VIPs.
pub const VIP_NEIGHBOUR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x02, 0x00];

/// Backends the fixture namespace has permanent neighbour entries for;
/// higher indexes are unresolved (the FIB answers "no neighbour").
pub const RESOLVED_BACKENDS: usize = 8;

pub struct Harness {
    pub dataplane: Dataplane,
    pub maps: LbMaps,
    pub programmer: Programmer,
    pub services: Vec<DesiredService>,
    pub tunables: Tunables,
    netns: Netns,
    ifindex: u32,
}

impl Harness {
    /// The XDP program with two IPv4 `dsr` services on VIP: TCP 80 and
    /// UDP 53, each with `backends` backends of weight 1.
    pub fn new(backends: usize) -> anyhow::Result<Self> {
        Self::with_mode(lb_common::MODE_DSR, false, backends)
    }

    /// As [`Harness::new`] for any mode and family. In `nat` and `fullnat`
    /// the backends listen on other ports (8080, 5353), so that port
    /// translation shows in every fixture.
    pub fn with_mode(mode: u8, v6: bool, backends: usize) -> anyhow::Result<Self> {
        Self::with_conntrack(mode, v6, backends, 1024)
    }

    /// As [`Harness::with_mode`] with a connection table (and reply table)
    /// of `conntrack_entries`.
    pub fn with_conntrack(
        mode: u8,
        v6: bool,
        backends: usize,
        conntrack_entries: u32,
    ) -> anyhow::Result<Self> {
        let netns = fixture_namespace()?;
        let ifindex = interface_index(&netns)?;
        let sizes = MapSizes {
            max_services: 8,
            max_backends: 64,
            ring_size: RING,
            conntrack_entries,
        };
        let mut dataplane = Dataplane::load(lbd::dataplane::embedded_object()?, &sizes)?;
        let mut maps = dataplane.take_maps(None)?;
        let mut programmer = Programmer::new(RING, sizes.max_services, sizes.max_backends);
        let tunables = Tunables {
            snat_v4: Some(LB_ADDR),
            snat_v6: Some(LB_ADDR6),
            reply_lookup: mode != lb_common::MODE_DSR,
            ..Tunables::default()
        };
        programmer.set_settings(&mut maps, LB_MAC, true, &tunables)?;
        let dsr = mode == lb_common::MODE_DSR;
        let services = [
            (80, NAT_TCP_PORT, lb_common::PROTO_TCP),
            (53, NAT_UDP_PORT, lb_common::PROTO_UDP),
        ]
        .into_iter()
        .map(|(port, nat_port, proto)| DesiredService {
            name: format!("svc{port}"),
            vip: vip(v6),
            port,
            proto,
            mode,
            backends: (0..backends)
                .map(|i| DesiredBackend {
                    address: SocketAddr::new(backend(v6, i), if dsr { port } else { nat_port }),
                    weight: 1,
                    mac: Some(backend_mac(i)),
                    state: lbd::dataplane::BackendState::Serving,
                })
                .collect(),
        })
        .collect::<Vec<_>>();
        programmer.apply(&mut maps, &services)?;
        Ok(Harness {
            dataplane,
            maps,
            programmer,
            services,
            tunables,
            netns,
            ifindex,
        })
    }

    /// Programs `services`, keeping `all_ports` true to them as lbd does.
    pub fn apply(&mut self) -> anyhow::Result<()> {
        let all_ports = self.services.iter().any(|s| s.port == 0);
        if all_ports != self.tunables.all_ports {
            self.tunables.all_ports = all_ports;
            let mut settings = self.maps.settings.get(&0, 0)?;
            settings.all_ports = u8::from(all_ports);
            self.maps.settings.set(0, settings, 0)?;
        }
        self.programmer.apply(&mut self.maps, &self.services)?;
        Ok(())
    }

    pub fn set_tunables(&mut self, tunables: Tunables, forwarding: bool) -> anyhow::Result<()> {
        self.programmer
            .set_settings(&mut self.maps, LB_MAC, forwarding, &tunables)?;
        self.tunables = tunables;
        Ok(())
    }

    /// The `xdp_md` a run starts from: data_end = the packet's length (the
    /// kernel requires it), ingress_ifindex = `fx0`.
    fn context(&self, packet: &[u8]) -> [u8; 24] {
        // data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let mut context = [0u8; 24];
        context[4..8].copy_from_slice(&(packet.len() as u32).to_ne_bytes());
        context[12..16].copy_from_slice(&self.ifindex.to_ne_bytes());
        context
    }

    /// Runs the program once on `fx0`; returns (action, output frame).
    pub fn run(&mut self, packet: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let (action, out, _) = self.test_run(packet, 1)?;
        Ok((action, out))
    }

    /// Runs the program `repeat` times on one buffer (each run sees the
    /// previous run's output); returns the kernel's mean time per run.
    pub fn time_repeated(&mut self, packet: &[u8], repeat: u32) -> anyhow::Result<Duration> {
        let (_, _, took) = self.test_run(packet, repeat)?;
        Ok(took)
    }

    /// BPF_PROG_TEST_RUN inside the fixture namespace: (last action, last
    /// output frame, mean time per run).
    fn test_run(&mut self, packet: &[u8], repeat: u32) -> anyhow::Result<(u32, Vec<u8>, Duration)> {
        let context = self.context(packet);
        let program = self.dataplane.program(MAIN_PROGRAM)?;
        test_run_in(&self.netns, program, &context, packet, repeat)
    }

    /// Runs any XDP `program` (e.g. the benchmark's restore wrapper, which
    /// tail-calls this harness's program) `repeat` times on `packet` in the
    /// fixture namespace, as [`Harness::run`] does: (last action, mean time
    /// per run).
    pub fn time_program(
        &self,
        program: &aya::programs::Xdp,
        packet: &[u8],
        repeat: u32,
    ) -> anyhow::Result<(u32, Duration)> {
        let context = self.context(packet);
        let (action, _, took) = test_run_in(&self.netns, program, &context, packet, repeat)?;
        Ok((action, took))
    }

    pub fn global(&self) -> anyhow::Result<GlobalCounters> {
        let mut total = GlobalCounters::default();
        for v in self.maps.global_stats.get(&0, 0)?.iter() {
            total.accumulate(v);
        }
        Ok(total)
    }

    pub fn outcome_count(&self, outcome: Outcome) -> anyhow::Result<u64> {
        let mut global = self.global()?;
        Ok(*global.counter_mut(outcome))
    }

    pub fn backend_counters(&self, id: u32) -> anyhow::Result<TrafficCounters> {
        let mut total = TrafficCounters::default();
        for v in self.maps.backend_stats.get(&id, 0)?.iter() {
            total.accumulate(v);
        }
        Ok(total)
    }

    pub fn service_counters(&self, id: u32) -> anyhow::Result<TrafficCounters> {
        let mut total = TrafficCounters::default();
        for v in self.maps.service_stats.get(&id, 0)?.iter() {
            total.accumulate(v);
        }
        Ok(total)
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    lbd::cli::format_mac(mac)
}

/// BPF_PROG_TEST_RUN of an XDP `program` inside `netns` with the xdp_md
/// `context`: (last action, last output frame, mean time per run).
fn test_run_in(
    netns: &Netns,
    program: &aya::programs::Xdp,
    context: &[u8],
    packet: &[u8],
    repeat: u32,
) -> anyhow::Result<(u32, Vec<u8>, Duration)> {
    netns.run_in(|| {
        let mut out = vec![0u8; packet.len() + 256];
        let result = program.test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: Some(context),
            repeat,
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out, result.duration))
    })?
}

fn interface_index(netns: &Netns) -> anyhow::Result<u32> {
    netns
        .run_in(|| nix::net::if_::if_nametoindex("fx0"))?
        .map_err(|e| anyhow::anyhow!("fx0: {e}"))
}

/// A namespace with `fx0` (our MAC, 198.18.0.1/24, fd00::1/64) whose peer
/// is up, forwarding on, and permanent neighbour entries for the client
/// and the first [`RESOLVED_BACKENDS`] backends of both families.
fn fixture_namespace() -> anyhow::Result<Netns> {
    let netns = Netns::create("fx")?;
    netns.ip(&["link", "add", "fx0", "type", "veth", "peer", "name", "fx1"])?;
    let mac = mac_text(LB_MAC);
    netns.ip(&["link", "set", "fx0", "address", &mac])?;
    for scope in ["all", "default"] {
        netns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        netns.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
    }
    netns.sysctl("net.ipv4.conf.all.forwarding", "1")?;
    netns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    netns.ip(&["addr", "add", "198.18.0.1/24", "dev", "fx0"])?;
    netns.ip(&["-6", "addr", "add", "fd00::1/64", "dev", "fx0", "nodad"])?;
    netns.ip(&["link", "set", "fx1", "up"])?;
    netns.ip(&["link", "set", "fx0", "up"])?;
    // A second link towards a routed backend subnet: packets for it leave
    // through `fx2` (bpf_redirect), not back out of `fx0`.
    netns.ip(&["link", "add", "fx2", "type", "veth", "peer", "name", "fx3"])?;
    netns.ip(&["link", "set", "fx2", "address", &mac_text(OTHER_LINK_MAC)])?;
    netns.ip(&["addr", "add", "198.19.0.1/24", "dev", "fx2"])?;
    netns.ip(&["-6", "addr", "add", "fd01::1/64", "dev", "fx2", "nodad"])?;
    netns.ip(&["link", "set", "fx3", "up"])?;
    netns.ip(&["link", "set", "fx2", "up"])?;
    for address in [
        OTHER_LINK_BACKEND.to_string(),
        OTHER_LINK_BACKEND6.to_string(),
    ] {
        netns.ip(&[
            "neigh",
            "replace",
            &address,
            "lladdr",
            &mac_text(OTHER_LINK_BACKEND_MAC),
            "dev",
            "fx2",
            "nud",
            "permanent",
        ])?;
    }
    // The VIPs too: the benchmark routes packets back to them.
    let mut neighbours: Vec<(IpAddr, [u8; 6])> = vec![
        (CLIENT.into(), CLIENT_MAC),
        (CLIENT6.into(), CLIENT_MAC),
        (VIP.into(), VIP_NEIGHBOUR_MAC),
        (VIP6.into(), VIP_NEIGHBOUR_MAC),
    ];
    for i in 0..RESOLVED_BACKENDS {
        neighbours.push((backend_ip(i).into(), backend_mac(i)));
        neighbours.push((backend_ip6(i).into(), backend_mac(i)));
    }
    for (address, mac) in neighbours {
        netns.ip(&[
            "neigh",
            "replace",
            &address.to_string(),
            "lladdr",
            &mac_text(mac),
            "dev",
            "fx0",
            "nud",
            "permanent",
        ])?;
    }
    Ok(netns)
}
