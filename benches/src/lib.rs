//! Shared workloads for gatekit's benchmarks: the criterion benches in `benches/` and the
//! interleaved ratio tool `codec_ratio`. See docs/PERFORMANCE.md.

pub mod counting_alloc;

use gatekit_codec::{NativeCodec, Oversize};
use tokio_util::codec::LengthDelimitedCodec;

/// The native codec as benchmarked (1 MiB frames allowed, so 16 KiB bodies fit).
pub fn native_codec() -> NativeCodec {
    NativeCodec::new(1 << 20, Oversize::Fail).expect("valid limit")
}

/// tokio-util's LengthDelimitedCodec as benchmarked: a big-endian length prefix of `prefix_len`
/// bytes (1 to 8; tokio-util's default is 4).
///
/// The workloads give it the width of the native varint prefix of the same frames
/// ([`workload::Workload::ldc_prefix`]), so both wire streams have the same length and every frame
/// starts at the same offset on both sides. With a u32 prefix the 16 KiB frames sat 16,403 bytes
/// apart for LDC and 16,402 for gatekit. On the development machine, a chain of frame headers 2
/// mod 4 bytes apart is 2-4x slower to follow than its neighbours, likely because the hardware
/// prefetcher does not follow it. So a one-byte difference in layout made either side up to 4x
/// slower, whatever the codec did (docs/PERFORMANCE.md, "16 KiB decode").
pub fn ldc(prefix_len: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(prefix_len)
        .max_frame_length(1 << 20)
        .new_codec()
}

/// The same payloads for both codecs.
pub mod workload {
    use bytes::{BufMut, Bytes, BytesMut};
    use gatekit_codec::{MessageId, Packet, Request, Route};
    use std::hint::black_box;
    use tokio_util::codec::Decoder;

    /// Frames per batch.
    pub const FRAMES: usize = 1000;
    /// Body sizes measured.
    pub const BODIES: [usize; 3] = [16, 256, 16 * 1024];

    /// A request `i` with a body of `body` bytes to `chat/send`.
    pub fn request(i: usize, body: usize) -> Packet {
        let id = MessageId::new(i as u32 + 1).expect("nonzero");
        Packet::Request(Request::new(
            id,
            Route::from_static("chat/send"),
            vec![b'x'; body],
        ))
    }

    /// FRAMES requests: native wire bytes, and the same frames' payloads (kind, id, route, body)
    /// framed by LDC with a big-endian prefix as wide as the native varint (same layout).
    pub struct Workload {
        /// Native wire bytes.
        pub native: BytesMut,
        /// LDC wire bytes of the same payloads, `ldc_prefix`-byte big-endian lengths.
        pub ldc: BytesMut,
        /// The width of every frame's native varint prefix (1 to 3 here), used for LDC's prefix.
        pub ldc_prefix: usize,
        /// The packets.
        pub packets: Vec<Packet>,
        /// The payloads LDC frames.
        pub payloads: Vec<Bytes>,
    }

    impl Workload {
        /// Builds the workload for one body size.
        pub fn new(body: usize) -> Self {
            let codec = super::native_codec();
            let mut w = Workload {
                native: BytesMut::new(),
                ldc: BytesMut::new(),
                ldc_prefix: 0,
                packets: vec![],
                payloads: vec![],
            };
            for i in 0..FRAMES {
                let p = request(i, body);
                let mut one = BytesMut::new();
                codec.encode(&p, &mut one).expect("fits");
                w.native.extend_from_slice(&one);
                let (rest, _) = gatekit_codec::parsers::varint(&one).expect("a whole frame");
                let prefix = one.len() - rest.len();
                assert!(
                    w.ldc_prefix == 0 || w.ldc_prefix == prefix,
                    "one size per workload"
                );
                w.ldc_prefix = prefix;
                let payload = Bytes::copy_from_slice(&one[prefix..]);
                w.ldc.put_uint(payload.len() as u64, prefix);
                w.ldc.extend_from_slice(&payload);
                w.packets.push(p);
                w.payloads.push(payload);
            }
            assert_eq!(w.ldc.len(), w.native.len(), "the same layout on both sides");
            w
        }
    }

    /// Decodes every frame of `buf` with a fresh native codec; returns how many. Not inlined, so
    /// callgrind's `--toggle-collect='*decode_native*'` counts exactly the decode loop.
    #[inline(never)]
    pub fn decode_native(buf: &mut BytesMut) -> usize {
        let mut codec = super::native_codec();
        let mut n = 0;
        while let Some(p) = codec.decode(buf).expect("valid") {
            black_box(p);
            n += 1;
        }
        n
    }

    /// Decodes every frame of `buf` with a fresh LDC with `prefix_len`-byte lengths; returns how
    /// many (see [`decode_native`]).
    #[inline(never)]
    pub fn decode_ldc(buf: &mut BytesMut, prefix_len: usize) -> usize {
        let mut codec = super::ldc(prefix_len);
        let mut n = 0;
        while let Some(f) = codec.decode(buf).expect("valid") {
            black_box(f);
            n += 1;
        }
        n
    }
}
