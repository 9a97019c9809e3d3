//! The HTTP/1 connection loop (lbd's own, in place of hyper's server): read
//! a head, run the request phases on it, write the response with the
//! framing `response` decided, and go on with the next head while the
//! connection persists. One buffer serves every request of a keep-alive
//! connection, and nothing is read ahead while a head's values share it.
use super::{
    request::{h2_preface, parse_request, BodyFraming, RequestError, RequestHead},
    response::{self, ClientSide, Framing},
    wire::{
        lock, BodyProgress, ClientStream, ClientUpgrade, Prefixed, RequestBody, SharedWire,
        UpgradedClient, Wire,
    },
};
use crate::proxy::http::{
    body::ProxyBody,
    conn::{ConnContext, MAX_REQUEST_HEAD},
    errors::error_body,
    headers,
    origin::ChunkedDecoder,
    service,
};
use crate::proxy::pass::behind_queued;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::{body::Body, Method, Request, StatusCode};
use std::{
    fmt::Write as _,
    future::{poll_fn, Future},
    io,
    pin::{pin, Pin},
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::oneshot,
};

/// Body data up to this size is copied behind the head (or the previous
/// data) and goes out in the same write; a larger frame is written from
/// its own buffer.
const COALESCE_MAX: usize = 16 * 1024;
/// A request body the server did not read is drained up to this much so
/// that the connection can carry the next request; a longer one closes it.
const DRAIN_MAX: u64 = 64 * 1024;

/// How the connection loop ended.
pub enum Ended<S> {
    /// Closed by either side, or after an exchange that ends the
    /// connection (a tunnel took it after a 101).
    Closed,
    /// A request head was refused: the client was answered with the
    /// status and the connection closed; the caller counts and logs it.
    Refused(RequestError),
    /// The client opened with HTTP/2's preface: the stream and what was
    /// read from it, for hyper's HTTP/2 server.
    H2c(Prefixed<S>),
}

// Moved out once per request: boxing the head would allocate per request.
#[allow(clippy::large_enum_variant)]
enum HeadRead {
    Head(RequestHead),
    Closed,
    Refused(RequestError),
    H2c,
}

/// Serves requests on `io` until the connection ends. `detect_h2c`: a
/// cleartext connection, which may open with HTTP/2's preface.
pub async fn serve<S>(io: S, context: Arc<ConnContext>, detect_h2c: bool) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let wire: SharedWire<S> = Arc::new(Mutex::new(Wire::new(io)));
    let mut out = BytesMut::new();
    let mut detect_h2c = detect_h2c;
    loop {
        let read = poll_fn(|cx| poll_head(&wire, cx, detect_h2c)).await;
        detect_h2c = false;
        let head = match read {
            HeadRead::Head(head) => head,
            HeadRead::Closed => return Ended::Closed,
            HeadRead::Refused(error) => {
                refuse(&wire, error.status()).await;
                return Ended::Refused(error);
            }
            HeadRead::H2c => {
                return match Arc::try_unwrap(wire) {
                    Ok(wire) => {
                        let wire = wire.into_inner().unwrap_or_else(|p| p.into_inner());
                        Ended::H2c(Prefixed::new(wire.io, wire.buf.freeze()))
                    }
                    Err(_) => Ended::Closed,
                };
            }
        };
        match exchange(&wire, head, &context, &mut out).await {
            Next::Request => {}
            Next::Close => {
                let _ = poll_fn(|cx| Pin::new(&mut lock(&wire).io).poll_shutdown(cx)).await;
                return Ended::Closed;
            }
            Next::Abort => return Ended::Closed,
            Next::Upgrade(client) => {
                hand_over(wire, client);
                return Ended::Closed;
            }
        }
    }
}

enum Next {
    Request,
    /// The exchange ends the connection: close it cleanly.
    Close,
    /// The connection failed or the client is gone.
    Abort,
    /// A 101 was written: the connection goes to the tunnel.
    Upgrade(oneshot::Sender<UpgradedClient>),
}

fn poll_head<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &Mutex<Wire<S>>,
    cx: &mut Context<'_>,
    detect_h2c: bool,
) -> Poll<HeadRead> {
    let mut wire = lock(wire);
    loop {
        if !wire.buf.is_empty() {
            let preface = if detect_h2c {
                h2_preface(&wire.buf)
            } else {
                Some(false)
            };
            match preface {
                Some(true) => return Poll::Ready(HeadRead::H2c),
                Some(false) => match parse_request(&mut wire.buf, MAX_REQUEST_HEAD) {
                    Ok(Some(head)) => return Poll::Ready(HeadRead::Head(head)),
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(HeadRead::Refused(error)),
                },
                None => {}
            }
        }
        // A close between requests, or in the middle of a head (hyper's
        // "incomplete message"): nothing to answer.
        match ready!(wire.poll_fill(cx, 1024)) {
            Ok(0) | Err(_) => return Poll::Ready(HeadRead::Closed),
            Ok(_) => {}
        }
    }
}

/// One request and its response.
async fn exchange<S>(
    wire: &SharedWire<S>,
    head: RequestHead,
    context: &Arc<ConnContext>,
    out: &mut BytesMut,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let RequestHead {
        parts,
        body,
        keep_alive,
        expect_continue,
        upgrade,
    } = head;
    let client = ClientSide {
        head_request: parts.method == Method::HEAD,
        version: parts.version,
        keep_alive,
    };
    let progress = match body {
        BodyFraming::Empty => BodyProgress::Done,
        BodyFraming::Length(length) => BodyProgress::Length(length),
        BodyFraming::Chunked => BodyProgress::Chunked(ChunkedDecoder::default()),
    };
    lock(wire).start_body(progress, expect_continue);
    let mut request = Request::from_parts(parts, RequestBody::new(wire.clone()));
    let upgrade = upgrade.then(|| {
        let (sender, receiver) = oneshot::channel();
        request
            .extensions_mut()
            .insert(ClientUpgrade::new(receiver));
        sender
    });

    // The request phases run while the connection is watched: a reset
    // aborts them; a close of the client's sending side does not (HAProxy
    // serves a half-closed client, `option abortonclose` being off), the
    // connection closes after the response.
    let mut served = pin!(service::handle(request, context.clone()));
    let response = poll_fn(|cx| {
        if let Poll::Ready(result) = served.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        let mut wire = lock(wire);
        // The request body, while unread, is read by its own reader.
        if matches!(wire.body, BodyProgress::Done) {
            while let Poll::Ready(result) = wire.poll_watch(cx) {
                if result.is_err() {
                    return Poll::Ready(None);
                }
            }
        }
        Poll::Pending
    })
    .await;
    let Some(Ok(response)) = response else {
        return Next::Abort;
    };

    let (parts, body) = response.into_parts();
    let plan = response::plan(
        &parts,
        client,
        body.is_end_stream(),
        body.size_hint().exact(),
    );
    out.clear();
    response::encode(&parts, &plan, client, out);
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    headers::recycle(parts.headers);
    // A batching socket sends at the end of the pass by itself.
    let defer = !context.sends_at_pass_end;
    if write_response(wire, out, body, plan.framing, defer)
        .await
        .is_err()
    {
        return Next::Abort;
    }
    if switching {
        if let Some(upgrade) = upgrade {
            return Next::Upgrade(upgrade);
        }
    }
    if plan.close || !finish_request_body(wire).await || lock(wire).eof {
        return Next::Close;
    }
    Next::Request
}

/// Whether the request body is read whole, draining what the server left
/// unread when that is little (a longer one, or one whose client still
/// waits for a 100, closes the connection).
async fn finish_request_body<S: AsyncRead + AsyncWrite + Unpin>(wire: &Mutex<Wire<S>>) -> bool {
    {
        let wire = lock(wire);
        match wire.body {
            BodyProgress::Done => return true,
            BodyProgress::Failed => return false,
            BodyProgress::Length(remaining) if remaining > DRAIN_MAX => return false,
            _ if wire.continue_owed() => return false,
            _ => {}
        }
    }
    let mut drained = 0u64;
    poll_fn(|cx| {
        let mut wire = lock(wire);
        loop {
            match ready!(wire.poll_body(cx)) {
                None => return Poll::Ready(true),
                Some(Ok(frame)) => {
                    drained += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if drained > DRAIN_MAX {
                        return Poll::Ready(false);
                    }
                }
                Some(Err(_)) => return Poll::Ready(false),
            }
        }
    })
    .await
}

/// Writes the head in `out` and the body framed as `framing`, then
/// flushes (which logs the records that waited for the response's end).
/// With `defer`, after the responses of the worker's pass that are queued
/// before it, so that the client reads them together (a batching socket,
/// `proxy::batch`, sends at the pass's end by itself).
async fn write_response<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &Mutex<Wire<S>>,
    out: &mut BytesMut,
    body: ProxyBody,
    framing: Framing,
    defer: bool,
) -> io::Result<()> {
    if defer {
        behind_queued().await;
    }
    let mut writer = ResponseWriter {
        out,
        large: None,
        large_crlf: false,
        body: Some(body),
        framing,
        sent: 0,
    };
    poll_fn(|cx| writer.poll_write_all(wire, cx)).await
}

struct ResponseWriter<'a> {
    /// Bytes not yet written: the head, framing, coalesced data.
    out: &'a mut BytesMut,
    /// A large data frame, written after `out`.
    large: Option<Bytes>,
    /// A chunk's CRLF owed after `large`.
    large_crlf: bool,
    /// `None` once its end is queued.
    body: Option<ProxyBody>,
    framing: Framing,
    /// Body bytes taken from the body.
    sent: u64,
}

impl ResponseWriter<'_> {
    fn poll_write_all<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &Mutex<Wire<S>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            self.gather(cx)?;
            let mut wire = lock(wire);
            if self.out.is_empty() && self.large.is_none() {
                if self.body.is_some() {
                    // Waiting on the body; its waker is registered.
                    return Poll::Pending;
                }
                // A TLS stream holds records until flushed; the flush also
                // logs what waited for this response's end.
                return Pin::new(&mut wire.io).poll_flush(cx);
            }
            let io = Pin::new(&mut wire.io);
            // One buffer goes by send(2): writev's iovec import and checks
            // cost the kernel about 0.4 µs more per response.
            let written = match self.large.as_deref() {
                None => ready!(io.poll_write(cx, self.out))?,
                Some(large) => {
                    let slices = [io::IoSlice::new(self.out), io::IoSlice::new(large)];
                    ready!(io.poll_write_vectored(cx, &slices))?
                }
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
    }

    fn advance(&mut self, mut written: usize) {
        let from_out = written.min(self.out.len());
        self.out.advance(from_out);
        written -= from_out;
        if let Some(large) = self.large.as_mut() {
            large.advance(written.min(large.len()));
            if large.is_empty() {
                self.large = None;
                if std::mem::take(&mut self.large_crlf) {
                    self.out.put_slice(b"\r\n");
                }
            }
        }
    }

    /// Takes what the body has ready while there is room to coalesce it.
    fn gather(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.large.is_none() && self.out.len() < COALESCE_MAX {
            let Some(body) = self.body.as_mut() else {
                return Ok(());
            };
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(None) => {
                    self.end(None)?;
                    continue;
                }
                Poll::Ready(Some(Err(error))) => return Err(io::Error::other(error)),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => self.queue(data)?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.end(Some(&trailers))?;
                        continue;
                    }
                }
            }
            if self.body.as_ref().is_some_and(|b| b.is_end_stream()) {
                self.end(None)?;
            }
        }
        Ok(())
    }

    fn queue(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() || self.framing == Framing::NoBody {
            return Ok(());
        }
        self.sent += data.len() as u64;
        if let Framing::Length(length) = self.framing {
            if self.sent > length {
                return Err(io::Error::other("response body longer than its length"));
            }
        }
        let chunked = self.framing == Framing::Chunked;
        if chunked {
            // Writing into a BytesMut cannot fail.
            let _ = write!(self.out, "{:x}\r\n", data.len());
        }
        if data.len() <= COALESCE_MAX {
            self.out.put_slice(&data);
            if chunked {
                self.out.put_slice(b"\r\n");
            }
        } else {
            self.large = Some(data);
            self.large_crlf = chunked;
        }
        Ok(())
    }

    fn end(&mut self, trailers: Option<&hyper::HeaderMap>) -> io::Result<()> {
        if self.body.take().is_none() {
            return Ok(());
        }
        match self.framing {
            Framing::Length(length) if self.sent < length => {
                Err(io::Error::other("response body shorter than its length"))
            }
            Framing::Chunked => {
                self.out.put_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    self.out.put_slice(name.as_str().as_bytes());
                    self.out.put_slice(b": ");
                    self.out.put_slice(value.as_bytes());
                    self.out.put_slice(b"\r\n");
                }
                self.out.put_slice(b"\r\n");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Answers a refused head with HAProxy's error page, then closes.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(wire: &Mutex<Wire<S>>, status: u16) {
    let body = error_body(status);
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut page = BytesMut::new();
    // Writing into a BytesMut cannot fail.
    let _ = write!(
        page,
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\ncache-control: no-cache\r\n\
         content-type: text/html\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = poll_fn(|cx| {
        let mut wire = lock(wire);
        while !page.is_empty() {
            let n = ready!(Pin::new(&mut wire.io).poll_write(cx, &page))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
            }
            page.advance(n);
        }
        ready!(Pin::new(&mut wire.io).poll_flush(cx))?;
        Pin::new(&mut wire.io).poll_shutdown(cx)
    })
    .await;
}

/// Gives the connection, with what was read after the head, to the tunnel.
fn hand_over<S>(wire: SharedWire<S>, client: oneshot::Sender<UpgradedClient>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Nothing else holds the wire once the exchange is over (an upgrade
    // request's body, if any, is read whole or dropped by now).
    if let Ok(wire) = Arc::try_unwrap(wire) {
        let wire = wire.into_inner().unwrap_or_else(|p| p.into_inner());
        let io: Box<dyn ClientStream> = Box::new(wire.io);
        let _ = client.send(Prefixed::new(io, wire.buf.freeze()));
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
