//! A proxy section (`defaults`, `frontend`, `backend`, `listen`) and
//! the directives in it, each with exactly one report line.
use super::*;

pub(super) fn proxy(cx: &mut Ctx, section: &Section, kind: Kind, defaults_http: bool) -> ProxyOut {
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

/// Where a directive may appear, as HAProxy's keyword table says; a
/// directive in a section without the capability is ignored with
/// HAProxy's warning.
pub(super) fn capable(
    cx: &mut Ctx,
    d: &Directive,
    p: &ProxyOut,
    frontend: bool,
    backend: bool,
) -> bool {
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
pub(super) fn needs_http(cx: &mut Ctx, d: &Directive, p: &ProxyOut) -> bool {
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
