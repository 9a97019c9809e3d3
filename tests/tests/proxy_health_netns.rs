//! The proxy's server checks against real nginx in a namespace: HAProxy's
//! `option httpchk HEAD /health HTTP/1.1\r\nHost:\ localhost` as nginx
//! logs it, a server that answers 503 leaving within `fall` × `inter`,
//! coming back after `rise` good checks, and a stopped server refused at
//! layer 4. Needs root; run under the team's namespace lock.
use lb_tests::{netns::Netns, nginx::Nginx};
use lbd::health::proxy::ProxyHealth;
use lbd::log::Logger;
use lbd::proxy::{
    config::parse_str,
    snapshot::{ServerState, StateRegistry},
};
use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

const INTER: Duration = Duration::from_millis(200);
const FALL: u32 = 2;
const RISE: u32 = 3;

/// Waits until the server's health is `up`; returns how long it took.
async fn wait_health(state: &ServerState, up: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    while state.is_health_up() != up {
        assert!(
            start.elapsed() < limit,
            "server still {} after {limit:?} (last check {:?})",
            if up { "down" } else { "up" },
            state.last_check()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[test]
fn httpchk_against_nginx_down_within_fall_times_inter_and_back_after_rise() {
    let ns = Netns::create("phc").expect("namespace");
    ns.ip(&["addr", "add", "198.18.2.1/32", "dev", "lo"])
        .expect("address");
    let address: SocketAddr = "198.18.2.1:8080".parse().unwrap();
    let mut nginx = Nginx::start(&ns, "web1", &[address]).expect("nginx");
    let config = parse_str(
        &format!(
            "[[backend]]\nname = \"app\"\nmode = \"http\"\n\
             httpchk = \"HEAD /health HTTP/1.1\\\\r\\\\nHost:\\\\ localhost\"\n\
             http_check_expect = \"status 200\"\n\
             [[backend.server]]\nname = \"web1\"\naddress = \"{address}\"\ncheck = true\n\
             inter = {}\nfall = {FALL}\nrise = {RISE}\n",
            INTER.as_millis()
        ),
        Path::new("lb.toml"),
    )
    .expect("config");
    let registry = StateRegistry::new();
    let snapshot = Arc::new(registry.build(Arc::new(config)));
    let state = Arc::clone(&snapshot.backends[0].servers[0]);

    ns.run_in(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let _checks = ProxyHealth::start(
                &tokio::runtime::Handle::current(),
                Arc::clone(&snapshot),
                vec![Logger::disabled()],
            );
            // The check as nginx saw it.
            let deadline = Instant::now() + Duration::from_secs(5);
            let entry = loop {
                let log = nginx.access_log().expect("access log");
                if let Some(entry) = log.into_iter().next() {
                    break entry;
                }
                assert!(Instant::now() < deadline, "no check reached nginx");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(
                (
                    entry.method.as_str(),
                    entry.uri.as_str(),
                    entry.protocol.as_str()
                ),
                ("HEAD", "/health", "HTTP/1.1")
            );
            assert_eq!(entry.host.as_deref(), Some("localhost"));
            // nginx logs the check as it answers; the checker records the
            // answer when its task next runs.
            let checked = loop {
                if let Some(check) = state.last_check() {
                    break check;
                }
                assert!(Instant::now() < deadline, "no check recorded");
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            assert!(state.is_health_up());
            assert_eq!(checked.detail, "L7OK 200");

            // 503: down after `fall` failed checks, so within fall × inter
            // (plus the check in flight when the switch happened).
            nginx.set_healthy(false).expect("mark down");
            let took = wait_health(
                &state,
                false,
                INTER * (FALL + 1) + Duration::from_millis(300),
            )
            .await;
            assert!(took >= INTER * (FALL - 1), "down too early: {took:?}");
            assert_eq!(state.last_check().expect("checked").detail, "L7STS 503");

            // Healthy again: up after `rise` good checks, not before.
            nginx.set_healthy(true).expect("mark up");
            let took = wait_health(
                &state,
                true,
                INTER * (RISE + 1) + Duration::from_millis(300),
            )
            .await;
            assert!(took >= INTER * (RISE - 1), "up too early: {took:?}");

            // nginx gone: refused at layer 4.
            assert!(nginx.stop(), "nginx stopped");
            wait_health(
                &state,
                false,
                INTER * (FALL + 1) + Duration::from_millis(300),
            )
            .await;
            let detail = state.last_check().expect("checked").detail;
            assert_eq!(detail, "L4CON Connection refused");
        });
    })
    .expect("in the namespace");
}
