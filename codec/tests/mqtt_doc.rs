//! docs/MQTT.md cannot drift from the code: every `<!-- example: NAME -->` hex block in it must be
//! exactly what the encoder writes for the packet built here under NAME (and decode back to it), or,
//! for the examples of refused input, decode to exactly the error given here.

mod common;

use bytes::{Bytes, BytesMut};
use gatekit_codec::mqtt::{
    ConnAck, Connect, ConnectRefusal, MqttCodec, MqttDecodeError, MqttFrameError, MqttLimits,
    MqttPacketError, MqttString, Packet, PacketId, PacketType, Protocol, Publish, QoS, Role,
    SubAck, Subscribe, SubscribeReturnCode, Subscription, TopicFilter, TopicName, Unsubscribe,
    V5ConnAckReason, Will,
};
use std::collections::BTreeMap;

enum Example {
    /// Encoded by this role, it is the block; decoded by the other end, the block is this packet.
    Packet(Role, Packet),
    /// Decoded by this role, the block gives this error (first error of `decode`, else of
    /// `decode_eof`).
    Refused(Role, MqttDecodeError),
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn expected() -> BTreeMap<&'static str, Example> {
    use Example::{Packet as P, Refused};
    let topic = || TopicName::from_static("echo/HD_say/1");
    let say_hi = Bytes::from_static(br#"{"say":"hi"}"#);
    let mut mosquitto = Connect::new(MqttString::from_static("gk-pub"), 30);
    mosquitto.will = Some(Will {
        topic: TopicName::from_static("echo/HD_will/1"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    mosquitto.username = Some(MqttString::from_static("gk-user"));
    mosquitto.password = Some(Bytes::from_static(b"gk-secret"));
    let mut v31 = Connect::new(MqttString::from_static("gk-paho31"), 60);
    v31.protocol = Protocol::V31;
    BTreeMap::from([
        (
            "too_large_from_prefix",
            Refused(
                Role::Server,
                MqttFrameError::TooLarge {
                    packet: PacketType::Publish,
                    len: 4_194_303,
                    exact: false,
                    max: 65_535,
                    length_bytes: 3,
                }
                .into(),
            ),
        ),
        ("connect_mosquitto", P(Role::Client, mosquitto.into())),
        (
            "connect_minimal",
            P(Role::Client, Connect::new(MqttString::default(), 0).into()),
        ),
        ("connect_v31", P(Role::Client, v31.into())),
        (
            "connect_mqtt5_refused",
            Refused(
                Role::Server,
                MqttPacketError::UnsupportedProtocolLevel {
                    name: "MQTT",
                    level: 5,
                    offset: 8,
                }
                .into(),
            ),
        ),
        (
            "connack_accepted",
            P(
                Role::Server,
                ConnAck::Accepted {
                    session_present: false,
                }
                .into(),
            ),
        ),
        (
            "connack_refused_version",
            P(
                Role::Server,
                ConnAck::Refused(ConnectRefusal::UnacceptableProtocolVersion).into(),
            ),
        ),
        (
            "connack_v5_unsupported",
            P(
                Role::Server,
                Packet::ConnAckV5(V5ConnAckReason::UnsupportedProtocolVersion),
            ),
        ),
        (
            "publish_qos0",
            P(Role::Client, Publish::qos0(topic(), say_hi.clone()).into()),
        ),
        (
            "publish_qos1",
            P(Role::Client, Publish::qos1(id(2), topic(), say_hi).into()),
        ),
        (
            "publish_qos2_refused",
            Refused(
                Role::Server,
                MqttPacketError::QoS2Publish {
                    packet_id: 7,
                    topic: "echo/HD_say/1".into(),
                }
                .into(),
            ),
        ),
        ("puback", P(Role::Server, Packet::PubAck(id(2)))),
        (
            "subscribe",
            P(
                Role::Client,
                Subscribe {
                    packet_id: id(3),
                    subscriptions: vec![
                        Subscription {
                            filter: TopicFilter::from_static("echo/+/1"),
                            qos: QoS::AtLeastOnce,
                        },
                        Subscription {
                            filter: TopicFilter::from_static("room/#"),
                            qos: QoS::AtMostOnce,
                        },
                    ],
                }
                .into(),
            ),
        ),
        (
            "suback",
            P(
                Role::Server,
                SubAck {
                    packet_id: id(3),
                    return_codes: vec![
                        SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                        SubscribeReturnCode::Granted(QoS::AtMostOnce),
                    ],
                }
                .into(),
            ),
        ),
        (
            "unsubscribe",
            P(
                Role::Client,
                Unsubscribe {
                    packet_id: id(4),
                    filters: vec![TopicFilter::from_static("room/#")],
                }
                .into(),
            ),
        ),
        ("unsuback", P(Role::Server, Packet::UnsubAck(id(4)))),
        ("pingreq", P(Role::Client, Packet::PingReq)),
        ("pingresp", P(Role::Server, Packet::PingResp)),
        ("disconnect", P(Role::Client, Packet::Disconnect)),
    ])
}

fn doc() -> String {
    common::doc("MQTT.md")
}

fn codec(role: Role) -> MqttCodec {
    MqttCodec::new(role, MqttLimits::default()).unwrap()
}

#[test]
fn mqtt_doc_examples_match_the_codec() {
    let found = common::examples(&doc());
    let mut want = expected();
    let mut types = std::collections::BTreeSet::new();
    for (name, bytes) in &found {
        let example = want
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("example {name} in MQTT.md has no entry in this test"));
        match example {
            Example::Packet(role, packet) => {
                types.insert(packet.packet_type());
                let mut encoded = BytesMut::new();
                codec(role).encode(&packet, &mut encoded).unwrap();
                assert_eq!(
                    &encoded[..],
                    &bytes[..],
                    "example {name}: doc hex differs from the encoder"
                );
                let mut wire = BytesMut::from(&bytes[..]);
                let decoded = codec(role.peer()).decode_eof(&mut wire).unwrap();
                assert_eq!(
                    decoded,
                    Some(packet),
                    "example {name}: doc hex decodes to something else"
                );
                assert!(wire.is_empty());
            }
            Example::Refused(role, error) => {
                let mut c = codec(role);
                let mut wire = BytesMut::from(&bytes[..]);
                let got = match c.decode(&mut wire) {
                    Err(e) => e,
                    Ok(r) => c
                        .decode_eof(&mut wire)
                        .expect_err(&format!("example {name}: decoded {r:?}")),
                };
                assert_eq!(got, error, "example {name}");
            }
        }
    }
    assert!(
        want.is_empty(),
        "entries with no example in MQTT.md: {:?}",
        want.keys()
    );
    // Every packet type gatekit reads and writes has an example.
    assert_eq!(types.len(), 11, "{types:?}");
}

#[test]
fn mqtt_doc_remaining_length_examples() {
    use gatekit_codec::mqtt::parsers::put_remaining_length;
    let doc = doc();
    for (value, hex) in [
        (0usize, "00"),
        (127, "7f"),
        (128, "80 01"),
        (16_383, "ff 7f"),
        (16_384, "80 80 01"),
        (65_535, "ff ff 03"),
        (2_097_152, "80 80 80 01"),
        (268_435_455, "ff ff ff 7f"),
    ] {
        let mut b = BytesMut::new();
        put_remaining_length(&mut b, value);
        common::assert_shows_length("MQTT.md", &doc, value as u64, hex, &b);
    }
}

#[test]
fn mqtt_doc_keeps_its_owner_sections() {
    let doc = doc();
    for heading in [
        "## Mapping to the gate",
        "## Performance",
        "## Differences from mqant",
        "## Limits",
        "## Errors",
    ] {
        assert!(doc.contains(heading), "MQTT.md lacks {heading}");
    }
}
