//! Service and backend lookups: connection table first, Maglev for new
//! flows.
use crate::{maps, parse::Packet};
use lb_common::{
    hash::flow_hash, BackendInfo, ConnEntry, Outcome, ServiceInfo, ServiceKey, BACKEND_ACTIVE,
    NO_BACKEND,
};

/// The service a packet is addressed to: exact port first, then the
/// VIP's all-ports service (port 0).
#[inline(always)]
pub fn service(packet: &Packet) -> Option<ServiceInfo> {
    let mut key = ServiceKey {
        addr: packet.flow.dst,
        port: packet.flow.dst_port,
        proto: packet.flow.proto,
        family: packet.flow.family,
    };
    if let Some(info) = maps::SERVICES.get_ptr(&key) {
        // SAFETY: a pointer returned by a map lookup is valid to read.
        return Some(unsafe { *info });
    }
    key.port = 0;
    // SAFETY: as above.
    maps::SERVICES.get_ptr(&key).map(|info| unsafe { *info })
}

pub struct BackendChoice {
    pub backend_id: u32,
    pub backend: BackendInfo,
    pub new_flow: bool,
}

/// The backend for this packet's flow: the one the connection table
/// remembers while it is still the same live backend, otherwise the Maglev
/// choice, which is then remembered.
#[inline(always)]
pub fn backend(packet: &Packet, service: &ServiceInfo) -> Result<BackendChoice, Outcome> {
    if let Some(entry) = maps::CONNTRACK.get_ptr(&packet.flow) {
        // SAFETY: a pointer returned by a map lookup is valid to read.
        let entry = unsafe { *entry };
        if let Some(backend) = live_backend(entry.backend_id, entry.generation) {
            return Ok(BackendChoice {
                backend_id: entry.backend_id,
                backend,
                new_flow: false,
            });
        }
    }
    if service.ring_size == 0 {
        return Err(Outcome::DropNoBackend);
    }
    let slot = service.ring_offset + flow_hash(&packet.flow) % service.ring_size;
    let backend_id = match maps::MAGLEV.get(slot) {
        Some(&id) => id,
        None => return Err(Outcome::DropInternal),
    };
    if backend_id == NO_BACKEND {
        return Err(Outcome::DropNoBackend);
    }
    let backend = match maps::BACKENDS.get(backend_id) {
        Some(backend) if backend.flags & BACKEND_ACTIVE != 0 => *backend,
        _ => return Err(Outcome::DropNoBackend),
    };
    let entry = ConnEntry {
        backend_id,
        generation: backend.generation,
    };
    // A full LRU evicts the oldest flow; insertion cannot fail otherwise,
    // and a failure only costs stickiness for this one flow.
    let _ = maps::CONNTRACK.insert(&packet.flow, &entry, 0);
    Ok(BackendChoice {
        backend_id,
        backend,
        new_flow: true,
    })
}

#[inline(always)]
fn live_backend(backend_id: u32, generation: u32) -> Option<BackendInfo> {
    let backend = maps::BACKENDS.get(backend_id)?;
    if backend.generation == generation && backend.flags & BACKEND_ACTIVE != 0 {
        Some(*backend)
    } else {
        None
    }
}
