//! Property tests for the codec: round trips, chunking, robustness against arbitrary input, memory
//! bounds, oversize skipping and the generic length-prefix framing.
//!
//! Reproduce a failure with `PROPTEST_RNG_SEED=<seed>`; the case count can be raised with
//! `PROPTEST_CASES=<n>` (the file is tuned to stay well under 20 s in debug builds).

use bytes::{BufMut, BytesMut};
use gatekit_codec::native::{
    frame_len, MAX_REASON_LEN, MAX_ROUTE_LEN, MAX_SESSION_ID_LEN, MAX_TOKEN_LEN,
};
use gatekit_codec::parsers::{put_varint, varint_len};
use gatekit_codec::{
    Close, CloseCode, DecodeError, EncodeError, Endian, FrameError, Framing, Handshake,
    LengthField, MessageId, NativeCodec, Notify, Oversize, Packet, Push, Request, Response, Route,
    Status, Text, Topic, Welcome, DEFAULT_MAX_FRAME_LENGTH,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A character: mostly ASCII letters, often anything (non-ASCII, control characters, ...).
fn any_text_char() -> BoxedStrategy<char> {
    prop_oneof![
        3 => prop::char::range('a', 'z'),
        1 => prop::char::range('\u{80}', '\u{7ff}'),
        2 => any::<char>(),
    ]
    .boxed()
}

/// A character other than `/` (for the two halves of a route).
fn route_char() -> BoxedStrategy<char> {
    any_text_char()
        .prop_filter("no slash in route parts", |c| *c != '/')
        .boxed()
}

/// 1..=n characters, biased towards short runs but able to reach the byte limits.
fn chars(c: BoxedStrategy<char>, min: usize, max: usize) -> BoxedStrategy<String> {
    prop_oneof![vec(c.clone(), min..=min.max(8)), vec(c, min..=max),]
        .prop_map(|v| v.into_iter().collect::<String>())
        .boxed()
}

/// Drops characters from the end until `s` is at most `max` bytes.
fn trim_to(s: &mut String, max: usize) {
    while s.len() > max {
        s.pop();
    }
}

/// A valid route: `module/func`, both non-empty, no other `/`, at most 255 bytes of UTF-8.
fn route() -> impl Strategy<Value = Route> {
    (chars(route_char(), 1, 128), chars(route_char(), 1, 128)).prop_map(|(mut m, mut f)| {
        // Trim the longer half: it is over 127 bytes, so more than one character, never emptied.
        while m.len() + 1 + f.len() > MAX_ROUTE_LEN {
            if m.len() >= f.len() {
                m.pop();
            } else {
                f.pop();
            }
        }
        Route::try_from(format!("{m}/{f}").as_str()).expect("generated route is valid")
    })
}

/// A valid topic: 1..=255 bytes of UTF-8 (slashes allowed).
fn topic() -> impl Strategy<Value = Topic> {
    chars(any_text_char(), 1, 255).prop_map(|mut s| {
        trim_to(&mut s, MAX_ROUTE_LEN); // the first character (≤ 4 bytes) always stays
        Topic::try_from(s.as_str()).expect("generated topic is valid")
    })
}

/// A body: 0..2000 bytes, biased towards short ones.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..32),
        1 => vec(any::<u8>(), 0..2000),
    ]
}

/// A message id, 1..=u32::MAX, with the edges well represented.
fn message_id() -> impl Strategy<Value = MessageId> {
    prop_oneof![Just(1u32), Just(u32::MAX), 1..=255u32, 1..=u32::MAX,]
        .prop_map(|v| MessageId::new(v).unwrap())
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL)
}

fn close_code() -> impl Strategy<Value = CloseCode> {
    prop::sample::select(CloseCode::ALL)
}

fn handshake() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        any::<u16>(),
        prop_oneof![
            3 => vec(any::<u8>(), 0..=16),
            1 => vec(any::<u8>(), 0..=MAX_TOKEN_LEN),
            1 => Just(vec![0xa5; MAX_TOKEN_LEN]),
        ],
    )
        .prop_map(|(version, heartbeat_secs, token)| {
            Packet::Handshake(Handshake {
                version,
                heartbeat_secs,
                token: token.into(),
            })
        })
}

fn welcome() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        chars(any_text_char(), 1, MAX_SESSION_ID_LEN),
    )
        .prop_map(|(version, heartbeat_secs, max_frame_length, mut id)| {
            trim_to(&mut id, MAX_SESSION_ID_LEN);
            Packet::Welcome(Welcome {
                version,
                heartbeat_secs,
                max_frame_length,
                session_id: Text::from(id),
            })
        })
}

fn request() -> impl Strategy<Value = Packet> {
    (message_id(), route(), body())
        .prop_map(|(id, route, body)| Packet::Request(Request::new(id, route, body)))
}

fn response() -> impl Strategy<Value = Packet> {
    (message_id(), status(), body()).prop_map(|(id, status, body)| {
        Packet::Response(Response {
            id,
            status,
            body: body.into(),
        })
    })
}

fn notify() -> impl Strategy<Value = Packet> {
    (route(), body()).prop_map(|(route, body)| Packet::Notify(Notify::new(route, body)))
}

fn push() -> impl Strategy<Value = Packet> {
    (topic(), body()).prop_map(|(topic, body)| Packet::Push(Push::new(topic, body)))
}

fn close() -> impl Strategy<Value = Packet> {
    (close_code(), chars(any_text_char(), 0, MAX_REASON_LEN)).prop_map(|(code, mut reason)| {
        trim_to(&mut reason, MAX_REASON_LEN);
        Packet::Close(Close {
            code,
            reason: Text::from(reason),
        })
    })
}

/// Any valid packet.
fn any_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        handshake(),
        welcome(),
        request(),
        response(),
        notify(),
        push(),
        Just(Packet::Ping),
        Just(Packet::Pong),
        close(),
    ]
}

/// Chunk sizes, used cyclically to cut a stream: byte by byte, small, medium, large, or mixed.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        vec(1usize..=3, 1..8),
        vec(1usize..=64, 1..8),
        vec(1usize..=2048, 1..8),
        vec(prop_oneof![1usize..=3, 1000usize..=8000], 1..8),
        Just(vec![usize::MAX]),
    ]
}

/// Cuts `data` into chunks whose sizes cycle through `sizes`.
fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// How a valid stream is damaged for the robustness tests.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        2 => (any::<usize>(), prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        2 => (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(wire: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match m {
        Mutation::Flip { at, mask } if !wire.is_empty() => {
            let i = pos(*at, wire.len());
            wire[i] ^= mask;
        }
        Mutation::Set { at, byte } if !wire.is_empty() => {
            let i = pos(*at, wire.len());
            wire[i] = *byte;
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, wire.len() + 1);
            wire.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { at, len } if !wire.is_empty() => {
            let i = pos(*at, wire.len());
            let end = (i + len).min(wire.len());
            wire.drain(i..end);
        }
        Mutation::Truncate { at } => {
            let i = pos(*at, wire.len() + 1);
            wire.truncate(i);
        }
        _ => {}
    }
}

/// Encodes packets back to back with the default codec.
fn encode_all(packets: &[Packet]) -> Vec<u8> {
    let codec = NativeCodec::default();
    let mut wire = BytesMut::new();
    for p in packets {
        codec
            .encode(p, &mut wire)
            .expect("generated packets are valid");
    }
    wire.to_vec()
}

/// Arbitrary input for the robustness tests: random bytes, or a valid stream, damaged or not.
fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => vec(any::<u8>(), 0..4096),
        1 => vec(any_packet(), 0..6).prop_map(|p| encode_all(&p)),
        4 => (vec(any_packet(), 1..6), vec(mutation(), 1..5)).prop_map(|(p, muts)| {
            let mut wire = encode_all(&p);
            for m in &muts {
                apply(&mut wire, m);
            }
            wire
        }),
    ]
}

fn oversize() -> impl Strategy<Value = Oversize> {
    prop_oneof![Just(Oversize::Fail), Just(Oversize::Skip)]
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// `a == b`, and for routed packets the module / function split too (`PartialEq` compares the
/// whole route only).
fn check_same(decoded: &Packet, expected: &Packet) -> Result<(), TestCaseError> {
    prop_assert_eq!(decoded, expected);
    match (decoded, expected) {
        (Packet::Request(a), Packet::Request(b)) => {
            prop_assert_eq!((a.module(), a.func()), (b.module(), b.func()));
            prop_assert_eq!(a.route_value(), b.route_value());
            prop_assert_eq!(a.clone().into_body(), b.body_bytes());
        }
        (Packet::Notify(a), Packet::Notify(b)) => {
            prop_assert_eq!((a.module(), a.func()), (b.module(), b.func()));
            prop_assert_eq!(a.route_value(), b.route_value());
            prop_assert_eq!(a.clone().into_body(), b.body_bytes());
        }
        (Packet::Push(a), Packet::Push(b)) => {
            prop_assert_eq!(a.topic_value(), b.topic_value());
            prop_assert_eq!(a.clone().into_body(), b.body_bytes());
        }
        _ => {}
    }
    Ok(())
}

fn encode_one(p: &Packet, max: usize) -> Result<Vec<u8>, EncodeError> {
    let mut out = BytesMut::new();
    gatekit_codec::native::encode_packet(p, max, &mut out)?;
    Ok(out.to_vec())
}

/// What the driver saw, call by call (`Ok(None)` left out).
type Events = Vec<Result<Packet, DecodeError>>;

/// How the stream ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// `decode_eof` returned `Ok(None)`: the stream ended between frames.
    Clean,
    /// `decode_eof` returned `UnexpectedEof`.
    Eof(DecodeError),
    /// A fatal error stopped decoding.
    Fatal(DecodeError),
}

/// Extra checks the driver makes after each `decode` call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Decode in the caller's growing buffer.
    Plain,
    /// Before each call, copy the buffer into a new one of exactly its length, so that any
    /// capacity the call adds is the decoder's own reservation (see `memory_is_bounded`).
    ExactCapacity,
}

/// Feeds `input` to `codec` chunk by chunk, calling `decode` after each chunk until it returns
/// `Ok(None)` or a fatal error, then `decode_eof`; checks on every call the invariants that hold
/// for any input:
///
/// - no call consumes more than it was given, recoverable packet errors consume their frame;
/// - the number of calls before `Ok(None)` is at most the buffered length + 1;
/// - after `Ok(None)` fewer than `max + 4` bytes stay buffered;
/// - every decoded packet re-encodes to exactly the bytes its frame took (decoding is canonical);
/// - a fatal error comes back, unchanged and consuming nothing, from every later call;
/// - `decode_eof` is `Ok(None)` exactly when the decoder is idle with nothing buffered.
fn drive(
    codec: &mut NativeCodec,
    input: &[u8],
    sizes: &[usize],
    mode: Mode,
) -> Result<(Events, End), TestCaseError> {
    let max = codec.max_frame_length();
    let mut src = BytesMut::new();
    let mut fed = 0usize;
    let mut largest_chunk = 0usize;
    let mut events = Events::new();
    for chunk in split(input, sizes) {
        src.extend_from_slice(chunk);
        fed += chunk.len();
        largest_chunk = largest_chunk.max(chunk.len());
        let budget = src.len() + 1;
        let mut calls = 0usize;
        loop {
            calls += 1;
            prop_assert!(
                calls <= budget,
                "{} calls without Ok(None) on {} buffered bytes",
                calls,
                budget - 1
            );
            if mode == Mode::ExactCapacity {
                src = BytesMut::from(&src[..]);
                prop_assert_eq!(src.capacity(), src.len());
            }
            let before = src.len();
            let was_idle = codec.is_idle();
            let res = codec.decode(&mut src);
            let after = src.len();
            prop_assert!(
                after <= before,
                "decode grew the buffer from {} to {}",
                before,
                after
            );
            let consumed = &input[fed - before..fed - after];
            match res {
                Ok(None) => {
                    prop_assert!(
                        after < max + 4,
                        "{} bytes buffered with max frame length {}",
                        after,
                        max
                    );
                    if mode == Mode::Plain {
                        // In the caller's own growing buffer the capacity also follows the
                        // caller's appends and `BytesMut`'s amortized doubling (and re-use of the
                        // consumed front), so only a loose bound holds here: a reservation driven
                        // by an unchecked length prefix (up to 2^28) would still break it.
                        let bound = 4 * (max + 4 + largest_chunk);
                        prop_assert!(
                            src.capacity() <= bound,
                            "capacity {} over {} (max frame length {}, largest chunk {})",
                            src.capacity(),
                            bound,
                            max,
                            largest_chunk
                        );
                    }
                    if mode == Mode::ExactCapacity {
                        // The only reservation the decoder makes is for the rest of a frame whose
                        // header it has parsed (at most max + 4 bytes in all). `Vec` grows to the
                        // larger of twice the old capacity and what was asked, at least 8.
                        let cap = src.capacity();
                        let bound = (2 * before).max(8).max(max + 4);
                        prop_assert!(
                            cap <= bound,
                            "capacity {} after decode on {} bytes (max frame length {})",
                            cap,
                            before,
                            max
                        );
                    }
                    break;
                }
                Ok(Some(p)) => {
                    let again = encode_one(&p, max);
                    prop_assert!(
                        again.is_ok(),
                        "decoded {:?} does not re-encode: {:?}",
                        p,
                        again
                    );
                    let again = again.unwrap();
                    if was_idle {
                        prop_assert_eq!(consumed, &again[..], "decoded {:?}", p);
                    } else {
                        // The call may first have dropped the rest of a skipped frame.
                        prop_assert!(
                            consumed.ends_with(&again),
                            "decoded {:?} from {:?}",
                            p,
                            consumed
                        );
                    }
                    events.push(Ok(p));
                }
                Err(e) if e.is_fatal() => {
                    prop_assert!(codec.is_failed());
                    check_sticky(codec, &mut src, &input[fed..], &e)?;
                    events.push(Err(e.clone()));
                    return Ok((events, End::Fatal(e)));
                }
                Err(e) => {
                    prop_assert!(!codec.is_failed());
                    match &e {
                        DecodeError::Packet(_) => {
                            prop_assert!(!consumed.is_empty(), "packet error consumed nothing")
                        }
                        DecodeError::Frame(FrameError::TooLargeSkipped { len, max: m }) => {
                            prop_assert_eq!(*m, max);
                            prop_assert!(*len > max as u64);
                        }
                        other => prop_assert!(false, "unexpected recoverable error {:?}", other),
                    }
                    events.push(Err(e));
                }
            }
        }
    }
    prop_assert_eq!(fed, input.len());
    let idle = codec.is_idle();
    let buffered = src.len();
    let end = codec.decode_eof(&mut src);
    prop_assert_eq!(
        src.len(),
        buffered,
        "decode_eof after Ok(None) consumed bytes"
    );
    match end {
        Ok(None) => {
            prop_assert!(
                idle && buffered == 0,
                "Ok(None) at eof with {} bytes",
                buffered
            );
            prop_assert_eq!(codec.decode_eof(&mut src), Ok(None));
            Ok((events, End::Clean))
        }
        Ok(Some(p)) => {
            prop_assert!(false, "decode_eof found {:?} that decode did not", p);
            unreachable!()
        }
        Err(e) => {
            prop_assert!(!(idle && buffered == 0), "{:?} at a clean eof", e);
            match &e {
                DecodeError::Frame(FrameError::UnexpectedEof {
                    buffered: b,
                    needed,
                }) => {
                    prop_assert_eq!(*b, buffered);
                    if idle {
                        // Inside the header: the least it could need, one byte more than arrived.
                        prop_assert_eq!(*needed, buffered + 1);
                    } else {
                        prop_assert!(needed > b, "needed {} <= buffered {}", needed, b);
                    }
                }
                other => prop_assert!(false, "unexpected error at eof: {:?}", other),
            }
            // The end of the stream stays the end of the stream: UnexpectedEof is fatal and sticky.
            prop_assert!(e.is_fatal());
            prop_assert!(codec.is_failed());
            prop_assert_eq!(codec.decode_eof(&mut src), Err(e.clone()));
            prop_assert_eq!(codec.decode(&mut src), Err(e.clone()));
            prop_assert_eq!(src.len(), buffered);
            Ok((events, End::Eof(e)))
        }
    }
}

/// After the fatal error `e`, every later call returns `e` and consumes nothing, whatever arrives.
fn check_sticky(
    codec: &mut NativeCodec,
    src: &mut BytesMut,
    unfed: &[u8],
    e: &DecodeError,
) -> Result<(), TestCaseError> {
    let n = src.len();
    prop_assert_eq!(codec.decode(src), Err(e.clone()));
    prop_assert_eq!(src.len(), n);
    src.extend_from_slice(unfed);
    src.extend_from_slice(&encode_all(&[Packet::Ping]));
    let n = src.len();
    prop_assert_eq!(codec.decode(src), Err(e.clone()));
    prop_assert_eq!(codec.decode_eof(src), Err(e.clone()));
    prop_assert_eq!(codec.decode(src), Err(e.clone()));
    prop_assert_eq!(src.len(), n);
    prop_assert!(codec.is_failed());
    Ok(())
}

/// The packets of `events`, failing on any error.
fn packets_only(events: Events) -> Result<Vec<Packet>, TestCaseError> {
    events
        .into_iter()
        .map(|e| e.map_err(|e| TestCaseError::fail(format!("unexpected error {e:?}"))))
        .collect()
}

/// `cases` cases, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Native codec properties
// ---------------------------------------------------------------------------------------------

/// encode → decode is the identity, and `decode` takes exactly the encoded bytes (whatever follows
/// them stays in the buffer).
fn check_roundtrip(packet: &Packet, trailing: &[u8]) -> Result<(), TestCaseError> {
    let mut codec = NativeCodec::default();
    let mut wire = BytesMut::new();
    codec
        .encode(packet, &mut wire)
        .expect("generated packets are valid");
    let len = frame_len(packet);
    prop_assert_eq!(
        wire.len(),
        varint_len(len as u32).unwrap() + len,
        "frame_len disagrees with the encoding"
    );
    wire.put_slice(trailing);
    let base = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    let decoded = codec.decode(&mut wire);
    prop_assert!(
        matches!(decoded, Ok(Some(_))),
        "decode of {:?}: {:?}",
        packet,
        decoded
    );
    let decoded = decoded.unwrap().unwrap();
    check_same(&decoded, packet)?;
    prop_assert_eq!(
        &wire[..],
        trailing,
        "decode consumed the wrong number of bytes"
    );
    // Zero-copy: non-empty bodies point into the decoded buffer.
    let body = match &decoded {
        Packet::Request(r) => Some(r.body_bytes()),
        Packet::Notify(n) => Some(n.body_bytes()),
        Packet::Push(p) => Some(p.body_bytes()),
        Packet::Response(r) => Some(r.body.clone()),
        Packet::Handshake(h) => Some(h.token.clone()),
        _ => None,
    };
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        prop_assert!(base.contains(&(body.as_ptr() as usize)), "body was copied");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn roundtrip_handshake(p in handshake(), t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }

    #[test]
    fn roundtrip_welcome(p in welcome(), t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }

    #[test]
    fn roundtrip_request(p in request(), t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }

    #[test]
    fn roundtrip_response(p in response(), t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }

    #[test]
    fn roundtrip_notify(p in notify(), t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }

    #[test]
    fn roundtrip_push(p in push(), t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }

    #[test]
    fn roundtrip_ping_pong_close(p in prop_oneof![Just(Packet::Ping), Just(Packet::Pong), close()],
                                 t in vec(any::<u8>(), 0..8)) {
        check_roundtrip(&p, &t)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Decoding a canonical stream and re-encoding what came out gives back the same bytes.
    #[test]
    fn decode_then_encode_is_byte_identical(packets in vec(any_packet(), 0..=50)) {
        let wire = encode_all(&packets);
        let mut codec = NativeCodec::default();
        let mut src = BytesMut::from(&wire[..]);
        let mut again = BytesMut::new();
        let mut n = 0;
        while let Some(p) = codec.decode(&mut src).map_err(|e| TestCaseError::fail(format!("{e:?}")))? {
            codec.encode(&p, &mut again).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            n += 1;
        }
        prop_assert_eq!(n, packets.len());
        prop_assert!(src.is_empty());
        prop_assert_eq!(&again[..], &wire[..]);
        prop_assert_eq!(codec.decode_eof(&mut src), Ok(None));
    }

    /// Any cut of a stream of up to 50 packets into chunks decodes the same packets in order, and
    /// the stream ends cleanly.
    #[test]
    fn any_chunking_decodes_the_same_packets(
        packets in vec(any_packet(), 0..=50),
        sizes in chunk_sizes(),
    ) {
        let wire = encode_all(&packets);
        let mut codec = NativeCodec::default();
        let (events, end) = drive(&mut codec, &wire, &sizes, Mode::Plain)?;
        prop_assert_eq!(end, End::Clean);
        let decoded = packets_only(events)?;
        prop_assert_eq!(decoded.len(), packets.len());
        for (d, p) in decoded.iter().zip(&packets) {
            check_same(d, p)?;
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary or damaged input never panics, never makes the decoder take more than it was
    /// given or loop, decodes only canonical packets, and fatal errors are sticky (see `drive`).
    #[test]
    fn hostile_input_never_breaks_the_decoder(
        input in hostile_input(),
        sizes in chunk_sizes(),
        max in prop_oneof![Just(DEFAULT_MAX_FRAME_LENGTH), 1usize..=2048],
        oversize in oversize(),
    ) {
        let mut codec = NativeCodec::new(max, oversize).unwrap();
        drive(&mut codec, &input, &sizes, Mode::Plain)?;
    }

    /// With a small maximum frame length, whatever the input and chunking, the bytes left buffered
    /// after `Ok(None)` stay under max + 4 (header plus frame, tighter than max + 4 + chunk), the
    /// capacity the decoder reserves is bounded by max + 4 too (checked exactly on exact-capacity
    /// buffers, see `Mode`), and in a plain growing buffer the capacity stays within
    /// 4 × (max + 4 + largest chunk).
    #[test]
    fn memory_is_bounded(
        input in hostile_input(),
        sizes in chunk_sizes(),
        max in 64usize..=1024,
        oversize in oversize(),
    ) {
        let mut codec = NativeCodec::new(max, oversize).unwrap();
        drive(&mut codec, &input, &sizes, Mode::ExactCapacity)?;
        let mut codec = NativeCodec::new(max, oversize).unwrap();
        drive(&mut codec, &input, &sizes, Mode::Plain)?;
    }
}

/// One item of a stream for the oversize-skip test.
#[derive(Debug, Clone)]
enum Item {
    Packet(Packet),
    /// A frame of random bytes over the maximum.
    Junk(Vec<u8>),
}

proptest! {
    #![proptest_config(config(256))]

    /// With `Oversize::Skip`, oversized frames (random content, or real packets too big for the
    /// limit) interleaved with valid packets yield one `TooLargeSkipped` each, and every valid
    /// packet comes out in order, whatever the chunking.
    #[test]
    fn oversize_skip_keeps_the_stream_in_sync(
        (max, items) in (16usize..=512).prop_flat_map(|max| (
            Just(max),
            vec(prop_oneof![
                3 => any_packet().prop_map(Item::Packet),
                1 => vec(any::<u8>(), max + 1..=max + 600).prop_map(Item::Junk),
            ], 0..30),
        )),
        sizes in chunk_sizes(),
    ) {
        let big = NativeCodec::default();
        let mut wire = BytesMut::new();
        let mut expected = Events::new();
        for item in &items {
            match item {
                Item::Packet(p) => {
                    big.encode(p, &mut wire).unwrap();
                    let len = frame_len(p);
                    expected.push(if len > max {
                        Err(FrameError::TooLargeSkipped { len: len as u64, max }.into())
                    } else {
                        Ok(p.clone())
                    });
                }
                Item::Junk(junk) => {
                    put_varint(&mut wire, junk.len() as u32);
                    wire.put_slice(junk);
                    expected.push(Err(FrameError::TooLargeSkipped { len: junk.len() as u64, max }.into()));
                }
            }
        }
        let mut codec = NativeCodec::new(max, Oversize::Skip).unwrap();
        let (events, end) = drive(&mut codec, &wire, &sizes, Mode::Plain)?;
        prop_assert_eq!(end, End::Clean);
        prop_assert_eq!(events, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Generic framing
// ---------------------------------------------------------------------------------------------

fn length_field() -> impl Strategy<Value = LengthField> {
    prop_oneof![
        Just(LengthField::U8),
        Just(LengthField::U16(Endian::Big)),
        Just(LengthField::U16(Endian::Little)),
        Just(LengthField::U32(Endian::Big)),
        Just(LengthField::U32(Endian::Little)),
        Just(LengthField::Varint),
    ]
}

/// A length field, header bytes before it (0..=8), an adjustment in -4..=4 and, one time in four,
/// an explicit `num_skip` (0 up to the smallest header).
fn framing_params() -> impl Strategy<Value = (LengthField, Vec<u8>, i64, Option<usize>)> {
    (length_field(), 0usize..=8).prop_flat_map(|(field, offset)| {
        let min_header = offset
            + match field {
                LengthField::Varint => 1,
                f => f.max_len(),
            };
        (
            Just(field),
            vec(any::<u8>(), offset),
            -4i64..=4,
            prop_oneof![3 => Just(None), 1 => (0..=min_header).prop_map(Some)],
        )
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// `Framing::encode` then a `FrameDecoder` fed in random chunks gives back every payload the
    /// encoder accepted, in order; the encoder refuses a payload only for a documented reason that
    /// really applies (too large, length field overflow, negative length), writing nothing.
    #[test]
    fn framing_roundtrip_any_configuration(
        (field, head, adjustment, num_skip) in framing_params(),
        max in prop_oneof![1usize..=64, 1usize..=1024, Just(DEFAULT_MAX_FRAME_LENGTH)],
        payloads in vec(prop_oneof![3 => vec(any::<u8>(), 0..8), 1 => vec(any::<u8>(), 0..600)], 0..20),
        sizes in chunk_sizes(),
    ) {
        let mut builder = Framing::builder()
            .length_field(field)
            .length_field_offset(head.len())
            .length_adjustment(adjustment)
            .max_frame_length(max);
        if let Some(n) = num_skip {
            builder = builder.num_skip(n);
        }
        let framing = builder.build().unwrap();

        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for payload in &payloads {
            let before = wire.len();
            let value = payload.len() as i64 - adjustment;
            match framing.encode(&head, payload, &mut wire) {
                Ok(()) => {
                    prop_assert!(payload.len() <= max);
                    prop_assert!(value >= 0 && value as u64 <= field.max_value());
                    let field_len = match field {
                        LengthField::Varint => varint_len(value as u32).unwrap(),
                        f => f.max_len(),
                    };
                    let frame = &wire[before..];
                    prop_assert_eq!(frame.len(), head.len() + field_len + payload.len());
                    prop_assert_eq!(&frame[..head.len()], &head[..]);
                    prop_assert_eq!(&frame[head.len() + field_len..], &payload[..]);
                    let skip = num_skip.unwrap_or(head.len() + field_len);
                    expected.push(frame[skip..].to_vec());
                }
                Err(e) => {
                    prop_assert_eq!(wire.len(), before, "refused encode wrote bytes");
                    match e {
                        EncodeError::FrameTooLarge { len, max: m } => {
                            prop_assert_eq!((len, m), (payload.len(), max));
                            prop_assert!(len > max);
                        }
                        EncodeError::NegativeLength { len, adjustment: a } => {
                            prop_assert_eq!((len, a), (payload.len(), adjustment));
                            prop_assert!(value < 0);
                        }
                        EncodeError::LengthFieldOverflow { value: v, field_bytes } => {
                            prop_assert_eq!(v as i64, value);
                            prop_assert_eq!(field_bytes, field.max_len());
                            prop_assert!(v > field.max_value());
                        }
                        other => prop_assert!(false, "undocumented refusal {:?}", other),
                    }
                }
            }
        }

        let mut decoder = framing.decoder();
        let mut src = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in split(&wire, &sizes) {
            src.extend_from_slice(chunk);
            while let Some(frame) = decoder
                .decode(&mut src)
                .map_err(|e| TestCaseError::fail(format!("decode: {e:?}")))?
            {
                frames.push(frame.to_vec());
            }
        }
        prop_assert_eq!(decoder.decode_eof(&mut src), Ok(None));
        prop_assert!(decoder.is_idle() && src.is_empty());
        prop_assert_eq!(frames, expected);
    }
}
