//! HAProxy's certificate bundles: a PEM file holding the certificate, its
//! chain and the private key (the key may instead sit beside it in
//! `FILE.key`), or a directory of such files. Loading checks what a TLS
//! stack would refuse later, so `lbd check` and `lbd reload` say it first:
//! no key, a key that is not the certificate's, an RSA key under 2048 bits.
use rustls::sign::CertifiedKey;
use rustls_pki_types::{
    pem::{PemObject, SectionKind},
    CertificateDer, PrivateKeyDer,
};
use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::Arc,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Smallest RSA modulus accepted: what rustls/ring and OpenSSL 3 at its
/// default security level accept.
pub const MIN_RSA_BITS: usize = 2048;

/// One certificate ready to serve, with the names it answers for.
#[derive(Debug)]
pub struct LoadedCert {
    pub path: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// Lowercase DNS names from the subjectAltName, or the CN when the
    /// certificate has no SAN; may hold wildcards (`*.example.com`).
    pub names: Vec<String>,
    /// Warnings (expired, not yet valid) to show, not refuse.
    pub warnings: Vec<String>,
}

/// What the certificate itself says, for selection and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub names: Vec<String>,
    /// RSA modulus size in bits; `None` for EC and Ed25519 keys.
    pub rsa_bits: Option<usize>,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The subject as HAProxy prints it: `/C=KR/O=Example/CN=name`.
    pub subject: String,
    /// The SubjectPublicKeyInfo, DER: compared with the private key's.
    pub spki: Vec<u8>,
}

/// Parses what selection and validation need from a DER certificate.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let has_san = matches!(cert.subject_alternative_name(), Ok(Some(_)));
    if !has_san {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let rsa_bits = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(rsa.key_size()),
        _ => None,
    };
    Ok(CertFacts {
        names,
        rsa_bits,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject: dn_string(cert.subject()),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// A distinguished name in OpenSSL's one-line form, as HAProxy's
/// `ssl_c_s_dn`: `/C=FR/O=Example/CN=client`.
pub fn dn_string(name: &x509_parser::x509::X509Name) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for rdn in name.iter() {
        for attribute in rdn.iter() {
            let oid = attribute.attr_type();
            // OpenSSL's short names where the registry's differ.
            let short = match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok("Email") => "emailAddress".to_owned(),
                Ok(name) => name.to_owned(),
                Err(_) => oid.to_id_string(),
            };
            let value = attribute
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|_| String::from_utf8_lossy(attribute.as_slice()).into_owned());
            out.push('/');
            out.push_str(&short);
            out.push('=');
            out.push_str(&value);
        }
    }
    out
}

/// The subject DN of a DER certificate (a client's), HAProxy's format.
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(dn_string(cert.subject()))
}

/// Every bundle `crt` names: the file itself, or each file of the
/// directory in name order (HAProxy skips `.key`, `.ocsp`, `.issuer`,
/// `.sctl` there: they belong to a bundle). `digest` receives every byte
/// read, so a reload can tell whether anything changed.
pub fn load_crt(
    path: &Path,
    now: i64,
    digest: &mut impl Hasher,
) -> Result<Vec<LoadedCert>, String> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![load_bundle(path, now, digest)?]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let extra = [".key", ".ocsp", ".issuer", ".sctl"];
            !name.starts_with('.') && !extra.iter().any(|e| name.ends_with(e)) && p.is_file()
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{} is a directory without certificate bundles",
            path.display()
        ));
    }
    files
        .iter()
        .map(|file| load_bundle(file, now, digest))
        .collect()
}

fn read(path: &Path, digest: &mut impl Hasher) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    path.hash(digest);
    bytes.hash(digest);
    Ok(bytes)
}

/// The private keys of a PEM text (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn keys_in(bytes: &[u8]) -> Result<Vec<PrivateKeyDer<'static>>, String> {
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|e| format!("malformed PEM: {e}"))?;
        let key = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => continue,
        };
        keys.push(key);
    }
    Ok(keys)
}

/// One bundle: certificates in file order (the leaf first, then its
/// chain), the key in the file or in `FILE.key` / the file with `.key`
/// for its extension, and `FILE.ocsp` stapled when present.
pub fn load_bundle(path: &Path, now: i64, digest: &mut impl Hasher) -> Result<LoadedCert, String> {
    let shown = path.display();
    let bytes = read(path, digest)?;
    let mut chain: Vec<CertificateDer<'static>> = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|e| format!("{shown}: malformed PEM: {e}"))?;
        if kind == SectionKind::Certificate {
            chain.push(der.into());
        }
    }
    if chain.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected a PEM bundle: the certificate, its chain, then the private key)"
        ));
    }
    let encrypted = |b: &[u8]| b.windows(9).any(|w| w == b"ENCRYPTED");
    let mut keys = keys_in(&bytes).map_err(|e| format!("{shown}: {e}"))?;
    let mut key_source = path.to_owned();
    if keys.is_empty() && !encrypted(&bytes) {
        let beside = [
            PathBuf::from(format!("{}.key", path.display())),
            path.with_extension("key"),
        ];
        if let Some(key_path) = beside.iter().find(|p| p.is_file() && *p != path) {
            let key_bytes = read(key_path, digest)?;
            if encrypted(&key_bytes) {
                return Err(encrypted_key(key_path));
            }
            keys = keys_in(&key_bytes).map_err(|e| format!("{}: {e}", key_path.display()))?;
            key_source = key_path.clone();
        }
    }
    if keys.is_empty() && encrypted(&bytes) {
        return Err(encrypted_key(path));
    }
    let Some(key) = keys.into_iter().next() else {
        return Err(format!(
            "{shown} holds no private key, and there is no {shown}.key beside it (append the key to the bundle: cat cert.pem key.pem > bundle.pem)"
        ));
    };
    let facts = cert_facts(&chain[0]).map_err(|e| format!("{shown}: {e}"))?;
    if let Some(bits) = facts.rsa_bits.filter(|&b| b < MIN_RSA_BITS) {
        return Err(format!(
            "{shown}: the RSA key is {bits} bits; TLS stacks refuse keys under {MIN_RSA_BITS} bits (HAProxy with OpenSSL 3 too): make a {MIN_RSA_BITS}-bit key with `openssl genrsa -out key.pem {MIN_RSA_BITS}` and a new certificate for it"
        ));
    }
    let signing_key = super::provider::signing_key(&key).map_err(|e| {
        format!(
            "{}: the private key cannot be used: {e}",
            key_source.display()
        )
    })?;
    // Compared here rather than with rustls' keys_match, which parses the
    // certificate with webpki and so refuses the X.509 v1 certificates
    // that `openssl x509 -req -signkey` (the seed's recipe) makes.
    let key_spki = signing_key.public_key().map(|k| k.as_ref().to_vec());
    let mut certified = CertifiedKey::new(chain, signing_key);
    match key_spki {
        // The provider cannot derive the public key: nothing to compare.
        None => {}
        Some(spki) if spki == facts.spki => {}
        Some(_) => {
            return Err(format!(
                "{shown}: the private key{} does not match the certificate (the key of another certificate?)",
                if key_source == path {
                    String::new()
                } else {
                    format!(" in {}", key_source.display())
                }
            ))
        }
    }
    let ocsp_path = PathBuf::from(format!("{}.ocsp", path.display()));
    if ocsp_path.is_file() {
        let response = read(&ocsp_path, digest)?;
        if response.is_empty() {
            return Err(format!("{}: empty OCSP response", ocsp_path.display()));
        }
        certified.ocsp = Some(response);
    }
    let mut warnings = Vec::new();
    if facts.not_after < now {
        warnings.push(format!(
            "{shown}: the certificate expired {} days ago; clients will refuse it",
            (now - facts.not_after) / 86_400
        ));
    } else if facts.not_before > now {
        warnings.push(format!(
            "{shown}: the certificate is not valid yet (for {} more seconds)",
            facts.not_before - now
        ));
    }
    if facts.names.is_empty() {
        warnings.push(format!(
            "{shown}: the certificate names no host (no DNS subjectAltName, no CN): only usable as the default certificate"
        ));
    }
    Ok(LoadedCert {
        path: path.to_owned(),
        key: Arc::new(certified),
        names: facts.names,
        warnings,
    })
}

fn encrypted_key(path: &Path) -> String {
    format!(
        "{}: the private key is encrypted; lbd cannot ask for a passphrase: decrypt it with `openssl pkey -in {} -out key.pem` and keep that file private",
        path.display(),
        path.display()
    )
}
