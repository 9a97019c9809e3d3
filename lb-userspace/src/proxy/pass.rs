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
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// Ready on the second poll; the first wakes the task at once, which sends
/// it to the back of its worker's run queue. A task alone in the queue
/// runs again straight away: an idle worker adds no delay.
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

/// Counts its wake-ups: a test polls a sender by hand with it to see the
/// send go behind the queue (one wake-up, nothing sent yet).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct WakeCount(std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl WakeCount {
    pub(crate) fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

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
