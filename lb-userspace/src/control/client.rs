//! The command line's side of the control socket (`lbd backend`, `lbd
//! reload`, `lbd stop`).
use super::{socket_path, Reply, Request};
use anyhow::Context;

/// Sends one request to a running instance and returns its reply.
pub fn call(instance: &str, request: &Request) -> anyhow::Result<Reply> {
    use std::io::{BufRead, Write};
    let path = socket_path(instance);
    let mut stream = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("instance {instance} is not running (no {})", path.display()))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    std::io::BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply).context("reading the daemon's reply")
}
