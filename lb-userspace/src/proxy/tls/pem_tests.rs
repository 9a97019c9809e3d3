//! Certificate bundles made with the openssl CLI, as operators make them,
//! and what loading says about each.
use super::options::BindOptions;
use super::pem::{cert_facts, load_crt};
use super::server::TlsBind;
use std::path::{Path, PathBuf};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lbd-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// The TLS namespace tests' kit: one copy of the openssl helpers.
#[path = "../../../../tests/tests/tls_kit/mod.rs"]
mod tls_kit;
use tls_kit::{openssl, seed_bundle, SEED_SUBJECT};

/// A self-signed certificate `name.crt` with key `name.key`; `key` is
/// "ec" (P-256) or "rsa:BITS"; `san` may be empty (CN only).
fn self_signed(dir: &Path, name: &str, key: &str, cn: &str, san: &str, days: &str) {
    let keyfile = format!("{name}.key");
    if let Some(bits) = key.strip_prefix("rsa:") {
        openssl(dir, &["genrsa", "-out", &keyfile, bits]);
    } else {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &keyfile,
            ],
        );
    }
    let subject = format!("/CN={cn}");
    let crt = format!("{name}.crt");
    let mut args = vec![
        "req", "-new", "-x509", "-key", &keyfile, "-out", &crt, "-subj", &subject, "-days", "30",
    ];
    let ext = format!("subjectAltName={san}");
    if !san.is_empty() {
        args.extend(["-addext", &ext]);
    }
    openssl(dir, &args);
    if days != "30" {
        let fresh = format!("{name}.fresh");
        std::fs::rename(dir.join(&crt), dir.join(&fresh)).expect("rename");
        openssl(
            dir,
            &[
                "x509", "-in", &fresh, "-signkey", &keyfile, "-days", days, "-out", &crt,
            ],
        );
    }
}

fn bundle(dir: &Path, name: &str) -> PathBuf {
    let mut text = std::fs::read(dir.join(format!("{name}.crt"))).expect("crt");
    text.extend(std::fs::read(dir.join(format!("{name}.key"))).expect("key"));
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, text).expect("bundle");
    path
}

fn load(path: &Path) -> Result<Vec<super::pem::LoadedCert>, String> {
    load_crt(path, now(), &mut std::hash::DefaultHasher::new())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[test]
fn bundles_load_with_their_names() {
    let dir = Scratch::new("names");
    self_signed(
        &dir.0,
        "ec",
        "ec",
        "ignored.example",
        "DNS:a.example,DNS:*.b.example,IP:198.18.0.1",
        "30",
    );
    self_signed(&dir.0, "rsa", "rsa:2048", "cn-only.example", "", "30");
    let ec = load(&bundle(&dir.0, "ec")).expect("ec bundle");
    assert_eq!(ec[0].names, ["a.example", "*.b.example"], "SAN, not the CN");
    assert!(ec[0].warnings.is_empty(), "{:?}", ec[0].warnings);
    let rsa = load(&bundle(&dir.0, "rsa")).expect("rsa bundle");
    assert_eq!(rsa[0].names, ["cn-only.example"], "CN without a SAN");
    let facts = cert_facts(rsa[0].key.cert[0].as_ref()).expect("facts");
    assert_eq!(facts.rsa_bits, Some(2048));
    assert_eq!(facts.subject, "/CN=cn-only.example");
}

#[test]
fn the_key_may_sit_beside_the_certificate() {
    let dir = Scratch::new("beside");
    self_signed(
        &dir.0,
        "site",
        "ec",
        "site.example",
        "DNS:site.example",
        "30",
    );
    // HAProxy: crt site.crt finds site.crt.key, or site.key.
    let loaded = load(&dir.path("site.crt")).expect("key beside");
    assert_eq!(loaded[0].names, ["site.example"]);
    std::fs::rename(dir.path("site.key"), dir.path("site.crt.key")).expect("rename");
    assert!(load(&dir.path("site.crt")).is_ok());
}

#[test]
fn refusals_name_the_file_and_the_fix() {
    let dir = Scratch::new("refusals");
    // The seed's recipe: openssl genrsa -out goorm-11th_com.key 1024.
    self_signed(&dir.0, "small", "rsa:1024", "ha-proxy", "", "30");
    self_signed(&dir.0, "one", "ec", "one.example", "DNS:one.example", "30");
    self_signed(&dir.0, "two", "ec", "two.example", "DNS:two.example", "30");
    let small = bundle(&dir.0, "small");
    let mismatched = dir.path("mismatched.pem");
    let mut text = std::fs::read(dir.path("one.crt")).expect("crt");
    text.extend(std::fs::read(dir.path("two.key")).expect("key"));
    std::fs::write(&mismatched, text).expect("write");
    let lonely = dir.path("lonely.pem");
    std::fs::copy(dir.path("one.crt"), &lonely).expect("copy");
    let empty = dir.path("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let cases: &[(&Path, &[&str])] = &[
        (
            &small,
            &["small.pem", "1024 bits", "openssl genrsa -out key.pem 2048"],
        ),
        (
            &mismatched,
            &["mismatched.pem", "does not match the certificate"],
        ),
        (&lonely, &["lonely.pem holds no private key"]),
        (&empty, &["empty.pem holds no certificate"]),
        (
            Path::new("/nonexistent/lbd.pem"),
            &["cannot read /nonexistent/lbd.pem"],
        ),
    ];
    for (path, expected) in cases {
        let error = load(path).expect_err(&path.display().to_string());
        for part in *expected {
            assert!(error.contains(part), "{}: {error}", path.display());
        }
    }
}

#[test]
fn an_expired_certificate_is_served_with_a_warning() {
    let dir = Scratch::new("expired");
    self_signed(&dir.0, "old", "ec", "old.example", "DNS:old.example", "-1");
    let loaded = load(&bundle(&dir.0, "old")).expect("expired still loads");
    assert!(
        loaded[0].warnings.iter().any(|w| w.contains("expired")),
        "{:?}",
        loaded[0].warnings
    );
}

#[test]
fn the_seed_recipe_with_a_2048_bit_key_is_accepted() {
    let dir = Scratch::new("seed");
    seed_bundle(&dir.0, "2048");
    let loaded = load(&dir.path("cert.pem")).expect("seed bundle");
    assert_eq!(loaded[0].names, ["ha-proxy"]);
    let facts = cert_facts(loaded[0].key.cert[0].as_ref()).expect("facts");
    assert_eq!(facts.subject, SEED_SUBJECT);
}

#[test]
fn a_directory_loads_every_bundle_in_name_order() {
    let dir = Scratch::new("dir");
    let certs = dir.path("certs");
    std::fs::create_dir(&certs).expect("dir");
    self_signed(&certs, "b", "ec", "b.example", "DNS:b.example", "30");
    self_signed(&certs, "a", "ec", "a.example", "DNS:a.example", "30");
    // a.crt + a.key and b.crt + b.key: the .key files are skipped as
    // bundles and found beside their certificates.
    let loaded = load(&certs).expect("directory");
    let names: Vec<&str> = loaded.iter().map(|c| c.names[0].as_str()).collect();
    assert_eq!(names, ["a.example", "b.example"]);
    let bind = TlsBind::load(
        BindOptions::parse(&format!("ssl crt {}", certs.display()), false).expect("options"),
    )
    .expect("bind");
    assert_eq!(bind.certificates.len(), 2);
    // The same files give an equal bind (a reload without changes); a
    // changed file does not.
    let again = TlsBind::load(bind.options.clone()).expect("again");
    assert_eq!(bind, again);
    self_signed(&certs, "a", "ec", "a.example", "DNS:a.example", "30");
    let changed = TlsBind::load(bind.options.clone()).expect("changed");
    assert_ne!(bind, changed);
}

#[test]
fn client_verification_needs_a_usable_ca_file() {
    let dir = Scratch::new("verify");
    self_signed(
        &dir.0,
        "site",
        "ec",
        "site.example",
        "DNS:site.example",
        "30",
    );
    let site = bundle(&dir.0, "site");
    let ok = format!(
        "ssl crt {} verify optional ca-file {}",
        site.display(),
        dir.path("site.crt").display()
    );
    assert!(TlsBind::load(BindOptions::parse(&ok, false).expect("parse")).is_ok());
    let empty = dir.path("empty-ca.pem");
    std::fs::write(&empty, "").expect("write");
    let bad = format!(
        "ssl crt {} verify required ca-file {}",
        site.display(),
        empty.display()
    );
    let error = TlsBind::load(BindOptions::parse(&bad, false).expect("parse")).expect_err("empty");
    assert!(error.contains("holds no certificate"), "{error}");
}
