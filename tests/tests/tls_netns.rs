//! TLS termination end to end (issue 13): certificates made here with the
//! openssl CLI (a test CA, ECDSA P-256 and RSA-2048 leaves, the seed's own
//! recipe), the proxy in its namespace, openssl s_client and curl in the
//! client's. Needs root. Run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test tls_netns -- --test-threads=1`
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;
#[path = "tls_kit/mod.rs"]
mod tls_kit;

use kit::{backend, vip, ProxyLab, DEFAULTS, VIP};
use lb_tests::topology::TempDir;
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tls_kit::{openssl, seed_bundle};

/// A test CA and leaves it signs, in a scratch directory.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir = TempDir::create(&lb_tests::netns::unique_name(name)).expect("temp dir");
        let certs = Certs { dir };
        certs.key("ca", "ec");
        openssl(
            &certs.dir.path,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/O=lbd test/CN=lbd test CA",
                "-days",
                "30",
            ],
        );
        certs
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path.join(file)
    }

    fn key(&self, name: &str, kind: &str) {
        let keyfile = format!("{name}.key");
        match kind.strip_prefix("rsa:") {
            Some(bits) => openssl(&self.dir.path, &["genrsa", "-out", &keyfile, bits]),
            None => openssl(
                &self.dir.path,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &keyfile,
                ],
            ),
        }
    }

    /// `name.crt` (signed by the CA) + `name.key`, and `name.pem`, the
    /// HAProxy bundle (certificate, CA, key). `san` empty: CN only.
    fn leaf(&self, name: &str, kind: &str, subject: &str, san: &str) -> PathBuf {
        self.key(name, kind);
        let d = &self.dir.path;
        let (csr, crt, ext) = (
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-out",
                &csr,
                "-subj",
                subject,
            ],
        );
        let extensions = if san.is_empty() {
            "basicConstraints=CA:FALSE\n".to_owned()
        } else {
            format!("basicConstraints=CA:FALSE\nsubjectAltName={san}\n")
        };
        std::fs::write(d.join(&ext), extensions).expect("ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                &crt,
                "-extfile",
                &ext,
            ],
        );
        let mut bundle = std::fs::read(d.join(&crt)).expect("crt");
        bundle.extend(std::fs::read(d.join("ca.crt")).expect("ca"));
        bundle.extend(std::fs::read(d.join(format!("{name}.key"))).expect("key"));
        let path = d.join(format!("{name}.pem"));
        std::fs::write(&path, bundle).expect("bundle");
        path
    }
}

/// Runs a command in the client's namespace, bounded by `timeout`.
fn in_client(lab: &ProxyLab, program: &str, args: &[&str]) -> Output {
    let mut full = vec!["15", program];
    full.extend_from_slice(args);
    lab.client
        .command("timeout", &full)
        .stdin(Stdio::null())
        .output()
        .expect("run in client namespace")
}

/// The subject line of the certificate s_client received (`None`: the
/// handshake failed).
fn served_subject(lab: &ProxyLab, port: u16, extra: &[&str]) -> Option<String> {
    let target = vip(port).to_string();
    let mut args = vec!["s_client", "-connect", &target];
    args.extend_from_slice(extra);
    let out = in_client(lab, "openssl", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return None;
    }
    text.lines()
        .find(|l| l.starts_with("subject="))
        .map(|l| l.trim_start_matches("subject=").trim().to_owned())
}

fn curl(lab: &ProxyLab, args: &[&str]) -> String {
    let mut full = vec![
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code} %{redirect_url}",
    ];
    full.extend_from_slice(args);
    let out = in_client(lab, "curl", &full);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn https_frontend(name: &str, port: u16, options: &str, extra: &str) -> String {
    format!(
        "\n[[frontend]]\nname = \"{name}\"\nbind = [\"{} ssl {options}\"]\n{extra}\n",
        vip(port)
    )
}

#[test]
fn sni_selects_the_certificate_alpn_chooses_h2_and_old_versions_are_refused() {
    let certs = Certs::new("tls-sni");
    let default = certs.leaf(
        "default",
        "ec",
        "/CN=default.example",
        "DNS:default.example",
    );
    let dir = certs.path("sites");
    std::fs::create_dir(&dir).expect("dir");
    let a = certs.leaf("a", "ec", "/CN=a.example", "DNS:a.example");
    let b = certs.leaf("b", "rsa:2048", "/CN=b wildcard", "DNS:*.b.example");
    std::fs::copy(&a, dir.join("a.pem")).expect("copy");
    std::fs::copy(&b, dir.join("b.pem")).expect("copy");

    let mut lab = ProxyLab::build(1).expect("lab");
    // `crt_base` (HAProxy's crt-base): relative crt paths are read from it.
    let crt = "crt default.pem crt sites";
    let defaults = DEFAULTS.replacen(
        "maxconn = 20000\n",
        &format!(
            "maxconn = 20000\ncrt_base = \"{}\"\n",
            certs.dir.path.display()
        ),
        1,
    );
    let config = format!(
        "{defaults}{}{}{}{}",
        https_frontend(
            "web",
            443,
            crt,
            "default_backend = \"app\"\nlog = true\ndontlognull = true"
        ),
        https_frontend(
            "strict",
            444,
            &format!("{crt} strict-sni"),
            "default_backend = \"app\""
        ),
        https_frontend(
            "modern",
            445,
            &format!("{crt} ssl-min-ver TLSv1.3"),
            "default_backend = \"app\""
        ),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let records = Arc::new(Mutex::new(Vec::new()));
    if let Some(proxy) = &lab.proxy {
        proxy.set_logger(Arc::new(Lines(lines.clone(), Some(records.clone()))));
    }
    let _ = (&a, &b, &default);

    let subject = |port, extra: &[&str]| served_subject(&lab, port, extra);
    assert_eq!(
        subject(443, &["-servername", "a.example"]).as_deref(),
        Some("CN = a.example")
    );
    assert_eq!(
        subject(443, &["-servername", "X.B.example"]).as_deref(),
        Some("CN = b wildcard")
    );
    assert_eq!(
        subject(443, &["-servername", "other.example"]).as_deref(),
        Some("CN = default.example")
    );
    assert_eq!(
        subject(443, &["-noservername"]).as_deref(),
        Some("CN = default.example")
    );
    // strict-sni: an unknown name or none gets no certificate at all.
    assert_eq!(
        subject(444, &["-servername", "a.example"]).as_deref(),
        Some("CN = a.example")
    );
    assert_eq!(subject(444, &["-servername", "other.example"]), None);
    assert_eq!(subject(444, &["-noservername"]), None);
    // Versions: 1.0 and 1.1 never (the client is allowed them), 1.2 by
    // default, ssl-min-ver TLSv1.3 refuses 1.2.
    let old = ["-cipher", "DEFAULT@SECLEVEL=0", "-noservername"];
    assert_eq!(
        subject(443, &[&["-tls1"][..], &old].concat()),
        None,
        "TLS 1.0 accepted"
    );
    assert_eq!(
        subject(443, &[&["-tls1_1"][..], &old].concat()),
        None,
        "TLS 1.1 accepted"
    );
    assert!(subject(443, &["-tls1_2", "-noservername"]).is_some());
    assert_eq!(subject(445, &["-tls1_2", "-noservername"]), None);
    assert!(subject(445, &["-tls1_3", "-noservername"]).is_some());

    // ALPN: curl --http2 negotiates h2, --http1.1 gets HTTP/1.1; both
    // reach the backend.
    let url = format!("https://{VIP}/");
    assert_eq!(curl(&lab, &["--http2", &url]), "2 200");
    assert_eq!(curl(&lab, &["--http1.1", &url]), "1.1 200");
    // The backend saw the requests; handshakes that failed were counted.
    assert!(lab.backends[0].requests() >= 2);
    let failed = lab
        .status()
        .frontends
        .iter()
        .find(|f| f.name == "web")
        .map(|f| f.counters.connection_errors);
    assert_eq!(failed, Some(2), "TLS 1.0 and 1.1 handshakes not counted");
    // Logged as HAProxy 2.6 logs them: `ip:port [date] web/1: SSL
    // handshake failure` (bind 1 of frontend web), twice.
    let logged = lines.lock().expect("lines").clone();
    let failures: Vec<&String> = logged
        .iter()
        .filter(|l| l.contains("SSL handshake failure"))
        .collect();
    assert_eq!(failures.len(), 2, "{logged:#?}");
    let client_ip = kit::CLIENT;
    for line in failures {
        let (head, tail) = line.split_once(" [").expect("date");
        assert!(head.starts_with(&format!("{client_ip}:")), "{line}");
        assert!(tail.ends_with("] web/1: SSL handshake failure"), "{line}");
    }
    // `Th`: the handshake time, in the first request of a connection only
    // (two requests over one kept-alive connection).
    records.lock().expect("records").clear();
    let out = in_client(&lab, "curl", &["-sk", "--http1.1", &url, &url]);
    assert!(out.status.success());
    let timers: Vec<_> = records
        .lock()
        .expect("records")
        .iter()
        .map(|r| r.timers.handshake)
        .collect();
    assert_eq!(timers.len(), 2, "{timers:?}");
    assert!(timers[0].is_some_and(|t| t > Duration::ZERO), "{timers:?}");
    assert_eq!(timers[1], Some(Duration::ZERO), "{timers:?}");
}

#[test]
fn http_is_redirected_to_https_with_path_and_query_and_https_is_served() {
    let certs = Certs::new("tls-redir");
    let site = certs.leaf("site", "ec", "/CN=site.example", "DNS:site.example");
    let mut lab = ProxyLab::build(1).expect("lab");
    let frontend = |name: &str, http: u16, https: u16, code: u16| {
        format!(
            "\n[[frontend]]\nname = \"{name}\"\nbind = [\"{}\", \"{} ssl crt {}\"]\nforwarded = true\nlog = true\nlog_format = \"httplog\"\nhttp_request = [\"redirect scheme https code {code} unless {{ ssl_fc }}\", \"set-header X-Forwarded-For %[ssl_fc_protocol]/%[ssl_fc_alpn]/%[ssl_fc_sni]\"]\nhttp_response = [\"set-header Strict-Transport-Security \\\"max-age=31536000\\\" if {{ ssl_fc }}\"]\ndefault_backend = \"app\"\n",
            vip(http),
            vip(https),
            site.display()
        )
    };
    let config = format!(
        "{DEFAULTS}{}{}{}",
        frontend("web", 80, 443, 301),
        frontend("web308", 8080, 8443, 308),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(proxy) = &lab.proxy {
        proxy.set_logger(Arc::new(Lines(lines.clone(), None)));
    }
    for (port, code) in [(80, 301), (8080, 308)] {
        let url = format!("http://{VIP}:{port}/a/b?x=1&y=two");
        let got = curl(&lab, &[&url]);
        // The Host header as curl sends it: no port for 80.
        let host = if port == 80 {
            VIP.to_string()
        } else {
            format!("{VIP}:{port}")
        };
        assert_eq!(
            got,
            format!("1.1 {code} https://{host}/a/b?x=1&y=two"),
            "{url}"
        );
        // A Host header is kept as the client wrote it.
        let got = curl(&lab, &["-H", "Host: site.example", &url]);
        assert_eq!(
            got,
            format!("1.1 {code} https://site.example/a/b?x=1&y=two")
        );
    }
    assert_eq!(
        lab.backends[0].requests(),
        0,
        "a redirect reached the backend"
    );
    // Over TLS: served, not redirected; the backend sees proto=https and
    // the ssl_fc_* fetches; the response carries HSTS.
    let out = in_client(
        &lab,
        "curl",
        &[
            "-sk",
            "-D",
            "-",
            "--http1.1",
            "--resolve",
            &format!("site.example:443:{VIP}"),
            "https://site.example/a/b?x=1",
        ],
    );
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    assert!(
        head.contains("x-seen-forwarded-for: tlsv1.3/http/1.1/site.example"),
        "{head}"
    );
    assert!(head.contains("proto=https"), "{head}");
    let plain = in_client(
        &lab,
        "curl",
        &[
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{VIP}:80/"),
        ],
    );
    let plain = String::from_utf8_lossy(&plain.stdout).to_lowercase();
    assert!(
        !plain.contains("strict-transport-security"),
        "HSTS over http: {plain}"
    );
    // httplog names a TLS frontend `name~`, as HAProxy does.
    let logged = lines.lock().expect("lines").clone();
    assert!(
        logged
            .iter()
            .any(|l| l.contains(" web~ app/b1 ") && l.contains("GET /a/b?x=1")),
        "{logged:#?}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains(" web web/<NOSRV> ") && l.contains(" 301 ")),
        "{logged:#?}"
    );
}

/// Access-log lines, formatted as httplog, and the records when asked.
struct Lines(
    Arc<Mutex<Vec<String>>>,
    Option<Arc<Mutex<Vec<lbd::log::AccessRecord>>>>,
);

impl lbd::proxy::runtime::AccessLogger for Lines {
    fn log(&self, _: lbd::proxy::config::LogSettings, record: lbd::log::AccessRecord) {
        let line = lbd::log::format::format_record(
            &record,
            lbd::log::AccessFormat::HttpLog,
            lbd::log::Zone::Local,
        );
        self.0.lock().expect("lines").push(line);
        if let Some(records) = &self.1 {
            records.lock().expect("records").push(record);
        }
    }
}

#[test]
fn client_certificates_optional_and_required_pass_the_subject() {
    let certs = Certs::new("tls-client");
    let site = certs.leaf("site", "ec", "/CN=site.example", "DNS:site.example");
    certs.leaf("client", "ec", "/C=FR/O=lbd test/CN=client one", "");
    // A client certificate from another CA must be refused.
    let other = Certs::new("tls-client-other");
    other.leaf("stranger", "ec", "/CN=stranger", "");
    let mut lab = ProxyLab::build(1).expect("lab");
    let ca = certs.path("ca.crt");
    let fe = |name: &str, port: u16, verify: &str| {
        https_frontend(
            name,
            port,
            &format!("crt {} verify {verify} ca-file {}", site.display(), ca.display()),
            "http_request = [\"set-header X-Forwarded-For %[ssl_c_used]:%[ssl_c_verify]:%[ssl_c_s_dn]\"]\ndefault_backend = \"app\"",
        )
    };
    let config = format!(
        "{DEFAULTS}{}{}{}{}",
        fe("optional", 443, "optional"),
        fe("required", 444, "required"),
        // crt-ignore-err: a certificate that fails verification is let
        // through and ssl_c_verify says why. The stranger's CA bears the
        // trusted CA's name, so its signature is what fails: 7, OpenSSL's
        // X509_V_ERR_CERT_SIGNATURE_FAILURE.
        fe("ignoring", 445, "optional crt-ignore-err all"),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let seen = |port: u16, cert: Option<(&Path, &Path)>| {
        let url = format!("https://{VIP}:{port}/");
        let mut args = vec!["-sk".to_owned(), "-D".into(), "-".into(), url];
        if let Some((crt, key)) = cert {
            args.extend([
                "--cert".into(),
                crt.display().to_string(),
                "--key".into(),
                key.display().to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = in_client(&lab, "curl", &args);
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        // HTTP/2 (ALPN h2) header names are lowercase.
        head.lines()
            .find_map(|l| {
                l.strip_prefix("x-seen-forwarded-for: ")
                    .or(l.strip_prefix("X-Seen-Forwarded-For: "))
            })
            .map(|v| v.trim().to_owned())
    };
    let client = (certs.path("client.crt"), certs.path("client.key"));
    let stranger = (other.path("stranger.crt"), other.path("stranger.key"));
    assert_eq!(
        seen(443, Some((&client.0, &client.1))).as_deref(),
        Some("1:0:/C=FR/O=lbd test/CN=client one")
    );
    assert_eq!(seen(443, None).as_deref(), Some("0:0:"));
    assert_eq!(
        seen(443, Some((&stranger.0, &stranger.1))),
        None,
        "a stranger's certificate passed"
    );
    assert_eq!(
        seen(444, Some((&client.0, &client.1))).as_deref(),
        Some("1:0:/C=FR/O=lbd test/CN=client one")
    );
    assert_eq!(
        seen(444, None),
        None,
        "verify required let a client without certificate in"
    );
    assert_eq!(
        seen(445, Some((&stranger.0, &stranger.1))).as_deref(),
        Some("1:7:/CN=stranger")
    );
    assert_eq!(
        seen(445, Some((&client.0, &client.1))).as_deref(),
        Some("1:0:/C=FR/O=lbd test/CN=client one")
    );
}

#[test]
fn reload_swaps_the_certificate_while_a_slow_tls_response_continues() {
    let certs = Certs::new("tls-reload");
    let old = certs.leaf("old", "ec", "/CN=old.example", "DNS:site.example");
    let mut lab = ProxyLab::build(1).expect("lab");
    let live = certs.path("live.pem");
    std::fs::copy(&old, &live).expect("copy");
    let config = format!(
        "{DEFAULTS}{}{}",
        https_frontend(
            "web",
            443,
            &format!("crt {}", live.display()),
            "default_backend = \"app\""
        ),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    assert_eq!(
        served_subject(&lab, 443, &["-servername", "site.example"]).as_deref(),
        Some("CN = old.example")
    );

    // A response that takes 3 s, over TLS, in flight during the reload.
    lab.backends[0].set_delay_ms(3000);
    let slow = lab
        .client
        .command(
            "timeout",
            &[
                "20",
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("https://{VIP}/slow"),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("slow curl");
    std::thread::sleep(Duration::from_millis(800));

    // A bad certificate on disk: the reload is refused, nothing changes.
    std::fs::write(
        &live,
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let refused = lab.reload(&config).expect_err("bad certificate accepted");
    assert!(refused.to_string().contains("live.pem"), "{refused}");
    assert_eq!(
        served_subject(&lab, 443, &["-servername", "site.example"]).as_deref(),
        Some("CN = old.example")
    );
    // A key that is not the certificate's: refused too.
    let mut mismatched = std::fs::read(certs.path("old.crt")).expect("crt");
    certs.key("other", "ec");
    mismatched.extend(std::fs::read(certs.path("other.key")).expect("key"));
    std::fs::write(&live, mismatched).expect("write");
    let refused = lab.reload(&config).expect_err("mismatched key accepted");
    assert!(refused.to_string().contains("does not match"), "{refused}");

    // The file changed on disk to a new good certificate: the same
    // configuration reloads it; new handshakes get it.
    let new = certs.leaf("new", "rsa:2048", "/CN=new.example", "DNS:site.example");
    std::fs::copy(&new, &live).expect("copy");
    lab.reload(&config).expect("reload");
    assert_eq!(
        served_subject(&lab, 443, &["-servername", "site.example"]).as_deref(),
        Some("CN = new.example")
    );
    let out = slow.wait_with_output().expect("slow curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "the in-flight TLS response was cut by the reload"
    );
}

/// Raises this process's descriptor limit: the proxy runs in the test
/// process, so 1,000 client sockets are 1,000 more here.
fn raise_nofile() {
    let limit = libc::rlimit {
        rlim_cur: 16_384,
        rlim_max: 16_384,
    };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

#[test]
fn half_open_handshakes_and_malformed_hellos_do_not_stop_other_clients() {
    raise_nofile();
    let certs = Certs::new("tls-flood");
    let site = certs.leaf("site", "ec", "/CN=site.example", "DNS:site.example");
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{}{}{}",
        DEFAULTS.replace("http_request = \"5s\"", "http_request = \"2s\""),
        https_frontend(
            "web",
            443,
            &format!("crt {}", site.display()),
            "default_backend = \"app\""
        ),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let target = vip(443);
    // 1,000 connections that never finish a handshake: half of them send
    // nothing, half the first bytes of a ClientHello and stop.
    let held: Vec<TcpStream> = lab
        .on_client(|| {
            let mut held = Vec::new();
            for i in 0..1000 {
                let mut stream = TcpStream::connect(target)?;
                if i % 2 == 1 {
                    stream.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])?;
                }
                held.push(stream);
            }
            Ok(held)
        })
        .expect("half-open connections");
    // Malformed hellos: garbage, a record too long, a hello with a bad
    // length; each is refused and closed by the proxy.
    let refused = lab
        .on_client(|| {
            let garbage: [&[u8]; 4] = [
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0x00, 0x01],
                &[0x16, 0x03, 0x03, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0xff],
                &[0x80; 64],
            ];
            let mut closed = 0;
            for i in 0..400 {
                let mut stream = TcpStream::connect(target)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.write_all(garbage[i % garbage.len()])?;
                let mut buf = [0u8; 256];
                // An alert then close, or a close: never a hang.
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => {
                            closed += 1;
                            break;
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            closed += 1;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            Ok(closed)
        })
        .expect("malformed hellos");
    assert_eq!(refused, 400, "a malformed hello was left open");
    // Meanwhile other clients are served promptly.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            curl(&lab, &["--http1.1", &format!("https://{VIP}/")]),
            "1.1 200"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served slowly: {:?}",
        started.elapsed()
    );
    // The half-open handshakes are cut at `timeout http-request` (2 s).
    std::thread::sleep(Duration::from_secs(3));
    let still_open = lab
        .on_client(|| {
            let mut open = 0;
            for mut stream in held {
                stream.set_read_timeout(Some(Duration::from_millis(50)))?;
                let mut buf = [0u8; 64];
                match stream.read(&mut buf) {
                    Ok(0) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                    Ok(_) => {}
                    Err(_) => open += 1,
                }
            }
            Ok(open)
        })
        .expect("check held");
    assert_eq!(
        still_open, 0,
        "half-open handshakes outlived timeout http-request"
    );
    let errors = lab
        .status()
        .frontends
        .iter()
        .find(|f| f.name == "web")
        .map(|f| f.counters.connection_errors);
    assert!(
        errors.is_some_and(|e| e >= 1400),
        "handshake failures not counted: {errors:?}"
    );
}

#[test]
fn lbd_check_refuses_the_seeds_1024_bit_key_and_accepts_2048() {
    let dir = TempDir::create(&lb_tests::netns::unique_name("tls-check")).expect("dir");
    let d = &dir.path;
    // The seed's recipe, non-interactive; first with its 1024-bit key.
    for bits in ["1024", "2048"] {
        seed_bundle(d, bits);
        let config = d.join("lb.toml");
        std::fs::write(
            &config,
            format!(
                "[instance]\nname = \"lb1\"\ninterface = \"lo\"\n\n[[frontend]]\nname = \"web-nginx\"\nmode = \"http\"\nbind = [\":80\", \":443 ssl crt {}\"]\nhttp_request = [\"redirect scheme https unless {{ ssl_fc }}\"]\n",
                d.join("cert.pem").display()
            ),
        )
        .expect("config");
        let out = Command::new(lb_tests::topology::lbd_binary())
            .args(["check", "-c"])
            .arg(&config)
            .output()
            .expect("lbd check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if bits == "1024" {
            assert!(!out.status.success(), "a 1024-bit key passed lbd check");
            let expected = format!(
                "{}:8: frontend[0].bind[1]: {}: the RSA key is 1024 bits",
                config.display(),
                d.join("cert.pem").display()
            );
            assert!(stderr.contains(&expected), "{stderr}");
            assert!(
                stderr.contains("openssl genrsa -out key.pem 2048"),
                "{stderr}"
            );
        } else {
            assert!(out.status.success(), "{stderr}");
        }
    }
}

#[test]
fn sessions_resume_by_ticket_and_by_cache_and_ocsp_is_stapled() {
    let certs = Certs::new("tls-resume");
    let site = certs.leaf("site", "ec", "/CN=site.example", "DNS:site.example");
    // An OCSP response for the site's certificate, signed by the test CA,
    // beside the bundle as HAProxy expects it (`site.pem.ocsp`, DER).
    let d = &certs.dir.path;
    let serial = Command::new("openssl")
        .args(["x509", "-in", "site.crt", "-noout", "-serial"])
        .current_dir(d)
        .output()
        .expect("serial");
    let serial = String::from_utf8_lossy(&serial.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned();
    std::fs::write(
        d.join("index.txt"),
        format!("V\t491231235959Z\t\t{serial}\tunknown\t/CN=site.example\n"),
    )
    .expect("index");
    openssl(
        d,
        &[
            "ocsp",
            "-issuer",
            "ca.crt",
            "-cert",
            "site.crt",
            "-reqout",
            "req.der",
            "-no_nonce",
        ],
    );
    openssl(
        d,
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.crt",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.crt",
            "-reqin",
            "req.der",
            "-respout",
            "site.pem.ocsp",
            "-ndays",
            "1",
        ],
    );
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}{}",
        https_frontend(
            "tickets",
            443,
            &format!("crt {}", site.display()),
            "default_backend = \"app\""
        ),
        https_frontend(
            "cache",
            444,
            &format!("crt {} no-tls-tickets", site.display()),
            "default_backend = \"app\""
        ),
        backend("app", "", &lab.servers(&[0], "")),
    );
    lab.start(&config).expect("start");
    let session = certs.path("session.pem");
    let session_arg = session.display().to_string();
    let handshake = |port: u16, version: &str, save: bool| {
        let target = vip(port).to_string();
        // TLS 1.3 sessions (tickets, or cache ids under no-tls-tickets)
        // come after the handshake: s_client must read one before it
        // quits, or -sess_out keeps the previous test's session and the
        // next handshake cannot resume (this made the test flaky under
        // load with a fixed half-second wait). Its input stays open until
        // it has written the session (at most 10 s).
        let script = if save {
            let _ = std::fs::remove_file(&session);
            format!(
                "(i=0; while [ ! -s {session_arg} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; sleep 0.1) \
                 | openssl s_client -connect {target} -servername site.example {version} -sess_out {session_arg} -status"
            )
        } else {
            format!(
                "sleep 0.5 | openssl s_client -connect {target} -servername site.example {version} -sess_in {session_arg} -status"
            )
        };
        let out = in_client(&lab, "sh", &["-c", &script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (port, version) in [
        (443, "-tls1_2"),
        (444, "-tls1_2"),
        (443, "-tls1_3"),
        (444, "-tls1_3"),
    ] {
        let first = handshake(port, version, true);
        assert!(first.contains("New, "), "{port} {version}: {first}");
        assert!(
            first.contains("OCSP Response Status: successful"),
            "no stapled OCSP: {first}"
        );
        let resumed = handshake(port, version, false);
        assert!(
            resumed.contains("Reused, "),
            "{port} {version} not resumed: {resumed}"
        );
    }
    // TLS 1.2 with tickets: the session is a ticket; without, an id.
    let first = handshake(443, "-tls1_2", true);
    assert!(first.contains("TLS session ticket:"), "{first}");
    let first = handshake(444, "-tls1_2", true);
    assert!(
        !first.contains("TLS session ticket lifetime hint"),
        "no-tls-tickets sent a ticket: {first}"
    );
}

/// The daemon's own reload (SIGHUP, as `lbd reload` sends): a certificate
/// file changed on disk is picked up with the same lb.toml; a bad one is
/// refused with its file named, and the old certificate keeps serving.
#[test]
fn lbd_reload_picks_up_a_changed_certificate_and_refuses_a_bad_one() {
    use lb_tests::topology::{lbd_binary, DsrLab, VIP as LB_VIP};
    let lbd = lbd_binary();
    let certs = Certs::new("tls-daemon");
    let old = certs.leaf("old", "ec", "/CN=old.example", "DNS:site.example");
    let live = certs.path("live.pem");
    std::fs::copy(&old, &live).expect("copy");
    let mut lab = DsrLab::build(1).expect("lab");
    let proxy = format!(
        "\n[defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"10s\", server = \"10s\" }}\n\
         [[frontend]]\nname = \"web\"\nbind = [\"{LB_VIP}:8443 ssl crt {}\"]\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"b1\"\naddress = \"198.18.0.11:8080\"\n",
        live.display()
    );
    lab.write_config(&format!("{}{proxy}", lab.config(1)))
        .expect("config");
    lab.start_lbd(&lbd).expect("lbd");
    let target = format!("{LB_VIP}:8443");
    let subject = || {
        let out = lab
            .client
            .command(
                "timeout",
                &[
                    "10",
                    "openssl",
                    "s_client",
                    "-connect",
                    &target,
                    "-servername",
                    "site.example",
                ],
            )
            .stdin(Stdio::null())
            .output()
            .expect("s_client");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("subject="))
            .map(|s| s.trim().to_owned())
    };
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = subject();
            if got.as_deref() == Some(want) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(
        wait_for("CN = old.example").as_deref(),
        Some("CN = old.example")
    );

    std::fs::write(
        &live,
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    lab.reload_lbd().expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.lbd_log().contains("reload refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = lab.lbd_log();
    assert!(
        log.contains("reload refused") && log.contains("live.pem"),
        "{log}"
    );
    assert_eq!(subject().as_deref(), Some("CN = old.example"));

    let new = certs.leaf("new", "rsa:2048", "/CN=new.example", "DNS:site.example");
    std::fs::copy(&new, &live).expect("copy");
    lab.reload_lbd().expect("SIGHUP");
    assert_eq!(
        wait_for("CN = new.example").as_deref(),
        Some("CN = new.example")
    );
}
