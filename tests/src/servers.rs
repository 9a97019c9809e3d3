//! Backend servers run as threads of the test process: each socket is
//! created inside the backend's namespace and then served from an ordinary
//! thread. Every server answers with its backend's name, so the client
//! learns which backend a flow reached.
use crate::netns::Netns;
use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

const POLL: Duration = Duration::from_millis(20);

pub struct NameServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl NameServer {
    /// TCP: on connect, and for every line received, writes "NAME\n".
    /// UDP: answers every datagram with "NAME" (bind it to the VIP so the
    /// reply's source is the VIP).
    pub fn start(
        ns: &Netns,
        name: &str,
        tcp: Option<SocketAddr>,
        udp: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if let Some(addr) = tcp {
            let listener = ns.run_in(|| TcpListener::bind(addr))??;
            listener.set_nonblocking(true)?;
            let (stop, name) = (stop.clone(), name.to_owned());
            threads.push(std::thread::spawn(move || {
                serve_tcp(listener, &name, &stop)
            }));
        }
        if let Some(addr) = udp {
            let socket = ns.run_in(|| UdpSocket::bind(addr))??;
            socket.set_read_timeout(Some(POLL))?;
            let (stop, name) = (stop.clone(), name.to_owned());
            threads.push(std::thread::spawn(move || serve_udp(socket, &name, &stop)));
        }
        Ok(NameServer { stop, threads })
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve_tcp(listener: TcpListener, name: &str, stop: &Arc<AtomicBool>) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (stop, name) = (stop.clone(), name.to_owned());
                connections.push(std::thread::spawn(move || {
                    serve_connection(stream, &name, &stop)
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => std::thread::sleep(POLL),
        }
        connections.retain(|c: &JoinHandle<()>| !c.is_finished());
    }
    for connection in connections {
        let _ = connection.join();
    }
}

fn serve_connection(stream: TcpStream, name: &str, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if writer.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                line.clear();
                if writer.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn serve_udp(socket: UdpSocket, name: &str, stop: &AtomicBool) {
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((_, peer)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(name.as_bytes(), peer);
        }
    }
}

/// A minimal HTTP/1.1 server (keep-alive, any method and path) answering
/// every request with the current `status` and the backend's name as body.
pub struct HttpServer {
    pub status: Arc<std::sync::atomic::AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(ns: &Netns, name: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = ns.run_in(|| TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, name) = (stop.clone(), status.clone(), name.to_owned());
        let thread = std::thread::spawn(move || {
            let mut connections: Vec<JoinHandle<()>> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, st, name) = (s.clone(), st.clone(), name.clone());
                        connections.push(std::thread::spawn(move || {
                            serve_http(stream, &name, &st, &s)
                        }));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
                connections.retain(|c| !c.is_finished());
            }
            for c in connections {
                let _ = c.join();
            }
        });
        Ok(HttpServer {
            status,
            stop,
            thread: Some(thread),
        })
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_http(
    stream: TcpStream,
    name: &str,
    status: &std::sync::atomic::AtomicU16,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut in_headers = false;
    let mut close = false;
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                let header = line.trim_end().to_ascii_lowercase();
                line.clear();
                if !in_headers {
                    in_headers = true;
                    close = false;
                    continue;
                }
                if header == "connection: close" {
                    close = true;
                }
                if header.is_empty() {
                    in_headers = false;
                    let code = status.load(Ordering::Relaxed);
                    let response = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{name}",
                        name.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    );
                    if writer.write_all(response.as_bytes()).is_err() || close {
                        return;
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
