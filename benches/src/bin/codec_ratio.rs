//! Interleaved side-by-side ratio of gatekit's native codec against tokio-util's
//! LengthDelimitedCodec, robust to a noisy shared machine: each round times one batch of each in
//! turn (same payloads as `benches/benches/codec.rs`), and the ratio is taken per round, so a slow
//! second hits both sides; the median over rounds is reported.
//!
//! Run: `cargo run --release -p gatekit-benches --bin codec_ratio -- [ROUNDS]` (default 200).

use bytes::{Bytes, BytesMut};
use gatekit_benches::{ldc, native_codec, workload};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio_util::codec::{Decoder, Encoder};

fn time(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    println!("interleaved rounds: {rounds}; per round one batch of 1,000 frames each side (encode: same)");
    println!("| benchmark | LDC ns/frame | gatekit ns/frame | gatekit / LDC speed (median of per-round ratios) |");
    println!("|---|---|---|---|");
    for body in workload::BODIES {
        let w = workload::Workload::new(body);
        let (mut dec_ratio, mut enc_ratio) = (vec![], vec![]);
        let (mut dec_l, mut dec_n, mut enc_l, mut enc_n) = (vec![], vec![], vec![], vec![]);
        let mut out = BytesMut::with_capacity(w.native.len() + 8 * workload::FRAMES);
        for _ in 0..rounds {
            let mut a = w.ldc.clone();
            let mut b = w.native.clone();
            let tl = time(|| {
                let mut c = ldc();
                while let Some(f) = c.decode(&mut a).unwrap() {
                    black_box(f);
                }
            });
            let tn = time(|| {
                let mut c = native_codec();
                while let Some(p) = c.decode(&mut b).unwrap() {
                    black_box(p);
                }
            });
            dec_ratio.push(tl.as_secs_f64() / tn.as_secs_f64());
            dec_l.push(tl.as_nanos() as f64 / workload::FRAMES as f64);
            dec_n.push(tn.as_nanos() as f64 / workload::FRAMES as f64);
            let el = time(|| {
                let mut c = ldc();
                out.clear();
                for p in &w.payloads {
                    c.encode(Bytes::clone(p), &mut out).unwrap();
                }
                black_box(&out);
            });
            let en = time(|| {
                let c = native_codec();
                out.clear();
                for p in &w.packets {
                    c.encode(p, &mut out).unwrap();
                }
                black_box(&out);
            });
            enc_ratio.push(el.as_secs_f64() / en.as_secs_f64());
            enc_l.push(el.as_nanos() as f64 / workload::FRAMES as f64);
            enc_n.push(en.as_nanos() as f64 / workload::FRAMES as f64);
        }
        println!(
            "| decode/{body}B | {:.1} | {:.1} | {:.2}× |",
            median(dec_l),
            median(dec_n),
            median(dec_ratio)
        );
        println!(
            "| encode/{body}B | {:.1} | {:.1} | {:.2}× |",
            median(enc_l),
            median(enc_n),
            median(enc_ratio)
        );
    }
}
