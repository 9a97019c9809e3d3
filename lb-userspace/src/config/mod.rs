//! The TOML configuration: the validated types every subsystem reads,
//! and errors that name the file, line and field (like `haproxy -c`).
//! Each section has its file (its types, raw form and validation);
//! `validate` walks the whole file. Nothing here imports a subsystem:
//! health, VRRP and the data plane read their settings from here.
use std::{
    fmt,
    path::{Path, PathBuf},
};

pub mod bgp;
pub mod health;
pub mod instance;
pub mod service;
mod validate;
pub mod vrrp;

pub use instance::{
    InstanceConfig, MapSizeSettings, XdpModeChoice, DEFAULT_CONNTRACK_ENTRIES,
    DEFAULT_MAX_BACKENDS, DEFAULT_MAX_SERVICES, DEFAULT_SNAT_PORTS,
};
pub use service::{BackendConfig, ForwardingMode, Protocol, ServiceConfig};
use validate::{RawConfig, Validator};
use vrrp::VrrpConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub instance: InstanceConfig,
    pub services: Vec<ServiceConfig>,
    /// VRRP instances; none = this node always forwards.
    pub vrrp: Vec<VrrpConfig>,
    /// The L7/TCP proxy's frontends and backends (HAProxy's sections).
    pub proxy: crate::proxy::config::ProxyConfig,
    /// `[stats]`: the stats page and /metrics (none: not served).
    pub stats: Option<crate::stats::config::StatsConfig>,
    /// VIP announcements over BGP through gobgpd (`[bgp]`); none = off.
    pub bgp: Option<bgp::BgpConfig>,
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
    /// Its memory and CPUs, to check what the maps would take; `None`
    /// when unknown (the estimate is then not checked).
    fn machine(&self) -> Option<Machine>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub memory_bytes: u64,
    /// Possible CPUs: a per-CPU map allocates a value for each.
    pub cpus: u64,
}

/// The machine as seen from the current network namespace.
pub struct HostEnvironment;

impl Environment for HostEnvironment {
    fn interface_exists(&self, name: &str) -> bool {
        nix::net::if_::if_nametoindex(name).is_ok()
    }

    fn machine(&self) -> Option<Machine> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|text| possible_cpus(&text))
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u64)
            })?;
        Some(Machine {
            memory_bytes: kib * 1024,
            cpus,
        })
    }
}

/// The number of CPUs in a kernel CPU list such as "0-3,6".
fn possible_cpus(list: &str) -> Option<u64> {
    list.trim().split(',').try_fold(0u64, |total, part| {
        let count = match part.split_once('-') {
            Some((low, high)) => {
                let (low, high): (u64, u64) = (low.parse().ok()?, high.parse().ok()?);
                high.checked_sub(low)? + 1
            }
            None => {
                part.parse::<u64>().ok()?;
                1
            }
        };
        total.checked_add(count)
    })
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
        let mut v = Validator::new(text, path);
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map_or(1, |s| v.line_of(s.start));
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

#[cfg(test)]
mod range_tests;
#[cfg(test)]
pub(crate) mod tests;
