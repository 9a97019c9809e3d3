//! `balance url_param <name> check_post [<max_wait>]`: the first bytes of
//! a POST body are read before a server is chosen, then replayed to it in
//! front of the rest, which streams as usual. At most `max_wait` bytes are
//! waited for (a frame that crosses the limit is kept whole, since it is
//! already in memory); nothing more is held back.
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Body, Frame};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the body's first bytes could not be read.
#[derive(Debug)]
pub enum PeekError {
    /// The client sent nothing more within the timeout.
    Timeout,
    /// The client's body broke off (reset, malformed chunking).
    Body(BoxError),
}

/// The bytes read, and the whole body again (read frames first).
pub struct Peeked<B> {
    pub prefix: Bytes,
    pub body: B,
}

/// Reads frames of `body` until `limit` data bytes, the end, or a trailer;
/// `timeout` bounds the whole wait.
pub async fn peek<B>(
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Peeked<impl Body<Data = Bytes, Error = BoxError> + Send + 'static>, PeekError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut stream = BodyStream::new(body.map_err(Into::into));
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = Vec::new();
    let mut prefix = BytesMut::new();
    let read = async {
        while prefix.len() < limit {
            match stream.next().await {
                None => break,
                Some(Err(error)) => return Err(PeekError::Body(error)),
                Some(Ok(frame)) => {
                    let is_data = frame.is_data();
                    if let Some(data) = frame.data_ref() {
                        prefix.extend_from_slice(data);
                    }
                    frames.push(Ok(frame));
                    if !is_data {
                        break;
                    }
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| PeekError::Timeout)??;
    prefix.truncate(limit);
    let replay = futures::stream::iter(frames).chain(stream);
    Ok(Peeked {
        prefix: prefix.freeze(),
        body: StreamBody::new(replay),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    async fn whole<B: Body<Data = Bytes>>(body: B) -> Vec<u8>
    where
        B::Error: std::fmt::Debug,
    {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn reads_up_to_the_limit_and_replays_everything() {
        let body = chunks(&["user=bo", "b&x=1", "&pad=0123456789", "&tail"]);
        let peeked = peek(body, 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(&peeked.prefix[..], b"user=bob&x");
        assert_eq!(
            whole(peeked.body).await,
            b"user=bob&x=1&pad=0123456789&tail".to_vec()
        );
        let short = peek(
            Full::new(Bytes::from_static(b"a=1")),
            100,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(&short.prefix[..], b"a=1");
        assert_eq!(whole(short.body).await, b"a=1".to_vec());
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let pending = StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, BoxError>>());
        let result = peek(pending, 10, Duration::from_millis(30)).await;
        assert!(matches!(result, Err(PeekError::Timeout)));
    }

    #[tokio::test]
    async fn a_broken_body_is_an_error() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err("reset".into()),
        ];
        let result = peek(
            StreamBody::new(futures::stream::iter(frames)),
            10,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(result, Err(PeekError::Body(_))));
    }
}
