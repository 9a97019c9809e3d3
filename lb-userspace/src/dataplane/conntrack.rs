//! Collecting dead connection-table entries. The XDP program already
//! ignores an expired entry (the flow is placed afresh); deleting it here
//! frees the slot, and frees `fullnat` source ports for good.
use anyhow::Context;
use aya::maps::{HashMap, MapData, MapError};
use lb_common::{ConnEntry, FlowKey, ReverseEntry};
use std::{path::Path, time::Duration};

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// Whether a reply entry still belongs to a live flow. The same rule as
/// the XDP program's reply path, so both agree on what is dead.
pub fn reverse_is_live(
    key: &FlowKey,
    reverse: &ReverseEntry,
    forward: Option<&ConnEntry>,
    now_ns: u64,
) -> bool {
    forward.is_some_and(|entry| {
        entry.expires_ns > now_ns
            && entry.backend_id == reverse.backend_id
            && entry.generation == reverse.generation
            && (entry.snat_port == 0 || entry.snat_port == key.dst_port)
    })
}

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub flows: usize,
    pub replies: usize,
}

/// Deletes expired flows, then reply entries whose flow is gone.
pub fn collect(
    conntrack: &mut HashMap<MapData, FlowKey, ConnEntry>,
    reverse: &mut HashMap<MapData, FlowKey, ReverseEntry>,
    now_ns: u64,
) -> Result<Collected, MapError> {
    let mut collected = Collected::default();
    let expired: Vec<FlowKey> = conntrack
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, entry)| entry.expires_ns <= now_ns)
        .map(|(key, _)| key)
        .collect();
    for key in &expired {
        // Gone already (LRU eviction, a race with the kernel): fine.
        if conntrack.remove(key).is_ok() {
            collected.flows += 1;
        }
    }
    let dead: Vec<FlowKey> = reverse
        .iter()
        .filter_map(Result::ok)
        .filter(|(key, entry)| {
            let forward = conntrack.get(&entry.forward, 0).ok();
            !reverse_is_live(key, entry, forward.as_ref(), now_ns)
        })
        .map(|(key, _)| key)
        .collect();
    for key in &dead {
        if reverse.remove(key).is_ok() {
            collected.replies += 1;
        }
    }
    Ok(collected)
}

/// Deletes dead flows on a thread of its own, through its own handles on
/// the pinned maps: a pass walks the whole table (two syscalls per entry),
/// which must not delay VRRP's timers in the main loop. It ends with the
/// process.
pub fn start_collector(pins: &Path, every: Duration) -> anyhow::Result<()> {
    use aya::maps::{HashMap as BpfHashMap, Map};
    let open = |name: &str| -> anyhow::Result<Map> {
        let data = MapData::from_pin(pins.join(name)).with_context(|| format!("opening {name}"))?;
        Ok(Map::from_map_data(data)?)
    };
    let mut conntrack: BpfHashMap<MapData, lb_common::FlowKey, lb_common::ConnEntry> =
        BpfHashMap::try_from(open(lb_common::map_names::CONNTRACK)?)?;
    let mut reverse: BpfHashMap<MapData, lb_common::FlowKey, lb_common::ReverseEntry> =
        BpfHashMap::try_from(open(lb_common::map_names::NAT_REVERSE)?)?;
    std::thread::Builder::new()
        .name("flow-collector".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let now_ns = monotonic_now_ns();
            match collect(&mut conntrack, &mut reverse, now_ns) {
                Ok(c) if c.flows + c.replies > 0 => {
                    tracing::debug!(
                        flows = c.flows,
                        replies = c.replies,
                        "expired connection-table entries removed"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("collecting expired flows: {e}"),
            }
        })?;
    Ok(())
}

/// How often dead flows are collected: twice per shortest timeout, within
/// 1..=10 s (each pass walks the whole connection table).
pub fn collection_interval(tunables: &super::Tunables) -> Duration {
    let shortest = tunables
        .udp_timeout
        .min(tunables.tcp_fin_timeout)
        .min(tunables.tcp_timeout);
    (shortest / 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_ns: u64, snat_port: u16) -> ConnEntry {
        ConnEntry {
            backend_id: 3,
            generation: 7,
            expires_ns,
            snat_port,
            ..ConnEntry::default()
        }
    }

    fn reverse() -> ReverseEntry {
        ReverseEntry {
            forward: FlowKey::default(),
            backend_id: 3,
            generation: 7,
        }
    }

    #[test]
    fn a_reply_entry_lives_exactly_as_long_as_its_flow() {
        let key = FlowKey {
            dst_port: 2000,
            ..FlowKey::default()
        };
        let r = reverse();
        assert!(reverse_is_live(&key, &r, Some(&entry(100, 0)), 99));
        assert!(
            !reverse_is_live(&key, &r, Some(&entry(100, 0)), 100),
            "expired"
        );
        assert!(!reverse_is_live(&key, &r, None, 0), "flow gone");
        let moved = ConnEntry {
            generation: 8,
            ..entry(100, 0)
        };
        assert!(
            !reverse_is_live(&key, &r, Some(&moved), 0),
            "re-hashed elsewhere"
        );
        assert!(reverse_is_live(&key, &r, Some(&entry(100, 2000)), 0));
        assert!(
            !reverse_is_live(&key, &r, Some(&entry(100, 2001)), 0),
            "fullnat flow moved to another port"
        );
    }
}
