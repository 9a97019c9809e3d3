//! A worker's sends go out together, at the end of its pass, in one
//! `io_uring_enter`. With a send system call per message, the peer that
//! the first one wakes (wrk, an nginx worker) preempts the worker on the
//! way back to user space, before it sends the rest: one switch per
//! message, and each peer wakes for one message at a time. One submission
//! makes every send of the pass before the worker can be preempted, and
//! each peer then finds its whole batch when it runs. HAProxy sends after
//! its pass's I/O callbacks; this goes one step further.
//!
//! [`BatchedTcp`] (http and https clients, plain servers, both sides of
//! tcp mode; [`BatchedTcp::split`] gives a relay a [`BatchWriter`]) is a
//! proxy socket whose writes are copied into the
//! connection's [`OutBuffer`] and return at once (as a kernel socket
//! buffer would take them). The first write of a connection wakes the
//! worker's flusher task, which tokio's current-thread scheduler queues
//! behind the tasks the pass already woke; the flusher submits every queued
//! connection's bytes in one call, reaps the completions (a send that fits
//! the socket buffer completes within the call) and requeues what a full
//! socket buffer left over, waiting on the ring for those. A write of
//! [`DIRECT_MIN`] bytes or more to an idle connection (bulk data) is
//! written at once instead: batching buys nothing there and copying costs.
//!
//! Where io_uring is not available (an older kernel, a seccomp filter,
//! `kernel.io_uring_disabled`), or on a runtime that is not a worker's
//! current-thread one, writes go straight to the socket and the callers
//! defer them with [`crate::proxy::pass::behind_queued`] as before.
//!
//! Measured (session 17; alternating http-only benches, two of each build,
//! 3 keep-alive runs each; means against the HAProxy runs of the same
//! benches): lbd's rate went from 1.06x HAProxy's to 1.18x; per request,
//! lbd's involuntary context switches from 0.35 to 0.13, nginx's from 0.45
//! to 0.27, wrk's from 0.30 to 0.18, the whole machine's CPU from 75.8 to
//! 69.2 us (HAProxy's runs 81-82), lbd's system calls from 4.2 to 2.3 (an
//! `io_uring_enter` for about 14 sends).
mod out;

use io_uring::{opcode, types, IoUring};
use out::{Accepted, OutBuffer};
use std::{
    cell::RefCell,
    future::poll_fn,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};
use tokio::{
    io::{unix::AsyncFd, AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::{
        tcp::{ReadHalf, WriteHalf},
        TcpStream,
    },
};

/// Bytes a connection may have waiting before its writer waits: HAProxy's
/// `tune.bufsize`.
const OUT_LIMIT: usize = 16 * 1024;
/// A write at least this long to an idle connection goes out directly.
const DIRECT_MIN: usize = 16 * 1024;
/// Submission queue entries; more sends in a pass are submitted in turns.
const RING_ENTRIES: u32 = 256;

/// A connection's state shared by its writer and the flusher.
struct Conn {
    state: Mutex<ConnState>,
}

struct ConnState {
    out: OutBuffer,
    /// The writer waiting for room, or for the bytes to drain (shutdown).
    waker: Option<Waker>,
    /// The socket the sends go to: the stream's descriptor while it is
    /// open, then a duplicate taken when the stream is dropped with bytes
    /// still to send (they go out, and the FIN after them). A send under
    /// way holds its own reference to the socket.
    fd: RawFd,
    kept_open: Option<OwnedFd>,
}

impl Conn {
    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A TCP socket of the proxy whose writes go out with the worker's pass.
pub struct BatchedTcp {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl BatchedTcp {
    pub fn new(stream: TcpStream) -> BatchedTcp {
        let fd = stream.as_raw_fd();
        BatchedTcp {
            stream,
            conn: Arc::new(Conn {
                state: Mutex::new(ConnState {
                    out: OutBuffer::default(),
                    waker: None,
                    fd,
                    kept_open: None,
                }),
            }),
        }
    }

    /// Whether writes made here go out at the end of the pass (else they
    /// are direct, and the caller defers them itself).
    pub fn sends_at_pass_end(&self) -> bool {
        usable_here()
    }

    fn write_bufs(&mut self, cx: &mut Context<'_>, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
        write_batched(&self.conn, &mut self.stream, cx, bufs)
    }

    /// The read side and a batching write side, for a relay that reads
    /// one socket while it writes the other (and splices bulk data).
    pub fn split(&mut self) -> (ReadHalf<'_>, BatchWriter<'_>) {
        let (read, direct) = self.stream.split();
        (
            read,
            BatchWriter {
                conn: &self.conn,
                direct,
            },
        )
    }
}

/// Hands `bufs` to the connection's buffer (or writes bulk data to an idle
/// connection through `direct`).
fn write_batched<W: AsyncWrite + Unpin>(
    conn: &Arc<Conn>,
    direct: &mut W,
    cx: &mut Context<'_>,
    bufs: &[&[u8]],
) -> Poll<io::Result<usize>> {
    let mut state = conn.state();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total >= DIRECT_MIN && state.out.is_idle() && state.out.error().is_none() {
        drop(state);
        let slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
        return Pin::new(direct).poll_write_vectored(cx, &slices);
    }
    match state.out.accept(bufs, OUT_LIMIT) {
        Accepted::Taken {
            bytes,
            wake_flusher,
        } => {
            drop(state);
            if wake_flusher {
                BATCH.with(|b| b.borrow_mut().enqueue(conn.clone()));
            }
            Poll::Ready(Ok(bytes))
        }
        Accepted::Full => {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
        Accepted::Failed(errno) => Poll::Ready(Err(out::send_error(errno))),
    }
}

/// Ready once nothing waits to be sent (or with the failed send's error).
fn poll_drained(conn: &Conn, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut state = conn.state();
    if let Some(errno) = state.out.error() {
        return Poll::Ready(Err(out::send_error(errno)));
    }
    if state.out.is_idle() {
        return Poll::Ready(Ok(()));
    }
    state.waker = Some(cx.waker().clone());
    Poll::Pending
}

/// The write side of a split [`BatchedTcp`]. Unlike the whole socket's,
/// its flush waits until everything handed over is sent: a relay flushes
/// before it splices bulk data straight into the socket.
pub struct BatchWriter<'a> {
    conn: &'a Arc<Conn>,
    direct: WriteHalf<'a>,
}

impl BatchWriter<'_> {
    /// The socket, for splice.
    pub fn socket(&self) -> &TcpStream {
        self.direct.as_ref()
    }

    pub fn sends_at_pass_end(&self) -> bool {
        usable_here()
    }
}

impl AsyncWrite for BatchWriter<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !usable_here() {
            return Pin::new(&mut this.direct).poll_write(cx, buf);
        }
        write_batched(this.conn, &mut this.direct, cx, &[buf])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(poll_drained(self.conn, cx))?;
        Pin::new(&mut self.direct).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(poll_drained(self.conn, cx))?;
        Pin::new(&mut self.direct).poll_shutdown(cx)
    }
}

impl Drop for BatchedTcp {
    fn drop(&mut self) {
        let mut state = self.conn.state();
        if state.out.is_idle() {
            return;
        }
        match self.stream.as_fd().try_clone_to_owned() {
            Ok(kept) => {
                state.fd = kept.as_raw_fd();
                state.kept_open = Some(kept);
            }
            // Out of descriptors: the bytes not yet sent are lost with the
            // connection, as if it had been reset (a send under way ends).
            Err(_) => state.out.discard_pending(),
        }
    }
}

impl AsyncRead for BatchedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BatchedTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !usable_here() {
            return Pin::new(&mut self.stream).poll_write(cx, buf);
        }
        self.write_bufs(cx, &[buf])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !usable_here() {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        }
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        self.write_bufs(cx, &slices)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Handed over is as far as a flush goes (the kernel's socket buffer
    /// is not waited for either); a failed send shows here.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let failed = self.conn.state().out.error();
        match failed {
            Some(errno) => Poll::Ready(Err(out::send_error(errno))),
            None => Pin::new(&mut self.stream).poll_flush(cx),
        }
    }

    /// Sends what waits, then the FIN.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(poll_drained(&self.conn, cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The worker's ring and the connections waiting for its flusher.
struct Batch {
    /// Dropped first (field order) at the thread's end: the kernel is done
    /// with the buffers before `sending` frees them.
    ring: Option<IoUring>,
    /// Whether this thread batches: decided once, on first use.
    usable: Option<bool>,
    /// A flusher task runs for this thread's ring.
    flusher_running: bool,
    queue: Vec<Arc<Conn>>,
    /// Connections with a send submitted, by the send's `user_data`.
    sending: Vec<Option<Arc<Conn>>>,
    free_slots: Vec<usize>,
    /// Completions taken from the ring and not yet handled.
    completed: Vec<(u64, i32)>,
    flusher: Option<Waker>,
    /// Submissions and sends so far (tests read them).
    submissions: u64,
    sends: u64,
}

thread_local! {
    static BATCH: RefCell<Batch> = const {
        RefCell::new(Batch {
            ring: None,
            usable: None,
            flusher_running: false,
            queue: Vec::new(),
            sending: Vec::new(),
            free_slots: Vec::new(),
            completed: Vec::new(),
            flusher: None,
            submissions: 0,
            sends: 0,
        })
    };
}

/// Whether this thread's writes are batched: on a current-thread runtime
/// (a proxy worker), with an io_uring and its flusher task.
fn usable_here() -> bool {
    BATCH.with(|b| {
        let mut batch = b.borrow_mut();
        if let Some(usable) = batch.usable {
            if !usable || batch.flusher_running {
                return usable;
            }
        }
        let usable = batch.start();
        batch.usable = Some(usable);
        usable
    })
}

/// Submissions and sends made by this thread's flusher so far.
pub fn counts() -> (u64, u64) {
    BATCH.with(|b| {
        let batch = b.borrow();
        (batch.submissions, batch.sends)
    })
}

impl Batch {
    /// Creates the ring (once) and spawns the flusher on this thread's
    /// runtime; false where batching cannot work.
    fn start(&mut self) -> bool {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !current_thread {
            return false;
        }
        if self.ring.is_none() {
            // Room for many sends waiting on full sockets at once.
            match IoUring::builder()
                .setup_cqsize(16 * RING_ENTRIES)
                .build(RING_ENTRIES)
            {
                Ok(ring) => self.ring = Some(ring),
                Err(error) => {
                    tracing::info!(%error, "no io_uring: proxy sends are not batched");
                    return false;
                }
            }
        }
        let Some(ring) = &self.ring else {
            return false;
        };
        // SAFETY: the ring's descriptor is open while `self.ring` is.
        let ring_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.as_raw_fd()) };
        let Ok(fd) = ring_fd.try_clone_to_owned() else {
            return false;
        };
        // SAFETY: the AsyncFd owns `fd`, which stays open while registered.
        let Ok(ready) = (unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }) else {
            return false;
        };
        self.flusher_running = true;
        tokio::spawn(flush(ready));
        true
    }

    fn enqueue(&mut self, conn: Arc<Conn>) {
        self.queue.push(conn);
        if let Some(flusher) = self.flusher.take() {
            flusher.wake();
        }
    }

    /// One turn of the flusher: completions in, the queue's sends out.
    fn turn(&mut self, flusher: &Waker) -> Turn {
        self.reap();
        if !self.queue.is_empty() {
            self.submit();
            self.reap();
        }
        if !self.queue.is_empty() {
            return Turn::Again;
        }
        self.flusher = Some(flusher.clone());
        if self.sending.len() > self.free_slots.len() {
            Turn::AwaitCompletions
        } else {
            Turn::Idle
        }
    }

    /// Submits a send for every queued connection with bytes waiting.
    fn submit(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        for conn in std::mem::take(&mut self.queue) {
            let (fd, ptr, len) = {
                let mut state = conn.state();
                let fd = state.fd;
                let Some(bytes) = state.out.start_send() else {
                    continue;
                };
                let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                (fd, bytes.as_ptr(), len)
            };
            let slot = self.free_slots.pop().unwrap_or_else(|| {
                self.sending.push(None);
                self.sending.len() - 1
            });
            let send = opcode::Send::new(types::Fd(fd), ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(slot as u64);
            self.sending[slot] = Some(conn);
            // SAFETY: the bytes are the connection's in-flight `Bytes`,
            // which stay put and alive (the connection is in `sending`)
            // until this send's completion is reaped.
            while unsafe { ring.submission().push(&send) }.is_err() {
                // The submission queue is full: hand it over and take the
                // completions in (the completion queue must not fill up).
                let _ = ring.submit();
                self.submissions += 1;
                self.completed
                    .extend(ring.completion().map(|c| (c.user_data(), c.result())));
            }
            self.sends += 1;
        }
        if !ring.submission().is_empty() {
            let _ = ring.submit();
            self.submissions += 1;
        }
    }

    /// Completes the sends whose results are in: wakes their writers,
    /// requeues connections with bytes left.
    fn reap(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        self.completed
            .extend(ring.completion().map(|c| (c.user_data(), c.result())));
        let mut done = std::mem::take(&mut self.completed);
        for (slot, result) in done.drain(..) {
            let slot = slot as usize;
            let Some(conn) = self.sending.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free_slots.push(slot);
            let requeue = {
                let mut state = conn.state();
                let requeue = state.out.finish_send(result);
                if let Some(writer) = state.waker.take() {
                    writer.wake();
                }
                requeue
            };
            if requeue {
                self.queue.push(conn);
            }
        }
        self.completed = done;
    }
}

enum Turn {
    /// Short sends were requeued: submit them.
    Again,
    /// Sends are under way: wait for the ring.
    AwaitCompletions,
    /// Nothing to do until a write wakes the flusher.
    Idle,
}

/// Marks the flusher gone (its runtime ended): the next write on this
/// thread starts another.
struct FlusherGone;

impl Drop for FlusherGone {
    fn drop(&mut self) {
        let _ = BATCH.try_with(|b| {
            if let Ok(mut batch) = b.try_borrow_mut() {
                batch.flusher_running = false;
                batch.flusher = None;
            }
        });
    }
}

/// The worker's flusher: woken by the first write of a pass, so it runs
/// after the tasks that pass woke; then by the ring when sends that had
/// to wait for room complete.
async fn flush(ready: AsyncFd<OwnedFd>) {
    let _gone = FlusherGone;
    poll_fn(|cx| loop {
        match BATCH.with(|b| b.borrow_mut().turn(cx.waker())) {
            Turn::Again => continue,
            Turn::Idle => return Poll::Pending,
            Turn::AwaitCompletions => match ready.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    continue;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            },
        }
    })
    .await
}

#[cfg(test)]
mod tests;
