//! The health-check driver: one task per checked backend (start offsets
//! spread over the interval, so checks never arrive in one burst), results
//! through rise/fall, administrative states, and the facts the planner
//! reads. Every transition is logged once, with its cause. A check that
//! could not run for a local reason (no file descriptor left, no memory)
//! is logged and changes nothing: the backend keeps its last state.
use crate::{
    config::Config,
    control::state_file::BackendHealthStatus,
    dataplane::desired::{BackendKey, Facts, Plan},
    health::{
        checks,
        state::{AdminState, BackendHealth, CheckResult},
    },
};
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Instant,
};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{error, info, warn};

pub type HealthEvent = (BackendKey, CheckResult);

pub struct HealthDriver {
    pub facts: Facts,
    /// rise/fall per checked backend.
    thresholds: HashMap<BackendKey, (u32, u32)>,
    tasks: Vec<JoinHandle<()>>,
    events: mpsc::Sender<HealthEvent>,
    failing_open: Vec<String>,
    /// Backends whose checks were disabled at runtime.
    checks_off: HashSet<BackendKey>,
}

impl Drop for HealthDriver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl HealthDriver {
    pub fn new(events: mpsc::Sender<HealthEvent>) -> Self {
        HealthDriver {
            facts: Facts::default(),
            thresholds: HashMap::new(),
            tasks: Vec::new(),
            events,
            failing_open: Vec::new(),
            checks_off: HashSet::new(),
        }
    }

    /// Follows the configuration: keeps the state of backends that remain,
    /// starts fresh ones as up, forgets removed ones, restarts the checks.
    pub fn configure(&mut self, config: &Config, now: Instant) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let mut health = HashMap::new();
        let mut admin = HashMap::new();
        let mut weights = HashMap::new();
        self.thresholds.clear();
        for service in &config.services {
            for backend in &service.backends {
                let key: BackendKey = (
                    service.name.clone(),
                    SocketAddr::new(backend.address, backend.port),
                );
                let state = self
                    .facts
                    .health
                    .remove(&key)
                    .unwrap_or_else(|| BackendHealth::new(now));
                health.insert(key.clone(), state);
                if let Some(a) = self.facts.admin.remove(&key) {
                    admin.insert(key.clone(), a);
                }
                if let Some(w) = self.facts.weights.remove(&key) {
                    weights.insert(key.clone(), w);
                }
                if let Some(check) = backend.health_check.clone() {
                    self.thresholds
                        .insert(key.clone(), (check.rise, check.fall));
                    let events = self.events.clone();
                    let offset = spread(&key, check.interval);
                    self.tasks.push(tokio::spawn(async move {
                        tokio::time::sleep(offset).await;
                        let mut tick = tokio::time::interval(check.interval);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        let mut local_failure = false;
                        loop {
                            tick.tick().await;
                            let result = match checks::run(&check, key.1.ip(), key.1.port()).await
                            {
                                Ok(result) => result,
                                Err(e) => {
                                    if !local_failure {
                                        error!(service = %key.0, backend = %key.1,
                                            "health check could not run here ({e}): the backend keeps its state until checks run again");
                                    }
                                    local_failure = true;
                                    continue;
                                }
                            };
                            if local_failure {
                                info!(service = %key.0, backend = %key.1, "health checks run again");
                                local_failure = false;
                            }
                            if events.send((key.clone(), result)).await.is_err() {
                                return;
                            }
                        }
                    }));
                }
            }
        }
        self.facts.health = health;
        self.facts.admin = admin;
        self.facts.weights = weights;
        let kept = &self.facts.health;
        self.checks_off.retain(|key| kept.contains_key(key));
    }

    /// HAProxy's `enable health` / `disable health`: disabled, results are
    /// ignored and the backend counts as up. True when its health changed.
    pub fn set_checks(
        &mut self,
        service: &str,
        backend: &str,
        enabled: bool,
        now: Instant,
    ) -> Result<bool, String> {
        let key = self.find(service, backend)?;
        info!(service = %key.0, backend = %key.1, enabled, "health checks switched at runtime");
        if enabled {
            self.checks_off.remove(&key);
            return Ok(false);
        }
        self.checks_off.insert(key.clone());
        match self.facts.health.get_mut(&key) {
            Some(health) if !health.up => {
                health.up = true;
                health.changed_at = now;
                health.serving_since = now;
                health.downtime.observe(false, now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub fn checks_enabled(&self, key: &BackendKey) -> bool {
        !self.checks_off.contains(key)
    }

    /// Records a result; true when the backend changed state.
    pub fn record(&mut self, key: &BackendKey, result: CheckResult, now: Instant) -> bool {
        if self.checks_off.contains(key) {
            return false;
        }
        let (Some(&(rise, fall)), Some(health)) =
            (self.thresholds.get(key), self.facts.health.get_mut(key))
        else {
            return false; // from a check of a previous configuration
        };
        let detail = result.detail.clone();
        match health.record(now, result, rise, fall) {
            Some(true) => {
                info!(service = %key.0, backend = %key.1, "backend is UP: {detail}");
                true
            }
            Some(false) => {
                warn!(service = %key.0, backend = %key.1, "backend is DOWN: {detail}");
                true
            }
            None => false,
        }
    }

    /// The configured backend `backend` ("address" or "address:port")
    /// of `service`.
    pub fn find(&self, service: &str, backend: &str) -> Result<BackendKey, String> {
        self.facts
            .health
            .keys()
            .find(|(s, a)| {
                s == service && (a.to_string() == backend || a.ip().to_string() == backend)
            })
            .cloned()
            .ok_or_else(|| format!("no backend {backend} in service {service}"))
    }

    /// Sets a runtime weight (HAProxy's `set server ... weight`), kept
    /// across reloads while the backend stays.
    pub fn set_weight(&mut self, service: &str, backend: &str, weight: u32) -> Result<(), String> {
        let key = self.find(service, backend)?;
        info!(service = %key.0, backend = %key.1, weight, "weight changed at runtime");
        self.facts.weights.insert(key, weight);
        Ok(())
    }

    /// Sets an administrative state. Enabling restarts slow start.
    pub fn set_admin(
        &mut self,
        service: &str,
        backend: &str,
        state: AdminState,
        now: Instant,
    ) -> Result<(), String> {
        let key = self.find(service, backend)?;
        let previous = self
            .facts
            .admin
            .insert(key.clone(), state)
            .unwrap_or(AdminState::Enabled);
        if state == AdminState::Enabled && previous != AdminState::Enabled {
            if let Some(health) = self.facts.health.get_mut(&key) {
                health.serving_since = now;
            }
        }
        info!(service = %key.0, backend = %key.1, ?previous, ?state, "administrative state changed");
        Ok(())
    }

    /// Logs services entering or leaving fail-open.
    pub fn note_plan(&mut self, plan: &Plan) {
        for name in plan
            .failing_open
            .iter()
            .filter(|n| !self.failing_open.contains(n))
        {
            warn!(service = %name, "every backend is down: failing open, new flows still go to them (on_all_down = \"fail_open\")");
        }
        for name in self
            .failing_open
            .iter()
            .filter(|n| !plan.failing_open.contains(n))
        {
            info!(service = %name, "a backend is healthy again: no longer failing open");
        }
        self.failing_open = plan.failing_open.clone();
    }

    pub fn status(&self, now: Instant) -> Vec<BackendHealthStatus> {
        let mut out: Vec<BackendHealthStatus> = self
            .facts
            .health
            .iter()
            .map(|(key, health)| BackendHealthStatus {
                service: key.0.clone(),
                address: key.1,
                health: if !self.thresholds.contains_key(key) || self.checks_off.contains(key) {
                    "unchecked".into()
                } else if health.up {
                    "up".into()
                } else {
                    "down".into()
                },
                admin: self
                    .facts
                    .admin
                    .get(key)
                    .copied()
                    .unwrap_or(AdminState::Enabled),
                last_check: health.last.as_ref().map(|r| r.detail.clone()),
                last_latency_ms: health
                    .last
                    .as_ref()
                    .map(|r| r.latency.as_secs_f64() * 1000.0),
                seconds_since_change: now
                    .saturating_duration_since(health.changed_at)
                    .as_secs_f64(),
                downtime_seconds: health.downtime.total(now).as_secs_f64(),
            })
            .collect();
        out.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
        out
    }
}

/// A fixed offset within the interval, different per backend.
fn spread(key: &BackendKey, interval: std::time::Duration) -> std::time::Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.0.bytes().chain(key.1.to_string().bytes()) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let millis = interval.as_millis().max(1) as u64;
    std::time::Duration::from_millis(h % millis)
}
