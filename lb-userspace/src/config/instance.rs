//! `[instance]`: the interface, the XDP mode, the map sizes, the
//! connection-table lifetimes and the `fullnat` sources.
use super::{validate::Validator, Environment};
use serde::Deserialize;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};
use toml::Spanned;

pub const DEFAULT_MAX_SERVICES: u32 = 64;
pub const DEFAULT_MAX_BACKENDS: u32 = 1024;
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
const MAX_RING_SIZE: u32 = 1 << 24;
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
        let mut positive = |value: &Option<Spanned<u32>>, field: &str, default: u32| match value {
            Some(v) if *v.get_ref() == 0 => {
                self.error(v, format!("instance.{field}"), "must be greater than 0");
                default
            }
            Some(v) => *v.get_ref(),
            None => default,
        };
        let max_services = positive(&raw.max_services, "max_services", DEFAULT_MAX_SERVICES);
        let max_backends = positive(&raw.max_backends, "max_backends", DEFAULT_MAX_BACKENDS);
        let conntrack_entries = positive(
            &raw.conntrack_entries,
            "conntrack_entries",
            DEFAULT_CONNTRACK_ENTRIES,
        );
        let maglev_entries = u64::from(max_services) * 2 * u64::from(maglev_table_size);
        if maglev_entries > u64::from(u32::MAX) {
            self.error_at(
                1,
                "instance.max_services",
                "max_services * 2 * maglev_table_size exceeds the size of a BPF array",
            );
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
