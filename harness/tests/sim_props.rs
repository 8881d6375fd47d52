//! Property tests of the simulation: for random scenarios (client counts, rates, windows, mixes of
//! every behaviour, back-end latency and faults, gate options, seeds), every invariant holds; and a
//! run is a pure function of its scenario (same seed, same report; other seed, other report).

use gatekit_harness::report::{Report, Thresholds};
use gatekit_harness::scenario::{self, BackendProfile, Dur, GateProfile, Mix, Scenario};
use gatekit_harness::sim;
use proptest::prelude::*;

/// Runs a scenario in sim mode and builds its report (no thresholds).
fn report_of(s: &Scenario) -> Report {
    let data = sim::run(s, |_, _, _| {});
    Report::new(&data, &Thresholds::default())
}

/// Every invariant held; on failure, says which one, with its sample and the scenario as TOML.
fn assert_all_held(s: &Scenario, report: &Report) -> Result<(), TestCaseError> {
    assert_eq!(
        report.invariants.len(),
        5,
        "expected the five invariants: {:?}",
        report.invariants.iter().map(|v| v.name).collect::<Vec<_>>()
    );
    for v in &report.invariants {
        prop_assert!(
            v.held(),
            "invariant {} VIOLATED ({} of {} checked): {}\nsample:\n  {}\nscenario:\n{}",
            v.name,
            v.violations,
            v.checked,
            v.what,
            v.sample.join("\n  "),
            s.to_toml()
        );
        prop_assert!(
            v.checked > 0 || v.name == "heartbeat" || v.name == "memory",
            "invariant {} checked nothing\nscenario:\n{}",
            v.name,
            s.to_toml()
        );
    }
    prop_assert!(report.passed(), "report failed:\n{report}");
    Ok(())
}

/// A weight that is often exactly zero (a behaviour absent from the mix).
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..1.0f64]
}

prop_compose! {
    fn mix()(
        normal in weight(),
        burst in weight(),
        drop in weight(),
        drop_mid_frame in weight(),
        slow_consumer in weight(),
        slowloris in weight(),
        dribble in weight(),
        garbage in weight(),
    ) -> Mix {
        // The sum must be positive: an all-zero draw becomes all normal.
        let normal = if normal + burst + drop + drop_mid_frame + slow_consumer + slowloris
            + dribble + garbage == 0.0 { 1.0 } else { normal };
        Mix { normal, burst, drop, drop_mid_frame, slow_consumer, slowloris, dribble, garbage }
    }
}

prop_compose! {
    fn backend()(
        min_ms in 0u64..200,
        spread_ms in 0u64..300,
        error_rate in 0.0..0.2f64,
        timeout_rate in 0.0..0.2f64,
        panic_rate in 0.0..0.2f64,
    ) -> BackendProfile {
        BackendProfile {
            latency_min: Dur::millis(min_ms),
            latency_max: Dur::millis(min_ms + spread_ms),
            error_rate,
            timeout_rate,
            panic_rate,
        }
    }
}

prop_compose! {
    fn gate()(
        heartbeat_s in 1u64..=120,
        max_in_flight in 1usize..=4,
        // Log-uniform from 4 KiB (a response or push of the largest body, 2 KiB, must fit in the
        // queue of a client that reads: a single packet over the limit closes it as a slow
        // consumer by design) to 4 MiB.
        queue_log2 in 12u32..=22,
        queue_frac in 0.0..1.0f64,
        backend_timeout_s in 1u64..=10,
    ) -> GateProfile {
        let lo = 1usize << queue_log2;
        GateProfile {
            heartbeat: Dur::secs(heartbeat_s),
            max_in_flight,
            max_write_queue: lo + (lo as f64 * queue_frac) as usize,
            backend_timeout: Dur::secs(backend_timeout_s),
            ..GateProfile::default()
        }
    }
}

prop_compose! {
    fn scenario()(
        clients in 1usize..200,
        rate in prop_oneof![1 => Just(0.0), 4 => 0.0..50.0f64],
        window in 1usize..=8,
        notify_ratio in 0.0..=1.0f64,
        body_size in 16usize..=2048,
        burst_size in 1usize..=20,
        push_rate in prop_oneof![1 => Just(0.0), 3 => 0.0..100.0f64],
        bind_users in any::<bool>(),
        duration_s in 1u64..=60,
        ramp_up_ms in 0u64..=5000,
        seed in any::<u64>(),
        (mix, backend, gate) in (mix(), backend(), gate()),
    ) -> Scenario {
        Scenario {
            name: "prop".into(),
            clients,
            rate,
            window,
            notify_ratio,
            body_size,
            burst_size,
            push_rate,
            bind_users,
            duration: Dur::secs(duration_s),
            ramp_up: Dur::millis(ramp_up_ms),
            seed,
            mix,
            backend,
            gate,
            ..Scenario::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        // Each case is a whole simulated run: keep shrinking bounded.
        max_shrink_iters: 64,
        // A failure prints the whole scenario as TOML (seed included): that is the reproducer.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_invariant_holds_in_random_scenarios(s in scenario()) {
        prop_assert_eq!(s.validate(), Ok(()));
        let mut s = s;
        if std::env::var("EXPLORE").is_ok() && s.push_rate > 0.0 { s.mix.slow_consumer = 0.0; if s.mix.normal + s.mix.burst + s.mix.drop + s.mix.drop_mid_frame + s.mix.slowloris + s.mix.dribble + s.mix.garbage == 0.0 { s.mix.normal = 1.0; } }
        if std::env::var("EXPLORE").is_ok() { s.backend.latency_min = Dur::millis(0); s.backend.latency_max = Dur::millis(20); s.gate.backend_timeout = Dur::secs(1); s.backend.timeout_rate = s.backend.timeout_rate.min(0.02); if s.mix.dribble > 0.0 { s.body_size = s.body_size.min(200); } }
        let started = std::time::Instant::now();
        let report = report_of(&s);
        eprintln!("PROBE {:?} clients {} rate {:.1} push {:.1} dur {}", started.elapsed(), s.clients, s.rate, s.push_rate, s.duration);
        assert_all_held(&s, &report)?;
    }
}

/// Small versions of some built-ins (a few clients, a few seconds).
fn small(name: &str, clients: usize, secs: u64) -> Scenario {
    let mut s = scenario::builtin(name).unwrap_or_else(|| panic!("builtin {name}"));
    s.mode = scenario::Mode::Sim;
    s.clients = clients;
    s.duration = Dur::secs(secs);
    s
}

#[test]
fn same_seed_same_report() {
    for s in [
        small("churn", 150, 3),
        small("backend_faults", 100, 3),
        small("slow_consumer", 40, 2),
        small("garbage", 100, 2),
        small("slowloris", 60, 2),
    ] {
        let a = report_of(&s);
        let b = report_of(&s);
        assert_eq!(
            a.to_json(),
            b.to_json(),
            "JSON of {} differs between runs",
            s.name
        );
        assert_eq!(
            a.to_string(),
            b.to_string(),
            "text of {} differs between runs",
            s.name
        );
        assert_eq!(a, b, "report of {}", s.name);
        assert!(a.passed(), "{}:\n{a}", s.name);
    }
}

#[test]
fn different_seed_different_report() {
    for s in [
        small("churn", 150, 3),
        small("backend_faults", 100, 3),
        small("burst", 50, 3),
    ] {
        let a = report_of(&s);
        let other = Scenario {
            seed: s.seed.wrapping_add(1),
            ..s.clone()
        };
        let b = report_of(&other);
        assert_ne!(
            a.to_json(),
            b.to_json(),
            "{}: seeds {} and {}",
            s.name,
            s.seed,
            other.seed
        );
        assert_ne!(a.to_string(), b.to_string(), "{}", s.name);
        // Not just the seed field: the measurements differ.
        assert_ne!(
            (
                &a.messages,
                &a.latency,
                &a.close_reasons,
                &a.responses_by_status
            ),
            (
                &b.messages,
                &b.latency,
                &b.close_reasons,
                &b.responses_by_status
            ),
            "{}: only the seed changed in the report",
            s.name
        );
    }
}
