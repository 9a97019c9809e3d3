//! A sans-IO decoder of `Transfer-Encoding: chunked` bodies (RFC 9112
//! §7.1): it takes what has been read, hands back the data as shared slices
//! of the read buffer (no copy) and never reads past the body's end, so the
//! bytes after it stay for the next response on the connection.
use bytes::{Bytes, BytesMut};
use hyper::HeaderMap;

/// The longest chunk-size line (size and extensions) accepted.
const MAX_SIZE_LINE: usize = 4096;
/// The largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Hex digits of a chunk size: 15 keep it below 2^60 (no overflow).
const MAX_SIZE_DIGITS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    SizeLine,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("invalid trailers")]
    Trailers,
}

/// What the decoder produced from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The body's trailers (only when there are some).
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// The buffer holds no complete step: read more.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Decodes the next step from the front of `buf`, consuming its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Size => {
                    let Some(line_end) = find_crlf(buf) else {
                        return if buf.len() > MAX_SIZE_LINE {
                            Err(ChunkError::SizeLine)
                        } else {
                            Ok(Decoded::NeedMore)
                        };
                    };
                    let size = parse_size_line(&buf[..line_end])?;
                    let _ = buf.split_to(line_end + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    // No trailers: the empty line follows at once.
                    if buf.starts_with(b"\r\n") {
                        let _ = buf.split_to(2);
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    let Some(end) = find(buf, b"\r\n\r\n") else {
                        return if buf.len() > MAX_TRAILERS {
                            Err(ChunkError::Trailers)
                        } else {
                            Ok(Decoded::NeedMore)
                        };
                    };
                    let block = buf.split_to(end + 4);
                    self.state = State::Done;
                    let trailers = super::head::parse_trailers(&block[..end + 2])
                        .map_err(|_| ChunkError::Trailers)?;
                    return Ok(Decoded::Trailers(trailers));
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `1*HEXDIG [ BWS ; extensions ]`: extensions are skipped (as HAProxy).
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return Err(ChunkError::SizeLine);
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty()
        || rest
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .is_some_and(|i| rest[i] == b';')
            && !rest.iter().any(|&b| b == b'\r' || b == b'\n');
    if !rest_ok {
        return Err(ChunkError::SizeLine);
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| ChunkError::SizeLine)?;
    u64::from_str_radix(text, 16).map_err(|_| ChunkError::SizeLine)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes and gathers what comes out.
    fn decode_in_steps(
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, BytesMut), ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailers(map) => trailers = Some(map),
                Decoded::End => return Ok((body, trailers, buf)),
                Decoded::NeedMore => {
                    assert!(fed < wire.len(), "ran out of input");
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn decodes_whole_and_byte_by_byte() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nHTTP/1.1 next";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, trailers, rest) = decode_in_steps(wire, step).expect("valid");
            assert_eq!(body, b"hello world", "step {step}");
            assert!(trailers.is_none());
            // The next response's bytes are left alone (possibly partly fed).
            assert!(b"HTTP/1.1 next".starts_with(&rest[..]), "step {step}");
        }
    }

    #[test]
    fn trailers_are_returned() {
        let wire = b"3\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n";
        for step in [1, 5, wire.len()] {
            let (body, trailers, rest) = decode_in_steps(wire, step).expect("valid");
            assert_eq!(body, b"abc");
            assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn bad_framing_is_an_error() {
        let bad: [&[u8]; 6] = [
            b"zz\r\n",
            b"5\r\nhelloXX",
            b"1000000000000000\r\n",
            b"5 x\r\nhello\r\n",
            b"\r\n",
            b"0\r\nno colon here\r\n\r\n",
        ];
        for wire in bad {
            assert!(decode_in_steps(wire, wire.len()).is_err(), "{wire:?}");
        }
        let endless = vec![b'1'; MAX_SIZE_LINE + 1];
        let mut buf = BytesMut::from(&endless[..]);
        assert_eq!(
            ChunkedDecoder::default().decode(&mut buf),
            Err(ChunkError::SizeLine)
        );
    }

    #[test]
    fn size_lines_allow_whitespace_before_extensions() {
        assert_eq!(parse_size_line(b"1a"), Ok(26));
        assert_eq!(parse_size_line(b"A ; name=value"), Ok(10));
        assert_eq!(
            parse_size_line(b"fffffffffffffff"),
            Ok(0xfff_ffff_ffff_ffff)
        );
        assert!(parse_size_line(b"1 2").is_err());
    }
}
