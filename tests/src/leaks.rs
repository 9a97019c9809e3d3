//! Checks that a run left no namespace, pin, run file or process behind.
use anyhow::bail;
use std::process::Command;

/// Every namespace the kit creates starts with this.
pub const NETNS_PREFIX: &str = "lbt";

pub fn assert_nothing_left() -> anyhow::Result<()> {
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    let leftover: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .map(str::to_owned)
        .collect();
    if !leftover.is_empty() {
        bail!("network namespaces left behind: {}", leftover.join(" "));
    }
    let pins = ours_in("/sys/fs/bpf");
    if !pins.is_empty() {
        bail!("pinned BPF objects left behind: {}", pins.join(" "));
    }
    let run_files = ours_in("/run/lbd");
    if !run_files.is_empty() {
        bail!(
            "state, lock or control files left in /run/lbd: {}",
            run_files.join(" ")
        );
    }
    let out = Command::new("pgrep")
        .args(["-f", "lbd run -c /tmp/lbt"])
        .output()?;
    let processes = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !processes.is_empty() {
        bail!("lbd processes left behind: {processes}");
    }
    Ok(())
}

/// Names in `dir` that a test run made (they start with the prefix).
fn ours_in(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(NETNS_PREFIX))
                .collect()
        })
        .unwrap_or_default()
}
