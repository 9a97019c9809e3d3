//! The proxy part of `lbd status` (and `--json`, and the coming stats
//! page): frontends, backends and servers with HAProxy's columns.
use super::{
    config::Mode,
    snapshot::{AdminState, Snapshot},
    stats::{CounterSnapshot, ProxyCounters},
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Client connections open on every frontend (`actconn`).
    pub connections: u64,
    pub frontends: Vec<FrontendStatus>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendStatus {
    pub name: String,
    pub mode: String,
    pub binds: Vec<String>,
    /// `slim`: the frontend's maxconn.
    pub maxconn: u32,
    /// `OPEN` while it listens.
    pub status: String,
    pub counters: CounterSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub mode: String,
    /// `UP` while a server (or backup) is usable, else `DOWN`.
    pub status: String,
    /// Usable primary and backup servers (`act`, `bck`).
    pub active_servers: u32,
    pub backup_servers: u32,
    pub counters: CounterSnapshot,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub address: String,
    /// `UP`, `DOWN`, `MAINT`, `DRAIN` (HAProxy's words).
    pub status: String,
    /// Effective weight (`weight`).
    pub weight: u32,
    pub backup: bool,
    /// Health-checked (`check`).
    pub check: bool,
    /// The last check's outcome, e.g. "L7OK 200".
    pub last_check: Option<String>,
    /// UP->DOWN transitions (`chkdown`).
    pub downs: u64,
    /// `slim`: the server's maxconn (0 = none).
    pub maxconn: u32,
    pub counters: CounterSnapshot,
}

impl ProxyStatus {
    pub fn collect(
        snapshot: &Snapshot,
        counters: &ProxyCounters,
        connections: usize,
    ) -> ProxyStatus {
        let config = &snapshot.config;
        let frontends = config
            .frontends
            .iter()
            .map(|f| FrontendStatus {
                name: f.name.clone(),
                mode: mode_name(f.mode),
                binds: f.binds.iter().map(|b| b.address.to_string()).collect(),
                maxconn: f.maxconn,
                status: "OPEN".into(),
                counters: counters
                    .frontends
                    .get(&Arc::from(f.name.as_str()))
                    .snapshot(),
            })
            .collect();
        let backends = config
            .backends
            .iter()
            .enumerate()
            .map(|(id, b)| {
                let runtime = snapshot.backends.get(id);
                let backend_name: Arc<str> = b.name.as_str().into();
                let servers: Vec<ServerStatus> = b
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(sid, s)| {
                        let state = runtime.and_then(|r| r.servers.get(sid));
                        let status = match state {
                            Some(state) => match state.admin() {
                                AdminState::Maint => "MAINT",
                                AdminState::Drain => "DRAIN",
                                AdminState::Ready if state.is_health_up() => "UP",
                                AdminState::Ready => "DOWN",
                            },
                            None => "DOWN",
                        };
                        let mut server_counters = counters
                            .servers
                            .get(&(backend_name.clone(), s.name.as_str().into()))
                            .snapshot();
                        if let Some(state) = state {
                            server_counters.queue_current =
                                u64::from(state.queued.load(std::sync::atomic::Ordering::Relaxed));
                        }
                        ServerStatus {
                            name: s.name.clone(),
                            address: s.address.to_string(),
                            status: status.into(),
                            weight: state.map_or(s.weight, |st| st.weight()),
                            backup: s.backup,
                            check: s.check,
                            last_check: state.and_then(|st| st.last_check()).map(|c| c.detail),
                            downs: state.map_or(0, |st| {
                                st.downs.load(std::sync::atomic::Ordering::Relaxed)
                            }),
                            maxconn: s.maxconn,
                            counters: server_counters,
                        }
                    })
                    .collect();
                let usable = |backup: bool| {
                    b.servers
                        .iter()
                        .zip(&servers)
                        .filter(|(s, st)| s.backup == backup && st.status == "UP" && st.weight > 0)
                        .count() as u32
                };
                let (active, backup) = (usable(false), usable(true));
                BackendStatus {
                    name: b.name.clone(),
                    mode: mode_name(b.mode),
                    status: if active + backup > 0 { "UP" } else { "DOWN" }.into(),
                    active_servers: active,
                    backup_servers: backup,
                    counters: counters.backends.get(&backend_name).snapshot(),
                    servers,
                }
            })
            .collect();
        ProxyStatus {
            connections: connections as u64,
            frontends,
            backends,
        }
    }
}

fn mode_name(mode: Mode) -> String {
    mode.name().into()
}
