//! Child processes that are stopped by PID when their guard drops.
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    pub fn spawn(mut command: Command, what: &str) -> anyhow::Result<Self> {
        command.stdin(Stdio::null());
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {what}: {e}"))?;
        Ok(ChildGuard {
            child,
            what: what.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Some(status) once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` and waits up to `timeout` for the exit; true if it
    /// exited successfully.
    pub fn stop_with(&mut self, signal: Signal, timeout: Duration) -> bool {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_wait().is_none() && !self.stop_with(Signal::SIGTERM, Duration::from_secs(5)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
