//! The daemon's state file, `/run/lbd/<instance>.json`: what the pinned
//! maps cannot say (the daemon's PID, the XDP mode, names and weights,
//! VRRP, health, proxy and BGP states). The daemon writes it after every
//! change; `lbd status` reads it beside the maps.
use crate::dataplane::programmer::Snapshot;
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Directory for lock and snapshot files.
pub const RUN_DIR: &str = "/run/lbd";

pub fn snapshot_path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.json"))
}

/// What the daemon writes next to its pins (`/run/lbd/<instance>.json`):
/// what the maps cannot say.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StateFile {
    pub pid: u32,
    /// "native" or "generic" once attached; `None` before.
    pub xdp_mode: Option<String>,
    pub snapshot: Snapshot,
    #[serde(default)]
    pub vrrp: Vec<crate::vrrp::VrrpStatus>,
    #[serde(default)]
    pub health: Vec<BackendHealthStatus>,
    /// The L7/TCP proxy's frontends, backends and servers.
    #[serde(default)]
    pub proxy: Option<crate::proxy::status::ProxyStatus>,
    /// The BGP speaker's sessions and announcements (`[bgp]`).
    #[serde(default)]
    pub bgp: Option<crate::bgp::BgpStatus>,
}

/// A backend's health and administrative state, for `lbd status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendHealthStatus {
    pub service: String,
    pub address: SocketAddr,
    /// "up", "down", or "unchecked" (no health_check configured).
    pub health: String,
    pub admin: crate::health::state::AdminState,
    pub last_check: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub seconds_since_change: f64,
    /// Total time down by health (HAProxy's `downtime`).
    #[serde(default)]
    pub downtime_seconds: f64,
}

impl StateFile {
    /// Replaces the file atomically (write, then rename). Its mode is
    /// 0644 whatever the umask: anyone may read the status, only root
    /// writes it.
    pub fn write(&self, instance: &str) -> std::io::Result<()> {
        replace_file(
            &snapshot_path(instance),
            &serde_json::to_vec_pretty(self)?,
            0o644,
        )
    }

    /// When the file was last written.
    pub fn written_at(instance: &str) -> Option<std::time::SystemTime> {
        std::fs::metadata(snapshot_path(instance))
            .ok()?
            .modified()
            .ok()
    }

    pub fn read(instance: &str) -> Option<StateFile> {
        let bytes = std::fs::read(snapshot_path(instance)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Replaces `path` atomically (a temporary file beside it, then a
/// rename) with `mode` whatever the umask: a reader never sees half a file.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    std::io::Write::write_all(&mut file, bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}
