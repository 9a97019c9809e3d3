//! Counters kept by the XDP program in per-CPU arrays.

/// Per service (`lb_svc_stats`) and per backend (`lb_backend_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrafficCounters {
    pub packets: u64,
    /// Bytes of the whole frame as received, Ethernet header included.
    pub bytes: u64,
    /// Flows that had no connection-table entry and were placed by Maglev.
    pub new_flows: u64,
}

macro_rules! outcomes {
    ($($(#[$doc:meta])* $variant:ident => $field:ident,)*) => {
        /// What the XDP program did with a packet, and why. Every packet
        /// increments exactly one of these.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Outcome { $($(#[$doc])* $variant,)* }

        /// `lb_global_stats[0]`: one counter per [`Outcome`], by name.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
        pub struct GlobalCounters { $(pub $field: u64,)* }

        impl GlobalCounters {
            #[inline(always)]
            pub fn counter_mut(&mut self, outcome: Outcome) -> &mut u64 {
                match outcome { $(Outcome::$variant => &mut self.$field,)* }
            }

            /// (name, value) pairs in declaration order, for display.
            pub fn fields(&self) -> [(&'static str, u64); Outcome::COUNT] {
                [$((stringify!($field), self.$field),)*]
            }

            /// Adds another CPU's counters.
            pub fn accumulate(&mut self, other: &Self) {
                $(self.$field = self.$field.wrapping_add(other.$field);)*
            }
        }

        impl Outcome {
            pub const COUNT: usize = [$(stringify!($variant),)*].len();

            /// The outcome numbered `index` (its `as u32` value), if any.
            #[inline(always)]
            pub fn from_index(index: u32) -> Option<Outcome> {
                const ALL: [Outcome; Outcome::COUNT] = [$(Outcome::$variant,)*];
                ALL.get(index as usize).copied()
            }
        }
    };
}

outcomes! {
    /// Forwarded to a backend by L2 DSR (`XDP_TX`).
    TxDsr => tx_dsr,
    /// `nat`/`fullnat` packet to a backend, sent back out (`XDP_TX`).
    TxNat => tx_nat,
    /// `nat`/`fullnat` reply from a backend to its client (`XDP_TX`).
    TxNatReply => tx_nat_reply,
    /// An ICMP error about a balanced flow, sent where that flow goes.
    TxIcmpError => tx_icmp_error,
    /// Like the `tx_*` outcomes, but out of another interface
    /// (`bpf_redirect` to the `bpf_fib_lookup` result).
    Redirect => redirect,
    /// Not IP (ARP, LLDP, ...): the kernel's business.
    PassNotIp => pass_not_ip,
    /// IPv6 with extension headers before TCP/UDP: passed untouched.
    PassIpv6Ext => pass_ipv6_ext,
    /// IP but not for a configured service.
    PassNotService => pass_not_service,
    /// For a service, but this node is a VRRP backup: not ours to forward.
    PassStandby => pass_standby,
    /// IP fragment: ports unknown, so it cannot be balanced consistently.
    PassFragment => pass_fragment,
    /// `nat`/`fullnat`: rewritten, but `bpf_fib_lookup` found no next hop
    /// (no neighbour entry yet, no route, forwarding off): the kernel
    /// forwards this one packet and resolves the neighbour.
    PassFibFailed => pass_fib_failed,
    /// `fullnat`: no free source port for this backend (or no source
    /// address for the family); passed unmodified, never mis-forwarded.
    PassSnatExhausted => pass_snat_exhausted,
    /// Frame shorter than an Ethernet header.
    PassTruncatedEth => pass_truncated_eth,
    /// IP header truncated, bad version, IHL < 5, or length wrong.
    PassMalformedIp => pass_malformed_ip,
    /// TCP/UDP/ICMP header truncated, TCP data offset invalid, or an ICMP
    /// error quoting too little of its packet.
    PassMalformedL4 => pass_malformed_l4,
    /// For a service, but the IPv4 header checksum is wrong.
    DropBadIpChecksum => drop_bad_ip_checksum,
    /// For a service that has no usable backend.
    DropNoBackend => drop_no_backend,
    /// The chosen backend's MAC address is not resolved yet.
    DropNoBackendMac => drop_no_backend_mac,
    /// A map the program needs was missing an entry (a bug or a race with
    /// the loader).
    DropInternal => drop_internal,
}

impl TrafficCounters {
    pub fn accumulate(&mut self, other: &Self) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.new_flows = self.new_flows.wrapping_add(other.new_flows);
    }
}
