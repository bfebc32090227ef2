//! A headless Chromium driven over WebDriver: `chromedriver` in a process
//! group of its own (so that the browsers it starts go with it), spoken to
//! with plain HTTP requests to its W3C endpoints — a handful are enough
//! to load a page and read its timings.

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request,
    header::{CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::BoxError;

/// The browser and its driver, as Debian's `chromium` and `chromium-driver`
/// install them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to answer its status endpoint.
const DRIVER_READY: Duration = Duration::from_secs(20);

/// A WebDriver session in a headless Chromium; the driver's process group
/// is killed when dropped, browsers included.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Why no browser can be driven here, if so.
    pub fn missing() -> Option<String> {
        [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .find(|path| !Path::new(path).exists())
            .map(|path| format!("{path} is not installed"))
    }

    /// Starts chromedriver and a headless Chromium with a fresh profile in
    /// `profile` (a directory that must not be in use).
    pub async fn start(profile: &Path) -> Result<Self, BoxError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|err| format!("cannot start {CHROMEDRIVER}: {err}"))?;
        let mut browser = Self {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
        };
        browser.wait_ready().await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created = browser.call(Method::POST, "/session", capabilities).await?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or("chromedriver returned no session id")?
            .to_owned();
        Ok(browser)
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn navigate(&self, url: &str) -> Result<(), BoxError> {
        self.session_call(Method::POST, "/url", json!({ "url": url }))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `return` gives the result) in the
    /// page.
    pub async fn execute(&self, script: &str) -> Result<Value, BoxError> {
        let body = json!({ "script": script, "args": [] });
        self.session_call(Method::POST, "/execute/sync", body).await
    }

    /// Has `source` run in every document the browser loads from now on,
    /// before the page's own scripts (Chrome DevTools'
    /// `Page.addScriptToEvaluateOnNewDocument`, through chromedriver).
    pub async fn before_every_page(&self, source: &str) -> Result<(), BoxError> {
        let body = json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": { "source": source },
        });
        self.session_call(Method::POST, "/goog/cdp/execute", body)
            .await
            .map(drop)
    }

    /// Polls the driver's status until it is ready to create sessions.
    async fn wait_ready(&mut self) -> Result<(), BoxError> {
        let deadline = Instant::now() + DRIVER_READY;
        loop {
            if let Ok(status) = self.call(Method::GET, "/status", Value::Null).await
                && status["ready"] == Value::Bool(true)
            {
                return Ok(());
            }
            if let Some(exit) = self.driver.try_wait()? {
                return Err(format!("{CHROMEDRIVER} exited: {exit}").into());
            }
            if Instant::now() > deadline {
                return Err(format!("{CHROMEDRIVER} not ready after {DRIVER_READY:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn session_call(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Value, BoxError> {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await
    }

    /// One WebDriver command: its `value`, or the error it reported.
    async fn call(&self, method: Method, path: &str, body: Value) -> Result<Value, BoxError> {
        let stream = TcpStream::connect(self.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let body = match body {
            Value::Null => Bytes::new(),
            body => Bytes::from(serde_json::to_vec(&body)?),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let mut answer: Value = serde_json::from_slice(&bytes)?;
        let value = answer["value"].take();
        if !status.is_success() {
            return Err(format!("WebDriver {path}: {status}: {}", value["message"]).into());
        }
        Ok(value)
    }
}

impl Drop for Browser {
    /// Kills chromedriver's process group (the browsers it started are in
    /// it) and reaps chromedriver; the browsers are chromedriver's children
    /// and go with it.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
