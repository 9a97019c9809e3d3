//! Access and event logging in HAProxy's formats, to syslog.
//!
//! Sans-IO core: `record` (what happened), `format` (HAProxy's `httplog`,
//! `tcplog`, `clf` and a JSON line) and `syslog` (RFC 3164 / 5424 framing,
//! facilities and levels). The driver, `sink`, sends framed lines to UDP or
//! unix-datagram targets from its own thread, so logging never blocks the
//! proxy; lines that do not fit its queue are dropped and counted.
pub mod event;
pub mod format;
pub mod record;
pub mod sink;
pub mod syslog;

pub use format::{AccessFormat, Zone};
pub use record::{
    AccessRecord, Concurrency, ConnectionError, RecordMode, SessionPhase, TerminationCause,
    TerminationState, Timers,
};
pub use sink::{Logger, TargetAddr, TargetConfig, TargetStats};
pub use syslog::{Facility, Framing, Origin, Severity};
