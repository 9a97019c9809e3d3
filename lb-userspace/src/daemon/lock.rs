//! The instance lock (`/run/lbd/<instance>.lock`, one daemon per
//! instance), the pins' clean-up, and the modes of what the daemon
//! creates: set explicitly, never left to the umask (the run directory
//! 0755, the lock 0600, the pin directory 0700 and its pins 0600).
use crate::control::state_file::RUN_DIR;
use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use std::{
    fs::{File, Permissions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};
use tracing::warn;

/// Holds `/run/lbd/<instance>.lock` for the life of the daemon.
pub(super) fn lock_instance(instance: &str) -> anyhow::Result<Flock<File>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(RUN_DIR)
        .with_context(|| format!("creating {RUN_DIR}"))?;
    // Readable by all: `lbd status` reads the state file in it.
    std::fs::set_permissions(RUN_DIR, Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 0755 {RUN_DIR}"))?;
    let path = Path::new(RUN_DIR).join(format!("{instance}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // Root's alone: anyone who can open it can flock it and keep the
    // instance from starting.
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
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

/// [`try_remove_pins`], logging what could not be removed.
pub fn remove_pins(dir: &Path) {
    if let Err(e) = try_remove_pins(dir) {
        warn!("{e:#}");
    }
}

/// Removes every pin under `dir`, then `dir`; every entry is tried, and
/// the first failure is returned, naming its path.
pub fn try_remove_pins(dir: &Path) -> anyhow::Result<()> {
    let mut first_error: Option<anyhow::Error> = None;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("listing pins in {}", dir.display()))?;
    for entry in entries {
        let removed = entry.and_then(|entry| {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        });
        if let Err(e) = removed {
            first_error.get_or_insert(anyhow::Error::new(e).context("removing a pin"));
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Creates the pin directory root-only (0700), whatever the umask.
pub(super) fn create_pin_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    restrict_pins(dir)
}

/// The pin directory 0700 and every pin in it 0600: whoever may write
/// there can stop the data plane.
pub(super) fn restrict_pins(dir: &Path) -> anyhow::Result<()> {
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        std::fs::set_permissions(&path, Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", path.display()))?;
    }
    Ok(())
}
