//! VRRP on a thread of its own. Adverts must leave on time whatever the
//! rest of the daemon is doing (a reload resolving neighbours, a drain
//! reprogramming a large table, a state-file write on a slow disk, a burst
//! of control requests), so the driver runs on its own single-threaded
//! runtime, with its own netlink connection and its own handle on the
//! pinned `lb_settings` (the forwarding switch). The thread asks for
//! round-robin real-time scheduling, as keepalived's `vrrp_rt_priority`
//! does, so that a busy machine does not delay it either; children (notify
//! hooks, track scripts) fall back to normal scheduling.
//!
//! The daemon only reads what this thread publishes: the instances' status
//! (refreshed after every event, and at least once a second) and a counter
//! bumped on every state change.
use super::{
    driver::{Event, VrrpDriver},
    VrrpStatus,
};
use crate::{config::vrrp::VrrpConfig, dataplane::neighbour::InterfaceInfo};
use anyhow::Context;
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

/// Real-time priority of the VRRP thread (keepalived's `vrrp_rt_priority`
/// range is 1..=99; any value puts it before every normal thread).
const RT_PRIORITY: i32 = 10;

/// The running VRRP thread, as the daemon sees it.
pub struct VrrpThread {
    status: Arc<Mutex<Vec<VrrpStatus>>>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VrrpThread {
    /// Starts the driver on its own thread and waits until it runs (its
    /// sockets open, the VIPs a predecessor left removed, every instance
    /// a backup). Returns, with the thread, a receiver that changes on
    /// every VRRP state change.
    pub async fn start(
        configs: Vec<VrrpConfig>,
        interface: InterfaceInfo,
        settings_pin: PathBuf,
    ) -> anyhow::Result<(Self, watch::Receiver<u64>)> {
        let status = Arc::new(Mutex::new(Vec::new()));
        let (changes_tx, changes_rx) = watch::channel(0u64);
        let (started_tx, started_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let published = Published {
            status: status.clone(),
            changes: changes_tx,
        };
        let thread = std::thread::Builder::new()
            .name("lbd-vrrp".into())
            .spawn(move || {
                raise_priority();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(anyhow::anyhow!("VRRP runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (events_tx, events_rx) = mpsc::channel(1024);
                    let driver = async {
                        let (connection, handle, _) =
                            rtnetlink::new_connection().context("VRRP netlink socket")?;
                        tokio::spawn(connection);
                        VrrpDriver::start(&configs, &interface, handle, &settings_pin, events_tx)
                            .await
                    };
                    match driver.await {
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                        }
                        Ok(driver) => {
                            published.publish(&driver, true);
                            let _ = started_tx.send(Ok(()));
                            drive(driver, events_rx, stop_rx, published).await;
                        }
                    }
                    let _ = done_tx.send(());
                });
            })
            .context("starting the VRRP thread")?;
        let mut running = VrrpThread {
            status,
            stop: Some(stop_tx),
            done: Some(done_rx),
            thread: Some(thread),
        };
        match started_rx.await {
            Ok(Ok(())) => Ok((running, changes_rx)),
            Ok(Err(e)) => {
                running.join();
                Err(e)
            }
            Err(_) => {
                running.join();
                anyhow::bail!("the VRRP thread ended while starting")
            }
        }
    }

    /// The instances' status as last published.
    pub fn status(&self) -> Vec<VrrpStatus> {
        match self.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Graceful stop (priority-0 adverts, VIPs removed, the last notify
    /// hooks run): returns once the thread is done.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
        self.join();
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the VRRP thread panicked");
            }
        }
    }
}

impl Drop for VrrpThread {
    /// Dropped without [`VrrpThread::shutdown`] (lbd failing after VRRP
    /// started): still stop gracefully, so no VIP stays behind.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join();
    }
}

/// What the thread shares with the daemon.
struct Published {
    status: Arc<Mutex<Vec<VrrpStatus>>>,
    changes: watch::Sender<u64>,
}

impl Published {
    fn publish(&self, driver: &VrrpDriver, changed: bool) {
        let status = driver.status();
        match self.status.lock() {
            Ok(mut shared) => *shared = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
        if changed {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The thread's loop: packets and tracking events, the machines' timers,
/// a refresh of the published status every second, until told to stop.
async fn drive(
    mut driver: VrrpDriver,
    mut events: mpsc::Receiver<Event>,
    mut stop: oneshot::Receiver<()>,
    published: Published,
) {
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = driver.next_deadline().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        let before = driver.states();
        tokio::select! {
            // Timers first: an advert due now goes before anything else.
            biased;
            _ = tokio::time::sleep_until(deadline) => driver.handle_timeouts().await,
            Some(event) = events.recv() => driver.handle_event(event).await,
            _ = &mut stop => break,
            _ = refresh.tick() => {}
        }
        published.publish(&driver, driver.states() != before);
    }
    let before = driver.states();
    driver.shutdown().await;
    published.publish(&driver, driver.states() != before);
}

/// Round-robin real-time scheduling for this thread, reset on fork so
/// that hooks and scripts run as normal processes.
fn raise_priority() {
    let param = libc::sched_param {
        sched_priority: RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let result =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if result == 0 {
        info!(
            priority = RT_PRIORITY,
            "VRRP thread runs with real-time priority"
        );
    } else {
        warn!(
            "VRRP thread keeps normal scheduling (real-time priority refused: {})",
            std::io::Error::last_os_error()
        );
    }
}
