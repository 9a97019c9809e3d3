//! `health_check` tables (service defaults, per-backend overrides) and the
//! service options that go with them, validated by the config validator.
use super::validate::Validator;
use serde::Deserialize;
use std::{net::IpAddr, time::Duration};
use toml::Spanned;

/// A resolved check for one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Probe this address instead of the backend's.
    pub address: Option<IpAddr>,
    /// Probe this port instead of the backend's.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http(HttpCheck),
    Https(HttpCheck),
    /// `/bin/sh -c`; exit 0 = up. `{address}` and `{port}` are replaced.
    Command(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    /// Inclusive ranges of accepted status codes.
    pub expect_status: Vec<(u16, u16)>,
    pub expect_body: Option<String>,
    pub tls_skip_verify: bool,
}

/// What a service does when no backend is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllDown {
    /// Drop new flows (`drop_no_backend`).
    Drop,
    /// Keep forwarding to the backends of the last table.
    FailOpen,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub kind: Option<Spanned<String>>,
    pub interval: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<f64>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<String>>,
    pub expect_body: Option<Spanned<String>>,
    pub tls_skip_verify: Option<Spanned<bool>>,
    pub command: Option<Spanned<String>>,
}

impl RawHealthCheck {
    /// Field by field: `self` (the backend's) over `defaults` (the service's).
    pub fn over(self, defaults: &RawHealthCheck) -> RawHealthCheck {
        let d = defaults.clone();
        RawHealthCheck {
            kind: self.kind.or(d.kind),
            interval: self.interval.or(d.interval),
            timeout: self.timeout.or(d.timeout),
            rise: self.rise.or(d.rise),
            fall: self.fall.or(d.fall),
            address: self.address.or(d.address),
            port: self.port.or(d.port),
            method: self.method.or(d.method),
            path: self.path.or(d.path),
            host: self.host.or(d.host),
            expect_status: self.expect_status.or(d.expect_status),
            expect_body: self.expect_body.or(d.expect_body),
            tls_skip_verify: self.tls_skip_verify.or(d.tls_skip_verify),
            command: self.command.or(d.command),
        }
    }
}

/// Parses "200", "200-399" or "200,204,300-399".
pub fn parse_status_ranges(text: &str) -> Option<Vec<(u16, u16)>> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (low, high) = match part.split_once('-') {
                Some((l, h)) => (l.trim().parse().ok()?, h.trim().parse().ok()?),
                None => {
                    let code = part.parse().ok()?;
                    (code, code)
                }
            };
            ((100..=599).contains(&low) && (low..=599).contains(&high)).then_some((low, high))
        })
        .collect()
}

impl Validator<'_> {
    /// A backend's check; `None` when neither the service nor the backend
    /// configures one (the backend is then always considered up).
    pub(crate) fn health_check(
        &mut self,
        field: &str,
        raw: Option<RawHealthCheck>,
    ) -> Option<HealthCheck> {
        let raw = raw?;
        let kind_name = raw
            .kind
            .as_ref()
            .map_or("tcp", |k| k.get_ref().as_str())
            .to_owned();
        let http = |v: &mut Self| -> HttpCheck {
            let expect_status = match &raw.expect_status {
                None => vec![(200, 399)],
                Some(s) => parse_status_ranges(s.get_ref()).unwrap_or_else(|| {
                    v.error(
                        s,
                        format!("{field}.expect_status"),
                        format!(
                            "\"{}\" is not a status, a range like 200-399, or a list of them",
                            s.get_ref()
                        ),
                    );
                    vec![(200, 399)]
                }),
            };
            HttpCheck {
                method: raw
                    .method
                    .as_ref()
                    .map_or_else(|| "GET".to_owned(), |m| m.get_ref().to_uppercase()),
                path: raw
                    .path
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone()),
                host: raw.host.as_ref().map(|h| h.get_ref().clone()),
                expect_status,
                expect_body: raw.expect_body.as_ref().map(|b| b.get_ref().clone()),
                tls_skip_verify: raw.tls_skip_verify.as_ref().is_some_and(|t| *t.get_ref()),
            }
        };
        let kind = match kind_name.as_str() {
            "tcp" => CheckKind::Tcp,
            "http" => CheckKind::Http(http(self)),
            "https" => CheckKind::Https(http(self)),
            "command" => match &raw.command {
                Some(c) if !c.get_ref().trim().is_empty() => {
                    CheckKind::Command(c.get_ref().clone())
                }
                _ => {
                    let line = raw
                        .kind
                        .as_ref()
                        .map_or(0, |k| self.line_of(k.span().start));
                    self.error_at(
                        line,
                        format!("{field}.command"),
                        "a command check needs `command`",
                    );
                    CheckKind::Tcp
                }
            },
            other => {
                if let Some(k) = &raw.kind {
                    self.error(
                        k,
                        format!("{field}.kind"),
                        format!("unknown check kind \"{other}\" (tcp, http, https, command)"),
                    );
                }
                CheckKind::Tcp
            }
        };
        if let Some(p) = &raw.path {
            if !p.get_ref().starts_with('/') {
                self.error(p, format!("{field}.path"), "the path must start with /");
            }
        }
        let interval = self.seconds(
            &raw.interval,
            &format!("{field}.interval"),
            2.0,
            (0.01, 3600.0),
        );
        let timeout = self.seconds(
            &raw.timeout,
            &format!("{field}.timeout"),
            interval.as_secs_f64().min(1.0),
            (0.01, 3600.0),
        );
        let mut count = |value: &Option<Spanned<u32>>, name: &str, default: u32| match value {
            Some(c) if *c.get_ref() == 0 => {
                self.error(c, format!("{field}.{name}"), "must be at least 1");
                default
            }
            Some(c) => *c.get_ref(),
            None => default,
        };
        let rise = count(&raw.rise, "rise", 2);
        let fall = count(&raw.fall, "fall", 3);
        let address = raw
            .address
            .as_ref()
            .and_then(|a| match a.get_ref().parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.error(
                        a,
                        format!("{field}.address"),
                        format!("\"{}\" is not an IP address", a.get_ref()),
                    );
                    None
                }
            });
        Some(HealthCheck {
            kind,
            interval,
            timeout,
            rise,
            fall,
            address,
            port: raw.port.as_ref().map(|p| *p.get_ref()),
        })
    }
}
