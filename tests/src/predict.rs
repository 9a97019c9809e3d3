//! What the data plane will choose, computed in userspace with the same
//! hash and Maglev table: tests predict every flow's backend exactly.
use lb_common::{hash::flow_hash, ipv4_addr_bytes, FlowKey, FAMILY_IPV4};
use lbd::maglev::{build_table, MaglevBackend};
use std::net::Ipv4Addr;

/// Index into `backends` (all weight 1, each at `port`) that a flow from
/// `client:source_port` to `vip:port` lands on, with a table of `ring`.
pub fn maglev_choice(
    client: Ipv4Addr,
    source_port: u16,
    vip: Ipv4Addr,
    port: u16,
    proto: u8,
    backends: &[Ipv4Addr],
    ring: u32,
) -> usize {
    let flow = FlowKey {
        src: ipv4_addr_bytes(client.octets()),
        dst: ipv4_addr_bytes(vip.octets()),
        src_port: source_port,
        dst_port: port,
        proto,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    let list: Vec<MaglevBackend> = backends
        .iter()
        .map(|address| MaglevBackend {
            identity: format!("{address}:{port}"),
            weight: 1,
        })
        .collect();
    let table = build_table(&list, ring);
    table[(flow_hash(&flow) % ring) as usize] as usize
}
