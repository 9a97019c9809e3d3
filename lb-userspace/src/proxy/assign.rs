//! Getting a server connection for a request (http) or session (tcp), as
//! HAProxy's back-end states do: the balancer's choice or a place in the
//! backend's or a server's queue (`timeout queue`), the connect, and after
//! a failure what [`RetryPolicy`] says (the same server after a
//! turn-around, or back to the balancer). The connect itself is the
//! caller's (a pooled or new http connection, a tcp stream).
use crate::log::AccessRecord;
use crate::proxy::{
    balance::BalanceInput,
    clock,
    config::{BackendId, ServerId},
    queue::Place,
    retry::{AfterFailure, Failure, FailureKind, RetryPolicy},
    snapshot::{ServerSlot, Snapshot, Take},
    stats::Counters,
};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

/// A connected server.
pub struct Assigned<T> {
    pub server: ServerId,
    pub slot: ServerSlot,
    pub connection: T,
    pub counters: Arc<Counters>,
}

/// Why no server connection could be had.
#[derive(Debug)]
pub enum AssignFailure<E> {
    /// No usable server.
    NoServer,
    /// `timeout queue` expired waiting for a slot.
    QueueTimeout,
    /// Every attempt failed (`retries` spent); the last error.
    Exhausted(E, FailureKind),
}

/// A failed connect: how, whether the connection was a reused one, and
/// the error.
pub struct ConnectFailed<E> {
    pub kind: FailureKind,
    pub reused: bool,
    pub error: E,
}

/// What a request brings to the choice.
pub struct Request<'a> {
    pub snapshot: &'a Arc<Snapshot>,
    pub backend: BackendId,
    pub input: BalanceInput<'a>,
    pub backend_counters: Option<Arc<Counters>>,
    /// The server counters by (backend name, server name).
    pub counters: &'a crate::proxy::stats::ProxyCounters,
    /// Where `%Tw` counts from.
    pub since: Instant,
}

/// Assigns a server and connects with `connect`, filling the record's
/// `%s`, `%Tw`, `%Tc`, `%rc`, `%sq` and `%bq`.
pub async fn assign_and_connect<T, E, F, Fut>(
    request: Request<'_>,
    record: &mut AccessRecord,
    mut connect: F,
) -> Result<Assigned<T>, AssignFailure<E>>
where
    F: FnMut(ServerId) -> Fut,
    Fut: Future<Output = Result<T, ConnectFailed<E>>>,
{
    let Request {
        snapshot,
        backend: backend_id,
        mut input,
        backend_counters,
        counters,
        since: started,
    } = request;
    let Some((backend, runtime)) = snapshot.backend(backend_id) else {
        return Err(AssignFailure::NoServer);
    };
    let policy = RetryPolicy::new(
        backend.retries,
        (backend.redispatch, backend.redispatch_after),
        &backend.balance,
        backend.timeouts.connect,
    );
    let server_counters = |server: ServerId| -> Option<Arc<Counters>> {
        let cached = snapshot
            .counters(counters)
            .servers
            .get(backend_id)
            .and_then(|servers| servers.get(server))
            .cloned();
        cached.or_else(|| {
            let name = &backend.servers.get(server)?.name;
            Some(
                counters
                    .servers
                    .get(&(backend.name.as_str().into(), name.as_str().into())),
            )
        })
    };
    let mut failures = 0u32;
    // A retry on the same server keeps its slot (HAProxy's SI_ST_ASS).
    let mut kept: Option<(ServerId, ServerSlot, Instant)> = None;
    // The server of the failed attempt before a redispatch.
    let mut previous: Option<ServerId> = None;
    loop {
        let (server, slot, assigned) = match kept.take() {
            Some(kept) => kept,
            None => {
                let (server, slot) = match take_slot(
                    snapshot,
                    backend_id,
                    &input,
                    &backend_counters,
                    &server_counters,
                    record,
                )
                .await
                {
                    Ok(Some(taken)) => taken,
                    // Nothing left but the server just failed: HAProxy's
                    // balancer would give it again.
                    Ok(None) if input.exclude.take().is_some() => continue,
                    Ok(None) => return Err(AssignFailure::NoServer),
                    Err(timeout) => return Err(timeout),
                };
                // `%Tw` ends at each assignment (HAProxy's t_queue).
                record.timers.queue = Some(clock::now().saturating_duration_since(started));
                if let Some(previous) = previous.take() {
                    let changed = previous != server;
                    record.redispatched |= changed;
                    let count = server_counters(previous);
                    for c in [backend_counters.as_ref(), count.as_ref()]
                        .into_iter()
                        .flatten()
                    {
                        Counters::add(if changed { &c.redispatches } else { &c.retries }, 1);
                    }
                }
                (server, slot, clock::now())
            }
        };
        let name = snapshot
            .counters(counters)
            .server_names
            .get(backend_id)
            .and_then(|names| names.get(server))
            .cloned();
        record.server = name.or_else(|| Some(backend.servers[server].name.as_str().into()));
        match connect(server).await {
            Ok(connection) => {
                // `%Tc`: from the (last) assignment, turn-arounds included.
                record.timers.connect = Some(clock::now().saturating_duration_since(assigned));
                let counters = server_counters(server).unwrap_or_default();
                return Ok(Assigned {
                    server,
                    slot,
                    connection,
                    counters,
                });
            }
            Err(failed) => {
                failures += 1;
                record.retries = failures.min(policy.retries);
                let state = &runtime.servers[server];
                let active = (0..backend.servers.len())
                    .filter(|&id| !backend.servers[id].backup && runtime.servers[id].is_up())
                    .count();
                let decision = policy.after(Failure {
                    failures,
                    kind: failed.kind,
                    reused: failed.reused,
                    server_running: state.is_health_up()
                        && state.admin() != crate::proxy::snapshot::AdminState::Maint,
                    active_servers: active,
                });
                let count = server_counters(server);
                match decision {
                    AfterFailure::GiveUp => {
                        // HAProxy counts `econ` once, when it gives up.
                        for c in [backend_counters.as_ref(), count.as_ref()]
                            .into_iter()
                            .flatten()
                        {
                            Counters::add(&c.connection_errors, 1);
                        }
                        return Err(AssignFailure::Exhausted(failed.error, failed.kind));
                    }
                    AfterFailure::SameServer { wait } => {
                        for c in [backend_counters.as_ref(), count.as_ref()]
                            .into_iter()
                            .flatten()
                        {
                            Counters::add(&c.retries, 1);
                        }
                        turn_around(wait).await;
                        kept = Some((server, slot, assigned));
                    }
                    AfterFailure::Redispatch { wait } => {
                        // The slot goes back to the queue before the wait.
                        drop(slot);
                        previous = Some(server);
                        input.exclude = Some(server);
                        turn_around(wait).await;
                    }
                }
            }
        }
    }
}

async fn turn_around(wait: Duration) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// A slot from the balancer, or after a wait in a queue; `Ok(None)` when
/// no server is usable.
async fn take_slot<E>(
    snapshot: &Arc<Snapshot>,
    backend_id: BackendId,
    input: &BalanceInput<'_>,
    backend_counters: &Option<Arc<Counters>>,
    server_counters: &impl Fn(ServerId) -> Option<Arc<Counters>>,
    record: &mut AccessRecord,
) -> Result<Option<(ServerId, ServerSlot)>, AssignFailure<E>> {
    let Some((backend, runtime)) = snapshot.backend(backend_id) else {
        return Ok(None);
    };
    loop {
        let deadline = clock::now() + backend.timeouts.queue;
        let mut queued = match runtime.take(backend, input, deadline) {
            Take::NoServer => return Ok(None),
            Take::Slot(server, slot) => return Ok(Some((server, slot))),
            Take::Queued(queued) => queued,
        };
        // The stats' queue cur/max, for as long as it waits.
        let _counted = match queued.place() {
            Place::Backend => backend_counters.as_ref().map(|c| c.enter_queue()),
            Place::Server(id) => server_counters(id).map(|c| c.enter_queue()),
        };
        let grant = queued
            .wait()
            .await
            .map_err(|_| AssignFailure::QueueTimeout)?;
        match grant.from {
            Place::Backend => record.concurrency.backend_queue = grant.position,
            Place::Server(_) => record.concurrency.server_queue = grant.position,
        }
        // A reload may have removed the server meanwhile: choose again.
        if let Some(server) = runtime.server_id(&grant.slot) {
            return Ok(Some((server, grant.slot)));
        }
    }
}
