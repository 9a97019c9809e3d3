//! Exact lines, modelled on the examples of HAProxy's manual §8.2.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::FixedOffset;

use super::*;
use crate::log::record::{
    AccessRecord, Concurrency, RecordMode, SessionPhase, TerminationCause, TerminationState, Timers,
};

/// 06/Feb/2009:12:14:14.655 UTC, the date of the manual's examples.
fn feb_6_2009(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_233_922_454_000 + millis)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The manual's httplog example:
/// `10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1
///  10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1"`
fn http_example() -> AccessRecord {
    let mut r = AccessRecord::new(
        RecordMode::Http,
        "10.0.1.2:33317".parse().unwrap(),
        "10.0.3.31:80".parse().unwrap(),
        Arc::from("http-in"),
        feb_6_2009(655),
    );
    r.backend = Some(Arc::from("static"));
    r.server = Some(Arc::from("srv1"));
    r.timers = Timers {
        handshake: Some(ms(0)),
        idle: Some(ms(0)),
        request: Some(ms(10)),
        queue: Some(ms(0)),
        connect: Some(ms(30)),
        response: Some(ms(69)),
        active: ms(109),
        total: ms(109),
    };
    r.status = Some(200);
    r.bytes_to_client = 2750;
    r.bytes_from_client = 77;
    r.concurrency = Concurrency {
        process: 1,
        frontend: 1,
        backend: 1,
        server: 1,
        server_queue: 0,
        backend_queue: 0,
    };
    r.request_line = Some("GET /index.html HTTP/1.1".into());
    r
}

fn utc() -> Zone {
    Zone::utc()
}

#[test]
fn httplog_manual_example_with_captures() {
    let mut r = http_example();
    r.captured_request_headers = vec!["1wt.eu".into()];
    r.captured_response_headers = vec![String::new()];
    assert_eq!(
        httplog(&r, utc()),
        "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} \"GET /index.html HTTP/1.1\""
    );
}

#[test]
fn httplog_without_captures_collapses_their_spaces() {
    assert_eq!(
        httplog(&http_example(), utc()),
        "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 \"GET /index.html HTTP/1.1\""
    );
}

#[test]
fn httplog_table() {
    let offset_plus_one = Zone::Fixed(FixedOffset::east_opt(3600).unwrap());
    type Edit = fn(&mut AccessRecord);
    let cases: Vec<(&str, Edit, Zone, &str)> = vec![
        (
            "local time zone shifts %tr",
            |_| {},
            offset_plus_one,
            "10.0.1.2:33317 [06/Feb/2009:13:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 \"GET /index.html HTTP/1.1\"",
        ),
        (
            // Denied by an http-request rule: never reached a backend, so
            // HAProxy shows the frontend as backend and <NOSRV>.
            "denied in the frontend",
            |r| {
                r.backend = None;
                r.server = None;
                r.timers.queue = None;
                r.timers.connect = None;
                r.timers.response = None;
                r.timers.active = ms(0);
                r.status = Some(403);
                r.bytes_to_client = 192;
                r.termination = TerminationState::new(TerminationCause::ProxyAbort, SessionPhase::Request);
                r.concurrency.backend = 0;
                r.concurrency.server = 0;
            },
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in http-in/<NOSRV> 10/-1/-1/-1/0 403 192 - - PR-- 1/1/0/0/0 0/0 \"GET /index.html HTTP/1.1\"",
        ),
        (
            "client closed before a complete request",
            |r| {
                r.backend = None;
                r.server = None;
                r.timers.request = None;
                r.timers.queue = None;
                r.timers.connect = None;
                r.timers.response = None;
                r.timers.active = ms(8490);
                r.status = None;
                r.bytes_to_client = 0;
                r.request_line = None;
                r.termination = TerminationState::new(TerminationCause::ClientAbort, SessionPhase::Request);
            },
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in http-in/<NOSRV> -1/-1/-1/-1/8490 -1 0 - - CR-- 1/1/1/1/0 0/0 \"<BADREQ>\"",
        ),
        (
            "server timeout waiting for headers",
            |r| {
                r.timers.response = None;
                r.timers.active = ms(60040);
                r.status = Some(504);
                r.bytes_to_client = 194;
                r.termination = TerminationState::new(TerminationCause::ServerTimeout, SessionPhase::Headers);
            },
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/-1/60040 504 194 - - sH-- 1/1/1/1/0 0/0 \"GET /index.html HTTP/1.1\"",
        ),
        (
            "client aborted during data",
            |r| {
                r.termination = TerminationState::new(TerminationCause::ClientAbort, SessionPhase::Data);
            },
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - CD-- 1/1/1/1/0 0/0 \"GET /index.html HTTP/1.1\"",
        ),
        (
            "retries with redispatch, queues, TLS frontend",
            |r| {
                r.retries = 3;
                r.redispatched = true;
                r.concurrency.server_queue = 2;
                r.concurrency.backend_queue = 5;
                r.frontend_tls = true;
            },
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in~ static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/+3 2/5 \"GET /index.html HTTP/1.1\"",
        ),
        (
            "IPv6 client printed without brackets",
            |r| r.client = "[fd00::1]:40000".parse().unwrap(),
            utc(),
            "fd00::1:40000 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 \"GET /index.html HTTP/1.1\"",
        ),
        (
            "quotes, hashes, control and non-ASCII bytes escaped as #XX",
            |r| r.request_line = Some("GET /a\"b#c\u{7}d\u{e9} HTTP/1.1".into()),
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 \"GET /a#22b#23c#07d#C3#A9 HTTP/1.1\"",
        ),
        (
            "captured header values escape { | } too",
            |r| {
                r.captured_request_headers = vec!["a|b".into(), "{x}".into()];
            },
            utc(),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {a#7Cb|#7Bx#7D} \"GET /index.html HTTP/1.1\"",
        ),
    ];
    for (name, edit, zone, expected) in cases {
        let mut r = http_example();
        edit(&mut r);
        assert_eq!(httplog(&r, zone), expected, "case: {name}");
    }
}

/// The manual's tcplog example:
/// `10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0`
fn tcp_example() -> AccessRecord {
    let mut r = AccessRecord::new(
        RecordMode::Tcp,
        "10.0.1.2:33313".parse().unwrap(),
        "10.0.3.31:8012".parse().unwrap(),
        Arc::from("fnt"),
        UNIX_EPOCH + Duration::from_millis(1_233_922_371_443),
    );
    r.backend = Some(Arc::from("bck"));
    r.server = Some(Arc::from("srv1"));
    r.timers.queue = Some(ms(0));
    r.timers.connect = Some(ms(0));
    r.timers.total = ms(5007);
    r.bytes_to_client = 212;
    r.bytes_from_client = 90;
    r.retries = 3;
    r
}

#[test]
fn tcplog_table() {
    type Edit = fn(&mut AccessRecord);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "manual example",
            |_| {},
            "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0",
        ),
        (
            "connect failed on every server",
            |r| {
                r.server = None;
                r.timers.connect = None;
                r.bytes_to_client = 0;
                r.termination =
                    TerminationState::new(TerminationCause::ServerAbort, SessionPhase::Connect);
                r.redispatched = true;
            },
            "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/<NOSRV> 0/-1/5007 0 SC 0/0/0/0/+3 0/0",
        ),
        (
            "client timeout during data, counts",
            |r| {
                r.termination =
                    TerminationState::new(TerminationCause::ClientTimeout, SessionPhase::Data);
                r.concurrency = Concurrency {
                    process: 12,
                    frontend: 7,
                    backend: 6,
                    server: 2,
                    server_queue: 1,
                    backend_queue: 4,
                };
            },
            "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 cD 12/7/6/2/3 1/4",
        ),
    ];
    for (name, edit, expected) in cases {
        let mut r = tcp_example();
        edit(&mut r);
        assert_eq!(tcplog(&r, utc()), expected, "case: {name}");
        // The request line and status never appear in tcplog.
        assert_eq!(format_record(&r, AccessFormat::TcpLog, utc()), expected);
    }
}

#[test]
fn clf_line() {
    // HAProxy's CLF quotes text fields but not the client address, numbers
    // or the termination state; the empty %hrl %hsl leave one trailing space.
    let r = http_example();
    assert_eq!(
        clf(&r),
        "10.0.1.2 - - [06/Feb/2009:12:14:14 +0000] \"GET /index.html HTTP/1.1\" 200 2750 \"\" \"\" 33317 655 \"http-in\" \"static\" \"srv1\" 10 0 30 69 109 ---- 1 1 1 1 0 0 0 \"\" \"\" "
    );
    let mut captured = http_example();
    captured.captured_request_headers = vec!["1wt.eu".into(), "Mozilla".into()];
    captured.accept_date = feb_6_2009(5);
    captured.request_date = feb_6_2009(5);
    assert_eq!(
        clf(&captured),
        "10.0.1.2 - - [06/Feb/2009:12:14:14 +0000] \"GET /index.html HTTP/1.1\" 200 2750 \"\" \"\" 33317 005 \"http-in\" \"static\" \"srv1\" 10 0 30 69 109 ---- 1 1 1 1 0 0 0 \"\" \"\" \"1wt.eu\" \"Mozilla\" "
    );
}

#[test]
fn json_http_and_tcp() {
    let http: serde_json::Value =
        serde_json::from_str(&json(&http_example(), utc())).expect("valid JSON");
    assert_eq!(
        http,
        serde_json::json!({
            "mode": "http",
            "client_ip": "10.0.1.2", "client_port": 33317,
            "frontend_ip": "10.0.3.31", "frontend_port": 80,
            "accept_date": "2009-02-06T12:14:14.655+00:00",
            "request_date": "2009-02-06T12:14:14.655+00:00",
            "frontend_name": "http-in", "backend_name": "static", "server_name": "srv1",
            "Th": 0, "Ti": 0, "TR": 10, "Tw": 0, "Tc": 30, "Tr": 69, "Ta": 109, "Tt": 109,
            "status_code": 200, "bytes_read": 2750, "bytes_uploaded": 77,
            "termination_state": "----",
            "actconn": 1, "feconn": 1, "beconn": 1, "srv_conn": 1,
            "retries": 0, "redispatched": false, "srv_queue": 0, "backend_queue": 0,
            "http_request": "GET /index.html HTTP/1.1",
            "captured_request_headers": [], "captured_response_headers": [],
        })
    );
    let mut bad = tcp_example();
    bad.server = None;
    bad.timers.connect = None;
    bad.termination = TerminationState::new(TerminationCause::ServerAbort, SessionPhase::Connect);
    let tcp: serde_json::Value = serde_json::from_str(&json(&bad, utc())).expect("valid JSON");
    assert_eq!(
        tcp,
        serde_json::json!({
            "mode": "tcp",
            "client_ip": "10.0.1.2", "client_port": 33313,
            "frontend_ip": "10.0.3.31", "frontend_port": 8012,
            "accept_date": "2009-02-06T12:12:51.443+00:00",
            "frontend_name": "fnt", "backend_name": "bck", "server_name": "<NOSRV>",
            "Tw": 0, "Tc": -1, "Tt": 5007,
            "bytes_read": 212, "bytes_uploaded": 90,
            "termination_state": "SC",
            "actconn": 0, "feconn": 0, "beconn": 0, "srv_conn": 0,
            "retries": 3, "redispatched": false, "srv_queue": 0, "backend_queue": 0,
        })
    );
    // A request line with quotes and control bytes stays valid JSON.
    let mut odd = http_example();
    odd.request_line = Some("GET /\"x\"\n HTTP/1.1".into());
    let parsed: serde_json::Value = serde_json::from_str(&json(&odd, utc())).expect("valid JSON");
    assert_eq!(parsed["http_request"], "GET /\"x\"\n HTTP/1.1");
}

#[test]
fn format_names_parse_and_defaults_follow_mode() {
    for format in [
        AccessFormat::HttpLog,
        AccessFormat::TcpLog,
        AccessFormat::Clf,
        AccessFormat::Json,
    ] {
        assert_eq!(format.name().parse::<AccessFormat>(), Ok(format));
    }
    assert!("combined".parse::<AccessFormat>().is_err());
    assert_eq!(
        AccessFormat::default_for(RecordMode::Http),
        AccessFormat::HttpLog
    );
    assert_eq!(
        AccessFormat::default_for(RecordMode::Tcp),
        AccessFormat::TcpLog
    );
}

#[test]
fn dontlognull_means_nothing_received_from_the_client() {
    let mut r = http_example();
    assert!(!r.is_null());
    r.bytes_from_client = 0;
    r.request_line = None;
    assert!(r.is_null());
}
