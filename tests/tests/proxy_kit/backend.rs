//! Test backends for the proxy, threads of the test process serving from a
//! socket created in a backend's namespace: HTTP/1.1 with keep-alive, every
//! response naming the backend (`X-Backend`, and the body) and echoing what
//! the proxy sent (`X-Seen-Forwarded-For`, `X-Seen-Path`, `X-Seen-Connection`),
//! an optional per-request delay (a slow server), a broken answer on
//! `/broken` (not HTTP), and a WebSocket echo
//! (`Upgrade: websocket` -> 101, then each frame sent back). `RawServer`
//! is the accept loop under them, for tests that need other protocols.
use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

#[derive(Default)]
pub struct BackendStats {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    /// Milliseconds each request waits before its response.
    pub delay_ms: AtomicU64,
    /// Requests being served now.
    pub active: AtomicU64,
}

pub struct TestBackend {
    pub stats: Arc<BackendStats>,
    _server: RawServer,
}

impl TestBackend {
    pub fn start(
        ns: &lb_tests::netns::Netns,
        name: &str,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let stats = Arc::new(BackendStats::default());
        let (st, name) = (stats.clone(), name.to_owned());
        let server = RawServer::start(ns, addr, move |stream, stop| {
            st.connections.fetch_add(1, Relaxed);
            serve(stream, &name, &st, stop)
        })?;
        Ok(TestBackend {
            stats,
            _server: server,
        })
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Relaxed)
    }
}

/// A raw TCP server on a thread of the test, its socket bound inside a
/// namespace; `handle` serves each connection. Stopped on drop.
pub struct RawServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    pub fn start<H>(
        ns: &lb_tests::netns::Netns,
        addr: SocketAddr,
        handle: H,
    ) -> anyhow::Result<RawServer>
    where
        H: Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
    {
        let listener = ns.run_in(|| TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let running = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut connections: Vec<JoinHandle<()>> = Vec::new();
            while !running.load(Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let (handle, running) = (handle.clone(), running.clone());
                        connections.push(std::thread::spawn(move || handle(stream, &running)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                connections.retain(|c| !c.is_finished());
            }
            for c in connections {
                let _ = c.join();
            }
        });
        Ok(RawServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Head {
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn read_head(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Head> {
    let mut line = String::new();
    let mut lines = Vec::new();
    loop {
        if stop.load(Relaxed) {
            return None;
        }
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {
                let text = line.trim_end().to_owned();
                line.clear();
                if text.is_empty() {
                    if lines.is_empty() {
                        continue;
                    }
                    break;
                }
                lines.push(text);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    let path = lines[0].split_whitespace().nth(1).unwrap_or("/").to_owned();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Head { path, headers })
}

fn serve(stream: TcpStream, name: &str, stats: &BackendStats, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(head) = read_head(&mut reader, stop) {
        stats.requests.fetch_add(1, Relaxed);
        stats.active.fetch_add(1, Relaxed);
        let length: usize = head
            .get("content-length")
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .get("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().ends_with("chunked"));
        let body = if chunked {
            match read_chunked(&mut reader, stop) {
                Some(body) => body,
                None => return,
            }
        } else {
            let mut body = vec![0u8; length];
            if length > 0 && read_exact_patiently(&mut reader, &mut body, stop).is_err() {
                return;
            }
            body
        };
        let delay = stats.delay_ms.load(Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        stats.active.fetch_sub(1, Relaxed);
        if head.path == "/broken" {
            // Not HTTP: what a crashed or confused server sends.
            let _ = writer.write_all(b"SSH-2.0-not-http\r\n\r\n");
            return;
        }
        let websocket = head
            .get("upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket"));
        if websocket {
            let reply = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
            if writer.write_all(reply.as_bytes()).is_ok() {
                echo_frames(&mut reader, &mut writer, stop);
            }
            return;
        }
        let close = head
            .get("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"));
        let join = |values: Vec<&str>| {
            if values.is_empty() {
                "-".to_owned()
            } else {
                values.join(", ")
            }
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {name}\r\nX-Seen-Forwarded-For: {}\r\nX-Seen-Path: {}\r\nX-Seen-Connection: {}\r\nX-Seen-Forwarded: {}\r\nX-Seen-Body: {}\r\nX-Seen-Body-Hash: {:08x}\r\n{}\r\n{name}",
            name.len(),
            join(head.get("x-forwarded-for")),
            head.path,
            join(head.get("connection")),
            join(head.get("forwarded")),
            body.len(),
            fnv1a(&body),
            if close { "Connection: close\r\n" } else { "" },
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// FNV-1a of a request body: the test compares what the backend got with
/// what the client sent.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A line, waiting through the socket's short read timeouts.
fn read_line_patiently(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<String> {
    let mut line = Vec::new();
    loop {
        if stop.load(Relaxed) {
            return None;
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with(b"\n") => return String::from_utf8(line).ok(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

/// A chunked request body (trailers skipped).
fn read_chunked(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line_patiently(reader, stop)?;
        let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line_patiently(reader, stop)?.trim().is_empty() {}
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        read_exact_patiently(reader, &mut body[start..], stop).ok()?;
        body.truncate(start + size);
    }
}

fn read_exact_patiently(
    reader: &mut impl Read,
    buffer: &mut [u8],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buffer.len() {
        if stop.load(Relaxed) {
            return Err(ErrorKind::Interrupted.into());
        }
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads client frames (masked, short payloads) and sends each payload back
/// in an unmasked frame of the same opcode, until a close frame or EOF.
fn echo_frames(reader: &mut impl Read, writer: &mut impl Write, stop: &AtomicBool) {
    loop {
        let mut header = [0u8; 2];
        if read_exact_patiently(reader, &mut header, stop).is_err() {
            return;
        }
        let opcode = header[0] & 0x0f;
        let length = usize::from(header[1] & 0x7f);
        if length > 125 {
            return;
        }
        let mut mask = [0u8; 4];
        let mut payload = vec![0u8; length];
        if read_exact_patiently(reader, &mut mask, stop).is_err()
            || read_exact_patiently(reader, &mut payload, stop).is_err()
        {
            return;
        }
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        let mut frame = vec![0x80 | opcode, length as u8];
        frame.extend_from_slice(&payload);
        if writer.write_all(&frame).is_err() || opcode == 0x8 {
            return;
        }
    }
}
