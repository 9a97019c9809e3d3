//! `lbd`: the load-balancer daemon and its command-line tools. This file
//! only parses the command line; each command is one call into the library.
use clap::{Parser, Subcommand};
use lbd::{cli::commands, health::AdminState};
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
    /// Translate keepalived.conf and/or haproxy.cfg into lb.toml, with a
    /// report of what maps, what is approximated and what is not supported.
    Import {
        #[arg(long)]
        keepalived: Option<PathBuf>,
        #[arg(long)]
        haproxy: Option<PathBuf>,
        /// Write lb.toml here (default: stdout; the report then goes to stderr).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Exit 0 even when some directives are not supported.
        #[arg(long)]
        allow_partial: bool,
        /// Serve plain `mode tcp` frontends with XDP services where possible.
        #[arg(long)]
        prefer_xdp: bool,
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
    /// HAProxy's runtime `show ...` commands.
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// HAProxy's runtime `set ...` commands.
    Set {
        #[command(subcommand)]
        what: Set,
    },
}

#[derive(Subcommand)]
enum Show {
    /// `show stat`: one row per frontend, backend and server (proxy) and
    /// per service and backend (XDP), HAProxy's CSV columns.
    Stat {
        #[command(flatten)]
        target: InstanceArgs,
        /// JSON instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// `show servers state`: the runtime states and weights kept across
    /// reloads and restarts.
    Servers {
        #[command(subcommand)]
        what: ServersWhat,
    },
}

#[derive(Subcommand)]
enum ServersWhat {
    State {
        #[command(flatten)]
        target: InstanceArgs,
    },
}

#[derive(Subcommand)]
enum Set {
    /// `set server BACKEND/SERVER state ready|drain|maint` or `weight N`;
    /// SERVICE/ADDRESS[:PORT] for an XDP backend.
    Server {
        #[command(flatten)]
        target: InstanceArgs,
        /// BACKEND/SERVER, or SERVICE/ADDRESS[:PORT].
        name: String,
        #[command(subcommand)]
        change: SetServer,
    },
}

#[derive(Subcommand)]
enum SetServer {
    State {
        #[arg(value_enum)]
        state: StateArg,
    },
    /// HAProxy's `enable health` / `disable health`: disabled, the
    /// server counts as UP and its checks' results are ignored.
    Check {
        #[arg(value_enum)]
        state: OnOff,
    },
    /// 0..=256.
    Weight {
        #[arg(value_parser = clap::value_parser!(u32).range(0..=256))]
        weight: u32,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    Enable,
    Disable,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StateArg {
    Ready,
    Drain,
    Maint,
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
        commands::instance_of(self.config, self.instance)
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
        Command::Check { config, netns } => commands::check(&config, netns.as_deref()),
        Command::Run { config, netns } => commands::run(config, netns.as_deref()),
        Command::Import {
            keepalived,
            haproxy,
            output,
            allow_partial,
            prefer_xdp,
        } => commands::import(
            &lbd::import::Options {
                keepalived,
                haproxy,
                prefer_xdp,
            },
            output.as_deref(),
            allow_partial,
        ),
        Command::Backend {
            target,
            service,
            backend,
            state,
        } => {
            let state = match state {
                AdminArg::Enable => AdminState::Enabled,
                AdminArg::Disable => AdminState::Disabled,
                AdminArg::Drain => AdminState::Drain,
            };
            commands::backend(&target.name()?, service, backend, state)
        }
        Command::Stop { target } => commands::stop(&target.name()?),
        Command::Reload { target } => commands::reload(&target.name()?),
        Command::Flows {
            target,
            json,
            limit,
        } => commands::flows(&target.name()?, json, limit),
        Command::Status { target, json } => commands::status(&target.name()?, json),
        Command::Show {
            what: Show::Stat { target, json },
        } => commands::show_stat(&target.name()?, json),
        Command::Show {
            what: Show::Servers {
                what: ServersWhat::State { target },
            },
        } => commands::show_servers_state(&target.name()?),
        Command::Set {
            what:
                Set::Server {
                    target,
                    name,
                    change,
                },
        } => {
            use lbd::control::{RuntimeState, ServerChange};
            let change = match change {
                SetServer::State { state } => ServerChange::State(match state {
                    StateArg::Ready => RuntimeState::Ready,
                    StateArg::Drain => RuntimeState::Drain,
                    StateArg::Maint => RuntimeState::Maint,
                }),
                SetServer::Weight { weight } => ServerChange::Weight(weight),
                SetServer::Check { state } => ServerChange::Check(matches!(state, OnOff::Enable)),
            };
            commands::set_server(&target.name()?, &name, change)
        }
    }
}
