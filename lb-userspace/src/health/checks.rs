//! The checks themselves: TCP connect, HTTP(S) request, command. Each is
//! bounded by its timeout and reports a short cause for the log. A check
//! that could not even start because this machine ran out of something
//! (file descriptors, memory, processes) says so apart: that is not the
//! backend's failure.
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

/// A check that failed on this machine's side: it says nothing about the
/// backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LocalError(pub String);

/// Why a probe failed.
enum Failure {
    /// The backend refused, answered wrongly, or not at all.
    Backend(String),
    Local(LocalError),
}

impl From<String> for Failure {
    fn from(detail: String) -> Self {
        Failure::Backend(detail)
    }
}

/// Errors that mean this machine ran out of a resource (descriptors,
/// memory, buffers, processes), not that the peer failed.
pub fn is_local_resource_error(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN)
    )
}

/// Runs `check` against `address:port` (or the check's own target) once.
/// `Err` when the check could not run for a local reason.
pub async fn run(
    check: &HealthCheck,
    address: IpAddr,
    port: u16,
) -> Result<CheckResult, LocalError> {
    let target = SocketAddr::from((check.address.unwrap_or(address), check.port.unwrap_or(port)));
    let start = Instant::now();
    let outcome = tokio::time::timeout(check.timeout, probe(&check.kind, target)).await;
    let latency = start.elapsed();
    Ok(match outcome {
        Ok(Ok(())) => CheckResult {
            ok: true,
            latency,
            detail: "ok".into(),
        },
        Ok(Err(Failure::Backend(detail))) => CheckResult {
            ok: false,
            latency,
            detail,
        },
        Ok(Err(Failure::Local(error))) => return Err(error),
        Err(_) => CheckResult {
            ok: false,
            latency,
            detail: format!("timeout {}", humanize(check.timeout)),
        },
    })
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

async fn probe(kind: &CheckKind, target: SocketAddr) -> Result<(), Failure> {
    match kind {
        CheckKind::Tcp => connect(target).await.map(drop),
        CheckKind::Http(http) => {
            let stream = connect(target).await?;
            Ok(request(TokioIo::new(stream), http, target).await?)
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
            Ok(request(TokioIo::new(tls), http, target).await?)
        }
        CheckKind::Command(command) => run_command(command, target).await,
    }
}

async fn connect(target: SocketAddr) -> Result<TcpStream, Failure> {
    TcpStream::connect(target).await.map_err(|e| {
        if is_local_resource_error(&e) {
            Failure::Local(LocalError(format!("connect: {e}")))
        } else if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Failure::Backend("connect refused".to_owned())
        } else {
            Failure::Backend(format!("connect: {e}"))
        }
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

async fn run_command(command: &str, target: SocketAddr) -> Result<(), Failure> {
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
        .map_err(|e| {
            if is_local_resource_error(&e) {
                Failure::Local(LocalError(format!("command: {e}")))
            } else {
                Failure::Backend(format!("command: {e}"))
            }
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Backend(format!("command {status}")))
    }
}

fn tls_config(skip_verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = crate::proxy::tls::provider::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification {
                algorithms: provider.signature_verification_algorithms,
            }))
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
struct NoVerification {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

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

    crate::proxy::tls::webpki_signature_checks!(algorithms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::health::CheckKind;
    use std::time::Duration;

    fn tcp_check() -> HealthCheck {
        HealthCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            address: None,
            port: None,
        }
    }

    #[test]
    fn resource_exhaustion_is_local_and_refusal_is_the_backends() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_local_resource_error(&std::io::Error::from_raw_os_error(
                errno
            )));
        }
        for errno in [libc::ECONNREFUSED, libc::EHOSTUNREACH, libc::ETIMEDOUT] {
            assert!(!is_local_resource_error(
                &std::io::Error::from_raw_os_error(errno)
            ));
        }
    }

    /// With no descriptor left, a TCP check is a local error, not a
    /// backend failure. Runs in a child process whose limit is lowered.
    #[test]
    fn a_check_without_descriptors_is_a_local_error() {
        if std::env::var_os("LBD_CHECKS_NOFILE_CHILD").is_none() {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "health::checks::tests::a_check_without_descriptors_is_a_local_error",
                    "--test-threads=1",
                ])
                .env("LBD_CHECKS_NOFILE_CHILD", "1")
                .status()
                .unwrap();
            assert!(status.success());
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Every descriptor the limit allows, taken.
        let limit = libc::rlimit {
            rlim_cur: 64,
            rlim_max: 64,
        };
        // SAFETY: a valid rlimit, read by the call.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let mut held = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            held.push(file);
        }
        let result = runtime.block_on(run(&tcp_check(), IpAddr::from([127, 0, 0, 1]), 9));
        drop(held);
        let error = result.expect_err("EMFILE is local");
        assert!(error.0.contains("connect"), "{error}");
    }
}
