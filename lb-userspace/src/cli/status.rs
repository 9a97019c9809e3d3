//! `lbd status`: reads an instance's pinned maps (the counters are the
//! truth) and the daemon's snapshot file (names, weights).
use crate::dataplane::{pin_dir, DataplaneError, LbMaps};
use lb_common::{GlobalCounters, TrafficCounters, BACKEND_ACTIVE, PROTO_TCP, PROTO_UDP};
use serde::{Deserialize, Serialize};
use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use crate::control::state_file::StateFile;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("instance {instance} is not running (no maps pinned at {dir}): {source}")]
    NotRunning {
        instance: String,
        dir: PathBuf,
        source: Box<DataplaneError>,
    },
    #[error("cannot open the maps pinned at {dir} (they are root's): {source}")]
    Unreadable {
        dir: PathBuf,
        source: Box<DataplaneError>,
    },
    #[error("is the daemon running? {0:#}")]
    Liveness(anyhow::Error),
    #[error("reading map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub instance: String,
    /// Whether a daemon runs (holds the instance lock). When not, the
    /// maps are a kept data plane and the state file's contents (VRRP
    /// states, health) are the last ones written.
    #[serde(default)]
    pub running: bool,
    /// When the state file was last written ("2026-12-02 08:30:13 UTC").
    #[serde(default)]
    pub state_written: Option<String>,
    /// Whether the XDP link is pinned (the program stays attached without
    /// a daemon).
    #[serde(default)]
    pub link_pinned: bool,
    /// The running daemon (the lock's holder); `None` when not running.
    pub pid: Option<u32>,
    pub xdp_mode: Option<String>,
    /// VRRP instances (empty without VRRP).
    pub vrrp: Vec<crate::vrrp::VrrpStatus>,
    /// Connection-table entries (flows, until expired and collected).
    pub flows: u64,
    /// nat/fullnat reply entries (one per flow towards its backend).
    #[serde(default)]
    pub nat_replies: u64,
    /// One counter per outcome of the XDP program, summed over CPUs.
    pub global: Vec<(String, u64)>,
    pub services: Vec<ServiceStatus>,
    /// The L7/TCP proxy (none when the configuration has none).
    #[serde(default)]
    pub proxy: Option<crate::proxy::status::ProxyStatus>,
    /// The BGP speaker's sessions and announced prefixes (`[bgp]`).
    #[serde(default)]
    pub bgp: Option<crate::bgp::BgpStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub id: u32,
    pub name: Option<String>,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    /// Maglev slots in the published table; 0 = no usable backend.
    pub table_size: u32,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    /// "unresolved" until the neighbour is known.
    pub mac: String,
    pub weight: Option<u32>,
    /// Maglev slots owned in the published table.
    pub slots: Option<u32>,
    /// serving, draining or down (what the data plane does with it).
    pub state: Option<crate::dataplane::programmer::BackendState>,
    /// up, down or unchecked.
    pub health: Option<String>,
    pub admin: Option<crate::health::state::AdminState>,
    pub last_check: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub seconds_since_change: Option<f64>,
    /// Total time down by health (HAProxy's `downtime`).
    #[serde(default)]
    pub downtime_seconds: Option<f64>,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// The pinned maps of `instance`, or why they cannot be opened.
pub fn open_maps(instance: &str) -> Result<LbMaps, StatusError> {
    let dir = pin_dir(instance);
    LbMaps::from_pins(&dir).map_err(|source| match std::fs::metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StatusError::NotRunning {
            instance: instance.to_owned(),
            dir,
            source: Box::new(source),
        },
        // Pinned but not ours to open (not root): say so, not "not running".
        _ => StatusError::Unreadable {
            dir,
            source: Box::new(source),
        },
    })
}

pub fn collect(instance: &str) -> Result<StatusReport, StatusError> {
    let maps = open_maps(instance)?;
    let running = match crate::cli::liveness::liveness(instance) {
        Ok(crate::cli::liveness::Liveness::Running { pid }) => Some(pid),
        Ok(crate::cli::liveness::Liveness::Stopped) => None,
        Err(source) => return Err(StatusError::Liveness(source)),
    };
    // While a daemon runs, only the state it wrote counts: a new daemon
    // that has not written yet must not be shown (or awaited) with its
    // predecessor's attachment, names and VRRP states.
    let state = StateFile::read(instance).filter(|s| running.is_none_or(|pid| s.pid == pid));
    let snapshot = state
        .as_ref()
        .map(|s| s.snapshot.clone())
        .unwrap_or_default();
    let map_err = |name| move |source| StatusError::Map { name, source };

    let mut global = GlobalCounters::default();
    for per_cpu in maps
        .global_stats
        .get(&0, 0)
        .map_err(map_err("lb_global_stats"))?
        .iter()
    {
        global.accumulate(per_cpu);
    }
    let sum = |values: aya::maps::PerCpuValues<TrafficCounters>| {
        let mut total = TrafficCounters::default();
        for v in values.iter() {
            total.accumulate(v);
        }
        total
    };

    let mut backends_by_service: std::collections::BTreeMap<u32, Vec<BackendStatus>> =
        Default::default();
    for (id, backend) in maps.backends.iter().enumerate() {
        let backend = backend.map_err(map_err("lb_backends"))?;
        let id = id as u32;
        let configured = snapshot
            .services
            .iter()
            .flat_map(|s| &s.backends)
            .any(|b| b.id == id);
        if backend.flags & BACKEND_ACTIVE == 0 && !configured {
            continue;
        }
        let counters = sum(maps
            .backend_stats
            .get(&id, 0)
            .map_err(map_err("lb_backend_stats"))?);
        let address = crate::dataplane::programmer::address_from_map(backend.addr, backend.family);
        let known_service = snapshot
            .services
            .iter()
            .find(|s| s.backends.iter().any(|b| b.id == id));
        let known = known_service.and_then(|s| s.backends.iter().find(|b| b.id == id));
        let health = known_service.and_then(|s| {
            state.as_ref()?.health.iter().find(|h| {
                h.service == s.name && h.address == SocketAddr::new(address, backend.port)
            })
        });
        backends_by_service
            .entry(backend.service_id)
            .or_default()
            .push(BackendStatus {
                id,
                address,
                port: backend.port,
                mac: if backend.mac == [0; 6] {
                    "unresolved".into()
                } else {
                    format_mac(backend.mac)
                },
                weight: known.map(|b| b.weight),
                slots: known.map(|b| b.slots),
                state: known.map(|b| b.state),
                health: health.map(|h| h.health.clone()),
                admin: health.map(|h| h.admin),
                last_check: health.and_then(|h| h.last_check.clone()),
                last_latency_ms: health.and_then(|h| h.last_latency_ms),
                seconds_since_change: health.map(|h| h.seconds_since_change),
                downtime_seconds: health.map(|h| h.downtime_seconds),
                packets: counters.packets,
                bytes: counters.bytes,
                new_flows: counters.new_flows,
            });
    }

    let mut services = Vec::new();
    for entry in maps.services.iter() {
        let (key, info) = entry.map_err(map_err("lb_services"))?;
        let counters = sum(maps
            .service_stats
            .get(&info.id, 0)
            .map_err(map_err("lb_svc_stats"))?);
        services.push(ServiceStatus {
            id: info.id,
            name: snapshot
                .services
                .iter()
                .find(|s| s.id == info.id)
                .map(|s| s.name.clone()),
            vip: crate::dataplane::programmer::address_from_map(key.addr, key.family),
            port: key.port,
            protocol: match key.proto {
                PROTO_TCP => "tcp".into(),
                PROTO_UDP => "udp".into(),
                other => other.to_string(),
            },
            mode: crate::config::ForwardingMode::from_number(info.mode)
                .map_or_else(|| info.mode.to_string(), |m| m.name().into()),
            table_size: info.ring_size,
            packets: counters.packets,
            bytes: counters.bytes,
            new_flows: counters.new_flows,
            backends: backends_by_service.remove(&info.id).unwrap_or_default(),
        });
    }
    services.sort_by_key(|s| (s.vip, s.port, s.protocol.clone()));
    let flows = maps.conntrack.keys().filter(Result::is_ok).count() as u64;
    let nat_replies = maps.nat_reverse.keys().filter(Result::is_ok).count() as u64;

    let proxy = state.as_ref().and_then(|s| s.proxy.clone());
    let bgp = state.as_ref().and_then(|s| s.bgp.clone());
    Ok(StatusReport {
        instance: instance.to_owned(),
        running: running.is_some(),
        state_written: StateFile::written_at(instance).map(utc),
        link_pinned: pin_dir(instance).join(crate::dataplane::LINK_PIN).exists(),
        pid: running,
        xdp_mode: state.as_ref().and_then(|s| s.xdp_mode.clone()),
        vrrp: state.map(|s| s.vrrp).unwrap_or_default(),
        flows,
        nat_replies,
        global: global
            .fields()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), *value))
            .collect(),
        services,
        proxy,
        bgp,
    })
}

/// "serving, health up (ok, 0.4 ms), enabled, 12 s since change".
fn describe_health(b: &BackendStatus) -> String {
    let mut parts = Vec::new();
    if let Some(state) = b.state {
        parts.push(format!("{state:?}").to_lowercase());
    }
    if let Some(health) = &b.health {
        let check = match (&b.last_check, b.last_latency_ms) {
            (Some(check), Some(ms)) => format!(" ({check}, {ms:.1} ms)"),
            _ => String::new(),
        };
        parts.push(format!("health {health}{check}"));
    }
    if let Some(admin) = b.admin {
        parts.push(format!("{admin:?}").to_lowercase());
    }
    if let Some(secs) = b.seconds_since_change {
        parts.push(format!("{secs:.0} s since change"));
    }
    parts.join(", ")
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// "2026-12-02 08:30:13 UTC".
fn utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The first line when no daemon runs: what is left and how old the
/// rest of the report is.
fn not_running(report: &StatusReport) -> String {
    let kept = if report.link_pinned {
        "data plane kept: the XDP program stays attached and forwards"
    } else {
        "maps kept, XDP program detached"
    };
    format!(
        "instance {}: not running ({kept}; last state from {})",
        report.instance,
        report.state_written.as_deref().unwrap_or("no state file")
    )
}

/// The human-readable form.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = String::new();
    if !report.running {
        let _ = writeln!(out, "{}", not_running(report));
    }
    let _ = writeln!(
        out,
        "instance {}  pid {}  xdp {}  (flows in connection table: {}, nat reply entries: {})",
        report.instance,
        report.pid.map_or("-".into(), |p| p.to_string()),
        report.xdp_mode.as_deref().unwrap_or("not attached"),
        report.flows,
        report.nat_replies
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<26} {:<5} {:>6} {:>12} {:>14} {:>10}",
        "SERVICE", "VIP:PORT/PROTO", "MODE", "SLOTS", "PACKETS", "BYTES", "NEW FLOWS"
    );
    for s in &report.services {
        let _ = writeln!(
            out,
            "{:<16} {:<26} {:<5} {:>6} {:>12} {:>14} {:>10}",
            s.name.as_deref().unwrap_or("-"),
            format!("{}/{}", SocketAddr::new(s.vip, s.port), s.protocol),
            s.mode,
            s.table_size,
            s.packets,
            s.bytes,
            s.new_flows
        );
        for b in &s.backends {
            let _ = writeln!(
                out,
                "  {:<14} {:<26} {:<17} w={:<4} {:>6} {:>12} {:>14} {:>10}  {}",
                format!("backend {}", b.id),
                SocketAddr::new(b.address, b.port).to_string(),
                b.mac,
                b.weight.map_or("-".into(), |w| w.to_string()),
                b.slots.map_or("-".into(), |w| w.to_string()),
                b.packets,
                b.bytes,
                b.new_flows,
                describe_health(b)
            );
        }
    }
    for v in &report.vrrp {
        let _ = writeln!(out);
        let state = if report.running {
            format!("{:?} for {:.0} s", v.state, v.seconds_in_state)
        } else {
            format!("last known {:?} (lbd not running)", v.state)
        };
        let _ = writeln!(
            out,
            "vrrp {} (vrid {}, {:?}): {state}, priority {} (configured {}), master {}",
            v.name,
            v.vrid,
            v.version,
            v.effective_priority,
            v.priority,
            v.master.map_or("unknown".into(), |m| m.to_string()),
        );
        let _ = writeln!(out, "  last transition: {}", v.last_transition);
        let rejected: Vec<String> = v
            .counters
            .rejected
            .iter()
            .map(|(reason, n)| {
                format!(
                    "{}={n}",
                    serde_json::to_value(reason)
                        .ok()
                        .and_then(|j| j.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  adverts sent {} received {}; other vrid {}; address mismatch {}; rejected: {}",
            v.counters.adverts_sent,
            v.counters.adverts_received,
            v.counters.other_vrid,
            v.counters.address_mismatch,
            if rejected.is_empty() {
                "none".into()
            } else {
                rejected.join(" ")
            }
        );
    }
    if let Some(proxy) = &report.proxy {
        let _ = writeln!(out);
        out.push_str(&crate::proxy::status::render(proxy));
    }
    if let Some(bgp) = &report.bgp {
        let _ = writeln!(out);
        out.push_str(&crate::bgp::status::render(bgp));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<24} {:>12}", "OUTCOME", "PACKETS");
    for (name, value) in &report.global {
        let _ = writeln!(out, "{name:<24} {value:>12}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let at = |secs| utc(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(1_796_199_013), "2026-12-02 08:10:13 UTC");
        assert_eq!(at(951_782_400 + 86_399), "2000-02-29 23:59:59 UTC");
    }

    fn report(running: bool) -> StatusReport {
        StatusReport {
            instance: "lb1".into(),
            running,
            state_written: Some("2026-12-02 08:10:13 UTC".into()),
            link_pinned: true,
            pid: running.then_some(4242),
            xdp_mode: Some("native".into()),
            vrrp: vec![crate::vrrp::VrrpStatus {
                name: "VI_1".into(),
                vrid: 51,
                version: crate::vrrp::packet::Version::V3,
                state: crate::vrrp::State::Master,
                priority: 200,
                effective_priority: 200,
                master: None,
                local_address: "198.18.0.1".parse().unwrap(),
                seconds_in_state: 12.0,
                last_transition: "timer".into(),
                counters: Default::default(),
            }],
            flows: 0,
            nat_replies: 0,
            global: vec![],
            services: vec![],
            proxy: None,
            bgp: None,
        }
    }

    #[test]
    fn a_dead_daemon_is_shown_as_not_running_with_its_last_state() {
        let table = render_table(&report(false));
        assert!(
            table.starts_with("instance lb1: not running (data plane kept: the XDP program stays attached and forwards; last state from 2026-12-02 08:10:13 UTC)\n"),
            "{table}"
        );
        assert!(table.contains("pid -"), "{table}");
        assert!(
            table.contains("VI_1 (vrid 51, V3): last known Master (lbd not running)"),
            "{table}"
        );
        let mut detached = report(false);
        detached.link_pinned = false;
        assert!(render_table(&detached).contains("not running (maps kept, XDP program detached;"));
        let live = render_table(&report(true));
        assert!(!live.contains("not running"), "{live}");
        assert!(
            live.contains("pid 4242") && live.contains(": Master for 12 s"),
            "{live}"
        );
    }
}
