use super::*;
use hyper::http::Request;

fn conn() -> ConnInfo {
    ConnInfo::plain(
        "198.18.9.7:40000".parse().unwrap(),
        "198.18.0.100:80".parse().unwrap(),
    )
}

fn req(uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = Request::builder().uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn rules(lines: &[&str], acls: &mut AclSet) -> Vec<RequestRule> {
    lines
        .iter()
        .map(|l| RequestRule::parse(l, acls).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn values(parts: &request::Parts, name: &str) -> Vec<String> {
    parts
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn header_edits_apply_in_order_and_later_rules_see_them() {
    let mut acls = AclSet::default();
    let rules = rules(
        &[
            "set-header X-Via lbd",
            "add-header X-A one",
            "add-header X-A two",
            "del-header X-Secret",
            "set-header X-Seen yes if { hdr(x-via) lbd }",
            "set-header X-Client \"%[src]:%[dst_port] 100%%\"",
            "set-header X-Host %[hdr(host)]",
            "add-header X-Never x if { path /other }",
        ],
        &mut acls,
    );
    let mut parts = req(
        "/",
        &[
            ("x-via", "old"),
            ("x-secret", "s"),
            ("x-secret", "t"),
            ("host", "h.example"),
        ],
    );
    assert_eq!(
        apply_request_rules(&rules, &acls, &conn(), &mut parts),
        RequestVerdict::Continue
    );
    assert_eq!(values(&parts, "x-via"), ["lbd"]);
    assert_eq!(values(&parts, "x-a"), ["one", "two"]);
    assert!(values(&parts, "x-secret").is_empty());
    assert_eq!(values(&parts, "x-seen"), ["yes"]);
    assert_eq!(values(&parts, "x-client"), ["198.18.9.7:80 100%"]);
    assert_eq!(values(&parts, "x-host"), ["h.example"]);
    assert!(values(&parts, "x-never").is_empty());
}

#[test]
fn deny_and_redirect_stop_evaluation() {
    let mut acls = AclSet::default();
    acls.add_line("blocked src 198.18.9.0/24").unwrap();
    let rules = rules(
        &[
            "redirect location /new code 301 if { path /old }",
            "deny if blocked { path_beg /admin }",
            "deny deny_status 429 if { hdr(x-flood) -m found }",
            "set-header X-After yes",
        ],
        &mut acls,
    );
    let c = conn();
    let mut old = req("/old?q=1", &[]);
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut old),
        RequestVerdict::Redirect {
            code: 301,
            location: "/new".into()
        }
    );
    assert!(
        values(&old, "x-after").is_empty(),
        "rules after a redirect do not run"
    );
    let mut admin = req("/admin/x", &[]);
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut admin),
        RequestVerdict::Deny { status: 403 }
    );
    let mut flood = req("/", &[("x-flood", "1")]);
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut flood),
        RequestVerdict::Deny { status: 429 }
    );
    let mut fine = req("/", &[]);
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut fine),
        RequestVerdict::Continue
    );
    assert_eq!(values(&fine, "x-after"), ["yes"]);
}

#[test]
fn allow_ends_request_rules() {
    let mut acls = AclSet::default();
    let rules = rules(&["allow if { path /ok }", "deny"], &mut acls);
    let c = conn();
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut req("/ok", &[])),
        RequestVerdict::Continue
    );
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut req("/no", &[])),
        RequestVerdict::Deny { status: 403 }
    );
}

#[test]
fn redirect_locations() {
    let parse = |line: &str| match RequestRule::parse(line, &mut AclSet::default())
        .unwrap()
        .action
    {
        RequestAction::Redirect(r) => r,
        other => panic!("{other:?}"),
    };
    let r = req("/a/b?x=1", &[("host", "www.example.com")]);
    let cases = [
        (
            "redirect location https://example.com/",
            "https://example.com/",
            302,
        ),
        (
            "redirect prefix https://new.example.com code 308",
            "https://new.example.com/a/b?x=1",
            308,
        ),
        ("redirect prefix /v2 drop-query", "/v2/a/b", 302),
        (
            "redirect prefix /v2 drop-query append-slash code 303",
            "/v2/a/b/",
            303,
        ),
        (
            "redirect scheme https code 301",
            "https://www.example.com/a/b?x=1",
            301,
        ),
        ("redirect prefix /", "/a/b?x=1", 302),
    ];
    let c = conn();
    let view = |r| RequestView::request(&c, r);
    for (line, location, code) in cases {
        let redirect = parse(line);
        assert_eq!(
            redirect.location(&view(&r), &r).as_deref(),
            Some(location),
            "{line}"
        );
        assert_eq!(redirect.code, code, "{line}");
    }
}

#[test]
fn redirect_sample_expressions() {
    let parse = |line: &str| match RequestRule::parse(line, &mut AclSet::default())
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .action
    {
        RequestAction::Redirect(r) => r,
        other => panic!("{other:?}"),
    };
    let c = conn();
    let r = req("/a/b?x=1&lang=ko", &[("host", "www.example.com")]);
    let bare = req("/a", &[]);
    let cases: &[(&str, &request::Parts, Option<&str>)] = &[
        (
            "redirect location https://%[hdr(host)]%[path]",
            &r,
            Some("https://www.example.com/a/b"),
        ),
        (
            "redirect location /%[url_param(lang)]/home?from=%[src]",
            &r,
            Some("/ko/home?from=198.18.9.7"),
        ),
        (
            "redirect prefix https://%[hdr(host)]:8443",
            &r,
            Some("https://www.example.com:8443/a/b?x=1&lang=ko"),
        ),
        ("redirect location 100%%/%[dst_port]", &r, Some("100%/80")),
        // An absent sample renders as nothing, as in HAProxy.
        (
            "redirect location https://%[hdr(host)]/x",
            &bare,
            Some("https:///x"),
        ),
        ("redirect prefix %[hdr(host)]", &bare, Some("/a")),
        // ignore-empty: an empty result skips the rule.
        ("redirect location %[hdr(host)] ignore-empty", &bare, None),
        (
            "redirect location %[hdr(host)] ignore-empty",
            &r,
            Some("www.example.com"),
        ),
        ("redirect prefix %[hdr(x-none)] ignore-empty", &bare, None),
    ];
    for (line, request, location) in cases {
        let redirect = parse(line);
        assert_eq!(
            redirect
                .location(&RequestView::request(&c, request), request)
                .as_deref(),
            *location,
            "{line}"
        );
    }
    // Through the rule engine: a skipped redirect lets later rules run.
    let mut acls = AclSet::default();
    let rules = rules(
        &[
            "redirect location %[hdr(x-to)] code 307 ignore-empty",
            "deny deny_status 404",
        ],
        &mut acls,
    );
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut req("/", &[("x-to", "/there")])),
        RequestVerdict::Redirect {
            code: 307,
            location: "/there".into()
        }
    );
    assert_eq!(
        apply_request_rules(&rules, &acls, &c, &mut req("/", &[])),
        RequestVerdict::Deny { status: 404 }
    );
}

#[test]
fn bad_rules_are_explained() {
    let cases: &[(&str, &str)] = &[
        ("deny deny_status 999", "not one of"),
        ("deny deny_status x", "not a status code"),
        ("deny now", "expected \"deny [deny_status <code>]\""),
        ("redirect location", "expected \"redirect"),
        ("redirect elsewhere /x", "unknown redirect type"),
        ("redirect location /x code 200", "not one of"),
        ("redirect location /x keep-query", "unknown redirect option"),
        (
            "redirect scheme https ignore-empty",
            "unknown redirect option",
        ),
        ("redirect location %[nope]", "unknown fetch"),
        ("redirect prefix /%[path", "without its closing"),
        ("redirect location %ci", "only %[fetch]"),
        (
            "redirect location \"/a\x7fb\"",
            "cannot be a Location header value",
        ),
        ("set-header X-A", "expected \"set-header <name> <value>\""),
        ("set-header X-A a b", "quote a value"),
        ("set-header X:A a", "not a valid header name"),
        ("set-header X-A %[nope]", "unknown fetch"),
        ("set-header X-A %[src", "without its closing"),
        ("set-header X-A %ci", "only %[fetch]"),
        ("set-header X-A \"a\x01b\"", "not a valid header value"),
        ("del-header", "expected \"del-header <name>\""),
        ("tarpit", "unknown action"),
        ("deny if nope", "unknown acl"),
        ("", "empty rule"),
    ];
    for (line, message) in cases {
        let err = RequestRule::parse(line, &mut AclSet::default()).unwrap_err();
        assert!(err.contains(message), "{line}: {err}");
    }
    let err =
        UseBackend::parse("app extra if x", &mut AclSet::default(), &|_| Some(0)).unwrap_err();
    assert!(err.contains("expected"), "{err}");
    let err = UseBackend::parse("nope", &mut AclSet::default(), &|_| None).unwrap_err();
    assert!(err.contains("unknown backend \"nope\""), "{err}");
    let err =
        UseBackend::parse("be_%[hdr(host)]", &mut AclSet::default(), &|_| Some(0)).unwrap_err();
    assert!(err.contains("dynamic"), "{err}");
}

#[test]
fn response_rules_edit_headers_by_status() {
    let mut acls = AclSet::default();
    let rules: Vec<ResponseRule> = [
        "set-header X-Served-By lbd",
        "del-header Server",
        "add-header X-Error yes if { status 500:599 }",
    ]
    .iter()
    .map(|l| ResponseRule::parse(l, &mut acls).unwrap())
    .collect();
    for (status, error) in [(200, false), (503, true)] {
        let mut response = hyper::http::Response::builder()
            .status(status)
            .header("server", "nginx")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        apply_response_rules(&rules, &acls, &conn(), &mut response);
        assert_eq!(response.headers["x-served-by"], "lbd");
        assert!(!response.headers.contains_key("server"));
        assert_eq!(response.headers.contains_key("x-error"), error);
    }
}
