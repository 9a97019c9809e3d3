//! Hop-by-hop headers (RFC 9110 §7.6.1) told from their raw names, and what
//! a message's framing and connection headers say, gathered in the one
//! pass over its header lines that builds its map: each of these questions
//! asked of a finished `HeaderMap` hashes a name and walks its values again
//! (together about a tenth of the proxy's user time per keep-alive request).

/// A header that describes one hop and is never forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Connection,
    KeepAlive,
    ProxyConnection,
    ProxyAuthenticate,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
}

impl Hop {
    /// The hop-by-hop header `name` is, compared without case (a parsed
    /// `HeaderName` is lower case already, a raw line is as sent).
    pub fn of(name: &[u8]) -> Option<Hop> {
        let is = |expected: &str| name.eq_ignore_ascii_case(expected.as_bytes());
        // The length and first letter pick at most one candidate: most
        // names are ruled out without comparing the rest.
        match (name.len(), name.first().map(u8::to_ascii_lowercase)) {
            (2, Some(b't')) if is("te") => Some(Hop::Te),
            (7, Some(b'u')) if is("upgrade") => Some(Hop::Upgrade),
            (7, Some(b't')) if is("trailer") => Some(Hop::Trailer),
            (10, Some(b'c')) if is("connection") => Some(Hop::Connection),
            (10, Some(b'k')) if is("keep-alive") => Some(Hop::KeepAlive),
            (16, Some(b'p')) if is("proxy-connection") => Some(Hop::ProxyConnection),
            (17, Some(b't')) if is("transfer-encoding") => Some(Hop::TransferEncoding),
            (18, Some(b'p')) if is("proxy-authenticate") => Some(Hop::ProxyAuthenticate),
            _ => None,
        }
    }
}

/// The tokens of a message's Connection headers that matter to a proxy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// A token that names a header of its own (not a hop-by-hop one):
    /// that header is removed with the hop-by-hop ones.
    pub names_other: bool,
}

impl ConnectionTokens {
    /// Adds the comma-separated tokens of one Connection header value. A
    /// value that is not text names nothing.
    pub fn add(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if Hop::of(token).is_none() {
                self.names_other = true;
            }
        }
    }

    /// Whether `token` is among them; `other` tokens are not kept, so
    /// only the three named ones can be asked.
    pub fn has(&self, token: &str) -> bool {
        if token.eq_ignore_ascii_case("close") {
            self.close
        } else if token.eq_ignore_ascii_case("keep-alive") {
            self.keep_alive
        } else if token.eq_ignore_ascii_case("upgrade") {
            self.upgrade
        } else {
            false
        }
    }

    /// RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn persists(&self, http10: bool) -> bool {
        if http10 {
            self.keep_alive
        } else {
            !self.close
        }
    }
}

/// A Content-Length that is neither one number nor several equal ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidContentLength;

/// A message's Content-Length read line by line: absent, one number, or
/// several equal ones (RFC 9110 §8.6); anything else is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLength(Result<Option<u64>, InvalidContentLength>);

impl Default for ContentLength {
    fn default() -> Self {
        ContentLength(Ok(None))
    }
}

impl ContentLength {
    /// Adds one Content-Length header value (a comma-separated list).
    pub fn add(&mut self, value: &[u8]) {
        let Ok(mut found) = self.0 else {
            return;
        };
        for part in value.split(|&b| b == b',') {
            let text = part.trim_ascii();
            let Some(length) = parse_digits(text) else {
                self.0 = Err(InvalidContentLength);
                return;
            };
            if found.is_some_and(|seen| seen != length) {
                self.0 = Err(InvalidContentLength);
                return;
            }
            found = Some(length);
        }
        self.0 = Ok(found);
    }

    pub fn get(&self) -> Result<Option<u64>, InvalidContentLength> {
        self.0
    }
}

/// One or more ASCII digits that fit a u64.
fn parse_digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Whether a Transfer-Encoding value's last coding is `chunked`.
pub fn chunked_is_last(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// What one pass over a message's header lines found for its framing and
/// connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadFacts {
    pub content_length: ContentLength,
    /// Transfer-Encoding was present; `Some(chunked)`: whether the last
    /// coding of the last line is `chunked` (RFC 9112 §6.3).
    pub transfer_encoding: Option<bool>,
    pub connection: ConnectionTokens,
    /// Some hop-by-hop header was present.
    pub any_hop: bool,
    /// An Upgrade header was present.
    pub upgrade_header: bool,
}

impl HeadFacts {
    /// Notes one header line; returns its hop-by-hop kind, if it has one.
    #[inline]
    pub fn note(&mut self, name: &[u8], value: &[u8]) -> Option<Hop> {
        if name.len() == 14 && name.eq_ignore_ascii_case(b"content-length") {
            self.content_length.add(value);
            return None;
        }
        let hop = Hop::of(name)?;
        self.any_hop = true;
        match hop {
            Hop::Connection => self.connection.add(value),
            Hop::TransferEncoding => self.transfer_encoding = Some(chunked_is_last(value)),
            Hop::Upgrade => self.upgrade_header = true,
            _ => {}
        }
        Some(hop)
    }

    /// The message asks to switch protocols (`Connection: upgrade` and an
    /// Upgrade header).
    pub fn asks_upgrade(&self) -> bool {
        self.connection.upgrade && self.upgrade_header
    }
}

/// The facts of a finished map's lines, in one pass over them (cheaper
/// than a lookup per question for the few headers of a message).
pub fn facts_of(headers: &hyper::HeaderMap) -> HeadFacts {
    let mut facts = HeadFacts::default();
    for (name, value) in headers {
        facts.note(name.as_str().as_bytes(), value.as_bytes());
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_is_told_without_case_and_no_other() {
        for (name, hop) in [
            ("Connection", Hop::Connection),
            ("keep-alive", Hop::KeepAlive),
            ("Proxy-Connection", Hop::ProxyConnection),
            ("proxy-authenticate", Hop::ProxyAuthenticate),
            ("TE", Hop::Te),
            ("Trailer", Hop::Trailer),
            ("transfer-encoding", Hop::TransferEncoding),
            ("UPGRADE", Hop::Upgrade),
        ] {
            assert_eq!(Hop::of(name.as_bytes()), Some(hop), "{name}");
        }
        for name in [
            "connections",
            "t",
            "tf",
            "content-length",
            "keep_alive",
            "proxy-authorization",
            "x-upgrade",
            "",
        ] {
            assert_eq!(Hop::of(name.as_bytes()), None, "{name}");
        }
    }

    #[test]
    fn connection_tokens_are_read_across_lines() {
        let mut tokens = ConnectionTokens::default();
        tokens.add(b" Keep-Alive , ,Upgrade");
        tokens.add(b"x-private");
        assert!(tokens.keep_alive && tokens.upgrade && tokens.names_other);
        assert!(!tokens.close);
        assert!(tokens.has("UPGRADE") && !tokens.has("close") && !tokens.has("x-private"));
        let mut hop_names = ConnectionTokens::default();
        hop_names.add(b"close, te, trailer");
        assert!(hop_names.close && !hop_names.names_other);
    }

    #[test]
    fn persistence_follows_the_version() {
        let none = ConnectionTokens::default();
        assert!(none.persists(false) && !none.persists(true));
        let keep = ConnectionTokens {
            keep_alive: true,
            ..none
        };
        assert!(keep.persists(true));
        let close = ConnectionTokens {
            close: true,
            ..none
        };
        assert!(!close.persists(false));
    }

    #[test]
    fn content_length_table() {
        for (values, expected) in [
            (&[][..], Ok(None)),
            (&["42"][..], Ok(Some(42))),
            (&[" 7 "][..], Ok(Some(7))),
            (&["5, 5", "5"][..], Ok(Some(5))),
            (&["5", "6"][..], Err(InvalidContentLength)),
            (&["5,6"][..], Err(InvalidContentLength)),
            (&[""][..], Err(InvalidContentLength)),
            (&["5,"][..], Err(InvalidContentLength)),
            (&["+5"][..], Err(InvalidContentLength)),
            (&["-1"][..], Err(InvalidContentLength)),
            (&["0x10"][..], Err(InvalidContentLength)),
            (&["18446744073709551616"][..], Err(InvalidContentLength)),
            (&["18446744073709551615"][..], Ok(Some(u64::MAX))),
            (&["bad", "5"][..], Err(InvalidContentLength)),
        ] {
            let mut length = ContentLength::default();
            for value in values {
                length.add(value.as_bytes());
            }
            assert_eq!(length.get(), expected, "{values:?}");
        }
    }

    #[test]
    fn facts_follow_the_last_transfer_encoding_line() {
        let mut facts = HeadFacts::default();
        assert_eq!(facts.note(b"Host", b"a"), None);
        assert!(!facts.any_hop);
        assert_eq!(
            facts.note(b"Transfer-Encoding", b"gzip, chunked"),
            Some(Hop::TransferEncoding)
        );
        assert_eq!(facts.transfer_encoding, Some(true));
        facts.note(b"transfer-encoding", b"gzip");
        assert_eq!(facts.transfer_encoding, Some(false));
        assert_eq!(facts.note(b"Content-Length", b"3"), None);
        assert_eq!(facts.content_length.get(), Ok(Some(3)));
        facts.note(b"Connection", b"close");
        assert!(facts.connection.close && facts.any_hop);
    }
}
