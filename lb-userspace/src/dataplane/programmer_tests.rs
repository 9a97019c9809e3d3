use super::*;
use std::convert::Infallible;

/// Records every map operation, and keeps the resulting map contents.
#[derive(Default)]
struct Recorder {
    ops: Vec<String>,
    services: BTreeMap<ServiceKey, ServiceInfo>,
    backends: BTreeMap<u32, BackendInfo>,
    maglev: BTreeMap<u32, u32>,
}

impl MapWriter for Recorder {
    type Error = Infallible;
    fn set_settings(&mut self, _: &LbSettings) -> Result<(), Infallible> {
        self.ops.push("settings".into());
        Ok(())
    }
    fn set_backend(&mut self, id: u32, info: &BackendInfo) -> Result<(), Infallible> {
        self.ops.push(format!(
            "backend {id} active={}",
            info.flags & BACKEND_ACTIVE
        ));
        self.backends.insert(id, *info);
        Ok(())
    }
    fn set_maglev_slot(&mut self, index: u32, backend_id: u32) -> Result<(), Infallible> {
        self.maglev.insert(index, backend_id);
        Ok(())
    }
    fn set_service(&mut self, key: &ServiceKey, info: &ServiceInfo) -> Result<(), Infallible> {
        self.ops.push(format!(
            "service port={} offset={}",
            key.port, info.ring_offset
        ));
        self.services.insert(*key, *info);
        Ok(())
    }
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), Infallible> {
        self.ops.push(format!("remove service port={}", key.port));
        self.services.remove(key);
        Ok(())
    }
    fn reset_service_stats(&mut self, id: u32) -> Result<(), Infallible> {
        self.ops.push(format!("reset service stats {id}"));
        Ok(())
    }
    fn reset_backend_stats(&mut self, id: u32) -> Result<(), Infallible> {
        self.ops.push(format!("reset backend stats {id}"));
        Ok(())
    }
}

const MAC: Option<[u8; 6]> = Some([2, 0, 0, 0, 0, 1]);
const RING: u32 = 13;

fn service(port: u16, backends: &[(u8, u32)]) -> DesiredService {
    DesiredService {
        name: format!("svc{port}"),
        vip: Ipv4Addr::new(198, 18, 0, 100).into(),
        port,
        proto: lb_common::PROTO_TCP,
        mode: lb_common::MODE_DSR,
        backends: backends
            .iter()
            .map(|&(last, weight)| DesiredBackend {
                address: SocketAddr::new(Ipv4Addr::new(198, 18, 0, last).into(), port),
                weight,
                mac: MAC,
                state: BackendState::Serving,
            })
            .collect(),
    }
}

fn published_table(rec: &Recorder, port: u16) -> Vec<u32> {
    let (_, info) = rec
        .services
        .iter()
        .find(|(k, _)| k.port == port)
        .expect("published");
    (info.ring_offset..info.ring_offset + RING)
        .map(|i| rec.maglev.get(&i).copied().unwrap_or(0)) // arrays start zeroed
        .collect()
}

#[test]
fn first_apply_writes_backends_then_table_then_service() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    p.apply(&mut rec, &[service(80, &[(11, 1), (12, 1)])])
        .unwrap();
    assert_eq!(
        rec.ops,
        [
            "reset service stats 0",
            "reset backend stats 0",
            "backend 0 active=1",
            "reset backend stats 1",
            "backend 1 active=1",
            // Table written into half 0 (offset 0), then published.
            "service port=80 offset=0",
        ]
    );
    let table = published_table(&rec, 80);
    assert!(table.iter().all(|&id| id == 0 || id == 1));
    assert!(table.contains(&0) && table.contains(&1));
}

#[test]
fn reapplying_the_same_state_touches_nothing() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let desired = [service(80, &[(11, 1), (12, 1)]), service(81, &[(11, 1)])];
    p.apply(&mut rec, &desired).unwrap();
    rec.ops.clear();
    let slots_before = rec.maglev.clone();
    p.apply(&mut rec, &desired).unwrap();
    assert!(rec.ops.is_empty(), "{:?}", rec.ops);
    assert_eq!(rec.maglev, slots_before);
    assert_eq!(
        p.snapshot().services.len(),
        2,
        "the snapshot still lists both"
    );
}

#[test]
fn a_change_in_one_service_rebuilds_only_that_service() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let mut desired = vec![
        service(80, &[(11, 1), (12, 1)]),
        service(81, &[(11, 1), (12, 1)]),
    ];
    p.apply(&mut rec, &desired).unwrap();
    rec.ops.clear();
    desired[1].backends[1].state = BackendState::Down;
    p.apply(&mut rec, &desired).unwrap();
    assert_eq!(rec.ops, ["backend 3 active=0", "service port=81 offset=39"]);
}

#[test]
fn draining_keeps_the_backend_active_without_slots() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let mut desired = vec![service(80, &[(11, 1), (12, 1)])];
    p.apply(&mut rec, &desired).unwrap();
    rec.ops.clear();
    desired[0].backends[1].state = BackendState::Draining;
    p.apply(&mut rec, &desired).unwrap();
    assert_eq!(
        rec.ops,
        ["service port=80 offset=13"],
        "no backend write: still active"
    );
    assert!(published_table(&rec, 80).iter().all(|&id| id == 0));
    assert_eq!(rec.backends[&1].flags & BACKEND_ACTIVE, BACKEND_ACTIVE);
}

#[test]
fn a_down_backend_is_deactivated_and_comes_back_with_its_id() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let mut desired = vec![service(80, &[(11, 1), (12, 1)])];
    p.apply(&mut rec, &desired).unwrap();
    desired[0].backends[1].state = BackendState::Down;
    p.apply(&mut rec, &desired).unwrap();
    assert_eq!(rec.backends[&1].flags & BACKEND_ACTIVE, 0);
    assert!(published_table(&rec, 80).iter().all(|&id| id == 0));
    desired[0].backends[1].state = BackendState::Serving;
    p.apply(&mut rec, &desired).unwrap();
    assert_eq!(rec.backends[&1].flags & BACKEND_ACTIVE, BACKEND_ACTIVE);
    assert!(published_table(&rec, 80).contains(&1));
}

#[test]
fn adding_a_backend_publishes_a_new_half_and_keeps_ids() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    p.apply(&mut rec, &[service(80, &[(11, 1), (12, 1)])])
        .unwrap();
    rec.ops.clear();
    p.apply(&mut rec, &[service(80, &[(11, 1), (12, 1), (13, 1)])])
        .unwrap();
    assert_eq!(
        rec.ops,
        [
            "reset backend stats 2",
            "backend 2 active=1",
            "service port=80 offset=13",
        ]
    );
    assert!(published_table(&rec, 80).contains(&2));
}

#[test]
fn removing_a_backend_deactivates_it_after_the_table_is_published() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    p.apply(&mut rec, &[service(80, &[(11, 1), (12, 1)])])
        .unwrap();
    rec.ops.clear();
    p.apply(&mut rec, &[service(80, &[(11, 1)])]).unwrap();
    assert_eq!(rec.ops, ["service port=80 offset=13", "backend 1 active=0"]);
    assert!(published_table(&rec, 80).iter().all(|&id| id == 0));
}

#[test]
fn a_reused_backend_id_gets_a_new_generation() {
    let mut rec = Recorder::default();
    // One backend id only: removing and adding must reuse it.
    let mut p = Programmer::new(RING, 4, 1);
    p.apply(&mut rec, &[service(80, &[(11, 1)])]).unwrap();
    let first = rec.backends[&0].generation;
    p.apply(&mut rec, &[service(80, &[])]).unwrap();
    p.apply(&mut rec, &[service(80, &[(12, 1)])]).unwrap();
    assert_ne!(rec.backends[&0].generation, first);
    assert_eq!(rec.backends[&0].addr[3], 12);
}

#[test]
fn removing_a_service_unpublishes_it_before_retiring_backends() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    p.apply(
        &mut rec,
        &[service(80, &[(11, 1)]), service(81, &[(11, 1)])],
    )
    .unwrap();
    rec.ops.clear();
    p.apply(&mut rec, &[service(80, &[(11, 1)])]).unwrap();
    assert_eq!(
        rec.ops[..2],
        ["remove service port=81", "backend 1 active=0"]
    );
}

#[test]
fn unresolved_and_zero_weight_backends_get_no_slot() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let mut desired = service(80, &[(11, 1), (12, 0), (13, 1)]);
    desired.backends[2].mac = None;
    p.apply(&mut rec, &[desired]).unwrap();
    assert!(published_table(&rec, 80).iter().all(|&id| id == 0));
    let snapshot = p.snapshot();
    let slots: Vec<u32> = snapshot.services[0]
        .backends
        .iter()
        .map(|b| b.slots)
        .collect();
    assert_eq!(slots, [RING, 0, 0]);
}

#[test]
fn a_service_with_no_usable_backend_is_published_empty() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let mut desired = service(80, &[(11, 1)]);
    desired.backends[0].mac = None;
    p.apply(&mut rec, &[desired]).unwrap();
    let info = rec.services.values().next().unwrap();
    assert_eq!(info.ring_size, 0, "the kernel drops with drop_no_backend");
}

#[test]
fn too_many_services_is_an_error_not_a_panic() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 1, 8);
    let err = p
        .apply(
            &mut rec,
            &[service(80, &[(11, 1)]), service(81, &[(11, 1)])],
        )
        .unwrap_err();
    assert!(matches!(err, ProgramError::TooManyServices(1)));
}

#[test]
fn an_adopting_programmer_keeps_ids_and_generations() {
    let mut rec = Recorder::default();
    let mut old = Programmer::new(RING, 4, 8);
    let desired = vec![service(80, &[(11, 1), (12, 1), (13, 1)])];
    // History: b12 removed and re-added, so generations are not 1, 2, 3.
    old.apply(&mut rec, &desired).unwrap();
    old.apply(&mut rec, &[service(80, &[(11, 1), (13, 1)])])
        .unwrap();
    old.apply(&mut rec, &desired).unwrap();
    let before: Vec<(u32, u32)> = rec
        .backends
        .iter()
        .filter(|(_, b)| b.flags & BACKEND_ACTIVE != 0)
        .map(|(id, b)| (*id, b.generation))
        .collect();
    let services: Vec<(ServiceKey, ServiceInfo)> =
        rec.services.iter().map(|(k, v)| (*k, *v)).collect();
    let backends: Vec<(u32, BackendInfo)> = rec.backends.iter().map(|(id, b)| (*id, *b)).collect();

    let mut new = Programmer::new(RING, 4, 8);
    new.adopt(&services, &backends);
    rec.ops.clear();
    new.apply(&mut rec, &desired).unwrap();
    let after: Vec<(u32, u32)> = rec
        .backends
        .iter()
        .filter(|(_, b)| b.flags & BACKEND_ACTIVE != 0)
        .map(|(id, b)| (*id, b.generation))
        .collect();
    assert_eq!(
        before, after,
        "same ids and generations: old flows stay valid"
    );
    assert!(
        !rec.ops.iter().any(|op| op.starts_with("reset")),
        "no counters reset: {:?}",
        rec.ops
    );
    // The table is published into the other half, in full.
    assert_eq!(rec.ops.last().unwrap(), "service port=80 offset=13");
    assert_eq!(published_table(&rec, 80).len(), RING as usize);
    // A new backend gets a generation above all the old ones.
    new.apply(
        &mut rec,
        &[service(80, &[(11, 1), (12, 1), (13, 1), (14, 1)])],
    )
    .unwrap();
    let newest = rec.backends.values().map(|b| b.generation).max().unwrap();
    assert!(newest > before.iter().map(|(_, g)| *g).max().unwrap());
}

#[test]
fn a_weight_change_republishes_the_table_and_writes_no_backend() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    p.apply(&mut rec, &[service(80, &[(11, 1), (12, 1)])])
        .unwrap();
    rec.ops.clear();
    p.apply(&mut rec, &[service(80, &[(11, 3), (12, 1)])])
        .unwrap();
    assert_eq!(rec.ops, ["service port=80 offset=13"]);
    let table = published_table(&rec, 80);
    let heavy = table.iter().filter(|&&id| id == 0).count();
    assert!(
        heavy > 2 * table.iter().filter(|&&id| id == 1).count(),
        "{table:?}"
    );
}

#[test]
fn an_added_service_touches_only_itself() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    p.apply(&mut rec, &[service(80, &[(11, 1)])]).unwrap();
    rec.ops.clear();
    p.apply(
        &mut rec,
        &[service(80, &[(11, 1)]), service(81, &[(12, 1)])],
    )
    .unwrap();
    assert_eq!(
        rec.ops,
        [
            "reset service stats 1",
            "reset backend stats 1",
            "backend 1 active=1",
            "service port=81 offset=26",
        ]
    );
}

#[test]
fn a_mac_change_rewrites_the_backend_only() {
    let mut rec = Recorder::default();
    let mut p = Programmer::new(RING, 4, 8);
    let mut desired = vec![service(80, &[(11, 1)])];
    p.apply(&mut rec, &desired).unwrap();
    rec.ops.clear();
    desired[0].backends[0].mac = Some([2, 0, 0, 0, 0, 9]);
    p.apply(&mut rec, &desired).unwrap();
    assert_eq!(rec.ops, ["backend 0 active=1", "service port=80 offset=13"]);
    assert_eq!(rec.backends[&0].mac, [2, 0, 0, 0, 0, 9]);
    assert!(published_table(&rec, 80).iter().all(|&id| id == 0));
}
