//! Validation of the proxy sections: `[defaults]` inheritance (HAProxy:
//! a section takes every setting it does not make itself from the defaults),
//! names, binds, modes, rules and the backends they name.
use super::options::*;
use super::raw::{RawProxy, RawSection};
use super::sides::*;
use super::{servers, timeouts, ErrorSink, Global, ProxyConfig};
use crate::proxy::balance::Balance;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    ops::Range,
};
use toml::Spanned;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

/// Fields only a frontend side takes, only a backend side takes, and none
/// `[defaults]` takes.
pub(super) const FRONTEND_ONLY: &[&str] = &[
    "bind",
    "use_backend",
    "default_backend",
    "maxconn",
    "tcp_request",
];
pub(super) const BACKEND_ONLY: &[&str] = &[
    "balance",
    "server",
    "httpchk",
    "http_check_expect",
    "tcp_check",
    "allbackups",
    "retries",
    "redispatch",
    "default_server",
];
pub(super) const NOT_IN_DEFAULTS: &[&str] = &[
    "name",
    "bind",
    "acl",
    "use_backend",
    "default_backend",
    "http_request",
    "http_response",
    "tcp_request",
    "server",
];

/// Validates the proxy sections; problems go to `sink`. The result is only
/// meaningful when `sink` received nothing.
pub fn validate(raw: RawProxy, sink: &mut dyn ErrorSink) -> ProxyConfig {
    validate_beside(raw, &[], sink)
}

/// An XDP TCP service of the same file: a frontend may not bind its VIP and
/// port (the XDP program takes those packets before the kernel sees them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Service {
    pub name: String,
    pub vip: IpAddr,
    /// 0 = every port of the VIP.
    pub port: u16,
}

/// [`validate`], also refusing binds that an XDP service in `l4` takes.
pub fn validate_beside(raw: RawProxy, l4: &[L4Service], sink: &mut dyn ErrorSink) -> ProxyConfig {
    let global = raw
        .global
        .map(|g| global(g.into_inner(), sink))
        .unwrap_or_default();
    let (defaults, defaults_span) = match raw.defaults {
        Some(d) => {
            check_fields(d.get_ref(), Kind::Defaults, "defaults", sink);
            check_defaults(d.get_ref(), &global, sink);
            let span = d.span();
            (d.into_inner(), span)
        }
        None => (RawSection::default(), 0..0),
    };
    // [defaults] was checked once above; sections inheriting a bad value
    // do not report it again.
    let sink = &mut SkipSpan {
        inner: sink,
        skip: defaults_span,
    };
    // Backends first (then listen sections): rules name them by index.
    let backend_sections: Vec<(Kind, usize, &Spanned<RawSection>)> = raw
        .backend
        .iter()
        .enumerate()
        .map(|(i, s)| (Kind::Backend, i, s))
        .chain(
            raw.listen
                .iter()
                .enumerate()
                .map(|(i, s)| (Kind::Listen, i, s)),
        )
        .collect();
    let frontend_sections: Vec<(Kind, usize, &Spanned<RawSection>)> = raw
        .frontend
        .iter()
        .enumerate()
        .map(|(i, s)| (Kind::Frontend, i, s))
        .chain(
            raw.listen
                .iter()
                .enumerate()
                .map(|(i, s)| (Kind::Listen, i, s)),
        )
        .collect();
    let mut backends = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for &(kind, index, section) in &backend_sections {
        let field = field_name(kind, index);
        let name = section_name(section, &field, &mut seen, sink);
        if kind == Kind::Backend {
            check_fields(section.get_ref(), kind, &field, sink);
        }
        backends.push(backend(
            section.get_ref(),
            &defaults,
            &global,
            kind,
            name,
            &field,
            sink,
        ));
    }
    let backend_names: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
    let resolve = |name: &str| backend_names.iter().position(|n| n == name);
    let mut frontends = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut bound: HashMap<SocketAddr, String> = HashMap::new();
    for &(kind, index, section) in &frontend_sections {
        let field = field_name(kind, index);
        let name = section_name(section, &field, &mut seen, sink);
        check_fields(section.get_ref(), kind, &field, sink);
        let mut fe = frontend(
            section.get_ref(),
            &defaults,
            kind,
            &global,
            name,
            &field,
            &resolve,
            sink,
        );
        let raw_binds = section
            .get_ref()
            .bind
            .iter()
            .flat_map(|b| b.get_ref().iter());
        for (i, text) in raw_binds.enumerate() {
            let Ok(address) = parse_bind(text.get_ref()) else {
                continue;
            };
            let taken = l4
                .iter()
                .find(|s| s.vip == address.ip() && (s.port == address.port() || s.port == 0));
            if let Some(service) = taken {
                sink.report(
                    text.span(),
                    &format!("{field}.bind[{i}]"),
                    format!(
                        "{address} is taken by XDP service \"{}\" (tcp {}:{}): its packets never reach the proxy; use another address or port",
                        service.name,
                        service.vip,
                        service.port
                    ),
                );
            }
        }
        for bind in &fe.binds {
            if let Some(other) = bound.insert(bind.address, fe.name.clone()) {
                let span = section
                    .get_ref()
                    .bind
                    .as_ref()
                    .map_or(section.span(), |b| b.span());
                sink.report(
                    span,
                    &format!("{field}.bind"),
                    format!("{} is already bound by frontend \"{other}\"", bind.address),
                );
            }
        }
        check_backend_modes(&mut fe, &backends, section, &field, sink);
        frontends.push(fe);
    }
    ProxyConfig {
        global,
        frontends,
        backends,
    }
}

pub(super) struct SkipSpan<'a> {
    inner: &'a mut dyn ErrorSink,
    skip: Range<usize>,
}

impl ErrorSink for SkipSpan<'_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        if !(self.skip.start <= span.start && span.end <= self.skip.end && !self.skip.is_empty()) {
            self.inner.report(span, field, message);
        }
    }
    fn config_file(&self) -> Option<&std::path::Path> {
        self.inner.config_file()
    }
}

/// Reports every bad value of `[defaults]`, whether or not a section
/// inherits it.
pub(super) fn check_defaults(raw: &RawSection, global: &Global, sink: &mut dyn ErrorSink) {
    let empty = RawSection::default();
    let mode = mode(raw, &empty, "defaults", sink);
    let timeouts = raw
        .timeout
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    timeouts::frontend(&timeouts, "defaults.timeout", sink);
    timeouts::backend(&timeouts, "defaults.timeout", sink);
    common(raw, &empty, mode, "defaults", sink);
    health(raw, &empty, "defaults", sink);
    if let Some(b) = &raw.balance {
        if let Err(message) = Balance::parse(b.get_ref()) {
            sink.report(b.span(), "defaults.balance", message);
        }
    }
    check_count(&raw.retries, "defaults.retries", 0, 100, sink);
    check_count(&raw.maxconn, "defaults.maxconn", 1, 10_000_000, sink);
    if let Some(d) = &raw.default_server {
        servers::server_defaults(
            d.get_ref(),
            &global.tls_paths,
            "defaults.default_server",
            sink,
        );
    }
}

pub(super) fn check_count(
    value: &Option<Spanned<i64>>,
    field: &str,
    low: i64,
    high: i64,
    sink: &mut dyn ErrorSink,
) {
    if let Some(v) = value {
        if !(low..=high).contains(v.get_ref()) {
            sink.report(
                v.span(),
                field,
                format!("{} is outside {low}..={high}", v.get_ref()),
            );
        }
    }
}

pub(super) fn field_name(kind: Kind, index: usize) -> String {
    match kind {
        Kind::Frontend => format!("frontend[{index}]"),
        Kind::Backend => format!("backend[{index}]"),
        Kind::Listen => format!("listen[{index}]"),
        Kind::Defaults => "defaults".into(),
    }
}

pub(super) fn section_name(
    section: &Spanned<RawSection>,
    field: &str,
    seen: &mut HashMap<String, String>,
    sink: &mut dyn ErrorSink,
) -> String {
    let Some(name) = &section.get_ref().name else {
        sink.report(
            section.span(),
            &format!("{field}.name"),
            "a section needs a name".into(),
        );
        return String::new();
    };
    let text = name.get_ref();
    if !servers::valid_name(text) {
        sink.report(
            name.span(),
            &format!("{field}.name"),
            format!("\"{text}\" must be 1 to 64 characters of A-Z a-z 0-9 - _ . :"),
        );
    } else if let Some(other) = seen.insert(text.clone(), field.to_owned()) {
        sink.report(
            name.span(),
            &format!("{field}.name"),
            format!("duplicate name \"{text}\" (also {other})"),
        );
    }
    text.clone()
}

/// Spans of the fields a section sets, by name.
pub(super) fn present(raw: &RawSection) -> Vec<(&'static str, Range<usize>)> {
    let mut out = Vec::new();
    macro_rules! field {
        ($($name:ident),*) => {$(
            if let Some(v) = &raw.$name { out.push((stringify!($name), v.span())); }
        )*};
    }
    field!(
        name,
        bind,
        mode,
        acl,
        use_backend,
        default_backend,
        http_request,
        http_response,
        tcp_request,
        maxconn,
        timeout,
        log,
        log_format,
        dontlognull,
        http_connection_mode,
        forwardfor,
        forwarded,
        redispatch,
        retries,
        balance,
        httpchk,
        http_check_expect,
        tcp_check,
        allbackups,
        default_server
    );
    if let Some(server) = raw.server.first() {
        out.push(("server", server.span()));
    }
    out
}

pub(super) fn check_fields(raw: &RawSection, kind: Kind, field: &str, sink: &mut dyn ErrorSink) {
    for (name, span) in present(raw) {
        let why = match kind {
            Kind::Defaults if NOT_IN_DEFAULTS.contains(&name) => {
                "belongs in a frontend, backend or listen section, not in [defaults]"
            }
            Kind::Frontend if BACKEND_ONLY.contains(&name) => {
                "is a backend setting: set it on the backend (or [defaults])"
            }
            Kind::Backend if FRONTEND_ONLY.contains(&name) => match name {
                "maxconn" => "limits a frontend's connections; a backend limits each server with server.maxconn",
                _ => "is a frontend setting: set it on a frontend or listen section",
            },
            _ => continue,
        };
        sink.report(span, &format!("{field}.{name}"), format!("{name} {why}"));
    }
}
