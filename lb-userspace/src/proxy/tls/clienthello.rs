//! A sans-IO TLS ClientHello reader for passthrough: what HAProxy's
//! `req.ssl_sni`, `req_ssl_hello_type`, `req.ssl_ver` and `req.ssl_alpn`
//! look at, read from bytes peeked on the client socket without
//! terminating TLS. The handshake message may span several records and the
//! records several TCP segments: [`peek`] says `Incomplete` until the whole
//! message is there. Every length is checked against what is left; nothing
//! here indexes past a slice, so garbage gives an answer, never a panic.

/// Largest ClientHello accepted (HAProxy's default `tune.bufsize`): a hello
/// with post-quantum key shares is ~2 KiB, so this leaves room.
pub const MAX_HELLO: usize = 16 * 1024;
/// Largest TLS record fragment (RFC 8446, 5.1: 2^14, plus the 256 bytes of
/// slack RFC 5246 allowed for compressed records).
const MAX_RECORD: usize = (1 << 14) + 256;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// The facts of a ClientHello that routing may use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// `legacy_version` of the hello (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// The `supported_versions` extension (TLS 1.3 clients), as sent.
    pub supported_versions: Vec<u16>,
    /// The host name of the `server_name` extension, lowercased.
    pub sni: Option<String>,
    /// ALPN protocol names in the client's order.
    pub alpn: Vec<String>,
}

impl ClientHello {
    /// The highest version offered: the best of `supported_versions`
    /// (ignoring GREASE values) or else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| v >> 8 == 3)
            .max()
            .unwrap_or(self.legacy_version)
    }
}

/// What the bytes seen so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// A TLS handshake record has started but the message is not complete.
    Incomplete,
    /// A complete, well-formed ClientHello.
    ClientHello(ClientHello),
    /// A complete handshake message of another type (its type byte).
    OtherHandshake(u8),
    /// The first byte is not a TLS handshake record (another protocol,
    /// or an SSLv2-format hello, which no supported TLS version accepts).
    NotTls,
    /// A TLS record whose contents break the format.
    Malformed(&'static str),
}

impl Peek {
    /// Whether more bytes could change the answer.
    pub fn is_final(&self) -> bool {
        !matches!(self, Peek::Incomplete)
    }

    /// HAProxy's `req_ssl_hello_type`: the handshake type of a complete
    /// handshake message.
    pub fn hello_type(&self) -> Option<u8> {
        match self {
            Peek::ClientHello(_) => Some(HANDSHAKE_CLIENT_HELLO),
            Peek::OtherHandshake(kind) => Some(*kind),
            _ => None,
        }
    }
}

/// Reads the first handshake message out of `bytes` (the start of the
/// client's stream).
pub fn peek(bytes: &[u8]) -> Peek {
    let mut message = Vec::new();
    let mut rest = bytes;
    loop {
        // Record header: type, version (major 3), length.
        let Some(&content_type) = rest.first() else {
            return Peek::Incomplete;
        };
        if content_type != CONTENT_HANDSHAKE {
            return if message.is_empty() {
                Peek::NotTls
            } else {
                Peek::Malformed("a handshake message interleaved with another record type")
            };
        }
        if let Some(&major) = rest.get(1) {
            if major != 3 {
                return if message.is_empty() {
                    Peek::NotTls
                } else {
                    Peek::Malformed("record version is not 3.x")
                };
            }
        }
        let Some(header) = rest.get(..5) else {
            return Peek::Incomplete;
        };
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length == 0 {
            return Peek::Malformed("empty handshake record");
        }
        if length > MAX_RECORD {
            return Peek::Malformed("record longer than 2^14 bytes");
        }
        let available = &rest[5..];
        let taken = available.len().min(length);
        message.extend_from_slice(&available[..taken]);
        if message.len() >= 4 {
            let declared = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if declared > MAX_HELLO {
                return Peek::Malformed("handshake message longer than 16 KiB");
            }
            if message.len() >= 4 + declared {
                let body = &message[4..4 + declared];
                return match message[0] {
                    HANDSHAKE_CLIENT_HELLO => match parse_client_hello(body) {
                        Ok(hello) => Peek::ClientHello(hello),
                        Err(reason) => Peek::Malformed(reason),
                    },
                    other => Peek::OtherHandshake(other),
                };
            }
        }
        if taken < length {
            return Peek::Incomplete;
        }
        rest = &available[length..];
    }
}

/// A cursor over a byte slice whose reads fail, not panic, past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

const SHORT: &str = "ClientHello shorter than its lengths say";

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.bytes.len() {
            return Err(SHORT);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Result<Reader<'a>, &'static str> {
        let n = usize::from(self.u8()?);
        Ok(Reader {
            bytes: self.take(n)?,
        })
    }
    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Result<Reader<'a>, &'static str> {
        let n = usize::from(self.u16()?);
        Ok(Reader {
            bytes: self.take(n)?,
        })
    }
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn parse_client_hello(body: &[u8]) -> Result<ClientHello, &'static str> {
    let mut r = Reader { bytes: body };
    let mut hello = ClientHello {
        legacy_version: r.u16()?,
        ..ClientHello::default()
    };
    r.take(32)?; // random
    if r.vec8()?.bytes.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16()?;
    if suites.bytes.is_empty() || suites.bytes.len() % 2 != 0 {
        return Err("cipher suite list empty or of odd length");
    }
    if r.vec8()?.is_empty() {
        return Err("no compression method");
    }
    if r.is_empty() {
        // A hello without extensions (TLS 1.0-era clients) is valid.
        return Ok(hello);
    }
    let mut extensions = r.vec16()?;
    if !r.is_empty() {
        return Err("bytes after the extensions");
    }
    let mut seen = Vec::new();
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vec16()?;
        if seen.contains(&kind) {
            return Err("an extension appears twice");
        }
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => hello.sni = server_name(&mut data)?,
            EXT_ALPN => hello.alpn = alpn(&mut data)?,
            EXT_SUPPORTED_VERSIONS => {
                let mut list = data.vec8()?;
                if list.bytes.len() % 2 != 0 {
                    return Err("supported_versions of odd length");
                }
                while !list.is_empty() {
                    hello.supported_versions.push(list.u16()?);
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// The `host_name` entry of a `server_name` extension (RFC 6066, 3).
fn server_name(data: &mut Reader) -> Result<Option<String>, &'static str> {
    let mut list = data.vec16()?;
    let mut host = None;
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?.bytes;
        if kind != 0 {
            continue;
        }
        if host.is_some() {
            return Err("two host names in server_name");
        }
        let valid = !name.is_empty()
            && name.len() <= 255
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err("server_name is not a DNS host name");
        }
        host = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    Ok(host)
}

/// The protocol names of an ALPN extension (RFC 7301, 3.1).
fn alpn(data: &mut Reader) -> Result<Vec<String>, &'static str> {
    let mut list = data.vec16()?;
    let mut names = Vec::new();
    while !list.is_empty() {
        let name = list.vec8()?.bytes;
        if name.is_empty() {
            return Err("empty ALPN protocol name");
        }
        names.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ClientHello handshake message (type + length + body).
    fn hello_message(sni: Option<&str>, alpn: &[&str], versions: &[u16]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[1; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]);
        let mut ext = Vec::new();
        let mut push = |kind: u16, data: Vec<u8>| {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(&data);
        };
        push(0x0a0a, vec![]); // GREASE
        if let Some(name) = sni {
            let mut entry = vec![0];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name.as_bytes());
            let mut data = (entry.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&entry);
            push(EXT_SERVER_NAME, data);
        }
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for name in alpn {
                list.push(name.len() as u8);
                list.extend_from_slice(name.as_bytes());
            }
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&list);
            push(EXT_ALPN, data);
        }
        if !versions.is_empty() {
            let mut data = vec![(versions.len() * 2) as u8];
            for v in versions {
                data.extend_from_slice(&v.to_be_bytes());
            }
            push(EXT_SUPPORTED_VERSIONS, data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut message = vec![HANDSHAKE_CLIENT_HELLO];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    /// Wraps a handshake message into records of at most `fragment` bytes.
    fn records(message: &[u8], fragment: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(fragment) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    fn expected() -> ClientHello {
        ClientHello {
            legacy_version: 0x0303,
            supported_versions: vec![0x3a3a, 0x0304, 0x0303],
            sni: Some("api.example".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
        }
    }

    fn full() -> Vec<u8> {
        let message = hello_message(
            Some("API.example"),
            &["h2", "http/1.1"],
            &[0x3a3a, 0x0304, 0x0303],
        );
        records(&message, MAX_RECORD)
    }

    #[test]
    fn reads_sni_alpn_and_versions() {
        let Peek::ClientHello(hello) = peek(&full()) else {
            panic!("not parsed");
        };
        assert_eq!(hello, expected());
        assert_eq!(hello.max_version(), 0x0304);
        assert_eq!(peek(&full()).hello_type(), Some(1));
    }

    #[test]
    fn every_prefix_is_incomplete_and_trailing_bytes_are_ignored() {
        let bytes = full();
        for cut in 0..bytes.len() {
            assert_eq!(peek(&bytes[..cut]), Peek::Incomplete, "cut at {cut}");
        }
        let mut more = bytes.clone();
        more.extend_from_slice(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
        assert!(matches!(peek(&more), Peek::ClientHello(_)));
    }

    #[test]
    fn a_hello_split_across_records_is_reassembled() {
        let message = hello_message(
            Some("api.example"),
            &["h2", "http/1.1"],
            &[0x3a3a, 0x0304, 0x0303],
        );
        for fragment in [1, 3, 4, 5, 17, 100] {
            let bytes = records(&message, fragment);
            assert_eq!(peek(&bytes), Peek::ClientHello(expected()), "{fragment}");
            assert_eq!(peek(&bytes[..bytes.len() - 1]), Peek::Incomplete);
        }
    }

    #[test]
    fn without_extensions_sni_or_versions() {
        let message = hello_message(None, &[], &[]);
        // Strip the extensions block (GREASE only) to get an old-style hello.
        let body_len = message.len() - 4 - 6;
        let mut old = vec![1];
        old.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
        old.extend_from_slice(&message[4..4 + body_len]);
        let Peek::ClientHello(hello) = peek(&records(&old, 512)) else {
            panic!("old hello");
        };
        assert_eq!(hello.sni, None);
        assert_eq!(hello.max_version(), 0x0303);
        let Peek::ClientHello(hello) = peek(&records(&message, 512)) else {
            panic!("no sni");
        };
        assert_eq!((hello.sni, hello.alpn.len()), (None, 0));
    }

    #[test]
    fn table_of_bad_input() {
        let good = hello_message(Some("a.example"), &["h2"], &[0x0304]);
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut m = good.clone();
            edit(&mut m);
            records(&m, MAX_RECORD)
        };
        let oversized = {
            let mut b = vec![CONTENT_HANDSHAKE, 3, 1, 0, 4, 1];
            b.extend_from_slice(&((MAX_HELLO + 1) as u32).to_be_bytes()[1..]);
            b
        };
        let cases: Vec<(&str, Vec<u8>, Peek)> = vec![
            ("http", b"GET / HTTP/1.1\r\n".to_vec(), Peek::NotTls),
            ("ssh", b"SSH-2.0-OpenSSH\r\n".to_vec(), Peek::NotTls),
            ("sslv2", vec![0x80, 0x2e, 1, 3, 1], Peek::NotTls),
            ("bad major", vec![22, 2, 0, 0, 5], Peek::NotTls),
            (
                "empty record",
                vec![22, 3, 1, 0, 0],
                Peek::Malformed("empty handshake record"),
            ),
            (
                "huge record",
                vec![22, 3, 1, 0xff, 0xff],
                Peek::Malformed("record longer than 2^14 bytes"),
            ),
            (
                "oversized hello",
                oversized,
                Peek::Malformed("handshake message longer than 16 KiB"),
            ),
            (
                "server hello",
                records(&[2, 0, 0, 2, 3, 3], 100),
                Peek::OtherHandshake(2),
            ),
            (
                "alert between fragments",
                {
                    let mut b = records(&good[..10], 100);
                    b.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
                    b
                },
                Peek::Malformed("a handshake message interleaved with another record type"),
            ),
            (
                "truncated body",
                records(&[1, 0, 0, 3, 3, 3, 0], 100),
                Peek::Malformed(SHORT),
            ),
            (
                "long session id",
                with(&|m| m[4 + 2 + 32] = 33),
                Peek::Malformed("session id longer than 32 bytes"),
            ),
            (
                "sni with a slash",
                with(&|m| {
                    let at = m.windows(9).position(|w| w == b"a.example").unwrap();
                    m[at] = b'/';
                }),
                Peek::Malformed("server_name is not a DNS host name"),
            ),
            (
                "trailing bytes in body",
                with(&|m| {
                    m.push(0);
                    let len = (m.len() - 4) as u32;
                    m[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
                }),
                Peek::Malformed("bytes after the extensions"),
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(peek(&bytes), expected, "{name}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base = full();
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let len = (next() % 600) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // Half of the pure-noise inputs start like a handshake.
                if round % 4 == 0 && b.len() > 3 {
                    b[0] = CONTENT_HANDSHAKE;
                    b[1] = 3;
                }
                b
            } else {
                base.clone()
            };
            // Flip a few bytes of the valid hello (or the noise).
            for _ in 0..(next() % 4) {
                if !bytes.is_empty() {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            let _ = peek(&bytes[..cut]);
            let _ = peek(&bytes);
        }
    }
}
