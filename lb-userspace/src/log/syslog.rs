//! Syslog framing (RFC 3164 and RFC 5424), facilities and levels, as HAProxy
//! sends them: one datagram per message, ending in a line feed.
//!
//! - RFC 3164: `<PRI>Mmm dd hh:mm:ss hostname tag[pid]: msg`
//! - local (HAProxy 2.6's default, RFC 3164 without the hostname, what a
//!   local `/dev/log` reader such as rsyslog's imuxsock expects):
//!   `<PRI>Mmm dd hh:mm:ss tag[pid]: msg`
//! - RFC 5424: `<PRI>1 2026-12-02T07:40:00.123456+00:00 hostname tag pid - - msg`
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use super::format::Zone;

/// Syslog facility, with HAProxy's 24 names (`log ... local2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

const FACILITY_NAMES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl Facility {
    /// HAProxy's default when a `log` line names none is not allowed (the
    /// facility is mandatory there); lbd's configuration defaults to local0.
    pub const LOCAL0: Facility = Facility(16);
    pub const LOCAL2: Facility = Facility(18);
    pub const DAEMON: Facility = Facility(3);

    pub fn code(self) -> u8 {
        self.0
    }

    /// The facility with syslog code `code` (0..=23).
    pub fn from_code(code: u8) -> Option<Facility> {
        (usize::from(code) < FACILITY_NAMES.len()).then_some(Facility(code))
    }

    pub fn name(self) -> &'static str {
        FACILITY_NAMES[usize::from(self.0)]
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogParseError {
    #[error("unknown syslog facility {0:?}: expected one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, auth2, ftp, ntp, audit, alert, cron2, local0 .. local7")]
    Facility(String),
    #[error("unknown syslog level {0:?}: expected emerg, alert, crit, err, warning, notice, info or debug")]
    Severity(String),
    #[error("unknown syslog format {0:?}: expected rfc3164, rfc5424 or local")]
    Framing(String),
}

impl FromStr for Facility {
    type Err = SyslogParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FACILITY_NAMES
            .iter()
            .position(|name| *name == s)
            .and_then(|i| u8::try_from(i).ok())
            .map(Facility)
            .ok_or_else(|| SyslogParseError::Facility(s.to_string()))
    }
}

/// Syslog severity; lower is more severe. A target's `level` is the least
/// severe level it receives (HAProxy's `log <addr> <facility> <level>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Severity {
    const ALL: [Severity; 8] = [
        Severity::Emerg,
        Severity::Alert,
        Severity::Crit,
        Severity::Error,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// HAProxy's `minlevel`: a line more severe than `floor` is sent at
    /// `floor` (an `alert` under `minlevel err` goes out as `err`).
    pub fn capped_at(self, floor: Severity) -> Severity {
        if self.code() < floor.code() {
            floor
        } else {
            self
        }
    }

    /// The severity with syslog code `code` (0 emerg ..= 7 debug).
    pub fn from_code(code: u8) -> Option<Severity> {
        Severity::ALL.get(usize::from(code)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Emerg => "emerg",
            Severity::Alert => "alert",
            Severity::Crit => "crit",
            Severity::Error => "err",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }

    /// Whether a message at `self` passes a target whose level is `limit`.
    pub fn passes(self, limit: Severity) -> bool {
        self <= limit
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Severity {
    type Err = SyslogParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|level| level.name() == s)
            .ok_or_else(|| SyslogParseError::Severity(s.to_string()))
    }
}

/// The syslog header layout (HAProxy's `log ... format <name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Rfc3164,
    Rfc5424,
    /// RFC 3164 without the hostname.
    Local,
}

impl Framing {
    /// RFC 3164 (with the hostname) for network targets, whose receiver
    /// cannot know the sender's name otherwise; `local` for unix sockets,
    /// whose readers (imuxsock, journald) do not parse a hostname.
    pub fn default_for_unix_socket(unix: bool) -> Self {
        if unix {
            Framing::Local
        } else {
            Framing::Rfc3164
        }
    }
}

impl FromStr for Framing {
    type Err = SyslogParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rfc3164" => Ok(Framing::Rfc3164),
            "rfc5424" => Ok(Framing::Rfc5424),
            "local" => Ok(Framing::Local),
            other => Err(SyslogParseError::Framing(other.to_string())),
        }
    }
}

/// Who is logging: the hostname, tag (program name) and pid in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub hostname: String,
    pub tag: String,
    pub pid: u32,
}

impl Origin {
    /// This host's name (from the kernel's UTS name, the name `hostname`
    /// prints), tag `lbd`, this process's pid.
    pub fn this_process(tag: &str) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        Origin {
            hostname,
            tag: tag.to_string(),
            pid: std::process::id(),
        }
    }
}

/// HAProxy's default maximum datagram length (`log ... len 1024`).
pub const DEFAULT_MAX_LEN: usize = 1024;

/// One complete datagram: header, message (cut so that the whole datagram
/// is at most `max_len` bytes before the trailing line feed, as HAProxy
/// truncates), line feed.
#[allow(clippy::too_many_arguments)]
pub fn frame(
    framing: Framing,
    facility: Facility,
    severity: Severity,
    time: SystemTime,
    zone: Zone,
    origin: &Origin,
    message: &str,
    max_len: usize,
) -> Vec<u8> {
    let pri = u16::from(facility.code()) * 8 + u16::from(severity.code());
    let at = zone.at(time);
    let header = match framing {
        // `%e` pads the day with a space: "Feb  6".
        Framing::Rfc3164 => format!(
            "<{pri}>{} {} {}[{}]: ",
            at.format("%b %e %H:%M:%S"),
            origin.hostname,
            origin.tag,
            origin.pid
        ),
        Framing::Local => format!(
            "<{pri}>{} {}[{}]: ",
            at.format("%b %e %H:%M:%S"),
            origin.tag,
            origin.pid
        ),
        Framing::Rfc5424 => format!(
            "<{pri}>1 {} {} {} {} - - ",
            at.format("%Y-%m-%dT%H:%M:%S%.6f%:z"),
            origin.hostname,
            origin.tag,
            origin.pid
        ),
    };
    // HAProxy strips trailing line feeds and NULs and adds its own.
    let message = message.trim_end_matches(['\n', '\0']);
    let mut datagram = Vec::with_capacity(header.len() + message.len() + 1);
    datagram.extend_from_slice(header.as_bytes());
    datagram.extend_from_slice(message.as_bytes());
    datagram.truncate(max_len.max(1));
    datagram.push(b'\n');
    datagram
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use std::time::{Duration, UNIX_EPOCH};

    fn origin() -> Origin {
        Origin {
            hostname: "lb1".into(),
            tag: "lbd".into(),
            pid: 4242,
        }
    }

    /// 2009-02-06 12:14:14.655 UTC.
    fn feb_6() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_233_922_454_655)
    }

    #[test]
    fn facility_and_level_names() {
        let table = [
            ("kern", 0),
            ("daemon", 3),
            ("auth2", 10),
            ("cron2", 15),
            ("local0", 16),
            ("local2", 18),
            ("local7", 23),
        ];
        for (name, code) in table {
            let facility: Facility = name.parse().unwrap();
            assert_eq!((facility.code(), facility.name()), (code, name));
        }
        assert!("local8".parse::<Facility>().is_err());
        assert_eq!(Facility::from_code(18), Some(Facility::LOCAL2));
        assert_eq!(Facility::from_code(24), None);
        assert_eq!(Severity::from_code(5), Some(Severity::Notice));
        assert_eq!(Severity::from_code(8), None);
        for (name, code) in [("emerg", 0), ("notice", 5), ("info", 6), ("debug", 7)] {
            let level: Severity = name.parse().unwrap();
            assert_eq!((level.code(), level.name()), (code, name));
        }
        assert!("warn".parse::<Severity>().is_err());
        assert_eq!("rfc5424".parse::<Framing>(), Ok(Framing::Rfc5424));
        assert_eq!("local".parse::<Framing>(), Ok(Framing::Local));
        assert!("rfc3339".parse::<Framing>().is_err());
    }

    #[test]
    fn level_filter_keeps_more_severe_messages() {
        // `level = "notice"`: notice and above pass, info and debug do not.
        let cases = [
            (Severity::Emerg, Severity::Notice, true),
            (Severity::Alert, Severity::Notice, true),
            (Severity::Notice, Severity::Notice, true),
            (Severity::Info, Severity::Notice, false),
            (Severity::Debug, Severity::Info, false),
            (Severity::Info, Severity::Debug, true),
        ];
        for (message, limit, passes) in cases {
            assert_eq!(message.passes(limit), passes, "{message} at {limit}");
        }
    }

    #[test]
    fn rfc3164_frames() {
        let utc = Zone::utc();
        let table: [(Facility, Severity, Zone, &str, &str); 4] = [
            // local2.info = 18*8+6 = 150, the seed's access-log rule.
            (
                Facility::LOCAL2,
                Severity::Info,
                utc,
                "hello",
                "<150>Feb  6 12:14:14 lb1 lbd[4242]: hello\n",
            ),
            // local2.notice = 149; trailing line feeds are not doubled.
            (
                Facility::LOCAL2,
                Severity::Notice,
                utc,
                "Server app/web1 is UP.\n",
                "<149>Feb  6 12:14:14 lb1 lbd[4242]: Server app/web1 is UP.\n",
            ),
            (
                Facility::LOCAL0,
                Severity::Emerg,
                Zone::Fixed(FixedOffset::east_opt(9 * 3600).unwrap()),
                "x",
                "<128>Feb  6 21:14:14 lb1 lbd[4242]: x\n",
            ),
            (
                Facility::DAEMON,
                Severity::Debug,
                utc,
                "",
                "<31>Feb  6 12:14:14 lb1 lbd[4242]: \n",
            ),
        ];
        for (facility, severity, zone, message, expected) in table {
            let got = frame(
                Framing::Rfc3164,
                facility,
                severity,
                feb_6(),
                zone,
                &origin(),
                message,
                DEFAULT_MAX_LEN,
            );
            assert_eq!(String::from_utf8(got).unwrap(), expected);
        }
        // Two-digit days are not padded.
        let dec_2_2026 = UNIX_EPOCH + Duration::from_secs(1_796_169_600);
        let got = frame(
            Framing::Rfc3164,
            Facility::LOCAL2,
            Severity::Info,
            dec_2_2026 + Duration::from_secs(10 * 86_400),
            utc,
            &origin(),
            "m",
            DEFAULT_MAX_LEN,
        );
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("<150>Dec 12 "), "{text}");
    }

    #[test]
    fn local_frame_has_no_hostname() {
        let got = frame(
            Framing::Local,
            Facility::LOCAL2,
            Severity::Info,
            feb_6(),
            Zone::utc(),
            &origin(),
            "hello",
            DEFAULT_MAX_LEN,
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "<150>Feb  6 12:14:14 lbd[4242]: hello\n"
        );
    }

    #[test]
    fn rfc5424_frame() {
        let got = frame(
            Framing::Rfc5424,
            Facility::LOCAL2,
            Severity::Info,
            feb_6(),
            Zone::utc(),
            &origin(),
            "hello world",
            DEFAULT_MAX_LEN,
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "<150>1 2009-02-06T12:14:14.655000+00:00 lb1 lbd 4242 - - hello world\n"
        );
    }

    #[test]
    fn long_messages_are_cut_at_max_len() {
        let message = "a".repeat(2000);
        let got = frame(
            Framing::Rfc3164,
            Facility::LOCAL2,
            Severity::Info,
            feb_6(),
            Zone::utc(),
            &origin(),
            &message,
            DEFAULT_MAX_LEN,
        );
        assert_eq!(got.len(), DEFAULT_MAX_LEN + 1);
        assert_eq!(got.last(), Some(&b'\n'));
        assert!(got[..DEFAULT_MAX_LEN].ends_with(b"aaaa"));
    }
}
