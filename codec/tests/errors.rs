//! Snapshots of the text users see: the `Display` of every error variant, each produced by really
//! decoding, encoding or building bad input, and the `Debug` of a decoded packet of each kind.
//!
//! Update with `INSTA_UPDATE=always cargo test -p gatekit-codec --test errors` and review the
//! diff of `tests/snapshots/`.

use bytes::{Bytes, BytesMut};
use gatekit_codec::{
    Close, CloseCode, ConfigError, DecodeError, EncodeError, Endian, FrameError, Framing,
    Handshake, LengthField, MessageId, NativeCodec, Notify, Oversize, Packet, PacketError, Push,
    Request, Response, Route, Status, Text, Topic, Welcome,
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

/// The error `decode` (or, if it wants more bytes, `decode_eof`) returns on `wire`.
fn decode_err(mut codec: NativeCodec, wire: &[u8]) -> DecodeError {
    let mut src = BytesMut::from(wire);
    match codec.decode(&mut src) {
        Ok(Some(p)) => panic!("decoded {p:?} from {wire:02x?}"),
        Ok(None) => {}
        Err(e) => return e,
    }
    codec
        .decode_eof(&mut src)
        .expect_err(&format!("no error from {wire:02x?}"))
}

fn native(wire: &[u8]) -> DecodeError {
    decode_err(NativeCodec::default(), wire)
}

fn frame_err(e: DecodeError) -> FrameError {
    match e {
        DecodeError::Frame(e) => e,
        other => panic!("expected a frame error, got {other:?}"),
    }
}

fn packet_err(wire: &[u8]) -> PacketError {
    match native(wire) {
        DecodeError::Packet(e) => e,
        other => panic!("expected a packet error from {wire:02x?}, got {other:?}"),
    }
}

/// A frame: a one-byte varint length, then `frame`.
fn framed(frame: &[u8]) -> Vec<u8> {
    assert!(frame.len() < 0x80);
    let mut v = vec![frame.len() as u8];
    v.extend_from_slice(frame);
    v
}

fn frame_errors() -> Vec<FrameError> {
    let u8_minus_2 = Framing::builder()
        .length_field(LengthField::U8)
        .length_adjustment(-2)
        .build()
        .unwrap();
    vec![
        frame_err(decode_err(
            NativeCodec::new(16, Oversize::Fail).unwrap(),
            b"\x11",
        )),
        frame_err(decode_err(
            NativeCodec::new(16, Oversize::Skip).unwrap(),
            b"\x11",
        )),
        frame_err(native(b"\xff\xff\xff")),
        // A skipping decoder reads the whole varint (it needs the exact length to skip).
        frame_err(decode_err(
            NativeCodec::new(16, Oversize::Skip).unwrap(),
            b"\x80\x80\x80\x80\x01",
        )),
        frame_err(native(b"\x81\x00")),
        u8_minus_2
            .decoder()
            .decode(&mut BytesMut::from(&b"\x01"[..]))
            .unwrap_err(),
        // A request frame of 5 bytes of which 2 arrived.
        frame_err(native(b"\x05\x03\x00")),
    ]
}

fn packet_errors() -> Vec<PacketError> {
    let mut long_session = b"\x02\x01\x00\x1e\x00\x00\xff\xff".to_vec();
    long_session.extend_from_slice(&[b's'; 65]);
    vec![
        packet_err(b"\x00"),
        packet_err(&framed(b"\xee")),
        // A request whose message id has 2 of its 4 bytes.
        packet_err(&framed(b"\x03\x00\x07")),
        packet_err(&framed(&long_session)),
        // A notify with a zero-length route.
        packet_err(&framed(b"\x05\x00{}")),
        // A push whose topic is not UTF-8.
        packet_err(&framed(b"\x06\x02a\xff")),
        packet_err(&framed(b"\x05\x04chat{}")),
        packet_err(&framed(b"\x03\x00\x00\x00\x00\x09chat/send")),
        packet_err(&framed(b"\x04\x00\x00\x00\x07\x09")),
        packet_err(&framed(b"\x09\x63bye")),
        packet_err(&framed(b"\x07\x00\x00")),
    ]
}

fn decode_errors() -> Vec<DecodeError> {
    vec![native(b"\x81\x00"), native(b"\x00")]
}

fn encode_errors() -> Vec<EncodeError> {
    let small = NativeCodec::new(16, Oversize::Fail).unwrap();
    let mut out = BytesMut::new();
    let big_request = Packet::Request(Request::new(
        MessageId::new(1).unwrap(),
        Route::from_static("chat/send"),
        vec![b'x'; 20],
    ));
    let long_token = Packet::Handshake(Handshake {
        version: 1,
        heartbeat_secs: 30,
        token: vec![0; 4097].into(),
    });
    let u8_field = Framing::builder()
        .length_field(LengthField::U8)
        .max_frame_length(1000)
        .build()
        .unwrap();
    let with_tag = Framing::builder()
        .length_field_offset(2)
        .length_field(LengthField::U16(Endian::Little))
        .build()
        .unwrap();
    let plus_3 = Framing::builder()
        .length_field(LengthField::U16(Endian::Big))
        .length_adjustment(3)
        .build()
        .unwrap();
    let errors = vec![
        small.encode(&big_request, &mut out).unwrap_err(),
        u8_field.encode(&[], &[0; 256], &mut out).unwrap_err(),
        NativeCodec::default()
            .encode(&long_token, &mut out)
            .unwrap_err(),
        NativeCodec::default()
            .encode(
                &Packet::Welcome(Welcome {
                    version: 1,
                    heartbeat_secs: 30,
                    max_frame_length: 65_535,
                    session_id: Text::from(""),
                }),
                &mut out,
            )
            .unwrap_err(),
        with_tag.encode(b"\x07", b"hello", &mut out).unwrap_err(),
        plus_3.encode(&[], b"x", &mut out).unwrap_err(),
    ];
    assert!(out.is_empty(), "a refused encode wrote bytes");
    errors
}

fn config_errors() -> Vec<ConfigError> {
    vec![
        NativeCodec::new(0, Oversize::Fail).unwrap_err(),
        Framing::builder()
            .length_field(LengthField::U16(Endian::Big))
            .length_field_offset(1)
            .num_skip(4)
            .build()
            .unwrap_err(),
        Framing::builder()
            .length_field_offset(65)
            .build()
            .unwrap_err(),
    ]
}

fn text_errors() -> Vec<gatekit_codec::native::TextError> {
    vec![
        Route::try_from("").unwrap_err(),
        Topic::try_from("t".repeat(256).as_str()).unwrap_err(),
        Route::new(&b"chat/\xffsend"[..]).unwrap_err(),
        Route::try_from("chat/send/now").unwrap_err(),
    ]
}

#[test]
fn error_messages() {
    let mut out = String::new();
    out += &lines(
        "FrameError",
        &frame_errors(),
        &[
            "TooLarge",
            "TooLargeSkipped",
            "TooLargePrefix",
            "VarintTooLong",
            "VarintNotMinimal",
            "NegativeLength",
            "UnexpectedEof",
        ],
    );
    out += &lines(
        "PacketError",
        &packet_errors(),
        &[
            "EmptyFrame",
            "UnknownKind",
            "Truncated",
            "TooLong",
            "EmptyField",
            "InvalidUtf8",
            "MalformedRoute",
            "ZeroMessageId",
            "UnknownStatus",
            "UnknownCloseCode",
            "TrailingBytes",
        ],
    );
    out += &lines("DecodeError", &decode_errors(), &["Frame", "Packet"]);
    out += &lines(
        "EncodeError",
        &encode_errors(),
        &[
            "FrameTooLarge",
            "LengthFieldOverflow",
            "TooLong",
            "EmptyField",
            "HeaderMismatch",
            "NegativeLength",
        ],
    );
    out += &lines(
        "ConfigError",
        &config_errors(),
        &["MaxFrameLength", "NumSkip", "Offset"],
    );
    out += &lines(
        "TextError",
        &text_errors(),
        &["Empty", "TooLong", "Utf8", "NotRoute"],
    );
    insta::assert_snapshot!(out);
}

#[test]
fn fatal_and_recoverable() {
    let fatal: Vec<bool> = frame_errors().iter().map(FrameError::is_fatal).collect();
    assert_eq!(fatal, [true, false, true, true, true, true, true]);
    assert!(decode_errors()[0].is_fatal());
    assert!(!decode_errors()[1].is_fatal());
}

#[test]
fn decoded_packet_debug() {
    let id = MessageId::new(7).unwrap();
    let packets = [
        Packet::Handshake(Handshake {
            version: 1,
            heartbeat_secs: 30,
            token: Bytes::from_static(b"tok\x00\xff"),
        }),
        Packet::Welcome(Welcome {
            version: 1,
            heartbeat_secs: 30,
            max_frame_length: 65_535,
            session_id: Text::from_static("s-1"),
        }),
        Packet::Request(Request::new(
            id,
            Route::from_static("chat/send"),
            &b"{\"text\":\"hi\"}"[..],
        )),
        Packet::Response(Response {
            id,
            status: Status::NotFound,
            body: Bytes::from_static(b"no such module"),
        }),
        Packet::Notify(Notify::new(Route::from_static("聊天/输入"), "")),
        Packet::Push(Push::new(Topic::from_static("room/7"), &b"\x01\x02"[..])),
        Packet::Ping,
        Packet::Pong,
        Packet::Close(Close {
            code: CloseCode::Kicked,
            reason: Text::from_static("bye \"now\""),
        }),
    ];
    let mut codec = NativeCodec::default();
    let mut wire = BytesMut::new();
    for p in &packets {
        codec.encode(p, &mut wire).unwrap();
    }
    let mut out = String::new();
    for expected in &packets {
        let decoded = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(&decoded, expected);
        writeln!(out, "{decoded:?}").unwrap();
    }
    assert!(wire.is_empty());
    insta::assert_snapshot!(out);
}

// -------------------------------------------------------------------------------------------------
// Regressions: problems these tests found, now fixed.
// -------------------------------------------------------------------------------------------------

/// Was a bug: encoding a `Welcome` with an empty session id is refused (rightly) with
/// `EncodeError::TooLong { len: 0, max: 64 }`, whose text says "session id is 0 bytes, over the
/// limit of 64": the message claims the opposite of the problem. (`EncodeError` has no variant for
/// an empty field; the decoder reports the same input as `PacketError::EmptyField`.)
#[test]
fn bug_empty_session_id_is_reported_as_too_long() {
    let welcome = Packet::Welcome(Welcome {
        version: 1,
        heartbeat_secs: 30,
        max_frame_length: 65_535,
        session_id: Text::from(""),
    });
    let e = NativeCodec::default()
        .encode(&welcome, &mut BytesMut::new())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        !matches!(e, EncodeError::TooLong { .. }) && !text.contains("over the limit"),
        "{e:?}: {text}"
    );
}

/// Was a bug: `UnexpectedEof` inside a header reports `needed` = the header's minimum, which
/// can be no more than what is buffered: "1 bytes buffered, frame needs 1" for a stream ending
/// after the first byte of a 2-byte varint. (Documented on the field, but the message contradicts
/// itself; `buffered + 1` would at least be true.)
#[test]
fn bug_eof_inside_header_needs_more_than_buffered() {
    let mut codec = NativeCodec::default();
    let mut src = BytesMut::from(&b"\x8f"[..]);
    assert_eq!(codec.decode(&mut src), Ok(None));
    match codec.decode_eof(&mut src) {
        Err(DecodeError::Frame(FrameError::UnexpectedEof { buffered, needed })) => {
            assert!(needed > buffered, "buffered {buffered}, needed {needed}")
        }
        other => panic!("{other:?}"),
    }
}

/// Was a bug: `FrameError::UnexpectedEof` is `is_fatal()`, and `FrameError`'s
/// docs say every fatal variant is returned again by every later call, but after `decode_eof`
/// returns it the decoder is not failed and `decode` returns `Ok(None)`.
#[test]
fn bug_unexpected_eof_is_fatal_but_not_sticky() {
    let mut codec = NativeCodec::default();
    let mut src = BytesMut::from(&b"\x05\x03\x00"[..]);
    let e = codec.decode_eof(&mut src).unwrap_err();
    assert!(e.is_fatal());
    assert!(
        codec.is_failed(),
        "fatal {e:?} but the decoder is not failed"
    );
    assert_eq!(codec.decode(&mut src), Err(e));
}
