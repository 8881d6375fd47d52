//! The `Connection` state machine's property test, for every built-in protocol (native, MQTT,
//! pomelo): random sequences of client packets split at random points (garbage and oversized frames
//! among them), time steps on a virtual clock, back-end results (some for calls long gone), partial
//! writes, kicks, pushes, bind/unbind, shutdown, EOF and I/O errors. After every call into the
//! connection, a protocol-neutral model (`common/protocol_model/`) checks:
//!
//! - **output**: exactly the packets the model expects, in order: the welcome or the refusal, each
//!   answer with the status and body the back end gave as the protocol maps them (MQTT's envelope,
//!   pomelo's `{"code":500}`), pushes, pongs, MQTT's PUBACK and SUBACK, pomelo's heartbeat right
//!   after the ack, the closing packet;
//! - **ledger** (from what the client saw, not from the model): each answer answers a request the
//!   gate decoded, once, in request order when one call is in flight; each push is the next one
//!   accepted; at the end every request is answered or was lost in a close, whose reason is noted;
//! - **lifecycle**: Connect once, only after a successful hello; Disconnect once, with the close
//!   reason, iff Connect was yielded, when the connection ends; no action after it;
//! - **limits**: at most `max_in_flight` calls, not reading at the limit; unwritten output within
//!   `max_write_queue`, plus the closing packet and its `PACKET_OVERHEAD` once closing;
//! - **counters** received and sent; the timer; the protocol's idle timeout (native 3 heartbeats,
//!   MQTT 1.5 × keep-alive, pomelo 2 heartbeats) closing `idle_timeout`; storage heartbeats (as
//!   the model counts them, and never two within one interval).
//!
//! With the `fault-injection` feature, the tests at the end show the property fails under each of
//! the agent's injected defects.

#[path = "common/protocol_model/mod.rs"]
mod model;

use model::{
    run, CPkt, Case, GenResult, MqttWire, NativeWire, Params, PomeloWire, Step, WireModel,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use std::ops::RangeInclusive;

// ----- generated inputs -----

fn params(frames: RangeInclusive<usize>) -> impl Strategy<Value = Params> {
    (
        (1usize..=4, 32usize..=1500, frames, 1usize..=64),
        (
            500u64..=20_000,
            1_000u64..=15_000,
            1_000u64..=15_000,
            1u64..=3_000,
        ),
        (1u64..=40, 1u64..=120, any::<bool>()),
    )
        .prop_map(
            |((mif, mwq, frame, chunk), (hb, bt, hs, linger), (ping, idle, fr))| Params {
                max_in_flight: mif,
                max_write_queue: mwq,
                max_frame: frame,
                max_chunk: chunk,
                times_ms: [hb, bt, hs, linger],
                ping_idle_s: [ping, idle],
                final_reads: fr,
            },
        )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

/// A weighted union of the entries whose weight is not zero.
fn weighted<T: std::fmt::Debug + 'static>(
    entries: Vec<(u32, BoxedStrategy<T>)>,
) -> impl Strategy<Value = T> {
    prop::strategy::Union::new_weighted(entries.into_iter().filter(|(w, _)| *w > 0).collect())
}

fn heartbeat() -> impl Strategy<Value = u16> {
    prop_oneof![3 => Just(0u16), 3 => 1u16..=60, 1 => any::<u16>()]
}

/// Client packets. `calm` leaves out those that end the connection (a second handshake or ack,
/// goodbye, garbage, oversized frames, bad routes) so that runs last long.
fn cpkt(calm: bool) -> impl Strategy<Value = CPkt> {
    let end = u32::from(!calm);
    weighted(vec![
        (
            end,
            heartbeat()
                .prop_map(|heartbeat| CPkt::Hello { heartbeat })
                .boxed(),
        ),
        (end, Just(CPkt::BadHello).boxed()),
        (end, Just(CPkt::Ack).boxed()),
        (
            30,
            (0..3usize, body(), any::<bool>())
                .prop_map(|(route, body, qos1)| CPkt::Request { route, body, qos1 })
                .boxed(),
        ),
        (
            15,
            (0..3usize, body())
                .prop_map(|(route, body)| CPkt::Notify { route, body })
                .boxed(),
        ),
        (15, Just(CPkt::Ping).boxed()),
        (5, any::<u8>().prop_map(CPkt::Extra).boxed()),
        (end, Just(CPkt::Goodbye).boxed()),
        (
            end,
            prop::collection::vec(any::<u8>(), 0..12)
                .prop_map(CPkt::Garbage)
                .boxed(),
        ),
        (end, Just(CPkt::Oversize).boxed()),
        (end, Just(CPkt::BadRoute).boxed()),
    ])
}

fn gen_result() -> impl Strategy<Value = GenResult> {
    prop_oneof![
        4 => (0usize..600, any::<bool>()).prop_map(|(len, json)| GenResult::Ok { len, json }),
        1 => (0usize..2_500).prop_map(|len| GenResult::Ok { len, json: false }),
        1 => Just(GenResult::NotFound),
        1 => (0usize..40).prop_map(GenResult::Failed),
        1 => Just(GenResult::Busy),
        1 => Just(GenResult::Panicked),
    ]
}

fn step(calm: bool) -> impl Strategy<Value = Step> {
    let end = u32::from(!calm);
    let time = prop_oneof![12 => 0u64..2_000, 6 => 0u64..20_000, 1 => 0u64..=120_000];
    weighted(vec![
        (
            30,
            (
                prop::collection::vec(cpkt(calm), 1..5),
                prop::collection::vec(any::<Index>(), 0..4),
            )
                .prop_map(|(pkts, cuts)| Step::Send { pkts, cuts })
                .boxed(),
        ),
        (
            20,
            (time, any::<bool>())
                .prop_map(|(ms, precise)| Step::Time { ms, precise })
                .boxed(),
        ),
        (
            20,
            (any::<Index>(), prop::bool::weighted(0.15), gen_result())
                .prop_map(|(pick, stale, result)| Step::Result {
                    pick,
                    stale,
                    result,
                })
                .boxed(),
        ),
        (
            20,
            (0u8..=100)
                .prop_map(|percent| Step::Read { percent })
                .boxed(),
        ),
        (end, Just(Step::Kick).boxed()),
        (5, (0usize..200).prop_map(|len| Step::Push { len }).boxed()),
        (3, (0u8..3).prop_map(Step::Bind).boxed()),
        (2, Just(Step::Unbind).boxed()),
        (end, Just(Step::Shutdown).boxed()),
        (end, Just(Step::Eof).boxed()),
        (end, Just(Step::IoError).boxed()),
    ])
}

/// Mostly a good handshake (and pomelo's ack) first.
fn first_step() -> impl Strategy<Value = Option<Step>> {
    let send = |pkts, cuts| Some(Step::Send { pkts, cuts });
    let cuts = || prop::collection::vec(any::<Index>(), 0..3);
    let hello = |heartbeat| vec![CPkt::Hello { heartbeat }, CPkt::Ack];
    prop_oneof![
        8 => (heartbeat(), cuts()).prop_map(move |(hb, cuts)| send(hello(hb), cuts)),
        1 => (prop::collection::vec(cpkt(false), 1..4), cuts())
            .prop_map(move |(pkts, cuts)| send(pkts, cuts)),
        1 => Just(send(vec![CPkt::BadHello], vec![])),
        1 => Just(None),
    ]
}

fn case<M: WireModel>() -> impl Strategy<Value = Case> {
    (params(M::FRAMES), any::<bool>()).prop_flat_map(|(p, calm)| {
        (
            Just(p),
            first_step(),
            prop::collection::vec(step(calm), 0..200),
        )
    })
}

fn proptest_config() -> Config {
    Config {
        // PROPTEST_CASES=n runs more.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn native_connection_invariants_hold(case in case::<NativeWire>()) {
        run::<NativeWire>(case, |_| {});
    }

    #[test]
    fn mqtt_connection_invariants_hold(case in case::<MqttWire>()) {
        run::<MqttWire>(case, |_| {});
    }

    #[test]
    fn pomelo_connection_invariants_hold(case in case::<PomeloWire>()) {
        run::<PomeloWire>(case, |_| {});
    }
}

/// Found by the MQTT property at frames of 64 to 95 bytes: an answer over the frame limit becomes
/// `internal error: response too large`, but when that did not fit either (mqant's envelope and
/// the request's topic take some 90 bytes) the answer was dropped and the connection stayed open,
/// so the client waited for it forever. Any protocol whose error answer exceeds the frame limit
/// had it (native: frames under 24 bytes). Now the connection closes `internal`, and that close
/// explains the loss. Simplified from the property's shrunk case.
#[test]
fn an_answer_that_fits_no_frame_is_not_lost_silently() {
    let params = Params {
        max_in_flight: 1,
        max_write_queue: 89,
        max_frame: 75,
        max_chunk: 44,
        times_ms: [4_323, 4_866, 13_531, 2_427],
        ping_idle_s: [21, 105],
        final_reads: false,
    };
    let hello = Step::Send {
        pkts: vec![CPkt::Hello { heartbeat: 0 }],
        cuts: vec![],
    };
    let request = CPkt::Request {
        route: 0,
        body: vec![],
        qos1: false,
    };
    // Any index picks the one call in flight.
    let pick = any::<Index>().new_tree(&mut TestRunner::deterministic());
    let pick = pick.unwrap().current();
    let steps = vec![
        Step::Send {
            pkts: vec![request],
            cuts: vec![],
        },
        Step::Result {
            pick,
            stale: false,
            result: GenResult::Ok {
                len: 200,
                json: false,
            },
        },
    ];
    // Failed with "mqtt: request 1 never answered, yet no close lost it (ended eof)".
    run::<MqttWire>((params, Some(hello), steps), |_| {});
}

/// Found by the pomelo property at frames under some 420 bytes: docs/POMELO.md says every close the
/// gate decides sends a kick first, but the kick's reason was cut to 200 characters, not to the
/// frame limit (the native CLOSE is), so a long reason (here the error text of an oversized
/// package) made a kick over the limit, and the connection closed without it. Now the reason is
/// cut to fit (`Pomelo::encode_close`).
#[test]
fn a_pomelo_close_always_kicks() {
    let params = Params {
        max_in_flight: 1,
        max_write_queue: 1_000,
        max_frame: 112,
        max_chunk: 64,
        times_ms: [10_102, 6_330, 9_753, 1_068],
        ping_idle_s: [34, 81],
        final_reads: true,
    };
    let send = |pkts| Step::Send { pkts, cuts: vec![] };
    let hello = send(vec![CPkt::Hello { heartbeat: 0 }, CPkt::Ack]);
    // Failed with "the gate wrote [], the model expects [Close { kind: \"kick\", text: None }]".
    run::<PomeloWire>(
        (params, Some(hello), vec![send(vec![CPkt::Oversize])]),
        |_| {},
    );
}

/// The property fails when the agent breaks a guarantee: each fault of agent/src/faults.rs, set in
/// the connection's own config (no global state, so tests run in parallel), on a fixed seed that
/// passes without it. Not shrunk: the first failure names the broken guarantee most directly.
#[cfg(feature = "fault-injection")]
mod faults {
    use super::*;
    use gatekit_agent::Faults;
    use proptest::test_runner::{RngAlgorithm, TestError, TestRng};

    /// The property's failure on 64 cases of a fixed seed, with `fault` injected ("": none).
    fn failure<M: WireModel>(fault: &str) -> Option<String> {
        let faults: Faults = fault.parse().unwrap();
        let config = Config {
            cases: 64,
            failure_persistence: None,
            max_shrink_iters: 0,
            ..Config::default()
        };
        let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let result = TestRunner::new_with_rng(config, rng).run(&case::<M>(), |case| {
            run::<M>(case, |cfg| cfg.faults = faults.clone());
            Ok(())
        });
        match result {
            Ok(()) => None,
            Err(TestError::Fail(why, _)) => Some(why.to_string()),
            Err(e) => panic!("{} {fault}: {e}", M::NAME),
        }
    }

    /// Under `fault`, every protocol's property fails, saying `says`.
    fn caught(fault: &str, says: &str) {
        for (name, why) in [
            ("native", failure::<NativeWire>(fault)),
            ("mqtt", failure::<MqttWire>(fault)),
            ("pomelo", failure::<PomeloWire>(fault)),
        ] {
            let why = why.unwrap_or_else(|| panic!("{name} {fault}: not caught"));
            eprintln!("{name} {fault}: {why}");
            assert!(
                why.contains(says),
                "{name} {fault}: expected {says:?}, got {why}"
            );
        }
    }

    #[test]
    fn the_seed_passes_without_faults() {
        assert_eq!(failure::<NativeWire>(""), None);
        assert_eq!(failure::<MqttWire>(""), None);
        assert_eq!(failure::<PomeloWire>(""), None);
    }

    #[test]
    fn a_dropped_response_is_caught() {
        caught(
            "drop-response=1",
            "the gate wrote [], the model expects [Response",
        );
    }

    #[test]
    fn a_dropped_push_is_caught() {
        caught("drop-push=1", "the gate wrote [], the model expects [Push");
    }

    #[test]
    fn swapped_responses_are_caught() {
        caught("swap-responses=2", "the model expects [Response { id: 2");
    }

    #[test]
    fn a_withheld_disconnect_is_caught() {
        caught("drop-disconnect=1", "Disconnect once iff Connect");
    }

    #[test]
    fn a_skipped_heartbeat_is_caught() {
        caught("skip-heartbeat=1", "storage heartbeats");
    }

    #[test]
    fn a_slow_consumer_kept_open_is_caught() {
        caught("skip-slow-consumer-close", "the model expects []");
    }
}
