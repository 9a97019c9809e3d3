//! `cargo xtask bench-stats` (also part of `cargo xtask bench`): the cost of
//! the stats page (issue 14) on a node with 64 XDP services × 16 backends,
//! 8 proxy frontends and backends × 16 servers, and 4 VRRP instances, all
//! health-checked, in the bench's namespace lab:
//!
//! - a `/metrics` scrape, a page view and the fragment the page's live
//!   refresh fetches: wall time seen by the client, and lbd's CPU time per
//!   request from /proc (the stats thread's, and the whole process's),
//!   median of [`REQUESTS`] requests. "cold" requests come more than
//!   `refresh` apart (the maps are read again), "cached" ones right after
//!   (the sample is reused);
//! - the data path (wrk through lbd's http proxy and through an XDP
//!   fullnat service to nginx) without and with a browser refreshing the
//!   page every second and Prometheus scraping every second, [`RUNS`]
//!   runs each: req/s, the ratio with / without and its range, and lbd's
//!   CPU per request.
//!
//! The rows replace the stats section of bench/RESULTS.md. Not part of the
//! tests.
use crate::bench_l7::{replace_section, wait_listening, wrk};
use anyhow::{bail, Context};
use lb_tests::{
    browser::{basic, http},
    topology::{backend_addr, DsrLab, LB_ADDR},
};
use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

const SERVICES: usize = 64;
const BACKENDS_PER_SERVICE: usize = 16;
const PROXIES: usize = 8;
const VRRP_INSTANCES: usize = 4;
/// The XDP services' VIP (ports `SERVICE_PORT..SERVICE_PORT + 64`).
const VIP_L4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 120);
const SERVICE_PORT: u16 = 10000;
/// The proxy's frontends (ports `FRONTEND_PORT..FRONTEND_PORT + 8`).
const VIP_L7: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 121);
const FRONTEND_PORT: u16 = 80;
const NGINX_PORT: u16 = 8081;
const STATS_PORT: u16 = 8404;
const URI: &str = "/hastat";
const REFRESH: Duration = Duration::from_secs(1);
const REQUESTS: usize = 11;
const RUNS: usize = 3;
const WRK_SECONDS: &str = "5s";
const SECTION_START: &str = "<!-- bench-stats start -->";
const SECTION_END: &str = "<!-- bench-stats end -->";

/// The 16 backend addresses every service shares (198.18.0.40..56), spread
/// over the lab's three backend namespaces, each with nginx on all of its.
fn backend_address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 40 + index as u8)
}

fn stats_addr() -> SocketAddr {
    SocketAddr::from((LB_ADDR, STATS_PORT))
}

/// `LBD_BENCH_STATS_LBD=PATH` benches another lbd binary and leaves
/// bench/RESULTS.md alone (the figures are printed).
pub fn run(lbd: &Path) -> anyhow::Result<()> {
    let other_lbd = std::env::var_os("LBD_BENCH_STATS_LBD").map(std::path::PathBuf::from);
    let record = other_lbd.is_none();
    let lbd = other_lbd.as_deref().unwrap_or(lbd);
    println!("bench-stats: building the lab");
    let mut lab = crate::bench_lab::lab_with_vips(&[VIP_L4, VIP_L7])?;
    // Backend i holds the addresses i, i + 3, ... of the 16.
    let spread = |i: usize| (i..BACKENDS_PER_SERVICE).step_by(3).map(backend_address);
    for (i, backend) in lab.backends.iter().enumerate() {
        for address in spread(i) {
            backend
                .ns
                .ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        }
    }
    let nginx = crate::bench_lab::nginx_per_backend(&lab, |i| {
        std::iter::once(backend_addr(i))
            .chain(spread(i))
            .map(|address| SocketAddr::from((address, NGINX_PORT)))
            .collect()
    })?;
    lab.write_config(&config(&lab.instance))?;
    lab.start_lbd(lbd)?;
    wait_listening(&lab, VIP_L7, FRONTEND_PORT).context("lbd's http frontend")?;
    wait_listening(&lab, LB_ADDR, STATS_PORT).context("the stats page")?;
    let pid = lab.lbd_pid().context("lbd pid")?;
    wait_all_serving(&lab, lbd)?;
    let auth = basic("admin", "bench");

    let mut rows = Vec::new();
    let page = get(&lab, URI, &auth)?;
    let scrape = get(&lab, "/metrics", &auth)?;
    let sizes = format!(
        "page {} KiB, /metrics {} KiB ({} lines)",
        page.body.len() / 1024,
        scrape.body.len() / 1024,
        scrape.body.lines().count()
    );
    for (what, path) in [
        ("/metrics scrape", "/metrics".to_owned()),
        ("page view", URI.to_owned()),
        ("live refresh (fragment)", format!("{URI};fragment")),
    ] {
        request_costs(&lab, pid, what, &path, &auth, &mut rows)?;
    }
    let with_page = data_path(&lab, pid, &auth, &mut rows)?;
    drop(nginx);
    lab.stop_lbd();
    drop(lab);

    let section = render(&rows, &with_page, &sizes);
    print!("{section}");
    if record {
        replace_section(SECTION_START, SECTION_END, &section, "bench-stats")?;
    }
    Ok(())
}

/// 64 fullnat services × 16 backends (TCP checks every 5 s), 8 http
/// frontends and backends × 16 servers (checks every 5 s), 4 VRRP
/// instances, and the stats page with a user, refreshed every second.
fn config(instance: &str) -> String {
    let mut text = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\nmaglev_table_size = 4099\n\
         max_services = {SERVICES}\nmax_backends = {}\n\n",
        instance,
        SERVICES * BACKENDS_PER_SERVICE
    );
    for s in 0..SERVICES {
        let _ = write!(
            text,
            "[[service]]\nname = \"svc{s}\"\nvip = \"{VIP_L4}\"\nport = {}\nprotocol = \"tcp\"\nmode = \"fullnat\"\n\
             health_check = {{ kind = \"tcp\", port = {NGINX_PORT}, interval = 5 }}\n",
            SERVICE_PORT + s as u16
        );
        for b in 0..BACKENDS_PER_SERVICE {
            let _ = write!(
                text,
                "[[service.backend]]\naddress = \"{}\"\nport = {NGINX_PORT}\n",
                backend_address(b)
            );
        }
        text.push('\n');
    }
    for v in 0..VRRP_INSTANCES {
        let _ = write!(
            text,
            "[[vrrp]]\nname = \"VI_{v}\"\nversion = 3\nvrid = {}\npriority = 150\nadvert_int = 1\n\
             virtual_ipaddress = [\"198.18.0.{}\"]\n\n",
            60 + v,
            130 + v
        );
    }
    let _ = write!(
        text,
        "[global]\nmaxconn = 8000\n\n[defaults]\nmode = \"http\"\n\
         timeout = {{ connect = \"5s\", client = \"60s\", server = \"60s\" }}\n\n"
    );
    for p in 0..PROXIES {
        let _ = write!(
            text,
            "[[frontend]]\nname = \"fe{p}\"\nbind = [\"{VIP_L7}:{}\"]\ndefault_backend = \"be{p}\"\n\n\
             [[backend]]\nname = \"be{p}\"\nbalance = \"roundrobin\"\n",
            FRONTEND_PORT + p as u16
        );
        for b in 0..BACKENDS_PER_SERVICE {
            let _ = write!(
                text,
                "[[backend.server]]\nname = \"s{b}\"\naddress = \"{}:{NGINX_PORT}\"\ncheck = true\ninter = 5000\n",
                backend_address(b)
            );
        }
        text.push('\n');
    }
    let _ = write!(
        text,
        "[stats]\nbind = \"{}\"\nuri = \"{URI}\"\nrefresh = \"{}s\"\nadmin = true\n\
         [[stats.user]]\nname = \"admin\"\npassword = \"bench\"\n",
        stats_addr(),
        REFRESH.as_secs()
    );
    text
}

/// Waits (60 s) until every XDP backend has its Maglev slots and every
/// proxy server is UP: the page then shows the full node.
fn wait_all_serving(lab: &DsrLab, lbd: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = lab.status(lbd)?;
        let backends = report
            .services
            .iter()
            .flat_map(|s| &s.backends)
            .filter(|b| b.slots.unwrap_or(0) > 0)
            .count();
        let servers = report.proxy.as_ref().map_or(0, |p| {
            p.backends
                .iter()
                .flat_map(|b| &b.servers)
                .filter(|s| s.status == "UP")
                .count()
        });
        if backends == SERVICES * BACKENDS_PER_SERVICE
            && servers == PROXIES * BACKENDS_PER_SERVICE
            && report.vrrp.len() == VRRP_INSTANCES
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after 60 s: {backends} XDP backends with slots, {servers} proxy servers UP, {} VRRP instances",
                report.vrrp.len()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn get(lab: &DsrLab, path: &str, auth: &str) -> anyhow::Result<lb_tests::browser::HttpResponse> {
    let response = lab
        .client
        .run_in(|| http(stats_addr(), "GET", path, &[("Authorization", auth)], b""))??;
    if response.status != 200 {
        bail!("GET {path}: {} {}", response.status, response.body);
    }
    Ok(response)
}

/// CPU time (ns, user + system, from the scheduler's accounting in
/// /proc/PID/task/TID/schedstat) of lbd's threads, all of them and the
/// stats thread alone.
fn cpu_ns(pid: u32) -> anyhow::Result<(u64, u64)> {
    let (mut all, mut stats) = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        let ns: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .context("schedstat")?;
        all += ns;
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() == "lbd-stats" {
            stats += ns;
        }
    }
    Ok((all, stats))
}

pub(crate) struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    range: Option<(f64, f64)>,
}

fn median_row(what: String, unit: &'static str, mut values: Vec<f64>) -> Row {
    values.sort_by(f64::total_cmp);
    Row {
        what,
        value: values[values.len() / 2],
        unit,
        range: (values.len() > 1).then(|| (values[0], values[values.len() - 1])),
    }
}

/// [`REQUESTS`] cold requests (each more than `refresh` after the last,
/// so the maps are read again) and as many cached ones (right after a
/// cold one): wall ms, stats-thread and whole-lbd CPU ms per request.
fn request_costs(
    lab: &DsrLab,
    pid: u32,
    what: &str,
    path: &str,
    auth: &str,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    println!("bench-stats: {what}");
    let mut samples: [Vec<f64>; 6] = Default::default();
    for _ in 0..REQUESTS {
        std::thread::sleep(REFRESH + Duration::from_millis(150));
        for cached in [false, true] {
            let before = cpu_ns(pid)?;
            let started = Instant::now();
            get(lab, path, auth)?;
            let wall = started.elapsed().as_secs_f64() * 1e3;
            let after = cpu_ns(pid)?;
            let at = if cached { 3 } else { 0 };
            samples[at].push(wall);
            samples[at + 1].push((after.1 - before.1) as f64 / 1e6);
            samples[at + 2].push((after.0 - before.0) as f64 / 1e6);
        }
    }
    for (i, values) in samples.into_iter().enumerate() {
        let kind = if i < 3 { "cold" } else { "cached" };
        let measure = ["wall time", "stats thread CPU", "lbd CPU (all threads)"][i % 3];
        rows.push(median_row(
            format!("{what}, {kind}: {measure}"),
            "ms",
            values,
        ));
    }
    Ok(())
}

/// A browser refreshing the page every second and Prometheus scraping
/// every second, from the client namespace, until `stop`.
fn viewer(lab: &DsrLab, auth: &str, stop: &AtomicBool, served: &AtomicU64) {
    let fragment = format!("{URI};fragment");
    let _ = lab.client.run_in(|| {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            for path in [fragment.as_str(), "/metrics"] {
                if let Ok(r) = http(stats_addr(), "GET", path, &[("Authorization", auth)], b"") {
                    if r.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let rest = Duration::from_secs(1).saturating_sub(started.elapsed());
            let until = Instant::now() + rest;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
}

/// The with/without ratios, for the summary: (path, median, low, high).
type Ratios = Vec<(&'static str, f64, f64, f64)>;

/// wrk through lbd's http proxy and through an XDP service, [`RUNS`] times
/// each without and with the page open; the order alternates so that a
/// drift of the machine's load does not favour one side.
fn data_path(lab: &DsrLab, pid: u32, auth: &str, rows: &mut Vec<Row>) -> anyhow::Result<Ratios> {
    let mut ratios = Vec::new();
    for (path, url) in [
        ("L7 http proxy", format!("http://{VIP_L7}:{FRONTEND_PORT}/")),
        ("XDP fullnat", format!("http://{VIP_L4}:{SERVICE_PORT}/")),
    ] {
        println!("bench-stats: data path, {path}");
        let mut rate: [Vec<f64>; 2] = Default::default();
        let mut cpu: [Vec<f64>; 2] = Default::default();
        let mut views = 0;
        for run in 0..RUNS {
            let order: [bool; 2] = if run % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for with_page in order {
                let stop = AtomicBool::new(false);
                let served = AtomicU64::new(0);
                let result = std::thread::scope(|scope| -> anyhow::Result<_> {
                    if with_page {
                        scope.spawn(|| viewer(lab, auth, &stop, &served));
                    }
                    let before = cpu_ns(pid)?;
                    let result = wrk(lab, &["-t2", "-c32", "-d", WRK_SECONDS, &url]);
                    let after = cpu_ns(pid)?;
                    stop.store(true, Ordering::Relaxed);
                    let result = result?;
                    Ok((result, after.0 - before.0))
                })?;
                let (result, used) = result;
                if result.failed > 0.0 {
                    bail!("{path}: {} failed requests", result.failed);
                }
                let i = usize::from(with_page);
                rate[i].push(result.rate);
                cpu[i].push(used as f64 / 1e3 / result.requests);
                views += served.load(Ordering::Relaxed);
            }
        }
        // At least two page fetches per run: the page was really open.
        if views < (RUNS as u64) * 2 {
            bail!("{path}: the page was fetched only {views} times while wrk ran");
        }
        let mut r: Vec<f64> = rate[1].iter().zip(&rate[0]).map(|(w, o)| w / o).collect();
        r.sort_by(f64::total_cmp);
        ratios.push((path, r[r.len() / 2], r[0], r[r.len() - 1]));
        for (i, condition) in ["without the page", "with the page refreshing every second"]
            .into_iter()
            .enumerate()
        {
            rows.push(median_row(
                format!("{path}, wrk keep-alive, {condition}"),
                "req/s",
                rate[i].clone(),
            ));
            rows.push(median_row(
                format!("{path}, lbd CPU per request, {condition}"),
                "us",
                cpu[i].clone(),
            ));
        }
    }
    Ok(ratios)
}

fn render(rows: &[Row], ratios: &Ratios, sizes: &str) -> String {
    let date = crate::bench_lab::utc_date();
    let mut out = format!(
        "## Stats page and /metrics (issue 14)\n\n\
         Measured by `cargo xtask bench-stats` on {date}: lbd with {SERVICES} XDP fullnat services × {BACKENDS_PER_SERVICE} backends ({} backends, TCP checks every 5 s), \
         {PROXIES} http frontends and backends × {BACKENDS_PER_SERVICE} servers (checks every 5 s), {VRRP_INSTANCES} VRRP instances, `[stats] refresh = \"1s\"` with a user; \
         client and three nginx backends in the bench lab's namespaces, sharing the machine's CPUs. Sizes: {sizes}.\n\n\
         Request costs: median of {REQUESTS} requests (range beside it), one request at a time on a fresh connection from the client namespace. \
         *cold*: more than `refresh` after the previous one, so the maps and the state are read again; *cached*: right after, the sample is reused. \
         CPU is lbd's from the scheduler's accounting (/proc/PID/task/*/schedstat): the stats thread alone, and every thread of lbd (which includes the health checks running meanwhile). \
         CPU figures are the robust ones on a shared machine; wall time includes waiting for a CPU.\n\n\
         Data path: wrk keep-alive (2 threads, 32 connections, {WRK_SECONDS}) to nginx through lbd, {RUNS} runs without and {RUNS} with a client fetching the page's live fragment and `/metrics` every second; the order alternates between runs.\n\n\
         | measurement | value | unit | range |\n|---|---:|---|---:|\n",
        SERVICES * BACKENDS_PER_SERVICE
    );
    for row in rows {
        let range = row
            .range
            .map_or_else(String::new, |(low, high)| format!("{low:.2}-{high:.2}"));
        let _ = writeln!(
            out,
            "| {} | {:.2} | {} | {range} |",
            row.what, row.value, row.unit
        );
    }
    out.push_str(
        "\n| req/s with the page open / without (goal: no measurable change) | ratio | range of runs |\n|---|---:|---:|\n",
    );
    for (path, median, low, high) in ratios {
        let _ = writeln!(out, "| {path} | {median:.3}x | {low:.3}-{high:.3} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Host;
    impl lbd::config::Environment for Host {
        fn interface_exists(&self, name: &str) -> bool {
            name == "eth0"
        }
        fn machine(&self) -> Option<lbd::config::Machine> {
            None
        }
    }

    /// The bench's configuration is valid and has every part at full size.
    #[test]
    fn the_config_is_valid_at_full_size() {
        let text = config("bench-stats");
        let parsed = lbd::config::Config::parse(&text, Path::new("lb.toml"), &Host)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.services.len(), SERVICES);
        assert!(parsed
            .services
            .iter()
            .all(|s| s.backends.len() == BACKENDS_PER_SERVICE));
        assert_eq!(parsed.vrrp.len(), VRRP_INSTANCES);
        assert_eq!(
            text.matches("[[backend.server]]").count(),
            PROXIES * BACKENDS_PER_SERVICE
        );
        assert!(parsed.stats.is_some());
    }
}
