//! The proxy's remaining HAProxy directives end to end in namespaces: an
//! IPv6 frontend in front of IPv6 nginx servers, `balance rdp-cookie` with
//! real RDP connection requests, `timeout client` on a client that stops
//! reading, `url_param ... check_post`, and, through the real `lbd`
//! daemon, per-section `log` targets, ACL `-f` pattern files, `forwardfor
//! if-none` and `%[...]` in redirects. Needs root. Run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test proxy_gaps_netns -- --test-threads=1`
// Shared by the proxy test binaries; each uses part of it.
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;

use kit::{
    backend, backend::RawServer, backend_addr, client::Client, frontend, vip, ProxyLab, DEFAULTS,
};
use lb_tests::netns::Netns;
use std::{
    collections::{HashMap, HashSet},
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// Adds `addr`/`prefix` to eth0 of `ns`, after turning IPv6 on there.
/// The daemon's lab (two backends) with `vip` on the balancer's eth0.
fn dsr_lab_with(vip: std::net::Ipv4Addr) -> anyhow::Result<lb_tests::topology::DsrLab> {
    let lab = lb_tests::topology::DsrLab::build(2)?;
    lab.lb()
        .ip(&["addr", "add", &format!("{vip}/32"), "dev", "eth0"])?;
    Ok(lab)
}

fn ipv6(ns: &Netns, addr: &str, prefix: u8) -> anyhow::Result<()> {
    ns.enable_ipv6()?;
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{addr}/{prefix}"),
        "dev",
        "eth0",
        "nodad",
    ])?;
    Ok(())
}

/// `bind "[fd00::100]:80"` in front of nginx servers listening only on
/// IPv6 addresses: requests are spread and answered, nginx sees the
/// proxy's IPv6 source and the client's IPv6 address in X-Forwarded-For.
#[test]
fn ipv6_frontend_reaches_ipv6_nginx_servers() {
    let mut lab = ProxyLab::build(2).expect("lab");
    // NDP through the bridge without waiting for multicast snooping.
    lab.switch
        .ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .expect("bridge");
    ipv6(&lab.client, "fd00::2", 64).expect("client v6");
    ipv6(&lab.lb, "fd00::1", 64).expect("lb v6");
    lab.lb
        .ip(&["-6", "addr", "add", "fd00::100/128", "dev", "eth0", "nodad"])
        .expect("vip v6");
    let mut nginx = Vec::new();
    for (i, b) in lab.backends.iter().enumerate() {
        let addr: SocketAddr = format!("[fd00::{}]:80", 11 + i).parse().expect("addr");
        ipv6(b.ns(), &format!("fd00::{}", 11 + i), 64).expect("backend v6");
        nginx.push(
            lb_tests::nginx::Nginx::start(b.ns(), &format!("b{}", i + 1), &[addr]).expect("nginx"),
        );
    }
    let config = format!(
        "{DEFAULTS}\n[[frontend]]\nname = \"v6\"\nbind = [\"[fd00::100]:80\"]\nforwardfor = true\ndefault_backend = \"app\"\n{}",
        backend(
            "app",
            "balance = \"roundrobin\"",
            "[[backend.server]]\nname = \"b1\"\naddress = \"[fd00::11]:80\"\n[[backend.server]]\nname = \"b2\"\naddress = \"[fd00::12]:80\"\n"
        ),
    );
    lab.start(&config).expect("start");
    let target: SocketAddr = "[fd00::100]:80".parse().expect("vip");
    let replies = lab
        .on_client(|| {
            let mut client = Client::connect(target)?;
            (0..10)
                .map(|i| client.get(&format!("/v6/{i}"), &[]))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .expect("requests over IPv6");
    let mut by_backend: HashMap<String, usize> = HashMap::new();
    for reply in &replies {
        assert_eq!(reply.status, 200);
        *by_backend.entry(reply.backend()).or_default() += 1;
    }
    assert_eq!(by_backend.get("b1"), Some(&5), "{by_backend:?}");
    assert_eq!(by_backend.get("b2"), Some(&5), "{by_backend:?}");
    for server in &nginx {
        let entries = server
            .wait_for_requests(5, Duration::from_secs(5))
            .expect("access log");
        for entry in entries {
            // The proxy's own IPv6 addresses (the kernel picks the source).
            let source = entry.remote_addr.to_string();
            assert!(source == "fd00::1" || source == "fd00::100", "{entry:?}");
            assert_eq!(
                entry.x_forwarded_for.as_deref(),
                Some("fd00::2"),
                "{entry:?}"
            );
            assert!(entry.uri.starts_with("/v6/"), "{entry:?}");
        }
    }
}

/// An RDP server: reads the client's whole TPKT (the X.224 Connection
/// Request), records it, answers a Connection Confirm followed by its name.
fn rdp_server(
    ns: &Netns,
    addr: SocketAddr,
    name: &'static str,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
) -> anyhow::Result<RawServer> {
    RawServer::start(ns, addr, move |mut stream, _| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut header = [0u8; 4];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut rest = vec![0u8; length.saturating_sub(4)];
        if stream.read_exact(&mut rest).is_err() {
            return;
        }
        let mut request = header.to_vec();
        request.extend_from_slice(&rest);
        seen.lock().expect("seen").push(request);
        // TPKT + X.224 Connection Confirm (0xd0), then the name.
        let mut reply = vec![3, 0, 0, 11, 6, 0xd0, 0, 0, 0x12, 0x34, 0];
        reply.extend_from_slice(name.as_bytes());
        let _ = stream.write_all(&reply);
    })
}

/// `balance rdp-cookie` live: each user's connection requests
/// (`Cookie: mstshash=NAME`) always reach the same server, users spread,
/// and the server receives the request intact (also when the client
/// sends it in two pieces).
#[test]
fn rdp_cookie_keeps_each_user_on_one_server() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let names = ["b1", "b2", "b3"];
    let seen: Vec<Arc<Mutex<Vec<Vec<u8>>>>> = (0..3).map(|_| Arc::default()).collect();
    let _servers: Vec<RawServer> = lab
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            rdp_server(
                b.ns(),
                SocketAddr::from((backend_addr(i), 3389)),
                names[i],
                seen[i].clone(),
            )
            .expect("rdp server")
        })
        .collect();
    let servers: String = (0..3)
        .map(|i| {
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}:3389\"\n",
                names[i],
                backend_addr(i)
            )
        })
        .collect();
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("rdp", 3389, "mode = \"tcp\"\ndefault_backend = \"ts\""),
        backend("ts", "mode = \"tcp\"\nbalance = \"rdp-cookie\"", &servers),
    );
    lab.start(&config).expect("start");
    let users: Vec<String> = (0..16).map(|i| format!("user{i:02}")).collect();
    let connect = |cookie: Option<String>, split: bool| -> anyhow::Result<String> {
        lab.on_client(move || {
            let request = lbd::proxy::balance::rdp_connection_request(cookie.as_deref());
            let mut stream = TcpStream::connect(vip(3389))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            if split {
                stream.write_all(&request[..9])?;
                std::thread::sleep(Duration::from_millis(100));
                stream.write_all(&request[9..])?;
            } else {
                stream.write_all(&request)?;
            }
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply)?;
            anyhow::ensure!(
                reply.len() > 11 && reply[5] == 0xd0,
                "not a confirm: {reply:?}"
            );
            Ok(String::from_utf8_lossy(&reply[11..]).into_owned())
        })
    };
    let mut placed: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for user in &users {
            let server = connect(Some(user.clone()), round == 2).expect("rdp connection");
            let first = placed.entry(user.clone()).or_insert(server.clone());
            assert_eq!(*first, server, "{user} moved in round {round}");
        }
    }
    let used: HashSet<&String> = placed.values().collect();
    assert_eq!(used.len(), 3, "16 users over 3 servers: {placed:?}");
    // Each server got exactly the requests of its users, byte for byte.
    for (i, name) in names.iter().enumerate() {
        let requests = seen[i].lock().expect("seen").clone();
        let expected: usize = placed.values().filter(|s| s == name).count() * 3;
        assert_eq!(requests.len(), expected, "{name}");
        for request in requests {
            let user = users
                .iter()
                .find(|u| request == lbd::proxy::balance::rdp_connection_request(Some(u)))
                .expect("an intact connection request");
            assert_eq!(placed[user], *name);
        }
    }
    // Without a cookie: round robin over all three.
    let anonymous: HashSet<String> = (0..6)
        .map(|_| connect(None, false).expect("anonymous"))
        .collect();
    assert_eq!(anonymous.len(), 3, "{anonymous:?}");
}

/// Bytes of the large response the bulk server streams.
const BULK_BYTES: u64 = 512 * 1024 * 1024;

/// `timeout client`: a client that stops reading a large response is cut
/// once the proxy could not write to it for that long (and the server side
/// is released), while other clients are served meanwhile.
#[test]
fn timeout_client_cuts_a_client_that_stops_reading() {
    let mut lab = ProxyLab::build(2).expect("lab");
    // b1 streams a large body until the proxy closes its side.
    let written = Arc::new(AtomicU64::new(0));
    let ended: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (w, e) = (written.clone(), ended.clone());
    let _bulk = RawServer::start(
        lab.backends[0].ns(),
        SocketAddr::from((backend_addr(0), 8090)),
        move |mut stream, stop| {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {BULK_BYTES}\r\n\r\n");
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < BULK_BYTES && !stop.load(Relaxed) {
                match stream.write(&chunk) {
                    Ok(n) => {
                        sent += n as u64;
                        w.fetch_add(n as u64, Relaxed);
                    }
                    Err(err)
                        if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            *e.lock().expect("ended") = Some(Instant::now());
        },
    )
    .expect("bulk server");
    let config = format!(
        "{DEFAULTS}{}{}{}",
        frontend(
            "web",
            80,
            "timeout = { client = \"1s\" }\nuse_backend = [\"bulk if { path /big }\"]\ndefault_backend = \"app\""
        ),
        backend(
            "bulk",
            "timeout = { server = \"30s\" }",
            &format!(
                "[[backend.server]]\nname = \"bulk\"\naddress = \"{}:8090\"\n",
                backend_addr(0)
            )
        ),
        backend("app", "", &lab.servers(&[1], "")),
    );
    lab.start(&config).expect("start");
    let stalled = lab
        .on_client(|| {
            let mut stream = TcpStream::connect(vip(80))?;
            stream.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")?;
            let mut head = [0u8; 1024];
            let n = stream.read(&mut head)?;
            anyhow::ensure!(head[..n].starts_with(b"HTTP/1.1 200"), "no response head");
            Ok(stream)
        })
        .expect("stalled client");
    let stalled_at = Instant::now();
    // Others are served while that client does not read.
    let served = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            let started = Instant::now();
            for i in 0..20 {
                let reply = client.get(&format!("/other/{i}"), &[])?;
                anyhow::ensure!(reply.status == 200 && reply.backend() == "b2");
            }
            Ok(started.elapsed())
        })
        .expect("other client");
    assert!(
        served < Duration::from_secs(1),
        "20 requests took {served:?}"
    );
    // The server side ends once the proxy gives up on the client.
    let deadline = stalled_at + Duration::from_secs(8);
    let end = loop {
        if let Some(end) = *ended.lock().expect("ended") {
            break end;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled client was never cut"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = end.duration_since(stalled_at);
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(6),
        "cut {after:?} after the client stopped reading (timeout client 1s)"
    );
    let total = written.load(Relaxed);
    assert!(
        total < BULK_BYTES / 4,
        "{total} bytes written to a stalled client"
    );
    // What the client finds: the buffered bytes, then the end.
    let mut stalled = stalled;
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut drained = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match stalled.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n as u64,
        }
    }
    assert!(drained < BULK_BYTES, "{drained}");
    let status = lab.status();
    let web = status
        .frontends
        .iter()
        .find(|f| f.name == "web")
        .expect("web");
    assert!(web.counters.sessions_current <= 1, "{:?}", web.counters);
}

/// `balance url_param user check_post 64`: a urlencoded POST is placed by
/// its body's `user` (each user on one server, users spread), the server
/// receives the whole body, and a parameter beyond 64 bytes is not seen
/// (round robin).
#[test]
fn url_param_check_post_places_a_form_by_its_body() {
    let mut lab = ProxyLab::build(3).expect("lab");
    let config = format!(
        "{DEFAULTS}{}{}",
        frontend("forms", 80, "default_backend = \"app\""),
        backend(
            "app",
            "balance = \"url_param user check_post 64\"",
            &lab.servers(&[0, 1, 2], "")
        ),
    );
    lab.start(&config).expect("start");
    let post = |body: String| -> anyhow::Result<(String, String)> {
        lab.on_client(move || {
            let mut client = Client::connect(vip(80))?;
            let request = format!(
                "POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let reply = client.raw(request.as_bytes())?;
            anyhow::ensure!(reply.status == 200, "status {}", reply.status);
            Ok((
                reply.backend(),
                reply.header("x-seen-body").unwrap_or("-").to_owned(),
            ))
        })
    };
    let mut placed: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for i in 0..12 {
            let body = format!("a=1&user=u{i}&pad={}", "z".repeat(200 * round));
            let (server, seen) = post(body.clone()).expect("post");
            assert_eq!(
                seen,
                body.len().to_string(),
                "the whole body reached the server"
            );
            let first = placed.entry(format!("u{i}")).or_insert(server.clone());
            assert_eq!(*first, server, "u{i} moved in round {round}");
        }
    }
    let used: HashSet<&String> = placed.values().collect();
    assert_eq!(used.len(), 3, "{placed:?}");
    // The parameter after the first 64 bytes: not looked at, round robin.
    let late: HashSet<String> = (0..6)
        .map(|_| {
            post(format!("pad={}&user=u1", "z".repeat(80)))
                .expect("late")
                .0
        })
        .collect();
    assert_eq!(late.len(), 3, "{late:?}");
}

/// Waits for a datagram on `socket` that contains `needle`; returns it.
fn wait_datagram(socket: &std::net::UdpSocket, needle: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if text.contains(needle) {
                return Some(text);
            }
        }
    }
    None
}

/// Through the real daemon: a frontend's own `log` target gets its access
/// lines (another frontend's `log global` lines go to the global target
/// only), a backend's own target gets its server events; an ACL `-f` file
/// beside lb.toml routes requests, as nginx's access logs show;
/// `forwardfor if-none` keeps the client's X-Forwarded-For; a redirect
/// renders `%[...]`; a reload reads the pattern file again.
#[test]
fn daemon_section_logs_pattern_files_if_none_and_redirects() -> anyhow::Result<()> {
    use lb_tests::nginx::Nginx;
    use lb_tests::topology::{backend_addr, lbd_binary, CLIENT_ADDR};
    use std::net::{Ipv4Addr, UdpSocket};

    const L7_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 110);
    const WAIT: Duration = Duration::from_secs(10);
    let mut lab = dsr_lab_with(L7_VIP)?;
    let listen = |port: u16| -> anyhow::Result<UdpSocket> {
        let socket = lab.lb().run_in(|| UdpSocket::bind(("127.0.0.1", port)))??;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(socket)
    };
    let (global_log, site_log, app_log) = (listen(5141)?, listen(5140)?, listen(5142)?);
    let mut nginx = Vec::new();
    for (i, backend) in lab.backends.iter().enumerate() {
        let addr = SocketAddr::from((backend_addr(i), 8081));
        nginx.push(Nginx::start(
            &backend.ns,
            &format!("web{}", i + 1),
            &[addr],
        )?);
    }
    let config = format!(
        "[instance]\nname = \"{instance}\"\ninterface = \"eth0\"\n\n\
         [global]\n[[global.log]]\ntarget = \"127.0.0.1:5141\"\nfacility = \"local2\"\n\n\
         [defaults]\nmode = \"http\"\nlog = true\n\n\
         [[frontend]]\nname = \"site\"\nbind = [\"{L7_VIP}:80\"]\n\
         log = [\"127.0.0.1:5140 local3 info\"]\n\
         forwardfor = {{ if_none = true }}\n\
         acl = [\"static path_beg -i -f static.lst\"]\n\
         use_backend = [\"static if static\"]\n\
         http_request = [\"redirect location https://%[hdr(host)]/moved%[path] code 301 if {{ path_beg /old/ }}\"]\n\
         default_backend = \"app\"\n\n\
         [[frontend]]\nname = \"plain\"\nbind = [\"{L7_VIP}:81\"]\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"static\"\n\
         [[backend.server]]\nname = \"web1\"\naddress = \"{b1}:8081\"\n\n\
         [[backend]]\nname = \"app\"\nlog = [\"127.0.0.1:5142 local4 debug err\"]\n\
         [[backend.server]]\nname = \"web2\"\naddress = \"{b2}:8081\"\ncheck = true\ninter = \"200ms\"\nrise = 1\nfall = 1\n",
        instance = lab.instance,
        b1 = backend_addr(0),
        b2 = backend_addr(1),
    );
    let config_path = lab.write_config(&config)?;
    let list = config_path.with_file_name("static.lst");
    std::fs::write(&list, "# static content\n/static\n/Images\n")?;
    lab.spawn_lbd(0, &lbd_binary())?;
    let exchange = |port: u16, request: String| -> anyhow::Result<String> {
        let target = SocketAddr::from((L7_VIP, port));
        lab.client.run_in(|| {
            lb_tests::traffic::exchange_once_listening(target, request.as_bytes(), WAIT)
        })?
    };
    let get = |port: u16, path: &str, extra: &str| {
        exchange(
            port,
            format!(
                "GET {path} HTTP/1.1\r\nHost: site.example\r\n{extra}Connection: close\r\n\r\n"
            ),
        )
        .map_err(|e| anyhow::anyhow!("{e}; lbd log:\n{}", lab.lbd_log()))
    };
    // -f static.lst: /static and /images (-i) go to web1, the rest to web2.
    for (path, server) in [
        ("/static/a.css", "web1"),
        ("/images/logo.png", "web1"),
        ("/api/users", "web2"),
    ] {
        let reply = get(80, path, "")?;
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
        let lower = reply.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("x-backend: {server}")),
            "{path}: {reply}"
        );
    }
    let web1 = nginx[0].wait_for_requests(2, WAIT)?;
    let uris: HashSet<&str> = web1.iter().map(|e| e.uri.as_str()).collect();
    assert_eq!(uris, HashSet::from(["/static/a.css", "/images/logo.png"]));
    // forwardfor if-none: the client's header is kept as it was; without
    // one, the client's address is added.
    get(80, "/ff/kept", "X-Forwarded-For: 203.0.113.7\r\n")?;
    get(80, "/ff/added", "")?;
    let seen = |uri: &str| -> anyhow::Result<Option<String>> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = nginx[1].access_log()?;
            if let Some(entry) = log.iter().find(|e| e.uri == uri) {
                return Ok(entry.x_forwarded_for.clone());
            }
            anyhow::ensure!(Instant::now() < deadline, "{uri} never reached web2");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(seen("/ff/kept")?.as_deref(), Some("203.0.113.7"));
    assert_eq!(seen("/ff/added")?, Some(CLIENT_ADDR.to_string()));
    // A redirect built from the request.
    let reply = get(80, "/old/page?x=1", "")?;
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("location: https://site.example/moved/old/page\r\n"),
        "{reply}"
    );
    // A reload (SIGHUP) reads the pattern file again.
    std::fs::write(&list, "/assets\n")?;
    lab.reload_lbd()?;
    let deadline = Instant::now() + WAIT;
    loop {
        let moved = get(80, "/assets/a.js", "")?.to_ascii_lowercase();
        if moved.contains("x-backend: web1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new pattern file was not read: {moved}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let old = get(80, "/static/a.css", "")?.to_ascii_lowercase();
    assert!(old.contains("x-backend: web2"), "{old}");
    // The site frontend logs to its own target (local3.info = <158>), the
    // plain one (log global) to the global target (local2.info = <150>).
    let line = wait_datagram(&site_log, "\"GET /api/users HTTP/1.1\"", WAIT)
        .unwrap_or_else(|| panic!("no site access line; lbd log:\n{}", lab.lbd_log()));
    assert!(line.starts_with("<158>"), "{line}");
    assert!(line.contains(" site app/web2 "), "{line}");
    get(81, "/via-plain", "")?;
    let line = wait_datagram(&global_log, "\"GET /via-plain HTTP/1.1\"", WAIT)
        .expect("plain's line at the global target");
    assert!(
        line.starts_with("<150>") && line.contains(" plain app/web2 "),
        "{line}"
    );
    assert!(
        wait_datagram(&global_log, "GET /api/users", Duration::from_millis(500)).is_none(),
        "site's lines do not go to the global target"
    );
    assert!(
        wait_datagram(&site_log, "/via-plain", Duration::from_millis(500)).is_none(),
        "plain's lines do not go to site's target"
    );
    // app's server event reaches app's own target: an alert, sent at err
    // by `minlevel err` (local4.err = 20 * 8 + 3).
    nginx[1].stop();
    let down = wait_datagram(&app_log, "Server app/web2 is DOWN", WAIT)
        .unwrap_or_else(|| panic!("no DOWN event; lbd log:\n{}", lab.lbd_log()));
    assert!(down.starts_with("<163>"), "local4.err: {down}");
    Ok(())
}

/// Through the real daemon, each log line checked: an HTTP/2 request's
/// `%B` (the head as HTTP/1.1 writes it, plus the body) equals the same
/// request's over HTTP/1.1, and what curl received over HTTP/1.1; tcp
/// mode's queue is HAProxy's: three sessions on a server with `maxconn 1`
/// are served in arrival order, the later two logging `%bq` 1 and 2 and a
/// `%Tw` of about one and two slow responses.
#[test]
fn http2_bytes_and_tcp_queue_positions_in_the_log() -> anyhow::Result<()> {
    use lb_tests::nginx::{Nginx, NginxOptions};
    use lb_tests::topology::{backend_addr, lbd_binary};
    use std::net::{Ipv4Addr, UdpSocket};

    const L7_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 110);
    const WAIT: Duration = Duration::from_secs(10);
    const SLOW: Duration = Duration::from_millis(600);
    let mut lab = dsr_lab_with(L7_VIP)?;
    let log = lab.lb().run_in(|| UdpSocket::bind(("127.0.0.1", 5143)))??;
    log.set_read_timeout(Some(Duration::from_millis(100)))?;
    let web = SocketAddr::from((backend_addr(0), 8081));
    let _web = Nginx::start(&lab.backends[0].ns, "web1", &[web])?;
    let slow = SocketAddr::from((backend_addr(1), 8081));
    let mut options = NginxOptions::new("slow1", &[slow]);
    options.slow = Some(SLOW);
    let _slow = Nginx::start_with(&lab.backends[1].ns, options)?;
    let config = format!(
        "[instance]\nname = \"{instance}\"\ninterface = \"eth0\"\n\n\
         [global]\n[[global.log]]\ntarget = \"127.0.0.1:5143\"\nfacility = \"local2\"\n\n\
         [defaults]\nmode = \"http\"\nlog = true\n\n\
         [[frontend]]\nname = \"site\"\nbind = [\"{L7_VIP}:80\"]\nlog_format = \"httplog\"\ndefault_backend = \"app\"\n\n\
         [[frontend]]\nname = \"relay\"\nmode = \"tcp\"\nbind = [\"{L7_VIP}:82\"]\nlog_format = \"tcplog\"\ndefault_backend = \"slow\"\n\n\
         [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"web1\"\naddress = \"{web}\"\n\n\
         [[backend]]\nname = \"slow\"\nmode = \"tcp\"\n[[backend.server]]\nname = \"slow1\"\naddress = \"{slow}\"\nmaxconn = 1\n",
        instance = lab.instance,
    );
    lab.write_config(&config)?;
    lab.spawn_lbd(0, &lbd_binary())?;
    // The same page over HTTP/1.1 and HTTP/2 (h2c, prior knowledge).
    let curl = |flag: &str, query: &str| -> anyhow::Result<u64> {
        let url = format!("http://{L7_VIP}/index.html?{query}");
        let deadline = Instant::now() + WAIT;
        loop {
            let out = lab
                .client
                .command(
                    "curl",
                    &[
                        "-s",
                        "-o",
                        "/dev/null",
                        flag,
                        "-w",
                        "%{size_header} %{size_download}",
                        &url,
                    ],
                )
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let sizes: Vec<u64> = text.split(' ').filter_map(|n| n.parse().ok()).collect();
            if out.status.success() && sizes.len() == 2 {
                return Ok(sizes[0] + sizes[1]);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "curl {flag}: {text}; lbd log:\n{}",
                lab.lbd_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let received = curl("--http1.1", "h1")?;
    curl("--http2-prior-knowledge", "h2")?;
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    while lines.len() < 2 && Instant::now() < deadline {
        if let Some(line) = wait_datagram(&log, "/index.html?", Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let bytes_of = |request: &str| -> u64 {
        let line = lines
            .iter()
            .find(|l| l.contains(request))
            .unwrap_or_else(|| panic!("no line for {request} in {lines:?}"));
        let message = &line[line.find("]: ").expect("tag") + 3..];
        message
            .split(' ')
            .nth(6)
            .and_then(|b| b.parse().ok())
            .expect("%B")
    };
    let h1 = bytes_of("\"GET /index.html?h1 HTTP/1.1\"");
    // HTTP/2 requests carry scheme and authority, logged as received.
    let h2 = bytes_of("/index.html?h2 HTTP/2.0\"");
    assert_eq!(h1, received, "HTTP/1.1's %B is what the client received");
    assert_eq!(h2, h1, "HTTP/2's %B counts the same response alike");

    // Three tcp sessions on a server with maxconn 1, 150 ms apart.
    let sessions: Vec<(u16, TcpStream)> = (0..3)
        .map(|i| -> anyhow::Result<(u16, TcpStream)> {
            let mut stream = lab.client.run_in(|| TcpStream::connect((L7_VIP, 82)))??;
            stream.set_read_timeout(Some(WAIT))?;
            let request = format!("GET /slow?{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes())?;
            std::thread::sleep(Duration::from_millis(150));
            Ok((stream.local_addr()?.port(), stream))
        })
        .collect::<anyhow::Result<_>>()?;
    // Each session ends when its client closes too: read, then close.
    let mut ports = Vec::new();
    for (port, mut stream) in sessions {
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        ports.push(port);
    }
    let mut queue = Vec::new();
    for port in &ports {
        let line = wait_datagram(&log, &format!(":{port} ["), WAIT).unwrap_or_else(|| {
            panic!(
                "no tcplog line for port {port}; lbd log:\n{}",
                lab.lbd_log()
            )
        });
        let message = &line[line.find("]: ").expect("tag") + 3..];
        let fields: Vec<&str> = message.split(' ').collect();
        // tcplog: 4 = Tw/Tc/Tt, last = %sq/%bq.
        let waited: u64 = fields[4]
            .split('/')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("Tw");
        queue.push((waited, fields.last().expect("queues").trim().to_owned()));
    }
    let positions: Vec<&str> = queue.iter().map(|(_, q)| q.as_str()).collect();
    assert_eq!(positions, ["0/0", "0/1", "0/2"], "arrival order: {queue:?}");
    // Session k arrived k x 150 ms after the first and got the server
    // after k slow responses.
    let slow_ms = SLOW.as_millis() as u64;
    for (k, (waited, _)) in queue.iter().enumerate() {
        let expected = k as u64 * (slow_ms - 150);
        assert!(
            *waited + 150 >= expected && *waited <= expected + 300,
            "session {k} waited {waited} ms, about {expected} expected: {queue:?}"
        );
    }
    Ok(())
}

/// A request queued on its server (`hdr(X-User)` binds it there, the
/// server is at its `maxconn 1` with a slow request) moves to another
/// server at once when its server is put in MAINT, with `option
/// redispatch` (HAProxy's `pendconn_redistribute`): it is answered by the
/// other server before the slow request ahead of it ends, not after it.
#[test]
fn a_queued_request_leaves_a_server_put_in_maint_at_once() -> anyhow::Result<()> {
    use lb_tests::nginx::{Nginx, NginxOptions};
    use lb_tests::topology::{backend_addr, lbd_binary};
    use std::net::Ipv4Addr;

    const L7_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 113);
    const SLOW: Duration = Duration::from_secs(4);
    let mut lab = dsr_lab_with(L7_VIP)?;
    let fast = SocketAddr::from((backend_addr(0), 8081));
    let mut options = NginxOptions::new("fast1", &[fast]);
    options.slow = Some(Duration::from_millis(10));
    let _fast = Nginx::start_with(&lab.backends[0].ns, options)?;
    let slow = SocketAddr::from((backend_addr(1), 8081));
    let mut options = NginxOptions::new("slow1", &[slow]);
    options.slow = Some(SLOW);
    let _slow = Nginx::start_with(&lab.backends[1].ns, options)?;
    // fast1 starts in MAINT, so that alice's requests are bound to slow1.
    let config = format!(
        "[instance]\nname = \"{instance}\"\ninterface = \"eth0\"\n\n\
         [defaults]\nmode = \"http\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\", queue = \"20s\" }}\n\n\
         [[frontend]]\nname = \"site\"\nbind = [\"{L7_VIP}:80\"]\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nbalance = \"hdr(X-User)\"\nredispatch = true\n\
         [[backend.server]]\nname = \"slow1\"\naddress = \"{slow}\"\nmaxconn = 1\n\
         [[backend.server]]\nname = \"fast1\"\naddress = \"{fast}\"\ndisabled = true\n",
        instance = lab.instance,
    );
    lab.write_config(&config)?;
    let lbd = lbd_binary();
    lab.spawn_lbd(0, &lbd)?;
    let curl = |path: &str| -> anyhow::Result<String> {
        let out = lab
            .client
            .command(
                "curl",
                &[
                    "-s",
                    "-m",
                    "30",
                    "-H",
                    "X-User: alice",
                    &format!("http://{L7_VIP}{path}"),
                ],
            )
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl("/")? != "slow1" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "lbd not serving: {}",
            lab.lbd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let set = |server: &str, state: &str| -> anyhow::Result<()> {
        let out = lab
            .lb()
            .command(
                &lbd.display().to_string(),
                &[
                    "set",
                    "server",
                    "--instance",
                    &lab.instance,
                    server,
                    "state",
                    state,
                ],
            )
            .output()?;
        anyhow::ensure!(out.status.success(), "set {server} {state}: {out:?}");
        Ok(())
    };
    let finished = Mutex::new(Vec::new());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let ahead = scope.spawn(|| {
            let body = curl("/slow");
            finished.lock().expect("order").push("ahead");
            body
        });
        std::thread::sleep(Duration::from_millis(500));
        let queued = scope.spawn(|| {
            let body = curl("/slow");
            finished.lock().expect("order").push("queued");
            body
        });
        // It waits in slow1's queue; then slow1 goes into MAINT.
        std::thread::sleep(Duration::from_millis(500));
        set("app/fast1", "ready")?;
        set("app/slow1", "maint")?;
        let queued = queued.join().expect("queued request")?;
        let ahead = ahead.join().expect("request ahead")?;
        assert_eq!(ahead, "slow1", "the request ahead ends on its server");
        assert_eq!(
            queued, "fast1",
            "the queued request went to the other server"
        );
        assert_eq!(
            *finished.lock().expect("order"),
            ["queued", "ahead"],
            "the queued request waited for the slow one: {}",
            lab.lbd_log()
        );
        Ok(())
    })?;
    Ok(())
}
