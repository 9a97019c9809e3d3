use super::*;
use crate::proxy::config::parse_str;
use crate::proxy::snapshot::StateRegistry;
use std::path::Path;
use tokio::net::TcpListener;

fn expect(text: &str) -> HttpCheckExpect {
    let config = parse_str(
        &format!("[[backend]]\nname = \"b\"\nhttp_check_expect = \"{text}\"\n"),
        Path::new("t"),
    )
    .unwrap();
    config.backends[0].health.expect.clone().unwrap()
}

#[test]
fn the_seed_request_is_sent_as_written() {
    let config = parse_str(
        "[[backend]]\nname = \"b\"\nhttpchk = \"HEAD / HTTP/1.1\\\\r\\\\nHost:\\\\ localhost\"\n",
        Path::new("t"),
    )
    .unwrap();
    let request = config.backends[0].health.httpchk.as_ref().unwrap();
    assert_eq!(
        request_bytes(request),
        b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()
    );
    let default = parse_str(
        "[[backend]]\nname = \"b\"\nhttpchk = true\n",
        Path::new("t"),
    )
    .unwrap();
    assert_eq!(
        request_bytes(default.backends[0].health.httpchk.as_ref().unwrap()),
        b"OPTIONS / HTTP/1.0\r\n\r\n".to_vec()
    );
}

#[test]
fn judging_responses() {
    let status_ok = expect("status 200");
    let body_ok = expect("string healthy");
    /// (response so far, finished, expectation, verdict)
    type Case<'a> = (
        &'a [u8],
        bool,
        Option<&'a HttpCheckExpect>,
        Option<(bool, &'a str)>,
    );
    let cases: &[Case] = &[
        (
            b"HTTP/1.1 200 OK\r\n",
            false,
            None,
            Some((true, "L7OK 200")),
        ),
        (
            b"HTTP/1.1 302 Found\r\n",
            false,
            None,
            Some((true, "L7OK 302")),
        ),
        (
            b"HTTP/1.0 503 Busy\r\n\r\n",
            false,
            None,
            Some((false, "L7STS 503")),
        ),
        (
            b"HTTP/1.1 301 Moved\r\n",
            false,
            Some(&status_ok),
            Some((false, "L7STS 301")),
        ),
        (b"HTTP/1.1 200", false, None, None),
        (
            b"HTTP/1.1 200",
            true,
            None,
            Some((false, "L7RSP no status line")),
        ),
        (
            b"SSH-2.0-OpenSSH\r\n",
            false,
            None,
            Some((false, "L7RSP not an HTTP/1.x status line")),
        ),
        (
            b"HTTP/2 200\r\n",
            false,
            None,
            Some((false, "L7RSP not an HTTP/1.x status line")),
        ),
        (
            b"HTTP/1.1 20x OK\r\n",
            false,
            None,
            Some((false, "L7RSP not an HTTP/1.x status line")),
        ),
        // A body matcher waits for the body ...
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhea",
            false,
            Some(&body_ok),
            None,
        ),
        // ... ends early on a match ...
        (
            b"HTTP/1.1 200 OK\r\n\r\nall healthy here",
            false,
            Some(&body_ok),
            Some((true, "L7OK 200")),
        ),
        // ... and judges what came when the length is reached or it ends.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsick",
            false,
            Some(&body_ok),
            Some((false, "L7STS 200")),
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\nsick",
            true,
            Some(&body_ok),
            Some((false, "L7STS 200")),
        ),
    ];
    for (response, finished, expect, expected) in cases {
        let got = judge(response, *finished, *expect).map(|j| (j.ok, j.short()));
        let expected = expected.map(|(ok, s)| (ok, s.to_owned()));
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(response));
    }
}

fn plan_for(address: SocketAddr, extra: &str) -> CheckPlan {
    let text = format!(
        "[[backend]]\nname = \"b\"\n{extra}\n[[backend.server]]\nname = \"s\"\naddress = \"{address}\"\ncheck = true\ninter = \"300ms\"\n"
    );
    let config = parse_str(&text, Path::new("t")).unwrap();
    let snapshot = StateRegistry::new().build(Arc::new(config));
    plans(&snapshot).remove(0)
}

/// A loopback server answering each connection with `reply` (after reading
/// the request head), recording what it received.
async fn server(
    reply: &'static [u8],
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = seen.send(got);
                let _ = stream.write_all(reply).await;
                // Keep the connection open, as a keep-alive server does.
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    (address, requests)
}

#[test]
fn probes_over_real_sockets() {
    crate::test_netns::block_on(|| async {
        let (address, mut requests) = server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let plan = plan_for(
            address,
            "httpchk = \"HEAD /health HTTP/1.1\\\\r\\\\nHost:\\\\ localhost\"",
        );
        let judgement = probe(&plan).await;
        assert_eq!(judgement.short(), "L7OK 200");
        assert_eq!(
            requests.recv().await.unwrap(),
            b"HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
        );

        let (address, _requests) = server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let judgement = probe(&plan_for(address, "httpchk = true")).await;
        assert_eq!(
            (judgement.ok, judgement.short()),
            (false, "L7STS 503".into())
        );

        // tcp-check: connecting is enough, whatever the server says.
        let judgement = probe(&plan_for(address, "tcp_check = true")).await;
        assert_eq!((judgement.ok, judgement.short()), (true, "L4OK".into()));

        // Nothing listening: refused.
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let judgement = probe(&plan_for(closed, "httpchk = true")).await;
        assert_eq!(
            (judgement.ok, judgement.short()),
            (false, "L4CON Connection refused".into())
        );

        // A server that never answers: the response times out.
        let (address, _requests) = server(b"").await;
        let started = Instant::now();
        let judgement = probe(&plan_for(
            address,
            "httpchk = true\ntimeout = { check = \"200ms\" }",
        ))
        .await;
        assert_eq!((judgement.ok, judgement.short()), (false, "L7TOUT".into()));
        assert!(started.elapsed() < Duration::from_secs(2));
    })
}

#[test]
fn timeouts_follow_haproxy() {
    let address: SocketAddr = "198.18.0.1:80".parse().unwrap();
    let plan = plan_for(address, "");
    assert_eq!(plan.method, CheckMethod::Connect);
    assert_eq!(
        (plan.connect_timeout, plan.response_timeout),
        (plan.inter, plan.inter)
    );
    let plan = plan_for(address, "timeout = { check = \"5s\", connect = \"100ms\" }");
    assert_eq!(plan.connect_timeout, Duration::from_millis(100));
    assert_eq!(plan.response_timeout, Duration::from_secs(5));
    // connect is capped by inter.
    let plan = plan_for(address, "timeout = { check = \"5s\", connect = \"10s\" }");
    assert_eq!(plan.connect_timeout, Duration::from_millis(300));
}

#[test]
fn a_down_server_leaves_after_fall_checks_and_returns_after_rise() {
    crate::test_netns::block_on(|| async {
        use std::sync::atomic::{AtomicBool, Ordering};
        // A server answering 200 while `healthy`, else 503.
        let healthy = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let flag = Arc::clone(&healthy);
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let reply: &[u8] = if flag.load(Ordering::Relaxed) {
                    b"HTTP/1.1 200 OK\r\n\r\n"
                } else {
                    b"HTTP/1.1 503 Down\r\n\r\n"
                };
                let _ = stream.write_all(reply).await;
            }
        });
        let text = format!(
        "[[backend]]\nname = \"b\"\nhttpchk = \"GET /\"\n[[backend.server]]\nname = \"s\"\naddress = \"{address}\"\ncheck = true\ninter = \"50ms\"\nfall = 2\nrise = 3\n"
    );
        let registry = StateRegistry::new();
        let snapshot =
            Arc::new(registry.build(Arc::new(parse_str(&text, Path::new("t")).unwrap())));
        let state = Arc::clone(&snapshot.backends[0].servers[0]);
        assert!(state.is_health_up(), "servers start up");
        let live = Arc::new(crate::stats::LiveMetrics::default());
        let health = ProxyHealth::start_reporting(
            &tokio::runtime::Handle::current(),
            Arc::clone(&snapshot),
            vec![Logger::disabled()],
            live.clone(),
        );
        assert_eq!(health.len(), 1);
        let wait_for = |up: bool| {
            let state = Arc::clone(&state);
            async move {
                let deadline = Instant::now() + Duration::from_secs(3);
                while state.is_health_up() != up && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                state.is_health_up() == up
            }
        };
        assert!(wait_for(false).await, "down after 2 failed checks");
        assert_eq!(state.last_check().unwrap().detail, "L7STS 503");
        let failed = state.failed_checks.load(Ordering::Relaxed);
        assert!(failed >= 2, "{failed}");
        assert_eq!(state.downs.load(Ordering::Relaxed), 1);
        healthy.store(true, Ordering::Relaxed);
        let since = Instant::now();
        assert!(wait_for(true).await, "up again after 3 good checks");
        // rise = 3 checks 50 ms apart: not before the second interval ends.
        assert!(
            since.elapsed() >= Duration::from_millis(100),
            "{:?}",
            since.elapsed()
        );
        assert_eq!(state.last_check().unwrap().detail, "L7OK 200");
        // Every check's latency went into the histogram of /metrics.
        let text = live.histograms_text();
        let count: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("lbd_server_check_latency_seconds_count{proxy=\"b\",server=\"s\"} ")
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count in {text}"));
        assert!(
            count >= u64::from(failed as u32) + 3,
            "{count} checks: {text}"
        );
        // A reload keeps the state and checks on with the new snapshot.
        drop(health);
        let snapshot = Arc::new(registry.build(Arc::clone(&snapshot.config)));
        assert!(snapshot.backends[0].servers[0].is_health_up());
        let _health = ProxyHealth::start(
            &tokio::runtime::Handle::current(),
            snapshot,
            vec![Logger::disabled()],
        );
        server.abort();
    })
}

#[test]
fn any_bytes_are_judged_without_panicking() {
    let body = expect("string ok");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const PIECES: &[&[u8]] = &[
        b"HTTP/1.1 ",
        b"200",
        b" OK",
        b"\r\n",
        b"\r\n\r\n",
        b"Content-Length: ",
        b"9",
        b"ok",
        b"\xff",
        b"HTTP/1.",
        b"x",
    ];
    for _ in 0..20_000 {
        let mut response = Vec::new();
        for _ in 0..(next() % 8) {
            response.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        for finished in [false, true] {
            let _ = judge(&response, finished, None);
            let judged = judge(&response, finished, Some(&body));
            if finished {
                assert!(judged.is_some(), "a finished response is always judged");
            }
        }
    }
}
