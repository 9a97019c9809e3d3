//! Listening sockets of the proxy: bound with IP_FREEBIND (a VRRP backup
//! binds the VIP before it holds it), accepted under two connection limits
//! (the frontend's `maxconn` and the global one), as HAProxy does: while a
//! limit is reached the listener stops accepting and new connections wait
//! in the kernel's accept backlog.
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::Notify};

/// Accept backlog of every listener (HAProxy's default is the frontend's
/// maxconn; the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 4096;

/// How long a listener pauses after an accept error that would repeat at
/// once (out of file descriptors or memory), so it never spins.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds a TCP listener on `addr` with SO_REUSEADDR and IP_FREEBIND; IPv6
/// addresses are IPv6 only (an IPv4 bind on the same port is separate).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

/// [`bind`], not yet registered with a runtime (each proxy worker registers
/// its own copy of the descriptor).
pub fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The local address of a connection accepted on a listener bound to
/// `bind`: the bind itself when it names one address and port (a VIP: no
/// getsockname per connection, which HAProxy does not make either), else
/// what `ask` (the accepted socket) says.
pub fn accepted_on(bind: SocketAddr, ask: impl FnOnce() -> io::Result<SocketAddr>) -> SocketAddr {
    if bind.ip().is_unspecified() || bind.port() == 0 {
        ask().unwrap_or(bind)
    } else {
        bind
    }
}

/// What to do after an accept error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptErrorAction {
    /// A per-connection failure (the peer reset before accept): go on.
    Retry,
    /// The process or system is out of a resource: pause, then go on.
    Pause,
}

/// Classifies an accept error: running out of descriptors or memory repeats
/// on every call, so the listener pauses instead of spinning.
pub fn accept_error_action(error: &io::Error) -> AcceptErrorAction {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            AcceptErrorAction::Pause
        }
        _ => AcceptErrorAction::Retry,
    }
}

/// A connection limit whose maximum can change at run time (a reload
/// changing `maxconn`); 0 means unlimited.
#[derive(Debug, Default)]
pub struct Limit {
    current: AtomicUsize,
    max: AtomicUsize,
    released: Notify,
}

impl Limit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Limit {
            current: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            released: Notify::new(),
        })
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
        // A raised limit may let waiters in.
        self.released.notify_waiters();
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// A slot if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut current = self.current.load(Ordering::Relaxed);
        loop {
            let max = self.max.load(Ordering::Relaxed);
            if max != 0 && current >= max {
                return None;
            }
            match self.current.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(seen) => current = seen,
            }
        }
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between wakes us.
            released.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            released.await;
        }
    }
}

/// One connection counted against a [`Limit`]; released on drop.
#[derive(Debug)]
pub struct Slot(Arc<Limit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
        self.0.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_on_one_address_is_the_local_address_without_asking() {
        let asked = || -> io::Result<SocketAddr> { panic!("asked the socket") };
        for vip in ["198.18.0.10:80", "[fd00::10]:443"] {
            let vip: SocketAddr = vip.parse().expect("address");
            assert_eq!(accepted_on(vip, asked), vip);
        }
        let real: SocketAddr = "198.18.0.11:8080".parse().expect("address");
        for wildcard in ["0.0.0.0:8080", "[::]:8080", "198.18.0.11:0"] {
            let bind: SocketAddr = wildcard.parse().expect("address");
            assert_eq!(accepted_on(bind, || Ok(real)), real, "{wildcard}");
            // A socket that cannot say falls back to the bind.
            let gone = || Err(io::Error::other("gone"));
            assert_eq!(accepted_on(bind, gone), bind, "{wildcard}");
        }
    }

    #[test]
    fn limit_counts_and_releases() {
        let limit = Limit::new(2);
        let a = limit.try_acquire().expect("first");
        let _b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert_eq!(limit.current(), 1);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn zero_is_unlimited_and_max_changes_at_run_time() {
        let limit = Limit::new(0);
        let slots: Vec<_> = (0..1000).filter_map(|_| limit.try_acquire()).collect();
        assert_eq!(slots.len(), 1000);
        limit.set_max(1000);
        assert!(limit.try_acquire().is_none());
        limit.set_max(1001);
        assert!(limit.try_acquire().is_some());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_released_slot() {
        let limit = Limit::new(1);
        let held = limit.try_acquire().expect("slot");
        let waiter = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.acquire().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        let slot = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(limit.current(), 1);
        drop(slot);
        assert_eq!(limit.current(), 0);
    }

    #[test]
    fn binds_an_address_this_host_does_not_have() {
        crate::test_netns::block_on(|| async {
            // IP_FREEBIND: a VRRP backup binds the VIP before it holds it.
            // 198.18.0.0/15 is a benchmarking range no host here owns.
            let listener = bind("198.18.255.254:0".parse().expect("addr"));
            assert!(listener.is_ok(), "{listener:?}");
        })
    }

    #[test]
    fn descriptor_exhaustion_pauses() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(accept_error_action(&emfile), AcceptErrorAction::Pause);
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(accept_error_action(&aborted), AcceptErrorAction::Retry);
    }
}
