//! The L7 test kit's nginx backend, checked on its own so the proxy tests
//! can trust what it reports. Needs root; run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test kits_netns -- --test-threads=1`
use lb_tests::netns::Netns;
use lb_tests::nginx::{Nginx, NginxOptions};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

fn exchange(ns: &Netns, addr: SocketAddr, request: &str) -> anyhow::Result<String> {
    let request = request.to_owned();
    ns.run_in(move || -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(request.as_bytes())?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    })?
}

#[test]
fn nginx_backend_names_itself_logs_requests_and_stops_by_pid() -> anyhow::Result<()> {
    let ns = Netns::create("kit")?;
    ns.ip(&["addr", "add", "198.18.0.11/32", "dev", "lo"])?;
    let addr: SocketAddr = "198.18.0.11:80".parse()?;
    let mut options = NginxOptions::new("web1", &[addr]);
    options.slow = Some(Duration::from_millis(700));
    let mut nginx = Nginx::start_with(&ns, options)?;

    let reply = exchange(
        &ns,
        addr,
        "POST /static/a.css?v=2 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 198.18.0.2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("X-Backend: web1\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nweb1\n"), "{reply}");

    let started = Instant::now();
    let slow = exchange(
        &ns,
        addr,
        "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "answered too soon"
    );
    // The echo module answers chunked.
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(
        slow.contains("X-Backend: web1\r\n") && slow.contains("\r\nweb1\n"),
        "{slow}"
    );

    let health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(exchange(&ns, addr, health)?.starts_with("HTTP/1.1 200"));
    nginx.set_healthy(false)?;
    assert!(exchange(&ns, addr, health)?.starts_with("HTTP/1.1 503"));
    nginx.set_healthy(true)?;
    assert!(exchange(&ns, addr, health)?.starts_with("HTTP/1.1 200"));

    let log = nginx.wait_for_requests(5, Duration::from_secs(5))?;
    let first = &log[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.uri, "/static/a.css?v=2");
    assert_eq!(first.host.as_deref(), Some("shop.example"));
    assert_eq!(first.x_forwarded_for.as_deref(), Some("198.18.0.2"));
    assert_eq!(first.status, 200);
    assert_eq!(first.connection_requests, 1);
    let statuses: Vec<u16> = log.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [200, 200, 200, 503, 200]);
    assert_eq!(log[1].uri, "/slow");
    assert_eq!(log[1].x_forwarded_for, None);

    let pid = nginx.pid();
    assert!(nginx.stop(), "nginx exits on SIGTERM");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let refused = ns.run_in(|| TcpStream::connect_timeout(&addr, Duration::from_millis(500)))?;
    assert!(refused.is_err(), "nothing listens after stop");
    Ok(())
}
