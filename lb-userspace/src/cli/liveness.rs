//! Is an instance's daemon running? The truth is its lock: the daemon
//! holds an exclusive `flock` on `/run/lbd/<instance>.lock` for its whole
//! life, and the kernel drops it when the process dies, however it dies.
//! The holder is read from `/proc/locks` (which names it), so asking
//! never takes the lock itself (a probe that locked could make a daemon
//! starting at that moment fail) and needs no permission on the file.
use crate::control::state_file::RUN_DIR;
use anyhow::Context;
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A process holds the lock.
    Running { pid: u32 },
    /// Nobody holds it (or there is no lock file).
    Stopped,
}

pub fn lock_path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.lock"))
}

/// Whether the daemon of `instance` runs.
pub fn liveness(instance: &str) -> anyhow::Result<Liveness> {
    liveness_of(&lock_path(instance))
}

/// Whether some process holds an exclusive `flock` on `path`.
pub fn liveness_of(path: &Path) -> anyhow::Result<Liveness> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Liveness::Stopped),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    let locks = std::fs::read_to_string("/proc/locks").context("reading /proc/locks")?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
        meta.ino()
    );
    Ok(holder(&locks, &id).map_or(Liveness::Stopped, |pid| Liveness::Running { pid }))
}

/// The pid holding an exclusive flock on the file `id` ("maj:min:inode",
/// as `/proc/locks` writes it), waiters ("->") aside.
fn holder(locks: &str, id: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, "WRITE", pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{Flock, FlockArg};

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let locks = "1: POSIX  ADVISORY  WRITE 900 00:1a:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4343 00:1a:1234 0 EOF\n\
                     3: FLOCK  ADVISORY  READ 77 00:1a:99 0 EOF\n";
        assert_eq!(holder(locks, "00:1a:1234"), Some(4242));
        assert_eq!(holder(locks, "00:1a:77"), None, "a POSIX lock is not ours");
        assert_eq!(holder(locks, "00:1a:99"), None, "a shared lock is not ours");
        assert_eq!(holder(locks, "00:1a:5"), None);
    }

    #[test]
    fn a_held_lock_is_running_a_released_one_stopped() {
        let path = std::env::temp_dir().join(format!("lbd-liveness-{}.lock", std::process::id()));
        assert_eq!(liveness_of(&path).unwrap(), Liveness::Stopped, "no file");
        let file = std::fs::File::create(&path).unwrap();
        assert_eq!(liveness_of(&path).unwrap(), Liveness::Stopped, "not locked");
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(
            liveness_of(&path).unwrap(),
            Liveness::Running {
                pid: std::process::id()
            }
        );
        drop(lock);
        assert_eq!(liveness_of(&path).unwrap(), Liveness::Stopped);
        let _ = std::fs::remove_file(&path);
    }
}
