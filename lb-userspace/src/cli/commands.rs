//! What each `lbd` command does once its arguments are parsed: `check`,
//! `run` (into the daemon), `backend`, `stop`, `reload` (over the control
//! socket), `flows` and `status` (readers of the pinned maps).
use crate::{
    cli::{
        flows,
        liveness::{self, Liveness},
        status,
    },
    config::{Config, HostEnvironment},
    control, daemon, dataplane,
    health::AdminState,
};
use anyhow::{bail, Context};
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

/// `lbd check`: validates a configuration file, like `haproxy -c`.
pub fn check(config: &Path, netns: Option<&str>) -> anyhow::Result<ExitCode> {
    if let Some(ns) = netns {
        enter_netns(ns)?;
    }
    match Config::load(config, &HostEnvironment) {
        Ok(parsed) => {
            let proxy = if parsed.proxy.is_empty() {
                String::new()
            } else {
                format!(
                    " and the proxy ({} frontends, {} backends)",
                    parsed.proxy.frontends.len(),
                    parsed.proxy.backends.len()
                )
            };
            println!(
                "{}: configuration valid ({} services){proxy}",
                config.display(),
                parsed.services.len()
            );
            // Served anyway, as HAProxy does, but worth an operator's look.
            for frontend in &parsed.proxy.frontends {
                for tls in frontend.binds.iter().filter_map(|b| b.tls.as_ref()) {
                    for warning in &tls.warnings {
                        eprintln!("warning: frontend \"{}\": {warning}", frontend.name);
                    }
                }
            }
            for warning in parsed.stats.iter().flat_map(|s| s.warnings()) {
                eprintln!("{}: warning: {warning}", config.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `lbd import`: translates keepalived.conf and haproxy.cfg into lb.toml
/// (to `output`, or stdout) and prints the report (to stdout with `-o`,
/// else to stderr). Fails on unreadable sources, on an output `lbd check`
/// would refuse, and, unless `allow_partial`, when anything is not
/// supported.
pub fn import(
    options: &crate::import::Options,
    output: Option<&Path>,
    allow_partial: bool,
) -> anyhow::Result<ExitCode> {
    if options.keepalived.is_none() && options.haproxy.is_none() {
        bail!("name a file to import: --keepalived FILE and/or --haproxy FILE");
    }
    let imported = match crate::import::import(options) {
        Ok(imported) => imported,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let shown = output.unwrap_or(Path::new("lb.toml"));
    let checked = crate::import::check(&imported.toml, shown);
    match output {
        Some(path) => {
            std::fs::write(path, &imported.toml)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("{}", imported.report);
        }
        None => {
            print!("{}", imported.toml);
            eprintln!("{}", imported.report);
        }
    }
    match checked {
        Err(errors) => {
            eprintln!("lbd: the imported configuration does not pass lbd check:\n{errors}");
            return Ok(ExitCode::FAILURE);
        }
        Ok(absent) => {
            for note in absent {
                eprintln!("note: {note} (not on this machine: copy it where lbd will run; lbd check there reads it)");
            }
        }
    }
    let unsupported = imported.report.unsupported().count();
    if unsupported > 0 && !allow_partial {
        eprintln!(
            "lbd: {unsupported} directive(s) not supported (listed above); the file was written without them: check it, then rerun with --allow-partial to accept"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `lbd run`: validates, then runs the daemon until it is stopped.
pub fn run(config: PathBuf, netns: Option<&str>) -> anyhow::Result<ExitCode> {
    // Before any thread exists: every thread the runtime starts
    // inherits the namespace.
    if let Some(ns) = netns {
        enter_netns(ns)?;
    }
    let parsed = match Config::load(&config, &HostEnvironment) {
        Ok(parsed) => parsed,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(daemon::run(config, parsed))?;
    Ok(ExitCode::SUCCESS)
}

/// `lbd backend`: sets a backend's administrative state.
pub fn backend(
    instance: &str,
    service: String,
    backend: String,
    state: AdminState,
) -> anyhow::Result<ExitCode> {
    let reply = control::call(
        instance,
        &control::Request::Backend {
            service,
            backend,
            state,
        },
    )?;
    report(reply)
}

/// `lbd stop`: asks the daemon to stop and tear down; without a daemon,
/// removes what a stopped or crashed one left. Every failure is an error
/// (non-zero exit): a socket we may not use, a daemon that does not let
/// go, a pin that cannot be removed.
pub fn stop(instance: &str) -> anyhow::Result<ExitCode> {
    match control::call(instance, &control::Request::Stop) {
        Ok(reply) => {
            if !reply.ok {
                return report(reply);
            }
            // Wait for the daemon to let go of the instance.
            for _ in 0..100 {
                if liveness::liveness(instance)? == Liveness::Stopped {
                    return report(reply);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            bail!("instance {instance} accepted the stop but still runs after 10 s")
        }
        Err(control::CallError::NotRunning { .. }) => {
            if let Liveness::Running { pid } = liveness::liveness(instance)? {
                bail!("instance {instance} is running (pid {pid}) but its control socket does not answer");
            }
            let pins = dataplane::pin_dir(instance);
            match std::fs::metadata(&pins) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("instance {instance} is not running and left nothing behind")
                }
                Err(e) => return Err(e).with_context(|| format!("{}", pins.display())),
                Ok(_) => {}
            }
            daemon::try_remove_pins(&pins).with_context(|| {
                format!(
                    "removing the data plane of instance {instance} (pins under {})",
                    pins.display()
                )
            })?;
            let snapshot = crate::control::state_file::snapshot_path(instance);
            match std::fs::remove_file(&snapshot) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", snapshot.display()));
                }
                _ => {}
            }
            println!(
                "{instance}: removed the data plane a previous lbd left (pins under {})",
                pins.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

/// `lbd reload`: makes the daemon re-read its configuration.
pub fn reload(instance: &str) -> anyhow::Result<ExitCode> {
    report(control::call(instance, &control::Request::Reload)?)
}

/// `lbd flows`: the connection table.
pub fn flows(instance: &str, json: bool, limit: usize) -> anyhow::Result<ExitCode> {
    let flows = flows::collect(instance, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&flows)?);
    } else {
        print!("{}", flows::render(&flows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lbd status`: services, backends and counters.
pub fn status(instance: &str, json: bool) -> anyhow::Result<ExitCode> {
    let report = status::collect(instance)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status::render_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lbd show stat`: HAProxy's `show stat`, the stats page's rows (CSV by
/// default, as HAProxy prints them; or JSON).
pub fn show_stat(instance: &str, json: bool) -> anyhow::Result<ExitCode> {
    let rows = crate::stats::export::rows(&status::collect(instance)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", crate::stats::export::csv(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lbd show servers state`: the runtime states and weights the daemon
/// keeps across reloads and restarts.
pub fn show_servers_state(instance: &str) -> anyhow::Result<ExitCode> {
    report(control::call(
        instance,
        &control::Request::ShowServersState,
    )?)
}

/// `lbd set server GROUP/MEMBER state|weight ...`: HAProxy's runtime
/// command, for a proxy server or an XDP backend.
pub fn set_server(
    instance: &str,
    target: &str,
    change: control::ServerChange,
) -> anyhow::Result<ExitCode> {
    let Some((group, member)) = target.split_once('/') else {
        bail!("name the server as BACKEND/SERVER (or SERVICE/ADDRESS[:PORT]), not \"{target}\"");
    };
    report(control::call(
        instance,
        &control::Request::SetServer {
            group: group.to_owned(),
            member: member.to_owned(),
            target: None,
            change,
        },
    )?)
}

/// The running instance named by `--instance`, or by the `[instance]`
/// name of `-c FILE`.
pub fn instance_of(config: Option<PathBuf>, instance: Option<String>) -> anyhow::Result<String> {
    match (config, instance) {
        (_, Some(name)) => Ok(name),
        (Some(path), None) => instance_name_from(&path),
        (None, None) => bail!("name the instance with --instance NAME or -c FILE"),
    }
}

fn report(reply: control::Reply) -> anyhow::Result<ExitCode> {
    if reply.ok {
        println!("{}", reply.message);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("lbd: {}", reply.message);
        Ok(ExitCode::FAILURE)
    }
}

/// The instance name of a config file, without validating the rest (the
/// interface may live in a namespace `status` does not enter).
fn instance_name_from(path: &std::path::Path) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Partial {
        instance: PartialInstance,
    }
    #[derive(serde::Deserialize)]
    struct PartialInstance {
        name: String,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let partial: Partial =
        toml::from_str(&text).with_context(|| format!("{}: no [instance] name", path.display()))?;
    Ok(partial.instance.name)
}

fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = PathBuf::from("/run/netns").join(name);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("network namespace {name} ({})", path.display()))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))?;
    Ok(())
}
