//! Bodies streamed through the proxy, never buffered whole: a wrapper counts
//! the bytes as they pass, applies an inactivity timeout (`timeout client`
//! on request bodies, `timeout server` on response bodies) and tells its
//! owner how the body ended (complete, failed, timed out, or dropped early
//! because the other side went away).
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type on both sides of the proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of the bytes given.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The body's inactivity timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout;

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("body inactivity timeout")
    }
}

impl std::error::Error for IdleTimeout {}

/// How a metered body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    Complete,
    /// The producing side failed (reset, invalid framing).
    Failed,
    /// No data within the inactivity timeout.
    TimedOut,
    /// Dropped before its end: the consuming side went away.
    Abandoned,
}

pin_project_lite::pin_project! {
    /// A body that counts, times out when idle and reports its end: `on_data`
    /// is called with each data frame's length as it passes, `on_end` once
    /// with the end and the bytes that passed. (Closures held in place: the
    /// body is boxed once, not once more per callback.)
    pub struct Metered<B, D, E: FnOnce(BodyEnd, u64)> {
        #[pin]
        inner: B,
        idle: Option<Pin<Box<Sleep>>>,
        timeout: Option<Duration>,
        bytes: u64,
        on_data: D,
        on_end: Option<E>,
    }

    impl<B, D, E: FnOnce(BodyEnd, u64)> PinnedDrop for Metered<B, D, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                on_end(BodyEnd::Abandoned, *this.bytes);
            }
        }
    }
}

impl<B, D: Fn(u64), E: FnOnce(BodyEnd, u64)> Metered<B, D, E> {
    /// `timeout`: `None` or zero = no inactivity limit.
    pub fn new(inner: B, timeout: Option<Duration>, on_data: D, on_end: E) -> Self {
        Metered {
            inner,
            idle: None,
            timeout: timeout.filter(|t| !t.is_zero()),
            bytes: 0,
            on_data,
            on_end: Some(on_end),
        }
    }
}

fn finish<E: FnOnce(BodyEnd, u64)>(on_end: &mut Option<E>, end: BodyEnd, bytes: u64) {
    if let Some(on_end) = on_end.take() {
        on_end(end, bytes);
    }
}

impl<B, D, E> Body for Metered<B, D, E>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    D: Fn(u64),
    E: FnOnce(BodyEnd, u64),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    *this.bytes += len;
                    (this.on_data)(len);
                }
                if let (Some(idle), Some(timeout)) = (this.idle.as_mut(), *this.timeout) {
                    idle.as_mut()
                        .reset(Instant::from_std(crate::proxy::clock::now()) + timeout);
                }
                if this.inner.is_end_stream() {
                    finish(this.on_end, BodyEnd::Complete, *this.bytes);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                finish(this.on_end, BodyEnd::Failed, *this.bytes);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                finish(this.on_end, BodyEnd::Complete, *this.bytes);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(timeout) = *this.timeout else {
                    return Poll::Pending;
                };
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    finish(this.on_end, BodyEnd::TimedOut, *this.bytes);
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<(u64, Option<(BodyEnd, u64)>)>>;

    type Counted<B> = Metered<B, Box<dyn Fn(u64) + Send>, Box<dyn FnOnce(BodyEnd, u64) + Send>>;

    fn metered<B>(inner: B, timeout: Option<Duration>) -> (Counted<B>, Seen) {
        let seen: Seen = Arc::default();
        let (a, b) = (seen.clone(), seen.clone());
        let body: Counted<B> = Metered::new(
            inner,
            timeout,
            Box::new(move |n| a.lock().expect("lock").0 += n),
            Box::new(move |end, n| b.lock().expect("lock").1 = Some((end, n))),
        );
        (body, seen)
    }

    #[tokio::test]
    async fn counts_and_reports_completion() {
        let (body, seen) = metered(full("hello"), None);
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!(
            *seen.lock().expect("lock"),
            (5, Some((BodyEnd::Complete, 5)))
        );
    }

    #[tokio::test]
    async fn dropped_early_is_abandoned() {
        let (body, seen) = metered(
            http_body_util::StreamBody::new(futures::stream::pending::<
                Result<Frame<Bytes>, BoxError>,
            >()),
            None,
        );
        drop(body);
        assert_eq!(seen.lock().expect("lock").1, Some((BodyEnd::Abandoned, 0)));
    }

    #[tokio::test]
    async fn idle_body_times_out() {
        let (body, seen) = metered(
            http_body_util::StreamBody::new(futures::stream::pending::<
                Result<Frame<Bytes>, BoxError>,
            >()),
            Some(Duration::from_millis(30)),
        );
        let error = body.collect().await.expect_err("times out");
        assert!(error.downcast_ref::<IdleTimeout>().is_some());
        assert_eq!(seen.lock().expect("lock").1, Some((BodyEnd::TimedOut, 0)));
    }
}
