//! `--prefer-xdp`: which tcp frontends an XDP service serves, and the
//! services they become.
use super::*;

/// `--prefer-xdp`: a tcp frontend (or listen) without content rules whose
/// one backend has plain servers becomes an XDP service on each VIP it
/// binds (a wildcard bind: on each VRRP address). Every frontend gets a
/// report line saying which path it took and why.
pub(super) fn prefer_xdp_services(
    cx: &mut Ctx,
    proxies: Vec<ProxyOut>,
    out: &mut Output,
) -> Vec<ProxyOut> {
    let mut moved: Vec<usize> = Vec::new();
    for (index, p) in proxies.iter().enumerate() {
        if !matches!(p.kind, Kind::Frontend | Kind::Listen) {
            continue;
        }
        let backend = if p.kind == Kind::Listen {
            Some(p)
        } else {
            match p.table.get("default_backend") {
                Some(Value::Str(name)) => proxies
                    .iter()
                    .find(|b| b.kind == Kind::Backend && &b.name == name),
                _ => None,
            }
        };
        let mut why_not = Vec::new();
        if p.mode_http {
            why_not.push("mode http: requests are parsed, which only the proxy does".to_string());
        }
        if p.content_rules {
            why_not.push("content rules (acl, use_backend, tcp-request) need the proxy".into());
        }
        let Some(backend) = backend else {
            why_not.push("no default_backend to serve".into());
            report_path(cx, p, Err(why_not));
            continue;
        };
        if backend.mode_http {
            why_not.push(format!("backend {} is mode http", backend.name));
        }
        if backend.servers.is_empty() {
            why_not.push(format!("backend {} has no servers", backend.name));
        }
        for s in &backend.servers {
            for key in ["backup", "maxconn", "ssl", "disabled"] {
                if s.get(key).is_some() {
                    why_not.push(format!(
                        "server {} uses {key}, which XDP does not do",
                        string(s.get("name"))
                    ));
                }
            }
        }
        match backend.table.get("balance") {
            None => {}
            Some(Value::Str(b))
                if [
                    "roundrobin",
                    "static-rr",
                    "leastconn",
                    "source",
                    "random",
                    "first",
                ]
                .contains(&b.as_str()) => {}
            Some(Value::Str(b)) => why_not.push(format!("balance {b} needs the proxy")),
            _ => {}
        }
        let mut targets: Vec<(IpAddr, u16)> = Vec::new();
        for (address, options) in &p.binds {
            if !options.is_empty() {
                why_not.push(format!(
                    "bind {address} has options ({})",
                    options.join(" ")
                ));
                continue;
            }
            let Some((host, port)) = address.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            match host {
                "" | "*" | "::" => {
                    if out.vips.is_empty() {
                        why_not.push(format!(
                            "bind {address} listens on every address and no VRRP address is known: an XDP service needs a VIP (import with --keepalived, or bind the VIP)"
                        ));
                    }
                    for vip in &out.vips {
                        if (host == "::") == vip.is_ipv6() || host != "::" && vip.is_ipv4() {
                            targets.push((*vip, port));
                        }
                    }
                }
                h => match h
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                {
                    Ok(ip) => targets.push((ip, port)),
                    Err(_) => why_not.push(format!("bind {address}: not an address")),
                },
            }
        }
        let server_families_ok = backend.servers.iter().all(|s| {
            let address = string(s.get("address"));
            targets
                .iter()
                .all(|(vip, _)| address.starts_with('[') == vip.is_ipv6())
        });
        if !server_families_ok {
            why_not.push("servers and VIP are of different address families".into());
        }
        if !why_not.is_empty() || targets.is_empty() {
            if why_not.is_empty() {
                why_not.push("no address to serve".into());
            }
            report_path(cx, p, Err(why_not));
            continue;
        }
        let mut names = Vec::new();
        for (n, (vip, port)) in targets.iter().enumerate() {
            let name = if targets.len() == 1 {
                p.name.clone()
            } else {
                format!("{}_{}", p.name, n + 1)
            };
            names.push(format!("{name} ({vip} port {port})"));
            out.services
                .push(xdp_service(p, backend, &name, *vip, *port));
        }
        report_path(cx, p, Ok(names));
        moved.push(index);
    }
    // Backends only the moved frontends used go with them.
    let used: BTreeSet<String> = proxies
        .iter()
        .enumerate()
        .filter(|(i, p)| !moved.contains(i) && matches!(p.kind, Kind::Frontend | Kind::Listen))
        .flat_map(|(_, p)| referenced_backends(&p.table))
        .collect();
    let moved_backends: BTreeSet<String> = moved
        .iter()
        .filter(|&&i| proxies[i].kind == Kind::Frontend)
        .flat_map(|&i| referenced_backends(&proxies[i].table))
        .collect();
    proxies
        .into_iter()
        .enumerate()
        .filter(|(i, p)| {
            if moved.contains(i) {
                return false;
            }
            if p.kind == Kind::Backend && moved_backends.contains(&p.name) && !used.contains(&p.name) {
                cx.report.push(
                    cx.file,
                    p.line,
                    &format!("backend {}", p.name),
                    Outcome::Mapped("the backends of the XDP service(s) of the frontends using it (no proxy backend)".into()),
                );
                return false;
            }
            true
        })
        .map(|(_, p)| p)
        .collect()
}

fn referenced_backends(table: &Table) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(Value::Str(b)) = table.get("default_backend") {
        names.push(b.clone());
    }
    if let Some(Value::Array(rules)) = table.get("use_backend") {
        for rule in rules {
            if let Value::Str(r) = rule {
                if let Some(first) = r.split_whitespace().next() {
                    names.push(first.to_string());
                }
            }
        }
    }
    names
}

fn string(value: Option<&Value>) -> String {
    match value {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

fn report_path(cx: &mut Ctx, p: &ProxyOut, path: Result<Vec<String>, Vec<String>>) {
    let shown = format!("{} {}", p.kind.name(), p.name);
    let outcome = match path {
        Ok(services) => Outcome::Mapped(format!(
            "--prefer-xdp: XDP service {} in fullnat mode, since it is plain tcp to one backend: the servers see lbd's address, as they saw HAProxy's, so nothing changes on them (dsr would be faster but needs the VIP on their loopback); balancing becomes weighted Maglev hashing, timeouts and maxconn do not apply",
            services.join(", ")
        )),
        Err(reasons) => Outcome::Mapped(format!(
            "--prefer-xdp: stays in the proxy: {}",
            reasons.join("; ")
        )),
    };
    cx.report.push(cx.file, p.line, &shown, outcome);
}

fn xdp_service(p: &ProxyOut, backend: &ProxyOut, name: &str, vip: IpAddr, port: u16) -> Group {
    let mut group = Group::new("service", true);
    group
        .table
        .comment(format!(
            "{} {} (line {}), served by XDP (--prefer-xdp)",
            p.kind.name(),
            p.name,
            p.line
        ))
        .set("name", Value::str(name), None)
        .set("vip", Value::str(vip.to_string()), None)
        .set("port", Value::Int(i64::from(port)), None)
        .set("protocol", Value::str("tcp"), None)
        .set(
            "mode",
            Value::str("fullnat"),
            Some("backends see lbd's address, as with HAProxy".into()),
        );
    let httpchk = match backend.table.get("httpchk") {
        Some(Value::Str(s)) => Some(s.clone()),
        Some(Value::Bool(true)) => Some("OPTIONS / HTTP/1.0".into()),
        _ => None,
    };
    let tcp_check = matches!(backend.table.get("tcp_check"), Some(Value::Bool(true)));
    for s in &backend.servers {
        let mut b = Table::new("service.backend", true);
        let address = string(s.get("address"));
        let Ok(sa) = address.parse::<SocketAddr>() else {
            continue;
        };
        b.set(
            "address",
            Value::str(sa.ip().to_string()),
            Some(format!("server {}", string(s.get("name")))),
        );
        b.set("port", Value::Int(i64::from(sa.port())), None);
        if let Some(Value::Int(w)) = s.get("weight") {
            b.set("weight", Value::Int(*w), None);
        }
        if matches!(s.get("check"), Some(Value::Bool(true))) {
            let mut check: Vec<(String, Value)> = Vec::new();
            match (&httpchk, tcp_check) {
                (Some(request), false) => {
                    check.push(("kind".into(), Value::str("http")));
                    let mut words = request.split_whitespace();
                    if let Some(method) = words.next() {
                        check.push(("method".into(), Value::str(method)));
                    }
                    if let Some(path) = words.next() {
                        check.push(("path".into(), Value::str(path)));
                    }
                }
                _ => check.push(("kind".into(), Value::str("tcp"))),
            }
            let inter = match s.get("inter") {
                Some(Value::Int(ms)) => *ms as f64 / 1000.0,
                Some(Value::Str(t)) => duration_seconds(t).unwrap_or(2.0),
                _ => 2.0,
            };
            check.push(("interval".into(), Value::Float(inter)));
            for key in ["rise", "fall"] {
                if let Some(Value::Int(n)) = s.get(key) {
                    check.push((key.into(), Value::Int(*n)));
                }
            }
            b.set("health_check", Value::Inline(check), None);
        }
        group.children.push(b);
    }
    group
}
