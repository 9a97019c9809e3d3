//! `cargo xtask bench-l7` (also the last part of `cargo xtask bench`): lbd's
//! L7 proxy against HAProxy 2.6 over the same three nginx backends in the
//! bench's namespace lab, in one run on the same cores:
//!
//! - http mode: lbd `mode = "http"` vs HAProxy `mode http` with `nbthread`
//!   equal to the proxy worker threads lbd actually started;
//! - tcp mode: lbd `mode = "tcp"` vs HAProxy `mode tcp`;
//! - the L4 XDP path (lbd fullnat) beside them;
//!
//! each measured with wrk keep-alive (req/s, p50/p99 latency) and wrk
//! `Connection: close` (conn/s), [`RUNS`] times (median and range), lbd's
//! and HAProxy's runs alternating, plus
//! each proxy's peak RSS. The rows replace the L7 section of
//! bench/RESULTS.md (or are appended to it). Not part of the tests.
use crate::run_facts::RunFacts;
use anyhow::{bail, Context};
use lb_tests::{
    process::ChildGuard,
    topology::{backend_addr, DsrLab, TempDir},
};
use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The L7 frontends, lbd's and HAProxy's (on ports of its own).
pub(crate) const VIP_L7: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 110);
/// lbd's L4 fullnat service over the same backends.
pub(crate) const VIP_L4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 111);
pub(crate) const HTTP_PORT: u16 = 80;
const TCP_PORT: u16 = 81;
pub(crate) const HAPROXY_HTTP_PORT: u16 = 180;
const HAPROXY_TCP_PORT: u16 = 181;
pub(crate) const BACKEND_PORT: u16 = 8081;
const WRK_SECONDS: &str = "5s";
const RUNS: usize = 3;
const SECTION_START: &str = "<!-- bench-l7 start -->";
const SECTION_END: &str = "<!-- bench-l7 end -->";

pub(crate) struct Row {
    pub(crate) what: &'static str,
    pub(crate) path: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// Each run's value in run order (empty for a single measurement): the
    /// lbd / HAProxy ratio pairs run i with run i.
    pub(crate) runs: Vec<f64>,
}

impl Row {
    /// The median of `runs` (not empty), which stay in run order.
    fn median(what: &'static str, path: &str, unit: &'static str, runs: Vec<f64>) -> Row {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        Row {
            what,
            path: path.into(),
            value: sorted[sorted.len() / 2],
            unit,
            runs,
        }
    }

    /// The lowest and highest run, when there were several.
    fn range(&self) -> Option<(f64, f64)> {
        let low = self.runs.iter().copied().reduce(f64::min)?;
        let high = self.runs.iter().copied().reduce(f64::max)?;
        (self.runs.len() > 1).then_some((low, high))
    }
}

/// `LBD_BENCH_L7_LBD=PATH` benches another lbd binary (a baseline),
/// `LBD_BENCH_L7_RUNS=N` changes the number of runs,
/// `LBD_BENCH_L7_NO_TLS=1` leaves the TLS benches out and
/// `LBD_BENCH_L7_HTTP_ONLY=1` measures only the http mode rows (lbd's and
/// HAProxy's, no TLS): the quick loop for comparing two builds by CPU per
/// request, with `LBD_BENCH_L7_NO_HAPROXY=1` lbd's alone. Each leaves
/// bench/RESULTS.md alone (the figures are printed).
pub fn run(lbd: &Path) -> anyhow::Result<()> {
    let other_lbd = std::env::var_os("LBD_BENCH_L7_LBD").map(std::path::PathBuf::from);
    let runs = match std::env::var("LBD_BENCH_L7_RUNS") {
        Ok(n) => n.parse().context("LBD_BENCH_L7_RUNS")?,
        Err(_) => RUNS,
    };
    let http_only = std::env::var_os("LBD_BENCH_L7_HTTP_ONLY").is_some();
    let no_haproxy = std::env::var_os("LBD_BENCH_L7_NO_HAPROXY").is_some();
    let record = other_lbd.is_none() && runs == RUNS && !http_only && !no_haproxy;
    let lbd = other_lbd.as_deref().unwrap_or(lbd);
    println!("bench-l7: building the lab");
    let mut lab = crate::bench_lab::lab_with_vips(&[VIP_L7, VIP_L4])?;
    let backends = crate::bench_lab::nginx_per_backend(&lab, |i| {
        vec![SocketAddr::from((backend_addr(i), BACKEND_PORT))]
    })?;

    let mut rows = Vec::new();
    lab.write_config(&lbd_config(&lab))?;
    lab.start_lbd(lbd)?;
    wait_listening(&lab, VIP_L7, HTTP_PORT).context("lbd's http frontend")?;
    wait_listening(&lab, VIP_L7, TCP_PORT).context("lbd's tcp frontend")?;
    let lbd_pid = lab.lbd_pid().context("lbd pid")?;
    let workers = proxy_workers(lbd_pid)?;
    println!("bench-l7: lbd runs {workers} proxy worker threads");
    // Start-up's share of the peak (loading the XDP object, parsing the
    // configuration), before any traffic.
    let startup_peak = crate::bench::peak_rss(lbd_pid)?;
    // HAProxy runs beside lbd on ports of its own, idle while lbd is
    // measured and the other way round.
    let haproxy = if no_haproxy {
        None
    } else {
        let (haproxy, scratch) = start_haproxy(&lab, workers)?;
        let haproxy_log =
            || std::fs::read_to_string(scratch.path.join("haproxy.log")).unwrap_or_default();
        wait_listening(&lab, VIP_L7, HAPROXY_HTTP_PORT)
            .with_context(|| format!("HAProxy's http frontend: {}", haproxy_log()))?;
        Some((haproxy, scratch))
    };
    let haproxy_pid = haproxy.as_ref().map(|(haproxy, _)| haproxy.pid());
    let modes: &[(&str, u16, u16)] = if http_only {
        &[("http", HTTP_PORT, HAPROXY_HTTP_PORT)]
    } else {
        &[
            ("http", HTTP_PORT, HAPROXY_HTTP_PORT),
            ("tcp", TCP_PORT, HAPROXY_TCP_PORT),
        ]
    };
    for &(mode, port, haproxy_port) in modes {
        let mut series = vec![series(
            &format!("lbd {mode} mode"),
            VIP_L7,
            port,
            Some(lbd_pid),
        )];
        if let Some(pid) = haproxy_pid {
            series.push(self::series(
                &format!("HAProxy 2.6 mode {mode}, nbthread {workers}"),
                VIP_L7,
                haproxy_port,
                Some(pid),
            ));
        }
        alternate(&lab, runs, &mut rows, series)?;
    }
    if !http_only {
        let l4 = series("lbd L4 XDP fullnat", VIP_L4, BACKEND_PORT, None);
        alternate(&lab, runs, &mut rows, vec![l4])?;
    }
    rows.push(Row {
        what: "peak RSS",
        path: "lbd (proxy and XDP)".into(),
        value: crate::bench::peak_rss(lbd_pid)?,
        unit: "MiB",
        runs: Vec::new(),
    });
    rows.push(Row {
        what: "peak RSS before traffic",
        path: "lbd (proxy and XDP)".into(),
        value: startup_peak,
        unit: "MiB",
        runs: Vec::new(),
    });
    rows.push(Row {
        what: "RSS after the runs",
        path: "lbd (proxy and XDP)".into(),
        value: current_rss(lbd_pid)?,
        unit: "MiB",
        runs: Vec::new(),
    });
    if let Some(pid) = haproxy_pid {
        rows.push(Row {
            what: "peak RSS",
            path: format!("HAProxy 2.6, nbthread {workers}"),
            value: crate::bench::peak_rss(pid)?,
            unit: "MiB",
            runs: Vec::new(),
        });
        rows.push(Row {
            what: "RSS after the runs",
            path: format!("HAProxy 2.6, nbthread {workers}"),
            value: current_rss(pid)?,
            unit: "MiB",
            runs: Vec::new(),
        });
    }
    drop(haproxy);
    crate::bench_lab::stop_lbd(&mut lab, lbd)?;

    // `LBD_BENCH_L7_NO_TLS=1` leaves out the TLS benches (a quicker loop
    // while working on the proxy; the section is then only printed).
    let tls = std::env::var_os("LBD_BENCH_L7_NO_TLS").is_none() && !http_only && !no_haproxy;
    if tls {
        crate::bench_tls_pass::measure(lbd, &mut lab, workers, &mut rows)?;
    }
    drop(backends);
    drop(lab);

    let section = render(&rows, workers, runs);
    print!("{section}");
    if record && tls {
        write_section(&section)?;
    }
    if tls {
        crate::bench_tls::run(lbd)?;
    }
    Ok(())
}

/// lbd: an http and a tcp frontend on VIP_L7 over the three backends, and
/// an L4 fullnat service on VIP_L4. No access log (nor for HAProxy).
pub(crate) fn lbd_config(lab: &DsrLab) -> String {
    let servers: String = (0..3)
        .map(|i| {
            format!(
                "[[backend.server]]\nname = \"b{}\"\naddress = \"{}:{BACKEND_PORT}\"\n",
                i + 1,
                backend_addr(i)
            )
        })
        .collect();
    let mut text = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\nmax_services = 4\nmax_backends = 16\n\n\
         [[service]]\nname = \"l4\"\nvip = \"{VIP_L4}\"\nport = {BACKEND_PORT}\nprotocol = \"tcp\"\nmode = \"fullnat\"\n",
        lab.instance
    );
    for i in 0..3 {
        let _ = writeln!(
            text,
            "[[service.backend]]\naddress = \"{}\"",
            backend_addr(i)
        );
    }
    let _ = write!(
        text,
        "\n[global]\nmaxconn = 8000\n\n\
         [defaults]\ntimeout = {{ connect = \"5s\", client = \"60s\", server = \"60s\" }}\n\n\
         [[frontend]]\nname = \"http\"\nmode = \"http\"\nbind = [\"{VIP_L7}:{HTTP_PORT}\"]\ndefault_backend = \"web\"\n\n\
         [[backend]]\nname = \"web\"\nmode = \"http\"\nbalance = \"roundrobin\"\n{servers}\n\
         [[frontend]]\nname = \"tcp\"\nmode = \"tcp\"\nbind = [\"{VIP_L7}:{TCP_PORT}\"]\ndefault_backend = \"webtcp\"\n\n\
         [[backend]]\nname = \"webtcp\"\nmode = \"tcp\"\nbalance = \"roundrobin\"\n{servers}"
    );
    text
}

/// The same proxy in HAProxy's words (its default keep-alive mode on both
/// sides, as lbd's default).
/// Returns HAProxy (stopped by PID on drop) and its directory (removed on
/// drop), which holds its stderr in `haproxy.log`.
fn start_haproxy(lab: &DsrLab, threads: usize) -> anyhow::Result<(ChildGuard, TempDir)> {
    start_haproxy_via(lab, threads, &[])
}

/// [`start_haproxy`] through `wrapper` (a command that execs its
/// arguments in the same process, such as valgrind).
pub(crate) fn start_haproxy_via(
    lab: &DsrLab,
    threads: usize,
    wrapper: &[&str],
) -> anyhow::Result<(ChildGuard, TempDir)> {
    let scratch = TempDir::create(&format!("{}-haproxy-l7", lab.instance))?;
    let dir = scratch.path.clone();
    let servers: String = (0..3)
        .map(|i| format!("  server b{} {}:{BACKEND_PORT}\n", i + 1, backend_addr(i)))
        .collect();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  maxconn 8000\n  nbthread {threads}\n\
             defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend http\n  mode http\n  bind {VIP_L7}:{HAPROXY_HTTP_PORT}\n  default_backend web\n\
             backend web\n  mode http\n  balance roundrobin\n{servers}\
             frontend tcp\n  mode tcp\n  bind {VIP_L7}:{HAPROXY_TCP_PORT}\n  default_backend webtcp\n\
             backend webtcp\n  mode tcp\n  balance roundrobin\n{servers}"
        ),
    )?;
    let conf = conf.display().to_string();
    let mut args = wrapper.to_vec();
    args.extend(["haproxy", "-db", "-f", &conf]);
    let mut command = lab.lb().command(args[0], &args[1..]);
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?);
    Ok((ChildGuard::spawn(command, "haproxy")?, scratch))
}

/// Connects from the client namespace until `vip:port` accepts (15 s).
pub(crate) fn wait_listening(lab: &DsrLab, vip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    let target = SocketAddr::from((vip, port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let connected = lab
            .client
            .run_in(|| TcpStream::connect_timeout(&target, Duration::from_millis(200)))?
            .is_ok();
        if connected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{target} does not accept connections after 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Threads of `pid` named `lbd-proxy-*`: the proxy's tokio workers.
pub(crate) fn proxy_workers(pid: u32) -> anyhow::Result<usize> {
    let mut count = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with("lbd-proxy") {
            count += 1;
        }
    }
    if count == 0 {
        bail!("lbd (pid {pid}) runs no lbd-proxy-* thread: is the proxy wired into the daemon?");
    }
    Ok(count)
}

/// wrk keep-alive and `Connection: close` runs against `vip:port`; the
/// rows hold the median and the range. With the proxy's `pid`, also the
/// CPU time the proxy spent per request and per connection: the figure the
/// machine's other load disturbs least. `LBD_BENCH_L7_PERF=DIR` records a
/// `perf record -g` CPU profile of the proxy during the first keep-alive
/// run into DIR.
fn series(path: &str, vip: Ipv4Addr, port: u16, pid: Option<u32>) -> Series {
    Series::new(path, &format!("http://{vip}:{port}/"), pid, MEASURED)
}

/// The rows [`measure_urls`] writes, in its order: keep-alive req/s, its
/// p50 and p99, `Connection: close` conn/s, CPU per keep-alive request
/// and per close request, failed requests.
pub(crate) type Measured = [&'static str; 7];

const MEASURED: Measured = [
    "wrk keep-alive",
    "wrk keep-alive latency p50",
    "wrk keep-alive latency p99",
    "wrk Connection: close",
    "proxy CPU per keep-alive request",
    "proxy CPU per Connection: close request",
    "failed requests (socket errors, non-2xx), all runs",
];

/// One proxy measured against `url` (https too) by [`measure_urls`]: its
/// rows' path and its PID (for CPU time and system calls).
pub(crate) struct Target<'a> {
    pub(crate) path: &'a str,
    pub(crate) url: String,
    pub(crate) pid: Option<u32>,
}

/// Measures each target, their runs alternating, rows named `what`.
pub(crate) fn measure_urls(
    lab: &DsrLab,
    runs: usize,
    rows: &mut Vec<Row>,
    targets: &[Target<'_>],
    what: Measured,
) -> anyhow::Result<()> {
    let series = targets
        .iter()
        .map(|t| Series::new(t.path, &t.url, t.pid, what))
        .collect();
    alternate(lab, runs, rows, series)
}

/// Runs the series in turn, one run of each per round, then writes their
/// rows: lbd's and HAProxy's runs sit side by side in time, so what the
/// machine's other load does over the minutes falls on both alike.
fn alternate(
    lab: &DsrLab,
    runs: usize,
    rows: &mut Vec<Row>,
    mut series: Vec<Series>,
) -> anyhow::Result<()> {
    for run in 0..runs {
        // Who goes first alternates (lbd, HAProxy, HAProxy, lbd, ...): a
        // drift over one pair of runs then falls on both alike.
        for index in 0..series.len() {
            let index = if run % 2 == 0 {
                index
            } else {
                series.len() - 1 - index
            };
            series[index].run(lab, run)?;
        }
    }
    for one in series {
        one.finish(lab, rows)?;
    }
    Ok(())
}

/// One path's wrk runs (keep-alive, then `Connection: close`), taken one
/// at a time.
struct Series {
    path: String,
    url: String,
    /// The proxy, for its CPU time and system calls.
    pid: Option<u32>,
    samples: [(&'static str, &'static str, Vec<f64>); 7],
    failed: f64,
    /// The proxy's user-space share of the keep-alive CPU: the kernel's
    /// share also carries the lab's packet delivery (softirq work charged
    /// to whichever process sends), which the machine's load moves most.
    user_cpu: Vec<f64>,
}

impl Series {
    fn new(path: &str, url: &str, pid: Option<u32>, what: Measured) -> Series {
        let units = ["req/s", "ms", "ms", "conn/s", "us", "us", "requests"];
        Series {
            path: path.into(),
            url: url.into(),
            pid,
            samples: std::array::from_fn(|i| (what[i], units[i], Vec::new())),
            failed: 0.0,
            user_cpu: Vec::new(),
        }
    }

    /// One keep-alive and one close run (the series' `run`th); the first
    /// keep-alive run is profiled when `LBD_BENCH_L7_PERF` asks (every
    /// run, one file each, with `LBD_BENCH_L7_PERF_EVERY=1`: a fast and a
    /// slow run of one process side by side).
    fn run(&mut self, lab: &DsrLab, run: usize) -> anyhow::Result<()> {
        let (pid, url) = (self.pid, self.url.as_str());
        println!("bench-l7: {}", self.path);
        let every = std::env::var_os("LBD_BENCH_L7_PERF_EVERY").is_some();
        let profile = match (pid, std::env::var_os("LBD_BENCH_L7_PERF")) {
            (Some(pid), Some(dir)) if every => {
                let name = format!("{}-run{run}", self.path);
                Some(start_profile(pid, &dir, &name)?)
            }
            (Some(pid), Some(dir)) if run == 0 => Some(start_profile(pid, &dir, &self.path)?),
            _ => None,
        };
        let before = pid.map(|pid| RunFacts::read(lab, pid)).transpose()?;
        let keep = wrk(lab, &["-t2", "-c32", "-d", WRK_SECONDS, "--latency", url])?;
        let mut keep_cpu = f64::NAN;
        if let (Some(pid), Some(before)) = (pid, before) {
            let after = RunFacts::read(lab, pid)?;
            println!(
                "bench-l7: {}: keep-alive {:.0} req/s (latency p50 {:.2}, p75 {:.2}, p90 {:.2}, \
                 p99 {:.2} ms); {}",
                self.path,
                keep.rate,
                keep.p50_ms,
                keep.p75_ms,
                keep.p90_ms,
                keep.p99_ms,
                after.since(&before, keep.requests)
            );
            let (cpu, user) = after.cpu_us_per_request(&before, keep.requests);
            keep_cpu = cpu;
            if !user.is_nan() {
                self.user_cpu.push(user);
            }
        }
        drop(profile);
        let cpu = pid.map(cpu_ticks).transpose()?;
        let close = wrk(
            lab,
            &[
                "-t2",
                "-c32",
                "-d",
                WRK_SECONDS,
                "-H",
                "Connection: close",
                url,
            ],
        )?;
        let close_cpu = cpu_per_request(pid, cpu, close.requests)?;
        self.failed += keep.failed + close.failed;
        for (sample, value) in self.samples.iter_mut().zip([
            keep.rate,
            keep.p50_ms,
            keep.p99_ms,
            close.rate,
            keep_cpu,
            close_cpu,
        ]) {
            sample.2.push(value);
        }
        Ok(())
    }

    /// Counts the proxy's system calls (one more run) and writes the rows:
    /// medians with their ranges.
    fn finish(self, lab: &DsrLab, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let Series {
            path,
            url,
            pid,
            mut samples,
            failed,
            user_cpu,
        } = self;
        samples[6].2.push(failed);
        if !user_cpu.is_empty() {
            // In run order (a drift within one process shows), then sorted
            // for the median.
            println!(
                "bench-l7: {path}: user CPU per keep-alive request, each run in order: \
                 {user_cpu:.2?} us"
            );
            rows.push(Row::median(
                "proxy user-space CPU per keep-alive request",
                &path,
                "us",
                user_cpu,
            ));
        }
        if let Some(pid) = pid {
            let (calls, top) = syscalls_per_request(lab, pid, &url, &[])?;
            println!("bench-l7: {path}: {calls:.2} system calls per keep-alive request ({top})");
            rows.push(Row {
                what: "proxy system calls per keep-alive request",
                path: path.clone(),
                value: calls,
                unit: "calls",
                runs: Vec::new(),
            });
            // A connection per request: accept, the server's connect (tcp
            // mode; http mode reuses a pooled one), the closes.
            let (calls, top) = syscalls_per_request(lab, pid, &url, &["Connection: close"])?;
            println!(
                "bench-l7: {path}: {calls:.2} system calls per Connection: close request ({top})"
            );
            rows.push(Row {
                what: "proxy system calls per Connection: close request",
                path: path.clone(),
                value: calls,
                unit: "calls",
                runs: Vec::new(),
            });
        }
        for (what, unit, mut values) in samples {
            values.retain(|v| !v.is_nan());
            if values.is_empty() {
                continue;
            }
            rows.push(Row::median(what, &path, unit, values));
        }
        Ok(())
    }
}

/// Resident memory of `pid` now (VmRSS), in MiB: what the proxy holds
/// after serving, where the peak (VmHWM) also counts start-up.
fn current_rss(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}

/// Clock ticks per second, the unit of /proc/PID/stat and /proc/stat's
/// times: USER_HZ is 100 on every Linux port.
pub(crate) const USER_HZ: f64 = 100.0;

/// User and system CPU time of `pid` (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let (user, system) = cpu_times(pid)?;
    Ok(user + system)
}

/// User and system CPU time of `pid` (all its threads), in clock ticks.
pub(crate) fn cpu_times(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/pid/stat")?.parse()?)
    };
    Ok((field(11)?, field(12)?))
}

/// Microseconds of the proxy's CPU per request since `before`; NaN
/// without a pid.
pub(crate) fn cpu_per_request(
    pid: Option<u32>,
    before: Option<u64>,
    requests: f64,
) -> anyhow::Result<f64> {
    let (Some(pid), Some(before)) = (pid, before) else {
        return Ok(f64::NAN);
    };
    let used = cpu_ticks(pid)?.saturating_sub(before) as f64 / USER_HZ;
    Ok(if requests > 0.0 {
        used * 1e6 / requests
    } else {
        f64::NAN
    })
}

/// System calls of every thread of `pid` per request during a short wrk
/// run (`strace -c -f`, which slows the proxy but not the count: a figure
/// the machine's other load does not disturb), and the calls it made.
/// `headers`: wrk's `-H` values (`Connection: close` for a connection per
/// request; none for keep-alive).
pub(crate) fn syscalls_per_request(
    lab: &DsrLab,
    pid: u32,
    url: &str,
    headers: &[&str],
) -> anyhow::Result<(f64, String)> {
    let mut args = vec!["-t2", "-c32", "-d", "3s"];
    for header in headers {
        args.extend(["-H", header]);
    }
    args.push(url);
    syscalls_during(lab, pid, || Ok(wrk(lab, &args)?.requests))
}

/// System calls of every thread of `pid` per request while `load` runs
/// (it returns the requests it completed), and every call made at least
/// once per hundred requests. strace is stopped by its PID with SIGTERM
/// (SIGINT may be ignored when the bench runs in the background), which
/// makes it detach and write its summary.
pub(crate) fn syscalls_during(
    lab: &DsrLab,
    pid: u32,
    load: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<(f64, String)> {
    let scratch = TempDir::create(&format!("{}-strace", lab.instance))?;
    let output = scratch.path.join("strace.txt");
    let mut command = Command::new("strace");
    command
        .args(["-c", "-f", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&output)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut strace = ChildGuard::spawn(command, "strace")?;
    // strace attaches to every thread before the load starts.
    std::thread::sleep(Duration::from_millis(500));
    let requests = load();
    // strace re-raises the signal after writing its summary: it ends, but
    // not "successfully"; what counts is that it has ended.
    let _ = strace.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30));
    let requests = requests?;
    if strace.try_wait().is_none() {
        bail!("strace did not stop");
    }
    let summary = std::fs::read_to_string(&output).context("strace summary")?;
    let (total, top) = parse_strace_summary(&summary)?;
    if requests <= 0.0 {
        bail!("no request completed under strace");
    }
    // Every call made at least once per hundred requests: a connection's
    // set-up and teardown calls show beside the request's.
    let top = top
        .iter()
        .filter(|(_, calls)| *calls as f64 / requests >= 0.01)
        .map(|(name, calls)| format!("{name} {:.2}", *calls as f64 / requests))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((total as f64 / requests, top))
}

/// The total calls of an `strace -c` summary and the calls by name, most
/// frequent first. The total is summed from the rows (strace versions
/// differ in whether the total line has a usecs/call column).
fn parse_strace_summary(summary: &str) -> anyhow::Result<(u64, Vec<(String, u64)>)> {
    let mut by_name = Vec::new();
    for line in summary.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall.
        let Some(name) = fields.last() else { continue };
        if name.starts_with('-') || *name == "syscall" || *name == "total" {
            continue;
        }
        if let Some(calls) = fields.get(3).and_then(|c| c.parse::<u64>().ok()) {
            by_name.push((name.to_string(), calls));
        }
    }
    if by_name.is_empty() {
        bail!("no system call in the strace summary");
    }
    by_name.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    Ok((by_name.iter().map(|(_, calls)| calls).sum(), by_name))
}

/// `perf record -g` on `pid` for the length of one wrk run; stopped by PID
/// when dropped.
pub(crate) fn start_profile(
    pid: u32,
    dir: &std::ffi::OsStr,
    path: &str,
) -> anyhow::Result<ChildGuard> {
    let name: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let output = Path::new(dir).join(format!("{name}.data"));
    let mut command = Command::new("perf");
    // Frame-pointer stacks stop at Rust code built without frame
    // pointers; `LBD_BENCH_PERF_CALL_GRAPH=dwarf` unwinds through it.
    let call_graph = std::env::var("LBD_BENCH_PERF_CALL_GRAPH").unwrap_or_else(|_| "fp".into());
    command
        .args(["record", "-e", "cpu-clock", "-F", "2000", "--call-graph"])
        .arg(call_graph);
    // `LBD_BENCH_PERF_SYSTEM=1` records every CPU (the client's and the
    // backends' share of each request too), not only the proxy.
    if std::env::var_os("LBD_BENCH_PERF_SYSTEM").is_some() {
        command.arg("-a");
    } else {
        command.arg("-p").arg(pid.to_string());
    }
    command
        .arg("-o")
        .arg(&output)
        .args(["--", "sleep", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::spawn(command, "perf")
}

pub(crate) struct WrkResult {
    pub(crate) rate: f64,
    /// Requests completed in the run.
    pub(crate) requests: f64,
    pub(crate) p50_ms: f64,
    // p75 and p90 are printed with each keep-alive run's facts, not rows:
    // whether a p99 apart comes with a wider distribution or only a
    // longer tail.
    pub(crate) p75_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) failed: f64,
}

pub(crate) fn wrk(lab: &DsrLab, args: &[&str]) -> anyhow::Result<WrkResult> {
    let out = lab.client.exec("wrk", args)?;
    parse_wrk(&out)
}

pub(crate) fn parse_wrk(out: &str) -> anyhow::Result<WrkResult> {
    let rate = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in:\n{out}"))?;
    let percentile = |p: &str| -> f64 {
        out.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(f64::NAN, crate::bench::millis)
    };
    // "Socket errors: connect 0, read 3, write 0, timeout 0" and
    // "Non-2xx or 3xx responses: 12".
    let socket_errors: f64 = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Socket errors:"))
        .map_or(0.0, |l| {
            l.split(',')
                .filter_map(|part| part.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<f64>().ok())
                .sum()
        });
    let non_2xx: f64 = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0);
    // "  120000 requests in 5.00s, 20.00MB read"
    let requests = out
        .lines()
        .find_map(|l| l.trim_start().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(f64::NAN);
    Ok(WrkResult {
        rate,
        requests,
        p50_ms: percentile("50%"),
        p75_ms: percentile("75%"),
        p90_ms: percentile("90%"),
        p99_ms: percentile("99%"),
        failed: socket_errors + non_2xx,
    })
}

fn render(rows: &[Row], workers: usize, runs: usize) -> String {
    let date = crate::bench_lab::utc_date();
    // How busy the machine was: other work on the same cores moves the
    // rates and latencies, much less the CPU time and system calls per
    // request.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let mut out = format!(
        "## L7 proxy: lbd vs HAProxy 2.6\n\n\
         Measured by `cargo xtask bench-l7` on {date} (1-minute load average {load} when it ended): client, load balancer and three nginx backends (one worker each) in the bench lab's namespaces, sharing the machine's CPUs. lbd ran {workers} proxy worker threads and HAProxy `nbthread {workers}`; neither logged. wrk: 2 threads, 32 connections, {WRK_SECONDS} per run, median of {runs} runs with the range; both proxies run side by side (HAProxy on ports of its own) and their runs alternate in pairs, the first of a pair alternating too (lbd, HAProxy, HAProxy, lbd, ...), so that the machine's drift falls on both alike. A ratio below is the median of the pairs' ratios (each lbd run against the HAProxy run next to it) with their range. System calls per request: `strace -c -f` attached to the proxy during one more 3 s keep-alive run, and one more 3 s `Connection: close` run. The L4 XDP fullnat row is lbd's kernel path over the same backends, for scale.\n\n\
         | measurement | path | value | unit | range of runs |\n|---|---|---:|---|---:|\n"
    );
    for row in rows {
        let range = row
            .range()
            .map_or_else(String::new, |(low, high)| format!("{low:.2}-{high:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {} | {} |",
            row.what, row.path, row.value, row.unit, range
        );
    }
    out.push_str("\n| lbd / HAProxy (goal: ≥ 1.0x req/s and conn/s, p99, CPU and calls ≤ 1.0x) | http mode | tcp mode |\n|---|---:|---:|\n");
    let row = |what: &str, path_start: &str| {
        rows.iter()
            .find(|r| r.what == what && r.path.starts_with(path_start))
    };
    for what in [
        "wrk keep-alive",
        "wrk Connection: close",
        "wrk keep-alive latency p99",
        "proxy CPU per keep-alive request",
        "proxy CPU per Connection: close request",
        "proxy system calls per keep-alive request",
        "proxy system calls per Connection: close request",
    ] {
        let mut cells = Vec::new();
        for mode in ["http", "tcp"] {
            let cell = match (
                row(what, &format!("lbd {mode} mode")),
                row(what, &format!("HAProxy 2.6 mode {mode}")),
            ) {
                (Some(lbd), Some(haproxy)) => ratio_cell(lbd, haproxy),
                _ => "n/a".into(),
            };
            cells.push(cell);
        }
        let _ = writeln!(out, "| {what} | {} | {} |", cells[0], cells[1]);
    }
    out
}

/// lbd / HAProxy for one measurement: the median of the runs' ratios, each
/// lbd run against the HAProxy run taken next to it (the machine's drift
/// between pairs cancels), with their range; a single measurement gives a
/// plain ratio and no range.
pub(crate) fn paired_ratio(lbd: &Row, haproxy: &Row) -> Option<(f64, Option<(f64, f64)>)> {
    let mut ratios = pair_ratios(lbd, haproxy);
    ratios.sort_by(f64::total_cmp);
    if ratios.is_empty() {
        return (haproxy.value > 0.0).then(|| (lbd.value / haproxy.value, None));
    }
    Some((
        ratios[ratios.len() / 2],
        Some((ratios[0], ratios[ratios.len() - 1])),
    ))
}

/// Each lbd run's value over the HAProxy run's next to it, in run order;
/// empty unless both rows have the same several runs.
pub(crate) fn pair_ratios(lbd: &Row, haproxy: &Row) -> Vec<f64> {
    let paired = lbd.runs.len() == haproxy.runs.len()
        && lbd.runs.len() > 1
        && haproxy.runs.iter().all(|&h| h > 0.0);
    if !paired {
        return Vec::new();
    }
    lbd.runs
        .iter()
        .zip(&haproxy.runs)
        .map(|(l, h)| l / h)
        .collect()
}

fn ratio_cell(lbd: &Row, haproxy: &Row) -> String {
    match paired_ratio(lbd, haproxy) {
        Some((ratio, Some((low, high)))) => format!("{ratio:.2}x ({low:.2}-{high:.2})"),
        Some((ratio, None)) => format!("{ratio:.2}x"),
        None => "n/a".into(),
    }
}

/// Replaces the L7 section of bench/RESULTS.md, or appends it.
fn write_section(section: &str) -> anyhow::Result<()> {
    replace_section(SECTION_START, SECTION_END, section, "bench-l7")
}

/// Replaces the part of bench/RESULTS.md between the markers `start` and
/// `end` with `section`, or appends it with its markers.
pub(crate) fn replace_section(
    start: &str,
    end: &str,
    section: &str,
    who: &str,
) -> anyhow::Result<()> {
    let path = crate::workspace_root().join("bench/RESULTS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let block = format!("{start}\n{section}{end}\n");
    let text = match (current.find(start), current.find(end)) {
        (Some(from), Some(to)) if to > from => format!(
            "{}{block}{}",
            &current[..from],
            &current[to + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n{block}", current.trim_end()),
    };
    std::fs::create_dir_all(path.parent().context("bench dir")?)?;
    std::fs::write(&path, text)?;
    println!("{who}: written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64, runs: &[f64]) -> Row {
        Row {
            what: "wrk keep-alive",
            path: String::new(),
            value,
            unit: "req/s",
            runs: runs.to_vec(),
        }
    }

    /// Each lbd run is set against the HAProxy run next to it: a drift that
    /// moved both alike leaves the ratios alone.
    #[test]
    fn ratios_pair_the_runs() {
        let lbd = row(20.0, &[10.0, 20.0, 40.0]);
        let haproxy = row(20.0, &[10.0, 10.0, 40.0]);
        assert_eq!(paired_ratio(&lbd, &haproxy), Some((1.0, Some((1.0, 2.0)))));
        // Unpaired (one measurement, or runs that differ in number): the
        // plain ratio of the values.
        assert_eq!(
            paired_ratio(&row(3.0, &[]), &row(2.0, &[])),
            Some((1.5, None))
        );
        assert_eq!(
            paired_ratio(&row(3.0, &[3.0, 3.0]), &row(2.0, &[2.0])),
            Some((1.5, None))
        );
        assert_eq!(paired_ratio(&row(3.0, &[]), &row(0.0, &[])), None);
        assert_eq!(ratio_cell(&lbd, &haproxy), "1.00x (1.00-2.00)");
    }

    #[test]
    fn wrk_output_parses_with_failures() {
        let out = "Running 5s test @ http://198.18.0.110:80/\n  2 threads and 32 connections\n  Latency Distribution\n     50%  410.00us\n     75%  600.00us\n     90%    1.20ms\n     99%    3.50ms\n  120000 requests in 5.00s, 20.00MB read\n  Socket errors: connect 0, read 3, write 1, timeout 0\n  Non-2xx or 3xx responses: 5\nRequests/sec:  24000.50\nTransfer/sec:      4.00MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.rate, 24000.5);
        assert_eq!(r.requests, 120000.0);
        assert!((r.p50_ms - 0.41).abs() < 1e-9);
        assert!((r.p75_ms - 0.6).abs() < 1e-9);
        assert_eq!(r.p90_ms, 1.2);
        assert_eq!(r.p99_ms, 3.5);
        assert_eq!(r.failed, 9.0);
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn strace_summary_parses() {
        let out = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 40.00    0.400000           4    100000           writev\n\
 30.00    0.300000           2    150000     50000 recvfrom\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    1.000000           3    250000     50000 total\n";
        let (total, by_name) = parse_strace_summary(out).unwrap();
        assert_eq!(total, 250000);
        assert_eq!(by_name[0], ("recvfrom".to_string(), 150000));
        assert_eq!(by_name[1], ("writev".to_string(), 100000));
        assert!(parse_strace_summary("nothing").is_err());
    }
}
