//! The proxy's counters, per frontend, backend and server, with HAProxy's
//! meanings (its stats columns): sessions current/max/total, session rate,
//! bytes in/out, denied, errors (req/conn/resp), retries, redispatches and
//! responses by status class. Counters live in a registry keyed by name, so
//! they survive a reload; `lbd status` and the stats page read snapshots.
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, OnceLock,
    },
    time::Instant,
};

/// Milliseconds on a monotonic clock private to the process (the
/// connection task's turn, see [`super::clock`]).
pub fn now_ms() -> u64 {
    ms_at(super::clock::now())
}

/// [`now_ms`] of an instant already read (one clock read serves both).
pub fn ms_at(instant: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    instant
        .saturating_duration_since(*EPOCH.get_or_init(Instant::now))
        .as_millis() as u64
}

/// Events per second as HAProxy's `freq_ctr` counts them: the events of the
/// current second plus the previous second's, weighted by the part of that
/// second still inside the sliding one-second window.
#[derive(Debug, Default)]
pub struct RateCounter {
    second: AtomicU64,
    current: AtomicU64,
    previous: AtomicU64,
}

impl RateCounter {
    pub fn add(&self, now_ms: u64) {
        self.rotate(now_ms / 1000);
        self.current.fetch_add(1, Relaxed);
    }

    /// Events over the last second at `now_ms`.
    pub fn read(&self, now_ms: u64) -> u64 {
        self.rotate(now_ms / 1000);
        let elapsed = now_ms % 1000;
        let previous = self.previous.load(Relaxed);
        self.current.load(Relaxed) + previous * (1000 - elapsed) / 1000
    }

    fn rotate(&self, second: u64) {
        let seen = self.second.load(Relaxed);
        if seen >= second {
            return;
        }
        // One thread wins the rotation; losers count into the new second.
        if self
            .second
            .compare_exchange(seen, second, Relaxed, Relaxed)
            .is_ok()
        {
            let last = self.current.swap(0, Relaxed);
            self.previous
                .store(if second == seen + 1 { last } else { 0 }, Relaxed);
        }
    }
}

/// HTTP status classes counted for responses: 1xx..5xx and other.
const STATUS_CLASSES: usize = 6;

/// One frontend's, backend's or server's counters (a field HAProxy does not
/// show for the kind stays zero).
#[derive(Debug, Default)]
pub struct Counters {
    current: AtomicU64,
    max: AtomicU64,
    total: AtomicU64,
    rate: RateCounter,
    rate_max: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub denied_requests: AtomicU64,
    pub denied_responses: AtomicU64,
    pub request_errors: AtomicU64,
    pub connection_errors: AtomicU64,
    pub response_errors: AtomicU64,
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    pub queued_current: AtomicU64,
    pub queued_max: AtomicU64,
    responses: [AtomicU64; STATUS_CLASSES],
}

impl Counters {
    /// Counts a session (a connection on a frontend, a request or tcp
    /// session on a backend or server) for as long as the guard lives.
    pub fn open_session(self: &Arc<Self>) -> SessionGuard {
        self.open_session_at(now_ms())
    }

    /// [`Counters::open_session`] at `now` ([`now_ms`]) already read.
    pub fn open_session_at(self: &Arc<Self>, now: u64) -> SessionGuard {
        let current = self.current.fetch_add(1, Relaxed) + 1;
        self.max.fetch_max(current, Relaxed);
        self.total.fetch_add(1, Relaxed);
        self.rate.add(now);
        self.rate_max.fetch_max(self.rate.read(now), Relaxed);
        SessionGuard(self.clone())
    }

    pub fn current(&self) -> u64 {
        self.current.load(Relaxed)
    }

    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Relaxed);
    }

    pub fn count_response(&self, status: u16) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => STATUS_CLASSES - 1,
        };
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// Counts a request entering a queue; the guard leaves it.
    pub fn enter_queue(self: &Arc<Self>) -> QueueGuard {
        let queued = self.queued_current.fetch_add(1, Relaxed) + 1;
        self.queued_max.fetch_max(queued, Relaxed);
        QueueGuard {
            counters: self.clone(),
        }
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let now = now_ms();
        let load = |c: &AtomicU64| c.load(Relaxed);
        CounterSnapshot {
            sessions_current: load(&self.current),
            sessions_max: load(&self.max),
            sessions_total: load(&self.total),
            session_rate: self.rate.read(now),
            session_rate_max: load(&self.rate_max),
            queue_current: load(&self.queued_current),
            queue_max: load(&self.queued_max),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            denied_requests: load(&self.denied_requests),
            denied_responses: load(&self.denied_responses),
            request_errors: load(&self.request_errors),
            connection_errors: load(&self.connection_errors),
            response_errors: load(&self.response_errors),
            retries: load(&self.retries),
            redispatches: load(&self.redispatches),
            responses: ResponseClasses {
                informational: load(&self.responses[0]),
                success: load(&self.responses[1]),
                redirection: load(&self.responses[2]),
                client_error: load(&self.responses[3]),
                server_error: load(&self.responses[4]),
                other: load(&self.responses[5]),
            },
        }
    }
}

/// One open session; closes it on drop.
#[derive(Debug)]
pub struct SessionGuard(Arc<Counters>);

impl SessionGuard {
    pub fn counters(&self) -> &Arc<Counters> {
        &self.0
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Relaxed);
    }
}

/// One queued request, counted in the queue's current and maximum length
/// (its position, `%sq`/`%bq`, is the queue's: `proxy::queue`); leaves on
/// drop.
#[derive(Debug)]
pub struct QueueGuard {
    counters: Arc<Counters>,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.counters.queued_current.fetch_sub(1, Relaxed);
    }
}

/// One client connection open in the process (HAProxy's `actconn`).
#[derive(Debug)]
pub struct ConnectionGuard(Arc<AtomicU64>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// HAProxy's `hrsp_1xx` .. `hrsp_5xx`, `hrsp_other`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseClasses {
    pub informational: u64,
    pub success: u64,
    pub redirection: u64,
    pub client_error: u64,
    pub server_error: u64,
    pub other: u64,
}

/// The counters at one moment, for `lbd status --json` and the stats page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    /// `scur`, `smax`, `stot`.
    pub sessions_current: u64,
    pub sessions_max: u64,
    pub sessions_total: u64,
    /// `rate`, `rate_max`: sessions per second over the last second.
    pub session_rate: u64,
    pub session_rate_max: u64,
    /// `qcur`, `qmax`: requests waiting for a server slot.
    pub queue_current: u64,
    pub queue_max: u64,
    /// `bin`, `bout`: bytes from clients, bytes to clients.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `dreq`, `dresp`.
    pub denied_requests: u64,
    pub denied_responses: u64,
    /// `ereq`, `econ`, `eresp`.
    pub request_errors: u64,
    pub connection_errors: u64,
    pub response_errors: u64,
    /// `wretr`, `wredis`.
    pub retries: u64,
    pub redispatches: u64,
    pub responses: ResponseClasses,
}

/// Counters by name, kept across reloads: a frontend, backend or server that
/// survives a reload keeps its counters; one that is removed loses them.
#[derive(Debug)]
pub struct Registry<K> {
    entries: Mutex<HashMap<K, Arc<Counters>>>,
}

impl<K> Default for Registry<K> {
    fn default() -> Self {
        Registry {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Registry<K> {
    pub fn get(&self, key: &K) -> Arc<Counters> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(key.clone()).or_default().clone()
    }

    /// Drops the counters of every key `keep` rejects.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|key, _| keep(key));
    }
}

/// Counters of the whole proxy: frontends, backends and (backend, server).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    pub frontends: Registry<Arc<str>>,
    pub backends: Registry<Arc<str>>,
    pub servers: Registry<(Arc<str>, Arc<str>)>,
    /// Client connections open on every frontend (`actconn`).
    connections: Arc<AtomicU64>,
}

impl ProxyCounters {
    /// Counts a client connection for as long as the guard lives.
    pub fn open_connection(&self) -> ConnectionGuard {
        self.connections.fetch_add(1, Relaxed);
        ConnectionGuard(self.connections.clone())
    }

    /// Client connections open now (`actconn`).
    pub fn connections(&self) -> u32 {
        u32::try_from(self.connections.load(Relaxed)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_current_max_total() {
        let counters = Arc::new(Counters::default());
        let a = counters.open_session();
        let b = counters.open_session();
        drop(a);
        let _c = counters.open_session();
        drop(b);
        let s = counters.snapshot();
        assert_eq!(
            (s.sessions_current, s.sessions_max, s.sessions_total),
            (1, 2, 3)
        );
        assert_eq!(s.session_rate_max, 3);
    }

    #[test]
    fn rate_slides_over_the_last_second() {
        let rate = RateCounter::default();
        for _ in 0..10 {
            rate.add(5_000);
        }
        assert_eq!(rate.read(5_999), 10);
        // Half-way through the next second, half of the previous counts.
        assert_eq!(rate.read(6_500), 5);
        rate.add(6_500);
        assert_eq!(rate.read(6_500), 6);
        // Two seconds later nothing is left.
        assert_eq!(rate.read(8_000), 0);
    }

    #[test]
    fn responses_by_class() {
        let counters = Counters::default();
        for status in [101, 200, 204, 302, 404, 503, 999] {
            counters.count_response(status);
        }
        let r = counters.snapshot().responses;
        assert_eq!(
            [
                r.informational,
                r.success,
                r.redirection,
                r.client_error,
                r.server_error,
                r.other
            ],
            [1, 2, 1, 1, 1, 1]
        );
    }

    #[test]
    fn queue_length_counts_current_and_max() {
        let backend = Arc::new(Counters::default());
        let first = backend.enter_queue();
        let second = backend.enter_queue();
        let third = backend.enter_queue();
        assert_eq!(backend.snapshot().queue_current, 3);
        drop((first, second));
        let fourth = backend.enter_queue();
        assert_eq!(backend.snapshot().queue_current, 2);
        drop((third, fourth));
        assert_eq!(backend.snapshot().queue_current, 0);
        assert_eq!(backend.snapshot().queue_max, 3);
        let counters = ProxyCounters::default();
        let a = counters.open_connection();
        let b = counters.open_connection();
        assert_eq!(counters.connections(), 2);
        drop((a, b));
        assert_eq!(counters.connections(), 0);
    }

    #[test]
    fn registry_keeps_counters_by_name() {
        let registry: Registry<Arc<str>> = Registry::default();
        let web: Arc<str> = "web".into();
        Counters::add(&registry.get(&web).bytes_in, 10);
        assert_eq!(registry.get(&web).snapshot().bytes_in, 10);
        registry.retain(|name| &**name != "web");
        assert_eq!(registry.get(&web).snapshot().bytes_in, 0);
    }
}
