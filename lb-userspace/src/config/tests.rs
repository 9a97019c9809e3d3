use super::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use vrrp::Version;

pub(crate) struct FakeHost;
impl Environment for FakeHost {
    fn interface_exists(&self, name: &str) -> bool {
        name == "eth0"
    }
    fn machine(&self) -> Option<Machine> {
        Some(Machine {
            memory_bytes: 8 << 30,
            cpus: 2,
        })
    }
}

pub(crate) const GOOD: &str = r#"[instance]
name = "lb1"
interface = "eth0"

[[service]]
name = "web"
vip = "198.18.0.100"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
address = "198.18.0.11"
weight = 2
[[service.backend]]
address = "198.18.0.12"
"#;

pub(super) fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("lb.toml"), &FakeHost) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The one error `text` has; panics if there are more or none.
pub(super) fn error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().expect("one error")
}

#[test]
fn a_good_file_parses_with_defaults() {
    let config = Config::parse(GOOD, Path::new("lb.toml"), &FakeHost).unwrap();
    assert_eq!(config.instance.name, "lb1");
    assert_eq!(config.instance.xdp_mode, XdpModeChoice::Auto);
    assert_eq!(config.instance.maglev_table_size, 65_537);
    assert_eq!(config.instance.max_services, DEFAULT_MAX_SERVICES);
    let web = &config.services[0];
    assert_eq!(
        (web.port, web.protocol, web.mode),
        (80, Protocol::Tcp, ForwardingMode::Dsr)
    );
    assert_eq!(web.backends[0].weight, 2);
    assert_eq!(web.backends[1].weight, 1, "weight defaults to 1");
    assert_eq!(
        web.backends[1].port, 80,
        "backend port defaults to the service port"
    );
}

#[test]
fn port_zero_means_every_port() {
    let text = GOOD.replace("port = 80", "port = 0");
    let config = Config::parse(&text, Path::new("lb.toml"), &FakeHost).unwrap();
    assert_eq!(config.services[0].port, 0);
}

#[test]
fn syntax_error_names_the_line() {
    let text = GOOD.replace("port = 80", "port = = 80");
    assert!(
        error(&text).starts_with("lb.toml:8: syntax: "),
        "{}",
        error(&text)
    );
}

#[test]
fn unknown_field_is_rejected() {
    let text = GOOD.replace("weight = 2", "wieght = 2");
    let e = error(&text);
    assert!(
        e.starts_with("lb.toml:13: syntax: unknown field `wieght`"),
        "{e}"
    );
}

#[test]
fn wrong_type_is_rejected() {
    let text = GOOD.replace("port = 80", "port = \"http\"");
    let e = error(&text);
    assert!(e.starts_with("lb.toml:8: syntax: invalid type"), "{e}");
}

#[test]
fn port_out_of_range_is_rejected() {
    let text = GOOD.replace("port = 80", "port = 70000");
    assert!(error(&text).starts_with("lb.toml:8: syntax: "));
}

#[test]
fn missing_instance_section() {
    let text = GOOD.replace("[instance]\nname = \"lb1\"\ninterface = \"eth0\"\n", "");
    assert!(
        error(&text).contains("missing field `instance`"),
        "{}",
        error(&text)
    );
}

#[test]
fn unknown_protocol() {
    let text = GOOD.replace("protocol = \"tcp\"", "protocol = \"sctp\"");
    let e = error(&text);
    assert!(
        e.starts_with("lb.toml:9: syntax: unknown variant `sctp`"),
        "{e}"
    );
}

#[test]
fn bad_instance_name() {
    assert_eq!(
        error(&GOOD.replace("name = \"lb1\"", "name = \"lb/1\"")),
        "lb.toml:2: instance.name: \"lb/1\" must be 1 to 32 characters of A-Z a-z 0-9 - _ (it names the pin directory)"
    );
}

#[test]
fn unknown_interface() {
    assert_eq!(
        error(&GOOD.replace("interface = \"eth0\"", "interface = \"eth9\"")),
        "lb.toml:3: instance.interface: unknown interface \"eth9\" (not found in this network namespace)"
    );
}

#[test]
fn maglev_size_must_be_prime() {
    let text = GOOD.replace(
        "interface = \"eth0\"\n",
        "interface = \"eth0\"\nmaglev_table_size = 65536\n",
    );
    assert_eq!(
        error(&text),
        "lb.toml:4: instance.maglev_table_size: 65536 must be a prime between 7 and 16777213 (Maglev needs a prime table size)"
    );
}

#[test]
fn zero_sizes_are_rejected() {
    let text = GOOD.replace(
        "interface = \"eth0\"\n",
        "interface = \"eth0\"\nconntrack_entries = 0\n",
    );
    assert_eq!(
        error(&text),
        "lb.toml:4: instance.conntrack_entries: 0 is outside 1..=67108864"
    );
}

#[test]
fn invalid_vip() {
    assert_eq!(
        error(&GOOD.replace("vip = \"198.18.0.100\"", "vip = \"198.18.0.300\"")),
        "lb.toml:7: service[0].vip: \"198.18.0.300\" is not an IP address"
    );
}

#[test]
fn an_ipv6_service_needs_ipv6_backends() {
    let v6 = GOOD
        .replace("vip = \"198.18.0.100\"", "vip = \"fd00::100\"")
        .replace("198.18.0.11", "fd00::11");
    assert_eq!(
        error(&v6),
        "lb.toml:15: service[0].backend[1].address: 198.18.0.12 and the VIP are of different address families (this balancer does not translate between IPv4 and IPv6)"
    );
    let config = Config::parse(
        &v6.replace("198.18.0.12", "fd00::12"),
        Path::new("lb.toml"),
        &FakeHost,
    )
    .unwrap();
    assert_eq!(
        config.services[0].vip,
        "fd00::100".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        config.services[0].backends[1].address,
        "fd00::12".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn nat_modes_may_change_the_port_and_take_tunables() {
    let text = GOOD
        .replace("mode = \"dsr\"", "mode = \"fullnat\"")
        .replace("weight = 2", "weight = 2\nport = 8080")
        + "";
    let text = text.replace(
        "interface = \"eth0\"",
        "interface = \"eth0\"\nudp_timeout = 5\ntcp_fin_timeout = 10\nsnat_ipv4 = \"198.18.0.1\"\nsnat_port_range = [20000, 20999]",
    );
    let config = Config::parse(&text, Path::new("lb.toml"), &FakeHost).unwrap();
    let service = &config.services[0];
    assert_eq!(service.mode, ForwardingMode::Fullnat);
    assert_eq!(service.backends[0].port, 8080);
    assert_eq!(service.backends[1].port, 80);
    assert_eq!(config.instance.udp_timeout, Duration::from_secs(5));
    assert_eq!(config.instance.tcp_fin_timeout, Duration::from_secs(10));
    assert_eq!(config.instance.tcp_timeout, Duration::from_secs(900));
    assert_eq!(
        config.instance.snat_ipv4,
        Some(Ipv4Addr::new(198, 18, 0, 1))
    );
    assert_eq!(config.instance.snat_port_range, (20000, 20999));
    // The same port change in dsr is refused (the packet is not rewritten).
    let dsr = text.replace("mode = \"fullnat\"", "mode = \"dsr\"");
    assert!(error(&dsr).contains("dsr cannot change the destination port"));
}

#[test]
fn bad_tunables_are_refused() {
    let with = |line: &str| {
        GOOD.replace(
            "interface = \"eth0\"",
            &format!("interface = \"eth0\"\n{line}"),
        )
    };
    assert_eq!(
        error(&with("snat_port_range = [3000, 2000]")),
        "lb.toml:4: instance.snat_port_range: [3000, 2000] must be [first, last] with 1 <= first <= last"
    );
    assert_eq!(
        error(&with("snat_ipv4 = \"fd00::1\"")),
        "lb.toml:4: instance.snat_ipv4: must be an IPv4 address"
    );
    assert_eq!(
        error(&with("udp_timeout = 0")),
        "lb.toml:4: instance.udp_timeout: 0 seconds is outside 1..=604800"
    );
}

#[test]
fn unsupported_mode() {
    assert_eq!(
        error(&GOOD.replace("mode = \"dsr\"", "mode = \"tunnel\"")),
        "lb.toml:10: service[0].mode: unknown mode \"tunnel\" (supported: \"dsr\", \"nat\", \"fullnat\")"
    );
}

#[test]
fn service_without_backends() {
    let text = GOOD.split("[[service.backend]]").next().unwrap().to_owned();
    assert_eq!(
        error(&text),
        "lb.toml:6: service[0].backend: a service needs at least one backend"
    );
}

#[test]
fn invalid_backend_address() {
    assert_eq!(
        error(&GOOD.replace("address = \"198.18.0.12\"", "address = \"backend-2\"")),
        "lb.toml:15: service[0].backend[1].address: \"backend-2\" is not an IP address"
    );
}

#[test]
fn dsr_backend_port_must_match() {
    let text = GOOD.replace("weight = 2", "weight = 2\nport = 8080");
    assert_eq!(
        error(&text),
        "lb.toml:14: service[0].backend[0].port: dsr cannot change the destination port: backend port 8080 differs from service port 80"
    );
}

#[test]
fn duplicate_backend() {
    let text = GOOD.replace("address = \"198.18.0.12\"", "address = \"198.18.0.11\"");
    assert_eq!(
        error(&text),
        "lb.toml:15: service[0].backend[1].address: duplicate backend 198.18.0.11:80"
    );
}

#[test]
fn every_weight_zero() {
    let text = GOOD.replace("weight = 2", "weight = 0").replace(
        "address = \"198.18.0.12\"",
        "address = \"198.18.0.12\"\nweight = 0",
    );
    assert_eq!(
        error(&text),
        "lb.toml:6: service[0].backend: every backend has weight 0: the service could never forward"
    );
}

#[test]
fn weight_too_large() {
    assert_eq!(
        error(&GOOD.replace("weight = 2", "weight = 70000")),
        "lb.toml:13: service[0].backend[0].weight: weight must be at most 65535"
    );
}

fn second_service(name: &str, vip: &str, port: u16, backend: &str) -> String {
    format!(
        "\n[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"{backend}\"\n"
    )
}

#[test]
fn duplicate_service() {
    let text = format!(
        "{GOOD}{}",
        second_service("web2", "198.18.0.100", 80, "198.18.0.13")
    );
    assert_eq!(
        error(&text),
        "lb.toml:17: service[1]: duplicate service: 198.18.0.100:80/tcp is already defined by service \"web\""
    );
}

#[test]
fn same_vip_and_port_with_another_protocol_is_fine() {
    let text = format!(
        "{GOOD}{}",
        second_service("dns", "198.18.0.100", 80, "198.18.0.13")
    )
    .replace(
        "port = 80\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"198.18.0.13\"",
        "port = 80\nprotocol = \"udp\"\n[[service.backend]]\naddress = \"198.18.0.13\"",
    );
    Config::parse(&text, Path::new("lb.toml"), &FakeHost).unwrap();
}

#[test]
fn duplicate_service_name() {
    let text = format!(
        "{GOOD}{}",
        second_service("web", "198.18.0.101", 80, "198.18.0.13")
    );
    assert_eq!(
        error(&text),
        "lb.toml:18: service[1].name: duplicate service name \"web\""
    );
}

#[test]
fn vip_that_is_also_a_backend() {
    let text = format!(
        "{GOOD}{}",
        second_service("api", "198.18.0.101", 443, "198.18.0.100")
    );
    assert_eq!(
        error(&text),
        "lb.toml:23: service[1].backend[0].address: 198.18.0.100 is a VIP of this load balancer; a VIP cannot also be a backend"
    );
}

#[test]
fn more_services_than_max_services() {
    let text = format!(
        "{GOOD}{}",
        second_service("api", "198.18.0.101", 443, "198.18.0.13")
    )
    .replace(
        "interface = \"eth0\"\n",
        "interface = \"eth0\"\nmax_services = 1\n",
    );
    assert_eq!(
        error(&text),
        "lb.toml:1: instance.max_services: 2 services configured but max_services is 1"
    );
}

#[test]
fn every_error_is_reported_in_file_order() {
    let text = GOOD
        .replace("interface = \"eth0\"", "interface = \"eth9\"")
        .replace("weight = 2", "weight = 70000");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[0].starts_with("lb.toml:3:"));
    assert!(all[1].starts_with("lb.toml:13:"));
}

const VRRP: &str = r#"
[[vrrp_script]]
name = "chk"
script = "true"
interval = 2
fall = 3

[[vrrp]]
name = "VI_1"
vrid = 51
priority = 150
auth_pass = "1111"
virtual_ipaddress = ["198.18.0.100"]
track_script = [{ name = "chk", weight = -60 }]
track_interface = [{ name = "eth0" }]
"#;

pub(super) fn with_vrrp(extra: &str) -> String {
    format!("{GOOD}{VRRP}{extra}")
}

#[test]
fn vrrp_defaults_follow_keepalived() {
    let config = Config::parse(&with_vrrp(""), Path::new("lb.toml"), &FakeHost).unwrap();
    let v = &config.vrrp[0];
    assert_eq!(v.interface, "eth0", "defaults to the instance's interface");
    assert_eq!(v.version, Version::V2);
    assert_eq!((v.vrid, v.priority, v.advert_int_cs), (51, 150, 100));
    assert!(v.preempt);
    assert_eq!(v.garp.repeat, 5);
    assert_eq!(v.garp.delay, Duration::from_secs(5));
    assert_eq!(v.track_script[0].weight, -60);
    assert_eq!(v.track_script[0].script.fall, 3);
    assert_eq!(v.track_script[0].script.interval, Duration::from_secs(2));
    assert_eq!(
        v.track_interface[0].weight, 0,
        "no weight: failure means FAULT"
    );
}

#[test]
fn vrrp_v3_allows_centisecond_intervals() {
    let text = with_vrrp("").replace("auth_pass = \"1111\"", "version = 3\nadvert_int = 0.01");
    let config = Config::parse(&text, Path::new("lb.toml"), &FakeHost).unwrap();
    assert_eq!(config.vrrp[0].advert_int_cs, 1);
}

#[test]
fn vrrp_v2_needs_whole_seconds() {
    let text = with_vrrp("").replace("priority = 150", "priority = 150\nadvert_int = 0.5");
    assert_eq!(
        error(&text),
        "lb.toml:27: vrrp[0].advert_int: 0.5 is not allowed: whole seconds 1..=255 for version 2"
    );
}

#[test]
fn vrrp_v3_has_no_authentication() {
    let text = with_vrrp("").replace("priority = 150", "priority = 150\nversion = 3");
    assert_eq!(
        error(&text),
        "lb.toml:28: vrrp[0].auth_pass: VRRPv3 has no authentication (RFC 5798); remove auth_pass or use version = 2"
    );
}

#[test]
fn vrrp_unknown_track_script() {
    let text = with_vrrp("").replace("name = \"chk\", weight", "name = \"chk2\", weight");
    assert_eq!(
        error(&text),
        "lb.toml:29: vrrp[0].track_script[0]: no vrrp_script named \"chk2\""
    );
}

#[test]
fn vrrp_ranges() {
    assert_eq!(
        error(&with_vrrp("").replace("vrid = 51", "vrid = 0")),
        "lb.toml:25: vrrp[0].vrid: vrid 0 is outside 1..=255"
    );
    assert_eq!(
        error(&with_vrrp("").replace("priority = 150", "priority = 256")),
        "lb.toml:26: vrrp[0].priority: priority 256 is outside 1..=255"
    );
    assert_eq!(
        error(&with_vrrp("").replace("weight = -60", "weight = -300")),
        "lb.toml:29: vrrp[0].track_script[0].weight: weight -300 is outside -254..=254"
    );
}

#[test]
fn vrrp_bad_virtual_address() {
    assert_eq!(
        error(&with_vrrp("").replace("[\"198.18.0.100\"]", "[\"198.18.0.999\"]")),
        "lb.toml:28: vrrp[0].virtual_ipaddress[0]: \"198.18.0.999\" is not an IP address"
    );
}

#[test]
fn vrrp_vrid_used_twice() {
    let second = "\n[[vrrp]]\nname = \"VI_2\"\nvrid = 51\nvirtual_ipaddress = [\"198.18.0.101\"]\n";
    assert_eq!(
        error(&with_vrrp(second)),
        "lb.toml:33: vrrp[1]: vrid 51 is used twice on eth0"
    );
}

#[test]
fn health_checks_merge_service_defaults_with_backend_overrides() {
    use crate::config::health::CheckKind;
    let text = GOOD
        .replace(
            "mode = \"dsr\"",
            "mode = \"dsr\"\non_all_down = \"fail_open\"\nslow_start = 5\nhealth_check = { kind = \"http\", path = \"/healthz\", expect_status = \"200,204\", interval = 1, fall = 4 }",
        )
        .replace("weight = 2", "weight = 2\nhealth_check = { port = 9000, rise = 5 }\nslow_start = 20");
    let config = Config::parse(&text, Path::new("lb.toml"), &FakeHost).unwrap();
    let web = &config.services[0];
    assert_eq!(web.on_all_down, crate::config::health::AllDown::FailOpen);
    let first = web.backends[0].health_check.as_ref().unwrap();
    assert_eq!((first.port, first.rise, first.fall), (Some(9000), 5, 4));
    assert_eq!(first.interval, Duration::from_secs(1));
    match &first.kind {
        CheckKind::Http(http) => {
            assert_eq!(http.path, "/healthz");
            assert_eq!(http.expect_status, [(200, 200), (204, 204)]);
            assert_eq!(http.method, "GET");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(web.backends[0].slow_start, Duration::from_secs(20));
    let second = web.backends[1].health_check.as_ref().unwrap();
    assert_eq!(
        (second.port, second.rise),
        (None, 2),
        "defaults without the override"
    );
    assert_eq!(web.backends[1].slow_start, Duration::from_secs(5));
}

#[test]
fn no_health_check_means_none() {
    let config = Config::parse(GOOD, Path::new("lb.toml"), &FakeHost).unwrap();
    assert!(config.services[0]
        .backends
        .iter()
        .all(|b| b.health_check.is_none()));
}

#[test]
fn bad_health_check_fields() {
    let with = |check: &str| {
        GOOD.replace(
            "mode = \"dsr\"",
            &format!("mode = \"dsr\"\nhealth_check = {{ {check} }}"),
        )
    };
    assert_eq!(
        errors(&with("kind = \"icmp\""))[0],
        "lb.toml:11: service[0].backend[0].health_check.kind: unknown check kind \"icmp\" (tcp, http, https, command)"
    );
    assert_eq!(
        errors(&with("kind = \"http\", expect_status = \"2xx\""))[0],
        "lb.toml:11: service[0].backend[0].health_check.expect_status: \"2xx\" is not a status, a range like 200-399, or a list of them"
    );
    assert_eq!(
        errors(&with("kind = \"command\""))[0],
        "lb.toml:11: service[0].backend[0].health_check.command: a command check needs `command`"
    );
    assert_eq!(
        errors(&with("kind = \"http\", path = \"healthz\""))[0],
        "lb.toml:11: service[0].backend[0].health_check.path: the path must start with /"
    );
    assert_eq!(
        errors(&with("fall = 0"))[0],
        "lb.toml:11: service[0].backend[0].health_check.fall: 0 is outside 1..=1000"
    );
}
