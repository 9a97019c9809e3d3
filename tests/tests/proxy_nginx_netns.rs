//! The proxy with real nginx backends, and run by lbd itself: what reaches
//! nginx (forwarding headers, connection reuse per connection mode, h2c to
//! HTTP/1.1), and lbd running, reloading and reporting the proxy with its
//! access log in the seed's rsyslog. Needs root. Run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test proxy_nginx_netns -- --test-threads=1`
// Shared by the proxy test binaries; each uses part of it.
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;

use kit::{backend, client::Client, frontend, vip, ProxyLab, DEFAULTS};
use std::time::{Duration, Instant};

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
