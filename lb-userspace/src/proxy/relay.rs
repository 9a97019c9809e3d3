//! Byte relays between two connections, both directions at once, with
//! half-close (one side's end of stream becomes a FIN on the other, the
//! other direction goes on) and an inactivity timeout over both
//! directions. Engines: a user-space copy for any stream (upgraded HTTP
//! connections); for two TCP sockets, a copy that turns to `splice(2)`
//! through a pipe (the bytes stay in the kernel) once a direction carries
//! bulk data, as HAProxy's `option splice-auto`: small messages (requests
//! and responses) cost fewer system calls copied, long transfers less CPU
//! spliced; and `splice(2)` throughout, for comparison.
use crate::proxy::{
    batch::{BatchWriter, BatchedTcp},
    clock,
    pass::behind_queued,
    stats::now_ms,
};
use std::{
    future::Future,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::Interest,
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// Bytes moved per read (and the pipe's capacity for splice).
const CHUNK: usize = 64 * 1024;
/// The copy buffer of each direction (HAProxy's `tune.bufsize`): a read
/// that fills it means bulk data, which the adaptive relay then splices.
const COPY_CHUNK: usize = 16 * 1024;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both directions reached end of stream.
    Closed,
    /// No byte either way within the inactivity timeout.
    TimedOut,
    /// A read or write failed (reset); `client` tells which side.
    Failed { client: bool },
}

/// Bytes each way and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOutcome {
    /// Client to server.
    pub up: u64,
    /// Server to client.
    pub down: u64,
    pub end: RelayEnd,
}

/// Running totals the caller may read while the relay runs.
#[derive(Debug, Default)]
pub struct RelayMeter {
    pub up: AtomicU64,
    pub down: AtomicU64,
    last_activity_ms: AtomicU64,
}

impl RelayMeter {
    fn touch(&self) {
        self.last_activity_ms.store(now_ms(), Relaxed);
    }
}

/// The inactivity timeout over both directions of a relay.
struct IdleTimer {
    idle_ms: u64,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The timer was polled since it was last set: it holds the task's
    /// waker and needs no poll before its deadline.
    armed: bool,
}

impl IdleTimer {
    fn new(idle: Duration, meter: &RelayMeter) -> IdleTimer {
        meter.touch();
        IdleTimer {
            idle_ms: idle.as_millis() as u64,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
        }
    }

    /// Ready once nothing moved for the idle time. The timer is polled only
    /// when it is due or set anew, not at every wake-up by the sockets (a
    /// timer poll per wake-up was 5% of tcp mode's user time).
    fn poll_expired(&mut self, meter: &RelayMeter, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed && tokio::time::Instant::from_std(clock::now()) < self.timer.deadline() {
            return Poll::Pending;
        }
        loop {
            let last = meter.last_activity_ms.load(Relaxed);
            let now = now_ms();
            if now.saturating_sub(last) >= self.idle_ms {
                return Poll::Ready(());
            }
            let wait = Duration::from_millis(last + self.idle_ms - now);
            let deadline = tokio::time::Instant::from_std(clock::now()) + wait;
            self.timer.as_mut().reset(deadline);
            self.armed = true;
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// Which way a failed copy was reading.
struct CopyError {
    reading_client: bool,
}

/// Copies `client` <-> `server` until both ends close, either fails, or
/// nothing moves for `idle`.
pub async fn copy<C, S>(client: C, server: S, idle: Duration, meter: &RelayMeter) -> RelayOutcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = copy_half(&mut client_read, &mut server_write, &meter.up, meter, true);
    let down = copy_half(
        &mut server_read,
        &mut client_write,
        &meter.down,
        meter,
        false,
    );
    let both = async { tokio::try_join!(up, down) };
    finish(both, idle, meter).await
}

async fn finish<F>(both: F, idle: Duration, meter: &RelayMeter) -> RelayOutcome
where
    F: std::future::Future<Output = Result<(u64, u64), CopyError>>,
{
    let mut both = std::pin::pin!(both);
    let mut idle = IdleTimer::new(idle, meter);
    let end = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = both.as_mut().poll(cx) {
            return Poll::Ready(match result {
                Ok(_) => RelayEnd::Closed,
                Err(error) => RelayEnd::Failed {
                    client: error.reading_client,
                },
            });
        }
        idle.poll_expired(meter, cx).map(|()| RelayEnd::TimedOut)
    })
    .await;
    RelayOutcome {
        up: meter.up.load(Relaxed),
        down: meter.down.load(Relaxed),
        end,
    }
}

async fn copy_half<R, W>(
    reader: &mut R,
    writer: &mut W,
    total: &AtomicU64,
    meter: &RelayMeter,
    reading_client: bool,
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let fail = |_| CopyError { reading_client };
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut moved = 0u64;
    loop {
        let n = reader.read(&mut buffer).await.map_err(fail)?;
        if n == 0 {
            // Half-close: pass the end of stream on, keep the other way.
            let _ = writer.shutdown().await;
            return Ok(moved);
        }
        // The pass's other sends first: the peer reads them together.
        behind_queued().await;
        writer
            .write_all(&buffer[..n])
            .await
            .map_err(|_| CopyError {
                reading_client: !reading_client,
            })?;
        moved += n as u64;
        total.fetch_add(n as u64, Relaxed);
        meter.touch();
    }
}

/// A pipe for splice, closed on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe moves more per call; the default (64 KiB) is kept
        // when the limit (pipe-max-size) forbids it.
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok(Pipe { read, write })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between two open descriptors, no offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Relays two TCP sockets with splice(2) through one pipe per direction.
pub async fn splice_relay(
    client: &TcpStream,
    server: &TcpStream,
    idle: Duration,
    meter: &RelayMeter,
) -> io::Result<RelayOutcome> {
    let up_pipe = Pipe::new()?;
    let down_pipe = Pipe::new()?;
    let up = splice_half(client, server, &up_pipe, &meter.up, meter, true);
    let down = splice_half(server, client, &down_pipe, &meter.down, meter, false);
    let both = async { tokio::try_join!(up, down) };
    Ok(finish(both, idle, meter).await)
}

/// Relays two TCP sockets by copying, each direction turning to splice(2)
/// once a read fills the copy buffer (bulk data); `splice: false` copies
/// throughout.
pub async fn adaptive_relay(
    client: &mut BatchedTcp,
    server: &mut BatchedTcp,
    idle: Duration,
    meter: &RelayMeter,
    splice: bool,
) -> RelayOutcome {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = adaptive_half(
        &mut client_read,
        &mut server_write,
        &meter.up,
        meter,
        true,
        splice,
    );
    let down = adaptive_half(
        &mut server_read,
        &mut client_write,
        &meter.down,
        meter,
        false,
        splice,
    );
    let both = async { tokio::try_join!(up, down) };
    finish(both, idle, meter).await
}

async fn adaptive_half(
    reader: &mut tokio::net::tcp::ReadHalf<'_>,
    writer: &mut BatchWriter<'_>,
    total: &AtomicU64,
    meter: &RelayMeter,
    reading_client: bool,
    splice: bool,
) -> Result<u64, CopyError> {
    let fail = |_| CopyError { reading_client };
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut moved = 0u64;
    loop {
        // tokio's read of a partly filled buffer marks the socket drained:
        // no extra read that only says EAGAIN.
        let n = reader.read(&mut buffer).await.map_err(fail)?;
        if n == 0 {
            let _ = writer.shutdown().await;
            return Ok(moved);
        }
        // The pass's other sends first: the peer reads them together (a
        // batching socket sends at the pass's end by itself).
        if !writer.sends_at_pass_end() {
            behind_queued().await;
        }
        let write_error = |_| CopyError {
            reading_client: !reading_client,
        };
        writer.write_all(&buffer[..n]).await.map_err(write_error)?;
        moved += n as u64;
        total.fetch_add(n as u64, Relaxed);
        meter.touch();
        if splice && n == buffer.len() {
            if let Ok(pipe) = Pipe::new() {
                drop(buffer);
                // What was handed over goes out before the spliced bytes.
                writer.flush().await.map_err(write_error)?;
                let spliced = splice_half(
                    reader.as_ref(),
                    writer.socket(),
                    &pipe,
                    total,
                    meter,
                    reading_client,
                )
                .await?;
                return Ok(moved + spliced);
            }
        }
    }
}

async fn splice_half(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    total: &AtomicU64,
    meter: &RelayMeter,
    reading_client: bool,
) -> Result<u64, CopyError> {
    let read_error = |_| CopyError { reading_client };
    let write_error = |_| CopyError {
        reading_client: !reading_client,
    };
    let mut moved = 0u64;
    loop {
        // The pipe is empty here, so EAGAIN can only mean "no data yet".
        let filled = from
            .async_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
            })
            .await
            .map_err(read_error)?;
        if filled == 0 {
            let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
            return Ok(moved);
        }
        let mut in_pipe = filled;
        while in_pipe > 0 {
            let sent = to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), to.as_raw_fd(), in_pipe)
                })
                .await
                .map_err(write_error)?;
            in_pipe -= sent;
            moved += sent as u64;
            total.fetch_add(sent as u64, Relaxed);
            meter.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connected pair of TCP sockets over the namespace's loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (connected.expect("connect"), accepted.expect("accept").0)
    }

    #[derive(Clone, Copy)]
    enum Engine {
        Copy,
        Splice,
        Adaptive,
    }

    async fn check_half_close(engine: Engine) {
        let (mut client, proxy_client) = pair().await;
        let (proxy_server, mut server) = pair().await;
        let meter = RelayMeter::default();
        let idle = Duration::from_secs(5);
        let relay = async {
            match engine {
                Engine::Splice => splice_relay(&proxy_client, &proxy_server, idle, &meter)
                    .await
                    .expect("splice"),
                Engine::Copy => copy(proxy_client, proxy_server, idle, &meter).await,
                Engine::Adaptive => {
                    let mut proxy_client = BatchedTcp::new(proxy_client);
                    let mut proxy_server = BatchedTcp::new(proxy_server);
                    adaptive_relay(&mut proxy_client, &mut proxy_server, idle, &meter, true).await
                }
            }
        };
        let peers = async {
            client.write_all(b"hello").await.expect("write");
            client.shutdown().await.expect("shutdown");
            let mut got = Vec::new();
            server
                .read_to_end(&mut got)
                .await
                .expect("server reads to FIN");
            assert_eq!(got, b"hello");
            // The other direction still works after the client's FIN.
            server.write_all(b"world!").await.expect("write back");
            server.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("client reads");
            assert_eq!(back, b"world!");
        };
        let (outcome, ()) = tokio::join!(relay, peers);
        assert_eq!(
            outcome,
            RelayOutcome {
                up: 5,
                down: 6,
                end: RelayEnd::Closed
            }
        );
    }

    #[test]
    fn copy_passes_half_close_both_ways() {
        crate::test_netns::block_on(|| check_half_close(Engine::Copy));
    }

    #[test]
    fn splice_passes_half_close_both_ways() {
        crate::test_netns::block_on(|| check_half_close(Engine::Splice));
    }

    #[test]
    fn adaptive_passes_half_close_both_ways() {
        crate::test_netns::block_on(|| check_half_close(Engine::Adaptive));
    }

    /// A bulk transfer turns the adaptive relay to splice part way; every
    /// byte still arrives, in order, and is counted.
    #[test]
    fn adaptive_relay_carries_bulk_data_whole() {
        crate::test_netns::block_on(|| async {
            let (mut client, proxy_client) = pair().await;
            let (proxy_server, mut server) = pair().await;
            let mut proxy_client = BatchedTcp::new(proxy_client);
            let mut proxy_server = BatchedTcp::new(proxy_server);
            let meter = RelayMeter::default();
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            let relay = adaptive_relay(
                &mut proxy_client,
                &mut proxy_server,
                Duration::from_secs(5),
                &meter,
                true,
            );
            let peers = async {
                let send = async {
                    client.write_all(&data).await.expect("write");
                    client.shutdown().await.expect("shutdown");
                };
                let receive = async {
                    let mut got = Vec::new();
                    server.read_to_end(&mut got).await.expect("read");
                    server.shutdown().await.expect("shutdown");
                    got
                };
                let ((), got) = tokio::join!(send, receive);
                assert!(got == data, "bytes differ");
            };
            let (outcome, ()) = tokio::join!(relay, peers);
            assert_eq!((outcome.up, outcome.down), (1_000_000, 0));
            assert_eq!(outcome.end, RelayEnd::Closed);
        });
    }

    #[test]
    fn idle_relay_times_out() {
        crate::test_netns::block_on(|| async {
            let (_client, proxy_client) = pair().await;
            let (proxy_server, _server) = pair().await;
            let meter = RelayMeter::default();
            let outcome = splice_relay(
                &proxy_client,
                &proxy_server,
                Duration::from_millis(50),
                &meter,
            )
            .await
            .expect("splice");
            assert_eq!(outcome.end, RelayEnd::TimedOut);
        });
    }

    #[test]
    fn traffic_keeps_a_relay_past_its_idle_time() {
        crate::test_netns::block_on(|| async {
            let (mut client, proxy_client) = pair().await;
            let (proxy_server, mut server) = pair().await;
            let mut proxy_client = BatchedTcp::new(proxy_client);
            let mut proxy_server = BatchedTcp::new(proxy_server);
            let meter = RelayMeter::default();
            let idle = Duration::from_millis(150);
            let started = std::time::Instant::now();
            let relay = adaptive_relay(&mut proxy_client, &mut proxy_server, idle, &meter, false);
            // A byte every 50 ms for 600 ms (four idle times), then silence.
            let talk = async {
                let mut byte = [0u8; 1];
                for _ in 0..12 {
                    client.write_all(b"x").await.expect("write");
                    server.read_exact(&mut byte).await.expect("read");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let (outcome, ()) = tokio::join!(relay, talk);
            assert_eq!(outcome.end, RelayEnd::TimedOut);
            assert_eq!(outcome.up, 12);
            // The last byte moved after eleven 50 ms pauses; the relay ends
            // an idle time after it (less the millisecond clock's rounding).
            let lasted = started.elapsed();
            assert!(
                lasted >= Duration::from_millis(550 - 10) + idle,
                "ended after {lasted:?}"
            );
            assert!(lasted < Duration::from_secs(3), "ended after {lasted:?}");
        });
    }

    /// On a worker, the adaptive relay's messages go out through the
    /// worker's ring, with the pass's other sends, both ways.
    #[test]
    fn the_adaptive_relay_sends_with_the_pass_on_a_worker() {
        crate::test_netns::block_on(|| async {
            let (mut client, proxy_client) = pair().await;
            let (proxy_server, mut server) = pair().await;
            let mut proxy_client = BatchedTcp::new(proxy_client);
            let mut proxy_server = BatchedTcp::new(proxy_server);
            let meter = RelayMeter::default();
            let idle = Duration::from_secs(5);
            let sends = crate::proxy::batch::counts().1;
            let relay = adaptive_relay(&mut proxy_client, &mut proxy_server, idle, &meter, true);
            let talk = async {
                let mut got = [0u8; 4];
                client.write_all(b"ping").await.expect("write");
                server.read_exact(&mut got).await.expect("request");
                assert_eq!(&got, b"ping");
                server.write_all(b"pong").await.expect("write");
                client.read_exact(&mut got).await.expect("response");
                assert_eq!(&got, b"pong");
                assert_eq!(
                    crate::proxy::batch::counts().1 - sends,
                    2,
                    "through the ring"
                );
                drop((client, server));
            };
            let (outcome, ()) = tokio::join!(relay, talk);
            assert_eq!((outcome.up, outcome.down), (4, 4));
        });
    }

    /// A relay sends what it read on its second turn: the first puts the
    /// task behind the worker's queued tasks, so that the messages of one
    /// pass reach their peers together.
    #[tokio::test]
    async fn a_read_is_sent_one_turn_behind_the_queued_tasks() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (server, mut server_peer) = tokio::io::duplex(1024);
        client_peer.write_all(b"ping").await.expect("write");
        let meter = RelayMeter::default();
        let hand = crate::proxy::pass::HandPoll::new();
        let mut relay = std::pin::pin!(copy(client, server, Duration::from_secs(60), &meter));
        hand.first_turn(relay.as_mut());
        assert!(
            hand.nothing_to_read(&mut server_peer),
            "nothing is sent yet"
        );
        assert!(hand.poll(relay.as_mut()).is_pending());
        let mut received = [0u8; 4];
        server_peer
            .read_exact(&mut received)
            .await
            .expect("relayed");
        assert_eq!(&received, b"ping");
    }
}
