//! gatekit's native protocol (docs/PROTOCOL.md) as a [`WireModel`].

use super::{mid, secs, varint, Answer, CPkt, In, Out, Pkt, WireModel, PUSH_TOPIC, SID};
use bytes::{Bytes, BytesMut};
use gatekit_agent::{AgentConfig, Native};
use gatekit_codec::{
    Close, CloseCode, DecodeError, FrameError, Handshake, NativeCodec, Notify, Oversize, Packet,
    Push, Request, Response, Route, Status, Text, Topic, Welcome, PROTOCOL_VERSION,
};
use std::time::Duration;

const NATIVE_ROUTES: [&str; 3] = ["chat/send", "room/join", "a/b"];

/// gatekit's native protocol (docs/PROTOCOL.md).
pub struct NativeWire {
    client: NativeCodec,
    gate: NativeCodec,
    out: NativeCodec,
    max_frame: usize,
}

impl NativeWire {
    fn pkt(&self, out: Out, p: &Packet) -> Option<Pkt> {
        let mut b = BytesMut::new();
        self.gate.encode(p, &mut b).ok().map(|_| (out, b.len()))
    }
}

impl WireModel for NativeWire {
    type P = Native;
    const NAME: &'static str = "native";

    fn new(cfg: &AgentConfig) -> Self {
        let codec = || NativeCodec::new(cfg.max_frame_length, Oversize::Fail).unwrap();
        NativeWire {
            client: NativeCodec::new(1 << 20, Oversize::Fail).unwrap(),
            gate: codec(),
            out: codec(),
            max_frame: cfg.max_frame_length,
        }
    }

    fn protocol(cfg: &AgentConfig) -> Native {
        Native::new(cfg)
    }

    fn encode(&mut self, pkt: &CPkt, id: u32, out: &mut BytesMut) {
        let hello = |version, heartbeat_secs| {
            Packet::Handshake(Handshake {
                version,
                heartbeat_secs,
                token: Bytes::from_static(b"token"),
            })
        };
        let body = |b: &[u8]| Bytes::copy_from_slice(b);
        let packet = match pkt {
            CPkt::Hello { heartbeat } => hello(PROTOCOL_VERSION, *heartbeat),
            CPkt::BadHello => hello(PROTOCOL_VERSION + 1, 0),
            CPkt::Ack => return,
            CPkt::Request { route, body: b, .. } => Packet::Request(Request::new(
                mid(id),
                Route::from_static(NATIVE_ROUTES[*route]),
                body(b),
            )),
            CPkt::Notify { route, body: b } => Packet::Notify(Notify::new(
                Route::from_static(NATIVE_ROUTES[*route]),
                body(b),
            )),
            CPkt::Ping => Packet::Ping,
            CPkt::Extra(_) => Packet::Pong,
            CPkt::Goodbye => Packet::Close(Close {
                code: CloseCode::Normal,
                reason: Text::from("bye"),
            }),
            CPkt::Garbage(g) => {
                // A one-byte frame of an unknown kind.
                out.extend_from_slice(&[0x01, 0xee]);
                return out.extend_from_slice(g);
            }
            CPkt::Oversize => {
                varint(self.max_frame + 1, out);
                return out.extend_from_slice(&[0x03, 0, 0]);
            }
            CPkt::BadRoute => {
                // A REQUEST (id 1) whose route has no '/'.
                return out.extend_from_slice(b"\x0d\x03\x00\x00\x00\x01\x07noslash");
            }
        };
        self.client.encode(&packet, out).unwrap();
    }

    fn decode_in(&mut self, buf: &mut BytesMut) -> Option<(In, Option<Pkt>)> {
        let packet = match self.gate.decode(buf) {
            Ok(p) => p?,
            Err(DecodeError::Frame(
                FrameError::TooLarge { .. } | FrameError::TooLargePrefix { .. },
            )) => return Some((In::Bad(CloseCode::FrameTooLarge), None)),
            Err(_) => return Some((In::Bad(CloseCode::ProtocolError), None)),
        };
        let ev = match packet {
            Packet::Handshake(h) => In::Hello {
                heartbeat: secs(h.heartbeat_secs),
                refused: (h.version != PROTOCOL_VERSION).then_some(CloseCode::UnsupportedVersion),
            },
            Packet::Request(r) => In::Call {
                reply: Some(r.id().get()),
                route: r.route().to_owned(),
                body: r.body_bytes(),
            },
            Packet::Notify(n) => In::Call {
                reply: None,
                route: n.route().to_owned(),
                body: n.body_bytes(),
            },
            Packet::Ping => In::Ping,
            Packet::Pong => In::Activity,
            Packet::Close(_) => In::Goodbye,
            Packet::Welcome(_) | Packet::Response(_) | Packet::Push(_) => In::Invalid,
        };
        Some((ev, None))
    }

    fn welcome(&self, asked: Option<Duration>, cfg: &AgentConfig) -> (Pkt, Duration) {
        // At most the ping interval; three heartbeats of silence close (never after idle_timeout).
        let max = Duration::from_secs(cfg.ping_interval.as_secs().clamp(1, 65_535));
        let heartbeat = asked.map_or(max, |h| h.min(max));
        let heartbeat_secs = heartbeat.as_secs().clamp(1, 65_535) as u16;
        let p = Packet::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_secs,
            max_frame_length: self.max_frame as u32,
            session_id: Text::from(SID),
        });
        let out = Out::Welcome {
            heartbeat: Some(heartbeat_secs.into()),
        };
        let welcome = self.pkt(out, &p).expect("a welcome fits");
        (welcome, cfg.idle_timeout.min(heartbeat * 3))
    }

    fn response(&self, id: u32, status: Status, body: &Bytes) -> Option<Pkt> {
        let p = Packet::Response(Response {
            id: mid(id),
            status,
            body: body.clone(),
        });
        let answer = Answer::Status(status, body.clone());
        self.pkt(Out::Response { id, answer }, &p)
    }

    fn push(&self, body: &Bytes) -> Option<Pkt> {
        let p = Packet::Push(Push::new(Topic::from_static(PUSH_TOPIC), body.clone()));
        let out = Out::Push {
            topic: PUSH_TOPIC.into(),
            body: body.clone(),
        };
        self.pkt(out, &p)
    }

    fn pong(&self) -> Pkt {
        self.pkt(Out::Pong, &Packet::Pong).unwrap()
    }

    fn close(&mut self, code: CloseCode, text: Option<&str>) -> Option<Out> {
        Some(Out::Close {
            kind: code.name().into(),
            text: text.map(Into::into),
        })
    }

    fn decode_out(&mut self, buf: &mut BytesMut) -> Option<Out> {
        Some(
            match self.out.decode(buf).expect("the gate's output decodes")? {
                Packet::Welcome(w) => {
                    assert_eq!(
                        (w.session_id.as_str(), w.max_frame_length as usize),
                        (SID, self.max_frame)
                    );
                    Out::Welcome {
                        heartbeat: Some(w.heartbeat_secs.into()),
                    }
                }
                Packet::Response(r) => Out::Response {
                    id: r.id.get(),
                    answer: Answer::Status(r.status, r.body),
                },
                Packet::Push(p) => Out::Push {
                    topic: p.topic().into(),
                    body: p.body_bytes(),
                },
                Packet::Pong => Out::Pong,
                Packet::Close(c) => Out::Close {
                    kind: c.code.name().into(),
                    text: Some(c.reason.as_str().into()),
                },
                other => panic!("the gate sent a client's packet: {other:?}"),
            },
        )
    }
}
