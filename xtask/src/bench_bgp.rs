//! `cargo xtask bench-bgp` (issue 15): active-active scale-out behind a
//! BGP ECMP router, in the BGP lab of `lb_tests::bgp_lab`: a router
//! namespace running BIRD 2 (`merge paths`, L4 multipath hash), a client
//! subnet behind it, up to three lbd nodes announcing the VIP through
//! gobgpd, each forwarding DSR to the same three nginx backends.
//!
//! - aggregate wrk keep-alive req/s through the router with 1, 2 and 3
//!   nodes (and how the flows split over the nodes, from their counters);
//! - the router's own cost: its forwarding CPU per request from kernel
//!   samples (`perf record -a -g`, call chains through `ip_forward` or the
//!   multipath hash), and wrk to one nginx backend from the bridge (no
//!   router) and from behind the router (routed, no lbd);
//! - the time from `kill -9` of one node to the withdrawal of its path at
//!   the router (the kernel route losing that next hop), several samples.
//!
//! Writes its own section of bench/RESULTS.md.
use crate::bench_l7::{parse_wrk, replace_section, WrkResult};
use anyhow::Context;
use lb_tests::{
    bgp_lab::{self, bgp_section, start_nginx, web_packets, Router},
    topology::{backend_addr, DsrLab, TCP_PORT, VIP},
};
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::Command,
    time::Duration,
};

const SECTION_START: &str = "<!-- bench-bgp start -->";
const SECTION_END: &str = "<!-- bench-bgp end -->";
const HOLD_TIME: u64 = 3;
const WRK_SECONDS: &str = "5s";
const WRK_CONNECTIONS: &str = "32";
/// Runs of every wrk measurement (median, with the range).
const RUNS: usize = 3;
/// kill -9 samples.
const KILLS: usize = 7;
/// How often the router's route is read while waiting for a withdrawal
/// (each read is one `ip route` process: the resolution is a few ms).
const POLL: Duration = Duration::from_millis(2);

struct Rate {
    what: String,
    median: f64,
    low: f64,
    high: f64,
    failed: f64,
    /// Share of the VIP's packets each node forwarded (lbd rows).
    shares: Vec<f64>,
    /// The router's forwarding CPU per request (µs), from kernel samples
    /// during the first run; None when not sampled or perf failed.
    router_us: Option<(f64, usize)>,
}

pub fn run(lbd: &Path) -> anyhow::Result<()> {
    let load_before = load_average();
    println!("bench-bgp: building the lab (3 nodes, 3 nginx backends, BIRD router)");
    let mut lab = DsrLab::build_ha(3, 3)?;
    let addrs: Vec<Ipv4Addr> = lab.lbs.iter().map(|n| n.addr).collect();
    let router = Router::build(&lab, &addrs, HOLD_TIME, false)?;
    let nginx = start_nginx(&mut lab, false, 1, false)?;
    let mut rates = Vec::new();

    // The router's own cost: one nginx, reached without and with it.
    let direct = format!("http://{}:{TCP_PORT}/", backend_addr(0));
    rates.push(measure(
        &lab,
        lbd,
        "one nginx backend, from the bridge (no router)",
        &[],
        false,
        || wrk(&lab.client.exec("wrk", &wrk_args(&direct))?),
    )?);
    rates.push(measure(
        &lab,
        lbd,
        "one nginx backend, through the router (no lbd)",
        &[],
        true,
        || wrk(&router.client.exec("wrk", &wrk_args(&direct))?),
    )?);

    let vip = format!("http://{VIP}:{TCP_PORT}/");
    for count in 1..=3 {
        let node = count - 1;
        start_node(&mut lab, lbd, node)?;
        router.try_wait_for_hops(
            IpAddr::V4(VIP),
            &hops(&addrs[..count]),
            Duration::from_secs(60),
            Duration::from_millis(50),
        )?;
        println!("bench-bgp: {count} node(s) announce the VIP");
        let nodes: Vec<usize> = (0..count).collect();
        rates.push(measure(
            &lab,
            lbd,
            &format!("VIP through the router, {count} lbd node(s), DSR to 3 nginx"),
            &nodes,
            true,
            || wrk(&router.client.exec("wrk", &wrk_args(&vip))?),
        )?);
    }

    // kill -9 of node 2 to the withdrawal of its path, then back.
    let mut kills = Vec::new();
    for sample in 0..KILLS {
        lab.kill_lbd_of(2);
        let withdrawn = router.try_wait_for_hops(
            IpAddr::V4(VIP),
            &hops(&addrs[..2]),
            Duration::from_secs(HOLD_TIME + 5),
            POLL,
        )?;
        println!("bench-bgp: kill -9 {sample}: withdrawn after {withdrawn:?}");
        kills.push(withdrawn.as_secs_f64() * 1000.0);
        start_node(&mut lab, lbd, 2)?;
        router.try_wait_for_hops(
            IpAddr::V4(VIP),
            &hops(&addrs),
            Duration::from_secs(60),
            Duration::from_millis(50),
        )?;
    }
    drop(nginx);
    let section = render(&rates, &kills, lbd, &load_before);
    print!("{section}");
    replace_section(SECTION_START, SECTION_END, &section, "bench-bgp")
}

/// The 1-minute load average (/proc/loadavg): how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn hops(addrs: &[Ipv4Addr]) -> Vec<IpAddr> {
    addrs.iter().map(|a| IpAddr::V4(*a)).collect()
}

fn wrk_args(url: &str) -> Vec<&str> {
    vec![
        "-t2",
        "-c",
        WRK_CONNECTIONS,
        "-d",
        WRK_SECONDS,
        "--latency",
        url,
    ]
}

fn wrk(out: &str) -> anyhow::Result<WrkResult> {
    parse_wrk(out)
}

/// Starts lbd on `node` with its `[bgp]` section.
fn start_node(lab: &mut DsrLab, lbd: &Path, node: usize) -> anyhow::Result<()> {
    let config = lab.config_for(node, 3) + &bgp_section(lab.lbs[node].addr, HOLD_TIME, 1.0, false);
    bgp_lab::start_node(lab, lbd, node, &config)
}

/// `RUNS` wrk runs: the median rate with the range, the failures, and
/// each of `nodes`' share of the packets.
fn measure(
    lab: &DsrLab,
    lbd: &Path,
    what: &str,
    nodes: &[usize],
    routed: bool,
    run: impl Fn() -> anyhow::Result<WrkResult>,
) -> anyhow::Result<Rate> {
    let before: Vec<u64> = nodes.iter().map(|&n| web_packets(lab, lbd, n)).collect();
    let mut values = Vec::new();
    let mut failed = 0.0;
    let mut router_us = None;
    for index in 0..RUNS {
        let sampler = if index == 0 && routed {
            RouterSampler::start().ok()
        } else {
            None
        };
        let result = run().with_context(|| what.to_owned())?;
        if let Some(sampler) = sampler {
            router_us = sampler
                .finish(result.rate)
                .map_err(|e| println!("bench-bgp: no router CPU figure: {e:#}"))
                .ok();
        }
        values.push(result.rate);
        failed += result.failed;
    }
    let forwarded: Vec<f64> = nodes
        .iter()
        .zip(before)
        .map(|(&n, b)| web_packets(lab, lbd, n).saturating_sub(b) as f64)
        .collect();
    let total: f64 = forwarded.iter().sum();
    let shares = forwarded
        .iter()
        .map(|f| if total > 0.0 { f / total } else { 0.0 })
        .collect();
    let (median, low, high) = median_range(&mut values);
    println!("bench-bgp: {what}: {median:.0} req/s ({low:.0}-{high:.0}), {failed} failed");
    Ok(Rate {
        what: what.to_owned(),
        median,
        low,
        high,
        failed,
        shares,
        router_us,
    })
}

/// Kernel functions only the router runs here (no other namespace forwards
/// or has a multipath route while the bench holds the lock): a sample with
/// one of them in its call chain is the router's forwarding.
const ROUTER_FUNCTIONS: [&str; 4] = [
    "ip_forward",
    "ip6_forward",
    "fib_multipath_hash",
    "rt6_multipath_hash",
];
const SAMPLE_HZ: u32 = 999;
const SAMPLE_SECONDS: u32 = 4;

/// `perf record -a -g` (cpu-clock) over the first seconds of a wrk run.
struct RouterSampler {
    perf: std::process::Child,
    dir: lb_tests::topology::TempDir,
}

impl RouterSampler {
    fn start() -> anyhow::Result<Self> {
        let dir =
            lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("bench-bgp-perf"))?;
        let perf = Command::new("perf")
            .args(["record", "-a", "-g", "-e", "cpu-clock", "-F"])
            .arg(SAMPLE_HZ.to_string())
            .arg("-o")
            .arg(dir.path.join("perf.data"))
            .args(["--", "sleep"])
            .arg(SAMPLE_SECONDS.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting perf")?;
        Ok(RouterSampler { perf, dir })
    }

    /// µs of CPU in the router's forwarding per request, at `rate` req/s,
    /// and the samples it rests on.
    fn finish(mut self, rate: f64) -> anyhow::Result<(f64, usize)> {
        let status = self.perf.wait()?;
        anyhow::ensure!(status.success(), "perf record: {status}");
        let out = Command::new("perf")
            .arg("script")
            .arg("-i")
            .arg(self.dir.path.join("perf.data"))
            .output()
            .context("perf script")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (samples, router) = count_router_samples(&text);
        anyhow::ensure!(samples > 0, "no samples");
        let seconds = router as f64 / f64::from(SAMPLE_HZ);
        let requests = rate * f64::from(SAMPLE_SECONDS);
        Ok((seconds * 1e6 / requests, router))
    }
}

/// (samples, samples in the router's forwarding) of `perf script` text:
/// samples are blocks separated by blank lines.
fn count_router_samples(text: &str) -> (usize, usize) {
    let mut samples = 0;
    let mut router = 0;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        samples += 1;
        let forwarding = block.lines().skip(1).any(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|symbol| symbol.split('+').next())
                .is_some_and(|name| ROUTER_FUNCTIONS.contains(&name))
        });
        router += usize::from(forwarding);
    }
    (samples, router)
}

/// (median, lowest, highest); NaN for none.
fn median_range(values: &mut [f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn render(rates: &[Rate], kills: &[f64], lbd: &Path, load_before: &str) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "## BGP ECMP scale-out (issue 15)\n\n\
         Measured by `cargo xtask bench-bgp` on {date} ({cpus} CPUs, lbd {}): a router namespace running BIRD 2 (`merge paths`, `fib_multipath_hash_policy = 1`) with a client subnet behind it; 1 to 3 lbd nodes announce the VIP /32 through gobgpd (hold time {HOLD_TIME} s) and forward DSR (XDP) to the same three nginx backends (one worker each), which answer through the router. Everything (client, router, nodes, backends, wrk) shares the same {cpus} CPUs, so adding nodes adds no CPU: the rows show what the ECMP path costs and that flows spread, not capacity scaling. wrk: 2 threads, {WRK_CONNECTIONS} keep-alive connections, {WRK_SECONDS} per run, median of {RUNS} runs with the range.\n\n\
         | path | req/s | range of runs | failed | packets per node | router CPU per request |\n|---|---:|---:|---:|---|---:|\n",
        lbd.display()
    );
    for rate in rates {
        let shares = rate
            .shares
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0}-{:.0} | {} | {} | {} |",
            rate.what,
            rate.median,
            rate.low,
            rate.high,
            rate.failed,
            if shares.is_empty() {
                "-".into()
            } else {
                shares
            },
            rate.router_us.map_or("-".into(), |(us, samples)| {
                format!("{us:.2} µs ({samples} samples)")
            })
        );
    }
    out.push_str(
        "\nWith every process on the same CPUs, more nodes cannot add capacity: differences between the lbd rows that stay within their ranges are noise, and a run on a busy machine (see the load average below) says little about scaling. What the rows do show: every node count serves without a failed request, and the router's L4 hash spreads the connections over the nodes (the packet shares).\n",
    );
    out.push_str(&format!(
        "\nRouter CPU per request: during the first run of each routed row, `perf record -a -g` (cpu-clock, {SAMPLE_HZ} Hz, {SAMPLE_SECONDS} s) samples every CPU; the samples whose kernel call chain holds {} are the router namespace's forwarding (no other namespace forwards or has a multipath route while the bench holds the lock), divided by the requests wrk made in those seconds. It counts the forwarding and the multipath hash, not the receive path before the route lookup nor the veth hand-off after it; other load on the machine does not enter it, unlike the wall-clock rates.\n",
        ROUTER_FUNCTIONS.map(|f| format!("`{f}`")).join(", ")
    ));
    let _ = writeln!(
        out,
        "\nLoad average (1 min) at the start and end of the bench: {load_before} and {}.",
        load_average()
    );
    // The router's cost from the two one-backend rows: with both CPUs
    // busy, CPU per request is about CPUs / rate.
    if let (Some(direct), Some(routed)) = (rates.first(), rates.get(1)) {
        let _ = write!(
            out,
            "\nWall clock, for comparison: the same nginx served {:.0} req/s ({:.0}-{:.0}) through the router and {:.0} ({:.0}-{:.0}) from the bridge ({:.2}x). ",
            routed.median,
            routed.low,
            routed.high,
            direct.median,
            direct.low,
            direct.high,
            routed.median / direct.median,
        );
        if routed.high < direct.low {
            // With every CPU busy, CPU per request is about CPUs / rate.
            let per = |rate: f64| cpus as f64 * 1e6 / rate;
            let _ = writeln!(
                out,
                "With every CPU busy that is about {:.1} µs of CPU per request for the router's forwarding (both directions), derived as {cpus} CPUs / rate, not read from a counter.",
                per(routed.median) - per(direct.median)
            );
        } else {
            let _ = writeln!(
                out,
                "The ranges overlap: in wall-clock rates the router's cost is below what this run can resolve."
            );
        }
    }
    let mut sorted = kills.to_vec();
    let (median, low, high) = median_range(&mut sorted);
    let _ = writeln!(
        out,
        "\n`kill -9` of one lbd node to the withdrawal of its path at the router (the kernel's ECMP route losing that next hop, read every {} ms): median {median:.1} ms, range {low:.1}-{high:.1} ms over {} kills (samples: {}). gobgpd dies with lbd (PR_SET_PDEATHSIG), so the BGP session closes at once and BIRD withdraws without waiting for the {HOLD_TIME} s hold time.\n",
        POLL.as_millis(),
        kills.len(),
        kills
            .iter()
            .map(|k| format!("{k:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_samples_are_counted_by_call_chain() {
        let text = "wrk 1 [000] 1.0: 1001001 cpu-clock: \n\tffffffff8 fib_multipath_hash+0x10 ([kernel.kallsyms])\n\tffffffff9 ip_route_input_slow+0x5 ([kernel.kallsyms])\n\nnginx 2 [001] 1.1: 1001001 cpu-clock: \n\tffffffff1 tcp_v4_rcv+0x1 ([kernel.kallsyms])\n\nswapper 0 [000] 1.2: 1001001 cpu-clock: \n\tffffffff2 dev_queue_xmit+0x1 ([kernel.kallsyms])\n\tffffffff3 ip_forward+0x9 ([kernel.kallsyms])\n\tffffffff4 ip_forward_finish_x+0x9 ([kernel.kallsyms])\n\n";
        assert_eq!(count_router_samples(text), (3, 2));
        assert_eq!(count_router_samples(""), (0, 0));
    }

    #[test]
    fn median_and_range() {
        assert_eq!(median_range(&mut [3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_range(&mut [4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(median_range(&mut []).0.is_nan());
    }
}
