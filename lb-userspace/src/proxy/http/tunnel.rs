//! WebSocket and other `Upgrade` exchanges: once the server answered 101,
//! both connections are taken from hyper and relayed byte for byte until
//! either side closes or nothing moves for `timeout tunnel`.
use crate::proxy::{
    relay::{self, RelayMeter},
    stats::Counters,
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

/// Counters the tunnel's bytes go to: client-to-server is `bytes_in`,
/// server-to-client `bytes_out` (the frontend counts on its socket).
pub type TunnelCounters = Vec<Arc<Counters>>;

/// Runs the tunnel on its own task; `hold` (the server slot, session
/// guards) lives as long as the tunnel.
pub fn spawn<H: Send + 'static>(
    client: OnUpgrade,
    server: OnUpgrade,
    idle: Duration,
    counters: TunnelCounters,
    hold: H,
) {
    tokio::spawn(async move {
        let (Ok(client), Ok(server)) = tokio::join!(client, server) else {
            return;
        };
        let meter = RelayMeter::default();
        let outcome = relay::copy(TokioIo::new(client), TokioIo::new(server), idle, &meter).await;
        for counters in &counters {
            Counters::add(&counters.bytes_in, meter.up.load(Relaxed));
            Counters::add(&counters.bytes_out, meter.down.load(Relaxed));
        }
        tracing::debug!(?outcome, "tunnel closed");
        drop(hold);
    });
}
