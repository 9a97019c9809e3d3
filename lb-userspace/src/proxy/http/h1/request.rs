//! Sans-IO request heads from clients (RFC 9112): a head parsed from the
//! front of the connection's read buffer into `http` types whose header
//! values share the buffer's bytes, with its body's framing and whether the
//! client keeps the connection open after the response.
use crate::proxy::http::{
    headers::{self, LineSpan, LineSpans},
    hop::HeadFacts,
};
use bytes::{Bytes, BytesMut};
use hyper::{
    header::{self, HeaderMap},
    http::request,
    Method, Request, Uri, Version,
};
use std::mem::MaybeUninit;

/// The most header lines a request head may carry (hyper's default): more
/// is answered 431, as a head over the size limit.
pub const MAX_HEADERS: usize = 100;

/// The connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: request::Parts,
    pub body: BodyFraming,
    /// The client keeps the connection after this exchange (HTTP/1.1
    /// without `Connection: close`, HTTP/1.0 with `keep-alive`) and its
    /// framing leaves nothing ambiguous.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before its body.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an Upgrade header.
    pub upgrade: bool,
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Over the size limit or [`MAX_HEADERS`]: HAProxy's and hyper's 431.
    #[error("request head too large")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Syntax(&'static str),
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding without chunked last")]
    TransferEncoding,
}

impl RequestError {
    /// The status the client is answered with before the connection closes.
    pub fn status(self) -> u16 {
        match self {
            RequestError::TooLarge => 431,
            _ => 400,
        }
    }
}

/// Whether `buf` starts with HTTP/2's preface: `Some(true)` when it does,
/// `Some(false)` when it cannot, `None` when too few bytes tell yet.
pub fn h2_preface(buf: &[u8]) -> Option<bool> {
    let seen = buf.len().min(H2_PREFACE.len());
    if buf[..seen] != H2_PREFACE[..seen] {
        return Some(false);
    }
    (seen == H2_PREFACE.len()).then_some(true)
}

/// Parses a request head at the front of `buf`. `Ok(None)`: incomplete
/// (read more). On success the head's bytes are taken from `buf` and the
/// header values and target share them. `max_head`: the largest head.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, RequestError> {
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    let blank = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if blank > 0 {
        let _ = buf.split_to(blank);
    }
    // Uninitialised slots: zeroing a hundred of them costs more than
    // parsing a small head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    );
    let head_len = match status {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) => return Err(RequestError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(RequestError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooLarge),
        Err(error) => return Err(syntax(error)),
    };
    let method = parsed
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(RequestError::Syntax("invalid method"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Offsets first: the slices borrow `buf`, which is split below.
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let target = parsed
        .path
        .map(|p| offset(p.as_bytes())..offset(p.as_bytes()) + p.len());
    // The framing and connection headers are read in the same pass.
    let mut facts = HeadFacts::default();
    let mut expect_continue = false;
    let mut lines = LineSpans::new();
    for h in parsed.headers.iter() {
        facts.note(h.name.as_bytes(), h.value);
        if h.name.len() == 6 && h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        }
        lines.push(LineSpan::of(buf.as_ptr(), h).ok_or(RequestError::TooLarge)?);
    }
    let head: Bytes = buf.split_to(head_len).freeze();
    let uri = target
        .and_then(|range| Uri::from_maybe_shared(head.slice(range)).ok())
        .ok_or(RequestError::Syntax("invalid request target"))?;
    // Room for the headers the proxy adds (Host, X-Forwarded-*): a map
    // filled to capacity grows on the next insert, even of a present name.
    let mut headers = headers::map_of_lines(&head, &lines, 6)
        .map_err(|_| RequestError::Syntax("invalid header line"))?;
    let (body, unambiguous) = body_framing(&facts, &mut headers, version)?;
    let keep_alive = unambiguous && facts.connection.persists(version == Version::HTTP_10);
    let expect_continue = version == Version::HTTP_11 && expect_continue;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    Ok(Some(RequestHead {
        parts,
        body,
        keep_alive,
        expect_continue,
        upgrade: facts.asks_upgrade(),
    }))
}

fn syntax(error: httparse::Error) -> RequestError {
    RequestError::Syntax(headers::httparse_reason(error))
}

/// RFC 9112 §6.3 for requests. With both Transfer-Encoding and
/// Content-Length (the request-smuggling shape) chunked wins, the length is
/// removed and the connection closes after the response, as HAProxy does;
/// the flag is false then.
fn body_framing(
    facts: &HeadFacts,
    headers: &mut HeaderMap,
    version: Version,
) -> Result<(BodyFraming, bool), RequestError> {
    if let Some(chunked_last) = facts.transfer_encoding {
        // A request body must be chunked last, and HTTP/1.0 has no chunks.
        if !chunked_last || version == Version::HTTP_10 {
            return Err(RequestError::TransferEncoding);
        }
        let had_length = headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok((BodyFraming::Chunked, !had_length));
    }
    let found = facts
        .content_length
        .get()
        .map_err(|_| RequestError::ContentLength)?;
    Ok(match found {
        None | Some(0) => (BodyFraming::Empty, true),
        Some(length) => (BodyFraming::Length(length), true),
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
