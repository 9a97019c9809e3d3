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
    /// The connections each proxy worker thread serves now (see
    /// `proxy::spread`); absent from a state file written before it.
    #[serde(default)]
    pub workers: Vec<u64>,
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
    /// Seconds since the last UP/DOWN change (`lastchg`) and in all DOWN
    /// (`downtime`).
    #[serde(default)]
    pub last_change_secs: u64,
    #[serde(default)]
    pub downtime_secs: u64,
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
    /// Seconds since the last UP/DOWN change, MAINT counting as DOWN
    /// (`lastchg`), and in all DOWN (`downtime`).
    #[serde(default)]
    pub last_change_secs: u64,
    #[serde(default)]
    pub downtime_secs: u64,
    /// `slim`: the server's maxconn (0 = none).
    pub maxconn: u32,
    pub counters: CounterSnapshot,
    /// HAProxy's transitional state, `[n, of]`: "UP n/of" while UP after
    /// failed checks (going down: n checks left to fail, of `fall`),
    /// "DOWN n/of" while DOWN after passed checks (going up: n passed, of
    /// `rise`). `None` while steady, unchecked or in MAINT.
    #[serde(default)]
    pub going: Option<[u32; 2]>,
}

impl ServerStatus {
    /// The status as HAProxy's CSV and page write it: "UP", "UP 2/3"
    /// (going down), "DOWN", "DOWN 1/2" (going up), "DRAIN 2/3", "MAINT".
    pub fn haproxy_status(&self) -> String {
        match self.going {
            Some([n, of]) if self.status != "MAINT" => format!("{} {n}/{of}", self.status),
            _ => self.status.clone(),
        }
    }

    /// Going down (UP or DRAIN after failed checks).
    pub fn going_down(&self) -> bool {
        self.going.is_some() && matches!(self.status.as_str(), "UP" | "DRAIN")
    }

    /// Going up (DOWN after passed checks).
    pub fn going_up(&self) -> bool {
        self.going.is_some() && self.status == "DOWN"
    }
}

impl ProxyStatus {
    pub fn collect(
        snapshot: &Snapshot,
        counters: &ProxyCounters,
        connections: usize,
        workers: &[usize],
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
                        let (changed, down) =
                            state.map_or_else(Default::default, |st| st.downtime());
                        ServerStatus {
                            last_change_secs: changed.as_secs(),
                            downtime_secs: down.as_secs(),
                            name: s.name.clone(),
                            address: s.address.to_string(),
                            status: status.into(),
                            weight: state.map_or(s.weight, |st| st.weight()),
                            backup: s.backup,
                            check: s.check && state.is_none_or(|st| st.checks_enabled()),
                            last_check: state.and_then(|st| st.last_check()).map(|c| c.detail),
                            downs: state.map_or(0, |st| {
                                st.downs.load(std::sync::atomic::Ordering::Relaxed)
                            }),
                            maxconn: s.maxconn,
                            counters: server_counters,
                            going: state
                                .filter(|st| {
                                    s.check
                                        && st.checks_enabled()
                                        && st.admin() != AdminState::Maint
                                })
                                .and_then(|st| {
                                    crate::health::state::going(
                                        st.is_health_up(),
                                        st.streak(),
                                        s.rise,
                                        s.fall,
                                    )
                                })
                                .map(|(n, of)| [n, of]),
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
                let (changed, down) = runtime.map_or_else(Default::default, |r| {
                    r.state.note_usable(active + backup > 0)
                });
                BackendStatus {
                    last_change_secs: changed.as_secs(),
                    downtime_secs: down.as_secs(),
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
            workers: workers.iter().map(|&n| n as u64).collect(),
            frontends,
            backends,
        }
    }
}

fn mode_name(mode: Mode) -> String {
    mode.name().into()
}

/// The human-readable table, HAProxy's stats columns: one line per
/// frontend (`FRONTEND`), per server, and per backend (`BACKEND`).
pub fn render(status: &ProxyStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:>6} {:>6} {:>6} {:>8} {:>5} {:>5} {:>12} {:>12} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6}  LASTCHK",
        "PROXY/SERVER", "STATUS", "WEIGHT", "SCUR", "SMAX", "STOT", "RATE", "QCUR", "BIN", "BOUT", "DREQ", "EREQ",
        "ECON", "ERESP", "WRETR", "WREDIS"
    );
    let mut line = |name: String,
                    status: &str,
                    weight: String,
                    c: &CounterSnapshot,
                    check: &str| {
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:>6} {:>6} {:>6} {:>8} {:>5} {:>5} {:>12} {:>12} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6}  {}",
            name,
            status,
            weight,
            c.sessions_current,
            c.sessions_max,
            c.sessions_total,
            c.session_rate,
            c.queue_current,
            c.bytes_in,
            c.bytes_out,
            c.denied_requests,
            c.request_errors,
            c.connection_errors,
            c.response_errors,
            c.retries,
            c.redispatches,
            check
        );
    };
    for f in &status.frontends {
        line(
            format!("{}/FRONTEND", f.name),
            &f.status,
            "-".into(),
            &f.counters,
            "",
        );
    }
    for b in &status.backends {
        for s in &b.servers {
            let weight = if s.backup {
                format!("{}b", s.weight)
            } else {
                s.weight.to_string()
            };
            let check = if s.check {
                s.last_check.as_deref().unwrap_or("pending")
            } else {
                "no check"
            };
            line(
                format!("{}/{}", b.name, s.name),
                &s.haproxy_status(),
                weight,
                &s.counters,
                check,
            );
        }
        let servers = format!("{} act, {} bck", b.active_servers, b.backup_servers);
        line(
            format!("{}/BACKEND", b.name),
            &b.status,
            "-".into(),
            &b.counters,
            &servers,
        );
    }
    out
}
