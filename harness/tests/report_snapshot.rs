//! Snapshots of the report of small fixed-seed sim runs: the text for people and the JSON for
//! programs. Sim runs are deterministic for a seed, so these are byte for byte.

use gatekit_harness::report::{Report, Thresholds};
use gatekit_harness::scenario::{self, Scenario};
use gatekit_harness::sim;

fn builtin(name: &str, clients: usize) -> Scenario {
    let mut s = scenario::builtin(name).unwrap_or_else(|| panic!("no builtin {name}"));
    s.clients = clients;
    s
}

fn report(s: &Scenario) -> Report {
    Report::new(&sim::run(s, |_, _, _| {}), &Thresholds::default())
}

#[test]
fn churn_report_text() {
    let s = builtin("churn", 200);
    let r = report(&s);
    assert!(r.passed(), "{r}");
    insta::assert_snapshot!("churn_200_text", r.to_string());
}

#[test]
fn backend_faults_report_text_and_json() {
    let s = builtin("backend_faults", 100);
    let r = report(&s);
    assert!(r.passed(), "{r}");
    insta::assert_snapshot!("backend_faults_100_text", r.to_string());
    // The JSON is valid and matches its snapshot.
    let json = r.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).expect("report JSON parses");
    assert_eq!(v["scenario"], "backend_faults");
    assert_eq!(v["wall_s"], serde_json::Value::Null);
    insta::assert_snapshot!("backend_faults_100_json", json);
}

#[test]
fn report_with_thresholds_text() {
    // One passing and one failing threshold: the text lists both and the result is FAIL.
    let s = builtin("churn", 50);
    let data = sim::run(&s, |_, _, _| {});
    let r = Report::new(
        &data,
        &Thresholds {
            max_p99: Some("1s".parse().expect("duration")),
            min_rate: Some(1e12),
            max_error_rate: None,
        },
    );
    // No invariant broke (churn pushes nothing and binds nobody: those two are not checked).
    assert!(r.invariants.iter().all(|v| v.passes()), "{r}");
    assert!(!r.passed());
    insta::assert_snapshot!("churn_50_thresholds_text", r.to_string());
}
