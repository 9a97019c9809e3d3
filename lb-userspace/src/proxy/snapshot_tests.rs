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

fn backend_with(balance: &str, servers: &[(&str, u32)]) -> Arc<ProxyConfig> {
    backend_with_options(balance, "", servers)
}

/// A backend with `options` (TOML lines) and servers of the given maxconn.
fn backend_with_options(balance: &str, options: &str, servers: &[(&str, u32)]) -> Arc<ProxyConfig> {
    let mut text =
        format!("[[backend]]\nname = \"b\"\nmode = \"http\"\nbalance = \"{balance}\"\n{options}");
    for (i, (name, maxconn)) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[[backend.server]]\nname = \"{name}\"\naddress = \"198.18.0.{}:80\"\nmaxconn = {maxconn}\n",
            i + 1
        ));
    }
    Arc::new(parse_str(&text, Path::new("t.toml")).unwrap())
}

fn take(snap: &Snapshot, input: &BalanceInput, wait: Duration) -> Take {
    let (config, runtime) = snap.backend(0).unwrap();
    runtime.take(config, input, Instant::now() + wait)
}

/// A request with `X-User: alice`: `hdr(X-User)` binds it to a server.
fn alice() -> hyper::http::request::Parts {
    hyper::http::Request::get("/")
        .header("X-User", "alice")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// [`take`] for a request of alice's.
fn take_bound(snap: &Snapshot, wait: Duration) -> Take {
    let parts = alice();
    let bound = BalanceInput {
        request: Some(&parts),
        ..input()
    };
    take(snap, &bound, wait)
}

fn input() -> BalanceInput<'static> {
    BalanceInput::new("198.18.1.1".parse().unwrap())
}

/// Queued requests, each waiting in its own task: they report (tag, place,
/// position) when served, in the order served.
fn waiters(
    snap: &Arc<Snapshot>,
    requests: Vec<(&'static str, Take)>,
) -> tokio::sync::mpsc::UnboundedReceiver<(&'static str, Place<usize>, u32, ServerSlot)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (tag, taken) in requests {
        let Take::Queued(mut queued) = taken else {
            panic!("{tag} was not queued");
        };
        let tx = tx.clone();
        let _snap = Arc::clone(snap);
        tokio::spawn(async move {
            if let Ok(grant) = queued.wait().await {
                let _ = tx.send((tag, grant.from, grant.position, grant.slot));
            }
        });
    }
    rx
}

#[tokio::test(start_paused = true)]
async fn freed_slots_go_to_waiters_in_arrival_order() {
    let snap =
        Arc::new(StateRegistry::new().build(backend_with("roundrobin", &[("a", 1), ("b", 1)])));
    let input = input();
    let held: Vec<_> = (0..2)
        .map(|_| match take(&snap, &input, Duration::from_secs(10)) {
            Take::Slot(_, slot) => slot,
            other => panic!("a free slot: {other:?}"),
        })
        .collect();
    let queued: Vec<_> = ["first", "second", "third"]
        .into_iter()
        .map(|tag| (tag, take(&snap, &input, Duration::from_secs(10))))
        .collect();
    assert_eq!(snap.backends[0].state.queued.load(Ordering::SeqCst), 3);
    let mut served = waiters(&snap, queued);
    tokio::task::yield_now().await;
    // A newcomer does not overtake them even when a slot frees.
    let mut held = held.into_iter();
    drop(held.next());
    let (tag, from, position, slot) = served.recv().await.unwrap();
    assert_eq!((tag, from, position), ("first", Place::Backend, 1));
    match take(&snap, &input, Duration::from_secs(10)) {
        Take::Queued(late) => assert_eq!(late.place(), Place::Backend),
        other => panic!("the newcomer queues behind: {other:?}"),
    }
    drop(slot);
    let (tag, _, position, slot) = served.recv().await.unwrap();
    assert_eq!((tag, position), ("second", 2));
    drop(held.next());
    let (tag, _, position, _third) = served.recv().await.unwrap();
    assert_eq!((tag, position), ("third", 3));
    drop(slot);
    assert_eq!(
        snap.backends[0].state.queued.load(Ordering::SeqCst),
        0,
        "the late one left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bound_request_waits_on_its_server_and_the_oldest_of_both_queues_goes_first() {
    // hdr(X-User): with the header the request is bound to its server,
    // without it round robin may use any server.
    let snap = Arc::new(StateRegistry::new().build(backend_with("hdr(X-User)", &[("a", 1)])));
    let Take::Slot(_, held) = take_bound(&snap, Duration::from_secs(10)) else {
        panic!("a free slot");
    };
    let first = take_bound(&snap, Duration::from_secs(10));
    let second = take(&snap, &input(), Duration::from_secs(10));
    let third = take_bound(&snap, Duration::from_secs(10));
    let places: Vec<_> = [&first, &second, &third]
        .iter()
        .map(|t| match t {
            Take::Queued(q) => q.place(),
            other => panic!("queued: {other:?}"),
        })
        .collect();
    assert_eq!(places, [Place::Server(0), Place::Backend, Place::Server(0)]);
    assert_eq!(snap.backends[0].servers[0].queued.load(Ordering::SeqCst), 2);
    let mut served = waiters(
        &snap,
        vec![("first", first), ("second", second), ("third", third)],
    );
    tokio::task::yield_now().await;
    drop(held);
    let mut order = Vec::new();
    for _ in 0..3 {
        let (tag, from, position, slot) = served.recv().await.unwrap();
        order.push((tag, from, position));
        drop(slot);
    }
    let key = |p: Place<usize>| matches!(p, Place::Server(_));
    assert_eq!(
        order
            .iter()
            .map(|(t, f, p)| (*t, key(*f), *p))
            .collect::<Vec<_>>(),
        [("first", true, 1), ("second", false, 1), ("third", true, 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_queue_expires_a_waiter_and_frees_its_place() {
    let snap = Arc::new(StateRegistry::new().build(backend_with("roundrobin", &[("a", 1)])));
    let Take::Slot(_, held) = take(&snap, &input(), Duration::from_secs(1)) else {
        panic!("a free slot");
    };
    let Take::Queued(mut waiting) = take(&snap, &input(), Duration::from_millis(1500)) else {
        panic!("queued");
    };
    let started = tokio::time::Instant::now();
    assert_eq!(waiting.wait().await.unwrap_err(), QueueTimeout);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );
    assert_eq!(snap.backends[0].state.queued.load(Ordering::SeqCst), 0);
    drop(held);
    assert_eq!(
        snap.backends[0].state.current_conns.load(Ordering::SeqCst),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_passes_the_slot_on() {
    let snap = Arc::new(StateRegistry::new().build(backend_with("roundrobin", &[("a", 1)])));
    let Take::Slot(_, held) = take(&snap, &input(), Duration::from_secs(10)) else {
        panic!("a free slot");
    };
    let gone = take(&snap, &input(), Duration::from_secs(10));
    let stays = take(&snap, &input(), Duration::from_secs(10));
    drop(gone);
    let mut served = waiters(&snap, vec![("stays", stays)]);
    tokio::task::yield_now().await;
    drop(held);
    let (tag, _, position, _slot) = served.recv().await.unwrap();
    assert_eq!((tag, position), ("stays", 1));
    assert_eq!(
        snap.backends[0].state.current_conns.load(Ordering::SeqCst),
        1
    );
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

/// A server put in MAINT (or going DOWN) hands its queued requests to the
/// other servers at once with `option redispatch`: without a freed slot
/// and without waiting for the queue's periodic re-check (the virtual
/// clock does not move).
#[tokio::test(start_paused = true)]
async fn queued_requests_leave_a_server_in_maint_at_once() {
    let snap = Arc::new(StateRegistry::new().build(backend_with_options(
        "hdr(X-User)",
        "redispatch = true\n",
        &[("a", 1), ("b", 1)],
    )));
    let Take::Slot(busy, _held) = take_bound(&snap, Duration::from_secs(10)) else {
        panic!("a free slot");
    };
    let queued = vec![
        ("first", take_bound(&snap, Duration::from_secs(10))),
        ("second", take_bound(&snap, Duration::from_secs(10))),
    ];
    let mut served = waiters(&snap, queued);
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    snap.backends[0].servers[busy].set_admin(AdminState::Maint);
    let (tag, from, _, slot) = served.recv().await.unwrap();
    assert_eq!(
        tokio::time::Instant::now(),
        started,
        "served without waiting"
    );
    assert_eq!((tag, from), ("first", Place::Backend));
    let other = 1 - busy;
    assert!(Arc::ptr_eq(slot.server(), &snap.backends[0].servers[other]));
    // The second waits for the other server's only slot, in the backend
    // queue now.
    assert_eq!(
        snap.backends[0].servers[busy].queued.load(Ordering::SeqCst),
        0
    );
    drop(slot);
    let (tag, _, _, slot) = served.recv().await.unwrap();
    assert_eq!(tag, "second");
    assert!(Arc::ptr_eq(slot.server(), &snap.backends[0].servers[other]));
}

/// Without `option redispatch` they stay bound to their server.
#[tokio::test(start_paused = true)]
async fn without_redispatch_queued_requests_stay_with_their_server() {
    let snap =
        Arc::new(StateRegistry::new().build(backend_with("hdr(X-User)", &[("a", 1), ("b", 1)])));
    let Take::Slot(busy, _held) = take_bound(&snap, Duration::from_secs(10)) else {
        panic!("a free slot");
    };
    let queued = vec![("first", take_bound(&snap, Duration::from_secs(10)))];
    let _served = waiters(&snap, queued);
    tokio::task::yield_now().await;
    snap.backends[0].servers[busy].set_admin(AdminState::Maint);
    tokio::task::yield_now().await;
    assert_eq!(
        snap.backends[0].servers[busy].queued.load(Ordering::SeqCst),
        1
    );
}
