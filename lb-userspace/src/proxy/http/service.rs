//! The phases of one HTTP request, in order: load the snapshot, route
//! (http-request rules, use_backend), add the forwarding headers, choose a
//! server (queueing at its maxconn, retrying a failed connect, redispatching),
//! send the request over a pooled connection, apply the response rules, and
//! stream the response back; the access-log record is completed when the
//! response body ends. Bodies stream both ways.
use super::{
    body::{full, BodyEnd, IdleTimeout, Metered, ProxyBody},
    conn::{Activity, ConnContext, PendingLog, RequestActivity, ServerDeadline},
    connect::{connect_with_retries, Connected},
    errors::{error_response, redirect_response},
    h1::ClientUpgrade,
    headers::{self, Forwarding},
    origin::{self, Recycle, ResponseBody, SendError, Unsent},
    tunnel,
    upstream::{self, ConnectError},
};
use crate::log::{
    AccessRecord, RecordMode, SessionPhase, TerminationCause as Cause, TerminationState,
};
use crate::proxy::{
    balance, clock,
    config::HttpConnectionMode,
    route::{self, Decision},
    snapshot::{ServerSlot, Snapshot},
    stats::{ms_at, Counters, SessionGuard},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty};
use hyper::{http::Version, Request, Response, StatusCode};
use smallvec::SmallVec;
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{ready, Context, Poll},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// Everything that outlives the request head: the log record, counters,
/// the server slot, and the connection's activity mark.
pub(super) struct Exchange {
    pub(super) context: Arc<ConnContext>,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) record: AccessRecord,
    /// When the request head was complete (the service was called).
    pub(super) started: Instant,
    /// `Ti` + `TR` already spent before `started`, in ms.
    head_ms: u64,
    pub(super) frontend: Arc<Counters>,
    pub(super) backend: Option<Arc<Counters>>,
    pub(super) server: Option<Arc<Counters>>,
    /// The backend's and the server's (no allocation for the two).
    pub(super) sessions: SmallVec<[SessionGuard; 2]>,
    pub(super) slot: Option<ServerSlot>,
    /// The request body's bytes, once it has one.
    bytes_in: Option<Arc<AtomicU64>>,
    activity: RequestActivity,
    /// HTTP/2: streams share the connection, so `%B` is counted per
    /// stream (the head as HTTP/1.1 would write it, and the body).
    http2: bool,
    /// A 101: the record goes to the tunnel, which logs it when it closes.
    tunnel_log: Option<oneshot::Sender<PendingLog>>,
    /// The frontend logs requests (in the snapshot the request uses).
    logs: bool,
}

impl Exchange {
    fn counters(&self) -> impl Iterator<Item = &Arc<Counters>> {
        [
            Some(&self.frontend),
            self.backend.as_ref(),
            self.server.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// A response made here (deny, redirect, error).
    fn local(
        mut self,
        response: Response<ProxyBody>,
        cause: Cause,
        phase: SessionPhase,
    ) -> Response<ProxyBody> {
        self.record.termination = TerminationState::new(cause, phase);
        self.respond(response, None)
    }

    /// Sends `response` to the client; the record is finished when its
    /// body ends. `idle`: the server's inactivity timeout while streaming.
    fn respond(
        mut self,
        response: Response<ProxyBody>,
        idle: Option<Duration>,
    ) -> Response<ProxyBody> {
        let status = response.status().as_u16();
        self.record.status = Some(status);
        for counters in self.counters() {
            counters.count_response(status);
        }
        let (parts, body) = response.into_parts();
        // HTTP/2's `%B`: the head as HTTP/1.1 writes it, plus the body.
        let head = if self.http2 {
            crate::log::record::http1_head_len(&parts)
        } else {
            0
        };
        let data_counters = [self.backend.clone(), self.server.clone()];
        let on_data = move |n: u64| {
            for counters in data_counters.iter().flatten() {
                Counters::add(&counters.bytes_out, n);
            }
        };
        let body = if self.logs || self.tunnel_log.is_some() {
            let on_end = move |end: BodyEnd, bytes: u64| self.finish(end, head + bytes);
            Metered::new(body, idle, on_data, on_end).boxed_unsync()
        } else {
            // Nothing to log: the body's end only releases the server and
            // marks the connection idle, and the rest of the exchange goes
            // now (a closure of 600 bytes less, moved and boxed per request).
            let release = Release::from(self);
            Metered::new(body, idle, on_data, move |end: BodyEnd, _| {
                release.finish(end)
            })
            .boxed_unsync()
        };
        Response::from_parts(parts, body)
    }

    fn finish(mut self, end: BodyEnd, bytes: u64) {
        let server_side = [self.backend.as_ref(), self.server.as_ref()];
        match end {
            BodyEnd::Complete => {}
            BodyEnd::Abandoned => {
                self.record.termination =
                    TerminationState::new(Cause::ClientAbort, SessionPhase::Data)
            }
            BodyEnd::TimedOut | BodyEnd::Failed => {
                let cause = if end == BodyEnd::TimedOut {
                    Cause::ServerTimeout
                } else {
                    Cause::ServerAbort
                };
                self.record.termination = TerminationState::new(cause, SessionPhase::Data);
                for counters in server_side.into_iter().flatten() {
                    Counters::add(&counters.response_errors, 1);
                }
            }
        }
        self.record.bytes_to_client = bytes;
        // The head and body the client sent (the body alone for the counters).
        self.record.bytes_from_client = self
            .activity
            .bytes_from_client()
            .max(self.bytes_in.as_ref().map_or(0, |n| n.load(Relaxed)));
        let elapsed = clock::now().saturating_duration_since(self.started);
        self.record.timers.active = elapsed + Duration::from_millis(self.record_request_ms());
        self.record.timers.total = elapsed + Duration::from_millis(self.head_ms);
        // Sessions close before the slot frees (after the line is logged),
        // so a queued request never counts as the server's second session;
        // HAProxy's beconn and srv_conn at log time no longer count this
        // request either.
        self.sessions.clear();
        let record = std::mem::replace(
            &mut self.record,
            AccessRecord::new(
                RecordMode::Http,
                self.context.info.src,
                self.context.info.dst,
                self.context.frontend.clone(),
                self.context.accept_date,
            ),
        );
        let (write_mark, read_mark) = if self.http2 {
            (None, None)
        } else {
            (
                Some(self.context.activity.write_mark()),
                self.tunnel_log.is_some().then(|| self.activity.read_mark()),
            )
        };
        let pending = PendingLog {
            record,
            snapshot: self.snapshot.clone(),
            backend: self.backend.clone(),
            server: self.server.clone(),
            write_mark,
            read_mark,
            slot: self.slot.take(),
        };
        match self.tunnel_log.take() {
            Some(tunnel) => {
                if let Err(pending) = tunnel.send(pending) {
                    self.context.log_now(pending);
                }
            }
            None => self.context.log_when_written(pending),
        }
    }

    fn record_request_ms(&self) -> u64 {
        self.record
            .timers
            .request
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// What the end of a response body releases when nothing is logged: the
/// server's sessions then its slot (in that order, as [`Exchange::finish`]),
/// and the request's activity mark (the connection is idle again).
struct Release {
    backend: Option<Arc<Counters>>,
    server: Option<Arc<Counters>>,
    sessions: SmallVec<[SessionGuard; 2]>,
    slot: Option<ServerSlot>,
    _activity: RequestActivity,
}

impl From<Exchange> for Release {
    fn from(exchange: Exchange) -> Release {
        let Exchange {
            backend,
            server,
            sessions,
            slot,
            activity,
            ..
        } = exchange;
        Release {
            backend,
            server,
            sessions,
            slot,
            _activity: activity,
        }
    }
}

impl Release {
    fn finish(mut self, end: BodyEnd) {
        if matches!(end, BodyEnd::TimedOut | BodyEnd::Failed) {
            for counters in [self.backend.as_ref(), self.server.as_ref()]
                .into_iter()
                .flatten()
            {
                Counters::add(&counters.response_errors, 1);
            }
        }
        self.sessions.clear();
        drop(self.slot.take());
    }
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The request phases of one request (from lbd's HTTP/1 server, or a
/// stream of hyper's HTTP/2 server): never fails, every problem is a
/// response.
pub async fn handle<B>(
    mut request: Request<B>,
    context: Arc<ConnContext>,
) -> Result<Response<ProxyBody>, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<super::body::BoxError>,
{
    let started = clock::now();
    let (idle_ms, request_ms) = context.activity.idle_and_head_ms(ms_at(started));
    // `Th`: the TLS handshake, counted in the connection's first request.
    let handshake = context
        .info
        .handshake
        .as_ref()
        .map_or(Duration::ZERO, |facts| facts.handshake_time);
    let first = context.activity.requests_started() == 0;
    let activity = context.activity.begin();
    let current = context.shared.snapshot();
    // A reload that removed this frontend: finish on the snapshot the
    // connection started with, then close.
    let (snapshot, frontend_id, frontend_gone) = match current.frontend_by_name(&context.frontend) {
        Some(id) => (current, id, false),
        None => {
            let accepted = context.accepted_snapshot.clone();
            let id = accepted.frontend_by_name(&context.frontend).unwrap_or(0);
            (accepted, id, true)
        }
    };
    let frontend_counters = context.counters.clone();
    // Only a frontend that logs needs the request line.
    let logs = snapshot
        .frontend(frontend_id)
        .is_some_and(|f| f.log.is_some());
    // The record is filled in place: a local record moved into the
    // exchange was a copy of 432 bytes, and a slot of its own in this
    // future.
    let mut exchange = Exchange {
        context: context.clone(),
        snapshot: snapshot.clone(),
        record: AccessRecord::new(
            RecordMode::Http,
            context.info.src,
            context.info.dst,
            context.frontend.clone(),
            context.accept_date,
        ),
        started,
        head_ms: idle_ms + request_ms,
        frontend: frontend_counters,
        backend: None,
        server: None,
        sessions: SmallVec::new(),
        slot: None,
        bytes_in: None,
        activity,
        http2: request.version() == Version::HTTP_2,
        tunnel_log: None,
        logs,
    };
    let record = &mut exchange.record;
    record.frontend_tls = context.info.tls;
    record.request_date = context.accept_date + handshake + Duration::from_millis(idle_ms);
    record.timers.handshake = Some(if first { handshake } else { Duration::ZERO });
    record.timers.idle = Some(Duration::from_millis(idle_ms));
    record.timers.request = Some(Duration::from_millis(request_ms));
    if logs {
        record.request_line = Some(format!(
            "{} {} {}",
            request.method(),
            request.uri(),
            version_name(request.version())
        ));
    }
    // Only HTTP/1 upgrades (HTTP/2 forbids the Upgrade header): lbd's
    // HTTP/1 server marks the requests that ask for one.
    let client_upgrade = request.extensions_mut().remove::<ClientUpgrade>();
    let upgrade = client_upgrade
        .as_ref()
        .and_then(|_| headers::upgrade_protocol(request.headers()));
    let (mut parts, body) = request.into_parts();
    // Two Host headers leave the target ambiguous (proxies and servers
    // that pick differently make request smuggling possible): HAProxy
    // refuses such a request with 400, and so does lbd.
    if parts
        .headers
        .get_all(hyper::header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        Counters::add(&exchange.frontend.request_errors, 1);
        return Ok(exchange.local(
            error_response(400, true),
            Cause::ProxyAbort,
            SessionPhase::Request,
        ));
    }

    let backend_id = match route::route(&snapshot, frontend_id, &context.info, &mut parts) {
        Decision::UseBackend(id) => id,
        Decision::Deny { status } => {
            Counters::add(&exchange.frontend.denied_requests, 1);
            return Ok(exchange.local(
                error_response(status, false),
                Cause::ProxyAbort,
                SessionPhase::Request,
            ));
        }
        Decision::Redirect { code, location } => {
            return Ok(exchange.local(
                redirect_response(code, &location),
                Cause::LocalResponse,
                SessionPhase::Request,
            ));
        }
        Decision::NoBackend => {
            return Ok(exchange.local(
                error_response(503, false),
                Cause::ServerAbort,
                SessionPhase::Connect,
            ));
        }
    };
    let Some(frontend) = snapshot.frontend(frontend_id) else {
        return Ok(exchange.local(
            error_response(503, false),
            Cause::Internal,
            SessionPhase::Request,
        ));
    };
    let Some((backend, _)) = snapshot.backend(backend_id) else {
        return Ok(exchange.local(
            error_response(503, false),
            Cause::Internal,
            SessionPhase::Request,
        ));
    };
    let counters = snapshot.counters(&context.shared.counters);
    exchange.record.backend = Some(match counters.backend_names.get(backend_id) {
        Some(name) => name.clone(),
        None => backend.name.as_str().into(),
    });
    let Some(backend_counters) = counters.backends.get(backend_id).cloned() else {
        return Ok(exchange.local(
            error_response(503, false),
            Cause::Internal,
            SessionPhase::Request,
        ));
    };
    exchange
        .sessions
        .push(backend_counters.open_session_at(ms_at(started)));
    exchange.backend = Some(backend_counters);

    let mode = frontend
        .http_connection_mode
        .combine(backend.http_connection_mode);
    let mode = if frontend_gone {
        HttpConnectionMode::Close
    } else {
        mode
    };
    headers::add_forwarding(
        &mut parts,
        &Forwarding {
            forwardfor: frontend.forwardfor.as_ref().or(backend.forwardfor.as_ref()),
            forwarded: frontend.forwarded || backend.forwarded,
            client: context.info.src,
            local: context.info.dst,
            scheme: if context.info.tls { "https" } else { "http" },
        },
    );

    // `balance url_param ... check_post`: the body's first bytes choose.
    let mut post_prefix = Bytes::new();
    let body = match balance::body_wanted(&backend.balance, &parts) {
        None => Either::Left(body),
        Some(limit) => {
            match balance::post::peek(body, limit, frontend.timeouts.http_request).await {
                Ok(peeked) => {
                    post_prefix = peeked.prefix;
                    Either::Right(peeked.body)
                }
                Err(error) => {
                    let (status, cause) = match error {
                        balance::post::PeekError::Timeout => (408, Cause::ClientTimeout),
                        balance::post::PeekError::Body(_) => (400, Cause::ClientAbort),
                    };
                    return Ok(exchange.local(
                        error_response(status, false),
                        cause,
                        SessionPhase::Request,
                    ));
                }
            }
        }
    };
    let connected =
        match connect_with_retries(&mut exchange, &parts, &post_prefix, backend_id, mode).await {
            Ok(connected) => connected,
            Err(failure) => {
                let status = failure.status();
                return Ok(exchange.local(
                    error_response(status, false),
                    failure.cause(),
                    failure.phase(),
                ));
            }
        };
    let Connected {
        server,
        conn,
        reused,
        tls,
    } = connected;
    let address = backend.servers[server].address;

    headers::prepare_upstream(&mut parts, mode, upgrade.as_ref());
    let request_body = meter_request_body(&mut exchange, body, frontend.timeouts.client);
    let outgoing = Request::from_parts(parts, request_body);
    // `Tr` is only for the log line: no clock read without one.
    let sent_at = exchange.logs.then(clock::now);
    // The connection goes back to the pool from the response body's end,
    // in keep-alive mode only.
    let pool_key = (address, tls.as_ref().and_then(|t| t.pool_name()));
    let recycle = || {
        (mode == HttpConnectionMode::KeepAlive).then(|| Recycle {
            pool: context.shared.pool.clone(),
            key: pool_key.clone(),
        })
    };
    let watchdog = (!exchange.http2).then_some(&*context.activity);
    let server_timeout = backend.timeouts.server;
    // Boxed: the exchange's future (736 bytes) is copied once, into memory
    // the allocator just had back from the previous request, instead of
    // twice more into this request's future (cache misses per request).
    let sending = Box::pin(origin::send(conn, outgoing, reused, recycle()));
    let mut result = within_timeout_server(sending, server_timeout, watchdog).await;
    if reused {
        // A pooled connection the server had just closed: the request was
        // not taken, so it goes again on a fresh connection.
        if let Err(SendFailure::NotSent(unsent)) = result {
            // Boxed, as in `connect`: a rare path that would size the
            // future of every request.
            let connecting = upstream::connect(address, tls.as_ref(), backend.timeouts.connect);
            result = match Box::pin(connecting).await {
                Ok(fresh) => {
                    let sending = origin::resend(fresh, *unsent, recycle());
                    within_timeout_server(sending, server_timeout, watchdog).await
                }
                Err(error) => Err(SendFailure::Connect(error)),
            };
        }
    }
    let response = match result {
        Ok(response) => response,
        Err(failure) => {
            let (status, cause, phase) = failure.classify();
            if cause != Cause::ClientTimeout && cause != Cause::ClientAbort {
                for counters in [exchange.backend.as_ref(), exchange.server.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    Counters::add(&counters.response_errors, 1);
                }
            }
            return Ok(exchange.local(error_response(status, true), cause, phase));
        }
    };
    exchange.record.timers.response = sent_at.map(|at| clock::now().saturating_duration_since(at));

    let (mut response_parts, mut response_body) = response.into_parts();
    let server_upgrade = (response_parts.status == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| response_body.take_upgrade())
        .flatten();
    if let (Some(client_upgrade), Some(server_upgrade)) = (client_upgrade, server_upgrade) {
        headers::prepare_downstream(&mut response_parts, mode);
        route::apply_response(
            &snapshot,
            frontend_id,
            Some(backend_id),
            &context.info,
            &mut response_parts,
        );
        drop(response_body);
        let counters: Vec<Arc<Counters>> = [exchange.backend.clone(), exchange.server.clone()]
            .into_iter()
            .flatten()
            .collect();
        // The server slot stays taken while the tunnel runs (leastconn and
        // maxconn see it); the exchange's log line is written when the
        // tunnel closes, with its timers and bytes (as HAProxy).
        let slot = exchange.slot.take();
        let idle = backend
            .timeouts
            .tunnel
            .unwrap_or(frontend.timeouts.client.min(backend.timeouts.server));
        let (log_tx, log_rx) = oneshot::channel();
        exchange.tunnel_log = Some(log_tx);
        tunnel::spawn(
            tunnel::Ends {
                client: client_upgrade,
                server: server_upgrade,
            },
            idle,
            counters,
            tunnel::TunnelLog {
                context: context.clone(),
                record: log_rx,
            },
            slot,
        );
        let response = Response::from_parts(response_parts, full(""));
        return Ok(exchange.respond(response, None));
    }
    headers::prepare_downstream(&mut response_parts, mode);
    route::apply_response(
        &snapshot,
        frontend_id,
        Some(backend_id),
        &context.info,
        &mut response_parts,
    );
    let response = Response::from_parts(response_parts, response_body.boxed_unsync());
    Ok(exchange.respond(response, Some(backend.timeouts.server)))
}

fn meter_request_body<B>(exchange: &mut Exchange, body: B, client_timeout: Duration) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<super::body::BoxError>,
{
    // Most requests have no body: nothing to count or time (and an empty
    // body boxes without allocating).
    if body.is_end_stream() {
        return Empty::new().map_err(|never| match never {}).boxed_unsync();
    }
    let counters = [exchange.backend.clone(), exchange.server.clone()];
    let total = exchange.bytes_in.get_or_insert_with(Arc::default).clone();
    let on_data = move |n: u64| {
        total.fetch_add(n, Relaxed);
        for counters in counters.iter().flatten() {
            Counters::add(&counters.bytes_in, n);
        }
    };
    Metered::new(body, Some(client_timeout), on_data, |_, _| {}).boxed_unsync()
}

/// Why sending a request to a server failed.
enum SendFailure {
    /// The pooled connection closed before the request was taken: it can
    /// go again.
    NotSent(Box<Unsent>),
    Connect(ConnectError),
    /// No response head within `timeout server`.
    Timeout,
    Failed(SendError),
}

impl SendFailure {
    /// Status for the client, and HAProxy's termination state.
    fn classify(&self) -> (u16, Cause, SessionPhase) {
        match self {
            SendFailure::Timeout => (504, Cause::ServerTimeout, SessionPhase::Headers),
            SendFailure::Connect(ConnectError::Timeout) => {
                (503, Cause::ServerTimeout, SessionPhase::Connect)
            }
            SendFailure::Connect(_) | SendFailure::NotSent(_) => {
                (503, Cause::ServerAbort, SessionPhase::Connect)
            }
            SendFailure::Failed(SendError::ClientBody(error))
                if error.downcast_ref::<IdleTimeout>().is_some() =>
            {
                (408, Cause::ClientTimeout, SessionPhase::Data)
            }
            SendFailure::Failed(SendError::ClientBody(_)) => {
                (400, Cause::ClientAbort, SessionPhase::Data)
            }
            SendFailure::Failed(_) => (502, Cause::ServerAbort, SessionPhase::Headers),
        }
    }
}

/// Awaits the response head of `sending` within `timeout server`.
/// HTTP/1 (`watchdog`): the connection's watchdog keeps the deadline, which
/// spares a timer armed and cancelled per request; HTTP/2 streams run in
/// tasks of their own and keep a timer. A plain future, not an async
/// function: that took about three times the exchange (3 KiB, moved with
/// every request's future); this holds it once.
fn within_timeout_server<F>(
    exchange: F,
    timeout: Duration,
    watchdog: Option<&Activity>,
) -> WithinTimeoutServer<'_, F>
where
    F: Future<Output = Result<Response<ResponseBody>, SendError>>,
{
    let exchange = match watchdog {
        Some(activity) => match activity.time_server(timeout, exchange) {
            Ok(bounded) => return WithinTimeoutServer::Watchdog { bounded },
            Err(exchange) => exchange,
        },
        None => exchange,
    };
    WithinTimeoutServer::Timer {
        bounded: tokio::time::timeout(timeout, exchange),
    }
}

pin_project_lite::pin_project! {
    /// [`within_timeout_server`]'s future.
    #[project = WithinTimeoutServerProj]
    enum WithinTimeoutServer<'a, F> {
        Watchdog { #[pin] bounded: ServerDeadline<'a, F> },
        Timer { #[pin] bounded: tokio::time::Timeout<F> },
    }
}

impl<F> Future for WithinTimeoutServer<'_, F>
where
    F: Future<Output = Result<Response<ResponseBody>, SendError>>,
{
    type Output = Result<Response<ResponseBody>, SendFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match self.project() {
            WithinTimeoutServerProj::Watchdog { bounded } => ready!(bounded.poll(cx)).ok(),
            WithinTimeoutServerProj::Timer { bounded } => ready!(bounded.poll(cx)).ok(),
        };
        Poll::Ready(match result {
            Some(Ok(response)) => Ok(response),
            Some(Err(SendError::NotSent(request))) => Err(SendFailure::NotSent(request)),
            Some(Err(error)) => Err(SendFailure::Failed(error)),
            None => Err(SendFailure::Timeout),
        })
    }
}
