//! Unit tests that open sockets run in a network namespace of their own,
//! with only its loopback up: the test rules keep every test's traffic
//! inside namespaces the test creates, never in the host's (root)
//! namespace. Creating one needs root, as the namespace tests do.
use std::future::Future;

/// Runs `test` on a thread of its own in a fresh network namespace; the
/// threads and processes it starts inherit the namespace. A panic in the
/// test is the caller's panic, with its message.
pub fn run<R: Send>(test: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare(CLONE_NEWNET): the tests run as root");
                let up = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .expect("ip link set lo up");
                assert!(up.success(), "ip link set lo up: {up}");
                test()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// [`run`] for an async test, on a current-thread runtime with time and
/// I/O (what `#[tokio::test]` gives).
pub fn block_on<F: Future>(test: impl FnOnce() -> F + Send) -> F::Output
where
    F::Output: Send,
{
    run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test())
    })
}

/// [`block_on`] on a multi-thread runtime: what runs there is not on a
/// proxy worker (`proxy::batch` writes directly).
pub fn block_on_off_worker<F: Future>(test: impl FnOnce() -> F + Send) -> F::Output
where
    F::Output: Send,
{
    run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace is a new one, with loopback and no route out (the
    /// host's namespace has a default route).
    #[test]
    fn a_test_gets_a_namespace_with_loopback_only() {
        let netns = || std::fs::read_link("/proc/thread-self/ns/net").expect("netns");
        let host = netns();
        let (inside, loopback, route_out) = run(|| {
            let loopback = std::net::TcpListener::bind("127.0.0.1:0").is_ok();
            let route_out = std::net::UdpSocket::bind("0.0.0.0:0")
                .and_then(|s| s.connect("198.18.0.1:9"))
                .is_ok();
            (netns(), loopback, route_out)
        });
        assert_ne!(inside, host);
        assert!(loopback, "loopback is up");
        assert!(!route_out, "a route out of the test's namespace");
        assert_eq!(block_on(|| async { 7 }), 7);
    }
}
