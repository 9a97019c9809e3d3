//! A running lbd as the tests read it: `lbd status --json`, and the wait
//! until the daemon has programmed what it was given.
use crate::{netns, process::ChildGuard};
use anyhow::Context;
use lbd::cli::StatusReport;
use std::{
    path::Path,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

/// `lbd status --json --instance INSTANCE`, in the current namespace.
pub fn status_of(lbd: &Path, instance: &str) -> anyhow::Result<StatusReport> {
    let out = netns::run(Command::new(lbd).args(["status", "--json", "--instance", instance]))?;
    serde_json::from_str(&out).context("parsing lbd status --json")
}

/// Why [`wait_until_ready`] gave up.
pub enum NotReady {
    /// The daemon exited.
    Exited(ExitStatus),
    TimedOut,
}

impl NotReady {
    /// The error a test reports, with the daemon's `log`.
    pub fn into_error(self, log: &str) -> anyhow::Error {
        match self {
            NotReady::Exited(status) => anyhow::anyhow!("lbd exited ({status}): {log}"),
            NotReady::TimedOut => {
                anyhow::anyhow!("lbd did not program every backend in time: {log}")
            }
        }
    }
}

/// Polls `lbd status` every 100 ms until `ready` accepts the report; gives
/// up when `daemon` exits or after `timeout`.
pub fn wait_until_ready(
    lbd: &Path,
    instance: &str,
    timeout: Duration,
    mut daemon: Option<&mut ChildGuard>,
    ready: impl Fn(&StatusReport) -> bool,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = daemon.as_mut().and_then(|guard| guard.try_wait()) {
            return Err(NotReady::Exited(status));
        }
        if status_of(lbd, instance).is_ok_and(|report| ready(&report)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(NotReady::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
