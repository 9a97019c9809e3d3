use super::*;

fn parse(text: &str) -> Result<Option<RequestHead>, RequestError> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse_request(&mut buf, 16 * 1024)
}

fn head(text: &str) -> RequestHead {
    parse(text).expect("valid").expect("complete")
}

#[test]
fn a_head_is_parsed_and_taken_from_the_buffer() {
    let mut buf = BytesMut::from(
        &b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: example.test\r\nX-One: 1\r\nX-One: 2\r\n\r\nGET /next"
            [..],
    );
    let head = parse_request(&mut buf, 16 * 1024)
        .expect("valid")
        .expect("complete");
    assert_eq!(head.parts.method, Method::GET);
    assert_eq!(head.parts.uri, "/a?b=1");
    assert_eq!(head.parts.version, Version::HTTP_11);
    assert_eq!(head.parts.headers["host"], "example.test");
    let ones: Vec<_> = head.parts.headers.get_all("x-one").iter().collect();
    assert_eq!(ones, ["1", "2"]);
    assert_eq!(head.body, BodyFraming::Empty);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    // The pipelined request's bytes stay.
    assert_eq!(&buf[..], b"GET /next");
}

#[test]
fn an_incomplete_head_waits_and_an_oversized_one_is_431() {
    assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n")
        .expect("valid")
        .is_none());
    let mut long = String::from("GET / HTTP/1.1\r\nX-Long: ");
    long.push_str(&"a".repeat(17 * 1024));
    assert_eq!(parse(&long).expect_err("too large"), RequestError::TooLarge);
    long.push_str("\r\n\r\n");
    assert_eq!(parse(&long).expect_err("too large"), RequestError::TooLarge);
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
    let error = parse(&text).expect_err("too many");
    assert_eq!((error, error.status()), (RequestError::TooLarge, 431));
}

#[test]
fn malformed_heads_are_400() {
    for text in [
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/3.0\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
    ] {
        let error = parse(text).expect_err(text);
        assert_eq!(error.status(), 400, "{text}");
    }
}

#[test]
fn body_framing_follows_rfc9112() {
    let cases = [
        (
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            BodyFraming::Length(5),
            true,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            BodyFraming::Length(5),
            true,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            BodyFraming::Empty,
            true,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyFraming::Chunked,
            true,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            BodyFraming::Chunked,
            true,
        ),
        // Both: chunked wins, the length goes and the connection closes.
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyFraming::Chunked,
            false,
        ),
    ];
    for (text, framing, keep_alive) in cases {
        let head = head(text);
        assert_eq!(
            (head.body, head.keep_alive),
            (framing, keep_alive),
            "{text}"
        );
        if framing == BodyFraming::Chunked {
            assert!(head.parts.headers.get("content-length").is_none(), "{text}");
        }
    }
    for text in [
        "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(parse(text).expect_err(text).status(), 400, "{text}");
    }
}

#[test]
fn persistence_and_expect_follow_the_version() {
    let cases = [
        ("GET / HTTP/1.1\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n", false),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
    ];
    for (text, keep_alive) in cases {
        assert_eq!(head(text).keep_alive, keep_alive, "{text}");
    }
    let expecting = head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(expecting.expect_continue);
    let old = head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(!old.expect_continue);
}

#[test]
fn absolute_and_asterisk_targets_parse() {
    let absolute = head("GET http://example.test/x HTTP/1.1\r\n\r\n");
    assert_eq!(absolute.parts.uri.host(), Some("example.test"));
    assert_eq!(absolute.parts.uri.path(), "/x");
    let options = head("OPTIONS * HTTP/1.1\r\n\r\n");
    assert_eq!(options.parts.uri, "*");
}

#[test]
fn the_h2_preface_is_told_from_http1() {
    assert_eq!(
        h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest"),
        Some(true)
    );
    assert_eq!(h2_preface(b"PRI * HT"), None);
    assert_eq!(h2_preface(b""), None);
    assert_eq!(h2_preface(b"GET / HTTP/1.1\r\n"), Some(false));
    assert_eq!(h2_preface(b"P"), None);
    assert_eq!(h2_preface(b"PO"), Some(false));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let len = (state % 300) as usize;
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let alphabet = b"GET /HTP1.\r\n: aC-Lngth0,chunked";
            bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = parse_request(&mut buf, 256);
    }
}
