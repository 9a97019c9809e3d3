//! A small HTTP/1.1 client for the tests (run on a thread inside the
//! client's namespace): one request per call over a kept-alive connection,
//! reading Content-Length and chunked bodies.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("-").to_owned()
    }
}

/// One connection (a single descriptor: the test holding 10,000 of them
/// counts descriptors).
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(target: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sends raw bytes (any request, valid or not) and reads one response.
    pub fn raw(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        self.reader.get_mut().write_all(request)?;
        self.read_reply()
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: test.lbd\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.raw(request.as_bytes())
    }

    pub fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut line = String::new();
        anyhow::ensure!(
            self.reader.read_line(&mut line)? > 0,
            "connection closed before a response"
        );
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            if let Some((n, v)) = text.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 101 || status == 204 || status == 304 {
            return Ok(reply);
        }
        if let Some(length) = reply
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            reply.body = vec![0; length];
            self.reader.read_exact(&mut reply.body)?;
        } else if reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                reply.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut reply.body)?;
        }
        Ok(reply)
    }

    /// True if the server closes the connection within `wait` (EOF or
    /// reset); false on a timeout or data.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let _ = self.reader.get_ref().set_read_timeout(Some(wait));
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// One request on a fresh connection.
pub fn get_once(target: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
    Client::connect(target)?.get(path, headers)
}
