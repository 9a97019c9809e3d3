//! Runs the real XDP program on crafted packets with BPF_PROG_TEST_RUN,
//! with its maps filled by the same programmer `lbd` uses.
use aya::programs::{TestRun, TestRunOptions};
use lb_common::{GlobalCounters, Outcome, TrafficCounters};
use lbd::{
    dataplane::{Dataplane, LbMaps, MapSizes, MAIN_PROGRAM},
    programmer::{DesiredBackend, DesiredService, Programmer},
};
use std::net::{Ipv4Addr, SocketAddrV4};

pub const LB_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const RING: u32 = 251;

pub fn backend_mac(index: usize) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x00, 0x01, index as u8 + 1]
}

pub fn backend_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + index as u8)
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

pub struct Harness {
    pub dataplane: Dataplane,
    pub maps: LbMaps,
    pub programmer: Programmer,
    pub services: Vec<DesiredService>,
}

impl Harness {
    /// The XDP program with two services on VIP: TCP 80 and UDP 53, each
    /// with `backends` backends of weight 1.
    pub fn new(backends: usize) -> anyhow::Result<Self> {
        let sizes = MapSizes {
            max_services: 8,
            max_backends: 32,
            ring_size: RING,
            conntrack_entries: 1024,
        };
        let mut dataplane = Dataplane::load(lbd::dataplane::embedded_object()?, &sizes)?;
        let mut maps = dataplane.take_maps(None)?;
        let mut programmer = Programmer::new(RING, sizes.max_services, sizes.max_backends);
        programmer.set_settings(&mut maps, LB_MAC, true)?;
        let services = [(80, lb_common::PROTO_TCP), (53, lb_common::PROTO_UDP)]
            .into_iter()
            .map(|(port, proto)| DesiredService {
                name: format!("svc{port}"),
                vip: VIP,
                port,
                proto,
                mode: lb_common::MODE_DSR,
                backends: (0..backends)
                    .map(|i| DesiredBackend {
                        address: SocketAddrV4::new(backend_ip(i), port),
                        weight: 1,
                        mac: Some(backend_mac(i)),
                        state: lbd::programmer::BackendState::Serving,
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
        })
    }

    pub fn apply(&mut self) -> anyhow::Result<()> {
        self.programmer.apply(&mut self.maps, &self.services)?;
        Ok(())
    }

    /// Runs the program once; returns (action, output frame).
    pub fn run(&mut self, packet: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; packet.len() + 256];
        let program = self.dataplane.program(MAIN_PROGRAM)?;
        let result = program.test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
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
