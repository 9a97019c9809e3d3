//! The proxy's clock, kept as HAProxy keeps `now_ms`: read at most once each
//! time a connection's task is polled, then shared by everything that turn does
//! (the request's start, session rates, the pool's idle ages, timer
//! deadlines). A keep-alive request read the clock about eight times
//! (3.7% of the proxy's user time in a profile); a poll takes microseconds,
//! far below the millisecond timers and log fields that read it.
use pin_project_lite::pin_project;
use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

thread_local! {
    static TURN: Cell<Turn> = const { Cell::new(Turn::Outside) };
}

/// Where this thread is with respect to a [`Clocked`] task's turn.
#[derive(Clone, Copy)]
enum Turn {
    /// Not polling a clocked task: every read is a clock read.
    Outside,
    /// In a turn that has not needed the time yet (a wake that only moves
    /// bytes reads no clock).
    Unread,
    /// In a turn, at this instant.
    Read(Instant),
}

/// The current turn's instant inside a [`Clocked`] task, the clock itself
/// elsewhere.
pub fn now() -> Instant {
    TURN.with(|turn| match turn.get() {
        Turn::Read(at) => at,
        Turn::Unread => {
            let at = Instant::now();
            turn.set(Turn::Read(at));
            at
        }
        Turn::Outside => Instant::now(),
    })
}

pin_project! {
    /// Runs `inner` with the clock read once per poll.
    pub struct Clocked<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Clocked<F> {
    pub fn new(inner: F) -> Self {
        Clocked { inner }
    }
}

impl<F: Future> Future for Clocked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Restored afterwards: a clocked future polled inside another (a
        // test's, a nested runtime's) leaves the outer turn as it was.
        let outer = TURN.with(|turn| turn.replace(Turn::Unread));
        let _restore = Restore(outer);
        self.project().inner.poll(cx)
    }
}

/// Puts the outer turn back, also when the poll panics.
struct Restore(Turn);

impl Drop for Restore {
    fn drop(&mut self) {
        TURN.with(|turn| turn.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_turn_reads_the_clock_once_and_outside_turns_read_it_each_time() {
        let outside = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > outside, "outside a task, now() is the clock");

        let turn = |_: &mut Context<'_>| {
            let first = now();
            std::thread::sleep(Duration::from_millis(2));
            Poll::Ready((first, now()))
        };
        let (first, second) = block_on(Clocked::new(std::future::poll_fn(turn)));
        assert_eq!(first, second, "one instant for the whole turn");
        assert!(first > outside);
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > second, "the turn ends with the poll");
    }

    #[test]
    fn each_poll_is_a_new_turn() {
        let mut seen = Vec::new();
        let mut polls = 0;
        let task = std::future::poll_fn(|cx: &mut Context<'_>| {
            seen.push(now());
            polls += 1;
            if polls < 2 {
                std::thread::sleep(Duration::from_millis(2));
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        block_on(Clocked::new(task));
        assert_eq!(seen.len(), 2);
        assert!(seen[1] > seen[0], "the second poll reads the clock again");
    }

    /// Polls `future` to completion on this thread.
    fn block_on<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(future)
    }
}
