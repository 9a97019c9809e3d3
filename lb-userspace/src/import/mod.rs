//! `lbd import`: reads an existing keepalived.conf and haproxy.cfg and
//! writes the lb.toml that does the same, with a report of what became of
//! every directive. Parsers (`keepalived`, `haproxy`) turn text into nodes
//! that remember FILE:LINE; the translators map nodes onto lb.toml tables
//! and report lines; `toml_out` writes the file deterministically.
pub mod error;
mod from_haproxy;
mod from_keepalived;
pub mod haproxy;
pub mod keepalived;
pub mod report;
#[cfg(test)]
mod tests;
pub mod toml_out;

use error::{SourceError, SourceErrors};
use report::Report;
use std::{net::IpAddr, path::PathBuf};
use toml_out::{Document, Table, Value};

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub keepalived: Option<PathBuf>,
    pub haproxy: Option<PathBuf>,
    /// Turn plain `mode tcp` frontends whose backends XDP can serve into
    /// XDP services.
    pub prefer_xdp: bool,
}

/// The lb.toml text and the report.
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub report: Report,
}

/// A table with the tables that belong under it (`[[service.backend]]`,
/// `[[backend.server]]`, `[[global.log]]`, `[[stats.user]]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub table: Table,
    pub children: Vec<Table>,
}

impl Group {
    fn new(header: &str, array: bool) -> Group {
        Group {
            table: Table::new(header, array),
            children: Vec::new(),
        }
    }
}

/// Everything the translators produce, in lb.toml's order.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// `[instance]` name, from keepalived's router_id.
    pub instance_name: Option<String>,
    /// `[instance]` interface: the first VRRP instance's.
    pub interface: Option<String>,
    /// Every VRRP virtual address (the VIPs `--prefer-xdp` can serve on).
    pub vips: Vec<IpAddr>,
    pub services: Vec<Group>,
    pub vrrp_scripts: Vec<Table>,
    pub vrrp: Vec<Table>,
    pub global: Option<Group>,
    pub defaults: Option<Table>,
    pub frontends: Vec<Table>,
    pub backends: Vec<Group>,
    pub listens: Vec<Group>,
    pub stats: Option<Group>,
    /// Notes without a source line (printed after the report).
    pub notes: Vec<String>,
}

/// Reads, translates and renders. Errors are problems in the source files
/// that make them unreadable (syntax, arity); what lbd cannot do is in
/// the report, not an error.
pub fn import(options: &Options) -> Result<Imported, SourceErrors> {
    let mut out = Output::default();
    let mut report = Report::default();
    let mut errors: Vec<SourceError> = Vec::new();
    if let Some(path) = &options.keepalived {
        match keepalived::parse_file(path) {
            Ok(nodes) => from_keepalived::translate(&nodes, &mut out, &mut report, &mut errors),
            Err(e) => errors.push(e),
        }
    }
    if let Some(path) = &options.haproxy {
        match haproxy::parse_file(path) {
            Ok(sections) => from_haproxy::translate(
                &sections,
                options.prefer_xdp,
                &mut out,
                &mut report,
                &mut errors,
            ),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(SourceErrors(errors));
    }
    if out.interface.is_none() {
        out.notes.push(
            "no keepalived interface to take it from: [instance] interface = \"eth0\" is assumed; set the interface the VIPs arrive on".into(),
        );
    }
    report.notes = out.notes.clone();
    report.sort_by_source();
    Ok(Imported {
        toml: render(options, &out),
        report,
    })
}

fn render(options: &Options, out: &Output) -> String {
    let mut doc = Document::default();
    doc.preamble.push("Written by `lbd import`".into());
    let mut sources = Vec::new();
    if let Some(k) = &options.keepalived {
        sources.push(format!("--keepalived {}", k.display()));
    }
    if let Some(h) = &options.haproxy {
        sources.push(format!("--haproxy {}", h.display()));
    }
    if options.prefer_xdp {
        sources.push("--prefer-xdp".into());
    }
    doc.preamble.push(format!("from: {}", sources.join(" ")));
    doc.preamble.push(
        "Each section names the directive it comes from; `lbd import` prints what maps, what is approximated and what is not supported."
            .into(),
    );
    let mut instance = Table::new("instance", false);
    let name = out.instance_name.clone().unwrap_or_else(|| "lb1".into());
    instance.set(
        "name",
        Value::Str(name),
        Some(if out.instance_name.is_some() {
            "keepalived router_id".into()
        } else {
            "no router_id to take it from: names /sys/fs/bpf/<name> and /run/lbd/<name>.*".into()
        }),
    );
    let interface = out.interface.clone().unwrap_or_else(|| "eth0".into());
    instance.set(
        "interface",
        Value::Str(interface),
        Some(if out.interface.is_some() {
            "the first vrrp_instance's interface".into()
        } else {
            "assumed: set the interface the VIPs arrive on".into()
        }),
    );
    doc.tables.push(instance);
    for group in &out.services {
        push_group(&mut doc, group);
    }
    doc.tables.extend(out.vrrp_scripts.iter().cloned());
    doc.tables.extend(out.vrrp.iter().cloned());
    if let Some(global) = &out.global {
        push_group(&mut doc, global);
    }
    if let Some(defaults) = &out.defaults {
        doc.tables.push(defaults.clone());
    }
    doc.tables.extend(out.frontends.iter().cloned());
    for group in out.backends.iter().chain(&out.listens) {
        push_group(&mut doc, group);
    }
    if let Some(stats) = &out.stats {
        push_group(&mut doc, stats);
    }
    doc.render()
}

fn push_group(doc: &mut Document, group: &Group) {
    doc.tables.push(group.table.clone());
    doc.tables.extend(group.children.iter().cloned());
}

/// A name lbd accepts for an instance: A-Z a-z 0-9 - _, at most 32.
pub(crate) fn instance_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if name.is_empty() {
        "lb1".into()
    } else {
        name
    }
}

/// The machine as `lbd check` sees it, except that every interface name
/// is taken: the file is usually imported on another machine than the
/// one it runs on (`lbd check` there checks the interface).
pub struct AnyInterface;

impl crate::config::Environment for AnyInterface {
    fn interface_exists(&self, _name: &str) -> bool {
        true
    }
    fn machine(&self) -> Option<crate::config::Machine> {
        crate::config::HostEnvironment.machine()
    }
}

/// Validates an imported file as `lbd check` does (but for interfaces).
/// Files the configuration names (certificates, CA files, pattern files)
/// usually live on the machine lbd will run on, not the one importing: a
/// file that does not exist here is not an error but a note, returned for
/// the report; `lbd check` on the target machine reads it.
pub fn check(
    toml: &str,
    path: &std::path::Path,
) -> Result<Vec<crate::config::ConfigError>, crate::config::ConfigErrors> {
    match crate::config::Config::parse(toml, path, &AnyInterface) {
        Ok(_) => Ok(Vec::new()),
        Err(errors) => {
            let (absent, other): (Vec<_>, Vec<_>) = errors
                .0
                .into_iter()
                .partition(|e| e.message.contains(ABSENT_FILE));
            if other.is_empty() {
                Ok(absent)
            } else {
                Err(crate::config::ConfigErrors(other))
            }
        }
    }
}

/// How an `io::Error` of a missing file reads in a configuration error.
const ABSENT_FILE: &str = "No such file or directory (os error 2)";
