//! Interleaved side-by-side ratio of gatekit's native codec against tokio-util's
//! LengthDelimitedCodec, robust to a noisy shared machine: each round times one batch of each in
//! turn (same payloads as `benches/benches/codec.rs`), and the ratio is taken per round, so a slow
//! second hits both sides; the median over rounds is reported.
//!
//! Run: `cargo run --release -p gatekit-benches --bin codec_ratio -- [ROUNDS]` (default 200).
//!
//! For callgrind, one decode batch of one side and body size (16, 256 or 16384):
//! `codec_ratio callgrind-gatekit 16384` / `codec_ratio callgrind-ldc 16384`, with
//! `--toggle-collect='*decode_native*'` / `'*decode_ldc*'` (see docs/PERFORMANCE.md).
//!
//! `codec_ratio layout [ROUNDS]` (default 30) decodes bodies of 16,381 to 16,388 bytes, with LDC
//! on a u32 prefix (frames one byte further apart than gatekit's) and on a prefix as wide as the
//! native varint (the same layout, as the benchmarks now use): it shows the decode time following
//! the distance between frames, not the codec.

use bytes::{Bytes, BytesMut};
use gatekit_benches::{ldc, native_codec, workload};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio_util::codec::Encoder;

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
    let args: Vec<String> = std::env::args().collect();
    if let Some(side) = args.get(1).and_then(|a| a.strip_prefix("callgrind-")) {
        // One batch of decodes for one side, for `valgrind --tool=callgrind`.
        let body: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
        let w = workload::Workload::new(body);
        let n = match side {
            "gatekit" => workload::decode_native(&mut w.native.clone()),
            "ldc" => workload::decode_ldc(&mut w.ldc.clone(), w.ldc_prefix),
            other => panic!("unknown side {other} (gatekit or ldc)"),
        };
        assert_eq!(n, workload::FRAMES);
        return;
    }
    if args.get(1).map(String::as_str) == Some("layout") {
        layout(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30));
        return;
    }
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
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
                black_box(workload::decode_ldc(&mut a, w.ldc_prefix));
            });
            let tn = time(|| {
                black_box(workload::decode_native(&mut b));
            });
            dec_ratio.push(tl.as_secs_f64() / tn.as_secs_f64());
            dec_l.push(tl.as_nanos() as f64 / workload::FRAMES as f64);
            dec_n.push(tn.as_nanos() as f64 / workload::FRAMES as f64);
            let el = time(|| {
                let mut c = ldc(w.ldc_prefix);
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

/// Follows the varint prefixes of a native stream without decoding anything: the memory cost of
/// reaching each frame's header.
#[inline(never)]
fn walk_headers(wire: &[u8]) -> usize {
    let (mut at, mut frames) = (0, 0);
    while at < wire.len() {
        let (rest, len) = gatekit_codec::parsers::varint(&wire[at..]).expect("a whole stream");
        at = wire.len() - rest.len() + len as usize;
        frames += 1;
    }
    frames
}

/// Decode time against the distance between frames: bodies of 16,381 to 16,388 bytes, gatekit
/// against LDC with a u32 prefix (frames 1 byte further apart than gatekit's) and against LDC with
/// a prefix as wide as the varint (the same layout). Each round clones both inputs, then times both
/// sides, as the main loop does; then the bare header walk is timed in rounds of its own.
fn layout(rounds: usize) {
    println!("layout: {rounds} rounds per line, 1,000 frames per batch; ns/frame, ratio = LDC time / gatekit time (median per round)");
    println!("| body B | gatekit stride B | header walk ns (no codec) | gatekit ns | LDC u32: stride B | ns | ratio | LDC same width: stride B | ns | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for body in 16_381..=16_388 {
        let w = workload::Workload::new(body);
        let mut u32_wire = BytesMut::new();
        for p in &w.payloads {
            ldc(4).encode(Bytes::clone(p), &mut u32_wire).unwrap();
        }
        let per = |d: Duration| d.as_nanos() as f64 / workload::FRAMES as f64;
        let (mut g, mut l4, mut r4, mut ls, mut rs) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            for same in [false, true] {
                let (wire, prefix) = if same {
                    (&w.ldc, w.ldc_prefix)
                } else {
                    (&u32_wire, 4)
                };
                let mut a = wire.clone();
                let mut b = w.native.clone();
                let tl = time(|| {
                    black_box(workload::decode_ldc(&mut a, prefix));
                });
                let tn = time(|| {
                    black_box(workload::decode_native(&mut b));
                });
                g.push(per(tn));
                let ratio = tl.as_secs_f64() / tn.as_secs_f64();
                if same {
                    ls.push(per(tl));
                    rs.push(ratio);
                } else {
                    l4.push(per(tl));
                    r4.push(ratio);
                }
            }
        }
        // The bare walk in rounds of its own, after the codecs': what runs just before a batch
        // changes the state of the caches, and so the time of a memory-bound batch.
        let mut walk = vec![];
        for _ in 0..rounds {
            let b = w.native.clone();
            walk.push(per(time(|| {
                assert_eq!(black_box(walk_headers(&b)), workload::FRAMES);
            })));
        }
        let stride = |wire: &BytesMut| wire.len() / workload::FRAMES;
        println!(
            "| {body} | {} | {:.1} | {:.1} | {} | {:.1} | {:.2}× | {} | {:.1} | {:.2}× |",
            stride(&w.native),
            median(walk),
            median(g),
            stride(&u32_wire),
            median(l4),
            median(r4),
            stride(&w.ldc),
            median(ls),
            median(rs)
        );
    }
}
