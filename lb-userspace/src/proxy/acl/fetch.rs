//! Sample fetches: what an ACL looks at (`path`, `hdr(host)`, `src` ...),
//! their default matchers and where they can be evaluated.
use super::pattern::MatchKind;
use super::RequestView;
use hyper::http::HeaderName;
use std::{borrow::Cow, net::IpAddr};

/// One sample extracted from a request, response or connection.
#[derive(Debug, Clone)]
pub enum Sample<'a> {
    Bytes(Cow<'a, [u8]>),
    Int(i64),
    Ip(IpAddr),
    Bool(bool),
}

/// What a fetch needs to be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Connection facts: usable everywhere, also in `mode tcp`.
    Connection,
    /// The HTTP request: `mode http`, request rules and `use_backend`.
    Request,
    /// The HTTP response: `http-response` rules only.
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The path, without the query string (`path`).
    Path,
    /// The request target as received (`url`).
    Url,
    /// The query string after `?` (`query`).
    Query,
    /// Each value of a query-string parameter (`url_param(NAME)`, `urlp`).
    UrlParam(String),
    /// Each comma-separated value of a request header (`hdr(NAME)`).
    Hdr(HeaderName),
    /// Number of values of a header, or of all headers (`hdr_cnt`).
    HdrCnt(Option<HeaderName>),
    Method,
    /// "1.0", "1.1", "2.0" (`req.ver`).
    Version,
    Src,
    Dst,
    DstPort,
    SrcPort,
    Constant(bool),
    /// The client connection is TLS (`ssl_fc`).
    SslFc,
    /// The SNI of the client's TLS hello (`ssl_fc_sni`, `req.ssl_sni`).
    Sni,
    /// "TLSv1.2" or "TLSv1.3" (`ssl_fc_protocol`).
    SslFcProtocol,
    /// The protocol chosen by ALPN (`ssl_fc_alpn`).
    SslFcAlpn,
    /// The client sent a certificate (`ssl_c_used`).
    SslCUsed,
    /// The client certificate's verification result, 0 = valid
    /// (`ssl_c_verify`; nonzero only under `ca-ignore-err`/`crt-ignore-err`).
    SslCVerify,
    /// The client certificate's subject, `/C=../CN=..` (`ssl_c_s_dn`).
    SslCSDn,
    /// The handshake type of the peeked TLS hello (`req_ssl_hello_type`).
    SslHelloType,
    /// The highest TLS version the peeked hello offers, major * 65536 +
    /// minor (`req.ssl_ver`).
    SslHelloVersion,
    /// Each ALPN protocol of the peeked hello (`req.ssl_alpn`).
    SslHelloAlpn,
    /// The response status (`status`).
    Status,
    /// Each comma-separated value of a response header (`res.hdr(NAME)`).
    ResHdr(HeaderName),
}

/// Matcher suffixes HAProxy derives from a fetch name (`path_beg` ...).
const SUFFIXES: &[(&str, MatchKind)] = &[
    ("_beg", MatchKind::Beg),
    ("_end", MatchKind::End),
    ("_sub", MatchKind::Sub),
    ("_reg", MatchKind::Reg),
    ("_dir", MatchKind::Dir),
    ("_dom", MatchKind::Dom),
    ("_len", MatchKind::Len),
];

impl Fetch {
    /// Parses a criterion such as `path_beg`, `hdr(host)`, `hdr_dom(host)`
    /// or `url_param(id)` into the fetch and its default matcher.
    pub fn parse(word: &str) -> Result<(Fetch, MatchKind), String> {
        let (name, arg) = match word.split_once('(') {
            Some((name, rest)) => {
                let arg = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("\"{word}\": missing ')'"))?;
                (name, Some(arg.trim()))
            }
            None => (word, None),
        };
        if let Some(found) = Self::exact(name, arg)? {
            return Ok(found);
        }
        for (suffix, kind) in SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some((fetch, MatchKind::Str)) = Self::exact(base, arg)? {
                    if matches!(fetch, Fetch::Path | Fetch::Url | Fetch::Query)
                        || matches!(fetch, Fetch::Hdr(_) | Fetch::UrlParam(_) | Fetch::Sni)
                        || matches!(fetch, Fetch::SslHelloAlpn)
                        || matches!(fetch, Fetch::ResHdr(_))
                    {
                        return Ok((fetch, *kind));
                    }
                }
            }
        }
        Err(format!("unknown fetch \"{word}\""))
    }

    fn exact(name: &str, arg: Option<&str>) -> Result<Option<(Fetch, MatchKind)>, String> {
        let no_arg = |fetch: Fetch, kind: MatchKind| match arg {
            None | Some("") => Ok(Some((fetch, kind))),
            Some(_) => Err(format!("\"{name}\" takes no argument")),
        };
        let header = |what: &str| -> Result<HeaderName, String> {
            let arg = arg
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("\"{what}\" needs a header name, as in {what}(host)"))?;
            if arg.contains(',') {
                return Err(format!(
                    "\"{what}({arg})\": the occurrence argument is not supported"
                ));
            }
            HeaderName::from_bytes(arg.as_bytes())
                .map_err(|_| format!("\"{arg}\" is not a valid header name"))
        };
        Ok(Some(match name {
            "path" => return no_arg(Fetch::Path, MatchKind::Str),
            "url" => return no_arg(Fetch::Url, MatchKind::Str),
            "query" => return no_arg(Fetch::Query, MatchKind::Str),
            "method" => return no_arg(Fetch::Method, MatchKind::Str),
            "req.ver" | "req_ver" => return no_arg(Fetch::Version, MatchKind::Str),
            "src" => return no_arg(Fetch::Src, MatchKind::Ip),
            "dst" => return no_arg(Fetch::Dst, MatchKind::Ip),
            "dst_port" => return no_arg(Fetch::DstPort, MatchKind::Int),
            "src_port" => return no_arg(Fetch::SrcPort, MatchKind::Int),
            "always_true" | "TRUE" => return no_arg(Fetch::Constant(true), MatchKind::Bool),
            "always_false" | "FALSE" => return no_arg(Fetch::Constant(false), MatchKind::Bool),
            "ssl_fc" => return no_arg(Fetch::SslFc, MatchKind::Bool),
            "ssl_fc_sni" | "req.ssl_sni" | "req_ssl_sni" => {
                return no_arg(Fetch::Sni, MatchKind::Str)
            }
            "ssl_fc_protocol" => return no_arg(Fetch::SslFcProtocol, MatchKind::Str),
            "ssl_fc_alpn" => return no_arg(Fetch::SslFcAlpn, MatchKind::Str),
            "ssl_c_used" => return no_arg(Fetch::SslCUsed, MatchKind::Bool),
            "ssl_c_verify" => return no_arg(Fetch::SslCVerify, MatchKind::Int),
            "ssl_c_s_dn" => return no_arg(Fetch::SslCSDn, MatchKind::Str),
            "req_ssl_hello_type" | "req.ssl_hello_type" => {
                return no_arg(Fetch::SslHelloType, MatchKind::Int)
            }
            "req.ssl_ver" | "req_ssl_ver" => return no_arg(Fetch::SslHelloVersion, MatchKind::Int),
            "req.ssl_alpn" | "req_ssl_alpn" => return no_arg(Fetch::SslHelloAlpn, MatchKind::Str),
            "status" => return no_arg(Fetch::Status, MatchKind::Int),
            "url_param" | "urlp" => {
                let param = arg.filter(|a| !a.is_empty()).ok_or_else(|| {
                    format!("\"{name}\" needs a parameter name, as in {name}(id)")
                })?;
                if param.contains(',') {
                    return Err(format!(
                        "\"{name}({param})\": a custom delimiter is not supported"
                    ));
                }
                (Fetch::UrlParam(param.to_owned()), MatchKind::Str)
            }
            "hdr" | "req.hdr" => (Fetch::Hdr(header(name)?), MatchKind::Str),
            "res.hdr" | "shdr" => (Fetch::ResHdr(header(name)?), MatchKind::Str),
            "hdr_cnt" | "req.hdr_cnt" => {
                let header = match arg {
                    None | Some("") => None,
                    Some(_) => Some(header(name)?),
                };
                (Fetch::HdrCnt(header), MatchKind::Int)
            }
            _ => return Ok(None),
        }))
    }

    pub fn side(&self) -> Side {
        match self {
            Fetch::Src
            | Fetch::Dst
            | Fetch::DstPort
            | Fetch::SrcPort
            | Fetch::Constant(_)
            | Fetch::SslFc
            | Fetch::Sni
            | Fetch::SslFcProtocol
            | Fetch::SslFcAlpn
            | Fetch::SslCUsed
            | Fetch::SslCVerify
            | Fetch::SslCSDn
            | Fetch::SslHelloType
            | Fetch::SslHelloVersion
            | Fetch::SslHelloAlpn => Side::Connection,
            Fetch::Status | Fetch::ResHdr(_) => Side::Response,
            _ => Side::Request,
        }
    }

    /// Calls `visit` with each sample until it returns true; returns whether
    /// one did. A fetch that cannot be evaluated here yields nothing.
    pub fn samples(&self, view: &RequestView, visit: &mut dyn FnMut(Sample) -> bool) -> bool {
        let conn = view.conn;
        match self {
            Fetch::Src => visit(Sample::Ip(conn.src.ip())),
            Fetch::Dst => visit(Sample::Ip(conn.dst.ip())),
            Fetch::DstPort => visit(Sample::Int(i64::from(conn.dst.port()))),
            Fetch::SrcPort => visit(Sample::Int(i64::from(conn.src.port()))),
            Fetch::Constant(value) => visit(Sample::Bool(*value)),
            Fetch::SslFc => visit(Sample::Bool(conn.tls)),
            Fetch::Sni => match &conn.sni {
                Some(sni) => visit(Sample::Bytes(Cow::Borrowed(sni.as_bytes()))),
                None => false,
            },
            Fetch::SslFcProtocol
            | Fetch::SslFcAlpn
            | Fetch::SslCUsed
            | Fetch::SslCVerify
            | Fetch::SslCSDn => {
                let Some(facts) = conn.handshake.as_deref() else {
                    return false;
                };
                let mut text = |s: &str| visit(Sample::Bytes(Cow::Owned(s.as_bytes().to_vec())));
                match self {
                    Fetch::SslFcProtocol => text(facts.protocol),
                    Fetch::SslFcAlpn => facts.alpn.as_deref().is_some_and(text),
                    Fetch::SslCUsed => visit(Sample::Bool(facts.client_cert)),
                    Fetch::SslCVerify => visit(Sample::Int(i64::from(facts.verify))),
                    _ => facts.client_subject.as_deref().is_some_and(text),
                }
            }
            Fetch::SslHelloType | Fetch::SslHelloVersion | Fetch::SslHelloAlpn => {
                match conn.client_hello.as_deref() {
                    Some(peeked) => hello_samples(self, peeked, visit),
                    None => false,
                }
            }
            Fetch::Status => match view.response {
                Some(response) => visit(Sample::Int(i64::from(response.status.as_u16()))),
                None => false,
            },
            Fetch::ResHdr(name) => match view.response {
                Some(response) => header_values(&response.headers, name, visit),
                None => false,
            },
            _ => match view.request {
                Some(request) => Self::request_samples(self, request, visit),
                None => false,
            },
        }
    }

    fn request_samples(
        &self,
        request: &hyper::http::request::Parts,
        visit: &mut dyn FnMut(Sample) -> bool,
    ) -> bool {
        let bytes = |s: &str| Sample::Bytes(Cow::Owned(s.as_bytes().to_vec()));
        match self {
            Fetch::Path => visit(Sample::Bytes(Cow::Borrowed(request.uri.path().as_bytes()))),
            Fetch::Url => match request.uri.scheme() {
                Some(_) => visit(bytes(&request.uri.to_string())),
                None => {
                    let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
                    visit(Sample::Bytes(Cow::Borrowed(target.as_bytes())))
                }
            },
            Fetch::Query => match request.uri.query() {
                Some(query) => visit(Sample::Bytes(Cow::Borrowed(query.as_bytes()))),
                None => false,
            },
            Fetch::UrlParam(name) => query_param_values(request.uri.query(), name)
                .any(|v| visit(Sample::Bytes(Cow::Borrowed(v.as_bytes())))),
            Fetch::Hdr(name) => match authority_as_host(request, name) {
                Some(host) => visit(Sample::Bytes(Cow::Borrowed(host.as_bytes()))),
                None => header_values(&request.headers, name, visit),
            },
            Fetch::HdrCnt(name) => {
                let count = match name {
                    Some(name) if authority_as_host(request, name).is_some() => 1,
                    Some(name) => request
                        .headers
                        .get_all(name)
                        .iter()
                        .map(|v| v.as_bytes().split(|&b| b == b',').count())
                        .sum::<usize>(),
                    None => request.headers.len(),
                };
                visit(Sample::Int(count as i64))
            }
            Fetch::Method => visit(Sample::Bytes(Cow::Borrowed(
                request.method.as_str().as_bytes(),
            ))),
            Fetch::Version => {
                let version = match request.version {
                    hyper::http::Version::HTTP_09 => "0.9",
                    hyper::http::Version::HTTP_10 => "1.0",
                    hyper::http::Version::HTTP_11 => "1.1",
                    hyper::http::Version::HTTP_2 => "2.0",
                    _ => "3.0",
                };
                visit(Sample::Bytes(Cow::Borrowed(version.as_bytes())))
            }
            _ => false,
        }
    }
}

/// Samples of the peeked TLS hello (tcp_request inspect-delay).
fn hello_samples(
    fetch: &Fetch,
    peeked: &crate::proxy::tls::clienthello::Peek,
    visit: &mut dyn FnMut(Sample) -> bool,
) -> bool {
    use crate::proxy::tls::clienthello::Peek;
    match (fetch, peeked) {
        (Fetch::SslHelloType, _) => peeked
            .hello_type()
            .is_some_and(|kind| visit(Sample::Int(i64::from(kind)))),
        (Fetch::SslHelloVersion, Peek::ClientHello(hello)) => {
            let version = hello.max_version();
            visit(Sample::Int(
                i64::from(version >> 8) * 65536 + i64::from(version & 0xff),
            ))
        }
        (Fetch::SslHelloAlpn, Peek::ClientHello(hello)) => hello
            .alpn
            .iter()
            .any(|name| visit(Sample::Bytes(Cow::Borrowed(name.as_bytes())))),
        _ => false,
    }
}

/// HTTP/2 carries the host in `:authority`, which HAProxy presents as the
/// `Host` header: the authority, when a request asks for a missing `Host`.
pub fn authority_as_host<'a>(
    request: &'a hyper::http::request::Parts,
    name: &HeaderName,
) -> Option<&'a str> {
    if name != hyper::http::header::HOST || request.headers.contains_key(name) {
        return None;
    }
    request.uri.authority().map(|a| a.as_str())
}

/// HAProxy's `hdr()`: every occurrence, each comma-separated value on its
/// own, blanks around it trimmed.
fn header_values(
    headers: &hyper::http::HeaderMap,
    name: &HeaderName,
    visit: &mut dyn FnMut(Sample) -> bool,
) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| visit(Sample::Bytes(Cow::Borrowed(part.trim_ascii()))))
    })
}

/// Values of `name` in a query string (`a=1&b=2`), raw (not decoded), as
/// HAProxy's `url_param`; a parameter without `=` has an empty value.
pub fn query_param_values<'a>(
    query: Option<&'a str>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    query
        .unwrap_or("")
        .split(['&', ';'])
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
}
