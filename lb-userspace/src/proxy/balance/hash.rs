//! Consistent hashing for `source`, `uri`, `url_param`, `hdr`, `rdp-cookie`
//! and `random`: a key's hash indexes a Maglev table (the XDP tables' own
//! builder) over the current candidates and their weights, so a server
//! coming or going moves only its share of the keys. The table is rebuilt
//! only when the candidates or their weights change.
use super::{Balancer, UriHash};
use crate::dataplane::maglev::{build_table, MaglevBackend};
use crate::proxy::config::{Backend, ServerId};
use crate::proxy::snapshot::BackendRuntime;
use arc_swap::ArcSwapOption;
use hyper::http::Uri;
use std::sync::{Arc, Mutex};

/// Maglev needs many more slots than servers; 65537 keeps every share
/// within about 2% of its weight for up to a few hundred servers.
const TABLE_SIZE: u32 = lb_common::DEFAULT_RING_SIZE;

#[derive(Debug)]
struct Table {
    /// The (server, weight) pairs it was built for.
    built_for: Vec<(ServerId, u32)>,
    /// Slot -> server id.
    slots: Vec<u32>,
}

#[derive(Debug, Default)]
pub(super) struct TableCache {
    current: ArcSwapOption<Table>,
    rebuilding: Mutex<()>,
}

impl TableCache {
    /// The table for `candidates` at their current weights; built (and
    /// allocated) only when they changed since the last build.
    fn table_for(
        &self,
        config: &Backend,
        runtime: &BackendRuntime,
        candidates: &[ServerId],
    ) -> Arc<Table> {
        let wanted = || {
            candidates
                .iter()
                .map(|&id| (id, runtime.servers[id].weight()))
        };
        let current = |table: &Table| table.built_for.iter().copied().eq(wanted());
        if let Some(table) = self.current.load_full() {
            if current(&table) {
                return table;
            }
        }
        let _guard = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = self.current.load_full() {
            if current(&table) {
                return table;
            }
        }
        let built_for: Vec<(ServerId, u32)> = wanted().collect();
        // Identity = server name: keys stay with a server whose address
        // changes, and two nodes with the same config agree.
        let maglev: Vec<MaglevBackend> = built_for
            .iter()
            .map(|&(id, weight)| MaglevBackend {
                identity: config.servers[id].name.clone(),
                weight,
            })
            .collect();
        let slots = build_table(&maglev, TABLE_SIZE)
            .into_iter()
            .map(|slot| match built_for.get(slot as usize) {
                Some(&(id, _)) => id as u32,
                None => lb_common::NO_BACKEND,
            })
            .collect();
        let table = Arc::new(Table { built_for, slots });
        self.current.store(Some(Arc::clone(&table)));
        table
    }
}

fn lookup(
    balancer: &Balancer,
    config: &Backend,
    runtime: &BackendRuntime,
    candidates: &[ServerId],
    hash: u64,
) -> Option<ServerId> {
    let table = balancer.table.table_for(config, runtime, candidates);
    let slot = *table.slots.get((hash % u64::from(TABLE_SIZE)) as usize)?;
    (slot != lb_common::NO_BACKEND).then_some(slot as ServerId)
}

/// The candidate owning `hash`.
pub(super) fn table_pick(
    balancer: &Balancer,
    config: &Backend,
    runtime: &BackendRuntime,
    candidates: &[ServerId],
    hash: u64,
) -> Option<ServerId> {
    lookup(balancer, config, runtime, candidates, hash)
}

/// `random(N)`: N weighted random draws, the least loaded (per weight)
/// that has a free slot wins.
pub(super) fn random_pick(
    balancer: &Balancer,
    config: &Backend,
    runtime: &BackendRuntime,
    candidates: &[ServerId],
    not_full: &[ServerId],
    draws: u32,
) -> Option<ServerId> {
    let mut best: Option<(ServerId, u64, u64)> = None;
    for _ in 0..draws {
        let Some(id) = lookup(
            balancer,
            config,
            runtime,
            candidates,
            balancer.next_random(),
        ) else {
            continue;
        };
        if !not_full.contains(&id) {
            continue;
        }
        let server = &runtime.servers[id];
        let load = u64::from(server.load()) + 1;
        let weight = u64::from(server.weight().max(1));
        if best.is_none_or(|(_, l, w)| load * w < l * weight) {
            best = Some((id, load, weight));
        }
    }
    best.map(|(id, _, _)| id)
        .or_else(|| not_full.first().copied())
}

/// 64-bit FNV-1a with a final mix: keys that differ in one byte land far
/// apart in the table.
pub(super) fn hash_bytes(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut x = h ^ (h >> 33);
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The part of the URI `balance uri` hashes: the path (with `whole`, path
/// and query), cut after `depth` directories, then to `len` characters.
pub fn uri_key(uri: &Uri, options: UriHash) -> String {
    let text = if options.whole {
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    } else {
        uri.path()
    };
    let mut end = text.len();
    if options.depth > 0 {
        // "/a/b/c" with depth 2 hashes "/a/b": stop at the (depth+1)th '/'.
        if let Some((at, _)) = text
            .char_indices()
            .filter(|&(_, c)| c == '/')
            .nth(options.depth)
        {
            end = at;
        }
    }
    let mut key = &text[..end];
    if options.len > 0 {
        if let Some((at, _)) = key.char_indices().nth(options.len) {
            key = &key[..at];
        }
    }
    key.to_owned()
}
