//! Validation of the proxy sections: `[defaults]` inheritance (HAProxy:
//! a section takes every setting it does not make itself from the defaults),
//! names, binds, modes, rules and the backends they name.
use super::raw::{RawForwardFor, RawGlobal, RawLogTarget, RawProxy, RawSection};
use super::{
    servers, timeouts, Backend, BackendId, Bind, ErrorSink, ForwardFor, Frontend, Global,
    HealthSettings, HttpConnectionMode, LogAddress, LogFormat, LogSettings, LogTarget, Mode,
    ProxyConfig, SyslogFormat, DEFAULT_GLOBAL_MAXCONN,
};
use crate::proxy::acl::{parse_net, AclSet, Side};
use crate::proxy::balance::Balance;
use crate::proxy::rules::{RequestRule, ResponseRule, UseBackend};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::Range,
};
use toml::Spanned;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

/// Fields only a frontend side takes, only a backend side takes, and none
/// `[defaults]` takes.
const FRONTEND_ONLY: &[&str] = &["bind", "use_backend", "default_backend", "maxconn"];
const BACKEND_ONLY: &[&str] = &[
    "balance",
    "server",
    "httpchk",
    "http_check_expect",
    "tcp_check",
    "allbackups",
    "retries",
    "redispatch",
];
const NOT_IN_DEFAULTS: &[&str] = &[
    "name",
    "bind",
    "acl",
    "use_backend",
    "default_backend",
    "http_request",
    "http_response",
    "server",
];

/// Validates the proxy sections; problems go to `sink`. The result is only
/// meaningful when `sink` received nothing.
pub fn validate(raw: RawProxy, sink: &mut dyn ErrorSink) -> ProxyConfig {
    let global = raw
        .global
        .map(|g| global(g.into_inner(), sink))
        .unwrap_or_default();
    let defaults = match raw.defaults {
        Some(d) => {
            check_fields(d.get_ref(), Kind::Defaults, "defaults", sink);
            d.into_inner()
        }
        None => RawSection::default(),
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

fn field_name(kind: Kind, index: usize) -> String {
    match kind {
        Kind::Frontend => format!("frontend[{index}]"),
        Kind::Backend => format!("backend[{index}]"),
        Kind::Listen => format!("listen[{index}]"),
        Kind::Defaults => "defaults".into(),
    }
}

fn section_name(
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
fn present(raw: &RawSection) -> Vec<(&'static str, Range<usize>)> {
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
        allbackups
    );
    if let Some(server) = raw.server.first() {
        out.push(("server", server.span()));
    }
    out
}

fn check_fields(raw: &RawSection, kind: Kind, field: &str, sink: &mut dyn ErrorSink) {
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

fn global(raw: RawGlobal, sink: &mut dyn ErrorSink) -> Global {
    let maxconn = match &raw.maxconn {
        None => DEFAULT_GLOBAL_MAXCONN,
        Some(m) if (1..=10_000_000).contains(m.get_ref()) => *m.get_ref() as u32,
        Some(m) => {
            sink.report(
                m.span(),
                "global.maxconn",
                format!("{} is outside 1..=10000000", m.get_ref()),
            );
            DEFAULT_GLOBAL_MAXCONN
        }
    };
    let log = raw
        .log
        .iter()
        .enumerate()
        .filter_map(|(i, t)| log_target(t.get_ref(), &format!("global.log[{i}]"), sink))
        .collect();
    Global { maxconn, log }
}

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

fn log_target(raw: &RawLogTarget, field: &str, sink: &mut dyn ErrorSink) -> Option<LogTarget> {
    let text = raw.target.get_ref();
    let address = if text.starts_with('/') {
        Some(LogAddress::Unix(text.into()))
    } else if let Ok(address) = text.parse::<SocketAddr>() {
        Some(LogAddress::Udp(address))
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        Some(LogAddress::Udp(SocketAddr::new(ip, 514)))
    } else {
        sink.report(
            raw.target.span(),
            &format!("{field}.target"),
            format!(
                "\"{text}\" is neither ip[:port] (UDP, default port 514) nor a unix socket path"
            ),
        );
        None
    };
    let mut pick =
        |value: &Option<Spanned<String>>, name: &str, list: &[&str], default: usize| match value {
            None => default,
            Some(v) => list
                .iter()
                .position(|n| n == v.get_ref())
                .unwrap_or_else(|| {
                    sink.report(
                        v.span(),
                        &format!("{field}.{name}"),
                        format!("unknown {name} \"{}\" ({})", v.get_ref(), list.join(" ")),
                    );
                    default
                }),
        };
    let facility = pick(&raw.facility, "facility", FACILITIES, 16) as u8;
    let level = pick(&raw.level, "level", LEVELS, 7) as u8;
    let format = match pick(&raw.format, "format", &["rfc3164", "rfc5424"], 0) {
        0 => SyslogFormat::Rfc3164,
        _ => SyslogFormat::Rfc5424,
    };
    Some(LogTarget {
        address: address?,
        facility,
        format,
        level,
    })
}

/// A setting from the section, else from `[defaults]`; `.1` says whether
/// the section set it itself.
fn inherit<'a, T>(own: &'a Option<T>, defaults: &'a Option<T>) -> (Option<&'a T>, bool) {
    match own {
        Some(v) => (Some(v), true),
        None => (defaults.as_ref(), false),
    }
}

fn mode(raw: &RawSection, defaults: &RawSection, field: &str, sink: &mut dyn ErrorSink) -> Mode {
    match inherit(&raw.mode, &defaults.mode).0 {
        None => Mode::Tcp,
        Some(m) => match m.get_ref().as_str() {
            "http" => Mode::Http,
            "tcp" => Mode::Tcp,
            other => {
                sink.report(
                    m.span(),
                    &format!("{field}.mode"),
                    format!("unknown mode \"{other}\" (http, tcp)"),
                );
                Mode::Http
            }
        },
    }
}

/// Reports an HTTP-only setting made in a `mode tcp` section; an inherited
/// one is ignored there, as HAProxy does with `[defaults]`.
fn http_only<T>(
    value: (Option<&Spanned<T>>, bool),
    mode: Mode,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> bool {
    match value {
        (Some(v), true) if mode == Mode::Tcp => {
            sink.report(v.span(), field, "needs mode http".into());
            false
        }
        (Some(_), _) => mode == Mode::Http,
        (None, _) => false,
    }
}

/// Settings common to both sides: logging, connection mode, forwardfor.
struct Common {
    log: Option<LogSettings>,
    connection: HttpConnectionMode,
    forwardfor: Option<ForwardFor>,
    forwarded: bool,
}

fn common(
    raw: &RawSection,
    defaults: &RawSection,
    mode: Mode,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Common {
    let enabled = inherit(&raw.log, &defaults.log)
        .0
        .is_some_and(|l| *l.get_ref());
    let (format, own) = inherit(&raw.log_format, &defaults.log_format);
    let format = match format.map(|f| (f, f.get_ref().as_str())) {
        None => None,
        Some((_, "tcplog")) => Some(LogFormat::Tcp),
        Some((f, name @ ("httplog" | "clf"))) if mode == Mode::Tcp => {
            if own {
                sink.report(
                    f.span(),
                    &format!("{field}.log_format"),
                    format!("{name} needs mode http (tcp sections use tcplog)"),
                );
            }
            Some(LogFormat::Tcp)
        }
        Some((_, "httplog")) => Some(LogFormat::Http),
        Some((_, "clf")) => Some(LogFormat::Clf),
        Some((_, "json")) => Some(LogFormat::Json),
        Some((f, other)) => {
            sink.report(
                f.span(),
                &format!("{field}.log_format"),
                format!("unknown log_format \"{other}\" (httplog tcplog clf json)"),
            );
            None
        }
    };
    let format = format.unwrap_or(match mode {
        Mode::Http => LogFormat::Http,
        Mode::Tcp => LogFormat::Tcp,
    });
    let dontlognull = inherit(&raw.dontlognull, &defaults.dontlognull)
        .0
        .is_some_and(|d| *d.get_ref());
    let connection_value = inherit(&raw.http_connection_mode, &defaults.http_connection_mode);
    let connection_field = format!("{field}.http_connection_mode");
    let connection = if http_only(connection_value, mode, &connection_field, sink) {
        let value = connection_value.0.map(|c| (c, c.get_ref().as_str()));
        match value {
            Some((_, "keep-alive")) | None => HttpConnectionMode::KeepAlive,
            Some((_, "http-server-close")) => HttpConnectionMode::ServerClose,
            Some((_, "httpclose")) => HttpConnectionMode::Close,
            Some((c, other)) => {
                sink.report(
                    c.span(),
                    &connection_field,
                    format!("unknown mode \"{other}\" (keep-alive http-server-close httpclose)"),
                );
                HttpConnectionMode::KeepAlive
            }
        }
    } else {
        HttpConnectionMode::KeepAlive
    };
    let ff_value = inherit(&raw.forwardfor, &defaults.forwardfor);
    let ff_field = format!("{field}.forwardfor");
    let forwardfor = if http_only(ff_value, mode, &ff_field, sink) {
        ff_value
            .0
            .and_then(|f| forwardfor(f.get_ref(), &ff_field, sink))
    } else {
        None
    };
    let fwd_value = inherit(&raw.forwarded, &defaults.forwarded);
    let forwarded = http_only(fwd_value, mode, &format!("{field}.forwarded"), sink)
        && fwd_value.0.is_some_and(|f| *f.get_ref());
    Common {
        log: enabled.then_some(LogSettings {
            format,
            dontlognull,
        }),
        connection,
        forwardfor,
        forwarded,
    }
}

fn forwardfor(raw: &RawForwardFor, field: &str, sink: &mut dyn ErrorSink) -> Option<ForwardFor> {
    let options = match raw {
        RawForwardFor::Enabled(false) => return None,
        RawForwardFor::Enabled(true) => {
            return Some(ForwardFor {
                header: "X-Forwarded-For".into(),
                except: Vec::new(),
            })
        }
        RawForwardFor::Options(options) => options,
    };
    let mut except = Vec::new();
    for (i, net) in options.except.iter().enumerate() {
        match parse_net(net.get_ref()) {
            Ok(net) => except.push(net),
            Err(message) => sink.report(net.span(), &format!("{field}.except[{i}]"), message),
        }
    }
    let header = match &options.header {
        None => "X-Forwarded-For".to_owned(),
        Some(h) => {
            if hyper::http::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err() {
                sink.report(
                    h.span(),
                    &format!("{field}.header"),
                    format!("\"{}\" is not a header name", h.get_ref()),
                );
            }
            h.get_ref().clone()
        }
    };
    Some(ForwardFor { header, except })
}

/// Parses `acl` lines into `acls`, reporting each bad line.
fn acls(raw: &RawSection, field: &str, sink: &mut dyn ErrorSink) -> AclSet {
    let mut set = AclSet::default();
    for (i, line) in raw.acl.iter().flat_map(|a| a.get_ref().iter()).enumerate() {
        if let Err(message) = set.add_line(line.get_ref()) {
            sink.report(line.span(), &format!("{field}.acl[{i}]"), message);
        }
    }
    set
}

fn lines(
    value: &Option<Spanned<Vec<Spanned<String>>>>,
) -> impl Iterator<Item = (usize, &Spanned<String>)> {
    value.iter().flat_map(|v| v.get_ref().iter()).enumerate()
}

/// `http_request` and `http_response` rules of a section.
fn http_rules(
    raw: &RawSection,
    mode: Mode,
    set: &mut AclSet,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> (Vec<RequestRule>, Vec<ResponseRule>) {
    let mut requests = Vec::new();
    for (i, line) in lines(&raw.http_request) {
        let field = format!("{field}.http_request[{i}]");
        if mode == Mode::Tcp {
            sink.report(
                line.span(),
                &field,
                "http_request rules need mode http".into(),
            );
            continue;
        }
        match RequestRule::parse(line.get_ref(), set) {
            Ok(rule)
                if rule
                    .condition
                    .as_ref()
                    .is_some_and(|c| c.side(set) == Side::Response) =>
            {
                sink.report(line.span(), &field, "the condition uses response fetches (status, res.hdr), which a request has not".into());
            }
            Ok(rule) => requests.push(rule),
            Err(message) => sink.report(line.span(), &field, message),
        }
    }
    let mut responses = Vec::new();
    for (i, line) in lines(&raw.http_response) {
        let field = format!("{field}.http_response[{i}]");
        if mode == Mode::Tcp {
            sink.report(
                line.span(),
                &field,
                "http_response rules need mode http".into(),
            );
            continue;
        }
        match ResponseRule::parse(line.get_ref(), set) {
            Ok(rule)
                if rule
                    .condition
                    .as_ref()
                    .is_some_and(|c| c.side(set) == Side::Request) =>
            {
                sink.report(line.span(), &field, "the condition uses request fetches (path, hdr ...), which are gone at response time; use status, res.hdr, src or dst_port".into());
            }
            Ok(rule) => responses.push(rule),
            Err(message) => sink.report(line.span(), &field, message),
        }
    }
    (requests, responses)
}

#[allow(clippy::too_many_arguments)]
fn frontend(
    raw: &RawSection,
    defaults: &RawSection,
    kind: Kind,
    global: &Global,
    name: String,
    field: &str,
    resolve: &dyn Fn(&str) -> Option<BackendId>,
    sink: &mut dyn ErrorSink,
) -> Frontend {
    let mode = mode(raw, defaults, field, sink);
    let mut binds = Vec::new();
    match &raw.bind {
        None => sink.report(
            raw.name.as_ref().map_or(0..0, |n| n.span()),
            &format!("{field}.bind"),
            "a frontend needs at least one bind address".into(),
        ),
        Some(list) => {
            if list.get_ref().is_empty() {
                sink.report(
                    list.span(),
                    &format!("{field}.bind"),
                    "a frontend needs at least one bind address".into(),
                );
            }
            for (i, bind) in list.get_ref().iter().enumerate() {
                match parse_bind(bind.get_ref()) {
                    Ok(address) => binds.push(Bind { address }),
                    Err(message) => {
                        sink.report(bind.span(), &format!("{field}.bind[{i}]"), message)
                    }
                }
            }
        }
    }
    let maxconn = match inherit(&raw.maxconn, &defaults.maxconn).0 {
        None => global.maxconn,
        Some(m) if (1..=10_000_000).contains(m.get_ref()) => *m.get_ref() as u32,
        Some(m) => {
            sink.report(
                m.span(),
                &format!("{field}.maxconn"),
                format!("{} is outside 1..=10000000", m.get_ref()),
            );
            global.maxconn
        }
    };
    let own_timeouts = raw
        .timeout
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    if kind == Kind::Frontend {
        timeouts::reject(
            &own_timeouts,
            &["connect", "server", "queue", "tunnel", "check"],
            &format!("{field}.timeout"),
            "applies to the server side: set it on the backend (or [defaults])",
            sink,
        );
    }
    let default_timeouts = defaults
        .timeout
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let timeouts = timeouts::frontend(
        &own_timeouts.over(&default_timeouts),
        &format!("{field}.timeout"),
        sink,
    );
    let common = common(raw, defaults, mode, field, sink);
    let mut set = acls(raw, field, sink);
    let (http_request, http_response) = http_rules(raw, mode, &mut set, field, sink);
    let mut use_backend = Vec::new();
    for (i, line) in lines(&raw.use_backend) {
        let rule_field = format!("{field}.use_backend[{i}]");
        match UseBackend::parse(line.get_ref(), &mut set, resolve) {
            Ok(rule)
                if mode == Mode::Tcp
                    && rule
                        .condition
                        .as_ref()
                        .is_some_and(|c| c.side(&set) != Side::Connection) =>
            {
                sink.report(line.span(), &rule_field, "a mode tcp frontend can only match connection facts (src, dst, dst_port, ssl_fc ...), not HTTP fetches".into());
            }
            Ok(rule) => use_backend.push(rule),
            Err(message) => sink.report(line.span(), &rule_field, message),
        }
    }
    let default_backend = match &raw.default_backend {
        Some(name) => {
            let backend = resolve(name.get_ref());
            if backend.is_none() {
                sink.report(
                    name.span(),
                    &format!("{field}.default_backend"),
                    format!("unknown backend \"{}\"", name.get_ref()),
                );
            }
            backend
        }
        // A listen section is its own default backend.
        None if kind == Kind::Listen => resolve(&name),
        None => None,
    };
    Frontend {
        name,
        binds,
        mode,
        maxconn,
        timeouts,
        log: common.log,
        http_connection_mode: common.connection,
        forwardfor: common.forwardfor,
        forwarded: common.forwarded,
        acls: set,
        http_request,
        use_backend,
        default_backend,
        http_response,
        from_listen: kind == Kind::Listen,
    }
}

/// Every backend a frontend can reach must speak its mode (HAProxy refuses
/// an http frontend with a tcp backend; lbd does not upgrade tcp to http).
fn check_backend_modes(
    fe: &mut Frontend,
    backends: &[Backend],
    section: &Spanned<RawSection>,
    field: &str,
    sink: &mut dyn ErrorSink,
) {
    let raw = section.get_ref();
    let mut reported = Vec::new();
    let targets = fe
        .use_backend
        .iter()
        .map(|r| r.backend)
        .chain(fe.default_backend);
    for backend in targets {
        let Some(be) = backends.get(backend) else {
            continue;
        };
        if be.mode != fe.mode && !reported.contains(&backend) {
            reported.push(backend);
            let span = raw
                .default_backend
                .as_ref()
                .map(|d| d.span())
                .or(raw.use_backend.as_ref().map(|u| u.span()))
                .or(raw.mode.as_ref().map(|m| m.span()))
                .unwrap_or(section.span());
            sink.report(
                span,
                &format!("{field}.mode"),
                format!(
                    "frontend \"{}\" is mode {} but backend \"{}\" is mode {}",
                    fe.name,
                    fe.mode.name(),
                    be.name,
                    be.mode.name()
                ),
            );
        }
    }
}

/// ":80" and "*:80" (every IPv4 address), "198.18.0.1:80", "[fd00::1]:80".
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    let any = text
        .strip_prefix("*:")
        .or_else(|| text.strip_prefix(':').filter(|p| !p.contains(':')));
    let address = match any {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p))
            .map_err(|_| format!("\"{text}\": \"{port}\" is not a port")),
        None => text.parse::<SocketAddr>().map_err(|_| {
            format!("\"{text}\" is not a bind address (\":80\", \"*:80\", \"198.18.0.1:80\", \"[fd00::1]:80\")")
        }),
    }?;
    if address.port() == 0 {
        return Err(format!("\"{text}\": port 0 cannot be bound"));
    }
    Ok(address)
}

fn backend(
    raw: &RawSection,
    defaults: &RawSection,
    kind: Kind,
    name: String,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Backend {
    let mode = mode(raw, defaults, field, sink);
    let balance = match inherit(&raw.balance, &defaults.balance) {
        (None, _) => Balance::RoundRobin,
        (Some(b), own) => match Balance::parse(b.get_ref()) {
            Ok(balance) if balance.needs_http() && mode == Mode::Tcp => {
                if own {
                    sink.report(
                        b.span(),
                        &format!("{field}.balance"),
                        format!("\"{}\" needs mode http", b.get_ref()),
                    );
                }
                Balance::RoundRobin
            }
            Ok(Balance::RdpCookie(_)) if mode == Mode::Http => {
                if own {
                    sink.report(
                        b.span(),
                        &format!("{field}.balance"),
                        "rdp-cookie needs mode tcp".into(),
                    );
                }
                Balance::RoundRobin
            }
            Ok(balance) => balance,
            Err(message) => {
                sink.report(b.span(), &format!("{field}.balance"), message);
                Balance::RoundRobin
            }
        },
    };
    let servers = servers::servers(&raw.server, field, sink);
    let flag = |own: &Option<Spanned<bool>>, default: &Option<Spanned<bool>>| {
        inherit(own, default).0.is_some_and(|b| *b.get_ref())
    };
    let retries = match inherit(&raw.retries, &defaults.retries).0 {
        None => 3,
        Some(r) if (0..=100).contains(r.get_ref()) => *r.get_ref() as u32,
        Some(r) => {
            sink.report(
                r.span(),
                &format!("{field}.retries"),
                format!("{} is outside 0..=100", r.get_ref()),
            );
            3
        }
    };
    let own_timeouts = raw
        .timeout
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    if kind == Kind::Backend {
        timeouts::reject(
            &own_timeouts,
            &["client", "http_request", "http_keep_alive"],
            &format!("{field}.timeout"),
            "applies to the client side: set it on the frontend (or [defaults])",
            sink,
        );
    }
    let default_timeouts = defaults
        .timeout
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let timeouts = timeouts::backend(
        &own_timeouts.over(&default_timeouts),
        &format!("{field}.timeout"),
        sink,
    );
    let health = health(raw, defaults, field, sink);
    let common = common(raw, defaults, mode, field, sink);
    // A listen section's rules run once, on its frontend side.
    let (set, http_request, http_response) = if kind == Kind::Backend {
        let mut set = acls(raw, field, sink);
        let (requests, responses) = http_rules(raw, mode, &mut set, field, sink);
        (set, requests, responses)
    } else {
        (AclSet::default(), Vec::new(), Vec::new())
    };
    Backend {
        name,
        mode,
        balance,
        servers,
        allbackups: flag(&raw.allbackups, &defaults.allbackups),
        retries,
        redispatch: flag(&raw.redispatch, &defaults.redispatch),
        timeouts,
        health,
        http_connection_mode: common.connection,
        forwardfor: common.forwardfor,
        forwarded: common.forwarded,
        log: common.log,
        acls: set,
        http_request,
        http_response,
        from_listen: kind == Kind::Listen,
    }
}

fn health(
    raw: &RawSection,
    defaults: &RawSection,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> HealthSettings {
    let httpchk = match inherit(&raw.httpchk, &defaults.httpchk).0 {
        None => None,
        Some(h) => servers::httpchk(h.get_ref()).unwrap_or_else(|message| {
            sink.report(h.span(), &format!("{field}.httpchk"), message);
            None
        }),
    };
    let expect = match inherit(&raw.http_check_expect, &defaults.http_check_expect).0 {
        None => None,
        Some(e) => match servers::expect(e.get_ref()) {
            Ok(expect) => Some(expect),
            Err(message) => {
                sink.report(e.span(), &format!("{field}.http_check_expect"), message);
                None
            }
        },
    };
    let tcp_check = inherit(&raw.tcp_check, &defaults.tcp_check).0;
    let tcp = tcp_check.is_some_and(|t| *t.get_ref());
    if tcp && httpchk.is_some() {
        if let Some(t) = &raw.tcp_check {
            sink.report(
                t.span(),
                &format!("{field}.tcp_check"),
                "choose httpchk or tcp_check, not both".into(),
            );
        } else if let Some(h) = &raw.httpchk {
            sink.report(
                h.span(),
                &format!("{field}.httpchk"),
                "choose httpchk or tcp_check, not both ([defaults] sets tcp_check)".into(),
            );
        }
    }
    HealthSettings {
        // A section's own tcp_check overrides an inherited httpchk.
        httpchk: if tcp && raw.tcp_check.is_some() {
            None
        } else {
            httpchk
        },
        expect,
        tcp_check: tcp,
    }
}
