//! Health checks of proxy servers with `check`, as HAProxy runs them:
//! a TCP connect (`option tcp-check`, or no httpchk), or the request of
//! `option httpchk METHOD URI VERSION[\r\nHeaders]` judged by
//! `http-check expect` (default: any 2xx or 3xx), over TLS for servers
//! with `ssl` or `check_ssl` (a failed handshake is HAProxy's L6RSP or
//! L6TOUT, a TLS connect alone L6OK). One task per server,
//! every `inter`; results go through the health engine's rise/fall
//! hysteresis (`health::state::BackendHealth`) into the server's live
//! state, and each UP/DOWN transition is logged in HAProxy's words.
//!
//! The request bytes and the judging of a response are pure functions
//! (`request_bytes`, `judge`), tested with tables; `probe` is the I/O.
use super::state::{BackendHealth, CheckResult};
use crate::log::event::{CheckOutcome, CheckStatus, ServerTransition};
use crate::log::Logger;
use crate::proxy::config::{
    default_check_status_ok, Backend, HttpCheckExpect, HttpCheckRequest, Server,
};
use crate::proxy::snapshot::{AdminState, LastCheck, Snapshot};
use crate::proxy::tls::client::{self, ServerTls};
use crate::stats::SharedLive;
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};
use tracing::{info, warn};

/// HAProxy's check buffer (`tune.bufsize`): more of a response is not read.
const RESPONSE_LIMIT: usize = 16_384;

/// How one server is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckMethod {
    Connect,
    Http {
        request: Vec<u8>,
        expect: Option<HttpCheckExpect>,
    },
}

/// Everything a check needs, resolved from the backend and server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPlan {
    pub backend: usize,
    pub server: usize,
    pub address: SocketAddr,
    pub method: CheckMethod,
    pub inter: Duration,
    /// HAProxy: with `timeout check`, connecting gets min(`timeout
    /// connect`, `inter`) and the response `timeout check`; without it,
    /// `inter` bounds both.
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Checks over TLS (the server's `ssl` or `check_ssl`).
    pub tls: Option<Arc<ServerTls>>,
}

impl CheckPlan {
    pub fn new(backend_id: usize, backend: &Backend, server_id: usize, server: &Server) -> Self {
        let health = &backend.health;
        let method = match (&health.httpchk, health.tcp_check) {
            (Some(request), false) => CheckMethod::Http {
                request: request_bytes(request),
                expect: health.expect.clone(),
            },
            _ => CheckMethod::Connect,
        };
        let (connect_timeout, response_timeout) = match backend.timeouts.check {
            Some(check) => (backend.timeouts.connect.min(server.inter), check),
            None => (server.inter, server.inter),
        };
        CheckPlan {
            backend: backend_id,
            server: server_id,
            address: server.address,
            method,
            inter: server.inter,
            connect_timeout,
            response_timeout,
            rise: server.rise,
            fall: server.fall,
            tls: server.tls.clone(),
        }
    }
}

/// One plan per server with `check`, in configuration order.
pub fn plans(snapshot: &Snapshot) -> Vec<CheckPlan> {
    snapshot
        .config
        .backends
        .iter()
        .enumerate()
        .flat_map(|(b, backend)| {
            backend
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.check)
                .map(move |(s, server)| CheckPlan::new(b, backend, s, server))
        })
        .collect()
}

/// The check request exactly as configured (HAProxy sends its own
/// `option httpchk` line and headers, nothing else), then a blank line.
pub fn request_bytes(request: &HttpCheckRequest) -> Vec<u8> {
    let mut out = format!("{} {} {}\r\n", request.method, request.uri, request.version);
    for (name, value) in &request.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A check's conclusion: passed or not, and why in HAProxy's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub ok: bool,
    pub status: CheckStatus,
    pub code: Option<u16>,
    pub info: Option<String>,
}

impl Judgement {
    fn new(ok: bool, status: CheckStatus, code: Option<u16>, info: Option<String>) -> Self {
        Judgement {
            ok,
            status,
            code,
            info,
        }
    }

    /// "L7OK 200", "L4CON Connection refused", as `lbd status` shows them.
    pub fn short(&self) -> String {
        let code = match self.status {
            CheckStatus::Layer4Ok => "L4OK",
            CheckStatus::Layer4Timeout => "L4TOUT",
            CheckStatus::Layer4Connection => "L4CON",
            CheckStatus::Layer7Ok => "L7OK",
            CheckStatus::Layer7WrongStatus => "L7STS",
            CheckStatus::Layer7Timeout => "L7TOUT",
            CheckStatus::Layer7InvalidResponse => "L7RSP",
            CheckStatus::SocketError => "SOCKERR",
            CheckStatus::Layer6Ok => "L6OK",
            CheckStatus::Layer6Timeout => "L6TOUT",
            CheckStatus::Layer6InvalidResponse => "L6RSP",
        };
        let mut out = code.to_owned();
        if let Some(status) = self.code {
            out.push_str(&format!(" {status}"));
        }
        if let Some(info) = &self.info {
            out.push_str(&format!(" {info}"));
        }
        out
    }
}

/// Judges the response bytes received so far; `None` = read more.
/// `finished`: the server closed, the buffer is full or time ran out.
pub fn judge(
    response: &[u8],
    finished: bool,
    expect: Option<&HttpCheckExpect>,
) -> Option<Judgement> {
    let invalid = |info: &str| {
        Some(Judgement::new(
            false,
            CheckStatus::Layer7InvalidResponse,
            None,
            Some(info.to_owned()),
        ))
    };
    let Some(line_end) = response.windows(2).position(|w| w == b"\r\n") else {
        return if finished {
            invalid("no status line")
        } else {
            None
        };
    };
    let line = &response[..line_end];
    let status = match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'0' | b'1', b' ', a, b, c, rest @ ..]
            if (rest.is_empty() || rest[0] == b' ')
                && [a, b, c].iter().all(|d| d.is_ascii_digit()) =>
        {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return invalid("not an HTTP/1.x status line"),
    };
    let needs_body = expect.is_some_and(|e| e.needs_body());
    let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => &response[at + 4..],
        None if needs_body && !finished => return None,
        None => &[][..],
    };
    if needs_body && !finished {
        let expected_length = content_length(response);
        if expected_length.is_none_or(|n| body.len() < n) {
            // Only a match can end the wait early.
            if !expect.is_some_and(|e| e.accepts(status, body)) {
                return None;
            }
        }
    }
    let ok = match expect {
        Some(expect) => expect.accepts(status, body),
        None => default_check_status_ok(status),
    };
    let kind = if ok {
        CheckStatus::Layer7Ok
    } else {
        CheckStatus::Layer7WrongStatus
    };
    Some(Judgement::new(ok, kind, Some(status), None))
}

/// The Content-Length of a response head, if it has one.
fn content_length(response: &[u8]) -> Option<usize> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// Runs one check of `plan`.
pub async fn probe(plan: &CheckPlan) -> Judgement {
    let connect = tokio::time::timeout(plan.connect_timeout, TcpStream::connect(plan.address));
    let stream = match connect.await {
        Err(_) => return Judgement::new(false, CheckStatus::Layer4Timeout, None, None),
        Ok(Err(e)) => {
            let info = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "Connection refused".to_owned(),
                _ => e.to_string(),
            };
            return Judgement::new(false, CheckStatus::Layer4Connection, None, Some(info));
        }
        Ok(Ok(stream)) => stream,
    };
    let Some(tls) = &plan.tls else {
        return converse(plan, stream).await;
    };
    // HAProxy: a failed handshake is a layer 6 failure (L6RSP, L6TOUT).
    let target = tls.check_target(plan.address);
    let handshake = client::handshake(&target, stream);
    match tokio::time::timeout(plan.connect_timeout, handshake).await {
        Err(_) => Judgement::new(false, CheckStatus::Layer6Timeout, None, None),
        Ok(Err(e)) => Judgement::new(
            false,
            CheckStatus::Layer6InvalidResponse,
            None,
            Some(e.to_string()),
        ),
        Ok(Ok(stream)) if plan.method == CheckMethod::Connect => {
            drop(stream);
            Judgement::new(true, CheckStatus::Layer6Ok, None, None)
        }
        Ok(Ok(stream)) => converse(plan, stream).await,
    }
}

/// The check's conversation on a connected (and maybe TLS) stream.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(plan: &CheckPlan, mut stream: S) -> Judgement {
    let CheckMethod::Http { request, expect } = &plan.method else {
        return Judgement::new(true, CheckStatus::Layer4Ok, None, None);
    };
    let exchange = async {
        stream.write_all(request).await?;
        let mut response = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            let room = RESPONSE_LIMIT - response.len();
            response.extend_from_slice(&chunk[..n.min(room)]);
            let finished = n == 0 || response.len() >= RESPONSE_LIMIT;
            if let Some(judgement) = judge(&response, finished, expect.as_ref()) {
                return Ok::<_, std::io::Error>(judgement);
            }
        }
    };
    match tokio::time::timeout(plan.response_timeout, exchange).await {
        Ok(Ok(judgement)) => judgement,
        Ok(Err(e)) => Judgement::new(
            false,
            CheckStatus::Layer7InvalidResponse,
            None,
            Some(e.to_string()),
        ),
        Err(_) => Judgement::new(false, CheckStatus::Layer7Timeout, None, None),
    }
}

/// The running checks of one snapshot; dropping it stops them.
pub struct ProxyHealth {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ProxyHealth {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ProxyHealth {
    /// Starts one task per checked server of `snapshot` on `runtime` (the
    /// proxy's own, so checks never wait behind the daemon's loop). A
    /// reload starts a new `ProxyHealth` for the new snapshot and drops the
    /// old one; servers keep their UP/DOWN state (it lives in the
    /// registry's server state).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        snapshot: Arc<Snapshot>,
        loggers: Vec<Logger>,
    ) -> ProxyHealth {
        Self::start_reporting(runtime, snapshot, loggers, SharedLive::default())
    }

    /// [`ProxyHealth::start`], each check's latency going to `live` (the
    /// histogram of the stats page's /metrics).
    pub fn start_reporting(
        runtime: &tokio::runtime::Handle,
        snapshot: Arc<Snapshot>,
        loggers: Vec<Logger>,
        live: SharedLive,
    ) -> ProxyHealth {
        let tasks = plans(&snapshot)
            .into_iter()
            .map(|plan| {
                let snapshot = Arc::clone(&snapshot);
                // Each backend's events go to its own log targets.
                let logger = loggers.get(plan.backend).cloned().unwrap_or_default();
                let live = live.clone();
                runtime.spawn(async move { run(plan, snapshot, logger, live).await })
            })
            .collect();
        ProxyHealth { tasks }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

async fn run(plan: CheckPlan, snapshot: Arc<Snapshot>, logger: Logger, live: SharedLive) {
    let Some((backend, runtime)) = snapshot.backend(plan.backend) else {
        return;
    };
    let Some(state) = runtime.servers.get(plan.server) else {
        return;
    };
    let server = &backend.servers[plan.server];
    // Spread first checks over the interval, so they never come in a burst.
    tokio::time::sleep(spread(&backend.name, &server.name, plan.inter)).await;
    let mut health = BackendHealth::new(Instant::now());
    health.up = state.is_health_up();
    let mut tick = tokio::time::interval(plan.inter);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.admin() == AdminState::Maint {
            continue; // HAProxy does not check servers in maintenance.
        }
        if !state.checks_enabled() {
            // `disable health`: UP until checks are enabled again, which
            // start over from UP as at start-up.
            health.restart(true);
            state.set_streak(0);
            continue;
        }
        let started = Instant::now();
        let judgement = probe(&plan).await;
        let latency = started.elapsed();
        live.observe_server_check(&backend.name, &server.name, latency);
        state.set_last_check(LastCheck {
            ok: judgement.ok,
            detail: judgement.short(),
            at: SystemTime::now(),
        });
        let result = CheckResult {
            ok: judgement.ok,
            latency,
            detail: judgement.short(),
        };
        let changed = health.record(Instant::now(), result, plan.rise, plan.fall);
        // Shown at once as "UP, going down" / "DOWN, going up".
        state.set_streak(health.streak());
        let Some(up) = changed else {
            continue;
        };
        state.set_health(up);
        let (active, backups) = usable_counts(backend, &runtime.servers);
        runtime.state.note_usable(active + backups > 0);
        let transition = ServerTransition {
            backend: backend.name.clone(),
            server: server.name.clone(),
            backup: server.backup,
            up,
            check: Some(CheckOutcome {
                status: judgement.status,
                code: judgement.code,
                info: judgement.info.clone(),
                duration: Some(latency),
            }),
            active_servers: active,
            backup_servers: backups,
            sessions_active: state
                .current_conns
                .load(std::sync::atomic::Ordering::Relaxed),
            requeued: 0,
            queued: state.queued.load(std::sync::atomic::Ordering::Relaxed),
        };
        let message = transition.message();
        if up {
            info!("{message}");
        } else {
            warn!("{message}");
        }
        logger.emit(transition.severity(), &message);
        if !up && active == 0 && backups == 0 {
            let (severity, message) = crate::log::event::no_server_available(&backend.name);
            warn!("{message}");
            logger.emit(severity, &message);
        }
    }
}

/// Usable primary and backup servers of a backend now.
fn usable_counts(
    backend: &Backend,
    states: &[Arc<crate::proxy::snapshot::ServerState>],
) -> (u32, u32) {
    backend
        .servers
        .iter()
        .zip(states)
        .filter(|(_, state)| state.is_up())
        .fold((0, 0), |(active, backup), (server, _)| {
            if server.backup {
                (active, backup + 1)
            } else {
                (active + 1, backup)
            }
        })
}

/// A fixed offset within the interval, different per server.
fn spread(backend: &str, server: &str, interval: Duration) -> Duration {
    let h = backend
        .bytes()
        .chain([b'/'])
        .chain(server.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    Duration::from_millis(h % (interval.as_millis().max(1) as u64))
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
