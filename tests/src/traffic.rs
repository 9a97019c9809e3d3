//! Client-side traffic. Call these inside `Netns::run_in` of the client.
use anyhow::Context;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn bound_tcp(source: SocketAddrV4, target: SocketAddrV4) -> anyhow::Result<TcpStream> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReuseAddr, &true)?;
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &nix::sys::socket::SockaddrIn::from(source),
    )?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a fresh, owned socket.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&stream);
    nix::sys::socket::connect(raw, &nix::sys::socket::SockaddrIn::from(target))
        .with_context(|| format!("connect {source} -> {target}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// A TCP connection from `source` (either family) to `target`.
pub fn bound_tcp_any(source: SocketAddr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    // std cannot bind before connecting: a raw socket, for both families.
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
        SockaddrStorage,
    };
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    let family = if source.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(source))?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(target))
        .with_context(|| format!("connect {source} -> {target}"))?;
    // SAFETY: `fd` is a fresh, owned, connected socket.
    let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// A TCP connection through the VIP that can ask, at any time, which
/// backend it is on.
pub struct HeldConnection {
    pub source_port: u16,
    reader: BufReader<TcpStream>,
    /// The backend named in the greeting.
    pub first_backend: String,
}

impl HeldConnection {
    pub fn open(client: Ipv4Addr, source_port: u16, target: SocketAddrV4) -> anyhow::Result<Self> {
        let stream = bound_tcp(SocketAddrV4::new(client, source_port), target)?;
        let mut reader = BufReader::new(stream);
        let first_backend = read_line(&mut reader)?;
        Ok(HeldConnection {
            source_port,
            reader,
            first_backend,
        })
    }

    /// Sends a line and returns the name the backend answers with.
    pub fn ask(&mut self) -> anyhow::Result<String> {
        self.reader.get_mut().write_all(b"which\n")?;
        read_line(&mut self.reader)
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("reading the backend's name")?;
    anyhow::ensure!(
        !line.is_empty(),
        "connection closed before the backend answered"
    );
    Ok(line.trim().to_owned())
}

/// One short TCP connection per source port; returns (port, backend name).
pub fn tcp_names(
    client: Ipv4Addr,
    ports: impl IntoIterator<Item = u16>,
    target: SocketAddrV4,
) -> anyhow::Result<Vec<(u16, String)>> {
    ports
        .into_iter()
        .map(|port| {
            let connection = HeldConnection::open(client, port, target)?;
            Ok((port, connection.first_backend))
        })
        .collect()
}

/// One UDP datagram per source port; returns (port, backend name).
pub fn udp_names(
    client: Ipv4Addr,
    ports: impl IntoIterator<Item = u16>,
    target: SocketAddrV4,
    payload: &[u8],
) -> anyhow::Result<Vec<(u16, String)>> {
    let mut names = Vec::new();
    for port in ports {
        let socket = UdpSocket::bind(SocketAddr::from((client, port)))?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        socket.connect(target)?;
        socket.send(payload)?;
        let mut buffer = [0u8; 256];
        let n = socket
            .recv(&mut buffer)
            .with_context(|| format!("no UDP answer to source port {port}"))?;
        names.push((port, String::from_utf8_lossy(&buffer[..n]).into_owned()));
    }
    Ok(names)
}

/// Sends `request` to `target` and reads the reply to its end, connecting
/// again until `wait` has passed (a daemon that has just started binds its
/// frontends shortly after).
pub fn exchange_once_listening(
    target: SocketAddr,
    request: &[u8],
    wait: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + wait;
    let mut stream = loop {
        match TcpStream::connect(target) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(anyhow::Error::new(e).context(format!("connect {target}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream.set_read_timeout(Some(wait))?;
    stream.write_all(request)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
