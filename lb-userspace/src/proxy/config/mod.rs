//! The proxy half of lb.toml (`[global]`, `[defaults]`, `[[frontend]]`,
//! `[[backend]]`, `[[listen]]`): HAProxy's sections one to one. `raw` holds
//! the TOML shapes, `validate` turns them into the types below, which
//! cannot be invalid: every backend a rule names exists, every regex and
//! CIDR is compiled, every mode matches.
mod options;
mod raw;
mod sections;
mod servers;
mod sides;
mod timeouts;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod gaps_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod whole_file_tests;

pub use raw::{
    RawDefaults, RawDuration, RawFrontend, RawGlobal, RawProxy, RawSection, RawServer,
    RawServerDefaults,
};
pub use sections::{validate, validate_beside, L4Service};
pub use timeouts::parse_duration;

use crate::proxy::acl::AclSet;
use crate::proxy::balance::Balance;
use crate::proxy::rules::{RequestRule, ResponseRule, UseBackend};
use ipnet::IpNet;
use std::{net::SocketAddr, ops::Range, path::PathBuf, time::Duration};

/// Where validation reports problems: a byte span of the file, the field's
/// dotted name and a message. The top-level config's `Validator` turns the
/// span into `FILE:LINE`.
pub trait ErrorSink {
    fn report(&mut self, span: Range<usize>, field: &str, message: String);
    /// The file being validated: relative `-f` pattern files are read
    /// beside it.
    fn config_file(&self) -> Option<&std::path::Path> {
        None
    }
}

/// The validated proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyConfig {
    pub global: Global,
    /// Frontends and `listen` sections, in file order (`[[frontend]]`
    /// first, then `[[listen]]`).
    pub frontends: Vec<Frontend>,
    /// Backends and `listen` sections; `FrontendId`/`BackendId` index these.
    pub backends: Vec<Backend>,
}

impl ProxyConfig {
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty() && self.backends.is_empty()
    }
    pub fn backend_by_name(&self, name: &str) -> Option<BackendId> {
        self.backends.iter().position(|b| b.name == name)
    }
}

/// Index into [`ProxyConfig::backends`] (and the snapshot's backends).
pub type BackendId = usize;
/// Index into a backend's servers.
pub type ServerId = usize;

/// HAProxy's `global` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Process-wide limit on proxied client connections (`maxconn`).
    pub maxconn: u32,
    /// `log` targets used by sections with `log = true` (`log global`).
    pub log: Vec<LogTarget>,
    /// `ssl_default_bind_options` (HAProxy's `ssl-default-bind-options`):
    /// what every `ssl` bind takes unless it says otherwise.
    pub ssl_default_bind: crate::proxy::tls::options::BindOptions,
    /// `crt_base` and `ca_base` (HAProxy's `crt-base`, `ca-base`).
    pub tls_paths: crate::proxy::tls::PathBases,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            maxconn: DEFAULT_GLOBAL_MAXCONN,
            log: Vec::new(),
            ssl_default_bind: Default::default(),
            tls_paths: Default::default(),
        }
    }
}

/// `global maxconn` when unset (HAProxy derives it from the file-descriptor
/// limit; lbd raises that limit to fit this).
pub const DEFAULT_GLOBAL_MAXCONN: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub address: LogAddress,
    /// Syslog facility code 0..=23 (`local2` = 18).
    pub facility: u8,
    pub format: SyslogFormat,
    /// Most verbose severity sent, 0 (emerg) ..= 7 (debug).
    pub level: u8,
    /// Longest datagram, header included (HAProxy's `len`, 80..=65535).
    pub max_len: usize,
    /// HAProxy's `minlevel`: more severe lines are sent at this level.
    pub min_level: Option<u8>,
}

/// HAProxy's default `len` of a log target.
pub const DEFAULT_LOG_LEN: usize = 1024;

/// Where a section's log lines go: `log global` and/or the section's own
/// `log <target> <facility> [level]` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogDestinations {
    /// `log global`: the `[global]` targets.
    pub global: bool,
    /// The section's own targets.
    pub targets: Vec<LogTarget>,
}

impl LogDestinations {
    pub fn is_empty(&self) -> bool {
        !self.global && self.targets.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAddress {
    Udp(SocketAddr),
    /// A unix datagram socket such as `/dev/log`.
    Unix(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc3164,
    Rfc5424,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Http,
    Tcp,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `option httplog`.
    Http,
    /// `option tcplog`.
    Tcp,
    /// `option httplog clf`.
    Clf,
    Json,
}

/// What a section logs; `None` on a section = `no log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `option dontlognull`: connections that sent nothing are not logged.
    pub dontlognull: bool,
}

/// HAProxy's HTTP connection modes; when a frontend and its backend differ,
/// the stronger one (`httpclose` > `http-server-close` > `keep-alive`) wins,
/// see [`HttpConnectionMode::combine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HttpConnectionMode {
    KeepAlive,
    /// Keep-alive with the client, close the server connection after each
    /// response.
    ServerClose,
    /// Close both sides after each response.
    Close,
}

impl HttpConnectionMode {
    pub fn combine(self, other: HttpConnectionMode) -> HttpConnectionMode {
        self.max(other)
    }
}

/// `option forwardfor [except CIDR] [header NAME] [if-none]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardFor {
    /// Header name, default `X-Forwarded-For`.
    pub header: String,
    /// Clients in these networks get no header added.
    pub except: Vec<IpNet>,
    /// `if-none`: a request that already carries the header keeps it as it
    /// is (a trusted proxy in front of lbd set it); lbd adds none.
    pub if_none: bool,
}

impl ForwardFor {
    pub fn applies_to(&self, client: std::net::IpAddr) -> bool {
        !self.except.iter().any(|net| net.contains(&client))
    }

    /// Whether lbd adds its header line to a request with these headers.
    pub fn adds_to(&self, headers: &hyper::http::HeaderMap) -> bool {
        !(self.if_none && headers.contains_key(self.header.as_str()))
    }
}

/// Timeouts of the client side (HAProxy applies these from the frontend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendTimeouts {
    /// Inactivity on the client side (`timeout client`).
    pub client: Duration,
    /// Time to receive a complete request head (`timeout http-request`);
    /// HAProxy: `timeout client` when unset.
    pub http_request: Duration,
    /// Idle time between requests on a kept-alive client connection
    /// (`timeout http-keep-alive`); HAProxy: `timeout http-request` when unset.
    pub http_keep_alive: Duration,
}

/// Timeouts of the server side (HAProxy applies these from the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendTimeouts {
    pub connect: Duration,
    /// Inactivity on the server side (`timeout server`).
    pub server: Duration,
    /// Longest wait for a free server slot; HAProxy: `timeout connect` when unset.
    pub queue: Duration,
    /// Inactivity of a tunnel (WebSocket, CONNECT, tcp relay), both sides.
    /// `None`: the client and server timeouts apply on their sides.
    pub tunnel: Option<Duration>,
    /// Extra read time for a health check after connecting (`timeout
    /// check`); `None`: the server's `inter` bounds the whole check.
    pub check: Option<Duration>,
}

/// One `bind` address. `":80"` and `"*:80"` bind every IPv4 address, as in
/// HAProxy; `"[::]:80"` binds IPv6 (and v4-mapped) addresses. HAProxy's
/// TLS options follow the address (`":443 ssl crt site.pem"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bind {
    pub address: SocketAddr,
    /// `ssl crt ...`: TLS terminated here, certificates loaded.
    pub tls: Option<std::sync::Arc<crate::proxy::tls::server::TlsBind>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub name: String,
    pub binds: Vec<Bind>,
    pub mode: Mode,
    /// Concurrent client connections accepted by this frontend.
    pub maxconn: u32,
    pub timeouts: FrontendTimeouts,
    /// `None`: nothing logged (neither `log global` nor own targets).
    pub log: Option<LogSettings>,
    /// Where its access log goes.
    pub log_to: LogDestinations,
    pub http_connection_mode: HttpConnectionMode,
    pub forwardfor: Option<ForwardFor>,
    /// `option forwarded` (RFC 7239).
    pub forwarded: bool,
    pub acls: AclSet,
    pub http_request: Vec<RequestRule>,
    pub use_backend: Vec<UseBackend>,
    pub default_backend: Option<BackendId>,
    pub http_response: Vec<ResponseRule>,
    /// `tcp_request` lines (HAProxy `tcp-request`), tcp mode only.
    pub tcp_request: crate::proxy::tls::passthrough::TcpRequest,
    /// True for a `[[listen]]` section (its backend has the same name).
    pub from_listen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub mode: Mode,
    pub balance: Balance,
    pub servers: Vec<Server>,
    /// `option allbackups`: when every primary is down, balance over all
    /// usable backups instead of only the first.
    pub allbackups: bool,
    /// Connection attempts after the first failed one (`retries`).
    pub retries: u32,
    /// `option redispatch`: a retry may go to another server.
    pub redispatch: bool,
    /// `option redispatch <interval>` (with `redispatch`): -1 (the
    /// default) redispatches on the last retry, P > 0 on every Pth retry,
    /// N < 0 on the (-N)th retry before the last. 0 turns redispatch off.
    pub redispatch_after: i32,
    pub timeouts: BackendTimeouts,
    pub health: HealthSettings,
    pub http_connection_mode: HttpConnectionMode,
    pub forwardfor: Option<ForwardFor>,
    pub forwarded: bool,
    /// `None`: no `log` line. Used by `listen` sections and for server
    /// events.
    pub log: Option<LogSettings>,
    /// Where its server events go (the `[global]` targets when empty).
    pub log_to: LogDestinations,
    pub acls: AclSet,
    pub http_request: Vec<RequestRule>,
    pub http_response: Vec<ResponseRule>,
    pub from_listen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub address: SocketAddr,
    /// 0..=256 (HAProxy's range), default 1.
    pub weight: u32,
    pub check: bool,
    /// Interval between checks (`inter`), default 2s.
    pub inter: Duration,
    /// Consecutive successes to go up (`rise`), default 2.
    pub rise: u32,
    /// Consecutive failures to go down (`fall`), default 3.
    pub fall: u32,
    pub backup: bool,
    /// 0 = unlimited; above it requests queue.
    pub maxconn: u32,
    /// Starts in maintenance (`disabled`).
    pub disabled: bool,
    /// TLS to the server (`ssl`) and/or its checks (`check_ssl`).
    pub tls: Option<std::sync::Arc<crate::proxy::tls::client::ServerTls>>,
}

/// How a backend's servers with `check` are checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthSettings {
    /// `option httpchk`; `None` with `tcp_check` or without: a TCP connect.
    pub httpchk: Option<HttpCheckRequest>,
    /// `http-check expect`; default: any 2xx or 3xx status (HAProxy).
    pub expect: Option<HttpCheckExpect>,
    /// `option tcp-check` (connect only, as lbd has no tcp-check rules).
    pub tcp_check: bool,
}

/// `option httpchk [METHOD] [URI] [VERSION[\r\nHeaders]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckRequest {
    pub method: String,
    pub uri: String,
    /// "HTTP/1.0" (HAProxy's default) or "HTTP/1.1".
    pub version: String,
    /// Headers appended after the version line (e.g. `Host: localhost`).
    pub headers: Vec<(String, String)>,
}

/// `http-check expect [!] status|rstatus|string|rstring <pattern>`.
#[derive(Debug, Clone)]
pub struct HttpCheckExpect {
    pub negate: bool,
    pub matcher: ExpectMatcher,
    /// The directive as written, for comparisons and display.
    pub source: String,
}

impl PartialEq for HttpCheckExpect {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for HttpCheckExpect {}

#[derive(Debug, Clone)]
pub enum ExpectMatcher {
    /// `status 200` or `status 200-399` (HAProxy 2.2+ ranges/lists).
    Status(Vec<(u16, u16)>),
    RStatus(regex::Regex),
    String(String),
    RString(regex::Regex),
}

impl HttpCheckExpect {
    /// Whether judging needs the body (string matches) or only the status.
    pub fn needs_body(&self) -> bool {
        matches!(
            self.matcher,
            ExpectMatcher::String(_) | ExpectMatcher::RString(_)
        )
    }

    /// Whether a check response passes.
    pub fn accepts(&self, status: u16, body: &[u8]) -> bool {
        let matched = match &self.matcher {
            ExpectMatcher::Status(ranges) => ranges.iter().any(|&(l, h)| (l..=h).contains(&status)),
            ExpectMatcher::RStatus(re) => re.is_match(&status.to_string()),
            ExpectMatcher::String(s) => {
                !s.is_empty() && body.windows(s.len()).any(|w| w == s.as_bytes())
            }
            ExpectMatcher::RString(re) => re.is_match(&String::from_utf8_lossy(body)),
        };
        matched != self.negate
    }
}

/// A check response passes without `http-check expect` when its status is
/// 2xx or 3xx (HAProxy).
pub fn default_check_status_ok(status: u16) -> bool {
    (200..400).contains(&status)
}

/// Collects errors as `FILE:LINE: field: message` for `validate` when the
/// proxy sections are checked on their own (tests, tools).
pub struct Collector<'a> {
    pub text: &'a str,
    pub file: PathBuf,
    pub errors: Vec<String>,
}

impl ErrorSink for Collector<'_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        let end = span.start.min(self.text.len());
        let line = self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        self.errors.push(format!(
            "{}:{line}: {field}: {message}",
            self.file.display()
        ));
    }
    fn config_file(&self) -> Option<&std::path::Path> {
        Some(&self.file)
    }
}

/// Parses and validates a file that holds only proxy sections.
pub fn parse_str(text: &str, file: &std::path::Path) -> Result<ProxyConfig, Vec<String>> {
    let mut sink = Collector {
        text,
        file: file.to_owned(),
        errors: Vec::new(),
    };
    let raw: RawProxy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            sink.report(span, "syntax", e.message().to_owned());
            return Err(sink.errors);
        }
    };
    let config = validate(raw, &mut sink);
    if sink.errors.is_empty() {
        Ok(config)
    } else {
        Err(sink.errors)
    }
}
