//! lbd's own HTTP/1 server side end to end in namespaces: pipelining,
//! chunked uploads, `Expect: 100-continue`, HTTP/1.0 persistence, HEAD,
//! a client that half-closes after its request, and the request-smuggling
//! shape (Content-Length with Transfer-Encoding). Needs root. Run under
//! the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test proxy_h1_netns -- --test-threads=1`
// Shared by the proxy test binaries; each uses part of it.
#[allow(dead_code)]
#[path = "proxy_kit/mod.rs"]
mod kit;

use kit::{backend::fnv1a, client::Client, vip, ProxyLab, DEFAULTS};
use std::{
    io::{BufRead, Read, Write},
    net::Shutdown,
    time::Duration,
};

fn lab() -> ProxyLab {
    let mut lab = ProxyLab::build(1).expect("lab");
    let config = lab.web_to_app(DEFAULTS, "", "", &[0]);
    lab.start(&config).expect("start");
    lab
}

/// Three requests in one write are answered in order on the connection.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let lab = lab();
    let paths = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            let mut burst = Vec::new();
            for path in ["/one", "/two", "/three"] {
                burst.extend_from_slice(
                    format!("GET {path} HTTP/1.1\r\nHost: test.lbd\r\n\r\n").as_bytes(),
                );
            }
            client.reader().get_mut().write_all(&burst)?;
            let mut paths = Vec::new();
            for _ in 0..3 {
                let reply = client.read_reply()?;
                anyhow::ensure!(reply.status == 200, "status {}", reply.status);
                paths.push(reply.header("x-seen-path").unwrap_or("-").to_owned());
            }
            Ok(paths)
        })
        .expect("pipelined");
    assert_eq!(paths, ["/one", "/two", "/three"]);
    assert_eq!(lab.backends[0].requests(), 3);
}

/// A chunked upload reaches the server whole (it is forwarded chunked),
/// and the connection carries the next request.
#[test]
fn a_chunked_upload_reaches_the_server_whole() {
    let lab = lab();
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (upload, next) = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            let mut request =
                b"POST /up HTTP/1.1\r\nHost: test.lbd\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            for piece in body.chunks(30_000) {
                request.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
                request.extend_from_slice(piece);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            let upload = client.raw(&request)?;
            let next = client.get("/after", &[])?;
            Ok((upload, next))
        })
        .expect("upload");
    assert_eq!(upload.status, 200);
    assert_eq!(upload.header("x-seen-body"), Some("70000"));
    let hash = format!("{:08x}", fnv1a(&body));
    assert_eq!(upload.header("x-seen-body-hash"), Some(hash.as_str()));
    assert_eq!(next.header("x-seen-path"), Some("/after"));
    assert_eq!(next.header("x-seen-body"), Some("0"));
}

/// `Expect: 100-continue`: the client gets its 100 before it sends the
/// body, then the final answer.
#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let lab = lab();
    let (interim, reply) = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            client.reader().get_mut().write_all(
                b"PUT /put HTTP/1.1\r\nHost: test.lbd\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
            )?;
            let mut interim = String::new();
            client.reader().read_line(&mut interim)?;
            let mut blank = String::new();
            client.reader().read_line(&mut blank)?;
            client.reader().get_mut().write_all(b"hello world")?;
            Ok((interim, client.read_reply()?))
        })
        .expect("expect");
    assert_eq!(interim.trim_end(), "HTTP/1.1 100 Continue");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-seen-body"), Some("11"));
}

/// HTTP/1.0 closes after the response unless it asks for keep-alive,
/// which the response then confirms.
#[test]
fn http10_persistence_follows_keep_alive() {
    let lab = lab();
    let (plain_closed, kept, kept_open, second) = lab
        .on_client(|| {
            let mut plain = Client::connect(vip(80))?;
            let reply = plain.raw(b"GET / HTTP/1.0\r\n\r\n")?;
            anyhow::ensure!(reply.status == 200, "status {}", reply.status);
            let plain_closed = plain.closed_within(Duration::from_secs(2));
            let mut kept = Client::connect(vip(80))?;
            let first = kept.raw(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?;
            let second = kept.raw(b"GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?;
            let kept_open = !kept.closed_within(Duration::from_millis(300));
            Ok((plain_closed, first, kept_open, second))
        })
        .expect("http/1.0");
    assert!(
        plain_closed,
        "an HTTP/1.0 connection without keep-alive stayed open"
    );
    assert_eq!(kept.header("connection"), Some("keep-alive"));
    assert!(kept_open, "the keep-alive HTTP/1.0 connection was closed");
    assert_eq!(second.header("x-seen-path"), Some("/again"));
}

/// A HEAD response carries the length of the body it does not send, and
/// the connection goes on.
#[test]
fn head_has_no_body_and_the_connection_goes_on() {
    let lab = lab();
    let (head, next) = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            client
                .reader()
                .get_mut()
                .write_all(b"HEAD /h HTTP/1.1\r\nHost: test.lbd\r\n\r\n")?;
            let mut head = String::new();
            loop {
                let mut line = String::new();
                client.reader().read_line(&mut line)?;
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            Ok((head, client.get("/next", &[])?))
        })
        .expect("head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-length: 2\r\n"), "{head}");
    // The next reply is parsed right after the head: no body in between.
    assert_eq!(next.status, 200);
    assert_eq!(next.header("x-seen-path"), Some("/next"));
}

/// A client that shuts its sending side after the request still gets the
/// whole response (HAProxy without `option abortonclose`), then the close
/// (`read_to_string` returns only at the end of the stream).
#[test]
fn a_half_closed_client_gets_its_response() {
    let lab = lab();
    lab.backends[0].set_delay_ms(200);
    let reply = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            client
                .reader()
                .get_mut()
                .write_all(b"GET /late HTTP/1.1\r\nHost: test.lbd\r\n\r\n")?;
            client.stream().shutdown(Shutdown::Write)?;
            let mut all = String::new();
            client.reader().read_to_string(&mut all)?;
            Ok(all)
        })
        .expect("half close");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nb1"), "{reply}");
}

/// Content-Length with Transfer-Encoding: chunked wins, the length is not
/// forwarded, and the connection closes after the response (as HAProxy).
#[test]
fn content_length_with_chunked_is_served_chunked_then_closed() {
    let lab = lab();
    let (reply, closed) = lab
        .on_client(|| {
            let mut client = Client::connect(vip(80))?;
            let reply = client.raw(
                b"POST / HTTP/1.1\r\nHost: test.lbd\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )?;
            Ok((reply, client.closed_within(Duration::from_secs(2))))
        })
        .expect("smuggling shape");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-seen-body"), Some("5"));
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closed, "the connection stayed open");
}
