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

mod context;
mod global_defs;
mod health_check;
mod sync_group;
mod tracking;
mod virtual_server;
mod vrrp_instance;

use context::{at, Ctx};
use global_defs::global_defs;
use health_check::health_check;
use sync_group::sync_group;
use tracking::{track_entries, track_value, tracker, vrrp_script, Tracker};
use virtual_server::virtual_server;
use vrrp_instance::vrrp_instance;

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
