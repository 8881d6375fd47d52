//! Deterministic tests for behaviour of `codec/src/native/` that the other suites left unchecked,
//! found by mutation testing (`docs/MUTATION.md`). Each test pins exact bytes, values or text of the
//! public API; none relies on random cases.

use bytes::{Bytes, BytesMut};
use gatekit_codec::native::{
    encode_packet, frame_len, kind, kind_name, TextError, MAX_REASON_LEN, MAX_ROUTE_LEN,
};
use gatekit_codec::{
    Close, CloseCode, DecodeError, EncodeError, Field, FrameError, Handshake, MessageId,
    NativeCodec, Notify, Oversize, Packet, PacketError, Push, Request, Response, Route, Status,
    Text, Topic, Welcome,
};

fn encode(packet: &Packet) -> BytesMut {
    let mut wire = BytesMut::new();
    NativeCodec::default().encode(packet, &mut wire).unwrap();
    wire
}

fn decode_one(wire: &[u8]) -> Packet {
    let mut src = BytesMut::from(wire);
    let packet = NativeCodec::default().decode(&mut src).unwrap().unwrap();
    assert!(src.is_empty(), "{} bytes left over", src.len());
    packet
}

fn close(reason_len: usize) -> Packet {
    Packet::Close(Close {
        code: CloseCode::Kicked,
        reason: Text::from("r".repeat(reason_len)),
    })
}

// -------------------------------------------------------------------------------------------------
// Encoding limits and allocation
// -------------------------------------------------------------------------------------------------

#[test]
fn encoding_a_close_reason_over_255_bytes_is_refused_and_writes_nothing() {
    let mut wire = BytesMut::from(&b"kept"[..]);
    // Far below the frame limit: only the reason's own limit refuses it.
    let e = encode_packet(&close(MAX_REASON_LEN + 1), 1 << 20, &mut wire).unwrap_err();
    assert_eq!(
        e,
        EncodeError::TooLong {
            field: Field::Reason,
            len: 256,
            max: 255
        }
    );
    assert_eq!(e.to_string(), "reason is 256 bytes, over the limit of 255");
    assert_eq!(&wire[..], b"kept");

    let e = NativeCodec::default()
        .encode(&close(300), &mut wire)
        .unwrap_err();
    assert_eq!(e.to_string(), "reason is 300 bytes, over the limit of 255");
    assert_eq!(&wire[..], b"kept");
}

#[test]
fn a_close_reason_of_exactly_255_bytes_encodes_and_decodes() {
    let packet = close(MAX_REASON_LEN);
    let wire = encode(&packet);
    // Frame: kind + code + 255 reason bytes = 257 = varint 0x81 0x02.
    assert_eq!(frame_len(&packet), 257);
    assert_eq!(wire.len(), 2 + 257);
    assert_eq!(
        &wire[..4],
        &[0x81, 0x02, kind::CLOSE, CloseCode::Kicked.as_u8()]
    );
    assert!(wire[4..].iter().all(|&b| b == b'r'));
    assert_eq!(decode_one(&wire), packet);
}

#[test]
fn a_frame_of_exactly_the_maximum_length_encodes_and_one_byte_more_is_refused() {
    let codec = NativeCodec::new(16, Oversize::Fail).unwrap();
    assert_eq!(codec.max_frame_length(), 16);
    let request = |body_len: usize| {
        Packet::Request(Request::new(
            MessageId::new(1).unwrap(),
            Route::from_static("a/b"),
            vec![b'x'; body_len],
        ))
    };
    // kind 1 + id 4 + route length 1 + route 3 = 9, so a 7-byte body makes a 16-byte frame.
    let mut wire = BytesMut::new();
    codec.encode(&request(7), &mut wire).unwrap();
    assert_eq!(
        &wire[..],
        b"\x10\x03\x00\x00\x00\x01\x03a/bxxxxxxx",
        "16-byte frame"
    );
    let mut again = NativeCodec::new(16, Oversize::Fail).unwrap();
    assert_eq!(again.decode(&mut wire), Ok(Some(request(7))));

    let e = codec.encode(&request(8), &mut wire).unwrap_err();
    assert_eq!(e, EncodeError::FrameTooLarge { len: 17, max: 16 });
    assert_eq!(
        e.to_string(),
        "frame of 17 bytes exceeds the maximum of 16 bytes"
    );
    assert!(wire.is_empty());
}

#[test]
fn encoding_into_an_empty_buffer_reserves_about_one_frame() {
    let packet = Packet::Request(Request::new(
        MessageId::new(9).unwrap(),
        Route::from_static("chat/send"),
        vec![b'x'; 1000],
    ));
    let wire = encode(&packet);
    // 4 id + 1 route length + 9 route + 1000 body + 1 kind = 1015, varint 0xf7 0x07.
    assert_eq!(frame_len(&packet), 1015);
    assert_eq!(wire.len(), 2 + 1015);
    assert_eq!(&wire[..3], &[0xf7, 0x07, kind::REQUEST]);
    // The encoder reserves the frame plus at most 4 length bytes: no multiple of the frame.
    assert!(wire.capacity() >= wire.len());
    assert!(
        wire.capacity() < 2 * wire.len(),
        "{} bytes of capacity for a {}-byte frame",
        wire.capacity(),
        wire.len()
    );
}

// -------------------------------------------------------------------------------------------------
// Packet accessors
// -------------------------------------------------------------------------------------------------

#[test]
fn route_value_and_topic_value_are_the_packets_own_text() {
    let route = Route::from_static("chat/send");
    let topic = Topic::from_static("room/7");

    let request = Request::new(MessageId::new(7).unwrap(), route.clone(), &b"{}"[..]);
    let notify = Notify::new(Route::from_static("聊天/输入"), &b"x"[..]);
    let push = Push::new(topic.clone(), &b"hi"[..]);

    // Built by hand, then the same packets decoded from the wire.
    let decoded_request = match decode_one(&encode(&request.clone().into())) {
        Packet::Request(r) => r,
        other => panic!("{other:?}"),
    };
    let decoded_notify = match decode_one(&encode(&notify.clone().into())) {
        Packet::Notify(n) => n,
        other => panic!("{other:?}"),
    };
    let decoded_push = match decode_one(&encode(&push.clone().into())) {
        Packet::Push(p) => p,
        other => panic!("{other:?}"),
    };

    for r in [&request, &decoded_request] {
        let value = r.route_value();
        assert_eq!(value, route);
        assert_eq!(
            (value.as_str(), value.module(), value.func()),
            ("chat/send", "chat", "send")
        );
        assert_eq!(&value.as_bytes()[..], b"chat/send");
    }
    for n in [&notify, &decoded_notify] {
        let value = n.route_value();
        assert_eq!(
            (value.as_str(), value.module(), value.func()),
            ("聊天/输入", "聊天", "输入")
        );
    }
    for p in [&push, &decoded_push] {
        let value = p.topic_value();
        assert_eq!(value, topic);
        assert_eq!(value.as_str(), "room/7");
        assert_eq!(&value.as_bytes()[..], b"room/7");
        assert_eq!(p.body(), b"hi");
    }
}

#[test]
fn bodies_come_out_whole_from_built_and_decoded_packets() {
    let id = MessageId::new(3).unwrap();
    let request = Request::new(id, Route::from_static("chat/send"), &b"{\"t\":1}"[..]);
    let notify = Notify::new(Route::from_static("chat/typing"), &b"on"[..]);
    let push = Push::new(Topic::from_static("room/7"), &b"\x00\x01\xff"[..]);

    let mut wire = BytesMut::new();
    let codec = NativeCodec::default();
    for p in [
        Packet::from(request.clone()),
        notify.clone().into(),
        push.clone().into(),
    ] {
        codec.encode(&p, &mut wire).unwrap();
    }
    let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    let mut decoder = NativeCodec::default();
    let mut next = || decoder.decode(&mut wire).unwrap().unwrap();
    let (Packet::Request(dr), Packet::Notify(dn), Packet::Push(dp)) = (next(), next(), next())
    else {
        panic!("wrong kinds");
    };

    for (r, decoded) in [(&request, false), (&dr, true)] {
        assert_eq!(r.body(), b"{\"t\":1}");
        let body = r.body_bytes();
        assert_eq!(&body[..], b"{\"t\":1}");
        // Decoded bodies are slices of the wire buffer, not copies.
        assert_eq!(range.contains(&(body.as_ptr() as usize)), decoded);
        assert_eq!(&r.clone().into_body()[..], b"{\"t\":1}");
        assert_eq!(r.route(), "chat/send");
    }
    for n in [&notify, &dn] {
        assert_eq!(&n.body_bytes()[..], b"on");
        assert_eq!(&n.clone().into_body()[..], b"on");
        assert_eq!(n.route(), "chat/typing");
    }
    for (p, decoded) in [(&push, false), (&dp, true)] {
        let body = p.body_bytes();
        assert_eq!(&body[..], b"\x00\x01\xff");
        assert_eq!(range.contains(&(body.as_ptr() as usize)), decoded);
        assert_eq!(&p.clone().into_body()[..], b"\x00\x01\xff");
        assert_eq!(p.topic(), "room/7");
    }
}

#[test]
fn pushes_are_equal_only_with_the_same_topic_and_the_same_body() {
    let push =
        |topic: &'static str, body: &'static [u8]| Push::new(Topic::from_static(topic), body);

    assert_eq!(push("room/7", b"hi"), push("room/7", b"hi"));
    // A decoded push (one buffer) equals the same push built from parts.
    let decoded = match decode_one(b"\x0a\x06\x06room/7hi") {
        Packet::Push(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(decoded, push("room/7", b"hi"));

    assert_ne!(push("room/7", b"hi"), push("room/7", b"ho"));
    assert_ne!(push("room/7", b"hi"), push("room/8", b"hi"));
    assert_ne!(push("room/7", b"hi"), push("room/8", b"ho"));
    assert_ne!(push("room/7", b"hi"), push("room/7", b""));
}

#[test]
fn every_packet_kind_has_its_protocol_doc_name() {
    let id = MessageId::new(1).unwrap();
    let packets = [
        Packet::Handshake(Handshake {
            version: 1,
            heartbeat_secs: 30,
            token: Bytes::new(),
        }),
        Packet::Welcome(Welcome {
            version: 1,
            heartbeat_secs: 30,
            max_frame_length: 65_535,
            session_id: Text::from_static("s-1"),
        }),
        Packet::Request(Request::new(id, Route::from_static("a/b"), "")),
        Packet::Response(Response {
            id,
            status: Status::Ok,
            body: Bytes::new(),
        }),
        Packet::Notify(Notify::new(Route::from_static("a/b"), "")),
        Packet::Push(Push::new(Topic::from_static("t"), "")),
        Packet::Ping,
        Packet::Pong,
        Packet::Close(Close {
            code: CloseCode::Normal,
            reason: Text::default(),
        }),
    ];
    let got: Vec<(u8, &str)> = packets.iter().map(|p| (p.kind(), p.kind_name())).collect();
    assert_eq!(
        got,
        [
            (0x01, "HANDSHAKE"),
            (0x02, "WELCOME"),
            (0x03, "REQUEST"),
            (0x04, "RESPONSE"),
            (0x05, "NOTIFY"),
            (0x06, "PUSH"),
            (0x07, "PING"),
            (0x08, "PONG"),
            (0x09, "CLOSE"),
        ]
    );
    for (byte, name) in got {
        assert_eq!(kind_name(byte), Some(name));
    }
    for unknown in [0x00, 0x0a, 0x7f, 0xff] {
        assert_eq!(kind_name(unknown), None, "0x{unknown:02x}");
    }
}

// -------------------------------------------------------------------------------------------------
// Text, Route, Topic
// -------------------------------------------------------------------------------------------------

#[test]
fn routes_and_topics_of_255_bytes_are_accepted_and_256_refused() {
    let route = format!("m/{}", "f".repeat(MAX_ROUTE_LEN - 2));
    let r = Route::try_from(route.as_str()).unwrap();
    assert_eq!(
        (r.as_str().len(), r.module(), r.func().len()),
        (255, "m", 253)
    );
    let e = Route::try_from(format!("{route}f").as_str()).unwrap_err();
    assert_eq!(
        e,
        TextError::TooLong {
            field: Field::Route,
            len: 256,
            max: 255
        }
    );
    assert_eq!(e.to_string(), "route is 256 bytes, over the limit of 255");

    let topic = "t".repeat(MAX_ROUTE_LEN);
    let t = Topic::try_from(topic.as_str()).unwrap();
    assert_eq!(t.as_str().len(), 255);
    let e = Topic::new(format!("{topic}t")).unwrap_err();
    assert_eq!(e.to_string(), "topic is 256 bytes, over the limit of 255");

    // On the wire, a 255-byte route has the length byte 0xff.
    let request = Packet::Request(Request::new(MessageId::new(1).unwrap(), r, ""));
    let wire = encode(&request);
    // kind 1 + id 4 + length 1 + route 255 = 261, varint 0x85 0x02.
    assert_eq!(&wire[..8], &[0x85, 0x02, kind::REQUEST, 0, 0, 0, 1, 0xff]);
    assert_eq!(decode_one(&wire), request);
}

#[test]
fn text_conversions_keep_the_text() {
    let from_bytes = Text::try_from(Bytes::from_static("s-1/é".as_bytes())).unwrap();
    assert_eq!(from_bytes.as_str(), "s-1/é");
    assert_eq!(from_bytes.len(), 6);

    let e = Text::try_from(Bytes::from_static(b"ab\xffc")).unwrap_err();
    assert_eq!(e.valid_up_to(), 2);

    assert_eq!(Text::from("s-1").as_str(), "s-1");
    assert_eq!(Text::from(String::from("s-2")).as_str(), "s-2");
    assert_eq!(&Text::from("s-1").as_bytes()[..], b"s-1");
}

#[test]
fn text_compares_with_str_by_content() {
    let text = Text::from_static("s-1");
    assert!(text == *"s-1");
    assert!(text != *"s-2");
    assert!(text != *"");
    assert!(Text::default() == *"");
    assert!(Text::default() != *"s-1");
}

#[test]
fn text_route_and_topic_display_and_debug_as_their_string() {
    let text = Text::from_static("bye \"now\"");
    assert_eq!(text.to_string(), "bye \"now\"");
    assert_eq!(format!("{text:?}"), r#""bye \"now\"""#);

    let route = Route::from_static("chat/send");
    assert_eq!(route.to_string(), "chat/send");
    assert_eq!(format!("{route:?}"), r#""chat/send""#);

    let topic = Topic::from_static("room/\"7\"");
    assert_eq!(topic.as_str(), "room/\"7\"");
    assert_eq!(topic.to_string(), "room/\"7\"");
    assert_eq!(format!("{topic:?}"), r#""room/\"7\"""#);
    assert_eq!(Topic::try_from("聊天").unwrap().as_str(), "聊天");
}

// -------------------------------------------------------------------------------------------------
// Codec state
// -------------------------------------------------------------------------------------------------

#[test]
fn codec_is_idle_only_between_frames_and_failed_only_after_a_fatal_error() {
    let mut codec = NativeCodec::default();
    assert!(codec.is_idle() && !codec.is_failed(), "fresh codec");

    // A request frame announced as 5 bytes, 2 of which have arrived.
    let mut src = BytesMut::from(&b"\x05\x03\x00"[..]);
    assert_eq!(codec.decode(&mut src), Ok(None));
    assert!(!codec.is_idle() && !codec.is_failed(), "inside a frame");
    src.extend_from_slice(b"\x00\x00\x01\x01\x07");
    // The rest of the frame (a request with an id and no route), then a ping.
    let e = codec.decode(&mut src).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Packet(PacketError::Truncated {
            field: Field::Route,
            offset: 5,
            needed: 1,
            available: 0
        })
    );
    assert!(!e.is_fatal());
    assert!(codec.is_idle() && !codec.is_failed(), "after a bad packet");
    assert_eq!(codec.decode(&mut src), Ok(Some(Packet::Ping)));
    assert!(codec.is_idle() && !codec.is_failed(), "after a packet");

    // Skipping an oversized frame: not idle until its last byte has gone by.
    let mut skipping = NativeCodec::new(4, Oversize::Skip).unwrap();
    let mut src = BytesMut::from(&b"\x06abc"[..]);
    assert_eq!(
        skipping.decode(&mut src),
        Err(DecodeError::Frame(FrameError::TooLargeSkipped {
            len: 6,
            max: 4
        }))
    );
    assert!(!skipping.is_idle() && !skipping.is_failed(), "skipping");
    src.extend_from_slice(b"def\x01\x08");
    assert_eq!(skipping.decode(&mut src), Ok(Some(Packet::Pong)));
    assert!(
        skipping.is_idle() && !skipping.is_failed(),
        "after skipping"
    );

    // A fatal error ends the codec.
    let mut failing = NativeCodec::new(4, Oversize::Fail).unwrap();
    let e = failing
        .decode(&mut BytesMut::from(&b"\x06"[..]))
        .unwrap_err();
    assert_eq!(
        e,
        DecodeError::Frame(FrameError::TooLarge { len: 6, max: 4 })
    );
    assert!(failing.is_failed() && !failing.is_idle(), "failed");
    assert_eq!(
        failing.decode(&mut BytesMut::from(&b"\x01\x07"[..])),
        Err(e)
    );
}

#[test]
fn encode_packet_caps_any_limit_at_16_mib() {
    // A limit over the cap used to be taken as given: a frame over 2^28 bytes then got a 5-byte
    // prefix that no decoder reads (and a debug build panicked). Now the cap applies: the frame
    // just over 16 MiB is refused, naming the cap, and the one at the cap is written and read back.
    use gatekit_codec::MAX_FRAME_LENGTH_CAP;
    let push =
        |body_len: usize| Packet::Push(Push::new(Topic::from_static("t"), vec![b'x'; body_len]));
    // kind 1 + topic length 1 + topic 1 = 3 bytes besides the body.
    let over = push(MAX_FRAME_LENGTH_CAP - 2);
    assert_eq!(frame_len(&over), MAX_FRAME_LENGTH_CAP + 1);
    for limit in [MAX_FRAME_LENGTH_CAP, 1 << 28, usize::MAX] {
        let mut wire = BytesMut::new();
        assert_eq!(
            encode_packet(&over, limit, &mut wire),
            Err(EncodeError::FrameTooLarge {
                len: MAX_FRAME_LENGTH_CAP + 1,
                max: MAX_FRAME_LENGTH_CAP,
            }),
            "limit {limit}"
        );
        assert!(wire.is_empty());
    }
    let at = push(MAX_FRAME_LENGTH_CAP - 3);
    let mut wire = BytesMut::new();
    encode_packet(&at, usize::MAX, &mut wire).unwrap();
    assert_eq!(wire.len(), 4 + MAX_FRAME_LENGTH_CAP);
    let mut codec = NativeCodec::new(MAX_FRAME_LENGTH_CAP, Oversize::Fail).unwrap();
    assert_eq!(codec.decode(&mut wire), Ok(Some(at)));
}
