//! The rustls crypto provider of every TLS side of lbd: termination on
//! binds, re-encryption to servers and the health checks. aws-lc-rs (the
//! default `aws-lc-rs` cargo feature) measured faster than ring on this
//! project's bench: keep-alive over TLS +13 to +15% req/s, HTTP/2 over TLS
//! +7 to +10%, RSA handshakes +4% (bench/RESULTS.md, "TLS provider").
//! `--no-default-features` builds lbd with ring, for comparing again.
use rustls::{crypto::CryptoProvider, server::ProducesTickets, sign::SigningKey};
use rustls_pki_types::PrivateKeyDer;
use std::sync::{Arc, OnceLock};

/// The provider, made once and shared by every configuration.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            #[cfg(feature = "aws-lc-rs")]
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            #[cfg(not(feature = "aws-lc-rs"))]
            let provider = rustls::crypto::ring::default_provider();
            Arc::new(provider)
        })
        .clone()
}

/// A private key made usable for signing handshakes; refused when the
/// provider does not support its type.
pub fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    provider().key_provider.load_private_key(key.clone_key())
}

/// Session ticket keys that rotate (a new key every 6 hours, the previous
/// one still decrypts).
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    #[cfg(feature = "aws-lc-rs")]
    let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(not(feature = "aws-lc-rs"))]
    let ticketer = rustls::crypto::ring::Ticketer::new();
    ticketer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_feature_picks_the_provider() {
        // The providers' key providers are private unit structs; their
        // Debug names tell them apart.
        let shown = format!("{:?}", provider().key_provider);
        let expected = if cfg!(feature = "aws-lc-rs") {
            "AwsLcRs"
        } else {
            "Ring"
        };
        assert_eq!(shown, expected);
        assert!(!provider().cipher_suites.is_empty());
    }

    #[test]
    fn the_ticketer_seals_and_opens_a_ticket() {
        let ticketer = ticketer().expect("ticket keys");
        assert!(ticketer.enabled());
        let sealed = ticketer.encrypt(b"session state").expect("sealed");
        assert_ne!(&sealed[..], &b"session state"[..]);
        assert_eq!(
            ticketer.decrypt(&sealed).as_deref(),
            Some(&b"session state"[..])
        );
        assert_eq!(ticketer.decrypt(b"forged ticket"), None);
    }

    #[test]
    fn a_key_the_provider_cannot_use_is_an_error() {
        // A PKCS#8 structure with nothing in it.
        let empty = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
        assert!(signing_key(&empty).is_err());
    }
}
