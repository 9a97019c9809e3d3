//! nftables counters inside a namespace: exact packet and byte counts for
//! what a test sent or received, independent of the code under test.
use crate::netns::Netns;
use anyhow::Context;

pub struct NftCounters {
    ns: String,
    table: String,
}

impl NftCounters {
    /// One counter per match expression (e.g. "ip daddr 198.18.0.100 tcp
    /// dport 80"), in a filter chain on `hook` ("output", "prerouting").
    pub fn install(ns: &Netns, hook: &str, matches: &[String]) -> anyhow::Result<Self> {
        let table = "lbt".to_owned();
        let mut rules = format!(
            "add table ip {table}\nadd chain ip {table} c {{ type filter hook {hook} priority -300; }}\n"
        );
        for expression in matches {
            rules.push_str(&format!("add rule ip {table} c {expression} counter\n"));
        }
        let file = std::env::temp_dir().join(format!("{}-{hook}.nft", ns.name()));
        std::fs::write(&file, rules)?;
        let result = ns.exec("nft", &["-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        result.context("installing nft counters")?;
        Ok(NftCounters {
            ns: ns.name().to_owned(),
            table,
        })
    }

    /// (packets, bytes) per match, in the order given to `install`.
    pub fn read(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        let text = crate::netns::run(std::process::Command::new("ip").args([
            "netns",
            "exec",
            &self.ns,
            "nft",
            "list",
            "table",
            "ip",
            &self.table,
        ]))?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let at = words.iter().position(|w| *w == "packets")?;
                Some((
                    words.get(at + 1)?.parse().ok()?,
                    words.get(at + 3)?.parse().ok()?,
                ))
            })
            .collect())
    }
}
