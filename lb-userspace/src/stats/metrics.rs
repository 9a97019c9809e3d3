//! `/metrics`: Prometheus text (prometheus-client). Counters and gauges
//! come from the cached sample (the per-CPU maps are read at most once per
//! refresh period, whatever the number of scrapers); the check-latency
//! histogram and the VRRP transition count are fed live by the daemon.
use crate::{
    cli::status::{BackendStatus, ServiceStatus, StatusReport},
    proxy::status::{BackendStatus as ProxyBackend, FrontendStatus, ProxyStatus, ServerStatus},
    vrrp::{State, VrrpStatus},
};
use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};
use std::{
    fmt,
    net::SocketAddr,
    sync::{atomic::AtomicU64, atomic::Ordering, Arc},
    time::Duration,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub service: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    proxy: String,
    server: String,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// What the daemon feeds as it happens.
pub struct LiveMetrics {
    check_latency: Family<BackendLabels, Histogram, fn() -> Histogram>,
    server_check_latency: Family<ServerLabels, Histogram, fn() -> Histogram>,
    vrrp_transitions: AtomicU64,
}

impl Default for LiveMetrics {
    fn default() -> Self {
        LiveMetrics {
            check_latency: Family::new_with_constructor(latency_histogram),
            server_check_latency: Family::new_with_constructor(latency_histogram),
            vrrp_transitions: AtomicU64::new(0),
        }
    }
}

impl LiveMetrics {
    /// One XDP backend health check finished after `latency`.
    pub fn observe_check(&self, service: &str, backend: SocketAddr, latency: Duration) {
        self.check_latency
            .get_or_create(&BackendLabels {
                service: service.to_owned(),
                backend: backend.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// One proxy server's health check (`check`) finished after
    /// `latency`; fed by the checks on the proxy's runtime.
    pub fn observe_server_check(&self, proxy: &str, server: &str, latency: Duration) {
        self.server_check_latency
            .get_or_create(&ServerLabels {
                proxy: proxy.to_owned(),
                server: server.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    fn register_histograms(&self, r: &mut Registry) {
        r.register(
            "health_check_latency_seconds",
            "Duration of XDP backends' health checks",
            self.check_latency.clone(),
        );
        r.register(
            "server_check_latency_seconds",
            "Duration of proxy servers' health checks (check)",
            self.server_check_latency.clone(),
        );
    }

    /// The check-latency histograms alone, in Prometheus text.
    pub fn histograms_text(&self) -> String {
        let mut registry = Registry::with_prefix("lbd");
        self.register_histograms(&mut registry);
        let mut text = String::new();
        let _ = encode(&mut text, &registry);
        text
    }

    /// The VRRP driver's count of state changes since start.
    pub fn set_vrrp_transitions(&self, count: u64) {
        self.vrrp_transitions.store(count, Ordering::Relaxed);
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One metric family written straight from the report: no registry
/// families (a hash map of owned labels and an atomic per series, built
/// and dropped at every scrape), just the text. Labels borrow the report.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// The report's counters and gauges, encoded at the scrape.
#[derive(Debug)]
struct ReportCollector {
    report: Arc<StatusReport>,
}

/// A service's labels and its backends' `address:port`, formatted once
/// for every family.
struct ServiceNames<'r> {
    service: &'r ServiceStatus,
    name: String,
    vip: String,
    backends: Vec<(&'r BackendStatus, String)>,
}

impl Collector for ReportCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let report = &*self.report;
        let e = &mut e;
        let instance = [("instance", report.instance.as_str())];
        gauges(
            e,
            "up",
            "1 while the daemon of this instance runs",
            [(instance, i64::from(report.running))],
        )?;
        counters(
            e,
            "xdp_packets",
            "Packets by outcome of the XDP program, all CPUs",
            report
                .global
                .iter()
                .map(|(name, value)| ([("outcome", name.as_str())], *value)),
        )?;
        gauges(
            e,
            "conntrack_flows",
            "Entries in the connection table",
            [(instance, as_i64(report.flows))],
        )?;
        let services: Vec<ServiceNames> = report
            .services
            .iter()
            .map(|s| ServiceNames {
                service: s,
                name: s
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("service-{}", s.id)),
                vip: format!("{}/{}", SocketAddr::new(s.vip, s.port), s.protocol),
                backends: s
                    .backends
                    .iter()
                    .map(|b| (b, SocketAddr::new(b.address, b.port).to_string()))
                    .collect(),
            })
            .collect();
        type ServiceValue = fn(&ServiceStatus) -> u64;
        let per_service: [(&str, &str, ServiceValue); 3] = [
            (
                "service_packets",
                "Packets sent to a service's backends",
                |s| s.packets,
            ),
            ("service_bytes", "Bytes sent to a service's backends", |s| {
                s.bytes
            }),
            ("service_new_flows", "New flows of a service", |s| {
                s.new_flows
            }),
        ];
        for (name, help, value) in per_service {
            counters(
                e,
                name,
                help,
                services.iter().map(|s| {
                    (
                        [("service", s.name.as_str()), ("vip", s.vip.as_str())],
                        value(s.service),
                    )
                }),
            )?;
        }
        gauges(
            e,
            "service_maglev_slots",
            "Maglev slots of a service's table (0: no usable backend)",
            services.iter().map(|s| {
                (
                    [("service", s.name.as_str()), ("vip", s.vip.as_str())],
                    i64::from(s.service.table_size),
                )
            }),
        )?;
        let backends = || {
            services.iter().flat_map(|s| {
                s.backends.iter().map(move |(b, address)| {
                    (
                        [("service", s.name.as_str()), ("backend", address.as_str())],
                        *b,
                    )
                })
            })
        };
        type BackendValue = fn(&BackendStatus) -> u64;
        let per_backend: [(&str, &str, BackendValue); 4] = [
            ("backend_packets", "Packets sent to a backend", |b| {
                b.packets
            }),
            ("backend_bytes", "Bytes sent to a backend", |b| b.bytes),
            ("backend_new_flows", "New flows sent to a backend", |b| {
                b.new_flows
            }),
            (
                "backend_downtime_seconds",
                "Seconds a backend was down by its health checks (HAProxy's downtime)",
                |b| b.downtime_seconds.unwrap_or(0.0) as u64,
            ),
        ];
        for (name, help, value) in per_backend {
            counters(e, name, help, backends().map(|(l, b)| (l, value(b))))?;
        }
        type BackendGauge = fn(&BackendStatus) -> i64;
        let backend_gauges: [(&str, &str, BackendGauge); 3] = [
            ("backend_weight", "A backend's effective weight", |b| {
                i64::from(b.weight.unwrap_or(0))
            }),
            ("backend_maglev_slots", "Maglev slots a backend owns", |b| {
                i64::from(b.slots.unwrap_or(0))
            }),
            (
                "backend_health_up",
                "1 when a backend passes its health checks (or is not checked)",
                |b| i64::from(b.health.as_deref() != Some("down")),
            ),
        ];
        for (name, help, value) in backend_gauges {
            gauges(e, name, help, backends().map(|(l, b)| (l, value(b))))?;
        }
        // A backend's data-path state and its administrative state, each a
        // series with value 1.
        let states: Vec<(&str, &str, String)> = services
            .iter()
            .flat_map(|s| s.backends.iter().map(move |(b, address)| (s, b, address)))
            .flat_map(|(s, b, address)| {
                let data_path = b.state.map(|state| format!("{state:?}").to_lowercase());
                let admin = b.admin.map(|a| format!("admin_{a:?}").to_lowercase());
                [data_path, admin]
                    .into_iter()
                    .flatten()
                    .map(move |state| (s.name.as_str(), address.as_str(), state))
            })
            .collect();
        gauges(
            e,
            "backend_state",
            "1 for a backend's data-path state (serving, draining, down) and administrative state (admin_enabled, admin_drain, admin_disabled)",
            states.iter().map(|(service, backend, state)| {
                ([("service", *service), ("backend", *backend), ("state", state.as_str())], 1)
            }),
        )?;
        if let Some(proxy) = &report.proxy {
            proxy_metrics(e, &instance, proxy)?;
        }
        vrrp_metrics(e, &report.vrrp)
    }
}

fn proxy_metrics(
    e: &mut DescriptorEncoder,
    instance: &[(&str, &str); 1],
    proxy: &ProxyStatus,
) -> fmt::Result {
    gauges(
        e,
        "proxy_connections",
        "Client connections open on every frontend",
        [(*instance, as_i64(proxy.connections))],
    )?;
    type Value<T> = fn(&T) -> u64;
    let per_frontend: [(&str, &str, Value<FrontendStatus>); 5] = [
        (
            "frontend_sessions",
            "Sessions (connections) a frontend accepted",
            |f| f.counters.sessions_total,
        ),
        ("frontend_bytes_in", "Bytes from clients", |f| {
            f.counters.bytes_in
        }),
        ("frontend_bytes_out", "Bytes to clients", |f| {
            f.counters.bytes_out
        }),
        (
            "frontend_requests_denied",
            "Requests denied by rules",
            |f| f.counters.denied_requests,
        ),
        ("frontend_request_errors", "Invalid requests", |f| {
            f.counters.request_errors
        }),
    ];
    for (name, help, value) in per_frontend {
        counters(
            e,
            name,
            help,
            proxy
                .frontends
                .iter()
                .map(|f| ([("proxy", f.name.as_str())], value(f))),
        )?;
    }
    gauges(
        e,
        "frontend_current_sessions",
        "Sessions open on a frontend",
        proxy.frontends.iter().map(|f| {
            (
                [("proxy", f.name.as_str())],
                as_i64(f.counters.sessions_current),
            )
        }),
    )?;
    let per_backend: [(&str, &str, Value<ProxyBackend>); 4] = [
        (
            "backend_sessions",
            "Sessions a proxy backend handled",
            |b| b.counters.sessions_total,
        ),
        (
            "proxy_backend_downtime_seconds",
            "Seconds a proxy backend had no usable server (HAProxy's downtime)",
            |b| b.downtime_secs,
        ),
        (
            "proxy_backend_bytes_in",
            "Bytes from clients through a backend",
            |b| b.counters.bytes_in,
        ),
        (
            "proxy_backend_bytes_out",
            "Bytes to clients through a backend",
            |b| b.counters.bytes_out,
        ),
    ];
    for (name, help, value) in per_backend {
        counters(
            e,
            name,
            help,
            proxy
                .backends
                .iter()
                .map(|b| ([("proxy", b.name.as_str())], value(b))),
        )?;
    }
    gauges(
        e,
        "proxy_backend_up",
        "1 while a proxy backend has a usable server",
        proxy
            .backends
            .iter()
            .map(|b| ([("proxy", b.name.as_str())], i64::from(b.status == "UP"))),
    )?;
    gauges(
        e,
        "proxy_backend_last_change_seconds",
        "Seconds since a proxy backend last went UP or DOWN (HAProxy's lastchg)",
        proxy
            .backends
            .iter()
            .map(|b| ([("proxy", b.name.as_str())], as_i64(b.last_change_secs))),
    )?;
    let servers = || {
        proxy.backends.iter().flat_map(|b| {
            b.servers
                .iter()
                .map(move |s| ([("proxy", b.name.as_str()), ("server", s.name.as_str())], s))
        })
    };
    let per_server: [(&str, &str, Value<ServerStatus>); 9] = [
        ("server_sessions", "Sessions sent to a server", |s| {
            s.counters.sessions_total
        }),
        ("server_bytes_in", "Bytes from clients to a server", |s| {
            s.counters.bytes_in
        }),
        ("server_bytes_out", "Bytes from a server to clients", |s| {
            s.counters.bytes_out
        }),
        (
            "server_connection_errors",
            "Failed connections to a server",
            |s| s.counters.connection_errors,
        ),
        (
            "server_response_errors",
            "Bad responses from a server",
            |s| s.counters.response_errors,
        ),
        ("server_retries", "Connection retries to a server", |s| {
            s.counters.retries
        }),
        (
            "server_redispatches",
            "Redispatches away from a server",
            |s| s.counters.redispatches,
        ),
        (
            "server_check_down_transitions",
            "UP to DOWN transitions of a server's checks",
            |s| s.downs,
        ),
        (
            "server_downtime_seconds",
            "Seconds a server was DOWN or in MAINT (HAProxy's downtime)",
            |s| s.downtime_secs,
        ),
    ];
    for (name, help, value) in per_server {
        counters(e, name, help, servers().map(|(l, s)| (l, value(s))))?;
    }
    type Gauge = fn(&ServerStatus) -> i64;
    let server_gauges: [(&str, &str, Gauge); 4] = [
        (
            "server_current_sessions",
            "Sessions open on a server",
            |s| as_i64(s.counters.sessions_current),
        ),
        (
            "server_last_change_seconds",
            "Seconds since a server last went UP or DOWN (HAProxy's lastchg)",
            |s| as_i64(s.last_change_secs),
        ),
        ("server_weight", "A server's effective weight", |s| {
            i64::from(s.weight)
        }),
        (
            "server_up",
            "1 when a server is UP (not DOWN, MAINT or DRAIN)",
            |s| i64::from(s.status == "UP"),
        ),
    ];
    for (name, help, value) in server_gauges {
        gauges(e, name, help, servers().map(|(l, s)| (l, value(s))))?;
    }
    Ok(())
}

fn vrrp_metrics(e: &mut DescriptorEncoder, vrrp: &[VrrpStatus]) -> fmt::Result {
    let states = [
        State::Initialize,
        State::Backup,
        State::Master,
        State::Fault,
    ]
    .map(|state| (state, format!("{state:?}").to_lowercase()));
    gauges(
        e,
        "vrrp_state",
        "1 for a VRRP instance's current state",
        vrrp.iter().flat_map(|v| {
            states.iter().map(move |(state, name)| {
                (
                    [("instance", v.name.as_str()), ("state", name.as_str())],
                    i64::from(v.state == *state),
                )
            })
        }),
    )?;
    gauges(
        e,
        "vrrp_priority",
        "Configured priority",
        vrrp.iter()
            .map(|v| ([("instance", v.name.as_str())], i64::from(v.priority))),
    )?;
    gauges(
        e,
        "vrrp_effective_priority",
        "Advertised priority (with tracking weights)",
        vrrp.iter().map(|v| {
            (
                [("instance", v.name.as_str())],
                i64::from(v.effective_priority),
            )
        }),
    )?;
    counters(
        e,
        "vrrp_adverts_sent",
        "Adverts sent",
        vrrp.iter()
            .map(|v| ([("instance", v.name.as_str())], v.counters.adverts_sent)),
    )?;
    counters(
        e,
        "vrrp_adverts_received",
        "Adverts received",
        vrrp.iter()
            .map(|v| ([("instance", v.name.as_str())], v.counters.adverts_received)),
    )
}

/// The Prometheus text of `report` plus the live metrics.
pub fn render(report: &StatusReport, live: &LiveMetrics) -> String {
    let mut registry = Registry::with_prefix("lbd");
    registry.register_collector(Box::new(ReportCollector {
        report: Arc::new(report.clone()),
    }));
    if let Some(bgp) = &report.bgp {
        crate::bgp::status::register_metrics(bgp, &mut registry);
    }
    let transitions = Counter::<u64>::default();
    transitions.inc_by(live.vrrp_transitions.load(Ordering::Relaxed));
    registry.register(
        "vrrp_transitions",
        "VRRP state changes of every instance since lbd started",
        transitions,
    );
    live.register_histograms(&mut registry);
    let mut text = String::with_capacity(1 << 20);
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// Shared between the daemon (feeding) and the stats server (reading).
pub type SharedLive = Arc<LiveMetrics>;
