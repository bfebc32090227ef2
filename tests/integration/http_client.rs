//! A plain HTTP/1.1 client for the dashboard's API, on hyper's connection
//! API: every request on its own connection, headers exactly as given
//! (the tests forge Host and Origin), and an SSE reader that waits for
//! events with a deadline.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    body::{Frame, Incoming},
    header::HeaderMap,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::harness::Daemon;

/// How long a request or an expected event may take on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The daemon's dashboard: `host:port` from the "serving" log line.
pub fn dashboard_host(daemon: &Daemon) -> String {
    let log = daemon.log.text();
    let serving = log
        .lines()
        .find(|line| line.contains(" serving "))
        .expect("daemon is not serving");
    let prefix = "http=\"http://";
    let start = serving.find(prefix).expect("no dashboard in the log") + prefix.len();
    serving[start..].chars().take_while(|c| *c != '"').collect()
}

/// An answer, read to its end.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

/// A request to the dashboard at `host`.
pub struct Call {
    host: String,
    request: hyper::http::request::Builder,
    body: Bytes,
}

impl Call {
    pub fn new(host: &str, method: Method, path: &str) -> Self {
        Self {
            host: host.to_owned(),
            request: Request::builder()
                .method(method)
                .uri(path)
                .header("host", host),
            body: Bytes::new(),
        }
    }

    pub fn get(host: &str, path: &str) -> Self {
        Self::new(host, Method::GET, path)
    }

    pub fn post(host: &str, path: &str) -> Self {
        Self::new(host, Method::POST, path)
    }

    /// Sets header `name` (replacing one set before, such as the Host).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Some(headers) = self.request.headers_mut() {
            headers.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        self
    }

    /// The cookie a login answer set.
    pub fn cookie(self, login: &Answer) -> Self {
        let set = login
            .headers
            .get("set-cookie")
            .expect("the login set a cookie")
            .to_str()
            .unwrap();
        let pair = set.split(';').next().unwrap().to_owned();
        self.header("cookie", &pair)
    }

    /// The dashboard's own origin, as a browser sends it.
    pub fn same_origin(self) -> Self {
        let origin = format!("http://{}", self.host);
        self.header("origin", &origin)
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Bytes::from(body.to_string());
        self.header("content-type", "application/json")
    }

    async fn response(self) -> hyper::Response<Incoming> {
        let stream = TcpStream::connect(&self.host)
            .await
            .expect("connect to the dashboard");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let request = self.request.body(Full::new(self.body)).unwrap();
        tokio::time::timeout(DEADLINE, sender.send_request(request))
            .await
            .expect("the daemon answers in time")
            .expect("the request is answered")
    }

    /// Sends the request and reads the whole answer.
    pub async fn send(self) -> Answer {
        let response = self.response().await;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(DEADLINE, body.collect())
            .await
            .expect("the body arrives in time")
            .expect("the body is read")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
        }
    }

    /// Sends the request and reads the answer as Server-Sent Events.
    pub async fn events(self) -> Events {
        let response = self.response().await;
        assert_eq!(response.status(), StatusCode::OK, "an event stream");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Events {
            body: response.into_body(),
            pending: String::new(),
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug)]
pub struct Event {
    pub kind: String,
    pub id: Option<String>,
    pub data: serde_json::Value,
}

/// An open event stream.
pub struct Events {
    body: Incoming,
    pending: String,
}

impl Events {
    /// The next event (comments skipped), within [`DEADLINE`].
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(DEADLINE, self.read())
            .await
            .expect("an event arrives in time")
    }

    /// Waits (within [`DEADLINE`]) for the server to end the stream;
    /// events still in flight are skipped.
    pub async fn ended(&mut self) {
        let end = async {
            while let Some(frame) = self.body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(DEADLINE, end)
            .await
            .expect("the stream ends in time");
    }

    async fn read(&mut self) -> Event {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return event;
                }
                continue;
            }
            let frame: Frame<Bytes> = self
                .body
                .frame()
                .await
                .expect("the stream stays open")
                .expect("the stream reads");
            if let Ok(data) = frame.into_data() {
                self.pending.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

/// An event from its lines; None for a comment (keep-alive).
fn parse(block: &str) -> Option<Event> {
    let (mut kind, mut id, mut data) = (String::from("message"), None, String::new());
    let mut any = false;
    for line in block.lines() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = value.to_owned(),
            "id" => id = Some(value.to_owned()),
            "data" => data.push_str(value),
            _ => continue,
        }
        any = true;
    }
    any.then(|| Event {
        kind,
        id,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
    })
}
