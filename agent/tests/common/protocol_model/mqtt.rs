//! mqant's MQTT dialect (docs/MQTT.md, "Mapping to the gate") as a [`WireModel`].

use super::{route, secs, Answer, CPkt, In, Out, Pkt, WireModel, PUSH_TOPIC};
use bytes::{Bytes, BytesMut};
use gatekit_agent::{AgentConfig, Mqtt};
use gatekit_codec::mqtt::{self as mq, MqttCodec, MqttLimits, Role};
use gatekit_codec::{CloseCode, Status};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

const MQTT_ROUTES: [&str; 3] = ["chat/HD_send", "room/HD_join", "a/HD_b"];

/// mosquitto_pub -V mqttv5's CONNECT (level 5, a Receive Maximum property).
const MQTT5_CONNECT: &[u8] = &[
    0x10, 0x13, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, 0x03, 0x21, 0x00, 0x14,
    0x00, 0x02, b'c', b'5', 0x00,
];

/// mqant's MQTT dialect (docs/MQTT.md, "Mapping to the gate").
pub struct MqttWire {
    client: MqttCodec,
    /// The gate's end: decodes the client's bytes as the gate must, encodes what it must write.
    gate: MqttCodec,
    out: MqttCodec,
    /// A CONNECT was read.
    open: bool,
    /// The CONNACK answering a refused CONNECT.
    refusal: Option<mq::Packet>,
    /// The topic each request came on, where its answer goes.
    topics: HashMap<u32, mq::TopicName>,
}

/// mqant's answer envelope `{"Trace":"","Error":E,"Result":R}` (docs/MQTT.md).
fn envelope(status: Status, body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body).into_owned();
    let (error, result) = match status {
        Status::Ok => (
            String::new(),
            serde_json::from_slice(body).unwrap_or(Value::String(text)),
        ),
        s if body.is_empty() => (s.name().to_owned(), Value::Null),
        s => (format!("{}: {text}", s.name()), Value::Null),
    };
    json!({ "Trace": "", "Error": error, "Result": result })
}

impl MqttWire {
    fn pkt(&self, out: Out, p: &mq::Packet) -> Option<Pkt> {
        let mut b = BytesMut::new();
        self.gate.encode(p, &mut b).ok().map(|_| (out, b.len()))
    }

    fn ack(&self, p: mq::Packet) -> Option<Pkt> {
        self.pkt(Out::Ack(format!("{p:?}")), &p)
    }

    /// A PUBLISH from the client: `module/HD_func/msgid` is a request, `module/HD_func` a notify.
    fn publish(&mut self, p: mq::Publish) -> (In, Option<Pkt>) {
        let topic = p.topic.as_str().to_owned();
        let mut parts = topic.splitn(3, '/');
        let (module, func, msgid) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        let route = func
            .filter(|f| f.starts_with("HD_"))
            .and_then(|f| route(module, f));
        let (Some(route), false) = (route, msgid == Some("")) else {
            return (In::Bad(CloseCode::ProtocolError), None);
        };
        let reply = msgid.map(|id| {
            let id: u32 = id.parse().expect("the test's request ids");
            self.topics.insert(id, p.topic.clone());
            id
        });
        let puback = p
            .packet_id()
            .and_then(|id| self.ack(mq::Packet::PubAck(id)));
        let body = p.payload;
        (In::Call { reply, route, body }, puback)
    }
}

impl WireModel for MqttWire {
    type P = Mqtt;
    const NAME: &'static str = "mqtt";
    /// Down to frames too small for mqant's envelope of `internal error: response too large` on
    /// the longest request topic (some 90 bytes: the connection then closes `internal`).
    const FRAMES: RangeInclusive<usize> = 64..=512;

    fn new(cfg: &AgentConfig) -> Self {
        let limits = MqttLimits::default().with_max_packet_size(cfg.max_frame_length);
        MqttWire {
            client: MqttCodec::client(),
            gate: MqttCodec::new(Role::Server, limits).unwrap(),
            out: MqttCodec::new(Role::Client, limits).unwrap(),
            open: false,
            refusal: None,
            topics: HashMap::new(),
        }
    }

    fn protocol(cfg: &AgentConfig) -> Mqtt {
        Mqtt::new(cfg)
    }

    fn encode(&mut self, pkt: &CPkt, id: u32, out: &mut BytesMut) {
        use mq::Packet as M;
        let pid = |n: u32| mq::PacketId::new((n % 65_535 + 1) as u16).unwrap();
        let topic = |s: String| mq::TopicName::new(Bytes::from(s)).unwrap();
        let filter = || mq::TopicFilter::from_static("room/#");
        let body = |b: &[u8]| Bytes::copy_from_slice(b);
        let packet = match pkt {
            CPkt::Hello { heartbeat } => {
                let mut c = mq::Connect::new(mq::MqttString::from_static("c1"), *heartbeat);
                c.username = Some(mq::MqttString::from_static("user"));
                c.password = Some(Bytes::from_static(b"token"));
                M::Connect(Box::new(c))
            }
            CPkt::BadHello => return out.extend_from_slice(MQTT5_CONNECT),
            CPkt::Ack => return,
            CPkt::Request {
                route,
                body: b,
                qos1,
            } => {
                let t = topic(format!("{}/{id}", MQTT_ROUTES[*route]));
                M::Publish(match qos1 {
                    true => mq::Publish::qos1(pid(id), t, body(b)),
                    false => mq::Publish::qos0(t, body(b)),
                })
            }
            CPkt::Notify { route, body: b } => M::Publish(mq::Publish::qos0(
                topic(MQTT_ROUTES[*route].into()),
                body(b),
            )),
            CPkt::Ping => M::PingReq,
            CPkt::Extra(n) => match n % 5 {
                q @ 0..=2 => M::Subscribe(mq::Subscribe {
                    packet_id: pid(u32::from(*n)),
                    subscriptions: vec![mq::Subscription {
                        filter: filter(),
                        qos: mq::QoS::from_u8(q).unwrap(),
                    }],
                }),
                3 => M::Unsubscribe(mq::Unsubscribe {
                    packet_id: pid(u32::from(*n)),
                    filters: vec![filter()],
                }),
                _ => M::PubAck(pid(u32::from(*n))),
            },
            CPkt::Goodbye => M::Disconnect,
            CPkt::Garbage(g) => {
                // Packet type 15 (reserved).
                out.extend_from_slice(&[0xf0, 0x00]);
                return out.extend_from_slice(g);
            }
            CPkt::Oversize => return out.extend_from_slice(&[0x30, 0xff, 0xff, 0xff, 0x7f]),
            CPkt::BadRoute => M::Publish(mq::Publish::qos0(topic("noslash".into()), "{}")),
        };
        self.client.encode(&packet, out).unwrap();
    }

    fn decode_in(&mut self, buf: &mut BytesMut) -> Option<(In, Option<Pkt>)> {
        use mq::Packet as M;
        let packet = match self.gate.decode(buf) {
            Ok(p) => p?,
            Err(e) => {
                if let (false, Some(connack)) = (self.open, e.connack_refusal()) {
                    self.refusal = Some(connack);
                    let refused = Some(CloseCode::UnsupportedVersion);
                    return Some((
                        In::Hello {
                            heartbeat: None,
                            refused,
                        },
                        None,
                    ));
                }
                let code = match e {
                    mq::MqttDecodeError::Frame(mq::MqttFrameError::TooLarge { .. }) => {
                        CloseCode::FrameTooLarge
                    }
                    _ => CloseCode::ProtocolError,
                };
                return Some((In::Bad(code), None));
            }
        };
        Some(match (self.open, packet) {
            (false, M::Connect(c)) => {
                self.open = true;
                let hello = In::Hello {
                    heartbeat: secs(c.keep_alive),
                    refused: None,
                };
                (hello, None)
            }
            (false, _) => (In::Invalid, None),
            (true, M::Connect(_)) => (
                In::Hello {
                    heartbeat: None,
                    refused: None,
                },
                None,
            ),
            (true, M::Publish(p)) => self.publish(p),
            (true, M::Subscribe(s)) => {
                // Always answered, granting QoS 0 or 1.
                let return_codes = s
                    .subscriptions
                    .iter()
                    .map(|sub| {
                        mq::SubscribeReturnCode::Granted(match sub.qos {
                            mq::QoS::AtMostOnce => mq::QoS::AtMostOnce,
                            _ => mq::QoS::AtLeastOnce,
                        })
                    })
                    .collect();
                let packet_id = s.packet_id;
                let suback = mq::SubAck {
                    packet_id,
                    return_codes,
                };
                (In::Activity, self.ack(M::SubAck(suback)))
            }
            (true, M::Unsubscribe(u)) => (In::Activity, self.ack(M::UnsubAck(u.packet_id))),
            (true, M::PubAck(_)) => (In::Activity, None),
            (true, M::PingReq) => (In::Ping, None),
            (true, M::Disconnect) => (In::Goodbye, None),
            (true, _) => (In::Invalid, None),
        })
    }

    fn welcome(&self, asked: Option<Duration>, cfg: &AgentConfig) -> (Pkt, Duration) {
        // Keep-alive k closes after 1.5 × k of silence; 0 leaves the gate's idle timeout.
        let idle = asked.map_or(cfg.idle_timeout, |k| k * 3 / 2);
        let connack = mq::Packet::ConnAck(mq::ConnAck::Accepted {
            session_present: false,
        });
        let out = Out::Welcome { heartbeat: None };
        (self.pkt(out, &connack).unwrap(), idle)
    }

    fn response(&self, id: u32, status: Status, body: &Bytes) -> Option<Pkt> {
        let answer = envelope(status, body);
        let payload = Bytes::from(answer.to_string());
        let topic = self.topics[&id].clone();
        let p = mq::Packet::Publish(mq::Publish::qos0(topic, payload));
        let answer = Answer::Json(answer);
        self.pkt(Out::Response { id, answer }, &p)
    }

    fn push(&self, body: &Bytes) -> Option<Pkt> {
        let topic = mq::TopicName::from_static(PUSH_TOPIC);
        let p = mq::Packet::Publish(mq::Publish::qos0(topic, body.clone()));
        let out = Out::Push {
            topic: PUSH_TOPIC.into(),
            body: body.clone(),
        };
        self.pkt(out, &p)
    }

    fn pong(&self) -> Pkt {
        self.pkt(Out::Pong, &mq::Packet::PingResp).unwrap()
    }

    fn close(&mut self, code: CloseCode, _text: Option<&str>) -> Option<Out> {
        // 3.1.1 has no server DISCONNECT: only refusals before CONNECT have a packet.
        let packet = match (code, self.open) {
            (CloseCode::UnsupportedVersion, _) => self.refusal.take(),
            (CloseCode::ServerFull | CloseCode::Shutdown, false) => Some(mq::Packet::ConnAck(
                mq::ConnAck::Refused(mq::ConnectRefusal::ServerUnavailable),
            )),
            _ => None,
        };
        packet.map(|p| Out::Close {
            kind: format!("{p:?}"),
            text: None,
        })
    }

    fn decode_out(&mut self, buf: &mut BytesMut) -> Option<Out> {
        use mq::Packet as M;
        let packet = self.out.decode(buf).expect("the gate's output decodes")?;
        Some(match packet {
            M::ConnAck(mq::ConnAck::Accepted {
                session_present: false,
            }) => Out::Welcome { heartbeat: None },
            p @ (M::ConnAck(_) | M::ConnAckV5(_)) => Out::Close {
                kind: format!("{p:?}"),
                text: None,
            },
            M::Publish(p) => {
                assert_eq!(p.qos(), mq::QoS::AtMostOnce, "the gate publishes at QoS 0");
                let topic = p.topic.as_str();
                let answer = topic
                    .rsplit_once('/')
                    .filter(|(head, _)| head.contains("/HD_"))
                    .and_then(|(_, id)| id.parse().ok());
                match answer {
                    Some(id) => Out::Response {
                        id,
                        answer: Answer::Json(
                            serde_json::from_slice(&p.payload).expect("mqant's envelope"),
                        ),
                    },
                    None => Out::Push {
                        topic: topic.into(),
                        body: p.payload,
                    },
                }
            }
            M::PingResp => Out::Pong,
            p @ (M::PubAck(_) | M::SubAck(_) | M::UnsubAck(_)) => Out::Ack(format!("{p:?}")),
            other => panic!("the gate sent a client's packet: {other:?}"),
        })
    }
}
