//! Types shared by the XDP program (`lb-ebpf`) and the daemon (`lbd`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so that the
//! kernel and user side agree byte for byte and `bpftool map dump` can print
//! the fields by name from BTF. Ports are kept in host byte order in the maps
//! (the XDP program converts once) so that dumps read naturally.
#![no_std]

pub mod checksum;
pub mod hash;
pub mod stats;

pub use stats::{GlobalCounters, Outcome, TrafficCounters};

/// Address family tag stored next to every 16-byte address.
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers the balancer understands.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// Forwarding modes (value of [`ServiceInfo::mode`]).
/// L2 DSR: only the destination MAC changes; backends hold the VIP.
pub const MODE_DSR: u8 = 0;
/// LVS-NAT: the destination becomes the backend; replies come back through
/// the balancer, which restores the VIP as their source.
pub const MODE_NAT: u8 = 1;
/// NAT plus source NAT to a balancer address and an allocated port, so
/// backends need no route back through the balancer.
pub const MODE_FULLNAT: u8 = 2;

/// A Maglev slot that points at no backend (the service has none usable).
pub const NO_BACKEND: u32 = u32::MAX;

/// [`BackendInfo::flags`]: the backend may receive packets.
pub const BACKEND_ACTIVE: u8 = 1;

/// Default Maglev table size (a prime, as Maglev requires).
pub const DEFAULT_RING_SIZE: u32 = 65_537;

/// Names of the maps, shared so that the loader, `lbd status` and the docs
/// cannot drift apart. BPF object names are limited to 15 characters.
pub mod map_names {
    pub const SERVICES: &str = "lb_services";
    pub const BACKENDS: &str = "lb_backends";
    pub const MAGLEV: &str = "lb_maglev";
    pub const CONNTRACK: &str = "lb_conntrack";
    pub const SERVICE_STATS: &str = "lb_svc_stats";
    pub const BACKEND_STATS: &str = "lb_backend_stats";
    pub const GLOBAL_STATS: &str = "lb_global_stats";
    pub const SETTINGS: &str = "lb_settings";
    pub const NAT_REVERSE: &str = "lb_nat_reverse";
    /// Every map, in the order `lbd` pins them.
    pub const ALL: [&str; 9] = [
        SERVICES,
        BACKENDS,
        MAGLEV,
        CONNTRACK,
        NAT_REVERSE,
        SERVICE_STATS,
        BACKEND_STATS,
        GLOBAL_STATS,
        SETTINGS,
    ];
}

/// Key of `lb_services`: one (VIP, port, protocol). Port 0 matches every
/// port of the VIP; an exact port wins over port 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ServiceKey {
    /// IPv4 in the first 4 bytes (rest zero), or IPv6.
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Value of `lb_services`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    /// Index into the per-service stats array.
    pub id: u32,
    /// First slot in `lb_maglev` of the table currently in use. Userspace
    /// fills the other half and then replaces this value, which the kernel
    /// sees atomically (hash map updates are RCU replacements).
    pub ring_offset: u32,
    /// Number of slots in this service's Maglev table (prime).
    pub ring_size: u32,
    pub mode: u8,
    pub _pad: [u8; 3],
}

/// Value of `lb_backends`, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BackendInfo {
    pub addr: [u8; 16],
    /// Resolved by `lbd` (neighbour table / ARP); all zero while unknown.
    pub mac: [u8; 6],
    pub port: u16,
    pub family: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Bumped every time the id is given to a different backend, so that a
    /// connection-table entry made for the old one is recognised as stale.
    pub generation: u32,
    pub service_id: u32,
}

/// Key of `lb_conntrack`: the flow's 5-tuple as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of `lb_conntrack`, keyed by the flow as the client sends it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnEntry {
    pub backend_id: u32,
    /// Must equal the backend's current generation, or the flow re-hashes.
    pub generation: u32,
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`) after which the
    /// entry is dead: the next packet is placed afresh and `lbd` deletes it.
    pub expires_ns: u64,
    /// `fullnat`: the source port allocated on the balancer address.
    pub snat_port: u16,
    /// One of the `TCP_STATE_*` values (UDP flows stay `TCP_STATE_OPEN`).
    pub tcp_state: u8,
    pub _pad: [u8; 5],
}

/// [`ConnEntry::tcp_state`]: no FIN or RST seen.
pub const TCP_STATE_OPEN: u8 = 0;
/// A FIN or RST was seen: the entry lives `tcp_fin_timeout` only.
pub const TCP_STATE_CLOSING: u8 = 1;

/// Value of `lb_nat_reverse`, keyed by the reply as the backend sends it
/// (`nat`: backend -> client; `fullnat`: backend -> balancer address and
/// allocated port). Lets replies and ICMP errors find their flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReverseEntry {
    /// The flow as the client sent it (its `lb_conntrack` key). The
    /// reverse entry lives exactly as long as that entry does.
    pub forward: FlowKey,
    /// The backend the flow went to when this entry was made; a reply from
    /// any other one (after a re-hash) is not translated.
    pub backend_id: u32,
    pub generation: u32,
}

/// Value of `lb_settings` (a one-element array).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LbSettings {
    /// MAC address of the interface the program is attached to; the source
    /// MAC of every frame sent back out with `XDP_TX`.
    pub if_mac: [u8; 6],
    /// 1 while this node forwards (always without VRRP; only as VRRP
    /// master with it). 0: service traffic passes to the kernel.
    pub forwarding: u8,
    /// 1 while some service is `nat` or `fullnat`: only then may a packet
    /// that is not for a service be a reply to translate (otherwise the
    /// `lb_nat_reverse` lookup is skipped).
    pub reply_lookup: u8,
    /// `fullnat` source addresses (IPv4 in the first 4 bytes); all zero
    /// disables fullnat for that family (its packets pass, counted).
    pub snat_v4: [u8; 16],
    pub snat_v6: [u8; 16],
    /// Inclusive range of source ports `fullnat` allocates from.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// 1 while some service covers all ports of its VIP (port 0): only
    /// then does a packet that matches no exact port try port 0 (otherwise
    /// that second lookup is skipped on every packet not for a service).
    pub all_ports: u8,
    pub _pad2: [u8; 3],
    /// Connection-table lifetimes after the last packet, in nanoseconds.
    pub tcp_timeout_ns: u64,
    pub tcp_fin_timeout_ns: u64,
    pub udp_timeout_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, contain only integers and byte
    // arrays, and have explicit padding fields, so any bit pattern is valid.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceInfo {}
    unsafe impl aya::Pod for super::BackendInfo {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::ConnEntry {}
    unsafe impl aya::Pod for super::ReverseEntry {}
    unsafe impl aya::Pod for super::LbSettings {}
    unsafe impl aya::Pod for super::TrafficCounters {}
    unsafe impl aya::Pod for super::GlobalCounters {}
}

/// Builds the 16-byte address field used by every key from an IPv4 address
/// in network byte order.
#[inline(always)]
pub const fn ipv4_addr_bytes(octets: [u8; 4]) -> [u8; 16] {
    [
        octets[0], octets[1], octets[2], octets[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<ServiceInfo>(), 16);
        assert_eq!(size_of::<BackendInfo>(), 36);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<ConnEntry>(), 24);
        assert_eq!(size_of::<ReverseEntry>(), 48);
        assert_eq!(size_of::<LbSettings>(), 72);
    }
}
