//! A headless Chromium in a network namespace, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`): chromedriver is started
//! with `ip netns exec`, and every WebDriver request is sent from a thread
//! that entered that namespace (the root namespace has no route to a lab).
//! A small HTTP/1.1 client is enough for WebDriver's JSON requests, and
//! serves the tests' own raw requests to the stats page too.
use crate::{netns::Netns, process::ChildGuard, topology::TempDir};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), read to the
/// end. Call it inside the namespace.
pub fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    // Read the head, then the body by its length (chromedriver keeps the
    // connection open whatever the request says), chunks, or to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the end of the head");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < length {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        body.truncate(length);
    } else if chunked {
        while !body.windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
    } else {
        stream.read_to_end(&mut body)?;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = if chunked { dechunk(&text) } else { text };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// `Authorization: Basic ...` for `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// chromedriver and the Chromium it starts, in a namespace.
pub struct Browser<'a> {
    ns: &'a Netns,
    driver_address: SocketAddr,
    session: String,
    profile: TempDir,
    driver: Option<ChildGuard>,
}

const DRIVER_PORT: u16 = 9515;

impl<'a> Browser<'a> {
    /// Starts chromedriver in `ns` and opens a headless session.
    pub fn start(ns: &'a Netns) -> anyhow::Result<Browser<'a>> {
        ns.ip(&["link", "set", "lo", "up"])?;
        let profile = TempDir::create(&crate::netns::unique_name("chromium"))?;
        let mut command = ns.command(
            "chromedriver",
            &[&format!("--port={DRIVER_PORT}"), "--allowed-ips=127.0.0.1"],
        );
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let driver = ChildGuard::spawn(command, "chromedriver")?;
        let driver_address: SocketAddr = ([127, 0, 0, 1], DRIVER_PORT).into();
        let mut browser = Browser {
            ns,
            driver_address,
            session: String::new(),
            profile,
            driver: Some(driver),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while browser.call("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer within 15 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile_dir = browser.profile.path.display().to_string();
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/lib/chromium/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run",
                        "--disable-background-networking", "--disable-extensions",
                        "--disable-component-update", "--disable-sync",
                        "--window-size=1600,1200",
                        format!("--user-data-dir={profile_dir}"),
                    ]
                }
            }}
        });
        let created = browser.call("POST", "/session", Some(capabilities))?;
        browser.session = created["sessionId"]
            .as_str()
            .context("no session id")?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command, from inside the namespace.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let address = self.driver_address;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let response = self.ns.run_in(|| {
            http(
                address,
                method,
                path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
        })??;
        let value: Value = serde_json::from_str(&response.body)
            .with_context(|| format!("WebDriver reply: {}", response.body))?;
        if response.status != 200 {
            bail!("WebDriver {path}: {} {}", response.status, value["value"]);
        }
        Ok(value["value"].clone())
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.session_call("POST", "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn eval(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Clicks the first element matching `selector`, finding it again if
    /// the page replaced it in between (a live-updating page does), or
    /// while the page is still loading: after a form's POST the browser
    /// follows the 303 to a new document, and a lookup made in between
    /// finds nothing. An element that never shows up still fails, after
    /// `CLICK_PATIENCE`.
    pub fn click(&self, selector: &str) -> anyhow::Result<()> {
        const CLICK_PATIENCE: Duration = Duration::from_secs(5);
        let deadline = Instant::now() + CLICK_PATIENCE;
        loop {
            match self.click_once(selector) {
                Err(e)
                    if Instant::now() < deadline
                        && ["stale element", "no such element"]
                            .iter()
                            .any(|passing| e.to_string().contains(passing)) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn click_once(&self, selector: &str) -> anyhow::Result<()> {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": selector })),
        )?;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .context("no element id")?
            .to_owned();
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})))?;
        Ok(())
    }

    /// The page as a PNG.
    pub fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        use base64::Engine as _;
        let data = self.session_call("GET", "/screenshot", None)?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data.as_str().context("no image")?)?)
    }

    /// Polls `script` until it returns true.
    pub fn wait_for(&self, script: &str, args: Value, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script, args.clone())?.as_bool() == Some(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("still false after {timeout:?}: {script}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// PIDs of the Chromium processes started for this browser's profile.
    fn chromium_pids(&self) -> Vec<i32> {
        let marker = format!("--user-data-dir={}", self.profile.path.display());
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|arg| arg == marker)
                    .then_some(pid)
            })
            .collect()
    }
}

impl Drop for Browser<'_> {
    /// Ends the session (chromedriver quits Chromium), stops chromedriver by
    /// its PID, then any Chromium process of this profile that is left.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        drop(self.driver.take());
        for pid in self.chromium_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
