//! The instance lock (`/run/lbd/<instance>.lock`, one daemon per
//! instance) and the pins' clean-up.
use crate::cli::status::RUN_DIR;
use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

/// True when nobody holds the lock at `path` (it is released at once).
pub fn try_lock(path: &Path) -> anyhow::Result<bool> {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return Ok(true);
    };
    Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok())
}

/// Holds `/run/lbd/<instance>.lock` for the life of the daemon.
pub(super) fn lock_instance(instance: &str) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let path = Path::new(RUN_DIR).join(format!("{instance}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((file, _)) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            drop(file);
            bail!(
                "instance \"{instance}\" is already running (pid {}; lock {})",
                pid.trim(),
                path.display()
            );
        }
    };
    lock.set_len(0)?;
    write!(lock, "{}", std::process::id())?;
    Ok(lock)
}

/// Removes the pins and the snapshot when the daemon stops, also on error.
pub(super) struct PinsGuard {
    pub(super) dir: PathBuf,
    pub(super) snapshot: PathBuf,
    /// Stopped by SIGTERM: leave the data plane for the next lbd.
    pub(super) keep: bool,
}

impl Drop for PinsGuard {
    fn drop(&mut self) {
        if !self.keep {
            remove_pins(&self.dir);
            let _ = std::fs::remove_file(&self.snapshot);
        }
    }
}

pub fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
