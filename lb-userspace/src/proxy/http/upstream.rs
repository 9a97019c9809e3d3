//! Connections to servers: connect with `timeout connect` (and the TLS
//! handshake for `ssl` servers), and a keep-alive pool keyed by server
//! address and SNI. A connection goes back to the pool only once its
//! response has been read to the end and the exchange left it reusable
//! ([`super::origin`] decides and returns it). The pool has a
//! part per proxy worker thread: a connection is reused by the thread that
//! runs it (no cross-thread wake-up per request, no shared lock).
use super::origin::{ServerConn, ServerIo};
use crate::proxy::{batch::BatchedTcp, clock};
use std::{
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
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
}

/// How long an idle server connection stays pooled (HAProxy's
/// `pool-purge-delay` default).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per server at most.
const MAX_IDLE_PER_SERVER: usize = 256;

struct Idle {
    conn: ServerConn,
    since: Instant,
}

/// Parts of the pool: worker threads beyond this share parts.
const POOL_PARTS: usize = 16;

/// What a pooled connection can be reused for: its server, and the SNI it
/// was opened with when that name depends on the request (`sni
/// req.hdr(host)`): a connection is reused only for the same name.
pub type PoolKey = (SocketAddr, Option<Arc<str>>);

/// foldhash rather than SipHash: keys are server addresses (and SNI names),
/// hashed twice per request, and the seed is still random per process.
type IdleMap = HashMap<PoolKey, Vec<Idle>, foldhash::fast::RandomState>;

/// One worker's idle connections.
#[derive(Default)]
struct Part {
    idle: IdleMap,
    /// When to sweep the whole part next: a key whose connections expired
    /// or were all taken would otherwise stay (with `sni req.hdr(host)` a
    /// client chooses the keys), and an expired connection's descriptor
    /// with it.
    next_sweep: Option<Instant>,
}

type IdleByServer = Mutex<Part>;

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
    pub fn take(&self, server: &PoolKey) -> Option<ServerConn> {
        let mut part = self.part().lock().unwrap_or_else(|p| p.into_inner());
        let list = part.idle.get_mut(server)?;
        let now = clock::now();
        while let Some(mut entry) = list.pop() {
            let age = now.saturating_duration_since(entry.since);
            if age < POOL_IDLE_TIMEOUT && entry.conn.is_reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// This thread's part of the pool.
    fn part(&self) -> &IdleByServer {
        &self.parts[crate::proxy::spread::worker() % POOL_PARTS]
    }

    /// Idle connections pooled for `server` now (all workers).
    pub fn idle_count(&self, server: SocketAddr) -> usize {
        self.parts
            .iter()
            .map(|part| {
                let part = part.lock().unwrap_or_else(|p| p.into_inner());
                part.idle
                    .iter()
                    .filter(|(key, _)| key.0 == server)
                    .map(|(_, list)| list.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Keeps `conn` for the next request to `server` on this thread.
    pub(super) fn put(&self, server: PoolKey, conn: ServerConn) {
        self.put_at(server, conn, clock::now());
    }

    /// [`Pool::put`] at `now`; every [`POOL_IDLE_TIMEOUT`] it also sweeps
    /// this worker's part: expired connections close and emptied keys go.
    fn put_at(&self, server: PoolKey, conn: ServerConn, now: Instant) {
        let mut part = self.part().lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |e: &Idle| now.saturating_duration_since(e.since) < POOL_IDLE_TIMEOUT;
        match part.next_sweep {
            Some(at) if now < at => {}
            _ => {
                part.idle.retain(|_, list| {
                    list.retain(fresh);
                    !list.is_empty()
                });
                part.next_sweep = Some(now + POOL_IDLE_TIMEOUT);
            }
        }
        let list = part.idle.entry(server).or_default();
        // Oldest first: only when the oldest has expired is there anything
        // to purge.
        if list.first().is_some_and(|e| !fresh(e)) {
            list.retain(fresh);
        }
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push(Idle { conn, since: now });
        }
    }

    /// Keys pooled by this thread's part (tests).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.part()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .idle
            .len()
    }

    /// Forgets every idle connection (they close when dropped).
    pub fn clear(&self) {
        for part in &self.parts {
            part.lock().unwrap_or_else(|p| p.into_inner()).idle.clear();
        }
    }
}

/// Opens a connection to `server` within `timeout` (TLS first when `tls`
/// is given, the handshake within `timeout` too: HAProxy counts it in
/// `timeout connect`).
pub async fn connect(
    server: SocketAddr,
    tls: Option<&crate::proxy::tls::client::TlsTarget>,
    timeout: Duration,
) -> Result<ServerConn, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(server)).await {
        Ok(stream) => stream?,
        Err(_) => return Err(ConnectError::Timeout),
    };
    stream.set_nodelay(true)?;
    let Some(target) = tls else {
        return Ok(ServerConn::new(ServerIo::Plain(BatchedTcp::new(stream))));
    };
    let handshake = crate::proxy::tls::client::handshake(target, stream);
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(stream)) => Ok(ServerConn::new(ServerIo::Tls(Box::new(stream)))),
        Ok(Err(error)) => {
            crate::proxy::tls::client::log_failure(server, &error);
            Err(ConnectError::Tls(error))
        }
        Err(_) => Err(ConnectError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connections(count: usize) -> (Vec<ServerConn>, SocketAddr, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address");
        let mut conns = Vec::new();
        for _ in 0..count {
            let stream = TcpStream::connect(address).await.expect("connect");
            conns.push(ServerConn::new(ServerIo::Plain(BatchedTcp::new(stream))));
        }
        (conns, address, listener)
    }

    /// Keys chosen by clients (an SNI per Host) do not pile up: once their
    /// connections expire, the next sweep drops them.
    #[test]
    fn expired_keys_leave_the_pool() {
        crate::test_netns::block_on(|| async {
            let (mut conns, address, _listener) = connections(41).await;
            let pool = Pool::default();
            let start = Instant::now();
            let last = conns.pop().expect("a connection");
            for (i, conn) in conns.into_iter().enumerate() {
                pool.put_at(
                    (address, Some(format!("host{i}.example").into())),
                    conn,
                    start,
                );
            }
            assert_eq!(pool.keys(), 40);
            assert_eq!(pool.idle_count(address), 40);
            // Within the idle time nothing is swept.
            let later = start + POOL_IDLE_TIMEOUT / 2;
            let key: PoolKey = (address, None);
            pool.put_at(key.clone(), last, later);
            assert_eq!(pool.keys(), 41);
            // One idle time after the first sweep, the next put sweeps: only
            // the connection that is still fresh stays.
            let (mut more, _, _listener2) = connections(1).await;
            let swept_at = start + POOL_IDLE_TIMEOUT;
            pool.put_at(key, more.pop().expect("a connection"), swept_at);
            assert_eq!(pool.keys(), 1);
            assert_eq!(pool.idle_count(address), 2);
        })
    }
}
