//! The HTML page, rendered on the server with maud (which escapes every
//! interpolated value: names from the configuration are shown as text).
//! No asset comes from elsewhere: the style and the small polling script
//! are inline, so the page works offline.
use super::{
    config::StatsConfig,
    sample::{RowId, Sample},
};
use crate::{
    cli::status::{BackendStatus, ServiceStatus},
    dataplane::programmer::BackendState,
    health::state::AdminState,
    proxy::{stats::CounterSnapshot, status::ServerStatus},
    vrrp::VrrpStatus,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::net::SocketAddr;

/// HAProxy's legend colours (its stats page's classes).
const STYLE: &str = r#"
body{font-family:Arial,Helvetica,sans-serif;font-size:12px;margin:8px;background:#fff;color:#000}
h1{font-size:16px;background:#20377f;color:#fff;padding:4px 8px;margin:0 0 6px}
h2{font-size:13px;margin:14px 0 4px}
table{border-collapse:collapse;margin-bottom:8px}
th,td{border:1px solid #999;padding:1px 4px;text-align:right;white-space:nowrap}
th{background:#20377f;color:#fff;font-weight:normal}
td.name,th.name{text-align:left}
tr.section td{background:#b0d0ff;font-weight:bold;text-align:left}
.active_up{background:#c0ffc0}.active_down{background:#ff9090}
.active_going_down{background:#ffffa0}.active_going_up{background:#ffd020}
.active_draining{background:#20a0ff}.active_no_check{background:#e0e0e0}
.backup_up{background:#b0d0ff}.backup_down{background:#ff9090}
.backup_going_down{background:#c060ff}.backup_going_up{background:#ff80ff}
.backup_draining{background:#cc9900}.maintain{background:#c07820}
.vrrp_master{background:#c0ffc0}.vrrp_backup{background:#e0e0e0}.vrrp_fault{background:#ff9090}
.legend td{border:none;text-align:left;padding:1px 6px}
.msg{background:#ffffa0;border:1px solid #999;padding:3px 6px;margin:4px 0}
.err{background:#ff9090;border:1px solid #999;padding:3px 6px;margin:4px 0}
form.act{display:inline;margin:0}form.act button{font-size:11px;padding:0 3px}
form.act input{width:3em;font-size:11px}
"#;

/// Polls the fragment every `refresh` and swaps it in: live figures
/// without reloading the page (and without losing the scroll position).
const SCRIPT: &str = r#"
(function(){
var b=document.body,ms=+b.getAttribute('data-refresh');
// The origin without user:password (a page opened as http://user:pw@host/
// cannot fetch a URL resolved against that); the browser's cached
// credentials still go with the request.
var u=location.origin+b.getAttribute('data-fragment');
function tick(){
 // Not while the user types in a field of the table (a weight).
 var a=document.activeElement,c=document.getElementById('content');
 if(a&&a.tagName==='INPUT'&&c.contains(a)){setTimeout(tick,ms);return;}
 fetch(u,{credentials:'same-origin',cache:'no-store'})
 .then(function(r){if(!r.ok)throw new Error(r.status);return r.text();})
 .then(function(h){document.getElementById('content').innerHTML=h;
   document.getElementById('updated').textContent=new Date().toISOString();})
 .catch(function(){document.getElementById('updated').textContent='update failed';})
 .then(function(){setTimeout(tick,ms);});
}
setTimeout(tick,ms);
})();
"#;

/// Who looks at the page, and what they may do.
pub struct Viewer<'a> {
    pub user: Option<&'a str>,
    /// The CSRF token to put in the forms, when admin actions are on.
    pub token: Option<&'a str>,
    /// The result of the last action (from the redirect after a POST).
    pub message: Option<&'a str>,
}

/// The page around `fragment` (the rendered [`fragment`], shared by every
/// viewer of a sample).
pub fn full_page(
    config: &StatsConfig,
    sample: &Sample,
    viewer: &Viewer,
    fragment: &[u8],
) -> Markup {
    let report = &sample.report;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "lbd statistics: " (report.instance) }
                style { (PreEscaped(STYLE)) }
            }
            body data-fragment=(config.export_path("fragment")) data-refresh=(config.refresh.as_millis()) {
                h1 {
                    "lbd statistics"
                    @if !config.hide_version { " (version " (env!("CARGO_PKG_VERSION")) ")" }
                }
                p {
                    "instance " b { (report.instance) }
                    " · pid " (report.pid.map_or("-".into(), |p| p.to_string()))
                    " · xdp " (report.xdp_mode.as_deref().unwrap_or("not attached"))
                    " · refresh every " (format!("{:?}", config.refresh))
                    " · last update " span #updated { "page load" }
                    @if let Some(user) = viewer.user { " · logged in as " b { (user) } }
                    " · " a href=(config.export_path("csv")) { "CSV" }
                    " · " a href=(config.export_path("json")) { "JSON" }
                    @if config.metrics { " · " a href="/metrics" { "metrics" } }
                }
                @if let Some(message) = viewer.message {
                    div.msg #message { (message) }
                }
                @if config.show_legends { (legend()) }
                div #content { (PreEscaped(String::from_utf8_lossy(fragment))) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn legend() -> Markup {
    let entries = [
        ("active_up", "active UP"),
        ("active_going_down", "active UP, going down"),
        ("active_going_up", "active DOWN, going up"),
        ("active_down", "active DOWN"),
        ("backup_going_down", "backup UP, going down"),
        ("backup_going_up", "backup DOWN, going up"),
        ("active_draining", "active or backup DRAIN"),
        ("active_no_check", "not checked"),
        ("backup_up", "backup UP"),
        ("maintain", "active or backup MAINT (disabled)"),
    ];
    html! {
        table.legend #legend {
            tr { @for (class, text) in entries { td class=(class) { (text) } } }
        }
    }
}

/// Everything that changes: swapped in by the polling script.
pub fn fragment(sample: &Sample, viewer: &Viewer) -> Markup {
    let report = &sample.report;
    html! {
        @if !report.running {
            div.err { "lbd is not running: the figures are the last ones written" }
        }
        h2 { "XDP services (L4)" }
        @if report.services.is_empty() { p { "no service" } }
        @for service in &report.services { (service_table(service, sample, viewer)) }
        @if let Some(proxy) = &report.proxy {
            h2 { "Proxy (L7/TCP) — " (proxy.connections) " connections" }
            @for f in &proxy.frontends {
                table.proxy data-proxy=(f.name) {
                    (proxy_header(&f.name))
                    tr data-row=(format!("{}/FRONTEND", f.name)) class=(if f.status == "OPEN" { "frontend active_up" } else { "frontend active_down" }) {
                        td.name { "Frontend" }
                        (counter_cells(&f.counters, f.maxconn))
                        td {}
                        td data-col="status" { (f.status) }
                        td {} td {} td {} td {} td {} td {} td {} td {}
                    }
                }
            }
            @for b in &proxy.backends {
                table.proxy data-proxy=(b.name) {
                    (proxy_header(&b.name))
                    @for s in &b.servers { (server_row(&b.name, s, viewer)) }
                    tr data-row=(format!("{}/BACKEND", b.name)) class=(if b.status == "UP" { "backend active_up" } else { "backend active_down" }) {
                        td.name { "Backend" }
                        (counter_cells(&b.counters, 0))
                        td data-col="lastchg" { (duration_text(b.last_change_secs as f64)) }
                        td data-col="status" { (b.status) }
                        td {} td {} td { (b.active_servers) } td { (b.backup_servers) } td {} td {}
                        td data-col="downtime" { (duration_text(b.downtime_secs as f64)) }
                        td {}
                    }
                }
            }
        }
        @if !report.vrrp.is_empty() {
            h2 { "VRRP" }
            table #vrrp {
                tr { th.name { "instance" } th { "vrid" } th { "version" } th { "state" } th { "priority (effective / configured)" } th { "master" } th { "time in state" } th.name { "last transition" } th { "adverts sent" } th { "adverts received" } }
                @for v in &report.vrrp { (vrrp_row(v, report.running)) }
            }
        }
        @if let Some(bgp) = &report.bgp { (crate::bgp::status::html(bgp)) }
        h2 { "XDP outcomes (packets, all CPUs)" }
        table #outcomes {
            tr { th.name { "outcome" } th { "packets" } }
            @for (name, value) in &report.global {
                tr data-outcome=(name) { td.name { (name) } td { (value) } }
            }
        }
        p { "flows in the connection table: " (report.flows) " · nat reply entries: " (report.nat_replies) }
    }
}

fn service_table(service: &ServiceStatus, sample: &Sample, viewer: &Viewer) -> Markup {
    let name = service
        .name
        .clone()
        .unwrap_or_else(|| format!("service {}", service.id));
    let rates = sample.rates(RowId::Service(service.id));
    html! {
        table.service data-service=(name) {
            tr.section { td colspan="17" {
                (name) " — " (SocketAddr::new(service.vip, service.port)) "/" (service.protocol)
                " · " (service.mode) " · " (service.table_size) " Maglev slots"
            } }
            tr {
                th.name { "backend" } th { "MAC" } th { "state" } th { "health" } th.name { "last check" } th { "latency" }
                th { "admin" } th { "weight" } th { "slots" } th { "packets" } th { "bytes" } th { "new flows" }
                th { "pkt/s" } th { "bytes/s" } th { "flows/s" } th { "since change" } th { "downtime" }
                @if viewer.token.is_some() { th { "actions" } }
            }
            @for b in &service.backends { (backend_row(&name, b, sample, viewer)) }
            tr.total {
                td.name { "Total" } td {} td {} td {} td {} td {} td {} td {} td { (service.table_size) }
                td { (service.packets) } td { (service.bytes) } td { (service.new_flows) }
                td { (format!("{:.1}", rates.packets)) } td { (format!("{:.0}", rates.bytes)) } td { (format!("{:.1}", rates.new_flows)) } td {} td {}
                @if viewer.token.is_some() { td {} }
            }
        }
    }
}

/// The legend class of an XDP backend.
pub fn backend_class(b: &BackendStatus) -> &'static str {
    match (b.state, b.admin, b.health.as_deref()) {
        (_, Some(AdminState::Disabled), _) => "maintain",
        (Some(BackendState::Draining), _, _) | (_, Some(AdminState::Drain), _) => "active_draining",
        (_, _, Some("down")) | (Some(BackendState::Down), _, _) => "active_down",
        (_, _, Some("unchecked")) | (_, _, None) => "active_no_check",
        _ => "active_up",
    }
}

fn lower<T: std::fmt::Debug>(value: Option<T>) -> String {
    value.map_or("-".into(), |v| format!("{v:?}").to_lowercase())
}

fn backend_row(service: &str, b: &BackendStatus, sample: &Sample, viewer: &Viewer) -> Markup {
    let address = SocketAddr::new(b.address, b.port).to_string();
    let rates = sample.rates(RowId::Backend(b.id));
    html! {
        tr class=(format!("backend {}", backend_class(b))) data-row=(format!("{service}/{address}")) {
            td.name { (address) }
            td { (b.mac) }
            td data-col="state" { (lower(b.state)) }
            td data-col="health" { (b.health.as_deref().unwrap_or("-")) }
            td.name { (b.last_check.as_deref().unwrap_or("-")) }
            td { (b.last_latency_ms.map_or("-".into(), |ms| format!("{ms:.1} ms"))) }
            td data-col="admin" { (lower(b.admin)) }
            td data-col="weight" { (b.weight.map_or("-".into(), |w| w.to_string())) }
            td { (b.slots.map_or("-".into(), |s| s.to_string())) }
            td { (b.packets) } td { (b.bytes) } td { (b.new_flows) }
            td { (format!("{:.1}", rates.packets)) } td { (format!("{:.0}", rates.bytes)) } td { (format!("{:.1}", rates.new_flows)) }
            td data-col="lastchg" { (b.seconds_since_change.map_or("-".into(), duration_text)) }
            td data-col="downtime" { (b.downtime_seconds.map_or("-".into(), duration_text)) }
            @if let Some(token) = viewer.token {
                td { (actions(token, "xdp", service, &address, b.weight.unwrap_or(0))) }
            }
        }
    }
}

fn actions(token: &str, kind: &str, group: &str, member: &str, weight: u32) -> Markup {
    let target = format!("{group}/{member}");
    html! {
        form.act method="post" {
            input type="hidden" name="token" value=(token);
            input type="hidden" name="kind" value=(kind);
            input type="hidden" name="group" value=(group);
            input type="hidden" name="member" value=(member);
            @for action in ["ready", "drain", "maint", "check-off", "check-on"] {
                button type="submit" name="action" value=(action) data-action=(action) data-target=(target) { (action) }
            }
            " "
            input type="number" name="weight" min="0" max="256" value=(weight) aria-label="weight";
            button type="submit" name="action" value="weight" data-action="weight" data-target=(target) { "set weight" }
        }
    }
}

fn proxy_header(name: &str) -> Markup {
    html! {
        tr.section { td colspan="30" { (name) } }
        tr {
            th.name rowspan="2" { "" }
            th colspan="2" { "Queue" } th colspan="2" { "Session rate" } th colspan="4" { "Sessions" }
            th colspan="2" { "Bytes" } th colspan="2" { "Denied" } th colspan="3" { "Errors" } th colspan="2" { "Warnings" }
            th colspan="10" { "Server" }
        }
        tr {
            th { "Cur" } th { "Max" } th { "Cur" } th { "Max" } th { "Cur" } th { "Max" } th { "Limit" } th { "Total" }
            th { "In" } th { "Out" } th { "Req" } th { "Resp" } th { "Req" } th { "Conn" } th { "Resp" } th { "Retr" } th { "Redis" }
            th { "LastChg" } th { "Status" } th { "LastChk" } th { "Wght" } th { "Act" } th { "Bck" } th { "Chk" } th { "Dwn" } th { "Dwntme" } th { "Actions" }
        }
    }
}

fn counter_cells(c: &CounterSnapshot, limit: u32) -> Markup {
    html! {
        td { (c.queue_current) } td { (c.queue_max) }
        td { (c.session_rate) } td { (c.session_rate_max) }
        td { (c.sessions_current) } td { (c.sessions_max) } td { (if limit == 0 { String::new() } else { limit.to_string() }) } td { (c.sessions_total) }
        td { (c.bytes_in) } td { (c.bytes_out) }
        td { (c.denied_requests) } td { (c.denied_responses) }
        td { (c.request_errors) } td { (c.connection_errors) } td { (c.response_errors) }
        td { (c.retries) } td { (c.redispatches) }
    }
}

/// The legend class of a proxy server (HAProxy's).
pub fn server_class(s: &ServerStatus) -> &'static str {
    match (s.status.as_str(), s.backup) {
        ("MAINT", _) => "maintain",
        ("DRAIN", false) => "active_draining",
        ("DRAIN", true) => "backup_draining",
        ("DOWN", false) if s.going_up() => "active_going_up",
        ("DOWN", true) if s.going_up() => "backup_going_up",
        ("DOWN", false) => "active_down",
        ("DOWN", true) => "backup_down",
        (_, _) if !s.check => "active_no_check",
        (_, false) if s.going_down() => "active_going_down",
        (_, true) if s.going_down() => "backup_going_down",
        (_, true) => "backup_up",
        _ => "active_up",
    }
}

fn server_row(backend: &str, s: &ServerStatus, viewer: &Viewer) -> Markup {
    html! {
        tr class=(format!("server {}", server_class(s))) data-row=(format!("{backend}/{}", s.name)) {
            td.name { (s.name) }
            (counter_cells(&s.counters, s.maxconn))
            td data-col="lastchg" { (duration_text(s.last_change_secs as f64)) }
            td data-col="status" { (s.haproxy_status()) }
            td.name { (if s.check { s.last_check.as_deref().unwrap_or("pending") } else { "" }) }
            td data-col="weight" { (s.weight) }
            td { (if s.backup { "-" } else { "Y" }) }
            td { (if s.backup { "Y" } else { "-" }) }
            td { (if s.check { "Y" } else { "-" }) }
            td { (s.downs) }
            td data-col="downtime" { (duration_text(s.downtime_secs as f64)) }
            td { @if let Some(token) = viewer.token { (actions(token, "proxy", backend, &s.name, s.weight)) } }
        }
    }
}

fn vrrp_row(v: &VrrpStatus, running: bool) -> Markup {
    let state = format!("{:?}", v.state);
    let class = match v.state {
        crate::vrrp::State::Master => "vrrp_master",
        crate::vrrp::State::Fault => "vrrp_fault",
        _ => "vrrp_backup",
    };
    html! {
        tr class=(class) data-vrrp=(v.name) {
            td.name { (v.name) }
            td { (v.vrid) }
            td { (format!("{:?}", v.version)) }
            td data-col="state" { (state) @if !running { " (last known)" } }
            td { (v.effective_priority) " / " (v.priority) }
            td { (v.master.map_or("unknown".into(), |m| m.to_string())) }
            td { (duration_text(v.seconds_in_state)) }
            td.name { (v.last_transition) }
            td { (v.counters.adverts_sent) }
            td { (v.counters.adverts_received) }
        }
    }
}

/// "3d 4h", "2h 5m", "4m 10s", "12s".
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// The page a refused request gets.
pub fn unauthorized() -> Markup {
    html! { (DOCTYPE) html { body { h1 { "401 Unauthorized" } p { "This page needs a user name and password." } } } }
}
