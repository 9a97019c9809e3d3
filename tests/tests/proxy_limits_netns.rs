//! The proxy's limits and timeouts end to end in namespaces: slow loris,
//! malformed and oversized requests, idle keep-alive, 10,000 held
//! connections, a burst spread over the workers, frontend and server
//! `maxconn`, `timeout server`, a broken server. Needs root. Run under the
//! team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test proxy_limits_netns -- --test-threads=1`
// Shared by the proxy test binaries; each uses part of it.
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;

use kit::{backend, client::get_once, client::Client, frontend, vip, ProxyLab, DEFAULTS};
use lb_tests::proxy_status;
use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

#[test]
fn slow_loris_is_closed_at_http_request_while_others_are_served() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let defaults = DEFAULTS.replace("http_request = \"5s\"", "http_request = \"1s\"");
    let config = lab.web_to_app(&defaults, "", "", &[0]);
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
    let web = proxy_status::frontend(lab.status(), "web");
    assert_eq!(web.counters.request_errors, 1);
}

#[test]
fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = lab.web_to_app(DEFAULTS, "", "", &[0]);
    lab.start(&config).expect("start");
    let garbage: [&[u8]; 5] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
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
    let web = proxy_status::frontend(lab.status(), "web");
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
    let config = lab.web_to_app(&defaults, "", "", &[0]);
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
    let status = lab.status();
    assert_spread(&status.workers, HELD);
    let web = proxy_status::frontend(status, "web");
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

/// Connections accepted in a burst end spread evenly over the proxy's
/// workers, whichever worker the kernel woke first (`proxy::spread`).
#[test]
fn a_burst_of_connections_is_spread_over_the_workers() {
    const BURST: usize = 64;
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = lab.web_to_app(DEFAULTS, "", "", &[0]);
    lab.start(&config).expect("start");
    let clients = lab
        .on_client(|| {
            let mut clients = Vec::new();
            for _ in 0..BURST {
                clients.push(Client::connect(vip(80))?);
            }
            // Each connection served once: every one has been accepted.
            for client in &mut clients {
                anyhow::ensure!(client.get("/", &[])?.status == 200, "not served");
            }
            Ok(clients)
        })
        .expect("burst");
    assert_spread(&lab.status().workers, BURST);
    drop(clients);
}

/// `workers` (each worker's open connections) adds up to `total` and no
/// worker serves more than a few more than another (two workers racing to
/// accept may each hand over at once).
fn assert_spread(workers: &[u64], total: usize) {
    assert_eq!(workers.iter().sum::<u64>(), total as u64, "{workers:?}");
    let most = workers.iter().max().copied().unwrap_or(0);
    let least = workers.iter().min().copied().unwrap_or(0);
    assert!(most - least <= 4, "connections per worker: {workers:?}");
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
    let one = proxy_status::backend(lab.status(), "one");
    assert_eq!(
        one.servers[0].counters.sessions_max, 1,
        "maxconn 1 exceeded"
    );
    assert!(one.counters.queue_max >= 2, "{:?}", one.counters);
    assert_eq!(late.status, 504);
    assert!(String::from_utf8_lossy(&late.body).contains("The server didn't respond in time."));
}

/// `timeout server` at least as long as the frontend's shortest timeout is
/// kept by the connection's watchdog instead of a timer per request: a late
/// server is still a 504, on time, and a prompt one is still served.
#[test]
fn the_watchdog_keeps_timeout_server_on_time() {
    let mut lab = ProxyLab::build(2).expect("lab");
    let short =
        "timeout = { http_request = \"300ms\", http_keep_alive = \"300ms\", client = \"5s\" }";
    let config = format!(
        "{DEFAULTS}{}{}{}{}",
        frontend("late", 80, &format!("default_backend = \"late\"\n{short}")),
        frontend(
            "prompt",
            81,
            &format!("default_backend = \"prompt\"\n{short}")
        ),
        backend(
            "late",
            "timeout = { server = \"700ms\" }",
            &lab.servers(&[0], "")
        ),
        backend(
            "prompt",
            "timeout = { server = \"700ms\" }",
            &lab.servers(&[1], "")
        ),
    );
    lab.start(&config).expect("start");
    lab.backends[0].set_delay_ms(3000);
    lab.backends[1].set_delay_ms(200);
    let ((late, waited), prompt) = lab
        .on_client(|| {
            let started = std::time::Instant::now();
            let late = get_once(vip(80), "/", &[])?;
            let waited = started.elapsed();
            Ok(((late, waited), get_once(vip(81), "/", &[])?))
        })
        .expect("requests");
    assert_eq!(late.status, 504);
    assert!(String::from_utf8_lossy(&late.body).contains("The server didn't respond in time."));
    assert!(
        waited >= std::time::Duration::from_millis(650)
            && waited < std::time::Duration::from_millis(2000),
        "504 after {waited:?}, timeout server is 700ms"
    );
    assert_eq!(prompt.status, 200);
}

/// A request head over 16 KiB is refused (431) and counted.
#[test]
fn an_oversized_request_head_is_refused() {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = lab.web_to_app(DEFAULTS, "", "", &[0]);
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
    let config = lab.web_to_app(DEFAULTS, "maxconn = 2", "", &[0]);
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
    let config = lab.web_to_app(&defaults, "", "", &[0]);
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
    let config = lab.web_to_app(DEFAULTS, "", "", &[0]);
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
    let app = proxy_status::backend(lab.status(), "app");
    assert_eq!(app.counters.response_errors, 1);
    assert_eq!(app.servers[0].counters.response_errors, 1);
}
