//! Real nginx backends inside a namespace, for the L7 proxy's tests and
//! bench: each with its own configuration in a temporary directory, a page
//! that names the backend that answered, an access log of what reached it
//! (method, URI, X-Forwarded-For, Host, ...), an optional slow endpoint and
//! a health endpoint that can be switched to 503. Stopped by PID on drop.
use crate::netns::{unique_name, Netns};
use crate::process::ChildGuard;
use crate::topology::TempDir;
use anyhow::{bail, Context};
use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

/// Debian's echo module, for `echo_sleep` on the slow endpoint
/// (package libnginx-mod-http-echo, installed by `cargo xtask setup`).
const ECHO_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_echo_module.so";

#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// The backend's name: the body of every page is `NAME\n`, and every
    /// response carries `X-Backend: NAME`.
    pub name: String,
    pub listen: Vec<SocketAddr>,
    pub workers: usize,
    /// Serve `/slow`, answering after this long (`NAME\n`).
    pub slow: Option<Duration>,
    /// Write the access log (tests); off for the bench.
    pub access_log: bool,
}

impl NginxOptions {
    pub fn new(name: &str, listen: &[SocketAddr]) -> Self {
        NginxOptions {
            name: name.to_owned(),
            listen: listen.to_vec(),
            workers: 1,
            slow: None,
            access_log: true,
        }
    }
}

/// One request as the backend's access log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub remote_addr: IpAddr,
    pub method: String,
    /// The request target as received (`$request_uri`, query included).
    pub uri: String,
    pub protocol: String,
    pub status: u16,
    pub host: Option<String>,
    pub x_forwarded_for: Option<String>,
    pub x_forwarded_proto: Option<String>,
    pub x_forwarded_host: Option<String>,
    pub forwarded: Option<String>,
    pub user_agent: Option<String>,
    /// nginx's connection serial number: equal for requests that shared a
    /// connection (keep-alive towards the backend).
    pub connection: u64,
    /// Which request on that connection this was (1 = first).
    pub connection_requests: u64,
}

pub struct Nginx {
    options: NginxOptions,
    dir: TempDir,
    guard: ChildGuard,
}

impl Nginx {
    /// One worker, access log on, no slow endpoint.
    pub fn start(ns: &Netns, name: &str, listen: &[SocketAddr]) -> anyhow::Result<Self> {
        Self::start_with(ns, NginxOptions::new(name, listen))
    }

    pub fn start_with(ns: &Netns, options: NginxOptions) -> anyhow::Result<Self> {
        if options.listen.is_empty() {
            bail!("nginx {}: no listen address", options.name);
        }
        let dir = TempDir::create(&unique_name(&format!("nginx-{}", options.name)))?;
        let conf = dir.path.join("nginx.conf");
        std::fs::write(&conf, config(&options, &dir.path))?;
        let mut command = ns.command(
            "nginx",
            &[
                "-c",
                &conf.display().to_string(),
                "-p",
                &dir.path.display().to_string(),
                "-e",
                &dir.path.join("error.log").display().to_string(),
            ],
        );
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let guard = ChildGuard::spawn(command, &format!("nginx {}", options.name))?;
        let mut nginx = Nginx {
            options,
            dir,
            guard,
        };
        nginx.wait_ready(ns)?;
        Ok(nginx)
    }

    fn wait_ready(&mut self, ns: &Netns) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in self.options.listen.clone() {
            loop {
                if let Some(status) = self.guard.try_wait() {
                    bail!(
                        "nginx {} exited ({status}): {}",
                        self.options.name,
                        self.error_log()
                    );
                }
                let connected = ns
                    .run_in(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)))?
                    .is_ok();
                if connected {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "nginx {} not listening on {addr} after 10 s: {}",
                        self.options.name,
                        self.error_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("error.log")).unwrap_or_default()
    }

    fn access_log_path(&self) -> PathBuf {
        self.dir.path.join("access.log")
    }

    /// `/health` answers 503 while the backend is marked down, 200 otherwise
    /// (for `option httpchk GET /health` and `http-check expect`).
    pub fn set_healthy(&self, healthy: bool) -> anyhow::Result<()> {
        let flag = self.dir.path.join("down");
        if healthy {
            match std::fs::remove_file(&flag) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        } else {
            std::fs::write(&flag, b"down\n").context("marking nginx down")
        }
    }

    /// Every request logged so far, oldest first.
    pub fn access_log(&self) -> anyhow::Result<Vec<AccessEntry>> {
        let path = self.access_log_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        };
        text.lines().map(parse_entry).collect()
    }

    /// Waits until at least `count` requests are logged (nginx writes the
    /// line after the response, so a client can be faster than the log).
    pub fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<AccessEntry>> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.access_log()?;
            if entries.len() >= count {
                return Ok(entries);
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx {}: {} requests logged, wanted {count} within {timeout:?}",
                    self.options.name,
                    entries.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops nginx now (SIGTERM to the master, by PID); true if it exited.
    pub fn stop(&mut self) -> bool {
        self.guard
            .stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5))
    }
}

/// The access-log line: JSON, escaped by nginx itself.
const LOG_FORMAT: &str = r#"{"remote_addr":"$remote_addr","method":"$request_method","uri":"$request_uri","protocol":"$server_protocol","status":"$status","host":"$http_host","xff":"$http_x_forwarded_for","xfp":"$http_x_forwarded_proto","xfh":"$http_x_forwarded_host","forwarded":"$http_forwarded","ua":"$http_user_agent","connection":"$connection","connection_requests":"$connection_requests"}"#;

fn config(o: &NginxOptions, dir: &Path) -> String {
    let d = dir.display();
    let name = &o.name;
    let mut text = String::new();
    if o.slow.is_some() {
        text.push_str(&format!("load_module {ECHO_MODULE};\n"));
    }
    text.push_str(&format!(
        "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n\
         \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 keepalive_requests 1000000;\n  default_type text/plain;\n",
        workers = o.workers.max(1)
    ));
    if o.access_log {
        text.push_str(&format!(
            "  log_format lbt escape=json '{LOG_FORMAT}';\n  access_log {d}/access.log lbt;\n"
        ));
    } else {
        text.push_str("  access_log off;\n");
    }
    text.push_str("  server {\n");
    for addr in &o.listen {
        text.push_str(&format!("    listen {addr} backlog=4096;\n"));
    }
    text.push_str(&format!(
        "    add_header X-Backend {name} always;\n\
         \x20   location / {{ return 200 \"{name}\\n\"; }}\n\
         \x20   location = /health {{ if (-f {d}/down) {{ return 503 \"{name} down\\n\"; }} return 200 \"{name} ok\\n\"; }}\n"
    ));
    if let Some(slow) = o.slow {
        text.push_str(&format!(
            "    location = /slow {{ echo_sleep {:.3}; echo \"{name}\"; }}\n",
            slow.as_secs_f64()
        ));
    }
    text.push_str("  }\n}\n");
    text
}

fn parse_entry(line: &str) -> anyhow::Result<AccessEntry> {
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("nginx access line {line:?}"))?;
    let text = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let optional = |key: &str| Some(text(key)).filter(|s| !s.is_empty());
    let number = |key: &str| -> anyhow::Result<u64> {
        text(key)
            .parse()
            .with_context(|| format!("{key} in {line:?}"))
    };
    Ok(AccessEntry {
        remote_addr: text("remote_addr")
            .parse()
            .with_context(|| format!("remote_addr in {line:?}"))?,
        method: text("method"),
        uri: text("uri"),
        protocol: text("protocol"),
        status: u16::try_from(number("status")?)?,
        host: optional("host"),
        x_forwarded_for: optional("xff"),
        x_forwarded_proto: optional("xfp"),
        x_forwarded_host: optional("xfh"),
        forwarded: optional("forwarded"),
        user_agent: optional("ua"),
        connection: number("connection")?,
        connection_requests: number("connection_requests")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse() {
        let line = r#"{"remote_addr":"198.18.0.100","method":"GET","uri":"/static/a.css?x=1","protocol":"HTTP/1.1","status":"200","host":"www.example","xff":"198.18.0.1","xfp":"","xfh":"","forwarded":"","ua":"curl/7.88.1","connection":"7","connection_requests":"3"}"#;
        let entry = parse_entry(line).unwrap();
        assert_eq!(entry.remote_addr, "198.18.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(
            (entry.method.as_str(), entry.uri.as_str(), entry.status),
            ("GET", "/static/a.css?x=1", 200)
        );
        assert_eq!(entry.host.as_deref(), Some("www.example"));
        assert_eq!(entry.x_forwarded_for.as_deref(), Some("198.18.0.1"));
        assert_eq!(entry.x_forwarded_proto, None);
        assert_eq!((entry.connection, entry.connection_requests), (7, 3));
        assert!(parse_entry("not json").is_err());
    }

    #[test]
    fn config_has_the_pages() {
        let mut options = NginxOptions::new("web1", &["198.18.0.11:80".parse().unwrap()]);
        options.slow = Some(Duration::from_millis(1500));
        let text = config(&options, Path::new("/tmp/x"));
        assert!(text.starts_with(&format!("load_module {ECHO_MODULE};")));
        assert!(text.contains("listen 198.18.0.11:80 backlog=4096;"));
        assert!(text.contains("location / { return 200 \"web1\\n\"; }"));
        assert!(text.contains("echo_sleep 1.500;"));
        assert!(text.contains("if (-f /tmp/x/down)"));
    }
}
