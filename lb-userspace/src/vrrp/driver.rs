//! The VRRP driver: the IO around the sans-IO state machines. It owns the
//! raw sockets (opened in `sockets`), adds and removes the VIPs
//! (rtnetlink), announces them (gratuitous ARP), flips the data plane's
//! forwarding switch, starts the tracked checks (`trackers`) and runs the
//! notify hooks. Timers are the machines' deadlines, driven by the
//! daemon's loop.
use super::{
    machine::{Action, InstanceConfig, Machine, State},
    packet::password_bytes,
    sockets::{
        open_receiver, open_sender, read_packets, scoped, send_neighbour_advertisements, GROUP_V4,
        GROUP_V6,
    },
    trackers,
    tracking::{priority_effect, Observation, Tracked},
    VrrpStatus,
};
use crate::{
    config::vrrp::VrrpConfig,
    dataplane::neighbour::{self, InterfaceInfo},
};
use anyhow::Context;
use aya::maps::{Array, MapData};
use futures::TryStreamExt;
use lb_common::LbSettings;
use rtnetlink::packet_route::address::AddressAttribute;
use socket2::{SockAddr, Socket};
use std::{
    collections::VecDeque,
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinHandle};
use tracing::{error, info, warn};

/// Something the driver's background tasks observed.
pub enum Event {
    Packet {
        instance: usize,
        source: IpAddr,
        destination: IpAddr,
        ttl: u8,
        bytes: Vec<u8>,
    },
    Tracked {
        instance: usize,
        object: usize,
        observation: Observation,
    },
}

struct Instance {
    config: VrrpConfig,
    machine: Machine,
    /// Bound to our address, so adverts leave with it as source.
    sender: Socket,
    local: IpAddr,
    tracked: Vec<Tracked>,
    /// Pending gratuitous-ARP bursts while master.
    garp_due: VecDeque<Instant>,
}

pub struct VrrpDriver {
    instances: Vec<Instance>,
    handle: rtnetlink::Handle,
    interface: InterfaceInfo,
    settings: Array<MapData, LbSettings>,
    forwarding: bool,
    notify: Option<mpsc::UnboundedSender<(std::path::PathBuf, Vec<String>)>>,
    notify_worker: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for VrrpDriver {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(&self.notify_worker) {
            task.abort();
        }
    }
}

impl VrrpDriver {
    /// Opens the sockets, starts the readers and trackers, removes any VIP
    /// a previous run left (we start as backup, not forwarding) and starts
    /// the state machines.
    pub async fn start(
        configs: &[VrrpConfig],
        interface: &InterfaceInfo,
        handle: rtnetlink::Handle,
        settings_pin: &Path,
        events: mpsc::Sender<Event>,
    ) -> anyhow::Result<Self> {
        let settings_data = MapData::from_pin(settings_pin).context("opening lb_settings")?;
        let settings = Array::try_from(aya::maps::Map::Array(settings_data))?;
        let (notify, notify_rx) = mpsc::unbounded_channel();
        let mut driver = VrrpDriver {
            instances: Vec::new(),
            handle,
            interface: interface.clone(),
            settings,
            forwarding: true,
            notify: Some(notify),
            notify_worker: Some(tokio::spawn(notify_worker(notify_rx))),
            tasks: Vec::new(),
        };
        driver.set_forwarding(false)?;
        let now = Instant::now();
        for (index, config) in configs.iter().enumerate() {
            let ipv4 = config.virtual_ipaddress.first().is_none_or(IpAddr::is_ipv4);
            let local = match (config.unicast_src_ip, ipv4) {
                (Some(a), _) => a,
                (None, true) => {
                    IpAddr::V4(interface.ipv4.first().map(|(a, _)| *a).with_context(|| {
                        format!(
                            "vrrp {}: {} has no IPv4 address",
                            config.name, interface.name
                        )
                    })?)
                }
                (None, false) => IpAddr::V6(interface.link_local().with_context(|| {
                    format!(
                        "vrrp {}: {} has no IPv6 link-local address",
                        config.name, interface.name
                    )
                })?),
            };
            let receiver = open_receiver(config, interface, ipv4).context("VRRP receive socket")?;
            // SAFETY: the AsyncFd owns the socket, so its descriptor stays
            // open and the same for the AsyncFd's whole life.
            let receiver = unsafe { AsyncFd::register(receiver) }.map_err(|e| e.into_parts().1)?;
            driver.tasks.push(tokio::spawn(read_packets(
                index,
                receiver,
                local,
                events.clone(),
            )));
            let sender = open_sender(interface, local).context("VRRP send socket")?;
            let (tracked, tasks) = trackers::start(index, config, &driver.handle, &events);
            driver.tasks.extend(tasks);
            driver.remove_vips(config).await;
            let machine = Machine::new(
                InstanceConfig {
                    version: config.version,
                    vrid: config.vrid,
                    priority: config.priority,
                    interval_cs: config.advert_int_cs,
                    preempt: config.preempt,
                    preempt_delay: config.preempt_delay,
                    password: config.auth_pass.as_deref().map(password_bytes),
                    local_address: local,
                    addresses: config.virtual_ipaddress.clone(),
                },
                now,
            );
            driver.instances.push(Instance {
                config: config.clone(),
                machine,
                sender,
                local,
                tracked,
                garp_due: VecDeque::new(),
            });
        }
        for index in 0..driver.instances.len() {
            let actions = driver.instances[index].machine.start(now);
            driver.run_actions(index, actions).await;
        }
        Ok(driver)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .flat_map(|i| {
                i.machine
                    .next_deadline()
                    .into_iter()
                    .chain(i.garp_due.front().copied())
            })
            .min()
    }

    pub async fn handle_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Packet {
                instance,
                source,
                destination,
                ttl,
                bytes,
            } => {
                let actions = self.instances[instance].machine.handle_packet(
                    now,
                    source,
                    destination,
                    ttl,
                    &bytes,
                );
                self.run_actions(instance, actions).await;
            }
            Event::Tracked {
                instance,
                object,
                observation,
            } => {
                let entry = &mut self.instances[instance];
                if entry.tracked[object].observe(observation) {
                    let (adjust, fault) = priority_effect(&entry.tracked);
                    info!(vrrp = %entry.config.name, tracked = %entry.tracked[object].name, ?observation,
                        adjust, fault, "tracked object changed");
                    let actions = entry.machine.set_tracking(now, adjust, fault);
                    self.run_actions(instance, actions).await;
                }
            }
        }
    }

    pub async fn handle_timeouts(&mut self) {
        let now = Instant::now();
        for index in 0..self.instances.len() {
            let actions = self.instances[index].machine.handle_timeout(now);
            self.run_actions(index, actions).await;
            while self.instances[index]
                .garp_due
                .front()
                .is_some_and(|&t| t <= now)
            {
                self.instances[index].garp_due.pop_front();
                self.announce(index);
                let refresh = self.instances[index].config.garp.refresh;
                if !refresh.is_zero() && self.instances[index].garp_due.is_empty() {
                    self.instances[index].garp_due.push_back(now + refresh);
                }
            }
        }
    }

    /// Graceful stop: masters send priority 0 and give up their VIPs; the
    /// notify hooks still queued (STOP included) run before we return, for
    /// at most 10 s.
    pub async fn shutdown(&mut self) {
        let now = Instant::now();
        for index in 0..self.instances.len() {
            let actions = self.instances[index].machine.shutdown(now);
            self.run_actions(index, actions).await;
        }
        self.notify = None;
        if let Some(worker) = self.notify_worker.take() {
            if tokio::time::timeout(Duration::from_secs(10), worker)
                .await
                .is_err()
            {
                warn!("notify hooks still running at exit");
            }
        }
    }

    /// Each instance's state, to notice transitions cheaply.
    pub fn states(&self) -> Vec<State> {
        self.instances.iter().map(|i| i.machine.state()).collect()
    }

    pub fn status(&self) -> Vec<VrrpStatus> {
        let now = Instant::now();
        self.instances
            .iter()
            .map(|i| VrrpStatus {
                name: i.config.name.clone(),
                vrid: i.config.vrid,
                version: i.config.version,
                state: i.machine.state(),
                priority: i.config.priority,
                effective_priority: i.machine.effective_priority(),
                master: i.machine.master_address(),
                local_address: i.local,
                seconds_in_state: now.duration_since(i.machine.in_state_since()).as_secs_f64(),
                last_transition: i.machine.last_cause().to_owned(),
                counters: i.machine.counters().clone(),
            })
            .collect()
    }

    async fn run_actions(&mut self, index: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(advert) => self.send(index, &advert),
                Action::Transition { from, to, cause } => {
                    self.transition(index, from, to, &cause).await
                }
            }
        }
    }

    fn send(&self, index: usize, advert: &crate::vrrp::packet::Advertisement) {
        let instance = &self.instances[index];
        let destinations: Vec<IpAddr> =
            match (instance.config.unicast_peer.is_empty(), instance.local) {
                (true, IpAddr::V4(_)) => vec![IpAddr::V4(GROUP_V4)],
                (true, IpAddr::V6(_)) => vec![IpAddr::V6(GROUP_V6)],
                (false, _) => instance.config.unicast_peer.clone(),
            };
        for destination in destinations {
            // The v3 checksum covers the destination: one message each.
            let bytes = advert.emit(instance.local, destination);
            let target = SockAddr::from(scoped(destination, self.interface.index));
            if let Err(e) = instance.sender.send_to(&bytes, &target) {
                warn!(vrrp = %instance.config.name, %destination, "sending advert: {e}");
            }
        }
    }

    async fn transition(&mut self, index: usize, from: State, to: State, cause: &str) {
        let priority = self.instances[index].machine.effective_priority();
        let config = self.instances[index].config.clone();
        info!(vrrp = %config.name, ?from, ?to, priority, cause, "VRRP transition");
        if to == State::Master {
            // Forward first, then take the address, then announce it: no
            // moment where the VIP is here but packets are not forwarded.
            if let Err(e) = self.set_forwarding(true) {
                error!("enabling forwarding: {e:#}");
            }
            self.add_vips(&config).await;
            self.announce(index);
            let now = Instant::now();
            let garp = &config.garp;
            let due = &mut self.instances[index].garp_due;
            due.clear();
            if !garp.delay.is_zero() {
                due.push_back(now + garp.delay);
            } else if !garp.refresh.is_zero() {
                due.push_back(now + garp.refresh);
            }
        } else if from == State::Master {
            self.instances[index].garp_due.clear();
            self.remove_vips(&config).await;
            let others_master = self
                .instances
                .iter()
                .any(|i| i.machine.state() == State::Master);
            if let Err(e) = self.set_forwarding(others_master) {
                error!("disabling forwarding: {e:#}");
            }
        }
        if let Some(script) = &config.notify {
            let state = match to {
                State::Master => "MASTER",
                State::Backup => "BACKUP",
                State::Fault => "FAULT",
                State::Initialize => "STOP",
            };
            let args = vec![
                "INSTANCE".into(),
                config.name.clone(),
                state.into(),
                priority.to_string(),
            ];
            if let Some(queue) = &self.notify {
                let _ = queue.send((script.clone(), args));
            }
        }
    }

    fn set_forwarding(&mut self, on: bool) -> anyhow::Result<()> {
        if self.forwarding == on {
            return Ok(());
        }
        // Read-modify-write: the other fields are the configuration's.
        let mut settings: LbSettings = self.settings.get(&0, 0)?;
        settings.forwarding = u8::from(on);
        self.settings.set(0, settings, 0)?;
        self.forwarding = on;
        info!(forwarding = on, "data plane switched");
        Ok(())
    }

    /// Gratuitous ARP (IPv4) or unsolicited neighbour advertisements
    /// (IPv6) for every VIP of the instance, `repeat` times.
    fn announce(&self, index: usize) {
        let instance = &self.instances[index];
        let repeat = instance.config.garp.repeat.max(1);
        let mut frames = Vec::new();
        let mut advertisements = Vec::new();
        for vip in &instance.config.virtual_ipaddress {
            for _ in 0..repeat {
                match vip {
                    IpAddr::V4(vip) => {
                        frames.push(neighbour::arp_request(self.interface.mac, *vip, *vip))
                    }
                    IpAddr::V6(vip) => {
                        advertisements.push(neighbour::unsolicited_na(self.interface.mac, *vip))
                    }
                }
            }
        }
        if !frames.is_empty() {
            if let Err(e) = neighbour::send_frames(&self.interface, &frames) {
                warn!(vrrp = %instance.config.name, "gratuitous ARP: {e}");
            }
        }
        if !advertisements.is_empty() {
            if let Err(e) = send_neighbour_advertisements(&self.interface, &advertisements) {
                warn!(vrrp = %instance.config.name, "unsolicited NA: {e:#}");
            }
        }
    }

    async fn add_vips(&self, config: &VrrpConfig) {
        for vip in &config.virtual_ipaddress {
            let prefix = if vip.is_ipv4() { 32 } else { 128 };
            let result = self
                .handle
                .address()
                .add(self.interface.index, *vip, prefix)
                .execute()
                .await;
            match result {
                Ok(()) => info!(%vip, interface = %self.interface.name, "VIP added"),
                Err(e) if e.to_string().contains("File exists") => {}
                Err(e) => error!(%vip, "adding VIP: {e}"),
            }
        }
    }

    async fn remove_vips(&self, config: &VrrpConfig) {
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.interface.index)
            .execute();
        let mut doomed = Vec::new();
        while let Ok(Some(message)) = addresses.try_next().await {
            let matches = message.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Address(ip) if config.virtual_ipaddress.contains(ip))
            });
            let full = message.header.prefix_len == 32 || message.header.prefix_len == 128;
            if matches && full {
                doomed.push(message);
            }
        }
        for message in doomed {
            if let Err(e) = self.handle.address().del(message).execute().await {
                error!("removing VIP: {e}");
            } else {
                info!(interface = %self.interface.name, "VIP removed");
            }
        }
    }
}

/// Runs notify hooks one after another, in the order of the transitions,
/// without ever blocking the state machines.
async fn notify_worker(mut jobs: mpsc::UnboundedReceiver<(std::path::PathBuf, Vec<String>)>) {
    while let Some((script, args)) = jobs.recv().await {
        let run = tokio::process::Command::new(&script)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                warn!(script = %script.display(), ?args, %status, "notify hook failed")
            }
            Ok(Err(e)) => warn!(script = %script.display(), "notify hook could not run: {e}"),
            Err(_) => warn!(script = %script.display(), "notify hook timed out after 30 s"),
        }
    }
}
