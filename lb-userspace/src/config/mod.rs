//! The TOML configuration: parsing, validation, and errors that name the
//! file, line and field (like `haproxy -c`).
use serde::Deserialize;
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};
use toml::Spanned;

pub mod health;
pub mod vrrp;

use crate::vrrp::packet::Version;
use health::{AllDown, HealthCheck, RawHealthCheck};
use vrrp::{
    GarpConfig, RawTrack, RawVrrp, RawVrrpScript, TrackFile, TrackNamed, TrackScript, VrrpConfig,
    VrrpScript, MAX_WEIGHT,
};

pub const DEFAULT_MAX_SERVICES: u32 = 64;
pub const DEFAULT_MAX_BACKENDS: u32 = 1024;
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
const MAX_RING_SIZE: u32 = 1 << 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub instance: InstanceConfig,
    pub services: Vec<ServiceConfig>,
    /// VRRP instances; none = this node always forwards.
    pub vrrp: Vec<VrrpConfig>,
}

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

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// What validation needs to know about the machine it runs on.
pub trait Environment {
    fn interface_exists(&self, name: &str) -> bool;
}

/// The machine as seen from the current network namespace.
pub struct HostEnvironment;

impl Environment for HostEnvironment {
    fn interface_exists(&self, name: &str) -> bool {
        nix::net::if_::if_nametoindex(name).is_ok()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instance: Spanned<RawInstance>,
    #[serde(default, rename = "service")]
    services: Vec<Spanned<RawService>>,
    #[serde(default)]
    vrrp_script: Vec<Spanned<RawVrrpScript>>,
    #[serde(default)]
    vrrp: Vec<Spanned<RawVrrp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
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

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 0,
                field: "file".into(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&text, path, env)
    }

    /// Validates `text` as the contents of `path`.
    pub fn parse(text: &str, path: &Path, env: &dyn Environment) -> Result<Config, ConfigErrors> {
        let mut v = Validator {
            text,
            file: path,
            errors: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map_or(0, |s| v.line_of(s.start));
                let message = e.message().to_owned();
                v.error_at(line, "syntax", message);
                return Err(ConfigErrors(v.errors));
            }
        };
        let config = v.validate(raw, env);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            v.errors.sort_by_key(|e| e.line);
            Err(ConfigErrors(v.errors))
        }
    }
}

/// A service that passed its own checks, with where it stands in the file
/// (its span, field name and the line of each backend's address).
type ValidatedService = (std::ops::Range<usize>, String, ServiceConfig, Vec<usize>);

pub(crate) struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(crate) fn error_at(
        &mut self,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn error<T>(
        &mut self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line_of(at.span().start);
        self.error_at(line, field, message);
    }

    fn validate(&mut self, raw: RawConfig, env: &dyn Environment) -> Config {
        let instance = self.validate_instance(raw.instance.into_inner(), env);
        let mut services = Vec::new();
        let mut seen_keys: HashMap<(IpAddr, u16, Protocol), String> = HashMap::new();
        let mut seen_names = HashSet::new();
        for (index, raw_service) in raw.services.into_iter().enumerate() {
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
        let scripts = self.validate_scripts(raw.vrrp_script);
        let mut vrrp = Vec::new();
        let mut seen_vrrp = HashSet::new();
        for (index, raw_vrrp) in raw.vrrp.into_iter().enumerate() {
            let raw_vrrp = raw_vrrp.into_inner();
            let field = format!("vrrp[{index}]");
            if let Some(v) = self.validate_vrrp(&field, raw_vrrp, &instance, &scripts, env) {
                if !seen_vrrp.insert((
                    v.interface.clone(),
                    v.vrid,
                    v.virtual_ipaddress[0].is_ipv4(),
                )) {
                    self.error_at(
                        1,
                        field,
                        format!("vrid {} is used twice on {}", v.vrid, v.interface),
                    );
                } else if vrrp.iter().any(|o: &VrrpConfig| o.name == v.name) {
                    self.error_at(1, field, format!("duplicate vrrp name \"{}\"", v.name));
                } else {
                    vrrp.push(v);
                }
            }
        }
        Config {
            instance,
            services: services.into_iter().map(|(_, _, s, _)| s).collect(),
            vrrp,
        }
    }

    pub(crate) fn seconds(
        &mut self,
        value: &Option<Spanned<f64>>,
        field: &str,
        default: f64,
        range: (f64, f64),
    ) -> Duration {
        match value {
            None => Duration::from_secs_f64(default),
            Some(v) if *v.get_ref() >= range.0 && *v.get_ref() <= range.1 => {
                Duration::from_secs_f64(*v.get_ref())
            }
            Some(v) => {
                self.error(
                    v,
                    field,
                    format!(
                        "{} seconds is outside {}..={}",
                        v.get_ref(),
                        range.0,
                        range.1
                    ),
                );
                Duration::from_secs_f64(default)
            }
        }
    }

    fn weight(&mut self, value: &Option<Spanned<i32>>, field: &str) -> Option<i32> {
        let v = value.as_ref()?;
        if v.get_ref().abs() > MAX_WEIGHT {
            self.error(
                v,
                field,
                format!(
                    "weight {} is outside -{MAX_WEIGHT}..={MAX_WEIGHT}",
                    v.get_ref()
                ),
            );
            return Some(0);
        }
        Some(*v.get_ref())
    }

    fn validate_scripts(&mut self, raw: Vec<Spanned<RawVrrpScript>>) -> Vec<VrrpScript> {
        let mut scripts: Vec<VrrpScript> = Vec::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let raw = raw.into_inner();
            let field = format!("vrrp_script[{index}]");
            let name = raw.name.get_ref().clone();
            if scripts.iter().any(|s| s.name == name) {
                self.error(
                    &raw.name,
                    format!("{field}.name"),
                    format!("duplicate vrrp_script \"{name}\""),
                );
                continue;
            }
            if raw.script.get_ref().trim().is_empty() {
                self.error(&raw.script, format!("{field}.script"), "empty command");
            }
            let interval = self.seconds(
                &raw.interval,
                &format!("{field}.interval"),
                1.0,
                (0.01, 3600.0),
            );
            let timeout = self.seconds(
                &raw.timeout,
                &format!("{field}.timeout"),
                interval.as_secs_f64(),
                (0.01, 3600.0),
            );
            let mut count = |v: &Option<Spanned<u32>>, name: &str| match v {
                Some(c) if *c.get_ref() == 0 => {
                    self.error(c, format!("{field}.{name}"), "must be at least 1");
                    1
                }
                Some(c) => *c.get_ref(),
                None => 1,
            };
            let rise = count(&raw.rise, "rise");
            let fall = count(&raw.fall, "fall");
            let weight = self
                .weight(&raw.weight, &format!("{field}.weight"))
                .unwrap_or(0);
            scripts.push(VrrpScript {
                name,
                script: raw.script.into_inner(),
                interval,
                timeout,
                rise,
                fall,
                weight,
            });
        }
        scripts
    }

    fn address(&mut self, value: &Spanned<String>, field: &str) -> Option<IpAddr> {
        match value.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let text = value.get_ref().clone();
                self.error(value, field, format!("\"{text}\" is not an IP address"));
                None
            }
        }
    }

    fn validate_vrrp(
        &mut self,
        field: &str,
        raw: RawVrrp,
        instance: &InstanceConfig,
        scripts: &[VrrpScript],
        env: &dyn Environment,
    ) -> Option<VrrpConfig> {
        let before = self.errors.len();
        let version = match raw.version.as_ref().map(|v| *v.get_ref()) {
            None | Some(2) => Version::V2,
            Some(3) => Version::V3,
            Some(other) => {
                let v = raw.version.as_ref()?;
                self.error(
                    v,
                    format!("{field}.version"),
                    format!("version {other}: only 2 and 3 exist"),
                );
                Version::V2
            }
        };
        let vrid = *raw.vrid.get_ref();
        if !(1..=255).contains(&vrid) {
            self.error(
                &raw.vrid,
                format!("{field}.vrid"),
                format!("vrid {vrid} is outside 1..=255"),
            );
        }
        let priority = raw.priority.as_ref().map_or(100, |p| *p.get_ref());
        if let Some(p) = &raw.priority {
            if !(1..=255).contains(p.get_ref()) {
                self.error(
                    p,
                    format!("{field}.priority"),
                    format!("priority {} is outside 1..=255", p.get_ref()),
                );
            }
        }
        let advert = raw.advert_int.as_ref().map_or(1.0, |a| *a.get_ref());
        let advert_int_cs = (advert * 100.0).round();
        let advert_ok = match version {
            Version::V2 => advert.fract() == 0.0 && (1.0..=255.0).contains(&advert),
            Version::V3 => {
                (1.0..=4095.0).contains(&advert_int_cs)
                    && (advert * 100.0 - advert_int_cs).abs() < 1e-6
            }
        };
        if !advert_ok {
            let line = raw.advert_int.as_ref().map_or_else(
                || self.line_of(raw.vrid.span().start),
                |a| self.line_of(a.span().start),
            );
            let allowed = match version {
                Version::V2 => "whole seconds 1..=255 for version 2",
                Version::V3 => "0.01..=40.95 seconds in steps of 0.01 for version 3",
            };
            self.error_at(
                line,
                format!("{field}.advert_int"),
                format!("{advert} is not allowed: {allowed}"),
            );
        }
        if let Some(pass) = &raw.auth_pass {
            if version == Version::V3 {
                self.error(
                    pass,
                    format!("{field}.auth_pass"),
                    "VRRPv3 has no authentication (RFC 5798); remove auth_pass or use version = 2",
                );
            }
        }
        let interface = raw
            .interface
            .as_ref()
            .map_or_else(|| instance.interface.clone(), |i| i.get_ref().clone());
        if let Some(i) = &raw.interface {
            if !env.interface_exists(i.get_ref()) {
                self.error(
                    i,
                    format!("{field}.interface"),
                    format!("unknown interface \"{}\"", i.get_ref()),
                );
            }
        }
        let mut vips = Vec::new();
        for (i, vip) in raw.virtual_ipaddress.get_ref().iter().enumerate() {
            if let Some(a) = self.address(vip, &format!("{field}.virtual_ipaddress[{i}]")) {
                vips.push(a);
            }
        }
        if raw.virtual_ipaddress.get_ref().is_empty() {
            self.error(
                &raw.virtual_ipaddress,
                format!("{field}.virtual_ipaddress"),
                "at least one address is needed",
            );
        }
        let family_v4 = vips.first().is_none_or(IpAddr::is_ipv4);
        if vips.iter().any(|a| a.is_ipv4() != family_v4) {
            self.error(
                &raw.virtual_ipaddress,
                format!("{field}.virtual_ipaddress"),
                "IPv4 and IPv6 addresses cannot share one VRRP instance",
            );
        }
        if !family_v4 && version == Version::V2 {
            self.error(
                &raw.virtual_ipaddress,
                format!("{field}.virtual_ipaddress"),
                "VRRPv2 is IPv4 only; use version = 3 for IPv6 addresses",
            );
        }
        let unicast_src_ip = match &raw.unicast_src_ip {
            Some(a) => self.address(a, &format!("{field}.unicast_src_ip")),
            None => None,
        };
        let mut unicast_peer = Vec::new();
        for (i, peer) in raw.unicast_peer.iter().enumerate() {
            if let Some(a) = self.address(peer, &format!("{field}.unicast_peer[{i}]")) {
                if a.is_ipv4() != family_v4 {
                    self.error(
                        peer,
                        format!("{field}.unicast_peer[{i}]"),
                        "address family differs from the virtual addresses",
                    );
                }
                unicast_peer.push(a);
            }
        }
        let mut track_script = Vec::new();
        for (i, track) in raw.track_script.iter().enumerate() {
            let tfield = format!("{field}.track_script[{i}]");
            let Some(name) = self.track_name(track, &tfield) else {
                continue;
            };
            match scripts.iter().find(|s| s.name == name) {
                Some(script) => {
                    let weight = self
                        .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                        .unwrap_or(script.weight);
                    track_script.push(TrackScript {
                        script: script.clone(),
                        weight,
                    });
                }
                None => self.error(track, tfield, format!("no vrrp_script named \"{name}\"")),
            }
        }
        let mut track_interface = Vec::new();
        for (i, track) in raw.track_interface.iter().enumerate() {
            let tfield = format!("{field}.track_interface[{i}]");
            let Some(name) = self.track_name(track, &tfield) else {
                continue;
            };
            if !env.interface_exists(&name) {
                self.error(
                    track,
                    tfield.clone(),
                    format!("unknown interface \"{name}\""),
                );
            }
            let weight = self
                .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                .unwrap_or(0);
            track_interface.push(TrackNamed { name, weight });
        }
        let mut track_process = Vec::new();
        for (i, track) in raw.track_process.iter().enumerate() {
            let tfield = format!("{field}.track_process[{i}]");
            let Some(name) = self.track_name(track, &tfield) else {
                continue;
            };
            let weight = self
                .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                .unwrap_or(0);
            track_process.push(TrackNamed { name, weight });
        }
        let mut track_file = Vec::new();
        for (i, track) in raw.track_file.iter().enumerate() {
            let tfield = format!("{field}.track_file[{i}]");
            match &track.get_ref().path {
                Some(path) => {
                    let weight = self
                        .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                        .unwrap_or(1);
                    track_file.push(TrackFile {
                        path: PathBuf::from(path.get_ref()),
                        weight,
                    });
                }
                None => self.error(track, tfield, "needs a path"),
            }
        }
        let preempt_delay = self.seconds(
            &raw.preempt_delay,
            &format!("{field}.preempt_delay"),
            0.0,
            (0.0, 1000.0),
        );
        let delay = self.seconds(
            &raw.garp_master_delay,
            &format!("{field}.garp_master_delay"),
            5.0,
            (0.0, 3600.0),
        );
        let refresh = self.seconds(
            &raw.garp_master_refresh,
            &format!("{field}.garp_master_refresh"),
            0.0,
            (0.0, 86400.0),
        );
        let repeat = raw.garp_master_repeat.as_ref().map_or(5, |r| *r.get_ref());
        if self.errors.len() > before {
            return None;
        }
        Some(VrrpConfig {
            name: raw.name.into_inner(),
            interface,
            version,
            vrid: vrid as u8,
            priority: priority as u8,
            advert_int_cs: advert_int_cs as u16,
            preempt: !raw.nopreempt.as_ref().is_some_and(|n| *n.get_ref()),
            preempt_delay,
            auth_pass: raw.auth_pass.map(Spanned::into_inner),
            virtual_ipaddress: vips,
            unicast_src_ip,
            unicast_peer,
            garp: GarpConfig {
                repeat,
                delay,
                refresh,
            },
            notify: raw.notify.map(|n| PathBuf::from(n.into_inner())),
            track_script,
            track_interface,
            track_process,
            track_file,
        })
    }

    fn track_name(&mut self, track: &Spanned<RawTrack>, field: &str) -> Option<String> {
        match &track.get_ref().name {
            Some(name) if !name.get_ref().is_empty() => Some(name.get_ref().clone()),
            _ => {
                self.error(track, field, "needs a name");
                None
            }
        }
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

    fn validate_instance(&mut self, raw: RawInstance, env: &dyn Environment) -> InstanceConfig {
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
        let default_ports = crate::dataplane::programmer::Tunables::default().snat_ports;
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

#[cfg(test)]
mod tests;
