//! What nothing may break (issue 10): VRRP adverts leave on time whatever
//! the control path does, running out of file descriptors takes no backend
//! down, and a start that fails never stops a data plane that forwards.
//! Needs root.
use lb_tests::{
    adverts::{largest_gap, AdvertCapture},
    ha::{wait_state, State},
    topology::{backend_name, lb_addr, lbd_binary, lbd_cli, DsrLab, VIP},
};
use std::{
    io::{BufRead, BufReader},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// The lab's configuration with 100 ms TCP checks (rise 1, fall 1) on its
/// first service (web).
fn config_with_fast_checks(lab: &DsrLab) -> String {
    let check =
        "health_check = { kind = \"tcp\", interval = 0.1, timeout = 0.5, rise = 1, fall = 1 }";
    lab.config(2)
        .replacen("mode = \"dsr\"\n", &format!("mode = \"dsr\"\n{check}\n"), 1)
}

/// Drains the lab's first backend with `lbd backend`, retrying until the
/// control socket answers (within 5 s).
fn drain_once_the_control_socket_answers(lbd: &Path, lab: &DsrLab) {
    let backend = lab.backends[0].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (ok, out) = lbd_cli(
            lbd,
            &[
                "backend",
                "--instance",
                &lab.instance,
                "web",
                &backend,
                "drain",
            ],
        );
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn xdp_attached(lab: &DsrLab) -> bool {
    lab.lb()
        .ip(&["link", "show", "eth0"])
        .unwrap()
        .contains("prog/xdp")
}

/// Connections through the VIP from a few source ports all answered by
/// one of the lab's backends.
fn assert_forwarding(lab: &DsrLab, ports: std::ops::Range<u16>) {
    let names: Vec<String> = (0..lab.backends.len()).map(backend_name).collect();
    let answers = lab.tcp_names(ports.clone()).unwrap();
    assert_eq!(answers.len(), ports.len());
    for (port, name) in answers {
        assert!(names.contains(&name), "port {port}: {name}");
    }
}

/// Issue 10 item 1. A VRRPv3 pair at 10 ms adverts; on the master, in a
/// loop: reloads (each of which waited 500 ms for the ARP reply of a
/// backend nobody answers for, in the daemon's loop), drains, enables,
/// status queries and SIGHUPs. The master's adverts, as the wire sees
/// them, never pause longer than the interval + 20 ms, and the backup
/// never moves.
#[test]
fn reloads_drains_and_status_queries_never_delay_vrrp_adverts() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build_ha(2, 2).unwrap();
    let section = |priority: u8| {
        format!(
            "\n[[vrrp]]\nname = \"VI_1\"\nversion = 3\nvrid = 61\npriority = {priority}\nadvert_int = 0.01\nvirtual_ipaddress = [\"{VIP}\"]\n"
        )
    };
    let unresolvable = format!(
        "\n[[service]]\nname = \"slow\"\nvip = \"{VIP}\"\nport = 8443\nprotocol = \"tcp\"\nmode = \"dsr\"\n[[service.backend]]\naddress = \"198.18.0.250\"\nweight = 1\n"
    );
    let config_a = format!("{}{unresolvable}{}", lab.config_for(0, 2), section(200));
    // Every reload changes a weight, so each one reprograms the tables.
    let config_b = config_a.replacen("weight = 1", "weight = 2", 1);
    lab.write_config_of(0, &config_a).unwrap();
    lab.write_config_of(1, &format!("{}{}", lab.config_for(1, 2), section(100)))
        .unwrap();
    lab.spawn_lbd(0, &lbd).unwrap();
    wait_state(&lab, 0, &lbd, State::Master, Duration::from_secs(10));
    lab.spawn_lbd(1, &lbd).unwrap();
    wait_state(&lab, 1, &lbd, State::Backup, Duration::from_secs(10));
    let capture = AdvertCapture::open(&lab.client, lb_tests::topology::CLIENT_ADDR).unwrap();

    let instance = lab.lbs[0].instance.clone();
    let pid = lab.lbd_pid_of(0).unwrap();
    let done = AtomicBool::new(false);
    let reloads = AtomicUsize::new(0);
    let times = std::thread::scope(|scope| {
        scope.spawn(|| {
            let backend = lab.backends[0].addr.to_string();
            let mut flip = false;
            while !done.load(Ordering::Relaxed) {
                flip = !flip;
                let text = if flip { &config_b } else { &config_a };
                lab.write_config_of(0, text).unwrap();
                let (ok, out) = lbd_cli(&lbd, &["reload", "--instance", &instance]);
                assert!(ok, "{out}");
                reloads.fetch_add(1, Ordering::Relaxed);
                for state in ["drain", "enable"] {
                    let (ok, out) = lbd_cli(
                        &lbd,
                        &["backend", "--instance", &instance, "web", &backend, state],
                    );
                    assert!(ok, "{out}");
                }
                let (ok, out) = lbd_cli(&lbd, &["status", "--instance", &instance, "--json"]);
                assert!(ok, "{out}");
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .unwrap();
            }
        });
        let times = capture.collect(lb_addr(0), Duration::from_secs(4));
        done.store(true, Ordering::Relaxed);
        times
    });

    let reloads = reloads.load(Ordering::Relaxed);
    let gap = largest_gap(&times);
    assert!(
        gap <= Duration::from_millis(30),
        "adverts paused for {gap:?} (limit 10 ms + 20 ms) during {reloads} reloads; log:\n{}",
        lab.lbd_log_of(0)
    );
    assert!(reloads >= 4, "only {reloads} reloads in 4 s");
    assert!(
        times.len() >= 300,
        "{} adverts in 4 s at 10 ms",
        times.len()
    );
    let backup = lab.status_of(1, &lbd).unwrap();
    assert_eq!(backup.vrrp[0].state, State::Backup);
    assert_eq!(
        backup.vrrp[0].last_transition, "startup",
        "the backup never moved"
    );
    let master = lab.status_of(0, &lbd).unwrap();
    assert_eq!(master.vrrp[0].state, State::Master);
    assert!(
        lab.lbd_log_of(0).contains("configuration reloaded"),
        "the reloads were applied"
    );
}

/// Waits until `pid` has exited (a zombie: its guard reaps it later).
fn exits_within(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// CPU time (user + system) of `pid`, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// `pid` (lbd) uses less than half a core over 1.5 s: it does not spin.
fn assert_does_not_spin(pid: u32) {
    let cpu_before = cpu_time(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let cpu = cpu_time(pid) - cpu_before;
    assert!(
        cpu < Duration::from_millis(750),
        "lbd used {cpu:?} of CPU in 1.5 s"
    );
}

/// The soft limit on open files of `pid`.
fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Issue 10 item 2. lbd starts with a soft open-file limit of 64 (hard
/// 1024) and a client opens 400 control connections and holds them: lbd
/// raises its limit to the hard one, serves 16 connections and turns the
/// rest away, does not spin, and its 100 ms health checks keep every
/// backend up.
#[test]
fn holding_hundreds_of_control_connections_takes_no_backend_down() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&config_with_fast_checks(&lab)).unwrap();
    lab.spawn_lbd_via(0, &lbd, &["prlimit", "--nofile=64:1024", "--"])
        .unwrap();
    lab.wait_for_backends(&lbd, 4, Duration::from_secs(15))
        .unwrap();
    let pid = lab.lbd_pid().unwrap();
    assert_eq!(
        soft_nofile(pid),
        1024,
        "the soft limit is raised to the hard one"
    );

    let socket = format!("/run/lbd/{}.sock", lab.instance);
    let held: Vec<UnixStream> = (0..400)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    assert_does_not_spin(pid);
    // The last one is over the limit: told so and closed.
    let mut last = BufReader::new(held.last().unwrap());
    last.get_ref()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut line = String::new();
    last.read_line(&mut line).unwrap();
    assert!(line.contains("busy"), "{line}");

    let report = lab.status(&lbd).unwrap();
    for service in &report.services {
        for backend in &service.backends {
            assert_ne!(backend.health.as_deref(), Some("down"), "{backend:?}");
            assert!(backend.slots.unwrap_or(0) > 0, "{backend:?}");
        }
    }
    let log = lab.lbd_log();
    assert!(!log.contains("backend is DOWN"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    assert_forwarding(&lab, 27_000..27_020);

    // Once the clients go, the control socket answers again.
    drop(last);
    drop(held);
    drain_once_the_control_socket_answers(&lbd, &lab);
}

/// Issue 10 item 2, the shortage itself. A running lbd's open-file limit
/// is lowered (soft and hard) to what it uses plus 8, and a client holds
/// control connections until none is left: health checks fail with
/// EMFILE. That is this machine's shortage, not the backends': they stay
/// up and keep their slots, lbd says why, does not spin on accept, and
/// once the connections close it checks again and answers.
#[test]
fn a_descriptor_shortage_holds_every_backend_in_its_last_state() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&config_with_fast_checks(&lab)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    let pid = lab.lbd_pid().unwrap();
    let in_use = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = format!("--nofile={}:{}", in_use + 8, in_use + 8);
    let (ok, out) = {
        let out = Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &limit])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok, "{out}");

    let socket = format!("/run/lbd/{}.sock", lab.instance);
    let held: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.lbd_log().contains("could not run here") {
        let log = lab.lbd_log();
        assert!(!log.contains("backend is DOWN"), "{log}");
        assert!(
            Instant::now() < deadline,
            "no check ran out of descriptors; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_does_not_spin(pid);
    let log = lab.lbd_log();
    assert!(!log.contains("backend is DOWN"), "{log}");
    let report = lab.status(&lbd).unwrap();
    for service in &report.services {
        for backend in &service.backends {
            assert!(backend.slots.unwrap_or(0) > 0, "{backend:?}");
        }
    }
    assert_forwarding(&lab, 29_000..29_020);

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.lbd_log().contains("health checks run again") {
        assert!(Instant::now() < deadline, "{}", lab.lbd_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drain_once_the_control_socket_answers(&lbd, &lab);
    assert!(!lab.lbd_log().contains("backend is DOWN"));
}

/// Issue 10 item 3. SIGTERM keeps the data plane; the next lbd adopts it
/// and then fails to start (its control socket's path is taken by a
/// directory). Forwarding goes on: only `lbd stop` or SIGINT tears down.
#[test]
fn a_start_that_fails_after_adopting_keeps_the_data_plane_forwarding() {
    let lbd = lbd_binary();
    let mut lab = DsrLab::build(2).unwrap();
    lab.write_config(&lab.config(2)).unwrap();
    lab.start_lbd(&lbd).unwrap();
    assert!(lab.stop_lbd(), "SIGTERM: a clean exit");
    let pins = Path::new("/sys/fs/bpf").join(&lab.instance);
    assert!(pins.join("lb_link").exists());

    let socket = format!("/run/lbd/{}.sock", lab.instance);
    std::fs::create_dir(&socket).unwrap();
    lab.spawn_lbd(0, &lbd).unwrap();
    let exited = exits_within(lab.lbd_pid().unwrap(), Duration::from_secs(15));
    let _ = std::fs::remove_dir(&socket);
    let log = lab.lbd_log();
    assert!(exited, "the start fails: {log}");
    assert!(log.contains("control socket"), "{log}");
    assert!(log.contains("re-adopting the pinned maps"), "{log}");
    assert!(
        pins.join("lb_link").exists(),
        "the link stays pinned: {log}"
    );
    assert!(xdp_attached(&lab));
    assert_forwarding(&lab, 28_000..28_020);

    // A good start adopts it again; `lbd stop` is a teardown.
    lab.start_lbd(&lbd).unwrap();
    assert_forwarding(&lab, 28_100..28_120);
    // The control socket comes up just after the tables are programmed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(&socket).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, out) = lbd_cli(&lbd, &["stop", "--instance", &lab.instance]);
    assert!(ok, "{out}");
    assert!(!pins.exists());
    assert!(!xdp_attached(&lab));
}
