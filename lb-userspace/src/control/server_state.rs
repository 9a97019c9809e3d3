//! The server-state file (`/run/lbd/<instance>.server-state.json`):
//! every administrative state and weight set at runtime (`lbd backend`,
//! `lbd set server`, the stats page), written after each change and
//! applied at start, so they survive a reload and a restart. HAProxy's
//! `server-state-file`, but automatic.
use super::RuntimeState;
use crate::control::state_file::RUN_DIR;
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStateFile {
    #[serde(default)]
    pub xdp: Vec<XdpServerState>,
    #[serde(default)]
    pub proxy: Vec<ProxyServerState>,
}

/// An XDP backend whose state or weight differs from the configuration's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpServerState {
    pub service: String,
    pub backend: SocketAddr,
    #[serde(default)]
    pub state: Option<RuntimeState>,
    #[serde(default)]
    pub weight: Option<u32>,
    /// `Some(false)`: health checks disabled.
    #[serde(default)]
    pub check: Option<bool>,
}

/// A proxy server whose state or weight differs from the configuration's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyServerState {
    pub backend: String,
    pub server: String,
    #[serde(default)]
    pub state: Option<RuntimeState>,
    #[serde(default)]
    pub weight: Option<u32>,
    /// `Some(false)`: health checks disabled.
    #[serde(default)]
    pub check: Option<bool>,
}

pub fn path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.server-state.json"))
}

impl ServerStateFile {
    /// The file, or an empty one when there is none; an unreadable file
    /// is an error (the caller logs it and starts from the configuration).
    pub fn read(instance: &str) -> Result<ServerStateFile, String> {
        let path = path(instance);
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServerStateFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }

    /// Replaces the file atomically (0600: root's).
    pub fn write(&self, instance: &str) -> std::io::Result<()> {
        crate::control::state_file::replace_file(
            &path(instance),
            &serde_json::to_vec_pretty(self)?,
            0o600,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_reads_back_what_was_written() {
        let file = ServerStateFile {
            xdp: vec![XdpServerState {
                service: "web".into(),
                backend: "198.18.0.11:80".parse().unwrap(),
                state: Some(RuntimeState::Drain),
                weight: Some(7),
                check: Some(false),
            }],
            proxy: vec![ProxyServerState {
                backend: "app".into(),
                server: "b1".into(),
                state: None,
                weight: Some(3),
                check: None,
            }],
        };
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(
            serde_json::from_str::<ServerStateFile>(&text).unwrap(),
            file
        );
        assert_eq!(
            serde_json::from_str::<ServerStateFile>("{}").unwrap(),
            ServerStateFile::default()
        );
    }
}
