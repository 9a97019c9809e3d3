//! TCP mode: route the connection (use_backend on connection facts), choose
//! a server (for `balance rdp-cookie`, from the first bytes, peeked within
//! a bounded inspect delay), connect with `retries`/`redispatch`, then relay
//! bytes both ways with half-close until both sides end or the session is
//! idle for `timeout client`/`timeout server` (the smaller). One `tcplog`
//! record per session.
use crate::log::{
    AccessRecord, RecordMode, SessionPhase, TerminationCause as Cause, TerminationState,
};
use crate::proxy::{
    acl::ConnInfo,
    assign::{assign_and_connect, AssignFailure, ConnectFailed, Request},
    balance::{rdp_cookie, Balance, BalanceInput, RdpCookie},
    config::ServerId,
    relay::{self, RelayEnd, RelayMeter},
    retry::FailureKind,
    route::{self, Decision},
    runtime::Shared,
    snapshot::Snapshot,
    stats::Counters,
    tls::client::{self as client_tls, ServerStream},
    tls::passthrough,
};
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant, SystemTime},
};
use tokio::net::TcpStream;

/// Longest wait for the bytes `rdp-cookie` needs (HAProxy's `tcp-request
/// inspect-delay` of the usual RDP configurations); bounded by `timeout
/// client` too.
pub const INSPECT_DELAY: Duration = Duration::from_secs(5);
/// Most bytes inspected.
const INSPECT_BYTES: usize = 1024;
/// Poll step while the client's first bytes are incomplete.
const INSPECT_STEP: Duration = Duration::from_millis(10);

/// Serves one tcp-mode client connection.
pub async fn serve(
    client: TcpStream,
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    frontend: Arc<str>,
    info: ConnInfo,
) {
    let accepted = Instant::now();
    let mut record = AccessRecord::new(
        RecordMode::Tcp,
        info.src,
        info.dst,
        frontend.clone(),
        SystemTime::now(),
    );
    let end = session(
        client,
        &shared,
        &snapshot,
        &frontend,
        &info,
        &mut record,
        accepted,
    )
    .await;
    record.termination = end;
    record.timers.total = accepted.elapsed();
    record.timers.active = record.timers.total;
    // HAProxy's counts when the line is logged (this session's own backend
    // and server sessions have ended).
    let counters = &shared.counters;
    let count = |c: Arc<Counters>| u32::try_from(c.current()).unwrap_or(u32::MAX);
    record.concurrency.process = counters.connections();
    record.concurrency.frontend = count(counters.frontends.get(&frontend));
    if let Some(backend) = &record.backend {
        record.concurrency.backend = count(counters.backends.get(backend));
        if let Some(server) = &record.server {
            record.concurrency.server =
                count(counters.servers.get(&(backend.clone(), server.clone())));
        }
    }
    shared.log(&snapshot, &frontend, record);
}

async fn session(
    client: TcpStream,
    shared: &Arc<Shared>,
    snapshot: &Arc<Snapshot>,
    frontend: &Arc<str>,
    info: &ConnInfo,
    record: &mut AccessRecord,
    accepted: Instant,
) -> TerminationState {
    let Some(frontend_id) = snapshot.frontend_by_name(frontend) else {
        return TerminationState::new(Cause::Internal, SessionPhase::Request);
    };
    let Some(frontend_config) = snapshot.frontend(frontend_id) else {
        return TerminationState::new(Cause::Internal, SessionPhase::Request);
    };
    // `tcp_request` (TLS passthrough): peek at the ClientHello, left in
    // the socket for the server.
    let inspected = match passthrough::run(&client, frontend_config, info).await {
        Ok(inspected) => inspected,
        Err(passthrough::Rejected) => {
            Counters::add(&shared.counters.frontends.get(frontend).denied_requests, 1);
            return TerminationState::new(Cause::ProxyAbort, SessionPhase::Request);
        }
    };
    let info = inspected.as_ref().unwrap_or(info);
    let Decision::UseBackend(backend_id) = route::route_tcp(snapshot, frontend_id, info) else {
        return TerminationState::new(Cause::ServerAbort, SessionPhase::Connect);
    };
    let Some((backend, _)) = snapshot.backend(backend_id) else {
        return TerminationState::new(Cause::Internal, SessionPhase::Request);
    };
    let backend_name: Arc<str> = backend.name.as_str().into();
    record.backend = Some(backend_name.clone());
    let backend_counters = shared.counters.backends.get(&backend_name);
    let _backend_session = backend_counters.open_session();

    let payload = match &backend.balance {
        Balance::RdpCookie(name) => {
            peek_first_bytes(
                &client,
                name,
                INSPECT_DELAY.min(frontend_config.timeouts.client),
            )
            .await
        }
        _ => Vec::new(),
    };

    let assign = Request {
        snapshot,
        backend: backend_id,
        input: BalanceInput {
            src: info.src.ip(),
            request: None,
            payload: &payload,
            body: &[],
            exclude: None,
        },
        backend_counters: Some(backend_counters.clone()),
        counters: &shared.counters,
        since: accepted,
    };
    let connect = |server: ServerId| {
        let config = &backend.servers[server];
        let timeout = backend.timeouts.connect;
        async move {
            let connect = client_tls::connect(config.address, config.tls.as_deref(), info);
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(error)) => Err(ConnectFailed {
                    kind: FailureKind::Error,
                    reused: false,
                    error: Some(error),
                }),
                Err(_) => Err(ConnectFailed {
                    kind: FailureKind::Timeout,
                    reused: false,
                    error: None,
                }),
            }
        }
    };
    let assigned = match assign_and_connect(assign, record, connect).await {
        Ok(assigned) => assigned,
        Err(AssignFailure::NoServer) => {
            return TerminationState::new(Cause::ServerAbort, SessionPhase::Connect)
        }
        Err(AssignFailure::QueueTimeout) => {
            return TerminationState::new(Cause::ServerTimeout, SessionPhase::Queue)
        }
        Err(AssignFailure::Exhausted(_, FailureKind::Timeout)) => {
            return TerminationState::new(Cause::ServerTimeout, SessionPhase::Connect)
        }
        Err(AssignFailure::Exhausted(_, FailureKind::Error)) => {
            return TerminationState::new(Cause::ServerAbort, SessionPhase::Connect)
        }
    };
    let (server_stream, slot, server_counters) =
        (assigned.connection, assigned.slot, assigned.counters);
    let _server_session = server_counters.open_session();
    let _ = client.set_nodelay(true);
    // HAProxy: `timeout tunnel` once both sides are connected, else the
    // client and server timeouts (the first to expire ends the session).
    let idle = backend
        .timeouts
        .tunnel
        .unwrap_or(frontend_config.timeouts.client.min(backend.timeouts.server));
    let meter = RelayMeter::default();
    let outcome = match server_stream {
        ServerStream::Tls(stream) => {
            let _ = stream.get_ref().0.set_nodelay(true);
            relay::copy(client, stream, idle, &meter).await
        }
        ServerStream::Plain(server_stream) => {
            let _ = server_stream.set_nodelay(true);
            // Relayed messages go out with the worker's pass too.
            let mut client = crate::proxy::batch::BatchedTcp::new(client);
            let mut server_stream = crate::proxy::batch::BatchedTcp::new(server_stream);
            relay::adaptive_relay(
                &mut client,
                &mut server_stream,
                idle,
                &meter,
                shared.splice(),
            )
            .await
        }
    };
    drop(slot);
    let frontend_counters = shared.counters.frontends.get(frontend);
    Counters::add(&frontend_counters.bytes_in, outcome.up);
    Counters::add(&frontend_counters.bytes_out, outcome.down);
    for counters in [&backend_counters, &server_counters] {
        Counters::add(&counters.bytes_in, outcome.up);
        Counters::add(&counters.bytes_out, outcome.down);
    }
    record.bytes_from_client = meter.up.load(Relaxed);
    record.bytes_to_client = meter.down.load(Relaxed);
    match outcome.end {
        RelayEnd::Closed => TerminationState::NORMAL,
        RelayEnd::TimedOut => TerminationState::new(Cause::ClientTimeout, SessionPhase::Data),
        RelayEnd::Failed { client: true } => {
            TerminationState::new(Cause::ClientAbort, SessionPhase::Data)
        }
        RelayEnd::Failed { client: false } => {
            for counters in [&backend_counters, &server_counters] {
                Counters::add(&counters.response_errors, 1);
            }
            TerminationState::new(Cause::ServerAbort, SessionPhase::Data)
        }
    }
}

/// The client's first bytes, peeked (left in the socket for the server)
/// until the RDP cookie can be decided, `limit` passes, or the buffer fills.
async fn peek_first_bytes(client: &TcpStream, cookie: &str, limit: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buffer = vec![0u8; INSPECT_BYTES];
    let mut seen = 0;
    loop {
        let peeked = tokio::time::timeout_at(deadline, client.peek(&mut buffer)).await;
        let Ok(Ok(n)) = peeked else {
            break;
        };
        seen = n;
        let decided = !matches!(rdp_cookie(&buffer[..n], cookie), RdpCookie::Incomplete);
        if n == 0 || decided || n == buffer.len() {
            break;
        }
        if tokio::time::Instant::now() + INSPECT_STEP >= deadline {
            break;
        }
        tokio::time::sleep(INSPECT_STEP).await;
    }
    buffer.truncate(seen);
    buffer
}
