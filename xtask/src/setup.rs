//! Idempotent machine set-up. Every other task calls [`ensure`], so a fresh
//! clone needs no hand step.
use anyhow::{bail, Context};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Debian packages the tests, the lab and the tools in the README use.
const PACKAGES: &[&str] = &[
    "bpftool",
    "ethtool",
    "iproute2",
    "tcpdump",
    "iperf3",
    "wrk",
    // bench-l7 counts the proxies' system calls per request.
    "strace",
    "nftables",
    "procps",
    "keepalived",
    "openssl",
    "haproxy",
    "nginx",
    "libnginx-mod-http-echo",
    "rsyslog",
    "curl",
    // Issue 14: the stats page is tested in a real headless browser.
    "chromium",
    "chromium-driver",
    // Issue 15: lbd drives gobgpd over gRPC (stubs generated from the .proto
    // files Debian ships with protoc); BIRD 2 is the test router.
    "gobgpd",
    "golang-github-osrg-gobgp-dev",
    "protobuf-compiler",
    "bird2",
    // bench-bgp samples the router's forwarding with `perf record -a -g`
    // (bench-l7's optional profile uses it too).
    "linux-perf",
    // Issue 13: h2load measures HTTP/2 over TLS in bench-l7.
    "nghttp2-client",
    // bench-cg counts the proxies' instructions under callgrind.
    "valgrind",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    packages()?;
    println!("setup complete");
    Ok(())
}

/// Runs the set-up only when something is missing.
pub fn ensure() -> anyhow::Result<()> {
    if !rust_src_present() || !bpf_linker_present() || !missing_packages().is_empty() {
        run()?;
    }
    Ok(())
}

fn quiet(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .map(PathBuf::from)
        .context("the nightly toolchain is missing (rustup toolchain list)")
}

fn rust_src_present() -> bool {
    nightly_sysroot().is_ok_and(|s| s.join("lib/rustlib/src/rust/library/core").exists())
}

fn rust_src() -> anyhow::Result<()> {
    if rust_src_present() {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    if !Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status()?
        .success()
    {
        bail!("rustup component add rust-src --toolchain nightly failed");
    }
    Ok(())
}

fn bpf_linker_present() -> bool {
    output(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.contains(&format!("bpf-linker {BPF_LINKER_VERSION}")))
}

/// bpf-linker linked against nightly's own LLVM: a prefix directory whose
/// lib/ holds libLLVM.so (and its versioned name) pointing into the
/// nightly sysroot. The directory must stay: the binary's RUNPATH uses it.
fn bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_present() {
        return Ok(());
    }
    let sysroot = nightly_sysroot()?;
    let lib = sysroot.join("lib");
    let llvm = std::fs::read_dir(&lib)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    // "libLLVM.so.22.1-rust-1.97.0-nightly" -> 22
    let major = llvm
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let prefix = Path::new(&home).join(".cache/lb-bpf-llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so".to_owned(), llvm.clone()] {
        let link = prefix_lib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&llvm), &link)?;
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} (about a minute)"
    );
    let status = Command::new("cargo")
        .env("LLVM_PREFIX", &prefix)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args([
            "install",
            "bpf-linker",
            "--version",
            &format!("={BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .status()?;
    if !status.success() {
        bail!("cargo install bpf-linker failed");
    }
    Ok(())
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect()
}

fn packages() -> anyhow::Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: apt-get install {}", missing.join(" "));
    if !quiet(Command::new("apt-get").arg("update")) {
        bail!("apt-get update failed");
    }
    let status = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q"])
        .args(&missing)
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}
