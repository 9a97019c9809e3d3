//! The compiled, immutable routing snapshot and the live state that
//! outlives it. A reload builds a new [`Snapshot`] from a new
//! [`ProxyConfig`] through the same [`StateRegistry`]: frontends, backends
//! and servers that keep their names keep their counters and
//! administrative state; the proxy swaps the `Arc<Snapshot>` atomically
//! and each connection/request loads it once.
use crate::proxy::balance::Balancer;
use crate::proxy::config::{Backend, BackendId, Frontend, ProxyConfig, Server, ServerId};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
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
    /// Failed checks while up (HAProxy's `chkfail`).
    pub failed_checks: AtomicU64,
    /// UP->DOWN transitions (HAProxy's `chkdown`).
    pub downs: AtomicU64,
    last_check: Mutex<Option<LastCheck>>,
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
            failed_checks: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            last_check: Mutex::new(None),
        }
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
        was != up
    }
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }
    pub fn set_admin(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
    /// Runtime weight change (0..=256); roundrobin, leastconn, random and
    /// the hashing algorithms follow it, static-rr does not (HAProxy).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.min(256), Ordering::Relaxed);
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

/// A held connection slot on a server; dropping it frees the slot and wakes
/// the requests queued on the backend.
#[derive(Debug)]
pub struct ServerSlot {
    server: Arc<ServerState>,
    backend: Arc<BackendState>,
}

impl ServerSlot {
    /// Takes a slot on `server` of `backend`, if it has one free.
    pub fn acquire(backend: &BackendRuntime, server: ServerId, maxconn: u32) -> Option<ServerSlot> {
        let state = backend.servers.get(server)?;
        state.try_acquire(maxconn).then(|| {
            backend.state.current_conns.fetch_add(1, Ordering::Relaxed);
            backend.state.total_conns.fetch_add(1, Ordering::Relaxed);
            ServerSlot {
                server: Arc::clone(state),
                backend: Arc::clone(&backend.state),
            }
        })
    }
    pub fn server(&self) -> &Arc<ServerState> {
        &self.server
    }
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        self.server.release();
        let _ = self
            .backend
            .current_conns
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| c.checked_sub(1));
        // Every waiter retries: one queued on another (full) server must not
        // swallow the wake-up of one that can use this slot. The stored
        // permit covers a waiter about to start waiting.
        self.backend.slot_freed.notify_waiters();
        self.backend.slot_freed.notify_one();
    }
}

/// A backend's connection count and its queue's wake-up.
#[derive(Debug, Default)]
pub struct BackendState {
    /// Connections holding a server slot.
    pub current_conns: AtomicU32,
    pub total_conns: AtomicU64,
    /// Requests waiting for a server slot.
    pub queued: AtomicU32,
    /// Notified each time a server slot is freed: queued requests retry.
    pub slot_freed: tokio::sync::Notify,
}

#[derive(Debug)]
pub struct BackendRuntime {
    pub state: Arc<BackendState>,
    /// One per configured server, in order.
    pub servers: Vec<Arc<ServerState>>,
    pub balancer: Balancer,
}

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    /// One per `config.backends` entry.
    pub backends: Vec<BackendRuntime>,
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
}

type ServerKey = (String, String);

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
                let servers = b
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
                BackendRuntime {
                    state,
                    servers,
                    balancer: Balancer::new(b),
                }
            })
            .collect();
        *inner = next;
        Snapshot { config, backends }
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
mod tests {
    use super::*;
    use crate::proxy::config::parse_str;
    use std::path::Path;

    fn config(servers: &[(&str, u32)]) -> Arc<ProxyConfig> {
        let mut text = String::from("[[backend]]\nname = \"b\"\n");
        for (i, (name, weight)) in servers.iter().enumerate() {
            text.push_str(&format!(
                "[[backend.server]]\nname = \"{name}\"\naddress = \"198.18.0.{}:80\"\nweight = {weight}\nmaxconn = 2\n",
                i + 1
            ));
        }
        Arc::new(parse_str(&text, Path::new("t.toml")).unwrap())
    }

    #[test]
    fn state_survives_a_reload_by_name() {
        let registry = StateRegistry::new();
        let first = registry.build(config(&[("a", 1), ("b", 1)]));
        let a = &first.backends[0].servers[0];
        a.set_admin(AdminState::Drain);
        a.set_health(false);
        assert!(a.try_acquire(2));
        first.backends[0].servers[1].set_weight(7);
        // b is removed, c is new, a stays (now second).
        let second = registry.build(config(&[("c", 1), ("a", 1)]));
        let a2 = &second.backends[0].servers[1];
        assert!(Arc::ptr_eq(&first.backends[0].servers[0], a2));
        assert_eq!(a2.admin(), AdminState::Drain);
        assert!(!a2.is_health_up());
        assert_eq!(a2.current_conns.load(Ordering::Relaxed), 1);
        assert!(second.backends[0].servers[0].is_up());
        assert!(registry.server("b", "b").is_none());
        assert!(registry.server("b", "a").is_some());
        // b comes back fresh: its runtime weight was forgotten.
        let third = registry.build(config(&[("a", 1), ("b", 1)]));
        assert_eq!(third.backends[0].servers[1].weight(), 1);
        assert!(Arc::ptr_eq(
            &third.backends[0].state,
            &first.backends[0].state
        ));
    }

    #[test]
    fn a_changed_configured_weight_replaces_a_runtime_one() {
        let registry = StateRegistry::new();
        let first = registry.build(config(&[("a", 1)]));
        first.backends[0].servers[0].set_weight(9);
        let same = registry.build(config(&[("a", 1)]));
        assert_eq!(same.backends[0].servers[0].weight(), 9);
        let changed = registry.build(config(&[("a", 4)]));
        assert_eq!(changed.backends[0].servers[0].weight(), 4);
    }

    #[test]
    fn slots_respect_maxconn_and_free_on_drop() {
        let registry = StateRegistry::new();
        let snap = registry.build(config(&[("a", 1)]));
        let backend = &snap.backends[0];
        let one = ServerSlot::acquire(backend, 0, 2).unwrap();
        let two = ServerSlot::acquire(backend, 0, 2).unwrap();
        assert!(ServerSlot::acquire(backend, 0, 2).is_none());
        assert_eq!(backend.state.current_conns.load(Ordering::Relaxed), 2);
        assert!(backend.servers[0].is_full(2));
        drop(one);
        assert!(!backend.servers[0].is_full(2));
        assert_eq!(backend.servers[0].max_conns.load(Ordering::Relaxed), 2);
        assert_eq!(backend.servers[0].total_conns.load(Ordering::Relaxed), 2);
        drop(two);
        assert_eq!(backend.state.current_conns.load(Ordering::Relaxed), 0);
        assert!(ServerSlot::acquire(backend, 5, 2).is_none());
    }

    #[test]
    fn disabled_servers_start_in_maintenance() {
        let text = "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"a\"\naddress = \"198.18.0.1:80\"\ndisabled = true\n";
        let snap = StateRegistry::new().build(Arc::new(parse_str(text, Path::new("t")).unwrap()));
        assert_eq!(snap.backends[0].servers[0].admin(), AdminState::Maint);
        assert!(!snap.backends[0].servers[0].is_up());
    }

    #[tokio::test]
    async fn a_freed_slot_wakes_every_waiter() {
        let registry = StateRegistry::new();
        let snap = Arc::new(registry.build(config(&[("a", 1), ("b", 1)])));
        let slot = ServerSlot::acquire(&snap.backends[0], 0, 2).unwrap();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let snap = Arc::clone(&snap);
            waiters.push(tokio::spawn(async move {
                snap.backends[0].state.slot_freed.notified().await;
            }));
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(slot);
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
                .await
                .expect("every waiter woke")
                .unwrap();
        }
        // And one about to wait finds the stored permit.
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            snap.backends[0].state.slot_freed.notified(),
        )
        .await
        .expect("a permit was stored");
    }

    #[test]
    fn failed_checks_count_while_up_and_downs_count_transitions() {
        let registry = StateRegistry::new();
        let snap = registry.build(config(&[("a", 1)]));
        let server = &snap.backends[0].servers[0];
        let check = |ok| LastCheck {
            ok,
            detail: if ok {
                "L7OK 200".into()
            } else {
                "L7STS 503".into()
            },
            at: SystemTime::now(),
        };
        server.set_last_check(check(false));
        server.set_last_check(check(false));
        assert!(server.set_health(false));
        assert!(!server.set_health(false), "no change");
        server.set_last_check(check(false));
        assert_eq!(server.failed_checks.load(Ordering::Relaxed), 2);
        assert_eq!(server.downs.load(Ordering::Relaxed), 1);
        assert_eq!(server.last_check().unwrap().detail, "L7STS 503");
        assert!(server.set_health(true));
        server.set_last_check(check(true));
        assert_eq!(server.failed_checks.load(Ordering::Relaxed), 2);
        assert_eq!(server.downs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_changed_disabled_setting_applies_an_unchanged_one_keeps_runtime_state() {
        let with = |disabled: bool| {
            let text = format!("[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"a\"\naddress = \"198.18.0.1:80\"\ndisabled = {disabled}\n");
            Arc::new(parse_str(&text, Path::new("t")).unwrap())
        };
        let registry = StateRegistry::new();
        let first = registry.build(with(true));
        let server = Arc::clone(&first.backends[0].servers[0]);
        assert_eq!(server.admin(), AdminState::Maint);
        registry.build(with(false));
        assert_eq!(server.admin(), AdminState::Ready, "enabled in the file");
        server.set_admin(AdminState::Drain);
        registry.build(with(false));
        assert_eq!(server.admin(), AdminState::Drain, "runtime state kept");
        registry.build(with(true));
        assert_eq!(server.admin(), AdminState::Maint, "disabled in the file");
    }
}
