//! The proxy's own threads, one per core (named `lbd-proxy-N`), each with
//! a single-threaded tokio runtime, as HAProxy's `nbthread`: every worker
//! accepts on every listener and serves what it accepted to the end unless
//! another worker serves fewer connections (`spread` hands it over, as
//! HAProxy's `tune.listener.multi-queue`), so a request never crosses
//! threads (no work stealing, no cross-thread wake-up per request), and
//! nothing the proxy does — slow clients, floods, file
//! descriptor exhaustion — can delay the daemon's VRRP timers. `start`
//! binds every frontend's addresses, `apply` swaps in a new snapshot and
//! opens/closes listeners by difference (connections keep running; each
//! request uses the snapshot current when it started), `stop` closes the
//! listeners, lets connections finish for a grace period, then ends.
use super::{
    acl::ConnInfo,
    batch::BatchedTcp,
    config::{LogSettings, Mode},
    http,
    listener::{self, AcceptErrorAction, Limit},
    snapshot::Snapshot,
    spread::WorkerLoads,
    stats::{Counters, ProxyCounters},
    status::ProxyStatus,
    tcp,
    tls::server::TlsBind,
};
use crate::log::AccessRecord;
use futures::future::Either;
use std::{
    collections::{HashMap, HashSet},
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

/// tcp mode copies small messages and splices bulk data (a direction turns
/// to splice(2) once a read fills the copy buffer) unless told otherwise:
/// splice measured faster for bulk (`tcp_relay_splice_vs_copy` in
/// proxy_netns, iperf3 through a tcp frontend over veth, release build, 2
/// cores shared: median of 3 runs 4.76 Gbit/s with splice (3.90-5.52)
/// against 3.94 Gbit/s with copy (3.88-4.12)), copying for request and
/// response sized messages (one system call less per message).
pub const SPLICE_BY_DEFAULT: bool = true;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

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
    /// Each worker's open connections, and its runtime to hand one to
    /// (the runtimes' only list: [`Workers`] keeps what stops them).
    loads: Arc<WorkerLoads>,
    workers: Vec<tokio::runtime::Handle>,
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
    /// One accept loop per worker.
    tasks: Vec<JoinHandle<()>>,
}

/// The worker threads: each runs its runtime until told to stop (then the
/// runtime, and every connection on it, is dropped). Their handles go to
/// [`Shared::workers`].
struct Workers {
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` workers; returns them with their runtimes' handles.
    fn start(count: usize) -> io::Result<(Workers, Vec<tokio::runtime::Handle>)> {
        let mut workers = Workers {
            stop: Vec::with_capacity(count),
        };
        let mut handles = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("lbd-proxy-{index}"))
                .spawn(move || {
                    super::spread::set_worker(index);
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            handles.push(handle);
            workers.stop.push(stop);
        }
        Ok((workers, handles))
    }

    /// Tells every worker to end; does not wait for them.
    fn stop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// The running proxy.
pub struct ProxyRuntime {
    workers: Option<Workers>,
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
        let (workers, handles) = Workers::start(workers).map_err(ProxyError::Runtime)?;
        let shared = Arc::new(Shared {
            loads: WorkerLoads::new(handles.len()),
            workers: handles,
            snapshot: RwLock::new(snapshot.clone()),
            counters: ProxyCounters::default(),
            pool: Arc::default(),
            global: Limit::new(snapshot.config.global.maxconn as usize),
            frontend_limits: Mutex::default(),
            logger: RwLock::new(None),
            splice: AtomicBool::new(SPLICE_BY_DEFAULT),
        });
        let mut proxy = ProxyRuntime {
            workers: Some(workers),
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
        self.workers.as_ref()?;
        self.shared.workers.first().cloned()
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
        if self.workers.is_none() {
            return Ok(());
        }
        let wanted = binds_of(&snapshot);
        let mut opened = HashMap::new();
        let mut deferred = Vec::new();
        for (address, frontend) in &wanted {
            if self.listeners.contains_key(address) {
                continue;
            }
            match listener::bind_std(*address) {
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
                // The listening socket closes when its tasks return.
                for task in handle.tasks {
                    let _ = futures::executor::block_on(task);
                }
            }
        }
        for (address, socket) in opened {
            self.spawn_listener(address, socket);
        }
        for (address, frontend, first_error) in deferred {
            match listener::bind_std(address) {
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

    /// Every worker accepts on `socket` (its own copy of the descriptor,
    /// registered with its own runtime).
    fn spawn_listener(&mut self, address: SocketAddr, socket: std::net::TcpListener) {
        if self.workers.is_none() {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(self.shared.workers.len());
        for handle in &self.shared.workers {
            let socket = match socket.try_clone() {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::warn!(%address, %error, "listener not shared with a worker");
                    continue;
                }
            };
            let shared = self.shared.clone();
            let stopped = stopped.clone();
            tasks.push(handle.spawn(async move {
                match TcpListener::from_std(socket) {
                    Ok(listener) => accept_loop(listener, address, shared, stopped).await,
                    Err(error) => tracing::warn!(%address, %error, "listener not registered"),
                }
            }));
        }
        self.listeners
            .insert(address, ListenerHandle { stop, tasks });
    }

    /// The counters and states for `lbd status`.
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus::collect(
            &self.shared.snapshot(),
            &self.shared.counters,
            self.shared.connections(),
            &self.shared.loads.loads(),
        )
    }

    /// Closes every listener, waits up to `grace` for open connections to
    /// finish, then ends the runtime (remaining connections are cut).
    pub async fn stop(mut self, grace: Duration) {
        for (_, handle) in self.listeners.drain() {
            let _ = handle.stop.send(true);
            for task in handle.tasks {
                let _ = task.await;
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shared.pool.clear();
        if let Some(mut workers) = self.workers.take() {
            workers.stop();
        }
    }
}

impl Drop for ProxyRuntime {
    fn drop(&mut self) {
        if let Some(mut workers) = self.workers.take() {
            workers.stop();
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
        let local = listener::accepted_on(address, || stream.local_addr());
        let info = ConnInfo::plain(peer, local);
        // The snapshot may have changed while waiting for a slot: a
        // reload's certificates serve the connections accepted after it.
        let snapshot = shared.snapshot();
        let tls = match owner(&snapshot, address) {
            Some((.., fresh)) => fresh,
            None => tls,
        };
        let session = shared.counters.frontends.get(&frontend).open_session();
        let connection = shared.counters.open_connection();
        let load = shared.loads.assign();
        let accepted = Accepted {
            held: (slots, session, connection, load),
            address,
            shared: shared.clone(),
            snapshot,
            frontend,
            mode,
            tls,
            info,
            timeouts,
        };
        let target = accepted.held.3.worker();
        if target == super::spread::worker() {
            tokio::spawn(super::clock::Clocked::new(accepted.serve(stream)));
            continue;
        }
        // Handed to the less loaded worker: the descriptor leaves this
        // worker's reactor and joins that one's (registered from here, in
        // that runtime's context).
        let Some(worker) = shared.workers.get(target) else {
            continue;
        };
        let moved = stream.into_std().and_then(|stream| {
            let _context = worker.enter();
            TcpStream::from_std(stream)
        });
        match moved {
            Ok(stream) => {
                worker.spawn(super::clock::Clocked::new(accepted.serve(stream)));
            }
            Err(error) => tracing::warn!(%error, "accepted connection lost"),
        }
    }
}

pin_project_lite::pin_project! {
    /// `inner`, with `_held` released when it ends. An async block that
    /// holds a guard and awaits a future keeps that future twice (its own
    /// copy and the one it polls): 5.6 KiB more per connection.
    struct Holding<F, H> {
        #[pin]
        inner: F,
        _held: H,
    }
}

impl<F: Future, H> Future for Holding<F, H> {
    type Output = F::Output;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// A connection accepted and counted, with what serving it needs.
struct Accepted {
    /// Its maxconn slots, session, `actconn` and worker load, released
    /// when it ends.
    held: (
        (listener::Slot, listener::Slot),
        super::stats::SessionGuard,
        super::stats::ConnectionGuard,
        super::spread::LoadGuard,
    ),
    address: SocketAddr,
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    frontend: Arc<str>,
    mode: Mode,
    tls: Option<Arc<TlsBind>>,
    info: ConnInfo,
    timeouts: super::config::FrontendTimeouts,
}

impl Accepted {
    /// Serves the connection to its end, on the worker that runs this.
    /// TLS (10 KiB) and tcp mode (6.5 KiB) are boxed: inline, the largest
    /// would size the task of every connection. Plain functions returning
    /// futures, not `async fn`s: an `async fn` keeps its arguments beside
    /// the future it passes them to.
    fn serve(
        self,
        stream: TcpStream,
    ) -> Either<impl Future<Output = ()> + Send, Pin<Box<dyn Future<Output = ()> + Send>>> {
        match (self.mode, self.tls.is_some()) {
            (Mode::Http, false) => Either::Left(self.serve_http(stream)),
            (Mode::Http, true) => Either::Right(Box::pin(self.serve_tls(stream))),
            (Mode::Tcp, _) => Either::Right(Box::pin(self.serve_tcp(stream))),
        }
    }

    fn serve_http(self, stream: TcpStream) -> impl Future<Output = ()> + Send {
        let _ = stream.set_nodelay(true);
        let (shared, snapshot, frontend) = (self.shared, self.snapshot, self.frontend);
        let (info, timeouts) = (self.info, self.timeouts);
        Holding {
            // Made on the worker that serves it: batching is per worker.
            inner: async move {
                let stream = BatchedTcp::new(stream);
                let batched = stream.sends_at_pass_end();
                http::serve(stream, shared, snapshot, frontend, info, timeouts, batched).await
            },
            _held: self.held,
        }
    }

    async fn serve_tls(self, stream: TcpStream) {
        let _held = self.held;
        let Some(tls) = self.tls else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let (shared, snapshot, frontend, info) =
            (self.shared, self.snapshot, self.frontend, self.info);
        // The handshake runs under `timeout http-request` (`timeout client`
        // when unset): half-open handshakes cannot pile up.
        let accept_date = std::time::SystemTime::now();
        // TLS records go out with the pass too (the handshake's included).
        let stream = BatchedTcp::new(stream);
        let batched = stream.sends_at_pass_end();
        match tls.handshake(stream, self.timeouts.http_request).await {
            Ok((stream, facts)) => {
                let info = ConnInfo::terminated(info.src, info.dst, facts);
                http::serve(
                    stream,
                    shared,
                    snapshot,
                    frontend,
                    info,
                    self.timeouts,
                    batched,
                )
                .await
            }
            Err(error) => {
                let counters = shared.counters.frontends.get(&frontend);
                Counters::add(&counters.connection_errors, 1);
                crate::proxy::tls::log_handshake_failure(
                    &shared,
                    &snapshot,
                    &frontend,
                    self.address,
                    &info,
                    accept_date,
                    &error,
                );
            }
        }
    }

    async fn serve_tcp(self, stream: TcpStream) {
        let _held = self.held;
        tcp::serve(stream, self.shared, self.snapshot, self.frontend, self.info).await
    }
}
