//! A `real_server`'s checker (`TCP_CHECK`, `HTTP_GET`, ...) onto the
//! service's `health_check`.
use super::*;

pub(super) fn health_check(
    cx: &mut Ctx,
    node: &Node,
    kind: &str,
    virtualhost: Option<&str>,
    check: &mut Vec<(String, Value)>,
) {
    let set = |check: &mut Vec<(String, Value)>, key: &str, value: Value| {
        check.retain(|(k, _)| k != key);
        check.push((key.to_string(), value));
    };
    let lbd_kind = match kind {
        "TCP_CHECK" => "tcp",
        "HTTP_GET" => "http",
        "SSL_GET" => "https",
        _ => "command",
    };
    set(check, "kind", Value::str(lbd_kind));
    if kind == "SSL_GET" {
        set(check, "tls_skip_verify", Value::Bool(true));
    }
    if let Some(host) = virtualhost {
        if lbd_kind.starts_with("http") {
            set(check, "host", Value::str(host));
        }
    }
    cx.mapped(node, format!("health_check kind = \"{lbd_kind}\""));
    let empty = Vec::new();
    let mut urls = 0;
    for child in node.block.as_ref().unwrap_or(&empty) {
        match child.keyword() {
            "connect_timeout" | "misc_timeout" => {
                if let Some(t) = cx.number::<f64>(child) {
                    set(check, "timeout", Value::Float(t));
                    cx.mapped(child, "health_check timeout");
                }
            }
            "connect_port" => {
                if let Some(p) = cx.number::<i64>(child) {
                    set(check, "port", Value::Int(p));
                    cx.mapped(child, "health_check port");
                }
            }
            "connect_ip" => {
                if let Some(a) = cx.one(child) {
                    set(check, "address", Value::str(a));
                    cx.mapped(child, "health_check address");
                }
            }
            "retry" | "nb_get_retry" => {
                if let Some(n) = cx.number::<i64>(child) {
                    set(check, "fall", Value::Int(n.max(1)));
                    set(check, "rise", Value::Int(1));
                    cx.approx(
                        child,
                        "fall (consecutive failed checks, one per interval; keepalived retries within the check after delay_before_retry), rise = 1 as keepalived",
                    );
                }
            }
            "delay_before_retry" => cx.approx(
                child,
                "lbd retries at the next interval, not after this delay",
            ),
            "misc_path" => {
                if child.words.len() < 2 {
                    cx.error(child, "misc_path needs a command");
                } else {
                    set(check, "command", Value::str(child.words[1..].join(" ")));
                    cx.mapped(child, "health_check command (/bin/sh -c; exit 0 = up)");
                }
            }
            "misc_dynamic" => {
                cx.unsupported(child, "lbd does not set weights from a check's exit code")
            }
            "url" => {
                urls += 1;
                if urls > 1 {
                    cx.unsupported(
                        child,
                        "lbd checks one URL per backend: only the first is imported",
                    );
                    continue;
                }
                url(cx, child, check);
            }
            "virtualhost" => {
                if let Some(h) = cx.one(child) {
                    set(check, "host", Value::str(h));
                    cx.mapped(child, "health_check host");
                }
            }
            "bindto" | "bind_port" | "bind_if" | "fwmark" | "warmup" | "user" => {
                cx.unsupported(child, "lbd's checks have no such setting")
            }
            other => cx.unsupported(child, format!("not in lbd: {kind} \"{other}\"")),
        }
    }
}

pub(super) fn url(cx: &mut Ctx, node: &Node, check: &mut Vec<(String, Value)>) {
    let Some(children) = cx.block(node) else {
        return;
    };
    cx.mapped(node, "health_check path and expected status");
    for child in children {
        match child.keyword() {
            "path" => {
                if let Some(p) = cx.one(child) {
                    check.retain(|(k, _)| k != "path");
                    check.push(("path".into(), Value::str(p)));
                    cx.mapped(child, "health_check path");
                }
            }
            "status_code" => {
                if child.words.len() < 2 {
                    cx.error(child, "status_code needs a value");
                    continue;
                }
                let statuses = child.words[1..].join(",");
                check.retain(|(k, _)| k != "expect_status");
                check.push(("expect_status".into(), Value::str(statuses)));
                cx.mapped(child, "health_check expect_status");
            }
            "digest" => cx.unsupported(
                child,
                "lbd does not compare an MD5 digest of the body: use expect_body with a substring",
            ),
            other => cx.unsupported(child, format!("not in lbd: url \"{other}\"")),
        }
    }
    if !check.iter().any(|(k, _)| k == "expect_status") {
        // keepalived accepts only 200 unless status_code says otherwise.
        check.push(("expect_status".into(), Value::str("200")));
    }
}
