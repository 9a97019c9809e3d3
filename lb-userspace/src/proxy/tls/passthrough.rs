//! HAProxy's `tcp-request` for tcp frontends, as lbd's `tcp_request`
//! lines: `inspect-delay`, then `connection accept|reject` (on connection
//! facts, before any byte is read) and `content accept|reject` (after the
//! client's first bytes have been inspected). Inspection peeks at the
//! client's TLS ClientHello without taking it out of the socket, so the
//! relay later forwards the exact bytes the client sent and the server
//! answers with its own certificate (TLS passthrough routed by
//! `req.ssl_sni`). The rules are sans-IO ([`TcpRequest::verdict`]); the
//! driver is [`inspect`].
use super::clienthello::{self, Peek, MAX_HELLO};
use crate::proxy::acl::{split_condition, split_words, AclSet, Condition, ConnInfo, RequestView};
use crate::proxy::config::{parse_duration, ErrorSink, Mode, RawDuration};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpStream;
use toml::Spanned;

/// The parsed `tcp_request` lines of a frontend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpRequest {
    /// `inspect-delay`: how long the client's first bytes are awaited.
    /// `None`: nothing is inspected (HAProxy: content fetches see no data).
    pub inspect_delay: Option<Duration>,
    pub connection: Vec<Rule>,
    pub content: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub accept: bool,
    pub condition: Option<Condition>,
}

/// What the rules decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
}

/// Longest `inspect-delay` accepted.
const MAX_INSPECT_DELAY: Duration = Duration::from_secs(60);

impl TcpRequest {
    /// Adds one line: `inspect-delay 5s`, `content accept|reject [if|unless
    /// ...]` or `connection accept|reject [if|unless ...]`.
    pub fn add_line(&mut self, line: &str, acls: &mut AclSet) -> Result<(), String> {
        let words = split_words(line)?;
        let (action, condition) = split_condition(&words);
        match action {
            [keyword, delay] if keyword == "inspect-delay" => {
                if condition.is_some() {
                    return Err("inspect-delay takes no condition".into());
                }
                if self.inspect_delay.is_some() {
                    return Err("inspect-delay is set twice".into());
                }
                let delay = parse_duration(&RawDuration::Text(delay.clone()))
                    .map_err(|e| format!("inspect-delay {delay}: {e}"))?;
                if delay > MAX_INSPECT_DELAY {
                    return Err(format!("inspect-delay {delay:?} is longer than 60s"));
                }
                self.inspect_delay = Some(delay);
                Ok(())
            }
            [phase, verb] if phase == "content" || phase == "connection" => {
                let accept = match verb.as_str() {
                    "accept" => true,
                    "reject" => false,
                    other => {
                        return Err(format!(
                            "unsupported tcp-request {phase} action \"{other}\" (accept, reject)"
                        ))
                    }
                };
                let condition = condition
                    .map(|words| Condition::parse(words, acls))
                    .transpose()?;
                let rule = Rule { accept, condition };
                if phase == "content" {
                    self.content.push(rule);
                } else {
                    self.connection.push(rule);
                }
                Ok(())
            }
            [keyword, ..] if keyword == "inspect-delay" => {
                Err("expected \"inspect-delay <duration>\", as in \"inspect-delay 5s\"".into())
            }
            [phase, verb, ..]
                if (phase == "content" || phase == "connection")
                    && verb != "accept"
                    && verb != "reject" =>
            {
                Err(format!(
                    "unsupported tcp-request {phase} action \"{verb}\" (accept, reject)"
                ))
            }
            [phase, ..] if phase == "content" || phase == "connection" => Err(format!(
                "expected \"{phase} accept|reject [if|unless <condition>]\""
            )),
            _ => Err(format!(
                "expected \"inspect-delay <duration>\" or \"content|connection accept|reject [if|unless ...]\", found \"{line}\""
            )),
        }
    }

    /// The first matching rule's action; accept when none matches
    /// (HAProxy's default).
    pub fn verdict(rules: &[Rule], acls: &AclSet, conn: &ConnInfo) -> Verdict {
        let view = RequestView::connection(conn);
        let matched = rules.iter().find(|rule| {
            rule.condition
                .as_ref()
                .is_none_or(|c| c.matches(acls, &view))
        });
        match matched {
            Some(Rule { accept: false, .. }) => Verdict::Reject,
            _ => Verdict::Accept,
        }
    }
}

/// A frontend's `tcp_request` lines, each error reported at its line.
pub fn parse_lines(
    raw: &Option<Spanned<Vec<Spanned<String>>>>,
    mode: Mode,
    acls: &mut AclSet,
    field: &str,
    sink: &mut dyn ErrorSink,
) -> TcpRequest {
    let mut rules = TcpRequest::default();
    for (i, line) in raw.iter().flat_map(|v| v.get_ref().iter()).enumerate() {
        let field = format!("{field}.tcp_request[{i}]");
        if mode != Mode::Tcp {
            sink.report(
                line.span(),
                &field,
                "tcp_request rules need mode tcp (use http_request rules in mode http)".into(),
            );
            continue;
        }
        if let Err(message) = rules.add_line(line.get_ref(), acls) {
            sink.report(line.span(), &field, message);
        }
    }
    rules
}

/// Records what the peeked bytes say in the connection facts the ACLs
/// read (`req.ssl_sni`, `req_ssl_hello_type`, `req.ssl_ver`,
/// `req.ssl_alpn`).
pub fn record_hello(conn: &mut ConnInfo, peeked: Peek) {
    if let Peek::ClientHello(hello) = &peeked {
        conn.sni = hello.sni.clone();
    }
    conn.client_hello = Some(Arc::new(peeked));
}

/// Bytes peeked at most: a largest ClientHello cut into records.
const PEEK_BYTES: usize = MAX_HELLO + 1024;
/// Poll step while the ClientHello is incomplete (a peek cannot wait for
/// *more* bytes than it already saw).
const PEEK_STEP: Duration = Duration::from_millis(5);

/// Runs a tcp frontend's `tcp_request` rules on a new client connection:
/// `connection` rules at once, then (with `inspect-delay`) waits until the
/// first handshake message is complete, is not TLS, the client stops
/// sending, the buffer is full or the delay expires, and evaluates the
/// `content` rules on what arrived. The bytes stay in the socket.
pub async fn inspect(
    client: &TcpStream,
    rules: &TcpRequest,
    acls: &AclSet,
    limit: Duration,
    conn: &mut ConnInfo,
) -> Verdict {
    if TcpRequest::verdict(&rules.connection, acls, conn) == Verdict::Reject {
        return Verdict::Reject;
    }
    if let Some(delay) = rules.inspect_delay {
        let peeked = peek_hello(client, delay.min(limit)).await;
        record_hello(conn, peeked);
    }
    TcpRequest::verdict(&rules.content, acls, conn)
}

/// `tcp_request` rejected the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

/// The tcp-mode hook: runs `frontend`'s `tcp_request` rules on `client`.
/// `Ok(None)`: the frontend has none (nothing inspected, `info` stands);
/// `Ok(Some(info))`: `info` with what the inspection learned.
pub async fn run(
    client: &TcpStream,
    frontend: &crate::proxy::config::Frontend,
    info: &ConnInfo,
) -> Result<Option<ConnInfo>, Rejected> {
    let rules = &frontend.tcp_request;
    if rules == &TcpRequest::default() {
        return Ok(None);
    }
    let mut inspected = info.clone();
    let limit = frontend.timeouts.client;
    match inspect(client, rules, &frontend.acls, limit, &mut inspected).await {
        Verdict::Accept => Ok(Some(inspected)),
        Verdict::Reject => Err(Rejected),
    }
}

async fn peek_hello(client: &TcpStream, limit: Duration) -> Peek {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buffer = vec![0u8; PEEK_BYTES];
    let mut last = Peek::Incomplete;
    let mut seen = usize::MAX;
    loop {
        let Ok(Ok(n)) = tokio::time::timeout_at(deadline, client.peek(&mut buffer)).await else {
            return last;
        };
        if n != seen {
            seen = n;
            last = clienthello::peek(&buffer[..n]);
        }
        if n == 0 || last.is_final() || n == buffer.len() {
            return last;
        }
        if tokio::time::Instant::now() + PEEK_STEP >= deadline {
            return last;
        }
        tokio::time::sleep(PEEK_STEP).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<(TcpRequest, AclSet), String> {
        let mut acls = AclSet::default();
        let mut rules = TcpRequest::default();
        for line in lines {
            rules.add_line(line, &mut acls)?;
        }
        Ok((rules, acls))
    }

    fn conn_with(peeked: Option<Peek>) -> ConnInfo {
        let mut conn = ConnInfo::plain(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.100:443".parse().unwrap(),
        );
        if let Some(peeked) = peeked {
            record_hello(&mut conn, peeked);
        }
        conn
    }

    fn hello(sni: &str) -> Peek {
        Peek::ClientHello(clienthello::ClientHello {
            legacy_version: 0x0303,
            supported_versions: vec![0x0304],
            sni: Some(sni.into()),
            alpn: vec!["h2".into()],
        })
    }

    #[test]
    fn accept_tls_reject_the_rest() {
        let (rules, acls) = parse(&[
            "inspect-delay 5s",
            "content accept if { req_ssl_hello_type 1 }",
            "content reject",
        ])
        .unwrap();
        assert_eq!(rules.inspect_delay, Some(Duration::from_secs(5)));
        let verdict = |c: &ConnInfo| TcpRequest::verdict(&rules.content, &acls, c);
        assert_eq!(
            verdict(&conn_with(Some(hello("a.example")))),
            Verdict::Accept
        );
        assert_eq!(verdict(&conn_with(Some(Peek::NotTls))), Verdict::Reject);
        assert_eq!(verdict(&conn_with(Some(Peek::Incomplete))), Verdict::Reject);
        assert_eq!(verdict(&conn_with(None)), Verdict::Reject);
    }

    #[test]
    fn fetches_of_the_hello() {
        let cases = [
            (
                "content reject if { req.ssl_sni -i A.example }",
                Verdict::Reject,
            ),
            (
                "content reject if { req_ssl_sni -m end .example }",
                Verdict::Reject,
            ),
            (
                "content reject if { req.ssl_sni b.example }",
                Verdict::Accept,
            ),
            ("content reject if { req.ssl_alpn h2 }", Verdict::Reject),
            (
                "content reject if { req.ssl_alpn http/1.1 }",
                Verdict::Accept,
            ),
            (
                "content reject if { req.ssl_ver ge 196612 }",
                Verdict::Reject,
            ),
            (
                "content reject if { req.ssl_ver lt 196612 }",
                Verdict::Accept,
            ),
            (
                "content reject unless { req_ssl_hello_type 1 }",
                Verdict::Accept,
            ),
        ];
        for (line, expected) in cases {
            let (rules, acls) = parse(&[line]).unwrap();
            let conn = conn_with(Some(hello("a.example")));
            assert_eq!(
                TcpRequest::verdict(&rules.content, &acls, &conn),
                expected,
                "{line}"
            );
        }
    }

    #[test]
    fn connection_rules_see_addresses() {
        let (rules, acls) = parse(&["connection reject if { src 198.18.0.0/24 }"]).unwrap();
        assert_eq!(
            TcpRequest::verdict(&rules.connection, &acls, &conn_with(None)),
            Verdict::Reject
        );
        assert!(rules.inspect_delay.is_none());
    }

    #[test]
    fn bad_lines_say_why() {
        let cases = [
            ("inspect-delay", "expected \"inspect-delay <duration>\""),
            ("inspect-delay 0", "greater than 0"),
            ("inspect-delay 2m", "longer than 60s"),
            ("inspect-delay soon", "is not a duration"),
            (
                "content set-var(txn.x) int(1)",
                "unsupported tcp-request content action",
            ),
            ("content", "expected \"content accept|reject"),
            ("session accept", "expected \"inspect-delay <duration>\" or"),
            ("content accept if { nosuch }", "unknown fetch"),
            ("content accept when", "expected \"content accept|reject"),
            ("content accept if", "needs at least one acl"),
        ];
        for (line, needle) in cases {
            let error = parse(&[line]).unwrap_err();
            assert!(error.contains(needle), "{line}: {error}");
        }
        let error = parse(&["inspect-delay 1s", "inspect-delay 2s"]).unwrap_err();
        assert!(error.contains("twice"), "{error}");
    }
}
