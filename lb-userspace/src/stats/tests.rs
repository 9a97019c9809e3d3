//! The page, the exports and the metrics rendered from one report, with a
//! hostile name in every place a name goes.
use super::{
    export, metrics,
    page::{fragment, full_page, Viewer},
    sample::Sample,
};
use crate::{
    cli::status::{BackendStatus, ServiceStatus, StatusReport},
    dataplane::programmer::BackendState,
    health::state::AdminState,
    proxy::status::{BackendStatus as ProxyBackend, FrontendStatus, ProxyStatus, ServerStatus},
};
use std::{collections::HashMap, time::Instant};

const EVIL: &str = "<script>alert(1)</script>";

pub(crate) fn report() -> StatusReport {
    StatusReport {
        instance: "lb1".into(),
        running: true,
        state_written: None,
        link_pinned: true,
        bgp: None,
        pid: Some(42),
        xdp_mode: Some("native".into()),
        vrrp: vec![crate::vrrp::VrrpStatus {
            name: format!("VI_{EVIL}"),
            vrid: 51,
            version: crate::vrrp::packet::Version::V3,
            state: crate::vrrp::State::Master,
            priority: 150,
            effective_priority: 140,
            master: None,
            local_address: "198.18.0.1".parse().unwrap(),
            seconds_in_state: 75.0,
            last_transition: "master down timer".into(),
            counters: Default::default(),
        }],
        flows: 3,
        nat_replies: 0,
        global: vec![("tx_dsr".into(), 1234), ("pass_not_ip".into(), 5)],
        services: vec![ServiceStatus {
            id: 0,
            name: Some(EVIL.into()),
            vip: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: "tcp".into(),
            mode: "dsr".into(),
            table_size: 65537,
            packets: 1000,
            bytes: 64000,
            new_flows: 10,
            backends: vec![
                BackendStatus {
                    id: 0,
                    address: "198.18.0.11".parse().unwrap(),
                    port: 80,
                    mac: "02:00:00:00:00:11".into(),
                    weight: Some(2),
                    slots: Some(40000),
                    state: Some(BackendState::Serving),
                    health: Some("up".into()),
                    admin: Some(AdminState::Enabled),
                    last_check: Some("HTTP 200".into()),
                    last_latency_ms: Some(0.4),
                    seconds_since_change: Some(12.0),
                    downtime_seconds: Some(0.0),
                    packets: 700,
                    bytes: 44800,
                    new_flows: 7,
                },
                BackendStatus {
                    id: 1,
                    address: "198.18.0.12".parse().unwrap(),
                    port: 80,
                    mac: "02:00:00:00:00:12".into(),
                    weight: Some(1),
                    slots: Some(0),
                    state: Some(BackendState::Draining),
                    health: Some("up".into()),
                    admin: Some(AdminState::Drain),
                    last_check: None,
                    last_latency_ms: None,
                    seconds_since_change: Some(3.0),
                    downtime_seconds: Some(95.0),
                    packets: 300,
                    bytes: 19200,
                    new_flows: 3,
                },
            ],
        }],
        proxy: Some(ProxyStatus {
            connections: 1,
            workers: vec![1, 0],
            frontends: vec![FrontendStatus {
                name: format!("fe{EVIL}"),
                mode: "http".into(),
                binds: vec!["198.18.0.100:8080".into()],
                maxconn: 100,
                status: "OPEN".into(),
                counters: Default::default(),
            }],
            backends: vec![ProxyBackend {
                name: "app".into(),
                mode: "http".into(),
                status: "UP".into(),
                active_servers: 1,
                backup_servers: 0,
                last_change_secs: 3600,
                downtime_secs: 12,
                counters: Default::default(),
                servers: vec![
                    ServerStatus {
                        name: format!("s{EVIL}"),
                        address: "198.18.0.11:8080".into(),
                        status: "DOWN".into(),
                        weight: 1,
                        backup: false,
                        check: true,
                        last_check: Some("L4CON connection refused".into()),
                        downs: 2,
                        last_change_secs: 40,
                        downtime_secs: 130,
                        maxconn: 0,
                        counters: Default::default(),
                        going: None,
                    },
                    ServerStatus {
                        name: "b2".into(),
                        address: "198.18.0.12:8080".into(),
                        status: "UP".into(),
                        weight: 1,
                        backup: false,
                        check: true,
                        last_check: Some("L7OK 200".into()),
                        downs: 0,
                        last_change_secs: 7200,
                        downtime_secs: 0,
                        maxconn: 0,
                        counters: Default::default(),
                        going: None,
                    },
                ],
            }],
        }),
    }
}

fn sample() -> Sample {
    Sample {
        report: report(),
        rates: HashMap::new(),
        at: Instant::now(),
    }
}

fn config() -> super::StatsConfig {
    let text = "[stats]\nadmin = true\nrefresh = \"2s\"\n[[stats.user]]\nname = \"admin\"\npassword = \"admin\"\n";
    super::config::tests_parse(text).expect("valid")
}

#[test]
fn every_name_is_escaped() {
    let viewer = Viewer {
        user: Some("admin"),
        token: Some("tok"),
        message: Some(EVIL),
    };
    let inner = fragment(&sample(), &viewer).into_string();
    let html = full_page(&config(), &sample(), &viewer, inner.as_bytes()).into_string();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The service, the VRRP instance, the frontend, the server, the message.
    assert!(html.matches("&lt;script&gt;").count() >= 5, "{html}");
    // The page's own inline script is still there, once.
    assert_eq!(html.matches("<script>").count(), 1);
}

#[test]
fn rows_carry_their_states_colours_and_forms() {
    let with_admin = Viewer {
        user: Some("admin"),
        token: Some("tok123"),
        message: None,
    };
    let html = fragment(&sample(), &with_admin).into_string();
    assert!(html.contains(r#"class="backend active_up" data-row="&lt;script&gt;alert(1)&lt;/script&gt;/198.18.0.11:80""#), "{html}");
    assert!(html.contains(r#"class="backend active_draining""#));
    assert!(html.contains(r#"class="server active_down""#));
    assert!(html.contains(r#"class="server active_up" data-row="app/b2""#));
    assert!(html.contains(r#"class="vrrp_master""#));
    assert!(html.contains(r#"name="token" value="tok123""#));
    assert!(html.contains(r#"data-action="drain" data-target="app/b2""#));
    // HAProxy's LastChg and Dwntme cells, for servers, backends and XDP
    // backends.
    assert!(
        html.contains(r#"<td data-col="lastchg">40s</td><td data-col="status">DOWN</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td data-col="downtime">2m 10s</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td data-col="lastchg">1h 0m</td><td data-col="status">UP</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td data-col="downtime">1m 35s</td>"#),
        "{html}"
    );
    assert!(html.contains("<th>Dwntme</th>") && html.contains("<th>LastChg</th>"));
    let read_only = Viewer {
        user: None,
        token: None,
        message: None,
    };
    let html = fragment(&sample(), &read_only).into_string();
    assert!(!html.contains("<form"), "no forms without admin");
}

#[test]
fn csv_and_json_have_the_same_rows() {
    let rows = export::rows(&report());
    let names: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.pxname.clone(), r.svname.clone()))
        .collect();
    assert_eq!(
        names,
        [
            (EVIL.to_owned(), "198.18.0.11:80".to_owned()),
            (EVIL.to_owned(), "198.18.0.12:80".to_owned()),
            (EVIL.to_owned(), "BACKEND".to_owned()),
            (format!("fe{EVIL}"), "FRONTEND".to_owned()),
            ("app".to_owned(), format!("s{EVIL}")),
            ("app".to_owned(), "b2".to_owned()),
            ("app".to_owned(), "BACKEND".to_owned()),
        ]
    );
    assert_eq!(rows[0].status, "UP");
    assert_eq!(rows[1].status, "DRAIN");
    assert_eq!(rows[0].packets, Some(700));
    let csv = export::csv(&rows);
    assert_eq!(csv.lines().count(), rows.len() + 1);
    assert!(csv.lines().nth(1).unwrap().contains(",UP,2,1,0,"), "{csv}");
    // HAProxy's lastchg and downtime after chkdown, check_duration after
    // check_status (ms).
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|c| c.trim_start_matches("# ") == name)
            .unwrap()
    };
    assert_eq!(
        (at("lastchg"), at("downtime")),
        (at("chkdown") + 1, at("chkdown") + 2)
    );
    let field = |line: usize, name: &str| {
        csv.lines()
            .nth(line)
            .unwrap()
            .split(',')
            .nth(at(name))
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (
            field(1, "lastchg"),
            field(1, "downtime"),
            field(1, "check_duration")
        ),
        ("12".into(), "0".into(), "0".into())
    );
    assert_eq!(
        (field(2, "lastchg"), field(2, "downtime")),
        ("3".into(), "95".into())
    );
    let server = rows
        .iter()
        .find(|r| r.svname == format!("s{EVIL}"))
        .unwrap();
    assert_eq!((server.lastchg, server.downtime), (Some(40), Some(130)));
    let backend = rows
        .iter()
        .find(|r| r.pxname == "app" && r.svname == "BACKEND")
        .unwrap();
    assert_eq!((backend.lastchg, backend.downtime), (Some(3600), Some(12)));
    let json = serde_json::to_value(&rows).unwrap();
    assert_eq!(json[4]["downtime"], serde_json::json!(130));
}

#[test]
fn metrics_parse_and_match_the_report() {
    let live = metrics::LiveMetrics::default();
    live.observe_check(
        "web",
        "198.18.0.11:80".parse().unwrap(),
        std::time::Duration::from_millis(3),
    );
    live.set_vrrp_transitions(4);
    let text = metrics::render(&report(), &live);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {label:?} in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        }
    };
    assert_eq!(
        value("lbd_xdp_packets_total", Some(("outcome", "tx_dsr"))),
        1234.0
    );
    assert_eq!(
        value(
            "lbd_backend_packets_total",
            Some(("backend", "198.18.0.11:80"))
        ),
        700.0
    );
    assert_eq!(value("lbd_service_new_flows_total", None), 10.0);
    assert_eq!(value("lbd_backend_state", Some(("state", "draining"))), 1.0);
    assert_eq!(value("lbd_server_up", Some(("server", "b2"))), 1.0);
    assert_eq!(
        value(
            "lbd_server_check_down_transitions_total",
            Some(("server", &format!("s{EVIL}")))
        ),
        2.0
    );
    assert_eq!(value("lbd_vrrp_state", Some(("state", "master"))), 1.0);
    assert_eq!(value("lbd_vrrp_effective_priority", None), 140.0);
    assert_eq!(value("lbd_vrrp_transitions_total", None), 4.0);
    assert_eq!(
        value(
            "lbd_server_downtime_seconds_total",
            Some(("server", &format!("s{EVIL}")))
        ),
        130.0
    );
    assert_eq!(
        value("lbd_server_last_change_seconds", Some(("server", "b2"))),
        7200.0
    );
    assert_eq!(
        value(
            "lbd_proxy_backend_downtime_seconds_total",
            Some(("proxy", "app"))
        ),
        12.0
    );
    assert_eq!(
        value(
            "lbd_proxy_backend_last_change_seconds",
            Some(("proxy", "app"))
        ),
        3600.0
    );
    assert_eq!(
        value(
            "lbd_backend_downtime_seconds_total",
            Some(("backend", "198.18.0.12:80"))
        ),
        95.0
    );
    assert!(
        text.contains("lbd_health_check_latency_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(
            "lbd_health_check_latency_seconds_count{service=\"web\",backend=\"198.18.0.11:80\"} 1"
        ),
        "{text}"
    );
}

/// One HTTP/1.1 request on a fresh connection; the status code.
fn status_of(address: std::net::SocketAddr, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// A reload that changes `[stats]` while an admin action waits for the
/// daemon's loop must not wait for that action: the loop is the one that
/// would answer it (and VRRP's timers must never wait on the page). The
/// new server takes over the same socket at once; the old one finishes
/// the action when the loop answers.
#[test]
fn replacing_the_server_never_waits_for_an_action_in_flight() {
    crate::test_netns::run(|| {
        use crate::stats::{LiveMetrics, StatsServer};
        use std::{
            sync::Arc,
            time::{Duration, Instant},
        };
        let text = "[stats]\nbind = \"127.0.0.1:0\"\nadmin = true\n[[stats.user]]\nname = \"admin\"\npassword = \"pw\"\n";
        let config = super::config::tests_parse(text).expect("valid");
        let (control, mut calls) = tokio::sync::mpsc::channel(4);
        let live = Arc::new(LiveMetrics::default());
        let old = StatsServer::start(
            config.clone(),
            "no-such-instance",
            control.clone(),
            live.clone(),
        )
        .expect("start");
        let address = old.local_addr().expect("address");
        let auth = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "admin:pw")
        );
        let form = format!(
            "token={}&kind=proxy&group=app&member=n1&action=drain",
            old.token
        );
        let post = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        let action = std::thread::spawn(move || status_of(address, &post));
        // The action reached the loop, which does not answer yet (it is busy
        // with the reload).
        let (request, reply) = calls.blocking_recv().expect("the action");
        assert!(matches!(request, crate::control::Request::SetServer { .. }));

        let mut changed = config.clone();
        changed.realm = "changed".into();
        let started = Instant::now();
        let new = StatsServer::replace(Some(old), Some(changed), "no-such-instance", control, live)
            .expect("replace")
            .expect("a server");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "the reload waited {:?} for the old stats server",
            started.elapsed()
        );
        assert_eq!(new.local_addr().expect("address"), address, "same socket");
        // The new server answers on it at once (with its new realm).
        let started = Instant::now();
        assert_eq!(
            status_of(
                address,
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ),
            401
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The loop answers: the old server completes the action.
        let _ = reply.send(crate::control::Reply {
            ok: true,
            message: "done".into(),
        });
        assert_eq!(action.join().expect("action thread"), 303);
        let started = Instant::now();
        new.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
    })
}

/// Each view is rendered once per sample whatever the number of viewers,
/// and again for a new sample.
#[test]
fn each_view_is_rendered_once_per_sample() {
    use super::server::{Rendered, View};
    use std::sync::Arc;
    let rendered = Rendered::default();
    let first = Arc::new(sample());
    let mut renders = 0;
    for _ in 0..3 {
        let bytes = rendered.get(&first, View::Metrics, || {
            renders += 1;
            "m1".into()
        });
        assert_eq!(&bytes[..], b"m1");
    }
    assert_eq!(renders, 1, "one render for three scrapes");
    let fragment = rendered.get(&first, View::Fragment, || {
        renders += 1;
        "f1".into()
    });
    assert_eq!(
        (&fragment[..], renders),
        (&b"f1"[..], 2),
        "a view of its own"
    );
    let second = Arc::new(sample());
    let bytes = rendered.get(&second, View::Metrics, || {
        renders += 1;
        "m2".into()
    });
    assert_eq!((&bytes[..], renders), (&b"m2"[..], 3), "a new sample");
}

/// The stats thread runs niced, so that it yields to the proxy's workers.
#[test]
fn the_stats_thread_yields_to_the_data_path() {
    crate::test_netns::run(|| {
        use crate::stats::{LiveMetrics, StatsServer};
        let text = "[stats]\nbind = \"127.0.0.1:0\"\n";
        let config = super::config::tests_parse(text).expect("valid");
        let (control, _calls) = tokio::sync::mpsc::channel(4);
        let server = StatsServer::start(
            config,
            "no-such-instance",
            control,
            std::sync::Arc::new(LiveMetrics::default()),
        )
        .expect("start");
        let nice_of_stats_threads = || -> Vec<i64> {
            std::fs::read_dir("/proc/self/task")
                .expect("tasks")
                .filter_map(|task| {
                    let path = task.ok()?.path();
                    let comm = std::fs::read_to_string(path.join("comm")).ok()?;
                    (comm.trim_end() == "lbd-stats").then_some(())?;
                    let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                    // Fields after the command's closing parenthesis: state is
                    // field 3, nice field 19.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split_whitespace().nth(16)?.parse().ok()
                })
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = nice_of_stats_threads();
        while (seen.is_empty() || seen.contains(&0)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen = nice_of_stats_threads();
        }
        assert!(!seen.is_empty(), "no lbd-stats thread");
        assert!(
            seen.iter().all(|&n| n == i64::from(super::server::NICE)),
            "nice values {seen:?}"
        );
        server.stop();
    })
}

/// HAProxy's transitional states: the legend, the row colour and the
/// status as its page and CSV write them ("UP 2/3" going down, "DOWN 1/2"
/// going up), for active and backup servers.
#[test]
fn going_up_and_going_down_have_haproxys_words_and_colours() {
    let mut going = sample();
    {
        let proxy = going.report.proxy.as_mut().expect("proxy");
        let servers = &mut proxy.backends[0].servers;
        servers[0].going = Some([1, 2]); // DOWN, one of rise 2 passed
        servers[1].going = Some([2, 3]); // UP, one of fall 3 failed
    }
    let viewer = Viewer {
        user: None,
        token: None,
        message: None,
    };
    let html = fragment(&going, &viewer).into_string();
    assert!(html.contains(r#"class="server active_going_up""#), "{html}");
    assert!(
        html.contains(r#"class="server active_going_down" data-row="app/b2""#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td data-col="status">DOWN 1/2</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td data-col="status">UP 2/3</td>"#),
        "{html}"
    );
    let rows = export::rows(&going.report);
    let status = |name: &str| {
        rows.iter()
            .find(|r| r.svname == name)
            .map(|r| r.status.clone())
    };
    assert_eq!(status("b2").as_deref(), Some("UP 2/3"));
    assert_eq!(status(&format!("s{EVIL}")).as_deref(), Some("DOWN 1/2"));
    assert!(export::csv(&rows).contains(",UP 2/3,"));
    // Backups have their own colours.
    {
        let proxy = going.report.proxy.as_mut().expect("proxy");
        for server in &mut proxy.backends[0].servers {
            server.backup = true;
        }
    }
    let html = fragment(&going, &viewer).into_string();
    assert!(html.contains(r#"class="server backup_going_up""#), "{html}");
    assert!(
        html.contains(r#"class="server backup_going_down""#),
        "{html}"
    );
    // Steady again: plain words and colours.
    {
        let proxy = going.report.proxy.as_mut().expect("proxy");
        for server in &mut proxy.backends[0].servers {
            server.going = None;
        }
    }
    let html = fragment(&going, &viewer).into_string();
    assert!(html.contains(r#"class="server backup_up""#), "{html}");
    assert!(!html.contains("going"), "{html}");
    // The legend has the four transitional entries with their classes.
    let page = full_page(&config(), &sample(), &viewer, b"").into_string();
    for (class, text) in [
        ("active_going_down", "active UP, going down"),
        ("backup_going_down", "backup UP, going down"),
        ("active_going_up", "active DOWN, going up"),
        ("backup_going_up", "backup DOWN, going up"),
    ] {
        assert!(
            page.contains(&format!(r#"<td class="{class}">{text}</td>"#)),
            "{class}: {page}"
        );
        assert!(page.contains(&format!(".{class}{{background:")), "{class}");
    }
}
