//! Sans-IO HTTP/1.1 heads toward servers: the request head lbd writes
//! (its framing decided from the body, as RFC 9112 §6 says) and the
//! response head it reads (parsed with httparse, its body's framing and
//! whether the connection can carry another request).
use crate::proxy::http::{
    headers::{self, httparse_reason, LineSpan, LineSpans},
    hop::{HeadFacts, Hop},
};
use bytes::{BufMut, Bytes, BytesMut};
use hyper::{
    header::{self, HeaderMap, HeaderName, HeaderValue},
    http::{request, response},
    Method, Response, StatusCode, Version,
};
use std::{fmt::Write as _, mem::MaybeUninit};

/// The most headers a server's response head may carry (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// The largest response head accepted from a server (HAProxy's default
/// `tune.bufsize` is 16 KiB; a larger head there is a 502 too).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body at all.
    Empty,
    /// `Content-Length: n`; `add_header` when the client's head had none.
    Length { length: u64, add_header: bool },
    /// `Transfer-Encoding: chunked` (added here: it is hop-by-hop).
    Chunked,
}

/// Picks the framing: the client's `Content-Length` when it sent one (hyper
/// has checked the body against it), none for a body that is already over
/// (a `Content-Length: 0` for the methods that define a body), the exact
/// length when known, chunked otherwise.
pub fn request_framing(
    method: &Method,
    headers: &HeaderMap,
    body_is_over: bool,
    exact_length: Option<u64>,
) -> RequestFraming {
    let facts = crate::proxy::http::hop::facts_of(headers);
    if let Some(length) = facts.content_length.get().ok().flatten() {
        return RequestFraming::Length {
            length,
            add_header: false,
        };
    }
    if body_is_over {
        let defines_body = [Method::POST, Method::PUT, Method::PATCH].contains(method);
        return if defines_body {
            RequestFraming::Length {
                length: 0,
                add_header: true,
            }
        } else {
            RequestFraming::Empty
        };
    }
    match exact_length {
        Some(length) => RequestFraming::Length {
            length,
            add_header: true,
        },
        None => RequestFraming::Chunked,
    }
}

/// Writes the request head (origin-form target, HTTP/1.1) into `out`.
pub fn encode_request(parts: &request::Parts, framing: RequestFraming, out: &mut BytesMut) {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.reserve(64 + target.len() + parts.headers.len() * 32);
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Length {
            length,
            add_header: true,
        } => {
            // Writing into a BytesMut cannot fail.
            let _ = write!(out, "content-length: {length}\r\n");
        }
        RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.put_slice(b"\r\n");
}

fn syntax(error: httparse::Error) -> HeadError {
    HeadError::Syntax(httparse_reason(error))
}

/// Why a server's response head was refused (a 502 for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Syntax(&'static str),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} response headers")]
    TooManyHeaders,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("invalid header name or value")]
    Header,
    #[error("invalid status code")]
    Status,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes (HTTP/1.0 style): never reusable.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub parts: response::Parts,
    pub framing: ResponseFraming,
    /// The server keeps the connection open after this response.
    pub keep_alive: bool,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: not complete
/// yet (read more). On success the head's bytes are taken from `buf`; the
/// header values share them (no copy). `request_method`: a HEAD request's
/// response has no body whatever its headers say.
pub fn parse_response(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    // Uninitialised slots: zeroing 100 of them cost more than parsing a
    // small head (a memset of 3.2 KiB per response in a keep-alive profile).
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(error) => return Err(syntax(error)),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let status = StatusCode::from_u16(response.code.ok_or(HeadError::Status)?)
        .map_err(|_| HeadError::Status)?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Offsets first: the slices borrow `buf`, which is split below. The
    // framing and connection headers are read in the same pass; the
    // hop-by-hop ones never reach the map (the client's side is framed
    // and kept alive by lbd), except in a 101, whose upgrade headers go on.
    let keeps_hop_headers = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut facts = HeadFacts::default();
    let mut lines = LineSpans::new();
    for h in response.headers.iter() {
        let hop = facts.note(h.name.as_bytes(), h.value);
        if hop.is_some() && !keeps_hop_headers {
            continue;
        }
        lines.push(LineSpan::of(buf.as_ptr(), h).ok_or(HeadError::TooLarge)?);
    }
    // Headers the Connection header names are this hop's too (rare).
    let named = if facts.connection.names_other && !keeps_hop_headers {
        named_by_connection(response.headers)
    } else {
        Vec::new()
    };
    let head: Bytes = buf.split_to(head_len).freeze();
    // Room for what response rules add without growing the map.
    let mut headers = headers::map_of_lines(&head, &lines, 4).map_err(|_| HeadError::Header)?;
    for name in named {
        headers.remove(name);
    }
    if facts.transfer_encoding.is_some() && !matches!(facts.content_length.get(), Ok(None)) {
        // RFC 9112 §6.3: Transfer-Encoding overrides a Content-Length,
        // which must not be forwarded (the client's framing is lbd's).
        headers.remove(header::CONTENT_LENGTH);
    }
    // Set in place: the builder moves its parts through a Result at every
    // step (memcpy in a keep-alive profile).
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    let (parts, ()) = response.into_parts();
    let (framing, framing_allows_reuse) = response_framing(status, &facts, request_method)?;
    let keep_alive = framing_allows_reuse && facts.connection.persists(version == Version::HTTP_10);
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

/// The headers a raw head's Connection lines name, other than hop-by-hop
/// ones.
fn named_by_connection(lines: &[httparse::Header<'_>]) -> Vec<HeaderName> {
    lines
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty() && Hop::of(token).is_none())
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect()
}

/// RFC 9112 §6.3, in its order. The flag is false when the framing itself
/// forbids reuse (a body read until close, or both Transfer-Encoding and
/// Content-Length: the request-smuggling shape, answered as chunked and
/// then closed, as HAProxy does).
fn response_framing(
    status: StatusCode,
    facts: &HeadFacts,
    request_method: &Method,
) -> Result<(ResponseFraming, bool), HeadError> {
    if request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((ResponseFraming::Empty, true));
    }
    let length = facts.content_length.get();
    if let Some(chunked_last) = facts.transfer_encoding {
        let has_length = !matches!(length, Ok(None));
        return Ok(if chunked_last {
            (ResponseFraming::Chunked, !has_length)
        } else {
            (ResponseFraming::UntilClose, false)
        });
    }
    match length.map_err(|_| HeadError::ContentLength)? {
        Some(0) => Ok((ResponseFraming::Empty, true)),
        Some(length) => Ok((ResponseFraming::Length(length), true)),
        None => Ok((ResponseFraming::UntilClose, false)),
    }
}

/// Parses chunked-body trailers (header lines, without the final empty
/// line) into a map.
pub fn parse_trailers(block: &[u8]) -> Result<HeaderMap, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut with_end = Vec::with_capacity(block.len() + 2);
    with_end.extend_from_slice(block);
    with_end.extend_from_slice(b"\r\n");
    let parsed = match httparse::parse_headers(&with_end, &mut slots) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        Ok(httparse::Status::Partial) => return Err(HeadError::Syntax("incomplete trailers")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(error) => return Err(syntax(error)),
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HeadError::Header)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| HeadError::Header)?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        let mut buf = BytesMut::from(text.as_bytes());
        parse_response(&mut buf, &method)
    }

    fn head(text: &str) -> ResponseHead {
        parse(text, Method::GET).expect("valid").expect("complete")
    }

    #[test]
    fn request_framing_follows_the_body() {
        let mut with_length = HeaderMap::new();
        with_length.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let none = HeaderMap::new();
        let cases = [
            (Method::GET, &none, true, Some(0), RequestFraming::Empty),
            (
                Method::POST,
                &none,
                true,
                Some(0),
                RequestFraming::Length {
                    length: 0,
                    add_header: true,
                },
            ),
            (
                Method::POST,
                &with_length,
                false,
                Some(5),
                RequestFraming::Length {
                    length: 5,
                    add_header: false,
                },
            ),
            (
                Method::PUT,
                &none,
                false,
                Some(7),
                RequestFraming::Length {
                    length: 7,
                    add_header: true,
                },
            ),
            (Method::POST, &none, false, None, RequestFraming::Chunked),
        ];
        for (method, headers, over, exact, expected) in cases {
            assert_eq!(
                request_framing(&method, headers, over, exact),
                expected,
                "{method} {over} {exact:?}"
            );
        }
    }

    #[test]
    fn request_head_is_origin_form_with_framing() {
        let request = hyper::Request::post("/a?b=1")
            .header("host", "example")
            .body(())
            .expect("request");
        let (parts, ()) = request.into_parts();
        let mut out = BytesMut::new();
        encode_request(&parts, RequestFraming::Chunked, &mut out);
        assert_eq!(
            &out[..],
            b"POST /a?b=1 HTTP/1.1\r\nhost: example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        out.clear();
        encode_request(
            &parts,
            RequestFraming::Length {
                length: 12,
                add_header: true,
            },
            &mut out,
        );
        assert!(out.ends_with(b"content-length: 12\r\n\r\n"));
    }

    #[test]
    fn response_framing_follows_rfc9112() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                ResponseFraming::Length(12),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                ResponseFraming::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                ResponseFraming::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                ResponseFraming::Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                ResponseFraming::UntilClose,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\n",
                ResponseFraming::UntilClose,
                false,
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                ResponseFraming::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 40\r\n\r\n",
                ResponseFraming::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                ResponseFraming::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
                ResponseFraming::Length(4),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\n",
                ResponseFraming::Length(4),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 4\r\nConnection: Keep-Alive\r\n\r\n",
                ResponseFraming::Length(4),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n",
                ResponseFraming::Length(4),
                true,
            ),
        ];
        for (text, framing, keep_alive) in cases {
            let parsed = head(text);
            assert_eq!(parsed.framing, framing, "{text:?}");
            assert_eq!(parsed.keep_alive, keep_alive, "{text:?}");
        }
        let to_head = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n",
            Method::HEAD,
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(to_head.framing, ResponseFraming::Empty);
    }

    #[test]
    fn hop_by_hop_headers_never_reach_the_map_except_in_a_101() {
        let parsed = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
             X-Hop: 1\r\nX-Kept: 2\r\nTrailer: X-Sum\r\nContent-Length: 2\r\n\r\n",
        );
        let mut names: Vec<&str> = parsed.parts.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-kept"]);
        assert!(parsed.keep_alive);
        // Transfer-Encoding wins over Content-Length, which is not forwarded.
        let smuggled =
            head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(smuggled.framing, ResponseFraming::Chunked);
        assert!(smuggled.parts.headers.is_empty());
        let switching = head(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(switching.parts.headers["upgrade"], "websocket");
        assert_eq!(switching.parts.headers["connection"], "Upgrade");
    }

    #[test]
    fn the_head_is_taken_and_the_body_left() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 5\r\n\r\nhello"[..],
        );
        let parsed = parse_response(&mut buf, &Method::GET)
            .expect("valid")
            .expect("complete");
        assert_eq!(&buf[..], b"hello");
        assert_eq!(parsed.parts.status, StatusCode::NOT_FOUND);
        assert_eq!(parsed.parts.headers["server"], "nginx");
        assert_eq!(parsed.parts.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn partial_heads_wait_and_bad_heads_are_errors() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET)
            .expect("valid so far")
            .is_none());
        let bad = [
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ];
        for text in bad {
            assert!(parse(text, Method::GET).is_err(), "{text:?}");
        }
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            parse(&many, Method::GET).expect_err("too many"),
            HeadError::TooManyHeaders
        );
        let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            parse(&endless, Method::GET).expect_err("too large"),
            HeadError::TooLarge
        );
    }

    #[test]
    fn trailers_parse_into_a_map() {
        let map = parse_trailers(b"Grpc-Status: 0\r\nX-T: a\r\n").expect("trailers");
        assert_eq!(map["grpc-status"], "0");
        assert_eq!(map["x-t"], "a");
        assert!(parse_trailers(b"no colon\r\n").is_err());
    }
}
