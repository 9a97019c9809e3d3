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
