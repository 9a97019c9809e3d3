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

/// HAProxy's `lastchg` and `downtime` (the page's LastChg and Dwntme):
/// when the operational state last changed between up and down, and for
/// how long it has been down in all. Pure: `now` comes from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downtime {
    down: bool,
    changed_at: Instant,
    /// Down periods that ended.
    ended: Duration,
}

impl Downtime {
    pub fn new(down: bool, now: Instant) -> Downtime {
        Downtime {
            down,
            changed_at: now,
            ended: Duration::ZERO,
        }
    }

    /// Records the state at `now`; returns true when it changed.
    pub fn observe(&mut self, down: bool, now: Instant) -> bool {
        if down == self.down {
            return false;
        }
        if self.down {
            self.ended += now.saturating_duration_since(self.changed_at);
        }
        self.down = down;
        self.changed_at = now;
        true
    }

    pub fn is_down(&self) -> bool {
        self.down
    }

    /// Time since the last change (`lastchg`).
    pub fn since_change(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.changed_at)
    }

    /// Total time down, the current period included (`downtime`).
    pub fn total(&self, now: Instant) -> Duration {
        if self.down {
            self.ended + self.since_change(now)
        } else {
            self.ended
        }
    }
}

impl Default for Downtime {
    /// Up since now (servers and backends start up).
    fn default() -> Downtime {
        Downtime::new(false, Instant::now())
    }
}

#[derive(Debug, Clone)]
pub struct BackendHealth {
    pub up: bool,
    streak: u32,
    pub last: Option<CheckResult>,
    pub changed_at: Instant,
    /// When the backend last became usable (up and enabled), for slow start.
    pub serving_since: Instant,
    /// Time down by health (the page's Dwntme).
    pub downtime: Downtime,
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
            downtime: Downtime::new(false, now),
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
        self.downtime.observe(!ok, now);
        if ok {
            self.serving_since = now;
        }
        Some(ok)
    }

    /// Checks in a row that went against the current state: failed while
    /// up (fewer than `fall` so far) or passed while down (fewer than
    /// `rise`). 0 when the state is steady.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Starts over in state `up` with no streak (checks turned back on).
    pub fn restart(&mut self, up: bool) {
        self.up = up;
        self.streak = 0;
    }
}

/// HAProxy's transitional states, as its status column writes them:
/// `Some((n, of))` for "UP n/of" while up after failed checks (n: the
/// checks still to fail before DOWN, of `fall`: HAProxy's `health - rise
/// + 1`) and "DOWN n/of" while down after passed checks (n: the checks
/// passed, of `rise`); `None` while steady.
pub fn going(up: bool, streak: u32, rise: u32, fall: u32) -> Option<(u32, u32)> {
    match (up, streak) {
        (_, 0) => None,
        (true, failed) => Some((fall.saturating_sub(failed), fall)),
        (false, passed) => Some((passed, rise)),
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
        // Down from `later` to `later`: no downtime; then down 3 s.
        assert_eq!(h.downtime.total(later), Duration::ZERO);
        let t = later + Duration::from_secs(10);
        for _ in 0..3 {
            h.record(t, result(false), 2, 3);
        }
        assert_eq!(
            h.downtime.total(t + Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }

    /// The streak and HAProxy's "UP n/fall" / "DOWN n/rise" numbers
    /// follow each check: rise 2, fall 3.
    #[test]
    fn the_streak_shows_going_down_and_going_up() {
        let now = Instant::now();
        let mut h = BackendHealth::new(now);
        let going_now = |h: &BackendHealth| going(h.up, h.streak(), 2, 3);
        assert_eq!(going_now(&h), None, "steady UP");
        h.record(now, result(false), 2, 3);
        assert_eq!((h.up, h.streak(), going_now(&h)), (true, 1, Some((2, 3))));
        h.record(now, result(false), 2, 3);
        assert_eq!(going_now(&h), Some((1, 3)), "UP 1/3: one more failure");
        assert_eq!(h.record(now, result(false), 2, 3), Some(false));
        assert_eq!((h.streak(), going_now(&h)), (0, None), "steady DOWN");
        h.record(now, result(true), 2, 3);
        assert_eq!((h.up, going_now(&h)), (false, Some((1, 2))), "DOWN 1/2");
        assert_eq!(h.record(now, result(true), 2, 3), Some(true));
        assert_eq!(going_now(&h), None);
        // A success while going down ends the streak.
        h.record(now, result(false), 2, 3);
        h.record(now, result(true), 2, 3);
        assert_eq!(going_now(&h), None);
        h.record(now, result(false), 2, 3);
        h.restart(true);
        assert_eq!((h.up, going_now(&h)), (true, None));
    }

    #[test]
    fn downtime_adds_the_down_periods_and_lastchg_restarts_at_each_change() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Downtime::new(false, t0);
        assert_eq!(
            (d.since_change(t0 + s(5)), d.total(t0 + s(5))),
            (s(5), s(0))
        );
        assert!(d.observe(true, t0 + s(10)));
        assert!(
            !d.observe(true, t0 + s(12)),
            "no change: lastchg keeps running"
        );
        assert_eq!(d.since_change(t0 + s(14)), s(4));
        assert_eq!(d.total(t0 + s(14)), s(4), "the current down period counts");
        assert!(d.observe(false, t0 + s(20)));
        assert_eq!(d.total(t0 + s(100)), s(10));
        assert_eq!(d.since_change(t0 + s(100)), s(80));
        d.observe(true, t0 + s(100));
        assert_eq!(d.total(t0 + s(101)), s(11));
        assert!(d.is_down());
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
