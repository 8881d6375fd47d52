//! docs/POMELO.md cannot drift from the code: every `<!-- example: NAME -->` hex block in it must be
//! exactly what gatekit writes for the package built here under NAME, and must decode back to it
//! (a data package's body to the message built here). The varint examples in the text are checked
//! too.
//!
//! `GATEKIT_PRINT_EXAMPLES=1 cargo test -p gatekit-codec --test pomelo_doc -- --nocapture` prints
//! the blocks this test expects, for writing the document.

mod common;

use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::parsers::put_message_id;
use gatekit_codec::pomelo::{
    ClientHandshake, Dictionary, HandshakeResponse, Kick, Message, MessageId, MessageRoute,
    Package, PomeloCodec,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What each example is: a package, and for data packages the message it carries.
fn expected() -> BTreeMap<&'static str, (Package, Option<Message>)> {
    let id = |v| MessageId::new(v).unwrap();
    let route = MessageRoute::from_static("echo.handler.say");
    let dict = Arc::new(Dictionary::new(["echo.handler.say"], ["onChat"]).unwrap());
    let data = |m: Message| (Package::Data(m.to_bytes().unwrap()), Some(m));
    let plain = |p: Package| (p, None);
    BTreeMap::from([
        (
            "handshake",
            plain(ClientHandshake::new("js-tcp", "0.0.1").to_package()),
        ),
        (
            "handshake_response",
            plain(
                HandshakeResponse::ok(Some(3))
                    .with_dict(dict.clone())
                    .to_package(),
            ),
        ),
        (
            "handshake_response_cached",
            plain(HandshakeResponse::ok(Some(3)).use_dict().to_package()),
        ),
        (
            "handshake_refused",
            plain(HandshakeResponse::refused().to_package()),
        ),
        (
            "handshake_old_client",
            plain(HandshakeResponse::old_client().to_package()),
        ),
        ("handshake_ack", plain(Package::HandshakeAck)),
        ("heartbeat", plain(Package::Heartbeat)),
        (
            "request",
            data(Message::request(id(1), route.clone(), "{\"a\":1}")),
        ),
        (
            "request_compressed",
            data(Message::request(id(1), MessageRoute::Code(1), "{\"a\":1}")),
        ),
        (
            "request_id_300",
            data(Message::request(id(300), MessageRoute::Code(1), "{}")),
        ),
        ("notify", data(Message::notify(route.clone(), "{}"))),
        ("response", data(Message::response(id(1), "{\"code\":200}"))),
        (
            "response_gzip",
            data(Message::response(id(1), &b"\x1f\x8b"[..]).with_gzip(true)),
        ),
        (
            "push",
            data(Message::push(
                MessageRoute::from_static("onChat"),
                "{\"t\":\"hi\"}",
            )),
        ),
        (
            "push_compressed",
            data(Message::push(dict.compress("onChat"), "{\"t\":\"hi\"}")),
        ),
        ("kick", plain(Kick::new("bye").to_package())),
    ])
}

fn doc() -> String {
    common::doc("POMELO.md")
}

fn encode(p: &Package) -> Vec<u8> {
    let mut out = BytesMut::new();
    PomeloCodec::default().encode(p, &mut out).unwrap();
    out.to_vec()
}

fn hex_block(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = format!("{} |", hex[..4].join(" "));
    for (i, row) in hex[4..].chunks(16).enumerate() {
        if i > 0 {
            out.push_str("\n             ");
        }
        out.push(' ');
        out.push_str(&row.join(" "));
    }
    out
}

#[test]
fn pomelo_doc_examples_match_the_encoder() {
    if std::env::var("GATEKIT_PRINT_EXAMPLES").is_ok() {
        for (name, (p, _)) in expected() {
            println!(
                "<!-- example: {name} -->\n```hex\n{}\n```\n",
                hex_block(&encode(&p))
            );
        }
    }
    let found = common::examples(&doc());
    let mut want = expected();
    for (name, bytes) in &found {
        let (package, message) = want
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("example {name} in POMELO.md has no package in this test"));
        assert_eq!(
            encode(&package),
            *bytes,
            "example {name}: doc hex differs from the encoder; it writes\n{}",
            hex_block(&encode(&package))
        );
        let mut wire = BytesMut::from(&bytes[..]);
        let decoded = PomeloCodec::default().decode_eof(&mut wire).unwrap();
        assert_eq!(decoded.as_ref(), Some(&package), "example {name}: decodes");
        assert!(wire.is_empty());
        if let Some(m) = message {
            let Some(Package::Data(body)) = decoded else {
                panic!("{name}: not data")
            };
            assert_eq!(Message::decode(body).unwrap(), m, "example {name}: message");
        }
    }
    assert!(
        want.is_empty(),
        "packages with no example in POMELO.md: {:?}",
        want.keys()
    );
}

#[test]
fn pomelo_doc_varint_examples() {
    let doc = doc();
    for (value, hex) in [
        (1u32, "01"),
        (127, "7f"),
        (128, "80 01"),
        (300, "ac 02"),
        (16_384, "80 80 01"),
        (2_147_483_647, "ff ff ff ff 07"),
        (4_294_967_295, "ff ff ff ff 0f"),
    ] {
        let mut b = BytesMut::new();
        put_message_id(&mut b, value);
        common::assert_shows_length("POMELO.md", &doc, value as u64, hex, &b);
    }
}

#[test]
fn pomelo_doc_dict_version_example() {
    let d = Dictionary::new(["echo.handler.say"], ["onChat"]).unwrap();
    let doc = doc();
    assert!(doc.contains(d.json()), "POMELO.md lacks {}", d.json());
    assert!(doc.contains(d.version()), "POMELO.md lacks {}", d.version());
    let _ = Bytes::new();
}
