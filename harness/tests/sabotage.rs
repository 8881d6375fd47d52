//! The invariant checks fail when they should, in sim mode.
//!
//! - Defects in the harness's own glue (`sim::Sabotage`: a swallowed Disconnect, a learner that
//!   double-counts, unthrottled heartbeats, a false buffer bound) are each caught by their
//!   invariant, and only by it.
//! - Defects injected into the gate's real code (feature `fault-injection`, `gatekit_agent::Faults`:
//!   `Connection` dropping a response, a push or a Disconnect, swapping two responses, skipping a
//!   heartbeat or the slow-consumer close) are each caught by the invariant that guards what they
//!   break.
//!
//! In every case the report fails and says VIOLATED, and the same scenario without the defect
//! passes. `faults_tcp.rs` does the same over loopback TCP, through the `gatekit` binary.

use gatekit_harness::invariants::{Status, Verdict};
use gatekit_harness::report::{Report, Thresholds};
use gatekit_harness::run::RunData;
use gatekit_harness::scenario::{self, Dur, Scenario};
use gatekit_harness::sim::{self, Sabotage};

fn builtin(name: &str, clients: usize, duration: Dur) -> Scenario {
    let mut s = scenario::builtin(name).unwrap_or_else(|| panic!("no builtin {name}"));
    s.clients = clients;
    s.duration = duration;
    s
}

fn run(s: &Scenario, sabotage: Sabotage) -> (RunData, Report) {
    let data = sim::run_with(s, sabotage, |_, _, _| {});
    let report = Report::new(&data, &Thresholds::default());
    (data, report)
}

fn verdict<'a>(report: &'a Report, name: &str) -> &'a Verdict {
    report
        .invariants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no invariant {name} in the report"))
}

/// Without sabotage the scenario passes, and `run_with(default)` is `run`.
fn assert_baseline_passes(s: &Scenario) {
    let (_, report) = run(s, Sabotage::default());
    for v in &report.invariants {
        assert_ne!(v.status, Status::Violated, "{}: {report}", v.name);
    }
    assert!(
        report.passed(),
        "{} without sabotage should pass:\n{report}",
        s.name
    );
    let plain = Report::new(&sim::run(s, |_, _, _| {}), &Thresholds::default());
    assert_eq!(
        plain.to_json(),
        report.to_json(),
        "run_with(Sabotage::default()) differs from run"
    );
}

/// The sabotaged run: `name` is violated (the report fails, its text says so), every other
/// invariant is not.
fn assert_caught(s: &Scenario, report: &Report, name: &str) {
    assert_caught_also(s, report, name, &[]);
}

/// Like [`assert_caught`], with invariants that may break too (a real defect can break more than
/// one guarantee: a swallowed response also leaves the client waiting).
fn assert_caught_also(s: &Scenario, report: &Report, name: &str, also: &[&str]) {
    let v = verdict(report, name);
    assert!(
        !v.held(),
        "sabotage NOT detected: invariant {name} held ({} checked) on {}:\n{report}",
        v.checked,
        s.name
    );
    assert!(!v.sample.is_empty(), "a violation comes with a sample");
    assert!(!report.passed(), "the report passed:\n{report}");
    let text = report.to_string();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"));
    assert!(
        line.contains(&format!("VIOLATED ({} of {})", v.violations, v.checked)),
        "{line}"
    );
    assert!(text.ends_with("result        FAIL"), "report text:\n{text}");
    for other in report
        .invariants
        .iter()
        .filter(|o| o.name != name && !also.contains(&o.name))
    {
        assert!(
            other.passes(),
            "sabotage meant for {name} also broke {}: {:?}",
            other.name,
            other.sample
        );
    }
}

#[test]
fn dropped_disconnects_violate_disconnect() {
    let s = builtin("churn", 150, Dur::secs(2));
    assert_baseline_passes(&s);
    let (data, report) = run(
        &s,
        Sabotage {
            drop_disconnects_every: Some(7),
            ..Sabotage::default()
        },
    );
    assert_caught(&s, &report, "disconnect");
    // Every session had exactly one Disconnect; every 7th was swallowed, so that many sessions
    // have none.
    let sessions = data.recorder.sessions.len();
    assert!(sessions >= 100, "{sessions} sessions");
    assert_eq!(verdict(&report, "disconnect").violations, sessions / 7);
    let without = data
        .recorder
        .sessions
        .values()
        .filter(|l| l.disconnects.is_empty())
        .count();
    assert_eq!(without, sessions / 7);
}

#[test]
fn double_counted_connects_violate_disconnect() {
    let s = builtin("churn", 150, Dur::secs(2));
    assert_baseline_passes(&s);
    let (data, report) = run(
        &s,
        Sabotage {
            double_count_connects: true,
            ..Sabotage::default()
        },
    );
    assert_caught(&s, &report, "disconnect");
    // Every session now has two Connects for its one Disconnect.
    let sessions = data.recorder.sessions.len();
    assert!(sessions >= 100, "{sessions} sessions");
    assert!(data.recorder.sessions.values().all(|l| l.connects == 2));
    assert_eq!(verdict(&report, "disconnect").violations, sessions);
}

#[test]
fn unthrottled_heartbeats_violate_heartbeat() {
    // Bound, pinging clients with a 60 s heartbeat interval for 3 virtual minutes.
    let mut s = builtin("heartbeat", 100, Dur::secs(180));
    s.ramp_up = Dur::secs(10);
    assert!(s.bind_users);
    assert_baseline_passes(&s);
    let (data, report) = run(
        &s,
        Sabotage {
            heartbeat_every_packet: true,
            ..Sabotage::default()
        },
    );
    assert_caught(&s, &report, "heartbeat");
    let v = verdict(&report, "heartbeat");
    assert_eq!(v.checked, data.recorder.sessions.len());
    assert_eq!(
        v.violations, v.checked,
        "every bound session: {:?}",
        v.sample
    );
}

#[test]
fn a_claimed_buffer_bound_too_small_violates_memory() {
    let s = builtin("steady", 100, Dur::secs(2));
    assert_baseline_passes(&s);
    let (data, report) = run(
        &s,
        Sabotage {
            claimed_buffer_bound: Some(10),
            ..Sabotage::default()
        },
    );
    assert_caught(&s, &report, "memory");
    // Every connection that buffered more than 10 bytes is a violation (a handshake alone is more).
    let over = data
        .conns
        .iter()
        .filter(|c| c.max_buffered.is_some_and(|m| m > 10))
        .count();
    assert_eq!(over, data.conns.len());
    assert_eq!(verdict(&report, "memory").violations, over);
    assert!(data.conns.iter().all(|c| c.buffer_bound == Some(10)));
}

// ----- Faults injected into the gate's own code -----

#[cfg(feature = "fault-injection")]
mod real_code {
    use super::*;
    use gatekit_agent::Faults;

    fn faulty(s: &Scenario, faults: &str) -> (RunData, Report) {
        let faults: Faults = faults.parse().expect("fault list");
        run(
            s,
            Sabotage {
                faults,
                ..Sabotage::default()
            },
        )
    }

    #[test]
    fn a_dropped_response_violates_nothing_lost() {
        let s = builtin("steady", 100, Dur::secs(10));
        assert_baseline_passes(&s);
        let (data, report) = faulty(&s, "drop-response=20");
        assert_caught(&s, &report, "nothing_lost");
        // Every client sent at least 20 requests, lost its 20th answer and gave up waiting.
        let v = verdict(&report, "nothing_lost");
        assert_eq!(v.violations, data.conns.len());
        assert!(data
            .conns
            .iter()
            .all(|c| c.stats.gave_up && c.stats.unanswered == 1));
        assert!(v.sample[0].contains("gave up waiting"), "{:?}", v.sample);
    }

    #[test]
    fn a_dropped_response_violates_nothing_lost_in_pomelo_too() {
        let mut s = builtin("steady", 100, Dur::secs(10));
        s.protocol = gatekit_harness::listen::WireProtocol::Pomelo;
        assert_baseline_passes(&s);
        let (data, report) = faulty(&s, "drop-response=20");
        assert_caught(&s, &report, "nothing_lost");
        assert_eq!(
            verdict(&report, "nothing_lost").violations,
            data.conns.len()
        );
    }

    #[test]
    fn swapped_responses_violate_order() {
        let s = builtin("burst", 100, Dur::secs(10));
        assert_baseline_passes(&s);
        let (data, report) = faulty(&s, "swap-responses=5");
        // A response held back for the next one can be the last of a burst, and then it waits
        // for the next burst: late by the answer deadline, which `nothing_lost` may see too.
        assert_caught_also(&s, &report, "order", &["nothing_lost"]);
        let swapped: u64 = data.conns.iter().map(|c| c.stats.out_of_order).sum();
        assert!(swapped > 0);
        assert_eq!(
            verdict(&report, "order").violations,
            data.conns
                .iter()
                .filter(|c| c.stats.out_of_order > 0)
                .count()
        );
    }

    #[test]
    fn a_dropped_push_violates_pushes() {
        let mut s = builtin("slow_consumer", 60, Dur::secs(3));
        s.mix.slow_consumer = 0.0;
        assert_baseline_passes(&s);
        let (_, report) = faulty(&s, "drop-push=50");
        assert_caught(&s, &report, "pushes");
        let v = verdict(&report, "pushes");
        assert_eq!(v.violations, v.checked, "every session got over 50 pushes");
        assert!(v.sample[0].contains("missing"), "{:?}", v.sample);
    }

    #[test]
    fn a_skipped_heartbeat_violates_heartbeat() {
        let mut s = builtin("heartbeat", 50, Dur::secs(600));
        s.ramp_up = Dur::secs(10);
        assert_baseline_passes(&s);
        let (_, report) = faulty(&s, "skip-heartbeat=3");
        assert_caught(&s, &report, "heartbeat");
        let v = verdict(&report, "heartbeat");
        assert_eq!(v.violations, v.checked, "{:?}", v.sample);
        assert!(v.sample[0].contains("no heartbeat by"), "{:?}", v.sample);
    }

    #[test]
    fn a_skipped_slow_consumer_close_violates_disconnect_and_memory() {
        let s = builtin("slow_consumer", 100, Dur::secs(10));
        assert_baseline_passes(&s);
        let (data, report) = faulty(&s, "skip-slow-consumer-close");
        assert_caught_also(&s, &report, "disconnect", &["memory"]);
        assert_caught_also(&s, &report, "memory", &["disconnect"]);
        let slow = data
            .conns
            .iter()
            .filter(|c| c.behavior == gatekit_harness::client::Behavior::SlowConsumer)
            .count();
        assert!(slow > 0);
        // Each slow consumer: the wrong reason (eof, not slow_consumer) and an unbounded queue.
        assert_eq!(verdict(&report, "disconnect").violations, slow);
        assert_eq!(verdict(&report, "memory").violations, slow);
        assert!(
            verdict(&report, "disconnect").sample[0].contains(r#"allowed ["slow_consumer"]"#),
            "{:?}",
            verdict(&report, "disconnect").sample
        );
    }

    #[test]
    fn a_dropped_disconnect_violates_disconnect() {
        let s = builtin("churn", 150, Dur::secs(2));
        assert_baseline_passes(&s);
        let (data, report) = faulty(&s, "drop-disconnect=5");
        assert_caught(&s, &report, "disconnect");
        let faults: Faults = "drop-disconnect=5".parse().unwrap();
        let lost = data
            .recorder
            .sessions
            .keys()
            .filter(|sid| faults.drops_disconnect_of(sid))
            .count();
        assert!(lost > 0);
        assert_eq!(verdict(&report, "disconnect").violations, lost);
        assert!(data
            .recorder
            .sessions
            .iter()
            .all(|(sid, l)| l.disconnects.is_empty() == faults.drops_disconnect_of(sid)));
    }
}
