//! `lbd import` judged by behaviour: HAProxy 2.6 runs a seed haproxy.cfg
//! and lbd's proxy runs its import, in front of the same nginx backends,
//! and the same requests must reach the same backend pools (ACL routing,
//! the default backend, no backend, the redirect); keepalived 2.2.7 runs a
//! seed keepalived.conf and lbd runs the import of the peer's, in one VRRP
//! group, and they must elect the same master either way round. Needs
//! root. Run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test import_netns -- --test-threads=1`
// Shared by the proxy test binaries; each uses part of it.
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;

use kit::{backend_addr, client::get_once, ProxyLab, PROXY};
use lb_tests::{
    ha::wait_state,
    process::ChildGuard,
    topology::{lbd_binary, DsrLab, TempDir},
};
use lbd::{import, vrrp::State};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/import")
        .join(name)
}

/// The import of `haproxy` (and `keepalived`), validated as `lbd check`
/// validates it.
fn import_files(keepalived: Option<&Path>, haproxy: Option<&Path>) -> String {
    let imported = import::import(&import::Options {
        keepalived: keepalived.map(Path::to_owned),
        haproxy: haproxy.map(Path::to_owned),
        prefer_xdp: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        imported.report.unsupported().count(),
        0,
        "{}",
        imported.report
    );
    import::check(&imported.toml, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}"));
    imported.toml
}

/// The proxy sections of an imported file: everything but `[instance]`
/// (the in-process proxy takes only HAProxy's sections).
fn proxy_sections(toml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in toml.lines() {
        if line == "[instance]" {
            skipping = true;
        } else if line.is_empty() {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Which pool answered each request: the backend's name, or the status
/// and Location when no backend did.
fn outcomes(requests: &[(u16, &str)]) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    for (port, path) in requests {
        let reply = get_once(SocketAddr::from((PROXY, *port)), path, &[])?;
        seen.push(match reply.header("x-backend") {
            Some(b) => b.to_owned(),
            None => format!(
                "{} {}",
                reply.status,
                reply.header("location").unwrap_or("")
            ),
        });
    }
    Ok(seen)
}

/// What HAProxy 2.6 refuses in the seeds, as it asks to have it written:
/// the address on a `frontend`/`listen` line as a `bind` ("please use the
/// 'bind' keyword for listening addresses"), and a second server of the
/// same name renamed ("please use distinct names") as the import names it.
fn for_haproxy_2_6(cfg: &str) -> String {
    let mut out = String::new();
    let mut names: Vec<String> = Vec::new();
    for line in cfg.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [kind @ ("frontend" | "listen"), name, address, ..] if !address.starts_with('#') => {
                out.push_str(&format!("{kind} {name}\n    bind {address}\n"));
                names.clear();
                continue;
            }
            ["backend", ..] => names.clear(),
            ["server", name, rest @ ..] => {
                if names.iter().any(|n| n == name) {
                    out.push_str(&format!("    server {name}_2 {}\n", rest.join(" ")));
                    continue;
                }
                names.push(name.to_string());
            }
            _ => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Runs HAProxy 2.6 on `cfg` (in the form it accepts) in the proxy's
/// namespace, asks `requests`, stops it; then lbd's proxy on the import
/// of `cfg` as the seed wrote it.
fn both_ways(
    lab: &mut ProxyLab,
    cfg: &str,
    requests: &[(u16, &str)],
) -> (Vec<String>, Vec<String>) {
    let dir = TempDir::create(&lb_tests::netns::unique_name("imp")).unwrap();
    let path = dir.path.join("haproxy.cfg");
    std::fs::write(&path, for_haproxy_2_6(cfg)).unwrap();
    let check = lab
        .lb
        .command("haproxy", &["-c", "-f", &path.display().to_string()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut command = lab
        .lb
        .command("haproxy", &["-db", "-f", &path.display().to_string()]);
    command.stdout(std::process::Stdio::null());
    command.stderr(std::fs::File::create(dir.path.join("haproxy.log")).unwrap());
    let mut haproxy = ChildGuard::spawn(command, "haproxy").unwrap();
    let ports: Vec<u16> = requests.iter().map(|(p, _)| *p).collect();
    wait_listening(lab, &ports);
    // Let the first health checks pass (servers start up in both).
    std::thread::sleep(Duration::from_millis(500));
    let by_haproxy = lab.on_client(|| outcomes(requests)).unwrap();
    // HAProxy exits on SIGTERM with a non-zero status: only its exit counts.
    haproxy.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    assert!(haproxy.try_wait().is_some(), "HAProxy did not stop");

    let seed = dir.path.join("seed.cfg");
    std::fs::write(&seed, cfg).unwrap();
    let toml = import_files(None, Some(&seed));
    lab.start(&proxy_sections(&toml))
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    wait_listening(lab, &ports);
    std::thread::sleep(Duration::from_millis(500));
    let by_lbd = lab.on_client(|| outcomes(requests)).unwrap();
    drop(lab.proxy.take());
    (by_haproxy, by_lbd)
}

fn wait_listening(lab: &ProxyLab, ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in ports {
        let target = SocketAddr::from((PROXY, *port));
        while lab
            .on_client(|| {
                Ok(std::net::TcpStream::connect_timeout(
                    &target,
                    Duration::from_millis(200),
                ))
            })
            .unwrap()
            .is_err()
        {
            assert!(Instant::now() < deadline, "nothing listens on {target}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Seed 003's fixture with the lab's nginx addresses (b1 is the static
/// pool, b2 and b3 the https pool), without its `bind :443 ssl` line (TLS
/// termination is tls_netns.rs's) and with a private stats socket.
fn seed003_in_the_lab(socket: &Path) -> String {
    let text = std::fs::read_to_string(fixture("seed003.haproxy.cfg")).unwrap();
    text.lines()
        .filter(|l| !l.contains("ssl crt"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("127.0.0.1:4331", &format!("{}:80", backend_addr(0)))
        .replace("198.18.0.20:80", &format!("{}:80", backend_addr(1)))
        .replace("198.18.0.21:80", &format!("{}:80", backend_addr(2)))
        .replace("/var/lib/haproxy/stats", &socket.display().to_string())
        + "\n"
}

#[test]
fn seed003_acl_routing_no_default_backend_and_redirect_match_haproxy() {
    let mut lab = ProxyLab::build(3).unwrap();
    let _nginx: Vec<_> = (0..3).map(|i| lab.backends[i].nginx(i).unwrap()).collect();
    let dir = TempDir::create(&lb_tests::netns::unique_name("imps")).unwrap();
    let cfg = seed003_in_the_lab(&dir.path.join("stats.sock"));
    let requests = [
        (5000, "/static/app.js"),
        (5000, "/IMAGES/logo"),
        (5000, "/stylesheets/a"),
        (5000, "/page.css"),
        (5000, "/x/photo.png"),
        (5000, "/index.html"),
        (5000, "/"),
        (80, "/"),
        (80, "/login?next=/home"),
    ];
    let (haproxy, lbd) = both_ways(&mut lab, &cfg, &requests);
    assert_eq!(
        haproxy, lbd,
        "HAProxy and lbd route the same requests alike"
    );
    assert_eq!(
        lbd,
        [
            "b1",
            "b1",
            "b1",
            "b1",
            "b1",
            "503 ",
            "503 ",
            "302 https://test.lbd/",
            "302 https://test.lbd/login?next=/home",
        ],
        "the ACLs send static paths to backend static, the rest has no backend"
    );
}

#[test]
fn seed004_default_backend_reaches_the_same_pool_as_haproxy() {
    let mut lab = ProxyLab::build(3).unwrap();
    let _nginx: Vec<_> = (0..3).map(|i| lab.backends[i].nginx(i).unwrap()).collect();
    let text = std::fs::read_to_string(fixture("seed004.haproxy.cfg")).unwrap();
    let cfg = text
        .replace("198.18.0.60:80", &format!("{}:80", backend_addr(1)))
        .replace("198.18.0.61:80", &format!("{}:80", backend_addr(2)));
    let requests = [(80, "/"), (80, "/a"), (80, "/b"), (80, "/c")];
    let (haproxy, lbd) = both_ways(&mut lab, &cfg, &requests);
    let pool = |seen: &[String]| {
        let mut set: Vec<String> = seen.to_vec();
        set.sort();
        set.dedup();
        set
    };
    assert_eq!(pool(&haproxy), ["b2", "b3"], "HAProxy: {haproxy:?}");
    assert_eq!(pool(&lbd), ["b2", "b3"], "lbd: {lbd:?}");
    // roundrobin over the two servers, one connection each: alternating.
    assert_ne!(lbd[0], lbd[1]);
    assert_ne!(haproxy[0], haproxy[1]);
}

fn start_keepalived(lab: &DsrLab, node: usize, conf: &Path, dir: &Path) -> ChildGuard {
    lb_tests::ha::start_keepalived(lab, node, conf, dir).unwrap()
}

fn holds_vip(lab: &DsrLab, node: usize) -> bool {
    lab.lbs[node]
        .ns
        .ip(&["-4", "addr", "show", "dev", "eth0"])
        .unwrap()
        .contains("198.18.0.100/32")
}

/// The import of a seed keepalived.conf as node `node`'s lb.toml (the
/// lab's instance name, so the lab cleans it up).
fn configure_import(lab: &DsrLab, node: usize, seed: &str) {
    let toml = import_files(Some(&fixture(seed)), None);
    let named: String = toml
        .lines()
        .map(|l| {
            if l.starts_with("name = \"rtr_") {
                format!("name = \"{}\"", lab.lbs[node].instance)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    lab.write_config_of(node, &(named + "\n")).unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn seed000_keepalived_and_lbd_on_its_import_elect_the_same_master() {
    // Seed 000: master priority 200, backup 100, VRRPv2, PASS P@ssW0rd,
    // vrid 10, VIP 198.18.0.100 (the lab's VIP).
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 1).unwrap();
    let dir = TempDir::create(&lb_tests::netns::unique_name("ka")).unwrap();

    // keepalived runs the master's file on node 0, lbd the import of the
    // backup's on node 1: keepalived is master, lbd backs it up.
    let mut keepalived = start_keepalived(
        &lab,
        0,
        &fixture("seed000_master.keepalived.conf"),
        &dir.path,
    );
    wait_for(
        "keepalived (priority 200) became master",
        Duration::from_secs(10),
        || holds_vip(&lab, 0),
    );
    configure_import(&lab, 1, "seed000_backup.keepalived.conf");
    lab.spawn_lbd(1, &lbd).unwrap();
    wait_state(&lab, 1, &lbd, State::Backup, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    let report = lab.status_of(1, &lbd).unwrap();
    assert_eq!(report.vrrp[0].state, State::Backup, "{:?}", report.vrrp[0]);
    assert_eq!(report.vrrp[0].master, Some(lab.lbs[0].addr.into()));
    assert!(
        report.vrrp[0].counters.rejected.is_empty(),
        "{:?}",
        report.vrrp[0].counters
    );
    assert!(holds_vip(&lab, 0) && !holds_vip(&lab, 1));
    assert!(keepalived.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5)));
    assert!(lab.stop_lbd_of(1));

    // The other way round: lbd runs the import of the master's file on
    // node 0, keepalived the backup's on node 1.
    configure_import(&lab, 0, "seed000_master.keepalived.conf");
    let _keepalived = start_keepalived(
        &lab,
        1,
        &fixture("seed000_backup.keepalived.conf"),
        &dir.path,
    );
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(4));
    assert!(holds_vip(&lab, 0), "lbd (priority 200) holds the VIP");
    assert!(
        !holds_vip(&lab, 1),
        "keepalived (priority 100) stays backup"
    );
    let report = lab.status_of(0, &lbd).unwrap();
    assert_eq!(report.vrrp[0].state, State::Master);
    assert!(
        report.vrrp[0].counters.rejected.is_empty(),
        "{:?}",
        report.vrrp[0].counters
    );
}
