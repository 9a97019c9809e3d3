//! Embeds the XDP object built by `cargo xtask build-ebpf`. When it is
//! missing or older than its sources, `lbd` is still built (so that
//! `cargo clippy` and the host tests work) but refuses to load, naming the
//! command that fixes it. Also generates gobgpd's gRPC client (below).
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
    gobgp_client();
}

const PROTO_DIRS: &[&str] = &[
    "/usr/share/gocode/src/github.com/osrg/gobgp/api",
    "/usr/share/gocode/src/github.com/osrg/gobgp/v3/api",
];

/// Generates gobgpd's gRPC client (tonic) from the .proto files Debian's
/// `golang-github-osrg-gobgp-dev` installs. Without protoc or those files
/// the rest of lbd still builds: `bgp_api` stays unset and a `[bgp]`
/// section is refused at start with the reason.
fn gobgp_client() {
    println!("cargo::rustc-check-cfg=cfg(bgp_api)");
    println!("cargo::rerun-if-env-changed=LBD_GOBGP_PROTO_DIR");
    println!("cargo::rerun-if-env-changed=PROTOC");
    let dirs: Vec<PathBuf> = std::env::var_os("LBD_GOBGP_PROTO_DIR")
        .map(|d| vec![PathBuf::from(d)])
        .unwrap_or_else(|| PROTO_DIRS.iter().map(PathBuf::from).collect());
    let Some(dir) = dirs.iter().find(|d| d.join("gobgp.proto").exists()) else {
        println!(
            "cargo::warning=lbd is built without BGP: GoBGP's gobgp.proto is not in {} (apt-get install golang-github-osrg-gobgp-dev, or run `cargo xtask setup`)",
            PROTO_DIRS.join(" or ")
        );
        return;
    };
    println!("cargo::rerun-if-changed={}", dir.display());
    if !protoc_found() {
        println!(
            "cargo::warning=lbd is built without BGP: protoc is missing (apt-get install protobuf-compiler, or run `cargo xtask setup`)"
        );
        return;
    }
    let protos: Vec<PathBuf> = ["gobgp.proto", "attribute.proto", "capability.proto"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let result = tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&protos, &[dir.clone(), PathBuf::from("/usr/include")]);
    match result {
        Ok(()) => println!("cargo::rustc-cfg=bgp_api"),
        Err(e) => println!(
            "cargo::warning=lbd is built without BGP: compiling GoBGP's .proto files failed: {e}"
        ),
    }
}

fn protoc_found() -> bool {
    let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    std::process::Command::new(protoc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
