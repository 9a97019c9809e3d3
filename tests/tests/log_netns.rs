//! Syslog delivery to a real rsyslogd in a namespace, configured as the
//! seeds configure it for HAProxy (`log 127.0.0.1 local2`, imudp on 514,
//! `local2.=info` to the access file, `local2.notice` to the info file).
//! Needs root; run under the team lock:
//! `flock /tmp/lbd-netns.lock cargo test -p lb-tests --test log_netns -- --test-threads=1`
use lb_tests::netns::Netns;
use lb_tests::rsyslog::{LogFile, Rsyslog};
use lbd::log::event::{CheckOutcome, CheckStatus, ServerTransition};
use lbd::log::{
    AccessFormat, AccessRecord, Framing, Logger, Origin, RecordMode, Severity, TargetAddr,
    TargetConfig, Zone,
};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

const WAIT: Duration = Duration::from_secs(10);

fn origin() -> Origin {
    Origin {
        hostname: "lb1".into(),
        tag: "lbd".into(),
        pid: std::process::id(),
    }
}

fn target(addr: TargetAddr, framing: Framing) -> TargetConfig {
    TargetConfig {
        facility: "local2".parse().expect("facility"),
        framing,
        ..TargetConfig::new(addr)
    }
}

fn record(path: &str) -> AccessRecord {
    let mut r = AccessRecord::new(
        RecordMode::Http,
        "198.18.0.1:40000".parse().expect("addr"),
        "198.18.0.100:80".parse().expect("addr"),
        Arc::from("main"),
        SystemTime::now(),
    );
    r.backend = Some(Arc::from("app"));
    r.server = Some(Arc::from("web1"));
    r.status = Some(200);
    r.bytes_to_client = 187;
    r.bytes_from_client = 78;
    r.request_line = Some(format!("GET {path} HTTP/1.1"));
    r.timers.request = Some(Duration::from_millis(0));
    r.timers.queue = Some(Duration::from_millis(0));
    r.timers.connect = Some(Duration::from_millis(1));
    r.timers.response = Some(Duration::from_millis(2));
    r.timers.active = Duration::from_millis(3);
    r
}

fn down_event() -> ServerTransition {
    ServerTransition {
        backend: "app".into(),
        server: "web2".into(),
        backup: false,
        up: false,
        check: Some(CheckOutcome {
            status: CheckStatus::Layer4Connection,
            code: None,
            info: Some("Connection refused".into()),
            duration: Some(Duration::from_millis(0)),
        }),
        active_servers: 1,
        backup_servers: 0,
        sessions_active: 0,
        requeued: 0,
        queued: 0,
    }
}

/// rsyslog's traditional file format: `Mmm dd hh:mm:ss HOST TAG MSG`. The
/// timestamp is the one lbd put in the header, so only its shape is known.
fn split_file_line(line: &str) -> (&str, &str) {
    assert!(line.len() > 16, "short line {line:?}");
    let (stamp, rest) = line.split_at(16);
    let bytes = stamp.as_bytes();
    assert!(
        bytes[3] == b' '
            && bytes[6] == b' '
            && bytes[9] == b':'
            && bytes[12] == b':'
            && bytes[15] == b' ',
        "not an RFC 3164 timestamp: {line:?}"
    );
    (stamp, rest)
}

#[test]
fn udp_and_unix_lines_are_filed_by_the_seed_rules() -> anyhow::Result<()> {
    let ns = Netns::create("log")?;
    let rsyslog = Rsyslog::start(&ns, "127.0.0.1:514".parse()?, "local2", true)?;
    let unix = TargetAddr::Unix(rsyslog.unix_socket().expect("socket").to_owned());
    let udp = TargetAddr::Udp("127.0.0.1:514".parse()?);
    // The sender threads start inside the namespace, so their sockets are
    // the namespace's.
    let (rfc3164, rfc5424, local) = ns.run_in(|| -> anyhow::Result<_> {
        Ok((
            Logger::start(
                &[target(udp.clone(), Framing::Rfc3164)],
                origin(),
                Zone::Local,
            )?,
            Logger::start(
                &[target(udp.clone(), Framing::Rfc5424)],
                origin(),
                Zone::Local,
            )?,
            Logger::start(
                &[target(unix.clone(), Framing::Local)],
                origin(),
                Zone::Local,
            )?,
        ))
    })??;

    let tag = format!("lbd[{}]: ", std::process::id());
    // Access lines (info) over each transport; a null connection is not
    // logged with dontlognull.
    let mut null = record("/null");
    null.bytes_from_client = 0;
    assert!(!rfc3164.access(&null, AccessFormat::HttpLog, Zone::Local, true));
    let mut expected_access = Vec::new();
    for (logger, path) in [
        (&rfc3164, "/rfc3164"),
        (&rfc5424, "/rfc5424"),
        (&local, "/local"),
    ] {
        let r = record(path);
        assert!(logger.access(&r, AccessFormat::HttpLog, Zone::Local, true));
        expected_access.push(lbd::log::format::httplog(&r, Zone::Local));
    }
    // Server events: DOWN is an alert, UP a notice; both belong in the info
    // file. A debug line belongs in neither.
    let down = down_event();
    rfc3164.emit(down.severity(), &down.message());
    let mut up = down_event();
    up.up = true;
    up.active_servers = 2;
    up.check = None;
    rfc5424.emit(up.severity(), &up.message());
    local.emit(Severity::Debug, "debug chatter");
    for logger in [&rfc3164, &rfc5424, &local] {
        assert!(logger.flush(WAIT));
        let stats = &logger.stats()[0];
        assert_eq!((stats.dropped, stats.send_errors), (0, 0), "{stats:?}");
    }

    let access = rsyslog.wait_for_lines(LogFile::Access, 3, WAIT)?;
    let info = rsyslog.wait_for_lines(LogFile::Info, 2, WAIT)?;
    // Give a misfiled line time to show up before checking exact contents.
    std::thread::sleep(Duration::from_millis(300));
    let access_now = rsyslog.lines(LogFile::Access);
    let info_now = rsyslog.lines(LogFile::Info);
    assert_eq!(
        access_now.len(),
        3,
        "access file:\n{}",
        access_now.join("\n")
    );
    assert_eq!(info_now.len(), 2, "info file:\n{}", info_now.join("\n"));
    drop((access, info));

    // Over UDP the hostname is lbd's (RFC 3164 and 5424 carry it); over the
    // unix socket rsyslog names the local host, as for any /dev/log line.
    // Three sender threads: the file's order is not the sending order.
    for expected in &expected_access {
        let line = access_now
            .iter()
            .find(|l| l.ends_with(expected.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "no access line for {expected:?}:\n{}",
                    access_now.join("\n")
                )
            });
        let (_, rest) = split_file_line(line);
        let (host, message) = rest.split_once(' ').expect("host");
        if expected.ends_with("\"GET /local HTTP/1.1\"") {
            assert!(!host.is_empty());
        } else {
            assert_eq!(host, "lb1", "{line:?}");
        }
        // rsyslog renders an RFC 5424 message's APP-NAME[PROCID] without
        // the colon of an RFC 3164 tag.
        let tag = if expected.contains("/rfc5424") {
            tag.replace(": ", " ")
        } else {
            tag.clone()
        };
        assert_eq!(message, format!("{tag}{expected}"), "{line:?}");
    }
    let tag_5424 = tag.replace(": ", " ");
    for (event, tag) in [(down.message(), &tag), (up.message(), &tag_5424)] {
        let line = info_now
            .iter()
            .find(|l| l.ends_with(event.as_str()))
            .unwrap_or_else(|| panic!("no info line for {event:?}:\n{}", info_now.join("\n")));
        let (_, rest) = split_file_line(line);
        assert_eq!(rest, format!("lb1 {tag}{event}"));
    }
    Ok(())
}

#[test]
fn level_filter_and_other_facilities_stay_out_of_the_seed_files() -> anyhow::Result<()> {
    let ns = Netns::create("loglvl")?;
    let rsyslog = Rsyslog::start(&ns, "127.0.0.1:514".parse()?, "local2", false)?;
    let udp = TargetAddr::Udp("127.0.0.1:514".parse()?);
    let logger = ns.run_in(|| {
        Logger::start(
            &[
                // HAProxy's `log 127.0.0.1 local2 notice`: access lines
                // (info) are not sent.
                TargetConfig {
                    level: Severity::Notice,
                    ..target(udp.clone(), Framing::Rfc3164)
                },
                // Another facility: rsyslog's local2 rules ignore it.
                TargetConfig {
                    facility: "local3".parse().expect("facility"),
                    ..target(udp.clone(), Framing::Rfc3164)
                },
            ],
            origin(),
            Zone::Local,
        )
    })??;
    assert!(logger.access(
        &record("/filtered"),
        AccessFormat::HttpLog,
        Zone::Local,
        false
    ));
    logger.emit(Severity::Notice, "notice passes the level");
    assert!(logger.flush(WAIT));
    let stats = logger.stats();
    // Target 0 got only the notice; target 1 both lines.
    assert_eq!((stats[0].sent, stats[1].sent), (1, 2), "{stats:?}");
    rsyslog.wait_for_line(LogFile::Info, WAIT, |l| {
        l.ends_with("notice passes the level")
    })?;
    std::thread::sleep(Duration::from_millis(300));
    assert!(rsyslog.lines(LogFile::Access).is_empty());
    assert_eq!(rsyslog.lines(LogFile::Info).len(), 1);
    Ok(())
}
