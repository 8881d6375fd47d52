//! The invariant checks fail when they should: each deliberate defect (`sim::Sabotage`) is caught
//! by its invariant (and only by it), the report fails and says VIOLATED; the same scenario without
//! the defect passes.

use gatekit_harness::invariants::Verdict;
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
/// invariant holds.
fn assert_caught(s: &Scenario, report: &Report, name: &str) {
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
    for other in report.invariants.iter().filter(|o| o.name != name) {
        assert!(
            other.held(),
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
