//! One round-trip client: a connection that keeps `window` requests outstanding (closed loop) or
//! sends at its share of an offered rate (open loop), and records each answer's latency.
//!
//! Against the gate it speaks the chosen wire protocol through [`crate::client_wire`]: the
//! handshake, the acknowledgement where the protocol has one (pomelo), then requests to the echo
//! back end. Against the raw echo server it sends the native request payload in
//! `LengthDelimitedCodec` frames, whatever protocol the gate rows use. Either way it goes over the
//! run's transport ([`ClientTransport`]) first.

use super::Server;
use crate::client_transport::ClientTransport;
use crate::client_wire::{self, ClientPacket, ClientWire, GateEvent, NativeWire};
use crate::source_address::connect_from;
use bytes::{Bytes, BytesMut};
use gatekit_codec::Status;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The largest request id: pomelo's JavaScript peers read ids as 31-bit integers, so every
/// protocol's ids wrap from 2^31 − 1 back to 1 (never 0).
pub const MAX_REQUEST_ID: u32 = (1 << 31) - 1;

/// The id after `id`, in 1..=[`MAX_REQUEST_ID`].
pub fn next_request_id(id: u32) -> u32 {
    if id >= MAX_REQUEST_ID {
        1
    } else {
        id + 1
    }
}

/// What the clients of one run share.
pub(super) struct Shared {
    /// Connections that got their first answer (accepted and served).
    pub started: AtomicU64,
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
    pub done: AtomicU64,
    /// Connections that failed (each counted once).
    pub failures: AtomicU64,
    /// Why the first failed connection failed.
    pub first_failure: Mutex<Option<String>>,
    pub skipped: AtomicU64,
    pub hist: Mutex<Histogram<u64>>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            started: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            skipped: AtomicU64::new(0),
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")),
        }
    }

    /// Counts one failed connection.
    pub fn fail(&self, why: impl FnOnce() -> String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().expect("first failure");
        if first.is_none() {
            *first = Some(why());
        }
    }
}

/// What one decoded packet means to the client.
enum Step {
    /// Need more bytes.
    More,
    /// The gate opened the session: requests may follow.
    Welcome,
    /// The answer to request `id`.
    Answer(u32),
    /// Nothing to do (a pong, a push, a ping already answered).
    Nothing,
    /// The connection is lost: a decode error, a close, an error status, a packet a gate must
    /// not send.
    Lost(String),
}

/// How a client frames its requests and reads the answers.
enum Framing {
    /// The raw echo server: the native request payload in `LengthDelimitedCodec` frames.
    Raw {
        native: NativeWire,
        ldc: LengthDelimitedCodec,
        payload: BytesMut,
    },
    /// The gate, in its wire protocol.
    Gate(Box<dyn ClientWire>),
}

impl Framing {
    fn new(server: Server) -> Framing {
        match server {
            Server::RawEcho => Framing::Raw {
                native: NativeWire::default(),
                ldc: LengthDelimitedCodec::new(),
                payload: BytesMut::new(),
            },
            Server::Gatekit(protocol) => Framing::Gate(client_wire::wire(protocol)),
        }
    }

    fn encode(&mut self, packet: ClientPacket<'_>, out: &mut BytesMut) {
        match self {
            Framing::Gate(wire) => wire.encode(packet, out),
            Framing::Raw {
                native,
                ldc,
                payload,
            } => {
                // LDC frames exactly the native payload (kind, id, route, body): the native
                // frame without its varint length.
                payload.clear();
                native.encode(packet, payload);
                let skip = gatekit_codec::parsers::varint_len(payload.len() as u32).unwrap_or(1);
                let _ = payload.split_to(skip);
                ldc.encode(payload.split().freeze(), out).expect("fits");
            }
        }
    }

    /// Decodes the next packet in `input`; a gate ping is answered into `out`. `oldest` is the
    /// oldest outstanding id (the raw server answers in order, with no id of its own).
    fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut, oldest: Option<u32>) -> Step {
        let wire = match self {
            Framing::Raw { ldc, .. } => {
                return match ldc.decode(input) {
                    Ok(None) => Step::More,
                    Ok(Some(_)) => match oldest {
                        Some(id) => Step::Answer(id),
                        None => Step::Lost("an echo with no request outstanding".into()),
                    },
                    Err(e) => Step::Lost(format!("decode: {e}")),
                }
            }
            Framing::Gate(wire) => wire,
        };
        match wire.decode(input) {
            Ok(None) => Step::More,
            Err((e, _fatal)) => Step::Lost(format!("decode: {e}")),
            Ok(Some(event)) => match event {
                GateEvent::Response {
                    id,
                    status: Status::Ok,
                    ..
                } => Step::Answer(id),
                GateEvent::Response { id, status, .. } => {
                    Step::Lost(format!("request {id} answered {}", status.name()))
                }
                GateEvent::Welcome { .. } => Step::Welcome,
                GateEvent::Ping => {
                    wire.encode(ClientPacket::Pong, out);
                    Step::Nothing
                }
                GateEvent::Pong | GateEvent::Push { .. } => Step::Nothing,
                GateEvent::Close { code } => {
                    Step::Lost(format!("the gate closed: {}", code.name()))
                }
                GateEvent::Unexpected => Step::Lost("a packet a gate must not send".into()),
            },
        }
    }

    /// Whether the client must acknowledge the welcome.
    fn acks_welcome(&self) -> bool {
        match self {
            Framing::Raw { .. } => false,
            Framing::Gate(wire) => wire.acks_welcome(),
        }
    }
}

/// A connection's requests: numbered from 1, each with the same body.
struct Requests {
    id: u32,
    body: Bytes,
}

impl Requests {
    /// Encodes the next request into `out`; returns its id.
    fn send(&mut self, framing: &mut Framing, out: &mut BytesMut) -> u32 {
        self.id = next_request_id(self.id);
        let (id, body) = (self.id, &self.body);
        framing.encode(ClientPacket::Request { id, body }, out);
        id
    }
}

/// The options a client needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientOptions {
    pub clients: usize,
    pub window: usize,
    pub body: usize,
    pub rate: Option<f64>,
}

/// One connection's life, from connect to the end of the run. A connection that fails (connect,
/// write, decode error, close, an answer to no outstanding request, the server closing) stops
/// and counts once in `shared.failures`.
pub(super) async fn client(
    index: usize,
    server: Server,
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    transport: Arc<ClientTransport>,
    opts: ClientOptions,
    shared: Arc<Shared>,
) {
    let Ok(tcp) = connect_from(addr, source).await else {
        shared.fail(|| format!("connect to {addr} failed"));
        return;
    };
    let mut s = match transport.connect(tcp).await {
        Ok(s) => s,
        Err(e) => {
            shared.fail(|| format!("{} to {addr}: {e}", transport.kind));
            return;
        }
    };
    let body = Bytes::from(vec![b'x'; opts.body]);
    let mut framing = Framing::new(server);
    let mut input = BytesMut::with_capacity(8192);
    let mut out = BytesMut::new();
    // The raw server needs no handshake; the gate's session opens with its welcome.
    let mut ready = server == Server::RawEcho;
    if !ready {
        let token = format!("rtt-{index}");
        framing.encode(
            ClientPacket::Hello {
                token: token.as_bytes(),
            },
            &mut out,
        );
    }
    // (id, sent at, sent while measuring): the gate may answer out of order (several calls in
    // flight), the raw echo server answers in order. Latency counts requests sent in the measured
    // window, so connects and accepts still queued at its start do not count.
    let mut sent: VecDeque<(u32, Instant, bool)> = VecDeque::new();
    let mut requests = Requests { id: 0, body };
    // Open loop: one request every `interval`, this connection's first at its share of one
    // interval, so sends are spread evenly.
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(opts.clients as f64 / r.max(1e-3)));
    let mut next_send = interval.map(|iv| {
        tokio::time::Instant::now() + iv.mul_f64(index as f64 / opts.clients.max(1) as f64)
    });
    // Closed loop: the whole window goes out as soon as the session is open.
    let window = if interval.is_none() { opts.window } else { 0 };
    if ready {
        for _ in 0..window {
            let id = requests.send(&mut framing, &mut out);
            sent.push_back((id, Instant::now(), false));
        }
    }
    let mut first = true;
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut done = 0u64;
    let mut skipped = 0u64;
    let failure: Option<String> = 'conn: loop {
        if !out.is_empty() {
            // Flushed: a TLS or WebSocket layer may keep the end of a write queued otherwise.
            if let Err(e) = async {
                s.write_all(&out).await?;
                s.flush().await
            }
            .await
            {
                break Some(format!("write: {e}"));
            }
            out.clear();
        }
        let read = match next_send {
            None => Some(s.read_buf(&mut input).await),
            Some(at) => tokio::select! {
                r = s.read_buf(&mut input) => Some(r),
                _ = tokio::time::sleep_until(at) => None,
            },
        };
        let Some(read) = read else {
            // An open-loop send is due.
            let (Some(at), Some(iv)) = (next_send, interval) else {
                unreachable!("only a due send gets here")
            };
            if shared.stop.load(Ordering::Relaxed) {
                next_send = None;
                if sent.is_empty() {
                    break None;
                }
                continue;
            }
            next_send = Some(at + iv);
            let measuring = shared.measuring.load(Ordering::Relaxed);
            if !ready {
                // Still handshaking: the run measures only once every connection is answered.
            } else if sent.len() < opts.window.max(1) {
                let id = requests.send(&mut framing, &mut out);
                sent.push_back((id, at.into_std(), measuring));
            } else if measuring {
                skipped += 1;
            }
            continue;
        };
        match read {
            Ok(0) => break Some("the server closed the connection".into()),
            Err(e) => break Some(format!("read: {e}")),
            Ok(_) => {}
        }
        loop {
            let answered = match framing.decode(&mut input, &mut out, sent.front().map(|s| s.0)) {
                Step::More => break,
                Step::Nothing => continue,
                Step::Lost(why) => break 'conn Some(why),
                Step::Welcome => {
                    if framing.acks_welcome() {
                        framing.encode(ClientPacket::Ack, &mut out);
                    }
                    if !ready {
                        ready = true;
                        for _ in 0..window {
                            let id = requests.send(&mut framing, &mut out);
                            sent.push_back((id, Instant::now(), false));
                        }
                    }
                    continue;
                }
                Step::Answer(id) => id,
            };
            let Some((_, t0, in_window)) = sent
                .iter()
                .position(|s| s.0 == answered)
                .and_then(|i| sent.remove(i))
            else {
                break 'conn Some(format!("an answer to {answered}, not outstanding"));
            };
            if first {
                first = false;
                shared.started.fetch_add(1, Ordering::Relaxed);
            }
            let measuring = shared.measuring.load(Ordering::Relaxed);
            if in_window {
                let _ = local.record(t0.elapsed().as_micros().max(1) as u64);
            }
            if measuring {
                done += 1;
            }
            if interval.is_none() && !shared.stop.load(Ordering::Relaxed) {
                let id = requests.send(&mut framing, &mut out);
                sent.push_back((id, Instant::now(), measuring));
            }
        }
        if shared.stop.load(Ordering::Relaxed) && sent.is_empty() {
            break None;
        }
    };
    if let Some(why) = failure {
        shared.fail(|| format!("connection {index}: {why}"));
    }
    shared.done.fetch_add(done, Ordering::Relaxed);
    shared.skipped.fetch_add(skipped, Ordering::Relaxed);
    let _ = shared.hist.lock().expect("hist").add(&local);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_wrap_below_2_pow_31_and_skip_0() {
        assert_eq!(next_request_id(0), 1);
        assert_eq!(next_request_id(1), 2);
        assert_eq!(next_request_id(MAX_REQUEST_ID - 1), MAX_REQUEST_ID);
        assert_eq!(next_request_id(MAX_REQUEST_ID), 1);
        assert_eq!(next_request_id(u32::MAX), 1);
    }

    #[test]
    fn the_raw_frame_is_the_native_payload_in_an_ldc_frame() {
        let body = Bytes::from_static(b"hi");
        let mut native = BytesMut::new();
        NativeWire::default().encode(ClientPacket::Request { id: 7, body: &body }, &mut native);
        let mut raw = BytesMut::new();
        Framing::new(Server::RawEcho)
            .encode(ClientPacket::Request { id: 7, body: &body }, &mut raw);
        // u32 big-endian length, then the native frame without its one-byte varint length.
        assert_eq!(&raw[..4], &((native.len() - 1) as u32).to_be_bytes());
        assert_eq!(&raw[4..], &native[1..]);
    }
}
