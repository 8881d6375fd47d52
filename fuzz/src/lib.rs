//! The checks behind the fuzz targets, kept out of `fuzz_targets/` so the targets stay one call
//! each and `codec/tests/corpus.rs` can replay the shared corpus through the very same code (it
//! compiles this file as a module with `#[path]`; so it may use only `gatekit_codec` and `bytes`).
//!
//! Each check panics when a property breaks; libFuzzer reports the panic as a crash.

/// The pomelo profile's checks (targets `pomelo_decode`, `pomelo_roundtrip`).
pub mod pomelo;

pub mod mqtt;

use bytes::BytesMut;
use gatekit_codec::framing::MAX_LENGTH_FIELD_OFFSET;
use gatekit_codec::{DecodeError, FramingBuilder, NativeCodec, Oversize, Packet};

/// The native decoder's frame limit in these checks (the protocol's default).
pub const MAX_FRAME: usize = 65_535;

/// The longest varint length prefix of a native frame.
pub const NATIVE_HEADER: usize = 4;

/// Feeds `data` to a fresh native decoder (65,535-byte frames, oversized frames handled as
/// `oversize` says) `chunk` bytes at a time, decoding after each chunk until `Ok(None)` or a fatal
/// error, then calling `decode_eof` until it yields nothing more. Returns every packet and error,
/// in order.
///
/// Panics if the decoder loops (more calls than twice the input's bytes, plus one per chunk and a
/// few) or ever holds more than a maximal frame, its header and the last chunk in its buffer.
pub fn decode_all(
    data: &[u8],
    chunk: usize,
    oversize: Oversize,
) -> Vec<Result<Packet, DecodeError>> {
    assert!(chunk > 0);
    let mut codec = NativeCodec::new(MAX_FRAME, oversize).expect("valid limits");
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    // Every result but the `Ok(None)` that ends a chunk consumes at least one byte, except that an
    // oversized frame being skipped is reported before its bytes go.
    let mut budget = 2 * data.len() + data.len().div_ceil(chunk) + 4;
    let mut call = |codec: &mut NativeCodec, src: &mut BytesMut, eof: bool| {
        budget = budget.checked_sub(1).expect("the decoder loops");
        let r = if eof {
            codec.decode_eof(src)
        } else {
            codec.decode(src)
        };
        assert!(
            src.len() <= MAX_FRAME + NATIVE_HEADER + chunk,
            "{} bytes buffered",
            src.len()
        );
        r
    };
    for piece in data.chunks(chunk) {
        src.extend_from_slice(piece);
        loop {
            match call(&mut codec, &mut src, false) {
                Ok(Some(p)) => out.push(Ok(p)),
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    out.push(Err(e));
                    return out;
                }
                Err(e) => out.push(Err(e)),
            }
        }
    }
    loop {
        match call(&mut codec, &mut src, true) {
            Ok(Some(p)) => out.push(Ok(p)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

/// Target `native_decode`: raw bytes decoded whole and in chunks of 1 to 64 bytes give the same
/// packets and errors. The first byte, still part of the stream, picks the chunk size (its low 6
/// bits) and whether oversized frames fail or are skipped (its high bit).
pub fn native_decode(data: &[u8]) {
    let first = data.first().copied().unwrap_or(0);
    let chunk = usize::from(first % 64) + 1;
    let oversize = if first & 0x80 == 0 {
        Oversize::Fail
    } else {
        Oversize::Skip
    };
    let whole = decode_all(data, data.len().max(1), oversize);
    assert_eq!(
        whole,
        decode_all(data, chunk, oversize),
        "in chunks of {chunk}, {oversize:?}"
    );
}

/// Target `native_roundtrip`: a packet within the protocol's limits encodes, decodes to itself,
/// and re-encodes to the same bytes.
pub fn native_roundtrip(packet: &Packet) {
    let codec = NativeCodec::default();
    let mut wire = BytesMut::new();
    codec.encode(packet, &mut wire).expect("encodes");
    let bytes = wire.clone().freeze();

    let mut decoder = NativeCodec::default();
    let decoded = decoder
        .decode(&mut wire)
        .expect("decodes")
        .expect("one whole frame");
    assert!(wire.is_empty(), "{} bytes left over", wire.len());
    assert_eq!(decoder.decode_eof(&mut wire), Ok(None));
    assert_eq!(&decoded, packet);

    let mut again = BytesMut::new();
    codec.encode(&decoded, &mut again).expect("re-encodes");
    assert_eq!(again.freeze(), bytes);
}

/// Target `framing`: any configuration that builds, on any bytes: no panic, no loop, no frame over
/// the limit (plus header); with no header offset and the default `num_skip` (the decoder yields
/// bodies), each frame the encoder accepts re-encodes and decodes to itself.
pub fn framing(builder: FramingBuilder, data: &[u8]) {
    // `num_skip` has no getter: `None` is the default, "skip the whole header".
    let yields_body = format!("{builder:?}").contains("num_skip: None");
    let Ok(framing) = builder.build() else {
        return;
    };
    let max = framing.max_frame_length();
    let mut decoder = framing.decoder();
    let mut src = BytesMut::from(data);
    // Every result consumes a byte, except that an oversized frame is reported before its bytes go.
    let mut budget = 2 * data.len() + 4;
    loop {
        budget = budget.checked_sub(1).expect("the decoder loops");
        let frame = match decoder.decode_eof(&mut src) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) if e.is_fatal() => return,
            Err(_) => continue,
        };
        let header = MAX_LENGTH_FIELD_OFFSET + 4;
        assert!(
            frame.len() <= max + header,
            "frame of {} > {max}",
            frame.len()
        );
        if !yields_body {
            continue;
        }
        assert!(frame.len() <= max, "frame of {} > {max}", frame.len());
        // Refused unless the length field offset is 0 (the header is `[]`) and the length, after
        // the adjustment, fits the field.
        let mut wire = BytesMut::new();
        if framing.encode(&[], &frame, &mut wire).is_ok() {
            let again = framing.decoder().decode_eof(&mut wire);
            assert_eq!(again, Ok(Some(frame)), "re-encoded as {wire:02x?}");
            assert!(wire.is_empty());
        }
    }
}
