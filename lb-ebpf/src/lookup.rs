//! Service and backend lookups: connection table first, Maglev for new
//! flows; expiry by TCP state or UDP idle time.
use crate::{maps, parse::Packet, verdict::Verdict, Job};
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_get_prandom_u32,
};
use lb_common::{
    hash::flow_hash, BackendInfo, ConnEntry, FlowKey, LbSettings, Outcome, ReverseEntry,
    ServiceInfo, ServiceKey, BACKEND_ACTIVE, MODE_DSR, NO_BACKEND, PROTO_TCP, TCP_STATE_CLOSING,
    TCP_STATE_OPEN,
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// An entry's expiry is rewritten at most this often while it only moves
/// forward: one shared cache line write per flow per second, not per packet.
const REFRESH_SLACK_NS: u64 = 1_000_000_000;
/// Ports tried per new `fullnat` flow before it counts as exhausted.
const SNAT_TRIES: u32 = 8;

/// The service a packet is addressed to: exact port first, then the
/// VIP's all-ports service (port 0) when some service has all ports.
#[inline(always)]
pub fn service(packet: &Packet, settings: &LbSettings) -> Option<&'static ServiceInfo> {
    // A reference into the map, not a copy: the stack of the inlined
    // `dsr` path is tight.
    let mut key = ServiceKey {
        addr: packet.flow.dst,
        port: packet.flow.dst_port,
        proto: packet.flow.proto,
        family: packet.flow.family,
    };
    if let Some(info) = maps::SERVICES.get_ptr(&key) {
        // SAFETY: a map value stays valid for this invocation (RCU).
        return Some(unsafe { &*info });
    }
    if settings.all_ports == 0 {
        return None;
    }
    key.port = 0;
    // SAFETY: as above.
    maps::SERVICES.get_ptr(&key).map(|info| unsafe { &*info })
}

#[derive(Default)]
pub struct BackendChoice {
    pub backend_id: u32,
    pub backend: BackendInfo,
    pub new_flow: bool,
    /// `fullnat` source port already allocated to this flow (0: none yet).
    pub snat_port: u16,
}

/// The backend for this packet's flow: the one the connection table
/// remembers while the entry lives and the backend is the same live one,
/// otherwise the Maglev choice, which is then remembered. An ICMP error
/// never creates a flow: without a live entry it is not ours.
// Not inlined: its temporaries stay out of the caller's stack frame.
#[inline(never)]
pub fn backend(
    packet: &Packet,
    service: &ServiceInfo,
    settings: &LbSettings,
    now: u64,
    choice: &mut BackendChoice,
) -> Verdict {
    Verdict::step(try_backend(packet, service, settings, now, choice))
}

/// [`backend`] inlined into its caller, saving the BPF-to-BPF call. The
/// choice is written field by field into `choice` (the scratch map for
/// the NAT paths), so that no copy of it needs the stack.
#[inline(always)]
pub fn backend_inline(
    packet: &Packet,
    service: &ServiceInfo,
    settings: &LbSettings,
    now: u64,
    choice: &mut BackendChoice,
) -> Result<(), Outcome> {
    try_backend(packet, service, settings, now, choice)
}

#[inline(always)]
fn try_backend(
    packet: &Packet,
    service: &ServiceInfo,
    settings: &LbSettings,
    now: u64,
    choice: &mut BackendChoice,
) -> Result<(), Outcome> {
    // A bare SYN to a `dsr` service starts a flow: it is placed by Maglev
    // without looking the table up first, as Katran does (a retransmitted
    // SYN is placed again, on the same backend unless the set changed).
    // The NAT modes look up: their entry holds the flow's reply state.
    let new_connection = packet.flow.proto == PROTO_TCP
        && packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        && service.mode == MODE_DSR;
    let existing = if new_connection {
        None
    } else {
        maps::CONNTRACK.get_ptr_mut(&packet.flow)
    };
    if let Some(entry_ptr) = existing {
        // SAFETY: a pointer returned by a map lookup is valid to read.
        let entry = unsafe { &*entry_ptr };
        if entry.expires_ns > now {
            if let Some(backend) = live_backend(entry.backend_id, entry.generation) {
                choice.backend_id = entry.backend_id;
                choice.backend = *backend;
                choice.new_flow = false;
                choice.snat_port = entry.snat_port;
                if packet.icmp().is_none() {
                    refresh(entry_ptr, packet, settings, now);
                }
                return Ok(());
            }
        }
    }
    if packet.icmp().is_some() {
        return Err(Outcome::PassNotService);
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
        Some(backend) if backend.flags & BACKEND_ACTIVE != 0 => backend,
        _ => return Err(Outcome::DropNoBackend),
    };
    let tcp_state = next_tcp_state(packet, TCP_STATE_OPEN);
    let entry = ConnEntry {
        backend_id,
        generation: backend.generation,
        expires_ns: now + timeout(settings, packet.flow.proto, tcp_state),
        snat_port: 0,
        tcp_state,
        _pad: [0; 5],
    };
    // A full LRU evicts the oldest flow; insertion cannot fail otherwise,
    // and a failure only costs stickiness for this one flow.
    let _ = maps::CONNTRACK.insert(&packet.flow, &entry, 0);
    choice.backend_id = backend_id;
    choice.backend = *backend;
    choice.new_flow = true;
    choice.snat_port = 0;
    Ok(())
}

#[inline(always)]
fn live_backend(backend_id: u32, generation: u32) -> Option<&'static BackendInfo> {
    let backend = maps::BACKENDS.get(backend_id)?;
    if backend.generation == generation && backend.flags & BACKEND_ACTIVE != 0 {
        Some(backend)
    } else {
        None
    }
}

/// FIN or RST moves a TCP flow to closing (short timeout); a bare SYN on a
/// closing entry is the client reusing its port: open again.
#[inline(always)]
fn next_tcp_state(packet: &Packet, state: u8) -> u8 {
    if packet.flow.proto != PROTO_TCP {
        return state;
    }
    let flags = packet.tcp_flags;
    if flags & (TCP_FIN | TCP_RST) != 0 {
        TCP_STATE_CLOSING
    } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        TCP_STATE_OPEN
    } else {
        state
    }
}

#[inline(always)]
fn timeout(settings: &LbSettings, proto: u8, tcp_state: u8) -> u64 {
    if proto != PROTO_TCP {
        settings.udp_timeout_ns
    } else if tcp_state == TCP_STATE_CLOSING {
        settings.tcp_fin_timeout_ns
    } else {
        settings.tcp_timeout_ns
    }
}

/// Pushes a live entry's expiry forward (or shortens it on FIN/RST).
#[inline(always)]
fn refresh(entry: *mut ConnEntry, packet: &Packet, settings: &LbSettings, now: u64) {
    // SAFETY: `entry` comes from a map lookup; concurrent writers on other
    // CPUs can only store another valid expiry or state.
    unsafe {
        let state = next_tcp_state(packet, (*entry).tcp_state);
        let expires = now + timeout(settings, packet.flow.proto, state);
        if state != (*entry).tcp_state || expires > (*entry).expires_ns + REFRESH_SLACK_NS {
            (*entry).tcp_state = state;
            (*entry).expires_ns = expires;
        }
    }
}

/// Remembers how the backend's replies look (`nat`: backend -> client),
/// so the reply path can find the flow.
#[inline(always)]
pub fn remember_reply(packet: &Packet, choice: &BackendChoice) {
    let key = FlowKey {
        src: choice.backend.addr,
        dst: packet.flow.src,
        src_port: choice.backend.port,
        dst_port: packet.flow.src_port,
        proto: packet.flow.proto,
        family: packet.flow.family,
        _pad: [0; 2],
    };
    let value = ReverseEntry {
        forward: packet.flow,
        backend_id: choice.backend_id,
        generation: choice.backend.generation,
    };
    // Full (lbd has not collected expired entries yet): the replies of
    // this flow pass untranslated, like any packet we know nothing about.
    let _ = maps::NAT_REVERSE.insert(&key, &value, u64::from(BPF_ANY));
}

/// Allocates a `fullnat` source port on `snat_addr` for this flow towards
/// its backend and records the reply key (backend -> snat_addr:port). A
/// port is taken only with `BPF_NOEXIST`, or over an entry whose flow is
/// gone, so no (address, port, backend) tuple serves two live flows.
/// Returns 0 when every port tried is taken by a live flow.
///
/// The first port tried comes from the flow hash (the same on every node);
/// the others are random, each independent of the flow and of the others
/// (a range of at most [`SNAT_TRIES`] ports is tried whole, in order). A
/// fixed sequence derived from the hash (it was `hash + i * 7919`) makes
/// flows whose sequences overlap pile up along them, as linear probing
/// does: with a backend's range 15% full, a flow now and then found all
/// its tries taken. It also failed the same way at every retry of the
/// same flow (a client reusing that source port) as long as those ports
/// stayed taken, however many others were free.
#[inline(never)]
pub fn allocate_snat_port(job: &Job, choice: &BackendChoice, snat_addr: &[u8; 16]) -> u16 {
    let (packet, settings, now) = (job.packet, job.settings, job.now);
    let min = u32::from(settings.snat_port_min);
    let max = u32::from(settings.snat_port_max);
    if min == 0 || max < min {
        return 0;
    }
    let range = max - min + 1;
    let start = flow_hash(&packet.flow);
    let Some(scratch) = maps::scratch() else {
        return 0;
    };
    let key = &mut scratch.reverse_key;
    *key = FlowKey {
        src: choice.backend.addr,
        dst: *snat_addr,
        src_port: choice.backend.port,
        dst_port: 0,
        proto: packet.flow.proto,
        family: packet.flow.family,
        _pad: [0; 2],
    };
    let value = &mut scratch.reverse;
    *value = ReverseEntry {
        forward: packet.flow,
        backend_id: choice.backend_id,
        generation: choice.backend.generation,
    };
    for i in 0..SNAT_TRIES {
        let candidate = if i == 0 || range <= SNAT_TRIES {
            start.wrapping_add(i)
        } else {
            // SAFETY: plain helper call.
            unsafe { bpf_get_prandom_u32() }
        };
        let Some(offset) = candidate.checked_rem(range) else {
            return 0;
        };
        let port = (min + offset) as u16;
        key.dst_port = port;
        if maps::NAT_REVERSE
            .insert(&*key, &*value, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            return port;
        }
        let Some(existing) = maps::NAT_REVERSE.get_ptr(&*key) else {
            continue;
        };
        // SAFETY: a pointer returned by a map lookup is valid to read
        // (RCU keeps it alive for this invocation).
        let existing = unsafe { &*existing };
        let reusable = existing.forward == packet.flow || !owns_port(existing, port, now);
        if reusable
            && maps::NAT_REVERSE
                .insert(&*key, &*value, u64::from(BPF_ANY))
                .is_ok()
        {
            return port;
        }
    }
    0
}

/// True while the flow a reverse entry names is alive and still uses
/// `port` towards the same backend.
#[inline(always)]
fn owns_port(reverse: &ReverseEntry, port: u16, now: u64) -> bool {
    let Some(entry) = maps::CONNTRACK.get_ptr(&reverse.forward) else {
        return false;
    };
    // SAFETY: a pointer returned by a map lookup is valid to read.
    let entry = unsafe { *entry };
    entry.expires_ns > now
        && entry.snat_port == port
        && entry.backend_id == reverse.backend_id
        && entry.generation == reverse.generation
}

/// Stores the allocated port in the flow's entry.
#[inline(always)]
pub fn set_snat_port(flow: &FlowKey, port: u16) {
    if let Some(entry) = maps::CONNTRACK.get_ptr_mut(flow) {
        // SAFETY: a pointer returned by a map lookup is valid to write.
        unsafe { (*entry).snat_port = port };
    }
}

/// The flow a reply (or an ICMP error travelling towards a client) belongs
/// to, if it is alive and still goes to the backend that sent the reply.
#[inline(always)]
pub fn reply_flow(
    packet: &Packet,
    settings: &LbSettings,
    now: u64,
) -> Option<(ReverseEntry, ConnEntry)> {
    let reverse = maps::NAT_REVERSE.get_ptr(&packet.flow)?;
    // SAFETY: a pointer returned by a map lookup is valid to read.
    let reverse = unsafe { *reverse };
    let entry_ptr = maps::CONNTRACK.get_ptr_mut(&reverse.forward)?;
    // SAFETY: as above.
    let entry = unsafe { *entry_ptr };
    let current = entry.expires_ns > now
        && entry.backend_id == reverse.backend_id
        && entry.generation == reverse.generation
        && (entry.snat_port == 0 || entry.snat_port == packet.flow.dst_port);
    if !current {
        return None;
    }
    if packet.icmp().is_none() {
        refresh(entry_ptr, packet, settings, now);
    }
    Some((reverse, entry))
}
