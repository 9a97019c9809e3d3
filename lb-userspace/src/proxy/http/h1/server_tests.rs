use super::*;
use crate::proxy::http::body::full;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::AsyncReadExt;

/// Writes `body` framed as `framing` after `head` and returns what the
/// client received, or the writer's error.
async fn written(head: &str, body: ProxyBody, framing: Framing) -> io::Result<String> {
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let wire = Mutex::new(Wire::new(ours));
    let mut out = BytesMut::from(head.as_bytes());
    write_response(&wire, &mut out, body, framing, false).await?;
    drop(wire);
    let mut received = String::new();
    theirs.read_to_string(&mut received).await?;
    Ok(received)
}

fn frames(parts: Vec<Frame<Bytes>>) -> ProxyBody {
    let stream = futures::stream::iter(
        parts
            .into_iter()
            .map(Ok::<_, crate::proxy::http::body::BoxError>),
    );
    StreamBody::new(stream).boxed_unsync()
}

#[tokio::test]
async fn chunked_bodies_are_framed_with_their_trailers() {
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("x-sum", hyper::header::HeaderValue::from_static("7"));
    let large = "L".repeat(COALESCE_MAX + 1);
    let body = frames(vec![
        Frame::data(Bytes::from_static(b"hello")),
        Frame::data(Bytes::from(large.clone())),
        Frame::data(Bytes::new()),
        Frame::trailers(trailers),
    ]);
    let received = written("H\r\n\r\n", body, Framing::Chunked)
        .await
        .expect("written");
    let expected = format!(
        "H\r\n\r\n5\r\nhello\r\n{:x}\r\n{large}\r\n0\r\nx-sum: 7\r\n\r\n",
        large.len()
    );
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_length_is_kept_to_and_no_body_writes_nothing() {
    let received = written("H\r\n\r\n", full("abc"), Framing::Length(3))
        .await
        .expect("written");
    assert_eq!(received, "H\r\n\r\nabc");
    let received = written("H\r\n\r\n", full("abc"), Framing::NoBody)
        .await
        .expect("written");
    assert_eq!(received, "H\r\n\r\n");
    let received = written("H\r\n\r\n", full("abc"), Framing::UntilClose)
        .await
        .expect("written");
    assert_eq!(received, "H\r\n\r\nabc");
    assert!(written("H\r\n\r\n", full("abcd"), Framing::Length(3))
        .await
        .is_err());
    assert!(written("H\r\n\r\n", full("ab"), Framing::Length(3))
        .await
        .is_err());
}

#[tokio::test]
async fn request_bodies_are_read_by_length_and_by_chunks_leaving_the_next_head() {
    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    let wire: SharedWire<_> = Arc::new(Mutex::new(Wire::new(ours)));
    lock(&wire).start_body(BodyProgress::Length(5), false);
    use tokio::io::AsyncWriteExt;
    theirs.write_all(b"hel").await.expect("write");
    theirs.write_all(b"loGET").await.expect("write");
    let body = RequestBody::new(wire.clone())
        .collect()
        .await
        .expect("body");
    assert_eq!(body.to_bytes(), "hello");
    assert_eq!(&lock(&wire).buf[..], b"GET");
    lock(&wire).buf.clear();

    lock(&wire).start_body(BodyProgress::Chunked(ChunkedDecoder::default()), true);
    let reading = tokio::spawn({
        let wire = wire.clone();
        async move { RequestBody::new(wire).collect().await.map(|b| b.to_bytes()) }
    });
    // The 100 comes first, then the body is sent.
    let mut continue_line = [0u8; 25];
    theirs.read_exact(&mut continue_line).await.expect("100");
    assert_eq!(&continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");
    theirs
        .write_all(b"3\r\nabc\r\n0\r\n\r\nNEXT")
        .await
        .expect("write");
    let body = reading.await.expect("task").expect("body");
    assert_eq!(body, "abc");
    assert_eq!(&lock(&wire).buf[..], b"NEXT");
    assert!(!lock(&wire).continue_owed());

    lock(&wire).buf.clear();
    lock(&wire).start_body(BodyProgress::Length(4), false);
    theirs.write_all(b"ab").await.expect("write");
    drop(theirs);
    let error = RequestBody::new(wire.clone()).collect().await;
    assert!(error.is_err());
    assert!(matches!(lock(&wire).body, BodyProgress::Failed));
}

/// A response goes out on the writer's second turn: the first puts the task
/// behind the worker's queued tasks, so that the responses of one pass
/// reach their clients together.
#[tokio::test]
async fn a_response_waits_one_turn_behind_the_queued_tasks() {
    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    let wire = Mutex::new(Wire::new(ours));
    let mut out = BytesMut::from(&b"H\r\n\r\n"[..]);
    let hand = crate::proxy::pass::HandPoll::new();
    {
        let mut writing = pin!(write_response(
            &wire,
            &mut out,
            full("abc"),
            Framing::Length(3),
            true
        ));
        hand.first_turn(writing.as_mut());
        assert!(hand.nothing_to_read(&mut theirs), "nothing is written yet");
        assert!(matches!(hand.poll(writing.as_mut()), Poll::Ready(Ok(()))));
    }
    let mut received = [0u8; 8];
    theirs.read_exact(&mut received).await.expect("response");
    assert_eq!(&received, b"H\r\n\r\nabc");
}
