//! The running daemon's state and its answer to each event source: a
//! signal, a health result, a control request, a VRRP transition (VRRP
//! itself runs on its own thread), fresh neighbour MACs, the one-second
//! tick. Every change to what should
//! be forwarded ends in [`Running::apply`].
use crate::{
    config::{Config, HostEnvironment},
    control::state_file::StateFile,
    control::{
        server_state::{ServerStateFile, XdpServerState},
        Reply, Request, RuntimeState, ServerChange, ServerTarget, StateNotWritten,
    },
    dataplane::{
        desired, neighbour::InterfaceInfo, programmer::Programmer, resolver::backend_addresses,
        settings::sync_reply_lookup, LbMaps,
    },
    health::{driver::HealthDriver, state::CheckResult},
    vrrp::thread::VrrpThread,
};
use anyhow::bail;
use std::{collections::HashMap, net::IpAddr, path::PathBuf, time::Instant};
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

/// What the loop does after a control request.
#[derive(PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    Stop,
}

pub(super) struct Running {
    pub(super) instance: String,
    pub(super) config_path: PathBuf,
    pub(super) config: Config,
    pub(super) interface: InterfaceInfo,
    pub(super) programmer: Programmer,
    pub(super) maps: LbMaps,
    pub(super) health: HealthDriver,
    pub(super) state: StateFile,
    /// Some backend is still in slow start: re-plan every second.
    pub(super) ramping: bool,
    /// The backends the neighbour refresh keeps resolved.
    pub(super) wanted: watch::Sender<Vec<IpAddr>>,
    pub(super) vrrp: Option<VrrpThread>,
    /// The L7/TCP proxy, while the configuration has one.
    pub(super) proxy: Option<super::proxy::ProxyPart>,
    /// The stats page, while `[stats]` is configured.
    pub(super) stats: Option<crate::stats::StatsServer>,
    /// What the stats server needs to serve and act: the loop's control
    /// channel and the live metrics the loop feeds.
    pub(super) control_tx: tokio::sync::mpsc::Sender<crate::control::Call>,
    pub(super) live: crate::stats::SharedLive,
    /// BGP announcements through gobgpd (`[bgp]`), and what they follow.
    pub(super) bgp: Option<crate::bgp::Bgp>,
    pub(super) usable_vips: HashMap<IpAddr, bool>,
    pub(super) stopping: bool,
}

impl Running {
    /// Plans from the configuration and what is known (MACs, health, admin
    /// states, slow start), programs the maps, and refreshes the state
    /// file. Notes whether some backend is still ramping up.
    pub(super) fn apply(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        sync_reply_lookup(&mut self.maps, &self.config)?;
        let plan = desired::plan(&self.config, &self.health.facts, now);
        self.programmer.apply(&mut self.maps, &plan.services)?;
        self.health.note_plan(&plan);
        self.state.snapshot = self.programmer.snapshot().clone();
        self.state.health = self.health.status(now);
        self.ramping = plan.ramping;
        self.note_usable_vips(&plan.services);
        // The maps are programmed: a failed write does not undo that.
        self.state.write(&self.instance).map_err(StateNotWritten)?;
        Ok(())
    }

    /// [`Running::apply`] after an event; a failure is logged with `what`.
    fn apply_logged(&mut self, what: &str) {
        if let Err(e) = self.apply() {
            error!("{what}: {e:#}");
        }
    }

    /// Validates the file fully before touching anything; on success the
    /// new configuration replaces the current one, the health checks
    /// follow it and the maps are programmed.
    async fn reload(&mut self) -> Result<(), Reloaded> {
        self.load_new().await.map_err(Reloaded::Refused)?;
        self.apply().map_err(Reloaded::NotApplied)
    }

    async fn load_new(&mut self) -> anyhow::Result<()> {
        let new = Config::load(&self.config_path, &HostEnvironment)?;
        if new.instance != self.config.instance {
            bail!("the [instance] section changed; that needs a restart of lbd");
        }
        if new.vrrp != self.config.vrrp {
            bail!("the [[vrrp]] or [[vrrp_script]] sections changed; that needs a restart of lbd");
        }
        super::bgp::check_bgp_reload(&self.config, &new)?;
        self.reload_proxy(&new)?;
        let stats_changed = new.stats != self.config.stats;
        self.config = new;
        if stats_changed {
            self.restart_stats();
        }
        // New backends are resolved beside the loop (an ARP wait must not
        // hold up the loop); they get their slots when their MACs arrive.
        let _ = self.wanted.send(backend_addresses(&self.config));
        self.health.configure(&self.config, Instant::now());
        Ok(())
    }

    /// Hands the new proxy sections to the running proxy (starting it if
    /// the configuration gained one). A bind that fails refuses the reload.
    fn reload_proxy(&mut self, new: &Config) -> anyhow::Result<()> {
        match &mut self.proxy {
            Some(proxy) => proxy.reload(&new.proxy),
            None => {
                self.proxy = super::proxy::ProxyPart::start(&new.proxy, &self.live)?;
                Ok(())
            }
        }
    }

    /// Starts the stats page as configured, replacing the one running
    /// without waiting for it (an admin action in flight there waits for
    /// this very loop). A bind that fails is logged: the rest of the
    /// daemon runs on.
    pub(super) fn restart_stats(&mut self) {
        match crate::stats::StatsServer::replace(
            self.stats.take(),
            self.config.stats.clone(),
            &self.instance,
            self.control_tx.clone(),
            self.live.clone(),
        ) {
            Ok(server) => self.stats = server,
            Err(e) => error!("stats page not started: {e:#}"),
        }
    }

    /// Applies the server-state file (runtime states and weights from
    /// before a restart) to what the configuration still has.
    pub(super) fn restore_server_states(&mut self) {
        let file = match ServerStateFile::read(&self.instance) {
            Ok(file) => file,
            Err(e) => {
                warn!("server-state file ignored: {e}");
                return;
            }
        };
        let now = Instant::now();
        for x in &file.xdp {
            let backend = x.backend.to_string();
            let mut result = Ok(());
            if let Some(state) = x.state {
                result = self
                    .health
                    .set_admin(&x.service, &backend, state.xdp(), now);
            }
            if let (Some(weight), Ok(())) = (x.weight, &result) {
                result = self.health.set_weight(&x.service, &backend, weight);
            }
            if let (Some(false), Ok(())) = (x.check, &result) {
                result = self
                    .health
                    .set_checks(&x.service, &backend, false, now)
                    .map(|_| ());
            }
            if let Err(e) = result {
                warn!("server-state file: {e} (not restored)");
            }
        }
        if let Some(proxy) = &self.proxy {
            for p in &file.proxy {
                let mut result = Ok(String::new());
                if let Some(state) = p.state {
                    result = proxy.set_server(&p.backend, &p.server, ServerChange::State(state));
                }
                if let (Some(weight), Ok(_)) = (p.weight, &result) {
                    result = proxy.set_server(&p.backend, &p.server, ServerChange::Weight(weight));
                }
                if let (Some(false), Ok(_)) = (p.check, &result) {
                    result = proxy.set_server(&p.backend, &p.server, ServerChange::Check(false));
                }
                if let Err(e) = result {
                    warn!("server-state file: {e} (not restored)");
                }
            }
        }
        if file != ServerStateFile::default() {
            info!(
                xdp = file.xdp.len(),
                proxy = file.proxy.len(),
                "runtime server states restored"
            );
        }
    }

    /// What differs from the configuration now.
    fn server_states(&self) -> ServerStateFile {
        let mut xdp: Vec<XdpServerState> = Vec::new();
        let facts = &self.health.facts;
        let keys: std::collections::BTreeSet<_> = facts
            .admin
            .keys()
            .chain(facts.weights.keys())
            .chain(facts.health.keys())
            .collect();
        for key in keys {
            xdp.push(XdpServerState {
                service: key.0.clone(),
                backend: key.1,
                state: facts
                    .admin
                    .get(key)
                    .filter(|a| **a != crate::health::AdminState::Enabled)
                    .map(|a| RuntimeState::of_xdp(*a)),
                weight: facts.weights.get(key).copied(),
                check: (!self.health.checks_enabled(key)).then_some(false),
            });
        }
        xdp.retain(|x| x.state.is_some() || x.weight.is_some() || x.check.is_some());
        ServerStateFile {
            xdp,
            proxy: self
                .proxy
                .as_ref()
                .map(super::proxy::ProxyPart::runtime_states)
                .unwrap_or_default(),
        }
    }

    fn save_server_states(&self) {
        if let Err(e) = self.server_states().write(&self.instance) {
            error!(
                "writing the server-state file: {e} (runtime states will not survive a restart)"
            );
        }
    }

    /// `set server GROUP/MEMBER ...`: a proxy server, or an XDP backend.
    fn set_server(
        &mut self,
        group: &str,
        member: &str,
        target: Option<ServerTarget>,
        change: ServerChange,
    ) -> Reply {
        let proxy_has = self.proxy.as_ref().is_some_and(|p| p.has_backend(group));
        let reply = match (target, &self.proxy) {
            (Some(ServerTarget::Proxy), Some(proxy)) | (None, Some(proxy)) if proxy_has => {
                match proxy.set_server(group, member, change) {
                    Ok(message) => Reply { ok: true, message },
                    Err(message) => Reply { ok: false, message },
                }
            }
            (Some(ServerTarget::Proxy), _) => Reply {
                ok: false,
                message: format!("no proxy backend {group}"),
            },
            _ => {
                let result = match change {
                    ServerChange::State(state) => {
                        self.health
                            .set_admin(group, member, state.xdp(), Instant::now())
                    }
                    ServerChange::Weight(weight) => self.health.set_weight(group, member, weight),
                    ServerChange::Check(enabled) => self
                        .health
                        .set_checks(group, member, enabled, Instant::now())
                        .map(|_| ()),
                };
                match result {
                    Err(message) => Reply { ok: false, message },
                    Ok(()) => Reply::after_apply(
                        format!("{group}/{member}: {change:?}").to_lowercase(),
                        self.apply(),
                    ),
                }
            }
        };
        if reply.ok {
            self.save_server_states();
            self.state.proxy = self.proxy.as_ref().map(super::proxy::ProxyPart::status);
            if let Err(e) = self.state.write(&self.instance) {
                warn!("writing the state file: {e}");
            }
        }
        reply
    }

    /// SIGHUP.
    pub(super) async fn on_hangup(&mut self) {
        match self.reload().await {
            Err(Reloaded::Refused(e)) => {
                error!("reload refused, configuration unchanged: {e:#}")
            }
            Err(Reloaded::NotApplied(e)) => error!("applying reloaded configuration: {e:#}"),
            Ok(()) => info!(
                services = self.config.services.len(),
                "configuration reloaded"
            ),
        }
    }

    pub(super) fn on_health(&mut self, key: desired::BackendKey, result: CheckResult) {
        self.live.observe_check(&key.0, key.1, result.latency);
        if self.health.record(&key, result, Instant::now()) {
            self.apply_logged("applying a health change");
        }
    }

    /// A request on the control socket; `Stop` is answered before the
    /// loop ends.
    pub(super) async fn on_control(
        &mut self,
        request: Request,
        reply: oneshot::Sender<Reply>,
    ) -> Next {
        let answer = match request {
            Request::Backend {
                service,
                backend,
                state: admin,
            } => match self
                .health
                .set_admin(&service, &backend, admin, Instant::now())
            {
                Err(message) => Reply { ok: false, message },
                Ok(()) => {
                    let reply = Reply::after_apply(
                        format!("{service} {backend}: {admin:?}").to_lowercase(),
                        self.apply(),
                    );
                    self.save_server_states();
                    reply
                }
            },
            Request::SetServer {
                group,
                member,
                target,
                change,
            } => self.set_server(&group, &member, target, change),
            Request::ShowServersState => Reply {
                ok: true,
                message: serde_json::to_string_pretty(&self.server_states()).unwrap_or_default(),
            },
            Request::Stop => {
                let _ = reply.send(Reply {
                    ok: true,
                    message: format!("{}: stopping, tearing down the data plane", self.instance),
                });
                return Next::Stop;
            }
            Request::Reload => match self.reload().await {
                Err(Reloaded::Refused(e)) => {
                    error!("reload refused, configuration unchanged: {e:#}");
                    Reply {
                        ok: false,
                        message: format!("reload refused, configuration unchanged: {e:#}"),
                    }
                }
                Err(Reloaded::NotApplied(e)) => Reply::after_apply(
                    format!("reloaded: {} services", self.config.services.len()),
                    Err(e),
                ),
                Ok(()) => {
                    info!(
                        services = self.config.services.len(),
                        "configuration reloaded"
                    );
                    Reply {
                        ok: true,
                        message: format!("reloaded: {} services", self.config.services.len()),
                    }
                }
            },
        };
        let _ = reply.send(answer);
        Next::Continue
    }

    /// A VRRP state changed: the state file shows it at once, without
    /// waiting for the periodic refresh.
    pub(super) fn on_vrrp_transition(&mut self, changes: u64) {
        self.live.set_vrrp_transitions(changes);
        if let Some(thread) = &self.vrrp {
            self.state.vrrp = thread.status();
            self.sync_bgp();
            if let Err(e) = self.state.write(&self.instance) {
                warn!("writing the state file: {e}");
            }
        }
    }

    pub(super) fn on_neighbours(&mut self, fresh: HashMap<IpAddr, [u8; 6]>) {
        self.health.facts.macs = fresh;
        self.apply_logged("applying neighbour change");
    }

    /// Every second: slow start's weights move, the state file is
    /// refreshed.
    pub(super) fn on_tick(&mut self) {
        if self.ramping {
            self.apply_logged("applying slow-start weights");
        }
        if let Some(thread) = &self.vrrp {
            self.state.vrrp = thread.status();
        }
        self.state.health = self.health.status(Instant::now());
        self.state.proxy = self.proxy.as_ref().map(super::proxy::ProxyPart::status);
        self.sync_bgp();
        if let Err(e) = self.state.write(&self.instance) {
            warn!("writing the state file: {e}");
        }
    }
}

/// Why a reload did not take effect.
enum Reloaded {
    /// The file is invalid or changes what needs a restart: nothing
    /// changed.
    Refused(anyhow::Error),
    /// Accepted, but programming the maps failed.
    NotApplied(anyhow::Error),
}
