//! Turns the desired state (services, backends, resolved MACs) into map
//! writes. It owns id allocation and the double-buffered Maglev tables, and
//! orders its writes so that the XDP program never sees a half-built state:
//! backends are written before a table refers to them, a table is written
//! into the inactive half and published by one service-map update, and a
//! backend is deactivated only once no published table refers to it.
use super::maglev::{build_table, MaglevBackend};
use lb_common::{
    BackendInfo, LbSettings, ServiceInfo, ServiceKey, BACKEND_ACTIVE, FAMILY_IPV4, FAMILY_IPV6,
    MODE_DSR, NO_BACKEND,
};
use serde::Serialize;
use std::{
    collections::{BTreeMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

/// The 16-byte address field and family tag the maps use for `ip`.
pub fn map_address(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(v4) => (lb_common::ipv4_addr_bytes(v4.octets()), FAMILY_IPV4),
        IpAddr::V6(v6) => (v6.octets(), FAMILY_IPV6),
    }
}

/// The address a map field holds (the inverse of [`map_address`]).
pub fn address_from_map(addr: [u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_IPV6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    }
}

/// Data-path knobs that come from the configuration, not from VRRP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunables {
    /// `fullnat` source addresses; `None` = fullnat off for that family.
    pub snat_v4: Option<Ipv4Addr>,
    pub snat_v6: Option<Ipv6Addr>,
    /// Inclusive source port range for `fullnat`.
    pub snat_ports: (u16, u16),
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub udp_timeout: Duration,
    /// Some service is `nat` or `fullnat` (see `LbSettings::reply_lookup`).
    pub reply_lookup: bool,
}

impl Default for Tunables {
    /// IPVS's defaults for the timeouts (tcp 900 s, tcpfin 120 s, udp
    /// 300 s); source ports below Linux's default ephemeral range.
    fn default() -> Self {
        Tunables {
            snat_v4: None,
            snat_v6: None,
            snat_ports: crate::config::DEFAULT_SNAT_PORTS,
            tcp_timeout: Duration::from_secs(900),
            tcp_fin_timeout: Duration::from_secs(120),
            udp_timeout: Duration::from_secs(300),
            reply_lookup: false,
        }
    }
}

impl Tunables {
    /// The `lb_settings` value for these knobs.
    pub fn settings(&self, if_mac: [u8; 6], forwarding: bool) -> LbSettings {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        LbSettings {
            if_mac,
            forwarding: u8::from(forwarding),
            reply_lookup: u8::from(self.reply_lookup),
            snat_v4: self
                .snat_v4
                .map_or([0; 16], |a| lb_common::ipv4_addr_bytes(a.octets())),
            snat_v6: self.snat_v6.map_or([0; 16], |a| a.octets()),
            snat_port_min: self.snat_ports.0,
            snat_port_max: self.snat_ports.1,
            _pad2: [0; 4],
            tcp_timeout_ns: nanos(self.tcp_timeout),
            tcp_fin_timeout_ns: nanos(self.tcp_fin_timeout),
            udp_timeout_ns: nanos(self.udp_timeout),
        }
    }
}

/// The map operations the programmer needs; implemented by the real maps
/// and, in tests, by a recorder.
pub trait MapWriter {
    type Error: std::error::Error + Send + Sync + 'static;
    fn set_settings(&mut self, settings: &LbSettings) -> Result<(), Self::Error>;
    fn set_backend(&mut self, id: u32, info: &BackendInfo) -> Result<(), Self::Error>;
    fn set_maglev_slot(&mut self, index: u32, backend_id: u32) -> Result<(), Self::Error>;
    fn set_service(&mut self, key: &ServiceKey, info: &ServiceInfo) -> Result<(), Self::Error>;
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), Self::Error>;
    fn reset_service_stats(&mut self, id: u32) -> Result<(), Self::Error>;
    fn reset_backend_stats(&mut self, id: u32) -> Result<(), Self::Error>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub mode: u8,
    pub backends: Vec<DesiredBackend>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub address: SocketAddr,
    /// Effective weight (slow start applied).
    pub weight: u32,
    /// `None` until the neighbour is resolved; in `dsr` such a backend gets
    /// no slot (the NAT modes find the next hop with `bpf_fib_lookup`).
    pub mac: Option<[u8; 6]>,
    pub state: BackendState,
}

/// What a backend may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// New flows (by weight) and its existing flows.
    #[default]
    Serving,
    /// Only its existing flows: no Maglev slot, still active.
    Draining,
    /// Nothing: inactive, so its flows re-hash to other backends.
    Down,
}

impl DesiredService {
    pub fn key(&self) -> ServiceKey {
        let (addr, family) = map_address(self.vip);
        ServiceKey {
            addr,
            port: self.port,
            proto: self.proto,
            family,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError<E: std::error::Error + 'static> {
    #[error("more than {0} services")]
    TooManyServices(u32),
    #[error("more than {0} backends")]
    TooManyBackends(u32),
    #[error("writing a map: {0}")]
    Map(#[source] E),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

struct ServiceSlot {
    id: u32,
    /// Which half of the service's Maglev space is published.
    active_half: u32,
    name: String,
    mode: u8,
}

struct BackendSlot {
    id: u32,
    generation: u32,
    info: BackendInfo,
    weight: u32,
}

/// What is programmed, for `lbd status` (names and weights are not in the
/// maps).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    pub services: Vec<SnapshotService>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SnapshotService {
    pub id: u32,
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    /// `lb_common::MODE_*`.
    #[serde(default)]
    pub mode: u8,
    pub backends: Vec<SnapshotBackend>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SnapshotBackend {
    pub id: u32,
    pub address: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
    pub mac: Option<[u8; 6]>,
    /// Slots this backend owns in the published Maglev table.
    pub slots: u32,
}

pub struct Programmer {
    ring_size: u32,
    max_services: u32,
    max_backends: u32,
    services: BTreeMap<ServiceKey, ServiceSlot>,
    backends: BTreeMap<(ServiceKey, SocketAddr), BackendSlot>,
    free_service_ids: VecDeque<u32>,
    /// FIFO, so that a freed id is reused as late as possible.
    free_backend_ids: VecDeque<u32>,
    next_generation: u32,
    /// What each service id's two Maglev halves hold in the map (all zero
    /// when created), so that publishing writes only the slots that change.
    written_halves: BTreeMap<u32, [Vec<u32>; 2]>,
    /// What each service was last programmed from: unchanged ones are
    /// skipped, so one backend's change rebuilds only its service's table.
    programmed: BTreeMap<ServiceKey, DesiredService>,
    snapshot: Snapshot,
}

impl Programmer {
    pub fn new(ring_size: u32, max_services: u32, max_backends: u32) -> Self {
        Programmer {
            ring_size,
            max_services,
            max_backends,
            services: BTreeMap::new(),
            backends: BTreeMap::new(),
            free_service_ids: (0..max_services).collect(),
            free_backend_ids: (0..max_backends).collect(),
            next_generation: 1,
            written_halves: BTreeMap::new(),
            programmed: BTreeMap::new(),
            snapshot: Snapshot::default(),
        }
    }

    /// Takes over maps a previous lbd programmed: its service ids and
    /// published halves, and its backends' ids and generations, so that
    /// connection-table entries it made stay valid once this programmer
    /// applies the (same) configuration. `services` and `backends` are the
    /// maps' contents, by key and by id.
    pub fn adopt(
        &mut self,
        services: &[(ServiceKey, ServiceInfo)],
        backends: &[(u32, BackendInfo)],
    ) {
        let ring = self.ring_size.max(1);
        for (key, info) in services {
            self.free_service_ids.retain(|id| *id != info.id);
            self.services.insert(
                *key,
                ServiceSlot {
                    id: info.id,
                    active_half: (info.ring_offset / ring) % 2,
                    name: String::new(),
                    mode: info.mode,
                },
            );
            // What the halves hold is unknown: a value no slot can have
            // makes the first publish write every slot.
            self.written_halves.insert(
                info.id,
                [
                    vec![u32::MAX - 1; ring as usize],
                    vec![u32::MAX - 1; ring as usize],
                ],
            );
        }
        for (id, info) in backends {
            self.next_generation = self
                .next_generation
                .max(info.generation.wrapping_add(1).max(1));
            if info.flags & BACKEND_ACTIVE == 0 && info.generation == 0 {
                continue;
            }
            let Some((key, _)) = services.iter().find(|(_, s)| s.id == info.service_id) else {
                continue;
            };
            if info.flags & BACKEND_ACTIVE == 0 {
                continue; // retired by the previous daemon: its id is free
            }
            let address = SocketAddr::new(address_from_map(info.addr, info.family), info.port);
            self.free_backend_ids.retain(|free| free != id);
            self.backends.insert(
                (*key, address),
                BackendSlot {
                    id: *id,
                    generation: info.generation,
                    info: *info,
                    weight: 0,
                },
            );
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The interface MAC (source of `dsr` frames), whether this node
    /// forwards (VRRP master, or no VRRP at all) and the data-path knobs.
    pub fn set_settings<W: MapWriter>(
        &mut self,
        maps: &mut W,
        mac: [u8; 6],
        forwarding: bool,
        tunables: &Tunables,
    ) -> Result<(), ProgramError<W::Error>> {
        maps.set_settings(&tunables.settings(mac, forwarding))
            .map_err(ProgramError::Map)
    }

    /// Makes the maps describe `desired`, touching only what differs.
    pub fn apply<W: MapWriter>(
        &mut self,
        maps: &mut W,
        desired: &[DesiredService],
    ) -> Result<(), ProgramError<W::Error>> {
        let wanted: BTreeMap<ServiceKey, &DesiredService> =
            desired.iter().map(|s| (s.key(), s)).collect();

        // Unpublish removed services first: their traffic passes from now on.
        let removed: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in &removed {
            maps.remove_service(key).map_err(ProgramError::Map)?;
        }
        for key in &removed {
            self.retire_backends(maps, key, &[])?;
            if let Some(slot) = self.services.remove(key) {
                self.free_service_ids.push_back(slot.id);
            }
            self.programmed.remove(key);
        }

        let mut snapshot = Snapshot::default();
        for (key, service) in &wanted {
            let previous = self
                .services
                .get(key)
                .and_then(|slot| self.snapshot.services.iter().find(|s| s.id == slot.id));
            let entry = match previous {
                Some(previous) if self.programmed.get(key) == Some(*service) => previous.clone(),
                _ => {
                    let fresh = self.apply_service(maps, key, service)?;
                    self.programmed.insert(*key, (*service).clone());
                    fresh
                }
            };
            snapshot.services.push(entry);
        }
        self.snapshot = snapshot;
        Ok(())
    }

    fn apply_service<W: MapWriter>(
        &mut self,
        maps: &mut W,
        key: &ServiceKey,
        service: &DesiredService,
    ) -> Result<SnapshotService, ProgramError<W::Error>> {
        if !self.services.contains_key(key) {
            let id = self
                .free_service_ids
                .pop_front()
                .ok_or(ProgramError::TooManyServices(self.max_services))?;
            maps.reset_service_stats(id).map_err(ProgramError::Map)?;
            self.services.insert(
                *key,
                ServiceSlot {
                    id,
                    active_half: 1,
                    name: service.name.clone(),
                    mode: service.mode,
                },
            );
        }

        // 1. Backends exist (and are current) before any table names them.
        let mut ids = Vec::with_capacity(service.backends.len());
        for backend in &service.backends {
            ids.push(self.upsert_backend(maps, key, backend)?);
        }

        // 2. Build and publish the new table.
        let usable: Vec<(usize, MaglevBackend)> = service
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                (b.mac.is_some() || service.mode != MODE_DSR)
                    && b.weight > 0
                    && b.state == BackendState::Serving
            })
            .map(|(i, b)| {
                (
                    i,
                    MaglevBackend {
                        identity: b.address.to_string(),
                        weight: b.weight,
                    },
                )
            })
            .collect();
        let maglev: Vec<MaglevBackend> = usable.iter().map(|(_, b)| b.clone()).collect();
        let table = build_table(&maglev, self.ring_size);
        let mut slot_counts = vec![0u32; service.backends.len()];
        let Some(slot) = self.services.get_mut(key) else {
            return Err(ProgramError::Internal(
                "service slot vanished while programming",
            ));
        };
        let half = 1 - slot.active_half;
        let offset = (slot.id * 2 + half) * self.ring_size;
        let any_usable = !usable.is_empty();
        let ring = self.ring_size as usize;
        let written = &mut self
            .written_halves
            .entry(slot.id)
            .or_insert_with(|| [vec![0; ring], vec![0; ring]])[half as usize];
        for (i, &entry) in table.iter().enumerate() {
            let backend_id = if entry == NO_BACKEND {
                NO_BACKEND
            } else {
                let desired_index = usable[entry as usize].0;
                slot_counts[desired_index] += 1;
                ids[desired_index]
            };
            if written[i] != backend_id {
                maps.set_maglev_slot(offset + i as u32, backend_id)
                    .map_err(ProgramError::Map)?;
                written[i] = backend_id;
            }
        }
        slot.active_half = half;
        slot.name = service.name.clone();
        slot.mode = service.mode;
        let info = ServiceInfo {
            id: slot.id,
            ring_offset: offset,
            ring_size: if any_usable { self.ring_size } else { 0 },
            mode: service.mode,
            _pad: [0; 3],
        };
        let service_id = slot.id;
        maps.set_service(key, &info).map_err(ProgramError::Map)?;

        // 3. Only now retire backends that left the service.
        let keep: Vec<SocketAddr> = service.backends.iter().map(|b| b.address).collect();
        self.retire_backends(maps, key, &keep)?;

        Ok(SnapshotService {
            id: service_id,
            name: service.name.clone(),
            vip: service.vip,
            port: service.port,
            proto: service.proto,
            mode: service.mode,
            backends: service
                .backends
                .iter()
                .zip(&ids)
                .zip(&slot_counts)
                .map(|((b, &id), &slots)| SnapshotBackend {
                    id,
                    address: b.address,
                    weight: b.weight,
                    state: b.state,
                    mac: b.mac,
                    slots,
                })
                .collect(),
        })
    }

    fn upsert_backend<W: MapWriter>(
        &mut self,
        maps: &mut W,
        service: &ServiceKey,
        backend: &DesiredBackend,
    ) -> Result<u32, ProgramError<W::Error>> {
        let service_id = self.services[service].id;
        let (addr, family) = map_address(backend.address.ip());
        let info_for = |generation: u32| BackendInfo {
            addr,
            mac: backend.mac.unwrap_or([0; 6]),
            port: backend.address.port(),
            family,
            flags: if backend.state == BackendState::Down {
                0
            } else {
                BACKEND_ACTIVE
            },
            _pad: [0; 2],
            generation,
            service_id,
        };
        let key = (*service, backend.address);
        if let Some(slot) = self.backends.get_mut(&key) {
            let info = info_for(slot.generation);
            if info != slot.info {
                maps.set_backend(slot.id, &info)
                    .map_err(ProgramError::Map)?;
                slot.info = info;
            }
            slot.weight = backend.weight;
            return Ok(slot.id);
        }
        let id = self
            .free_backend_ids
            .pop_front()
            .ok_or(ProgramError::TooManyBackends(self.max_backends))?;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let info = info_for(generation);
        maps.reset_backend_stats(id).map_err(ProgramError::Map)?;
        maps.set_backend(id, &info).map_err(ProgramError::Map)?;
        self.backends.insert(
            key,
            BackendSlot {
                id,
                generation,
                info,
                weight: backend.weight,
            },
        );
        Ok(id)
    }

    /// Deactivates the backends of `service` not in `keep`: flows pinned to
    /// them in the connection table re-hash on their next packet.
    fn retire_backends<W: MapWriter>(
        &mut self,
        maps: &mut W,
        service: &ServiceKey,
        keep: &[SocketAddr],
    ) -> Result<(), ProgramError<W::Error>> {
        let gone: Vec<(ServiceKey, SocketAddr)> = self
            .backends
            .keys()
            .filter(|(s, a)| s == service && !keep.contains(a))
            .copied()
            .collect();
        for key in gone {
            if let Some(slot) = self.backends.remove(&key) {
                let info = BackendInfo {
                    flags: 0,
                    ..slot.info
                };
                maps.set_backend(slot.id, &info)
                    .map_err(ProgramError::Map)?;
                self.free_backend_ids.push_back(slot.id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "programmer_tests.rs"]
mod tests;
