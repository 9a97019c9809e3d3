//! The import end to end on the seed fixtures (tests/fixtures/import/) and
//! on small configurations: what the report says, that the output passes
//! `lbd check`'s validation, that importing twice gives the same bytes, and
//! that broken sources give FILE:LINE errors.
use super::{check, import, report::Outcome, Imported, Options};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/import")
        .join(name)
}

fn run(keepalived: Option<&str>, haproxy: Option<&str>, prefer_xdp: bool) -> Imported {
    let options = Options {
        keepalived: keepalived.map(fixture),
        haproxy: haproxy.map(fixture),
        prefer_xdp,
    };
    let first = import(&options).unwrap_or_else(|e| panic!("{e}"));
    let second = import(&options).unwrap();
    assert_eq!(
        first.toml, second.toml,
        "importing twice gives the same bytes"
    );
    first
}

/// Imports and asserts that nothing is reported unsupported; the test
/// then checks what it expects and ends with `passes_check`.
fn imports_cleanly(keepalived: Option<&str>, haproxy: Option<&str>, prefer_xdp: bool) -> Imported {
    let imported = run(keepalived, haproxy, prefer_xdp);
    let unsupported: Vec<String> = imported
        .report
        .unsupported()
        .map(|l| l.to_string())
        .collect();
    assert!(unsupported.is_empty(), "unsupported: {unsupported:#?}");
    imported
}

/// Validates as `lbd check` does (interfaces aside).
fn passes_check(imported: &Imported) {
    // Certificates the seeds name (/etc/haproxy/tls/...) are not on this
    // machine: those come back as notes, anything else is an error.
    if let Err(errors) = check(&imported.toml, Path::new("lb.toml")) {
        panic!(
            "lbd check refuses the import:\n{errors}\n---\n{}",
            imported.toml
        );
    }
}

fn report_line<'a>(imported: &'a Imported, file: &str, line: usize) -> &'a Outcome {
    &imported
        .report
        .lines
        .iter()
        .find(|l| l.file.ends_with(file) && l.line == line)
        .unwrap_or_else(|| panic!("no report line for {file}:{line}:\n{}", imported.report))
        .outcome
}

fn text(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Mapped(t) | Outcome::Approximated(t) | Outcome::NotSupported(t) => t,
    }
}

// Every seed configuration: one test each, so a failure names the fixture.

#[test]
fn seed000_keepalived_master() {
    let i = imports_cleanly(Some("seed000_master.keepalived.conf"), None, false);
    assert!(i.toml.contains("name = \"rtr_0\""), "{}", i.toml);
    assert!(i.toml.contains("vrid = 10"));
    assert!(i.toml.contains("priority = 200"));
    assert!(i.toml.contains("auth_pass = \"P@ssW0rd\""));
    passes_check(&i);
}

#[test]
fn seed000_keepalived_backup() {
    let i = imports_cleanly(Some("seed000_backup.keepalived.conf"), None, false);
    assert!(i.toml.contains("priority = 100"));
    passes_check(&i);
}

/// Needs the `[stats]` section (stats helper's branch).
#[test]
fn seed000_haproxy() {
    let i = imports_cleanly(None, Some("seed000.haproxy.cfg"), false);
    // `option tcplog` in a backend: HAProxy ignores it with a warning.
    let tcplog = report_line(&i, "seed000.haproxy.cfg", 59);
    assert!(
        text(tcplog).contains("'option tcplog' directive is ignored in backends."),
        "{tcplog:?}"
    );
    // What the tcp frontend inherits for HTTP: HAProxy's two warnings.
    let kubeproxy = i
        .report
        .lines
        .iter()
        .filter(|l| l.line == 48)
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        kubeproxy.contains("'option httplog' not usable with frontend 'kubeproxy' (needs 'mode http'). Falling back to 'option tcplog'.")
            && kubeproxy.contains("'option forwardfor' ignored for frontend 'kubeproxy' as it requires HTTP mode."),
        "{kubeproxy}"
    );
    assert!(
        i.toml.contains("[stats]\nbind = \"0.0.0.0:8088\""),
        "{}",
        i.toml
    );
    assert!(i.toml.contains("uri = \"/hastat\""));
    passes_check(&i);
}

#[test]
fn seed001_keepalived_master_and_backup() {
    passes_check(&imports_cleanly(
        Some("seed001_master.keepalived.conf"),
        None,
        false,
    ));
    passes_check(&imports_cleanly(
        Some("seed001_backup.keepalived.conf"),
        None,
        false,
    ));
}

#[test]
fn seed001_keepalived_tracking() {
    let i = imports_cleanly(Some("seed001_tracking.keepalived.conf"), None, false);
    for want in [
        "nopreempt = true",
        "track_process = [{ name = \"httpd\", weight = 10 }]",
        "track_file = [{ path = \"/var/run/my_app/vrrp_track_file\", weight = 1 }]",
        "track_interface = [{ name = \"ens9\", weight = 5 }]",
        "track_script = [{ name = \"keepalived_check\" }]",
        "script = \"/etc/keepalived/check.sh\"",
    ] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    passes_check(&i);
}

/// Needs the `[stats]` section (stats helper's branch).
#[test]
fn seed002_haproxy() {
    let i = imports_cleanly(None, Some("seed002.haproxy.cfg"), false);
    let legacy = report_line(&i, "seed002.haproxy.cfg", 44);
    assert!(
        text(legacy).contains("please use the 'bind' keyword"),
        "{legacy:?}"
    );
    let httpchk = report_line(&i, "seed002.haproxy.cfg", 71);
    assert!(text(httpchk).contains("deprecated"), "{httpchk:?}");
    assert!(i
        .toml
        .contains("httpchk = \"HEAD / HTTP/1.1\\\\r\\\\nHost:\\\\ localhost\""));
    assert!(i.toml.contains("realm = \"Haproxy Statistics\""));
    // The monitoring listen became [stats]: its proxy settings do nothing,
    // its default_backend is not reached through it.
    assert!(text(report_line(&i, "seed002.haproxy.cfg", 46)).contains("became [stats]"));
    let passed_on = report_line(&i, "seed002.haproxy.cfg", 55);
    assert!(
        matches!(passed_on, Outcome::Approximated(_)),
        "{passed_on:?}"
    );
    assert!(!i.toml.contains("[[listen]]"));
    assert!(i.toml.contains("admin = true"));
    passes_check(&i);
}

#[test]
fn seed003_haproxy() {
    let i = imports_cleanly(None, Some("seed003.haproxy.cfg"), false);
    let legacy = report_line(&i, "seed003.haproxy.cfg", 38);
    assert!(matches!(legacy, Outcome::Approximated(_)), "{legacy:?}");
    for want in [
        "bind = [\"*:5000\"]",
        "bind = [\":80\", \":443 ssl crt /etc/haproxy/tls/cert.pem\"]",
        "http_request = [\"redirect scheme https unless { ssl_fc }\"]",
        "use_backend = [\"static          if url_static\"]",
    ] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    passes_check(&i);
    // The seed's certificate is not on this machine: a note, not an error.
    let notes = check(&i.toml, Path::new("lb.toml")).expect("valid");
    assert!(
        notes
            .iter()
            .any(|n| n.message.contains("/etc/haproxy/tls/cert.pem")),
        "{notes:?}"
    );
    // Any other error still refuses the file.
    let broken = i.toml.replace("ssl crt", "ssl crt-bogus");
    assert!(check(&broken, Path::new("lb.toml")).is_err());
}

#[test]
fn seed004_keepalived_and_haproxy() {
    passes_check(&imports_cleanly(
        Some("seed004_backup.keepalived.conf"),
        None,
        false,
    ));
    let i = imports_cleanly(
        Some("seed004_master.keepalived.conf"),
        Some("seed004.haproxy.cfg"),
        false,
    );
    let renamed = report_line(&i, "seed004.haproxy.cfg", 10);
    assert!(text(renamed).contains("imported as web1_2"), "{renamed:?}");
    assert!(i.toml.contains("name = \"web1_2\""));
    assert!(i.toml.contains("[[frontend]]"));
    passes_check(&i);
}

#[test]
fn prefer_xdp_turns_a_plain_tcp_frontend_into_an_xdp_service_on_the_vip() {
    let i = imports_cleanly(
        Some("seed004_master.keepalived.conf"),
        Some("seed004.haproxy.cfg"),
        true,
    );
    assert!(!i.toml.contains("[[frontend]]"), "{}", i.toml);
    assert!(!i.toml.contains("[[backend]]"), "{}", i.toml);
    for want in [
        "[[service]]\nname = \"main\"\nvip = \"198.18.0.64\"\nport = 80\nprotocol = \"tcp\"\nmode = \"fullnat\"",
        "address = \"198.18.0.61\"",
        "health_check = { kind = \"tcp\", interval = 2 }",
    ] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    let path = report_line(&i, "seed004.haproxy.cfg", 4);
    let frontend_lines: Vec<String> = i
        .report
        .lines
        .iter()
        .filter(|l| l.line == 4 && l.file.ends_with("seed004.haproxy.cfg"))
        .map(|l| l.to_string())
        .collect();
    assert!(
        frontend_lines
            .iter()
            .any(|l| l.contains("XDP service main")),
        "{path:?} {frontend_lines:#?}"
    );
    passes_check(&i);
}

#[test]
fn prefer_xdp_says_why_a_frontend_stays_in_the_proxy() {
    // Without a VIP, a wildcard bind cannot become an XDP service; an
    // http frontend never does.
    let i = run(None, Some("seed004.haproxy.cfg"), true);
    let lines: Vec<String> = i.report.lines.iter().map(|l| l.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stays in the proxy") && l.contains("no VRRP address is known")),
        "{lines:#?}"
    );
    let i = run(
        Some("seed000_master.keepalived.conf"),
        Some("seed003.haproxy.cfg"),
        true,
    );
    let lines: Vec<String> = i.report.lines.iter().map(|l| l.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("frontend main: mapped: --prefer-xdp: stays in the proxy: mode http")),
        "{lines:#?}"
    );
}

/// Needs the `[stats]` section (stats helper's branch).
#[test]
fn prefer_xdp_on_seed000_serves_both_tcp_frontends_with_xdp() {
    let i = imports_cleanly(
        Some("seed000_master.keepalived.conf"),
        Some("seed000.haproxy.cfg"),
        true,
    );
    assert!(i
        .toml
        .contains("name = \"kubeproxy\"\nvip = \"198.18.0.100\"\nport = 16443"));
    assert!(i
        .toml
        .contains("name = \"web-console\"\nvip = \"198.18.0.100\"\nport = 18080"));
    assert!(i
        .toml
        .contains("address = \"198.18.0.1\"  # server storage01\nport = 6443"));
    passes_check(&i);
}

fn import_text(keepalived: Option<&str>, haproxy: Option<&str>) -> Result<Imported, String> {
    import_text_with(keepalived, haproxy, false)
}

fn import_text_with(
    keepalived: Option<&str>,
    haproxy: Option<&str>,
    prefer_xdp: bool,
) -> Result<Imported, String> {
    let dir = std::env::temp_dir().join(format!(
        "lbd-import-unit-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut options = Options {
        prefer_xdp,
        ..Options::default()
    };
    if let Some(k) = keepalived {
        let path = dir.join("keepalived.conf");
        std::fs::write(&path, k).unwrap();
        options.keepalived = Some(path);
    }
    if let Some(h) = haproxy {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, h).unwrap();
        options.haproxy = Some(path);
    }
    let result =
        import(&options).map_err(|e| e.to_string().replace(&format!("{}/", dir.display()), ""));
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

#[test]
fn malformed_sources_give_file_and_line_errors() {
    let keepalived: &[(&str, &str)] = &[
        ("vrrp_instance VI_1 {\n  state MASTER\n", "keepalived.conf:1: '{' is never closed"),
        ("vrrp_instance {\n}\n", "keepalived.conf:1: vrrp_instance takes a name"),
        ("vrrp_instance V {\n virtual_router_id 1 2\n virtual_ipaddress {\n 198.18.0.1\n }\n}\n", "keepalived.conf:2: virtual_router_id takes one value, not 2"),
        ("vrrp_instance V {\n priority high\n}\n", "keepalived.conf:2: priority: \"high\" is not a number"),
        ("vrrp_instance V {\n virtual_router_id 1\n}\n", "keepalived.conf:1: vrrp_instance V has no virtual_ipaddress"),
        ("vrrp_instance V {\n virtual_router_id 1\n virtual_ipaddress {\n 198.18.0.1 dev\n }\n}\n", "keepalived.conf:4: virtual_ipaddress: unknown option \"dev\""),
        ("vrrp_instance V {\n virtual_router_id 1\n virtual_ipaddress {\n x.y\n }\n}\n", "keepalived.conf:4: \"x.y\" is not an IP address"),
        ("vrrp_script s {\n interval 2\n}\n", "keepalived.conf:1: vrrp_script s has no script"),
        ("virtual_server 198.18.0.1 {\n}\n", "keepalived.conf:1: virtual_server takes an address and a port"),
        ("vrrp_instance V {\n track_process {\n nope\n }\n}\n", "keepalived.conf:3: no vrrp_track_process \"nope\""),
    ];
    for (text, want) in keepalived {
        let error = import_text(Some(text), None).err().unwrap_or_default();
        assert!(error.contains(want), "{text:?}: {error}");
    }
    let haproxy: &[(&str, &str)] = &[
        ("maxconn 10\n", "haproxy.cfg:1: unknown section 'maxconn'"),
        ("backend\n", "haproxy.cfg:1: 'backend' needs a name"),
        (
            "backend b\n server web1\n",
            "haproxy.cfg:2: 'server' takes at least 2 argument(s), not 1",
        ),
        (
            "defaults\n timeout client\n",
            "haproxy.cfg:2: 'timeout' takes 2 argument(s), not 1",
        ),
        (
            "defaults\n timeout nap 1s\n",
            "haproxy.cfg:2: unknown timeout \"nap\"",
        ),
        (
            "frontend f\n bind\n",
            "haproxy.cfg:2: 'bind' takes at least 1 argument(s), not 0",
        ),
        (
            "frontend f\n default_backend a b\n",
            "haproxy.cfg:2: 'default_backend' takes 1 argument(s), not 2",
        ),
        (
            "backend b\n server w 198.18.0.1:80 weight\n",
            "haproxy.cfg:2: server option 'weight' needs a value",
        ),
        (
            "backend b\n server w 198.18.0.1:80 rise x\n",
            "haproxy.cfg:2: server option 'rise' needs a number",
        ),
        (
            "frontend f\n mode udp\n",
            "haproxy.cfg:2: unknown mode \"udp\"",
        ),
        (
            "global\n log 127.0.0.1\n",
            "haproxy.cfg:2: 'log' takes 2 to 8 argument(s), not 1",
        ),
        (
            "listen l\n stats auth admin\n bind :1\n",
            "haproxy.cfg:2: stats auth takes user:password",
        ),
        (
            "frontend f\n acl a\n",
            "haproxy.cfg:2: 'acl' takes at least 2 argument(s), not 1",
        ),
        (
            "global\n x \"unterminated\n",
            "haproxy.cfg:2: unterminated \" quote",
        ),
    ];
    for (text, want) in haproxy {
        let error = import_text(None, Some(text)).err().unwrap_or_default();
        assert!(error.contains(want), "{text:?}: {error}");
    }
}

#[test]
fn haproxy_warnings_and_unsupported_directives_are_reported() {
    let cfg = "\
defaults
  mode tcp
frontend f
  bind :80
  option httplog
  option forwardfor
  default_backend b
backend b
  option tcplog
  option mysql-check
  redispatch_me
  server s 198.18.0.1:80 check send-proxy
  server h web.example:80
";
    let i = import_text(None, Some(cfg)).unwrap();
    let shown: Vec<String> = i.report.lines.iter().map(|l| l.to_string()).collect();
    let expect = [
        (5, "log_format = \"tcplog\": HAProxy warns \"'option httplog' not usable with frontend 'f' (needs 'mode http'). Falling back to 'option tcplog'\""),
        (6, "HAProxy warns \"'option forwardfor' ignored for frontend 'f' as it requires HTTP mode\""),
        (9, "HAProxy warns \"'option tcplog' directive is ignored in backends.\""),
        (10, "not supported: lbd checks servers by TCP connect or HTTP"),
        (11, "not supported: unknown to lbd: \"redispatch_me\""),
        (12, "not supported: [[backend.server]]; send-proxy: lbd sends no PROXY protocol header (left out)"),
        (13, "not supported: web.example:80: lbd does not resolve host names"),
    ];
    for (line, want) in expect {
        let found = shown
            .iter()
            .any(|l| l.contains(&format!("haproxy.cfg:{line}:")) && l.contains(want));
        assert!(found, "line {line}: {want}\n{shown:#?}");
    }
    assert_eq!(i.report.unsupported().count(), 4);
    // What is left out does not break the rest.
    check(&i.toml, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
}

#[test]
fn keepalived_options_lbd_has_all_map() {
    let conf = "\
global_defs {
  router_id lb.east/1
  script_user keepalived_script
  enable_script_security
  vrrp_version 3
}
vrrp_script chk {
  script \"pidof nginx\"
  interval 2
  timeout 1
  rise 2
  fall 3
  weight -20
}
vrrp_instance VI_6 {
  interface eth1
  virtual_router_id 52
  priority 150
  advert_int 0.5
  preempt_delay 10
  unicast_src_ip 198.18.0.1
  unicast_peer {
    198.18.0.2
    198.18.0.3
  }
  virtual_ipaddress {
    198.18.0.100/32 dev eth1
    198.18.0.101/24 dev eth1 label eth1:vip
  }
  track_script {
    chk weight -30
  }
  track_interface {
    eth1
  }
  notify /etc/keepalived/notify.sh
  garp_master_delay 5
  garp_master_repeat 3
  garp_master_refresh 60
}
vrrp_instance VI_7 {
  interface eth1
  virtual_router_id 53
  virtual_ipaddress {
    198.18.0.102
  }
  track_interface {
    eth2 weight 10
  }
}
vrrp_sync_group G {
  group {
    VI_6
    VI_7
  }
}
";
    let i = import_text(Some(conf), None).unwrap();
    check(&i.toml, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    assert_eq!(i.report.unsupported().count(), 0, "{}", i.report);
    for want in [
        "name = \"lb_east_1\"",
        "version = 3",
        "advert_int = 0.5",
        "preempt_delay = 10",
        "unicast_peer = [\"198.18.0.2\", \"198.18.0.3\"]",
        "virtual_ipaddress = [\"198.18.0.100\", \"198.18.0.101\"]",
        "notify = \"/etc/keepalived/notify.sh\"",
        "garp_master_refresh = 60",
        "weight = -20",
        // The sync group: each member tracks what any member tracks.
        "track_interface = [{ name = \"eth1\" }, { name = \"eth2\", weight = 10 }]",
    ] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    assert_eq!(
        i.toml
            .matches("track_interface = [{ name = \"eth1\" }, { name = \"eth2\", weight = 10 }]")
            .count(),
        2
    );
    let vip24 = i
        .report
        .lines
        .iter()
        .find(|l| l.directive.starts_with("198.18.0.101/24"))
        .unwrap();
    assert!(matches!(vip24.outcome, Outcome::Approximated(_)), "{vip24}");
    assert!(vip24.to_string().contains("without the label eth1:vip"));
}

#[test]
fn lvs_virtual_servers_become_xdp_services_with_checks() {
    let conf = "\
virtual_server 198.18.0.100 443 {
  delay_loop 6
  lb_algo wrr
  lb_kind DR
  persistence_timeout 50
  protocol TCP
  real_server 198.18.0.11 443 {
    weight 3
    TCP_CHECK {
      connect_timeout 3
      connect_port 443
      retry 3
      delay_before_retry 3
    }
  }
  real_server 198.18.0.12 443 {
    HTTP_GET {
      url {
        path /healthz
        status_code 200
      }
      connect_timeout 2
    }
  }
  real_server 198.18.0.13 443 {
    SSL_GET {
      url {
        path /
      }
    }
  }
  real_server 198.18.0.14 443 {
    MISC_CHECK {
      misc_path \"/usr/local/bin/probe 198.18.0.14\"
      misc_timeout 4
    }
  }
}
virtual_server 198.18.0.100 53 {
  lb_kind NAT
  protocol UDP
  real_server 198.18.0.21 5353 {
  }
}
";
    let i = import_text(Some(conf), None).unwrap();
    check(&i.toml, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    assert_eq!(i.report.unsupported().count(), 0, "{}", i.report);
    for want in [
        "name = \"vs_198_18_0_100_443\"",
        "mode = \"dsr\"",
        "weight = 3",
        "health_check = { interval = 6, kind = \"tcp\", timeout = 3, port = 443, fall = 3, rise = 1 }",
        "health_check = { interval = 6, kind = \"http\", path = \"/healthz\", expect_status = \"200\", timeout = 2 }",
        "health_check = { interval = 6, kind = \"https\", tls_skip_verify = true, path = \"/\", expect_status = \"200\" }",
        "health_check = { interval = 6, kind = \"command\", command = \"/usr/local/bin/probe 198.18.0.14\", timeout = 4 }",
        "protocol = \"udp\"",
        "mode = \"nat\"",
        "port = 5353",
    ] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    let algo = i
        .report
        .lines
        .iter()
        .find(|l| l.directive == "lb_algo wrr")
        .unwrap();
    assert!(matches!(algo.outcome, Outcome::Approximated(_)));
}

#[test]
fn keepalived_directives_lbd_lacks_are_not_supported_with_a_reason() {
    let conf = "\
global_defs {
  notification_email {
    ops@example.com
  }
}
vrrp_instance V {
  virtual_router_id 1
  virtual_ipaddress {
    198.18.0.1
  }
  notify_master /bin/true
  authentication {
    auth_type AH
  }
}
";
    let i = import_text(Some(conf), None).unwrap();
    let unsupported: Vec<String> = i.report.unsupported().map(|l| l.to_string()).collect();
    assert_eq!(unsupported.len(), 3, "{unsupported:#?}");
    assert!(unsupported[0].contains(
        "keepalived.conf:2: notification_email { ... }: not supported: lbd sends no e-mail"
    ));
    assert!(unsupported[1].contains(
        "keepalived.conf:11: notify_master /bin/true: not supported: lbd has one notify program"
    ));
    assert!(unsupported[2].contains("keepalived.conf:13: auth_type AH: not supported"));
}

/// Random statements built from the keywords both translators know, in
/// random nesting: the import returns a report or FILE:LINE errors, and
/// never panics.
#[test]
fn random_sources_never_panic_the_translators() {
    let keepalived_words = [
        "global_defs",
        "vrrp_instance",
        "vrrp_script",
        "vrrp_sync_group",
        "virtual_server",
        "real_server",
        "TCP_CHECK",
        "HTTP_GET",
        "url",
        "track_script",
        "track_process",
        "vrrp_track_process",
        "virtual_ipaddress",
        "authentication",
        "group",
        "weight",
        "priority",
        "interface",
        "dev",
        "label",
        "198.18.0.1",
        "198.18.0.1/24",
        "80",
        "-5",
        "x",
        "{",
        "}",
        "\n",
        "\n",
        "\n",
    ];
    let haproxy_words = [
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "bind",
        "server",
        "option",
        "httplog",
        "forwardfor",
        "except",
        "httpchk",
        "stats",
        "enable",
        "auth",
        "a:b",
        "mode",
        "tcp",
        "http",
        "timeout",
        "client",
        "default_backend",
        "use_backend",
        "acl",
        "log",
        "*:80",
        ":80",
        "198.18.0.1:80",
        "check",
        "weight",
        "ssl",
        "crt",
        "\"",
        "\\",
        "#",
        "x",
        "\n",
        "\n",
        "\n",
    ];
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..300 {
        let mut k = String::new();
        let mut h = String::new();
        for _ in 0..next(60) {
            k.push_str(keepalived_words[next(keepalived_words.len())]);
            k.push(' ');
            h.push_str(haproxy_words[next(haproxy_words.len())]);
            h.push(' ');
        }
        let keepalived = (round % 3 != 1).then_some(k.as_str());
        let haproxy = (round % 3 != 0).then_some(h.as_str());
        for prefer_xdp in [false, true] {
            if let Ok(imported) = import_text_with(keepalived, haproxy, prefer_xdp) {
                let _ = check(&imported.toml, Path::new("lb.toml"));
            }
        }
    }
}

#[test]
fn http_check_send_becomes_the_httpchk_request() {
    let cfg = "\
backend b
  mode http
  option httpchk
  http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host api.example hdr User-Agent \"lbd check\"
  http-check expect status 200-399
  server s 198.18.0.1:80 check
";
    let i = import_text(None, Some(cfg)).unwrap();
    assert_eq!(i.report.unsupported().count(), 0, "{}", i.report);
    assert!(
        i.toml.contains(
            r#"httpchk = "GET /healthz HTTP/1.1\\r\\nHost:\\ api.example\\r\\nUser-Agent:\\ lbd\\ check""#
        ),
        "{}",
        i.toml
    );
    assert!(i.toml.contains("http_check_expect = \"status 200-399\""));
    check(&i.toml, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    assert!(i.report.notes[0].contains("interface = \"eth0\" is assumed"));
}

/// A section's own `log` lines map to its `log` list, beside `log global`,
/// and the result passes `lbd check`.
#[test]
fn section_log_targets_are_mapped() {
    let cfg = "global\n log 127.0.0.1 local2\n\
               defaults\n mode http\n timeout client 1m\n timeout server 1m\n timeout connect 5s\n\
               frontend web\n bind :80\n log global\n log 127.0.0.1:5140 len 2048 local3 info\n default_backend app\n\
               frontend other\n bind :81\n log global\n default_backend app\n\
               backend app\n log 198.18.0.9 local4 notice err\n server a 198.18.0.11:80\n";
    let imported = import_text(None, Some(cfg)).unwrap_or_else(|e| panic!("{e}"));
    for want in [
        "log = [\"global\", \"127.0.0.1:5140 len 2048 local3 info\"]",
        "log = true",
        "log = [\"198.18.0.9 local4 notice err\"]",
    ] {
        assert!(
            imported.toml.contains(want),
            "{want} missing:\n{}",
            imported.toml
        );
    }
    assert_eq!(
        imported.report.unsupported().count(),
        0,
        "{}",
        imported.report
    );
    passes_check(&imported);
}

/// The TLS directives lbd takes beside `ssl crt`: `crt-base`/`ca-base`
/// become `[global]` bases (paths kept as written), a relative base is
/// written into the paths, the bind's `ca-ignore-err`/`crt-ignore-err` and
/// the server's `verifyhost`, `check-sni` and `alpn` (h2 dropped: lbd
/// speaks HTTP/1.1 to servers) are kept, and the output passes `lbd check`.
#[test]
fn tls_directives_are_mapped() {
    let cfg = "global\n crt-base /etc/haproxy/certs\n ca-base /etc/haproxy/ca\n\
               defaults\n mode http\n timeout client 1m\n timeout server 1m\n timeout connect 5s\n\
               frontend web\n bind :443 ssl crt site.pem verify optional ca-file clients.pem ca-ignore-err all crt-ignore-err 10,20\n default_backend api\n\
               backend api\n default-server check-sni health.example alpn h2,http/1.1\n\
               server a 198.18.0.11:6443 ssl verify required ca-file api-ca.pem verifyhost api.example check-sni a.api.example alpn http/1.1\n\
               server b 198.18.0.12:6443 ssl verify required ca-file /abs/ca.pem sni str(b.api.example) check\n";
    let i = import_text(None, Some(cfg)).unwrap_or_else(|e| panic!("{e}"));
    for want in [
        "crt_base = \"/etc/haproxy/certs\"",
        "ca_base = \"/etc/haproxy/ca\"",
        "\":443 ssl crt site.pem verify optional ca-file clients.pem ca-ignore-err all crt-ignore-err 10,20\"",
        "verifyhost = \"api.example\"",
        "check_sni = \"a.api.example\"",
        "alpn = \"http/1.1\"",
        "ca_file = \"api-ca.pem\"",
        "ca_file = \"/abs/ca.pem\"",
        "default_server = { check_sni = \"health.example\", alpn = \"http/1.1\" }",
    ] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    assert_eq!(i.report.unsupported().count(), 0, "{}", i.report);
    // Only the default-server line is approximated: its h2 is dropped.
    let approximated: Vec<&str> = i
        .report
        .lines
        .iter()
        .filter_map(|l| match &l.outcome {
            Outcome::Approximated(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        approximated
            .iter()
            .any(|t| t.contains("alpn: lbd speaks HTTP/1.1 to servers, h2 not offered")),
        "{}",
        i.report
    );
    // The files are not on this machine: absent-file notes only, and the
    // absent paths are the ones under the bases.
    let absent = check(&i.toml, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    let absent: Vec<String> = absent.iter().map(|e| e.message.clone()).collect();
    assert!(
        absent
            .iter()
            .any(|m| m.contains("/etc/haproxy/certs/site.pem")),
        "{absent:#?}"
    );

    // A relative base (lbd refuses one) is written into the paths.
    let relative = cfg.replace("crt-base /etc/haproxy/certs", "crt-base certs");
    let i = import_text(None, Some(&relative)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!i.toml.contains("crt_base"), "{}", i.toml);
    assert!(i.toml.contains("ssl crt certs/site.pem"), "{}", i.toml);
    assert!(
        text(report_line(&i, "haproxy.cfg", 2)).contains("written into each relative crt path"),
        "{}",
        i.report
    );

    // A server offering only h2 cannot be kept: reported, not written.
    let h2 = cfg.replace("alpn http/1.1", "alpn h2");
    let i = import_text(None, Some(&h2)).unwrap_or_else(|e| panic!("{e}"));
    assert!(i
        .report
        .unsupported()
        .any(|l| l.to_string().contains("alpn h2")));
}

#[test]
fn redispatch_interval_is_kept() {
    let cfg = "defaults\n mode http\n retries 3\n option redispatch -2\n timeout client 1m\n timeout server 1m\n timeout connect 5s\n\
               backend api\n option redispatch 2\n server a 198.18.0.11:80\n\
               backend web\n option redispatch x\n server b 198.18.0.12:80\n";
    let i = import_text(None, Some(cfg)).unwrap_or_else(|e| panic!("{e}"));
    for want in ["redispatch = -2", "redispatch = 2", "redispatch = true"] {
        assert!(i.toml.contains(want), "{want} missing:\n{}", i.toml);
    }
    assert!(
        i.report.lines.iter().any(|l| matches!(&l.outcome,
            Outcome::Approximated(t) if t.contains("interval is not an integer"))),
        "{}",
        i.report
    );
    passes_check(&i);
}
