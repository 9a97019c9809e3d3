//! `global_defs` onto `[instance]` and notes.
use super::*;

pub(super) fn global_defs(cx: &mut Ctx, node: &Node, out: &mut Output, version: &mut Option<i64>) {
    let Some(children) = cx.block(node) else {
        return;
    };
    cx.mapped(node, "[instance] and notes");
    for child in children {
        match child.keyword() {
            "router_id" | "lvs_id" => {
                if let Some(id) = cx.one(child) {
                    let name = crate::import::instance_name(id);
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
