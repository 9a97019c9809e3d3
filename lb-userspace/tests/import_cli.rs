//! `lbd import` as a command: where the file and the report go, exit codes
//! (non-zero on anything not supported unless --allow-partial, and on an
//! output `lbd check` would refuse), and the same bytes on every run.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn lbd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbd"))
        .args(args)
        .output()
        .expect("run lbd")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/import")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lbd-import-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn writes_the_file_and_the_report_and_gives_the_same_bytes_twice() {
    let dir = TempDir::new("same");
    let (k, h) = (
        fixture("seed004_master.keepalived.conf"),
        fixture("seed004.haproxy.cfg"),
    );
    let first = dir.path("first.toml");
    let second = dir.path("second.toml");
    let a = lbd(&["import", "--keepalived", &k, "--haproxy", &h, "-o", &first]);
    let b = lbd(&["import", "--keepalived", &k, "--haproxy", &h, "-o", &second]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success());
    let (fa, fb) = (
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
    );
    assert_eq!(fa, fb);
    let report = String::from_utf8_lossy(&a.stdout);
    assert!(
        report.contains(&format!("{h}:4: frontend main *:80: approximated:")),
        "{report}"
    );
    assert!(
        report.contains(&format!("{k}:13: 198.18.0.64: mapped:")),
        "{report}"
    );
    assert!(report.ends_with("0 not supported\n"), "{report}");
    // Without -o: the file on stdout, the report on stderr.
    let c = lbd(&["import", "--keepalived", &k, "--haproxy", &h]);
    assert!(c.status.success());
    let stdout = String::from_utf8_lossy(&c.stdout);
    assert!(stdout.contains("[instance]"));
    assert!(!stdout.contains("mapped:"));
    assert!(String::from_utf8_lossy(&c.stderr).contains("mapped:"));
}

#[test]
fn anything_not_supported_fails_unless_allow_partial() {
    let dir = TempDir::new("partial");
    let cfg = dir.path("haproxy.cfg");
    std::fs::write(
        &cfg,
        "frontend f\n  bind :80\n  default_backend b\nbackend b\n  option mysql-check\n  server s 198.18.0.1:3306 check\n",
    )
    .unwrap();
    let out = dir.path("lb.toml");
    let strict = lbd(&["import", "--haproxy", &cfg, "-o", &out]);
    assert_eq!(strict.status.code(), Some(1));
    let report = String::from_utf8_lossy(&strict.stdout);
    assert!(
        report.contains(&format!("{cfg}:5: option mysql-check: not supported:")),
        "{report}"
    );
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--allow-partial"));
    let partial = lbd(&["import", "--haproxy", &cfg, "-o", &out, "--allow-partial"]);
    assert!(
        partial.status.success(),
        "{}",
        String::from_utf8_lossy(&partial.stderr)
    );
    let toml = std::fs::read_to_string(&out).unwrap();
    assert!(toml.contains("address = \"198.18.0.1:3306\""), "{toml}");
}

#[test]
fn broken_sources_and_missing_arguments_fail_with_file_and_line() {
    let dir = TempDir::new("broken");
    let conf = dir.path("keepalived.conf");
    std::fs::write(&conf, "vrrp_instance VI_1 {\n  state MASTER\n").unwrap();
    let broken = lbd(&["import", "--keepalived", &conf]);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains(&format!("{conf}:1: '{{' is never closed")),
        "{stderr}"
    );
    let none = lbd(&["import"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("--keepalived FILE and/or --haproxy FILE")
    );
    let missing = lbd(&["import", "--haproxy", &dir.path("absent.cfg")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.cfg:0: cannot read"));
}

#[test]
fn an_output_lbd_check_refuses_fails() {
    let dir = TempDir::new("refused");
    let cfg = dir.path("haproxy.cfg");
    // Both frontends bind :80: HAProxy fails at start, lbd check refuses.
    std::fs::write(
        &cfg,
        "frontend a\n  bind :80\n  default_backend b\nfrontend c\n  bind :80\n  default_backend b\nbackend b\n  server s 198.18.0.1:80\n",
    )
    .unwrap();
    let out = lbd(&["import", "--haproxy", &cfg, "-o", &dir.path("lb.toml")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not pass lbd check"), "{stderr}");
}
