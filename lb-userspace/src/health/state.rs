//! Per-backend health bookkeeping (rise/fall), administrative states and
//! the slow-start weight. Pure: results and `now` come from the driver.
use std::time::{Duration, Instant};

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    pub latency: Duration,
    /// "ok", "connect refused", "HTTP 503", "timeout 2s", ...
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    Enabled,
    /// Out of the table for new flows; existing flows keep their backend.
    Drain,
    /// Removed at once: its flows move to other backends.
    Disabled,
}

#[derive(Debug, Clone)]
pub struct BackendHealth {
    pub up: bool,
    streak: u32,
    pub last: Option<CheckResult>,
    pub changed_at: Instant,
    /// When the backend last became usable (up and enabled), for slow start.
    pub serving_since: Instant,
}

impl BackendHealth {
    /// Backends start up, as HAProxy's and keepalived's do, so traffic
    /// flows before the first check completes.
    pub fn new(now: Instant) -> Self {
        BackendHealth {
            up: true,
            streak: 0,
            last: None,
            changed_at: now,
            serving_since: now - Duration::from_secs(86_400),
        }
    }

    /// Records a result; returns the new state when it changed.
    pub fn record(
        &mut self,
        now: Instant,
        result: CheckResult,
        rise: u32,
        fall: u32,
    ) -> Option<bool> {
        let ok = result.ok;
        self.last = Some(result);
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < if ok { rise } else { fall } {
            return None;
        }
        self.streak = 0;
        self.up = ok;
        self.changed_at = now;
        if ok {
            self.serving_since = now;
        }
        Some(ok)
    }
}

/// The weight to use `elapsed` after a backend came up, ramping linearly
/// from 1 to `weight` over `slow_start` (no ramp when it is zero).
pub fn slow_start_weight(weight: u32, slow_start: Duration, elapsed: Duration) -> u32 {
    if slow_start.is_zero() || elapsed >= slow_start || weight == 0 {
        return weight;
    }
    let ramped =
        u64::from(weight) * elapsed.as_millis() as u64 / slow_start.as_millis().max(1) as u64;
    (ramped as u32).clamp(1, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ok: bool) -> CheckResult {
        CheckResult {
            ok,
            latency: Duration::from_millis(1),
            detail: if ok {
                "ok".into()
            } else {
                "connect refused".into()
            },
        }
    }

    #[test]
    fn fall_then_rise_with_hysteresis() {
        let now = Instant::now();
        let mut h = BackendHealth::new(now);
        assert!(h.up, "starts up");
        assert_eq!(h.record(now, result(false), 2, 3), None);
        assert_eq!(h.record(now, result(false), 2, 3), None);
        assert_eq!(h.record(now, result(true), 2, 3), None, "streak broken");
        assert_eq!(h.record(now, result(false), 2, 3), None);
        assert_eq!(h.record(now, result(false), 2, 3), None);
        let later = now + Duration::from_secs(5);
        assert_eq!(
            h.record(later, result(false), 2, 3),
            Some(false),
            "third failure in a row"
        );
        assert_eq!(h.changed_at, later);
        assert_eq!(h.record(later, result(true), 2, 3), None);
        assert_eq!(
            h.record(later, result(true), 2, 3),
            Some(true),
            "second success in a row"
        );
        assert_eq!(h.serving_since, later);
        assert_eq!(h.last.as_ref().unwrap().detail, "ok");
    }

    #[test]
    fn slow_start_ramps_linearly_from_one_to_the_weight() {
        let ramp = Duration::from_secs(10);
        assert_eq!(slow_start_weight(100, ramp, Duration::ZERO), 1);
        assert_eq!(slow_start_weight(100, ramp, Duration::from_secs(1)), 10);
        assert_eq!(slow_start_weight(100, ramp, Duration::from_secs(5)), 50);
        assert_eq!(
            slow_start_weight(100, ramp, Duration::from_millis(9_990)),
            99
        );
        assert_eq!(slow_start_weight(100, ramp, Duration::from_secs(10)), 100);
        assert_eq!(slow_start_weight(100, ramp, Duration::from_secs(60)), 100);
        assert_eq!(
            slow_start_weight(3, Duration::ZERO, Duration::ZERO),
            3,
            "no ramp configured"
        );
        assert_eq!(slow_start_weight(0, ramp, Duration::from_secs(1)), 0);
    }
}
