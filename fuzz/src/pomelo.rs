//! The checks behind the pomelo fuzz targets (`pomelo_decode`, `pomelo_roundtrip`), kept out of
//! `fuzz_targets/` so the targets stay one call each and the tests can run the very same code
//! (`codec/tests/pomelo_properties.rs` compiles this file as a module with `#[path]`, as
//! `codec/tests/corpus.rs` does `lib.rs`; so it may use only `gatekit_codec` and `bytes`).
//!
//! Each check panics when a property breaks; libFuzzer reports the panic as a crash.

use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    ClientHandshake, Kick, Message, Package, PackageError, PomeloCodec, ServerHandshake, HEADER_LEN,
};
use gatekit_codec::Oversize;

/// The codec's body limit in these checks when the input asks for a small one (so that oversized
/// packages, skipped or fatal, are reached often).
pub const POMELO_SMALL_MAX: usize = 64;

/// The default body limit (mqant's `MaxPackSize`).
pub const POMELO_MAX: usize = 65_535;

/// Feeds `data` to a fresh `PomeloCodec` (`max` body bytes, oversized packages handled as
/// `oversize` says) `chunk` bytes at a time, decoding after each chunk until `Ok(None)` or a fatal
/// error, then calling `decode_eof` until it yields nothing more. Returns every package and
/// error, in order.
///
/// Panics if the decoder loops (more calls than twice the input's bytes, plus one per chunk and a
/// few), holds more than a maximal package and the last chunk in its buffer, or reports an error
/// at a stream offset it has not reached.
pub fn pomelo_decode_all(
    data: &[u8],
    chunk: usize,
    oversize: Oversize,
    max: usize,
) -> Vec<Result<Package, PackageError>> {
    assert!(chunk > 0);
    let mut codec = PomeloCodec::new(max, oversize).expect("valid limits");
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0u64;
    // Every result but the `Ok(None)` that ends a chunk consumes at least one byte, except that a
    // package being skipped is reported before its bytes go.
    let mut budget = 2 * data.len() + data.len().div_ceil(chunk) + 4;
    let mut call = |codec: &mut PomeloCodec, src: &mut BytesMut, eof: bool, fed: u64| {
        budget = budget.checked_sub(1).expect("the decoder loops");
        let r = if eof {
            codec.decode_eof(src)
        } else {
            codec.decode(src)
        };
        assert!(
            src.len() <= max + HEADER_LEN + chunk,
            "{} bytes buffered",
            src.len()
        );
        assert!(codec.stream_offset() <= fed, "offset past the input");
        if let Err(e) = &r {
            assert!(e.offset() <= codec.stream_offset(), "{e}");
        }
        r
    };
    for piece in data.chunks(chunk) {
        src.extend_from_slice(piece);
        fed += piece.len() as u64;
        loop {
            match call(&mut codec, &mut src, false, fed) {
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
        match call(&mut codec, &mut src, true, fed) {
            Ok(Some(p)) => out.push(Ok(p)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

/// The checks on one decoded package's contents: a data body goes through [`pomelo_message`];
/// handshake and kick JSON parsers never panic, and what they accept survives their own encoding.
pub fn pomelo_package_contents(p: &Package) {
    match p {
        Package::Data(body) => pomelo_message(body),
        Package::Handshake(body) => {
            if let Ok(h) = ClientHandshake::parse(body) {
                let again = ClientHandshake::parse(&Bytes::from(h.to_json()))
                    .unwrap_or_else(|e| panic!("{e}: {}", h.to_json()));
                assert_eq!(again, h, "client handshake round trip");
            }
            let _ = ServerHandshake::parse(body);
        }
        Package::Kick(body) => {
            if let Ok(k) = Kick::parse(body) {
                assert_eq!(Kick::parse(&Bytes::from(k.to_json())), Ok(k));
            }
        }
        Package::HandshakeAck | Package::Heartbeat => {}
    }
}

/// Target `pomelo_decode`, part one: raw bytes as a package stream, decoded whole and in chunks of
/// 1 to 64 bytes, give the same packages and errors, with the default body limit
/// ([`POMELO_MAX`]) and a small one ([`POMELO_SMALL_MAX`], so that oversized packages are
/// reached often). The last byte, still part of the stream, picks the chunk size (its low 6 bits)
/// and whether oversized packages fail or are skipped (its high bit). (Not the first byte: it is
/// the first package's type.) A stream that decodes without any error re-encodes to exactly its
/// bytes.
pub fn pomelo_stream(data: &[u8]) {
    let last = data.last().copied().unwrap_or(0);
    let chunk = usize::from(last % 64) + 1;
    let oversize = if last & 0x80 == 0 {
        Oversize::Fail
    } else {
        Oversize::Skip
    };
    for max in [POMELO_MAX, POMELO_SMALL_MAX] {
        let whole = pomelo_decode_all(data, data.len().max(1), oversize, max);
        assert_eq!(
            whole,
            pomelo_decode_all(data, chunk, oversize, max),
            "in chunks of {chunk}, {oversize:?}, max {max}"
        );
        if whole.iter().all(Result::is_ok) {
            let codec = PomeloCodec::new(max, oversize).expect("valid limits");
            let mut again = BytesMut::new();
            for p in whole.iter().flatten() {
                codec
                    .encode(p, &mut again)
                    .expect("a decoded package encodes");
            }
            assert_eq!(&again[..], data, "packages re-encode to the stream");
        }
        if max == POMELO_MAX {
            for p in whole.iter().flatten() {
                pomelo_package_contents(p);
            }
        }
    }
}

/// Target `pomelo_decode`, part two: raw bytes as a data package's body. `Message::decode` never
/// panics, and a message it accepts re-encodes to exactly the same bytes (the decoder is strict
/// enough for the encoding to be canonical).
pub fn pomelo_message(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(m) = Message::decode(bytes.clone()) {
        assert_eq!(m.encoded_len(), data.len());
        assert_eq!(m.to_bytes().expect("a decoded message encodes"), bytes);
    }
}

/// Target `pomelo_decode`: [`pomelo_stream`] and [`pomelo_message`] on the same bytes.
pub fn pomelo_decode(data: &[u8]) {
    pomelo_stream(data);
    pomelo_message(data);
}

/// Target `pomelo_roundtrip`: a package and a message within the limits encode, decode to
/// themselves with nothing left over, and re-encode to the same bytes; the message also does so
/// inside a data package.
pub fn pomelo_roundtrip(package: &Package, message: &Message) {
    let codec = PomeloCodec::default();
    let mut wire = BytesMut::new();
    codec.encode(package, &mut wire).expect("encodes");
    codec.encode_message(message, &mut wire).expect("encodes");
    let bytes = wire.clone().freeze();

    let mut decoder = PomeloCodec::default();
    let p = decoder.decode(&mut wire).expect("decodes").expect("whole");
    assert_eq!(&p, package);
    let data = decoder.decode(&mut wire).expect("decodes").expect("whole");
    assert!(wire.is_empty(), "{} bytes left over", wire.len());
    assert_eq!(decoder.decode_eof(&mut wire), Ok(None));
    let Package::Data(body) = &data else {
        panic!("not a data package: {data:?}")
    };
    let m = Message::decode(body.clone()).expect("message decodes");
    assert_eq!(&m, message);

    let mut again = BytesMut::new();
    codec.encode(&p, &mut again).expect("re-encodes");
    codec.encode_message(&m, &mut again).expect("re-encodes");
    assert_eq!(again.freeze(), bytes);
    pomelo_package_contents(package);
}
