//! [`Native`]: gatekit's own protocol (docs/PROTOCOL.md) as a [`Protocol`].

use crate::config::AgentConfig;
use crate::protocol::{Event, Hello, Negotiated, Outbox, Protocol, TooLarge, Violation, Welcome};
use bytes::{Bytes, BytesMut};
use gatekit_codec::native::MAX_REASON_LEN;
use gatekit_codec::{
    Close, CloseCode, DecodeError, EncodeError, FrameError, MessageId, NativeCodec, Oversize,
    Packet, Push, Response, Status, Text, Topic, PROTOCOL_VERSION,
};
use std::time::Duration;

/// Heartbeats without a packet after which the gate closes a connection (`idle timeout`).
pub const IDLE_HEARTBEATS: u32 = 3;

/// gatekit's native protocol: HANDSHAKE / WELCOME, REQUEST / RESPONSE by message id, NOTIFY, PUSH,
/// PING / PONG, CLOSE with a code and a reason.
#[derive(Debug, Clone)]
pub struct Native {
    codec: NativeCodec,
}

impl Native {
    /// The protocol with `config`'s frame limit.
    pub fn new(config: &AgentConfig) -> Self {
        let codec = NativeCodec::new(config.max_frame_length, Oversize::Fail)
            .unwrap_or_else(|_| NativeCodec::default());
        Native { codec }
    }

    fn encode(
        &mut self,
        packet: &Packet,
        out: &mut BytesMut,
        what: &'static str,
    ) -> Result<(), TooLarge> {
        self.codec
            .encode(packet, out)
            .map_err(|e| too_large(e, what))
    }
}

fn too_large(e: EncodeError, what: &'static str) -> TooLarge {
    match e {
        EncodeError::FrameTooLarge { len, max } => TooLarge { what, len, max },
        other => TooLarge {
            what,
            len: 0,
            max: other.to_string().len(),
        },
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Protocol for Native {
    type Reply = MessageId;

    fn name(&self) -> &'static str {
        "native"
    }

    fn decode(
        &mut self,
        input: &mut BytesMut,
        _outbox: &mut Outbox<'_>,
    ) -> Result<Option<Event<MessageId>>, Violation> {
        let packet = match self.codec.decode(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => {
                let code = match e {
                    DecodeError::Frame(
                        FrameError::TooLarge { .. } | FrameError::TooLargePrefix { .. },
                    ) => CloseCode::FrameTooLarge,
                    _ => CloseCode::ProtocolError,
                };
                return Err(Violation::new(code, e.to_string()));
            }
        };
        Ok(Some(match packet {
            Packet::Handshake(h) => Event::Hello(Hello {
                credentials: h.token,
                heartbeat: (h.heartbeat_secs != 0)
                    .then(|| Duration::from_secs(u64::from(h.heartbeat_secs))),
                refused: (h.version != PROTOCOL_VERSION).then(|| {
                    Violation::new(
                        CloseCode::UnsupportedVersion,
                        format!(
                            "version {} not supported; this gate speaks {PROTOCOL_VERSION}",
                            h.version
                        ),
                    )
                }),
            }),
            Packet::Request(r) => {
                let reply = r.id();
                let route = r.route_value();
                Event::Request {
                    reply,
                    route,
                    body: r.into_body(),
                }
            }
            Packet::Notify(n) => {
                let route = n.route_value();
                Event::Notify {
                    route,
                    body: n.into_body(),
                }
            }
            Packet::Ping => Event::Ping,
            Packet::Pong => Event::Activity,
            Packet::Close(_) => Event::Goodbye,
            other @ (Packet::Welcome(_) | Packet::Response(_) | Packet::Push(_)) => {
                Event::Invalid(Violation::new(
                    CloseCode::ProtocolError,
                    format!("{} is sent by the gate, not by clients", other.kind_name()),
                ))
            }
        }))
    }

    fn negotiate(&self, hello: &Hello, config: &AgentConfig) -> Negotiated {
        // The client pings at most as often as it asked, and at least every `ping_interval`; three
        // heartbeats without a packet end the connection (never later than `idle_timeout`).
        let max = Duration::from_secs(config.ping_interval.as_secs().clamp(1, u16::MAX as u64));
        let heartbeat = hello.heartbeat.map_or(max, |h| h.min(max));
        Negotiated {
            heartbeat,
            idle_timeout: config.idle_timeout.min(heartbeat * IDLE_HEARTBEATS),
        }
    }

    fn encode_welcome(&mut self, w: &Welcome<'_>, out: &mut BytesMut) -> Result<(), TooLarge> {
        let welcome = Packet::Welcome(gatekit_codec::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_secs: w.heartbeat.as_secs().clamp(1, u16::MAX as u64) as u16,
            max_frame_length: w.max_frame_length as u32,
            session_id: Text::from(w.session_id.to_owned()),
        });
        self.encode(&welcome, out, "welcome")
    }

    fn encode_response(
        &mut self,
        reply: &MessageId,
        status: Status,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        let packet = Packet::Response(Response {
            id: *reply,
            status,
            body: body.clone(),
        });
        self.encode(&packet, out, "response")
    }

    fn encode_push(
        &mut self,
        topic: &Topic,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        let packet = Packet::Push(Push::new(topic.clone(), body.clone()));
        self.encode(&packet, out, "push")
    }

    fn encode_pong(&mut self, out: &mut BytesMut) {
        let _ = self.codec.encode(&Packet::Pong, out);
    }

    fn encode_close(&mut self, code: CloseCode, reason: &str, out: &mut BytesMut) -> bool {
        // The reason is cut to fit the frame limit, so the CLOSE itself is never refused.
        let max = MAX_REASON_LEN.min(self.codec.max_frame_length().saturating_sub(2));
        let packet = Packet::Close(Close {
            code,
            reason: Text::from(truncate_utf8(reason, max).to_owned()),
        });
        self.codec.encode(&packet, out).is_ok()
    }

    fn max_packet_len(&self) -> usize {
        self.codec.max_frame_length() + 4
    }

    fn max_close_len(&self) -> usize {
        MAX_REASON_LEN + 2 + 4
    }

    fn event_name(&self, event: &Event<MessageId>) -> &'static str {
        match event {
            Event::Hello(_) => "HANDSHAKE",
            Event::Request { .. } => "REQUEST",
            Event::Notify { .. } => "NOTIFY",
            Event::Ping => "PING",
            Event::Activity => "PONG",
            Event::Goodbye => "CLOSE",
            Event::Invalid(_) => "an invalid packet",
        }
    }
}
