//! The daemon's side of the control socket: each request line goes to the
//! daemon's loop, whose answer goes back as one line. At most
//! [`MAX_CONNECTIONS`] clients at a time (one more is told so and
//! closed), and an accept that fails (no descriptor left) waits before
//! the next, so neither a crowd of clients nor a shortage of descriptors
//! can exhaust the daemon or spin it. Each connection is served by
//! `connection` (bounded request lines). The socket is root's (0600).
use super::{connection::serve_connection, socket_path, Call, Reply};
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::{io::AsyncWriteExt, net::UnixListener, sync::mpsc, task::JoinHandle};
use tracing::warn;

/// Control connections served at once (HAProxy's stats socket has a
/// `maxconn` of 10 by default).
pub const MAX_CONNECTIONS: usize = 16;
/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("control socket {}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("chmod 0600 {}", path.display())]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The running control socket.
pub struct ControlServer {
    accepting: JoinHandle<()>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl ControlServer {
    /// Stops accepting, then waits (at most `grace`) until every open
    /// connection has ended: the reply to `lbd stop` is written by its
    /// connection's task, which a daemon exiting at once would drop
    /// unwritten. The client closes once it has read the reply.
    pub async fn close(self, grace: Duration) {
        self.accepting.abort();
        let deadline = tokio::time::Instant::now() + grace;
        while self.slots.available_permits() < MAX_CONNECTIONS
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Listens on the instance's socket; each request goes to `calls`.
pub fn serve(instance: &str, calls: mpsc::Sender<Call>) -> Result<ControlServer, ServeError> {
    let path = socket_path(instance);
    // We hold the instance lock: a socket file here is a dead daemon's.
    let _ = std::fs::remove_file(&path);
    let listener = bind_private(&path)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let accepting_slots = slots.clone();
    let accepting = tokio::spawn(async move {
        let slots = accepting_slots;
        let mut failing = false;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    failing = false;
                    stream
                }
                Err(e) => {
                    if !failing {
                        warn!(
                            "control socket: accept failed, retrying every {ACCEPT_BACKOFF:?}: {e}"
                        );
                    }
                    failing = true;
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tokio::spawn(refuse(stream));
                continue;
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let (read, write) = stream.into_split();
                serve_connection(read, write, calls).await;
            });
        }
    });
    Ok(ControlServer { accepting, slots })
}

/// Binds the socket root-only (0600: connecting needs write permission),
/// whatever the umask: it is created under umask 077, so it is never
/// reachable by others, not even between bind and chmod.
fn bind_private(path: &std::path::Path) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|source| ServeError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServeError::Permissions {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

/// Tells a client over the limit why it is turned away, and closes.
async fn refuse(mut stream: tokio::net::UnixStream) {
    let reply = Reply {
        ok: false,
        message: format!("busy: {MAX_CONNECTIONS} control connections already open"),
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ =
            tokio::time::timeout(Duration::from_secs(1), stream.write_all(text.as_bytes())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{client::call_at, Request};

    /// The daemon answers `stop` and closes the control socket at once,
    /// and its runtime ends right after: the reply must still reach the
    /// client (it used to be dropped unwritten now and then).
    #[test]
    fn a_stop_reply_is_written_before_the_socket_closes() {
        let instance = format!("lbd-ctl-test-{}", std::process::id());
        let path = socket_path(&instance);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("run dir");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (calls, mut received) = mpsc::channel::<Call>(1);
        let server = runtime
            .block_on(async { serve(&instance, calls) })
            .expect("serve");
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            call_at("test", &client_path, &Request::Stop, Duration::from_secs(5))
        });
        runtime.block_on(async {
            let (request, reply) = received.recv().await.expect("a call");
            assert!(matches!(request, Request::Stop));
            let _ = reply.send(Reply {
                ok: true,
                message: "stopping".into(),
            });
            server.close(Duration::from_secs(2)).await;
        });
        drop(runtime);
        let _ = std::fs::remove_file(&path);
        let reply = client.join().expect("client thread").expect("the reply");
        assert!(reply.ok && reply.message == "stopping", "{reply:?}");
    }
}
