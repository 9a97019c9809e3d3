//! `[[service]]` and its `[[service.backend]]`s: the VIP, port, protocol,
//! forwarding mode, and each backend's weight, check and slow start.
use super::{
    health::{AllDown, HealthCheck, RawHealthCheck},
    validate::Validator,
    InstanceConfig,
};
use serde::Deserialize;
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    /// 0 = every port of the VIP.
    pub port: u16,
    pub protocol: Protocol,
    pub mode: ForwardingMode,
    pub backends: Vec<BackendConfig>,
    /// When no backend is healthy: drop, or keep the last table.
    pub on_all_down: AllDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardingMode {
    /// L2 direct server return: only the MAC changes; backends hold the
    /// VIP on a loopback and answer the client directly.
    Dsr,
    /// Destination NAT; backends route their replies through the balancer.
    Nat,
    /// Destination and source NAT: backends need no route change.
    Fullnat,
}

impl ForwardingMode {
    pub fn number(self) -> u8 {
        match self {
            ForwardingMode::Dsr => lb_common::MODE_DSR,
            ForwardingMode::Nat => lb_common::MODE_NAT,
            ForwardingMode::Fullnat => lb_common::MODE_FULLNAT,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ForwardingMode::Dsr => "dsr",
            ForwardingMode::Nat => "nat",
            ForwardingMode::Fullnat => "fullnat",
        }
    }
    pub fn from_number(mode: u8) -> Option<Self> {
        match mode {
            lb_common::MODE_DSR => Some(ForwardingMode::Dsr),
            lb_common::MODE_NAT => Some(ForwardingMode::Nat),
            lb_common::MODE_FULLNAT => Some(ForwardingMode::Fullnat),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    /// `None`: no check, always up.
    pub health_check: Option<HealthCheck>,
    /// Ramp the weight from 0 over this time after the backend comes up.
    pub slow_start: Duration,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::PROTO_TCP,
            Protocol::Udp => lb_common::PROTO_UDP,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    name: Spanned<String>,
    vip: Spanned<String>,
    port: Spanned<u16>,
    protocol: Spanned<Protocol>,
    mode: Option<Spanned<String>>,
    health_check: Option<RawHealthCheck>,
    on_all_down: Option<Spanned<AllDown>>,
    slow_start: Option<Spanned<f64>>,
    #[serde(default, rename = "backend")]
    backends: Vec<Spanned<RawBackend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    port: Option<Spanned<u16>>,
    weight: Option<Spanned<u32>>,
    health_check: Option<RawHealthCheck>,
    slow_start: Option<Spanned<f64>>,
}

/// A service that passed its own checks, with where it stands in the file
/// (its span, field name and the line of each backend's address).
type ValidatedService = (std::ops::Range<usize>, String, ServiceConfig, Vec<usize>);

impl Validator<'_> {
    /// Every `[[service]]`, then what they must not share or exceed.
    pub(super) fn validate_services(
        &mut self,
        raw: Vec<Spanned<RawService>>,
        instance: &InstanceConfig,
    ) -> Vec<ServiceConfig> {
        let mut services = Vec::new();
        let mut seen_keys: HashMap<(IpAddr, u16, Protocol), String> = HashMap::new();
        let mut seen_names = HashSet::new();
        for (index, raw_service) in raw.into_iter().enumerate() {
            let span_holder = raw_service.span();
            let raw_service = raw_service.into_inner();
            let field = format!("service[{index}]");
            if !seen_names.insert(raw_service.name.get_ref().clone()) {
                let name = raw_service.name.get_ref().clone();
                self.error(
                    &raw_service.name,
                    format!("{field}.name"),
                    format!("duplicate service name \"{name}\""),
                );
            }
            let backend_lines: Vec<usize> = raw_service
                .backends
                .iter()
                .map(|b| self.line_of(b.get_ref().address.span().start))
                .collect();
            let Some(service) = self.validate_service(&field, raw_service) else {
                continue;
            };
            let key = (service.vip, service.port, service.protocol);
            if let Some(other) = seen_keys.get(&key) {
                let line = self.line_of(span_holder.start);
                self.error_at(
                    line,
                    field.clone(),
                    format!(
                        "duplicate service: {}/{} is already defined by service \"{other}\"",
                        std::net::SocketAddr::new(service.vip, service.port),
                        service.protocol.name()
                    ),
                );
            } else {
                seen_keys.insert(key, service.name.clone());
            }
            services.push((span_holder, field, service, backend_lines));
        }
        self.check_vip_is_not_backend(&services);
        if services.len() > instance.max_services as usize {
            self.error_at(
                1,
                "instance.max_services",
                format!(
                    "{} services configured but max_services is {}",
                    services.len(),
                    instance.max_services
                ),
            );
        }
        let backend_count: usize = services.iter().map(|(_, _, s, _)| s.backends.len()).sum();
        if backend_count > instance.max_backends as usize {
            self.error_at(
                1,
                "instance.max_backends",
                format!(
                    "{backend_count} backends configured but max_backends is {}",
                    instance.max_backends
                ),
            );
        }
        services.into_iter().map(|(_, _, s, _)| s).collect()
    }

    fn check_vip_is_not_backend(&mut self, services: &[ValidatedService]) {
        let vips: HashSet<IpAddr> = services.iter().map(|(_, _, s, _)| s.vip).collect();
        for (_, field, service, lines) in services {
            for (i, backend) in service.backends.iter().enumerate() {
                if vips.contains(&backend.address) {
                    let line = lines.get(i).copied().unwrap_or(0);
                    self.error_at(
                        line,
                        format!("{field}.backend[{i}].address"),
                        format!(
                            "{} is a VIP of this load balancer; a VIP cannot also be a backend",
                            backend.address
                        ),
                    );
                }
            }
        }
    }

    fn validate_service(&mut self, field: &str, raw: RawService) -> Option<ServiceConfig> {
        let mut ok = true;
        let vip = match raw.vip.get_ref().parse::<IpAddr>() {
            Ok(vip) => Some(vip),
            Err(_) => {
                let value = raw.vip.get_ref().clone();
                self.error(
                    &raw.vip,
                    format!("{field}.vip"),
                    format!("\"{value}\" is not an IP address"),
                );
                None
            }
        };
        let mode = match raw.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("dsr") => ForwardingMode::Dsr,
            Some("nat") => ForwardingMode::Nat,
            Some("fullnat") => ForwardingMode::Fullnat,
            Some(other) => {
                if let Some(m) = &raw.mode {
                    self.error(
                        m,
                        format!("{field}.mode"),
                        format!(
                            "unknown mode \"{other}\" (supported: \"dsr\", \"nat\", \"fullnat\")"
                        ),
                    );
                }
                ok = false;
                ForwardingMode::Dsr
            }
        };
        let port = *raw.port.get_ref();
        if raw.backends.is_empty() {
            self.error(
                &raw.name,
                format!("{field}.backend"),
                "a service needs at least one backend",
            );
            ok = false;
        }
        let mut backends = Vec::new();
        let mut seen = HashSet::new();
        for (i, raw_backend) in raw.backends.iter().enumerate() {
            let bfield = format!("{field}.backend[{i}]");
            let raw_backend = raw_backend.get_ref();
            let address = match raw_backend.address.get_ref().parse::<IpAddr>() {
                Ok(a) if vip.is_some_and(|v: IpAddr| v.is_ipv4() != a.is_ipv4()) => {
                    self.error(
                        &raw_backend.address,
                        format!("{bfield}.address"),
                        format!(
                            "{a} and the VIP are of different address families (this balancer does not translate between IPv4 and IPv6)"
                        ),
                    );
                    ok = false;
                    continue;
                }
                Ok(a) => a,
                Err(_) => {
                    let value = raw_backend.address.get_ref().clone();
                    self.error(
                        &raw_backend.address,
                        format!("{bfield}.address"),
                        format!("\"{value}\" is not an IP address"),
                    );
                    ok = false;
                    continue;
                }
            };
            let backend_port = raw_backend.port.as_ref().map_or(port, |p| *p.get_ref());
            if let Some(p) = &raw_backend.port {
                if mode == ForwardingMode::Dsr && *p.get_ref() != port {
                    self.error(
                        p,
                        format!("{bfield}.port"),
                        format!(
                            "dsr cannot change the destination port: backend port {} differs from service port {port}",
                            p.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
            if mode != ForwardingMode::Dsr && port == 0 && backend_port != 0 {
                if let Some(p) = &raw_backend.port {
                    self.error(
                        p,
                        format!("{bfield}.port"),
                        "an all-ports service (port = 0) keeps each packet's port: leave the backend port out",
                    );
                    ok = false;
                }
            }
            if !seen.insert((address, backend_port)) {
                let backend = std::net::SocketAddr::new(address, backend_port);
                self.error(
                    &raw_backend.address,
                    format!("{bfield}.address"),
                    format!("duplicate backend {backend}"),
                );
                ok = false;
            }
            let weight = raw_backend.weight.as_ref().map_or(1, |w| *w.get_ref());
            if weight > 65_535 {
                if let Some(w) = &raw_backend.weight {
                    self.error(
                        w,
                        format!("{bfield}.weight"),
                        "weight must be at most 65535",
                    );
                }
                ok = false;
            }
            let check_field = format!("{bfield}.health_check");
            let raw_check = match (&raw_backend.health_check, &raw.health_check) {
                (Some(own), Some(defaults)) => Some(own.clone().over(defaults)),
                (Some(own), None) => Some(own.clone()),
                (None, defaults) => defaults.clone(),
            };
            let health_check = self.health_check(&check_field, raw_check);
            let slow_start = match &raw_backend.slow_start {
                Some(_) => self.seconds(
                    &raw_backend.slow_start,
                    &format!("{bfield}.slow_start"),
                    0.0,
                    (0.0, 3600.0),
                ),
                None => self.seconds(
                    &raw.slow_start,
                    &format!("{field}.slow_start"),
                    0.0,
                    (0.0, 3600.0),
                ),
            };
            backends.push(BackendConfig {
                address,
                port: backend_port,
                weight,
                health_check,
                slow_start,
            });
        }
        if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
            self.error(
                &raw.name,
                format!("{field}.backend"),
                "every backend has weight 0: the service could never forward",
            );
            ok = false;
        }
        let vip = vip?;
        ok.then(|| ServiceConfig {
            name: raw.name.into_inner(),
            vip,
            port,
            protocol: raw.protocol.into_inner(),
            mode,
            backends,
            on_all_down: raw.on_all_down.map_or(AllDown::Drop, Spanned::into_inner),
        })
    }
}
