//! One client of the control socket: request lines in, one reply line
//! each. A request line is at most [`MAX_REQUEST_LINE`] bytes and must
//! arrive within [`REQUEST_LINE_TIMEOUT`]: a longer or slower one is
//! refused and the connection closed, so no client can make the daemon
//! buffer without bound or hold a connection open for ever.
use super::{Call, Reply, Request};
use std::time::Duration;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    sync::{mpsc, oneshot},
};
use tracing::warn;

/// The longest request line (a request is a few hundred bytes).
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// How long a client has to send a whole request line.
pub const REQUEST_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// What reading one line gave.
enum Line {
    Complete,
    End,
    TooLong,
    TooSlow,
}

/// Serves requests from `read` until the client closes, errs or breaks a
/// limit; each goes to the daemon's loop through `calls`.
pub async fn serve_connection<R, W>(read: R, mut write: W, calls: mpsc::Sender<Call>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let outcome = read_line(&mut reader, &mut line).await;
        let reply = match outcome {
            Line::End => return,
            Line::TooLong => Reply {
                ok: false,
                message: format!(
                    "request line longer than {MAX_REQUEST_LINE} bytes: refused, closing the connection"
                ),
            },
            Line::TooSlow => Reply {
                ok: false,
                message: format!(
                    "no complete request line within {} s: closing the connection",
                    REQUEST_LINE_TIMEOUT.as_secs()
                ),
            },
            Line::Complete => match serde_json::from_slice::<Request>(&line) {
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
            },
        };
        let Ok(mut text) = serde_json::to_string(&reply) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            warn!("control client went away");
            return;
        }
        if matches!(outcome, Line::TooLong | Line::TooSlow) {
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// Reads one line (without its newline) into `line`, never more than
/// [`MAX_REQUEST_LINE`] bytes of it.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>) -> Line {
    let limit = MAX_REQUEST_LINE as u64 + 1;
    let mut limited = (&mut *reader).take(limit);
    let read = limited.read_until(b'\n', line);
    match tokio::time::timeout(REQUEST_LINE_TIMEOUT, read).await {
        Err(_) => Line::TooSlow,
        Ok(Err(_)) | Ok(Ok(0)) => Line::End,
        Ok(Ok(_)) if line.last() == Some(&b'\n') => {
            line.pop();
            Line::Complete
        }
        Ok(Ok(_)) if line.len() > MAX_REQUEST_LINE => Line::TooLong,
        // The last line, without a newline.
        Ok(Ok(_)) => Line::Complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, split, AsyncBufReadExt};

    /// A daemon loop that answers every request with its debug form.
    fn echo_loop() -> mpsc::Sender<Call> {
        let (tx, mut rx) = mpsc::channel::<Call>(4);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(Reply {
                    ok: true,
                    message: format!("{request:?}"),
                });
            }
        });
        tx
    }

    #[tokio::test]
    async fn a_request_gets_its_reply() {
        let (client, server) = duplex(1024);
        let (read, write) = split(server);
        let served = tokio::spawn(serve_connection(read, write, echo_loop()));
        let (client_read, mut client_write) = split(client);
        client_write
            .write_all(b"{\"command\":\"reload\"}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(client_read).lines();
        let reply: Reply =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(reply.ok);
        assert_eq!(reply.message, "Reload");
        drop((lines, client_write));
        served.await.unwrap();
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_refused_and_the_connection_closed() {
        let (client, server) = duplex(64 * 1024);
        let (read, write) = split(server);
        let served = tokio::spawn(serve_connection(read, write, echo_loop()));
        let (client_read, mut client_write) = split(client);
        // 1 MiB without a newline: the server stops reading after 64 KiB.
        let writer = tokio::spawn(async move {
            let chunk = vec![b'a'; 16 * 1024];
            for _ in 0..64 {
                if client_write.write_all(&chunk).await.is_err() {
                    return false;
                }
            }
            true
        });
        let mut lines = BufReader::new(client_read).lines();
        let reply: Reply =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(!reply.ok);
        assert!(
            reply
                .message
                .starts_with("request line longer than 65536 bytes"),
            "{}",
            reply.message
        );
        assert_eq!(
            lines.next_line().await.unwrap(),
            None,
            "closed after the reply"
        );
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the connection ends")
            .unwrap();
        let wrote_everything = writer.await.unwrap();
        assert!(!wrote_everything, "the server stopped reading");
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_read() {
        let (client, server) = duplex(256 * 1024);
        let (read, write) = split(server);
        let served = tokio::spawn(serve_connection(read, write, echo_loop()));
        let (client_read, mut client_write) = split(client);
        let mut line = vec![b' '; MAX_REQUEST_LINE - 20];
        line.splice(0..0, b"{\"command\":\"stop\"}".iter().copied());
        line.truncate(MAX_REQUEST_LINE);
        line.push(b'\n');
        client_write.write_all(&line).await.unwrap();
        let mut lines = BufReader::new(client_read).lines();
        let reply: Reply =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!((reply.ok, reply.message.as_str()), (true, "Stop"));
        drop((lines, client_write));
        served.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_line_is_closed() {
        let (client, server) = duplex(1024);
        let (read, write) = split(server);
        let served = tokio::spawn(serve_connection(read, write, echo_loop()));
        let (client_read, mut client_write) = split(client);
        client_write.write_all(b"{\"command\":").await.unwrap();
        let mut lines = BufReader::new(client_read).lines();
        let reply: Reply =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(reply
            .message
            .starts_with("no complete request line within 30 s"));
        served.await.unwrap();
    }
}
