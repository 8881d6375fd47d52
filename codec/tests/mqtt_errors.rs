//! Snapshots of what users of the MQTT codec see: the `Display` of every error variant, each
//! produced by really decoding, encoding or building bad input; the hex of a canonical packet of
//! every kind as gatekit encodes it; and the real clients' golden packets with what they decode to.
//!
//! Update with `INSTA_UPDATE=always cargo test -p gatekit-codec --test mqtt_errors` and review the
//! diff of `tests/snapshots/mqtt_errors__*.snap`.

use bytes::{Bytes, BytesMut};
use gatekit_codec::mqtt::parsers::put_remaining_length;
use gatekit_codec::mqtt::{
    ConnAck, Connect, ConnectRefusal, MqttCodec, MqttConfigError, MqttDecodeError, MqttEncodeError,
    MqttFrameError, MqttLimits, MqttPacketError, MqttString, MqttTextError, Packet, PacketId,
    Protocol, Publish, QoS, Role, SubAck, Subscribe, SubscribeReturnCode, Subscription,
    TopicFilter, TopicName, Unsubscribe, V5ConnAckReason, Will,
};
use std::fmt::{Debug, Display, Write as _};

/// The variant name: the `Debug` text up to the first `{`, `(` or space.
fn variant(e: &impl Debug) -> String {
    let debug = format!("{e:?}");
    debug.split(['{', '(', ' ']).next().unwrap().to_owned()
}

/// Lines `Enum::Variant: text`, checking that the errors are exactly the variants `expected`, in
/// order (so a changed input that now fails differently is caught, not snapshotted).
fn lines<E: Debug + Display>(enum_name: &str, errors: &[E], expected: &[&str]) -> String {
    let names: Vec<String> = errors.iter().map(variant).collect();
    assert_eq!(names, expected, "{enum_name}: {errors:#?}");
    let mut out = String::new();
    for (e, name) in errors.iter().zip(&names) {
        writeln!(out, "{enum_name}::{name}: {e}").unwrap();
    }
    out
}

/// A whole packet: `byte1`, the remaining length, `body`.
fn pkt(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(&[byte1]);
    put_remaining_length(&mut b, body.len());
    b.extend_from_slice(body);
    b.to_vec()
}

/// The first error a fresh codec of `role` (with `limits`) gives on `wire`: from `decode`, or if
/// it wants more bytes, from `decode_eof`.
fn decode_err_with(role: Role, limits: MqttLimits, wire: &[u8]) -> MqttDecodeError {
    let mut codec = MqttCodec::new(role, limits).unwrap();
    let mut src = BytesMut::from(wire);
    loop {
        match codec.decode(&mut src) {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => return e,
        }
    }
    codec
        .decode_eof(&mut src)
        .expect_err(&format!("no error from {wire:02x?}"))
}

fn frame(wire: &[u8]) -> MqttFrameError {
    match decode_err_with(Role::Server, MqttLimits::default(), wire) {
        MqttDecodeError::Frame(e) => e,
        other => panic!("expected a frame error from {wire:02x?}, got {other:?}"),
    }
}

fn packet_as(role: Role, wire: &[u8]) -> MqttPacketError {
    match decode_err_with(role, MqttLimits::default(), wire) {
        MqttDecodeError::Packet(e) => e,
        other => panic!("expected a packet error from {wire:02x?}, got {other:?}"),
    }
}

fn server(wire: &[u8]) -> MqttPacketError {
    packet_as(Role::Server, wire)
}

fn client(wire: &[u8]) -> MqttPacketError {
    packet_as(Role::Client, wire)
}

/// A 3.1.1 CONNECT variable header with these flags, then `payload`.
fn connect_body(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = b"\x00\x04MQTT\x04".to_vec();
    b.push(flags);
    b.extend_from_slice(b"\x00\x3c");
    b.extend_from_slice(payload);
    b
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn frame_errors() -> Vec<MqttFrameError> {
    vec![
        frame(b"\x30\xff\xff\xff"),
        frame(b"\x30\x80\x80\x04"),
        match decode_err_with(
            Role::Server,
            MqttLimits::default().with_max_packet_size((1 << 28) - 1),
            b"\xc0\x80\x80\x80\x80\x01",
        ) {
            MqttDecodeError::Frame(e) => e,
            other => panic!("{other:?}"),
        },
        frame(b"\x30\x81\x00"),
        frame(b"\x30\x05\x00\x01t"),
    ]
}

fn packet_errors() -> Vec<MqttPacketError> {
    let long_id = [b"\x01\x01".as_slice(), &[b'i'; 257]].concat();
    let mut many = b"\x00\x01".to_vec();
    for _ in 0..33 {
        many.extend_from_slice(b"\x00\x01a\x00");
    }
    vec![
        server(b"\x00\x00"),
        client(b"\xf0\x00"),
        server(b"\x50\x02\x00\x01"),
        server(b"\x20\x02\x00\x00"),
        server(&pkt(0x80, b"\x00\x01\x00\x01a\x00")),
        server(b"\x38\x03\x00\x01t"),
        server(b"\x36\x03\x00\x01t"),
        server(b"\x34\x07\x00\x03a/b\x00\x07"),
        server(b"\x30\x03\x00\x05a"),
        server(b"\xc0\x01\x00"),
        server(&pkt(0x10, b"\x00\x04HTTP\x04\x02\x00\x3c\x00\x01c")),
        server(&pkt(0x10, b"\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c")),
        server(&pkt(0x10, b"\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01c")),
        server(&pkt(0x10, &connect_body(0x42, b"\x00\x01c"))),
        server(&pkt(0x10, &connect_body(0x00, b"\x00\x00"))),
        server(&pkt(0x10, b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00")),
        server(&pkt(0x10, &connect_body(0x02, &long_id))),
        server(&pkt(0x82, &many)),
        server(&pkt(0xa2, b"\x00\x01")),
        server(&pkt(0x30, b"\x00\x00")),
        server(&pkt(0x30, b"\x00\x02a\xff")),
        server(&pkt(0x30, b"\x00\x02a\x00")),
        server(&pkt(0x30, b"\x00\x03a/+")),
        server(&pkt(0x82, b"\x00\x01\x00\x04a/b#\x00")),
        server(b"\x40\x02\x00\x00"),
        client(b"\x20\x02\x00\x07"),
        server(&pkt(0x82, b"\x00\x01\x00\x01a\x40")),
        client(b"\x20\x02\x01\x04"),
        client(b"\x20\x04\x00\x84\x01\x00"),
    ]
}

fn encode_err(role: Role, limits: MqttLimits, p: impl Into<Packet>) -> MqttEncodeError {
    let codec = MqttCodec::new(role, limits).unwrap();
    let mut out = BytesMut::new();
    let e = codec.encode(&p.into(), &mut out).unwrap_err();
    assert!(out.is_empty(), "wrote on refusal");
    e
}

fn encode_errors() -> Vec<MqttEncodeError> {
    let d = MqttLimits::default();
    let mut c = Connect::new(MqttString::from_static("c"), 60);
    c.password = Some(Bytes::from_static(b"pw"));
    let mut empty = Connect::new(MqttString::default(), 60);
    empty.clean_session = false;
    let mut empty31 = Connect::new(MqttString::default(), 60);
    empty31.protocol = Protocol::V31;
    vec![
        encode_err(
            Role::Server,
            d.with_max_packet_size(10),
            Publish::qos0(TopicName::from_static("t"), vec![0; 10]),
        ),
        encode_err(
            Role::Server,
            d.with_max_topic_len(3),
            Publish::qos0(TopicName::from_static("room"), Bytes::new()),
        ),
        encode_err(
            Role::Client,
            d,
            Subscribe {
                packet_id: id(1),
                subscriptions: vec![],
            },
        ),
        encode_err(
            Role::Server,
            d.with_max_filters(2),
            SubAck {
                packet_id: id(1),
                return_codes: vec![SubscribeReturnCode::Failure; 3],
            },
        ),
        encode_err(Role::Server, d, Packet::PingReq),
        encode_err(Role::Client, d, c),
        encode_err(Role::Client, d, empty),
        encode_err(Role::Client, d, empty31),
    ]
}

fn text_errors() -> Vec<MqttTextError> {
    vec![
        MqttString::new(vec![b'x'; 65_536]).unwrap_err(),
        MqttString::new(&b"ab\xff"[..]).unwrap_err(),
        MqttString::try_from("a\0").unwrap_err(),
        TopicName::try_from("").unwrap_err(),
        TopicName::try_from("a/#").unwrap_err(),
        TopicFilter::try_from("a/b#").unwrap_err(),
    ]
}

#[test]
fn error_messages() {
    let mut out = String::new();
    out += &lines(
        "MqttFrameError",
        &frame_errors(),
        &[
            "TooLarge",
            "TooLarge",
            "LengthTooLong",
            "LengthNotMinimal",
            "UnexpectedEof",
        ],
    );
    out += &lines(
        "MqttPacketError",
        &packet_errors(),
        &[
            "ReservedPacketType",
            "ReservedPacketType",
            "UnsupportedPacketType",
            "UnexpectedPacket",
            "InvalidFlags",
            "DupWithQoS0",
            "InvalidQoS",
            "QoS2Publish",
            "Truncated",
            "TrailingBytes",
            "UnknownProtocol",
            "UnsupportedProtocolLevel",
            "UnsupportedProtocolLevel",
            "InvalidConnectFlags",
            "EmptyClientId",
            "EmptyClientId",
            "TooLong",
            "TooManyEntries",
            "NoEntries",
            "EmptyTopic",
            "InvalidUtf8",
            "NulCharacter",
            "WildcardInTopic",
            "InvalidTopicFilter",
            "ZeroPacketId",
            "InvalidCode",
            "ReservedBits",
            "SessionPresentOnRefusal",
            "UnsupportedProperties",
        ],
    );
    out += &lines(
        "MqttEncodeError",
        &encode_errors(),
        &[
            "PacketTooLarge",
            "TooLong",
            "NoEntries",
            "TooManyEntries",
            "WrongDirection",
            "PasswordWithoutUsername",
            "EmptyClientId",
            "EmptyClientId",
        ],
    );
    let config = vec![
        MqttCodec::new(Role::Server, MqttLimits::default().with_max_packet_size(0)).unwrap_err(),
    ];
    out += &lines::<MqttConfigError>("MqttConfigError", &config, &["OutOfRange"]);
    out += &lines(
        "MqttTextError",
        &text_errors(),
        &["TooLong", "Utf8", "Nul", "Empty", "Wildcard", "BadFilter"],
    );
    insta::assert_snapshot!(out);
}

#[test]
fn refusal_connacks() {
    // What the gate answers before closing, for each CONNECT refusal that deserves a CONNACK.
    let mut out = String::new();
    let codec = MqttCodec::server();
    for e in packet_errors() {
        if let Some(answer) = e.connack_refusal() {
            let mut wire = BytesMut::new();
            codec.encode(&answer, &mut wire).unwrap();
            writeln!(out, "{e}\n  -> {answer:?} = {}", hex(&wire)).unwrap();
        }
    }
    insta::assert_snapshot!(out);
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A canonical packet of every kind, as gatekit encodes it.
fn canonical() -> Vec<(&'static str, Packet)> {
    let mut full = Connect::new(MqttString::from_static("gk-1"), 30);
    full.will = Some(Will {
        topic: TopicName::from_static("echo/HD_will/1"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    full.username = Some(MqttString::from_static("user"));
    full.password = Some(Bytes::from_static(b"secret"));
    let mut v31 = Connect::new(MqttString::from_static("gk-31"), 60);
    v31.protocol = Protocol::V31;
    let mut dup = Publish::qos1(id(7), TopicName::from_static("a/b"), &b"x"[..]);
    dup.delivery = gatekit_codec::mqtt::Delivery::AtLeastOnce {
        packet_id: id(7),
        dup: true,
    };
    dup.retain = true;
    vec![
        (
            "connect_minimal",
            Connect::new(MqttString::default(), 0).into(),
        ),
        ("connect_full", full.into()),
        ("connect_v31", v31.into()),
        (
            "connack_accepted",
            ConnAck::Accepted {
                session_present: false,
            }
            .into(),
        ),
        (
            "connack_session_present",
            ConnAck::Accepted {
                session_present: true,
            }
            .into(),
        ),
        (
            "connack_refused_protocol",
            ConnAck::Refused(ConnectRefusal::UnacceptableProtocolVersion).into(),
        ),
        (
            "connack_v5_unsupported",
            Packet::ConnAckV5(V5ConnAckReason::UnsupportedProtocolVersion),
        ),
        (
            "publish_qos0",
            Publish::qos0(TopicName::from_static("echo/HD_say/1"), &b"{}"[..]).into(),
        ),
        (
            "publish_qos1",
            Publish::qos1(id(1), TopicName::from_static("echo/HD_say/1"), &b"{}"[..]).into(),
        ),
        ("publish_dup_retain", dup.into()),
        (
            "publish_200",
            Publish::qos0(TopicName::from_static("t"), vec![b'x'; 200]).into(),
        ),
        ("puback", Packet::PubAck(id(258))),
        (
            "subscribe",
            Subscribe {
                packet_id: id(2),
                subscriptions: vec![
                    Subscription {
                        filter: TopicFilter::from_static("room/+/chat"),
                        qos: QoS::AtLeastOnce,
                    },
                    Subscription {
                        filter: TopicFilter::from_static("sys/#"),
                        qos: QoS::ExactlyOnce,
                    },
                ],
            }
            .into(),
        ),
        (
            "suback",
            SubAck {
                packet_id: id(2),
                return_codes: vec![
                    SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                    SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                    SubscribeReturnCode::Failure,
                ],
            }
            .into(),
        ),
        (
            "unsubscribe",
            Unsubscribe {
                packet_id: id(3),
                filters: vec![TopicFilter::from_static("room/+/chat")],
            }
            .into(),
        ),
        ("unsuback", Packet::UnsubAck(id(3))),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        ("disconnect", Packet::Disconnect),
    ]
}

#[test]
fn golden_packet_hex() {
    let mut out = String::new();
    for (name, p) in canonical() {
        let from = if p.packet_type().sent_by_client() {
            Role::Client
        } else {
            Role::Server
        };
        let mut wire = BytesMut::new();
        MqttCodec::new(from, MqttLimits::default())
            .unwrap()
            .encode(&p, &mut wire)
            .unwrap();
        let back = MqttCodec::new(from.peer(), MqttLimits::default())
            .unwrap()
            .decode(&mut wire.clone())
            .unwrap();
        assert_eq!(back.as_ref(), Some(&p), "{name}");
        writeln!(out, "{name}: {}", hex(&wire)).unwrap();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn real_clients_golden_packets() {
    // The files real clients sent (corpus/mqtt/golden), with what gatekit decodes them to.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/mqtt/golden");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    names.sort();
    let mut out = String::new();
    for path in names {
        let wire = std::fs::read(&path).unwrap();
        let name = path.file_stem().unwrap().to_str().unwrap();
        let role = if name.contains("-s-") {
            Role::Client
        } else {
            Role::Server
        };
        let mut codec = MqttCodec::new(role, MqttLimits::default()).unwrap();
        let decoded = match codec.decode_eof(&mut BytesMut::from(&wire[..])) {
            Ok(Some(p)) => format!("{p:?}"),
            Ok(None) => "nothing".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        writeln!(out, "{name}: {}\n  {decoded}", hex(&wire)).unwrap();
    }
    insta::assert_snapshot!(out);
}
