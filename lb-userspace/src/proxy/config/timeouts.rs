//! Durations in HAProxy's units and the `timeout` table of each side, with
//! HAProxy's fallbacks between them.
use super::raw::{RawDuration, RawTimeouts};
use super::{BackendTimeouts, ErrorSink, FrontendTimeouts};
use std::time::Duration;
use toml::Spanned;

/// `timeout connect` when neither the section nor `[defaults]` sets it
/// (HAProxy has none and warns; these are Debian's haproxy.cfg values).
pub const DEFAULT_CONNECT: Duration = Duration::from_secs(5);
pub const DEFAULT_CLIENT: Duration = Duration::from_secs(50);
pub const DEFAULT_SERVER: Duration = Duration::from_secs(50);
/// HAProxy's timer limit: 2^31 - 1 milliseconds (about 24.8 days).
const MAX_MILLIS: u128 = (1 << 31) - 1;

/// Parses `100`, "100" (milliseconds), "250ms", "10s", "1m", "1h", "1d",
/// "500us".
pub fn parse_duration(raw: &RawDuration) -> Result<Duration, String> {
    let duration = match raw {
        RawDuration::Millis(ms) if *ms < 0 => return Err(format!("{ms} is negative")),
        RawDuration::Millis(ms) => Duration::from_millis(*ms as u64),
        RawDuration::Text(text) => {
            let digits = text.trim().len()
                - text
                    .trim()
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .len();
            let (number, unit) = text.trim().split_at(digits);
            let number: u64 = number.parse().map_err(|_| {
                format!("\"{text}\" is not a duration (a number with us, ms, s, m, h or d)")
            })?;
            match unit {
                "" | "ms" => Duration::from_millis(number),
                "us" => Duration::from_micros(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3600)),
                "d" => Duration::from_secs(number.saturating_mul(86_400)),
                other => {
                    return Err(format!(
                        "\"{text}\": unknown unit \"{other}\" (us, ms, s, m, h, d)"
                    ))
                }
            }
        }
    };
    if duration.is_zero() {
        return Err("must be greater than 0 (lbd has no infinite timeouts)".into());
    }
    if duration.as_millis() > MAX_MILLIS {
        return Err("is longer than HAProxy's limit of 2147483647 ms (24.8 days)".into());
    }
    Ok(duration)
}

/// A duration field, reported at its own line when invalid.
pub fn duration(
    value: &Option<Spanned<RawDuration>>,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Option<Duration> {
    let value = value.as_ref()?;
    match parse_duration(value.get_ref()) {
        Ok(d) => Some(d),
        Err(message) => {
            sink.report(value.span(), field, message);
            None
        }
    }
}

/// Reports timeouts a side does not use (HAProxy ignores them with a
/// warning; lbd says so instead of silently ignoring).
pub fn reject(raw: &RawTimeouts, names: &[&str], field: &str, why: &str, sink: &mut dyn ErrorSink) {
    for name in names {
        let value = match *name {
            "client" => &raw.client,
            "http_request" => &raw.http_request,
            "http_keep_alive" => &raw.http_keep_alive,
            "connect" => &raw.connect,
            "server" => &raw.server,
            "queue" => &raw.queue,
            "tunnel" => &raw.tunnel,
            _ => &raw.check,
        };
        if let Some(value) = value {
            sink.report(value.span(), &format!("{field}.{name}"), why.to_owned());
        }
    }
}

pub fn frontend(raw: &RawTimeouts, field: &str, sink: &mut dyn ErrorSink) -> FrontendTimeouts {
    let client = duration(&raw.client, &format!("{field}.client"), sink).unwrap_or(DEFAULT_CLIENT);
    let http_request =
        duration(&raw.http_request, &format!("{field}.http_request"), sink).unwrap_or(client);
    let http_keep_alive = duration(
        &raw.http_keep_alive,
        &format!("{field}.http_keep_alive"),
        sink,
    )
    .unwrap_or(http_request);
    FrontendTimeouts {
        client,
        http_request,
        http_keep_alive,
    }
}

pub fn backend(raw: &RawTimeouts, field: &str, sink: &mut dyn ErrorSink) -> BackendTimeouts {
    let connect =
        duration(&raw.connect, &format!("{field}.connect"), sink).unwrap_or(DEFAULT_CONNECT);
    BackendTimeouts {
        connect,
        server: duration(&raw.server, &format!("{field}.server"), sink).unwrap_or(DEFAULT_SERVER),
        queue: duration(&raw.queue, &format!("{field}.queue"), sink).unwrap_or(connect),
        tunnel: duration(&raw.tunnel, &format!("{field}.tunnel"), sink),
        check: duration(&raw.check, &format!("{field}.check"), sink),
    }
}
