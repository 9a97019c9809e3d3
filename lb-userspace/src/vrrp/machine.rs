//! The VRRP state machine (RFC 5798 section 6.4, RFC 3768 for v2), sans
//! IO: it takes received packets, tracking changes and `now`, and returns
//! actions and its next deadline. The driver owns sockets, netlink and
//! timers, so this is tested with a virtual clock.
use super::packet::{self, Advertisement, RejectReason, Version, VrrpPacket, VRRP_TTL};
use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// A tracked object without weight failed: no adverts, no VIP.
    Fault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub version: Version,
    pub vrid: u8,
    /// Configured priority, 1..=255 (255 = address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: a multiple of 100).
    pub interval_cs: u16,
    pub preempt: bool,
    /// How long a backup lets a lower-priority master stay before taking
    /// over (keepalived's `preempt_delay`).
    pub preempt_delay: Duration,
    /// VRRPv2 simple password.
    pub password: Option<[u8; 8]>,
    /// Our primary address on the link: the source of our adverts and the
    /// tie-breaker between equal priorities.
    pub local_address: IpAddr,
    pub addresses: Vec<IpAddr>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this advertisement (to the group or the unicast peers).
    Send(Advertisement),
    /// The state changed. Entering Master: start forwarding, add the VIPs,
    /// announce them (gratuitous ARP / unsolicited NA). Leaving it: the
    /// reverse.
    Transition {
        from: State,
        to: State,
        cause: String,
    },
}

/// Counters, by name, for `lbd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Adverts for another VRID on the same group (not errors).
    pub other_vrid: u64,
    /// Adverts that passed every other check but carry another address
    /// list than ours: ignored, as keepalived ignores them ("bogus VRRP
    /// packet", its `addr_list_err`), so a misconfigured or forged peer
    /// that knows the password cannot take the VIP.
    pub address_mismatch: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

pub struct Machine {
    config: InstanceConfig,
    state: State,
    /// Configured priority plus tracking weights, clamped to 1..=254
    /// (255 stays 255: the owner is not adjusted).
    effective_priority: u8,
    /// The master's advertised interval, learned in v3 (ours until then).
    master_interval_cs: u16,
    master_address: Option<IpAddr>,
    /// When the advert timer (Master) or master-down timer (Backup) fires.
    deadline: Option<Instant>,
    /// When a lower-priority master was first seen, for `preempt_delay`.
    lower_master_since: Option<Instant>,
    in_state_since: Instant,
    last_cause: String,
    fault: bool,
    counters: Counters,
}

impl Machine {
    pub fn new(config: InstanceConfig, now: Instant) -> Self {
        let effective_priority = config.priority;
        let master_interval_cs = config.interval_cs;
        Machine {
            config,
            state: State::Initialize,
            effective_priority,
            master_interval_cs,
            master_address: None,
            deadline: None,
            lower_master_since: None,
            in_state_since: now,
            last_cause: "initialize".into(),
            fault: false,
            counters: Counters::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }
    pub fn master_address(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.config.local_address),
            _ => self.master_address,
        }
    }
    pub fn in_state_since(&self) -> Instant {
        self.in_state_since
    }
    pub fn last_cause(&self) -> &str {
        &self.last_cause
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// When `handle_timeout` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn interval(cs: u16) -> Duration {
        Duration::from_millis(u64::from(cs) * 10)
    }

    /// Skew_Time: lower priorities wait longer, so the best backup wins.
    pub fn skew_time(&self) -> Duration {
        let factor = 256 - u64::from(self.effective_priority);
        match self.config.version {
            Version::V3 => {
                Duration::from_micros(factor * u64::from(self.master_interval_cs) * 10_000 / 256)
            }
            Version::V2 => Duration::from_micros(factor * 1_000_000 / 256),
        }
    }

    /// Master_Down_Interval = 3 × the master's interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * Self::interval(self.master_interval_cs) + self.skew_time()
    }

    /// Leaves Initialize: the address owner becomes master at once,
    /// everyone else starts as backup.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state != State::Initialize {
            return actions;
        }
        if self.fault {
            self.transition(
                now,
                State::Fault,
                "tracked object down at start",
                &mut actions,
            );
        } else if self.effective_priority == 255 {
            self.become_master(now, "address owner (priority 255)", &mut actions);
        } else {
            self.become_backup(now, "startup", &mut actions);
        }
        actions
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return actions,
        }
        match self.state {
            State::Master => {
                self.send_advert(self.effective_priority, &mut actions);
                self.deadline = Some(now + Self::interval(self.config.interval_cs));
            }
            State::Backup => {
                let cause = match self.master_address {
                    Some(master) => {
                        format!("no advert from master {master} for the master-down interval")
                    }
                    None => "no master heard for the master-down interval".into(),
                };
                self.become_master(now, &cause, &mut actions);
            }
            State::Initialize | State::Fault => self.deadline = None,
        }
        actions
    }

    /// A VRRP packet from `source` to `destination` with IP TTL / hop
    /// limit `ttl`. Invalid packets are counted by reason and dropped.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        source: IpAddr,
        destination: IpAddr,
        ttl: u8,
        bytes: &[u8],
    ) -> Vec<Action> {
        match self.check(source, destination, ttl, bytes) {
            Ok(Some(advert)) => self.handle_advert(now, source, &advert),
            Ok(None) => Vec::new(),
            Err(reason) => {
                *self.counters.rejected.entry(reason).or_default() += 1;
                Vec::new()
            }
        }
    }

    /// `Ok(None)`: not for us (another VRID), or ignored and counted
    /// (another address list).
    fn check(
        &mut self,
        source: IpAddr,
        destination: IpAddr,
        ttl: u8,
        bytes: &[u8],
    ) -> Result<Option<Advertisement>, RejectReason> {
        if ttl != VRRP_TTL {
            return Err(RejectReason::Ttl);
        }
        if source == self.config.local_address {
            // We never hear our own adverts (no multicast loop, raw
            // sockets see no outgoing packets): this one is forged.
            return Err(RejectReason::OwnAddress);
        }
        // VRID and version from the fixed header, before the checksum:
        // the two versions compute it differently, so a packet of the
        // other version must be counted as such, not as a bad checksum.
        let header = VrrpPacket::new_checked(bytes)?;
        if header.vrid() != self.config.vrid {
            self.counters.other_vrid += 1;
            return Ok(None);
        }
        let version = match self.config.version {
            Version::V2 => 2,
            Version::V3 => 3,
        };
        if header.version() != version {
            return Err(RejectReason::Version);
        }
        let advert = packet::parse(bytes, source, destination)?;
        if advert
            .addresses
            .iter()
            .any(|a| a.is_ipv4() != self.config.local_address.is_ipv4())
        {
            return Err(RejectReason::AddressList);
        }
        if self.config.version == Version::V2 {
            if advert.password != self.config.password {
                return Err(RejectReason::Auth);
            }
            if advert.interval_cs != self.config.interval_cs {
                return Err(RejectReason::Interval);
            }
        } else if advert.interval_cs == 0 {
            return Err(RejectReason::Interval);
        }
        let mut ours = self.config.addresses.clone();
        let mut theirs = advert.addresses.clone();
        ours.sort();
        theirs.sort();
        if ours != theirs {
            self.counters.address_mismatch += 1;
            return Ok(None);
        }
        self.counters.adverts_received += 1;
        Ok(Some(advert))
    }

    fn handle_advert(
        &mut self,
        now: Instant,
        source: IpAddr,
        advert: &Advertisement,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            State::Backup => {
                if advert.priority == 0 {
                    // The master is leaving: take over after Skew_Time only.
                    self.deadline = Some(now + self.skew_time());
                    self.master_address = Some(source);
                    return actions;
                }
                let lower = advert.priority < self.effective_priority;
                if lower && self.config.preempt {
                    let since = *self.lower_master_since.get_or_insert(now);
                    if now < since + self.config.preempt_delay {
                        // Tolerated for now: behave as if it were better.
                        self.follow(now, source, advert);
                    }
                    // Otherwise ignore it: the master-down timer preempts.
                    return actions;
                }
                self.lower_master_since = None;
                self.follow(now, source, advert);
            }
            State::Master => {
                if advert.priority == 0 {
                    self.send_advert(self.effective_priority, &mut actions);
                    self.deadline = Some(now + Self::interval(self.config.interval_cs));
                    return actions;
                }
                let wins = advert.priority > self.effective_priority
                    || (advert.priority == self.effective_priority
                        && source > self.config.local_address);
                if wins {
                    let cause = format!(
                        "higher-priority master {source} (priority {} > {})",
                        advert.priority, self.effective_priority
                    );
                    let cause = if advert.priority == self.effective_priority {
                        format!(
                            "master {source} with equal priority {} and a higher address",
                            advert.priority
                        )
                    } else {
                        cause
                    };
                    self.transition(now, State::Backup, &cause, &mut actions);
                    self.follow(now, source, advert);
                }
            }
            State::Initialize | State::Fault => {}
        }
        actions
    }

    /// Accepts `source` as master: learn its interval (v3) and restart the
    /// master-down timer.
    fn follow(&mut self, now: Instant, source: IpAddr, advert: &Advertisement) {
        if self.config.version == Version::V3 {
            self.master_interval_cs = advert.interval_cs;
        }
        self.master_address = Some(source);
        self.deadline = Some(now + self.master_down_interval());
    }

    /// Tracking changed: the effective priority is the configured one plus
    /// `adjustment` (the sum of the weights of failed or healthy tracked
    /// objects, as keepalived computes it); `fault` is a weight-less failure.
    pub fn set_tracking(&mut self, now: Instant, adjustment: i32, fault: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        self.effective_priority = if self.config.priority == 255 {
            255
        } else {
            i32::from(self.config.priority)
                .saturating_add(adjustment)
                .clamp(1, 254) as u8
        };
        let was_fault = self.fault;
        self.fault = fault;
        match (was_fault, fault, self.state) {
            (false, true, State::Initialize) => {}
            (false, true, _) => {
                if self.state == State::Master {
                    // Let the backups take over at once.
                    self.send_advert(0, &mut actions);
                }
                self.transition(
                    now,
                    State::Fault,
                    "tracked object without weight failed",
                    &mut actions,
                );
                self.deadline = None;
            }
            (true, false, State::Fault) => {
                self.become_backup(now, "tracked objects recovered", &mut actions)
            }
            _ => {}
        }
        actions
    }

    /// Graceful stop: a master announces priority 0 so a backup takes over
    /// after only its Skew_Time.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == State::Master {
            self.send_advert(0, &mut actions);
        }
        if self.state != State::Initialize {
            self.transition(now, State::Initialize, "shutdown", &mut actions);
        }
        self.deadline = None;
        actions
    }

    fn become_master(&mut self, now: Instant, cause: &str, actions: &mut Vec<Action>) {
        self.send_advert(self.effective_priority, actions);
        self.transition(now, State::Master, cause, actions);
        self.lower_master_since = None;
        self.deadline = Some(now + Self::interval(self.config.interval_cs));
    }

    fn become_backup(&mut self, now: Instant, cause: &str, actions: &mut Vec<Action>) {
        self.master_interval_cs = self.config.interval_cs;
        self.transition(now, State::Backup, cause, actions);
        self.deadline = Some(now + self.master_down_interval());
    }

    fn transition(&mut self, now: Instant, to: State, cause: &str, actions: &mut Vec<Action>) {
        if self.state == to {
            return;
        }
        actions.push(Action::Transition {
            from: self.state,
            to,
            cause: cause.to_owned(),
        });
        if to != State::Backup {
            self.master_address = None;
        }
        self.state = to;
        self.in_state_since = now;
        self.last_cause = cause.to_owned();
    }

    fn send_advert(&mut self, priority: u8, actions: &mut Vec<Action>) {
        self.counters.adverts_sent += 1;
        actions.push(Action::Send(Advertisement {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            interval_cs: self.config.interval_cs,
            password: self.config.password,
            addresses: self.config.addresses.clone(),
        }));
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
