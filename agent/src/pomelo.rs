//! [`Pomelo`]: the pomelo protocol (pomelo, pinus, pitaya, nano clients; docs/POMELO.md) as a
//! [`Protocol`], on the connection core.
//!
//! | pomelo | gatekit |
//! |---|---|
//! | handshake package `{"sys":..,"user":..}` | the hello; `user` (verbatim JSON) is the credentials |
//! | handshake response `{"code":200,"sys":{"heartbeat":s,..}}` | the welcome, with the gate's ping interval |
//! | `{"code":500}` / `{"code":501}` | a refused or malformed handshake, then close |
//! | handshake ack | activity; the gate answers with a heartbeat at once (the official client waits for one before it heartbeats at all) |
//! | heartbeat | a ping, echoed at once |
//! | request `server.handler.method` id n | a request to module `server`, function `handler.method`, answered by a response with id n |
//! | notify | a notify |
//! | push (gate → client) | a push on route = topic (compressed when the dictionary has it) |
//! | kick `{"reason":..}` | the gate's close, whatever its reason |
//!
//! Silence for two heartbeats closes the connection, as pinus does. Data or heartbeats before the
//! ack, a second handshake, responses or pushes from the client, a kick from the client, a route
//! without a dot, and undecodable messages close it with a protocol error (pinus drops some of
//! these silently: docs/POMELO.md lists each).

use crate::config::AgentConfig;
use crate::protocol::{Event, Hello, Negotiated, Outbox, Protocol, TooLarge, Violation, Welcome};
use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    split_route, ClientHandshake, Dictionary, HandshakeResponse, Kick, Message, MessageKind,
    MessageRoute, Package, PomeloCodec, CODE_OLD_CLIENT, CODE_USE_ERROR, HEADER_LEN,
};
use gatekit_codec::{CloseCode, MessageId, Oversize, Route, Status, Text, Topic};
use std::sync::Arc;
use std::time::Duration;

/// Heartbeats of silence after which the gate closes a pomelo connection (pinus: 2).
pub const IDLE_HEARTBEATS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the client's handshake.
    Handshake,
    /// Handshake answered; waiting for the ack.
    AwaitAck,
    /// Acked: data flows.
    Open,
}

/// The pomelo protocol for one connection.
#[derive(Debug, Clone)]
pub struct Pomelo {
    codec: PomeloCodec,
    stage: Stage,
    dict: Option<Arc<Dictionary>>,
    /// The client's handshake, kept until the welcome (for the dictionary version it holds).
    client: Option<ClientHandshake>,
}

impl Pomelo {
    /// The protocol with `config`'s frame limit as the largest package body, and no dictionary.
    pub fn new(config: &AgentConfig) -> Self {
        // A pomelo body length is 24 bits: a frame limit of 16 MiB is one byte over what it can
        // say. A gate's options are validated (`AgentConfig::validate`), so the limit is not 0.
        let max = config
            .max_frame_length
            .clamp(1, gatekit_codec::pomelo::MAX_BODY_LENGTH_CAP);
        let codec = PomeloCodec::new(max, Oversize::Fail).expect("a limit within 1..=the cap");
        Pomelo {
            codec,
            stage: Stage::Handshake,
            dict: None,
            client: None,
        }
    }

    /// With a route dictionary (sent in the handshake; routes in it travel as 2-byte codes).
    pub fn with_dictionary(mut self, dict: Arc<Dictionary>) -> Self {
        self.dict = Some(dict);
        self
    }

    fn protocol_error(reason: impl Into<String>) -> Event<MessageId> {
        Event::Invalid(Violation::new(CloseCode::ProtocolError, reason))
    }

    /// The gate's route for a pomelo route: `echo.handler.say` → `echo/handler.say`.
    fn gate_route(&self, route: &MessageRoute) -> Result<Route, String> {
        let name: &str = match route {
            MessageRoute::Name(_) => route.as_name().unwrap_or_default(),
            MessageRoute::Code(_) => match &self.dict {
                Some(d) => d.resolve(route).map_err(|e| e.to_string())?,
                None => {
                    return Err(format!(
                        "{route:?}: a compressed route, but no dictionary was sent"
                    ))
                }
            },
        };
        let (module, func) = split_route(name).map_err(|e| e.to_string())?;
        Route::new(Bytes::from(format!("{module}/{func}")))
            .map_err(|e| format!("route {name:?}: {e}"))
    }

    /// A data package: a message that does not decode, or whose route is not valid, is input that
    /// cannot be decoded (as in the native protocol); a valid message the gate does not take from
    /// clients is an invalid packet.
    fn data(&self, body: Bytes) -> Result<Event<MessageId>, Violation> {
        let bad = |e: String| Violation::new(CloseCode::ProtocolError, e);
        let message = Message::decode(body).map_err(|e| bad(e.to_string()))?;
        Ok(match message.kind {
            MessageKind::Request { id, ref route } => Event::Request {
                reply: id,
                route: self.gate_route(route).map_err(bad)?,
                body: message.body,
            },
            MessageKind::Notify { ref route } => Event::Notify {
                route: self.gate_route(route).map_err(bad)?,
                body: message.body,
            },
            MessageKind::Response { .. } => {
                Pomelo::protocol_error("a response is sent by the gate, not by clients")
            }
            MessageKind::Push { .. } => {
                Pomelo::protocol_error("a push is sent by the gate, not by clients")
            }
        })
    }

    fn package(
        &mut self,
        p: &Package,
        out: &mut BytesMut,
        what: &'static str,
    ) -> Result<(), TooLarge> {
        self.codec.encode(p, out).map_err(|_| TooLarge {
            what,
            len: p.body().len() + HEADER_LEN,
            max: self.codec.max_body_length(),
        })
    }
}

fn status_body(status: Status, body: &Bytes) -> Bytes {
    if status == Status::Ok {
        return body.clone();
    }
    // pomelo answers errors with a JSON object whose `code` is 500; the status says which.
    let text = String::from_utf8_lossy(body);
    let json = serde_json::json!({ "code": 500, "status": status.name(), "error": text });
    Bytes::from(json.to_string())
}

impl Protocol for Pomelo {
    type Reply = MessageId;

    fn name(&self) -> &'static str {
        "pomelo"
    }

    fn decode(
        &mut self,
        input: &mut BytesMut,
        outbox: &mut Outbox<'_>,
    ) -> Result<Option<Event<MessageId>>, Violation> {
        let package = match self.codec.decode(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) if e.is_fatal() => {
                let code = if matches!(e, gatekit_codec::pomelo::PackageError::TooLarge { .. }) {
                    CloseCode::FrameTooLarge
                } else {
                    CloseCode::ProtocolError
                };
                return Err(Violation::new(code, e.to_string()));
            }
            // A heartbeat or ack carrying a body: the package was read, and it is not allowed.
            Err(e) => return Ok(Some(Pomelo::protocol_error(e.to_string()))),
        };
        Ok(Some(match (self.stage, package) {
            (Stage::Handshake, Package::Handshake(body)) => match ClientHandshake::parse(&body) {
                Ok(client) => {
                    let credentials = client.user.clone().unwrap_or_default();
                    self.client = Some(client);
                    // The stage moves on at the handshake response (encode_welcome): until then
                    // (an authenticator deciding) a refusal is the handshake's own error answer.
                    Event::Hello(Hello {
                        credentials,
                        heartbeat: None,
                        refused: None,
                    })
                }
                Err(e) => Event::Hello(Hello {
                    refused: Some(Violation::new(CloseCode::ProtocolError, e.to_string())),
                    ..Hello::default()
                }),
            },
            (Stage::Handshake, other) => Pomelo::protocol_error(format!(
                "expected a handshake package, got {:?}",
                other.package_type()
            )),
            (Stage::AwaitAck, Package::HandshakeAck) => {
                self.stage = Stage::Open;
                // The official client starts heartbeating only once it has heard one.
                let codec = &self.codec;
                outbox.packet(|out| {
                    let _ = codec.encode(&Package::Heartbeat, out);
                });
                Event::Activity
            }
            (Stage::AwaitAck, other) => Pomelo::protocol_error(format!(
                "expected the handshake ack, got {:?}",
                other.package_type()
            )),
            (Stage::Open, Package::Heartbeat) => Event::Ping,
            (Stage::Open, Package::Data(body)) => self.data(body)?,
            (Stage::Open, Package::Handshake(_)) => Event::Hello(Hello::default()),
            (Stage::Open, other) => Pomelo::protocol_error(format!(
                "a {:?} package is not sent by clients here",
                other.package_type()
            )),
        }))
    }

    fn negotiate(&self, _hello: &Hello, config: &AgentConfig) -> Negotiated {
        // The gate decides the heartbeat; two of them without a packet close the connection.
        let heartbeat =
            Duration::from_secs(config.ping_interval.as_secs().clamp(1, u32::MAX as u64));
        Negotiated {
            heartbeat,
            idle_timeout: config.idle_timeout.min(heartbeat * IDLE_HEARTBEATS),
        }
    }

    fn encode_welcome(&mut self, w: &Welcome<'_>, out: &mut BytesMut) -> Result<(), TooLarge> {
        let secs = w.heartbeat.as_secs() as u32;
        let client = self.client.take().unwrap_or_default();
        self.stage = Stage::AwaitAck;
        let answer = HandshakeResponse::accept(&client, Some(secs), self.dict.as_ref());
        self.package(&answer.to_package(), out, "handshake response")
    }

    fn encode_response(
        &mut self,
        reply: &MessageId,
        status: Status,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        let message = Message::response(*reply, status_body(status, body));
        let len = message.encoded_len();
        self.codec
            .encode_message(&message, out)
            .map_err(|_| TooLarge {
                what: "response",
                len: len + HEADER_LEN,
                max: self.codec.max_body_length() + HEADER_LEN,
            })
    }

    fn encode_push(
        &mut self,
        topic: &Topic,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        let route = match &self.dict {
            Some(d) => d.compress(topic.as_str()),
            None => MessageRoute::Name(Text::from(topic.as_str().to_owned())),
        };
        let message = Message::push(route, body.clone());
        let len = message.encoded_len();
        self.codec
            .encode_message(&message, out)
            .map_err(|_| TooLarge {
                what: "push",
                len: len + HEADER_LEN,
                max: self.codec.max_body_length() + HEADER_LEN,
            })
    }

    fn encode_pong(&mut self, out: &mut BytesMut) {
        let _ = self.codec.encode(&Package::Heartbeat, out);
    }

    fn encode_close(&mut self, code: CloseCode, reason: &str, out: &mut BytesMut) -> bool {
        let package = match self.stage {
            // Before the handshake is answered, the refusal is the handshake response.
            Stage::Handshake => {
                let c = if code == CloseCode::UnsupportedVersion {
                    CODE_OLD_CLIENT
                } else {
                    CODE_USE_ERROR
                };
                HandshakeResponse::error(c).to_package()
            }
            Stage::AwaitAck | Stage::Open => {
                // The longest prefix of at most 200 characters whose kick fits the body limit
                // (the JSON length grows with the prefix), so the kick is never refused unless
                // even `{"reason":""}` is over the limit.
                let max = self.codec.max_body_length();
                let chars: Vec<char> = reason.chars().take(200).collect();
                let kick = |n: usize| Kick::new(chars[..n].iter().collect::<String>());
                // Binary search: `fits` fits (or is 0), `over` does not (or is past the end).
                let (mut fits, mut over) = (0, chars.len() + 1);
                while over - fits > 1 {
                    let mid = (fits + over) / 2;
                    if kick(mid).to_json().len() <= max {
                        fits = mid;
                    } else {
                        over = mid;
                    }
                }
                kick(fits).to_package()
            }
        };
        self.codec.encode(&package, out).is_ok()
    }

    fn max_packet_len(&self) -> usize {
        self.codec.max_body_length() + HEADER_LEN
    }

    fn max_close_len(&self) -> usize {
        // A kick of at most 200 characters (4 bytes each) in `{"reason":".."}`, escaped.
        HEADER_LEN + 16 + 200 * 4 * 2
    }

    fn event_name(&self, event: &Event<MessageId>) -> &'static str {
        match event {
            Event::Hello(_) => "handshake",
            Event::Request { .. } => "request",
            Event::Notify { .. } => "notify",
            Event::Ping => "heartbeat",
            Event::Activity => "handshake ack",
            Event::Goodbye => "goodbye",
            Event::Invalid(_) => "an invalid package",
        }
    }
}
