//! What the data plane will choose, computed in userspace with the same
//! hash and Maglev table: tests predict every flow's backend exactly.
use lb_common::{hash::flow_hash, FlowKey};
use lbd::dataplane::{build_table, map_address, MaglevBackend};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
    let backends: Vec<SocketAddr> = backends
        .iter()
        .map(|b| SocketAddr::new((*b).into(), port))
        .collect();
    maglev_choice_for(
        client.into(),
        source_port,
        vip.into(),
        port,
        proto,
        &backends,
        ring,
    )
}

/// As [`maglev_choice`], for either family and backends on any port.
pub fn maglev_choice_for(
    client: IpAddr,
    source_port: u16,
    vip: IpAddr,
    port: u16,
    proto: u8,
    backends: &[SocketAddr],
    ring: u32,
) -> usize {
    let flow = flow_key(client, source_port, vip, port, proto);
    let list: Vec<MaglevBackend> = backends
        .iter()
        .map(|address| MaglevBackend {
            identity: address.to_string(),
            weight: 1,
        })
        .collect();
    let table = build_table(&list, ring);
    table[(flow_hash(&flow) % ring) as usize] as usize
}

/// The connection-table key of a flow as the client sends it.
pub fn flow_key(client: IpAddr, source_port: u16, vip: IpAddr, port: u16, proto: u8) -> FlowKey {
    let (src, family) = map_address(client);
    let (dst, _) = map_address(vip);
    FlowKey {
        src,
        dst,
        src_port: source_port,
        dst_port: port,
        proto,
        family,
        _pad: [0; 2],
    }
}
