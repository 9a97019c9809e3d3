//! TLS for the proxy (issue 13). Termination: `options` parses HAProxy's
//! bind options, `pem` loads and checks certificate bundles, `server`
//! terminates TLS on a bind (certificate store with SNI selection, rustls
//! configuration, handshake and the facts the `ssl_*` fetches read).
//! Client side and passthrough: `clienthello` (a sans-IO ClientHello
//! reader), `passthrough` (`tcp_request` rules and the peek that feeds
//! `req.ssl_sni` routing in tcp mode), `client` (TLS to servers: `ssl`,
//! `verify`, `ca_file`, `sni`, `crt`, `check_ssl`).
/// The handshake-signature half of a rustls certificate verifier, checked
/// with the provider's algorithms held in the field `$algorithms`: the same
/// for the server certificates `client` verifies and the client
/// certificates `server` verifies (only the chain checks differ).
macro_rules! webpki_signature_checks {
    ($algorithms:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$algorithms.supported_schemes()
        }
    };
}
// Also used by the health checks' `tls_skip_verify` verifier.
pub(crate) use webpki_signature_checks;

pub mod client;
pub mod clienthello;
pub mod options;
pub mod passthrough;
pub mod pem;
pub mod provider;
pub mod server;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod pem_tests;

use crate::proxy::acl::ConnInfo;
use crate::proxy::config::{Global, Mode};
use crate::proxy::{runtime::Shared, snapshot::Snapshot};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// `[global] crt_base` and `ca_base` (HAProxy's `crt-base`, `ca-base`):
/// the directories that relative certificate and CA paths are read from,
/// on binds and servers alike. An absolute path ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PathBases {
    pub crt: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

impl PathBases {
    /// A base as written: an absolute directory (a relative base would
    /// depend on the directory lbd was started from).
    pub fn directory(text: &str) -> Result<PathBuf, String> {
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(format!("\"{text}\" is not an absolute directory"));
        }
        Ok(path)
    }

    /// Where a `crt` path is read from.
    pub fn crt(&self, path: &Path) -> PathBuf {
        Self::under(&self.crt, path)
    }

    /// Where a `ca_file` path is read from.
    pub fn ca(&self, path: &Path) -> PathBuf {
        Self::under(&self.ca, path)
    }

    fn under(base: &Option<PathBuf>, path: &Path) -> PathBuf {
        match base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// The TLS side of a `bind` string (the words after the address), with
/// `[global] ssl_default_bind_options` filled in and the certificates
/// loaded; `None` for a plain bind.
pub fn bind_tls(
    text: &str,
    mode: Mode,
    global: &Global,
) -> Result<Option<Arc<server::TlsBind>>, String> {
    let Some((_, words)) = text.trim().split_once(char::is_whitespace) else {
        return Ok(None);
    };
    let mut options = options::BindOptions::parse(words, false)?.over(&global.ssl_default_bind);
    let paths = &global.tls_paths;
    options.crts = options.crts.iter().map(|c| paths.crt(c)).collect();
    options.ca_file = options.ca_file.map(|c| paths.ca(&c));
    options.check()?;
    if !options.ssl {
        return Ok(None);
    }
    if mode == Mode::Tcp {
        return Err(
            "\"ssl\" terminates TLS for mode http frontends; a mode tcp frontend passes TLS through (route it with req.ssl_sni)".into(),
        );
    }
    let bind = server::TlsBind::load(options)?;
    for warning in &bind.warnings {
        tracing::warn!("{warning}");
    }
    Ok(Some(Arc::new(bind)))
}

/// Logs a failed handshake on `bind_address` the way HAProxy 2.6 does
/// (its error line, to the frontend's log targets, `dontlognull` leaving
/// out clients that sent nothing); the caller counts it.
pub fn log_handshake_failure(
    shared: &Shared,
    snapshot: &Snapshot,
    frontend: &Arc<str>,
    bind_address: SocketAddr,
    info: &ConnInfo,
    accept_date: SystemTime,
    error: &server::HandshakeError,
) {
    tracing::debug!(%frontend, src = %info.src, ?error, "TLS handshake failed");
    let bind = snapshot
        .config
        .frontends
        .iter()
        .find(|f| *f.name == **frontend)
        .and_then(|f| f.binds.iter().position(|b| b.address == bind_address))
        .map_or(1, |i| i + 1);
    let record = server::failure_record(frontend, bind, info.src, info.dst, accept_date, error);
    shared.log(snapshot, frontend, record);
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn bases_apply_to_relative_paths_only() {
        let bases = PathBases {
            crt: Some("/etc/ssl/lbd".into()),
            ca: Some("/etc/ssl/ca".into()),
        };
        assert_eq!(
            bases.crt(Path::new("site.pem")),
            Path::new("/etc/ssl/lbd/site.pem")
        );
        assert_eq!(
            bases.crt(Path::new("/x/site.pem")),
            Path::new("/x/site.pem")
        );
        assert_eq!(
            bases.ca(Path::new("ca.pem")),
            Path::new("/etc/ssl/ca/ca.pem")
        );
        assert_eq!(
            PathBases::default().ca(Path::new("ca.pem")),
            Path::new("ca.pem")
        );
        assert!(PathBases::directory("certs").is_err());
        assert!(PathBases::directory("/etc/ssl").is_ok());
    }
}
