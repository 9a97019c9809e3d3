//! What HAProxy 2.6 does after a failed connect to a server (`stream.c`,
//! `back_handle_st_cer` and `stream_choose_redispatch`), sans-IO: give up
//! once `retries` are spent; else retry on the same server, or go back to
//! the balancer (`option redispatch [<interval>]`) when the server is
//! down, on the retries the interval names (by default -1: the last
//! retry; P > 0: every Pth; N < 0: the (-N)th before the last), or on
//! every retry for a round-robin kind of algorithm with more than one
//! active server. After a refused or reset connect (not a
//! timeout) it waits a turn-around of min(1 s, `timeout connect`) before
//! the retry, except when a round-robin algorithm with several active
//! servers redispatches (another server will be tried at once) or the
//! failed connection was a reused one.
use crate::proxy::balance::Balance;
use std::time::Duration;

/// HAProxy's turn-around delay after an asynchronous connect error.
pub const TURN_AROUND: Duration = Duration::from_secs(1);

/// A backend's retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub redispatch: bool,
    /// HAProxy's `redispatch_after` (`option redispatch <interval>`).
    pub redispatch_after: i32,
    /// roundrobin, static-rr, random (HAProxy's `BE_LB_KIND_RR`).
    pub round_robin_kind: bool,
    pub connect_timeout: Duration,
}

impl RetryPolicy {
    pub fn new(
        retries: u32,
        (redispatch, redispatch_after): (bool, i32),
        balance: &Balance,
        connect: Duration,
    ) -> Self {
        RetryPolicy {
            retries,
            redispatch,
            redispatch_after,
            round_robin_kind: matches!(
                balance,
                Balance::RoundRobin | Balance::StaticRr | Balance::Random { .. }
            ),
            connect_timeout: connect,
        }
    }
}

/// How a connect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `timeout connect` expired (the wait was the timeout itself).
    Timeout,
    /// Refused, reset, unreachable, or a handshake failed.
    Error,
}

/// The facts at the failure.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// Failed attempts so far, this one included.
    pub failures: u32,
    pub kind: FailureKind,
    /// The failed connection was a reused (pooled) one.
    pub reused: bool,
    /// The server is up (HAProxy: `cur_state` RUNNING).
    pub server_running: bool,
    /// Usable primary servers of the backend (`srv_act`).
    pub active_servers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retries spent: 503 (http) or close (tcp).
    GiveUp,
    /// Connect again to the same server, keeping its slot, after `wait`.
    SameServer { wait: Duration },
    /// Back to the balancer (and the queue), after `wait`.
    Redispatch { wait: Duration },
}

impl RetryPolicy {
    /// Whether the interval names the retry after `failures` failed
    /// attempts (HAProxy counts the retries done, `conn_retries`): every
    /// Pth for P > 0; for N < 0 every (retries + 1 + N)th, which is the
    /// last retry for -1 and the (-N)th before the last otherwise.
    fn counted(&self, failures: u32) -> bool {
        let every = match self.redispatch_after {
            p if p > 0 => i64::from(p),
            n if n < 0 => i64::from(self.retries) + 1 + i64::from(n),
            _ => 0,
        };
        every > 0 && i64::from(failures) % every == 0
    }

    pub fn after(&self, failure: Failure) -> AfterFailure {
        if failure.failures > self.retries {
            return AfterFailure::GiveUp;
        }
        let spread = self.round_robin_kind && failure.active_servers > 1;
        let redispatch = self.redispatch
            && (!failure.server_running || self.counted(failure.failures) || spread);
        let turn_around = failure.kind == FailureKind::Error
            && !failure.reused
            && (!redispatch || !self.round_robin_kind || failure.active_servers <= 1);
        let wait = if turn_around {
            TURN_AROUND.min(self.connect_timeout)
        } else {
            Duration::ZERO
        };
        if redispatch {
            AfterFailure::Redispatch { wait }
        } else {
            AfterFailure::SameServer { wait }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy(retries: u32, redispatch: bool, rr: bool, connect: Duration) -> RetryPolicy {
        RetryPolicy {
            retries,
            redispatch,
            redispatch_after: -1,
            round_robin_kind: rr,
            connect_timeout: connect,
        }
    }
    fn failure(failures: u32, kind: FailureKind, active: usize) -> Failure {
        Failure {
            failures,
            kind,
            reused: false,
            server_running: true,
            active_servers: active,
        }
    }

    #[test]
    fn refused_connects_wait_a_turn_around_and_timeouts_do_not() {
        use AfterFailure::*;
        use FailureKind::*;
        let p = policy(3, false, true, 5 * S);
        assert_eq!(p.after(failure(1, Error, 2)), SameServer { wait: S });
        assert_eq!(p.after(failure(3, Error, 2)), SameServer { wait: S });
        assert_eq!(p.after(failure(4, Error, 2)), GiveUp);
        assert_eq!(
            p.after(failure(1, Timeout, 2)),
            SameServer {
                wait: Duration::ZERO
            }
        );
        // min(1 s, timeout connect).
        let short = policy(3, false, true, Duration::from_millis(300));
        assert_eq!(
            short.after(failure(1, Error, 1)),
            SameServer {
                wait: Duration::from_millis(300)
            }
        );
        // A reused connection's failure retries at once.
        let reused = Failure {
            reused: true,
            ..failure(1, Error, 1)
        };
        assert_eq!(
            p.after(reused),
            SameServer {
                wait: Duration::ZERO
            }
        );
        // retries 0: the first failure ends it.
        assert_eq!(policy(0, true, true, S).after(failure(1, Error, 3)), GiveUp);
    }

    #[test]
    fn redispatch_is_on_the_last_retry_or_every_retry_for_round_robin() {
        use AfterFailure::*;
        use FailureKind::*;
        // leastconn/hash (not round-robin kind): the last retry only, and it
        // still waits (HAProxy waits unless a round-robin kind redispatches).
        let lc = policy(3, true, false, 5 * S);
        assert_eq!(lc.after(failure(1, Error, 3)), SameServer { wait: S });
        assert_eq!(lc.after(failure(2, Error, 3)), SameServer { wait: S });
        assert_eq!(lc.after(failure(3, Error, 3)), Redispatch { wait: S });
        assert_eq!(lc.after(failure(4, Error, 3)), GiveUp);
        // roundrobin with two active servers: every retry, at once.
        let rr = policy(3, true, true, 5 * S);
        assert_eq!(
            rr.after(failure(1, Error, 2)),
            Redispatch {
                wait: Duration::ZERO
            }
        );
        // ... but with one active server it is the last retry, after a wait.
        assert_eq!(rr.after(failure(1, Error, 1)), SameServer { wait: S });
        assert_eq!(rr.after(failure(3, Error, 1)), Redispatch { wait: S });
        // A server that went down is left at once.
        let down = Failure {
            server_running: false,
            ..failure(1, Error, 3)
        };
        assert_eq!(lc.after(down), Redispatch { wait: S });
        // Without `option redispatch`: always the same server.
        let plain = policy(3, false, true, 5 * S);
        assert_eq!(plain.after(failure(3, Error, 3)), SameServer { wait: S });
        assert_eq!(plain.after(down), SameServer { wait: S });
    }

    /// `option redispatch <interval>`, leastconn (so only the interval and
    /// a down server decide), retries 6: which of the six retries go back
    /// to the balancer.
    #[test]
    fn the_interval_picks_the_retries_that_redispatch() {
        let redispatched = |after: i32| -> Vec<u32> {
            let p = RetryPolicy {
                redispatch_after: after,
                ..policy(6, true, false, 5 * S)
            };
            (1..=6)
                .filter(|&n| {
                    matches!(
                        p.after(failure(n, FailureKind::Error, 3)),
                        AfterFailure::Redispatch { .. }
                    )
                })
                .collect()
        };
        let table: &[(i32, &[u32])] = &[
            (-1, &[6]),                // the default: the last retry
            (-2, &[5]),                // the retry before the last
            (-3, &[4]),                // every 4th: the 4th only within 6
            (-6, &[1, 2, 3, 4, 5, 6]), // every retry
            (1, &[1, 2, 3, 4, 5, 6]),
            (2, &[2, 4, 6]),
            (3, &[3, 6]),
            (7, &[]), // beyond the retries: never by count
            (0, &[]),
        ];
        for (after, expected) in table {
            assert_eq!(redispatched(*after), *expected, "redispatch {after}");
        }
        // Whatever the interval, a server that went down is left at once.
        let down = Failure {
            server_running: false,
            ..failure(1, FailureKind::Error, 3)
        };
        let p = RetryPolicy {
            redispatch_after: 3,
            ..policy(6, true, false, 5 * S)
        };
        assert!(matches!(p.after(down), AfterFailure::Redispatch { .. }));
    }
}
