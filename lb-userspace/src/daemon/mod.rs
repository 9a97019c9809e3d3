//! `lbd run`: wires the subsystems together and owns the signals. Start-up
//! runs as named phases (lock, adopt or create the data plane, resolve,
//! program, attach, start the drivers); then one loop hands each event
//! source to its handler in `events`.
mod bgp;
mod events;
mod limits;
mod lock;
mod proxy;

pub use lock::{remove_pins, try_remove_pins};

use crate::{
    config::{Config, XdpModeChoice},
    control,
    control::state_file::{snapshot_path, StateFile},
    dataplane::{
        self, conntrack, neighbour,
        programmer::Programmer,
        resolver::{backend_addresses, refresh_neighbours, resolve},
        settings::{enable_forwarding, tunables},
        Dataplane, LbMaps, MapSizes,
    },
    health::driver::HealthDriver,
    vrrp::thread::VrrpThread,
};
use anyhow::Context;
use aya::programs::{links::FdLink, XdpMode};
use events::{Next, Running};
use lock::{lock_instance, PinsGuard};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// How long a stopping daemon waits for its control connections to end,
/// so that `lbd stop` gets its reply (a client holding a connection open
/// delays the exit by no more than this).
const CONTROL_REPLY_GRACE: Duration = Duration::from_secs(1);

/// Runs the instance `config` (already validated) describes until a
/// signal or `lbd stop`.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    // First, so that a stop requested while starting up is queued for the
    // loop below instead of killing the process with its pins in place.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    // Validate and lock: one daemon per instance.
    let instance = config.instance.name.clone();
    let _lock = lock_instance(&instance)?;

    // Open files: raise the soft limit to the hard one.
    limits::raise_nofile();

    // gobgpd first: a missing speaker fails the start before the data
    // plane is touched. Nothing is announced until the program forwards.
    let bgp = config
        .bgp
        .as_ref()
        .map(crate::bgp::Bgp::start)
        .transpose()
        .context("starting BGP")?;

    // Adopt the data plane a previous lbd left, or create it. From here
    // on an adopted data plane is kept whatever fails: it forwards.
    let (mut dataplane, mut maps, mut pins_guard, adopted) = adopt_or_create(&config)?;
    let pins = pins_guard.dir.clone();

    // Resolve the interface, the settings and the backends' MACs.
    let (connection, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
    tokio::spawn(connection);
    let interface = neighbour::interface_info(&handle, &config.instance.interface).await?;
    let sizes = MapSizes::from_config(&config.instance);
    let mut programmer = Programmer::new(sizes.ring_size, sizes.max_services, sizes.max_backends);
    if adopted {
        adopt_programmed(&mut programmer, &maps);
    }
    // With VRRP, a node forwards only as master (the driver flips this).
    let tunables = tunables(&config, &interface);
    enable_forwarding(&config);
    programmer.set_settings(&mut maps, interface.mac, config.vrrp.is_empty(), &tunables)?;
    let (health_tx, mut health_rx) = tokio::sync::mpsc::channel(1024);
    let mut health = HealthDriver::new(health_tx);
    health.configure(&config, Instant::now());
    health.facts.macs = resolve(&handle, &interface, &backend_addresses(&config)).await;
    let (wanted, wanted_rx) = tokio::sync::watch::channel(backend_addresses(&config));

    // The L7/TCP proxy binds its frontends (IP_FREEBIND: a VRRP backup
    // binds the VIP before it holds it) on its own runtime.
    // The live metrics the stats page's /metrics shows beside the sample
    // (check latencies of XDP backends and proxy servers, VRRP).
    let live = std::sync::Arc::new(crate::stats::LiveMetrics::default());
    let proxy = proxy::ProxyPart::start(&config.proxy, &live).context("starting the proxy")?;

    // The control channel exists before the socket: the stats page sends
    // its actions through it too.
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel(16);
    // Program the maps.
    let mut daemon = Running {
        instance: instance.clone(),
        config_path,
        config,
        interface,
        programmer,
        maps,
        health,
        state: StateFile {
            pid: std::process::id(),
            ..StateFile::default()
        },
        ramping: false,
        wanted,
        vrrp: None,
        proxy,
        stats: None,
        control_tx: control_tx.clone(),
        live,
        bgp,
        usable_vips: Default::default(),
        stopping: false,
    };
    // Runtime states and weights from before a restart.
    daemon.restore_server_states();
    daemon.apply()?;

    // Attach only once the maps are full, so the first packets already
    // find their services. The link is pinned at once: a control plane
    // that crashes (SIGKILL, a panic) leaves the data plane forwarding for
    // the next lbd to adopt.
    let link_pin = pins.join(dataplane::LINK_PIN);
    let (_link, mode) = if link_pin.exists() {
        // The previous lbd left its program attached: swap ours in.
        (dataplane.replace_pinned(&link_pin)?, "adopted")
    } else {
        let (link, mode) = attach(
            &mut dataplane,
            &daemon.config.instance.interface,
            daemon.config.instance.xdp_mode,
        )?;
        let pinned = link
            .pin(&link_pin)
            .map_err(|e| anyhow::anyhow!("pinning the XDP link: {e}"))?;
        (FdLink::from(pinned), mode)
    };
    lock::restrict_pins(&pins)?;
    daemon.state.xdp_mode = Some(mode.into());
    daemon.state.write(&instance)?;
    info!(instance, interface = %daemon.interface.name, services = daemon.config.services.len(), "data plane attached");
    daemon.sync_bgp();

    // Start the neighbour refresh, VRRP, the control socket and the flow
    // collector. Neighbour refreshes wait for ARP replies: they run beside
    // the loop, which must stay free for VRRP's timers.
    let (macs_tx, mut macs_rx) = tokio::sync::mpsc::channel(4);
    let neighbours = tokio::spawn(refresh_neighbours(
        handle.clone(),
        daemon.interface.clone(),
        wanted_rx,
        daemon.health.facts.macs.clone(),
        macs_tx,
    ));
    // VRRP runs on a thread of its own; we only hear of its transitions.
    let (_no_vrrp, mut vrrp_changes) = tokio::sync::watch::channel(0u64);
    if !daemon.config.vrrp.is_empty() {
        let (thread, changes) = VrrpThread::start(
            daemon.config.vrrp.clone(),
            daemon.interface.clone(),
            pins.join(lb_common::map_names::SETTINGS),
        )
        .await?;
        daemon.vrrp = Some(thread);
        vrrp_changes = changes;
    }
    let control_server = control::serve(&instance, control_tx)?;
    // The stats page, on a thread of its own.
    daemon.restart_stats();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    conntrack::start_collector(&pins, conntrack::collection_interval(&tunables))?;
    // Running: from now on only a teardown that was asked for (SIGINT,
    // `lbd stop`) removes the data plane.
    pins_guard.keep = true;

    loop {
        tokio::select! {
            // A service manager's stop (or restart): keep the data plane.
            _ = sigterm.recv() => break,
            _ = sigint.recv() => { pins_guard.keep = false; break }
            _ = sighup.recv() => daemon.on_hangup().await,
            Some((key, result)) = health_rx.recv() => daemon.on_health(key, result),
            Some((request, reply)) = control_rx.recv() => {
                if daemon.on_control(request, reply).await == Next::Stop {
                    pins_guard.keep = false;
                    break;
                }
            }
            Ok(()) = vrrp_changes.changed() => {
                let changes = *vrrp_changes.borrow_and_update();
                daemon.on_vrrp_transition(changes)
            }
            Some(fresh) = macs_rx.recv() => daemon.on_neighbours(fresh),
            _ = tick.tick() => daemon.on_tick(),
        }
    }

    info!(instance, "stopping");
    // Routes go first: routers move the flows before anything stops.
    daemon.withdraw_and_drain().await;
    if let Some(stats) = daemon.stats.take() {
        stats.stop();
    }
    if let Some(proxy) = daemon.proxy.take() {
        proxy.stop().await;
    }
    if let Some(thread) = daemon.vrrp.take() {
        thread.shutdown().await;
    }
    neighbours.abort();
    control_server.close(CONTROL_REPLY_GRACE).await;
    let _ = std::fs::remove_file(control::socket_path(&instance));
    if pins_guard.keep {
        // Pinned, the link keeps the program attached after we exit.
        daemon.state.pid = 0;
        daemon.state.write(&instance)?;
        info!(instance, "stopped; the data plane keeps forwarding until the next lbd adopts it (lbd stop tears it down)");
    } else {
        // The guard removes the pins, the link's too: with our handle
        // gone the program is detached.
        info!(instance, "detaching and unpinning");
    }
    Ok(())
}

/// Loads the XDP object with its maps pinned under the instance's
/// directory. We hold the instance lock: pins there belong to an lbd that
/// stopped (SIGTERM keeps the data plane for us) or died. They are
/// re-adopted when their layout is this build's and the sizes are the
/// configured ones. Returns the guard that removes the pins unless told
/// to keep them (an adopted data plane is kept until a teardown is asked
/// for: a start that fails after this point must not stop forwarding),
/// and whether they were adopted.
fn adopt_or_create(config: &Config) -> anyhow::Result<(Dataplane, LbMaps, PinsGuard, bool)> {
    dataplane::ensure_bpffs()?;
    let pins = dataplane::pin_dir(&config.instance.name);
    let sizes = MapSizes::from_config(&config.instance);
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
    lock::create_pin_dir(&pins)?;
    let mut dataplane =
        Dataplane::load_with_pins(dataplane::embedded_object()?, &sizes, Some(&pins))?;
    let guard = PinsGuard {
        dir: pins.clone(),
        snapshot: snapshot_path(&config.instance.name),
        keep: adopt,
    };
    let maps = dataplane.take_maps(None)?;
    if adopt {
        info!(dir = %pins.display(), "re-adopting the pinned maps of a previous lbd: flows keep their backends");
    } else {
        info!(dir = %pins.display(), "maps pinned");
    }
    Ok((dataplane, maps, guard, adopt))
}

/// Teaches the programmer what adopted maps hold, so flows keep their
/// backends' ids.
fn adopt_programmed(programmer: &mut Programmer, maps: &LbMaps) {
    let services: Vec<_> = maps.services.iter().filter_map(Result::ok).collect();
    let backends: Vec<_> = maps
        .backends
        .iter()
        .enumerate()
        .filter_map(|(id, b)| Some((id as u32, b.ok()?)))
        .collect();
    programmer.adopt(&services, &backends);
}

/// Attaches in the configured XDP mode; `auto` falls back to generic.
fn attach(
    dataplane: &mut Dataplane,
    interface: &str,
    choice: XdpModeChoice,
) -> anyhow::Result<(FdLink, &'static str)> {
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
