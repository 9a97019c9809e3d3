//! gobgpd, started and supervised: a thread of its own spawns it, waits
//! for it and starts it again if it dies. The child gets
//! `PR_SET_PDEATHSIG = SIGKILL`, so it dies with that thread, and so with
//! lbd even on SIGKILL: its BGP sessions close and the routers withdraw at
//! once instead of keeping a dead node's routes.
use anyhow::Context;
use std::{
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tracing::{info, warn};

/// The supervising thread and what it shares with the driver.
pub struct Speaker {
    stopping: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Speaker {
    /// Starts gobgpd with its gRPC API on `api`. Each start of a gobgpd
    /// bumps the returned counter (the driver then configures it afresh).
    pub fn start(gobgpd: &Path, api: SocketAddr) -> anyhow::Result<(Self, watch::Receiver<u64>)> {
        anyhow::ensure!(
            gobgpd.exists(),
            "{} is missing: [bgp] needs gobgpd (apt-get install gobgpd, or `cargo xtask setup`)",
            gobgpd.display()
        );
        let stopping = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicI32::new(0));
        let (starts_tx, starts) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("bgp-speaker".into())
            .spawn({
                let (stopping, pid, gobgpd) = (stopping.clone(), pid.clone(), gobgpd.to_owned());
                move || supervise(&gobgpd, api, &stopping, &pid, &starts_tx)
            })
            .context("starting the gobgpd supervisor thread")?;
        Ok((
            Speaker {
                stopping,
                pid,
                thread: Some(thread),
            },
            starts,
        ))
    }

    /// The running gobgpd's PID, if one runs.
    pub fn pid(&self) -> Option<u32> {
        u32::try_from(self.pid.load(Ordering::SeqCst))
            .ok()
            .filter(|p| *p != 0)
    }

    /// Stops gobgpd (SIGTERM: it closes its sessions with a NOTIFICATION)
    /// and the supervisor.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Signalled until the thread ends: a gobgpd spawned just as we
        // stopped gets it too. After 5 s, SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() {
            let signal = if Instant::now() < deadline {
                nix::sys::signal::Signal::SIGTERM
            } else {
                nix::sys::signal::Signal::SIGKILL
            };
            if let Some(pid) = self.pid() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = thread.join();
    }
}

fn command(gobgpd: &Path, api: SocketAddr) -> Command {
    let mut command = Command::new(gobgpd);
    command
        .arg(format!("--api-hosts={api}"))
        .args(["--log-plain", "--log-level=info", "--pprof-disable"])
        .stdin(Stdio::null())
        // Its log goes beside lbd's own, on stderr.
        .stdout(stderr_copy())
        .stderr(Stdio::inherit());
    let parent = std::process::id() as i32;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl,
    // getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // lbd died before the prctl took effect: do not outlive it.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command
}

/// lbd's stderr for a child's stdout (gobgpd logs there).
fn stderr_copy() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

/// Runs gobgpd until `stopping`; one that dies is started again, after a
/// pause that grows while it keeps dying young.
fn supervise(
    gobgpd: &Path,
    api: SocketAddr,
    stopping: &AtomicBool,
    pid: &AtomicI32,
    starts: &watch::Sender<u64>,
) {
    let mut pause = Duration::from_millis(500);
    while !stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        match command(gobgpd, api).spawn() {
            Err(e) => warn!("starting {}: {e}", gobgpd.display()),
            Ok(mut child) => {
                pid.store(child.id() as i32, Ordering::SeqCst);
                info!(pid = child.id(), api = %api, "gobgpd started");
                starts.send_modify(|n| *n += 1);
                let status = child.wait();
                pid.store(0, Ordering::SeqCst);
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                warn!("gobgpd exited ({status:?}); starting it again");
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            pause = Duration::from_millis(500);
        }
        // Sleep in slices so a stop is not held up.
        let until = Instant::now() + pause;
        while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}
