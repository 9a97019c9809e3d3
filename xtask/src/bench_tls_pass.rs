//! The TLS passthrough rows of `cargo xtask bench-l7` (issue 13): lbd's tcp
//! frontend peeking at the ClientHello and routing by `req.ssl_sni` vs
//! HAProxy 2.6 `mode tcp` with `tcp-request inspect-delay` and the same
//! rules, over the bench lab's three backends, each running an nginx TLS
//! server (one worker) on port 8443. wrk speaks https to `a.example` (the
//! client namespace resolves it to the VIP through `/etc/netns/NS/hosts`,
//! removed afterwards): keep-alive req/s and p99, and `Connection: close`
//! conn/s (a full TLS handshake with nginx per connection). lbd and
//! HAProxy run side by side (HAProxy on a port of its own), their runs
//! alternating in pairs as in bench-l7's own rows; a ratio is the median
//! of the pairs' ratios. Called by `bench_l7::run` after its own rows,
//! with that part's lbd stopped.
use crate::bench_l7::{measure_urls, pair_ratios, wait_listening, Measured, Row, Target, VIP_L7};
use anyhow::{bail, Context};
use lb_tests::{
    process::ChildGuard,
    topology::{backend_addr, DsrLab, TempDir},
};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

const TLS_PORT: u16 = 443;
/// HAProxy's passthrough frontend, beside lbd's.
const HAPROXY_TLS_PORT: u16 = 4443;
const LBD_NAME: &str = "lbd tcp TLS passthrough (req.ssl_sni)";
const BACKEND_TLS_PORT: u16 = 8443;
const RUNS: usize = 3;
const NAMES: [&str; 2] = ["a.example", "b.example"];

/// `/etc/netns/NS/hosts`, which `ip netns exec` mounts over /etc/hosts.
struct NetnsHosts(PathBuf);

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn measure(
    lbd: &Path,
    lab: &mut DsrLab,
    workers: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    println!("bench-l7: TLS passthrough");
    let scratch = TempDir::create(&format!("{}-tls-pass", lab.instance))?;
    certificates(&scratch.path)?;
    let hosts_dir = PathBuf::from("/etc/netns").join(lab.client.name());
    std::fs::create_dir_all(&hosts_dir)?;
    let _hosts = NetnsHosts(hosts_dir.clone());
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for name in NAMES {
        hosts.push_str(&format!("{VIP_L7} {name}\n"));
    }
    std::fs::write(hosts_dir.join("hosts"), hosts)?;
    let mut nginx = Vec::new();
    for index in 0..3 {
        nginx.push(start_nginx(lab, index, &scratch.path)?);
    }

    lab.write_config(&lbd_config(lab))?;
    lab.start_lbd(lbd)?;
    wait_listening(lab, VIP_L7, TLS_PORT).context("lbd's passthrough frontend")?;
    // HAProxy runs beside lbd on a port of its own, and their runs
    // alternate: the machine's drift over the minutes falls on both alike.
    let haproxy = start_haproxy(lab, &scratch.path, workers)?;
    wait_listening(lab, VIP_L7, HAPROXY_TLS_PORT).with_context(|| {
        format!(
            "HAProxy's passthrough frontend: {}",
            std::fs::read_to_string(scratch.path.join("haproxy.log")).unwrap_or_default()
        )
    })?;
    let haproxy_name =
        format!("HAProxy 2.6 mode tcp TLS passthrough (req.ssl_sni), nbthread {workers}");
    let targets = [
        Target {
            path: LBD_NAME,
            url: url(TLS_PORT),
            pid: lab.lbd_pid(),
        },
        Target {
            path: &haproxy_name,
            url: url(HAPROXY_TLS_PORT),
            pid: Some(haproxy.pid()),
        },
    ];
    measure_urls(lab, RUNS, rows, &targets, MEASURED_HTTPS)?;
    drop(haproxy);
    crate::bench_lab::stop_lbd(lab, lbd)?;
    ratios(rows);
    Ok(())
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// One ECDSA P-256 certificate for both names (wrk does not verify).
fn certificates(dir: &Path) -> anyhow::Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "site.key",
            "-out",
            "site.pem",
            "-days",
            "2",
            "-subj",
            "/CN=a.example",
            "-addext",
            &format!("subjectAltName=DNS:{},DNS:{}", NAMES[0], NAMES[1]),
        ],
    )
}

fn start_nginx(lab: &DsrLab, index: usize, certs: &Path) -> anyhow::Result<(ChildGuard, TempDir)> {
    let dir = TempDir::create(&format!("{}-tls-nginx{index}", lab.instance))?;
    let d = dir.path.display();
    let c = certs.display();
    let text = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         access_log off;\n keepalive_requests 1000000;\n\
         server {{\n listen {}:{BACKEND_TLS_PORT} ssl backlog=4096;\n\
         ssl_certificate {c}/site.pem;\n ssl_certificate_key {c}/site.key;\n\
         location / {{ return 200 \"b{}\\n\"; }}\n }}\n}}\n",
        backend_addr(index),
        index + 1
    );
    let conf = dir.path.join("nginx.conf");
    std::fs::write(&conf, text)?;
    let mut command = lab.backends[index].ns.command(
        "nginx",
        &["-c", &conf.display().to_string(), "-p", &d.to_string()],
    );
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let guard = ChildGuard::spawn(command, "nginx (TLS)")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dir.path.join("nginx.pid").exists() {
        if std::time::Instant::now() > deadline {
            bail!("nginx TLS b{} did not start", index + 1);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok((guard, dir))
}

fn servers(line: impl Fn(usize) -> String) -> String {
    (0..3).map(line).collect()
}

fn lbd_config(lab: &DsrLab) -> String {
    let servers = servers(|i| {
        format!(
            "[[backend.server]]\nname = \"b{}\"\naddress = \"{}:{BACKEND_TLS_PORT}\"\n",
            i + 1,
            backend_addr(i)
        )
    });
    format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\n\n\
         [global]\nmaxconn = 8000\n\n\
         [defaults]\ntimeout = {{ connect = \"5s\", client = \"60s\", server = \"60s\" }}\n\n\
         [[frontend]]\nname = \"tlspass\"\nmode = \"tcp\"\nbind = [\"{VIP_L7}:{TLS_PORT}\"]\n\
         tcp_request = [\"inspect-delay 5s\", \"content accept if {{ req_ssl_hello_type 1 }}\"]\n\
         use_backend = [\"a if {{ req.ssl_sni -i a.example }}\", \"b if {{ req.ssl_sni -i b.example }}\"]\n\
         default_backend = \"b\"\n\n\
         [[backend]]\nname = \"a\"\nmode = \"tcp\"\nbalance = \"roundrobin\"\n{servers}\n\
         [[backend]]\nname = \"b\"\nmode = \"tcp\"\nbalance = \"roundrobin\"\n{servers}",
        lab.instance
    )
}

fn start_haproxy(lab: &DsrLab, dir: &Path, threads: usize) -> anyhow::Result<ChildGuard> {
    let servers = servers(|i| {
        format!(
            "  server b{} {}:{BACKEND_TLS_PORT}\n",
            i + 1,
            backend_addr(i)
        )
    });
    crate::bench_tls::run_haproxy(
        lab,
        dir,
        &format!(
            "global\n  maxconn 8000\n  nbthread {threads}\n\
             defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend tlspass\n  mode tcp\n  bind {VIP_L7}:{HAPROXY_TLS_PORT}\n\
             \x20 tcp-request inspect-delay 5s\n  tcp-request content accept if {{ req_ssl_hello_type 1 }}\n\
             \x20 use_backend a if {{ req.ssl_sni -i a.example }}\n  use_backend b if {{ req.ssl_sni -i b.example }}\n\
             \x20 default_backend b\n\
             backend a\n  mode tcp\n  balance roundrobin\n{servers}\
             backend b\n  mode tcp\n  balance roundrobin\n{servers}"
        ),
    )
}

/// wrk's https URL through `port` of the VIP: a.example (its SNI).
fn url(port: u16) -> String {
    format!("https://{}:{port}/", NAMES[0])
}

const MEASURED_HTTPS: Measured = [
    "wrk https keep-alive",
    "wrk https keep-alive latency p50",
    "wrk https keep-alive latency p99",
    "wrk https Connection: close",
    "proxy CPU per https keep-alive request",
    "proxy CPU per https Connection: close request",
    "failed https requests, all runs",
];

/// lbd / HAProxy for each passthrough measurement: the median of the
/// pairs' ratios (each lbd run against the HAProxy run next to it), their
/// range beside it.
fn ratios(rows: &mut Vec<Row>) {
    let row = |what: &str, start: &str| {
        rows.iter()
            .find(|r| r.what == what && r.path.starts_with(start))
    };
    let mut out = Vec::new();
    for what in [
        "wrk https keep-alive",
        "wrk https Connection: close",
        "wrk https keep-alive latency p99",
    ] {
        let (Some(lbd), Some(haproxy)) = (row(what, LBD_NAME), row(what, "HAProxy")) else {
            continue;
        };
        let runs = pair_ratios(lbd, haproxy);
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        if let Some(&median) = sorted.get(sorted.len() / 2) {
            out.push(Row {
                what,
                path: "TLS passthrough: lbd / HAProxy".into(),
                value: median,
                unit: "x",
                runs,
            });
        }
    }
    rows.extend(out);
}
