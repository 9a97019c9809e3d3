//! `lbd flows`: the connection table, one line per flow (what `ipvsadm
//! -Lnc` shows for IPVS): client, VIP, backend, TCP state, time left and,
//! for fullnat, the source port the flow was given.
use crate::{
    cli::status::StatusError,
    dataplane::{conntrack::monotonic_now_ns, programmer::address_from_map},
};
use lb_common::{ConnEntry, FlowKey, PROTO_TCP, PROTO_UDP, TCP_STATE_CLOSING};
use serde::{Deserialize, Serialize};
use std::{fmt::Write as _, net::SocketAddr};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowStatus {
    pub protocol: String,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// `None` when the entry names a backend id that is no longer active.
    pub backend: Option<SocketAddr>,
    /// "open", "closing" (FIN/RST seen) or "udp".
    pub state: String,
    /// Seconds until the entry expires (negative: expired, not collected
    /// yet).
    pub expires_in: f64,
    /// fullnat: the source port on the balancer's address.
    pub snat_port: Option<u16>,
}

/// Reads the connection table of `instance` (at most `limit` flows).
pub fn collect(instance: &str, limit: usize) -> Result<Vec<FlowStatus>, StatusError> {
    let maps = super::status::open_maps(instance)?;
    let now = monotonic_now_ns();
    let mut flows = Vec::new();
    for entry in maps.conntrack.iter().take(limit) {
        let Ok((key, conn)) = entry else {
            continue; // deleted while we walked the table
        };
        let backend = maps
            .backends
            .get(&conn.backend_id, 0)
            .ok()
            .filter(|b| b.generation == conn.generation && b.flags & lb_common::BACKEND_ACTIVE != 0)
            .map(|b| SocketAddr::new(address_from_map(b.addr, b.family), b.port));
        flows.push(describe(&key, &conn, backend, now));
    }
    flows.sort_by_key(|f| (f.vip, f.client));
    Ok(flows)
}

fn describe(key: &FlowKey, conn: &ConnEntry, backend: Option<SocketAddr>, now: u64) -> FlowStatus {
    let state = match (key.proto, conn.tcp_state) {
        (PROTO_TCP, TCP_STATE_CLOSING) => "closing",
        (PROTO_TCP, _) => "open",
        _ => "udp",
    };
    FlowStatus {
        protocol: match key.proto {
            PROTO_TCP => "tcp".into(),
            PROTO_UDP => "udp".into(),
            other => other.to_string(),
        },
        client: SocketAddr::new(address_from_map(key.src, key.family), key.src_port),
        vip: SocketAddr::new(address_from_map(key.dst, key.family), key.dst_port),
        backend,
        state: state.into(),
        expires_in: (conn.expires_ns as f64 - now as f64) / 1e9,
        snat_port: (conn.snat_port != 0).then_some(conn.snat_port),
    }
}

pub fn render(flows: &[FlowStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<42} {:<42} {:<42} {:<8} {:>9} {:>6}",
        "PROTO", "CLIENT", "VIP", "BACKEND", "STATE", "EXPIRES", "SPORT"
    );
    for flow in flows {
        let _ = writeln!(
            out,
            "{:<5} {:<42} {:<42} {:<42} {:<8} {:>8.0}s {:>6}",
            flow.protocol,
            flow.client.to_string(),
            flow.vip.to_string(),
            flow.backend.map_or("(gone)".into(), |b| b.to_string()),
            flow.state,
            flow.expires_in,
            flow.snat_port.map_or("-".into(), |p| p.to_string()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_as_a_flow() {
        let key = FlowKey {
            src: lb_common::ipv4_addr_bytes([198, 18, 1, 2]),
            dst: lb_common::ipv4_addr_bytes([198, 18, 0, 100]),
            src_port: 40000,
            dst_port: 80,
            proto: PROTO_TCP,
            family: lb_common::FAMILY_IPV4,
            _pad: [0; 2],
        };
        let conn = ConnEntry {
            expires_ns: 12_500_000_000,
            snat_port: 20001,
            tcp_state: TCP_STATE_CLOSING,
            ..ConnEntry::default()
        };
        let backend: SocketAddr = "198.18.0.11:8080".parse().unwrap();
        let flow = describe(&key, &conn, Some(backend), 10_000_000_000);
        assert_eq!(flow.client, "198.18.1.2:40000".parse().unwrap());
        assert_eq!(flow.vip, "198.18.0.100:80".parse().unwrap());
        assert_eq!(flow.state, "closing");
        assert_eq!(flow.expires_in, 2.5);
        assert_eq!(flow.snat_port, Some(20001));
        let table = render(&[flow]);
        assert!(table.contains("198.18.0.11:8080"));
        assert!(table.contains("20001"));
    }
}
