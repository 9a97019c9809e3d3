//! `lbd check`'s messages for the passthrough and server-TLS fields: one
//! bad file per case, each error at its FILE:LINE.
use crate::proxy::config::parse_str;
use std::path::{Path, PathBuf};

/// A self-signed P-256 CA (lbd unit test CA, valid until 2126) with its
/// key, so that files that must load do.
const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUXCQklnpZ1l5iAcwlmXFPo3iNJlMwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQbGJkIHVuaXQgdGVzdCBDQTAgFw0yNjEyMDIxMTM3MThaGA8y
MTI2MTEwODExMzcxOFowGzEZMBcGA1UEAwwQbGJkIHVuaXQgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABFP+Fy7vqynZ3Dbdf8gfD4MGsyIGZIOg+BCf
NngXR5tH4WP7GW+HNrsd9opevHUrCdc4btwZwFo1+UTIKDhAH36jUzBRMB0GA1Ud
DgQWBBT5EHOCSuYuGO/ciGNIN51aoF5PPDAfBgNVHSMEGDAWgBT5EHOCSuYuGO/c
iGNIN51aoF5PPDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCx
1jIQoigHYYsmz0xWGMmVajpRrsGmh41twpHUEEMnCAIgIk1Zm6R975bB969DowXP
5ycL/Zs8ryrPc576TBjzdHc=
-----END CERTIFICATE-----
";
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglK4b6Knuw0K4Edtu
p0DPmVL6f/lZLpBUE77h6pPOS7ihRANCAART/hcu76sp2dw23X/IHw+DBrMiBmSD
oPgQnzZ4F0ebR+Fj+xlvhza7HfaKXrx1KwnXOG7cGcBaNflEyCg4QB9+
-----END PRIVATE KEY-----
";

/// A P-256 key that is not the CA's.
const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7DIyMA/3FhQFpA0v
pacd57T2SUoNp4osNETU3zqOjfChRANCAAQQljfHtklasT8qjB8xQUvZ6TSx2VFd
s0U/SyAH2XufLq8lh/NySkoV/cLptO5E9+nRRQhThtEucY9MddJNoh5Z
-----END PRIVATE KEY-----
";

struct Files(PathBuf);
impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(tag: &str) -> Files {
    let dir = std::env::temp_dir().join(format!("lbd-tlspass-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), CA).unwrap();
    std::fs::write(dir.join("client.pem"), format!("{CA}{KEY}")).unwrap();
    std::fs::write(dir.join("nokey.pem"), CA).unwrap();
    std::fs::write(dir.join("mismatch.pem"), format!("{CA}{OTHER_KEY}")).unwrap();
    std::fs::write(dir.join("junk.pem"), "junk\n").unwrap();
    Files(dir)
}

const TCP_FRONTEND: &str =
    "[[frontend]]\nname = \"f\"\nmode = \"tcp\"\nbind = [\":443\"]\ndefault_backend = \"b\"\n";
const TCP_BACKEND: &str = "[[backend]]\nname = \"b\"\nmode = \"tcp\"\n";

#[test]
fn passthrough_and_server_tls_errors_name_file_line_and_field() {
    let files = files("errors");
    let dir = files.0.display().to_string();
    let server = |fields: &str| {
        format!("{TCP_BACKEND}[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.11:443\"\n{fields}")
    };
    let cases: Vec<(String, String)> = vec![
        (
            format!("{TCP_FRONTEND}tcp_request = [\"inspect-delay 5\", \"content accept if {{ nosuch 1 }}\"]\n{TCP_BACKEND}"),
            "lb.toml:6: frontend[0].tcp_request[1]: in { }: unknown fetch \"nosuch\"".into(),
        ),
        (
            format!("{TCP_FRONTEND}tcp_request = [\"inspect-delay forever\"]\n{TCP_BACKEND}"),
            "lb.toml:6: frontend[0].tcp_request[0]: inspect-delay forever: \"forever\" is not a duration".into(),
        ),
        (
            format!("{TCP_FRONTEND}tcp_request = [\"content track-sc0 src\"]\n{TCP_BACKEND}"),
            "lb.toml:6: frontend[0].tcp_request[0]: unsupported tcp-request content action \"track-sc0\"".into(),
        ),
        (
            "[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = [\":80\"]\ntcp_request = [\"inspect-delay 5s\"]\n".into(),
            "lb.toml:5: frontend[0].tcp_request[0]: tcp_request rules need mode tcp".into(),
        ),
        (
            format!("{TCP_BACKEND}tcp_request = [\"inspect-delay 5s\"]\n"),
            "lb.toml:4: backend[0].tcp_request: tcp_request is a frontend setting".into(),
        ),
        (
            "[defaults]\ntcp_request = [\"inspect-delay 5s\"]\n".into(),
            "lb.toml:2: defaults.tcp_request: tcp_request belongs in a frontend".into(),
        ),
        (
            server("ssl = true\n"),
            "lb.toml:7: backend[0].server[0].verify: verify is required by default but no ca_file is set".into(),
        ),
        (
            server("ssl = true\nverify = \"optional\"\n"),
            "lb.toml:8: backend[0].server[0].verify: \"optional\" is not a verify mode (none, required)".into(),
        ),
        (
            server("ssl = true\nca_file = \"/nonexistent/ca.pem\"\n"),
            "lb.toml:8: backend[0].server[0].ca_file: /nonexistent/ca.pem: No such file".into(),
        ),
        (
            server(&format!("ssl = true\nca_file = \"{dir}/junk.pem\"\n")),
            format!("lb.toml:8: backend[0].server[0].ca_file: {dir}/junk.pem: no certificate in the file"),
        ),
        (
            server(&format!("ssl = true\nca_file = \"{dir}/ca.pem\"\nsni = \"str(198.18.0.1)\"\n")),
            "lb.toml:9: backend[0].server[0].sni: sni \"198.18.0.1\" is not a DNS name".into(),
        ),
        (
            server(&format!("ssl = true\nca_file = \"{dir}/ca.pem\"\nsni = \"url\"\n")),
            "lb.toml:9: backend[0].server[0].sni: unsupported sni expression \"url\"".into(),
        ),
        (
            server(&format!("ssl = true\nverify = \"none\"\ncrt = \"{dir}/nokey.pem\"\n")),
            format!("lb.toml:9: backend[0].server[0].crt: {dir}/nokey.pem: no private key"),
        ),
        (
            server(&format!("ssl = true\nverify = \"none\"\ncrt = \"{dir}/mismatch.pem\"\n")),
            format!("lb.toml:9: backend[0].server[0].crt: {dir}/mismatch.pem: certificate and key refused: "),
        ),
        (
            server("check_ssl = true\nssl = \"yes\"\n"),
            "lb.toml:8: syntax: invalid type: string \"yes\", expected a boolean".into(),
        ),
        (
            format!("{TCP_BACKEND}default_server = {{ ssl = true, ca_file = \"/nonexistent/b.pem\" }}\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.11:443\"\n[[backend.server]]\nname = \"t\"\naddress = \"198.18.0.12:443\"\n"),
            "lb.toml:4: backend[0].default_server.ca_file: /nonexistent/b.pem: No such file".into(),
        ),
        (
            format!("[defaults]\ndefault_server = {{ ssl = true }}\n{}", server("")),
            "lb.toml:7: backend[0].server[0].verify: verify is required by default but no ca_file is set".into(),
        ),
    ];
    for (text, expected) in cases {
        let errors = parse_str(&text, Path::new("lb.toml")).expect_err(&text);
        assert!(
            errors.len() == 1 && errors[0].starts_with(&expected),
            "{text}\nexpected: {expected}\ngot: {errors:#?}"
        );
    }
}

#[test]
fn valid_settings_load() {
    let files = files("valid");
    let dir = files.0.display().to_string();
    let text = format!(
        "{TCP_FRONTEND}tcp_request = [\"inspect-delay 5s\", \"content accept if {{ req_ssl_hello_type 1 }}\"]\nuse_backend = [\"k if {{ req.ssl_sni -i api.example }}\"]\n{TCP_BACKEND}default_server = {{ ssl = true, ca_file = \"{dir}/ca.pem\" }}\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.11:443\"\nsni = \"str(api.example)\"\ncrt = \"{dir}/client.pem\"\n[[backend.server]]\nname = \"plain-checked-over-tls\"\naddress = \"198.18.0.12:443\"\nssl = false\ncheck_ssl = true\nverify = \"none\"\n[[backend]]\nname = \"k\"\nmode = \"tcp\"\n"
    );
    let config = parse_str(&text, Path::new("lb.toml")).unwrap();
    let frontend = &config.frontends[0];
    assert_eq!(
        frontend.tcp_request.inspect_delay,
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(frontend.tcp_request.content.len(), 1);
    let servers = &config.backends[0].servers;
    let tls = servers[0].tls.as_ref().unwrap();
    assert!(tls.ssl && tls.verify);
    let check_only = servers[1].tls.as_ref().unwrap();
    assert!(!check_only.ssl && !check_only.verify);
}
