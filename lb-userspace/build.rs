//! Embeds the XDP object built by `cargo xtask build-ebpf`. When it is
//! missing or older than its sources, `lbd` is still built (so that
//! `cargo clippy` and the host tests work) but refuses to load, naming the
//! command that fixes it.
use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let mtime = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        newest = newest.max(mtime);
    }
    newest
}

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(lb_ebpf_state, values(\"embedded\", \"missing\", \"stale\"))"
    );
    println!("cargo::rerun-if-env-changed=LB_EBPF_OBJECT");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("lb-userspace is inside the workspace")
        .to_owned();
    let object = std::env::var("LB_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/bpfel-unknown-none/release/lb-ebpf"));
    let sources = [
        root.join("lb-ebpf/src"),
        root.join("lb-ebpf/Cargo.toml"),
        root.join("lb-common/src"),
    ];
    println!("cargo::rerun-if-changed={}", object.display());
    for source in &sources {
        println!("cargo::rerun-if-changed={}", source.display());
    }
    let state = match fs::metadata(&object).and_then(|m| m.modified()) {
        Err(_) => "missing",
        Ok(built) => {
            let newest_source = sources
                .iter()
                .filter_map(|s| {
                    if s.is_dir() {
                        newest_mtime(s)
                    } else {
                        fs::metadata(s).ok()?.modified().ok()
                    }
                })
                .max();
            if newest_source.is_some_and(|s| s > built) {
                "stale"
            } else {
                "embedded"
            }
        }
    };
    println!("cargo::rustc-cfg=lb_ebpf_state=\"{state}\"");
    println!("cargo::rustc-env=LB_EBPF_OBJECT_PATH={}", object.display());
}
