//! The proxy's own multi-thread tokio runtime (one worker per core, named
//! `lbd-proxy-N`), so nothing the proxy does — slow clients, floods, file
//! descriptor exhaustion — can delay the daemon's VRRP timers. `start`
//! binds every frontend's addresses, `apply` swaps in a new snapshot and
//! opens/closes listeners by difference (connections keep running; each
//! request uses the snapshot current when it started), `stop` closes the
//! listeners, lets connections finish for a grace period, then ends.
use super::{
    acl::ConnInfo,
    config::{LogSettings, Mode},
    http,
    listener::{self, AcceptErrorAction, Limit},
    snapshot::Snapshot,
    stats::{Counters, ProxyCounters},
    status::ProxyStatus,
    tcp,
    tls::server::TlsBind,
};
use crate::log::AccessRecord;
use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

/// tcp mode relays with splice(2) unless told otherwise: it measured faster
/// than the user-space copy (`tcp_relay_splice_vs_copy` in proxy_netns,
/// iperf3 through a tcp frontend over veth, release build, 2 cores shared:
/// median of 3 runs 4.76 Gbit/s with splice (3.90-5.52) against 3.94
/// Gbit/s with copy (3.88-4.12)).
pub const SPLICE_BY_DEFAULT: bool = true;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// Where finished access-log records go (the daemon hands them to the
/// `log` sinks); called on the proxy's threads, must not block.
pub trait AccessLogger: Send + Sync {
    fn log(&self, settings: LogSettings, record: AccessRecord);
}

/// A bind could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("frontend {frontend}: bind {address}: {source}")]
    Bind {
        frontend: String,
        address: SocketAddr,
        source: io::Error,
    },
    #[error("proxy runtime: {0}")]
    Runtime(io::Error),
}

/// What every connection task shares.
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    pub counters: ProxyCounters,
    pub pool: Arc<http::upstream::Pool>,
    /// `global maxconn`.
    global: Arc<Limit>,
    /// Each frontend's `maxconn`, by name (kept across reloads).
    frontend_limits: Mutex<HashMap<String, Arc<Limit>>>,
    logger: RwLock<Option<Arc<dyn AccessLogger>>>,
    /// tcp mode relays with splice(2) (else a user-space copy).
    splice: AtomicBool,
}

impl Shared {
    pub fn splice(&self) -> bool {
        self.splice.load(Ordering::Relaxed)
    }

    /// The current snapshot (load it once per connection or request).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Hands `record` to the logger if `frontend` logs (and `dontlognull`
    /// does not leave it out).
    pub fn log(&self, snapshot: &Snapshot, frontend: &str, record: AccessRecord) {
        let settings = snapshot
            .frontend_by_name(frontend)
            .and_then(|id| snapshot.config.frontends.get(id))
            .and_then(|f| f.log);
        let Some(settings) = settings else {
            return;
        };
        if settings.dontlognull && record.is_null() {
            return;
        }
        let logger = self
            .logger
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(logger) = logger {
            logger.log(settings, record);
        }
    }

    fn frontend_limit(&self, name: &str, maxconn: u32) -> Arc<Limit> {
        let mut limits = self
            .frontend_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let limit = limits
            .entry(name.to_owned())
            .or_insert_with(|| Limit::new(maxconn as usize));
        if limit.max() != maxconn as usize {
            limit.set_max(maxconn as usize);
        }
        limit.clone()
    }

    /// Connections open on every frontend.
    pub fn connections(&self) -> usize {
        self.global.current()
    }
}

struct ListenerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running proxy.
pub struct ProxyRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    listeners: HashMap<SocketAddr, ListenerHandle>,
}

/// Every bind of `snapshot`: address -> frontend name.
fn binds_of(snapshot: &Snapshot) -> HashMap<SocketAddr, String> {
    snapshot
        .config
        .frontends
        .iter()
        .flat_map(|f| f.binds.iter().map(move |b| (b.address, f.name.clone())))
        .collect()
}

impl ProxyRuntime {
    /// Starts the runtime and binds every frontend of `snapshot`.
    pub fn start(snapshot: Arc<Snapshot>) -> Result<ProxyRuntime, ProxyError> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name_fn(|| {
                static NEXT: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("lbd-proxy-{n}")
            })
            .enable_all()
            .build()
            .map_err(ProxyError::Runtime)?;
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(snapshot.clone()),
            counters: ProxyCounters::default(),
            pool: Arc::default(),
            global: Limit::new(snapshot.config.global.maxconn as usize),
            frontend_limits: Mutex::default(),
            logger: RwLock::new(None),
            splice: AtomicBool::new(SPLICE_BY_DEFAULT),
        });
        let mut proxy = ProxyRuntime {
            runtime: Some(runtime),
            shared,
            listeners: HashMap::new(),
        };
        proxy.apply(snapshot)?;
        Ok(proxy)
    }

    pub fn set_logger(&self, logger: Arc<dyn AccessLogger>) {
        *self
            .shared
            .logger
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(logger);
    }

    /// Chooses the tcp-mode relay for new sessions: splice(2) or copy.
    pub fn set_splice(&self, splice: bool) {
        self.shared.splice.store(splice, Ordering::Relaxed);
    }

    /// The proxy's runtime, for tasks that belong on its threads (the
    /// proxy servers' health checks); `None` once stopped.
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Addresses listened on now.
    pub fn listening(&self) -> Vec<SocketAddr> {
        let mut addresses: Vec<SocketAddr> = self.listeners.keys().copied().collect();
        addresses.sort();
        addresses
    }

    /// Swaps in `snapshot`: new binds are opened before anything changes
    /// (a failure leaves the running configuration as it was), then the
    /// snapshot is swapped, the limits updated and removed binds closed.
    /// A bind that only conflicts with a removed one is opened after it.
    pub fn apply(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ProxyError> {
        let Some(runtime) = &self.runtime else {
            return Ok(());
        };
        let _context = runtime.enter();
        let wanted = binds_of(&snapshot);
        let mut opened = HashMap::new();
        let mut deferred = Vec::new();
        for (address, frontend) in &wanted {
            if self.listeners.contains_key(address) {
                continue;
            }
            match listener::bind(*address) {
                Ok(socket) => {
                    opened.insert(*address, socket);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    deferred.push((*address, frontend.clone(), e))
                }
                Err(source) => {
                    return Err(ProxyError::Bind {
                        frontend: frontend.clone(),
                        address: *address,
                        source,
                    })
                }
            }
        }
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner()) = snapshot.clone();
        self.shared
            .global
            .set_max(snapshot.config.global.maxconn as usize);
        for frontend in &snapshot.config.frontends {
            self.shared.frontend_limit(&frontend.name, frontend.maxconn);
        }
        let names: HashSet<&str> = snapshot
            .config
            .frontends
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        self.shared
            .frontend_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| names.contains(name.as_str()));
        self.prune_counters(&snapshot);
        let removed: Vec<SocketAddr> = self
            .listeners
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for address in removed {
            if let Some(handle) = self.listeners.remove(&address) {
                let _ = handle.stop.send(true);
                // The listening socket closes when its task returns.
                let _ = futures::executor::block_on(handle.task);
            }
        }
        for (address, socket) in opened {
            self.spawn_listener(address, socket);
        }
        for (address, frontend, first_error) in deferred {
            match listener::bind(address) {
                Ok(socket) => self.spawn_listener(address, socket),
                Err(_) => {
                    return Err(ProxyError::Bind {
                        frontend,
                        address,
                        source: first_error,
                    })
                }
            }
        }
        Ok(())
    }

    fn prune_counters(&self, snapshot: &Snapshot) {
        let config = &snapshot.config;
        let frontends: HashSet<&str> = config.frontends.iter().map(|f| f.name.as_str()).collect();
        let backends: HashSet<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
        let servers: HashSet<(&str, &str)> = config
            .backends
            .iter()
            .flat_map(|b| {
                b.servers
                    .iter()
                    .map(move |s| (b.name.as_str(), s.name.as_str()))
            })
            .collect();
        let counters = &self.shared.counters;
        counters
            .frontends
            .retain(|name| frontends.contains(&**name));
        counters.backends.retain(|name| backends.contains(&**name));
        counters
            .servers
            .retain(|(backend, server)| servers.contains(&(&**backend, &**server)));
    }

    fn spawn_listener(&mut self, address: SocketAddr, socket: TcpListener) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(accept_loop(socket, address, self.shared.clone(), stopped));
        self.listeners
            .insert(address, ListenerHandle { stop, task });
    }

    /// The counters and states for `lbd status`.
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus::collect(
            &self.shared.snapshot(),
            &self.shared.counters,
            self.shared.connections(),
        )
    }

    /// Closes every listener, waits up to `grace` for open connections to
    /// finish, then ends the runtime (remaining connections are cut).
    pub async fn stop(mut self, grace: Duration) {
        for (_, handle) in self.listeners.drain() {
            let _ = handle.stop.send(true);
            let _ = handle.task.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shared.pool.clear();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for ProxyRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The frontend that owns `address` in `snapshot`: name, mode, maxconn,
/// timeouts and the bind's TLS side.
type Owner = (
    Arc<str>,
    Mode,
    u32,
    super::config::FrontendTimeouts,
    Option<Arc<TlsBind>>,
);
fn owner(snapshot: &Snapshot, address: SocketAddr) -> Option<Owner> {
    snapshot.config.frontends.iter().find_map(|f| {
        let bind = f.binds.iter().find(|b| b.address == address)?;
        Some((
            f.name.as_str().into(),
            f.mode,
            f.maxconn,
            f.timeouts,
            bind.tls.clone(),
        ))
    })
}

/// Accepts while the frontend and the process have connection slots free;
/// otherwise leaves connections in the kernel's backlog, as HAProxy.
async fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let snapshot = shared.snapshot();
        let Some((frontend, mode, maxconn, timeouts, tls)) = owner(&snapshot, address) else {
            return;
        };
        let frontend_limit = shared.frontend_limit(&frontend, maxconn);
        let slots = async {
            let frontend_slot = frontend_limit.acquire().await;
            let global_slot = shared.global.acquire().await;
            (frontend_slot, global_slot)
        };
        let slots = tokio::select! {
            slots = slots => slots,
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if listener::accept_error_action(&error) == AcceptErrorAction::Pause {
                    tracing::warn!(%address, %error, "accept failed; pausing the listener");
                    drop(slots);
                    tokio::time::sleep(listener::ACCEPT_ERROR_PAUSE).await;
                }
                continue;
            }
        };
        let local = stream.local_addr().unwrap_or(address);
        let info = ConnInfo::plain(peer, local);
        // The snapshot may have changed while waiting for a slot: a
        // reload's certificates serve the connections accepted after it.
        let snapshot = shared.snapshot();
        let tls = match owner(&snapshot, address) {
            Some((.., fresh)) => fresh,
            None => tls,
        };
        let session = shared.counters.frontends.get(&frontend).open_session();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _held = (slots, session);
            match (mode, tls) {
                (Mode::Http, None) => {
                    let _ = stream.set_nodelay(true);
                    http::serve(stream, shared, snapshot, frontend, info, timeouts).await
                }
                (Mode::Http, Some(tls)) => {
                    let _ = stream.set_nodelay(true);
                    // The handshake runs under `timeout http-request`
                    // (`timeout client` when unset): half-open handshakes
                    // cannot pile up.
                    match tls.handshake(stream, timeouts.http_request).await {
                        Ok((stream, facts)) => {
                            let info = ConnInfo::terminated(info.src, info.dst, facts);
                            http::serve(stream, shared, snapshot, frontend, info, timeouts).await
                        }
                        Err(error) => {
                            let counters = shared.counters.frontends.get(&frontend);
                            Counters::add(&counters.connection_errors, 1);
                            tracing::debug!(%frontend, src = %info.src, ?error, "TLS handshake failed");
                        }
                    }
                }
                (Mode::Tcp, _) => tcp::serve(stream, shared, snapshot, frontend, info).await,
            }
        });
    }
}
