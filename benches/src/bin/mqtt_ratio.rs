//! Interleaved side-by-side ratio of gatekit's MQTT codec against rumqttc's MQTT 3.1.1 codec
//! (`rumqttc::mqttbytes::v4`), robust to a noisy shared machine: each round times one batch of each
//! in turn on the same bytes, the ratio is taken per round, and the median over rounds is reported.
//! The workload (module `workload` below) is shared with the criterion bench
//! `benches/benches/mqtt.rs`, which includes this file.
//!
//! Run: `cargo run --release -p gatekit-benches --bin mqtt_ratio -- [ROUNDS] [decode|encode|all]`
//! (default 200 rounds, all). For callgrind, one decode batch per side and body size:
//! `mqtt_ratio callgrind-gatekit 16` / `mqtt_ratio callgrind-rumqttc 16` (see docs/MQTT.md).

use bytes::BytesMut;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The same PUBLISH packets for both codecs.
pub mod workload {
    use bytes::{Bytes, BytesMut};
    use gatekit_codec::mqtt::{MqttCodec, MqttLimits, Packet, PacketId, Publish, Role, TopicName};
    use rumqttc::mqttbytes::v4 as rumq;
    use rumqttc::mqttbytes::QoS as RumqQoS;

    /// Packets per batch.
    pub const PACKETS: usize = 1000;
    /// Payload sizes measured.
    pub const PAYLOADS: [usize; 3] = [16, 256, 16 * 1024];
    /// The maximum packet size both sides are given (16 KiB payloads fit).
    pub const MAX_PACKET: usize = 1 << 20;
    /// The topic: an mqant request (`module/HD_func/msgid`).
    pub const TOPIC: &str = "echo/HD_say/1";

    /// gatekit's codec as the gate uses it (decodes client packets, encodes server packets).
    pub fn gatekit_server() -> MqttCodec {
        MqttCodec::new(
            Role::Server,
            MqttLimits::default().with_max_packet_size(MAX_PACKET),
        )
        .expect("valid limits")
    }

    /// PACKETS QoS 1 PUBLISH packets with `payload`-byte payloads and packet ids 1, 2, ...: the wire
    /// bytes (identical from both encoders, checked), and each side's packet values to encode.
    pub struct Workload {
        /// The stream of packets.
        pub wire: BytesMut,
        /// gatekit's packets.
        pub gatekit: Vec<Packet>,
        /// rumqttc's packets.
        pub rumqttc: Vec<rumq::Packet>,
    }

    impl Workload {
        /// Builds the workload for one payload size.
        pub fn new(payload: usize) -> Workload {
            let codec = gatekit_server();
            let body = Bytes::from(vec![b'x'; payload]);
            let mut w = Workload {
                wire: BytesMut::new(),
                gatekit: vec![],
                rumqttc: vec![],
            };
            let mut theirs = BytesMut::new();
            for i in 0..PACKETS {
                let id = (i % 65_535) as u16 + 1;
                let p = Packet::Publish(Publish::qos1(
                    PacketId::new(id).expect("nonzero"),
                    TopicName::from_static(TOPIC),
                    body.clone(),
                ));
                codec.encode(&p, &mut w.wire).expect("fits");
                let mut r = rumq::Publish::from_bytes(TOPIC, RumqQoS::AtLeastOnce, body.clone());
                r.pkid = id;
                let r = rumq::Packet::Publish(r);
                r.write(&mut theirs, MAX_PACKET).expect("fits");
                w.gatekit.push(p);
                w.rumqttc.push(r);
            }
            assert_eq!(w.wire, theirs, "both encoders write the same bytes");
            w
        }
    }

    /// Decodes every packet of `buf` with gatekit; returns how many.
    #[inline(never)]
    pub fn decode_gatekit(buf: &mut BytesMut) -> usize {
        let mut codec = gatekit_server();
        let mut n = 0;
        while let Some(p) = codec.decode(buf).expect("valid") {
            std::hint::black_box(p);
            n += 1;
        }
        n
    }

    /// Decodes every packet of `buf` with rumqttc; returns how many.
    #[inline(never)]
    pub fn decode_rumqttc(buf: &mut BytesMut) -> usize {
        let mut n = 0;
        while !buf.is_empty() {
            let p = rumq::Packet::read(buf, MAX_PACKET).expect("valid");
            std::hint::black_box(p);
            n += 1;
        }
        n
    }

    /// Encodes every packet with gatekit into `out`.
    #[inline(never)]
    pub fn encode_gatekit(packets: &[Packet], out: &mut BytesMut) {
        let codec = gatekit_server();
        for p in packets {
            codec.encode(p, out).expect("fits");
        }
    }

    /// Encodes every packet with rumqttc into `out`.
    #[inline(never)]
    pub fn encode_rumqttc(packets: &[rumq::Packet], out: &mut BytesMut) {
        for p in packets {
            p.write(out, MAX_PACKET).expect("fits");
        }
    }
}

fn time(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(side) = args.get(1).and_then(|a| a.strip_prefix("callgrind-")) {
        // One batch of decodes for one side, for `valgrind --tool=callgrind`.
        let payload: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
        let w = workload::Workload::new(payload);
        let mut buf = w.wire.clone();
        let n = match side {
            "gatekit" => workload::decode_gatekit(&mut buf),
            "rumqttc" => workload::decode_rumqttc(&mut buf),
            other => panic!("unknown side {other}"),
        };
        assert_eq!(n, workload::PACKETS);
        return;
    }
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let what = args.get(2).map(String::as_str).unwrap_or("all");
    println!(
        "interleaved rounds: {rounds}; per round one batch of {} QoS 1 PUBLISH packets each side",
        workload::PACKETS
    );
    println!("| benchmark | rumqttc ns/packet | gatekit ns/packet | gatekit / rumqttc speed (median of per-round ratios) |");
    println!("|---|---|---|---|");
    for payload in workload::PAYLOADS {
        let w = workload::Workload::new(payload);
        let (mut dec_ratio, mut enc_ratio) = (vec![], vec![]);
        let (mut dec_r, mut dec_g, mut enc_r, mut enc_g) = (vec![], vec![], vec![], vec![]);
        let mut out = BytesMut::with_capacity(w.wire.len() + 8 * workload::PACKETS);
        let per = |d: Duration| d.as_nanos() as f64 / workload::PACKETS as f64;
        for _ in 0..rounds {
            if what != "encode" {
                let mut a = w.wire.clone();
                let mut b = w.wire.clone();
                let tr = time(|| {
                    black_box(workload::decode_rumqttc(&mut a));
                });
                let tg = time(|| {
                    black_box(workload::decode_gatekit(&mut b));
                });
                dec_ratio.push(tr.as_secs_f64() / tg.as_secs_f64());
                dec_r.push(per(tr));
                dec_g.push(per(tg));
            }
            if what != "decode" {
                let er = time(|| {
                    out.clear();
                    workload::encode_rumqttc(&w.rumqttc, &mut out);
                    black_box(&out);
                });
                let eg = time(|| {
                    out.clear();
                    workload::encode_gatekit(&w.gatekit, &mut out);
                    black_box(&out);
                });
                enc_ratio.push(er.as_secs_f64() / eg.as_secs_f64());
                enc_r.push(per(er));
                enc_g.push(per(eg));
            }
        }
        if what != "encode" {
            println!(
                "| decode/{payload}B | {:.1} | {:.1} | {:.2}× |",
                median(dec_r),
                median(dec_g),
                median(dec_ratio)
            );
        }
        if what != "decode" {
            println!(
                "| encode/{payload}B | {:.1} | {:.1} | {:.2}× |",
                median(enc_r),
                median(enc_g),
                median(enc_ratio)
            );
        }
    }
}
