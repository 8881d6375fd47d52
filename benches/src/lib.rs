//! Shared workloads for gatekit's benchmarks: the criterion benches in `benches/` and the
//! interleaved ratio tool `codec_ratio`. See docs/PERFORMANCE.md.

use gatekit_codec::{NativeCodec, Oversize};
use tokio_util::codec::LengthDelimitedCodec;

/// The native codec as benchmarked (1 MiB frames allowed, so 16 KiB bodies fit).
pub fn native_codec() -> NativeCodec {
    NativeCodec::new(1 << 20, Oversize::Fail).expect("valid limit")
}

/// tokio-util's LengthDelimitedCodec as benchmarked (u32 big-endian prefix).
pub fn ldc() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(1 << 20)
        .new_codec()
}

/// The same payloads for both codecs.
pub mod workload {
    use bytes::{BufMut, Bytes, BytesMut};
    use gatekit_codec::{MessageId, Packet, Request, Route};

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
    /// framed by LDC with a u32 prefix.
    pub struct Workload {
        /// Native wire bytes.
        pub native: BytesMut,
        /// LDC wire bytes of the same payloads.
        pub ldc: BytesMut,
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
                packets: vec![],
                payloads: vec![],
            };
            for i in 0..FRAMES {
                let p = request(i, body);
                let mut one = BytesMut::new();
                codec.encode(&p, &mut one).expect("fits");
                w.native.extend_from_slice(&one);
                let prefix = gatekit_codec::parsers::varint_len(one.len() as u32).expect("fits");
                let payload = Bytes::copy_from_slice(&one[prefix..]);
                w.ldc.put_u32(payload.len() as u32);
                w.ldc.extend_from_slice(&payload);
                w.packets.push(p);
                w.payloads.push(payload);
            }
            w
        }
    }
}
