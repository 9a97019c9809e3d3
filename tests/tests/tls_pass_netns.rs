//! TLS passthrough and TLS to servers, against real nginx TLS backends
//! with certificates made here by the openssl CLI (a test CA, one leaf per
//! backend, and a second CA that signed nothing of theirs):
//! - a tcp frontend routes by `req.ssl_sni` without holding any key: each
//!   client sees its backend's own certificate and gets its answer; no SNI
//!   or an unknown one goes to `default_backend`; non-TLS bytes are
//!   rejected by `tcp_request content reject`;
//! - an http frontend re-encrypts to nginx with verification on (the SNI
//!   from the Host header, as nginx logs `$ssl_server_name`), and a server
//!   whose certificate the configured CA did not sign gets 503 and is
//!   marked down by its TLS health check (L6RSP);
//! - a TLS health check turns a server down when its TLS breaks and up
//!   when it comes back.
//!
//! Needs root; run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test tls_pass_netns -- --test-threads=1`
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;
#[path = "tls_kit/mod.rs"]
mod tls_kit;

use kit::{backend_addr, ProxyLab, DEFAULTS, VIP};
use lb_tests::{netns::unique_name, process::ChildGuard, topology::TempDir};
use lbd::{health::proxy::ProxyHealth, log::Logger};
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tls_kit::openssl;

/// Backend i serves this name's certificate.
const NAMES: [&str; 3] = ["a.example", "b.example", "default.example"];
const TLS_PORT: u16 = 443;

/// A test CA (`ca.pem`), a leaf per name signed by it (`NAME.pem`,
/// `NAME.key`, SAN = the name), and an unrelated CA (`wrong-ca.pem`).
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "wrong-ca"] {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (key, pem, subject) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN=lbd {ca} test"),
        );
        args.extend([
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ]);
        openssl(dir, &args);
    }
    for name in NAMES {
        let (key, csr, pem, subject) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &args);
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:{name}\n")).expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

/// nginx on backend `index`'s address:443, with TLS (its own certificate)
/// or, to break TLS, plain HTTP on the same port. Its log lines are
/// `$ssl_server_name|$host|$request_uri|$status|$ssl_alpn_protocol|$connection`.
struct TlsNginx {
    guard: Option<ChildGuard>,
    dir: TempDir,
}

impl TlsNginx {
    fn start(lab: &ProxyLab, index: usize, certs: &Path, tls: bool) -> TlsNginx {
        let dir = TempDir::create(&unique_name(&format!("tlsnginx{index}"))).expect("dir");
        let d = dir.path.display();
        let name = NAMES[index];
        let listen = format!("{}:{TLS_PORT}", backend_addr(index));
        let ssl = if tls {
            format!(
                "listen {listen} ssl;\n ssl_certificate {c}/{name}.pem;\n ssl_certificate_key {c}/{name}.key;\n",
                c = certs.display()
            )
        } else {
            format!("listen {listen};\n")
        };
        let text = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             log_format t '$ssl_server_name|$host|$request_uri|$status|$ssl_alpn_protocol|$connection';\n access_log {d}/access.log t;\n\
             server {{\n {ssl} location / {{ return 200 \"b{n}\\n\"; }}\n }}\n}}\n",
            n = index + 1
        );
        std::fs::write(dir.path.join("nginx.conf"), text).expect("nginx.conf");
        let mut command = lab.backends[index].command(
            "nginx",
            &[
                "-c",
                &dir.path.join("nginx.conf").display().to_string(),
                "-p",
                &dir.path.display().to_string(),
            ],
        );
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let guard = ChildGuard::spawn(command, &format!("nginx b{}", index + 1)).expect("nginx");
        let nginx = TlsNginx {
            guard: Some(guard),
            dir,
        };
        // Listening once nginx wrote its pid file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nginx.dir.path.join("nginx.pid").exists() {
            assert!(
                Instant::now() < deadline,
                "nginx b{} did not start",
                index + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("access.log")).unwrap_or_default()
    }
}

impl Drop for TlsNginx {
    fn drop(&mut self) {
        drop(self.guard.take());
    }
}

/// Runs a command in the client's namespace; stdout and stderr together.
fn client_run(lab: &ProxyLab, program: &str, args: &[&str]) -> (bool, String) {
    let output = lab
        .client
        .command(program, args)
        .stdin(Stdio::null())
        .output()
        .expect(program);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The subject of the certificate `openssl s_client` got through VIP:443
/// (`servername` None: no SNI), after verifying it against the test CA.
fn served_certificate(lab: &ProxyLab, ca: &Path, servername: Option<&str>) -> String {
    let connect = format!("{VIP}:{TLS_PORT}");
    let ca = ca.display().to_string();
    let mut args = vec!["s_client", "-connect", &connect, "-CAfile", &ca];
    match servername {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    let (_, text) = client_run(lab, "openssl", &args);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.replace(' ', ""))
        .unwrap_or_else(|| panic!("no subject in {text}"))
}

/// curl https://NAME/ through VIP:443, verifying against the test CA.
fn curl_https(lab: &ProxyLab, ca: &Path, name: &str) -> String {
    let resolve = format!("{name}:{TLS_PORT}:{VIP}");
    let url = format!("https://{name}/");
    let ca = ca.display().to_string();
    let (ok, text) = client_run(
        lab,
        "curl",
        &[
            "-sS",
            "-m",
            "5",
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            &url,
        ],
    );
    assert!(ok, "curl {url}: {text}");
    text.trim().to_owned()
}

fn certificates() -> (TempDir, PathBuf) {
    let dir = TempDir::create(&unique_name("tlspass-certs")).expect("dir");
    make_certificates(&dir.path);
    let path = dir.path.clone();
    (dir, path)
}

#[test]
fn sni_passthrough_routes_each_name_to_its_backend_with_its_own_certificate() {
    let (_certs, certs) = certificates();
    let mut lab = ProxyLab::build(3).expect("lab");
    let _nginx: Vec<TlsNginx> = (0..3)
        .map(|i| TlsNginx::start(&lab, i, &certs, true))
        .collect();
    let server = |i: usize| {
        format!(
            "[[backend.server]]\nname = \"b{}\"\naddress = \"{}:{TLS_PORT}\"\n",
            i + 1,
            backend_addr(i)
        )
    };
    let config = format!(
        "{DEFAULTS}\n[[frontend]]\nname = \"tls\"\nmode = \"tcp\"\nbind = [\"{VIP}:{TLS_PORT}\"]\n\
         tcp_request = [\"inspect-delay 5s\", \"content accept if {{ req_ssl_hello_type 1 }}\", \"content reject\"]\n\
         use_backend = [\"a if {{ req.ssl_sni -i a.example }}\", \"b if {{ req_ssl_sni -i b.example }}\"]\n\
         default_backend = \"other\"\n\
         [[frontend]]\nname = \"short\"\nmode = \"tcp\"\nbind = [\"{VIP}:8443\"]\n\
         tcp_request = [\"inspect-delay 500ms\", \"content accept if {{ req_ssl_hello_type 1 }}\", \"content reject\"]\n\
         use_backend = [\"a if {{ req.ssl_sni -i a.example }}\"]\ndefault_backend = \"other\"\n\
         [[backend]]\nname = \"a\"\nmode = \"tcp\"\n{}\
         [[backend]]\nname = \"b\"\nmode = \"tcp\"\n{}\
         [[backend]]\nname = \"other\"\nmode = \"tcp\"\n{}",
        server(0),
        server(1),
        server(2)
    );
    lab.start(&config).expect("proxy");
    let ca = certs.join("ca.pem");

    // Each name: its backend's certificate (lbd has no key) and answer.
    assert_eq!(
        served_certificate(&lab, &ca, Some("a.example")),
        "CN=a.example"
    );
    assert_eq!(
        served_certificate(&lab, &ca, Some("b.example")),
        "CN=b.example"
    );
    assert_eq!(curl_https(&lab, &ca, "a.example"), "b1");
    assert_eq!(curl_https(&lab, &ca, "b.example"), "b2");
    assert_eq!(curl_https(&lab, &ca, "B.EXAMPLE"), "b2");
    // No SNI, or a name no rule knows: default_backend.
    assert_eq!(served_certificate(&lab, &ca, None), "CN=default.example");
    assert_eq!(
        served_certificate(&lab, &ca, Some("unknown.example")),
        "CN=default.example"
    );
    // Not TLS: `content reject` closes the connection, nothing reaches a
    // server.
    let url = format!("http://{VIP}:{TLS_PORT}/");
    let (ok, text) = client_run(&lab, "curl", &["-sS", "-m", "5", &url]);
    assert!(!ok, "plain HTTP was relayed: {text}");
    let status = lab.status();
    let frontend = status
        .frontends
        .iter()
        .find(|f| f.name == "tls")
        .expect("tls");
    assert_eq!(frontend.counters.denied_requests, 1, "{frontend:?}");
    let sessions = |name: &str| backend_sessions(&lab, name);
    assert_eq!((sessions("a"), sessions("b"), sessions("other")), (2, 3, 2));

    // A ClientHello in three TCP segments (the record header split, then
    // the rest), 100 ms apart: reassembled and routed by its SNI.
    let hello = client_hello("a.example");
    let split = lab
        .on_client(|| {
            let mut stream = TcpStream::connect((VIP, 8443))?;
            stream.set_nodelay(true)?;
            for part in [&hello[..3], &hello[3..40], &hello[40..]] {
                stream.write_all(part)?;
                std::thread::sleep(Duration::from_millis(100));
            }
            // The server answers the hello (or alerts): bytes came back.
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut reply = [0u8; 5];
            stream.read_exact(&mut reply)?;
            Ok(reply[0])
        })
        .expect("split hello");
    assert!(split == 22 || split == 21, "not a TLS reply: {split}");
    // Half a hello and silence: inspect-delay (500 ms) ends the wait, the
    // rules see no complete hello and `content reject` closes.
    let waited = lab
        .on_client(|| {
            let mut stream = TcpStream::connect((VIP, 8443))?;
            let started = Instant::now();
            stream.write_all(&hello[..hello.len() / 2])?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut byte = [0u8; 1];
            let n = stream.read(&mut byte).unwrap_or(0);
            Ok((n, started.elapsed()))
        })
        .expect("half hello");
    assert_eq!(waited.0, 0, "bytes relayed for half a hello");
    assert!(
        waited.1 >= Duration::from_millis(450) && waited.1 < Duration::from_secs(2),
        "closed after {:?}",
        waited.1
    );
    assert_eq!(backend_sessions(&lab, "a"), 3);
}

/// Sessions the proxy counted on backend `name`.
fn backend_sessions(lab: &ProxyLab, name: &str) -> u64 {
    lab.status()
        .backends
        .iter()
        .find(|b| b.name == name)
        .map_or(0, |b| b.counters.sessions_total)
}

/// A TLS 1.3 ClientHello record offering `name` (enough for routing; the
/// server may answer with an alert for the missing key share).
fn client_hello(name: &str) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    let mut sni = vec![0];
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut list = (sni.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&sni);
    let mut extensions = vec![0, 0];
    extensions.extend_from_slice(&(list.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&list);
    extensions.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(message.len() as u16).to_be_bytes());
    record.extend_from_slice(&message);
    record
}

#[test]
fn reencryption_verifies_the_server_and_sends_sni_and_a_wrong_ca_fails() {
    let (_certs, certs) = certificates();
    let mut lab = ProxyLab::build(2).expect("lab");
    let nginx: Vec<TlsNginx> = (0..2)
        .map(|i| TlsNginx::start(&lab, i, &certs, true))
        .collect();
    let c = certs.display();
    // `ca_base` (HAProxy's ca-base): relative ca_file paths are read there.
    let defaults = DEFAULTS.replacen(
        "maxconn = 20000\n",
        &format!("maxconn = 20000\nca_base = \"{c}\"\n"),
        1,
    );
    let config = format!(
        "{defaults}\n[[frontend]]\nname = \"web\"\nbind = [\"{VIP}:80\"]\ndefault_backend = \"secure\"\n\
         [[frontend]]\nname = \"perhost\"\nbind = [\"{VIP}:84\"]\ndefault_backend = \"perhost\"\n\
         [[backend]]\nname = \"perhost\"\n\
         [[backend.server]]\nname = \"b1\"\naddress = \"{b1}:{TLS_PORT}\"\nssl = true\n\
         verify = \"none\"\nsni = \"req.hdr(host)\"\n\
         [[frontend]]\nname = \"hosts\"\nbind = [\"{VIP}:83\"]\n\
         use_backend = [\"badhost if {{ path_beg /bad }}\"]\ndefault_backend = \"goodhost\"\n\
         [[backend]]\nname = \"goodhost\"\n\
         [[backend.server]]\nname = \"b1\"\naddress = \"{b1}:{TLS_PORT}\"\nssl = true\n\
         ca_file = \"ca.pem\"\nverifyhost = \"a.example\"\nalpn = \"http/1.1\"\n\
         [[backend]]\nname = \"badhost\"\nretries = 0\n\
         [[backend.server]]\nname = \"b1\"\naddress = \"{b1}:{TLS_PORT}\"\nssl = true\n\
         ca_file = \"ca.pem\"\nverifyhost = \"b.example\"\n\
         [[frontend]]\nname = \"wrong\"\nbind = [\"{VIP}:81\"]\ndefault_backend = \"wrongca\"\n\
         [[frontend]]\nname = \"tcp\"\nmode = \"tcp\"\nbind = [\"{VIP}:82\"]\ndefault_backend = \"tcpsecure\"\n\
         [[backend]]\nname = \"tcpsecure\"\nmode = \"tcp\"\n\
         [[backend.server]]\nname = \"b1\"\naddress = \"{b1}:{TLS_PORT}\"\nssl = true\n\
         ca_file = \"{c}/ca.pem\"\nsni = \"str(a.example)\"\n\
         [[backend]]\nname = \"secure\"\n\
         [[backend.server]]\nname = \"b1\"\naddress = \"{}:{TLS_PORT}\"\nssl = true\nverify = \"required\"\n\
         ca_file = \"{c}/ca.pem\"\nsni = \"req.hdr(host)\"\n\
         [[backend]]\nname = \"wrongca\"\nretries = 1\n\
         [[backend.server]]\nname = \"b2\"\naddress = \"{}:{TLS_PORT}\"\nssl = true\n\
         ca_file = \"{c}/wrong-ca.pem\"\nsni = \"str(b.example)\"\ncheck = true\ninter = 200\nfall = 2\n",
        backend_addr(0),
        backend_addr(1),
        b1 = backend_addr(0),
    );
    lab.start(&config).expect("proxy");
    let proxy = lab.proxy.as_ref().expect("proxy");
    let snapshot = proxy.shared().snapshot();
    let _checks = ProxyHealth::start(
        &proxy.handle().expect("runtime"),
        snapshot.clone(),
        vec![Logger::disabled()],
    );

    // b1 answers `url` (Host: `host`) and nginx logged the request with
    // the `logged` prefix (`$ssl_server_name|$host|$request_uri|$status|`).
    let served_by_b1 = |url: &str, host: &str, logged: &str| {
        let host = format!("Host: {host}");
        let (ok, text) = client_run(&lab, "curl", &["-sS", "-m", "5", "-H", &host, url]);
        assert!(ok && text.trim() == "b1", "{url}: {text}");
        let log = nginx[0].log();
        assert!(
            log.lines().any(|l| l.starts_with(logged)),
            "{logged}: {log}"
        );
    };
    // Verified, with the Host as SNI (nginx logs $ssl_server_name).
    served_by_b1(
        &format!("http://{VIP}/x"),
        "a.example",
        "a.example|a.example|/x|200|",
    );
    // tcp mode: plain bytes from the client, TLS to the server.
    served_by_b1(
        &format!("http://{VIP}:82/tcp"),
        "t.example",
        "a.example|t.example|/tcp|200|",
    );

    // No SNI: `verifyhost` names what the certificate must carry (b1's is
    // a.example), and `alpn` offers http/1.1, which nginx logs.
    // The status of http://VIP:`port_path` (Host: a.example).
    let status = |port_path: &str| {
        let url = format!("http://{VIP}:{port_path}");
        let (_, text) = client_run(
            &lab,
            "curl",
            &[
                "-s",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: a.example",
                &url,
            ],
        );
        text.trim().to_owned()
    };
    assert_eq!(status("83/good"), "200");
    assert!(
        nginx[0]
            .log()
            .lines()
            .any(|l| l.contains("|a.example|/good|200|http/1.1|")),
        "{}",
        nginx[0].log()
    );
    assert_eq!(
        status("83/bad"),
        "503",
        "verifyhost b.example accepted a.example"
    );
    assert!(!nginx[0].log().contains("/bad"), "{}", nginx[0].log());

    // A per-request SNI (`req.hdr(host)`): connections are pooled under
    // the name they were opened with. Six requests for x.example reuse
    // connections (two proxy workers: at most two opened), and the
    // y.example ones never ride an x.example connection.
    for host in [
        "x.example",
        "y.example",
        "x.example",
        "x.example",
        "y.example",
        "x.example",
        "x.example",
        "x.example",
    ] {
        let header = format!("Host: {host}");
        let url = format!("http://{VIP}:84/pool");
        let (ok, text) = client_run(&lab, "curl", &["-sS", "-m", "5", "-H", &header, &url]);
        assert!(ok && text.trim() == "b1", "{text}");
    }
    let log = nginx[0].log();
    let pooled: Vec<(&str, &str)> = log
        .lines()
        .filter(|l| l.contains("|/pool|"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split('|').collect();
            Some((*fields.first()?, *fields.last()?))
        })
        .collect();
    assert_eq!(pooled.len(), 8, "{log}");
    let connections = |name: &str| {
        let mut serials: Vec<&str> = pooled
            .iter()
            .filter(|(sni, _)| *sni == name)
            .map(|(_, connection)| *connection)
            .collect();
        serials.sort_unstable();
        serials.dedup();
        serials
    };
    let (x, y) = (connections("x.example"), connections("y.example"));
    assert!(x.len() <= 2, "x.example not pooled: {log}");
    assert!(
        x.iter().all(|c| !y.contains(c)),
        "a connection served two names: {log}"
    );

    // A CA that did not sign b2's certificate: 503, nothing reaches b2.
    assert_eq!(status("81/"), "503");
    assert_eq!(nginx[1].log(), "", "a request reached b2");
    // ... and the TLS check marks it down with the handshake's cause.
    let wrongca = snapshot.config.backend_by_name("wrongca").expect("wrongca");
    let state = &snapshot.backends[wrongca].servers[0];
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.is_health_up() {
        assert!(
            Instant::now() < deadline,
            "b2 still up: {:?}",
            state.last_check()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let detail = state.last_check().expect("checked").detail;
    assert!(
        detail.starts_with("L6RSP") && detail.contains("UnknownIssuer"),
        "{detail}"
    );
}

#[test]
fn tls_health_check_follows_the_server_tls() {
    let (_certs, certs) = certificates();
    let mut lab = ProxyLab::build(1).expect("lab");
    let mut nginx = TlsNginx::start(&lab, 0, &certs, true);
    let config = format!(
        "{DEFAULTS}\n[[backend]]\nname = \"app\"\nmode = \"tcp\"\n\
         [[backend.server]]\nname = \"b1\"\naddress = \"{b1}:{TLS_PORT}\"\ncheck = true\ncheck_ssl = true\n\
         ca_file = \"{c}/ca.pem\"\nsni = \"str(a.example)\"\ninter = 200\nfall = 2\nrise = 2\n\
         [[backend.server]]\nname = \"wrongname\"\naddress = \"{b1}:{TLS_PORT}\"\ncheck = true\ncheck_ssl = true\n\
         ca_file = \"{c}/ca.pem\"\ncheck_sni = \"wrong.example\"\ninter = 200\nfall = 1\n",
        b1 = backend_addr(0),
        c = certs.display()
    );
    lab.start(&config).expect("proxy");
    let proxy = lab.proxy.as_ref().expect("proxy");
    let snapshot = proxy.shared().snapshot();
    let _checks = ProxyHealth::start(
        &proxy.handle().expect("runtime"),
        snapshot.clone(),
        vec![Logger::disabled()],
    );
    let state = &snapshot.backends[0].servers[0];
    // `check_sni`: the check sends wrong.example and checks the
    // certificate's names against it: b1's (a.example) fails.
    let wrong = &snapshot.backends[0].servers[1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while wrong.is_health_up() || wrong.last_check().is_none() {
        assert!(Instant::now() < deadline, "{:?}", wrong.last_check());
        std::thread::sleep(Duration::from_millis(20));
    }
    let detail = wrong.last_check().expect("checked").detail;
    assert!(
        detail.starts_with("L6RSP") && detail.contains("not valid for name \"wrong.example\""),
        "{detail}"
    );
    let wait_detail = |prefix: &str, up: bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let detail = state.last_check().map(|c| c.detail).unwrap_or_default();
            if detail.starts_with(prefix) && state.is_health_up() == up {
                return detail;
            }
            assert!(Instant::now() < deadline, "waiting for {prefix}: {detail}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_detail("L6OK", true);
    // Plain HTTP where TLS was: the handshake fails, the server goes down.
    drop(nginx);
    nginx = TlsNginx::start(&lab, 0, &certs, false);
    let detail = wait_detail("L6RSP", false);
    assert!(!detail.contains("Connection refused"), "{detail}");
    drop(nginx);
    let _nginx = TlsNginx::start(&lab, 0, &certs, true);
    wait_detail("L6OK", true);
}
