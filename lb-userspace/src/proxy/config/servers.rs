//! `[[backend.server]]` entries and a backend's health-check settings
//! (`option httpchk`, `http-check expect`, `option tcp-check`).
use super::raw::{RawHttpChk, RawServer, RawServerDefaults};
use super::timeouts::duration;
use super::{ErrorSink, ExpectMatcher, HttpCheckExpect, HttpCheckRequest, Server};
use crate::proxy::acl::split_words;
use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};
use toml::Spanned;

pub const DEFAULT_INTER: Duration = Duration::from_secs(2);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
pub const MAX_WEIGHT: i64 = 256;

/// Server settings after `default_server` (the section's over the one of
/// `[defaults]`, over HAProxy's own defaults).
#[derive(Debug, Clone)]
pub struct ServerDefaults {
    weight: u32,
    check: bool,
    inter: Duration,
    rise: u32,
    fall: u32,
    maxconn: u32,
    /// The TLS fields (`ssl`, `verify` ...), validated per server.
    tls: RawServerDefaults,
    /// `crt_base`/`ca_base` for the TLS files.
    tls_paths: crate::proxy::tls::PathBases,
}

impl Default for ServerDefaults {
    fn default() -> Self {
        ServerDefaults {
            weight: 1,
            check: false,
            inter: DEFAULT_INTER,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            maxconn: 0,
            tls: RawServerDefaults::default(),
            tls_paths: Default::default(),
        }
    }
}

/// A number within `low..=high`, else reported (and `default` used).
fn ranged(
    value: &Option<Spanned<i64>>,
    field: &str,
    default: u32,
    (low, high): (i64, i64),
    sink: &mut dyn ErrorSink,
) -> u32 {
    match value {
        None => default,
        Some(v) if (low..=high).contains(v.get_ref()) => *v.get_ref() as u32,
        Some(v) => {
            sink.report(
                v.span(),
                field,
                format!("{} is outside {low}..={high}", v.get_ref()),
            );
            default
        }
    }
}

const WEIGHTS: (i64, i64) = (0, MAX_WEIGHT);
const COUNTS: (i64, i64) = (1, 1000);
const MAXCONNS: (i64, i64) = (0, 1_000_000);

pub fn server_defaults(
    raw: &RawServerDefaults,
    tls_paths: &crate::proxy::tls::PathBases,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> ServerDefaults {
    let base = ServerDefaults::default();
    crate::proxy::tls::client::check_defaults(raw, tls_paths, field, sink);
    ServerDefaults {
        weight: ranged(
            &raw.weight,
            &format!("{field}.weight"),
            base.weight,
            WEIGHTS,
            sink,
        ),
        check: raw.check.as_ref().map_or(base.check, |c| *c.get_ref()),
        inter: duration(&raw.inter, &format!("{field}.inter"), sink).unwrap_or(base.inter),
        rise: ranged(&raw.rise, &format!("{field}.rise"), base.rise, COUNTS, sink),
        fall: ranged(&raw.fall, &format!("{field}.fall"), base.fall, COUNTS, sink),
        maxconn: ranged(
            &raw.maxconn,
            &format!("{field}.maxconn"),
            base.maxconn,
            MAXCONNS,
            sink,
        ),
        tls: raw.clone(),
        tls_paths: tls_paths.clone(),
    }
}

pub fn servers(
    raw: &[Spanned<RawServer>],
    defaults: ServerDefaults,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Vec<Server> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (index, spanned) in raw.iter().enumerate() {
        let raw = spanned.get_ref();
        let field = format!("{field}.server[{index}]");
        let name = raw.name.get_ref();
        if !valid_name(name) {
            sink.report(
                raw.name.span(),
                &format!("{field}.name"),
                format!("\"{name}\" must be 1 to 64 characters of A-Z a-z 0-9 - _ . :"),
            );
        } else if !names.insert(name.clone()) {
            sink.report(
                raw.name.span(),
                &format!("{field}.name"),
                format!("duplicate server name \"{name}\" in this backend"),
            );
        }
        let address = match parse_server_address(raw.address.get_ref()) {
            Ok(address) => Some(address),
            Err(message) => {
                sink.report(raw.address.span(), &format!("{field}.address"), message);
                None
            }
        };
        let d = &defaults;
        let weight = ranged(
            &raw.weight,
            &format!("{field}.weight"),
            d.weight,
            WEIGHTS,
            sink,
        );
        let rise = ranged(&raw.rise, &format!("{field}.rise"), d.rise, COUNTS, sink);
        let fall = ranged(&raw.fall, &format!("{field}.fall"), d.fall, COUNTS, sink);
        let maxconn = ranged(
            &raw.maxconn,
            &format!("{field}.maxconn"),
            d.maxconn,
            MAXCONNS,
            sink,
        );
        let inter = duration(&raw.inter, &format!("{field}.inter"), sink).unwrap_or(d.inter);
        let flag = |v: &Option<Spanned<bool>>| v.as_ref().is_some_and(|b| *b.get_ref());
        let tls =
            crate::proxy::tls::client::server_tls(spanned, &d.tls, &d.tls_paths, &field, sink);
        if let Some(address) = address {
            out.push(Server {
                name: name.clone(),
                address,
                weight,
                check: raw.check.as_ref().map_or(d.check, |c| *c.get_ref()),
                inter,
                rise,
                fall,
                backup: flag(&raw.backup),
                maxconn,
                disabled: flag(&raw.disabled),
                tls,
            });
        }
    }
    out
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// "198.18.0.11:80" or "[fd00::11]:80". Host names are not resolved (the
/// config must mean the same on every start), and the port is required.
pub fn parse_server_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        if address.port() == 0 {
            return Err(format!("\"{text}\": port 0 is not a server port"));
        }
        return Ok(address);
    }
    if text.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "\"{text}\" needs a port, as in 198.18.0.11:80 or [fd00::11]:80"
        ));
    }
    Err(format!(
        "\"{text}\" is not an address:port (host names are not resolved)"
    ))
}

/// `option httpchk` in HAProxy's forms: `true` (OPTIONS / HTTP/1.0),
/// "URI", "METHOD URI", "METHOD URI VERSION[\r\nHeader: value...]".
pub fn httpchk(raw: &RawHttpChk) -> Result<Option<HttpCheckRequest>, String> {
    let text = match raw {
        RawHttpChk::Enabled(false) => return Ok(None),
        RawHttpChk::Enabled(true) => "",
        RawHttpChk::Request(text) => text.as_str(),
    };
    let words = split_words(text)?;
    let (method, uri, version) = match words.as_slice() {
        [] => ("OPTIONS", "/", "HTTP/1.0"),
        [uri] => ("OPTIONS", uri.as_str(), "HTTP/1.0"),
        [method, uri] => (method.as_str(), uri.as_str(), "HTTP/1.0"),
        [method, uri, version] => (method.as_str(), uri.as_str(), version.as_str()),
        _ => {
            return Err(
                "expected \"[METHOD] [URI] [VERSION]\" (escape blanks in headers as \"\\\\ \")"
                    .into(),
            )
        }
    };
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("\"{method}\" is not an HTTP method"));
    }
    if !uri.starts_with('/') && uri != "*" {
        return Err(format!("check URI \"{uri}\" must start with /"));
    }
    let mut lines = version.split("\r\n");
    let version = lines.next().unwrap_or("HTTP/1.0");
    if version != "HTTP/1.0" && version != "HTTP/1.1" {
        return Err(format!(
            "check version \"{version}\" must be HTTP/1.0 or HTTP/1.1"
        ));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("check header \"{line}\" has no ':'"))?;
        hyper::http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("\"{name}\" is not a header name"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Some(HttpCheckRequest {
        method: method.to_owned(),
        uri: uri.to_owned(),
        version: version.to_owned(),
        headers,
    }))
}

/// `http-check expect [!] status|rstatus|string|rstring <pattern>`.
pub fn expect(text: &str) -> Result<HttpCheckExpect, String> {
    let words = split_words(text)?;
    let (negate, words) = match words.split_first() {
        Some((first, rest)) if first == "!" => (true, rest),
        _ => (false, words.as_slice()),
    };
    let [kind, pattern] = words else {
        return Err("expected \"[!] status|rstatus|string|rstring <pattern>\"".into());
    };
    let regex = |p: &str| regex::Regex::new(p).map_err(|e| format!("bad regex \"{p}\": {e}"));
    let matcher = match kind.as_str() {
        "status" => ExpectMatcher::Status(
            crate::config::health::parse_status_ranges(pattern).ok_or_else(|| {
                format!("\"{pattern}\" is not a status, range or list (200, 200-399, 200,204)")
            })?,
        ),
        "rstatus" => ExpectMatcher::RStatus(regex(pattern)?),
        "string" => ExpectMatcher::String(pattern.clone()),
        "rstring" => ExpectMatcher::RString(regex(pattern)?),
        other => {
            return Err(format!(
                "unknown expect \"{other}\" (status rstatus string rstring)"
            ))
        }
    };
    Ok(HttpCheckExpect {
        negate,
        matcher,
        source: text.to_owned(),
    })
}
