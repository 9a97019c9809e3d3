//! `cargo xtask bench-cg`: the L7 proxy's user-space cost per keep-alive
//! request, counted rather than timed. lbd's http frontend and HAProxy's
//! (the bench-l7 configurations, over the same three nginx backends) run
//! in turn under callgrind with its cache simulation; after a warm-up the
//! counters are zeroed, h2load sends a fixed number of keep-alive requests
//! over 32 connections, and the counters are dumped.
//!
//! Why: wall-clock rates on this shared VM drift by a quarter within
//! minutes, which hides a 5% change; instruction counts repeat within a
//! fraction of a percent (simulated cache misses within about 15%). The
//! counts cover every thread of the proxy, libc included, not the kernel.
//! `LBD_BENCH_CG_BASELINE=PATH` adds a row for another lbd build (an A/B);
//! `LBD_BENCH_CG_KEEP=DIR` keeps each proxy's dump there, for
//! `callgrind_annotate`.
//! Prints its table and replaces its section of bench/RESULTS.md.
use crate::bench_l7::{self, HAPROXY_HTTP_PORT, HTTP_PORT, VIP_L7};
use anyhow::{bail, Context};
use lb_tests::topology::{DsrLab, TempDir};
use std::{fmt::Write as _, path::Path, process::Command, time::Duration};

/// Requests counted per proxy, after [`WARM_UP`] uncounted ones.
const REQUESTS: u32 = 20_000;
const WARM_UP: u32 = 2_000;
const CONNECTIONS: &str = "32";
const SECTION_START: &str = "<!-- bench-cg start -->";
const SECTION_END: &str = "<!-- bench-cg end -->";

/// What callgrind counted over the measured requests, per request.
struct Counted {
    who: String,
    instructions: f64,
    data_writes: f64,
    d1_read_misses: f64,
    d1_write_misses: f64,
}

pub fn run(lbd: &Path) -> anyhow::Result<()> {
    let baseline = std::env::var_os("LBD_BENCH_CG_BASELINE").map(std::path::PathBuf::from);
    println!("bench-cg: building the lab");
    let mut lab = crate::bench_lab::lab_with_vips(&[VIP_L7, bench_l7::VIP_L4])?;
    let backends = crate::bench_lab::nginx_per_backend(&lab, |i| {
        vec![std::net::SocketAddr::from((
            lb_tests::topology::backend_addr(i),
            bench_l7::BACKEND_PORT,
        ))]
    })?;
    lab.write_config(&bench_l7::lbd_config(&lab))?;
    let (lbd_counted, workers) = count_lbd(&mut lab, lbd, "lbd http mode")?;
    let mut counted = vec![lbd_counted];
    if let Some(baseline) = &baseline {
        let who = format!("lbd http mode, baseline {}", baseline.display());
        counted.push(count_lbd(&mut lab, baseline, &who)?.0);
    }
    counted.push(count_haproxy(&lab, workers)?);
    drop(backends);
    drop(lab);
    let section = render(&counted);
    print!("{section}");
    if baseline.is_none() {
        bench_l7::replace_section(SECTION_START, SECTION_END, &section, "bench-cg")?;
    }
    Ok(())
}

/// callgrind's command line, its output files in `dir`.
fn valgrind(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--cache-sim=yes".into(),
        format!("--callgrind-out-file={}/callgrind.%p", dir.display()),
    ]
}

/// lbd's counts and how many proxy workers it started.
fn count_lbd(lab: &mut DsrLab, lbd: &Path, who: &str) -> anyhow::Result<(Counted, usize)> {
    println!("bench-cg: {who} under callgrind");
    let scratch = TempDir::create(&format!("{}-cg-lbd", lab.instance))?;
    let wrapper = valgrind(&scratch.path);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.spawn_lbd_via(0, lbd, &wrapper)?;
    let pid = lab.lbd_pid().context("lbd pid")?;
    let counted = wait_listening(lab, HTTP_PORT).and_then(|()| {
        let workers = bench_l7::proxy_workers(pid)?;
        Ok((measure(lab, pid, HTTP_PORT, &scratch.path, who)?, workers))
    });
    crate::bench_lab::stop_lbd(lab, lbd)?;
    counted
}

fn count_haproxy(lab: &DsrLab, threads: usize) -> anyhow::Result<Counted> {
    let who = format!("HAProxy 2.6 mode http, nbthread {threads}");
    println!("bench-cg: {who} under callgrind");
    let scratch = TempDir::create(&format!("{}-cg-haproxy", lab.instance))?;
    let wrapper = valgrind(&scratch.path);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let (haproxy, _config) = bench_l7::start_haproxy_via(lab, threads, &wrapper)?;
    wait_listening(lab, HAPROXY_HTTP_PORT)?;
    let counted = measure(lab, haproxy.pid(), HAPROXY_HTTP_PORT, &scratch.path, &who);
    drop(haproxy);
    counted
}

/// A proxy under valgrind starts many times slower than it runs.
fn wait_listening(lab: &DsrLab, port: u16) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..8 {
        match bench_l7::wait_listening(lab, VIP_L7, port) {
            Ok(()) => return Ok(()),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("not listening")))
        .with_context(|| format!("port {port} under callgrind"))
}

fn h2load(lab: &DsrLab, port: u16, requests: u32) -> anyhow::Result<()> {
    let url = format!("http://{VIP_L7}:{port}/");
    let out = lab.client.exec(
        "h2load",
        &[
            "--h1",
            "-n",
            &requests.to_string(),
            "-c",
            CONNECTIONS,
            "-t",
            "1",
            &url,
        ],
    )?;
    let done = format!("{requests} succeeded");
    if !out.contains(&done) {
        bail!("h2load against {url} did not complete every request:\n{out}");
    }
    Ok(())
}

fn callgrind_control(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("callgrind_control {args:?} failed");
    }
    Ok(())
}

fn measure(lab: &DsrLab, pid: u32, port: u16, dir: &Path, who: &str) -> anyhow::Result<Counted> {
    h2load(lab, port, WARM_UP)?;
    let pid_arg = pid.to_string();
    callgrind_control(&["-z", &pid_arg])?;
    h2load(lab, port, REQUESTS)?;
    callgrind_control(&["-d", &pid_arg])?;
    let dump = dir.join(format!("callgrind.{pid}.1"));
    // The dump is written by the proxy's own thread, soon after the request.
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&dump).unwrap_or_default();
        if text.contains("\ntotals:") || text.contains("\nsummary:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(keep) = std::env::var_os("LBD_BENCH_CG_KEEP") {
        let name: String = who
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let copy = Path::new(&keep).join(format!("{name}.callgrind"));
        std::fs::write(&copy, &text).with_context(|| format!("{}", copy.display()))?;
    }
    let events = parse_totals(&text).with_context(|| format!("{}", dump.display()))?;
    let per_request = |name: &str| -> anyhow::Result<f64> {
        let value = events
            .iter()
            .find(|(event, _)| event == name)
            .map(|(_, value)| *value)
            .with_context(|| format!("no {name} in {}", dump.display()))?;
        Ok(value as f64 / f64::from(REQUESTS))
    };
    Ok(Counted {
        who: who.to_owned(),
        instructions: per_request("Ir")?,
        data_writes: per_request("Dw")?,
        d1_read_misses: per_request("D1mr")?,
        d1_write_misses: per_request("D1mw")?,
    })
}

/// The event names of a callgrind dump and their totals.
fn parse_totals(text: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let names: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))
        .context("no events line")?
        .split_whitespace()
        .collect();
    let totals = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .context("no totals line")?;
    let values: Vec<u64> = totals
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("totals")?;
    Ok(names
        .into_iter()
        .map(str::to_owned)
        .zip(values.into_iter().chain(std::iter::repeat(0)))
        .collect())
}

/// One column of [`Counted`].
type CountedField = fn(&Counted) -> f64;

fn render(counted: &[Counted]) -> String {
    let mut out = format!(
        "## L7 proxy cost per keep-alive request, counted (`cargo xtask bench-cg`)\n\n\
         {}: {REQUESTS} keep-alive requests over {CONNECTIONS} connections (h2load) \
         through each proxy under callgrind, after {WARM_UP} uncounted ones. User space \
         only (the proxy and libc), every thread; cache misses are callgrind's simulated \
         first-level data cache. Counts repeat within a fraction of a percent, the \
         simulated misses within about 15%.\n\n\
         | per request | {} |\n|---|{}\n",
        crate::bench_lab::utc_date(),
        counted
            .iter()
            .map(|c| c.who.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(counted.len()),
    );
    let rows: [(&str, CountedField); 4] = [
        ("instructions", |c| c.instructions),
        ("data writes", |c| c.data_writes),
        ("L1 data read misses", |c| c.d1_read_misses),
        ("L1 data write misses", |c| c.d1_write_misses),
    ];
    for (what, value) in rows {
        let cells: Vec<String> = counted.iter().map(|c| format!("{:.0}", value(c))).collect();
        let _ = writeln!(out, "| {what} | {} |", cells.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_by_event_name() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir Dr Dw\n\
                    fn=(1) main\n0x10 1 2 3\ntotals: 100 20 30\n";
        let events = parse_totals(dump).unwrap();
        assert_eq!(
            events,
            [("Ir".into(), 100), ("Dr".into(), 20), ("Dw".into(), 30)]
        );
        assert!(parse_totals("events: Ir\n").is_err());
        assert!(parse_totals("totals: 1\n").is_err());
    }
}
