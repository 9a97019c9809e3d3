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
