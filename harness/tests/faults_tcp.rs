//! Over loopback TCP, through the `gatekit` binary: each defect injected into the gate's real code
//! (`gatekit run --mode tcp --inject-fault ...`, feature `fault-injection`) makes the invariant that
//! guards it report VIOLATED and the run exit 1; the same scenario without the defect passes
//! (exit 0). `sabotage.rs` does the same in sim mode.

#![cfg(feature = "fault-injection")]

mod common;

use common::{gatekit, Out, TempFile};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Requests (window 4, one call in flight), and pushes to every session, for 2 s.
const TRAFFIC: &str = r#"
name = "faults-traffic"
mode = "tcp"
clients = 20
duration = "2s"
ramp_up = "200ms"
rate = 20.0
window = 4
notify_ratio = 0.0
push_rate = 20.0
ping_interval = "500ms"

[gate]
backend_timeout = "1s"
"#;

/// Idle clients with users bound, pinging, against a 1 s storage heartbeat, for 4 s.
const HEARTBEAT: &str = r#"
name = "faults-heartbeat"
mode = "tcp"
clients = 10
duration = "4s"
ramp_up = "100ms"
rate = 0.0
bind_users = true
ping_interval = "200ms"

[gate]
heartbeat = "1s"
"#;

/// Half the clients stop reading while 16 KiB pushes pour in: far more than the sockets and the
/// 64 KiB write queue hold, so the gate must close them as slow consumers.
const SLOW_CONSUMERS: &str = r#"
name = "faults-slow-consumers"
mode = "tcp"
clients = 4
duration = "4s"
ramp_up = "100ms"
rate = 2.0
body_size = 16384
push_rate = 200.0
seed = 3

[mix]
normal = 0.5
slow_consumer = 0.5

[gate]
max_write_queue = 65536
"#;

fn run(scenario: &str, fault: Option<&str>) -> Out {
    let file = TempFile::with("scenario.toml", scenario);
    let mut args = vec!["run", "--file", file.path()];
    if let Some(f) = fault {
        args.extend(["--inject-fault", f]);
    }
    gatekit(&args, LIMIT)
}

fn assert_passes(scenario: &str) {
    let out = run(scenario, None);
    assert_eq!(out.code, Some(0), "without a fault the run passes: {out:?}");
    assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
}

/// The run with `fault` exits 1 and reports each of `invariants` VIOLATED.
fn assert_caught(scenario: &str, fault: &str, invariants: &[&str]) {
    let out = run(scenario, Some(fault));
    assert_eq!(out.code, Some(1), "{fault}: {out:?}");
    assert!(
        out.stdout.trim_end().ends_with("result        FAIL"),
        "{out:?}"
    );
    for name in invariants {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line: {out:?}"));
        assert!(line.contains("VIOLATED"), "{fault}: {line}\n{out:?}");
    }
}

#[test]
fn traffic_baseline_passes_and_each_delivery_fault_is_caught() {
    assert_passes(TRAFFIC);
    assert_caught(TRAFFIC, "drop-response=15", &["nothing_lost"]);
    assert_caught(TRAFFIC, "swap-responses=7", &["order"]);
    assert_caught(TRAFFIC, "drop-push=7", &["pushes"]);
}

#[test]
fn a_dropped_disconnect_is_caught_at_the_gate() {
    // Lost in the connection (no Disconnect action) and in the registration (the drop guard):
    // the learner never hears of those sessions and they stay registered.
    assert_caught(TRAFFIC, "drop-disconnect=3", &["disconnect"]);
}

#[test]
fn heartbeat_baseline_passes_and_a_skipped_heartbeat_is_caught() {
    assert_passes(HEARTBEAT);
    assert_caught(HEARTBEAT, "skip-heartbeat=2", &["heartbeat"]);
}

#[test]
fn slow_consumer_baseline_passes_and_a_skipped_close_is_caught() {
    assert_passes(SLOW_CONSUMERS);
    assert_caught(
        SLOW_CONSUMERS,
        "skip-slow-consumer-close",
        &["disconnect", "memory"],
    );
}
