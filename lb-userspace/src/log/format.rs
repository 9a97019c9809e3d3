//! HAProxy's access-log line formats, printed from an [`AccessRecord`].
//!
//! The strings follow HAProxy 2.6's built-in log-format definitions (the
//! `default_http_log_format`, `default_tcp_log_format` and
//! `clf_http_log_format` strings in its `src/log.c`):
//!
//! - httplog: `%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc
//!   %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r`
//! - tcplog: `%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`
//! - clf: `%{+Q}o %{-Q}ci - - [%trg] %r %ST %B "" "" %cp %ms %ft %b %s %TR %Tw
//!   %Tc %Tr %Ta %tsc %ac %fc %bc %sc %rc %sq %bq %CC %CS %hrl %hsl`
//!
//! and reproduce its printing rules: a field with nothing to print (no
//! header captures) prints nothing and the spaces around it collapse into
//! one; a missing timer or status prints `-1`; a missing text field `-`
//! (`""` when quoted); the request line escapes control characters, bytes
//! above 126, `"` and `#` as `#XX`.
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, FixedOffset, Local, Offset, Utc};

use super::record::{AccessRecord, RecordMode};

/// Which line an access record becomes (`option httplog`, `option tcplog`,
/// `option httplog clf`, or lbd's JSON object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    HttpLog,
    TcpLog,
    Clf,
    Json,
}

impl AccessFormat {
    /// HAProxy logs requests in http mode and sessions in tcp mode.
    pub fn default_for(mode: RecordMode) -> Self {
        match mode {
            RecordMode::Http => AccessFormat::HttpLog,
            RecordMode::Tcp => AccessFormat::TcpLog,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AccessFormat::HttpLog => "httplog",
            AccessFormat::TcpLog => "tcplog",
            AccessFormat::Clf => "clf",
            AccessFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected httplog, tcplog, clf or json")]
pub struct UnknownFormat(pub String);

impl FromStr for AccessFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "httplog" => Ok(AccessFormat::HttpLog),
            "tcplog" => Ok(AccessFormat::TcpLog),
            "clf" => Ok(AccessFormat::Clf),
            "json" => Ok(AccessFormat::Json),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// The time zone dates are printed in. HAProxy prints local time (GMT for
/// `%trg`); tests pin an offset so the expected strings are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Fixed(FixedOffset),
}

impl Zone {
    pub fn utc() -> Self {
        Zone::Fixed(Utc.fix())
    }

    pub fn at(self, time: SystemTime) -> DateTime<FixedOffset> {
        let utc: DateTime<Utc> = time.into();
        match self {
            Zone::Local => utc.with_timezone(&Local).fixed_offset(),
            Zone::Fixed(offset) => utc.with_timezone(&offset),
        }
    }
}

/// Formats one record in `format`, dates in `zone`.
pub fn format_record(record: &AccessRecord, format: AccessFormat, zone: Zone) -> String {
    if let Some(error) = &record.connection_error {
        return error_line(record, error, zone);
    }
    match format {
        AccessFormat::HttpLog => httplog(record, zone),
        AccessFormat::TcpLog => tcplog(record, zone),
        AccessFormat::Clf => clf(record),
        AccessFormat::Json => json(record, zone),
    }
}

/// HAProxy's error log line (§8.2.6), whatever the section's format:
/// `127.0.0.1:56059 [03/Dec/2012:17:35:10.380] frt/1: SSL handshake failure`.
pub fn error_line(
    r: &AccessRecord,
    error: &crate::log::record::ConnectionError,
    zone: Zone,
) -> String {
    format!(
        "{} [{}] {}/{}: {}",
        client(r),
        log_date(zone.at(r.accept_date)),
        r.frontend,
        error.bind,
        error.message
    )
}

/// HAProxy's `option httplog` line.
pub fn httplog(r: &AccessRecord, zone: Zone) -> String {
    let mut line = Line::default();
    line.field(&client(r));
    line.sep();
    line.field(&format!("[{}]", log_date(zone.at(r.request_date))));
    line.sep();
    line.field(&frontend_name(r));
    line.sep();
    line.field(&format!("{}/{}", backend_name(r), server_name(r)));
    line.sep();
    let t = &r.timers;
    line.field(&format!(
        "{}/{}/{}/{}/{}",
        ms_or_minus_one(t.request),
        ms_or_minus_one(t.queue),
        ms_or_minus_one(t.connect),
        ms_or_minus_one(t.response),
        ms(t.active)
    ));
    line.sep();
    line.field(&status(r));
    line.sep();
    line.field(&r.bytes_to_client.to_string());
    line.sep();
    // %CC %CS: persistence cookies, not implemented: HAProxy's "-" for none.
    line.field("-");
    line.sep();
    line.field("-");
    line.sep();
    line.field(&r.termination.with_cookies());
    line.sep();
    line.field(&counts_slashed(r));
    line.sep();
    line.field(&format!(
        "{}/{}",
        r.concurrency.server_queue, r.concurrency.backend_queue
    ));
    line.sep();
    line.field(&captures_braced(&r.captured_request_headers));
    line.sep();
    line.field(&captures_braced(&r.captured_response_headers));
    line.sep();
    line.field(&format!("\"{}\"", request_line(r)));
    line.finish()
}

/// HAProxy's `option tcplog` line.
pub fn tcplog(r: &AccessRecord, zone: Zone) -> String {
    let mut line = Line::default();
    line.field(&client(r));
    line.sep();
    line.field(&format!("[{}]", log_date(zone.at(r.accept_date))));
    line.sep();
    line.field(&frontend_name(r));
    line.sep();
    line.field(&format!("{}/{}", backend_name(r), server_name(r)));
    line.sep();
    let t = &r.timers;
    line.field(&format!(
        "{}/{}/{}",
        ms_or_minus_one(t.queue),
        ms_or_minus_one(t.connect),
        ms(t.total)
    ));
    line.sep();
    line.field(&r.bytes_to_client.to_string());
    line.sep();
    line.field(&r.termination.short());
    line.sep();
    line.field(&counts_slashed(r));
    line.sep();
    line.field(&format!(
        "{}/{}",
        r.concurrency.server_queue, r.concurrency.backend_queue
    ));
    line.finish()
}

/// HAProxy's `option httplog clf` line (Common Log Format first, then
/// HAProxy's fields). Dates in GMT, as `%trg`.
pub fn clf(r: &AccessRecord) -> String {
    let quoted = |s: &str| format!("\"{s}\"");
    let t = &r.timers;
    let c = &r.concurrency;
    let mut line = Line::default();
    let fields: [String; 29] = [
        r.client.ip().to_string(),
        "-".into(),
        "-".into(),
        format!("[{}]", gmt_date(Zone::utc().at(r.request_date))),
        quoted(&request_line(r)),
        status(r),
        r.bytes_to_client.to_string(),
        "\"\"".into(),
        "\"\"".into(),
        r.client.port().to_string(),
        format!("{:03}", millis_of_second(r.accept_date)),
        quoted(&frontend_name(r)),
        quoted(backend_name(r)),
        quoted(server_name(r)),
        ms_or_minus_one(t.request),
        ms_or_minus_one(t.queue),
        ms_or_minus_one(t.connect),
        ms_or_minus_one(t.response),
        ms(t.active),
        r.termination.with_cookies(),
        c.process.to_string(),
        c.frontend.to_string(),
        c.backend.to_string(),
        c.server.to_string(),
        retries(r),
        c.server_queue.to_string(),
        c.backend_queue.to_string(),
        // %CC %CS quoted and empty (no persistence cookies).
        "\"\"".into(),
        "\"\"".into(),
    ];
    for field in &fields {
        line.field(field);
        line.sep();
    }
    line.field(&captures_listed(&r.captured_request_headers));
    line.sep();
    line.field(&captures_listed(&r.captured_response_headers));
    line.finish()
}

/// One JSON object per record, keyed by the field names HAProxy's manual
/// uses for the httplog/tcplog fields (§8.2.3/8.2.2); missing timers and
/// status are `-1`, as in the text formats.
pub fn json(r: &AccessRecord, zone: Zone) -> String {
    let t = &r.timers;
    let c = &r.concurrency;
    let signed = |d: Option<Duration>| -> i64 {
        d.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(-1)
    };
    let mut object = serde_json::json!({
        "mode": match r.mode { RecordMode::Http => "http", RecordMode::Tcp => "tcp" },
        "client_ip": r.client.ip().to_string(),
        "client_port": r.client.port(),
        "frontend_ip": r.frontend_addr.ip().to_string(),
        "frontend_port": r.frontend_addr.port(),
        "accept_date": iso_date(zone.at(r.accept_date)),
        "frontend_name": frontend_name(r),
        "backend_name": backend_name(r),
        "server_name": server_name(r),
        "Tw": signed(t.queue),
        "Tc": signed(t.connect),
        "Tt": signed(Some(t.total)),
        "bytes_read": r.bytes_to_client,
        "bytes_uploaded": r.bytes_from_client,
        "termination_state": r.termination.short(),
        "actconn": c.process,
        "feconn": c.frontend,
        "beconn": c.backend,
        "srv_conn": c.server,
        "retries": r.retries,
        "redispatched": r.redispatched,
        "srv_queue": c.server_queue,
        "backend_queue": c.backend_queue,
    });
    if r.mode == RecordMode::Http {
        if let Some(map) = object.as_object_mut() {
            map.insert(
                "request_date".into(),
                iso_date(zone.at(r.request_date)).into(),
            );
            map.insert("Th".into(), signed(t.handshake).into());
            map.insert("Ti".into(), signed(t.idle).into());
            map.insert("TR".into(), signed(t.request).into());
            map.insert("Tr".into(), signed(t.response).into());
            map.insert("Ta".into(), signed(Some(t.active)).into());
            map.insert(
                "status_code".into(),
                r.status.map(i64::from).unwrap_or(-1).into(),
            );
            map.insert(
                "termination_state".into(),
                r.termination.with_cookies().into(),
            );
            map.insert(
                "http_request".into(),
                match &r.request_line {
                    Some(l) => l.clone().into(),
                    None => "<BADREQ>".into(),
                },
            );
            map.insert(
                "captured_request_headers".into(),
                r.captured_request_headers.clone().into(),
            );
            map.insert(
                "captured_response_headers".into(),
                r.captured_response_headers.clone().into(),
            );
        }
    }
    object.to_string()
}

/// HAProxy's way of joining fields: a separator is written only after a
/// field that printed something, so an empty field and its spaces vanish.
#[derive(Default)]
struct Line {
    out: String,
    last_is_space: bool,
}

impl Line {
    fn field(&mut self, text: &str) {
        if !text.is_empty() {
            self.out.push_str(text);
            self.last_is_space = false;
        }
    }

    fn sep(&mut self) {
        if !self.last_is_space && !self.out.is_empty() {
            self.out.push(' ');
            self.last_is_space = true;
        }
    }

    fn finish(self) -> String {
        self.out
    }
}

/// `%ci:%cp`: HAProxy prints IPv6 addresses without brackets.
fn client(r: &AccessRecord) -> String {
    format!("{}:{}", r.client.ip(), r.client.port())
}

fn frontend_name(r: &AccessRecord) -> String {
    if r.frontend_tls {
        format!("{}~", r.frontend)
    } else {
        r.frontend.to_string()
    }
}

fn backend_name(r: &AccessRecord) -> &str {
    r.backend.as_deref().unwrap_or(&r.frontend)
}

fn server_name(r: &AccessRecord) -> &str {
    r.server.as_deref().unwrap_or("<NOSRV>")
}

fn status(r: &AccessRecord) -> String {
    r.status.map_or_else(|| "-1".into(), |s| s.to_string())
}

fn retries(r: &AccessRecord) -> String {
    if r.redispatched {
        format!("+{}", r.retries)
    } else {
        r.retries.to_string()
    }
}

fn counts_slashed(r: &AccessRecord) -> String {
    let c = &r.concurrency;
    format!(
        "{}/{}/{}/{}/{}",
        c.process,
        c.frontend,
        c.backend,
        c.server,
        retries(r)
    )
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn ms_or_minus_one(d: Option<Duration>) -> String {
    d.map_or_else(|| "-1".into(), ms)
}

fn millis_of_second(time: SystemTime) -> u32 {
    let utc: DateTime<Utc> = time.into();
    utc.timestamp_subsec_millis()
}

/// `%t` / `%tr`: `06/Feb/2009:12:14:14.655`.
fn log_date(date: DateTime<FixedOffset>) -> String {
    date.format("%d/%b/%Y:%H:%M:%S%.3f").to_string()
}

/// `%trg`: `06/Feb/2009:12:14:14 +0000`.
fn gmt_date(date: DateTime<FixedOffset>) -> String {
    date.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

fn iso_date(date: DateTime<FixedOffset>) -> String {
    date.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// `%r`: the request line, or `<BADREQ>` when none was received.
fn request_line(r: &AccessRecord) -> String {
    match &r.request_line {
        Some(line) => escape(line, |b| b == b'"' || b == b'#'),
        None => "<BADREQ>".into(),
    }
}

/// `%hr` / `%hs`: `{value1|value2}`; nothing at all without captures.
fn captures_braced(values: &[String]) -> String {
    if values.is_empty() {
        return String::new();
    }
    let escaped: Vec<String> = values.iter().map(|v| escape_header(v)).collect();
    format!("{{{}}}", escaped.join("|"))
}

/// `%hrl` / `%hsl` in the quoted CLF: `"value1" "value2"`.
fn captures_listed(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", escape_header(v)))
        .collect();
    escaped.join(" ")
}

fn escape_header(value: &str) -> String {
    escape(value, |b| matches!(b, b'"' | b'#' | b'{' | b'|' | b'}'))
}

/// HAProxy's `#XX` encoding: control bytes, bytes above 126 and the
/// format's own special characters.
fn escape(text: &str, special: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if !(0x20..0x7f).contains(&byte) || special(byte) {
            let _ = write!(out, "#{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
