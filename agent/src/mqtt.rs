//! [`Mqtt`]: mqant's MQTT dialect (MQTT 3.1.1, docs/MQTT.md) as a [`Protocol`], on the
//! connection core.
//!
//! | MQTT | gatekit |
//! |---|---|
//! | CONNECT | the hello: user name and password are the credentials; keep-alive k closes the connection after 1.5 × k without a packet (none with k = 0: the gate's idle timeout) |
//! | CONNACK 0 | the welcome (3.1.1 carries no session id) |
//! | an MQTT 5 CONNECT | refused with the 5.0 CONNACK `20 03 00 84 00` (unsupported protocol version), which 5.0 clients understand |
//! | PUBLISH on `module/HD_func/msgid` | a request to `module/HD_func`; its answer is a PUBLISH (QoS 0) on the same topic carrying mqant's envelope `{"Trace":"","Error":"","Result":..}` |
//! | PUBLISH on `module/HD_func` | a notify |
//! | PUBLISH at QoS 1 | PUBACK at once (the message was read), then as above |
//! | SUBSCRIBE / UNSUBSCRIBE | SUBACK (granted QoS 0 or 1) / UNSUBACK, always (mqant answers only QoS 2 subscriptions, so real clients hang) |
//! | PINGREQ | PINGRESP |
//! | DISCONNECT | the client's goodbye: what it sent before is answered, then the gate closes |
//! | push | a PUBLISH (QoS 0) on its topic |
//! | kick, idle timeout, shutdown | the gate closes the socket (3.1.1 has no server DISCONNECT) |
//!
//! The function must start with `HD_`, as in mqant; `type@id` pins a server.

use crate::config::AgentConfig;
use crate::protocol::{Event, Hello, Negotiated, Outbox, Protocol, TooLarge, Violation, Welcome};
use bytes::{Bytes, BytesMut};
use gatekit_codec::mqtt::{
    ConnAck, ConnectRefusal, MqttCodec, MqttDecodeError, MqttFrameError, MqttLimits, Packet,
    Publish, QoS, Role, SubAck, SubscribeReturnCode, TopicName,
};
use gatekit_codec::{CloseCode, Route, Status, Topic};
use std::fmt;
use std::time::Duration;

/// The reply topic of a request: the topic it was published on.
pub type ReplyTopic = TopicName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Open,
}

/// mqant's MQTT dialect for one connection.
#[derive(Debug, Clone)]
pub struct Mqtt {
    codec: MqttCodec,
    stage: Stage,
    /// The CONNACK to answer a CONNECT the gate refuses with.
    refusal: Option<Packet>,
}

impl Mqtt {
    /// The protocol with `config`'s frame limit as the largest packet.
    pub fn new(config: &AgentConfig) -> Self {
        let limits = MqttLimits::default().with_max_packet_size(config.max_frame_length);
        let codec = MqttCodec::new(Role::Server, limits).unwrap_or_else(|_| MqttCodec::server());
        Mqtt {
            codec,
            stage: Stage::Connect,
            refusal: None,
        }
    }

    fn encode(
        &self,
        packet: &Packet,
        out: &mut BytesMut,
        what: &'static str,
    ) -> Result<(), TooLarge> {
        self.codec.encode(packet, out).map_err(|_| TooLarge {
            what,
            len: 0,
            max: self.codec.limits().max_packet_size(),
        })
    }

    fn invalid(reason: impl Into<String>) -> Event<ReplyTopic> {
        Event::Invalid(Violation::new(CloseCode::ProtocolError, reason))
    }

    /// A PUBLISH from the client: `module/HD_func/msgid` is a request, `module/HD_func` a notify.
    /// A topic that is neither is refused as input that cannot be decoded into a call (as a
    /// malformed route is in the native protocol).
    fn publish(&self, p: Publish, outbox: &mut Outbox<'_>) -> Result<Event<ReplyTopic>, Violation> {
        let packet_id = p.packet_id();
        let event = Mqtt::call(p.topic, p.payload);
        if let (Ok(_), Some(id)) = (&event, packet_id) {
            // QoS 1: the message was read; acknowledge it whatever its answer will be.
            let codec = &self.codec;
            outbox.packet(|out| {
                let _ = codec.encode(&Packet::PubAck(id), out);
            });
        }
        event
    }

    fn call(topic_name: TopicName, payload: Bytes) -> Result<Event<ReplyTopic>, Violation> {
        let bad = |reason: String| Violation::new(CloseCode::ProtocolError, reason);
        let topic = topic_name.as_str();
        let mut parts = topic.splitn(3, '/');
        let (module, func, msgid) = (parts.next(), parts.next(), parts.next());
        let (Some(module), Some(func)) = (module, func) else {
            return Err(bad(format!(
                "PUBLISH topic {topic:?} is not module/HD_func[/msgid] (mqant's request topics)"
            )));
        };
        if !func.starts_with("HD_") {
            return Err(bad(format!(
                "PUBLISH topic {topic:?}: the function {func:?} does not start with HD_ (mqant's handler prefix)"
            )));
        }
        let end = module.len() + 1 + func.len();
        let route = Route::new(topic_name.as_bytes().slice(..end))
            .map_err(|e| bad(format!("PUBLISH topic {topic:?}: {e}")))?;
        match msgid {
            Some("") => Err(bad(format!("PUBLISH topic {topic:?} has an empty msgid"))),
            Some(_) => Ok(Event::Request {
                reply: topic_name,
                route,
                body: payload,
            }),
            None => Ok(Event::Notify {
                route,
                body: payload,
            }),
        }
    }
}

/// mqant's answer envelope: `{"Trace":"","Error":"","Result":..}`, keys in mqant's order. The
/// result is the back end's answer as it is if it is JSON, else as a JSON string of its text
/// (invalid UTF-8 replaced); an error status puts its name (and the back end's text) in `Error`
/// and `null` in `Result`.
///
/// Written straight into its buffer: the body is only checked to be JSON (`Json`, below), never
/// built into a value, so an answer costs one pass over it (building a `serde_json::Value` and
/// printing it took a fifth of the gate's CPU in `gatekit rtt --protocol mqtt`).
pub fn envelope(status: Status, body: &Bytes) -> Bytes {
    fn string(out: &mut Vec<u8>, text: &str) {
        serde_json::to_writer(out, text).expect("a string always serializes");
    }
    let mut out = Vec::with_capacity(body.len() + 40);
    out.extend_from_slice(br#"{"Trace":"","Error":"#);
    if status == Status::Ok {
        out.extend_from_slice(b"\"\",\"Result\":");
        if serde_json::from_slice::<Json>(body).is_ok() {
            out.extend_from_slice(body.trim_ascii());
        } else {
            string(&mut out, &String::from_utf8_lossy(body));
        }
    } else {
        if body.is_empty() {
            string(&mut out, status.name());
        } else {
            let text = String::from_utf8_lossy(body);
            string(&mut out, &format!("{}: {text}", status.name()));
        }
        out.extend_from_slice(br#","Result":null"#);
    }
    out.push(b'}');
    Bytes::from(out)
}

/// A JSON text exactly as `serde_json::Value` accepts it (numbers in range, string escapes valid,
/// nesting within serde_json's limit), checked without building anything. serde's `IgnoredAny`
/// is not enough: it skips numbers and escapes unchecked, so `1e400` or a lone surrogate would
/// reach clients that cannot parse them.
struct Json;

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_str<E>(self, _: &str) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        while seq.next_element::<Json>()?.is_some() {}
        Ok(Json)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        while map.next_entry::<Json, Json>()?.is_some() {}
        Ok(Json)
    }
}

impl Protocol for Mqtt {
    type Reply = ReplyTopic;

    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn decode(
        &mut self,
        input: &mut BytesMut,
        outbox: &mut Outbox<'_>,
    ) -> Result<Option<Event<ReplyTopic>>, Violation> {
        let packet = match self.codec.decode(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => {
                if self.stage == Stage::Connect {
                    if let Some(connack) = e.connack_refusal() {
                        // A CONNECT the gate answers before closing (an MQTT 5 client, another
                        // protocol level, a refused client id).
                        self.refusal = Some(connack);
                        return Ok(Some(Event::Hello(Hello {
                            refused: Some(Violation::new(
                                CloseCode::UnsupportedVersion,
                                e.to_string(),
                            )),
                            ..Hello::default()
                        })));
                    }
                }
                let code = match e {
                    MqttDecodeError::Frame(MqttFrameError::TooLarge { .. }) => {
                        CloseCode::FrameTooLarge
                    }
                    _ => CloseCode::ProtocolError,
                };
                return Err(Violation::new(code, e.to_string()));
            }
        };
        Ok(Some(match (self.stage, packet) {
            (Stage::Connect, Packet::Connect(c)) => {
                // The stage moves on at the CONNACK (encode_welcome): until then (an
                // authenticator deciding) a refusal is a refusing CONNACK.
                let mut credentials = BytesMut::new();
                if let Some(u) = &c.username {
                    credentials.extend_from_slice(u.as_bytes());
                }
                if let Some(p) = &c.password {
                    // NUL cannot appear in an MQTT string: the username ends unambiguously.
                    credentials.extend_from_slice(b"\0");
                    credentials.extend_from_slice(p);
                }
                Event::Hello(Hello {
                    credentials: credentials.freeze(),
                    heartbeat: (c.keep_alive > 0)
                        .then(|| Duration::from_secs(u64::from(c.keep_alive))),
                    refused: None,
                })
            }
            (Stage::Connect, other) => {
                Mqtt::invalid(format!("expected CONNECT, got {}", other.packet_type()))
            }
            (Stage::Open, Packet::Connect(_)) => Event::Hello(Hello::default()),
            (Stage::Open, Packet::Publish(p)) => self.publish(p, outbox)?,
            (Stage::Open, Packet::Subscribe(s)) => {
                // Always answered (mqant answers only QoS 2 subscriptions); gatekit delivers at
                // QoS 0 or 1 at most.
                let return_codes = s
                    .subscriptions
                    .iter()
                    .map(|sub| {
                        SubscribeReturnCode::Granted(match sub.qos {
                            QoS::AtMostOnce => QoS::AtMostOnce,
                            _ => QoS::AtLeastOnce,
                        })
                    })
                    .collect();
                let codec = &self.codec;
                outbox.packet(|out| {
                    let _ = codec.encode(
                        &Packet::SubAck(SubAck {
                            packet_id: s.packet_id,
                            return_codes,
                        }),
                        out,
                    );
                });
                Event::Activity
            }
            (Stage::Open, Packet::Unsubscribe(u)) => {
                let codec = &self.codec;
                outbox.packet(|out| {
                    let _ = codec.encode(&Packet::UnsubAck(u.packet_id), out);
                });
                Event::Activity
            }
            (Stage::Open, Packet::PubAck(_)) => Event::Activity,
            (Stage::Open, Packet::PingReq) => Event::Ping,
            (Stage::Open, Packet::Disconnect) => Event::Goodbye,
            (Stage::Open, other) => Mqtt::invalid(format!(
                "{} is sent by the server, not by clients",
                other.packet_type()
            )),
        }))
    }

    fn negotiate(&self, hello: &Hello, config: &AgentConfig) -> Negotiated {
        match hello.heartbeat {
            // MQTT: the server closes after one and a half keep-alive periods without a packet.
            Some(k) => Negotiated {
                heartbeat: k,
                idle_timeout: k * 3 / 2,
            },
            None => Negotiated {
                heartbeat: config.ping_interval,
                idle_timeout: config.idle_timeout,
            },
        }
    }

    fn encode_welcome(&mut self, _w: &Welcome<'_>, out: &mut BytesMut) -> Result<(), TooLarge> {
        self.stage = Stage::Open;
        let connack = Packet::ConnAck(ConnAck::Accepted {
            session_present: false,
        });
        self.encode(&connack, out, "CONNACK")
    }

    fn encode_response(
        &mut self,
        reply: &ReplyTopic,
        status: Status,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        let answer = Packet::Publish(Publish::qos0(reply.clone(), envelope(status, body)));
        self.encode(&answer, out, "answer PUBLISH")
    }

    fn encode_push(
        &mut self,
        topic: &Topic,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), TooLarge> {
        let topic = TopicName::new(topic.as_bytes().clone()).map_err(|_| TooLarge {
            what: "push topic",
            len: topic.as_str().len(),
            max: self.codec.limits().max_topic_len(),
        })?;
        self.encode(
            &Packet::Publish(Publish::qos0(topic, body.clone())),
            out,
            "push PUBLISH",
        )
    }

    fn encode_pong(&mut self, out: &mut BytesMut) {
        let _ = self.codec.encode(&Packet::PingResp, out);
    }

    fn encode_close(&mut self, code: CloseCode, _reason: &str, out: &mut BytesMut) -> bool {
        let packet = match (self.stage, code) {
            // A refused CONNECT gets the CONNACK its client understands.
            (_, CloseCode::UnsupportedVersion) => self.refusal.take(),
            (
                Stage::Connect,
                CloseCode::ServerFull | CloseCode::Shutdown | CloseCode::InternalError,
            ) => Some(Packet::ConnAck(ConnAck::Refused(
                ConnectRefusal::ServerUnavailable,
            ))),
            (Stage::Connect, CloseCode::Unauthorized) => Some(Packet::ConnAck(ConnAck::Refused(
                ConnectRefusal::NotAuthorized,
            ))),
            // 3.1.1 has no server DISCONNECT: the gate just closes the socket.
            _ => None,
        };
        match packet {
            Some(p) => self.codec.encode(&p, out).is_ok(),
            None => false,
        }
    }

    fn max_packet_len(&self) -> usize {
        self.codec.limits().max_packet_size() + 5
    }

    fn max_close_len(&self) -> usize {
        5
    }

    fn event_name(&self, event: &Event<ReplyTopic>) -> &'static str {
        match event {
            Event::Hello(_) => "CONNECT",
            Event::Request { .. } | Event::Notify { .. } => "PUBLISH",
            Event::Ping => "PINGREQ",
            Event::Activity => "a packet",
            Event::Goodbye => "DISCONNECT",
            Event::Invalid(_) => "an invalid packet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The envelope as it was first written: through a `serde_json::Value`. The direct writer
    /// must give the same JSON value (its bytes differ only in key order and in keeping the back
    /// end's JSON as it was written).
    fn reference(status: Status, body: &Bytes) -> serde_json::Value {
        let text = String::from_utf8_lossy(body);
        let (error, result) = if status == Status::Ok {
            let result = serde_json::from_slice::<serde_json::Value>(body)
                .unwrap_or_else(|_| serde_json::Value::String(text.into_owned()));
            (String::new(), result)
        } else if body.is_empty() {
            (status.name().to_owned(), serde_json::Value::Null)
        } else {
            (
                format!("{}: {text}", status.name()),
                serde_json::Value::Null,
            )
        };
        serde_json::json!({ "Trace": "", "Error": error, "Result": result })
    }

    #[test]
    fn envelope_bytes_in_mqants_key_order() {
        let e = |status, body: &'static [u8]| envelope(status, &Bytes::from_static(body));
        assert_eq!(
            e(Status::Ok, br#"{"hello": 1}"#),
            &br#"{"Trace":"","Error":"","Result":{"hello": 1}}"#[..]
        );
        assert_eq!(
            e(Status::Ok, b" 7 "),
            &br#"{"Trace":"","Error":"","Result":7}"#[..]
        );
        assert_eq!(
            e(Status::Ok, b"say \"hi\"\n"),
            &br#"{"Trace":"","Error":"","Result":"say \"hi\"\n"}"#[..]
        );
        // JSON by the grammar, but not to serde_json (nor to Go's encoding/json): sent as text.
        assert_eq!(
            e(Status::Ok, b"1e400"),
            &br#"{"Trace":"","Error":"","Result":"1e400"}"#[..]
        );
        assert_eq!(
            e(Status::Ok, br#"["\ud800"]"#),
            &br#"{"Trace":"","Error":"","Result":"[\"\\ud800\"]"}"#[..]
        );
        assert_eq!(
            e(Status::Ok, b""),
            &br#"{"Trace":"","Error":"","Result":""}"#[..]
        );
        assert_eq!(
            e(Status::Timeout, b""),
            &br#"{"Trace":"","Error":"timeout","Result":null}"#[..]
        );
        assert_eq!(
            e(Status::Failed, b"no \xff"),
            "{\"Trace\":\"\",\"Error\":\"failed: no \u{fffd}\",\"Result\":null}".as_bytes()
        );
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Ok),
            Just(Status::NotFound),
            Just(Status::Failed),
            Just(Status::Busy),
            Just(Status::Timeout),
            Just(Status::InternalError),
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "[ -~]{0,40}".prop_map(String::into_bytes),
            r#"[ \[\]{}",:0-9a-z\\\-.eE]{0,40}"#.prop_map(String::into_bytes),
            "-?[0-9]{1,3}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{1,4})?".prop_map(String::into_bytes),
            r#"\["(\\u[dD][89a-fA-F][0-9a-f]{2}|\\u00[0-9a-f]{2}|[a-z\\"]){0,4}"\]"#
                .prop_map(String::into_bytes),
            any::<serde_json_value::Json>().prop_map(|j| j.0.to_string().into_bytes()),
        ]
    }

    /// Random JSON values, for bodies that are JSON.
    mod serde_json_value {
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        pub struct Json(pub serde_json::Value);

        impl Arbitrary for Json {
            type Parameters = ();
            type Strategy = BoxedStrategy<Json>;
            fn arbitrary_with(_: ()) -> Self::Strategy {
                let leaf = prop_oneof![
                    Just(serde_json::Value::Null),
                    any::<bool>().prop_map(serde_json::Value::from),
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<f64>()
                        .prop_filter("finite", |f| f.is_finite())
                        .prop_map(serde_json::Value::from),
                    ".{0,8}".prop_map(serde_json::Value::from),
                ];
                leaf.prop_recursive(3, 24, 4, |inner| {
                    prop_oneof![
                        prop::collection::vec(inner.clone(), 0..4)
                            .prop_map(serde_json::Value::from),
                        prop::collection::btree_map(".{0,4}", inner, 0..4)
                            .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
                    ]
                })
                .prop_map(Json)
                .boxed()
            }
        }
    }

    proptest! {
        #[test]
        fn envelope_is_the_reference_value(status in status(), body in body()) {
            let body = Bytes::from(body);
            let written = envelope(status, &body);
            let parsed: serde_json::Value = serde_json::from_slice(&written)
                .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&written))))?;
            prop_assert_eq!(parsed, reference(status, &body));
            let head: &[u8] = br#"{"Trace":"","Error":"#;
            prop_assert!(written.starts_with(head), "key order");
        }
    }
}
