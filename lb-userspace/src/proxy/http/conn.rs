//! One client connection in http mode: hyper's h1/h2c auto builder over a
//! socket wrapper that watches activity, and a watchdog that applies
//! HAProxy's client-side timeouts: `timeout http-request` from the first
//! byte of a request head (and from accept for the first request), `timeout
//! http-keep-alive` between requests, `timeout client` while a response
//! cannot be written. A request hyper cannot parse is answered 400 (431 for
//! a head over the size limit) by hyper, the connection closed, counted in
//! the frontend's request errors and logged as `<BADREQ>`.
use super::service;
use crate::log::{AccessRecord, RecordMode, SessionPhase, TerminationCause, TerminationState};
use crate::proxy::{
    acl::ConnInfo,
    config::FrontendTimeouts,
    runtime::Shared,
    snapshot::Snapshot,
    stats::{now_ms, Counters},
};
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::Instant,
};

/// Largest request head accepted (HAProxy's `tune.bufsize` default); a
/// larger one is answered 431 by hyper.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// What the watchdog and the requests of one connection share.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests being served (h2: streams).
    active: AtomicU32,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// When the connection last became idle (accept, or a response's end).
    idle_since_ms: AtomicU64,
    /// First byte of the next request head after idle; 0 = none yet.
    head_started_ms: AtomicU64,
    /// Since when a write to the client has been blocked; 0 = not blocked.
    write_blocked_ms: AtomicU64,
    /// Bytes received on the connection.
    bytes_read: AtomicU64,
    /// `bytes_read` when the last request ended: what a request sent is
    /// the difference (head and body).
    read_mark: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new() -> Arc<Self> {
        let activity = Activity::default();
        activity.idle_since_ms.store(now_ms(), Relaxed);
        Arc::new(activity)
    }

    /// A request enters the service; the guard marks its end.
    pub fn begin(self: &Arc<Self>) -> RequestActivity {
        self.active.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.head_started_ms.store(0, Relaxed);
        self.changed.notify_one();
        RequestActivity {
            activity: self.clone(),
            mark: self.read_mark.load(Relaxed),
        }
    }

    /// Ms between accept or the last response and this request's first
    /// byte (HAProxy's `Ti`), and from there to now (`TR`).
    pub fn idle_and_head_ms(&self, now: u64) -> (u64, u64) {
        let idle_since = self.idle_since_ms.load(Relaxed);
        let head = match self.head_started_ms.load(Relaxed) {
            0 => now,
            started => started,
        };
        (head.saturating_sub(idle_since), now.saturating_sub(head))
    }

    fn on_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Relaxed);
        if self.active.load(Relaxed) == 0 && self.head_started_ms.load(Relaxed) == 0 {
            self.head_started_ms.store(now_ms().max(1), Relaxed);
            self.changed.notify_one();
        }
    }

    /// The next moment a timeout may expire, and which.
    fn deadline(&self, timeouts: &FrontendTimeouts) -> (u64, Expiry) {
        if self.active.load(Relaxed) > 0 {
            return match self.write_blocked_ms.load(Relaxed) {
                0 => (now_ms() + ms(timeouts.client).max(1), Expiry::Recheck),
                since => (since + ms(timeouts.client), Expiry::Client),
            };
        }
        match self.head_started_ms.load(Relaxed) {
            0 => {
                let limit = if self.requests.load(Relaxed) == 0 {
                    timeouts.http_request
                } else {
                    timeouts.http_keep_alive
                };
                (self.idle_since_ms.load(Relaxed) + ms(limit), Expiry::Idle)
            }
            started => (started + ms(timeouts.http_request), Expiry::HttpRequest),
        }
    }
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Nothing expires here; compute again.
    Recheck,
    /// No request within `http-keep-alive` (or `http-request` for the first).
    Idle,
    /// A request head did not complete within `http-request` (slow loris).
    HttpRequest,
    /// The client did not take the response within `timeout client`.
    Client,
}

/// One request in service; marks the connection idle when dropped.
#[derive(Debug)]
pub struct RequestActivity {
    activity: Arc<Activity>,
    mark: u64,
}

impl RequestActivity {
    /// Bytes the client sent since the previous request ended: this
    /// request's head and body (HAProxy's `%U`).
    pub fn bytes_from_client(&self) -> u64 {
        self.activity
            .bytes_read
            .load(Relaxed)
            .saturating_sub(self.mark)
    }
}

impl Drop for RequestActivity {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity
            .read_mark
            .store(activity.bytes_read.load(Relaxed), Relaxed);
        if activity.active.fetch_sub(1, Relaxed) == 1 {
            activity.idle_since_ms.store(now_ms(), Relaxed);
        }
        activity.changed.notify_one();
    }
}

/// A client connection as the request phases see it.
pub struct ConnContext {
    pub shared: Arc<Shared>,
    pub frontend: Arc<str>,
    /// The snapshot current at accept: used when a reload removed the
    /// frontend while the connection is open.
    pub accepted_snapshot: Arc<Snapshot>,
    pub info: ConnInfo,
    pub accept_date: SystemTime,
    pub activity: Arc<Activity>,
    /// The frontend's counters, looked up once per connection.
    pub counters: Arc<Counters>,
}

/// Counts bytes both ways into the frontend's counters and feeds the
/// watchdog. `S` is the socket, or the TLS stream over it.
struct WatchedIo<S> {
    stream: S,
    activity: Arc<Activity>,
    counters: Arc<Counters>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            Counters::add(&this.counters.bytes_in, read as u64);
            this.activity.on_read(read as u64);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.note_write(&result);
        if let Poll::Ready(Ok(n)) = result {
            Counters::add(&this.counters.bytes_out, n as u64);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.note_write(&result);
        if let Poll::Ready(Ok(n)) = result {
            Counters::add(&this.counters.bytes_out, n as u64);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl<S> WatchedIo<S> {
    fn note_write<T>(&self, result: &Poll<T>) {
        let blocked = &self.activity.write_blocked_ms;
        match result {
            Poll::Pending => {
                if blocked.load(Relaxed) == 0 {
                    blocked.store(now_ms().max(1), Relaxed);
                    self.activity.changed.notify_one();
                }
            }
            Poll::Ready(_) => blocked.store(0, Relaxed),
        }
    }
}

/// Serves one accepted client connection until it closes: the socket, or
/// the TLS stream of an `ssl` bind (`info.handshake` then says which
/// protocol ALPN chose).
pub async fn serve<S>(
    stream: S,
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    frontend: Arc<str>,
    info: ConnInfo,
    timeouts: FrontendTimeouts,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let alpn_h2 = info.handshake.as_ref().map(|facts| facts.is_h2());
    let counters = shared.counters.frontends.get(&frontend);
    let activity = Activity::new();
    let context = Arc::new(ConnContext {
        shared: shared.clone(),
        frontend: frontend.clone(),
        accepted_snapshot: snapshot,
        info,
        accept_date: SystemTime::now(),
        activity: activity.clone(),
        counters: counters.clone(),
    });
    let io = TokioIo::new(WatchedIo {
        stream,
        activity: activity.clone(),
        counters: counters.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Over TLS, ALPN decided the protocol; in clear, hyper tells h2c by
    // its preface.
    builder = match alpn_h2 {
        Some(true) => builder.http2_only(),
        Some(false) => builder.http1_only(),
        None => builder,
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog applies http-request and http-keep-alive exactly;
        // hyper's own head timer is the backstop for the longer of the two.
        .header_read_timeout(timeouts.http_request.max(timeouts.http_keep_alive))
        .max_buf_size(MAX_REQUEST_HEAD.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_REQUEST_HEAD as u32);
    let service = {
        let context = context.clone();
        service_fn(move |request| service::handle(request, context.clone()))
    };
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut shutting_down = false;
    let outcome = loop {
        let (deadline_ms, expiry) = activity.deadline(&timeouts);
        let wait = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let changed = activity.changed.notified();
        tokio::select! {
            result = connection.as_mut() => break result.err(),
            _ = changed => continue,
            _ = tokio::time::sleep_until(Instant::now() + wait) => {
                let (again_ms, again) = activity.deadline(&timeouts);
                if again != expiry || again_ms > now_ms() {
                    continue;
                }
                match expiry {
                    Expiry::Recheck => continue,
                    Expiry::Idle if !shutting_down => {
                        // Idle keep-alive (or nothing at all since accept):
                        // close quietly, as HAProxy does.
                        shutting_down = true;
                        connection.as_mut().graceful_shutdown();
                        continue;
                    }
                    Expiry::Idle => return,
                    Expiry::HttpRequest => {
                        log_connection_error(&context, &counters, 408, TerminationCause::ClientTimeout);
                        return;
                    }
                    // The client stopped reading the response: close (the
                    // request's log line shows the client abort).
                    Expiry::Client => return,
                }
            }
        }
    };
    if let Some(error) = outcome {
        classify_error(&context, &counters, error.as_ref());
    }
}

/// A connection that ended in an error: a request hyper rejected is a
/// request error (HAProxy's `ereq`) and a `<BADREQ>` log line.
fn classify_error(
    context: &ConnContext,
    counters: &Counters,
    error: &(dyn std::error::Error + Send + Sync + 'static),
) {
    let Some(error) = error.downcast_ref::<hyper::Error>() else {
        return;
    };
    if error.is_parse_too_large() {
        log_connection_error(context, counters, 431, TerminationCause::ProxyAbort);
    } else if error.is_parse() {
        log_connection_error(context, counters, 400, TerminationCause::ProxyAbort);
    } else if error.is_timeout() {
        log_connection_error(context, counters, 408, TerminationCause::ClientTimeout);
    }
}

fn log_connection_error(
    context: &ConnContext,
    counters: &Counters,
    status: u16,
    cause: TerminationCause,
) {
    Counters::add(&counters.request_errors, 1);
    counters.count_response(status);
    let mut record = AccessRecord::new(
        RecordMode::Http,
        context.info.src,
        context.info.dst,
        context.frontend.clone(),
        context.accept_date,
    );
    record.frontend_tls = context.info.tls;
    record.status = Some(status);
    record.termination = TerminationState::new(cause, SessionPhase::Request);
    let (idle, head) = context.activity.idle_and_head_ms(now_ms());
    record.timers.idle = Some(Duration::from_millis(idle));
    record.timers.request = None;
    record.timers.total = Duration::from_millis(idle + head);
    record.timers.active = Duration::from_millis(head);
    // A connection that sent nothing is what `dontlognull` leaves out.
    record.bytes_from_client = context.activity.bytes_read.load(Relaxed);
    context
        .shared
        .log(&context.accepted_snapshot, &context.frontend, record);
}
