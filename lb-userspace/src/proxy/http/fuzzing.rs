//! Entry points for the `fuzz/` targets, not an API: lbd's sans-IO HTTP/1
//! parsers on arbitrary bytes (a client's request heads and chunked bodies,
//! a server's response heads). Each returns normally or fails an assertion
//! about what the parser promises; a panic anywhere is a bug.
use super::{
    h1::request::{parse_request, BodyFraming},
    origin::{head::parse_response, ChunkedDecoder, Decoded},
};
use bytes::BytesMut;
use hyper::Method;

/// The request head limit lbd serves with (`tune.bufsize`'s default).
const MAX_HEAD: usize = 16 * 1024;

/// Request heads as a client pipelines them, each followed by its chunked
/// body when it has one.
pub fn client_bytes(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    // Every parsed head consumes bytes, so this ends; the bound is a guard.
    for _ in 0..=data.len() {
        let before = buf.len();
        match parse_request(&mut buf, MAX_HEAD) {
            Ok(Some(head)) => {
                assert!(buf.len() < before, "a parsed head consumes its bytes");
                if head.body == BodyFraming::Chunked && !chunked_body(&mut buf) {
                    return;
                }
            }
            Ok(None) => {
                assert!(
                    buf.len() < MAX_HEAD,
                    "an incomplete head at the limit is refused"
                );
                return;
            }
            Err(_) => return,
        }
    }
}

/// A response head to a GET and to a HEAD, then a chunked body.
pub fn server_bytes(data: &[u8]) {
    for method in [Method::GET, Method::HEAD] {
        let mut buf = BytesMut::from(data);
        let before = buf.len();
        if let Ok(Some(_head)) = parse_response(&mut buf, &method) {
            assert!(buf.len() < before, "a parsed head consumes its bytes");
            chunked_body(&mut buf);
        }
    }
}

/// Decodes a chunked body from `buf`; true when it ended.
fn chunked_body(buf: &mut BytesMut) -> bool {
    let mut decoder = ChunkedDecoder::default();
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Decoded::Data(data)) => {
                assert!(!data.is_empty(), "no empty data chunk");
                assert!(buf.len() < before, "data consumes bytes");
            }
            Ok(Decoded::Trailers(_)) => {}
            Ok(Decoded::End) => return true,
            Ok(Decoded::NeedMore) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &[u8] = b"\r\nPOST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const SERVER: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";

    /// Mutations of the valid seeds (bytes changed, cut, repeated) with a
    /// fixed xorshift: the same cases on every run, as in CI.
    fn mutations(seed: &[u8], count: usize) -> Vec<Vec<u8>> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|_| {
                let mut bytes = seed.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % bytes.len().max(1);
                    match next() % 4 {
                        0 if !bytes.is_empty() => bytes[at] = next() as u8,
                        1 => bytes.truncate(at),
                        2 => bytes.insert(at, b"\r\n:;, \t0f"[(next() % 9) as usize]),
                        _ => {
                            let tail = bytes[at..].to_vec();
                            bytes.extend_from_slice(&tail);
                        }
                    }
                }
                bytes
            })
            .collect()
    }

    #[test]
    fn the_seeds_parse_whole() {
        let mut buf = BytesMut::from(CLIENT);
        let first = parse_request(&mut buf, MAX_HEAD)
            .expect("valid")
            .expect("whole");
        assert_eq!(first.body, BodyFraming::Chunked);
        assert!(chunked_body(&mut buf), "the body ends");
        assert!(parse_request(&mut buf, MAX_HEAD).expect("valid").is_some());
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(SERVER);
        assert!(parse_response(&mut buf, &Method::GET)
            .expect("valid")
            .is_some());
        assert!(chunked_body(&mut buf));
    }

    #[test]
    fn mutated_heads_and_bodies_keep_the_parsers_promises() {
        for bytes in mutations(CLIENT, 3000) {
            client_bytes(&bytes);
        }
        for bytes in mutations(SERVER, 3000) {
            server_bytes(&bytes);
        }
    }
}
