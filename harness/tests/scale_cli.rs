//! `gatekit serve`, `gatekit hold` and `gatekit scale` as processes: a small scale run end to end,
//! and the open-file limit reported as a clear error, not a hang.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{command as gatekit, finish, run, GATEKIT};

/// `sh -c 'ulimit -n <files>; exec gatekit <args>'`.
fn with_file_limit(files: u32, args: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -n {files} && exec {GATEKIT} {args}"));
    c
}

#[test]
fn scale_holds_connections_and_sees_every_disconnect() {
    let f = run(
        gatekit(&[
            "scale",
            "--connections",
            "300",
            "--gates",
            "2",
            "--workers",
            "2",
            "--runs",
            "1",
            "--hold",
            "2s",
            "--ping",
            "1s",
        ]),
        Duration::from_secs(90),
        "gatekit scale",
    );
    assert_eq!(f.code, Some(0), "{}\n{}", f.stdout, f.stderr);
    let row = f
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("300"))
        .unwrap_or_else(|| panic!("no row for 300 connections:\n{}", f.stdout));
    assert!(row.contains("yes"), "{row}");
    assert!(row.ends_with("PASS"), "{row}");
    // Both gates got connections (SO_REUSEPORT), and every PING was answered at least once.
    let run = f
        .stderr
        .lines()
        .find(|l| l.contains("300 connections:"))
        .expect("run line");
    assert!(run.contains("300 Disconnects"), "{run}");
    assert!(run.contains("closed by gate 0"), "{run}");
    assert!(!run.contains("pongs 0 "), "{run}");
}

#[test]
fn scale_refuses_a_plan_over_the_file_limit() {
    let f = run(
        with_file_limit(200, "scale --connections 1000 --gates 1 --runs 1"),
        Duration::from_secs(20),
        "gatekit scale",
    );
    assert_eq!(f.code, Some(2), "{}\n{}", f.stdout, f.stderr);
    assert!(f.stderr.contains("open-file limit"), "{}", f.stderr);
    assert!(f.stderr.contains("--gates"), "{}", f.stderr);
}

#[test]
fn a_worker_over_its_file_limit_says_so() {
    let f = run(
        with_file_limit(100, "hold --target 127.0.0.1:9 --connections 500"),
        Duration::from_secs(20),
        "gatekit hold",
    );
    assert_eq!(f.code, Some(2), "{}\n{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("\"event\":\"failed\""), "{}", f.stdout);
    assert!(f.stderr.contains("RLIMIT_NOFILE"), "{}", f.stderr);
}

#[test]
fn a_gate_at_its_file_limit_says_so_and_the_worker_does_not_hang() {
    let mut gate = with_file_limit(
        64,
        "serve --json --stdin-control --addr 127.0.0.1:0 --duration 60s",
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn gate");
    let mut lines = BufReader::new(gate.stdout.take().expect("stdout")).lines();
    let listening = lines.next().expect("a line").expect("utf-8");
    let addr = listening
        .split("\"addr\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no address in {listening}"))
        .to_owned();
    let statuses = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let w = run(
        gatekit(&[
            "hold",
            "--target",
            &addr,
            "--connections",
            "200",
            "--handshake-timeout",
            "2s",
            "--hold",
            "1s",
        ]),
        Duration::from_secs(30),
        "gatekit hold",
    );
    assert_eq!(w.code, Some(2), "{}\n{}", w.stdout, w.stderr);
    assert!(
        w.stderr.contains("open-file limit"),
        "the worker points at the gate's limit: {}",
        w.stderr
    );
    drop(gate.stdin.take());
    let g = finish(gate, Duration::from_secs(20), "gatekit serve");
    assert_eq!(g.code, Some(0), "{}", g.stderr);
    assert!(
        g.stderr.contains("open-file limit reached"),
        "the gate says why it stopped accepting: {}",
        g.stderr
    );
    // And counts it where a supervisor can read it.
    let statuses = statuses.join().expect("status reader");
    let counted = statuses.iter().any(|l| {
        l.split("\"out_of_files\":")
            .nth(1)
            .and_then(|n| n.split([',', '}']).next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    });
    assert!(counted, "no status with out_of_files > 0: {statuses:?}");
}

#[test]
fn rtt_runs_both_servers_in_child_processes() {
    let f = run(
        gatekit(&[
            "rtt",
            "--clients",
            "20",
            "--seconds",
            "1s",
            "--runs",
            "1",
            "--server-process",
            "--min-rate-ratio",
            "0.01",
        ]),
        Duration::from_secs(60),
        "gatekit rtt",
    );
    assert_eq!(f.code, Some(0), "{}\n{}", f.stdout, f.stderr);
    for server in ["tokio LDC echo", "gatekit gate (native)"] {
        let line = f
            .stderr
            .lines()
            .find(|l| l.trim_start().starts_with(server))
            .unwrap_or_else(|| panic!("no {server} run:\n{}", f.stderr));
        assert!(line.ends_with("failures 0"), "{line}");
        assert!(!line.contains(" 0 round trips/s"), "{line}");
    }
    assert!(
        f.stdout.contains("gatekit native / raw: rate"),
        "{}",
        f.stdout
    );
}

#[test]
fn rtt_open_loop_offers_the_rate_asked_for() {
    let f = run(
        gatekit(&[
            "rtt",
            "--clients",
            "20",
            "--seconds",
            "2s",
            "--runs",
            "1",
            "--rate",
            "1000",
        ]),
        Duration::from_secs(60),
        "gatekit rtt --rate",
    );
    assert_eq!(f.code, Some(0), "{}\n{}", f.stdout, f.stderr);
    assert!(f.stderr.contains("open loop at 1000"), "{}", f.stderr);
    for server in ["tokio LDC echo", "gatekit gate (native)"] {
        let line = f
            .stderr
            .lines()
            .find(|l| l.trim_start().starts_with(server))
            .unwrap_or_else(|| panic!("no {server} run:\n{}", f.stderr));
        let rate: f64 = line
            .trim_start()
            .trim_start_matches(server)
            .split_whitespace()
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no rate in {line}"));
        // Open loop: the offered rate, not as fast as the server can go.
        assert!((800.0..=1200.0).contains(&rate), "{line}");
        assert!(line.contains("skipped 0"), "{line}");
    }
}

#[test]
fn rtt_and_serve_refuse_bad_runtime_and_rate_options() {
    for args in [
        &["rtt", "--global-queue-interval", "0"][..],
        &["rtt", "--rate", "0"][..],
        &["serve", "--global-queue-interval", "0", "--duration", "1s"][..],
    ] {
        let f = run(gatekit(args), Duration::from_secs(20), "gatekit");
        assert_eq!(f.code, Some(2), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains("must be"), "{args:?}: {}", f.stderr);
    }
}
