//! What lbd says must be true (issue 10): control replies, `lbd stop` as
//! another user, `lbd status` of a dead daemon, file modes under any
//! umask, request-line limits, `lbd flows` while the table churns.
//! Needs root.
use lb_tests::topology::{backend_addr, lbd_binary, DsrLab};
use lbd::cli::StatusReport;
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// Runs lbd with `args` (as `nobody` when asked): (success, stdout, stderr).
fn lbd_as(lbd: &Path, nobody: bool, args: &[&str]) -> (bool, String, String) {
    let mut command = if nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(lbd);
        c
    } else {
        Command::new(lbd)
    };
    let out = command.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: impl AsRef<Path>) -> u32 {
    let path = path.as_ref();
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn status(lbd: &Path, instance: &str) -> StatusReport {
    lb_tests::lbd_status::status_of(lbd, instance).unwrap()
}

fn status_text(lbd: &Path, instance: &str) -> String {
    let (ok, out, err) = lbd_as(lbd, false, &["status", "--instance", instance]);
    assert!(ok, "{err}");
    out
}

/// A one-node lab with lbd started under `umask 000`.
fn lab_with_umask_000(lbd: &Path) -> DsrLab {
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&lab.config(2)).unwrap();
    lab.spawn_lbd_via(0, lbd, &["sh", "-c", "umask 000; exec \"$0\" \"$@\""])
        .unwrap();
    lab.wait_for_backends(lbd, 4, Duration::from_secs(15))
        .unwrap();
    lab
}

/// Items 8 and 10. Started with umask 000, lbd still makes its socket,
/// lock and pins root's alone and its state file read-only to others;
/// `nobody` can neither change a backend nor stop the instance, and
/// every such attempt fails loudly (non-zero, the reason on stderr),
/// also once the daemon is gone and only its pins are left.
#[test]
fn under_umask_000_the_files_are_root_only_and_nobody_is_refused_truthfully() {
    let lbd = lbd_binary();
    let mut lab = lab_with_umask_000(&lbd);
    let instance = lab.instance.clone();
    let run = Path::new("/run/lbd");
    let pins = Path::new("/sys/fs/bpf").join(&instance);
    assert_eq!(mode(run), 0o755);
    assert_eq!(mode(run.join(format!("{instance}.sock"))), 0o600);
    assert_eq!(mode(run.join(format!("{instance}.lock"))), 0o600);
    assert_eq!(mode(run.join(format!("{instance}.json"))), 0o644);
    assert_eq!(mode(&pins), 0o700);
    let mut pinned = 0;
    for entry in std::fs::read_dir(&pins).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        pinned += 1;
    }
    assert!(pinned >= 9, "maps and the link are pinned");

    let backend = backend_addr(0).to_string();
    let (ok, _, err) = lbd_as(
        &lbd,
        true,
        &[
            "backend",
            "--instance",
            &instance,
            "web",
            &backend,
            "disable",
        ],
    );
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, out, err) = lbd_as(&lbd, true, &["stop", "--instance", &instance]);
    assert!(!ok, "nobody's lbd stop must fail: {out}{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!out.contains("removed"), "{out}");
    let (ok, _, err) = lbd_as(&lbd, true, &["status", "--instance", &instance]);
    assert!(!ok, "nobody cannot read the maps");
    assert!(
        err.contains("cannot open the maps") && !err.contains("not running"),
        "{err}"
    );
    let report = status(&lbd, &instance);
    assert!(report.running, "the daemon still runs");
    assert!(report
        .services
        .iter()
        .all(|s| s.backends.iter().all(|b| b.slots > Some(0))));

    // Stopped by SIGTERM, the data plane stays; nobody cannot remove it
    // and says so.
    assert!(lab.stop_lbd());
    let (ok, out, err) = lbd_as(&lbd, true, &["stop", "--instance", &instance]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(pins.join("lb_services").exists(), "the pins are left");
    let (ok, out, err) = lbd_as(&lbd, false, &["stop", "--instance", &instance]);
    assert!(ok, "{err}");
    assert!(out.contains("removed the data plane"), "{out}");
    assert!(!pins.exists());
    let (ok, _, err) = lbd_as(&lbd, false, &["stop", "--instance", &instance]);
    assert!(!ok && err.contains("left nothing behind"), "{err}");
}

/// Item 9. After SIGTERM and after SIGKILL, `lbd status` says the daemon
/// is not running, the data plane is kept, and when the state was last
/// written; the pid of a dead daemon is not shown as alive.
#[test]
fn status_of_a_dead_daemon_says_not_running() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&lab.config(2)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let instance = lab.instance.clone();
    let live = status(&lbd, &instance);
    assert!(live.running);
    assert_eq!(live.pid, lab.lbd_pid());
    assert!(!status_text(&lbd, &instance).contains("not running"));

    assert!(lab.stop_lbd(), "SIGTERM");
    let after_term = status(&lbd, &instance);
    assert!(!after_term.running);
    assert_eq!(after_term.pid, None);
    assert!(after_term.link_pinned);
    let text = status_text(&lbd, &instance);
    assert!(
        text.starts_with(&format!(
            "instance {instance}: not running (data plane kept: the XDP program stays attached and forwards; last state from 20"
        )),
        "{text}"
    );
    assert!(text.contains(" UTC)"), "{text}");

    lab.start_lbd(&lbd).unwrap();
    assert!(status(&lbd, &instance).running);
    lab.kill_lbd_of(0);
    let after_kill = status(&lbd, &instance);
    assert!(!after_kill.running, "SIGKILL");
    assert_eq!(after_kill.pid, None);
    assert!(status_text(&lbd, &instance).contains("not running (data plane kept"));
}

/// Item 4. A drain the maps took but whose state file could not be
/// written is reported as applied, with the write error, not as failed;
/// once the file can be written again, it shows the drain.
#[test]
fn an_applied_drain_is_reported_applied_even_when_the_state_file_fails() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&lab.config(2)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let instance = lab.instance.clone();
    // The state file is written through this temporary name: a directory
    // there makes every write fail.
    let blocker = Path::new("/run/lbd").join(format!("{instance}.json.tmp"));
    std::fs::create_dir(&blocker).unwrap();
    let backend = backend_addr(1).to_string();
    let (ok, out, err) = lbd_as(
        &lbd,
        false,
        &["backend", "--instance", &instance, "web", &backend, "drain"],
    );
    std::fs::remove_dir(&blocker).unwrap();
    assert!(ok, "the drain took effect: {out}{err}");
    assert!(out.contains(&format!("web {backend}: drain")), "{out}");
    assert!(
        out.contains("(applied; warning: the state file could not be written"),
        "{out}"
    );
    // The tick rewrites the file within a second or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = status(&lbd, &instance);
        let web = report.services.iter().find(|s| s.port == 80).unwrap();
        let drained = web
            .backends
            .iter()
            .find(|b| b.address.to_string() == backend)
            .unwrap();
        if drained.slots == Some(0) && drained.admin.is_some_and(|a| format!("{a:?}") == "Drain") {
            break;
        }
        assert!(Instant::now() < deadline, "{report:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Item 11. A request line over 64 KiB is refused with a reply and the
/// connection closed; the daemon goes on answering.
#[test]
fn an_overlong_control_line_is_refused_and_closed() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(1).unwrap();
    lab.write_config(&lab.config(1)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let socket = Path::new("/run/lbd").join(format!("{}.sock", lab.instance));
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // 8 MiB without a newline: the daemon stops reading after 64 KiB, so
    // the write fails or blocks until the connection is closed.
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0usize;
    for _ in 0..128 {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    assert!(
        written < 8 << 20,
        "the daemon kept reading: {written} bytes"
    );
    let mut reply = String::new();
    let mut reader = BufReader::new(&stream);
    reader.read_line(&mut reply).unwrap();
    assert!(
        reply.contains("request line longer than 65536 bytes"),
        "{reply}"
    );
    // Closed: an end of file, or a reset (the daemon closed with our
    // unread bytes still queued to it).
    let mut rest = String::new();
    match reader.read_line(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection stayed open: {other:?} {rest}"),
    }
    let (ok, out, err) = lbd_as(&lbd, false, &["reload", "--instance", &lab.instance]);
    assert!(ok && out.contains("reloaded"), "{out}{err}");
}

/// Removes a test's pin directory on drop (also on panic).
struct Pins(std::path::PathBuf);
impl Drop for Pins {
    fn drop(&mut self) {
        lb_tests::topology::remove_instance_files(&self.0.file_name().unwrap().to_string_lossy());
    }
}

fn flow(n: u32) -> lb_common::FlowKey {
    lb_common::FlowKey {
        src: lb_common::ipv4_addr_bytes([198, 19, (n >> 8) as u8, n as u8]),
        dst: lb_common::ipv4_addr_bytes([198, 18, 0, 100]),
        src_port: 1024 + (n % 50_000) as u16,
        dst_port: 80,
        proto: lb_common::PROTO_TCP,
        family: lb_common::FAMILY_IPV4,
        _pad: [0; 2],
    }
}

/// Item 12. A 4,096-entry connection table that another thread keeps
/// churning (deleting flows, adding new ones, as the collector and the
/// kernel's LRU do) while `lbd flows` reads it: every row is a distinct
/// flow (the walk started over on deleted entries and listed flows twice).
#[test]
fn flows_of_a_churning_table_are_listed_once() {
    use lbd::dataplane::{embedded_object, pin_dir, Dataplane, LbMaps, MapSizes};
    use std::sync::atomic::{AtomicBool, Ordering};
    let instance = lb_tests::netns::unique_name("fl");
    let dir = pin_dir(&instance);
    std::fs::create_dir_all(&dir).unwrap();
    let _pins = Pins(dir.clone());
    let sizes = MapSizes {
        max_services: 1,
        max_backends: 4,
        ring_size: 7,
        conntrack_entries: 4096,
    };
    let _dataplane =
        Dataplane::load_with_pins(embedded_object().unwrap(), &sizes, Some(&dir)).unwrap();
    let mut maps = LbMaps::from_pins(&dir).unwrap();
    let entry = lb_common::ConnEntry {
        expires_ns: u64::MAX,
        ..Default::default()
    };
    for n in 0..4096 {
        maps.conntrack.insert(flow(n), entry, 0).unwrap();
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Replace the oldest flows by new ones, round and round.
            let mut churn = LbMaps::from_pins(&dir).unwrap();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let _ = churn.conntrack.remove(&flow(n % 8192));
                let _ = churn.conntrack.insert(flow((n + 4096) % 8192), entry, 0);
                n = n.wrapping_add(1);
            }
        });
        // Read while it churns; stop the churn before judging, so that a
        // failed check cannot leave the thread running.
        let walks: Vec<_> = (0..20)
            .map(|_| lbd::cli::flows::collect(&instance, 100_000))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let mut rows = 0;
        for flows in walks {
            let mut keys: Vec<_> = flows.unwrap().iter().map(|f| (f.client, f.vip)).collect();
            rows += keys.len();
            keys.sort();
            let listed = keys.len();
            keys.dedup();
            assert_eq!(listed, keys.len(), "a flow was listed twice");
            // Flows come and go during a walk, so it may see more than
            // 4096, but never more than the 8192 the churn cycles through.
            assert!(listed <= 8192, "{listed} rows");
        }
        assert!(rows > 20 * 1000, "the walks saw the table: {rows} rows");
    });
}
