//! What the TLS tests share: the openssl CLI, run in a scratch directory,
//! and the seed's certificate recipe. The namespace tests include this
//! module, and so do lb-userspace's unit tests (`proxy/tls/pem_tests.rs`,
//! by path: a `#[cfg(test)]` helper there is not visible to this crate,
//! and lb-userspace cannot depend on lb-tests), so the one copy serves both.
use std::{path::Path, process::Command};

/// Runs `openssl ARGS` in `dir`; a failure fails the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The subject the seed's recipe gives its certificate.
#[allow(dead_code)] // not every test file that includes the kit reads it
pub const SEED_SUBJECT: &str =
    "/C=KR/ST=Seoul/L=Seoul/O=Goorm/OU=Goorm/CN=ha-proxy/emailAddress=admin@goorm-11th.com";

/// The seed's steps, non-interactive, with a `bits`-bit RSA key: key,
/// CSR, self-signed certificate, then pkcs12 and back to one PEM with
/// "Bag Attributes" around the blocks: `dir/cert.pem`.
#[allow(dead_code)] // not every test file that includes the kit makes one
pub fn seed_bundle(dir: &Path, bits: &str) {
    let key = "goorm-11th_com.key";
    let (csr, crt) = ("goorm-11th_com.csr", "goorm-11th_com.crt");
    openssl(dir, &["genrsa", "-out", key, bits]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            key,
            "-out",
            csr,
            "-subj",
            SEED_SUBJECT,
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-days", "365", "-in", csr, "-signkey", key, "-out", crt,
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12", "-export", "-in", crt, "-inkey", key, "-out", "cert.p12", "-passout", "pass:",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12", "-in", "cert.p12", "-nodes", "-out", "cert.pem", "-passin", "pass:",
        ],
    );
}
