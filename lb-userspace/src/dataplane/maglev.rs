//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with weights.
//!
//! Each backend walks its own permutation of the table, derived only from
//! its identity (address and port), and claims the next free slot on its
//! turn. Weights decide how many turns a backend gets per round. Because
//! nothing here depends on ordering, ids or randomness, two nodes with the
//! same configuration build identical tables: a DSR flow keeps its backend
//! when VRRP moves the VIP to the other node.
use lb_common::NO_BACKEND;

/// A backend as Maglev sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevBackend {
    /// Stable identity, e.g. "198.18.0.11:80"; decides the permutation.
    pub identity: String,
    pub weight: u32,
}

/// Builds a table of `size` slots (a prime). Each slot holds an index into
/// `backends`, or [`NO_BACKEND`] when no backend has a positive weight.
pub fn build_table(backends: &[MaglevBackend], size: u32) -> Vec<u32> {
    let mut table = vec![NO_BACKEND; size as usize];
    let max_weight = backends.iter().map(|b| b.weight).max().unwrap_or(0);
    if max_weight == 0 || size < 2 {
        return table;
    }
    let size64 = u64::from(size);
    struct Walker {
        index: u32,
        weight: u32,
        position: u64,
        skip: u64,
        credit: u32,
    }
    let mut walkers: Vec<Walker> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .map(|(index, b)| {
            let (offset, skip) = permutation(&b.identity, size64);
            Walker {
                index: index as u32,
                weight: b.weight,
                position: offset,
                skip,
                credit: 0,
            }
        })
        .collect();
    // Contested slots go to whoever walks first: walk in identity order so
    // that the order of backends in the config file does not matter.
    walkers.sort_by(|a, b| {
        backends[a.index as usize]
            .identity
            .cmp(&backends[b.index as usize].identity)
    });
    let mut filled = 0usize;
    loop {
        for walker in &mut walkers {
            // A backend of weight w gets w/max_weight turns per round.
            walker.credit += walker.weight;
            if walker.credit < max_weight {
                continue;
            }
            walker.credit -= max_weight;
            // The permutation visits every slot once per `size` steps (size
            // is prime and 0 < skip < size), so a free slot is always found.
            while table[walker.position as usize] != NO_BACKEND {
                walker.position = (walker.position + walker.skip) % size64;
            }
            table[walker.position as usize] = walker.index;
            walker.position = (walker.position + walker.skip) % size64;
            filled += 1;
            if filled == table.len() {
                return table;
            }
        }
    }
}

/// (offset, skip) of a backend's permutation: offset in [0, size), skip in
/// [1, size).
fn permutation(identity: &str, size: u64) -> (u64, u64) {
    let h = fnv1a64(identity.as_bytes());
    let offset = splitmix64(h) % size;
    let skip = splitmix64(h ^ 0x9e37_79b9_7f4a_7c15) % (size - 1) + 1;
    (offset, skip)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[u32]) -> Vec<MaglevBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| MaglevBackend {
                identity: format!("198.18.1.{}:80", i + 10),
                weight,
            })
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &slot in table {
            counts[slot as usize] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_are_balanced_within_two_percent() {
        let table = build_table(&backends(&[1; 7]), 65_537);
        let expected = 65_537.0 / 7.0;
        for count in shares(&table, 7) {
            let deviation = (count as f64 - expected).abs() / expected;
            assert!(deviation < 0.02, "count {count}, expected {expected}");
        }
    }

    #[test]
    fn unequal_weights_are_proportional() {
        let weights = [1, 2, 3, 4];
        let table = build_table(&backends(&weights), 65_537);
        let total: u32 = weights.iter().sum();
        for (count, weight) in shares(&table, 4).into_iter().zip(weights) {
            let expected = 65_537.0 * f64::from(weight) / f64::from(total);
            let deviation = (count as f64 - expected).abs() / expected;
            assert!(deviation < 0.02, "weight {weight}: {count} vs {expected}");
        }
    }

    #[test]
    fn zero_weight_backends_get_nothing() {
        let table = build_table(&backends(&[1, 0, 1]), 251);
        assert!(!table.contains(&1));
        assert!(!table.contains(&NO_BACKEND));
    }

    #[test]
    fn no_usable_backend_gives_an_empty_table() {
        assert!(build_table(&backends(&[0, 0]), 13)
            .iter()
            .all(|&s| s == NO_BACKEND));
        assert!(build_table(&[], 13).iter().all(|&s| s == NO_BACKEND));
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 10;
        let all = backends(&[1; 10]);
        let before = build_table(&all, 65_537);
        let removed = 3usize;
        let remaining: Vec<MaglevBackend> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, b)| b.clone())
            .collect();
        let after = build_table(&remaining, 65_537);
        // Map indices of `after` back to indices of `all`.
        let original = |i: u32| if (i as usize) < removed { i } else { i + 1 };
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(&b, &a)| b != original(a))
            .count();
        let owned_by_removed = before.iter().filter(|&&b| b as usize == removed).count();
        // Every slot of the removed backend must move; Maglev moves a few
        // more. Bound the total at 1.5 / N of the table.
        assert!(moved >= owned_by_removed);
        let bound = 65_537 * 3 / (2 * n);
        assert!(moved <= bound, "moved {moved} slots, bound {bound}");
    }

    #[test]
    fn tables_do_not_depend_on_backend_order() {
        let mut list = backends(&[1, 2, 3]);
        let a = build_table(&list, 251);
        list.reverse();
        let b = build_table(&list, 251);
        // Same identities own the same slots.
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                list[*y as usize].identity,
                backends(&[1, 2, 3])[*x as usize].identity
            );
        }
    }
}
