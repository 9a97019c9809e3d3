//! TLS termination on a bind: the certificate store and its SNI
//! selection, the rustls server configuration built from a bind's options
//! (versions, ALPN, tickets, session cache, client certificates) and the
//! handshake driver that turns an accepted socket into a TLS stream and
//! the facts the `ssl_*` fetches read.
//!
//! Everything is built when the configuration is validated: a reload that
//! names a bad certificate is refused before anything changes, and a good
//! one swaps the whole [`TlsBind`] with the snapshot, so new handshakes
//! use the new certificates while established connections keep theirs.
use super::options::{BindOptions, ClientVerify, IgnoreErrors, TlsVersion};
use super::pem::{self, LoadedCert};
use crate::proxy::batch::BatchedTcp;
use rustls::{
    crypto::WebPkiSupportedAlgorithms,
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ClientHello, ProducesTickets, ResolvesServerCert, WebPkiClientVerifier,
    },
    sign::CertifiedKey,
    CertificateError, DistinguishedName, RootCertStore, ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, UnixTime};
use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// Sessions remembered for resumption without tickets (HAProxy's
/// `tune.ssl.cachesize` default is 20000).
pub const SESSION_CACHE_SIZE: usize = 20_000;

/// The certificates of one bind and which one answers which name.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: Vec<Arc<CertifiedKey>>,
    /// Exact names (lowercase) -> index.
    exact: HashMap<String, usize>,
    /// `*.example.com` is stored as `example.com` -> index.
    wildcard: HashMap<String, usize>,
    strict_sni: bool,
}

impl CertStore {
    /// The store of `certs` in load order: the first is the default, and
    /// the first certificate to claim a name keeps it.
    pub fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>, strict_sni: bool) -> CertStore {
        let mut store = CertStore {
            strict_sni,
            ..CertStore::default()
        };
        for (index, (key, names)) in certs.into_iter().enumerate() {
            for name in names {
                match name.strip_prefix("*.") {
                    Some(domain) => store.wildcard.entry(domain.to_owned()).or_insert(index),
                    None => store.exact.entry(name).or_insert(index),
                };
            }
            store.certs.push(key);
        }
        store
    }

    /// The certificate for a hello's SNI: an exact name, else a wildcard
    /// one level up, else the default one (none with `strict-sni`, and
    /// none without a SNI under `strict-sni` either, as HAProxy).
    pub fn select(&self, sni: Option<&str>) -> Option<usize> {
        let Some(sni) = sni else {
            return (!self.strict_sni && !self.certs.is_empty()).then_some(0);
        };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        let found = self.exact.get(&sni).copied().or_else(|| {
            let (_, parent) = sni.split_once('.')?;
            self.wildcard.get(parent).copied()
        });
        match found {
            Some(index) => Some(index),
            None if self.strict_sni => None,
            None => (!self.certs.is_empty()).then_some(0),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(hello.server_name())
            .and_then(|i| self.certs.get(i).cloned())
    }
}

/// Ticket keys shared by every bind and kept across reloads, so a
/// reload does not end every client's resumable session. rustls rotates
/// them (a new key every 6 hours, the previous one still decrypts).
fn ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let made =
        super::provider::ticketer().map_err(|e| format!("cannot make session ticket keys: {e}"))?;
    Ok(TICKETER.get_or_init(|| made).clone())
}

/// The session cache (resumption by session id, and TLS 1.3 resumption
/// under `no-tls-tickets`), shared like the ticket keys.
fn session_cache() -> Arc<dyn rustls::server::StoresServerSessions> {
    static CACHE: OnceLock<Arc<dyn rustls::server::StoresServerSessions>> = OnceLock::new();
    CACHE
        .get_or_init(|| rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE))
        .clone()
}

/// A bind's TLS side, validated and loaded.
pub struct TlsBind {
    pub options: BindOptions,
    pub acceptor: TlsAcceptor,
    /// Certificates loaded, in order (for status and tests).
    pub certificates: Vec<(std::path::PathBuf, Vec<String>)>,
    /// Expired or not-yet-valid certificates: shown by `lbd check` and
    /// logged at load, not refused (HAProxy serves them too).
    pub warnings: Vec<String>,
    /// A hash of every byte read: a reload with the same options and the
    /// same files compares equal.
    digest: u64,
    /// The client certificate verifier, kept when `ca-ignore-err` or
    /// `crt-ignore-err` may let a bad certificate through: `ssl_c_verify`
    /// then re-checks the certificate to say what was wrong.
    client_check: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for TlsBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsBind")
            .field("options", &self.options)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsBind {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options && self.digest == other.digest
    }
}
impl Eq for TlsBind {}
impl Hash for TlsBind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.options.hash(state);
        self.digest.hash(state);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl TlsBind {
    /// Loads the certificates `options` name and builds the rustls
    /// configuration; every problem is one message naming the file.
    pub fn load(options: BindOptions) -> Result<TlsBind, String> {
        options.check()?;
        let mut digest = std::hash::DefaultHasher::new();
        let now = unix_now();
        let mut loaded: Vec<LoadedCert> = Vec::new();
        for crt in &options.crts {
            loaded.extend(pem::load_crt(crt, now, &mut digest)?);
        }
        let warnings = loaded.iter().flat_map(|c| c.warnings.clone()).collect();
        let certificates = loaded
            .iter()
            .map(|c| (c.path.clone(), c.names.clone()))
            .collect();
        let store = CertStore::new(
            loaded.into_iter().map(|c| (c.key, c.names)).collect(),
            options.strict_sni,
        );
        let (config, client_check) = server_config(&options, store, &mut digest)?;
        Ok(TlsBind {
            options,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
            warnings,
            digest: digest.finish(),
            client_check,
        })
    }

    /// Runs the handshake within `limit` (a client that opens and stays
    /// silent, or trickles its hello, is cut then). `None`: it failed or
    /// took too long; the reason is returned for counting.
    pub async fn handshake(
        &self,
        stream: BatchedTcp,
        limit: Duration,
    ) -> Result<(TlsStream<BatchedTcp>, TlsFacts), HandshakeError> {
        let started = Instant::now();
        let accepted = tokio::time::timeout(limit, self.acceptor.accept(stream)).await;
        let stream = match accepted {
            Err(_) => return Err(HandshakeError::Timeout),
            Ok(Err(e)) => return Err(HandshakeError::of(&e)),
            Ok(Ok(stream)) => stream,
        };
        let mut facts = TlsFacts::of(stream.get_ref().1);
        facts.handshake_time = started.elapsed();
        if let (Some(verifier), Some(chain)) =
            (&self.client_check, stream.get_ref().1.peer_certificates())
        {
            facts.verify = verify_code(verifier.as_ref(), chain);
        }
        Ok((stream, facts))
    }
}

/// Why a handshake did not complete, in HAProxy's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// `timeout http-request` (or `timeout client`) expired.
    Timeout,
    /// The client closed before finishing its side.
    Closed,
    /// The client's certificate was refused.
    ClientCertificate(String),
    Failed(String),
}

impl HandshakeError {
    fn of(error: &std::io::Error) -> HandshakeError {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match (error.kind(), tls) {
            (_, Some(rustls::Error::InvalidCertificate(cause))) => {
                HandshakeError::ClientCertificate(format!("{cause:?}"))
            }
            (_, Some(rustls::Error::NoCertificatesPresented)) => {
                HandshakeError::ClientCertificate("no certificate".into())
            }
            (
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe,
                None,
            ) => HandshakeError::Closed,
            _ => HandshakeError::Failed(error.to_string()),
        }
    }

    /// HAProxy 2.6's words for it in the error log line.
    pub fn message(&self) -> &'static str {
        match self {
            HandshakeError::Timeout => "Timeout during SSL handshake",
            HandshakeError::Closed => "Connection closed during SSL handshake",
            HandshakeError::ClientCertificate(_) => "SSL client certificate not trusted",
            HandshakeError::Failed(_) => "SSL handshake failure",
        }
    }

    /// The client sent something (`dontlognull` leaves out the rest: port
    /// scans and probes that connect and close).
    pub fn client_spoke(&self) -> bool {
        !matches!(self, HandshakeError::Closed | HandshakeError::Timeout)
    }
}

/// The log record of a failed handshake: HAProxy's error line
/// (`1.2.3.4:5678 [date] fe/1: SSL handshake failure`), `bind` being the
/// bind's number in its frontend, from 1.
pub fn failure_record(
    frontend: &Arc<str>,
    bind: usize,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    accept_date: std::time::SystemTime,
    error: &HandshakeError,
) -> crate::log::AccessRecord {
    let mut record = crate::log::AccessRecord::new(
        crate::log::RecordMode::Http,
        src,
        dst,
        frontend.clone(),
        accept_date,
    );
    record.frontend_tls = true;
    // `dontlognull` reads what the client sent.
    record.bytes_from_client = u64::from(error.client_spoke());
    record.connection_error = Some(crate::log::ConnectionError {
        bind: Arc::from(bind.to_string()),
        message: error.message(),
    });
    record
}

/// OpenSSL's `X509_V_ERR_*` number for a verification failure, as
/// `ssl_c_verify` returns it (0: valid).
fn x509_code(error: &rustls::Error) -> u32 {
    match error {
        rustls::Error::InvalidCertificate(cause) => match cause {
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => 9,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => 10,
            CertificateError::UnknownIssuer => 20,
            CertificateError::BadSignature => 7,
            CertificateError::Revoked => 23,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => 26,
            // X509_V_ERR_UNSPECIFIED
            _ => 1,
        },
        _ => 1,
    }
}

/// Whether a failure lies in the chain above the client's certificate
/// (`ca-ignore-err`) rather than in the certificate itself
/// (`crt-ignore-err`): an unknown issuer of a presented intermediate.
fn is_chain_error(error: &rustls::Error, intermediates: &[CertificateDer<'_>]) -> bool {
    !intermediates.is_empty()
        && matches!(
            error,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        )
}

/// The verification result of a client chain (0, or an `X509_V_ERR_*`).
fn verify_code(verifier: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> u32 {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return 0;
    };
    match verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
        Ok(_) => 0,
        Err(error) => x509_code(&error),
    }
}

/// The client certificate verifier of a bind with `ca-ignore-err` or
/// `crt-ignore-err`: the errors named there let the handshake go on (the
/// client still proves it holds the certificate's key).
#[derive(Debug)]
struct IgnoringVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    ca_ignore: IgnoreErrors,
    crt_ignore: IgnoreErrors,
    /// The provider's, as `inner` checks handshake signatures with.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for IgnoringVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => Ok(verified),
            Err(error) => {
                let ignore = if is_chain_error(&error, intermediates) {
                    &self.ca_ignore
                } else {
                    &self.crt_ignore
                };
                if ignore.ignores(x509_code(&error)) {
                    Ok(ClientCertVerified::assertion())
                } else {
                    Err(error)
                }
            }
        }
    }
    webpki_signature_checks!(algorithms);
}

/// What the `ssl_fc_*` and `ssl_c_*` fetches read, fixed at handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFacts {
    pub sni: Option<String>,
    /// "TLSv1.2" or "TLSv1.3".
    pub protocol: &'static str,
    pub alpn: Option<String>,
    /// The client presented a certificate (`ssl_c_used`); it was verified
    /// against `ca-file`: the handshake failed unless `verify` is 0 or
    /// `ca-ignore-err`/`crt-ignore-err` let it through.
    pub client_cert: bool,
    /// `ssl_c_verify`: 0 when valid, else OpenSSL's `X509_V_ERR_*` number
    /// (10 expired, 20 unknown issuer, ...).
    pub verify: u32,
    /// The client certificate's subject (`ssl_c_s_dn`).
    pub client_subject: Option<String>,
    /// `Th`: accept to the end of the handshake.
    pub handshake_time: Duration,
}

impl TlsFacts {
    pub fn of(connection: &rustls::ServerConnection) -> TlsFacts {
        let protocol = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => TlsVersion::Tls13.name(),
            _ => TlsVersion::Tls12.name(),
        };
        let leaf = connection.peer_certificates().and_then(|c| c.first());
        TlsFacts {
            sni: connection.server_name().map(str::to_owned),
            protocol,
            alpn: connection
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            client_cert: leaf.is_some(),
            verify: 0,
            client_subject: leaf.and_then(|c| pem::subject_of(c)),
            handshake_time: Duration::ZERO,
        }
    }

    /// The client chose HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        self.alpn.as_deref() == Some("h2")
    }
}

/// The rustls configuration of a bind, and its client certificate
/// verifier when `ssl_c_verify` may need to re-check a certificate.
type BuiltConfig = (ServerConfig, Option<Arc<dyn ClientCertVerifier>>);

fn server_config(
    options: &BindOptions,
    store: CertStore,
    digest: &mut impl Hasher,
) -> Result<BuiltConfig, String> {
    let provider = super::provider::provider();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = {
        let (min, max) = options.versions();
        [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, v)| v)
        .collect()
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let verify = options.verify.unwrap_or_default();
    let mut client_check = None;
    let builder = match (&options.ca_file, verify) {
        (Some(ca_file), ClientVerify::Optional | ClientVerify::Required) => {
            let bytes = std::fs::read(ca_file)
                .map_err(|e| format!("cannot read ca-file {}: {e}", ca_file.display()))?;
            bytes.hash(digest);
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert =
                    cert.map_err(|e| format!("ca-file {}: malformed PEM: {e}", ca_file.display()))?;
                roots.add(cert).map_err(|e| {
                    format!(
                        "ca-file {}: not a usable CA certificate: {e}",
                        ca_file.display()
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "ca-file {} holds no certificate",
                    ca_file.display()
                ));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if verify == ClientVerify::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("ca-file {}: {e}", ca_file.display()))?;
            let ignoring = options.ca_ignore_err != IgnoreErrors::None
                || options.crt_ignore_err != IgnoreErrors::None;
            if ignoring {
                client_check = Some(verifier.clone());
                builder.with_client_cert_verifier(Arc::new(IgnoringVerifier {
                    inner: verifier,
                    ca_ignore: options.ca_ignore_err.clone(),
                    crt_ignore: options.crt_ignore_err.clone(),
                    algorithms: provider.signature_verification_algorithms,
                }))
            } else {
                builder.with_client_cert_verifier(verifier)
            }
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(store));
    config.alpn_protocols = options.alpn_protocols();
    config.session_storage = session_cache();
    if !options.no_tls_tickets {
        config.ticketer = ticketer()?;
    }
    Ok((config, client_check))
}

/// Reads a PEM bundle's facts for `lbd check` output and tests.
pub fn describe(bind: &TlsBind) -> String {
    bind.certificates
        .iter()
        .map(|(path, names)| format!("{} ({})", path.display(), names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(names: &[&[&str]], strict: bool) -> CertStore {
        // Selection only looks at names; any key will do for the table.
        let key = crate::proxy::tls::provider::signing_key(
            &rustls_pki_types::PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).expect("key"),
        )
        .expect("signing key");
        let certs = names
            .iter()
            .map(|n| {
                (
                    Arc::new(CertifiedKey::new(Vec::new(), key.clone())),
                    n.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        CertStore::new(certs, strict)
    }

    // A throwaway P-256 key, only to build CertifiedKeys for the table.
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJce/ipDZlRQF8sh1
OmaBh0EyXoEDWp4XCqqexW0EjAmhRANCAAR/6shjOeVMoxqhhdppg8I4t/1+s6fk
7S0cveo/PojI9K3Ah3kH8uEebidPI4Y+KE0h8d7GI2Ul/b+h3vM7tuab
-----END PRIVATE KEY-----
";

    #[test]
    fn sni_selection_table() {
        let s = store(
            &[
                &["default.example"],
                &["a.example", "*.wild.example"],
                &["*.example"],
                &["b.wild.example"],
            ],
            false,
        );
        let cases: &[(Option<&str>, Option<usize>)] = &[
            (None, Some(0)),
            (Some("default.example"), Some(0)),
            (Some("a.example"), Some(1)),
            (Some("A.Example."), Some(1)),
            (Some("x.wild.example"), Some(1)),
            // An exact name beats a wildcard.
            (Some("b.wild.example"), Some(3)),
            (Some("c.example"), Some(2)),
            // A wildcard covers one label only.
            (Some("deep.c.example"), Some(0)),
            (Some("wild.example"), Some(2)),
            (Some("unknown.test"), Some(0)),
        ];
        for (sni, expected) in cases {
            assert_eq!(s.select(*sni), *expected, "{sni:?}");
        }
    }

    #[test]
    fn strict_sni_refuses_unknown_names_and_no_sni() {
        let s = store(&[&["a.example"], &["*.b.example"]], true);
        assert_eq!(s.select(Some("a.example")), Some(0));
        assert_eq!(s.select(Some("x.b.example")), Some(1));
        assert_eq!(s.select(Some("c.example")), None);
        assert_eq!(s.select(None), None);
    }

    #[test]
    fn ssl_fetches_read_the_handshake() {
        use crate::proxy::acl::{split_words, AclTest, ConnInfo, RequestView};
        let src = "198.18.0.2:40000".parse().expect("src");
        let dst = "198.18.0.100:443".parse().expect("dst");
        let facts = TlsFacts {
            sni: Some("a.example".into()),
            protocol: "TLSv1.3",
            alpn: Some("h2".into()),
            client_cert: true,
            verify: 0,
            client_subject: Some("/C=FR/CN=client".into()),
            handshake_time: Duration::from_millis(3),
        };
        let tls = ConnInfo::terminated(src, dst, facts);
        let plain = ConnInfo::plain(src, dst);
        let cases: &[(&str, bool, bool)] = &[
            // (test, over TLS, in clear)
            ("ssl_fc", true, false),
            ("ssl_fc_sni a.example", true, false),
            ("ssl_fc_sni_end .example", true, false),
            ("ssl_fc_protocol TLSv1.3", true, false),
            ("ssl_fc_alpn h2", true, false),
            ("ssl_fc_alpn http/1.1", false, false),
            ("ssl_c_used", true, false),
            ("ssl_c_verify 0", true, false),
            ("ssl_c_s_dn -m sub CN=client", true, false),
        ];
        for (test, over_tls, in_clear) in cases {
            let words = split_words(test).expect("words");
            let acl = AclTest::parse(&words).unwrap_or_else(|e| panic!("{test}: {e}"));
            assert_eq!(
                acl.matches(&RequestView::connection(&tls)),
                *over_tls,
                "{test}"
            );
            assert_eq!(
                acl.matches(&RequestView::connection(&plain)),
                *in_clear,
                "{test}"
            );
        }
    }

    #[test]
    fn a_failed_handshake_is_logged_in_haproxys_error_format() {
        let frontend: Arc<str> = Arc::from("fe");
        let src = "198.18.0.2:47278".parse().expect("src");
        let dst = "198.18.0.100:443".parse().expect("dst");
        let date = std::time::UNIX_EPOCH + Duration::from_millis(1_764_684_967_107);
        let cases = [
            (
                HandshakeError::Failed("peer is incompatible".into()),
                "SSL handshake failure",
                false,
            ),
            (
                HandshakeError::Timeout,
                "Timeout during SSL handshake",
                true,
            ),
            (
                HandshakeError::Closed,
                "Connection closed during SSL handshake",
                true,
            ),
            (
                HandshakeError::ClientCertificate("UnknownIssuer".into()),
                "SSL client certificate not trusted",
                false,
            ),
        ];
        for (error, message, null) in cases {
            let record = failure_record(&frontend, 2, src, dst, date, &error);
            // The same line whatever the section's format (httplog here).
            let line = crate::log::format::format_record(
                &record,
                crate::log::AccessFormat::HttpLog,
                crate::log::Zone::utc(),
            );
            assert_eq!(
                line,
                format!("198.18.0.2:47278 [02/Dec/2025:14:16:07.107] fe/2: {message}")
            );
            assert_eq!(record.is_null(), null, "{error:?}: dontlognull");
        }
    }

    #[test]
    fn verify_errors_map_to_openssl_numbers() {
        let invalid = |e| rustls::Error::InvalidCertificate(e);
        assert_eq!(x509_code(&invalid(CertificateError::Expired)), 10);
        assert_eq!(x509_code(&invalid(CertificateError::NotValidYet)), 9);
        assert_eq!(x509_code(&invalid(CertificateError::UnknownIssuer)), 20);
        assert_eq!(x509_code(&invalid(CertificateError::BadSignature)), 7);
        assert_eq!(x509_code(&rustls::Error::DecryptError), 1);
        let intermediate = [CertificateDer::from(vec![0u8; 4])];
        assert!(is_chain_error(
            &invalid(CertificateError::UnknownIssuer),
            &intermediate
        ));
        assert!(!is_chain_error(
            &invalid(CertificateError::UnknownIssuer),
            &[]
        ));
        assert!(!is_chain_error(
            &invalid(CertificateError::Expired),
            &intermediate
        ));
    }

    #[test]
    fn the_first_certificate_claiming_a_name_keeps_it() {
        let s = store(&[&["a.example"], &["a.example"]], false);
        assert_eq!(s.select(Some("a.example")), Some(0));
    }
}
