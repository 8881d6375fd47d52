//! The pomelo protocol (docs/POMELO.md, "Mapping to the gate") as a [`WireModel`].

use super::{mid, route, Answer, CPkt, In, Out, Pkt, WireModel, PUSH_TOPIC};
use bytes::{Bytes, BytesMut};
use gatekit_agent::{AgentConfig, Pomelo};
use gatekit_codec::pomelo::{self as po, Message, MessageKind, MessageRoute, Package, PomeloCodec};
use gatekit_codec::{CloseCode, Oversize, Status};
use serde_json::{json, Value};
use std::ops::RangeInclusive;
use std::time::Duration;

const POMELO_ROUTES: [&str; 3] = ["chat.handler.send", "room.roomHandler.join", "a.b"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake,
    AwaitAck,
    Open,
}

/// The pomelo protocol (docs/POMELO.md, "Mapping to the gate").
pub struct PomeloWire {
    client: PomeloCodec,
    gate: PomeloCodec,
    out: PomeloCodec,
    stage: Stage,
    /// The gate's body limit: its kick's reason is cut to fit it.
    max_body: usize,
}

impl PomeloWire {
    fn pkt(&self, out: Out, p: &Package) -> Option<Pkt> {
        let mut b = BytesMut::new();
        self.gate.encode(p, &mut b).ok().map(|_| (out, b.len()))
    }

    fn message(&self, out: Out, m: &Message) -> Option<Pkt> {
        let mut b = BytesMut::new();
        self.gate
            .encode_message(m, &mut b)
            .ok()
            .map(|_| (out, b.len()))
    }

    /// `server.handler.method` → `server/handler.method`.
    fn gate_route(r: &MessageRoute) -> Option<String> {
        let (module, func) = po::split_route(r.as_name()?).ok()?;
        route(module, func)
    }

    fn data(body: Bytes) -> In {
        let bad = In::Bad(CloseCode::ProtocolError);
        let Ok(m) = Message::decode(body) else {
            return bad;
        };
        let (reply, r) = match &m.kind {
            MessageKind::Request { id, route } => (Some(id.get()), route),
            MessageKind::Notify { route } => (None, route),
            MessageKind::Response { .. } | MessageKind::Push { .. } => return In::Invalid,
        };
        match PomeloWire::gate_route(r) {
            Some(route) => In::Call {
                reply,
                route,
                body: m.body,
            },
            None => bad,
        }
    }
}

impl WireModel for PomeloWire {
    type P = Pomelo;
    const NAME: &'static str = "pomelo";
    /// Down to frames that hold only a short kick (a kick's reason is cut to fit) and the
    /// `internal error` answer (about 80 bytes; below that the connection closes `internal`).
    const FRAMES: RangeInclusive<usize> = 64..=2048;

    fn new(cfg: &AgentConfig) -> Self {
        let codec = || PomeloCodec::new(cfg.max_frame_length, Oversize::Fail).unwrap();
        PomeloWire {
            client: PomeloCodec::default(),
            gate: codec(),
            out: codec(),
            stage: Stage::Handshake,
            max_body: cfg.max_frame_length,
        }
    }

    fn protocol(cfg: &AgentConfig) -> Pomelo {
        Pomelo::new(cfg)
    }

    fn encode(&mut self, pkt: &CPkt, id: u32, out: &mut BytesMut) {
        let c = &self.client;
        let r = |i: usize| MessageRoute::from_static(POMELO_ROUTES[i]);
        let body = |b: &[u8]| Bytes::copy_from_slice(b);
        let done = match pkt {
            CPkt::Hello { .. } => {
                let mut hs = po::ClientHandshake::new("js-tcp", "0.0.1");
                hs.user = Some(Bytes::from_static(br#"{"token":"token"}"#));
                c.encode(&hs.to_package(), out)
            }
            CPkt::BadHello => c.encode(&Package::Handshake(Bytes::from_static(b"{}")), out),
            CPkt::Ack => c.encode(&Package::HandshakeAck, out),
            CPkt::Request { route, body: b, .. } => {
                c.encode_message(&Message::request(mid(id), r(*route), body(b)), out)
            }
            CPkt::Notify { route, body: b } => {
                c.encode_message(&Message::notify(r(*route), body(b)), out)
            }
            CPkt::Ping => c.encode(&Package::Heartbeat, out),
            CPkt::Extra(_) | CPkt::Goodbye => return,
            CPkt::Garbage(g) => {
                // An unknown package type.
                out.extend_from_slice(&[0x09, 0, 0, 0]);
                return out.extend_from_slice(g);
            }
            CPkt::Oversize => return out.extend_from_slice(&[0x04, 0xff, 0xff, 0xff]),
            CPkt::BadRoute => {
                let m = Message::request(mid(1), MessageRoute::from_static("nodots"), "{}");
                c.encode_message(&m, out)
            }
        };
        done.unwrap();
    }

    fn decode_in(&mut self, buf: &mut BytesMut) -> Option<(In, Option<Pkt>)> {
        let package = match self.gate.decode(buf) {
            Ok(p) => p?,
            Err(e @ po::PackageError::TooLarge { .. }) if e.is_fatal() => {
                return Some((In::Bad(CloseCode::FrameTooLarge), None))
            }
            Err(e) if e.is_fatal() => return Some((In::Bad(CloseCode::ProtocolError), None)),
            // A heartbeat or ack with a body: read, and not allowed.
            Err(_) => return Some((In::Invalid, None)),
        };
        Some(match (self.stage, package) {
            (Stage::Handshake, Package::Handshake(body)) => {
                let refused = match po::ClientHandshake::parse(&body) {
                    Ok(_) => {
                        self.stage = Stage::AwaitAck;
                        None
                    }
                    Err(_) => Some(CloseCode::ProtocolError),
                };
                (
                    In::Hello {
                        heartbeat: None,
                        refused,
                    },
                    None,
                )
            }
            (Stage::AwaitAck, Package::HandshakeAck) => {
                // Answered at once with a heartbeat: the official client waits for one.
                self.stage = Stage::Open;
                (In::Activity, self.pkt(Out::Pong, &Package::Heartbeat))
            }
            (Stage::Open, Package::Heartbeat) => (In::Ping, None),
            (Stage::Open, Package::Data(body)) => (PomeloWire::data(body), None),
            (Stage::Open, Package::Handshake(_)) => (
                In::Hello {
                    heartbeat: None,
                    refused: None,
                },
                None,
            ),
            _ => (In::Invalid, None),
        })
    }

    fn welcome(&self, _asked: Option<Duration>, cfg: &AgentConfig) -> (Pkt, Duration) {
        // The gate's ping interval; two heartbeats of silence close (never after idle_timeout).
        let secs = cfg.ping_interval.as_secs().clamp(1, u64::from(u32::MAX));
        let p = po::HandshakeResponse::ok(Some(secs as u32)).to_package();
        let out = Out::Welcome {
            heartbeat: Some(secs),
        };
        let idle = cfg.idle_timeout.min(Duration::from_secs(secs) * 2);
        (self.pkt(out, &p).expect("a welcome fits"), idle)
    }

    fn response(&self, id: u32, status: Status, body: &Bytes) -> Option<Pkt> {
        let (bytes, answer) = if status == Status::Ok {
            (body.clone(), Answer::Raw(body.clone()))
        } else {
            let error = String::from_utf8_lossy(body);
            let v = json!({ "code": 500, "status": status.name(), "error": error });
            (Bytes::from(v.to_string()), Answer::Json(v))
        };
        self.message(
            Out::Response { id, answer },
            &Message::response(mid(id), bytes),
        )
    }

    fn push(&self, body: &Bytes) -> Option<Pkt> {
        let m = Message::push(MessageRoute::from_static(PUSH_TOPIC), body.clone());
        let out = Out::Push {
            topic: PUSH_TOPIC.into(),
            body: body.clone(),
        };
        self.message(out, &m)
    }

    fn pong(&self) -> Pkt {
        self.pkt(Out::Pong, &Package::Heartbeat).unwrap()
    }

    fn close(&mut self, code: CloseCode, text: Option<&str>) -> Option<Out> {
        // Before the handshake is answered, the refusal is the handshake response; after, a kick.
        Some(match self.stage {
            Stage::Handshake => Out::Close {
                kind: match code {
                    CloseCode::UnsupportedVersion => "handshake 501".into(),
                    _ => "handshake 500".into(),
                },
                text: None,
            },
            Stage::AwaitAck | Stage::Open => Out::Close {
                kind: "kick".into(),
                // At most 200 characters, shortened one at a time until the kick fits.
                text: text.map(|t| {
                    let mut t: String = t.chars().take(200).collect();
                    while !t.is_empty() && po::Kick::new(t.clone()).to_json().len() > self.max_body
                    {
                        t.pop();
                    }
                    t
                }),
            },
        })
    }

    fn decode_out(&mut self, buf: &mut BytesMut) -> Option<Out> {
        let package = self.out.decode(buf).expect("the gate's output decodes")?;
        Some(match package {
            Package::Handshake(body) => {
                let hs = po::ServerHandshake::parse(&body).expect("a handshake response");
                match hs.code {
                    200 => Out::Welcome {
                        heartbeat: hs.heartbeat_secs.map(u64::from),
                    },
                    code => Out::Close {
                        kind: format!("handshake {code}"),
                        text: None,
                    },
                }
            }
            Package::Heartbeat => Out::Pong,
            Package::Kick(body) => Out::Close {
                kind: "kick".into(),
                text: Some(po::Kick::parse(&body).expect("a kick").reason),
            },
            Package::Data(body) => {
                let m = Message::decode(body).expect("a message");
                match m.kind {
                    MessageKind::Response { id } => {
                        let v = serde_json::from_slice::<Value>(&m.body).ok();
                        let answer = match v {
                            Some(v) if v.get("code") == Some(&json!(500)) => Answer::Json(v),
                            _ => Answer::Raw(m.body),
                        };
                        Out::Response {
                            id: id.get(),
                            answer,
                        }
                    }
                    MessageKind::Push { route } => Out::Push {
                        topic: route.as_name().expect("a named route").into(),
                        body: m.body,
                    },
                    other => panic!("the gate sent a client's message: {other:?}"),
                }
            }
            Package::HandshakeAck => panic!("the gate sent a handshake ack"),
        })
    }
}
