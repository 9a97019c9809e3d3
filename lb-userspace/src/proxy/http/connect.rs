//! Getting a server connection for a request: [`crate::proxy::assign`]
//! (the balancer's choice, the queues, retries and redispatch) over a
//! pooled connection or a new one (`timeout connect`).
use super::{
    origin::ServerConn,
    service::Exchange,
    upstream::{self, ConnectError},
};
use crate::log::{SessionPhase, TerminationCause as Cause};
use crate::proxy::{
    assign::{assign_and_connect, AssignFailure, ConnectFailed, Request},
    balance::BalanceInput,
    config::{BackendId, HttpConnectionMode, ServerId},
    retry::FailureKind,
    stats::ms_at,
};
use hyper::http::request;

pub(super) struct Connected {
    pub(super) server: ServerId,
    pub(super) conn: ServerConn,
    pub(super) reused: bool,
    /// TLS to the server (`ssl`), for a fresh connection if the pooled one
    /// was closed; pooled under its SNI when that depends on the request.
    pub(super) tls: Option<crate::proxy::tls::client::TlsTarget>,
}

/// Why no server connection could be had.
pub(super) enum ConnectFailure {
    /// No usable server.
    NoServer,
    /// `timeout queue` expired waiting for a slot.
    QueueTimeout,
    /// Every attempt failed (`retries` exhausted).
    Exhausted(ConnectError),
}

impl ConnectFailure {
    pub(super) fn status(&self) -> u16 {
        // HAProxy answers 503 to all three.
        503
    }
    pub(super) fn cause(&self) -> Cause {
        match self {
            ConnectFailure::NoServer => Cause::ServerAbort,
            ConnectFailure::QueueTimeout => Cause::ServerTimeout,
            ConnectFailure::Exhausted(ConnectError::Timeout) => Cause::ServerTimeout,
            ConnectFailure::Exhausted(_) => Cause::ServerAbort,
        }
    }
    pub(super) fn phase(&self) -> SessionPhase {
        match self {
            ConnectFailure::QueueTimeout => SessionPhase::Queue,
            _ => SessionPhase::Connect,
        }
    }
}

/// Chooses a server and connects, as HAProxy: a full server or backend
/// queues the request (`timeout queue`); a failed connect is retried as
/// [`crate::proxy::retry`] says.
pub(super) async fn connect_with_retries(
    exchange: &mut Exchange,
    request: &request::Parts,
    post_body: &[u8],
    backend_id: BackendId,
    mode: HttpConnectionMode,
) -> Result<Connected, ConnectFailure> {
    let snapshot = exchange.snapshot.clone();
    let Some((backend, _)) = snapshot.backend(backend_id) else {
        return Err(ConnectFailure::NoServer);
    };
    // One Arc for the borrows below (the record is borrowed mutably).
    let context = exchange.context.clone();
    let (shared, info) = (&context.shared, &context.info);
    let assign = Request {
        snapshot: &snapshot,
        backend: backend_id,
        input: BalanceInput {
            src: info.src.ip(),
            request: Some(request),
            payload: &[],
            body: post_body,
            exclude: None,
        },
        backend_counters: exchange.backend.clone(),
        counters: &shared.counters,
        // The request's start, read once (a clock read per use costs).
        since: exchange.started,
    };
    let connect = |server: ServerId| {
        let config = &backend.servers[server];
        let tls = (config.tls.as_ref().filter(|t| t.ssl))
            .map(|t| t.target(Some(info), Some(request), config.address));
        let pool_key = (config.address, tls.as_ref().and_then(|t| t.pool_name()));
        let pooled = (mode == HttpConnectionMode::KeepAlive)
            .then(|| shared.pool.take(&pool_key))
            .flatten();
        let address = config.address;
        let timeout = backend.timeouts.connect;
        async move {
            let conn = match pooled {
                Some(conn) => return Ok((conn, true, tls)),
                // Boxed: a new connection's future (with the TLS handshake,
                // 1.4 KiB) would otherwise size every request's future,
                // which is moved whole, pooled connection or not.
                None => Box::pin(upstream::connect(address, tls.as_ref(), timeout)).await,
            };
            match conn {
                Ok(conn) => Ok((conn, false, tls)),
                Err(error) => Err(ConnectFailed {
                    kind: match error {
                        ConnectError::Timeout => FailureKind::Timeout,
                        _ => FailureKind::Error,
                    },
                    reused: false,
                    error,
                }),
            }
        }
    };
    let assigned = assign_and_connect(assign, &mut exchange.record, connect)
        .await
        .map_err(|failure| match failure {
            AssignFailure::NoServer => ConnectFailure::NoServer,
            AssignFailure::QueueTimeout => ConnectFailure::QueueTimeout,
            AssignFailure::Exhausted(error, _) => ConnectFailure::Exhausted(error),
        })?;
    let (conn, reused, tls) = assigned.connection;
    exchange
        .sessions
        .push(assigned.counters.open_session_at(ms_at(exchange.started)));
    exchange.server = Some(assigned.counters);
    exchange.slot = Some(assigned.slot);
    Ok(Connected {
        server: assigned.server,
        conn,
        reused,
        tls,
    })
}
