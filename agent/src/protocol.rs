//! [`Protocol`]: what a wire protocol gives the connection core, and what it writes for it.
//!
//! The connection state machine ([`Connection`](crate::Connection)) is written once, for every
//! protocol: phases, exactly-once Connect and Disconnect, ordering, back-pressure, the slow-consumer
//! close, heartbeat throttling, buffer bounds and counters. A protocol is a small sans-I/O type
//! that turns received bytes into [`Event`]s (a hello with credentials and the heartbeat the client
//! wants, a request with the protocol's own way to address its answer, a notify, a ping, activity,
//! a goodbye) and encodes the gate's answers (welcome, response with a status, push, pong, and the
//! last packet before a close). gatekit's native protocol is [`Native`](crate::Native); a user's own is another
//! implementation, run on the gate through the same factory (see `agent/examples/`).
//!
//! A protocol may answer some packets itself, without the core (MQTT's SUBACK and PUBACK, pomelo's
//! heartbeat after the handshake ack): it writes them into the [`Outbox`] it is given while
//! decoding, and they are counted and bounded like every other packet.

use crate::config::AgentConfig;
use bytes::{Bytes, BytesMut};
use gatekit_codec::{CloseCode, Route, Status, Topic};
use std::fmt;
use std::time::Duration;

/// What a client did, as a protocol decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<R> {
    /// The client's handshake: it wants a session.
    Hello(Hello),
    /// A request: call `route` with `body`, and answer it through `reply`.
    Request {
        /// How this protocol addresses the answer (the native message id, MQTT's topic...).
        reply: R,
        /// `module/func`.
        route: Route,
        /// The request body.
        body: Bytes,
    },
    /// A one-way call: no answer.
    Notify {
        /// `module/func`.
        route: Route,
        /// The body.
        body: Bytes,
    },
    /// The client asks for a pong.
    Ping,
    /// A packet that counts as activity and needs nothing from the core: a pong, an ack, a
    /// subscription the protocol answered itself through the [`Outbox`].
    Activity,
    /// The client is leaving gracefully.
    Goodbye,
    /// A complete packet that breaks the protocol (sent in the wrong direction, or not allowed
    /// here): it counts as received, and the connection closes with this code and reason.
    Invalid(Violation),
}

impl<R> Event<R> {
    /// A short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Hello(_) => "handshake",
            Event::Request { .. } => "request",
            Event::Notify { .. } => "notify",
            Event::Ping => "ping",
            Event::Activity => "activity",
            Event::Goodbye => "goodbye",
            Event::Invalid(_) => "invalid packet",
        }
    }
}

/// A client's handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// What the client proves itself with (the native token, MQTT's username and password, pomelo's
    /// user data), as the protocol carries it.
    pub credentials: Bytes,
    /// The heartbeat (ping, keep-alive) interval the client asked for; `None`: the gate chooses.
    pub heartbeat: Option<Duration>,
    /// Set when the protocol refuses this handshake (an unsupported version...): the close code
    /// and reason to answer with. The connection then ends `refused`, with no session.
    pub refused: Option<Violation>,
}

/// The heartbeat and idle timeout of a connection, agreed at its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The interval the client is told to ping at (a protocol without one sends it nowhere).
    pub heartbeat: Duration,
    /// A connection with no packet received for this long is closed.
    pub idle_timeout: Duration,
}

/// What the gate tells a welcomed client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// The session's id.
    pub session_id: &'a str,
    /// The agreed heartbeat.
    pub heartbeat: Duration,
    /// The largest packet the gate accepts and sends.
    pub max_frame_length: usize,
}

/// Input that breaks the protocol, or a handshake the protocol refuses: the connection closes
/// with this code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The close code to send (as the protocol can express it).
    pub code: CloseCode,
    /// Human-readable text: what was wrong, with what value, against which limit, and where.
    pub reason: String,
}

impl Violation {
    /// A violation with this code and reason.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Violation {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.reason)
    }
}

/// A packet the protocol could not encode (it breaks a limit); nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} of {len} bytes exceeds the maximum of {max}")]
pub struct TooLarge {
    /// What was being encoded.
    pub what: &'static str,
    /// Its length on the wire.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

/// Packets a protocol writes on its own while decoding (acknowledgements the core does not know
/// about). Each packet is counted as sent once written, and bounded with the write queue.
pub struct Outbox<'a> {
    pub(crate) buf: &'a mut BytesMut,
    pub(crate) ends: Vec<usize>,
}

impl<'a> Outbox<'a> {
    /// An outbox writing at the end of `buf`.
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Outbox {
            buf,
            ends: Vec::new(),
        }
    }

    /// Writes one packet with `encode`.
    pub fn packet(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        encode(self.buf);
        self.ends.push(self.buf.len());
    }

    /// Packets written so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A wire protocol, sans I/O. See the module docs.
///
/// Every method is given what it needs; none reads a clock or touches a socket. The core calls
/// [`Protocol::decode`] only while it can take another event (so a protocol never buffers more than
/// the packet it is decoding), and the `encode_*` methods append exactly one packet each (or, for
/// [`Protocol::encode_close`], none when the protocol has no closing packet). [`Protocol::decode`]
/// writes at most one packet into its outbox per event.
pub trait Protocol: Send + 'static {
    /// How this protocol addresses the answer to a request (native: the message id; MQTT: the
    /// reply topic; pomelo: the request id).
    type Reply: Clone + fmt::Debug + Send + Sync + 'static;

    /// The protocol's name (`native`, `mqtt`, `pomelo`...), for logs and sessions.
    fn name(&self) -> &'static str;

    /// Decodes the next event from the start of `input`, consuming its bytes. `Ok(None)`: more
    /// bytes are needed. An `Err` (bytes that cannot be decoded) closes the connection; a complete
    /// but invalid packet is [`Event::Invalid`], which counts as received first.
    fn decode(
        &mut self,
        input: &mut BytesMut,
        outbox: &mut Outbox<'_>,
    ) -> Result<Option<Event<Self::Reply>>, Violation>;

    /// The heartbeat and idle timeout for a client that said `hello`, under `config`.
    fn negotiate(&self, hello: &Hello, config: &AgentConfig) -> Negotiated;

    /// The packet that opens the session.
    fn encode_welcome(&mut self, welcome: &Welcome<'_>, out: &mut BytesMut)
        -> Result<(), TooLarge>;

    /// The answer to a request.
    fn encode_response(
        &mut self,
        reply: &Self::Reply,
        status: Status,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge>;

    /// A server push.
    fn encode_push(
        &mut self,
        topic: &Topic,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge>;

    /// The answer to a ping.
    fn encode_pong(&mut self, out: &mut BytesMut);

    /// The last packet before the gate closes the connection (a refusal, a protocol error, a
    /// kick, an idle timeout, a shutdown), written if the protocol has one. Returns whether it
    /// wrote a packet.
    fn encode_close(&mut self, code: CloseCode, reason: &str, out: &mut BytesMut) -> bool;

    /// The most bytes one packet can take on the wire, header included: the core stops reading
    /// past it, and it bounds what one packet adds to the output.
    fn max_packet_len(&self) -> usize;

    /// The most bytes [`Protocol::encode_close`] writes (for buffer bounds).
    fn max_close_len(&self) -> usize {
        self.max_packet_len()
    }

    /// The name of an event as this protocol calls it (for error messages); by default the
    /// neutral [`Event::name`].
    fn event_name(&self, event: &Event<Self::Reply>) -> &'static str {
        event.name()
    }
}
