//! Codec benchmarks: gatekit's native codec side by side with tokio-util's LengthDelimitedCodec.
//!
//! Both sides get the same bytes to frame: LDC frames exactly the payload of each native frame
//! (kind, message id, route, body) behind a big-endian prefix as wide as the native varint, so both
//! streams have the same layout, each side moves the same payload, and the native side also parses
//! the id and route and checks the route's UTF-8 and shape.
//!
//! Run: `cargo bench -p gatekit-benches --bench codec` (see docs/PERFORMANCE.md).

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatekit_codec::Packet;
use std::hint::black_box;
use std::time::Duration;
use tokio_util::codec::{Decoder, Encoder};

use gatekit_benches::workload::{request, Workload, BODIES, FRAMES};
use gatekit_benches::{ldc, native_codec};

fn inputs(body: usize) -> (BytesMut, BytesMut, usize, Vec<Packet>, Vec<Bytes>) {
    let w = Workload::new(body);
    (w.native, w.ldc, w.ldc_prefix, w.packets, w.payloads)
}

fn decode(c: &mut Criterion) {
    for body in BODIES {
        let (native, ldc_wire, prefix, _, _) = inputs(body);
        let mut g = c.benchmark_group(format!("decode/{body}B"));
        g.throughput(Throughput::Elements(FRAMES as u64));
        g.bench_function("tokio_ldc", |b| {
            b.iter_batched_ref(
                || ldc_wire.clone(),
                |buf| {
                    let mut codec = ldc(prefix);
                    let mut n = 0;
                    while let Some(frame) = codec.decode(buf).unwrap() {
                        black_box(frame);
                        n += 1;
                    }
                    assert_eq!(n, FRAMES);
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function("gatekit_native", |b| {
            b.iter_batched_ref(
                || native.clone(),
                |buf| {
                    let mut codec = native_codec();
                    let mut n = 0;
                    while let Some(packet) = codec.decode(buf).unwrap() {
                        black_box(packet);
                        n += 1;
                    }
                    assert_eq!(n, FRAMES);
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

fn encode(c: &mut Criterion) {
    for body in BODIES {
        let (native, _, prefix, packets, payloads) = inputs(body);
        let mut g = c.benchmark_group(format!("encode/{body}B"));
        g.throughput(Throughput::Elements(FRAMES as u64));
        let mut out = BytesMut::with_capacity(native.len() + FRAMES * 8);
        g.bench_function("tokio_ldc", |b| {
            let mut codec = ldc(prefix);
            b.iter(|| {
                out.clear();
                for p in &payloads {
                    codec.encode(p.clone(), &mut out).unwrap();
                }
                black_box(&out);
            })
        });
        g.bench_function("gatekit_native", |b| {
            let codec = native_codec();
            b.iter(|| {
                out.clear();
                for p in &packets {
                    codec.encode(p, &mut out).unwrap();
                }
                black_box(&out);
            })
        });
        g.finish();
    }
}

/// One 64 KiB frame fed one byte at a time: linear work if the decoder remembers the header. (LDC
/// keeps its default u32 prefix here: one frame, so no layout to match.)
fn dribble(c: &mut Criterion) {
    let body = 64 * 1024 - 32;
    let packet = request(0, body);
    let mut native = BytesMut::new();
    native_codec().encode(&packet, &mut native).unwrap();
    let mut ldc_wire = BytesMut::new();
    ldc(4)
        .encode(Bytes::from(vec![b'x'; native.len()]), &mut ldc_wire)
        .unwrap();
    let mut g = c.benchmark_group("dribble/64KiB");
    g.throughput(Throughput::Bytes(native.len() as u64));
    g.bench_function("tokio_ldc", |b| {
        b.iter(|| {
            let mut codec = ldc(4);
            let mut buf = BytesMut::new();
            let mut got = None;
            for &byte in ldc_wire.iter() {
                buf.put_u8(byte);
                if let Some(f) = codec.decode(&mut buf).unwrap() {
                    got = Some(f);
                }
            }
            assert!(got.is_some());
        })
    });
    g.bench_function("gatekit_native", |b| {
        b.iter(|| {
            let mut codec = native_codec();
            let mut buf = BytesMut::new();
            let mut got = None;
            for &byte in native.iter() {
                buf.put_u8(byte);
                if let Some(p) = codec.decode(&mut buf).unwrap() {
                    got = Some(p);
                }
            }
            assert!(got.is_some());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decode, encode, dribble
}
criterion_main!(benches);
