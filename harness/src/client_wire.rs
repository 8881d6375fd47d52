//! How a simulated client speaks each wire protocol: what it sends, encoded, and what the gate
//! sends, decoded into [`GateEvent`]s. The client's behaviour (`client.rs`) is the same for every
//! protocol; only this changes.

use crate::listen::WireProtocol;
use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    ClientHandshake, Kick, Message, MessageKind, MessageRoute, Package, PomeloCodec,
    ServerHandshake,
};
use gatekit_codec::{
    Close, CloseCode, Handshake, MessageId, NativeCodec, Notify, Oversize, Packet, Request, Route,
    Status, Text, PROTOCOL_VERSION,
};

/// What a client sends.
#[derive(Debug, Clone)]
pub enum ClientPacket<'a> {
    /// The handshake.
    Hello {
        /// Credentials.
        token: &'a [u8],
    },
    /// Acknowledges the welcome, where the protocol has such a packet (pomelo).
    Ack,
    /// A request to the echo back end.
    Request {
        /// Its id.
        id: u32,
        /// Its body.
        body: &'a Bytes,
    },
    /// A notify to the echo back end.
    Notify {
        /// Its body.
        body: &'a Bytes,
    },
    /// A ping (native PING, pomelo heartbeat).
    Ping,
    /// The answer to the gate's ping.
    Pong,
    /// The graceful goodbye (native CLOSE).
    Goodbye,
}

/// What the gate sent, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateEvent {
    /// The session opened; the protocol may carry its id (native) or not (pomelo).
    Welcome {
        /// The session id, if the protocol carries it.
        session_id: Option<String>,
    },
    /// The answer to request `id`.
    Response {
        /// The request id.
        id: u32,
        /// Its status.
        status: Status,
        /// Its body.
        body: Bytes,
    },
    /// A push.
    Push {
        /// Its body.
        body: Bytes,
    },
    /// A ping from the gate.
    Ping,
    /// A pong (pomelo: any heartbeat from the gate).
    Pong,
    /// The gate's last packet: its close code (a pomelo kick is `kicked`, a refused pomelo
    /// handshake `protocol error`).
    Close {
        /// The code.
        code: CloseCode,
    },
    /// A packet a gate must never send a client.
    Unexpected,
}

/// Kinds of deliberately broken input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// Bytes that cannot be a packet.
    Bytes,
    /// A length prefix far over the limit.
    Oversize,
    /// A well-framed request whose route is not valid.
    Route,
}

/// One client's side of a wire protocol.
pub trait ClientWire: Send {
    /// Encodes one packet.
    fn encode(&mut self, packet: ClientPacket<'_>, out: &mut BytesMut);
    /// Decodes the next packet the gate sent (`Ok(None)`: need more bytes). An `Err` is a
    /// decode error on the gate's output; `fatal` says whether the stream is lost.
    fn decode(&mut self, input: &mut BytesMut) -> Result<Option<GateEvent>, (String, bool)>;
    /// Whether the protocol has a graceful goodbye packet (else a client closes its side).
    fn has_goodbye(&self) -> bool;
    /// Whether the client must acknowledge the welcome.
    fn acks_welcome(&self) -> bool;
    /// Broken input of this kind; `random` supplies bytes for [`Garbage::Bytes`].
    fn garbage(&self, kind: Garbage, random: &[u8]) -> Vec<u8>;
}

/// The route every request goes to: the fake back end echoes.
pub const ECHO_ROUTE: &str = "echo/say";

/// The same route in pomelo's form (`server.handler.method`).
pub const POMELO_ECHO_ROUTE: &str = "echo.handler.say";

/// A client's wire for `protocol`.
pub fn wire(protocol: WireProtocol) -> Box<dyn ClientWire> {
    match protocol {
        WireProtocol::Native => Box::new(NativeWire::default()),
        WireProtocol::Mqtt => Box::new(MqttWire::default()),
        WireProtocol::Pomelo => Box::new(PomeloWire::default()),
    }
}

/// gatekit's native protocol.
#[derive(Debug, Default)]
pub struct NativeWire {
    codec: NativeCodec,
}

impl ClientWire for NativeWire {
    fn encode(&mut self, packet: ClientPacket<'_>, out: &mut BytesMut) {
        let id = |id: u32| MessageId::new(id).expect("ids start at 1");
        let packet = match packet {
            ClientPacket::Hello { token } => Packet::Handshake(Handshake {
                version: PROTOCOL_VERSION,
                heartbeat_secs: 0,
                token: Bytes::copy_from_slice(token),
            }),
            ClientPacket::Ack => return,
            ClientPacket::Request { id: n, body } => Packet::Request(Request::new(
                id(n),
                Route::from_static(ECHO_ROUTE),
                body.clone(),
            )),
            ClientPacket::Notify { body } => {
                Packet::Notify(Notify::new(Route::from_static(ECHO_ROUTE), body.clone()))
            }
            ClientPacket::Ping => Packet::Ping,
            ClientPacket::Pong => Packet::Pong,
            ClientPacket::Goodbye => Packet::Close(Close {
                code: CloseCode::Normal,
                reason: Text::from_static("bye"),
            }),
        };
        self.codec
            .encode(&packet, out)
            .expect("client packets are within limits");
    }

    fn decode(&mut self, input: &mut BytesMut) -> Result<Option<GateEvent>, (String, bool)> {
        let packet = match self.codec.decode(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => return Err((e.to_string(), e.is_fatal())),
        };
        Ok(Some(match packet {
            Packet::Welcome(w) => GateEvent::Welcome {
                session_id: Some(w.session_id.as_str().to_owned()),
            },
            Packet::Response(r) => GateEvent::Response {
                id: r.id.get(),
                status: r.status,
                body: r.body,
            },
            Packet::Push(p) => GateEvent::Push {
                body: p.into_body(),
            },
            Packet::Ping => GateEvent::Ping,
            Packet::Pong => GateEvent::Pong,
            Packet::Close(c) => GateEvent::Close { code: c.code },
            Packet::Handshake(_) | Packet::Request(_) | Packet::Notify(_) => GateEvent::Unexpected,
        }))
    }

    fn has_goodbye(&self) -> bool {
        true
    }

    fn acks_welcome(&self) -> bool {
        false
    }

    fn garbage(&self, kind: Garbage, random: &[u8]) -> Vec<u8> {
        match kind {
            Garbage::Oversize => vec![0xff, 0xff, 0xff, 0x7f, 0x03],
            Garbage::Route => {
                // A REQUEST whose route has no '/': framed correctly, invalid inside.
                let route = b"noslash";
                let mut f = vec![(1 + 4 + 1 + route.len()) as u8, 0x03, 0, 0, 0, 1];
                f.push(route.len() as u8);
                f.extend_from_slice(route);
                f
            }
            Garbage::Bytes => {
                // Random bytes starting with a frame that cannot be a valid packet kind.
                let mut v = vec![0x05, 0xee];
                v.extend_from_slice(random);
                v
            }
        }
    }
}

/// The pomelo protocol, as the official clients speak it.
#[derive(Debug)]
pub struct PomeloWire {
    codec: PomeloCodec,
}

impl Default for PomeloWire {
    fn default() -> Self {
        PomeloWire {
            codec: PomeloCodec::new(
                gatekit_codec::pomelo::DEFAULT_MAX_BODY_LENGTH,
                Oversize::Fail,
            )
            .expect("default limits"),
        }
    }
}

/// The body pomelo's gate answers a failed request with: `{"code":500,"status":NAME,..}`.
fn pomelo_status(body: &Bytes) -> Option<Status> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("code")?.as_u64()? != 500 {
        return None;
    }
    let name = v.get("status")?.as_str()?;
    [
        Status::NotFound,
        Status::Failed,
        Status::Busy,
        Status::Timeout,
        Status::InternalError,
    ]
    .into_iter()
    .find(|s| s.name() == name)
}

impl ClientWire for PomeloWire {
    fn encode(&mut self, packet: ClientPacket<'_>, out: &mut BytesMut) {
        let route = MessageRoute::from_static(POMELO_ECHO_ROUTE);
        let result = match packet {
            ClientPacket::Hello { token } => {
                let mut hs = ClientHandshake::new("js-tcp", "0.0.1");
                let user = serde_json::json!({ "token": String::from_utf8_lossy(token) });
                hs.user = Some(Bytes::from(user.to_string()));
                self.codec.encode(&hs.to_package(), out)
            }
            ClientPacket::Ack => self.codec.encode(&Package::HandshakeAck, out),
            ClientPacket::Request { id, body } => self.codec.encode_message(
                &Message::request(
                    MessageId::new(id).expect("ids start at 1"),
                    route,
                    body.clone(),
                ),
                out,
            ),
            ClientPacket::Notify { body } => self
                .codec
                .encode_message(&Message::notify(route, body.clone()), out),
            ClientPacket::Ping | ClientPacket::Pong => self.codec.encode(&Package::Heartbeat, out),
            // pomelo has no goodbye: the client closes its side.
            ClientPacket::Goodbye => return,
        };
        result.expect("client packets are within limits");
    }

    fn decode(&mut self, input: &mut BytesMut) -> Result<Option<GateEvent>, (String, bool)> {
        let package = match self.codec.decode(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => return Err((e.to_string(), e.is_fatal())),
        };
        Ok(Some(match package {
            Package::Handshake(body) => match ServerHandshake::parse(&body) {
                Ok(hs) if hs.code == 200 => GateEvent::Welcome { session_id: None },
                Ok(_) | Err(_) => GateEvent::Close {
                    code: CloseCode::ProtocolError,
                },
            },
            Package::Heartbeat => GateEvent::Pong,
            Package::Kick(body) => {
                let reason = Kick::parse(&body).map(|k| k.reason).unwrap_or_default();
                let code = [
                    CloseCode::IdleTimeout,
                    CloseCode::Shutdown,
                    CloseCode::FrameTooLarge,
                    CloseCode::HandshakeTimeout,
                ]
                .into_iter()
                .find(|c| reason == c.name())
                .unwrap_or(CloseCode::Kicked);
                GateEvent::Close { code }
            }
            Package::Data(body) => match Message::decode(body) {
                Ok(m) => match m.kind {
                    MessageKind::Response { id } => GateEvent::Response {
                        id: id.get(),
                        status: pomelo_status(&m.body).unwrap_or(Status::Ok),
                        body: m.body,
                    },
                    MessageKind::Push { .. } => GateEvent::Push { body: m.body },
                    _ => GateEvent::Unexpected,
                },
                Err(e) => return Err((e.to_string(), false)),
            },
            Package::HandshakeAck => GateEvent::Unexpected,
        }))
    }

    fn has_goodbye(&self) -> bool {
        false
    }

    fn acks_welcome(&self) -> bool {
        true
    }

    fn garbage(&self, kind: Garbage, random: &[u8]) -> Vec<u8> {
        match kind {
            // A data package announcing 16 MiB.
            Garbage::Oversize => vec![0x04, 0xff, 0xff, 0xff],
            Garbage::Route => {
                let m = Message::request(
                    MessageId::new(1).expect("1"),
                    MessageRoute::from_static("nodots"),
                    Bytes::from_static(b"{}"),
                );
                let mut out = BytesMut::new();
                self.codec
                    .encode_message(&m, &mut out)
                    .expect("within limits");
                out.to_vec()
            }
            Garbage::Bytes => {
                // An unknown package type, then noise.
                let mut v = vec![0x09, 0, 0, 1];
                v.extend_from_slice(random);
                v
            }
        }
    }
}

/// mqant's MQTT dialect, as an MQTT 3.1.1 client: requests are PUBLISHes on
/// `echo/HD_say/<id>`, answered on the same topic in mqant's JSON envelope. Bodies travel as hex
/// text after an `h`, so that the envelope's `Result` (a JSON string of the echoed text) gives
/// them back exactly: text that is not JSON goes in as a string, and hex digits alone can be
/// JSON (`7878`, the hex of `xx`, is a number).
#[derive(Debug)]
pub struct MqttWire {
    codec: gatekit_codec::mqtt::MqttCodec,
}

impl Default for MqttWire {
    fn default() -> Self {
        MqttWire {
            codec: gatekit_codec::mqtt::MqttCodec::client(),
        }
    }
}

/// The topic of the harness's MQTT requests (and notifies, without the id).
pub const MQTT_ECHO_TOPIC: &str = "echo/HD_say";

/// What starts a hex body: `h` followed by hex digits is never JSON.
const HEX_MARK: &str = "h";

fn hex(bytes: &[u8]) -> Bytes {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(HEX_MARK.len() + bytes.len() * 2);
    s.extend_from_slice(HEX_MARK.as_bytes());
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)]);
        s.push(DIGITS[usize::from(b & 0x0f)]);
    }
    Bytes::from(s)
}

fn unhex(text: &str) -> Option<Bytes> {
    let text = text.strip_prefix(HEX_MARK)?.as_bytes();
    if text.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

/// mqant's answer envelope; `Trace` is not read. `Result` is a string for the harness's answers
/// (anything else, on an answer without an error, is not one of ours).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Error", borrow)]
    error: std::borrow::Cow<'a, str>,
    #[serde(rename = "Result", borrow, default)]
    result: Option<std::borrow::Cow<'a, str>>,
}

/// An answer's status and body from mqant's envelope `{"Trace","Error","Result"}`.
fn mqtt_answer(payload: &[u8]) -> Option<(Status, Bytes)> {
    let v: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    let error = &*v.error;
    if error.is_empty() {
        let result = v.result?;
        return Some((
            Status::Ok,
            unhex(&result).unwrap_or_else(|| Bytes::from(result.into_owned())),
        ));
    }
    let name = error.split(':').next().unwrap_or(error);
    let status = [
        Status::NotFound,
        Status::Failed,
        Status::Busy,
        Status::Timeout,
        Status::InternalError,
    ]
    .into_iter()
    .find(|s| s.name() == name)?;
    Some((status, Bytes::new()))
}

impl ClientWire for MqttWire {
    fn encode(&mut self, packet: ClientPacket<'_>, out: &mut BytesMut) {
        use gatekit_codec::mqtt::{Connect, MqttString, Packet as M, Publish, TopicName};
        let packet = match packet {
            ClientPacket::Hello { token } => {
                let id = MqttString::new(Bytes::copy_from_slice(token)).expect("a client id");
                let mut c = Connect::new(id, 0);
                c.username = Some(MqttString::from_static("harness"));
                c.password = Some(Bytes::copy_from_slice(token));
                M::Connect(Box::new(c))
            }
            ClientPacket::Ack | ClientPacket::Pong => return,
            ClientPacket::Request { id, body } => {
                let topic = TopicName::new(Bytes::from(format!("{MQTT_ECHO_TOPIC}/{id}")))
                    .expect("a topic");
                M::Publish(Publish::qos0(topic, hex(body)))
            }
            ClientPacket::Notify { body } => M::Publish(Publish::qos0(
                TopicName::from_static(MQTT_ECHO_TOPIC),
                hex(body),
            )),
            ClientPacket::Ping => M::PingReq,
            ClientPacket::Goodbye => M::Disconnect,
        };
        self.codec
            .encode(&packet, out)
            .expect("client packets are within limits");
    }

    fn decode(&mut self, input: &mut BytesMut) -> Result<Option<GateEvent>, (String, bool)> {
        use gatekit_codec::mqtt::{ConnAck, Packet as M};
        let packet = match self.codec.decode(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => return Err((e.to_string(), e.is_fatal())),
        };
        Ok(Some(match packet {
            M::ConnAck(ConnAck::Accepted { .. }) => GateEvent::Welcome { session_id: None },
            M::ConnAck(ConnAck::Refused(_)) | M::ConnAckV5(_) => GateEvent::Close {
                code: CloseCode::UnsupportedVersion,
            },
            M::PingResp => GateEvent::Pong,
            M::Publish(p) => {
                let topic = p.topic.as_str();
                let answer = topic
                    .strip_prefix(MQTT_ECHO_TOPIC)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|id| id.parse::<u32>().ok());
                match answer {
                    Some(id) => match mqtt_answer(&p.payload) {
                        Some((status, body)) => GateEvent::Response { id, status, body },
                        None => return Err(("an answer without mqant's envelope".into(), false)),
                    },
                    None => GateEvent::Push { body: p.payload },
                }
            }
            M::PubAck(_) | M::SubAck(_) | M::UnsubAck(_) => GateEvent::Pong,
            _ => GateEvent::Unexpected,
        }))
    }

    fn has_goodbye(&self) -> bool {
        true
    }

    fn acks_welcome(&self) -> bool {
        false
    }

    fn garbage(&self, kind: Garbage, random: &[u8]) -> Vec<u8> {
        match kind {
            // A PUBLISH whose remaining length says 256 MiB.
            Garbage::Oversize => vec![0x30, 0xff, 0xff, 0xff, 0x7f],
            Garbage::Route => {
                // A valid PUBLISH on a topic that is not module/HD_func.
                let mut out = BytesMut::new();
                let p = gatekit_codec::mqtt::Publish::qos0(
                    gatekit_codec::mqtt::TopicName::from_static("noslash"),
                    Bytes::from_static(b"{}"),
                );
                self.codec
                    .encode(&gatekit_codec::mqtt::Packet::Publish(p), &mut out)
                    .expect("within limits");
                out.to_vec()
            }
            Garbage::Bytes => {
                // Packet type 15 (reserved), then noise.
                let mut v = vec![0xf0, 0x00];
                v.extend_from_slice(random);
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_bodies_come_back_exactly_even_when_their_hex_is_a_json_number() {
        // The hex of "xx" is 7878, a JSON number if sent bare; and bytes of every value.
        let all: Vec<u8> = (0..=255).collect();
        for body in [&b"xxxx"[..], b"", b"{}", b"12", &all] {
            let text = hex(body);
            let answer = gatekit_agent::mqtt::envelope(Status::Ok, &text);
            assert_eq!(
                mqtt_answer(&answer),
                Some((Status::Ok, Bytes::copy_from_slice(body))),
                "{body:?} as {text:?} in {answer:?}"
            );
        }
        // Text that is not hex comes back as it is; errors give their status.
        let plain = gatekit_agent::mqtt::envelope(Status::Ok, &Bytes::from_static(b"hello"));
        assert_eq!(
            mqtt_answer(&plain),
            Some((Status::Ok, Bytes::from_static(b"hello")))
        );
        let busy = gatekit_agent::mqtt::envelope(Status::Busy, &Bytes::from_static(b"full"));
        assert_eq!(mqtt_answer(&busy), Some((Status::Busy, Bytes::new())));
        // A JSON body is echoed as JSON, not as a string: not one of the harness's answers.
        let json = gatekit_agent::mqtt::envelope(Status::Ok, &Bytes::from_static(b"{}"));
        assert_eq!(mqtt_answer(&json), None);
        assert_eq!(mqtt_answer(b"not json"), None);
    }
}
