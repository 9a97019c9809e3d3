//! Getting a server connection for a request, as HAProxy does: the
//! balance algorithm's choice, a queue while the chosen servers are at
//! their `maxconn` (`timeout queue`), a pooled connection or a new one
//! (`timeout connect`), and `retries` on the same server after a failed
//! connect, the last one on another server with `option redispatch`.
use super::{
    body::ProxyBody,
    service::Exchange,
    upstream::{self, ConnectError},
};
use crate::log::{SessionPhase, TerminationCause as Cause};
use crate::proxy::{
    balance::{BalanceInput, Pick},
    config::{BackendId, HttpConnectionMode, ServerId},
    route,
    snapshot::{BackendRuntime, BackendState, ServerSlot, ServerState},
    stats::{Counters, QueueGuard},
};
use hyper::{client::conn::http1::SendRequest, http::request};
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

/// Longest single wait on a backend's queue before choosing again (a freed
/// slot also wakes the queue at once).
const QUEUE_RECHECK: Duration = Duration::from_millis(100);

pub(super) struct Connected {
    pub(super) server: ServerId,
    pub(super) sender: SendRequest<ProxyBody>,
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

/// Chooses a server and connects, as HAProxy: a server at its maxconn
/// queues the request (`timeout queue`); a failed connect is retried
/// `retries` times on the same server, the last retry on another one with
/// `option redispatch`.
pub(super) async fn connect_with_retries(
    exchange: &mut Exchange,
    request: &request::Parts,
    post_body: &[u8],
    backend_id: BackendId,
    mode: HttpConnectionMode,
) -> Result<Connected, ConnectFailure> {
    let snapshot = exchange.snapshot.clone();
    let Some((backend, runtime)) = snapshot.backend(backend_id) else {
        return Err(ConnectFailure::NoServer);
    };
    let queue_deadline = Instant::now() + backend.timeouts.queue;
    let started = Instant::now();
    let mut pinned: Option<ServerId> = None;
    let mut exclude: Option<ServerId> = None;
    let mut retries = 0;
    let mut queued = None;
    loop {
        let server = match pinned {
            Some(server) => server,
            None => {
                let input = BalanceInput {
                    src: exchange.context.info.src.ip(),
                    request: Some(request),
                    payload: &[],
                    body: post_body,
                    exclude,
                };
                match route::choose(&snapshot, backend_id, &input) {
                    Pick::Server(server) => server,
                    Pick::NoServer => return Err(ConnectFailure::NoServer),
                    Pick::Queue(target) => {
                        if queued.is_none() {
                            queued = Some(queue_guards(exchange, backend_id, runtime, target));
                        }
                        wait_in_queue(runtime, queue_deadline).await?;
                        continue;
                    }
                }
            }
        };
        let Some(slot) = ServerSlot::acquire(runtime, server, backend.servers[server].maxconn)
        else {
            // Taken between choice and acquisition: queue like a full server.
            if queued.is_none() {
                queued = Some(queue_guards(exchange, backend_id, runtime, Some(server)));
            }
            wait_in_queue(runtime, queue_deadline).await?;
            continue;
        };
        if let Some(waited) = queued.take() {
            let (server_queue, backend_queue) = waited.served();
            exchange.record.concurrency.server_queue = server_queue;
            exchange.record.concurrency.backend_queue = backend_queue;
            exchange.record.timers.queue = Some(started.elapsed());
        } else if exchange.record.timers.queue.is_none() {
            exchange.record.timers.queue = Some(Duration::ZERO);
        }
        let config = &backend.servers[server];
        let server_name: Arc<str> = config.name.as_str().into();
        let server_counters = match snapshot
            .counters(&exchange.context.shared.counters)
            .servers
            .get(backend_id)
            .and_then(|servers| servers.get(server))
        {
            Some(counters) => counters.clone(),
            None => exchange
                .context
                .shared
                .counters
                .servers
                .get(&(backend.name.as_str().into(), server_name.clone())),
        };
        exchange.record.server = Some(server_name);
        let connect_started = Instant::now();
        let tls = (config.tls.as_ref().filter(|t| t.ssl))
            .map(|t| t.target(Some(&exchange.context.info), Some(request), config.address));
        let pool_key = (config.address, tls.as_ref().and_then(|t| t.pool_name()));
        let pooled = (mode == HttpConnectionMode::KeepAlive)
            .then(|| exchange.context.shared.pool.take(&pool_key))
            .flatten();
        let attempt = match pooled {
            Some(sender) => Ok((sender, true)),
            None => upstream::connect(config.address, tls.as_ref(), backend.timeouts.connect)
                .await
                .map(|sender| (sender, false)),
        };
        match attempt {
            Ok((sender, reused)) => {
                exchange.record.timers.connect = Some(connect_started.elapsed());
                exchange.sessions.push(server_counters.open_session());
                exchange.server = Some(server_counters);
                exchange.slot = Some(slot);
                return Ok(Connected {
                    server,
                    sender,
                    reused,
                    tls,
                });
            }
            Err(error) => {
                drop(slot);
                let backend_counters = exchange.backend.clone();
                for counters in [backend_counters.as_ref(), Some(&server_counters)]
                    .into_iter()
                    .flatten()
                {
                    Counters::add(&counters.connection_errors, 1);
                }
                if retries >= backend.retries {
                    exchange.record.retries = retries;
                    return Err(ConnectFailure::Exhausted(error));
                }
                retries += 1;
                exchange.record.retries = retries;
                for counters in [backend_counters.as_ref(), Some(&server_counters)]
                    .into_iter()
                    .flatten()
                {
                    Counters::add(&counters.retries, 1);
                }
                let redispatch = backend.redispatch && retries == backend.retries;
                if redispatch {
                    pinned = None;
                    exclude = Some(server);
                    exchange.record.redispatched = true;
                    for counters in [backend_counters.as_ref(), Some(&server_counters)]
                        .into_iter()
                        .flatten()
                    {
                        Counters::add(&counters.redispatches, 1);
                    }
                } else {
                    pinned = Some(server);
                }
            }
        }
    }
}

/// Counts the request as queued on the backend, or on its server for the
/// hashing algorithms (HAProxy's server queue), until the returned mark
/// is served or dropped.
fn queue_guards(
    exchange: &Exchange,
    backend_id: BackendId,
    runtime: &BackendRuntime,
    target: Option<ServerId>,
) -> QueueMark {
    runtime.state.queued.fetch_add(1, Relaxed);
    let server = target.and_then(|id| runtime.servers.get(id).cloned());
    if let Some(server) = &server {
        server.queued.fetch_add(1, Relaxed);
    }
    let counters = match target {
        Some(id) => exchange
            .snapshot
            .counters(&exchange.context.shared.counters)
            .servers
            .get(backend_id)
            .and_then(|servers| servers.get(id))
            .map(|c| (true, c.enter_queue())),
        None => exchange.backend.as_ref().map(|c| (false, c.enter_queue())),
    };
    QueueMark {
        backend: runtime.state.clone(),
        server,
        counters,
    }
}

struct QueueMark {
    backend: Arc<BackendState>,
    server: Option<Arc<ServerState>>,
    /// Whether it is the server's queue, and the place in it.
    counters: Option<(bool, QueueGuard)>,
}

impl QueueMark {
    /// Leaves the queue with a slot: the positions (`%sq`, `%bq`).
    fn served(mut self) -> (u32, u32) {
        match self.counters.take() {
            Some((true, guard)) => (guard.served(), 0),
            Some((false, guard)) => (0, guard.served()),
            None => (0, 0),
        }
    }
}

impl Drop for QueueMark {
    fn drop(&mut self) {
        self.backend.queued.fetch_sub(1, Relaxed);
        if let Some(server) = &self.server {
            server.queued.fetch_sub(1, Relaxed);
        }
    }
}

async fn wait_in_queue(runtime: &BackendRuntime, deadline: Instant) -> Result<(), ConnectFailure> {
    let now = Instant::now();
    if now >= deadline {
        return Err(ConnectFailure::QueueTimeout);
    }
    let wait = (deadline - now).min(QUEUE_RECHECK);
    let _ = tokio::time::timeout(wait, runtime.state.slot_freed.notified()).await;
    Ok(())
}
