//! Which proxy worker serves an accepted connection. Every worker accepts
//! on every listener, and the one the kernel wakes first takes a burst of
//! connections whole: wrk's 32 connections landed 2:1 on two workers, and
//! the loaded worker's clients waited while the other idled. HAProxy
//! spreads by load (`tune.listener.multi-queue`, on by default): so does
//! lbd. The accepting worker keeps a connection unless another serves
//! [`SLACK`] fewer, then hands it to the least loaded one, which serves it
//! to the end (a request still never crosses threads).
//!
//! [`pick`] is the sans-IO choice; [`WorkerLoads`] counts each worker's
//! connections and the thread-local index says which worker runs here.
use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
};

/// How many more connections the accepting worker may serve than the least
/// loaded one before it hands a connection over: 1 would move every other
/// connection of an even stream back and forth (a cross-thread wake-up
/// each); 2 keeps workers within two of each other.
pub const SLACK: usize = 2;

/// The worker that serves a connection accepted by worker `own`, given every
/// worker's open connections (`loads[i]`): `own` unless some worker serves
/// at least [`SLACK`] fewer, then the least loaded (the lowest index among
/// equals). An `own` out of range (a thread that is no worker) picks the
/// least loaded.
pub fn pick(own: usize, loads: &[usize]) -> usize {
    let Some((least, &fewest)) = loads
        .iter()
        .enumerate()
        .min_by_key(|&(index, load)| (*load, index))
    else {
        return own;
    };
    match loads.get(own) {
        Some(&mine) if mine < fewest + SLACK => own,
        _ => least,
    }
}

thread_local! {
    /// The proxy worker this thread is (0 for any other thread).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as proxy worker `index`.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The proxy worker this thread is.
pub fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// A counter on a cache line of its own: workers update theirs once per
/// connection, and never make another's line bounce.
#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicUsize);

/// Connections each worker serves now.
pub struct WorkerLoads {
    counts: Vec<Padded>,
}

impl WorkerLoads {
    pub fn new(workers: usize) -> Arc<WorkerLoads> {
        Arc::new(WorkerLoads {
            counts: (0..workers.max(1)).map(|_| Padded::default()).collect(),
        })
    }

    /// Every worker's count now (each read on its own: a racing accept can
    /// make the choice one off, never wrong for long).
    pub fn loads(&self) -> Vec<usize> {
        self.counts.iter().map(|c| c.0.load(Relaxed)).collect()
    }

    /// The worker for a connection the current worker accepted, counted
    /// against it until the guard drops.
    pub fn assign(self: &Arc<Self>) -> LoadGuard {
        let own = worker();
        // Two workers (the usual case) need no allocation.
        let target = if let [a, b] = self.counts.as_slice() {
            pick(own, &[a.0.load(Relaxed), b.0.load(Relaxed)])
        } else {
            pick(own, &self.loads())
        };
        // `pick` returns an index of `loads` (never empty: `new` makes at
        // least one counter).
        self.counts[target].0.fetch_add(1, Relaxed);
        LoadGuard {
            loads: self.clone(),
            worker: target,
        }
    }
}

/// One connection counted against [`LoadGuard::worker`].
pub struct LoadGuard {
    loads: Arc<WorkerLoads>,
    worker: usize,
}

impl LoadGuard {
    /// The worker chosen to serve the connection.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.loads.counts[self.worker].0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepting_worker_keeps_a_connection_within_the_slack() {
        let table: &[(usize, &[usize], usize)] = &[
            (0, &[0, 0], 0),
            (1, &[0, 0], 1),
            (0, &[1, 0], 0),
            (0, &[2, 1], 0),
            (1, &[5, 6], 1),
            (0, &[7], 0),
        ];
        for &(own, loads, expected) in table {
            assert_eq!(pick(own, loads), expected, "pick({own}, {loads:?})");
        }
    }

    #[test]
    fn a_worker_two_ahead_hands_over_to_the_least_loaded() {
        let table: &[(usize, &[usize], usize)] = &[
            (0, &[2, 0], 1),
            (1, &[0, 2], 0),
            (0, &[9, 3, 1, 1], 2),
            (3, &[4, 4, 4, 6], 0),
            (2, &[5, 3, 8], 1),
        ];
        for &(own, loads, expected) in table {
            assert_eq!(pick(own, loads), expected, "pick({own}, {loads:?})");
        }
    }

    #[test]
    fn a_thread_that_is_no_worker_picks_the_least_loaded() {
        assert_eq!(pick(5, &[3, 1]), 1);
        assert_eq!(pick(0, &[]), 0);
    }

    /// A burst accepted by one worker ends spread evenly, and every guard
    /// gives its count back.
    #[test]
    fn a_burst_on_one_worker_is_spread_evenly() {
        let loads = WorkerLoads::new(2);
        set_worker(0);
        let guards: Vec<LoadGuard> = (0..32).map(|_| loads.assign()).collect();
        let spread = loads.loads();
        assert_eq!(spread.iter().sum::<usize>(), 32);
        assert!(spread[0].abs_diff(spread[1]) <= SLACK, "{spread:?}");
        let handed_over = guards.iter().filter(|g| g.worker() == 1).count();
        assert_eq!(handed_over, spread[1]);
        drop(guards);
        assert_eq!(loads.loads(), [0, 0]);
    }

    #[test]
    fn three_workers_share_a_burst() {
        let loads = WorkerLoads::new(3);
        set_worker(2);
        let _guards: Vec<LoadGuard> = (0..30).map(|_| loads.assign()).collect();
        let spread = loads.loads();
        let (max, min) = (spread.iter().max(), spread.iter().min());
        assert!(
            max.zip(min).is_some_and(|(a, b)| a - b <= SLACK),
            "{spread:?}"
        );
    }
}
