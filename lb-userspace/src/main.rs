//! `lbd`: the load-balancer daemon and its command-line tools.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use lbd::{
    config::{Config, HostEnvironment},
    control, daemon,
};
use std::{path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(
    name = "lbd",
    version,
    about = "XDP load balancer with a VRRP control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the XDP program, fill the maps and forward until SIGINT/SIGTERM
    /// (SIGHUP re-reads the configuration).
    Run {
        #[arg(short, long)]
        config: PathBuf,
        /// Run in this network namespace (/run/netns/NAME). Only the network
        /// namespace is entered: pins stay visible in the host's bpffs.
        #[arg(long)]
        netns: Option<String>,
    },
    /// Validate a configuration file, like `haproxy -c`.
    Check {
        #[arg(short, long)]
        config: PathBuf,
        /// Check interface names in this network namespace.
        #[arg(long)]
        netns: Option<String>,
    },
    /// Set a backend's administrative state on a running instance:
    /// enable, disable (its flows move at once) or drain (no new flows,
    /// existing ones stay).
    Backend {
        #[command(flatten)]
        target: InstanceArgs,
        /// Service name.
        service: String,
        /// Backend address, or address:port.
        backend: String,
        #[arg(value_enum)]
        state: AdminArg,
    },
    /// Stop an instance and tear its data plane down: detach the program,
    /// remove the pins. (SIGTERM stops lbd but keeps the data plane
    /// forwarding for the next lbd to adopt.) Also cleans up after a stopped
    /// or crashed lbd.
    Stop {
        #[command(flatten)]
        target: InstanceArgs,
    },
    /// Make a running instance re-read its configuration (as SIGHUP).
    Reload {
        #[command(flatten)]
        target: InstanceArgs,
    },
    /// The connection table: one line per flow (client, VIP, backend, TCP
    /// state, time left, fullnat source port).
    Flows {
        #[command(flatten)]
        target: InstanceArgs,
        #[arg(long)]
        json: bool,
        /// At most this many flows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show services, backends and counters of a running instance.
    Status {
        #[command(flatten)]
        target: InstanceArgs,
        #[arg(long)]
        json: bool,
    },
}

/// Which running instance: by name, or by its configuration file.
#[derive(clap::Args)]
struct InstanceArgs {
    /// Configuration file naming the instance.
    #[arg(short, long, conflicts_with = "instance")]
    config: Option<PathBuf>,
    /// Instance name (the directory under /sys/fs/bpf).
    #[arg(short, long)]
    instance: Option<String>,
}

impl InstanceArgs {
    fn name(self) -> anyhow::Result<String> {
        instance_of(self.config, self.instance)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AdminArg {
    Enable,
    Disable,
    Drain,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config, netns } => {
            if let Some(ns) = &netns {
                enter_netns(ns)?;
            }
            match Config::load(&config, &HostEnvironment) {
                Ok(parsed) => {
                    println!(
                        "{}: configuration valid ({} services)",
                        config.display(),
                        parsed.services.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Run { config, netns } => {
            // Before any thread exists: every thread the runtime starts
            // inherits the namespace.
            if let Some(ns) = &netns {
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
        Command::Backend {
            target,
            service,
            backend,
            state,
        } => {
            let instance = target.name()?;
            let state = match state {
                AdminArg::Enable => lbd::health::state::AdminState::Enabled,
                AdminArg::Disable => lbd::health::state::AdminState::Disabled,
                AdminArg::Drain => lbd::health::state::AdminState::Drain,
            };
            let reply = control::call(
                &instance,
                &control::Request::Backend {
                    service,
                    backend,
                    state,
                },
            )?;
            report(reply)
        }
        Command::Stop { target } => {
            let instance = target.name()?;
            match control::call(&instance, &control::Request::Stop) {
                Ok(reply) => {
                    // Wait for the daemon to let go of the instance.
                    let lock = std::path::Path::new(lbd::cli::status::RUN_DIR)
                        .join(format!("{instance}.lock"));
                    for _ in 0..100 {
                        if daemon::try_lock(&lock)? {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    report(reply)
                }
                Err(_) => {
                    let lock = std::path::Path::new(lbd::cli::status::RUN_DIR)
                        .join(format!("{instance}.lock"));
                    if lock.exists() && !daemon::try_lock(&lock)? {
                        bail!(
                            "instance {instance} is running but its control socket does not answer"
                        );
                    }
                    let pins = lbd::dataplane::pin_dir(&instance);
                    if !pins.exists() {
                        bail!("instance {instance} is not running and left nothing behind");
                    }
                    daemon::remove_pins(&pins);
                    let _ = std::fs::remove_file(lbd::cli::status::snapshot_path(&instance));
                    println!(
                        "{instance}: removed the data plane a previous lbd left (pins under {})",
                        pins.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Reload { target } => {
            let instance = target.name()?;
            report(control::call(&instance, &control::Request::Reload)?)
        }
        Command::Flows {
            target,
            json,
            limit,
        } => {
            let instance = target.name()?;
            let flows = lbd::cli::flows::collect(&instance, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&flows)?);
            } else {
                print!("{}", lbd::cli::flows::render(&flows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { target, json } => {
            let instance = target.name()?;
            let report = lbd::cli::status::collect(&instance)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", lbd::cli::status::render_table(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn instance_of(config: Option<PathBuf>, instance: Option<String>) -> anyhow::Result<String> {
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
