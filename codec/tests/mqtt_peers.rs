//! Real MQTT clients' bytes, replayed (`corpus/mqtt/golden/`, written by
//! `python3 peers/mqtt/capture.py --out corpus/mqtt/golden`; see its README.md).
//!
//! - Every `*-c-*.bin` (sent by mosquitto_pub, mosquitto_sub or paho-mqtt, from their own
//!   encoders) decodes with a server-role codec to exactly the packet this file expects, and
//!   re-encodes with a client-role codec to the same bytes.
//! - Every `*-s-*.bin` (what the capture server answered and the client accepted) decodes with a
//!   client-role codec and re-encodes with a server-role codec to the same bytes: gatekit writes
//!   what real clients accept.
//! - The MQTT 5 CONNECTs (mosquitto_pub `-V mqttv5`, paho `MQTTv5`) are refused as MQTT 5, and the
//!   refusal CONNACK gatekit gives is the one those clients were sent and understood.
//! - Every file has an expectation here and every expectation a file.
//!
//! `paho_encoder_differential` (run with `GATEKIT_PAHO_DIFF=<seed>`, e.g. `1`; needs python3 and
//! paho-mqtt 2.x) goes
//! further: `peers/mqtt/paho_diff.py` builds 500 random packets with paho's encoder and each must
//! be byte for byte what gatekit encodes for the same fields, and decode to them.

use bytes::{Bytes, BytesMut};
use gatekit_codec::mqtt::{
    ConnAck, Connect, Delivery, MqttCodec, MqttDecodeError, MqttPacketError, MqttString, Packet,
    PacketId, Protocol, Publish, QoS, Role, SubAck, Subscribe, SubscribeReturnCode, Subscription,
    TopicFilter, TopicName, Unsubscribe, V5ConnAckReason, Will,
};
use std::collections::BTreeMap;
use std::path::Path;

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/mqtt/golden")
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn t(text: &'static str) -> TopicName {
    TopicName::from_static(text)
}

fn f(text: &'static str) -> TopicFilter {
    TopicFilter::from_static(text)
}

fn connect(protocol: Protocol, client_id: &'static str, keep_alive: u16) -> Connect {
    Connect {
        protocol,
        ..Connect::new(s(client_id), keep_alive)
    }
}

fn with_login(mut c: Connect) -> Connect {
    c.username = Some(s("gk-user"));
    c.password = Some(Bytes::from_static(b"gk-secret"));
    c.will = Some(Will {
        topic: t("echo/HD_will/1"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    c
}

const SAY_HI: &[u8] = br#"{"say":"hi"}"#;

fn qos1(packet_id: u16, topic: &'static str, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish::qos1(id(packet_id), t(topic), payload))
}

const ACCEPTED: Packet = Packet::ConnAck(ConnAck::Accepted {
    session_present: false,
});

/// What each file must decode to: a packet, or (for the MQTT 5 CONNECTs) the refusal.
enum Expect {
    Packet(Packet),
    Mqtt5Connect,
}

fn expected() -> BTreeMap<&'static str, Expect> {
    use Expect::{Mqtt5Connect, Packet as P};
    let mut retained = Publish::qos1(id(1), t("echo/HD_say/1"), SAY_HI);
    retained.retain = true;
    BTreeMap::from([
        // mosquitto_pub 2.0.11, 3.1.1, QoS 0, with user name, password, will, keep-alive 30.
        (
            "mosquitto_pub_v311_qos0-01-c-connect",
            P(with_login(connect(Protocol::V311, "gk-pub", 30)).into()),
        ),
        ("mosquitto_pub_v311_qos0-02-s-connack", P(ACCEPTED)),
        (
            "mosquitto_pub_v311_qos0-03-c-publish",
            P(Publish::qos0(t("echo/HD_say/1"), SAY_HI).into()),
        ),
        (
            "mosquitto_pub_v311_qos0-04-c-disconnect",
            P(Packet::Disconnect),
        ),
        // mosquitto_pub, 3.1.1, QoS 1, retained, default keep-alive 60.
        (
            "mosquitto_pub_v311_qos1-01-c-connect",
            P(connect(Protocol::V311, "gk-pub1", 60).into()),
        ),
        ("mosquitto_pub_v311_qos1-02-s-connack", P(ACCEPTED)),
        ("mosquitto_pub_v311_qos1-03-c-publish", P(retained.into())),
        (
            "mosquitto_pub_v311_qos1-04-s-puback",
            P(Packet::PubAck(id(1))),
        ),
        (
            "mosquitto_pub_v311_qos1-05-c-disconnect",
            P(Packet::Disconnect),
        ),
        // mosquitto_pub -V mqttv31: "MQIsdp", level 3.
        (
            "mosquitto_pub_v31-01-c-connect",
            P(connect(Protocol::V31, "gk-pub31", 60).into()),
        ),
        ("mosquitto_pub_v31-02-s-connack", P(ACCEPTED)),
        (
            "mosquitto_pub_v31-03-c-publish",
            P(qos1(1, "echo/HD_say/1", b"hi")),
        ),
        ("mosquitto_pub_v31-04-s-puback", P(Packet::PubAck(id(1)))),
        ("mosquitto_pub_v31-05-c-disconnect", P(Packet::Disconnect)),
        // mosquitto_pub -V mqttv5: level 5 with a Receive Maximum property; refused with 0x84.
        ("mosquitto_pub_v5-01-c-connect", Mqtt5Connect),
        (
            "mosquitto_pub_v5-02-s-connack",
            P(Packet::ConnAckV5(
                V5ConnAckReason::UnsupportedProtocolVersion,
            )),
        ),
        // mosquitto_sub, 3.1.1, keep-alive 5: SUBSCRIBE 3 filters at QoS 1, UNSUBSCRIBE, PINGREQ.
        (
            "mosquitto_sub_v311-01-c-connect",
            P(connect(Protocol::V311, "gk-sub", 5).into()),
        ),
        ("mosquitto_sub_v311-02-s-connack", P(ACCEPTED)),
        (
            "mosquitto_sub_v311-03-c-subscribe",
            P(Subscribe {
                packet_id: id(1),
                subscriptions: ["echo/HD_say/1", "room/+/chat", "sys/#"]
                    .map(|filter| Subscription {
                        filter: f(filter),
                        qos: QoS::AtLeastOnce,
                    })
                    .to_vec(),
            }
            .into()),
        ),
        (
            "mosquitto_sub_v311-04-s-suback",
            P(SubAck {
                packet_id: id(1),
                return_codes: vec![SubscribeReturnCode::Granted(QoS::AtLeastOnce); 3],
            }
            .into()),
        ),
        (
            "mosquitto_sub_v311-05-c-unsubscribe",
            P(Unsubscribe {
                packet_id: id(2),
                filters: vec![f("old/topic")],
            }
            .into()),
        ),
        (
            "mosquitto_sub_v311-06-s-unsuback",
            P(Packet::UnsubAck(id(2))),
        ),
        ("mosquitto_sub_v311-07-c-pingreq", P(Packet::PingReq)),
        ("mosquitto_sub_v311-08-s-pingresp", P(Packet::PingResp)),
        (
            "mosquitto_sub_v311-09-s-publish",
            P(Publish::qos0(
                t("echo/HD_say/1"),
                &br#"{"Trace":"","Error":"","Result":"hi"}"#[..],
            )
            .into()),
        ),
        ("mosquitto_sub_v311-10-c-disconnect", P(Packet::Disconnect)),
        // paho-mqtt 2.2.0, MQTTv311, keep-alive 2, user name, password, will.
        (
            "paho_v311-01-c-connect",
            P(with_login(connect(Protocol::V311, "gk-paho", 2)).into()),
        ),
        ("paho_v311-02-s-connack", P(ACCEPTED)),
        (
            "paho_v311-03-c-publish",
            P(Publish::qos0(t("echo/HD_say"), &br#"{"say":"no reply"}"#[..]).into()),
        ),
        (
            "paho_v311-04-c-publish",
            P(qos1(2, "echo/HD_say/1", SAY_HI)),
        ),
        ("paho_v311-05-s-puback", P(Packet::PubAck(id(2)))),
        (
            "paho_v311-06-c-subscribe",
            P(Subscribe {
                packet_id: id(3),
                subscriptions: vec![
                    Subscription {
                        filter: f("echo/+/1"),
                        qos: QoS::AtLeastOnce,
                    },
                    Subscription {
                        filter: f("room/#"),
                        qos: QoS::AtMostOnce,
                    },
                ],
            }
            .into()),
        ),
        (
            "paho_v311-07-s-suback",
            P(SubAck {
                packet_id: id(3),
                return_codes: vec![
                    SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                    SubscribeReturnCode::Granted(QoS::AtMostOnce),
                ],
            }
            .into()),
        ),
        (
            "paho_v311-08-c-unsubscribe",
            P(Unsubscribe {
                packet_id: id(4),
                filters: vec![f("room/#")],
            }
            .into()),
        ),
        ("paho_v311-09-s-unsuback", P(Packet::UnsubAck(id(4)))),
        ("paho_v311-10-c-pingreq", P(Packet::PingReq)),
        ("paho_v311-11-s-pingresp", P(Packet::PingResp)),
        ("paho_v311-12-c-disconnect", P(Packet::Disconnect)),
        // paho MQTTv31.
        (
            "paho_v31-01-c-connect",
            P(connect(Protocol::V31, "gk-paho31", 60).into()),
        ),
        ("paho_v31-02-s-connack", P(ACCEPTED)),
        ("paho_v31-03-c-publish", P(qos1(1, "echo/HD_say/1", b"hi"))),
        ("paho_v31-04-s-puback", P(Packet::PubAck(id(1)))),
        ("paho_v31-05-c-disconnect", P(Packet::Disconnect)),
        // paho MQTTv5 with a Session Expiry Interval property; refused with 0x84.
        ("paho_v5-01-c-connect", Mqtt5Connect),
        (
            "paho_v5-02-s-connack",
            P(Packet::ConnAckV5(
                V5ConnAckReason::UnsupportedProtocolVersion,
            )),
        ),
    ])
}

fn golden_files() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(golden_dir()).expect("corpus/mqtt/golden") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            out.insert(stem, std::fs::read(&path).unwrap());
        }
    }
    out
}

/// The role that decodes a file: the capture server's answers (`-s-`) are read by a client.
fn receiver(name: &str) -> Role {
    if name.contains("-s-") {
        Role::Client
    } else {
        assert!(name.contains("-c-"), "{name}: neither -c- nor -s-");
        Role::Server
    }
}

fn decode_one(role: Role, wire: &[u8]) -> Result<Packet, MqttDecodeError> {
    let mut codec = MqttCodec::new(role, Default::default()).unwrap();
    let mut src = BytesMut::from(wire);
    let p = codec.decode_eof(&mut src)?.expect("a whole packet");
    assert!(src.is_empty(), "{} bytes left", src.len());
    Ok(p)
}

#[test]
fn every_golden_file_decodes_to_its_packet_and_reencodes_identically() {
    let files = golden_files();
    let mut want = expected();
    for (name, wire) in &files {
        let expect = want
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("{name}.bin has no expectation in mqtt_peers.rs"));
        let role = receiver(name);
        match expect {
            Expect::Packet(packet) => {
                let decoded = decode_one(role, wire).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(decoded, packet, "{name}");
                let mut again = BytesMut::new();
                MqttCodec::new(role.peer(), Default::default())
                    .unwrap()
                    .encode(&decoded, &mut again)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    &again[..],
                    &wire[..],
                    "{name}: gatekit encodes it differently"
                );
            }
            Expect::Mqtt5Connect => {
                let e = decode_one(role, wire).expect_err(name);
                let MqttDecodeError::Packet(ref pe) = e else {
                    panic!("{name}: {e}")
                };
                assert_eq!(
                    pe,
                    &MqttPacketError::UnsupportedProtocolLevel {
                        name: "MQTT",
                        level: 5,
                        offset: 8
                    },
                    "{name}"
                );
                assert!(!e.is_fatal());
                // The refusal gatekit gives is the CONNACK the client was sent (next file).
                let answer = name.replace("-01-c-connect", "-02-s-connack");
                let mut out = BytesMut::new();
                MqttCodec::server()
                    .encode(&e.connack_refusal().unwrap(), &mut out)
                    .unwrap();
                assert_eq!(&out[..], &files[&answer][..], "{name}");
                assert_eq!(&out[..], b"\x20\x03\x00\x84\x00");
            }
        }
    }
    assert!(
        want.is_empty(),
        "expectations without a file: {:?}",
        want.keys()
    );
}

#[test]
fn golden_sessions_decode_as_streams_bytewise() {
    // Each session's client bytes, concatenated, fed one byte at a time: the same packets.
    let files = golden_files();
    let mut sessions: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for name in files.keys() {
        if name.contains("-c-") {
            sessions
                .entry(name.split('-').next().unwrap())
                .or_default()
                .push(name);
        }
    }
    assert!(sessions.len() >= 8, "{sessions:?}");
    for (session, names) in sessions {
        let mut codec = MqttCodec::server();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for byte in names.iter().flat_map(|n| files[*n].iter()) {
            src.extend_from_slice(&[*byte]);
            while let Some(r) = codec.decode(&mut src).transpose() {
                got.push(r);
            }
        }
        assert_eq!(codec.decode_eof(&mut src), Ok(None), "{session}");
        let whole: Vec<_> = names
            .iter()
            .map(|n| decode_one(Role::Server, &files[*n]))
            .collect();
        assert_eq!(got, whole, "{session}");
    }
}

#[test]
fn golden_readme_lists_every_file() {
    let readme = std::fs::read_to_string(golden_dir().join("README.md")).unwrap();
    for (name, wire) in golden_files() {
        let hex: Vec<String> = wire.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            readme.contains(&format!("| `{name}.bin` | `{}` |", hex.join(" "))),
            "README.md does not list {name}.bin with its hex"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Live differential check against paho's encoder (opt-in).
// ---------------------------------------------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return vec![];
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn text_of(hex: &str) -> String {
    String::from_utf8(unhex(hex)).unwrap()
}

/// The packet a line of `paho_diff.py` describes, and paho's bytes for it.
fn paho_case(line: &str) -> (Packet, Role, Vec<u8>) {
    let w: Vec<&str> = line.split(' ').collect();
    let wire = unhex(w[w.len() - 1]);
    let n = |i: usize| -> u16 { w[i].parse().unwrap() };
    let packet = match w[0] {
        "publish" => {
            let topic = TopicName::try_from(text_of(w[5])).unwrap();
            let delivery = if w[1] == "1" {
                Delivery::AtLeastOnce {
                    packet_id: id(n(4)),
                    dup: w[3] == "1",
                }
            } else {
                Delivery::AtMostOnce
            };
            Packet::Publish(Publish {
                delivery,
                retain: w[2] == "1",
                topic,
                payload: unhex(w[6]).into(),
            })
        }
        "subscribe" => Packet::Subscribe(Subscribe {
            packet_id: id(n(1)),
            subscriptions: w[2]
                .split(',')
                .map(|tq| {
                    let (t, q) = tq.split_once(':').unwrap();
                    Subscription {
                        filter: TopicFilter::try_from(text_of(t)).unwrap(),
                        qos: QoS::from_u8(q.parse().unwrap()).unwrap(),
                    }
                })
                .collect(),
        }),
        "unsubscribe" => Packet::Unsubscribe(Unsubscribe {
            packet_id: id(n(1)),
            filters: w[2]
                .split(',')
                .map(|t| TopicFilter::try_from(text_of(t)).unwrap())
                .collect(),
        }),
        "connect" => {
            let will = (w[5] != "-").then(|| {
                let p: Vec<&str> = w[5].split(':').collect();
                Will {
                    topic: TopicName::try_from(text_of(p[0])).unwrap(),
                    payload: unhex(p[1]).into(),
                    qos: QoS::from_u8(p[2].parse().unwrap()).unwrap(),
                    retain: p[3] == "1",
                }
            });
            Packet::from(Connect {
                protocol: if w[1] == "3" {
                    Protocol::V31
                } else {
                    Protocol::V311
                },
                clean_session: w[2] == "1",
                keep_alive: n(3),
                client_id: MqttString::try_from(text_of(w[4])).unwrap(),
                will,
                username: (w[6] != "none").then(|| MqttString::try_from(text_of(w[6])).unwrap()),
                password: (w[7] != "none").then(|| unhex(w[7]).into()),
            })
        }
        "puback" => Packet::PubAck(id(n(1))),
        "pingreq" => Packet::PingReq,
        "disconnect" => Packet::Disconnect,
        other => panic!("unknown case {other}"),
    };
    (packet, Role::Client, wire)
}

#[test]
fn paho_encoder_differential() {
    let Some(seed) = std::env::var("GATEKIT_PAHO_DIFF").ok() else {
        eprintln!(
            "skipped: set GATEKIT_PAHO_DIFF=1 (or another seed; needs python3 and paho-mqtt 2.x)"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers/mqtt/paho_diff.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--cases", "500", "--seed", &seed])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut count = 0;
    for line in stdout.lines() {
        let (packet, role, paho) = paho_case(line);
        let mut ours = BytesMut::new();
        MqttCodec::new(role, Default::default())
            .unwrap()
            .encode(&packet, &mut ours)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&ours[..], &paho[..], "{line}");
        assert_eq!(decode_one(role.peer(), &paho), Ok(packet), "{line}");
        count += 1;
    }
    assert_eq!(count, 500);
}
