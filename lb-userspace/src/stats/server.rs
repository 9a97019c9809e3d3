//! The stats server: axum on a thread of its own with a single-threaded
//! runtime, so a page view, an export or a scrape never runs on the
//! daemon's loop (VRRP has its own thread too, and the proxy its own
//! runtime). Admin actions go to the daemon's loop as control requests,
//! exactly as `lbd set server` sends them.
use super::{
    auth::{authenticate, CsrfToken},
    config::StatsConfig,
    export,
    metrics::{self, SharedLive},
    page::{self, Viewer},
    sample::{Sample, Sampler},
};
use crate::control::{Call, Reply, Request, RuntimeState, ServerChange, ServerTarget};
use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde::Deserialize;
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// How long an action waits for the daemon's loop.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon's shutdown waits for requests in progress.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// The stats thread's nice value: against a busy proxy worker (nice 0) it
/// gets about a tenth of a CPU, so a page view or a scrape under load
/// waits a little rather than slowing the data path; on an idle machine
/// it runs at once.
pub(crate) const NICE: i32 = 10;

/// Lowers the calling thread's priority to [`NICE`] (on Linux the nice
/// value is per thread). Failing leaves it as it was, which only costs
/// the data path a little under load.
fn lower_priority() {
    // SAFETY: system calls on the calling thread, no memory involved.
    let tid = unsafe { libc::gettid() };
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) } != 0 {
        warn!(
            "stats: cannot lower the stats thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

struct App {
    config: StatsConfig,
    sampler: Sampler,
    token: CsrfToken,
    control: mpsc::Sender<Call>,
    live: SharedLive,
    rendered: Rendered,
}

/// The views every viewer gets alike (the fragment holds the CSRF token,
/// which is the same for every viewer of this server; the user name and
/// the action message are only in the page around it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum View {
    Metrics,
    Fragment,
    Csv,
    Json,
}

/// Each view rendered at most once per sample (so once per refresh
/// period), whatever the number of viewers and scrapers: the bytes are
/// shared (`Bytes` clones are a reference count).
#[derive(Default)]
pub(crate) struct Rendered {
    cache: std::sync::Mutex<Option<(Arc<Sample>, Views)>>,
}

/// The rendered bytes of each [`View`] of one sample.
type Views = [Option<Bytes>; 4];

impl Rendered {
    /// The bytes of `view` for `sample`, rendered by `render` only when
    /// this sample's are not there yet.
    pub(crate) fn get(
        &self,
        sample: &Arc<Sample>,
        view: View,
        render: impl FnOnce() -> String,
    ) -> Bytes {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.as_ref().is_some_and(|(s, _)| Arc::ptr_eq(s, sample)) {
            *cache = Some((Arc::clone(sample), Default::default()));
        }
        let Some((_, views)) = cache.as_mut() else {
            return Bytes::from(render());
        };
        views[view as usize]
            .get_or_insert_with(|| Bytes::from(render()))
            .clone()
    }
}

/// The running server; dropping it does not stop it, [`StatsServer::stop`]
/// or [`StatsServer::replace`] does.
pub struct StatsServer {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// A duplicate of the listening socket: a server replacing this one on
    /// the same bind serves on it at once, whatever this one still does.
    listener: std::net::TcpListener,
    pub config: StatsConfig,
    #[cfg(test)]
    pub(crate) token: String,
}

impl StatsServer {
    /// Binds `config.bind` (an error here is the caller's: the address is
    /// taken or not ours) and serves on a new thread.
    pub fn start(
        config: StatsConfig,
        instance: &str,
        control: mpsc::Sender<Call>,
        live: SharedLive,
    ) -> anyhow::Result<StatsServer> {
        let listener = std::net::TcpListener::bind(config.bind)
            .map_err(|e| anyhow::anyhow!("stats: binding {}: {e}", config.bind))?;
        Self::serve(config, listener, instance, control, live)
    }

    /// Replaces `old` by a server for `config` (none without `[stats]`)
    /// without waiting for `old`: it is told to stop and finishes its
    /// requests on its own thread. The daemon's loop calls this on reload,
    /// and an admin action in flight on the old server waits for that very
    /// loop: joining here could hold the loop for the action's timeout.
    /// On the same bind the new server takes over the listening socket, so
    /// no connection is refused in between.
    pub fn replace(
        old: Option<StatsServer>,
        config: Option<StatsConfig>,
        instance: &str,
        control: mpsc::Sender<Call>,
        live: SharedLive,
    ) -> anyhow::Result<Option<StatsServer>> {
        let reused = match (&old, &config) {
            (Some(old), Some(config)) if old.config.bind == config.bind => {
                old.listener.try_clone().ok()
            }
            _ => None,
        };
        if let Some(old) = old {
            old.stop_in_background();
        }
        let Some(config) = config else {
            return Ok(None);
        };
        let listener = match reused {
            Some(listener) => listener,
            None => std::net::TcpListener::bind(config.bind)
                .map_err(|e| anyhow::anyhow!("stats: binding {}: {e}", config.bind))?,
        };
        Self::serve(config, listener, instance, control, live).map(Some)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    fn serve(
        config: StatsConfig,
        listener: std::net::TcpListener,
        instance: &str,
        control: mpsc::Sender<Call>,
        live: SharedLive,
    ) -> anyhow::Result<StatsServer> {
        listener.set_nonblocking(true)?;
        let kept = listener.try_clone()?;
        let app = Arc::new(App {
            sampler: Sampler::new(instance.to_owned(), config.refresh),
            config: config.clone(),
            token: CsrfToken::random()?,
            control,
            live,
            rendered: Rendered::default(),
        });
        #[cfg(test)]
        let token = app.token.as_str().to_owned();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lbd-stats".into())
            .spawn(move || {
                lower_priority();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        warn!("stats: no runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!("stats: {e}");
                            return;
                        }
                    };
                    let router = Router::new().fallback(handle).with_state(app);
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        warn!("stats server stopped: {e}");
                    }
                });
            })?;
        info!(bind = %config.bind, uri = %config.uri, admin = config.admin, "stats page started");
        Ok(StatsServer {
            shutdown: Some(shutdown),
            thread: Some(thread),
            listener: kept,
            config,
            #[cfg(test)]
            token,
        })
    }

    /// Tells the server to stop accepting; requests in progress finish on
    /// its thread, which ends by itself. Never blocks.
    fn stop_in_background(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// At shutdown: stops accepting and waits a little (at most
    /// [`STOP_WAIT`]) for the requests in progress; the process exits
    /// after that anyway.
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let deadline = std::time::Instant::now() + STOP_WAIT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

fn unauthorized(realm: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page::unauthorized().into_string(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn typed(content_type: &'static str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = &app.config;
    let user = if config.users.is_empty() {
        None
    } else {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match authenticate(&config.users, header) {
            Some(user) => Some(user.to_owned()),
            None => return unauthorized(&config.realm),
        }
    };
    let path = uri.path();
    let route = if path == config.uri {
        Some("")
    } else {
        path.strip_prefix(config.uri.as_str())
            .and_then(|rest| rest.strip_prefix(';'))
    };
    match (method, route, path) {
        (Method::GET, _, "/metrics") if config.metrics => match app.sampler.get() {
            Ok(sample) => typed(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.rendered.get(&sample, View::Metrics, || {
                    metrics::render(&sample.report, &app.live)
                }),
            ),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
        },
        (Method::GET, Some(view), _) => get(&app, view, user.as_deref(), uri.query()),
        (Method::POST, Some(""), _) => post(&app, user.as_deref(), &body).await,
        (_, Some(_), _) => (StatusCode::METHOD_NOT_ALLOWED, "GET or POST only").into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    msg: Option<String>,
}

fn get(app: &App, view: &str, user: Option<&str>, query: Option<&str>) -> Response {
    let sample = match app.sampler.get() {
        Ok(sample) => sample,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    };
    let message = query
        .and_then(|q| serde_urlencoded::from_str::<PageQuery>(q).ok())
        .and_then(|q| q.msg);
    let viewer = Viewer {
        user,
        token: app.config.admin.then(|| app.token.as_str()),
        message: message.as_deref(),
    };
    // Every viewer shares the fragment; only the page around it is theirs.
    let fragment = || {
        app.rendered.get(&sample, View::Fragment, || {
            page::fragment(&sample, &viewer).into_string()
        })
    };
    match view {
        "" => typed(
            "text/html; charset=utf-8",
            page::full_page(&app.config, &sample, &viewer, &fragment()).into_string(),
        ),
        "fragment" => typed("text/html; charset=utf-8", fragment()),
        "csv" => typed(
            "text/csv; charset=utf-8",
            app.rendered.get(&sample, View::Csv, || {
                export::csv(&export::rows(&sample.report))
            }),
        ),
        "json" => typed(
            "application/json",
            app.rendered.get(&sample, View::Json, || {
                serde_json::to_string_pretty(&export::rows(&sample.report)).unwrap_or_default()
            }),
        ),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// An admin form: which row, what to do. Every field may be missing, so
/// that the token is checked before anything else is judged.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub token: Option<String>,
    pub kind: String,
    pub group: String,
    pub member: String,
    pub action: String,
    pub weight: Option<String>,
}

/// The control request an admin form stands for.
pub fn request_of(form: &ActionForm) -> Result<Request, String> {
    let change = match form.action.as_str() {
        "ready" => ServerChange::State(RuntimeState::Ready),
        "drain" => ServerChange::State(RuntimeState::Drain),
        "maint" => ServerChange::State(RuntimeState::Maint),
        "check-off" => ServerChange::Check(false),
        "check-on" => ServerChange::Check(true),
        "weight" => {
            let text = form.weight.as_deref().unwrap_or("").trim();
            match text.parse::<u32>() {
                Ok(w) if w <= 256 => ServerChange::Weight(w),
                _ => return Err(format!("weight \"{text}\" is not 0..=256")),
            }
        }
        other => return Err(format!("unknown action \"{other}\"")),
    };
    let target = match form.kind.as_str() {
        "xdp" => ServerTarget::Xdp,
        "proxy" => ServerTarget::Proxy,
        other => return Err(format!("unknown kind \"{other}\"")),
    };
    Ok(Request::SetServer {
        group: form.group.clone(),
        member: form.member.clone(),
        target: Some(target),
        change,
    })
}

async fn post(app: &App, user: Option<&str>, body: &[u8]) -> Response {
    if !app.config.admin {
        return (
            StatusCode::FORBIDDEN,
            "admin actions are off (stats.admin = false)",
        )
            .into_response();
    }
    let form: ActionForm = match serde_urlencoded::from_bytes(body) {
        Ok(form) => form,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad form: {e}")).into_response(),
    };
    if !app.token.matches(form.token.as_deref()) {
        warn!(
            "stats page action refused: missing or wrong CSRF token (user {})",
            user.unwrap_or("-")
        );
        return (StatusCode::FORBIDDEN, "missing or invalid CSRF token").into_response();
    }
    let who = user.unwrap_or("-");
    let target = format!("{}/{}", form.group, form.member);
    let reply = match request_of(&form) {
        Err(message) => Reply { ok: false, message },
        Ok(request) => call(&app.control, request).await,
    };
    if reply.ok {
        // The daemon applied it and wrote its state before answering: the
        // page the browser goes back to shows it.
        app.sampler.expire();
    }
    info!(
        ok = reply.ok,
        "stats page action by {who}: {} {target}: {}", form.action, reply.message
    );
    let message = format!("{}: {} by {who}: {}", target, form.action, reply.message);
    let query = serde_urlencoded::to_string([("msg", message)]).unwrap_or_default();
    let location = format!("{}?{query}", app.config.uri);
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

async fn call(control: &mpsc::Sender<Call>, request: Request) -> Reply {
    let (tx, rx) = oneshot::channel();
    if control.send((request, tx)).await.is_err() {
        return Reply {
            ok: false,
            message: "the daemon is stopping".into(),
        };
    }
    match tokio::time::timeout(ACTION_TIMEOUT, rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Reply {
            ok: false,
            message: "the daemon dropped the request".into(),
        },
        Err(_) => Reply {
            ok: false,
            message: "no answer from the daemon within 10 s".into(),
        },
    }
}
