//! TLS rows of `cargo xtask bench-l7` (issue 13): lbd's TLS termination
//! against HAProxy 2.6 (OpenSSL) over the same nginx backends, one run on
//! the same cores, each [`RUNS`] times (median and range):
//!
//! - TLS handshakes/s: wrk `Connection: close` over https, an ECDSA P-256
//!   and an RSA-2048 certificate (wrk resumes no session: every
//!   connection is a full handshake);
//! - keep-alive req/s over TLS (ECDSA), with p50/p99;
//! - HTTP/2 req/s over TLS (ALPN h2) with h2load, when installed.
//!
//! lbd uses rustls with the aws-lc-rs provider, which measured faster than
//! ring here (bench/RESULTS.md, "TLS provider": `LBD_BENCH_TLS_LBD` with a
//! `--no-default-features` build gives the ring figures).
//! The rows replace the TLS section of bench/RESULTS.md. Not a test.
use crate::bench_l7::{
    cpu_per_request, cpu_ticks, proxy_workers, start_profile, syscalls_during,
    syscalls_per_request, wait_listening, wrk,
};
use anyhow::{bail, Context};
use lb_tests::{
    process::ChildGuard,
    topology::{backend_addr, DsrLab, TempDir},
};
use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 112);
/// ECDSA P-256 certificate.
const EC_PORT: u16 = 443;
/// RSA-2048 certificate.
const RSA_PORT: u16 = 444;
const BACKEND_PORT: u16 = 8081;
const SECONDS: &str = "5";
const RUNS: usize = 3;
const SECTION_START: &str = "<!-- bench-tls start -->";
const SECTION_END: &str = "<!-- bench-tls end -->";

struct Row {
    what: &'static str,
    path: String,
    value: f64,
    unit: &'static str,
    range: (f64, f64),
}

pub fn run(lbd: &Path) -> anyhow::Result<()> {
    println!("bench-tls: building the lab");
    let mut lab = crate::bench_lab::lab_with_vips(&[VIP])?;
    let backends = crate::bench_lab::nginx_per_backend(&lab, |i| {
        vec![SocketAddr::from((backend_addr(i), BACKEND_PORT))]
    })?;
    let certs = TempDir::create(&format!("{}-tls-certs", lab.instance))?;
    let (ec, rsa) = make_certificates(&certs.path)?;
    let h2load = Command::new("h2load").arg("--version").output().is_ok();

    let mut rows = Vec::new();
    lab.write_config(&lbd_config(&lab, &ec, &rsa))?;
    lab.start_lbd(lbd)?;
    wait_listening(&lab, VIP, EC_PORT).context("lbd's TLS frontend")?;
    wait_listening(&lab, VIP, RSA_PORT).context("lbd's RSA TLS frontend")?;
    let lbd_pid = lab.lbd_pid().context("lbd pid")?;
    let workers = proxy_workers(lbd_pid)?;
    measure(&lab, &mut rows, "lbd (rustls, aws-lc-rs)", h2load, lbd_pid)?;
    crate::bench_lab::stop_lbd(&mut lab, lbd)?;
    // Comparing lbd builds against each other (e.g. server settings): no
    // HAProxy run, and bench/RESULTS.md is left as it is.
    let lbd_only = std::env::var_os("LBD_BENCH_TLS_LBD_ONLY").is_some();
    if !lbd_only {
        let scratch = TempDir::create(&format!("{}-haproxy-tls", lab.instance))?;
        let haproxy = start_haproxy(&lab, &scratch.path, workers, &ec, &rsa)?;
        wait_listening(&lab, VIP, EC_PORT).with_context(|| {
            std::fs::read_to_string(scratch.path.join("haproxy.log")).unwrap_or_default()
        })?;
        let name = format!("HAProxy 2.6 (OpenSSL), nbthread {workers}");
        measure(&lab, &mut rows, &name, h2load, haproxy.pid())?;
    }
    drop(backends);
    drop(lab);
    let section = render(&rows, workers, h2load);
    print!("{section}");
    if lbd_only {
        return Ok(());
    }
    write_section(&section)
}

/// An ECDSA P-256 and an RSA-2048 bundle (certificate then key), made
/// with the openssl CLI as an operator would.
fn make_certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ec.key",
    ])?;
    openssl(&["genrsa", "-out", "rsa.key", "2048"])?;
    let mut bundles = Vec::new();
    for name in ["ec", "rsa"] {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            &key,
            "-out",
            &crt,
            "-days",
            "30",
            "-subj",
            "/CN=bench.example",
            "-addext",
            "subjectAltName=DNS:bench.example",
        ])?;
        let mut bundle = std::fs::read(dir.join(&crt))?;
        bundle.extend(std::fs::read(dir.join(&key))?);
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, bundle)?;
        bundles.push(path);
    }
    Ok((bundles[0].clone(), bundles[1].clone()))
}

fn servers_toml() -> String {
    (0..3)
        .map(|i| {
            format!(
                "[[backend.server]]\nname = \"b{}\"\naddress = \"{}:{BACKEND_PORT}\"\n",
                i + 1,
                backend_addr(i)
            )
        })
        .collect()
}

fn lbd_config(lab: &DsrLab, ec: &Path, rsa: &Path) -> String {
    let mut text = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\n\n[global]\nmaxconn = 8000\n\n\
         [defaults]\nmode = \"http\"\ntimeout = {{ connect = \"5s\", client = \"60s\", server = \"60s\" }}\n",
        lab.instance
    );
    for (name, port, crt) in [("tls_ec", EC_PORT, ec), ("tls_rsa", RSA_PORT, rsa)] {
        let _ = write!(
            text,
            "\n[[frontend]]\nname = \"{name}\"\nbind = [\"{VIP}:{port} ssl crt {} alpn h2,http/1.1\"]\ndefault_backend = \"web\"\n",
            crt.display()
        );
    }
    let _ = write!(
        text,
        "\n[[backend]]\nname = \"web\"\nbalance = \"roundrobin\"\n{}",
        servers_toml()
    );
    text
}

fn start_haproxy(
    lab: &DsrLab,
    dir: &Path,
    threads: usize,
    ec: &Path,
    rsa: &Path,
) -> anyhow::Result<ChildGuard> {
    let servers: String = (0..3)
        .map(|i| format!("  server b{} {}:{BACKEND_PORT}\n", i + 1, backend_addr(i)))
        .collect();
    run_haproxy(
        lab,
        dir,
        &format!(
            "global\n  maxconn 8000\n  nbthread {threads}\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend tls_ec\n  bind {VIP}:{EC_PORT} ssl crt {} alpn h2,http/1.1\n  default_backend web\n\
             frontend tls_rsa\n  bind {VIP}:{RSA_PORT} ssl crt {} alpn h2,http/1.1\n  default_backend web\n\
             backend web\n  balance roundrobin\n{servers}",
            ec.display(),
            rsa.display()
        ),
    )
}

/// Writes `config` as `dir/haproxy.cfg` and runs HAProxy 2.6 in the load
/// balancer's namespace, its output in `dir/haproxy.log`.
pub(crate) fn run_haproxy(lab: &DsrLab, dir: &Path, config: &str) -> anyhow::Result<ChildGuard> {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, config)?;
    let mut command = lab
        .lb()
        .command("haproxy", &["-db", "-f", &conf.display().to_string()]);
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?);
    ChildGuard::spawn(command, "haproxy")
}

/// What one h2load run reports.
#[derive(Debug, PartialEq)]
struct H2load {
    rate: f64,
    /// Requests that completed (HAProxy counts a failed one too: both
    /// proxies did its work).
    done: f64,
    failed: f64,
}

/// h2load from the client namespace for `seconds`: 32 connections with
/// 10 streams in flight on each.
fn run_h2load(lab: &DsrLab, seconds: &str, url: &str) -> anyhow::Result<H2load> {
    let out = lab.client.exec(
        "h2load",
        &["-D", seconds, "-c", "32", "-m", "10", "-t", "2", url],
    )?;
    parse_h2load(&out)
}

/// h2load's "finished in 5.00s, 12345.67 req/s, ..." and its done and
/// failed counts.
fn parse_h2load(out: &str) -> anyhow::Result<H2load> {
    let rate = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.strip_suffix(" req/s"))
        .and_then(|r| r.trim().parse().ok())
        .with_context(|| format!("no req/s in h2load's output:\n{out}"))?;
    // "requests: 1000 total, 1000 started, 1000 done, 990 succeeded, 10 failed, ..."
    let count = |what: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("requests: "))
            .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(what)))
            .and_then(|n| n.trim().parse().ok())
    };
    Ok(H2load {
        rate,
        done: count(" done").unwrap_or(0.0),
        failed: count(" failed").unwrap_or(0.0),
    })
}

/// The rows of one proxy (`pid`: its process, whose CPU time is read
/// around each run: a per-request cost that the machine's other load
/// disturbs less than the rates).
fn measure(
    lab: &DsrLab,
    rows: &mut Vec<Row>,
    path: &str,
    h2load: bool,
    pid: u32,
) -> anyhow::Result<()> {
    println!("bench-tls: {path}");
    let ec = format!("https://{VIP}:{EC_PORT}/");
    let rsa = format!("https://{VIP}:{RSA_PORT}/");
    let duration = format!("{SECONDS}s");
    let mut samples: Vec<(&'static str, &'static str, Vec<f64>)> = vec![
        (
            "TLS handshakes, ECDSA P-256 (wrk Connection: close)",
            "conn/s",
            Vec::new(),
        ),
        (
            "TLS handshakes, RSA-2048 (wrk Connection: close)",
            "conn/s",
            Vec::new(),
        ),
        ("keep-alive over TLS (wrk)", "req/s", Vec::new()),
        ("keep-alive over TLS latency p50", "ms", Vec::new()),
        ("keep-alive over TLS latency p99", "ms", Vec::new()),
        ("proxy CPU per ECDSA handshake", "us", Vec::new()),
        ("proxy CPU per RSA handshake", "us", Vec::new()),
        (
            "proxy CPU per keep-alive request over TLS",
            "us",
            Vec::new(),
        ),
        (
            "failed requests, all runs (socket errors, non-2xx, h2 failed)",
            "requests",
            Vec::new(),
        ),
    ];
    const FAILED: usize = 8;
    if h2load {
        samples.push(("HTTP/2 over TLS (h2load -c32 -m10)", "req/s", Vec::new()));
        samples.push(("proxy CPU per HTTP/2 request", "us", Vec::new()));
    }
    let mut failed = 0.0;
    for run in 0..RUNS {
        let wrk_cpu = |args: &[&str]| {
            let before = cpu_ticks(pid)?;
            let result = wrk(lab, args)?;
            let cpu = cpu_per_request(Some(pid), Some(before), result.requests)?;
            anyhow::Ok((result, cpu))
        };
        let close = |url: &str| {
            wrk_cpu(&[
                "-t2",
                "-c32",
                "-d",
                &duration,
                "-H",
                "Connection: close",
                url,
            ])
        };
        let (ec_close, ec_cpu) = close(&ec)?;
        let (rsa_close, rsa_cpu) = close(&rsa)?;
        let (keep, keep_cpu) = wrk_cpu(&["-t2", "-c32", "-d", &duration, "--latency", &ec])?;
        failed += ec_close.failed + rsa_close.failed + keep.failed;
        let values = [
            ec_close.rate,
            rsa_close.rate,
            keep.rate,
            keep.p50_ms,
            keep.p99_ms,
            ec_cpu,
            rsa_cpu,
            keep_cpu,
        ];
        for (sample, value) in samples.iter_mut().zip(values) {
            sample.2.push(value);
        }
        if h2load {
            // LBD_BENCH_TLS_PERF=DIR: a CPU profile of the first h2 run
            // (perf record -g, DIR/<proxy>-h2.data).
            let profile = match std::env::var_os("LBD_BENCH_TLS_PERF") {
                Some(dir) if run == 0 => Some(start_profile(pid, &dir, &format!("{path}-h2"))?),
                _ => None,
            };
            let before = cpu_ticks(pid)?;
            let h2 = run_h2load(lab, SECONDS, &ec)?;
            let cpu = cpu_per_request(Some(pid), Some(before), h2.done)?;
            drop(profile);
            failed += h2.failed;
            samples[FAILED + 1].2.push(h2.rate);
            samples[FAILED + 2].2.push(cpu);
        }
    }
    samples[FAILED].2.push(failed);
    for (what, unit, mut values) in samples {
        values.retain(|v| !v.is_nan());
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        rows.push(Row {
            what,
            path: path.into(),
            value: values[values.len() / 2],
            unit,
            range: (values[0], values[values.len() - 1]),
        });
    }
    // Records and system calls: one strace'd keep-alive run (its rate is
    // not a figure; the calls per request are).
    let (calls, top) = syscalls_per_request(lab, pid, &ec, &[])?;
    println!("bench-tls: {path}: {calls:.2} system calls per keep-alive TLS request ({top})");
    rows.push(Row {
        what: "proxy system calls per keep-alive request over TLS (strace -c -f)",
        path: path.into(),
        value: calls,
        unit: "calls",
        range: (calls, calls),
    });
    if h2load {
        // The same for HTTP/2 (3 s of h2load): what the multiplexed side
        // writes per request shows how each proxy batches its streams.
        let (calls, top) = syscalls_during(lab, pid, || Ok(run_h2load(lab, "3", &ec)?.done))?;
        println!("bench-tls: {path}: {calls:.2} system calls per HTTP/2 request ({top})");
        rows.push(Row {
            what: "proxy system calls per HTTP/2 request (strace -c -f)",
            path: path.into(),
            value: calls,
            unit: "calls",
            range: (calls, calls),
        });
    }
    Ok(())
}

fn render(rows: &[Row], workers: usize, h2load: bool) -> String {
    let date = crate::bench_lab::utc_date();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("unknown");
    let mut out = format!(
        "## TLS termination: lbd vs HAProxy 2.6 ({date}, 1-minute load average {load} at the end)\n\n\
         `cargo xtask bench-tls` (also run at the end of `bench-l7`; release build), namespaces on this machine: \
         wrk -t2 -c32 for {SECONDS} s and h2load -c32 -m10 -t2 for {SECONDS} s (32 connections, \
         10 streams in flight on each) from the client namespace, 3 nginx backends (HTTP/1.1 \
         keep-alive from both proxies), {workers} proxy worker threads for lbd and `nbthread \
         {workers}` for HAProxy, each proxy's own HTTP/2 settings (HAProxy 2.6 defaults: 100 streams, \
         65535-byte initial windows; lbd: see docs/ARCHITECTURE.md); median of {RUNS} runs [min - max]. \
         Proxy CPU: the proxy process's user + system time over a run (/proc/PID/stat) per \
         request completed; system calls: `strace -c -f` on the proxy over one more 3 s \
         keep-alive run (and one 3 s h2load run when HTTP/2 is measured). lbd: rustls 0.23 with the aws-lc-rs provider.{}\n\n\
         | measure | proxy | value | unit |\n|---|---|---|---|\n",
        if h2load {
            ""
        } else {
            " h2load is not installed: no HTTP/2 row."
        }
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} [{:.1} - {:.1}] | {} |",
            row.what, row.path, row.value, row.range.0, row.range.1, row.unit
        );
    }
    out.push('\n');
    out
}

fn write_section(section: &str) -> anyhow::Result<()> {
    crate::bench_l7::replace_section(SECTION_START, SECTION_END, section, "bench-tls")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_output_parses() {
        let out = "finished in 5.00s, 21345.60 req/s, 3.10MB/s\nrequests: 106728 total, 106728 started, 106728 done, 106700 succeeded, 28 failed, 0 errored, 0 timeout\n";
        assert_eq!(
            parse_h2load(out).unwrap(),
            H2load {
                rate: 21345.6,
                done: 106728.0,
                failed: 28.0
            }
        );
        assert!(parse_h2load("nothing").is_err());
    }
}
