//! `timeout NAME DURATION` onto lbd's `timeout` table.
use super::*;

pub(super) fn timeout(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
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
