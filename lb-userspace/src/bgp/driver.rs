//! The task that drives gobgpd: configures each gobgpd the supervisor
//! starts, sends it the difference between what it announces and what
//! the daemon wants, and reads its sessions for `lbd status`.
use super::{
    announce::{difference, Announcements},
    api::Api,
    speaker::Speaker,
    status::{AnnouncedPrefix, BgpStatus},
};
use crate::config::bgp::BgpConfig;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// The running BGP part of the daemon.
pub struct Bgp {
    wanted: watch::Sender<Announcements>,
    announced: watch::Receiver<Announcements>,
    status: Arc<Mutex<BgpStatus>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    speaker: Option<Speaker>,
}

impl Bgp {
    /// Starts gobgpd and the task; nothing is announced until
    /// [`Bgp::want`] says so.
    pub fn start(config: &BgpConfig) -> anyhow::Result<Self> {
        let (speaker, starts) = Speaker::start(&config.gobgpd, config.api)?;
        let (wanted, wanted_rx) = watch::channel(Announcements::new());
        let (announced_tx, announced) = watch::channel(Announcements::new());
        let status = Arc::new(Mutex::new(BgpStatus::default()));
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(drive(Drive {
            config: config.clone(),
            wanted: wanted_rx,
            announced: announced_tx,
            status: status.clone(),
            starts,
            stop: stop_rx,
        }));
        Ok(Bgp {
            wanted,
            announced,
            status,
            stop: Some(stop),
            task,
            speaker: Some(speaker),
        })
    }

    /// The announcements the daemon wants now (sent if they changed).
    pub fn want(&self, wanted: Announcements) {
        self.wanted.send_if_modified(|current| {
            let changed = *current != wanted;
            *current = wanted;
            changed
        });
    }

    pub fn status(&self) -> BgpStatus {
        let mut status = match self.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        status.speaker_pid = self.speaker.as_ref().and_then(Speaker::pid);
        status
    }

    /// Withdraws everything and waits (up to `timeout`) until gobgpd has
    /// taken the withdrawals; true if it has.
    pub async fn withdraw_all(&mut self, timeout: Duration) -> bool {
        self.want(Announcements::new());
        let mut announced = self.announced.clone();
        tokio::time::timeout(timeout, announced.wait_for(Announcements::is_empty))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the task, then gobgpd (which closes its sessions).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if let Some(speaker) = self.speaker.take() {
            let _ = tokio::task::spawn_blocking(move || speaker.stop()).await;
        }
    }
}

struct Drive {
    config: BgpConfig,
    wanted: watch::Receiver<Announcements>,
    announced: watch::Sender<Announcements>,
    status: Arc<Mutex<BgpStatus>>,
    starts: watch::Receiver<u64>,
    stop: oneshot::Receiver<()>,
}

async fn drive(mut d: Drive) {
    let mut api: Option<Api> = None;
    // What the current gobgpd announces (a new gobgpd announces nothing).
    let mut current = Announcements::new();
    let mut error: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut d.stop => break,
            changed = d.starts.changed() => {
                if changed.is_err() { break }
                api = None;
                current.clear();
                d.announced.send_replace(current.clone());
            }
            changed = d.wanted.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        if *d.starts.borrow() == 0 {
            continue;
        }
        let result = step(&d, &mut api, &mut current).await;
        d.announced.send_replace(current.clone());
        let peers = match (&result, api.as_mut()) {
            (Ok(()), Some(api)) => api.peers().await.unwrap_or_default(),
            _ => Vec::new(),
        };
        let message = result.err().map(|e| format!("{e:#}"));
        if message != error {
            match &message {
                Some(m) => warn!("bgp: {m}"),
                None => info!("bgp: gobgpd configured and reachable"),
            }
            error = message;
        }
        if let Ok(mut status) = d.status.lock() {
            *status = BgpStatus {
                speaker_pid: None,
                speaker_starts: *d.starts.borrow(),
                error: error.clone(),
                peers,
                announced: current
                    .iter()
                    .map(|(vip, a)| AnnouncedPrefix::of(*vip, a))
                    .collect(),
            };
        }
    }
}

/// Connects (and configures a fresh gobgpd) if needed, then sends the
/// difference. A failure drops the connection: the next tick retries.
async fn step(d: &Drive, api: &mut Option<Api>, current: &mut Announcements) -> anyhow::Result<()> {
    if api.is_none() {
        let mut fresh = Api::connect(&d.config).await?;
        if !fresh.started().await? {
            fresh.configure(&d.config).await?;
            current.clear();
        }
        *api = Some(fresh);
    }
    let Some(connected) = api.as_mut() else {
        return Ok(());
    };
    let wanted = d.wanted.borrow().clone();
    let changes = difference(current, &wanted);
    let result = apply(connected, current, changes).await;
    if result.is_err() {
        *api = None;
    }
    result
}

async fn apply(
    api: &mut Api,
    current: &mut Announcements,
    changes: super::announce::Changes,
) -> anyhow::Result<()> {
    // Withdrawals first: a stop must not wait behind announcements.
    for vip in changes.withdraw {
        if let Some(attributes) = current.get(&vip) {
            api.withdraw(vip, attributes).await?;
            info!(%vip, "bgp: withdrawn");
        }
        current.remove(&vip);
    }
    for (vip, attributes) in changes.announce {
        api.announce(vip, &attributes).await?;
        info!(%vip, med = ?attributes.med, local_pref = attributes.local_pref, "bgp: announced");
        current.insert(vip, attributes);
    }
    Ok(())
}
