//! Health checks, administrative states and live reload, end to end in
//! namespaces. Needs root.
use lb_tests::topology::{lbd_binary, DsrLab, HTTP_PORT, VIP};
use lbd::{cli::StatusReport, dataplane::BackendState};
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// Services web (TCP 80) and http (TCP 8080) over every backend, with
/// `check` as the services' `health_check` table.
fn config(lab: &DsrLab, web_extra: &str, http_extra: &str) -> String {
    let mut text = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\nmaglev_table_size = 251\nmax_services = 4\nmax_backends = 32\nconntrack_entries = 65536\n",
        lab.instance
    );
    for (name, port, extra) in [("web", 80, web_extra), ("http", HTTP_PORT, http_extra)] {
        text.push_str(&format!(
            "\n[[service]]\nname = \"{name}\"\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"tcp\"\n{extra}\n"
        ));
        for backend in &lab.backends {
            text.push_str(&format!(
                "[[service.backend]]\naddress = \"{}\"\n",
                backend.addr
            ));
        }
    }
    text
}

const TCP_CHECK: &str =
    "health_check = { kind = \"tcp\", interval = 0.2, timeout = 0.2, rise = 2, fall = 2 }";

fn backend_of<'r>(
    report: &'r StatusReport,
    service: &str,
    name: &str,
) -> &'r lbd::cli::BackendStatus {
    let svc = report
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some(service))
        .expect("service");
    let last = 11 + name.trim_start_matches('b').parse::<u8>().expect("bN") - 1;
    svc.backends
        .iter()
        .find(|b| b.address == std::net::IpAddr::from([198, 18, 0, last]))
        .expect("backend")
}

fn wait_backend(
    lab: &DsrLab,
    lbd: &Path,
    service: &str,
    name: &str,
    want: BackendState,
) -> Duration {
    // Every change here is due within a few check intervals.
    let limit = Duration::from_secs(3);
    let start = Instant::now();
    loop {
        if let Ok(report) = lab.status(lbd) {
            if backend_of(&report, service, name).state == Some(want) {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < limit,
            "{name} never became {want:?}; log:\n{}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn names(lab: &DsrLab, ports: std::ops::Range<u16>) -> Vec<String> {
    lab.tcp_names(ports)
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

fn lbd_cli(lbd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(lbd).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `lbd backend --instance INSTANCE web BACKEND STATE`.
fn lbd_backend(lbd: &Path, instance: &str, backend: &str, state: &str) -> (bool, String) {
    lbd_cli(
        lbd,
        &["backend", "--instance", instance, "web", backend, state],
    )
}

#[test]
fn a_stopped_backend_leaves_within_fall_intervals_and_returns_after_rise() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(3).unwrap();
    lab.write_config(&config(&lab, TCP_CHECK, "")).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let mut held = lab.hold_connections(27_000..27_060).unwrap();
    assert!(held.iter().any(|c| c.first_backend == "b2"));

    lab.backends[1].stop_server();
    // fall (2) × interval (0.2 s) + one interval = 0.6 s; 100 ms for polling.
    let left = wait_backend(&lab, &lbd, "web", "b2", BackendState::Down);
    assert!(left <= Duration::from_millis(700), "took {left:?}");
    assert!(
        lab.lbd_log().contains("backend is DOWN: connect refused"),
        "{}",
        lab.lbd_log()
    );
    let report = lab.status(&lbd).unwrap();
    let b2 = backend_of(&report, "web", "b2");
    assert_eq!(b2.health.as_deref(), Some("down"));
    assert_eq!(b2.last_check.as_deref(), Some("connect refused"));
    assert_eq!(b2.slots, Some(0));
    // The "http" service checks nothing: b2 stays in it.
    assert_eq!(
        backend_of(&report, "http", "b2").health.as_deref(),
        Some("unchecked")
    );

    // Other backends' flows are untouched; new flows avoid b2.
    for connection in held.iter_mut().filter(|c| c.first_backend != "b2") {
        assert_eq!(connection.ask().unwrap(), connection.first_backend);
    }
    let fresh = names(&lab, 28_000..28_150);
    assert!(!fresh.iter().any(|n| n == "b2"));

    lab.backends[1].start_server().unwrap();
    // rise (2) checks: between one and three intervals after it listens.
    let back = wait_backend(&lab, &lbd, "web", "b2", BackendState::Serving);
    assert!(back <= Duration::from_millis(700), "took {back:?}");
    assert!(lab.lbd_log().contains("backend is UP: ok"));
    assert!(names(&lab, 28_200..28_350).iter().any(|n| n == "b2"));
}

#[test]
fn an_http_check_with_a_wrong_status_marks_the_backend_down() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    let check = "health_check = { kind = \"http\", port = 8080, path = \"/healthz\", expect_status = \"200\", expect_body = \"b\", interval = 0.2, timeout = 0.5, rise = 1, fall = 1 }";
    lab.write_config(&config(&lab, check, "")).unwrap();
    lab.start_lbd(&lbd).unwrap();
    lab.backends[0].http.set_status(503);
    wait_backend(&lab, &lbd, "web", "b1", BackendState::Down);
    assert!(
        lab.lbd_log().contains("backend is DOWN: HTTP 503"),
        "{}",
        lab.lbd_log()
    );
    assert_eq!(
        backend_of(&lab.status(&lbd).unwrap(), "web", "b2").state,
        Some(BackendState::Serving)
    );
    lab.backends[0].http.set_status(200);
    wait_backend(&lab, &lbd, "web", "b1", BackendState::Serving);
}

#[test]
fn drain_keeps_established_connections_and_disable_moves_them() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(3).unwrap();
    lab.write_config(&config(&lab, "", "")).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let mut held = lab.hold_connections(29_000..29_060).unwrap();
    let on_b2 = held.iter().filter(|c| c.first_backend == "b2").count();
    assert!(on_b2 > 5, "{on_b2}");

    let instance = lab.instance.clone();
    let (ok, text) = lbd_backend(&lbd, &instance, "198.18.0.12", "drain");
    assert!(ok, "{text}");
    let report = lab.status(&lbd).unwrap();
    assert_eq!(
        backend_of(&report, "web", "b2").state,
        Some(BackendState::Draining)
    );
    assert_eq!(
        backend_of(&report, "web", "b2").admin,
        Some(lbd::health::AdminState::Drain)
    );
    for connection in &mut held {
        assert_eq!(
            connection.ask().unwrap(),
            connection.first_backend,
            "established flows stay"
        );
    }
    assert!(
        !names(&lab, 29_100..29_250).iter().any(|n| n == "b2"),
        "new flows avoid a draining backend"
    );

    let (ok, text) = lbd_backend(&lbd, &instance, "198.18.0.99", "drain");
    assert!(
        !ok && text.contains("no backend 198.18.0.99 in service web"),
        "{text}"
    );

    let (ok, _) = lbd_backend(&lbd, &instance, "198.18.0.12:80", "disable");
    assert!(ok);
    assert_eq!(
        backend_of(&lab.status(&lbd).unwrap(), "web", "b2").state,
        Some(BackendState::Down)
    );
    // Its flows now re-hash to other backends, which do not know them.
    for connection in held.iter_mut().filter(|c| c.first_backend == "b2") {
        assert!(
            connection.ask().is_err(),
            "a disabled backend's flow must move"
        );
    }
    let (ok, _) = lbd_backend(&lbd, &instance, "198.18.0.12", "enable");
    assert!(ok);
    assert!(names(&lab, 29_300..29_450).iter().any(|n| n == "b2"));
}

#[test]
fn every_backend_down_drops_or_fails_open_as_configured() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    let open = format!("{TCP_CHECK}\non_all_down = \"fail_open\"");
    lab.write_config(&config(
        &lab,
        TCP_CHECK,
        &open.replace("kind = \"tcp\"", "kind = \"tcp\", port = 80"),
    ))
    .unwrap();
    lab.start_lbd(&lbd).unwrap();
    for backend in &mut lab.backends {
        backend.stop_server();
    }
    wait_backend(&lab, &lbd, "web", "b1", BackendState::Down);
    wait_backend(&lab, &lbd, "web", "b2", BackendState::Down);
    let report = lab.status(&lbd).unwrap();
    let web = report.services.iter().find(|s| s.port == 80).unwrap();
    assert_eq!(web.table_size, 0, "drop: an empty table");
    // "http" checks port 80 too (its own checks), but fails open: once both
    // are down its table keeps them.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let report = lab.status(&lbd).unwrap();
        let http = report
            .services
            .iter()
            .find(|s| s.port == HTTP_PORT)
            .unwrap();
        let all_down = http
            .backends
            .iter()
            .all(|b| b.health.as_deref() == Some("down"));
        if all_down {
            assert!(http.table_size > 0);
            assert!(http
                .backends
                .iter()
                .all(|b| b.state == Some(BackendState::Serving)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "http's checks never failed: {:?}",
            http.backends
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lab.lbd_log().contains("failing open"), "{}", lab.lbd_log());
}

#[test]
fn reload_validates_first_and_loses_no_request_under_load() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(3).unwrap();
    lab.write_config(&config(&lab, "", "")).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let instance = lab.instance.clone();

    // A bad file changes nothing and says why.
    let good = std::fs::read_to_string(lab.config_path()).unwrap();
    lab.write_config(&good.replace("port = 80\n", "port = 80\nbogus = 1\n"))
        .unwrap();
    let (ok, text) = lbd_cli(&lbd, &["reload", "--instance", &instance]);
    assert!(!ok && text.contains("unknown field `bogus`"), "{text}");

    // A good one (b1 weighs 3 in "http": a new table) is applied under a
    // wrk load; established connections keep their backends.
    let reweighted = {
        let (head, http) = good.split_at(good.find("name = \"http\"").unwrap());
        format!(
            "{head}{}",
            http.replacen(
                "address = \"198.18.0.11\"\n",
                "address = \"198.18.0.11\"\nweight = 3\n",
                1
            )
        )
    };
    lab.write_config(&reweighted).unwrap();
    let mut wrk = lab.client.command(
        "wrk",
        &["-t2", "-c8", "-d3s", &format!("http://{VIP}:{HTTP_PORT}/")],
    );
    wrk.stdout(std::process::Stdio::piped());
    let wrk = wrk.spawn().unwrap();
    let reloader = std::thread::spawn({
        let lbd = lbd.clone();
        move || {
            std::thread::sleep(Duration::from_millis(1500));
            lbd_cli(&lbd, &["reload", "--instance", &instance])
        }
    });
    let wrk = wrk.wait_with_output().unwrap();
    let (ok, text) = reloader.join().unwrap();
    assert!(ok, "{text}");
    let out = String::from_utf8_lossy(&wrk.stdout);
    assert!(wrk.status.success(), "{out}");
    assert!(
        !out.contains("Socket errors") && !out.contains("Non-2xx"),
        "failed requests during reload:\n{out}"
    );
    let requests: u64 = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 100, "{out}");
    let report = lab.status(&lbd).unwrap();
    assert_eq!(
        backend_of(&report, "http", "b1").weight,
        Some(3),
        "the reload applied"
    );
    assert!(report.flows > 0, "the connection table survived the reload");
}

#[test]
fn https_and_command_checks_follow_their_targets() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    let dir = lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("tls")).unwrap();
    let (cert, key) = (dir.path.join("c.pem"), dir.path.join("k.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=backend",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut tls_servers: Vec<Option<lb_tests::process::ChildGuard>> = lab
        .backends
        .iter()
        .map(|b| {
            let mut c = b.ns.command(
                "openssl",
                &[
                    "s_server",
                    "-quiet",
                    "-accept",
                    "8443",
                    "-www",
                    "-cert",
                    &cert.display().to_string(),
                    "-key",
                    &key.display().to_string(),
                ],
            );
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            Some(lb_tests::process::ChildGuard::spawn(c, "openssl s_server").unwrap())
        })
        .collect();
    for backend in &lab.backends {
        std::fs::write(dir.path.join(format!("up-{}", backend.addr)), "").unwrap();
    }
    let https = "health_check = { kind = \"https\", port = 8443, tls_skip_verify = true, interval = 0.2, timeout = 1, rise = 1, fall = 1 }";
    let command = format!(
        "health_check = {{ kind = \"command\", command = \"test -e {}/up-{{address}}\", interval = 0.2, rise = 1, fall = 1 }}",
        dir.path.display()
    );
    lab.write_config(&config(&lab, https, &command)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend_of(&lab.status(&lbd).unwrap(), "web", "b1")
        .last_check
        .as_deref()
        != Some("ok")
    {
        assert!(
            Instant::now() < deadline,
            "the HTTPS check never succeeded: {}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::remove_file(dir.path.join("up-198.18.0.12")).unwrap();
    wait_backend(&lab, &lbd, "http", "b2", BackendState::Down);
    assert!(
        lab.lbd_log()
            .contains("backend is DOWN: command exit status: 1"),
        "{}",
        lab.lbd_log()
    );

    tls_servers[0] = None;
    wait_backend(&lab, &lbd, "web", "b1", BackendState::Down);

    // With verification, a self-signed certificate fails the check.
    let verified = config(
        &lab,
        &https.replace("tls_skip_verify = true", "tls_skip_verify = false"),
        &command,
    );
    lab.write_config(&verified).unwrap();
    let (ok, text) = lbd_cli(&lbd, &["reload", "--instance", &lab.instance.clone()]);
    assert!(ok, "{text}");
    wait_backend(&lab, &lbd, "web", "b2", BackendState::Down);
    let report = lab.status(&lbd).unwrap();
    let cause = backend_of(&report, "web", "b2")
        .last_check
        .clone()
        .unwrap_or_default();
    assert!(cause.starts_with("TLS:"), "{cause}");
    drop(tls_servers);
}
