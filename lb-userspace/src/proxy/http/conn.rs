//! One client connection in http mode: lbd's HTTP/1 server (`h1`), or
//! hyper's HTTP/2 server when ALPN chose h2 or a cleartext client opens
//! with HTTP/2's preface, over a socket wrapper that watches activity, and
//! a watchdog that applies HAProxy's client-side timeouts: `timeout
//! http-request` from the first byte of a request head (and from accept
//! for the first request), `timeout http-keep-alive` between requests,
//! `timeout client` while a response cannot be written. A request head
//! that cannot be parsed is answered 400 (431 for one over the size limit),
//! the connection closed, counted in the frontend's request errors and
//! logged as `<BADREQ>`.
use super::{h1, service};
use crate::log::{AccessRecord, RecordMode, SessionPhase, TerminationCause, TerminationState};
use crate::proxy::{
    acl::ConnInfo,
    clock,
    config::FrontendTimeouts,
    runtime::Shared,
    snapshot::{ServerSlot, Snapshot},
    stats::{now_ms, Counters},
};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{
    future::Future,
    io,
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// Largest request head accepted (HAProxy's `tune.bufsize` default); a
/// larger one is answered 431.
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
    /// Bytes written to the client on the connection.
    bytes_written: AtomicU64,
    /// `bytes_written` when the current request began.
    write_mark: AtomicU64,
    /// A record waits in `logs` for its response's last bytes to be written.
    has_pending: AtomicBool,
    logs: Mutex<PendingLogs>,
    /// HTTP/1 `timeout server` while the response head is awaited: the
    /// deadline (0 = none) and whether the watchdog found it passed. The
    /// watchdog runs in the connection's own task, which polls the request
    /// right after, so the request sees the flag without a timer of its own.
    server_deadline_ms: AtomicU64,
    server_timed_out: AtomicBool,
    /// The longest the watchdog sleeps without looking at the deadlines
    /// (the connection's shortest timeout): a `timeout server` shorter than
    /// this could be seen late, so it keeps a timer of its own.
    watch_interval_ms: u64,
}

/// Records whose response is not written out yet, and whether the
/// connection is gone (then nothing more will be written).
#[derive(Default)]
struct PendingLogs {
    closed: bool,
    records: Vec<PendingLog>,
}

impl std::fmt::Debug for PendingLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogs")
            .field("closed", &self.closed)
            .field("records", &self.records.len())
            .finish()
    }
}

/// A finished request's record, completed when it is logged: HAProxy's
/// connection counts at log time and the bytes the client was sent.
pub struct PendingLog {
    pub record: AccessRecord,
    pub snapshot: Arc<Snapshot>,
    pub backend: Option<Arc<Counters>>,
    pub server: Option<Arc<Counters>>,
    /// `bytes_written` when the response began: `%B` is what was written
    /// since (head and body, as HAProxy counts). `None`: the record's count
    /// stands (HTTP/2, where streams share the connection).
    pub write_mark: Option<u64>,
    /// Likewise `bytes_read` for `%U` (a tunnel counts what it relayed).
    pub read_mark: Option<u64>,
    /// The server slot, freed once the line is logged: as in HAProxy, a
    /// request waiting for it is not yet on the server at log time.
    pub slot: Option<ServerSlot>,
}

impl Activity {
    fn new(watch_interval_ms: u64) -> Arc<Self> {
        let activity = Activity {
            watch_interval_ms,
            ..Activity::default()
        };
        activity.idle_since_ms.store(now_ms(), Relaxed);
        Arc::new(activity)
    }

    /// Bounds `exchange` (an HTTP/1 request awaiting its response head) by
    /// `timeout server` through the connection's watchdog. `Err` gives it
    /// back when the watchdog could see that timeout late (it needs a timer
    /// of its own then). The bounded future ends in `Err(ServerTimedOut)`
    /// once the deadline has passed.
    pub fn time_server<F: Future>(
        &self,
        timeout: Duration,
        exchange: F,
    ) -> Result<ServerDeadline<'_, F>, F> {
        let timeout_ms = ms(timeout);
        if timeout_ms < self.watch_interval_ms {
            return Err(exchange);
        }
        Ok(ServerDeadline {
            exchange,
            activity: self,
            timeout_ms,
            armed: false,
        })
    }

    /// Requests started on this connection so far.
    pub fn requests_started(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// A request enters the service; the guard marks its end.
    pub fn begin(self: &Arc<Self>) -> RequestActivity {
        self.active.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.head_started_ms.store(0, Relaxed);
        self.write_mark
            .store(self.bytes_written.load(Relaxed), Relaxed);
        RequestActivity {
            activity: self.clone(),
            mark: self.read_mark.load(Relaxed),
        }
    }

    /// `bytes_written` when the current request began.
    pub fn write_mark(&self) -> u64 {
        self.write_mark.load(Relaxed)
    }

    /// `bytes_read` when the current request began.
    pub fn read_mark(&self) -> u64 {
        self.read_mark.load(Relaxed)
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
        }
    }

    /// The next moment a timeout may expire, and which.
    fn deadline(&self, timeouts: &FrontendTimeouts) -> (u64, Expiry) {
        if self.active.load(Relaxed) > 0 {
            let client = match self.write_blocked_ms.load(Relaxed) {
                0 => (now_ms() + ms(timeouts.client).max(1), Expiry::Recheck),
                since => (since + ms(timeouts.client), Expiry::Client),
            };
            return match self.server_deadline_ms.load(Relaxed) {
                0 => client,
                server if server <= client.0 => (server, Expiry::Server),
                _ => client,
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
    /// An HTTP/1 request's response head did not come within `timeout
    /// server` ([`Activity::time_server`]).
    Server,
}

/// The server did not answer within `timeout server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTimedOut;

pin_project_lite::pin_project! {
    /// A request to a server bounded by `timeout server` through the
    /// connection's watchdog ([`Activity::time_server`]).
    pub struct ServerDeadline<'a, F> {
        #[pin]
        exchange: F,
        activity: &'a Activity,
        timeout_ms: u64,
        armed: bool,
    }

    impl<'a, F> PinnedDrop for ServerDeadline<'a, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.armed {
                this.activity.server_deadline_ms.store(0, Relaxed);
                this.activity.server_timed_out.store(false, Relaxed);
            }
        }
    }
}

impl<F: Future> Future for ServerDeadline<'_, F> {
    type Output = Result<F::Output, ServerTimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let activity = *this.activity;
        if !*this.armed {
            *this.armed = true;
            activity.server_timed_out.store(false, Relaxed);
            activity
                .server_deadline_ms
                .store(now_ms() + *this.timeout_ms, Relaxed);
        } else if activity.server_timed_out.load(Relaxed) {
            return Poll::Ready(Err(ServerTimedOut));
        }
        this.exchange.poll(cx).map(Ok)
    }
}

/// One request in service; marks the connection idle when dropped.
#[derive(Debug)]
pub struct RequestActivity {
    activity: Arc<Activity>,
    mark: u64,
}

impl RequestActivity {
    /// `bytes_read` when this request began.
    pub fn read_mark(&self) -> u64 {
        self.mark
    }

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
    /// The client socket sends at the end of the worker's pass by itself
    /// (`proxy::batch`): responses need no deferral.
    pub sends_at_pass_end: bool,
}

impl ConnContext {
    /// Logs `pending` once its response has been written out (HTTP/1: the
    /// next flush of the connection), or now if it has nothing to wait for.
    pub fn log_when_written(&self, pending: PendingLog) {
        if pending.write_mark.is_some() {
            let mut logs = self.activity.logs.lock().unwrap_or_else(|p| p.into_inner());
            if !logs.closed {
                logs.records.push(pending);
                self.activity.has_pending.store(true, Relaxed);
                return;
            }
        }
        self.log_now(pending);
    }

    /// Completes `pending` with the counts and bytes of now and logs it.
    pub fn log_now(&self, pending: PendingLog) {
        let PendingLog {
            mut record,
            snapshot,
            backend,
            server,
            write_mark,
            read_mark,
            slot,
        } = pending;
        let activity = &self.activity;
        if let Some(mark) = write_mark {
            let written = activity.bytes_written.load(Relaxed);
            record.bytes_to_client = written.saturating_sub(mark);
            // What a later error page of this connection is counted from.
            activity.write_mark.store(written, Relaxed);
        }
        if let Some(mark) = read_mark {
            record.bytes_from_client = activity.bytes_read.load(Relaxed).saturating_sub(mark);
        }
        let count = |c: &Counters| u32::try_from(c.current()).unwrap_or(u32::MAX);
        let concurrency = &mut record.concurrency;
        concurrency.process = self.shared.counters.connections();
        concurrency.frontend = count(&self.counters);
        concurrency.backend = backend.as_deref().map_or(0, count);
        concurrency.server = server.as_deref().map_or(0, count);
        self.shared.log(&snapshot, &self.frontend, record);
        drop(slot);
    }

    /// Logs what waited for the connection's writes (all of it is out).
    fn log_written(&self) {
        if !self.activity.has_pending.load(Relaxed) {
            return;
        }
        // Drained under the lock, so the vector keeps its capacity: taking
        // it out cost an allocation per request. Logging never comes back
        // to this lock (it completes the record, hands it to the sinks and
        // frees the server slot).
        let mut logs = self.activity.logs.lock().unwrap_or_else(|p| p.into_inner());
        self.activity.has_pending.store(false, Relaxed);
        for pending in logs.records.drain(..) {
            self.log_now(pending);
        }
    }

    /// The connection is gone: what still waits is logged now, and
    /// anything finished later is logged at once.
    fn log_closed(&self) {
        self.activity
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.activity.has_pending.store(true, Relaxed);
        self.log_written();
    }
}

/// Logs whatever still waits when the connection's serving ends (declared
/// before the connection, so it runs after the connection and its bodies
/// are dropped).
struct CloseLogs(Arc<ConnContext>);

impl Drop for CloseLogs {
    fn drop(&mut self) {
        self.0.log_closed();
    }
}

/// Counts bytes both ways into the frontend's counters and feeds the
/// watchdog; a flush that completes logs the records that waited for it.
/// `S` is the socket, or the TLS stream over it.
struct WatchedIo<S> {
    stream: S,
    context: Arc<ConnContext>,
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
            this.activity.bytes_written.fetch_add(n as u64, Relaxed);
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
            this.activity.bytes_written.fetch_add(n as u64, Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            // Each response ends with a flush (`h1`; hyper's HTTP/2 too).
            this.context.log_written();
        }
        result
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
    sends_at_pass_end: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let alpn_h2 = info.handshake.as_ref().map(|facts| facts.is_h2());
    let handshake_time = info
        .handshake
        .as_ref()
        .map_or(Duration::ZERO, |facts| facts.handshake_time);
    let counters = shared.counters.frontends.get(&frontend);
    // The watchdog's longest sleep (see `Watch::run`).
    let shortest = [
        timeouts.client,
        timeouts.http_request,
        timeouts.http_keep_alive,
    ]
    .into_iter()
    .map(ms)
    .filter(|&t| t > 0)
    .min()
    .unwrap_or(1);
    let activity = Activity::new(shortest);
    let context = Arc::new(ConnContext {
        shared: shared.clone(),
        frontend: frontend.clone(),
        accepted_snapshot: snapshot,
        info,
        // HAProxy's accept date is before the TLS handshake (`Th`).
        accept_date: SystemTime::now() - handshake_time,
        activity: activity.clone(),
        counters: counters.clone(),
        sends_at_pass_end,
    });
    let _close_logs = CloseLogs(context.clone());
    let io = WatchedIo {
        stream,
        context: context.clone(),
        activity: activity.clone(),
        counters: counters.clone(),
    };
    let watch = Watch {
        activity: &activity,
        timeouts: &timeouts,
        context: &context,
        counters: &counters,
        shortest,
    };
    // Over TLS, ALPN decided the protocol; in clear, the first bytes tell
    // HTTP/2's preface from an HTTP/1 request.
    let io = if alpn_h2 == Some(true) {
        h1::Prefixed::new(io, bytes::Bytes::new())
    } else {
        let serving = pin!(h1::serve(io, context.clone(), alpn_h2.is_none()));
        match watch.run(serving, |_| false).await {
            Some(h1::Ended::H2c(io)) => io,
            Some(h1::Ended::Refused(error)) => {
                log_connection_error(
                    &context,
                    &counters,
                    error.status(),
                    TerminationCause::ProxyAbort,
                );
                return;
            }
            Some(h1::Ended::Closed) | None => return,
        }
    };
    // hyper's other HTTP/2 settings stay (200 streams, 1 MiB windows, 16
    // KiB frames): HAProxy's 100 streams and 65535-byte windows cost the
    // same CPU per request under h2load (bench/RESULTS.md, session 6):
    // small responses never fill a window.
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_REQUEST_HEAD as u32);
    let service = {
        let context = context.clone();
        // Boxed: hyper spawns each stream's future as a task of its own,
        // and the request's future (3.4 KB) was copied whole at each step
        // of the spawn (memmove was 4.5% of the proxy's HTTP/2 profile).
        service_fn(move |request| Box::pin(service::handle(request, context.clone())))
    };
    let connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    let ended = watch
        .run(connection, |connection| {
            connection.graceful_shutdown();
            true
        })
        .await;
    if let Some(Err(error)) = ended {
        classify_error(&context, &counters, &error);
    }
}

/// The connection's watchdog: applies the client-side timeouts to a
/// connection future it runs.
struct Watch<'a> {
    activity: &'a Activity,
    timeouts: &'a FrontendTimeouts,
    context: &'a ConnContext,
    counters: &'a Counters,
    /// The longest it sleeps without looking (the shortest timeout).
    shortest: u64,
}

impl Watch<'_> {
    /// How long to sleep from `now` (ms) before looking again: until the
    /// current deadline or the shortest timeout from now, whichever is
    /// first; or the expiry that is due now.
    fn next_look(&self, now: u64) -> Result<u64, Expiry> {
        let (deadline_ms, expiry) = self.activity.deadline(self.timeouts);
        if expiry == Expiry::Recheck || deadline_ms > now {
            Ok(deadline_ms.min(now + self.shortest).saturating_sub(now))
        } else {
            Err(expiry)
        }
    }

    /// Runs `connection` until it ends (`Some`) or a timeout ends it
    /// (`None`). An idle connection is first offered `graceful`, which
    /// says whether it shuts down on its own (HTTP/2 sends GOAWAY).
    async fn run<F: Future>(
        &self,
        mut connection: Pin<&mut F>,
        mut graceful: impl FnMut(Pin<&mut F>) -> bool,
    ) -> Option<F::Output> {
        let (activity, shortest) = (self.activity, self.shortest);
        // The watchdog is never told about activity (that cost a wake-up
        // and a timer per request): it sleeps until the current deadline
        // or the shortest timeout from now, whichever is first. Any later
        // change of state starts a deadline at least that far away, so
        // waking then and computing again is never late, and the deadline
        // it finds is exact. The first sleep is computed here too, not
        // left to a zero-length sleep: the timer wheel's clock advances
        // only when the driver turns, so such a sleep was registered as a
        // timer earlier than any other, and tokio wakes its own driver for
        // one (an eventfd write per connection).
        let in_ms =
            |ms: u64| tokio::time::Instant::from_std(clock::now()) + Duration::from_millis(ms);
        let watchdog = tokio::time::sleep_until(in_ms(self.next_look(now_ms()).unwrap_or(0)));
        tokio::pin!(watchdog);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => return Some(result),
                _ = watchdog.as_mut() => {
                    let expiry = match self.next_look(now_ms()) {
                        Ok(wait) => {
                            watchdog.as_mut().reset(in_ms(wait));
                            continue;
                        }
                        Err(expiry) => expiry,
                    };
                    match expiry {
                        Expiry::Recheck => continue,
                        // Idle keep-alive (or nothing at all since accept):
                        // close quietly, as HAProxy does.
                        Expiry::Idle if !shutting_down && graceful(connection.as_mut()) => {
                            shutting_down = true;
                            watchdog.as_mut().reset(Instant::now());
                            continue;
                        }
                        Expiry::Idle => return None,
                        Expiry::Server => {
                            // The request sees the flag when the connection
                            // is polled next, on this very turn of the loop.
                            activity.server_deadline_ms.store(0, Relaxed);
                            activity.server_timed_out.store(true, Relaxed);
                            watchdog.as_mut().reset(Instant::now() + Duration::from_millis(shortest));
                            continue;
                        }
                        Expiry::HttpRequest => {
                            log_connection_error(self.context, self.counters, 408, TerminationCause::ClientTimeout);
                            return None;
                        }
                        // The client stopped reading the response: close (the
                        // request's log line shows the client abort).
                        Expiry::Client => return None,
                    }
                }
            }
        }
    }
}

/// An HTTP/2 connection that ended in an error: a request hyper rejected
/// is a request error (HAProxy's `ereq`) and a `<BADREQ>` log line.
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
    context.log_now(PendingLog {
        record,
        snapshot: context.accepted_snapshot.clone(),
        backend: None,
        server: None,
        // The error page written; a connection that sent nothing is
        // what `dontlognull` leaves out.
        write_mark: Some(context.activity.write_mark()),
        read_mark: Some(context.activity.read_mark()),
        slot: None,
    });
}
