//! The validator: walks the whole file section by section, collecting
//! every error with its line (the sections' own checks are in their
//! files).
use super::{
    instance::RawInstance,
    service::{Protocol, RawService},
    vrrp::{RawVrrp, RawVrrpScript},
    Config, ConfigError, Environment,
};
use crate::proxy::config::{
    validate_beside, ErrorSink, L4Service, RawDefaults, RawFrontend, RawGlobal, RawProxy,
    RawSection,
};
use serde::Deserialize;
use std::{net::IpAddr, path::Path, time::Duration};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    instance: Spanned<RawInstance>,
    #[serde(default, rename = "service")]
    services: Vec<Spanned<RawService>>,
    #[serde(default)]
    vrrp_script: Vec<Spanned<RawVrrpScript>>,
    #[serde(default)]
    vrrp: Vec<Spanned<RawVrrp>>,
    // The proxy: HAProxy's sections, validated by `proxy::config`.
    global: Option<Spanned<RawGlobal>>,
    defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    frontend: Vec<Spanned<RawFrontend>>,
    #[serde(default)]
    backend: Vec<Spanned<RawSection>>,
    #[serde(default)]
    listen: Vec<Spanned<RawSection>>,
    /// The stats page and /metrics, validated by `stats::config`.
    stats: Option<Spanned<crate::stats::config::RawStats>>,
    bgp: Option<Spanned<super::bgp::RawBgp>>,
}

pub(crate) struct Validator<'a> {
    /// Where each line starts, computed once: finding an item's line is
    /// a binary search, so validation stays linear in the file's size
    /// (scanning from the start per item made 50,000 backends take 18 s).
    line_starts: Vec<usize>,
    file: &'a Path,
    pub(super) errors: Vec<ConfigError>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(text: &'a str, file: &'a Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Validator {
            line_starts,
            file,
            errors: Vec::new(),
        }
    }

    /// The 1-based line of byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
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

    pub(super) fn validate(&mut self, raw: RawConfig, env: &dyn Environment) -> Config {
        let section_line = self.line_of(raw.instance.span().start);
        let instance = self.validate_instance(raw.instance.into_inner(), section_line, env);
        let services = self.validate_services(raw.services, &instance);
        let vrrp = self.validate_vrrp_sections(raw.vrrp_script, raw.vrrp, &instance, env);
        let l4: Vec<L4Service> = services
            .iter()
            .filter(|s| s.protocol == Protocol::Tcp)
            .map(|s| L4Service {
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
            })
            .collect();
        let proxy = RawProxy {
            global: raw.global,
            defaults: raw.defaults,
            frontend: raw.frontend,
            backend: raw.backend,
            listen: raw.listen,
        };
        let proxy = validate_beside(proxy, &l4, self);
        let stats = raw
            .stats
            .as_ref()
            .and_then(|raw| crate::stats::config::validate(raw, self));
        let mut service_vips: Vec<IpAddr> = Vec::new();
        for service in &services {
            if !service_vips.contains(&service.vip) {
                service_vips.push(service.vip);
            }
        }
        let bgp = raw.bgp.map(|bgp| self.validate_bgp(bgp, &service_vips));
        Config {
            instance,
            services,
            vrrp,
            proxy,
            stats,
            bgp,
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

    /// An optional whole number that must lie in `range` (its default
    /// when absent or out of range, which is reported).
    pub(crate) fn bounded(
        &mut self,
        value: &Option<Spanned<u32>>,
        field: &str,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        match value {
            None => default,
            Some(v) if range.contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.error(
                    v,
                    field,
                    format!(
                        "{} is outside {}..={}",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn address(&mut self, value: &Spanned<String>, field: &str) -> Option<IpAddr> {
        match value.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let text = value.get_ref().clone();
                self.error(value, field, format!("\"{text}\" is not an IP address"));
                None
            }
        }
    }
}

/// The proxy sections report through the same validator.
impl ErrorSink for Validator<'_> {
    fn report(&mut self, span: std::ops::Range<usize>, field: &str, message: String) {
        let line = self.line_of(span.start);
        self.error_at(line, field, message);
    }
    fn config_file(&self) -> Option<&Path> {
        Some(self.file)
    }
}
