//! The proxy's namespace lab: a bridge, a client (198.18.0.2), the proxy's
//! node (198.18.0.1, VIP 198.18.0.100) and backends b1..bN (198.18.0.11+)
//! serving HTTP on port 8080. The proxy runtime runs in this test process:
//! it is started from a thread inside the proxy's namespace, so its worker
//! threads (and every socket they open) live there.
pub mod backend;
pub mod client;

use backend::TestBackend;
use lb_tests::netns::Netns;
use lbd::proxy::{
    config::parse_str, runtime::ProxyRuntime, snapshot::StateRegistry, status::ProxyStatus,
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::Arc,
};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PROXY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const BACKEND_PORT: u16 = 8080;

pub fn backend_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + index as u8)
}

pub fn vip(port: u16) -> SocketAddr {
    SocketAddr::from((VIP, port))
}

pub struct Backend {
    pub server: Option<TestBackend>,
    /// Kept for the backend's lifetime (dropped after its server).
    ns: Netns,
}

impl Backend {
    pub fn requests(&self) -> u64 {
        self.server.as_ref().map_or(0, TestBackend::requests)
    }
    /// A real nginx in the backend's namespace on port 80, named like the
    /// backend (`X-Backend`), logging what reached it.
    pub fn nginx(&self, index: usize) -> anyhow::Result<lb_tests::nginx::Nginx> {
        lb_tests::nginx::Nginx::start(
            &self.ns,
            &format!("b{}", index + 1),
            &[SocketAddr::from((backend_addr(index), 80))],
        )
    }

    /// The backend's namespace (its own servers, addresses).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// A command that runs in the backend's namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        self.ns.command(program, args)
    }

    pub fn set_delay_ms(&self, ms: u64) {
        if let Some(server) = &self.server {
            server
                .stats
                .delay_ms
                .store(ms, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pub struct ProxyLab {
    // Drop order: the proxy, the servers, then the namespaces.
    pub proxy: Option<ProxyRuntime>,
    pub registry: StateRegistry,
    pub backends: Vec<Backend>,
    pub client: Netns,
    pub lb: Netns,
    pub switch: Netns,
}

impl ProxyLab {
    pub fn build(backends: usize) -> anyhow::Result<ProxyLab> {
        let switch = Netns::create("psw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let client = Netns::create("pcl")?;
        let lb = Netns::create("plb")?;
        let mut lab = ProxyLab {
            proxy: None,
            registry: StateRegistry::new(),
            backends: Vec::new(),
            client,
            lb,
            switch,
        };
        lab.plug(&lab.client, "p-cl", CLIENT)?;
        lab.plug(&lab.lb, "p-lb", PROXY)?;
        lab.lb
            .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
        for index in 0..backends {
            let name = format!("b{}", index + 1);
            let ns = Netns::create(&format!("p{name}"))?;
            lab.plug(&ns, &format!("p-{name}"), backend_addr(index))?;
            let server = TestBackend::start(
                &ns,
                &name,
                SocketAddr::from((backend_addr(index), BACKEND_PORT)),
            )?;
            lab.backends.push(Backend {
                server: Some(server),
                ns,
            });
        }
        Ok(lab)
    }

    fn plug(&self, ns: &Netns, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        self.switch.plug_into_bridge(ns, port)?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// `[[backend.server]]` lines for backends `indexes`.
    pub fn servers(&self, indexes: &[usize], extra: &str) -> String {
        indexes
            .iter()
            .map(|&i| {
                format!(
                    "[[backend.server]]\nname = \"b{}\"\naddress = \"{}:{BACKEND_PORT}\"\n{extra}\n",
                    i + 1,
                    backend_addr(i)
                )
            })
            .collect()
    }

    fn snapshot(&self, text: &str) -> anyhow::Result<Arc<lbd::proxy::snapshot::Snapshot>> {
        let config = parse_str(text, Path::new("proxy.toml"))
            .map_err(|errors| anyhow::anyhow!("config errors: {}", errors.join("; ")))?;
        Ok(Arc::new(self.registry.build(Arc::new(config))))
    }

    /// The most common test set-up's configuration: `defaults`, then a
    /// frontend `web` on VIP:80 (`default_backend = "app"` and
    /// `frontend_extra` lines) and a backend `app` (`backend_extra` lines)
    /// with the backends `servers`.
    pub fn web_to_app(
        &self,
        defaults: &str,
        frontend_extra: &str,
        backend_extra: &str,
        servers: &[usize],
    ) -> String {
        format!(
            "{defaults}{}{}",
            frontend(
                "web",
                80,
                &format!("default_backend = \"app\"\n{frontend_extra}")
            ),
            backend("app", backend_extra, &self.servers(servers, "")),
        )
    }

    /// Starts the proxy with `text` (lb.toml's proxy sections).
    pub fn start(&mut self, text: &str) -> anyhow::Result<()> {
        let snapshot = self.snapshot(text)?;
        let proxy = self.lb.run_in(|| ProxyRuntime::start(snapshot))??;
        self.proxy = Some(proxy);
        Ok(())
    }

    /// Applies a new configuration to the running proxy (a reload).
    pub fn reload(&mut self, text: &str) -> anyhow::Result<()> {
        let snapshot = self.snapshot(text)?;
        let proxy = self
            .proxy
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("proxy not started"))?;
        self.lb.run_in(|| proxy.apply(snapshot))??;
        Ok(())
    }

    pub fn status(&self) -> ProxyStatus {
        self.proxy
            .as_ref()
            .map(ProxyRuntime::status)
            .unwrap_or_default()
    }

    /// Runs `f` on a thread in the client's namespace.
    pub fn on_client<F, R>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce() -> anyhow::Result<R> + Send,
        R: Send,
    {
        self.client.run_in(f)?
    }
}

impl Drop for ProxyLab {
    fn drop(&mut self) {
        drop(self.proxy.take());
        for backend in &mut self.backends {
            backend.server = None;
        }
    }
}

/// Defaults every test starts from (the seed's, with short timeouts).
pub const DEFAULTS: &str = r#"
[global]
maxconn = 20000

[defaults]
mode = "http"
retries = 3
redispatch = true
maxconn = 20000
timeout = { http_request = "5s", queue = "5s", connect = "2s", client = "30s", server = "10s", http_keep_alive = "30s" }
"#;

/// A `[[frontend]]` on VIP:`port` with `extra` lines.
pub fn frontend(name: &str, port: u16, extra: &str) -> String {
    format!(
        "\n[[frontend]]\nname = \"{name}\"\nbind = [\"{}\"]\n{extra}\n",
        vip(port)
    )
}

/// A `[[backend]]` with `extra` lines and `servers`.
pub fn backend(name: &str, extra: &str, servers: &str) -> String {
    format!("\n[[backend]]\nname = \"{name}\"\n{extra}\n{servers}")
}
