//! docs/PROTOCOL.md cannot drift from the code: every `<!-- example: NAME -->` hex block in it must be
//! exactly what the encoder writes for the packet built here under NAME, and must decode back to it.

mod common;

use bytes::BytesMut;
use gatekit_codec::{
    Close, CloseCode, Handshake, MessageId, NativeCodec, Notify, Packet, Push, Request, Response,
    Route, Status, Text, Topic, Welcome,
};
use std::collections::BTreeMap;

fn expected() -> BTreeMap<&'static str, Packet> {
    let id = MessageId::new(7).unwrap();
    BTreeMap::from([
        (
            "handshake",
            Packet::Handshake(Handshake {
                version: 1,
                heartbeat_secs: 30,
                token: "tok".into(),
            }),
        ),
        (
            "welcome",
            Packet::Welcome(Welcome {
                version: 1,
                heartbeat_secs: 30,
                max_frame_length: 65_535,
                session_id: Text::from_static("s-1"),
            }),
        ),
        (
            "request",
            Packet::Request(Request::new(id, Route::from_static("chat/send"), "{}")),
        ),
        (
            "response",
            Packet::Response(Response {
                id,
                status: Status::Ok,
                body: "ok".into(),
            }),
        ),
        (
            "notify",
            Packet::Notify(Notify::new(Route::from_static("chat/typing"), "")),
        ),
        (
            "push",
            Packet::Push(Push::new(Topic::from_static("room/7"), "hi")),
        ),
        ("ping", Packet::Ping),
        ("pong", Packet::Pong),
        (
            "close",
            Packet::Close(Close {
                code: CloseCode::Kicked,
                reason: Text::from_static("bye"),
            }),
        ),
        (
            "refusal",
            Packet::Close(Close {
                code: CloseCode::ServerFull,
                reason: Text::default(),
            }),
        ),
        (
            "push_200",
            Packet::Push(Push::new(Topic::from_static("t"), vec![b'x'; 200])),
        ),
    ])
}

#[test]
fn protocol_doc_examples_match_the_encoder() {
    let doc = common::doc("PROTOCOL.md");
    let found = common::examples(&doc);
    let mut want = expected();
    let codec = NativeCodec::default();
    for (name, bytes) in &found {
        let packet = want
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("example {name} in PROTOCOL.md has no packet in this test"));
        let mut encoded = BytesMut::new();
        codec.encode(&packet, &mut encoded).unwrap();
        assert_eq!(
            &encoded[..],
            &bytes[..],
            "example {name}: doc hex differs from the encoder"
        );
        let mut wire = BytesMut::from(&bytes[..]);
        let decoded = NativeCodec::default().decode_eof(&mut wire).unwrap();
        assert_eq!(
            decoded,
            Some(packet),
            "example {name}: doc hex decodes to something else"
        );
        assert!(wire.is_empty());
    }
    assert!(
        want.is_empty(),
        "packets with no example in PROTOCOL.md: {:?}",
        want.keys()
    );
    // One example per packet kind.
    let kinds: std::collections::BTreeSet<u8> = expected().values().map(Packet::kind).collect();
    assert_eq!(kinds.len(), 9);
}

#[test]
fn protocol_doc_varint_examples() {
    use gatekit_codec::parsers::put_varint;
    let doc = common::doc("PROTOCOL.md");
    for (value, hex) in [
        (5u32, "05"),
        (127, "7f"),
        (128, "80 01"),
        (300, "ac 02"),
        (65_535, "ff ff 03"),
    ] {
        let mut b = BytesMut::new();
        put_varint(&mut b, value);
        common::assert_shows_length("PROTOCOL.md", &doc, value.into(), hex, &b);
    }
}
