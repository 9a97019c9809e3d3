//! The load-spreading algorithms: smooth weighted round robin (dynamic
//! weights), static-rr over the configured weights, and leastconn.
use super::Balancer;
use crate::proxy::config::ServerId;
use crate::proxy::snapshot::BackendRuntime;
use std::sync::atomic::Ordering;

/// Smooth weighted round robin (as nginx): each pick adds every
/// candidate's weight to its score, takes the highest score and takes the
/// total back from it. A weight-3 server among weight-1 ones is picked
/// three times per round, spread out, never three in a row.
pub(super) fn smooth_pick(
    balancer: &Balancer,
    runtime: &BackendRuntime,
    candidates: &[ServerId],
) -> Option<ServerId> {
    let mut scores = balancer.smooth.lock().unwrap_or_else(|e| e.into_inner());
    let mut total = 0i64;
    let mut best: Option<ServerId> = None;
    for &id in candidates {
        let weight = i64::from(runtime.servers[id].weight());
        *scores.get_mut(id)? += weight;
        total += weight;
        if best.is_none_or(|b| scores[id] > scores[b]) {
            best = Some(id);
        }
    }
    let best = best?;
    scores[best] -= total;
    Some(best)
}

/// One round of smooth round robin over static weights: static-rr's
/// sequence (length = sum of weights).
pub(super) fn static_sequence(weights: &[u32]) -> Vec<ServerId> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut scores = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = None;
        for (id, &w) in weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            scores[id] += i64::from(w);
            if best.is_none_or(|b: usize| scores[id] > scores[b]) {
                best = Some(id);
            }
        }
        if let Some(best) = best {
            scores[best] -= total;
            order.push(best);
        }
    }
    order
}

/// Next server of the static sequence that is a candidate now.
pub(super) fn static_pick(balancer: &Balancer, candidates: &[ServerId]) -> Option<ServerId> {
    let order = &balancer.static_order;
    if order.is_empty() {
        return candidates.first().copied();
    }
    for _ in 0..order.len() {
        let at = balancer.cursor.fetch_add(1, Ordering::Relaxed) % order.len();
        if candidates.contains(&order[at]) {
            return Some(order[at]);
        }
    }
    // Candidates whose configured weight is 0 but runtime weight is not.
    candidates.first().copied()
}

/// Fewest (connections + queued + 1) per weight; among equals, the next one
/// after the previous pick, so ties go round robin.
pub(super) fn least_conn_pick(
    balancer: &Balancer,
    runtime: &BackendRuntime,
    candidates: &[ServerId],
) -> Option<ServerId> {
    if candidates.is_empty() {
        return None;
    }
    let start = balancer.cursor.load(Ordering::Relaxed) % candidates.len();
    let mut best: Option<(usize, u64, u64)> = None;
    for offset in 0..candidates.len() {
        let at = (start + offset) % candidates.len();
        let server = &runtime.servers[candidates[at]];
        let load = u64::from(server.load()) + 1;
        let weight = u64::from(server.weight().max(1));
        let better = match best {
            None => true,
            // load/weight < best_load/best_weight, without division.
            Some((_, best_load, best_weight)) => load * best_weight < best_load * weight,
        };
        if better {
            best = Some((at, load, weight));
        }
    }
    let (at, _, _) = best?;
    balancer.cursor.store(at + 1, Ordering::Relaxed);
    Some(candidates[at])
}
