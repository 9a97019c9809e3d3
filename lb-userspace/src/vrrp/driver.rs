//! The VRRP driver: the IO around the sans-IO state machines. It owns the
//! raw sockets, adds and removes the VIPs (rtnetlink), announces them
//! (gratuitous ARP), flips the data plane's forwarding switch, runs the
//! tracked checks and the notify hooks. Timers are the machines' deadlines,
//! driven by the daemon's loop.
use crate::{
    config::vrrp::VrrpConfig,
    dataplane::neighbour::{self, InterfaceInfo},
    vrrp::{
        machine::{Action, InstanceConfig, Machine, State},
        packet::{password_bytes, IPPROTO_VRRP, VRRP_TTL},
        tracking::{priority_effect, Observation, Tracked},
        VrrpStatus,
    },
};
use anyhow::Context;
use aya::maps::{Array, MapData};
use futures::TryStreamExt;
use lb_common::LbSettings;
use rtnetlink::packet_route::{address::AddressAttribute, link::LinkFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::{
    collections::VecDeque,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    path::Path,
    time::{Duration, Instant},
};
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinHandle};
use tracing::{error, info, warn};

const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
const ALL_NODES_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// DSCP CS6, as keepalived marks its adverts.
const TOS_NETWORK_CONTROL: u32 = 0xc0;
const POLL_TRACKED: Duration = Duration::from_millis(500);

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
            let tracked = driver.start_trackers(index, config, &events);
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

    fn start_trackers(
        &mut self,
        index: usize,
        config: &VrrpConfig,
        events: &mpsc::Sender<Event>,
    ) -> Vec<Tracked> {
        let mut tracked = Vec::new();
        for t in &config.track_script {
            let object = tracked.len();
            tracked.push(Tracked::new(
                &t.script.name,
                t.weight,
                t.script.rise,
                t.script.fall,
            ));
            let (script, interval, timeout) =
                (t.script.script.clone(), t.script.interval, t.script.timeout);
            self.tasks.push(tokio::spawn(poll(
                index,
                object,
                interval,
                events.clone(),
                move || {
                    let script = script.clone();
                    async move { run_script(&script, timeout).await }
                },
            )));
        }
        for t in &config.track_interface {
            let object = tracked.len();
            tracked.push(Tracked::new(&t.name, t.weight, 1, 1));
            let (handle, name) = (self.handle.clone(), t.name.clone());
            self.tasks.push(tokio::spawn(poll(
                index,
                object,
                POLL_TRACKED,
                events.clone(),
                move || {
                    let (handle, name) = (handle.clone(), name.clone());
                    async move { link_state(&handle, &name).await }
                },
            )));
        }
        for t in &config.track_process {
            let object = tracked.len();
            tracked.push(Tracked::new(&t.name, t.weight, 1, 1));
            let name = t.name.clone();
            self.tasks.push(tokio::spawn(poll(
                index,
                object,
                POLL_TRACKED,
                events.clone(),
                move || {
                    let name = name.clone();
                    async move { process_running(&name) }
                },
            )));
        }
        for t in &config.track_file {
            let object = tracked.len();
            tracked.push(Tracked::file(t.path.display().to_string(), t.weight));
            let path = t.path.clone();
            self.tasks.push(tokio::spawn(poll(
                index,
                object,
                POLL_TRACKED,
                events.clone(),
                move || {
                    let path = path.clone();
                    async move { file_value(&path) }
                },
            )));
        }
        tracked
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

/// `address` with the interface as scope when it needs one (link-local
/// and link-scope multicast IPv6).
fn scoped(address: IpAddr, ifindex: u32) -> SocketAddr {
    match address {
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.segments()[0] == 0xff02 => {
            SocketAddr::V6(SocketAddrV6::new(v6, 0, 0, ifindex))
        }
        other => SocketAddr::new(other, 0),
    }
}

fn raw_socket(interface: &InterfaceInfo, ipv4: bool, protocol: i32) -> anyhow::Result<Socket> {
    let domain = if ipv4 { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(protocol)))
        .context("raw socket (needs CAP_NET_RAW)")?;
    socket.set_nonblocking(true)?;
    socket.bind_device(Some(interface.name.as_bytes()))?;
    Ok(socket)
}

/// Receives every VRRP packet on the interface. Not bound to an address:
/// a raw socket bound to one only receives packets sent *to* it, which
/// multicast adverts are not.
fn open_receiver(
    config: &VrrpConfig,
    interface: &InterfaceInfo,
    ipv4: bool,
) -> anyhow::Result<Socket> {
    let socket = raw_socket(interface, ipv4, i32::from(IPPROTO_VRRP))?;
    let multicast = config.unicast_peer.is_empty();
    if ipv4 {
        if multicast {
            socket
                .join_multicast_v4_n(
                    &GROUP_V4,
                    &socket2::InterfaceIndexOrAddress::Index(interface.index),
                )
                .context("joining 224.0.0.18")?;
        }
    } else {
        // IPv6 raw sockets deliver no header: ask for the hop limit and the
        // destination as control messages.
        use nix::sys::socket::{setsockopt, sockopt};
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        if multicast {
            socket
                .join_multicast_v6(&GROUP_V6, interface.index)
                .context("joining ff02::12")?;
        }
    }
    Ok(socket)
}

/// Sends adverts from `local` with TTL / hop limit 255 and keepalived's
/// TOS. It reads nothing: a socket filter drops all input.
fn open_sender(interface: &InterfaceInfo, local: IpAddr) -> anyhow::Result<Socket> {
    let socket = raw_socket(interface, local.is_ipv4(), i32::from(IPPROTO_VRRP))?;
    match local {
        IpAddr::V4(v4) => {
            socket.set_ttl_v4(u32::from(VRRP_TTL))?;
            socket.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
            socket.set_multicast_loop_v4(false)?;
            socket.set_tos_v4(TOS_NETWORK_CONTROL)?;
            socket.set_multicast_if_v4(&v4)?;
        }
        IpAddr::V6(_) => {
            socket.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
            socket.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
            socket.set_multicast_loop_v6(false)?;
            socket.set_tclass_v6(TOS_NETWORK_CONTROL)?;
            socket
                .set_multicast_if_v6(interface.index)
                .context("IPV6_MULTICAST_IF")?;
            // The link-local address may still be tentative (duplicate
            // address detection) when lbd starts at boot.
            socket.set_freebind_v6(true)?;
        }
    }
    socket
        .bind(&SockAddr::from(scoped(local, interface.index)))
        .with_context(|| format!("binding the VRRP send socket to {local}"))?;
    // Classic BPF "ret #0": accept zero bytes of every packet.
    socket.attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])?;
    Ok(socket)
}

/// Unsolicited neighbour advertisements to all nodes, hop limit 255 (the
/// kernel fills in the ICMPv6 checksum).
fn send_neighbour_advertisements(
    interface: &InterfaceInfo,
    messages: &[Vec<u8>],
) -> anyhow::Result<()> {
    let socket = raw_socket(interface, false, libc::IPPROTO_ICMPV6)?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_multicast_if_v6(interface.index)?;
    let target = SockAddr::from(scoped(IpAddr::V6(ALL_NODES_V6), interface.index));
    for message in messages {
        socket.send_to(message, &target)?;
    }
    Ok(())
}

/// Reads VRRP packets from the raw socket: IPv4 ones with their header,
/// IPv6 ones with hop limit and destination from control messages.
async fn read_packets(
    instance: usize,
    socket: AsyncFd<Socket>,
    local: IpAddr,
    events: mpsc::Sender<Event>,
) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let Ok(mut guard) = socket.readable().await else {
            return;
        };
        let received = guard.try_io(|inner| {
            if local.is_ipv4() {
                receive_v4(inner.get_ref(), &mut buffer)
            } else {
                receive_v6(inner.get_ref(), &mut buffer)
            }
        });
        let Ok(Ok(Some((source, destination, ttl, range)))) = received else {
            continue;
        };
        if source == local {
            continue; // our own advert (unicast to ourselves or looped)
        }
        let bytes = buffer[range].to_vec();
        let event = Event::Packet {
            instance,
            source,
            destination,
            ttl,
            bytes,
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

type Received = Option<(IpAddr, IpAddr, u8, std::ops::Range<usize>)>;

fn receive_v4(socket: &Socket, buffer: &mut [u8]) -> std::io::Result<Received> {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout; recv only writes.
    let uninit = unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) };
    let (len, _) = socket.recv_from(uninit)?;
    let packet = &buffer[..len];
    Ok(split_ipv4(packet)
        .map(|(source, destination, ttl, header_len)| (source, destination, ttl, header_len..len)))
}

fn receive_v6(socket: &Socket, buffer: &mut [u8]) -> std::io::Result<Received> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buffer)];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let message = recvmsg::<SockaddrIn6>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let len = message.bytes;
    let Some(source) = message.address.map(|a| IpAddr::V6(a.ip())) else {
        return Ok(None);
    };
    let mut destination = None;
    let mut hop_limit = None;
    for cmsg in message.cmsgs().map_err(std::io::Error::from)? {
        match cmsg {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)))
            }
            ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(limit).ok(),
            _ => {}
        }
    }
    Ok(match (destination, hop_limit) {
        (Some(destination), Some(hop_limit)) => Some((source, destination, hop_limit, 0..len)),
        _ => None,
    })
}

/// (source, destination, TTL, header length) of an IPv4 packet.
fn split_ipv4(packet: &[u8]) -> Option<(IpAddr, IpAddr, u8, usize)> {
    let header_len = usize::from(*packet.first()? & 0x0f) * 4;
    if packet.len() < header_len || header_len < 20 || packet[9] != IPPROTO_VRRP {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((
        IpAddr::V4(source),
        IpAddr::V4(destination),
        packet[8],
        header_len,
    ))
}

/// Calls `check` every `interval` and reports each result.
async fn poll<F, Fut>(
    instance: usize,
    object: usize,
    interval: Duration,
    events: mpsc::Sender<Event>,
    check: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Observation>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let observation = check().await;
        if events
            .send(Event::Tracked {
                instance,
                object,
                observation,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn run_script(script: &str, timeout: Duration) -> Observation {
    let child = tokio::process::Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return Observation::Down;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Observation::Up,
        _ => Observation::Down,
    }
}

async fn link_state(handle: &rtnetlink::Handle, name: &str) -> Observation {
    match crate::dataplane::neighbour::link_by_name(handle, name).await {
        Ok(Some(link))
            if link.header.flags.contains(LinkFlags::Up)
                && link.header.flags.contains(LinkFlags::LowerUp) =>
        {
            Observation::Up
        }
        _ => Observation::Down,
    }
}

fn process_running(name: &str) -> Observation {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Observation::Down;
    };
    let running = entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name)
    });
    if running {
        Observation::Up
    } else {
        Observation::Down
    }
}

/// A missing or unreadable file counts as 0, as in keepalived.
fn file_value(path: &Path) -> Observation {
    let value = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Observation::Value(value)
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
