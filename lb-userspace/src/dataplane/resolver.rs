//! Keeps the backends' MACs known: the kernel's neighbour table first,
//! then ARP / neighbour solicitations (`neighbour`), and teaches the
//! kernel what it learnt. The daemon runs a refresh beside its loop.
use super::neighbour::{self, InterfaceInfo};
use crate::config::Config;
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};
use tracing::warn;

/// How often resolved backend MACs are checked again.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(30);
/// How long to wait for ARP replies in one round.
const ARP_WAIT: Duration = Duration::from_millis(500);

/// Re-resolves the backends' MACs: every second while some are unknown,
/// every [`NEIGHBOUR_REFRESH`] otherwise; sends the map when it changes.
pub async fn refresh_neighbours(
    handle: rtnetlink::Handle,
    interface: InterfaceInfo,
    wanted: tokio::sync::watch::Receiver<Vec<IpAddr>>,
    mut known: HashMap<IpAddr, [u8; 6]>,
    changes: tokio::sync::mpsc::Sender<HashMap<IpAddr, [u8; 6]>>,
) {
    let mut last_full = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let targets = wanted.borrow().clone();
        let unresolved = targets.iter().any(|a| !known.contains_key(a));
        if !unresolved && last_full.elapsed() < NEIGHBOUR_REFRESH {
            continue;
        }
        last_full = Instant::now();
        let fresh = resolve(&handle, &interface, &targets).await;
        if fresh != known {
            known = fresh.clone();
            if changes.send(fresh).await.is_err() {
                return;
            }
        }
    }
}

/// Backends whose neighbour entry matters: a `dsr` backend's MAC goes into
/// the maps; the NAT modes take the next hop from the kernel's FIB, which
/// answers only for neighbours the kernel knows (see [`resolve`]).
pub fn backend_addresses(config: &Config) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = config
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.address))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// MACs of `targets`: the kernel's neighbour table, then ARP / neighbour
/// solicitations for the rest.
pub async fn resolve(
    handle: &rtnetlink::Handle,
    interface: &InterfaceInfo,
    targets: &[IpAddr],
) -> HashMap<IpAddr, [u8; 6]> {
    let mut found = match neighbour::kernel_neighbours(handle, interface.index).await {
        Ok(all) => all
            .into_iter()
            .filter(|(ip, _)| targets.contains(ip))
            .collect(),
        Err(e) => {
            warn!("reading the neighbour table: {e}");
            HashMap::new()
        }
    };
    let missing: Vec<IpAddr> = targets
        .iter()
        .filter(|t| !found.contains_key(t))
        .copied()
        .collect();
    // Off-link backends: a nat/fullnat one is reached through a router
    // (the FIB's business); a dsr one cannot work.
    let missing: Vec<IpAddr> = missing
        .into_iter()
        .filter(|t| interface.source_for(*t).is_some())
        .collect();
    let interface_index = interface.index;
    if !missing.is_empty() {
        let interface = interface.clone();
        let asked = missing.clone();
        match tokio::task::spawn_blocking(move || neighbour::solicit(&interface, &asked, ARP_WAIT))
            .await
        {
            Ok(Ok(answers)) => {
                // The kernel ignores answers to solicitations it did not
                // send; tell it (as "stale": it re-checks on its own use).
                // Without the entry, bpf_fib_lookup answers "no neighbour"
                // for every nat/fullnat packet to this backend, and a
                // fullnat one, whose source is our own address, would then
                // be dropped by the kernel as a martian.
                for (ip, mac) in &answers {
                    if let Err(e) =
                        neighbour::teach_kernel(handle, interface_index, *ip, *mac).await
                    {
                        warn!(backend = %ip, "adding the neighbour entry: {e}");
                    }
                }
                found.extend(answers)
            }
            Ok(Err(e)) => warn!("neighbour resolution: {e}"),
            Err(e) => warn!("neighbour resolution task: {e}"),
        }
        for target in missing.iter().filter(|t| !found.contains_key(t)) {
            warn!(backend = %target, "no ARP / neighbour advertisement reply yet (a dsr backend gets no traffic until it answers)");
        }
    }
    found
}
