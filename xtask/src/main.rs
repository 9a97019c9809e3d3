//! `cargo xtask`: set-up, eBPF build, tests and the demo lab.
mod bench;
mod bench_bgp;
mod bench_cg;
mod bench_l7;
mod bench_lab;
mod bench_stats;
mod bench_tls;
mod bench_tls_pass;
mod bench_xdp;
mod lab;
mod run_facts;
mod setup;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (idempotent): nightly rust-src,
    /// bpf-linker, Debian packages.
    Setup,
    /// Build the XDP program (nightly, bpfel-unknown-none).
    BuildEbpf,
    /// Everything CI runs: fmt, clippy, unit, kernel-fixture and netns tests.
    Test,
    /// Measure: XDP per-packet cost, throughput and latency through lbd vs
    /// direct, HAProxy and nftables, lbd's memory, VRRP failover. Writes
    /// bench/RESULTS.md. Not part of the tests.
    Bench {
        /// `xdp`: only the XDP per-packet costs (printed and written to
        /// bench/xdp-latest.md, not to RESULTS.md).
        #[arg(long, value_parser = ["xdp"])]
        only: Option<String>,
    },
    /// Only the L7 proxy part of `bench`: lbd http and tcp mode vs HAProxy
    /// 2.6 over three nginx backends; replaces its section of
    /// bench/RESULTS.md.
    BenchL7,
    /// The L7 proxy's user-space instructions and simulated cache misses
    /// per keep-alive request, lbd vs HAProxy 2.6, under callgrind: a
    /// repeatable A/B where wall-clock rates drift.
    /// LBD_BENCH_CG_BASELINE=PATH adds another lbd build. Replaces its
    /// section of bench/RESULTS.md.
    BenchCg,
    /// Only the TLS rows of `bench-l7` (issue 13): handshakes/s, keep-alive
    /// and h2 over TLS, lbd vs HAProxy 2.6; replaces its section.
    BenchTls,
    /// Only the BGP ECMP part of `bench` (issue 15): wrk req/s through a
    /// BIRD ECMP router with 1, 2 and 3 lbd nodes, and kill -9 to
    /// withdrawal; replaces its section. LBD_BENCH_BGP_LBD=PATH uses that
    /// lbd instead of a release build.
    BenchBgp,
    /// The stats page's cost (issue 14): a scrape and a page view at 64
    /// services x 16 backends, and data-path req/s with the page open;
    /// replaces its section of bench/RESULTS.md.
    BenchStats,
    /// Build a namespace topology, run lbd, send traffic, show the result.
    Lab {
        /// TCP connections to open through the VIP.
        #[arg(long, default_value_t = 600)]
        connections: u32,
        /// dsr: two nodes with VRRP and a failover. nat, fullnat: one node,
        /// IPv4 and IPv6, showing the source address each backend sees.
        #[arg(long, default_value = "dsr", value_parser = ["dsr", "nat", "fullnat"])]
        mode: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::run(),
        Task::BuildEbpf => {
            setup::ensure()?;
            build_ebpf()
        }
        Task::Test => test(),
        Task::Bench { only } => {
            setup::ensure()?;
            build_ebpf()?;
            if only.is_some() {
                return bench::run_xdp_only();
            }
            cargo(&["build", "--release", "-p", "lb-userspace"])?;
            bench::run(&workspace_root().join("target/release/lbd"))
        }
        Task::BenchL7 => {
            setup::ensure()?;
            build_ebpf()?;
            // A given lbd (LBD_BENCH_L7_LBD, a baseline) needs no build.
            if std::env::var_os("LBD_BENCH_L7_LBD").is_none() {
                cargo(&["build", "--release", "-p", "lb-userspace"])?;
            }
            bench_l7::run(&workspace_root().join("target/release/lbd"))
        }
        Task::BenchCg => {
            setup::ensure()?;
            build_ebpf()?;
            cargo(&["build", "--release", "-p", "lb-userspace"])?;
            bench_cg::run(&workspace_root().join("target/release/lbd"))
        }
        Task::BenchTls => {
            setup::ensure()?;
            build_ebpf()?;
            cargo(&["build", "--release", "-p", "lb-userspace"])?;
            // LBD_BENCH_TLS_LBD=PATH benches another build (a baseline).
            let lbd = std::env::var_os("LBD_BENCH_TLS_LBD")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target/release/lbd"));
            bench_tls::run(&lbd)
        }
        Task::BenchBgp => {
            setup::ensure()?;
            build_ebpf()?;
            let lbd = match std::env::var_os("LBD_BENCH_BGP_LBD") {
                Some(path) => PathBuf::from(path),
                None => {
                    cargo(&["build", "--release", "-p", "lb-userspace"])?;
                    workspace_root().join("target/release/lbd")
                }
            };
            bench_bgp::run(&lbd)
        }
        Task::BenchStats => {
            setup::ensure()?;
            build_ebpf()?;
            if std::env::var_os("LBD_BENCH_STATS_LBD").is_none() {
                cargo(&["build", "--release", "-p", "lb-userspace"])?;
            }
            bench_stats::run(&workspace_root().join("target/release/lbd"))
        }
        Task::Lab { connections, mode } => {
            setup::ensure()?;
            build_ebpf()?;
            cargo(&["build", "--release", "-p", "lb-userspace"])?;
            let lbd = workspace_root().join("target/release/lbd");
            match mode.as_str() {
                "nat" => lab::run_nat(&lbd, lb_tests::modes_lab::Mode::Nat),
                "fullnat" => lab::run_nat(&lbd, lb_tests::modes_lab::Mode::Fullnat),
                _ => lab::run(&lbd, connections),
            }
        }
    }
}

pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_owned()
}

/// A cargo command free of the variables `cargo run` set for xtask itself,
/// which would otherwise pin the child to xtask's toolchain.
fn cargo_command(toolchain: Option<&str>) -> Command {
    let mut command = Command::new("cargo");
    for var in [
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        command.env_remove(var);
    }
    if let Some(toolchain) = toolchain {
        command.arg(format!("+{toolchain}"));
    }
    command.current_dir(workspace_root());
    command
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = cargo_command(None)
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// cargo +nightly in lb-ebpf, sharing the workspace's target directory.
fn ebpf_cargo(args: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root();
    let status = cargo_command(Some("nightly"))
        .current_dir(root.join("lb-ebpf"))
        .env("CARGO_TARGET_DIR", root.join("target"))
        .args(args)
        .status()
        .context("running cargo +nightly")?;
    if !status.success() {
        bail!(
            "cargo +nightly {} in lb-ebpf failed ({status})",
            args.join(" ")
        );
    }
    Ok(())
}

fn build_ebpf() -> anyhow::Result<()> {
    let root = workspace_root();
    ebpf_cargo(&["build", "--release"])?;
    println!(
        "built {}",
        root.join("target/bpfel-unknown-none/release/lb-ebpf")
            .display()
    );
    Ok(())
}

fn test() -> anyhow::Result<()> {
    setup::ensure()?;
    build_ebpf()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // Unit tests first; then the tests that need root, one at a time (each
    // builds namespaces and the machine has two cores).
    cargo(&["test", "--workspace", "--exclude", "lb-tests"])?;
    cargo(&["build", "-p", "lb-userspace"])?;
    cargo(&["test", "-p", "lb-tests", "--", "--test-threads=1"])?;
    lb_tests::leaks::assert_nothing_left().context("the tests left something behind")?;
    Ok(())
}
