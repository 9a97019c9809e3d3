//! LVS `virtual_server` blocks onto XDP `[[service]]`s and their
//! `real_server`s onto backends.
use super::*;

pub(super) fn virtual_server(cx: &mut Ctx, node: &Node, out: &mut Output) {
    let (Some(vip), Some(port)) = (node.arg(0), node.arg(1)) else {
        if node.arg(0) == Some("fwmark") || node.arg(0) == Some("group") {
            cx.unsupported(
                node,
                "lbd services are an address and a port (no fwmark or groups)",
            );
        } else {
            cx.error(node, "virtual_server takes an address and a port");
        }
        return;
    };
    if vip == "fwmark" || vip == "group" {
        cx.unsupported(
            node,
            "lbd services are an address and a port (no fwmark or groups)",
        );
        return;
    }
    let Ok(vip_ip) = vip.parse::<IpAddr>() else {
        cx.error(node, format!("\"{vip}\" is not an IP address"));
        return;
    };
    let Ok(port_number) = port.parse::<u16>() else {
        cx.error(node, format!("\"{port}\" is not a port"));
        return;
    };
    let Some(children) = cx.block(node) else {
        return;
    };
    let name = format!(
        "vs_{}_{port_number}",
        vip_ip.to_string().replace(['.', ':'], "_")
    );
    let mut group = Group::new("service", true);
    group
        .table
        .comment(format!("virtual_server {vip} {port} ({})", node.at()))
        .set("name", Value::str(&name), None)
        .set("vip", Value::str(vip_ip.to_string()), None)
        .set("port", Value::Int(i64::from(port_number)), None)
        .set("protocol", Value::str("tcp"), None)
        .set(
            "mode",
            Value::str("nat"),
            Some("LVS's default lb_kind".into()),
        );
    cx.mapped(node, format!("[[service]] \"{name}\" (XDP)"));
    let mut delay_loop = None;
    let mut real_servers = Vec::new();
    for child in children {
        match child.keyword() {
            "lb_algo" | "lvs_sched" => match cx.one(child) {
                Some("mh") => cx.mapped(child, "Maglev hashing (lbd's only placement)"),
                Some(algo) => cx.approx(
                    child,
                    format!("lbd places new flows by weighted Maglev consistent hashing (IPVS's mh), not {algo}"),
                ),
                None => {}
            },
            "lb_kind" | "lvs_method" => match cx.one(child) {
                Some("DR") => {
                    group.table.set("mode", Value::str("dsr"), at(child));
                    cx.mapped(child, "mode = \"dsr\"");
                }
                Some("NAT") => {
                    group.table.set("mode", Value::str("nat"), at(child));
                    cx.mapped(child, "mode = \"nat\"");
                }
                Some("TUN") => cx.unsupported(
                    child,
                    "lbd has no IP-in-IP tunnel mode: dsr (same L2), nat or fullnat (imported as nat)",
                ),
                Some(other) => cx.error(child, format!("lb_kind {other}: DR, NAT or TUN")),
                None => {}
            },
            "protocol" => match cx.one(child) {
                Some(p @ ("TCP" | "UDP")) => {
                    group.table.set("protocol", Value::str(p.to_lowercase()), at(child));
                    cx.mapped(child, format!("protocol = \"{}\"", p.to_lowercase()));
                }
                Some(other) => cx.unsupported(child, format!("lbd balances TCP and UDP, not {other}")),
                None => {}
            },
            "delay_loop" => {
                delay_loop = cx.number::<f64>(child);
                cx.mapped(child, "health_check interval of every real_server");
            }
            "persistence_timeout" | "persistence_granularity" => cx.approx(
                child,
                "lbd keeps no per-client persistence: a connection stays on its backend (connection table), and new connections of a client are placed by their own flow hash",
            ),
            "real_server" => real_servers.push(child),
            "sorry_server" | "sorry_server_inhibit" => cx.unsupported(
                child,
                "lbd has no sorry server: on_all_down = \"drop\" or \"fail_open\"",
            ),
            "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => {
                cx.unsupported(child, "lbd has no quorum scripts")
            }
            "alpha" => cx.approx(child, "lbd starts every backend up and lets rise/fall decide"),
            "omega" | "ha_suspend" | "ops" | "one_packet_scheduler" => {
                cx.unsupported(child, "not in lbd")
            }
            "virtualhost" => cx.mapped(child, "host of the HTTP checks"),
            other => cx.unsupported(child, format!("not in lbd: virtual_server \"{other}\"")),
        }
    }
    let virtualhost = children
        .iter()
        .find(|c| c.keyword() == "virtualhost")
        .and_then(|c| c.arg(0));
    let service_port = port_number;
    for real in real_servers {
        if let Some(backend) = real_server(cx, real, service_port, delay_loop, virtualhost) {
            group.children.push(backend);
        }
    }
    out.services.push(group);
}

pub(super) fn real_server(
    cx: &mut Ctx,
    node: &Node,
    service_port: u16,
    delay_loop: Option<f64>,
    virtualhost: Option<&str>,
) -> Option<Table> {
    let (Some(address), Some(port)) = (node.arg(0), node.arg(1)) else {
        cx.error(node, "real_server takes an address and a port");
        return None;
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        cx.error(node, format!("\"{address}\" is not an IP address"));
        return None;
    };
    let Ok(port) = port.parse::<u16>() else {
        cx.error(node, format!("\"{port}\" is not a port"));
        return None;
    };
    let mut table = Table::new("service.backend", true);
    table.set("address", Value::str(address.to_string()), at(node));
    if port != service_port {
        table.set("port", Value::Int(i64::from(port)), None);
    }
    cx.mapped(node, "[[service.backend]]");
    let mut check: Vec<(String, Value)> = Vec::new();
    if let Some(d) = delay_loop {
        check.push(("interval".into(), Value::Float(d)));
    }
    let empty = Vec::new();
    for child in node.block.as_ref().unwrap_or(&empty) {
        match child.keyword() {
            "weight" => {
                if let Some(w) = cx.number::<i64>(child) {
                    table.set("weight", Value::Int(w), at(child));
                    cx.mapped(child, "weight");
                }
            }
            "inhibit_on_failure" => cx.approx(
                child,
                "lbd removes a failed backend from the table (its flows move) instead of setting its weight to 0",
            ),
            "notify_up" | "notify_down" => {
                cx.unsupported(child, "lbd runs no script on backend changes: it logs each transition")
            }
            kind @ ("TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK") => {
                health_check(cx, child, kind, virtualhost, &mut check)
            }
            other @ ("SMTP_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK"
            | "FILE_CHECK") => cx.unsupported(
                child,
                format!("lbd checks by TCP connect, HTTP(S) or a command, not {other}: a MISC_CHECK-style command can do it"),
            ),
            other => cx.unsupported(child, format!("not in lbd: real_server \"{other}\"")),
        }
    }
    if check.iter().any(|(k, _)| k == "kind") {
        table.set("health_check", Value::Inline(check), None);
    }
    Some(table)
}
