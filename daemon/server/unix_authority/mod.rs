//! Lets default gRPC clients use the Unix socket: many send the socket's
//! path (`/run/…/outpostd.sock`), its percent-encoding or nothing as the
//! HTTP/2 `:authority`, which h2 — the HTTP/2 layer under tonic — resets as
//! malformed (`RST_STREAM PROTOCOL_ERROR`). h2 has no option to accept them
//! (see `docs/reliability.md`), so [`UnixAuthority`] wraps each accepted
//! Unix stream and rewrites, in the bytes h2 reads, every `:authority` that
//! h2 would reject to `localhost`. Other HTTP/2 frames pass through
//! unchanged; header blocks are re-encoded by [`hpack::Translator`]. TCP
//! connections are not wrapped and keep h2's validation.
//!
//! The wrapper parses frames only as far as it must and leaves every check
//! to h2: a frame h2 rejects before decoding its header block (a HEADERS
//! frame on stream 0, bad padding, a CONTINUATION out of place, PUSH_PROMISE
//! from a client, one larger than the frame size limit) is forwarded as it
//! is while the two dynamic tables agree; once they may differ, it — like
//! a block that is not valid HPACK — is replaced by a frame h2 answers with
//! GOAWAY(PROTOCOL_ERROR), and the connection ends there.

mod hpack;
#[cfg(test)]
mod tests;

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, BufMut, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UnixStream,
};
use tonic::transport::server::{Connected, UdsConnectInfo};

use hpack::Translator;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of a frame header.
const HEAD_LEN: usize = 9;
/// The largest frame h2 accepts: `SETTINGS_MAX_FRAME_SIZE`'s default, which
/// the daemon keeps. Output frames are cut to it too.
const MAX_FRAME: usize = 16_384;
/// How much of one representation may wait for the next CONTINUATION. h2
/// ends a connection long before (after a few frames without
/// END_HEADERS); this only bounds what the wrapper holds if it did not.
const MAX_LEFTOVER: usize = 1 << 20;
/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// An empty CONTINUATION on stream 0: h2 answers it with
/// GOAWAY(PROTOCOL_ERROR) whether or not it waits for a CONTINUATION.
const POISON: [u8; HEAD_LEN] = [0, 0, 0, CONTINUATION, END_HEADERS, 0, 0, 0, 0];

/// Where the reader is in the client's byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Within the connection preface, this many bytes of it seen.
    Preface(usize),
    /// At the start of a frame.
    Head,
    /// Within the payload of a frame that passes through untouched.
    Pass(usize),
    /// Forwarding everything untouched: the tables agree and h2 is about
    /// to end the connection anyway.
    Raw,
    /// After the poison frame: the stream ends here.
    Closed,
}

/// A Unix stream whose incoming HTTP/2 header blocks carry only
/// `:authority` values h2 accepts.
pub(crate) struct UnixAuthority<S = UnixStream> {
    inner: S,
    state: State,
    /// Read from `inner` but not yet looked at.
    input: BytesMut,
    /// Ready for h2 to read.
    output: BytesMut,
    /// The stream of a header block that awaits its CONTINUATION.
    open_block: Option<u32>,
    /// The start of a representation cut off by a frame's end.
    leftover: BytesMut,
    translator: Translator,
}

impl<S> UnixAuthority<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Preface(0),
            input: BytesMut::new(),
            output: BytesMut::new(),
            open_block: None,
            leftover: BytesMut::new(),
            translator: Translator::default(),
        }
    }

    /// Moves `n` bytes of input to the output untouched.
    fn forward(&mut self, n: usize) {
        self.output.extend_from_slice(&self.input[..n]);
        self.input.advance(n);
    }

    /// Works through the buffered input as far as it is complete.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(self.input.len());
                    if n == 0 {
                        return;
                    }
                    if self.input[..n] != PREFACE[seen..seen + n] {
                        // Not HTTP/2 with prior knowledge; h2 says so.
                        self.state = State::Raw;
                        continue;
                    }
                    self.forward(n);
                    self.state = if seen + n == PREFACE.len() {
                        State::Head
                    } else {
                        State::Preface(seen + n)
                    };
                }
                State::Head => {
                    if self.input.len() < HEAD_LEN {
                        return;
                    }
                    let len = (usize::from(self.input[0]) << 16)
                        | (usize::from(self.input[1]) << 8)
                        | usize::from(self.input[2]);
                    let kind = self.input[3];
                    let stream = u32::from_be_bytes([
                        self.input[5],
                        self.input[6],
                        self.input[7],
                        self.input[8],
                    ]) & 0x7FFF_FFFF;
                    let block = kind == HEADERS || kind == CONTINUATION;
                    let in_sequence = match (self.open_block, kind) {
                        (Some(open), CONTINUATION) => open == stream,
                        (Some(_), _) => false,
                        (None, CONTINUATION | PUSH_PROMISE) => false,
                        (None, _) => true,
                    };
                    if !in_sequence || (block && len > MAX_FRAME) {
                        self.reject();
                        continue;
                    }
                    if !block {
                        self.forward(HEAD_LEN);
                        self.state = State::Pass(len);
                        continue;
                    }
                    if self.input.len() < HEAD_LEN + len {
                        self.input.reserve(HEAD_LEN + len - self.input.len());
                        return;
                    }
                    let frame = self.input.split_to(HEAD_LEN + len);
                    self.block_frame(&frame, stream);
                }
                State::Pass(remaining) => {
                    let n = remaining.min(self.input.len());
                    if n == 0 && remaining > 0 {
                        return;
                    }
                    self.forward(n);
                    self.state = if n == remaining {
                        State::Head
                    } else {
                        State::Pass(remaining - n)
                    };
                }
                State::Raw => {
                    let n = self.input.len();
                    self.forward(n);
                    return;
                }
                State::Closed => {
                    self.input.clear();
                    return;
                }
            }
        }
    }

    /// Handles a frame h2 rejects without decoding a header block.
    fn reject(&mut self) {
        if self.translator.diverged() {
            self.poison();
        } else {
            self.state = State::Raw;
        }
    }

    /// Ends the stream with a frame that makes h2 send GOAWAY.
    fn poison(&mut self) {
        self.output.extend_from_slice(&POISON);
        self.state = State::Closed;
        self.input.clear();
    }

    /// Translates one whole HEADERS or CONTINUATION frame.
    fn block_frame(&mut self, frame: &[u8], stream: u32) {
        let kind = frame[3];
        let mut flags = frame[4];
        let payload = &frame[HEAD_LEN..];
        let mut priority: &[u8] = &[];
        let mut fragment = payload;
        if kind == HEADERS {
            if stream == 0 {
                return self.reject_frame(frame);
            }
            let mut pad = 0;
            if flags & PADDED != 0 {
                let Some((&len, rest)) = fragment.split_first() else {
                    return self.reject_frame(frame);
                };
                pad = usize::from(len);
                fragment = rest;
            }
            if flags & PRIORITY != 0 {
                if fragment.len() < 5 {
                    return self.reject_frame(frame);
                }
                let (dependency, rest) = fragment.split_at(5);
                let depends_on = u32::from_be_bytes([
                    dependency[0],
                    dependency[1],
                    dependency[2],
                    dependency[3],
                ]) & 0x7FFF_FFFF;
                if depends_on == stream {
                    // h2 resets the stream without decoding the block, so
                    // neither table changes; a CONTINUATION of it is out
                    // of place.
                    self.output.extend_from_slice(frame);
                    return;
                }
                priority = dependency;
                fragment = rest;
            }
            if pad > fragment.len() {
                return self.reject_frame(frame);
            }
            fragment = &fragment[..fragment.len() - pad];
            flags &= !PADDED;
        }

        let mut translated = BytesMut::with_capacity(priority.len() + fragment.len() + 16);
        translated.extend_from_slice(priority);
        // A representation cut off by the previous frame's end continues
        // here, as it does in h2's decoder.
        let translated_ok = if self.leftover.is_empty() {
            self.translator
                .translate(fragment, &mut translated)
                .map(|n| self.leftover.extend_from_slice(&fragment[n..]))
        } else {
            self.leftover.extend_from_slice(fragment);
            self.translator
                .translate(&self.leftover, &mut translated)
                .map(|n| self.leftover.advance(n))
        };
        if translated_ok.is_err() {
            return self.poison();
        }
        let end = flags & END_HEADERS != 0;
        if (end && !self.leftover.is_empty()) || self.leftover.len() > MAX_LEFTOVER {
            return self.poison();
        }
        self.open_block = (!end).then_some(stream);
        self.emit(kind, flags, stream, &translated);
    }

    /// A malformed HEADERS frame: h2 ends the connection on it.
    fn reject_frame(&mut self, frame: &[u8]) {
        if self.translator.diverged() {
            self.poison();
        } else {
            self.output.extend_from_slice(frame);
            self.state = State::Raw;
        }
    }

    /// Writes `payload` as a frame of `kind`, followed by as many
    /// CONTINUATION frames as the frame size limit needs.
    fn emit(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut chunks = payload.chunks(MAX_FRAME).peekable();
        let mut first = true;
        loop {
            let chunk = chunks.next().unwrap_or_default();
            let last = chunks.peek().is_none();
            let (kind, flags) = match (first, last) {
                (true, true) => (kind, flags),
                (true, false) => (kind, flags & !END_HEADERS),
                (false, true) => (CONTINUATION, flags & END_HEADERS),
                (false, false) => (CONTINUATION, 0),
            };
            let len = chunk.len() as u32;
            self.output.put_slice(&len.to_be_bytes()[1..]);
            self.output.put_u8(kind);
            self.output.put_u8(flags);
            self.output.put_u32(stream);
            self.output.extend_from_slice(chunk);
            first = false;
            if last {
                return;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UnixAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.input.is_empty() {
                // Untouched bytes go straight into h2's buffer.
                let direct = match this.state {
                    State::Raw => Some(buf.remaining()),
                    State::Pass(remaining) if remaining > 0 => Some(remaining),
                    _ => None,
                };
                if let Some(limit) = direct {
                    let limit = limit.min(buf.remaining());
                    let mut part = ReadBuf::new(buf.initialize_unfilled_to(limit));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
                    let n = part.filled().len();
                    buf.advance(n);
                    if let State::Pass(remaining) = this.state {
                        this.state = if n == remaining {
                            State::Head
                        } else {
                            State::Pass(remaining - n)
                        };
                    }
                    return Poll::Ready(Ok(()));
                }
            }
            if this.state == State::Closed {
                return Poll::Ready(Ok(()));
            }
            this.input.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.input
            ))?;
            if n == 0 {
                // The client is gone: what is left of a frame goes to h2 as
                // it is, which sees it cut off.
                let rest = this.input.split();
                this.output.extend_from_slice(&rest);
                this.state = State::Closed;
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UnixAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The access gate reads the peer's credentials from the stream underneath.
impl Connected for UnixAuthority<UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
