//! `vrrp_script`, `vrrp_track_process`, `vrrp_track_file` and the
//! `track_*` lists of an instance.
use super::*;

/// A `vrrp_track_process` or `vrrp_track_file` definition.
pub(super) struct Tracker {
    /// The process name or the file path.
    pub(super) target: String,
    pub(super) weight: Option<i64>,
}

pub(super) fn tracker(cx: &mut Ctx, node: &Node, target_key: &str) -> Option<Tracker> {
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

pub(super) fn vrrp_script(cx: &mut Ctx, node: &Node, out: &mut Output) {
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
pub(super) fn track_entries(cx: &mut Ctx, node: &Node) -> Vec<(Node, String, Option<i64>)> {
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

pub(super) fn track_value(key: &str, target: &str, weight: Option<i64>) -> Value {
    let mut pairs = vec![(key.to_string(), Value::str(target))];
    if let Some(w) = weight {
        pairs.push(("weight".into(), Value::Int(w)));
    }
    Value::Inline(pairs)
}
