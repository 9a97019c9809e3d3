//! The compiled, immutable routing snapshot and the live state that
//! outlives it. A reload builds a new [`Snapshot`] from a new
//! [`ProxyConfig`] through the same [`StateRegistry`]: frontends, backends
//! and servers that keep their names keep their counters and
//! administrative state; the proxy swaps the `Arc<Snapshot>` atomically
//! and each connection/request loads it once.
use crate::health::state::Downtime;
use crate::proxy::balance::{self, Balance, BalanceInput, Balancer, Pick};
use crate::proxy::config::{Backend, BackendId, Frontend, ProxyConfig, Server, ServerId};
use crate::proxy::queue::{Pendings, Place, Ticket};
use crate::proxy::stats::{Counters, ProxyCounters};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant, SystemTime},
};

/// Index into [`Snapshot::frontends`].
pub type FrontendId = usize;

/// A server's administrative state (HAProxy's READY / DRAIN / MAINT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    Ready = 0,
    /// No new connections; existing ones finish.
    Drain = 1,
    /// Out of service (`disabled`).
    Maint = 2,
}

impl AdminState {
    fn from_u8(v: u8) -> AdminState {
        match v {
            0 => AdminState::Ready,
            1 => AdminState::Drain,
            _ => AdminState::Maint,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Ready => "READY",
            AdminState::Drain => "DRAIN",
            AdminState::Maint => "MAINT",
        }
    }
}

/// The outcome of a server's last health check, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheck {
    pub ok: bool,
    /// e.g. "L7OK 200", "L4CON connection refused", "L7STS 503".
    pub detail: String,
    pub at: SystemTime,
}

/// One server's live state, shared by every snapshot that has the server:
/// what balancing and health need. Traffic counters (bytes, errors,
/// retries) are `proxy::stats::Counters`, kept by the same names.
#[derive(Debug)]
pub struct ServerState {
    pub current_conns: AtomicU32,
    pub max_conns: AtomicU32,
    pub total_conns: AtomicU64,
    /// Requests waiting for a slot on this server.
    pub queued: AtomicU32,
    health_up: AtomicBool,
    admin: AtomicU8,
    /// Effective weight (dynamic: `set weight` at runtime).
    weight: AtomicU32,
    /// The configured weight, to tell a config change from a runtime one.
    config_weight: AtomicU32,
    /// The configured `disabled`, likewise.
    config_disabled: AtomicBool,
    /// Health checks stopped at runtime (HAProxy's `disable health`):
    /// the server counts as UP.
    checks_disabled: AtomicBool,
    /// Failed checks while up (HAProxy's `chkfail`).
    pub failed_checks: AtomicU64,
    /// UP->DOWN transitions (HAProxy's `chkdown`).
    pub downs: AtomicU64,
    /// Checks in a row against the health state (HAProxy's transitional
    /// "UP, going down" and "DOWN, going up"), set by the checks.
    streak: AtomicU32,
    /// Its backend's queues (set by each snapshot): a change of state
    /// moves or serves its queued requests at once.
    backend: Mutex<std::sync::Weak<BackendState>>,
    last_check: Mutex<Option<LastCheck>>,
    /// Down (health down or MAINT) since when, and for how long in all
    /// (HAProxy's `lastchg`, `downtime`).
    downtime: Mutex<Downtime>,
}

impl ServerState {
    /// A new server: health up (HAProxy starts checked servers UP), admin
    /// state from `disabled`.
    pub fn new(server: &Server) -> ServerState {
        ServerState {
            current_conns: AtomicU32::new(0),
            max_conns: AtomicU32::new(0),
            total_conns: AtomicU64::new(0),
            queued: AtomicU32::new(0),
            health_up: AtomicBool::new(true),
            admin: AtomicU8::new(if server.disabled {
                AdminState::Maint as u8
            } else {
                AdminState::Ready as u8
            }),
            weight: AtomicU32::new(server.weight),
            config_weight: AtomicU32::new(server.weight),
            config_disabled: AtomicBool::new(server.disabled),
            checks_disabled: AtomicBool::new(false),
            failed_checks: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            streak: AtomicU32::new(0),
            backend: Mutex::new(std::sync::Weak::new()),
            last_check: Mutex::new(None),
            downtime: Mutex::new(Downtime::new(server.disabled, Instant::now())),
        }
    }

    /// HAProxy's operational "down": failed by health, or in maintenance.
    fn is_down(&self) -> bool {
        self.admin() == AdminState::Maint || !self.is_health_up()
    }
    /// After any change of health, admin state, weight or checks: the
    /// downtime bookkeeping, and the backend's queues at once (HAProxy's
    /// `srv_update_status`): a server that went down or into MAINT hands
    /// its queued requests over (`option redispatch`), one that came up
    /// takes its share of the backend queue, without waiting for a freed
    /// slot or the queue's periodic re-check.
    fn note_state(&self) {
        let down = self.is_down();
        self.downtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(down, Instant::now());
        let backend = self
            .backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        if let Some(backend) = backend {
            backend.server_changed(self, down);
        }
    }
    /// Joins `backend`'s queues (each snapshot: the same backend name keeps
    /// its state).
    fn attach(&self, backend: &Arc<BackendState>) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(backend);
    }
    /// Checks in a row against the health state so far (see
    /// `health::state::going`).
    pub fn streak(&self) -> u32 {
        self.streak.load(Ordering::Relaxed)
    }
    pub fn set_streak(&self, streak: u32) {
        self.streak.store(streak, Ordering::Relaxed);
    }
    /// (time since the last UP/DOWN change, total time down) now.
    pub fn downtime(&self) -> (Duration, Duration) {
        let now = Instant::now();
        let d = self.downtime.lock().unwrap_or_else(|e| e.into_inner());
        (d.since_change(now), d.total(now))
    }

    pub fn is_health_up(&self) -> bool {
        self.health_up.load(Ordering::Relaxed)
    }
    /// Records a health transition (from the health engine); returns true
    /// when the state changed.
    pub fn set_health(&self, up: bool) -> bool {
        let was = self.health_up.swap(up, Ordering::Relaxed);
        if was && !up {
            self.downs.fetch_add(1, Ordering::Relaxed);
        }
        self.note_state();
        was != up
    }
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }
    pub fn set_admin(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
        self.note_state();
    }
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
    /// Runtime weight change (0..=256); roundrobin, leastconn, random and
    /// the hashing algorithms follow it, static-rr does not (HAProxy).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.min(256), Ordering::Relaxed);
        self.note_state();
    }
    pub fn checks_enabled(&self) -> bool {
        !self.checks_disabled.load(Ordering::Relaxed)
    }
    /// HAProxy's `enable health` / `disable health`: disabled, the last
    /// result is ignored and the server counts as UP.
    pub fn set_checks(&self, enabled: bool) {
        self.checks_disabled.store(!enabled, Ordering::Relaxed);
        if !enabled {
            self.health_up.store(true, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
            self.note_state();
        }
    }
    /// The configuration's weight and `disabled`: a runtime state is what
    /// differs from them (the server-state file keeps only that).
    pub fn configured(&self) -> (u32, AdminState) {
        let admin = if self.config_disabled.load(Ordering::Relaxed) {
            AdminState::Maint
        } else {
            AdminState::Ready
        };
        (self.config_weight.load(Ordering::Relaxed), admin)
    }
    pub fn last_check(&self) -> Option<LastCheck> {
        self.last_check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Records a check's result; HAProxy's `chkfail` counts the failures
    /// seen while the server was up.
    pub fn set_last_check(&self, check: LastCheck) {
        if !check.ok && self.is_health_up() {
            self.failed_checks.fetch_add(1, Ordering::Relaxed);
        }
        *self.last_check.lock().unwrap_or_else(|e| e.into_inner()) = Some(check);
    }

    /// Takes traffic: ready, health up and a positive weight.
    pub fn is_up(&self) -> bool {
        self.admin() == AdminState::Ready && self.is_health_up() && self.weight() > 0
    }
    /// At its `maxconn` (0 = unlimited).
    pub fn is_full(&self, maxconn: u32) -> bool {
        maxconn > 0 && self.current_conns.load(Ordering::Relaxed) >= maxconn
    }
    /// Current connections plus queued requests: leastconn's load.
    pub fn load(&self) -> u32 {
        self.current_conns
            .load(Ordering::Relaxed)
            .saturating_add(self.queued.load(Ordering::Relaxed))
    }

    /// Takes one connection slot if below `maxconn`; the caller releases it
    /// with [`ServerState::release`] (or holds a [`ServerSlot`]).
    pub fn try_acquire(&self, maxconn: u32) -> bool {
        let taken =
            self.current_conns
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |current| {
                    (maxconn == 0 || current < maxconn).then_some(current + 1)
                });
        match taken {
            Ok(before) => {
                self.total_conns.fetch_add(1, Ordering::Relaxed);
                self.max_conns.fetch_max(before + 1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
    pub fn release(&self) {
        let _ = self
            .current_conns
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| c.checked_sub(1));
    }

    /// After a reload: a changed configured weight or `disabled` replaces
    /// the runtime value; an unchanged one keeps a runtime change.
    fn reconfigure(&self, server: &Server) {
        let old = self.config_weight.swap(server.weight, Ordering::Relaxed);
        if old != server.weight {
            self.weight.store(server.weight, Ordering::Relaxed);
        }
        // Likewise `disabled`: a changed setting wins, an unchanged one
        // keeps a runtime admin state (drain, maint, ready).
        let was_disabled = self
            .config_disabled
            .swap(server.disabled, Ordering::Relaxed);
        if was_disabled != server.disabled {
            self.set_admin(if server.disabled {
                AdminState::Maint
            } else {
                AdminState::Ready
            });
        }
    }
}

/// A held connection slot on a server; dropping it frees the slot, which
/// the server then gives to the oldest queued request it may serve.
#[derive(Debug)]
pub struct ServerSlot {
    server: Arc<ServerState>,
    backend: Arc<BackendState>,
    /// Counts already freed by the queue (which holds its lock).
    freed: bool,
}

impl ServerSlot {
    /// Takes a slot on `server` of `backend`, if it has one free.
    pub fn acquire(backend: &BackendRuntime, server: ServerId, maxconn: u32) -> Option<ServerSlot> {
        ServerSlot::take(&backend.state, backend.servers.get(server)?, maxconn)
    }
    fn take(backend: &Arc<BackendState>, server: &Arc<ServerState>, maxconn: u32) -> Option<Self> {
        server.try_acquire(maxconn).then(|| {
            backend.current_conns.fetch_add(1, Ordering::Relaxed);
            backend.total_conns.fetch_add(1, Ordering::Relaxed);
            ServerSlot {
                server: Arc::clone(server),
                backend: Arc::clone(backend),
                freed: false,
            }
        })
    }
    pub fn server(&self) -> &Arc<ServerState> {
        &self.server
    }
    fn free_counts(&self) {
        self.server.release();
        let _ = self
            .backend
            .current_conns
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| c.checked_sub(1));
    }
    /// Frees the slot while the queue's lock is held (the caller is the
    /// dispatcher, so no dispatch here).
    fn free_locked(mut self) {
        self.free_counts();
        self.freed = true;
    }
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        if self.freed {
            return;
        }
        self.free_counts();
        // Pairs with the queued count a request raises, under the lock,
        // before it looks for a free slot: either it sees this slot free or
        // this sees it queued.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.backend.queued.load(Ordering::SeqCst) > 0 {
            let mut queue = self.backend.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.dispatch(&self.backend);
        }
    }
}

/// What a queued request receives: a slot on the server that served it.
#[derive(Debug)]
pub struct Grant {
    pub slot: ServerSlot,
    /// Whether it waited in the server's queue (`%sq`) or the backend's
    /// (`%bq`), and its position there.
    pub from: Place<usize>,
    pub position: u32,
}

/// A server as the queue knows it (rebuilt by each snapshot).
#[derive(Debug)]
struct Member {
    server: Arc<ServerState>,
    maxconn: u32,
    backup: bool,
}

/// A server's name in the queue: its state's address, stable across
/// reloads (server ids are positions in one snapshot's configuration).
fn queue_key(server: &Arc<ServerState>) -> usize {
    state_key(server)
}

/// [`queue_key`] of a server known by reference (the same address).
fn state_key(server: &ServerState) -> usize {
    server as *const ServerState as usize
}

#[derive(Debug, Default)]
struct QueueState {
    pendings: Pendings<tokio::sync::oneshot::Sender<Grant>, usize, Instant>,
    members: Vec<Member>,
    /// The backend's `option redispatch`: a server going down hands its
    /// queue to the backend queue.
    redispatch: bool,
}

impl QueueState {
    /// Gives every free slot to the oldest request its server may serve
    /// (HAProxy's `process_srv_queue`, and `pendconn_grab_from_px` for a
    /// server that came up).
    fn dispatch(&mut self, backend: &Arc<BackendState>) {
        let QueueState {
            pendings, members, ..
        } = self;
        let primary_up = members.iter().any(|m| !m.backup && m.server.is_up());
        for member in members.iter() {
            let key = queue_key(&member.server);
            // A backup serves the backend queue only while no primary is up.
            let serves_backend = member.server.is_up() && (!member.backup || !primary_up);
            while pendings.has_work_for(key, serves_backend) {
                let Some(mut slot) = ServerSlot::take(backend, &member.server, member.maxconn)
                else {
                    break;
                };
                loop {
                    let Some(served) = pendings.next_for(key, serves_backend) else {
                        slot.free_locked();
                        break;
                    };
                    let grant = Grant {
                        slot,
                        from: served.from,
                        position: served.position,
                    };
                    match served.waiter.send(grant) {
                        Ok(()) => break,
                        // Its client left: the next one gets the slot.
                        Err(grant) => slot = grant.slot,
                    }
                }
            }
        }
        self.recount(backend);
    }

    fn recount(&self, backend: &BackendState) {
        let mut total = self.pendings.len(Place::Backend);
        for member in &self.members {
            let queued = self.pendings.len(Place::Server(queue_key(&member.server)));
            member
                .server
                .queued
                .store(u32::try_from(queued).unwrap_or(u32::MAX), Ordering::SeqCst);
            total += queued;
        }
        backend
            .queued
            .store(u32::try_from(total).unwrap_or(u32::MAX), Ordering::SeqCst);
    }
}

/// A backend's connection count and its queues.
#[derive(Debug, Default)]
pub struct BackendState {
    /// Connections holding a server slot.
    pub current_conns: AtomicU32,
    pub total_conns: AtomicU64,
    /// Requests waiting for a server slot, in both kinds of queue.
    pub queued: AtomicU32,
    queue: Mutex<QueueState>,
    /// No usable server since when, and for how long in all (HAProxy's
    /// backend `lastchg`, `downtime`): noted by the checks at each server
    /// transition and by every status read.
    pub downtime: Mutex<Downtime>,
}

impl BackendState {
    /// A server of this backend changed state (see
    /// `ServerState::note_state`); `down`: DOWN or in MAINT now.
    fn server_changed(self: &Arc<Self>, server: &ServerState, down: bool) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let redispatch = queue.redispatch;
        if down {
            queue.pendings.server_down(state_key(server), redispatch);
        }
        queue.dispatch(self);
    }

    /// Notes whether the backend has a usable server now; returns (time
    /// since the last change, total time down).
    pub fn note_usable(&self, usable: bool) -> (Duration, Duration) {
        let now = Instant::now();
        let mut d = self.downtime.lock().unwrap_or_else(|e| e.into_inner());
        d.observe(!usable, now);
        (d.since_change(now), d.total(now))
    }

    /// A reload: the queue serves the new snapshot's servers; requests
    /// bound to a server that left may go to any server now.
    fn rejoin(&self, config: &Backend, servers: &[Arc<ServerState>]) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let members: Vec<Member> = config
            .servers
            .iter()
            .zip(servers)
            .map(|(s, state)| Member {
                server: Arc::clone(state),
                maxconn: s.maxconn,
                backup: s.backup,
            })
            .collect();
        let gone: Vec<usize> = (queue.members.iter())
            .filter(|old| !members.iter().any(|m| Arc::ptr_eq(&m.server, &old.server)))
            .map(|old| queue_key(&old.server))
            .collect();
        for key in gone {
            queue.pendings.redistribute(key);
        }
        queue.members = members;
        queue.redispatch = config.redispatch;
        queue.recount(self);
    }
}

/// How often a queued request looks for slots nobody freed (a server that
/// came up or got weight), besides being woken by a freed slot.
const QUEUE_RECHECK: Duration = Duration::from_millis(500);

/// What [`BackendRuntime::take`] got.
#[derive(Debug)]
pub enum Take {
    Slot(ServerId, ServerSlot),
    Queued(QueuedRequest),
    NoServer,
}

/// `timeout queue` expired.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueTimeout;

/// A request in a queue; dropping it leaves the queue.
#[derive(Debug)]
pub struct QueuedRequest {
    backend: Arc<BackendState>,
    ticket: Ticket,
    place: Place<ServerId>,
    deadline: Instant,
    grant: tokio::sync::oneshot::Receiver<Grant>,
}

impl QueuedRequest {
    /// The queue it waits in (a server by its id in the snapshot).
    pub fn place(&self) -> Place<ServerId> {
        self.place
    }

    /// Waits for a slot until the deadline.
    pub async fn wait(&mut self) -> Result<Grant, QueueTimeout> {
        loop {
            let wake = self.deadline.min(Instant::now() + QUEUE_RECHECK);
            tokio::select! {
                grant = &mut self.grant => return grant.map_err(|_| QueueTimeout),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            // Expired requests lose their wake-up (this one's receiver then
            // reports the timeout); slots nobody freed are handed out.
            let expired = {
                let mut queue = self.backend.queue.lock().unwrap_or_else(|e| e.into_inner());
                let expired = queue.pendings.expire(Instant::now());
                queue.dispatch(&self.backend);
                expired
            };
            drop(expired);
        }
    }
}

impl Drop for QueuedRequest {
    fn drop(&mut self) {
        let left = {
            let mut queue = self.backend.queue.lock().unwrap_or_else(|e| e.into_inner());
            let left = queue.pendings.remove(self.ticket);
            if left.is_some() {
                queue.recount(&self.backend);
            }
            left
        };
        drop(left);
    }
}

#[derive(Debug)]
pub struct BackendRuntime {
    pub state: Arc<BackendState>,
    /// One per configured server, in order.
    pub servers: Vec<Arc<ServerState>>,
    pub balancer: Balancer,
}

impl BackendRuntime {
    /// A slot for the request `input` on a server of `config` (this
    /// runtime's backend), or a place in its queues until `deadline`, as
    /// HAProxy's `assign_server_and_queue`: a request the balancer may
    /// give to any server waits in the backend queue, one bound to a
    /// server (a hash) in that server's queue, and a newcomer never
    /// overtakes a queued request.
    pub fn take(&self, config: &Backend, input: &BalanceInput, deadline: Instant) -> Take {
        // Nobody waits: the balancer's choice, without the lock.
        if self.state.queued.load(Ordering::SeqCst) == 0 {
            match balance::choose(config, self, input) {
                Pick::NoServer => return Take::NoServer,
                Pick::Server(id) => {
                    if let Some(slot) = self.slot(config, id) {
                        return Take::Slot(id, slot);
                    }
                }
                Pick::Queue(_) => {}
            }
        }
        let mut queue = self.state.queue.lock().unwrap_or_else(|e| e.into_inner());
        // Round robin, static-rr and first choose among free servers only,
        // so a queued request means all are full (HAProxy skips the choice,
        // unless every request of the backend is queued).
        let fifo = matches!(
            config.balance,
            Balance::RoundRobin | Balance::StaticRr | Balance::First
        );
        let mut place = Place::Backend;
        let backend_queued = queue.pendings.len(Place::Backend) > 0;
        if !(fifo && backend_queued && self.state.current_conns.load(Ordering::Relaxed) > 0) {
            // A slot taken by another thread between choice and take:
            // choose again (it is full now), a few times at most.
            for _ in 0..4 {
                match balance::choose(config, self, input) {
                    Pick::NoServer => return Take::NoServer,
                    Pick::Queue(None) => place = Place::Backend,
                    Pick::Queue(Some(id)) => place = Place::Server(id),
                    Pick::Server(id) => {
                        let bound = self.servers.get(id).map(queue_key);
                        if bound.is_some_and(|key| queue.pendings.len(Place::Server(key)) > 0) {
                            place = Place::Server(id);
                        } else if let Some(slot) = self.slot(config, id) {
                            return Take::Slot(id, slot);
                        } else {
                            continue;
                        }
                    }
                }
                break;
            }
        }
        let key = match place {
            Place::Backend => Place::Backend,
            Place::Server(id) => match self.servers.get(id) {
                Some(server) => Place::Server(queue_key(server)),
                None => return Take::NoServer,
            },
        };
        let (wake, grant) = tokio::sync::oneshot::channel();
        let ticket = queue.pendings.push(key, deadline, wake);
        // Counted before looking for a free slot (see ServerSlot's drop).
        queue.recount(&self.state);
        queue.dispatch(&self.state);
        Take::Queued(QueuedRequest {
            backend: Arc::clone(&self.state),
            ticket,
            place,
            deadline,
            grant,
        })
    }

    fn slot(&self, config: &Backend, id: ServerId) -> Option<ServerSlot> {
        let maxconn = config.servers.get(id)?.maxconn;
        ServerSlot::take(&self.state, self.servers.get(id)?, maxconn)
    }

    /// The id in this snapshot of the server a granted slot is on.
    pub fn server_id(&self, slot: &ServerSlot) -> Option<ServerId> {
        self.servers
            .iter()
            .position(|s| Arc::ptr_eq(s, slot.server()))
    }
}

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    /// One per `config.backends` entry.
    pub backends: Vec<BackendRuntime>,
    /// Each backend's and server's counters, taken from the registry by the
    /// first request that needs them, so requests never look names up.
    counters: OnceLock<SnapshotCounters>,
}

/// The counters of a snapshot's backends and servers, in config order.
#[derive(Debug)]
pub struct SnapshotCounters {
    pub backends: Vec<Arc<Counters>>,
    /// Each backend's name, shared by the log records of its requests.
    pub backend_names: Vec<Arc<str>>,
    /// `servers[backend][server]`.
    pub servers: Vec<Vec<Arc<Counters>>>,
    /// Each server's name (`server_names[backend][server]`), shared by the
    /// log records: a name copied per request was an allocation each.
    pub server_names: Vec<Vec<Arc<str>>>,
}

impl Snapshot {
    pub fn frontend(&self, id: FrontendId) -> Option<&Frontend> {
        self.config.frontends.get(id)
    }
    pub fn backend(&self, id: BackendId) -> Option<(&Backend, &BackendRuntime)> {
        Some((self.config.backends.get(id)?, self.backends.get(id)?))
    }
    pub fn frontend_by_name(&self, name: &str) -> Option<FrontendId> {
        self.config.frontends.iter().position(|f| f.name == name)
    }

    /// The counters of every backend and server, resolved once per snapshot.
    pub fn counters(&self, registry: &ProxyCounters) -> &SnapshotCounters {
        self.counters.get_or_init(|| {
            let backends = &self.config.backends;
            SnapshotCounters {
                backends: backends
                    .iter()
                    .map(|b| registry.backends.get(&b.name.as_str().into()))
                    .collect(),
                backend_names: backends.iter().map(|b| b.name.as_str().into()).collect(),
                servers: backends
                    .iter()
                    .map(|b| {
                        let backend: Arc<str> = b.name.as_str().into();
                        b.servers
                            .iter()
                            .map(|s| {
                                registry
                                    .servers
                                    .get(&(backend.clone(), s.name.as_str().into()))
                            })
                            .collect()
                    })
                    .collect(),
                server_names: backends
                    .iter()
                    .map(|b| b.servers.iter().map(|s| s.name.as_str().into()).collect())
                    .collect(),
            }
        })
    }
}

pub type ServerKey = (String, String);

#[derive(Default)]
struct Registered {
    backends: HashMap<String, Arc<BackendState>>,
    servers: HashMap<ServerKey, Arc<ServerState>>,
}

/// Live state by name, carried from one snapshot to the next.
#[derive(Default)]
pub struct StateRegistry {
    inner: Mutex<Registered>,
}

impl StateRegistry {
    pub fn new() -> StateRegistry {
        StateRegistry::default()
    }

    /// Builds the snapshot of `config`, reusing the state of every
    /// backend and server that keeps its name and forgetting the
    /// others.
    pub fn build(&self, config: Arc<ProxyConfig>) -> Snapshot {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Registered::default();
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let state = inner.backends.remove(&b.name).unwrap_or_default();
                next.backends.insert(b.name.clone(), Arc::clone(&state));
                let servers: Vec<Arc<ServerState>> = b
                    .servers
                    .iter()
                    .map(|s| {
                        let key = (b.name.clone(), s.name.clone());
                        let server = match inner.servers.remove(&key) {
                            Some(existing) => {
                                existing.reconfigure(s);
                                existing
                            }
                            None => Arc::new(ServerState::new(s)),
                        };
                        next.servers.insert(key, Arc::clone(&server));
                        server
                    })
                    .collect();
                state.rejoin(b, &servers);
                for server in &servers {
                    server.attach(&state);
                }
                BackendRuntime {
                    state,
                    servers,
                    balancer: Balancer::new(b),
                }
            })
            .collect();
        *inner = next;
        Snapshot {
            config,
            backends,
            counters: OnceLock::new(),
        }
    }

    /// Every server's state by (backend, server) name, sorted.
    pub fn servers(&self) -> Vec<(ServerKey, Arc<ServerState>)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = inner
            .servers
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// A server's state by name (health engine, runtime commands).
    pub fn server(&self, backend: &str, server: &str) -> Option<Arc<ServerState>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .servers
            .get(&(backend.to_owned(), server.to_owned()))
            .cloned()
    }
}

impl std::fmt::Debug for StateRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateRegistry")
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
