//! A section that serves HAProxy's stats page (`stats enable`, `uri`,
//! `auth`, ...) becomes lbd's `[stats]`.
use super::*;

/// `stats ...` in a proxy section: gathered for `[stats]`. Returns true
/// when the directive was taken (stats directives, and everything else of
/// a section that serves stats is judged later).
pub(super) fn section_has_stats(p: &mut ProxyOut, d: &Directive) -> bool {
    if d.keyword() == "stats" {
        let stats = p.stats.get_or_insert_with(|| StatsOut {
            line: d.line,
            table: Table::new("stats", false),
            ..StatsOut::default()
        });
        // HAProxy: `stats uri`, `auth`, `realm`, `refresh`... each
        // enable the page by themselves.
        if d.word(1) != Some("disable") {
            stats.enabled = true;
        }
        p.stats_leftovers.push(d.clone());
        return true;
    }
    false
}

/// A section that serves the stats page becomes `[stats]`.
pub(super) fn stats_section(cx: &mut Ctx, p: ProxyOut, out: &mut Output) {
    if out.stats.is_some() {
        cx.report.push(
            cx.file,
            p.line,
            &format!("{} {}", p.kind.name(), p.name),
            Outcome::NotSupported(
                "lbd serves one stats page ([stats]): a second is left out".into(),
            ),
        );
        return;
    }
    let mut stats = p.stats.unwrap_or_default();
    let mut table = Table::new("stats", false);
    table.comment(format!(
        "{} {} ({}:{}): HAProxy's stats page",
        p.kind.name(),
        p.name,
        cx.file.display(),
        p.line
    ));
    let bind = &p.binds[0];
    let address = match bind.0.as_str() {
        a if a.starts_with(':') && !a.starts_with("::") => format!("0.0.0.0{a}"),
        a if a.starts_with("*:") => format!("0.0.0.0{}", &a[1..]),
        a if a.starts_with(":::") => format!("[::]{}", &a[2..]),
        a => a.to_string(),
    };
    table.set(
        "bind",
        Value::str(&address),
        Some(format!("bind {}", bind.0)),
    );
    if p.binds.len() > 1 || !bind.1.is_empty() {
        cx.report.push(
            cx.file,
            p.line,
            &format!("{} {}", p.kind.name(), p.name),
            Outcome::Approximated(format!(
                "[stats] listens on one address without options: {address}"
            )),
        );
    }
    for d in &p.stats_leftovers {
        let verdict = match (d.word(1), d.word(2)) {
            (Some("enable"), _) => Verdict::mapped(format!("[stats] on {address}")),
            (Some("uri"), Some(uri)) => {
                table.set("uri", Value::str(uri), None);
                Verdict::mapped("[stats] uri")
            }
            (Some("realm"), Some(_)) => {
                table.set("realm", Value::str(d.words[2..].join(" ")), None);
                Verdict::mapped("[stats] realm")
            }
            (Some("refresh"), Some(r)) => {
                table.set("refresh", Value::str(r), None);
                Verdict::mapped("[stats] refresh")
            }
            (Some("show-legends"), None) => {
                table.set("show_legends", Value::Bool(true), None);
                Verdict::mapped("[stats] show_legends = true")
            }
            (Some("hide-version"), None) => {
                table.set("hide_version", Value::Bool(true), None);
                Verdict::mapped("[stats] hide_version = true")
            }
            (Some("admin"), cond) => {
                table.set("admin", Value::Bool(true), None);
                match (cond, d.word(3)) {
                    (Some("if"), Some("TRUE" | "always_true")) => {
                        Verdict::mapped("[stats] admin = true")
                    }
                    _ => Verdict::approx(format!(
                        "[stats] admin = true for every user who logs in; lbd does not evaluate \"{}\"",
                        d.text_from(2)
                    )),
                }
            }
            (Some("auth"), Some(credentials)) => match credentials.split_once(':') {
                Some((user, password)) => {
                    let mut u = Table::new("stats.user", true);
                    u.set("name", Value::str(user), None);
                    u.set(
                        "password",
                        Value::str(password),
                        Some(
                            "plain, as in haproxy.cfg: lbd check warns; prefer password_hash"
                                .into(),
                        ),
                    );
                    stats.users.push(u);
                    Verdict::mapped("[[stats.user]]")
                }
                None => {
                    cx.error(d.line, "stats auth takes user:password");
                    continue;
                }
            },
            (Some(other), _) => {
                Verdict::unsupported(format!("lbd's stats page has no \"stats {other}\""))
            }
            (None, _) => {
                cx.error(d.line, "stats needs a keyword");
                continue;
            }
        };
        cx.verdict(d, verdict);
    }
    // The section's other directives went into a section that is not
    // written: say so on their lines instead of what they would have been.
    let stats_lines: Vec<usize> = p.stats_leftovers.iter().map(|d| d.line).collect();
    for line in cx.report.lines.iter_mut() {
        if line.file != cx.file {
            continue;
        }
        if line.line == p.line && matches!(line.outcome, Outcome::Mapped(_)) {
            line.outcome = Outcome::Mapped(format!(
                "[stats] (the section serves HAProxy's stats page): bind {address}"
            ));
        } else if line.line == p.line {
            if let Outcome::Approximated(text) = &line.outcome {
                if text.starts_with("[[") {
                    line.outcome = Outcome::Approximated(text.replacen(
                        &format!("[[{}]] \"{}\"", p.kind.name(), p.name),
                        "[stats]",
                        1,
                    ));
                }
            }
        } else if p.lines.contains(&line.line)
            && !stats_lines.contains(&line.line)
            && (line.directive.starts_with("default_backend")
                || line.directive.starts_with("server"))
        {
            line.outcome = Outcome::Approximated(
                "lbd's stats page serves its bind alone: requests outside the stats uri are not passed on to this backend or server".into(),
            );
        } else if p.lines.contains(&line.line)
            && !stats_lines.contains(&line.line)
            && matches!(line.outcome, Outcome::Mapped(_))
        {
            line.outcome = Outcome::Mapped(
                "nothing: the section became [stats], lbd's own HTTP server, which needs no proxy settings".into(),
            );
        }
    }
    stats.table = table;
    out.stats = Some(Group {
        table: stats.table,
        children: stats.users,
    });
}
