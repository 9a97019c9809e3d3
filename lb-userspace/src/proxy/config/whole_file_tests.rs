//! The proxy sections inside a whole lb.toml, as `lbd check` reads it.
use crate::config::{Config, ConfigErrors, Environment};
use std::path::Path;

struct FakeHost;
impl Environment for FakeHost {
    fn interface_exists(&self, name: &str) -> bool {
        name == "eth0"
    }
    fn machine(&self) -> Option<crate::config::Machine> {
        None
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
    let config = parse(&whole(super::tests::SEED)).unwrap();
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
    let all_ports = whole("[[frontend]]\nname = \"f\"\nbind = [\"198.18.0.100:8080\"]\n").replace(
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
