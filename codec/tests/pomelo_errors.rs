//! Snapshots of what users see from the pomelo profile: the `Display` of every error variant, each
//! produced by really decoding, encoding or building bad input; the hex of the golden vectors
//! (`corpus/pomelo/golden/`), so that any change of wire bytes shows up in review; and the `Debug`
//! of a decoded package and message of each kind.
//!
//! Update with `INSTA_UPDATE=always cargo test -p gatekit-codec --test pomelo_errors` and review
//! the diff of `tests/snapshots/pomelo_errors__*.snap`.

use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    split_route, ClientHandshake, ConfigError, DictError, Dictionary, EncodeError,
    HandshakeResponse, Kick, Message, MessageError, MessageId, MessageRoute, Package, PackageError,
    PomeloCodec, RouteError, ServerHandshake,
};
use gatekit_codec::pomelo::{BodyError, JsonFault};
use gatekit_codec::{Oversize, Text};
use std::fmt::{Debug, Display, Write as _};

/// The variant name: the `Debug` text up to the first `{`, `(` or space.
fn variant(e: &impl Debug) -> String {
    let debug = format!("{e:?}");
    debug.split(['{', '(', ' ']).next().unwrap().to_owned()
}

/// Lines `Enum::Variant: text`, checking the errors are exactly the variants `expected`.
fn lines<E: Debug + Display>(enum_name: &str, errors: &[E], expected: &[&str]) -> String {
    let names: Vec<String> = errors.iter().map(variant).collect();
    assert_eq!(names, expected, "{enum_name}: {errors:#?}");
    let mut out = String::new();
    for (e, name) in errors.iter().zip(&names) {
        writeln!(out, "{enum_name}::{name}: {e}").unwrap();
    }
    out
}

/// The error `decode` (or, if it wants more bytes, `decode_eof`) returns on `wire`, after any
/// packages before it.
fn package_err(mut codec: PomeloCodec, wire: &[u8]) -> PackageError {
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

fn package_errors() -> Vec<PackageError> {
    let small = || PomeloCodec::new(100, Oversize::Fail).unwrap();
    vec![
        // A heartbeat, then type 6.
        package_err(PomeloCodec::default(), b"\x03\x00\x00\x00\x06"),
        // 65,536 or more, proven by the first length byte.
        package_err(PomeloCodec::default(), b"\x04\x01"),
        package_err(small(), b"\x01\x00\x00\x65"),
        package_err(
            PomeloCodec::new(100, Oversize::Skip).unwrap(),
            b"\x04\x00\x01\x00",
        ),
        package_err(PomeloCodec::default(), b"\x03\x00\x00\x02hi"),
        // A data package of 5 bytes, 2 arrived.
        package_err(PomeloCodec::default(), b"\x04\x00\x00\x05\x02\x01"),
    ]
}

fn message_err(wire: &'static [u8]) -> MessageError {
    Message::decode(Bytes::from_static(wire)).expect_err(&format!("no error from {wire:02x?}"))
}

fn message_errors() -> Vec<MessageError> {
    vec![
        // A notify whose route length says 9, with 3 bytes left.
        message_err(b"\x02\x09a.b"),
        message_err(b"\x40"),
        message_err(b"\x0c"),
        message_err(b"\x05\x01{}"),
        message_err(b"\x00\x80\x80\x80\x80\x80\x01"),
        message_err(b"\x04\x80\x80\x80\x80\x10"),
        message_err(b"\x04\x81\x00"),
        message_err(b"\x00\x00\x03a.b"),
        message_err(b"\x06\x00{}"),
        message_err(b"\x00\x01\x04ab\xc3("),
    ]
}

fn body_errors() -> Vec<BodyError> {
    let client = |s: &'static [u8]| ClientHandshake::parse(&Bytes::from_static(s)).unwrap_err();
    vec![
        client(b""),
        client(b"{\"sys\":{\"type\":\"\xff\"}}"),
        client(b"{\"sys\":{\"type\":\"js\",}}"),
        client(b"[{\"sys\":{}}]"),
        client(b"{\"user\":{}}"),
        client(b"{\"sys\":{\"version\":[0,0,1]}}"),
        ServerHandshake::parse(&Bytes::from_static(b"{\"code\":-1}")).unwrap_err(),
    ]
}

fn encode_errors() -> Vec<EncodeError> {
    let codec = PomeloCodec::new(8, Oversize::Fail).unwrap();
    let mut out = BytesMut::new();
    let errors = vec![
        codec
            .encode(
                &Package::Kick(Kick::new("bye bye").to_json().into()),
                &mut out,
            )
            .unwrap_err(),
        MessageRoute::name("r".repeat(300)).unwrap_err(),
        Message::notify(MessageRoute::Name(Text::default()), Bytes::new())
            .encode(&mut out)
            .unwrap_err(),
    ];
    assert!(out.is_empty(), "a refused encode wrote bytes");
    errors
}

fn route_errors() -> Vec<RouteError> {
    ["echo", ".handler.say", "echo."]
        .into_iter()
        .map(|r| split_route(r).unwrap_err())
        .collect()
}

fn dict_errors() -> Vec<DictError> {
    let many: Vec<String> = (0..70_000).map(|i| format!("r{i}")).collect();
    let d = Dictionary::new(["a.b.c"], Vec::<String>::new()).unwrap();
    vec![
        Dictionary::numbered(many).unwrap_err(),
        d.resolve(&MessageRoute::Code(7)).unwrap_err(),
    ]
}

#[test]
fn error_messages() {
    let mut out = String::new();
    out += &lines(
        "PackageError",
        &package_errors(),
        &[
            "UnknownType",
            "TooLarge",
            "TooLarge",
            "TooLargeSkipped",
            "UnexpectedBody",
            "UnexpectedEof",
        ],
    );
    out += &lines(
        "MessageError",
        &message_errors(),
        &[
            "Truncated",
            "ReservedFlagBits",
            "UnknownType",
            "CompressedResponse",
            "IdTooLong",
            "IdOverflow",
            "IdNotMinimal",
            "ZeroId",
            "EmptyRoute",
            "RouteNotUtf8",
        ],
    );
    let bodies = body_errors();
    let faults: Vec<&JsonFault> = bodies.iter().map(|e| &e.fault).collect();
    let _ = lines(
        "JsonFault",
        &faults,
        &[
            "Empty",
            "NotUtf8",
            "Syntax",
            "NotAnObject",
            "MissingField",
            "WrongType",
            "OutOfRange",
        ],
    );
    for e in &bodies {
        writeln!(out, "BodyError ({}): {e}", variant(&e.fault)).unwrap();
    }
    out += &lines(
        "EncodeError",
        &encode_errors(),
        &["BodyTooLarge", "RouteTooLong", "EmptyRoute"],
    );
    out += &lines(
        "RouteError",
        &route_errors(),
        &["NoDot", "EmptyServer", "EmptyHandler"],
    );
    out += &lines(
        "DictError",
        &dict_errors(),
        &["TooManyRoutes", "UnknownCode"],
    );
    out += &lines(
        "ConfigError",
        &[PomeloCodec::new(0, Oversize::Fail).unwrap_err()],
        &["MaxBodyLength"],
    );
    insta::assert_snapshot!(out);
}

#[test]
fn fatal_and_recoverable() {
    let fatal: Vec<bool> = package_errors()
        .iter()
        .map(PackageError::is_fatal)
        .collect();
    assert_eq!(fatal, [true, true, true, false, false, true]);
    let offsets: Vec<u64> = package_errors().iter().map(PackageError::offset).collect();
    assert_eq!(offsets, [4, 0, 0, 0, 0, 0]);
    assert!(body_errors().iter().all(|e| e.response_code() == 500));
    let _: ConfigError = PomeloCodec::new(1 << 24, Oversize::Fail).unwrap_err();
}

#[test]
fn golden_hex() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pomelo/golden");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    names.sort();
    let mut out = String::new();
    for path in names {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy();
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{name}:").unwrap();
        for line in hex.chunks(32) {
            writeln!(out, "  {}", line.join(" ")).unwrap();
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn decoded_debug() {
    let id = MessageId::new(7).unwrap();
    let dict = std::sync::Arc::new(Dictionary::new(["chat.chatHandler.send"], ["onChat"]).unwrap());
    let messages = [
        Message::request(id, MessageRoute::from_static("chat.chatHandler.send"), "{}"),
        Message::request(id, MessageRoute::Code(1), "{}"),
        Message::notify(MessageRoute::from_static("聊天.h.m"), Bytes::new()),
        Message::response(id, "{\"code\":200}").with_gzip(true),
        Message::push(dict.compress("onChat"), &b"\x00\xff"[..]),
    ];
    let codec = PomeloCodec::default();
    let mut wire = BytesMut::new();
    for p in [
        ClientHandshake::new("js-tcp", "0.0.1").to_package(),
        HandshakeResponse::ok(Some(3)).with_dict(dict).to_package(),
        Package::HandshakeAck,
        Package::Heartbeat,
        Kick::new("bye").to_package(),
    ] {
        codec.encode(&p, &mut wire).unwrap();
    }
    for m in &messages {
        codec.encode_message(m, &mut wire).unwrap();
    }
    let mut decoder = PomeloCodec::default();
    let mut out = String::new();
    while let Some(p) = decoder.decode(&mut wire).unwrap() {
        writeln!(out, "{p:?}").unwrap();
        if let Package::Data(body) = p {
            writeln!(out, "  {:?}", Message::decode(body).unwrap()).unwrap();
        }
    }
    insta::assert_snapshot!(out);
}
