//! WebSocket and other `Upgrade` exchanges: once the server answered 101,
//! both connections are taken from their HTTP/1 sides and relayed byte for byte until
//! either side closes or nothing moves for `timeout tunnel`. The request's
//! log line is written when the tunnel closes, with the timers and bytes of
//! the whole tunnel (as HAProxy).
use super::{
    conn::{ConnContext, PendingLog},
    h1::ClientUpgrade,
    origin::Upgraded,
};
use crate::log::{SessionPhase, TerminationCause, TerminationState};
use crate::proxy::{
    relay::{self, RelayEnd, RelayMeter},
    stats::Counters,
};
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// Counters the tunnel's bytes go to: client-to-server is `bytes_in`,
/// server-to-client `bytes_out` (the frontend counts on its socket).
pub type TunnelCounters = Vec<Arc<Counters>>;

/// The two connections after the 101: the client's from lbd's HTTP/1
/// server once the 101 is written, the server's from lbd's own client.
pub struct Ends {
    pub client: ClientUpgrade,
    pub server: Upgraded,
}

/// Where the request's record comes from (when its 101 is sent) and goes.
pub struct TunnelLog {
    pub context: Arc<ConnContext>,
    pub record: oneshot::Receiver<PendingLog>,
}

/// Runs the tunnel on its own task; `hold` (the server slot, session
/// guards) lives as long as the tunnel.
pub fn spawn<H: Send + 'static>(
    ends: Ends,
    idle: Duration,
    counters: TunnelCounters,
    log: TunnelLog,
    hold: H,
) {
    tokio::spawn(async move {
        let client = ends.client.connection().await;
        // The record is sent when the 101's (empty) body ends.
        let pending = log.record.await.ok();
        let opened = Instant::now();
        let end = match client {
            Some(client) => {
                let meter = RelayMeter::default();
                let outcome = relay::copy(client, ends.server, idle, &meter).await;
                for counters in &counters {
                    Counters::add(&counters.bytes_in, meter.up.load(Relaxed));
                    Counters::add(&counters.bytes_out, meter.down.load(Relaxed));
                }
                tracing::debug!(?outcome, "tunnel closed");
                outcome.end
            }
            _ => RelayEnd::Failed { client: true },
        };
        drop(hold);
        if let Some(mut pending) = pending {
            let open_for = opened.elapsed();
            pending.record.timers.active += open_for;
            pending.record.timers.total += open_for;
            if pending.record.termination == TerminationState::NORMAL {
                pending.record.termination = termination(end);
            }
            log.context.log_now(pending);
        }
    });
}

/// HAProxy's termination state for a tunnel that ended so.
fn termination(end: RelayEnd) -> TerminationState {
    let cause = match end {
        RelayEnd::Closed => return TerminationState::NORMAL,
        RelayEnd::TimedOut => TerminationCause::ClientTimeout,
        RelayEnd::Failed { client: true } => TerminationCause::ClientAbort,
        RelayEnd::Failed { client: false } => TerminationCause::ServerAbort,
    };
    TerminationState::new(cause, SessionPhase::Data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_ends_map_to_haproxy_states() {
        let state = |end| termination(end).short();
        assert_eq!(state(RelayEnd::Closed), "--");
        assert_eq!(state(RelayEnd::TimedOut), "cD");
        assert_eq!(state(RelayEnd::Failed { client: true }), "CD");
        assert_eq!(state(RelayEnd::Failed { client: false }), "SD");
    }
}
