//! `gatekit cluster` as a process: nats-server, redis-server, two back-end processes, three gate
//! processes whose echo goes over NATS and whose sessions are in Redis, a `gatekit run --target
//! --control` against each, then the directory phase. A correct cluster passes, naming every
//! gate, with both back ends answering and every directory invariant held; a back end that
//! answers wrongly makes it fail with a VIOLATED invariant and exit 1 — the cluster's checks can
//! fail (tests/cluster_fails.rs shows the directory's invariants failing). Skipped (a printed
//! `skipped:` line) without nats-server or redis-server, unless GATEKIT_REQUIRE_PEERS=1.

mod common;
#[path = "../../server/tests/support/nats_server.rs"]
mod nats_server;

use common::{gatekit, peer_ready, Out};
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn nats_here(test: &str) -> bool {
    peer_ready(
        test,
        gatekit_harness::cluster::find_nats_server()
            .and_then(|_| gatekit_harness::cluster::find_redis_server())
            .map(|_| ()),
    )
}

/// The `back end N: answered A, ...` lines' A.
fn answered(out: &Out) -> Vec<u64> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("back end "))
        .map(|l| {
            let a = l.split("answered ").nth(1).expect("answered");
            a.split(',').next().unwrap().parse().expect("a count")
        })
        .collect()
}

#[test]
fn a_cluster_of_three_gates_and_two_back_ends_passes() {
    if !nats_here("a_cluster_of_three_gates_and_two_back_ends_passes") {
        return;
    }
    let json = common::temp_path("cluster.json");
    let json_arg = json.to_str().expect("utf-8").to_owned();
    let out = gatekit(
        &[
            "cluster",
            "--clients",
            "60",
            "--duration",
            "2s",
            "--json",
            &json_arg,
        ],
        LIMIT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("\nresult        PASS"),
        "{out:?}"
    );
    for gate in ["gate gate-1 on ", "gate gate-2 on ", "gate gate-3 on "] {
        assert!(out.stdout.contains(gate), "{gate}: {out:?}");
    }
    // Each run passed, with the gate's side from its control endpoint.
    assert_eq!(
        out.stdout.matches("    result        PASS").count(),
        3,
        "{out:?}"
    );
    assert_eq!(
        out.stdout
            .matches("nothing_lost  held     20 checked")
            .count(),
        3,
        "{out:?}"
    );
    assert_eq!(
        out.stdout.matches("disconnect    held").count(),
        3,
        "{out:?}"
    );
    assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
    // The directory's invariants, each with its counts.
    for line in [
        "  push_once        PASS  30 users on 3 gates: 150 pushes sent (users.send over NATS), 150 answered ok at the user's gate and session, 150 delivered, 0 duplicated, 0 lost, 0 misdelivered; a never-connected user: offline",
        "  duplicate_login  PASS  10 users logged in twice at once on two gates (policy kick): 10 with exactly one session left, 0 both open, 0 none open; 10 closed with CLOSE kicked and the policy's reason; 10 listed online at the survivor",
    ] {
        assert!(out.stdout.contains(line), "{line}: {out:?}");
    }
    assert!(
        out.stdout.contains("  gate_killed      PASS  gate-3 SIGKILLed with 10 users: 10 connections dropped; 10 offline within 4000 ms"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("(SIGKILLed by the directory phase, as planned)"),
        "{out:?}"
    );
    // Both back ends of the queue group took calls.
    let answered = answered(&out);
    assert_eq!(answered.len(), 2, "{out:?}");
    assert!(answered.iter().all(|&a| a > 0), "{answered:?}: {out:?}");
    // The JSON report says the same.
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    let _ = std::fs::remove_file(&json);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["passed"], true, "{text}");
    assert_eq!(v["gates"].as_array().map(Vec::len), Some(3), "{text}");
    assert_eq!(v["gates"][1]["id"], "gate-2", "{text}");
    assert_eq!(v["gates"][2]["killed"], true, "{text}");
    let d = &v["directory"];
    assert_eq!(d["passed"], true, "{text}");
    assert_eq!(d["push_once"]["sent"], 150, "{text}");
    assert_eq!(d["push_once"]["delivered"], 150, "{text}");
    assert_eq!(d["push_once"]["duplicated"], 0, "{text}");
    assert_eq!(d["duplicate_login_check"]["one_survivor"], 10, "{text}");
    assert_eq!(d["gate_killed"]["offline_in_time"], 10, "{text}");
    assert!(
        d["gate_killed"]["store_offline_ms"]
            .as_u64()
            .is_some_and(|ms| ms <= 4000),
        "{text}"
    );
    let invariants = v["gates"][0]["run_json"]["invariants"]
        .as_array()
        .expect("the run's invariants");
    let nothing_lost = invariants
        .iter()
        .find(|i| i["name"] == "nothing_lost")
        .expect("nothing_lost");
    assert_eq!(nothing_lost["status"], "held", "{text}");
}

#[test]
fn a_back_end_that_answers_wrongly_fails_the_cluster() {
    if !nats_here("a_back_end_that_answers_wrongly_fails_the_cluster") {
        return;
    }
    let out = gatekit(
        &[
            "cluster",
            "--clients",
            "20",
            "--duration",
            "1s",
            "--corrupt-every",
            "25",
        ],
        LIMIT,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("\nresult        FAIL"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("nothing_lost  VIOLATED")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("problem: the run against gate-"),
        "{out:?}"
    );
    // The processes themselves ended well: only the answers were wrong.
    assert!(!out.stdout.contains("problem: gate "), "{out:?}");
    assert!(!out.stdout.contains("problem: back end "), "{out:?}");
}

#[test]
fn a_back_end_answers_requests_with_their_body_and_ignores_notifies() {
    let test = "a_back_end_answers_requests_with_their_body_and_ignores_notifies";
    let Some(nats) = nats_server::start_for(test) else {
        return;
    };
    let url = nats.url();
    let mut child = common::command(&["backend", "--nats", &url, "--stdin-control"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gatekit backend");
    let stdin = child.stdin.take();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    lines.read_line(&mut line).expect("backend's first line");
    assert_eq!(line.trim(), r#"{"event":"ready"}"#);
    // Subscribed: a request now reaches it (no "no responders").
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(url.as_str()).await.expect("connect");
        for body in ["hello", "", "second"] {
            let reply = tokio::time::timeout(
                Duration::from_secs(10),
                client.request("gatekit.rpc.echo.say", body.as_bytes().to_vec().into()),
            )
            .await
            .expect("answered in time")
            .expect("answered");
            assert_eq!(&reply.payload[..], body.as_bytes());
            assert!(reply.headers.is_none(), "no Gatekit-Status: ok");
        }
        client
            .publish("gatekit.rpc.echo.note", "n".into())
            .await
            .expect("notify");
        client.flush().await.expect("flush");
    });
    // Let the notify arrive, then stop it by closing its standard input.
    std::thread::sleep(Duration::from_millis(300));
    drop(stdin);
    let mut rest = String::new();
    lines.read_to_string(&mut rest).expect("the rest");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        rest.trim(),
        r#"{"event":"stopped","answered":3,"corrupted":0,"notifies":1}"#
    );
}

#[test]
fn a_back_end_without_a_nats_server_exits_2() {
    let port = nats_server::free_port().expect("a free port");
    let url = nats_server::url_on(port);
    let out = gatekit(&["backend", "--nats", &url], LIMIT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("connecting to NATS"), "{out:?}");
}

#[test]
fn without_nats_server_the_cluster_says_so_and_exits_2() {
    let mut c = common::command(&["cluster", "--clients", "3", "--duration", "1s"]);
    c.env("NATS_SERVER", "/nonexistent/nats-server");
    let out = common::run(c, LIMIT, "gatekit cluster without nats-server");
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("nats-server is needed"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn measure_push_reports_throughput_latency_and_redis_costs() {
    if !nats_here("measure_push_reports_throughput_latency_and_redis_costs") {
        return;
    }
    let out = gatekit(
        &[
            "cluster",
            "--clients",
            "30",
            "--duration",
            "1s",
            "--measure-push",
            "1s",
            "--bind-users",
            "30",
        ],
        LIMIT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let push = out
        .stdout
        .lines()
        .find(|l| l.starts_with("  measured push   30 users, 32 in flight"))
        .unwrap_or_else(|| panic!("no measured push line: {out:?}"));
    assert!(
        push.contains(" 0 duplicated; send → receipt ms p50 "),
        "{push}"
    );
    let redis = out
        .stdout
        .lines()
        .find(|l| l.starts_with("  measured redis  at rest "))
        .unwrap_or_else(|| panic!("no measured redis line: {out:?}"));
    // Every bind runs a script in Redis; at rest the gates beat their liveness keys (a script:
    // EXISTS, SET, TIME, ZADD) and reap dead gates (TIME, ZRANGEBYSCORE).
    assert!(redis.contains("per bind (30 users at once)"), "{redis}");
    let at_rest = redis.split("; per bind").next().unwrap_or_default();
    for command in ["evalsha ", " set ", " zadd ", " zrangebyscore "] {
        assert!(at_rest.contains(command), "{command:?} at rest: {redis}");
    }
}
