//! TLS to servers (HAProxy's server options `ssl`, `verify none|required`,
//! `verifyhost`, `ca-file`, `sni`, `check-sni`, `alpn`, `crt`,
//! `check-ssl`): the settings are validated once when the configuration is
//! loaded (files read, certificates parsed, the rustls client
//! configuration built), and [`ServerTls::target`] picks the name to send
//! for one connection. Verification follows HAProxy 2.6: with `verify
//! required` the chain must lead to a certificate of `ca_file`; the
//! certificate's names are checked against the SNI when one is sent, else
//! against `verifyhost` when set, else not at all.
use crate::proxy::acl::{authority_as_host, ConnInfo};
use crate::proxy::config::{ErrorSink, RawServer, RawServerDefaults};
use crate::proxy::tls::PathBases;
use hyper::http::{request, HeaderName};
use rustls::{
    client::danger::{ServerCertVerified, ServerCertVerifier},
    client::{verify_server_cert_signed_by_trust_anchor, verify_server_name},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::ParsedCertificate,
    ClientConfig, RootCertStore,
};
use std::{
    io,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};
use toml::Spanned;

/// What to send as SNI (HAProxy's `sni <expression>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniExpr {
    /// `str(api.example)`.
    Fixed(ServerName<'static>),
    /// `req.hdr(host)` (the port stripped), or another request header.
    RequestHeader(HeaderName),
    /// `ssl_fc_sni` / `req.ssl_sni`: the name the client sent.
    ClientSni,
}

impl SniExpr {
    pub fn parse(text: &str) -> Result<SniExpr, String> {
        let text = text.trim();
        let (name, arg) = match text.split_once('(') {
            Some((name, rest)) => {
                let arg = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("\"{text}\": missing ')'"))?;
                (name, Some(arg.trim()))
            }
            None => (text, None),
        };
        match (name, arg) {
            ("str", Some(host)) => dns_name(host)
                .map(SniExpr::Fixed)
                .ok_or_else(|| format!("sni \"{host}\" is not a DNS name")),
            ("req.hdr" | "hdr", Some(header)) if !header.is_empty() => {
                HeaderName::from_bytes(header.as_bytes())
                    .map(SniExpr::RequestHeader)
                    .map_err(|_| format!("\"{header}\" is not a header name"))
            }
            ("ssl_fc_sni" | "req.ssl_sni" | "req_ssl_sni", None) => Ok(SniExpr::ClientSni),
            _ => Err(format!(
                "unsupported sni expression \"{text}\" (str(NAME), req.hdr(NAME), ssl_fc_sni, req.ssl_sni)"
            )),
        }
    }

    /// Whether the name depends on the request or connection (then a
    /// pooled connection cannot be shared between requests).
    pub fn is_dynamic(&self) -> bool {
        !matches!(self, SniExpr::Fixed(_))
    }
}

/// A DNS name (not an IP address, which SNI cannot carry).
fn dns_name(text: &str) -> Option<ServerName<'static>> {
    match ServerName::try_from(text.trim_end_matches('.').to_owned()) {
        Ok(name @ ServerName::DnsName(_)) => Some(name),
        _ => None,
    }
}

/// A server's TLS settings, ready to connect.
#[derive(Clone)]
pub struct ServerTls {
    /// `ssl`: traffic goes over TLS (else only the checks, `check_ssl`).
    pub ssl: bool,
    pub connector: TlsConnector,
    pub sni: Option<SniExpr>,
    /// `check_sni`: the SNI of health checks.
    pub check_sni: Option<ServerName<'static>>,
    pub verify: bool,
    /// What the settings were built from, with the files' contents, so
    /// that a reload after a changed CA file is a change.
    identity: String,
    /// A digest of `identity`: pooled connections are kept under it, so
    /// that a connection opened with these settings (CA, `verifyhost`,
    /// client certificate ...) never serves a server with others at the
    /// same address.
    pool_tag: Arc<str>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .finish()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}
impl Eq for ServerTls {}

/// One connection's TLS: the connector and the name to present.
#[derive(Clone)]
pub struct TlsTarget {
    pub connector: TlsConnector,
    /// A DNS name (sent as SNI, certificate names checked) or the server's
    /// IP address (no SNI, names not checked).
    pub name: ServerName<'static>,
    /// The name depends on the request or the client connection: a pooled
    /// connection serves only requests that want the same name.
    pub per_request: bool,
    /// See [`ServerTls`]'s `pool_tag`.
    pool_tag: Arc<str>,
}

impl TlsTarget {
    /// What a pooled TLS connection is kept under: the settings' digest,
    /// and the SNI when it is chosen per request (so a connection opened
    /// for one name serves only that name).
    pub fn pool_name(&self) -> Option<Arc<str>> {
        if !self.per_request {
            return Some(self.pool_tag.clone());
        }
        let name = match &self.name {
            ServerName::DnsName(name) => name.as_ref(),
            _ => "",
        };
        Some(Arc::from(format!("{}|{name}", self.pool_tag)))
    }
}

impl ServerTls {
    /// The target for one connection to `address`: the SNI expression
    /// evaluated on the client connection and request, or no SNI when it
    /// yields nothing usable.
    pub fn target(
        &self,
        conn: Option<&ConnInfo>,
        request: Option<&request::Parts>,
        address: SocketAddr,
    ) -> TlsTarget {
        let name = match &self.sni {
            None => None,
            Some(SniExpr::Fixed(name)) => Some(name.clone()),
            Some(SniExpr::ClientSni) => conn.and_then(|c| c.sni.as_deref()).and_then(dns_name),
            Some(SniExpr::RequestHeader(header)) => request.and_then(|r| {
                let value = authority_as_host(r, header)
                    .or_else(|| r.headers.get(header).and_then(|v| v.to_str().ok()))?;
                dns_name(strip_port(value))
            }),
        };
        TlsTarget {
            connector: self.connector.clone(),
            name: name.unwrap_or(ServerName::IpAddress(address.ip().into())),
            per_request: self.sni.as_ref().is_some_and(SniExpr::is_dynamic),
            pool_tag: self.pool_tag.clone(),
        }
    }

    /// The target of a health check: `check_sni`, else a fixed `sni`,
    /// else no SNI (HAProxy does not evaluate a request-dependent `sni`
    /// for checks).
    pub fn check_target(&self, address: SocketAddr) -> TlsTarget {
        let fixed = match &self.sni {
            Some(SniExpr::Fixed(name)) => Some(name),
            _ => None,
        };
        TlsTarget {
            connector: self.connector.clone(),
            name: (self.check_sni.as_ref().or(fixed).cloned())
                .unwrap_or(ServerName::IpAddress(address.ip().into())),
            per_request: false,
            pool_tag: self.pool_tag.clone(),
        }
    }
}

/// "host:443" → "host", "[fd00::1]:443" → "fd00::1" (not a DNS name).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A connection to a server, with TLS when the server has `ssl`.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `address` and, for a server with `ssl`, runs the TLS
/// handshake (HAProxy counts it in `timeout connect`, which the caller
/// applies around this). A refused certificate is logged (at most once a
/// second) with its cause: the session's log line only says `SC`.
pub async fn connect(
    address: SocketAddr,
    tls: Option<&ServerTls>,
    conn: &ConnInfo,
) -> io::Result<ServerStream> {
    let stream = TcpStream::connect(address).await?;
    let Some(tls) = tls.filter(|t| t.ssl) else {
        return Ok(ServerStream::Plain(stream));
    };
    let target = tls.target(Some(conn), None, address);
    match handshake(&target, stream).await {
        Ok(stream) => Ok(ServerStream::Tls(Box::new(stream))),
        Err(error) => {
            log_failure(address, &error);
            Err(error)
        }
    }
}

/// Logs a failed TLS handshake with a server, at most once a second.
pub fn log_failure(address: SocketAddr, error: &io::Error) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::proxy::stats::now_ms();
    let last = LAST.load(Relaxed);
    if now.saturating_sub(last) >= 1000
        && LAST.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    {
        tracing::warn!("TLS handshake with server {address} failed: {error}");
    }
}

/// The TLS handshake on a connected stream; a verification failure is an
/// `InvalidData` error naming the cause.
pub async fn handshake(target: &TlsTarget, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    target.connector.connect(target.name.clone(), stream).await
}

/// The server fields as written, after `default_server`.
#[derive(Debug, Clone, Default)]
pub struct TlsFields {
    pub ssl: bool,
    pub check_ssl: bool,
    /// `None`: HAProxy's default, `required`.
    pub verify: Option<String>,
    pub verifyhost: Option<String>,
    pub ca_file: Option<String>,
    pub sni: Option<String>,
    pub check_sni: Option<String>,
    pub alpn: Option<String>,
    pub crt: Option<String>,
}

/// Which field a problem is about, for `FILE:LINE: field: message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsField {
    Ssl,
    Verify,
    VerifyHost,
    CaFile,
    Sni,
    CheckSni,
    Alpn,
    Crt,
}

impl TlsField {
    pub fn name(self) -> &'static str {
        match self {
            TlsField::Ssl => "ssl",
            TlsField::Verify => "verify",
            TlsField::VerifyHost => "verifyhost",
            TlsField::CaFile => "ca_file",
            TlsField::Sni => "sni",
            TlsField::CheckSni => "check_sni",
            TlsField::Alpn => "alpn",
            TlsField::Crt => "crt",
        }
    }
}

/// Builds the TLS settings of a server with `ssl` or `check_ssl`
/// (`Ok(None)` without either).
pub fn build(fields: &TlsFields) -> Result<Option<Arc<ServerTls>>, (TlsField, String)> {
    if !fields.ssl && !fields.check_ssl {
        return Ok(None);
    }
    let verify = match fields.verify.as_deref() {
        None | Some("required") => true,
        Some("none") => false,
        Some(other) => {
            return Err((
                TlsField::Verify,
                format!("\"{other}\" is not a verify mode (none, required)"),
            ))
        }
    };
    let mut identity = format!("{fields:?}");
    let roots = match (&fields.ca_file, verify) {
        (Some(path), _) => {
            let pem = read(path).map_err(|e| (TlsField::CaFile, e))?;
            identity.push_str(&String::from_utf8_lossy(&pem));
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| (TlsField::CaFile, format!("{path}: not a PEM certificate: {e}")))?;
                roots.add(cert).map_err(|e| {
                    (TlsField::CaFile, format!("{path}: unusable CA certificate: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err((TlsField::CaFile, format!("{path}: no certificate in the file")));
            }
            verify.then(|| Arc::new(roots))
        }
        (None, true) => {
            return Err((
                TlsField::Verify,
                "verify is required by default but no ca_file is set: set ca_file = \"/path/ca.pem\", or verify = \"none\" on a network where the server's certificate need not be checked (HAProxy 2.6 refuses this too)".into(),
            ))
        }
        (None, false) => None,
    };
    let name = |text: &Option<String>, field: TlsField| {
        text.as_deref()
            .map(|host| {
                dns_name(host).ok_or_else(|| (field, format!("\"{host}\" is not a DNS name")))
            })
            .transpose()
    };
    let verifyhost = name(&fields.verifyhost, TlsField::VerifyHost)?;
    let check_sni = name(&fields.check_sni, TlsField::CheckSni)?;
    let alpn = fields
        .alpn
        .as_deref()
        .map(alpn_protocols)
        .transpose()
        .map_err(|e| (TlsField::Alpn, e))?;
    let provider = super::provider::provider();
    let verifier = Arc::new(Verifier {
        roots,
        verifyhost,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| (TlsField::Ssl, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &fields.crt {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read(path).map_err(|e| (TlsField::Crt, e))?;
            identity.push_str(&String::from_utf8_lossy(&pem));
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (TlsField::Crt, format!("{path}: bad PEM certificate: {e}")))?;
            if chain.is_empty() {
                return Err((TlsField::Crt, format!("{path}: no certificate in the file")));
            }
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                (
                    TlsField::Crt,
                    format!("{path}: no private key (HAProxy's crt is the certificate chain and its key in one PEM file): {e}"),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                (
                    TlsField::Crt,
                    format!("{path}: certificate and key refused: {e}"),
                )
            })?
        }
    };
    config.alpn_protocols = alpn.unwrap_or_default();
    let sni = fields
        .sni
        .as_deref()
        .map(SniExpr::parse)
        .transpose()
        .map_err(|e| (TlsField::Sni, e))?;
    let pool_tag = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        identity.hash(&mut hasher);
        Arc::from(format!("tls:{:016x}", hasher.finish()))
    };
    Ok(Some(Arc::new(ServerTls {
        ssl: fields.ssl,
        connector: TlsConnector::from(Arc::new(config)),
        sni,
        check_sni,
        verify,
        identity,
        pool_tag,
    })))
}

/// HAProxy's `alpn` list for a server (`http/1.1`): lbd speaks HTTP/1.1
/// to servers, so a server must not be offered h2.
fn alpn_protocols(list: &str) -> Result<Vec<Vec<u8>>, String> {
    list.split(',')
        .map(|protocol| match protocol.trim() {
            "http/1.1" => Ok(b"http/1.1".to_vec()),
            "h2" => Err("lbd speaks HTTP/1.1 to servers: offer \"http/1.1\" only (h2 is served to clients, not spoken to servers)".into()),
            other => Err(format!("alpn \"{other}\" is not supported (http/1.1)")),
        })
        .collect()
}

/// Validates `default_server`'s TLS fields on their own (files, `sni`,
/// the `verify` value), so that a problem there is reported once, at its
/// line; whether a CA is missing is decided per server.
pub fn check_defaults(
    raw: &RawServerDefaults,
    paths: &PathBases,
    field: &str,
    sink: &mut dyn ErrorSink,
) {
    let spans = FieldSpans::of_defaults(raw);
    if spans.is_empty() {
        return;
    }
    let mut fields = fields_of(raw, paths);
    fields.ssl = true;
    if fields.ca_file.is_none() && matches!(fields.verify.as_deref(), None | Some("required")) {
        fields.verify = Some("none".into());
    }
    if let Err((which, message)) = build(&fields) {
        let span = spans.get(which).or(spans.first()).unwrap_or(0..0);
        sink.report(span, &format!("{field}.{}", which.name()), message);
    }
}

/// A server's TLS settings: its own fields over its `default_server`'s.
/// A problem with an inherited value was reported at the `default_server`
/// line; one with the server's own value (or a missing CA) is reported
/// here. The server gets no TLS when the settings are refused (the file is
/// then refused as a whole).
pub fn server_tls(
    server: &Spanned<RawServer>,
    defaults: &RawServerDefaults,
    paths: &PathBases,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> Option<Arc<ServerTls>> {
    let raw = server.get_ref();
    let own = raw.settings();
    let own_spans = FieldSpans::of_defaults(&own);
    let merged = own.over(defaults);
    match build(&fields_of(&merged, paths)) {
        Ok(tls) => tls,
        Err((which, message)) => {
            let span = match own_spans.get(which) {
                Some(span) => Some(span),
                // A missing CA is about this server; a bad inherited
                // value was reported where it was written.
                None if which == TlsField::Verify && defaults.verify.is_none() => Some(
                    own_spans
                        .get(TlsField::Ssl)
                        .unwrap_or_else(|| raw.name.span()),
                ),
                None => None,
            };
            if let Some(span) = span {
                sink.report(span, &format!("{field}.{}", which.name()), message);
            }
            None
        }
    }
}

/// The TLS fields as written, files under `crt_base`/`ca_base`.
fn fields_of(raw: &RawServerDefaults, paths: &PathBases) -> TlsFields {
    let flag = |v: &Option<Spanned<bool>>| v.as_ref().is_some_and(|b| *b.get_ref());
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
    let file = |v: &Option<Spanned<String>>, under: fn(&PathBases, &Path) -> PathBuf| {
        text(v).map(|p| under(paths, Path::new(&p)).display().to_string())
    };
    TlsFields {
        ssl: flag(&raw.ssl),
        check_ssl: flag(&raw.check_ssl),
        verify: text(&raw.verify),
        verifyhost: text(&raw.verifyhost),
        ca_file: file(&raw.ca_file, PathBases::ca),
        sni: text(&raw.sni),
        check_sni: text(&raw.check_sni),
        alpn: text(&raw.alpn),
        crt: file(&raw.crt, PathBases::crt),
    }
}

/// Where each TLS field was written.
struct FieldSpans(Vec<(TlsField, Range<usize>)>);

impl FieldSpans {
    fn of_defaults(raw: &RawServerDefaults) -> FieldSpans {
        let mut spans = Vec::new();
        let flag_span = raw
            .ssl
            .as_ref()
            .or(raw.check_ssl.as_ref())
            .map(|s| s.span());
        spans.extend(flag_span.map(|s| (TlsField::Ssl, s)));
        for (which, value) in [
            (TlsField::Verify, &raw.verify),
            (TlsField::VerifyHost, &raw.verifyhost),
            (TlsField::CaFile, &raw.ca_file),
            (TlsField::Sni, &raw.sni),
            (TlsField::CheckSni, &raw.check_sni),
            (TlsField::Alpn, &raw.alpn),
            (TlsField::Crt, &raw.crt),
        ] {
            spans.extend(value.as_ref().map(|v| (which, v.span())));
        }
        FieldSpans(spans)
    }
    fn get(&self, which: TlsField) -> Option<Range<usize>> {
        self.0
            .iter()
            .find(|(w, _)| *w == which)
            .map(|(_, s)| s.clone())
    }
    fn first(&self) -> Option<Range<usize>> {
        self.0.first().map(|(_, s)| s.clone())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(PathBuf::from(path)).map_err(|e| format!("{path}: {e}"))
}

/// HAProxy's server-side verification: the chain against `ca_file` (none
/// with `verify none`), the names against the SNI when one was sent, else
/// against `verifyhost` when set.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    verifyhost: Option<ServerName<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
            let expected = match server_name {
                ServerName::DnsName(_) => Some(server_name),
                _ => self.verifyhost.as_ref(),
            };
            if let Some(expected) = expected {
                verify_server_name(&cert, expected)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    webpki_signature_checks!(algorithms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_expressions() {
        assert!(matches!(
            SniExpr::parse("str(api.example)"),
            Ok(SniExpr::Fixed(ServerName::DnsName(_)))
        ));
        assert_eq!(
            SniExpr::parse("req.hdr(host)"),
            Ok(SniExpr::RequestHeader(HeaderName::from_static("host")))
        );
        assert_eq!(SniExpr::parse("ssl_fc_sni"), Ok(SniExpr::ClientSni));
        for (bad, needle) in [
            ("str(198.18.0.1)", "not a DNS name"),
            ("str(a b)", "not a DNS name"),
            ("req.hdr(host", "missing ')'"),
            ("req.hdr()", "unsupported sni expression"),
            ("base", "unsupported sni expression"),
        ] {
            let error = SniExpr::parse(bad).unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    fn request(host: &str) -> request::Parts {
        hyper::http::Request::builder()
            .uri("/")
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn the_name_sent_per_connection() {
        let tls = build(&TlsFields {
            ssl: true,
            verify: Some("none".into()),
            sni: Some("req.hdr(host)".into()),
            ..TlsFields::default()
        })
        .unwrap()
        .unwrap();
        let address: SocketAddr = "198.18.0.11:443".parse().unwrap();
        let name = |host: &str| tls.target(None, Some(&request(host)), address).name;
        assert_eq!(
            name("www.example:8443"),
            ServerName::try_from("www.example").unwrap()
        );
        assert_eq!(
            name("www.example"),
            ServerName::try_from("www.example").unwrap()
        );
        assert_eq!(
            name("[fd00::1]:443"),
            ServerName::IpAddress(address.ip().into())
        );
        assert_eq!(
            tls.target(None, None, address).name,
            ServerName::IpAddress(address.ip().into())
        );
        assert_eq!(
            tls.check_target(address).name,
            ServerName::IpAddress(address.ip().into())
        );
        // check_sni names the checks' SNI, over a fixed sni.
        let with = |sni: Option<&str>, check_sni: Option<&str>| {
            build(&TlsFields {
                ssl: true,
                verify: Some("none".into()),
                sni: sni.map(str::to_owned),
                check_sni: check_sni.map(str::to_owned),
                alpn: Some("http/1.1".into()),
                ..TlsFields::default()
            })
            .unwrap()
            .unwrap()
            .check_target(address)
            .name
        };
        let dns = |n: &str| ServerName::try_from(n.to_owned()).unwrap();
        assert_eq!(with(None, Some("c.example")), dns("c.example"));
        assert_eq!(
            with(Some("str(s.example)"), Some("c.example")),
            dns("c.example")
        );
        assert_eq!(with(Some("str(s.example)"), None), dns("s.example"));
        assert_eq!(
            with(Some("req.hdr(host)"), None),
            ServerName::IpAddress(address.ip().into())
        );
    }

    #[test]
    fn pooled_connections_are_kept_per_settings_and_per_request_name() {
        let tls = |sni: &str, verifyhost: Option<&str>| {
            build(&TlsFields {
                ssl: true,
                verify: Some("none".into()),
                sni: Some(sni.into()),
                verifyhost: verifyhost.map(str::to_owned),
                ..TlsFields::default()
            })
            .unwrap()
            .unwrap()
        };
        let address: SocketAddr = "198.18.0.11:443".parse().unwrap();
        let per_host = tls("req.hdr(host)", None);
        let key =
            |t: &ServerTls, host: &str| t.target(None, Some(&request(host)), address).pool_name();
        assert_eq!(key(&per_host, "a.example"), key(&per_host, "a.example:443"));
        assert_ne!(key(&per_host, "a.example"), key(&per_host, "b.example"));
        let fixed = tls("str(a.example)", None);
        assert_eq!(key(&fixed, "a.example"), key(&fixed, "b.example"));
        assert!(key(&fixed, "a.example").is_some());
        // Other settings to the same address: never the same pool.
        let other = tls("str(a.example)", Some("b.example"));
        assert_ne!(key(&fixed, "a.example"), key(&other, "a.example"));
        assert_eq!(
            key(&fixed, "x"),
            key(&tls("str(a.example)", None), "y"),
            "a reload with the same settings keeps the pool"
        );
    }

    #[test]
    fn relative_files_are_read_under_crt_base_and_ca_base() {
        let raw: RawServerDefaults = toml::from_str(
            "ssl = true\nca_file = \"ca.pem\"\ncrt = \"/abs/client.pem\"\nverifyhost = \"a.example\"",
        )
        .unwrap();
        let paths = PathBases {
            crt: Some("/etc/lbd/crt".into()),
            ca: Some("/etc/lbd/ca".into()),
        };
        let fields = fields_of(&raw, &paths);
        assert_eq!(fields.ca_file.as_deref(), Some("/etc/lbd/ca/ca.pem"));
        assert_eq!(fields.crt.as_deref(), Some("/abs/client.pem"));
        assert_eq!(fields.verifyhost.as_deref(), Some("a.example"));
        let raw: RawServerDefaults = toml::from_str("crt = \"c.pem\"").unwrap();
        assert_eq!(
            fields_of(&raw, &paths).crt.as_deref(),
            Some("/etc/lbd/crt/c.pem")
        );
        assert_eq!(
            fields_of(&raw, &PathBases::default()).crt.as_deref(),
            Some("c.pem")
        );
    }

    #[test]
    fn settings_refused_with_the_field_at_fault() {
        let dir = std::env::temp_dir().join(format!("lbd-tls-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a pem\n").unwrap();
        let garbage = garbage.display().to_string();
        let fields = |edit: &dyn Fn(&mut TlsFields)| {
            let mut f = TlsFields {
                ssl: true,
                ..TlsFields::default()
            };
            edit(&mut f);
            f
        };
        let cases: Vec<(TlsFields, TlsField, &str)> = vec![
            (fields(&|_| {}), TlsField::Verify, "no ca_file"),
            (
                fields(&|f| f.verify = Some("optional".into())),
                TlsField::Verify,
                "not a verify mode",
            ),
            (
                fields(&|f| f.ca_file = Some("/nonexistent/ca.pem".into())),
                TlsField::CaFile,
                "No such file",
            ),
            (
                fields(&|f| f.ca_file = Some(garbage.clone())),
                TlsField::CaFile,
                "no certificate",
            ),
            (
                fields(&|f| {
                    f.verify = Some("none".into());
                    f.crt = Some(garbage.clone())
                }),
                TlsField::Crt,
                "no certificate",
            ),
            (
                fields(&|f| {
                    f.verify = Some("none".into());
                    f.sni = Some("path".into())
                }),
                TlsField::Sni,
                "unsupported sni",
            ),
            (
                fields(&|f| {
                    f.verify = Some("none".into());
                    f.verifyhost = Some("198.18.0.1".into())
                }),
                TlsField::VerifyHost,
                "not a DNS name",
            ),
            (
                fields(&|f| {
                    f.verify = Some("none".into());
                    f.check_sni = Some("a b".into())
                }),
                TlsField::CheckSni,
                "not a DNS name",
            ),
            (
                fields(&|f| {
                    f.verify = Some("none".into());
                    f.alpn = Some("h2,http/1.1".into())
                }),
                TlsField::Alpn,
                "HTTP/1.1 to servers",
            ),
            (
                fields(&|f| {
                    f.verify = Some("none".into());
                    f.alpn = Some("spdy/3".into())
                }),
                TlsField::Alpn,
                "not supported",
            ),
        ];
        for (fields, field, needle) in cases {
            let Err((got, message)) = build(&fields) else {
                panic!("{fields:?} accepted");
            };
            assert_eq!(got, field, "{message}");
            assert!(message.contains(needle), "{message}");
        }
        assert!(build(&TlsFields::default()).unwrap().is_none());
        let check_only = TlsFields {
            check_ssl: true,
            verify: Some("none".into()),
            ..TlsFields::default()
        };
        assert!(build(&check_only).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
