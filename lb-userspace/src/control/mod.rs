//! The control socket, `/run/lbd/<instance>.sock`: one JSON request per
//! line, one JSON reply per line. `lbd backend` and `lbd reload` are its
//! clients; the daemon's loop answers.
use crate::{cli::status::RUN_DIR, health::state::AdminState};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::warn;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Backend {
        service: String,
        /// "address" or "address:port".
        backend: String,
        state: AdminState,
    },
    Reload,
    /// Stop and tear the data plane down (detach, unpin).
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
}

pub type Call = (Request, oneshot::Sender<Reply>);

pub fn socket_path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.sock"))
}

/// Listens on the instance's socket; each request goes to `calls`.
pub fn serve(instance: &str, calls: mpsc::Sender<Call>) -> anyhow::Result<JoinHandle<()>> {
    let path = socket_path(instance);
    // We hold the instance lock: a socket file here is a dead daemon's.
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("control socket {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match serde_json::from_str::<Request>(&line) {
                        Err(e) => Reply {
                            ok: false,
                            message: format!("bad request: {e}"),
                        },
                        Ok(request) => {
                            let (tx, rx) = oneshot::channel();
                            if calls.send((request, tx)).await.is_err() {
                                return;
                            }
                            rx.await.unwrap_or(Reply {
                                ok: false,
                                message: "daemon stopping".into(),
                            })
                        }
                    };
                    let Ok(mut text) = serde_json::to_string(&reply) else {
                        return;
                    };
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        warn!("control client went away");
                        return;
                    }
                }
            });
        }
    }))
}

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
