//! Daemon events in HAProxy's wording, with HAProxy's levels, so rules
//! written for HAProxy (`local2.notice /var/log/haproxy-info.log`) file them
//! the same way:
//!
//! - `Server app/web1 is DOWN, reason: Layer4 connection problem, info:
//!   "Connection refused", check duration: 0ms. 2 active and 0 backup servers
//!   left. 0 sessions active, 0 requeued, 0 remaining in queue.` at `alert`
//! - `Server app/web1 is UP, reason: Layer7 check passed, code: 200, check
//!   duration: 1ms. 3 active and 0 backup servers online. 0 sessions
//!   requeued, 0 total in queue.` at `notice`
//! - `backend app has no server available!` at `emerg`
//! - `(VI_1) Entering MASTER STATE` (keepalived's wording) at `notice`
//!
//! All of them are at `notice` or more severe.
use std::fmt::Write as _;
use std::time::Duration;

use super::syslog::Severity;

/// HAProxy's health-check result classes, with the descriptions its logs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    SocketError,
    Layer4Ok,
    Layer4Timeout,
    Layer4Connection,
    Layer6Ok,
    Layer6Timeout,
    Layer6InvalidResponse,
    Layer7Timeout,
    Layer7InvalidResponse,
    Layer7Ok,
    Layer7WrongStatus,
}

impl CheckStatus {
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::SocketError => "Socket error",
            CheckStatus::Layer4Ok => "Layer4 check passed",
            CheckStatus::Layer4Timeout => "Layer4 timeout",
            CheckStatus::Layer4Connection => "Layer4 connection problem",
            CheckStatus::Layer6Ok => "Layer6 check passed",
            CheckStatus::Layer6Timeout => "Layer6 timeout",
            CheckStatus::Layer6InvalidResponse => "Layer6 invalid response",
            CheckStatus::Layer7Timeout => "Layer7 timeout",
            CheckStatus::Layer7InvalidResponse => "Layer7 invalid response",
            CheckStatus::Layer7Ok => "Layer7 check passed",
            CheckStatus::Layer7WrongStatus => "Layer7 wrong status",
        }
    }

    /// HAProxy adds the HTTP code only for results that carry layer-7 data.
    fn carries_code(self) -> bool {
        matches!(self, CheckStatus::Layer7Ok | CheckStatus::Layer7WrongStatus)
    }
}

/// The check that caused a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub status: CheckStatus,
    /// HTTP status of an httpchk response.
    pub code: Option<u16>,
    /// Free text: "Connection refused", "HTTP status check returned code <503>".
    pub info: Option<String>,
    pub duration: Option<Duration>,
}

/// A server changed state (`Server <backend>/<server> is UP|DOWN ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransition {
    pub backend: String,
    pub server: String,
    pub backup: bool,
    pub up: bool,
    /// The check that decided it; `None` for an administrative change.
    pub check: Option<CheckOutcome>,
    /// Usable non-backup / backup servers in the backend after the change.
    pub active_servers: u32,
    pub backup_servers: u32,
    /// Connections still on the server (DOWN only).
    pub sessions_active: u32,
    /// Queued requests moved to other servers.
    pub requeued: u32,
    /// Requests still waiting in the server's queue.
    pub queued: u32,
}

impl ServerTransition {
    /// HAProxy logs a server going DOWN as an alert, coming UP as a notice.
    pub fn severity(&self) -> Severity {
        if self.up {
            Severity::Notice
        } else {
            Severity::Alert
        }
    }

    pub fn message(&self) -> String {
        let mut m = format!(
            "{}Server {}/{} is {}",
            if self.backup { "Backup " } else { "" },
            self.backend,
            self.server,
            if self.up { "UP" } else { "DOWN" }
        );
        if let Some(check) = &self.check {
            let _ = write!(m, ", reason: {}", check.status.description());
            if let (true, Some(code)) = (check.status.carries_code(), check.code) {
                let _ = write!(m, ", code: {code}");
            }
            if let Some(info) = check.info.as_deref().filter(|i| !i.is_empty()) {
                let _ = write!(m, ", info: \"{}\"", ascii_encode(info));
            }
            if let Some(duration) = check.duration {
                let _ = write!(m, ", check duration: {}ms", duration.as_millis());
            }
        }
        let on_backup = if self.backup_servers > 0 && self.active_servers == 0 {
            " Running on backup."
        } else {
            ""
        };
        if self.up {
            let _ = write!(
                m,
                ". {} active and {} backup servers online.{on_backup} {} sessions requeued, {} total in queue.",
                self.active_servers, self.backup_servers, self.requeued, self.queued
            );
        } else {
            let _ = write!(
                m,
                ". {} active and {} backup servers left.{on_backup} {} sessions active, {} requeued, {} remaining in queue.",
                self.active_servers,
                self.backup_servers,
                self.sessions_active,
                self.requeued,
                self.queued
            );
        }
        m
    }
}

/// `backend <name> has no server available!`, HAProxy's emergency message
/// when the last server of a backend goes down.
pub fn no_server_available(backend: &str) -> (Severity, String) {
    (
        Severity::Emerg,
        format!("backend {backend} has no server available!"),
    )
}

/// A VRRP instance changed state, in keepalived's words
/// (`(VI_1) Entering MASTER STATE`), at `notice` like the proxy's events so
/// the same `local2.notice` rule files both.
pub fn vrrp_transition(instance: &str, state: &str) -> (Severity, String) {
    (
        Severity::Notice,
        format!("({instance}) Entering {} STATE", state.to_ascii_uppercase()),
    )
}

/// HAProxy prints unprintable bytes, `<`, `>` and the quote as `<XX>`.
fn ascii_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if !(0x20..0x7f).contains(&b) || matches!(b, b'<' | b'>' | b'"') {
            let _ = write!(out, "<{b:02X}>");
        } else {
            out.push(char::from(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> ServerTransition {
        ServerTransition {
            backend: "app".into(),
            server: "web1".into(),
            backup: false,
            up: false,
            check: Some(CheckOutcome {
                status: CheckStatus::Layer4Connection,
                code: None,
                info: Some("Connection refused".into()),
                duration: Some(Duration::from_millis(0)),
            }),
            active_servers: 2,
            backup_servers: 0,
            sessions_active: 0,
            requeued: 0,
            queued: 0,
        }
    }

    #[test]
    fn transitions_in_haproxy_wording() {
        type Edit = fn(&mut ServerTransition);
        let cases: Vec<(Edit, Severity, &str)> = vec![
            (
                |_| {},
                Severity::Alert,
                "Server app/web1 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms. 2 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
            ),
            (
                |t| {
                    t.up = true;
                    t.active_servers = 3;
                    t.check = Some(CheckOutcome {
                        status: CheckStatus::Layer7Ok,
                        code: Some(200),
                        info: None,
                        duration: Some(Duration::from_millis(1)),
                    });
                },
                Severity::Notice,
                "Server app/web1 is UP, reason: Layer7 check passed, code: 200, check duration: 1ms. 3 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
            ),
            (
                |t| {
                    t.active_servers = 0;
                    t.backup_servers = 1;
                    t.sessions_active = 4;
                    t.requeued = 2;
                    t.queued = 1;
                    t.check = Some(CheckOutcome {
                        status: CheckStatus::Layer7WrongStatus,
                        code: Some(503),
                        info: Some("HTTP status check returned code <503>".into()),
                        duration: Some(Duration::from_millis(12)),
                    });
                },
                Severity::Alert,
                "Server app/web1 is DOWN, reason: Layer7 wrong status, code: 503, info: \"HTTP status check returned code <3C>503<3E>\", check duration: 12ms. 0 active and 1 backup servers left. Running on backup. 4 sessions active, 2 requeued, 1 remaining in queue.",
            ),
            (
                |t| {
                    t.backup = true;
                    t.check = None;
                },
                Severity::Alert,
                "Backup Server app/web1 is DOWN. 2 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
            ),
        ];
        for (edit, severity, expected) in cases {
            let mut t = down();
            edit(&mut t);
            assert_eq!(t.message(), expected);
            assert_eq!(t.severity(), severity);
            assert!(
                t.severity().passes(Severity::Notice),
                "filed by local2.notice"
            );
        }
        assert_eq!(
            vrrp_transition("VI_1", "master"),
            (Severity::Notice, "(VI_1) Entering MASTER STATE".to_string())
        );
        assert_eq!(
            no_server_available("app"),
            (
                Severity::Emerg,
                "backend app has no server available!".to_string()
            )
        );
    }
}
