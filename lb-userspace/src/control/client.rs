//! The command line's side of the control socket (`lbd backend`, `lbd
//! reload`, `lbd stop`). Its errors say what is known: no daemon, no
//! permission, or a request sent without a reply, whose outcome is then
//! unknown (the daemon may still carry it out).
use super::{socket_path, Reply, Request};
use std::{
    io::{BufRead, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

/// How long the command line waits for the daemon's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No socket, or nobody listening on it: the daemon is not running.
    #[error("instance {instance} is not running (nothing listens on {}: {source})", path.display())]
    NotRunning {
        instance: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The socket exists but we may not use it (it is root's).
    #[error("cannot connect to {}: {source} (the control socket is root's)", path.display())]
    Denied {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The request was sent (or partly sent) and no reply came: the daemon
    /// may have carried it out, or may still.
    #[error("no reply from instance {instance} within {} s: the outcome is unknown (the request may have been applied; check with lbd status): {source}", timeout.as_secs())]
    NoReply {
        instance: String,
        timeout: Duration,
        source: std::io::Error,
    },
    #[error("the daemon's reply is not understood (the outcome is unknown): {0}")]
    BadReply(serde_json::Error),
}

/// Sends one request to a running instance and returns its reply.
pub fn call(instance: &str, request: &Request) -> Result<Reply, CallError> {
    call_at(instance, &socket_path(instance), request, REPLY_TIMEOUT)
}

/// [`call`] on the socket at `path`, waiting `timeout` for the reply.
pub fn call_at(
    instance: &str,
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Reply, CallError> {
    let mut stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => CallError::Denied {
            path: path.to_owned(),
            source,
        },
        _ => CallError::NotRunning {
            instance: instance.to_owned(),
            path: path.to_owned(),
            source,
        },
    })?;
    let no_reply = |source| CallError::NoReply {
        instance: instance.to_owned(),
        timeout,
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(no_reply)?;
    stream.set_write_timeout(Some(timeout)).map_err(no_reply)?;
    let mut line = serde_json::to_string(request).map_err(CallError::BadReply)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(no_reply)?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(no_reply)?;
    if reply.is_empty() {
        return Err(no_reply(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection",
        )));
    }
    serde_json::from_str(&reply).map_err(CallError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_socket(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("lbd-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_daemon_that_does_not_answer_in_time_leaves_the_outcome_unknown() {
        let path = scratch_socket("silent");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Reads the request and never answers (a daemon busy elsewhere).
        let silent = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&stream)
                .read_line(&mut line)
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
            line
        });
        let error =
            call_at("lb1", &path, &Request::Reload, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(error, CallError::NoReply { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("the outcome is unknown"), "{text}");
        assert!(!text.contains("fail"), "{text}");
        assert_eq!(silent.join().unwrap(), "{\"command\":\"reload\"}\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn no_socket_means_not_running() {
        let path = scratch_socket("absent");
        let error = call_at("lb1", &path, &Request::Stop, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(error, CallError::NotRunning { .. }), "{error:?}");
        // A socket file nobody listens on (a killed daemon's).
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener);
        let error = call_at("lb1", &path, &Request::Stop, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(error, CallError::NotRunning { .. }), "{error:?}");
        let _ = std::fs::remove_file(&path);
    }
}
