//! The directives that close issue 12's gaps: per-section `log` lines,
//! `forwardfor if-none`, ACL pattern files (`-f`), `hdr(...)
//! use_domain_only`, `url_param ... check_post`, `%[...]` in redirects.
use super::tests::{errors, parse};
use super::*;
use crate::proxy::acl::{ConnInfo, RequestView};
use crate::proxy::rules::{apply_request_rules, RequestVerdict};
use hyper::http::Request;
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory removed on drop (also on panic).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lbd-gaps-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
    /// Parses `text` as the file `lb.toml` of this directory.
    fn parse(&self, text: &str) -> Result<ProxyConfig, Vec<String>> {
        let file = self.write("lb.toml", text);
        parse_str(text, &file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn udp(text: &str) -> LogAddress {
    LogAddress::Udp(text.parse().unwrap())
}

#[test]
fn section_log_lines_are_haproxys() {
    let config = parse(
        r#"
[global]
[[global.log]]
target = "127.0.0.1:514"
facility = "local2"

[defaults]
mode = "http"
log = true

[[frontend]]
name = "inherits"
bind = [":80"]
default_backend = "own"

[[frontend]]
name = "both"
bind = [":81"]
log = ["global", "198.18.0.9:5140 len 2048 format rfc5424 local3 notice"]
default_backend = "own"

[[frontend]]
name = "quiet"
bind = [":82"]
log = false
default_backend = "own"

[[backend]]
name = "own"
log = ["/dev/log local4", { target = "[fd00::9]:514", facility = "local5", level = "info", minlevel = "err", len = 512 }]
[[backend.server]]
name = "s"
address = "198.18.0.11:80"
"#,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let [inherits, both, quiet] = &config.frontends[..] else {
        panic!("three frontends");
    };
    assert_eq!(
        inherits.log_to,
        LogDestinations {
            global: true,
            targets: vec![]
        }
    );
    assert!(inherits.log.is_some());
    assert!(both.log_to.global);
    assert_eq!(
        both.log_to.targets,
        vec![LogTarget {
            address: udp("198.18.0.9:5140"),
            facility: 19,
            format: SyslogFormat::Rfc5424,
            level: 5,
            max_len: 2048,
            min_level: None,
        }]
    );
    assert!(quiet.log.is_none() && quiet.log_to.is_empty());
    let own = &config.backends[0];
    // Own lines replace the inherited `log global` (HAProxy).
    assert!(!own.log_to.global);
    assert!(own.log.is_some());
    assert_eq!(
        own.log_to.targets,
        vec![
            LogTarget {
                address: LogAddress::Unix("/dev/log".into()),
                facility: 20,
                format: SyslogFormat::Rfc3164,
                level: 7,
                max_len: DEFAULT_LOG_LEN,
                min_level: None,
            },
            LogTarget {
                address: udp("[fd00::9]:514"),
                facility: 21,
                format: SyslogFormat::Rfc3164,
                level: 6,
                max_len: 512,
                min_level: Some(3),
            }
        ]
    );
    // `log 127.0.0.1 local2` in a section: port 514 by default.
    let config = parse(
        "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nlog = [\"udp@127.0.0.1 local2 info err\"]\n",
    )
    .unwrap();
    assert_eq!(
        config.frontends[0].log_to.targets[0].address,
        udp("127.0.0.1:514")
    );
    // `log ... info err`: minlevel err.
    assert_eq!(config.frontends[0].log_to.targets[0].min_level, Some(3));
    assert!(!config.frontends[0].log_to.global);
}

#[test]
fn forwardfor_if_none_is_parsed() {
    let config = parse(
        "[defaults]\nmode = \"http\"\nforwardfor = { except = [\"127.0.0.0/8\"], if_none = true }\n[[frontend]]\nname = \"f\"\nbind = [\":80\"]\n[[frontend]]\nname = \"g\"\nbind = [\":81\"]\nforwardfor = true\n",
    )
    .unwrap();
    let ff = config.frontends[0].forwardfor.as_ref().unwrap();
    assert!(ff.if_none);
    assert_eq!(ff.except.len(), 1);
    assert!(!config.frontends[1].forwardfor.as_ref().unwrap().if_none);
}

const ROUTED: &str = r#"
[defaults]
mode = "http"
[[frontend]]
name = "f"
bind = [":80"]
acl = ["static path_beg -i -f static.lst", "blocked src -f /ABS/blocked.lst", "api hdr(host) -f hosts.lst api.example"]
use_backend = ["static if static", "api if api"]
http_request = ["deny if blocked"]
default_backend = "app"
[[backend]]
name = "static"
[[backend]]
name = "api"
[[backend]]
name = "app"
"#;

fn conn(src: &str) -> ConnInfo {
    ConnInfo::plain(src.parse().unwrap(), "198.18.0.100:80".parse().unwrap())
}

/// Which backend a request reaches through `use_backend`.
fn routed(config: &ProxyConfig, path: &str, host: &str) -> String {
    let fe = &config.frontends[0];
    let parts = Request::get(path)
        .header("host", host)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let c = conn("198.18.9.9:4000");
    let view = RequestView::request(&c, &parts);
    let backend = fe
        .use_backend
        .iter()
        .find(|r| {
            r.condition
                .as_ref()
                .is_none_or(|c| c.matches(&fe.acls, &view))
        })
        .map(|r| r.backend)
        .or(fe.default_backend)
        .unwrap();
    config.backends[backend].name.clone()
}

#[test]
fn acl_pattern_files_are_read_beside_the_config() {
    let dir = Scratch::new();
    dir.write(
        "static.lst",
        "# static prefixes\n/static\n  /images\n\n/JS\r\n#/api\n",
    );
    let blocked = dir.write("blocked.lst", "198.18.66.0/24\n# one host\n198.18.77.7\n");
    dir.write("hosts.lst", "www.api.example\n");
    let text = ROUTED.replace("/ABS/blocked.lst", &blocked.display().to_string());
    let config = dir.parse(&text).unwrap_or_else(|e| panic!("{e:#?}"));
    for (path, host, backend) in [
        ("/static/a.css", "x", "static"),
        ("/IMAGES/b.png", "x", "static"),
        ("/js/app.js", "x", "static"),
        ("/api/v1", "x", "app"),
        ("/", "api.example", "api"),
        ("/", "www.api.example", "api"),
        ("/", "other.example", "app"),
    ] {
        assert_eq!(routed(&config, path, host), backend, "{path} {host}");
    }
    let fe = &config.frontends[0];
    let deny = |src: &str| {
        let mut parts = Request::get("/").body(()).unwrap().into_parts().0;
        apply_request_rules(&fe.http_request, &fe.acls, &conn(src), &mut parts)
    };
    assert_eq!(
        deny("198.18.66.1:1000"),
        RequestVerdict::Deny { status: 403 }
    );
    assert_eq!(
        deny("198.18.77.7:1000"),
        RequestVerdict::Deny { status: 403 }
    );
    assert_eq!(deny("198.18.77.8:1000"), RequestVerdict::Continue);
    // A reload reads the file again: its new content is a new configuration.
    dir.write("static.lst", "/assets\n");
    let reloaded = dir.parse(&text).unwrap();
    assert_ne!(reloaded, config);
    assert_eq!(routed(&reloaded, "/static/a.css", "x"), "app");
    assert_eq!(routed(&reloaded, "/assets/a.css", "x"), "static");
    // An empty file (comments only) matches nothing.
    dir.write("static.lst", "# nothing yet\n");
    let empty = dir.parse(&text).unwrap();
    assert_eq!(routed(&empty, "/static/a.css", "x"), "app");
}

#[test]
fn acl_pattern_file_errors_name_both_lines() {
    let dir = Scratch::new();
    dir.write("nets.lst", "198.18.0.0/24\n# ok\n198.18.300.0/24\n");
    dir.write("re.lst", "^/ok$\n^/(bad$\n");
    let cases: &[(&str, String)] = &[
        (
            "acl = [\"a src -f nets.lst\"]",
            format!(
                "lb.toml:5: frontend[0].acl[0]: {}:3: src: ",
                dir.0.join("nets.lst").display()
            ),
        ),
        (
            "acl = [\"a path_reg -f re.lst\"]",
            format!(
                "lb.toml:5: frontend[0].acl[0]: {}:2: path_reg: bad regex",
                dir.0.join("re.lst").display()
            ),
        ),
        (
            "acl = [\"a path -f missing.lst\"]",
            format!(
                "lb.toml:5: frontend[0].acl[0]: pattern file {}: No such file",
                dir.0.join("missing.lst").display()
            ),
        ),
        (
            "use_backend = [\"b if { path -f missing.lst }\"]",
            format!(
                "lb.toml:5: frontend[0].use_backend[0]: in {{ }}: pattern file {}",
                dir.0.join("missing.lst").display()
            ),
        ),
    ];
    for (line, expected) in cases {
        let text = format!(
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\n{line}\n[[backend]]\nname = \"b\"\nmode = \"http\"\n"
        );
        let errors = dir.parse(&text).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{}/{expected}", dir.0.display()))),
            "expected \"{expected}\"\n  got {errors:#?}"
        );
    }
}

#[test]
fn gap_errors_name_file_line_and_field() {
    let fe = "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{fe}log = [\"127.0.0.1:514\"]\n"),
            "lb.toml:5: frontend[0].log[0]: \"127.0.0.1:514\": the facility is missing",
        ),
        (
            format!("{fe}log = [\"global\", \"logs.example local2\"]\n"),
            "lb.toml:5: frontend[0].log[1]: \"logs.example\" is neither ip[:port]",
        ),
        (
            format!("{fe}log = [\"127.0.0.1 local9\"]\n"),
            "lb.toml:5: frontend[0].log[0]: unknown facility \"local9\"",
        ),
        (
            format!("{fe}log = [\"127.0.0.1 local2 loud\"]\n"),
            "lb.toml:5: frontend[0].log[0]: unknown level \"loud\"",
        ),
        (
            format!("{fe}log = [\"127.0.0.1 local2 info err x\"]\n"),
            "lb.toml:5: frontend[0].log[0]: \"x\": expected",
        ),
        (
            format!("{fe}log = [\"127.0.0.1 local2 info loud\"]\n"),
            "lb.toml:5: frontend[0].log[0]: unknown minlevel \"loud\"",
        ),
        (
            format!("{fe}log = [\"127.0.0.1 len 10 local2\"]\n"),
            "lb.toml:5: frontend[0].log[0]: len 10 is outside 80..=65535",
        ),
        (
            format!("{fe}log = [\"127.0.0.1 format xml local2\"]\n"),
            "lb.toml:5: frontend[0].log[0]: unknown format \"xml\"",
        ),
        (
            format!("{fe}log = [\"global\", \"global\"]\n"),
            "lb.toml:5: frontend[0].log[1]: \"global\" twice",
        ),
        (
            format!("{fe}log = [{{ target = \"127.0.0.1\", facility = \"nope\" }}]\n"),
            "lb.toml:5: frontend[0].log[0].facility: unknown facility \"nope\"",
        ),
        (
            "[defaults]\nlog = [\"127.0.0.1\"]\n".to_owned(),
            "lb.toml:2: defaults.log[0]: \"127.0.0.1\": the facility is missing",
        ),
        (
            format!("{fe}log = \"global\"\n"),
            "lb.toml:5: syntax: invalid type",
        ),
        (
            format!("{fe}log = [1]\n"),
            "lb.toml:5: syntax: invalid type",
        ),
        (
            format!("{fe}forwardfor = {{ if_none = \"yes\" }}\n"),
            "lb.toml:5: syntax: invalid type",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"http\"\nbalance = \"hdr(host) use_domain\"\n"
                .to_owned(),
            "lb.toml:4: backend[0].balance: hdr(host): unknown option \"use_domain\"",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"http\"\nbalance = \"url_param id check_post 0\"\n"
                .to_owned(),
            "lb.toml:4: backend[0].balance: url_param id check_post: \"0\" is not a byte count",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"tcp\"\nbalance = \"url_param id check_post\"\n"
                .to_owned(),
            "lb.toml:4: backend[0].balance: \"url_param id check_post\" needs mode http",
        ),
        (
            format!("{fe}http_request = [\"redirect location %[nope]\"]\n"),
            "lb.toml:5: frontend[0].http_request[0]: unknown fetch",
        ),
        (
            format!("{fe}http_request = [\"redirect prefix /%[path x\"]\n"),
            "lb.toml:5: frontend[0].http_request[0]:",
        ),
    ];
    for (text, expected) in &cases {
        let errors = errors(text);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected \"{expected}\"\n  got {errors:#?}\n  for:\n{text}"
        );
    }
}

#[test]
fn balance_options_reach_the_backend() {
    let config = parse(
        "[[backend]]\nname = \"h\"\nmode = \"http\"\nbalance = \"hdr(Host) use_domain_only\"\n[[backend]]\nname = \"p\"\nmode = \"http\"\nbalance = \"url_param sid check_post 128\"\n",
    )
    .unwrap();
    use crate::proxy::balance::{Balance, HdrHash, UrlParam};
    assert_eq!(
        config.backends[0].balance,
        Balance::Hdr(HdrHash {
            name: hyper::http::HeaderName::from_static("host"),
            domain_only: true
        })
    );
    assert_eq!(
        config.backends[1].balance,
        Balance::UrlParam(UrlParam {
            name: "sid".into(),
            check_post: Some(128)
        })
    );
}
