//! `server NAME ADDRESS [options]` and `default-server [options]`.
use super::*;

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
    ("verifyhost", "verifyhost"),
    ("ca-file", "ca_file"),
    ("sni", "sni"),
    ("check-sni", "check_sni"),
    ("alpn", "alpn"),
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
    ("proto", true, "lbd speaks HTTP/1.1 to servers"),
    ("ciphers", true, "lbd uses rustls's cipher suites"),
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
                "alpn" => match server_alpn(v) {
                    Ok((kept, dropped)) => {
                        if !dropped.is_empty() {
                            verdict.approximations.push(format!(
                                "alpn: lbd speaks HTTP/1.1 to servers, {} not offered",
                                dropped.join(", ")
                            ));
                        }
                        Value::str(kept)
                    }
                    Err(why) => {
                        verdict
                            .unsupported
                            .push(format!("alpn {v}: {why} (left out)"));
                        continue;
                    }
                },
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

/// A server's `alpn` list as lbd takes it: lbd speaks HTTP/1.1 to
/// servers, so `http/1.1` is kept and `h2` (which `lbd check` refuses on a
/// server) is dropped; the protocols kept and those dropped, or why none
/// is left.
fn server_alpn(list: &str) -> Result<(String, Vec<String>), String> {
    let (kept, dropped): (Vec<&str>, Vec<&str>) = list.split(',').partition(|p| *p == "http/1.1");
    if kept.is_empty() {
        return Err("lbd speaks HTTP/1.1 to servers and offers no other protocol".into());
    }
    Ok((
        "http/1.1".into(),
        dropped.into_iter().map(String::from).collect(),
    ))
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

pub(super) fn server(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
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

pub(super) fn default_server(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
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
        "verifyhost",
        "ca_file",
        "sni",
        "check_sni",
        "alpn",
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
    fn server_addresses() {
        assert_eq!(server_address("198.18.0.1:80").unwrap(), "198.18.0.1:80");
        assert_eq!(server_address("fd00::1:80").unwrap(), "[fd00::1]:80");
        assert!(server_address("198.18.0.1")
            .unwrap_err()
            .contains("no port"));
        assert!(server_address("web1:80")
            .unwrap_err()
            .contains("host names"));
    }
}
