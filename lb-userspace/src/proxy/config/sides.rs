//! The frontend and backend sides of a section: binds, rules, servers.
use super::options::*;
use super::raw::{RawSection, RawTimeouts};
use super::sections::Kind;
use super::{servers, timeouts, Backend, BackendId, Bind, ErrorSink, Frontend, Global, Mode};
use crate::proxy::acl::{AclSet, PatternFiles, Side};
use crate::proxy::balance::Balance;
use crate::proxy::rules::{RequestRule, ResponseRule, UseBackend};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use toml::Spanned;

pub(super) fn acls(raw: &RawSection, field: &str, sink: &mut dyn ErrorSink) -> AclSet {
    let mut set = AclSet::with_files(PatternFiles::beside(sink.config_file()));
    for (i, line) in raw.acl.iter().flat_map(|a| a.get_ref().iter()).enumerate() {
        if let Err(message) = set.add_line(line.get_ref()) {
            sink.report(line.span(), &format!("{field}.acl[{i}]"), message);
        }
    }
    set
}

pub(super) fn lines(
    value: &Option<Spanned<Vec<Spanned<String>>>>,
) -> impl Iterator<Item = (usize, &Spanned<String>)> {
    value.iter().flat_map(|v| v.get_ref().iter()).enumerate()
}

/// `http_request` and `http_response` rules of a section.
pub(super) fn http_rules(
    raw: &RawSection,
    mode: Mode,
    set: &mut AclSet,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> (Vec<RequestRule>, Vec<ResponseRule>) {
    let requests = rule_lines(
        (&raw.http_request, "http_request"),
        mode,
        set,
        field,
        sink,
        |line, set| {
            let rule = RequestRule::parse(line, set)?;
            let wrong = (rule.condition.as_ref()).is_some_and(|c| c.side(set) == Side::Response);
            Ok((rule, wrong))
        },
        "the condition uses response fetches (status, res.hdr), which a request has not",
    );
    let responses = rule_lines(
        (&raw.http_response, "http_response"),
        mode,
        set,
        field,
        sink,
        |line, set| {
            let rule = ResponseRule::parse(line, set)?;
            let wrong = (rule.condition.as_ref()).is_some_and(|c| c.side(set) == Side::Request);
            Ok((rule, wrong))
        },
        "the condition uses request fetches (path, hdr ...), which are gone at response time; use status, res.hdr, src or dst_port",
    );
    (requests, responses)
}

/// One list of HTTP rules: refused in tcp mode, each line parsed by `parse`,
/// which also says whether its condition reads the wrong side of the
/// exchange (`wrong_side` is then the error).
fn rule_lines<R>(
    (value, name): (&Option<Spanned<Vec<Spanned<String>>>>, &str),
    mode: Mode,
    set: &mut AclSet,
    field: &str,
    sink: &mut dyn ErrorSink,
    parse: impl Fn(&str, &mut AclSet) -> Result<(R, bool), String>,
    wrong_side: &str,
) -> Vec<R> {
    let mut rules = Vec::new();
    for (i, line) in lines(value) {
        let field = format!("{field}.{name}[{i}]");
        if mode == Mode::Tcp {
            sink.report(line.span(), &field, format!("{name} rules need mode http"));
            continue;
        }
        match parse(line.get_ref(), set) {
            Ok((_, true)) => sink.report(line.span(), &field, wrong_side.into()),
            Ok((rule, false)) => rules.push(rule),
            Err(message) => sink.report(line.span(), &field, message),
        }
    }
    rules
}

#[allow(clippy::too_many_arguments)]
pub(super) fn frontend(
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
                let tls = crate::proxy::tls::bind_tls(bind.get_ref(), mode, global);
                match (parse_bind(bind.get_ref()), tls) {
                    (Ok(address), Ok(tls)) => binds.push(Bind { address, tls }),
                    (Err(message), _) | (_, Err(message)) => {
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
    let server_side: &[&str] = &["connect", "server", "queue", "tunnel", "check"];
    let timeouts = timeouts::frontend(
        &section_timeouts(
            raw,
            defaults,
            (kind == Kind::Frontend).then_some((
                server_side,
                "applies to the server side: set it on the backend (or [defaults])",
            )),
            field,
            sink,
        ),
        &format!("{field}.timeout"),
        sink,
    );
    let common = common(raw, defaults, mode, field, sink);
    let mut set = acls(raw, field, sink);
    let (http_request, http_response) = http_rules(raw, mode, &mut set, field, sink);
    let tcp_request =
        crate::proxy::tls::passthrough::parse_lines(&raw.tcp_request, mode, &mut set, field, sink);
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
        log_to: common.log_to.clone(),
        http_connection_mode: common.connection,
        forwardfor: common.forwardfor,
        forwarded: common.forwarded,
        acls: set,
        http_request,
        use_backend,
        default_backend,
        http_response,
        tcp_request,
        from_listen: kind == Kind::Listen,
    }
}

/// Every backend a frontend can reach must speak its mode (HAProxy refuses
/// an http frontend with a tcp backend; lbd does not upgrade tcp to http).
pub(super) fn check_backend_modes(
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

/// ":80" and "*:80" (every IPv4 address), ":::80" (every IPv6 address, as
/// HAProxy writes it), "198.18.0.1:80", "[fd00::1]:80"; the bind options
/// after the address are `tls::bind_tls`'s.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    let text = text.split_whitespace().next().unwrap_or("");
    // HAProxy's IPv6 wildcard: ":::80" is [::]:80.
    if let Some(port) = text.strip_prefix(":::") {
        return match port.parse::<u16>() {
            Ok(0) => Err(format!("\"{text}\": port 0 cannot be bound")),
            Ok(port) => Ok(SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                port,
            )),
            Err(_) => Err(format!("\"{text}\": \"{port}\" is not a port")),
        };
    }
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

pub(super) fn backend(
    raw: &RawSection,
    defaults: &RawSection,
    global: &Global,
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
    let own = raw
        .default_server
        .as_ref()
        .map(|d| d.get_ref().clone())
        .unwrap_or_default();
    let inherited = defaults
        .default_server
        .as_ref()
        .map(|d| d.get_ref().clone())
        .unwrap_or_default();
    let server_defaults = servers::server_defaults(
        &own.over(&inherited),
        &global.tls_paths,
        &format!("{field}.default_server"),
        sink,
    );
    let servers = servers::servers(&raw.server, server_defaults, field, sink);
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
    let (redispatch, redispatch_after) =
        redispatch(&raw.redispatch, &defaults.redispatch, retries, field, sink);
    let client_side: &[&str] = &["client", "http_request", "http_keep_alive"];
    let timeouts = timeouts::backend(
        &section_timeouts(
            raw,
            defaults,
            (kind == Kind::Backend).then_some((
                client_side,
                "applies to the client side: set it on the frontend (or [defaults])",
            )),
            field,
            sink,
        ),
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
        redispatch,
        redispatch_after,
        timeouts,
        health,
        http_connection_mode: common.connection,
        forwardfor: common.forwardfor,
        forwarded: common.forwarded,
        log: common.log,
        log_to: common.log_to,
        acls: set,
        http_request,
        http_response,
        from_listen: kind == Kind::Listen,
    }
}

/// A section's timeouts over `[defaults]`'s, after refusing the ones in
/// `refused` (a frontend's server-side timeouts, a backend's client-side
/// ones; a listen section has both sides) with the reason given.
fn section_timeouts(
    raw: &RawSection,
    defaults: &RawSection,
    refused: Option<(&[&str], &str)>,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> RawTimeouts {
    let of = |section: &RawSection| {
        section
            .timeout
            .as_ref()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default()
    };
    let own = of(raw);
    if let Some((names, why)) = refused {
        timeouts::reject(&own, names, &format!("{field}.timeout"), why, sink);
    }
    own.over(&of(defaults))
}

/// `redispatch`: `true`/`false`, or HAProxy's `option redispatch
/// <interval>` (an integer: P > 0 every Pth retry, N < 0 the (-N)th retry
/// before the last, 0 off). Returns (on, interval); -1 is HAProxy's
/// default, the last retry.
fn redispatch(
    own: &Option<Spanned<super::raw::RawRedispatch>>,
    defaults: &Option<Spanned<super::raw::RawRedispatch>>,
    retries: u32,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> (bool, i32) {
    use super::raw::RawRedispatch::{Flag, Interval};
    let Some(value) = inherit(own, defaults).0 else {
        return (false, -1);
    };
    match *value.get_ref() {
        Flag(on) => (on, -1),
        Interval(0) => (false, 0),
        Interval(n) if n < 0 && n.unsigned_abs() <= u64::from(retries) => (true, n as i32),
        Interval(n) if (1..=100).contains(&n) => (true, n as i32),
        Interval(n) => {
            let why = if n < 0 {
                format!("{n}: there is no retry {} before the last with retries = {retries} (use -{retries}..=-1)", -n)
            } else {
                format!("{n} is outside 1..=100")
            };
            sink.report(value.span(), &format!("{field}.redispatch"), why);
            (true, -1)
        }
    }
}
