//! Real sockets: unix datagram receivers in a temporary directory (UDP is
//! exercised against rsyslogd in a network namespace, tests/log_netns.rs).
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::log::record::{AccessRecord, RecordMode};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lbd-log-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn origin() -> Origin {
    Origin {
        hostname: "lb1".into(),
        tag: "lbd".into(),
        pid: 7,
    }
}

fn receiver(dir: &TempDir, name: &str) -> (UnixDatagram, TargetAddr) {
    let path = dir.0.join(name);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (socket, TargetAddr::Unix(path))
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).expect("a datagram within 5 s");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn target(addr: TargetAddr, facility: &str, level: Severity) -> TargetConfig {
    TargetConfig {
        facility: facility.parse().unwrap(),
        level,
        ..TargetConfig::new(addr)
    }
}

#[test]
fn target_addresses_parse_like_haproxy_log_lines() {
    let table = [
        (
            "127.0.0.1",
            Some(TargetAddr::Udp("127.0.0.1:514".parse().unwrap())),
        ),
        (
            "127.0.0.1:5514",
            Some(TargetAddr::Udp("127.0.0.1:5514".parse().unwrap())),
        ),
        (
            "[fd00::1]:514",
            Some(TargetAddr::Udp("[fd00::1]:514".parse().unwrap())),
        ),
        (
            "fd00::1",
            Some(TargetAddr::Udp("[fd00::1]:514".parse().unwrap())),
        ),
        ("/dev/log", Some(TargetAddr::Unix("/dev/log".into()))),
        ("localhost:514", None),
        ("dev/log", None),
        ("", None),
    ];
    for (text, expected) in table {
        assert_eq!(text.parse::<TargetAddr>().ok(), expected, "{text:?}");
    }
}

#[test]
fn lines_reach_a_unix_datagram_socket_framed_and_filtered_by_level() {
    let dir = TempDir::new();
    let (everything, everything_addr) = receiver(&dir, "all.sock");
    let (notices, notices_addr) = receiver(&dir, "notice.sock");
    let logger = Logger::start(
        &[
            TargetConfig {
                framing: Framing::Rfc3164,
                ..target(everything_addr, "local2", Severity::Debug)
            },
            TargetConfig {
                framing: Framing::Rfc5424,
                ..target(notices_addr, "local2", Severity::Notice)
            },
        ],
        origin(),
        Zone::utc(),
    )
    .unwrap();

    logger.emit(Severity::Info, "an access line");
    logger.emit(Severity::Notice, "Server app/web1 is UP.");
    assert!(logger.flush(Duration::from_secs(5)));

    let first = recv(&everything);
    assert!(
        first.starts_with("<150>") && first.ends_with(" lb1 lbd[7]: an access line\n"),
        "{first:?}"
    );
    let second = recv(&everything);
    assert!(second.starts_with("<149>"), "{second:?}");
    assert!(second.ends_with(" lb1 lbd[7]: Server app/web1 is UP.\n"));
    // The notice-level target got only the notice, in RFC 5424.
    let only = recv(&notices);
    assert!(only.starts_with("<149>1 "), "{only:?}");
    assert!(
        only.ends_with(" lb1 lbd 7 - - Server app/web1 is UP.\n"),
        "{only:?}"
    );
    notices.set_nonblocking(true).unwrap();
    assert!(
        notices.recv(&mut [0u8; 64]).is_err(),
        "info must not pass a notice target"
    );

    let stats = logger.stats();
    assert_eq!(
        (stats[0].sent, stats[0].dropped, stats[0].send_errors),
        (2, 0, 0)
    );
    assert_eq!(
        (stats[1].sent, stats[1].dropped, stats[1].send_errors),
        (1, 0, 0)
    );
}

#[test]
fn minlevel_sends_more_severe_lines_at_the_floor() {
    let dir = TempDir::new();
    let (socket, addr) = receiver(&dir, "min.sock");
    let logger = Logger::start(
        &[TargetConfig {
            framing: Framing::Rfc3164,
            min_level: Some(Severity::Error),
            ..target(addr, "local2", Severity::Debug)
        }],
        origin(),
        Zone::utc(),
    )
    .unwrap();
    logger.emit(Severity::Alert, "Server app/web1 is DOWN");
    logger.emit(Severity::Info, "an access line");
    assert!(logger.flush(Duration::from_secs(5)));
    // local2 (18 * 8): alert (1) raised to err (3) = 147; info (6) = 150.
    assert!(recv(&socket).starts_with("<147>"));
    assert!(recv(&socket).starts_with("<150>"));
    assert_eq!(
        Severity::Emerg.capped_at(Severity::Notice),
        Severity::Notice
    );
    assert_eq!(Severity::Debug.capped_at(Severity::Notice), Severity::Debug);
}

#[test]
fn access_records_obey_dontlognull() {
    let dir = TempDir::new();
    let (socket, addr) = receiver(&dir, "access.sock");
    let logger = Logger::start(
        &[target(addr, "local2", Severity::Info)],
        origin(),
        Zone::utc(),
    )
    .unwrap();
    let mut record = AccessRecord::new(
        RecordMode::Tcp,
        "198.18.0.1:40000".parse().unwrap(),
        "198.18.0.100:443".parse().unwrap(),
        Arc::from("fe"),
        UNIX_EPOCH + Duration::from_secs(1_233_922_371),
    );
    // Nothing received from the client: skipped with dontlognull only.
    assert!(!logger.access(&record, AccessFormat::TcpLog, Zone::utc(), true));
    assert!(logger.access(&record, AccessFormat::TcpLog, Zone::utc(), false));
    record.bytes_from_client = 10;
    assert!(logger.access(&record, AccessFormat::TcpLog, Zone::utc(), true));
    assert!(logger.flush(Duration::from_secs(5)));
    let expected =
        "198.18.0.1:40000 [06/Feb/2009:12:12:51.000] fe fe/<NOSRV> -1/-1/0 0 -- 0/0/0/0/0 0/0\n";
    assert!(recv(&socket).ends_with(expected));
    assert!(recv(&socket).ends_with(expected));
    assert_eq!(logger.stats()[0].sent, 2);
}

#[test]
fn a_stalled_receiver_costs_drops_not_a_blocked_caller() {
    let dir = TempDir::new();
    // Bound but never read: its queue fills, then the sender thread waits
    // on each datagram and the bounded queue overflows.
    let (_stalled, addr) = receiver(&dir, "stalled.sock");
    let logger = Logger::start(
        &[target(addr, "local2", Severity::Debug)],
        origin(),
        Zone::utc(),
    )
    .unwrap();
    let total = (QUEUE_CAPACITY * 3) as u64;
    let line = "x".repeat(900);
    for _ in 0..total {
        logger.emit(Severity::Info, &line);
    }
    let stats = &logger.stats()[0];
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(stats.dropped <= total);
    // Every line is accounted for once the queue drains through timeouts.
    drop(_stalled);
    assert!(logger.flush(Duration::from_secs(30)));
    let stats = &logger.stats()[0];
    assert_eq!(
        stats.sent + stats.dropped + stats.send_errors,
        total,
        "{stats:?}"
    );
}

#[test]
fn an_absent_syslog_daemon_is_counted_not_fatal() {
    let dir = TempDir::new();
    let logger = Logger::start(
        &[target(
            TargetAddr::Unix(dir.0.join("missing.sock")),
            "local2",
            Severity::Debug,
        )],
        origin(),
        Zone::utc(),
    )
    .unwrap();
    logger.emit(Severity::Notice, "nobody listens");
    assert!(logger.flush(Duration::from_secs(5)));
    let stats = &logger.stats()[0];
    assert_eq!((stats.sent, stats.send_errors), (0, 1));

    let disabled = Logger::disabled();
    assert!(!disabled.is_enabled());
    disabled.emit(Severity::Emerg, "dropped silently");
    assert!(disabled.stats().is_empty());
}
