//! The driver's side of tracking (keepalived's `track_script`,
//! `track_interface`, `track_process`, `track_file`): a polling task per
//! tracked object, whose observations the sans-IO `tracking` weighs.
use super::{
    driver::Event,
    tracking::{Observation, Tracked},
};
use crate::config::vrrp::VrrpConfig;
use rtnetlink::packet_route::link::LinkFlags;
use std::{path::Path, time::Duration};
use tokio::{sync::mpsc, task::JoinHandle};

const POLL_TRACKED: Duration = Duration::from_millis(500);

/// One tracked object per `track_*` entry of `config` (the VRRP instance
/// at `index`), each polled by a task of its own; returns them with the
/// tasks.
pub(super) fn start(
    index: usize,
    config: &VrrpConfig,
    handle: &rtnetlink::Handle,
    events: &mpsc::Sender<Event>,
) -> (Vec<Tracked>, Vec<JoinHandle<()>>) {
    let mut trackers = Trackers {
        index,
        events,
        tracked: Vec::new(),
        tasks: Vec::new(),
    };
    for t in &config.track_script {
        let (script, timeout) = (t.script.script.clone(), t.script.timeout);
        trackers.add(
            Tracked::new(&t.script.name, t.weight, t.script.rise, t.script.fall),
            t.script.interval,
            move || {
                let script = script.clone();
                async move { run_script(&script, timeout).await }
            },
        );
    }
    for t in &config.track_interface {
        let (handle, name) = (handle.clone(), t.name.clone());
        trackers.add(
            Tracked::new(&t.name, t.weight, 1, 1),
            POLL_TRACKED,
            move || {
                let (handle, name) = (handle.clone(), name.clone());
                async move { link_state(&handle, &name).await }
            },
        );
    }
    for t in &config.track_process {
        let name = t.name.clone();
        trackers.add(
            Tracked::new(&t.name, t.weight, 1, 1),
            POLL_TRACKED,
            move || {
                let name = name.clone();
                async move { process_running(&name) }
            },
        );
    }
    for t in &config.track_file {
        let path = t.path.clone();
        trackers.add(
            Tracked::file(t.path.display().to_string(), t.weight),
            POLL_TRACKED,
            move || {
                let path = path.clone();
                async move { file_value(&path) }
            },
        );
    }
    (trackers.tracked, trackers.tasks)
}

/// The tracked objects of one VRRP instance, as they are started.
struct Trackers<'a> {
    index: usize,
    events: &'a mpsc::Sender<Event>,
    tracked: Vec<Tracked>,
    tasks: Vec<JoinHandle<()>>,
}

impl Trackers<'_> {
    /// Adds `tracked`, observed by `check` every `interval`.
    fn add<F, Fut>(&mut self, tracked: Tracked, interval: Duration, check: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Observation> + Send + 'static,
    {
        let object = self.tracked.len();
        self.tracked.push(tracked);
        self.tasks.push(tokio::spawn(poll(
            self.index,
            object,
            interval,
            self.events.clone(),
            check,
        )));
    }
}

/// Calls `check` every `interval` and reports each result.
async fn poll<F, Fut>(
    instance: usize,
    object: usize,
    interval: Duration,
    events: mpsc::Sender<Event>,
    check: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Observation>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let observation = check().await;
        if events
            .send(Event::Tracked {
                instance,
                object,
                observation,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn run_script(script: &str, timeout: Duration) -> Observation {
    let child = tokio::process::Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return Observation::Down;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Observation::Up,
        _ => Observation::Down,
    }
}

async fn link_state(handle: &rtnetlink::Handle, name: &str) -> Observation {
    match crate::dataplane::neighbour::link_by_name(handle, name).await {
        Ok(Some(link))
            if link.header.flags.contains(LinkFlags::Up)
                && link.header.flags.contains(LinkFlags::LowerUp) =>
        {
            Observation::Up
        }
        _ => Observation::Down,
    }
}

fn process_running(name: &str) -> Observation {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Observation::Down;
    };
    let running = entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name)
    });
    if running {
        Observation::Up
    } else {
        Observation::Down
    }
}

/// A missing or unreadable file counts as 0, as in keepalived.
fn file_value(path: &Path) -> Observation {
    let value = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Observation::Value(value)
}
