//! lbd's HTTP/1.1 client toward servers. hyper's client runs each
//! connection in a task of its own and passes the request, the response
//! head and every body chunk through channels, waking two tasks per step;
//! here the exchange runs inside the client connection's own task (as
//! HAProxy's and Pingora's do): the request head is written, the response
//! head read and parsed with httparse, and the response body is read from
//! the server socket when the client side's writer polls it. A connection goes
//! back to the pool the moment its response's last byte has been read.
//!
//! - `head`: request framing and encoding, response head parsing (sans-IO)
//! - `chunked`: the chunked-body decoder (sans-IO)
//! - `exchange`: one request/response over a connection, and its body
mod chunked;
mod exchange;
pub(super) mod head;

pub use chunked::{ChunkedDecoder, Decoded};
pub use exchange::{resend, send, Recycle, ResponseBody, SendError, Unsent};

use crate::proxy::batch::BatchedTcp;
use bytes::BytesMut;
use std::{
    io,
    pin::Pin,
    task::{Context, Poll, Waker},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

/// A connection to a server: plain TCP or TLS (`ssl` on the server line).
pub enum ServerIo {
    Plain(BatchedTcp),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A server connection and the bytes read from it but not used yet.
pub struct ServerConn {
    io: ServerIo,
    buf: BytesMut,
}

impl ServerIo {
    /// Whether writes go out at the end of the worker's pass by themselves
    /// (`proxy::batch`); otherwise the sender defers them.
    pub fn sends_at_pass_end(&self) -> bool {
        match self {
            ServerIo::Plain(io) => io.sends_at_pass_end(),
            ServerIo::Tls(_) => false,
        }
    }
}

impl ServerConn {
    pub fn new(io: ServerIo) -> Self {
        ServerConn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle pooled connection is still usable: the server has
    /// neither closed it nor sent anything unasked. Costs no system call
    /// while the socket is known not to be readable.
    pub fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }
}

/// After a `101 Switching Protocols`: the server connection for the
/// tunnel, with the bytes the server sent right after its 101.
pub struct Upgraded {
    io: ServerIo,
    early: BytesMut,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(out.remaining());
            out.put_slice(&self.early.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_read(cx, out),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, out),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_write(cx, data),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_flush(cx),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
