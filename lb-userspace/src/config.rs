//! The TOML configuration: parsing, validation, and errors that name the
//! file, line and field (like `haproxy -c`).
use serde::Deserialize;
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};
use toml::Spanned;

pub const DEFAULT_MAX_SERVICES: u32 = 64;
pub const DEFAULT_MAX_BACKENDS: u32 = 1024;
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
const MAX_RING_SIZE: u32 = 1 << 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub instance: InstanceConfig,
    pub services: Vec<ServiceConfig>,
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
    pub vip: Ipv4Addr,
    /// 0 = every port of the VIP.
    pub port: u16,
    pub protocol: Protocol,
    pub mode: ForwardingMode,
    pub backends: Vec<BackendConfig>,
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
    Dsr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    vip: Spanned<String>,
    port: Spanned<u16>,
    protocol: Spanned<Protocol>,
    mode: Option<Spanned<String>>,
    #[serde(default, rename = "backend")]
    backends: Vec<Spanned<RawBackend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    port: Option<Spanned<u16>>,
    weight: Option<Spanned<u32>>,
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

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error_at(&mut self, line: usize, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    fn error<T>(&mut self, at: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) {
        let line = self.line_of(at.span().start);
        self.error_at(line, field, message);
    }

    fn validate(&mut self, raw: RawConfig, env: &dyn Environment) -> Config {
        let instance = self.validate_instance(raw.instance.into_inner(), env);
        let mut services = Vec::new();
        let mut seen_keys: HashMap<(Ipv4Addr, u16, Protocol), String> = HashMap::new();
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
                        "duplicate service: {}:{}/{} is already defined by service \"{other}\"",
                        service.vip,
                        service.port,
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
        Config {
            instance,
            services: services.into_iter().map(|(_, _, s, _)| s).collect(),
        }
    }

    fn check_vip_is_not_backend(&mut self, services: &[ValidatedService]) {
        let vips: HashSet<Ipv4Addr> = services.iter().map(|(_, _, s, _)| s.vip).collect();
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
        InstanceConfig {
            name,
            interface,
            xdp_mode: raw.xdp_mode.map_or(XdpModeChoice::Auto, |m| m.into_inner()),
            maglev_table_size,
            max_services,
            max_backends,
            conntrack_entries,
        }
    }

    fn validate_service(&mut self, field: &str, raw: RawService) -> Option<ServiceConfig> {
        let mut ok = true;
        let vip = match raw.vip.get_ref().parse::<IpAddr>() {
            Ok(IpAddr::V4(vip)) => Some(vip),
            Ok(IpAddr::V6(_)) => {
                self.error(
                    &raw.vip,
                    format!("{field}.vip"),
                    "IPv6 VIPs are not supported yet",
                );
                None
            }
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
        if let Some(mode) = &raw.mode {
            if mode.get_ref() != "dsr" {
                let value = mode.get_ref().clone();
                self.error(
                    mode,
                    format!("{field}.mode"),
                    format!("unsupported mode \"{value}\" (supported: \"dsr\")"),
                );
                ok = false;
            }
        }
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
                Ok(IpAddr::V4(a)) => a,
                Ok(IpAddr::V6(_)) => {
                    self.error(
                        &raw_backend.address,
                        format!("{bfield}.address"),
                        "IPv6 backends are not supported yet",
                    );
                    ok = false;
                    continue;
                }
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
                if *p.get_ref() != port {
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
            if !seen.insert((address, backend_port)) {
                self.error(
                    &raw_backend.address,
                    format!("{bfield}.address"),
                    format!("duplicate backend {address}:{backend_port}"),
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
            backends.push(BackendConfig {
                address,
                port: backend_port,
                weight,
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
            mode: ForwardingMode::Dsr,
            backends,
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
#[path = "config_tests.rs"]
mod tests;
