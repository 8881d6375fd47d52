//! The checks behind the MQTT fuzz targets (`fuzz_targets/mqtt_*.rs`), kept here so the targets
//! stay one call each and the tests can replay inputs through the very same code: it uses only
//! `gatekit_codec` and `bytes`, so `codec/tests/mqtt_properties.rs` compiles it with `#[path]`.
//!
//! Each check panics when a property breaks; libFuzzer reports the panic as a crash.

use bytes::BytesMut;
use gatekit_codec::mqtt::{MqttCodec, MqttDecodeError, MqttLimits, Packet, PacketType, Role};

/// The longest fixed header: the type byte and a 4-byte remaining length.
pub const MQTT_HEADER: usize = 5;

/// A small maximum packet size, to reach the early "too large" refusal often.
pub const SMALL_MAX: usize = 100;

/// One decoder result, with the stream bytes it consumed (for a packet: the packet's bytes).
pub type Decoded = (Result<Packet, MqttDecodeError>, Vec<u8>);

/// Feeds `data` to a fresh decoder of `role` with `limits`, `chunk` bytes at a time, decoding after
/// each chunk until `Ok(None)` or a fatal error, then calling `decode_eof` until it yields nothing
/// more. Returns every packet and error in order, each with the bytes consumed for it.
///
/// Panics if the decoder loops (a packet or a packet error consumes at least 2 bytes, so more calls
/// than half the input plus one per chunk and a few is a loop), consumes bytes without a result,
/// or ever holds more than a fixed header, a maximal packet and the last chunk in its buffer.
pub fn mqtt_decode_all(data: &[u8], chunk: usize, role: Role, limits: MqttLimits) -> Vec<Decoded> {
    assert!(chunk > 0);
    let max = limits.max_packet_size();
    let mut codec = MqttCodec::new(role, limits).expect("valid limits");
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0usize; // bytes of `data` given to the decoder
    let mut taken = 0usize; // bytes the decoder consumed
    let mut budget = data.len() / 2 + data.len().div_ceil(chunk) + 4;
    let mut call = |codec: &mut MqttCodec, src: &mut BytesMut, fed: usize, eof: bool| {
        budget = budget.checked_sub(1).expect("the decoder loops");
        let r = if eof {
            codec.decode_eof(src)
        } else {
            codec.decode(src)
        };
        assert!(
            src.len() <= MQTT_HEADER + max + chunk,
            "{} bytes buffered",
            src.len()
        );
        let now = fed - src.len();
        assert!(now >= taken, "the decoder gave bytes back");
        let consumed = data[taken..now].to_vec();
        taken = now;
        match &r {
            Ok(Some(_)) | Err(MqttDecodeError::Packet(_)) => {
                assert!(consumed.len() >= 2, "a packet of {} bytes", consumed.len())
            }
            Ok(None) | Err(MqttDecodeError::Frame(_)) => {
                assert!(
                    consumed.is_empty(),
                    "{} bytes consumed for nothing",
                    consumed.len()
                )
            }
        }
        (r, consumed)
    };
    for piece in data.chunks(chunk) {
        src.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match call(&mut codec, &mut src, fed, false) {
                (Ok(Some(p)), bytes) => out.push((Ok(p), bytes)),
                (Ok(None), _) => break,
                (Err(e), bytes) if e.is_fatal() => {
                    assert!(codec.is_failed());
                    // Fatal errors stick.
                    assert_eq!(codec.decode(&mut src).as_ref(), Err(&e));
                    out.push((Err(e), bytes));
                    return out;
                }
                (Err(e), bytes) => out.push((Err(e), bytes)),
            }
        }
    }
    loop {
        match call(&mut codec, &mut src, fed, true) {
            (Ok(Some(p)), bytes) => out.push((Ok(p), bytes)),
            (Ok(None), _) => {
                assert!(src.is_empty() && codec.is_idle());
                return out;
            }
            (Err(e), bytes) if e.is_fatal() => {
                out.push((Err(e), bytes));
                return out;
            }
            (Err(e), bytes) => out.push((Err(e), bytes)),
        }
    }
}

/// The end that sends `packet` (PUBLISH and PUBACK go both ways: the client, here).
pub fn sender(packet: &Packet) -> Role {
    let t = packet.packet_type();
    if t.sent_by_client() {
        Role::Client
    } else {
        Role::Server
    }
}

/// Every packet decoded by a `role` decoder re-encodes, by the other end, to exactly the bytes it
/// was decoded from: the decoder accepts only canonical encodings.
pub fn check_canonical(results: &[Decoded], role: Role, limits: MqttLimits) {
    let encoder = MqttCodec::new(role.peer(), limits).expect("valid limits");
    for (r, bytes) in results {
        if let Ok(p) = r {
            let mut again = BytesMut::new();
            encoder
                .encode(p, &mut again)
                .expect("a decoded packet re-encodes");
            assert_eq!(&again[..], &bytes[..], "{p:?} re-encodes differently");
        }
    }
}

/// Target `mqtt_decode`: raw bytes decoded whole and in chunks of 1 to 32 bytes give the same
/// packets and errors, consume the same bytes, and every packet re-encodes to its bytes. The first
/// byte, still part of the stream, picks the chunk size (its low 5 bits), the role (bit 7: client)
/// and the maximum packet size (bit 6: [`SMALL_MAX`] instead of 65,535).
pub fn mqtt_decode(data: &[u8]) {
    let first = data.first().copied().unwrap_or(0);
    let chunk = usize::from(first % 32) + 1;
    let role = if first & 0x80 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limits = if first & 0x40 == 0 {
        MqttLimits::default()
    } else {
        MqttLimits::default().with_max_packet_size(SMALL_MAX)
    };
    let whole = mqtt_decode_all(data, data.len().max(1), role, limits);
    check_canonical(&whole, role, limits);
    assert_eq!(
        whole,
        mqtt_decode_all(data, chunk, role, limits),
        "in chunks of {chunk}, {role}"
    );
}

/// Target `mqtt_roundtrip`: a packet within the default limits encodes (by its sender), decodes
/// (by the other end) to itself consuming exactly its bytes, and re-encodes to the same bytes; fed
/// one byte at a time it decodes the same.
pub fn mqtt_roundtrip(packet: &Packet) {
    let from = sender(packet);
    let encoder = MqttCodec::new(from, MqttLimits::default()).expect("valid limits");
    let mut wire = BytesMut::new();
    encoder.encode(packet, &mut wire).expect("encodes");
    let bytes = wire.clone().freeze();
    assert_eq!(
        PacketType::from_byte1(bytes[0]),
        packet.packet_type(),
        "type byte"
    );

    let mut decoder = MqttCodec::new(from.peer(), MqttLimits::default()).expect("valid limits");
    let decoded = decoder
        .decode(&mut wire)
        .expect("decodes")
        .expect("one whole packet");
    assert!(wire.is_empty(), "{} bytes left over", wire.len());
    assert_eq!(decoder.decode_eof(&mut wire), Ok(None));
    assert_eq!(&decoded, packet);

    let mut again = BytesMut::new();
    encoder.encode(&decoded, &mut again).expect("re-encodes");
    assert_eq!(again.freeze(), bytes);

    let bytewise = mqtt_decode_all(&bytes, 1, from.peer(), MqttLimits::default());
    assert_eq!(bytewise, vec![(Ok(packet.clone()), bytes.to_vec())]);
}
