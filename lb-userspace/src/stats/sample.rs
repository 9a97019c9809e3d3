//! The numbers every view shows, read at most once per refresh period: the
//! per-CPU maps are summed by `cli::status::collect` (the very code of
//! `lbd status`), and the result is shared by the page, its exports and
//! `/metrics` until it is older than the period. Rates come from the
//! difference with the previous sample.
use crate::cli::status::{collect, StatusReport};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// Packets, bytes and new flows per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub packets: f64,
    pub bytes: f64,
    pub new_flows: f64,
}

/// What a row is: a service by id, or a backend by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowId {
    Service(u32),
    Backend(u32),
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub report: StatusReport,
    pub rates: HashMap<RowId, Rates>,
    pub at: Instant,
}

impl Sample {
    pub fn rates(&self, row: RowId) -> Rates {
        self.rates.get(&row).copied().unwrap_or_default()
    }
}

type Counts = HashMap<RowId, (u64, u64, u64)>;

fn counts(report: &StatusReport) -> Counts {
    let mut out = HashMap::new();
    for s in &report.services {
        out.insert(RowId::Service(s.id), (s.packets, s.bytes, s.new_flows));
        for b in &s.backends {
            out.insert(RowId::Backend(b.id), (b.packets, b.bytes, b.new_flows));
        }
    }
    out
}

/// Rates between two samples `elapsed` apart (a counter that went down,
/// after a restart, gives 0).
pub fn rates(previous: &Counts, current: &Counts, elapsed: Duration) -> HashMap<RowId, Rates> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return HashMap::new();
    }
    current
        .iter()
        .filter_map(|(id, now)| {
            let before = previous.get(id)?;
            let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            Some((
                *id,
                Rates {
                    packets: per_sec(now.0, before.0),
                    bytes: per_sec(now.1, before.1),
                    new_flows: per_sec(now.2, before.2),
                },
            ))
        })
        .collect()
}

/// The shared, cached sample of one instance.
pub struct Sampler {
    instance: String,
    max_age: Duration,
    last: Mutex<Option<(Arc<Sample>, Counts)>>,
    /// An admin action changed something: the next view reads again
    /// rather than show the state from before it.
    expired: AtomicBool,
}

impl Sampler {
    pub fn new(instance: String, max_age: Duration) -> Sampler {
        Sampler {
            instance,
            max_age,
            last: Mutex::new(None),
            expired: AtomicBool::new(false),
        }
    }

    /// The current sample: the cached one while younger than the refresh
    /// period (and not expired), else a new read of the maps.
    pub fn get(&self) -> Result<Arc<Sample>, String> {
        self.get_with(|| collect(&self.instance).map_err(|e| e.to_string()))
    }

    /// After an admin action: the page the browser is sent back to (and
    /// every view after it) shows the new state, not the cached one.
    pub fn expire(&self) {
        self.expired.store(true, Ordering::SeqCst);
    }

    fn get_with(
        &self,
        read: impl FnOnce() -> Result<StatusReport, String>,
    ) -> Result<Arc<Sample>, String> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some((sample, _)) = last.as_ref() {
            if now.saturating_duration_since(sample.at) < self.max_age
                && !self.expired.load(Ordering::SeqCst)
            {
                return Ok(sample.clone());
            }
        }
        self.expired.store(false, Ordering::SeqCst);
        let report = read()?;
        let current = counts(&report);
        let rates = match last.as_ref() {
            Some((previous, previous_counts)) => {
                rates(previous_counts, &current, now - previous.at)
            }
            None => HashMap::new(),
        };
        let sample = Arc::new(Sample {
            report,
            rates,
            at: now,
        });
        *last = Some((sample.clone(), current));
        Ok(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_per_second() {
        let before: Counts = [(RowId::Backend(1), (100, 1000, 10))].into();
        let after: Counts = [
            (RowId::Backend(1), (300, 5000, 12)),
            (RowId::Backend(2), (5, 5, 5)),
        ]
        .into();
        let r = rates(&before, &after, Duration::from_secs(2));
        assert_eq!(
            r[&RowId::Backend(1)],
            Rates {
                packets: 100.0,
                bytes: 2000.0,
                new_flows: 1.0
            }
        );
        assert!(
            !r.contains_key(&RowId::Backend(2)),
            "no rate without a previous value"
        );
        let reset = rates(&after, &before, Duration::from_secs(1));
        assert_eq!(reset[&RowId::Backend(1)].packets, 0.0);
    }

    /// A sample is reused within the period, and read again at once after
    /// `expire` (an admin action).
    #[test]
    fn an_action_expires_the_cached_sample() {
        let sampler = Sampler::new("none".into(), Duration::from_secs(3600));
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            Ok(crate::stats::tests_report())
        };
        let first = sampler.get_with(read).expect("sample");
        let again = sampler.get_with(read).expect("sample");
        assert!(Arc::ptr_eq(&first, &again), "reused within the period");
        assert_eq!(reads.get(), 1);
        sampler.expire();
        let fresh = sampler.get_with(read).expect("sample");
        assert!(!Arc::ptr_eq(&first, &fresh), "read again after an action");
        assert_eq!(reads.get(), 2);
        let _ = sampler.get_with(read).expect("sample");
        assert_eq!(reads.get(), 2, "then reused again");
    }
}
