//! Settings shared by both sides of the proxy: `[global]`, logging, modes,
//! `forwardfor`, and `[defaults]` inheritance; a backend's health checks.
use super::raw::{RawForwardFor, RawGlobal, RawLog, RawLogLine, RawLogTarget, RawSection};
use super::{
    servers, ErrorSink, ForwardFor, Global, HealthSettings, HttpConnectionMode, LogAddress,
    LogDestinations, LogFormat, LogSettings, LogTarget, Mode, SyslogFormat, DEFAULT_GLOBAL_MAXCONN,
    DEFAULT_LOG_LEN,
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
    let mut base = |value: &Option<Spanned<String>>, field: &str| {
        let text = value.as_ref()?;
        crate::proxy::tls::PathBases::directory(text.get_ref())
            .map_err(|message| sink.report(text.span(), field, message))
            .ok()
    };
    let tls_paths = crate::proxy::tls::PathBases {
        crt: base(&raw.crt_base, "global.crt_base"),
        ca: base(&raw.ca_base, "global.ca_base"),
    };
    Global {
        maxconn,
        log,
        ssl_default_bind,
        tls_paths,
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
    let address = log_address(raw.target.get_ref())
        .map_err(|message| sink.report(raw.target.span(), &format!("{field}.target"), message))
        .ok();
    let mut pick = |value: &Option<Spanned<String>>, name: &str, list: &[&str], default: usize| {
        value.as_ref().map_or(default, |v| {
            pick_word(v.get_ref(), name, list).unwrap_or_else(|message| {
                sink.report(v.span(), &format!("{field}.{name}"), message);
                default
            })
        })
    };
    let facility = pick(&raw.facility, "facility", FACILITIES, 16) as u8;
    let level = pick(&raw.level, "level", LEVELS, 7) as u8;
    let min_level = raw
        .minlevel
        .as_ref()
        .map(|_| pick(&raw.minlevel, "minlevel", LEVELS, 0) as u8);
    let format = syslog_format(pick(&raw.format, "format", SYSLOG_FORMATS, 0));
    let max_len = raw.len.as_ref().map_or(DEFAULT_LOG_LEN, |l| {
        log_len(*l.get_ref()).unwrap_or_else(|message| {
            sink.report(l.span(), &format!("{field}.len"), message);
            DEFAULT_LOG_LEN
        })
    });
    Some(LogTarget {
        address: address?,
        facility,
        format,
        level,
        max_len,
        min_level,
    })
}

const SYSLOG_FORMATS: &[&str] = &["rfc3164", "rfc5424"];

fn syslog_format(index: usize) -> SyslogFormat {
    match index {
        0 => SyslogFormat::Rfc3164,
        _ => SyslogFormat::Rfc5424,
    }
}

fn pick_word(value: &str, name: &str, list: &[&str]) -> Result<usize, String> {
    list.iter()
        .position(|n| *n == value)
        .ok_or_else(|| format!("unknown {name} \"{value}\" ({})", list.join(" ")))
}

fn log_len(len: i64) -> Result<usize, String> {
    usize::try_from(len)
        .ok()
        .filter(|l| (80..=65535).contains(l))
        .ok_or_else(|| format!("len {len} is outside 80..=65535"))
}

/// `ip[:port]` (UDP, default port 514; HAProxy's `udp@` prefix allowed) or
/// a unix datagram socket path.
fn log_address(text: &str) -> Result<LogAddress, String> {
    let bare = ["udp@", "udp4@", "udp6@", "ipv4@", "ipv6@"]
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .unwrap_or(text);
    let bare = bare.strip_prefix("unix@").unwrap_or(bare);
    if bare.starts_with('/') {
        Ok(LogAddress::Unix(bare.into()))
    } else if let Ok(address) = bare.parse::<SocketAddr>() {
        Ok(LogAddress::Udp(address))
    } else if let Ok(ip) = bare.parse::<IpAddr>() {
        Ok(LogAddress::Udp(SocketAddr::new(ip, 514)))
    } else {
        Err(format!(
            "\"{text}\" is neither ip[:port] (UDP, default port 514) nor a unix socket path"
        ))
    }
}

/// One HAProxy `log` line of a section, as written after `log`:
/// `<target> [len <n>] [format <f>] <facility> [<level>]`.
pub(super) fn log_line(text: &str) -> Result<LogTarget, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((target, mut rest)) = words.split_first() else {
        return Err("empty log line (\"global\" or \"<target> <facility> [level]\")".into());
    };
    let address = log_address(target)?;
    let mut max_len = DEFAULT_LOG_LEN;
    let mut format = SyslogFormat::Rfc3164;
    loop {
        match rest {
            ["len", n, tail @ ..] => {
                let n = n
                    .parse::<i64>()
                    .map_err(|_| format!("len \"{n}\" is not a number"))?;
                max_len = log_len(n)?;
                rest = tail;
            }
            ["format", f, tail @ ..] => {
                format = syslog_format(pick_word(f, "format", SYSLOG_FORMATS)?);
                rest = tail;
            }
            _ => break,
        }
    }
    let (facility, level, min_level) = match rest {
        [facility] => (facility, None, None),
        [facility, level] => (facility, Some(level), None),
        [facility, level, min_level] => (facility, Some(level), Some(min_level)),
        [_, _, _, extra, ..] => {
            return Err(format!(
            "\"{extra}\": expected \"<target> [len N] [format F] <facility> [level [minlevel]]\""
        ))
        }
        [] => {
            return Err(format!(
                "\"{text}\": the facility is missing (\"<target> <facility> [level]\")"
            ))
        }
    };
    Ok(LogTarget {
        address,
        facility: pick_word(facility, "facility", FACILITIES)? as u8,
        format,
        level: level.map_or(Ok(7), |l| pick_word(l, "level", LEVELS))? as u8,
        max_len,
        min_level: min_level
            .map(|m| pick_word(m, "minlevel", LEVELS).map(|m| m as u8))
            .transpose()?,
    })
}

/// A section's `log` setting: `true` = `log global`, a list = its lines.
pub(super) fn log_destinations(
    raw: &RawLog,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> LogDestinations {
    let mut out = LogDestinations::default();
    match raw {
        RawLog::Enabled(global) => out.global = *global,
        RawLog::Lines(lines) => {
            for (i, line) in lines.iter().enumerate() {
                let field = format!("{field}.log[{i}]");
                match line.get_ref() {
                    RawLogLine::Text(text) if text.trim() == "global" => {
                        if out.global {
                            sink.report(line.span(), &field, "\"global\" twice".into());
                        }
                        out.global = true;
                    }
                    RawLogLine::Text(text) => match log_line(text) {
                        Ok(target) => out.targets.push(target),
                        Err(message) => sink.report(line.span(), &field, message),
                    },
                    RawLogLine::Table(table) => {
                        out.targets.extend(log_target(table, &field, sink));
                    }
                }
            }
        }
    }
    out
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
    pub(super) log_to: LogDestinations,
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
    // HAProxy: a section with its own `log` lines does not inherit those
    // of [defaults]; `false` is `no log`.
    let log_to = inherit(&raw.log, &defaults.log)
        .0
        .map(|l| log_destinations(l.get_ref(), field, sink))
        .unwrap_or_default();
    let enabled = !log_to.is_empty();
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
        log_to,
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
                if_none: false,
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
    Some(ForwardFor {
        header,
        except,
        if_none: options.if_none.as_ref().is_some_and(|i| *i.get_ref()),
    })
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
