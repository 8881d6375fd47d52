//! `gatekit run --target` against `gatekit serve`, as processes: a correct gate passes, with every
//! invariant held or not checked for a stated reason (never a false violation); the gate's side
//! comes from `serve --control` when it is given; and a defect injected into the served gate is
//! reported VIOLATED with exit 1 — checks against an external gate can fail.

mod common;

use common::{gatekit, Out, Serve};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// The status word of invariant `name`'s line in a text report: "held", "VIOLATED" or "not".
fn status<'a>(out: &'a Out, name: &str) -> &'a str {
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line: {out:?}"));
    line.split_whitespace().nth(1).expect("status word")
}

#[cfg(feature = "fault-injection")]
/// Pipelined requests (window 4) for 2 s; the gate section is `gatekit serve`'s default, as the
/// scenario must describe the target.
const PIPELINED: &str = r#"
name = "target-pipelined"
mode = "tcp"
clients = 20
duration = "2s"
ramp_up = "200ms"
rate = 20.0
window = 4
notify_ratio = 0.0
ping_interval = "500ms"
"#;

fn run_against(serve: &Serve, with_control: bool, clients: &str) -> Out {
    run_scenario(
        serve,
        with_control,
        &["--scenario", "smoke", "--clients", clients],
    )
}

fn run_scenario(serve: &Serve, with_control: bool, scenario: &[&str]) -> Out {
    let target = serve.addr.to_string();
    let control = serve.control.map(|c| c.to_string());
    let mut args = vec!["run", "--target", &target, "--duration", "2s"];
    args.extend_from_slice(scenario);
    if with_control {
        args.extend(["--control", control.as_deref().expect("a control endpoint")]);
    }
    gatekit(&args, LIMIT)
}

#[test]
fn a_correct_gate_passes_with_its_side_from_the_control_endpoint() {
    let serve = Serve::start(&["--control", "127.0.0.1:0", "--push-rate", "20"]);
    let out = run_against(&serve, true, "50");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("result        PASS"),
        "{out:?}"
    );
    for name in [
        "counters",
        "nothing_lost",
        "order",
        "pushes",
        "disconnect",
        "memory",
    ] {
        assert_eq!(status(&out, name), "held", "{name}: {out:?}");
    }
    // No user is bound over the wire: the heartbeat has nothing to check, and says so.
    assert_eq!(status(&out, "heartbeat"), "not", "{out:?}");
    assert!(
        out.stdout
            .contains("heartbeat     not checked: no session was bound to a user"),
        "{out:?}"
    );
    // A second run against the same gate only looks at its own sessions.
    let again = run_against(&serve, true, "5");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(status(&again, "disconnect"), "held", "{again:?}");
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn without_a_control_endpoint_the_gate_side_is_not_checked_and_the_run_passes() {
    // The audit's case: 5 clients against `gatekit serve` used to give "VIOLATED 5 of 6".
    let serve = Serve::start(&["--push-rate", "20"]);
    for clients in ["5", "50"] {
        let out = run_against(&serve, false, clients);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
        for name in ["nothing_lost", "order", "pushes"] {
            assert_eq!(status(&out, name), "held", "{name}: {out:?}");
        }
        for name in ["counters", "disconnect", "heartbeat", "memory"] {
            assert_eq!(status(&out, name), "not", "{name}: {out:?}");
        }
        assert!(
            out.stdout
                .contains("disconnect    not checked: the external gate's side is not visible"),
            "{out:?}"
        );
        // Only what a client can see of pushes is claimed.
        assert!(
            out.stdout.contains("missing pushes are not checked"),
            "{out:?}"
        );
    }
    assert_eq!(serve.stop(), Some(0));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_defect_in_the_served_gate_is_reported_violated() {
    for (fault, invariant, control) in [
        ("drop-response=10", "nothing_lost", false),
        ("swap-responses=5", "order", false),
        ("drop-push=5", "pushes", true),
        ("drop-disconnect=3", "disconnect", true),
    ] {
        let serve = Serve::start(&[
            "--control",
            "127.0.0.1:0",
            "--push-rate",
            "20",
            "--inject-fault",
            fault,
        ]);
        let file = common::TempFile::with("pipelined.toml", PIPELINED);
        let out = run_scenario(&serve, control, &["--file", file.path()]);
        assert_eq!(out.code, Some(1), "{fault}: {out:?}");
        assert_eq!(status(&out, invariant), "VIOLATED", "{fault}: {out:?}");
        assert!(
            out.stdout.trim_end().ends_with("result        FAIL"),
            "{out:?}"
        );
        drop(serve);
    }
}
