//! The data path's settings from the configuration: timeouts, `fullnat`
//! sources, and whether replies are looked up (and the kernel forwards)
//! for the NAT modes.
use super::{neighbour::InterfaceInfo, programmer::Tunables, LbMaps};
use crate::config::{Config, ForwardingMode};
use std::net::IpAddr;
use tracing::{info, warn};

/// The data-path knobs: timeouts and `fullnat` source addresses (the
/// configured ones, else the interface's first address of each family).
pub fn tunables(config: &Config, interface: &InterfaceInfo) -> Tunables {
    let (v4, v6) = interface.primary_addresses();
    let instance = &config.instance;
    let tunables = Tunables {
        snat_v4: instance.snat_ipv4.or(v4),
        snat_v6: instance.snat_ipv6.or(v6),
        snat_ports: instance.snat_port_range,
        tcp_timeout: instance.tcp_timeout,
        tcp_fin_timeout: instance.tcp_fin_timeout,
        udp_timeout: instance.udp_timeout,
        reply_lookup: uses_nat(config),
    };
    for service in config
        .services
        .iter()
        .filter(|s| s.mode == ForwardingMode::Fullnat)
    {
        let source = if service.vip.is_ipv4() {
            tunables.snat_v4.map(IpAddr::V4)
        } else {
            tunables.snat_v6.map(IpAddr::V6)
        };
        match source {
            Some(source) => {
                info!(service = %service.name, %source, ports = ?tunables.snat_ports, "fullnat source")
            }
            None => warn!(service = %service.name, interface = %interface.name,
                "fullnat has no source address of this family (set instance.snat_ipv4 / snat_ipv6): its packets pass, counted as pass_snat_exhausted"),
        }
    }
    tunables
}

/// Whether some service is `nat` or `fullnat`.
pub fn uses_nat(config: &Config) -> bool {
    config
        .services
        .iter()
        .any(|s| s.mode != ForwardingMode::Dsr)
}

/// After a reload: the reply lookup (and forwarding) follow the services'
/// modes. Read-modify-write, as the VRRP driver owns `forwarding`.
pub fn sync_reply_lookup(maps: &mut LbMaps, config: &Config) -> anyhow::Result<()> {
    let wanted = u8::from(uses_nat(config));
    let mut settings = maps.settings.get(&0, 0)?;
    if settings.reply_lookup != wanted {
        if wanted == 1 {
            enable_forwarding(config);
        }
        settings.reply_lookup = wanted;
        maps.settings.set(0, settings, 0)?;
        info!(
            reply_lookup = wanted == 1,
            "nat/fullnat reply path switched"
        );
    }
    Ok(())
}

/// `nat` and `fullnat` route: `bpf_fib_lookup` answers only when the
/// kernel forwards for that family, and a packet it cannot answer for is
/// forwarded by the kernel itself. So forwarding is switched on for each
/// family such a service uses (as an LVS-NAT director needs it too).
pub fn enable_forwarding(config: &Config) {
    let routed = |v4: bool| {
        config
            .services
            .iter()
            .any(|s| s.mode != ForwardingMode::Dsr && s.vip.is_ipv4() == v4)
    };
    for (v4, path) in [
        (true, "/proc/sys/net/ipv4/conf/all/forwarding"),
        (false, "/proc/sys/net/ipv6/conf/all/forwarding"),
    ] {
        if !routed(v4) {
            continue;
        }
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        match std::fs::write(path, "1") {
            Ok(()) => info!(sysctl = path, "forwarding enabled for the nat/fullnat services"),
            Err(e) => warn!(sysctl = path, "cannot enable forwarding ({e}): nat/fullnat packets the FIB cannot place will be dropped by the kernel"),
        }
    }
}
