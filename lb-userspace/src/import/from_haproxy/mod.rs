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

mod bind;
mod context;
mod global;
mod http_check;
mod option;
mod proxy;
mod server;
mod stats;
mod timeout;
mod values;
mod xdp;

use bind::{bind, bind_address};
use context::{Ctx, Verdict};
use global::global;
use http_check::http_check_send;
use option::option;
use proxy::{capable, needs_http, proxy};
use server::{default_server, server};
use stats::{section_has_stats, stats_section};
use timeout::timeout;
use values::{duration, duration_seconds, push_str, set_timeout};

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
