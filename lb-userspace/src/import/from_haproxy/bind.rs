//! `bind ADDRESS [options]`: the address and the options lbd takes.
use super::*;

/// A HAProxy bind address as lbd writes it.
pub(super) fn bind_address(address: &str) -> Result<String, String> {
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
    ("ca-ignore-err", true),
    ("crt-ignore-err", true),
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

pub(super) fn bind(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(bind_address("*:80").unwrap(), "*:80");
        assert_eq!(bind_address(":80").unwrap(), ":80");
        assert_eq!(bind_address("0.0.0.0:80").unwrap(), "*:80");
        assert_eq!(bind_address(":::80").unwrap(), ":::80");
        assert_eq!(bind_address("198.18.0.1:443").unwrap(), "198.18.0.1:443");
        assert_eq!(bind_address("ipv6@fd00::1:80").unwrap(), "[fd00::1]:80");
        assert!(bind_address("/run/x.sock").is_err());
        assert!(bind_address("*:8000-8010").is_err());
        assert!(bind_address("web:80").is_err());
    }
}
