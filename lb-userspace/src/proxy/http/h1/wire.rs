//! The client connection as one HTTP/1 exchange's parts share it: the
//! connection loop reads heads and writes responses, the request body
//! reads its bytes from the same buffer while the request is forwarded.
//! Everything runs in the connection's task, so the lock is never
//! contended; it is held for one read or write, never across a poll of the
//! service or of a body (a response body polls the request body).
use super::super::{
    body::BoxError,
    origin::{ChunkedDecoder, Decoded},
};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{ready, Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::oneshot,
};

/// The read buffer's first size, and what a read asks room for: a
/// keep-alive connection reuses it from request to request once the
/// previous head's values are gone.
const READ_RESERVE: usize = 8 * 1024;
/// Reads for a large body ask room for up to this much.
const READ_MAX: usize = 64 * 1024;
/// What a client waiting on `Expect: 100-continue` is sent before its body
/// is read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the current request's body is.
#[derive(Debug)]
pub enum BodyProgress {
    /// Read whole (or there was none): the next head follows.
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Broken off (the client closed or sent invalid chunks): the
    /// connection cannot carry another request.
    Failed,
}

/// The client connection and what was read from it but not used yet.
pub struct Wire<S> {
    pub io: S,
    pub buf: BytesMut,
    /// The client closed its sending side.
    pub eof: bool,
    pub body: BodyProgress,
    /// Bytes of the `100 Continue` already written, while one is owed.
    continue_sent: Option<usize>,
}

pub type SharedWire<S> = Arc<Mutex<Wire<S>>>;

pub fn lock<S>(wire: &Mutex<Wire<S>>) -> MutexGuard<'_, Wire<S>> {
    wire.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(io: S) -> Self {
        Wire {
            io,
            buf: BytesMut::with_capacity(READ_RESERVE),
            eof: false,
            body: BodyProgress::Done,
            continue_sent: None,
        }
    }

    /// A new request's body begins; `expect_continue`: its client waits
    /// for a 100 before sending it.
    pub fn start_body(&mut self, body: BodyProgress, expect_continue: bool) {
        let waits = expect_continue && !matches!(body, BodyProgress::Done);
        self.continue_sent = waits.then_some(0);
        self.body = body;
    }

    /// A 100 is still owed to the client: it has not sent its body.
    pub fn continue_owed(&self) -> bool {
        self.continue_sent.is_some()
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_RESERVE.min(want.max(1)) {
            self.buf.reserve(want.clamp(READ_RESERVE, READ_MAX));
        }
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ));
        if matches!(read, Ok(0)) {
            self.eof = true;
        }
        Poll::Ready(read)
    }

    /// While a request is in service: reads whatever comes into the room
    /// the buffer already has (a pipelined request, the client's close),
    /// never growing it while the head's values still share it.
    /// `Ready(Err)`: the connection failed.
    pub fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.eof || self.buf.capacity() == self.buf.len() {
            return Poll::Pending;
        }
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        )) {
            Ok(0) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Ok(_) => Poll::Ready(Ok(())),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_send_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(sent) = self.continue_sent {
            if sent == CONTINUE.len() {
                self.continue_sent = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_sent = Some(sent + n);
        }
        Poll::Ready(Ok(()))
    }

    /// The request body's next frame, read from the buffer and the socket.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let want = match &mut self.body {
                BodyProgress::Done => return Poll::Ready(None),
                BodyProgress::Failed => {
                    return Poll::Ready(Some(Err("request body broken off".into())))
                }
                BodyProgress::Length(remaining) => {
                    if !self.buf.is_empty() {
                        let n = (*remaining).min(self.buf.len() as u64) as usize;
                        *remaining -= n as u64;
                        if *remaining == 0 {
                            self.body = BodyProgress::Done;
                        }
                        let data = self.buf.split_to(n).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    usize::try_from(*remaining).unwrap_or(READ_MAX)
                }
                BodyProgress::Chunked(decoder) => match decoder.decode(&mut self.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    Ok(Decoded::End) => {
                        self.body = BodyProgress::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => READ_RESERVE,
                    Err(error) => {
                        self.body = BodyProgress::Failed;
                        return Poll::Ready(Some(Err(Box::new(error))));
                    }
                },
            };
            if let Err(error) = ready!(self.poll_send_continue(cx)) {
                self.body = BodyProgress::Failed;
                return Poll::Ready(Some(Err(Box::new(error))));
            }
            match ready!(self.poll_fill(cx, want)) {
                Ok(0) => {
                    self.body = BodyProgress::Failed;
                    return Poll::Ready(Some(Err("client closed before the body's end".into())));
                }
                Ok(_) => {}
                Err(error) => {
                    self.body = BodyProgress::Failed;
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
            }
        }
    }
}

/// The body of a request read from a client connection.
pub struct RequestBody<S> {
    wire: SharedWire<S>,
}

impl<S> RequestBody<S> {
    pub fn new(wire: SharedWire<S>) -> Self {
        RequestBody { wire }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Body for RequestBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        lock(&self.wire).poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(lock(&self.wire).body, BodyProgress::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match lock(&self.wire).body {
            BodyProgress::Done => SizeHint::with_exact(0),
            BodyProgress::Length(remaining) => SizeHint::with_exact(remaining),
            _ => SizeHint::default(),
        }
    }
}

/// A stream with bytes already read from it put back in front: a client
/// connection handed to hyper's HTTP/2 server after its preface was seen,
/// or to a tunnel after a 101.
pub struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub fn new(io: S, prefix: Bytes) -> Self {
        Prefixed { prefix, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(out.remaining());
            out.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Any client stream, boxed for the tunnel.
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientStream for T {}

/// The client's side of a tunnel after its 101 was written.
pub type UpgradedClient = Prefixed<Box<dyn ClientStream>>;

/// Put in an upgrade request's extensions (which want it `Clone`): the
/// client connection arrives here once the 101 is written (never if the
/// server refused the upgrade).
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<UpgradedClient>>>>);

impl ClientUpgrade {
    pub fn new(receiver: oneshot::Receiver<UpgradedClient>) -> Self {
        ClientUpgrade(Arc::new(Mutex::new(Some(receiver))))
    }

    /// The client connection, once the 101 is written.
    pub async fn connection(self) -> Option<UpgradedClient> {
        let receiver = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        receiver.await.ok()
    }
}
