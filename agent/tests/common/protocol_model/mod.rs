//! A protocol-neutral model of one `Connection`, for property tests run on every built-in wire
//! protocol (`state_machine_protocols_props.rs`):
//!
//! - this file: the neutral events (what a client does, [`CPkt`]; what the gate must make of it,
//!   [`In`]; what the gate writes, [`Out`]) and [`WireModel`], a protocol seen from a test;
//! - `native.rs`, `mqtt.rs`, `pomelo.rs`: the three wire models, written from the protocol docs
//!   (docs/PROTOCOL.md; docs/MQTT.md and docs/POMELO.md, "Mapping to the gate") on the codecs of
//!   `gatekit_codec`, never with the agent's own protocol code, so comparing checks its mapping;
//! - `connection.rs`: the model of the connection core, and the checks after every call into it;
//! - `driver.rs`: the generated steps, and the client and driver that run them on a virtual clock.

mod connection;
mod driver;
mod mqtt;
mod native;
mod pomelo;

pub use driver::{run, Case, GenResult, Params, Step};
pub use mqtt::MqttWire;
pub use native::NativeWire;
pub use pomelo::PomeloWire;

use bytes::{Bytes, BytesMut};
use gatekit_agent::{AgentConfig, Call, CallId, CloseReason, Connection, Protocol};
use gatekit_codec::{CloseCode, MessageId, Route, Status};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// The session id the tests give the connection.
pub const SID: &str = "props-session";
/// The topic of every push.
pub const PUSH_TOPIC: &str = "room/7";

/// What a client does, whatever its protocol; a protocol without such a packet sends nothing.
#[derive(Debug, Clone)]
pub enum CPkt {
    /// The handshake, with a token and the heartbeat (keep-alive) wanted; 0: the gate chooses.
    Hello { heartbeat: u16 },
    /// A handshake the gate refuses: another native version, MQTT 5, pomelo without `sys`.
    BadHello,
    /// The acknowledgement of the welcome (pomelo's handshake ack).
    Ack,
    /// A request, answered by id; `qos1` makes it an MQTT QoS 1 PUBLISH.
    Request {
        route: usize,
        body: Vec<u8>,
        qos1: bool,
    },
    /// A one-way call.
    Notify { route: usize, body: Vec<u8> },
    /// A ping (native PING, MQTT PINGREQ, pomelo heartbeat).
    Ping,
    /// A packet the protocol answers itself or ignores: native PONG; MQTT SUBSCRIBE at QoS
    /// `n % 5` (0 to 2), UNSUBSCRIBE (3) or PUBACK (4).
    Extra(u8),
    /// The graceful goodbye (native CLOSE, MQTT DISCONNECT).
    Goodbye,
    /// Bytes that cannot be a packet: a prefix the codec refuses, then these.
    Garbage(Vec<u8>),
    /// A length prefix over the frame limit.
    Oversize,
    /// A well-framed request whose route the gate cannot map to `module/func`.
    BadRoute,
}

/// What the gate must make of the client's next packet.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    /// A handshake; refused with this code, or opening a session.
    Hello {
        heartbeat: Option<Duration>,
        refused: Option<CloseCode>,
    },
    /// A back-end call to `route`; a request (answered to `reply`) or a notify.
    Call {
        reply: Option<u32>,
        route: String,
        body: Bytes,
    },
    /// Answered with a pong.
    Ping,
    /// Counts as activity and nothing more (for the core).
    Activity,
    /// The graceful goodbye.
    Goodbye,
    /// A complete packet not allowed here: counted, then closed as a protocol error.
    Invalid,
    /// Bytes that do not decode into an event: not counted, closed with this code.
    Bad(CloseCode),
}

/// An answer's content, as the protocol carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Native: a status and the body.
    Status(Status, Bytes),
    /// A JSON envelope (MQTT) or error object (pomelo).
    Json(Value),
    /// The back end's bytes, untouched (pomelo's `ok`).
    Raw(Bytes),
}

/// What the gate wrote, decoded by the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// The session opened; the heartbeat it offers, if the protocol says.
    Welcome { heartbeat: Option<u64> },
    /// The answer to request `id`.
    Response { id: u32, answer: Answer },
    /// A push.
    Push { topic: String, body: Bytes },
    /// The answer to a ping (and pomelo's heartbeat after the ack).
    Pong,
    /// A packet the protocol writes on its own (MQTT PUBACK, SUBACK, UNSUBACK), as Debug text.
    Ack(String),
    /// The gate's last packet: its kind, and its text when the model knows it (`None`: any).
    Close { kind: String, text: Option<String> },
}

/// An expected packet and its size on the wire.
pub type Pkt = (Out, usize);

/// Whether `got` is what the model expected: the same packets in the same order, a close's text
/// compared only where the model knows it.
pub fn same_outs(expected: &[Out], got: &[Out]) -> bool {
    expected.len() == got.len()
        && expected.iter().zip(got).all(|(e, g)| match (e, g) {
            (Out::Close { kind, text: None }, Out::Close { kind: k, .. }) => kind == k,
            _ => e == g,
        })
}

/// One wire protocol, from the test's side. See the module docs.
pub trait WireModel {
    /// The agent's implementation of the protocol.
    type P: Protocol;
    /// For messages.
    const NAME: &'static str;
    /// Frame limits to test with, down to ones too small for the protocol's `internal error`
    /// answer (the connection then closes `internal`) or for a long closing reason (cut to fit).
    const FRAMES: RangeInclusive<usize> = 64..=512;

    /// The model, for a gate configured with `cfg`.
    fn new(cfg: &AgentConfig) -> Self;
    /// The agent's protocol for a connection under `cfg`.
    fn protocol(cfg: &AgentConfig) -> Self::P;
    /// Appends what the client sends for `pkt` (`id`: the id of a request).
    fn encode(&mut self, pkt: &CPkt, id: u32, out: &mut BytesMut);
    /// The gate's view of the client's next packet (`None`: more bytes needed), and the packet the
    /// protocol must write on its own when it reads it.
    fn decode_in(&mut self, buf: &mut BytesMut) -> Option<(In, Option<Pkt>)>;
    /// The welcome for a hello that asked for `asked`, and the idle timeout agreed.
    fn welcome(&self, asked: Option<Duration>, cfg: &AgentConfig) -> (Pkt, Duration);
    /// The answer to request `id`; `None` if it is over the frame limit.
    fn response(&self, id: u32, status: Status, body: &Bytes) -> Option<Pkt>;
    /// A push on [`PUSH_TOPIC`]; `None` if it is over the frame limit.
    fn push(&self, body: &Bytes) -> Option<Pkt>;
    /// The answer to a ping.
    fn pong(&self) -> Pkt;
    /// The packet the gate closes with for `code`, if the protocol has one here.
    fn close(&mut self, code: CloseCode, text: Option<&str>) -> Option<Out>;
    /// The next packet the gate wrote; panics on bytes a client cannot decode.
    fn decode_out(&mut self, buf: &mut BytesMut) -> Option<Out>;
}

fn mid(id: u32) -> MessageId {
    MessageId::new(id).expect("ids start at 1")
}

fn varint(mut n: usize, out: &mut BytesMut) {
    while n >= 0x80 {
        out.extend_from_slice(&[(n as u8 & 0x7f) | 0x80]);
        n >>= 7;
    }
    out.extend_from_slice(&[n as u8]);
}

fn secs(s: u16) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(u64::from(s)))
}

/// `module/func` if the codec takes it as a route.
fn route(module: &str, func: &str) -> Option<String> {
    let r = format!("{module}/{func}");
    Route::new(Bytes::from(r.clone())).ok().map(|_| r)
}

/// The sequence number a push body starts with (`n:...`).
fn push_seq(body: &[u8]) -> u64 {
    let text = std::str::from_utf8(body).expect("push bodies are text");
    text.split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a push number")
}

// ----- the model of a connection (its code: `connection.rs`, `driver.rs`) -----

/// The connection's phase, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    Closing,
    Closed,
}

/// A back-end call in flight.
#[derive(Debug)]
struct Flight {
    id: CallId,
    reply: Option<u32>,
    deadline: Instant,
}

/// What one call into the connection must do, built by the model as it mirrors the call.
#[derive(Default)]
struct Expect {
    /// Unwritten output in the connection's accounting: bytes, plus `PACKET_OVERHEAD` a packet.
    queued: usize,
    outs: Vec<Out>,
    /// The Calls the connection yielded, and how many of them the model expected so far.
    calls: Vec<Call>,
    matched: usize,
    heartbeats: usize,
    /// Store operations the model expects, in order: kind and user.
    stores: Vec<(gatekit_agent::StoreKind, String)>,
}

/// One connection speaking `M`'s protocol, with the client and driver around it, its model, and
/// what the client and driver saw.
struct H<M: WireModel> {
    p: Params,
    cfg: AgentConfig,
    conn: Connection<M::P>,
    wire: M,
    t0: Instant,
    now: Instant,
    // ----- the client and the driver -----
    next_id: u32,
    next_push: u64,
    socket: VecDeque<BytesMut>,
    eof_pending: bool,
    eof_done: bool,
    /// Unwritten bytes of each packet handed out by `poll_transmit`, in order.
    transit: VecDeque<usize>,
    written_packets: u64,
    // ----- the model of the connection -----
    phase: Phase,
    reason: Option<CloseReason>,
    /// Received bytes not yet decoded.
    buf: BytesMut,
    handshake_deadline: Instant,
    linger_deadline: Instant,
    peer_eof: bool,
    goodbye: bool,
    in_flight: Vec<Flight>,
    issued: Vec<CallId>,
    received: u64,
    connected: bool,
    idle: Duration,
    last_activity: Instant,
    bound: Option<String>,
    active: bool,
    last_heartbeat: Option<Instant>,
    // ----- what the client and the driver saw -----
    /// Requests the gate decoded and did not answer yet.
    outstanding: BTreeSet<u32>,
    /// Requests lost in a close, and its reason.
    lost: BTreeMap<u32, CloseReason>,
    /// Pushes accepted and not yet seen.
    pushes: VecDeque<u64>,
    connects: usize,
    disconnects: usize,
    /// When the session was last bound, and the heartbeats seen since.
    bound_since: Option<(Instant, u64)>,
    heartbeat_seen: Option<Instant>,
}
