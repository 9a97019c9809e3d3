//! Sans-IO response heads toward clients: how the body is framed on the
//! client's connection (RFC 9112 §6, as hyper's server decides it), whether
//! the connection closes after it, and the head's bytes.
use crate::proxy::http::hop;
use bytes::{BufMut, BytesMut};
use hyper::{header, http::response, StatusCode, Version};
use std::fmt::Write as _;

/// What the request told about the client's side of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSide {
    /// A HEAD request: the response has no body whatever its headers say.
    pub head_request: bool,
    pub version: Version,
    /// The client keeps the connection after this exchange.
    pub keep_alive: bool,
}

/// How the response body is delimited toward the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes are written (HEAD, 1xx, 204, 304).
    NoBody,
    Length(u64),
    Chunked,
    /// An HTTP/1.0 client and a body of unknown length: it ends with the
    /// connection.
    UntilClose,
}

/// The framing and fate of the connection for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub framing: Framing,
    /// A framing header this head adds (`content-length` or
    /// `transfer-encoding: chunked`); the response's own stands otherwise.
    add_framing_header: bool,
    /// The connection closes once the response is written.
    pub close: bool,
    /// The head carries `Connection: close` already.
    says_close: bool,
}

/// Decides the framing of `parts` for `client`. `body_over`: the body has
/// nothing to send; `exact`: its length when known in advance.
pub fn plan(
    parts: &response::Parts,
    client: ClientSide,
    body_over: bool,
    exact: Option<u64>,
) -> Plan {
    let status = parts.status;
    let facts = hop::facts_of(&parts.headers);
    let (framing, add_framing_header) = if client.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        (Framing::NoBody, false)
    } else if let Ok(Some(length)) = facts.content_length.get() {
        (Framing::Length(length), false)
    } else if body_over {
        (Framing::Length(0), true)
    } else if let Some(length) = exact {
        (Framing::Length(length), true)
    } else if client.version == Version::HTTP_11 {
        (Framing::Chunked, true)
    } else {
        (Framing::UntilClose, false)
    };
    let says_close = facts.connection.close;
    let close = status != StatusCode::SWITCHING_PROTOCOLS
        && (!client.keep_alive || framing == Framing::UntilClose || says_close);
    Plan {
        framing,
        add_framing_header,
        close,
        says_close,
    }
}

/// Writes the head of `parts` framed by `plan` into `out`: HTTP/1.1, the
/// header lines lower-cased as hyper writes them, a `Connection: close`
/// when the connection ends here and `keep-alive` for an HTTP/1.0 client
/// that keeps it.
pub fn encode(parts: &response::Parts, plan: &Plan, client: ClientSide, out: &mut BytesMut) {
    let status = parts.status;
    out.reserve(64 + parts.headers.len() * 40);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // lbd frames the body itself.
        if name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && plan.add_framing_header)
        {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if plan.add_framing_header {
        match plan.framing {
            Framing::Length(length) => {
                // Writing into a BytesMut cannot fail.
                let _ = write!(out, "content-length: {length}\r\n");
            }
            Framing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
    }
    if plan.close && !plan.says_close {
        out.put_slice(b"connection: close\r\n");
    } else if !plan.close
        && client.version == Version::HTTP_10
        && status != StatusCode::SWITCHING_PROTOCOLS
    {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Response;

    const KEEP_11: ClientSide = ClientSide {
        head_request: false,
        version: Version::HTTP_11,
        keep_alive: true,
    };

    fn parts(status: u16, headers: &[(&str, &str)]) -> response::Parts {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("response").into_parts().0
    }

    fn encoded(
        parts: &response::Parts,
        client: ClientSide,
        over: bool,
        exact: Option<u64>,
    ) -> (Plan, String) {
        let plan = plan(parts, client, over, exact);
        let mut out = BytesMut::new();
        encode(parts, &plan, client, &mut out);
        (plan, String::from_utf8(out.to_vec()).expect("utf-8"))
    }

    #[test]
    fn the_servers_length_stands_and_a_known_one_is_added() {
        let (plan, head) = encoded(
            &parts(200, &[("content-length", "12")]),
            KEEP_11,
            false,
            None,
        );
        assert_eq!(plan.framing, Framing::Length(12));
        assert!(!plan.close);
        assert_eq!(head, "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        let (plan, head) = encoded(&parts(404, &[("x-a", "1")]), KEEP_11, false, Some(7));
        assert_eq!(plan.framing, Framing::Length(7));
        assert_eq!(
            head,
            "HTTP/1.1 404 Not Found\r\nx-a: 1\r\ncontent-length: 7\r\n\r\n"
        );
        let (plan, head) = encoded(&parts(200, &[]), KEEP_11, true, Some(0));
        assert_eq!(plan.framing, Framing::Length(0));
        assert_eq!(head, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn an_unknown_length_is_chunked_for_http11_and_until_close_for_http10() {
        let (plan, head) = encoded(
            &parts(200, &[("transfer-encoding", "chunked")]),
            KEEP_11,
            false,
            None,
        );
        assert_eq!(plan.framing, Framing::Chunked);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let old = ClientSide {
            version: Version::HTTP_10,
            ..KEEP_11
        };
        let (plan, head) = encoded(&parts(200, &[]), old, false, None);
        assert_eq!(plan.framing, Framing::UntilClose);
        assert!(plan.close);
        assert_eq!(head, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        let (plan, head) = encoded(&parts(200, &[]), old, false, Some(2));
        assert!(!plan.close);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_responses_add_no_framing() {
        let head_request = ClientSide {
            head_request: true,
            ..KEEP_11
        };
        for (status, client) in [(204, KEEP_11), (304, KEEP_11), (200, head_request)] {
            let (plan, head) = encoded(
                &parts(status, &[("content-length", "5")]),
                client,
                false,
                Some(5),
            );
            assert_eq!(plan.framing, Framing::NoBody, "{status}");
            assert!(head.contains("content-length: 5\r\n"), "{head}");
            assert_eq!(head.matches("content-length").count(), 1, "{head}");
        }
        let (plan, head) = encoded(
            &parts(101, &[("connection", "upgrade"), ("upgrade", "websocket")]),
            ClientSide {
                keep_alive: false,
                ..KEEP_11
            },
            true,
            Some(0),
        );
        assert_eq!((plan.framing, plan.close), (Framing::NoBody, false));
        assert_eq!(
            head,
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn close_comes_from_either_side_and_is_said_once() {
        let closing_client = ClientSide {
            keep_alive: false,
            ..KEEP_11
        };
        let (plan, head) = encoded(&parts(200, &[]), closing_client, true, Some(0));
        assert!(plan.close);
        assert!(head.ends_with("connection: close\r\n\r\n"), "{head}");
        let (plan, head) = encoded(
            &parts(503, &[("connection", "close")]),
            KEEP_11,
            true,
            Some(0),
        );
        assert!(plan.close);
        assert_eq!(head.matches("close").count(), 1, "{head}");
    }
}
