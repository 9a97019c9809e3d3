//! keepalived.conf → lb.toml: `global_defs` to `[instance]` and notes,
//! `vrrp_script` / `vrrp_track_*` / `vrrp_instance` to `[[vrrp_script]]`
//! and `[[vrrp]]`, `vrrp_sync_group` folded into its members' tracking,
//! LVS `virtual_server` blocks to XDP `[[service]]`s with health checks.
use super::{
    error::SourceError,
    keepalived::Node,
    report::{Outcome, Report},
    toml_out::{Table, Value},
    Group, Output,
};
use std::{collections::BTreeMap, net::IpAddr};

struct Ctx<'a> {
    report: &'a mut Report,
    errors: &'a mut Vec<SourceError>,
}

impl Ctx<'_> {
    fn mapped(&mut self, node: &Node, text: impl Into<String>) {
        self.report.push(
            &node.file,
            node.line,
            &shown(node),
            Outcome::Mapped(text.into()),
        );
    }
    fn approx(&mut self, node: &Node, text: impl Into<String>) {
        self.report.push(
            &node.file,
            node.line,
            &shown(node),
            Outcome::Approximated(text.into()),
        );
    }
    fn unsupported(&mut self, node: &Node, text: impl Into<String>) {
        self.report.push(
            &node.file,
            node.line,
            &shown(node),
            Outcome::NotSupported(text.into()),
        );
    }
    fn error(&mut self, node: &Node, text: impl Into<String>) {
        self.errors
            .push(SourceError::new(&node.file, node.line, text.into()));
    }
    /// The single argument of `node`, or an arity error.
    fn one<'n>(&mut self, node: &'n Node) -> Option<&'n str> {
        if node.words.len() == 2 {
            Some(&node.words[1])
        } else {
            self.error(
                node,
                format!(
                    "{} takes one value, not {}",
                    node.keyword(),
                    node.words.len() - 1
                ),
            );
            None
        }
    }
    fn number<T: std::str::FromStr>(&mut self, node: &Node) -> Option<T> {
        let text = self.one(node)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(
                    node,
                    format!("{}: \"{text}\" is not a number", node.keyword()),
                );
                None
            }
        }
    }
    fn block<'n>(&mut self, node: &'n Node) -> Option<&'n [Node]> {
        match &node.block {
            Some(children) => Some(children),
            None => {
                self.error(node, format!("{} needs a {{ ... }} block", node.keyword()));
                None
            }
        }
    }
}

fn shown(node: &Node) -> String {
    let mut text = node.words.join(" ");
    if node.block.is_some() {
        text.push_str(" { ... }");
    }
    text
}

/// The comment beside a value: its source line (the table's comment names
/// the file).
fn at(node: &Node) -> Option<String> {
    Some(format!("line {}: {}", node.line, node.words.join(" ")))
}

/// A `vrrp_track_process` or `vrrp_track_file` definition.
struct Tracker {
    /// The process name or the file path.
    target: String,
    weight: Option<i64>,
}

pub(super) fn translate(
    nodes: &[Node],
    out: &mut Output,
    report: &mut Report,
    errors: &mut Vec<SourceError>,
) {
    let mut cx = Ctx { report, errors };
    // Definitions first, so an instance may name a tracker defined after it.
    let mut processes = BTreeMap::new();
    let mut files = BTreeMap::new();
    for node in nodes {
        match node.keyword() {
            "vrrp_track_process" => {
                if let Some(t) = tracker(&mut cx, node, "process") {
                    processes.insert(node.words[1].clone(), t);
                }
            }
            "vrrp_track_file" => {
                if let Some(t) = tracker(&mut cx, node, "file") {
                    files.insert(node.words[1].clone(), t);
                }
            }
            _ => {}
        }
    }
    let mut default_version = None;
    let mut groups = Vec::new();
    for node in nodes {
        match node.keyword() {
            "global_defs" => global_defs(&mut cx, node, out, &mut default_version),
            "vrrp_script" => vrrp_script(&mut cx, node, out),
            "vrrp_track_process" | "vrrp_track_file" => {}
            "vrrp_instance" => {
                vrrp_instance(&mut cx, node, out, &processes, &files, default_version)
            }
            "vrrp_sync_group" => groups.push(node),
            "virtual_server" => virtual_server(&mut cx, node, out),
            "virtual_server_group" => cx.unsupported(
                node,
                "lbd has no service groups: write one [[service]] per address and port",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => cx.unsupported(
                node,
                "lbd manages only VRRP addresses: keep static addresses and routes in the system's network configuration",
            ),
            "net_namespace" => cx.approx(
                node,
                "run lbd with `lbd run --netns NAME` instead",
            ),
            other => cx.unsupported(node, format!("unknown to lbd: \"{other}\"")),
        }
    }
    for node in groups {
        sync_group(&mut cx, node, out);
    }
}

fn tracker(cx: &mut Ctx, node: &Node, target_key: &str) -> Option<Tracker> {
    if node.words.len() != 2 {
        cx.error(node, format!("{} takes a name", node.keyword()));
        return None;
    }
    let children = cx.block(node)?;
    let mut target = None;
    let mut weight = None;
    for child in children {
        match child.keyword() {
            k if k == target_key => {
                // A process may be given with arguments; lbd tracks by name.
                if child.words.len() < 2 {
                    cx.error(child, format!("{k} needs a value"));
                } else {
                    target = Some(child.words[1].clone());
                    if child.words.len() > 2 {
                        cx.approx(child, "lbd tracks the process by name (/proc/*/comm): its arguments are not matched");
                    } else {
                        cx.mapped(
                            child,
                            format!(
                                "{target_key} of every track entry naming \"{}\"",
                                node.words[1]
                            ),
                        );
                    }
                }
            }
            "weight" => {
                weight = child.arg(0).and_then(|w| w.parse().ok()).or_else(|| {
                    cx.error(child, "weight needs a number");
                    None
                });
                if child.words.len() > 2 {
                    cx.unsupported(child, "lbd has no reversed weights (\"reverse\")");
                } else {
                    cx.mapped(child, "weight of the track entry");
                }
            }
            "delay" | "quorum" | "quorum_max" | "fork_delay" | "terminate_delay"
            | "full_command" | "param_match" | "init_file" => cx.unsupported(
                child,
                "lbd's process and file trackers have no such setting",
            ),
            other => cx.unsupported(child, format!("unknown to lbd: \"{other}\"")),
        }
    }
    let Some(target) = target else {
        cx.error(node, format!("{} has no {target_key}", node.words[1]));
        return None;
    };
    cx.mapped(
        node,
        format!("track_{target_key} entries of the instances that name it"),
    );
    Some(Tracker { target, weight })
}

fn global_defs(cx: &mut Ctx, node: &Node, out: &mut Output, version: &mut Option<i64>) {
    let Some(children) = cx.block(node) else {
        return;
    };
    cx.mapped(node, "[instance] and notes");
    for child in children {
        match child.keyword() {
            "router_id" | "lvs_id" => {
                if let Some(id) = cx.one(child) {
                    let name = super::instance_name(id);
                    cx.mapped(child, format!("[instance] name = \"{name}\""));
                    out.instance_name = Some(name);
                }
            }
            "script_user" => cx.approx(
                child,
                "lbd runs vrrp_script and notify scripts as the user lbd runs as (root), not as another user: run the script with `runuser -u USER --` inside if needed",
            ),
            "enable_script_security" => cx.approx(
                child,
                "lbd does not check who may write the scripts it runs: keep them owned and writable by root only",
            ),
            "vrrp_version" => {
                *version = cx.number(child);
                cx.mapped(child, "version of every [[vrrp]] that does not set its own");
            }
            "vrrp_skip_check_adv_addr" => cx.approx(
                child,
                "lbd always checks an advert's address list and ignores adverts for other addresses",
            ),
            "vrrp_strict" => cx.approx(
                child,
                "lbd always keeps to the RFC: PASS authentication only with version 2, no authentication with version 3, the VIPs answer as the kernel answers",
            ),
            "vrrp_garp_master_delay" | "vrrp_garp_master_repeat" | "vrrp_garp_master_refresh" => cx
                .unsupported(
                    child,
                    "set garp_master_* in each [[vrrp]] (lbd has no global default)",
                ),
            "notification_email" | "notification_email_from" | "smtp_server"
            | "smtp_connect_timeout" | "smtp_alert" => cx.unsupported(
                child,
                "lbd sends no e-mail: use a notify script that mails",
            ),
            "enable_traps" | "enable_snmp_vrrp" | "enable_snmp_checker" | "enable_snmp_rfc" => {
                cx.unsupported(child, "lbd has no SNMP agent: read `lbd status --json`")
            }
            other => cx.unsupported(child, format!("not in lbd: global_defs \"{other}\"")),
        }
    }
}

fn vrrp_script(cx: &mut Ctx, node: &Node, out: &mut Output) {
    if node.words.len() != 2 {
        cx.error(node, "vrrp_script takes a name");
        return;
    }
    let Some(children) = cx.block(node) else {
        return;
    };
    let mut table = Table::new("vrrp_script", true);
    table.comment(format!("vrrp_script {} ({})", node.words[1], node.at()));
    table.set("name", Value::str(&node.words[1]), None);
    cx.mapped(node, format!("[[vrrp_script]] \"{}\"", node.words[1]));
    for child in children {
        match child.keyword() {
            "script" => {
                if child.words.len() < 2 {
                    cx.error(child, "script needs a command");
                    continue;
                }
                // keepalived runs the words as a command line; lbd hands
                // the string to /bin/sh -c, which splits it the same way.
                table.set("script", Value::str(child.words[1..].join(" ")), at(child));
                cx.mapped(child, "script (run with /bin/sh -c)");
            }
            key @ ("interval" | "timeout") => {
                if let Some(v) = cx.number::<f64>(child) {
                    table.set(key, Value::Float(v), at(child));
                    cx.mapped(child, format!("{key} (seconds)"));
                }
            }
            key @ ("rise" | "fall" | "weight") => {
                if key == "weight" && child.words.len() == 3 && child.words[2] == "reverse" {
                    cx.unsupported(child, "lbd has no reversed weights");
                    continue;
                }
                if let Some(v) = cx.number::<i64>(child) {
                    table.set(key, Value::Int(v), at(child));
                    cx.mapped(child, key.to_string());
                }
            }
            "user" => cx.approx(
                child,
                "lbd runs the script as its own user (root): use `runuser -u USER --` in the script",
            ),
            "init_fail" => cx.approx(child, "lbd starts every script as healthy until it fails `fall` times"),
            other => cx.unsupported(child, format!("not in lbd: vrrp_script \"{other}\"")),
        }
    }
    if table.get("script").is_none() {
        cx.error(node, format!("vrrp_script {} has no script", node.words[1]));
        return;
    }
    out.vrrp_scripts.push(table);
}

/// `NAME [weight N]` lines of a track_* block.
fn track_entries(cx: &mut Ctx, node: &Node) -> Vec<(Node, String, Option<i64>)> {
    let Some(children) = cx.block(node) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for child in children {
        let name = child.words[0].clone();
        let weight = match child.words.len() {
            1 => None,
            3 if child.words[1] == "weight" => match child.words[2].parse() {
                Ok(w) => Some(w),
                Err(_) => {
                    cx.error(child, "weight needs a number");
                    continue;
                }
            },
            4 if child.words[1] == "weight" && child.words[3] == "reverse" => {
                cx.unsupported(child, "lbd has no reversed weights");
                continue;
            }
            _ => {
                cx.error(child, "a track entry is NAME [weight N]");
                continue;
            }
        };
        entries.push((child.clone(), name, weight));
    }
    entries
}

fn track_value(key: &str, target: &str, weight: Option<i64>) -> Value {
    let mut pairs = vec![(key.to_string(), Value::str(target))];
    if let Some(w) = weight {
        pairs.push(("weight".into(), Value::Int(w)));
    }
    Value::Inline(pairs)
}

fn vrrp_instance(
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

fn authentication(cx: &mut Ctx, node: &Node, table: &mut Table) {
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
fn virtual_address(cx: &mut Ctx, node: &Node, interface: Option<&str>) -> Option<String> {
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

/// A sync group makes its instances change state together. lbd has no
/// groups: every instance elects alone. What comes closest, and what this
/// does: every member gets the tracked objects of all members, so a
/// failure that faults one member faults all of them.
fn sync_group(cx: &mut Ctx, node: &Node, out: &mut Output) {
    let Some(children) = cx.block(node) else {
        return;
    };
    let mut members: Vec<String> = Vec::new();
    for child in children {
        match child.keyword() {
            "group" => {
                if let Some(names) = cx.block(child) {
                    members.extend(names.iter().flat_map(|n| n.words.iter().cloned()));
                }
            }
            "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => cx
                .unsupported(
                    child,
                    "lbd has no group notify: each [[vrrp]] runs its own notify",
                ),
            "track_script" | "track_interface" | "track_process" | "track_file" => {
                cx.unsupported(child, "track it in each member [[vrrp]] instead")
            }
            "smtp_alert" | "global_tracking" | "sync_group_tracking_weight" => {
                cx.unsupported(child, "not in lbd")
            }
            other => cx.unsupported(child, format!("not in lbd: vrrp_sync_group \"{other}\"")),
        }
    }
    const TRACK_KEYS: [&str; 4] = [
        "track_script",
        "track_interface",
        "track_process",
        "track_file",
    ];
    let is_member = |t: &Table| matches!(t.get("name"), Some(Value::Str(n)) if members.contains(n));
    let mut union: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for table in out.vrrp.iter().filter(|t| is_member(t)) {
        for key in TRACK_KEYS {
            if let Some(Value::Array(values)) = table.get(key) {
                let entry = union.entry(key).or_default();
                for v in values {
                    if !entry.contains(v) {
                        entry.push(v.clone());
                    }
                }
            }
        }
    }
    for table in out.vrrp.iter_mut().filter(|t| is_member(t)) {
        for (key, values) in &union {
            table.set(
                key,
                Value::Array(values.clone()),
                Some(format!(
                    "with the sync group {}",
                    node.words.get(1).map_or("", String::as_str)
                )),
            );
        }
    }
    cx.approx(
        node,
        "lbd has no sync groups: each [[vrrp]] elects alone; every member now tracks what any member tracks, so a tracked failure faults them together (a peer's higher priority in one group still moves only that instance)",
    );
}

fn virtual_server(cx: &mut Ctx, node: &Node, out: &mut Output) {
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

fn real_server(
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

fn health_check(
    cx: &mut Ctx,
    node: &Node,
    kind: &str,
    virtualhost: Option<&str>,
    check: &mut Vec<(String, Value)>,
) {
    let set = |check: &mut Vec<(String, Value)>, key: &str, value: Value| {
        check.retain(|(k, _)| k != key);
        check.push((key.to_string(), value));
    };
    let lbd_kind = match kind {
        "TCP_CHECK" => "tcp",
        "HTTP_GET" => "http",
        "SSL_GET" => "https",
        _ => "command",
    };
    set(check, "kind", Value::str(lbd_kind));
    if kind == "SSL_GET" {
        set(check, "tls_skip_verify", Value::Bool(true));
    }
    if let Some(host) = virtualhost {
        if lbd_kind.starts_with("http") {
            set(check, "host", Value::str(host));
        }
    }
    cx.mapped(node, format!("health_check kind = \"{lbd_kind}\""));
    let empty = Vec::new();
    let mut urls = 0;
    for child in node.block.as_ref().unwrap_or(&empty) {
        match child.keyword() {
            "connect_timeout" | "misc_timeout" => {
                if let Some(t) = cx.number::<f64>(child) {
                    set(check, "timeout", Value::Float(t));
                    cx.mapped(child, "health_check timeout");
                }
            }
            "connect_port" => {
                if let Some(p) = cx.number::<i64>(child) {
                    set(check, "port", Value::Int(p));
                    cx.mapped(child, "health_check port");
                }
            }
            "connect_ip" => {
                if let Some(a) = cx.one(child) {
                    set(check, "address", Value::str(a));
                    cx.mapped(child, "health_check address");
                }
            }
            "retry" | "nb_get_retry" => {
                if let Some(n) = cx.number::<i64>(child) {
                    set(check, "fall", Value::Int(n.max(1)));
                    set(check, "rise", Value::Int(1));
                    cx.approx(
                        child,
                        "fall (consecutive failed checks, one per interval; keepalived retries within the check after delay_before_retry), rise = 1 as keepalived",
                    );
                }
            }
            "delay_before_retry" => cx.approx(
                child,
                "lbd retries at the next interval, not after this delay",
            ),
            "misc_path" => {
                if child.words.len() < 2 {
                    cx.error(child, "misc_path needs a command");
                } else {
                    set(check, "command", Value::str(child.words[1..].join(" ")));
                    cx.mapped(child, "health_check command (/bin/sh -c; exit 0 = up)");
                }
            }
            "misc_dynamic" => {
                cx.unsupported(child, "lbd does not set weights from a check's exit code")
            }
            "url" => {
                urls += 1;
                if urls > 1 {
                    cx.unsupported(
                        child,
                        "lbd checks one URL per backend: only the first is imported",
                    );
                    continue;
                }
                url(cx, child, check);
            }
            "virtualhost" => {
                if let Some(h) = cx.one(child) {
                    set(check, "host", Value::str(h));
                    cx.mapped(child, "health_check host");
                }
            }
            "bindto" | "bind_port" | "bind_if" | "fwmark" | "warmup" | "user" => {
                cx.unsupported(child, "lbd's checks have no such setting")
            }
            other => cx.unsupported(child, format!("not in lbd: {kind} \"{other}\"")),
        }
    }
}

fn url(cx: &mut Ctx, node: &Node, check: &mut Vec<(String, Value)>) {
    let Some(children) = cx.block(node) else {
        return;
    };
    cx.mapped(node, "health_check path and expected status");
    for child in children {
        match child.keyword() {
            "path" => {
                if let Some(p) = cx.one(child) {
                    check.retain(|(k, _)| k != "path");
                    check.push(("path".into(), Value::str(p)));
                    cx.mapped(child, "health_check path");
                }
            }
            "status_code" => {
                if child.words.len() < 2 {
                    cx.error(child, "status_code needs a value");
                    continue;
                }
                let statuses = child.words[1..].join(",");
                check.retain(|(k, _)| k != "expect_status");
                check.push(("expect_status".into(), Value::str(statuses)));
                cx.mapped(child, "health_check expect_status");
            }
            "digest" => cx.unsupported(
                child,
                "lbd does not compare an MD5 digest of the body: use expect_body with a substring",
            ),
            other => cx.unsupported(child, format!("not in lbd: url \"{other}\"")),
        }
    }
    if !check.iter().any(|(k, _)| k == "expect_status") {
        // keepalived accepts only 200 unless status_code says otherwise.
        check.push(("expect_status".into(), Value::str("200")));
    }
}
