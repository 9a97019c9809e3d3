//! What the maps should say, from the configuration and what the daemon
//! knows: backend MACs, health, administrative states and slow start.
//! Pure, so every rule is unit-tested.
use super::programmer::{BackendState, DesiredBackend, DesiredService};
use crate::{
    config::health::AllDown,
    config::Config,
    health::state::{slow_start_weight, AdminState, BackendHealth},
};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

/// A backend of a service, by service name and address.
pub type BackendKey = (String, SocketAddr);

#[derive(Default)]
pub struct Facts {
    pub macs: HashMap<IpAddr, [u8; 6]>,
    /// Every configured backend has an entry (unchecked ones stay up).
    pub health: HashMap<BackendKey, BackendHealth>,
    /// Missing = enabled.
    pub admin: HashMap<BackendKey, AdminState>,
    /// Weights set at runtime (`set server ... weight`); missing = the
    /// configured weight.
    pub weights: HashMap<BackendKey, u32>,
}

pub struct Plan {
    pub services: Vec<DesiredService>,
    /// Services with no healthy backend that fail open (kept their backends).
    pub failing_open: Vec<String>,
    /// Whether some backend is still ramping up (re-plan soon).
    pub ramping: bool,
}

pub fn plan(config: &Config, facts: &Facts, now: Instant) -> Plan {
    let mut failing_open = Vec::new();
    let mut ramping = false;
    let services = config
        .services
        .iter()
        .map(|service| {
            let mut backends: Vec<DesiredBackend> = Vec::new();
            let mut health_down = Vec::new();
            for backend in &service.backends {
                let address = SocketAddr::new(backend.address, backend.port);
                let key = (service.name.clone(), address);
                let admin = facts
                    .admin
                    .get(&key)
                    .copied()
                    .unwrap_or(AdminState::Enabled);
                let health = facts.health.get(&key);
                let up = health.is_none_or(|h| h.up);
                let elapsed = health.map_or(backend.slow_start, |h| {
                    now.saturating_duration_since(h.serving_since)
                });
                let base = facts.weights.get(&key).copied().unwrap_or(backend.weight);
                let weight = slow_start_weight(base, backend.slow_start, elapsed);
                if weight != base && up && admin == AdminState::Enabled {
                    ramping = true;
                }
                let state = match (admin, up) {
                    (AdminState::Disabled, _) | (_, false) => BackendState::Down,
                    (AdminState::Drain, true) => BackendState::Draining,
                    (AdminState::Enabled, true) => BackendState::Serving,
                };
                if !up && admin != AdminState::Disabled {
                    health_down.push(backends.len());
                }
                backends.push(DesiredBackend {
                    address,
                    weight,
                    mac: facts.macs.get(&backend.address).copied(),
                    state,
                });
            }
            let serving = backends
                .iter()
                .any(|b| b.state == BackendState::Serving && b.weight > 0);
            if !serving && !health_down.is_empty() && service.on_all_down == AllDown::FailOpen {
                // Every backend failed its checks: keep sending new flows to
                // them rather than dropping (the checks may be what is wrong).
                for index in health_down {
                    backends[index].state = BackendState::Serving;
                }
                failing_open.push(service.name.clone());
            }
            DesiredService {
                name: service.name.clone(),
                vip: service.vip,
                port: service.port,
                proto: service.protocol.number(),
                mode: service.mode.number(),
                backends,
            }
        })
        .collect();
    Plan {
        services,
        failing_open,
        ramping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostEnvironment;
    use crate::health::state::CheckResult;
    use std::{path::Path, time::Duration};

    fn config(extra: &str) -> Config {
        let text = format!(
            "[instance]\nname = \"t\"\ninterface = \"lo\"\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n{extra}\n[[service.backend]]\naddress = \"198.18.0.11\"\nweight = 4\nslow_start = 10\n[[service.backend]]\naddress = \"198.18.0.12\"\nweight = 4\n"
        );
        Config::parse(&text, Path::new("t.toml"), &HostEnvironment).unwrap()
    }

    fn key(last: u8) -> BackendKey {
        (
            "web".into(),
            SocketAddr::new(std::net::Ipv4Addr::new(198, 18, 0, last).into(), 80),
        )
    }

    fn facts(now: Instant) -> Facts {
        let mut facts = Facts::default();
        for last in [11, 12] {
            facts.health.insert(key(last), BackendHealth::new(now));
            facts.macs.insert(
                std::net::Ipv4Addr::new(198, 18, 0, last).into(),
                [2, 0, 0, 0, 0, last],
            );
        }
        facts
    }

    fn down(facts: &mut Facts, last: u8, now: Instant) {
        let health = facts.health.get_mut(&key(last)).unwrap();
        let result = CheckResult {
            ok: false,
            latency: Duration::ZERO,
            detail: "connect refused".into(),
        };
        health.record(now, result, 1, 1);
    }

    fn states(plan: &Plan) -> Vec<(BackendState, u32)> {
        plan.services[0]
            .backends
            .iter()
            .map(|b| (b.state, b.weight))
            .collect()
    }

    #[test]
    fn healthy_enabled_backends_serve_with_their_weight() {
        let now = Instant::now();
        let plan = plan(&config(""), &facts(now), now);
        assert_eq!(
            states(&plan),
            [(BackendState::Serving, 4), (BackendState::Serving, 4)]
        );
        assert!(!plan.ramping, "no slow start at daemon start");
    }

    #[test]
    fn admin_states_and_health_map_to_backend_states() {
        let now = Instant::now();
        let mut f = facts(now);
        f.admin.insert(key(11), AdminState::Drain);
        f.admin.insert(key(12), AdminState::Disabled);
        assert_eq!(
            states(&plan(&config(""), &f, now)),
            [(BackendState::Draining, 4), (BackendState::Down, 4)]
        );
        f.admin.clear();
        down(&mut f, 12, now);
        assert_eq!(states(&plan(&config(""), &f, now))[1].0, BackendState::Down);
    }

    #[test]
    fn all_down_drops_by_default_and_fails_open_when_asked() {
        let now = Instant::now();
        let mut f = facts(now);
        down(&mut f, 11, now);
        down(&mut f, 12, now);
        let dropped = plan(&config(""), &f, now);
        assert!(states(&dropped)
            .iter()
            .all(|(s, _)| *s == BackendState::Down));
        assert!(dropped.failing_open.is_empty());
        let open = plan(&config("on_all_down = \"fail_open\""), &f, now);
        assert!(states(&open)
            .iter()
            .all(|(s, _)| *s == BackendState::Serving));
        assert_eq!(open.failing_open, ["web"]);
    }

    #[test]
    fn fail_open_does_not_revive_a_disabled_backend() {
        let now = Instant::now();
        let mut f = facts(now);
        down(&mut f, 11, now);
        f.admin.insert(key(12), AdminState::Disabled);
        let open = plan(&config("on_all_down = \"fail_open\""), &f, now);
        assert_eq!(
            states(&open),
            [(BackendState::Serving, 4), (BackendState::Down, 4)]
        );
    }

    #[test]
    fn a_recovered_backend_ramps_up_its_weight() {
        let now = Instant::now();
        let mut f = facts(now);
        down(&mut f, 11, now);
        let back = now + Duration::from_secs(60);
        let health = f.health.get_mut(&key(11)).unwrap();
        health.record(
            back,
            CheckResult {
                ok: true,
                latency: Duration::ZERO,
                detail: "ok".into(),
            },
            1,
            1,
        );
        let at = |secs: u64| plan(&config(""), &f, back + Duration::from_secs(secs));
        assert_eq!(states(&at(0))[0], (BackendState::Serving, 1));
        assert!(at(0).ramping);
        assert_eq!(states(&at(5))[0], (BackendState::Serving, 2));
        assert_eq!(states(&at(10))[0], (BackendState::Serving, 4));
        assert!(!at(10).ramping);
    }
}
