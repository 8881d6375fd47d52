//! A small custom protocol, defined in user code, run on the gate with every guarantee of the
//! connection core: Leaf-style frames (a 2-byte big-endian length, then one JSON message).
//!
//! ```text
//! client → gate                                        gate → client
//! {"hello":{"token":"t","heartbeat":10}}               {"welcome":{"session":"…","heartbeat":10}}
//! {"request":{"id":1,"route":"echo/say","body":…}}     {"response":{"id":1,"status":"ok","body":…}}
//! {"notify":{"route":"chat/typing","body":…}}          {"push":{"topic":"room/7","body":…}}
//! {"ping":{}}  {"pong":{}}  {"bye":{}}                 {"pong":{}}  {"close":{"code":"kicked","reason":"…"}}
//! ```
//!
//! Bodies are JSON values, carried to and from the back ends as their JSON text; a back end's
//! answer that is not JSON is sent as a JSON string.

use bytes::{Bytes, BytesMut};
use gatekit_agent::protocol::{Event, Hello, Negotiated, Outbox, TooLarge, Violation, Welcome};
use gatekit_agent::{AgentConfig, Protocol};
use gatekit_codec::{
    CloseCode, Endian, FrameDecoder, Framing, LengthField, Oversize, Route, Status, Topic,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// The largest frame a 2-byte length can announce.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// What a client sends.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The handshake.
    Hello {
        /// Credentials.
        token: String,
        /// The heartbeat the client wants, in seconds.
        heartbeat: Option<u16>,
    },
    /// A request.
    Request {
        /// Its id, echoed in the response.
        id: u32,
        /// `module/func`.
        route: String,
        /// Any JSON value.
        body: Box<RawValue>,
    },
    /// A one-way call.
    Notify {
        /// `module/func`.
        route: String,
        /// Any JSON value.
        body: Box<RawValue>,
    },
    /// Asks for a pong.
    Ping {},
    /// Answers a ping.
    Pong {},
    /// Leaves.
    Bye {},
}

/// What the gate sends.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GateMessage {
    /// The session opened.
    Welcome {
        /// The session id.
        session: String,
        /// Seconds between pings.
        heartbeat: u64,
    },
    /// The answer to request `id`.
    Response {
        /// The request's id.
        id: u32,
        /// `ok`, `not_found`, `failed`, `busy`, `timeout` or `internal_error`.
        status: String,
        /// The back end's answer.
        body: Box<RawValue>,
    },
    /// A server push.
    Push {
        /// Its topic.
        topic: String,
        /// Its body.
        body: Box<RawValue>,
    },
    /// Answers a ping.
    Pong {},
    /// The gate closes the connection.
    Close {
        /// The close code's name.
        code: String,
        /// Why.
        reason: String,
    },
}

fn framing() -> Framing {
    Framing::builder()
        .length_field(LengthField::U16(Endian::Big))
        .max_frame_length(MAX_FRAME)
        .oversize(Oversize::Fail)
        .build()
        .expect("valid framing")
}

/// Writes one message as a frame.
pub fn write_frame<T: Serialize>(msg: &T, out: &mut BytesMut) -> Result<(), TooLarge> {
    let json = serde_json::to_vec(msg).expect("messages serialise");
    framing().encode(&[], &json, out).map_err(|_| TooLarge {
        what: "message",
        len: json.len(),
        max: MAX_FRAME,
    })
}

/// A body as JSON: itself if it is JSON, else a JSON string of its text.
fn json_body(body: &Bytes) -> Box<RawValue> {
    if let Ok(s) = std::str::from_utf8(body) {
        if let Ok(raw) = RawValue::from_string(s.to_owned()) {
            return raw;
        }
    }
    let text = serde_json::to_string(&String::from_utf8_lossy(body)).expect("a string serialises");
    RawValue::from_string(text).expect("a JSON string is JSON")
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::NotFound => "not_found",
        Status::Failed => "failed",
        Status::Busy => "busy",
        Status::Timeout => "timeout",
        Status::InternalError => "internal_error",
    }
}

/// The protocol: one frame decoder per connection.
pub struct LeafJson {
    frames: FrameDecoder,
}

impl LeafJson {
    /// A new connection's protocol state.
    pub fn new(_config: &AgentConfig) -> Self {
        LeafJson {
            frames: framing().decoder(),
        }
    }
}

fn route(text: String) -> Result<Route, Violation> {
    Route::new(Bytes::from(text))
        .map_err(|e| Violation::new(CloseCode::ProtocolError, e.to_string()))
}

fn body(raw: &RawValue) -> Bytes {
    Bytes::from(raw.get().to_owned())
}

impl Protocol for LeafJson {
    type Reply = u32;

    fn name(&self) -> &'static str {
        "leaf-json"
    }

    fn decode(
        &mut self,
        input: &mut BytesMut,
        _outbox: &mut Outbox<'_>,
    ) -> Result<Option<Event<u32>>, Violation> {
        let frame = match self.frames.decode(input) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Violation::new(CloseCode::FrameTooLarge, e.to_string())),
        };
        let msg: ClientMessage = match serde_json::from_slice(&frame) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Some(Event::Invalid(Violation::new(
                    CloseCode::ProtocolError,
                    format!("not a message: {e}"),
                ))))
            }
        };
        let event = match msg {
            ClientMessage::Hello { token, heartbeat } => Event::Hello(Hello {
                credentials: Bytes::from(token),
                heartbeat: heartbeat
                    .filter(|&h| h > 0)
                    .map(|h| Duration::from_secs(h.into())),
                refused: None,
            }),
            ClientMessage::Request {
                id,
                route: r,
                body: b,
            } => match route(r) {
                Ok(route) => Event::Request {
                    reply: id,
                    route,
                    body: body(&b),
                },
                Err(v) => Event::Invalid(v),
            },
            ClientMessage::Notify { route: r, body: b } => match route(r) {
                Ok(route) => Event::Notify {
                    route,
                    body: body(&b),
                },
                Err(v) => Event::Invalid(v),
            },
            ClientMessage::Ping {} => Event::Ping,
            ClientMessage::Pong {} => Event::Activity,
            ClientMessage::Bye {} => Event::Goodbye,
        };
        Ok(Some(event))
    }

    fn negotiate(&self, hello: &Hello, config: &AgentConfig) -> Negotiated {
        let heartbeat = hello
            .heartbeat
            .map_or(config.ping_interval, |h| h.min(config.ping_interval));
        // Three missed heartbeats close the connection.
        Negotiated {
            heartbeat,
            idle_timeout: heartbeat * 3,
        }
    }

    fn encode_welcome(&mut self, w: &Welcome<'_>, out: &mut BytesMut) -> Result<(), TooLarge> {
        write_frame(
            &GateMessage::Welcome {
                session: w.session_id.to_owned(),
                heartbeat: w.heartbeat.as_secs(),
            },
            out,
        )
    }

    fn encode_response(
        &mut self,
        reply: &u32,
        status: Status,
        b: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        write_frame(
            &GateMessage::Response {
                id: *reply,
                status: status_name(status).to_owned(),
                body: json_body(b),
            },
            out,
        )
    }

    fn encode_push(
        &mut self,
        topic: &Topic,
        b: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        write_frame(
            &GateMessage::Push {
                topic: topic.as_str().to_owned(),
                body: json_body(b),
            },
            out,
        )
    }

    fn encode_pong(&mut self, out: &mut BytesMut) {
        let _ = write_frame(&GateMessage::Pong {}, out);
    }

    fn encode_close(&mut self, code: CloseCode, reason: &str, out: &mut BytesMut) -> bool {
        let reason: String = reason.chars().take(200).collect();
        write_frame(
            &GateMessage::Close {
                code: code.name().to_owned(),
                reason,
            },
            out,
        )
        .is_ok()
    }

    fn max_packet_len(&self) -> usize {
        MAX_FRAME + 2
    }
}
