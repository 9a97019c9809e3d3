//! The checks themselves: TCP connect, HTTP(S) request, command. Each is
//! bounded by its timeout and reports a short cause for the log.
use super::state::CheckResult;
use crate::config::health::{CheckKind, HealthCheck, HttpCheck};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::net::TcpStream;

/// Runs `check` against `address:port` (or the check's own target) once.
pub async fn run(check: &HealthCheck, address: IpAddr, port: u16) -> CheckResult {
    let target = SocketAddr::from((check.address.unwrap_or(address), check.port.unwrap_or(port)));
    let start = Instant::now();
    let outcome = tokio::time::timeout(check.timeout, probe(&check.kind, target)).await;
    let latency = start.elapsed();
    match outcome {
        Ok(Ok(())) => CheckResult {
            ok: true,
            latency,
            detail: "ok".into(),
        },
        Ok(Err(detail)) => CheckResult {
            ok: false,
            latency,
            detail,
        },
        Err(_) => CheckResult {
            ok: false,
            latency,
            detail: format!("timeout {}", humanize(check.timeout)),
        },
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

async fn probe(kind: &CheckKind, target: SocketAddr) -> Result<(), String> {
    match kind {
        CheckKind::Tcp => connect(target).await.map(drop),
        CheckKind::Http(http) => {
            let stream = connect(target).await?;
            request(TokioIo::new(stream), http, target).await
        }
        CheckKind::Https(http) => {
            let stream = connect(target).await?;
            let connector = tokio_rustls::TlsConnector::from(tls_config(http.tls_skip_verify)?);
            let name = http.host.clone().unwrap_or_else(|| target.ip().to_string());
            let server_name = rustls_pki_types::ServerName::try_from(name)
                .map_err(|e| format!("bad TLS server name: {e}"))?;
            let tls = connector
                .connect(server_name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            request(TokioIo::new(tls), http, target).await
        }
        CheckKind::Command(command) => run_command(command, target).await,
    }
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(target)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect refused".to_owned(),
            _ => format!("connect: {e}"),
        })
}

async fn request<S>(io: TokioIo<S>, http: &HttpCheck, target: SocketAddr) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let host = http.host.clone().unwrap_or_else(|| target.to_string());
    let request = hyper::Request::builder()
        .method(http.method.as_str())
        .uri(&http.path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "lbd-health-check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let result = if !http
        .expect_status
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&status))
    {
        Err(format!("HTTP {status}"))
    } else if let Some(expected) = &http.expect_body {
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        if String::from_utf8_lossy(&body).contains(expected.as_str()) {
            Ok(())
        } else {
            Err(format!("HTTP {status}, body lacks \"{expected}\""))
        }
    } else {
        Ok(())
    };
    driver.abort();
    result
}

async fn run_command(command: &str, target: SocketAddr) -> Result<(), String> {
    let command = command
        .replace("{address}", &target.ip().to_string())
        .replace("{port}", &target.port().to_string());
    let status = tokio::process::Command::new("/bin/sh")
        .args(["-c", &command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("command: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command {status}"))
    }
}

fn tls_config(skip_verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any certificate: only with `tls_skip_verify = true`, for backends
/// with self-signed certificates (HAProxy's `check-ssl verify none`).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
