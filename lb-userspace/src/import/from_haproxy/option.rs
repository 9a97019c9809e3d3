//! `option NAME` and `no option NAME`.
use super::*;

pub(super) fn option(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut, on: bool) {
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
                // `option redispatch <interval>`: lbd takes HAProxy's
                // integer as it is (every Pth retry, or the Nth from the
                // end); `lbd check` judges its range against `retries`.
                match args.first().map(|a| a.parse::<i64>()) {
                    None => {
                        p.table.set("redispatch", Value::Bool(on), None);
                        cx.mapped(d, "redispatch");
                    }
                    Some(Ok(interval)) if on => {
                        p.table.set("redispatch", Value::Int(interval), None);
                        cx.mapped(d, "redispatch");
                    }
                    Some(_) => {
                        p.table.set("redispatch", Value::Bool(on), None);
                        cx.approx(d, "redispatch: the interval is not an integer; ignored");
                    }
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
