//! A WebSocket connection as a byte stream: binary messages in, binary messages out, with
//! nothing buffered while the connection is idle.
//!
//! Reading unframes in place: the bytes read from the inner stream land in the caller's buffer
//! (the driver's scratch buffer per worker thread), frame headers are cut out and payloads
//! unmasked and moved down over them. Only a partial header (at most 14 bytes, inline) and a
//! control frame's payload while it arrives (at most 125 bytes) are kept between reads.
//!
//! Writing frames without copying (server role): each `poll_write` becomes one binary frame whose
//! header goes out with the payload in one vectored write. A client must mask what it sends, so
//! in the client role the frame is built, masked, in a buffer that is released once written.

use bytes::{Buf, BufMut, BytesMut};
use gatekit_codec::websocket::{
    apply_mask, close_code, decode_header, encode_close_payload, parse_close_payload, FrameError,
    FrameHeader, Opcode, Role, MAX_HEADER_LEN,
};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a WebSocket stream failed: sent to the peer as a Close frame's code and reason, and given
/// to the reader as an `io::Error` of kind `InvalidData` wrapping this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WebSocket close {code}: {reason}")]
pub struct WebSocketClose {
    /// The close code sent (1002 protocol error, 1003 text frame, 1007 bad UTF-8, 1009 too big).
    pub code: u16,
    /// What was wrong, as sent in the Close frame (at most 123 bytes).
    pub reason: String,
}

/// The most bytes of control frames (Pongs, then a Close) queued for a peer that does not read.
const MAX_QUEUED_CONTROL: usize = 1024;

/// What arrives next on the read side.
enum ReadState {
    /// A frame header, of which `len` bytes have arrived.
    Header { buf: [u8; MAX_HEADER_LEN], len: u8 },
    /// A data frame's payload.
    Data {
        remaining: u64,
        mask: Option<[u8; 4]>,
        offset: usize,
        fin: bool,
    },
    /// A control frame's payload, gathered (at most 125 bytes).
    Control {
        opcode: Opcode,
        remaining: usize,
        mask: Option<[u8; 4]>,
        payload: Vec<u8>,
    },
    /// The peer sent Close (or the stream failed): nothing more is read.
    Done,
}

/// The frame being written (server role): its header, how much of it is out, and the payload
/// bytes still to come.
#[derive(Default)]
struct WriteFrame {
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    header_sent: u8,
    remaining: u64,
}

/// A WebSocket connection over `S`, read and written as the byte stream its binary messages
/// carry. Ping is answered with Pong; Close is answered and ends the stream; a text frame, an
/// unmasked client frame, reserved bits or opcodes, a control frame over 125 bytes or a message
/// over the limit end it with the Close code RFC 6455 gives (see docs/WEBSOCKET.md). A Close
/// from the peer ends the reading side (end of stream); the Close in reply is sent when the
/// stream is shut down, after what is still written.
pub struct WebSocketStream<S> {
    inner: S,
    role: Role,
    max_message: u64,
    read: ReadState,
    /// Bytes of the message being received so far (for the size limit).
    message_len: u64,
    /// Whether a fragmented message is under way.
    in_message: bool,
    /// Bytes read with the upgrade request, unframed before the socket is read again.
    leftover: Option<BytesMut>,
    write: WriteFrame,
    /// Client role: the frame being written, masked.
    masked_out: Option<BytesMut>,
    /// A control frame (Pong, Close) to send, whole, before the next data frame.
    control_out: Option<BytesMut>,
    /// The Close to send when the stream is shut down (or at once, on a protocol error).
    close: Option<WebSocketClose>,
    close_sent: bool,
    peer_closed: bool,
    failed: Option<WebSocketClose>,
}

impl<S> WebSocketStream<S> {
    /// A WebSocket stream over `inner` once the upgrade is done, as `role`, refusing messages of
    /// more than `max_message` bytes (close 1009). `leftover` holds bytes that arrived after the
    /// upgrade request or response in the same read.
    pub fn new(inner: S, role: Role, max_message: u64, leftover: Option<BytesMut>) -> Self {
        WebSocketStream {
            inner,
            role,
            max_message,
            read: ReadState::Header {
                buf: [0; MAX_HEADER_LEN],
                len: 0,
            },
            message_len: 0,
            in_message: false,
            leftover: leftover.filter(|l| !l.is_empty()),
            write: WriteFrame::default(),
            masked_out: None,
            control_out: None,
            close: None,
            close_sent: false,
            peer_closed: false,
            failed: None,
        }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Sets the Close frame's code and reason sent when the stream is shut down (1000 with an
    /// empty reason unless set, or the peer's code when it closed first).
    pub fn set_close(&mut self, code: u16, reason: &str) {
        if self.failed.is_none() {
            self.close = Some(WebSocketClose {
                code,
                reason: reason.to_owned(),
            });
        }
    }

    /// Whether the peer sent a Close frame.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    fn fail(&mut self, code: u16, reason: String) -> io::Error {
        let close = WebSocketClose { code, reason };
        self.read = ReadState::Done;
        self.failed = Some(close.clone());
        self.close = Some(close.clone());
        self.queue_close();
        io::Error::new(io::ErrorKind::InvalidData, close)
    }

    fn frame_error(&mut self, e: FrameError) -> io::Error {
        let code = e.close_code();
        self.fail(code, e.to_string())
    }

    /// Queues the Close frame (once), after any Pong already queued.
    fn queue_close(&mut self) {
        if self.close_sent {
            return;
        }
        let close = self.close.clone().unwrap_or(WebSocketClose {
            code: close_code::NORMAL,
            reason: String::new(),
        });
        let mut payload = BytesMut::with_capacity(2 + close.reason.len().min(123));
        encode_close_payload(close.code, &close.reason, &mut payload);
        let frame = self.control_frame(Opcode::Close, &payload);
        self.queue_control(frame);
        self.close_sent = true;
    }

    fn queue_control(&mut self, frame: BytesMut) {
        match &mut self.control_out {
            Some(out) => out.extend_from_slice(&frame),
            None => self.control_out = Some(frame),
        }
    }

    fn control_frame(&self, opcode: Opcode, payload: &[u8]) -> BytesMut {
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(rand::random::<[u8; 4]>()),
        };
        let header = FrameHeader {
            fin: true,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let mut out = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode_to(&mut out);
        let start = out.len();
        out.put_slice(payload);
        if let Some(mask) = mask {
            apply_mask(mask, 0, &mut out[start..]);
        }
        out
    }

    /// Unframes `raw` in place: returns how many payload bytes are now at its start.
    fn unframe(&mut self, raw: &mut [u8]) -> io::Result<usize> {
        let n = raw.len();
        let (mut r, mut w) = (0usize, 0usize);
        while r < n {
            match &mut self.read {
                ReadState::Done => break,
                ReadState::Header { buf, len } => {
                    let had = *len as usize;
                    let decoded = if had == 0 {
                        decode_header(&raw[r..], self.role, self.max_message)
                    } else {
                        let take = (MAX_HEADER_LEN - had).min(n - r);
                        buf[had..had + take].copy_from_slice(&raw[r..r + take]);
                        decode_header(&buf[..had + take], self.role, self.max_message)
                    };
                    match decoded {
                        Err(e) => return Err(self.frame_error(e)),
                        Ok(None) => {
                            // Keep the partial header (it is shorter than 14 bytes).
                            let take = n - r;
                            if had == 0 {
                                buf[..take].copy_from_slice(&raw[r..]);
                            }
                            *len = (had + take) as u8;
                            r = n;
                        }
                        Ok(Some((header, header_len))) => {
                            r += header_len - had;
                            self.start_frame(header)?;
                        }
                    }
                }
                ReadState::Data {
                    remaining,
                    mask,
                    offset,
                    fin,
                } => {
                    let take = (*remaining).min((n - r) as u64) as usize;
                    raw.copy_within(r..r + take, w);
                    if let Some(mask) = mask {
                        apply_mask(*mask, *offset, &mut raw[w..w + take]);
                    }
                    *remaining -= take as u64;
                    *offset += take;
                    r += take;
                    w += take;
                    if *remaining == 0 {
                        if *fin {
                            self.in_message = false;
                            self.message_len = 0;
                        }
                        self.read = ReadState::Header {
                            buf: [0; MAX_HEADER_LEN],
                            len: 0,
                        };
                    }
                }
                ReadState::Control {
                    remaining, payload, ..
                } => {
                    let take = (*remaining).min(n - r);
                    payload.extend_from_slice(&raw[r..r + take]);
                    *remaining -= take;
                    r += take;
                    if *remaining == 0 {
                        self.end_control()?;
                    }
                }
            }
        }
        Ok(w)
    }

    /// A header has arrived: check it against the message under way and set up its payload.
    fn start_frame(&mut self, header: FrameHeader) -> io::Result<()> {
        let len = header.payload_len;
        match header.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                self.read = ReadState::Control {
                    opcode: header.opcode,
                    remaining: len as usize,
                    mask: header.mask,
                    payload: Vec::with_capacity(len as usize),
                };
                if len == 0 {
                    self.end_control()?;
                }
                return Ok(());
            }
            Opcode::Text => {
                return Err(self.fail(
                    close_code::UNSUPPORTED_DATA,
                    "text frames are not accepted: send binary frames".to_owned(),
                ))
            }
            Opcode::Binary if self.in_message => {
                return Err(self.fail(
                    close_code::PROTOCOL_ERROR,
                    "a new message began before the fragmented one ended".to_owned(),
                ))
            }
            Opcode::Continuation if !self.in_message => {
                return Err(self.fail(
                    close_code::PROTOCOL_ERROR,
                    "a continuation frame with no message to continue".to_owned(),
                ))
            }
            Opcode::Binary | Opcode::Continuation => {}
        }
        let total = self.message_len.saturating_add(len);
        if total > self.max_message {
            return Err(self.fail(
                close_code::MESSAGE_TOO_BIG,
                format!(
                    "message of {total}+ bytes over the limit of {}",
                    self.max_message
                ),
            ));
        }
        self.message_len = total;
        self.in_message = !header.fin;
        if len == 0 {
            if header.fin {
                self.message_len = 0;
            }
            self.read = ReadState::Header {
                buf: [0; MAX_HEADER_LEN],
                len: 0,
            };
        } else {
            self.read = ReadState::Data {
                remaining: len,
                mask: header.mask,
                offset: 0,
                fin: header.fin,
            };
        }
        Ok(())
    }

    /// A control frame's payload is complete.
    fn end_control(&mut self) -> io::Result<()> {
        let ReadState::Control {
            opcode,
            mask,
            mut payload,
            ..
        } = std::mem::replace(
            &mut self.read,
            ReadState::Header {
                buf: [0; MAX_HEADER_LEN],
                len: 0,
            },
        )
        else {
            unreachable!("end_control is called in the Control state");
        };
        if let Some(mask) = mask {
            apply_mask(mask, 0, &mut payload);
        }
        match opcode {
            Opcode::Ping => {
                // Pongs wait behind each other; a peer that pings faster than it reads gets no
                // more than MAX_QUEUED_CONTROL bytes of them queued (RFC 6455 5.5.3 lets an
                // endpoint answer only the latest ping).
                let queued = self.control_out.as_ref().map_or(0, |o| o.len());
                if !self.close_sent && queued + MAX_HEADER_LEN + payload.len() <= MAX_QUEUED_CONTROL
                {
                    let pong = self.control_frame(Opcode::Pong, &payload);
                    self.queue_control(pong);
                }
            }
            Opcode::Pong => {}
            Opcode::Close => {
                let reply = match parse_close_payload(&payload) {
                    Err(e) => return Err(self.fail(e.close_code(), e.to_string())),
                    Ok(Some((code, _reason))) => code,
                    Ok(None) => close_code::NORMAL,
                };
                // Like a TCP half-close: nothing more will be read, and the reply waits until the
                // agent has written what it owes (answers to calls in flight, the PONG to a last
                // PING) and shuts the stream down, as RFC 6455 5.5.1 allows ("an endpoint MAY
                // delay sending a Close frame until its current message is sent").
                self.peer_closed = true;
                self.read = ReadState::Done;
                if self.close.is_none() {
                    self.close = Some(WebSocketClose {
                        code: reply,
                        reason: String::new(),
                    });
                }
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                unreachable!("data frames never gather a control payload")
            }
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> WebSocketStream<S> {
    /// Sends the queued control frame, if any, between data frames.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.remaining > 0 || self.masked_out.is_some() {
            return Poll::Ready(Ok(()));
        }
        while let Some(out) = &mut self.control_out {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.advance(n);
            if out.is_empty() {
                self.control_out = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Client role: writes out the masked frame under way.
    fn poll_masked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(out) = &mut self.masked_out {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.advance(n);
            if out.is_empty() {
                self.masked_out = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_server(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.write.remaining == 0 {
            let header = FrameHeader {
                fin: true,
                opcode: Opcode::Binary,
                mask: None,
                payload_len: buf.len() as u64,
            };
            let header_len = header.encode(&mut self.write.header);
            self.write.header_len = header_len as u8;
            self.write.header_sent = 0;
            self.write.remaining = buf.len() as u64;
        }
        let w = &mut self.write;
        let payload = &buf[..(w.remaining.min(buf.len() as u64) as usize)];
        loop {
            let (sent, len) = (w.header_sent as usize, w.header_len as usize);
            if sent < len {
                let parts = [IoSlice::new(&w.header[sent..len]), IoSlice::new(payload)];
                let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &parts))?;
                if n == 0 {
                    return Poll::Ready(Ok(0));
                }
                let of_header = n.min(len - sent);
                w.header_sent += of_header as u8;
                let of_payload = n - of_header;
                if of_payload > 0 {
                    w.remaining -= of_payload as u64;
                    return Poll::Ready(Ok(of_payload));
                }
            } else {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, payload))?;
                w.remaining -= n as u64;
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn poll_write_client(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_masked(cx))?;
        let len = buf.len().min(self.max_message as usize).max(1);
        let len = len.min(buf.len());
        let mask = rand::random::<[u8; 4]>();
        let header = FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask: Some(mask),
            payload_len: len as u64,
        };
        let mut out = BytesMut::with_capacity(header.encoded_len() + len);
        header.encode_to(&mut out);
        let start = out.len();
        out.put_slice(&buf[..len]);
        apply_mask(mask, 0, &mut out[start..]);
        self.masked_out = Some(out);
        // Start writing at once; what does not go now goes on the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_masked(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(len))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Answer pings (and a Close) as soon as possible; if the socket is full, the next
            // read or write tries again.
            if let Poll::Ready(Err(e)) = this.poll_control(cx) {
                return Poll::Ready(Err(e));
            }
            if let Some(f) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, f.clone())));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(left) = &mut this.leftover {
                let take = left.len().min(buf.remaining());
                buf.put_slice(&left[..take]);
                left.advance(take);
                if left.is_empty() {
                    this.leftover = None;
                }
            } else {
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                if buf.filled().len() == start {
                    // End of stream without a Close frame (RFC 6455's 1006, abnormal closure).
                    this.read = ReadState::Done;
                    return Poll::Ready(Ok(()));
                }
            }
            let end = buf.filled().len();
            let raw = &mut buf.filled_mut()[start..end];
            let payload = match this.unframe(raw) {
                Ok(payload) => payload,
                Err(e) => {
                    // Send the Close at once if the socket takes it; shutdown sends it otherwise.
                    let _ = this.poll_control(cx);
                    return Poll::Ready(Err(e));
                }
            };
            buf.set_filled(start + payload);
            if payload > 0 {
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // Only headers or control frames: read on (the socket says Pending when empty).
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the WebSocket is closed",
            )));
        }
        ready!(this.poll_control(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.role {
            Role::Server => this.poll_write_server(cx, buf),
            Role::Client => this.poll_write_client(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_masked(cx))?;
        ready!(this.poll_control(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write.remaining == 0 {
            // A frame cut short cannot be followed by a Close: then only the socket is shut.
            ready!(this.poll_masked(cx))?;
            this.queue_close();
            ready!(this.poll_control(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
