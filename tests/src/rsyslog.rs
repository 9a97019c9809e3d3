//! A real rsyslogd (Debian's package) inside a namespace, set up as the
//! seeds' operators set it up for HAProxy:
//!
//! ```text
//! $ModLoad imudp
//! $UDPServerAddress 127.0.0.1
//! $UDPServerRun 514
//! local2.=info     /var/log/haproxy-access.log    #For Access Log
//! local2.notice    /var/log/haproxy-info.log      #For Service Info
//! ```
//!
//! with the address, port, facility and files of the test's choosing (files
//! in a temporary directory), plus an optional unix datagram socket (the
//! `/dev/log` case) that does not touch the host's `/dev/log`. Lines are
//! written in rsyslog's traditional file format (`Mmm dd hh:mm:ss host
//! tag[pid]: msg`), as the stock rsyslog.conf of Debian and CentOS sets.
//! Stopped by PID on drop.
use crate::netns::{unique_name, Netns};
use crate::process::ChildGuard;
use crate::topology::TempDir;
use anyhow::bail;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

/// Which of the seed's two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFile {
    /// `<facility>.=info`: the access log.
    Access,
    /// `<facility>.notice`: notice and more severe (server UP/DOWN, ...).
    Info,
}

pub struct Rsyslog {
    dir: TempDir,
    guard: ChildGuard,
    udp: SocketAddr,
    unix_socket: Option<PathBuf>,
}

impl Rsyslog {
    /// rsyslogd in `ns`, receiving UDP on `udp` (the seed: 127.0.0.1:514)
    /// and filing `facility` (the seed: local2) by the seed's rules.
    /// `unix_socket`: also read a unix datagram socket in the temporary
    /// directory (its path is [`Rsyslog::unix_socket`]).
    pub fn start(
        ns: &Netns,
        udp: SocketAddr,
        facility: &str,
        unix_socket: bool,
    ) -> anyhow::Result<Self> {
        let dir = TempDir::create(&unique_name("rsyslog"))?;
        std::fs::create_dir_all(dir.path.join("work"))?;
        let socket = unix_socket.then(|| dir.path.join("log.sock"));
        let conf = dir.path.join("rsyslog.conf");
        std::fs::write(&conf, config(&dir.path, udp, facility, socket.as_deref()))?;
        // -n: stay in the foreground (the PID is rsyslogd's); -i: our own
        // pid file, not /run/rsyslogd.pid; -f: our configuration only.
        let mut command = ns.command(
            "rsyslogd",
            &[
                "-n",
                "-f",
                &conf.display().to_string(),
                "-i",
                &dir.path.join("rsyslogd.pid").display().to_string(),
            ],
        );
        command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path.join("stderr.log"))?);
        let guard = ChildGuard::spawn(command, "rsyslogd")?;
        let mut rsyslog = Rsyslog {
            dir,
            guard,
            udp,
            unix_socket: socket,
        };
        rsyslog.wait_ready(ns)?;
        Ok(rsyslog)
    }

    /// rsyslogd binds its inputs after reading the configuration: wait until
    /// the UDP port (and the unix socket) exist in the namespace.
    fn wait_ready(&mut self, ns: &Netns) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = format!(":{}", self.udp.port());
        loop {
            if let Some(status) = self.guard.try_wait() {
                bail!("rsyslogd exited ({status}): {}", self.stderr());
            }
            let sockets = ns.exec("ss", &["-Hlun"])?;
            let udp_ready = sockets.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|a| a.ends_with(&port))
            });
            let unix_ready = self.unix_socket.as_ref().is_none_or(|p| p.exists());
            if udp_ready && unix_ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "rsyslogd not listening on {} after 10 s: {}",
                    self.udp,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn udp(&self) -> SocketAddr {
        self.udp
    }

    /// The unix datagram socket rsyslogd reads, if asked for.
    pub fn unix_socket(&self) -> Option<&Path> {
        self.unix_socket.as_deref()
    }

    pub fn path(&self, file: LogFile) -> PathBuf {
        self.dir.path.join(match file {
            LogFile::Access => "haproxy-access.log",
            LogFile::Info => "haproxy-info.log",
        })
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("stderr.log")).unwrap_or_default()
    }

    /// The lines rsyslogd has written to `file` so far.
    pub fn lines(&self, file: LogFile) -> Vec<String> {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits for a line of `file` that `wanted` accepts and returns it.
    pub fn wait_for_line(
        &self,
        file: LogFile,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines(file).into_iter().find(|l| wanted(l)) {
                return Ok(line);
            }
            if Instant::now() > deadline {
                bail!(
                    "no matching line in {} within {timeout:?}; it holds:\n{}\nrsyslogd stderr: {}",
                    self.path(file).display(),
                    self.lines(file).join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `file` holds at least `count` lines and returns them.
    pub fn wait_for_lines(
        &self,
        file: LogFile,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines(file);
            if lines.len() >= count {
                return Ok(lines);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} holds {} lines, wanted {count} within {timeout:?}:\n{}",
                    self.path(file).display(),
                    lines.len(),
                    lines.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The seed's configuration, legacy directives as the seed writes them.
fn config(dir: &Path, udp: SocketAddr, facility: &str, unix_socket: Option<&Path>) -> String {
    let d = dir.display();
    let mut text = format!(
        "$WorkDirectory {d}/work\n\
         $ActionFileDefaultTemplate RSYSLOG_TraditionalFileFormat\n\
         # Provides UDP syslog reception\n\
         $ModLoad imudp\n\
         $UDPServerAddress {}\n\
         $UDPServerRun {}\n",
        udp.ip(),
        udp.port()
    );
    if let Some(socket) = unix_socket {
        // Not the system socket (/dev/log stays the host's); no rate limit,
        // so a burst of test lines is not thinned out.
        text.push_str(&format!(
            "module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{}\" RateLimit.Interval=\"0\")\n",
            socket.display()
        ));
    }
    text.push_str(&format!(
        "{facility}.=info     {d}/haproxy-access.log    #For Access Log\n\
         {facility}.notice    {d}/haproxy-info.log      #For Service Info - Backend, loadbalancer\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_seed() {
        let text = config(
            Path::new("/tmp/r"),
            "127.0.0.1:514".parse().unwrap(),
            "local2",
            None,
        );
        for line in [
            "$ModLoad imudp",
            "$UDPServerAddress 127.0.0.1",
            "$UDPServerRun 514",
            "local2.=info     /tmp/r/haproxy-access.log    #For Access Log",
            "local2.notice    /tmp/r/haproxy-info.log      #For Service Info - Backend, loadbalancer",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("imuxsock"));
        let with_socket = config(
            Path::new("/tmp/r"),
            "127.0.0.1:514".parse().unwrap(),
            "local2",
            Some(Path::new("/tmp/r/log.sock")),
        );
        assert!(with_socket.contains("SysSock.Use=\"off\""));
        assert!(with_socket.contains("Socket=\"/tmp/r/log.sock\""));
    }
}
