//! The daemon's side of the control socket: each request line goes to the
//! daemon's loop, whose answer goes back as one line.
use super::{socket_path, Call, Reply, Request};
use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::warn;

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
