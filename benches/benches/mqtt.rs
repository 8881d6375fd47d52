//! MQTT benchmarks: gatekit's MQTT codec side by side with rumqttc's MQTT 3.1.1 codec
//! (`rumqttc::mqttbytes::v4::Packet::read` / `write`), on the same bytes: 1,000 QoS 1 PUBLISH
//! packets to `echo/HD_say/1` with 16 B, 256 B and 16 KiB payloads (both encoders write identical
//! bytes, checked when the workload is built). gatekit returns zero-copy `Bytes` slices for the topic
//! and payload and validates the topic (UTF-8, no NUL, no wildcards); rumqttc copies the topic into a
//! `String` after checking its UTF-8.
//!
//! Run: `cargo bench -p gatekit-benches --bench mqtt` (see docs/MQTT.md, "Performance"); the
//! interleaved `mqtt_ratio` binary gives the robust ratios.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

/// The shared workload lives in the ratio binary's file.
#[allow(dead_code)]
#[path = "../src/bin/mqtt_ratio.rs"]
mod mqtt_ratio;

use mqtt_ratio::workload::{self, Workload, PACKETS, PAYLOADS};

fn decode(c: &mut Criterion) {
    for payload in PAYLOADS {
        let w = Workload::new(payload);
        let mut g = c.benchmark_group(format!("mqtt_decode/{payload}B"));
        g.throughput(Throughput::Elements(PACKETS as u64));
        g.bench_function("rumqttc_v4", |b| {
            b.iter_batched_ref(
                || w.wire.clone(),
                |buf| assert_eq!(workload::decode_rumqttc(buf), PACKETS),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("gatekit_mqtt", |b| {
            b.iter_batched_ref(
                || w.wire.clone(),
                |buf| assert_eq!(workload::decode_gatekit(buf), PACKETS),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

fn encode(c: &mut Criterion) {
    for payload in PAYLOADS {
        let w = Workload::new(payload);
        let mut g = c.benchmark_group(format!("mqtt_encode/{payload}B"));
        g.throughput(Throughput::Elements(PACKETS as u64));
        let mut out = BytesMut::with_capacity(w.wire.len() + PACKETS * 8);
        g.bench_function("rumqttc_v4", |b| {
            b.iter(|| {
                out.clear();
                workload::encode_rumqttc(&w.rumqttc, &mut out);
                black_box(&out);
            })
        });
        g.bench_function("gatekit_mqtt", |b| {
            b.iter(|| {
                out.clear();
                workload::encode_gatekit(&w.gatekit, &mut out);
                black_box(&out);
            })
        });
        g.finish();
    }
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
