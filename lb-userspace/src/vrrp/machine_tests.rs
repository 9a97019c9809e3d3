use super::*;
use crate::vrrp::packet::password_bytes;
use std::net::Ipv4Addr;

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn config(last: u8, priority: u8) -> InstanceConfig {
    InstanceConfig {
        version: Version::V3,
        vrid: 51,
        priority,
        interval_cs: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        password: None,
        local_address: addr(last),
        addresses: vec![VIP],
    }
}

/// Nodes on one simulated link with a virtual clock. Every advert goes
/// through the real codec: emitted to bytes, parsed by each receiver.
struct Link {
    start: Instant,
    now: Instant,
    nodes: Vec<Machine>,
    up: Vec<bool>,
    /// Which pairs can hear each other (a partition clears entries).
    connected: Vec<Vec<bool>>,
    transitions: Vec<(Duration, usize, State, State)>,
}

impl Link {
    fn new(configs: Vec<InstanceConfig>) -> Self {
        let start = Instant::now();
        let n = configs.len();
        Link {
            start,
            now: start,
            nodes: configs
                .into_iter()
                .map(|c| Machine::new(c, start))
                .collect(),
            up: vec![false; n],
            connected: vec![vec![true; n]; n],
            transitions: Vec::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn start_node(&mut self, i: usize) {
        self.up[i] = true;
        let actions = self.nodes[i].start(self.now);
        self.process(i, actions);
    }

    fn process(&mut self, from: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Transition { from: old, to, .. } => {
                    self.transitions.push((self.elapsed(), from, old, to))
                }
                Action::Send(advert) => {
                    let source = self.nodes[from].config().local_address;
                    let bytes = advert.emit(source, GROUP);
                    for to in 0..self.nodes.len() {
                        if to != from && self.up[to] && self.connected[from][to] {
                            let replies =
                                self.nodes[to].handle_packet(self.now, source, GROUP, 255, &bytes);
                            self.process(to, replies);
                        }
                    }
                }
            }
        }
    }

    /// Advances the clock deadline by deadline until `until` (elapsed).
    fn run_until(&mut self, until: Duration) {
        loop {
            let next = (0..self.nodes.len())
                .filter(|&i| self.up[i])
                .filter_map(|i| self.nodes[i].next_deadline().map(|d| (d, i)))
                .min();
            match next {
                Some((deadline, i)) if deadline - self.start <= until => {
                    self.now = self.now.max(deadline);
                    let actions = self.nodes[i].handle_timeout(self.now);
                    self.process(i, actions);
                }
                _ => {
                    self.now = self.start + until;
                    return;
                }
            }
        }
    }

    fn states(&self) -> Vec<State> {
        self.nodes.iter().map(Machine::state).collect()
    }

    fn became_master_at(&self, node: usize) -> Option<Duration> {
        self.transitions
            .iter()
            .filter(|(_, n, _, to)| *n == node && *to == State::Master)
            .map(|(t, ..)| *t)
            .next_back()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn master_down_interval_is_three_intervals_plus_skew() {
    let machine = Machine::new(config(1, 100), Instant::now());
    // Skew = (256 - 100) / 256 × 1 s = 609.375 ms.
    assert_eq!(machine.skew_time(), Duration::from_micros(609_375));
    assert_eq!(
        machine.master_down_interval(),
        Duration::from_micros(3_609_375)
    );
    let mut v2 = config(1, 200);
    v2.version = Version::V2;
    let machine = Machine::new(v2, Instant::now());
    assert_eq!(machine.skew_time(), Duration::from_micros(218_750));
}

#[test]
fn a_lone_backup_becomes_master_after_the_master_down_interval() {
    let mut link = Link::new(vec![config(1, 100)]);
    link.start_node(0);
    assert_eq!(link.states(), [State::Backup]);
    link.run_until(secs(3.6));
    assert_eq!(link.states(), [State::Backup]);
    link.run_until(secs(3.7));
    assert_eq!(link.states(), [State::Master]);
    assert_eq!(
        link.became_master_at(0),
        Some(Duration::from_micros(3_609_375))
    );
}

#[test]
fn the_address_owner_is_master_at_once() {
    let mut link = Link::new(vec![config(1, 255), config(2, 200)]);
    link.start_node(0);
    link.start_node(1);
    assert_eq!(link.states(), [State::Master, State::Backup]);
    link.run_until(secs(30.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
}

#[test]
fn the_highest_priority_wins_the_election() {
    let mut link = Link::new(vec![config(1, 100), config(2, 200), config(3, 150)]);
    for i in 0..3 {
        link.start_node(i);
    }
    link.run_until(secs(20.0));
    assert_eq!(link.states(), [State::Backup, State::Master, State::Backup]);
    // Only one node ever became master: the best backup's skew is shortest.
    assert_eq!(
        link.transitions
            .iter()
            .filter(|t| t.3 == State::Master)
            .count(),
        1
    );
}

#[test]
fn equal_priorities_are_decided_by_the_higher_address() {
    let mut link = Link::new(vec![config(9, 100), config(2, 100)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(20.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
}

#[test]
fn a_higher_priority_node_preempts_a_running_master() {
    let mut link = Link::new(vec![config(1, 100), config(2, 200)]);
    link.start_node(0);
    link.run_until(secs(10.0));
    assert_eq!(link.states()[0], State::Master);
    link.start_node(1);
    link.run_until(secs(20.0));
    assert_eq!(link.states(), [State::Backup, State::Master]);
    // It waited one master-down interval (3 s + skew of priority 200).
    let took_over = link.became_master_at(1).unwrap();
    assert_eq!(took_over, secs(10.0) + Duration::from_micros(3_218_750));
}

#[test]
fn nopreempt_keeps_the_running_master() {
    let mut late = config(2, 200);
    late.preempt = false;
    let mut link = Link::new(vec![config(1, 100), late]);
    link.start_node(0);
    link.run_until(secs(10.0));
    link.start_node(1);
    link.run_until(secs(60.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
}

#[test]
fn preempt_delay_postpones_the_takeover() {
    let mut late = config(2, 200);
    late.preempt_delay = secs(10.0);
    let mut link = Link::new(vec![config(1, 100), late]);
    link.start_node(0);
    link.run_until(secs(10.0));
    link.start_node(1);
    link.run_until(secs(19.0));
    assert_eq!(
        link.states(),
        [State::Master, State::Backup],
        "still inside the delay"
    );
    link.run_until(secs(40.0));
    assert_eq!(link.states(), [State::Backup, State::Master]);
    let took_over = link.became_master_at(1).unwrap();
    assert!(
        took_over >= secs(20.0) && took_over < secs(25.0),
        "{took_over:?}"
    );
}

#[test]
fn priority_zero_hands_over_after_skew_time_only() {
    let mut link = Link::new(vec![config(1, 200), config(2, 100)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(10.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
    let actions = link.nodes[0].shutdown(link.now);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Send(ad) if ad.priority == 0)));
    link.process(0, actions);
    link.up[0] = false;
    link.run_until(secs(20.0));
    assert_eq!(link.states()[1], State::Master);
    // Skew of priority 100 is 609.375 ms, instead of a 3.6 s master-down.
    assert_eq!(
        link.became_master_at(1),
        Some(secs(10.0) + Duration::from_micros(609_375))
    );
}

#[test]
fn a_silent_master_is_replaced_after_the_master_down_interval() {
    let mut link = Link::new(vec![config(1, 200), config(2, 100)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(10.0));
    // The master's last advert went out at some t <= 10 s; it dies now.
    let last_advert = link.nodes[0].next_deadline().unwrap() - Duration::from_secs(1) - link.start;
    link.up[0] = false;
    link.run_until(secs(20.0));
    assert_eq!(
        link.became_master_at(1),
        Some(last_advert + Duration::from_micros(3_609_375))
    );
}

#[test]
fn a_healed_partition_leaves_one_master_within_one_advert() {
    let mut link = Link::new(vec![config(1, 200), config(2, 100)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(5.0));
    link.connected = vec![vec![false; 2]; 2];
    link.run_until(secs(15.0));
    assert_eq!(link.states(), [State::Master, State::Master], "split brain");
    link.connected = vec![vec![true; 2]; 2];
    link.run_until(secs(16.0) + Duration::from_millis(1));
    assert_eq!(link.states(), [State::Master, State::Backup]);
}

#[test]
fn tracking_weight_moves_the_master_and_back() {
    let mut link = Link::new(vec![config(1, 200), config(2, 150)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(10.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
    let actions = link.nodes[0].set_tracking(link.now, -60, false);
    link.process(0, actions);
    assert_eq!(link.nodes[0].effective_priority(), 140);
    link.run_until(secs(20.0));
    assert_eq!(link.states(), [State::Backup, State::Master]);
    let actions = link.nodes[0].set_tracking(link.now, 0, false);
    link.process(0, actions);
    link.run_until(secs(30.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
}

#[test]
fn a_weightless_failure_means_fault_and_an_immediate_handover() {
    let mut link = Link::new(vec![config(1, 200), config(2, 100)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(10.0));
    let actions = link.nodes[0].set_tracking(link.now, 0, true);
    link.process(0, actions);
    assert_eq!(link.states()[0], State::Fault);
    link.run_until(secs(11.0));
    assert_eq!(
        link.states(),
        [State::Fault, State::Master],
        "priority 0 advert: skew only"
    );
    let actions = link.nodes[0].set_tracking(link.now, 0, false);
    link.process(0, actions);
    link.run_until(secs(20.0));
    assert_eq!(
        link.states(),
        [State::Master, State::Backup],
        "recovered, preempts"
    );
}

#[test]
fn v3_backups_learn_the_masters_interval() {
    let mut fast = config(1, 200);
    fast.interval_cs = 1; // 10 ms
    let mut link = Link::new(vec![fast, config(2, 100)]);
    link.start_node(0);
    link.start_node(1);
    link.run_until(secs(5.0));
    assert_eq!(link.states(), [State::Master, State::Backup]);
    // 3 × 10 ms + (256 - 100) × 10 ms / 256 = 36.09375 ms.
    assert_eq!(
        link.nodes[1].master_down_interval(),
        Duration::from_micros(36_093)
    );
    let died = link.now;
    link.up[0] = false;
    link.run_until(secs(6.0));
    let took_over = link.became_master_at(1).unwrap();
    assert!(
        took_over - (died - link.start) <= Duration::from_millis(40),
        "{took_over:?}"
    );
}

fn received(machine: &mut Machine, advert: &Advertisement, ttl: u8) {
    let bytes = advert.emit(addr(2), GROUP);
    machine.handle_packet(Instant::now(), addr(2), GROUP, ttl, &bytes);
}

fn rejected(machine: &Machine, reason: RejectReason) -> u64 {
    machine
        .counters()
        .rejected
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

#[test]
fn invalid_adverts_are_counted_by_reason_and_change_nothing() {
    let mut v2 = config(1, 100);
    v2.version = Version::V2;
    v2.password = Some(password_bytes("1111"));
    let now = Instant::now();
    let mut machine = Machine::new(v2.clone(), now);
    machine.start(now);
    let good = Advertisement {
        version: Version::V2,
        vrid: 51,
        priority: 200,
        interval_cs: 100,
        password: Some(password_bytes("1111")),
        addresses: vec![VIP],
    };
    let deadline = machine.next_deadline();

    received(&mut machine, &good, 64);
    assert_eq!(rejected(&machine, RejectReason::Ttl), 1);
    received(
        &mut machine,
        &Advertisement {
            password: Some(password_bytes("2222")),
            ..good.clone()
        },
        255,
    );
    assert_eq!(rejected(&machine, RejectReason::Auth), 1);
    received(
        &mut machine,
        &Advertisement {
            password: None,
            ..good.clone()
        },
        255,
    );
    assert_eq!(rejected(&machine, RejectReason::Auth), 2);
    received(
        &mut machine,
        &Advertisement {
            interval_cs: 200,
            ..good.clone()
        },
        255,
    );
    assert_eq!(rejected(&machine, RejectReason::Interval), 1);
    received(
        &mut machine,
        &Advertisement {
            version: Version::V3,
            password: None,
            ..good.clone()
        },
        255,
    );
    assert_eq!(rejected(&machine, RejectReason::Version), 1);
    machine.handle_packet(now, addr(2), GROUP, 255, &[0x21, 51, 200]);
    assert_eq!(rejected(&machine, RejectReason::Truncated), 1);
    received(
        &mut machine,
        &Advertisement {
            vrid: 52,
            ..good.clone()
        },
        255,
    );
    assert_eq!(machine.counters().other_vrid, 1);
    assert_eq!(machine.counters().adverts_received, 0);
    assert_eq!(
        machine.next_deadline(),
        deadline,
        "nothing above touched the timer"
    );

    // The right password but another address list: ignored, counted.
    received(
        &mut machine,
        &Advertisement {
            addresses: vec![addr(200)],
            ..good.clone()
        },
        255,
    );
    assert_eq!(machine.counters().address_mismatch, 1);
    assert_eq!(machine.counters().adverts_received, 0);
    assert_eq!(machine.next_deadline(), deadline, "ignored");

    // Our own address as source: forged, counted.
    let bytes = good.emit(addr(1), GROUP);
    machine.handle_packet(now, addr(1), GROUP, 255, &bytes);
    assert_eq!(rejected(&machine, RejectReason::OwnAddress), 1);
    assert_eq!(machine.next_deadline(), deadline, "ignored");

    received(&mut machine, &good, 255);
    assert_eq!(machine.counters().adverts_received, 1);
    assert_ne!(
        machine.next_deadline(),
        deadline,
        "a valid advert restarts the timer"
    );
}

/// A VRRPv3 packet reaching a v2 instance is a version mismatch whatever
/// its checksum: v3 sums a pseudo-header that v2 does not have, so checked
/// as v2 (or by an implementation that leaves the pseudo-header out) it
/// would look like a bad checksum.
#[test]
fn the_other_version_is_counted_as_version_not_checksum() {
    let mut v2 = config(1, 100);
    v2.version = Version::V2;
    v2.password = Some(password_bytes("1111"));
    let now = Instant::now();
    let mut machine = Machine::new(v2, now);
    machine.start(now);
    let v3 = Advertisement {
        version: Version::V3,
        vrid: 51,
        priority: 200,
        interval_cs: 100,
        password: None,
        addresses: vec![VIP],
    };
    // Checksummed without the pseudo-header (as if to another address).
    let bytes = v3.emit(addr(2), addr(99));
    machine.handle_packet(now, addr(2), GROUP, 255, &bytes);
    assert_eq!(rejected(&machine, RejectReason::Version), 1);
    assert_eq!(rejected(&machine, RejectReason::Checksum), 0);

    // And the other way round: v2 to a v3 instance.
    let mut machine = Machine::new(config(1, 100), now);
    machine.start(now);
    let v2_advert = Advertisement {
        version: Version::V2,
        password: Some(password_bytes("1111")),
        ..v3
    };
    received(&mut machine, &v2_advert, 255);
    assert_eq!(rejected(&machine, RejectReason::Version), 1);
    assert_eq!(machine.state(), State::Backup);
}

/// A master that hears a higher priority with the right credentials but
/// another address list keeps the VIP (keepalived: "bogus VRRP packet").
#[test]
fn a_higher_priority_advert_for_other_addresses_does_not_take_the_vip() {
    let now = Instant::now();
    let mut machine = Machine::new(config(1, 100), now);
    machine.start(now);
    let later = now + machine.master_down_interval();
    machine.handle_timeout(later);
    assert_eq!(machine.state(), State::Master);
    let rogue = Advertisement {
        version: Version::V3,
        vrid: 51,
        priority: 254,
        interval_cs: 100,
        password: None,
        addresses: vec![addr(77)],
    };
    let bytes = rogue.emit(addr(2), GROUP);
    let actions = machine.handle_packet(later, addr(2), GROUP, 255, &bytes);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(machine.state(), State::Master);
    assert_eq!(machine.counters().address_mismatch, 1);
}

#[test]
fn random_bytes_never_panic() {
    let now = Instant::now();
    let mut machine = Machine::new(config(1, 100), now);
    machine.start(now);
    let mut seed = 0x1234_5678u32;
    for len in 0..64 {
        for _ in 0..50 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            machine.handle_packet(now, addr(2), GROUP, 255, &bytes);
        }
    }
    assert_eq!(machine.state(), State::Backup);
}
