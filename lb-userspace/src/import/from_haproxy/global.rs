//! The `global` section onto `[global]`, its `log` lines onto
//! `[[global.log]]`.
use super::*;

pub(super) fn global(cx: &mut Ctx, section: &Section, out: &mut Output) {
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
            "ca-base" | "crt-base" => {
                if cx.arity(d, 1, 1, 1) {
                    path_base(cx, d, &mut group.table, at);
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

/// `crt-base DIR` / `ca-base DIR`: an absolute directory becomes
/// `[global] crt_base` / `ca_base`, so the paths stay as the operator
/// wrote them and lbd reads them from the same place. lbd refuses a
/// relative base (it would depend on the directory lbd starts in): then the
/// base is written into each relative path instead, as HAProxy would read it
/// from the directory it was started in.
fn path_base(cx: &mut Ctx, d: &Directive, table: &mut Table, at: Option<String>) {
    let (field, paths) = match d.keyword() {
        "crt-base" => ("crt_base", "crt"),
        _ => ("ca_base", "ca-file"),
    };
    let base = d.words[1].clone();
    if base.starts_with('/') {
        table.set(field, Value::str(base), at);
        cx.mapped(
            d,
            format!("[global] {field} (relative {paths} paths are read under it)"),
        );
        return;
    }
    cx.approx(
        d,
        format!("lbd takes an absolute {field}: \"{base}\" is written into each relative {paths} path (relative to where lbd starts)"),
    );
    if field == "crt_base" {
        cx.crt_base = Some(base);
    } else {
        cx.ca_base = Some(base);
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
