//! One access-log record: what the proxy knows about a finished HTTP request
//! or TCP session, in HAProxy's terms (configuration manual §8.2–8.5), so
//! the formatters can print HAProxy's `httplog`, `tcplog` and `clf` lines.
//!
//! The proxy's I/O side fills it; the formatters only read it. Every timer
//! is optional because HAProxy prints `-1` for an event that never happened
//! (no connect after a deny, no response after a client abort, ...).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The proxy mode the record comes from; it picks the default format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordMode {
    Http,
    Tcp,
}

/// HAProxy's timers (§8.4); the optional ones are `None` when the event was
/// not reached, which HAProxy prints as `-1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    /// `Th`: accept to end of the handshake (TLS; zero for plain TCP).
    pub handshake: Option<Duration>,
    /// `Ti`: idle time before the first byte of this request (keep-alive).
    pub idle: Option<Duration>,
    /// `TR`: first byte of the request to its complete headers.
    pub request: Option<Duration>,
    /// `Tw`: time spent waiting in queues for a connection slot.
    pub queue: Option<Duration>,
    /// `Tc`: time to establish the TCP connection to the server (with retries).
    pub connect: Option<Duration>,
    /// `Tr`: server response time: request sent to complete response headers.
    pub response: Option<Duration>,
    /// `Ta`: request active time, from the request's first byte (after `Th`
    /// and `Ti`) to the last byte of the response. Always known.
    pub active: Duration,
    /// `Tt`: total session time, accept to close (tcplog's last timer).
    /// Always known.
    pub total: Duration,
}

/// First character of HAProxy's termination state: why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminationCause {
    /// `-`: normal end, both sides finished.
    #[default]
    Normal,
    /// `C`: the client aborted (closed or reset).
    ClientAbort,
    /// `S`: the server aborted, refused, or sent an invalid response.
    ServerAbort,
    /// `P`: the proxy aborted (deny rule, invalid request, internal check).
    ProxyAbort,
    /// `L`: the proxy answered locally without a server (redirect, 400 ...).
    LocalResponse,
    /// `R`: a resource ran out (memory, sockets, ports).
    Resource,
    /// `I`: an internal error.
    Internal,
    /// `D`: the session was killed because the server went down.
    ServerDown,
    /// `U`: killed because a backup server came up (non-backups returned).
    ServerUp,
    /// `K`: killed by an administrator.
    Killed,
    /// `c`: the client-side timeout expired.
    ClientTimeout,
    /// `s`: the server-side timeout expired.
    ServerTimeout,
}

impl TerminationCause {
    pub fn as_char(self) -> char {
        match self {
            TerminationCause::Normal => '-',
            TerminationCause::ClientAbort => 'C',
            TerminationCause::ServerAbort => 'S',
            TerminationCause::ProxyAbort => 'P',
            TerminationCause::LocalResponse => 'L',
            TerminationCause::Resource => 'R',
            TerminationCause::Internal => 'I',
            TerminationCause::ServerDown => 'D',
            TerminationCause::ServerUp => 'U',
            TerminationCause::Killed => 'K',
            TerminationCause::ClientTimeout => 'c',
            TerminationCause::ServerTimeout => 's',
        }
    }

    /// The cause a log line's character stands for (reading HAProxy logs).
    pub fn from_char(c: char) -> Option<Self> {
        use TerminationCause::*;
        [
            Normal,
            ClientAbort,
            ServerAbort,
            ProxyAbort,
            LocalResponse,
            Resource,
            Internal,
            ServerDown,
            ServerUp,
            Killed,
            ClientTimeout,
            ServerTimeout,
        ]
        .into_iter()
        .find(|cause| cause.as_char() == c)
    }
}

/// Second character: where the session was when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionPhase {
    /// `-`: normal end after the last byte.
    #[default]
    Closed,
    /// `R`: waiting for a complete request from the client.
    Request,
    /// `Q`: waiting in a queue for a server slot.
    Queue,
    /// `C`: waiting for the connection to the server.
    Connect,
    /// `H`: waiting for complete response headers from the server.
    Headers,
    /// `D`: transferring data.
    Data,
    /// `L`: sending the last data to the client after the server closed.
    Last,
    /// `T`: tarpitted.
    Tarpit,
}

impl SessionPhase {
    pub fn as_char(self) -> char {
        match self {
            SessionPhase::Closed => '-',
            SessionPhase::Request => 'R',
            SessionPhase::Queue => 'Q',
            SessionPhase::Connect => 'C',
            SessionPhase::Headers => 'H',
            SessionPhase::Data => 'D',
            SessionPhase::Last => 'L',
            SessionPhase::Tarpit => 'T',
        }
    }

    pub fn from_char(c: char) -> Option<Self> {
        use SessionPhase::*;
        [Closed, Request, Queue, Connect, Headers, Data, Last, Tarpit]
            .into_iter()
            .find(|phase| phase.as_char() == c)
    }
}

/// HAProxy's session state at disconnection (§8.5). `tcplog` prints the
/// first two characters (`%ts`), `httplog` all four (`%tsc`); the last two
/// describe persistence cookies, which lbd does not implement yet, so they
/// are always `--`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerminationState {
    pub cause: TerminationCause,
    pub phase: SessionPhase,
}

impl TerminationState {
    /// Reads the first two characters of `%ts` / `%tsc` (`CD`, `sH--`, ...).
    pub fn parse(text: &str) -> Option<Self> {
        let mut chars = text.chars();
        let cause = TerminationCause::from_char(chars.next()?)?;
        let phase = SessionPhase::from_char(chars.next()?)?;
        Some(TerminationState { cause, phase })
    }

    pub const NORMAL: TerminationState = TerminationState {
        cause: TerminationCause::Normal,
        phase: SessionPhase::Closed,
    };

    pub fn new(cause: TerminationCause, phase: SessionPhase) -> Self {
        TerminationState { cause, phase }
    }

    /// `%ts`: e.g. `--`, `CD`, `sH`.
    pub fn short(self) -> String {
        [self.cause.as_char(), self.phase.as_char()]
            .iter()
            .collect()
    }

    /// `%tsc`: e.g. `----`, `CD--`, `sH--`.
    pub fn with_cookies(self) -> String {
        [self.cause.as_char(), self.phase.as_char(), '-', '-']
            .iter()
            .collect()
    }
}

/// Connection counts at the time of logging (`%ac/%fc/%bc/%sc`), and queue
/// lengths when the request got its slot (`%sq/%bq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Concurrency {
    /// `actconn`: connections in the whole process.
    pub process: u32,
    /// `feconn`: connections on the frontend.
    pub frontend: u32,
    /// `beconn`: connections handled by the backend.
    pub backend: u32,
    /// `srv_conn`: connections on the server.
    pub server: u32,
    /// `srv_queue`: requests queued on the server ahead of this one.
    pub server_queue: u32,
    /// `backend_queue`: requests queued on the backend ahead of this one.
    pub backend_queue: u32,
}

/// One finished request (http mode) or session (tcp mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub mode: RecordMode,
    /// `%ci:%cp`.
    pub client: SocketAddr,
    /// `%fi:%fp`: the address the client connected to.
    pub frontend_addr: SocketAddr,
    /// `%t`: when the connection was accepted.
    pub accept_date: SystemTime,
    /// `%tr`: when this request's first byte arrived (= accept date plus
    /// `Th` + `Ti`); the accept date in tcp mode.
    pub request_date: SystemTime,
    /// `%ft` (without the `~`, which `frontend_tls` adds).
    pub frontend: Arc<str>,
    /// The frontend side was TLS: HAProxy marks it `name~`.
    pub frontend_tls: bool,
    /// `%b`: `None` when the request never reached a backend (denied,
    /// redirected, invalid); HAProxy then prints the frontend's name.
    pub backend: Option<Arc<str>>,
    /// `%s`: `None` prints `<NOSRV>`.
    pub server: Option<Arc<str>>,
    pub timers: Timers,
    /// `%ST`: status sent to the client; `None` prints `-1` (no response).
    pub status: Option<u16>,
    /// `%B`: bytes sent to the client (HAProxy's "bytes_read", from the server).
    pub bytes_to_client: u64,
    /// `%U`: bytes received from the client.
    pub bytes_from_client: u64,
    pub termination: TerminationState,
    pub concurrency: Concurrency,
    /// `%rc`: connection retries.
    pub retries: u32,
    /// A retry went to another server (`option redispatch`): HAProxy
    /// prefixes the retries count with `+`.
    pub redispatched: bool,
    /// `%r`: the request line as received, e.g. `GET /index.html HTTP/1.1`;
    /// `None` when no complete request line arrived (`<BADREQ>`).
    pub request_line: Option<String>,
    /// `%hr` / `%hs`: captured header values (`capture request header`);
    /// empty when nothing is captured, and then not printed at all.
    pub captured_request_headers: Vec<String>,
    pub captured_response_headers: Vec<String>,
    /// The connection failed before any request (a TLS handshake): logged
    /// in HAProxy's error format instead (§8.2.6).
    pub connection_error: Option<ConnectionError>,
}

/// HAProxy's error log line: `%ci:%cp [%t] %ft/<bind>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionError {
    /// The bind's name: HAProxy numbers a frontend's binds from 1.
    pub bind: Arc<str>,
    /// HAProxy's wording, e.g. `SSL handshake failure`.
    pub message: &'static str,
}

impl AccessRecord {
    /// A record with every field at its "nothing happened yet" value, for the
    /// I/O side to fill in as the request progresses.
    pub fn new(
        mode: RecordMode,
        client: SocketAddr,
        frontend_addr: SocketAddr,
        frontend: Arc<str>,
        accept_date: SystemTime,
    ) -> Self {
        AccessRecord {
            mode,
            client,
            frontend_addr,
            accept_date,
            request_date: accept_date,
            frontend,
            frontend_tls: false,
            backend: None,
            server: None,
            timers: Timers::default(),
            status: None,
            bytes_to_client: 0,
            bytes_from_client: 0,
            termination: TerminationState::NORMAL,
            concurrency: Concurrency::default(),
            retries: 0,
            redispatched: false,
            request_line: None,
            captured_request_headers: Vec::new(),
            captured_response_headers: Vec::new(),
            connection_error: None,
        }
    }

    /// HAProxy's `option dontlognull` skips a connection on which the client
    /// sent nothing (its `req.total == 0`): port scans, health probes of an
    /// upstream load balancer, pre-connects that were never used.
    pub fn is_null(&self) -> bool {
        self.bytes_from_client == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termination_states_print_and_parse_back() {
        for cause in "-CSPLRIDUKcs".chars() {
            for phase in "-RQCHDLT".chars() {
                let text: String = [cause, phase, '-', '-'].iter().collect();
                let state = TerminationState::parse(&text).expect("known state");
                assert_eq!(state.with_cookies(), text);
                assert_eq!(state.short(), text[..2]);
            }
        }
        assert_eq!(TerminationState::parse("X-"), None);
        assert_eq!(TerminationState::parse("-"), None);
    }
}

/// The bytes HTTP/1.1 would write for a response's head: the status line,
/// each header as `name: value` and CRLFs. An HTTP/2 stream's `%B` is this
/// plus its body, so the same response logs the same count over either
/// protocol (HAProxy also counts its protocol-neutral form of the head;
/// HTTP/1.1 chunk framing is the one difference left).
pub fn http1_head_len(head: &hyper::http::response::Parts) -> u64 {
    let reason = head.status.canonical_reason().unwrap_or("");
    // "HTTP/1.1 200 OK\r\n"
    let status_line = "HTTP/1.1 ".len() + 3 + 1 + reason.len() + 2;
    let headers: usize = head
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (status_line + headers + 2) as u64
}

#[cfg(test)]
mod head_tests {
    #[test]
    fn an_http1_head_is_counted_as_written() {
        let (head, ()) = hyper::http::Response::builder()
            .status(200)
            .header("content-length", "6")
            .header("x-backend", "web1")
            .body(())
            .unwrap()
            .into_parts();
        let written = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nx-backend: web1\r\n\r\n";
        assert_eq!(super::http1_head_len(&head), written.len() as u64);
    }
}
