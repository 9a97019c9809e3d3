//! Header work of a proxied exchange: hop-by-hop headers (RFC 9110 §7.6.1)
//! removed on both sides, the Upgrade exchange kept, `option forwardfor`
//! (X-Forwarded-For appended, X-Forwarded-Proto/-Host), `option forwarded`
//! (RFC 7239) and the Connection header HAProxy's connection modes send.
pub use super::hop::InvalidContentLength;
use super::hop::{self, ConnectionTokens, ContentLength, Hop};
use crate::proxy::config::{ForwardFor, HttpConnectionMode};
use bytes::Bytes;
use hyper::{
    header::{self, HeaderMap, HeaderName, HeaderValue},
    http::{request, response, uri, Uri, Version},
};
use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr},
};

thread_local! {
    /// Header maps emptied once their head was written, for the next head
    /// parsed on this thread: a new map costs two allocations and their
    /// frees (about 4% of the proxy's user time per keep-alive request).
    static SPARE_MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// Spare maps kept per thread: a request's and a response's in flight on
/// each of a few connections served in one turn.
const SPARE_MAPS_KEPT: usize = 16;
/// A map grown by an unusually large head is not kept.
const SPARE_MAP_CAPACITY_MAX: usize = 96;

/// An empty map with room for `capacity` headers, a spare one if any.
pub fn header_map(capacity: usize) -> HeaderMap {
    match SPARE_MAPS.with(|spare| spare.borrow_mut().pop()) {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Keeps `map`'s memory for [`header_map`] (its headers are dropped now).
pub fn recycle(mut map: HeaderMap) {
    if map.capacity() > SPARE_MAP_CAPACITY_MAX {
        return;
    }
    map.clear();
    SPARE_MAPS.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAPS_KEPT {
            spare.push(map);
        }
    });
}

/// Where one header line's name and value lie in its head, as offsets:
/// a parsed line's slices borrow the read buffer, which is split off
/// before the map is built. Offsets rather than parsed names keep the
/// staging small (it was 1.1 KiB copied twice per head).
#[derive(Debug, Clone, Copy)]
pub struct LineSpan {
    name: (u32, u32),
    value: (u32, u32),
}

/// The lines of a head, staged.
pub type LineSpans = smallvec::SmallVec<[LineSpan; 24]>;

/// A header line whose name or value the `http` types refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHeaderLine;

impl LineSpan {
    /// The span of `line` in the buffer starting at `base`. `None` past
    /// 4 GiB, which no head limit allows.
    pub fn of(base: *const u8, line: &httparse::Header<'_>) -> Option<LineSpan> {
        let span = |s: &[u8]| -> Option<(u32, u32)> {
            let start = (s.as_ptr() as usize).checked_sub(base as usize)?;
            Some((u32::try_from(start).ok()?, u32::try_from(s.len()).ok()?))
        };
        Some(LineSpan {
            name: span(line.name.as_bytes())?,
            value: span(line.value)?,
        })
    }
}

/// A map of `lines` of `head` (values share its bytes), with room for
/// `extra` more headers.
pub fn map_of_lines(
    head: &Bytes,
    lines: &[LineSpan],
    extra: usize,
) -> Result<HeaderMap, InvalidHeaderLine> {
    let range = |(start, len): (u32, u32)| start as usize..start as usize + len as usize;
    let mut headers = header_map(lines.len() + extra);
    for line in lines {
        let name = head
            .get(range(line.name))
            .and_then(|name| HeaderName::from_bytes(name).ok())
            .ok_or(InvalidHeaderLine)?;
        let value = range(line.value);
        if value.end > head.len() {
            return Err(InvalidHeaderLine);
        }
        let value =
            HeaderValue::from_maybe_shared(head.slice(value)).map_err(|_| InvalidHeaderLine)?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Headers that describe one hop, never forwarded, in [`Hop`]'s order.
/// Names, not strings: removing by a string parses it every time.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The protocol a request asks to switch to (`Connection: upgrade` and
/// `Upgrade: <protocol>`), e.g. `websocket`.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = has_connection_token(headers, "upgrade");
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// The tokens of every Connection header.
fn connection_tokens(headers: &HeaderMap) -> ConnectionTokens {
    let mut tokens = ConnectionTokens::default();
    for value in headers.get_all(header::CONNECTION) {
        tokens.add(value.as_bytes());
    }
    tokens
}

/// Removes the hop-by-hop headers and those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few headers a message has finds the hop-by-hop
    // ones (a message without any, most requests, is left at that);
    // removing each of the eight names blindly hashed them all.
    let mut present = 0u8;
    let mut tokens = ConnectionTokens::default();
    for (name, value) in headers.iter() {
        if let Some(hop) = Hop::of(name.as_str().as_bytes()) {
            present |= 1 << hop as u8;
            if hop == Hop::Connection {
                tokens.add(value.as_bytes());
            }
        }
    }
    if present == 0 {
        return;
    }
    if tokens.names_other {
        // Tokens that name a header of their own: rare, so the common
        // message allocates nothing here.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|token| !token.is_empty() && Hop::of(token).is_none())
            .filter_map(|token| HeaderName::from_bytes(token).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether any Connection header carries `token` (`close`, `keep-alive`
/// or `upgrade`; case-insensitive).
pub fn has_connection_token(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).has(token)
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`, HTTP/1.0
/// only with `Connection: keep-alive`.
pub fn persists(headers: &HeaderMap, version: Version) -> bool {
    connection_tokens(headers).persists(version == Version::HTTP_10)
}

/// Whether the last transfer coding is `chunked` (RFC 9112 §6.3).
pub fn chunked_is_last(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .is_some_and(|v| hop::chunked_is_last(v.as_bytes()))
}

/// The message's `Content-Length`: absent (`None`), one number, or several
/// equal ones (RFC 9110 §8.6); anything else is invalid.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, InvalidContentLength> {
    let mut length = ContentLength::default();
    for value in headers.get_all(header::CONTENT_LENGTH) {
        length.add(value.as_bytes());
    }
    length.get()
}

/// What httparse's error says, for an error message.
pub fn httparse_reason(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid new line",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// What the client sent that decides the request's routing-independent
/// header edits.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub forwardfor: Option<&'a ForwardFor>,
    pub forwarded: bool,
    pub client: SocketAddr,
    /// The address the client connected to (RFC 7239 `by`).
    pub local: SocketAddr,
    /// `http` until TLS termination exists.
    pub scheme: &'static str,
}

/// `option forwardfor` and `option forwarded` on a request head.
pub fn add_forwarding(parts: &mut request::Parts, forwarding: &Forwarding) {
    let client = forwarding.client.ip();
    if forwarding.forwardfor.is_none() && !forwarding.forwarded {
        return;
    }
    let host = host_of(parts);
    if let Some(forwardfor) = forwarding.forwardfor {
        if forwardfor.applies_to(client) {
            // HAProxy adds its own header line after any the client sent;
            // one line per hop reads the same as a comma-separated list.
            let name = HeaderName::from_bytes(forwardfor.header.as_bytes()).ok();
            if let Some(name) = name.filter(|_| forwardfor.adds_to(&parts.headers)) {
                if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
                    parts.headers.append(name, value);
                }
            }
            parts.headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static(forwarding.scheme),
            );
            if let Some(host) = &host {
                parts
                    .headers
                    .insert(HeaderName::from_static("x-forwarded-host"), host.clone());
            }
        }
    }
    if forwarding.forwarded {
        let mut value = format!(
            "for={};by={};proto={}",
            forwarded_node(client),
            forwarded_node(forwarding.local.ip()),
            forwarding.scheme
        );
        if let Some(host) = host.as_ref().and_then(|h| h.to_str().ok()) {
            value.push_str(";host=");
            value.push_str(&quoted_if_needed(host));
        }
        if let Ok(value) = HeaderValue::from_str(&value) {
            parts.headers.append(header::FORWARDED, value);
        }
    }
}

/// RFC 7239 §6: IPv6 nodes are bracketed and quoted.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

fn quoted_if_needed(value: &str) -> String {
    let token = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The request's host: the Host header, else the URI's authority (HTTP/2).
pub fn host_of(parts: &request::Parts) -> Option<HeaderValue> {
    parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Turns a client request head (HTTP/1.x or HTTP/2) into the HTTP/1.1 head
/// sent to a server: origin-form target, a Host header, hop-by-hop headers
/// gone, and the Connection header of the connection mode (`close` when
/// the server connection will not be reused). An upgrade keeps its
/// `Connection: upgrade` and `Upgrade` headers.
pub fn prepare_upstream(
    parts: &mut request::Parts,
    mode: HttpConnectionMode,
    upgrade: Option<&HeaderValue>,
) {
    // HTTP/2's authority becomes the Host header (an HTTP/1 request has
    // one already: a second is refused before routing).
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = host_of(parts) {
            parts.headers.insert(header::HOST, host);
        }
    }
    let target = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| uri::PathAndQuery::from_static("/"));
    parts.uri = Uri::from(target);
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    } else if mode != HttpConnectionMode::KeepAlive {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Turns a server's response head into the client's: hop-by-hop headers
/// gone (the body is framed again for the client's own connection), `Connection:
/// close` in `httpclose` mode, the upgrade headers of a 101 kept.
pub fn prepare_downstream(parts: &mut response::Parts, mode: HttpConnectionMode) {
    let upgrade = (parts.status == hyper::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(&mut parts.headers);
    if parts.status == hyper::StatusCode::SWITCHING_PROTOCOLS {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = upgrade {
            parts.headers.insert(header::UPGRADE, protocol);
        }
    } else if mode == HttpConnectionMode::Close {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(request: Request<()>) -> request::Parts {
        request.into_parts().0
    }

    fn forwardfor(except: &[&str]) -> ForwardFor {
        ForwardFor {
            header: "X-Forwarded-For".into(),
            except: except.iter().map(|n| n.parse().expect("net")).collect(),
            if_none: false,
        }
    }

    fn forwarding<'a>(ff: Option<&'a ForwardFor>, forwarded: bool, client: &str) -> Forwarding<'a> {
        Forwarding {
            forwardfor: ff,
            forwarded,
            client: client.parse().expect("client"),
            local: "198.18.0.100:80".parse().expect("local"),
            scheme: "http",
        }
    }

    #[test]
    fn forwardfor_appends_after_the_clients_header() {
        let mut p = parts(
            Request::get("/")
                .header("host", "example.test")
                .header("x-forwarded-for", "203.0.113.9")
                .body(())
                .expect("request"),
        );
        let ff = forwardfor(&[]);
        add_forwarding(&mut p, &forwarding(Some(&ff), false, "198.18.0.2:4000"));
        let values: Vec<_> = p.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(values, ["203.0.113.9", "198.18.0.2"]);
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-host"], "example.test");
    }

    #[test]
    fn forwardfor_if_none_keeps_the_clients_header() {
        let ff = ForwardFor {
            if_none: true,
            ..forwardfor(&[])
        };
        let mut sent = parts(
            Request::get("/")
                .header("X-Forwarded-For", "203.0.113.9")
                .body(())
                .expect("request"),
        );
        add_forwarding(&mut sent, &forwarding(Some(&ff), false, "198.18.0.2:4000"));
        let values: Vec<_> = sent.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(values, ["203.0.113.9"]);
        let mut bare = parts(Request::get("/").body(()).expect("request"));
        add_forwarding(&mut bare, &forwarding(Some(&ff), false, "198.18.0.2:4000"));
        assert_eq!(bare.headers["x-forwarded-for"], "198.18.0.2");
    }

    #[test]
    fn forwardfor_except_skips_the_network() {
        let mut p = parts(Request::get("/").body(()).expect("request"));
        let ff = forwardfor(&["127.0.0.0/8"]);
        add_forwarding(&mut p, &forwarding(Some(&ff), false, "127.0.0.1:4000"));
        assert!(p.headers.get("x-forwarded-for").is_none());
        add_forwarding(&mut p, &forwarding(Some(&ff), false, "198.18.0.2:4000"));
        assert_eq!(p.headers["x-forwarded-for"], "198.18.0.2");
    }

    #[test]
    fn forwarded_follows_rfc7239() {
        let mut p = parts(
            Request::get("/")
                .header("host", "example.test:8080")
                .body(())
                .expect("request"),
        );
        add_forwarding(&mut p, &forwarding(None, true, "[fd00::2]:4000"));
        assert_eq!(
            p.headers["forwarded"],
            "for=\"[fd00::2]\";by=198.18.0.100;proto=http;host=\"example.test:8080\""
        );
        assert!(p.headers.get("x-forwarded-for").is_none());
    }

    #[test]
    fn every_hop_by_hop_header_and_every_named_one_is_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("Connection", "close, X-Named"),
            ("Connection", "Keep-Alive"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authenticate", "Basic"),
            ("TE", "trailers"),
            ("TE", "gzip"),
            ("Trailer", "X-Sum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Close", "named by the token close"),
            ("X-Named", "1"),
            ("X-Kept", "1"),
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn upstream_head_is_http11_origin_form_without_hop_headers() {
        let mut p = parts(
            Request::get("http://example.test/a?b=1")
                .version(Version::HTTP_2)
                .header("connection", "keep-alive, x-private")
                .header("x-private", "1")
                .header("keep-alive", "timeout=5")
                .header("te", "trailers")
                .header("x-kept", "1")
                .body(())
                .expect("request"),
        );
        prepare_upstream(&mut p, HttpConnectionMode::ServerClose, None);
        assert_eq!(p.uri, "/a?b=1");
        assert_eq!(p.version, Version::HTTP_11);
        assert_eq!(p.headers["host"], "example.test");
        assert_eq!(p.headers["connection"], "close");
        assert_eq!(p.headers["x-kept"], "1");
        for gone in ["x-private", "keep-alive", "te"] {
            assert!(p.headers.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn keep_alive_mode_sends_no_connection_header_and_upgrade_is_kept() {
        let mut p = parts(
            Request::get("/chat")
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .body(())
                .expect("request"),
        );
        let upgrade = upgrade_protocol(&p.headers);
        assert_eq!(
            upgrade.as_ref().map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        prepare_upstream(&mut p, HttpConnectionMode::KeepAlive, upgrade.as_ref());
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");

        let mut plain = parts(Request::get("/").body(()).expect("request"));
        prepare_upstream(&mut plain, HttpConnectionMode::KeepAlive, None);
        assert!(plain.headers.get("connection").is_none());
    }

    #[test]
    fn httpclose_closes_the_client_side() {
        let (mut p, _) = hyper::Response::builder()
            .header("connection", "keep-alive")
            .header("transfer-encoding", "chunked")
            .body(())
            .expect("response")
            .into_parts();
        prepare_downstream(&mut p, HttpConnectionMode::Close);
        assert_eq!(p.headers["connection"], "close");
        assert!(p.headers.get("transfer-encoding").is_none());
    }
}
