//! The client against a scripted server on loopback: what it writes, how
//! it reads each framing, and when the connection goes back to the pool.
use super::*;
use crate::proxy::http::body::full;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A server that reads one request head (and `body_len` more bytes), then
/// writes `answer` and, if `close`, closes. Returns what it read.
async fn scripted(
    answer: &'static [u8],
    body_len: usize,
    close: bool,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n");
            if head_end.is_some_and(|end| seen.len() >= end + 4 + body_len) {
                break;
            }
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(answer).await.expect("write");
        if close {
            drop(stream);
        } else {
            // Hold the connection open until the client is done.
            let _ = stream.read(&mut chunk).await;
        }
        seen
    });
    (address, task)
}

/// A server that closes its connection at once, as one closing an idle
/// keep-alive connection does.
async fn closing_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let closer = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        drop(stream);
    });
    (address, closer)
}

async fn conn_to(address: SocketAddr) -> ServerConn {
    let stream = TcpStream::connect(address).await.expect("connect");
    ServerConn::new(super::super::ServerIo::Plain(
        crate::proxy::batch::BatchedTcp::new(stream),
    ))
}

fn get(path: &str) -> Request<ProxyBody> {
    Request::get(path)
        .header("host", "backend")
        .body(full(""))
        .expect("request")
}

fn recycle(pool: &Arc<Pool>, address: SocketAddr) -> Option<Recycle> {
    Some(Recycle {
        pool: pool.clone(),
        key: (address, None),
    })
}

async fn exchange(
    answer: &'static [u8],
    request: Request<ProxyBody>,
    body_len: usize,
    close: bool,
) -> (Result<Vec<u8>, BoxError>, Option<HeaderMap>, usize, Vec<u8>) {
    let (address, server) = scripted(answer, body_len, close).await;
    let pool = Arc::new(Pool::default());
    let response = send(
        conn_to(address).await,
        request,
        false,
        recycle(&pool, address),
    )
    .await
    .expect("response head");
    let collected = response.into_body().collect().await;
    let (body, trailers) = match collected {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            (Ok(collected.to_bytes().to_vec()), trailers)
        }
        Err(error) => (Err(error), None),
    };
    let pooled = pool.idle_count(address);
    pool.clear();
    let seen = server.await.expect("server");
    (body, trailers, pooled, seen)
}

#[test]
fn a_get_is_written_as_http11_and_its_connection_pooled() {
    crate::test_netns::block_on(|| async {
        let (body, _, pooled, seen) = exchange(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            get("/x?y=1"),
            0,
            false,
        )
        .await;
        assert_eq!(body.expect("body"), b"hello");
        assert_eq!(pooled, 1);
        assert_eq!(seen, b"GET /x?y=1 HTTP/1.1\r\nhost: backend\r\n\r\n");
    })
}

#[test]
fn a_chunked_response_with_trailers_is_decoded_and_pooled() {
    crate::test_netns::block_on(|| async {
        let (body, trailers, pooled, _) = exchange(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n",
        get("/"),
        0,
        false,
    )
    .await;
        assert_eq!(body.expect("body"), b"abcde");
        assert_eq!(trailers.expect("trailers")["x-sum"], "5");
        assert_eq!(pooled, 1);
    })
}

#[test]
fn a_body_until_close_is_read_whole_and_not_pooled() {
    crate::test_netns::block_on(|| async {
        let (body, _, pooled, _) =
            exchange(b"HTTP/1.0 200 OK\r\n\r\nall of it", get("/"), 0, true).await;
        assert_eq!(body.expect("body"), b"all of it");
        assert_eq!(pooled, 0);
    })
}

#[test]
fn connection_close_keeps_the_connection_out_of_the_pool() {
    crate::test_netns::block_on(|| async {
        let (body, _, pooled, _) = exchange(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            get("/"),
            0,
            true,
        )
        .await;
        assert_eq!(body.expect("body"), b"ok");
        assert_eq!(pooled, 0);
    })
}

#[test]
fn a_truncated_body_is_an_error_and_not_pooled() {
    crate::test_netns::block_on(|| async {
        let (body, _, pooled, _) = exchange(
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
            get("/"),
            0,
            true,
        )
        .await;
        assert!(body.is_err());
        assert_eq!(pooled, 0);
    })
}

#[test]
fn a_streamed_body_is_sent_chunked() {
    crate::test_netns::block_on(|| async {
        let frames = futures::stream::iter(
            ["ab", "cde"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes())))),
        );
        let request = Request::post("/up")
            .body(StreamBody::new(frames).boxed_unsync())
            .expect("request");
        let wire =
        b"POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
        let body_len = wire.len()
            - wire
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head")
            - 4;
        let (body, _, pooled, seen) = exchange(
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            request,
            body_len,
            false,
        )
        .await;
        assert_eq!(body.expect("body"), b"");
        assert_eq!(pooled, 1);
        assert_eq!(seen, wire);
    })
}

#[test]
fn a_known_length_body_is_sent_with_content_length() {
    crate::test_netns::block_on(|| async {
        let request = Request::put("/k").body(full("12345")).expect("request");
        let (_, _, _, seen) = exchange(b"HTTP/1.1 204 No Content\r\n\r\n", request, 5, false).await;
        assert_eq!(seen, b"PUT /k HTTP/1.1\r\ncontent-length: 5\r\n\r\n12345");
    })
}

#[test]
fn continue_is_skipped_and_the_final_head_returned() {
    crate::test_netns::block_on(|| async {
        let (body, _, _, _) = exchange(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            get("/"),
            0,
            false,
        )
        .await;
        assert_eq!(body.expect("body"), b"ok");
    })
}

#[test]
fn switching_protocols_hands_over_the_connection_with_early_bytes() {
    crate::test_netns::block_on(|| async {
        let (address, server) = scripted(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nearly",
        0,
        true,
    )
    .await;
        let response = send(conn_to(address).await, get("/ws"), false, None)
            .await
            .expect("101");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut upgraded = response.into_body().take_upgrade().expect("upgraded");
        let mut early = Vec::new();
        upgraded.read_to_end(&mut early).await.expect("read");
        assert_eq!(early, b"early");
        server.await.expect("server");
    })
}

#[test]
fn a_malformed_head_is_an_error() {
    crate::test_netns::block_on(|| async {
        let (address, server) = scripted(b"HTTP/1.1 OK 200\r\n\r\n", 0, true).await;
        let error = send(conn_to(address).await, get("/"), false, None)
            .await
            .expect_err("malformed");
        assert!(matches!(error, SendError::Head(_)), "{error}");
        server.await.expect("server");
    })
}

#[test]
fn a_reused_connection_closed_by_the_server_gives_the_request_back() {
    crate::test_netns::block_on(|| async {
        let (address, closer) = closing_server().await;
        let conn = conn_to(address).await;
        closer.await.expect("closer");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let error = send(conn, get("/again"), true, None)
            .await
            .expect_err("closed");
        let SendError::NotSent(unsent) = error else {
            panic!("expected NotSent, got {error}");
        };
        assert_eq!(unsent.request_line(), b"GET /again HTTP/1.1");
        // Given back, it goes again as it was over a fresh connection.
        let (address, server) = scripted(b"HTTP/1.1 204 No Content\r\n\r\n", 0, false).await;
        let response = resend(conn_to(address).await, *unsent, None)
            .await
            .expect("sent again");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        drop(response);
        let seen = String::from_utf8(server.await.expect("server")).expect("text");
        assert!(seen.starts_with("GET /again HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("host: backend\r\n"), "{seen}");
        // A fresh connection closing the same way is a plain failure.
        let (address, server) = scripted(b"", 0, true).await;
        let error = send(conn_to(address).await, get("/"), false, None)
            .await
            .expect_err("closed");
        assert!(matches!(error, SendError::Closed), "{error}");
        server.await.expect("server");
    })
}

#[test]
fn an_early_answer_is_read_while_the_body_is_unsent() {
    crate::test_netns::block_on(|| async {
        // The server answers 413 without reading the body, which never ends.
        let frames =
            futures::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"part")))])
                .chain(futures::stream::pending());
        let request = Request::post("/big")
            .body(StreamBody::new(frames).boxed_unsync())
            .expect("request");
        let (address, server) = scripted(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
            0,
            false,
        )
        .await;
        let pool = Arc::new(Pool::default());
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            send(
                conn_to(address).await,
                request,
                false,
                recycle(&pool, address),
            ),
        )
        .await
        .expect("no hang")
        .expect("head");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        drop(response);
        // The request was not sent whole: the connection is not reused.
        assert_eq!(pool.idle_count(address), 0);
        server.abort();
    })
}

#[test]
fn a_pooled_connection_the_server_closed_is_not_reusable() {
    crate::test_netns::block_on(|| async {
        let (address, closer) = closing_server().await;
        let mut conn = conn_to(address).await;
        closer.await.expect("closer");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.is_reusable());
        let (address, server) = scripted(b"", 0, false).await;
        let mut open = conn_to(address).await;
        assert!(open.is_reusable());
        server.abort();
    })
}

/// Without a batching socket (here: off a worker's current-thread
/// runtime), a request goes out on the sender's second turn: the first
/// puts the task behind the worker's queued tasks, so that the requests of
/// one pass reach their servers together.
#[test]
fn a_request_waits_one_turn_behind_the_queued_tasks() {
    crate::test_netns::block_on_off_worker(|| async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let conn = conn_to(address).await;
        let (mut server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let hand = crate::proxy::pass::HandPoll::new();
        let mut sending = std::pin::pin!(send(conn, get("/"), false, None));
        hand.first_turn(sending.as_mut());
        let mut seen = [0u8; 64];
        use std::io::Read;
        let first = server.read(&mut seen).map_err(|e| e.kind());
        assert_eq!(
            first,
            Err(io::ErrorKind::WouldBlock),
            "nothing is written on the first turn"
        );
        // The second turn writes the request (and waits for the answer).
        assert!(hand.poll(sending.as_mut()).is_pending());
        server.set_nonblocking(false).expect("blocking");
        let expected = b"GET / HTTP/1.1\r\nhost: backend\r\n\r\n";
        let mut got = vec![0u8; expected.len()];
        server.read_exact(&mut got).expect("request");
        assert_eq!(got, expected);
    })
}

/// On a worker, the request is handed to the batching socket on the
/// sender's first turn and goes out when the worker's pass ends (with the
/// pass's other sends, in one submission).
#[test]
fn a_request_goes_out_with_the_pass_on_a_worker() {
    crate::test_netns::block_on(|| async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let conn = conn_to(address).await;
        let (mut server, _) = listener.accept().expect("accept");
        let (submissions, _) = crate::proxy::batch::counts();
        let sending = tokio::spawn(send(conn, get("/"), false, None));
        // The sender's turn hands the request over; the flusher's sends it.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(crate::proxy::batch::counts().0 > submissions);
        let expected = b"GET / HTTP/1.1\r\nhost: backend\r\n\r\n";
        let mut got = vec![0u8; expected.len()];
        use std::io::Read;
        server.read_exact(&mut got).expect("request");
        assert_eq!(got, expected);
        sending.abort();
    })
}
