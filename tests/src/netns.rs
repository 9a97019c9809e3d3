//! Network namespaces owned by a test: created with a unique name, deleted
//! on drop (also when the test panics).
use crate::leaks::NETNS_PREFIX;
use anyhow::{bail, Context};
use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name: prefix, process id, a per-process counter and a role.
pub fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NETNS_PREFIX}{}x{n}-{role}", std::process::id())
}

pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(role: &str) -> anyhow::Result<Self> {
        let name = unique_name(role);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        // No IPv6 chatter (router solicitations, MLD): counters stay exact.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    /// Turns IPv6 back on (without duplicate address detection, so
    /// addresses are usable at once) and waits for eth0's link-local
    /// address.
    pub fn enable_ipv6(&self) -> anyhow::Result<()> {
        for scope in ["all", "default", "eth0"] {
            self.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
            self.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self
            .ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"])?
            .contains("fe80::")
        {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "no link-local address on eth0"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run(&mut self.command(program, args))
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }

    /// Links `ns` to this (switch) namespace's bridge `br0` by a veth
    /// pair: `port` here, enslaved and up; `eth0` in `ns`, left for the
    /// caller to address and bring up.
    pub fn plug_into_bridge(&self, ns: &Netns, port: &str) -> anyhow::Result<()> {
        self.ip(&[
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ])?;
        self.ip(&["link", "set", port, "master", "br0", "up"])?;
        Ok(())
    }

    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Runs `f` on a thread that has entered only this network namespace
    /// (the mount namespace, and so /sys/fs/bpf, stays the host's).
    pub fn run_in<F, R>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> anyhow::Result<R> {
                    let file = std::fs::File::open(&path).with_context(|| path.clone())?;
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("setns {path}"))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("thread in {path} panicked"))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!(
            "{command:?} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
