//! Property tests for the MQTT codec: round trips, chunking, robustness against arbitrary and
//! damaged input, memory bounds, and the remaining length's early refusal.
//!
//! Reproduce a failure with `PROPTEST_RNG_SEED=<seed>`; raise the case count with
//! `PROPTEST_CASES=<n>`. The fuzz targets' checks (`fuzz/src/mqtt.rs`) are compiled in and driven
//! from here too, so both tools test the same properties.

use bytes::{BufMut, Bytes, BytesMut};
use gatekit_codec::mqtt::parsers::{put_remaining_length, remaining_length, Fault};
use gatekit_codec::mqtt::{
    ConnAck, Connect, ConnectRefusal, Delivery, MqttCodec, MqttDecodeError, MqttFrameError,
    MqttLimits, MqttString, Packet, PacketId, Protocol, Publish, QoS, Role, SubAck, Subscribe,
    SubscribeReturnCode, Subscription, TopicFilter, TopicName, Unsubscribe, V5ConnAckReason, Will,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The fuzz targets' checks, shared so that proptest drives the same code.
#[allow(dead_code)]
#[path = "../../fuzz/src/mqtt.rs"]
mod fuzz_mqtt;

use fuzz_mqtt::{check_canonical, mqtt_decode_all, mqtt_roundtrip, sender, MQTT_HEADER};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A character: mostly ASCII letters, often anything but NUL (non-ASCII, controls, `/`, ...).
fn text_char() -> BoxedStrategy<char> {
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => Just('/'),
        1 => prop::char::range('\u{80}', '\u{7ff}'),
        2 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
    ]
    .boxed()
}

fn string_of(c: BoxedStrategy<char>, max_bytes: usize) -> BoxedStrategy<String> {
    prop_oneof![vec(c.clone(), 0..=8), vec(c, 0..=max_bytes)]
        .prop_map(move |v| {
            let mut s: String = v.into_iter().collect();
            while s.len() > max_bytes {
                s.pop();
            }
            s
        })
        .boxed()
}

fn mqtt_string(max_bytes: usize) -> impl Strategy<Value = MqttString> {
    string_of(text_char(), max_bytes).prop_map(|s| MqttString::try_from(s).unwrap())
}

/// A topic name: 1 to 255 bytes, no wildcards.
fn topic_name() -> impl Strategy<Value = TopicName> {
    string_of(
        text_char()
            .prop_filter("no wildcards", |c| *c != '+' && *c != '#')
            .boxed(),
        255,
    )
    .prop_map(|mut s| {
        if s.is_empty() {
            s.push('t');
        }
        TopicName::try_from(s).unwrap()
    })
}

/// A topic filter: levels of text, `+`, and maybe a final `#`; at most 255 bytes.
fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![
        3 => string_of(
            text_char()
                .prop_filter("plain level", |c| !matches!(c, '+' | '#' | '/'))
                .boxed(),
            20
        ),
        1 => Just("+".to_owned()),
    ];
    (vec(level, 1..=5), any::<bool>()).prop_map(|(levels, hash)| {
        let mut s = levels.join("/");
        if hash {
            s.push_str(if s.is_empty() { "#" } else { "/#" });
        }
        while s.len() > 255 {
            s.pop();
        }
        if s.is_empty() {
            s.push('#');
        }
        TopicFilter::try_from(s).unwrap()
    })
}

fn payload(max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..32),
        1 => vec(any::<u8>(), 0..=max),
    ]
    .prop_map(Bytes::from)
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1..=u16::MAX].prop_map(|v| PacketId::new(v).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn connect() -> impl Strategy<Value = Packet> {
    let will = (topic_name(), payload(300), qos(), any::<bool>()).prop_map(
        |(topic, payload, qos, retain)| Will {
            topic,
            payload,
            qos,
            retain,
        },
    );
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        mqtt_string(256),
        prop::option::of(will),
        prop::option::of(mqtt_string(256)),
        prop::option::of(payload(4096)),
    )
        .prop_map(|(v31, clean, keep_alive, id, will, username, password)| {
            let protocol = if v31 { Protocol::V31 } else { Protocol::V311 };
            let client_id = if id.is_empty() && v31 {
                MqttString::from_static("c")
            } else {
                id
            };
            Packet::from(Connect {
                protocol,
                clean_session: clean || client_id.is_empty(),
                keep_alive,
                client_id,
                will,
                password: password.filter(|_| username.is_some()),
                username,
            })
        })
}

fn connack() -> impl Strategy<Value = Packet> {
    let refusal = prop::sample::select(vec![
        ConnectRefusal::UnacceptableProtocolVersion,
        ConnectRefusal::IdentifierRejected,
        ConnectRefusal::ServerUnavailable,
        ConnectRefusal::BadUserNameOrPassword,
        ConnectRefusal::NotAuthorized,
    ]);
    let v5 = prop::sample::select(vec![
        V5ConnAckReason::UnspecifiedError,
        V5ConnAckReason::UnsupportedProtocolVersion,
        V5ConnAckReason::PacketTooLarge,
        V5ConnAckReason::ServerBusy,
    ]);
    prop_oneof![
        any::<bool>()
            .prop_map(|session_present| Packet::ConnAck(ConnAck::Accepted { session_present })),
        refusal.prop_map(|r| Packet::ConnAck(ConnAck::Refused(r))),
        v5.prop_map(Packet::ConnAckV5),
    ]
}

fn publish() -> impl Strategy<Value = Packet> {
    let delivery = prop_oneof![
        Just(Delivery::AtMostOnce),
        (packet_id(), any::<bool>())
            .prop_map(|(packet_id, dup)| Delivery::AtLeastOnce { packet_id, dup }),
    ];
    (delivery, any::<bool>(), topic_name(), payload(3000)).prop_map(
        |(delivery, retain, topic, payload)| {
            Packet::Publish(Publish {
                delivery,
                retain,
                topic,
                payload,
            })
        },
    )
}

fn subscribe() -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(
            (topic_filter(), qos()).prop_map(|(filter, qos)| Subscription { filter, qos }),
            1..=6,
        ),
    )
        .prop_map(|(packet_id, subscriptions)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                subscriptions,
            })
        })
}

fn suback() -> impl Strategy<Value = Packet> {
    let code = prop_oneof![
        qos().prop_map(SubscribeReturnCode::Granted),
        Just(SubscribeReturnCode::Failure)
    ];
    (packet_id(), vec(code, 1..=32)).prop_map(|(packet_id, return_codes)| {
        Packet::SubAck(SubAck {
            packet_id,
            return_codes,
        })
    })
}

fn unsubscribe() -> impl Strategy<Value = Packet> {
    (packet_id(), vec(topic_filter(), 1..=6))
        .prop_map(|(packet_id, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, filters }))
}

/// Packets a client sends (a server decodes them).
fn client_packet() -> BoxedStrategy<Packet> {
    prop_oneof![
        1 => connect(),
        4 => publish(),
        1 => packet_id().prop_map(Packet::PubAck),
        1 => subscribe(),
        1 => unsubscribe(),
        1 => Just(Packet::PingReq),
        1 => Just(Packet::Disconnect),
    ]
    .boxed()
}

/// Packets a server sends (a client decodes them).
fn server_packet() -> BoxedStrategy<Packet> {
    prop_oneof![
        1 => connack(),
        4 => publish(),
        1 => packet_id().prop_map(Packet::PubAck),
        1 => suback(),
        1 => packet_id().prop_map(Packet::UnsubAck),
        1 => Just(Packet::PingResp),
    ]
    .boxed()
}

fn any_packet() -> BoxedStrategy<Packet> {
    prop_oneof![client_packet(), server_packet()].boxed()
}

/// A framed packet of any type byte with a random body: well framed, usually invalid.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), vec(any::<u8>(), 0..40)).prop_map(|(byte1, body)| {
        let mut b = BytesMut::new();
        b.put_u8(byte1);
        put_remaining_length(&mut b, body.len());
        b.extend_from_slice(&body);
        b.to_vec()
    })
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    MqttCodec::new(sender(packet), MqttLimits::default())
        .unwrap()
        .encode(packet, &mut b)
        .unwrap();
    b.to_vec()
}

/// A stream as a `role` decoder receives it: valid packets from the other end, framed garbage,
/// valid packets with one byte changed, and maybe a tail of random bytes.
fn stream(role: Role) -> impl Strategy<Value = Vec<u8>> {
    let good = match role {
        Role::Server => client_packet(),
        Role::Client => server_packet(),
    };
    let damaged =
        (good.clone(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(p, at, b)| {
            let mut w = encode(&p);
            let i = at.index(w.len());
            w[i] = b;
            w
        });
    let piece = prop_oneof![
        4 => good.prop_map(|p| encode(&p)),
        1 => framed_garbage(),
        1 => damaged,
    ];
    (vec(piece, 0..12), vec(any::<u8>(), 0..16), any::<bool>()).prop_map(
        |(pieces, tail, with_tail)| {
            let mut s: Vec<u8> = pieces.concat();
            if with_tail {
                s.extend_from_slice(&tail);
            }
            s
        },
    )
}

fn split_points() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..=64, 1..8)
}

/// Decodes `data` split into pieces of the given sizes (cycled).
fn decode_split(
    data: &[u8],
    sizes: &[usize],
    role: Role,
    limits: MqttLimits,
) -> Vec<fuzz_mqtt::Decoded> {
    let mut codec = MqttCodec::new(role, limits).unwrap();
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let (mut rest, mut i, mut taken, mut fed) = (data, 0, 0, 0);
    let mut push = |r: Result<Packet, MqttDecodeError>, src: &BytesMut, fed: usize| {
        let now = fed - src.len();
        out.push((r, data[taken..now].to_vec()));
        taken = now;
    };
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        src.extend_from_slice(&rest[..n]);
        fed += n;
        rest = &rest[n..];
        loop {
            match codec.decode(&mut src) {
                Ok(Some(p)) => push(Ok(p), &src, fed),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    push(Err(e), &src, fed);
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut src) {
            Ok(Some(p)) => push(Ok(p), &src, fed),
            Ok(None) => return out,
            Err(e) => {
                let fatal = e.is_fatal();
                push(Err(e), &src, fed);
                if fatal {
                    return out;
                }
            }
        }
    }
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn roles() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Any packet encodes (by its sender), decodes (by the other end) to itself consuming exactly
    /// its bytes, re-encodes to the same bytes, and decodes the same one byte at a time.
    #[test]
    fn roundtrip_is_identity(p in any_packet(), trailing in vec(any::<u8>(), 0..6)) {
        mqtt_roundtrip(&p);
        // With bytes after it, exactly the packet's bytes are consumed.
        let wire = encode(&p);
        let mut src = BytesMut::from(&wire[..]);
        src.extend_from_slice(&trailing);
        let mut c = MqttCodec::new(sender(&p).peer(), MqttLimits::default()).unwrap();
        prop_assert_eq!(c.decode(&mut src), Ok(Some(p)));
        prop_assert_eq!(&src[..], &trailing[..]);
    }

    /// The decoded topic and payload of a PUBLISH are slices of the input buffer (zero-copy).
    #[test]
    fn publish_decodes_zero_copy(p in publish()) {
        let wire = encode(&p);
        let mut src = BytesMut::from(&wire[..]);
        let range = src.as_ptr_range();
        let Some(Packet::Publish(got)) = MqttCodec::server().decode(&mut src).unwrap() else {
            return Err(TestCaseError::fail("not a publish"));
        };
        prop_assert!(range.contains(&got.topic.as_bytes().as_ptr()));
        if !got.payload.is_empty() {
            prop_assert!(range.contains(&got.payload.as_ptr()));
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A stream (valid, damaged and garbage packets, maybe a random tail) split at any points
    /// gives the same packets and errors, consuming the same bytes, as decoding it whole; every
    /// packet re-encodes to its bytes.
    #[test]
    fn splitting_does_not_change_the_results(
        (role, data) in roles().prop_flat_map(|r| (Just(r), stream(r))),
        sizes in split_points(),
        small in any::<bool>(),
    ) {
        let limits = if small {
            MqttLimits::default().with_max_packet_size(100)
        } else {
            MqttLimits::default()
        };
        let whole = mqtt_decode_all(&data, data.len().max(1), role, limits);
        check_canonical(&whole, role, limits);
        prop_assert_eq!(&whole, &decode_split(&data, &sizes, role, limits));
        prop_assert_eq!(&whole, &mqtt_decode_all(&data, 1, role, limits));
    }

    /// A stream of valid packets decodes to exactly those packets, whatever the split.
    #[test]
    fn valid_streams_decode_to_their_packets(
        packets in vec(client_packet(), 0..20),
        sizes in split_points(),
    ) {
        let data: Vec<u8> = packets.iter().flat_map(encode).collect();
        let got: Vec<Packet> = decode_split(&data, &sizes, Role::Server, MqttLimits::default())
            .into_iter()
            .map(|(r, _)| r.unwrap())
            .collect();
        prop_assert_eq!(got, packets);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes, in any chunks, as either role and with either limit: no panic, no loop,
    /// no byte given back or consumed for nothing, never more buffered than a fixed header, a
    /// maximal packet and the last chunk (all checked by `mqtt_decode_all`), and the same results
    /// as whole.
    #[test]
    fn arbitrary_bytes_never_break_the_decoder(
        data in prop_oneof![vec(any::<u8>(), 0..64), vec(any::<u8>(), 0..600)],
        chunk in 1usize..=40,
        role in roles(),
        small in any::<bool>(),
    ) {
        let limits = if small {
            MqttLimits::default().with_max_packet_size(100)
        } else {
            MqttLimits::default()
        };
        let whole = mqtt_decode_all(&data, data.len().max(1), role, limits);
        check_canonical(&whole, role, limits);
        prop_assert_eq!(whole, mqtt_decode_all(&data, chunk, role, limits));
    }

    /// The remaining length: every value round-trips; a value over the maximum is refused, and
    /// from no more length bytes than a 4-byte encoding would need; a non-minimal encoding is
    /// refused; a value within the maximum never is.
    #[test]
    fn remaining_length_refusal_is_exact(
        value in prop_oneof![0u32..=300, 0u32..=70_000, 0u32..=(1 << 28) - 1],
        max in prop_oneof![Just(65_535usize), 1usize..=300, 1usize..=(1 << 28) - 1],
        pad in 0usize..=3,
    ) {
        let mut b = BytesMut::new();
        put_remaining_length(&mut b, value as usize);
        let r = remaining_length(max)(&b);
        if value as usize <= max {
            prop_assert_eq!(r, Ok((&[][..], value)));
        } else {
            match r {
                Err(nom::Err::Failure(Fault::LengthOverMax { len, exact, bytes })) => {
                    prop_assert!(len as usize > max);
                    prop_assert!(len <= value || !exact);
                    prop_assert!(bytes <= b.len());
                    if exact {
                        prop_assert_eq!(len, value);
                    }
                }
                other => prop_assert!(false, "{value} > {max}: {other:?}"),
            }
        }
        // The same value with `pad` extra continuation groups of zero is not minimal (or too long).
        if pad > 0 && b.len() + pad <= 4 {
            let mut long = b.to_vec();
            let last = long.len() - 1;
            long[last] |= 0x80;
            long.extend(std::iter::repeat_n(0x80, pad - 1));
            long.push(0x00);
            let r = remaining_length((1 << 28) - 1)(&long);
            let is_not_minimal = matches!(r, Err(nom::Err::Failure(Fault::LengthNotMinimal { .. })));
            prop_assert!(is_not_minimal, "{long:02x?}: {r:?}");
        }
    }

    /// A fixed header whose length is over the maximum is refused before its body arrives, with
    /// nothing reserved for it: a fatal, sticky error.
    #[test]
    fn oversized_packets_are_refused_before_buffering(
        byte1 in any::<u8>(),
        len in 101usize..=(1 << 28) - 1,
    ) {
        let mut wire = BytesMut::new();
        wire.put_u8(byte1);
        put_remaining_length(&mut wire, len);
        let mut c = MqttCodec::new(Role::Server, MqttLimits::default().with_max_packet_size(100)).unwrap();
        let mut src = BytesMut::new();
        let mut refused = None;
        for b in wire.iter() {
            src.extend_from_slice(&[*b]);
            match c.decode(&mut src) {
                Ok(None) => prop_assert!(src.capacity() < 4096, "reserved {}", src.capacity()),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
                Ok(Some(p)) => prop_assert!(false, "decoded {p:?}"),
            }
        }
        let Some(e) = refused else {
            return Err(TestCaseError::fail("never refused"));
        };
        let is_too_large = matches!(e, MqttDecodeError::Frame(MqttFrameError::TooLarge { .. }));
        prop_assert!(is_too_large, "{e}");
        prop_assert!(e.is_fatal() && c.is_failed());
        prop_assert!(src.len() <= MQTT_HEADER);
    }
}
