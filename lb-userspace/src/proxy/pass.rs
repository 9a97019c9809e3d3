//! Sends at the end of a worker's pass, as HAProxy makes them. A worker is a
//! single-threaded tokio runtime: one poll of its driver wakes the tasks of
//! every connection with something to read, and it runs them one after
//! another. A task that wrote what it read at once woke its peer (wrk, an
//! nginx worker) once per message, in the middle of the pass; HAProxy runs
//! its sends as tasklets after the pass's I/O callbacks, so that a peer
//! finds a batch when it wakes. [`behind_queued`] puts the task back at
//! the end of the worker's queue, behind the tasks that pass already woke,
//! for one turn; it does not wait for the driver, which
//! `tokio::task::yield_now` does (it held a response a whole pass and a
//! poll of the driver longer: p99 rose, session 15).
//!
//! Measured with alternating benches (session 16, means of every
//! keep-alive run, lbd against the HAProxy runs beside it): http mode went
//! from 0.95x HAProxy's rate (21 runs each) to 1.00x with responses sent
//! behind the queue (36) and 1.02x with requests too (27). wrk's context
//! switches per request fell from 0.33 to 0.25 with responses deferred
//! (HAProxy 0.26; 0.29 with requests too), nginx's from 0.52 to 0.45 with
//! requests deferred, lbd's involuntary ones from 0.42 to 0.33. tcp mode
//! went from 1.02x to 1.06x with relayed reads behind the queue (6 runs).
//!
//! Where a worker batches its sends (`proxy::batch`: io_uring, session 17),
//! the batching socket already sends at the pass's end, in one system call,
//! and writers to it skip this; it remains for sockets that do not batch
//! (TLS to servers, upgraded tunnels' copies, a kernel without io_uring).
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// Ready on the second poll; the first wakes the task at once, which sends
/// it to the back of its worker's run queue. A task alone in the queue
/// runs again straight away (after a look at the driver only when the
/// worker's periodic one, every 61 tasks, falls in between): an idle
/// worker adds no delay.
pub fn behind_queued() -> BehindQueued {
    BehindQueued { waited: false }
}

/// The future of [`behind_queued`].
#[must_use = "a future does nothing unless awaited"]
pub struct BehindQueued {
    waited: bool,
}

impl Future for BehindQueued {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waited {
            return Poll::Ready(());
        }
        self.waited = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls a sender by hand, as its worker would, counting the wake-ups: a
/// test sees the send go behind the queue (one wake-up, nothing sent), then
/// go out on the next turn.
#[cfg(test)]
pub(crate) struct HandPoll {
    wakes: std::sync::Arc<WakeCount>,
    waker: std::task::Waker,
}

#[cfg(test)]
impl HandPoll {
    pub(crate) fn new() -> HandPoll {
        let wakes = std::sync::Arc::new(WakeCount::default());
        let waker = std::task::Waker::from(wakes.clone());
        HandPoll { wakes, waker }
    }

    pub(crate) fn poll<F: Future>(&self, sender: Pin<&mut F>) -> Poll<F::Output> {
        sender.poll(&mut Context::from_waker(&self.waker))
    }

    /// The sender's first turn: it waits, having woken itself once.
    pub(crate) fn first_turn<F: Future>(&self, sender: Pin<&mut F>) {
        assert!(self.poll(sender).is_pending(), "the first turn waits");
        let wakes = self.wakes.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(wakes, 1, "woken at once, to the back of the queue");
    }

    /// Whether `peer` has nothing to read yet.
    pub(crate) fn nothing_to_read<R: tokio::io::AsyncRead + Unpin>(&self, peer: &mut R) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        Pin::new(peer)
            .poll_read(&mut Context::from_waker(&self.waker), &mut buf)
            .is_pending()
    }
}

#[cfg(test)]
#[derive(Default)]
struct WakeCount(std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl std::task::Wake for WakeCount {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A worker's queue holds `first` (which sends) and `second` (which
    /// reads, and wakes `third` as a read would wake another task): the
    /// send goes behind `second`, but not behind `third`, which was not
    /// queued yet; tokio's `yield_now` would also wait for `third` (and for
    /// a poll of the driver).
    #[test]
    fn a_send_goes_behind_the_tasks_already_queued_and_no_further() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = |name: &'static str| {
            let order = order.clone();
            move || order.lock().expect("order").push(name)
        };
        runtime.block_on(async {
            let first = tokio::spawn({
                let record = record("first sends");
                async move {
                    behind_queued().await;
                    record();
                }
            });
            let (third_done, third_ran) = tokio::sync::oneshot::channel();
            let second = tokio::spawn({
                let second_reads = record("second reads");
                let third_reads = record("third reads");
                async move {
                    second_reads();
                    tokio::spawn(async move {
                        third_reads();
                        let _ = third_done.send(());
                    });
                }
            });
            first.await.expect("first");
            second.await.expect("second");
            third_ran.await.expect("third");
        });
        assert_eq!(
            *order.lock().expect("order"),
            ["second reads", "first sends", "third reads"]
        );
    }
}
