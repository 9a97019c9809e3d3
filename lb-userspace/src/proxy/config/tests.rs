use super::*;
use crate::proxy::balance::{Balance, UriHash};
use std::path::Path;

fn parse(text: &str) -> Result<ProxyConfig, Vec<String>> {
    parse_str(text, Path::new("lb.toml"))
}

fn errors(text: &str) -> Vec<String> {
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

/// Each case: a file, then the one error it must produce (a prefix:
/// "lb.toml:LINE: field: message start").
#[test]
fn errors_name_file_line_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\ndefault_backend = \"nope\"\n",
            "lb.toml:4: frontend[0].default_backend: unknown backend \"nope\"",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nuse_backend = [\"x if { path / }\"]\n",
            "lb.toml:5: frontend[0].use_backend[0]: unknown backend \"x\"",
        ),
        (
            "[[backend]]\nname = \"a\"\n[[backend]]\nname = \"a\"\n",
            "lb.toml:4: backend[1].name: duplicate name \"a\" (also backend[0])",
        ),
        (
            "[[backend]]\nname = \"a\"\n[[listen]]\nname = \"a\"\nbind = [\":80\"]\n",
            "lb.toml:4: listen[0].name: duplicate name \"a\" (also backend[0])",
        ),
        (
            "[defaults]\ntimeout = { client = \"10 s\" }\n",
            "lb.toml:2: defaults.timeout.client: \"10 s\": unknown unit \" s\"",
        ),
        (
            "[defaults]\ntimeout = { connect = \"5x\" }\n",
            "lb.toml:2: defaults.timeout.connect: \"5x\": unknown unit \"x\"",
        ),
        (
            "[defaults]\ntimeout = { server = 0 }\n",
            "lb.toml:2: defaults.timeout.server: must be greater than 0",
        ),
        (
            "[defaults]\ntimeout = { server = \"30d\" }\n",
            "lb.toml:2: defaults.timeout.server: is longer than HAProxy's limit",
        ),
        (
            "[defaults]\ntimeout = { sever = \"1s\" }\n",
            "lb.toml:2: syntax: unknown field `sever`",
        ),
        (
            "[defaults]\nmode = \"http\"\nforwardfor = { except = [\"10.0.0.0/40\"] }\n",
            "lb.toml:3: defaults.forwardfor.except[0]: \"10.0.0.0/40\" is not an address",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nacl = [\"bad path_reg ([a-z\"]\n",
            "lb.toml:5: frontend[0].acl[0]: path_reg: bad regex",
        ),
        (
            "[[backend]]\nname = \"b\"\nbalance = \"weighted\"\n",
            "lb.toml:3: backend[0].balance: unknown balance \"weighted\"",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"tcp\"\nbalance = \"uri\"\n",
            "lb.toml:4: backend[0].balance: \"uri\" needs mode http",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"http\"\nbalance = \"rdp-cookie\"\n",
            "lb.toml:4: backend[0].balance: rdp-cookie needs mode tcp",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\ndefault_backend = \"b\"\n[[backend]]\nname = \"b\"\nmode = \"tcp\"\n",
            "lb.toml:5: frontend[0].mode: frontend \"f\" is mode http but backend \"b\" is mode tcp",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\"80\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \"80\" is not a bind address",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":443 ssl crt /etc/haproxy/tls/cert.pem\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \":443 ssl crt /etc/haproxy/tls/cert.pem\": bind options (\"ssl crt /etc/haproxy/tls/cert.pem\") are not supported",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\"1.2.3.4:0\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \"1.2.3.4:0\": port 0 cannot be bound",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\"*:http\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \"*:http\": \"http\" is not a port",
        ),
        (
            "[[frontend]]\nname = \"f\"\n",
            "lb.toml:2: frontend[0].bind: a frontend needs at least one bind address",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\n[[frontend]]\nname = \"g\"\nbind = [\"*:80\"]\n",
            "lb.toml:6: frontend[1].bind: 0.0.0.0:80 is already bound by frontend \"f\"",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nweight = 257\n",
            "lb.toml:6: backend[0].server[0].weight: 257 is outside 0..=256",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nweight = -1\n",
            "lb.toml:6: backend[0].server[0].weight: -1 is outside 0..=256",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1\"\n",
            "lb.toml:5: backend[0].server[0].address: \"198.18.0.1\" needs a port",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"web1:80\"\n",
            "lb.toml:5: backend[0].server[0].address: \"web1:80\" is not an address:port",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.2:80\"\n",
            "lb.toml:7: backend[0].server[1].name: duplicate server name \"s\"",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nrise = 0\n",
            "lb.toml:6: backend[0].server[0].rise: 0 is outside 1..=1000",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\ninter = \"fast\"\n",
            "lb.toml:6: backend[0].server[0].inter: \"fast\" is not a duration",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nmaxconn = -5\n",
            "lb.toml:6: backend[0].server[0].maxconn: -5 is outside 0..=1000000",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nslowstart = 1\n",
            "lb.toml:6: syntax: unknown field `slowstart`",
        ),
        ("[[backend]]\nname = \"b\"\nretries = 101\n", "lb.toml:3: backend[0].retries: 101 is outside 0..=100"),
        ("[global]\nmaxconn = 0\n", "lb.toml:2: global.maxconn: 0 is outside 1..=10000000"),
        (
            "[[global.log]]\ntarget = \"logs.example:514\"\n",
            "lb.toml:2: global.log[0].target: \"logs.example:514\" is neither ip[:port]",
        ),
        (
            "[[global.log]]\ntarget = \"/dev/log\"\nfacility = \"local9\"\n",
            "lb.toml:3: global.log[0].facility: unknown facility \"local9\"",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nbalance = \"source\"\n",
            "lb.toml:4: frontend[0].balance: balance is a backend setting",
        ),
        (
            "[[backend]]\nname = \"b\"\nmaxconn = 10\n",
            "lb.toml:3: backend[0].maxconn: maxconn limits a frontend's connections",
        ),
        (
            "[defaults]\nname = \"d\"\n",
            "lb.toml:2: defaults.name: name belongs in a frontend, backend or listen section",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\ntimeout = { server = \"1s\" }\n",
            "lb.toml:4: frontend[0].timeout.server: applies to the server side",
        ),
        (
            "[[backend]]\nname = \"b\"\ntimeout = { client = \"1s\" }\n",
            "lb.toml:3: backend[0].timeout.client: applies to the client side",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nhttp_request = [\"deny\"]\n",
            "lb.toml:5: frontend[0].http_request[0]: http_request rules need mode http",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nuse_backend = [\"b if { path / }\"]\n[[backend]]\nname = \"b\"\nmode = \"tcp\"\n",
            "lb.toml:5: frontend[0].use_backend[0]: a mode tcp frontend can only match connection facts",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nhttp_response = [\"del-header Server if { path / }\"]\n",
            "lb.toml:5: frontend[0].http_response[0]: the condition uses request fetches",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nhttp_request = [\"deny if { status 500 }\"]\n",
            "lb.toml:5: frontend[0].http_request[0]: the condition uses response fetches",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nforwardfor = true\n",
            "lb.toml:5: frontend[0].forwardfor: needs mode http",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nlog_format = \"httplog\"\n",
            "lb.toml:5: frontend[0].log_format: httplog needs mode http",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"ftp\"\n",
            "lb.toml:4: frontend[0].mode: unknown mode \"ftp\"",
        ),
        (
            "[defaults]\nmode = \"http\"\nhttp_connection_mode = \"close\"\n",
            "lb.toml:3: defaults.http_connection_mode: unknown mode \"close\"",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttpchk = \"GET / HTTP/2\"\n",
            "lb.toml:3: backend[0].httpchk: check version \"HTTP/2\" must be HTTP/1.0 or HTTP/1.1",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttpchk = \"GET health\"\n",
            "lb.toml:3: backend[0].httpchk: check URI \"health\" must start with /",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttp_check_expect = \"status 99\"\n",
            "lb.toml:3: backend[0].http_check_expect: \"99\" is not a status",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttp_check_expect = \"rstring ([\"\n",
            "lb.toml:3: backend[0].http_check_expect: bad regex",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttpchk = true\ntcp_check = true\n",
            "lb.toml:4: backend[0].tcp_check: choose httpchk or tcp_check, not both",
        ),
        (
            "[[backend]]\nname = \"bad name\"\n",
            "lb.toml:2: backend[0].name: \"bad name\" must be 1 to 64 characters",
        ),
        ("[[backend]]\nmode = \"tcp\"\n", "lb.toml:1: backend[0].name: a section needs a name"),
        ("[[frontend]]\nname = \"f\"\nbind = \":80\"\n", "lb.toml:3: syntax: invalid type"),
        ("[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nforwardfor = 1\n", "lb.toml:4: syntax: invalid type"),
        ("[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nforwardfor = { excpt = [] }\n", "lb.toml:4: syntax: unknown field `excpt`"),
        ("[bogus]\n", "lb.toml:1: syntax: unknown field `bogus`"),
    ];
    for (text, expected) in cases {
        let errors = errors(text);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected \"{expected}\"\n  got {errors:#?}\n  for:\n{text}"
        );
    }
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

/// The proxy sections inside a whole lb.toml, as `lbd check` reads it.
mod in_the_whole_file {
    use crate::config::{Config, ConfigErrors, Environment};
    use std::path::Path;

    struct FakeHost;
    impl Environment for FakeHost {
        fn interface_exists(&self, name: &str) -> bool {
            name == "eth0"
        }
    }

    fn whole(proxy: &str) -> String {
        format!(
            "[instance]\nname = \"lb1\"\ninterface = \"eth0\"\n\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 443\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n\n{proxy}"
        )
    }

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(text, Path::new("lb.toml"), &FakeHost)
            .map_err(|ConfigErrors(errors)| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_file_with_both_halves_validates() {
        let config = parse(&whole(super::SEED)).unwrap();
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.proxy.frontends.len(), 3);
        assert_eq!(config.proxy.backends.len(), 4);
        assert_eq!(config.proxy.global.maxconn, 4000);
        // Without proxy sections the proxy is empty.
        assert!(parse(&whole("")).unwrap().proxy.is_empty());
    }

    #[test]
    fn proxy_errors_come_with_the_others_in_line_order() {
        let text = whole("[[frontend]]\nname = \"f\"\nbind = [\"198.18.0.100:443\", \"198.18.0.100:80\"]\nmode = \"http\"\ndefault_backend = \"nope\"\n")
            .replace("port = 443\n", "port = 443\nmode = \"bogus\"\n");
        let errors = parse(&text).unwrap_err();
        assert_eq!(
            errors,
            [
                "lb.toml:9: service[0].mode: unknown mode \"bogus\" (supported: \"dsr\", \"nat\", \"fullnat\")",
                "lb.toml:18: frontend[0].default_backend: unknown backend \"nope\"",
            ],
            "an invalid service is not checked against binds"
        );
        let text = whole("[[frontend]]\nname = \"f\"\nbind = [\"198.18.0.100:443\", \"198.18.0.100:80\"]\nmode = \"tcp\"\n");
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "lb.toml:15: frontend[0].bind[0]: 198.18.0.100:443 is taken by XDP service \"web\""
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_all_ports_service_takes_every_port_and_udp_takes_none() {
        let all_ports = whole("[[frontend]]\nname = \"f\"\nbind = [\"198.18.0.100:8080\"]\n")
            .replace(
                "port = 443\nprotocol = \"tcp\"",
                "port = 0\nprotocol = \"tcp\"\nmode = \"nat\"",
            );
        assert!(parse(&all_ports).unwrap_err()[0].contains("is taken by XDP service"));
        let udp = whole("[[frontend]]\nname = \"f\"\nbind = [\"198.18.0.100:443\"]\n")
            .replace("protocol = \"tcp\"", "protocol = \"udp\"");
        parse(&udp).unwrap();
        // Another address, or another port, of the VIP is fine.
        parse(&whole("[[frontend]]\nname = \"f\"\nbind = [\"198.18.0.100:80\", \"198.18.0.101:443\", \":443\"]\n")).unwrap();
    }
}
