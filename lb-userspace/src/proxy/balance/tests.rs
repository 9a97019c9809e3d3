use super::*;
use crate::proxy::config::{parse_str, ProxyConfig};
use crate::proxy::snapshot::{AdminState, Snapshot, StateRegistry};
use hyper::http::Request;
use std::{collections::HashMap, path::Path, sync::Arc};

/// (name, weight, backup, maxconn)
type S = (&'static str, u32, bool, u32);

fn config(balance: &str, servers: &[S], extra: &str) -> ProxyConfig {
    let mode = if balance.starts_with("rdp") {
        "tcp"
    } else {
        "http"
    };
    let mut text =
        format!("[[backend]]\nname = \"b\"\nmode = \"{mode}\"\nbalance = \"{balance}\"\n{extra}\n");
    for (i, (name, weight, backup, maxconn)) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[[backend.server]]\nname = \"{name}\"\naddress = \"198.18.0.{}:80\"\nweight = {weight}\nbackup = {backup}\nmaxconn = {maxconn}\n",
            i + 10
        ));
    }
    parse_str(&text, Path::new("t.toml")).unwrap()
}

fn snapshot(balance: &str, servers: &[S]) -> Snapshot {
    StateRegistry::new().build(Arc::new(config(balance, servers, "")))
}

fn pick(snap: &Snapshot, input: &BalanceInput) -> Pick {
    let (config, runtime) = snap.backend(0).unwrap();
    choose(config, runtime, input)
}

fn server(snap: &Snapshot, input: &BalanceInput) -> usize {
    match pick(snap, input) {
        Pick::Server(id) => id,
        other => panic!("expected a server, got {other:?}"),
    }
}

fn src(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000u32 + i))
}

fn get(uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut builder = Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn equal(n: usize) -> Vec<S> {
    const NAMES: [&str; 10] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    (0..n).map(|i| (NAMES[i], 1, false, 0)).collect()
}

/// Counts picks per server over `n` inputs.
fn spread(n: u32, input: impl Fn(u32) -> Pick) -> HashMap<usize, u32> {
    let mut counts = HashMap::new();
    for i in 0..n {
        if let Pick::Server(id) = input(i) {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

fn assert_shares(counts: &HashMap<usize, u32>, weights: &[u32], total: u32) {
    let sum: u32 = weights.iter().sum();
    for (id, &w) in weights.iter().enumerate() {
        let expected = f64::from(total) * f64::from(w) / f64::from(sum);
        let got = f64::from(*counts.get(&id).unwrap_or(&0));
        assert!(
            (got - expected).abs() <= expected * 0.05,
            "server {id} weight {w}: {got} picks, expected {expected} ±5% ({counts:?})"
        );
    }
}

#[test]
fn parses_every_algorithm_of_the_seeds() {
    let cases: &[(&str, Balance)] = &[
        ("roundrobin", Balance::RoundRobin),
        ("static-rr", Balance::StaticRr),
        ("leastconn", Balance::LeastConn),
        ("first", Balance::First),
        ("source", Balance::Source),
        ("uri", Balance::Uri(UriHash::default())),
        (
            "uri whole len 10 depth 3",
            Balance::Uri(UriHash {
                whole: true,
                len: 10,
                depth: 3,
            }),
        ),
        (
            "url_param id",
            Balance::UrlParam(UrlParam {
                name: "id".into(),
                check_post: None,
            }),
        ),
        (
            "url_param id check_post",
            Balance::UrlParam(UrlParam {
                name: "id".into(),
                check_post: Some(CHECK_POST_DEFAULT),
            }),
        ),
        (
            "url_param id check_post 64",
            Balance::UrlParam(UrlParam {
                name: "id".into(),
                check_post: Some(64),
            }),
        ),
        (
            "hdr(Host)",
            Balance::Hdr(HdrHash {
                name: HeaderName::from_static("host"),
                domain_only: false,
            }),
        ),
        (
            "hdr(host) use_domain_only",
            Balance::Hdr(HdrHash {
                name: HeaderName::from_static("host"),
                domain_only: true,
            }),
        ),
        ("rdp-cookie", Balance::RdpCookie("mstshash".into())),
        ("rdp-cookie(user)", Balance::RdpCookie("user".into())),
        ("random", Balance::Random { draws: 2 }),
        ("random(5)", Balance::Random { draws: 5 }),
    ];
    for (text, expected) in cases {
        assert_eq!(Balance::parse(text).as_ref(), Ok(expected), "{text}");
    }
    for bad in [
        "",
        "roundrobin x",
        "uri len",
        "uri len 0",
        "uri fast",
        "url_param",
        "hdr",
        "hdr()",
        "random(0)",
        "random(x)",
        "leastconn(2)",
        "wrr",
        "hdr(a b)",
        "hdr(host) use_domain",
        "hdr(host) use_domain_only x",
        "url_param id check_get",
        "url_param id check_post 0",
        "url_param id check_post x",
        "url_param id check_post 2000000",
        "url_param id check_post 64 1",
    ] {
        assert!(Balance::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn roundrobin_is_smooth_and_weighted() {
    let snap = snapshot(
        "roundrobin",
        &[("a", 3, false, 0), ("b", 1, false, 0), ("c", 1, false, 0)],
    );
    let input = BalanceInput::new(src(1));
    let order: Vec<usize> = (0..10).map(|_| server(&snap, &input)).collect();
    // Smooth: weight 3 of 5 spread out, never three in a row.
    assert_eq!(order, [0, 1, 0, 2, 0, 0, 1, 0, 2, 0]);
    let counts = spread(5000, |_| pick(&snap, &input));
    assert_shares(&counts, &[3, 1, 1], 5000);
}

#[test]
fn roundrobin_follows_runtime_weights_static_rr_does_not() {
    for (balance, follows) in [("roundrobin", true), ("static-rr", false)] {
        let snap = snapshot(balance, &equal(2));
        snap.backends[0].servers[0].set_weight(4);
        let input = BalanceInput::new(src(1));
        let counts = spread(1000, |_| pick(&snap, &input));
        let weights = if follows { [4, 1] } else { [1, 1] };
        assert_shares(&counts, &weights, 1000);
    }
}

#[test]
fn static_rr_is_weighted_in_order() {
    let snap = snapshot("static-rr", &[("a", 2, false, 0), ("b", 1, false, 0)]);
    let input = BalanceInput::new(src(1));
    let order: Vec<usize> = (0..6).map(|_| server(&snap, &input)).collect();
    assert_eq!(order, [0, 1, 0, 0, 1, 0]);
}

#[test]
fn leastconn_picks_the_least_loaded_and_rotates_ties() {
    let snap = snapshot("leastconn", &equal(3));
    let servers = &snap.backends[0].servers;
    let input = BalanceInput::new(src(1));
    // Ties go round robin.
    let order: Vec<usize> = (0..6).map(|_| server(&snap, &input)).collect();
    assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    // A busy server is avoided until the others catch up.
    for _ in 0..3 {
        servers[0].try_acquire(0);
    }
    servers[1].try_acquire(0);
    assert_eq!(server(&snap, &input), 2);
    servers[2].try_acquire(0);
    servers[2].try_acquire(0);
    assert_eq!(server(&snap, &input), 1);
}

#[test]
fn leastconn_weighs_connections() {
    let snap = snapshot("leastconn", &[("a", 2, false, 0), ("b", 1, false, 0)]);
    let servers = &snap.backends[0].servers;
    let input = BalanceInput::new(src(1));
    // Holding every picked connection: a gets two for each of b's.
    let mut counts = [0; 2];
    for _ in 0..300 {
        let id = server(&snap, &input);
        servers[id].try_acquire(0);
        counts[id] += 1;
    }
    assert_eq!(counts, [200, 100]);
}

#[test]
fn first_fills_servers_in_order_up_to_maxconn() {
    let snap = snapshot(
        "first",
        &[("a", 1, false, 2), ("b", 1, false, 1), ("c", 1, false, 0)],
    );
    let (_, runtime) = snap.backend(0).unwrap();
    let input = BalanceInput::new(src(1));
    let mut order = Vec::new();
    for _ in 0..5 {
        let id = server(&snap, &input);
        assert!(runtime.servers[id].try_acquire(snap.config.backends[0].servers[id].maxconn));
        order.push(id);
    }
    assert_eq!(order, [0, 0, 1, 2, 2]);
    runtime.servers[0].release();
    assert_eq!(server(&snap, &input), 0);
}

#[test]
fn source_is_sticky_weighted_and_consistent() {
    let snap = snapshot(
        "source",
        &[("a", 1, false, 0), ("b", 2, false, 0), ("c", 1, false, 0)],
    );
    let first = server(&snap, &BalanceInput::new(src(7)));
    for _ in 0..10 {
        assert_eq!(server(&snap, &BalanceInput::new(src(7))), first);
    }
    let counts = spread(40_000, |i| pick(&snap, &BalanceInput::new(src(i))));
    assert_shares(&counts, &[1, 2, 1], 40_000);
}

/// The share of `keys` requests (distinct client, path, query and header
/// each) whose server differs before and after `change`.
fn moved_share(balance: &str, keys: u32, change: impl Fn(&Snapshot)) -> f64 {
    let snap = snapshot(balance, &equal(10));
    let requests: Vec<request::Parts> = (0..keys)
        .map(|i| get(&format!("/p/{i}?id={i}"), &[("x-user", &format!("u{i}"))]))
        .collect();
    let pick_all = |snap: &Snapshot| -> Vec<usize> {
        (0..keys as usize)
            .map(|i| {
                let mut input = BalanceInput::new(src(i as u32));
                input.request = Some(&requests[i]);
                server(snap, &input)
            })
            .collect()
    };
    let before = pick_all(&snap);
    change(&snap);
    let after = pick_all(&snap);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    moved as f64 / f64::from(keys)
}

#[test]
fn hashing_algorithms_move_about_one_nth_when_a_server_goes() {
    for balance in ["source", "uri", "url_param id", "hdr(x-user)"] {
        let share = moved_share(balance, 20_000, |snap| {
            snap.backends[0].servers[3].set_health(false);
        });
        // 1/10 must move (the server's own keys); Maglev moves a little more.
        assert!(
            (0.08..=0.15).contains(&share),
            "{balance}: {share} of keys moved"
        );
        // Coming back returns to the same table.
        let share_back = moved_share(balance, 2_000, |snap| {
            snap.backends[0].servers[3].set_health(false);
            let input = BalanceInput::new(src(1));
            let _ = pick(snap, &input);
            snap.backends[0].servers[3].set_health(true);
        });
        assert_eq!(share_back, 0.0, "{balance}");
    }
}

#[test]
fn adding_a_server_moves_about_its_share() {
    let small = StateRegistry::new();
    let nine = config("source", &equal(9), "");
    let ten = config("source", &equal(10), "");
    let before = small.build(Arc::new(nine));
    let after = small.build(Arc::new(ten));
    let keys = 20_000u32;
    let moved = (0..keys)
        .filter(|&i| {
            let input = BalanceInput::new(src(i));
            server(&before, &input) != server(&after, &input)
        })
        .count() as f64
        / f64::from(keys);
    assert!((0.08..=0.15).contains(&moved), "{moved} of keys moved");
}

#[test]
fn uri_hashes_path_by_default_and_query_with_whole() {
    let key = |uri: &str, options: UriHash| uri_key(&uri.parse().unwrap(), options);
    let plain = UriHash::default();
    assert_eq!(key("/a/b/c?x=1", plain), "/a/b/c");
    assert_eq!(
        key(
            "/a/b/c?x=1",
            UriHash {
                whole: true,
                ..plain
            }
        ),
        "/a/b/c?x=1"
    );
    assert_eq!(key("/a/b/c?x=1", UriHash { depth: 2, ..plain }), "/a/b");
    assert_eq!(key("/a/b/c", UriHash { depth: 5, ..plain }), "/a/b/c");
    assert_eq!(key("/abcdef", UriHash { len: 3, ..plain }), "/ab");
    assert_eq!(key("http://h.example/a/b?q", plain), "/a/b");

    let snap = snapshot("uri", &equal(4));
    let at = |uri: &str| {
        let request = get(uri, &[]);
        let mut input = BalanceInput::new(src(1));
        input.request = Some(&request);
        server(&snap, &input)
    };
    // Same path, any query, any client: same server.
    for i in 0..20 {
        assert_eq!(at(&format!("/img/logo.png?v={i}")), at("/img/logo.png"));
    }
    let counts = spread(20_000, |i| {
        let request = get(&format!("/file/{i}"), &[]);
        let mut input = BalanceInput::new(src(1));
        input.request = Some(&request);
        pick(&snap, &input)
    });
    assert_shares(&counts, &[1, 1, 1, 1], 20_000);
}

#[test]
fn url_param_and_hdr_fall_back_to_round_robin() {
    for (balance, with, without) in [
        ("url_param id", get("/x?a=1&id=42", &[]), get("/x?a=1", &[])),
        (
            "url_param id",
            get("/x?id=&id=42", &[]),
            get("/x?id&id=", &[]),
        ),
        (
            "hdr(x-user)",
            get("/", &[("x-user", "bob")]),
            get("/", &[("x-user", " ")]),
        ),
    ] {
        let snap = snapshot(balance, &equal(3));
        let mut input = BalanceInput::new(src(1));
        input.request = Some(&with);
        let sticky = server(&snap, &input);
        for _ in 0..6 {
            assert_eq!(server(&snap, &input), sticky, "{balance}");
        }
        input.request = Some(&without);
        let order: Vec<usize> = (0..6).map(|_| server(&snap, &input)).collect();
        let mut sorted = order[..3].to_vec();
        sorted.sort();
        assert_eq!(
            sorted,
            [0, 1, 2],
            "{balance}: round robin expected, got {order:?}"
        );
        assert_eq!(order[..3], order[3..], "{balance}");
    }
}

#[test]
fn rdp_cookie_sticks_a_user_and_falls_back_without_one() {
    let snap = snapshot("rdp-cookie", &equal(3));
    let alice = rdp::connection_request(Some("alice"));
    let mut input = BalanceInput::new(src(1));
    input.payload = &alice;
    let first = server(&snap, &input);
    for i in 0..10 {
        input.src = src(i);
        assert_eq!(server(&snap, &input), first);
    }
    let users: Vec<Vec<u8>> = (0..3000)
        .map(|i| rdp::connection_request(Some(&format!("user{i}"))))
        .collect();
    let counts = spread(3000, |i| {
        let mut input = BalanceInput::new(src(1));
        input.payload = &users[i as usize];
        pick(&snap, &input)
    });
    assert_eq!(counts.len(), 3);
    let anonymous = rdp::connection_request(None);
    input.payload = &anonymous;
    let order: Vec<usize> = (0..3).map(|_| server(&snap, &input)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2]);
}

#[test]
fn random_prefers_the_less_loaded_of_its_draws() {
    let snap = snapshot("random(2)", &equal(2));
    let servers = &snap.backends[0].servers;
    let input = BalanceInput::new(src(1));
    let counts = spread(4000, |_| pick(&snap, &input));
    assert_shares(&counts, &[1, 1], 4000);
    for _ in 0..50 {
        servers[0].try_acquire(0);
    }
    // With two draws, server 1 wins whenever it is drawn: ~3/4 of picks.
    let counts = spread(4000, |_| pick(&snap, &input));
    let share = f64::from(counts[&1]) / 4000.0;
    assert!((0.70..=0.80).contains(&share), "{share}");
    // One draw is plain weighted random.
    let snap = snapshot("random(1)", &[("a", 3, false, 0), ("b", 1, false, 0)]);
    let counts = spread(8000, |_| pick(&snap, &input));
    assert_shares(&counts, &[3, 1], 8000);
}

#[test]
fn backup_serves_only_when_every_primary_is_down() {
    for balance in ["roundrobin", "leastconn", "source", "first", "random"] {
        let servers: &[S] = &[
            ("a", 1, false, 0),
            ("b", 1, false, 0),
            ("bk1", 1, true, 0),
            ("bk2", 1, true, 0),
        ];
        let snap = snapshot(balance, servers);
        let state = &snap.backends[0].servers;
        let input = BalanceInput::new(src(3));
        for _ in 0..20 {
            assert!(server(&snap, &input) < 2, "{balance}");
        }
        state[0].set_health(false);
        for _ in 0..20 {
            assert_eq!(server(&snap, &input), 1, "{balance}");
        }
        state[1].set_admin(AdminState::Maint);
        // Only the first backup, without allbackups.
        for _ in 0..20 {
            assert_eq!(server(&snap, &input), 2, "{balance}");
        }
        state[2].set_weight(0);
        assert_eq!(server(&snap, &input), 3, "{balance}");
        state[3].set_admin(AdminState::Drain);
        assert_eq!(pick(&snap, &input), Pick::NoServer, "{balance}");
        state[0].set_health(true);
        assert_eq!(server(&snap, &input), 0, "{balance}");
    }
}

#[test]
fn allbackups_balances_over_every_backup() {
    let servers: &[S] = &[("a", 1, false, 0), ("bk1", 1, true, 0), ("bk2", 1, true, 0)];
    let snap =
        StateRegistry::new().build(Arc::new(config("roundrobin", servers, "allbackups = true")));
    snap.backends[0].servers[0].set_health(false);
    let input = BalanceInput::new(src(1));
    let order: Vec<usize> = (0..4).map(|_| server(&snap, &input)).collect();
    assert_eq!(order, [1, 2, 1, 2]);
}

#[test]
fn full_servers_are_skipped_or_queued() {
    // Load spreading: a full server is skipped; all full = backend queue.
    let snap = snapshot("roundrobin", &[("a", 1, false, 1), ("b", 1, false, 1)]);
    let state = &snap.backends[0].servers;
    let input = BalanceInput::new(src(1));
    assert!(state[0].try_acquire(1));
    for _ in 0..3 {
        assert_eq!(server(&snap, &input), 1);
    }
    assert!(state[1].try_acquire(1));
    assert!(!state[1].try_acquire(1), "maxconn is a hard limit");
    assert_eq!(pick(&snap, &input), Pick::Queue(None));
    // Hashing: the key's own server's queue.
    let snap = snapshot("source", &[("a", 1, false, 1), ("b", 1, false, 1)]);
    let state = &snap.backends[0].servers;
    let owner = server(&snap, &input);
    assert!(state[owner].try_acquire(1));
    assert_eq!(pick(&snap, &input), Pick::Queue(Some(owner)));
}

#[test]
fn redispatch_excludes_the_failed_server() {
    for balance in ["roundrobin", "source", "leastconn"] {
        let snap = snapshot(balance, &equal(3));
        let mut input = BalanceInput::new(src(9));
        let failed = server(&snap, &input);
        input.exclude = Some(failed);
        for _ in 0..10 {
            assert_ne!(server(&snap, &input), failed, "{balance}");
        }
    }
    let snap = snapshot("roundrobin", &equal(1));
    let mut input = BalanceInput::new(src(9));
    input.exclude = Some(0);
    assert_eq!(pick(&snap, &input), Pick::NoServer);
}

#[test]
fn no_servers_means_no_server() {
    let snap = snapshot("roundrobin", &[]);
    assert_eq!(pick(&snap, &BalanceInput::new(src(1))), Pick::NoServer);
    let snap = snapshot("source", &[("a", 0, false, 0)]);
    assert_eq!(pick(&snap, &BalanceInput::new(src(1))), Pick::NoServer);
}

/// Every hashing algorithm spreads distinct keys by weight (±5%) and moves
/// about one n-th of them when one of n servers goes down.
#[test]
fn every_hashing_algorithm_is_weighted_and_consistent() {
    let weighted: &[S] = &[("a", 1, false, 0), ("b", 2, false, 0), ("c", 3, false, 0)];
    let keys = 24_000u32;
    let requests: Vec<request::Parts> = (0..keys)
        .map(|i| get(&format!("/k/{i}?id={i}"), &[("x-user", &format!("u{i}"))]))
        .collect();
    let payloads: Vec<Vec<u8>> = (0..keys)
        .map(|i| rdp::connection_request(Some(&format!("user{i}"))))
        .collect();
    for balance in ["source", "uri", "url_param id", "hdr(x-user)", "rdp-cookie"] {
        let input = |i: u32| {
            let mut input = BalanceInput::new(src(i));
            if balance == "rdp-cookie" {
                input.src = src(1);
                input.payload = &payloads[i as usize];
            } else {
                input.request = Some(&requests[i as usize]);
            }
            input
        };
        let snap = snapshot(balance, weighted);
        let counts = spread(keys, |i| pick(&snap, &input(i)));
        assert_shares(&counts, &[1, 2, 3], keys);

        let snap = snapshot(balance, &equal(6));
        let before: Vec<usize> = (0..keys).map(|i| server(&snap, &input(i))).collect();
        snap.backends[0].servers[2].set_admin(AdminState::Maint);
        let after: Vec<usize> = (0..keys).map(|i| server(&snap, &input(i))).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let share = moved as f64 / f64::from(keys);
        // The server's own sixth must move; little else may.
        assert!((0.15..=0.22).contains(&share), "{balance}: {share}");
        assert!(after.iter().all(|&s| s != 2), "{balance}");
    }
}

#[test]
fn hdr_host_reads_the_http2_authority() {
    let snap = snapshot("hdr(host)", &equal(5));
    for i in 0..50 {
        let host = format!("site{i}.example");
        let h1 = get("/", &[("host", &host)]);
        let h2 = get(&format!("https://{host}/"), &[]);
        let at = |r: &request::Parts| {
            let mut input = BalanceInput::new(src(1));
            input.request = Some(r);
            server(&snap, &input)
        };
        assert_eq!(at(&h1), at(&h2), "{host}");
    }
}

#[test]
fn main_domain_is_haproxys_use_domain_only_cut() {
    for (host, domain) in [
        ("www.haproxy.org", "haproxy"),
        ("haproxy.org", "haproxy"),
        ("a.b.example.com:8080", "example"),
        ("localhost", "localhost"),
        ("localhost:80", "localhost:80"),
        ("", ""),
        (".org", ""),
    ] {
        assert_eq!(main_domain(host.as_bytes()), domain.as_bytes(), "{host}");
    }
}

#[test]
fn hdr_use_domain_only_hashes_the_main_domain() {
    let snap = snapshot("hdr(host) use_domain_only", &equal(5));
    let by_host = |host: &str| {
        let request = get("/", &[("host", host)]);
        server(
            &snap,
            &BalanceInput {
                request: Some(&request),
                ..BalanceInput::new(src(1))
            },
        )
    };
    // Every host of one domain lands together; the domains spread.
    for domain in ["alpha", "bravo", "charlie", "delta"] {
        let first = by_host(&format!("www.{domain}.com"));
        for host in [
            format!("{domain}.com"),
            format!("img.{domain}.com"),
            format!("x.{domain}.org:80"),
        ] {
            assert_eq!(by_host(&host), first, "{host}");
        }
    }
    let servers: std::collections::HashSet<usize> = (0..40)
        .map(|i| by_host(&format!("www.site{i}.com")))
        .collect();
    assert!(servers.len() >= 4, "domains spread over {servers:?}");
    // Without the option the full host is the key: subdomains spread.
    let whole = snapshot("hdr(host)", &equal(5));
    let subdomains: std::collections::HashSet<usize> = (0..40)
        .map(|i| {
            let request = get("/", &[("host", &format!("h{i}.alpha.com"))]);
            server(
                &whole,
                &BalanceInput {
                    request: Some(&request),
                    ..BalanceInput::new(src(1))
                },
            )
        })
        .collect();
    assert!(subdomains.len() >= 4, "{subdomains:?}");
}

#[test]
fn url_param_check_post_reads_the_first_bytes_of_a_form_body() {
    let form = "application/x-www-form-urlencoded";
    let post = |uri: &str, content_type: &str| {
        let mut request = get(uri, &[("content-type", content_type)]);
        request.method = hyper::http::Method::POST;
        request
    };
    let snap = snapshot("url_param user check_post 32", &equal(5));
    let choice = |request: &request::Parts, body: &[u8]| {
        hash_key(
            &snap.backend(0).unwrap().0.balance,
            &BalanceInput {
                request: Some(request),
                body,
                ..BalanceInput::new(src(1))
            },
        )
    };
    let plain = post("/login", form);
    // The body's parameter is the key; the query's wins when both exist.
    assert_eq!(choice(&plain, b"a=1&user=bob&b=2"), Some(b"bob".to_vec()));
    assert_eq!(
        choice(&post("/login?user=ann", form), b"user=bob"),
        Some(b"ann".to_vec())
    );
    assert_eq!(
        choice(
            &post("/", "application/x-www-form-urlencoded; charset=utf-8"),
            b"user=eve"
        ),
        Some(b"eve".to_vec())
    );
    // Beyond max_wait (32 bytes), another content type, another method,
    // an empty value: not found, round robin.
    let late = format!("pad={}&user=bob", "x".repeat(40));
    assert_eq!(choice(&plain, late.as_bytes()), None);
    assert_eq!(choice(&post("/", "application/json"), b"user=bob"), None);
    let mut put = post("/", form);
    put.method = hyper::http::Method::PUT;
    assert_eq!(choice(&put, b"user=bob"), None);
    assert_eq!(choice(&plain, b"user=&x=1"), None);
    // A multi-byte character cut at the limit does not hide the parameter.
    let cut = "user=bob&n=\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}";
    assert_eq!(choice(&plain, cut.as_bytes()), Some(b"bob".to_vec()));
    // What the proxy must wait for before choosing.
    let balance = &snap.backend(0).unwrap().0.balance;
    assert_eq!(body_wanted(balance, &plain), Some(32));
    assert_eq!(body_wanted(balance, &post("/?user=a", form)), None);
    assert_eq!(
        body_wanted(balance, &get("/", &[("content-type", form)])),
        None
    );
    let without = snapshot("url_param user", &equal(5));
    assert_eq!(
        body_wanted(&without.backend(0).unwrap().0.balance, &plain),
        None
    );
    // Without check_post the body is never read.
    assert_eq!(
        hash_key(
            &without.backend(0).unwrap().0.balance,
            &BalanceInput {
                request: Some(&plain),
                body: b"user=bob",
                ..BalanceInput::new(src(1))
            }
        ),
        None
    );
}
