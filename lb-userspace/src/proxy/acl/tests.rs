use super::*;
use hyper::http::{request, Request};

fn conn(src: &str) -> ConnInfo {
    let ip: std::net::IpAddr = src.parse().unwrap();
    ConnInfo::plain(
        std::net::SocketAddr::new(ip, 40000),
        "198.18.0.100:80".parse().unwrap(),
    )
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// Evaluates `condition` ("if ...") over named `acls` for a request.
fn eval(acls: &[&str], condition: &str, request: &request::Parts, conn: &ConnInfo) -> bool {
    let mut set = AclSet::default();
    for line in acls {
        set.add_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let words = split_words(condition).unwrap();
    let cond = Condition::parse(&words, &mut set).unwrap_or_else(|e| panic!("{condition}: {e}"));
    cond.matches(&set, &RequestView::request(conn, request))
}

const SEED: &[&str] = &[
    "url_static path_beg -i /static /images /javascript /stylesheets",
    "url_static path_end -i .jpg .gif .png .css .js",
];

#[test]
fn the_seed_static_split() {
    let c = conn("198.18.0.1");
    let cases = [
        ("/static/app.js", true),
        ("/IMAGES/a", true),
        ("/app/logo.PNG", true),
        ("/app/logo.png?v=1", true),
        ("/api/users", false),
        ("/staticky", true), // path_beg is a prefix, as in HAProxy
        ("/x.jsx", false),
    ];
    for (path, expected) in cases {
        let r = req("GET", path, &[]);
        assert_eq!(eval(SEED, "if url_static", &r, &c), expected, "{path}");
        assert_eq!(eval(SEED, "unless url_static", &r, &c), !expected, "{path}");
        assert_eq!(eval(SEED, "if !url_static", &r, &c), !expected, "{path}");
    }
}

#[test]
fn fetches_and_matchers() {
    let c = conn("198.18.5.7");
    let r = req(
        "POST",
        "/api/v1/users.json?id=42&debug&lang=en",
        &[
            ("host", "www.Example.com:8080"),
            ("x-list", "a, b"),
            ("x-list", "c"),
            ("content-length", "12"),
        ],
    );
    let cases: &[(&str, bool)] = &[
        ("path /api/v1/users.json", true),
        ("path /api", false),
        ("path_beg /api/", true),
        ("path_end .json", true),
        ("path_sub v1/us", true),
        ("path_reg ^/api/v[0-9]+/", true),
        ("path_reg -i ^/API/", true),
        ("path_reg ^/API/", false),
        ("path_dir v1", true),
        ("path_dir v", false),
        ("path_dir /api/v1", true),
        ("url /api/v1/users.json?id=42&debug&lang=en", true),
        ("url_beg /api/v1/users.json?id=", true),
        ("url_sub lang=en", true),
        ("url_param(id) 42", true),
        ("url_param(id) 4", false),
        ("url_param(debug) -m found", true),
        ("url_param(nope) -m found", false),
        ("urlp(lang) -i EN", true),
        ("hdr(host) www.Example.com:8080", true),
        ("hdr(host) -i www.example.com:8080", true),
        ("hdr(host) www.example.com:8080", false),
        (
            "hdr(host) -i a.example b.example WWW.example.COM:8080 c.example",
            true,
        ),
        ("hdr(host) a.example b.example c.example", false),
        ("dst_port -m str 443 80", true),
        ("hdr_beg(host) -i www.", true),
        ("hdr_end(host) :8080", true),
        ("hdr_sub(host) xample", true),
        ("hdr_dom(host) -i example.com", true),
        ("hdr_dom(host) -i example", true),
        ("hdr_dom(host) -i xample.com", false),
        ("hdr_reg(host) ^www\\.", true),
        ("hdr(x-list) b", true),
        ("hdr(x-list) c", true),
        ("hdr(x-list) \"a, b\"", false),
        ("hdr_cnt(x-list) 3", true),
        ("hdr_cnt(x-list) gt 3", false),
        ("hdr_cnt(x-missing) eq 0", true),
        ("hdr(x-missing) -m found", false),
        ("hdr(host) -m found", true),
        ("hdr(content-length) -m int gt 10", true),
        ("hdr(host) -m len 20", true),
        ("method POST", true),
        ("method GET HEAD", false),
        ("method -i post", true),
        ("src 198.18.0.0/16", true),
        ("src 198.18.5.7", true),
        ("src 10.0.0.0/8 fd00::/8", false),
        ("src ::ffff:198.18.0.0/112", true),
        ("dst 198.18.0.100", true),
        ("dst_port 80", true),
        ("dst_port 1:79", false),
        ("dst_port ge 80", true),
        ("dst_port ne 80", false),
        ("always_true", true),
        ("always_false", false),
        ("TRUE", true),
        ("ssl_fc", false),
        ("ssl_fc_sni -m found", false),
        ("req.ver 1.1", true),
        ("path -m beg /api", true),
        ("path -m sub users", true),
        ("path -m end -i .JSON", true),
        ("query -m sub debug", true),
        ("path_len gt 5", true),
        ("path_len 1:5", false),
    ];
    for (test, expected) in cases {
        let words = split_words(test).unwrap();
        let acl = AclTest::parse(&words).unwrap_or_else(|e| panic!("{test}: {e}"));
        assert_eq!(
            acl.matches(&RequestView::request(&c, &r)),
            *expected,
            "{test}"
        );
    }
}

#[test]
fn conditions_and_or_negation_anonymous() {
    let acls = &[
        "api path_beg /api",
        "admin path_beg /admin",
        "local src 127.0.0.0/8",
        "local src ::1",
    ];
    let outside = conn("198.18.0.9");
    let inside = conn("127.0.0.1");
    let loopback6 = conn("::1");
    let api = req("GET", "/api/x", &[]);
    let admin = req("GET", "/admin", &[]);
    let other = req("GET", "/", &[]);
    let cases: &[(&str, &request::Parts, &ConnInfo, bool)] = &[
        ("if api", &api, &outside, true),
        ("if api local", &api, &outside, false),
        ("if api local", &api, &inside, true),
        ("if admin !local", &admin, &outside, true),
        ("if admin !local", &admin, &loopback6, false),
        ("if admin ! local", &admin, &inside, false),
        ("if api or admin", &admin, &outside, true),
        ("if api || admin", &other, &outside, false),
        ("if api local or admin", &api, &outside, false),
        ("if api local or admin", &admin, &outside, true),
        ("unless api or admin", &other, &outside, true),
        ("if { path_beg /adm }", &admin, &outside, true),
        (
            "if { path_beg /adm } !{ src 198.18.0.0/16 }",
            &admin,
            &outside,
            false,
        ),
        ("if !{ path / }", &other, &outside, false),
        (
            "if { method GET } { path / } or api",
            &other,
            &outside,
            true,
        ),
        ("if LOCALHOST", &api, &inside, true),
        ("if METH_GET", &api, &inside, true),
        ("if METH_POST", &api, &inside, false),
        ("if HTTP_1.1 HTTP_URL_SLASH", &api, &inside, true),
        ("if FALSE or TRUE", &api, &inside, true),
    ];
    for (condition, request, conn, expected) in cases {
        assert_eq!(
            eval(acls, condition, request, conn),
            *expected,
            "{condition}"
        );
    }
}

#[test]
fn bad_acls_and_conditions_are_explained() {
    let bad_lines: &[(&str, &str)] = &[
        ("x nope /a", "unknown fetch"),
        ("x path_beg", "needs at least one value"),
        ("x path_reg (", "bad regex"),
        ("x src 10.0.0.0/33", "not an address"),
        ("x src bogus", "not an address"),
        ("x dst_port abc", "not an integer"),
        ("x dst_port 9:1", "empty"),
        ("x dst_port lt", "needs exactly one value"),
        ("x path -m wat /", "unknown match method"),
        ("x path -z /", "unknown flag"),
        (
            "x path -f /nonexistent/list",
            "pattern file /nonexistent/list: No such file",
        ),
        ("x path -f", "-f needs a file name"),
        ("x hdr /", "needs a header name"),
        ("x hdr(a:b) /", "not a valid header name"),
        ("x hdr(a b) /", "missing ')'"),
        ("x hdr(host,2) a", "occurrence"),
        ("x url_param /", "needs a parameter name"),
        ("x always_true yes", "takes no value"),
        ("x path(a) /", "takes no argument"),
        ("bad/name path /", "not a valid acl name"),
        ("x path \"unterminated", "unmatched"),
    ];
    for (line, message) in bad_lines {
        let err = AclSet::default().add_line(line).unwrap_err();
        assert!(err.contains(message), "{line}: {err}");
    }
    let mut set = AclSet::default();
    set.add_line("a path /").unwrap();
    let bad_conditions: &[(&str, &str)] = &[
        ("if nope", "unknown acl \"nope\""),
        ("when a", "expected \"if\" or \"unless\""),
        ("if", "at least one acl"),
        ("if a or", "at least one acl"),
        ("if or a", "needs a term on each side"),
        ("if !", "at the end"),
        ("if !!a", "twice"),
        ("if { path /", "closing"),
        ("if a }", "without an opening"),
        ("if { nope x }", "unknown fetch"),
    ];
    for (condition, message) in bad_conditions {
        let words = split_words(condition).unwrap();
        let err = Condition::parse(&words, &mut set).unwrap_err();
        assert!(err.contains(message), "{condition}: {err}");
    }
}

#[test]
fn sides_tell_what_a_condition_needs() {
    let mut set = AclSet::default();
    set.add_line("net src 10.0.0.0/8").unwrap();
    set.add_line("p path /").unwrap();
    let side = |c: &str, set: &mut AclSet| {
        let words = split_words(c).unwrap();
        Condition::parse(&words, set).unwrap().side(set)
    };
    assert_eq!(side("if net { dst_port 80 }", &mut set), Side::Connection);
    assert_eq!(side("if net p", &mut set), Side::Request);
    assert_eq!(side("if { status 500 }", &mut set), Side::Response);
}

#[test]
fn tcp_connections_match_connection_facts_only() {
    let c = conn("198.18.0.1");
    let view = RequestView::connection(&c);
    let test = |t: &str| {
        AclTest::parse(&split_words(t).unwrap())
            .unwrap()
            .matches(&view)
    };
    assert!(test("src 198.18.0.0/24"));
    assert!(test("dst_port 80"));
    // HTTP fetches have no sample without a request: never true.
    assert!(!test("path -m found"));
    assert!(!test("hdr(host) -m found"));
}

#[test]
fn response_fetches() {
    let c = conn("198.18.0.1");
    let response = hyper::http::Response::builder()
        .status(503)
        .header("server", "nginx")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let view = RequestView {
        conn: &c,
        request: None,
        response: Some(&response),
    };
    let test = |t: &str| {
        AclTest::parse(&split_words(t).unwrap())
            .unwrap()
            .matches(&view)
    };
    assert!(test("status 500:599"));
    assert!(!test("status 200"));
    assert!(test("res.hdr(server) -i NGINX"));
}

/// Lines built from HAProxy's own vocabulary, shuffled: every one either
/// compiles or is refused with a message; none panics, and whatever
/// compiles evaluates.
#[test]
fn random_lines_never_panic() {
    const WORDS: &[&str] = &[
        "if",
        "unless",
        "!",
        "{",
        "}",
        "or",
        "||",
        "a",
        "b",
        "path",
        "path_beg",
        "path_reg",
        "hdr(host)",
        "hdr_dom(host)",
        "hdr(",
        "hdr()",
        "url_param(id)",
        "src",
        "dst_port",
        "-i",
        "-m",
        "reg",
        "beg",
        "found",
        "int",
        "ip",
        "len",
        "--",
        "-f",
        "/x",
        "(",
        "[a-",
        "\"",
        "'",
        "\\",
        "10.0.0.0/8",
        "::1",
        "gt",
        "5",
        "1:2",
        ":",
        "deny",
        "deny_status",
        "403",
        "redirect",
        "location",
        "prefix",
        "scheme",
        "code",
        "301",
        "set-header",
        "X-A",
        "%[src]",
        "%[",
        "%",
        "add-header",
        "del-header",
        "allow",
        "status",
        "method",
        "GET",
        "always_true",
        "TRUE",
        "METH_GET",
        "",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let c = conn("198.18.0.1");
    let request = req("GET", "/x?id=1", &[("host", "a.example")]);
    for _ in 0..20_000 {
        let len = (next() % 8) as usize;
        let line: Vec<&str> = (0..len)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        let line = line.join(" ");
        let mut set = AclSet::default();
        let _ = set.add_line("a path /x");
        let _ = set.add_line(&line);
        let _ = set.add_line(&format!("b {line}"));
        if let Ok(words) = split_words(&line) {
            if let Ok(cond) = Condition::parse(&words, &mut set) {
                cond.matches(&set, &RequestView::request(&c, &request));
            }
        }
        let mut parts = request.clone();
        if let Ok(rule) = crate::proxy::rules::RequestRule::parse(&line, &mut set) {
            crate::proxy::rules::apply_request_rules(&[rule], &set, &c, &mut parts);
        }
        let _ = crate::proxy::balance::Balance::parse(&line);
    }
}

#[test]
fn http2_authority_is_the_host_header() {
    let c = conn("198.18.0.1");
    let mut h2 = req("GET", "https://api.example.com/v1", &[]);
    h2.version = hyper::http::Version::HTTP_2;
    let test = |t: &str, r: &request::Parts| {
        AclTest::parse(&split_words(t).unwrap())
            .unwrap()
            .matches(&RequestView::request(&c, r))
    };
    assert!(test("hdr(host) -i api.example.com", &h2));
    assert!(test("hdr_cnt(host) 1", &h2));
    assert!(test("path /v1", &h2));
    // A Host header, when present, is what counts.
    let h1 = req(
        "GET",
        "http://other.example/v1",
        &[("host", "api.example.com")],
    );
    assert!(test("hdr(host) api.example.com", &h1));
}
