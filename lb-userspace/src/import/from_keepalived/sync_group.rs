//! `vrrp_sync_group`, folded into its members' tracking.
use super::*;

/// A sync group makes its instances change state together. lbd has no
/// groups: every instance elects alone. What comes closest, and what this
/// does: every member gets the tracked objects of all members, so a
/// failure that faults one member faults all of them.
pub(super) fn sync_group(cx: &mut Ctx, node: &Node, out: &mut Output) {
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
