//! One request and its response over a server connection, driven by the
//! task that awaits it (the client connection's). The request body is sent
//! while the response head is awaited and, if the server answers early,
//! while the response body streams (full duplex, as hyper and HAProxy do).
use super::{
    chunked::{ChunkedDecoder, Decoded},
    head::{
        encode_request, parse_response, request_framing, HeadError, RequestFraming,
        ResponseFraming, ResponseHead,
    },
    ServerConn, Upgraded,
};
use crate::proxy::http::{
    body::{BoxError, ProxyBody},
    upstream::{Pool, PoolKey},
};
use crate::proxy::pass::behind_queued;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::{
    body::{Body, Frame, SizeHint},
    HeaderMap, Method, Request, Response, StatusCode,
};
use std::{
    fmt::Write as _,
    future::{poll_fn, Future},
    io,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};
use tokio::io::AsyncWrite;

/// Space kept free in a connection's read buffer before each read.
const READ_RESERVE: usize = 8 * 1024;
/// The most read at once for a long body.
const READ_MAX: usize = 64 * 1024;
/// A request-body frame up to this size is copied next to its chunk
/// framing (one write); a larger one is written on its own.
const COALESCE_MAX: usize = 16 * 1024;

/// Where a connection goes when its response has been read whole.
pub struct Recycle {
    pub pool: Arc<Pool>,
    pub key: PoolKey,
}

/// Why an exchange failed before a response head was had.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A reused connection the server had closed: nothing reached it, so
    /// the request (given back) can go again on a fresh connection.
    #[error("pooled connection closed before the request was taken")]
    NotSent(Box<Unsent>),
    #[error("server connection: {0}")]
    Io(#[from] io::Error),
    #[error("server closed the connection before a complete response head")]
    Closed,
    #[error("{0}")]
    Head(#[from] HeadError),
    /// Reading the client's request body failed (or timed out).
    #[error("request body: {0}")]
    ClientBody(BoxError),
}

/// A request encoded for a server and not taken by it: it can go again on
/// a fresh connection to the same server as it is. Only the encoded head is
/// kept, not the client's header map (whose values share the client
/// connection's read buffer, held no longer than needed).
pub struct Unsent {
    head: Bytes,
    method: Method,
    framing: RequestFraming,
    body: Option<ProxyBody>,
}

impl Unsent {
    /// Encodes the head. A function of its own so that the header map is
    /// gone before the first await (in the async function, a partly moved
    /// head would live on in the future until it ends).
    fn encode(request: Request<ProxyBody>) -> Unsent {
        let (parts, body) = request.into_parts();
        let framing = request_framing(
            &parts.method,
            &parts.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        let mut head = BytesMut::new();
        encode_request(&parts, framing, &mut head);
        crate::proxy::http::headers::recycle(parts.headers);
        Unsent {
            head: head.freeze(),
            method: parts.method,
            framing,
            body: (!body.is_end_stream()).then_some(body),
        }
    }

    /// The request line, for tests and logs.
    pub fn request_line(&self) -> &[u8] {
        let end = self
            .head
            .iter()
            .position(|&b| b == b'\r')
            .unwrap_or(self.head.len());
        &self.head[..end]
    }
}

impl std::fmt::Debug for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsent")
            .field(
                "request_line",
                &String::from_utf8_lossy(self.request_line()),
            )
            .finish()
    }
}

/// The request on its way out: the bytes not yet written (head, then the
/// body's framing and data) and the rest of the body.
struct Upload {
    pending: BytesMut,
    /// A large data frame written after `pending`, before the next frame.
    large: Option<Bytes>,
    /// Chunk end (`\r\n`) owed after `large`.
    large_crlf: bool,
    body: Option<ProxyBody>,
    framing: RequestFraming,
    sent_body_bytes: u64,
    /// A body frame was taken from the client: the request cannot be
    /// replayed any more.
    touched: bool,
    flushed: bool,
}

enum UploadError {
    Client(BoxError),
    Server(io::Error),
}

impl Upload {
    fn is_done(&self) -> bool {
        self.body.is_none() && self.pending.is_empty() && self.large.is_none() && self.flushed
    }

    /// Writes what it can; `Ready(Ok)` once the whole request is out.
    fn poll_progress<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            while !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending))
                    .map_err(UploadError::Server)?;
                if n == 0 {
                    return Poll::Ready(Err(UploadError::Server(io::ErrorKind::WriteZero.into())));
                }
                self.pending.advance(n);
                self.flushed = false;
            }
            if let Some(large) = self.large.as_mut() {
                while !large.is_empty() {
                    let n = ready!(Pin::new(&mut *io).poll_write(cx, large))
                        .map_err(UploadError::Server)?;
                    if n == 0 {
                        return Poll::Ready(Err(UploadError::Server(
                            io::ErrorKind::WriteZero.into(),
                        )));
                    }
                    large.advance(n);
                }
                self.large = None;
                if std::mem::take(&mut self.large_crlf) {
                    self.pending.put_slice(b"\r\n");
                }
                continue;
            }
            if !self.flushed {
                // A TLS stream holds records until flushed; TCP's is free.
                ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(UploadError::Server)?;
                self.flushed = true;
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => self.end_body(None),
                Some(Err(error)) => {
                    self.body = None;
                    return Poll::Ready(Err(UploadError::Client(error)));
                }
                Some(Ok(frame)) => {
                    self.touched = true;
                    match frame.into_data() {
                        Ok(data) => self.queue_data(data)?,
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                self.end_body(Some(&trailers));
                            }
                        }
                    }
                    if self.body.as_ref().is_some_and(|b| b.is_end_stream()) {
                        self.end_body(None);
                    }
                }
            }
        }
    }

    fn queue_data(&mut self, data: Bytes) -> Result<(), UploadError> {
        if data.is_empty() {
            return Ok(());
        }
        self.sent_body_bytes += data.len() as u64;
        let chunked = self.framing == RequestFraming::Chunked;
        if let RequestFraming::Length { length, .. } = self.framing {
            if self.sent_body_bytes > length {
                self.body = None;
                return Err(UploadError::Client(
                    "request body longer than its Content-Length".into(),
                ));
            }
        }
        if chunked {
            // Writing into a BytesMut cannot fail.
            let _ = write!(self.pending, "{:x}\r\n", data.len());
        }
        if data.len() <= COALESCE_MAX {
            self.pending.put_slice(&data);
            if chunked {
                self.pending.put_slice(b"\r\n");
            }
        } else {
            self.large = Some(data);
            self.large_crlf = chunked;
        }
        Ok(())
    }

    fn end_body(&mut self, trailers: Option<&HeaderMap>) {
        if self.body.take().is_none() {
            return;
        }
        if self.framing == RequestFraming::Chunked {
            self.pending.put_slice(b"0\r\n");
            for (name, value) in trailers.into_iter().flatten() {
                self.pending.put_slice(name.as_str().as_bytes());
                self.pending.put_slice(b": ");
                self.pending.put_slice(value.as_bytes());
                self.pending.put_slice(b"\r\n");
            }
            self.pending.put_slice(b"\r\n");
        }
    }
}

/// Reads more from the server into the connection's buffer: `Ok(0)` at
/// the end of the stream.
fn poll_fill(conn: &mut ServerConn, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
    let spare = conn.buf.capacity() - conn.buf.len();
    if spare < READ_RESERVE.min(want.max(1)) {
        conn.buf.reserve(want.clamp(READ_RESERVE, READ_MAX));
    }
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
}

/// Sends `request` over `conn` and waits for the response head (the
/// caller bounds the wait with `timeout server`). `reused`: the connection
/// came from the pool, so a close before any answer gives the request
/// back ([`SendError::NotSent`]). The response body reads from the
/// connection, which goes to `recycle` once it is read whole, if the
/// exchange left it reusable.
///
/// Not an async function: the head is encoded now and the future holds
/// only what [`Unsent`] keeps, not the request (the future is moved whole
/// on its way into the request's).
pub fn send(
    conn: ServerConn,
    request: Request<ProxyBody>,
    reused: bool,
    recycle: Option<Recycle>,
) -> impl Future<Output = Result<Response<ResponseBody>, SendError>> {
    send_encoded(conn, Unsent::encode(request), reused, recycle)
}

/// Sends a request that a pooled connection did not take
/// ([`SendError::NotSent`]) again, over a fresh connection.
pub async fn resend(
    conn: ServerConn,
    unsent: Unsent,
    recycle: Option<Recycle>,
) -> Result<Response<ResponseBody>, SendError> {
    send_encoded(conn, unsent, false, recycle).await
}

async fn send_encoded(
    mut conn: ServerConn,
    unsent: Unsent,
    reused: bool,
    recycle: Option<Recycle>,
) -> Result<Response<ResponseBody>, SendError> {
    let Unsent {
        head,
        method,
        framing,
        body,
    } = unsent;
    // Kept only where it may go again: a pooled connection's first answer
    // can be the server's close.
    let head_again = reused.then(|| head.clone());
    let mut upload = Upload {
        pending: BytesMut::new(),
        large: Some(head),
        large_crlf: false,
        body,
        framing,
        sent_body_bytes: 0,
        touched: false,
        flushed: false,
    };
    // The pass's other requests first: the server reads them together (a
    // batching socket sends at the pass's end by itself).
    if !conn.io.sends_at_pass_end() {
        behind_queued().await;
    }
    let mut write_error = None;
    let mut upload_done = false;
    let mut received = false;
    let head = poll_fn(|cx| {
        if !upload_done && write_error.is_none() {
            match upload.poll_progress(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => upload_done = true,
                Poll::Ready(Err(UploadError::Client(error))) => {
                    return Poll::Ready(Err(SendError::ClientBody(error)))
                }
                // The server may have answered and stopped reading (a 413
                // before the body): its response is still read.
                Poll::Ready(Err(UploadError::Server(error))) => write_error = Some(error),
                Poll::Pending => {}
            }
        }
        loop {
            if !conn.buf.is_empty() {
                match parse_response(&mut conn.buf, &method)? {
                    Some(head)
                        if head.parts.status.is_informational()
                            && head.parts.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        // 100 Continue, 103 Early Hints: not forwarded
                        // (as hyper's client); the final head follows.
                        continue;
                    }
                    Some(head) => return Poll::Ready(Ok(head)),
                    None => {}
                }
            }
            match ready!(poll_fill(&mut conn, cx, READ_RESERVE)) {
                Ok(0) => {
                    return Poll::Ready(Err(match write_error.take() {
                        Some(error) if !(reused && !received && !upload.touched) => {
                            SendError::Io(error)
                        }
                        _ => SendError::Closed,
                    }));
                }
                Ok(_) => received = true,
                Err(error) => {
                    return Poll::Ready(Err(if reused && !received && !upload.touched {
                        SendError::Closed
                    } else {
                        SendError::Io(error)
                    }));
                }
            }
        }
    })
    .await;
    let head = match head {
        Ok(head) => head,
        Err(SendError::Closed) if reused && !received && !upload.touched => {
            if let Some(head) = head_again {
                return Err(SendError::NotSent(Box::new(Unsent {
                    head,
                    method,
                    framing,
                    body: upload.body.take(),
                })));
            }
            return Err(SendError::Closed);
        }
        Err(error) => return Err(error),
    };
    let ResponseHead {
        parts: response_parts,
        framing: response_framing,
        keep_alive,
    } = head;
    if response_parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let upgraded = Upgraded {
            io: conn.io,
            early: conn.buf,
        };
        return Ok(Response::from_parts(
            response_parts,
            ResponseBody::upgrade(upgraded),
        ));
    }
    let reading = match response_framing {
        ResponseFraming::Empty => Reading::Done,
        ResponseFraming::Length(length) => Reading::Length(length),
        ResponseFraming::Chunked => Reading::Chunked(ChunkedDecoder::default()),
        ResponseFraming::UntilClose => Reading::UntilClose,
    };
    let upload = (!upload_done && write_error.is_none()).then(|| Box::new(upload));
    let mut body = ResponseBody {
        conn: Some(conn),
        upload,
        reading,
        reusable: keep_alive && write_error.is_none(),
        recycle,
        upgraded: None,
    };
    if matches!(body.reading, Reading::Done) {
        body.finish();
    }
    Ok(Response::from_parts(response_parts, body))
}

enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("open", &self.conn.is_some())
            .field("reusable", &self.reusable)
            .finish()
    }
}

/// The response body, read from the server connection as it is polled.
pub struct ResponseBody {
    conn: Option<ServerConn>,
    /// Boxed, as `upgraded`: rare (a request body still going out, a 101),
    /// and a response and its body are moved several times per request.
    upload: Option<Box<Upload>>,
    reading: Reading,
    reusable: bool,
    recycle: Option<Recycle>,
    upgraded: Option<Box<Upgraded>>,
}

/// A body read from the server that broke off (the server closed or
/// reset, or sent invalid chunk framing).
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    #[error("server closed the connection before the end of the body")]
    Truncated,
    #[error("server connection: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Chunk(#[from] super::chunked::ChunkError),
}

impl ResponseBody {
    fn upgrade(upgraded: Upgraded) -> Self {
        ResponseBody {
            conn: None,
            upload: None,
            reading: Reading::Done,
            reusable: false,
            recycle: None,
            upgraded: Some(Box::new(upgraded)),
        }
    }

    /// The server side of a `101` tunnel.
    pub fn take_upgrade(&mut self) -> Option<Upgraded> {
        self.upgraded.take().map(|upgraded| *upgraded)
    }

    /// The body has been read whole: the connection goes back to the pool
    /// if nothing else is owed on it.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        let upload_over = self.upload.as_deref().is_none_or(Upload::is_done);
        if self.reusable && upload_over && conn.buf.is_empty() {
            if let Some(recycle) = self.recycle.take() {
                recycle.pool.put(recycle.key, conn);
            }
        }
    }

    fn fail(&mut self, error: ResponseBodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.reading = Reading::Done;
        self.conn = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(upload) = this.upload.as_mut() {
            match upload.poll_progress(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => this.upload = None,
                Poll::Ready(Err(_)) => {
                    // The rest of the request is lost: the response still
                    // streams, the connection is not reused.
                    this.upload = None;
                    this.reusable = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let want = match &mut this.reading {
                Reading::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Reading::Length(remaining) => {
                    if !conn.buf.is_empty() {
                        let take = usize::try_from(*remaining)
                            .map_or(conn.buf.len(), |r| r.min(conn.buf.len()));
                        let data = conn.buf.split_to(take).freeze();
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    usize::try_from(*remaining).unwrap_or(READ_MAX)
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => READ_RESERVE,
                    Err(error) => return this.fail(error.into()),
                },
                Reading::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    READ_MAX
                }
            };
            match ready!(poll_fill(conn, cx, want)) {
                Ok(0) if matches!(this.reading, Reading::UntilClose) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(ResponseBodyError::Truncated),
                Ok(_) => {}
                Err(error) => return this.fail(error.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Done => SizeHint::with_exact(0),
            Reading::Length(remaining) => SizeHint::with_exact(remaining),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
