//! haproxy.cfg → lb.toml: `global`, `defaults`, `frontend`, `backend` and
//! `listen` onto lbd's sections of the same names (HAProxy's
//! mini-languages are kept as written), a `stats enable` listen onto
//! `[stats]`, and with `--prefer-xdp` plain tcp frontends onto XDP
//! `[[service]]`s. HAProxy's own warnings about a directive (ignored in tcp
//! mode or in a backend, deprecated forms) are in the report.
use super::{
    error::SourceError,
    haproxy::{Directive, Section},
    report::{Outcome, Report},
    toml_out::{Table, Value},
    Group, Output,
};
use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::Path,
};

mod stats;
mod xdp;

use stats::{section_has_stats, stats_section};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    fn frontend_side(self) -> bool {
        self != Kind::Backend
    }
    fn backend_side(self) -> bool {
        self != Kind::Frontend
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }
}

/// One directive's verdict, gathered while its words are read, so each
/// directive gets exactly one report line.
#[derive(Default)]
struct Verdict {
    mapped: Option<String>,
    approximations: Vec<String>,
    unsupported: Vec<String>,
}

impl Verdict {
    fn mapped(text: impl Into<String>) -> Verdict {
        Verdict {
            mapped: Some(text.into()),
            ..Verdict::default()
        }
    }
    fn approx(text: impl Into<String>) -> Verdict {
        Verdict {
            approximations: vec![text.into()],
            ..Verdict::default()
        }
    }
    fn unsupported(text: impl Into<String>) -> Verdict {
        Verdict {
            unsupported: vec![text.into()],
            ..Verdict::default()
        }
    }
    fn outcome(self) -> Outcome {
        let mapped = self.mapped.unwrap_or_default();
        let join = |head: &str, rest: Vec<String>| {
            if head.is_empty() {
                rest.join("; ")
            } else {
                format!("{head}; {}", rest.join("; "))
            }
        };
        if !self.unsupported.is_empty() {
            let mut all = self.unsupported;
            all.extend(self.approximations);
            Outcome::NotSupported(join(&mapped, all))
        } else if !self.approximations.is_empty() {
            Outcome::Approximated(join(&mapped, self.approximations))
        } else {
            Outcome::Mapped(mapped)
        }
    }
}

struct Ctx<'a> {
    report: &'a mut Report,
    errors: &'a mut Vec<SourceError>,
    file: &'a Path,
    /// `ca-base` and `crt-base` of `global`.
    ca_base: Option<String>,
    crt_base: Option<String>,
}

impl Ctx<'_> {
    fn verdict(&mut self, d: &Directive, verdict: Verdict) {
        self.report
            .push(self.file, d.line, &d.shown(), verdict.outcome());
    }
    fn mapped(&mut self, d: &Directive, text: impl Into<String>) {
        self.verdict(d, Verdict::mapped(text));
    }
    fn approx(&mut self, d: &Directive, text: impl Into<String>) {
        self.verdict(d, Verdict::approx(text));
    }
    fn unsupported(&mut self, d: &Directive, text: impl Into<String>) {
        self.verdict(d, Verdict::unsupported(text));
    }
    fn error(&mut self, line: usize, text: impl Into<String>) {
        self.errors
            .push(SourceError::new(self.file, line, text.into()));
    }
    /// Checks that `d` has between `min` and `max` words after the keyword(s).
    fn arity(&mut self, d: &Directive, skip: usize, min: usize, max: usize) -> bool {
        let n = d.words.len().saturating_sub(skip);
        if n < min || n > max {
            let what = d.words[..skip.min(d.words.len())].join(" ");
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            self.error(
                d.line,
                format!("'{what}' takes {expected} argument(s), not {n}"),
            );
            return false;
        }
        true
    }
    fn with_base(&self, base: &Option<String>, path: &str) -> String {
        match base {
            Some(b) if !path.starts_with('/') => format!("{}/{path}", b.trim_end_matches('/')),
            _ => path.to_string(),
        }
    }
}

/// A proxy section being translated.
struct ProxyOut {
    kind: Kind,
    name: String,
    line: usize,
    mode_http: bool,
    table: Table,
    servers: Vec<Table>,
    /// `(address, options)` of each bind, for `--prefer-xdp`.
    binds: Vec<(String, Vec<String>)>,
    /// ACLs, use_backend or tcp-request rules: content switching.
    content_rules: bool,
    stats: Option<StatsOut>,
    /// Directives a stats section has beside `stats` (they do not carry over).
    stats_leftovers: Vec<Directive>,
    /// Server names seen (duplicates are renamed).
    server_names: BTreeSet<String>,
    /// The line of every directive of the section.
    lines: Vec<usize>,
}

#[derive(Default)]
struct StatsOut {
    line: usize,
    table: Table,
    users: Vec<Table>,
    enabled: bool,
}

pub(super) fn translate(
    sections: &[Section],
    prefer_xdp: bool,
    out: &mut Output,
    report: &mut Report,
    errors: &mut Vec<SourceError>,
) {
    let Some(first) = sections.first() else {
        return;
    };
    let mut cx = Ctx {
        report,
        errors,
        file: &first.file,
        ca_base: None,
        crt_base: None,
    };
    let mut defaults_http = false;
    let mut defaults: Option<Table> = None;
    let mut proxies: Vec<ProxyOut> = Vec::new();
    for section in sections {
        cx.file = &section.file;
        match section.kind.as_str() {
            "global" => global(&mut cx, section, out),
            "defaults" => {
                let mut p = proxy(&mut cx, section, Kind::Defaults, defaults_http);
                defaults_http = p.mode_http;
                p.table.header = "defaults".into();
                p.table.array = false;
                match &mut defaults {
                    None => {
                        p.table.remove("name");
                        defaults = Some(p.table)
                    }
                    Some(d) => {
                        // lbd has one [defaults]: HAProxy applies each to the
                        // sections after it.
                        for (k, v, c) in p.table.entries {
                            if k != "name" {
                                d.set(&k, v, c);
                            }
                        }
                        cx.report.push(
                            &section.file,
                            section.line,
                            "defaults",
                            Outcome::Approximated(
                                "lbd has one [defaults] for every section: this one is merged over the earlier one, so it also applies to sections before it".into(),
                            ),
                        );
                    }
                }
            }
            "frontend" => proxies.push(proxy(&mut cx, section, Kind::Frontend, defaults_http)),
            "backend" => proxies.push(proxy(&mut cx, section, Kind::Backend, defaults_http)),
            "listen" => proxies.push(proxy(&mut cx, section, Kind::Listen, defaults_http)),
            other => {
                cx.report.push(
                    &section.file,
                    section.line,
                    &format!("{other} {}", section.args.join(" ")),
                    Outcome::NotSupported(format!(
                        "lbd has no '{other}' section{}",
                        match other {
                            "userlist" => ": [stats] has its own users",
                            "resolvers" => ": servers are IP addresses",
                            "peers" => ": lbd has no stick tables to share",
                            "cache" => ": lbd does not cache responses",
                            _ => "",
                        }
                    )),
                );
            }
        }
    }
    if let Some(d) = defaults {
        out.defaults = Some(d);
    }
    missing_timeouts(&mut cx, &proxies, out.defaults.as_ref());
    inherited_http_options(&mut cx, &proxies, out.defaults.as_ref());
    // Stats sections become [stats].
    let mut kept = Vec::new();
    for p in proxies {
        match p.stats {
            Some(ref s) if s.enabled && !p.binds.is_empty() => stats_section(&mut cx, p, out),
            Some(ref s) if s.enabled => {
                cx.report.push(
                    cx.file,
                    s.line,
                    "stats enable",
                    Outcome::NotSupported(format!(
                        "{} {} has no bind of its own: lbd serves stats only on [stats] bind, not behind a frontend's use_backend",
                        p.kind.name(),
                        p.name
                    )),
                );
                kept.push(p);
            }
            _ => kept.push(p),
        }
    }
    if prefer_xdp {
        kept = xdp::prefer_xdp_services(&mut cx, kept, out);
    }
    for p in kept {
        match p.kind {
            Kind::Frontend => out.frontends.push(p.table),
            Kind::Backend => out.backends.push(Group {
                table: p.table,
                children: p.servers,
            }),
            Kind::Listen => out.listens.push(Group {
                table: p.table,
                children: p.servers,
            }),
            Kind::Defaults => {}
        }
    }
}

/// HAProxy's "missing timeouts" warning, where it applies: lbd has
/// defaults where HAProxy would wait forever.
fn missing_timeouts(cx: &mut Ctx, proxies: &[ProxyOut], defaults: Option<&Table>) {
    let keys = |table: Option<&Table>| -> Vec<String> {
        match table.and_then(|t| t.get("timeout")) {
            Some(Value::Inline(pairs)) => pairs.iter().map(|(k, _)| k.clone()).collect(),
            _ => Vec::new(),
        }
    };
    let inherited = keys(defaults);
    for p in proxies.iter().filter(|p| p.stats.is_none()) {
        let needed: &[&str] = match p.kind {
            Kind::Frontend => &["client"],
            Kind::Backend => &["connect", "server"],
            Kind::Listen => &["client", "connect", "server"],
            Kind::Defaults => &[],
        };
        let own = keys(Some(&p.table));
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|k| !own.iter().any(|o| o == k) && !inherited.iter().any(|o| o == k))
            .collect();
        if missing.is_empty() {
            continue;
        }
        cx.report.push(
            cx.file,
            p.line,
            &format!("{} {}", p.kind.name(), p.name),
            Outcome::Approximated(format!(
                "HAProxy warns \"missing timeouts for {} '{}'\" ({}): where HAProxy would wait forever, lbd uses its defaults (client 50s, connect 5s, server 50s)",
                p.kind.name(),
                p.name,
                missing.join(", ")
            )),
        );
    }
}

/// HTTP options a tcp section inherits from `[defaults]`: HAProxy warns
/// for each section, and lbd ignores them there too.
fn inherited_http_options(cx: &mut Ctx, proxies: &[ProxyOut], defaults: Option<&Table>) {
    let Some(defaults) = defaults else {
        return;
    };
    let httplog =
        matches!(defaults.get("log_format"), Some(Value::Str(f)) if f == "httplog" || f == "clf");
    let forwardfor = matches!(defaults.get("forwardfor"), Some(v) if v != &Value::Bool(false));
    for p in proxies.iter().filter(|p| !p.mode_http && p.stats.is_none()) {
        let mut warnings = Vec::new();
        if httplog && p.kind != Kind::Backend && p.table.get("log_format").is_none() {
            warnings.push(format!(
                "'option httplog' not usable with {} '{}' (needs 'mode http'). Falling back to 'option tcplog'.",
                p.kind.name(),
                p.name
            ));
        }
        if forwardfor && p.table.get("forwardfor").is_none() {
            warnings.push(format!(
                "'option forwardfor' ignored for {} '{}' as it requires HTTP mode.",
                p.kind.name(),
                p.name
            ));
        }
        if warnings.is_empty() {
            continue;
        }
        cx.report.push(
            cx.file,
            p.line,
            &format!("{} {}", p.kind.name(), p.name),
            Outcome::Mapped(format!(
                "the tcp section ignores what it inherits from [defaults] for HTTP, as HAProxy does (it warns \"{}\")",
                warnings.join("\" and \"")
            )),
        );
    }
}

fn global(cx: &mut Ctx, section: &Section, out: &mut Output) {
    cx.report.push(
        &section.file,
        section.line,
        "global",
        Outcome::Mapped("[global]".into()),
    );
    let group = out.global.get_or_insert_with(|| Group {
        table: Table::new("global", false),
        children: Vec::new(),
    });
    group.table.comments.push(format!(
        "global ({}:{})",
        section.file.display(),
        section.line
    ));
    for d in &section.directives {
        let at = Some(format!("line {}: {}", d.line, d.text));
        match d.keyword() {
            "log" => global_log(cx, d, group),
            "maxconn" => {
                if cx.arity(d, 1, 1, 1) {
                    match d.words[1].parse::<i64>() {
                        Ok(n) => {
                            group.table.set("maxconn", Value::Int(n), at);
                            cx.mapped(d, "[global] maxconn");
                        }
                        Err(_) => cx.error(d.line, "maxconn needs a number"),
                    }
                }
            }
            "stats" => match d.word(1) {
                Some("socket") => cx.approx(
                    d,
                    "lbd's runtime commands (lbd backend, lbd status, lbd reload) use its control socket /run/lbd/<instance>.sock (root only), not this path",
                ),
                Some("timeout") => cx.approx(d, "lbd's control socket closes a client after 30 s"),
                Some("maxconn") => cx.approx(d, "lbd's control socket serves 16 clients at a time"),
                _ => cx.unsupported(d, "not in lbd"),
            },
            "chroot" => cx.approx(
                d,
                "lbd does not chroot (it needs /sys/fs/bpf, /run/lbd and netlink): confine it with its service manager",
            ),
            "pidfile" => cx.approx(d, "lbd's pid is found through its lock /run/lbd/<instance>.lock (lbd status shows it)"),
            "user" | "group" | "uid" | "gid" => cx.approx(
                d,
                "lbd keeps running as root (it attaches XDP programs and moves addresses): no privilege drop",
            ),
            "daemon" | "master-worker" => cx.approx(
                d,
                "lbd run stays in the foreground: run it under a service manager (Restart=always)",
            ),
            "nbthread" | "nbproc" | "cpu-map" => cx.approx(d, "lbd runs one proxy thread per core"),
            "ca-base" => {
                if cx.arity(d, 1, 1, 1) {
                    cx.ca_base = Some(d.words[1].clone());
                    cx.mapped(d, "prefix of relative ca-file paths");
                }
            }
            "crt-base" => {
                if cx.arity(d, 1, 1, 1) {
                    cx.crt_base = Some(d.words[1].clone());
                    cx.mapped(d, "prefix of relative crt paths");
                }
            }
            "ssl-default-bind-options" => {
                if cx.arity(d, 1, 1, usize::MAX) {
                    group.table.set(
                        "ssl_default_bind_options",
                        Value::str(d.words[1..].join(" ")),
                        at,
                    );
                    cx.mapped(d, "[global] ssl_default_bind_options");
                }
            }
            "ssl-default-bind-ciphers" | "ssl-default-bind-ciphersuites" | "ssl-default-server-ciphers"
            | "ssl-default-server-ciphersuites" | "ssl-default-server-options" => cx.approx(
                d,
                "lbd uses rustls's cipher suites (modern ones only; no configuration)",
            ),
            "tune.ssl.default-dh-param" => cx.approx(d, "rustls has no finite-field DH: nothing to tune"),
            "spread-checks" => cx.approx(d, "lbd always spreads checks over the interval"),
            "log-send-hostname" | "log-tag" => cx.unsupported(d, "lbd's syslog header is fixed (hostname and \"lbd\" tag)"),
            other => cx.unsupported(d, format!("not in lbd: global \"{other}\"")),
        }
    }
}

/// `log <target> [len N] [format F] <facility> [level [minlevel]]`.
fn global_log(cx: &mut Ctx, d: &Directive, group: &mut Group) {
    if !cx.arity(d, 1, 2, 8) {
        return;
    }
    let mut words = d.words[1..].iter().map(String::as_str);
    let Some(target) = words.next() else {
        return;
    };
    if matches!(target, "stdout" | "stderr")
        || target.starts_with("ring@")
        || target.starts_with("fd@")
    {
        cx.unsupported(
            d,
            "lbd logs to syslog over UDP or a unix socket, not to stdout/stderr or rings",
        );
        return;
    }
    let mut log = Table::new("global.log", true);
    let target = target
        .trim_start_matches("udp@")
        .trim_start_matches("udp4@")
        .trim_start_matches("ipv4@")
        .trim_start_matches("unix@");
    log.set("target", Value::str(target), Some(d.text.clone()));
    let mut verdict = Verdict::mapped("[[global.log]]");
    let mut rest: Vec<&str> = Vec::new();
    while let Some(w) = words.next() {
        match w {
            "len" => {
                words.next();
                verdict
                    .approximations
                    .push("lbd cuts datagrams at 1024 bytes".into());
            }
            "format" => match words.next() {
                Some(f @ ("rfc3164" | "rfc5424")) => {
                    log.set("format", Value::str(f), None);
                }
                Some(other) => verdict
                    .unsupported
                    .push(format!("log format {other}: lbd writes rfc3164 or rfc5424")),
                None => cx.error(d.line, "log: format needs a value"),
            },
            "sample" => {
                words.next();
                verdict.unsupported.push("lbd does not sample logs".into());
            }
            other => rest.push(other),
        }
    }
    match rest.as_slice() {
        [facility, level @ ..] => {
            log.set("facility", Value::str(*facility), None);
            if let Some(l) = level.first() {
                log.set("level", Value::str(*l), None);
            }
            if level.len() > 1 {
                verdict
                    .approximations
                    .push("lbd has no minimum level: every level up to the maximum is sent".into());
            }
        }
        [] => {
            cx.error(d.line, "log needs a facility");
            return;
        }
    }
    cx.verdict(d, verdict);
    group.children.push(log);
}

/// A HAProxy duration as lbd writes it: a bare number (milliseconds) or a
/// string with its unit.
fn duration(text: &str) -> Value {
    match text.parse::<i64>() {
        Ok(ms) => Value::Int(ms),
        Err(_) => Value::str(text),
    }
}

/// Seconds of a HAProxy duration (for XDP health checks).
fn duration_seconds(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "" | "ms" => 0.001,
        "us" => 0.000_001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Some(number * factor)
}

fn proxy(cx: &mut Ctx, section: &Section, kind: Kind, defaults_http: bool) -> ProxyOut {
    let name = section.args.first().cloned().unwrap_or_default();
    // `mode` may come last in a section: find it first, since what other
    // directives mean depends on it.
    let mut mode_http = defaults_http;
    for d in &section.directives {
        if d.keyword() == "mode" {
            mode_http = d.word(1) == Some("http");
        }
    }
    let header = match kind {
        Kind::Defaults => "defaults",
        Kind::Frontend => "frontend",
        Kind::Backend => "backend",
        Kind::Listen => "listen",
    };
    let mut table = Table::new(header, kind != Kind::Defaults);
    table.comment(format!(
        "{} {} ({}:{})",
        section.kind,
        section.args.join(" "),
        section.file.display(),
        section.line
    ));
    if kind != Kind::Defaults {
        table.set("name", Value::str(&name), None);
    }
    let mut p = ProxyOut {
        kind,
        name: name.clone(),
        line: section.line,
        mode_http,
        table,
        servers: Vec::new(),
        binds: Vec::new(),
        content_rules: false,
        stats: None,
        stats_leftovers: Vec::new(),
        server_names: BTreeSet::new(),
        lines: section.directives.iter().map(|d| d.line).collect(),
    };
    // The section line itself, and the legacy address on it.
    let shown = format!("{} {}", section.kind, section.args.join(" "));
    let mut verdict = Verdict::mapped(format!("[[{header}]] \"{name}\""));
    if kind == Kind::Defaults {
        verdict = Verdict::mapped("[defaults]");
        if !section.args.is_empty() {
            verdict
                .approximations
                .push("lbd's [defaults] has no name and no `from`".into());
        }
    }
    if matches!(kind, Kind::Frontend | Kind::Listen) && section.args.len() > 1 {
        let mut addresses = Vec::new();
        for address in section.args[1..].iter().flat_map(|a| a.split(',')) {
            match bind_address(address) {
                Ok(a) => addresses.push(a),
                Err(why) => verdict.unsupported.push(why),
            }
        }
        for a in &addresses {
            p.binds.push((a.clone(), Vec::new()));
        }
        verdict.approximations.push(format!(
            "the address on the section line is imported as bind = {:?} (HAProxy 1.x form; HAProxy 2.x refuses it: \"please use the 'bind' keyword for listening addresses\")",
            addresses
        ));
    } else if kind == Kind::Backend && section.args.len() > 1 {
        verdict
            .unsupported
            .push("a backend takes no address".into());
    }
    cx.report
        .push(&section.file, section.line, &shown, verdict.outcome());
    for d in &section.directives {
        directive(cx, d, &mut p);
    }
    if !p.binds.is_empty() {
        let binds: Vec<String> = p
            .binds
            .iter()
            .map(|(a, o)| {
                if o.is_empty() {
                    a.clone()
                } else {
                    format!("{a} {}", o.join(" "))
                }
            })
            .collect();
        p.table.set("bind", Value::strs(binds), None);
    }
    p
}

/// A HAProxy bind address as lbd writes it.
fn bind_address(address: &str) -> Result<String, String> {
    let a = address
        .trim_start_matches("ipv4@")
        .trim_start_matches("ipv6@")
        .trim_start_matches("tcp@")
        .trim_start_matches("tcp4@")
        .trim_start_matches("tcp6@");
    if a.starts_with('/')
        || a.starts_with("unix@")
        || a.starts_with("abns@")
        || a.starts_with("fd@")
    {
        return Err(format!("{address}: lbd binds TCP addresses only"));
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(format!("{address}: no port"));
    };
    if port.contains('-') {
        return Err(format!("{address}: lbd binds single ports, not ranges"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("{address}: bad port"));
    }
    match host {
        "" | "*" | "0.0.0.0" => Ok(format!("{}:{port}", if host.is_empty() { "" } else { "*" })),
        "::" | "[::]" => Ok(format!(":::{port}")),
        h => {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            match h.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => Ok(format!("{ip}:{port}")),
                Ok(IpAddr::V6(ip)) => Ok(format!("[{ip}]:{port}")),
                Err(_) => Err(format!("{address}: lbd binds IP addresses, not host names")),
            }
        }
    }
}

/// Bind options lbd (with its TLS terminator) takes, and whether each has a value.
const BIND_OPTIONS: &[(&str, bool)] = &[
    ("ssl", false),
    ("crt", true),
    ("alpn", true),
    ("ssl-min-ver", true),
    ("ssl-max-ver", true),
    ("strict-sni", false),
    ("verify", true),
    ("ca-file", true),
    ("no-tls-tickets", false),
];
/// Bind options of HAProxy lbd does not take, with whether each has a value.
const OTHER_BIND_OPTIONS: &[(&str, bool)] = &[
    ("name", true),
    ("id", true),
    ("process", true),
    ("thread", true),
    ("interface", true),
    ("mss", true),
    ("maxconn", true),
    ("backlog", true),
    ("ciphers", true),
    ("ciphersuites", true),
    ("curves", true),
    ("ecdhe", true),
    ("npn", true),
    ("crt-list", true),
    ("crl-file", true),
    ("ca-sign-file", true),
    ("user", true),
    ("group", true),
    ("uid", true),
    ("gid", true),
    ("mode", true),
    ("level", true),
    ("nice", true),
    ("namespace", true),
    ("proto", true),
    ("accept-proxy", false),
    ("transparent", false),
    ("v4v6", false),
    ("v6only", false),
    ("tfo", false),
    ("defer-accept", false),
    ("allow-0rtt", false),
    ("prefer-client-ciphers", false),
    ("no-sslv3", false),
    ("no-tlsv10", false),
    ("no-tlsv11", false),
    ("no-tlsv12", false),
    ("no-tlsv13", false),
    ("force-tlsv12", false),
    ("force-tlsv13", false),
];

fn bind(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    if !cx.arity(d, 1, 1, usize::MAX) {
        return;
    }
    let mut verdict = Verdict::mapped("bind");
    let mut addresses = Vec::new();
    for address in d.words[1].split(',') {
        match bind_address(address) {
            Ok(a) => addresses.push(a),
            Err(why) => verdict.unsupported.push(why),
        }
    }
    let mut options = Vec::new();
    let mut words = d.words[2..].iter();
    while let Some(w) = words.next() {
        if let Some((_, has_value)) = BIND_OPTIONS.iter().find(|(o, _)| o == w) {
            options.push(w.clone());
            if *has_value {
                match words.next() {
                    Some(v) => {
                        let v = match w.as_str() {
                            "crt" => cx.with_base(&cx.crt_base, v),
                            "ca-file" => cx.with_base(&cx.ca_base, v),
                            _ => v.clone(),
                        };
                        options.push(v);
                    }
                    None => {
                        cx.error(d.line, format!("bind option '{w}' needs a value"));
                        return;
                    }
                }
            }
        } else if let Some((_, has_value)) = OTHER_BIND_OPTIONS.iter().find(|(o, _)| o == w) {
            let value = if *has_value {
                words.next().cloned()
            } else {
                None
            };
            let shown = match value {
                Some(v) => format!("{w} {v}"),
                None => w.clone(),
            };
            verdict
                .unsupported
                .push(format!("bind option \"{shown}\" is not in lbd (left out)"));
        } else {
            verdict
                .unsupported
                .push(format!("unknown bind option \"{w}\" (left out)"));
        }
    }
    if options.iter().any(|o| o == "ssl") {
        verdict.mapped = Some("bind, with TLS termination (ssl ...)".into());
    }
    for a in addresses {
        p.binds.push((a, options.clone()));
    }
    cx.verdict(d, verdict);
}

/// Where a directive may appear, as HAProxy's keyword table says; a
/// directive in a section without the capability is ignored with
/// HAProxy's warning.
fn capable(cx: &mut Ctx, d: &Directive, p: &ProxyOut, frontend: bool, backend: bool) -> bool {
    let ok = (frontend && p.kind.frontend_side()) || (backend && p.kind.backend_side());
    if !ok {
        let needs = if frontend { "frontend" } else { "backend" };
        let what = d.words[..d.words.len().min(2)].join(" ");
        // HAProxy 2.6's own words: options have their own message.
        let warning = if d.keyword() == "option" && frontend {
            format!("'{what}' directive is ignored in backends.")
        } else {
            format!(
                "'{what}' ignored for {} '{}' as it requires {needs} capability",
                p.kind.name(),
                p.name
            )
        };
        cx.mapped(
            d,
            format!("nothing: HAProxy warns \"{warning}\" and so does this import"),
        );
    }
    ok
}

/// HTTP-only directives in a tcp section: HAProxy ignores them with a warning.
fn needs_http(cx: &mut Ctx, d: &Directive, p: &ProxyOut) -> bool {
    if !p.mode_http && p.kind != Kind::Defaults {
        cx.mapped(
            d,
            format!(
                "nothing: HAProxy warns \"'{}' ignored for {} '{}' as it requires HTTP mode\" and so does this import",
                d.words[..d.words.len().min(2)].join(" "),
                p.kind.name(),
                p.name
            ),
        );
        return false;
    }
    true
}

fn push_str(table: &mut Table, key: &str, value: String, comment: Option<String>) {
    let mut list = match table.get(key) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    list.push(Value::Str(value));
    table.set(key, Value::Array(list), comment);
}

fn set_timeout(table: &mut Table, key: &str, value: Value) {
    let mut pairs = match table.get("timeout") {
        Some(Value::Inline(pairs)) => pairs.clone(),
        _ => Vec::new(),
    };
    pairs.retain(|(k, _)| k != key);
    pairs.push((key.to_string(), value));
    table.set("timeout", Value::Inline(pairs), None);
}

/// Translates one directive, then notes its line beside every value it
/// set (the section's comment names the file).
fn directive(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    let before = p.table.entries.clone();
    translate_directive(cx, d, p);
    for (key, value, comment) in &mut p.table.entries {
        let unchanged = before.iter().any(|(k, v, _)| k == key && v == value);
        if !unchanged && key != "name" {
            *comment = Some(format!("line {}: {}", d.line, d.text));
        }
    }
}

fn translate_directive(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    let stats_section = section_has_stats(p, d);
    if stats_section {
        return;
    }
    match d.keyword() {
        "mode" => {
            if cx.arity(d, 1, 1, 1) {
                match d.words[1].as_str() {
                    m @ ("http" | "tcp") => {
                        p.table.set("mode", Value::str(m), None);
                        cx.mapped(d, format!("mode = \"{m}\""));
                    }
                    "health" => cx.unsupported(d, "lbd has no health-responder mode (use monitor from the stats page)"),
                    other => cx.error(d.line, format!("unknown mode \"{other}\"")),
                }
            }
        }
        "bind" => {
            if capable(cx, d, p, true, false) {
                bind(cx, d, p);
            }
        }
        "acl" => {
            if cx.arity(d, 1, 2, usize::MAX) {
                p.content_rules = true;
                push_str(&mut p.table, "acl", d.text_from(1).to_string(), None);
                cx.mapped(d, "acl");
            }
        }
        "use_backend" => {
            if capable(cx, d, p, true, false) && cx.arity(d, 1, 1, usize::MAX) {
                p.content_rules = true;
                push_str(&mut p.table, "use_backend", d.text_from(1).to_string(), None);
                cx.mapped(d, "use_backend");
            }
        }
        "default_backend" => {
            if capable(cx, d, p, true, false) && cx.arity(d, 1, 1, 1) {
                p.table.set("default_backend", Value::str(&d.words[1]), None);
                cx.mapped(d, "default_backend");
            }
        }
        k @ ("http-request" | "http-response") => {
            if cx.arity(d, 1, 1, usize::MAX) && needs_http(cx, d, p) {
                let key = k.replace('-', "_");
                push_str(&mut p.table, &key, d.text_from(1).to_string(), None);
                cx.mapped(d, key);
            }
        }
        "redirect" => {
            if cx.arity(d, 1, 2, usize::MAX) && needs_http(cx, d, p) {
                push_str(
                    &mut p.table,
                    "http_request",
                    format!("redirect {}", d.text_from(1)),
                    None,
                );
                cx.mapped(d, "http_request \"redirect ...\" (HAProxy's `redirect` is the same rule)");
            }
        }
        "tcp-request" => {
            if capable(cx, d, p, true, false) && cx.arity(d, 1, 1, usize::MAX) {
                p.content_rules = true;
                push_str(&mut p.table, "tcp_request", d.text_from(1).to_string(), None);
                cx.mapped(d, "tcp_request");
            }
        }
        "maxconn" => {
            if capable(cx, d, p, true, false) && cx.arity(d, 1, 1, 1) {
                match d.words[1].parse::<i64>() {
                    Ok(n) => {
                        p.table.set("maxconn", Value::Int(n), None);
                        cx.mapped(d, "maxconn");
                    }
                    Err(_) => cx.error(d.line, "maxconn needs a number"),
                }
            }
        }
        "retries" => {
            if capable(cx, d, p, false, true) && cx.arity(d, 1, 1, 1) {
                match d.words[1].parse::<i64>() {
                    Ok(n) => {
                        p.table.set("retries", Value::Int(n), None);
                        cx.mapped(d, "retries");
                    }
                    Err(_) => cx.error(d.line, "retries needs a number"),
                }
            }
        }
        "timeout" => timeout(cx, d, p),
        k @ ("contimeout" | "clitimeout" | "srvtimeout") => {
            if cx.arity(d, 1, 1, 1) {
                let (key, front) = match k {
                    "contimeout" => ("connect", false),
                    "clitimeout" => ("client", true),
                    _ => ("server", false),
                };
                if capable(cx, d, p, front, !front) {
                    set_timeout(&mut p.table, key, duration(&d.words[1]));
                    cx.mapped(d, format!("timeout.{key} (HAProxy 1.x keyword; HAProxy 2.x refuses it: use 'timeout {key}')"));
                }
            }
        }
        "log" => match d.word(1) {
            // `log global` alone stays `log = true`; beside targets of the
            // section's own it becomes the list's "global".
            Some("global") if p.table.get("log").is_none() => {
                p.table.set("log", Value::Bool(true), None);
                cx.mapped(d, "log = true (to [[global.log]])");
            }
            Some(_) => {
                if matches!(p.table.get("log"), Some(Value::Bool(true))) {
                    p.table.set("log", Value::strs(["global"]), None);
                }
                push_str(&mut p.table, "log", d.text_from(1).to_string(), None);
                cx.mapped(d, "log (a log line of the section's own, as HAProxy writes it)");
            }
            None => cx.error(d.line, "log needs 'global' or a target"),
        },
        "no" => match (d.word(1), d.word(2)) {
            (Some("log"), None) => {
                p.table.set("log", Value::Bool(false), None);
                cx.mapped(d, "log = false");
            }
            (Some("option"), Some(_)) => option(cx, d, p, false),
            _ => cx.unsupported(d, "not in lbd"),
        },
        "option" => {
            if cx.arity(d, 1, 1, usize::MAX) {
                option(cx, d, p, true)
            }
        }
        "balance" => {
            if capable(cx, d, p, false, true) && cx.arity(d, 1, 1, usize::MAX) {
                p.table.set("balance", Value::str(d.text_from(1)), None);
                cx.mapped(d, "balance");
            }
        }
        "hash-type" => cx.approx(
            d,
            "lbd's hashing algorithms always hash consistently (a weighted Maglev table, like hash-type consistent)",
        ),
        "server" => {
            if capable(cx, d, p, false, true) && cx.arity(d, 1, 2, usize::MAX) {
                server(cx, d, p);
            }
        }
        "default-server" => {
            if capable(cx, d, p, false, true) && cx.arity(d, 1, 1, usize::MAX) {
                default_server(cx, d, p);
            }
        }
        "http-check" => match d.word(1) {
            Some("expect") => {
                if cx.arity(d, 2, 2, usize::MAX) && capable(cx, d, p, false, true) {
                    p.table
                        .set("http_check_expect", Value::str(d.text_from(2)), None);
                    cx.mapped(d, "http_check_expect");
                }
            }
            Some("send") => {
                if capable(cx, d, p, false, true) {
                    http_check_send(cx, d, p);
                }
            }
            Some("disable-on-404") => cx.unsupported(d, "lbd has no drain-on-404"),
            _ => cx.unsupported(
                d,
                "lbd's checks are one request (option httpchk / http-check send) and one expect",
            ),
        },
        "description" => cx.approx(d, "lbd keeps no description: left as a comment"),
        "id" => cx.approx(d, "lbd identifies sections by name"),
        "disabled" => cx.unsupported(d, "lbd has no disabled sections: leave the section out"),
        "enabled" => cx.mapped(d, "nothing: sections are enabled"),
        "capture" | "unique-id-format" | "unique-id-header" | "log-format" | "log-tag"
        | "error-log-format" => cx.unsupported(
            d,
            "lbd logs in httplog, tcplog, clf or json, without captures or a custom format",
        ),
        "compression" | "cache-store" | "cache-use" => cx.unsupported(d, "lbd does not compress or cache"),
        "errorfile" | "errorloc" | "errorloc302" | "errorloc303" | "http-error" | "errorfiles" => {
            cx.unsupported(d, "lbd sends its own short error pages")
        }
        "cookie" | "stick-table" | "stick" | "persist" | "force-persist" | "ignore-persist"
        | "use-server" => cx.unsupported(
            d,
            "lbd has no stickiness: use a hashing balance (source, hdr, url_param) instead",
        ),
        "monitor-uri" | "monitor" => cx.unsupported(d, "lbd has no monitor URI: use /metrics of [stats]"),
        "rate-limit" | "fullconn" | "source" | "dispatch" | "server-template" | "http-reuse"
        | "filter" | "declare" | "http-after-response" | "tcp-response" | "email-alert"
        | "bind-process" | "backlog" | "max-keep-alive-queue" | "retry-on" | "http-send-name-header" => {
            cx.unsupported(d, "not in lbd")
        }
        k if k.starts_with("req") || k.starts_with("rsp") => cx.unsupported(
            d,
            "removed in HAProxy 2.1: write it as http_request / http_response rules",
        ),
        other => cx.unsupported(d, format!("unknown to lbd: \"{other}\"")),
    }
}

/// `http-check send [meth M] [uri U] [ver V] [hdr NAME VALUE]...`: the
/// check request, written into `httpchk` in HAProxy's older single-line
/// form (what lbd takes), over what `option httpchk` said.
fn http_check_send(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    let base = match p.table.get("httpchk") {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let mut base_words = base.split_whitespace();
    let mut method = base_words.next().unwrap_or("OPTIONS").to_string();
    let mut uri = base_words.next().unwrap_or("/").to_string();
    let mut version = base_words.next().unwrap_or("HTTP/1.0").to_string();
    let mut headers = String::new();
    let escape = |text: &str| text.replace('\\', "\\\\").replace(' ', "\\ ");
    let mut words = d.words[2..].iter();
    while let Some(w) = words.next() {
        let mut value = || words.next().cloned();
        match w.as_str() {
            "meth" => method = value().unwrap_or_default(),
            "uri" => uri = value().unwrap_or_default(),
            "ver" => version = value().unwrap_or_default(),
            "hdr" => {
                let (Some(name), Some(v)) = (value(), value()) else {
                    cx.error(d.line, "http-check send: hdr needs a name and a value");
                    return;
                };
                headers.push_str(&format!("\\r\\n{name}:\\ {}", escape(&v)));
            }
            other => {
                cx.unsupported(
                    d,
                    format!("lbd's check request has no \"{other}\" (body, uri-lf, comment...)"),
                );
                return;
            }
        }
    }
    if method.is_empty() || uri.is_empty() || version.is_empty() {
        cx.error(d.line, "http-check send: meth, uri and ver need a value");
        return;
    }
    let request = format!(
        "{} {} {}{headers}",
        escape(&method),
        escape(&uri),
        escape(&version)
    );
    p.table.remove("tcp_check");
    p.table.set("httpchk", Value::Str(request), None);
    cx.mapped(
        d,
        "httpchk (the request as one string: METHOD URI VERSION\\r\\nHeader:\\ value)",
    );
}

fn timeout(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    if !cx.arity(d, 1, 2, 2) {
        return;
    }
    let (key, front, http_only) = match d.words[1].as_str() {
        "client" => ("client", true, false),
        "http-request" => ("http_request", true, true),
        "http-keep-alive" => ("http_keep_alive", true, true),
        "connect" => ("connect", false, false),
        "server" => ("server", false, false),
        "queue" => ("queue", false, false),
        "check" => ("check", false, false),
        "tunnel" => ("tunnel", false, false),
        "client-fin" | "server-fin" | "tarpit" => {
            cx.unsupported(d, "lbd has no such timeout");
            return;
        }
        other => {
            cx.error(d.line, format!("unknown timeout \"{other}\""));
            return;
        }
    };
    if !capable(cx, d, p, front, !front) {
        return;
    }
    if http_only && !p.mode_http && p.kind != Kind::Defaults {
        cx.mapped(
            d,
            "nothing: it applies to HTTP only and this section is tcp",
        );
        return;
    }
    set_timeout(&mut p.table, key, duration(&d.words[2]));
    cx.mapped(d, format!("timeout.{key}"));
}

fn option(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut, on: bool) {
    let at = if on { 1 } else { 2 };
    let name = d.words[at].as_str();
    let args = &d.words[at + 1..];
    match name {
        "httplog" => {
            if !capable(cx, d, p, true, false) {
                return;
            }
            if !on {
                p.table.remove("log_format");
                cx.mapped(d, "log_format unset");
                return;
            }
            if !p.mode_http && p.kind != Kind::Defaults {
                p.table.set("log_format", Value::str("tcplog"), None);
                cx.mapped(
                    d,
                    format!(
                        "log_format = \"tcplog\": HAProxy warns \"'option httplog' not usable with {} '{}' (needs 'mode http'). Falling back to 'option tcplog'\"",
                        p.kind.name(),
                        p.name
                    ),
                );
                return;
            }
            let format = if args.first().map(String::as_str) == Some("clf") {
                "clf"
            } else {
                "httplog"
            };
            p.table.set("log_format", Value::str(format), None);
            cx.mapped(d, format!("log_format = \"{format}\""));
        }
        "tcplog" => {
            if capable(cx, d, p, true, false) {
                p.table.set("log_format", Value::str("tcplog"), None);
                cx.mapped(d, "log_format = \"tcplog\"");
            }
        }
        "dontlognull" => {
            if capable(cx, d, p, true, false) {
                p.table.set("dontlognull", Value::Bool(on), None);
                cx.mapped(d, format!("dontlognull = {on}"));
            }
        }
        m @ ("http-server-close" | "httpclose" | "http-keep-alive" | "forceclose") => {
            if !needs_http(cx, d, p) {
                return;
            }
            let mode = if m == "forceclose" { "httpclose" } else { m };
            if on {
                p.table.set("http_connection_mode", Value::str(mode), None);
                if m == "forceclose" {
                    cx.mapped(d, "http_connection_mode = \"httpclose\" (forceclose was removed in HAProxy 1.9)");
                } else {
                    cx.mapped(d, format!("http_connection_mode = \"{mode}\""));
                }
            } else {
                p.table.remove("http_connection_mode");
                cx.mapped(d, "http_connection_mode: keep-alive (lbd's default)");
            }
        }
        "forwardfor" => {
            if !needs_http(cx, d, p) {
                return;
            }
            if !on {
                p.table.set("forwardfor", Value::Bool(false), None);
                cx.mapped(d, "forwardfor = false");
                return;
            }
            let mut pairs = Vec::new();
            let mut verdict = Verdict::mapped("forwardfor");
            let mut words = args.iter();
            while let Some(w) = words.next() {
                match (w.as_str(), words.clone().next()) {
                    ("except", Some(net)) => {
                        words.next();
                        pairs.push(("except".to_string(), Value::strs([net.clone()])));
                    }
                    ("header", Some(h)) => {
                        words.next();
                        pairs.push(("header".to_string(), Value::str(h)));
                    }
                    ("if-none", _) => verdict
                        .approximations
                        .push("lbd always adds the header (no if-none)".into()),
                    (other, _) => {
                        cx.error(
                            d.line,
                            format!("option forwardfor: unknown or incomplete \"{other}\""),
                        );
                        return;
                    }
                }
            }
            let value = if pairs.is_empty() {
                Value::Bool(true)
            } else {
                Value::Inline(pairs)
            };
            p.table.set("forwardfor", value, None);
            cx.verdict(d, verdict);
        }
        "forwarded" => {
            if needs_http(cx, d, p) {
                p.table.set("forwarded", Value::Bool(on), None);
                if args.is_empty() {
                    cx.mapped(d, "forwarded");
                } else {
                    cx.approx(d, "forwarded: lbd writes for= and proto= (its parameters are not configurable)");
                }
            }
        }
        "redispatch" => {
            if capable(cx, d, p, false, true) {
                p.table.set("redispatch", Value::Bool(on), None);
                if args.is_empty() {
                    cx.mapped(d, "redispatch");
                } else {
                    cx.approx(
                        d,
                        "redispatch: lbd redispatches on the last retry (no interval)",
                    );
                }
            }
        }
        "allbackups" => {
            if capable(cx, d, p, false, true) {
                p.table.set("allbackups", Value::Bool(on), None);
                cx.mapped(d, "allbackups");
            }
        }
        "httpchk" => {
            if !capable(cx, d, p, false, true) {
                return;
            }
            if !on {
                p.table.remove("httpchk");
                cx.mapped(d, "httpchk unset");
                return;
            }
            if args.is_empty() {
                p.table.set("httpchk", Value::Bool(true), None);
                cx.mapped(d, "httpchk = true (OPTIONS / HTTP/1.0)");
                return;
            }
            p.table.remove("tcp_check");
            p.table
                .set("httpchk", Value::str(d.text_from(at + 1)), None);
            let version = args.get(2).map(String::as_str).unwrap_or("");
            if version.contains('\n') || args.len() > 3 {
                cx.mapped(
                    d,
                    "httpchk, sent as written; HAProxy warns \"'option httpchk' : hiding headers or body at the end of the version string is deprecated. Please, consider to use 'http-check send' directive instead.\"",
                );
            } else {
                cx.mapped(d, "httpchk");
            }
        }
        "tcp-check" => {
            if capable(cx, d, p, false, true) {
                p.table.set("tcp_check", Value::Bool(on), None);
                cx.mapped(d, "tcp_check = true (connect only)");
            }
        }
        "ssl-hello-chk" | "mysql-check" | "pgsql-check" | "redis-check" | "smtpchk"
        | "ldap-check" | "spop-check" | "external-check" => {
            cx.unsupported(d, "lbd checks servers by TCP connect or HTTP (httpchk)")
        }
        "log-health-checks" => cx.approx(d, "lbd logs every server state change, not every check"),
        "abortonclose"
        | "accept-invalid-http-request"
        | "accept-invalid-http-response"
        | "http-buffer-request"
        | "http-pretend-keepalive"
        | "http-no-delay"
        | "http-use-proxy-header"
        | "independent-streams"
        | "nolinger"
        | "originalto"
        | "persist"
        | "prefer-last-server"
        | "socket-stats"
        | "splice-auto"
        | "splice-request"
        | "splice-response"
        | "tcp-smart-accept"
        | "tcp-smart-connect"
        | "tcpka"
        | "clitcpka"
        | "srvtcpka"
        | "transparent"
        | "logasap"
        | "log-separate-errors"
        | "dontlog-normal"
        | "checkcache"
        | "contstats"
        | "http-ignore-probes"
        | "disable-h2-upgrade"
        | "h1-case-adjust-bogus-client"
        | "h1-case-adjust-bogus-server"
        | "http-restrict-req-hdr-names"
        | "idle-close-on-response"
        | "httpslog"
        | "http-tunnel" => cx.unsupported(d, format!("lbd has no option {name}")),
        other => cx.unsupported(d, format!("unknown option \"{other}\"")),
    }
}

/// Server options lbd takes: `(haproxy, lbd field, has value)`.
const SERVER_FLAGS: &[(&str, &str)] = &[
    ("check", "check"),
    ("backup", "backup"),
    ("disabled", "disabled"),
    ("ssl", "ssl"),
    ("check-ssl", "check_ssl"),
];
const SERVER_VALUES: &[(&str, &str)] = &[
    ("weight", "weight"),
    ("inter", "inter"),
    ("rise", "rise"),
    ("fall", "fall"),
    ("maxconn", "maxconn"),
    ("verify", "verify"),
    ("ca-file", "ca_file"),
    ("sni", "sni"),
    ("crt", "crt"),
];
/// Server options lbd does not take, with whether each has a value.
const OTHER_SERVER_OPTIONS: &[(&str, bool, &str)] = &[
    ("port", true, "lbd checks the server's own port"),
    ("addr", true, "lbd checks the server's own address"),
    (
        "fastinter",
        true,
        "lbd checks every inter, whatever the state",
    ),
    (
        "downinter",
        true,
        "lbd checks every inter, whatever the state",
    ),
    (
        "slowstart",
        true,
        "the proxy's servers have no slow start (XDP backends have)",
    ),
    ("cookie", true, "lbd has no cookie persistence"),
    ("id", true, "lbd identifies servers by name"),
    ("resolvers", true, "lbd does not resolve names"),
    ("resolve-prefer", true, "lbd does not resolve names"),
    ("init-addr", true, "lbd does not resolve names"),
    (
        "on-marked-down",
        true,
        "lbd does not cut sessions on state changes",
    ),
    (
        "on-marked-up",
        true,
        "lbd does not cut sessions on state changes",
    ),
    ("on-error", true, "lbd does not observe traffic for health"),
    ("observe", true, "lbd does not observe traffic for health"),
    (
        "error-limit",
        true,
        "lbd does not observe traffic for health",
    ),
    ("agent-port", true, "lbd has no agent checks"),
    ("agent-inter", true, "lbd has no agent checks"),
    ("agent-send", true, "lbd has no agent checks"),
    ("minconn", true, "lbd has no dynamic maxconn"),
    (
        "maxqueue",
        true,
        "lbd queues per backend without a per-server limit",
    ),
    ("track", true, "lbd has no tracked servers"),
    ("redir", true, "lbd has no redirect servers"),
    ("alpn", true, "lbd speaks HTTP/1.1 to servers"),
    ("proto", true, "lbd speaks HTTP/1.1 to servers"),
    ("ciphers", true, "lbd uses rustls's cipher suites"),
    ("check-sni", true, "lbd's checks use the server's sni"),
    ("pool-max-conn", true, "lbd pools per server without limits"),
    (
        "pool-purge-delay",
        true,
        "lbd pools per server without limits",
    ),
    (
        "source",
        true,
        "lbd connects from the kernel's chosen source",
    ),
    ("send-proxy", false, "lbd sends no PROXY protocol header"),
    ("send-proxy-v2", false, "lbd sends no PROXY protocol header"),
    ("agent-check", false, "lbd has no agent checks"),
    ("no-check", false, ""),
    ("no-ssl", false, ""),
    ("no-backup", false, ""),
    ("enabled", false, ""),
    ("tfo", false, "lbd does not use TCP fast open"),
    ("ws", true, "lbd relays WebSocket on any server"),
];

/// The options after `server NAME ADDR` or `default-server`.
fn server_options(
    cx: &mut Ctx,
    d: &Directive,
    words: &[String],
    table: &mut Table,
    verdict: &mut Verdict,
    allowed_values: &[&str],
) -> bool {
    let mut words = words.iter();
    while let Some(w) = words.next() {
        if let Some((_, field)) = SERVER_FLAGS.iter().find(|(o, _)| o == w) {
            if allowed_values.contains(field) {
                table.set(field, Value::Bool(true), None);
            } else {
                verdict
                    .unsupported
                    .push(format!("{w} is not taken in default-server by lbd"));
            }
        } else if let Some((_, field)) = SERVER_VALUES.iter().find(|(o, _)| o == w) {
            let Some(v) = words.next() else {
                cx.error(d.line, format!("server option '{w}' needs a value"));
                return false;
            };
            if !allowed_values.contains(field) {
                verdict
                    .unsupported
                    .push(format!("{w} is not taken in default-server by lbd"));
                continue;
            }
            let value = match *field {
                "weight" | "rise" | "fall" | "maxconn" => match v.parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => {
                        cx.error(d.line, format!("server option '{w}' needs a number"));
                        return false;
                    }
                },
                "inter" => duration(v),
                "ca_file" => Value::str(cx.with_base(&cx.ca_base, v)),
                "crt" => Value::str(cx.with_base(&cx.crt_base, v)),
                _ => Value::str(v),
            };
            table.set(field, value, None);
        } else if let Some((_, has_value, why)) =
            OTHER_SERVER_OPTIONS.iter().find(|(o, _, _)| o == w)
        {
            let value = if *has_value { words.next() } else { None };
            if why.is_empty() {
                continue;
            }
            let shown = match value {
                Some(v) => format!("{w} {v}"),
                None => w.clone(),
            };
            verdict
                .unsupported
                .push(format!("{shown}: {why} (left out)"));
        } else {
            verdict
                .unsupported
                .push(format!("unknown server option \"{w}\" (left out)"));
        }
    }
    true
}

/// A server address as lbd takes it: `IP:PORT` or `[IPv6]:PORT`.
fn server_address(address: &str) -> Result<String, String> {
    let a = address
        .trim_start_matches("ipv4@")
        .trim_start_matches("ipv6@");
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok(sa.to_string());
    }
    match a.rsplit_once(':') {
        Some((host, port)) => {
            let Ok(port) = port.parse::<u16>() else {
                return Err(format!(
                    "{address}: lbd needs a fixed port (no ranges or offsets)"
                ));
            };
            match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                Ok(ip) => Ok(SocketAddr::new(ip, port).to_string()),
                Err(_) if !host.contains(':') => Err(format!(
                    "{address}: lbd does not resolve host names: write the address"
                )),
                Err(_) => Err(format!("{address}: not an address")),
            }
        }
        None if a.parse::<IpAddr>().is_ok() => Err(format!(
            "{address}: no port (HAProxy then uses the port the client connected to; lbd needs the server's port)"
        )),
        None => Err(format!("{address}: lbd does not resolve host names and needs a port")),
    }
}

fn server(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    let mut verdict = Verdict::mapped(format!("[[{}.server]]", p.table.header));
    let address = match server_address(&d.words[2]) {
        Ok(a) => a,
        Err(why) => {
            cx.unsupported(d, format!("{why} (server left out)"));
            return;
        }
    };
    let mut name = d.words[1].clone();
    if !p.server_names.insert(name.clone()) {
        let mut n = 2;
        while p.server_names.contains(&format!("{name}_{n}")) {
            n += 1;
        }
        let renamed = format!("{name}_{n}");
        verdict.approximations.push(format!(
            "a second server named {name} in {}: imported as {renamed} (HAProxy 2.6 refuses the file: \"another server named '{name}' was already defined, please use distinct names\"; lbd's names identify servers across reloads)",
            p.name
        ));
        p.server_names.insert(renamed.clone());
        name = renamed;
    }
    let mut table = Table::new(&format!("{}.server", p.table.header), true);
    table.set("name", Value::str(&name), None);
    table.set("address", Value::str(address), Some(d.text.clone()));
    let all: Vec<&str> = SERVER_FLAGS
        .iter()
        .chain(SERVER_VALUES)
        .map(|(_, f)| *f)
        .collect();
    if !server_options(cx, d, &d.words[3..], &mut table, &mut verdict, &all) {
        return;
    }
    if table.get("ssl").is_some() {
        verdict.mapped = Some(format!(
            "[[{}.server]] with TLS to the server (ssl ...)",
            p.table.header
        ));
    }
    cx.verdict(d, verdict);
    p.servers.push(table);
}

fn default_server(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    let mut verdict = Verdict::mapped("default_server");
    let mut table = Table::new("x", false);
    let allowed = [
        "weight",
        "check",
        "inter",
        "rise",
        "fall",
        "maxconn",
        "ssl",
        "verify",
        "ca_file",
        "sni",
        "check_ssl",
        "crt",
    ];
    if !server_options(cx, d, &d.words[1..], &mut table, &mut verdict, &allowed) {
        return;
    }
    let mut pairs = match p.table.get("default_server") {
        Some(Value::Inline(pairs)) => pairs.clone(),
        _ => Vec::new(),
    };
    for (k, v, _) in table.entries {
        pairs.retain(|(key, _)| key != &k);
        pairs.push((k, v));
    }
    p.table.set("default_server", Value::Inline(pairs), None);
    cx.verdict(d, verdict);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_and_server_addresses() {
        assert_eq!(bind_address("*:80").unwrap(), "*:80");
        assert_eq!(bind_address(":80").unwrap(), ":80");
        assert_eq!(bind_address("0.0.0.0:80").unwrap(), "*:80");
        assert_eq!(bind_address(":::80").unwrap(), ":::80");
        assert_eq!(bind_address("198.18.0.1:443").unwrap(), "198.18.0.1:443");
        assert_eq!(bind_address("ipv6@fd00::1:80").unwrap(), "[fd00::1]:80");
        assert!(bind_address("/run/x.sock").is_err());
        assert!(bind_address("*:8000-8010").is_err());
        assert!(bind_address("web:80").is_err());
        assert_eq!(server_address("198.18.0.1:80").unwrap(), "198.18.0.1:80");
        assert_eq!(server_address("fd00::1:80").unwrap(), "[fd00::1]:80");
        assert!(server_address("198.18.0.1")
            .unwrap_err()
            .contains("no port"));
        assert!(server_address("web1:80")
            .unwrap_err()
            .contains("host names"));
        assert_eq!(duration_seconds("2s"), Some(2.0));
        assert_eq!(duration_seconds("500"), Some(0.5));
        assert_eq!(duration_seconds("1m"), Some(60.0));
        assert_eq!(duration_seconds("x"), None);
    }
}
