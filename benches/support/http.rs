//! The daemon's HTTP front as a client sees it: plain HTTP/1.1 requests
//! and Server-Sent Events over hyper, with the bytes that crossed the
//! socket counted (the page-load budget is a number of bytes on the wire).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::{
    Request,
    body::Incoming,
    header::{ACCEPT, AUTHORIZATION, HOST},
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::BoxError;

/// The daemon's HTTP listener and the bearer token its API accepts.
#[derive(Clone, Debug)]
pub struct Front {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The daemon's token.
    pub token: String,
}

impl Front {
    /// `front`'s address from a URL such as `http://127.0.0.1:PORT` (as
    /// `GetDaemonStatus.http_address` reports it).
    pub fn new(url: &str, token: &str) -> Result<Self, BoxError> {
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// URL: {url:?}"))?
            .trim_end_matches('/');
        Ok(Self {
            addr: authority.parse()?,
            token: token.to_owned(),
        })
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `GET path` on a new connection, with the token; returns the
    /// response with its body not yet read, and the connection's counter of
    /// bytes received (headers and body, as they crossed the socket).
    async fn open(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<(hyper::Response<Incoming>, Arc<AtomicU64>), BoxError> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let received = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: stream,
            received: Arc::clone(&received),
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(counted)).await?;
        // The connection ends when the response is dropped.
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(HOST, self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(ACCEPT, accept)
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            return Err(format!("GET {path}: {}", response.status()).into());
        }
        Ok((response, received))
    }

    /// `GET path`, read whole: its body and the bytes received for it.
    pub async fn get(&self, path: &str) -> Result<(Bytes, u64), BoxError> {
        let (response, received) = self.open(path, "*/*").await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok((body, received.load(Ordering::Relaxed)))
    }

    /// Opens the event stream at `path`.
    pub async fn events(&self, path: &str) -> Result<EventStream, BoxError> {
        let (response, received) = self.open(path, "text/event-stream").await?;
        Ok(EventStream {
            body: response.into_body(),
            buffer: BytesMut::new(),
            received,
        })
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default)]
pub struct Event {
    /// Its `id:`, if it had one.
    pub id: Option<String>,
    /// Its `event:` (`message` when it had none).
    pub kind: String,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

/// A stream of Server-Sent Events, parsed as `EventSource` does (fields
/// `id`, `event`, `data`; comments and other fields ignored).
pub struct EventStream {
    body: Incoming,
    buffer: BytesMut,
    received: Arc<AtomicU64>,
}

impl EventStream {
    /// The next event, or `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Event>, BoxError> {
        let mut event = Event::default();
        let mut fields = false;
        loop {
            let Some(line) = self.line().await? else {
                return Ok(None);
            };
            if line.is_empty() {
                if fields {
                    if event.kind.is_empty() {
                        event.kind = "message".to_owned();
                    }
                    return Ok(Some(event));
                }
                continue;
            }
            let (field, value) = match line.iter().position(|&byte| byte == b':') {
                Some(0) => continue, // a comment: the keep-alive
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &b""[..]),
            };
            let value = std::str::from_utf8(value)?;
            match field {
                b"id" => event.id = Some(value.to_owned()),
                b"event" => event.kind = value.to_owned(),
                b"data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => continue,
            }
            fields = true;
        }
    }

    /// Bytes received on this stream's connection so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The next line without its end (`\n` or `\r\n`), or `None` at the end
    /// of the stream.
    async fn line(&mut self) -> Result<Option<BytesMut>, BoxError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let mut line = self.buffer.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                return Ok(Some(line));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            if let Ok(data) = frame?.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}

/// A TCP stream that counts the bytes read from it.
struct Counted {
    inner: TcpStream,
    received: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.received.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
