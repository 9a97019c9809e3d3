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
