//! Settings shared by both sides of the proxy: `[global]`, logging, modes,
//! `forwardfor`, and `[defaults]` inheritance; a backend's health checks.
use super::raw::{RawForwardFor, RawGlobal, RawLogTarget, RawSection};
use super::{
    servers, ErrorSink, ForwardFor, Global, HealthSettings, HttpConnectionMode, LogAddress,
    LogFormat, LogSettings, LogTarget, Mode, SyslogFormat, DEFAULT_GLOBAL_MAXCONN,
};
use crate::proxy::acl::parse_net;
use std::net::{IpAddr, SocketAddr};
use toml::Spanned;

pub(super) fn global(raw: RawGlobal, sink: &mut dyn ErrorSink) -> Global {
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
    let ssl_default_bind = match &raw.ssl_default_bind_options {
        None => Default::default(),
        Some(text) => crate::proxy::tls::options::BindOptions::parse(text.get_ref(), true)
            .unwrap_or_else(|message| {
                sink.report(text.span(), "global.ssl_default_bind_options", message);
                Default::default()
            }),
    };
    Global {
        maxconn,
        log,
        ssl_default_bind,
    }
}

pub(super) const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
pub(super) const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

pub(super) fn log_target(
    raw: &RawLogTarget,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Option<LogTarget> {
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
pub(super) fn inherit<'a, T>(own: &'a Option<T>, defaults: &'a Option<T>) -> (Option<&'a T>, bool) {
    match own {
        Some(v) => (Some(v), true),
        None => (defaults.as_ref(), false),
    }
}

pub(super) fn mode(
    raw: &RawSection,
    defaults: &RawSection,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Mode {
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
pub(super) fn http_only<T>(
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
pub(super) struct Common {
    pub(super) log: Option<LogSettings>,
    pub(super) connection: HttpConnectionMode,
    pub(super) forwardfor: Option<ForwardFor>,
    pub(super) forwarded: bool,
}

pub(super) fn common(
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

pub(super) fn forwardfor(
    raw: &RawForwardFor,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Option<ForwardFor> {
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
pub(super) fn health(
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
    let tcp = inherit(&raw.tcp_check, &defaults.tcp_check)
        .0
        .is_some_and(|t| *t.get_ref());
    // Both at the same level is a contradiction; otherwise the section's
    // own choice overrides the one inherited from [defaults].
    let own_tcp = raw.tcp_check.is_some();
    let own_httpchk = raw.httpchk.is_some();
    let httpchk = match (&raw.tcp_check, &raw.httpchk) {
        _ if !tcp || httpchk.is_none() => httpchk,
        (Some(t), Some(_)) => {
            sink.report(
                t.span(),
                &format!("{field}.tcp_check"),
                "choose httpchk or tcp_check, not both".into(),
            );
            httpchk
        }
        _ if own_tcp => None,
        _ if own_httpchk => httpchk,
        _ => {
            if let Some(t) = &defaults.tcp_check {
                sink.report(
                    t.span(),
                    "defaults.tcp_check",
                    "choose httpchk or tcp_check, not both".into(),
                );
            }
            httpchk
        }
    };
    let tcp = tcp && httpchk.is_none();
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
