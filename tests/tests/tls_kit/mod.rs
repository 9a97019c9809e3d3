//! What the TLS tests share: the openssl CLI, run in a scratch directory.
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
