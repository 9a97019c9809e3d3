//! The logging driver: syslog targets (UDP `host:port`, unix datagram such as
//! `/dev/log`), each served by its own thread behind a bounded queue.
//!
//! Callers (proxy workers, the health engine, VRRP) only format a line and
//! `try_send` it: a full queue drops the line and counts it, a dead or absent
//! syslog daemon counts a send error; neither ever blocks the caller. This is
//! HAProxy's behaviour too (it drops and counts in `dropped_logs`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::format::{format_record, AccessFormat, Zone};
use super::record::AccessRecord;
use super::syslog::{frame, Facility, Framing, Origin, Severity, DEFAULT_MAX_LEN};

/// Lines waiting per target before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;

/// How long one datagram may wait for room in a unix receiver's queue.
const UNIX_SEND_TIMEOUT: Duration = Duration::from_millis(200);

/// Where a target's datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAddr {
    /// `127.0.0.1`, `127.0.0.1:514`, `[::1]:514` (UDP, default port 514).
    Udp(SocketAddr),
    /// An absolute path to a unix datagram socket, e.g. `/dev/log`.
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log target {0:?}: expected IP[:PORT] (UDP, default port 514, IPv6 in brackets with a port) or an absolute unix socket path such as /dev/log")]
pub struct InvalidTarget(pub String);

impl FromStr for TargetAddr {
    type Err = InvalidTarget;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('/') {
            return Ok(TargetAddr::Unix(PathBuf::from(s)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(TargetAddr::Udp(addr));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(TargetAddr::Udp(SocketAddr::new(ip, 514)));
        }
        Err(InvalidTarget(s.to_string()))
    }
}

impl std::fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetAddr::Udp(addr) => write!(f, "{addr}"),
            TargetAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One `log` line of the configuration (`log 127.0.0.1 local2 info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub addr: TargetAddr,
    pub facility: Facility,
    pub framing: Framing,
    /// Least severe level sent to this target.
    pub level: Severity,
    /// HAProxy's `minlevel`: more severe lines are sent at this level.
    pub min_level: Option<Severity>,
    /// Longest datagram, header included (HAProxy's `len`, default 1024).
    pub max_len: usize,
}

impl TargetConfig {
    /// A target with lbd's defaults: facility local0, RFC 3164 over UDP and
    /// `local` framing on unix sockets, every level, 1024-byte datagrams.
    pub fn new(addr: TargetAddr) -> Self {
        let framing = Framing::default_for_unix_socket(matches!(addr, TargetAddr::Unix(_)));
        TargetConfig {
            addr,
            facility: Facility::LOCAL0,
            framing,
            level: Severity::Debug,
            min_level: None,
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// What one target has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStats {
    pub target: String,
    pub sent: u64,
    /// Lines dropped because the queue was full.
    pub dropped: u64,
    /// Datagrams the kernel refused (no syslog daemon on the path, ...).
    pub send_errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("log target {target}: cannot start its sender thread: {source}")]
    Thread {
        target: String,
        source: std::io::Error,
    },
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    send_errors: AtomicU64,
    /// Lines accepted but not yet handed to the kernel (for `flush`).
    pending: AtomicU64,
}

struct Line {
    severity: Severity,
    time: SystemTime,
    message: Arc<str>,
}

#[derive(Clone)]
struct Target {
    config: TargetConfig,
    queue: SyncSender<Line>,
    counters: Arc<Counters>,
}

/// A set of syslog targets; cheap to clone, shared by every worker. Dropping
/// the last clone ends the sender threads once their queues are empty.
#[derive(Clone, Default)]
pub struct Logger {
    targets: Arc<Vec<Target>>,
}

impl Logger {
    /// No target: every call is a no-op (the configuration has no `log`).
    pub fn disabled() -> Self {
        Logger::default()
    }

    /// Starts one sender thread per target.
    pub fn start(configs: &[TargetConfig], origin: Origin, zone: Zone) -> Result<Self, SinkError> {
        let origin = Arc::new(origin);
        let mut targets = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let (queue, lines) = mpsc::sync_channel(QUEUE_CAPACITY);
            let counters = Arc::new(Counters::default());
            let thread = SenderThread {
                config: config.clone(),
                origin: Arc::clone(&origin),
                zone,
                counters: Arc::clone(&counters),
            };
            std::thread::Builder::new()
                .name(format!("lbd-log-{index}"))
                .spawn(move || thread.run(lines))
                .map_err(|source| SinkError::Thread {
                    target: config.addr.to_string(),
                    source,
                })?;
            targets.push(Target {
                config: config.clone(),
                queue,
                counters,
            });
        }
        Ok(Logger {
            targets: Arc::new(targets),
        })
    }

    pub fn is_enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    /// A logger sending to the targets of `self` and of `other` (a
    /// section's `log global` plus its own `log` lines); the sender threads
    /// and counters are shared, not duplicated.
    pub fn join(&self, other: &Logger) -> Logger {
        Logger {
            targets: Arc::new(
                self.targets
                    .iter()
                    .chain(other.targets.iter())
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// Sends `message` at `severity` to every target whose level admits it.
    pub fn emit(&self, severity: Severity, message: &str) {
        let wanted = |t: &&Target| severity.passes(t.config.level);
        if !self.targets.iter().any(|t| wanted(&t)) {
            return;
        }
        let message: Arc<str> = Arc::from(message);
        let time = SystemTime::now();
        for target in self.targets.iter().filter(wanted) {
            let line = Line {
                severity,
                time,
                message: Arc::clone(&message),
            };
            target.counters.pending.fetch_add(1, Ordering::Relaxed);
            match target.queue.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    target.counters.pending.fetch_sub(1, Ordering::Relaxed);
                    target.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Logs one access record at `info` (HAProxy's level for traffic logs)
    /// unless `dontlognull` applies. Returns whether a line was emitted.
    pub fn access(
        &self,
        record: &AccessRecord,
        format: AccessFormat,
        zone: Zone,
        dontlognull: bool,
    ) -> bool {
        if dontlognull && record.is_null() {
            return false;
        }
        if !self
            .targets
            .iter()
            .any(|t| Severity::Info.passes(t.config.level))
        {
            return false;
        }
        self.emit(Severity::Info, &format_record(record, format, zone));
        true
    }

    pub fn stats(&self) -> Vec<TargetStats> {
        self.targets
            .iter()
            .map(|t| TargetStats {
                target: t.config.addr.to_string(),
                sent: t.counters.sent.load(Ordering::Relaxed),
                dropped: t.counters.dropped.load(Ordering::Relaxed),
                send_errors: t.counters.send_errors.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Waits until every accepted line has been handed to the kernel, at
    /// most `timeout`; returns whether the queues drained (for shutdown and
    /// tests).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let idle = self
                .targets
                .iter()
                .all(|t| t.counters.pending.load(Ordering::Relaxed) == 0);
            if idle {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

enum Socket {
    Udp(UdpSocket, SocketAddr),
    Unix(UnixDatagram, PathBuf),
}

impl Socket {
    fn open(addr: &TargetAddr) -> std::io::Result<Socket> {
        match addr {
            TargetAddr::Udp(dest) => {
                let any: IpAddr = if dest.is_ipv4() {
                    Ipv4Addr::UNSPECIFIED.into()
                } else {
                    Ipv6Addr::UNSPECIFIED.into()
                };
                Ok(Socket::Udp(UdpSocket::bind((any, 0))?, *dest))
            }
            // Unbound and addressed per datagram, so a restarted syslog
            // daemon that re-created its socket is found again.
            // A receiver that stops reading fills its queue; the timeout turns
            // that into counted send errors instead of a thread stuck forever.
            TargetAddr::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_write_timeout(Some(UNIX_SEND_TIMEOUT))?;
                Ok(Socket::Unix(socket, path.clone()))
            }
        }
    }

    fn send(&self, datagram: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Udp(socket, dest) => socket.send_to(datagram, dest),
            Socket::Unix(socket, path) => socket.send_to(datagram, path),
        }
    }
}

struct SenderThread {
    config: TargetConfig,
    origin: Arc<Origin>,
    zone: Zone,
    counters: Arc<Counters>,
}

impl SenderThread {
    fn run(self, lines: Receiver<Line>) {
        let mut socket = None;
        for line in lines {
            if socket.is_none() {
                socket = Socket::open(&self.config.addr).ok();
            }
            let datagram = frame(
                self.config.framing,
                self.config.facility,
                self.config
                    .min_level
                    .map_or(line.severity, |floor| line.severity.capped_at(floor)),
                line.time,
                self.zone,
                &self.origin,
                &line.message,
                self.config.max_len,
            );
            let sent = socket.as_ref().map(|s| s.send(&datagram));
            match sent {
                Some(Ok(_)) => self.counters.sent.fetch_add(1, Ordering::Relaxed),
                _ => self.counters.send_errors.fetch_add(1, Ordering::Relaxed),
            };
            self.counters.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
