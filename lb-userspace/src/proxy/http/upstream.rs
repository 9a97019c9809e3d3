//! Connections to servers: connect with `timeout connect`, HTTP/1.1 over
//! them, and a keep-alive pool keyed by server address (two connections to
//! the same address are interchangeable until TLS to servers exists). A
//! connection goes back to the pool only once its response has been read
//! to the end and hyper says it can take another request. The pool has a
//! part per proxy worker thread: a connection is reused by the thread that
//! runs it (no cross-thread wake-up per request, no shared lock).
use super::body::ProxyBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::{
    cell::Cell,
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::net::TcpStream;

/// Why a connection to a server could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timeout")]
    Timeout,
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
}

/// How long an idle server connection stays pooled (HAProxy's
/// `pool-purge-delay` default).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per server at most.
const MAX_IDLE_PER_SERVER: usize = 256;

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// Parts of the pool: worker threads beyond this share parts.
const POOL_PARTS: usize = 16;

thread_local! {
    /// The proxy worker this thread is (0 for any other thread).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as proxy worker `index`.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// What a pooled connection can be reused for: its server, and the SNI it
/// was opened with when that name depends on the request (`sni
/// req.hdr(host)`): a connection is reused only for the same name.
pub type PoolKey = (SocketAddr, Option<Arc<str>>);

type IdleByServer = Mutex<HashMap<PoolKey, Vec<Idle>>>;

/// Idle keep-alive connections by worker thread and server address.
pub struct Pool {
    parts: Vec<IdleByServer>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            parts: (0..POOL_PARTS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    /// The most recently used idle connection to `server` that is still open.
    pub fn take(&self, server: &PoolKey) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.part().lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(server)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < POOL_IDLE_TIMEOUT
                && entry.sender.is_ready()
                && !entry.sender.is_closed()
            {
                return Some(entry.sender);
            }
        }
        None
    }

    /// This thread's part of the pool.
    fn part(&self) -> &IdleByServer {
        &self.parts[WORKER.with(Cell::get) % POOL_PARTS]
    }

    /// Idle connections pooled for `server` now (all workers).
    pub fn idle_count(&self, server: SocketAddr) -> usize {
        self.parts
            .iter()
            .map(|part| {
                let idle = part.lock().unwrap_or_else(|p| p.into_inner());
                idle.iter()
                    .filter(|(key, _)| key.0 == server)
                    .map(|(_, list)| list.len())
                    .sum::<usize>()
            })
            .sum()
    }

    fn put(&self, server: PoolKey, sender: SendRequest<ProxyBody>) {
        let mut idle = self.part().lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(server).or_default();
        // Oldest first: only when the oldest has expired is there anything
        // to purge (no clock read per entry on every return).
        if list
            .first()
            .is_some_and(|e| e.since.elapsed() >= POOL_IDLE_TIMEOUT)
        {
            list.retain(|e| e.since.elapsed() < POOL_IDLE_TIMEOUT && !e.sender.is_closed());
        }
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Pools `sender` once its current exchange is over (the response body
    /// read to its end), if the connection stays open; waits at most `wait`.
    /// Usually hyper is ready again by then and no task is needed.
    pub fn recycle(
        self: &Arc<Self>,
        server: PoolKey,
        mut sender: SendRequest<ProxyBody>,
        wait: Duration,
    ) {
        if sender.is_ready() {
            self.put(server, sender);
            return;
        }
        if sender.is_closed() {
            return;
        }
        // Called from a body's end, which may be dropped while the runtime
        // shuts down: no runtime, no pooling.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::clone(self);
        runtime.spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(wait, sender.ready()).await {
                pool.put(server, sender);
            }
        });
    }

    /// Forgets every idle connection (they close when dropped).
    pub fn clear(&self) {
        for part in &self.parts {
            part.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// Opens an HTTP/1.1 connection to `server` within `timeout` (TLS first
/// when `tls` is given, the handshake within `timeout` too); the
/// connection's task runs until the server or the last sender closes it,
/// with upgrades enabled (WebSocket).
pub async fn connect(
    server: SocketAddr,
    tls: Option<&crate::proxy::tls::client::TlsTarget>,
    timeout: Duration,
) -> Result<SendRequest<ProxyBody>, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(server)).await {
        Ok(stream) => stream?,
        Err(_) => return Err(ConnectError::Timeout),
    };
    stream.set_nodelay(true)?;
    match tls {
        None => http_handshake(stream).await,
        Some(target) => {
            // HAProxy counts the TLS handshake in `timeout connect`.
            let handshake = crate::proxy::tls::client::handshake(target, stream);
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(stream)) => http_handshake(stream).await,
                Ok(Err(error)) => {
                    crate::proxy::tls::client::log_failure(server, &error);
                    Err(ConnectError::Tls(error))
                }
                Err(_) => Err(ConnectError::Timeout),
            }
        }
    }
}

async fn http_handshake<T>(stream: T) -> Result<SendRequest<ProxyBody>, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        // A server closing or resetting is seen by the request that uses
        // the connection; nothing more to report here.
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}
