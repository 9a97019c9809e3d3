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

/// Reads the connection table of `instance` (at most `limit` flows),
/// each flow once. The kernel's walk of a hash map starts over from its
/// first bucket when the entry it stood on was deleted meanwhile (by the
/// collector, by LRU eviction), so under churn the same entries come
/// back: rows are de-duplicated by key, and the walk is bounded.
pub fn collect(instance: &str, limit: usize) -> Result<Vec<FlowStatus>, StatusError> {
    let maps = super::status::open_maps(instance)?;
    let now = monotonic_now_ns();
    let capacity = table_capacity(instance).unwrap_or(crate::config::DEFAULT_CONNTRACK_ENTRIES);
    let entries = maps.conntrack.iter().filter_map(Result::ok);
    let mut flows = Vec::new();
    for (key, conn) in unique_entries(entries, limit, walk_budget(capacity)) {
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

/// The first `limit` distinct keys of a walk (the first value seen for
/// each), looking at no more than `budget` entries.
fn unique_entries(
    entries: impl Iterator<Item = (FlowKey, ConnEntry)>,
    limit: usize,
    budget: usize,
) -> Vec<(FlowKey, ConnEntry)> {
    let mut seen = std::collections::HashSet::new();
    entries
        .take(budget)
        .filter(|(key, _)| seen.insert(*key))
        .take(limit)
        .collect()
}

/// A walk that keeps starting over never ends by itself: it stops after
/// four tables' worth of entries (a busy table may then be listed in
/// part, each flow still once).
fn walk_budget(capacity: u32) -> usize {
    (capacity as usize).saturating_mul(4)
}

/// The connection table's size, from its pin.
fn table_capacity(instance: &str) -> Option<u32> {
    let pin = crate::dataplane::pin_dir(instance).join(lb_common::map_names::CONNTRACK);
    let data = aya::maps::MapData::from_pin(pin).ok()?;
    Some(data.info().ok()?.max_entries())
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

    fn key(port: u16) -> FlowKey {
        FlowKey {
            src_port: port,
            dst_port: 80,
            proto: PROTO_TCP,
            family: lb_common::FAMILY_IPV4,
            ..FlowKey::default()
        }
    }

    #[test]
    fn a_walk_that_starts_over_gives_each_flow_once() {
        // What a churning table gives: 1, 2, 3, then from the start again.
        let walk = [1, 2, 3, 1, 2, 3, 4, 2, 5]
            .into_iter()
            .map(|p| (key(p), ConnEntry::default()));
        let ports: Vec<u16> = unique_entries(walk.clone(), 100, 1000)
            .iter()
            .map(|(k, _)| k.src_port)
            .collect();
        assert_eq!(ports, [1, 2, 3, 4, 5]);
        assert_eq!(
            unique_entries(walk, 2, 1000).len(),
            2,
            "the limit counts flows"
        );
        let endless = std::iter::repeat((key(7), ConnEntry::default()));
        assert_eq!(
            unique_entries(endless, 10, walk_budget(4096)).len(),
            1,
            "a walk that never ends is cut"
        );
    }

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
