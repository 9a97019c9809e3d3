//! `/metrics`: Prometheus text (prometheus-client). Counters and gauges
//! come from the cached sample (the per-CPU maps are read at most once per
//! refresh period, whatever the number of scrapers); the check-latency
//! histogram and the VRRP transition count are fed live by the daemon.
use crate::{cli::status::StatusReport, vrrp::State};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use std::{
    net::SocketAddr,
    sync::{atomic::AtomicU64, atomic::Ordering, Arc},
    time::Duration,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    vip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub service: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    service: String,
    backend: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    proxy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    proxy: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VrrpLabels {
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VrrpStateLabels {
    instance: String,
    state: String,
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

/// Adds one labelled counter or gauge per call, registered once.
struct Families<L, M> {
    family: Family<L, M>,
}

impl<L, M> Families<L, M>
where
    L: Clone + std::hash::Hash + Eq + std::fmt::Debug + EncodeLabelSet + Send + Sync + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn register(registry: &mut Registry, name: &str, help: &str) -> Families<L, M> {
        let family = Family::<L, M>::default();
        registry.register(name, help, family.clone());
        Families { family }
    }
}

impl<L: Clone + std::hash::Hash + Eq> Families<L, Counter> {
    fn add(&self, labels: L, value: u64) {
        self.family.get_or_create(&labels).inc_by(value);
    }
}

impl<L: Clone + std::hash::Hash + Eq> Families<L, Gauge> {
    fn set(&self, labels: L, value: i64) {
        self.family.get_or_create(&labels).set(value);
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The Prometheus text of `report` plus the live metrics.
pub fn render(report: &StatusReport, live: &LiveMetrics) -> String {
    let mut registry = Registry::with_prefix("lbd");
    let r = &mut registry;

    let up = Families::<VrrpLabels, Gauge>::register(
        r,
        "up",
        "1 while the daemon of this instance runs",
    );
    up.set(
        VrrpLabels {
            instance: report.instance.clone(),
        },
        i64::from(report.running),
    );
    let outcomes = Families::<OutcomeLabels, Counter>::register(
        r,
        "xdp_packets",
        "Packets by outcome of the XDP program, all CPUs",
    );
    for (name, value) in &report.global {
        outcomes.add(
            OutcomeLabels {
                outcome: name.clone(),
            },
            *value,
        );
    }
    let flows = Families::<VrrpLabels, Gauge>::register(
        r,
        "conntrack_flows",
        "Entries in the connection table",
    );
    flows.set(
        VrrpLabels {
            instance: report.instance.clone(),
        },
        as_i64(report.flows),
    );

    let svc_packets = Families::<ServiceLabels, Counter>::register(
        r,
        "service_packets",
        "Packets sent to a service's backends",
    );
    let svc_bytes = Families::<ServiceLabels, Counter>::register(
        r,
        "service_bytes",
        "Bytes sent to a service's backends",
    );
    let svc_flows = Families::<ServiceLabels, Counter>::register(
        r,
        "service_new_flows",
        "New flows of a service",
    );
    let svc_slots = Families::<ServiceLabels, Gauge>::register(
        r,
        "service_maglev_slots",
        "Maglev slots of a service's table (0: no usable backend)",
    );
    let be_packets = Families::<BackendLabels, Counter>::register(
        r,
        "backend_packets",
        "Packets sent to a backend",
    );
    let be_bytes =
        Families::<BackendLabels, Counter>::register(r, "backend_bytes", "Bytes sent to a backend");
    let be_flows = Families::<BackendLabels, Counter>::register(
        r,
        "backend_new_flows",
        "New flows sent to a backend",
    );
    let be_weight = Families::<BackendLabels, Gauge>::register(
        r,
        "backend_weight",
        "A backend's effective weight",
    );
    let be_slots = Families::<BackendLabels, Gauge>::register(
        r,
        "backend_maglev_slots",
        "Maglev slots a backend owns",
    );
    let be_up = Families::<BackendLabels, Gauge>::register(
        r,
        "backend_health_up",
        "1 when a backend passes its health checks (or is not checked)",
    );
    let be_downtime = Families::<BackendLabels, Counter>::register(
        r,
        "backend_downtime_seconds",
        "Seconds a backend was down by its health checks (HAProxy's downtime)",
    );
    let be_state = Families::<StateLabels, Gauge>::register(r, "backend_state", "1 for a backend's data-path state (serving, draining, down) and administrative state (admin_enabled, admin_drain, admin_disabled)");
    for s in &report.services {
        let service = s
            .name
            .clone()
            .unwrap_or_else(|| format!("service-{}", s.id));
        let labels = ServiceLabels {
            service: service.clone(),
            vip: format!("{}/{}", SocketAddr::new(s.vip, s.port), s.protocol),
        };
        svc_packets.add(labels.clone(), s.packets);
        svc_bytes.add(labels.clone(), s.bytes);
        svc_flows.add(labels.clone(), s.new_flows);
        svc_slots.set(labels, i64::from(s.table_size));
        for b in &s.backends {
            let labels = BackendLabels {
                service: service.clone(),
                backend: SocketAddr::new(b.address, b.port).to_string(),
            };
            be_packets.add(labels.clone(), b.packets);
            be_bytes.add(labels.clone(), b.bytes);
            be_flows.add(labels.clone(), b.new_flows);
            be_weight.set(labels.clone(), i64::from(b.weight.unwrap_or(0)));
            be_slots.set(labels.clone(), i64::from(b.slots.unwrap_or(0)));
            be_downtime.add(labels.clone(), b.downtime_seconds.unwrap_or(0.0) as u64);
            be_up.set(
                labels.clone(),
                i64::from(b.health.as_deref() != Some("down")),
            );
            let state = |name: String| {
                be_state.set(
                    StateLabels {
                        service: labels.service.clone(),
                        backend: labels.backend.clone(),
                        state: name,
                    },
                    1,
                )
            };
            if let Some(s) = b.state {
                state(format!("{s:?}").to_lowercase());
            }
            if let Some(a) = b.admin {
                state(format!("admin_{a:?}").to_lowercase());
            }
        }
    }

    if let Some(bgp) = &report.bgp {
        crate::bgp::status::register_metrics(bgp, r);
    }
    if let Some(proxy) = &report.proxy {
        let connections = Families::<VrrpLabels, Gauge>::register(
            r,
            "proxy_connections",
            "Client connections open on every frontend",
        );
        connections.set(
            VrrpLabels {
                instance: report.instance.clone(),
            },
            as_i64(proxy.connections),
        );
        type C = Counter;
        let fe_sessions = Families::<ProxyLabels, C>::register(
            r,
            "frontend_sessions",
            "Sessions (connections) a frontend accepted",
        );
        let fe_current = Families::<ProxyLabels, Gauge>::register(
            r,
            "frontend_current_sessions",
            "Sessions open on a frontend",
        );
        let fe_in =
            Families::<ProxyLabels, C>::register(r, "frontend_bytes_in", "Bytes from clients");
        let fe_out =
            Families::<ProxyLabels, C>::register(r, "frontend_bytes_out", "Bytes to clients");
        let fe_denied = Families::<ProxyLabels, C>::register(
            r,
            "frontend_requests_denied",
            "Requests denied by rules",
        );
        let fe_errors =
            Families::<ProxyLabels, C>::register(r, "frontend_request_errors", "Invalid requests");
        for f in &proxy.frontends {
            let l = ProxyLabels {
                proxy: f.name.clone(),
            };
            fe_sessions.add(l.clone(), f.counters.sessions_total);
            fe_current.set(l.clone(), as_i64(f.counters.sessions_current));
            fe_in.add(l.clone(), f.counters.bytes_in);
            fe_out.add(l.clone(), f.counters.bytes_out);
            fe_denied.add(l.clone(), f.counters.denied_requests);
            fe_errors.add(l, f.counters.request_errors);
        }
        let bk_sessions = Families::<ProxyLabels, C>::register(
            r,
            "backend_sessions",
            "Sessions a proxy backend handled",
        );
        let bk_up = Families::<ProxyLabels, Gauge>::register(
            r,
            "proxy_backend_up",
            "1 while a proxy backend has a usable server",
        );
        let bk_downtime = Families::<ProxyLabels, C>::register(
            r,
            "proxy_backend_downtime_seconds",
            "Seconds a proxy backend had no usable server (HAProxy's downtime)",
        );
        let bk_changed = Families::<ProxyLabels, Gauge>::register(
            r,
            "proxy_backend_last_change_seconds",
            "Seconds since a proxy backend last went UP or DOWN (HAProxy's lastchg)",
        );
        let bk_in = Families::<ProxyLabels, C>::register(
            r,
            "proxy_backend_bytes_in",
            "Bytes from clients through a backend",
        );
        let bk_out = Families::<ProxyLabels, C>::register(
            r,
            "proxy_backend_bytes_out",
            "Bytes to clients through a backend",
        );
        let sv_sessions = Families::<ServerLabels, C>::register(
            r,
            "server_sessions",
            "Sessions sent to a server",
        );
        let sv_current = Families::<ServerLabels, Gauge>::register(
            r,
            "server_current_sessions",
            "Sessions open on a server",
        );
        let sv_in = Families::<ServerLabels, C>::register(
            r,
            "server_bytes_in",
            "Bytes from clients to a server",
        );
        let sv_out = Families::<ServerLabels, C>::register(
            r,
            "server_bytes_out",
            "Bytes from a server to clients",
        );
        let sv_econ = Families::<ServerLabels, C>::register(
            r,
            "server_connection_errors",
            "Failed connections to a server",
        );
        let sv_eresp = Families::<ServerLabels, C>::register(
            r,
            "server_response_errors",
            "Bad responses from a server",
        );
        let sv_retries = Families::<ServerLabels, C>::register(
            r,
            "server_retries",
            "Connection retries to a server",
        );
        let sv_redis = Families::<ServerLabels, C>::register(
            r,
            "server_redispatches",
            "Redispatches away from a server",
        );
        let sv_downs = Families::<ServerLabels, C>::register(
            r,
            "server_check_down_transitions",
            "UP to DOWN transitions of a server's checks",
        );
        let sv_downtime = Families::<ServerLabels, C>::register(
            r,
            "server_downtime_seconds",
            "Seconds a server was DOWN or in MAINT (HAProxy's downtime)",
        );
        let sv_changed = Families::<ServerLabels, Gauge>::register(
            r,
            "server_last_change_seconds",
            "Seconds since a server last went UP or DOWN (HAProxy's lastchg)",
        );
        let sv_weight = Families::<ServerLabels, Gauge>::register(
            r,
            "server_weight",
            "A server's effective weight",
        );
        let sv_status = Families::<ServerLabels, Gauge>::register(
            r,
            "server_up",
            "1 when a server is UP (not DOWN, MAINT or DRAIN)",
        );
        for b in &proxy.backends {
            let l = ProxyLabels {
                proxy: b.name.clone(),
            };
            bk_sessions.add(l.clone(), b.counters.sessions_total);
            bk_up.set(l.clone(), i64::from(b.status == "UP"));
            bk_downtime.add(l.clone(), b.downtime_secs);
            bk_changed.set(l.clone(), as_i64(b.last_change_secs));
            bk_in.add(l.clone(), b.counters.bytes_in);
            bk_out.add(l, b.counters.bytes_out);
            for s in &b.servers {
                let l = ServerLabels {
                    proxy: b.name.clone(),
                    server: s.name.clone(),
                };
                let c = &s.counters;
                sv_sessions.add(l.clone(), c.sessions_total);
                sv_current.set(l.clone(), as_i64(c.sessions_current));
                sv_in.add(l.clone(), c.bytes_in);
                sv_out.add(l.clone(), c.bytes_out);
                sv_econ.add(l.clone(), c.connection_errors);
                sv_eresp.add(l.clone(), c.response_errors);
                sv_retries.add(l.clone(), c.retries);
                sv_redis.add(l.clone(), c.redispatches);
                sv_downs.add(l.clone(), s.downs);
                sv_downtime.add(l.clone(), s.downtime_secs);
                sv_changed.set(l.clone(), as_i64(s.last_change_secs));
                sv_weight.set(l.clone(), i64::from(s.weight));
                sv_status.set(l, i64::from(s.status == "UP"));
            }
        }
    }

    let vrrp_state = Families::<VrrpStateLabels, Gauge>::register(
        r,
        "vrrp_state",
        "1 for a VRRP instance's current state",
    );
    let vrrp_priority =
        Families::<VrrpLabels, Gauge>::register(r, "vrrp_priority", "Configured priority");
    let vrrp_effective = Families::<VrrpLabels, Gauge>::register(
        r,
        "vrrp_effective_priority",
        "Advertised priority (with tracking weights)",
    );
    let vrrp_sent =
        Families::<VrrpLabels, Counter>::register(r, "vrrp_adverts_sent", "Adverts sent");
    let vrrp_received =
        Families::<VrrpLabels, Counter>::register(r, "vrrp_adverts_received", "Adverts received");
    for v in &report.vrrp {
        let l = VrrpLabels {
            instance: v.name.clone(),
        };
        for state in [
            State::Initialize,
            State::Backup,
            State::Master,
            State::Fault,
        ] {
            vrrp_state.set(
                VrrpStateLabels {
                    instance: v.name.clone(),
                    state: format!("{state:?}").to_lowercase(),
                },
                i64::from(v.state == state),
            );
        }
        vrrp_priority.set(l.clone(), i64::from(v.priority));
        vrrp_effective.set(l.clone(), i64::from(v.effective_priority));
        vrrp_sent.add(l.clone(), v.counters.adverts_sent);
        vrrp_received.add(l, v.counters.adverts_received);
    }
    let transitions = Counter::<u64>::default();
    transitions.inc_by(live.vrrp_transitions.load(Ordering::Relaxed));
    r.register(
        "vrrp_transitions",
        "VRRP state changes of every instance since lbd started",
        transitions,
    );
    live.register_histograms(r);

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// Shared between the daemon (feeding) and the stats server (reading).
pub type SharedLive = Arc<LiveMetrics>;
