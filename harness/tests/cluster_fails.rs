//! The directory invariants of `gatekit cluster` can fail: each is run against a real defect and
//! must end the cluster `result        FAIL`, exit 1, with only that invariant failing.
//!
//! - `push_once`: with `--gate-fault drop-push=4` (feature `fault-injection`) every gate drops
//!   every 4th push of a connection while reporting it queued; pushes are lost.
//! - `duplicate_login`: with `--duplicate-login allow` the gates keep both sessions of a user
//!   logged in twice; "exactly one session remains" is false.
//! - `gate_killed`: with `--gate-ttl 3s --grace 3s` the dead gate's liveness key outlives a
//!   1-second window (`--offline-within 1s`), so its users stay listed in the store as online at
//!   it past the window — what a gate_ttl longer than the grace would do (the gates refuse that
//!   configuration, so the window is shortened instead).
//!
//! Also: a missing redis-server and a gate_ttl longer than the grace are set-up errors (exit 2).
//! Skipped (a printed `skipped:` line) without nats-server or redis-server, unless
//! GATEKIT_REQUIRE_PEERS=1.

mod common;

use common::{gatekit, peer_ready, Out};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn peers_here(test: &str) -> bool {
    peer_ready(
        test,
        gatekit_harness::cluster::find_nats_server()
            .and_then(|_| gatekit_harness::cluster::find_redis_server())
            .map(|_| ()),
    )
}

/// The directory line of `name`, e.g. `  duplicate_login  FAIL  ...`.
fn check_line<'a>(out: &'a Out, name: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} line: {out:?}"))
}

fn cluster(extra: &[&str]) -> Out {
    let mut args = vec!["cluster", "--clients", "30", "--duration", "1s"];
    args.extend_from_slice(extra);
    gatekit(&args, LIMIT)
}

fn assert_failed_only(out: &Out, failing: &str) {
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("\nresult        FAIL"),
        "{out:?}"
    );
    for name in ["push_once", "duplicate_login", "gate_killed"] {
        let want = if name == failing { "FAIL" } else { "PASS" };
        let line = check_line(out, name);
        assert!(
            line.trim_start()
                .strip_prefix(name)
                .is_some_and(|r| r.trim_start().starts_with(want)),
            "{name} should be {want}: {line}: {out:?}"
        );
    }
    assert!(
        out.stdout
            .contains("problem: a directory invariant failed (see above)"),
        "{out:?}"
    );
    // The runs themselves passed: it is the directory that failed.
    assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_gate_that_drops_pushes_fails_the_push_once_invariant() {
    if !peers_here("a_gate_that_drops_pushes_fails_the_push_once_invariant") {
        return;
    }
    let out = cluster(&["--gate-fault", "drop-push=4"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = check_line(&out, "push_once");
    assert!(line.contains("push_once        FAIL"), "{line}");
    // Every user got 5 pushes beside the gates' ticks: at least one of each user's was dropped.
    assert!(line.contains("0 duplicated"), "{line}");
    let lost: usize = line
        .split(" lost")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the lost count");
    assert!(lost > 0, "{line}");
    assert!(out.stdout.contains(" never received push-"), "{out:?}");
}

#[test]
fn allowing_duplicate_logins_fails_the_duplicate_login_invariant() {
    if !peers_here("allowing_duplicate_logins_fails_the_duplicate_login_invariant") {
        return;
    }
    let out = cluster(&["--duplicate-login", "allow"]);
    assert_failed_only(&out, "duplicate_login");
    let line = check_line(&out, "duplicate_login");
    assert!(
        line.contains("(policy allow): 0 with exactly one session left, 10 both open"),
        "{line}"
    );
    assert!(
        out.stdout.contains("dup-0: both sessions still open"),
        "{out:?}"
    );
}

#[test]
fn refusing_duplicate_logins_keeps_exactly_one_session() {
    if !peers_here("refusing_duplicate_logins_keeps_exactly_one_session") {
        return;
    }
    let out = cluster(&["--duplicate-login", "refuse"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let line = check_line(&out, "duplicate_login");
    assert!(
        line.contains("PASS") && line.contains("(policy refuse): 10 with exactly one session left"),
        "{line}"
    );
}

#[test]
fn a_dead_gate_listed_past_the_window_fails_the_gate_killed_invariant() {
    if !peers_here("a_dead_gate_listed_past_the_window_fails_the_gate_killed_invariant") {
        return;
    }
    let out = cluster(&[
        "--grace",
        "3s",
        "--gate-ttl",
        "3s",
        "--offline-within",
        "1s",
    ]);
    assert_failed_only(&out, "gate_killed");
    let line = check_line(&out, "gate_killed");
    assert!(line.contains("0 offline within 1000 ms"), "{line}");
    assert!(
        out.stdout.contains("still listed online")
            && out.stdout.contains("after gate-3 was killed"),
        "{out:?}"
    );
}

#[test]
fn a_gate_ttl_longer_than_the_grace_is_refused() {
    let out = gatekit(
        &[
            "cluster",
            "--clients",
            "3",
            "--grace",
            "1s",
            "--gate-ttl",
            "2s",
        ],
        LIMIT,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("--gate-ttl 2s is longer than --grace 1s"),
        "{out:?}"
    );
}

#[test]
fn without_redis_server_the_cluster_says_so_and_exits_2() {
    if !peers_here("without_redis_server_the_cluster_says_so_and_exits_2") {
        return;
    }
    let mut c = common::command(&["cluster", "--clients", "3", "--duration", "1s"]);
    c.env("REDIS_SERVER", "/nonexistent/redis-server");
    let out = common::run(c, LIMIT, "gatekit cluster without redis-server");
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("redis-server is needed"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}
