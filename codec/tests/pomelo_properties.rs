//! Property tests for the pomelo profile: round trips of packages and messages, a stream split
//! anywhere, arbitrary bytes (no panic, no loop, the same results in any chunking, bounded
//! buffering), oversize handling, and the JSON bodies and dictionary.
//!
//! The stream checks are the fuzz targets' own (`fuzz/src/pomelo.rs`, compiled in here).
//! Reproduce a failure with `PROPTEST_RNG_SEED=<seed>`; raise the case count with
//! `PROPTEST_CASES=<n>`.

use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    dict_version, ClientHandshake, Dictionary, HandshakeResponse, Kick, Message, MessageId,
    MessageKind, MessageRoute, Package, PackageError, PackageType, PomeloCodec, ServerHandshake,
    DEFAULT_MAX_BODY_LENGTH, HEADER_LEN, MAX_ROUTE_NAME_LEN,
};
use gatekit_codec::{Oversize, Text};
use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::Arc;

/// The fuzz targets' checks, shared so that `cargo test` runs them too.
#[allow(dead_code)]
#[path = "../../fuzz/src/pomelo.rs"]
mod fuzz_pomelo;

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

// -------------------------------------------------------------------------------------------------
// Strategies
// -------------------------------------------------------------------------------------------------

fn any_char() -> BoxedStrategy<char> {
    prop_oneof![
        3 => prop::char::range('a', 'z'),
        1 => Just('.'),
        1 => prop::char::range('\u{80}', '\u{7ff}'),
        2 => any::<char>(),
    ]
    .boxed()
}

/// 1 to `max` bytes of UTF-8, biased short.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![vec(any_char(), 1..8), vec(any_char(), 1..=max)].prop_map(move |cs| {
        let mut s = String::new();
        for c in cs {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        if s.is_empty() {
            s.push('r');
        }
        s
    })
}

fn body() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..32),
        1 => vec(any::<u8>(), 0..3000),
    ]
    .prop_map(Bytes::from)
}

fn message_id() -> impl Strategy<Value = MessageId> {
    prop_oneof![
        prop::sample::select(vec![
            1u32,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            u32::MAX,
        ]),
        1..=u32::MAX,
    ]
    .prop_map(|v| MessageId::new(v).unwrap())
}

fn route() -> impl Strategy<Value = MessageRoute> {
    prop_oneof![
        any::<u16>().prop_map(MessageRoute::Code),
        text(MAX_ROUTE_NAME_LEN).prop_map(|s| MessageRoute::name(s).unwrap()),
        Just(MessageRoute::name("r".repeat(255)).unwrap()),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let kind = prop_oneof![
        (message_id(), route()).prop_map(|(id, route)| MessageKind::Request { id, route }),
        route().prop_map(|route| MessageKind::Notify { route }),
        message_id().prop_map(|id| MessageKind::Response { id }),
        route().prop_map(|route| MessageKind::Push { route }),
    ];
    (kind, any::<bool>(), body()).prop_map(|(kind, gzip, body)| Message { kind, gzip, body })
}

fn package() -> impl Strategy<Value = Package> {
    prop_oneof![
        body().prop_map(Package::Handshake),
        Just(Package::HandshakeAck),
        Just(Package::Heartbeat),
        body().prop_map(Package::Data),
        message().prop_map(|m| Package::Data(m.to_bytes().unwrap())),
        body().prop_map(Package::Kick),
    ]
}

/// Bytes that look like a package stream often enough to reach deep states: valid packages,
/// headers with odd lengths and types, and noise.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => package().prop_map(|p| {
            let mut b = BytesMut::new();
            PomeloCodec::default().encode(&p, &mut b).unwrap();
            b.to_vec()
        }),
        1 => (0u8..8, any::<[u8; 3]>()).prop_map(|(t, l)| vec![t, l[0], l[1], l[2]]),
        1 => (1u8..=5, 0u32..200).prop_map(|(t, l)| {
            let [_, a, b, c] = l.to_be_bytes();
            vec![t, a, b, c]
        }),
        1 => vec(any::<u8>(), 0..40),
    ];
    vec(piece, 0..8).prop_map(|v| v.concat())
}

fn encode_all(packages: &[Package]) -> Vec<u8> {
    let codec = PomeloCodec::default();
    let mut wire = BytesMut::new();
    for p in packages {
        codec.encode(p, &mut wire).unwrap();
    }
    wire.to_vec()
}

// -------------------------------------------------------------------------------------------------
// Properties
// -------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn message_round_trip(m in message()) {
        let bytes = m.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), m.encoded_len());
        let decoded = Message::decode(bytes.clone()).unwrap();
        prop_assert_eq!(&decoded, &m);
        prop_assert_eq!(decoded.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn package_and_message_round_trip(p in package(), m in message()) {
        fuzz_pomelo::pomelo_roundtrip(&p, &m);
    }

    #[test]
    fn stream_split_anywhere_decodes_the_same(
        packages in vec(package(), 0..6),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let wire = encode_all(&packages);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        at.sort_unstable();
        let mut codec = PomeloCodec::default();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([wire.len()]) {
            src.extend_from_slice(&wire[from..to]);
            from = to;
            while let Some(p) = codec.decode(&mut src).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(codec.decode_eof(&mut src), Ok(None));
        prop_assert!(codec.is_idle());
        prop_assert_eq!(codec.stream_offset(), wire.len() as u64);
        prop_assert_eq!(got, packages);
    }

    #[test]
    fn arbitrary_streams_decode_the_same_in_any_chunking(data in stream_bytes()) {
        fuzz_pomelo::pomelo_decode(&data);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..300)) {
        fuzz_pomelo::pomelo_decode(&data);
        let b = Bytes::from(data);
        let _ = ClientHandshake::parse(&b);
        let _ = ServerHandshake::parse(&b);
        let _ = Kick::parse(&b);
    }

    /// A body over the maximum is refused from the fewest length bytes that prove it: the error
    /// comes before the body, whatever the chunking, and nothing of the body is buffered.
    #[test]
    fn oversize_is_refused_before_buffering(
        t in 1u8..=5,
        max in 1usize..=70_000,
        extra in 1u32..100_000,
        chunk in 1usize..6,
    ) {
        let len = (max as u32).saturating_add(extra).min(0xff_ffff);
        prop_assume!(len as usize > max);
        let [_, a, b, c] = len.to_be_bytes();
        let header = [t, a, b, c];
        let mut codec = PomeloCodec::new(max, Oversize::Fail).unwrap();
        let mut src = BytesMut::new();
        let mut err = None;
        for piece in header.chunks(chunk) {
            src.extend_from_slice(piece);
            match codec.decode(&mut src) {
                Ok(None) => {}
                Ok(Some(p)) => prop_assert!(false, "decoded {:?}", p),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let Some(PackageError::TooLarge { package, len: proven, length_bytes, max: m, offset }) = err
        else {
            return Err(TestCaseError::fail(format!("{err:?}")));
        };
        prop_assert_eq!(package.as_u8(), t);
        prop_assert_eq!((m, offset), (max, 0));
        prop_assert!(proven as usize > max && proven <= len);
        prop_assert!(src.len() <= HEADER_LEN, "{} bytes buffered", src.len());
        // The fewest bytes: one fewer would not prove it.
        let fewer = gatekit_codec::pomelo::parsers::length_lower_bound(&header[1..length_bytes as usize]);
        prop_assert!(fewer as usize <= max);
        prop_assert!(codec.is_failed());
    }

    /// With `Oversize::Skip`, oversized packages and control packages with bodies are skipped
    /// and the others come out as if they were not there.
    #[test]
    fn skipped_packages_leave_the_others(
        packages in vec(package(), 0..6),
        max in 1usize..200,
        cuts in 1usize..50,
    ) {
        let mut wire = encode_all(&packages);
        // A heartbeat announcing a body, at the end.
        wire.extend_from_slice(b"\x03\x00\x00\x02hi");
        let kept: Vec<&Package> = packages.iter().filter(|p| p.body().len() <= max).collect();
        let out = fuzz_pomelo::pomelo_decode_all(&wire, cuts, Oversize::Skip, max);
        let ok: Vec<&Package> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        let n_kept = kept.len();
        prop_assert_eq!(ok, kept);
        let skipped = out.iter().filter(|r| r.is_err()).count();
        prop_assert_eq!(skipped, packages.len() - n_kept + 1);
        prop_assert!(out.iter().all(|r| r.as_ref().map_or_else(|e| !e.is_fatal(), |_| true)));
    }

    #[test]
    fn client_handshake_round_trip(
        client_type in proptest::option::of(text(20)),
        version in proptest::option::of(text(10)),
        dict_version in proptest::option::of(text(30)),
        extra in proptest::option::of((text(10), any::<i64>())),
        user in proptest::option::of(vec((text(8), text(8)), 0..4)),
    ) {
        let mut h = ClientHandshake::new("", "");
        h.client_type = client_type;
        h.version = version;
        h.dict_version = dict_version;
        if let Some((k, v)) = extra {
            prop_assume!(!["type", "version", "rsa", "dictVersion", "protoVersion"].contains(&k.as_str()));
            h.sys_extra.insert(k, v.into());
        }
        h.user = user.map(|pairs| {
            let map: serde_json::Map<String, serde_json::Value> =
                pairs.into_iter().map(|(k, v)| (k, v.into())).collect();
            Bytes::from(serde_json::to_vec(&map).unwrap())
        });
        let json = Bytes::from(h.to_json());
        prop_assert_eq!(ClientHandshake::parse(&json).unwrap(), h);
    }

    #[test]
    fn kick_and_response_round_trip(reason in text(100), heartbeat in proptest::option::of(any::<u32>())) {
        let k = Kick::new(reason);
        prop_assert_eq!(Kick::parse(&Bytes::from(k.to_json())).unwrap(), k.clone());
        // Kick JSON is serde_json's too (JSON.stringify and serde_json agree on strings).
        prop_assert_eq!(k.to_json(), serde_json::json!({"reason": k.reason}).to_string());
        let r = HandshakeResponse::ok(heartbeat);
        let parsed = ServerHandshake::parse(&Bytes::from(r.to_json())).unwrap();
        prop_assert_eq!((parsed.code, parsed.heartbeat_secs), (200, heartbeat));
    }

    #[test]
    fn dictionary_codes_and_version(
        handlers in vec(text(30), 0..20),
        user in vec(text(30), 0..10),
    ) {
        let d = Arc::new(Dictionary::new(handlers.clone(), user.clone()).unwrap());
        prop_assert_eq!(d.len(), handlers.len() + user.len());
        for (code, route) in d.iter() {
            prop_assert_eq!(d.route(code), Some(route));
            // A route given twice maps to its last code; both codes resolve to it.
            prop_assert!(d.code(route).unwrap() >= code);
            let code_route = MessageRoute::Code(code);
            prop_assert_eq!(d.resolve(&code_route), Ok(route));
        }
        prop_assert_eq!(d.version(), dict_version(d.json()));
        let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(d.json()).unwrap();
        for (route, code) in &parsed {
            prop_assert_eq!(d.code(route), code.as_u64().map(|c| c as u16));
        }
        // The handshake carrying it gives it back when its codes have no gaps.
        let r = HandshakeResponse::ok(Some(3)).with_dict(d.clone());
        let back = ServerHandshake::parse(&Bytes::from(r.to_json())).unwrap();
        if parsed.len() == d.len() {
            prop_assert_eq!(back.dictionary(), Some((*d).clone()));
        }
    }
}

#[test]
fn encoder_refuses_over_the_maximum_and_writes_nothing() {
    let codec = PomeloCodec::default();
    let mut out = BytesMut::new();
    let big = Package::Data(vec![0; DEFAULT_MAX_BODY_LENGTH + 1].into());
    assert!(codec.encode(&big, &mut out).is_err());
    let m = Message::push(
        MessageRoute::Name(Text::from("r".repeat(256))),
        Bytes::new(),
    );
    assert!(codec.encode_message(&m, &mut out).is_err());
    let at_max = Message::response(
        MessageId::new(1).unwrap(),
        vec![0; DEFAULT_MAX_BODY_LENGTH - 2],
    );
    codec.encode_message(&at_max, &mut out).unwrap();
    assert_eq!(out.len(), HEADER_LEN + DEFAULT_MAX_BODY_LENGTH);
    assert_eq!(&out[..4], [PackageType::Data.as_u8(), 0, 0xff, 0xff]);
}
