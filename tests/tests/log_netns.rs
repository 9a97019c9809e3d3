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

/// HAProxy 2.6 itself, logging to the same rsyslog: every line it writes
/// (httplog, tcplog, clf, a denied and an invalid request, server DOWN and
/// UP) is read back into lbd's types and formatted again by lbd, which
/// must give the very same bytes. This pins lbd's formats to HAProxy's
/// real output, not to our reading of its manual.
#[test]
fn lbd_formats_reproduce_haproxy_2_6_lines() -> anyhow::Result<()> {
    use lb_tests::nginx::Nginx;
    use lb_tests::process::ChildGuard;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let ns = Netns::create("loghap")?;
    for addr in ["198.18.0.10/32", "198.18.0.11/32", "198.18.0.100/32"] {
        ns.ip(&["addr", "add", addr, "dev", "lo"])?;
    }
    let rsyslog = Rsyslog::start(&ns, "127.0.0.1:514".parse()?, "local2", false)?;
    let _web1 = Nginx::start(&ns, "web1", &["198.18.0.10:80".parse()?])?;
    let dir = lb_tests::topology::TempDir::create(&lb_tests::netns::unique_name("haproxy"))?;
    let conf = dir.path.join("haproxy.cfg");
    std::fs::write(
        &conf,
        "global\n  log 127.0.0.1 local2\n  maxconn 100\n\
         defaults\n  mode http\n  log global\n  option httplog\n  option dontlognull\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n\
         frontend main\n  bind 198.18.0.100:80\n  http-request deny if { path /denied }\n  default_backend app\n\
         frontend clf\n  bind 198.18.0.100:82\n  option httplog clf\n  default_backend app\n\
         backend app\n  server web1 198.18.0.10:80\n  server web2 198.18.0.11:80 check inter 200ms fall 1 rise 1\n\
         frontend tcpfe\n  mode tcp\n  option tcplog\n  bind 198.18.0.100:81\n  default_backend tcpbe\n\
         backend tcpbe\n  mode tcp\n  server web1 198.18.0.10:80\n",
    )?;
    let mut command = ns.command("haproxy", &["-db", "-f", &conf.display().to_string()]);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _haproxy = ChildGuard::spawn(command, "haproxy")?;

    // web2 has no server: HAProxy's first check marks it DOWN.
    let down_line = rsyslog.wait_for_line(LogFile::Info, WAIT, |l| l.contains("is DOWN"))?;
    let exchange = |port: u16, request: &str| -> anyhow::Result<String> {
        let request = request.to_owned();
        ns.run_in(move || -> anyhow::Result<String> {
            let mut stream = TcpStream::connect(("198.18.0.100", port))?;
            stream.set_read_timeout(Some(WAIT))?;
            stream.write_all(request.as_bytes())?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply)
        })?
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: lbt\r\nConnection: close\r\n\r\n");
    let reply = exchange(80, &get("/index.html?a=\"q\""))?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(exchange(80, &get("/denied"))?.starts_with("HTTP/1.1 403"));
    assert!(exchange(80, "BAD REQUEST\r\n\r\n")?.starts_with("HTTP/1.1 400"));
    assert!(exchange(82, &get("/clf"))?.starts_with("HTTP/1.1 200"));
    assert!(exchange(81, &get("/tcp"))?.starts_with("HTTP/1.1 200"));
    // A null connection: nothing sent, nothing logged (dontlognull).
    ns.run_in(|| TcpStream::connect(("198.18.0.100", 80)).map(drop))??;
    let _web2 = Nginx::start(&ns, "web2", &["198.18.0.11:80".parse()?])?;
    let up_line = rsyslog.wait_for_line(LogFile::Info, WAIT, |l| l.contains("is UP"))?;

    let access = rsyslog.wait_for_lines(LogFile::Access, 5, WAIT)?;
    std::thread::sleep(Duration::from_millis(500));
    let access_now = rsyslog.lines(LogFile::Access);
    assert_eq!(
        access_now.len(),
        5,
        "one line per request, none for the null connection:\n{}",
        access_now.join("\n")
    );
    drop(access);
    let message = |line: &str| -> String {
        let start = line.find("]: ").expect("haproxy[pid]: tag") + 3;
        line[start..].to_owned()
    };
    let find = |needle: &str| -> String {
        access_now
            .iter()
            .find(|l| l.contains(needle))
            .map(|l| message(l))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", access_now.join("\n")))
    };
    for needle in ["/index.html", "/denied", "<BADREQ>"] {
        let haproxy = find(needle);
        let ours = reformat::httplog(&haproxy);
        assert_eq!(ours, haproxy);
    }
    let haproxy_clf = find("\"GET /clf HTTP/1.1\"");
    assert_eq!(reformat::clf(&haproxy_clf), haproxy_clf);
    let haproxy_tcp = find(" tcpfe ");
    assert_eq!(reformat::tcplog(&haproxy_tcp), haproxy_tcp);
    for line in [down_line, up_line] {
        let haproxy = message(&line);
        assert_eq!(reformat::server_event(&haproxy), haproxy);
    }
    Ok(())
}

/// Reads HAProxy's lines into lbd's record and event types and formats
/// them with lbd: the dates are spliced from HAProxy's line after a shape
/// check (lb-tests has no date parser); every other byte is lbd's.
mod reformat {
    use lbd::log::event::{CheckOutcome, CheckStatus, ServerTransition};
    use lbd::log::format;
    use lbd::log::{AccessRecord, RecordMode, TerminationState, Zone};
    use std::{sync::Arc, time::Duration};

    fn timer(text: &str) -> Option<Duration> {
        let n: i64 = text.parse().expect("timer");
        (n >= 0).then(|| Duration::from_millis(n as u64))
    }

    fn number(text: &str) -> u32 {
        text.parse().expect("number")
    }

    fn record(mode: RecordMode, client: &str, frontend: &str) -> AccessRecord {
        let client = match client.rsplit_once(':') {
            Some((ip, port)) => format!("{ip}:{port}"),
            None => panic!("client {client}"),
        };
        AccessRecord::new(
            mode,
            client.parse().expect("client address"),
            "198.18.0.100:80".parse().expect("addr"),
            Arc::from(frontend),
            std::time::SystemTime::now(),
        )
    }

    fn backend_server(r: &mut AccessRecord, text: &str) {
        let (backend, server) = text.split_once('/').expect("backend/server");
        if backend != &*r.frontend {
            r.backend = Some(Arc::from(backend));
        }
        if server != "<NOSRV>" {
            r.server = Some(Arc::from(server));
        }
    }

    fn counts(r: &mut AccessRecord, slashed: &[&str]) {
        r.concurrency.process = number(slashed[0]);
        r.concurrency.frontend = number(slashed[1]);
        r.concurrency.backend = number(slashed[2]);
        r.concurrency.server = number(slashed[3]);
        r.redispatched = slashed[4].starts_with('+');
        r.retries = number(slashed[4].trim_start_matches('+'));
    }

    fn queues(r: &mut AccessRecord, text: &str) {
        let (sq, bq) = text.split_once('/').expect("sq/bq");
        r.concurrency.server_queue = number(sq);
        r.concurrency.backend_queue = number(bq);
    }

    /// Replaces the first `[...]` of `ours` by `theirs`' after checking
    /// the shape `dd/Mmm/yyyy:hh:mm:ss` + `suffix_len` more characters.
    fn splice_date(ours: &str, theirs: &str) -> String {
        let bracket = |s: &str| {
            let open = s.find('[').expect("[");
            let close = s.find(']').expect("]");
            (open, close)
        };
        let (o1, c1) = bracket(ours);
        let (o2, c2) = bracket(theirs);
        let (a, b) = (&ours[o1..=c1], &theirs[o2..=c2]);
        assert_eq!(a.len(), b.len(), "date shape {a} vs {b}");
        for (x, y) in a.chars().zip(b.chars()) {
            assert_eq!(
                x.is_ascii_digit(),
                y.is_ascii_digit(),
                "date shape {a} vs {b}"
            );
        }
        format!("{}{}{}", &ours[..o1], b, &ours[c1 + 1..])
    }

    fn fix_ms(ours: &str, theirs: &str, index: usize) -> String {
        // CLF's %ms (accept date milliseconds) comes from the date we did
        // not parse: take HAProxy's, keeping lbd's padding checked.
        let mut fields: Vec<&str> = ours.split(' ').collect();
        let theirs_fields: Vec<&str> = theirs.split(' ').collect();
        assert_eq!(fields[index].len(), 3);
        assert_eq!(theirs_fields[index].len(), 3, "%ms is 3 digits");
        fields[index] = theirs_fields[index];
        fields.join(" ")
    }

    pub fn httplog(line: &str) -> String {
        let (head, request) = line.split_once(" \"").expect("request line");
        let f: Vec<&str> = head.split(' ').collect();
        let mut r = record(RecordMode::Http, f[0], f[2]);
        backend_server(&mut r, f[3]);
        let t: Vec<&str> = f[4].split('/').collect();
        r.timers.request = timer(t[0]);
        r.timers.queue = timer(t[1]);
        r.timers.connect = timer(t[2]);
        r.timers.response = timer(t[3]);
        r.timers.active = timer(t[4]).expect("Ta");
        r.status = u16::try_from(f[5].parse::<i32>().expect("status")).ok();
        r.bytes_to_client = f[6].parse().expect("bytes");
        r.bytes_from_client = 1;
        assert_eq!((f[7], f[8]), ("-", "-"), "no cookies captured");
        r.termination = TerminationState::parse(f[9]).expect("tsc");
        counts(&mut r, &f[10].split('/').collect::<Vec<_>>());
        queues(&mut r, f[11]);
        assert_eq!(f.len(), 12, "no header captures: {line}");
        let request = request.strip_suffix('"').expect("closing quote");
        if request != "<BADREQ>" {
            // Undo HAProxy's #XX escaping to get the raw request line.
            r.request_line = Some(unescape(request));
        }
        splice_date(&format::httplog(&r, Zone::Local), line)
    }

    pub fn tcplog(line: &str) -> String {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 9, "tcplog fields: {line}");
        let mut r = record(RecordMode::Tcp, f[0], f[2]);
        backend_server(&mut r, f[3]);
        let t: Vec<&str> = f[4].split('/').collect();
        r.timers.queue = timer(t[0]);
        r.timers.connect = timer(t[1]);
        r.timers.total = timer(t[2]).expect("Tt");
        r.bytes_to_client = f[5].parse().expect("bytes");
        r.termination = TerminationState::parse(f[6]).expect("ts");
        counts(&mut r, &f[7].split('/').collect::<Vec<_>>());
        queues(&mut r, f[8]);
        splice_date(&format::tcplog(&r, Zone::Local), line)
    }

    pub fn clf(line: &str) -> String {
        let quoted: Vec<&str> = line.split('"').collect();
        // 0: `ci - - [date] `, 1: request, 2: ` ST B `, ...
        let head: Vec<&str> = quoted[0].split(' ').collect();
        let mid: Vec<&str> = quoted[2].split(' ').collect();
        let after: Vec<&str> = quoted[6].split(' ').collect();
        let frontend = quoted[7];
        let mut r = record(
            RecordMode::Http,
            &format!("{}:{}", head[0], after[1]),
            frontend,
        );
        r.request_line = Some(unescape(quoted[1]));
        r.status = mid[1].parse().ok();
        r.bytes_to_client = mid[2].parse().expect("bytes");
        backend_server(&mut r, &format!("{}/{}", quoted[9], quoted[11]));
        let t: Vec<&str> = quoted[12].split(' ').filter(|s| !s.is_empty()).collect();
        r.timers.request = timer(t[0]);
        r.timers.queue = timer(t[1]);
        r.timers.connect = timer(t[2]);
        r.timers.response = timer(t[3]);
        r.timers.active = timer(t[4]).expect("Ta");
        r.termination = TerminationState::parse(t[5]).expect("tsc");
        counts(&mut r, &t[6..11]);
        queues(&mut r, &format!("{}/{}", t[11], t[12]));
        let ours = splice_date(&format::clf(&r), line);
        fix_ms(&ours, line, 13)
    }

    pub fn server_event(message: &str) -> String {
        // "Server app/web2 is DOWN, reason: ..., info: \"...\", check
        // duration: 0ms. 1 active and 0 backup servers left. ..."
        let words: Vec<&str> = message.split(' ').collect();
        let (backend, server) = words[1].split_once('/').expect("backend/server");
        let up = words[3].starts_with("UP");
        let reason = message
            .split(", reason: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .expect("reason");
        let status = [
            CheckStatus::Layer4Connection,
            CheckStatus::Layer4Ok,
            CheckStatus::Layer4Timeout,
            CheckStatus::Layer7Ok,
            CheckStatus::Layer7WrongStatus,
        ]
        .into_iter()
        .find(|s| s.description() == reason)
        .expect("known reason");
        let info = message
            .split(", info: \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned);
        let duration = message
            .split("check duration: ")
            .nth(1)
            .and_then(|r| r.split("ms").next())
            .map(|n| Duration::from_millis(n.parse().expect("ms")));
        let tail = message.split("ms. ").nth(1).expect("counts");
        let n: Vec<u32> = tail
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("count"))
            .collect();
        let mut event = ServerTransition {
            backend: backend.into(),
            server: server.into(),
            backup: false,
            up,
            check: Some(CheckOutcome {
                status,
                code: None,
                info,
                duration,
            }),
            active_servers: n[0],
            backup_servers: n[1],
            sessions_active: 0,
            requeued: 0,
            queued: 0,
        };
        if up {
            event.requeued = n[2];
            event.queued = n[3];
        } else {
            event.sessions_active = n[2];
            event.requeued = n[3];
            event.queued = n[4];
        }
        event.message()
    }

    fn unescape(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'#' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }
}

/// End to end through lbd's proxy: lbd runs in the load balancer's
/// namespace with `log 127.0.0.1 local2` and rsyslogd beside it, as in the
/// seed. A request through an http frontend becomes an httplog line in the
/// access file, a tcp-mode connection a tcplog line, a connection that
/// sends nothing no line (dontlognull), and a server whose nginx stops a
/// DOWN line in the info file.
#[test]
fn proxy_requests_and_server_events_reach_rsyslog() -> anyhow::Result<()> {
    use lb_tests::nginx::Nginx;
    use lb_tests::topology::{backend_addr, lbd_binary, DsrLab, CLIENT_ADDR};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};

    const L7_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 110);
    let mut lab = DsrLab::build(2)?;
    lab.lb()
        .ip(&["addr", "add", &format!("{L7_VIP}/32"), "dev", "eth0"])?;
    let rsyslog = Rsyslog::start(lab.lb(), "127.0.0.1:514".parse()?, "local2", false)?;
    let mut nginx = Vec::new();
    for (i, backend) in lab.backends.iter().enumerate() {
        let addr = SocketAddr::from((backend_addr(i), 8081));
        nginx.push(Nginx::start(
            &backend.ns,
            &format!("web{}", i + 1),
            &[addr],
        )?);
    }
    let servers = |prefix: &str| -> String {
        (0..2)
            .map(|i| {
                format!(
                    "[[backend.server]]\nname = \"{prefix}{}\"\naddress = \"{}:8081\"\ncheck = true\ninter = \"200ms\"\nrise = 1\nfall = 1\n",
                    i + 1,
                    backend_addr(i)
                )
            })
            .collect()
    };
    let config = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\n\n\
         [global]\n[[global.log]]\ntarget = \"127.0.0.1:514\"\nfacility = \"local2\"\n\n\
         [defaults]\nmode = \"http\"\nlog = true\ndontlognull = true\n\n\
         [[frontend]]\nname = \"main\"\nbind = [\"{L7_VIP}:80\"]\nlog_format = \"httplog\"\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n{}\n\
         [[frontend]]\nname = \"kube\"\nmode = \"tcp\"\nbind = [\"{L7_VIP}:81\"]\nlog_format = \"tcplog\"\ndefault_backend = \"kubetcp\"\n\n\
         [[backend]]\nname = \"kubetcp\"\nmode = \"tcp\"\nbalance = \"roundrobin\"\n{}",
        lab.instance,
        servers("web"),
        servers("k")
    );
    lab.write_config(&config)?;
    lab.spawn_lbd(0, &lbd_binary())?;
    let exchange = |port: u16, request: &str| -> anyhow::Result<String> {
        let target = SocketAddr::from((L7_VIP, port));
        lab.client.run_in(|| {
            lb_tests::traffic::exchange_once_listening(target, request.as_bytes(), WAIT)
        })?
    };
    let reply = exchange(
        80,
        "GET /e2e?x=1 HTTP/1.1\r\nHost: lbt\r\nConnection: close\r\n\r\n",
    )
    .map_err(|e| anyhow::anyhow!("{e}; lbd log:\n{}", lab.lbd_log()))?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let reply = exchange(
        81,
        "GET /tcp HTTP/1.1\r\nHost: lbt\r\nConnection: close\r\n\r\n",
    )?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Nothing sent: not logged.
    lab.client
        .run_in(|| TcpStream::connect((L7_VIP, 80)).map(drop))??;

    let http = rsyslog.wait_for_line(LogFile::Access, WAIT, |l| {
        l.contains("\"GET /e2e?x=1 HTTP/1.1\"")
    })?;
    let tcp = rsyslog.wait_for_line(LogFile::Access, WAIT, |l| l.contains(" kube kubetcp/"))?;
    let (_, rest) = split_file_line(&http);
    let tag = "lbd[";
    let message = &rest[rest.find("]: ").expect("tag") + 3..];
    assert!(rest.contains(tag), "{http}");
    // The line is a well-formed httplog line (lbd reformats it identically
    // from its fields) with the facts of this request.
    assert_eq!(reformat::httplog(message), message);
    let fields: Vec<&str> = message.split(' ').collect();
    assert!(
        fields[0].starts_with(&format!("{CLIENT_ADDR}:")),
        "{message}"
    );
    assert_eq!(fields[2], "main");
    assert!(
        fields[3] == "app/web1" || fields[3] == "app/web2",
        "{message}"
    );
    assert_eq!((fields[5], fields[9]), ("200", "----"), "{message}");
    assert!(fields[6].parse::<u64>()? > 0, "{message}");

    let message = &tcp[tcp.find("]: ").expect("tag") + 3..];
    assert_eq!(reformat::tcplog(message), message);
    let fields: Vec<&str> = message.split(' ').collect();
    assert!(
        fields[0].starts_with(&format!("{CLIENT_ADDR}:")),
        "{message}"
    );
    assert_eq!(fields[6], "--", "{message}");
    assert!(fields[5].parse::<u64>()? > 0, "{message}");

    // web2's nginx stops: its checks fail, the DOWN line is a notice-or-worse
    // line in the info file, never in the access file.
    nginx[1].stop();
    let down = rsyslog.wait_for_line(LogFile::Info, WAIT, |l| {
        l.contains("Server app/web2 is DOWN")
    })?;
    assert!(down.contains("reason: Layer4 connection problem"), "{down}");
    std::thread::sleep(Duration::from_millis(500));
    let access = rsyslog.lines(LogFile::Access);
    assert_eq!(
        access.len(),
        2,
        "two access lines, none for the null connection or events:\n{}",
        access.join("\n")
    );
    Ok(())
}

/// The fields lbd fills from its own state, side by side with HAProxy 2.6
/// in the same namespace, over the same nginx server, logging to the same
/// rsyslog, each given the same requests: `%B` (the bytes the client
/// received: head and body), `%ac/%fc/%bc/%sc/%rc` (connection counts at
/// log time, with one idle client connection held open and three requests
/// on a server with `maxconn 1`), `%sq/%bq` (the queue positions of the
/// two requests that waited) and `%rc` with its termination state for a
/// server that refuses every connection (`retries 2`, with HAProxy's
/// turn-around before each retry). Each line of lbd's must carry
/// HAProxy's values; the queued ones are served in arrival order.
#[test]
fn log_counts_queues_retries_and_bytes_match_haproxy() -> anyhow::Result<()> {
    use lb_tests::nginx::{Nginx, NginxOptions};
    use lb_tests::process::ChildGuard;
    use lb_tests::topology::{backend_addr, lbd_binary, DsrLab, TempDir};
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};

    const L7_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 110);
    /// lbd's ports; HAProxy's are 10 more.
    const LBD_MAIN: u16 = 80;
    const LBD_DEAD: u16 = 84;
    const HAPROXY_OFFSET: u16 = 10;
    let mut lab = DsrLab::build(1)?;
    lab.lb()
        .ip(&["addr", "add", &format!("{L7_VIP}/32"), "dev", "eth0"])?;
    let rsyslog = Rsyslog::start(lab.lb(), "127.0.0.1:514".parse()?, "local2", false)?;
    let server = SocketAddr::from((backend_addr(0), 8081));
    let mut options = NginxOptions::new("web1", &[server]);
    options.slow = Some(Duration::from_millis(800));
    let _nginx = Nginx::start_with(&lab.backends[0].ns, options)?;
    // Nothing listens on port 9 of the backend: every connect is refused.
    let dead = SocketAddr::from((backend_addr(0), 9));

    let config = format!(
        "[instance]\nname = \"{}\"\ninterface = \"eth0\"\n\n\
         [global]\n[[global.log]]\ntarget = \"127.0.0.1:514\"\nfacility = \"local2\"\n\n\
         [defaults]\nmode = \"http\"\nlog = true\ndontlognull = true\n\
         timeout = {{ http_request = \"30s\", client = \"30s\", server = \"30s\" }}\n\n\
         [[frontend]]\nname = \"main\"\nbind = [\"{L7_VIP}:{LBD_MAIN}\"]\nlog_format = \"httplog\"\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"web1\"\naddress = \"{server}\"\nmaxconn = 1\n\n\
         [[frontend]]\nname = \"fail\"\nbind = [\"{L7_VIP}:{LBD_DEAD}\"]\nlog_format = \"httplog\"\ndefault_backend = \"dead\"\n\n\
         [[backend]]\nname = \"dead\"\nretries = 2\n[[backend.server]]\nname = \"gone\"\naddress = \"{dead}\"\n",
        lab.instance,
    );
    lab.write_config(&config)?;
    lab.spawn_lbd(0, &lbd_binary())?;

    let dir = TempDir::create(&lb_tests::netns::unique_name("haproxy"))?;
    let conf = dir.path.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  log 127.0.0.1 local2\n  maxconn 100\n\
             defaults\n  mode http\n  log global\n  option httplog\n  option dontlognull\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  timeout queue 10s\n\
             frontend main\n  bind {L7_VIP}:{}\n  default_backend app\n\
             backend app\n  server web1 {server} maxconn 1\n\
             frontend fail\n  bind {L7_VIP}:{}\n  default_backend dead\n\
             backend dead\n  retries 2\n  server gone {dead}\n",
            LBD_MAIN + HAPROXY_OFFSET,
            LBD_DEAD + HAPROXY_OFFSET
        ),
    )?;
    let mut command = lab
        .lb()
        .command("haproxy", &["-db", "-f", &conf.display().to_string()]);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _haproxy = ChildGuard::spawn(command, "haproxy")?;

    let connect = |port: u16| -> anyhow::Result<TcpStream> {
        let deadline = std::time::Instant::now() + WAIT;
        lab.client.run_in(move || -> anyhow::Result<TcpStream> {
            loop {
                match TcpStream::connect((L7_VIP, port)) {
                    Ok(s) => {
                        s.set_read_timeout(Some(WAIT))?;
                        return Ok(s);
                    }
                    Err(e) if std::time::Instant::now() > deadline => return Err(e.into()),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: lbt\r\nConnection: close\r\n\r\n");
    // Each proxy in turn, the same requests; the replies' lengths by path.
    let mut received: Vec<Vec<(String, usize)>> = Vec::new();
    for offset in [0, HAPROXY_OFFSET] {
        let mut replies = Vec::new();
        let main = LBD_MAIN + offset;
        // An idle connection on the frontend all along (feconn, actconn).
        let idle = connect(main)?;
        let mut exchange = |port: u16, path: &str| -> anyhow::Result<()> {
            let mut stream = connect(port)?;
            stream.write_all(get(path).as_bytes())?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply)?;
            replies.push((path.to_owned(), reply.len()));
            // Let the proxy finish with the connection: the next line's
            // counts must not depend on how fast a closed one is reaped.
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        };
        exchange(main, "/index.html")?;
        exchange(LBD_DEAD + offset, "/refused")?;
        // Three slow requests on a server with maxconn 1, 200 ms apart:
        // the second and third wait in the backend's queue.
        let slow: Vec<TcpStream> = ["/slow?1", "/slow?2", "/slow?3"]
            .iter()
            .map(|path| -> anyhow::Result<TcpStream> {
                let mut stream = connect(main)?;
                stream.write_all(get(path).as_bytes())?;
                std::thread::sleep(Duration::from_millis(200));
                Ok(stream)
            })
            .collect::<anyhow::Result<_>>()?;
        for (mut stream, path) in slow.into_iter().zip(["/slow?1", "/slow?2", "/slow?3"]) {
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply)?;
            replies.push((path.to_owned(), reply.len()));
        }
        drop(idle);
        received.push(replies);
    }

    rsyslog.wait_for_lines(LogFile::Access, 10, WAIT)?;
    std::thread::sleep(Duration::from_millis(500));
    let lines = rsyslog.lines(LogFile::Access);
    assert_eq!(lines.len(), 10, "{}", lines.join("\n"));
    let fields_of = |tag: &str, path: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.contains(tag) && l.contains(&format!("\"GET {path} HTTP/1.1\"")))
            .unwrap_or_else(|| panic!("no {tag} line for {path}:\n{}", lines.join("\n")));
        let message = &line[line.find("]: ").expect("tag") + 3..];
        message.split(' ').map(str::to_owned).collect()
    };
    // httplog: 6 = %B, 9 = %tsc, 10 = %ac/%fc/%bc/%sc/%rc, 11 = %sq/%bq.
    // lbd's %B is every byte the client received, head and body, as the
    // manual describes it. HAProxy 2.6 counts its internal (HTX) form of
    // the response: the head without each header's ": " and CRLF (163
    // bytes on the wire were 139 in its log), so its count only brackets.
    for (path, length) in &received[0] {
        let fields = fields_of("lbd[", path);
        assert_eq!(
            fields[6],
            length.to_string(),
            "lbd's %B is what the client received: {fields:?}"
        );
    }
    for (path, length) in &received[1] {
        let fields = fields_of("haproxy[", path);
        let counted: usize = fields[6].parse()?;
        assert!(
            counted <= *length && counted > length / 2,
            "HAProxy's %B counts head and body: {counted} of {length}: {fields:?}"
        );
    }
    let compared = |fields: &[String]| -> [String; 4] { [5, 9, 10, 11].map(|i| fields[i].clone()) };
    for path in ["/index.html", "/refused"] {
        let ours = fields_of("lbd[", path);
        let theirs = fields_of("haproxy[", path);
        assert_eq!(
            compared(&ours),
            compared(&theirs),
            "{path}: status, termination, counts, queues\nlbd:     {}\nHAProxy: {}",
            ours.join(" "),
            theirs.join(" ")
        );
    }
    // The slow ones, by path: both proxies serve their queue in arrival
    // order, so each request's counts and position must be the same.
    let by_path = |tag: &str| -> Vec<[String; 4]> {
        ["/slow?1", "/slow?2", "/slow?3"]
            .iter()
            .map(|path| compared(&fields_of(tag, path)))
            .collect()
    };
    assert_eq!(by_path("lbd["), by_path("haproxy["), "{}", lines.join("\n"));
    let by_queue_time = |tag: &str| -> Vec<[String; 4]> {
        let mut lines: Vec<(u64, [String; 4])> = ["/slow?1", "/slow?2", "/slow?3"]
            .iter()
            .map(|path| {
                let fields = fields_of(tag, path);
                let queued = fields[4].split('/').nth(1).and_then(|t| t.parse().ok());
                (queued.unwrap_or(0), compared(&fields))
            })
            .collect();
        lines.sort();
        lines.into_iter().map(|(_, fields)| fields).collect()
    };
    // The refused connects: HAProxy waits a turn-around of min(1 s,
    // timeout connect) before each retry on the same server, so two
    // retries take about 2 s (`%Ta`, the last timer), on both proxies.
    let total = |tag: &str| -> u64 {
        let fields = fields_of(tag, "/refused");
        fields[4]
            .rsplit('/')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    let (ours, theirs) = (total("lbd["), total("haproxy["));
    assert!(
        (1900..2600).contains(&ours) && ours.abs_diff(theirs) < 300,
        "two turn-arounds: lbd {ours} ms, HAProxy {theirs} ms\n{}",
        lines.join("\n")
    );
    // Not all zero: the counts and queues were really measured.
    assert!(
        by_queue_time("lbd[")[2][3] == "0/2",
        "the last served waited behind one: {}",
        lines.join("\n")
    );
    assert_eq!(
        fields_of("lbd[", "/refused")[10].rsplit('/').next(),
        Some("2")
    );
    Ok(())
}
