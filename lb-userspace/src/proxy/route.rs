//! The two pure decisions of the request path: which backend (`route`),
//! then which server (`choose`). No I/O: both take the snapshot and the
//! request head and return a decision; `route` applies the header edits of
//! the rules it runs to the request head it is given.
use crate::proxy::acl::{ConnInfo, RequestView};
use crate::proxy::balance::{self, BalanceInput, Pick};
use crate::proxy::config::BackendId;
use crate::proxy::rules::{apply_request_rules, apply_response_rules, RequestVerdict};
use crate::proxy::snapshot::{FrontendId, Snapshot};
use hyper::http::{request, response};

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    UseBackend(BackendId),
    /// `http-request deny`: answer with this status.
    Deny {
        status: u16,
    },
    /// `http-request redirect`: answer `code` with `Location: location`.
    Redirect {
        code: u16,
        location: String,
    },
    /// No `use_backend` matched and there is no `default_backend`: 503.
    NoBackend,
}

/// HTTP mode: the frontend's `http-request` rules, its `use_backend` rules
/// (first match wins) or `default_backend`, then the chosen backend's own
/// `http-request` rules. Header edits are applied to `request`.
pub fn route(
    snapshot: &Snapshot,
    frontend: FrontendId,
    conn: &ConnInfo,
    request: &mut request::Parts,
) -> Decision {
    let Some(fe) = snapshot.frontend(frontend) else {
        return Decision::NoBackend;
    };
    match apply_request_rules(&fe.http_request, &fe.acls, conn, request) {
        RequestVerdict::Continue => {}
        RequestVerdict::Deny { status } => return Decision::Deny { status },
        RequestVerdict::Redirect { code, location } => {
            return Decision::Redirect { code, location }
        }
    }
    let view = RequestView::request(conn, request);
    let Some(backend) = select_backend(snapshot, frontend, &view) else {
        return Decision::NoBackend;
    };
    if let Some((be, _)) = snapshot.backend(backend) {
        match apply_request_rules(&be.http_request, &be.acls, conn, request) {
            RequestVerdict::Continue => {}
            RequestVerdict::Deny { status } => return Decision::Deny { status },
            RequestVerdict::Redirect { code, location } => {
                return Decision::Redirect { code, location }
            }
        }
    }
    Decision::UseBackend(backend)
}

/// TCP mode: `use_backend` rules on connection facts, or `default_backend`.
pub fn route_tcp(snapshot: &Snapshot, frontend: FrontendId, conn: &ConnInfo) -> Decision {
    match select_backend(snapshot, frontend, &RequestView::connection(conn)) {
        Some(backend) => Decision::UseBackend(backend),
        None => Decision::NoBackend,
    }
}

fn select_backend(
    snapshot: &Snapshot,
    frontend: FrontendId,
    view: &RequestView,
) -> Option<BackendId> {
    let fe = snapshot.frontend(frontend)?;
    fe.use_backend
        .iter()
        .find(|rule| {
            rule.condition
                .as_ref()
                .is_none_or(|c| c.matches(&fe.acls, view))
        })
        .map(|rule| rule.backend)
        .or(fe.default_backend)
}

/// `http-response` rules: the backend's first, then the frontend's (as
/// HAProxy). Header edits are applied to `response`.
pub fn apply_response(
    snapshot: &Snapshot,
    frontend: FrontendId,
    backend: Option<BackendId>,
    conn: &ConnInfo,
    response: &mut response::Parts,
) {
    if let Some((be, _)) = backend.and_then(|b| snapshot.backend(b)) {
        apply_response_rules(&be.http_response, &be.acls, conn, response);
    }
    if let Some(fe) = snapshot.frontend(frontend) {
        apply_response_rules(&fe.http_response, &fe.acls, conn, response);
    }
}

/// Picks a server of `backend` (see [`balance::choose`]).
pub fn choose(snapshot: &Snapshot, backend: BackendId, input: &BalanceInput) -> Pick {
    match snapshot.backend(backend) {
        Some((config, runtime)) => balance::choose(config, runtime, input),
        None => Pick::NoServer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::parse_str;
    use crate::proxy::snapshot::StateRegistry;
    use hyper::http::Request;
    use std::{path::Path, sync::Arc};

    const CONFIG: &str = r#"
[defaults]
mode = "http"
[[frontend]]
name = "main"
bind = [":80"]
acl = ["url_static path_beg -i /static /images /javascript /stylesheets",
       "url_static path_end -i .jpg .gif .png .css .js",
       "api hdr(host) -i api.example.com"]
http_request = ["deny if { src 198.18.9.0/24 }",
                "redirect location /new code 302 if { path /old }",
                "set-header X-Via lbd"]
use_backend = ["static if url_static", "api if api !{ method DELETE }"]
default_backend = "app"
http_response = ["set-header X-Served-By lbd"]
[[frontend]]
name = "nodefault"
bind = [":81"]
use_backend = ["api if { path_beg /api }"]
[[frontend]]
name = "kube"
mode = "tcp"
bind = [":6443"]
use_backend = ["admin if { src 198.18.7.0/24 }"]
default_backend = "k8s"
[[backend]]
name = "app"
http_request = ["set-header X-Backend app", "deny deny_status 405 if { method TRACE }"]
http_response = ["set-header X-Order backend"]
[[backend]]
name = "static"
[[backend]]
name = "api"
[[backend]]
name = "k8s"
mode = "tcp"
[[backend]]
name = "admin"
mode = "tcp"
"#;

    fn snapshot() -> Snapshot {
        let config = parse_str(CONFIG, Path::new("t.toml")).unwrap();
        StateRegistry::new().build(Arc::new(config))
    }

    fn conn(src: &str) -> ConnInfo {
        ConnInfo::plain(
            format!("{src}:1234").parse().unwrap(),
            "198.18.0.100:80".parse().unwrap(),
        )
    }

    fn request(method: &str, uri: &str, host: &str) -> request::Parts {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap();
        request.into_parts().0
    }

    #[test]
    fn routes_like_the_seed() {
        let snap = snapshot();
        let backend = |name: &str| snap.config.backend_by_name(name).unwrap();
        let c = conn("198.18.0.1");
        let cases = [
            (
                "GET",
                "/static/a.css",
                "www",
                Decision::UseBackend(backend("static")),
            ),
            (
                "GET",
                "/logo.PNG",
                "www",
                Decision::UseBackend(backend("static")),
            ),
            (
                "GET",
                "/users",
                "API.example.com",
                Decision::UseBackend(backend("api")),
            ),
            (
                "DELETE",
                "/users",
                "api.example.com",
                Decision::UseBackend(backend("app")),
            ),
            ("GET", "/", "www", Decision::UseBackend(backend("app"))),
            (
                "GET",
                "/old",
                "www",
                Decision::Redirect {
                    code: 302,
                    location: "/new".into(),
                },
            ),
            ("TRACE", "/", "www", Decision::Deny { status: 405 }),
        ];
        for (method, uri, host, expected) in cases {
            let mut parts = request(method, uri, host);
            assert_eq!(
                route(&snap, 0, &c, &mut parts),
                expected,
                "{method} {uri} {host}"
            );
        }
        let mut parts = request("GET", "/", "www");
        assert_eq!(
            route(&snap, 0, &conn("198.18.9.4"), &mut parts),
            Decision::Deny { status: 403 }
        );
    }

    #[test]
    fn frontend_then_backend_rules_edit_the_request() {
        let snap = snapshot();
        let mut parts = request("GET", "/", "www");
        route(&snap, 0, &conn("198.18.0.1"), &mut parts);
        assert_eq!(parts.headers["x-via"], "lbd");
        assert_eq!(parts.headers["x-backend"], "app");
        let mut parts = request("GET", "/static/x", "www");
        route(&snap, 0, &conn("198.18.0.1"), &mut parts);
        assert!(
            !parts.headers.contains_key("x-backend"),
            "only the chosen backend's rules run"
        );
    }

    #[test]
    fn no_match_without_default_is_no_backend() {
        let snap = snapshot();
        let mut parts = request("GET", "/", "www");
        assert_eq!(
            route(&snap, 1, &conn("198.18.0.1"), &mut parts),
            Decision::NoBackend
        );
        let mut parts = request("GET", "/api/x", "www");
        assert_eq!(
            route(&snap, 1, &conn("198.18.0.1"), &mut parts),
            Decision::UseBackend(2)
        );
        assert_eq!(
            route(&snap, 99, &conn("198.18.0.1"), &mut parts),
            Decision::NoBackend
        );
    }

    #[test]
    fn tcp_frontends_route_on_connection_facts() {
        let snap = snapshot();
        let k8s = snap.config.backend_by_name("k8s").unwrap();
        let admin = snap.config.backend_by_name("admin").unwrap();
        assert_eq!(
            route_tcp(&snap, 2, &conn("198.18.7.5")),
            Decision::UseBackend(admin)
        );
        assert_eq!(
            route_tcp(&snap, 2, &conn("198.18.8.5")),
            Decision::UseBackend(k8s)
        );
    }

    #[test]
    fn response_rules_backend_first_then_frontend() {
        let snap = snapshot();
        let mut response = hyper::http::Response::builder()
            .status(200)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        apply_response(&snap, 0, Some(0), &conn("198.18.0.1"), &mut response);
        assert_eq!(response.headers["x-served-by"], "lbd");
        assert_eq!(response.headers["x-order"], "backend");
    }

    #[test]
    fn choose_goes_through_the_snapshot() {
        let snap = snapshot();
        let input = BalanceInput::new("198.18.0.1".parse().unwrap());
        // "app" has no servers: 503.
        assert_eq!(choose(&snap, 0, &input), Pick::NoServer);
        assert_eq!(choose(&snap, 42, &input), Pick::NoServer);
    }
}
