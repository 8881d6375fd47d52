//! Decode speed of both codecs over time, next to a pure-ALU reference loop, every 0.5 s: tells a
//! change of the machine's state (the shared host) from a change in the code. On the development
//! machine the codecs' speed flips between two levels during one process's life while the ALU loop
//! stays put (docs/PERFORMANCE.md, "bimodal").
//!
//! Run: `cargo run --release -p gatekit-benches --bin codec_drift -- [SECONDS]` (default 20).

use gatekit_benches::{ldc, native_codec, workload};
use std::hint::black_box;
use std::time::Instant;
use tokio_util::codec::Decoder;

fn main() {
    let seconds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let w = workload::Workload::new(16);
    println!("16-byte bodies, 1,000 frames per batch; medians of each half second");
    for half in 0..seconds * 2 {
        let end = Instant::now() + std::time::Duration::from_millis(500);
        let (mut dn, mut dl, mut cc) = (vec![], vec![], vec![]);
        while Instant::now() < end {
            let mut b = w.native.clone();
            let t = Instant::now();
            let mut c = native_codec();
            while let Some(p) = c.decode(&mut b).unwrap() {
                black_box(p);
            }
            dn.push(t.elapsed().as_nanos() as f64 / 1000.0);
            let mut a = w.ldc.clone();
            let t = Instant::now();
            let mut c = ldc(w.ldc_prefix);
            while let Some(f) = c.decode(&mut a).unwrap() {
                black_box(f);
            }
            dl.push(t.elapsed().as_nanos() as f64 / 1000.0);
            let t = Instant::now();
            let mut x = black_box(0x1234_5678_9abc_def0u64);
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            black_box(x);
            cc.push(t.elapsed().as_nanos() as f64 / 20_000.0);
        }
        for v in [&mut dn, &mut dl, &mut cc] {
            v.sort_by(f64::total_cmp);
        }
        println!(
            "{:>5.1}s native {:>5.1} ns/frame  ldc {:>5.1}  xorshift {:.2} ns/iter",
            f64::from(half) * 0.5,
            dn[dn.len() / 2],
            dl[dl.len() / 2],
            cc[cc.len() / 2]
        );
    }
}
