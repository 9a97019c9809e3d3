//! The L7/TCP proxy inside the daemon: started once the configuration is
//! validated (on its own runtime, see `proxy::runtime`), given each
//! reloaded configuration as a new snapshot, stopped on shutdown. A
//! frontend's access log and a backend's server UP/DOWN events go to the
//! section's syslog targets (`log global`: the `[[global.log]]` ones; a
//! backend without `log` sends its events to the global targets); its
//! servers' checks run on the proxy's runtime.
use crate::stats::SharedLive;
use crate::{
    control::{server_state::ProxyServerState, RuntimeState, ServerChange},
    health::proxy::ProxyHealth,
    log::{
        format::{AccessFormat, Zone},
        AccessRecord, Facility, Framing, Logger, Origin, Severity, TargetAddr, TargetConfig,
    },
    proxy::{
        config::{
            LogAddress, LogDestinations, LogFormat, LogSettings, LogTarget, ProxyConfig,
            SyslogFormat,
        },
        runtime::{AccessLogger, ProxyRuntime},
        snapshot::{Snapshot, StateRegistry},
        status::ProxyStatus,
    },
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tracing::info;

/// How long connections may finish after a stop before they are cut.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running proxy and what follows its snapshot.
pub(super) struct ProxyPart {
    registry: StateRegistry,
    runtime: ProxyRuntime,
    /// Checks of the current snapshot's servers (restarted per snapshot).
    health: Option<ProxyHealth>,
    loggers: Loggers,
    /// Where the checks report their latencies (the stats page's /metrics).
    live: SharedLive,
}

/// The syslog senders of a configuration: the global targets and each
/// section's own, started once per distinct configuration.
struct Loggers {
    /// What they were started for: a reload restarts them only when it
    /// changes.
    plan: LogPlan,
    global: Logger,
    /// Frontends with their own targets, by name.
    frontends: Arc<HashMap<String, Logger>>,
    /// Each backend's event logger, by backend id.
    backends: Vec<Logger>,
}

type LogPlan = (
    Vec<LogTarget>,
    Vec<(String, LogDestinations)>,
    Vec<LogDestinations>,
);

impl Loggers {
    fn plan(config: &ProxyConfig) -> LogPlan {
        (
            config.global.log.clone(),
            config
                .frontends
                .iter()
                .map(|f| (f.name.clone(), f.log_to.clone()))
                .collect(),
            config.backends.iter().map(|b| b.log_to.clone()).collect(),
        )
    }

    fn start(config: &ProxyConfig) -> anyhow::Result<Loggers> {
        let global = start_logger(&config.global.log)?;
        // A section's own `log` lines get senders of their own, started
        // once per distinct list (sections inheriting [defaults]' lines
        // share them); `log global` adds the global ones beside them.
        let mut started: Vec<(Vec<LogTarget>, Logger)> = Vec::new();
        let mut section = |to: &LogDestinations| -> anyhow::Result<Option<Logger>> {
            if to.targets.is_empty() {
                return Ok(None);
            }
            let own = match started.iter().find(|(targets, _)| *targets == to.targets) {
                Some((_, logger)) => logger.clone(),
                None => {
                    let logger = start_logger(&to.targets)?;
                    started.push((to.targets.clone(), logger.clone()));
                    logger
                }
            };
            Ok(Some(if to.global { global.join(&own) } else { own }))
        };
        let mut frontends = HashMap::new();
        for frontend in &config.frontends {
            if let Some(logger) = section(&frontend.log_to)? {
                frontends.insert(frontend.name.clone(), logger);
            }
        }
        let mut backends = Vec::new();
        for backend in &config.backends {
            backends.push(section(&backend.log_to)?.unwrap_or_else(|| global.clone()));
        }
        Ok(Loggers {
            plan: Loggers::plan(config),
            global,
            frontends: Arc::new(frontends),
            backends,
        })
    }

    fn access(&self) -> Arc<SyslogAccess> {
        Arc::new(SyslogAccess {
            global: self.global.clone(),
            frontends: self.frontends.clone(),
        })
    }

    fn flush(&self, timeout: Duration) {
        self.global.flush(timeout);
        for logger in self.frontends.values().chain(&self.backends) {
            logger.flush(timeout);
        }
    }
}

/// Access records to syslog, in each frontend's format, local time as
/// HAProxy prints it, to the frontend's own targets or the global ones.
struct SyslogAccess {
    global: Logger,
    frontends: Arc<HashMap<String, Logger>>,
}

impl AccessLogger for SyslogAccess {
    fn log(&self, settings: LogSettings, record: AccessRecord) {
        let format = match settings.format {
            LogFormat::Http => AccessFormat::HttpLog,
            LogFormat::Tcp => AccessFormat::TcpLog,
            LogFormat::Clf => AccessFormat::Clf,
            LogFormat::Json => AccessFormat::Json,
        };
        let logger = self
            .frontends
            .get(&*record.frontend)
            .unwrap_or(&self.global);
        // The runtime already left out null connections with dontlognull.
        logger.access(&record, format, Zone::Local, false);
    }
}

fn target_config(target: &LogTarget) -> TargetConfig {
    let addr = match &target.address {
        LogAddress::Udp(address) => TargetAddr::Udp(*address),
        LogAddress::Unix(path) => TargetAddr::Unix(path.clone()),
    };
    let mut config = TargetConfig::new(addr);
    config.max_len = target.max_len;
    config.min_level = target.min_level.and_then(Severity::from_code);
    config.facility = Facility::from_code(target.facility).unwrap_or(Facility::LOCAL0);
    config.level = Severity::from_code(target.level).unwrap_or(Severity::Debug);
    config.framing = match (target.format, &target.address) {
        (SyslogFormat::Rfc5424, _) => Framing::Rfc5424,
        (SyslogFormat::Rfc3164, LogAddress::Unix(_)) => Framing::Local,
        (SyslogFormat::Rfc3164, LogAddress::Udp(_)) => Framing::Rfc3164,
    };
    config
}

fn start_logger(targets: &[LogTarget]) -> anyhow::Result<Logger> {
    if targets.is_empty() {
        return Ok(Logger::disabled());
    }
    let configs: Vec<TargetConfig> = targets.iter().map(target_config).collect();
    Ok(Logger::start(
        &configs,
        Origin::this_process("lbd"),
        Zone::Local,
    )?)
}

impl ProxyPart {
    /// Starts the proxy if the configuration has frontends or backends.
    pub(super) fn start(
        config: &ProxyConfig,
        live: &SharedLive,
    ) -> anyhow::Result<Option<ProxyPart>> {
        if config.is_empty() {
            return Ok(None);
        }
        let registry = StateRegistry::new();
        let snapshot = Arc::new(registry.build(Arc::new(config.clone())));
        let runtime = ProxyRuntime::start(snapshot.clone())?;
        let loggers = Loggers::start(config)?;
        runtime.set_logger(loggers.access());
        let mut part = ProxyPart {
            registry,
            runtime,
            health: None,
            loggers,
            live: live.clone(),
        };
        part.follow(snapshot);
        info!(
            frontends = config.frontends.len(),
            backends = config.backends.len(),
            listening = ?part.runtime.listening(),
            "proxy started"
        );
        Ok(Some(part))
    }

    /// Restarts the server checks for `snapshot` on the proxy's runtime.
    fn follow(&mut self, snapshot: Arc<Snapshot>) {
        let loggers = self.loggers.backends.clone();
        let live = self.live.clone();
        self.health = self
            .runtime
            .handle()
            .map(|runtime| ProxyHealth::start_reporting(&runtime, snapshot, loggers, live));
    }

    /// Applies a reloaded configuration: a new snapshot (servers keep
    /// their state and counters by name), listeners by difference.
    pub(super) fn reload(&mut self, config: &ProxyConfig) -> anyhow::Result<()> {
        let snapshot = Arc::new(self.registry.build(Arc::new(config.clone())));
        self.runtime.apply(snapshot.clone())?;
        if Loggers::plan(config) != self.loggers.plan {
            self.loggers = Loggers::start(config)?;
            self.runtime.set_logger(self.loggers.access());
        }
        self.follow(snapshot);
        Ok(())
    }

    /// Whether the proxy has a backend named `name`.
    pub(super) fn has_backend(&self, name: &str) -> bool {
        self.registry.servers().iter().any(|((b, _), _)| b == name)
    }

    /// `set server BACKEND/SERVER state|weight` on a proxy server.
    pub(super) fn set_server(
        &self,
        backend: &str,
        server: &str,
        change: ServerChange,
    ) -> Result<String, String> {
        let state = self
            .registry
            .server(backend, server)
            .ok_or_else(|| format!("no server {server} in backend {backend}"))?;
        match change {
            ServerChange::State(s) => state.set_admin(s.proxy()),
            ServerChange::Weight(w) => state.set_weight(w),
            ServerChange::Check(enabled) => state.set_checks(enabled),
        }
        let (weight, admin) = (state.weight(), state.admin().name());
        let checks = if state.checks_enabled() {
            "checks on"
        } else {
            "checks off"
        };
        info!(
            backend,
            server, admin, weight, checks, "server changed at runtime"
        );
        Ok(format!(
            "{backend}/{server}: {admin}, weight {weight}, {checks}"
        ))
    }

    /// The servers whose state or weight differs from the configuration.
    pub(super) fn runtime_states(&self) -> Vec<ProxyServerState> {
        self.registry
            .servers()
            .into_iter()
            .filter_map(|((backend, server), state)| {
                let (weight, admin) = state.configured();
                let entry = ProxyServerState {
                    backend,
                    server,
                    state: (state.admin() != admin).then(|| RuntimeState::of_proxy(state.admin())),
                    weight: (state.weight() != weight).then(|| state.weight()),
                    check: (!state.checks_enabled()).then_some(false),
                };
                (entry.state.is_some() || entry.weight.is_some() || entry.check.is_some())
                    .then_some(entry)
            })
            .collect()
    }

    pub(super) fn status(&self) -> ProxyStatus {
        self.runtime.status()
    }

    /// Closes the listeners, lets connections finish (at most
    /// `STOP_GRACE`), then flushes the log.
    pub(super) async fn stop(self) {
        drop(self.health);
        self.runtime.stop(STOP_GRACE).await;
        self.loggers.flush(Duration::from_secs(1));
    }
}
