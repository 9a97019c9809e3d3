//! The stats page in a real browser: Debian's headless Chromium, driven by
//! chromedriver over WebDriver, both started inside the load balancer's
//! namespace (where the page listens on loopback) against a running lbd
//! with XDP services, the proxy, VRRP and health checks on real nginx.
//! Needs root. Run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test stats_netns -- --test-threads=1`
use lb_tests::{
    browser::{basic, http, Browser, HttpResponse},
    netns,
    nginx::Nginx,
    topology::{backend_addr, lbd_binary, DsrLab, VIP},
};
use lbd::{cli::status::StatusReport, dataplane::programmer::BackendState, health::AdminState};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// A service name that would run if it were not escaped.
const EVIL: &str = "<script>window.__xss=1</script>";
const STATS: &str = "127.0.0.1:8404";
const URI: &str = "/hastat";
const NGINX_PORT: u16 = 8081;

fn config(lab: &DsrLab) -> String {
    let backends = |extra: &str| -> String {
        (0..2)
            .map(|i| {
                format!(
                    "[[service.backend]]\naddress = \"{}\"\nweight = 1\n{extra}",
                    backend_addr(i)
                )
            })
            .collect()
    };
    format!(
        r#"[instance]
name = "{instance}"
interface = "eth0"
maglev_table_size = 65537
max_services = 4
max_backends = 64
conntrack_entries = 65536

[[service]]
name = "web"
vip = "{VIP}"
port = 80
protocol = "tcp"
mode = "dsr"
health_check = {{ kind = "http", port = {NGINX_PORT}, path = "/", interval = 0.5, timeout = 0.5, rise = 1, fall = 1 }}
{web}
[[service]]
name = "{evil}"
vip = "{VIP}"
port = 53
protocol = "udp"
mode = "dsr"
{dns}
[[vrrp]]
name = "VI_1"
version = 3
vrid = 51
priority = 150
advert_int = 1
virtual_ipaddress = ["{VIP}"]

[defaults]
mode = "http"
timeout = {{ connect = "2s", client = "10s", server = "10s" }}

[[frontend]]
name = "fe_web"
bind = ["{VIP}:8080"]
default_backend = "app"

[[backend]]
name = "app"
[[backend.server]]
name = "n1"
address = "{b1}:{NGINX_PORT}"
check = true
inter = 500
fall = 1
rise = 1
[[backend.server]]
name = "n2"
address = "{b2}:{NGINX_PORT}"
check = true
inter = 500
fall = 1
rise = 1

# On n1's nginx too, but slow to fall: shown "UP, going down" for seconds.
[[backend]]
name = "slow"
[[backend.server]]
name = "n3"
address = "{b1}:{NGINX_PORT}"
check = true
inter = 500
fall = 10
rise = 2

[stats]
bind = "{STATS}"
uri = "{URI}"
realm = "lbd lab"
refresh = "1s"
admin = true
[[stats.user]]
name = "admin"
password = "s3cret"
"#,
        instance = lab.instance,
        evil = EVIL.replace('"', "\\\""),
        web = backends(""),
        dns = backends(""),
        b1 = backend_addr(0),
        b2 = backend_addr(1),
    )
}

/// A request to the stats server, from inside the balancer's namespace.
fn request(
    lab: &DsrLab,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let address: SocketAddr = STATS.parse().expect("address");
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    lab.lb()
        .run_in(|| {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            http(address, method, path, &headers, body.as_bytes())
        })
        .expect("namespace")
        .expect("request")
}

fn find_backend<'r>(
    report: &'r StatusReport,
    service: &str,
    index: usize,
) -> Option<&'r lbd::cli::BackendStatus> {
    let address = std::net::IpAddr::V4(backend_addr(index));
    report
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some(service))
        .and_then(|s| s.backends.iter().find(|b| b.address == address))
}

fn xdp_backend<'r>(
    report: &'r StatusReport,
    service: &str,
    index: usize,
) -> &'r lbd::cli::BackendStatus {
    find_backend(report, service, index)
        .unwrap_or_else(|| panic!("no backend {index} in {service}: {report:?}"))
}

fn proxy_server(report: &StatusReport, name: &str) -> String {
    report
        .proxy
        .as_ref()
        .and_then(|p| {
            p.backends
                .iter()
                .flat_map(|b| &b.servers)
                .find(|s| s.name == name)
        })
        .map(|s| s.status.clone())
        .unwrap_or_default()
}

/// The rows the page shows: (data-row, class, computed background).
fn rows(browser: &Browser) -> Vec<(String, String, String)> {
    let value = browser
        .eval(
            "return Array.from(document.querySelectorAll('tr[data-row], tr[data-vrrp]')).map(function(r){\
               return [r.getAttribute('data-row') || ('vrrp:' + r.getAttribute('data-vrrp')), r.className, getComputedStyle(r).backgroundColor];});",
            json!([]),
        )
        .expect("rows");
    serde_json::from_value(value).expect("row triples")
}

fn row<'r>(rows: &'r [(String, String, String)], name: &str) -> &'r (String, String, String) {
    rows.iter()
        .find(|r| r.0 == name)
        .unwrap_or_else(|| panic!("no row {name} on the page: {rows:?}"))
}

fn wait_status(
    lab: &DsrLab,
    lbd: &Path,
    what: &str,
    ok: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(report) = lab.status(lbd) {
            if ok(&report) {
                return report;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within 10 s: {report:#?}\n{}", lab.lbd_log());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metric(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name}: not a single value"),
    }
}

#[test]
fn the_stats_page_in_a_real_browser() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).expect("lab");
    lab.lb().ip(&["link", "set", "lo", "up"]).expect("lo up");
    let mut nginx: Vec<Option<Nginx>> = (0..2)
        .map(|i| {
            let listen = SocketAddr::from((backend_addr(i), NGINX_PORT));
            Some(
                Nginx::start(&lab.backends[i].ns, &format!("n{}", i + 1), &[listen])
                    .expect("nginx"),
            )
        })
        .collect();
    let text = config(&lab);
    lab.write_config(&text).expect("config");
    let check = Command::new(&lbd)
        .args([
            "check",
            "-c",
            &lab.config_path().display().to_string(),
            "--netns",
            lab.lb().name(),
        ])
        .output()
        .expect("lbd check");
    let warnings = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{warnings}");
    assert!(
        warnings.contains("warning: stats.user admin: password in clear text"),
        "{warnings}"
    );
    lab.start_lbd(&lbd).expect("lbd");
    let auth = basic("admin", "s3cret");

    // Without (valid) credentials: 401 and nothing else.
    let anonymous = request(&lab, "GET", URI, &[], "");
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Basic realm=\"lbd lab\", charset=\"UTF-8\"")
    );
    assert!(!anonymous.body.contains("web"), "{}", anonymous.body);
    let wrong = basic("admin", "s3cre");
    for path in [URI, "/metrics", "/hastat;csv", "/hastat;json"] {
        assert_eq!(
            request(&lab, "GET", path, &[("Authorization", &wrong)], "").status,
            401,
            "{path}"
        );
    }
    assert_eq!(
        request(&lab, "POST", URI, &[("Authorization", &wrong)], "").status,
        401
    );

    // VRRP: the only node becomes master.
    wait_status(&lab, &lbd, "VRRP master", |r| {
        r.vrrp.iter().any(|v| v.state == lbd::vrrp::State::Master)
    });

    // Log in (credentials in the URL: the browser keeps them for the
    // page's own requests) and find every row of the configuration.
    let browser = Browser::start(lab.lb()).expect("browser");
    browser
        .goto(&format!("http://admin:s3cret@{STATS}{URI}"))
        .expect("page");
    // As after a login prompt: the browser has the credentials, the URL
    // does not.
    browser.goto(&format!("http://{STATS}{URI}")).expect("page");
    let title = browser
        .eval("return document.title;", json!([]))
        .expect("title");
    assert_eq!(title, json!(format!("lbd statistics: {}", lab.instance)));
    browser
        .wait_for(
            "return !!document.querySelector('tr[data-row=\"app/n1\"].active_up') && !!document.querySelector('tr[data-row=\"app/n2\"].active_up');",
            json!([]),
            Duration::from_secs(10),
        )
        .expect("servers UP");
    let shown = rows(&browser);
    let green = "rgb(192, 255, 192)";
    for name in [
        "web/198.18.0.11:80",
        "web/198.18.0.12:80",
        "app/n1",
        "app/n2",
        "app/BACKEND",
        "fe_web/FRONTEND",
    ] {
        let (_, class, colour) = row(&shown, name);
        assert!(class.contains("active_up"), "{name}: {class}");
        assert_eq!(colour, green, "{name}");
    }
    for i in [11, 12] {
        // Not checked: grey (HAProxy's "no check").
        let (_, class, colour) = row(&shown, &format!("{EVIL}/198.18.0.{i}:53"));
        assert!(class.contains("active_no_check"), "{class}");
        assert_eq!(colour, "rgb(224, 224, 224)");
    }
    let (_, class, colour) = row(&shown, "vrrp:VI_1");
    assert_eq!((class.as_str(), colour.as_str()), ("vrrp_master", green));
    let states = browser
        .eval(
            "return [document.querySelector('tr[data-vrrp=\"VI_1\"] td[data-col=state]').textContent,\
                     document.querySelector('tr[data-row=\"app/n1\"] td[data-col=status]').textContent,\
                     document.querySelector('tr[data-row=\"web/198.18.0.11:80\"] td[data-col=state]').textContent];",
            json!([]),
        )
        .expect("states");
    assert_eq!(states, json!(["Master", "UP", "serving"]));

    // The hostile name is text: shown literally, never run.
    let escaped = browser
        .eval(
            "var name = arguments[0];\
             var t = Array.from(document.querySelectorAll('table.service')).find(function(x){return x.getAttribute('data-service') === name;});\
             return [t ? t.querySelector('tr.section td').textContent : null, window.__xss === undefined, document.scripts.length];",
            json!([EVIL]),
        )
        .expect("escaping");
    assert_eq!(
        escaped[0].as_str().map(|t| t.starts_with(EVIL)),
        Some(true),
        "{escaped}"
    );
    assert_eq!(escaped[1], json!(true), "the name ran as a script");
    assert_eq!(escaped[2], json!(1), "only the page's own script");

    // `refresh = "1s"` is honoured: the page fetches its fragment about
    // once a second.
    let fragments = |browser: &Browser| -> u64 {
        browser
            .eval(
                "return performance.getEntriesByType('resource').filter(function(e){return e.name.indexOf(';fragment') >= 0;}).length;",
                json!([]),
            )
            .expect("resource entries")
            .as_u64()
            .expect("a count")
    };
    browser
        .eval(
            "performance.setResourceTimingBufferSize(100000); return true;",
            json!([]),
        )
        .expect("buffer");
    let before = fragments(&browser);
    std::thread::sleep(Duration::from_secs(4));
    let fetched = fragments(&browser) - before;
    assert!(
        (3..=5).contains(&fetched),
        "{fetched} fragment fetches in 4 s with refresh = 1s"
    );

    // Live: a stopped nginx turns its rows down without a reload.
    browser
        .eval("window.__same_page = 42; return true;", json!([]))
        .expect("mark");
    let stopped = Instant::now();
    drop(nginx[0].take());
    browser
        .wait_for(
            "return !!document.querySelector('tr[data-row=\"app/n1\"].active_down') && !!document.querySelector('tr[data-row=\"web/198.18.0.11:80\"].active_down');",
            json!([]),
            Duration::from_secs(8),
        )
        .unwrap_or_else(|e| {
            panic!(
                "n1 not down on the page: {e}\nlast update: {:?}\nrows: {:?}\nstatus: {:?}",
                browser.eval("return document.getElementById('updated').textContent;", json!([])),
                rows(&browser),
                lab.status(&lbd).map(|r| r.proxy)
            )
        });
    let took = stopped.elapsed();
    assert_eq!(
        browser
            .eval("return window.__same_page;", json!([]))
            .expect("mark"),
        json!(42),
        "the page was reloaded"
    );
    let shown = rows(&browser);
    assert_eq!(row(&shown, "app/n1").2, "rgb(255, 144, 144)");
    eprintln!("stopped nginx shown down on the page after {took:?}");
    // n3 (fall 10, every 0.5 s) is "UP, going down" for about 4.5 s first:
    // HAProxy's colour and "UP n/10" (the checks left before DOWN), on
    // the page and in the CSV; then DOWN.
    browser
        .wait_for(
            "var r = document.querySelector('tr[data-row=\"slow/n3\"].active_going_down');\
             return !!r && /^UP [1-9]\\/10$/.test(r.querySelector('td[data-col=status]').textContent);",
            json!([]),
            Duration::from_secs(4),
        )
        .unwrap_or_else(|e| panic!("n3 not going down: {e}: {:?}", rows(&browser)));
    assert_eq!(row(&rows(&browser), "slow/n3").2, "rgb(255, 255, 160)");
    let csv = request(&lab, "GET", "/hastat;csv", &[("Authorization", &auth)], "");
    assert!(
        csv.body.lines().any(|l| l.starts_with("slow,n3,")
            && (l.contains(",UP ") && l.contains("/10,") || l.contains(",DOWN,"))),
        "{}",
        csv.body
    );
    let json = request(&lab, "GET", "/hastat;json", &[("Authorization", &auth)], "");
    let rows_json: Value = serde_json::from_str(&json.body).expect("json rows");
    let n3_status = rows_json
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["svname"] == json!("n3")))
        .and_then(|r| r["status"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        n3_status.starts_with("UP ") && n3_status.ends_with("/10") || n3_status == "DOWN",
        "{n3_status}"
    );
    browser
        .wait_for(
            "return !!document.querySelector('tr[data-row=\"slow/n3\"].active_down');",
            json!([]),
            Duration::from_secs(8),
        )
        .unwrap_or_else(|e| panic!("n3 not down: {e}: {:?}", rows(&browser)));
    // HAProxy's Dwntme grows while it is down, and LastChg counts from the
    // change (n2 has been up since the start: longer).
    browser
        .wait_for(
            "var secs = function(t){return t.split(' ').reduce(function(a, p){return a + parseInt(p) * {d: 86400, h: 3600, m: 60, s: 1}[p.slice(-1)];}, 0);};\
             var c = function(r, col){return document.querySelector('tr[data-row=\"' + r + '\"] td[data-col=' + col + ']').textContent;};             return ['2s','3s','4s','5s'].indexOf(c('app/n1','downtime')) >= 0 && ['2s','3s','4s','5s'].indexOf(c('web/198.18.0.11:80','downtime')) >= 0                    && c('app/n2','downtime') === '0s' && secs(c('app/n2','lastchg')) > secs(c('app/n1','lastchg'));",
            json!([]),
            Duration::from_secs(6),
        )
        .unwrap_or_else(|e| panic!("downtime not shown: {e}: {:?}", lab.status(&lbd).map(|r| r.proxy)));

    // Traffic, then /metrics against `lbd status --json`.
    let names = lab.tcp_names(40000..40040).expect("traffic");
    assert_eq!(names.len(), 40);
    std::thread::sleep(Duration::from_millis(2500));
    let scraped = request(&lab, "GET", "/metrics", &[("Authorization", &auth)], "");
    assert_eq!(scraped.status, 200);
    let report = lab.status(&lbd).expect("status");
    let scrape = prometheus_parse::Scrape::parse(scraped.body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let web = report
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some("web"))
        .expect("web");
    assert!(web.new_flows >= 40, "{web:?}");
    assert_eq!(
        metric(&scrape, "lbd_service_packets_total", &[("service", "web")]),
        web.packets as f64
    );
    assert_eq!(
        metric(
            &scrape,
            "lbd_service_new_flows_total",
            &[("service", "web")]
        ),
        web.new_flows as f64
    );
    for b in &web.backends {
        let backend = SocketAddr::new(b.address, b.port).to_string();
        let labels = [("service", "web"), ("backend", backend.as_str())];
        assert_eq!(
            metric(&scrape, "lbd_backend_packets_total", &labels),
            b.packets as f64,
            "{backend}"
        );
        assert_eq!(
            metric(&scrape, "lbd_backend_bytes_total", &labels),
            b.bytes as f64,
            "{backend}"
        );
    }
    let tx_dsr = report
        .global
        .iter()
        .find(|(n, _)| n == "tx_dsr")
        .map(|(_, v)| *v)
        .expect("tx_dsr");
    assert_eq!(
        metric(&scrape, "lbd_xdp_packets_total", &[("outcome", "tx_dsr")]),
        tx_dsr as f64
    );
    assert_eq!(
        metric(
            &scrape,
            "lbd_vrrp_state",
            &[("instance", "VI_1"), ("state", "master")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &scrape,
            "lbd_server_up",
            &[("proxy", "app"), ("server", "n1")]
        ),
        0.0
    );
    assert!(metric(&scrape, "lbd_vrrp_transitions_total", &[]) >= 1.0);
    // The proxy servers' checks are in the latency histogram too, and
    // n1's downtime is counted (down for more than 2 s by now).
    assert!(
        metric(
            &scrape,
            "lbd_server_check_latency_seconds_count",
            &[("proxy", "app"), ("server", "n2")]
        ) >= 1.0
    );
    assert!(
        metric(
            &scrape,
            "lbd_server_downtime_seconds_total",
            &[("proxy", "app"), ("server", "n1")]
        ) >= 2.0
    );
    assert_eq!(
        metric(
            &scrape,
            "lbd_server_downtime_seconds_total",
            &[("proxy", "app"), ("server", "n2")]
        ),
        0.0
    );
    assert!(
        metric(
            &scrape,
            "lbd_health_check_latency_seconds_count",
            &[("service", "web")]
        ) >= 1.0
    );
    let csv = request(&lab, "GET", "/hastat;csv", &[("Authorization", &auth)], "");
    assert!(csv.body.starts_with("# pxname,svname,"), "{}", csv.body);
    assert!(
        csv.body
            .lines()
            .any(|l| l.starts_with("app,n1,") && l.contains(",DOWN,")),
        "{}",
        csv.body
    );
    let header: Vec<&str> = csv.body.lines().next().unwrap_or("").split(',').collect();
    let column = |name: &str| header.iter().position(|c| *c == name).expect(name);
    let n1: Vec<&str> = csv
        .body
        .lines()
        .find(|l| l.starts_with("app,n1,"))
        .expect("n1 row")
        .split(',')
        .collect();
    let downtime: u64 = n1[column("downtime")].parse().expect("downtime");
    assert!(downtime >= 2, "{}", csv.body);
    assert!(n1[column("lastchg")].parse::<u64>().expect("lastchg") <= downtime + 1);

    // Health checks off: n1 and web's first backend count as up ("no
    // check", grey); on again: down at the next check.
    browser
        .click("button[data-action=check-off][data-target=\"app/n1\"]")
        .expect("check-off n1");
    browser
        .click("button[data-action=check-off][data-target=\"web/198.18.0.11:80\"]")
        .expect("check-off web");
    wait_status(&lab, &lbd, "checks off", |r| {
        proxy_server(r, "n1") == "UP"
            && find_backend(r, "web", 0).is_some_and(|b| {
                b.health.as_deref() == Some("unchecked") && b.state == Some(BackendState::Serving)
            })
    });
    browser
        .wait_for(
            "return !!document.querySelector('tr[data-row=\"app/n1\"].active_no_check');",
            json!([]),
            Duration::from_secs(5),
        )
        .expect("n1 grey");
    browser
        .click("button[data-action=check-on][data-target=\"app/n1\"]")
        .expect("check-on n1");
    browser
        .click("button[data-action=check-on][data-target=\"web/198.18.0.11:80\"]")
        .expect("check-on web");
    wait_status(&lab, &lbd, "checks on again", |r| {
        proxy_server(r, "n1") == "DOWN"
            && find_backend(r, "web", 0).is_some_and(|b| b.state == Some(BackendState::Down))
    });

    // A forged POST (no token, a wrong one) is refused and changes nothing.
    let form = "kind=xdp&group=web&member=198.18.0.12%3A80&action=maint";
    let refused = request(
        &lab,
        "POST",
        URI,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form,
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    let forged = format!("token={}&{form}", "0".repeat(64));
    let refused = request(
        &lab,
        "POST",
        URI,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &forged,
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        xdp_backend(&lab.status(&lbd).expect("status"), "web", 1).admin,
        Some(AdminState::Enabled)
    );

    // Clicking drain: `lbd status` shows it draining; the user is logged.
    browser
        .click("button[data-action=drain][data-target=\"web/198.18.0.12:80\"]")
        .expect("click drain");
    wait_status(&lab, &lbd, "web/b2 draining", |r| {
        let b = xdp_backend(r, "web", 1);
        b.admin == Some(AdminState::Drain) && b.state == Some(BackendState::Draining)
    });
    browser
        .wait_for("var m = document.getElementById('message'); return !!m && m.textContent.indexOf('drain by admin') >= 0;", json!([]), Duration::from_secs(5))
        .expect("action message");
    browser
        .click("button[data-action=drain][data-target=\"app/n2\"]")
        .expect("click drain n2");
    wait_status(&lab, &lbd, "app/n2 DRAIN", |r| {
        proxy_server(r, "n2") == "DRAIN"
    });
    browser
        .wait_for(
            "return !!document.querySelector('tr[data-row=\"app/n2\"].active_draining');",
            json!([]),
            Duration::from_secs(5),
        )
        .expect("n2 drain colour");
    let log = lab.lbd_log();
    assert!(
        log.contains("stats page action by admin: drain web/198.18.0.12:80"),
        "{log}"
    );
    assert!(
        log.contains("stats page action refused: missing or wrong CSRF token"),
        "{log}"
    );

    // The screenshot.
    let png = browser.screenshot().expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-page.png");
    std::fs::write(&path, &png).expect("screenshot file");
    if let Ok(copy) = std::env::var("LBD_STATS_SCREENSHOT") {
        std::fs::write(copy, &png).expect("screenshot copy");
    }
    eprintln!("screenshot: {}", path.display());
    drop(browser);

    // Runtime states survive a reload and a restart.
    let drained = |r: &StatusReport| {
        find_backend(r, "web", 1).is_some_and(|b| b.admin == Some(AdminState::Drain))
            && proxy_server(r, "n2") == "DRAIN"
    };
    lab.reload_lbd().expect("SIGHUP");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        drained(&lab.status(&lbd).expect("status")),
        "lost on reload"
    );
    assert!(lab.stop_lbd(), "{}", lab.lbd_log());
    lab.spawn_lbd(0, &lbd).expect("restart");
    let pid = lab.lbd_pid();
    wait_status(&lab, &lbd, "restored after restart", |r| {
        r.pid == pid && drained(r)
    });
    let instance = lab.instance.clone();
    // `lbd show ... -i NAME`, `lbd set server -i NAME TARGET ...`.
    let lbd_cmd = |args: &[&str]| {
        let mut all = args.to_vec();
        let at = if args[0] == "set" { 2 } else { args.len() };
        all.splice(at..at, ["--instance", instance.as_str()]);
        netns::run(Command::new(&lbd).args(&all))
    };
    let kept = lbd_cmd(&["show", "servers", "state"]).expect("show servers state");
    let kept: Value = serde_json::from_str(&kept).expect("json");
    assert_eq!(kept["proxy"][0]["server"], json!("n2"), "{kept}");
    assert_eq!(kept["xdp"][0]["state"], json!("drain"), "{kept}");
    // The runtime API: back to ready, a weight.
    lbd_cmd(&["set", "server", "app/n2", "state", "ready"]).expect("set server state");
    lbd_cmd(&["set", "server", "web/198.18.0.12:80", "weight", "3"]).expect("set server weight");
    lbd_cmd(&["set", "server", "web/198.18.0.12", "state", "ready"]).expect("set xdp state");
    let report = wait_status(&lab, &lbd, "ready again", |r| {
        proxy_server(r, "n2") == "UP"
            && find_backend(r, "web", 1)
                .is_some_and(|b| b.weight == Some(3) && b.state == Some(BackendState::Serving))
    });
    assert!(
        xdp_backend(&report, "web", 1).slots.unwrap_or(0)
            > xdp_backend(&report, "web", 0).slots.unwrap_or(0)
            || xdp_backend(&report, "web", 0).state == Some(BackendState::Down)
    );
    // An admin action applies before its answer: right after `maint` on
    // the only server UP (n1's nginx is stopped), a request never reaches
    // it (503 at once); right after `ready` it is served again. Through
    // the runtime API, then through the page's form.
    let through_proxy = || {
        lab.client
            .run_in(|| http(SocketAddr::from((VIP, 8080)), "GET", "/", &[], b""))
            .expect("namespace")
            .expect("request through the proxy")
            .status
    };
    assert_eq!(through_proxy(), 200);
    lbd_cmd(&["set", "server", "app/n2", "state", "maint"]).expect("maint");
    assert_eq!(through_proxy(), 503, "a request reached n2 after maint");
    lbd_cmd(&["set", "server", "app/n2", "state", "ready"]).expect("ready");
    assert_eq!(through_proxy(), 200, "n2 not serving right after ready");
    let page = request(&lab, "GET", URI, &[("Authorization", &auth)], "");
    let token = page
        .body
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();
    let act = |action: &str| {
        let form = format!("token={token}&kind=proxy&group=app&member=n2&action={action}");
        let answer = request(
            &lab,
            "POST",
            URI,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &form,
        );
        assert_eq!(answer.status, 303, "{answer:?}");
    };
    act("maint");
    assert_eq!(
        through_proxy(),
        503,
        "a request reached n2 after maint from the page"
    );
    // ... and the page (here its CSV) shows it at once, not the sample
    // from before the action.
    let csv = request(&lab, "GET", "/hastat;csv", &[("Authorization", &auth)], "");
    assert!(
        csv.body
            .lines()
            .any(|l| l.starts_with("app,n2,") && l.contains(",MAINT,")),
        "{}",
        csv.body
    );
    act("ready");
    assert_eq!(through_proxy(), 200);
    let stat = lbd_cmd(&["show", "stat"]).expect("show stat");
    assert!(
        stat.lines()
            .any(|l| l.starts_with("app,n2,") && l.contains(",UP,")),
        "{stat}"
    );
    assert!(lbd_cmd(&["set", "server", "app/nope", "state", "drain"]).is_err());
    assert!(lab.stop_lbd(), "{}", lab.lbd_log());
}
