//! `[instance]`: the interface, the XDP mode, the map sizes, the
//! connection-table lifetimes and the `fullnat` sources.
use super::{validate::Validator, Environment};
use serde::Deserialize;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::RangeInclusive,
    time::Duration,
};
use toml::Spanned;

pub const DEFAULT_MAX_SERVICES: u32 = 64;
pub const DEFAULT_MAX_BACKENDS: u32 = 1024;
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
/// The largest prime below 2^24.
const MAX_RING_SIZE: u32 = 16_777_213;
/// The ranges of the map sizes: enough for any fleet, small enough that
/// the kernel can create the map (a larger hash table fails with E2BIG,
/// naming the map instead of the setting). What they cost in memory is
/// checked against the machine separately ([`MapSizeSettings::map_memory`]).
pub const MAX_SERVICES_RANGE: RangeInclusive<u32> = 1..=65_536;
pub const MAX_BACKENDS_RANGE: RangeInclusive<u32> = 1..=1_048_576;
pub const CONNTRACK_ENTRIES_RANGE: RangeInclusive<u32> = 1..=67_108_864;
/// Every service's two Maglev halves together (the array `lb_maglev`).
pub const MAX_MAGLEV_SLOTS: u64 = 1 << 28;
/// `fullnat` source ports: below Linux's default ephemeral range.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (1024, 32767);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub name: String,
    pub interface: String,
    pub xdp_mode: XdpModeChoice,
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    pub conntrack_entries: u32,
    /// Connection-table lifetimes after a flow's last packet.
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub udp_timeout: Duration,
    /// `fullnat` source addresses; `None`: the interface's first address
    /// of that family.
    pub snat_ipv4: Option<Ipv4Addr>,
    pub snat_ipv6: Option<Ipv6Addr>,
    /// Inclusive range `fullnat` allocates source ports from.
    pub snat_port_range: (u16, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to generic with a warning.
    Auto,
    Native,
    Generic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    name: Spanned<String>,
    interface: Spanned<String>,
    xdp_mode: Option<Spanned<XdpModeChoice>>,
    maglev_table_size: Option<Spanned<u32>>,
    max_services: Option<Spanned<u32>>,
    max_backends: Option<Spanned<u32>>,
    conntrack_entries: Option<Spanned<u32>>,
    tcp_timeout: Option<Spanned<f64>>,
    tcp_fin_timeout: Option<Spanned<f64>>,
    udp_timeout: Option<Spanned<f64>>,
    snat_ipv4: Option<Spanned<String>>,
    snat_ipv6: Option<Spanned<String>>,
    snat_port_range: Option<Spanned<[u16; 2]>>,
}

impl Validator<'_> {
    pub(super) fn validate_instance(
        &mut self,
        raw: RawInstance,
        section_line: usize,
        env: &dyn Environment,
    ) -> InstanceConfig {
        let name = raw.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            self.error(
                &raw.name,
                "instance.name",
                format!("\"{name}\" must be 1 to 32 characters of A-Z a-z 0-9 - _ (it names the pin directory)"),
            );
        }
        let interface = raw.interface.get_ref().clone();
        if !env.interface_exists(&interface) {
            self.error(
                &raw.interface,
                "instance.interface",
                format!("unknown interface \"{interface}\" (not found in this network namespace)"),
            );
        }
        let errors_before_sizes = self.errors.len();
        let maglev_table_size = raw
            .maglev_table_size
            .as_ref()
            .map_or(lb_common::DEFAULT_RING_SIZE, |s| *s.get_ref());
        if let Some(size) = &raw.maglev_table_size {
            if !is_prime(*size.get_ref()) || *size.get_ref() < 7 || *size.get_ref() > MAX_RING_SIZE
            {
                self.error(
                    size,
                    "instance.maglev_table_size",
                    format!(
                        "{} must be a prime between 7 and {MAX_RING_SIZE} (Maglev needs a prime table size)",
                        size.get_ref()
                    ),
                );
            }
        }
        let max_services = self.bounded(
            &raw.max_services,
            "instance.max_services",
            DEFAULT_MAX_SERVICES,
            MAX_SERVICES_RANGE,
        );
        let max_backends = self.bounded(
            &raw.max_backends,
            "instance.max_backends",
            DEFAULT_MAX_BACKENDS,
            MAX_BACKENDS_RANGE,
        );
        let conntrack_entries = self.bounded(
            &raw.conntrack_entries,
            "instance.conntrack_entries",
            DEFAULT_CONNTRACK_ENTRIES,
            CONNTRACK_ENTRIES_RANGE,
        );
        let maglev_slots = u64::from(max_services) * 2 * u64::from(maglev_table_size);
        if maglev_slots > MAX_MAGLEV_SLOTS {
            let at = raw
                .max_services
                .as_ref()
                .or(raw.maglev_table_size.as_ref())
                .map_or(1, |v| self.line_of(v.span().start));
            self.error_at(
                at,
                "instance.max_services",
                format!(
                    "max_services × 2 × maglev_table_size = {maglev_slots} Maglev slots, more than {MAX_MAGLEV_SLOTS}: lower max_services or maglev_table_size"
                ),
            );
        }
        let sizes = MapSizeSettings {
            maglev_table_size,
            max_services,
            max_backends,
            conntrack_entries,
        };
        // Estimated only from sizes that are in range.
        let machine = env
            .machine()
            .filter(|_| self.errors.len() == errors_before_sizes);
        if let Some(machine) = machine {
            let need = sizes.map_memory(machine.cpus);
            if need > machine.memory_bytes / 2 {
                let at = [
                    &raw.conntrack_entries,
                    &raw.max_backends,
                    &raw.max_services,
                    &raw.maglev_table_size,
                ]
                .into_iter()
                .flatten()
                .map(|v| self.line_of(v.span().start))
                .min()
                .unwrap_or(section_line);
                self.error_at(
                    at,
                    "instance",
                    format!(
                        "the maps would take about {} MiB of kernel memory (conntrack_entries {conntrack_entries}, max_backends {max_backends}, max_services {max_services}, maglev_table_size {maglev_table_size}), more than half of this machine's {} MiB",
                        need >> 20,
                        machine.memory_bytes >> 20
                    ),
                );
            }
        }
        let tcp_timeout = self.seconds(
            &raw.tcp_timeout,
            "instance.tcp_timeout",
            900.0,
            (1.0, 604_800.0),
        );
        let tcp_fin_timeout = self.seconds(
            &raw.tcp_fin_timeout,
            "instance.tcp_fin_timeout",
            120.0,
            (1.0, 604_800.0),
        );
        let udp_timeout = self.seconds(
            &raw.udp_timeout,
            "instance.udp_timeout",
            300.0,
            (1.0, 604_800.0),
        );
        let snat_ipv4 = match &raw.snat_ipv4 {
            Some(text) => match self.address(text, "instance.snat_ipv4") {
                Some(IpAddr::V4(a)) => Some(a),
                Some(IpAddr::V6(_)) => {
                    self.error(text, "instance.snat_ipv4", "must be an IPv4 address");
                    None
                }
                None => None,
            },
            None => None,
        };
        let snat_ipv6 = match &raw.snat_ipv6 {
            Some(text) => match self.address(text, "instance.snat_ipv6") {
                Some(IpAddr::V6(a)) => Some(a),
                Some(IpAddr::V4(_)) => {
                    self.error(text, "instance.snat_ipv6", "must be an IPv6 address");
                    None
                }
                None => None,
            },
            None => None,
        };
        let default_ports = DEFAULT_SNAT_PORTS;
        let snat_port_range = match &raw.snat_port_range {
            Some(range) => {
                let [min, max] = *range.get_ref();
                if min == 0 || min > max {
                    self.error(
                        range,
                        "instance.snat_port_range",
                        format!("[{min}, {max}] must be [first, last] with 1 <= first <= last"),
                    );
                    default_ports
                } else {
                    (min, max)
                }
            }
            None => default_ports,
        };
        InstanceConfig {
            name,
            interface,
            xdp_mode: raw.xdp_mode.map_or(XdpModeChoice::Auto, |m| m.into_inner()),
            maglev_table_size,
            max_services,
            max_backends,
            conntrack_entries,
            tcp_timeout,
            tcp_fin_timeout,
            udp_timeout,
            snat_ipv4,
            snat_ipv6,
            snat_port_range,
        }
    }
}

/// The settings that size the maps.
#[derive(Debug, Clone, Copy)]
pub struct MapSizeSettings {
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    pub conntrack_entries: u32,
}

impl MapSizeSettings {
    /// An estimate of the kernel memory the maps take, in bytes, with
    /// `cpus` possible CPUs (a per-CPU map holds a value per CPU). Hash
    /// tables preallocate every element (the kernel's 40-byte element
    /// header, key and value each rounded up to 8 bytes) plus a 16-byte
    /// bucket per power-of-two slot; arrays round each value up to 8.
    pub fn map_memory(&self, cpus: u64) -> u64 {
        use lb_common::{BackendInfo, ConnEntry, FlowKey, ReverseEntry, ServiceInfo, ServiceKey};
        use std::mem::size_of;
        let round8 = |n: usize| (n as u64).div_ceil(8) * 8;
        let hash = |entries: u32, key: usize, value: usize| {
            u64::from(entries) * (40 + round8(key) + round8(value))
                + u64::from(entries).next_power_of_two() * 16
        };
        let array = |entries: u64, value: usize| entries * round8(value);
        let counters = round8(size_of::<lb_common::TrafficCounters>()) * cpus;
        let maglev = u64::from(self.max_services) * 2 * u64::from(self.maglev_table_size);
        hash(
            self.conntrack_entries,
            size_of::<FlowKey>(),
            size_of::<ConnEntry>(),
        ) + hash(
            self.conntrack_entries,
            size_of::<FlowKey>(),
            size_of::<ReverseEntry>(),
        ) + hash(
            self.max_services,
            size_of::<ServiceKey>(),
            size_of::<ServiceInfo>(),
        ) + array(maglev, size_of::<u32>())
            + array(u64::from(self.max_backends), size_of::<BackendInfo>())
            + (u64::from(self.max_backends) + u64::from(self.max_services)) * counters
    }
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}
