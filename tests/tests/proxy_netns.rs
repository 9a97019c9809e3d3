//! The L7/TCP proxy end to end in namespaces: the proxy runtime serves a
//! client namespace from its own namespace, in front of test backends that
//! report what they received. Needs root. Run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test proxy_netns -- --test-threads=1`
#[path = "proxy_kit/mod.rs"]
mod kit;

use kit::{client::get_once, client::Client, vip, ProxyLab, DEFAULTS};
use std::{
    collections::HashMap,
    io::{Read, Write},
    time::{Duration, Instant},
};

/// Backend name -> requests it answered, for `n` requests from `request`.
fn tally(replies: &[kit::client::Reply]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        *counts.entry(reply.backend()).or_insert(0) += 1;
    }
    counts
}

fn frontend(name: &str, port: u16, extra: &str) -> String {
    format!(
        "\n[[frontend]]\nname = \"{name}\"\nbind = [\"{}\"]\n{extra}\n",
        vip(port)
    )
}

fn backend(name: &str, extra: &str, servers: &str) -> String {
    format!("\n[[backend]]\nname = \"{name}\"\n{extra}\n{servers}")
}

#[test]
fn seed_acl_split_sends_static_paths_to_the_static_backend() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}{}",
        frontend(
            "main",
            80,
            "acl = [\"url_static path_beg -i /static /images /javascript /stylesheets\", \"url_static path_end -i .jpg .gif .png .css .js\"]\nuse_backend = [\"static if url_static\"]\ndefault_backend = \"app\""
        ),
        backend("static", "", &lab.servers(&[0], "")),
        backend("app", "balance = \"roundrobin\"", &lab.servers(&[1, 2], "")),
    );
    lab.start(&config).expect("start");
    let cases = [
        ("/static/site.txt", "b1"),
        ("/IMAGES/logo", "b1"),
        ("/javascript/app", "b1"),
        ("/page/style.CSS", "b1"),
        ("/a/b.png", "b1"),
        ("/api/users", "app"),
        ("/", "app"),
        ("/stat/ic.html", "app"),
        ("/api/static/x", "app"),
    ];
    let replies: Vec<kit::client::Reply> = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            cases
                .iter()
                .map(|(path, _)| client.get(path, &[]))
                .collect()
        })
        .expect("requests");
    for ((path, want), reply) in cases.iter().zip(&replies) {
        assert_eq!(reply.status, 200, "{path}");
        let got = reply.backend();
        if *want == "app" {
            assert!(got == "b2" || got == "b3", "{path} went to {got}");
        } else {
            assert_eq!(got, *want, "{path}");
        }
    }
}

#[test]
fn forwardfor_is_seen_by_the_backend_and_except_leaves_it_out() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}{}{}",
        frontend("ff", 80, "forwardfor = true\ndefault_backend = \"app\""),
        frontend(
            "ffexcept",
            81,
            "forwardfor = { except = [\"198.18.0.0/24\"] }\ndefault_backend = \"app\""
        ),
        frontend("rfc7239", 82, "forwarded = true\ndefault_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let (plain, chained, excepted, forwarded) = lab
        .on_client(|| {
            Ok((
                get_once(vip(80), "/", &[])?,
                get_once(vip(80), "/", &[("X-Forwarded-For", "203.0.113.7")])?,
                get_once(vip(81), "/", &[])?,
                get_once(vip(82), "/", &[])?,
            ))
        })
        .expect("requests");
    assert_eq!(plain.header("x-seen-forwarded-for"), Some("198.18.0.2"));
    assert_eq!(
        chained.header("x-seen-forwarded-for"),
        Some("203.0.113.7, 198.18.0.2")
    );
    assert_eq!(excepted.header("x-seen-forwarded-for"), Some("-"));
    assert_eq!(
        forwarded.header("x-seen-forwarded"),
        Some("for=198.18.0.2;by=198.18.0.100;proto=http;host=test.lbd")
    );
}

/// Sends `n` requests, each on its own connection, from the client.
fn spread(
    lab: &ProxyLab,
    port: u16,
    n: usize,
    path: impl Fn(usize) -> String + Sync,
) -> Vec<kit::client::Reply> {
    lab.on_client(|| (0..n).map(|i| get_once(vip(port), &path(i), &[])).collect())
        .expect("requests")
}

#[test]
fn each_algorithm_is_observed_from_the_backends() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let all = lab.servers(&[0, 1, 2], "");
    let weighted = format!(
        "{}{}",
        lab.servers(&[0], "weight = 1"),
        lab.servers(&[1, 2], "weight = 2")
    );
    let algorithms = [
        ("roundrobin", 80, "roundrobin", all.clone()),
        ("staticrr", 81, "static-rr", weighted),
        ("first", 82, "first", all.clone()),
        ("source", 83, "source", all.clone()),
        ("uri", 84, "uri", all.clone()),
        ("urlparam", 85, "url_param user", all.clone()),
        ("hdr", 86, "hdr(X-Tenant)", all.clone()),
        ("random", 87, "random(2)", all.clone()),
    ];
    let mut config = DEFAULTS.to_owned();
    for (name, port, balance, servers) in &algorithms {
        config.push_str(&frontend(
            name,
            *port,
            &format!("default_backend = \"{name}\""),
        ));
        config.push_str(&backend(name, &format!("balance = \"{balance}\""), servers));
    }
    lab.start(&config).expect("start");

    let rr = tally(&spread(&lab, 80, 30, |_| "/".into()));
    assert_eq!(
        rr,
        HashMap::from([("b1".into(), 10), ("b2".into(), 10), ("b3".into(), 10)])
    );
    let static_rr = tally(&spread(&lab, 81, 50, |_| "/".into()));
    assert_eq!(
        static_rr,
        HashMap::from([("b1".into(), 10), ("b2".into(), 20), ("b3".into(), 20)])
    );
    // `first`: the first server with a free slot (no maxconn: always b1).
    assert_eq!(
        tally(&spread(&lab, 82, 10, |_| "/".into())),
        HashMap::from([("b1".into(), 10)])
    );
    // `source`: one client address, one server.
    assert_eq!(tally(&spread(&lab, 83, 10, |_| "/".into())).len(), 1);
    // `uri`: a path always lands on the same server; paths spread.
    let uri = spread(&lab, 84, 60, |i| format!("/doc/{}", i % 20));
    let mut owner: HashMap<String, String> = HashMap::new();
    for (i, reply) in uri.iter().enumerate() {
        let path = format!("/doc/{}", i % 20);
        let server = owner.entry(path.clone()).or_insert_with(|| reply.backend());
        assert_eq!(*server, reply.backend(), "{path} moved");
    }
    assert!(
        tally(&uri).len() >= 2,
        "20 paths all on one server: {:?}",
        tally(&uri)
    );
    // `url_param user`: per user one server; without it, round robin.
    let params = spread(&lab, 85, 30, |i| format!("/?user=u{}", i % 3));
    for user in 0..3 {
        let servers: std::collections::HashSet<String> = params
            .iter()
            .skip(user)
            .step_by(3)
            .map(|r| r.backend())
            .collect();
        assert_eq!(servers.len(), 1, "user u{user} on {servers:?}");
    }
    assert_eq!(tally(&spread(&lab, 85, 30, |_| "/".into())).len(), 3);
    // `hdr(X-Tenant)`.
    let tenants = lab
        .on_client(|| {
            (0..30)
                .map(|i| get_once(vip(86), "/", &[("X-Tenant", &format!("t{}", i % 2))]))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .expect("requests");
    for tenant in 0..2 {
        let servers: std::collections::HashSet<String> = tenants
            .iter()
            .skip(tenant)
            .step_by(2)
            .map(|r| r.backend())
            .collect();
        assert_eq!(servers.len(), 1, "tenant t{tenant} on {servers:?}");
    }
    // `random(2)`: every server gets a share.
    assert_eq!(tally(&spread(&lab, 87, 60, |_| "/".into())).len(), 3);
}

#[test]
fn leastconn_avoids_the_slow_server() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend(
            "app",
            "balance = \"leastconn\"",
            &lab.servers(&[0, 1, 2], "")
        ),
    );
    lab.start(&config).expect("start");
    lab.backends[0].set_delay_ms(2000);
    // 4 clients, each sending one request after the other for 3 s. b1
    // holds each of its requests for 2 s; leastconn sends new requests to
    // the servers with fewer in flight, so b1 gets a handful while round
    // robin would give it a third.
    let replies: Vec<kit::client::Reply> = lab
        .on_client(|| {
            let until = Instant::now() + Duration::from_secs(3);
            let clients: Vec<_> = (0..4)
                .map(|_| {
                    std::thread::spawn(move || -> anyhow::Result<Vec<kit::client::Reply>> {
                        let mut replies = Vec::new();
                        while Instant::now() < until {
                            replies.push(get_once(vip(80), "/", &[])?);
                        }
                        Ok(replies)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for client in clients {
                all.extend(
                    client
                        .join()
                        .map_err(|_| anyhow::anyhow!("client panicked"))??,
                );
            }
            Ok(all)
        })
        .expect("requests");
    let counts = tally(&replies);
    assert!(replies.iter().all(|r| r.status == 200));
    let slow = counts.get("b1").copied().unwrap_or(0);
    assert!(replies.len() > 100, "{counts:?}");
    assert!(
        slow * 20 < replies.len(),
        "the slow server got {slow} of {}: {counts:?}",
        replies.len()
    );
}

#[test]
fn backup_takes_over_when_every_primary_is_down() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let servers = format!(
        "{}{}",
        lab.servers(&[0, 1], ""),
        lab.servers(&[2], "backup = true")
    );
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &servers),
    );
    lab.start(&config).expect("start");
    let before = tally(&spread(&lab, 80, 10, |_| "/".into()));
    assert!(
        !before.contains_key("b3"),
        "backup served while primaries are up: {before:?}"
    );
    // What the health engine does when both primaries fail their checks.
    for name in ["b1", "b2"] {
        lab.registry
            .server("app", name)
            .expect("state")
            .set_health(false);
    }
    let after = tally(&spread(&lab, 80, 10, |_| "/".into()));
    assert_eq!(after, HashMap::from([("b3".into(), 10)]));
    lab.registry
        .server("app", "b1")
        .expect("state")
        .set_health(true);
    assert_eq!(
        tally(&spread(&lab, 80, 5, |_| "/".into())),
        HashMap::from([("b1".into(), 5)])
    );
}

#[test]
fn retries_and_redispatch_hide_a_dead_server() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend(
            "app",
            "retries = 2\nredispatch = true",
            &lab.servers(&[0, 1, 2], "")
        ),
    );
    lab.start(&config).expect("start");
    lab.backends[0].server = None; // b1's port now refuses connections
    let replies = spread(&lab, 80, 30, |_| "/".into());
    assert!(replies.iter().all(|r| r.status == 200), "a request failed");
    let counts = tally(&replies);
    assert!(!counts.contains_key("b1"));
    let status = lab.status();
    let app = status
        .backends
        .iter()
        .find(|b| b.name == "app")
        .expect("app");
    let b1 = app.servers.iter().find(|s| s.name == "b1").expect("b1");
    // Every third request picked b1: `retries = 2` is three attempts, the
    // first two on b1, the last redispatched to another server.
    assert_eq!(app.counters.redispatches, 10, "{:?}", app.counters);
    assert_eq!(app.counters.retries, 20);
    assert_eq!(b1.counters.connection_errors, 20);
    assert_eq!(app.counters.connection_errors, 20);
}

#[test]
fn websocket_echo_through_the_proxy() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend(
            "web",
            80,
            "default_backend = \"app\"\nhttp_connection_mode = \"http-server-close\""
        ),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let echoed = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            let reply = client.raw(
                b"GET /chat HTTP/1.1\r\nHost: test.lbd\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )?;
            anyhow::ensure!(reply.status == 101, "status {}", reply.status);
            let mut echoed = Vec::new();
            for message in ["hello", "through lbd"] {
                let mask = [1u8, 2, 3, 4];
                let mut frame = vec![0x81, 0x80 | message.len() as u8];
                frame.extend_from_slice(&mask);
                frame.extend(message.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                client.stream().try_clone()?.write_all(&frame)?;
                let mut header = [0u8; 2];
                client.reader().read_exact(&mut header)?;
                let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
                client.reader().read_exact(&mut payload)?;
                echoed.push(String::from_utf8(payload)?);
            }
            Ok(echoed)
        })
        .expect("websocket");
    assert_eq!(echoed, ["hello", "through lbd"]);
}

#[test]
fn slow_loris_is_closed_at_http_request_while_others_are_served() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let defaults = DEFAULTS.replace("http_request = \"5s\"", "http_request = \"1s\"");
    let config = format!(
        "{defaults}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let (closed_after, served) = lab
        .on_client(|| {
            let mut loris = Client::connect(vip(80))?;
            let start = Instant::now();
            let drip = loris.stream().try_clone()?;
            let dripper = std::thread::spawn(move || {
                let mut drip = drip;
                for byte in b"GET / HTTP/1.1\r\nHost: test.lbd\r\nX-Slow: 1234567890" {
                    if drip.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let mut served = 0;
            for _ in 0..10 {
                served += usize::from(get_once(vip(80), "/", &[])?.status == 200);
                std::thread::sleep(Duration::from_millis(50));
            }
            let closed = loris.closed_within(Duration::from_secs(5));
            let closed_after = start.elapsed();
            let _ = dripper.join();
            anyhow::ensure!(closed, "the slow client was not closed");
            Ok((closed_after, served))
        })
        .expect("slow loris");
    assert_eq!(served, 10);
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}"
    );
    let web = lab
        .status()
        .frontends
        .into_iter()
        .find(|f| f.name == "web")
        .expect("web");
    assert_eq!(web.counters.request_errors, 1);
}

#[test]
fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let garbage: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ];
    let (statuses, good) = lab
        .on_client(|| {
            let mut statuses = Vec::new();
            for i in 0..200 {
                let mut client = Client::connect(vip(80))?;
                let reply = client.raw(garbage[i % garbage.len()])?;
                anyhow::ensure!(
                    client.closed_within(Duration::from_secs(2)),
                    "connection {i} left open"
                );
                statuses.push(reply.status);
            }
            Ok((statuses, get_once(vip(80), "/", &[])?))
        })
        .expect("requests");
    assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(good.status, 200);
    assert_eq!(lab.backends[0].requests(), 1);
    let web = lab
        .status()
        .frontends
        .into_iter()
        .find(|f| f.name == "web")
        .expect("web");
    assert_eq!(web.counters.request_errors, 200);
}

/// Held connections: the client side runs in a helper process (this test
/// binary again, `hold_connections_helper`), so each process stays within
/// its descriptor limit.
const HELD: usize = 10_000;

#[test]
fn ten_thousand_idle_keep_alive_connections_are_held() {
    raise_nofile_to_hard();
    let mut lab = ProxyLab::build(1).expect("lab");
    let defaults = DEFAULTS.replace("http_keep_alive = \"30s\"", "http_keep_alive = \"2m\"");
    let config = format!(
        "{defaults}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let exe = std::env::current_exe().expect("test binary");
    let mut command = lab.client.command(
        exe.to_str().expect("path"),
        &[
            "--exact",
            "hold_connections_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
    );
    command
        .env("LBD_HOLD_TARGET", vip(80).to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut helper = command.spawn().expect("helper");
    let helper_pid = helper.id();
    // Stops the helper if an assertion below fails.
    let _stop_helper = StopOnDrop(helper_pid);
    let mut lines = std::io::BufReader::new(helper.stdout.take().expect("stdout"));
    let mut line = String::new();
    let held = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut lines, &mut line).expect("helper output");
        assert!(n > 0, "helper ended before holding its connections");
        // libtest prints the test's name on the same line first.
        if let Some(count) = line.trim().split("held ").nth(1) {
            break count.parse::<usize>().expect("count");
        }
    };
    assert_eq!(held, HELD);
    let web = lab
        .status()
        .frontends
        .into_iter()
        .find(|f| f.name == "web")
        .expect("web");
    assert_eq!(web.counters.sessions_current, HELD as u64);
    // Idle for a while; then the helper reuses every 100th connection, and
    // a new client is served meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let fresh = lab
        .on_client(|| get_once(vip(80), "/", &[]))
        .expect("fresh");
    assert_eq!(fresh.status, 200);
    writeln!(helper.stdin.as_mut().expect("stdin"), "go").expect("tell helper");
    let mut rest = String::new();
    lines.read_to_string(&mut rest).expect("helper output");
    let status = helper.wait().expect("helper exit");
    assert!(status.success(), "{rest}");
    assert!(rest.contains(&format!("reused {}", HELD / 100)), "{rest}");
}

/// The client side of `ten_thousand_idle_keep_alive_connections_are_held`
/// (does nothing unless that test starts it).
#[test]
#[ignore]
fn hold_connections_helper() {
    let Ok(target) = std::env::var("LBD_HOLD_TARGET") else {
        return;
    };
    raise_nofile_to_hard();
    let target: std::net::SocketAddr = target.parse().expect("target");
    let mut held: Vec<Client> = (0..HELD)
        .map(|i| {
            let mut client =
                Client::connect(target).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(client.get("/", &[]).expect("request").status, 200);
            client
        })
        .collect();
    println!("held {}", held.len());
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("stdin");
    let reused = held
        .iter_mut()
        .step_by(100)
        .map(|c| c.get("/", &[]).is_ok_and(|r| r.status == 200))
        .filter(|ok| *ok)
        .count();
    println!("reused {reused}");
}

struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Raises this process's soft descriptor limit to the hard one.
fn raise_nofile_to_hard() {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("Max open files")
        .to_owned();
    let pid = std::process::id().to_string();
    let value = format!("--nofile={hard}:{hard}");
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &value])
        .status()
        .expect("prlimit");
    assert!(status.success(), "prlimit {value}");
}

#[test]
fn reload_under_wrk_load_fails_no_request() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let server_lines: Vec<String> = (0..3).map(|i| lab.servers(&[i], "")).collect();
    let config = |servers: &[usize], weight: u32| {
        let lines: String = servers
            .iter()
            .map(|&i| format!("{}\nweight = {weight}\n", server_lines[i].trim_end()))
            .collect();
        format!(
            "{DEFAULTS}{}{}",
            frontend("web", 80, "default_backend = \"app\""),
            backend("app", "", &lines),
        )
    };
    let first = config(&[0, 1], 1);
    lab.start(&first).expect("start");
    let wrk = lab
        .client
        .command(
            "wrk",
            &["-t2", "-c32", "-d6s", &format!("http://{}/", vip(80))],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wrk");
    let reloads = [
        config(&[0, 1, 2], 1),
        config(&[1, 2], 2),
        config(&[0, 1, 2], 3),
        first.clone(),
    ];
    for text in reloads.iter().cycle().take(8) {
        std::thread::sleep(Duration::from_millis(500));
        lab.reload(text).expect("reload");
    }
    let output = wrk.wait_with_output().expect("wrk output");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    let requests: u64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.parse().ok())
        })
        .flatten()
        .unwrap_or(0);
    assert!(requests > 1000, "{report}");
    // b3 joined on a reload and served.
    assert!(lab.backends[2].requests() > 0);
}

#[test]
fn tcp_mode_relays_both_ways_with_half_close() {
    let mut lab = ProxyLab::build(2).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("kube", 6443, "mode = \"tcp\"\ndefault_backend = \"kube\""),
        backend(
            "kube",
            "mode = \"tcp\"\nbalance = \"roundrobin\"",
            &lab.servers(&[0, 1], "")
        ),
    );
    lab.start(&config).expect("start");
    // The test backends speak HTTP: a request written then half-closed
    // comes back as a response, through the relay both ways.
    let names = lab
        .on_client(|| {
            (0..4)
                .map(|_| {
                    let mut stream = std::net::TcpStream::connect(vip(6443))?;
                    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                    stream.shutdown(std::net::Shutdown::Write)?;
                    let mut reply = String::new();
                    stream.read_to_string(&mut reply)?;
                    Ok(reply.rsplit("\r\n\r\n").next().unwrap_or("").to_owned())
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .expect("tcp");
    assert_eq!(names, ["b1", "b2", "b1", "b2"]);
    let status = lab.status();
    let kube = status
        .backends
        .iter()
        .find(|b| b.name == "kube")
        .expect("kube");
    assert_eq!(kube.counters.sessions_total, 4);
    assert!(kube.counters.bytes_in > 0 && kube.counters.bytes_out > 0);
}

/// Not a pass/fail test: measures the tcp-mode relay engines side by side
/// (iperf3 through a tcp frontend, 3 runs of 4 s each, alternating) and
/// prints the figures. Run explicitly:
/// `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test proxy_netns -- --ignored --nocapture tcp_relay_splice_vs_copy`
#[test]
#[ignore]
fn tcp_relay_splice_vs_copy() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("bulk", 5201, "mode = \"tcp\"\ndefault_backend = \"bulk\""),
        backend(
            "bulk",
            "mode = \"tcp\"",
            "[[backend.server]]\nname = \"iperf\"\naddress = \"198.18.0.11:5201\"\n"
        ),
    );
    lab.start(&config).expect("start");
    let server = lb_tests::process::ChildGuard::spawn(
        lab.backends[0].command("iperf3", &["-s", "-B", "198.18.0.11"]),
        "iperf3 server",
    )
    .expect("iperf3 -s");
    std::thread::sleep(Duration::from_millis(500));
    let mut results: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..3 {
        for (engine, splice) in [("splice", true), ("copy", false)] {
            lab.proxy.as_ref().expect("proxy").set_splice(splice);
            let output = lab
                .client
                .exec(
                    "iperf3",
                    &["-c", &kit::VIP.to_string(), "-p", "5201", "-t", "4", "-J"],
                )
                .expect("iperf3 -c");
            let json: serde_json::Value = serde_json::from_str(&output).expect("iperf3 json");
            let bps = json["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .expect("bps");
            let cpu = json["end"]["cpu_utilization_percent"]["host_total"]
                .as_f64()
                .unwrap_or(0.0);
            println!(
                "{engine}: {:.2} Gbit/s (iperf3 client host cpu {cpu:.0}%)",
                bps / 1e9
            );
            results.entry(engine).or_default().push(bps / 1e9);
        }
    }
    drop(server);
    for (engine, runs) in &results {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{engine}: median {:.2} Gbit/s, runs {sorted:.2?}",
            sorted[1]
        );
    }
}

/// lbd itself runs the proxy from lb.toml beside an XDP service: requests
/// through a frontend reach the backends, `lbd status --json` reports the
/// proxy's counters, and a reload (SIGHUP) moves the frontend to another
/// port (the old listener closes, the new one serves).
#[test]
fn lbd_runs_reloads_and_reports_the_proxy() {
    use lb_tests::topology::{lbd_binary, DsrLab};
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).expect("lab");
    let proxy = |port: u16| {
        format!(
            "\n[global]\n[[global.log]]\ntarget = \"127.0.0.1:514\"\nfacility = \"local2\"\n\
             [defaults]\nmode = \"http\"\nlog = true\ndontlognull = true\n\
             timeout = {{ connect = \"2s\", client = \"10s\", server = \"10s\" }}\n\
             [[frontend]]\nname = \"web\"\nbind = [\"{}:{port}\"]\ndefault_backend = \"app\"\n\
             [[backend]]\nname = \"app\"\n\
             [[backend.server]]\nname = \"b1\"\naddress = \"198.18.0.11:8080\"\n\
             [[backend.server]]\nname = \"b2\"\naddress = \"198.18.0.12:8080\"\n",
            lb_tests::topology::VIP
        )
    };
    // The seed's rsyslog: local2 on 127.0.0.1:514, access lines in one file.
    let rsyslog = lb_tests::rsyslog::Rsyslog::start(
        lab.lb(),
        "127.0.0.1:514".parse().expect("addr"),
        "local2",
        false,
    )
    .expect("rsyslogd");
    lab.write_config(&format!("{}{}", lab.config(2), proxy(8081)))
        .expect("config");
    lab.start_lbd(&lbd).expect("lbd");
    let url = |port: u16| format!("http://{}:{port}/", lb_tests::topology::VIP);
    let curl = |port: u16| lab.client.exec("curl", &["-s", "-m", "3", &url(port)]);
    let bodies: Vec<String> = (0..4).map(|_| curl(8081).expect("curl 8081")).collect();
    assert_eq!(bodies, ["b1", "b2", "b1", "b2"]);
    // One httplog line per request, through syslog local2.info.
    let line = rsyslog
        .wait_for_line(
            lb_tests::rsyslog::LogFile::Access,
            Duration::from_secs(5),
            |l| {
                l.contains(" web app/b2 ")
                    && l.contains(" 200 ")
                    && l.contains("\"GET / HTTP/1.1\"")
            },
        )
        .expect("access line");
    assert!(line.contains("198.18.0.2:"), "{line}");

    // The state file is refreshed every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let web = loop {
        let report = lab.status(&lbd).expect("status");
        let web = report
            .proxy
            .and_then(|p| p.frontends.into_iter().find(|f| f.name == "web"));
        match web {
            Some(web) if web.counters.sessions_total >= 4 => break web,
            _ if Instant::now() > deadline => {
                panic!("no proxy counters in lbd status: {}", lab.lbd_log())
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(web.binds, [format!("{}:8081", lb_tests::topology::VIP)]);
    let text = lb_tests::netns::run(std::process::Command::new(&lbd).args([
        "status",
        "--instance",
        &lab.instance,
    ]))
    .expect("lbd status");
    assert!(
        text.contains("web/FRONTEND") && text.contains("app/b1"),
        "{text}"
    );

    lab.write_config(&format!("{}{}", lab.config(2), proxy(8082)))
        .expect("config");
    lab.reload_lbd().expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(8082).is_err() {
        assert!(
            Instant::now() < deadline,
            "8082 never served: {}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(curl(8081).is_err(), "the old frontend port still answers");
    assert!(
        lab.stop_lbd(),
        "lbd did not stop cleanly: {}",
        lab.lbd_log()
    );
}

/// `[[backend.server]]` lines for real nginx backends on port 80.
fn nginx_servers(indexes: &[usize]) -> String {
    indexes
        .iter()
        .map(|&i| {
            format!(
                "[[backend.server]]\nname = \"b{}\"\naddress = \"{}:80\"\n",
                i + 1,
                kit::backend_addr(i)
            )
        })
        .collect()
}

/// Against real nginx backends: what reached them (their access logs) over
/// one kept-alive client connection: round robin, the forwarding headers,
/// and the server side's connection reuse per connection mode — kept alive
/// by default (requests share nginx connections), one connection per
/// request with `http-server-close`.
#[test]
fn nginx_sees_forwarding_headers_and_the_connection_mode() {
    let mut lab = ProxyLab::build(2).expect("lab");
    let nginx: Vec<_> = (0..2)
        .map(|i| lab.backends[i].nginx(i).expect("nginx"))
        .collect();
    let config = format!(
        "{DEFAULTS}{}{}{}{}",
        frontend(
            "keepalive",
            80,
            "forwardfor = true\ndefault_backend = \"pooled\""
        ),
        frontend(
            "serverclose",
            81,
            "forwardfor = true\ndefault_backend = \"closing\""
        ),
        backend("pooled", "", &nginx_servers(&[0, 1])),
        backend(
            "closing",
            "http_connection_mode = \"http-server-close\"",
            &nginx_servers(&[0, 1])
        ),
    );
    lab.start(&config).expect("start");
    let replies: Vec<kit::client::Reply> = lab
        .on_client(|| {
            let mut all = Vec::new();
            for port in [80, 81] {
                let mut client = Client::connect(vip(port))?;
                for i in 0..10 {
                    all.push(client.get(&format!("/page/{port}/{i}"), &[])?);
                }
            }
            Ok(all)
        })
        .expect("requests");
    assert!(replies.iter().all(|r| r.status == 200));
    // The client connection stays open with http-server-close too.
    assert!(replies
        .iter()
        .all(|r| r.header("connection") != Some("close")));
    let logs: Vec<_> = nginx
        .iter()
        .map(|n| {
            n.wait_for_requests(10, Duration::from_secs(5))
                .expect("nginx log")
        })
        .collect();
    for log in &logs {
        assert_eq!(log.len(), 10, "round robin: 5 per backend and frontend");
        for entry in log {
            assert_eq!(entry.x_forwarded_for.as_deref(), Some("198.18.0.2"));
            assert_eq!(entry.x_forwarded_proto.as_deref(), Some("http"));
            assert_eq!(entry.x_forwarded_host.as_deref(), Some("test.lbd"));
            assert_eq!(entry.remote_addr.to_string(), "198.18.0.1");
        }
        let pooled: Vec<_> = log
            .iter()
            .filter(|e| e.uri.starts_with("/page/80/"))
            .collect();
        let closing: Vec<_> = log
            .iter()
            .filter(|e| e.uri.starts_with("/page/81/"))
            .collect();
        assert_eq!((pooled.len(), closing.len()), (5, 5));
        assert!(
            pooled.iter().any(|e| e.connection_requests > 1),
            "keep-alive mode reused no server connection: {pooled:?}"
        );
        assert!(
            closing.iter().all(|e| e.connection_requests == 1),
            "http-server-close reused a server connection: {closing:?}"
        );
    }
}

/// HTTP/2 from the client (h2c, prior knowledge) to an HTTP/1.1 nginx.
#[test]
fn h2c_prior_knowledge_reaches_an_http11_backend() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let nginx = lab.backends[0].nginx(0).expect("nginx");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &nginx_servers(&[0])),
    );
    lab.start(&config).expect("start");
    let out = lab
        .client
        .exec(
            "curl",
            &[
                "-s",
                "-m",
                "5",
                "--http2-prior-knowledge",
                "-w",
                " %{http_version} %{http_code}",
                &format!("http://{}/h2", vip(80)),
            ],
        )
        .expect("curl");
    assert_eq!(out, "b1\n 2 200");
    let log = nginx
        .wait_for_requests(1, Duration::from_secs(5))
        .expect("log");
    assert_eq!(
        (log[0].protocol.as_str(), log[0].uri.as_str()),
        ("HTTP/1.1", "/h2")
    );
}

/// A server at its `maxconn` queues requests within `timeout queue`; one
/// that answers later than `timeout server` is a 504 with HAProxy's page.
#[test]
fn server_maxconn_queues_and_a_late_server_is_a_504() {
    let mut lab = ProxyLab::build(2).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}{}{}",
        frontend("queued", 80, "default_backend = \"one\""),
        frontend("late", 81, "default_backend = \"late\""),
        backend("one", "", &lab.servers(&[0], "maxconn = 1")),
        backend(
            "late",
            "timeout = { server = \"300ms\" }",
            &lab.servers(&[1], "")
        ),
    );
    lab.start(&config).expect("start");
    lab.backends[0].set_delay_ms(300);
    lab.backends[1].set_delay_ms(1500);
    let (queued, late) = lab
        .on_client(|| {
            let clients: Vec<_> = (0..4)
                .map(|_| std::thread::spawn(|| get_once(vip(80), "/", &[])))
                .collect();
            let mut replies = Vec::new();
            for client in clients {
                replies.push(client.join().map_err(|_| anyhow::anyhow!("panicked"))??);
            }
            Ok((replies, get_once(vip(81), "/", &[])?))
        })
        .expect("requests");
    assert!(queued.iter().all(|r| r.status == 200));
    let status = lab.status();
    let one = status
        .backends
        .iter()
        .find(|b| b.name == "one")
        .expect("one");
    assert_eq!(
        one.servers[0].counters.sessions_max, 1,
        "maxconn 1 exceeded"
    );
    assert!(one.counters.queue_max >= 2, "{:?}", one.counters);
    assert_eq!(late.status, 504);
    assert!(String::from_utf8_lossy(&late.body).contains("The server didn't respond in time."));
}

/// http-request deny / redirect / set-header and http-response
/// set-header / del-header, as the client sees them.
#[test]
fn request_and_response_rules_apply() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let rules = "default_backend = \"app\"\n\
        http_request = [\"deny if { path_beg /admin }\", \"redirect location /new code 301 if { path /old }\", \"set-header X-Forwarded-For rewritten\"]\n\
        http_response = [\"set-header X-Served-By lbd\", \"del-header X-Seen-Path\"]";
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, rules),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let (denied, moved, plain) = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            Ok((
                client.get("/admin/x", &[])?,
                client.get("/old", &[])?,
                client.get("/page", &[])?,
            ))
        })
        .expect("requests");
    assert_eq!(denied.status, 403);
    assert!(String::from_utf8_lossy(&denied.body)
        .contains("Request forbidden by administrative rules."));
    assert_eq!(
        (moved.status, moved.header("location")),
        (301, Some("/new"))
    );
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-seen-forwarded-for"), Some("rewritten"));
    assert_eq!(plain.header("x-served-by"), Some("lbd"));
    assert_eq!(plain.header("x-seen-path"), None);
    assert_eq!(
        lab.backends[0].requests(),
        1,
        "denied and redirected requests reached the server"
    );
    let web = lab
        .status()
        .frontends
        .into_iter()
        .find(|f| f.name == "web")
        .expect("web");
    assert_eq!(web.counters.denied_requests, 1);
}

/// A request head over 16 KiB is refused (431) and counted.
#[test]
fn an_oversized_request_head_is_refused() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let big = "x".repeat(20 * 1024);
    let (refused, fine) = lab
        .on_client(|| {
            let refused = get_once(vip(80), "/", &[("X-Big", &big)])?;
            let fine = get_once(vip(80), "/", &[("X-Small", &big[..4000])])?;
            Ok((refused, fine))
        })
        .expect("requests");
    assert_eq!(refused.status, 431);
    assert_eq!(fine.status, 200);
    assert_eq!(lab.backends[0].requests(), 1);
}

/// At the frontend's `maxconn`, a new connection waits in the kernel's
/// backlog (it is not refused) and is served once a slot frees.
#[test]
fn frontend_maxconn_leaves_excess_connections_in_the_backlog() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "maxconn = 2\ndefault_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let (waited, served) = lab
        .on_client(|| {
            let mut first = Client::connect(vip(80))?;
            let mut second = Client::connect(vip(80))?;
            anyhow::ensure!(
                first.get("/", &[])?.status == 200 && second.get("/", &[])?.status == 200
            );
            // Connects (the kernel completes the handshake) but is not served.
            let mut third = Client::connect(vip(80))?;
            third
                .stream()
                .set_read_timeout(Some(Duration::from_millis(800)))?;
            let waited = third.get("/", &[]).is_err();
            drop(first);
            third
                .stream()
                .set_read_timeout(Some(Duration::from_secs(5)))?;
            let served = third.read_reply()?.status;
            Ok((waited, served))
        })
        .expect("clients");
    assert!(waited, "the third connection was served above maxconn");
    assert_eq!(served, 200);
}

/// `timeout http_keep_alive` closes a kept-alive connection idle between
/// requests, and never a request in progress (a server slower than it).
#[test]
fn idle_keep_alive_connections_close_at_http_keep_alive() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let defaults = DEFAULTS.replace("http_keep_alive = \"30s\"", "http_keep_alive = \"500ms\"");
    let config = format!(
        "{defaults}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    lab.backends[0].set_delay_ms(1000);
    let (slow, closed_after) = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            let slow = client.get("/", &[])?.status;
            let idle = Instant::now();
            anyhow::ensure!(client.closed_within(Duration::from_secs(5)), "kept open");
            Ok((slow, idle.elapsed()))
        })
        .expect("client");
    assert_eq!(slow, 200);
    assert!(
        closed_after >= Duration::from_millis(400) && closed_after < Duration::from_millis(1500),
        "closed after {closed_after:?}"
    );
}

/// A server that answers with something that is not HTTP: 502 with
/// HAProxy's page, counted as a response error, and the proxy goes on.
#[test]
fn a_broken_server_response_is_a_502() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("web", 80, "default_backend = \"app\""),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let (broken, fine) = lab
        .on_client(|| {
            Ok((
                get_once(vip(80), "/broken", &[])?,
                get_once(vip(80), "/", &[])?,
            ))
        })
        .expect("requests");
    assert_eq!(broken.status, 502);
    assert!(String::from_utf8_lossy(&broken.body).contains("invalid or incomplete response"));
    assert_eq!(fine.status, 200);
    let status = lab.status();
    let app = status
        .backends
        .iter()
        .find(|b| b.name == "app")
        .expect("app");
    assert_eq!(app.counters.response_errors, 1);
    assert_eq!(app.servers[0].counters.response_errors, 1);
}
