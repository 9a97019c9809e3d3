//! The thin driver of `lbd run`: owns the sockets, signals and timers, and
//! hands everything else to the library.
use anyhow::{bail, Context};
use aya::programs::XdpMode;
use lbd::{
    config::{Config, ForwardingMode, HostEnvironment, XdpModeChoice},
    dataplane::{self, Dataplane, LbMaps, MapSizes},
    neighbour::{self, InterfaceInfo},
    programmer::{Programmer, Tunables},
    status::{snapshot_path, StateFile, RUN_DIR},
};
use nix::fcntl::{Flock, FlockArg};
use std::{
    collections::HashMap,
    fs::File,
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::{control, health_driver::HealthDriver, vrrp_driver::VrrpDriver};

/// How often resolved backend MACs are checked again.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(30);
/// How long to wait for ARP replies in one round.
const ARP_WAIT: Duration = Duration::from_millis(500);

pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    // First, so that a stop requested while starting up is queued for the
    // loop below instead of killing the process with its pins in place.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let instance = config.instance.name.clone();
    let _lock = lock_instance(&instance)?;
    dataplane::ensure_bpffs()?;
    let pins = dataplane::pin_dir(&instance);
    let sizes = MapSizes::from_config(&config.instance);
    // We hold the instance lock: pins here belong to an lbd that stopped
    // (SIGTERM keeps the data plane for us) or died. Re-adopt them when
    // their layout is this build's and the sizes are the configured ones.
    let adopt = pins.join(lb_common::map_names::SERVICES).exists()
        && match dataplane::pinned_layout_matches(&pins, &sizes) {
            Ok(()) => true,
            Err(reason) => {
                warn!(dir = %pins.display(), %reason,
                    "pinned maps do not fit this build or configuration: re-creating them (their flows are lost)");
                false
            }
        };
    if !adopt && pins.exists() {
        remove_pins(&pins);
    }
    std::fs::create_dir_all(&pins).with_context(|| format!("creating {}", pins.display()))?;
    let mut dataplane =
        Dataplane::load_with_pins(dataplane::embedded_object()?, &sizes, Some(&pins))?;
    let mut pins_guard = PinsGuard {
        dir: pins.clone(),
        snapshot: snapshot_path(&instance),
        keep: false,
    };
    let mut maps = dataplane.take_maps(None)?;
    if adopt {
        info!(dir = %pins.display(), "re-adopting the pinned maps of a previous lbd: flows keep their backends");
    } else {
        info!(dir = %pins.display(), "maps pinned");
    }

    let (connection, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
    tokio::spawn(connection);
    let interface = neighbour::interface_info(&handle, &config.instance.interface).await?;

    let mut programmer = Programmer::new(sizes.ring_size, sizes.max_services, sizes.max_backends);
    if adopt {
        let services: Vec<_> = maps.services.iter().filter_map(Result::ok).collect();
        let backends: Vec<_> = maps
            .backends
            .iter()
            .enumerate()
            .filter_map(|(id, b)| Some((id as u32, b.ok()?)))
            .collect();
        programmer.adopt(&services, &backends);
    }
    // With VRRP, a node forwards only as master (the driver flips this).
    let tunables = tunables(&config, &interface);
    enable_forwarding(&config);
    programmer.set_settings(&mut maps, interface.mac, config.vrrp.is_empty(), &tunables)?;
    let mut state = StateFile {
        pid: std::process::id(),
        ..StateFile::default()
    };
    let (health_tx, mut health_rx) = tokio::sync::mpsc::channel(1024);
    let mut health = HealthDriver::new(health_tx);
    health.configure(&config, Instant::now());
    health.facts.macs = resolve(&handle, &interface, &backend_addresses(&config)).await;
    let mut ramping = apply(
        &mut programmer,
        &mut maps,
        &config,
        &mut health,
        &mut state,
        &instance,
    )?;

    // Attach only once the maps are full, so the first packets already
    // find their services.
    let link_pin = pins.join(dataplane::LINK_PIN);
    let (link, mode) = if link_pin.exists() {
        // The previous lbd left its program attached: swap ours in.
        (dataplane.replace_pinned(&link_pin)?, "adopted")
    } else {
        attach(
            &mut dataplane,
            &config.instance.interface,
            config.instance.xdp_mode,
        )?
    };
    state.xdp_mode = Some(mode.into());
    state.write(&instance)?;
    info!(instance, interface = %interface.name, services = config.services.len(), "data plane attached");

    // Neighbour refreshes wait for ARP replies: they run beside the loop,
    // which must stay free for VRRP's timers.
    let (wanted_tx, wanted_rx) = tokio::sync::watch::channel(backend_addresses(&config));
    let (macs_tx, mut macs_rx) = tokio::sync::mpsc::channel(4);
    let neighbours = tokio::spawn(refresh_neighbours(
        handle.clone(),
        interface.clone(),
        wanted_rx,
        health.facts.macs.clone(),
        macs_tx,
    ));

    let (vrrp_tx, mut vrrp_rx) = tokio::sync::mpsc::channel(1024);
    let mut vrrp = if config.vrrp.is_empty() {
        None
    } else {
        let pin = pins.join(lb_common::map_names::SETTINGS);
        Some(VrrpDriver::start(&config.vrrp, &interface, handle.clone(), &pin, vrrp_tx).await?)
    };

    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel(16);
    let control_task = control::serve(&instance, control_tx)?;

    let mut config = config;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    start_collector(&pins, collection_interval(&tunables))?;
    loop {
        let vrrp_deadline = vrrp
            .as_ref()
            .and_then(VrrpDriver::next_deadline)
            .map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            );
        tokio::select! {
            // A service manager's stop (or restart): keep the data plane.
            _ = sigterm.recv() => { pins_guard.keep = true; break }
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                if let Err(e) = reload(&config_path, &mut config, &handle, &interface, &mut health, &wanted_tx).await {
                    error!("reload refused, configuration unchanged: {e:#}");
                } else {
                    match apply(&mut programmer, &mut maps, &config, &mut health, &mut state, &instance) {
                        Ok(r) => { ramping = r; info!(services = config.services.len(), "configuration reloaded") }
                        Err(e) => error!("applying reloaded configuration: {e:#}"),
                    }
                }
            }
            Some((key, result)) = health_rx.recv() => {
                if health.record(&key, result, Instant::now()) {
                    match apply(&mut programmer, &mut maps, &config, &mut health, &mut state, &instance) {
                        Ok(r) => ramping = r,
                        Err(e) => error!("applying a health change: {e:#}"),
                    }
                }
            }
            Some((request, reply)) = control_rx.recv() => {
                let answer = match request {
                    control::Request::Backend { service, backend, state: admin } => {
                        match health.set_admin(&service, &backend, admin, Instant::now()) {
                            Err(message) => control::Reply { ok: false, message },
                            Ok(()) => match apply(&mut programmer, &mut maps, &config, &mut health, &mut state, &instance) {
                                Ok(r) => { ramping = r; control::Reply { ok: true, message: format!("{service} {backend}: {admin:?}").to_lowercase() } }
                                Err(e) => control::Reply { ok: false, message: format!("{e:#}") },
                            },
                        }
                    }
                    control::Request::Stop => {
                        let _ = reply.send(control::Reply { ok: true, message: format!("{instance}: stopping, tearing down the data plane") });
                        break;
                    }
                    control::Request::Reload => {
                        match reload(&config_path, &mut config, &handle, &interface, &mut health, &wanted_tx).await {
                            Err(e) => {
                                error!("reload refused, configuration unchanged: {e:#}");
                                control::Reply { ok: false, message: format!("reload refused, configuration unchanged: {e:#}") }
                            }
                            Ok(()) => match apply(&mut programmer, &mut maps, &config, &mut health, &mut state, &instance) {
                                Ok(r) => {
                                    ramping = r;
                                    info!(services = config.services.len(), "configuration reloaded");
                                    control::Reply { ok: true, message: format!("reloaded: {} services", config.services.len()) }
                                }
                                Err(e) => control::Reply { ok: false, message: format!("{e:#}") },
                            },
                        }
                    }
                };
                let _ = reply.send(answer);
            }
            Some(event) = vrrp_rx.recv() => {
                if let Some(driver) = vrrp.as_mut() {
                    let before = driver.states();
                    driver.handle_event(event).await;
                    publish_transitions(driver, &before, &mut state, &instance);
                }
            }
            _ = tokio::time::sleep_until(vrrp_deadline) => {
                if let Some(driver) = vrrp.as_mut() {
                    let before = driver.states();
                    driver.handle_timeouts().await;
                    publish_transitions(driver, &before, &mut state, &instance);
                }
            }
            Some(fresh) = macs_rx.recv() => {
                health.facts.macs = fresh;
                match apply(&mut programmer, &mut maps, &config, &mut health, &mut state, &instance) {
                    Ok(r) => ramping = r,
                    Err(e) => error!("applying neighbour change: {e:#}"),
                }
            }
            _ = tick.tick() => {
                if ramping {
                    // Slow start: the weights move every second.
                    match apply(&mut programmer, &mut maps, &config, &mut health, &mut state, &instance) {
                        Ok(r) => ramping = r,
                        Err(e) => error!("applying slow-start weights: {e:#}"),
                    }
                }
                if let Some(driver) = &vrrp {
                    state.vrrp = driver.status();
                }
                state.health = health.status(Instant::now());
                if let Err(e) = state.write(&instance) {
                    warn!("writing the state file: {e}");
                }
            }
        }
    }
    info!(instance, "stopping");
    if let Some(driver) = vrrp.as_mut() {
        driver.shutdown().await;
    }
    neighbours.abort();
    control_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&instance));
    if pins_guard.keep {
        // Pinned, the link keeps the program attached after we exit.
        link.pin(pins.join(dataplane::LINK_PIN))
            .map_err(|e| anyhow::anyhow!("pinning the XDP link: {e}"))?;
        state.pid = 0;
        state.write(&instance)?;
        info!(instance, "stopped; the data plane keeps forwarding until the next lbd adopts it (lbd stop tears it down)");
    } else {
        drop(link);
        info!(instance, "detaching and unpinning");
    }
    Ok(())
}

/// Writes the state file at once when a VRRP state changed, so `lbd
/// status` shows transitions without waiting for the periodic refresh.
fn publish_transitions(
    driver: &VrrpDriver,
    before: &[lbd::vrrp::machine::State],
    state: &mut StateFile,
    instance: &str,
) {
    if driver.states() != before {
        state.vrrp = driver.status();
        if let Err(e) = state.write(instance) {
            warn!("writing the state file: {e}");
        }
    }
}

/// Re-resolves the backends' MACs: every second while some are unknown,
/// every [`NEIGHBOUR_REFRESH`] otherwise; sends the map when it changes.
async fn refresh_neighbours(
    handle: rtnetlink::Handle,
    interface: InterfaceInfo,
    wanted: tokio::sync::watch::Receiver<Vec<IpAddr>>,
    mut known: HashMap<IpAddr, [u8; 6]>,
    changes: tokio::sync::mpsc::Sender<HashMap<IpAddr, [u8; 6]>>,
) {
    let mut last_full = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let targets = wanted.borrow().clone();
        let unresolved = targets.iter().any(|a| !known.contains_key(a));
        if !unresolved && last_full.elapsed() < NEIGHBOUR_REFRESH {
            continue;
        }
        last_full = Instant::now();
        let fresh = resolve(&handle, &interface, &targets).await;
        if fresh != known {
            known = fresh.clone();
            if changes.send(fresh).await.is_err() {
                return;
            }
        }
    }
}

/// Validates the file fully before touching anything; on success the new
/// configuration replaces `current` and the health checks follow it.
async fn reload(
    path: &Path,
    current: &mut Config,
    handle: &rtnetlink::Handle,
    interface: &InterfaceInfo,
    health: &mut HealthDriver,
    wanted: &tokio::sync::watch::Sender<Vec<IpAddr>>,
) -> anyhow::Result<()> {
    let new = Config::load(path, &HostEnvironment)?;
    if new.instance != current.instance {
        bail!("the [instance] section changed; that needs a restart of lbd");
    }
    if new.vrrp != current.vrrp {
        bail!("the [[vrrp]] or [[vrrp_script]] sections changed; that needs a restart of lbd");
    }
    *current = new;
    let addresses = backend_addresses(current);
    let _ = wanted.send(addresses.clone());
    let fresh = resolve(handle, interface, &addresses).await;
    health.facts.macs.extend(fresh);
    health.configure(current, Instant::now());
    Ok(())
}

/// The data-path knobs: timeouts and `fullnat` source addresses (the
/// configured ones, else the interface's first address of each family).
fn tunables(config: &Config, interface: &InterfaceInfo) -> Tunables {
    let (v4, v6) = interface.primary_addresses();
    let instance = &config.instance;
    let tunables = Tunables {
        snat_v4: instance.snat_ipv4.or(v4),
        snat_v6: instance.snat_ipv6.or(v6),
        snat_ports: instance.snat_port_range,
        tcp_timeout: instance.tcp_timeout,
        tcp_fin_timeout: instance.tcp_fin_timeout,
        udp_timeout: instance.udp_timeout,
        reply_lookup: uses_nat(config),
        all_ports: config.services.iter().any(|s| s.port == 0),
    };
    for service in config
        .services
        .iter()
        .filter(|s| s.mode == ForwardingMode::Fullnat)
    {
        let source = if service.vip.is_ipv4() {
            tunables.snat_v4.map(IpAddr::V4)
        } else {
            tunables.snat_v6.map(IpAddr::V6)
        };
        match source {
            Some(source) => {
                info!(service = %service.name, %source, ports = ?tunables.snat_ports, "fullnat source")
            }
            None => warn!(service = %service.name, interface = %interface.name,
                "fullnat has no source address of this family (set instance.snat_ipv4 / snat_ipv6): its packets pass, counted as pass_snat_exhausted"),
        }
    }
    tunables
}

/// Deletes dead flows on a thread of its own, through its own handles on
/// the pinned maps: a pass walks the whole table (two syscalls per entry),
/// which must not delay VRRP's timers in the main loop. It ends with the
/// process.
fn start_collector(pins: &Path, every: Duration) -> anyhow::Result<()> {
    use aya::maps::{HashMap as BpfHashMap, Map, MapData};
    let open = |name: &str| -> anyhow::Result<Map> {
        let data = MapData::from_pin(pins.join(name)).with_context(|| format!("opening {name}"))?;
        Ok(Map::from_map_data(data)?)
    };
    let mut conntrack: BpfHashMap<MapData, lb_common::FlowKey, lb_common::ConnEntry> =
        BpfHashMap::try_from(open(lb_common::map_names::CONNTRACK)?)?;
    let mut reverse: BpfHashMap<MapData, lb_common::FlowKey, lb_common::ReverseEntry> =
        BpfHashMap::try_from(open(lb_common::map_names::NAT_REVERSE)?)?;
    std::thread::Builder::new()
        .name("flow-collector".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let now_ns = lbd::conntrack::monotonic_now_ns();
            match lbd::conntrack::collect(&mut conntrack, &mut reverse, now_ns) {
                Ok(c) if c.flows + c.replies > 0 => {
                    tracing::debug!(
                        flows = c.flows,
                        replies = c.replies,
                        "expired connection-table entries removed"
                    )
                }
                Ok(_) => {}
                Err(e) => warn!("collecting expired flows: {e}"),
            }
        })?;
    Ok(())
}

/// Whether some service is `nat` or `fullnat`.
fn uses_nat(config: &Config) -> bool {
    config
        .services
        .iter()
        .any(|s| s.mode != ForwardingMode::Dsr)
}

/// After a reload: the reply lookup (and forwarding) follow the services'
/// modes. Read-modify-write, as the VRRP driver owns `forwarding`.
fn sync_reply_lookup(maps: &mut LbMaps, config: &Config) -> anyhow::Result<()> {
    let wanted = u8::from(uses_nat(config));
    let mut settings = maps.settings.get(&0, 0)?;
    let all_ports = u8::from(config.services.iter().any(|s| s.port == 0));
    if settings.all_ports != all_ports {
        settings.all_ports = all_ports;
        maps.settings.set(0, settings, 0)?;
    }
    if settings.reply_lookup != wanted {
        if wanted == 1 {
            enable_forwarding(config);
        }
        settings.reply_lookup = wanted;
        maps.settings.set(0, settings, 0)?;
        info!(
            reply_lookup = wanted == 1,
            "nat/fullnat reply path switched"
        );
    }
    Ok(())
}

/// How often dead flows are collected: twice per shortest timeout, within
/// 1..=10 s (each pass walks the whole connection table).
fn collection_interval(tunables: &Tunables) -> Duration {
    let shortest = tunables
        .udp_timeout
        .min(tunables.tcp_fin_timeout)
        .min(tunables.tcp_timeout);
    (shortest / 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// `nat` and `fullnat` route: `bpf_fib_lookup` answers only when the
/// kernel forwards for that family, and a packet it cannot answer for is
/// forwarded by the kernel itself. So forwarding is switched on for each
/// family such a service uses (as an LVS-NAT director needs it too).
fn enable_forwarding(config: &Config) {
    let routed = |v4: bool| {
        config
            .services
            .iter()
            .any(|s| s.mode != ForwardingMode::Dsr && s.vip.is_ipv4() == v4)
    };
    for (v4, path) in [
        (true, "/proc/sys/net/ipv4/conf/all/forwarding"),
        (false, "/proc/sys/net/ipv6/conf/all/forwarding"),
    ] {
        if !routed(v4) {
            continue;
        }
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        match std::fs::write(path, "1") {
            Ok(()) => info!(sysctl = path, "forwarding enabled for the nat/fullnat services"),
            Err(e) => warn!(sysctl = path, "cannot enable forwarding ({e}): nat/fullnat packets the FIB cannot place will be dropped by the kernel"),
        }
    }
}

/// Backends whose neighbour entry matters: a `dsr` backend's MAC goes into
/// the maps; the NAT modes take the next hop from the kernel's FIB, which
/// answers only for neighbours the kernel knows (see [`resolve`]).
fn backend_addresses(config: &Config) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = config
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.address))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// MACs of `targets`: the kernel's neighbour table, then ARP / neighbour
/// solicitations for the rest.
async fn resolve(
    handle: &rtnetlink::Handle,
    interface: &InterfaceInfo,
    targets: &[IpAddr],
) -> HashMap<IpAddr, [u8; 6]> {
    let mut found = match neighbour::kernel_neighbours(handle, interface.index).await {
        Ok(all) => all
            .into_iter()
            .filter(|(ip, _)| targets.contains(ip))
            .collect(),
        Err(e) => {
            warn!("reading the neighbour table: {e}");
            HashMap::new()
        }
    };
    let missing: Vec<IpAddr> = targets
        .iter()
        .filter(|t| !found.contains_key(t))
        .copied()
        .collect();
    // Off-link backends: a nat/fullnat one is reached through a router
    // (the FIB's business); a dsr one cannot work.
    let missing: Vec<IpAddr> = missing
        .into_iter()
        .filter(|t| interface.source_for(*t).is_some())
        .collect();
    let interface_index = interface.index;
    if !missing.is_empty() {
        let interface = interface.clone();
        let asked = missing.clone();
        match tokio::task::spawn_blocking(move || neighbour::solicit(&interface, &asked, ARP_WAIT))
            .await
        {
            Ok(Ok(answers)) => {
                // The kernel ignores answers to solicitations it did not
                // send; tell it (as "stale": it re-checks on its own use).
                // Without the entry, bpf_fib_lookup answers "no neighbour"
                // for every nat/fullnat packet to this backend, and a
                // fullnat one, whose source is our own address, would then
                // be dropped by the kernel as a martian.
                for (ip, mac) in &answers {
                    if let Err(e) =
                        neighbour::teach_kernel(handle, interface_index, *ip, *mac).await
                    {
                        warn!(backend = %ip, "adding the neighbour entry: {e}");
                    }
                }
                found.extend(answers)
            }
            Ok(Err(e)) => warn!("neighbour resolution: {e}"),
            Err(e) => warn!("neighbour resolution task: {e}"),
        }
        for target in missing.iter().filter(|t| !found.contains_key(t)) {
            warn!(backend = %target, "no ARP / neighbour advertisement reply yet (a dsr backend gets no traffic until it answers)");
        }
    }
    found
}

/// Plans from the configuration and what is known (MACs, health, admin
/// states, slow start), programs the maps, and refreshes the state file.
/// Returns whether some backend is still ramping up.
fn apply(
    programmer: &mut Programmer,
    maps: &mut LbMaps,
    config: &Config,
    health: &mut HealthDriver,
    state: &mut StateFile,
    instance: &str,
) -> anyhow::Result<bool> {
    let now = Instant::now();
    sync_reply_lookup(maps, config)?;
    let plan = lbd::desired::plan(config, &health.facts, now);
    programmer.apply(maps, &plan.services)?;
    health.note_plan(&plan);
    state.snapshot = programmer.snapshot().clone();
    state.health = health.status(now);
    state.write(instance)?;
    Ok(plan.ramping)
}

fn attach(
    dataplane: &mut Dataplane,
    interface: &str,
    choice: XdpModeChoice,
) -> anyhow::Result<(aya::programs::links::FdLink, &'static str)> {
    match choice {
        XdpModeChoice::Native => {
            let link = dataplane
                .attach(interface, XdpMode::Driver)
                .context("attaching in native mode (xdp_mode = \"native\")")?;
            info!(interface, "attached in native (driver) mode");
            Ok((link, "native"))
        }
        XdpModeChoice::Generic => {
            let link = dataplane.attach(interface, XdpMode::Skb)?;
            info!(interface, "attached in generic (skb) mode, as configured");
            Ok((link, "generic"))
        }
        XdpModeChoice::Auto => match dataplane.attach(interface, XdpMode::Driver) {
            Ok(link) => {
                info!(interface, "attached in native (driver) mode");
                Ok((link, "native"))
            }
            Err(native) => {
                warn!(interface, error = %native,
                    "native XDP attach failed; falling back to generic (skb) mode, which is slower");
                let link = dataplane
                    .attach(interface, XdpMode::Skb)
                    .context("attaching in generic mode after native failed")?;
                Ok((link, "generic"))
            }
        },
    }
}

/// True when nobody holds the lock at `path` (it is released at once).
pub fn try_lock(path: &Path) -> anyhow::Result<bool> {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return Ok(true);
    };
    Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok())
}

/// Holds `/run/lbd/<instance>.lock` for the life of the daemon.
fn lock_instance(instance: &str) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let path = Path::new(RUN_DIR).join(format!("{instance}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
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
struct PinsGuard {
    dir: PathBuf,
    snapshot: PathBuf,
    /// Stopped by SIGTERM: leave the data plane for the next lbd.
    keep: bool,
}

impl Drop for PinsGuard {
    fn drop(&mut self) {
        if !self.keep {
            remove_pins(&self.dir);
            let _ = std::fs::remove_file(&self.snapshot);
        }
    }
}

pub fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
