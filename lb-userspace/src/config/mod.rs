//! The TOML configuration: the validated types every subsystem reads,
//! and errors that name the file, line and field (like `haproxy -c`).
//! Each section has its file (its types, raw form and validation);
//! `validate` walks the whole file. Nothing here imports a subsystem:
//! health, VRRP and the data plane read their settings from here.
use std::{
    fmt,
    path::{Path, PathBuf},
};

pub mod health;
pub mod instance;
pub mod service;
mod validate;
pub mod vrrp;

pub use instance::{
    InstanceConfig, XdpModeChoice, DEFAULT_CONNTRACK_ENTRIES, DEFAULT_MAX_BACKENDS,
    DEFAULT_MAX_SERVICES, DEFAULT_SNAT_PORTS,
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

#[cfg(test)]
mod tests;
