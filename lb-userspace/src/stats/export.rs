//! The rows of `;csv` (HAProxy's `show stat` columns, where they map) and
//! `;json` (the same rows as objects). XDP services are proxies of their
//! own (`pxname` = service name) whose servers are the backends, with
//! lbd's columns (`mode`, `packets`, `new_flows`, `slots`) after
//! HAProxy's.
use crate::{cli::status::StatusReport, proxy::stats::CounterSnapshot};
use serde::Serialize;
use std::net::SocketAddr;

/// HAProxy's `type`: 0 frontend, 1 backend, 2 server.
const FRONTEND: u8 = 0;
const BACKEND: u8 = 1;
const SERVER: u8 = 2;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Row {
    pub pxname: String,
    pub svname: String,
    pub qcur: Option<u64>,
    pub qmax: Option<u64>,
    pub scur: Option<u64>,
    pub smax: Option<u64>,
    pub slim: Option<u64>,
    pub stot: Option<u64>,
    pub bin: Option<u64>,
    pub bout: Option<u64>,
    pub dreq: Option<u64>,
    pub dresp: Option<u64>,
    pub ereq: Option<u64>,
    pub econ: Option<u64>,
    pub eresp: Option<u64>,
    pub wretr: Option<u64>,
    pub wredis: Option<u64>,
    pub status: String,
    pub weight: Option<u64>,
    pub act: Option<u64>,
    pub bck: Option<u64>,
    pub chkdown: Option<u64>,
    /// Seconds since the last UP/DOWN change.
    pub lastchg: Option<u64>,
    /// Seconds DOWN in all.
    pub downtime: Option<u64>,
    #[serde(rename = "type")]
    pub kind: u8,
    pub rate: Option<u64>,
    pub rate_max: Option<u64>,
    pub check_status: String,
    /// The last check's duration, ms.
    pub check_duration: Option<u64>,
    pub addr: String,
    pub mode: String,
    pub packets: Option<u64>,
    pub new_flows: Option<u64>,
    pub slots: Option<u64>,
}

/// The columns, in CSV order.
pub const COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkdown",
    "lastchg",
    "downtime",
    "type",
    "rate",
    "rate_max",
    "check_status",
    "check_duration",
    "addr",
    "mode",
    "packets",
    "new_flows",
    "slots",
];

fn with_counters(row: &mut Row, c: &CounterSnapshot) {
    row.qcur = Some(c.queue_current);
    row.qmax = Some(c.queue_max);
    row.scur = Some(c.sessions_current);
    row.smax = Some(c.sessions_max);
    row.stot = Some(c.sessions_total);
    row.bin = Some(c.bytes_in);
    row.bout = Some(c.bytes_out);
    row.dreq = Some(c.denied_requests);
    row.dresp = Some(c.denied_responses);
    row.ereq = Some(c.request_errors);
    row.econ = Some(c.connection_errors);
    row.eresp = Some(c.response_errors);
    row.wretr = Some(c.retries);
    row.wredis = Some(c.redispatches);
    row.rate = Some(c.session_rate);
    row.rate_max = Some(c.session_rate_max);
}

/// HAProxy's status words for an XDP backend.
fn xdp_status(b: &crate::cli::status::BackendStatus) -> &'static str {
    match super::page::backend_class(b) {
        "maintain" => "MAINT",
        "active_draining" => "DRAIN",
        "active_down" => "DOWN",
        "active_no_check" => "no check",
        _ => "UP",
    }
}

pub fn rows(report: &StatusReport) -> Vec<Row> {
    let mut out = Vec::new();
    for s in &report.services {
        let pxname = s
            .name
            .clone()
            .unwrap_or_else(|| format!("service-{}", s.id));
        for b in &s.backends {
            out.push(Row {
                pxname: pxname.clone(),
                svname: SocketAddr::new(b.address, b.port).to_string(),
                status: xdp_status(b).into(),
                weight: b.weight.map(u64::from),
                act: Some(1),
                bck: Some(0),
                kind: SERVER,
                stot: Some(b.new_flows),
                bin: Some(b.bytes),
                check_status: b.last_check.clone().unwrap_or_default(),
                check_duration: b.last_latency_ms.map(|ms| ms.round() as u64),
                lastchg: b.seconds_since_change.map(|s| s as u64),
                downtime: b.downtime_seconds.map(|s| s as u64),
                addr: SocketAddr::new(b.address, b.port).to_string(),
                mode: s.mode.clone(),
                packets: Some(b.packets),
                new_flows: Some(b.new_flows),
                slots: b.slots.map(u64::from),
                ..Row::default()
            });
        }
        let serving = s
            .backends
            .iter()
            .filter(|b| b.slots.unwrap_or(0) > 0)
            .count() as u64;
        out.push(Row {
            pxname,
            svname: "BACKEND".into(),
            status: if s.table_size > 0 { "UP" } else { "DOWN" }.into(),
            act: Some(serving),
            bck: Some(0),
            kind: BACKEND,
            stot: Some(s.new_flows),
            bin: Some(s.bytes),
            addr: format!("{}/{}", SocketAddr::new(s.vip, s.port), s.protocol),
            mode: s.mode.clone(),
            packets: Some(s.packets),
            new_flows: Some(s.new_flows),
            slots: Some(u64::from(s.table_size)),
            ..Row::default()
        });
    }
    if let Some(proxy) = &report.proxy {
        for f in &proxy.frontends {
            let mut row = Row {
                pxname: f.name.clone(),
                svname: "FRONTEND".into(),
                slim: Some(u64::from(f.maxconn)),
                status: f.status.clone(),
                kind: FRONTEND,
                addr: f.binds.join(" "),
                mode: f.mode.clone(),
                ..Row::default()
            };
            with_counters(&mut row, &f.counters);
            out.push(row);
        }
        for b in &proxy.backends {
            for s in &b.servers {
                let mut row = Row {
                    pxname: b.name.clone(),
                    svname: s.name.clone(),
                    slim: (s.maxconn > 0).then_some(u64::from(s.maxconn)),
                    status: s.haproxy_status(),
                    weight: Some(u64::from(s.weight)),
                    act: Some(u64::from(!s.backup)),
                    bck: Some(u64::from(s.backup)),
                    chkdown: s.check.then_some(s.downs),
                    lastchg: Some(s.last_change_secs),
                    downtime: Some(s.downtime_secs),
                    kind: SERVER,
                    check_status: s.last_check.clone().unwrap_or_default(),
                    addr: s.address.clone(),
                    mode: b.mode.clone(),
                    ..Row::default()
                };
                with_counters(&mut row, &s.counters);
                out.push(row);
            }
            let mut row = Row {
                pxname: b.name.clone(),
                svname: "BACKEND".into(),
                status: b.status.clone(),
                lastchg: Some(b.last_change_secs),
                downtime: Some(b.downtime_secs),
                act: Some(u64::from(b.active_servers)),
                bck: Some(u64::from(b.backup_servers)),
                kind: BACKEND,
                mode: b.mode.clone(),
                ..Row::default()
            };
            with_counters(&mut row, &b.counters);
            out.push(row);
        }
    }
    out
}

/// A CSV field: quoted (RFC 4180) when it holds a separator, a quote or
/// a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// HAProxy's `;csv`: a `# ` header line, then one line per row, each
/// ending with a comma as HAProxy's do.
pub fn csv(rows: &[Row]) -> String {
    let mut out = format!("# {},\n", COLUMNS.join(","));
    for row in rows {
        let value = serde_json::to_value(row).unwrap_or_default();
        let line: Vec<String> = COLUMNS
            .iter()
            .map(|column| match &value[*column] {
                serde_json::Value::String(s) => field(s),
                serde_json::Value::Number(n) => n.to_string(),
                _ => String::new(),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push_str(",\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_haproxys_header_and_quotes_what_needs_it() {
        let rows = vec![
            Row {
                pxname: "app".into(),
                svname: "b1".into(),
                scur: Some(3),
                stot: Some(10),
                status: "UP".into(),
                weight: Some(1),
                kind: SERVER,
                ..Row::default()
            },
            Row {
                pxname: "a,\"b\"".into(),
                svname: "BACKEND".into(),
                kind: BACKEND,
                ..Row::default()
            },
        ];
        let text = csv(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,"));
        assert_eq!(lines[1], "app,b1,,,3,,,10,,,,,,,,,,UP,1,,,,,,2,,,,,,,,,,");
        assert!(lines[2].starts_with("\"a,\"\"b\"\"\",BACKEND,"));
        assert_eq!(lines[1].split(',').count(), COLUMNS.len() + 1);
    }
}
