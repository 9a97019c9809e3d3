use super::*;
use crate::proxy::balance::{Balance, UriHash};
use std::path::Path;

pub(super) fn parse(text: &str) -> Result<ProxyConfig, Vec<String>> {
    parse_str(text, Path::new("lb.toml"))
}

pub(super) fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors,
    }
}

/// The contract's example, which mirrors the seeds' haproxy.cfg.
pub(crate) const SEED: &str = r#"
[global]
maxconn = 4000
[[global.log]]
target = "127.0.0.1:514"
facility = "local2"

[defaults]
mode = "http"
log = true
log_format = "httplog"
dontlognull = true
http_connection_mode = "http-server-close"
forwardfor = { except = ["127.0.0.0/8"] }
redispatch = true
retries = 3
maxconn = 3000
timeout = { http_request = "10s", queue = "1m", connect = "10s", client = "1m", server = "1m", http_keep_alive = "10s", check = "10s" }

[[frontend]]
name = "main"
bind = ["198.18.0.100:80", "[fd00::100]:80", ":8080"]
acl = ["url_static path_beg -i /static /images /javascript /stylesheets",
       "url_static path_end -i .jpg .gif .png .css .js"]
use_backend = ["static if url_static"]
default_backend = "app"
http_request = ["deny if { src 198.18.9.0/24 }", "redirect location /new code 302 if { path /old }",
                "set-header X-Via lbd", "add-header X-A b", "del-header X-Secret"]
http_response = ["set-header X-Served-By lbd", "del-header Server"]

[[frontend]]
name = "kubeproxy"
bind = ["*:16443"]
mode = "tcp"
default_backend = "kubeproxy"

[[backend]]
name = "app"
balance = "roundrobin"
httpchk = "HEAD / HTTP/1.1\\r\\nHost:\\ localhost"
http_check_expect = "status 200"
[[backend.server]]
name = "web1"
address = "198.18.0.11:80"
check = true
[[backend.server]]
name = "web2"
address = "198.18.0.12:80"
check = true
weight = 3
inter = "5s"
rise = 1
fall = 5
[[backend.server]]
name = "sorry"
address = "198.18.0.19:80"
backup = true

[[backend]]
name = "static"
balance = "uri whole depth 2"
[[backend.server]]
name = "static"
address = "127.0.0.1:4331"
check = true
maxconn = 100

[[backend]]
name = "kubeproxy"
mode = "tcp"
balance = "source"
tcp_check = true
[[backend.server]]
name = "storage01"
address = "198.18.1.1:6443"
check = true

[[listen]]
name = "monitoring"
bind = ["*:8088"]
http_connection_mode = "httpclose"
forwardfor = true
[[listen.server]]
name = "m1"
address = "[fd00::5]:8080"
"#;

#[test]
fn the_seed_configuration_validates_with_haproxy_meanings() {
    let config = parse(SEED).unwrap();
    assert_eq!(config.global.maxconn, 4000);
    assert_eq!(config.global.log[0].facility, 18);
    assert_eq!(
        config.global.log[0].address,
        LogAddress::Udp("127.0.0.1:514".parse().unwrap())
    );
    let names: Vec<&str> = config.frontends.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["main", "kubeproxy", "monitoring"]);
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["app", "static", "kubeproxy", "monitoring"]);

    let main = &config.frontends[0];
    assert_eq!(main.mode, Mode::Http);
    assert_eq!(main.maxconn, 3000);
    assert_eq!(main.binds[2].address, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(main.binds[1].address, "[fd00::100]:80".parse().unwrap());
    assert_eq!(main.timeouts.http_request, Duration::from_secs(10));
    assert_eq!(main.timeouts.client, Duration::from_secs(60));
    assert_eq!(main.http_connection_mode, HttpConnectionMode::ServerClose);
    let ff = main.forwardfor.as_ref().unwrap();
    assert!(!ff.applies_to("127.0.0.9".parse().unwrap()));
    assert!(ff.applies_to("198.18.0.1".parse().unwrap()));
    assert_eq!(main.default_backend, Some(0));
    assert_eq!(main.use_backend[0].backend, 1);
    assert_eq!(main.http_request.len(), 5);
    assert_eq!(main.http_response.len(), 2);
    assert_eq!(
        main.log,
        Some(LogSettings {
            format: LogFormat::Http,
            dontlognull: true
        })
    );

    // A tcp frontend inherits httplog/forwardfor from [defaults]: HAProxy
    // falls back to tcplog and ignores forwardfor.
    let kube = &config.frontends[1];
    assert_eq!(kube.mode, Mode::Tcp);
    assert_eq!(kube.log.unwrap().format, LogFormat::Tcp);
    assert!(kube.forwardfor.is_none());
    assert_eq!(kube.default_backend, Some(2));

    let app = &config.backends[0];
    assert_eq!(app.balance, Balance::RoundRobin);
    assert!(app.redispatch);
    assert_eq!(app.retries, 3);
    assert_eq!(app.timeouts.queue, Duration::from_secs(60));
    assert_eq!(app.timeouts.check, Some(Duration::from_secs(10)));
    let chk = app.health.httpchk.as_ref().unwrap();
    assert_eq!(
        (chk.method.as_str(), chk.uri.as_str(), chk.version.as_str()),
        ("HEAD", "/", "HTTP/1.1")
    );
    assert_eq!(chk.headers, [("Host".to_owned(), "localhost".to_owned())]);
    assert!(app.health.expect.as_ref().unwrap().accepts(200, b""));
    assert!(!app.health.expect.as_ref().unwrap().accepts(301, b""));
    let web2 = &app.servers[1];
    assert_eq!((web2.weight, web2.rise, web2.fall), (3, 1, 5));
    assert_eq!(web2.inter, Duration::from_secs(5));
    let web1 = &app.servers[0];
    assert_eq!(
        (web1.weight, web1.rise, web1.fall, web1.maxconn),
        (1, 2, 3, 0)
    );
    assert_eq!(web1.inter, Duration::from_secs(2));
    assert!(app.servers[2].backup);

    assert_eq!(
        config.backends[1].balance,
        Balance::Uri(UriHash {
            whole: true,
            len: 0,
            depth: 2
        })
    );
    assert_eq!(config.backends[1].servers[0].maxconn, 100);
    assert_eq!(config.backends[2].balance, Balance::Source);
    assert!(config.backends[2].health.tcp_check);

    let monitoring = &config.frontends[2];
    assert!(monitoring.from_listen);
    assert_eq!(monitoring.default_backend, Some(3));
    assert_eq!(monitoring.http_connection_mode, HttpConnectionMode::Close);
    assert_eq!(
        config.backends[3].servers[0].address,
        "[fd00::5]:8080".parse().unwrap()
    );
}

#[test]
fn defaults_apply_to_every_section_and_sections_override_them() {
    let config = parse(
        r#"
[defaults]
mode = "http"
retries = 5
balance = "leastconn"
maxconn = 10
timeout = { connect = "2s", client = "20s" }
httpchk = "GET /health"
[[frontend]]
name = "f"
bind = [":80"]
default_backend = "b"
timeout = { http_request = "5s" }
[[backend]]
name = "b"
[[backend]]
name = "c"
mode = "tcp"
balance = "source"
retries = 0
timeout = { connect = 500 }
tcp_check = true
"#,
    )
    .unwrap();
    let f = &config.frontends[0];
    assert_eq!((f.mode, f.maxconn), (Mode::Http, 10));
    assert_eq!(f.timeouts.client, Duration::from_secs(20));
    assert_eq!(f.timeouts.http_request, Duration::from_secs(5));
    // http-keep-alive falls back to http-request (HAProxy).
    assert_eq!(f.timeouts.http_keep_alive, Duration::from_secs(5));
    let b = &config.backends[0];
    assert_eq!((b.retries, &b.balance), (5, &Balance::LeastConn));
    assert_eq!(b.timeouts.connect, Duration::from_secs(2));
    // queue falls back to connect (HAProxy).
    assert_eq!(b.timeouts.queue, Duration::from_secs(2));
    assert_eq!(b.timeouts.server, timeouts::DEFAULT_SERVER);
    assert_eq!(b.health.httpchk.as_ref().unwrap().method, "GET");
    assert_eq!(b.health.httpchk.as_ref().unwrap().version, "HTTP/1.0");
    let c = &config.backends[1];
    assert_eq!(
        (c.mode, c.retries, &c.balance),
        (Mode::Tcp, 0, &Balance::Source)
    );
    assert_eq!(c.timeouts.connect, Duration::from_millis(500));
    // The backend's own tcp_check overrides the inherited httpchk.
    assert!(c.health.httpchk.is_none() && c.health.tcp_check);
}

#[test]
fn binds_in_haproxy_forms() {
    let cases = [
        (":80", "0.0.0.0:80"),
        ("*:8080", "0.0.0.0:8080"),
        (":::443", "[::]:443"),
        ("198.18.0.1:80", "198.18.0.1:80"),
        ("[fd00::1]:80", "[fd00::1]:80"),
        ("[::]:80", "[::]:80"),
    ];
    for (text, expected) in cases {
        assert_eq!(
            sides::parse_bind(text),
            Ok(expected.parse().unwrap()),
            "{text}"
        );
    }
    for bad in [
        "80",
        ":",
        "*:",
        ":::",
        ":::x",
        "*:65536",
        "1.2.3.4",
        "[fd00::1]",
        "host:80",
        ":::0",
    ] {
        assert!(sides::parse_bind(bad).is_err(), "{bad}");
    }
}

#[test]
fn without_defaults_haproxy_defaults_apply() {
    let config = parse("[[frontend]]\nname = \"f\"\nbind = [\"[::]:443\"]\ndefault_backend = \"b\"\n[[backend]]\nname = \"b\"\n").unwrap();
    let f = &config.frontends[0];
    assert_eq!(f.mode, Mode::Tcp, "HAProxy's default mode is tcp");
    assert_eq!(f.maxconn, DEFAULT_GLOBAL_MAXCONN);
    assert!(f.log.is_none());
    assert_eq!(f.binds[0].address, "[::]:443".parse().unwrap());
    let b = &config.backends[0];
    assert_eq!((b.retries, b.redispatch, b.allbackups), (3, false, false));
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.timeouts.connect, timeouts::DEFAULT_CONNECT);
    assert_eq!(b.timeouts.tunnel, None);
}

#[test]
fn durations_in_haproxy_units() {
    use super::raw::RawDuration;
    let cases = [
        (RawDuration::Millis(1500), Duration::from_millis(1500)),
        (
            RawDuration::Text("1500".into()),
            Duration::from_millis(1500),
        ),
        (
            RawDuration::Text("250ms".into()),
            Duration::from_millis(250),
        ),
        (
            RawDuration::Text("500us".into()),
            Duration::from_micros(500),
        ),
        (RawDuration::Text("10s".into()), Duration::from_secs(10)),
        (RawDuration::Text("1m".into()), Duration::from_secs(60)),
        (RawDuration::Text("1h".into()), Duration::from_secs(3600)),
        (RawDuration::Text("1d".into()), Duration::from_secs(86_400)),
    ];
    for (raw, expected) in cases {
        assert_eq!(timeouts::parse_duration(&raw), Ok(expected), "{raw:?}");
    }
    for bad in ["", "s", "1.5s", "-1s", "10 s", "10sec", "0"] {
        assert!(
            timeouts::parse_duration(&RawDuration::Text(bad.into())).is_err(),
            "{bad}"
        );
    }
    assert!(timeouts::parse_duration(&RawDuration::Millis(-1)).is_err());
}

#[test]
fn check_expectations() {
    let expect = |s: &str| servers::expect(s).unwrap();
    assert!(expect("status 200-399").accepts(302, b""));
    assert!(!expect("status 200-399").accepts(404, b""));
    assert!(expect("status 200,204").accepts(204, b""));
    assert!(expect("! status 500").accepts(200, b""));
    assert!(expect("rstatus ^2").accepts(201, b""));
    assert!(expect("string OK").accepts(500, b"all OK"));
    assert!(!expect("string OK").accepts(200, b"fine"));
    assert!(expect("rstring \"^up$\"").accepts(200, b"up"));
    assert!(default_check_status_ok(301) && !default_check_status_ok(500));
}

#[test]
fn default_server_applies_to_servers_without_their_own_setting() {
    let config = parse(
        r#"
[defaults]
default_server = { inter = "3s", fall = 5, check = true }
[[backend]]
name = "b"
default_server = { rise = 4, maxconn = 50, weight = 10 }
[[backend.server]]
name = "s1"
address = "198.18.0.1:80"
[[backend.server]]
name = "s2"
address = "198.18.0.2:80"
check = false
rise = 1
weight = 2
[[backend]]
name = "c"
[[backend.server]]
name = "s3"
address = "198.18.0.3:80"
"#,
    )
    .unwrap();
    let s = &config.backends[0].servers;
    assert_eq!(
        (s[0].inter, s[0].fall, s[0].check),
        (Duration::from_secs(3), 5, true)
    );
    assert_eq!((s[0].rise, s[0].maxconn, s[0].weight), (4, 50, 10));
    assert_eq!(
        (s[1].check, s[1].rise, s[1].weight, s[1].maxconn),
        (false, 1, 2, 50)
    );
    let s3 = &config.backends[1].servers[0];
    assert_eq!(
        (s3.inter, s3.fall, s3.rise, s3.check, s3.weight),
        (Duration::from_secs(3), 5, 2, true, 1)
    );
    let found = errors("[defaults]\ndefault_server = { rise = 0 }\n");
    assert!(
        found[0].starts_with("lb.toml:2: defaults.default_server.rise: 0 is outside 1..=1000"),
        "{found:?}"
    );
    let found = errors("[[backend]]\nname = \"b\"\ndefault_server = { weight = 300 }\n");
    assert!(
        found[0].starts_with("lb.toml:3: backend[0].default_server.weight: 300 is outside 0..=256"),
        "{found:?}"
    );
    let found =
        errors("[[frontend]]\nname = \"f\"\nbind = [\":80\"]\ndefault_server = { rise = 2 }\n");
    assert!(
        found
            .iter()
            .any(|e| e.contains("frontend[0].default_server: default_server is a backend setting")),
        "{found:?}"
    );
    let found = errors("[defaults]\ndefault_server = { backup = true }\n");
    assert!(found[0].contains("unknown field `backup`"), "{found:?}");
}

/// `redispatch`: a flag (HAProxy's `option redispatch`, interval -1) or
/// the interval of `option redispatch <interval>`, inherited from
/// `[defaults]`; 0 turns it off.
#[test]
fn redispatch_takes_haproxys_interval() {
    let backend = |line: &str| {
        let config = parse(&format!(
            "[defaults]\nredispatch = 2\n[[backend]]\nname = \"b\"\nretries = 4\n{line}\n"
        ))
        .unwrap_or_else(|e| panic!("{line}: {e:?}"));
        let b = &config.backends[0];
        (b.redispatch, b.redispatch_after)
    };
    assert_eq!(backend(""), (true, 2), "from [defaults]");
    assert_eq!(backend("redispatch = true"), (true, -1));
    assert_eq!(backend("redispatch = false"), (false, -1));
    assert_eq!(backend("redispatch = -4"), (true, -4));
    assert_eq!(backend("redispatch = 1"), (true, 1));
    assert_eq!(backend("redispatch = 0"), (false, 0));
}
