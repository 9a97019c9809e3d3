//! `vrrp_instance` onto `[[vrrp]]`, with its authentication and virtual
//! addresses.
use super::*;

pub(super) fn vrrp_instance(
    cx: &mut Ctx,
    node: &Node,
    out: &mut Output,
    processes: &BTreeMap<String, Tracker>,
    files: &BTreeMap<String, Tracker>,
    default_version: Option<i64>,
) {
    if node.words.len() != 2 {
        cx.error(node, "vrrp_instance takes a name");
        return;
    }
    let Some(children) = cx.block(node) else {
        return;
    };
    let name = &node.words[1];
    let mut table = Table::new("vrrp", true);
    table.comment(format!("vrrp_instance {name} ({})", node.at()));
    table.set("name", Value::str(name), None);
    cx.mapped(node, format!("[[vrrp]] \"{name}\""));
    let mut interface = None;
    let mut vips: Vec<String> = Vec::new();
    let mut tracks: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for child in children {
        match child.keyword() {
            "state" => cx.approx(
                child,
                "every lbd instance starts as backup and the election (priority, then address) decides; keepalived does the same after its first advert",
            ),
            "interface" => {
                if let Some(i) = cx.one(child) {
                    interface = Some(i.to_string());
                    table.set("interface", Value::str(i), at(child));
                    cx.mapped(child, "interface");
                }
            }
            "virtual_router_id" => {
                if let Some(v) = cx.number::<i64>(child) {
                    table.set("vrid", Value::Int(v), at(child));
                    cx.mapped(child, "vrid");
                }
            }
            "priority" => {
                if let Some(v) = cx.number::<i64>(child) {
                    table.set("priority", Value::Int(v), at(child));
                    cx.mapped(child, "priority");
                }
            }
            "advert_int" => {
                if let Some(v) = cx.number::<f64>(child) {
                    table.set("advert_int", Value::Float(v), at(child));
                    cx.mapped(child, "advert_int (seconds)");
                }
            }
            "version" => {
                if let Some(v) = cx.number::<i64>(child) {
                    table.set("version", Value::Int(v), at(child));
                    cx.mapped(child, "version");
                }
            }
            "nopreempt" => {
                table.set("nopreempt", Value::Bool(true), at(child));
                cx.mapped(child, "nopreempt = true");
            }
            "preempt" => cx.mapped(child, "nothing: preemption is the default"),
            "preempt_delay" => {
                if let Some(v) = cx.number::<f64>(child) {
                    table.set("preempt_delay", Value::Float(v), at(child));
                    cx.mapped(child, "preempt_delay (seconds)");
                }
            }
            "authentication" => authentication(cx, child, &mut table),
            "virtual_ipaddress" => {
                if let Some(entries) = cx.block(child) {
                    cx.mapped(child, "virtual_ipaddress");
                    for entry in entries {
                        if let Some(vip) = virtual_address(cx, entry, interface.as_deref()) {
                            vips.push(vip);
                        }
                    }
                }
            }
            "virtual_ipaddress_excluded" => cx.unsupported(
                child,
                "lbd advertises every address it adds: list them in virtual_ipaddress (peers must then list them too)",
            ),
            "virtual_routes" | "virtual_rules" => cx.unsupported(
                child,
                "lbd adds no routes or rules on transitions: add them from a notify script",
            ),
            "unicast_src_ip" => {
                if let Some(v) = cx.one(child) {
                    table.set("unicast_src_ip", Value::str(v), at(child));
                    cx.mapped(child, "unicast_src_ip");
                }
            }
            "unicast_peer" => {
                if let Some(peers) = cx.block(child) {
                    let list: Vec<String> = peers.iter().map(|p| p.words[0].clone()).collect();
                    for peer in peers.iter().filter(|p| p.words.len() > 1) {
                        cx.approx(peer, "lbd takes the peer's address only (no per-peer min_ttl/max_ttl)");
                    }
                    table.set("unicast_peer", Value::strs(list), at(child));
                    cx.mapped(child, "unicast_peer");
                }
            }
            "track_script" => {
                for (entry, script, weight) in track_entries(cx, child) {
                    tracks
                        .entry("track_script")
                        .or_default()
                        .push(track_value("name", &script, weight));
                    cx.mapped(&entry, "track_script entry");
                }
            }
            "track_interface" => {
                for (entry, ifname, weight) in track_entries(cx, child) {
                    tracks
                        .entry("track_interface")
                        .or_default()
                        .push(track_value("name", &ifname, weight));
                    cx.mapped(&entry, "track_interface entry");
                }
            }
            "track_process" => {
                for (entry, name, weight) in track_entries(cx, child) {
                    match processes.get(&name) {
                        Some(t) => {
                            tracks
                                .entry("track_process")
                                .or_default()
                                .push(track_value("name", &t.target, weight.or(t.weight)));
                            cx.mapped(&entry, format!("track_process name = \"{}\"", t.target));
                        }
                        None => cx.error(&entry, format!("no vrrp_track_process \"{name}\"")),
                    }
                }
            }
            "track_file" => {
                for (entry, name, weight) in track_entries(cx, child) {
                    match files.get(&name) {
                        Some(t) => {
                            tracks
                                .entry("track_file")
                                .or_default()
                                .push(track_value("path", &t.target, weight.or(t.weight)));
                            cx.mapped(&entry, format!("track_file path = \"{}\"", t.target));
                        }
                        None => cx.error(&entry, format!("no vrrp_track_file \"{name}\"")),
                    }
                }
            }
            "notify" => {
                if child.words.len() == 2 {
                    table.set("notify", Value::str(&child.words[1]), at(child));
                    cx.mapped(child, "notify (called as: notify INSTANCE NAME STATE PRIORITY, as keepalived calls it)");
                } else {
                    cx.unsupported(child, "lbd runs notify as a program without arguments of its own: put the command line in a script");
                }
            }
            k @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop") => cx.unsupported(
                child,
                format!(
                    "lbd has one notify program, called with the state as its third argument: make it run this when the state is {}",
                    k.trim_start_matches("notify_").to_uppercase()
                ),
            ),
            key @ ("garp_master_delay" | "garp_master_refresh") => {
                if let Some(v) = cx.number::<f64>(child) {
                    table.set(key, Value::Float(v), at(child));
                    cx.mapped(child, key.to_string());
                }
            }
            "garp_master_repeat" => {
                if let Some(v) = cx.number::<i64>(child) {
                    table.set("garp_master_repeat", Value::Int(v), at(child));
                    cx.mapped(child, "garp_master_repeat");
                }
            }
            "garp_master_refresh_repeat" | "garp_lower_prio_delay" | "garp_lower_prio_repeat"
            | "lower_prio_no_advert" | "higher_prio_send_advert" => cx.unsupported(
                child,
                "lbd sends garp_master_repeat announcements per burst and nothing on lower-priority adverts",
            ),
            "dont_track_primary" => cx.mapped(
                child,
                "nothing: lbd tracks only the interfaces in track_interface",
            ),
            "accept" | "no_accept" => cx.approx(
                child,
                "the master holds the VIPs as local addresses: the kernel accepts what is sent to them",
            ),
            "smtp_alert" => cx.unsupported(child, "lbd sends no e-mail: use notify"),
            "native_ipv6" => {
                table.set("version", Value::Int(3), at(child));
                cx.mapped(child, "version = 3 (lbd runs IPv6 VRRP as version 3)");
            }
            "use_vmac" | "vmac_xmit_base" => cx.unsupported(
                child,
                "lbd has no VRRP virtual MAC: it announces the VIPs with the interface's MAC (gratuitous ARP / NA)",
            ),
            "debug" => cx.approx(child, "set RUST_LOG=debug for lbd instead"),
            other => cx.unsupported(child, format!("not in lbd: vrrp_instance \"{other}\"")),
        }
    }
    if let Some(v) = default_version {
        if table.get("version").is_none() {
            table.set(
                "version",
                Value::Int(v),
                Some("global_defs vrrp_version".into()),
            );
        }
    }
    if vips.is_empty() {
        cx.error(
            node,
            format!("vrrp_instance {name} has no virtual_ipaddress"),
        );
        return;
    }
    if table.get("vrid").is_none() {
        cx.error(
            node,
            format!("vrrp_instance {name} has no virtual_router_id"),
        );
        return;
    }
    for vip in &vips {
        if let Ok(address) = vip.parse::<IpAddr>() {
            out.vips.push(address);
        }
    }
    table.set("virtual_ipaddress", Value::strs(vips), None);
    for (key, values) in tracks {
        table.set(key, Value::Array(values), None);
    }
    if out.interface.is_none() {
        out.interface = interface;
    }
    out.vrrp.push(table);
}

pub(super) fn authentication(cx: &mut Ctx, node: &Node, table: &mut Table) {
    let Some(children) = cx.block(node) else {
        return;
    };
    for child in children {
        match child.keyword() {
            "auth_type" => match cx.one(child) {
                Some("PASS") => cx.mapped(child, "auth_pass (v2 simple password)"),
                Some("AH") => cx.unsupported(
                    child,
                    "lbd has no IPsec AH authentication (keepalived deprecates it too): use PASS, or version 3 without authentication",
                ),
                Some(other) => cx.error(child, format!("auth_type {other}: PASS or AH")),
                None => {}
            },
            "auth_pass" => {
                if let Some(p) = cx.one(child) {
                    table.set("auth_pass", Value::str(p), at(child));
                    if p.len() > 8 {
                        cx.approx(child, "auth_pass: only the first 8 bytes go on the wire, as in keepalived");
                    } else {
                        cx.mapped(child, "auth_pass");
                    }
                }
            }
            other => cx.unsupported(child, format!("not in lbd: authentication \"{other}\"")),
        }
    }
    cx.mapped(node, "auth_pass");
}

/// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev IF] [label L] ...`.
pub(super) fn virtual_address(
    cx: &mut Ctx,
    node: &Node,
    interface: Option<&str>,
) -> Option<String> {
    let (address, prefix) = match node.words[0].split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (node.words[0].as_str(), None),
    };
    let Ok(ip) = address.parse::<IpAddr>() else {
        cx.error(node, format!("\"{address}\" is not an IP address"));
        return None;
    };
    let mut differences = Vec::new();
    if let Some(p) = prefix {
        let host = if ip.is_ipv4() { "32" } else { "128" };
        if p != host {
            differences.push(format!(
                "lbd adds it as /{host}, not /{p} (no subnet route)"
            ));
        }
    }
    let mut words = node.words[1..].iter();
    while let Some(option) = words.next() {
        let value = words.next();
        match (option.as_str(), value) {
            ("dev", Some(dev)) if Some(dev.as_str()) == interface => {}
            ("dev", Some(dev)) => differences.push(format!(
                "lbd adds it to the instance's interface, not to {dev}"
            )),
            ("label", Some(label)) => {
                differences.push(format!("lbd adds it without the label {label}"))
            }
            ("brd" | "scope", Some(_)) => {
                differences.push(format!("lbd adds it with the kernel's default {option}"))
            }
            (other, _) => {
                cx.error(
                    node,
                    format!("virtual_ipaddress: unknown option \"{other}\" or missing value"),
                );
                return None;
            }
        }
    }
    if differences.is_empty() {
        cx.mapped(node, format!("virtual_ipaddress \"{ip}\""));
    } else {
        cx.approx(node, differences.join("; "));
    }
    Some(ip.to_string())
}
